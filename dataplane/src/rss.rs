//! Software receive-side scaling: the Toeplitz hash as NICs and DPDK's
//! `rte_softrss` compute it, the redirection table (RETA) model, and the
//! choice of full-NAT source ports whose reply traffic the NIC steers back
//! to the queue (and so the worker core) that owns the connection.
//!
//! # Input layout
//!
//! DPDK's `rte_softrss(input_tuple, input_len, rss_key)` hashes an array of
//! 32-bit words in CPU order, each consumed most significant bit first, with
//! the key in its original (network) byte order. `struct rte_ipv4_tuple` is
//! `{ src_addr, dst_addr, union { struct { dport, sport }, sctp_tag } }`:
//! on a little-endian CPU the third word is `sport << 16 | dport`. The bit
//! stream is therefore exactly the NIC's (Microsoft RSS specification):
//! source address, destination address, source port, destination port, all
//! big-endian — which is what [`Toeplitz::hash`] takes as bytes. IPv6 is the
//! same with 16-byte addresses (`rte_thash_load_v6_addrs` byte-swaps each
//! 32-bit word so the stream is the address in network order).
//!
//! # Reply-port selection
//!
//! The Toeplitz hash is linear over GF(2): `hash(a ⊕ b) = hash(a) ⊕ hash(b)`.
//! For a reply tuple (src = server address/port, dst = local address/port)
//! the hash is `hash(tuple with dst port 0) ⊕ h(port)`, and `h(port)` is the
//! XOR of two 256-entry tables (one per port byte) that [`Toeplitz`] already
//! holds. [`SnatPortPicker::pick`] walks the port range from a cursor and
//! returns the first free port whose reply hash lands on the wanted queue:
//! about `n_queues` cheap probes per allocation for a uniform RETA.

use core::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use core::ops::RangeInclusive;

/// The key of Microsoft's RSS verification suite, also used by DPDK's
/// `test_thash.c` (from the 82599 datasheet, 7.1.2.8.3) and the default key
/// of several PMDs.
pub const MS_RSS_KEY: [u8; 40] = [
    0x6d, 0x5a, 0x56, 0xda, 0x25, 0x5b, 0x0e, 0xc2, 0x41, 0x67, 0x25, 0x3d, 0x43, 0xa3, 0x8f, 0xb0,
    0xd0, 0xca, 0x2b, 0xcb, 0xae, 0x7b, 0x30, 0xb4, 0x77, 0xcb, 0x2d, 0xa3, 0x80, 0x30, 0xf2, 0x0c,
    0x6a, 0x42, 0xb7, 0x3b, 0xbe, 0xac, 0x01, 0xfa,
];

/// The longest hash input: IPv6 addresses and ports (36 bytes).
pub const MAX_INPUT_LEN: usize = 36;

/// Shortest key usable for every input (input length + 4 bytes).
pub const MIN_KEY_LEN: usize = MAX_INPUT_LEN + 4;

/// Errors of the RSS model.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, thiserror::Error)]
#[non_exhaustive]
pub enum RssError {
    /// The key is shorter than [`MIN_KEY_LEN`] bytes.
    #[error("RSS key shorter than {MIN_KEY_LEN} bytes")]
    KeyTooShort,
    /// A RETA must have at least one entry.
    #[error("empty redirection table")]
    EmptyReta,
    /// Zero queues.
    #[error("no queues")]
    NoQueues,
    /// Addresses of different families in one tuple.
    #[error("address family mismatch")]
    FamilyMismatch,
    /// An empty port range (start after end).
    #[error("empty port range")]
    EmptyRange,
    /// No free port in the range maps to the wanted queue.
    #[error("no free port maps to the queue")]
    Exhausted,
}

/// Reference Toeplitz hash, bit by bit, exactly as `rte_softrss` and the
/// Microsoft specification define it: for every set bit `i` of `input`
/// (most significant bit of byte 0 first), XOR in the 32 key bits starting
/// at key bit `i`. Key bits past the end of `key` count as zero.
pub fn toeplitz_hash(key: &[u8], input: &[u8]) -> u32 {
    let mut result = 0u32;
    for (byte_i, &byte) in input.iter().enumerate() {
        for bit in 0..8 {
            if byte & (0x80 >> bit) != 0 {
                result ^= key_window(key, byte_i * 8 + bit);
            }
        }
    }
    result
}

