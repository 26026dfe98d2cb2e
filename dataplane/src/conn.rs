//! The per-core connection table: bounded, burst-oriented, with TCP state
//! tracking and timer-wheel expiry.
//!
//! # Layout
//! One [`ConnTable`] per address family and core ([`ConnTable4`],
//! [`ConnTable6`]), each a hashbrown [`HashTable`] of entries that hold the key
//! and the connection inline: 48 bytes for IPv4, 64 bytes for IPv6 (asserted at
//! compile time). Keys are the packet's own 5-tuple as it arrives, so a
//! lookup needs no classification first:
//! - the **forward** entry is keyed by the client-side tuple
//!   (client → VIP) and holds the [`Conn`];
//! - a **reply** entry (NAT and full NAT, where the appliance sees the server's
//!   answers) is keyed by the server-side tuple (server → client for NAT,
//!   server → local address for full NAT) and points to the forward entry.
//!
//! Lookups resolve both kinds to a [`Handle`] on the forward entry;
//! [`Handle::is_reply`] tells which direction the packet travels.
//!
//! # Self-contained replies (IPv4)
//! An IPv4 reply entry also holds everything a *steady* reply needs (an
//! established TCP connection's segment without SYN, FIN or RST, or a UDP
//! datagram): the rest of the forward key (client address and port, VIP
//! and port), a copy of the service, server and state, and its own expiry.
//! Such a reply reads one entry, as a client packet does, instead of two
//! ([`ConnTable::steady_reply`], [`ConnTable::on_reply_at`]). The table
//! keeps the copy true:
//! - every state change made on the forward entry is copied to the reply
//!   entry, whose own expiry is then cleared (the transition's expiry is
//!   the one that counts, so a shorter timeout applies at once);
//! - a reload remaps the copy's service and server with the forward entry's;
//! - the connection expires at the later of the forward entry's expiry and
//!   the reply entry's: the forward entry's timer consults the reply entry
//!   when it fires, and re-arms for the later one ([`ConnTable::expires`]).
//!
//! Any other reply (a SYN-ACK, a FIN, an RST, or one the fast path cannot
//! send) resolves to the forward entry as before. IPv6 entries have no room
//! for two more addresses within a cache line: IPv6 replies always take the
//! second lookup.
//!
//! Each connection has an id in `0..capacity` used by the timer wheel and by
//! reply entries, with an 8-bit generation: a [`Handle`] kept after its
//! connection left resolves to `None` rather than to the id's next occupant
//! (handles are meant to live for one burst; the generation guards 255
//! reuses); per-id metadata (the two entry hashes) lives in the id's
//! timer node (48 bytes together), all allocated at construction. The hash
//! table is allocated at construction for twice the configured entry
//! capacity: hashbrown then always cleans deleted slots in place instead of
//! growing, so the table **never allocates or grows after construction** and
//! never holds more than the configured number of entries. A full table drops
//! the new flow or evicts the connection closest to expiry, as configured
//! ([`FullPolicy`]); both are counted.
//!
//! # Memory
//! The table has `next_power_of_two(capacity × 16 / 7)` buckets, each the
//! entry plus one control byte, and 52 bytes per id (timer node with the
//! id's metadata, free-list slot). A capacity just under 7/16 of a power of two uses the allocation
//! best: 917 504 IPv4 entries take 2^21 buckets (98 MiB), 1 000 000 take 2^22
//! (196 MiB); 10 M IPv4 entries take 1.53 GiB plus 0.5 GiB of timers.
//! [`ConnTable::table_bytes`] reports the table's allocation.
//!
//! # Bursts
//! A lookup is split in three steps so that a burst's cache misses overlap:
//! [`ConnTable::prefetch`] hashes a key and prefetches its likeliest bucket,
//! the first of its probe sequence (`hash & (buckets - 1)`, hashbrown's
//! `h1`): its control byte and both ends of its entry (an entry is not
//! line-aligned and may span two lines), and the start of the next
//! bucket's entry, the second likeliest. The bucket addresses are computed
//! from where the bucket array lies (learnt at the first insert), so the
//! prefetch reads nothing and waits for nothing (hashbrown has no prefetch
//! of its own; the `prefetch-index` crate issues the instruction, and this
//! crate stays free of `unsafe`). [`ConnTable::probe`], as late as
//! possible, takes a key found in one of those two buckets as a hit and
//! probes the others in full (absent keys, or keys further along their probe
//! sequence); an IPv6 reply entry's forward entry is prefetched there and
//! read by [`ConnTable::finish`] (an IPv4 reply entry is enough for a
//! steady reply; its forward entry is found only if needed). At the load
//! this table keeps (at most half full, usually far less) about nine keys
//! in ten sit in their likeliest bucket,
//! so a hit costs the lines the prefetch brought in. The pipeline prefetches
//! every frame's key as it classifies the burst and probes each four frames
//! before it handles it; [`ConnTable::lookup_burst`] runs the three steps
//! over a whole burst for other callers. A [`Handle`] remembers the bucket,
//! so later accesses do not probe again (they re-probe only if an insert in
//! between moved entries).

//! # TCP state and timeouts
//! The table follows each TCP connection through the states of
//! [`ConnState`], from the client's SYN and the server's SYN-ACK to the FIN
//! exchange or an RST; each state has its own idle timeout ([`Timeouts`],
//! IPVS-like defaults). Services whose replies bypass the appliance (DSR,
//! tunnel) are tracked on client packets only ("input-only", as IPVS does). An
//! established flow's packets only move its expiry forward; the wheel timer
//! is not touched (lazy re-arming: when the old timer fires the entry is
//! found not due and re-armed). A transition to a state with a shorter timeout
//! re-arms at once, so no connection outlives its timeout by more than a tick.

use core::fmt;
use core::time::Duration;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use hashbrown::HashTable;
use thiserror::Error;

use crate::model::{ReloadMap, ServerIdx, ServiceIdx};
use crate::sched::hash::bytes_hash;
use crate::time::Time;
use crate::timer::{TimerError, TimerWheel, id_stack};

/// Largest burst hashed in one pass of [`ConnTable::lookup_burst`].
pub const BURST: usize = 32;
/// Largest number of connections (ids) in one table.
pub const MAX_CONNS: usize = (u32::MAX - 1) as usize;
/// Marker for "no local address" (non-full-NAT connections).
const NO_LOCAL: u16 = u16::MAX;

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
    client: Ipv4Addr,
    vip: Ipv4Addr,
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

/// TCP header flags as they appear in the header's flags byte.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash)]
pub struct TcpFlags(pub u8);

impl TcpFlags {
    /// No flag (also what UDP packets pass).
    pub const NONE: TcpFlags = TcpFlags(0);
    /// FIN.
    pub const FIN: TcpFlags = TcpFlags(0x01);
    /// SYN.
    pub const SYN: TcpFlags = TcpFlags(0x02);
    /// RST.
    pub const RST: TcpFlags = TcpFlags(0x04);
    /// ACK.
    pub const ACK: TcpFlags = TcpFlags(0x10);
    /// SYN + ACK.
    pub const SYN_ACK: TcpFlags = TcpFlags(0x12);
    /// FIN + ACK.
    pub const FIN_ACK: TcpFlags = TcpFlags(0x11);

    /// Whether every flag of `other` is set.
    #[inline]
    pub const fn contains(self, other: TcpFlags) -> bool {
        self.0 & other.0 == other.0
    }
}

/// Which way a packet travels on a connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Direction {
    /// Client → VIP.
    Original,
    /// Server → client (or → local address in full NAT).
    Reply,
}

/// Connection state as the appliance sees it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
#[repr(u8)]
pub enum ConnState {
    /// The client's SYN was seen, no answer yet.
    SynSent = 0,
    /// The server's SYN-ACK was seen.
    SynRecv = 1,
    /// Handshake complete (or the flow was picked up mid-stream).
    Established = 2,
    /// The client sent FIN first.
    FinWait = 3,
    /// The server sent FIN first.
    CloseWait = 4,
    /// Both sides sent FIN; waiting for the last ACK.
    LastAck = 5,
    /// Closed by FINs; lingering for late packets.
    TimeWait = 6,
    /// Reset; lingering briefly for late packets.
    Close = 7,
    /// UDP (or any non-TCP protocol): a single state.
    Udp = 8,
}

const STATES: usize = 9;

impl ConnState {
    /// The state of a new connection created by a client packet.
    pub const fn initial(proto: u8, flags: TcpFlags) -> ConnState {
        if proto != 6 {
            ConnState::Udp
        } else if flags.contains(TcpFlags::RST) {
            ConnState::Close
        } else if flags.contains(TcpFlags::SYN) && !flags.contains(TcpFlags::ACK) {
            ConnState::SynSent
        } else {
            ConnState::Established
        }
    }

    /// The next TCP state after a packet with `flags` travelling in `dir`.
    /// `input_only` is true when the appliance never sees replies (DSR,
    /// tunnel): then the client's ACK completes the handshake.
    pub const fn next(self, dir: Direction, flags: TcpFlags, input_only: bool) -> ConnState {
        use ConnState::*;
        if matches!(self, Udp) {
            return Udp;
        }
        if flags.contains(TcpFlags::RST) {
            return Close;
        }
        let syn = flags.contains(TcpFlags::SYN);
        let ack = flags.contains(TcpFlags::ACK);
        let fin = flags.contains(TcpFlags::FIN);
        match dir {
            Direction::Original => {
                if syn && !ack {
                    // A new attempt reuses a closed tuple; a retransmission changes nothing.
                    return match self {
                        SynSent | Close | TimeWait => SynSent,
                        s => s,
                    };
                }
                if fin {
                    return match self {
                        SynSent | SynRecv | Established => FinWait,
                        CloseWait => LastAck,
                        s => s,
                    };
                }
                if ack {
                    return match self {
                        SynRecv => Established,
                        SynSent if input_only => Established,
                        LastAck => TimeWait,
                        s => s,
                    };
                }
                self
            }
            Direction::Reply => {
                if syn {
                    return match self {
                        SynSent if ack => SynRecv,
                        s => s,
                    };
                }
                if fin {
                    return match self {
                        SynRecv | Established => CloseWait,
                        FinWait => LastAck,
                        s => s,
                    };
                }
                if ack {
                    return match self {
                        LastAck => TimeWait,
                        s => s,
                    };
                }
                self
            }
        }
    }

