//! HAProxy-compatible persistence cookies.
//!
//! The formats are HAProxy 2.6's (`http_ana.c`):
//! - insert: `Set-Cookie: NAME=<srvcookie>[|<last>[|<first>]]; path=/[; domain=D][; HttpOnly][; Secure]`
//!   where, when `maxidle` or `maxlife` is set, `<last>` (last-seen date) and, with
//!   `maxlife`, `<first>` (first-issued date) are Unix times divided by 4 and written
//!   as 5 characters of base64, most significant first (HAProxy's `s30tob64`); the
//!   last date is `(now + 3) / 4`;
//! - prefix: the server's `NAME=value` becomes `NAME=<srvcookie>~value`, and the
//!   prefix is stripped from requests before they reach the server;
//! - rewrite: the server's `NAME=value` becomes `NAME=<srvcookie>`.
//!
//! A cookie issued by HAProxy for a server with the same cookie value is therefore
//! understood here, and the reverse.

use crate::config::CookieConfig;

const B64: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

/// Separator of the date fields in an inserted cookie value.
pub const DATE_DELIM: char = '|';
/// Separator of the server prefix in prefix mode.
pub const PREFIX_DELIM: char = '~';

/// Encode the low 30 bits of `v` as 5 base64 characters, most significant first.
pub fn s30tob64(v: u32) -> String {
    let mut out = String::with_capacity(5);
    let mut x = v;
    for _ in 0..5 {
        out.push(B64[((x >> 24) & 0x3f) as usize] as char);
        x <<= 6;
    }
    out
}

/// Decode 5 base64 characters written by [`s30tob64`]; `None` if malformed.
pub fn b64tos30(s: &str) -> Option<u32> {
    let b = s.as_bytes();
    if b.len() != 5 {
        return None;
    }
    let mut out = 0u32;
    for &c in b {
        let d = B64.iter().position(|&x| x == c)? as u32;
        out = (out << 6) | d;
    }
    Some(out)
}

/// The persistence cookie found in a request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClientCookie {
    /// The server part of the value.
    pub server: String,
    /// Last-seen date (Unix seconds), if the value carried one.
    pub last_date: Option<u64>,
    /// First-issued date (Unix seconds), if the value carried one.
    pub first_date: Option<u64>,
}

/// Why a client cookie was not used.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CookieVerdict {
    /// Usable.
    Valid,
    /// Idle for longer than `maxidle` (HAProxy's `TX_CK_EXPIRED`).
    Expired,
    /// Issued longer ago than `maxlife` (HAProxy's `TX_CK_OLD`).
    Old,
}

/// Iterate the `;`-separated parts of a `Cookie` header value, trimmed, empty ones
/// skipped, each with its `(name, value)` split when it has a `=`. Byte-level (the
/// separators are ASCII), as this runs on every request.
fn cookie_parts(header: &str) -> impl Iterator<Item = (&str, Option<(&str, &str)>)> {
    let b = header.as_bytes();
    let mut pos = 0;
    std::iter::from_fn(move || {
        while pos < b.len() {
            let end = memchr::memchr(b';', &b[pos..]).map_or(b.len(), |i| pos + i);
            let part = header[pos..end].trim_ascii();
            pos = end + 1;
            if part.is_empty() {
                continue;
            }
            let kv = memchr::memchr(b'=', part.as_bytes())
                .map(|i| (part[..i].trim_ascii(), part[i + 1..].trim_ascii()));
            return Some((part, kv));
        }
        None
    })
}

/// Iterate `(name, value)` pairs of `Cookie` header values.
pub fn request_cookies(header: &str) -> impl Iterator<Item = (&str, &str)> {
    cookie_parts(header).filter_map(|(_, kv)| kv)
}

/// Parse the value of the persistence cookie according to the mode.
pub fn parse_client_value(cfg: &CookieConfig, value: &str) -> ClientCookie {
    use crate::config::CookieMode::*;
    match cfg.mode {
        Insert => {
            let mut parts = value.split(DATE_DELIM);
            let server = parts.next().unwrap_or_default().to_string();
            let last_date = parts.next().and_then(b64tos30).map(|v| u64::from(v) << 2);
            let first_date = parts.next().and_then(b64tos30).map(|v| u64::from(v) << 2);
            ClientCookie {
                server,
                last_date,
                first_date,
            }
        }
        Prefix => {
            let server = value
                .split_once(PREFIX_DELIM)
                .map(|(s, _)| s)
                .unwrap_or(value)
                .to_string();
            ClientCookie {
                server,
                last_date: None,
                first_date: None,
            }
        }
        Rewrite => ClientCookie {
            server: value.to_string(),
            last_date: None,
            first_date: None,
        },
    }
}

