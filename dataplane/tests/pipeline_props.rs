//! Properties of the pipeline (proptest): checksums are valid after every
//! rewrite, a flow never changes server, two workers agree on sticky keys.

mod pipeline_common;

use std::collections::HashMap;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::sync::Arc;

use pipeline_common::*;
use proptest::prelude::*;
use tack_dataplane::ids::{ServerIdx, ServiceIdx};
use tack_dataplane::model::{
    ClientKeyRule, Config, ForwardMode, Persistence, Protocol, RealServer, SchedulerKind, Service,
};
use tack_dataplane::pipeline::{ControlMsg, Output, Pipeline, WorkerSpec};
use tack_dataplane::wire::{IpProtocol, L3Kind, checksum, classify};
use tack_dataplane::{Time, VecAlloc, VecFrame};

/// Whether every checksum of an Ethernet frame verifies: the IPv4 header,
/// the TCP/UDP segment, and for an IP-in-IP packet the inner ones too.
fn checksums_ok(frame: &[u8]) -> Result<(), String> {
    let c = classify(frame).map_err(|e| format!("unparseable: {e}"))?;
    let ip = &frame[c.l3_offset..c.l3_end];
    if c.l3 == L3Kind::Ipv4 {
        let hl = usize::from(ip[0] & 0x0f) * 4;
        if checksum::sum(&ip[..hl]) != 0xffff {
            return Err("IPv4 header checksum".into());
        }
    }
    match c.protocol {
        IpProtocol::TCP | IpProtocol::UDP => {
            let seg = &frame[c.l4_offset..c.l3_end];
            let ph =
                checksum::pseudo_header(&c.src_addr, &c.dst_addr, c.protocol.0, seg.len() as u32)
                    .map_err(|e| e.to_string())?;
            if !checksum::l4_verify(ph, seg) {
                return Err(format!("{:?} checksum", c.protocol));
            }
            Ok(())
        }
        IpProtocol::IPIP | IpProtocol::IPV6 => {
            // Re-frame the inner packet behind a copy of the Ethernet header.
            let mut inner = frame[..c.l3_offset].to_vec();
            let et: u16 = if c.protocol == IpProtocol::IPIP {
                0x0800
            } else {
                0x86dd
            };
            let n = inner.len();
            inner[n - 2..].copy_from_slice(&et.to_be_bytes());
            inner.extend_from_slice(&frame[c.l4_offset..c.l3_end]);
            checksums_ok(&inner)
        }
        p => Err(format!("unexpected protocol {p:?}")),
    }
}

fn modes() -> impl Strategy<Value = ForwardMode> {
    prop_oneof![
        Just(ForwardMode::Nat),
        Just(ForwardMode::FullNat),
        Just(ForwardMode::Dsr),
        Just(ForwardMode::Tunnel),
    ]
}

fn checksum_harness(mode: ForwardMode, v6: bool) -> Harness {
    let (vip, server) = if v6 {
        (a6(VIP6), a6(SERVER6))
    } else {
        (a4(VIP4), a4(SERVER4))
    };
    let mut h = Harness::new(config(vec![
        service(vip, Protocol::Tcp, None, mode, &[server]),
        service(vip, Protocol::Udp, None, mode, &[server]),
    ]));
    h.learn_neighbors();
    h
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 200, .. ProptestConfig::default() })]

    #[test]
    fn checksums_valid_after_every_rewrite(
        mode in modes(),
        v6 in any::<bool>(),
        tcp in any::<bool>(),
        host in 1u32..0xffff_fff0,
        cport in 1u16..,
        vport in 1u16..,
        flags in prop_oneof![Just(0x02u8), Just(0x10), Just(0x18), Just(0x11)],
        payload in proptest::collection::vec(any::<u8>(), 0..300),
        reply_payload in proptest::collection::vec(any::<u8>(), 0..300),
    ) {
        let mut h = checksum_harness(mode, v6);
        // Clients behind the router, anywhere outside our own networks.
        let client = if v6 {
            IpAddr::V6(Ipv6Addr::from(0x2001_0db8_0099_0000_0000_0000_0000_0000u128 | u128::from(host)))
        } else {
            IpAddr::V4(Ipv4Addr::from(0x0b00_0000 | (host & 0x00ff_ffff)))
        };
        let vip = if v6 { a6(VIP6) } else { a4(VIP4) };
        let l4 = if tcp { L4::Tcp(0x02) } else { L4::Udp };
        let syn = packet_from(R_MAC, L0_MAC, client, cport, vip, vport, l4, &payload);
        let (tx, _) = h.rx(0, &syn);
        prop_assert_eq!(tx[1].len(), 1, "forwarded: {:?}", h.counters());
        prop_assert_eq!(checksums_ok(&tx[1][0]), Ok(()));
        let later = packet_from(R_MAC, L0_MAC, client, cport, vip, vport,
            if tcp { L4::Tcp(flags) } else { L4::Udp }, &reply_payload);
        let (tx, _) = h.rx(0, &later);
        prop_assert_eq!(tx[1].len(), 1);
        prop_assert_eq!(checksums_ok(&tx[1][0]), Ok(()));
        if matches!(mode, ForwardMode::Nat | ForwardMode::FullNat) {
            // The server's answer, to the client or the local address.
            let (src, sport, dst, dport) = tuple(&tx[1][0]);
            let reply = packet_from(S_MAC, L1_MAC, dst, dport, src, sport, l4, &reply_payload);
            let (tx, _) = h.rx(1, &reply);
            prop_assert_eq!(tx[0].len(), 1);
            prop_assert_eq!(checksums_ok(&tx[0][0]), Ok(()));
            prop_assert_eq!(tuple(&tx[0][0]), (vip, vport, client, cport));
        }
        h.check_accounting();
    }
}

