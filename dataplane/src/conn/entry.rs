//! A connection and the table entry that holds it.

use super::*;

/// A connection: where its packets go and how long it lives.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(C)]
pub struct Conn {
    /// One word, three meanings, read and written only through the named
    /// accessors below: a forward entry's expiry ([`Conn::expiry_ns`]), an
    /// IPv6 reply entry's forward hash ([`Conn::forward_hash`]), an IPv4
    /// (self-contained) reply entry's own expiry ([`Conn::reply_expiry_ns`]).
    word: u64,
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
    /// A forward entry's expiry (ns).
    #[inline(always)]
    pub(super) fn expiry_ns(&self) -> u64 {
        self.word
    }

    /// Sets a forward entry's expiry (ns).
    #[inline(always)]
    pub(super) fn set_expiry_ns(&mut self, ns: u64) {
        self.word = ns;
    }

    /// A reply entry's forward-entry hash (families without self-contained
    /// replies).
    #[inline(always)]
    pub(super) fn forward_hash(&self) -> u64 {
        self.word
    }

    /// A self-contained reply entry's own expiry (ns), set by its last
    /// steady reply; 0 for none since the last state change.
    #[inline(always)]
    pub(super) fn reply_expiry_ns(&self) -> u64 {
        self.word
    }

    /// Sets a self-contained reply entry's own expiry (ns; 0 for none).
    #[inline(always)]
    pub(super) fn set_reply_expiry_ns(&mut self, ns: u64) {
        self.word = ns;
    }

    /// A self-contained reply entry's stash of its forward key's ports:
    /// (client port, VIP port), kept where a forward entry keeps its local
    /// address and port.
    #[inline(always)]
    pub(super) fn stashed_ports(&self) -> (u16, u16) {
        (self.local_addr, self.local_port)
    }

    /// A new connection's forward entry.
    #[allow(clippy::too_many_arguments)]
    #[inline(always)]
    pub(super) fn new_forward(
        expiry_ns: u64,
        id: u32,
        generation: u8,
        new: &NewConn,
        state: ConnState,
        input_only: bool,
    ) -> Conn {
        let (local_addr, local_port) = new.local.unwrap_or((NO_LOCAL, 0));
        Conn {
            word: expiry_ns,
            id,
            service: new.service,
            server: new.server,
            local_addr,
            local_port,
            state: state as u8,
            bits: if input_only { BIT_INPUT_ONLY } else { 0 },
            generation,
            user_flags: new.user_flags,
        }
    }

    /// The reply entry of forward entry `self`: self-contained (its forward
    /// key's ports stashed, no expiry of its own yet) or pointing to the
    /// forward entry by its hash `forward_hash`.
    #[inline(always)]
    pub(super) fn reply_of(
        &self,
        full_nat: bool,
        stash: Option<(u16, u16)>,
        forward_hash: u64,
    ) -> Conn {
        let bits = BIT_REPLY | if full_nat { BIT_FULL_NAT } else { 0 };
        match stash {
            Some((client_port, vip_port)) => Conn {
                word: 0,
                bits,
                local_addr: client_port,
                local_port: vip_port,
                ..*self
            },
            None => Conn {
                word: forward_hash,
                bits,
                ..*self
            },
        }
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
/// reply key's destination); [`Conn::reply_expiry_ns`] the expiry the last
/// steady reply set.
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
        let (client_port, vip_port) = self.c.stashed_ports();
        self.key.unstash(&self.x, client_port, vip_port)
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
