//! `tackctl`'s tables: each answer of the management API as the operator
//! reads it (`--json` prints the answer as it came instead).

use std::fmt::Write;

use serde::de::DeserializeOwned;

use super::words::Shape;
use crate::api::types::{
    Cluster, ConnectionCount, ConnectionList, Counters, Done, Neighbour, Reloaded, Service, Status,
    StickyBinding,
};
use crate::ctl::state_name;
use crate::report::{render_counter_table, render_port_rows};

/// An answer that is not the document its request gives.
#[derive(Debug, thiserror::Error)]
#[error("unexpected answer: {0}")]
pub struct BadAnswer(String);

fn read<T: DeserializeOwned>(body: &[u8]) -> Result<T, BadAnswer> {
    serde_json::from_slice(body)
        .map_err(|e| BadAnswer(format!("{e}: {}", String::from_utf8_lossy(body))))
}

/// An address for a table: IPv6 in brackets when a port follows.
fn host(a: std::net::IpAddr) -> String {
    match a {
        std::net::IpAddr::V4(v) => v.to_string(),
        std::net::IpAddr::V6(v) => format!("[{v}]"),
    }
}

/// The table for an answer of shape `shape`.
pub fn render(shape: Shape, body: &[u8]) -> Result<String, BadAnswer> {
    let mut s = String::new();
    match shape {
        Shape::Metrics => s.push_str(&String::from_utf8_lossy(body)),
        Shape::Status => {
            let st: Status = read(body)?;
            let _ = writeln!(s, "workers: {}", st.workers);
            for p in &st.ports {
                let _ = writeln!(
                    s,
                    "port {}: {} mac {} addresses {}",
                    p.name,
                    p.device,
                    p.mac,
                    p.addresses.join(" ")
                );
            }
            let _ = writeln!(s, "services: {}", st.services);
            let _ = writeln!(s, "configuration epochs published: {}", st.epochs);
            let _ = writeln!(
                s,
                "rx_packets: {}  tx_packets: {}",
                st.rx_packets, st.tx_packets
            );
        }
        Shape::Counters => {
            let c: Counters = read(body)?;
            let ports: Vec<_> = c.ports.clone().into_iter().collect();
            s.push_str(&render_port_rows(&ports));
            s.push('\n');
            let workers: Vec<Vec<(&str, u64)>> = c
                .workers
                .iter()
                .map(|w| w.iter().map(|(k, v)| (k.as_str(), *v)).collect())
                .collect();
            s.push_str(&render_counter_table(&workers));
            let control: Vec<String> = c.control.iter().map(|(k, v)| format!("{k} {v}")).collect();
            let _ = writeln!(s, "\ncontrol: {}", control.join(" "));
        }
        Shape::Services => {
            let list: Vec<Service> = read(body)?;
            let _ = writeln!(
                s,
                "{:<16} {:<28} {:<8} {:<8} {:<24} {:>6} {:<12} {:>8} {:>12}",
                "service",
                "vip",
                "mode",
                "sched",
                "server",
                "weight",
                "state",
                "active",
                "connections"
            );
            for svc in &list {
                let vip = match svc.port {
                    Some(p) => format!("{}/{}:{p}", svc.protocol, host(svc.vip)),
                    None => format!("{}/{}:*", svc.protocol, host(svc.vip)),
                };
                for sv in &svc.servers {
                    // The operator's state, and `,failing` while its check fails.
                    let mut state = state_name(sv.state).to_string();
                    if sv.health.as_deref() == Some("down") {
                        state.push_str(",failing");
                    }
                    let _ = writeln!(
                        s,
                        "{:<16} {:<28} {:<8} {:<8} {:<24} {:>6} {:<12} {:>8} {:>12}",
                        svc.name,
                        vip,
                        svc.mode,
                        svc.scheduler,
                        sv.name,
                        sv.weight,
                        state,
                        sv.active_connections,
                        sv.connections
                    );
                }
            }
        }
        Shape::Redirects => s.push_str(&crate::ctl::render_redirects(&read(body)?)),
        Shape::Cluster => {
            let c: Cluster = read(body)?;
            if c.node.is_none() {
                s.push_str("not in a cluster\n");
            } else {
                let _ = writeln!(s, "{:<6} {:<16} {:<8} role", "node", "address", "state");
                for n in &c.nodes {
                    let role = if n.this_node { "this node" } else { "peer" };
                    let _ = writeln!(
                        s,
                        "{:<6} {:<16} {:<8} {role}",
                        n.id,
                        n.address.to_string(),
                        n.state
                    );
                }
                if let Some(active) = c.scheduler {
                    let role = if active { "active" } else { "standby" };
                    let _ = writeln!(s, "\nscheduler: {role}");
                }
                if !c.taken_over.is_empty() {
                    let list: Vec<String> = c.taken_over.iter().map(ToString::to_string).collect();
                    let _ = writeln!(
                        s,
                        "answering for dead nodes' local addresses: {}",
                        list.join(" ")
                    );
                }
                let counters: Vec<String> =
                    c.counters.iter().map(|(k, v)| format!("{k} {v}")).collect();
                let _ = writeln!(s, "\n{}", counters.join(" "));
            }
        }
        Shape::Neighbours => {
            let list: Vec<Neighbour> = read(body)?;
            for n in &list {
                let mac = n.mac.as_deref().unwrap_or("(resolving)");
                let _ = writeln!(s, "{:<10} {:<28} {mac} {}", n.port, n.address, n.state);
            }
        }
        Shape::Connections => {
            let c: ConnectionList = read(body)?;
            let _ = writeln!(
                s,
                "{:<6} {:<5} {:<28} {:<28} {:<16} {:<24} {:<12}",
                "worker", "proto", "client", "vip", "service", "server", "state"
            );
            for x in &c.connections {
                let server = match (&x.server, x.server_address) {
                    (Some(n), _) => n.clone(),
                    (None, Some(a)) => a.to_string(),
                    (None, None) => "(removed)".into(),
                };
                let _ = writeln!(
                    s,
                    "{:<6} {:<5} {:<28} {:<28} {:<16} {:<24} {:<12}",
                    x.worker,
                    x.protocol,
                    format!("{}:{}", host(x.client), x.client_port),
                    format!("{}:{}", host(x.vip), x.vip_port),
                    x.service,
                    server,
                    x.state
                );
            }
            let _ = writeln!(s, "matching connections: {}", c.matching);
            let _ = writeln!(s, "connection table entries: {}", c.table_entries);
        }
        Shape::Count => {
            let c: ConnectionCount = read(body)?;
            let _ = writeln!(s, "{}", c.connections);
        }
        Shape::Sticky => {
            let list: Vec<StickyBinding> = read(body)?;
            let _ = writeln!(
                s,
                "{:<16} {:<24} {:<24} {:>8} {:>8}",
                "service", "client key", "server", "active", "workers"
            );
            for b in &list {
                let _ = writeln!(
                    s,
                    "{:<16} {:<24} {:<24} {:>8} {:>8}",
                    b.service,
                    b.key,
                    b.server.as_deref().unwrap_or("(none)"),
                    b.active,
                    b.workers
                );
            }
            let _ = writeln!(s, "sticky bindings: {}", list.len());
        }
        Shape::Done => {
            let d: Done = read(body)?;
            let _ = writeln!(s, "{}", d.message);
        }
        Shape::Reloaded => {
            let r: Reloaded = read(body)?;
            let _ = writeln!(s, "{}", r.message);
            for line in &r.reverted {
                let _ = writeln!(s, "reverted: {line}");
            }
        }
    }
    Ok(s)
}