    const fn from_u8(v: u8) -> ConnState {
        match v {
            0 => ConnState::SynSent,
            1 => ConnState::SynRecv,
            2 => ConnState::Established,
            3 => ConnState::FinWait,
            4 => ConnState::CloseWait,
            5 => ConnState::LastAck,
            6 => ConnState::TimeWait,
            7 => ConnState::Close,
            _ => ConnState::Udp,
        }
    }
}

/// Idle timeout per state. Defaults follow IPVS, with a 60 s SYN timeout.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Timeouts {
    /// Client SYN seen (default 60 s).
    pub syn_sent: Duration,
    /// Server SYN-ACK seen (default 60 s).
    pub syn_recv: Duration,
    /// Established (default 900 s).
    pub established: Duration,
    /// Client FIN first (default 120 s).
    pub fin_wait: Duration,
    /// Server FIN first (default 60 s).
    pub close_wait: Duration,
    /// Both FINs (default 30 s).
    pub last_ack: Duration,
    /// Closed by FINs (default 120 s).
    pub time_wait: Duration,
    /// Reset (default 10 s).
    pub close: Duration,
    /// UDP and other protocols (default 300 s).
    pub udp: Duration,
}

impl Default for Timeouts {
    fn default() -> Timeouts {
        Timeouts {
            syn_sent: Duration::from_secs(60),
            syn_recv: Duration::from_secs(60),
            established: Duration::from_secs(900),
            fin_wait: Duration::from_secs(120),
            close_wait: Duration::from_secs(60),
            last_ack: Duration::from_secs(30),
            time_wait: Duration::from_secs(120),
            close: Duration::from_secs(10),
            udp: Duration::from_secs(300),
        }
    }
}

impl Timeouts {
    /// The timeout of `state`.
    pub const fn get(&self, state: ConnState) -> Duration {
        match state {
            ConnState::SynSent => self.syn_sent,
            ConnState::SynRecv => self.syn_recv,
            ConnState::Established => self.established,
            ConnState::FinWait => self.fin_wait,
            ConnState::CloseWait => self.close_wait,
            ConnState::LastAck => self.last_ack,
            ConnState::TimeWait => self.time_wait,
            ConnState::Close => self.close,
            ConnState::Udp => self.udp,
        }
    }

    fn as_nanos(&self) -> [u64; STATES] {
        let mut out = [0u64; STATES];
        for (i, o) in out.iter_mut().enumerate() {
            let d = self.get(ConnState::from_u8(i as u8));
            *o = u64::try_from(d.as_nanos()).unwrap_or(u64::MAX);
        }
        out
    }
}

/// What a full table does with a new flow.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash)]
pub enum FullPolicy {
    /// Refuse the new flow (counted in [`ConnStats::full_drops`]).
    #[default]
    Drop,
    /// Remove the connection closest to expiry (a timed-out one if any, which
    /// under a SYN flood is typically a half-open one); counted in
    /// [`ConnStats::evictions`] (or [`ConnStats::expired`] if it had timed out).
    EvictOldest,
}

/// Configuration of one connection table.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ConnTableConfig {
    /// Maximum number of entries (a NAT / full-NAT connection uses two: forward
    /// and reply; a DSR / tunnel connection one).
    pub capacity: usize,
    /// Per-state timeouts.
    pub timeouts: Timeouts,
    /// What to do when full.
    pub full_policy: FullPolicy,
    /// Timer wheel tick (expiry precision), default 100 ms.
    pub tick: Duration,
    /// Hash seed. `tack` picks a random one per table at start, so that
    /// clients cannot aim collisions; tests and benchmarks fix it.
    pub hash_seed: u64,
}

impl Default for ConnTableConfig {
    fn default() -> ConnTableConfig {
        ConnTableConfig {
            capacity: 1 << 20,
            timeouts: Timeouts::default(),
            full_policy: FullPolicy::Drop,
            tick: Duration::from_millis(100),
            hash_seed: 0x636f_6e6e_7461_626c,
        }
    }
}

/// Why a table cannot be built.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[non_exhaustive]
pub enum ConnTableError {
    /// Capacity 0 or above [`MAX_CONNS`].
    #[error("connection table capacity {0} is out of range (1..={max})", max = MAX_CONNS)]
    Capacity(usize),
    /// The timer wheel refused the configuration.
    #[error("timer wheel: {0}")]
    Timer(#[from] TimerError),
    /// The allocator refused the table.
    #[error("cannot allocate a connection table of {0} entries")]
    Alloc(usize),
}

/// Why a connection was not inserted.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Error)]
#[non_exhaustive]
pub enum InsertError {
    /// The forward key is already in the table (the handle points to it).
    #[error("connection already exists")]
    Exists(Handle),
    /// The reply key is already in the table (for full NAT: the local port is taken).
    #[error("reply tuple already in use")]
    ReplyExists,
    /// The reply key equals the forward key.
    #[error("reply tuple equals the forward tuple")]
    ReplyIsForward,
    /// The table is full and the policy (or the lack of a victim) refused the flow.
    #[error("connection table full")]
    Full,
}

/// A caller-side mistake in a burst call.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Error)]
#[error("output slice holds {out} results for {keys} keys")]
pub struct BurstLenMismatch {
    /// Number of keys.
    pub keys: usize,
    /// Length of the output slice.
    pub out: usize,
}

/// A connection: where its packets go and how long it lives.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(C)]
pub struct Conn {
    /// Forward entry: the expiry instant. Reply entry: the forward
    /// entry's hash (IPv6), or the expiry its last steady reply set (IPv4,
    /// with self-contained replies; 0 for none since the last state change).
    word: u64,
    id: u32,
    service: ServiceIdx,
    server: ServerIdx,
    local_addr: u16,
    local_port: u16,
    state: u8,
    bits: u8,
    generation: u8,
    /// Free for the pipeline's own per-connection flags.
    pub user_flags: u8,
}

const BIT_REPLY: u8 = 1;
const BIT_INPUT_ONLY: u8 = 2;
/// In a reply entry: the connection is full NAT.
const BIT_FULL_NAT: u8 = 4;

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
    fn is_reply(&self) -> bool {
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
struct Entry<K: FlowKey> {
    key: K,
    x: K::Stash,
    c: Conn,
}

impl<K: FlowKey> Entry<K> {
    /// A self-contained reply entry's forward key.
    #[inline(always)]
    fn forward_key(&self) -> Option<K> {
        self.key
            .unstash(&self.x, self.c.local_addr, self.c.local_port)
    }
    #[inline]
    fn is_conn(&self, id: u32, generation: u8) -> bool {
        self.c.id == id && self.c.generation == generation && !self.c.is_reply()
    }
    #[inline]
    fn is_reply_of(&self, id: u32, generation: u8) -> bool {
        self.c.id == id && self.c.generation == generation && self.c.is_reply()
    }
}

// Entries must stay within one cache line: 64 bytes for IPv6, 48 for IPv4.
const _: () = assert!(core::mem::size_of::<Entry<Key6>>() <= 64);
const _: () = assert!(core::mem::size_of::<Entry<Key4>>() <= 48);

/// What [`ConnTable::probe`] found for one key.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Probe {
    /// No such key.
    Miss,
    /// The key of a connection's forward (client-side) entry.
    Hit(Handle),
    /// The key of a reply entry: pass it to [`ConnTable::finish`] for its
    /// connection, or (IPv4) read it with [`ConnTable::steady_reply`].
    Reply(ReplyRef),
}

/// A reply entry found by a probe (see [`Probe::Reply`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ReplyRef {
    /// The forward entry's hash (IPv6; 0 where replies are self-contained,
    /// which compute it from the stashed key when needed).
    hash: u64,
    /// The reply entry's bucket.
    bucket: u32,
    id: u32,
    generation: u8,
}

/// A steady reply's connection, from its reply entry alone
/// ([`ConnTable::steady_reply`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct SteadyReply<K> {
    /// Where the reply entry lies, for [`ConnTable::on_reply_at`].
    pub(crate) at: Located,
    /// The connection's forward (client-side) key.
    pub(crate) key: K,
    /// Service index.
    pub(crate) service: ServiceIdx,
    /// Server index.
    pub(crate) server: ServerIdx,
    /// Whether the connection is full NAT (the reply goes to the client,
    /// not to the local address).
    pub(crate) full_nat: bool,
}

/// Where a connection lies in its table ([`ConnTable::get_located`]): valid
/// until the table next changes (an insert, a removal, an expiry).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Located(usize);

/// Refers to a connection found by a lookup or created by an insert.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Handle {
    hash: u64,
    bucket: u32,
    id: u32,
    generation: u8,
    reply: bool,
}

impl Handle {
    /// Whether the packet matched the reply entry (it travels server → client).
    #[inline]
    pub fn is_reply(&self) -> bool {
        self.reply
    }
    /// The packet's direction.
    #[inline]
    pub fn direction(&self) -> Direction {
        if self.reply {
            Direction::Reply
        } else {
            Direction::Original
        }
    }
    /// The connection's id in its table.
    #[inline]
    pub fn id(&self) -> u32 {
        self.id
    }
}

