//! The link thread: heartbeats, membership, and the datagrams of flow
//! state between nodes (see [`super`]).

use std::collections::BTreeMap;
use std::net::{SocketAddr, UdpSocket};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crossbeam::channel::{self, Receiver, Sender};
use tack_dataplane::cluster::NodeId;
use tack_dataplane::pipeline::FlowEvent;

use super::wire::{self, Body, MAX_DATAGRAM, MAX_RECORD, Message, NodeState};
use crate::profile::ClusterSection;

/// What the control thread asks the link to send.
#[derive(Debug, Clone, Copy)]
pub enum Outgoing {
    /// A record for a node.
    Record(NodeId, FlowEvent),
    /// This node's state in its heartbeats from now on.
    State(NodeState),
}

/// What the link tells the control thread.
#[derive(Debug, Clone)]
pub enum Incoming {
    /// The membership changed: the live nodes that take new flows, and
    /// the live nodes that drain (each sorted).
    Live {
        /// Take new flows.
        active: Vec<NodeId>,
        /// Drain.
        draining: Vec<NodeId>,
    },
    /// A record from another node.
    Record(FlowEvent),
}

/// The link's counters.
#[derive(Debug, Default)]
pub struct ClusterCounters {
    /// Heartbeats sent.
    pub heartbeats_sent: AtomicU64,
    /// Heartbeats received.
    pub heartbeats_received: AtomicU64,
    /// Records sent.
    pub records_sent: AtomicU64,
    /// Records received.
    pub records_received: AtomicU64,
    /// Records naming a service or server this node does not have.
    pub records_unknown: AtomicU64,
    /// Datagrams (of records) sent.
    pub datagrams_sent: AtomicU64,
    /// Bytes of records' datagrams sent.
    pub record_bytes_sent: AtomicU64,
    /// Datagrams refused: not authenticated (another key, or altered).
    pub bad_mac: AtomicU64,
    /// Datagrams refused: malformed, not ours, or from an unknown node.
    pub malformed: AtomicU64,
    /// Records dropped: the link could not send them.
    pub send_errors: AtomicU64,
    /// Changes of the live set.
    pub membership_changes: AtomicU64,
}

impl ClusterCounters {
    /// `name value` pairs, for `tackctl cluster` and the metrics.
    pub fn pairs(&self) -> Vec<(&'static str, u64)> {
        let r = |c: &AtomicU64| c.load(Ordering::Relaxed);
        vec![
            ("heartbeats_sent", r(&self.heartbeats_sent)),
            ("heartbeats_received", r(&self.heartbeats_received)),
            ("records_sent", r(&self.records_sent)),
            ("records_received", r(&self.records_received)),
            ("records_unknown", r(&self.records_unknown)),
            ("datagrams_sent", r(&self.datagrams_sent)),
            ("record_bytes_sent", r(&self.record_bytes_sent)),
            ("bad_mac", r(&self.bad_mac)),
            ("malformed", r(&self.malformed)),
            ("send_errors", r(&self.send_errors)),
            ("membership_changes", r(&self.membership_changes)),
        ]
    }
}

/// The running link.
pub struct ClusterLink {
    out: Sender<Outgoing>,
    inbox: Receiver<Incoming>,
    counters: Arc<ClusterCounters>,
    stop: Arc<AtomicBool>,
    handle: Option<JoinHandle<()>>,
}

/// A peer as the link sees it.
struct Peer {
    addr: SocketAddr,
    last_heard: Option<Instant>,
    state: NodeState,
}

