//! Prometheus `/metrics`: the counters per port, worker, service (VIP) and
//! server in the text exposition format (version 0.0.4).
//!
//! The control thread takes a [`MetricsSample`] (cheap: copies of what it
//! holds, and one query of the workers' connection tables for the open
//! connections); the management thread renders it ([`render`]).
//!
//! Per-server health (`tack_server_health`: the active check's verdict,
//! and the passive counts `tack_server_syn_unanswered_total` and
//! `tack_server_resets_total`) is in `servers`, next to the
//! administrative state. Every control-plane counter
//! ([`ControlCounters::for_each`]) is exported by name in
//! `tack_control_events_total`, and the exception path's and the cluster
//! link's in `tack_exception_frames_total` and `tack_cluster_events_total`;
//! worker counters only where a family names them (packets, drops,
//! connections, sticky table).

use std::fmt::Write;

use tack_dpdk::PortStats;

use crate::api::types::{AdminState, Service};
use crate::ctl::{ControlCounters, state_name};
use crate::report::{WorkerSnapshot, port_counters};

/// What `/metrics` shows, as the control thread holds it.
#[derive(Debug, Clone)]
pub struct MetricsSample {
    /// Port name and its counters since the start.
    pub ports: Vec<(String, PortStats)>,
    /// Each worker's last published counters.
    pub workers: Vec<WorkerSnapshot>,
    /// The services of the running configuration with their servers'
    /// weights, states and open connections.
    pub services: Vec<Service>,
    /// The control plane's counters.
    pub control: ControlCounters,
    /// The exception path's and the cluster link's counters by name
    /// (`exception_*`, `cluster_*`).
    pub more: Vec<(String, u64)>,
}

/// The content type of the text format.
pub const CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

/// One metric family being written.
struct Family<'a> {
    out: &'a mut String,
    name: &'static str,
}

impl Family<'_> {
    /// One sample with `labels` (name, value pairs).
    fn sample(&mut self, labels: &[(&str, &str)], value: u64) {
        let _ = write!(self.out, "{}", self.name);
        if !labels.is_empty() {
            self.out.push('{');
            for (i, (k, v)) in labels.iter().enumerate() {
                if i > 0 {
                    self.out.push(',');
                }
                let _ = write!(self.out, "{k}=\"{}\"", escape(v));
            }
            self.out.push('}');
        }
        let _ = writeln!(self.out, " {value}");
    }
}

/// Starts the family `name` of type `kind` (`counter` or `gauge`).
fn family<'a>(out: &'a mut String, name: &'static str, kind: &str, help: &str) -> Family<'a> {
    let _ = writeln!(out, "# HELP {name} {help}");
    let _ = writeln!(out, "# TYPE {name} {kind}");
    Family { out, name }
}

