//! The neighbour table: next-hop MAC addresses learned from ARP (IPv4) and
//! neighbour discovery (IPv6), per port.
//!
//! One table per worker, sized at construction (no allocation afterwards).
//! An entry goes through the states of RFC 4861 §7.3.2, simplified:
//!
//! * **Incomplete**: created by the first frame that needs it; a request
//!   (broadcast ARP request / multicast neighbour solicitation) is sent at
//!   once and retransmitted every `retrans` up to `probes` times. Up to `hold`
//!   frames wait in the entry; more are dropped (`drop_neigh_queue_full`).
//!   Without an answer the held frames are dropped (`neigh_hold_dropped`) and
//!   the entry becomes **Failed** for `failed_holddown`, during which frames
//!   for it are dropped (`drop_neigh_failed`) instead of triggering a request
//!   each (no ARP storm towards a dead server).
//! * **Reachable**: confirmed within `reachable`. Used as is.
//! * **Stale** (Reachable whose confirmation is older than `reachable`, or
//!   learned without confirmation): still used; the first use sends a unicast
//!   probe and moves the entry to **Probe**.
//! * **Probe**: still used while up to `probes` unicast requests go out every
//!   `retrans`; no answer makes it Failed.
//!
//! * **Permanent**: a static entry from the configuration
//!   ([`super::PipelineConfig::static_neighbors`]): always used as is, never
//!   probed, aged out, flushed or replaced by what ARP/NDP say. A new
//!   configuration without it makes it Stale (an ordinary learned entry).
//!
//! Entries not used for `gc_idle` are removed. Learning follows RFC 826's
//! merge rule: an ARP packet (or solicitation with a source link-layer
//! address) updates an existing entry for its sender, and creates one only
//! when the packet was addressed to us. Data traffic is never used to learn
//! (a forged source MAC in a data packet cannot redirect a server's traffic;
//! ARP/NDP are the only sources).
//!
//! Answers land on whichever worker the NIC steers them to (typically the
//! worker of queue 0 for ARP), so every learned mapping is also reported as
//! an [`super::Event::Neighbor`]; the control thread installs it in the other
//! workers ([`super::ControlMsg::Neighbor`]), which releases their held frames.

use core::time::Duration;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use hashbrown::HashMap;

use super::counters::Counters;
use super::fate::DropReason;
use super::{Output, PortRt};
use crate::frame::{Frame, FrameAlloc};
use crate::time::Time;
use crate::wire::ethernet::{EtherType, EthernetAddress, EthernetRepr};
use crate::wire::icmpv6::Icmpv6Repr;
use crate::wire::ip::IpProtocol;
use crate::wire::ipv6::Ipv6Repr;
use crate::wire::ndisc::NdiscRepr;
use crate::wire::{ArpOperation, ArpRepr};

/// Neighbour table settings.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct NeighConfig {
    /// Maximum number of entries (per worker).
    pub capacity: usize,
    /// Frames held per unresolved entry (at most [`MAX_HOLD`]).
    pub hold: usize,
    /// How long a confirmation keeps an entry reachable (RFC 4861 REACHABLE_TIME, 30 s).
    pub reachable: Duration,
    /// Interval between requests (RFC 4861 RETRANS_TIMER, 1 s).
    pub retrans: Duration,
    /// Requests sent before giving up (RFC 4861 MAX_MULTICAST_SOLICIT, 3).
    pub probes: u8,
    /// How long a failed entry drops frames before a new resolution may start.
    pub failed_holddown: Duration,
    /// Entries unused for this long are removed.
    pub gc_idle: Duration,
}

/// Largest `hold` setting.
pub const MAX_HOLD: usize = 64;

impl Default for NeighConfig {
    fn default() -> NeighConfig {
        NeighConfig {
            capacity: 4096,
            hold: 8,
            reachable: Duration::from_secs(30),
            retrans: Duration::from_secs(1),
            probes: 3,
            failed_holddown: Duration::from_secs(1),
            gc_idle: Duration::from_secs(600),
        }
    }
}

