//! The pipeline's own answers, byte for byte against scapy: ARP, neighbour
//! discovery, ICMP and ICMPv6 echo; the exception path; strays.

mod pipeline_common;

use pipeline_common::*;
use tack_dataplane::pipeline::Event;

#[test]
fn arp_request_for_vip_answered_in_place() {
    let mut h = Harness::basic();
    let (tx, host) = h.rx(0, fixture!("arp_req_vip"));
    assert_frame(&only(&tx, 0), fixture!("arp_rep_vip"));
    assert!(host.is_empty());
    assert_eq!(h.counters().arp_replies, 1);
    assert_eq!(h.counters().tx_local, 1);
    // The requester was learned (RFC 826: we are the target) and published.
    assert_eq!(h.p.neighbor(0, a4(CLIENT4)), Some(C_MAC));
    assert_eq!(
        h.events(),
        vec![Event::Neighbor {
            port: 0,
            addr: a4(CLIENT4),
            mac: C_MAC
        }]
    );
}

#[test]
fn arp_request_for_port_address_keeps_padding_and_vlan() {
    let mut h = Harness::basic();
    let (tx, _) = h.rx(0, fixture!("arp_req_port_padded"));
    assert_frame(&only(&tx, 0), fixture!("arp_rep_port_padded"));
    let (tx, _) = h.rx(0, fixture!("arp_req_vlan"));
    assert_frame(&only(&tx, 0), fixture!("arp_rep_vlan"));
    assert_eq!(h.counters().arp_replies, 2);
}

#[test]
fn arp_not_for_us_is_not_answered() {
    let mut h = Harness::basic();
    let (tx, host) = h.rx(0, fixture!("arp_req_other"));
    nothing(&tx);
    assert!(host.is_empty());
    assert_eq!(h.counters().drop_arp_other, 1);
    // Not addressed to us: no entry is created (RFC 826 merge rule).
    assert_eq!(h.p.neighbor(0, a4(CLIENT4)), None);
    // Port 1's address is not answered on port 0.
    let (tx, _) = h.rx(0, fixture!("arp_req_wrong_port"));
    nothing(&tx);
    assert_eq!(h.counters().drop_arp_other, 2);
    assert_eq!(h.counters().arp_replies, 0);
}

#[test]
fn arp_reply_to_port_address_is_learned_and_given_to_host() {
    let mut h = Harness::basic();
    let (tx, host) = h.rx(1, fixture!("arp_rep_server"));
    nothing(&tx);
    assert_eq!(host.len(), 1);
    assert_frame(&host[0], fixture!("arp_rep_server"));
    assert_eq!(h.p.neighbor(1, a4(SERVER4)), Some(S_MAC));
}

#[test]
fn echo_to_vip_and_port_answered() {
    let mut h = Harness::basic();
    let (tx, _) = h.rx(0, fixture!("echo4_vip"));
    assert_frame(&only(&tx, 0), fixture!("echo4_vip_reply"));
    let (tx, _) = h.rx(0, fixture!("echo4_opts"));
    assert_frame(&only(&tx, 0), fixture!("echo4_opts_reply"));
    let (tx, _) = h.rx(1, fixture!("echo4_padded"));
    assert_frame(&only(&tx, 1), fixture!("echo4_padded_reply"));
    assert_eq!(h.counters().echo_replies, 3);
    let (tx, _) = h.rx(0, fixture!("echo4_bcast"));
    nothing(&tx);
    assert_eq!(h.counters().drop_not_for_us, 1);
}

#[test]
fn echo6_answered_and_ext_headers_dropped() {
    let mut h = Harness::basic();
    let (tx, _) = h.rx(0, fixture!("echo6_vip"));
    assert_frame(&only(&tx, 0), fixture!("echo6_vip_reply"));
    let (tx, _) = h.rx(0, fixture!("echo6_hbh"));
    assert_frame(&only(&tx, 0), fixture!("echo6_hbh_reply"));
    assert_eq!(h.counters().echo_replies, 2);
}

#[test]
fn neighbour_solicitations_answered() {
    let mut h = Harness::basic();
    let (tx, _) = h.rx(0, fixture!("ns_vip"));
    assert_frame(&only(&tx, 0), fixture!("na_vip"));
    // Learned from the source link-layer option, as stale (RFC 4861 §7.2.3).
    assert_eq!(h.p.neighbor(0, a6(CLIENT6)), Some(C_MAC));
    let (tx, _) = h.rx(0, fixture!("ns_port_unicast"));
    assert_frame(&only(&tx, 0), fixture!("na_port_unicast"));
    let (tx, _) = h.rx(0, fixture!("ns_dad"));
    assert_frame(&only(&tx, 0), fixture!("na_dad"));
    assert_eq!(h.counters().ndp_adverts, 3);
}

#[test]
fn invalid_or_foreign_solicitations_dropped() {
    let mut h = Harness::basic();
    let (tx, _) = h.rx(0, fixture!("ns_bad_hlim"));
    nothing(&tx);
    assert_eq!(h.counters().drop_ndp_invalid, 1);
    let (tx, _) = h.rx(0, fixture!("ns_other"));
    nothing(&tx);
    assert_eq!(h.counters().drop_ndp_other, 1);
    // Corrupt the checksum of a valid solicitation.
    let mut bad = fixture!("ns_vip").to_vec();
    let n = bad.len();
    bad[n - 1] ^= 0xff;
    let (tx, _) = h.rx(0, &bad);
    nothing(&tx);
    assert_eq!(h.counters().drop_ndp_invalid, 2);
}

#[test]
fn host_path_and_strays() {
    let mut h = Harness::basic();
    let (tx, host) = h.rx(0, fixture!("tcp_to_port"));
    nothing(&tx);
    assert_frame(&host[0], fixture!("tcp_to_port"));
    let (tx, host) = h.rx(0, fixture!("udp_not_ours"));
    nothing(&tx);
    assert!(host.is_empty());
    assert_eq!(h.counters().drop_not_for_us, 1);
    let (tx, _) = h.rx(0, fixture!("bad_ip_csum"));
    nothing(&tx);
    assert_eq!(h.counters().get("drop_wire_bad_ipv4_checksum"), Some(1));
    // A frame on a port that does not exist.
    let (tx, _) = h.rx(7, fixture!("echo4_vip"));
    nothing(&tx);
    assert_eq!(h.counters().drop_bad_port, 1);
    // Truncated frames of every length never panic and are all counted.
    let f = fixture!("echo6_hbh");
    for n in 0..f.len() {
        h.rx(0, &f[..n]);
    }
}

#[test]
fn host_path_can_be_disabled() {
    let mut cfg = config(basic_services());
    cfg.host_path = false;
    let mut h = Harness::new(cfg);
    let (tx, host) = h.rx(0, fixture!("tcp_to_port"));
    nothing(&tx);
    assert!(host.is_empty());
    assert_eq!(h.counters().drop_host_disabled, 1);
}
