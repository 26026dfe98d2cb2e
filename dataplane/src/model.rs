//! The service model: virtual services, real-server pools, persistence rules
//! and the immutable [`Config`] snapshot the worker cores share.
//!
//! The plain types ([`Service`], [`RealServer`], [`Persistence`],
//! [`LocalPool`], …) are what an operator writes (they derive serde
//! `Deserialize`/`Serialize`). [`Config::new`] validates a list of services and
//! compiles it into a snapshot: per service the eligible-server list, the
//! source-hash weight table and (for Maglev) the lookup table are precomputed
//! once, on the control thread, and shared read-only by every core through an
//! `Arc<Config>`. Services are themselves behind `Arc`, so a server state or
//! weight change ([`Config::with_server_state`], [`Config::with_server_weight`])
//! rebuilds only the service concerned.
//!
//! Indices ([`ServiceIdx`], [`ServerIdx`]) are positions in one snapshot.
//! Identities are stable across snapshots: a service is identified by
//! (VIP, protocol, port), a server within its service by (address, port), a
//! local address by its address. [`Config::reload_map`] turns two snapshots
//! into an old-index → new-index map so per-core tables (connections, sticky
//! bindings, scheduler state) survive a reload.

use std::fmt;
use std::net::{IpAddr, Ipv4Addr};
use std::sync::Arc;

use hashbrown::HashMap;
use serde::{Deserialize, Serialize};
use thiserror::Error;

use crate::addr::mask_v4;
use crate::balance::Backend;
use crate::balance::maglev::{self, Maglev, MaglevError};
use crate::balance::rr::{self, SmoothWrr};
use crate::hash;

pub use crate::ids::{ServerIdx, ServiceIdx};

/// Largest number of services in one snapshot (`u16::MAX` is reserved as "none").
pub const MAX_SERVICES: usize = u16::MAX as usize;
/// Largest number of real servers in one pool (`u16::MAX` is reserved as "none").
pub const MAX_SERVERS: usize = u16::MAX as usize;
/// Largest number of local addresses in one full-NAT pool.
pub const MAX_LOCAL_ADDRS: usize = u16::MAX as usize;
/// Longest accepted persistence timeout (one year, in minutes).
pub const MAX_PERSISTENCE_MINUTES: u32 = 525_600;
/// Default Maglev table size.
pub const DEFAULT_MAGLEV_TABLE_SIZE: u32 = maglev::DEFAULT_TABLE_SIZE;

/// Transport protocol of a service.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Protocol {
    /// TCP (IP protocol 6).
    Tcp,
    /// UDP (IP protocol 17).
    Udp,
}

impl Protocol {
    /// The IP protocol number.
    pub const fn ip_proto(self) -> u8 {
        match self {
            Protocol::Tcp => 6,
            Protocol::Udp => 17,
        }
    }

    /// The protocol for an IP protocol number, if it is TCP or UDP.
    pub const fn from_ip_proto(p: u8) -> Option<Protocol> {
        match p {
            6 => Some(Protocol::Tcp),
            17 => Some(Protocol::Udp),
            _ => None,
        }
    }
}

impl fmt::Display for Protocol {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Protocol::Tcp => "tcp",
            Protocol::Udp => "udp",
        })
    }
}

/// How a new client is assigned a server (used only when a client is first bound).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SchedulerKind {
    /// Round robin over eligible servers (weights only gate eligibility).
    #[serde(alias = "rr")]
    RoundRobin,
    /// Smooth weighted round robin (nginx).
    #[default]
    #[serde(alias = "wrr")]
    WeightedRoundRobin,
    /// Fewest connections (per-core counts).
    #[serde(alias = "lc")]
    LeastConn,
    /// Fewest connections per unit of weight (per-core counts).
    #[serde(alias = "wlc")]
    WeightedLeastConn,
    /// Hash of the source address over the weighted eligible servers.
    #[serde(alias = "sh")]
    SourceHash,
    /// Maglev consistent hashing of the client flow.
    #[serde(alias = "mh")]
    Maglev,
    /// Weighted rendezvous (HRW) hashing of the client flow.
    #[serde(alias = "hrw")]
    Rendezvous,
}

/// How packets reach the real server.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ForwardMode {
    /// Destination NAT; replies must route back through the appliance.
    #[default]
    Nat,
    /// Destination + source NAT to a local address pool.
    FullNat,
    /// Direct server return at L2 (MAC rewrite, VIP on the server's loopback).
    Dsr,
    /// IP-in-IP (or IPv6) tunnel to the server.
    Tunnel,
}

impl ForwardMode {
    /// Whether the server's address family must equal the VIP's. Only the
    /// tunnel can carry one family inside the other.
    pub const fn needs_same_family(self) -> bool {
        !matches!(self, ForwardMode::Tunnel)
    }

    /// Whether the appliance sees the server's replies (NAT modes), so the
    /// connection table keeps a reply entry and tracks both directions.
    pub const fn sees_replies(self) -> bool {
        matches!(self, ForwardMode::Nat | ForwardMode::FullNat)
    }
}

/// Administrative / health state of a real server.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ServerState {
    /// Takes new clients (if its weight is positive), sticky and established traffic.
    #[default]
    Up,
    /// Keeps its sticky and established traffic, takes no new clients.
    Drain,
    /// Administratively out of service: takes nothing.
    Maint,
    /// Failed health checks: takes nothing.
    Down,
}

impl ServerState {
    /// Whether clients already pinned to the server (sticky bindings,
    /// established connections) stay on it: `Up` and `Drain`.
    pub const fn keeps_clients(self) -> bool {
        matches!(self, ServerState::Up | ServerState::Drain)
    }
}

