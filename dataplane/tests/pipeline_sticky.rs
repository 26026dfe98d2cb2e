//! Source persistence through the pipeline: natural-class keys, agreement
//! between workers, spread by weight, idle timeout and rebinding, backup
//! servers, bindings learned elsewhere.

mod pipeline_common;

use std::net::IpAddr;
use std::sync::Arc;

use pipeline_common::*;
use tack_dataplane::ids::{ServerIdx, ServiceIdx};
use tack_dataplane::model::{ForwardMode, Protocol, ServerState, Service};
use tack_dataplane::pipeline::{ControlMsg, Event, Pipeline, WorkerSpec};
use tack_dataplane::sticky::{ClientKey, StickyEvent};
use tack_dataplane::wire::EthernetAddress;
use tack_dataplane::{Time, VecAlloc, VecFrame};

fn sticky_config(s: Service) -> tack_dataplane::pipeline::PipelineConfig {
    sized_config(vec![s])
}

fn learn(p: &mut Pipeline<VecFrame>) {
    p.apply(ControlMsg::Neighbor {
        port: 0,
        addr: a4(ROUTER4),
        mac: R_MAC,
    });
    for (i, s) in SERVERS4.iter().enumerate() {
        p.apply(ControlMsg::Neighbor {
            port: 1,
            addr: a4(s),
            mac: EthernetAddress([2, 0, 0, 0, 0, 3 + i as u8]),
        });
    }
}

fn harness(s: Service) -> Harness {
    let mut h = Harness::new(sticky_config(s));
    learn(&mut h.p);
    h
}

/// Opens a connection from `src` (behind the router) and returns its server.
fn open_from(h: &mut Harness, src: &str, sport: u16) -> IpAddr {
    let f = packet_from(R_MAC, L0_MAC, a4(src), sport, a4(VIP4), 80, SYN, b"");
    let (tx, _) = h.rx(0, &f);
    forwarded_to(&tx)
}

fn reset_from(h: &mut Harness, src: &str, sport: u16) {
    let f = packet_from(R_MAC, L0_MAC, a4(src), sport, a4(VIP4), 80, RST, b"");
    h.rx(0, &f);
}

#[test]
fn natural_class_keys_share_a_server() {
    let mut h = harness(sticky_service([1, 2, 3, 4]));
    for (a, b) in [
        ("172.16.1.5", "172.16.200.9"), // class B: /16
        ("11.1.2.3", "11.200.0.1"),     // class A: /8
        ("198.18.5.1", "198.18.5.77"),  // class C: /24
    ] {
        let first = open_from(&mut h, a, 1000);
        for port in 1001..1005 {
            assert_eq!(open_from(&mut h, b, port), first, "{a} and {b}");
            assert_eq!(open_from(&mut h, a, port), first, "{a} again");
        }
    }
    assert_eq!(h.counters().sticky.learned, 3);
}

#[test]
fn class_d_and_e_are_never_sticky() {
    let mut h = harness(sticky_service([1, 1, 1, 1]));
    // Round robin applies: four connections from one class E source reach four servers.
    let got: Vec<IpAddr> = (0..4)
        .map(|i| open_from(&mut h, "240.0.0.1", 1000 + i))
        .collect();
    let mut uniq = got.clone();
    uniq.sort();
    uniq.dedup();
    assert_eq!(uniq.len(), 4, "{got:?}");
    assert_eq!(h.counters().sticky.unsticky, 4);
}

#[test]
fn choice_spreads_by_weight() {
    let mut h = harness(sticky_service([1, 2, 3, 4]));
    let mut counts = [0u32; 4];
    let n = 4000u32;
    for i in 0..n {
        // Distinct class C networks.
        let src = format!("200.{}.{}.1", i / 256, i % 256);
        let s = open_from(&mut h, &src, 1000);
        let idx = SERVERS4.iter().position(|x| a4(x) == s).unwrap();
        counts[idx] += 1;
        reset_from(&mut h, &src, 1000);
    }
    for (i, &c) in counts.iter().enumerate() {
        let want = n as f64 * (i + 1) as f64 / 10.0;
        let err = (f64::from(c) - want).abs() / want;
        assert!(
            err < 0.15,
            "server {i}: {c} of {n}, expected about {want}: {counts:?}"
        );
    }
}

