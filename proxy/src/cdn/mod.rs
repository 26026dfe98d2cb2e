//! CDN rewriting (seed 001 claims 14 and 29): selected URLs in HTML responses
//! are mapped to a content delivery network's base URL as the response streams
//! through the proxy ([`stream`], on `lol_html`).
//!
//! This module holds the configuration and the pure URL mapping: which
//! element attributes are looked at (`img[src]`, `script[src]`, `link[href]`,
//! `srcset`, optionally inline `style` `url()`), and which URLs move where (by
//! URL prefix or by host).

pub mod stream;

use std::sync::atomic::AtomicU64;

use serde::Deserialize;

/// A frontend's CDN rewriting (`cdn:`).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CdnConfig {
    /// The mappings, tried in order (first match wins).
    pub rules: Vec<CdnRule>,
    /// `element[attribute]` selectors whose attribute holds a URL (or a
    /// `srcset` list when the attribute is `srcset`).
    #[serde(default = "default_attributes")]
    pub attributes: Vec<String>,
    /// Also rewrite `url(...)` in inline `style` attributes.
    #[serde(default)]
    pub inline_style: bool,
    /// gzip level (0-9) used to recompress gzip bodies after rewriting.
    #[serde(default = "default_gzip_level")]
    pub gzip_level: u32,
    /// Brotli quality (0-11) used to recompress br bodies after rewriting.
    #[serde(default = "default_brotli_quality")]
    pub brotli_quality: u32,
}

fn default_attributes() -> Vec<String> {
    [
        "img[src]",
        "img[srcset]",
        "source[src]",
        "source[srcset]",
        "script[src]",
        "link[href]",
    ]
    .map(String::from)
    .to_vec()
}
fn default_gzip_level() -> u32 {
    6
}
fn default_brotli_quality() -> u32 {
    5
}

/// One mapping: URLs under `prefix` (or on `host`) are served from `to`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CdnRule {
    /// A URL prefix: a path (`/static/`, which also matches absolute URLs on
    /// the page's own host) or an absolute URL prefix
    /// (`https://www.example.com/img/`). The prefix is replaced by `to`.
    #[serde(default)]
    pub prefix: Option<String>,
    /// A host (with its port, if not the default): absolute and
    /// protocol-relative URLs on it keep their path and move to `to`.
    #[serde(default)]
    pub host: Option<String>,
    /// The CDN base URL (`https://cdn.example.net/static/`).
    pub to: String,
}

impl CdnConfig {
    /// Check the rules and selectors; `Err((field, message))`.
    pub fn check(&self) -> Result<(), (String, String)> {
        if self.rules.is_empty() {
            return Err(("rules".into(), "at least one rule is required".into()));
        }
        for (i, r) in self.rules.iter().enumerate() {
            let f = |s: &str| format!("rules[{i}].{s}");
            match (&r.prefix, &r.host) {
                (Some(_), Some(_)) | (None, None) => {
                    return Err((f("prefix"), "give exactly one of prefix or host".into()));
                }
                (Some(p), None) if !(p.starts_with('/') || absolute(p)) => {
                    return Err((
                        f("prefix"),
                        "must be a path (/...) or an absolute http(s) URL prefix".into(),
                    ));
                }
                (None, Some(h)) if h.is_empty() || h.contains(['/', ' ']) => {
                    return Err((
                        f("host"),
                        "must be a host name, with an optional port".into(),
                    ));
                }
                _ => {}
            }
            if !(absolute(&r.to) || r.to.starts_with("//")) {
                return Err((
                    f("to"),
                    "must be an absolute http(s) or protocol-relative URL".into(),
                ));
            }
        }
        for (i, a) in self.attributes.iter().enumerate() {
            if attribute_of(a).is_none() || a.parse::<lol_html::Selector>().is_err() {
                return Err((
                    format!("attributes[{i}]"),
                    format!("{a:?} is not an element[attribute] selector"),
                ));
            }
        }
        if self.gzip_level > 9 {
            return Err(("gzip_level".into(), "must be 0-9".into()));
        }
        if self.brotli_quality > 11 {
            return Err(("brotli_quality".into(), "must be 0-11".into()));
        }
        Ok(())
    }
}

fn absolute(u: &str) -> bool {
    let l = u.as_bytes();
    let starts = |p: &str| l.len() > p.len() && l[..p.len()].eq_ignore_ascii_case(p.as_bytes());
    starts("http://") || starts("https://")
}

