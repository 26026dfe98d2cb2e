//! What `Cache-Control`, `Pragma`, `Expires`, `Date` and `Age` say about
//! storing a response in a shared cache (RFC 9111), and about a request's
//! willingness to be served from one. Pure functions over header values.

use std::time::{Duration, SystemTime};

/// The directives of one or more `Cache-Control` values that matter here.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Directives {
    /// `no-store`.
    pub no_store: bool,
    /// `no-cache` (with or without field names: treated as a whole).
    pub no_cache: bool,
    /// `private` (with or without field names: treated as a whole).
    pub private: bool,
    /// `public`.
    pub public: bool,
    /// `max-age`; `Some(0)` when its value is not a number (stale, RFC 9111 4.2.1).
    pub max_age: Option<u64>,
    /// `s-maxage`, likewise.
    pub s_maxage: Option<u64>,
}

/// Parse `Cache-Control` values (unknown directives ignored, names
/// case-insensitive, the first of a repeated directive kept).
pub fn parse<'a>(values: impl IntoIterator<Item = &'a [u8]>) -> Directives {
    let mut d = Directives::default();
    for v in values {
        let v = String::from_utf8_lossy(v);
        for part in split_outside_quotes(&v) {
            let part = part.trim();
            let (name, arg) = match part.split_once('=') {
                Some((n, a)) => (n.trim(), Some(a.trim().trim_matches('"'))),
                None => (part, None),
            };
            let secs = || Some(arg.and_then(|a| a.parse::<u64>().ok()).unwrap_or(0));
            match name.to_ascii_lowercase().as_str() {
                "no-store" => d.no_store = true,
                "no-cache" => d.no_cache = true,
                "private" => d.private = true,
                "public" => d.public = true,
                "max-age" if d.max_age.is_none() => d.max_age = secs(),
                "s-maxage" if d.s_maxage.is_none() => d.s_maxage = secs(),
                _ => {}
            }
        }
    }
    d
}

fn split_outside_quotes(v: &str) -> Vec<&str> {
    let (mut out, mut start, mut quoted) = (Vec::new(), 0, false);
    for (i, c) in v.char_indices() {
        match c {
            '"' => quoted = !quoted,
            ',' if !quoted => {
                out.push(&v[start..i]);
                start = i + 1;
            }
            _ => {}
        }
    }
    out.push(&v[start..]);
    out
}

/// Why a response is not stored.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NotStored {
    /// `no-store`, `private`, `no-cache` or `Pragma: no-cache`.
    Forbidden,
    /// No `s-maxage`, `max-age` or `Expires`, and no default lifetime.
    NoLifetime,
    /// Already stale when received.
    Stale,
}

/// The response headers freshness depends on, as raw values.
#[derive(Debug, Default, Clone, Copy)]
pub struct ResponseTimes<'a> {
    /// `Expires`.
    pub expires: Option<&'a [u8]>,
    /// `Date`.
    pub date: Option<&'a [u8]>,
    /// `Age`.
    pub age: Option<&'a [u8]>,
    /// `Pragma` contains `no-cache`.
    pub pragma_no_cache: bool,
}

fn date(v: &[u8]) -> Option<SystemTime> {
    httpdate::parse_http_date(std::str::from_utf8(v).ok()?.trim()).ok()
}

/// How long a shared cache may serve the response from now, and its age when
/// received. `s-maxage` wins over `max-age`, which wins over `Expires` (an
/// unparsable `Expires` means already expired); `default_ttl` applies when none
/// is given.
pub fn lifetime(
    d: &Directives,
    t: &ResponseTimes<'_>,
    now: SystemTime,
    default_ttl: Option<Duration>,
) -> Result<(Duration, Duration), NotStored> {
    if d.no_store || d.private || d.no_cache || t.pragma_no_cache {
        return Err(NotStored::Forbidden);
    }
    let age = t
        .age
        .and_then(|a| std::str::from_utf8(a).ok()?.trim().parse::<u64>().ok())
        .map(Duration::from_secs)
        .unwrap_or_default();
    let fresh_for = if let Some(s) = d.s_maxage.or(d.max_age) {
        Duration::from_secs(s)
    } else if let Some(e) = t.expires {
        let base = t.date.and_then(date).unwrap_or(now);
        date(e)
            .and_then(|e| e.duration_since(base).ok())
            .unwrap_or_default()
    } else if let Some(ttl) = default_ttl {
        ttl
    } else {
        return Err(NotStored::NoLifetime);
    };
    match fresh_for.checked_sub(age) {
        Some(left) if !left.is_zero() => Ok((left, age)),
        _ => Err(NotStored::Stale),
    }
}

/// Whether a request lets a cache answer it from storage: not with
/// `no-cache`, `no-store`, `max-age=0` or `Pragma: no-cache`.
pub fn request_accepts_stored(d: &Directives, pragma_no_cache: bool) -> bool {
    !(d.no_cache || d.no_store || d.max_age == Some(0) || pragma_no_cache)
}

