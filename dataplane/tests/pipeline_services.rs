//! Services over time: server states and weights, reloads, table limits,
//! timeouts, mid-stream pickup.

mod pipeline_common;

use std::net::IpAddr;
use std::sync::Arc;

use pipeline_common::*;
use tack_dataplane::Time;
use tack_dataplane::conn::{ConnState, ConnTableConfig, FullPolicy};
use tack_dataplane::ids::{ServerIdx, ServiceIdx};
use tack_dataplane::model::{Config, ForwardMode, Protocol, SchedulerKind, ServerState, Service};
use tack_dataplane::pipeline::ControlMsg;

fn two_servers(mode: ForwardMode, sched: SchedulerKind) -> Vec<Service> {
    let mut s = service(
        a4(VIP4),
        Protocol::Tcp,
        Some(80),
        mode,
        &[a4(SERVER4), a4(SERVER4B)],
    );
    s.scheduler = sched;
    let mut u = service(
        a4(VIP4),
        Protocol::Udp,
        Some(53),
        mode,
        &[a4(SERVER4), a4(SERVER4B)],
    );
    u.scheduler = sched;
    vec![s, u]
}

fn harness(services: Vec<Service>) -> Harness {
    let mut h = Harness::new(config(services));
    h.learn_neighbors();
    h
}

fn client(i: u16) -> IpAddr {
    a4(&format!("198.51.100.{}", 10 + (i % 200)))
}

/// Opens a connection from client `i` and returns the server it went to.
fn open(h: &mut Harness, i: u16) -> IpAddr {
    let (tx, _) = h.rx(0, &client_pkt(client(i), 30000 + i, a4(VIP4), 80, SYN));
    forwarded_to(&tx)
}

fn data(h: &mut Harness, i: u16) -> Vec<Vec<Vec<u8>>> {
    h.rx(0, &client_pkt(client(i), 30000 + i, a4(VIP4), 80, ACK))
        .0
}

#[test]
fn round_robin_spreads_and_flows_stay() {
    let mut h = harness(two_servers(ForwardMode::Nat, SchedulerKind::RoundRobin));
    let servers: Vec<IpAddr> = (0..4).map(|i| open(&mut h, i)).collect();
    assert_eq!(
        servers,
        vec![a4(SERVER4), a4(SERVER4B), a4(SERVER4), a4(SERVER4B)]
    );
    for _ in 0..3 {
        for i in 0..4 {
            assert_eq!(forwarded_to(&data(&mut h, i)), servers[usize::from(i)]);
        }
    }
}

#[test]
fn down_server_takes_nothing() {
    let mut h = harness(two_servers(ForwardMode::Nat, SchedulerKind::RoundRobin));
    assert_eq!(open(&mut h, 0), a4(SERVER4));
    assert_eq!(open(&mut h, 1), a4(SERVER4B));
    h.p.apply(ControlMsg::ServerState {
        service: ServiceIdx(0),
        server: ServerIdx(0),
        state: ServerState::Down,
    });
    // Established traffic to the down server: the connection is closed, and
    // a mid-stream segment of a round-robin service cannot open another.
    nothing(&data(&mut h, 0));
    assert_eq!(h.counters().drop_tcp_no_conn, 1);
    assert_eq!(h.counters().conn_closed, 1);
    // Its replies are dropped too.
    let (tx, _) = h.rx(1, &server_pkt(a4(SERVER4), 80, client(0), 30000, ACK));
    nothing(&tx);
    assert_eq!(h.counters().drop_not_for_us, 1);
    // The other flow is untouched; new clients go to the live server.
    assert_eq!(forwarded_to(&data(&mut h, 1)), a4(SERVER4B));
    for i in 2..6 {
        assert_eq!(open(&mut h, i), a4(SERVER4B));
    }
    // Back up: it takes new clients again.
    h.p.apply(ControlMsg::ServerState {
        service: ServiceIdx(0),
        server: ServerIdx(0),
        state: ServerState::Up,
    });
    let got: Vec<IpAddr> = (6..10).map(|i| open(&mut h, i)).collect();
    assert!(got.contains(&a4(SERVER4)));
}

