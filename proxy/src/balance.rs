//! Per-request scheduling: HAProxy's `balance` algorithms and `hash-type`.
//!
//! The balancer is pure: it is given the servers, a view of which can take the
//! request, and the request's hash input, and returns a server index. Server state
//! and load live in [`crate::backend`].

use std::borrow::Cow;
use std::net::IpAddr;
use std::sync::Mutex;

use md5::{Digest, Md5};

use crate::config::{Balance, HashType};

/// What the balancer needs to know about one server.
pub trait Candidate {
    /// Configured weight.
    fn weight(&self) -> u32;
    /// Requests in flight (for leastconn and random draws).
    fn load(&self) -> u32;
}

/// Header lookup over whatever holds a request's headers: a `HeaderMap` (hyper
/// path) or a head parsed in place (fast path).
pub trait HeaderLookup {
    /// The first value of the header `name` (case-insensitive).
    fn header(&self, name: &str) -> Option<&[u8]>;
}

impl HeaderLookup for http::HeaderMap {
    fn header(&self, name: &str) -> Option<&[u8]> {
        self.get(name).map(|v| v.as_bytes())
    }
}

/// A header value as text when it holds only visible ASCII, spaces and tabs (the
/// rule of `http::HeaderValue::to_str`).
pub fn visible_str(v: &[u8]) -> Option<&str> {
    if v.iter().all(|&b| b == b'\t' || (0x20..0x7f).contains(&b)) {
        std::str::from_utf8(v).ok()
    } else {
        None
    }
}

/// The parts of a request hash-based algorithms read.
#[derive(Clone, Copy)]
pub struct RequestView<'a> {
    /// Client address.
    pub source: IpAddr,
    /// Request target as received (origin form, or absolute form for proxies/h2).
    pub uri: &'a str,
    /// Headers.
    pub headers: &'a (dyn HeaderLookup + Sync),
}

impl std::fmt::Debug for RequestView<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RequestView")
            .field("source", &self.source)
            .field("uri", &self.uri)
            .finish_non_exhaustive()
    }
}

/// HAProxy's default hash function for map-based hashing (`sdbm`).
pub fn sdbm(data: &[u8]) -> u32 {
    let mut h: u32 = 0;
    for &c in data {
        h = u32::from(c)
            .wrapping_add(h << 6)
            .wrapping_add(h << 16)
            .wrapping_sub(h);
    }
    h
}

/// libketama's point hash: the first 4 bytes of MD5, little-endian.
pub fn ketama_hash(data: &[u8]) -> u32 {
    let d = Md5::digest(data);
    u32::from_le_bytes([d[0], d[1], d[2], d[3]])
}

/// A ketama-compatible continuum: each server gets `floor(40 * n * w / W)` MD5
/// digests of `"<key>-<i>"`, each yielding 4 points, exactly as libketama
/// (`ketama_create_continuum`) builds it, so clients that hash with libketama agree
/// on which server owns a key when the server keys are the same.
#[derive(Debug, Clone)]
pub struct Ring {
    points: Vec<(u32, usize)>,
}

impl Ring {
    /// Build the continuum over `(key, weight)` pairs (zero weights get no points).
    pub fn new(servers: &[(String, u32)]) -> Ring {
        let total: u64 = servers.iter().map(|s| u64::from(s.1)).sum();
        let n = servers.iter().filter(|s| s.1 > 0).count() as u64;
        let mut points = Vec::new();
        if total > 0 {
            for (idx, (key, w)) in servers.iter().enumerate() {
                if *w == 0 {
                    continue;
                }
                let pct = f64::from(*w) / total as f64;
                let ks = (pct * 40.0 * n as f64).floor() as u64;
                for k in 0..ks.max(1) {
                    let d = Md5::digest(format!("{key}-{k}").as_bytes());
                    for h in 0..4 {
                        let p = u32::from_le_bytes([
                            d[h * 4],
                            d[h * 4 + 1],
                            d[h * 4 + 2],
                            d[h * 4 + 3],
                        ]);
                        points.push((p, idx));
                    }
                }
            }
        }
        points.sort_unstable();
        Ring { points }
    }

