//! The admin view of the page caches on the metrics address, in the style of
//! `/sessions` (plain text): `GET /cache` lists each frontend's cache, most
//! recently used URLs first; `POST /cache/purge?url=U` removes one URL and
//! `POST /cache/purge?prefix=P` every URL under a prefix (`frontend=F` limits
//! either to one frontend), from loopback clients only. A URL is
//! `host/path?query`, a path alone (any host), or an absolute `http(s)://` URL.

use std::fmt::Write;
use std::net::IpAddr;

use http::{Method, StatusCode};

use crate::metrics::Registry;

/// Most URLs listed per cache.
const SHOWN: usize = 1000;

/// The text of `GET /cache`.
pub fn list(r: &Registry) -> String {
    let mut o = String::new();
    for f in &r.frontends {
        let Some(c) = f.pages.as_ref().and_then(|p| p.cache.as_ref()) else {
            continue;
        };
        let (urls, bytes, max) = c.usage();
        let shown = if urls > SHOWN {
            format!(" ({SHOWN} most recent shown)")
        } else {
            String::new()
        };
        let _ = writeln!(
            o,
            "# frontend {} cache: {urls} URLs, {bytes} of {max} bytes{shown}",
            f.name
        );
        for (url, variants, size, age, left) in c.list(SHOWN) {
            let _ = writeln!(
                o,
                "{url}\t{variants} variants\t{size} bytes\tage {}s\tfresh {}s",
                age.as_secs(),
                left.as_secs()
            );
        }
    }
    o
}

fn decode(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        match b[i] {
            b'+' => out.push(b' '),
            b'%' if i + 2 < b.len() => {
                let hex = std::str::from_utf8(&b[i + 1..i + 3]).ok();
                match hex.and_then(|h| u8::from_str_radix(h, 16).ok()) {
                    Some(v) => {
                        out.push(v);
                        i += 2;
                    }
                    None => out.push(b'%'),
                }
            }
            c => out.push(c),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// `POST /cache/purge?url=...|prefix=...[&frontend=...]` from `peer`:
/// `(status, text)`. Only clients on the loopback may purge (the metrics
/// address may be open to a Prometheus server elsewhere).
pub fn purge(
    r: &Registry,
    method: &Method,
    query: Option<&str>,
    peer: IpAddr,
) -> (StatusCode, String) {
    let local = match peer {
        IpAddr::V6(a) => a.to_ipv4_mapped().map(IpAddr::V4).unwrap_or(peer),
        v4 => v4,
    }
    .is_loopback();
    if !local {
        return (
            StatusCode::FORBIDDEN,
            "purging is allowed from the loopback only\n".into(),
        );
    }
    if method != Method::POST && method != Method::DELETE {
        return (
            StatusCode::METHOD_NOT_ALLOWED,
            "Use POST (or DELETE).\n".into(),
        );
    }
    let (mut target, mut frontend) = (None, None);
    for kv in query.unwrap_or("").split('&').filter(|s| !s.is_empty()) {
        let (k, v) = kv.split_once('=').unwrap_or((kv, ""));
        match k {
            "url" => target = Some((decode(v), false)),
            "prefix" => target = Some((decode(v), true)),
            "frontend" => frontend = Some(decode(v)),
            _ => {
                return (
                    StatusCode::BAD_REQUEST,
                    format!("unknown parameter {k:?}\n"),
                );
            }
        }
    }
    let Some((url, prefix)) = target.filter(|(u, _)| !u.is_empty()) else {
        return (
            StatusCode::BAD_REQUEST,
            "give url=URL or prefix=PREFIX\n".into(),
        );
    };
    let mut o = String::new();
    let mut found = false;
    for f in &r.frontends {
        if frontend.as_ref().is_some_and(|n| *n != f.name) {
            continue;
        }
        let Some(c) = f.pages.as_ref().and_then(|p| p.cache.as_ref()) else {
            continue;
        };
        found = true;
        let _ = writeln!(
            o,
            "frontend {}: purged {} entries",
            f.name,
            c.purge(&url, prefix)
        );
    }
    if !found {
        return (StatusCode::NOT_FOUND, "no such page cache\n".into());
    }
    (StatusCode::OK, o)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn queries_decode_and_remote_purges_are_refused() {
        assert_eq!(decode("%2Fnews%2F+x%zz%4"), "/news/ x%zz%4");
        let r = Registry {
            frontends: Vec::new(),
            backends: Vec::new(),
            pools: Vec::new(),
            passthrough: Vec::new(),
        };
        let ip = |s: &str| s.parse::<IpAddr>().unwrap();
        let purge = |peer| purge(&r, &Method::POST, Some("url=/x"), peer).0;
        assert_eq!(purge(ip("192.0.2.1")), StatusCode::FORBIDDEN);
        assert_eq!(
            purge(ip("127.0.0.1")),
            StatusCode::NOT_FOUND,
            "no cache here"
        );
        assert_eq!(purge(ip("::ffff:127.0.0.1")), StatusCode::NOT_FOUND);
        assert_eq!(purge(ip("::1")), StatusCode::NOT_FOUND);
    }
}