#[test]
fn drain_keeps_established_takes_no_new() {
    let mut h = harness(two_servers(ForwardMode::Nat, SchedulerKind::RoundRobin));
    assert_eq!(open(&mut h, 0), a4(SERVER4));
    h.p.apply(ControlMsg::ServerState {
        service: ServiceIdx(0),
        server: ServerIdx(0),
        state: ServerState::Drain,
    });
    assert_eq!(forwarded_to(&data(&mut h, 0)), a4(SERVER4));
    for i in 1..5 {
        assert_eq!(open(&mut h, i), a4(SERVER4B));
    }
    // Weight 0 on the other server too: nobody takes new clients.
    h.p.apply(ControlMsg::ServerWeight {
        service: ServiceIdx(0),
        server: ServerIdx(1),
        weight: 0,
    });
    let (tx, _) = h.rx(0, &client_pkt(client(9), 30009, a4(VIP4), 80, SYN));
    nothing(&tx);
    assert_eq!(h.counters().drop_no_server, 1);
    assert_eq!(forwarded_to(&data(&mut h, 0)), a4(SERVER4));
}

#[test]
fn reload_adding_a_server_keeps_connections() {
    let mut s = two_servers(ForwardMode::Nat, SchedulerKind::RoundRobin);
    s[0].servers.truncate(1);
    let mut h = harness(s.clone());
    for i in 0..4 {
        assert_eq!(open(&mut h, i), a4(SERVER4));
    }
    // New config: a server added in front (indices move), a service added.
    let mut s2 = s.clone();
    let extra = service(
        a4(VIP4),
        Protocol::Tcp,
        Some(81),
        ForwardMode::Nat,
        &[a4(SERVER4)],
    );
    s2.insert(0, extra);
    s2[1]
        .servers
        .insert(0, tack_dataplane::model::RealServer::new(a4(SERVER4B)));
    let mut cfg = (*h.p.config()).as_ref().clone();
    cfg.services = Arc::new(Config::new(s2).unwrap());
    h.p.set_config(Arc::new(cfg));
    assert_eq!(h.counters().reloads, 1);
    for i in 0..4 {
        assert_eq!(forwarded_to(&data(&mut h, i)), a4(SERVER4));
    }
    // New clients share the load.
    let got: Vec<IpAddr> = (4..8).map(|i| open(&mut h, i)).collect();
    assert!(got.contains(&a4(SERVER4B)) && got.contains(&a4(SERVER4)));
    assert_eq!(h.counters().conn_reload_closed, 0);
}

#[test]
fn reload_removing_a_server_closes_its_connections() {
    let mut h = harness(two_servers(ForwardMode::Nat, SchedulerKind::RoundRobin));
    assert_eq!(open(&mut h, 0), a4(SERVER4));
    assert_eq!(open(&mut h, 1), a4(SERVER4B));
    let mut s = two_servers(ForwardMode::Nat, SchedulerKind::RoundRobin);
    s[0].servers.remove(0);
    let mut cfg = (*h.p.config()).as_ref().clone();
    cfg.services = Arc::new(Config::new(s).unwrap());
    h.p.set_config(Arc::new(cfg));
    assert_eq!(h.counters().conn_reload_closed, 1);
    assert_eq!(h.p.connection_count(), 1);
    assert_eq!(forwarded_to(&data(&mut h, 1)), a4(SERVER4B));
}

#[test]
fn full_table_drops_or_evicts() {
    let mut cfg = config(two_servers(ForwardMode::Nat, SchedulerKind::RoundRobin));
    // Room for two NAT connections (two entries each).
    cfg.conn4 = ConnTableConfig {
        capacity: 4,
        hash_seed: 3,
        ..ConnTableConfig::default()
    };
    let mut h = Harness::new(cfg.clone());
    h.learn_neighbors();
    open(&mut h, 0);
    open(&mut h, 1);
    let (tx, _) = h.rx(0, &client_pkt(client(2), 30002, a4(VIP4), 80, SYN));
    nothing(&tx);
    assert_eq!(h.counters().drop_conn_full, 1);
    assert_eq!(h.counters().conn4.full_drops, 1);
    // With eviction the oldest goes and is accounted as closed.
    cfg.conn4.full_policy = FullPolicy::EvictOldest;
    let mut h = Harness::new(cfg);
    h.learn_neighbors();
    open(&mut h, 0);
    open(&mut h, 1);
    open(&mut h, 2);
    assert_eq!(h.counters().conn_closed, 1);
    assert_eq!(h.counters().conn4.evictions, 1);
    assert_eq!(h.p.connection_count(), 2);
}

