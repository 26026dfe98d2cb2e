//! YAML configuration of the proxy.
//!
//! The same [`ProxyConfig`] is read from a file of its own (`tack-proxy --config FILE`)
//! or embedded in a Tack profile under a `proxy:` key. Unknown keys are refused, and
//! every error names the field (as a path such as `backends[0].servers[1].weight`)
//! and, where the YAML parser knows it, the line.
//!
//! Durations are written the HAProxy way: `100ms`, `2s`, `5m`, `1h`, `1d`; a bare
//! number is milliseconds (HAProxy's default unit for timeouts).

use std::fmt;
use std::net::SocketAddr;
use std::path::Path;
use std::time::Duration;

use ipnet::IpNet;
use serde::{Deserialize, Deserializer, de};

pub mod admin;
pub mod route;
pub mod tls;
mod validate;

/// A configuration error: which field, where, and why.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ConfigError {
    /// The file could not be read.
    #[error("cannot read {path}: {source}")]
    Io {
        /// The file.
        path: String,
        /// The I/O error.
        source: std::io::Error,
    },
    /// The YAML did not parse or a field had a bad type or value (the message
    /// names the field path and the line).
    #[error("{0}")]
    Parse(String),
    /// The YAML parsed but is not a valid configuration.
    #[error("{field}: {message}{}", line.map(|l| format!(" (line {l})")).unwrap_or_default())]
    Invalid {
        /// Path of the offending field, e.g. `backends[0].servers[1].cookie`.
        field: String,
        /// What is wrong.
        message: String,
        /// Line in the source text, when it could be located.
        line: Option<usize>,
    },
}

/// A duration written as `100ms`, `2s`, `5m`, `1h`, `1d`, or a bare number of milliseconds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Default)]
pub struct Dur(pub Duration);

impl Dur {
    /// Parse HAProxy's time format.
    pub fn parse(s: &str) -> Result<Dur, String> {
        let s = s.trim();
        let split = s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len());
        let (num, unit) = s.split_at(split);
        if num.is_empty() {
            return Err(format!(
                "invalid duration {s:?}: expected a number with an optional unit (us, ms, s, m, h, d)"
            ));
        }
        let n: u64 = num
            .parse()
            .map_err(|_| format!("invalid duration {s:?}: number too large"))?;
        let d = match unit {
            "us" => Duration::from_micros(n),
            "" | "ms" => Duration::from_millis(n),
            "s" => Duration::from_secs(n),
            "m" => Duration::from_secs(n.saturating_mul(60)),
            "h" => Duration::from_secs(n.saturating_mul(3600)),
            "d" => Duration::from_secs(n.saturating_mul(86400)),
            _ => {
                return Err(format!(
                    "invalid duration {s:?}: unknown unit {unit:?} (us, ms, s, m, h, d)"
                ));
            }
        };
        Ok(Dur(d))
    }
}

impl<'de> Deserialize<'de> for Dur {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl de::Visitor<'_> for V {
            type Value = Dur;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a duration such as 500ms, 2s, 5m, 1h or a number of milliseconds")
            }
            fn visit_u64<E: de::Error>(self, v: u64) -> Result<Dur, E> {
                Ok(Dur(Duration::from_millis(v)))
            }
            fn visit_i64<E: de::Error>(self, v: i64) -> Result<Dur, E> {
                u64::try_from(v)
                    .map(|v| Dur(Duration::from_millis(v)))
                    .map_err(|_| E::custom("a duration cannot be negative"))
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Dur, E> {
                Dur::parse(v).map_err(E::custom)
            }
        }
        d.deserialize_any(V)
    }
}

/// A server weight, 0..=256 as in HAProxy.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Weight(pub u32);

impl Default for Weight {
    fn default() -> Self {
        Weight(1)
    }
}

impl<'de> Deserialize<'de> for Weight {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let v = u32::deserialize(d)?;
        if v > 256 {
            return Err(de::Error::custom(format!(
                "weight {v} out of range 0..=256"
            )));
        }
        Ok(Weight(v))
    }
}

/// A positive count (rise, fall, retries are at least 1).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Positive(pub u32);

impl<'de> Deserialize<'de> for Positive {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let v = u32::deserialize(d)?;
        if v == 0 {
            return Err(de::Error::custom("must be at least 1"));
        }
        Ok(Positive(v))
    }
}

