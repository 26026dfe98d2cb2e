//! The node's side of a cluster (seed 002): membership by heartbeats, and
//! the flow state each node sends the others.
//!
//! A thread of its own ([`link`]) owns a UDP socket on the node's cluster
//! address (a port address: the datagrams go through the exception path
//! and the DPDK port, as control traffic that the host path never
//! rate-limits). Every `heartbeat_ms` it tells every node it is alive; a
//! node not heard from for `misses` heartbeats is dead, and the live set
//! reaches the workers, which rank flows over it
//! ([`tack_dataplane::cluster`]).
//!
//! **What is synchronised, and when.** The workers report each connection
//! they open and close and each sticky binding they make, by identity
//! ([`tack_dataplane::pipeline::FlowEvent`]). The control thread sends a
//! connection to the other node among the flow's primary and backup (the
//! backup when this node is the primary) and a sticky binding to every
//! live node; the link thread sends what it has at once, batched into
//! datagrams, without waiting: the SYN is forwarded to its server before
//! its record leaves (a few milliseconds later), so a node dying in that
//! window loses the flows it opened in it; their packets reach the backup,
//! which passes them on or, for deterministic schedulers (Maglev,
//! rendezvous, source hash, persistence), opens them on the same server.
//! The receiving node installs a connection in every worker (whichever
//! the network hands its packets to). Messages are authenticated with the
//! cluster's key (HMAC-SHA256); anything else is counted and dropped.
//!
//! **Full NAT.** Each node opens its full-NAT connections from its own
//! local addresses (`cluster.nodes[].local_addresses`), so the servers'
//! replies come back to it. Those connections go to every node, not only
//! the backup: when a node dies, the live node ranked first for each of its
//! local addresses ([`claimant`]) answers for it (ARP, gratuitous ARP) and
//! translates the replies, while the clients' packets are forwarded by
//! whichever node receives them.
//!
//! **Entry.** With `entry: scheduler`, only the active scheduler answers
//! for the VIPs; the control plane is told by the election (keepalived's
//! VRRP over the exception path, `tackctl cluster scheduler
//! active|standby`) and the workers announce the VIPs when it becomes
//! active ([`AddressClaims`]).

pub mod link;
pub mod wire;

use std::sync::Arc;

use std::collections::HashSet;
use std::net::IpAddr;

use tack_dataplane::cluster::{FlowId, NodeId, claimant, rank};
use tack_dataplane::model::Config;
use tack_dataplane::pipeline::{
    AddressClaims, ConnRecord, ConnView, ControlMsg, Event, FlowEvent, ServerIdent, StickyRecord,
};
use tack_dataplane::sticky::StickyBinding;

use crate::profile::{ClusterSection, EntrySection, pipeline_cluster};
use crate::say;
pub use link::{ClusterCounters, ClusterLink, Incoming, Outgoing};
pub use wire::NodeState;

/// The control thread's part: the link, the live set, and the routing of
/// flow records.
pub struct Cluster {
    link: ClusterLink,
    node: NodeId,
    ranking: u64,
    live: Vec<NodeId>,
    draining: Vec<NodeId>,
    notify: Option<std::path::PathBuf>,
    /// Nodes heard from again since the last [`Cluster::take_joined`].
    joined: Vec<NodeId>,
    /// Nodes heard from since this node started: those no longer live are
    /// dead (one never heard is not, yet).
    seen: HashSet<NodeId>,
    /// Every other node's full-NAT local addresses.
    peer_locals: Vec<(NodeId, Vec<IpAddr>)>,
    /// How clients reach the nodes.
    entry: EntrySection,
    /// This node is the active scheduler (`entry: scheduler`).
    scheduler: bool,
    /// The addresses the workers were last told to claim.
    claims: AddressClaims,
}

impl Cluster {
    /// Starts the link of the node `section` describes.
    pub fn start(section: &ClusterSection) -> Result<Cluster, String> {
        let (cfg, keys) = pipeline_cluster(section).map_err(|e| e.to_string())?;
        let link = ClusterLink::spawn(section, keys.messages.clone()).map_err(|e| e.to_string())?;
        Ok(Cluster {
            link,
            node: cfg.node,
            ranking: keys.ranking,
            live: vec![cfg.node],
            draining: Vec::new(),
            notify: section.notify.clone(),
            joined: Vec::new(),
            seen: HashSet::new(),
            peer_locals: section
                .nodes
                .iter()
                .filter(|n| n.id != section.node && !n.local_addresses.is_empty())
                .map(|n| (NodeId(n.id), n.local_addresses.clone()))
                .collect(),
            entry: section.entry,
            scheduler: false,
            claims: AddressClaims::at_start(Some(&cfg)),
        })
    }

