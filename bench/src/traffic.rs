//! The throughput harness's traffic: the frames `tackgen` sends to the
//! forwarder under test (`tack` or `dpdk-testpmd`) and the checks it makes
//! on what comes back, without DPDK (unit-tested here).
//!
//! The topology is the one of the profile `bench/throughput.py` writes: the forwarder's
//! one port ([`FWD_MAC`], 10.9.0.1/24 and fd00:9::1/64) receives clients'
//! packets for the VIP ([`VIP4`], [`VIP6`], port 80, TCP and UDP services)
//! from the clients' gateway ([`GEN_MAC`], 10.9.0.254 / fd00:9::fe) and
//! sends them on to one of four servers on the same link (10.9.0.11–14,
//! fd00:9::11–14, MACs `02:00:00:00:00:11`–`14`). Flow `i` is the client
//! address `172.16.0.0 + i / 16384` (IPv6: `fd00:1::` + the same) and port
//! `1024 + i % 16384`, so 10 M flows use 611 client addresses.
//!
//! Every frame carries the TSC of its sending in the first 8 bytes of its
//! payload, for latency; checksums are made incrementally from a template
//! (a per-flow field change adds to the template's sum, as RFC 1624 does).

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

/// The forwarder's port MAC.
pub const FWD_MAC: [u8; 6] = [2, 0, 0, 0, 0, 1];
/// The generator's MAC (the clients' gateway).
pub const GEN_MAC: [u8; 6] = [2, 0, 0, 0, 0, 0xfe];
/// The IPv4 VIP.
pub const VIP4: Ipv4Addr = Ipv4Addr::new(10, 9, 0, 100);
/// The IPv6 VIP.
pub const VIP6: Ipv6Addr = Ipv6Addr::new(0xfd00, 9, 0, 0, 0, 0, 0, 0x100);
/// The services' port.
pub const VIP_PORT: u16 = 80;
/// Client ports per client address.
const PORTS_PER_ADDR: u64 = 16384;
/// Bytes of the payload's timestamp.
pub const STAMP_LEN: usize = 8;

/// Transport protocol of the mix.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Proto {
    /// TCP: a new flow's first packet is a SYN, an established flow's are
    /// ACK|PSH (the table is filled with those: `tack` picks a connection
    /// up mid-stream).
    Tcp,
    /// UDP.
    Udp,
}

/// IP version of the mix.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ip {
    /// IPv4.
    V4,
    /// IPv6.
    V6,
}

/// A server's IPv4 address and MAC, `n` in 0..4.
pub fn server4(n: u8) -> (Ipv4Addr, [u8; 6]) {
    (Ipv4Addr::new(10, 9, 0, 0x11 + n), [2, 0, 0, 0, 0, 0x11 + n])
}

/// A server's IPv6 address, `n` in 0..4 (same MACs as IPv4).
pub fn server6(n: u8) -> Ipv6Addr {
    Ipv6Addr::new(0xfd00, 9, 0, 0, 0, 0, 0, 0x11 + u16::from(n))
}

/// What was wrong with a frame that came back.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Bad {
    /// Too short, or not the IP version and protocol sent.
    Malformed,
    /// Not addressed (MAC and IP) to one of the servers.
    NotToServer,
    /// The IPv4 header checksum does not verify.
    IpChecksum,
    /// The TCP/UDP checksum does not verify.
    L4Checksum,
    /// The TTL or hop limit was not decremented once.
    Ttl,
}

/// Frames of one mix, built from a template.
#[derive(Debug, Clone)]
pub struct Traffic {
    proto: Proto,
    ip: Ip,
    template: Vec<u8>,
    l4: usize,
    payload: usize,
    /// The template's L4 checksum before its final complement (folded sum).
    l4_sum: u32,
    /// The template's IPv4 header sum (folded), 0 for IPv6.
    ip_sum: u32,
}

/// Ones' complement sum of the 16-bit words of `b` added to `sum` (unfolded).
fn add_words(b: &[u8], mut sum: u32) -> u32 {
    let mut it = b.chunks_exact(2);
    for c in &mut it {
        sum += u32::from(u16::from_be_bytes([c[0], c[1]]));
    }
    if let [last] = it.remainder() {
        sum += u32::from(*last) << 8;
    }
    sum
}

