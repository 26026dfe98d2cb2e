//! The forwarding pipeline of one worker core: bursts of frames in, frames
//! to transmit (per port) and frames for the host out.
//!
//! # Shape
//! A [`Pipeline`] owns everything one worker needs and shares nothing: a
//! connection table per address family ([`crate::conn`]), a sticky table
//! ([`crate::sticky`]), scheduler state ([`crate::sched`]), a neighbour table
//! ([`neigh`]) and its counters ([`Counters`]). Configuration is an immutable
//! [`PipelineConfig`] (ports, services, routes, table sizes) swapped at burst
//! boundaries with [`Pipeline::set_config`]; the control thread talks to the
//! pipeline with [`ControlMsg`]s and collects [`Event`]s. Time is an argument:
//! the pipeline is deterministic.
//!
//! # A burst
//! [`Pipeline::process_burst`] classifies up to [`crate::conn::BURST`] frames
//! (unfragmented IPv4 TCP/UDP without options by
//! [`crate::wire::classify_ipv4_l4`], in a few checks; the rest by
//! [`crate::wire::classify`]), hashes and looks up the connection table for
//! the whole burst at once, then handles each frame:
//!
//! * a frame of a known connection is rewritten for its forwarding mode
//!   ([`forward`]) and sent to its next hop;
//! * a TCP/UDP frame to a VIP opens a connection (sticky binding or
//!   scheduler) and is forwarded;
//! * an ICMP error quoting a known connection is translated ([`icmp`]);
//! * ARP, neighbour discovery and echo requests for our addresses and VIPs
//!   are answered in place ([`local`]);
//! * other traffic to the ports' own addresses goes to the host (exception
//!   path); the rest is dropped.
//!
//! Every received frame is counted exactly once as sent, held, handed to the
//! host, consumed or dropped with a reason ([`Counters`]). Nothing on the
//! packet path allocates, blocks or panics.
//!
//! # Next hops
//! Destinations are on-link on a port (inside one of its address prefixes)
//! or behind a static [`Route`]'s gateway; the neighbour table ([`neigh`])
//! resolves the next hop's MAC and holds a few frames while it does.
//!
//! # Forwarding modes and return traffic
//! * NAT: client → VIP is DNAT'd to the server; the server's replies come back
//!   through the appliance (its gateway) and are translated back (reply
//!   entry of the connection).
//! * Full NAT: DNAT plus SNAT to a local address and port. The port is chosen
//!   with [`crate::rss::SnatPortPicker`] so that the reply's RSS hash on the
//!   port it comes back on lands on this worker's queue.
//! * DSR: only the destination MAC changes (the server holds the VIP on a
//!   loopback); replies bypass the appliance, so TCP state is tracked on the
//!   client's packets only.
//! * Tunnel: IP-in-IP (or IPv6) to the server with the MSS of SYNs clamped;
//!   replies bypass the appliance.
//!
//! # Workers and return traffic
//! Each worker owns its connections. Client traffic is spread by the NIC's
//! RSS; full-NAT replies come back to the owner because the SNAT port was
//! chosen for it ([`Pipeline::owner_worker`] computes the same steering for
//! a runtime that steers in software). NAT-mode replies (server → client)
//! hash to an arbitrary queue: with several workers per port, NAT needs the
//! runtime to steer replies (or a single worker); full NAT does not.
//!
//! # Limits
//! * IP fragments are not reassembled: first fragments of known connections
//!   are forwarded, other fragments are dropped (`drop_fragment`).
//! * Forwarded frames keep the VLAN tag they arrived with, as do answers and
//!   ICMP errors built in place; requests the pipeline originates (ARP,
//!   neighbour solicitations) are untagged. Ports have no VLAN setting.
//! * Neighbours are learned from ARP and NDP only, never from data traffic.
//! * The pipeline does not fragment: an IPv4 packet without DF larger than
//!   the egress MTU is dropped (`drop_too_big`).

mod counters;
mod fast;
mod flow;
mod forward;
mod fuzz;
mod icmp;
mod local;
mod neigh;
mod route;

use core::time::Duration;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::sync::Arc;

use hashbrown::HashMap;
use thiserror::Error;

use crate::conn::{
    BURST, Closed, ConnTable4, ConnTable6, ConnTableConfig, ConnTableError, Handle, Key4, Key6,
    Probe, ReplyRef,
};
use crate::frame::{Frame, FrameAlloc, RxChecksum};
use crate::model::{Config, ForwardMode, SchedulerKind, ServerIdx, ServerState, ServiceIdx};
use crate::rss::{MS_RSS_KEY, Reta, RssError, SnatPortPicker, Toeplitz};
use crate::sched::SchedState;
use crate::sticky::{
    ClientKey, StickyBinding, StickyConfig, StickyEvent, StickyTable, StickyTableError,
};
use crate::time::Time;
use crate::wire::{self, Classified, ClassifyOptions, EthernetAddress, IpProtocol, Ipv4L4, L3Kind};

pub use counters::{Counters, WIRE_DROP_NAMES};
pub use fuzz::{fuzz_pipeline, fuzz_script};
pub use neigh::{MAX_HOLD, NeighConfig, NeighState, Neighbor};

use neigh::NeighTable;
use route::Fib;

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
    /// Hand traffic for the ports' own addresses (other than what the
    /// pipeline answers) to the host; otherwise it is dropped and counted.
    pub host_path: bool,
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
            host_path: true,
            verify_ipv4_checksum: true,
            reta: Vec::new(),
            reta_size: 128,
            ttl: 64,
            icmp_errors: true,
            icmp_rate: 1000,
            tcp_pickup: true,
            outbox_capacity: 4096,
            timer_budget: 256,
            epoch: 0,
        }
    }
}

/// Frames to send after a burst or poll: `tx[port]` on each port, `host` to
/// the kernel (exception path). The runtime reuses one `Output` (its vectors
/// keep their capacity).
#[derive(Debug)]
pub struct Output<F> {
    /// Per port, frames to transmit.
    pub tx: Vec<Vec<F>>,
    /// Frames for the host.
    pub host: Vec<F>,
}

impl<F> Output<F> {
    /// An empty output for `n_ports` ports.
    pub fn new(n_ports: usize) -> Self {
        Output {
            tx: (0..n_ports).map(|_| Vec::new()).collect(),
            host: Vec::new(),
        }
    }

    /// Whether there is nothing to send.
    pub fn is_empty(&self) -> bool {
        self.host.is_empty() && self.tx.iter().all(Vec::is_empty)
    }

    /// Number of frames to send (all ports and the host).
    pub fn len(&self) -> usize {
        self.host.len() + self.tx.iter().map(Vec::len).sum::<usize>()
    }

    /// Empties every queue (dropping the frames).
    pub fn clear(&mut self) {
        for t in &mut self.tx {
            t.clear();
        }
        self.host.clear();
    }
}

/// A message from the control thread.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub enum ControlMsg {
    /// A new services snapshot (server states, weights, pools). Indices map
    /// by identity as on a reload; the ports and routes stay.
    Services(Arc<Config>),
    /// A server's state changed (from a health check or the admin API).
    ServerState {
        /// Service index.
        service: ServiceIdx,
        /// Server index.
        server: ServerIdx,
        /// New state.
        state: ServerState,
    },
    /// A server's weight changed.
    ServerWeight {
        /// Service index.
        service: ServiceIdx,
        /// Server index.
        server: ServerIdx,
        /// New weight.
        weight: u16,
    },
    /// A sticky binding learned by another worker or node.
    StickyBinding {
        /// Service index.
        service: ServiceIdx,
        /// Client key.
        key: ClientKey,
        /// Server.
        server: ServerIdx,
    },
    /// A neighbour learned by another worker.
    Neighbor {
        /// Port.
        port: u16,
        /// Address.
        addr: IpAddr,
        /// MAC address.
        mac: EthernetAddress,
    },
    /// Remove every connection.
    FlushConnections,
    /// Remove the sticky bindings of one service, or all.
    FlushSticky {
        /// The service, or `None` for all.
        service: Option<ServiceIdx>,
    },
    /// Remove every neighbour entry.
    FlushNeighbors,
}

