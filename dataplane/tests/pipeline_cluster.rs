//! A cluster of pipelines, one per node, on one wire: new flows go to their
//! primary node, the primary's state to the backup, a node's death moves its
//! flows to their backups with the same server, and a joining node passes
//! what it does not know to the old primary (second chance).

mod pipeline_common;

use std::net::IpAddr;

use pipeline_common::*;
use tack_dataplane::cluster::{FlowId, NodeId, rank};
use tack_dataplane::model::{ForwardMode, Protocol, SchedulerKind};
use tack_dataplane::pipeline::{
    AddressClaims, ClusterConfig, ControlMsg, Entry, Event, FlowEvent, PipelineConfig,
    StaticNeighbor,
};
use tack_dataplane::wire::EthernetAddress;

const KEY: u64 = 0x5eed;
const PORT: u16 = 6080;
const NODES: u16 = 4;

fn node_addr(n: u16) -> IpAddr {
    a4(&format!("10.1.0.{}", 100 + n))
}

fn node_mac(n: u16) -> EthernetAddress {
    EthernetAddress([2, 0, 0, 0, 1, n as u8])
}

fn server_mac(i: usize) -> EthernetAddress {
    EthernetAddress([2, 0, 0, 0, 0, 3 + i as u8])
}

/// Node `n`'s configuration: a DSR service balanced round robin over two
/// servers (so that only the synchronised state tells another node which
/// server a flow has), its own address and MAC on port 1, and every node
/// and server as a static neighbour.
fn node_config(n: u16) -> PipelineConfig {
    let servers = [a4(SERVERS4[0]), a4(SERVERS4[1])];
    let mut s = service(
        a4(VIP4),
        Protocol::Tcp,
        Some(80),
        ForwardMode::Dsr,
        &servers,
    );
    s.scheduler = SchedulerKind::RoundRobin;
    let mut cfg = sized_config(vec![s]);
    cfg.ports[1].mac = node_mac(n);
    cfg.ports[1].addresses = vec![(node_addr(n), 24)];
    cfg.static_neighbors = (1..=NODES)
        .filter(|&m| m != n)
        .map(|m| StaticNeighbor {
            port: 1,
            addr: node_addr(m),
            mac: node_mac(m),
        })
        .chain((0..2).map(|i| StaticNeighbor {
            port: 1,
            addr: servers[i],
            mac: server_mac(i),
        }))
        .chain(std::iter::once(StaticNeighbor {
            port: 0,
            addr: a4(ROUTER4),
            mac: R_MAC,
        }))
        .collect();
    cfg.flow_events = true;
    cfg.cluster = Some(ClusterConfig {
        node: NodeId(n),
        nodes: (1..=NODES).map(|m| (NodeId(m), node_addr(m))).collect(),
        key: KEY,
        port: PORT,
        sync_port: PORT + 1,
        entry: Entry::Ecmp,
    });
    cfg
}

/// The nodes (index `n - 1` is node `n`), with `live` live.
struct Cluster {
    nodes: Vec<Harness>,
}

impl Cluster {
    fn new(live: &[u16]) -> Cluster {
        let mut c = Cluster {
            nodes: (1..=NODES).map(|n| Harness::new(node_config(n))).collect(),
        };
        c.set_live(live);
        c
    }

    fn set_live(&mut self, live: &[u16]) {
        let ids: Vec<NodeId> = live.iter().map(|&n| NodeId(n)).collect();
        for h in &mut self.nodes {
            h.p.apply(ControlMsg::ClusterLive {
                active: ids.clone(),
                draining: vec![],
            });
        }
    }

    fn node(&mut self, n: u16) -> &mut Harness {
        &mut self.nodes[usize::from(n - 1)]
    }

    /// A client frame received by node `n`, and every frame between nodes
    /// that follows: the server (by MAC) it reaches, and the nodes it
    /// crossed.
    fn deliver(&mut self, n: u16, frame: &[u8]) -> (Option<usize>, Vec<u16>) {
        let mut path = vec![n];
        let (mut at, mut port, mut f) = (n, 0u16, frame.to_vec());
        for _ in 0..4 {
            let (tx, _) = self.node(at).rx(port, &f);
            let Some(out) = tx[1].first().cloned() else {
                return (None, path);
            };
            let dst = EthernetAddress(out[..6].try_into().unwrap());
            if let Some(i) = (0..2).find(|&i| server_mac(i) == dst) {
                return (Some(i), path);
            }
            let next = (1..=NODES)
                .find(|&m| node_mac(m) == dst)
                .expect("to a server or a node");
            path.push(next);
            (at, port, f) = (next, 1, out);
        }
        panic!("a loop between nodes: {path:?}");
    }