/// Weak comparison of an `If-None-Match` value against an entity tag
/// (RFC 9110 13.1.2): `*`, or any listed tag equal once `W/` is ignored.
pub fn none_match(if_none_match: &[u8], etag: Option<&[u8]>) -> bool {
    let inm = String::from_utf8_lossy(if_none_match);
    if inm.trim() == "*" {
        return etag.is_some();
    }
    let Some(etag) = etag else { return false };
    let strip = |t: &str| t.trim().trim_start_matches("W/").to_string();
    let want = strip(&String::from_utf8_lossy(etag));
    split_outside_quotes(&inm)
        .into_iter()
        .any(|t| strip(t) == want)
}

/// Whether the resource is unmodified since `if_modified_since`, given its
/// `Last-Modified`.
pub fn not_modified_since(if_modified_since: &[u8], last_modified: Option<&[u8]>) -> bool {
    match (date(if_modified_since), last_modified.and_then(date)) {
        (Some(ims), Some(lm)) => lm <= ims,
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn times() -> ResponseTimes<'static> {
        ResponseTimes::default()
    }

    #[test]
    fn directives_and_lifetimes() {
        let now = SystemTime::UNIX_EPOCH + Duration::from_secs(1_700_000_000);
        let d = parse([&b"public, max-age=60"[..], b"S-MaxAge=\"120\""]);
        assert_eq!(d.max_age, Some(60));
        assert_eq!(d.s_maxage, Some(120));
        assert!(d.public);
        assert_eq!(
            lifetime(&d, &times(), now, None),
            Ok((Duration::from_secs(120), Duration::ZERO))
        );
        for v in [
            "no-store",
            "private",
            "private=\"set-cookie, x\"",
            "no-cache",
            "max-age=60, No-Store",
        ] {
            assert_eq!(
                lifetime(&parse([v.as_bytes()]), &times(), now, None),
                Err(NotStored::Forbidden),
                "{v}"
            );
        }
        assert_eq!(
            lifetime(&parse([&b"max-age=abc"[..]]), &times(), now, None),
            Err(NotStored::Stale)
        );
        assert_eq!(
            lifetime(&parse([]), &times(), now, None),
            Err(NotStored::NoLifetime)
        );
        assert_eq!(
            lifetime(&parse([]), &times(), now, Some(Duration::from_secs(5))),
            Ok((Duration::from_secs(5), Duration::ZERO))
        );
        let t = ResponseTimes {
            expires: Some(b"Thu, 01 Jan 2026 00:10:00 GMT"),
            date: Some(b"Thu, 01 Jan 2026 00:00:00 GMT"),
            age: Some(b"100"),
            pragma_no_cache: false,
        };
        assert_eq!(
            lifetime(&parse([]), &t, now, None),
            Ok((Duration::from_secs(500), Duration::from_secs(100)))
        );
        let bad = ResponseTimes {
            expires: Some(b"0"),
            ..times()
        };
        assert_eq!(lifetime(&parse([]), &bad, now, None), Err(NotStored::Stale));
        assert!(none_match(b"\"x\", W/\"abc\"", Some(b"\"abc\"")));
        assert!(none_match(b"*", Some(b"\"abc\"")));
        assert!(!none_match(b"\"abd\"", Some(b"\"abc\"")));
        assert!(not_modified_since(
            b"Thu, 01 Jan 2026 00:00:00 GMT",
            Some(b"Wed, 31 Dec 2025 00:00:00 GMT")
        ));
        assert!(!not_modified_since(
            b"Wed, 31 Dec 2025 00:00:00 GMT",
            Some(b"Thu, 01 Jan 2026 00:00:00 GMT")
        ));
        assert!(!not_modified_since(
            b"garbage",
            Some(b"Thu, 01 Jan 2026 00:00:00 GMT")
        ));
    }

    proptest! {
        /// Any bytes parse without panicking, and a lifetime never exceeds the
        /// largest number of seconds the header states.
        #[test]
        fn parsing_never_panics_and_bounds_the_lifetime(v in proptest::collection::vec(any::<u8>(), 0..64),
                                                         age in proptest::collection::vec(any::<u8>(), 0..8)) {
            let d = parse([&v[..]]);
            let t = ResponseTimes { age: Some(&age), ..ResponseTimes::default() };
            if let Ok((left, _)) = lifetime(&d, &t, SystemTime::now(), None) {
                prop_assert!(left.as_secs() <= d.s_maxage.or(d.max_age).unwrap_or(0));
                prop_assert!(!d.no_store && !d.private && !d.no_cache);
            }
            let _ = none_match(&v, Some(&age));
        }

        /// Generated directive lists read back as written.
        #[test]
        fn generated_directives_read_back(no_store: bool, private: bool, public: bool,
                                          max_age in proptest::option::of(0u64..1_000_000),
                                          s_maxage in proptest::option::of(0u64..1_000_000),
                                          upper: bool) {
            let mut parts = Vec::new();
            if no_store { parts.push("no-store".to_string()) }
            if private { parts.push("private".to_string()) }
            if public { parts.push("public".to_string()) }
            if let Some(m) = max_age { parts.push(format!("max-age={m}")) }
            if let Some(m) = s_maxage { parts.push(format!("s-maxage=\"{m}\"")) }
            parts.push("x-ext=\"a,b\"".into());
            let mut text = parts.join(" , ");
            if upper { text = text.to_ascii_uppercase() }
            let d = parse([text.as_bytes()]);
            prop_assert_eq!(d, Directives { no_store, no_cache: false, private, public, max_age, s_maxage });
        }
    }
}
