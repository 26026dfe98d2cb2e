//! The SYN proxy (`syn_proxy` services, `pipeline/synproxy.rs`): the
//! handshake and the sequence translation both ways byte for byte against
//! scapy's frames (`testdata/pipeline/gen.py`, "SYN proxy", with the same
//! fixed cookie key and clock), and the steps a client, a flood and a
//! server take through one pipeline.

mod pipeline_common;

use pipeline_common::*;
use tack_dataplane::Time;
use tack_dataplane::model::{ForwardMode, Protocol};
use tack_dataplane::wire::{TcpPacket, classify};

/// gen.py's REDIR_KEY and REDIR_NOW.
const KEY: [u8; 16] = *b"fixture-cookie-k";
const NOW_SECS: u64 = 1234 * 60 + 7;

/// VIP4 tcp/443 full NAT and VIP4 tcp/80 NAT to SERVER4, both SYN-proxied.
fn harness() -> Harness {
    harness_with(false)
}

/// [`harness`], reporting its flow events (as a cluster node does) if
/// `flow_events`.
fn harness_with(flow_events: bool) -> Harness {
    let mut fnat = service(
        a4(VIP4),
        Protocol::Tcp,
        Some(443),
        ForwardMode::FullNat,
        &[a4(SERVER4)],
    );
    fnat.syn_proxy = true;
    let mut nat = service(
        a4(VIP4),
        Protocol::Tcp,
        Some(80),
        ForwardMode::Nat,
        &[a4(SERVER4)],
    );
    nat.syn_proxy = true;
    let mut cfg = config(vec![fnat, nat]);
    cfg.syn_cookie_key = KEY;
    cfg.flow_events = flow_events;
    let mut h = Harness::new(cfg);
    // The clock first, so that the neighbours are fresh at it.
    h.now = Time::from_secs(NOW_SECS);
    h.rx_many(0, &[]);
    h.learn_neighbors();
    h
}

#[test]
fn handshake_and_translation_both_ways_match_the_fixtures() {
    let mut h = harness();
    // 1. The client's SYN: a cookie, no connection.
    let (tx, _) = h.rx(0, fixture!("sp4_syn"));
    assert_frame(&only(&tx, 0), fixture!("sp4_synack"));
    assert_eq!(h.p.connection_count(), 0);
    // 2. Its ACK with the cookie: the server's SYN, a connection.
    let (tx, _) = h.rx(0, fixture!("sp4_ack"));
    assert_frame(&only(&tx, 1), fixture!("sp4_syn_out"));
    assert_eq!(h.p.connection_count(), 1);
    // 3. The server's SYN-ACK: answered in place, the client sees nothing.
    let (tx, _) = h.rx(1, fixture!("sp4_srv_synack"));
    assert_frame(&only(&tx, 1), fixture!("sp4_srv_ack"));
    // 4. Data both ways, and a SACK block, translated.
    let (tx, _) = h.rx(0, fixture!("sp4_data"));
    assert_frame(&only(&tx, 1), fixture!("sp4_data_out"));
    let (tx, _) = h.rx(1, fixture!("sp4_resp"));
    assert_frame(&only(&tx, 0), fixture!("sp4_resp_out"));
    let (tx, _) = h.rx(0, fixture!("sp4_sack"));
    assert_frame(&only(&tx, 1), fixture!("sp4_sack_out"));
    let c = h.counters();
    assert_eq!(
        (
            c.synproxy_syn_cookies,
            c.synproxy_opened,
            c.synproxy_joined,
            c.conn_created
        ),
        (1, 1, 1, 1)
    );
    h.check_accounting();
}