/// The whole proxy configuration (a file of its own, or a profile's `proxy:` section).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ProxyConfig {
    /// Listeners.
    #[serde(default)]
    pub frontends: Vec<FrontendConfig>,
    /// Server pools.
    pub backends: Vec<BackendConfig>,
    /// TCP frontends that pass TLS through (SNI routing, session-ID stickiness).
    #[serde(default)]
    pub passthrough: Vec<tls::PassthroughConfig>,
    /// Prometheus endpoint.
    #[serde(default)]
    pub metrics: Option<MetricsConfig>,
    /// Runtime admin API.
    #[serde(default)]
    pub admin: Option<admin::AdminConfig>,
}

/// The Prometheus endpoint.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MetricsConfig {
    /// Address to serve `GET /metrics` on.
    pub listen: SocketAddr,
}

/// A listener and the backend it feeds.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FrontendConfig {
    /// Name (in logs and metrics).
    pub name: String,
    /// Addresses to listen on (port 0 picks a free port).
    pub bind: Vec<SocketAddr>,
    /// The backend requests go to when no `use_backend` rule matches.
    pub backend: String,
    /// Content switching: the first rule whose conditions all match chooses the
    /// request's backend.
    #[serde(default)]
    pub use_backend: Vec<route::UseBackend>,
    /// Connections start with a PROXY protocol header (v1 or v2, from Tack's L4
    /// tier or another proxy): the client address it carries is the client's.
    #[serde(default)]
    pub accept_proxy: bool,
    /// Set `IP_FREEBIND` so the proxy can listen on a VIP that is not (yet) on an
    /// interface, e.g. behind Tack's L4 tier in DSR mode.
    #[serde(default)]
    pub freebind: bool,
    /// Set `IP_TRANSPARENT` (needs `CAP_NET_ADMIN`).
    #[serde(default)]
    pub transparent: bool,
    /// Accept HTTP/2 with prior knowledge (h2c) beside HTTP/1.1 on the same port.
    #[serde(default = "yes")]
    pub http2: bool,
    /// Rules that give requests a priority class (first match wins).
    #[serde(default)]
    pub priority_rules: Vec<PriorityRule>,
    /// Class of requests no rule matches.
    #[serde(default)]
    pub default_class: i32,
    /// Write an access log line per request (log target `tack_proxy::access`).
    #[serde(default = "yes")]
    pub access_log: bool,
    /// Idle time allowed between two requests on a kept-alive client connection,
    /// and to receive a request head (HAProxy's `timeout http-keep-alive` and
    /// `timeout http-request`).
    #[serde(default = "default_keepalive")]
    pub keepalive_timeout: Dur,
    /// Client inactivity allowed while a request body is received or a response
    /// sent (HAProxy's `timeout client`).
    #[serde(default = "default_client_timeout")]
    pub client_timeout: Dur,
    /// Serve HTTP/1.1 clients with the fast path (heads parsed and rewritten in
    /// place, bodies copied with their framing); `false` serves every connection
    /// with hyper. Requests the fast path does not handle go to hyper either way.
    #[serde(default = "yes")]
    pub fast_path: bool,
    /// Terminate TLS on this frontend's addresses.
    #[serde(default)]
    pub tls: Option<tls::FrontendTls>,
    /// Path prefixes whose requests are secure even over plain HTTP (every
    /// request on a TLS frontend is secure).
    #[serde(default)]
    pub secure_paths: Vec<String>,
    /// Rewrite selected URLs in HTML responses to a CDN ([`crate::cdn`]).
    #[serde(default)]
    pub cdn: Option<crate::cdn::CdnConfig>,
    /// Cache the pages served ([`crate::cache`]).
    #[serde(default)]
    pub cache: Option<crate::cache::CacheConfig>,
}

fn yes() -> bool {
    true
}
fn default_client_timeout() -> Dur {
    Dur(Duration::from_secs(30))
}
fn default_keepalive() -> Dur {
    Dur(Duration::from_secs(10))
}

/// A rule that sets the priority class of a request. As with HAProxy's
/// `set-priority-class`, a lower class is a higher priority: class -10 is served
/// before class 0. All conditions given must match.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PriorityRule {
    /// The class to set (-2047..=2047 as in HAProxy).
    pub class: i32,
    /// Path prefix the request must have.
    #[serde(default)]
    pub path_prefix: Option<String>,
    /// Header the request must carry (with this value, if one is given).
    #[serde(default)]
    pub header: Option<HeaderMatch>,
    /// Source network the client must be in.
    #[serde(default)]
    pub source: Option<IpNet>,
}