#[test]
fn timeouts_expire_connections() {
    let mut h = harness(two_servers(ForwardMode::Nat, SchedulerKind::LeastConn));
    let (tx, _) = h.rx(0, &client_pkt(client(0), 1000, a4(VIP4), 53, L4::Udp));
    assert_eq!(forwarded_to(&tx), a4(SERVER4));
    // Least connections: the second client goes to the idle server.
    let (tx, _) = h.rx(0, &client_pkt(client(1), 1000, a4(VIP4), 53, L4::Udp));
    assert_eq!(forwarded_to(&tx), a4(SERVER4B));
    assert_eq!(h.p.connection_count(), 2);
    // UDP times out after 300 s.
    h.poll_after(299_000);
    assert_eq!(h.p.connection_count(), 2);
    h.poll_after(2_000);
    assert_eq!(h.p.connection_count(), 0);
    assert_eq!(h.counters().conn_closed, 2);
    // A TCP reset shortens the timeout to 10 s.
    open(&mut h, 5);
    h.rx(0, &client_pkt(client(5), 30005, a4(VIP4), 80, RST));
    assert_eq!(h.p.connections().next().unwrap().state, ConnState::Close);
    h.poll_after(10_200);
    assert_eq!(h.p.connection_count(), 0);
}

#[test]
fn reload_applies_timeouts_and_full_policy_to_held_connections() {
    let mut cfg = config(two_servers(ForwardMode::Nat, SchedulerKind::RoundRobin));
    // Room for two NAT connections (two entries each).
    cfg.conn4.capacity = 4;
    let mut h = Harness::new(cfg);
    h.learn_neighbors();
    let udp = |h: &mut Harness, i: u16| {
        let (tx, _) = h.rx(0, &client_pkt(client(i), 1000, a4(VIP4), 53, L4::Udp));
        forwarded_to(&tx);
    };
    // Client 0 at 1 s, client 1 at 101 s: UDP, 300 s.
    udp(&mut h, 0);
    h.poll_after(100_000);
    udp(&mut h, 1);
    // Full, with the `drop` policy: client 2 is refused.
    let (tx, _) = h.rx(0, &client_pkt(client(2), 1000, a4(VIP4), 53, L4::Udp));
    nothing(&tx);
    assert_eq!(h.counters().drop_conn_full, 1);
    // At 101 s a reload shortens UDP to 60 s and evicts when full.
    let mut cfg = (*h.p.config()).as_ref().clone();
    cfg.conn4.timeouts.udp = std::time::Duration::from_secs(60);
    cfg.conn4.full_policy = FullPolicy::EvictOldest;
    h.p.set_config(Arc::new(cfg));
    // Client 0, idle for 100 s, is past the new timeout: it goes at once.
    h.poll_after(200);
    assert_eq!(h.p.connection_count(), 1);
    assert_eq!(h.counters().conn_closed, 1);
    // Client 1 goes 60 s after its last packet, not 300 s.
    let expiry = h.p.connections().next().unwrap().expires;
    assert_eq!(expiry, Time::from_secs(161));
    h.poll_after(59_000);
    assert_eq!(h.p.connection_count(), 1);
    h.poll_after(1_000);
    assert_eq!(h.p.connection_count(), 0);
    // The new policy: a third connection evicts the oldest.
    for i in 3..6 {
        udp(&mut h, i);
    }
    assert_eq!(h.counters().conn4.evictions, 1);
    assert_eq!(h.p.connection_count(), 2);
}

#[test]
fn midstream_pickup_for_consistent_hashing_only() {
    let mut h = harness(two_servers(ForwardMode::Nat, SchedulerKind::Maglev));
    // An ACK without a connection opens one (another node's flow, or after
    // a restart): Maglev sends it where the SYN went.
    let first = forwarded_to(&data(&mut h, 3));
    assert_eq!(h.counters().conn_picked_up, 1);
    let mut h2 = harness(two_servers(ForwardMode::Nat, SchedulerKind::Maglev));
    assert_eq!(open(&mut h2, 3), first);
    assert_eq!(h2.p.connections().next().unwrap().state, ConnState::SynSent);
    // RSTs never open connections.
    let (tx, _) = h.rx(0, &client_pkt(client(9), 30009, a4(VIP4), 80, RST));
    nothing(&tx);
    assert_eq!(h.counters().drop_tcp_no_conn, 1);
}

