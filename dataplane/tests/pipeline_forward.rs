//! Forwarding, byte for byte against scapy: NAT, full NAT, DSR and tunnel,
//! both directions, IPv4 and IPv6; ICMP errors translated and generated.

mod pipeline_common;

use pipeline_common::*;

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
    assert_eq!(h.counters().icmp_errors_translated, 3);
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
