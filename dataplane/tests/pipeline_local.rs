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

/// (sender address, target address) of a gratuitous ARP, or the target of
/// an unsolicited neighbour advertisement, for each frame sent.
fn announced(tx: &[Vec<u8>]) -> Vec<std::net::IpAddr> {
    use tack_dataplane::wire::{ArpPacket, ArpRepr, Icmpv6Packet, NdiscRepr};
    tx.iter()
        .map(|f| {
            if f[12..14] == [0x08, 0x06] {
                let arp = ArpRepr::parse(&ArpPacket::new_checked(&f[14..]).unwrap()).unwrap();
                assert_eq!(
                    arp.source_protocol_addr, arp.target_protocol_addr,
                    "gratuitous"
                );
                assert_eq!(&f[..6], &[0xff; 6], "broadcast");
                std::net::IpAddr::V4(arp.target_protocol_addr)
            } else {
                let c = tack_dataplane::wire::classify(f).unwrap();
                assert_eq!(c.ttl, 255);
                let msg = &f[c.l4_offset..c.l3_end];
                assert!(Icmpv6Packet::new_checked(msg).unwrap().verify_checksum(
                    &match c.src_addr {
                        std::net::IpAddr::V6(a) => a,
                        _ => unreachable!(),
                    },
                    &"ff02::1".parse().unwrap()
                ));
                match NdiscRepr::parse(msg).unwrap() {
                    NdiscRepr::NeighborAdvert {
                        target_addr,
                        lladdr,
                        ..
                    } => {
                        assert!(lladdr.is_some());
                        assert_eq!(c.src_addr, std::net::IpAddr::V6(target_addr));
                        std::net::IpAddr::V6(target_addr)
                    }
                    other => panic!("{other:?}"),
                }
            }
        })
        .collect()
}

#[test]
fn addresses_are_announced_when_they_appear() {
    let mut cfg = config(basic_services());
    cfg.announce = true;
    let mut h = Harness::new(cfg.clone());
    let (tx, _) = h.poll_after(1);
    let on0 = announced(&tx[0]);
    let on1 = announced(&tx[1]);
    for a in [a4(PORT0_4), a6(PORT0_6), a4(VIP4), a6(VIP6)] {
        assert!(on0.contains(&a), "{a} on port 0: {on0:?}");
    }
    for a in [a4(PORT1_4), a6(PORT1_6)] {
        assert!(on1.contains(&a), "{a} on port 1: {on1:?}");
    }
    assert_eq!(
        h.counters().addresses_announced as usize,
        on0.len() + on1.len()
    );
    // Once only.
    let (tx, _) = h.poll_after(1);
    nothing(&tx);
    // A reload adding a VIP announces that VIP alone.
    let mut services = basic_services();
    services.push(service(
        a4("203.0.113.77"),
        tack_dataplane::model::Protocol::Tcp,
        Some(80),
        tack_dataplane::model::ForwardMode::Nat,
        &[a4(SERVER4)],
    ));
    cfg.services = std::sync::Arc::new(tack_dataplane::model::Config::new(services).unwrap());
    h.p.set_config(std::sync::Arc::new(cfg));
    let (tx, _) = h.poll_after(1);
    assert_eq!(announced(&tx[0]), vec![a4("203.0.113.77")]);
    // Other workers and pipelines without `announce` say nothing.
    let mut quiet = Harness::basic();
    nothing(&quiet.poll_after(1).0);
}

/// A flood at a port's own address reaches the host at the configured
/// rate; control traffic (BGP, BFD, ICMP, VRRP) is never limited; the
/// bucket refills with time.
#[test]
fn host_traffic_is_rate_limited_except_control() {
    use tack_dataplane::ratelimit::RateLimit;
    let mut cfg = config(basic_services());
    cfg.host_rate = RateLimit {
        per_sec: 100,
        burst: 5,
    };
    let mut h = Harness::new(cfg);
    let (client, port) = (a4(CLIENT4), a4(PORT0_4));
    let syn = |sport: u16, dport: u16| client_pkt(client, sport, port, dport, SYN);
    let udp = |dport: u16| client_pkt(client, 5000, port, dport, L4::Udp);
    let mut given = 0;
    for i in 0..50u16 {
        let (tx, host) = h.rx(0, &syn(10_000 + i, 22));
        nothing(&tx);
        given += host.len();
    }
    assert_eq!(given, 5, "the burst, then nothing");
    assert_eq!(h.counters().drop_host_rate, 45);
    // Control traffic passes however full the flood: BGP either way, BFD, ICMP.
    for f in [syn(179, 40_000), syn(40_001, 179), udp(3784), udp(4784)] {
        let (_, host) = h.rx(0, &f);
        assert_eq!(host.len(), 1);
    }
    assert_eq!(h.counters().host_control, 4);
    assert_eq!(h.counters().drop_host_rate, 45);
    // So are a real server's answers to the host's health checks.
    let syn_ack = server_pkt(a4(SERVER4), 80, a4(PORT1_4), 40_000, L4::Tcp(0x12));
    let (_, host) = h.rx(1, &syn_ack);
    assert_eq!(host.len(), 1, "a server's answer passes the flood");
    assert_eq!(h.counters().host_control, 5);
    // 20 ms later: two more tokens (100 per second).
    h.poll_after(20);
    let passed: usize = (0..10u16)
        .map(|i| h.rx(0, &syn(20_000 + i, 22)).1.len())
        .sum();
    assert_eq!(passed, 2);
    assert_eq!(h.counters().host, 5 + 5 + 2);
}
