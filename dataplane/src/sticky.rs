//! Source persistence ("sticky"): a per-core table of (service, client key) →
//! server bindings with LocalDirector timer semantics.
//!
//! # Client keys
//! A client key is the source address masked per the service's
//! [`ClientKeyRule`]: the whole address, an IPv4 netmask / IPv6 prefix, or the
//! address's **natural class** (class A → /8, class B → /16, class C → /24;
//! Tenereillo, "persistent connections based on subnet natural class"), which
//! keeps clients behind an array of NAT firewalls on one server even when each
//! connection leaves through a different address of the same classful
//! network. Class D and E sources have no natural network: they are never
//! sticky and are scheduled like non-persistent traffic (counted in
//! [`StickyStats::unsticky`]). With `networks` listed (LocalDirector's
//! `nc-subnet`), natural-class keys apply only inside those networks and other
//! sources are keyed by their whole address.
//!
//! # Timer
//! The timeout (minutes) is an *idle* timeout: each binding counts the
//! connections currently using it; while any is open the binding never
//! expires, and when the last one ends ([`StickyTable::release`]) the timer
//! restarts. Expiry runs on a per-table [`TimerWheel`] with lazy re-arming.
//!
//! # Agreement across cores
//! Every core has its own table. The **first choice for a key is a
//! deterministic function of the key and the live weighted servers**: weighted
//! rendezvous hashing over the service's eligible servers (`Up`, weight > 0),
//! seeded by the service's identity. Two cores that see the same key at the
//! same time with the same snapshot therefore choose the same server without
//! talking. This choice **ignores load**: least-connection schedulers are not
//! consulted for sticky keys (their counts are per core and would make cores
//! disagree); a persistent service is balanced by weight only. Each new
//! binding (and each rebinding) is pushed as a [`StickyEvent`] into a bounded
//! outbox that the pipeline drains to the control thread, which publishes
//! bindings to the other cores ([`StickyTable::install`]). An installed
//! binding replaces the local one unless it points at a server that is `Down`
//! or in `Maint`. The control thread must serialise conflicting reports (two
//! cores learning different servers for one key, possible only when they
//! held different snapshots): it keeps the first binding per key and
//! publishes it to all cores, including the one that reported the other.
//! Connections already open keep their server in any case (connection
//! persistence).
//!
//! Expiry is per core: a key idle on this core expires here even if another
//! core still has connections for it; its next connection here makes the same
//! deterministic choice again, which differs only if the server set changed
//! meanwhile (and is then reconciled through the events).
//!
//! # Server states
//! A binding to a `Drain` server stays (drain keeps sticky clients). A binding
//! to a `Down` or `Maint` server is rebound on its key's next connection: to
//! the server's backup if one is configured and `Up` (a weight-0 `Up` server
//! is a valid hot-standby backup), otherwise to a deterministic rendezvous
//! choice over the live servers; the rebinding is reported.

use core::fmt;
use core::time::Duration;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use hashbrown::HashTable;
use thiserror::Error;

use crate::addr::{mask_v4, mask_v6};
use crate::balance::hrw;
use crate::hash;
use crate::model::{
    ClientKeyRule, Config, ReloadMap, ServerIdx, ServerState, ServiceEntry, ServiceIdx, ServiceMap,
    natural_class,
};
use crate::time::Time;
use crate::timer::{TimerError, TimerWheel, id_stack};

const NO_SERVER: u16 = u16::MAX;

/// A masked client address: the persistence key within a service.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ClientKey {
    /// The masked address.
    pub addr: IpAddr,
    /// The prefix length it was masked to.
    pub prefix: u8,
}

impl fmt::Display for ClientKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.addr, self.prefix)
    }
}

