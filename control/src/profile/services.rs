//! The load-balancing part of a profile: virtual services with their real
//! servers and persistence, static routes, and table sizes and timeouts.
//!
//! These are the operator's words (servers referenced by name, persistence as
//! a netmask, prefix or natural class, timeouts in seconds); they compile into
//! the dataplane's [`tack_dataplane::model`] and [`PipelineConfig`].

use std::net::{IpAddr, Ipv4Addr};
use std::time::Duration;

use ipnet::IpNet;
use serde::Deserialize;
use tack_dataplane::conn::{FullPolicy, Timeouts};
use tack_dataplane::ids::ServerIdx;
use tack_dataplane::model::{
    ClientKeyRule, Config, ConfigError, ForwardMode, LocalPool, Persistence, Protocol, RealServer,
    Redirect, SchedulerKind, ServerState, Service,
};
use tack_dataplane::pipeline::Route;
use tack_dataplane::redirect::ServerUrls;

use super::{FieldError, HealthSection};

/// One virtual service.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct ServiceSection {
    /// The operator's name for it (LocalDirector's virtual id), unique.
    pub name: String,
    /// The virtual IP address (IPv4 or IPv6).
    pub vip: IpAddr,
    /// `tcp` or `udp`.
    #[serde(default = "tcp", with = "ProtocolName")]
    pub protocol: Protocol,
    /// Destination port; omit to serve every port of the VIP.
    #[serde(default)]
    pub port: Option<u16>,
    /// Scheduler for new clients: `rr`, `wrr`, `lc`, `wlc`, `sh`, `maglev`, `hrw`
    /// (or their long names, e.g. `weighted_round_robin`).
    #[serde(default, with = "SchedulerName")]
    pub scheduler: SchedulerKind,
    /// Maglev lookup table size (a prime); Maglev only.
    #[serde(default)]
    pub maglev_table_size: Option<u32>,
    /// Forwarding mode: `nat`, `fullnat`, `dsr` or `tunnel`.
    #[serde(default)]
    pub mode: ModeName,
    /// Source persistence; omit for none.
    #[serde(default)]
    pub persistence: Option<PersistenceSection>,
    /// Local (source) addresses for full NAT.
    #[serde(default)]
    pub local_addresses: Vec<IpAddr>,
    /// Local port range for full NAT, `first-last` (default 1024-65535).
    #[serde(default)]
    pub local_ports: Option<String>,
    /// The real servers.
    pub servers: Vec<ServerSection>,
    /// A redirect service (seed 000): every request is answered with a
    /// `302` to a server's `url` instead of being forwarded; omit for a
    /// forwarding service.
    #[serde(default)]
    pub redirect: Option<RedirectSection>,
    /// Answer TCP segments of connections no worker knows (after a restart)
    /// with a reset instead of dropping them. Leave off where another node
    /// may still hold the connection.
    #[serde(default)]
    pub reset_unknown: bool,
    /// SYN proxy (TCP NAT and full-NAT services): the appliance answers the
    /// handshake with SYN cookies and opens the server's connection only
    /// for a client that completed it, translating sequence numbers after.
    #[serde(default)]
    pub syn_proxy: bool,
    /// The active health check of every server (a server's own `health`
    /// replaces it); omit for none.
    #[serde(default)]
    pub health: Option<HealthSection>,
}

/// How a redirect service answers.
#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct RedirectSection {
    /// Path prefixes redirected to the server's `https_url` (e.g. `/checkout/`).
    #[serde(default)]
    pub secure_paths: Vec<String>,
    /// The primary virtual server as the backup (000: 9): while a server
    /// without a `backup` of its own is `down` or in `maint`, its directed
    /// address redirects its clients anew, to a live server.
    #[serde(default)]
    pub backup_to_primary: bool,
}

fn tcp() -> Protocol {
    Protocol::Tcp
}

