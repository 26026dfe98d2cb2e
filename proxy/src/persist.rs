//! Persistence tables: the application session-ID table (seed 003 claims 1-3,
//! 15, 19-20; seed 001 claim 5) and hash-group persistence (seed 001 claim 12).
//!
//! Both take time as an argument so they are deterministic under test.

use std::num::NonZeroUsize;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use lru::LruCache;

/// Counters of a session table.
#[derive(Debug, Default)]
pub struct SessionStats {
    /// Session IDs learnt from responses.
    pub learnt: AtomicU64,
    /// Requests whose session ID was found.
    pub hits: AtomicU64,
    /// Requests whose session ID was not in the table.
    pub misses: AtomicU64,
    /// Entries found expired.
    pub expired: AtomicU64,
    /// Entries evicted because the table was full.
    pub evicted: AtomicU64,
}

/// Maps application session IDs to servers; bounded (least recently used entries are
/// evicted when full) and with an idle expiry.
#[derive(Debug)]
pub struct SessionTable {
    inner: Mutex<LruCache<Box<str>, Entry>>,
    expire: Duration,
    /// Counters.
    pub stats: SessionStats,
}

#[derive(Debug, Clone, Copy)]
struct Entry {
    server: usize,
    last_used: Instant,
}

impl SessionTable {
    /// A table of at most `capacity` entries expiring after `expire` of disuse.
    pub fn new(capacity: usize, expire: Duration) -> SessionTable {
        let cap = NonZeroUsize::new(capacity.max(1)).unwrap_or(NonZeroUsize::MIN);
        SessionTable {
            inner: Mutex::new(LruCache::new(cap)),
            expire,
            stats: SessionStats::default(),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, LruCache<Box<str>, Entry>> {
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Record that `id` lives on `server` (a new session, or a session that moved).
    pub fn learn(&self, id: &str, server: usize, now: Instant) {
        let mut t = self.lock();
        if let Some(e) = t.get_mut(id) {
            e.server = server;
            e.last_used = now;
            return;
        }
        if t.len() == t.cap().get() {
            self.stats.evicted.fetch_add(1, Ordering::Relaxed);
        }
        t.put(
            id.into(),
            Entry {
                server,
                last_used: now,
            },
        );
        self.stats.learnt.fetch_add(1, Ordering::Relaxed);
    }

    /// The server of `id`, refreshing its use time; expired entries are removed.
    pub fn lookup(&self, id: &str, now: Instant) -> Option<usize> {
        let mut t = self.lock();
        match t.get_mut(id) {
            Some(e) if now.saturating_duration_since(e.last_used) <= self.expire => {
                e.last_used = now;
                self.stats.hits.fetch_add(1, Ordering::Relaxed);
                Some(e.server)
            }
            Some(_) => {
                t.pop(id);
                self.stats.expired.fetch_add(1, Ordering::Relaxed);
                self.stats.misses.fetch_add(1, Ordering::Relaxed);
                None
            }
            None => {
                self.stats.misses.fetch_add(1, Ordering::Relaxed);
                None
            }
        }
    }

    /// The entries, most recently used first (at most `limit`): ID, server,
    /// time since last use. For the admin view.
    pub fn entries(&self, now: Instant, limit: usize) -> Vec<(String, usize, Duration)> {
        self.lock()
            .iter()
            .take(limit)
            .map(|(k, e)| {
                (
                    k.to_string(),
                    e.server,
                    now.saturating_duration_since(e.last_used),
                )
            })
            .collect()
    }

    /// Forget `id`.
    pub fn remove(&self, id: &str) {
        self.lock().pop(id);
    }

    /// Entries held now (expired ones included until touched or evicted).
    pub fn len(&self) -> usize {
        self.lock().len()
    }

    /// Whether the table is empty.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// Hash-group persistence: a fixed array of groups, each pinned to a server, so the
/// table's size does not grow with the number of clients. Entries are lock-free.
#[derive(Debug)]
pub struct HashGroups {
    groups: Vec<AtomicU32>,
    /// Groups (re)assigned to a server.
    pub assignments: AtomicU64,
}

const UNASSIGNED: u32 = 0;

impl HashGroups {
    /// `n` groups, all unassigned.
    pub fn new(n: usize) -> HashGroups {
        HashGroups {
            groups: (0..n.max(1)).map(|_| AtomicU32::new(UNASSIGNED)).collect(),
            assignments: AtomicU64::new(0),
        }
    }

    /// Number of groups.
    pub fn len(&self) -> usize {
        self.groups.len()
    }

    /// Whether there are no groups (never: at least one is made).
    pub fn is_empty(&self) -> bool {
        self.groups.is_empty()
    }

    /// The group of a key hash.
    pub fn group_of(&self, hash: u64) -> usize {
        (hash % self.groups.len() as u64) as usize
    }

    /// The server the group is pinned to, if any.
    pub fn get(&self, group: usize) -> Option<usize> {
        match self.groups[group].load(Ordering::Acquire) {
            UNASSIGNED => None,
            v => Some(v as usize - 1),
        }
    }

    /// Pin `group` to `server` unless another request pinned it to something else
    /// since `seen` was read; returns the server the group ends up with.
    pub fn assign(&self, group: usize, seen: Option<usize>, server: usize) -> usize {
        let old = seen.map_or(UNASSIGNED, |s| s as u32 + 1);
        match self.groups[group].compare_exchange(
            old,
            server as u32 + 1,
            Ordering::AcqRel,
            Ordering::Acquire,
        ) {
            Ok(_) => {
                self.assignments.fetch_add(1, Ordering::Relaxed);
                server
            }
            Err(now) => now as usize - 1,
        }
    }

    /// Groups per server (index = server), for metrics.
    pub fn distribution(&self, servers: usize) -> Vec<usize> {
        let mut d = vec![0; servers];
        for g in &self.groups {
            let v = g.load(Ordering::Relaxed);
            if v != UNASSIGNED && (v as usize - 1) < servers {
                d[v as usize - 1] += 1;
            }
        }
        d
    }
}

/// A stable 64-bit hash of a persistence key (FNV-1a).
pub fn key_hash(data: &[u8]) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for &b in data {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
    }
    h
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn session_ids_learn_match_expire() {
        let t0 = Instant::now();
        let t = SessionTable::new(2, Duration::from_secs(10));
        t.learn("abc", 1, t0);
        assert_eq!(t.lookup("abc", t0 + Duration::from_secs(5)), Some(1));
        // use refreshes the idle timer
        assert_eq!(t.lookup("abc", t0 + Duration::from_secs(14)), Some(1));
        assert_eq!(t.lookup("abc", t0 + Duration::from_secs(25)), None);
        assert_eq!(t.stats.expired.load(Ordering::Relaxed), 1);
        assert!(t.is_empty());
    }

    #[test]
    fn session_table_is_bounded() {
        let t0 = Instant::now();
        let t = SessionTable::new(2, Duration::from_secs(10));
        t.learn("a", 0, t0);
        t.learn("b", 1, t0);
        assert_eq!(t.lookup("a", t0), Some(0));
        t.learn("c", 2, t0);
        assert_eq!(t.len(), 2);
        assert_eq!(t.lookup("b", t0), None, "least recently used evicted");
        assert_eq!(t.lookup("a", t0), Some(0));
        assert_eq!(t.stats.evicted.load(Ordering::Relaxed), 1);
    }

    #[test]
    fn hash_groups_pin_and_race() {
        let g = HashGroups::new(16);
        let grp = g.group_of(key_hash(b"10.1.2.3"));
        assert_eq!(g.get(grp), None);
        assert_eq!(g.assign(grp, None, 3), 3);
        // a second first-binding that raced loses and adopts the winner
        assert_eq!(g.assign(grp, None, 1), 3);
        assert_eq!(g.get(grp), Some(3));
        // re-pin after the server failed
        assert_eq!(g.assign(grp, Some(3), 2), 2);
        assert_eq!(g.distribution(4), vec![0, 0, 1, 0]);
    }
}