/// State of a neighbour entry (see the module documentation).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum NeighState {
    /// Being resolved; frames are held.
    Incomplete,
    /// Confirmed recently.
    Reachable,
    /// Known but not confirmed recently; the next use sends a probe.
    Stale,
    /// Known, being re-confirmed with unicast probes.
    Probe,
    /// Resolution failed; frames are dropped until the hold-down ends.
    Failed,
    /// Static, from the configuration: never probed, aged or replaced.
    Permanent,
}

/// A static neighbour entry ([`PipelineConfig::static_neighbors`](super::PipelineConfig::static_neighbors)).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StaticNeighbor {
    /// Port the neighbour is on.
    pub port: u16,
    /// Its IP address.
    pub addr: IpAddr,
    /// Its MAC address (unicast).
    pub mac: EthernetAddress,
}

/// A neighbour entry as the admin CLI shows it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Neighbor {
    /// Port the neighbour is on.
    pub port: u16,
    /// Its IP address.
    pub addr: IpAddr,
    /// Its MAC address, if known.
    pub mac: Option<EthernetAddress>,
    /// State.
    pub state: NeighState,
    /// Frames waiting for it.
    pub held: usize,
    /// Last confirmation, if any.
    pub confirmed: Option<Time>,
}

/// How [`NeighTable::learn`] takes a MAC address it is told.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Learn {
    /// Create an entry if there is none (else only update one).
    pub(crate) create: bool,
    /// Mark it reachable (an answer to a request, or a request addressed
    /// to us); else stale (NDP: from a solicitation or an unsolicited
    /// advertisement), so its first use probes it.
    pub(crate) confirm: bool,
    /// Replace a known different MAC (NDP's O flag; always for ARP).
    pub(crate) override_mac: bool,
}

impl Learn {
    /// What the control thread installs: create, reachable, replace.
    pub(crate) const INSTALL: Learn = Learn {
        create: true,
        confirm: true,
        override_mac: true,
    };
}

/// What happened to a frame given to [`NeighTable::transmit`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum TxResult {
    /// Addressed and appended to the port's output.
    Sent,
    /// Held until the neighbour resolves.
    Held,
    /// Dropped, for this reason.
    Dropped(DropReason),
}

struct Entry<F> {
    port: u16,
    addr: IpAddr,
    mac: EthernetAddress,
    state: NeighState,
    has_mac: bool,
    confirmed: Time,
    /// Next action (Incomplete/Probe: next request; Failed: end of hold-down).
    deadline: Time,
    used: Time,
    probes: u8,
    live: bool,
    /// Held frames wait for the next poll to be released.
    release: bool,
    held: Vec<F>,
}

/// Sends the frames held by a resolved entry.
fn release<F: Frame>(e: &mut Entry<F>, ports: &[PortRt], out: &mut Output<F>, ctr: &mut Counters) {
    e.release = false;
    let p = ports.get(usize::from(e.port));
    let q = out.tx.get_mut(usize::from(e.port));
    match (p, q) {
        (Some(p), Some(q)) => {
            for mut f in e.held.drain(..) {
                set_macs(&mut f, e.mac, p.mac);
                q.push(f);
                ctr.neigh_released += 1;
            }
        }
        _ => {
            ctr.neigh_hold_dropped += e.held.len() as u64;
            e.held.clear();
        }
    }
}

/// A worker's neighbour table (see the module documentation).
pub(crate) struct NeighTable<F> {
    cfg: NeighConfig,
    map: HashMap<(u16, IpAddr), u32>,
    entries: Vec<Entry<F>>,
    free: Vec<u32>,
    next_due: Time,
    /// `cfg.reachable` in nanoseconds (saturated), for the per-packet check.
    reachable_ns: u64,
}

const HOUSEKEEPING: Duration = Duration::from_secs(1);