/// An event for the control thread.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Event {
    /// A sticky binding was learned or moved on this worker: publish it.
    Sticky(StickyEvent),
    /// A neighbour was learned from ARP/NDP on this worker: install it in the others.
    Neighbor {
        /// Port.
        port: u16,
        /// Address.
        addr: IpAddr,
        /// MAC address.
        mac: EthernetAddress,
    },
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
}

/// How a port steers received flows to queues (hardware RSS, or the
/// software hash the runtime applies for devices without RSS).
pub(crate) struct Steer {
    toeplitz: Toeplitz,
    reta: Reta,
    /// The queue (RSS) or worker (software) this pipeline owns.
    target: u16,
}

/// A port as the pipeline uses it.
pub(crate) struct PortRt {
    pub(crate) mac: EthernetAddress,
    pub(crate) mtu: u16,
    pub(crate) v4: Vec<(Ipv4Addr, u8)>,
    pub(crate) v6: Vec<(Ipv6Addr, u8)>,
    pub(crate) steer: Steer,
}

impl PortRt {
    /// The port's IPv4 address to use as source towards `dst`: one whose
    /// subnet holds `dst`, else the first.
    pub(crate) fn src_v4_for(&self, dst: Ipv4Addr) -> Option<Ipv4Addr> {
        self.v4
            .iter()
            .find(|(a, p)| route::same_net_v4(*a, dst, *p))
            .or(self.v4.first())
            .map(|(a, _)| *a)
    }

    /// The port's IPv6 address to use as source towards `dst`.
    pub(crate) fn src_v6_for(&self, dst: &Ipv6Addr) -> Option<Ipv6Addr> {
        self.v6
            .iter()
            .find(|(a, p)| route::same_net_v6(a, dst, *p))
            .or(self.v6.first())
            .map(|(a, _)| *a)
    }

    /// The port's source address of `dst`'s family towards `dst`.
    pub(crate) fn src_for(&self, dst: IpAddr) -> Option<IpAddr> {
        match dst {
            IpAddr::V4(d) => self.src_v4_for(d).map(IpAddr::V4),
            IpAddr::V6(d) => self.src_v6_for(&d).map(IpAddr::V6),
        }
    }
}

/// What an address of ours is.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct AddrInfo {
    /// An address of this port.
    pub(crate) port: Option<u16>,
    /// A VIP.
    pub(crate) vip: bool,
    /// A full-NAT local address.
    pub(crate) snat: bool,
    /// Ports on which ARP / NDP for it is answered.
    pub(crate) answer_ports: u64,
}

/// A real server as the packet path uses it.
#[derive(Debug, Clone, Copy)]
pub(crate) struct SrvRt {
    pub(crate) addr: IpAddr,
    pub(crate) port: Option<u16>,
    /// `up` or `drain`: established connections and sticky clients stay.
    pub(crate) keeps: bool,
    /// Egress port and next hop.
    pub(crate) route: Option<(u16, IpAddr)>,
    /// Index of the next hop's neighbour entry, as last seen.
    pub(crate) nh_hint: u32,
    /// MTU of the egress port (0 without a route).
    pub(crate) mtu: u16,
    /// MAC address of the egress port.
    pub(crate) src_mac: EthernetAddress,
    /// The address's term in full-NAT reply hashes under the egress port's
    /// RSS key ([`Toeplitz::addr_term`](crate::rss::Toeplitz::addr_term), as source).
    pub(crate) rss_term: u32,
}

/// Per-service data derived from the snapshot and the routes.
#[derive(Debug, Clone)]
pub(crate) struct SvcRt {
    pub(crate) mode: ForwardMode,
    /// New TCP flows may start without a SYN (deterministic server choice).
    pub(crate) pickup: bool,
    pub(crate) persistent: bool,
    /// Full-NAT local addresses and port range.
    pub(crate) locals: Vec<IpAddr>,
    /// Per port, the local addresses' terms in reply hashes under its RSS
    /// key (as destination), by the index of `locals`.
    pub(crate) local_rss_terms: Vec<Vec<u32>>,
    pub(crate) port_min: u16,
    pub(crate) port_max: u16,
    pub(crate) servers: Vec<SrvRt>,
}

/// A frame's connection key, with its hash, for the burst's lookups.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Lookup {
    /// No TCP/UDP key (ARP, ICMP, a later fragment, a wire error).
    None,
    /// An IPv4 key.
    V4(Key4, u64),
    /// An IPv6 key.
    V6(Key6, u64),
}

/// How many frames ahead of the one being handled its connection lookup is
/// probed: an IPv6 reply entry's forward entry is prefetched at the probe
/// and read this many frames later (an IPv4 reply entry is enough for a
/// steady reply, see [`crate::conn`]).
const PROBE_AHEAD: usize = 4;

/// A frame's classification: the fast one for the common case (unfragmented
/// IPv4 TCP/UDP without options), else the full one.
enum Cls {
    /// [`wire::classify_ipv4_l4`] took it.
    Ipv4L4(Ipv4L4),
    /// [`wire::classify_with`]'s result.
    Full(Result<Classified, wire::Error>),
}

/// Scratch space for one burst (allocated once).
struct Scratch {
    cls: Vec<Cls>,
    /// Each frame's connection key.
    lookups: Vec<Lookup>,
    closed4: Vec<Closed<Key4>>,
    closed6: Vec<Closed<Key6>>,
}

impl Scratch {
    fn new(budget: usize) -> Scratch {
        Scratch {
            cls: Vec::with_capacity(BURST),
            lookups: Vec::with_capacity(BURST),
            closed4: Vec::with_capacity(budget.max(4)),
            closed6: Vec::with_capacity(budget.max(4)),
        }
    }
}

/// One worker's forwarding pipeline (see the module documentation).
pub struct Pipeline<F: Frame> {
    cfg: Arc<PipelineConfig>,
    services: Arc<Config>,
    worker: WorkerSpec,
    ports: Vec<PortRt>,
    addrs: HashMap<IpAddr, AddrInfo>,
    fib: Fib,
    svcs: Vec<SvcRt>,
    /// (address, IP protocol, port; 0 = any) of every NAT-mode server: their
    /// packets are NAT replies, steered by the client they go to.
    nat_servers: hashbrown::HashSet<(IpAddr, u8, u16)>,
    conn4: ConnTable4,
    conn6: ConnTable6,
    sticky: StickyTable,
    sched: SchedState,
    neigh: NeighTable<F>,
    /// Per port: the SNAT port walk for replies arriving on that port.
    pickers: Vec<SnatPortPicker>,
    fnat_cursor: usize,
    ip_ident: u16,
    icmp_tokens: u32,
    icmp_refill: Time,
    counters: Counters,
    svc_ctr: Vec<ServiceCounters>,
    events: Vec<Event>,
    scratch: Scratch,
    classify_opts: ClassifyOptions,
    now: Time,
    next_expiry_check: Time,
    /// Use the established-flow fast path ([`fast`]); tests turn it off to
    /// compare it with the general path.
    fast_path: bool,
    /// Neighbour entry index of the last reply next hop (fast path).
    reply_nh_hint: u32,
    /// Frames the fast path forwarded.
    fast_forwarded: u64,
}

/// How often `poll` looks at the connection and sticky timer wheels.
const TIMER_CHECK: Duration = Duration::from_millis(1);
/// Connection flag: the connection holds a reference on its sticky binding.
pub(crate) const FLAG_STICKY: u8 = 1;