/// In a cluster, a SYN-proxied connection's record leaves once its server
/// answered, with the sequence shift: another node carries the connection
/// on and translates it both ways byte for byte as the node that made it.
#[test]
fn another_node_carries_a_synchronised_connection_on_alike() {
    use tack_dataplane::pipeline::{Event, FlowEvent};
    let opened = |h: &mut Harness| {
        h.events()
            .into_iter()
            .filter_map(|e| match e {
                Event::Flow(f @ FlowEvent::Opened(_)) => Some(f),
                _ => None,
            })
            .collect::<Vec<_>>()
    };
    let mut a = harness_with(true);
    a.rx(0, fixture!("sp4_syn"));
    a.rx(0, fixture!("sp4_ack"));
    assert!(
        opened(&mut a).is_empty(),
        "no record before the server answers"
    );
    a.rx(1, fixture!("sp4_srv_synack"));
    let records = opened(&mut a);
    assert_eq!(records.len(), 1);
    let FlowEvent::Opened(r) = records[0] else {
        unreachable!()
    };
    assert!(r.seq_shift.is_some(), "{r:?}");
    // The node's listing has the shift too (what a joining node is handed).
    let views: Vec<_> = a.p.connections().collect();
    assert_eq!(
        (views[0].syn_proxy, views[0].seq_shift),
        (true, r.seq_shift)
    );
    let mut b = harness_with(true);
    let msg = records[0].to_msg(b.p.services()).expect("same services");
    b.p.apply(msg);
    assert_eq!(b.counters().conn_installed, 1);
    let (tx, _) = b.rx(0, fixture!("sp4_data"));
    assert_frame(&only(&tx, 1), fixture!("sp4_data_out"));
    let (tx, _) = b.rx(1, fixture!("sp4_resp"));
    assert_frame(&only(&tx, 0), fixture!("sp4_resp_out"));
    let (tx, _) = b.rx(0, fixture!("sp4_sack"));
    assert_frame(&only(&tx, 1), fixture!("sp4_sack_out"));
    b.check_accounting();
}

#[test]
fn a_forged_cookie_opens_nothing() {
    let mut h = harness();
    nothing(&h.rx(0, fixture!("sp4_ack_bad")).0);
    assert_eq!(h.p.connection_count(), 0);
    assert_eq!(h.counters().drop_synproxy_bad_cookie, 1);
    h.check_accounting();
}

/// A client segment to the NAT VIP's port 80.
fn seg(sport: u16, seq: u32, ack: u32, flags: u8, data: &[u8]) -> Vec<u8> {
    tcp_from(
        C_MAC,
        L0_MAC,
        (a4(CLIENT4), sport),
        (a4(VIP4), 80),
        (seq, ack, flags),
        if flags == 0x02 { Some(1460) } else { None },
        data,
    )
}

/// A server segment of the NAT connection of client port `sport`.
fn srv(sport: u16, seq: u32, ack: u32, flags: u8, data: &[u8]) -> Vec<u8> {
    tcp_from(
        S_MAC,
        L1_MAC,
        (a4(SERVER4), 80),
        (a4(CLIENT4), sport),
        (seq, ack, flags),
        if flags == 0x12 { Some(1460) } else { None },
        data,
    )
}

/// (seq, ack, flags) of a frame, whose TCP checksum is checked.
fn tcp(frame: &[u8]) -> (u32, u32, u8) {
    let c = classify(frame).expect("a valid frame");
    let t = TcpPacket::new_checked(&frame[c.l4_offset..c.l3_end]).unwrap();
    assert!(t.verify_checksum(&c.src_addr, &c.dst_addr), "TCP checksum");
    (t.seq_number(), t.ack_number(), t.flags().0)
}