/// The client key of source `src` under `rule`, or `None` when the source is
/// never sticky (class D/E under natural class, or a family the rule cannot
/// mask).
pub fn client_key(rule: &ClientKeyRule, src: IpAddr) -> Option<ClientKey> {
    match (rule, src) {
        (ClientKeyRule::Address, IpAddr::V4(a)) => Some(ClientKey {
            addr: IpAddr::V4(a),
            prefix: 32,
        }),
        (ClientKeyRule::Address, IpAddr::V6(a)) => Some(ClientKey {
            addr: IpAddr::V6(a),
            prefix: 128,
        }),
        (ClientKeyRule::Prefix(p), IpAddr::V4(a)) if *p <= 32 => Some(ClientKey {
            addr: IpAddr::V4(mask_v4(a, *p)),
            prefix: *p,
        }),
        (ClientKeyRule::Prefix(p), IpAddr::V6(a)) if *p <= 128 => Some(ClientKey {
            addr: IpAddr::V6(mask_v6(a, *p)),
            prefix: *p,
        }),
        (ClientKeyRule::Prefix(_), _) => None,
        (ClientKeyRule::NaturalClass { networks }, IpAddr::V4(a)) => {
            let p = natural_class(a).prefix()?;
            let net = mask_v4(a, p);
            if networks.is_empty() || networks.contains(&net) {
                Some(ClientKey {
                    addr: IpAddr::V4(net),
                    prefix: p,
                })
            } else {
                Some(ClientKey {
                    addr: IpAddr::V4(a),
                    prefix: 32,
                })
            }
        }
        (ClientKeyRule::NaturalClass { .. }, IpAddr::V6(_)) => None,
    }
}

/// A binding change to publish to the other cores.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum StickyEvent {
    /// A new key was bound by this core's deterministic first choice.
    Learned {
        /// Service index (in the snapshot the table was using).
        service: ServiceIdx,
        /// The client key.
        key: ClientKey,
        /// The chosen server.
        server: ServerIdx,
    },
    /// A key was moved because its server went `Down`/`Maint` or was removed.
    Rebound {
        /// Service index.
        service: ServiceIdx,
        /// The client key.
        key: ClientKey,
        /// The previous server (`None` if it was removed by a reload).
        from: Option<ServerIdx>,
        /// The new server.
        to: ServerIdx,
    },
}

impl StickyEvent {
    /// The event in the indices of a new snapshot (`map` from the reload),
    /// or `None` if its service, its key rule or its server is gone: an
    /// event must name the service and server as the snapshot that applies
    /// it does.
    pub fn remap(self, map: &ReloadMap) -> Option<StickyEvent> {
        match self {
            StickyEvent::Learned {
                service,
                key,
                server,
            } => {
                let m = keeps_bindings(map, service)?;
                Some(StickyEvent::Learned {
                    service: m.new_index,
                    key,
                    server: m.server(server)?,
                })
            }
            StickyEvent::Rebound {
                service,
                key,
                from,
                to,
            } => {
                let m = keeps_bindings(map, service)?;
                Some(StickyEvent::Rebound {
                    service: m.new_index,
                    key,
                    from: from.and_then(|f| m.server(f)),
                    to: m.server(to)?,
                })
            }
        }
    }
}

/// How old service `service` maps into the new snapshot, if its bindings
/// carry over: it is still there with the same key rule.
fn keeps_bindings(map: &ReloadMap, service: ServiceIdx) -> Option<&ServiceMap> {
    map.service(service).filter(|m| !m.persistence_changed)
}

/// What to do with a new client of a persistent service.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum StickyDecision {
    /// No persistence applies (service not persistent, or a class D/E source):
    /// use the service's scheduler.
    NotSticky,
    /// Send the connection to `server`.
    Pinned {
        /// The server.
        server: ServerIdx,
        /// The client key.
        key: ClientKey,
        /// Whether the connection now holds a reference on the binding, to be
        /// given back with [`StickyTable::release`] when it ends. `false` when
        /// the table was full and the choice was made without an entry.
        tracked: bool,
    },
    /// Persistence applies but no server can take the client: drop.
    NoServer,
}

