//! The cluster's per-flow ranking of nodes (seed 002): for each flow, every
//! live node gets a score from a keyed rendezvous hash of the flow and the
//! node's id; the highest is the flow's **primary**, the second its
//! **backup**. Every node computes the same ranking from the same live set,
//! so any node the network hands a packet to knows where the flow lives;
//! a node leaving moves only its own flows (to their backups, which hold
//! their state), and a node joining takes over only the flows it now ranks
//! first for (their old primary ranks second: GLB's second chance).
//!
//! The flow is the client's side: (client address, client port, VIP, VIP
//! port, IP protocol). The key is shared by the nodes (the profile's
//! `cluster.key`), so clients cannot aim flows at a node.

use std::net::IpAddr;

use crate::hash;

/// A node's id in the cluster (the profile's `cluster.node`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct NodeId(pub u16);

impl std::fmt::Display for NodeId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "node{}", self.0)
    }
}

/// A flow as the cluster ranks it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FlowId {
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
}

impl FlowId {
    /// The flow's hash under the cluster's key (also the outer source port
    /// of its encapsulated packets, for the receivers' RSS).
    pub fn hash(&self, key: u64) -> u64 {
        let vip = hash::addr_hash(key ^ u64::from(self.protocol), self.vip);
        hash::flow_hash(vip, self.client, self.client_port, self.vip_port)
    }
}

/// Where a packet goes when it goes to another node (the pipeline's `Verdict::ToNode`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct NodeHop {
    /// The node.
    pub(crate) node: NodeId,
    /// Which of the flow's nodes it is.
    pub(crate) hop: crate::wire::gue::Hop,
    /// The encapsulation's UDP source port: the flow's hash in the
    /// ephemeral range (the receiver's RSS spreads flows and keeps each on
    /// one queue).
    pub(crate) src_port: u16,
}

/// A flow's primary and backup among `live` (ids of the live nodes):
/// the two highest rendezvous scores. `None` where fewer nodes live.
pub fn rank(key: u64, flow: &FlowId, live: &[NodeId]) -> [Option<NodeId>; 2] {
    rank_hashed(flow.hash(key), live)
}

/// [`rank`] of a flow whose hash ([`FlowId::hash`]) is `h`.
pub fn rank_hashed(h: u64, live: &[NodeId]) -> [Option<NodeId>; 2] {
    let mut best: [Option<(u64, NodeId)>; 2] = [None, None];
    for &n in live {
        let score = hash::combine(h, node_ident(n));
        let cand = Some((score, n));
        // Ties (never in practice) go to the lower id, on every node alike.
        let better = |a: Option<(u64, NodeId)>| match a {
            None => true,
            Some((s, id)) => score > s || (score == s && n < id),
        };
        if better(best[0]) {
            best[1] = best[0];
            best[0] = cand;
        } else if better(best[1]) {
            best[1] = cand;
        }
    }
    [best[0].map(|b| b.1), best[1].map(|b| b.1)]
}

/// The node of `nodes` that answers for address `addr` (a full-NAT local
/// address of a node that died): the highest rendezvous score of the
/// address and the node, the same on every node from the same set.
pub fn claimant(key: u64, addr: IpAddr, nodes: &[NodeId]) -> Option<NodeId> {
    rank_hashed(hash::addr_hash(key ^ 0x63_6c61_696d, addr), nodes)[0] // "claim"
}

/// A node's identity hash.
fn node_ident(n: NodeId) -> u64 {
    hash::bytes_hash(0x7461_636b_6e6f_6465, &n.0.to_le_bytes()) // "tacknode"
}

#[cfg(test)]
mod tests {
    use super::*;

    fn flow(i: u32) -> FlowId {
        FlowId {
            client: IpAddr::V4((0x0b00_0000 + i).into()),
            client_port: (1024 + i % 60000) as u16,
            vip: "10.100.0.12".parse().unwrap(),
            vip_port: 80,
            protocol: 6,
        }
    }

    fn ids(v: &[u16]) -> Vec<NodeId> {
        v.iter().map(|&i| NodeId(i)).collect()
    }

    #[test]
    fn every_node_ranks_alike_and_the_load_spreads() {
        let live = ids(&[1, 2, 3]);
        let mut reversed = live.clone();
        reversed.reverse();
        let mut primaries = [0u32; 4];
        for i in 0..30_000 {
            let r = rank(7, &flow(i), &live);
            assert_eq!(r, rank(7, &flow(i), &reversed));
            let (p, b) = (r[0].unwrap(), r[1].unwrap());
            assert_ne!(p, b);
            primaries[usize::from(p.0)] += 1;
        }
        for n in 1..=3 {
            assert!((9_000..11_000).contains(&primaries[n]), "{primaries:?}");
        }
    }

    #[test]
    fn a_leaving_node_moves_its_flows_to_their_backups_only() {
        let all = ids(&[1, 2, 3, 4]);
        let without_2 = ids(&[1, 3, 4]);
        for i in 0..10_000 {
            let before = rank(9, &flow(i), &all);
            let after = rank(9, &flow(i), &without_2);
            if before[0] == Some(NodeId(2)) {
                assert_eq!(after[0], before[1], "the backup takes over");
            } else {
                assert_eq!(after[0], before[0], "other flows stay");
            }
        }
    }

    #[test]
    fn a_joining_node_takes_flows_whose_old_primary_becomes_backup() {
        let old = ids(&[1, 2, 3]);
        let new = ids(&[1, 2, 3, 4]);
        let mut moved = 0;
        for i in 0..10_000 {
            let before = rank(3, &flow(i), &old);
            let after = rank(3, &flow(i), &new);
            if after[0] == Some(NodeId(4)) {
                moved += 1;
                assert_eq!(after[1], before[0], "second chance finds the old primary");
            } else {
                assert_eq!(after[0], before[0]);
            }
        }
        assert!((2_000..3_000).contains(&moved), "{moved}");
    }

    #[test]
    fn the_key_changes_the_ranking() {
        let live = ids(&[1, 2, 3]);
        let differ = (0..1000)
            .filter(|&i| rank(1, &flow(i), &live) != rank(2, &flow(i), &live))
            .count();
        assert!(differ > 500);
        assert_eq!(rank(1, &flow(0), &[]), [None, None]);
        assert_eq!(rank(1, &flow(0), &ids(&[5])), [Some(NodeId(5)), None]);
    }
}
