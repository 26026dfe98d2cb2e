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
//! the whole burst at once, then handles each frame: a known connection's
//! IPv4 TCP/UDP packet by its cached plan ([`fast`]), every other frame by
//! its verdict ([`verdict`]: decided without changing anything, then carried
//! out by one stage):
//!
//! * a frame of a known connection is rewritten for its connection's
//!   transmit ([`xmit`], [`forward`]) and sent to its next hop;
//! * a TCP/UDP frame to a VIP opens a connection (sticky binding or
//!   scheduler) and is forwarded;
//! * a TCP segment to a redirect service is answered in place, without
//!   state ([`respond`]: SYN cookies, then a 302);
//! * an ICMP error quoting a known connection is translated ([`icmp`]);
//! * ARP, neighbour discovery and echo requests for our addresses and VIPs
//!   are answered in place ([`local`]);
//! * other traffic to the ports' own addresses goes to the host (exception
//!   path, per port); the rest is dropped.
//!
//! Every stage returns the frame's [`fate::Fate`] and the burst loop counts
//! it, so every received frame is counted exactly once as sent, held,
//! handed to the host, consumed or dropped with a reason ([`Counters`]).
//! Nothing on the packet path allocates, blocks or panics.
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

mod announce;
mod build;
mod burst;
mod cluster;
mod config;
mod control;
mod counters;
mod fast;
mod fate;
mod flow;
mod forward;
#[cfg(any(test, fuzzing, feature = "fuzzing"))]
mod fuzz;
mod host;
mod icmp;
mod local;
mod neigh;
mod quarantine;
mod record;
mod respond;
mod route;
mod select;
mod steer;
mod steerprog;
mod synproxy;
#[cfg(test)]
mod tests;
mod tx;
mod verdict;
mod views;
mod xmit;

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
use crate::model::{
    Config, ForwardMode, Protocol, SchedulerKind, ServerIdx, ServerState, ServiceIdx,
};
use crate::ratelimit::TokenBucket;
use crate::rss::{MS_RSS_KEY, Reta, RssError, SnatPortPicker, Toeplitz};
use crate::sched::SchedState;
use crate::sticky::{
    ClientKey, StickyBinding, StickyConfig, StickyEvent, StickyTable, StickyTableError,
};
use crate::time::Time;
use crate::wire::{
    self, Classified, ClassifyOptions, EthernetAddress, FragStatus, IpProtocol, Ipv4L4, L3Kind,
};

use build::*;
use burst::*;
pub use cluster::{AddressClaims, ClusterConfig, Entry};
pub use config::*;
pub use control::*;
pub use counters::{Counters, WIRE_DROP_NAMES};
use fate::{DropReason, Fate};
use flow::ConnRef;
#[cfg(any(test, fuzzing, feature = "fuzzing"))]
pub use fuzz::{fuzz_pipeline, fuzz_script};
pub use neigh::{MAX_HOLD, NeighConfig, NeighState, Neighbor, StaticNeighbor};
pub use quarantine::{FnatTuple, PortWalk};
pub use record::{ConnRecord, FlowEvent, ServerIdent, StickyRecord};
pub use select::ConnFilter;
pub use steerprog::{Insn, SKB_QUEUE_MAPPING, SteerProgError, SteeringProgram, TCX_NEXT};
pub use tx::*;
pub use views::*;
use xmit::{ConnFlags, Xmit};

use neigh::NeighTable;
use route::Fib;

/// One worker's forwarding pipeline (see the module documentation).
pub struct Pipeline<F: Frame> {
    cfg: Arc<PipelineConfig>,
    services: Arc<Config>,
    worker: WorkerSpec,
    ports: Vec<PortRt>,
    addrs: HashMap<IpAddr, AddrInfo>,
    /// What the cluster has this node answer for ([`AddressClaims`]).
    claims: AddressClaims,
    fib: Fib,
    svcs: Vec<SvcRt>,
    /// (address, IP protocol, port; 0 = any) of every NAT-mode server: their
    /// packets are NAT replies, steered by the client they go to.
    nat_servers: hashbrown::HashSet<(IpAddr, u8, u16)>,
    /// How NAT connections are steered by their client ([`steer::client_owner`]):
    /// the standard key over the workers, the same on every port, so that the
    /// two directions of a connection meet even when they arrive on ports
    /// with different RSS keys.
    client_steer: Steer,
    /// The real servers' addresses ([`build_server_addrs`]).
    server_addrs: hashbrown::HashSet<IpAddr>,
    conn4: ConnTable4,
    conn6: ConnTable6,
    sticky: StickyTable,
    sched: SchedState,
    neigh: NeighTable<F>,
    /// Per port: the SNAT port walk for replies arriving on that port.
    pickers: Vec<SnatPortPicker>,
    fnat_cursor: usize,
    /// Full-NAT tuples a previous instance used ([`quarantine`]).
    quarantine: quarantine::Quarantine,
    ip_ident: u16,
    /// The live cluster nodes that take new flows (sorted).
    cluster_live: Vec<crate::cluster::NodeId>,
    /// The live cluster nodes, draining ones included (sorted): where the
    /// packets of flows already open are looked for.
    cluster_serving: Vec<crate::cluster::NodeId>,
    /// While a packet from another node is handled: which of the flow's
    /// nodes it was sent to.
    arrival: Option<crate::wire::gue::Hop>,
    /// Packets from other nodes decapsulated during a burst, handled after it.
    reentry: Vec<(F, crate::wire::gue::Hop)>,
    icmp_bucket: TokenBucket,
    host_bucket: TokenBucket,
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
    /// Addresses to announce at the next poll ([`announce`]).
    announce_pending: Vec<IpAddr>,
    /// SYN cookies of the redirect responder.
    cookies: crate::syncookie::SynCookies,
    /// The redirect responder's answer, built before it is written.
    respond_buf: Vec<u8>,
    /// The SYN proxy's per-connection sequence state ([`synproxy`]).
    seq_shifts: synproxy::SeqShifts,
    /// [`PipelineConfig::flow_events`], read per new flow.
    flow_events: bool,
    /// Neighbour entry index of the last reply next hop (fast path).
    reply_nh_hint: u32,
    /// Frames the fast path forwarded.
    fast_forwarded: u64,
}