/// The 32 key bits starting at bit `pos` (bits past the key are zero).
fn key_window(key: &[u8], pos: usize) -> u32 {
    let byte = pos / 8;
    let shift = pos % 8;
    let mut w: u64 = 0;
    for k in 0..5 {
        w = (w << 8) | u64::from(key.get(byte + k).copied().unwrap_or(0));
    }
    // w holds 40 bits starting at bit byte*8; take 32 starting at `shift`.
    ((w >> (8 - shift)) & 0xffff_ffff) as u32
}

/// Serialise a flow tuple in RSS input order; returns the buffer and its length.
fn tuple_bytes(
    src: &IpAddr,
    dst: &IpAddr,
    ports: Option<(u16, u16)>,
) -> Result<([u8; MAX_INPUT_LEN], usize), RssError> {
    let mut b = [0u8; MAX_INPUT_LEN];
    let n = match (src, dst) {
        (IpAddr::V4(s), IpAddr::V4(d)) => {
            b[0..4].copy_from_slice(&s.octets());
            b[4..8].copy_from_slice(&d.octets());
            8
        }
        (IpAddr::V6(s), IpAddr::V6(d)) => {
            b[0..16].copy_from_slice(&s.octets());
            b[16..32].copy_from_slice(&d.octets());
            32
        }
        _ => return Err(RssError::FamilyMismatch),
    };
    Ok(match ports {
        Some((sp, dp)) => {
            b[n..n + 2].copy_from_slice(&sp.to_be_bytes());
            b[n + 2..n + 4].copy_from_slice(&dp.to_be_bytes());
            (b, n + 4)
        }
        None => (b, n),
    })
}

/// `rte_softrss` over an IPv4 tuple (`RTE_THASH_V4_L3_LEN` without ports,
/// `RTE_THASH_V4_L4_LEN` with), bit-by-bit reference implementation.
pub fn softrss_v4(key: &[u8], src: Ipv4Addr, dst: Ipv4Addr, ports: Option<(u16, u16)>) -> u32 {
    match tuple_bytes(&IpAddr::V4(src), &IpAddr::V4(dst), ports) {
        Ok((b, n)) => toeplitz_hash(key, &b[..n]),
        Err(_) => 0,
    }
}

/// `rte_softrss` over an IPv6 tuple, bit-by-bit reference implementation.
pub fn softrss_v6(key: &[u8], src: &Ipv6Addr, dst: &Ipv6Addr, ports: Option<(u16, u16)>) -> u32 {
    match tuple_bytes(&IpAddr::V6(*src), &IpAddr::V6(*dst), ports) {
        Ok((b, n)) => toeplitz_hash(key, &b[..n]),
        Err(_) => 0,
    }
}

/// A Toeplitz hasher with the key expanded into one 256-entry table per
/// input byte position (36 × 256 × 4 bytes = 36 KiB): a hash is one table
/// lookup and XOR per input byte.
#[derive(Clone)]
pub struct Toeplitz {
    tables: Box<[[u32; 256]; MAX_INPUT_LEN]>,
    key: [u8; MIN_KEY_LEN],
}

impl core::fmt::Debug for Toeplitz {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("Toeplitz")
            .field("key", &self.key)
            .finish_non_exhaustive()
    }
}

