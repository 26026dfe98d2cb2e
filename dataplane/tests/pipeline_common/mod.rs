//! Shared topology and harness of the pipeline tests (see
//! `testdata/pipeline/gen.py` for the same topology on the scapy side).
#![allow(dead_code)]

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::sync::Arc;

use tack_dataplane::conn::ConnTableConfig;
use tack_dataplane::model::{
    Config, ForwardMode, LocalPool, Protocol, RealServer, SchedulerKind, Service,
};
use tack_dataplane::pipeline::{
    ControlMsg, Counters, Event, Output, Pipeline, PipelineConfig, PortSpec, Route, WorkerSpec,
};
use tack_dataplane::sticky::StickyConfig;
use tack_dataplane::wire::EthernetAddress;
use tack_dataplane::{RxChecksum, Time, VecAlloc, VecFrame};

pub mod mesh;

/// The bytes of `testdata/pipeline/<name>.bin`.
#[macro_export]
macro_rules! fixture {
    ($name:literal) => {
        &include_bytes!(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/testdata/pipeline/",
            $name,
            ".bin"
        ))[..]
    };
}

pub const C_MAC: EthernetAddress = EthernetAddress([2, 0, 0, 0, 0, 1]);
pub const L0_MAC: EthernetAddress = EthernetAddress([2, 0, 0, 0, 0, 2]);
pub const L1_MAC: EthernetAddress = EthernetAddress([2, 0, 0, 0, 1, 2]);
pub const S_MAC: EthernetAddress = EthernetAddress([2, 0, 0, 0, 0, 3]);
pub const S2_MAC: EthernetAddress = EthernetAddress([2, 0, 0, 0, 0, 4]);
pub const R_MAC: EthernetAddress = EthernetAddress([2, 0, 0, 0, 0, 0xfe]);

pub fn a4(s: &str) -> IpAddr {
    IpAddr::V4(s.parse::<Ipv4Addr>().unwrap())
}
pub fn a6(s: &str) -> IpAddr {
    IpAddr::V6(s.parse::<Ipv6Addr>().unwrap())
}

pub const CLIENT4: &str = "198.51.100.7";
pub const ROUTER4: &str = "198.51.100.254";
pub const FAR4: &str = "192.0.2.77";
pub const PORT0_4: &str = "198.51.100.1";
pub const PORT1_4: &str = "10.1.0.1";
pub const VIP4: &str = "203.0.113.10";
pub const SERVER4: &str = "10.1.0.5";
pub const SERVER4B: &str = "10.1.0.6";
pub const LOCAL4: &str = "10.1.0.254";
pub const CLIENT6: &str = "2001:db8:1::7";
pub const ROUTER6: &str = "2001:db8:1::fe";
pub const PORT0_6: &str = "2001:db8:1::1";
pub const PORT1_6: &str = "fd00:1::1";
pub const VIP6: &str = "2001:db8:2::10";
pub const SERVER6: &str = "fd00:1::5";
pub const LOCAL6: &str = "fd00:1::fe";

pub fn ports() -> Vec<PortSpec> {
    vec![
        PortSpec {
            mac: L0_MAC,
            addresses: vec![(a4(PORT0_4), 24), (a6(PORT0_6), 64)],
            mtu: 1500,
        },
        PortSpec {
            mac: L1_MAC,
            addresses: vec![(a4(PORT1_4), 24), (a6(PORT1_6), 64)],
            mtu: 1500,
        },
    ]
}

/// Default routes towards the clients' router on port 0.
pub fn routes() -> Vec<Route> {
    vec![
        Route {
            dst: a4("0.0.0.0"),
            prefix_len: 0,
            port: 0,
            gateway: Some(a4(ROUTER4)),
        },
        Route {
            dst: a6("::"),
            prefix_len: 0,
            port: 0,
            gateway: Some(a6(ROUTER6)),
        },
    ]
}