    /// Carries node `from`'s flow events to node `to` only.
    fn sync(&mut self, from: u16, to: u16) -> usize {
        let events = self.node(from).events();
        let mut n = 0;
        for ev in events {
            if let Event::Flow(f @ FlowEvent::Opened(_)) = ev
                && let Some(m) = f.to_msg(self.node(to).p.services())
            {
                self.node(to).p.apply(m);
                n += 1;
            }
        }
        n
    }
}

fn flow(sport: u16) -> FlowId {
    FlowId {
        client: a4(CLIENT4),
        client_port: sport,
        vip: a4(VIP4),
        vip_port: 80,
        protocol: 6,
    }
}

fn ids(v: &[u16]) -> Vec<NodeId> {
    v.iter().map(|&n| NodeId(n)).collect()
}

fn syn(sport: u16) -> Vec<u8> {
    packet_from(R_MAC, L0_MAC, a4(CLIENT4), sport, a4(VIP4), 80, SYN, b"")
}

fn ack(sport: u16) -> Vec<u8> {
    packet_from(
        R_MAC,
        L0_MAC,
        a4(CLIENT4),
        sport,
        a4(VIP4),
        80,
        ACK,
        b"data",
    )
}

#[test]
fn flows_open_on_their_primary_and_survive_its_death_on_their_backup() {
    let live = [1, 2, 3];
    let mut c = Cluster::new(&live);
    let mut crossed = 0;
    for sport in 1000..1040u16 {
        let [p, b] = rank(KEY, &flow(sport), &ids(&live)).map(|n| n.unwrap().0);
        // The SYN reaches node 1; it opens on the primary.
        let (server, path) = c.deliver(1, &syn(sport));
        let server = server.expect("the SYN reaches a server");
        if p == 1 {
            assert_eq!(path, [1]);
        } else {
            assert_eq!(path, [1, p], "sent to the primary");
            crossed += 1;
        }
        // The primary's state goes to the backup.
        assert_eq!(c.sync(p, b), 1);
        // Data arriving at any node reaches the same server.
        for n in live {
            assert_eq!(c.deliver(n, &ack(sport)).0, Some(server), "via node {n}");
        }
        // The primary dies: its flows go on through their backups.
        let others: Vec<u16> = live.iter().copied().filter(|&n| n != p).collect();
        let mut after = Cluster { nodes: Vec::new() };
        std::mem::swap(&mut after.nodes, &mut c.nodes);
        after.set_live(&others);
        for &n in &others {
            let (s, path) = after.deliver(n, &ack(sport));
            assert_eq!(
                s,
                Some(server),
                "after node {p} died, via node {n}: {path:?}"
            );
            assert!(!path.contains(&p));
        }
        std::mem::swap(&mut after.nodes, &mut c.nodes);
        c.set_live(&live);
    }
    assert!(crossed > 15, "most flows cross to their primary: {crossed}");
    assert!(c.node(1).counters().cluster_to_primary > 0);
    for n in 1..=3 {
        c.node(n).check_accounting();
        assert_eq!(c.node(n).counters().drop_tcp_no_conn, 0);
    }
}

#[test]
fn a_joining_node_passes_what_it_does_not_know_to_the_old_primary() {
    let old = [1, 2, 3];
    let new = [1, 2, 3, 4];
    let mut c = Cluster::new(&old);
    // Flows opened before node 4 joins, for which node 4 ranks first after.
    let moved: Vec<u16> = (2000..2400u16)
        .filter(|&s| rank(KEY, &flow(s), &ids(&new))[0] == Some(NodeId(4)))
        .take(10)
        .collect();
    assert_eq!(moved.len(), 10);
    let mut servers = Vec::new();
    for &s in &moved {
        servers.push(c.deliver(1, &syn(s)).0.expect("opened"));
    }
    c.set_live(&new);
    for (&s, &server) in moved.iter().zip(&servers) {
        let old_primary = rank(KEY, &flow(s), &ids(&old))[0].unwrap().0;
        // From a node that is neither: to node 4, which does not know the
        // flow and passes it to the old primary (second chance).
        let entry = (1..=3u16).find(|&n| n != old_primary).unwrap();
        let (got, path) = c.deliver(entry, &ack(s));
        assert_eq!(got, Some(server), "{path:?}");
        assert_eq!(path, [entry, 4, old_primary]);
    }
    assert_eq!(
        c.node(4).counters().cluster_second_chance,
        moved.len() as u64
    );
    // A new flow that ranks node 4 first opens there.
    let s = (3000..3400u16)
        .find(|&s| rank(KEY, &flow(s), &ids(&new))[0] == Some(NodeId(4)))
        .unwrap();
    let (got, path) = c.deliver(1, &syn(s));
    assert!(got.is_some());
    assert_eq!(path, [1, 4]);
}

