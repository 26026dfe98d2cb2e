//! Next-hop resolution: requests, held frames, release, retries, failure,
//! probes of stale entries, and sharing what one worker learned.

mod pipeline_common;

use std::sync::Arc;

use pipeline_common::*;
use tack_dataplane::pipeline::{ControlMsg, Event, NeighState, Pipeline, WorkerSpec};
use tack_dataplane::{Frame, Time, VecAlloc, VecFrame};

fn bare() -> Harness {
    Harness::new(config(forwarding_services()))
}

#[test]
fn arp_resolution_holds_then_releases() {
    let mut h = bare();
    let (tx, _) = h.rx(0, fixture!("nat4_syn"));
    // The SYN waits; an ARP request for the server goes out on port 1.
    assert_frame(&only(&tx, 1), fixture!("arp_req_for_server"));
    assert_eq!(h.counters().held, 1);
    assert_eq!(h.counters().arp_requests_sent, 1);
    assert_eq!(h.counters().tx_originated, 1);
    let n = h.p.neighbors().next().unwrap();
    assert_eq!((n.state, n.held), (NeighState::Incomplete, 1));
    // The answer releases it, DNAT'd and addressed.
    let (tx, host) = h.rx(1, fixture!("arp_rep_server"));
    assert_frame(&only(&tx, 1), fixture!("nat4_syn_out"));
    assert_eq!(
        host.len(),
        1,
        "a reply to the port's address also goes to the host"
    );
    assert_eq!(h.counters().neigh_released, 1);
    // The server's answer needs the client's MAC: resolved the same way.
    let (tx, _) = h.rx(1, fixture!("nat4_synack"));
    assert_frame(&only(&tx, 0), fixture!("arp_req_for_client"));
    let (tx, _) = h.rx(0, fixture!("arp_rep_client"));
    assert_frame(&only(&tx, 0), fixture!("nat4_synack_out"));
    assert_eq!(h.counters().neigh_released, 2);
    h.check_accounting();
}

#[test]
fn ndp_resolution() {
    let mut h = bare();
    let (tx, _) = h.rx(0, fixture!("nat6_syn"));
    assert_frame(&only(&tx, 1), fixture!("ns_for_server6"));
    assert_eq!(h.counters().ndp_solicits_sent, 1);
    let (tx, host) = h.rx(1, fixture!("na_server6"));
    assert_frame(&only(&tx, 1), fixture!("nat6_syn_out"));
    assert_eq!(host.len(), 1);
    assert_eq!(h.p.neighbor(1, a6(SERVER6)), Some(S_MAC));
}

#[test]
fn retries_then_failure_then_holddown() {
    let mut h = bare();
    h.rx(0, fixture!("nat4_syn"));
    // Two retransmissions a second apart.
    for _ in 0..2 {
        let (tx, _) = h.poll_after(1000);
        assert_frame(&only(&tx, 1), fixture!("arp_req_for_server"));
    }
    assert_eq!(h.counters().arp_requests_sent, 3);
    // No answer to the third: the held SYN is dropped.
    let (tx, _) = h.poll_after(1000);
    nothing(&tx);
    assert_eq!(h.counters().neigh_failed, 1);
    assert_eq!(h.counters().neigh_hold_dropped, 1);
    assert_eq!(h.p.neighbors().next().unwrap().state, NeighState::Failed);
    // During the hold-down, frames for it are dropped without new requests.
    let (tx, _) = h.rx(0, fixture!("nat4_data"));
    nothing(&tx);
    assert_eq!(h.counters().drop_neigh_failed, 1);
    // After it, the next frame starts a new resolution.
    h.now = Time(h.now.as_nanos() + 1_500_000_000);
    let (tx, _) = h.rx(0, fixture!("nat4_data"));
    assert_frame(&only(&tx, 1), fixture!("arp_req_for_server"));
    assert_eq!(h.counters().held, 2);
    h.check_accounting();
}

#[test]
fn hold_queue_is_bounded() {
    let mut h = bare();
    let syn = fixture!("nat4_syn");
    // Ten SYNs of different client ports: 8 held (default), 2 dropped.
    let frames: Vec<Vec<u8>> = (0..10u16)
        .map(|i| {
            let mut f = syn.to_vec();
            // Source port at 14 + 20; the checksum does not matter for holding.
            f[34..36].copy_from_slice(&(50000 + i).to_be_bytes());
            f
        })
        .collect();
    let refs: Vec<&[u8]> = frames.iter().map(|f| &f[..]).collect();
    h.rx_many(0, &refs);
    assert_eq!(h.counters().held, 8);
    assert_eq!(h.counters().drop_neigh_queue_full, 2);
    assert_eq!(h.counters().arp_requests_sent, 1);
    let (tx, _) = h.rx(1, fixture!("arp_rep_server"));
    assert_eq!(tx[1].len(), 8);
}

#[test]
fn stale_entry_probed_while_used() {
    let mut h = bare();
    h.rx(1, fixture!("arp_rep_server"));
    h.rx(0, fixture!("arp_rep_client"));
    // 31 s later the entry is stale: the frame still goes out, and a unicast probe with it.
    h.now = Time(h.now.as_nanos() + 31_000_000_000);
    let (tx, _) = h.rx(0, fixture!("nat4_syn"));
    assert_eq!(tx[1].len(), 2);
    assert_frame(&tx[1][0], fixture!("arp_probe_server"));
    assert_frame(&tx[1][1], fixture!("nat4_syn_out"));
    // Confirmed again by the answer.
    h.rx(1, fixture!("arp_rep_server"));
    let n = h.p.neighbors().find(|n| n.addr == a4(SERVER4)).unwrap();
    assert_eq!(n.state, NeighState::Reachable);
}

