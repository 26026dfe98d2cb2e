//! A connection and the table entry that holds it.

use super::*;

/// A connection: where its packets go and how long it lives.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(C)]
pub struct Conn {
    /// Forward entry: the expiry instant. Reply entry: the forward
    /// entry's hash (IPv6), or the expiry its last steady reply set (IPv4,
    /// with self-contained replies; 0 for none since the last state change).
    pub(super) word: u64,
    pub(super) id: u32,
    pub(super) service: ServiceIdx,
    pub(super) server: ServerIdx,
    pub(super) local_addr: u16,
    pub(super) local_port: u16,
    pub(super) state: u8,
    pub(super) bits: u8,
    pub(super) generation: u8,
    /// Free for the pipeline's own per-connection flags.
    pub user_flags: u8,
}

pub(super) const BIT_REPLY: u8 = 1;
pub(super) const BIT_INPUT_ONLY: u8 = 2;
/// In a reply entry: the connection is full NAT.
pub(super) const BIT_FULL_NAT: u8 = 4;

impl Conn {
    /// Service index.
    #[inline]
    pub fn service(&self) -> ServiceIdx {
        self.service
    }
    /// Server index.
    #[inline]
    pub fn server(&self) -> ServerIdx {
        self.server
    }
    /// Full-NAT local address index and local port.
    #[inline]
    pub fn local(&self) -> Option<(u16, u16)> {
        (self.local_addr != NO_LOCAL).then_some((self.local_addr, self.local_port))
    }
    /// Current state.
    #[inline]
    pub fn state(&self) -> ConnState {
        ConnState::from_u8(self.state)
    }
    /// When the connection expires unless another packet arrives, as its
    /// forward entry has it (a steady reply may have moved it later:
    /// [`ConnTable::expires`] has the last word; [`ConnTable::iter`] gives
    /// that one).
    #[inline]
    pub fn expires(&self) -> Time {
        Time(self.word)
    }
    /// Whether only client packets are seen (DSR, tunnel).
    #[inline]
    pub fn input_only(&self) -> bool {
        self.bits & BIT_INPUT_ONLY != 0
    }
    /// The connection's id in its table (`0..capacity`).
    #[inline]
    pub fn id(&self) -> u32 {
        self.id
    }
    #[inline]
    pub(super) fn is_reply(&self) -> bool {
        self.bits & BIT_REPLY != 0
    }
    /// Whether a packet with `flags` leaves the state as it is without
    /// looking further: a TCP segment without SYN, FIN or RST on an
    /// established connection, or any UDP datagram (what
    /// [`ConnState::next`] returns for them).
    #[inline(always)]
    pub(crate) fn steady(&self, flags: TcpFlags) -> bool {
        (self.state == ConnState::Established as u8
            && flags.0 & (TcpFlags::SYN.0 | TcpFlags::FIN.0 | TcpFlags::RST.0) == 0)
            || self.state == ConnState::Udp as u8
    }
}

/// A bucket's entry: 48 bytes (IPv4) or 64 (IPv6), not line-aligned in
/// the table, so [`ConnTable::prefetch`] fetches both its ends.
///
/// A reply entry's `c` is a copy of its connection's (service and server,
/// remapped by reloads; the state, kept in step by the table). Where
/// replies are self-contained it also holds the rest of the forward key: `x`
/// its addresses ([`FlowKey::Stash`]), `c.local_addr` the client's port and
/// `c.local_port` the VIP's (a reply needs no local address: it is the
/// reply key's destination); `c.word` the expiry the last steady reply set.
/// A forward entry's `x` is its own addresses, unused.
pub(super) struct Entry<K: FlowKey> {
    pub(super) key: K,
    pub(super) x: K::Stash,
    pub(super) c: Conn,
}

impl<K: FlowKey> Entry<K> {
    /// A self-contained reply entry's forward key.
    #[inline(always)]
    pub(super) fn forward_key(&self) -> Option<K> {
        self.key
            .unstash(&self.x, self.c.local_addr, self.c.local_port)
    }
    #[inline]
    pub(super) fn is_conn(&self, id: u32, generation: u8) -> bool {
        self.c.id == id && self.c.generation == generation && !self.c.is_reply()
    }
    #[inline]
    pub(super) fn is_reply_of(&self, id: u32, generation: u8) -> bool {
        self.c.id == id && self.c.generation == generation && self.c.is_reply()
    }
}

// Entries must stay within one cache line: 64 bytes for IPv6, 48 for IPv4.
const _: () = assert!(core::mem::size_of::<Entry<Key6>>() <= 64);
const _: () = assert!(core::mem::size_of::<Entry<Key4>>() <= 48);