/// New connection parameters.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct NewConn {
    /// Service index.
    pub service: ServiceIdx,
    /// Server index.
    pub server: ServerIdx,
    /// Full-NAT local address index and port.
    pub local: Option<(u16, u16)>,
    /// Initial pipeline flags.
    pub user_flags: u8,
}

/// Why a connection left the table.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum CloseReason {
    /// Its timeout passed.
    Expired,
    /// Removed to make room for a new flow.
    Evicted,
    /// Removed by [`ConnTable::remove`].
    Removed,
    /// Its service, server or local address disappeared in a reload (the
    /// connection carries the old snapshot's indices).
    Reload,
    /// Removed by [`ConnTable::flush`].
    Flushed,
}

/// A connection that left the table: the pipeline releases what it held
/// (full-NAT port, server connection count, sticky reference).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Closed<K> {
    /// Forward (client-side) key.
    pub key: K,
    /// The connection as it was.
    pub conn: Conn,
    /// Why it left.
    pub reason: CloseReason,
}

/// A successful insert.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Inserted<K> {
    /// The new connection.
    pub handle: Handle,
    /// Its initial state.
    pub state: ConnState,
    /// Connections evicted to make room (at most two).
    pub evicted: [Option<Closed<K>>; 2],
}

/// Counters of one connection table.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ConnStats {
    /// Keys looked up.
    pub lookups: u64,
    /// Lookups that found a connection.
    pub hits: u64,
    /// Lookups that found none.
    pub misses: u64,
    /// Connections created.
    pub inserts: u64,
    /// Inserts refused because the key existed.
    pub insert_exists: u64,
    /// Inserts refused because the reply key existed or equalled the forward key.
    pub reply_conflicts: u64,
    /// New flows refused because the table was full.
    pub full_drops: u64,
    /// Live connections evicted to make room.
    pub evictions: u64,
    /// Connections removed because their timeout passed.
    pub expired: u64,
    /// Timers found early (the entry had been refreshed) and re-armed.
    pub lazy_rearms: u64,
    /// Timers moved earlier on a transition to a shorter timeout.
    pub eager_rearms: u64,
    /// Connections removed on request.
    pub removed: u64,
    /// Connections removed by a reload.
    pub reload_removed: u64,
    /// Handles that no longer named a live connection.
    pub stale_handles: u64,
    /// Burst calls with mismatched slice lengths.
    pub bad_calls: u64,
}

#[derive(Debug, Clone, Copy, Default)]
struct Meta {
    fwd_hash: u64,
    rev_hash: u64,
    generation: u8,
    has_reply: bool,
    live: bool,
}

/// A per-core connection table for one address family (see the module docs).
pub struct ConnTable<K: FlowKey> {
    table: HashTable<Entry<K>>,
    free: Vec<u32>,
    wheel: TimerWheel<Meta>,
    capacity: usize,
    timeouts: [u64; STATES],
    policy: FullPolicy,
    seed: u64,
    /// Address just past bucket 0's entry, where the control bytes start
    /// (0 until the first insert shows it): prefetch addresses are computed
    /// from it.
    base: usize,
    /// A byte whose address anchors the prefetch arithmetic.
    anchor: u8,
    /// Counters.
    pub stats: ConnStats,
}

/// The IPv4 connection table.
pub type ConnTable4 = ConnTable<Key4>;
/// The IPv6 connection table.
pub type ConnTable6 = ConnTable<Key6>;

impl<K: FlowKey> fmt::Debug for ConnTable<K> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ConnTable")
            .field("entries", &self.table.len())
            .field("capacity", &self.capacity)
            .field("stats", &self.stats)
            .finish()
    }
}

impl<K: FlowKey> ConnTable<K> {
    /// A table per `cfg`, with its clock starting at `now`. Allocates all memory.
    pub fn new(cfg: ConnTableConfig, now: Time) -> Result<ConnTable<K>, ConnTableError> {
        if cfg.capacity == 0 || cfg.capacity > MAX_CONNS / 2 {
            return Err(ConnTableError::Capacity(cfg.capacity));
        }
        let wheel = TimerWheel::new(cfg.capacity, cfg.tick, now)?;
        let mut table = HashTable::new();
        let seed = cfg.hash_seed;
        table
            .try_reserve(cfg.capacity * 2, |e: &Entry<K>| e.key.hash_with(seed))
            .map_err(|_| ConnTableError::Alloc(cfg.capacity))?;
        let free = id_stack(cfg.capacity).ok_or(ConnTableError::Alloc(cfg.capacity))?;
        Ok(ConnTable {
            table,
            free,
            wheel,
            capacity: cfg.capacity,
            timeouts: cfg.timeouts.as_nanos(),
            policy: cfg.full_policy,
            seed,
            base: 0,
            anchor: 0,
            stats: ConnStats::default(),
        })
    }

    #[inline]
    fn meta(&self, id: u32) -> Meta {
        self.wheel.payload(id).copied().unwrap_or_default()
    }

    #[inline]
    fn set_meta(&mut self, id: u32, m: Meta) {
        // Ids come from the free list, always below the wheel's capacity.
        if let Some(p) = self.wheel.payload_mut(id) {
            *p = m;
        }
    }

    /// Maximum number of entries.
    pub fn capacity(&self) -> usize {
        self.capacity
    }

    /// Entries in use (forward + reply).
    pub fn entries(&self) -> usize {
        self.table.len()
    }

    /// Live connections.
    pub fn len(&self) -> usize {
        self.capacity - self.free.len()
    }

    /// Whether there is no connection.
    pub fn is_empty(&self) -> bool {
        self.free.len() == self.capacity
    }

    /// Bytes allocated by the hash table (entries and control bytes).
    pub fn table_bytes(&self) -> usize {
        self.table.allocation_size()
    }

    /// Replaces the timeouts, for the connections in the table too: each
    /// expiry becomes the time of its last packet plus the new timeout of
    /// its state, so a shortened timeout expires a connection idle for longer
    /// at the next [`ConnTable::expire`]. Timers whose expiry comes earlier
    /// are re-armed now (counted in [`ConnStats::eager_rearms`]); later ones
    /// are re-armed when they fire. Walks the table when the timeouts
    /// change: call at configuration change only. Returns the re-armed count.
    pub fn set_timeouts(&mut self, t: Timeouts) -> usize {
        let new = t.as_nanos();
        let old = core::mem::replace(&mut self.timeouts, new);
        if old == new {
            return 0;
        }
        // An expiry is the last packet's time plus the state's timeout
        // (reply entries' own expiries too, where replies are self-contained;
        // elsewhere a reply entry's word is a hash, and 0 means none).
        let rebase = |word: u64, state: u8| {
            let s = usize::from(state);
            let (o, n) = (old.get(s).copied(), new.get(s).copied());
            word.saturating_sub(o.unwrap_or(0))
                .saturating_add(n.unwrap_or(0))
        };
        let ConnTable {
            table,
            wheel,
            stats,
            ..
        } = self;
        let mut rearmed = 0;
        for e in table.iter_mut() {
            let c = &mut e.c;
            if c.is_reply() {
                if K::SELF_CONTAINED_REPLIES && c.word != 0 {
                    c.word = rebase(c.word, c.state);
                }
                continue;
            }
            c.word = rebase(c.word, c.state);
            // The forward entry's expiry is at most the connection's, so a
            // timer at it is never late; one that fires early re-arms.
            if wheel.deadline(c.id).is_some_and(|d| c.word < d.as_nanos()) {
                let _ = wheel.arm(c.id, Time(c.word));
                rearmed += 1;
            }
        }
        stats.eager_rearms += rearmed as u64;
        rearmed
    }

    /// Replaces the full-table policy.
    pub fn set_full_policy(&mut self, p: FullPolicy) {
        self.policy = p;
    }

    /// Hash of `key` under this table's seed.
    #[inline]
    pub fn hash_key(&self, key: &K) -> u64 {
        key.hash_with(self.seed)
    }

    #[inline]
    fn resolve(&self, hash: u64, key: &K) -> Option<Handle> {
        let b = self.table.find_bucket_index(hash, |e| e.key == *key)?;
        self.handle_at(hash, b)
    }

    /// The bucket of the entry (forward or reply) with key `key`, of hash
    /// `hash`, trying its likeliest buckets first.
    #[inline(always)]
    fn find_key(&self, key: &K, hash: u64) -> Option<usize> {
        self.find_from(self.first_bucket(hash), hash, |e| e.key == *key)
    }

    /// The handle for the entry in bucket `b` (whose hash is `hash`),
    /// following a reply entry to its connection.
    #[inline]
    fn handle_at(&self, hash: u64, b: usize) -> Option<Handle> {
        match self.probe_at(hash, b) {
            Probe::Miss => None,
            Probe::Hit(h) => Some(h),
            Probe::Reply(r) => self.reply_handle(r),
        }
    }

    /// What bucket `b`, found for a key of hash `hash`, holds: a
    /// connection's forward entry or a reply entry.
    #[inline]
    fn probe_at(&self, hash: u64, b: usize) -> Probe {
        let Some(e) = self.table.get_bucket(b) else {
            return Probe::Miss;
        };
        if e.c.is_reply() {
            return Probe::Reply(ReplyRef {
                hash: if K::SELF_CONTAINED_REPLIES {
                    0
                } else {
                    e.c.word
                },
                bucket: b as u32,
                id: e.c.id,
                generation: e.c.generation,
            });
        }
        Probe::Hit(Handle {
            hash,
            bucket: b as u32,
            id: e.c.id,
            generation: e.c.generation,
            reply: false,
        })
    }