impl<F: Frame> Pipeline<F> {
    /// A pipeline for `worker` with configuration `cfg`. Allocates every
    /// table (sized by `cfg`).
    pub fn new(cfg: Arc<PipelineConfig>, worker: WorkerSpec) -> Result<Self, ConfigError> {
        if worker.index >= worker.n_workers {
            return Err(ConfigError::WorkerIndex {
                index: worker.index,
                n_workers: worker.n_workers,
            });
        }
        let (ports, addrs, fib) = build_ports(&cfg, &worker)?;
        let conn4 = ConnTable4::new(cfg.conn4, Time::ZERO).map_err(ConfigError::Conn4)?;
        let conn6 = ConnTable6::new(cfg.conn6, Time::ZERO).map_err(ConfigError::Conn6)?;
        let sticky = StickyTable::new(cfg.sticky, Time::ZERO).map_err(ConfigError::Sticky)?;
        let services = cfg.services.clone();
        let sched = SchedState::new(&services);
        let svcs = build_services(&services, &fib, &ports);
        let nat_servers = build_nat_servers(&services);
        // Spread each worker's SNAT walk over the port range.
        let start = 1024u16.wrapping_add(worker.index.wrapping_mul(7919));
        Ok(Pipeline {
            pickers: make_pickers(&ports, start),
            fnat_cursor: usize::from(worker.index),
            ip_ident: worker.index.wrapping_mul(4099),
            icmp_tokens: cfg.icmp_rate,
            icmp_refill: Time::ZERO,
            neigh: NeighTable::new(cfg.neigh),
            events: Vec::with_capacity(cfg.outbox_capacity),
            scratch: Scratch::new(cfg.timer_budget),
            classify_opts: ClassifyOptions {
                verify_ipv4_checksum: cfg.verify_ipv4_checksum,
            },
            counters: Counters::default(),
            svc_ctr: fresh_counters(&services),
            now: Time::ZERO,
            next_expiry_check: Time::ZERO,
            fast_path: true,
            reply_nh_hint: u32::MAX,
            fast_forwarded: 0,
            services,
            worker,
            ports,
            addrs,
            fib,
            svcs,
            nat_servers,
            conn4,
            conn6,
            sticky,
            sched,
            cfg,
        })
    }

    /// The configuration in use.
    pub fn config(&self) -> &Arc<PipelineConfig> {
        &self.cfg
    }

    /// The services snapshot in use (the configuration's, or a newer one
    /// from [`ControlMsg`]s).
    pub fn services(&self) -> &Arc<Config> {
        &self.services
    }

    /// The worker this pipeline runs for.
    pub fn worker(&self) -> &WorkerSpec {
        &self.worker
    }

    /// The counters (tables' counters as of the last burst or poll).
    pub fn counters(&self) -> &Counters {
        &self.counters
    }

    /// Processes one received burst from `rx_port`, taking every frame out
    /// of `rx`, and appends what to send to `out`.
    pub fn process_burst<A: FrameAlloc<Frame = F>>(
        &mut self,
        now: Time,
        rx_port: u16,
        rx: &mut Vec<F>,
        out: &mut Output<F>,
        alloc: &mut A,
    ) {
        self.now = now;
        let n_rx = rx.len() as u64;
        self.counters.rx_frames += n_rx;
        if usize::from(rx_port) >= self.ports.len() {
            self.counters.drop_bad_port += n_rx;
            rx.clear();
            return;
        }
        // Each frame's connection probe (`PROBE_AHEAD` frames early).
        let mut probes = [Probe::Miss; BURST];
        while !rx.is_empty() {
            let n = rx.len().min(BURST);
            self.classify_burst(&rx[..n]);
            // Out of the scratch space while the frames are handled, so that
            // each classification is read in place rather than copied.
            let cls = core::mem::take(&mut self.scratch.cls);
            // The connection lookups were prefetched by the classification;
            // each is probed `PROBE_AHEAD` frames before its frame is
            // handled, as late as an IPv6 reply's second lookup allows, so
            // that the misses overlap the handling of the frames before it.
            for (i, p) in probes.iter_mut().enumerate().take(n.min(PROBE_AHEAD)) {
                *p = self.probe_frame(i);
            }
            for (i, (mut frame, c)) in rx.drain(..n).zip(&cls).enumerate() {
                if i + PROBE_AHEAD < n
                    && let Some(p) = probes.get_mut(i + PROBE_AHEAD)
                {
                    *p = self.probe_frame(i + PROBE_AHEAD);
                }
                let finished;
                let h = match probes.get(i) {
                    Some(Probe::Hit(h)) => Some(h),
                    Some(Probe::Reply(r)) => {
                        // A steady IPv4 reply goes from its own entry.
                        if let Some(f) = self.reply4_cls(i, c) {
                            match self.fast4_reply(frame, &f, r, out) {
                                None => continue,
                                Some(back) => frame = back,
                            }
                        }
                        finished = self.finish_frame(i, *r);
                        finished.as_ref()
                    }
                    _ => None,
                };
                self.handle(frame, c, h, rx_port, out, alloc);
            }
            self.scratch.cls = cls;
        }
        self.sync_stats();
    }

    /// Classifies `frames`, and hashes and prefetches the connection
    /// lookup of each TCP/UDP frame (probed later, see `process_burst`).
    fn classify_burst(&mut self, frames: &[F]) {
        let s = &mut self.scratch;
        s.cls.clear();
        s.lookups.clear();
        for f in frames {
            let b = f.bytes();
            let mut opts = self.classify_opts;
            match f.rx_ipv4_checksum() {
                RxChecksum::Unknown => {}
                RxChecksum::Good => opts.verify_ipv4_checksum = false,
                RxChecksum::Bad if opts.verify_ipv4_checksum => {
                    s.cls.push(Cls::Full(Err(wire::Error::BadIpv4Checksum)));
                    s.lookups.push(Lookup::None);
                    continue;
                }
                RxChecksum::Bad => {}
            }
            if let Some(c) = wire::classify_ipv4_l4(b, opts) {
                let key = Key4::new(c.src, c.dst, c.src_port, c.dst_port, c.protocol().0);
                s.lookups.push(Lookup::V4(key, self.conn4.prefetch(&key)));
                s.cls.push(Cls::Ipv4L4(c));
                continue;
            }
            let c = wire::classify_with(b, opts);
            let mut lookup = Lookup::None;
            if let Ok(c) = &c
                && (c.protocol == IpProtocol::TCP || c.protocol == IpProtocol::UDP)
                && c.frag != wire::FragStatus::NonFirst
            {
                match (c.src_addr, c.dst_addr) {
                    (IpAddr::V4(s4), IpAddr::V4(d4)) => {
                        let key = Key4::new(s4, d4, c.src_port, c.dst_port, c.protocol.0);
                        lookup = Lookup::V4(key, self.conn4.prefetch(&key));
                    }
                    (IpAddr::V6(s6), IpAddr::V6(d6)) => {
                        let key = Key6::new(s6, d6, c.src_port, c.dst_port, c.protocol.0);
                        lookup = Lookup::V6(key, self.conn6.prefetch(&key));
                    }
                    _ => {}
                }
            }
            s.cls.push(Cls::Full(c));
            s.lookups.push(lookup);
        }
    }

    /// Probes the connection table for frame `i` of the burst.
    #[inline]
    fn probe_frame(&mut self, i: usize) -> Probe {
        match self.scratch.lookups.get(i) {
            Some(Lookup::V4(key, h)) => self.conn4.probe(key, *h),
            Some(Lookup::V6(key, h)) => self.conn6.probe(key, *h),
            _ => Probe::Miss,
        }
    }

    /// Frame `i`'s fast classification (`c`), if it is an IPv4 TCP/UDP
    /// packet whose probe found a reply entry in the IPv4 table.
    #[inline(always)]
    fn reply4_cls(&self, i: usize, c: &Cls) -> Option<Ipv4L4> {
        if !matches!(self.scratch.lookups.get(i), Some(Lookup::V4(..))) {
            return None;
        }
        match c {
            Cls::Ipv4L4(f) => Some(*f),
            Cls::Full(Ok(c)) => Ipv4L4::of(c),
            Cls::Full(Err(_)) => None,
        }
    }

