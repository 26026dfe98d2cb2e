//! Address prefixes: the one netmask helper of the crate, used by the
//! routes, the sticky client keys and the profile's checks.

use std::net::{Ipv4Addr, Ipv6Addr};

/// The IPv4 netmask of a `len`-bit prefix (`len` ≥ 32: all ones).
pub fn mask32(len: u8) -> u32 {
    if len == 0 {
        0
    } else {
        u32::MAX << (32 - u32::from(len.min(32)))
    }
}

/// The IPv6 netmask of a `len`-bit prefix (`len` ≥ 128: all ones).
pub fn mask128(len: u8) -> u128 {
    if len == 0 {
        0
    } else {
        u128::MAX << (128 - u32::from(len.min(128)))
    }
}

/// `addr` masked to `prefix` bits (`prefix` ≥ 32 keeps it whole).
pub fn mask_v4(addr: Ipv4Addr, prefix: u8) -> Ipv4Addr {
    Ipv4Addr::from(u32::from(addr) & mask32(prefix))
}

/// `addr` masked to `prefix` bits (`prefix` ≥ 128 keeps it whole).
pub fn mask_v6(addr: Ipv6Addr, prefix: u8) -> Ipv6Addr {
    Ipv6Addr::from(u128::from(addr) & mask128(prefix))
}

/// An IPv4 address class by its leading bits (RFC 791 classful addressing).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum NaturalClass {
    /// Leading bit 0 (0.0.0.0–127.255.255.255): network /8.
    A,
    /// Leading bits 10 (128.0.0.0–191.255.255.255): network /16.
    B,
    /// Leading bits 110 (192.0.0.0–223.255.255.255): network /24.
    C,
    /// Leading bits 1110 (224.0.0.0–239.255.255.255): multicast, never sticky.
    D,
    /// Leading bits 1111 (240.0.0.0–255.255.255.255): experimental, never sticky.
    E,
}

impl NaturalClass {
    /// The classful network prefix length (`None` for classes D and E).
    pub const fn prefix(self) -> Option<u8> {
        match self {
            NaturalClass::A => Some(8),
            NaturalClass::B => Some(16),
            NaturalClass::C => Some(24),
            NaturalClass::D | NaturalClass::E => None,
        }
    }
}

/// The natural class of an IPv4 address (from its first octet).
pub const fn natural_class(addr: Ipv4Addr) -> NaturalClass {
    let o = addr.octets()[0];
    if o < 128 {
        NaturalClass::A
    } else if o < 192 {
        NaturalClass::B
    } else if o < 224 {
        NaturalClass::C
    } else if o < 240 {
        NaturalClass::D
    } else {
        NaturalClass::E
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn masks() {
        assert_eq!(
            mask_v4(Ipv4Addr::new(172, 16, 200, 9), 16),
            Ipv4Addr::new(172, 16, 0, 0)
        );
        assert_eq!(mask_v4(Ipv4Addr::new(1, 2, 3, 4), 0), Ipv4Addr::UNSPECIFIED);
        assert_eq!(
            mask_v4(Ipv4Addr::new(1, 2, 3, 4), 40),
            Ipv4Addr::new(1, 2, 3, 4)
        );
        assert_eq!(mask_v6(Ipv6Addr::LOCALHOST, 64), Ipv6Addr::UNSPECIFIED);
        assert_eq!(mask_v6(Ipv6Addr::LOCALHOST, 128), Ipv6Addr::LOCALHOST);
        assert_eq!(mask32(24), 0xffff_ff00);
        assert_eq!(mask128(0), 0);
    }
}
