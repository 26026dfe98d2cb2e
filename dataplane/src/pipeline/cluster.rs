//! The pipeline's part in a cluster (seed 002): a packet of a flow without
//! a connection here goes to the flow's primary node ([`crate::cluster`]),
//! encapsulated ([`crate::wire::gue`]); what another node sends is
//! decapsulated and handled as if it had arrived here. A primary that does
//! not know a flow's packet (it joined after the flow began, or lost it)
//! passes it on to the flow's backup once (GLB's second chance) instead of
//! dropping or resetting it; the backup holds the primary's connections,
//! synchronised by the control plane from the flow events
//! ([`super::record`]), and takes over when the primary leaves.
//!
//! Established flows never come here: a connection this node holds (as
//! primary, or as backup with the synchronised state) is forwarded on its
//! own, whichever node the network hands the packet to.

use super::verdict::Verdict;
use super::*;
use crate::cluster::{FlowId, NodeHop, NodeId, rank_hashed};
use crate::wire::gue::{self, GueRepr, Hop};
use crate::wire::{EtherType, TcpFlags};

/// This node's place in a cluster.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClusterConfig {
    /// This node.
    pub node: NodeId,
    /// Every node (this one included) and the address packets for it are
    /// sent to.
    pub nodes: Vec<(NodeId, IpAddr)>,
    /// The ranking key, the same on every node.
    pub key: u64,
    /// UDP port of the encapsulated packets between nodes.
    pub port: u16,
    /// UDP port of the control plane's messages between nodes
    /// (membership, flow state): control traffic for the host path.
    pub sync_port: u16,
    /// How clients' packets reach the nodes.
    pub entry: Entry,
}

/// How clients' packets reach the nodes of a cluster.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum Entry {
    /// A router spreads them over every node (ECMP): each node answers for
    /// the VIPs.
    #[default]
    Ecmp,
    /// They reach the active scheduler, the one node that answers for the
    /// VIPs (ARP, NDP) while the control plane says it is
    /// ([`AddressClaims::vips`]); the others stay silent for them.
    Scheduler,
}

/// The addresses a node answers for beyond its own configuration's, which
/// the cluster's membership decides ([`ControlMsg::Claims`]).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AddressClaims {
    /// It answers for the VIPs: always by ECMP entry, while it is the active
    /// scheduler otherwise.
    pub vips: bool,
    /// Full-NAT local addresses of dead nodes it answers for, so that the
    /// servers' replies to their connections (synchronised here) reach a
    /// node that holds them.
    pub taken_over: Vec<IpAddr>,
}

impl AddressClaims {
    /// What a node claims when it starts: the VIPs unless a scheduler
    /// elected among the nodes owns them.
    pub fn at_start(cluster: Option<&ClusterConfig>) -> AddressClaims {
        AddressClaims {
            vips: cluster.is_none_or(|c| c.entry == Entry::Ecmp),
            taken_over: Vec::new(),
        }
    }
}

impl ClusterConfig {
    /// The address of node `n`.
    pub fn addr_of(&self, n: NodeId) -> Option<IpAddr> {
        self.nodes.iter().find(|(id, _)| *id == n).map(|(_, a)| *a)
    }
}

/// The flow of a classified client packet.
fn flow_of(c: &Classified) -> FlowId {
    FlowId {
        client: c.src_addr,
        client_port: c.src_port,
        vip: c.dst_addr,
        vip_port: c.dst_port,
        protocol: c.protocol.0,
    }
}

impl<F: Frame> Pipeline<F> {
    /// Sets the membership: the nodes that take new flows (`active`), and
    /// those that drain (`draining`: they take none, and keep the flows
    /// they hold, whose packets still go to them).
    pub(super) fn set_cluster_live(&mut self, mut active: Vec<NodeId>, draining: Vec<NodeId>) {
        active.sort_unstable();
        active.dedup();
        let mut serving: Vec<NodeId> = active.iter().chain(&draining).copied().collect();
        serving.sort_unstable();
        serving.dedup();
        self.cluster_live = active;
        self.cluster_serving = serving;
    }

    /// For a packet to service `svc` without a connection here: the node it
    /// belongs to, if not this one. A packet that may open a flow (a SYN,
    /// any UDP) is opened by the flow's primary; another one goes to the
    /// primary, and from the primary (which does not know it either) to the
    /// backup, once.
    #[inline]
    pub(super) fn cluster_steer(&self, c: &Classified) -> Option<Verdict> {
        let cl = self.cfg.cluster.as_ref()?;
        let opens = c.protocol != IpProtocol::TCP
            || (c.tcp_flags.contains(TcpFlags::SYN) && !c.tcp_flags.contains(TcpFlags::ACK));
        // A new flow goes to the nodes that take new flows; a packet of a
        // flow already open is looked for among draining nodes too.
        let nodes = if opens {
            &self.cluster_live
        } else {
            &self.cluster_serving
        };
        let h = flow_of(c).hash(cl.key);
        let [primary, backup] = rank_hashed(h, nodes);
        let to = |node, hop| {
            Verdict::ToNode(NodeHop {
                node,
                hop,
                src_port: 0xc000 | (h as u16 & 0x3fff),
            })
        };
        let second_chance = || {
            backup
                .filter(|b| *b != cl.node && !opens)
                .map(|b| to(b, Hop::Backup))
        };
        match (self.arrival, primary) {
            (None, Some(p)) if p != cl.node => Some(to(p, Hop::Primary)),
            (None, _) | (Some(Hop::Primary), _) => second_chance(),
            (Some(Hop::Backup), _) => None,
        }
    }