    /// The connection a reply entry names, if it is still in the table.
    #[inline]
    fn reply_handle(&self, r: ReplyRef) -> Option<Handle> {
        let hash = if K::SELF_CONTAINED_REPLIES {
            let rb = self.locate_reply(r.id, r.generation, r.bucket as usize)?;
            self.table
                .get_bucket(rb)?
                .forward_key()?
                .hash_with(self.seed)
        } else {
            r.hash
        };
        let is_conn = |e: &Entry<K>| e.is_conn(r.id, r.generation);
        let fb = self.find_from(self.first_bucket(hash), hash, is_conn)?;
        Some(Handle {
            hash,
            bucket: fb as u32,
            id: r.id,
            generation: r.generation,
            reply: true,
        })
    }

    /// The bucket of connection `id`'s reply entry, if it is live: bucket
    /// `hint` (where a probe found it), or where the connection's metadata
    /// says if an insert moved it since.
    #[inline]
    fn locate_reply(&self, id: u32, generation: u8, hint: usize) -> Option<usize> {
        let eq = |e: &Entry<K>| e.is_reply_of(id, generation);
        if self.table.get_bucket(hint).is_some_and(eq) {
            return Some(hint);
        }
        let m = self.meta(id);
        if !(m.live && m.has_reply && m.generation == generation) {
            return None;
        }
        self.find_from(self.first_bucket(m.rev_hash), m.rev_hash, eq)
    }

    /// When the connection of forward entry `c` expires: its own expiry, or
    /// the later one its last steady reply set on the reply entry
    /// (self-contained replies).
    #[inline]
    fn expiry_of(&self, c: &Conn) -> u64 {
        if K::SELF_CONTAINED_REPLIES
            && let Some(rb) = self.locate_reply(c.id, c.generation, usize::MAX)
            && let Some(r) = self.table.get_bucket(rb)
        {
            return c.word.max(r.c.word);
        }
        c.word
    }

    /// The first bucket of `hash`'s probe sequence (hashbrown's `h1`), where
    /// most entries sit at the load this table keeps.
    #[inline(always)]
    fn first_bucket(&self, hash: u64) -> usize {
        (hash as usize) & self.table.num_buckets().wrapping_sub(1)
    }

    /// The bucket of the entry of hash `hash` that `eq` accepts, trying
    /// bucket `first` (the likeliest: prefetched, or remembered) and the
    /// one after it before probing the control groups in full.
    #[inline(always)]
    fn find_from(&self, first: usize, hash: u64, eq: impl Fn(&Entry<K>) -> bool) -> Option<usize> {
        if self.table.get_bucket(first).is_some_and(&eq) {
            return Some(first);
        }
        let next = (first + 1) & self.table.num_buckets().wrapping_sub(1);
        if self.table.get_bucket(next).is_some_and(&eq) {
            return Some(next);
        }
        self.table.find_bucket_index(hash, eq)
    }

    /// Whether an entry (forward or reply) has key `key`, of hash `hash`
    /// (from [`ConnTable::hash_key`] or [`ConnTable::prefetch`]).
    #[inline]
    pub fn contains(&self, key: &K, hash: u64) -> bool {
        debug_assert_eq!(hash, self.hash_key(key), "key hash");
        self.find_key(key, hash).is_some()
    }

    /// Looks up one key.
    #[inline]
    pub fn lookup(&mut self, key: &K) -> Option<Handle> {
        match self.probe(key, self.hash_key(key)) {
            Probe::Miss => None,
            Probe::Hit(h) => Some(h),
            Probe::Reply(r) => self.finish(r),
        }
    }

    /// Hashes `key` and prefetches its likeliest bucket (control byte and
    /// entry); returns the hash for [`ConnTable::probe`]. Issue this for a
    /// whole burst first and probe afterwards, as late as possible: the
    /// prefetches neither fault nor wait, so their cache and TLB misses
    /// overlap each other and whatever work comes between.
    ///
    /// An entry sits at the first free bucket of the probe sequence, which
    /// starts at `hash & mask` (hashbrown's `h1`): at the load factor this
    /// table keeps (at most half full, see the module docs) that first
    /// guess is right for most keys. A wrong guess costs nothing but the
    /// prefetch.
    #[inline]
    pub fn prefetch(&self, key: &K) -> u64 {
        let h = key.hash_with(self.seed);
        self.prefetch_bucket(h);
        h
    }

    /// Prefetches the control byte and both ends of the entry of bucket
    /// `hash & mask` (an entry of 40 or 64 bytes is not line-aligned in the
    /// table, so it may span two cache lines), and the start of the next
    /// bucket's entry, which lies just below: with a 2 M-entry table at the
    /// load it keeps, 88% of keys sit in their first bucket and 9% in the
    /// next one. Nothing is read: the addresses are computed from the bucket
    /// array's position, learnt at the first insert ([`ConnTable::base`]);
    /// before that, nothing is prefetched (and nothing can be found).
    #[inline(always)]
    fn prefetch_bucket(&self, hash: u64) {
        if self.base == 0 {
            return;
        }
        let i = self.first_bucket(hash);
        let size = core::mem::size_of::<Entry<K>>();
        let entry = self.entry_addr(i);
        // Safe address arithmetic: `prefetch_index` offsets a pointer
        // (never dereferenced) from a byte of this struct to the target.
        let anchor = core::slice::from_ref(&self.anchor);
        let at = &self.anchor as *const u8 as usize;
        prefetch_index::prefetch_index(anchor, self.base.wrapping_add(i).wrapping_sub(at));
        prefetch_index::prefetch_index(anchor, entry.wrapping_sub(at));
        prefetch_index::prefetch_index(anchor, entry.wrapping_add(size - 1).wrapping_sub(at));
        prefetch_index::prefetch_index(anchor, entry.wrapping_sub(size).wrapping_sub(at));
    }

    /// Address of bucket `i`'s entry (buckets lie below the control bytes,
    /// bucket 0 highest), as far as [`ConnTable::base`] is known.
    #[inline(always)]
    fn entry_addr(&self, i: usize) -> usize {
        self.base
            .wrapping_sub((i + 1) * core::mem::size_of::<Entry<K>>())
    }

    /// Remembers where bucket `b`, holding `e`, lies: the bucket array ends
    /// (and the control bytes start) `(b + 1)` entries after it.
    #[inline]
    fn learn_base(&mut self, b: usize, e: *const Entry<K>) {
        self.base = (e as usize).wrapping_add((b + 1) * core::mem::size_of::<Entry<K>>());
    }

    /// Looks `key` (hashed by [`ConnTable::prefetch`]) up. A reply entry is
    /// returned as [`Probe::Reply`] with its connection's forward entry
    /// prefetched, to be resolved by [`ConnTable::finish`] a little later.
    #[inline]
    pub fn probe(&mut self, key: &K, hash: u64) -> Probe {
        self.stats.lookups += 1;
        // The key in its likeliest bucket (prefetched) is a hit without
        // reading its control group; any other key is probed in full (an
        // absent key, or one that sits further along).
        let p = self
            .find_key(key, hash)
            .map_or(Probe::Miss, |b| self.probe_at(hash, b));
        match p {
            Probe::Miss => self.stats.misses += 1,
            Probe::Hit(_) => self.stats.hits += 1,
            // A self-contained reply entry is the connection's as much as
            // the forward one: a hit, and no second lookup is needed yet.
            Probe::Reply(_) if K::SELF_CONTAINED_REPLIES => self.stats.hits += 1,
            Probe::Reply(r) => self.prefetch_bucket(r.hash),
        }
        p
    }

    /// Resolves a reply entry found by [`ConnTable::probe`] to its
    /// connection: `None` if it has left the table since, counted as a miss
    /// (or, where the probe counted the reply entry as a hit, as a stale
    /// handle).
    #[inline]
    pub fn finish(&mut self, r: ReplyRef) -> Option<Handle> {
        let h = self.reply_handle(r);
        match (h.is_some(), K::SELF_CONTAINED_REPLIES) {
            (true, true) => {}
            (false, true) => self.stats.stale_handles += 1,
            (true, false) => self.stats.hits += 1,
            (false, false) => self.stats.misses += 1,
        }
        h
    }

    /// What a reply with TCP flags `flags` needs, from its own entry `r`,
    /// if it is steady ([`Conn::steady`]) and replies are self-contained:
    /// `None` otherwise, or if the entry has left. The forward entry is not
    /// read.
    #[inline(always)]
    pub(crate) fn steady_reply(&self, r: &ReplyRef, flags: TcpFlags) -> Option<SteadyReply<K>> {
        if !K::SELF_CONTAINED_REPLIES {
            return None;
        }
        let b = self.locate_reply(r.id, r.generation, r.bucket as usize)?;
        let e = self.table.get_bucket(b)?;
        if !e.c.steady(flags) {
            return None;
        }
        Some(SteadyReply {
            at: Located(b),
            key: e.forward_key()?,
            service: e.c.service,
            server: e.c.server,
            full_nat: e.c.bits & BIT_FULL_NAT != 0,
        })
    }

    /// Accounts a steady reply on the reply entry at `at`, from
    /// [`ConnTable::steady_reply`] with no change to the table since: the
    /// connection's expiry moves to `now` + the state's timeout, kept in the
    /// reply entry (the forward entry's timer consults it).
    #[inline(always)]
    pub(crate) fn on_reply_at(&mut self, at: Located, now: Time) {
        let timeouts = &self.timeouts;
        if let Some(e) = self.table.get_bucket_mut(at.0)
            && e.c.is_reply()
        {
            let t = timeouts.get(usize::from(e.c.state)).copied().unwrap_or(0);
            e.c.word = now.as_nanos().saturating_add(t);
        }
    }