impl Toeplitz {
    /// Expand `key` (at least [`MIN_KEY_LEN`] bytes; only the first 40 matter
    /// for inputs up to 36 bytes, so 52-byte i40e keys work too).
    pub fn new(key: &[u8]) -> Result<Self, RssError> {
        if key.len() < MIN_KEY_LEN {
            return Err(RssError::KeyTooShort);
        }
        let mut k = [0u8; MIN_KEY_LEN];
        k.copy_from_slice(&key[..MIN_KEY_LEN]);
        let mut tables = Box::new([[0u32; 256]; MAX_INPUT_LEN]);
        for (pos, table) in tables.iter_mut().enumerate() {
            let windows: [u32; 8] = core::array::from_fn(|bit| key_window(&k, pos * 8 + bit));
            for (v, slot) in table.iter_mut().enumerate() {
                let mut h = 0;
                for (bit, w) in windows.iter().enumerate() {
                    if v & (0x80 >> bit) != 0 {
                        h ^= w;
                    }
                }
                *slot = h;
            }
        }
        Ok(Toeplitz { tables, key: k })
    }

    /// The key (first [`MIN_KEY_LEN`] bytes).
    pub fn key(&self) -> &[u8; MIN_KEY_LEN] {
        &self.key
    }

    /// Hash up to 36 bytes of input (further bytes are ignored).
    #[inline]
    pub fn hash(&self, input: &[u8]) -> u32 {
        self.term_at(0, input)
    }

    /// Contribution of `bytes` placed at byte `pos` of the input (nothing
    /// past [`MAX_INPUT_LEN`]).
    #[inline(always)]
    fn term_at(&self, pos: usize, bytes: &[u8]) -> u32 {
        let mut h = 0;
        for (table, &b) in self.tables.iter().skip(pos).zip(bytes) {
            h ^= table[usize::from(b)];
        }
        h
    }

    /// Contribution of a 16-bit value placed at byte `pos` of the input.
    #[inline(always)]
    fn word(&self, pos: usize, v: u16) -> u32 {
        match (self.tables.get(pos), self.tables.get(pos + 1)) {
            (Some(hi), Some(lo)) => hi[usize::from(v >> 8)] ^ lo[usize::from(v & 0xff)],
            _ => 0,
        }
    }

    /// Hash of an IPv4 address pair (the NIC's hash for non-TCP/UDP IPv4 and
    /// fragments).
    #[inline]
    pub fn hash_v4(&self, src: Ipv4Addr, dst: Ipv4Addr) -> u32 {
        let mut b = [0u8; 8];
        b[..4].copy_from_slice(&src.octets());
        b[4..].copy_from_slice(&dst.octets());
        self.hash(&b)
    }

    /// Hash of an IPv4 TCP/UDP 4-tuple.
    #[inline]
    pub fn hash_v4_l4(&self, src: Ipv4Addr, dst: Ipv4Addr, sport: u16, dport: u16) -> u32 {
        self.hash_v4(src, dst) ^ self.word(8, sport) ^ self.word(10, dport)
    }

    /// Hash of an IPv6 address pair.
    #[inline]
    pub fn hash_v6(&self, src: &Ipv6Addr, dst: &Ipv6Addr) -> u32 {
        let mut b = [0u8; 32];
        b[..16].copy_from_slice(&src.octets());
        b[16..].copy_from_slice(&dst.octets());
        self.hash(&b)
    }

    /// Hash of an IPv6 TCP/UDP 4-tuple.
    #[inline]
    pub fn hash_v6_l4(&self, src: &Ipv6Addr, dst: &Ipv6Addr, sport: u16, dport: u16) -> u32 {
        self.hash_v6(src, dst) ^ self.word(32, sport) ^ self.word(34, dport)
    }

    /// Hash of a flow of either family, with ports for TCP/UDP.
    pub fn hash_flow(
        &self,
        src: &IpAddr,
        dst: &IpAddr,
        ports: Option<(u16, u16)>,
    ) -> Result<u32, RssError> {
        let (b, n) = tuple_bytes(src, dst, ports)?;
        Ok(self.hash(&b[..n]))
    }

    /// Contribution of the destination port of an L4 tuple of the given
    /// family to its hash: `hash(tuple) = hash(tuple with dport 0) ^ this`.
    #[inline(always)]
    pub fn dport_term(&self, v6: bool, dport: u16) -> u32 {
        self.word(if v6 { 34 } else { 10 }, dport)
    }

