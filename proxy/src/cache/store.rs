//! The page store: responses by URL, each URL with its variants (one per set of
//! values of the request headers its responses vary on), bounded in bytes and
//! evicted least recently used first, a URL with all its variants at a time.

use std::time::{Duration, Instant};

use bytes::Bytes;
use http::StatusCode;
use http::header::{HeaderMap, HeaderName, HeaderValue};

/// Most variants kept per URL (the oldest is replaced).
const MAX_VARIANTS: usize = 8;

/// A stored response.
#[derive(Debug, Clone)]
pub struct Entry {
    /// Status.
    pub status: StatusCode,
    /// Headers (end-to-end ones, without `Content-Length`).
    pub headers: HeaderMap,
    /// The body as sent to the client (rewritten, in the origin's coding).
    pub body: Bytes,
    /// The request headers the response varies on, with their values then.
    pub vary: Vec<(HeaderName, Option<HeaderValue>)>,
    /// When it was stored.
    pub stored: Instant,
    /// Its age when stored (the origin's `Age`).
    pub age: Duration,
    /// How long it is fresh from `stored`.
    pub ttl: Duration,
}

impl Entry {
    /// Bytes charged against the bound.
    pub fn size(&self) -> usize {
        self.body.len()
            + self
                .headers
                .iter()
                .map(|(k, v)| k.as_str().len() + v.len() + 4)
                .sum::<usize>()
            + 64
    }

    /// Fresh at `now`.
    pub fn fresh(&self, now: Instant) -> bool {
        now.duration_since(self.stored) < self.ttl
    }

    /// Whether this variant answers a request with these headers.
    pub fn matches(&self, req: &HeaderMap) -> bool {
        self.vary.iter().all(|(n, v)| {
            let got = req.get(n);
            got == v.as_ref()
        })
    }
}

/// The store's counters (kept under the store's lock, copied out for metrics).
#[derive(Debug, Default, Clone, Copy)]
pub struct Counts {
    /// Entries evicted to stay within the bound.
    pub evictions: u64,
    /// Entries removed by a purge.
    pub purged: u64,
    /// Stale entries dropped when looked up.
    pub expired: u64,
}

/// A byte-bounded LRU of URLs to variants.
#[derive(Debug)]
pub struct Store {
    lru: lru::LruCache<String, Vec<Entry>>,
    bytes: usize,
    max_bytes: usize,
    /// Counters.
    pub counts: Counts,
}

/// One line of the listing: `(url, variants, bytes, age, fresh for)`.
pub type Listed = (String, usize, usize, Duration, Duration);

impl Store {
    /// An empty store holding at most `max_bytes`.
    pub fn new(max_bytes: usize) -> Store {
        Store {
            lru: lru::LruCache::unbounded(),
            bytes: 0,
            max_bytes,
            counts: Counts::default(),
        }
    }

    /// Bytes held.
    pub fn bytes(&self) -> usize {
        self.bytes
    }

    /// URLs held.
    pub fn len(&self) -> usize {
        self.lru.len()
    }

    /// Whether nothing is held.
    pub fn is_empty(&self) -> bool {
        self.lru.is_empty()
    }

    /// The variant of `url` for a request with headers `req`, if fresh (a
    /// stale one found is removed).
    pub fn lookup(&mut self, url: &str, req: &HeaderMap, now: Instant) -> Option<Entry> {
        let vs = self.lru.get_mut(url)?;
        let i = vs.iter().position(|e| e.matches(req))?;
        if vs[i].fresh(now) {
            return Some(vs[i].clone());
        }
        let e = vs.remove(i);
        self.bytes -= e.size();
        self.counts.expired += 1;
        if vs.is_empty() {
            self.lru.pop(url);
        }
        None
    }

    /// Store `e` for `url`, replacing the variant with the same vary values,
    /// then evict least recently used URLs until within the bound. Returns
    /// false (nothing stored) when `e` alone exceeds the bound.
    pub fn insert(&mut self, url: &str, e: Entry) -> bool {
        let size = e.size();
        if size > self.max_bytes {
            return false;
        }
        let vs = self.lru.get_or_insert_mut(url.to_string(), Vec::new);
        let same = |o: &Entry| o.vary == e.vary;
        if let Some(i) = vs.iter().position(same) {
            self.bytes -= vs.remove(i).size();
        } else if vs.len() >= MAX_VARIANTS {
            self.bytes -= vs.remove(0).size();
        }
        vs.push(e);
        self.bytes += size;
        while self.bytes > self.max_bytes {
            if self.lru.peek_lru().is_some_and(|(k, _)| k == url) {
                // Only this URL is left: drop its older variants.
                match self.lru.get_mut(url) {
                    Some(vs) if vs.len() > 1 => {
                        self.bytes -= vs.remove(0).size();
                        self.counts.evictions += 1;
                        continue;
                    }
                    _ => break,
                }
            }
            let Some((_, vs)) = self.lru.pop_lru() else {
                break;
            };
            for v in vs {
                self.bytes -= v.size();
                self.counts.evictions += 1;
            }
        }
        true
    }