/// A binding as shown by `tackctl sticky show`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StickyBinding {
    /// Service index.
    pub service: ServiceIdx,
    /// Client key.
    pub key: ClientKey,
    /// Bound server (`None` after its removal by a reload, until rebound).
    pub server: Option<ServerIdx>,
    /// Open connections using the binding.
    pub active: u32,
    /// When the binding expires if still idle (`None` while connections are open).
    pub idle_expires: Option<Time>,
}

/// What a full table does with a new key.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash)]
pub enum StickyFullPolicy {
    /// Serve the key with its deterministic choice but without an entry
    /// (counted in [`StickyStats::full_bypass`]).
    Bypass,
    /// Remove the idle binding closest to expiry (counted in
    /// [`StickyStats::full_evictions`]); bypass if every binding is in use.
    #[default]
    EvictIdle,
}

/// Configuration of one sticky table.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StickyConfig {
    /// Maximum number of bindings.
    pub capacity: usize,
    /// Full-table policy.
    pub full_policy: StickyFullPolicy,
    /// Timer wheel tick (expiry precision), default 1 s.
    pub tick: Duration,
    /// Hash seed of the table (not of the choice, which is seeded by the
    /// service). `tack` picks a random one at start; tests fix it.
    pub hash_seed: u64,
    /// Maximum number of undrained events (further events are dropped and counted).
    pub outbox_capacity: usize,
}

impl Default for StickyConfig {
    fn default() -> StickyConfig {
        StickyConfig {
            capacity: 1 << 16,
            full_policy: StickyFullPolicy::EvictIdle,
            tick: Duration::from_secs(1),
            hash_seed: 0x7374_6963_6b79_7462,
            outbox_capacity: 1024,
        }
    }
}

/// Why a sticky table cannot be built.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[non_exhaustive]
pub enum StickyTableError {
    /// Capacity 0 or too large.
    #[error("sticky table capacity {0} is out of range")]
    Capacity(usize),
    /// The timer wheel refused the configuration.
    #[error("timer wheel: {0}")]
    Timer(#[from] TimerError),
    /// The allocator refused the table.
    #[error("cannot allocate a sticky table of {0} entries")]
    Alloc(usize),
}

/// Why a binding from another core was not installed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Error)]
#[non_exhaustive]
pub enum InstallError {
    /// The service does not exist in the snapshot.
    #[error("no such service")]
    NoSuchService,
    /// The service has no persistence.
    #[error("service is not persistent")]
    NotPersistent,
    /// The key is not a canonical key of the service's rule.
    #[error("key {0} is not a key of the service's persistence rule")]
    InvalidKey(ClientKey),
    /// The server does not exist.
    #[error("no such server")]
    NoSuchServer,
    /// The server is `Down` or in `Maint`.
    #[error("server is not available")]
    Unavailable,
    /// The table is full of bindings in use.
    #[error("sticky table full")]
    Full,
}

/// Result of a successful install.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum InstallOutcome {
    /// A new binding was created (idle, timer started).
    Created,
    /// The binding already pointed at that server.
    Unchanged,
    /// The binding pointed elsewhere and was replaced.
    Replaced {
        /// The previous server.
        previous: Option<ServerIdx>,
    },
}

/// Counters of one sticky table.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct StickyStats {
    /// New connections that found their binding.
    pub hits: u64,
    /// New keys bound by the deterministic first choice (sticky misses).
    pub learned: u64,
    /// Bindings moved off a `Down`/`Maint`/removed server.
    pub rebinds: u64,
    /// Sources never sticky (class D/E, or a family the rule cannot key).
    pub unsticky: u64,
    /// Persistent clients with no server available.
    pub no_server: u64,
    /// New keys served without an entry because the table was full.
    pub full_bypass: u64,
    /// Idle bindings evicted to make room.
    pub full_evictions: u64,
    /// Bindings removed by their idle timeout.
    pub expired: u64,
    /// Bindings installed from other cores.
    pub installs: u64,
    /// Installs refused.
    pub install_rejected: u64,
    /// Installs that replaced a different local binding.
    pub install_replaced: u64,
    /// Releases that matched no binding in use.
    pub release_unknown: u64,
    /// Bindings removed by flush.
    pub flushed: u64,
    /// Bindings removed by a reload (service gone or rule changed).
    pub reload_removed: u64,
    /// Events dropped because the outbox was full.
    pub events_dropped: u64,
    /// Pending events dropped by a reload that removed their service,
    /// server or key rule (the others are carried over to the new indices).
    pub reload_events_dropped: u64,
    /// Calls naming a service that is not in the snapshot.
    pub invalid_service: u64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct SKey {
    service: u16,
    prefix: u8,
    v6: bool,
    addr: [u8; 16],
}