impl ClusterLink {
    /// Binds the node's sync port and starts the thread.
    pub fn spawn(c: &ClusterSection, key: Vec<u8>) -> std::io::Result<ClusterLink> {
        let own = c.own_address().expect("validated");
        let bind = SocketAddr::new(own, c.sync_port);
        // The address is on the exception path's interface, just made.
        let deadline = Instant::now() + Duration::from_secs(5);
        let socket = loop {
            match UdpSocket::bind(bind) {
                Ok(s) => break s,
                Err(e) if Instant::now() < deadline => {
                    log::debug!("cluster: bind {bind}: {e}; retrying");
                    std::thread::sleep(Duration::from_millis(50));
                }
                Err(e) => return Err(e),
            }
        };
        let interval = Duration::from_millis(u64::from(c.heartbeat_ms));
        socket.set_read_timeout(Some((interval / 4).max(Duration::from_millis(1))))?;
        let peers: BTreeMap<u16, Peer> = c
            .nodes
            .iter()
            .filter(|n| n.id != c.node)
            .map(|n| {
                (
                    n.id,
                    Peer {
                        addr: SocketAddr::new(n.address, c.sync_port),
                        last_heard: None,
                        state: NodeState::Active,
                    },
                )
            })
            .collect();
        let peers_exist = !peers.is_empty();
        let (out_tx, out_rx) = channel::unbounded();
        let (in_tx, in_rx) = channel::unbounded();
        let counters = Arc::new(ClusterCounters::default());
        let stop = Arc::new(AtomicBool::new(false));
        let run = Run {
            socket,
            key,
            node: c.node,
            peers,
            interval,
            dead_after: interval * c.misses,
            out: out_rx,
            inbox: in_tx,
            counters: counters.clone(),
            stop: stop.clone(),
            // A node with peers starts by draining: it is told the flows it
            // will rank for before it takes new ones (two dead-times).
            state: if peers_exist {
                NodeState::Draining
            } else {
                NodeState::Active
            },
            joining_until: peers_exist.then(|| Instant::now() + interval * c.misses * 2),
            seq: 0,
        };
        let handle = std::thread::Builder::new()
            .name("tack-cluster".into())
            .spawn(move || run.run())?;
        Ok(ClusterLink {
            out: out_tx,
            inbox: in_rx,
            counters,
            stop,
            handle: Some(handle),
        })
    }

    /// Queues `o` for the link.
    pub fn send(&self, o: Outgoing) {
        let _ = self.out.send(o);
    }

    /// What arrived since the last call.
    pub fn incoming(&self) -> Vec<Incoming> {
        self.inbox.try_iter().collect()
    }

    /// The counters.
    pub fn counters(&self) -> Arc<ClusterCounters> {
        self.counters.clone()
    }
}

impl Drop for ClusterLink {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(h) = self.handle.take() {
            let _ = h.join();
        }
    }
}

/// The thread's state.
struct Run {
    socket: UdpSocket,
    key: Vec<u8>,
    node: u16,
    peers: BTreeMap<u16, Peer>,
    interval: Duration,
    dead_after: Duration,
    out: Receiver<Outgoing>,
    inbox: Sender<Incoming>,
    counters: Arc<ClusterCounters>,
    stop: Arc<AtomicBool>,
    state: NodeState,
    /// Until when a node that just started holds back (drains) while the
    /// others hand it the state it needs; `None` once active or told.
    joining_until: Option<Instant>,
    seq: u32,
}

impl Run {
    fn run(mut self) {
        let mut next_beat = Instant::now();
        let mut live = self.live_set();
        let _ = self.inbox.send(Incoming::Live {
            active: live.0.clone(),
            draining: live.1.clone(),
        });
        let mut buf = vec![0u8; 65536];
        let mut pending: BTreeMap<u16, Vec<FlowEvent>> = BTreeMap::new();
        while !self.stop.load(Ordering::Relaxed) {
            let now = Instant::now();
            if now >= next_beat {
                self.heartbeat();
                next_beat = now + self.interval;
            }
            for o in self.out.try_iter() {
                match o {
                    Outgoing::Record(n, r) => pending.entry(n.0).or_default().push(r),
                    Outgoing::State(s) => {
                        // The operator's word ends a join's hold.
                        self.state = s;
                        self.joining_until = None;
                    }
                }
            }
            if self.joining_until.is_some_and(|t| now >= t) {
                self.joining_until = None;
                self.state = NodeState::Active;
            }
            for (n, records) in std::mem::take(&mut pending) {
                self.send_records(n, records);
            }
            match self.socket.recv_from(&mut buf) {
                Ok((len, from)) => self.receive(&buf[..len], from),
                Err(e)
                    if matches!(
                        e.kind(),
                        std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                    ) => {}
                Err(e) => log::debug!("cluster: receive: {e}"),
            }
            let now_live = self.live_set();
            if now_live != live {
                live = now_live;
                self.counters
                    .membership_changes
                    .fetch_add(1, Ordering::Relaxed);
                let _ = self.inbox.send(Incoming::Live {
                    active: live.0.clone(),
                    draining: live.1.clone(),
                });
            }
        }
    }