#[test]
fn learned_neighbour_shared_with_other_workers() {
    let cfg = Arc::new(config(forwarding_services()));
    let mut w0 = Harness::new((*cfg).clone());
    let mut p1: Pipeline<VecFrame> = Pipeline::new(cfg, WorkerSpec::software(1, 2, 2)).unwrap();
    let mut out = tack_dataplane::pipeline::Output::new(2);
    let mut alloc = VecAlloc::default();
    let now = Time::from_secs(1);
    // Worker 1 holds a SYN and asks.
    let mut rx = vec![VecFrame::new(fixture!("nat4_syn"))];
    p1.process_burst(now, 0, &mut rx, &mut out, &mut alloc);
    assert_eq!(out.tx[1].len(), 1);
    out.clear();
    // The answer lands on worker 0, which publishes it.
    w0.rx(1, fixture!("arp_rep_server"));
    let evs = w0.events();
    let (port, addr, mac) = evs
        .iter()
        .find_map(|e| match *e {
            Event::Neighbor { port, addr, mac } => Some((port, addr, mac)),
            _ => None,
        })
        .unwrap();
    // The control thread installs it in worker 1; its next poll releases the SYN.
    p1.apply(ControlMsg::Neighbor { port, addr, mac });
    p1.poll(now, &mut out, &mut alloc);
    assert_eq!(out.tx[1].len(), 1);
    assert_frame(out.tx[1][0].bytes(), fixture!("nat4_syn_out"));
    assert_eq!(p1.counters().neigh_installed, 1);
}

#[test]
fn static_neighbour_is_used_at_once_and_never_probed_aged_or_replaced() {
    use tack_dataplane::pipeline::StaticNeighbor;
    let server = StaticNeighbor {
        port: 1,
        addr: a4(SERVER4),
        mac: S_MAC,
    };
    let mut cfg = config(forwarding_services());
    cfg.static_neighbors = vec![server];
    let mut h = Harness::new(cfg.clone());
    let n = h.p.neighbors().find(|n| n.addr == a4(SERVER4)).unwrap();
    assert_eq!((n.state, n.mac), (NeighState::Permanent, Some(S_MAC)));
    // The first SYN goes out at once: no ARP request, nothing held.
    let (tx, _) = h.rx(0, fixture!("nat4_syn"));
    assert_frame(&only(&tx, 1), fixture!("nat4_syn_out"));
    assert_eq!(h.counters().arp_requests_sent, 0);
    assert_eq!(h.counters().held, 0);
    // An ARP reply with another MAC for it changes nothing, and is not published.
    let mut forged = fixture!("arp_rep_server").to_vec();
    forged[6..12].copy_from_slice(&S2_MAC.0);
    forged[22..28].copy_from_slice(&S2_MAC.0);
    h.rx(1, &forged);
    assert_eq!(h.p.neighbor(1, a4(SERVER4)), Some(S_MAC));
    assert!(
        !h.events()
            .iter()
            .any(|e| matches!(e, Event::Neighbor { addr, .. } if *addr == a4(SERVER4))),
        "a static entry is not learned again"
    );
    // Long past `reachable` (30 s) and `gc_idle` (600 s) unused: still
    // there, and used without a probe (the SYN's connection has expired:
    // this one opens a new one).
    h.poll_after(700_000);
    h.poll_after(1_000);
    let (tx, _) = h.rx(0, fixture!("nat4_syn"));
    assert_frame(&only(&tx, 1), fixture!("nat4_syn_out"));
    assert_eq!(h.counters().arp_requests_sent, 0);
    assert_eq!(h.counters().neigh_aged, 0);
    // A flush of the neighbours keeps it.
    h.p.apply(ControlMsg::FlushNeighbors);
    assert_eq!(h.p.neighbor(1, a4(SERVER4)), Some(S_MAC));
    // A configuration without it makes it an ordinary (stale) entry.
    cfg.static_neighbors.clear();
    h.p.set_config(Arc::new(cfg));
    let n = h.p.neighbors().find(|n| n.addr == a4(SERVER4)).unwrap();
    assert_eq!((n.state, n.mac), (NeighState::Stale, Some(S_MAC)));
    h.check_accounting();
}

#[test]
fn static_neighbours_are_checked() {
    use tack_dataplane::pipeline::{ConfigError, StaticNeighbor};
    let mut cfg = config(forwarding_services());
    cfg.static_neighbors = vec![StaticNeighbor {
        port: 7,
        addr: a4(SERVER4),
        mac: S_MAC,
    }];
    let e = Pipeline::<VecFrame>::new(Arc::new(cfg.clone()), WorkerSpec::software(0, 1, 2));
    assert!(
        matches!(e, Err(ConfigError::StaticNeighbor { index: 0, .. })),
        "{e:?}"
    );
    cfg.static_neighbors[0].port = 1;
    cfg.neigh.capacity = 1;
    cfg.static_neighbors.push(StaticNeighbor {
        port: 1,
        addr: a4(SERVER4B),
        mac: S2_MAC,
    });
    let e = Pipeline::<VecFrame>::new(Arc::new(cfg), WorkerSpec::software(0, 1, 2));
    assert!(
        matches!(e, Err(ConfigError::StaticNeighbor { index: 0, .. })),
        "{e:?}"
    );
}