/// A service's protocol as written in a profile (the dataplane's model has
/// no serde: the profile is the schema).
#[derive(Deserialize)]
#[serde(remote = "Protocol", rename_all = "lowercase")]
enum ProtocolName {
    Tcp,
    Udp,
}

/// A scheduler as written in a profile: its long name or the usual short one.
#[derive(Deserialize)]
#[serde(remote = "SchedulerKind", rename_all = "snake_case")]
enum SchedulerName {
    #[serde(alias = "rr")]
    RoundRobin,
    #[serde(alias = "wrr")]
    WeightedRoundRobin,
    #[serde(alias = "lc")]
    LeastConn,
    #[serde(alias = "wlc")]
    WeightedLeastConn,
    #[serde(alias = "sh")]
    SourceHash,
    #[serde(alias = "mh")]
    Maglev,
    #[serde(alias = "hrw")]
    Rendezvous,
    Failover,
}

/// A server state as written in a profile.
#[derive(Deserialize)]
#[serde(remote = "ServerState", rename_all = "lowercase")]
enum StateName {
    Up,
    Drain,
    Maint,
    Down,
}

/// Forwarding mode as written in a profile.
#[derive(Debug, Clone, Copy, Default, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum ModeName {
    /// Destination NAT; the servers route back through the appliance.
    #[default]
    Nat,
    /// Destination and source NAT to `local_addresses`.
    #[serde(alias = "full_nat", alias = "full-nat")]
    Fullnat,
    /// Direct server return (MAC rewrite; the VIP on the servers' loopback).
    Dsr,
    /// IP-in-IP tunnel to the servers.
    Tunnel,
}

impl From<ModeName> for ForwardMode {
    fn from(m: ModeName) -> ForwardMode {
        match m {
            ModeName::Nat => ForwardMode::Nat,
            ModeName::Fullnat => ForwardMode::FullNat,
            ModeName::Dsr => ForwardMode::Dsr,
            ModeName::Tunnel => ForwardMode::Tunnel,
        }
    }
}

/// Source persistence: all connections from one client key within `timeout`
/// minutes (counted from the end of its last connection) reach one server.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct PersistenceSection {
    /// Minutes a key stays bound after its last connection ends.
    pub timeout: u32,
    /// IPv4 netmask applied to the source (e.g. 255.255.255.0).
    #[serde(default)]
    pub netmask: Option<Ipv4Addr>,
    /// Prefix length applied to the source (IPv4 or IPv6).
    #[serde(default)]
    pub prefix: Option<u8>,
    /// Key on the source's natural class network (A → /8, B → /16, C → /24;
    /// class D and E sources are never sticky).
    #[serde(default)]
    pub natural_class: bool,
    /// With `natural_class`, only these classful networks (LocalDirector's
    /// `nc-subnet`, e.g. 172.16.0.0); other sources are keyed by address.
    #[serde(default)]
    pub networks: Vec<Ipv4Addr>,
}

/// A real server.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct ServerSection {
    /// Name, unique in the service (default: the address, or address:port).
    #[serde(default)]
    pub name: Option<String>,
    /// Address.
    pub address: IpAddr,
    /// Destination port on the server; omit to keep the client's.
    #[serde(default)]
    pub port: Option<u16>,
    /// Weight (0 takes no new clients).
    #[serde(default = "one")]
    pub weight: u16,
    /// `up`, `drain`, `maint` or `down`.
    #[serde(default, with = "StateName")]
    pub state: ServerState,
    /// The server (by name) that takes this one's sticky clients while it is down.
    #[serde(default)]
    pub backup: Option<String>,
    /// Redirect services: the server's URL (`http://host[:port]`), where
    /// its clients are sent with the path and query they asked for.
    #[serde(default)]
    pub url: Option<String>,
    /// Redirect services: the server's URL for secure paths (default: `url`
    /// with `https://`).
    #[serde(default)]
    pub https_url: Option<String>,
    /// Redirect services: the address of the server's directed virtual
    /// server, where the appliance forwards (NAT) the connections of the
    /// clients it redirected to this server (its `url` names this address).
    #[serde(default)]
    pub directed: Option<IpAddr>,
    /// This server's active health check, instead of the service's.
    #[serde(default)]
    pub health: Option<HealthSection>,
}