    /// Frame `i`'s connection, from the reply entry its probe found.
    #[inline]
    fn finish_frame(&mut self, i: usize, r: ReplyRef) -> Option<Handle> {
        match self.scratch.lookups.get(i)? {
            Lookup::V4(..) => self.conn4.finish(r),
            Lookup::V6(..) => self.conn6.finish(r),
            Lookup::None => None,
        }
    }

    /// Decides the fate of one classified frame: the fast path first for a
    /// known connection's unfragmented IPv4 TCP/UDP packet, else the general
    /// path with the full classification (made now if the fast one was used).
    #[inline]
    fn handle<A: FrameAlloc<Frame = F>>(
        &mut self,
        frame: F,
        c: &Cls,
        h: Option<&Handle>,
        rx_port: u16,
        out: &mut Output<F>,
        alloc: &mut A,
    ) {
        let c = match c {
            Cls::Ipv4L4(f) => {
                let frame = match h {
                    Some(h) => match self.fast4(frame, f, h, out) {
                        Some(frame) => frame,
                        None => return,
                    },
                    None => frame,
                };
                return self.handle_classified(frame, &f.classified(), h, rx_port, out, alloc);
            }
            Cls::Full(Ok(c)) => c,
            Cls::Full(Err(e)) => {
                self.counters.wire_drop(*e);
                return;
            }
        };
        // IPv4 with options.
        if let (Some(h), Some(f)) = (h, Ipv4L4::of(c)) {
            let Some(frame) = self.fast4(frame, &f, h, out) else {
                return;
            };
            return self.handle_classified(frame, c, Some(h), rx_port, out, alloc);
        }
        self.handle_classified(frame, c, h, rx_port, out, alloc)
    }

    /// A frame the fast path did not send: a known connection's, or not.
    #[inline]
    fn handle_classified<A: FrameAlloc<Frame = F>>(
        &mut self,
        frame: F,
        c: &Classified,
        h: Option<&Handle>,
        rx_port: u16,
        out: &mut Output<F>,
        alloc: &mut A,
    ) {
        match h {
            Some(h) => self.established(frame, c, *h, rx_port, out, alloc),
            None => self.handle_other(frame, c, rx_port, out, alloc),
        }
    }

    /// A frame without a connection.
    fn handle_other<A: FrameAlloc<Frame = F>>(
        &mut self,
        frame: F,
        c: &Classified,
        rx_port: u16,
        out: &mut Output<F>,
        alloc: &mut A,
    ) {
        if c.l3 == L3Kind::Arp {
            return self.arp(frame, c, rx_port, out);
        }
        // A new flow to a service, the common case here: its service is the
        // one lookup (a service's VIP is always in the address map as a VIP).
        if let Some((svc, proto)) = self.flow_service(c) {
            return self.open_flow(frame, c, svc, proto, rx_port, out, alloc);
        }
        let info = self.addrs.get(&c.dst_addr).copied();
        // Neighbour discovery is addressed to multicast groups as well as to us.
        if c.protocol == IpProtocol::ICMPV6 && (133..=137).contains(&c.icmp_type) {
            return self.ndisc(frame, c, rx_port, info, out);
        }
        if c.is_icmp_error() {
            return self.icmp_error(frame, c, rx_port, info, out, alloc);
        }
        match info {
            Some(i)
                if i.vip && (c.protocol == IpProtocol::TCP || c.protocol == IpProtocol::UDP) =>
            {
                self.new_flow(frame, c, rx_port, out, alloc)
            }
            Some(i) => self.local(frame, c, rx_port, i, out),
            None => self.counters.drop_not_for_us += 1,
        }
    }

    /// Sends `frame` on `port` as is (its Ethernet header already addressed).
    #[inline]
    pub(crate) fn emit(&mut self, frame: F, port: u16, out: &mut Output<F>, local: bool) {
        match out.tx.get_mut(usize::from(port)) {
            Some(q) => {
                q.push(frame);
                if local {
                    self.counters.tx_local += 1;
                } else {
                    self.counters.tx_forward += 1;
                }
            }
            None => self.counters.drop_bad_port += 1,
        }
    }

    /// Hands `frame` to the host, if the host path is on.
    #[inline]
    pub(crate) fn give_host(&mut self, frame: F, out: &mut Output<F>) {
        if self.cfg.host_path {
            out.host.push(frame);
            self.counters.host += 1;
        } else {
            self.counters.drop_host_disabled += 1;
        }
    }

    /// Sends `frame` to next hop `nh` on `port` through the neighbour table.
    #[inline]
    pub(crate) fn send_to_next_hop<A: FrameAlloc<Frame = F>>(
        &mut self,
        frame: F,
        port: u16,
        nh: IpAddr,
        out: &mut Output<F>,
        alloc: &mut A,
        local: bool,
    ) {
        let r = self.neigh.transmit(
            frame,
            port,
            nh,
            self.now,
            &self.ports,
            out,
            alloc,
            &mut self.counters,
            None,
        );
        self.count_tx(r, local);
    }

    /// Sends `frame` to server `server` of service `svc` (next hop `nh` on
    /// `port`), through the neighbour entry cached for that server.
    #[allow(clippy::too_many_arguments)]
    #[inline]
    pub(crate) fn send_to_server<A: FrameAlloc<Frame = F>>(
        &mut self,
        frame: F,
        port: u16,
        nh: IpAddr,
        svc: ServiceIdx,
        server: ServerIdx,
        out: &mut Output<F>,
        alloc: &mut A,
    ) {
        let hint = self
            .svcs
            .get_mut(usize::from(svc))
            .and_then(|s| s.servers.get_mut(usize::from(server)))
            .map(|s| &mut s.nh_hint);
        let r = self.neigh.transmit(
            frame,
            port,
            nh,
            self.now,
            &self.ports,
            out,
            alloc,
            &mut self.counters,
            hint,
        );
        self.count_tx(r, false);
    }

    #[inline]
    fn count_tx(&mut self, r: neigh::TxResult, local: bool) {
        match r {
            neigh::TxResult::Sent if local => self.counters.tx_local += 1,
            neigh::TxResult::Sent => self.counters.tx_forward += 1,
            neigh::TxResult::Held => self.counters.held += 1,
            neigh::TxResult::Dropped => {}
        }
    }

    /// Counts a connection opened on (`svc`, `server`).
    #[inline]
    pub(crate) fn count_conn(&mut self, svc: ServiceIdx, server: ServerIdx) {
        if let Some(c) = self.svc_ctr.get_mut(usize::from(svc)) {
            c.conns += 1;
            if let Some(s) = c.servers.get_mut(usize::from(server)) {
                s.conns += 1;
            }
        }
    }

    pub(crate) fn push_event(&mut self, ev: Event) {
        if self.events.len() < self.cfg.outbox_capacity {
            self.events.push(ev);
        } else {
            self.counters.events_dropped += 1;
        }
    }

    /// Timers: expires connections and sticky bindings, retransmits and
    /// ages neighbour entries (releasing or dropping held frames). Cheap when
    /// nothing is due.
    pub fn poll<A: FrameAlloc<Frame = F>>(
        &mut self,
        now: Time,
        out: &mut Output<F>,
        alloc: &mut A,
    ) {
        self.now = now;
        self.neigh
            .poll(now, &self.ports, out, alloc, &mut self.counters);
        if now >= self.next_expiry_check {
            self.next_expiry_check = now + TIMER_CHECK;
            self.expire(now);
            self.sync_stats();
        }
    }