    /// Whether `c` is a packet from another node (UDP to the cluster's port
    /// at one of the ports' addresses).
    #[inline]
    pub(super) fn is_from_node(&self, c: &Classified, info: Option<AddrInfo>) -> bool {
        self.cfg.cluster.as_ref().is_some_and(|cl| {
            c.protocol == IpProtocol::UDP
                && c.dst_port == cl.port
                && info.is_some_and(|i| i.port.is_some())
        })
    }

    /// Sends `frame` (classified as `c`) to another node, encapsulated.
    pub(super) fn send_to_node<A: FrameAlloc<Frame = F>>(
        &mut self,
        frame: F,
        c: &Classified,
        to: NodeHop,
        rx_port: u16,
        out: &mut Output<F>,
        alloc: &mut A,
    ) -> Fate {
        let Some(cl) = self.cfg.cluster.as_ref() else {
            return Fate::Dropped(DropReason::NoRoute);
        };
        let (Some(addr), port) = (cl.addr_of(to.node), cl.port) else {
            return Fate::Dropped(DropReason::NoRoute);
        };
        let Some((egress, nh)) = self.fib.lookup(addr) else {
            return Fate::Dropped(DropReason::NoRoute);
        };
        let g = GueRepr {
            src_port: to.src_port,
            dst_port: port,
            inner_v6: c.l3 == L3Kind::Ipv6,
            hop: to.hop,
        };
        let frame = match self.encapsulate(frame, c, addr, egress, rx_port, out, Some(g)) {
            Ok(f) => f,
            Err(fate) => return fate,
        };
        match to.hop {
            Hop::Primary => self.counters.cluster_to_primary += 1,
            Hop::Backup => self.counters.cluster_second_chance += 1,
        }
        self.send_to_next_hop(frame, egress, nh, out, alloc, false)
    }

    /// A packet from another node: decapsulated in place (the inner packet
    /// behind the frame's own Ethernet header) and kept for
    /// [`Pipeline::process_burst`] to handle as arrived from that node.
    pub(super) fn decapsulate_from_node(&mut self, mut frame: F, c: &Classified) -> Fate {
        if self.arrival.is_some() {
            // Encapsulated twice: never Tack's.
            return Fate::Dropped(DropReason::Wire(crate::wire::Error::BadGue));
        }
        let g = match frame.bytes().get(c.l4_offset..c.l3_end).map(GueRepr::parse) {
            Some(Ok(g)) => g,
            Some(Err(e)) => return Fate::Dropped(DropReason::Wire(e)),
            None => return Fate::Dropped(DropReason::Wire(crate::wire::Error::BadGue)),
        };
        let eth = c.l3_offset;
        let strip = c.l4_offset - c.l3_offset + gue::HEADER_LEN;
        if !frame.set_len(c.l3_end) {
            return Fate::Dropped(DropReason::NoRoom);
        }
        let b = frame.bytes_mut();
        b.copy_within(0..eth, strip);
        let ethertype = if g.inner_v6 {
            EtherType::IPV6
        } else {
            EtherType::IPV4
        };
        b[strip + eth - 2..strip + eth].copy_from_slice(&ethertype.0.to_be_bytes());
        if !frame.strip_front(strip) {
            return Fate::Dropped(DropReason::NoRoom);
        }
        self.counters.cluster_received += 1;
        self.reentry.push((frame, g.hop));
        Fate::Consumed
    }

    /// Handles the packets decapsulated during a burst, each as arrived
    /// from another node on `rx_port`: as bursts of their own, one per hop
    /// (almost always one: packets sent to their primary).
    pub(super) fn process_reentry<A: FrameAlloc<Frame = F>>(
        &mut self,
        rx_port: u16,
        out: &mut Output<F>,
        alloc: &mut A,
    ) {
        let mut all = core::mem::take(&mut self.reentry);
        // In arrival order within each hop: a flow's packets stay in order.
        let (primary, backup): (Vec<_>, Vec<_>) =
            all.drain(..).partition(|(_, h)| *h == Hop::Primary);
        for (hop, batch) in [(Hop::Primary, primary), (Hop::Backup, backup)] {
            if batch.is_empty() {
                continue;
            }
            let mut frames: Vec<F> = batch.into_iter().map(|(f, _)| f).collect();
            self.arrival = Some(hop);
            let now = self.now;
            self.process_burst(now, rx_port, &mut frames, out, alloc);
            self.arrival = None;
        }
        // Keep the allocation for the next burst.
        self.reentry = all;
    }
}
