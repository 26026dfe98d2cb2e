//! `health:` of a service or a server: the active health check `tack`
//! runs against each server (see [`crate::health`]): `tcp`, `http` or
//! `https`.
//!
//! ```yaml
//! health: { check: http, path: /health, expect: [200], body: "ok",
//!           interval_ms: 1000, timeout_ms: 500, rise: 2, fall: 3 }
//! ```
//!
//! A service's `health` applies to each of its servers; a server's own
//! `health` replaces it.

use std::time::Duration;

use serde::Deserialize;

use super::{FieldError, ServerSection, ServiceSection};

/// What a check does.
#[derive(Debug, Clone, Copy, Deserialize, PartialEq, Eq, Hash)]
#[serde(rename_all = "lowercase")]
pub enum CheckKind {
    /// A TCP connection is accepted.
    Tcp,
    /// An HTTP request is answered with an expected status (and body).
    Http,
    /// The same over TLS.
    Https,
}

/// A health check as written in the profile.
#[derive(Debug, Clone, Deserialize, PartialEq, Eq, Hash)]
#[serde(deny_unknown_fields)]
pub struct HealthSection {
    /// `tcp` or `http`.
    pub check: CheckKind,
    /// Port to check (default: the server's port, else the service's).
    #[serde(default)]
    pub port: Option<u16>,
    /// HTTP: the path requested.
    #[serde(default = "root_path")]
    pub path: String,
    /// HTTP: the `Host` header (default: the server's address).
    #[serde(default)]
    pub host: Option<String>,
    /// HTTP: the statuses that pass (default: any 2xx or 3xx).
    #[serde(default)]
    pub expect: Vec<u16>,
    /// HTTP: a string the body must contain.
    #[serde(default)]
    pub body: Option<String>,
    /// HTTPS: the CA certificates (PEM) the server's certificate must
    /// chain to; without it the certificate is not verified (the check
    /// tells whether the server answers, not who it is).
    #[serde(default)]
    pub ca: Option<std::path::PathBuf>,
    /// HTTPS: the name sent in SNI and verified (default: `host`, else
    /// the server's address).
    #[serde(default)]
    pub sni: Option<String>,
    /// Time between checks, in milliseconds.
    #[serde(default = "interval_ms")]
    pub interval_ms: u32,
    /// Time a check may take, in milliseconds (less than the interval).
    #[serde(default = "timeout_ms")]
    pub timeout_ms: u32,
    /// Consecutive passing checks that bring a down server up.
    #[serde(default = "rise")]
    pub rise: u32,
    /// Consecutive failing checks that take an up server down.
    #[serde(default = "fall")]
    pub fall: u32,
    /// Passive health: take the server down when it leaves this many TCP
    /// SYNs unanswered or sends this many resets (NAT and full NAT, where
    /// its packets come back) within one interval; the active check brings
    /// it back after `rise` passes. Off when absent.
    #[serde(default)]
    pub passive: Option<u32>,
}

fn root_path() -> String {
    "/".into()
}
fn interval_ms() -> u32 {
    2000
}
fn timeout_ms() -> u32 {
    1000
}
fn rise() -> u32 {
    2
}
fn fall() -> u32 {
    3
}

impl HealthSection {
    /// Time between checks.
    pub fn interval(&self) -> Duration {
        Duration::from_millis(u64::from(self.interval_ms))
    }

    /// Time a check may take.
    pub fn timeout(&self) -> Duration {
        Duration::from_millis(u64::from(self.timeout_ms))
    }

    /// Whether HTTP status `s` passes.
    pub fn status_passes(&self, s: u16) -> bool {
        if self.expect.is_empty() {
            (200..400).contains(&s)
        } else {
            self.expect.contains(&s)
        }
    }

    /// Checks the values; `field` names the section (`services[0].health`).
    pub fn validate(&self, field: &str) -> Result<(), FieldError> {
        let err = |k: &str, m: &str| Err(FieldError::new(format!("{field}.{k}"), m.to_string()));
        if !(10..=3_600_000).contains(&self.interval_ms) {
            return err("interval_ms", "must be 10..3600000");
        }
        if self.timeout_ms == 0 || self.timeout_ms > self.interval_ms {
            return err("timeout_ms", "must be 1..interval_ms");
        }
        if !(1..=100).contains(&self.rise) {
            return err("rise", "must be 1..100");
        }
        if !(1..=100).contains(&self.fall) {
            return err("fall", "must be 1..100");
        }
        if self.passive == Some(0) {
            return err(
                "passive",
                "must be at least 1 (omit it to turn passive health off)",
            );
        }
        if self.port == Some(0) {
            return err("port", "must be 1..65535");
        }
        if self.check != CheckKind::Https && (self.ca.is_some() || self.sni.is_some()) {
            return err("check", "ca and sni are for `https` checks");
        }
        if let Some(ca) = &self.ca
            && let Err(e) = std::fs::metadata(ca)
        {
            return err("ca", &format!("{}: {e}", ca.display()));
        }
        if self.check != CheckKind::Tcp {
            if !self.path.starts_with('/') || self.path.bytes().any(|b| b <= b' ' || b == 0x7f) {
                return err(
                    "path",
                    "must start with / and hold no spaces or control characters",
                );
            }
            if let Some(h) = &self.host
                && (h.is_empty() || h.bytes().any(|b| b <= b' ' || b == 0x7f))
            {
                return err("host", "must be a host name without spaces");
            }
            if self.expect.iter().any(|s| !(100..=599).contains(s)) {
                return err("expect", "statuses are 100..599");
            }
        } else if self.host.is_some() || self.body.is_some() || !self.expect.is_empty() {
            return err(
                "check",
                "host, expect and body are for `http` and `https` checks",
            );
        }
        Ok(())
    }
}

impl ServiceSection {
    /// The health check of server `s` of this service: its own, else the
    /// service's; `None` when neither has one.
    pub fn health_of<'a>(&'a self, s: &'a ServerSection) -> Option<&'a HealthSection> {
        s.health.as_ref().or(self.health.as_ref())
    }

    /// The port server `s` is checked on: the check's, else the server's,
    /// else the service's; `None` for a service of every port whose check
    /// names none (refused by validation).
    pub fn health_port(&self, s: &ServerSection) -> Option<u16> {
        self.health_of(s)
            .and_then(|h| h.port)
            .or(s.port)
            .or(self.port)
    }
}
