//! Forwarding, byte for byte against scapy: NAT, full NAT, DSR and tunnel,
//! both directions, IPv4 and IPv6; ICMP errors translated and generated.

mod pipeline_common;

use std::net::IpAddr;

use core::time::Duration;
use pipeline_common::*;
use tack_dataplane::pipeline::Output;
use tack_dataplane::pipeline::{FnatTuple, PipelineConfig};
use tack_dataplane::{RxChecksum, Time, VecAlloc, VecFrame};

fn fwd() -> Harness {
    let mut h = Harness::new(config(forwarding_services()));
    h.learn_neighbors();
    h
}

/// Sends `input` on `port` and checks the single frame that comes out on `out_port`.
fn check(h: &mut Harness, port: u16, input: &[u8], out_port: usize, want: &[u8]) {
    let (tx, host) = h.rx(port, input);
    assert!(host.is_empty());
    assert_frame(&only(&tx, out_port), want);
}

#[test]
fn nat4_both_directions() {
    let mut h = fwd();
    check(&mut h, 0, fixture!("nat4_syn"), 1, fixture!("nat4_syn_out"));
    check(
        &mut h,
        1,
        fixture!("nat4_synack"),
        0,
        fixture!("nat4_synack_out"),
    );
    check(
        &mut h,
        0,
        fixture!("nat4_data"),
        1,
        fixture!("nat4_data_out"),
    );
    assert_eq!(h.counters().conn_created, 1);
    assert_eq!(h.counters().tx_forward, 3);
    assert_eq!(h.p.connection_count(), 1);
    let c = h.p.connections().next().unwrap();
    assert_eq!(c.state, tack_dataplane::conn::ConnState::Established);
    assert_eq!(c.server_addr, Some(a4(SERVER4)));
}

#[test]
fn nat4_port_translation_and_udp() {
    let mut h = fwd();
    check(
        &mut h,
        0,
        fixture!("nat4p_syn"),
        1,
        fixture!("nat4p_syn_out"),
    );
    check(
        &mut h,
        1,
        fixture!("nat4p_synack"),
        0,
        fixture!("nat4p_synack_out"),
    );
    check(&mut h, 0, fixture!("nat4u_q"), 1, fixture!("nat4u_q_out"));
    check(&mut h, 1, fixture!("nat4u_r"), 0, fixture!("nat4u_r_out"));
    check(&mut h, 0, fixture!("nat4u0_q"), 1, fixture!("nat4u0_q_out"));
}

#[test]
fn full_nat4_both_directions() {
    let mut h = fwd();
    check(
        &mut h,
        0,
        fixture!("fnat4_syn"),
        1,
        fixture!("fnat4_syn_out"),
    );
    check(
        &mut h,
        1,
        fixture!("fnat4_synack"),
        0,
        fixture!("fnat4_synack_out"),
    );
    let c = h.p.connections().next().unwrap();
    assert_eq!(c.local, Some((a4(LOCAL4), 1024)));
}

/// After a restart, the full-NAT tuples the previous instance used are
/// not handed out again while the servers may hold them in TIME_WAIT; once
/// the quarantine is over they are.
#[test]
fn full_nat_quarantine_after_restart() {
    let mut before = fwd();
    before.rx(0, fixture!("fnat4_syn"));
    let used: Vec<FnatTuple> = before.p.fnat_tuples().collect();
    assert_eq!(
        used,
        [FnatTuple {
            protocol: 6,
            server: a4(SERVER4),
            server_port: 443,
            local: a4(LOCAL4),
            local_port: 1024,
        }]
    );
    // The next instance would start its walk on the same port.
    let mut after = fwd();
    after
        .p
        .quarantine_fnat(used.iter().copied(), Duration::from_secs(60));
    assert_eq!(after.p.quarantined(), 1);
    after.rx(0, fixture!("fnat4_syn"));
    let c = after.p.connections().next().unwrap();
    assert_eq!(c.local, Some((a4(LOCAL4), 1025)));
    assert_eq!(after.counters().fnat_port_quarantined, 1);
    // A minute later the tuple is free again.
    let mut later = fwd();
    later
        .p
        .quarantine_fnat(used.iter().copied(), Duration::from_secs(60));
    later.poll_after(60_001);
    assert_eq!(later.p.quarantined(), 0);
    later.rx(0, fixture!("fnat4_syn"));
    let c = later.p.connections().next().unwrap();
    assert_eq!(c.local, Some((a4(LOCAL4), 1024)));
    assert_eq!(later.counters().fnat_port_quarantined, 0);
}