    /// The first server at or after `hash` on the continuum (wrapping) that `ok` accepts.
    pub fn lookup(&self, hash: u32, ok: impl Fn(usize) -> bool) -> Option<usize> {
        if self.points.is_empty() {
            return None;
        }
        let start = self.points.partition_point(|p| p.0 < hash);
        let n = self.points.len();
        (0..n)
            .map(|i| self.points[(start + i) % n].1)
            .find(|&s| ok(s))
    }

    /// Number of points (for tests and metrics).
    pub fn len(&self) -> usize {
        self.points.len()
    }

    /// Whether the ring has no points.
    pub fn is_empty(&self) -> bool {
        self.points.is_empty()
    }
}

/// A backend's scheduler.
#[derive(Debug)]
pub struct Balancer {
    algo: Balance,
    hash_type: HashType,
    ring: Option<Ring>,
    rr: Mutex<RrState>,
}

#[derive(Debug, Default)]
struct RrState {
    current: Vec<i64>,
    next_lc: usize,
}

impl Balancer {
    /// A balancer for servers with these ring keys and weights.
    pub fn new(algo: Balance, hash_type: HashType, ring_keys: &[(String, u32)]) -> Balancer {
        let hashing = algo.is_hash();
        let ring = (hashing && hash_type == HashType::Consistent).then(|| Ring::new(ring_keys));
        Balancer {
            algo,
            hash_type,
            ring,
            rr: Mutex::new(RrState {
                current: vec![0; ring_keys.len()],
                next_lc: 0,
            }),
        }
    }

    /// The configured algorithm.
    pub fn algorithm(&self) -> &Balance {
        &self.algo
    }

    /// Pick a server for a request. `usable(i)` says whether server `i` may take a
    /// new load-balanced request; `prefer(i)` whether it has a free slot (non-hash
    /// algorithms avoid full servers when another is free, as HAProxy's do).
    pub fn pick<C: Candidate>(
        &self,
        servers: &[C],
        req: &RequestView<'_>,
        usable: impl Fn(usize) -> bool,
        prefer: impl Fn(usize) -> bool,
    ) -> Option<usize> {
        if let Some(key) = self.hash_input(req) {
            return self.pick_hash(servers, &key, &usable);
        }
        let free = |i: usize| usable(i) && prefer(i) && servers[i].weight() > 0;
        let any = |i: usize| usable(i) && servers[i].weight() > 0;
        let filter: &dyn Fn(usize) -> bool = if (0..servers.len()).any(free) {
            &free
        } else {
            &any
        };
        match &self.algo {
            Balance::Leastconn => self.leastconn(servers, filter),
            Balance::Random { draws } => random_draws(servers, *draws, filter),
            _ => self.roundrobin(servers, filter),
        }
    }

    /// Pick by hash of an arbitrary key (hash-group persistence uses this with its
    /// group number so groups spread by weight).
    pub fn pick_by_hash<C: Candidate>(
        &self,
        servers: &[C],
        key: &[u8],
        usable: impl Fn(usize) -> bool,
    ) -> Option<usize> {
        self.pick_hash(servers, key, &usable)
    }

    fn pick_hash<C: Candidate>(
        &self,
        servers: &[C],
        key: &[u8],
        usable: &dyn Fn(usize) -> bool,
    ) -> Option<usize> {
        match (&self.ring, self.hash_type) {
            (Some(ring), HashType::Consistent) => {
                ring.lookup(ketama_hash(key), |i| usable(i) && servers[i].weight() > 0)
            }
            _ => {
                let total: u64 = (0..servers.len())
                    .filter(|&i| usable(i))
                    .map(|i| u64::from(servers[i].weight()))
                    .sum();
                if total == 0 {
                    return None;
                }
                let mut target = u64::from(sdbm(key)) % total;
                for (i, srv) in servers.iter().enumerate() {
                    if !usable(i) {
                        continue;
                    }
                    let w = u64::from(srv.weight());
                    if target < w {
                        return Some(i);
                    }
                    target -= w;
                }
                None
            }
        }
    }