/// A header condition.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HeaderMatch {
    /// Header name (case-insensitive).
    pub name: String,
    /// Exact value; absent means "present with any value".
    #[serde(default)]
    pub value: Option<String>,
}

/// Load-balancing algorithm (HAProxy's `balance`).
#[derive(Debug, Clone, Deserialize, PartialEq, Eq, Default)]
#[serde(deny_unknown_fields, rename_all = "snake_case", tag = "algorithm")]
pub enum Balance {
    /// Weighted round robin.
    #[default]
    Roundrobin,
    /// Fewest active requests relative to weight.
    Leastconn,
    /// Random with `draws` choices, keeping the least loaded (HAProxy `random(2)`).
    Random {
        /// Number of draws (2 by default).
        #[serde(default = "two")]
        draws: u32,
    },
    /// Hash of the client's source address.
    Source,
    /// Hash of the URI (HAProxy `balance uri [len N] [depth N] [whole] [path-only]`).
    Uri {
        /// Hash the whole URI including the query string.
        #[serde(default)]
        whole: bool,
        /// Hash only the path (not the authority of an absolute URI).
        #[serde(default)]
        path_only: bool,
        /// Hash at most this many characters (0 = all).
        #[serde(default)]
        len: usize,
        /// Hash at most this many directories (0 = all).
        #[serde(default)]
        depth: usize,
    },
    /// Hash of a URL query parameter; requests without it are round-robined.
    UrlParam {
        /// Parameter name.
        name: String,
    },
    /// Hash of a request header; requests without it are round-robined.
    Hdr {
        /// Header name.
        name: String,
        /// Hash only the domain-significant part (HAProxy `use_domain_only`).
        #[serde(default)]
        use_domain_only: bool,
    },
}

fn two() -> u32 {
    2
}

/// How hash-based algorithms map a hash to a server (HAProxy's `hash-type`).
#[derive(Debug, Clone, Copy, Deserialize, PartialEq, Eq, Default)]
#[serde(rename_all = "kebab-case")]
pub enum HashType {
    /// `hash % total weight` over the live servers (moves most keys on any change).
    #[default]
    MapBased,
    /// Ketama-compatible consistent hashing (moves ~1/n of the keys when a server
    /// leaves).
    Consistent,
}

/// Which string names a server on the consistent-hash ring.
#[derive(Debug, Clone, Copy, Deserialize, PartialEq, Eq, Default)]
#[serde(rename_all = "kebab-case")]
pub enum HashKey {
    /// The server's name (stable across address changes).
    #[default]
    Id,
    /// `ip:port`, as libketama / memcached clients do.
    AddrPort,
}

/// Cookie persistence mode (HAProxy's `cookie <name> rewrite|insert|prefix`).
#[derive(Debug, Clone, Copy, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum CookieMode {
    /// The proxy inserts `Set-Cookie: NAME=<server cookie>`.
    Insert,
    /// The server sets the cookie; the proxy rewrites its value to the server cookie.
    Rewrite,
    /// The server sets the cookie; the proxy prefixes its value with `<server cookie>~`.
    Prefix,
}

/// Cookie-based persistence (HAProxy's `cookie` keyword).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CookieConfig {
    /// Cookie name.
    pub name: String,
    /// Mode.
    pub mode: CookieMode,
    /// Insert mode: remove the cookie from requests so servers never see it, and do
    /// not re-send it to a client that already has the right one.
    #[serde(default)]
    pub indirect: bool,
    /// Insert mode: add `Cache-control: private` to cacheable responses carrying it.
    #[serde(default)]
    pub nocache: bool,
    /// Insert mode: only insert on responses to POST requests.
    #[serde(default)]
    pub postonly: bool,
    /// Add the `HttpOnly` attribute.
    #[serde(default)]
    pub httponly: bool,
    /// Add the `Secure` attribute.
    #[serde(default)]
    pub secure: bool,
    /// Add `domain=` attributes.
    #[serde(default)]
    pub domain: Vec<String>,
    /// Insert mode: cookies idle longer than this are ignored; the last-seen date is
    /// encoded in the cookie value as HAProxy does.
    #[serde(default)]
    pub maxidle: Option<Dur>,
    /// Insert mode: cookies first issued longer ago than this are ignored.
    #[serde(default)]
    pub maxlife: Option<Dur>,
}

