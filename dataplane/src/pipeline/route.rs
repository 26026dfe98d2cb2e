//! Next-hop lookup (connected networks of the ports and static routes) and
//! flow-to-worker steering.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use super::{PortRt, Route, Steer};
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

fn mask32(len: u8) -> u32 {
    if len == 0 {
        0
    } else {
        u32::MAX << (32 - u32::from(len.min(32)))
    }
}

fn mask128(len: u8) -> u128 {
    if len == 0 {
        0
    } else {
        u128::MAX << (128 - u32::from(len.min(128)))
    }
}

#[derive(Debug, Clone, Copy)]
struct Entry<A> {
    net: A,
    mask: A,
    port: u16,
    gateway: Option<IpAddr>,
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
            IpAddr::V4(a) => {
                let mask = mask32(len);
                v4.push((
                    len,
                    Entry {
                        net: u32::from(a) & mask,
                        mask,
                        port,
                        gateway,
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
                        gateway,
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
            IpAddr::V4(a) => {
                let x = u32::from(a);
                self.v4
                    .iter()
                    .find(|e| x & e.mask == e.net)
                    .map(|e| (e.port, e.gateway.unwrap_or(dst)))
            }
            IpAddr::V6(a) => {
                let x = u128::from(a);
                self.v6
                    .iter()
                    .find(|e| x & e.mask == e.net)
                    .map(|e| (e.port, e.gateway.unwrap_or(dst)))
            }
        }
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
}