/// A service on `vip`/`proto`/`port` with servers, in `mode`.
pub fn service(
    vip: IpAddr,
    proto: Protocol,
    port: Option<u16>,
    mode: ForwardMode,
    servers: &[IpAddr],
) -> Service {
    let mut s = Service::new(vip, proto, port);
    s.mode = mode;
    s.scheduler = SchedulerKind::RoundRobin;
    s.servers = servers.iter().map(|a| RealServer::new(*a)).collect();
    if mode == ForwardMode::FullNat {
        s.local_pool = Some(LocalPool {
            addrs: vec![if vip.is_ipv4() {
                a4(LOCAL4)
            } else {
                a6(LOCAL6)
            }],
            port_min: 1024,
            port_max: 65535,
            peer_addrs: Vec::new(),
        });
    }
    s
}

/// The forwarding services of `testdata/pipeline/gen.py`.
pub fn forwarding_services() -> Vec<Service> {
    use ForwardMode::*;
    use Protocol::*;
    let (v4, v6, s4, s6) = (a4(VIP4), a6(VIP6), a4(SERVER4), a6(SERVER6));
    let mut p8080 = service(v4, Tcp, Some(8080), Nat, &[s4]);
    p8080.servers[0].port = Some(80);
    let mut dns = service(v4, Udp, Some(53), Nat, &[s4]);
    dns.servers[0].port = Some(5353);
    vec![
        service(v4, Tcp, Some(80), Nat, &[s4]),
        p8080,
        dns,
        service(v4, Tcp, Some(443), FullNat, &[s4]),
        service(v4, Tcp, Some(22), Dsr, &[s4]),
        service(v4, Tcp, Some(25), Tunnel, &[s4]),
        service(v4, Tcp, Some(26), Tunnel, &[s6]),
        service(v6, Tcp, Some(443), Nat, &[s6]),
        service(v6, Tcp, Some(8443), FullNat, &[s6]),
        service(v6, Tcp, Some(22), Dsr, &[s6]),
        service(v6, Tcp, Some(25), Tunnel, &[s6]),
    ]
}

/// The basic services: TCP 80 on VIP4 (NAT) and TCP 443 on VIP6 (NAT).
pub fn basic_services() -> Vec<Service> {
    vec![
        service(
            a4(VIP4),
            Protocol::Tcp,
            Some(80),
            ForwardMode::Nat,
            &[a4(SERVER4)],
        ),
        service(
            a6(VIP6),
            Protocol::Tcp,
            Some(443),
            ForwardMode::Nat,
            &[a6(SERVER6)],
        ),
    ]
}

/// The four servers of the persistence tests, on port 1's network.
pub const SERVERS4: [&str; 4] = ["10.1.0.5", "10.1.0.6", "10.1.0.7", "10.1.0.8"];

/// TCP 80 on VIP4 (NAT) over [`SERVERS4`] with these weights, persistent by
/// natural class for a minute.
pub fn sticky_service(weights: [u16; 4]) -> Service {
    let servers: Vec<IpAddr> = SERVERS4.iter().map(|s| a4(s)).collect();
    let mut s = service(
        a4(VIP4),
        Protocol::Tcp,
        Some(80),
        ForwardMode::Nat,
        &servers,
    );
    for (srv, w) in s.servers.iter_mut().zip(weights) {
        srv.weight = w;
    }
    s.persistence = Some(tack_dataplane::model::Persistence {
        key: tack_dataplane::model::ClientKeyRule::NaturalClass { networks: vec![] },
        timeout_minutes: 1,
    });
    s
}

/// [`config`] with room for thousands of connections and sticky keys.
pub fn sized_config(services: Vec<Service>) -> PipelineConfig {
    let mut cfg = config(services);
    cfg.conn4 = ConnTableConfig {
        capacity: 16384,
        hash_seed: 5,
        ..ConnTableConfig::default()
    };
    cfg.sticky = StickyConfig {
        capacity: 8192,
        ..StickyConfig::default()
    };
    cfg
}

