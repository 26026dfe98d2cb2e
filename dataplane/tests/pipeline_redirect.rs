//! The redirect responder through the pipeline (seed 000): SYN cookies,
//! the 302 to the chosen server's URL, retransmissions, forged cookies,
//! bare ACKs, the spread by weight, IPv4 and IPv6.

mod pipeline_common;

use std::net::IpAddr;

use pipeline_common::*;
use tack_dataplane::Time;
use tack_dataplane::model::{ForwardMode, Protocol, Redirect, Service};
use tack_dataplane::redirect::ServerUrls;
use tack_dataplane::wire::{TcpPacket, classify};

fn redirect_service(vip: IpAddr, servers: &[(IpAddr, u16, &str)]) -> Service {
    let addrs: Vec<IpAddr> = servers.iter().map(|s| s.0).collect();
    let mut s = service(vip, Protocol::Tcp, Some(80), ForwardMode::Nat, &addrs);
    for (srv, (_, w, name)) in s.servers.iter_mut().zip(servers) {
        srv.weight = *w;
        srv.urls = Some(ServerUrls {
            http: format!("http://{name}.example.com"),
            https: format!("https://{name}.example.com"),
        });
    }
    s.redirect = Some(Redirect {
        secure_prefixes: vec!["/checkout/".into()],
    });
    s
}

fn harness(weights: (u16, u16)) -> Harness {
    let s4 = redirect_service(
        a4(VIP4),
        &[
            (a4(SERVER4), weights.0, "www1"),
            (a4(SERVER4B), weights.1, "www2"),
        ],
    );
    let s6 = redirect_service(a6(VIP6), &[(a6(SERVER6), 1, "www6")]);
    let mut cfg = config(vec![s4, s6]);
    cfg.syn_cookie_key = *b"redirect-test-k!";
    let mut h = Harness::new(cfg);
    h.learn_neighbors();
    h
}

/// A client TCP segment to the VIP's port 80.
fn seg(
    src: IpAddr,
    sport: u16,
    seq: u32,
    ack: u32,
    flags: u8,
    mss: Option<u16>,
    data: &[u8],
) -> Vec<u8> {
    let dst = if src.is_ipv4() { a4(VIP4) } else { a6(VIP6) };
    tcp_from(
        C_MAC,
        L0_MAC,
        (src, sport),
        (dst, 80),
        (seq, ack, flags),
        mss,
        data,
    )
}

/// (flags, seq, ack, mss, payload) of a segment the responder sent, whose
/// checksums and addressing are checked.
fn answer(frame: &[u8], client: IpAddr) -> (u8, u32, u32, Option<u16>, Vec<u8>) {
    assert_eq!(&frame[..6], &C_MAC.0, "back to the client's MAC");
    assert_eq!(&frame[6..12], &L0_MAC.0);
    let c = classify(frame).expect("a valid frame");
    assert_eq!((c.src_port, c.dst_addr), (80, client));
    let t = TcpPacket::new_checked(&frame[c.l4_offset..c.l3_end]).unwrap();
    assert!(t.verify_checksum(&c.src_addr, &c.dst_addr), "TCP checksum");
    (
        t.flags().0,
        t.seq_number(),
        t.ack_number(),
        t.mss().unwrap(),
        t.payload().to_vec(),
    )
}

const SYN: u8 = 0x02;
const ACK: u8 = 0x10;
const PSH_ACK: u8 = 0x18;
const FIN_PSH_ACK: u8 = 0x19;
const SYN_ACK: u8 = 0x12;

/// A whole handshake and request from `client`:`sport`: the 302's payload.
fn fetch(h: &mut Harness, client: IpAddr, sport: u16, path: &str) -> String {
    let (tx, _) = h.rx(0, &seg(client, sport, 1000, 0, SYN, Some(1460), b""));
    let (flags, cookie, ack, mss, data) = answer(&only(&tx, 0), client);
    assert_eq!((flags, ack, mss), (SYN_ACK, 1001, Some(1460)));
    assert!(data.is_empty());
    let req = format!("GET {path} HTTP/1.1\r\nHost: shop.example.com\r\n\r\n");
    let (tx, _) = h.rx(
        0,
        &seg(
            client,
            sport,
            1001,
            cookie.wrapping_add(1),
            PSH_ACK,
            None,
            req.as_bytes(),
        ),
    );
    let (flags, seq, ack, _, data) = answer(&only(&tx, 0), client);
    assert_eq!(flags, FIN_PSH_ACK);
    assert_eq!(seq, cookie.wrapping_add(1));
    assert_eq!(ack, 1001 + req.len() as u32);
    String::from_utf8(data).unwrap()
}