    fn next_seq(&mut self) -> u32 {
        self.seq = self.seq.wrapping_add(1);
        self.seq
    }

    fn heartbeat(&mut self) {
        let m = Message {
            node: self.node,
            seq: self.next_seq(),
            body: Body::Heartbeat(self.state),
        };
        let d = wire::encode(&m, &self.key);
        for p in self.peers.values() {
            if self.socket.send_to(&d, p.addr).is_ok() {
                self.counters
                    .heartbeats_sent
                    .fetch_add(1, Ordering::Relaxed);
            }
        }
    }

    /// Sends `records` to node `n`, as few datagrams as fit.
    fn send_records(&mut self, n: u16, records: Vec<FlowEvent>) {
        let Some(addr) = self.peers.get(&n).map(|p| p.addr) else {
            return;
        };
        let per = ((MAX_DATAGRAM - 64) / MAX_RECORD).max(1);
        for chunk in records.chunks(per) {
            let m = Message {
                node: self.node,
                seq: self.next_seq(),
                body: Body::Records(chunk.to_vec()),
            };
            let d = wire::encode(&m, &self.key);
            match self.socket.send_to(&d, addr) {
                Ok(_) => {
                    let c = &self.counters;
                    c.datagrams_sent.fetch_add(1, Ordering::Relaxed);
                    c.records_sent
                        .fetch_add(chunk.len() as u64, Ordering::Relaxed);
                    c.record_bytes_sent
                        .fetch_add(d.len() as u64, Ordering::Relaxed);
                }
                Err(e) => {
                    log::debug!("cluster: send to node {n}: {e}");
                    self.counters
                        .send_errors
                        .fetch_add(chunk.len() as u64, Ordering::Relaxed);
                }
            }
        }
    }

    fn receive(&mut self, d: &[u8], from: SocketAddr) {
        let m = match wire::decode(d, &self.key) {
            Ok(m) => m,
            Err(wire::WireError::BadMac) => {
                self.counters.bad_mac.fetch_add(1, Ordering::Relaxed);
                return;
            }
            Err(_) => {
                self.counters.malformed.fetch_add(1, Ordering::Relaxed);
                return;
            }
        };
        // From a node of the cluster, at its address.
        let Some(peer) = self
            .peers
            .get_mut(&m.node)
            .filter(|p| p.addr.ip() == from.ip())
        else {
            self.counters.malformed.fetch_add(1, Ordering::Relaxed);
            return;
        };
        peer.last_heard = Some(Instant::now());
        match m.body {
            Body::Heartbeat(s) => {
                peer.state = s;
                self.counters
                    .heartbeats_received
                    .fetch_add(1, Ordering::Relaxed);
            }
            Body::Records(rs) => {
                self.counters
                    .records_received
                    .fetch_add(rs.len() as u64, Ordering::Relaxed);
                for r in rs {
                    let _ = self.inbox.send(Incoming::Record(r));
                }
            }
        }
    }

    /// This node and the peers heard from recently enough: those that
    /// take new flows, and those that drain.
    fn live_set(&self) -> (Vec<NodeId>, Vec<NodeId>) {
        let now = Instant::now();
        let (mut active, mut draining) = (Vec::new(), Vec::new());
        let heard = self.peers.iter().filter(|(_, p)| {
            p.last_heard
                .is_some_and(|t| now.duration_since(t) <= self.dead_after)
        });
        let me = std::iter::once((self.node, self.state));
        for (id, state) in heard.map(|(&id, p)| (id, p.state)).chain(me) {
            match state {
                NodeState::Active => active.push(NodeId(id)),
                NodeState::Draining => draining.push(NodeId(id)),
            }
        }
        active.sort_unstable();
        draining.sort_unstable();
        (active, draining)
    }
}