pub fn config(services: Vec<Service>) -> PipelineConfig {
    PipelineConfig {
        ports: ports(),
        services: Arc::new(Config::new(services).unwrap()),
        routes: routes(),
        conn4: ConnTableConfig {
            capacity: 1024,
            hash_seed: 1,
            ..ConnTableConfig::default()
        },
        conn6: ConnTableConfig {
            capacity: 1024,
            hash_seed: 2,
            ..ConnTableConfig::default()
        },
        sticky: StickyConfig {
            capacity: 1024,
            ..StickyConfig::default()
        },
        ..PipelineConfig::default()
    }
}

/// A pipeline, its output and allocator, and a clock.
pub struct Harness {
    pub p: Pipeline<VecFrame>,
    pub out: Output<VecFrame>,
    pub alloc: VecAlloc,
    pub now: Time,
}

impl Harness {
    pub fn new(cfg: PipelineConfig) -> Harness {
        let n = cfg.ports.len();
        Harness::with_worker(cfg, WorkerSpec::software(0, 1, n))
    }

    /// A pipeline for `worker`.
    pub fn with_worker(cfg: PipelineConfig, worker: WorkerSpec) -> Harness {
        let n = cfg.ports.len();
        Harness {
            p: Pipeline::new(Arc::new(cfg), worker).unwrap(),
            out: Output::new(n),
            alloc: VecAlloc::default(),
            now: Time::from_secs(1),
        }
    }

    pub fn basic() -> Harness {
        Harness::new(config(basic_services()))
    }

    /// Feeds frames received on `port`; returns (per port frames, host frames) as bytes.
    pub fn rx_many(&mut self, port: u16, frames: &[&[u8]]) -> (Vec<Vec<Vec<u8>>>, Vec<Vec<u8>>) {
        let mut rx: Vec<VecFrame> = frames.iter().map(|b| VecFrame::new(b)).collect();
        self.p
            .process_burst(self.now, port, &mut rx, &mut self.out, &mut self.alloc);
        assert!(rx.is_empty(), "the pipeline takes every frame");
        self.check_accounting();
        self.take()
    }

    pub fn rx(&mut self, port: u16, frame: &[u8]) -> (Vec<Vec<Vec<u8>>>, Vec<Vec<u8>>) {
        self.rx_many(port, &[frame])
    }

    /// Feeds one frame as a NIC that judged its IPv4 header checksum `csum`
    /// hands it over.
    pub fn rx_verdict(
        &mut self,
        port: u16,
        frame: &[u8],
        csum: RxChecksum,
    ) -> (Vec<Vec<Vec<u8>>>, Vec<Vec<u8>>) {
        let mut rx = vec![VecFrame::new(frame).with_rx_ipv4_checksum(csum)];
        self.p
            .process_burst(self.now, port, &mut rx, &mut self.out, &mut self.alloc);
        self.check_accounting();
        self.take()
    }

    /// Advances the clock by `ms` and polls.
    pub fn poll_after(&mut self, ms: u64) -> (Vec<Vec<Vec<u8>>>, Vec<Vec<u8>>) {
        self.now = Time(self.now.as_nanos() + ms * 1_000_000);
        self.p.poll(self.now, &mut self.out, &mut self.alloc);
        self.take()
    }

    pub fn take(&mut self) -> (Vec<Vec<Vec<u8>>>, Vec<Vec<u8>>) {
        let tx = self
            .out
            .tx
            .iter_mut()
            .map(|q| q.drain(..).map(VecFrame::into_bytes).collect())
            .collect();
        let host = self
            .out
            .host
            .iter_mut()
            .flat_map(|q| q.drain(..))
            .map(VecFrame::into_bytes)
            .collect();
        (tx, host)
    }

    pub fn counters(&self) -> &Counters {
        self.p.counters()
    }

    pub fn check_accounting(&self) {
        let c = self.p.counters();
        assert_eq!(
            c.accounted(),
            c.rx_frames,
            "every frame is accounted once: {c:?}"
        );
    }

    pub fn events(&mut self) -> Vec<Event> {
        let mut v = Vec::new();
        self.p.drain_events(&mut v);
        v
    }