/// Persistence on an application session ID (e.g. `JSESSIONID`), learnt from the
/// server's response and matched on later requests.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SessionIdConfig {
    /// Cookie carrying the session ID (learnt from `Set-Cookie`, matched in `Cookie`).
    #[serde(default)]
    pub cookie: Option<String>,
    /// URL parameter carrying the session ID, in the query (`?jsessionid=`) or as a
    /// path parameter (`;jsessionid=`); matched on requests, and learnt from the
    /// `Location` header of responses.
    #[serde(default)]
    pub url_param: Option<String>,
    /// Maximum entries in the table (least recently used are evicted).
    #[serde(default = "default_table_size")]
    pub table_size: usize,
    /// An entry not used for this long expires.
    #[serde(default = "default_session_expire")]
    pub expire: Dur,
    /// Which requests with a known session ID go to its server.
    #[serde(default)]
    pub pin: SessionPin,
}

/// Which requests the session-ID table pins (seed 003).
#[derive(Debug, Clone, Copy, Deserialize, PartialEq, Eq, Default)]
#[serde(rename_all = "snake_case")]
pub enum SessionPin {
    /// Every request with a known ID (003:1-3, 15).
    #[default]
    Always,
    /// Secure requests only (arrived over TLS, or on a frontend's
    /// `secure_paths`), through the server's SSL context; the others are load
    /// balanced freely and leave the table as it is (003:4-14, 22-25).
    Secure,
}

fn default_table_size() -> usize {
    100_000
}
fn default_session_expire() -> Dur {
    Dur(Duration::from_secs(1800))
}

/// Hash-group persistence: keys hash into `groups` groups, each pinned to a server.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HashGroupConfig {
    /// What identifies a client.
    pub key: GroupKey,
    /// Number of groups (the table's size, independent of the number of clients).
    #[serde(default = "default_groups")]
    pub groups: usize,
}

fn default_groups() -> usize {
    4096
}

/// The key of hash-group persistence, written as HAProxy sample fetches:
/// `src`, `hdr(<name>)`, `cookie(<name>)` or `url_param(<name>)`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum GroupKey {
    /// The client's source address (`src`).
    Source,
    /// A request header (`hdr(name)`).
    Header(String),
    /// A request cookie (`cookie(name)`).
    Cookie(String),
    /// A URL query parameter (`url_param(name)`).
    UrlParam(String),
}

impl GroupKey {
    /// Parse `src`, `hdr(x)`, `cookie(x)`, `url_param(x)`.
    pub fn parse(s: &str) -> Result<GroupKey, String> {
        let s = s.trim();
        if s == "src" || s == "source" {
            return Ok(GroupKey::Source);
        }
        let bad = || {
            format!(
                "invalid key {s:?}: expected src, hdr(<name>), cookie(<name>) or url_param(<name>)"
            )
        };
        let (f, rest) = s.split_once('(').ok_or_else(bad)?;
        let arg = rest
            .strip_suffix(')')
            .filter(|a| !a.is_empty())
            .ok_or_else(bad)?
            .to_string();
        match f {
            "hdr" | "req.hdr" => Ok(GroupKey::Header(arg)),
            "cookie" | "req.cook" => Ok(GroupKey::Cookie(arg)),
            "url_param" | "urlp" => Ok(GroupKey::UrlParam(arg)),
            _ => Err(bad()),
        }
    }
}

impl<'de> Deserialize<'de> for GroupKey {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        GroupKey::parse(&s).map_err(de::Error::custom)
    }
}

/// Health check kind.
#[derive(Debug, Clone, Copy, Deserialize, PartialEq, Eq, Default)]
#[serde(rename_all = "snake_case")]
pub enum CheckKind {
    /// A TCP connect.
    #[default]
    Tcp,
    /// An HTTP request whose status must match.
    Http,
}

/// Health checks (HAProxy's `check inter rise fall` and `option httpchk`).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HealthCheckConfig {
    /// TCP or HTTP.
    #[serde(default, rename = "type")]
    pub kind: CheckKind,
    /// HTTP method.
    #[serde(default = "default_method")]
    pub method: String,
    /// HTTP path.
    #[serde(default = "default_path")]
    pub path: String,
    /// Expected status; absent means any 2xx or 3xx, as HAProxy's `httpchk`.
    #[serde(default)]
    pub expect_status: Option<u16>,
    /// Time between checks.
    #[serde(default = "default_inter")]
    pub interval: Dur,
    /// Time allowed for one check (defaults to the interval).
    #[serde(default)]
    pub timeout: Option<Dur>,
    /// Consecutive successes to bring a server up.
    #[serde(default = "default_rise")]
    pub rise: Positive,
    /// Consecutive failures to take a server down.
    #[serde(default = "default_fall")]
    pub fall: Positive,
}