/// The port walk a worker publishes moves past each local port handed
/// out; a worker resumed ahead of a checkpointed walk (a restart after a
/// crash, which saves no tuples) hands out ports from there.
#[test]
fn full_nat_walk_resumes_where_it_is_told() {
    let mut before = fwd();
    let fresh = before.p.fnat_walk();
    before.rx(0, fixture!("fnat4_syn"));
    let walk = before.p.fnat_walk();
    let moved: Vec<usize> = (0..walk.len()).filter(|&i| walk[i] != fresh[i]).collect();
    assert_eq!(moved.len(), 1, "{fresh:?} {walk:?}");
    let w = walk[moved[0]];
    assert_eq!((w.cursor, w.walked), (1025, 1));

    let mut after = fwd();
    let cursors = vec![40_000; walk.len()];
    after.p.resume_fnat_walk(&cursors);
    after.rx(0, fixture!("fnat4_syn"));
    let c = after.p.connections().next().unwrap();
    assert_eq!(c.local, Some((a4(LOCAL4), 40_000)));
    assert_eq!(after.p.fnat_walk()[moved[0]].cursor, 40_001);
}

#[test]
fn dsr4_rewrites_macs_only() {
    let mut h = fwd();
    check(&mut h, 0, fixture!("dsr4_syn"), 1, fixture!("dsr4_syn_out"));
}

#[test]
fn tunnel4_encapsulates_and_clamps_mss() {
    let mut h = fwd();
    check(&mut h, 0, fixture!("tun4_syn"), 1, fixture!("tun4_syn_out"));
    assert_eq!(h.counters().mss_clamped, 1);
    // A DF segment that no longer fits: fragmentation needed back to the client.
    check(
        &mut h,
        0,
        fixture!("tun4_big"),
        0,
        fixture!("tun4_big_icmp"),
    );
    assert_eq!(h.counters().drop_too_big, 1);
    assert_eq!(h.counters().icmp_errors_sent, 1);
    check(
        &mut h,
        0,
        fixture!("tun46_syn"),
        1,
        fixture!("tun46_syn_out"),
    );
}

#[test]
fn ipv6_all_modes() {
    let mut h = fwd();
    check(&mut h, 0, fixture!("nat6_syn"), 1, fixture!("nat6_syn_out"));
    check(
        &mut h,
        1,
        fixture!("nat6_synack"),
        0,
        fixture!("nat6_synack_out"),
    );
    check(
        &mut h,
        0,
        fixture!("fnat6_syn"),
        1,
        fixture!("fnat6_syn_out"),
    );
    check(
        &mut h,
        1,
        fixture!("fnat6_synack"),
        0,
        fixture!("fnat6_synack_out"),
    );
    check(&mut h, 0, fixture!("dsr6_syn"), 1, fixture!("dsr6_syn_out"));
    check(&mut h, 0, fixture!("tun6_syn"), 1, fixture!("tun6_syn_out"));
    check(
        &mut h,
        0,
        fixture!("tun6_big"),
        0,
        fixture!("tun6_big_icmp"),
    );
}

#[test]
fn ttl_exceeded_answered() {
    let mut h = fwd();
    check(&mut h, 0, fixture!("ttl1_syn"), 0, fixture!("ttl1_icmp"));
    assert_eq!(h.counters().drop_ttl_exceeded, 1);
    check(&mut h, 0, fixture!("hlim1_syn"), 0, fixture!("hlim1_icmp"));
    assert_eq!(h.counters().drop_ttl_exceeded, 2);
}

#[test]
fn icmp_errors_translated_nat() {
    let mut h = fwd();
    h.rx(0, fixture!("nat4_syn"));
    check(
        &mut h,
        1,
        fixture!("nat4_err_srv"),
        0,
        fixture!("nat4_err_srv_out"),
    );
    check(
        &mut h,
        0,
        fixture!("nat4_err_cli"),
        1,
        fixture!("nat4_err_cli_out"),
    );
    h.rx(0, fixture!("nat6_syn"));
    check(
        &mut h,
        0,
        fixture!("nat6_err_cli"),
        1,
        fixture!("nat6_err_cli_out"),
    );
    check(
        &mut h,
        1,
        fixture!("nat6_err_srv"),
        0,
        fixture!("nat6_err_srv_out"),
    );
    assert_eq!(h.counters().icmp_errors_translated, 4);
}