    /// Installs the MACs of the clients, routers and servers (as the control
    /// thread does with what another worker learned).
    pub fn learn_neighbors(&mut self) {
        for (port, addr, mac) in [
            (0, a4(CLIENT4), C_MAC),
            (0, a4(ROUTER4), R_MAC),
            (1, a4(SERVER4), S_MAC),
            (1, a4(SERVER4B), S2_MAC),
            (0, a6(CLIENT6), C_MAC),
            (0, a6(ROUTER6), R_MAC),
            (1, a6(SERVER6), S_MAC),
        ] {
            self.p.apply(ControlMsg::Neighbor { port, addr, mac });
        }
    }
}

/// Asserts `got` equals `want`, printing both in hex on failure.
/// Feeds one frame received on `port` (of a two-port pipeline) at 1 s;
/// returns what the pipeline put out.
pub fn run(p: &mut Pipeline<VecFrame>, port: u16, f: &[u8]) -> Output<VecFrame> {
    let mut out = Output::new(2);
    let mut rx = vec![VecFrame::new(f)];
    p.process_burst(
        Time::from_secs(1),
        port,
        &mut rx,
        &mut out,
        &mut VecAlloc::default(),
    );
    out
}

pub fn assert_frame(got: &[u8], want: &[u8]) {
    if got != want {
        panic!("frames differ\n got: {}\nwant: {}", hex(got), hex(want));
    }
}

pub fn hex(b: &[u8]) -> String {
    b.iter()
        .map(|x| format!("{x:02x}"))
        .collect::<Vec<_>>()
        .join("")
}

/// The only frame sent, on `port`.
pub fn only(tx: &[Vec<Vec<u8>>], port: usize) -> Vec<u8> {
    for (i, q) in tx.iter().enumerate() {
        if i == port {
            assert_eq!(q.len(), 1, "one frame on port {port}: {tx:?}");
        } else {
            assert!(q.is_empty(), "nothing on port {i}");
        }
    }
    tx[port][0].clone()
}

pub fn nothing(tx: &[Vec<Vec<u8>>]) {
    assert!(tx.iter().all(|q| q.is_empty()), "nothing sent: {tx:?}");
}

/// What to build with [`packet`].
#[derive(Debug, Clone, Copy)]
pub enum L4 {
    /// TCP with these flags.
    Tcp(u8),
    /// UDP.
    Udp,
}

pub const SYN: L4 = L4::Tcp(0x02);
pub const ACK: L4 = L4::Tcp(0x10);
pub const RST: L4 = L4::Tcp(0x04);
pub const FIN_ACK: L4 = L4::Tcp(0x11);

/// An Ethernet frame `src:sport -> dst:dport` from `smac` to `dmac`.
#[allow(clippy::too_many_arguments)]
pub fn packet_from(
    smac: EthernetAddress,
    dmac: EthernetAddress,
    src: IpAddr,
    sport: u16,
    dst: IpAddr,
    dport: u16,
    l4: L4,
    payload: &[u8],
) -> Vec<u8> {
    use tack_dataplane::wire::{IpProtocol, UdpRepr};
    match l4 {
        L4::Tcp(flags) => tcp_from(
            smac,
            dmac,
            (src, sport),
            (dst, dport),
            (1, 0, flags),
            None,
            payload,
        ),
        L4::Udp => frame_with(
            smac,
            dmac,
            src,
            dst,
            IpProtocol::UDP,
            8 + payload.len(),
            |seg| {
                UdpRepr {
                    src_port: sport,
                    dst_port: dport,
                    payload,
                }
                .emit(seg, &src, &dst)
                .unwrap();
            },
        ),
    }
}