/// A real server in a service's pool.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RealServer {
    /// Server address.
    pub addr: IpAddr,
    /// Destination port on the server; `None` keeps the client's destination port.
    #[serde(default)]
    pub port: Option<u16>,
    /// Scheduling weight; 0 takes no new clients.
    #[serde(default = "default_weight")]
    pub weight: u16,
    /// Current state.
    #[serde(default)]
    pub state: ServerState,
    /// Index of another server of the same pool that takes this server's
    /// sticky clients while this one is `Down` or `Maint`.
    #[serde(default)]
    pub backup: Option<ServerIdx>,
}

fn default_weight() -> u16 {
    1
}

impl RealServer {
    /// An `Up` server with weight 1, no port rewrite and no backup.
    pub fn new(addr: IpAddr) -> RealServer {
        RealServer {
            addr,
            port: None,
            weight: 1,
            state: ServerState::Up,
            backup: None,
        }
    }

    /// Whether the server may be chosen for a new client: `Up` with weight > 0.
    pub const fn is_eligible(&self) -> bool {
        matches!(self.state, ServerState::Up) && self.weight > 0
    }
}

/// How the persistence key is derived from a client's source address.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ClientKeyRule {
    /// The whole source address (/32 or /128).
    Address,
    /// The source address masked to this prefix length (IPv4 netmask or IPv6 prefix).
    Prefix(u8),
    /// The natural (classful) network of an IPv4 source: class A → /8,
    /// class B → /16, class C → /24; class D and E sources are never sticky.
    /// If `networks` is not empty (LocalDirector's `nc-subnet`), natural-class
    /// keying applies only to sources inside those classful networks; other
    /// sources are keyed by their whole address.
    NaturalClass {
        /// Classful network addresses (e.g. `172.16.0.0`) the rule is limited to.
        #[serde(default)]
        networks: Vec<Ipv4Addr>,
    },
}

impl ClientKeyRule {
    /// The rule for an IPv4 dotted netmask such as `255.255.255.0`.
    pub fn from_netmask(mask: Ipv4Addr) -> Result<ClientKeyRule, ConfigError> {
        let m = u32::from(mask);
        let prefix = m.leading_ones();
        if m.checked_shl(prefix).unwrap_or(0) != 0 {
            return Err(ConfigError::Netmask { mask });
        }
        Ok(ClientKeyRule::Prefix(prefix as u8))
    }
}

/// Source persistence of a service (LocalDirector `sticky <vid> <minutes> [nc-subnet]`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Persistence {
    /// How the client key is derived from the source address.
    pub key: ClientKeyRule,
    /// Idle timeout in minutes, counted from the end of the key's last connection.
    pub timeout_minutes: u32,
}

/// Local (source) addresses and ports for full NAT.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LocalPool {
    /// Local addresses (same family as the VIP).
    pub addrs: Vec<IpAddr>,
    /// First local port (inclusive).
    #[serde(default = "default_port_min")]
    pub port_min: u16,
    /// Last local port (inclusive).
    #[serde(default = "default_port_max")]
    pub port_max: u16,
}

fn default_port_min() -> u16 {
    1024
}
fn default_port_max() -> u16 {
    65535
}

/// A virtual service: VIP, protocol, port (or all ports) and its server pool.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Service {
    /// Operator's name for the service (LocalDirector's virtual id); informational.
    #[serde(default)]
    pub name: Option<String>,
    /// Virtual IP address.
    pub vip: IpAddr,
    /// Transport protocol.
    pub protocol: Protocol,
    /// Destination port; `None` serves all ports of the VIP.
    #[serde(default)]
    pub port: Option<u16>,
    /// Scheduler for new clients.
    #[serde(default)]
    pub scheduler: SchedulerKind,
    /// Maglev table size (prime); used only by the Maglev scheduler.
    #[serde(default = "default_maglev_size")]
    pub maglev_table_size: u32,
    /// Forwarding mode.
    #[serde(default)]
    pub mode: ForwardMode,
    /// Source persistence, if any.
    #[serde(default)]
    pub persistence: Option<Persistence>,
    /// Real servers.
    #[serde(default)]
    pub servers: Vec<RealServer>,
    /// Local address pool (full NAT only).
    #[serde(default)]
    pub local_pool: Option<LocalPool>,
}

fn default_maglev_size() -> u32 {
    DEFAULT_MAGLEV_TABLE_SIZE
}

impl Service {
    /// A service with the defaults (weighted round robin, NAT, no persistence,
    /// no servers).
    pub fn new(vip: IpAddr, protocol: Protocol, port: Option<u16>) -> Service {
        Service {
            name: None,
            vip,
            protocol,
            port,
            scheduler: SchedulerKind::default(),
            maglev_table_size: DEFAULT_MAGLEV_TABLE_SIZE,
            mode: ForwardMode::default(),
            persistence: None,
            servers: Vec::new(),
            local_pool: None,
        }
    }

    /// The service's identity (stable across reloads).
    pub fn ident(&self) -> ServiceIdent {
        ServiceIdent {
            vip: self.vip,
            protocol: self.protocol,
            port: self.port,
        }
    }
}

/// Identity of a service: (VIP, protocol, port or all ports).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct ServiceIdent {
    /// Virtual IP.
    pub vip: IpAddr,
    /// Protocol.
    pub protocol: Protocol,
    /// Port, `None` for all ports.
    pub port: Option<u16>,
}

impl ServiceIdent {
    /// (VIP, protocol, port or all ports) of an IPv4 service in one word,
    /// distinct for distinct identities; `None` for an IPv6 VIP.
    #[inline]
    pub fn packed4(vip: IpAddr, protocol: Protocol, port: Option<u16>) -> Option<u64> {
        let IpAddr::V4(a) = vip else {
            return None;
        };
        let port = port.map_or(0, |p| 1 << 16 | u64::from(p));
        Some(u64::from(a.to_bits()) << 32 | u64::from(protocol.ip_proto()) << 24 | port)
    }
}