fn fold(mut sum: u32) -> u16 {
    while sum > 0xffff {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    sum as u16
}

/// Flow `flow`'s client address (IPv4).
fn client4(flow: u64) -> Ipv4Addr {
    Ipv4Addr::from(u32::from(Ipv4Addr::new(172, 16, 0, 0)) + (flow / PORTS_PER_ADDR) as u32)
}

/// Flow `flow`'s client address (IPv6).
fn client6(flow: u64) -> Ipv6Addr {
    Ipv6Addr::from(
        u128::from(Ipv6Addr::new(0xfd00, 1, 0, 0, 0, 0, 0, 0)) + u128::from(flow / PORTS_PER_ADDR),
    )
}

/// Flow `flow`'s client port.
fn client_port(flow: u64) -> u16 {
    1024 + (flow % PORTS_PER_ADDR) as u16
}

/// TCP flags of the frames.
const SYN: u8 = 0x02;
const ACK_PSH: u8 = 0x18;

impl Traffic {
    /// The mix's frames of `size` bytes (without FCS; raised to the headers
    /// and the timestamp if smaller).
    pub fn new(proto: Proto, ip: Ip, size: usize) -> Traffic {
        let l3 = 14;
        let l4 = l3 + if ip == Ip::V4 { 20 } else { 40 };
        let payload = l4 + if proto == Proto::Tcp { 20 } else { 8 };
        let len = size.clamp(payload + STAMP_LEN, 9000);
        let mut f = vec![0u8; len];
        f[..6].copy_from_slice(&FWD_MAC);
        f[6..12].copy_from_slice(&GEN_MAC);
        let next = if proto == Proto::Tcp { 6 } else { 17 };
        let l4_len = len - l4;
        match ip {
            Ip::V4 => {
                f[12..14].copy_from_slice(&[0x08, 0x00]);
                let h = &mut f[l3..l4];
                h[0] = 0x45;
                h[2..4].copy_from_slice(&((len - l3) as u16).to_be_bytes());
                h[6] = 0x40; // DF
                h[8] = 64;
                h[9] = next;
                h[16..20].copy_from_slice(&VIP4.octets());
            }
            Ip::V6 => {
                f[12..14].copy_from_slice(&[0x86, 0xdd]);
                let h = &mut f[l3..l4];
                h[0] = 0x60;
                h[4..6].copy_from_slice(&(l4_len as u16).to_be_bytes());
                h[6] = next;
                h[7] = 64;
                h[24..40].copy_from_slice(&VIP6.octets());
            }
        }
        let t = &mut f[l4..];
        t[2..4].copy_from_slice(&VIP_PORT.to_be_bytes());
        if proto == Proto::Tcp {
            t[4..8].copy_from_slice(&1u32.to_be_bytes());
            t[12] = 0x50;
            t[14..16].copy_from_slice(&0xffffu16.to_be_bytes());
        } else {
            t[4..6].copy_from_slice(&(l4_len as u16).to_be_bytes());
        }
        // Sums of the template with zero client address, port, flags and stamp.
        let (ip_sum, pseudo) = match ip {
            Ip::V4 => (add_words(&f[l3..l4], 0), add_words(&f[l3 + 12..l3 + 20], 0)),
            Ip::V6 => (0, add_words(&f[l3 + 8..l3 + 40], 0)),
        };
        let l4_sum = pseudo + u32::from(next) + l4_len as u32 + add_words(&f[l4..], 0);
        Traffic {
            proto,
            ip,
            template: f,
            l4,
            payload,
            l4_sum,
            ip_sum,
        }
    }

    /// Length of the frames.
    pub fn len(&self) -> usize {
        self.template.len()
    }

    /// Never true: a frame has headers.
    pub fn is_empty(&self) -> bool {
        false
    }

    /// Writes into `out` (of [`Traffic::len`] bytes) flow `flow`'s frame
    /// stamped `tsc`: the flow's first (a SYN for TCP) if `first`.
    pub fn build(&self, out: &mut [u8], flow: u64, first: bool, tsc: u64) {
        out.copy_from_slice(&self.template);
        let mut l4_sum = self.l4_sum;
        let port = client_port(flow);
        match self.ip {
            Ip::V4 => {
                let a = client4(flow).octets();
                out[26..30].copy_from_slice(&a);
                let w = add_words(&a, 0);
                let ip_sum = self.ip_sum + w;
                out[24..26].copy_from_slice(&(!fold(ip_sum)).to_be_bytes());
                l4_sum += w;
            }
            Ip::V6 => {
                let a = client6(flow).octets();
                out[22..38].copy_from_slice(&a);
                l4_sum += add_words(&a, 0);
            }
        }
        let l4 = self.l4;
        out[l4..l4 + 2].copy_from_slice(&port.to_be_bytes());
        l4_sum += u32::from(port);
        let p = self.payload;
        out[p..p + STAMP_LEN].copy_from_slice(&tsc.to_le_bytes());
        l4_sum = add_words(&out[p..p + STAMP_LEN], l4_sum);
        if self.proto == Proto::Tcp {
            let flags = if first { SYN } else { ACK_PSH };
            out[l4 + 13] = flags;
            l4_sum += u32::from(flags);
            out[l4 + 16..l4 + 18].copy_from_slice(&(!fold(l4_sum)).to_be_bytes());
        } else {
            let c = !fold(l4_sum);
            // A computed 0 is sent as 0xffff (RFC 768).
            let c = if c == 0 { 0xffff } else { c };
            out[l4 + 6..l4 + 8].copy_from_slice(&c.to_be_bytes());
        }
    }

    /// The sending TSC a frame that came back carries, if it has the mix's shape.
    pub fn stamp(&self, frame: &[u8]) -> Option<u64> {
        let b = frame.get(self.payload..self.payload + STAMP_LEN)?;
        Some(u64::from_le_bytes(b.try_into().ok()?))
    }

    /// Checks a frame the forwarder sent back as a load balancer's NAT
    /// would: to one of the servers (MAC and address), from the forwarder's
    /// MAC, TTL decremented once, valid checksums.
    pub fn check_nat(&self, f: &[u8]) -> Result<(), Bad> {
        let (ttl, to) = self.parse(f)?;
        let to_server = match to {
            IpAddr::V4(a) => {
                (0..4).any(|n| server4(n) == (a, f[..6].try_into().unwrap_or_default()))
            }
            IpAddr::V6(a) => (0..4).any(|n| server4(n).1 == f[..6] && server6(n) == a),
        };
        if !to_server || f[6..12] != FWD_MAC {
            return Err(Bad::NotToServer);
        }
        if ttl != 63 {
            return Err(Bad::Ttl);
        }
        Ok(())
    }

    /// Checks that `f` came back as it was sent (a plain forwarder's `io`
    /// mode): the same MACs, still to the VIP, the TTL untouched, valid
    /// checksums.
    pub fn check_same(&self, f: &[u8]) -> Result<(), Bad> {
        let (ttl, to) = self.parse(f)?;
        let vip = match self.ip {
            Ip::V4 => IpAddr::V4(VIP4),
            Ip::V6 => IpAddr::V6(VIP6),
        };
        if f[..12] != self.template[..12] || to != vip {
            return Err(Bad::Malformed);
        }
        if ttl != 64 {
            return Err(Bad::Ttl);
        }
        Ok(())
    }

    /// The TTL (hop limit) and destination of a frame of the mix's shape
    /// whose checksums verify.
    fn parse(&self, f: &[u8]) -> Result<(u8, IpAddr), Bad> {
        if f.len() != self.len() || f[12..14] != self.template[12..14] {
            return Err(Bad::Malformed);
        }
        let l4 = self.l4;
        let next = if self.proto == Proto::Tcp { 6 } else { 17 };
        let h = &f[14..l4];
        let (proto, ttl, to, pseudo) = match self.ip {
            Ip::V4 => {
                if fold(add_words(h, 0)) != 0xffff {
                    return Err(Bad::IpChecksum);
                }
                let to = Ipv4Addr::new(h[16], h[17], h[18], h[19]);
                (h[9], h[8], IpAddr::V4(to), add_words(&h[12..20], 0))
            }
            Ip::V6 => {
                let to = Ipv6Addr::from(<[u8; 16]>::try_from(&h[24..40]).unwrap_or_default());
                (h[6], h[7], IpAddr::V6(to), add_words(&h[8..40], 0))
            }
        };
        if proto != next {
            return Err(Bad::Malformed);
        }
        let sum = pseudo + u32::from(next) + (f.len() - l4) as u32 + add_words(&f[l4..], 0);
        if fold(sum) != 0xffff {
            return Err(Bad::L4Checksum);
        }
        Ok((ttl, to))
    }
}

/// A small, fast pseudo-random generator (xorshift64*) for flow choice.
#[derive(Debug, Clone)]
pub struct FlowRng(u64);

impl FlowRng {
    /// A generator from a non-zero seed.
    pub fn new(seed: u64) -> FlowRng {
        FlowRng(seed | 1)
    }

    /// The next number.
    #[inline]
    pub fn next_u64(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.0 = x;
        x.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    /// A number below `n` (n > 0), by multiply-shift.
    #[inline]
    pub fn below(&mut self, n: u64) -> u64 {
        ((u128::from(self.next_u64()) * u128::from(n)) >> 64) as u64
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A full recomputation of the checksums agrees with the incremental ones.
    fn verify(t: &Traffic, f: &[u8]) {
        let l4 = t.l4;
        let (pseudo, next) = match t.ip {
            Ip::V4 => {
                assert_eq!(fold(add_words(&f[14..34], 0)), 0xffff, "IPv4 checksum");
                (add_words(&f[26..34], 0), f[23])
            }
            Ip::V6 => (add_words(&f[22..54], 0), f[20]),
        };
        let sum = pseudo + u32::from(next) + (f.len() - l4) as u32 + add_words(&f[l4..], 0);
        assert_eq!(fold(sum), 0xffff, "L4 checksum");
    }

    #[test]
    fn frames_have_valid_checksums_and_their_stamp() {
        for proto in [Proto::Tcp, Proto::Udp] {
            for ip in [Ip::V4, Ip::V6] {
                for size in [60, 64, 65, 128, 1500] {
                    let t = Traffic::new(proto, ip, size);
                    assert!(t.len() >= size.min(9000));
                    let mut f = vec![0; t.len()];
                    for (flow, first, tsc) in [(0, true, 0), (12_345_678, false, u64::MAX - 3)] {
                        t.build(&mut f, flow, first, tsc);
                        verify(&t, &f);
                        assert_eq!(t.stamp(&f), Some(tsc));
                        assert_eq!(t.check_same(&f), Ok(()));
                        // Not NAT-ed: still to the VIP.
                        assert_eq!(t.check_nat(&f), Err(Bad::NotToServer));
                    }
                }
            }
        }
    }

    #[test]
    fn flows_are_distinct_client_address_and_port_pairs() {
        let key = |f: u64| (client4(f), client_port(f));
        assert_ne!(key(0), key(1));
        assert_ne!(key(0), key(PORTS_PER_ADDR));
        assert_eq!(client4(10_000_000), Ipv4Addr::new(172, 16, 2, 98));
        assert_eq!(
            client6(PORTS_PER_ADDR),
            "fd00:1::1".parse::<Ipv6Addr>().unwrap()
        );
    }

    #[test]
    fn a_nat_rewrite_passes_the_check_and_damage_does_not() {
        let t = Traffic::new(Proto::Udp, Ip::V4, 64);
        let mut f = vec![0; t.len()];
        t.build(&mut f, 7, false, 99);
        // NAT by hand: destination MAC and address, TTL, checksums recomputed.
        let (srv, mac) = server4(2);
        f[..6].copy_from_slice(&mac);
        f[6..12].copy_from_slice(&FWD_MAC);
        f[30..34].copy_from_slice(&srv.octets());
        f[22] = 63;
        f[24..26].fill(0);
        let c = !fold(add_words(&f[14..34], 0));
        f[24..26].copy_from_slice(&c.to_be_bytes());
        f[40..42].fill(0);
        let sum = add_words(&f[26..34], 0) + 17 + (f.len() - 34) as u32 + add_words(&f[34..], 0);
        f[40..42].copy_from_slice(&(!fold(sum)).to_be_bytes());
        assert_eq!(t.check_nat(&f), Ok(()));
        f[50] ^= 1;
        assert_eq!(t.check_nat(&f), Err(Bad::L4Checksum));
        f[50] ^= 1;
        f[22] = 64;
        assert_eq!(t.check_nat(&f), Err(Bad::IpChecksum));
        assert_eq!(t.check_same(&f), Err(Bad::IpChecksum));
    }

    #[test]
    fn rng_stays_below_its_bound() {
        let mut r = FlowRng::new(5);
        assert!((0..10_000).all(|_| r.below(1000) < 1000));
    }
}