#[test]
fn two_workers_agree_without_talking() {
    let cfg = Arc::new(sticky_config(sticky_service([1, 2, 3, 4])));
    let mut w: Vec<Pipeline<VecFrame>> = (0..2)
        .map(|i| Pipeline::new(cfg.clone(), WorkerSpec::software(i, 2, 2)).unwrap())
        .collect();
    for p in &mut w {
        learn(p);
    }
    let mut alloc = VecAlloc::default();
    let mut out = tack_dataplane::pipeline::Output::new(2);
    let mut send = |p: &mut Pipeline<VecFrame>, src: &str, sport: u16| -> IpAddr {
        let f = packet_from(R_MAC, L0_MAC, a4(src), sport, a4(VIP4), 80, SYN, b"");
        let mut rx = vec![VecFrame::new(&f)];
        p.process_burst(Time::from_secs(1), 0, &mut rx, &mut out, &mut alloc);
        let frame = out.tx[1].pop().unwrap().into_bytes();
        out.clear();
        tuple(&frame).2
    };
    for i in 0..300u32 {
        // The same key reaches the two workers from two addresses of its class B network.
        let (a, b) = (
            format!("150.{}.1.1", i % 256),
            format!("150.{}.77.9", i % 256),
        );
        let (w0, w1) = w.split_at_mut(1);
        assert_eq!(send(&mut w0[0], &a, 1), send(&mut w1[0], &b, 2), "key {a}");
    }
    // Both published what they learned, with the same servers.
    let mut ev0 = Vec::new();
    let mut ev1 = Vec::new();
    w[0].drain_events(&mut ev0);
    w[1].drain_events(&mut ev1);
    let learned = |ev: &[Event]| -> Vec<(ClientKey, ServerIdx)> {
        ev.iter()
            .filter_map(|e| match e {
                Event::Sticky(StickyEvent::Learned { key, server, .. }) => Some((*key, *server)),
                _ => None,
            })
            .collect()
    };
    assert_eq!(learned(&ev0).len(), 256);
    assert_eq!(learned(&ev0), learned(&ev1));
}

#[test]
fn idle_timeout_restarts_when_connections_end_then_rebinds() {
    let mut h = harness(sticky_service([1, 1, 1, 1]));
    let x = open_from(&mut h, "172.16.1.5", 1000);
    let xi = SERVERS4.iter().position(|s| a4(s) == x).unwrap() as u16;
    // X stops taking new clients (weight 0, still up): its sticky clients stay.
    h.p.apply(ControlMsg::ServerWeight {
        service: ServiceIdx(0),
        server: ServerIdx(xi),
        weight: 0,
    });
    assert_eq!(open_from(&mut h, "172.16.9.9", 1001), x);
    // Both connections end (reset: 10 s), then the key idles for 30 s: still bound.
    reset_from(&mut h, "172.16.1.5", 1000);
    reset_from(&mut h, "172.16.9.9", 1001);
    h.poll_after(11_000);
    assert_eq!(h.p.connection_count(), 0);
    h.poll_after(30_000);
    assert_eq!(h.p.sticky_bindings().count(), 1);
    assert_eq!(open_from(&mut h, "172.16.3.3", 1002), x);
    // That connection ended too; the minute restarts from its end.
    reset_from(&mut h, "172.16.3.3", 1002);
    h.poll_after(11_000);
    h.poll_after(55_000);
    assert_eq!(
        h.p.sticky_bindings().count(),
        1,
        "timer restarted at the last connection's end"
    );
    h.poll_after(7_000);
    assert_eq!(h.p.sticky_bindings().count(), 0);
    assert_eq!(h.counters().sticky.expired, 1);
    // Expired: the key is bound afresh, away from X (no longer eligible).
    assert_ne!(open_from(&mut h, "172.16.1.5", 1003), x);
}

#[test]
fn down_server_rebinds_to_backup() {
    let mut s = sticky_service([1, 1, 1, 1]);
    // Every server's backup is the next one.
    for i in 0..4 {
        s.servers[i].backup = Some(ServerIdx(((i + 1) % 4) as u16));
    }
    let mut h = harness(s);
    let x = open_from(&mut h, "172.16.1.5", 1000);
    let xi = SERVERS4.iter().position(|s| a4(s) == x).unwrap();
    h.events();
    h.p.apply(ControlMsg::ServerState {
        service: ServiceIdx(0),
        server: ServerIdx(xi as u16),
        state: ServerState::Down,
    });
    let backup = a4(SERVERS4[(xi + 1) % 4]);
    assert_eq!(open_from(&mut h, "172.16.2.2", 1001), backup);
    assert_eq!(open_from(&mut h, "172.16.3.3", 1002), backup);
    let ev = h.events();
    assert!(ev.iter().any(|e| matches!(
        e,
        Event::Sticky(StickyEvent::Rebound { from: Some(f), to, .. })
            if usize::from(*f) == xi && usize::from(*to) == (xi + 1) % 4
    )));
}

