//! Full NAT on several workers: the SNAT port makes the reply's RSS hash
//! (bit-by-bit reference Toeplitz, DPDK's `rte_softrss`) land on the queue
//! of the worker that opened the connection; `owner_worker` agrees.

mod pipeline_common;

use std::net::IpAddr;
use std::sync::Arc;

use pipeline_common::*;
use tack_dataplane::VecFrame;
use tack_dataplane::ids::ServerIdx;
use tack_dataplane::model::{ForwardMode, Protocol};
use tack_dataplane::pipeline::{ControlMsg, Pipeline, PipelineConfig, WorkerSpec};
use tack_dataplane::rss::{MS_RSS_KEY, Reta, toeplitz_hash};

const WORKERS: u16 = 4;

fn cfg() -> Arc<PipelineConfig> {
    Arc::new(config(vec![
        service(
            a4(VIP4),
            Protocol::Tcp,
            Some(443),
            ForwardMode::FullNat,
            &[a4(SERVER4)],
        ),
        service(
            a6(VIP6),
            Protocol::Tcp,
            Some(443),
            ForwardMode::FullNat,
            &[a6(SERVER6)],
        ),
    ]))
}

fn workers(rss: bool) -> Vec<Pipeline<VecFrame>> {
    let cfg = cfg();
    (0..WORKERS)
        .map(|i| {
            let spec = WorkerSpec {
                index: i,
                n_workers: WORKERS,
                queue: i,
                rx_queues: vec![WORKERS; 2],
                rss_key: vec![rss.then(|| MS_RSS_KEY.to_vec()); 2],
            };
            let mut p = Pipeline::new(cfg.clone(), spec).unwrap();
            for (port, addr, mac) in [
                (0, a4(CLIENT4), C_MAC),
                (1, a4(SERVER4), S_MAC),
                (0, a6(CLIENT6), C_MAC),
                (1, a6(SERVER6), S_MAC),
            ] {
                p.apply(ControlMsg::Neighbor { port, addr, mac });
            }
            p
        })
        .collect()
}

/// The reference hash of a reply server → local, as the NIC computes it.
fn nic_queue(server: IpAddr, local: IpAddr, lport: u16, sport: u16) -> u16 {
    let mut input = Vec::new();
    for a in [server, local] {
        match a {
            IpAddr::V4(a) => input.extend_from_slice(&a.octets()),
            IpAddr::V6(a) => input.extend_from_slice(&a.octets()),
        }
    }
    input.extend_from_slice(&sport.to_be_bytes());
    input.extend_from_slice(&lport.to_be_bytes());
    let h = toeplitz_hash(&MS_RSS_KEY, &input);
    Reta::round_robin(128, WORKERS).unwrap().queue(h)
}

fn check_family(rss: bool, client: IpAddr, vip: IpAddr, server: IpAddr, local: IpAddr) {
    let mut ws = workers(rss);
    for w in 0..WORKERS {
        for i in 0..40u16 {
            let cport = 20000 + w * 100 + i;
            let p = &mut ws[usize::from(w)];
            let out = run(p, 0, &client_pkt(client, cport, vip, 443, SYN));
            assert_eq!(out.tx[1].len(), 1);
            let (src, lport, dst, _) = tuple(out.tx[1][0].bytes_ref());
            assert_eq!((src, dst), (local, server));
            // The NIC would steer the reply to this worker's queue...
            assert_eq!(nic_queue(server, local, lport, 443), w, "port {lport}");
            // ...and so says owner_worker, on every worker.
            let reply = server_pkt(server, 443, local, lport, ACK);
            for q in &ws {
                assert_eq!(q.owner_worker(&VecFrame::new(&reply), 1), Some(w));
            }
            // The owner translates it; another worker has no connection for it.
            let other = usize::from((w + 1) % WORKERS);
            let out = run(&mut ws[other], 1, &reply);
            assert!(out.is_empty());
            let out = run(&mut ws[usize::from(w)], 1, &reply);
            assert_eq!(tuple(out.tx[0][0].bytes_ref()), (vip, 443, client, cport));
        }
    }
    for p in &ws {
        assert_eq!(p.counters().conn_created, 40);
        assert_eq!(p.counters().drop_fnat_no_conn, 40);
        assert_eq!(p.counters().fnat_reply_wrong_worker, 40);
        assert_eq!(p.counters().fnat_port_unsteered, 0);
    }
}

