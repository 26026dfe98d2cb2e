//! Software RSS properties: the table-driven Toeplitz equals the bit-by-bit
//! reference, and SNAT ports chosen for a queue really steer the reply there.

use std::collections::HashSet;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use proptest::prelude::*;
use tack_dataplane::rss::{
    MS_RSS_KEY, ReplyFlow, Reta, RssError, SnatPortPicker, Toeplitz, softrss_v4, softrss_v6,
    toeplitz_hash,
};

/// Keys the NICs Tack targets ship as defaults, plus the symmetric key.
fn known_keys() -> Vec<[u8; 40]> {
    // mlx5 default key (drivers/net/mlx5/mlx5_rxq.c rss_hash_default_key).
    let mlx5 = [
        0x2c, 0xc6, 0x81, 0xd1, 0x5b, 0xdb, 0xf4, 0xf7, 0xfc, 0xa2, 0x83, 0x19, 0xdb, 0x1a, 0x3e,
        0x94, 0x6b, 0x9e, 0x38, 0xd9, 0x2c, 0x9c, 0x03, 0xd1, 0xad, 0x99, 0x44, 0xa7, 0xd9, 0x56,
        0x3d, 0x59, 0x06, 0x3c, 0x25, 0xf3, 0xfc, 0x1f, 0xdc, 0x2a,
    ];
    let symmetric = [0x6d, 0x5a].repeat(20).try_into().unwrap();
    vec![MS_RSS_KEY, mlx5, symmetric]
}

/// Reference hash of the reply tuple: src = server, dst = local.
fn reference_reply_hash(key: &[u8], flow: &ReplyFlow, port: u16) -> u32 {
    match (flow.server_addr, flow.local_addr) {
        (IpAddr::V4(s), IpAddr::V4(l)) => softrss_v4(key, s, l, Some((flow.server_port, port))),
        (IpAddr::V6(s), IpAddr::V6(l)) => softrss_v6(key, &s, &l, Some((flow.server_port, port))),
        _ => unreachable!(),
    }
}