#[test]
fn icmp_errors_translated_full_nat_and_dsr() {
    let mut h = fwd();
    h.rx(0, fixture!("fnat4_syn"));
    check(
        &mut h,
        1,
        fixture!("fnat4_err_srv"),
        0,
        fixture!("fnat4_err_srv_out"),
    );
    check(
        &mut h,
        0,
        fixture!("fnat4_err_cli"),
        1,
        fixture!("fnat4_err_cli_out"),
    );
    h.rx(0, fixture!("dsr4_syn"));
    check(
        &mut h,
        0,
        fixture!("dsr4_err_cli"),
        1,
        fixture!("dsr4_err_cli_out"),
    );
    assert_eq!(h.counters().icmp_errors_translated, 2);
    assert_eq!(h.counters().icmp_errors_to_server, 1);
}

/// The IPv6 counterparts, on a pipeline of their own (the full-NAT port
/// cursor is per egress port, so an earlier IPv4 flow would move it).
#[test]
fn icmpv6_errors_translated_full_nat_and_dsr() {
    let mut h = fwd();
    h.rx(0, fixture!("fnat6_syn"));
    check(
        &mut h,
        1,
        fixture!("fnat6_err_srv"),
        0,
        fixture!("fnat6_err_srv_out"),
    );
    check(
        &mut h,
        0,
        fixture!("fnat6_err_cli"),
        1,
        fixture!("fnat6_err_cli_out"),
    );
    h.rx(0, fixture!("dsr6_syn"));
    check(
        &mut h,
        0,
        fixture!("dsr6_err_cli"),
        1,
        fixture!("dsr6_err_cli_out"),
    );
    assert_eq!(h.counters().icmp_errors_translated, 2);
    assert_eq!(h.counters().icmp_errors_to_server, 1);
}

#[test]
fn icmp_error_without_connection_dropped() {
    let mut h = fwd();
    let (tx, host) = h.rx(0, fixture!("nat4_err_cli"));
    nothing(&tx);
    assert!(host.is_empty());
    assert_eq!(h.counters().drop_icmp_error_no_conn, 1);
}

#[test]
fn strays_dropped_with_reasons() {
    let mut h = fwd();
    let (tx, _) = h.rx(0, fixture!("nat4_midstream"));
    nothing(&tx);
    assert_eq!(h.counters().drop_tcp_no_conn, 1);
    let (tx, _) = h.rx(0, fixture!("udp_no_service"));
    nothing(&tx);
    assert_eq!(h.counters().drop_no_service, 1);
    let (tx, _) = h.rx(0, fixture!("frag_to_vip"));
    nothing(&tx);
    assert_eq!(h.counters().drop_fragment, 1);
}