trait Bytes {
    fn bytes_ref(&self) -> &[u8];
}
impl Bytes for VecFrame {
    fn bytes_ref(&self) -> &[u8] {
        tack_dataplane::Frame::bytes(self)
    }
}

#[test]
fn fnat4_replies_hash_to_the_owner() {
    check_family(true, a4(CLIENT4), a4(VIP4), a4(SERVER4), a4(LOCAL4));
}

#[test]
fn fnat6_replies_hash_to_the_owner() {
    check_family(true, a6(CLIENT6), a6(VIP6), a6(SERVER6), a6(LOCAL6));
}

#[test]
fn software_steering_without_rss() {
    // Ports without an RSS key: the runtime steers with the standard key
    // over the workers, which the port choice and owner_worker assume.
    check_family(false, a4(CLIENT4), a4(VIP4), a4(SERVER4), a4(LOCAL4));
}

/// The port the picker would hand out next is already the local end of a
/// connection (here a synchronised one): the new flow gets the next free
/// port steered to the same worker, and both connections work.
fn taken_port_is_skipped(client: IpAddr, vip: IpAddr, server: IpAddr, local: IpAddr) {
    use tack_dataplane::pipeline::ConnSpec;
    let w = 2usize;
    // Two identical workers: `a` shows which port comes next, `b` has it taken.
    let (mut a, mut b) = (workers(true).remove(w), workers(true).remove(w));
    let syn = client_pkt(client, 40000, vip, 443, SYN);
    let out = run(&mut a, 0, &syn);
    let (_, next, _, _) = tuple(out.tx[1][0].bytes_ref());
    b.install_connection(
        tack_dataplane::Time::ZERO,
        &ConnSpec {
            client,
            client_port: 50000,
            vip,
            vip_port: 443,
            protocol: 6,
            server: ServerIdx(0),
            local: Some((local, next)),
            seq_shift: None,
        },
    )
    .unwrap();
    let out = run(&mut b, 0, &syn);
    assert_eq!(out.tx[1].len(), 1, "forwarded on another port");
    let (src, lport, dst, _) = tuple(out.tx[1][0].bytes_ref());
    assert_eq!((src, dst), (local, server));
    assert_ne!(lport, next, "the taken port is not reused");
    assert_eq!(nic_queue(server, local, lport, 443), w as u16);
    // Each server reply reaches its own client.
    for (port, cport) in [(lport, 40000), (next, 50000)] {
        let out = run(&mut b, 1, &server_pkt(server, 443, local, port, ACK));
        assert_eq!(tuple(out.tx[0][0].bytes_ref()), (vip, 443, client, cport));
    }
    assert_eq!(b.counters().drop_fnat_no_port, 0);
    assert_eq!(
        (b.counters().conn_created, b.counters().conn_installed),
        (1, 1)
    );
    // The taken guess is no conflict: nothing dropped, nothing counted.
    let c = b.counters();
    assert_eq!(c.drop_reply_conflict, 0);
    assert_eq!((c.conn4.reply_conflicts, c.conn6.reply_conflicts), (0, 0));
    // Next time the walk goes on from the port handed out.
    let out = run(&mut b, 0, &client_pkt(client, 40001, vip, 443, SYN));
    let (_, after, _, _) = tuple(out.tx[1][0].bytes_ref());
    assert!(after != lport && after != next);
}

#[test]
fn fnat4_taken_port_is_skipped() {
    taken_port_is_skipped(a4(CLIENT4), a4(VIP4), a4(SERVER4), a4(LOCAL4));
}

#[test]
fn fnat6_taken_port_is_skipped() {
    taken_port_is_skipped(a6(CLIENT6), a6(VIP6), a6(SERVER6), a6(LOCAL6));
}