impl SKey {
    fn new(service: ServiceIdx, key: &ClientKey) -> SKey {
        let (v6, addr) = match key.addr {
            IpAddr::V4(a) => {
                let mut b = [0u8; 16];
                b[..4].copy_from_slice(&a.octets());
                (false, b)
            }
            IpAddr::V6(a) => (true, a.octets()),
        };
        SKey {
            service,
            prefix: key.prefix,
            v6,
            addr,
        }
    }

    fn client_key(&self) -> ClientKey {
        let addr = if self.v6 {
            IpAddr::V6(Ipv6Addr::from(self.addr))
        } else {
            IpAddr::V4(Ipv4Addr::new(
                self.addr[0],
                self.addr[1],
                self.addr[2],
                self.addr[3],
            ))
        };
        ClientKey {
            addr,
            prefix: self.prefix,
        }
    }

    fn hash(&self, seed: u64) -> u64 {
        // Two whole 16-byte words (see crate::sched::hash).
        let meta =
            u128::from(self.service) | u128::from(self.prefix) << 16 | u128::from(self.v6) << 24;
        let mut b = [0u8; 32];
        b[..16].copy_from_slice(&self.addr);
        b[16..].copy_from_slice(&meta.to_ne_bytes());
        hash::bytes_hash(seed, &b)
    }
}

#[derive(Debug, Clone, Copy)]
struct SEntry {
    key: SKey,
    server: u16,
    active: u32,
    id: u32,
    /// Idle expiry (meaningful when `active == 0`).
    expires: u64,
}

const _: () = assert!(core::mem::size_of::<SEntry>() <= 48);

/// A per-core sticky table (see the module documentation).
pub struct StickyTable {
    table: HashTable<SEntry>,
    free: Vec<u32>,
    /// Timer per binding id; the payload is the binding's hash.
    wheel: TimerWheel<u64>,
    capacity: usize,
    policy: StickyFullPolicy,
    seed: u64,
    events: Vec<StickyEvent>,
    outbox_capacity: usize,
    /// Counters.
    pub stats: StickyStats,
}

impl fmt::Debug for StickyTable {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("StickyTable")
            .field("bindings", &self.table.len())
            .field("capacity", &self.capacity)
            .field("stats", &self.stats)
            .finish()
    }
}

/// The deterministic first choice for `key` in service `entry`.
pub fn first_choice(entry: &ServiceEntry, key: &ClientKey) -> Option<ServerIdx> {
    hrw::pick(
        entry.eligible(),
        hash::client_key_hash(entry.seed(), key.addr, key.prefix),
    )
}

/// Where a binding to `from` goes when `from` cannot keep it: its backup if
/// configured and `Up`, else the deterministic choice over live servers.
fn rebind_target(entry: &ServiceEntry, from: u16, key: &ClientKey) -> Option<ServerIdx> {
    if let Some(b) = entry.server(from).and_then(|s| s.backup)
        && entry.server(b).is_some_and(|s| s.state == ServerState::Up)
    {
        return Some(b);
    }
    first_choice(entry, key)
}

fn timeout_ns(entry: &ServiceEntry) -> Option<u64> {
    entry
        .spec()
        .persistence
        .as_ref()
        .map(|p| u64::from(p.timeout_minutes).saturating_mul(60_000_000_000))
}