impl<F: Frame> NeighTable<F> {
    /// A table per `cfg`; allocates everything.
    pub(crate) fn new(cfg: NeighConfig) -> NeighTable<F> {
        let cfg = NeighConfig {
            capacity: cfg.capacity.clamp(1, 1 << 20),
            hold: cfg.hold.min(MAX_HOLD),
            probes: cfg.probes.max(1),
            ..cfg
        };
        let entries = (0..cfg.capacity)
            .map(|_| Entry {
                port: 0,
                addr: IpAddr::V4(Ipv4Addr::UNSPECIFIED),
                mac: EthernetAddress::UNSPECIFIED,
                state: NeighState::Failed,
                has_mac: false,
                confirmed: Time::ZERO,
                deadline: Time::ZERO,
                used: Time::ZERO,
                probes: 0,
                live: false,
                release: false,
                held: Vec::with_capacity(cfg.hold),
            })
            .collect();
        NeighTable {
            // Twice the entries so deletions never make hashbrown grow.
            map: HashMap::with_capacity(cfg.capacity * 2),
            entries,
            free: (0..cfg.capacity as u32).rev().collect(),
            next_due: Time::ZERO,
            reachable_ns: u64::try_from(cfg.reachable.as_nanos()).unwrap_or(u64::MAX),
            cfg,
        }
    }

    /// Number of entries.
    pub(crate) fn len(&self) -> usize {
        self.map.len()
    }

    fn schedule(&mut self, t: Time) {
        if t < self.next_due {
            self.next_due = t;
        }
    }

    /// Whether `e` is Reachable and its confirmation at most `reachable` old.
    /// Permanent entries always are.
    #[inline(always)]
    fn is_reachable(&self, e: &Entry<F>, now: Time) -> bool {
        match e.state {
            NeighState::Reachable => {
                now.as_nanos().saturating_sub(e.confirmed.as_nanos()) <= self.reachable_ns
            }
            NeighState::Permanent => true,
            _ => false,
        }
    }

    /// Sends `frame` to neighbour `nh` on `port`: fills in the Ethernet
    /// destination (the neighbour) and source (the port), or holds the frame
    /// while the neighbour resolves, sending a request if needed.
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn transmit<A: FrameAlloc<Frame = F>>(
        &mut self,
        mut frame: F,
        port: u16,
        nh: IpAddr,
        now: Time,
        ports: &[PortRt],
        out: &mut Output<F>,
        alloc: &mut A,
        ctr: &mut Counters,
        hint: Option<&mut u32>,
    ) -> TxResult {
        let Some(p) = ports.get(usize::from(port)) else {
            return TxResult::Dropped(DropReason::BadPort);
        };
        if out.tx.len() <= usize::from(port) {
            return TxResult::Dropped(DropReason::BadPort);
        }
        // The caller's cached entry index saves the map lookup.
        let cached = hint.as_deref().and_then(|&h| {
            let e = self.entries.get(h as usize)?;
            (e.live && e.port == port && e.addr == nh).then_some(h as usize)
        });
        let found = cached.or_else(|| self.map.get(&(port, nh)).map(|&i| i as usize));
        if let (Some(h), Some(i)) = (hint, found) {
            *h = i as u32;
        }
        let idx = match found {
            Some(i) => i,
            None => {
                // New entry: Incomplete, request now.
                let Some(i) = self.free.pop() else {
                    return TxResult::Dropped(DropReason::NeighQueueFull);
                };
                self.map.insert((port, nh), i);
                let e = &mut self.entries[i as usize];
                e.port = port;
                e.addr = nh;
                e.mac = EthernetAddress::UNSPECIFIED;
                e.has_mac = false;
                e.state = NeighState::Incomplete;
                e.confirmed = Time::ZERO;
                e.used = now;
                e.probes = 1;
                e.live = true;
                e.release = false;
                e.deadline = now + self.cfg.retrans;
                e.held.clear();
                let d = e.deadline;
                self.schedule(d);
                send_request(p, nh, None, out, port, alloc, ctr);
                return self.hold(i as usize, frame);
            }
        };
        let reachable = self.is_reachable(&self.entries[idx], now);
        let e = &mut self.entries[idx];
        e.used = now;
        match e.state {
            NeighState::Incomplete => self.hold(idx, frame),
            NeighState::Failed => {
                if now < e.deadline {
                    return TxResult::Dropped(DropReason::NeighFailed);
                }
                e.state = NeighState::Incomplete;
                e.has_mac = false;
                e.probes = 1;
                e.deadline = now + self.cfg.retrans;
                let d = e.deadline;
                self.schedule(d);
                send_request(p, nh, None, out, port, alloc, ctr);
                self.hold(idx, frame)
            }
            NeighState::Reachable
            | NeighState::Stale
            | NeighState::Probe
            | NeighState::Permanent => {
                if !reachable && e.state != NeighState::Probe {
                    // Stale and used: probe it (unicast), keep using it.
                    e.state = NeighState::Probe;
                    e.probes = 1;
                    e.deadline = now + self.cfg.retrans;
                    let mac = e.mac;
                    let d = e.deadline;
                    self.schedule(d);
                    send_request(p, nh, Some(mac), out, port, alloc, ctr);
                }
                let mac = self.entries[idx].mac;
                set_macs(&mut frame, mac, p.mac);
                out.tx[usize::from(port)].push(frame);
                TxResult::Sent
            }
        }
    }

