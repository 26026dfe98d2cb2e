//! The admin API's page-cache endpoints: `GET /api/cache` lists each
//! frontend's cache (most recently used URLs first), `POST /api/cache/purge`
//! with `{"url": U}` or `{"prefix": P}` (and `"frontend": F` to limit it to
//! one frontend) removes one URL or every URL under a prefix. A URL is
//! `host/path?query`, a path alone (any host), or an absolute `http(s)://`
//! URL.

use serde::Deserialize;
use serde_json::{Map, Value, json};

use super::ApiError;
use crate::metrics::Registry;

/// Most URLs listed per cache.
const SHOWN: usize = 1000;

/// Every frontend's page cache: its use and its most recent entries.
pub(super) fn list(r: &Registry) -> Value {
    let caches: Vec<Value> = r
        .frontends
        .iter()
        .filter_map(|f| {
            let c = f.pages.as_ref()?.cache.as_ref()?;
            let (urls, bytes, max) = c.usage();
            let entries: Vec<Value> = c
                .list(SHOWN)
                .into_iter()
                .map(|(url, variants, size, age, fresh)| {
                    json!({
                        "url": url,
                        "variants": variants,
                        "bytes": size,
                        "age_s": age.as_secs(),
                        "fresh_s": fresh.as_secs(),
                    })
                })
                .collect();
            Some(json!({
                "frontend": f.name,
                "urls": urls,
                "bytes": bytes,
                "max_bytes": max,
                "entries": entries,
            }))
        })
        .collect();
    Value::Array(caches)
}

/// A purge request's body.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Purge {
    url: Option<String>,
    prefix: Option<String>,
    frontend: Option<String>,
}

/// Purges a URL or a prefix: how many entries each frontend's cache lost.
pub(super) fn purge(r: &Registry, body: &[u8]) -> Result<Value, ApiError> {
    let p: Purge = serde_json::from_slice(body)
        .map_err(|e| ApiError::bad(format!("bad purge request: {e}")))?;
    let (target, prefix) = match (p.url, p.prefix) {
        (Some(u), None) if !u.is_empty() => (u, false),
        (None, Some(x)) if !x.is_empty() => (x, true),
        _ => return Err(ApiError::bad("give one of url or prefix")),
    };
    let mut purged = Map::new();
    for f in &r.frontends {
        if p.frontend.as_ref().is_some_and(|n| *n != f.name) {
            continue;
        }
        if let Some(c) = f.pages.as_ref().and_then(|p| p.cache.as_ref()) {
            purged.insert(f.name.clone(), c.purge(&target, prefix).into());
        }
    }
    if purged.is_empty() {
        return Err(ApiError::not_found("no such page cache"));
    }
    Ok(json!({ "purged": purged }))
}
