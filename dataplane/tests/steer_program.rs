//! The steering program of a software queue names the queue of the worker
//! `Pipeline::owner_worker` names, for NAT (both directions), full NAT
//! (requests and replies to the local address), DSR, all-ports services,
//! other traffic, first and later fragments, IPv4 and IPv6, and sends ARP
//! and neighbour discovery to queue 0.

mod pipeline_common;

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::sync::Arc;

use pipeline_common::*;
use tack_dataplane::model::{ForwardMode, Protocol};
use tack_dataplane::pipeline::{Pipeline, PipelineConfig, SteeringProgram, WorkerSpec};
use tack_dataplane::wire::classify;
use tack_dataplane::{VecFrame, pipeline::SteerProgError};

const VIP4_FNAT: &str = "203.0.113.11";
const VIP4_DSR: &str = "203.0.113.12";
const VIP4_ANY: &str = "203.0.113.13";
const VIP6_FNAT: &str = "2001:db8:2::11";

fn cfg() -> Arc<PipelineConfig> {
    use ForwardMode::*;
    use Protocol::*;
    let (s4, s4b, s6) = (a4(SERVER4), a4(SERVER4B), a6(SERVER6));
    let mut own_port = service(a4(VIP4), Tcp, Some(8080), Nat, &[s4]);
    own_port.servers[0].port = Some(8000);
    Arc::new(config(vec![
        service(a4(VIP4), Tcp, Some(80), Nat, &[s4, s4b]),
        service(a4(VIP4), Udp, Some(53), Nat, &[s4]),
        own_port,
        service(a4(VIP4_ANY), Tcp, None, Nat, &[s4b]),
        service(a4(VIP4_FNAT), Tcp, Some(80), FullNat, &[s4, s4b]),
        service(a4(VIP4_DSR), Tcp, Some(80), Dsr, &[s4]),
        service(a6(VIP6), Tcp, Some(80), Nat, &[s6]),
        service(a6(VIP6_FNAT), Tcp, Some(80), FullNat, &[s6]),
    ]))
}

/// A small deterministic generator (xorshift).
struct Rng(u64);
impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
    fn pick<T: Copy>(&mut self, xs: &[T]) -> T {
        xs[(self.next() % xs.len() as u64) as usize]
    }
    fn port(&mut self) -> u16 {
        self.next() as u16
    }
}

/// Rewrites an IPv4 frame's fragment field (and the header checksum).
fn fragment(mut f: Vec<u8>, flags_offset: u16) -> Vec<u8> {
    f[20..22].copy_from_slice(&flags_offset.to_be_bytes());
    f[24..26].fill(0);
    let sum: u32 = f[14..34]
        .chunks(2)
        .map(|c| u32::from(u16::from_be_bytes([c[0], c[1]])))
        .sum();
    let sum = (sum & 0xffff) + (sum >> 16);
    let sum = (sum & 0xffff) + (sum >> 16);
    f[24..26].copy_from_slice(&(!(sum as u16)).to_be_bytes());
    f
}

/// An IPv4 frame of another protocol (GRE) with a valid header.
fn other_protocol(f: Vec<u8>) -> Vec<u8> {
    let mut f = f;
    f[23] = 47;
    let flags = u16::from_be_bytes([f[20], f[21]]);
    fragment(f, flags)
}

fn arp() -> Vec<u8> {
    let mut f = vec![0xff; 6];
    f.extend_from_slice(&C_MAC.0);
    f.extend_from_slice(&[0x08, 0x06, 0, 1, 0x08, 0, 6, 4, 0, 1]);
    f.extend_from_slice(&C_MAC.0);
    f.extend_from_slice(&[198, 51, 100, 7, 0, 0, 0, 0, 0, 0, 198, 51, 100, 1]);
    f.resize(60, 0);
    f
}