/// Checks a server URL base of a redirect service: a scheme, a host, no
/// path, nothing a `Location` header cannot carry.
fn url_base(url: &str, https_only: bool) -> Result<String, String> {
    let rest = url
        .strip_prefix("https://")
        .or_else(|| (!https_only).then(|| url.strip_prefix("http://")).flatten())
        .ok_or_else(|| {
            if https_only {
                format!("`{url}` is not an https:// URL")
            } else {
                format!("`{url}` is not an http:// or https:// URL")
            }
        })?;
    let host = rest.strip_suffix('/').unwrap_or(rest);
    if host.is_empty() || host.contains(['/', '?', '#']) {
        return Err(format!(
            "`{url}` must be a scheme and a host[:port], without a path"
        ));
    }
    if url.len() > 512 || !url.bytes().all(|b| b.is_ascii_graphic()) {
        return Err(format!(
            "`{url}` is not a usable URL (at most 512 visible ASCII characters)"
        ));
    }
    Ok(url.strip_suffix('/').unwrap_or(url).to_string())
}

fn one() -> u16 {
    1
}

impl ServerSection {
    /// The name other fields refer to this server by.
    pub fn display_name(&self) -> String {
        match (&self.name, self.port) {
            (Some(n), _) => n.clone(),
            (None, Some(p)) => format!("{}:{p}", self.address),
            (None, None) => self.address.to_string(),
        }
    }
}

/// A static route.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct RouteSection {
    /// Destination network (`0.0.0.0/0` and `::/0` for defaults).
    pub prefix: IpNet,
    /// Next hop; it must be on-link on one of the ports.
    pub via: IpAddr,
}

/// Table sizes (per worker) and timeouts.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct TablesSection {
    /// IPv4 connection table entries per worker (a NAT/full-NAT connection takes two).
    pub connections: usize,
    /// IPv6 connection table entries per worker.
    pub connections_v6: usize,
    /// Sticky bindings per worker.
    pub sticky: usize,
    /// When the connection table is full: `drop` new flows or `evict-oldest`.
    pub when_full: WhenFull,
    /// Neighbour (ARP/NDP) entries per worker.
    pub neighbours: usize,
    /// Timeouts in seconds.
    pub timeouts: TimeoutsSection,
}

impl Default for TablesSection {
    fn default() -> Self {
        TablesSection {
            connections: 1 << 18,
            connections_v6: 1 << 16,
            sticky: 1 << 16,
            when_full: WhenFull::Drop,
            neighbours: 4096,
            timeouts: TimeoutsSection::default(),
        }
    }
}

/// Full connection table policy.
#[derive(Debug, Clone, Copy, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "kebab-case")]
pub enum WhenFull {
    /// Refuse new flows (counted).
    Drop,
    /// Evict the connection closest to expiry (counted).
    EvictOldest,
}

/// Connection timeouts in seconds (IPVS-like defaults).
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct TimeoutsSection {
    /// TCP established.
    pub tcp_established: u64,
    /// TCP opening (SYN seen, SYN-ACK seen).
    pub tcp_syn: u64,
    /// TCP closing (FIN seen from either side, last ACK).
    pub tcp_fin: u64,
    /// TCP TIME_WAIT.
    pub tcp_time_wait: u64,
    /// TCP after a reset.
    pub tcp_close: u64,
    /// UDP.
    pub udp: u64,
}