impl StickyTable {
    /// A table per `cfg` with its clock starting at `now`. Allocates all memory.
    pub fn new(cfg: StickyConfig, now: Time) -> Result<StickyTable, StickyTableError> {
        if cfg.capacity == 0 || cfg.capacity > (u32::MAX / 4) as usize {
            return Err(StickyTableError::Capacity(cfg.capacity));
        }
        let wheel = TimerWheel::new(cfg.capacity, cfg.tick, now)?;
        let seed = cfg.hash_seed;
        let mut table = HashTable::new();
        // Twice the capacity: hashbrown then cleans deleted slots in place
        // instead of growing (see crate::conn).
        table
            .try_reserve(cfg.capacity * 2, |e: &SEntry| e.key.hash(seed))
            .map_err(|_| StickyTableError::Alloc(cfg.capacity))?;
        let free = id_stack(cfg.capacity).ok_or(StickyTableError::Alloc(cfg.capacity))?;
        let mut events = Vec::new();
        events
            .try_reserve_exact(cfg.outbox_capacity)
            .map_err(|_| StickyTableError::Alloc(cfg.capacity))?;
        Ok(StickyTable {
            table,
            free,
            wheel,
            capacity: cfg.capacity,
            policy: cfg.full_policy,
            seed,
            events,
            outbox_capacity: cfg.outbox_capacity,
            stats: StickyStats::default(),
        })
    }

    fn hash_of(&self, id: u32) -> u64 {
        self.wheel.payload(id).copied().unwrap_or(0)
    }

    fn set_hash(&mut self, id: u32, h: u64) {
        if let Some(p) = self.wheel.payload_mut(id) {
            *p = h;
        }
    }

    /// Number of bindings.
    pub fn len(&self) -> usize {
        self.table.len()
    }

    /// Whether there is no binding.
    pub fn is_empty(&self) -> bool {
        self.table.is_empty()
    }

    /// Maximum number of bindings.
    pub fn capacity(&self) -> usize {
        self.capacity
    }

    fn push_event(&mut self, ev: StickyEvent) {
        if self.events.len() < self.outbox_capacity {
            self.events.push(ev);
        } else {
            self.stats.events_dropped += 1;
        }
    }