fn frames(rng: &mut Rng, n: usize) -> Vec<(u16, Vec<u8>)> {
    let clients4: Vec<IpAddr> = (0..50)
        .map(|_| IpAddr::V4(Ipv4Addr::from(rng.next() as u32 | 0x0100_0000)))
        .collect();
    let clients6: Vec<IpAddr> = (0..50)
        .map(|_| IpAddr::V6(Ipv6Addr::from(u128::from(rng.next()) << 64 | 7)))
        .collect();
    let servers4 = [a4(SERVER4), a4(SERVER4B)];
    let mut out = vec![(0, arp()), (1, arp())];
    for _ in 0..n {
        let (c4, c6, cp) = (rng.pick(&clients4), rng.pick(&clients6), rng.port());
        let s4 = rng.pick(&servers4);
        let l4 = rng.pick(&[SYN, ACK, L4::Udp]);
        let f = match rng.next() % 14 {
            // Clients to the services (and to ports no service has).
            0 => client_pkt(c4, cp, a4(VIP4), rng.pick(&[80, 53, 8080, 81]), l4),
            1 => client_pkt(c4, cp, a4(VIP4_ANY), rng.port(), l4),
            2 => client_pkt(c4, cp, a4(VIP4_FNAT), 80, l4),
            3 => client_pkt(c4, cp, a4(VIP4_DSR), 80, l4),
            4 => client_pkt(c6, cp, a6(VIP6), 80, l4),
            5 => client_pkt(c6, cp, a6(VIP6_FNAT), 80, l4),
            // NAT replies (from the service port, the server's own port, any).
            6 => server_pkt(s4, rng.pick(&[80, 53, 8000, 9]), c4, cp, l4),
            7 => server_pkt(a6(SERVER6), 80, c6, cp, l4),
            // Full-NAT replies to the local addresses, and to the port's own.
            8 => server_pkt(s4, 80, a4(rng.pick(&[LOCAL4, PORT1_4])), cp, l4),
            9 => server_pkt(a6(SERVER6), 80, a6(LOCAL6), cp, l4),
            // Traffic that is none of that.
            10 => client_pkt(c4, cp, a4(FAR4), rng.port(), l4),
            11 => fragment(
                client_pkt(c4, cp, a4(VIP4), 80, l4),
                rng.pick(&[0x2000, 0x2010, 0x0010]),
            ),
            12 => other_protocol(client_pkt(c4, cp, a4(VIP4), 80, l4)),
            _ => client_pkt(c6, cp, a6(SERVER6), rng.port(), l4),
        };
        out.push(((rng.next() % 2) as u16, f));
    }
    out
}

fn check(n_workers: u16, queues: &[u16], reta_size: usize) {
    let mut c = (*cfg()).clone();
    c.reta_size = reta_size;
    let c = Arc::new(c);
    let ws: Vec<Pipeline<VecFrame>> = (0..n_workers)
        .map(|i| Pipeline::new(c.clone(), WorkerSpec::software(i, n_workers, 2)).unwrap())
        .collect();
    let progs: Vec<SteeringProgram> = (0..2)
        .map(|port| ws[0].steering_program(port, queues).unwrap())
        .collect();
    for port in 0..2 {
        // Every worker compiles the same program.
        assert_eq!(
            ws[1].steering_program(port, queues).unwrap(),
            progs[usize::from(port)]
        );
    }
    let mut rng = Rng(0x5eed_0000 + u64::from(n_workers));
    let mut per_queue = vec![0usize; queues.len()];
    for (port, f) in frames(&mut rng, 4000) {
        let owner = ws[0].owner_worker(&VecFrame::new(&f), port);
        let got = progs[usize::from(port)].run(&f);
        let want = owner.map_or(0, |w| queues[usize::from(w)]);
        assert_eq!(
            got,
            Some(want),
            "{n_workers} workers, port {port}: {:?}, owner {owner:?}: {}",
            classify(&f).ok(),
            hex(&f)
        );
        if let Some(w) = owner {
            per_queue[usize::from(w)] += 1;
        }
    }
    // The frames spread over every worker.
    assert!(
        per_queue.iter().all(|&n| n > 4000 / (4 * queues.len())),
        "{per_queue:?}"
    );
}

#[test]
fn the_program_names_the_queue_of_the_owning_worker() {
    check(2, &[0, 1], 128);
    check(2, &[1, 0], 128);
    check(3, &[0, 1, 2], 128);
    check(4, &[0, 1, 2, 3], 512);
    // A table whose length is not a power of two: looked up entry by entry.
    check(3, &[2, 0, 1], 100);
}

#[test]
fn one_queue_per_worker() {
    let ws = Pipeline::<VecFrame>::new(cfg(), WorkerSpec::software(0, 2, 2)).unwrap();
    assert_eq!(
        ws.steering_program(0, &[0]),
        Err(SteerProgError::Queues {
            given: 1,
            workers: 2
        })
    );
    assert_eq!(
        ws.steering_program(5, &[0, 1]),
        Err(SteerProgError::NoSuchPort(5))
    );
    let p = ws.steering_program(0, &[0, 1]).unwrap();
    // Two workers: one hash bit each input bit may reach.
    assert!(p.insns().len() < 2000, "{}", p.insns().len());
    assert_eq!(p.bytes().len(), 8 * p.insns().len());
}
