//! The page services' counters in the Prometheus text format (appended to
//! `GET /metrics` by [`crate::metrics::render`]).

use std::fmt::Write;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use crate::cache::{CacheStats, PageCache};
use crate::cdn::CdnStats;
use crate::proxy::Frontend;

type Counter<T> = fn(&T) -> &AtomicU64;
/// `(name, type, help, value)` of a series read from the store.
type StoreSeries = (
    &'static str,
    &'static str,
    &'static str,
    fn(&PageCache) -> u64,
);

fn head(o: &mut String, name: &str, kind: &str, help: &str) {
    let _ = writeln!(o, "# HELP {name} {help}\n# TYPE {name} {kind}");
}

/// Append the CDN and cache series of every frontend that has them.
pub fn render(o: &mut String, frontends: &[Arc<Frontend>]) {
    let cdns: Vec<_> = frontends
        .iter()
        .filter_map(|f| Some((&f.name, f.pages.as_ref()?.cdn.as_ref()?)))
        .collect();
    let cdn: [(&str, &str, Counter<CdnStats>); 7] = [
        ("cdn_rewritten_total", "HTML responses rewritten.", |s| {
            &s.rewritten
        }),
        ("cdn_urls_total", "URLs mapped to the CDN.", |s| &s.urls),
        (
            "cdn_skipped_encoding_total",
            "HTML responses left alone: content coding not gzip, br or identity.",
            |s| &s.skipped_encoding,
        ),
        (
            "cdn_skipped_charset_total",
            "HTML responses left alone: charset not ASCII-compatible.",
            |s| &s.skipped_charset,
        ),
        (
            "cdn_already_rewritten_total",
            "HTML responses already rewritten by a Tack proxy, left alone.",
            |s| &s.already,
        ),
        (
            "cdn_memory_bailouts_total",
            "HTML responses passed unrewritten from a token over the rewriter's 1 MiB bound.",
            |s| &s.bailed,
        ),
        (
            "cdn_errors_total",
            "Rewritten bodies cut short (bad compressed data or HTML).",
            |s| &s.errors,
        ),
    ];
    if !cdns.is_empty() {
        for (name, help, get) in cdn {
            head(o, &format!("tack_proxy_{name}"), "counter", help);
            for (f, c) in &cdns {
                let n = get(&c.stats).load(Ordering::Relaxed);
                let _ = writeln!(o, "tack_proxy_{name}{{frontend=\"{f}\"}} {n}");
            }
        }
    }
    let caches: Vec<_> = frontends
        .iter()
        .filter_map(|f| Some((&f.name, f.pages.as_ref()?.cache.as_ref()?)))
        .collect();
    if caches.is_empty() {
        return;
    }
    let counters: [(&str, &str, Counter<CacheStats>); 6] = [
        (
            "cache_hits_total",
            "Requests answered from the page cache (200 or 304).",
            |s| &s.hits,
        ),
        (
            "cache_misses_total",
            "Cacheable requests sent to a server.",
            |s| &s.misses,
        ),
        (
            "cache_bypass_total",
            "Requests not looked up (method, Authorization, client no-cache).",
            |s| &s.bypass,
        ),
        (
            "cache_not_modified_total",
            "Hits answered 304 Not Modified.",
            |s| &s.not_modified,
        ),
        ("cache_stores_total", "Responses stored.", |s| &s.stores),
        ("cache_uncacheable_total", "Responses not stored.", |s| {
            &s.uncacheable
        }),
    ];
    for (name, help, get) in counters {
        head(o, &format!("tack_proxy_{name}"), "counter", help);
        for (f, c) in &caches {
            let n = get(&c.stats).load(Ordering::Relaxed);
            let _ = writeln!(o, "tack_proxy_{name}{{frontend=\"{f}\"}} {n}");
        }
    }
    let store: [StoreSeries; 6] = [
        (
            "cache_evictions_total",
            "counter",
            "Entries evicted to stay within max_bytes.",
            |c| c.counts().evictions,
        ),
        (
            "cache_purged_total",
            "counter",
            "Entries removed by an admin purge.",
            |c| c.counts().purged,
        ),
        (
            "cache_expired_total",
            "counter",
            "Stale entries dropped on lookup.",
            |c| c.counts().expired,
        ),
        (
            "cache_bytes",
            "gauge",
            "Bytes held by the page cache.",
            |c| c.usage().1 as u64,
        ),
        (
            "cache_max_bytes",
            "gauge",
            "The page cache's bound in bytes.",
            |c| c.usage().2 as u64,
        ),
        ("cache_urls", "gauge", "URLs held by the page cache.", |c| {
            c.usage().0 as u64
        }),
    ];
    for (name, kind, help, get) in store {
        head(o, &format!("tack_proxy_{name}"), kind, help);
        for (f, c) in &caches {
            let _ = writeln!(o, "tack_proxy_{name}{{frontend=\"{f}\"}} {}", get(c));
        }
    }
}
