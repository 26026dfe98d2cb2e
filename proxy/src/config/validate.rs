//! Cross-field validation of a parsed configuration: names unique, references
//! resolve, options fit their mode; errors name the field path and, with the
//! source text, its line.

use std::collections::HashSet;

use super::{
    Balance, ConfigError, CookieMode, ProxyConfig, tls, valid_cookie_name, valid_cookie_value,
};

impl ProxyConfig {
    /// Check the rules; `text` is the YAML the configuration came from, to find lines.
    pub(super) fn validate_with_source(&self, text: Option<&str>) -> Result<(), ConfigError> {
        let err = |field: String, message: String, needle: Option<&str>| ConfigError::Invalid {
            field,
            message,
            line: needle.and_then(|n| text.and_then(|t| find_line(t, n))),
        };
        if self.frontends.is_empty() && self.passthrough.is_empty() {
            return Err(err(
                "frontends".into(),
                "at least one frontend (or passthrough frontend) is required".into(),
                None,
            ));
        }
        for (i, fe) in self.frontends.iter().enumerate() {
            for (field, d) in [
                ("keepalive_timeout", fe.keepalive_timeout),
                ("client_timeout", fe.client_timeout),
            ] {
                if d.0.is_zero() {
                    return Err(err(
                        format!("frontends[{i}].{field}"),
                        "must be greater than zero".into(),
                        Some(field),
                    ));
                }
            }
            for (section, r) in [
                ("cdn", fe.cdn.as_ref().map(|c| c.check())),
                ("cache", fe.cache.as_ref().map(|c| c.check())),
            ] {
                if let Some(Err((field, message))) = r {
                    let needle = field
                        .split(['[', '.'])
                        .next()
                        .unwrap_or(section)
                        .to_string();
                    return Err(err(
                        format!("frontends[{i}].{section}.{field}"),
                        message,
                        Some(&needle),
                    ));
                }
            }
            if let Some(t) = &fe.tls
                && let Err((field, message)) = t.check()
            {
                return Err(err(
                    format!("frontends[{i}].tls.{field}"),
                    message,
                    Some(field.rsplit('.').next().unwrap_or(field)),
                ));
            }
        }
        let mut names = HashSet::new();
        for (i, b) in self.backends.iter().enumerate() {
            let f = format!("backends[{i}]");
            if !names.insert(b.name.as_str()) {
                return Err(err(
                    format!("{f}.name"),
                    format!("duplicate backend name {:?}", b.name),
                    Some(&b.name),
                ));
            }
            if b.servers.is_empty() {
                return Err(err(
                    format!("{f}.servers"),
                    "a backend needs at least one server".into(),
                    Some(&b.name),
                ));
            }
            let mut snames = HashSet::new();
            let mut cookies = HashSet::new();
            for (j, s) in b.servers.iter().enumerate() {
                let sf = format!("{f}.servers[{j}]");
                if !snames.insert(s.name.as_str()) {
                    return Err(err(
                        format!("{sf}.name"),
                        format!("duplicate server name {:?}", s.name),
                        Some(&s.name),
                    ));
                }
                let ck = s.cookie.clone().unwrap_or_else(|| s.name.clone());
                if !valid_cookie_value(&ck) {
                    return Err(err(
                        format!("{sf}.cookie"),
                        format!(
                            "cookie value {ck:?} must be a non-empty token without '~', '|', ';', ',', '=', spaces or quotes"
                        ),
                        Some(&ck),
                    ));
                }
                if b.cookie.is_some() && !cookies.insert(ck.clone()) {
                    return Err(err(
                        format!("{sf}.cookie"),
                        format!("cookie value {ck:?} is used by two servers"),
                        Some(&ck),
                    ));
                }
                if let Some(r) = &s.redir
                    && !(r.starts_with("http://") || r.starts_with("https://"))
                {
                    return Err(err(
                        format!("{sf}.redir"),
                        format!("{r:?} must start with http:// or https://"),
                        Some(r),
                    ));
                }
                if (s.tls_address.is_some() || s.tls_sni.is_some()) && b.server_tls.is_none() {
                    return Err(err(
                        format!("{sf}.tls_address"),
                        "tls_address and tls_sni need the backend's server_tls".into(),
                        Some(&s.name),
                    ));
                }
                if let Some(n) = &s.tls_sni
                    && let Err(m) = tls::check_server_name(n)
                {
                    return Err(err(format!("{sf}.tls_sni"), m, Some(n)));
                }
                if s.maxqueue > 0 && s.maxconn == 0 {
                    return Err(err(
                        format!("{sf}.maxqueue"),
                        "maxqueue needs maxconn".into(),
                        Some(&s.name),
                    ));
                }
            }
            if b.http2
                && (b.send_proxy.is_some() || b.servers.iter().any(|s| s.send_proxy.is_some()))
            {
                return Err(err(
                    format!("{f}.http2"),
                    "one HTTP/2 connection carries every client's requests: not with send_proxy"
                        .into(),
                    Some("http2"),
                ));
            }
            if let Some(t) = &b.server_tls
                && let Err((field, message)) = t.check()
            {
                return Err(err(
                    format!("{f}.server_tls.{field}"),
                    message,
                    Some("server_tls"),
                ));
            }
            if let Some(c) = &b.cookie {
                if !valid_cookie_name(&c.name) {
                    return Err(err(
                        format!("{f}.cookie.name"),
                        format!("{:?} is not a valid cookie name", c.name),
                        Some(&c.name),
                    ));
                }
                if c.mode != CookieMode::Insert {
                    for (set, opt) in [
                        (c.indirect, "indirect"),
                        (c.nocache, "nocache"),
                        (c.postonly, "postonly"),
                        (c.maxidle.is_some(), "maxidle"),
                        (c.maxlife.is_some(), "maxlife"),
                    ] {
                        if set {
                            return Err(err(
                                format!("{f}.cookie.{opt}"),
                                format!("{opt} only applies to mode insert"),
                                Some(opt),
                            ));
                        }
                    }
                }
            }
            if let Some(s) = &b.session_id {
                if s.cookie.is_none() && s.url_param.is_none() {
                    return Err(err(
                        format!("{f}.session_id"),
                        "give a cookie, a url_param, or both".into(),
                        Some("session_id"),
                    ));
                }
                if s.table_size == 0 {
                    return Err(err(
                        format!("{f}.session_id.table_size"),
                        "must be at least 1".into(),
                        Some("table_size"),
                    ));
                }
            }
            if let Some(h) = &b.hash_groups
                && (h.groups == 0 || h.groups > 1 << 24)
            {
                return Err(err(
                    format!("{f}.hash_groups.groups"),
                    "must be between 1 and 16777216".into(),
                    Some("groups"),
                ));
            }
            if let Balance::Random { draws } = b.balance
                && draws == 0
            {
                return Err(err(
                    format!("{f}.balance.draws"),
                    "must be at least 1".into(),
                    Some("draws"),
                ));
            }
            if let Some(h) = &b.health_check {
                if h.interval.0.is_zero() {
                    return Err(err(
                        format!("{f}.health_check.interval"),
                        "must be greater than zero".into(),
                        Some("interval"),
                    ));
                }
                if h.method.is_empty() || !h.method.bytes().all(|c| c.is_ascii_uppercase()) {
                    return Err(err(
                        format!("{f}.health_check.method"),
                        format!("{:?} is not an HTTP method", h.method),
                        Some("method"),
                    ));
                }
                if !h.path.starts_with('/') {
                    return Err(err(
                        format!("{f}.health_check.path"),
                        "must start with '/'".into(),
                        Some("path"),
                    ));
                }
            }
        }
        let mut fnames = HashSet::new();
        for (i, pt) in self.passthrough.iter().enumerate() {
            let f = format!("passthrough[{i}]");
            if !fnames.insert(pt.name.as_str()) {
                return Err(err(
                    format!("{f}.name"),
                    format!("duplicate frontend name {:?}", pt.name),
                    Some(&pt.name),
                ));
            }
            if let Err((field, message)) = pt.check() {
                return Err(err(format!("{f}.{field}"), message, Some(&pt.name)));
            }
            if let Some(b) = pt.backends().find(|b| !names.contains(b)) {
                return Err(err(
                    format!("{f}.routes"),
                    format!("no backend named {b:?}"),
                    Some(b),
                ));
            }
        }
        for (i, fe) in self.frontends.iter().enumerate() {
            let f = format!("frontends[{i}]");
            if !fnames.insert(fe.name.as_str()) {
                return Err(err(
                    format!("{f}.name"),
                    format!("duplicate frontend name {:?}", fe.name),
                    Some(&fe.name),
                ));
            }
            if fe.bind.is_empty() {
                return Err(err(
                    format!("{f}.bind"),
                    "at least one address is required".into(),
                    Some(&fe.name),
                ));
            }
            if !names.contains(fe.backend.as_str()) {
                return Err(err(
                    format!("{f}.backend"),
                    format!("no backend named {:?}", fe.backend),
                    Some(&fe.backend),
                ));
            }
            for (j, r) in fe.use_backend.iter().enumerate() {
                let rf = format!("{f}.use_backend[{j}]");
                if let Err((field, message)) = r.check() {
                    // The line of the value at fault, else of the rule's backend.
                    let needle = match field {
                        "path_regex" => r.path_regex.as_deref(),
                        "path_prefix" => r.path_prefix.as_deref(),
                        "path_exact" => r.path_exact.as_deref(),
                        "host" => r.host.as_deref(),
                        "header.name" => r.header.as_ref().map(|h| h.name.as_str()),
                        _ => None,
                    };
                    let needle = needle.unwrap_or(&r.backend);
                    return Err(err(format!("{rf}.{field}"), message, Some(needle)));
                }
                if !names.contains(r.backend.as_str()) {
                    return Err(err(
                        format!("{rf}.backend"),
                        format!("no backend named {:?}", r.backend),
                        Some(&r.backend),
                    ));
                }
            }
            for (j, r) in fe.priority_rules.iter().enumerate() {
                if !(-2047..=2047).contains(&r.class) {
                    return Err(err(
                        format!("{f}.priority_rules[{j}].class"),
                        "must be between -2047 and 2047".into(),
                        Some("class"),
                    ));
                }
                if r.path_prefix.is_none() && r.header.is_none() && r.source.is_none() {
                    return Err(err(
                        format!("{f}.priority_rules[{j}]"),
                        "give at least one of path_prefix, header, source".into(),
                        Some("class"),
                    ));
                }
                if let Some(h) = &r.header
                    && http::HeaderName::from_bytes(h.name.as_bytes()).is_err()
                {
                    return Err(err(
                        format!("{f}.priority_rules[{j}].header.name"),
                        format!("{:?} is not a header name", h.name),
                        Some(&h.name),
                    ));
                }
            }
        }
        if let Some(a) = &self.admin
            && let Err((field, message)) = a.check()
        {
            return Err(err(format!("admin.{field}"), message, Some("admin:")));
        }
        Ok(())
    }
}

/// First line (1-based) of `text` containing `needle`, to point errors at the source.
fn find_line(text: &str, needle: &str) -> Option<usize> {
    text.lines().position(|l| l.contains(needle)).map(|i| i + 1)
}