impl fmt::Display for ServiceIdent {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let host = match self.vip {
            IpAddr::V4(a) => a.to_string(),
            IpAddr::V6(a) => format!("[{a}]"),
        };
        match self.port {
            Some(p) => write!(f, "{}/{host}:{p}", self.protocol),
            None => write!(f, "{}/{host}:*", self.protocol),
        }
    }
}

/// Why a configuration was refused. Service and server numbers are positions
/// in the list given to [`Config::new`] (0-based).
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[non_exhaustive]
pub enum ConfigError {
    /// More services than [`MAX_SERVICES`].
    #[error("too many services: {count} (at most {max})", max = MAX_SERVICES)]
    TooManyServices {
        /// Number given.
        count: usize,
    },
    /// Two services share VIP, protocol and port.
    #[error("services #{first} and #{second} are both {ident}")]
    DuplicateService {
        /// First service.
        first: usize,
        /// Second service.
        second: usize,
        /// The shared identity.
        ident: ServiceIdent,
    },
    /// The VIP cannot be a service address.
    #[error("service #{service}: VIP {vip} is unspecified, multicast or broadcast")]
    InvalidVip {
        /// Service.
        service: usize,
        /// The VIP.
        vip: IpAddr,
    },
    /// Port 0 given; omit the port to serve all ports.
    #[error("service #{service}: port 0 is not a port (omit `port` to serve all ports)")]
    ZeroPort {
        /// Service.
        service: usize,
    },
    /// More servers than [`MAX_SERVERS`].
    #[error("service #{service}: too many servers: {count} (at most {max})", max = MAX_SERVERS)]
    TooManyServers {
        /// Service.
        service: usize,
        /// Number given.
        count: usize,
    },
    /// Two servers of a pool share address and port.
    #[error("service #{service}: servers #{first} and #{second} are both {addr} port {port:?}")]
    DuplicateServer {
        /// Service.
        service: usize,
        /// First server.
        first: usize,
        /// Second server.
        second: usize,
        /// Shared address.
        addr: IpAddr,
        /// Shared port.
        port: Option<u16>,
    },
    /// A server address cannot receive traffic.
    #[error(
        "service #{service}: server #{server} address {addr} is unspecified, multicast or broadcast"
    )]
    InvalidServerAddr {
        /// Service.
        service: usize,
        /// Server.
        server: usize,
        /// The address.
        addr: IpAddr,
    },
    /// Server port 0.
    #[error(
        "service #{service}: server #{server} has port 0 (omit `port` to keep the client's port)"
    )]
    ZeroServerPort {
        /// Service.
        service: usize,
        /// Server.
        server: usize,
    },
    /// A server names itself as its backup.
    #[error("service #{service}: server #{server} is its own backup")]
    BackupSelf {
        /// Service.
        service: usize,
        /// Server.
        server: usize,
    },
    /// A backup index outside the pool.
    #[error(
        "service #{service}: server #{server} has backup #{backup} but the pool has {pool_len} servers"
    )]
    BackupOutOfRange {
        /// Service.
        service: usize,
        /// Server.
        server: usize,
        /// Backup index given.
        backup: ServerIdx,
        /// Pool length.
        pool_len: usize,
    },
    /// The forwarding mode needs the server in the VIP's address family.
    #[error(
        "service #{service}: server #{server} ({addr}) is not in the VIP's address family ({vip}), which {mode:?} requires"
    )]
    FamilyMismatch {
        /// Service.
        service: usize,
        /// Server.
        server: usize,
        /// Forwarding mode.
        mode: ForwardMode,
        /// The VIP.
        vip: IpAddr,
        /// The server address.
        addr: IpAddr,
    },
    /// Full NAT without local addresses.
    #[error("service #{service}: full NAT needs a local_pool with at least one address")]
    FullNatWithoutLocalAddrs {
        /// Service.
        service: usize,
    },
    /// A local pool on a mode that does not use it.
    #[error("service #{service}: local_pool is only used by full_nat, not {mode:?}")]
    LocalPoolUnused {
        /// Service.
        service: usize,
        /// The mode.
        mode: ForwardMode,
    },
    /// A local address that is unusable, of the wrong family or repeated.
    #[error("service #{service}: local address {addr}: {reason}")]
    InvalidLocalAddr {
        /// Service.
        service: usize,
        /// The address.
        addr: IpAddr,
        /// What is wrong.
        reason: &'static str,
    },
    /// Too many local addresses.
    #[error("service #{service}: too many local addresses: {count} (at most {max})", max = MAX_LOCAL_ADDRS)]
    TooManyLocalAddrs {
        /// Service.
        service: usize,
        /// Number given.
        count: usize,
    },
    /// Empty or inverted local port range, or one including port 0.
    #[error("service #{service}: local port range {min}..={max} is empty or includes port 0")]
    InvalidPortRange {
        /// Service.
        service: usize,
        /// First port.
        min: u16,
        /// Last port.
        max: u16,
    },
    /// Unusable Maglev table size.
    #[error("service #{service}: {source}")]
    MaglevTableSize {
        /// Service.
        service: usize,
        /// Why.
        source: MaglevError,
    },
    /// Persistence timeout of 0 or above [`MAX_PERSISTENCE_MINUTES`].
    #[error("service #{service}: persistence timeout {minutes} min is out of range (1..={max})", max = MAX_PERSISTENCE_MINUTES)]
    PersistenceTimeout {
        /// Service.
        service: usize,
        /// Minutes given.
        minutes: u32,
    },
    /// Prefix length longer than the VIP family's address.
    #[error("service #{service}: persistence prefix /{prefix} is longer than /{max}")]
    PrefixLength {
        /// Service.
        service: usize,
        /// Prefix given.
        prefix: u8,
        /// Longest allowed.
        max: u8,
    },
    /// Natural-class persistence on an IPv6 service.
    #[error("service #{service}: natural-class persistence needs an IPv4 VIP")]
    NaturalClassOnIpv6 {
        /// Service.
        service: usize,
    },
    /// A natural-class network that is not a class A/B/C network address.
    #[error(
        "service #{service}: {network} is not a class A, B or C network address (e.g. 172.16.0.0)"
    )]
    NaturalClassNetwork {
        /// Service.
        service: usize,
        /// The network given.
        network: Ipv4Addr,
    },
    /// A non-contiguous netmask.
    #[error("netmask {mask} is not contiguous")]
    Netmask {
        /// The mask given.
        mask: Ipv4Addr,
    },
    /// A service index outside the snapshot.
    #[error("no service #{service} in this configuration")]
    NoSuchService {
        /// Index given.
        service: usize,
    },
    /// A server index outside the pool.
    #[error("service #{service} has no server #{server}")]
    NoSuchServer {
        /// Service.
        service: usize,
        /// Index given.
        server: usize,
    },
}