    /// Smooth weighted round robin (each server gets its share, interleaved).
    fn roundrobin<C: Candidate>(&self, servers: &[C], ok: &dyn Fn(usize) -> bool) -> Option<usize> {
        let mut st = self.rr.lock().unwrap_or_else(|e| e.into_inner());
        if st.current.len() != servers.len() {
            st.current = vec![0; servers.len()];
        }
        let mut total = 0i64;
        let mut best: Option<usize> = None;
        for (i, srv) in servers.iter().enumerate() {
            if !ok(i) {
                continue;
            }
            let w = i64::from(srv.weight());
            st.current[i] += w;
            total += w;
            if best.is_none_or(|b| st.current[i] > st.current[b]) {
                best = Some(i);
            }
        }
        if let Some(b) = best {
            st.current[b] -= total;
        }
        best
    }

    /// Fewest in-flight requests relative to weight; ties rotate.
    fn leastconn<C: Candidate>(&self, servers: &[C], ok: &dyn Fn(usize) -> bool) -> Option<usize> {
        let n = servers.len();
        let start = {
            let mut st = self.rr.lock().unwrap_or_else(|e| e.into_inner());
            st.next_lc = st.next_lc.wrapping_add(1);
            st.next_lc
        };
        let mut best: Option<usize> = None;
        for k in 0..n {
            let i = (start + k) % n;
            if !ok(i) {
                continue;
            }
            best = match best {
                None => Some(i),
                Some(b) if less_loaded(&servers[i], &servers[b]) => Some(i),
                keep => keep,
            };
        }
        best
    }

    /// The bytes a hash algorithm hashes, or `None` for non-hash algorithms and
    /// requests that lack the key (those are round-robined, as in HAProxy).
    pub fn hash_input<'a>(&self, req: &RequestView<'a>) -> Option<Cow<'a, [u8]>> {
        match &self.algo {
            Balance::Source => Some(Cow::Owned(match req.source {
                IpAddr::V4(a) => a.octets().to_vec(),
                IpAddr::V6(a) => match a.to_ipv4_mapped() {
                    Some(v4) => v4.octets().to_vec(),
                    None => a.octets().to_vec(),
                },
            })),
            Balance::Uri {
                whole,
                path_only,
                len,
                depth,
            } => Some(Cow::Borrowed(
                uri_key(req.uri, *whole, *path_only, *len, *depth).as_bytes(),
            )),
            Balance::UrlParam { name } => {
                url_param(req.uri, name).map(|v| Cow::Borrowed(v.as_bytes()))
            }
            Balance::Hdr {
                name,
                use_domain_only,
            } => {
                let v = visible_str(req.headers.header(name.as_str())?)?;
                if *use_domain_only {
                    Some(Cow::Borrowed(domain_only(v).as_bytes()))
                } else {
                    Some(Cow::Borrowed(v.as_bytes()))
                }
            }
            _ => None,
        }
    }
}

fn less_loaded<C: Candidate>(a: &C, b: &C) -> bool {
    // a.load / a.weight < b.load / b.weight without division.
    u64::from(a.load()) * u64::from(b.weight().max(1))
        < u64::from(b.load()) * u64::from(a.weight().max(1))
}

fn random_draws<C: Candidate>(
    servers: &[C],
    draws: u32,
    ok: &dyn Fn(usize) -> bool,
) -> Option<usize> {
    let cands: Vec<usize> = (0..servers.len()).filter(|&i| ok(i)).collect();
    let total: u64 = cands.iter().map(|&i| u64::from(servers[i].weight())).sum();
    if total == 0 {
        return None;
    }
    let mut best: Option<usize> = None;
    for _ in 0..draws.max(1) {
        let mut r = fastrand::u64(0..total);
        let mut pick = cands[0];
        for &i in &cands {
            let w = u64::from(servers[i].weight());
            if r < w {
                pick = i;
                break;
            }
            r -= w;
        }
        best = match best {
            Some(b) if !less_loaded(&servers[pick], &servers[b]) => Some(b),
            _ => Some(pick),
        };
    }
    best
}