/// A burst of 32 frames is handled as 32 one-frame bursts would be, in
/// order, although its connection lookups are prefetched and probed ahead
/// of the frames that are handled: the same frames go out, and a flow whose
/// SYN is repeated within the burst gets one connection (the repeat sees
/// the connection its first SYN created a few frames earlier). Covers NAT
/// and full NAT, IPv4 and IPv6, both directions, and RSTs closing flows
/// whose later frames are already probed.
#[test]
fn a_burst_is_handled_like_single_frames() {
    let mut burst = fwd();
    let mut single = fwd();
    let services = [
        (a4(VIP4), 80, a4(CLIENT4)),
        (a4(VIP4), 443, a4(CLIENT4)),
        (a6(VIP6), 443, a6(CLIENT6)),
        (a6(VIP6), 8443, a6(CLIENT6)),
    ];
    let flow = |i: u16| {
        let (vip, port, client) = services[usize::from(i) % services.len()];
        (client, 20000 + i, vip, port)
    };
    // Client frames: 12 flows, each SYN sent twice, interleaved.
    let mut syns = Vec::new();
    for i in 0..12u16 {
        for j in [i, i.saturating_sub(2)] {
            let (c, cp, v, vp) = flow(j);
            syns.push(client_pkt(c, cp, v, vp, SYN));
        }
    }
    let feed = |h: &mut Harness, port: u16, frames: &[Vec<u8>], one_by_one: bool| {
        let mut out = Output::new(2);
        let chunk = if one_by_one { 1 } else { frames.len() };
        for c in frames.chunks(chunk) {
            let mut rx: Vec<VecFrame> = c.iter().map(|f| VecFrame::new(f)).collect();
            h.p.process_burst(
                Time::from_secs(1),
                port,
                &mut rx,
                &mut out,
                &mut VecAlloc::default(),
            );
        }
        out.tx
            .into_iter()
            .map(|q| q.into_iter().map(VecFrame::into_bytes).collect::<Vec<_>>())
            .collect::<Vec<_>>()
    };
    let a = feed(&mut burst, 0, &syns, false);
    let b = feed(&mut single, 0, &syns, true);
    assert_eq!(a, b);
    assert_eq!(a[1].len(), syns.len(), "every SYN forwarded");
    assert_eq!(burst.p.connection_count(), 12);
    assert_eq!(single.p.connection_count(), 12);
    // Server replies to what went out (one per flow), client ACKs, and
    // RSTs for every third flow followed by more of its data.
    let mut mixed = Vec::new();
    let mut seen = std::collections::HashSet::new();
    for f in &a[1] {
        let (c, cp, s, sp) = tuple(f);
        if seen.insert((c, cp)) {
            mixed.push((1, server_pkt(s, sp, c, cp, L4::Tcp(0x12))));
        }
    }
    for i in 0..12u16 {
        let (c, cp, v, vp) = flow(i);
        mixed.push((
            0,
            client_pkt(c, cp, v, vp, if i % 3 == 0 { RST } else { ACK }),
        ));
        mixed.push((0, client_pkt(c, cp, v, vp, ACK)));
    }
    // Interleave replies (port 1) and client frames (port 0) as two bursts
    // per port, in a fixed order, on both pipelines.
    for port in [1u16, 0] {
        let frames: Vec<Vec<u8>> = mixed
            .iter()
            .filter(|(p, _)| *p == port)
            .map(|(_, f)| f.clone())
            .collect();
        assert!(frames.len() > 8);
        let a = feed(&mut burst, port, &frames, false);
        let b = feed(&mut single, port, &frames, true);
        assert_eq!(a, b, "port {port}");
    }
    assert_eq!(burst.p.connection_count(), single.p.connection_count());
    assert_eq!(
        burst.counters().conn_created,
        single.counters().conn_created
    );
    assert_eq!(burst.counters().tx_forward, single.counters().tx_forward);
}

/// The NIC's verdict on the IPv4 header checksum is taken: without one the
/// pipeline checks, a frame the NIC found wrong is dropped (counted as a bad
/// checksum) and one it verified is not checked again. With checking turned
/// off, neither the pipeline nor the NIC's verdict drops anything.
#[test]
fn nic_checksum_verdicts() {
    let bad_csum = |h: &Harness| h.counters().get("drop_wire_bad_ipv4_checksum");
    let good = client_pkt(a4(CLIENT4), 40000, a4(VIP4), 80, SYN);
    let mut corrupt = good.clone();
    corrupt[14 + 10] ^= 0x01; // the IPv4 header checksum
    // The destination of the one frame sent to the servers' port (not
    // parsed: a wrong checksum stays wrong through the rewrite).
    let sent_to =
        |tx: &[Vec<Vec<u8>>]| IpAddr::from(<[u8; 4]>::try_from(&only(tx, 1)[30..34]).unwrap());
    let mut h = Harness::basic();
    h.learn_neighbors();

    let (tx, _) = h.rx_verdict(0, &corrupt, RxChecksum::Unknown);
    nothing(&tx);
    assert_eq!(bad_csum(&h), Some(1));
    let (tx, _) = h.rx_verdict(0, &good, RxChecksum::Bad);
    nothing(&tx);
    assert_eq!(bad_csum(&h), Some(2));
    let (tx, _) = h.rx_verdict(0, &corrupt, RxChecksum::Good);
    assert_eq!(sent_to(&tx), a4(SERVER4), "not checked again");
    assert_eq!(bad_csum(&h), Some(2));
    let (tx, _) = h.rx_verdict(0, &good, RxChecksum::Unknown);
    assert_eq!(forwarded_to(&tx), a4(SERVER4));

    let mut off = Harness::new(PipelineConfig {
        verify_ipv4_checksum: false,
        ..config(basic_services())
    });
    off.learn_neighbors();
    for (frame, csum) in [
        (&corrupt, RxChecksum::Unknown),
        (&good, RxChecksum::Bad),
        (&corrupt, RxChecksum::Good),
    ] {
        let (tx, _) = off.rx_verdict(0, frame, csum);
        assert_eq!(sent_to(&tx), a4(SERVER4), "{csum:?}");
    }
    assert_eq!(bad_csum(&off), Some(0));
}