/// A service compiled for the dataplane: the plain [`Service`] plus the
/// precomputed scheduling data.
#[derive(Debug, Clone)]
pub struct ServiceEntry {
    spec: Service,
    ident: ServiceIdent,
    seed: u64,
    idents: Vec<u64>,
    eligible: Vec<Backend>,
    cum_weights: Vec<u64>,
    maglev: Option<Maglev>,
    swrr: Vec<u16>,
}

impl ServiceEntry {
    fn compile(spec: Service) -> Result<ServiceEntry, MaglevError> {
        let ident = spec.ident();
        let seed = hash::service_seed(spec.vip, spec.protocol.ip_proto(), spec.port);
        let idents: Vec<u64> = spec
            .servers
            .iter()
            .map(|s| hash::server_ident(s.addr, s.port))
            .collect();
        let eligible: Vec<Backend> = spec
            .servers
            .iter()
            .enumerate()
            .filter(|(_, s)| s.is_eligible())
            .map(|(i, s)| Backend {
                index: i as u16,
                weight: s.weight,
                ident: idents[i],
            })
            .collect();
        let mut acc = 0u64;
        let cum_weights = eligible
            .iter()
            .map(|b| {
                acc += u64::from(b.weight);
                acc
            })
            .collect();
        let maglev = if spec.scheduler == SchedulerKind::Maglev {
            Some(Maglev::build(&eligible, spec.maglev_table_size)?)
        } else {
            None
        };
        let swrr = if spec.scheduler == SchedulerKind::WeightedRoundRobin {
            SmoothWrr::cycle(&eligible, rr::MAX_CYCLE).unwrap_or_default()
        } else {
            Vec::new()
        };
        Ok(ServiceEntry {
            spec,
            ident,
            seed,
            idents,
            eligible,
            cum_weights,
            maglev,
            swrr,
        })
    }

    /// The service as configured.
    pub fn spec(&self) -> &Service {
        &self.spec
    }

    /// The service's identity.
    pub fn ident(&self) -> ServiceIdent {
        self.ident
    }

    /// The service's hash seed (derived from its identity; equal on every core).
    pub fn seed(&self) -> u64 {
        self.seed
    }

    /// Servers eligible for new clients (`Up`, weight > 0), in pool order.
    pub fn eligible(&self) -> &[Backend] {
        &self.eligible
    }

    /// The smooth weighted round robin cycle over the eligible servers
    /// (server indices, one per unit of weight), when the scheduler is
    /// `wrr` and the weights sum to at most [`rr::MAX_CYCLE`]; else empty.
    pub fn swrr_cycle(&self) -> &[u16] {
        &self.swrr
    }

    /// Running sums of the eligible servers' weights (source hashing).
    pub fn cumulative_weights(&self) -> &[u64] {
        &self.cum_weights
    }

    /// The Maglev table (Maglev scheduler only).
    pub fn maglev(&self) -> Option<&Maglev> {
        self.maglev.as_ref()
    }

    /// Identity hash of server `i` (address and port).
    pub fn server_ident(&self, i: ServerIdx) -> Option<u64> {
        self.idents.get(i as usize).copied()
    }

    /// Server `i`, if it exists.
    pub fn server(&self, i: ServerIdx) -> Option<&RealServer> {
        self.spec.servers.get(i as usize)
    }
}

/// An immutable, validated configuration snapshot shared by all cores as
/// `Arc<Config>`.
#[derive(Debug, Clone)]
pub struct Config {
    services: Vec<Arc<ServiceEntry>>,
    index: HashMap<ServiceIdent, ServiceIdx>,
    /// The IPv4 services again, keyed by [`ServiceIdent::packed4`]: every
    /// new flow's service is looked up here, and one machine word hashes
    /// and compares in a fraction of what the identity does.
    index4: HashMap<u64, ServiceIdx>,
}

fn addr_is_unusable(a: IpAddr) -> bool {
    match a {
        IpAddr::V4(v) => v.is_unspecified() || v.is_multicast() || v.is_broadcast(),
        IpAddr::V6(v) => v.is_unspecified() || v.is_multicast(),
    }
}