    /// The fast path's neighbour check: the MAC of entry `hint` if it is
    /// the entry of `nh` on `port` and reachable at `now`, when
    /// [`NeighTable::transmit`] would use it as is (then call
    /// [`NeighTable::touch`] if the frame is sent). `None` when anything else
    /// is needed (a lookup, a probe, a resolution): use `transmit`.
    #[inline]
    pub(crate) fn peek(
        &self,
        hint: u32,
        port: u16,
        nh: IpAddr,
        now: Time,
    ) -> Option<EthernetAddress> {
        let e = self.entries.get(hint as usize)?;
        let ok = e.live && e.port == port && e.addr == nh && self.is_reachable(e, now);
        ok.then_some(e.mac)
    }

    /// Marks entry `idx` used at `now` (a frame was sent to it).
    #[inline]
    pub(crate) fn touch(&mut self, idx: u32, now: Time) {
        if let Some(e) = self.entries.get_mut(idx as usize) {
            e.used = now;
        }
    }

    /// The entry index of `nh` on `port`, if there is one (to seed a hint).
    #[inline]
    pub(crate) fn index_of(&self, port: u16, nh: IpAddr) -> Option<u32> {
        self.map.get(&(port, nh)).copied()
    }

    fn hold(&mut self, idx: usize, frame: F) -> TxResult {
        let e = &mut self.entries[idx];
        if e.held.len() >= self.cfg.hold {
            return TxResult::Dropped(DropReason::NeighQueueFull);
        }
        e.held.push(frame);
        TxResult::Held
    }