impl Balance {
    /// Whether the algorithm hashes a request attribute.
    pub fn is_hash(&self) -> bool {
        matches!(
            self,
            Balance::Source | Balance::Uri { .. } | Balance::UrlParam { .. } | Balance::Hdr { .. }
        )
    }
}

/// The part of the URI HAProxy's `balance uri` hashes.
pub fn uri_key(uri: &str, whole: bool, path_only: bool, len: usize, depth: usize) -> &str {
    let mut u = uri;
    if path_only && let Some(p) = u.find("://") {
        let after = &u[p + 3..];
        u = after.find('/').map(|i| &after[i..]).unwrap_or("/");
    }
    let bytes = u.as_bytes();
    let limit = if len > 0 {
        len.min(bytes.len())
    } else {
        bytes.len()
    };
    let mut slashes = 0;
    let mut end = 0;
    while end < limit {
        let c = bytes[end];
        if c == b'/' {
            slashes += 1;
            if depth > 0 && slashes == depth + 1 {
                break;
            }
        } else if c == b'?' && !whole {
            break;
        }
        end += 1;
    }
    &u[..end]
}

/// Value of a query parameter (first occurrence, undecoded, as HAProxy hashes it).
pub fn url_param<'a>(uri: &'a str, name: &str) -> Option<&'a str> {
    let q = &uri[uri.find('?')? + 1..];
    let q = q.split('#').next().unwrap_or(q);
    q.split(['&', ';']).find_map(|kv| {
        let (k, v) = kv.split_once('=')?;
        (k == name).then_some(v)
    })
}