/// Refuses static neighbours the table could not hold, on ports that do
/// not exist, or with a multicast or zero MAC address.
fn check_static_neighbors(cfg: &PipelineConfig, n_ports: usize) -> Result<(), ConfigError> {
    let too_many = cfg.static_neighbors.len() > cfg.neigh.capacity;
    for (index, s) in cfg.static_neighbors.iter().enumerate() {
        let reason = if usize::from(s.port) >= n_ports {
            "no such port"
        } else if s.mac.is_multicast() || s.mac == EthernetAddress::UNSPECIFIED {
            "the MAC address must be unicast"
        } else if too_many {
            "more static neighbours than the neighbour table holds"
        } else {
            continue;
        };
        return Err(ConfigError::StaticNeighbor { index, reason });
    }
    Ok(())
}

/// How often `poll` looks at the connection and sticky timer wheels.
const TIMER_CHECK: Duration = Duration::from_millis(1);

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
        let (ports, fib) = build_ports(&cfg, &worker)?;
        let claims = AddressClaims::at_start(cfg.cluster.as_ref());
        let addrs = build_addrs(&ports, &cfg.services, &claims);
        check_static_neighbors(&cfg, ports.len())?;
        let conn4 = ConnTable4::new(cfg.conn4, Time::ZERO).map_err(ConfigError::Conn4)?;
        let conn6 = ConnTable6::new(cfg.conn6, Time::ZERO).map_err(ConfigError::Conn6)?;
        let sticky = StickyTable::new(cfg.sticky, Time::ZERO).map_err(ConfigError::Sticky)?;
        let services = cfg.services.clone();
        let sched = SchedState::new(&services);
        let svcs = build_services(&services, &fib, &ports);
        let nat_servers = build_nat_servers(&services);
        let client_steer = client_steer(&cfg, &worker)?;
        let server_addrs = build_server_addrs(&services);
        // Spread each worker's SNAT walk over the port range.
        let start = 1024u16.wrapping_add(worker.index.wrapping_mul(7919));
        let mut counters = Counters::default();
        let mut neigh = NeighTable::new(cfg.neigh);
        neigh.set_static(&cfg.static_neighbors, Time::ZERO, &mut counters);
        let mut p = Pipeline {
            pickers: make_pickers(&ports, start),
            fnat_cursor: usize::from(worker.index),
            quarantine: quarantine::Quarantine::default(),
            ip_ident: worker.index.wrapping_mul(4099),
            cluster_live: Vec::new(),
            cluster_serving: Vec::new(),
            arrival: None,
            reentry: Vec::new(),
            icmp_bucket: TokenBucket::default(),
            host_bucket: TokenBucket::default(),
            neigh,
            events: Vec::with_capacity(cfg.outbox_capacity),
            scratch: Scratch::new(cfg.timer_budget),
            classify_opts: ClassifyOptions {
                verify_ipv4_checksum: cfg.verify_ipv4_checksum,
            },
            counters,
            svc_ctr: fresh_counters(&services),
            now: Time::ZERO,
            next_expiry_check: Time::ZERO,
            fast_path: true,
            announce_pending: Vec::new(),
            cookies: crate::syncookie::SynCookies::new(cfg.syn_cookie_key),
            respond_buf: Vec::with_capacity(1460),
            seq_shifts: synproxy::SeqShifts::default(),
            flow_events: cfg.flow_events,
            reply_nh_hint: u32::MAX,
            fast_forwarded: 0,
            services,
            worker,
            ports,
            addrs,
            claims,
            fib,
            svcs,
            nat_servers,
            client_steer,
            server_addrs,
            conn4,
            conn6,
            sticky,
            sched,
            cfg,
        };
        // Announce every address at the first poll (worker 0, if asked).
        p.queue_new_addresses(&HashMap::new());
        Ok(p)
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