impl Default for TimeoutsSection {
    fn default() -> Self {
        let t = Timeouts::default();
        TimeoutsSection {
            tcp_established: t.established.as_secs(),
            tcp_syn: t.syn_sent.as_secs(),
            tcp_fin: t.fin_wait.as_secs(),
            tcp_time_wait: t.time_wait.as_secs(),
            tcp_close: t.close.as_secs(),
            udp: t.udp.as_secs(),
        }
    }
}

impl TimeoutsSection {
    /// The dataplane's timeouts.
    pub fn to_timeouts(&self) -> Timeouts {
        let s = Duration::from_secs;
        Timeouts {
            syn_sent: s(self.tcp_syn),
            syn_recv: s(self.tcp_syn),
            established: s(self.tcp_established),
            fin_wait: s(self.tcp_fin),
            close_wait: s(self.tcp_fin),
            last_ack: s(self.tcp_fin),
            time_wait: s(self.tcp_time_wait),
            close: s(self.tcp_close),
            udp: s(self.udp),
        }
    }
}

impl From<WhenFull> for FullPolicy {
    fn from(w: WhenFull) -> FullPolicy {
        match w {
            WhenFull::Drop => FullPolicy::Drop,
            WhenFull::EvictOldest => FullPolicy::EvictOldest,
        }
    }
}

/// Parses `first-last`.
fn port_range(s: &str) -> Option<(u16, u16)> {
    let (a, b) = s.split_once('-')?;
    Some((a.trim().parse().ok()?, b.trim().parse().ok()?))
}

