//! Several pipelines joined by the control plane ([`pipeline_common::mesh`]):
//! workers agree on sticky choices without talking, and flow events made on
//! one pipeline, carried by identity, let another forward the flow both ways.

mod pipeline_common;

use std::net::IpAddr;

use pipeline_common::mesh::Mesh;
use pipeline_common::*;
use tack_dataplane::pipeline::{ControlMsg, Event, FlowEvent, PipelineConfig};
use tack_dataplane::wire::EthernetAddress;

/// Every pipeline of the mesh knows the router and the servers.
fn learn(m: &mut Mesh) {
    for h in &mut m.nodes {
        h.learn_neighbors();
        for (i, s) in SERVERS4.iter().enumerate() {
            h.p.apply(ControlMsg::Neighbor {
                port: 1,
                addr: a4(s),
                mac: EthernetAddress([2, 0, 0, 0, 0, 3 + i as u8]),
            });
        }
    }
}

/// A SYN from `src`:`sport` (behind the router) to pipeline `node`: the
/// server it was sent to.
fn open_at(m: &mut Mesh, node: usize, src: &str, sport: u16) -> IpAddr {
    let f = packet_from(R_MAC, L0_MAC, a4(src), sport, a4(VIP4), 80, SYN, b"");
    let (tx, _) = m.rx(node, 0, &f);
    forwarded_to(&tx)
}

#[test]
fn two_workers_agree_on_sticky_choices_before_and_after_sync() {
    let mut m = Mesh::workers(sized_config(vec![sticky_service([1, 2, 3, 4])]), 2);
    learn(&mut m);
    // Two clients of one class B network, one on each worker, at the same
    // time (no event has crossed yet): one server.
    let mut servers = std::collections::HashSet::new();
    for net in 0..64u16 {
        let (a, b) = (
            format!("172.{}.1.1", 16 + net / 4),
            format!("172.{}.2.2", 16 + net / 4),
        );
        let a = a.replace("172.", &format!("{}.", 128 + net % 4 * 16));
        let b = b.replace("172.", &format!("{}.", 128 + net % 4 * 16));
        let s0 = open_at(&mut m, 0, &a, 1000 + net);
        let s1 = open_at(&mut m, 1, &b, 2000 + net);
        assert_eq!(s0, s1, "{a} on worker 0 and {b} on worker 1");
        servers.insert(s0);
    }
    assert!(servers.len() > 1, "the keys spread over the servers");
    // Each worker's bindings reach the other, by identity; the choices stay.
    assert!(m.sync() > 0);
    for h in &m.nodes {
        assert_eq!(h.counters().control_rejected, 0);
    }
    let s0 = open_at(&mut m, 0, "128.16.9.9", 3000);
    let s1 = open_at(&mut m, 1, "128.16.7.7", 3001);
    assert_eq!(s0, s1);
}

#[test]
fn a_binding_crosses_snapshots_by_identity() {
    // Node 1 lists the servers in the other order, and its copy of the
    // server node 0 chooses takes no new clients (weight 0): only the
    // binding, resolved by identity, sends the key there.
    let a = sticky_service([1, 1, 1, 1]);
    let mut m0 = Mesh::nodes(vec![sized_config(vec![a.clone()])]);
    learn(&mut m0);
    let chosen = open_at(&mut m0, 0, "172.20.1.1", 1000);
    let mut b = a.clone();
    b.servers.reverse();
    for s in &mut b.servers {
        if s.addr == chosen {
            s.weight = 0;
        }
    }
    let mut m = Mesh::nodes(vec![sized_config(vec![a]), sized_config(vec![b])]);
    learn(&mut m);
    // Without the binding, node 1 sends the key elsewhere.
    assert_ne!(open_at(&mut m, 1, "172.21.1.1", 1000), chosen);
    m.nodes[1].events();
    assert_eq!(open_at(&mut m, 0, "172.20.1.1", 1000), chosen);
    assert_eq!(m.sync(), 1);
    assert_eq!(m.nodes[1].counters().control_rejected, 0);
    assert_eq!(open_at(&mut m, 1, "172.20.200.9", 1001), chosen);
}

fn flow_config() -> PipelineConfig {
    let mut cfg = sized_config(forwarding_services());
    cfg.flow_events = true;
    cfg
}

/// A client's connection opened on node 0 is installed on node 1 from node
/// 0's event; node 1 then forwards the client's next packet to the same
/// server with the same translation, and the server's reply back to the
/// client; the close on node 0 removes it from node 1.
fn flow_crosses_nodes(vport: u16) {
    let mut m = Mesh::nodes(vec![flow_config(), flow_config()]);
    learn(&mut m);
    let client = a4(CLIENT4);
    let syn = client_pkt(client, 40000, a4(VIP4), vport, SYN);
    let (tx, _) = m.rx(0, 0, &syn);
    let to_server = tuple(&only(&tx, 1));
    let events = m.nodes[0].events();
    let opened: Vec<FlowEvent> = events
        .iter()
        .filter_map(|e| match e {
            Event::Flow(f) => Some(*f),
            _ => None,
        })
        .collect();
    assert!(
        matches!(opened[..], [FlowEvent::Opened(r)] if r.client == client && r.vip_port == vport)
    );
    // The events were taken: hand them over as the sync would.
    for f in &opened {
        let msg = f
            .to_msg(m.nodes[1].p.services())
            .expect("node 1 has the service");
        m.nodes[1].p.apply(msg);
    }
    assert_eq!(m.nodes[1].counters().control_rejected, 0);
    assert_eq!(m.nodes[1].p.connection_count(), 1);
    // The client's next packet reaches node 1: the same server, the same
    // translation.
    let ack = client_pkt(client, 40000, a4(VIP4), vport, ACK);
    let (tx, _) = m.rx(1, 0, &ack);
    assert_eq!(tuple(&only(&tx, 1)), to_server);
    // The server's reply reaches node 1: back to the client from the VIP.
    let (s, sport, d, dport) = to_server;
    let reply = server_pkt(d, dport, s, sport, ACK);
    let (tx, _) = m.rx(1, 1, &reply);
    assert_eq!(tuple(&only(&tx, 0)), (a4(VIP4), vport, client, 40000));
    // The connection ends on node 0 (reset, then its timeout): node 1
    // removes its copy.
    let rst = client_pkt(client, 40000, a4(VIP4), vport, RST);
    m.rx(0, 0, &rst);
    m.advance(20_000);
    assert!(m.sync() >= 1);
    assert_eq!(m.nodes[0].p.connection_count(), 0);
    assert_eq!(m.nodes[1].p.connection_count(), 0);
}

#[test]
fn nat_flow_events_forward_the_flow_both_ways_on_another_node() {
    flow_crosses_nodes(80);
}

#[test]
fn full_nat_flow_events_forward_the_flow_both_ways_on_another_node() {
    flow_crosses_nodes(443);
}

#[test]
fn flow_events_are_off_by_default() {
    let mut m = Mesh::nodes(vec![sized_config(forwarding_services())]);
    learn(&mut m);
    let syn = client_pkt(a4(CLIENT4), 40000, a4(VIP4), 80, SYN);
    m.rx(0, 0, &syn);
    assert!(
        !m.nodes[0]
            .events()
            .iter()
            .any(|e| matches!(e, Event::Flow(_)))
    );
}