fn default_method() -> String {
    "GET".into()
}
fn default_path() -> String {
    "/".into()
}
fn default_inter() -> Dur {
    Dur(Duration::from_secs(2))
}
fn default_rise() -> Positive {
    Positive(2)
}
fn default_fall() -> Positive {
    Positive(3)
}

/// Timeouts of a backend.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Timeouts {
    /// Connecting to a server.
    #[serde(default = "default_connect")]
    pub connect: Dur,
    /// Waiting for a server's response headers.
    #[serde(default = "default_server")]
    pub server: Dur,
    /// Waiting in a server's queue; past it the request gets `503`.
    #[serde(default = "default_queue")]
    pub queue: Dur,
    /// Idle pooled connections to servers are closed after this.
    #[serde(default = "default_pool_idle")]
    pub pool_idle: Dur,
}

fn default_connect() -> Dur {
    Dur(Duration::from_secs(5))
}
fn default_server() -> Dur {
    Dur(Duration::from_secs(60))
}
fn default_queue() -> Dur {
    Dur(Duration::from_secs(10))
}
fn default_pool_idle() -> Dur {
    Dur(Duration::from_secs(30))
}

impl Default for Timeouts {
    fn default() -> Self {
        Timeouts {
            connect: default_connect(),
            server: default_server(),
            queue: default_queue(),
            pool_idle: default_pool_idle(),
        }
    }
}

/// Administrative state of a server.
#[derive(Debug, Clone, Copy, Deserialize, PartialEq, Eq, Default)]
#[serde(rename_all = "snake_case")]
pub enum AdminState {
    /// In rotation.
    #[default]
    Up,
    /// Keeps its pinned clients, takes no new ones.
    Drain,
    /// Takes nothing.
    Maint,
}

/// A server of a backend.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ServerConfig {
    /// Name (logs, metrics, default cookie value).
    pub name: String,
    /// Address.
    pub address: SocketAddr,
    /// Weight, 0..=256 (0 takes no load-balanced traffic).
    #[serde(default)]
    pub weight: Weight,
    /// Cookie value that designates the server; defaults to its name.
    #[serde(default)]
    pub cookie: Option<String>,
    /// Most concurrent requests sent to the server (0 = unlimited); more wait in its queue.
    #[serde(default)]
    pub maxconn: u32,
    /// Most requests waiting in its queue (0 = unlimited); past it, requests are
    /// redispatched where persistence allows, else get `503`.
    #[serde(default)]
    pub maxqueue: u32,
    /// Administrative state.
    #[serde(default)]
    pub state: AdminState,
    /// Redirect persistence: GET and HEAD requests for this server are answered with
    /// `302 Location: <redir><path>` (HAProxy's `redir`).
    #[serde(default)]
    pub redir: Option<String>,
    /// Run health checks on this server (when the backend has them).
    #[serde(default = "yes")]
    pub check: bool,
    /// Where the server speaks TLS, when it also speaks plain HTTP on `address`
    /// (needs the backend's `server_tls`): secure requests go here.
    #[serde(default)]
    pub tls_address: Option<SocketAddr>,
    /// Server name (SNI) for this server's SSL context (default: `server_tls.sni`).
    #[serde(default)]
    pub tls_sni: Option<String>,
    /// A backup server: used only when no primary server is usable.
    #[serde(default)]
    pub backup: bool,
    /// Send a PROXY protocol header on connections to this server (default:
    /// the backend's `send_proxy`).
    #[serde(default)]
    pub send_proxy: Option<ProxyProtocol>,
}

/// A PROXY protocol version.
#[derive(Debug, Clone, Copy, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum ProxyProtocol {
    /// The text header (`PROXY TCP4 ...`).
    V1,
    /// The binary header.
    V2,
}