/// A label value with `\`, `"` and newlines escaped.
fn escape(v: &str) -> String {
    v.replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

/// The value of the worker counter `name` (loop or pipeline counter).
fn worker_counter(w: &WorkerSnapshot, name: &str) -> u64 {
    let mut v = 0;
    w.lp.for_each(|n, x| {
        if n == name {
            v = x;
        }
    });
    w.pipeline
        .iter()
        .find(|(n, _)| *n == name)
        .map_or(v, |(_, x)| *x)
}

/// Loop counters that count frames a worker dropped, by reason.
const LOOP_DROPS: [&str; 4] = [
    "tx_queue_full",
    "steer_ring_full",
    "host_ring_full",
    "events_dropped",
];

/// The text exposition of `s`.
pub fn render(s: &MetricsSample) -> String {
    let mut out = String::with_capacity(16 * 1024);
    ports(&mut out, s);
    workers(&mut out, s);
    services(&mut out, s);
    servers(&mut out, s);
    control(&mut out, s);
    out
}

fn ports(out: &mut String, s: &MetricsSample) {
    let per_port: Vec<_> = s
        .ports
        .iter()
        .map(|(n, st)| (n.as_str(), port_counters(st)))
        .collect();
    let get = |m: &std::collections::BTreeMap<String, u64>, k: &str| m.get(k).copied().unwrap_or(0);
    let mut f = family(
        out,
        "tack_port_packets_total",
        "counter",
        "Packets through a data port (NIC counters).",
    );
    for (p, m) in &per_port {
        f.sample(&[("port", p), ("direction", "rx")], get(m, "rx_packets"));
        f.sample(&[("port", p), ("direction", "tx")], get(m, "tx_packets"));
    }
    let mut f = family(
        out,
        "tack_port_bytes_total",
        "counter",
        "Bytes through a data port (NIC counters).",
    );
    for (p, m) in &per_port {
        f.sample(&[("port", p), ("direction", "rx")], get(m, "rx_bytes"));
        f.sample(&[("port", p), ("direction", "tx")], get(m, "tx_bytes"));
    }
    let mut f = family(
        out,
        "tack_port_errors_total",
        "counter",
        "Frames a data port missed or refused, by kind.",
    );
    for (p, m) in &per_port {
        for kind in ["rx_missed", "rx_errors", "tx_errors", "rx_nombuf"] {
            f.sample(&[("port", p), ("kind", kind)], get(m, kind));
        }
    }
}

fn workers(out: &mut String, s: &MetricsSample) {
    let ids: Vec<String> = (0..s.workers.len()).map(|i| i.to_string()).collect();
    let each = |out: &mut String, name, help, counter: &str| {
        let mut f = family(out, name, "counter", help);
        for (w, id) in s.workers.iter().zip(&ids) {
            f.sample(&[("worker", id)], worker_counter(w, counter));
        }
    };
    let mut f = family(
        out,
        "tack_worker_packets_total",
        "counter",
        "Packets a worker received from and handed to its NIC queues.",
    );
    for (w, id) in s.workers.iter().zip(&ids) {
        f.sample(&[("worker", id), ("direction", "rx")], w.lp.rx_packets);
        f.sample(&[("worker", id), ("direction", "tx")], w.lp.tx_packets);
    }
    let mut f = family(
        out,
        "tack_worker_drops_total",
        "counter",
        "Frames a worker dropped, by reason (the pipeline's drop_* counters and the loop's full queues and rings).",
    );
    for (w, id) in s.workers.iter().zip(&ids) {
        for (name, v) in &w.pipeline {
            if let Some(reason) = name.strip_prefix("drop_") {
                f.sample(&[("worker", id), ("reason", reason)], *v);
            }
        }
        for reason in LOOP_DROPS {
            f.sample(
                &[("worker", id), ("reason", reason)],
                worker_counter(w, reason),
            );
        }
    }
    each(
        out,
        "tack_worker_connections_created_total",
        "Connections a worker created from its packets.",
        "conn_created",
    );
    each(
        out,
        "tack_worker_connections_installed_total",
        "Connections a worker installed from another cluster node's records.",
        "conn_installed",
    );
    each(
        out,
        "tack_worker_connections_closed_total",
        "Connections a worker closed.",
        "conn_closed",
    );
    each(
        out,
        "tack_worker_sticky_hits_total",
        "New connections that found their client's sticky binding.",
        "sticky_hits",
    );
    let mut f = family(
        out,
        "tack_worker_sticky_misses_total",
        "counter",
        "New connections of persistent services whose client had no binding (a binding was learned, or the full table was bypassed).",
    );
    for (w, id) in s.workers.iter().zip(&ids) {
        let v = worker_counter(w, "sticky_learned") + worker_counter(w, "sticky_full_bypass");
        f.sample(&[("worker", id)], v);
    }
    each(
        out,
        "tack_worker_sticky_evictions_total",
        "Idle sticky bindings evicted because the table was full.",
        "sticky_full_evictions",
    );
    each(
        out,
        "tack_worker_sticky_expired_total",
        "Sticky bindings expired after their timeout.",
        "sticky_expired",
    );
    each(
        out,
        "tack_worker_busy_cycles_total",
        "TSC cycles of loop iterations that did work.",
        "busy_cycles",
    );
    each(
        out,
        "tack_worker_cycles_total",
        "TSC cycles of every loop iteration.",
        "total_cycles",
    );
}

fn services(out: &mut String, s: &MetricsSample) {
    let labels: Vec<(String, String)> = s
        .services
        .iter()
        .map(|v| (v.name.clone(), v.vip.to_string()))
        .collect();
    let rows = || {
        labels
            .iter()
            .zip(&s.services)
            .map(|((n, v), c)| ([("service", n.as_str()), ("vip", v.as_str())], c))
    };
    let mut f = family(
        out,
        "tack_service_packets_total",
        "counter",
        "Packets of a service's connections: from clients (in) and from servers (out, NAT and full NAT).",
    );
    for (l, c) in rows() {
        f.sample(&[l[0], l[1], ("direction", "in")], c.packets_in);
        f.sample(&[l[0], l[1], ("direction", "out")], c.packets_out);
    }
    let mut f = family(
        out,
        "tack_service_bytes_total",
        "counter",
        "Bytes (IP length) of a service's connections, by direction.",
    );
    for (l, c) in rows() {
        f.sample(&[l[0], l[1], ("direction", "in")], c.bytes_in);
        f.sample(&[l[0], l[1], ("direction", "out")], c.bytes_out);
    }
    let mut f = family(
        out,
        "tack_service_connections_total",
        "counter",
        "Connections a service opened.",
    );
    for (l, c) in rows() {
        f.sample(&l, c.connections);
    }
    let mut f = family(
        out,
        "tack_service_no_server_total",
        "counter",
        "New clients of a service dropped because no server was available.",
    );
    for (l, c) in rows() {
        f.sample(&l, c.no_server);
    }
    let mut f = family(
        out,
        "tack_service_active_connections",
        "gauge",
        "Open connections of a service on every worker.",
    );
    for (l, svc) in labels.iter().zip(&s.services) {
        let open = svc.servers.iter().map(|x| x.active_connections).sum();
        f.sample(&[("service", &l.0), ("vip", &l.1)], open);
    }
}

fn servers(out: &mut String, s: &MetricsSample) {
    let rows: Vec<(&str, &crate::api::types::Server)> = s
        .services
        .iter()
        .flat_map(|svc| svc.servers.iter().map(move |sv| (svc.name.as_str(), sv)))
        .collect();
    let mut f = family(
        out,
        "tack_server_connections_total",
        "counter",
        "Connections opened to a real server.",
    );
    for (svc, sv) in &rows {
        f.sample(&[("service", svc), ("server", &sv.name)], sv.connections);
    }
    let mut f = family(
        out,
        "tack_server_packets_total",
        "counter",
        "Client packets sent to a real server.",
    );
    for (svc, sv) in &rows {
        f.sample(&[("service", svc), ("server", &sv.name)], sv.packets);
    }
    let mut f = family(
        out,
        "tack_server_bytes_total",
        "counter",
        "Bytes (IP length) of client packets sent to a real server.",
    );
    for (svc, sv) in &rows {
        f.sample(&[("service", svc), ("server", &sv.name)], sv.bytes);
    }
    let mut f = family(
        out,
        "tack_server_active_connections",
        "gauge",
        "Open connections to a real server on every worker.",
    );
    for (svc, sv) in &rows {
        f.sample(
            &[("service", svc), ("server", &sv.name)],
            sv.active_connections,
        );
    }
    let mut f = family(
        out,
        "tack_server_weight",
        "gauge",
        "A real server's weight.",
    );
    for (svc, sv) in &rows {
        f.sample(
            &[("service", svc), ("server", &sv.name)],
            u64::from(sv.weight),
        );
    }
    let mut f = family(
        out,
        "tack_server_admin_state",
        "gauge",
        "A real server's administrative state: 1 for the state it is in.",
    );
    for (svc, sv) in &rows {
        for st in [
            AdminState::Up,
            AdminState::Drain,
            AdminState::Maint,
            AdminState::Down,
        ] {
            let name = state_name(st);
            f.sample(
                &[("service", svc), ("server", &sv.name), ("state", name)],
                u64::from(sv.state == st),
            );
        }
    }
    let mut f = family(
        out,
        "tack_server_health",
        "gauge",
        "A checked real server's health: 1 when its check passes, 0 when it fails (servers without a check are not listed).",
    );
    for (svc, sv) in &rows {
        if let Some(h) = &sv.health {
            f.sample(
                &[("service", svc), ("server", &sv.name)],
                u64::from(h == "up"),
            );
        }
    }
    let mut f = family(
        out,
        "tack_server_syn_unanswered_total",
        "counter",
        "TCP connections to a real server that expired before it answered the SYN (NAT and full NAT).",
    );
    for (svc, sv) in &rows {
        f.sample(&[("service", svc), ("server", &sv.name)], sv.syn_unanswered);
    }
    let mut f = family(
        out,
        "tack_server_resets_total",
        "counter",
        "Resets a real server sent on its connections (NAT and full NAT).",
    );
    for (svc, sv) in &rows {
        f.sample(&[("service", svc), ("server", &sv.name)], sv.resets);
    }
}

fn control(out: &mut String, s: &MetricsSample) {
    let mut f = family(
        out,
        "tack_control_events_total",
        "counter",
        "Control-plane events by kind (sticky bindings and neighbours published, messages dropped, configuration epochs, refused reloads).",
    );
    s.control.for_each(|kind, v| f.sample(&[("kind", kind)], v));
    for (prefix, name, help) in [
        (
            "exception_",
            "tack_exception_frames_total",
            "Frames on the exception path by kind (to and from the kernel, dropped, without an interface).",
        ),
        (
            "cluster_",
            "tack_cluster_events_total",
            "Cluster link events by kind (heartbeats, records, bytes, refused datagrams, membership changes).",
        ),
    ] {
        let mut f = family(out, name, "counter", help);
        for (k, v) in &s.more {
            if let Some(kind) = k.strip_prefix(prefix) {
                f.sample(&[("kind", kind)], *v);
            }
        }
    }
}

/// Appends the management thread's counters (`tack_api_events_total`).
pub fn render_api(out: &mut String, c: &crate::api::counters::ApiCounters) {
    let mut f = family(
        out,
        "tack_api_events_total",
        "counter",
        "Management API events by kind (connections refused over the limit or cut by the timeout, requests refused 4xx or failed 5xx).",
    );
    c.for_each(|kind, v| f.sample(&[("kind", kind)], v));
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::types::Server;

    fn sample() -> MetricsSample {
        let mut w = WorkerSnapshot::default();
        w.lp.rx_packets = 10;
        w.pipeline = vec![
            ("drop_no_server", 2),
            ("sticky_hits", 5),
            ("sticky_learned", 1),
        ];
        let server = |name: &str, open| Server {
            name: name.into(),
            address: "10.0.0.11".parse().unwrap(),
            port: None,
            weight: 1,
            state: AdminState::Up,
            active_connections: open,
            connections: 6,
            packets: 0,
            bytes: 0,
            health: Some("up".into()),
            syn_unanswered: 1,
            resets: 2,
        };
        MetricsSample {
            ports: vec![("lan".into(), PortStats::default())],
            workers: vec![w.clone(), w],
            services: vec![Service {
                name: "we\"b".into(),
                vip: "10.100.0.10".parse().unwrap(),
                protocol: "tcp".into(),
                port: Some(80),
                mode: "nat".into(),
                scheduler: "rr".into(),
                persistence: None,
                connections: 6,
                no_server: 0,
                packets_in: 0,
                bytes_in: 0,
                packets_out: 0,
                bytes_out: 0,
                servers: vec![server("s1", 0), server("s2", 4)],
            }],
            control: ControlCounters::default(),
            more: Vec::new(),
        }
    }

    #[test]
    fn families_are_declared_once_and_sum_the_workers() {
        let text = render(&sample());
        let mut seen = std::collections::HashSet::new();
        for l in text.lines().filter(|l| l.starts_with("# TYPE ")) {
            let name = l.split_whitespace().nth(2).unwrap();
            assert!(seen.insert(name.to_string()), "{name} twice");
        }
        assert!(
            text.contains("tack_worker_drops_total{worker=\"1\",reason=\"no_server\"} 2"),
            "{text}"
        );
        assert!(
            text.contains("tack_server_connections_total{service=\"we\\\"b\",server=\"s2\"} 6"),
            "{text}"
        );
        assert!(
            text.contains("tack_server_active_connections{service=\"we\\\"b\",server=\"s2\"} 4"),
            "{text}"
        );
        assert!(
            text.contains(
                "tack_service_active_connections{service=\"we\\\"b\",vip=\"10.100.0.10\"} 4"
            ),
            "{text}"
        );
        assert!(
            text.contains("tack_worker_sticky_misses_total{worker=\"0\"} 1"),
            "{text}"
        );
        assert!(
            text.contains(
                "tack_server_admin_state{service=\"we\\\"b\",server=\"s1\",state=\"up\"} 1"
            ),
            "{text}"
        );
    }
}