#[test]
fn bindings_from_other_workers_are_installed() {
    let mut h = harness(sticky_service([1, 1, 1, 1]));
    let key = ClientKey {
        addr: a4("172.16.0.0"),
        prefix: 16,
    };
    h.p.apply(ControlMsg::StickyBinding {
        service: ServiceIdx(0),
        key,
        server: ServerIdx(2),
    });
    assert_eq!(open_from(&mut h, "172.16.44.1", 1000), a4(SERVERS4[2]));
    // A key that is not canonical for the rule is refused.
    h.p.apply(ControlMsg::StickyBinding {
        service: ServiceIdx(0),
        key: ClientKey {
            addr: a4("172.16.5.0"),
            prefix: 24,
        },
        server: ServerIdx(1),
    });
    assert_eq!(h.counters().control_rejected, 1);
    h.p.apply(ControlMsg::FlushSticky { service: None });
    assert_eq!(h.p.sticky_bindings().count(), 0);
}

/// Sticky events not yet drained when a reload reorders services and
/// servers leave in the new indices; those of a removed service are dropped
/// and counted.
#[test]
fn pending_events_follow_a_reload() {
    let mut h = harness(sticky_service([1, 1, 1, 1]));
    let first = open_from(&mut h, "172.16.1.5", 1000);
    let old = SERVERS4.iter().position(|s| a4(s) == first).unwrap();
    // Another service first, and the sticky one's servers in reverse order.
    let other = service(
        a4(VIP4),
        Protocol::Tcp,
        Some(443),
        ForwardMode::Nat,
        &[a4(SERVERS4[0])],
    );
    let mut reordered = sticky_service([1, 1, 1, 1]);
    reordered.servers.reverse();
    let mut cfg = sticky_config(reordered.clone());
    cfg.services =
        Arc::new(tack_dataplane::model::Config::new(vec![other.clone(), reordered]).unwrap());
    h.p.set_config(Arc::new(cfg));
    let mut events = Vec::new();
    h.p.drain_events(&mut events);
    let sticky: Vec<_> = events
        .iter()
        .filter_map(|e| match e {
            Event::Sticky(s) => Some(*s),
            _ => None,
        })
        .collect();
    let key = ClientKey {
        addr: a4("172.16.0.0"),
        prefix: 16,
    };
    assert_eq!(
        sticky,
        vec![StickyEvent::Learned {
            service: ServiceIdx(1),
            key,
            server: ServerIdx((3 - old) as u16),
        }]
    );
    // The connection still reaches the same server, now at its new index.
    assert_eq!(open_from(&mut h, "172.16.1.5", 1001), first);
    assert_eq!(h.counters().sticky.reload_events_dropped, 0);

    // A new key's event, then a reload without its service.
    open_from(&mut h, "11.1.2.3", 1000);
    let mut cfg = sticky_config(other.clone());
    cfg.services = Arc::new(tack_dataplane::model::Config::new(vec![other]).unwrap());
    h.p.set_config(Arc::new(cfg));
    events.clear();
    h.p.drain_events(&mut events);
    assert!(
        !events.iter().any(|e| matches!(e, Event::Sticky(_))),
        "{events:?}"
    );
    assert_eq!(h.counters().sticky.reload_events_dropped, 1);
}

/// `active` (what `tackctl sticky show` prints) counts the key's open
/// connections: one ended by FINs (TIME_WAIT) or by a reset (CLOSE) no
/// longer counts, though it stays in the table and holds the binding.
#[test]
fn active_counts_open_connections_only() {
    let mut h = harness(sticky_service([1, 1, 1, 1]));
    let src = "172.16.1.5";
    let server = open_from(&mut h, src, 1000);
    for sport in [1001, 1002] {
        assert_eq!(open_from(&mut h, src, sport), server);
    }
    let active = |h: &Harness| -> Vec<u32> { h.p.sticky_bindings().map(|b| b.active).collect() };
    assert_eq!(active(&h), [3]);
    // 1000: FIN from the client, FIN from the server, the client's last ACK.
    let client = |l4| packet_from(R_MAC, L0_MAC, a4(src), 1000, a4(VIP4), 80, l4, b"");
    h.rx(0, &client(FIN_ACK));
    h.rx(1, &server_pkt(server, 80, a4(src), 1000, FIN_ACK));
    h.rx(0, &client(ACK));
    // 1001: reset.
    reset_from(&mut h, src, 1001);
    let states: Vec<_> =
        h.p.connections()
            .map(|c| (c.client_port, c.state))
            .collect();
    assert!(
        states.contains(&(1000, tack_dataplane::conn::ConnState::TimeWait))
            && states.contains(&(1001, tack_dataplane::conn::ConnState::Close))
            && states.len() == 3,
        "{states:?}"
    );
    assert_eq!(active(&h), [1]);
    // The reset one leaves the table after 10 s; the TIME_WAIT one lingers
    // (120 s): still one open.
    h.poll_after(15_000);
    assert_eq!(h.p.connections().count(), 2);
    assert_eq!(active(&h), [1]);
    reset_from(&mut h, src, 1002);
    assert_eq!(active(&h), [0]);
    h.check_accounting();
}
