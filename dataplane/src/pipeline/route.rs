//! Next-hop lookup (connected networks of the ports and static routes) and
//! flow-to-worker steering.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use super::{PortRt, Route, Steer};
use crate::addr::{mask32, mask128};
use crate::wire::{Classified, EmbeddedFlow, FragStatus, IpProtocol, L3Kind};

/// Whether `a` and `b` share the first `len` bits.
pub(crate) fn same_net_v4(a: Ipv4Addr, b: Ipv4Addr, len: u8) -> bool {
    let m = mask32(len);
    u32::from(a) & m == u32::from(b) & m
}

/// Whether `a` and `b` share the first `len` bits.
pub(crate) fn same_net_v6(a: &Ipv6Addr, b: &Ipv6Addr, len: u8) -> bool {
    let m = mask128(len);
    u128::from(*a) & m == u128::from(*b) & m
}

#[derive(Debug, Clone, Copy)]
struct Entry<A> {
    net: A,
    mask: A,
    port: u16,
    gateway: Option<A>,
}

/// A longest-prefix-match table: the ports' connected networks and the
/// static routes, longest prefixes first (connected before static at equal
/// length). Tables are small (a few entries per port), so a linear scan of
/// masked compares is the fastest lookup.
#[derive(Debug, Clone, Default)]
pub(crate) struct Fib {
    v4: Vec<Entry<u32>>,
    v6: Vec<Entry<u128>>,
}

impl Fib {
    pub(crate) fn new(ports: &[PortRt], routes: &[Route]) -> Fib {
        let mut v4: Vec<(u8, Entry<u32>)> = Vec::new();
        let mut v6: Vec<(u8, Entry<u128>)> = Vec::new();
        let mut add = |dst: IpAddr, len: u8, port: u16, gateway: Option<IpAddr>| match dst {
            // The gateway is of the destination's family (checked with the
            // configuration).
            IpAddr::V4(a) => {
                let mask = mask32(len);
                v4.push((
                    len,
                    Entry {
                        net: u32::from(a) & mask,
                        mask,
                        port,
                        gateway: gateway.and_then(|g| match g {
                            IpAddr::V4(g) => Some(u32::from(g)),
                            IpAddr::V6(_) => None,
                        }),
                    },
                ));
            }
            IpAddr::V6(a) => {
                let mask = mask128(len);
                v6.push((
                    len,
                    Entry {
                        net: u128::from(a) & mask,
                        mask,
                        port,
                        gateway: gateway.and_then(|g| match g {
                            IpAddr::V6(g) => Some(u128::from(g)),
                            IpAddr::V4(_) => None,
                        }),
                    },
                ));
            }
        };
        for (i, p) in ports.iter().enumerate() {
            for &(a, len) in &p.v4 {
                add(IpAddr::V4(a), len, i as u16, None);
            }
            for &(a, len) in &p.v6 {
                add(IpAddr::V6(a), len, i as u16, None);
            }
        }
        for r in routes {
            add(r.dst, r.prefix_len, r.port, r.gateway);
        }
        // Stable: connected networks stay ahead of static routes of equal length.
        v4.sort_by_key(|e| core::cmp::Reverse(e.0));
        v6.sort_by_key(|e| core::cmp::Reverse(e.0));
        Fib {
            v4: v4.into_iter().map(|(_, e)| e).collect(),
            v6: v6.into_iter().map(|(_, e)| e).collect(),
        }
    }

    /// Egress port and next hop (the gateway, or `dst` itself on-link).
    #[inline]
    pub(crate) fn lookup(&self, dst: IpAddr) -> Option<(u16, IpAddr)> {
        match dst {
            IpAddr::V4(a) => self.lookup_v4(a).map(|(p, nh)| (p, IpAddr::V4(nh))),
            IpAddr::V6(a) => {
                let x = u128::from(a);
                self.v6
                    .iter()
                    .find(|e| x & e.mask == e.net)
                    .map(|e| (e.port, Ipv6Addr::from(e.gateway.unwrap_or(x)).into()))
            }
        }
    }

    /// [`Fib::lookup`] for an IPv4 destination.
    #[inline]
    pub(crate) fn lookup_v4(&self, dst: Ipv4Addr) -> Option<(u16, Ipv4Addr)> {
        let x = u32::from(dst);
        self.v4
            .iter()
            .find(|e| x & e.mask == e.net)
            .map(|e| (e.port, Ipv4Addr::from(e.gateway.unwrap_or(x))))
    }
}