fn validate_service(i: usize, s: &Service) -> Result<(), ConfigError> {
    if addr_is_unusable(s.vip) {
        return Err(ConfigError::InvalidVip {
            service: i,
            vip: s.vip,
        });
    }
    if s.port == Some(0) {
        return Err(ConfigError::ZeroPort { service: i });
    }
    if s.servers.len() > MAX_SERVERS {
        return Err(ConfigError::TooManyServers {
            service: i,
            count: s.servers.len(),
        });
    }
    let mut seen: HashMap<(IpAddr, Option<u16>), usize> = HashMap::with_capacity(s.servers.len());
    for (j, srv) in s.servers.iter().enumerate() {
        if addr_is_unusable(srv.addr) {
            return Err(ConfigError::InvalidServerAddr {
                service: i,
                server: j,
                addr: srv.addr,
            });
        }
        if srv.port == Some(0) {
            return Err(ConfigError::ZeroServerPort {
                service: i,
                server: j,
            });
        }
        if let Some(&first) = seen.get(&(srv.addr, srv.port)) {
            return Err(ConfigError::DuplicateServer {
                service: i,
                first,
                second: j,
                addr: srv.addr,
                port: srv.port,
            });
        }
        seen.insert((srv.addr, srv.port), j);
        if let Some(b) = srv.backup {
            if b as usize == j {
                return Err(ConfigError::BackupSelf {
                    service: i,
                    server: j,
                });
            }
            if b as usize >= s.servers.len() {
                return Err(ConfigError::BackupOutOfRange {
                    service: i,
                    server: j,
                    backup: b,
                    pool_len: s.servers.len(),
                });
            }
        }
        if s.mode.needs_same_family() && srv.addr.is_ipv4() != s.vip.is_ipv4() {
            return Err(ConfigError::FamilyMismatch {
                service: i,
                server: j,
                mode: s.mode,
                vip: s.vip,
                addr: srv.addr,
            });
        }
    }
    match (&s.mode, &s.local_pool) {
        (ForwardMode::FullNat, None) => {
            return Err(ConfigError::FullNatWithoutLocalAddrs { service: i });
        }
        (ForwardMode::FullNat, Some(pool)) => {
            if pool.addrs.is_empty() {
                return Err(ConfigError::FullNatWithoutLocalAddrs { service: i });
            }
            if pool.addrs.len() > MAX_LOCAL_ADDRS {
                return Err(ConfigError::TooManyLocalAddrs {
                    service: i,
                    count: pool.addrs.len(),
                });
            }
            for (k, &a) in pool.addrs.iter().enumerate() {
                let reason = if addr_is_unusable(a) {
                    Some("unspecified, multicast or broadcast")
                } else if a.is_ipv4() != s.vip.is_ipv4() {
                    Some("not in the VIP's address family")
                } else if pool.addrs[..k].contains(&a) {
                    Some("listed twice")
                } else {
                    None
                };
                if let Some(reason) = reason {
                    return Err(ConfigError::InvalidLocalAddr {
                        service: i,
                        addr: a,
                        reason,
                    });
                }
            }
            if pool.port_min == 0 || pool.port_min > pool.port_max {
                return Err(ConfigError::InvalidPortRange {
                    service: i,
                    min: pool.port_min,
                    max: pool.port_max,
                });
            }
        }
        (mode, Some(_)) => {
            return Err(ConfigError::LocalPoolUnused {
                service: i,
                mode: *mode,
            });
        }
        (_, None) => {}
    }
    if s.scheduler == SchedulerKind::Maglev {
        maglev::check_table_size(s.maglev_table_size, s.servers.len())
            .map_err(|source| ConfigError::MaglevTableSize { service: i, source })?;
    }
    if let Some(p) = &s.persistence {
        if p.timeout_minutes == 0 || p.timeout_minutes > MAX_PERSISTENCE_MINUTES {
            return Err(ConfigError::PersistenceTimeout {
                service: i,
                minutes: p.timeout_minutes,
            });
        }
        match &p.key {
            ClientKeyRule::Address => {}
            ClientKeyRule::Prefix(prefix) => {
                let max = if s.vip.is_ipv4() { 32 } else { 128 };
                if *prefix > max {
                    return Err(ConfigError::PrefixLength {
                        service: i,
                        prefix: *prefix,
                        max,
                    });
                }
            }
            ClientKeyRule::NaturalClass { networks } => {
                if !s.vip.is_ipv4() {
                    return Err(ConfigError::NaturalClassOnIpv6 { service: i });
                }
                for &n in networks {
                    let ok = natural_class(n)
                        .prefix()
                        .is_some_and(|p| mask_v4(n, p) == n);
                    if !ok {
                        return Err(ConfigError::NaturalClassNetwork {
                            service: i,
                            network: n,
                        });
                    }
                }
            }
        }
    }
    Ok(())
}

/// An IPv4 address class by its leading bits (RFC 791 classful addressing).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum NaturalClass {
    /// Leading bit 0 (0.0.0.0–127.255.255.255): network /8.
    A,
    /// Leading bits 10 (128.0.0.0–191.255.255.255): network /16.
    B,
    /// Leading bits 110 (192.0.0.0–223.255.255.255): network /24.
    C,
    /// Leading bits 1110 (224.0.0.0–239.255.255.255): multicast, never sticky.
    D,
    /// Leading bits 1111 (240.0.0.0–255.255.255.255): experimental, never sticky.
    E,
}

impl NaturalClass {
    /// The classful network prefix length (`None` for classes D and E).
    pub const fn prefix(self) -> Option<u8> {
        match self {
            NaturalClass::A => Some(8),
            NaturalClass::B => Some(16),
            NaturalClass::C => Some(24),
            NaturalClass::D | NaturalClass::E => None,
        }
    }
}

/// The natural class of an IPv4 address (from its first octet).
pub const fn natural_class(addr: Ipv4Addr) -> NaturalClass {
    let o = addr.octets()[0];
    if o < 128 {
        NaturalClass::A
    } else if o < 192 {
        NaturalClass::B
    } else if o < 224 {
        NaturalClass::C
    } else if o < 240 {
        NaturalClass::D
    } else {
        NaturalClass::E
    }
}

/// Old-index → new-index correspondence between two snapshots, by identity.
#[derive(Debug, Clone, Default)]
pub struct ReloadMap {
    services: Vec<Option<ServiceMap>>,
}

/// How one old service maps into the new snapshot.
#[derive(Debug, Clone)]
pub struct ServiceMap {
    /// The service's index in the new snapshot.
    pub new_index: ServiceIdx,
    /// New index of each old server (`None`: removed).
    pub servers: Vec<Option<ServerIdx>>,
    /// New index of each old local address (`None`: removed or no pool).
    pub local_addrs: Vec<Option<u16>>,
    /// Whether the persistence rule (key rule) changed, which invalidates the
    /// service's sticky keys.
    pub persistence_changed: bool,
}