    /// Remove every URL equal to `url` (`prefix` false) or starting with it;
    /// a key is `host/path?query`, and `url` may also be a path alone (`/x`,
    /// any host) or carry a scheme (`http://host/x`). Returns the variants removed.
    pub fn purge(&mut self, url: &str, prefix: bool) -> u64 {
        let url = url
            .strip_prefix("http://")
            .or_else(|| url.strip_prefix("https://"))
            .unwrap_or(url);
        let hit = |k: &str| {
            let k = if url.starts_with('/') {
                k.find('/').map(|i| &k[i..]).unwrap_or("")
            } else {
                k
            };
            if prefix { k.starts_with(url) } else { k == url }
        };
        let keys: Vec<String> = self
            .lru
            .iter()
            .map(|(k, _)| k.clone())
            .filter(|k| hit(k))
            .collect();
        let mut n = 0;
        for k in keys {
            if let Some(vs) = self.lru.pop(&k) {
                for v in vs {
                    self.bytes -= v.size();
                    n += 1;
                }
            }
        }
        self.counts.purged += n;
        n
    }

    /// The most recently used `max` URLs.
    pub fn list(&self, now: Instant, max: usize) -> Vec<Listed> {
        self.lru
            .iter()
            .take(max)
            .map(|(k, vs)| {
                let newest = vs.iter().max_by_key(|e| e.stored);
                let (age, left) = newest
                    .map(|e| {
                        let held = now.duration_since(e.stored);
                        (e.age + held, e.ttl.saturating_sub(held))
                    })
                    .unwrap_or_default();
                (
                    k.clone(),
                    vs.len(),
                    vs.iter().map(Entry::size).sum(),
                    age,
                    left,
                )
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn entry(len: usize, vary: Option<&'static str>) -> Entry {
        Entry {
            status: StatusCode::OK,
            headers: HeaderMap::new(),
            body: Bytes::from(vec![b'x'; len]),
            vary: vary
                .map(|v| {
                    vec![(
                        HeaderName::from_static("accept-encoding"),
                        Some(HeaderValue::from_static(v)),
                    )]
                })
                .unwrap_or_default(),
            stored: Instant::now(),
            age: Duration::ZERO,
            ttl: Duration::from_secs(60),
        }
    }

    #[test]
    fn variants_purge_and_expiry() {
        let mut s = Store::new(10_000);
        let now = Instant::now();
        assert!(s.insert("h/a", entry(10, Some("gzip"))));
        assert!(s.insert("h/a", entry(10, Some("br"))));
        let mut req = HeaderMap::new();
        req.insert("accept-encoding", HeaderValue::from_static("br"));
        assert!(
            matches!(s.lookup("h/a", &req, now), Some(e) if e.vary[0].1.as_ref().unwrap() == "br")
        );
        req.insert("accept-encoding", HeaderValue::from_static("zstd"));
        assert!(s.lookup("h/a", &req, now).is_none());
        s.insert("h/ab", entry(10, None));
        s.insert("g/a", entry(10, None));
        assert_eq!(s.purge("/a", false), 3, "a path purges on every host");
        assert_eq!(s.purge("http://h/", true), 1);
        assert!(s.is_empty());
        assert_eq!(s.bytes(), 0);
        s.insert("h/old", entry(10, None));
        let later = now + Duration::from_secs(61);
        assert!(s.lookup("h/old", &HeaderMap::new(), later).is_none());
        assert_eq!((s.len(), s.bytes(), s.counts.expired), (0, 0, 1));
        assert!(!s.insert("h/huge", entry(20_000, None)));
    }

    proptest! {
        /// Whatever is inserted, looked up and purged, the bytes held equal the
        /// sum of the entries' sizes and never exceed the bound, and the most
        /// recent insertion that fits is kept.
        #[test]
        fn bound_holds(ops in proptest::collection::vec((0u8..3, 0usize..12, 0usize..3000, any::<bool>()), 1..200)) {
            let mut s = Store::new(8_000);
            let now = Instant::now();
            for (op, key, len, br) in ops {
                let url = format!("h/{key}");
                match op {
                    0 => {
                        let stored = s.insert(&url, entry(len, Some(if br { "br" } else { "gzip" })));
                        if stored {
                            let mut req = HeaderMap::new();
                            req.insert("accept-encoding", HeaderValue::from_static(if br { "br" } else { "gzip" }));
                            prop_assert!(s.lookup(&url, &req, now).is_some());
                        }
                    }
                    1 => { let _ = s.lookup(&url, &HeaderMap::new(), now); }
                    _ => { s.purge(&url, br); }
                }
                prop_assert!(s.bytes() <= 8_000);
                let sum: usize = s.lru.iter().flat_map(|(_, vs)| vs.iter().map(Entry::size)).sum();
                prop_assert_eq!(sum, s.bytes());
            }
        }
    }
}