    /// Looks up a burst: hashes and prefetches up to [`BURST`] keys, then
    /// probes each, then resolves the reply hits. `out[i]` receives the
    /// result for `keys[i]`. `out` must be exactly as long as `keys`
    /// (otherwise nothing is looked up and the call is counted in
    /// [`ConnStats::bad_calls`]). The pipeline interleaves the same steps
    /// with its own per-packet work instead ([`ConnTable::prefetch`],
    /// [`ConnTable::probe`], [`ConnTable::finish`]).
    pub fn lookup_burst(
        &mut self,
        keys: &[K],
        out: &mut [Option<Handle>],
    ) -> Result<(), BurstLenMismatch> {
        if keys.len() != out.len() {
            self.stats.bad_calls += 1;
            return Err(BurstLenMismatch {
                keys: keys.len(),
                out: out.len(),
            });
        }
        let mut hashes = [0u64; BURST];
        let mut replies = [None::<ReplyRef>; BURST];
        for (kc, oc) in keys.chunks(BURST).zip(out.chunks_mut(BURST)) {
            for (h, k) in hashes.iter_mut().zip(kc) {
                *h = self.prefetch(k);
            }
            let mut any_reply = false;
            for (((k, o), &h), r) in kc.iter().zip(oc.iter_mut()).zip(&hashes).zip(&mut replies) {
                *r = None;
                *o = match self.probe(k, h) {
                    Probe::Miss => None,
                    Probe::Hit(handle) => Some(handle),
                    Probe::Reply(rr) => {
                        *r = Some(rr);
                        any_reply = true;
                        None
                    }
                };
            }
            if any_reply {
                for (o, r) in oc.iter_mut().zip(&replies) {
                    if let Some(r) = *r {
                        *o = self.finish(r);
                    }
                }
            }
        }
        Ok(())
    }

    /// Bucket of the connection `h` names, if it is still live.
    #[inline]
    fn locate(&self, h: &Handle) -> Option<usize> {
        self.find_from(h.bucket as usize, h.hash, |e| e.is_conn(h.id, h.generation))
    }

    /// The connection `h` names (`None` if it has left the table).
    #[inline]
    pub fn get(&self, h: &Handle) -> Option<&Conn> {
        let b = self.locate(h)?;
        self.table.get_bucket(b).map(|e| &e.c)
    }

    /// The connection and its forward (client-side) key.
    #[inline(always)]
    pub fn get_with_key(&self, h: &Handle) -> Option<(&K, &Conn)> {
        self.get_located(h).map(|(_, k, c)| (k, c))
    }

    /// The connection, its forward key and where it lies, for a later
    /// [`ConnTable::on_packet_at`] that need not find it again.
    #[inline(always)]
    pub(crate) fn get_located(&self, h: &Handle) -> Option<(Located, &K, &Conn)> {
        let b = self.locate(h)?;
        self.table.get_bucket(b).map(|e| (Located(b), &e.key, &e.c))
    }

    /// When the connection `h` names expires unless another packet comes:
    /// [`Conn::expires`], or later where a steady reply (self-contained
    /// replies) moved it in the reply entry.
    pub fn expires(&self, h: &Handle) -> Option<Time> {
        let b = self.locate(h)?;
        let c = &self.table.get_bucket(b)?.c;
        Some(Time(self.expiry_of(c)))
    }

    /// Mutable access (only [`Conn::user_flags`] is writable; a reply
    /// entry's copy of the connection keeps the flags it was created with).
    #[inline]
    pub fn get_mut(&mut self, h: &Handle) -> Option<&mut Conn> {
        let b = self.locate(h)?;
        self.table.get_bucket_mut(b).map(|e| &mut e.c)
    }

    /// Accounts a packet on connection `h` (direction from the handle): TCP
    /// state transition for `flags`, expiry moved to `now` + the state's
    /// timeout (for a steady reply where replies are self-contained, in the
    /// reply entry: see [`ConnTable::expires`]). Returns the new state, or
    /// `None` (counted) for a stale handle.
    #[inline(always)]
    pub fn on_packet(&mut self, h: &Handle, flags: TcpFlags, now: Time) -> Option<ConnState> {
        let Some(b) = self.locate(h) else {
            self.stats.stale_handles += 1;
            return None;
        };
        self.on_packet_at(Located(b), h.direction(), flags, now)
    }

    /// [`ConnTable::on_packet`] for the connection at `at`, from
    /// [`ConnTable::get_located`] with no change to the table since.
    #[inline(always)]
    pub(crate) fn on_packet_at(
        &mut self,
        at: Located,
        dir: Direction,
        flags: TcpFlags,
        now: Time,
    ) -> Option<ConnState> {
        let timeouts = &self.timeouts;
        let e = self.table.get_bucket_mut(at.0)?;
        let c = &mut e.c;
        // The common cases first: an established TCP connection's segment
        // without SYN, FIN or RST, or a UDP datagram, leaves the state as it
        // is and moves the expiry.
        if !c.steady(flags) {
            return self.transition(at, dir, flags, now);
        }
        let state = ConnState::from_u8(c.state);
        if K::SELF_CONTAINED_REPLIES && dir == Direction::Reply {
            // Where replies are self-contained, a steady reply's expiry is
            // kept in the reply entry, as the fast path keeps it.
            let (id, generation) = (c.id, c.generation);
            if let Some(rb) = self.locate_reply(id, generation, usize::MAX) {
                self.on_reply_at(Located(rb), now);
                return Some(state);
            }
            return self.transition(at, Direction::Original, flags, now);
        }
        let expires = now.as_nanos().saturating_add(timeouts[state as usize]);
        let shorter = expires < c.word;
        c.word = expires;
        if shorter {
            // Only if the timeouts were shortened since the last packet.
            let id = c.id;
            let _ = self.wheel.arm(id, Time(expires));
            self.stats.eager_rearms += 1;
        }
        Some(state)
    }

    /// [`ConnTable::on_packet_at`] for a packet that may change the state:
    /// the transition, the new expiry (the timer re-armed at once if it is
    /// earlier), and the reply entry kept in step.
    #[inline(never)]
    fn transition(
        &mut self,
        at: Located,
        dir: Direction,
        flags: TcpFlags,
        now: Time,
    ) -> Option<ConnState> {
        let e = self.table.get_bucket_mut(at.0)?;
        let c = &mut e.c;
        let old = c.state;
        let new = if e.key.proto() == 6 {
            ConnState::from_u8(c.state).next(dir, flags, c.bits & BIT_INPUT_ONLY != 0)
        } else {
            ConnState::Udp
        };
        let expires = now.as_nanos().saturating_add(self.timeouts[new as usize]);
        let mut armed = c.word;
        c.state = new as u8;
        c.word = expires;
        let (id, generation) = (c.id, c.generation);
        if K::SELF_CONTAINED_REPLIES
            && new as u8 != old
            && let Some(rb) = self.locate_reply(id, generation, usize::MAX)
            && let Some(r) = self.table.get_bucket_mut(rb)
        {
            // The reply entry follows the state, and its expiry (which the
            // timer may be armed for) gives way to the one just set.
            armed = armed.max(r.c.word);
            r.c.state = new as u8;
            r.c.word = 0;
        }
        if expires < armed {
            // A shorter timeout applies at once. Cannot fail: ids are below
            // the wheel's capacity.
            let _ = self.wheel.arm(id, Time(expires));
            self.stats.eager_rearms += 1;
        }
        Some(new)
    }

    /// Creates a connection for forward key `key` and, for NAT / full NAT,
    /// reply key `reply` (which must differ from every existing key). The
    /// state starts from the client packet's `flags`. Without a reply key the
    /// connection is input-only (DSR, tunnel).
    pub fn insert(
        &mut self,
        key: K,
        reply: Option<K>,
        new: NewConn,
        flags: TcpFlags,
        now: Time,
    ) -> Result<Inserted<K>, InsertError> {
        let h = self.hash_key(&key);
        let reply = reply.map(|r| (r, self.hash_key(&r)));
        self.insert_hashed(key, h, reply, new, flags, now)
    }

    /// [`ConnTable::insert`] with both keys already hashed by
    /// [`ConnTable::hash_key`] (or [`ConnTable::prefetch`]): the hashes a
    /// caller computed to prefetch the keys' buckets are not computed again.
    #[inline]
    pub fn insert_hashed(
        &mut self,
        key: K,
        h: u64,
        reply: Option<(K, u64)>,
        new: NewConn,
        flags: TcpFlags,
        now: Time,
    ) -> Result<Inserted<K>, InsertError> {
        self.insert_hashed_guess(key, h, reply, new, flags, now, false)
    }