impl ServiceMap {
    /// New index of old server `old` (`None`: removed).
    pub fn server(&self, old: ServerIdx) -> Option<ServerIdx> {
        self.servers.get(old as usize).copied().flatten()
    }
}

impl ReloadMap {
    /// The new snapshot's view of old service `old`, `None` if it was removed.
    pub fn service(&self, old: ServiceIdx) -> Option<&ServiceMap> {
        self.services.get(old as usize).and_then(Option::as_ref)
    }

    /// New index of old service `old`.
    pub fn service_index(&self, old: ServiceIdx) -> Option<ServiceIdx> {
        self.service(old).map(|m| m.new_index)
    }

    /// New index of old server `server` of old service `service`.
    pub fn server_index(&self, service: ServiceIdx, server: ServerIdx) -> Option<ServerIdx> {
        self.service(service).and_then(|m| m.server(server))
    }

    /// Whether every service and server keeps its index (only states,
    /// weights or other attributes changed).
    pub fn is_identity(&self) -> bool {
        self.services.iter().enumerate().all(|(i, m)| {
            m.as_ref().is_some_and(|m| {
                m.new_index as usize == i
                    && m.servers
                        .iter()
                        .enumerate()
                        .all(|(j, s)| *s == Some(j as u16))
                    && m.local_addrs
                        .iter()
                        .enumerate()
                        .all(|(j, s)| *s == Some(j as u16))
                    && !m.persistence_changed
            })
        })
    }
}

impl Config {
    /// Validates `services` without building anything.
    pub fn validate(services: &[Service]) -> Result<(), ConfigError> {
        if services.len() > MAX_SERVICES {
            return Err(ConfigError::TooManyServices {
                count: services.len(),
            });
        }
        let mut seen: HashMap<ServiceIdent, usize> = HashMap::with_capacity(services.len());
        for (i, s) in services.iter().enumerate() {
            validate_service(i, s)?;
            if let Some(&first) = seen.get(&s.ident()) {
                return Err(ConfigError::DuplicateService {
                    first,
                    second: i,
                    ident: s.ident(),
                });
            }
            seen.insert(s.ident(), i);
        }
        Ok(())
    }

    /// Validates and compiles `services` into a snapshot.
    pub fn new(services: Vec<Service>) -> Result<Config, ConfigError> {
        Config::validate(&services)?;
        let mut index = HashMap::with_capacity(services.len());
        let mut index4 = HashMap::with_capacity(services.len());
        let mut entries = Vec::with_capacity(services.len());
        for (i, s) in services.into_iter().enumerate() {
            index.insert(s.ident(), i as ServiceIdx);
            if let Some(k) = ServiceIdent::packed4(s.vip, s.protocol, s.port) {
                index4.insert(k, i as ServiceIdx);
            }
            let e = ServiceEntry::compile(s)
                .map_err(|source| ConfigError::MaglevTableSize { service: i, source })?;
            entries.push(Arc::new(e));
        }
        Ok(Config {
            services: entries,
            index,
            index4,
        })
    }

    /// An empty configuration.
    pub fn empty() -> Config {
        Config {
            services: Vec::new(),
            index: HashMap::new(),
            index4: HashMap::new(),
        }
    }

    /// Number of services.
    pub fn len(&self) -> usize {
        self.services.len()
    }

    /// Whether there are no services.
    pub fn is_empty(&self) -> bool {
        self.services.is_empty()
    }

    /// Compiled service `i`.
    #[inline]
    pub fn entry(&self, i: ServiceIdx) -> Option<&ServiceEntry> {
        self.services.get(i as usize).map(|a| &**a)
    }

    /// Service `i` as configured.
    pub fn service(&self, i: ServiceIdx) -> Option<&Service> {
        self.entry(i).map(ServiceEntry::spec)
    }