    /// Contribution of the source port of an L4 tuple of the given family.
    #[inline(always)]
    pub fn sport_term(&self, v6: bool, sport: u16) -> u32 {
        self.word(if v6 { 32 } else { 8 }, sport)
    }

    /// Contribution of `addr` as the source (`dst` false) or destination
    /// address of a tuple of its family. The hash is linear: an L4 tuple's
    /// is the XOR of its two address terms and two port terms, so terms
    /// that do not change can be computed once.
    pub fn addr_term(&self, addr: IpAddr, dst: bool) -> u32 {
        match addr {
            IpAddr::V4(a) => self.term_at(if dst { 4 } else { 0 }, &a.octets()),
            IpAddr::V6(a) => self.term_at(if dst { 16 } else { 0 }, &a.octets()),
        }
    }

    /// A full-NAT reply flow's hash with destination port 0:
    /// `hash(reply) = this ^ dport_term(v6, port)`.
    pub fn reply_base(&self, flow: &ReplyFlow) -> Result<u32, RssError> {
        if flow.server_addr.is_ipv6() != flow.local_addr.is_ipv6() {
            return Err(RssError::FamilyMismatch);
        }
        Ok(self.addr_term(flow.server_addr, false)
            ^ self.addr_term(flow.local_addr, true)
            ^ self.sport_term(flow.server_addr.is_ipv6(), flow.server_port))
    }
}

/// A redirection table: `queue = reta[hash % size]`.
///
/// NICs index the RETA with the low bits of the hash (82599: "the 7 LSBs of
/// the hash"), which equals `hash % size` for the power-of-two sizes they use.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reta {
    entries: Vec<u16>,
    mask: Option<u32>,
    queues: u16,
    counts: Vec<u32>,
}

impl Reta {
    /// The default table most DPDK PMDs program: entry `i` = `i % n_queues`
    /// (e.g. `ixgbe_rss_configure`, `i40e_pf_config_rss`).
    pub fn round_robin(size: usize, n_queues: u16) -> Result<Self, RssError> {
        if n_queues == 0 {
            return Err(RssError::NoQueues);
        }
        Reta::from_entries(
            (0..size)
                .map(|i| (i % usize::from(n_queues)) as u16)
                .collect(),
        )
    }

    /// A table with explicit entries (as programmed with
    /// `rte_eth_dev_rss_reta_update`).
    pub fn from_entries(entries: Vec<u16>) -> Result<Self, RssError> {
        if entries.is_empty() || u32::try_from(entries.len()).is_err() {
            return Err(RssError::EmptyReta);
        }
        let len = entries.len();
        let queues = entries.iter().copied().max().unwrap_or(0).saturating_add(1);
        let mut counts = vec![0u32; usize::from(queues)];
        for &q in &entries {
            counts[usize::from(q)] += 1;
        }
        Ok(Reta {
            mask: len.is_power_of_two().then(|| (len - 1) as u32),
            entries,
            queues,
            counts,
        })
    }

    /// Number of entries.
    pub fn size(&self) -> usize {
        self.entries.len()
    }

    /// The entries.
    pub fn entries(&self) -> &[u16] {
        &self.entries
    }

    /// One more than the highest queue in the table.
    pub fn queue_count(&self) -> u16 {
        self.queues
    }

    /// Whether `queue` appears in the table at all.
    pub fn serves(&self, queue: u16) -> bool {
        self.counts.get(usize::from(queue)).is_some_and(|&c| c > 0)
    }

    /// The queue a hash is steered to.
    #[inline(always)]
    pub fn queue(&self, hash: u32) -> u16 {
        let idx = match self.mask {
            Some(m) => (hash & m) as usize,
            None => hash as usize % self.entries.len(),
        };
        self.entries.get(idx).copied().unwrap_or(0)
    }
}

/// The fixed part of a full-NAT reply flow: the reply comes from the server
/// (`server_addr`:`server_port`) to the appliance's local address
/// (`local_addr`:port to choose).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct ReplyFlow {
    /// Real server address (reply source).
    pub server_addr: IpAddr,
    /// Real server port (reply source port).
    pub server_port: u16,
    /// Local (SNAT) address of the appliance (reply destination).
    pub local_addr: IpAddr,
}

