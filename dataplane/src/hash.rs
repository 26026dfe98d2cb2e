//! Spec-stable, seeded hashing shared by the schedulers and the tables.
//!
//! Everything that must agree between cores, between cluster nodes and across
//! software versions (Maglev tables, rendezvous scores, source hashing, the
//! sticky first choice) hashes with **XXH3-64** (`xxhash-rust`), whose output is
//! fixed by its specification, over a fixed little-endian encoding: two
//! 16-byte words, the address (IPv4 in the low 32 bits) and a word holding the
//! family (4 or 6, so an IPv4 address and its IPv4-mapped IPv6 form never
//! collide) and the other fields. Whole-word stores keep XXH3's loads
//! forwarded from the store buffer.

use std::net::IpAddr;

use xxhash_rust::xxh3::xxh3_64_with_seed;

/// Seed used to derive per-service seeds (an arbitrary constant; changing it
/// moves every consistent-hash decision, so it never changes).
const SERVICE_SEED: u64 = 0x7461_636b_5f73_7663; // "tack_svc"
/// Seed used to derive a server's identity hash.
const SERVER_SEED: u64 = 0x7461_636b_5f73_7276; // "tack_srv"

/// The address as a 128-bit word and its family tag.
#[inline]
fn addr_word(addr: IpAddr) -> (u128, u128) {
    match addr {
        IpAddr::V4(a) => (u128::from(u32::from(a)), 4),
        IpAddr::V6(a) => (u128::from(a), 6),
    }
}

/// XXH3 of the 32-byte encoding `addr | (family + extra << 8)`.
#[inline]
fn hash_words(seed: u64, addr: IpAddr, extra: u128) -> u64 {
    let (a, family) = addr_word(addr);
    let mut buf = [0u8; 32];
    buf[..16].copy_from_slice(&a.to_le_bytes());
    buf[16..].copy_from_slice(&(family | extra << 8).to_le_bytes());
    xxh3_64_with_seed(&buf, seed)
}

/// Seed of a service, derived from its identity (VIP, IP protocol number,
/// port), so it is
/// the same on every core and node and survives configuration reloads.
pub fn service_seed(vip: IpAddr, ip_proto: u8, port: Option<u16>) -> u64 {
    let port = port.map_or(0, |p| u128::from(p) << 1 | 1);
    hash_words(SERVICE_SEED, vip, u128::from(ip_proto) | port << 8)
}

/// Identity hash of a real server (address and optional port). Used by Maglev
/// and rendezvous hashing instead of the server's index, so that adding or
/// removing a server does not change the scores of the others.
pub fn server_ident(addr: IpAddr, port: Option<u16>) -> u64 {
    let port = port.map_or(0, |p| u128::from(p) << 1 | 1);
    hash_words(SERVER_SEED, addr, port)
}

/// Hash of a source address under `seed` (source-hash scheduling).
pub fn addr_hash(seed: u64, addr: IpAddr) -> u64 {
    hash_words(seed, addr, 0)
}

/// Hash of a masked client key (address + prefix length) under `seed`.
pub fn client_key_hash(seed: u64, addr: IpAddr, prefix: u8) -> u64 {
    hash_words(seed, addr, u128::from(prefix) << 1 | 1)
}

/// Hash of a client flow (source address, source port, destination port)
/// under `seed` (per-flow Maglev and rendezvous scheduling).
pub fn flow_hash(seed: u64, src: IpAddr, src_port: u16, dst_port: u16) -> u64 {
    hash_words(
        seed,
        src,
        u128::from(src_port) << 16 | u128::from(dst_port) << 32 | 1 << 48,
    )
}

/// Combines a key hash with a server identity into a well-mixed 64-bit hash
/// (XXH3 of the key hash's 8 bytes, seeded by the identity). Used for
/// rendezvous scores.
#[inline]
pub fn combine(key_hash: u64, ident: u64) -> u64 {
    xxh3_64_with_seed(&key_hash.to_le_bytes(), ident)
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