#[test]
fn dsr_tracks_client_side_only() {
    let mut h = harness(two_servers(ForwardMode::Dsr, SchedulerKind::RoundRobin));
    open(&mut h, 0);
    data(&mut h, 0);
    // No SYN-ACK is ever seen: the client's ACK establishes the connection.
    assert_eq!(
        h.p.connections().next().unwrap().state,
        ConnState::Established
    );
    h.rx(0, &client_pkt(client(0), 30000, a4(VIP4), 80, FIN_ACK));
    assert_eq!(h.p.connections().next().unwrap().state, ConnState::FinWait);
}

#[test]
fn flush_connections() {
    let mut h = harness(two_servers(ForwardMode::Nat, SchedulerKind::RoundRobin));
    open(&mut h, 0);
    open(&mut h, 1);
    h.p.apply(ControlMsg::FlushConnections);
    assert_eq!(h.p.connection_count(), 0);
    assert_eq!(h.counters().conn_closed, 2);
    assert_eq!(h.counters().control_applied, 8);
    h.p.apply(ControlMsg::ServerState {
        service: ServiceIdx(9),
        server: ServerIdx(0),
        state: ServerState::Down,
    });
    assert_eq!(h.counters().control_rejected, 1);
    let _ = Time::ZERO;
}

/// A filtered flush removes the selected connections only: by server, by
/// client network; an empty filter removes everything.
#[test]
fn flush_connections_by_filter() {
    use tack_dataplane::pipeline::ConnFilter;
    let mut h = harness(two_servers(ForwardMode::Nat, SchedulerKind::RoundRobin));
    for i in 0..4 {
        open(&mut h, i);
    }
    let on = |h: &Harness, s: u16| {
        h.p.connections()
            .filter(|c| c.server == ServerIdx(s))
            .count()
    };
    assert_eq!((on(&h, 0), on(&h, 1)), (2, 2));
    assert_eq!(h.p.open_per_server()[0], [2, 2]);
    let by_server = ConnFilter {
        service: Some(ServiceIdx(0)),
        server: Some(ServerIdx(1)),
        client: None,
    };
    h.p.apply(ControlMsg::FlushConnectionsWhere(by_server));
    assert_eq!((on(&h, 0), on(&h, 1)), (2, 0));
    assert_eq!(h.p.open_per_server()[0], [2, 0]);
    assert_eq!(h.counters().conn_closed, 2);
    let first = h.p.connections().next().unwrap().client;
    let one_client = ConnFilter {
        client: Some((first, if first.is_ipv4() { 32 } else { 128 })),
        ..ConnFilter::default()
    };
    h.p.apply(ControlMsg::FlushConnectionsWhere(one_client));
    assert_eq!(h.p.connection_count(), 1);
    assert!(h.p.connections().all(|c| c.client != first));
    h.p.apply(ControlMsg::FlushConnectionsWhere(ConnFilter::default()));
    assert_eq!(h.p.connection_count(), 0);
    assert_eq!(h.counters().conn_closed, 4);
}

#[test]
fn installed_connections_forward_both_ways() {
    use tack_dataplane::pipeline::{ConnSpec, InstallConnError};
    let mut h = harness(two_servers(ForwardMode::Nat, SchedulerKind::RoundRobin));
    h.p.apply(ControlMsg::Neighbor {
        port: 0,
        addr: client(3),
        mac: C_MAC,
    });
    let spec = ConnSpec {
        client: client(3),
        client_port: 30003,
        vip: a4(VIP4),
        vip_port: 80,
        protocol: 6,
        server: ServerIdx(1),
        local: None,
        seq_shift: None,
    };
    h.p.install_connection(h.now, &spec).unwrap();
    assert_eq!(
        h.p.install_connection(h.now, &spec),
        Err(InstallConnError::Exists)
    );
    assert_eq!(
        h.p.install_connection(
            h.now,
            &ConnSpec {
                vip_port: 81,
                ..spec
            }
        ),
        Err(InstallConnError::NoService)
    );
    assert_eq!(
        h.p.install_connection(
            h.now,
            &ConnSpec {
                server: ServerIdx(7),
                client_port: 1,
                ..spec
            }
        ),
        Err(InstallConnError::NoServer)
    );
    // A mid-stream segment of a round-robin service follows the installed connection.
    assert_eq!(forwarded_to(&data(&mut h, 3)), a4(SERVER4B));
    let (tx, _) = h.rx(1, &server_pkt(a4(SERVER4B), 80, client(3), 30003, ACK));
    assert_eq!(tuple(&only(&tx, 0)), (a4(VIP4), 80, client(3), 30003));
    let sc = &h.p.service_counters()[0];
    assert_eq!((sc.conns, sc.packets_in, sc.packets_out), (1, 1, 1));
    assert_eq!(sc.servers[1].conns, 1);
    assert_eq!(sc.servers[1].packets, 1);
    assert_eq!(sc.bytes_in, 40);
}