    /// [`ConnTable::insert_hashed`], where `reply_guessed` says that the
    /// reply key is a guess (full NAT's likeliest free port, unchecked): a
    /// taken reply key is then [`InsertError::ReplyExists`] as ever, but
    /// not counted as a conflict (the caller picks another port), and the
    /// insert's own check of the reply key is the only one.
    #[allow(clippy::too_many_arguments)]
    pub fn insert_hashed_guess(
        &mut self,
        key: K,
        h: u64,
        reply: Option<(K, u64)>,
        new: NewConn,
        flags: TcpFlags,
        now: Time,
        reply_guessed: bool,
    ) -> Result<Inserted<K>, InsertError> {
        debug_assert_eq!(h, self.hash_key(&key), "forward key hash");
        if let Some(existing) = self.resolve(h, &key) {
            self.stats.insert_exists += 1;
            return Err(InsertError::Exists(existing));
        }
        let rh = match reply {
            Some((r, rh)) => {
                if r == key {
                    self.stats.reply_conflicts += 1;
                    return Err(InsertError::ReplyIsForward);
                }
                if self.contains(&r, rh) {
                    self.stats.reply_conflicts += u64::from(!reply_guessed);
                    return Err(InsertError::ReplyExists);
                }
                rh
            }
            None => 0,
        };
        let need = 1 + usize::from(reply.is_some());
        let mut evicted = [None, None];
        let mut n_evicted = 0;
        while self.table.len() + need > self.capacity || self.free.is_empty() {
            let victim = match self.policy {
                FullPolicy::EvictOldest if n_evicted < 2 => self.evict_one(now),
                _ => None,
            };
            match victim {
                Some(c) => {
                    evicted[n_evicted] = Some(c);
                    n_evicted += 1;
                }
                None => {
                    self.stats.full_drops += 1;
                    return Err(InsertError::Full);
                }
            }
        }
        let Some(id) = self.free.pop() else {
            self.stats.full_drops += 1;
            return Err(InsertError::Full);
        };
        let generation = self.meta(id).generation.wrapping_add(1);
        let state = ConnState::initial(key.proto(), flags);
        let expires = now.as_nanos().saturating_add(self.timeouts[state as usize]);
        let (local_addr, local_port) = new.local.unwrap_or((NO_LOCAL, 0));
        let conn = Conn {
            word: expires,
            id,
            service: new.service,
            server: new.server,
            local_addr,
            local_port,
            state: state as u8,
            bits: if reply.is_some() { 0 } else { BIT_INPUT_ONLY },
            generation,
            user_flags: new.user_flags,
        };
        let seed = self.seed;
        let hasher = |e: &Entry<K>| e.key.hash_with(seed);
        // Through the entry API: the vacant entry writes the new entry into
        // its bucket straight from registers (`insert_unique` would read it
        // back from the stack, stalling behind the stores still missing the
        // cache). Both keys were checked absent above.
        let bucket = match self.table.entry(h, |e| e.key == key, hasher) {
            hashbrown::hash_table::Entry::Vacant(v) => {
                let o = v.insert(Entry {
                    key,
                    x: key.stash(),
                    c: conn,
                });
                let b = o.bucket_index();
                let at: *const Entry<K> = o.get();
                self.learn_base(b, at);
                b
            }
            hashbrown::hash_table::Entry::Occupied(o) => {
                // Cannot happen (checked above, and eviction only removes).
                let b = o.bucket_index();
                self.free.push(id);
                self.stats.insert_exists += 1;
                return match self.handle_at(h, b) {
                    Some(existing) => Err(InsertError::Exists(existing)),
                    None => Err(InsertError::Full),
                };
            }
        };
        if let Some((r, rh)) = reply {
            let full_nat = if new.local.is_some() { BIT_FULL_NAT } else { 0 };
            let rc = if K::SELF_CONTAINED_REPLIES {
                Conn {
                    word: 0,
                    bits: BIT_REPLY | full_nat,
                    local_addr: key.src_port(),
                    local_port: key.dst_port(),
                    ..conn
                }
            } else {
                Conn {
                    word: h,
                    bits: BIT_REPLY | full_nat,
                    ..conn
                }
            };
            if let hashbrown::hash_table::Entry::Vacant(v) =
                self.table.entry(rh, |e| e.key == r, hasher)
            {
                v.insert(Entry {
                    key: r,
                    x: key.stash(),
                    c: rc,
                });
            }
        }
        self.set_meta(
            id,
            Meta {
                fwd_hash: h,
                rev_hash: rh,
                generation,
                has_reply: reply.is_some(),
                live: true,
            },
        );
        // Cannot fail: ids are below the wheel's capacity.
        let _ = self.wheel.arm(id, Time(expires));
        self.stats.inserts += 1;
        Ok(Inserted {
            handle: Handle {
                hash: h,
                bucket: bucket as u32,
                id,
                generation,
                reply: false,
            },
            state,
            evicted,
        })
    }

    /// Removes connection `id` (both entries), frees its id and timer.
    fn remove_id(&mut self, id: u32, reason: CloseReason) -> Option<Closed<K>> {
        let m = *self.wheel.payload(id)?;
        if !m.live {
            return None;
        }
        let fwd = self
            .table
            .find_entry(m.fwd_hash, |e| e.is_conn(id, m.generation))
            .ok()?;
        let (entry, _) = fwd.remove();
        if m.has_reply
            && let Ok(r) = self
                .table
                .find_entry(m.rev_hash, |e| e.is_reply_of(id, m.generation))
        {
            r.remove();
        }
        self.wheel.disarm(id);
        self.set_meta(id, Meta { live: false, ..m });
        self.free.push(id);
        Some(Closed {
            key: entry.key,
            conn: entry.c,
            reason,
        })
    }

    /// Removes the connection `h` names.
    pub fn remove(&mut self, h: &Handle) -> Option<Closed<K>> {
        let b = self.locate(h)?;
        let id = self.table.get_bucket(b)?.c.id;
        let c = self.remove_id(id, CloseReason::Removed)?;
        self.stats.removed += 1;
        Some(c)
    }

    /// Frees room by removing the connection closest to expiry.
    fn evict_one(&mut self, now: Time) -> Option<Closed<K>> {
        const ATTEMPTS: usize = 8;
        for attempt in 0..ATTEMPTS {
            let id = self.wheel.earliest()?;
            let m = self.meta(id);
            let expires = self
                .table
                .find(m.fwd_hash, |e| e.is_conn(id, m.generation))
                .map(|e| self.expiry_of(&e.c));
            let Some(expires) = expires.filter(|_| m.live) else {
                // A timer without a connection cannot exist; drop it defensively.
                self.wheel.disarm(id);
                continue;
            };
            if expires <= now.as_nanos() {
                let c = self.remove_id(id, CloseReason::Expired);
                self.stats.expired += 1;
                return c;
            }
            let armed = self.wheel.deadline(id).map_or(0, Time::as_nanos);
            if attempt + 1 < ATTEMPTS && expires > armed {
                // Refreshed since armed: not really the oldest. Re-arm and look again.
                let _ = self.wheel.arm(id, Time(expires));
                self.stats.lazy_rearms += 1;
                continue;
            }
            let c = self.remove_id(id, CloseReason::Evicted);
            self.stats.evictions += 1;
            return c;
        }
        None
    }

    /// Expires connections whose timeout has passed at `now`, doing at most
    /// `budget` timer operations; expired connections are appended to `out`
    /// (give it capacity `budget` to avoid allocating). Returns how many
    /// connections expired. Timers of refreshed connections are re-armed.
    pub fn expire(&mut self, now: Time, budget: usize, out: &mut Vec<Closed<K>>) -> usize {
        let mut expired = 0;
        for _ in 0..budget {
            let Some((id, _)) = self.wheel.pop_expired(now) else {
                break;
            };
            let m = self.meta(id);
            if !m.live {
                continue;
            }
            let Some(expires) = self
                .table
                .find(m.fwd_hash, |e| e.is_conn(id, m.generation))
                .map(|e| self.expiry_of(&e.c))
            else {
                continue;
            };
            if expires > now.as_nanos() {
                let _ = self.wheel.arm(id, Time(expires));
                self.stats.lazy_rearms += 1;
                continue;
            }
            if let Some(c) = self.remove_id(id, CloseReason::Expired) {
                self.stats.expired += 1;
                expired += 1;
                out.push(c);
            }
        }
        expired
    }

    /// A lower bound of the next expiry (for the runtime's scheduling).
    pub fn next_expiry(&self) -> Option<Time> {
        self.wheel.next_expiry()
    }

    /// Removes every connection, appending them to `out`. Returns the count.
    pub fn flush(&mut self, out: &mut Vec<Closed<K>>) -> usize {
        let ids: Vec<u32> = (0..self.capacity as u32)
            .filter(|&i| self.meta(i).live)
            .collect();
        let mut n = 0;
        for id in ids {
            if let Some(c) = self.remove_id(id, CloseReason::Flushed) {
                self.stats.removed += 1;
                out.push(c);
                n += 1;
            }
        }
        n
    }

    /// Adopts a new configuration snapshot: service, server and local-address
    /// indices are rewritten in place through `map`; connections whose
    /// service, server or local address disappeared are removed and appended
    /// to `out` (with their old indices). Allocates a scratch list: call at
    /// configuration change only. Returns how many were removed.
    pub fn apply_reload(&mut self, map: &ReloadMap, out: &mut Vec<Closed<K>>) -> usize {
        let mut doomed = Vec::new();
        // Reply entries hold a copy of the service and server: they are
        // mapped alike (a connection whose forward entry maps, maps). Their
        // local fields hold no local address (see `Entry`).
        for e in self.table.iter_mut() {
            let c = &mut e.c;
            let reply = c.is_reply();
            let mut doom = |c: &Conn| {
                if !reply {
                    doomed.push(c.id);
                }
            };
            let Some(m) = map.service(c.service) else {
                doom(c);
                continue;
            };
            let Some(Some(server)) = m.servers.get(c.server as usize).copied() else {
                doom(c);
                continue;
            };
            if reply {
                c.service = m.new_index;
                c.server = server;
                continue;
            }
            let local = if c.local_addr == NO_LOCAL {
                Some(NO_LOCAL)
            } else {
                m.local_addrs.get(c.local_addr as usize).copied().flatten()
            };
            let Some(local) = local else {
                doom(c);
                continue;
            };
            c.service = m.new_index;
            c.server = server;
            c.local_addr = local;
        }
        let mut n = 0;
        for id in doomed {
            if let Some(c) = self.remove_id(id, CloseReason::Reload) {
                self.stats.reload_removed += 1;
                out.push(c);
                n += 1;
            }
        }
        n
    }

