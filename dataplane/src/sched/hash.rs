//! Spec-stable, seeded hashing shared by the schedulers and the tables.
//!
//! Everything that must agree between cores, between cluster nodes and across
//! software versions (Maglev tables, rendezvous scores, source hashing, the
//! sticky first choice) hashes with **XXH3-64** (`xxhash-rust`), whose output is
//! fixed by its specification. Addresses are encoded as 17 bytes: a family tag
//! (4 or 6) followed by the address in network order, IPv4 left-aligned and
//! zero-padded, so that an IPv4 address and its IPv4-mapped IPv6 form never
//! collide.

use std::net::IpAddr;

use xxhash_rust::xxh3::xxh3_64_with_seed;

use crate::model::Protocol;

/// Seed used to derive per-service seeds (an arbitrary constant; changing it
/// moves every consistent-hash decision, so it never changes).
const SERVICE_SEED: u64 = 0x7461_636b_5f73_7663; // "tack_svc"
/// Seed used to derive a server's identity hash.
const SERVER_SEED: u64 = 0x7461_636b_5f73_7276; // "tack_srv"

/// Writes the 17-byte encoding of `addr` into `out[..17]`.
#[inline]
pub(crate) fn encode_addr(addr: IpAddr, out: &mut [u8]) {
    match addr {
        IpAddr::V4(a) => {
            out[0] = 4;
            out[1..5].copy_from_slice(&a.octets());
            out[5..17].fill(0);
        }
        IpAddr::V6(a) => {
            out[0] = 6;
            out[1..17].copy_from_slice(&a.octets());
        }
    }
}

/// Seed of a service, derived from its identity (VIP, protocol, port), so it is
/// the same on every core and node and survives configuration reloads.
pub fn service_seed(vip: IpAddr, protocol: Protocol, port: Option<u16>) -> u64 {
    let mut buf = [0u8; 21];
    encode_addr(vip, &mut buf);
    buf[17] = protocol.ip_proto();
    let p = port.unwrap_or(0);
    buf[18..20].copy_from_slice(&p.to_be_bytes());
    buf[20] = u8::from(port.is_some());
    xxh3_64_with_seed(&buf, SERVICE_SEED)
}

/// Identity hash of a real server (address and optional port). Used by Maglev
/// and rendezvous hashing instead of the server's index, so that adding or
/// removing a server does not change the scores of the others.
pub fn server_ident(addr: IpAddr, port: Option<u16>) -> u64 {
    let mut buf = [0u8; 20];
    encode_addr(addr, &mut buf);
    let p = port.unwrap_or(0);
    buf[17..19].copy_from_slice(&p.to_be_bytes());
    buf[19] = u8::from(port.is_some());
    xxh3_64_with_seed(&buf, SERVER_SEED)
}

/// Hash of a source address under `seed` (source-hash scheduling).
pub fn addr_hash(seed: u64, addr: IpAddr) -> u64 {
    let mut buf = [0u8; 17];
    encode_addr(addr, &mut buf);
    xxh3_64_with_seed(&buf, seed)
}

/// Hash of a masked client key (address + prefix length) under `seed`.
pub fn client_key_hash(seed: u64, addr: IpAddr, prefix: u8) -> u64 {
    let mut buf = [0u8; 18];
    encode_addr(addr, &mut buf);
    buf[17] = prefix;
    xxh3_64_with_seed(&buf, seed)
}

/// Hash of a client flow (source address, source port, destination port)
/// under `seed` (per-flow Maglev and rendezvous scheduling).
pub fn flow_hash(seed: u64, src: IpAddr, src_port: u16, dst_port: u16) -> u64 {
    let mut buf = [0u8; 21];
    encode_addr(src, &mut buf);
    buf[17..19].copy_from_slice(&src_port.to_be_bytes());
    buf[19..21].copy_from_slice(&dst_port.to_be_bytes());
    xxh3_64_with_seed(&buf, seed)
}

/// Combines two 64-bit values into a well-mixed 64-bit hash (XXH3 of their
/// 16 bytes). Used for rendezvous scores (`key hash`, `server identity`).
#[inline]
pub fn combine(a: u64, b: u64) -> u64 {
    let mut buf = [0u8; 16];
    buf[..8].copy_from_slice(&a.to_le_bytes());
    buf[8..].copy_from_slice(&b.to_le_bytes());
    xxh3_64_with_seed(&buf, 0)
}

/// Hashes raw bytes under `seed` (tables hash their keys with this).
#[inline]
pub fn bytes_hash(seed: u64, bytes: &[u8]) -> u64 {
    xxh3_64_with_seed(bytes, seed)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::{Ipv4Addr, Ipv6Addr};

    #[test]
    fn families_do_not_collide() {
        let v4 = IpAddr::V4(Ipv4Addr::new(10, 0, 0, 1));
        let mapped = IpAddr::V6(Ipv4Addr::new(10, 0, 0, 1).to_ipv6_mapped());
        assert_ne!(addr_hash(1, v4), addr_hash(1, mapped));
        assert_ne!(server_ident(v4, None), server_ident(v4, Some(0)));
    }

    #[test]
    fn stable_values() {
        // XXH3 is specified; these values must never change between builds,
        // or consistent-hash decisions would move on upgrade.
        let a = server_ident(IpAddr::V4(Ipv4Addr::new(192, 0, 2, 1)), Some(80));
        let b = server_ident(IpAddr::V4(Ipv4Addr::new(192, 0, 2, 1)), Some(80));
        assert_eq!(a, b);
        assert_ne!(a, server_ident(IpAddr::V6(Ipv6Addr::LOCALHOST), Some(80)));
        assert_eq!(combine(1, 2), combine(1, 2));
        assert_ne!(combine(1, 2), combine(2, 1));
    }
}
