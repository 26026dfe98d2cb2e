//! Connection keys: the 5-tuple of a packet as it arrives, per address family.

use super::*;

mod sealed {
    pub trait Sealed {}
}

/// A connection key: the 5-tuple of a packet as it arrives.
pub trait FlowKey: Copy + Eq + fmt::Debug + sealed::Sealed {
    /// Hash of the key under `seed`.
    fn hash_with(&self, seed: u64) -> u64;
    /// Source address.
    fn src_addr(&self) -> IpAddr;
    /// Destination address.
    fn dst_addr(&self) -> IpAddr;
    /// Source port.
    fn src_port(&self) -> u16;
    /// Destination port.
    fn dst_port(&self) -> u16;
    /// IP protocol number.
    fn proto(&self) -> u8;

    /// What an entry keeps besides its key and connection: in a reply
    /// entry, the addresses of the connection's forward key when the
    /// family's replies are self-contained
    /// ([`FlowKey::SELF_CONTAINED_REPLIES`]; the ports are in the entry's
    /// [`Conn`]); nothing otherwise.
    type Stash: Copy + fmt::Debug;
    /// Whether reply entries hold everything a steady reply needs (the
    /// forward key, the server, the state, their own expiry), so that a
    /// reply reads one entry instead of two. IPv4 only: an IPv6 entry with
    /// two more addresses would not fit in a cache line.
    const SELF_CONTAINED_REPLIES: bool;
    /// The stash of a reply entry whose forward key is `self`.
    fn stash(&self) -> Self::Stash;
    /// The forward key of the reply entry whose key is `self`, from its
    /// stash and the forward key's ports, if the family keeps it.
    fn unstash(&self, s: &Self::Stash, client_port: u16, vip_port: u16) -> Option<Self>;
}

/// An IPv4 reply entry's stash: its connection's client address and VIP.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Stash4 {
    pub(super) client: Ipv4Addr,
    pub(super) vip: Ipv4Addr,
}

/// An IPv4 5-tuple.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[repr(C)]
pub struct Key4 {
    /// Source address.
    pub src: Ipv4Addr,
    /// Destination address.
    pub dst: Ipv4Addr,
    /// Source port.
    pub src_port: u16,
    /// Destination port.
    pub dst_port: u16,
    /// IP protocol number (6 TCP, 17 UDP).
    pub proto: u8,
}

impl Key4 {
    /// A key from its parts.
    pub const fn new(
        src: Ipv4Addr,
        dst: Ipv4Addr,
        src_port: u16,
        dst_port: u16,
        proto: u8,
    ) -> Key4 {
        Key4 {
            src,
            dst,
            src_port,
            dst_port,
            proto,
        }
    }
}

/// An IPv6 5-tuple.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[repr(C)]
pub struct Key6 {
    /// Source address.
    pub src: Ipv6Addr,
    /// Destination address.
    pub dst: Ipv6Addr,
    /// Source port.
    pub src_port: u16,
    /// Destination port.
    pub dst_port: u16,
    /// IP protocol number (6 TCP, 17 UDP).
    pub proto: u8,
}

impl Key6 {
    /// A key from its parts.
    pub const fn new(
        src: Ipv6Addr,
        dst: Ipv6Addr,
        src_port: u16,
        dst_port: u16,
        proto: u8,
    ) -> Key6 {
        Key6 {
            src,
            dst,
            src_port,
            dst_port,
            proto,
        }
    }
}

impl sealed::Sealed for Key4 {}
impl sealed::Sealed for Key6 {}

impl FlowKey for Key4 {
    #[inline]
    fn hash_with(&self, seed: u64) -> u64 {
        // Whole-word stores, so XXH3's 8-byte loads are forwarded from the
        // store buffer instead of stalling on byte-wise writes.
        let lo = u64::from(u32::from(self.src)) << 32 | u64::from(u32::from(self.dst));
        let hi =
            u64::from(self.src_port) << 24 | u64::from(self.dst_port) << 8 | u64::from(self.proto);
        let mut b = [0u8; 16];
        b[..8].copy_from_slice(&lo.to_ne_bytes());
        b[8..].copy_from_slice(&hi.to_ne_bytes());
        bytes_hash(seed, &b)
    }
    fn src_addr(&self) -> IpAddr {
        IpAddr::V4(self.src)
    }
    fn dst_addr(&self) -> IpAddr {
        IpAddr::V4(self.dst)
    }
    fn src_port(&self) -> u16 {
        self.src_port
    }
    fn dst_port(&self) -> u16 {
        self.dst_port
    }
    fn proto(&self) -> u8 {
        self.proto
    }
    type Stash = Stash4;
    const SELF_CONTAINED_REPLIES: bool = true;
    #[inline(always)]
    fn stash(&self) -> Stash4 {
        Stash4 {
            client: self.src,
            vip: self.dst,
        }
    }
    #[inline(always)]
    fn unstash(&self, s: &Stash4, client_port: u16, vip_port: u16) -> Option<Key4> {
        Some(Key4::new(
            s.client,
            s.vip,
            client_port,
            vip_port,
            self.proto,
        ))
    }
}

impl FlowKey for Key6 {
    #[inline]
    fn hash_with(&self, seed: u64) -> u64 {
        // Three 16-byte words: XXH3 reads this length in aligned 16-byte chunks.
        let ports = u128::from(self.src_port) << 24
            | u128::from(self.dst_port) << 8
            | u128::from(self.proto);
        let mut b = [0u8; 48];
        b[..16].copy_from_slice(&u128::from(self.src).to_ne_bytes());
        b[16..32].copy_from_slice(&u128::from(self.dst).to_ne_bytes());
        b[32..].copy_from_slice(&ports.to_ne_bytes());
        bytes_hash(seed, &b)
    }
    fn src_addr(&self) -> IpAddr {
        IpAddr::V6(self.src)
    }
    fn dst_addr(&self) -> IpAddr {
        IpAddr::V6(self.dst)
    }
    fn src_port(&self) -> u16 {
        self.src_port
    }
    fn dst_port(&self) -> u16 {
        self.dst_port
    }
    fn proto(&self) -> u8 {
        self.proto
    }
    type Stash = ();
    const SELF_CONTAINED_REPLIES: bool = false;
    #[inline(always)]
    fn stash(&self) {}
    #[inline(always)]
    fn unstash(&self, _: &(), _: u16, _: u16) -> Option<Key6> {
        None
    }
}