#[derive(Debug, Clone)]
enum Op {
    /// A packet of flow `i` (the first one is a SYN).
    Packet(u8),
    /// A server's weight changes.
    Weight(u8, u16),
    /// A server drains.
    Drain(u8),
    /// A server comes (back) up.
    Up(u8),
    /// A server is added by a reload.
    Add,
}

fn ops() -> impl Strategy<Value = Vec<Op>> {
    proptest::collection::vec(
        prop_oneof![
            8 => (0u8..12).prop_map(Op::Packet),
            1 => (0u8..6, 0u16..5).prop_map(|(s, w)| Op::Weight(s, w)),
            1 => (0u8..6).prop_map(Op::Drain),
            1 => (0u8..6).prop_map(Op::Up),
            1 => Just(Op::Add),
        ],
        1..80,
    )
}

fn scheds() -> impl Strategy<Value = SchedulerKind> {
    prop_oneof![
        Just(SchedulerKind::RoundRobin),
        Just(SchedulerKind::WeightedRoundRobin),
        Just(SchedulerKind::LeastConn),
        Just(SchedulerKind::WeightedLeastConn),
        Just(SchedulerKind::SourceHash),
        Just(SchedulerKind::Maglev),
        Just(SchedulerKind::Rendezvous),
    ]
}