#[test]
fn service_counters_follow_reloads() {
    let mut h = harness(two_servers(ForwardMode::Nat, SchedulerKind::RoundRobin));
    for i in 0..2 {
        let addr = client(i);
        h.p.apply(ControlMsg::Neighbor {
            port: 0,
            addr,
            mac: C_MAC,
        });
    }
    let servers = [open(&mut h, 0), open(&mut h, 1)];
    for (i, s) in (0u16..).zip(servers) {
        // Handshake complete: the server's next segments are steady replies.
        h.rx(1, &server_pkt(s, 80, client(i), 30000 + i, L4::Tcp(0x12)));
        data(&mut h, i);
    }
    assert_eq!(h.p.service_counters()[0].conns, 2);
    assert_eq!(h.p.service_counters()[0].packets_out, 2);
    // Reverse the pool: counters follow the servers.
    let mut s = two_servers(ForwardMode::Nat, SchedulerKind::RoundRobin);
    s[0].servers.reverse();
    s.reverse();
    let mut cfg = (*h.p.config()).as_ref().clone();
    cfg.services = Arc::new(Config::new(s).unwrap());
    h.p.set_config(Arc::new(cfg));
    let sc = &h.p.service_counters()[1];
    assert_eq!(sc.conns, 2);
    assert_eq!((sc.servers[0].conns, sc.servers[1].conns), (1, 1));
    assert_eq!(h.p.service_counters()[0].conns, 0);
    // Replies, which go from their own connection entries, count on the
    // service's new index too.
    let out_before = sc.packets_out;
    for (i, s) in (0u16..).zip(servers) {
        let (tx, _) = h.rx(1, &server_pkt(s, 80, client(i), 30000 + i, ACK));
        assert_eq!(tuple(&only(&tx, 0)), (a4(VIP4), 80, client(i), 30000 + i));
    }
    assert_eq!(h.p.service_counters()[1].packets_out, out_before + 2);
    assert_eq!(h.p.service_counters()[0].packets_out, 0);
}

#[test]
fn vip_on_the_port_address_leaves_other_ports_to_the_host() {
    let s = service(
        a4(PORT0_4),
        Protocol::Tcp,
        Some(80),
        ForwardMode::Nat,
        &[a4(SERVER4)],
    );
    let mut h = harness(vec![s]);
    let (tx, host) = h.rx(0, &client_pkt(a4(CLIENT4), 40000, a4(PORT0_4), 22, SYN));
    nothing(&tx);
    assert_eq!(host.len(), 1);
    let (tx, _) = h.rx(0, &client_pkt(a4(CLIENT4), 40000, a4(PORT0_4), 80, SYN));
    assert_eq!(forwarded_to(&tx), a4(SERVER4));
}

#[test]
fn reload_changing_a_services_mode_keeps_its_connections_as_made() {
    let mut h = harness(two_servers(ForwardMode::Nat, SchedulerKind::RoundRobin));
    assert_eq!(open(&mut h, 0), a4(SERVER4));
    let mut cfg = (*h.p.config()).as_ref().clone();
    let s = two_servers(ForwardMode::Dsr, SchedulerKind::RoundRobin);
    cfg.services = Arc::new(Config::new(s).unwrap());
    h.p.set_config(Arc::new(cfg));
    assert_eq!(h.counters().conn_reload_closed, 0);
    // The connection made in NAT is still translated, both ways.
    assert_eq!(forwarded_to(&data(&mut h, 0)), a4(SERVER4));
    h.p.apply(ControlMsg::Neighbor {
        port: 0,
        addr: client(0),
        mac: C_MAC,
    });
    let reply = server_pkt(a4(SERVER4), 80, client(0), 30000, ACK);
    let (tx, _) = h.rx(1, &reply);
    assert_eq!(tuple(&only(&tx, 0)), (a4(VIP4), 80, client(0), 30000));
    // A new client is served by direct return: its packet keeps the VIP.
    assert_eq!(open(&mut h, 1), a4(VIP4));
}

