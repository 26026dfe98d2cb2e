//! Software steering and neighbour discovery across workers.
//!
//! * Both directions of a NAT connection are steered to one worker (by the
//!   client's address and port), so the worker that opened it translates the
//!   replies; a full-NAT reply from the same server is not mistaken for one.
//! * Neighbour discovery is not steered; a solicited advertisement landing on
//!   a worker that did not ask creates the entry there and is published; an
//!   advertisement without a target link-layer address confirms an entry.

mod pipeline_common;

use std::sync::Arc;

use pipeline_common::*;
use tack_dataplane::model::{ForwardMode, Protocol};
use tack_dataplane::pipeline::{ControlMsg, Event, Output, Pipeline, PipelineConfig, WorkerSpec};
use tack_dataplane::wire::{
    EtherType, EthernetRepr, Icmpv6Repr, IpProtocol, Ipv6Repr, NdiscRepr, NeighborFlags, classify,
};
use tack_dataplane::{Frame, Time, VecAlloc, VecFrame};

const WORKERS: u16 = 4;
const VIP4_FNAT: &str = "203.0.113.11";

/// NAT and full NAT on port 80 with the same server.
fn cfg() -> Arc<PipelineConfig> {
    Arc::new(config(vec![
        service(
            a4(VIP4),
            Protocol::Tcp,
            Some(80),
            ForwardMode::Nat,
            &[a4(SERVER4)],
        ),
        service(
            a4(VIP4_FNAT),
            Protocol::Tcp,
            Some(80),
            ForwardMode::FullNat,
            &[a4(SERVER4)],
        ),
    ]))
}

fn workers(cfg: &Arc<PipelineConfig>) -> Vec<Pipeline<VecFrame>> {
    (0..WORKERS)
        .map(|i| {
            let mut p = Pipeline::new(cfg.clone(), WorkerSpec::software(i, WORKERS, 2)).unwrap();
            for (port, addr, mac) in [(0, a4(CLIENT4), C_MAC), (1, a4(SERVER4), S_MAC)] {
                p.apply(ControlMsg::Neighbor { port, addr, mac });
            }
            p
        })
        .collect()
}

fn owner(ws: &[Pipeline<VecFrame>], port: u16, f: &[u8]) -> usize {
    let o: Vec<Option<u16>> = ws
        .iter()
        .map(|w| w.owner_worker(&VecFrame::new(f), port))
        .collect();
    assert!(
        o.windows(2).all(|w| w[0] == w[1]),
        "every worker computes the same owner: {o:?}"
    );
    usize::from(o[0].expect("a TCP frame has an owner"))
}

#[test]
fn nat_replies_are_steered_to_the_worker_that_owns_the_connection() {
    let cfg = cfg();
    let mut ws = workers(&cfg);
    let mut owners = std::collections::BTreeSet::new();
    for cport in 40000..40064u16 {
        let syn = packet_from(C_MAC, L0_MAC, a4(CLIENT4), cport, a4(VIP4), 80, SYN, b"");
        let w = owner(&ws, 0, &syn);
        owners.insert(w);
        let out = run(&mut ws[w], 0, &syn);
        assert_eq!(out.tx[1].len(), 1, "the SYN goes to the server");
        // The server's SYN-ACK: server:80 -> client:cport, arriving on port 1.
        let synack = packet_from(
            S_MAC,
            L1_MAC,
            a4(SERVER4),
            80,
            a4(CLIENT4),
            cport,
            L4::Tcp(0x12),
            b"",
        );
        assert_eq!(
            owner(&ws, 1, &synack),
            w,
            "the NAT reply of client port {cport} goes to its owner"
        );
        let out = run(&mut ws[w], 1, &synack);
        assert_eq!(out.tx[0].len(), 1, "translated back to the client");
        let c = classify(out.tx[0][0].bytes()).unwrap();
        assert_eq!((c.src_addr, c.src_port), (a4(VIP4), 80));
        // No other worker knows the connection.
        for (i, other) in ws.iter_mut().enumerate() {
            if i != w {
                let out = run(other, 1, &synack);
                assert!(
                    out.tx[0].is_empty(),
                    "worker {i} does not own the connection"
                );
            }
        }
    }
    assert!(
        owners.len() > 1,
        "clients spread over the workers: {owners:?}"
    );
}

#[test]
fn full_nat_replies_of_a_server_shared_with_nat_follow_rss() {
    let cfg = cfg();
    let mut ws = workers(&cfg);
    for cport in 41000..41032u16 {
        let syn = packet_from(
            C_MAC,
            L0_MAC,
            a4(CLIENT4),
            cport,
            a4(VIP4_FNAT),
            80,
            SYN,
            b"",
        );
        let w = owner(&ws, 0, &syn);
        let out = run(&mut ws[w], 0, &syn);
        assert_eq!(out.tx[1].len(), 1, "{:?}", ws[w].counters());
        let fwd = classify(out.tx[1][0].bytes()).unwrap();
        assert_eq!(fwd.src_addr, a4(LOCAL4));
        // server:80 -> local:lport; the server is also a NAT server on port 80.
        let reply = packet_from(
            S_MAC,
            L1_MAC,
            a4(SERVER4),
            80,
            a4(LOCAL4),
            fwd.src_port,
            L4::Tcp(0x12),
            b"",
        );
        assert_eq!(
            owner(&ws, 1, &reply),
            w,
            "the full-NAT port was chosen for this worker"
        );
        let out = run(&mut ws[w], 1, &reply);
        assert_eq!(out.tx[0].len(), 1);
    }
}

