//! Why a list of services is refused.

use super::*;

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
    /// A redirect service on another protocol than TCP.
    #[error("service #{service}: a redirect service must be TCP (it answers HTTP requests)")]
    RedirectNotTcp {
        /// Service.
        service: usize,
    },
    /// A SYN proxy on a service that is not TCP NAT or full NAT.
    #[error(
        "service #{service}: `syn_proxy` is for TCP services in NAT or full-NAT mode (the appliance must see both directions to translate sequence numbers)"
    )]
    SynProxyNotTcpNat {
        /// Service.
        service: usize,
    },
    /// A server of a redirect service without URLs.
    #[error("service #{service}: server #{server} of a redirect service has no URL")]
    RedirectServerWithoutUrl {
        /// Service.
        service: usize,
        /// Server.
        server: usize,
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
