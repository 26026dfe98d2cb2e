//! The table: construction, lookups in bursts, packets on known connections.

use super::*;

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
pub(super) struct Meta {
    pub(super) fwd_hash: u64,
    pub(super) rev_hash: u64,
    pub(super) generation: u8,
    pub(super) has_reply: bool,
    pub(super) live: bool,
}

/// A per-core connection table for one address family (see the module docs).
pub struct ConnTable<K: FlowKey> {
    pub(super) table: HashTable<Entry<K>>,
    pub(super) free: Vec<u32>,
    pub(super) wheel: TimerWheel<Meta>,
    pub(super) capacity: usize,
    pub(super) timeouts: [u64; STATES],
    pub(super) policy: FullPolicy,
    pub(super) seed: u64,
    /// Address just past bucket 0's entry, where the control bytes start
    /// (0 until the first insert shows it): prefetch addresses are computed
    /// from it.
    pub(super) base: usize,
    /// A byte whose address anchors the prefetch arithmetic.
    pub(super) anchor: u8,
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
    pub(super) fn meta(&self, id: u32) -> Meta {
        self.wheel.payload(id).copied().unwrap_or_default()
    }

    #[inline]
    pub(super) fn set_meta(&mut self, id: u32, m: Meta) {
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
                if K::SELF_CONTAINED_REPLIES && c.reply_expiry_ns() != 0 {
                    c.set_reply_expiry_ns(rebase(c.reply_expiry_ns(), c.state));
                }
                continue;
            }
            c.set_expiry_ns(rebase(c.expiry_ns(), c.state));
            // The forward entry's expiry is at most the connection's, so a
            // timer at it is never late; one that fires early re-arms.
            if wheel
                .deadline(c.id)
                .is_some_and(|d| c.expiry_ns() < d.as_nanos())
            {
                let _ = wheel.arm(c.id, Time(c.expiry_ns()));
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
    pub(super) fn resolve(&self, hash: u64, key: &K) -> Option<Handle> {
        let b = self.table.find_bucket_index(hash, |e| e.key == *key)?;
        self.handle_at(hash, b)
    }

    /// The bucket of the entry (forward or reply) with key `key`, of hash
    /// `hash`, trying its likeliest buckets first.
    #[inline(always)]
    pub(super) fn find_key(&self, key: &K, hash: u64) -> Option<usize> {
        self.find_from(self.first_bucket(hash), hash, |e| e.key == *key)
    }

    /// The handle for the entry in bucket `b` (whose hash is `hash`),
    /// following a reply entry to its connection.
    #[inline]
    pub(super) fn handle_at(&self, hash: u64, b: usize) -> Option<Handle> {
        match self.probe_at(hash, b) {
            Probe::Miss => None,
            Probe::Hit(h) => Some(h),
            Probe::Reply(r) => self.reply_handle(r),
        }
    }

    /// What bucket `b`, found for a key of hash `hash`, holds: a
    /// connection's forward entry or a reply entry.
    #[inline]
    pub(super) fn probe_at(&self, hash: u64, b: usize) -> Probe {
        let Some(e) = self.table.get_bucket(b) else {
            return Probe::Miss;
        };
        if e.c.is_reply() {
            return Probe::Reply(ReplyRef {
                hash: if K::SELF_CONTAINED_REPLIES {
                    0
                } else {
                    e.c.forward_hash()
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
    pub(super) fn reply_handle(&self, r: ReplyRef) -> Option<Handle> {
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
    pub(super) fn locate_reply(&self, id: u32, generation: u8, hint: usize) -> Option<usize> {
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
    pub(super) fn expiry_of(&self, c: &Conn) -> u64 {
        if K::SELF_CONTAINED_REPLIES
            && let Some(rb) = self.locate_reply(c.id, c.generation, usize::MAX)
            && let Some(r) = self.table.get_bucket(rb)
        {
            return c.expiry_ns().max(r.c.reply_expiry_ns());
        }
        c.expiry_ns()
    }

    /// The first bucket of `hash`'s probe sequence (hashbrown's `h1`), where
    /// most entries sit at the load this table keeps.
    #[inline(always)]
    pub(super) fn first_bucket(&self, hash: u64) -> usize {
        (hash as usize) & self.table.num_buckets().wrapping_sub(1)
    }

    /// The bucket of the entry of hash `hash` that `eq` accepts, trying
    /// bucket `first` (the likeliest: prefetched, or remembered) and the
    /// one after it before probing the control groups in full.
    #[inline(always)]
    pub(super) fn find_from(
        &self,
        first: usize,
        hash: u64,
        eq: impl Fn(&Entry<K>) -> bool,
    ) -> Option<usize> {
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
    pub(super) fn prefetch_bucket(&self, hash: u64) {
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
    pub(super) fn entry_addr(&self, i: usize) -> usize {
        self.base
            .wrapping_sub((i + 1) * core::mem::size_of::<Entry<K>>())
    }

    /// Remembers where bucket `b`, holding `e`, lies: the bucket array ends
    /// (and the control bytes start) `(b + 1)` entries after it.
    #[inline]
    pub(super) fn learn_base(&mut self, b: usize, e: *const Entry<K>) {
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
            user_flags: e.c.user_flags,
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
            e.c.set_reply_expiry_ns(now.as_nanos().saturating_add(t));
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
    pub(super) fn locate(&self, h: &Handle) -> Option<usize> {
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
        let shorter = expires < c.expiry_ns();
        c.set_expiry_ns(expires);
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
    pub(super) fn transition(
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
        let mut armed = c.expiry_ns();
        c.state = new as u8;
        c.set_expiry_ns(expires);
        let (id, generation) = (c.id, c.generation);
        if K::SELF_CONTAINED_REPLIES
            && new as u8 != old
            && let Some(rb) = self.locate_reply(id, generation, usize::MAX)
            && let Some(r) = self.table.get_bucket_mut(rb)
        {
            // The reply entry follows the state, and its expiry (which the
            // timer may be armed for) gives way to the one just set.
            armed = armed.max(r.c.reply_expiry_ns());
            r.c.state = new as u8;
            r.c.set_reply_expiry_ns(0);
        }
        if expires < armed {
            // A shorter timeout applies at once. Cannot fail: ids are below
            // the wheel's capacity.
            let _ = self.wheel.arm(id, Time(expires));
            self.stats.eager_rearms += 1;
        }
        Some(new)
    }
}
