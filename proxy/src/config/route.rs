//! Content switching in the configuration: a frontend's `use_backend` rules
//! (HAProxy's `use_backend <name> if <conditions>`, nginx's `location`).

use ipnet::IpNet;
use serde::Deserialize;

use super::HeaderMatch;

/// A content-switching rule: a request that matches every condition given goes
/// to `backend`. Rules are tried in order, the first match wins; a request no
/// rule matches goes to the frontend's `backend`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UseBackend {
    /// The backend matching requests go to.
    pub backend: String,
    /// The path (without the query) starts with this.
    #[serde(default)]
    pub path_prefix: Option<String>,
    /// The path (without the query) is exactly this.
    #[serde(default)]
    pub path_exact: Option<String>,
    /// The path (without the query) matches this regular expression (Rust
    /// `regex` syntax, unanchored unless written with `^`/`$`).
    #[serde(default)]
    pub path_regex: Option<String>,
    /// The request's host (`Host`, or the HTTP/2 `:authority`), without its
    /// port, compared case-insensitively; `*.example.com` matches any name
    /// under `example.com`.
    #[serde(default)]
    pub host: Option<String>,
    /// A header the request carries (with this exact value, if one is given).
    #[serde(default)]
    pub header: Option<HeaderMatch>,
    /// The request's method is one of these (e.g. `[GET, HEAD]`).
    #[serde(default)]
    pub method: Vec<String>,
    /// The client's address is in this network.
    #[serde(default)]
    pub source: Option<IpNet>,
}

impl UseBackend {
    /// Check the rule on its own: at least one condition, one path condition at
    /// most, a regular expression that compiles, valid names. On error: the
    /// field (relative to the rule) and what is wrong.
    pub fn check(&self) -> Result<(), (&'static str, String)> {
        let paths = [&self.path_prefix, &self.path_exact, &self.path_regex]
            .iter()
            .filter(|p| p.is_some())
            .count();
        if paths == 0
            && self.host.is_none()
            && self.header.is_none()
            && self.method.is_empty()
            && self.source.is_none()
        {
            return Err((
                "backend",
                "give at least one condition: path_prefix, path_exact, path_regex, host, header, method or source".into(),
            ));
        }
        if paths > 1 {
            return Err((
                "path_prefix",
                "give one of path_prefix, path_exact, path_regex".into(),
            ));
        }
        if let Some(re) = &self.path_regex
            && let Err(e) = regex::Regex::new(re)
        {
            return Err(("path_regex", format!("invalid regular expression: {e}")));
        }
        for (field, p) in [
            ("path_prefix", &self.path_prefix),
            ("path_exact", &self.path_exact),
        ] {
            if p.as_ref().is_some_and(|p| !p.starts_with('/')) {
                return Err((field, "a path starts with /".into()));
            }
        }
        if let Some(h) = &self.host
            && (h.is_empty() || h.contains(['/', ' ', ':']))
        {
            return Err((
                "host",
                format!("{h:?} is not a host name (no port, no path)"),
            ));
        }
        if let Some(h) = &self.header
            && http::HeaderName::from_bytes(h.name.as_bytes()).is_err()
        {
            return Err(("header.name", format!("{:?} is not a header name", h.name)));
        }
        if let Some(m) = self
            .method
            .iter()
            .find(|m| http::Method::from_bytes(m.as_bytes()).is_err() || m.is_empty())
        {
            return Err(("method", format!("{m:?} is not a method")));
        }
        Ok(())
    }
}
