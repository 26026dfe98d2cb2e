//! What an operator writes: services, their real servers, persistence rules and local address pools.

use super::*;

/// Transport protocol of a service.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
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
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum SchedulerKind {
    /// Round robin over eligible servers (weights only gate eligibility).
    RoundRobin,
    /// Smooth weighted round robin (nginx).
    #[default]
    WeightedRoundRobin,
    /// Fewest connections (per-core counts).
    LeastConn,
    /// Fewest connections per unit of weight (per-core counts).
    WeightedLeastConn,
    /// Hash of the source address over the weighted eligible servers.
    SourceHash,
    /// Maglev consistent hashing of the client flow.
    Maglev,
    /// Weighted rendezvous (HRW) hashing of the client flow.
    Rendezvous,
    /// Failover: the first eligible server in pool order takes every new
    /// client, the next one only while those before it are out (a server
    /// and its backups).
    Failover,
}

/// How packets reach the real server.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
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
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
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
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RealServer {
    /// Server address.
    pub addr: IpAddr,
    /// Destination port on the server; `None` keeps the client's destination port.
    pub port: Option<u16>,
    /// Scheduling weight; 0 takes no new clients.
    pub weight: u16,
    /// Current state.
    pub state: ServerState,
    /// Index of another server of the same pool that takes this server's
    /// sticky clients while this one is `Down` or `Maint`.
    pub backup: Option<ServerIdx>,
    /// The server's URLs, for a redirect service ([`Service::redirect`]).
    pub urls: Option<ServerUrls>,
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
            urls: None,
        }
    }

    /// Whether the server may be chosen for a new client: `Up` with weight > 0.
    pub const fn is_eligible(&self) -> bool {
        matches!(self.state, ServerState::Up) && self.weight > 0
    }
}

/// How the persistence key is derived from a client's source address.
#[derive(Debug, Clone, PartialEq, Eq)]
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
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Persistence {
    /// How the client key is derived from the source address.
    pub key: ClientKeyRule,
    /// Idle timeout in minutes, counted from the end of the key's last connection.
    pub timeout_minutes: u32,
}

/// Local (source) addresses and ports for full NAT.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LocalPool {
    /// Local addresses (same family as the VIP).
    pub addrs: Vec<IpAddr>,
    /// First local port (inclusive).
    pub port_min: u16,
    /// Last local port (inclusive).
    pub port_max: u16,
    /// The other cluster nodes' local addresses (same family): this node
    /// never picks them, but holds the connections they opened, which the
    /// cluster synchronises, and answers for them when their node dies.
    pub peer_addrs: Vec<IpAddr>,
}

impl LocalPool {
    /// Every local address a connection of the service may use: this
    /// node's ([`LocalPool::addrs`], picked for new connections), then the
    /// other nodes' ([`LocalPool::peer_addrs`]). A connection names its
    /// local address by position in this list.
    pub fn all(&self) -> impl Iterator<Item = IpAddr> + '_ {
        self.addrs.iter().chain(&self.peer_addrs).copied()
    }
}

/// A virtual service: VIP, protocol, port (or all ports) and its server pool.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Service {
    /// Operator's name for the service (LocalDirector's virtual id); informational.
    pub name: Option<String>,
    /// Virtual IP address.
    pub vip: IpAddr,
    /// Transport protocol.
    pub protocol: Protocol,
    /// Destination port; `None` serves all ports of the VIP.
    pub port: Option<u16>,
    /// Scheduler for new clients.
    pub scheduler: SchedulerKind,
    /// Maglev table size (prime); used only by the Maglev scheduler.
    pub maglev_table_size: u32,
    /// Forwarding mode.
    pub mode: ForwardMode,
    /// Source persistence, if any.
    pub persistence: Option<Persistence>,
    /// Real servers.
    pub servers: Vec<RealServer>,
    /// Local address pool (full NAT only).
    pub local_pool: Option<LocalPool>,
    /// A redirect service (seed 000): clients are answered with a redirect
    /// to a server's URL instead of being forwarded.
    pub redirect: Option<Redirect>,
    /// Answer a TCP segment of a connection no worker knows (after a
    /// restart, say) with a reset (RFC 9293 §3.10.7.1), so its client gives
    /// up at once instead of waiting for its own timeout. Off where another
    /// node may still hold the connection.
    pub reset_unknown: bool,
    /// SYN proxy (TCP NAT and full-NAT services): the appliance answers
    /// the client's handshake with a SYN cookie and opens the server's side
    /// only once the client's ACK brings a valid cookie back, then
    /// translates sequence numbers for the life of the connection
    /// (`pipeline/synproxy.rs`). A SYN flood then leaves no entry behind.
    pub syn_proxy: bool,
}

/// How a redirect service answers (seed 000): a request to the VIP is load
/// balanced and answered `302 Found` to the chosen server's URL (its
/// [`RealServer::urls`]); the client's next connection goes to that server.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Redirect {
    /// Path prefixes sent to the server's HTTPS URL (e.g. `/checkout/`).
    pub secure_prefixes: Vec<String>,
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
            redirect: None,
            reset_unknown: false,
            syn_proxy: false,
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