    /// Expires what is due in the connection and sticky tables.
    fn expire(&mut self, now: Time) {
        let budget = self.cfg.timer_budget.max(1);
        let mut closed4 = core::mem::take(&mut self.scratch.closed4);
        closed4.clear();
        self.conn4.expire(now, budget, &mut closed4);
        for c in closed4.drain(..) {
            self.conn_gone(IpAddr::V4(c.key.src), &c.conn, false);
        }
        self.scratch.closed4 = closed4;
        let mut closed6 = core::mem::take(&mut self.scratch.closed6);
        closed6.clear();
        self.conn6.expire(now, budget, &mut closed6);
        for c in closed6.drain(..) {
            self.conn_gone(IpAddr::V6(c.key.src), &c.conn, false);
        }
        self.scratch.closed6 = closed6;
        self.sticky.expire(now, budget);
        self.drain_sticky_events();
    }

    /// Releases what a connection held (scheduler count, sticky reference).
    pub(crate) fn conn_gone(&mut self, client: IpAddr, conn: &crate::conn::Conn, reload: bool) {
        self.counters.conn_closed += 1;
        if reload {
            self.counters.conn_reload_closed += 1;
        }
        self.sched.conn_closed(conn.service(), conn.server());
        if conn.user_flags & FLAG_STICKY != 0 {
            self.sticky
                .release(&self.services, conn.service(), client, self.now);
        }
    }

    fn drain_sticky_events(&mut self) {
        let n = self.sticky.pending_events().len();
        for i in 0..n {
            let ev = self.sticky.pending_events()[i];
            self.push_event(Event::Sticky(ev));
        }
        self.sticky.drain_events();
    }

    fn sync_stats(&mut self) {
        self.counters.conn4 = self.conn4.stats;
        self.counters.conn6 = self.conn6.stats;
        self.counters.sticky = self.sticky.stats;
        self.counters.sched = self.sched.stats;
    }

    /// Takes the events produced since the last call.
    pub fn drain_events(&mut self, out: &mut Vec<Event>) {
        self.drain_sticky_events();
        out.append(&mut self.events);
    }

    /// Swaps in a new configuration at a burst boundary. Connections and
    /// sticky bindings follow their services and servers by identity;
    /// connections whose service, server or local address is gone are
    /// closed and counted. If the new ports or routes are unusable the old
    /// ones stay (counted in `control_rejected`) and only the services change.
    /// The tables keep the sizes, timer ticks and hash seeds they were built
    /// with; the connection tables take the new timeouts, for the
    /// connections they hold too
    /// ([`ConnTable::set_timeouts`](crate::conn::ConnTable::set_timeouts)), and the new
    /// full-table policies.
    pub fn set_config(&mut self, cfg: Arc<PipelineConfig>) {
        match build_ports(&cfg, &self.worker) {
            Ok((ports, addrs, fib)) => {
                let start = self.pickers.first().map_or(1024, SnatPortPicker::cursor);
                self.pickers = make_pickers(&ports, start);
                self.ports = ports;
                self.addrs = addrs;
                self.fib = fib;
                self.neigh
                    .retain_ports(self.ports.len(), &mut self.counters);
            }
            Err(e) => {
                log::warn!(
                    "pipeline {}: ports or routes refused: {e}",
                    self.worker.index
                );
                self.counters.control_rejected += 1;
            }
        }
        self.classify_opts.verify_ipv4_checksum = cfg.verify_ipv4_checksum;
        self.conn4.set_timeouts(cfg.conn4.timeouts);
        self.conn6.set_timeouts(cfg.conn6.timeouts);
        self.conn4.set_full_policy(cfg.conn4.full_policy);
        self.conn6.set_full_policy(cfg.conn6.full_policy);
        let services = cfg.services.clone();
        self.cfg = cfg;
        self.adopt_services(services);
        self.rebuild_addrs_for_services();
        self.counters.reloads += 1;
        self.sync_stats();
    }

    /// Adopts `changed`, a copy of the services with one server changed;
    /// `false` if there is none (the change named no such server).
    fn adopt_changed(&mut self, changed: Option<Config>) -> bool {
        let Some(c) = changed else {
            return false;
        };
        self.adopt_services(Arc::new(c));
        true
    }

    /// Adopts a services snapshot: maps tables by identity, rebuilds the
    /// per-service data.
    fn adopt_services(&mut self, new: Arc<Config>) {
        let map = Config::reload_map(&self.services, &new);
        if !map.is_identity() {
            let mut closed4 = Vec::new();
            self.conn4.apply_reload(&map, &mut closed4);
            for c in &closed4 {
                self.conn_gone(IpAddr::V4(c.key.src), &c.conn, true);
            }
            let mut closed6 = Vec::new();
            self.conn6.apply_reload(&map, &mut closed6);
            for c in &closed6 {
                self.conn_gone(IpAddr::V6(c.key.src), &c.conn, true);
            }
            self.sticky.apply_reload(&map);
            // Sticky events waiting in the outbox were made in the old
            // indices; they leave in the new ones (or not at all).
            let before = self.events.len();
            self.events.retain_mut(|ev| match ev {
                Event::Sticky(s) => s.remap(&map).map(|n| *s = n).is_some(),
                _ => true,
            });
            self.sticky.stats.reload_events_dropped += (before - self.events.len()) as u64;
            self.sched.reconfigure(&new, Some(&map));
        } else {
            self.sched.reconfigure(&new, None);
        }
        let mut ctr = fresh_counters(&new);
        for (old, c) in core::mem::take(&mut self.svc_ctr).into_iter().enumerate() {
            let Some(m) = map.service(old as ServiceIdx) else {
                continue;
            };
            let Some(slot) = ctr.get_mut(usize::from(m.new_index)) else {
                continue;
            };
            let servers = core::mem::take(&mut slot.servers);
            *slot = ServiceCounters {
                servers,
                ..c.clone()
            };
            for (j, sc) in c.servers.iter().enumerate() {
                if let Some(Some(nj)) = m.servers.get(j)
                    && let Some(dst) = slot.servers.get_mut(usize::from(*nj))
                {
                    *dst = *sc;
                }
            }
        }
        self.svc_ctr = ctr;
        self.services = new;
        self.svcs = build_services(&self.services, &self.fib, &self.ports);
        self.nat_servers = build_nat_servers(&self.services);
    }

    /// Per-service (and per-server) traffic counters, by service index of
    /// the current snapshot ([`Pipeline::services`]). They follow their
    /// service and servers across reloads.
    pub fn service_counters(&self) -> &[ServiceCounters] {
        &self.svc_ctr
    }

    /// Recomputes the address map after the services changed (VIPs and
    /// local addresses come from the services).
    fn rebuild_addrs_for_services(&mut self) {
        self.addrs = build_addrs(&self.ports, &self.services);
    }

    /// Applies a message from the control thread.
    pub fn apply(&mut self, msg: ControlMsg) {
        let ok = match msg {
            ControlMsg::Services(cfg) => {
                self.adopt_services(cfg);
                self.rebuild_addrs_for_services();
                true
            }
            ControlMsg::ServerState {
                service,
                server,
                state,
            } => {
                let changed = self.services.with_server_state(service, server, state);
                self.adopt_changed(changed.ok())
            }
            ControlMsg::ServerWeight {
                service,
                server,
                weight,
            } => {
                let changed = self.services.with_server_weight(service, server, weight);
                self.adopt_changed(changed.ok())
            }
            ControlMsg::StickyBinding {
                service,
                key,
                server,
            } => self
                .sticky
                .install(&self.services, service, key, server, self.now)
                .is_ok(),
            ControlMsg::Neighbor { port, addr, mac } => {
                // Frames this releases go out on the next poll.
                let ok = self.neigh.learn(
                    port,
                    addr,
                    mac,
                    self.now,
                    true,
                    true,
                    true,
                    &self.ports,
                    None,
                    &mut self.counters,
                );
                if ok {
                    self.counters.neigh_installed += 1;
                }
                ok
            }
            ControlMsg::FlushConnections => {
                let mut closed4 = Vec::new();
                self.conn4.flush(&mut closed4);
                for c in &closed4 {
                    self.conn_gone(IpAddr::V4(c.key.src), &c.conn, false);
                }
                let mut closed6 = Vec::new();
                self.conn6.flush(&mut closed6);
                for c in &closed6 {
                    self.conn_gone(IpAddr::V6(c.key.src), &c.conn, false);
                }
                true
            }
            ControlMsg::FlushSticky { service } => {
                match service {
                    Some(s) => self.sticky.flush_service(s),
                    None => self.sticky.flush_all(),
                };
                true
            }
            ControlMsg::FlushNeighbors => {
                self.neigh.flush(&mut self.counters);
                true
            }
        };
        if ok {
            self.counters.control_applied += 1;
        } else {
            self.counters.control_rejected += 1;
        }
        self.sync_stats();
    }