    /// Takes the pending events (for the control thread).
    pub fn drain_events(&mut self) -> std::vec::Drain<'_, StickyEvent> {
        self.events.drain(..)
    }

    /// Pending events, not yet drained.
    pub fn pending_events(&self) -> &[StickyEvent] {
        &self.events
    }

    fn key_of(
        cfg: &Config,
        service: ServiceIdx,
        src: IpAddr,
    ) -> Result<Option<(&ServiceEntry, ClientKey)>, ()> {
        let entry = cfg.entry(service).ok_or(())?;
        let Some(p) = &entry.spec().persistence else {
            return Ok(None);
        };
        Ok(client_key(&p.key, src).map(|k| (entry, k)))
    }

    /// Decides the server for a new connection from `src` to `service`. For a
    /// [`StickyDecision::Pinned`] result with `tracked`, the connection holds
    /// a reference on the binding until [`StickyTable::release`].
    pub fn resolve(
        &mut self,
        cfg: &Config,
        service: ServiceIdx,
        src: IpAddr,
        now: Time,
    ) -> StickyDecision {
        let (entry, key) = match Self::key_of(cfg, service, src) {
            Err(()) => {
                self.stats.invalid_service += 1;
                return StickyDecision::NoServer;
            }
            Ok(None) => {
                if cfg
                    .entry(service)
                    .is_some_and(|e| e.spec().persistence.is_some())
                {
                    self.stats.unsticky += 1;
                }
                return StickyDecision::NotSticky;
            }
            Ok(Some(x)) => x,
        };
        let sk = SKey::new(service, &key);
        let h = sk.hash(self.seed);
        if let Some(e) = self.table.find_mut(h, |e| e.key == sk) {
            let cur = e.server;
            if entry.server(cur).is_some_and(|s| s.state.keeps_clients()) {
                e.active = e.active.saturating_add(1);
                self.stats.hits += 1;
                return StickyDecision::Pinned {
                    server: cur,
                    key,
                    tracked: true,
                };
            }
            let Some(to) = rebind_target(entry, cur, &key) else {
                self.stats.no_server += 1;
                return StickyDecision::NoServer;
            };
            e.server = to;
            e.active = e.active.saturating_add(1);
            self.stats.rebinds += 1;
            self.push_event(StickyEvent::Rebound {
                service,
                key,
                from: (cur != NO_SERVER).then_some(cur),
                to,
            });
            return StickyDecision::Pinned {
                server: to,
                key,
                tracked: true,
            };
        }
        let Some(server) = first_choice(entry, &key) else {
            self.stats.no_server += 1;
            return StickyDecision::NoServer;
        };
        let tracked = self.make_room(now) && self.insert(sk, h, server, 1, u64::MAX).is_some();
        if tracked {
            self.stats.learned += 1;
            self.push_event(StickyEvent::Learned {
                service,
                key,
                server,
            });
        } else {
            self.stats.full_bypass += 1;
        }
        StickyDecision::Pinned {
            server,
            key,
            tracked,
        }
    }

    /// Ensures one free slot, evicting an idle binding if the policy allows.
    fn make_room(&mut self, now: Time) -> bool {
        if self.table.len() < self.capacity && !self.free.is_empty() {
            return true;
        }
        if self.policy == StickyFullPolicy::Bypass {
            return false;
        }
        // Idle bindings are the armed ones; bindings in use may still hold a
        // stale timer (lazy), which is dropped on the way.
        for _ in 0..8 {
            let Some(id) = self.wheel.earliest() else {
                return false;
            };
            let h = self.hash_of(id);
            let Some(e) = self.table.find(h, |e| e.id == id).copied() else {
                self.wheel.disarm(id);
                continue;
            };
            if e.active > 0 {
                self.wheel.disarm(id);
                continue;
            }
            if e.expires <= now.as_nanos() {
                self.stats.expired += 1;
            } else {
                self.stats.full_evictions += 1;
            }
            self.remove_id(id);
            return true;
        }
        false
    }

    fn insert(&mut self, key: SKey, h: u64, server: u16, active: u32, expires: u64) -> Option<u32> {
        let id = self.free.pop()?;
        let seed = self.seed;
        self.table.insert_unique(
            h,
            SEntry {
                key,
                server,
                active,
                id,
                expires,
            },
            |e| e.key.hash(seed),
        );
        self.set_hash(id, h);
        if active == 0 {
            let _ = self.wheel.arm(id, Time(expires));
        }
        Some(id)
    }

    fn remove_id(&mut self, id: u32) -> Option<SEntry> {
        let h = *self.wheel.payload(id)?;
        let e = self.table.find_entry(h, |e| e.id == id).ok()?.remove().0;
        self.wheel.disarm(id);
        self.free.push(id);
        Some(e)
    }

    /// Gives back the reference a connection from `src` held on its binding
    /// (call when a connection that got a tracked [`StickyDecision::Pinned`]
    /// ends). When the last reference goes, the idle timer starts.
    pub fn release(&mut self, cfg: &Config, service: ServiceIdx, src: IpAddr, now: Time) {
        match Self::key_of(cfg, service, src) {
            Ok(Some((entry, key))) => {
                let t = timeout_ns(entry).unwrap_or(0);
                self.release_key(service, &key, t, now);
            }
            Err(()) => self.stats.invalid_service += 1,
            Ok(None) => self.stats.release_unknown += 1,
        }
    }

    fn release_key(&mut self, service: ServiceIdx, key: &ClientKey, timeout: u64, now: Time) {
        let sk = SKey::new(service, key);
        let h = sk.hash(self.seed);
        let Some(e) = self.table.find_mut(h, |e| e.key == sk) else {
            self.stats.release_unknown += 1;
            return;
        };
        if e.active == 0 {
            self.stats.release_unknown += 1;
            return;
        }
        e.active -= 1;
        if e.active == 0 {
            let expires = now.as_nanos().saturating_add(timeout);
            e.expires = expires;
            let id = e.id;
            // Lazy: an earlier timer still armed will re-arm itself when it fires.
            if self
                .wheel
                .deadline(id)
                .is_none_or(|d| d.as_nanos() > expires)
            {
                let _ = self.wheel.arm(id, Time(expires));
            }
        }
    }

    /// Removes idle bindings whose timeout has passed at `now`, doing at most
    /// `budget` timer operations. Returns how many expired.
    pub fn expire(&mut self, now: Time, budget: usize) -> usize {
        let mut n = 0;
        for _ in 0..budget {
            let Some((id, _)) = self.wheel.pop_expired(now) else {
                break;
            };
            let h = self.hash_of(id);
            let Some(e) = self.table.find(h, |e| e.id == id).copied() else {
                continue;
            };
            if e.active > 0 {
                continue; // In use: stays disarmed until released.
            }
            if e.expires > now.as_nanos() {
                let _ = self.wheel.arm(id, Time(e.expires));
                continue;
            }
            self.remove_id(id);
            self.stats.expired += 1;
            n += 1;
        }
        n
    }

    /// Installs a binding learned elsewhere (another core, another node).
    pub fn install(
        &mut self,
        cfg: &Config,
        service: ServiceIdx,
        key: ClientKey,
        server: ServerIdx,
        now: Time,
    ) -> Result<InstallOutcome, InstallError> {
        let r = self.install_inner(cfg, service, key, server, now);
        match r {
            Ok(InstallOutcome::Replaced { .. }) => {
                self.stats.installs += 1;
                self.stats.install_replaced += 1;
            }
            Ok(_) => self.stats.installs += 1,
            Err(_) => self.stats.install_rejected += 1,
        }
        r
    }

    fn install_inner(
        &mut self,
        cfg: &Config,
        service: ServiceIdx,
        key: ClientKey,
        server: ServerIdx,
        now: Time,
    ) -> Result<InstallOutcome, InstallError> {
        let entry = cfg.entry(service).ok_or(InstallError::NoSuchService)?;
        let p = entry
            .spec()
            .persistence
            .as_ref()
            .ok_or(InstallError::NotPersistent)?;
        if client_key(&p.key, key.addr) != Some(key) {
            return Err(InstallError::InvalidKey(key));
        }
        let s = entry.server(server).ok_or(InstallError::NoSuchServer)?;
        if !s.state.keeps_clients() {
            return Err(InstallError::Unavailable);
        }
        let sk = SKey::new(service, &key);
        let h = sk.hash(self.seed);
        if let Some(e) = self.table.find_mut(h, |e| e.key == sk) {
            if e.server == server {
                return Ok(InstallOutcome::Unchanged);
            }
            let previous = (e.server != NO_SERVER).then_some(e.server);
            e.server = server;
            return Ok(InstallOutcome::Replaced { previous });
        }
        if !self.make_room(now) {
            return Err(InstallError::Full);
        }
        let expires = now
            .as_nanos()
            .saturating_add(timeout_ns(entry).unwrap_or(0));
        self.insert(sk, h, server, 0, expires)
            .ok_or(InstallError::Full)?;
        Ok(InstallOutcome::Created)
    }

    /// The binding of (`service`, `key`), if any.
    pub fn get(&self, service: ServiceIdx, key: &ClientKey) -> Option<StickyBinding> {
        let sk = SKey::new(service, key);
        self.table
            .find(sk.hash(self.seed), |e| e.key == sk)
            .map(binding)
    }

    /// Every binding (for `tackctl sticky show`).
    pub fn iter(&self) -> impl Iterator<Item = StickyBinding> + '_ {
        self.table.iter().map(binding)
    }

    fn remove_where(&mut self, f: impl Fn(&SEntry) -> bool) -> usize {
        let ids: Vec<u32> = self.table.iter().filter(|e| f(e)).map(|e| e.id).collect();
        for &id in &ids {
            self.remove_id(id);
        }
        self.stats.flushed += ids.len() as u64;
        ids.len()
    }

    /// Removes every binding. Connections keep their servers; their releases
    /// later count as [`StickyStats::release_unknown`].
    pub fn flush_all(&mut self) -> usize {
        self.remove_where(|_| true)
    }

    /// Removes the bindings of one service.
    pub fn flush_service(&mut self, service: ServiceIdx) -> usize {
        self.remove_where(|e| e.key.service == service)
    }

    /// Removes one binding; returns whether it existed.
    pub fn flush_key(&mut self, service: ServiceIdx, key: &ClientKey) -> bool {
        let sk = SKey::new(service, key);
        self.remove_where(|e| e.key == sk) == 1
    }

    /// Adopts a new snapshot: bindings follow their service and server to
    /// their new indices; bindings of removed services, or of services whose
    /// key rule changed, are removed; bindings to removed servers are kept
    /// without a server and rebound on their next connection. Pending events
    /// move to the new indices too ([`StickyEvent::remap`]); those that
    /// cannot are dropped and counted. Allocates a scratch list: call at
    /// configuration change only. Returns how many bindings were removed.
    pub fn apply_reload(&mut self, map: &ReloadMap) -> usize {
        if map.is_identity() {
            return 0;
        }
        let all: Vec<SEntry> = self.table.drain().collect();
        let mut removed = 0;
        let seed = self.seed;
        for mut e in all {
            let Some(m) = keeps_bindings(map, e.key.service) else {
                self.wheel.disarm(e.id);
                self.free.push(e.id);
                removed += 1;
                continue;
            };
            e.key.service = m.new_index;
            e.server = m.server(e.server).unwrap_or(NO_SERVER);
            let h = e.key.hash(seed);
            self.set_hash(e.id, h);
            self.table.insert_unique(h, e, |x| x.key.hash(seed));
        }
        self.stats.reload_removed += removed as u64;
        let before = self.events.len();
        self.events
            .retain_mut(|ev| ev.remap(map).map(|n| *ev = n).is_some());
        self.stats.reload_events_dropped += (before - self.events.len()) as u64;
        removed
    }
}