    /// All services with their indices.
    pub fn services(&self) -> impl Iterator<Item = (ServiceIdx, &Service)> + '_ {
        self.services
            .iter()
            .enumerate()
            .map(|(i, e)| (i as ServiceIdx, e.spec()))
    }

    /// Index of the service with identity `ident`.
    pub fn find(&self, ident: &ServiceIdent) -> Option<ServiceIdx> {
        self.index.get(ident).copied()
    }

    /// Classifies a packet's destination: the service for (`vip`, `protocol`,
    /// `port`), trying the exact port first and then an all-ports service.
    #[inline]
    pub fn lookup(&self, vip: IpAddr, protocol: Protocol, port: u16) -> Option<ServiceIdx> {
        if let (Some(exact), Some(any)) = (
            ServiceIdent::packed4(vip, protocol, Some(port)),
            ServiceIdent::packed4(vip, protocol, None),
        ) {
            return self
                .index4
                .get(&exact)
                .or_else(|| self.index4.get(&any))
                .copied();
        }
        self.find(&ServiceIdent {
            vip,
            protocol,
            port: Some(port),
        })
        .or_else(|| {
            self.find(&ServiceIdent {
                vip,
                protocol,
                port: None,
            })
        })
    }

    fn with_server(
        &self,
        service: ServiceIdx,
        server: ServerIdx,
        f: impl FnOnce(&mut RealServer),
    ) -> Result<Config, ConfigError> {
        let entry = self.entry(service).ok_or(ConfigError::NoSuchService {
            service: service as usize,
        })?;
        let mut spec = entry.spec().clone();
        let srv = spec
            .servers
            .get_mut(server as usize)
            .ok_or(ConfigError::NoSuchServer {
                service: service as usize,
                server: server as usize,
            })?;
        f(srv);
        validate_service(service as usize, &spec)?;
        let compiled =
            ServiceEntry::compile(spec).map_err(|source| ConfigError::MaglevTableSize {
                service: service as usize,
                source,
            })?;
        let mut next = self.clone();
        next.services[service as usize] = Arc::new(compiled);
        Ok(next)
    }

    /// A new snapshot with server `server` of `service` in `state` (other
    /// services are shared, not copied). Indices are unchanged.
    pub fn with_server_state(
        &self,
        service: ServiceIdx,
        server: ServerIdx,
        state: ServerState,
    ) -> Result<Config, ConfigError> {
        self.with_server(service, server, |s| s.state = state)
    }

    /// A new snapshot with server `server` of `service` at `weight`.
    pub fn with_server_weight(
        &self,
        service: ServiceIdx,
        server: ServerIdx,
        weight: u16,
    ) -> Result<Config, ConfigError> {
        self.with_server(service, server, |s| s.weight = weight)
    }

    /// Maps the indices of `old` onto `new` by identity: services by (VIP,
    /// protocol, port), servers by (address, port), local addresses by address.
    pub fn reload_map(old: &Config, new: &Config) -> ReloadMap {
        let services = old
            .services
            .iter()
            .map(|o| {
                let new_index = new.find(&o.ident())?;
                let n = new.entry(new_index)?;
                let mut by_ident: HashMap<(IpAddr, Option<u16>), u16> =
                    HashMap::with_capacity(n.spec.servers.len());
                for (j, s) in n.spec.servers.iter().enumerate() {
                    by_ident.insert((s.addr, s.port), j as u16);
                }
                let servers = o
                    .spec
                    .servers
                    .iter()
                    .map(|s| by_ident.get(&(s.addr, s.port)).copied())
                    .collect();
                let new_locals: &[IpAddr] =
                    n.spec.local_pool.as_ref().map_or(&[], |p| &p.addrs[..]);
                let local_addrs = o
                    .spec
                    .local_pool
                    .as_ref()
                    .map_or(&[][..], |p| &p.addrs[..])
                    .iter()
                    .map(|a| new_locals.iter().position(|b| b == a).map(|k| k as u16))
                    .collect();
                let persistence_changed = o.spec.persistence.as_ref().map(|p| &p.key)
                    != n.spec.persistence.as_ref().map(|p| &p.key);
                Some(ServiceMap {
                    new_index,
                    servers,
                    local_addrs,
                    persistence_changed,
                })
            })
            .collect();
        ReloadMap { services }
    }
}