    /// Learns `mac` for `addr` on `port` (from ARP or NDP, or from the
    /// control thread) as `how` says. Held frames are released. Returns
    /// whether an entry now holds `mac`.
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn learn(
        &mut self,
        port: u16,
        addr: IpAddr,
        mac: EthernetAddress,
        now: Time,
        how: Learn,
        ports: &[PortRt],
        out: Option<&mut Output<F>>,
        ctr: &mut Counters,
    ) -> bool {
        if mac.is_multicast() || mac == EthernetAddress::UNSPECIFIED {
            return false;
        }
        let idx = match self.map.get(&(port, addr)) {
            Some(&i) => i as usize,
            None => {
                if !how.create {
                    return false;
                }
                let Some(i) = self.free.pop() else {
                    return false;
                };
                self.map.insert((port, addr), i);
                let e = &mut self.entries[i as usize];
                e.port = port;
                e.addr = addr;
                e.live = true;
                e.release = false;
                e.used = now;
                e.probes = 0;
                e.held.clear();
                e.has_mac = false;
                e.state = NeighState::Incomplete;
                i as usize
            }
        };
        let e = &mut self.entries[idx];
        if e.state == NeighState::Permanent {
            // The configuration's word stands over ARP's and NDP's.
            return false;
        }
        if e.has_mac && e.mac != mac && !how.override_mac && e.state != NeighState::Failed {
            // RFC 4861 §7.2.5: without O, a different address does not replace a known one.
            return false;
        }
        e.mac = mac;
        e.has_mac = true;
        e.probes = 0;
        if how.confirm {
            e.state = NeighState::Reachable;
            e.confirmed = now;
        } else {
            // Unconfirmed: stale, so the first use probes it.
            e.state = NeighState::Stale;
        }
        ctr.neigh_learned += 1;
        if !e.held.is_empty() {
            match out {
                Some(out) => release(e, ports, out, ctr),
                None => {
                    // Released by the next poll.
                    e.release = true;
                    self.next_due = Time::ZERO;
                }
            }
        }
        true
    }

    /// Retransmissions, failures and ageing due at `now`. Cheap when nothing is due.
    pub(crate) fn poll<A: FrameAlloc<Frame = F>>(
        &mut self,
        now: Time,
        ports: &[PortRt],
        out: &mut Output<F>,
        alloc: &mut A,
        ctr: &mut Counters,
    ) {
        if now < self.next_due {
            return;
        }
        let mut next = now + HOUSEKEEPING;
        let cfg = self.cfg;
        for i in 0..self.entries.len() {
            let e = &mut self.entries[i];
            if !e.live {
                continue;
            }
            if e.release && e.has_mac {
                release(e, ports, out, ctr);
            }
            match e.state {
                NeighState::Incomplete | NeighState::Probe if now >= e.deadline => {
                    if e.probes < cfg.probes {
                        e.probes += 1;
                        e.deadline = now + cfg.retrans;
                        let unicast = (e.state == NeighState::Probe).then_some(e.mac);
                        if let Some(p) = ports.get(usize::from(e.port)) {
                            send_request(p, e.addr, unicast, out, e.port, alloc, ctr);
                        }
                    } else {
                        ctr.neigh_failed += 1;
                        ctr.neigh_hold_dropped += e.held.len() as u64;
                        e.held.clear();
                        e.state = NeighState::Failed;
                        e.has_mac = false;
                        e.deadline = now + cfg.failed_holddown;
                    }
                }
                NeighState::Incomplete | NeighState::Probe | NeighState::Permanent => {}
                NeighState::Failed | NeighState::Reachable | NeighState::Stale => {
                    if now.saturating_since(e.used) > cfg.gc_idle
                        && (e.state != NeighState::Failed || now >= e.deadline)
                    {
                        let key = (e.port, e.addr);
                        ctr.neigh_hold_dropped += e.held.len() as u64;
                        e.held.clear();
                        e.live = false;
                        self.map.remove(&key);
                        self.free.push(i as u32);
                        ctr.neigh_aged += 1;
                        continue;
                    }
                }
            }
            let e = &self.entries[i];
            if matches!(e.state, NeighState::Incomplete | NeighState::Probe) && e.deadline < next {
                next = e.deadline;
            }
        }
        self.next_due = next;
    }

    /// The MAC of `addr` on `port`, if known and usable (for tests and the CLI).
    pub(crate) fn lookup(&self, port: u16, addr: IpAddr) -> Option<EthernetAddress> {
        let &i = self.map.get(&(port, addr))?;
        let e = &self.entries[i as usize];
        (e.has_mac && e.state != NeighState::Failed).then_some(e.mac)
    }