    /// Connections on this worker (both families).
    pub fn connection_count(&self) -> usize {
        self.conn4.len() + self.conn6.len()
    }

    /// Every connection on this worker.
    pub fn connections(&self) -> impl Iterator<Item = ConnView> + '_ {
        let svc = &self.services;
        let v4 = self.conn4.iter().map(move |(k, c)| {
            conn_view(
                svc,
                k.src.into(),
                k.dst.into(),
                k.src_port,
                k.dst_port,
                k.proto,
                &c,
            )
        });
        let v6 = self.conn6.iter().map(move |(k, c)| {
            conn_view(
                svc,
                k.src.into(),
                k.dst.into(),
                k.src_port,
                k.dst_port,
                k.proto,
                &c,
            )
        });
        v4.chain(v6)
    }

    /// Installs an established connection without its packets: a flow
    /// synchronised from a cluster peer, or preloaded by a benchmark. The
    /// service is found by (`vip`, `protocol`, `vip_port`); the reply entry
    /// is built for the service's mode. Counted like a created connection.
    pub fn install_connection(
        &mut self,
        now: Time,
        spec: &ConnSpec,
    ) -> Result<(), InstallConnError> {
        self.now = now;
        let proto = crate::model::Protocol::from_ip_proto(spec.protocol)
            .ok_or(InstallConnError::NoService)?;
        let svc = self
            .services
            .lookup(spec.vip, proto, spec.vip_port)
            .ok_or(InstallConnError::NoService)?;
        let rt = self
            .svcs
            .get(usize::from(svc))
            .ok_or(InstallConnError::NoService)?;
        let srv = *rt
            .servers
            .get(usize::from(spec.server))
            .ok_or(InstallConnError::NoServer)?;
        if spec.client.is_ipv4() != spec.vip.is_ipv4() {
            return Err(InstallConnError::NoService);
        }
        let sport = srv.port.unwrap_or(spec.vip_port);
        let local = match (rt.mode, spec.local) {
            (ForwardMode::FullNat, Some((a, p))) => {
                let i = rt
                    .locals
                    .iter()
                    .position(|x| *x == a)
                    .ok_or(InstallConnError::BadLocal)?;
                Some((i as u16, a, p))
            }
            (ForwardMode::FullNat, None) | (_, Some(_)) => return Err(InstallConnError::BadLocal),
            _ => None,
        };
        let orig = flow::Tuple {
            src: spec.client,
            dst: spec.vip,
            sport: spec.client_port,
            dport: spec.vip_port,
            proto: spec.protocol,
        };
        let reply = match (rt.mode, local) {
            (ForwardMode::Nat, _) => Some(flow::Tuple {
                src: srv.addr,
                dst: spec.client,
                sport,
                dport: spec.client_port,
                proto: spec.protocol,
            }),
            (ForwardMode::FullNat, Some((_, a, p))) => Some(flow::Tuple {
                src: srv.addr,
                dst: a,
                sport,
                dport: p,
                proto: spec.protocol,
            }),
            _ => None,
        };
        let new = crate::conn::NewConn {
            service: svc,
            server: spec.server,
            local: local.map(|(i, _, p)| (i, p)),
            user_flags: 0,
        };
        // An ACK: the connection starts established.
        let reply = reply.as_ref().map(|r| (r, self.conn_prefetch(r)));
        match self.conn_insert(&orig, reply, new, 0x10, false) {
            Ok(()) => {
                self.sched.conn_opened(svc, spec.server);
                self.counters.conn_created += 1;
                self.count_conn(svc, spec.server);
                Ok(())
            }
            Err(crate::conn::InsertError::Exists(_)) => Err(InstallConnError::Exists),
            Err(
                crate::conn::InsertError::ReplyExists | crate::conn::InsertError::ReplyIsForward,
            ) => Err(InstallConnError::ReplyConflict),
            Err(_) => Err(InstallConnError::Full),
        }
    }

    /// Every sticky binding on this worker.
    pub fn sticky_bindings(&self) -> impl Iterator<Item = StickyBinding> + '_ {
        self.sticky.iter()
    }

    /// Every neighbour entry on this worker.
    pub fn neighbors(&self) -> impl Iterator<Item = Neighbor> + '_ {
        self.neigh.iter(self.now)
    }

    /// The known MAC of `addr` on `port`, if any.
    pub fn neighbor(&self, port: u16, addr: IpAddr) -> Option<EthernetAddress> {
        self.neigh.lookup(port, addr)
    }

    /// Which worker owns the flow of a received `frame` on `port`: the
    /// worker whose queue the port's RSS (or, on a port without RSS, the
    /// software hash the pipeline assumes) steers it to. For full-NAT
    /// replies that is the worker that opened the connection. ICMP errors
    /// are steered by the flow they quote. `None` for frames any worker
    /// may handle (ARP, unparseable frames).
    pub fn owner_worker(&self, frame: &F, port: u16) -> Option<u16> {
        let p = self.ports.get(usize::from(port))?;
        let c = wire::classify_with(frame.bytes(), self.classify_opts).ok()?;
        // Neighbour discovery is answered and learned by whichever worker
        // receives it; what it learns is published to the others.
        if c.l3 == L3Kind::Ipv6
            && c.protocol == IpProtocol::ICMPV6
            && (133..=137).contains(&c.icmp_type)
        {
            return None;
        }
        if let Some(client) = self.nat_client(frame.bytes(), &c) {
            return Some(client_owner(client, self.worker.n_workers));
        }
        route::owner(&p.steer, frame.bytes(), &c)
    }

    /// The client end of a NAT-mode flow this frame belongs to (forward:
    /// its source; reply from a NAT server: its destination), so that both
    /// directions of a NAT connection are steered to one worker. No NIC can
    /// do that by RSS: a reply's addresses differ from the request's.
    fn nat_client(&self, frame: &[u8], c: &Classified) -> Option<(IpAddr, u16)> {
        // ICMP errors are steered by the flow they quote, seen in the
        // direction its owner receives it.
        let (src, sport, dst, dport, proto) = if c.is_icmp_error() {
            let quoted = frame.get(c.l4_offset + 8..c.l3_end)?;
            let inner = match c.l3 {
                L3Kind::Ipv4 => wire::EmbeddedFlow::parse_v4(quoted).ok()?,
                _ => wire::EmbeddedFlow::parse_v6(quoted).ok()?,
            };
            (
                inner.dst_addr,
                inner.dst_port?,
                inner.src_addr,
                inner.src_port?,
                inner.protocol,
            )
        } else if c.has_l4_header() && matches!(c.protocol, IpProtocol::TCP | IpProtocol::UDP) {
            (c.src_addr, c.src_port, c.dst_addr, c.dst_port, c.protocol)
        } else {
            return None;
        };
        let pr = crate::model::Protocol::from_ip_proto(proto.0)?;
        if let Some(i) = self.services.lookup(dst, pr, dport) {
            return (self.svcs.get(usize::from(i))?.mode == ForwardMode::Nat)
                .then_some((src, sport));
        }
        // A reply from a server that is also in a full-NAT service goes to a
        // local address: that one is steered by RSS like the port was chosen for.
        if self
            .addrs
            .get(&dst)
            .is_some_and(|a| a.snat || a.port.is_some())
        {
            return None;
        }
        (self.nat_servers.contains(&(src, proto.0, sport))
            || self.nat_servers.contains(&(src, proto.0, 0)))
        .then_some((dst, dport))
    }
}