/// Builds the dataplane services. Errors name the offending field path.
pub fn build_services(
    services: &[ServiceSection],
    peer_locals: &[IpAddr],
) -> Result<Config, FieldError> {
    let mut out = Vec::with_capacity(services.len());
    // Directed virtual servers, after the profile's services (so that those
    // keep their indices), with the server each comes from.
    let mut directed: Vec<(usize, usize, Service)> = Vec::new();
    let mut wanted: Vec<(usize, IpAddr, String)> = Vec::new();
    let mut names = std::collections::HashSet::new();
    for (i, s) in services.iter().enumerate() {
        let f = |k: &str| format!("services[{i}].{k}");
        if s.name.is_empty() || s.name.contains(char::is_whitespace) {
            return Err(FieldError::new(
                f("name"),
                format!("`{}` is not a name (no spaces)", s.name),
            ));
        }
        if !names.insert(s.name.as_str()) {
            return Err(FieldError::new(
                f("name"),
                format!("service `{}` is defined twice", s.name),
            ));
        }
        let mut svc = Service::new(s.vip, s.protocol, s.port);
        svc.name = Some(s.name.clone());
        svc.scheduler = s.scheduler;
        if let Some(m) = s.maglev_table_size {
            if s.scheduler != SchedulerKind::Maglev {
                return Err(FieldError::new(
                    f("maglev_table_size"),
                    "only the maglev scheduler uses a table",
                ));
            }
            svc.maglev_table_size = m;
        }
        svc.mode = s.mode.into();
        if let Some(p) = &s.persistence {
            let rules = [p.netmask.is_some(), p.prefix.is_some(), p.natural_class]
                .iter()
                .filter(|b| **b)
                .count();
            if rules > 1 {
                return Err(FieldError::new(
                    f("persistence"),
                    "give one of netmask, prefix or natural_class",
                ));
            }
            if !p.networks.is_empty() && !p.natural_class {
                return Err(FieldError::new(
                    f("persistence.networks"),
                    "networks go with natural_class: true",
                ));
            }
            let key = if let Some(m) = p.netmask {
                ClientKeyRule::from_netmask(m)
                    .map_err(|e| FieldError::new(f("persistence.netmask"), e.to_string()))?
            } else if let Some(pl) = p.prefix {
                ClientKeyRule::Prefix(pl)
            } else if p.natural_class {
                ClientKeyRule::NaturalClass {
                    networks: p.networks.clone(),
                }
            } else {
                ClientKeyRule::Address
            };
            svc.persistence = Some(Persistence {
                key,
                timeout_minutes: p.timeout,
            });
        }
        if !s.local_addresses.is_empty() || s.local_ports.is_some() {
            let (port_min, port_max) = match &s.local_ports {
                Some(r) => port_range(r).ok_or_else(|| {
                    FieldError::new(
                        f("local_ports"),
                        format!("`{r}` is not a range like 1024-65535"),
                    )
                })?,
                None => (1024, 65535),
            };
            svc.local_pool = Some(LocalPool {
                addrs: s.local_addresses.clone(),
                port_min,
                port_max,
                // The other nodes' local addresses of the VIP's family.
                peer_addrs: peer_locals
                    .iter()
                    .filter(|a| a.is_ipv4() == s.vip.is_ipv4())
                    .copied()
                    .collect(),
            });
        }
        svc.reset_unknown = s.reset_unknown;
        svc.syn_proxy = s.syn_proxy;
        if let Some(r) = &s.redirect {
            if let Some(k) = r.secure_paths.iter().position(|p| !p.starts_with('/')) {
                return Err(FieldError::new(
                    format!("services[{i}].redirect.secure_paths[{k}]"),
                    "a path prefix starts with `/`".to_string(),
                ));
            }
            svc.redirect = Some(Redirect {
                secure_prefixes: r.secure_paths.clone(),
            });
        }
        let mut server_names = Vec::with_capacity(s.servers.len());
        if let Some(h) = &s.health {
            h.validate(&f("health"))?;
        }
        for (j, sv) in s.servers.iter().enumerate() {
            if let Some(h) = &sv.health {
                h.validate(&format!("services[{i}].servers[{j}].health"))?;
            }
            if s.health_of(sv).is_some() && s.health_port(sv).is_none() {
                return Err(FieldError::new(
                    format!("services[{i}].servers[{j}].health"),
                    "the service takes every port: give the check a `port`",
                ));
            }
            let name = sv.display_name();
            if server_names.contains(&name) {
                return Err(FieldError::new(
                    format!("services[{i}].servers[{j}]"),
                    format!("server `{name}` is listed twice"),
                ));
            }
            server_names.push(name);
        }
        for (j, sv) in s.servers.iter().enumerate() {
            let backup = match &sv.backup {
                None => None,
                Some(b) => Some(ServerIdx(
                    server_names.iter().position(|n| n == b).ok_or_else(|| {
                        FieldError::new(
                            format!("services[{i}].servers[{j}].backup"),
                            format!(
                                "no server named `{b}` in service `{}` (names: {})",
                                s.name,
                                server_names.join(", ")
                            ),
                        )
                    })? as u16,
                )),
            };
            svc.servers.push(RealServer {
                addr: sv.address,
                port: sv.port,
                weight: sv.weight,
                state: sv.state,
                backup,
                urls: server_urls(sv)
                    .map_err(|m| FieldError::new(format!("services[{i}].servers[{j}].url"), m))?,
            });
            if let Some(addr) = sv.directed {
                if s.redirect.is_none() {
                    return Err(FieldError::new(
                        format!("services[{i}].servers[{j}].directed"),
                        "`directed` is for the servers of a redirect service".to_string(),
                    ));
                }
                wanted.push((j, addr, sv.display_name()));
            }
        }
        // Once every server is known (a backup may come after its server).
        for (j, addr, server) in wanted.drain(..) {
            let anew = s.redirect.as_ref().is_some_and(|r| r.backup_to_primary);
            let d = directed_service(&svc, j, addr, &s.name, &server, anew);
            // Secure pages (000: 30): the HTTPS port of the directed address
            // goes to the same server.
            let https = s
                .redirect
                .as_ref()
                .is_some_and(|r| !r.secure_paths.is_empty())
                && svc.port != Some(443)
                && d.redirect.is_none();
            if https {
                let mut h = d.clone();
                h.port = Some(443);
                h.name = h.name.map(|n| format!("{n}/https"));
                directed.push((i, j, h));
            }
            directed.push((i, j, d));
        }
        out.push(svc);
    }
    let origins: Vec<(usize, usize)> = directed.iter().map(|(i, j, _)| (*i, *j)).collect();
    out.extend(directed.into_iter().map(|(_, _, d)| d));
    Config::new(out).map_err(|e| {
        let mut path = config_error_path(&e, services);
        // An error about a directed virtual server is its `directed` field's.
        if let Some(k) = path
            .strip_prefix("services[")
            .and_then(|r| r.split_once(']'))
            .and_then(|(k, _)| k.parse::<usize>().ok())
            .and_then(|k| k.checked_sub(services.len()))
            && let Some((i, j)) = origins.get(k)
        {
            path = format!("services[{i}].servers[{j}].directed");
        }
        FieldError::new(path, config_error_message(&e, services))
    })
}