/// Check a client cookie's dates against `maxidle` / `maxlife` at `now` (Unix seconds).
pub fn check_dates(cfg: &CookieConfig, c: &ClientCookie, now: u64) -> CookieVerdict {
    if let (Some(maxidle), Some(last)) = (cfg.maxidle, c.last_date) {
        // A date far in the future is as suspicious as a stale one (HAProxy treats
        // dates more than maxidle ahead as expired too).
        let idle = maxidle.0.as_secs();
        if now > last + idle || last > now + idle {
            return CookieVerdict::Expired;
        }
    }
    if let (Some(maxlife), Some(first)) = (cfg.maxlife, c.first_date) {
        let life = maxlife.0.as_secs();
        if now > first + life || first > now + life {
            return CookieVerdict::Old;
        }
    }
    CookieVerdict::Valid
}

/// Whether a response to a request that reached its pinned server directly still
/// needs a fresh cookie (dates to refresh, add or remove), as HAProxy decides.
pub fn needs_refresh(cfg: &CookieConfig, c: &ClientCookie, now: u64) -> bool {
    ((cfg.maxidle.is_some() || c.last_date.is_some()) && c.last_date.is_none_or(|l| l < now))
        || (cfg.maxlife.is_some() && c.first_date.is_none())
        || (cfg.maxlife.is_none() && c.first_date.is_some())
}

/// Build the `Set-Cookie` value HAProxy inserts for a server cookie value.
/// `first_date` is the client's original first date, if any and still valid.
pub fn insert_value(
    cfg: &CookieConfig,
    server_cookie: &str,
    now: u64,
    first_date: Option<u64>,
) -> String {
    let mut s = format!("{}={}", cfg.name, server_cookie);
    if cfg.maxidle.is_some() || cfg.maxlife.is_some() {
        s.push(DATE_DELIM);
        s.push_str(&s30tob64(((now + 3) >> 2) as u32));
        if cfg.maxlife.is_some() {
            s.push(DATE_DELIM);
            let first = first_date.map(|f| f >> 2).unwrap_or((now + 3) >> 2);
            s.push_str(&s30tob64(first as u32));
        }
    }
    s.push_str("; path=/");
    push_attrs(cfg, &mut s);
    s
}

fn push_attrs(cfg: &CookieConfig, s: &mut String) {
    for d in &cfg.domain {
        s.push_str("; domain=");
        s.push_str(d);
    }
    if cfg.httponly {
        s.push_str("; HttpOnly");
    }
    if cfg.secure {
        s.push_str("; Secure");
    }
}

/// Rewrite a server's `Set-Cookie` value in rewrite or prefix mode. Returns `None`
/// when the header is not the persistence cookie.
pub fn rewrite_set_cookie(
    cfg: &CookieConfig,
    set_cookie: &str,
    server_cookie: &str,
) -> Option<String> {
    use crate::config::CookieMode::*;
    let (nv, rest) = match set_cookie.find(';') {
        Some(i) => (&set_cookie[..i], &set_cookie[i..]),
        None => (set_cookie, ""),
    };
    let (name, value) = nv.split_once('=')?;
    if name.trim() != cfg.name {
        return None;
    }
    let value = value.trim();
    let new = match cfg.mode {
        Rewrite => format!("{}={}{}", cfg.name, server_cookie, rest),
        Prefix => format!(
            "{}={}{}{}{}",
            cfg.name, server_cookie, PREFIX_DELIM, value, rest
        ),
        Insert => return None,
    };
    Some(new)
}

/// Name of a `Set-Cookie` value.
pub fn set_cookie_name(set_cookie: &str) -> Option<&str> {
    set_cookie
        .split(';')
        .next()?
        .split_once('=')
        .map(|(n, _)| n.trim())
}

/// Value of a `Set-Cookie` (without attributes).
pub fn set_cookie_value(set_cookie: &str) -> Option<&str> {
    set_cookie
        .split(';')
        .next()?
        .split_once('=')
        .map(|(_, v)| v.trim())
}

/// Rebuild a `Cookie` header for the server: in insert+indirect mode the persistence
/// cookie is removed; in prefix mode its server prefix is stripped. Returns `None`
/// when nothing is left.
pub fn rewrite_request_cookie(cfg: &CookieConfig, header: &str) -> Option<String> {
    let mut out = Vec::with_capacity(header.len());
    rewrite_request_cookie_into(cfg, header, &mut out);
    if out.is_empty() {
        None
    } else {
        String::from_utf8(out).ok()
    }
}