fn server_addr(i: usize) -> IpAddr {
    IpAddr::V4(Ipv4Addr::new(10, 1, 0, 10 + i as u8))
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 96, .. ProptestConfig::default() })]

    #[test]
    fn a_flow_never_changes_server(sched in scheds(), sticky in any::<bool>(), ops in ops()) {
        let mut servers: Vec<IpAddr> = (0..3).map(server_addr).collect();
        let make = |servers: &[IpAddr]| {
            let mut s = service(a4(VIP4), Protocol::Tcp, Some(80), ForwardMode::Nat, servers);
            s.scheduler = sched;
            if sticky {
                s.persistence = Some(Persistence { key: ClientKeyRule::Prefix(24), timeout_minutes: 5 });
            }
            s
        };
        let mut h = Harness::new(config(vec![make(&servers)]));
        h.p.apply(ControlMsg::Neighbor { port: 0, addr: a4(ROUTER4), mac: R_MAC });
        for i in 0..12 {
            h.p.apply(ControlMsg::Neighbor { port: 1, addr: server_addr(i), mac: S_MAC });
        }
        let mut bound: HashMap<u8, IpAddr> = HashMap::new();
        let mut started: HashMap<u8, bool> = HashMap::new();
        for op in ops {
            match op {
                Op::Packet(f) => {
                    let client = IpAddr::V4(Ipv4Addr::new(11, 0, f / 4, 1 + f));
                    let flags = if started.insert(f, true).is_none() { SYN } else { ACK };
                    let pkt = packet_from(R_MAC, L0_MAC, client, 5000 + u16::from(f), a4(VIP4), 80, flags, b"x");
                    let (tx, _) = h.rx(0, &pkt);
                    if let Some(out) = tx[1].first() {
                        let s = tuple(out).2;
                        let first = *bound.entry(f).or_insert(s);
                        prop_assert_eq!(first, s, "flow {} moved", f);
                    }
                }
                Op::Weight(s, w) => {
                    h.p.apply(ControlMsg::ServerWeight { service: ServiceIdx(0), server: ServerIdx(u16::from(s)), weight: w });
                }
                Op::Drain(s) => {
                    h.p.apply(ControlMsg::ServerState { service: ServiceIdx(0), server: ServerIdx(u16::from(s)), state: tack_dataplane::model::ServerState::Drain });
                }
                Op::Up(s) => {
                    h.p.apply(ControlMsg::ServerState { service: ServiceIdx(0), server: ServerIdx(u16::from(s)), state: tack_dataplane::model::ServerState::Up });
                }
                Op::Add => {
                    if servers.len() < 12 {
                        servers.push(server_addr(servers.len()));
                        // Keep the current states and weights of the others.
                        let cur = h.p.services().service(ServiceIdx(0)).unwrap().clone();
                        let mut next = make(&servers);
                        for (n, o) in next.servers.iter_mut().zip(&cur.servers) {
                            *n = o.clone();
                        }
                        let mut cfg = (**h.p.config()).clone();
                        cfg.services = Arc::new(Config::new(vec![next]).unwrap());
                        h.p.set_config(Arc::new(cfg));
                    }
                }
            }
        }
        h.check_accounting();
        let _ = RealServer::new(a4(SERVER4));
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 128, .. ProptestConfig::default() })]

    #[test]
    fn workers_agree_on_sticky_keys(
        weights in proptest::collection::vec(0u16..6, 2..7),
        prefix in prop_oneof![Just(None), (8u8..=32).prop_map(Some)],
        srcs in proptest::collection::vec((any::<u32>(), any::<u32>()), 1..20),
    ) {
        let servers: Vec<IpAddr> = (0..weights.len()).map(server_addr).collect();
        let mut s: Service = service(a4(VIP4), Protocol::Tcp, Some(80), ForwardMode::Dsr, &servers);
        for (srv, w) in s.servers.iter_mut().zip(&weights) {
            srv.weight = *w;
        }
        s.persistence = Some(Persistence {
            key: match prefix {
                Some(p) => ClientKeyRule::Prefix(p),
                None => ClientKeyRule::NaturalClass { networks: vec![] },
            },
            timeout_minutes: 5,
        });
        let cfg = Arc::new(config(vec![s]));
        let mut ws: Vec<Pipeline<VecFrame>> = (0..2)
            .map(|i| Pipeline::new(cfg.clone(), WorkerSpec::software(i, 2, 2)).unwrap())
            .collect();
        for p in &mut ws {
            p.apply(ControlMsg::Neighbor { port: 0, addr: a4(ROUTER4), mac: R_MAC });
            for i in 0..servers.len() {
                p.apply(ControlMsg::Neighbor { port: 1, addr: server_addr(i), mac: S_MAC });
            }
        }
        for (a, noise) in srcs {
            // Two sources with the same key: host bits differ.
            let a = a & 0xdfff_ffff; // classes A, B, C (never D/E)
            let keep = match prefix {
                Some(p) => u32::MAX.checked_shl(32 - u32::from(p)).unwrap_or(0),
                // The natural class of `a`: A /8, B /16, C /24.
                None if a >> 31 == 0 => 0xff00_0000,
                None if a >> 30 == 0b10 => 0xffff_0000,
                None => 0xffff_ff00,
            };
            let b = (a & keep) | (noise & !keep);
            let mut got = Vec::new();
            for (p, src) in ws.iter_mut().zip([a, b]) {
                let f = packet_from(R_MAC, L0_MAC, IpAddr::V4(Ipv4Addr::from(src)), 1234, a4(VIP4), 80, SYN, b"");
                let mut rx = vec![VecFrame::new(&f)];
                let mut out = Output::new(2);
                p.process_burst(Time::from_secs(1), 0, &mut rx, &mut out, &mut VecAlloc::default());
                got.push(out.tx[1].pop().map(|f| tuple(&f.into_bytes()).2));
            }
            prop_assert_eq!(got[0], got[1]);
            prop_assert_eq!(got[0].is_some(), weights.iter().any(|&w| w > 0));
        }
    }
}