    /// Every entry.
    pub(crate) fn iter(&self, now: Time) -> impl Iterator<Item = Neighbor> + '_ {
        self.entries.iter().filter(|e| e.live).map(move |e| {
            let state = match e.state {
                NeighState::Reachable if !self.is_reachable(e, now) => NeighState::Stale,
                s => s,
            };
            Neighbor {
                port: e.port,
                addr: e.addr,
                mac: e.has_mac.then_some(e.mac),
                state,
                held: e.held.len(),
                confirmed: (e.confirmed != Time::ZERO).then_some(e.confirmed),
            }
        })
    }

    /// Removes every entry but the permanent ones (held frames are dropped
    /// and counted). Returns the count removed.
    pub(crate) fn flush(&mut self, ctr: &mut Counters) -> usize {
        let mut n = 0;
        for (i, e) in self.entries.iter_mut().enumerate() {
            if e.live && e.state != NeighState::Permanent {
                ctr.neigh_hold_dropped += e.held.len() as u64;
                e.held.clear();
                e.live = false;
                self.map.remove(&(e.port, e.addr));
                self.free.push(i as u32);
                n += 1;
            }
        }
        n
    }

    /// Makes `list` the permanent entries: entries of it are installed (or
    /// made permanent, releasing frames they hold at the next poll);
    /// permanent entries not in it become Stale, ordinary entries. A full
    /// table gives up an ordinary entry for each new one (its held frames
    /// dropped and counted); `list` must not be longer than the table.
    pub(crate) fn set_static(&mut self, list: &[StaticNeighbor], now: Time, ctr: &mut Counters) {
        for e in self.entries.iter_mut() {
            if e.live
                && e.state == NeighState::Permanent
                && !list.iter().any(|s| s.port == e.port && s.addr == e.addr)
            {
                e.state = NeighState::Stale;
                e.used = now;
            }
        }
        for s in list {
            if s.mac.is_multicast() || s.mac == EthernetAddress::UNSPECIFIED {
                continue;
            }
            let idx = match self.map.get(&(s.port, s.addr)) {
                Some(&i) => i,
                None => {
                    let i = match self.free.pop() {
                        Some(i) => i,
                        None => {
                            let Some(i) = self
                                .entries
                                .iter()
                                .position(|e| e.live && e.state != NeighState::Permanent)
                            else {
                                continue;
                            };
                            let e = &mut self.entries[i];
                            ctr.neigh_hold_dropped += e.held.len() as u64;
                            e.held.clear();
                            e.live = false;
                            self.map.remove(&(e.port, e.addr));
                            i as u32
                        }
                    };
                    self.map.insert((s.port, s.addr), i);
                    let e = &mut self.entries[i as usize];
                    e.port = s.port;
                    e.addr = s.addr;
                    e.live = true;
                    e.release = false;
                    e.held.clear();
                    i
                }
            };
            let e = &mut self.entries[idx as usize];
            e.mac = s.mac;
            e.has_mac = true;
            e.state = NeighState::Permanent;
            e.confirmed = now;
            e.used = now;
            e.probes = 0;
            if !e.held.is_empty() {
                e.release = true;
                self.next_due = Time::ZERO;
            }
        }
    }

    /// Removes the entries of ports at or above `n_ports` (after a reload
    /// that removed ports).
    pub(crate) fn retain_ports(&mut self, n_ports: usize, ctr: &mut Counters) {
        for (i, e) in self.entries.iter_mut().enumerate() {
            if e.live && usize::from(e.port) >= n_ports {
                ctr.neigh_hold_dropped += e.held.len() as u64;
                e.held.clear();
                e.live = false;
                self.map.remove(&(e.port, e.addr));
                self.free.push(i as u32);
            }
        }
    }
}

/// Writes the Ethernet destination and source of `frame`.
#[inline]
pub(crate) fn set_macs<F: Frame>(frame: &mut F, dst: EthernetAddress, src: EthernetAddress) {
    if let Some(h) = frame.bytes_mut().get_mut(..12) {
        h[..6].copy_from_slice(&dst.0);
        h[6..].copy_from_slice(&src.0);
    }
}