#[test]
fn a_flood_leaves_no_entry_and_a_client_gets_through_nat() {
    let mut h = harness();
    // A flood of SYNs from many ports: cookies only.
    for p in 0..500u16 {
        let (tx, _) = h.rx(0, &seg(20_000 + p, u32::from(p) * 7919, 0, 0x02, b""));
        assert_eq!(tcp(&only(&tx, 0)).2, 0x12);
    }
    assert_eq!(h.p.connection_count(), 0, "the flood made no connection");
    // Spoofed ACKs with guessed cookies: nothing.
    for p in 0..100u16 {
        nothing(&h.rx(0, &seg(20_000 + p, 1, u32::from(p), 0x10, b"")).0);
    }
    assert_eq!(h.counters().drop_synproxy_bad_cookie, 100);
    assert_eq!(h.p.connection_count(), 0);
    // A real client: SYN, cookie, ACK → the server's SYN (NAT: from the client).
    let (tx, _) = h.rx(0, &seg(40_000, 5000, 0, 0x02, b""));
    let (cookie, ack, _) = tcp(&only(&tx, 0));
    assert_eq!(ack, 5001);
    // Data before the server answered is dropped (the client sends it again).
    let (tx, _) = h.rx(0, &seg(40_000, 5001, cookie.wrapping_add(1), 0x10, b""));
    let to_server = only(&tx, 1);
    assert_eq!(tuple(&to_server), (a4(CLIENT4), 40_000, a4(SERVER4), 80));
    assert_eq!(tcp(&to_server), (5000, 0, 0x02));
    let early = seg(
        40_000,
        5001,
        cookie.wrapping_add(1),
        0x18,
        b"GET / HTTP/1.1\r\n\r\n",
    );
    nothing(&h.rx(0, &early).0);
    assert_eq!(h.counters().drop_synproxy_pending, 1);
    // So is the handshake's ACK again, and the same request in one burst
    // with it (both bring the cookie; the first opened the connection).
    let ack = seg(40_000, 5001, cookie.wrapping_add(1), 0x10, b"");
    nothing(&h.rx_many(0, &[&ack, &early]).0);
    let c = h.counters();
    assert_eq!(
        (c.drop_synproxy_pending, c.synproxy_opened, c.conn_created),
        (3, 1, 1)
    );
    // The server answers with its own ISN: the appliance ACKs it in place.
    let server_isn = 0xfff0_0000u32;
    let (tx, _) = h.rx(1, &srv(40_000, server_isn, 5001, 0x12, b""));
    let ack_frame = only(&tx, 1);
    assert_eq!(tuple(&ack_frame), (a4(CLIENT4), 40_000, a4(SERVER4), 80));
    assert_eq!(tcp(&ack_frame), (5001, server_isn.wrapping_add(1), 0x10));
    // The retransmitted request reaches the server in its sequence space,
    // and the answer the client in the cookie's.
    let (tx, _) = h.rx(0, &early);
    assert_eq!(tcp(&only(&tx, 1)), (5001, server_isn.wrapping_add(1), 0x18));
    let (tx, _) = h.rx(
        1,
        &srv(
            40_000,
            server_isn.wrapping_add(1),
            5019,
            0x18,
            b"HTTP/1.1 200 OK\r\n\r\n",
        ),
    );
    let back = only(&tx, 0);
    assert_eq!(tuple(&back), (a4(VIP4), 80, a4(CLIENT4), 40_000));
    assert_eq!(tcp(&back), (cookie.wrapping_add(1), 5019, 0x18));
    // The close: FINs both ways keep translating.
    let (tx, _) = h.rx(
        1,
        &srv(40_000, server_isn.wrapping_add(20), 5019, 0x11, b""),
    );
    assert_eq!(tcp(&only(&tx, 0)), (cookie.wrapping_add(20), 5019, 0x11));
    let (tx, _) = h.rx(0, &seg(40_000, 5019, cookie.wrapping_add(21), 0x11, b""));
    assert_eq!(
        tcp(&only(&tx, 1)),
        (5019, server_isn.wrapping_add(21), 0x11)
    );
    assert_eq!(
        h.p.connection_count(),
        1,
        "one connection: the real client's"
    );
    h.check_accounting();
}

#[test]
fn the_servers_refusal_resets_the_client_in_its_sequence_space() {
    let mut h = harness();
    let (tx, _) = h.rx(0, &seg(40_001, 77, 0, 0x02, b""));
    let (cookie, ..) = tcp(&only(&tx, 0));
    h.rx(0, &seg(40_001, 78, cookie.wrapping_add(1), 0x10, b""));
    let (tx, _) = h.rx(1, &srv(40_001, 0, 78, 0x14, b""));
    let rst = only(&tx, 0);
    assert_eq!(tuple(&rst), (a4(VIP4), 80, a4(CLIENT4), 40_001));
    assert_eq!(tcp(&rst), (cookie.wrapping_add(1), 78, 0x14));
}