#[test]
fn syn_with_fin_opens_nothing() {
    let mut h = harness(two_servers(ForwardMode::Nat, SchedulerKind::RoundRobin));
    let syn_fin = client_pkt(client(0), 30000, a4(VIP4), 80, L4::Tcp(0x03));
    let (tx, _) = h.rx(0, &syn_fin);
    nothing(&tx);
    assert_eq!(h.counters().drop_tcp_syn_fin, 1);
    assert_eq!(h.p.connection_count(), 0);
    // The plain SYN that follows opens the connection.
    assert_eq!(open(&mut h, 0), a4(SERVER4));
    assert_eq!(h.p.connection_count(), 1);
}

#[test]
fn segments_of_unknown_connections_get_a_reset_when_the_service_asks() {
    let mut services = two_servers(ForwardMode::Nat, SchedulerKind::RoundRobin);
    let mut h = harness(services.clone());
    // By default: dropped and counted.
    nothing(&h.rx(0, &client_pkt(client(0), 30000, a4(VIP4), 80, ACK)).0);
    assert_eq!(h.counters().drop_tcp_no_conn, 1);
    services[0].reset_unknown = true;
    let mut h = harness(services);
    h.p.apply(ControlMsg::Neighbor {
        port: 0,
        addr: client(0),
        mac: C_MAC,
    });
    // An ACK (acknowledging 0 in this test's segments): RST with SEQ=SEG.ACK.
    let (tx, _) = h.rx(0, &client_pkt(client(0), 30000, a4(VIP4), 80, ACK));
    let f = only(&tx, 0);
    assert_eq!(tuple(&f), (a4(VIP4), 80, client(0), 30000));
    let c = tack_dataplane::wire::classify(&f).unwrap();
    let t = tack_dataplane::wire::TcpPacket::new_checked(&f[c.l4_offset..c.l3_end]).unwrap();
    assert!(t.verify_checksum(&c.src_addr, &c.dst_addr));
    assert_eq!((t.flags().0, t.seq_number()), (0x04, 0));
    // A FIN without ACK: RST+ACK acknowledging it.
    let (tx, _) = h.rx(
        0,
        &client_pkt(client(0), 30000, a4(VIP4), 80, L4::Tcp(0x01)),
    );
    let f = only(&tx, 0);
    let c = tack_dataplane::wire::classify(&f).unwrap();
    let t = tack_dataplane::wire::TcpPacket::new_checked(&f[c.l4_offset..c.l3_end]).unwrap();
    assert_eq!((t.flags().0, t.ack_number()), (0x14, 2));
    // An RST is never answered; a SYN still opens a connection.
    nothing(&h.rx(0, &client_pkt(client(0), 30000, a4(VIP4), 80, RST)).0);
    assert_eq!(open(&mut h, 1), a4(SERVER4));
    assert_eq!(h.counters().tcp_resets_sent, 2);
    assert_eq!(h.counters().drop_tcp_no_conn, 1);
}

/// Passive health: a server that never answers a SYN, and one that resets,
/// are counted against it (NAT: its packets come back here).
#[test]
fn unanswered_syns_and_server_resets_are_counted_per_server() {
    let mut h = Harness::basic();
    h.learn_neighbors();
    let (client, vip, server) = (a4(CLIENT4), a4(VIP4), a4(SERVER4));
    // Two SYNs nobody answers.
    for sport in [40_000, 40_001] {
        let (tx, _) = h.rx(0, &client_pkt(client, sport, vip, 80, SYN));
        assert_eq!(forwarded_to(&tx), server);
    }
    // A third is answered, then reset by the server.
    h.rx(0, &client_pkt(client, 40_002, vip, 80, SYN));
    let syn_ack = L4::Tcp(0x12);
    h.rx(1, &server_pkt(server, 80, client, 40_002, syn_ack));
    let (tx, _) = h.rx(1, &server_pkt(server, 80, client, 40_002, RST));
    assert_eq!(tuple(&only(&tx, 0)), (vip, 80, client, 40_002));
    assert_eq!(
        h.p.service_counters()[0].servers[0].resets,
        1,
        "{:?}",
        h.p.service_counters()
    );
    // The SYN timeout (60 s) passes: the two unanswered ones expire.
    for _ in 0..70 {
        h.poll_after(1000);
    }
    let s = h.p.service_counters()[0].servers[0];
    assert_eq!(s.syn_unanswered, 2, "{s:?}");
    assert_eq!(s.resets, 1);
}