/// [`rewrite_request_cookie`] appending to `out` (nothing when nothing is left).
pub fn rewrite_request_cookie_into(cfg: &CookieConfig, header: &str, out: &mut Vec<u8>) {
    use crate::config::CookieMode::*;
    let start = out.len();
    let mut push = |part: &str, value: Option<&str>| {
        if out.len() > start {
            out.extend_from_slice(b"; ");
        }
        match value {
            Some(v) => {
                out.extend_from_slice(cfg.name.as_bytes());
                out.push(b'=');
                out.extend_from_slice(v.as_bytes());
            }
            None => out.extend_from_slice(part.as_bytes()),
        }
    };
    for (p, kv) in cookie_parts(header) {
        match kv {
            Some((k, v)) if k == cfg.name => match cfg.mode {
                Insert if cfg.indirect => {}
                Prefix => match v.split_once(PREFIX_DELIM) {
                    Some((_, orig)) => push(p, Some(orig)),
                    None => push(p, None),
                },
                _ => push(p, None),
            },
            _ => push(p, None),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{CookieMode, Dur};
    use std::time::Duration;

    fn cfg(mode: CookieMode) -> CookieConfig {
        CookieConfig {
            name: "SERVERID".into(),
            mode,
            indirect: true,
            nocache: false,
            postonly: false,
            httponly: false,
            secure: false,
            domain: vec![],
            maxidle: None,
            maxlife: None,
        }
    }

    #[test]
    fn cookie_headers_split_into_trimmed_pairs() {
        let pairs: Vec<(&str, &str)> = request_cookies(" a=1 ;; b = 2;c;d=; e=x=y").collect();
        assert_eq!(pairs, [("a", "1"), ("b", "2"), ("d", ""), ("e", "x=y")]);
        assert_eq!(request_cookies("").count(), 0);
        let i = cfg(CookieMode::Insert);
        assert_eq!(
            rewrite_request_cookie(&i, " a=1 ; SERVERID = s1|AAAAA ;c").unwrap(),
            "a=1; c"
        );
        let p = cfg(CookieMode::Prefix);
        assert_eq!(
            rewrite_request_cookie(&p, "SERVERID= s2~orig=1;x=2").unwrap(),
            "SERVERID=orig=1; x=2"
        );
    }

    #[test]
    fn base64_dates_round_trip() {
        assert_eq!(s30tob64(0), "AAAAA");
        assert_eq!(s30tob64(1), "AAAAB");
        assert_eq!(s30tob64((1 << 30) - 1), "/////");
        for v in [0u32, 1, 63, 64, 440_000_000, (1 << 30) - 1] {
            assert_eq!(b64tos30(&s30tob64(v)), Some(v));
        }
        assert_eq!(b64tos30("AAA"), None);
        assert_eq!(b64tos30("AA*AA"), None);
    }

    #[test]
    fn insert_matches_haproxy_layout() {
        let mut c = cfg(CookieMode::Insert);
        c.httponly = true;
        c.secure = true;
        c.domain = vec![".example.com".into()];
        assert_eq!(
            insert_value(&c, "s1", 0, None),
            "SERVERID=s1; path=/; domain=.example.com; HttpOnly; Secure"
        );
        c.maxidle = Some(Dur(Duration::from_secs(60)));
        let now = 1_700_000_001;
        let v = insert_value(&c, "s1", now, None);
        let enc = s30tob64(((now + 3) >> 2) as u32);
        assert_eq!(
            v,
            format!("SERVERID=s1|{enc}; path=/; domain=.example.com; HttpOnly; Secure")
        );
        c.maxlife = Some(Dur(Duration::from_secs(3600)));
        let v = insert_value(&c, "s1", now, Some(1_699_999_000));
        assert!(
            v.starts_with(&format!(
                "SERVERID=s1|{enc}|{}",
                s30tob64(1_699_999_000 >> 2)
            )),
            "{v}"
        );
    }

    #[test]
    fn dates_expire() {
        let mut c = cfg(CookieMode::Insert);
        c.maxidle = Some(Dur(Duration::from_secs(60)));
        c.maxlife = Some(Dur(Duration::from_secs(600)));
        let now = 1_700_000_000;
        let v = insert_value(&c, "s1", now, None);
        let val = set_cookie_value(&v).unwrap();
        let cc = parse_client_value(&c, val);
        assert_eq!(cc.server, "s1");
        assert_eq!(check_dates(&c, &cc, now + 10), CookieVerdict::Valid);
        assert_eq!(check_dates(&c, &cc, now + 70), CookieVerdict::Expired);
        let fresh = ClientCookie {
            last_date: Some(now + 590),
            ..cc.clone()
        };
        assert_eq!(check_dates(&c, &fresh, now + 601), CookieVerdict::Old);
        assert!(!needs_refresh(&c, &cc, now));
        assert!(needs_refresh(&c, &cc, now + 8));
    }

    #[test]
    fn prefix_and_rewrite() {
        let c = cfg(CookieMode::Prefix);
        assert_eq!(
            rewrite_set_cookie(&c, "SERVERID=abc; Path=/x", "s2").unwrap(),
            "SERVERID=s2~abc; Path=/x"
        );
        assert_eq!(rewrite_set_cookie(&c, "OTHER=abc", "s2"), None);
        assert_eq!(parse_client_value(&c, "s2~abc").server, "s2");
        assert_eq!(
            rewrite_request_cookie(&c, "a=1; SERVERID=s2~abc").unwrap(),
            "a=1; SERVERID=abc"
        );
        let r = cfg(CookieMode::Rewrite);
        assert_eq!(
            rewrite_set_cookie(&r, "SERVERID=xyz", "s3").unwrap(),
            "SERVERID=s3"
        );
        let i = cfg(CookieMode::Insert);
        assert_eq!(
            rewrite_request_cookie(&i, "SERVERID=s1|AAAAA; b=2").unwrap(),
            "b=2"
        );
        assert_eq!(rewrite_request_cookie(&i, "SERVERID=s1"), None);
    }
}