#[test]
fn bad_encapsulations_are_counted_not_forwarded() {
    let mut c = Cluster::new(&[1, 2, 3]);
    // A SYN node 1 sends to node 2 (whatever the rank says, we build it by hand
    // from one node 1 really sent).
    let sport = (1000..2000u16)
        .find(|&s| rank(KEY, &flow(s), &ids(&[1, 2, 3]))[0] == Some(NodeId(2)))
        .unwrap();
    let (tx, _) = c.node(1).rx(0, &syn(sport));
    let good = tx[1][0].clone();
    // GUE header bytes start after Ethernet (14) + IPv4 (20) + UDP (8).
    let mut version = good.clone();
    version[14 + 20 + 8] = 0x41; // version 1
    let mut truncated = good.clone();
    truncated.truncate(14 + 20 + 8 + 4);
    for f in [&version, &truncated] {
        let (tx, host) = c.node(2).rx(1, f);
        nothing(&tx);
        assert!(host.is_empty());
    }
    assert!(c.node(2).counters().get("drop_wire_bad_gue").unwrap_or(0) >= 1);
    c.node(2).check_accounting();
    // The good one opens on node 2.
    let (tx, _) = c.node(2).rx(1, &good);
    assert_eq!(tx[1].len(), 1);
    assert_eq!(c.node(2).counters().cluster_received, 1);
}

/// An ARP request from `sender` (at `mac`) for `target`.
fn arp_request(mac: EthernetAddress, sender: &str, target: IpAddr) -> Vec<u8> {
    use tack_dataplane::wire::{ArpOperation, ArpRepr};
    let IpAddr::V4(target) = target else {
        unreachable!()
    };
    let arp = ArpRepr {
        operation: ArpOperation::REQUEST,
        source_hardware_addr: mac,
        source_protocol_addr: sender.parse().unwrap(),
        target_hardware_addr: EthernetAddress([0; 6]),
        target_protocol_addr: target,
    };
    let mut f = vec![0u8; 14 + 28];
    f[..6].copy_from_slice(&[0xff; 6]);
    f[6..12].copy_from_slice(&mac.0);
    f[12..14].copy_from_slice(&[0x08, 0x06]);
    arp.emit(&mut f[14..]).unwrap();
    f
}

/// The target addresses of the gratuitous ARPs among `tx`.
fn gratuitous(tx: &[Vec<u8>]) -> Vec<IpAddr> {
    use tack_dataplane::wire::{ArpPacket, ArpRepr};
    tx.iter()
        .filter(|f| f[12..14] == [0x08, 0x06])
        .map(|f| ArpRepr::parse(&ArpPacket::new_checked(&f[14..]).unwrap()).unwrap())
        .filter(|a| a.source_protocol_addr == a.target_protocol_addr)
        .map(|a| IpAddr::V4(a.target_protocol_addr))
        .collect()
}

/// With an elected scheduler, a node answers for the VIPs only while it is
/// the scheduler; taking them over announces them (gratuitous ARP), giving
/// them up silences it.
#[test]
fn only_the_active_scheduler_answers_for_the_vips() {
    let mut cfg = node_config(1);
    cfg.announce = true;
    if let Some(c) = cfg.cluster.as_mut() {
        c.entry = Entry::Scheduler;
    }
    let mut h = Harness::new(cfg);
    let vip = a4(VIP4);
    let (tx, _) = h.poll_after(1);
    assert!(
        !gratuitous(&tx[0]).contains(&vip),
        "a standby announces no VIP"
    );
    let (tx, _) = h.rx(0, &arp_request(R_MAC, ROUTER4, vip));
    nothing(&tx);
    // It becomes the active scheduler.
    h.p.apply(ControlMsg::Claims(AddressClaims {
        vips: true,
        taken_over: vec![],
    }));
    let (tx, _) = h.poll_after(1);
    assert_eq!(gratuitous(&tx[0]), vec![vip], "the VIP is announced");
    let (tx, _) = h.rx(0, &arp_request(R_MAC, ROUTER4, vip));
    let reply = only(&tx, 0);
    assert_eq!(&reply[..6], &R_MAC.0, "answered");
    assert_eq!(&reply[6..12], &L0_MAC.0);
    // Another node is elected: this one is silent again.
    h.p.apply(ControlMsg::Claims(AddressClaims::default()));
    let (tx, _) = h.rx(0, &arp_request(R_MAC, ROUTER4, vip));
    nothing(&tx);
}