/// The worker owning the NAT connections of a client address and port.
fn client_owner((addr, port): (IpAddr, u16), n_workers: u16) -> u16 {
    let mut buf = [0u8; 18];
    match addr {
        IpAddr::V4(a) => buf[..4].copy_from_slice(&a.octets()),
        IpAddr::V6(a) => buf[..16].copy_from_slice(&a.octets()),
    }
    buf[16..].copy_from_slice(&port.to_be_bytes());
    let h = xxhash_rust::xxh3::xxh3_64(&buf);
    (h % u64::from(n_workers.max(1))) as u16
}

/// (address, protocol, port; 0 = any) of the servers of NAT-mode services.
fn build_nat_servers(cfg: &Config) -> hashbrown::HashSet<(IpAddr, u8, u16)> {
    let mut set = hashbrown::HashSet::new();
    for (_, s) in cfg.services() {
        if s.mode != ForwardMode::Nat {
            continue;
        }
        for srv in &s.servers {
            // A server without its own port answers from the service's port
            // (or from any port, for an all-ports service).
            let port = srv.port.or(s.port).unwrap_or(0);
            set.insert((srv.addr, s.protocol.ip_proto(), port));
        }
    }
    set
}

/// Traffic of one service on this worker ([`Pipeline::service_counters`]).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct ServiceCounters {
    /// Client packets of the service's connections received.
    pub packets_in: u64,
    /// Their bytes (IP length).
    pub bytes_in: u64,
    /// Server packets of the service's connections received (NAT and full NAT).
    pub packets_out: u64,
    /// Their bytes (IP length).
    pub bytes_out: u64,
    /// Connections opened.
    pub conns: u64,
    /// New clients dropped because no server was available.
    pub no_server: u64,
    /// Per server, in pool order.
    pub servers: Vec<ServerCounters>,
}

/// Traffic of one real server on this worker.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct ServerCounters {
    /// Connections opened to it.
    pub conns: u64,
    /// Client packets sent its way.
    pub packets: u64,
    /// Their bytes (IP length).
    pub bytes: u64,
}

/// A connection to install with [`Pipeline::install_connection`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ConnSpec {
    /// Client address.
    pub client: IpAddr,
    /// Client port.
    pub client_port: u16,
    /// VIP.
    pub vip: IpAddr,
    /// VIP port.
    pub vip_port: u16,
    /// IP protocol (6 or 17).
    pub protocol: u8,
    /// Server index in the service's pool.
    pub server: ServerIdx,
    /// Full NAT: the local address (of the service's pool) and port.
    pub local: Option<(IpAddr, u16)>,
}

/// Why [`Pipeline::install_connection`] refused a connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Error)]
#[non_exhaustive]
pub enum InstallConnError {
    /// No service for the VIP, protocol and port.
    #[error("no such service")]
    NoService,
    /// No such server in the service's pool.
    #[error("no such server")]
    NoServer,
    /// A local address outside the service's pool, or missing for full NAT.
    #[error("local address missing or not in the service's pool")]
    BadLocal,
    /// The connection already exists.
    #[error("connection exists")]
    Exists,
    /// Its reply tuple is in use.
    #[error("reply tuple in use")]
    ReplyConflict,
    /// The connection table is full.
    #[error("connection table full")]
    Full,
}

/// A connection as the admin CLI shows it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ConnView {
    /// Client address.
    pub client: IpAddr,
    /// Client port.
    pub client_port: u16,
    /// VIP.
    pub vip: IpAddr,
    /// VIP port.
    pub vip_port: u16,
    /// IP protocol.
    pub protocol: u8,
    /// Service index.
    pub service: ServiceIdx,
    /// Server index.
    pub server: ServerIdx,
    /// Server address (if the server still exists).
    pub server_addr: Option<IpAddr>,
    /// Full-NAT local address and port.
    pub local: Option<(IpAddr, u16)>,
    /// TCP state.
    pub state: crate::conn::ConnState,
    /// Expiry if idle.
    pub expires: Time,
}

fn conn_view(
    svc: &Config,
    client: IpAddr,
    vip: IpAddr,
    client_port: u16,
    vip_port: u16,
    protocol: u8,
    c: &crate::conn::Conn,
) -> ConnView {
    let spec = svc.service(c.service());
    ConnView {
        client,
        client_port,
        vip,
        vip_port,
        protocol,
        service: c.service(),
        server: c.server(),
        server_addr: spec.and_then(|s| s.servers.get(usize::from(c.server())).map(|s| s.addr)),
        local: c.local().and_then(|(i, port)| {
            spec.and_then(|s| s.local_pool.as_ref())
                .and_then(|p| p.addrs.get(usize::from(i)))
                .map(|a| (*a, port))
        }),
        state: c.state(),
        expires: c.expires(),
    }
}

fn make_pickers(ports: &[PortRt], start: u16) -> Vec<SnatPortPicker> {
    ports
        .iter()
        .map(|p| SnatPortPicker::new(p.steer.target, start))
        .collect()
}

/// Ports, address map and routing table built from a configuration.
type BuiltPorts = (Vec<PortRt>, HashMap<IpAddr, AddrInfo>, Fib);

/// Validates the ports and routes and builds their runtime form.
fn build_ports(cfg: &PipelineConfig, worker: &WorkerSpec) -> Result<BuiltPorts, ConfigError> {
    let n = cfg.ports.len();
    if n > MAX_PORTS {
        return Err(ConfigError::TooManyPorts(n));
    }
    if worker.rx_queues.len() != n || worker.rss_key.len() != n {
        return Err(ConfigError::PortCount {
            ports: n,
            rx_queues: worker.rx_queues.len(),
            rss_keys: worker.rss_key.len(),
        });
    }
    let mut ports = Vec::with_capacity(n);
    for (i, p) in cfg.ports.iter().enumerate() {
        let mut v4 = Vec::new();
        let mut v6 = Vec::new();
        for &(a, len) in &p.addresses {
            let bad = match a {
                IpAddr::V4(x) => {
                    len > 32 || x.is_unspecified() || x.is_multicast() || x.is_broadcast()
                }
                IpAddr::V6(x) => len > 128 || x.is_unspecified() || x.is_multicast(),
            };
            if bad {
                return Err(ConfigError::PortAddress {
                    port: i,
                    addr: a,
                    prefix_len: len,
                });
            }
            match a {
                IpAddr::V4(x) => v4.push((x, len)),
                IpAddr::V6(x) => v6.push((x, len)),
            }
        }
        if p.mtu < 576 || (!v6.is_empty() && p.mtu < 1280) {
            return Err(ConfigError::Mtu {
                port: i,
                mtu: p.mtu,
            });
        }
        let queues = worker.rx_queues[i];
        if queues == 0 {
            return Err(ConfigError::NoQueues { port: i });
        }
        // A port without RSS key is steered in software over the workers
        // (with the standard key), so `owner_worker` and the SNAT port
        // choice agree with what the runtime does.
        let (key, reta, target) = match &worker.rss_key[i] {
            Some(k) => {
                let reta = match cfg.reta.get(i).and_then(Option::as_ref) {
                    Some(entries) => Reta::from_entries(entries.clone()),
                    None => Reta::round_robin(cfg.reta_size.max(1), queues),
                };
                (&k[..], reta, worker.queue)
            }
            None => (
                &MS_RSS_KEY[..],
                Reta::round_robin(cfg.reta_size.max(1), worker.n_workers.max(1)),
                worker.index,
            ),
        };
        let reta = reta.map_err(|source| ConfigError::Rss { port: i, source })?;
        let toeplitz = Toeplitz::new(key).map_err(|source| ConfigError::Rss { port: i, source })?;
        ports.push(PortRt {
            mac: p.mac,
            mtu: p.mtu,
            v4,
            v6,
            steer: Steer {
                toeplitz,
                reta,
                target,
            },
        });
    }
    for (index, r) in cfg.routes.iter().enumerate() {
        let max = if r.dst.is_ipv4() { 32 } else { 128 };
        let reason = if usize::from(r.port) >= n {
            Some("no such port")
        } else if r.prefix_len > max {
            Some("prefix longer than the address")
        } else if r.gateway.is_some_and(|g| g.is_ipv4() != r.dst.is_ipv4()) {
            Some("gateway of another address family")
        } else if r
            .gateway
            .is_some_and(|g| g.is_unspecified() || g.is_multicast())
        {
            Some("gateway is not a unicast address")
        } else {
            None
        };
        if let Some(reason) = reason {
            return Err(ConfigError::Route {
                index,
                dst: r.dst,
                prefix_len: r.prefix_len,
                port: r.port,
                reason,
            });
        }
    }
    let fib = Fib::new(&ports, &cfg.routes);
    let addrs = build_addrs(&ports, &cfg.services);
    Ok((ports, addrs, fib))
}