#[test]
fn only_tcp_nat_and_full_nat_services_take_a_syn_proxy() {
    use tack_dataplane::model::Config;
    for (proto, mode) in [
        (Protocol::Udp, ForwardMode::Nat),
        (Protocol::Tcp, ForwardMode::Dsr),
        (Protocol::Tcp, ForwardMode::Tunnel),
    ] {
        let mut s = service(a4(VIP4), proto, Some(80), mode, &[a4(SERVER4)]);
        s.syn_proxy = true;
        let err = Config::new(vec![s]).expect_err("refused");
        assert!(err.to_string().contains("syn_proxy"), "{err}");
    }
}

#[test]
fn the_handshake_ack_and_the_request_in_one_burst_open_one_connection() {
    let mut h = harness();
    let (tx, _) = h.rx(0, &seg(40_002, 9, 0, 0x02, b""));
    let (cookie, ..) = tcp(&only(&tx, 0));
    let ack = seg(40_002, 10, cookie.wrapping_add(1), 0x10, b"");
    let req = seg(
        40_002,
        10,
        cookie.wrapping_add(1),
        0x18,
        b"GET / HTTP/1.1\r\n\r\n",
    );
    let (tx, _) = h.rx_many(0, &[&ack, &req]);
    // One SYN to the server; the request waits for the client to send it again.
    assert_eq!(tcp(&only(&tx, 1)), (9, 0, 0x02));
    let c = h.counters();
    assert_eq!(
        (c.synproxy_opened, c.conn_created, c.drop_synproxy_pending),
        (1, 1, 1)
    );
    h.check_accounting();
}

#[test]
fn ipv6_full_nat_through_the_proxy() {
    let mut s = service(
        a6(VIP6),
        Protocol::Tcp,
        Some(8443),
        ForwardMode::FullNat,
        &[a6(SERVER6)],
    );
    s.syn_proxy = true;
    let mut h = Harness::new(config(vec![s]));
    h.learn_neighbors();
    let client = |seq: u32, ack: u32, flags: u8| {
        tcp_from(
            C_MAC,
            L0_MAC,
            (a6(CLIENT6), 40_000),
            (a6(VIP6), 8443),
            (seq, ack, flags),
            (flags == 0x02).then_some(1440),
            b"",
        )
    };
    let (tx, _) = h.rx(0, &client(1, 0, 0x02));
    let (cookie, ack, flags) = tcp(&only(&tx, 0));
    assert_eq!((ack, flags), (2, 0x12));
    let (tx, _) = h.rx(0, &client(2, cookie.wrapping_add(1), 0x10));
    let syn = only(&tx, 1);
    let (src, lport, dst, dport) = tuple(&syn);
    assert_eq!((src, dst, dport), (a6(LOCAL6), a6(SERVER6), 8443));
    assert_eq!(tcp(&syn), (1, 0, 0x02));
    let server = |seq: u32, ack: u32, flags: u8| {
        tcp_from(
            S_MAC,
            L1_MAC,
            (a6(SERVER6), 8443),
            (a6(LOCAL6), lport),
            (seq, ack, flags),
            (flags == 0x12).then_some(1440),
            b"",
        )
    };
    let (tx, _) = h.rx(1, &server(700, 2, 0x12));
    assert_eq!(
        tcp(&only(&tx, 1)),
        (2, 701, 0x10),
        "the server's handshake completed"
    );
    let (tx, _) = h.rx(1, &server(701, 2, 0x18));
    let back = only(&tx, 0);
    assert_eq!(tuple(&back), (a6(VIP6), 8443, a6(CLIENT6), 40_000));
    assert_eq!(tcp(&back), (cookie.wrapping_add(1), 2, 0x18));
    let (tx, _) = h.rx(0, &client(2, cookie.wrapping_add(1), 0x10));
    assert_eq!(tcp(&only(&tx, 1)), (2, 701, 0x10));
    h.check_accounting();
}
