//! What a pipeline is built from: ports, the worker it runs on, routes, table sizes, and why a configuration is refused.

use super::*;
use crate::ratelimit::RateLimit;

/// Most ports a pipeline serves (port sets are 64-bit masks).
pub const MAX_PORTS: usize = 64;

/// One appliance port; its index in [`PipelineConfig::ports`] is the port id
/// used everywhere (receive port, [`Output::tx`] index, routes).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PortSpec {
    /// The port's MAC address (source of every frame sent on it).
    pub mac: EthernetAddress,
    /// Own addresses with their prefix lengths: answered (ARP, NDP, ping),
    /// and defining the on-link subnets.
    pub addresses: Vec<(IpAddr, u8)>,
    /// IP MTU of the port.
    pub mtu: u16,
}

/// What the runtime tells a pipeline about the worker it runs on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WorkerSpec {
    /// Worker number, `0..n_workers`.
    pub index: u16,
    /// Number of workers.
    pub n_workers: u16,
    /// The receive queue this worker owns on each port (worker `i` owns queue `i`).
    pub queue: u16,
    /// Per port: number of receive queues.
    pub rx_queues: Vec<u16>,
    /// Per port: the Toeplitz key if the port spreads with RSS, else `None`.
    pub rss_key: Vec<Option<Vec<u8>>>,
}

impl WorkerSpec {
    /// Worker `index` of `n_workers` on `n_ports` ports where worker `i`
    /// polls receive queue `i` of every port and flows are steered to
    /// workers in software (no port spreads with RSS).
    pub fn software(index: u16, n_workers: u16, n_ports: usize) -> WorkerSpec {
        WorkerSpec {
            index,
            n_workers,
            queue: index,
            rx_queues: vec![n_workers; n_ports],
            rss_key: vec![None; n_ports],
        }
    }
}

/// A static route: packets to `dst`/`prefix_len` leave by `port`, to
/// `gateway` (or on-link, to the destination itself, without one).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Route {
    /// Destination network.
    pub dst: IpAddr,
    /// Prefix length.
    pub prefix_len: u8,
    /// Egress port.
    pub port: u16,
    /// Next hop; `None` for a network on-link on `port`.
    pub gateway: Option<IpAddr>,
}

/// Everything a pipeline is configured with; shared by all workers as an
/// `Arc` and swapped as a whole on reload ([`Pipeline::set_config`]).
#[derive(Debug, Clone)]
pub struct PipelineConfig {
    /// The ports, by port id.
    pub ports: Vec<PortSpec>,
    /// The virtual services.
    pub services: Arc<Config>,
    /// Static routes (on-link networks of the ports are implicit).
    pub routes: Vec<Route>,
    /// IPv4 connection table (per worker). A NAT / full-NAT connection uses
    /// two entries, a DSR / tunnel connection one.
    pub conn4: ConnTableConfig,
    /// IPv6 connection table (per worker).
    pub conn6: ConnTableConfig,
    /// Sticky table (per worker).
    pub sticky: StickyConfig,
    /// Neighbour table (per worker).
    pub neigh: NeighConfig,
    /// Static neighbour entries, installed in the neighbour table at
    /// start and at each new configuration: never probed, aged out, flushed
    /// or replaced by ARP/NDP ([`NeighState::Permanent`](super::NeighState::Permanent)).
    /// At most `neigh.capacity`, on existing ports, unicast MACs.
    pub static_neighbors: Vec<StaticNeighbor>,
    /// Hand traffic for the ports' own addresses (other than what the
    /// pipeline answers) to the host; otherwise it is dropped and counted.
    pub host_path: bool,
    /// Per worker, the rate at which traffic for the host other than
    /// control traffic (ARP, NDP, ICMP, BFD, BGP, VRRP) passes.
    pub host_rate: RateLimit,
    /// Verify IPv4 header checksums. Frames the NIC verified
    /// ([`crate::RxChecksum::Good`]) are not checked again; frames it found
    /// wrong are dropped without a second look. Off: neither is checked.
    pub verify_ipv4_checksum: bool,
    /// Per port: the RSS redirection table the NIC uses, if not the default
    /// (`entry i = i % rx_queues` over [`PipelineConfig::reta_size`] entries).
    pub reta: Vec<Option<Vec<u16>>>,
    /// Size of the default redirection tables.
    pub reta_size: usize,
    /// TTL / hop limit of the packets the pipeline originates.
    pub ttl: u8,
    /// Generate ICMP errors (time exceeded, fragmentation needed, packet too big).
    pub icmp_errors: bool,
    /// Most ICMP errors generated per second per worker.
    pub icmp_rate: u32,
    /// Accept TCP flows mid-stream (a first packet that is not a SYN) for
    /// services whose server choice is deterministic (source hash, Maglev,
    /// rendezvous, or persistence), except in full NAT; others need a SYN.
    pub tcp_pickup: bool,
    /// Most events waiting for [`Pipeline::drain_events`].
    pub outbox_capacity: usize,
    /// Announce the appliance's addresses (gratuitous ARP, unsolicited
    /// neighbour advertisements) when they appear: worker 0 does, at its
    /// first poll and after a configuration adds addresses. Off by default.
    pub announce: bool,
    /// The master key of the SYN cookies (redirect services): 16 random
    /// bytes, the same on every worker (and on every node of a cluster).
    pub syn_cookie_key: [u8; 16],
    /// Report every connection opened and closed as an [`Event::Flow`]
    /// (by identity), for another worker or a cluster peer to install. Off
    /// by default.
    pub flow_events: bool,
    /// This node's place in a cluster; `None` for a single appliance.
    pub cluster: Option<ClusterConfig>,
    /// Timer operations per [`Pipeline::poll`] and table.
    pub timer_budget: usize,
    /// The configuration epoch, numbered by the control thread: events
    /// name services and servers by their indices in one epoch, so the
    /// control thread passes on only those of the epoch in force.
    pub epoch: u64,
}