fn reply_flow() -> impl Strategy<Value = ReplyFlow> {
    prop_oneof![
        (any::<u32>(), any::<u16>(), any::<u32>()).prop_map(|(s, p, l)| ReplyFlow {
            server_addr: IpAddr::V4(Ipv4Addr::from(s)),
            server_port: p,
            local_addr: IpAddr::V4(Ipv4Addr::from(l)),
        }),
        (any::<u128>(), any::<u16>(), any::<u128>()).prop_map(|(s, p, l)| ReplyFlow {
            server_addr: IpAddr::V6(Ipv6Addr::from(s)),
            server_port: p,
            local_addr: IpAddr::V6(Ipv6Addr::from(l)),
        }),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

    #[test]
    fn table_hash_equals_reference(key in proptest::collection::vec(any::<u8>(), 40..53),
                                   input in proptest::collection::vec(any::<u8>(), 0..37)) {
        let t = Toeplitz::new(&key).unwrap();
        prop_assert_eq!(t.hash(&input), toeplitz_hash(&key, &input));
    }

    #[test]
    fn tuple_helpers_equal_reference(key in any::<[u8; 40]>(), s4 in any::<u32>(), d4 in any::<u32>(),
                                     s6 in any::<u128>(), d6 in any::<u128>(), sp in any::<u16>(), dp in any::<u16>()) {
        let t = Toeplitz::new(&key).unwrap();
        let (s4, d4) = (Ipv4Addr::from(s4), Ipv4Addr::from(d4));
        let (s6, d6) = (Ipv6Addr::from(s6), Ipv6Addr::from(d6));
        prop_assert_eq!(t.hash_v4(s4, d4), softrss_v4(&key, s4, d4, None));
        prop_assert_eq!(t.hash_v4_l4(s4, d4, sp, dp), softrss_v4(&key, s4, d4, Some((sp, dp))));
        prop_assert_eq!(t.hash_v6(&s6, &d6), softrss_v6(&key, &s6, &d6, None));
        prop_assert_eq!(t.hash_v6_l4(&s6, &d6, sp, dp), softrss_v6(&key, &s6, &d6, Some((sp, dp))));
        // Linearity the port picker relies on.
        prop_assert_eq!(t.hash_v4_l4(s4, d4, sp, dp), t.hash_v4_l4(s4, d4, sp, 0) ^ t.dport_term(false, dp));
        prop_assert_eq!(t.hash_v6_l4(&s6, &d6, sp, dp), t.hash_v6_l4(&s6, &d6, sp, 0) ^ t.dport_term(true, dp));
    }

    /// For random reply flows, 1, 2, 4 and 8 queues and every target queue,
    /// the chosen port's reply tuple — hashed by the plain reference
    /// implementation — lands on the target queue, and successive picks hand
    /// out different ports.
    #[test]
    fn chosen_port_steers_reply_to_queue(flow in reply_flow(), key_i in 0usize..3,
                                         reta_size in prop_oneof![Just(64usize), Just(128), Just(512)],
                                         lo in 1024u16..30000, span in 1024u16..20000, start in any::<u16>()) {
        let key = known_keys()[key_i];
        let t = Toeplitz::new(&key).unwrap();
        let hi = lo.saturating_add(span);
        for n in [1u16, 2, 4, 8] {
            let reta = Reta::round_robin(reta_size, n).unwrap();
            for q in 0..n {
                let mut picker = SnatPortPicker::new(q, start);
                let mut seen = HashSet::new();
                for _ in 0..4 {
                    let port = picker.pick(&t, &reta, &flow, lo..=hi, |_| true).unwrap();
                    prop_assert!((lo..=hi).contains(&port));
                    let h = reference_reply_hash(&key, &flow, port);
                    prop_assert_eq!(reta.queue(h), q, "n={} q={} port={}", n, q, port);
                    prop_assert!(seen.insert(port), "cursor must move on");
                }
            }
        }
    }

    /// Ports the caller reports as taken are skipped; with an uneven RETA the
    /// result still maps to the queue.
    #[test]
    fn busy_ports_are_skipped(flow in reply_flow(), entries in proptest::collection::vec(0u16..3, 1..40),
                              lo in any::<u16>(), span in 0u16..3000) {
        let t = Toeplitz::new(&MS_RSS_KEY).unwrap();
        let reta = Reta::from_entries(entries).unwrap();
        let hi = lo.saturating_add(span);
        for q in 0..3u16 {
            let mut picker = SnatPortPicker::new(q, lo);
            match picker.pick(&t, &reta, &flow, lo..=hi, |p| p % 3 != 0) {
                Ok(port) => {
                    prop_assert!(port % 3 != 0 && (lo..=hi).contains(&port));
                    prop_assert_eq!(reta.queue(reference_reply_hash(&MS_RSS_KEY, &flow, port)), q);
                }
                Err(e) => {
                    prop_assert_eq!(e, RssError::Exhausted);
                    // Really no usable port.
                    for p in lo..=hi {
                        prop_assert!(p % 3 == 0 || reta.queue(reference_reply_hash(&MS_RSS_KEY, &flow, p)) != q);
                    }
                }
            }
        }
    }
}

/// All the ports of a range that map to a queue are eventually handed out,
/// each once, before the walk wraps.
#[test]
fn picker_walks_every_matching_port_once() {
    let t = Toeplitz::new(&MS_RSS_KEY).unwrap();
    let reta = Reta::round_robin(128, 4).unwrap();
    let flow = ReplyFlow {
        server_addr: "10.1.0.5".parse().unwrap(),
        server_port: 80,
        local_addr: "10.1.0.254".parse().unwrap(),
    };
    let range = 10000u16..=10999;
    let matching: Vec<u16> = range
        .clone()
        .filter(|&p| reta.queue(reference_reply_hash(&MS_RSS_KEY, &flow, p)) == 2)
        .collect();
    assert!(
        matching.len() > 150 && matching.len() < 350,
        "{}",
        matching.len()
    );
    let mut used = HashSet::new();
    let mut picker = SnatPortPicker::new(2, 10500);
    for _ in 0..matching.len() {
        let p = picker
            .pick(&t, &reta, &flow, range.clone(), |p| !used.contains(&p))
            .unwrap();
        assert!(used.insert(p));
    }
    assert_eq!(
        picker.pick(&t, &reta, &flow, range.clone(), |p| !used.contains(&p)),
        Err(RssError::Exhausted)
    );
    let mut all: Vec<u16> = used.into_iter().collect();
    all.sort_unstable();
    assert_eq!(all, matching);
}