/// A TCP segment `src` → `dst` (address, port) with (sequence number,
/// acknowledgement number, flags), an MSS option if given, and `payload`.
pub fn tcp_from(
    smac: EthernetAddress,
    dmac: EthernetAddress,
    (src, sport): (IpAddr, u16),
    (dst, dport): (IpAddr, u16),
    (seq, ack, flags): (u32, u32, u8),
    mss: Option<u16>,
    payload: &[u8],
) -> Vec<u8> {
    use tack_dataplane::wire::{IpProtocol, TcpFlags, TcpRepr};
    let tcp = TcpRepr {
        src_port: sport,
        dst_port: dport,
        seq_number: seq,
        ack_number: ack,
        flags: TcpFlags(flags),
        window_len: 1000,
        urgent_at: 0,
        mss,
        window_scale: None,
        sack_permitted: false,
        timestamps: None,
        payload,
    };
    let len = tcp.header_len() + payload.len();
    frame_with(smac, dmac, src, dst, IpProtocol::TCP, len, |seg| {
        tcp.emit(seg, &src, &dst).unwrap();
    })
}

/// An Ethernet frame with an IP header `src` → `dst` for an L4 segment of
/// `seg_len` bytes of protocol `proto`, which `write` fills.
fn frame_with(
    smac: EthernetAddress,
    dmac: EthernetAddress,
    src: IpAddr,
    dst: IpAddr,
    proto: tack_dataplane::wire::IpProtocol,
    seg_len: usize,
    write: impl FnOnce(&mut [u8]),
) -> Vec<u8> {
    use tack_dataplane::wire::{EtherType, EthernetRepr, Ipv4Repr, Ipv6Repr};
    let v4 = src.is_ipv4();
    let ip_len = if v4 { 20 } else { 40 };
    let mut b = vec![0u8; 14 + ip_len + seg_len];
    EthernetRepr {
        src_addr: smac,
        dst_addr: dmac,
        vlan: None,
        ethertype: if v4 { EtherType::IPV4 } else { EtherType::IPV6 },
    }
    .emit(&mut b)
    .unwrap();
    match (src, dst) {
        (IpAddr::V4(s), IpAddr::V4(d)) => {
            Ipv4Repr {
                src_addr: s,
                dst_addr: d,
                protocol: proto,
                payload_len: seg_len,
                ttl: 64,
                tos: 0,
                ident: 1,
                dont_frag: true,
            }
            .emit(&mut b[14..])
            .unwrap();
        }
        (IpAddr::V6(s), IpAddr::V6(d)) => {
            Ipv6Repr {
                src_addr: s,
                dst_addr: d,
                next_header: proto,
                payload_len: seg_len,
                hop_limit: 64,
                traffic_class: 0,
                flow_label: 0,
            }
            .emit(&mut b[14..])
            .unwrap();
        }
        _ => panic!("mixed families"),
    }
    write(&mut b[14 + ip_len..]);
    b
}

/// A client packet on port 0.
pub fn client_pkt(src: IpAddr, sport: u16, dst: IpAddr, dport: u16, l4: L4) -> Vec<u8> {
    packet_from(C_MAC, L0_MAC, src, sport, dst, dport, l4, b"")
}

/// A server packet on port 1.
pub fn server_pkt(src: IpAddr, sport: u16, dst: IpAddr, dport: u16, l4: L4) -> Vec<u8> {
    packet_from(S_MAC, L1_MAC, src, sport, dst, dport, l4, b"")
}

/// (source, source port, destination, destination port) of a frame.
pub fn tuple(frame: &[u8]) -> (IpAddr, u16, IpAddr, u16) {
    let c = tack_dataplane::wire::classify(frame).unwrap();
    (c.src_addr, c.src_port, c.dst_addr, c.dst_port)
}

/// The destination address of the one frame forwarded on port 1 (ARP
/// probes sent along are ignored).
pub fn forwarded_to(tx: &[Vec<Vec<u8>>]) -> IpAddr {
    let ip: Vec<Vec<u8>> = tx[1]
        .iter()
        .filter(|f| f.get(12..14) != Some(&[0x08, 0x06][..]))
        .cloned()
        .collect();
    assert!(tx[0].is_empty(), "nothing on port 0");
    assert_eq!(ip.len(), 1, "one frame forwarded on port 1: {tx:?}");
    tuple(&ip[0]).2
}