/// The worker (queue) a received frame is steered to: Toeplitz over its
/// 4-tuple (TCP/UDP, not fragmented) or its addresses, through the RETA. An
/// ICMP error is steered like the flow it quotes travelling the other way
/// (the direction the owner receives).
pub(crate) fn owner(steer: &Steer, frame: &[u8], c: &Classified) -> Option<u16> {
    if c.l3 == L3Kind::Arp {
        return None;
    }
    if c.is_icmp_error() {
        let quoted = frame.get(c.l4_offset + 8..c.l3_end)?;
        let inner = match c.l3 {
            L3Kind::Ipv4 => EmbeddedFlow::parse_v4(quoted).ok()?,
            _ => EmbeddedFlow::parse_v6(quoted).ok()?,
        };
        let ports = match (inner.protocol, inner.src_port, inner.dst_port) {
            (IpProtocol::TCP | IpProtocol::UDP, Some(s), Some(d)) => Some((d, s)),
            _ => None,
        };
        let h = steer
            .toeplitz
            .hash_flow(&inner.dst_addr, &inner.src_addr, ports)
            .ok()?;
        return Some(steer.reta.queue(h));
    }
    let l4 = (c.protocol == IpProtocol::TCP || c.protocol == IpProtocol::UDP)
        && c.frag == FragStatus::NotFragment;
    let ports = l4.then_some((c.src_port, c.dst_port));
    let h = steer
        .toeplitz
        .hash_flow(&c.src_addr, &c.dst_addr, ports)
        .ok()?;
    Some(steer.reta.queue(h))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn masks() {
        let a: Ipv4Addr = "10.1.2.3".parse().unwrap();
        assert!(same_net_v4(a, "10.1.255.1".parse().unwrap(), 16));
        assert!(!same_net_v4(a, "10.2.0.1".parse().unwrap(), 16));
        assert!(same_net_v4(a, "200.0.0.1".parse().unwrap(), 0));
        assert!(same_net_v4(a, a, 32));
        let b: Ipv6Addr = "2001:db8::1".parse().unwrap();
        assert!(same_net_v6(&b, &"2001:db8::ffff".parse().unwrap(), 64));
        assert!(!same_net_v6(&b, &"2001:db9::1".parse().unwrap(), 32));
        assert!(same_net_v6(&b, &b, 128));
    }

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    /// Longest prefix first, connected before static at equal length,
    /// on-link destinations are their own next hop, and both families
    /// (IPv4 through `lookup_v4` too) agree.
    #[test]
    fn longest_prefix_match() {
        use super::super::{PipelineConfig, PortSpec, WorkerSpec, build_ports};
        use crate::wire::EthernetAddress;
        let port = |addrs: &[(&str, u8)]| PortSpec {
            mac: EthernetAddress([2, 0, 0, 0, 0, 1]),
            addresses: addrs.iter().map(|&(a, l)| (ip(a), l)).collect(),
            mtu: 1500,
        };
        let route = |dst: &str, prefix_len: u8, port: u16, gw: Option<&str>| Route {
            dst: ip(dst),
            prefix_len,
            port,
            gateway: gw.map(ip),
        };
        let cfg = PipelineConfig {
            ports: vec![
                port(&[("198.51.100.1", 24), ("2001:db8:1::1", 64)]),
                port(&[("10.1.0.1", 16), ("2001:db8:2::1", 64)]),
            ],
            routes: vec![
                route("0.0.0.0", 0, 0, Some("198.51.100.254")),
                route("10.9.0.0", 16, 1, Some("10.1.0.9")),
                // Same length as port 1's network: the connected one wins.
                route("10.1.0.0", 16, 0, Some("198.51.100.7")),
                route("10.9.8.0", 24, 0, None),
                route("::", 0, 0, Some("2001:db8:1::fe")),
                route("2001:db8:9::", 48, 1, Some("2001:db8:2::9")),
            ],
            ..PipelineConfig::default()
        };
        let worker = WorkerSpec::software(0, 1, 2);
        let (_, fib) = build_ports(&cfg, &worker).unwrap();
        let cases = [
            ("203.0.113.5", Some((0, "198.51.100.254"))),
            ("198.51.100.77", Some((0, "198.51.100.77"))),
            ("10.1.2.3", Some((1, "10.1.2.3"))),
            ("10.9.1.1", Some((1, "10.1.0.9"))),
            ("10.9.8.7", Some((0, "10.9.8.7"))),
            ("2001:db8:1::5", Some((0, "2001:db8:1::5"))),
            ("2001:db8:9:1::5", Some((1, "2001:db8:2::9"))),
            ("2001:db8:7::5", Some((0, "2001:db8:1::fe"))),
        ];
        for (dst, want) in cases {
            let want = want.map(|(p, nh)| (p, ip(nh)));
            assert_eq!(fib.lookup(ip(dst)), want, "{dst}");
            if let IpAddr::V4(a) = ip(dst) {
                let got = fib.lookup_v4(a).map(|(p, nh)| (p, IpAddr::V4(nh)));
                assert_eq!(got, want, "{dst} (lookup_v4)");
            }
        }
        // Without a default route, an address off every network has none.
        let cfg = PipelineConfig {
            routes: Vec::new(),
            ..cfg
        };
        let (_, fib) = build_ports(&cfg, &worker).unwrap();
        assert_eq!(fib.lookup(ip("203.0.113.5")), None);
        assert_eq!(fib.lookup_v4("203.0.113.5".parse().unwrap()), None);
        assert_eq!(fib.lookup(ip("2001:db8:7::5")), None);
    }
}