/// HAProxy's `use_domain_only`: the domain-significant part of a host name
/// (`www.example.com` → `example`).
pub fn domain_only(host: &str) -> &str {
    let host = host.split(':').next().unwrap_or(host);
    let parts: Vec<&str> = host.split('.').collect();
    if parts.len() >= 2 {
        parts[parts.len() - 2]
    } else {
        host
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    struct S(u32, u32);
    impl Candidate for S {
        fn weight(&self) -> u32 {
            self.0
        }
        fn load(&self) -> u32 {
            self.1
        }
    }

    fn view<'a>(uri: &'a str, h: &'a http::HeaderMap) -> RequestView<'a> {
        RequestView {
            source: "10.0.0.1".parse().unwrap(),
            uri,
            headers: h,
        }
    }

    #[test]
    fn uri_depth_len_whole() {
        assert_eq!(uri_key("/a/b/c?x=1", false, false, 0, 0), "/a/b/c");
        assert_eq!(uri_key("/a/b/c?x=1", true, false, 0, 0), "/a/b/c?x=1");
        assert_eq!(uri_key("/a/b/c", false, false, 0, 1), "/a");
        assert_eq!(uri_key("/a/b/c", false, false, 0, 2), "/a/b");
        assert_eq!(uri_key("/abcdef", false, false, 3, 0), "/ab");
        assert_eq!(uri_key("http://h.example/p/q?z", false, true, 0, 0), "/p/q");
        assert_eq!(
            uri_key("http://h.example/p/q?z", false, false, 0, 0),
            "http://h.example/p/q"
        );
    }

    #[test]
    fn url_params_and_domains() {
        assert_eq!(url_param("/x?a=1&user=bob&c", "user"), Some("bob"));
        assert_eq!(url_param("/x?a=1", "user"), None);
        assert_eq!(url_param("/x", "user"), None);
        assert_eq!(domain_only("www.example.com:80"), "example");
    }

    #[test]
    fn smooth_weighted_round_robin_interleaves() {
        let b = Balancer::new(
            Balance::Roundrobin,
            HashType::MapBased,
            &[("a".into(), 3), ("b".into(), 1)],
        );
        let s = [S(3, 0), S(1, 0)];
        let h = http::HeaderMap::new();
        let picks: Vec<usize> = (0..8)
            .map(|_| b.pick(&s, &view("/", &h), |_| true, |_| true).unwrap())
            .collect();
        assert_eq!(picks.iter().filter(|&&p| p == 0).count(), 6);
        assert_eq!(picks[..4].iter().filter(|&&p| p == 1).count(), 1);
        // a down server is skipped
        assert!((0..5).all(|_| b.pick(&s, &view("/", &h), |i| i == 1, |_| true) == Some(1)));
    }

    #[test]
    fn leastconn_prefers_lightest_relative_to_weight() {
        let b = Balancer::new(
            Balance::Leastconn,
            HashType::MapBased,
            &[("a".into(), 1), ("b".into(), 1), ("c".into(), 2)],
        );
        let s = [S(1, 3), S(1, 2), S(2, 3)];
        let h = http::HeaderMap::new();
        assert_eq!(b.pick(&s, &view("/", &h), |_| true, |_| true), Some(2));
    }

    #[test]
    fn random_two_choices_never_picks_heaviest_of_two() {
        let b = Balancer::new(
            Balance::Random { draws: 2 },
            HashType::MapBased,
            &[("a".into(), 1), ("b".into(), 1)],
        );
        let s = [S(1, 100), S(1, 0)];
        let h = http::HeaderMap::new();
        // The lighter server wins unless both draws land on the heavier one:
        // 3 times in 4, so 1500 of 2000 expected (σ ≈ 19). A fixed seed keeps
        // the test from failing by chance.
        fastrand::seed(0x7ac4);
        let n = (0..2000)
            .filter(|_| b.pick(&s, &view("/", &h), |_| true, |_| true) == Some(1))
            .count();
        assert!((1400..=1600).contains(&n), "{n}");
    }

    #[test]
    fn ketama_points_follow_libketama() {
        let r = Ring::new(&[("a".into(), 1), ("b".into(), 1), ("c".into(), 2)]);
        // floor(40*3*w/W) digests per server, 4 points each: 30 + 30 + 60 digests.
        assert_eq!(r.len(), (30 + 30 + 60) * 4);
        // md5("a-0") = 0e8e0fa2..., first point little-endian
        let d = Md5::digest(b"a-0");
        let p = u32::from_le_bytes([d[0], d[1], d[2], d[3]]);
        assert_eq!(r.lookup(p, |_| true), Some(0));
    }

    #[test]
    fn consistent_hash_moves_about_a_quarter_when_one_of_four_leaves() {
        let keys: Vec<(String, u32)> = (0..4).map(|i| (format!("s{i}"), 1)).collect();
        let b = Balancer::new(
            Balance::Uri {
                whole: false,
                path_only: false,
                len: 0,
                depth: 0,
            },
            HashType::Consistent,
            &keys,
        );
        let s: Vec<S> = (0..4).map(|_| S(1, 0)).collect();
        let h = http::HeaderMap::new();
        let paths: Vec<String> = (0..4000).map(|i| format!("/obj/{i}")).collect();
        let before: Vec<usize> = paths
            .iter()
            .map(|p| b.pick(&s, &view(p, &h), |_| true, |_| true).unwrap())
            .collect();
        let after: Vec<usize> = paths
            .iter()
            .map(|p| b.pick(&s, &view(p, &h), |i| i != 2, |_| true).unwrap())
            .collect();
        let moved = before.iter().zip(&after).filter(|(a, b)| a != b).count();
        let on_removed = before.iter().filter(|&&x| x == 2).count();
        assert_eq!(moved, on_removed, "only keys of the removed server move");
        assert!((600..1400).contains(&moved), "{moved} of 4000 moved");
    }

    #[test]
    fn map_based_hash_follows_weights() {
        let b = Balancer::new(
            Balance::Hdr {
                name: "x-user".into(),
                use_domain_only: false,
            },
            HashType::MapBased,
            &[("a".into(), 1), ("b".into(), 3)],
        );
        let s = [S(1, 0), S(3, 0)];
        let mut counts = [0usize; 2];
        for i in 0..4000 {
            let mut h = http::HeaderMap::new();
            h.insert("x-user", format!("user{i}").parse().unwrap());
            counts[b.pick(&s, &view("/", &h), |_| true, |_| true).unwrap()] += 1;
        }
        assert!((800..1200).contains(&counts[0]), "{counts:?}");
        // no header → round robin, still answers
        let h = http::HeaderMap::new();
        assert!(b.pick(&s, &view("/", &h), |_| true, |_| true).is_some());
    }
}