    /// Every connection with its forward key (for `tackctl conn show`),
    /// its expiry as [`ConnTable::expires`] gives it.
    pub fn iter(&self) -> impl Iterator<Item = (&K, Conn)> + '_ {
        self.table.iter().filter(|e| !e.c.is_reply()).map(|e| {
            let word = self.expiry_of(&e.c);
            (&e.key, Conn { word, ..e.c })
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn k(i: u32) -> Key4 {
        Key4::new(
            Ipv4Addr::from(0x0a00_0000 + i),
            Ipv4Addr::new(192, 0, 2, 1),
            1000 + (i % 5000) as u16,
            80,
            6,
        )
    }

    fn cfg(capacity: usize) -> ConnTableConfig {
        ConnTableConfig {
            capacity,
            hash_seed: 7,
            ..ConnTableConfig::default()
        }
    }

    fn nc(server: u16) -> NewConn {
        NewConn {
            service: 0,
            server,
            local: None,
            user_flags: 0,
        }
    }

    #[test]
    fn entry_sizes() {
        assert_eq!(core::mem::size_of::<Meta>(), 24);
        assert_eq!(core::mem::size_of::<Entry<Key6>>(), 64);
        assert_eq!(core::mem::size_of::<Entry<Key4>>(), 48);
        assert_eq!(core::mem::size_of::<Conn>(), 24);
    }

    /// `on_packet`'s shortcut for steady states gives what `next` gives.
    #[test]
    fn steady_states_are_fixed_points() {
        for flags in 0..=255u8 {
            let f = TcpFlags(flags);
            if flags & 0x07 == 0 {
                for dir in [Direction::Original, Direction::Reply] {
                    for input_only in [false, true] {
                        assert_eq!(
                            ConnState::Established.next(dir, f, input_only),
                            ConnState::Established
                        );
                    }
                }
            }
            assert_eq!(
                ConnState::Udp.next(Direction::Original, f, false),
                ConnState::Udp
            );
        }
    }

    #[test]
    fn tcp_states_nat() {
        use ConnState::*;
        use Direction::*;
        let s = ConnState::initial(6, TcpFlags::SYN);
        assert_eq!(s, SynSent);
        let s = s.next(Reply, TcpFlags::SYN_ACK, false);
        assert_eq!(s, SynRecv);
        let s = s.next(Original, TcpFlags::ACK, false);
        assert_eq!(s, Established);
        let s = s.next(Original, TcpFlags::FIN_ACK, false);
        assert_eq!(s, FinWait);
        let s = s.next(Reply, TcpFlags::FIN_ACK, false);
        assert_eq!(s, LastAck);
        let s = s.next(Original, TcpFlags::ACK, false);
        assert_eq!(s, TimeWait);
        assert_eq!(s.next(Original, TcpFlags::SYN, false), SynSent);
        assert_eq!(Established.next(Reply, TcpFlags::RST, false), Close);
        assert_eq!(Established.next(Reply, TcpFlags::FIN, false), CloseWait);
        assert_eq!(CloseWait.next(Original, TcpFlags::FIN, false), LastAck);
        assert_eq!(LastAck.next(Reply, TcpFlags::ACK, false), TimeWait);
        // Input-only: the client's ACK completes the handshake.
        assert_eq!(SynSent.next(Original, TcpFlags::ACK, true), Established);
        assert_eq!(SynSent.next(Original, TcpFlags::ACK, false), SynSent);
        assert_eq!(ConnState::initial(17, TcpFlags::NONE), Udp);
        assert_eq!(ConnState::initial(6, TcpFlags::ACK), Established);
    }

    /// A 16-entry table holding one NAT connection to server 3, opened at
    /// time 0 by a client packet with `flags`: the table, the forward and
    /// reply keys, and the insert.
    fn one_nat_conn(flags: TcpFlags) -> (ConnTable4, Key4, Key4, Inserted<Key4>) {
        let mut t = ConnTable4::new(cfg(16), Time::ZERO).unwrap();
        let key = k(1);
        let reply = Key4::new(Ipv4Addr::new(10, 9, 0, 1), key.src, 80, key.src_port, 6);
        let ins = t
            .insert(key, Some(reply), nc(3), flags, Time::ZERO)
            .unwrap();
        (t, key, reply, ins)
    }

    /// Probes `key`, which must be a reply entry's.
    fn probe_reply(t: &mut ConnTable4, key: &Key4) -> ReplyRef {
        let h = t.prefetch(key);
        let Probe::Reply(r) = t.probe(key, h) else {
            panic!("reply key {key:?} not found as a reply");
        };
        r
    }

    #[test]
    fn insert_lookup_reply_remove() {
        let (mut t, key, reply, ins) = one_nat_conn(TcpFlags::SYN);
        assert_eq!(ins.state, ConnState::SynSent);
        assert_eq!(t.entries(), 2);
        assert_eq!(t.len(), 1);
        let h = t.lookup(&key).unwrap();
        assert!(!h.is_reply());
        let r = t.lookup(&reply).unwrap();
        assert!(r.is_reply());
        assert_eq!(t.get(&r).unwrap().server(), 3);
        assert_eq!(t.get_with_key(&r).unwrap().0, &key);
        assert_eq!(
            t.on_packet(&r, TcpFlags::SYN_ACK, Time::from_secs(1)),
            Some(ConnState::SynRecv)
        );
        assert!(matches!(
            t.insert(key, None, nc(0), TcpFlags::SYN, Time::ZERO),
            Err(InsertError::Exists(_))
        ));
        let other = k(2);
        assert_eq!(
            t.insert(other, Some(reply), nc(0), TcpFlags::SYN, Time::ZERO)
                .unwrap_err(),
            InsertError::ReplyExists
        );
        let closed = t.remove(&h).unwrap();
        assert_eq!(closed.reason, CloseReason::Removed);
        assert_eq!(t.entries(), 0);
        assert!(t.lookup(&key).is_none());
        assert!(t.lookup(&reply).is_none());
        assert_eq!(t.get(&h), None);
        assert_eq!(t.on_packet(&h, TcpFlags::ACK, Time::ZERO), None);
        assert_eq!(t.stats.stale_handles, 1);
    }

    #[test]
    fn expiry_and_lazy_rearm() {
        let mut t = ConnTable4::new(cfg(4), Time::ZERO).unwrap();
        let ins = t
            .insert(k(1), None, nc(0), TcpFlags::NONE, Time::ZERO)
            .unwrap();
        assert_eq!(ins.state, ConnState::Established);
        let mut out = Vec::new();
        // Refresh at 500 s: the 900 s timer fires early and is re-armed.
        assert_eq!(
            t.on_packet(&ins.handle, TcpFlags::ACK, Time::from_secs(500)),
            Some(ConnState::Established)
        );
        assert_eq!(t.get(&ins.handle).unwrap().expires(), Time::from_secs(1400));
        assert_eq!(t.expire(Time::from_secs(901), 10, &mut out), 0);
        assert_eq!(t.stats.lazy_rearms, 1);
        assert_eq!(t.expire(Time::from_millis(1_399_999), 10, &mut out), 0);
        assert_eq!(t.expire(Time::from_secs(1400), 10, &mut out), 1);
        assert_eq!(out[0].reason, CloseReason::Expired);
        assert!(t.is_empty());
    }

    #[test]
    fn rst_shortens_timer() {
        let mut t = ConnTable4::new(cfg(4), Time::ZERO).unwrap();
        let ins = t
            .insert(k(1), None, nc(0), TcpFlags::ACK, Time::ZERO)
            .unwrap();
        t.on_packet(&ins.handle, TcpFlags::RST, Time::from_secs(1));
        assert_eq!(t.stats.eager_rearms, 1);
        let mut out = Vec::new();
        assert_eq!(t.expire(Time::from_millis(10_999), 10, &mut out), 0);
        assert_eq!(t.expire(Time::from_secs(11), 10, &mut out), 1);
    }

    #[test]
    fn full_policies() {
        let mut t = ConnTable4::new(cfg(2), Time::ZERO).unwrap();
        t.insert(k(1), None, nc(0), TcpFlags::SYN, Time::ZERO)
            .unwrap();
        t.insert(k(2), None, nc(0), TcpFlags::ACK, Time::ZERO)
            .unwrap();
        assert_eq!(
            t.insert(k(3), None, nc(0), TcpFlags::SYN, Time::ZERO)
                .unwrap_err(),
            InsertError::Full
        );
        assert_eq!(t.stats.full_drops, 1);
        t.set_full_policy(FullPolicy::EvictOldest);
        let ins = t
            .insert(k(3), None, nc(0), TcpFlags::SYN, Time::from_secs(1))
            .unwrap();
        // The half-open connection (60 s timeout) goes before the established one.
        assert_eq!(ins.evicted[0].unwrap().key, k(1));
        assert_eq!(ins.evicted[0].unwrap().reason, CloseReason::Evicted);
        assert_eq!(t.stats.evictions, 1);
        assert!(t.lookup(&k(2)).is_some());
        assert_eq!(t.len(), 2);
    }

    /// The prefetch addresses are the buckets' addresses, whatever the key
    /// type, once an insert has shown where the bucket array lies.
    #[test]
    fn prefetch_addresses_are_the_buckets() {
        fn check<K: FlowKey>(t: &ConnTable<K>) {
            let mut full = 0;
            for i in 0..t.table.num_buckets() {
                if let Some(e) = t.table.get_bucket(i) {
                    assert_eq!(t.entry_addr(i), e as *const Entry<K> as usize, "bucket {i}");
                    full += 1;
                }
            }
            assert_eq!(full, t.len());
        }
        let mut t = ConnTable4::new(cfg(256), Time::ZERO).unwrap();
        assert_eq!(t.base, 0);
        // Before the first insert nothing is prefetched, and nothing found.
        let h = t.prefetch(&k(1));
        assert_eq!(t.probe(&k(1), h), Probe::Miss);
        for i in 0..200 {
            t.insert(k(i), None, nc(0), TcpFlags::ACK, Time::ZERO)
                .unwrap();
        }
        check(&t);
        let mut t6 = ConnTable6::new(cfg(64), Time::ZERO).unwrap();
        for i in 0..40u16 {
            let key = Key6::new(
                Ipv6Addr::new(0x2001, 0xdb8, 0, 0, 0, 0, 0, i),
                Ipv6Addr::new(0x2001, 0xdb8, 1, 0, 0, 0, 0, 1),
                1000 + i,
                80,
                6,
            );
            t6.insert(key, None, nc(0), TcpFlags::ACK, Time::ZERO)
                .unwrap();
        }
        check(&t6);
    }

    /// Probing a reply key gives a reference that `finish` resolves, or
    /// not when the connection left the table between the two (the
    /// pipeline handles frames between a probe and its use).
    #[test]
    fn probe_then_finish() {
        let mut t = ConnTable4::new(cfg(64), Time::ZERO).unwrap();
        let reply = |i: u32| {
            Key4::new(
                Ipv4Addr::new(10, 9, 0, i as u8),
                Ipv4Addr::from(i),
                80,
                1,
                6,
            )
        };
        for i in 0..3 {
            t.insert(
                k(i),
                Some(reply(i)),
                nc(i as u16),
                TcpFlags::ACK,
                Time::ZERO,
            )
            .unwrap();
        }
        let fwd = t.lookup(&k(1)).unwrap();
        let h = t.prefetch(&k(1));
        assert_eq!(t.probe(&k(1), h), Probe::Hit(fwd));
        let r = probe_reply(&mut t, &reply(1));
        let got = t.finish(r).unwrap();
        assert!(got.is_reply());
        assert_eq!(t.get(&got).unwrap().server(), 1);
        // The same reference after the connection is gone (the probe
        // counted the self-contained reply entry as a hit: a stale handle).
        t.remove(&fwd).unwrap();
        let (hits, misses, stale) = (t.stats.hits, t.stats.misses, t.stats.stale_handles);
        assert_eq!(t.finish(r), None);
        assert_eq!(
            (t.stats.hits, t.stats.misses, t.stats.stale_handles),
            (hits, misses, stale + 1)
        );
        let h = t.prefetch(&k(7));
        assert_eq!(t.probe(&k(7), h), Probe::Miss);
    }

    /// An IPv4 reply entry holds what a steady reply needs: the forward
    /// key, the connection's state (kept in step) and the expiry its last
    /// steady reply set, which the forward entry's timer consults.
    #[test]
    fn self_contained_replies() {
        let (mut t, key, reply, ins) = one_nat_conn(TcpFlags::ACK);
        let steady = |t: &mut ConnTable4, flags| {
            let r = probe_reply(t, &reply);
            t.steady_reply(&r, flags)
        };
        let s = steady(&mut t, TcpFlags::ACK).unwrap();
        assert_eq!((s.key, s.service, s.server, s.full_nat), (key, 0, 3, false));
        assert_eq!(steady(&mut t, TcpFlags::FIN_ACK), None);
        // A steady reply at 100 s moves the expiry in the reply entry only.
        t.on_reply_at(s.at, Time::from_secs(100));
        assert_eq!(t.get(&ins.handle).unwrap().expires(), Time::from_secs(900));
        assert_eq!(t.expires(&ins.handle), Some(Time::from_secs(1000)));
        assert_eq!(t.iter().next().unwrap().1.expires(), Time::from_secs(1000));
        // The general path's steady reply does the same.
        let r = t.lookup(&reply).unwrap();
        assert_eq!(
            t.on_packet(&r, TcpFlags::ACK, Time::from_secs(200)),
            Some(ConnState::Established)
        );
        assert_eq!(t.expires(&ins.handle), Some(Time::from_secs(1100)));
        // The forward timer fires at 900 s and finds the reply's expiry.
        let mut out = Vec::new();
        assert_eq!(t.expire(Time::from_secs(901), 10, &mut out), 0);
        assert_eq!(t.stats.lazy_rearms, 1);
        // The client's FIN at 950 s: the reply entry follows the state, and
        // its later expiry (1100 s) gives way to the FIN_WAIT timeout.
        assert_eq!(
            t.on_packet(&ins.handle, TcpFlags::FIN_ACK, Time::from_secs(950)),
            Some(ConnState::FinWait)
        );
        assert_eq!(steady(&mut t, TcpFlags::ACK), None);
        assert_eq!(t.expires(&ins.handle), Some(Time::from_secs(1070)));
        assert_eq!(t.expire(Time::from_millis(1_069_900), 10, &mut out), 0);
        assert_eq!(t.expire(Time::from_secs(1070), 10, &mut out), 1);
        assert!(t.is_empty());
    }

    #[test]
    fn new_timeouts_apply_to_the_table() {
        // An established NAT connection whose last packet is a steady reply
        // at 100 s (expiry 1000 s), and a half-open one from 0 s (60 s).
        let (mut t, key, reply, ins) = one_nat_conn(TcpFlags::ACK);
        let s = probe_reply(&mut t, &reply);
        let s = t.steady_reply(&s, TcpFlags::ACK).unwrap();
        t.on_reply_at(s.at, Time::from_secs(100));
        let half = t
            .insert(k(2), None, nc(1), TcpFlags::SYN, Time::ZERO)
            .unwrap();
        assert_eq!(t.set_timeouts(Timeouts::default()), 0, "nothing changed");
        // Established shortened to 300 s, SYN lengthened to 600 s.
        let shorter = Timeouts {
            established: Duration::from_secs(300),
            syn_sent: Duration::from_secs(600),
            ..Timeouts::default()
        };
        assert_eq!(t.set_timeouts(shorter), 1, "one timer moved earlier");
        assert_eq!(t.stats.eager_rearms, 1);
        // Each expiry is the last packet plus the new timeout: the reply's
        // (100 + 300) for the first, the SYN's (0 + 600) for the second.
        assert_eq!(t.expires(&ins.handle), Some(Time::from_secs(400)));
        assert_eq!(t.expires(&half.handle), Some(Time::from_secs(600)));
        let mut out = Vec::new();
        // The first's timer fires at 300 s (its forward expiry) and re-arms
        // for the reply's; the second's old timer (60 s) re-arms for 600 s.
        assert_eq!(t.expire(Time::from_secs(301), 10, &mut out), 0);
        assert_eq!(t.stats.lazy_rearms, 2);
        assert_eq!(t.expire(Time::from_secs(400), 10, &mut out), 1);
        assert_eq!(out[0].key, key);
        assert_eq!(t.expire(Time::from_millis(599_900), 10, &mut out), 0);
        assert_eq!(t.expire(Time::from_secs(600), 10, &mut out), 1);
        assert!(t.is_empty());
    }

    #[test]
    fn burst_lookup() {
        let mut t = ConnTable4::new(cfg(128), Time::ZERO).unwrap();
        for i in 0..64 {
            t.insert(k(i), None, nc(i as u16), TcpFlags::ACK, Time::ZERO)
                .unwrap();
        }
        let keys: Vec<Key4> = (0..80).map(k).collect();
        let mut out = vec![None; 80];
        t.lookup_burst(&keys, &mut out).unwrap();
        for (i, o) in out.iter().enumerate() {
            assert_eq!(o.is_some(), i < 64, "{i}");
            if let Some(h) = o {
                assert_eq!(t.get(h).unwrap().server(), i as u16);
            }
        }
        assert_eq!(t.stats.hits, 64);
        assert_eq!(t.stats.misses, 16);
        assert!(t.lookup_burst(&keys, &mut out[..3]).is_err());
    }

    /// Bursts mixing forward keys, reply keys and absent keys (more than
    /// [`BURST`] of them) find what one-by-one lookups find, in a table
    /// whose entries collide on purpose (a small table, many keys).
    #[test]
    fn burst_lookup_with_replies_matches_single_lookups() {
        let mut t = ConnTable4::new(cfg(512), Time::ZERO).unwrap();
        let reply = |i: u32| {
            Key4::new(
                Ipv4Addr::new(10, 9, (i >> 8) as u8, i as u8),
                Ipv4Addr::from(0x0a00_0000 + i),
                80,
                1000 + (i % 5000) as u16,
                6,
            )
        };
        for i in 0..200 {
            let r = (i % 3 != 0).then(|| reply(i));
            t.insert(k(i), r, nc(i as u16), TcpFlags::ACK, Time::ZERO)
                .unwrap();
        }
        // Remove some, so deleted slots sit in probe sequences.
        for i in (0..200).step_by(7) {
            let h = t.lookup(&k(i)).unwrap();
            t.remove(&h).unwrap();
        }
        let mut keys = Vec::new();
        for i in 0..260 {
            keys.push(k(i));
            keys.push(reply(i));
        }
        let mut out = vec![None; keys.len()];
        t.lookup_burst(&keys, &mut out).unwrap();
        for (key, got) in keys.iter().zip(&out) {
            assert_eq!(*got, t.lookup(key), "{key:?}");
            if let Some(h) = got {
                assert_eq!(h.is_reply(), key.src.octets()[1] == 9);
                assert!(t.get(h).is_some());
            }
        }
    }
}