/// One refresh of `tackctl top`: per server, its weight, state, open
/// connections and the new connections, packets and bytes per second
/// since `before` (`seconds` ago).
pub fn render_top(now: &[Service], before: Option<&[Service]>, seconds: f64) -> String {
    let mut s = String::new();
    let _ = writeln!(
        s,
        "{:<16} {:<24} {:>6} {:<6} {:>8} {:>10} {:>12} {:>14}",
        "service", "server", "weight", "state", "active", "conn/s", "packets/s", "bytes/s"
    );
    let rate = |a: u64, b: Option<u64>| match b {
        Some(b) if seconds > 0.0 => format!("{:.1}", a.saturating_sub(b) as f64 / seconds),
        _ => "-".to_string(),
    };
    for svc in now {
        let old = before.and_then(|b| b.iter().find(|x| x.name == svc.name));
        for sv in &svc.servers {
            let o = old.and_then(|x| x.servers.iter().find(|y| y.name == sv.name));
            let _ = writeln!(
                s,
                "{:<16} {:<24} {:>6} {:<6} {:>8} {:>10} {:>12} {:>14}",
                svc.name,
                sv.name,
                sv.weight,
                state_name(sv.state),
                sv.active_connections,
                rate(sv.connections, o.map(|x| x.connections)),
                rate(sv.packets, o.map(|x| x.packets)),
                rate(sv.bytes, o.map(|x| x.bytes)),
            );
        }
    }
    s
}
