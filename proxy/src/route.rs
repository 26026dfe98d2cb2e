//! Content switching: a frontend's `use_backend` rules, compiled, choose the
//! backend of each request (HAProxy's `use_backend <name> if <conditions>`,
//! nginx's `location`). The rules are evaluated for every request, so the
//! requests of one keep-alive connection can go to different backends.
//!
//! [`Switch`] is generic over what a rule leads to (the proxy keeps one request
//! handler per backend), so this module knows nothing of the request path.

use std::net::IpAddr;

use http::{HeaderName, Method};
use ipnet::IpNet;
use regex::Regex;

use crate::balance::HeaderLookup;
use crate::config::route::UseBackend;

/// What the rules look at in a request.
pub struct RouteRequest<'a> {
    /// Method.
    pub method: &'a Method,
    /// Path, without the query.
    pub path: &'a str,
    /// `Host`, or the HTTP/2 `:authority`, as received (port included).
    pub host: Option<&'a [u8]>,
    /// Header lookup.
    pub headers: &'a dyn HeaderLookup,
    /// The client's address.
    pub source: IpAddr,
}

#[derive(Debug)]
enum PathCond {
    Prefix(String),
    Exact(String),
    Regex(Regex),
}

#[derive(Debug)]
enum HostCond {
    Exact(String),
    /// `*.example.com`: the suffix `.example.com`.
    Suffix(String),
}

/// One compiled rule.
#[derive(Debug)]
struct Rule {
    path: Option<PathCond>,
    host: Option<HostCond>,
    header: Option<(HeaderName, Option<String>)>,
    methods: Vec<Method>,
    source: Option<IpNet>,
}

/// The host name of a `Host` value: without the port, lowercase.
fn host_name(v: &[u8]) -> Option<String> {
    let s = std::str::from_utf8(v).ok()?.trim();
    let name = if let Some(rest) = s.strip_prefix('[') {
        // An IPv6 literal, `[::1]:8080`.
        &s[..rest.find(']').map(|i| i + 2).unwrap_or(s.len())]
    } else {
        s.split(':').next().unwrap_or(s)
    };
    Some(name.to_ascii_lowercase())
}

impl Rule {
    fn compile(r: &UseBackend) -> Result<Rule, regex::Error> {
        let path = match (&r.path_prefix, &r.path_exact, &r.path_regex) {
            (Some(p), _, _) => Some(PathCond::Prefix(p.clone())),
            (_, Some(p), _) => Some(PathCond::Exact(p.clone())),
            (_, _, Some(re)) => Some(PathCond::Regex(Regex::new(re)?)),
            _ => None,
        };
        let host = r.host.as_ref().map(|h| {
            let h = h.to_ascii_lowercase();
            match h.strip_prefix('*') {
                Some(suffix) => HostCond::Suffix(suffix.to_string()),
                None => HostCond::Exact(h),
            }
        });
        Ok(Rule {
            path,
            host,
            header: r.header.as_ref().and_then(|h| {
                HeaderName::from_bytes(h.name.as_bytes())
                    .ok()
                    .map(|n| (n, h.value.clone()))
            }),
            methods: r
                .method
                .iter()
                .filter_map(|m| Method::from_bytes(m.as_bytes()).ok())
                .collect(),
            source: r.source,
        })
    }

    fn matches(&self, r: &RouteRequest<'_>) -> bool {
        if !self.methods.is_empty() && !self.methods.contains(r.method) {
            return false;
        }
        match &self.path {
            Some(PathCond::Prefix(p)) if !r.path.starts_with(p.as_str()) => return false,
            Some(PathCond::Exact(p)) if r.path != p => return false,
            Some(PathCond::Regex(re)) if !re.is_match(r.path) => return false,
            _ => {}
        }
        if let Some(h) = &self.host {
            let Some(name) = r.host.and_then(host_name) else {
                return false;
            };
            let ok = match h {
                HostCond::Exact(e) => name == *e,
                HostCond::Suffix(s) => name.len() > s.len() && name.ends_with(s.as_str()),
            };
            if !ok {
                return false;
            }
        }
        if let Some((n, want)) = &self.header {
            match (r.headers.header(n.as_str()), want) {
                (None, _) => return false,
                (Some(v), Some(w)) if v != w.as_bytes() => return false,
                _ => {}
            }
        }
        if let Some(net) = &self.source {
            let src = match r.source {
                IpAddr::V6(a) => a.to_ipv4_mapped().map(IpAddr::V4).unwrap_or(r.source),
                v4 => v4,
            };
            if !net.contains(&src) {
                return false;
            }
        }
        true
    }
}

/// Compiled rules and what each leads to.
#[derive(Debug)]
pub struct Switch<T> {
    rules: Vec<(Rule, T)>,
}

