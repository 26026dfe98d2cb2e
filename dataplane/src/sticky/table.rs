//! The table: bounded, timer-wheel expiry, deterministic first choice, rebinding.

use super::*;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct SKey {
    pub(super) service: ServiceIdx,
    pub(super) prefix: u8,
    pub(super) v6: bool,
    pub(super) addr: [u8; 16],
}

impl SKey {
    pub(super) fn new(service: ServiceIdx, key: &ClientKey) -> SKey {
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

    pub(super) fn client_key(&self) -> ClientKey {
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

    pub(super) fn hash(&self, seed: u64) -> u64 {
        // Two whole 16-byte words (see crate::sched::hash).
        let meta =
            u128::from(self.service.0) | u128::from(self.prefix) << 16 | u128::from(self.v6) << 24;
        let mut b = [0u8; 32];
        b[..16].copy_from_slice(&self.addr);
        b[16..].copy_from_slice(&meta.to_ne_bytes());
        hash::bytes_hash(seed, &b)
    }
}

#[derive(Debug, Clone, Copy)]
pub(super) struct SEntry {
    pub(super) key: SKey,
    pub(super) server: ServerIdx,
    pub(super) active: u32,
    pub(super) id: u32,
    /// Idle expiry (meaningful when `active == 0`).
    pub(super) expires: u64,
}

/// A per-core sticky table (see the module documentation).
pub struct StickyTable {
    pub(super) table: HashTable<SEntry>,
    pub(super) free: Vec<u32>,
    /// Timer per binding id; the payload is the binding's hash.
    pub(super) wheel: TimerWheel<u64>,
    pub(super) capacity: usize,
    pub(super) policy: StickyFullPolicy,
    pub(super) seed: u64,
    pub(super) events: Vec<StickyEvent>,
    pub(super) outbox_capacity: usize,
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
pub(super) fn rebind_target(
    entry: &ServiceEntry,
    from: ServerIdx,
    key: &ClientKey,
) -> Option<ServerIdx> {
    if let Some(b) = entry.server(from).and_then(|s| s.backup)
        && entry.server(b).is_some_and(|s| s.state == ServerState::Up)
    {
        return Some(b);
    }
    first_choice(entry, key)
}

pub(super) fn timeout_ns(entry: &ServiceEntry) -> Option<u64> {
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

    pub(super) fn hash_of(&self, id: u32) -> u64 {
        self.wheel.payload(id).copied().unwrap_or(0)
    }

    pub(super) fn set_hash(&mut self, id: u32, h: u64) {
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

    pub(super) fn push_event(&mut self, ev: StickyEvent) {
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

    pub(super) fn key_of(
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
    pub(super) fn make_room(&mut self, now: Time) -> bool {
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

    pub(super) fn insert(
        &mut self,
        key: SKey,
        h: u64,
        server: ServerIdx,
        active: u32,
        expires: u64,
    ) -> Option<u32> {
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

    pub(super) fn remove_id(&mut self, id: u32) -> Option<SEntry> {
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

    pub(super) fn release_key(
        &mut self,
        service: ServiceIdx,
        key: &ClientKey,
        timeout: u64,
        now: Time,
    ) {
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

    pub(super) fn install_inner(
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

    pub(super) fn remove_where(&mut self, f: impl Fn(&SEntry) -> bool) -> usize {
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

pub(super) fn binding(e: &SEntry) -> StickyBinding {
    StickyBinding {
        service: e.key.service,
        key: e.key.client_key(),
        server: (e.server != NO_SERVER).then_some(e.server),
        active: e.active,
        idle_expires: (e.active == 0).then_some(Time(e.expires)),
    }
}