#[test]
fn syn_cookie_then_302_to_a_server_with_path_and_query_v4_and_v6() {
    let mut h = harness((1, 1));
    let body = fetch(&mut h, a4(CLIENT4), 40000, "/cart?item=7");
    assert!(
        body.starts_with("HTTP/1.1 302 Found\r\nLocation: http://www"),
        "{body}"
    );
    assert!(body.contains(".example.com/cart?item=7\r\n"), "{body}");
    assert!(body.contains("Connection: close\r\n"), "{body}");
    let body = fetch(&mut h, a6(CLIENT6), 40001, "/checkout/pay");
    assert!(
        body.contains("Location: https://www6.example.com/checkout/pay\r\n"),
        "{body}"
    );
    let c = h.counters();
    assert_eq!((c.redirect_syn_cookies, c.redirect_found), (2, 2));
    // Nothing was forwarded and no connection was made.
    assert_eq!(h.p.connection_count(), 0);
}

#[test]
fn a_retransmitted_request_gets_the_identical_answer() {
    let mut h = harness((1, 1));
    let client = a4(CLIENT4);
    let (tx, _) = h.rx(0, &seg(client, 40000, 5, 0, SYN, Some(1460), b""));
    let (_, cookie, ..) = answer(&only(&tx, 0), client);
    let req = b"GET /a HTTP/1.1\r\nHost: x\r\n\r\n";
    let data = seg(client, 40000, 6, cookie.wrapping_add(1), PSH_ACK, None, req);
    let first = only(&h.rx(0, &data).0, 0);
    // Later, but within the cookie's life: the same bytes (bar the IP ident).
    h.now = Time(h.now.as_nanos() + 30_000_000_000);
    let again = only(&h.rx(0, &data).0, 0);
    assert_eq!(answer(&first, client), answer(&again, client));
}

#[test]
fn forged_cookies_bare_acks_and_fins_are_dropped_silently() {
    let mut h = harness((1, 1));
    let client = a4(CLIENT4);
    let req = b"GET /a HTTP/1.1\r\nHost: x\r\n\r\n";
    // A request whose acknowledgement carries no cookie of ours.
    nothing(&h.rx(0, &seg(client, 40000, 6, 12345, PSH_ACK, None, req)).0);
    assert_eq!(h.counters().drop_redirect_bad_cookie, 1);
    // A bare ACK, a FIN and an RST: nothing either.
    nothing(&h.rx(0, &seg(client, 40000, 6, 7, ACK, None, b"")).0);
    nothing(&h.rx(0, &seg(client, 40000, 6, 7, 0x11, None, b"")).0);
    nothing(&h.rx(0, &seg(client, 40000, 6, 7, 0x04, None, b"")).0);
    assert_eq!(h.counters().drop_redirect_ignored, 3);
    // A cookie of another connection does not validate here.
    let (tx, _) = h.rx(0, &seg(client, 40001, 5, 0, SYN, None, b""));
    let (_, cookie, _, mss, _) = answer(&only(&tx, 0), client);
    assert_eq!(mss, Some(536), "no MSS option: RFC 9293's default");
    nothing(
        &h.rx(
            0,
            &seg(client, 40002, 6, cookie.wrapping_add(1), PSH_ACK, None, req),
        )
        .0,
    );
    assert_eq!(h.counters().drop_redirect_bad_cookie, 2);
    // A cookie too old.
    h.now = Time(h.now.as_nanos() + 300_000_000_000);
    nothing(
        &h.rx(
            0,
            &seg(client, 40001, 6, cookie.wrapping_add(1), PSH_ACK, None, req),
        )
        .0,
    );
    assert_eq!(h.counters().drop_redirect_bad_cookie, 3);
    h.check_accounting();
}

#[test]
fn a_request_not_whole_in_its_segment_gets_400() {
    let mut h = harness((1, 1));
    let client = a4(CLIENT4);
    let (tx, _) = h.rx(0, &seg(client, 40000, 5, 0, SYN, Some(1460), b""));
    let (_, cookie, ..) = answer(&only(&tx, 0), client);
    let part = b"GET /a HTTP/1.1\r\nHost: x\r\n";
    let (tx, _) = h.rx(
        0,
        &seg(
            client,
            40000,
            6,
            cookie.wrapping_add(1),
            PSH_ACK,
            None,
            part,
        ),
    );
    let (flags, _, _, _, data) = answer(&only(&tx, 0), client);
    assert_eq!(flags, FIN_PSH_ACK);
    assert!(data.starts_with(b"HTTP/1.1 400 Bad Request\r\n"));
    assert_eq!(h.counters().redirect_bad_request, 1);
}

#[test]
fn redirects_spread_by_weight() {
    let mut h = harness((1, 3));
    let mut www2 = 0;
    let n = 3000u32;
    for i in 0..n {
        let client = IpAddr::V4(std::net::Ipv4Addr::from(0xc633_6400 + (i % 200) + 10));
        let body = fetch(&mut h, client, 10_000 + i as u16, "/");
        if body.contains("Location: http://www2.") {
            www2 += 1;
        }
    }
    let share = f64::from(www2) / f64::from(n);
    assert!((share - 0.75).abs() < 0.075, "www2 share {share}");
}