impl<T> Switch<T> {
    /// Compile `rules`; `target` gives what a rule leads to (called once per
    /// rule, in order). The configuration was validated: a regular expression
    /// that does not compile is an error all the same.
    pub fn new(
        rules: &[UseBackend],
        mut target: impl FnMut(&UseBackend) -> T,
    ) -> Result<Switch<T>, regex::Error> {
        let mut out = Vec::with_capacity(rules.len());
        for r in rules {
            out.push((Rule::compile(r)?, target(r)));
        }
        Ok(Switch { rules: out })
    }

    /// What the first matching rule leads to, `None` when no rule matches.
    pub fn choose(&self, r: &RouteRequest<'_>) -> Option<&T> {
        self.rules
            .iter()
            .find(|(rule, _)| rule.matches(r))
            .map(|(_, t)| t)
    }

    /// What each rule leads to, in order, with its index.
    pub fn targets(&self) -> impl Iterator<Item = (usize, &T)> {
        self.rules.iter().map(|(_, t)| t).enumerate()
    }

    /// Whether there are no rules.
    pub fn is_empty(&self) -> bool {
        self.rules.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    struct H(Vec<(&'static str, &'static str)>);
    impl HeaderLookup for H {
        fn header(&self, name: &str) -> Option<&[u8]> {
            self.0
                .iter()
                .find(|(n, _)| n.eq_ignore_ascii_case(name))
                .map(|(_, v)| v.as_bytes())
        }
    }

    fn rules(yaml: &str) -> Switch<String> {
        let r: Vec<UseBackend> = serde_yaml_ng::from_str(yaml).unwrap();
        for x in &r {
            x.check().unwrap();
        }
        Switch::new(&r, |u| u.backend.clone()).unwrap()
    }

    fn pick(
        s: &Switch<String>,
        m: Method,
        path: &str,
        host: Option<&str>,
        h: &H,
        src: &str,
    ) -> Option<String> {
        s.choose(&RouteRequest {
            method: &m,
            path,
            host: host.map(str::as_bytes),
            headers: h,
            source: src.parse().unwrap(),
        })
        .cloned()
    }

    #[test]
    fn first_matching_rule_wins() {
        let s = rules(
            r#"
- { backend: health, path_exact: /health }
- { backend: api, path_prefix: /api/, method: [GET, POST] }
- { backend: v, path_regex: "^/v[0-9]+/" }
- { backend: img, host: img.example.com }
- { backend: wild, host: "*.cdn.test" }
- { backend: beta, header: { name: X-Beta, value: "1" } }
- { backend: lan, source: 10.0.0.0/8 }
"#,
        );
        let none = H(vec![]);
        let ip = "192.0.2.1";
        assert_eq!(
            pick(&s, Method::GET, "/health", None, &none, ip).as_deref(),
            Some("health")
        );
        assert_eq!(pick(&s, Method::GET, "/healthz", None, &none, ip), None);
        assert_eq!(
            pick(&s, Method::GET, "/api/x", None, &none, ip).as_deref(),
            Some("api")
        );
        assert_eq!(pick(&s, Method::DELETE, "/api/x", None, &none, ip), None);
        assert_eq!(
            pick(&s, Method::GET, "/v2/a", None, &none, ip).as_deref(),
            Some("v")
        );
        assert_eq!(
            pick(
                &s,
                Method::GET,
                "/",
                Some("IMG.example.com:8080"),
                &none,
                ip
            )
            .as_deref(),
            Some("img")
        );
        assert_eq!(
            pick(&s, Method::GET, "/", Some("a.b.cdn.test"), &none, ip).as_deref(),
            Some("wild")
        );
        assert_eq!(
            pick(&s, Method::GET, "/", Some("cdn.test"), &none, ip),
            None
        );
        let beta = H(vec![("x-beta", "1")]);
        assert_eq!(
            pick(&s, Method::GET, "/", None, &beta, ip).as_deref(),
            Some("beta")
        );
        assert_eq!(
            pick(&s, Method::GET, "/", None, &none, "10.1.2.3").as_deref(),
            Some("lan")
        );
        assert_eq!(
            pick(&s, Method::GET, "/", None, &none, "::ffff:10.1.2.3").as_deref(),
            Some("lan")
        );
    }

    #[test]
    fn bad_rules_are_refused() {
        let bad = |y: &str| {
            let r: UseBackend = serde_yaml_ng::from_str(y).unwrap();
            r.check().unwrap_err().0
        };
        assert_eq!(bad("{ backend: a }"), "backend");
        assert_eq!(bad("{ backend: a, path_regex: '(' }"), "path_regex");
        assert_eq!(
            bad("{ backend: a, path_prefix: /x, path_exact: /y }"),
            "path_prefix"
        );
        assert_eq!(bad("{ backend: a, path_prefix: x }"), "path_prefix");
        assert_eq!(bad("{ backend: a, host: 'a.b:80' }"), "host");
        assert_eq!(bad("{ backend: a, method: ['G T'] }"), "method");
    }
}