/// The attribute named by a `element[attribute]` selector (the last `[...]`).
fn attribute_of(sel: &str) -> Option<String> {
    let open = sel.rfind('[')?;
    let inner = sel[open + 1..].strip_suffix(']')?;
    let name = inner.split(['=', '~', '|', '^', '$', '*']).next()?.trim();
    (!name.is_empty() && name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-'))
        .then(|| name.to_ascii_lowercase())
}

/// Counters of a frontend's CDN rewriting.
#[derive(Debug, Default)]
pub struct CdnStats {
    /// HTML responses rewritten.
    pub rewritten: AtomicU64,
    /// URLs mapped to the CDN.
    pub urls: AtomicU64,
    /// HTML responses left alone because of their content coding (not gzip or br).
    pub skipped_encoding: AtomicU64,
    /// HTML responses left alone because their charset is not ASCII-compatible.
    pub skipped_charset: AtomicU64,
    /// Responses already rewritten by a Tack proxy (`x-tack-cdn`), left alone.
    pub already: AtomicU64,
    /// Pages passed unrewritten from the point where a token outgrew the
    /// rewriter's memory bound ([`stream::MEMORY_LIMIT`]).
    pub bailed: AtomicU64,
    /// Rewritten bodies that failed (bad compressed data or HTML the rewriter
    /// refused); the response is cut short.
    pub errors: AtomicU64,
}

#[derive(Debug)]
enum Match {
    /// Root-relative path prefix.
    Path(String),
    /// Absolute URL prefix (lowercased scheme and host compared as given).
    Url(String),
    /// Host, lowercased.
    Host(String),
}

/// The compiled rules of a frontend.
#[derive(Debug)]
pub struct Cdn {
    rules: Vec<(Match, String)>,
    /// `(selector, attribute)` pairs, `[style]` last with `inline_style`.
    pub(crate) selectors: Vec<(lol_html::Selector, String)>,
    pub(crate) gzip_level: u32,
    pub(crate) brotli_quality: u32,
    /// Counters.
    pub stats: CdnStats,
}

impl Cdn {
    /// Compile a checked configuration.
    pub fn new(cfg: &CdnConfig) -> Cdn {
        let rules = cfg
            .rules
            .iter()
            .map(|r| {
                let m = match (&r.prefix, &r.host) {
                    (Some(p), _) if p.starts_with('/') => Match::Path(p.clone()),
                    (Some(p), _) => Match::Url(p.clone()),
                    (None, Some(h)) => Match::Host(h.to_ascii_lowercase()),
                    (None, None) => Match::Path("\0never".into()),
                };
                (m, r.to.clone())
            })
            .collect();
        let style = cfg
            .inline_style
            .then(|| ("[style]".to_string(), "style".to_string()));
        let selectors = cfg
            .attributes
            .iter()
            .filter_map(|s| Some((s.clone(), attribute_of(s)?)))
            .chain(style)
            .filter_map(|(s, a)| Some((s.parse().ok()?, a)))
            .collect();
        Cdn {
            rules,
            selectors,
            gzip_level: cfg.gzip_level,
            brotli_quality: cfg.brotli_quality,
            stats: CdnStats::default(),
        }
    }

    /// The CDN URL for `url` found on a page served for `page_host`, or `None`
    /// when no rule applies (or the URL already points at a CDN base).
    pub fn map(&self, url: &str, page_host: &str) -> Option<String> {
        let url = url.trim();
        if self
            .rules
            .iter()
            .any(|(_, to)| url.starts_with(to.as_str()))
        {
            return None;
        }
        // (authority, path) of absolute and protocol-relative URLs.
        let split = split_authority(url);
        for (m, to) in &self.rules {
            match m {
                Match::Path(p) => {
                    if url.starts_with(p.as_str()) && !url.starts_with("//") {
                        return Some(format!("{to}{}", &url[p.len()..]));
                    }
                    if let Some((auth, path)) = split
                        && auth.eq_ignore_ascii_case(page_host)
                        && let Some(rest) = path.strip_prefix(p.as_str())
                    {
                        return Some(format!("{to}{rest}"));
                    }
                }
                Match::Url(p) => {
                    if url.len() >= p.len() && url[..p.len()].eq_ignore_ascii_case(p) {
                        return Some(format!("{to}{}", &url[p.len()..]));
                    }
                }
                Match::Host(h) => {
                    if let Some((auth, path)) = split
                        && auth.eq_ignore_ascii_case(h)
                    {
                        let path = if path.is_empty() { "/" } else { path };
                        return Some(format!("{}{path}", to.trim_end_matches('/')));
                    }
                }
            }
        }
        None
    }

    /// A `srcset` value with each candidate's URL mapped; `None` if none was.
    pub fn map_srcset(&self, v: &str, page_host: &str) -> Option<String> {
        let mut changed = 0;
        let out: Vec<String> = v
            .split(',')
            .map(|cand| {
                let c = cand.trim();
                let (u, d) = c.split_once(char::is_whitespace).unwrap_or((c, ""));
                match self.map(u, page_host) {
                    Some(m) => {
                        changed += 1;
                        if d.is_empty() {
                            m
                        } else {
                            format!("{m} {}", d.trim())
                        }
                    }
                    None => c.to_string(),
                }
            })
            .collect();
        (changed > 0).then(|| out.join(", "))
    }

    /// A `style` value with each `url(...)` mapped; `None` if none was.
    pub fn map_style(&self, v: &str, page_host: &str) -> Option<String> {
        let mut out = String::with_capacity(v.len());
        let mut rest = v;
        let mut changed = false;
        while let Some(i) = find_ci(rest, "url(") {
            out.push_str(&rest[..i + 4]);
            rest = &rest[i + 4..];
            let Some(close) = rest.find(')') else { break };
            let inner = &rest[..close];
            let t = inner.trim();
            let (q, u) = match t.chars().next() {
                Some(c @ ('"' | '\'')) if t.len() >= 2 && t.ends_with(c) => {
                    (c.to_string(), &t[1..t.len() - 1])
                }
                _ => (String::new(), t),
            };
            match self.map(u, page_host) {
                Some(m) => {
                    changed = true;
                    out.push_str(&format!("{q}{m}{q}"));
                }
                None => out.push_str(inner),
            }
            rest = &rest[close..];
        }
        out.push_str(rest);
        changed.then_some(out)
    }
}

fn find_ci(h: &str, n: &str) -> Option<usize> {
    h.as_bytes()
        .windows(n.len())
        .position(|w| w.eq_ignore_ascii_case(n.as_bytes()))
}

/// `(authority, path...)` of `http(s)://a/p` and `//a/p`.
fn split_authority(url: &str) -> Option<(&str, &str)> {
    let rest = if absolute(url) {
        &url[url.find("//")? + 2..]
    } else {
        url.strip_prefix("//")?
    };
    let end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    Some((&rest[..end], &rest[end..]))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cdn(yaml: &str) -> Cdn {
        let c: CdnConfig = serde_yaml_ng::from_str(yaml).unwrap();
        c.check().unwrap();
        Cdn::new(&c)
    }

    #[test]
    fn maps_by_prefix_host_and_leaves_the_rest() {
        let c = cdn(r#"
rules:
  - { prefix: "/static/", to: "https://cdn.example.net/s/" }
  - { prefix: "http://old.example.com/img/", to: "https://cdn.example.net/i/" }
  - { host: "assets.example.com", to: "https://cdn.example.net/a/" }
"#);
        let m = |u: &str| c.map(u, "www.example.com");
        assert_eq!(
            m("/static/a.css").as_deref(),
            Some("https://cdn.example.net/s/a.css")
        );
        assert_eq!(
            m("http://www.example.com/static/x.js?v=1").as_deref(),
            Some("https://cdn.example.net/s/x.js?v=1")
        );
        assert_eq!(m("http://other.example.com/static/x.js"), None);
        assert_eq!(m("//static/x"), None);
        assert_eq!(
            m("HTTP://old.example.com/img/p.png").as_deref(),
            Some("https://cdn.example.net/i/p.png")
        );
        assert_eq!(
            m("//assets.example.com/logo.svg").as_deref(),
            Some("https://cdn.example.net/a/logo.svg")
        );
        assert_eq!(m("/dynamic/page"), None);
        assert_eq!(
            m("https://cdn.example.net/s/a.css"),
            None,
            "already on the CDN"
        );
        assert_eq!(m("data:image/png;base64,AAAA"), None);
        assert_eq!(
            c.map_srcset("/static/a.png 1x, /b.png 2x,/static/c.png", "h")
                .as_deref(),
            Some("https://cdn.example.net/s/a.png 1x, /b.png 2x, https://cdn.example.net/s/c.png")
        );
        assert_eq!(c.map_srcset("/b.png 2x", "h"), None);
        assert_eq!(
            c.map_style(
                "color:red; background: URL('/static/bg.png') no-repeat",
                "h"
            )
            .as_deref(),
            Some("color:red; background: URL('https://cdn.example.net/s/bg.png') no-repeat")
        );
        assert_eq!(c.map_style("background:url(/x.png)", "h"), None);
    }

    #[test]
    fn bad_rules_are_refused_with_their_field() {
        for (yaml, field) in [
            ("rules: []", "rules"),
            ("rules: [{ to: 'https://c/' }]", "rules[0].prefix"),
            (
                "rules: [{ prefix: 'static/', to: 'https://c/' }]",
                "rules[0].prefix",
            ),
            (
                "rules: [{ host: 'a/b', to: 'https://c/' }]",
                "rules[0].host",
            ),
            ("rules: [{ prefix: '/s/', to: 'cdn/' }]", "rules[0].to"),
            (
                "{rules: [{ prefix: '/s/', to: 'https://c/' }], attributes: ['img']}",
                "attributes[0]",
            ),
            (
                "{rules: [{ prefix: '/s/', to: 'https://c/' }], gzip_level: 12}",
                "gzip_level",
            ),
        ] {
            let c: CdnConfig = serde_yaml_ng::from_str(yaml).unwrap();
            assert_eq!(c.check().unwrap_err().0, field, "{yaml}");
        }
    }
}