/// The directed virtual server (seed 000: 2-5, 13) of server `j` of redirect
/// service `svc`: TCP at `addr` on the service's port, forwarded (NAT) to
/// that server alone. It shares the server's state and weight (both are
/// built from the same profile entry), except that a drained server, or
/// one of weight 0, still takes its directed clients: the redirector sent
/// them there. With `anew` (the primary virtual server as backup), a server
/// that is down or in maintenance and has no backup of its own gets a
/// redirect service at its directed address instead, over the primary's
/// servers: its clients are redirected anew.
fn directed_service(
    svc: &Service,
    j: usize,
    addr: IpAddr,
    name: &str,
    server: &str,
    anew: bool,
) -> Service {
    let mut d = Service::new(addr, Protocol::Tcp, svc.port);
    d.name = Some(format!("{name}/{server}"));
    let own = &svc.servers[j];
    if anew && own.backup.is_none() && !own.state.keeps_clients() {
        // The primary virtual server as the backup: a redirect service at
        // the directed address, over the primary's servers.
        d.redirect = svc.redirect.clone();
        d.servers = svc.servers.clone();
        return d;
    }
    // The server, then its backup (000: 9, 10, 24): the backup takes the
    // directed clients only while the server is down or in maintenance.
    d.scheduler = SchedulerKind::Failover;
    let own = |srv: &RealServer| {
        let mut srv = srv.clone();
        srv.backup = None;
        srv.urls = None;
        srv.weight = srv.weight.max(1);
        if srv.state == ServerState::Drain {
            srv.state = ServerState::Up;
        }
        srv
    };
    d.servers = vec![own(&svc.servers[j])];
    if let Some(b) = svc.servers[j]
        .backup
        .and_then(|b| svc.servers.get(usize::from(b)))
    {
        d.servers.push(own(b));
    }
    d
}