    /// Whether this node is the active scheduler (`entry: scheduler`).
    pub fn is_scheduler(&self) -> Option<bool> {
        (self.entry == EntrySection::Scheduler).then_some(self.scheduler)
    }

    /// The addresses this node claims now ([`AddressClaims`]).
    pub fn claims(&self) -> &AddressClaims {
        &self.claims
    }

    /// Makes this node the active scheduler, or a standby one (the
    /// election's verdict): the message for the workers, if it changes
    /// what they answer for. `Err` without a scheduler entry.
    pub fn set_scheduler(&mut self, active: bool) -> Result<Option<ControlMsg>, &'static str> {
        if self.entry != EntrySection::Scheduler {
            return Err("this cluster's entry is not `scheduler`");
        }
        self.scheduler = active;
        Ok(self.update_claims())
    }

    /// Recomputes the claims from the entry, the scheduler role and the
    /// dead nodes; the message for the workers if they changed.
    fn update_claims(&mut self) -> Option<ControlMsg> {
        let serving: Vec<NodeId> = self.live.iter().chain(&self.draining).copied().collect();
        let mut taken_over = Vec::new();
        for (n, addrs) in &self.peer_locals {
            if serving.contains(n) || !self.seen.contains(n) {
                continue;
            }
            for &a in addrs {
                if claimant(self.ranking, a, &serving) == Some(self.node) {
                    taken_over.push(a);
                }
            }
        }
        let claims = AddressClaims {
            vips: self.entry == EntrySection::Ecmp || self.scheduler,
            taken_over,
        };
        if claims == self.claims {
            return None;
        }
        let list = |v: &[IpAddr]| {
            v.iter()
                .map(ToString::to_string)
                .collect::<Vec<_>>()
                .join(",")
        };
        say!(
            "tack: cluster: answering for the VIPs: {}; for dead nodes' local addresses: [{}]",
            if claims.vips { "yes" } else { "no" },
            list(&claims.taken_over)
        );
        self.claims = claims.clone();
        Some(ControlMsg::Claims(claims))
    }

    /// The link's counters.
    pub fn counters(&self) -> Arc<ClusterCounters> {
        self.link.counters()
    }

    /// The live nodes that take new flows.
    pub fn live(&self) -> &[NodeId] {
        &self.live
    }

    /// The live nodes that drain.
    pub fn draining(&self) -> &[NodeId] {
        &self.draining
    }

    /// Takes this node out of (`drain`) or back into the new flows'
    /// ranking, on every node: its heartbeats say so.
    pub fn set_draining(&mut self, drain: bool) {
        let s = if drain {
            NodeState::Draining
        } else {
            NodeState::Active
        };
        self.link.send(Outgoing::State(s));
        if let Some(program) = &self.notify {
            let arg = if drain { "draining" } else { "active" };
            run_notify(program.clone(), arg);
        }
    }

    /// Sends what a worker's event means for the other nodes.
    pub fn on_event(&mut self, ev: &Event) {
        let Event::Flow(f) = ev else { return };
        match f {
            // Full NAT: every node, any of which may take over the local
            // address.
            FlowEvent::Opened(c) | FlowEvent::Closed(c) if c.local.is_some() => {
                for &n in self.live.iter().chain(&self.draining) {
                    if n != self.node {
                        self.link.send(Outgoing::Record(n, *f));
                    }
                }
            }
            FlowEvent::Opened(c) | FlowEvent::Closed(c) => {
                let flow = FlowId {
                    client: c.client,
                    client_port: c.client_port,
                    vip: c.service.vip,
                    vip_port: c.vip_port,
                    protocol: c.service.protocol.ip_proto(),
                };
                for n in rank(self.ranking, &flow, &self.live).into_iter().flatten() {
                    if n != self.node {
                        self.link.send(Outgoing::Record(n, *f));
                    }
                }
            }
            FlowEvent::Sticky(_) => {
                for &n in &self.live {
                    if n != self.node {
                        self.link.send(Outgoing::Record(n, *f));
                    }
                }
            }
        }
    }

    /// The nodes that joined (or came back) since the last call: they are
    /// owed the state of the flows they now rank among the top two for,
    /// and every sticky binding ([`Cluster::hand_over`]).
    pub fn take_joined(&mut self) -> Vec<NodeId> {
        std::mem::take(&mut self.joined)
    }

    /// Sends nodes `to`, which just joined, the records they need: each
    /// connection of `conns` (this node's, every worker's, by identity in
    /// `services`) for which one of them is now among the flow's primary
    /// and backup (every full-NAT one), and every sticky binding. Returns
    /// how many records went.
    pub fn hand_over(
        &mut self,
        to: &[NodeId],
        conns: &[ConnView],
        bindings: &[StickyBinding],
        services: &Config,
    ) -> usize {
        let mut ranked: Vec<NodeId> = self.live.iter().chain(to).copied().collect();
        ranked.sort_unstable();
        ranked.dedup();
        let mut seen = std::collections::HashSet::new();
        let mut sent = 0;
        for v in conns {
            if !seen.insert((v.client, v.client_port, v.vip, v.vip_port, v.protocol)) {
                continue; // the same connection on another worker
            }
            let Some(rec) = record_of(services, v) else {
                continue;
            };
            let flow = FlowId {
                client: v.client,
                client_port: v.client_port,
                vip: v.vip,
                vip_port: v.vip_port,
                protocol: v.protocol,
            };
            let ranked_top = rank(self.ranking, &flow, &ranked);
            for &n in to {
                if rec.local.is_some() || ranked_top.contains(&Some(n)) {
                    self.link.send(Outgoing::Record(n, FlowEvent::Opened(rec)));
                    sent += 1;
                }
            }
        }
        let mut keys = std::collections::HashSet::new();
        for b in bindings {
            let Some(rec) = sticky_record_of(services, b) else {
                continue;
            };
            if !keys.insert((b.service, b.key)) {
                continue;
            }
            for &n in to {
                self.link.send(Outgoing::Record(n, FlowEvent::Sticky(rec)));
                sent += 1;
            }
        }
        sent
    }

    /// What the link brought: messages for the workers (the live set, and
    /// the other nodes' records resolved in `services`).
    pub fn poll(&mut self, services: &Config) -> Vec<ControlMsg> {
        let mut out = Vec::new();
        for inc in self.link.incoming() {
            match inc {
                Incoming::Live { active, draining } => {
                    let ids = |v: &[NodeId]| {
                        v.iter()
                            .map(|n| n.0.to_string())
                            .collect::<Vec<_>>()
                            .join(",")
                    };
                    say!(
                        "tack: cluster: active nodes [{}], draining [{}]",
                        ids(&active),
                        ids(&draining)
                    );
                    let before: Vec<NodeId> =
                        self.live.iter().chain(&self.draining).copied().collect();
                    self.joined.extend(
                        active
                            .iter()
                            .chain(&draining)
                            .filter(|n| **n != self.node && !before.contains(n)),
                    );
                    self.live = active.clone();
                    self.draining = draining.clone();
                    self.seen.extend(active.iter().chain(&draining));
                    out.push(ControlMsg::ClusterLive { active, draining });
                    out.extend(self.update_claims());
                }
                Incoming::Record(r) => match r.to_msg(services) {
                    Some(m) => out.push(m),
                    None => {
                        // A service or server this node does not have.
                        let c = self.link.counters();
                        c.records_unknown
                            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                    }
                },
            }
        }
        out
    }
}