/// Chooses SNAT ports for one worker's queue. Each worker owns one picker;
/// its cursor advances past every port handed out, so successive allocations
/// for the same server spread over the range instead of retrying the same
/// port.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SnatPortPicker {
    queue: u16,
    cursor: u16,
    /// Ports the cursor has moved over since the picker was made.
    walked: u64,
}

impl SnatPortPicker {
    /// A picker for `queue`, starting its walk at port `start` (use a
    /// different start per queue, or a random one, to spread allocations).
    pub fn new(queue: u16, start: u16) -> Self {
        SnatPortPicker {
            queue,
            cursor: start,
            walked: 0,
        }
    }

    /// How many ports the cursor has moved over since the picker was made
    /// (wrapping at the end of the range counts the ports up to the end
    /// and from the start): how fast the walk goes round the range, which
    /// a restart after a crash needs to resume past what the servers may
    /// still hold (`tack`'s full-NAT walk checkpoints).
    pub fn walked(&self) -> u64 {
        self.walked
    }

    /// The same walk (cursor and ports walked) for `queue`.
    pub fn for_queue(self, queue: u16) -> Self {
        SnatPortPicker { queue, ..self }
    }

    /// The queue this picker allocates for.
    pub fn queue(&self) -> u16 {
        self.queue
    }

    /// The next port the walk starts from.
    pub fn cursor(&self) -> u16 {
        self.cursor
    }

    /// Pick a port in `range` such that the reply tuple (src = server,
    /// dst = local address and the port) hashes to this picker's queue
    /// under `toeplitz` and `reta`, and `is_free(port)` accepts it (the
    /// caller's check that the 5-tuple is not in use).
    ///
    /// Expected cost: about `reta.queue_count()` table probes when the RETA
    /// is uniform; the walk gives up after one pass over the range.
    pub fn pick(
        &mut self,
        toeplitz: &Toeplitz,
        reta: &Reta,
        flow: &ReplyFlow,
        range: RangeInclusive<u16>,
        mut is_free: impl FnMut(u16) -> bool,
    ) -> Result<u16, RssError> {
        let port = self
            .walk(toeplitz, reta, flow, range.clone())?
            .find(|&p| is_free(p))
            .ok_or(RssError::Exhausted)?;
        self.advance_past(port, range);
        Ok(port)
    }

    /// The port [`SnatPortPicker::pick`] would return if it is free, without
    /// checking that it is and without moving the cursor: the caller can
    /// fetch the reply tuple's table bucket, do other work while it
    /// arrives, then check it and [`SnatPortPicker::advance_past`] it (or
    /// fall back to [`SnatPortPicker::pick`]).
    pub fn candidate(
        &self,
        toeplitz: &Toeplitz,
        reta: &Reta,
        flow: &ReplyFlow,
        range: RangeInclusive<u16>,
    ) -> Result<u16, RssError> {
        self.walk(toeplitz, reta, flow, range)?
            .next()
            .ok_or(RssError::Exhausted)
    }

    /// [`SnatPortPicker::candidate`] for the flow whose
    /// [`Toeplitz::reply_base`] is `base` (of the IPv6 family if `v6`), for
    /// callers that keep the terms of the addresses.
    #[inline]
    pub fn candidate_from(
        &self,
        toeplitz: &Toeplitz,
        reta: &Reta,
        base: u32,
        v6: bool,
        range: RangeInclusive<u16>,
    ) -> Result<u16, RssError> {
        self.walk_from(toeplitz, reta, base, v6, range)?
            .next()
            .ok_or(RssError::Exhausted)
    }

