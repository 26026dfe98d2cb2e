//! The redirect responder byte for byte against scapy's frames
//! (`testdata/pipeline/gen.py`, "redirect responder"): SYN → SYN-ACK with
//! the cookie, request → 302 with FIN, a retransmitted request → the same
//! answer, a request with a bad cookie → nothing. The cookie's master key and
//! the clock are fixed here and in gen.py, which computes the cookies from
//! their definition with a SipHash of its own.

mod pipeline_common;

use std::net::IpAddr;

use pipeline_common::*;
use tack_dataplane::Time;
use tack_dataplane::model::{ForwardMode, Protocol, Redirect, Service};
use tack_dataplane::redirect::ServerUrls;

/// gen.py's REDIR_KEY and REDIR_NOW.
const KEY: [u8; 16] = *b"fixture-cookie-k";
const NOW_SECS: u64 = 1234 * 60 + 7;

fn redirect_service(vip: IpAddr, server: IpAddr, name: &str) -> Service {
    let mut s = service(vip, Protocol::Tcp, Some(80), ForwardMode::Nat, &[server]);
    s.servers[0].urls = Some(ServerUrls {
        http: format!("http://{name}.example.com"),
        https: format!("https://{name}.example.com"),
    });
    s.redirect = Some(Redirect {
        secure_prefixes: vec!["/checkout/".into()],
    });
    s
}

fn harness() -> Harness {
    let mut cfg = config(vec![
        redirect_service(a4(VIP4), a4(SERVER4), "www1"),
        redirect_service(a6(VIP6), a6(SERVER6), "www6"),
    ]);
    cfg.syn_cookie_key = KEY;
    let mut h = Harness::new(cfg);
    h.now = Time::from_secs(NOW_SECS);
    h
}

#[test]
fn syn_gets_the_cookie_and_the_request_the_302_with_fin_v4() {
    let mut h = harness();
    let (tx, _) = h.rx(0, fixture!("redir4_syn"));
    assert_frame(&only(&tx, 0), fixture!("redir4_synack"));
    let (tx, _) = h.rx(0, fixture!("redir4_req"));
    assert_frame(&only(&tx, 0), fixture!("redir4_302"));
    let c = h.counters();
    assert_eq!((c.redirect_syn_cookies, c.redirect_found), (1, 1));
    assert_eq!(h.p.connection_count(), 0, "no state kept");
    h.check_accounting();
}

#[test]
fn a_retransmitted_request_gets_the_same_answer() {
    let mut h = harness();
    h.rx(0, fixture!("redir4_syn"));
    let (tx, _) = h.rx(0, fixture!("redir4_req"));
    assert_frame(&only(&tx, 0), fixture!("redir4_302"));
    // 40 s later, still within the cookie's life (and in the next minute).
    h.now = Time::from_secs(NOW_SECS + 40);
    let (tx, _) = h.rx(0, fixture!("redir4_req"));
    assert_frame(&only(&tx, 0), fixture!("redir4_302_again"));
    assert_eq!(h.counters().redirect_found, 2);
}

#[test]
fn a_request_with_a_bad_cookie_gets_nothing() {
    let mut h = harness();
    let (tx, _) = h.rx(0, fixture!("redir4_req_bad_cookie"));
    nothing(&tx);
    let c = h.counters();
    assert_eq!((c.drop_redirect_bad_cookie, c.redirect_found), (1, 0));
    // The right cookie, once its minutes are over: nothing either.
    h.now = Time::from_secs(NOW_SECS + 3 * 60);
    nothing(&h.rx(0, fixture!("redir4_req")).0);
    assert_eq!(h.counters().drop_redirect_bad_cookie, 2);
    h.check_accounting();
}

#[test]
fn ipv6_cookie_with_a_smaller_mss_and_a_secure_path() {
    let mut h = harness();
    let (tx, _) = h.rx(0, fixture!("redir6_syn"));
    assert_frame(&only(&tx, 0), fixture!("redir6_synack"));
    let (tx, _) = h.rx(0, fixture!("redir6_req"));
    assert_frame(&only(&tx, 0), fixture!("redir6_302"));
}