/// A neighbour advertisement from `SERVER6` (S_MAC) to port 1's address.
fn na(target_ll: bool) -> Vec<u8> {
    let src: std::net::Ipv6Addr = SERVER6.parse().unwrap();
    let dst: std::net::Ipv6Addr = PORT1_6.parse().unwrap();
    let msg = Icmpv6Repr::Ndisc(NdiscRepr::NeighborAdvert {
        flags: NeighborFlags(NeighborFlags::SOLICITED.0 | NeighborFlags::OVERRIDE.0),
        target_addr: src,
        lladdr: target_ll.then_some(S_MAC),
    });
    let mut b = vec![0u8; 14 + 40 + msg.len()];
    EthernetRepr {
        src_addr: S_MAC,
        dst_addr: L1_MAC,
        vlan: None,
        ethertype: EtherType::IPV6,
    }
    .emit(&mut b)
    .unwrap();
    Ipv6Repr {
        src_addr: src,
        dst_addr: dst,
        next_header: IpProtocol::ICMPV6,
        payload_len: msg.len(),
        hop_limit: 255,
        traffic_class: 0,
        flow_label: 0,
    }
    .emit(&mut b[14..])
    .unwrap();
    msg.emit(&mut b[54..], &src, &dst).unwrap();
    b
}

#[test]
fn solicited_advertisement_on_another_worker_resolves_the_asker() {
    let cfg = Arc::new(config(forwarding_services()));
    let mut w0: Pipeline<VecFrame> =
        Pipeline::new(cfg.clone(), WorkerSpec::software(0, 2, 2)).unwrap();
    let mut w1: Pipeline<VecFrame> = Pipeline::new(cfg, WorkerSpec::software(1, 2, 2)).unwrap();
    for w in [&mut w0, &mut w1] {
        w.apply(ControlMsg::Neighbor {
            port: 0,
            addr: a6(ROUTER6),
            mac: R_MAC,
        });
    }
    let mut alloc = VecAlloc::default();
    let now = Time::from_secs(1);
    // Worker 1 holds an IPv6 SYN and solicits the server.
    let mut out = Output::new(2);
    let mut rx = vec![VecFrame::new(fixture!("nat6_syn"))];
    w1.process_burst(now, 0, &mut rx, &mut out, &mut alloc);
    assert_eq!(w1.counters().ndp_solicits_sent, 1);
    assert_eq!(w1.counters().held, 1);
    // Neighbour discovery is not steered: it stays where it lands.
    let adv = na(true);
    assert_eq!(w0.owner_worker(&VecFrame::new(&adv), 1), None);
    // The advertisement lands on worker 0, which never asked: it learns and publishes.
    let mut out0 = Output::new(2);
    let mut rx = vec![VecFrame::new(&adv)];
    w0.process_burst(now, 1, &mut rx, &mut out0, &mut alloc);
    assert_eq!(w0.neighbor(1, a6(SERVER6)), Some(S_MAC));
    let mut evs = Vec::new();
    w0.drain_events(&mut evs);
    let (port, addr, mac) = evs
        .iter()
        .find_map(|e| match *e {
            Event::Neighbor { port, addr, mac } => Some((port, addr, mac)),
            _ => None,
        })
        .expect("worker 0 publishes what it learned");
    assert_eq!((port, addr, mac), (1, a6(SERVER6), S_MAC));
    // Installed in worker 1 by the control thread: its held SYN goes out.
    w1.apply(ControlMsg::Neighbor { port, addr, mac });
    let mut out1 = Output::new(2);
    w1.poll(now, &mut out1, &mut alloc);
    assert_eq!(out1.tx[1].len(), 1);
    assert_frame(out1.tx[1][0].bytes(), fixture!("nat6_syn_out"));
}

#[test]
fn advertisement_without_target_address_confirms_a_known_neighbour() {
    let mut h = Harness::new(config(forwarding_services()));
    h.learn_neighbors();
    let before = h.counters().drop_ndp_other;
    let (_, _host) = h.rx(1, &na(false));
    assert_eq!(
        h.counters().drop_ndp_other,
        before,
        "not dropped as unknown"
    );
    assert_eq!(h.p.neighbor(1, a6(SERVER6)), Some(S_MAC));
    // For an unknown neighbour it teaches nothing.
    let mut h = Harness::new(config(forwarding_services()));
    h.rx(1, &na(false));
    assert_eq!(h.p.neighbor(1, a6(SERVER6)), None);
}