/// Runs the `notify` program with `arg` on a thread of its own (it may
/// take its time: a BGP daemon's control socket), logging how it ended.
fn run_notify(program: std::path::PathBuf, arg: &'static str) {
    let spawned = std::thread::Builder::new()
        .name("tack-notify".into())
        .spawn(
            move || match std::process::Command::new(&program).arg(arg).status() {
                Ok(st) if st.success() => {
                    say!("tack: cluster: {} {arg}: done", program.display())
                }
                Ok(st) => say!("tack: cluster: {} {arg}: {st}", program.display()),
                Err(e) => say!("tack: cluster: {} {arg}: {e}", program.display()),
            },
        );
    if let Err(e) = spawned {
        log::error!("cluster: notify not run: {e}");
    }
}

/// The identity record of connection `v` in snapshot `services`.
fn record_of(services: &Config, v: &ConnView) -> Option<ConnRecord> {
    // A SYN-proxied connection waiting for its server's answer cannot be
    // carried on elsewhere yet (its record leaves with the answer).
    if v.syn_proxy && v.seq_shift.is_none() {
        return None;
    }
    let svc = services.service(v.service)?;
    let server = svc.servers.get(usize::from(v.server))?;
    Some(ConnRecord {
        service: svc.ident(),
        client: v.client,
        client_port: v.client_port,
        vip_port: v.vip_port,
        server: ServerIdent::of(server),
        local: v.local,
        seq_shift: v.seq_shift,
    })
}

/// The identity record of sticky binding `b` in snapshot `services`.
fn sticky_record_of(services: &Config, b: &StickyBinding) -> Option<StickyRecord> {
    let svc = services.service(b.service)?;
    let server = svc.servers.get(usize::from(b.server?))?;
    Some(StickyRecord {
        service: svc.ident(),
        key: b.key,
        server: ServerIdent::of(server),
    })
}