/// The solicited-node multicast address of `a` (RFC 4291 §2.7.1).
pub(crate) fn solicited_node(a: &Ipv6Addr) -> Ipv6Addr {
    let o = a.octets();
    Ipv6Addr::new(
        0xff02,
        0,
        0,
        0,
        0,
        1,
        0xff00 | u16::from(o[13]),
        (u16::from(o[14]) << 8) | u16::from(o[15]),
    )
}

/// Sends an ARP request or neighbour solicitation for `target` on port `p`
/// (broadcast / multicast, or unicast to `unicast` for a probe).
fn send_request<F: Frame, A: FrameAlloc<Frame = F>>(
    p: &PortRt,
    target: IpAddr,
    unicast: Option<EthernetAddress>,
    out: &mut Output<F>,
    port: u16,
    alloc: &mut A,
    ctr: &mut Counters,
) {
    let Some(q) = out.tx.get_mut(usize::from(port)) else {
        return;
    };
    let Some(mut f) = alloc.alloc() else {
        ctr.alloc_failed += 1;
        return;
    };
    let ok = match target {
        IpAddr::V4(t) => build_arp_request(&mut f, p, t, unicast),
        IpAddr::V6(t) => build_ns(&mut f, p, &t, unicast),
    };
    if ok {
        q.push(f);
        ctr.tx_originated += 1;
        match target {
            IpAddr::V4(_) => ctr.arp_requests_sent += 1,
            IpAddr::V6(_) => ctr.ndp_solicits_sent += 1,
        }
    } else {
        ctr.alloc_failed += 1;
    }
}

fn build_arp_request<F: Frame>(
    f: &mut F,
    p: &PortRt,
    target: Ipv4Addr,
    unicast: Option<EthernetAddress>,
) -> bool {
    if !f.set_len(14 + 28) {
        return false;
    }
    let b = f.bytes_mut();
    let eth = EthernetRepr {
        src_addr: p.mac,
        dst_addr: unicast.unwrap_or(EthernetAddress::BROADCAST),
        vlan: None,
        ethertype: EtherType::ARP,
    };
    let arp = ArpRepr {
        operation: ArpOperation::REQUEST,
        source_hardware_addr: p.mac,
        source_protocol_addr: p.src_v4_for(target).unwrap_or(Ipv4Addr::UNSPECIFIED),
        target_hardware_addr: EthernetAddress::UNSPECIFIED,
        target_protocol_addr: target,
    };
    eth.emit(b).is_ok() && arp.emit(&mut b[14..]).is_ok()
}

fn build_ns<F: Frame>(
    f: &mut F,
    p: &PortRt,
    target: &Ipv6Addr,
    unicast: Option<EthernetAddress>,
) -> bool {
    let Some(src) = p.src_v6_for(target) else {
        return false;
    };
    let ns = Icmpv6Repr::Ndisc(NdiscRepr::NeighborSolicit {
        target_addr: *target,
        lladdr: Some(p.mac),
    });
    let dst = match unicast {
        Some(_) => *target,
        None => solicited_node(target),
    };
    let len = 14 + 40 + ns.len();
    if !f.set_len(len) {
        return false;
    }
    let b = f.bytes_mut();
    let eth = EthernetRepr {
        src_addr: p.mac,
        dst_addr: unicast.unwrap_or(EthernetAddress::from_ipv6_multicast(&dst)),
        vlan: None,
        ethertype: EtherType::IPV6,
    };
    let ip = Ipv6Repr {
        src_addr: src,
        dst_addr: dst,
        next_header: IpProtocol::ICMPV6,
        payload_len: ns.len(),
        hop_limit: 255,
        traffic_class: 0,
        flow_label: 0,
    };
    eth.emit(b).is_ok()
        && ip.emit(&mut b[14..]).is_ok()
        && ns.emit(&mut b[54..], &src, &dst).is_ok()
}