impl Default for Config {
    fn default() -> Config {
        Config::empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::Ipv6Addr;

    fn v4(a: u8, b: u8, c: u8, d: u8) -> IpAddr {
        IpAddr::V4(Ipv4Addr::new(a, b, c, d))
    }

    fn web() -> Service {
        let mut s = Service::new(v4(192, 0, 2, 10), Protocol::Tcp, Some(80));
        s.servers = vec![
            RealServer::new(v4(10, 0, 0, 1)),
            RealServer::new(v4(10, 0, 0, 2)),
        ];
        s
    }

    #[test]
    fn valid_and_lookup() {
        let mut all = web();
        all.port = None;
        let cfg = Config::new(vec![web(), all]).unwrap();
        assert_eq!(cfg.lookup(v4(192, 0, 2, 10), Protocol::Tcp, 80), Some(0));
        assert_eq!(cfg.lookup(v4(192, 0, 2, 10), Protocol::Tcp, 443), Some(1));
        assert_eq!(cfg.lookup(v4(192, 0, 2, 10), Protocol::Udp, 80), None);
        assert_eq!(cfg.entry(0).unwrap().eligible().len(), 2);
    }

    /// `lookup` (a packed-word index for IPv4) answers as the identity
    /// index does: the exact port, else the all-ports service.
    #[test]
    fn lookup_agrees_with_the_identity_index() {
        let vips = [
            v4(192, 0, 2, 10),
            v4(192, 0, 2, 11),
            v4(10, 0, 0, 80),
            v4(0, 0, 0, 80),
            "2001:db8::10".parse().unwrap(),
        ];
        let ports = [1u16, 80, 443, 65535];
        let svc = |vip: IpAddr, proto, port| {
            let mut s = Service::new(vip, proto, port);
            s.servers = vec![RealServer::new(match vip {
                IpAddr::V4(_) => v4(10, 0, 0, 1),
                IpAddr::V6(_) => "2001:db8:1::1".parse().unwrap(),
            })];
            s
        };
        let mut services = Vec::new();
        for (i, &vip) in vips.iter().enumerate() {
            for (j, proto) in [Protocol::Tcp, Protocol::Udp].into_iter().enumerate() {
                // Every third combination has no all-ports service, and
                // every port but one of each is left out somewhere.
                for (k, &port) in ports.iter().enumerate() {
                    if (i + j + k) % 4 != 0 {
                        services.push(svc(vip, proto, Some(port)));
                    }
                }
                if (i + j) % 3 != 0 {
                    services.push(svc(vip, proto, None));
                }
            }
        }
        if let Err(e) = Config::validate(&services) {
            panic!("{e}");
        }
        let cfg = Config::new(services).unwrap();
        let mut hits = 0;
        for vip in vips.iter().copied().chain([v4(192, 0, 2, 12)]) {
            for proto in [Protocol::Tcp, Protocol::Udp] {
                for port in ports.iter().copied().chain([0, 8080]) {
                    let ident = |port| ServiceIdent {
                        vip,
                        protocol: proto,
                        port,
                    };
                    let want = cfg
                        .find(&ident(Some(port)))
                        .or_else(|| cfg.find(&ident(None)));
                    assert_eq!(cfg.lookup(vip, proto, port), want, "{vip} {proto:?} {port}");
                    hits += usize::from(want.is_some());
                }
            }
        }
        assert!(hits > 40, "{hits}");
    }

    #[test]
    fn errors_are_precise() {
        assert!(matches!(
            Config::new(vec![web(), web()]),
            Err(ConfigError::DuplicateService {
                first: 0,
                second: 1,
                ..
            })
        ));
        let mut s = web();
        s.servers[1].backup = Some(1);
        assert_eq!(
            Config::new(vec![s]).unwrap_err(),
            ConfigError::BackupSelf {
                service: 0,
                server: 1
            }
        );
        let mut s = web();
        s.servers[0].backup = Some(5);
        assert!(matches!(
            Config::new(vec![s]),
            Err(ConfigError::BackupOutOfRange { backup: 5, .. })
        ));
        let mut s = web();
        s.mode = ForwardMode::FullNat;
        assert_eq!(
            Config::new(vec![s]).unwrap_err(),
            ConfigError::FullNatWithoutLocalAddrs { service: 0 }
        );
        let mut s = web();
        s.servers
            .push(RealServer::new(IpAddr::V6(Ipv6Addr::LOCALHOST)));
        assert!(matches!(
            Config::new(vec![s.clone()]),
            Err(ConfigError::FamilyMismatch { server: 2, .. })
        ));
        s.mode = ForwardMode::Tunnel;
        assert!(Config::new(vec![s]).is_ok());
        let mut s = web();
        s.servers.push(RealServer::new(v4(10, 0, 0, 1)));
        assert!(matches!(
            Config::new(vec![s]),
            Err(ConfigError::DuplicateServer {
                first: 0,
                second: 2,
                ..
            })
        ));
        let mut s = web();
        s.scheduler = SchedulerKind::Maglev;
        s.maglev_table_size = 65536;
        assert!(matches!(
            Config::new(vec![s]),
            Err(ConfigError::MaglevTableSize { .. })
        ));
        let mut s = web();
        s.persistence = Some(Persistence {
            key: ClientKeyRule::NaturalClass {
                networks: vec![Ipv4Addr::new(172, 16, 1, 0)],
            },
            timeout_minutes: 5,
        });
        assert!(matches!(
            Config::new(vec![s]),
            Err(ConfigError::NaturalClassNetwork { .. })
        ));
        let mut s = web();
        s.persistence = Some(Persistence {
            key: ClientKeyRule::Prefix(33),
            timeout_minutes: 5,
        });
        assert!(matches!(
            Config::new(vec![s]),
            Err(ConfigError::PrefixLength { prefix: 33, .. })
        ));
        let mut s = web();
        s.local_pool = Some(LocalPool {
            addrs: vec![v4(10, 1, 0, 1)],
            port_min: 1024,
            port_max: 2000,
        });
        assert!(matches!(
            Config::new(vec![s]),
            Err(ConfigError::LocalPoolUnused { .. })
        ));
    }

    #[test]
    fn netmask() {
        assert_eq!(
            ClientKeyRule::from_netmask(Ipv4Addr::new(255, 255, 255, 0)).unwrap(),
            ClientKeyRule::Prefix(24)
        );
        assert_eq!(
            ClientKeyRule::from_netmask(Ipv4Addr::new(0, 0, 0, 0)).unwrap(),
            ClientKeyRule::Prefix(0)
        );
        assert!(ClientKeyRule::from_netmask(Ipv4Addr::new(255, 0, 255, 0)).is_err());
    }

    #[test]
    fn classes() {
        assert_eq!(natural_class(Ipv4Addr::new(11, 1, 2, 3)), NaturalClass::A);
        assert_eq!(natural_class(Ipv4Addr::new(172, 16, 1, 5)), NaturalClass::B);
        assert_eq!(natural_class(Ipv4Addr::new(198, 18, 5, 1)), NaturalClass::C);
        assert_eq!(natural_class(Ipv4Addr::new(224, 0, 0, 1)), NaturalClass::D);
        assert_eq!(natural_class(Ipv4Addr::new(250, 0, 0, 1)), NaturalClass::E);
    }

    #[test]
    fn state_change_and_reload_map() {
        let cfg = Config::new(vec![web()]).unwrap();
        let c2 = cfg.with_server_state(0, 0, ServerState::Drain).unwrap();
        assert_eq!(c2.entry(0).unwrap().eligible().len(), 1);
        assert!(Config::reload_map(&cfg, &c2).is_identity());
        assert!(cfg.with_server_state(0, 9, ServerState::Down).is_err());
        assert!(cfg.with_server_state(3, 0, ServerState::Down).is_err());

        let mut s = web();
        s.servers.remove(0);
        s.servers.push(RealServer::new(v4(10, 0, 0, 3)));
        let other = Service::new(v4(192, 0, 2, 11), Protocol::Udp, Some(53));
        let c3 = Config::new(vec![other, s]).unwrap();
        let m = Config::reload_map(&cfg, &c3);
        assert_eq!(m.service_index(0), Some(1));
        assert_eq!(m.server_index(0, 0), None);
        assert_eq!(m.server_index(0, 1), Some(0));
        assert!(!m.is_identity());
    }

    #[test]
    fn yaml_shape() {
        let y = r#"
vip: 192.0.2.10
protocol: tcp
port: 80
scheduler: maglev
mode: full_nat
persistence:
  key: !natural_class
    networks: [172.16.0.0]
  timeout_minutes: 10
servers:
  - addr: 10.0.0.1
    weight: 3
  - addr: 10.0.0.2
    state: drain
    backup: 0
local_pool:
  addrs: [10.9.0.1]
"#;
        let s: Service = serde_yaml_ng::from_str(y).unwrap();
        assert_eq!(s.scheduler, SchedulerKind::Maglev);
        assert_eq!(s.servers[1].backup, Some(0));
        assert_eq!(s.local_pool.as_ref().unwrap().port_min, 1024);
        Config::new(vec![s]).unwrap();
    }
}