/// A pool of servers with its scheduling and persistence.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BackendConfig {
    /// Name.
    pub name: String,
    /// Scheduling algorithm.
    #[serde(default)]
    pub balance: Balance,
    /// Map-based or consistent hashing for hash algorithms.
    #[serde(default)]
    pub hash_type: HashType,
    /// What names servers on the consistent-hash ring.
    #[serde(default)]
    pub hash_key: HashKey,
    /// Cookie persistence.
    #[serde(default)]
    pub cookie: Option<CookieConfig>,
    /// Application session-ID persistence.
    #[serde(default)]
    pub session_id: Option<SessionIdConfig>,
    /// Hash-group persistence.
    #[serde(default)]
    pub hash_groups: Option<HashGroupConfig>,
    /// Send a request whose pinned server is down or full elsewhere (HAProxy's
    /// `option redispatch`); without it such requests get `503`.
    #[serde(default = "yes")]
    pub redispatch: bool,
    /// Connection attempts to a server after the first fails.
    #[serde(default = "default_retries")]
    pub retries: u32,
    /// Add `X-Forwarded-For` (HAProxy's `option forwardfor`).
    #[serde(default)]
    pub forwardfor: bool,
    /// Timeouts.
    #[serde(default)]
    pub timeouts: Timeouts,
    /// Health checks.
    #[serde(default)]
    pub health_check: Option<HealthCheckConfig>,
    /// SSL contexts to the servers.
    #[serde(default)]
    pub server_tls: Option<tls::ServerTls>,
    /// Send a PROXY protocol header on connections to the servers.
    #[serde(default)]
    pub send_proxy: Option<ProxyProtocol>,
    /// Speak HTTP/2 to the servers, one multiplexed connection per server: h2c
    /// with prior knowledge to plain servers; through `server_tls`, offered by
    /// ALPN and spoken where the server chooses it (HTTP/1.1 otherwise).
    /// Requests for this backend are served by the hyper path.
    #[serde(default)]
    pub http2: bool,
    /// Servers.
    pub servers: Vec<ServerConfig>,
}

fn default_retries() -> u32 {
    3
}

impl ProxyConfig {
    /// Parse and validate YAML text.
    pub fn from_yaml_str(text: &str) -> Result<ProxyConfig, ConfigError> {
        let cfg: ProxyConfig =
            serde_yaml_ng::from_str(text).map_err(|e| ConfigError::Parse(e.to_string()))?;
        cfg.validate_with_source(Some(text))?;
        Ok(cfg)
    }

    /// Parse and validate either a file of its own or a Tack profile that carries
    /// the configuration under a top-level `proxy:` key (other keys of the profile
    /// are left to their owners). Errors keep their line numbers.
    pub fn from_yaml_str_or_profile(text: &str) -> Result<ProxyConfig, ConfigError> {
        #[derive(Deserialize)]
        struct Profile {
            proxy: ProxyConfig,
        }
        let is_profile = serde_yaml_ng::from_str::<serde_yaml_ng::Value>(text)
            .map_err(|e| ConfigError::Parse(e.to_string()))?
            .get("proxy")
            .is_some();
        if !is_profile {
            return Self::from_yaml_str(text);
        }
        let p: Profile =
            serde_yaml_ng::from_str(text).map_err(|e| ConfigError::Parse(e.to_string()))?;
        p.proxy
            .validate_with_source(Some(text))
            .map_err(|e| match e {
                ConfigError::Invalid {
                    field,
                    message,
                    line,
                } => ConfigError::Invalid {
                    field: format!("proxy.{field}"),
                    message,
                    line,
                },
                other => other,
            })?;
        Ok(p.proxy)
    }

    /// Read, parse and validate a file (a file of its own or a profile with `proxy:`).
    pub fn from_file(path: impl AsRef<Path>) -> Result<ProxyConfig, ConfigError> {
        let path = path.as_ref();
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Io {
            path: path.display().to_string(),
            source,
        })?;
        Self::from_yaml_str_or_profile(&text)
    }

    /// Check cross-field rules (names unique, references resolve, options fit the mode).
    /// Call this after deserializing the section out of a larger document.
    pub fn validate(&self) -> Result<(), ConfigError> {
        self.validate_with_source(None)
    }
}

/// Cookie names are RFC 6265 tokens.
pub(crate) fn valid_cookie_name(s: &str) -> bool {
    !s.is_empty()
        && s.bytes()
            .all(|c| c.is_ascii_graphic() && !b"()<>@,;:\\\"/[]?={}".contains(&c))
}

/// Server cookie values: no HAProxy delimiters and nothing that needs quoting.
pub(crate) fn valid_cookie_value(s: &str) -> bool {
    !s.is_empty()
        && s.bytes()
            .all(|c| c.is_ascii_graphic() && !b"~|;,=\"\\".contains(&c))
}

#[cfg(test)]
mod tests;