fn binding(e: &SEntry) -> StickyBinding {
    StickyBinding {
        service: e.key.service,
        key: e.key.client_key(),
        server: (e.server != NO_SERVER).then_some(e.server),
        active: e.active,
        idle_expires: (e.active == 0).then_some(Time(e.expires)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys() {
        let nc = ClientKeyRule::NaturalClass { networks: vec![] };
        let k = |s: &str| client_key(&nc, s.parse().unwrap());
        assert_eq!(k("172.16.1.5"), k("172.16.200.9"));
        assert_eq!(k("172.16.1.5").unwrap().to_string(), "172.16.0.0/16");
        assert_eq!(k("11.1.2.3").unwrap().to_string(), "11.0.0.0/8");
        assert_eq!(k("198.18.5.77").unwrap().to_string(), "198.18.5.0/24");
        assert_eq!(k("224.1.1.1"), None);
        assert_eq!(k("240.0.0.1"), None);
        assert_eq!(k("::1"), None);
        let limited = ClientKeyRule::NaturalClass {
            networks: vec![Ipv4Addr::new(172, 16, 0, 0)],
        };
        assert_eq!(
            client_key(&limited, "172.16.9.9".parse().unwrap())
                .unwrap()
                .prefix,
            16
        );
        assert_eq!(
            client_key(&limited, "172.17.9.9".parse().unwrap())
                .unwrap()
                .to_string(),
            "172.17.9.9/32"
        );
        let p = ClientKeyRule::Prefix(24);
        assert_eq!(
            client_key(&p, "10.1.2.3".parse().unwrap())
                .unwrap()
                .to_string(),
            "10.1.2.0/24"
        );
        assert_eq!(
            client_key(&p, "2001:db8::1".parse().unwrap())
                .unwrap()
                .prefix,
            24
        );
    }
}