/// The profile path of what a dataplane configuration error is about.
fn config_error_path(e: &ConfigError, services: &[ServiceSection]) -> String {
    use ConfigError as E;
    match *e {
        E::DuplicateService { second, .. } => format!("services[{second}]"),
        E::InvalidVip { service, .. } => format!("services[{service}].vip"),
        E::ZeroPort { service } => format!("services[{service}].port"),
        E::TooManyServers { service, .. } => format!("services[{service}].servers"),
        E::DuplicateServer {
            service, second, ..
        } => format!("services[{service}].servers[{second}]"),
        E::InvalidServerAddr {
            service, server, ..
        }
        | E::FamilyMismatch {
            service, server, ..
        } => {
            format!("services[{service}].servers[{server}].address")
        }
        E::ZeroServerPort { service, server } => {
            format!("services[{service}].servers[{server}].port")
        }
        E::BackupSelf { service, server }
        | E::BackupOutOfRange {
            service, server, ..
        } => {
            format!("services[{service}].servers[{server}].backup")
        }
        E::FullNatWithoutLocalAddrs { service } => format!("services[{service}].local_addresses"),
        // The pool may be only a port range.
        E::LocalPoolUnused { service, .. } => {
            let only_ports = services
                .get(service)
                .is_some_and(|s| s.local_addresses.is_empty());
            let key = if only_ports {
                "local_ports"
            } else {
                "local_addresses"
            };
            format!("services[{service}].{key}")
        }
        E::InvalidLocalAddr { service, addr, .. } => {
            // The address at fault: the second one when it is listed twice.
            let list = services
                .get(service)
                .map_or(&[][..], |s| &s.local_addresses[..]);
            match list.iter().rposition(|a| *a == addr) {
                Some(k) => format!("services[{service}].local_addresses[{k}]"),
                None => format!("services[{service}].local_addresses"),
            }
        }
        E::TooManyLocalAddrs { service, .. } => {
            format!("services[{service}].local_addresses")
        }
        E::InvalidPortRange { service, .. } => format!("services[{service}].local_ports"),
        E::MaglevTableSize { service, .. } => format!("services[{service}].maglev_table_size"),
        E::PersistenceTimeout { service, .. } => format!("services[{service}].persistence.timeout"),
        E::PrefixLength { service, .. } => format!("services[{service}].persistence.prefix"),
        E::NaturalClassOnIpv6 { service } => {
            format!("services[{service}].persistence.natural_class")
        }
        E::NaturalClassNetwork { service, .. } => {
            format!("services[{service}].persistence.networks")
        }
        E::RedirectNotTcp { service } => format!("services[{service}].protocol"),
        E::SynProxyNotTcpNat { service } => format!("services[{service}].syn_proxy"),
        E::RedirectServerWithoutUrl { service, server } => {
            format!("services[{service}].servers[{server}].url")
        }
        _ => "services".into(),
    }
}

/// A server's URLs, if it has any.
fn server_urls(sv: &ServerSection) -> Result<Option<ServerUrls>, String> {
    let Some(url) = &sv.url else {
        return match sv.https_url {
            Some(_) => Err("`https_url` without `url`".into()),
            None => Ok(None),
        };
    };
    let http = url_base(url, false)?;
    let https = match &sv.https_url {
        Some(u) => url_base(u, true)?,
        None => http.replacen("http://", "https://", 1),
    };
    Ok(Some(ServerUrls { http, https }))
}

/// The error's text without its "service #N:" prefix (the path says which).
fn config_error_message(e: &ConfigError, services: &[ServiceSection]) -> String {
    if let ConfigError::DuplicateService { first, ident, .. } = e {
        let name = services.get(*first).map_or("", |s| s.name.as_str());
        return format!("{ident}: the same VIP, protocol and port as services[{first}] (`{name}`)");
    }
    let text = e.to_string();
    match text.split_once(": ") {
        Some((head, rest)) if head.starts_with("service #") => rest.to_string(),
        _ => text,
    }
}

/// Turns the routes into the dataplane's, finding each next hop's port from
/// the ports' on-link prefixes.
pub fn build_routes(
    routes: &[RouteSection],
    port_prefixes: &[Vec<IpNet>],
) -> Result<Vec<Route>, FieldError> {
    routes
        .iter()
        .enumerate()
        .map(|(i, r)| {
            if r.prefix.addr().is_ipv4() != r.via.is_ipv4() {
                return Err(FieldError::new(format!("routes[{i}].via"), format!("{} is not in the family of {}", r.via, r.prefix)));
            }
            let port = port_prefixes
                .iter()
                .position(|nets| nets.iter().any(|n| n.contains(&r.via)))
                .ok_or_else(|| {
                    FieldError::new(
                        format!("routes[{i}].via"),
                        format!("next hop {} is not on-link on any port (inside no port address's prefix)", r.via),
                    )
                })?;
            Ok(Route {
                dst: r.prefix.trunc().addr(),
                prefix_len: r.prefix.prefix_len(),
                port: port as u16,
                gateway: Some(r.via),
            })
        })
        .collect()
}