impl Default for PipelineConfig {
    fn default() -> PipelineConfig {
        PipelineConfig {
            ports: Vec::new(),
            services: Arc::new(Config::empty()),
            routes: Vec::new(),
            conn4: ConnTableConfig {
                capacity: 1 << 18,
                ..ConnTableConfig::default()
            },
            conn6: ConnTableConfig {
                capacity: 1 << 16,
                ..ConnTableConfig::default()
            },
            sticky: StickyConfig::default(),
            neigh: NeighConfig::default(),
            static_neighbors: Vec::new(),
            host_path: true,
            host_rate: RateLimit {
                per_sec: 10_000,
                burst: 1_000,
            },
            verify_ipv4_checksum: true,
            reta: Vec::new(),
            reta_size: 128,
            ttl: 64,
            icmp_errors: true,
            icmp_rate: 1000,
            tcp_pickup: true,
            outbox_capacity: 4096,
            flow_events: false,
            announce: false,
            syn_cookie_key: [0; 16],
            cluster: None,
            timer_budget: 256,
            epoch: 0,
        }
    }
}

/// Why a pipeline cannot be built.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[non_exhaustive]
pub enum ConfigError {
    /// The worker index is not below the number of workers.
    #[error("worker index {index} is not below the number of workers {n_workers}")]
    WorkerIndex {
        /// Index given.
        index: u16,
        /// Number of workers.
        n_workers: u16,
    },
    /// The worker spec does not describe every port.
    #[error(
        "{ports} ports but the worker spec has {rx_queues} rx queue counts and {rss_keys} RSS keys"
    )]
    PortCount {
        /// Ports configured.
        ports: usize,
        /// Entries of `rx_queues`.
        rx_queues: usize,
        /// Entries of `rss_key`.
        rss_keys: usize,
    },
    /// More ports than [`MAX_PORTS`].
    #[error("{0} ports (at most {MAX_PORTS})")]
    TooManyPorts(usize),
    /// A port with zero receive queues.
    #[error("port {port} has no receive queue")]
    NoQueues {
        /// Port.
        port: usize,
    },
    /// An address prefix longer than the address.
    #[error("port {port}: {addr}/{prefix_len} is not a valid address prefix")]
    PortAddress {
        /// Port.
        port: usize,
        /// Address.
        addr: IpAddr,
        /// Prefix length.
        prefix_len: u8,
    },
    /// An MTU too small to forward anything.
    #[error("port {port}: MTU {mtu} is below the minimum of 576 (IPv4) / 1280 (IPv6)")]
    Mtu {
        /// Port.
        port: usize,
        /// MTU.
        mtu: u16,
    },
    /// A port's RSS key or redirection table is unusable.
    #[error("port {port}: {source}")]
    Rss {
        /// Port.
        port: usize,
        /// Why.
        source: RssError,
    },
    /// A route that names no port, or with an invalid prefix or gateway.
    #[error("route #{index} ({dst}/{prefix_len} via port {port}): {reason}")]
    Route {
        /// Route index.
        index: usize,
        /// Destination.
        dst: IpAddr,
        /// Prefix length.
        prefix_len: u8,
        /// Port.
        port: u16,
        /// What is wrong.
        reason: &'static str,
    },
    /// The IPv4 connection table cannot be built.
    #[error("IPv4 connection table: {0}")]
    Conn4(ConnTableError),
    /// The IPv6 connection table cannot be built.
    #[error("IPv6 connection table: {0}")]
    Conn6(ConnTableError),
    /// The sticky table cannot be built.
    #[error("sticky table: {0}")]
    Sticky(StickyTableError),
    /// A static neighbour entry cannot be installed.
    #[error("static neighbour #{index}: {reason}")]
    StaticNeighbor {
        /// Its index in [`PipelineConfig::static_neighbors`].
        index: usize,
        /// What is wrong.
        reason: &'static str,
    },
}