/// Our addresses: the ports', the VIPs and the full-NAT local addresses.
fn build_addrs(ports: &[PortRt], services: &Config) -> HashMap<IpAddr, AddrInfo> {
    let mut m: HashMap<IpAddr, AddrInfo> = HashMap::new();
    for (i, p) in ports.iter().enumerate() {
        let addrs =
            p.v4.iter()
                .map(|(a, _)| IpAddr::V4(*a))
                .chain(p.v6.iter().map(|(a, _)| IpAddr::V6(*a)));
        for a in addrs {
            let e = m.entry(a).or_default();
            if e.port.is_none() {
                e.port = Some(i as u16);
            }
            e.answer_ports |= 1u64 << i;
        }
    }
    // VIPs and local addresses are answered on the ports whose subnets hold
    // them, or on every port if none does.
    let onlink = |a: IpAddr| -> u64 {
        let mut mask = 0u64;
        for (i, p) in ports.iter().enumerate() {
            let hit = match a {
                IpAddr::V4(x) => p.v4.iter().any(|(n, l)| route::same_net_v4(*n, x, *l)),
                IpAddr::V6(x) => p.v6.iter().any(|(n, l)| route::same_net_v6(n, &x, *l)),
            };
            if hit {
                mask |= 1u64 << i;
            }
        }
        if mask == 0 {
            if ports.len() >= 64 {
                u64::MAX
            } else {
                (1u64 << ports.len()) - 1
            }
        } else {
            mask
        }
    };
    for (_, s) in services.services() {
        let ports_mask = onlink(s.vip);
        let e = m.entry(s.vip).or_default();
        e.vip = true;
        if e.port.is_none() {
            e.answer_ports |= ports_mask;
        }
        if let Some(pool) = &s.local_pool {
            for &a in &pool.addrs {
                let ports_mask = onlink(a);
                let e = m.entry(a).or_default();
                e.snat = true;
                if e.port.is_none() {
                    e.answer_ports |= ports_mask;
                }
            }
        }
    }
    m
}

/// Zeroed per-service counters for `services`.
fn fresh_counters(services: &Config) -> Vec<ServiceCounters> {
    services
        .services()
        .map(|(_, s)| ServiceCounters {
            servers: vec![ServerCounters::default(); s.servers.len()],
            ..ServiceCounters::default()
        })
        .collect()
}

/// Per-service, per-server runtime data (routes to the servers, and what
/// the fast path needs of their egress ports).
fn build_services(services: &Config, fib: &Fib, ports: &[PortRt]) -> Vec<SvcRt> {
    services
        .services()
        .map(|(_, s)| {
            let locals = s
                .local_pool
                .as_ref()
                .map(|p| p.addrs.clone())
                .unwrap_or_default();
            let local_rss_terms = ports
                .iter()
                .map(|p| {
                    let t = &p.steer.toeplitz;
                    locals.iter().map(|&a| t.addr_term(a, true)).collect()
                })
                .collect();
            SvcRt {
                mode: s.mode,
                pickup: s.mode != ForwardMode::FullNat
                    && (s.persistence.is_some()
                        || matches!(
                            s.scheduler,
                            SchedulerKind::SourceHash
                                | SchedulerKind::Maglev
                                | SchedulerKind::Rendezvous
                        )),
                persistent: s.persistence.is_some(),
                locals,
                local_rss_terms,
                port_min: s.local_pool.as_ref().map_or(1024, |p| p.port_min),
                port_max: s.local_pool.as_ref().map_or(65535, |p| p.port_max),
                servers: s
                    .servers
                    .iter()
                    .map(|srv| {
                        let route = fib.lookup(srv.addr);
                        let egress = route.and_then(|(p, _)| ports.get(usize::from(p)));
                        SrvRt {
                            addr: srv.addr,
                            port: srv.port,
                            keeps: srv.state.keeps_clients(),
                            route,
                            nh_hint: u32::MAX,
                            mtu: egress.map_or(0, |p| p.mtu),
                            src_mac: egress.map_or(EthernetAddress::UNSPECIFIED, |p| p.mac),
                            rss_term: egress
                                .map_or(0, |p| p.steer.toeplitz.addr_term(srv.addr, false)),
                        }
                    })
                    .collect(),
            }
        })
        .collect()
}

impl<F: Frame> core::fmt::Debug for Pipeline<F> {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("Pipeline")
            .field("worker", &self.worker)
            .field("ports", &self.ports.len())
            .field("services", &self.services.len())
            .field("conns", &self.connection_count())
            .field("sticky", &self.sticky.len())
            .field("neighbors", &self.neigh.len())
            .finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pipeline_moves_to_its_worker_thread() {
        fn send<T: Send>() {}
        send::<Pipeline<crate::frame::VecFrame>>();
        send::<Output<crate::frame::VecFrame>>();
        send::<ControlMsg>();
        send::<Event>();
    }

    #[test]
    fn bad_specs_are_refused() {
        let cfg = Arc::new(PipelineConfig {
            ports: vec![PortSpec {
                mac: EthernetAddress([2, 0, 0, 0, 0, 1]),
                addresses: vec![(IpAddr::V4(Ipv4Addr::new(10, 0, 0, 1)), 24)],
                mtu: 1500,
            }],
            ..PipelineConfig::default()
        });
        let w = |index, rx: Vec<u16>, key: Vec<Option<Vec<u8>>>| WorkerSpec {
            index,
            n_workers: 2,
            queue: index,
            rx_queues: rx,
            rss_key: key,
        };
        let new = |w| Pipeline::<crate::frame::VecFrame>::new(cfg.clone(), w).map(|_| ());
        assert!(matches!(
            new(w(2, vec![2], vec![None])),
            Err(ConfigError::WorkerIndex { .. })
        ));
        assert!(matches!(
            new(w(0, vec![], vec![None])),
            Err(ConfigError::PortCount { .. })
        ));
        assert!(matches!(
            new(w(0, vec![0], vec![None])),
            Err(ConfigError::NoQueues { .. })
        ));
        assert!(matches!(
            new(w(0, vec![2], vec![Some(vec![1, 2, 3])])),
            Err(ConfigError::Rss { .. })
        ));
        assert!(new(w(1, vec![2], vec![None])).is_ok());
        let mut bad = (*cfg).clone();
        bad.routes.push(Route {
            dst: IpAddr::V4(Ipv4Addr::UNSPECIFIED),
            prefix_len: 0,
            port: 3,
            gateway: None,
        });
        assert!(matches!(
            Pipeline::<crate::frame::VecFrame>::new(Arc::new(bad), w(0, vec![2], vec![None])),
            Err(ConfigError::Route { index: 0, .. })
        ));
        let mut bad = (*cfg).clone();
        bad.ports[0].mtu = 100;
        assert!(matches!(
            Pipeline::<crate::frame::VecFrame>::new(Arc::new(bad), w(0, vec![2], vec![None])),
            Err(ConfigError::Mtu { .. })
        ));
    }
}