/// Full NAT in a cluster: a node that takes over a dead node's local
/// address announces it, answers ARP for it, and translates the servers'
/// replies to that node's connections (synchronised to it) back to their
/// clients.
#[test]
fn a_dead_nodes_local_address_is_taken_over_with_its_connections() {
    let local = |n: u16| a4(&format!("10.1.0.{}", 200 + n));
    let fnat = |n: u16| {
        let mut cfg = node_config(n);
        let mut s = service(
            a4(VIP4),
            Protocol::Tcp,
            Some(80),
            ForwardMode::FullNat,
            &[a4(SERVERS4[0]), a4(SERVERS4[1])],
        );
        if let Some(p) = s.local_pool.as_mut() {
            p.addrs = vec![local(n)];
            p.peer_addrs = (1..=NODES).filter(|&m| m != n).map(local).collect();
        }
        cfg.services = std::sync::Arc::new(tack_dataplane::model::Config::new(vec![s]).unwrap());
        cfg.announce = true;
        cfg.static_neighbors.push(StaticNeighbor {
            port: 0,
            addr: a4(CLIENT4),
            mac: C_MAC,
        });
        cfg
    };
    let mut c = Cluster {
        nodes: (1..=NODES).map(|n| Harness::new(fnat(n))).collect(),
    };
    c.set_live(&[1, 2]);
    // A flow node 1 is the primary of, opened there.
    let sport = (1000..2000u16)
        .find(|&p| rank(KEY, &flow(p), &ids(&[1, 2]))[0] == Some(NodeId(1)))
        .unwrap();
    let (tx, _) = c.node(1).rx(0, &syn(sport));
    let out = only(&tx, 1);
    let (src, lport, server, sport_at_server) = tuple(&out);
    assert_eq!(src, local(1), "node 1 opens it from its own local address");
    assert_eq!(sport_at_server, 80);
    assert_eq!(c.sync(1, 2), 1, "the connection reaches node 2");
    // Node 2 shows it with node 1's local address (what it hands over to
    // a node that restarts).
    let views: Vec<_> = c.node(2).p.connections().collect();
    assert_eq!(views.len(), 1);
    assert_eq!(views[0].local, Some((local(1), lport)));
    // Node 1 dies; until node 2 claims its address, node 2 does not
    // answer for it.
    c.set_live(&[2]);
    let reply = server_pkt(server, 80, local(1), lport, ACK);
    let (tx, _) = c
        .node(2)
        .rx(1, &arp_request(server_mac(0), SERVERS4[0], local(1)));
    nothing(&tx);
    c.node(2).poll_after(1);
    c.node(2).p.apply(ControlMsg::Claims(AddressClaims {
        vips: true,
        taken_over: vec![local(1)],
    }));
    let (tx, _) = c.node(2).poll_after(1);
    assert_eq!(
        gratuitous(&tx[1]),
        vec![local(1)],
        "announced on the servers' side"
    );
    let (tx, _) = c
        .node(2)
        .rx(1, &arp_request(server_mac(0), SERVERS4[0], local(1)));
    assert_eq!(
        &only(&tx, 1)[6..12],
        &node_mac(2).0,
        "answered with node 2's MAC"
    );
    // The server's reply goes back to the client, from the VIP.
    let (tx, _) = c.node(2).rx(1, &reply);
    let back = only(&tx, 0);
    assert_eq!(tuple(&back), (a4(VIP4), 80, a4(CLIENT4), sport));
    // The client's next packet reaches the same server from node 1's
    // local address and port.
    let (tx, _) = c.node(2).rx(0, &ack(sport));
    assert_eq!(tuple(&only(&tx, 1)), (local(1), lport, server, 80));
}