    /// Moves the cursor just past `port` (a port handed out), wrapping at
    /// the end of `range`.
    pub fn advance_past(&mut self, port: u16, range: RangeInclusive<u16>) {
        let (lo, hi) = (*range.start(), *range.end());
        let from = if (lo..=hi).contains(&self.cursor) {
            self.cursor
        } else {
            lo
        };
        // From the cursor to the port handed out, both counted, wrapping
        // at the end of the range.
        self.walked += if port >= from {
            u64::from(port - from) + 1
        } else {
            u64::from(hi.saturating_sub(from)) + 1 + u64::from(port.saturating_sub(lo)) + 1
        };
        self.cursor = if port >= hi { lo } else { port + 1 };
    }

    /// The ports of `range` whose reply hash lands on this picker's queue,
    /// in walk order: from the cursor to the end of the range, then from
    /// its start, once.
    fn walk<'a>(
        &self,
        toeplitz: &'a Toeplitz,
        reta: &'a Reta,
        flow: &ReplyFlow,
        range: RangeInclusive<u16>,
    ) -> Result<impl Iterator<Item = u16> + 'a, RssError> {
        let base = toeplitz.reply_base(flow)?;
        self.walk_from(toeplitz, reta, base, flow.server_addr.is_ipv6(), range)
    }

    /// [`SnatPortPicker::walk`] for the flow of reply base `base`.
    #[inline(always)]
    fn walk_from<'a>(
        &self,
        toeplitz: &'a Toeplitz,
        reta: &'a Reta,
        base: u32,
        v6: bool,
        range: RangeInclusive<u16>,
    ) -> Result<impl Iterator<Item = u16> + 'a, RssError> {
        let (lo, hi) = (*range.start(), *range.end());
        if lo > hi {
            return Err(RssError::EmptyRange);
        }
        if !reta.serves(self.queue) {
            return Err(RssError::Exhausted);
        }
        let start = if (lo..=hi).contains(&self.cursor) {
            self.cursor
        } else {
            lo
        };
        let queue = self.queue;
        Ok((start..=hi)
            .chain(lo..start)
            .filter(move |&port| reta.queue(base ^ toeplitz.dport_term(v6, port)) == queue))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    // Microsoft RSS verification suite (82599 datasheet 7.1.2.8.3, DPDK
    // app/test/test_thash.c): (dst, dst port, src, src port, hash over
    // addresses, hash over addresses and ports). The input order is
    // src, dst, sport, dport.
    const V4: [(&str, u16, &str, u16, u32, u32); 5] = [
        (
            "161.142.100.80",
            1766,
            "66.9.149.187",
            2794,
            0x323e8fc2,
            0x51ccc178,
        ),
        (
            "65.69.140.83",
            4739,
            "199.92.111.2",
            14230,
            0xd718262a,
            0xc626b0ea,
        ),
        (
            "12.22.207.184",
            38024,
            "24.19.198.95",
            12898,
            0xd2d0a5de,
            0x5c2b394a,
        ),
        (
            "209.142.163.6",
            2217,
            "38.27.205.30",
            48228,
            0x82989176,
            0xafc7327f,
        ),
        (
            "202.188.127.2",
            1303,
            "153.39.163.191",
            44251,
            0x5d1809c5,
            0x10e828a2,
        ),
    ];
    const V6: [(&str, u16, &str, u16, u32, u32); 3] = [
        (
            "3ffe:2501:200:3::1",
            1766,
            "3ffe:2501:200:1fff::7",
            2794,
            0x2cc18cd5,
            0x40207d3d,
        ),
        (
            "ff02::1",
            4739,
            "3ffe:501:8::260:97ff:fe40:efab",
            14230,
            0x0f0c461c,
            0xdde51bbf,
        ),
        (
            "fe80::200:f8ff:fe21:67cf",
            38024,
            "3ffe:1900:4545:3:200:f8ff:fe21:67cf",
            44251,
            0x4b61e985,
            0x02d1feef,
        ),
    ];

    #[test]
    fn microsoft_ipv4_vectors() {
        let t = Toeplitz::new(&MS_RSS_KEY).unwrap();
        for (dst, dp, src, sp, l3, l4) in V4 {
            let (s, d): (Ipv4Addr, Ipv4Addr) = (src.parse().unwrap(), dst.parse().unwrap());
            assert_eq!(softrss_v4(&MS_RSS_KEY, s, d, None), l3, "{src}->{dst}");
            assert_eq!(
                softrss_v4(&MS_RSS_KEY, s, d, Some((sp, dp))),
                l4,
                "{src}->{dst}"
            );
            assert_eq!(t.hash_v4(s, d), l3);
            assert_eq!(t.hash_v4_l4(s, d, sp, dp), l4);
            assert_eq!(
                t.hash_flow(&s.into(), &d.into(), Some((sp, dp))).unwrap(),
                l4
            );
        }
    }

    #[test]
    fn microsoft_ipv6_vectors() {
        let t = Toeplitz::new(&MS_RSS_KEY).unwrap();
        for (dst, dp, src, sp, l3, l4) in V6 {
            let (s, d): (Ipv6Addr, Ipv6Addr) = (src.parse().unwrap(), dst.parse().unwrap());
            assert_eq!(softrss_v6(&MS_RSS_KEY, &s, &d, None), l3, "{src}->{dst}");
            assert_eq!(
                softrss_v6(&MS_RSS_KEY, &s, &d, Some((sp, dp))),
                l4,
                "{src}->{dst}"
            );
            assert_eq!(t.hash_v6(&s, &d), l3);
            assert_eq!(t.hash_v6_l4(&s, &d, sp, dp), l4);
        }
    }

    #[test]
    fn reta_round_robin() {
        let r = Reta::round_robin(128, 3).unwrap();
        assert_eq!(r.queue(0), 0);
        assert_eq!(r.queue(4), 1);
        assert_eq!(r.queue(128 + 5), 2);
        assert!(r.serves(2) && !r.serves(3));
        let odd = Reta::from_entries(vec![1, 0, 1]).unwrap();
        assert_eq!(odd.queue(5), 1);
        assert_eq!(Reta::round_robin(0, 2).unwrap_err(), RssError::EmptyReta);
        assert_eq!(Reta::round_robin(8, 0).unwrap_err(), RssError::NoQueues);
        assert_eq!(
            Toeplitz::new(&[0u8; 39]).unwrap_err(),
            RssError::KeyTooShort
        );
    }

    /// The standard key, four queues, and a reply 10.0.0.1:80 → 10.0.1.1.
    fn picker_setup() -> (Toeplitz, Reta, ReplyFlow) {
        let flow = ReplyFlow {
            server_addr: "10.0.0.1".parse().unwrap(),
            server_port: 80,
            local_addr: "10.0.1.1".parse().unwrap(),
        };
        (
            Toeplitz::new(&MS_RSS_KEY).unwrap(),
            Reta::round_robin(128, 4).unwrap(),
            flow,
        )
    }

    /// The reply base and the port term make the whole hash, in both
    /// families, and the address terms are the base's parts.
    #[test]
    fn reply_base_is_the_hash_without_the_port() {
        let t = Toeplitz::new(&MS_RSS_KEY).unwrap();
        let flows = [
            ("66.9.149.187", "161.142.100.80", 2794u16),
            ("2a02:6b8::11:11", "3ffe:2501:200:3::1", 1766),
        ];
        for (s, l, sport) in flows {
            let flow = ReplyFlow {
                server_addr: s.parse().unwrap(),
                server_port: sport,
                local_addr: l.parse().unwrap(),
            };
            let base = t.reply_base(&flow).unwrap();
            let v6 = flow.server_addr.is_ipv6();
            for dport in [0u16, 1, 1024, 40000, 65535] {
                let whole = t
                    .hash_flow(&flow.server_addr, &flow.local_addr, Some((sport, dport)))
                    .unwrap();
                assert_eq!(base ^ t.dport_term(v6, dport), whole, "{s} {l} {dport}");
            }
            assert_eq!(
                base,
                t.addr_term(flow.server_addr, false)
                    ^ t.addr_term(flow.local_addr, true)
                    ^ t.sport_term(v6, sport)
            );
        }
        let mixed = ReplyFlow {
            server_addr: "10.0.0.1".parse().unwrap(),
            server_port: 80,
            local_addr: "::1".parse().unwrap(),
        };
        assert_eq!(t.reply_base(&mixed), Err(RssError::FamilyMismatch));
    }

    #[test]
    fn picker_gives_up_cleanly() {
        let (t, reta, flow) = picker_setup();
        let mut p = SnatPortPicker::new(5, 0);
        assert_eq!(
            p.pick(&t, &reta, &flow, 1024..=2048, |_| true),
            Err(RssError::Exhausted)
        );
        let mut p = SnatPortPicker::new(1, 0);
        assert_eq!(
            p.pick(&t, &reta, &flow, 1024..=2048, |_| false),
            Err(RssError::Exhausted)
        );
        #[allow(clippy::reversed_empty_ranges)]
        let empty = 10..=9;
        assert_eq!(
            p.pick(&t, &reta, &flow, empty, |_| true),
            Err(RssError::EmptyRange)
        );
        let mixed = ReplyFlow {
            local_addr: "::1".parse().unwrap(),
            ..flow
        };
        assert_eq!(
            p.pick(&t, &reta, &mixed, 1..=9, |_| true),
            Err(RssError::FamilyMismatch)
        );
        // Single-port range at the top of the port space wraps the cursor.
        let mut found = None;
        for port in (60000..=65535u16).rev() {
            let mut p = SnatPortPicker::new(1, 0);
            if let Ok(got) = p.pick(&t, &reta, &flow, port..=port, |_| true) {
                found = Some((got, p.cursor()));
                break;
            }
        }
        let (got, cursor) = found.unwrap();
        assert_eq!(cursor, got, "cursor wraps to the range start");
    }

    #[test]
    fn walked_counts_the_ports_the_cursor_moves_over() {
        let mut p = SnatPortPicker::new(0, 1000);
        assert_eq!(p.walked(), 0);
        // A cursor outside the range walks from the range's start.
        p.advance_past(1030, 1024..=2047);
        assert_eq!((p.cursor(), p.walked()), (1031, 7));
        p.advance_past(1031, 1024..=2047);
        assert_eq!((p.cursor(), p.walked()), (1032, 8));
        // To the end of the range (the cursor wraps), then past the start.
        p.advance_past(2047, 1024..=2047);
        assert_eq!((p.cursor(), p.walked()), (1024, 8 + 1016));
        p.advance_past(2040, 1024..=2047);
        p.advance_past(1025, 1024..=2047);
        // 1024..=2040, then 2041..=2047 and 1024..=1025.
        assert_eq!(p.walked(), 1024 + 1017 + 9);
        assert_eq!(p.cursor(), 1026);
    }

    #[test]
    fn candidate_is_the_next_pick_and_moves_nothing() {
        let (t, reta, flow) = picker_setup();
        let mut p = SnatPortPicker::new(2, 60000);
        let mut q = p.clone();
        for _ in 0..200 {
            let c = p.candidate(&t, &reta, &flow, 1024..=65535).unwrap();
            assert_eq!(p.candidate(&t, &reta, &flow, 1024..=65535), Ok(c));
            let h = t.hash_v4_l4(
                "10.0.0.1".parse().unwrap(),
                "10.0.1.1".parse().unwrap(),
                80,
                c,
            );
            assert_eq!(reta.queue(h), 2, "port {c} steers to the queue");
            assert_eq!(q.pick(&t, &reta, &flow, 1024..=65535, |_| true), Ok(c));
            p.advance_past(c, 1024..=65535);
            assert_eq!(p, q, "advance_past moves the cursor as pick does");
        }
        // A taken candidate: pick skips it, to the next candidate.
        let c = p.candidate(&t, &reta, &flow, 1024..=65535).unwrap();
        let got = p.pick(&t, &reta, &flow, 1024..=65535, |x| x != c).unwrap();
        assert_ne!(got, c);
        assert_eq!(
            SnatPortPicker::new(7, 0).candidate(&t, &reta, &flow, 1024..=65535),
            Err(RssError::Exhausted)
        );
    }
}
