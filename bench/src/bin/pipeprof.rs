//! Runs one pipeline scenario for a fixed number of bursts, for profilers
//! (`valgrind --tool=callgrind`, `perf record`) and quick A/B timings:
//! instruction counts from callgrind are repeatable on a shared machine
//! where times are not.
//!
//! ```sh
//! cargo build --profile bench -p tack-bench --bin pipeprof
//! TACK_BENCH_HUGEPAGES=0 valgrind --tool=callgrind --collect-atstart=no \
//!     --toggle-collect='*Forwarder>::burst' $CARGO_TARGET_DIR/release/pipeprof established 1000 2000
//! # two builds compared, alternating runs (times vary 2x between runs here):
//! bench/ab.sh 8 established 1000000 20000 /tmp/pipeprof.old /tmp/pipeprof.new
//! ```
//!
//! Usage: `pipeprof SCENARIO [FLOWS] [BURSTS]` (`TACK_BENCH_FLOW_EVENTS=1`:
//! the new-flow scenarios report every connection as a flow event, as a
//! cluster node does for its sync). Scenarios: `established`
//! (NAT, `FLOWS` preloaded connections, client packets), `established-reply`
//! (the same connections, server packets), `new-nat`, `new-fnat`,
//! `new-dsr-sticky` (SYNs of new flows into a table of FLOWS entries, 2^21
//! if not given; flushed, untimed, when a quarter full),
//! `established6` (IPv6 NAT, `FLOWS` preloaded connections, client packets),
//! `redirect-syn` and `redirect-302` (a redirect service: SYNs answered with
//! SYN cookies, requests carrying a valid cookie answered with a 302, from
//! `FLOWS` clients),
//! `synproxy-established` (NAT with `syn_proxy`: `FLOWS` connections opened
//! through the SYN proxy's handshake, untimed, then client packets, their
//! acknowledgements shifted: compare with `established`),
//! `cluster-forward` (node 1 of a cluster sends established packets of
//! `FLOWS` flows to their primary, node 2, in GUE), `cluster-receive` (node 1
//! receives them from node 2 in GUE and forwards them on its `FLOWS`
//! connections: compare both with `established`),
//! `macswap` and `hashmap` (the baselines of `tack_bench`, `FLOWS` flows),
//! `table` (the connection table alone: burst lookup and state update),
//! `steer` and `steer-reply` (the workers' software steering alone:
//! `owner_worker` of each client packet, or of each server reply, of a NAT
//! service, as a worker of two asks it before processing a burst).
//! Prints the thread CPU time per packet over the timed bursts (16 bursts
//! are built, untimed, then processed and timed together). Huge pages are
//! requested unless `TACK_BENCH_HUGEPAGES=0`; new-flow tables are warmed up
//! (filled a quarter and flushed, untimed) first, and with
//! `TACK_BENCH_MLOCK=1` locked (populated) once the pipeline is built.

#![forbid(unsafe_code)]

use std::net::{IpAddr, Ipv6Addr};
use std::sync::Arc;
use std::time::Duration;

use tack_bench::{
    BURST, BenchFrame, Forwarder, HashLookup, MacSwap, NOW, Rng, SERVERS, VIP, client,
    install_flows, pipeline, pipeline_with, segment, server, services, thread_cpu,
};
use tack_dataplane::Frame;
use tack_dataplane::cluster::NodeId;
use tack_dataplane::conn::{ConnTable4, ConnTableConfig, Key4, NewConn, TcpFlags};
use tack_dataplane::ids::{ServerIdx, ServiceIdx};
use tack_dataplane::model::{
    Config, ForwardMode, Protocol, RealServer, Redirect, SchedulerKind, Service,
};
use tack_dataplane::pipeline::{
    ClusterConfig, ConnSpec, ControlMsg, Output, Pipeline, PipelineConfig, PortSpec, Route,
    WorkerSpec,
};
use tack_dataplane::redirect::ServerUrls;
use tack_dataplane::syncookie::{CookieFlow, SynCookies};
use tack_dataplane::wire::{
    EtherType, EthernetAddress, EthernetRepr, IpProtocol, Ipv4Repr, Ipv6Repr, TcpRepr,
};

/// The cluster addresses of `cluster-forward` and `cluster-receive` (on port 0).
const NODE1: IpAddr = IpAddr::V4(std::net::Ipv4Addr::new(198, 51, 100, 1));
const NODE2: IpAddr = IpAddr::V4(std::net::Ipv4Addr::new(198, 51, 100, 2));

/// A frame from node 2 to node 1 carrying `inner` (an IPv4 packet) in GUE.
fn gue_frame(out: &mut Vec<u8>, inner: &[u8]) {
    use tack_dataplane::wire::gue::{self, GueRepr, Hop};
    let ip = 20;
    out.clear();
    out.resize(14 + ip + gue::HEADER_LEN + inner.len(), 0);
    EthernetRepr {
        src_addr: EthernetAddress([2, 0, 0, 0, 0, 9]),
        dst_addr: EthernetAddress([2, 0, 0, 0, 0, 2]),
        vlan: None,
        ethertype: EtherType::IPV4,
    }
    .emit(out)
    .expect("room");
    let (IpAddr::V4(src), IpAddr::V4(dst)) = (NODE2, NODE1) else {
        unreachable!()
    };
    Ipv4Repr {
        src_addr: src,
        dst_addr: dst,
        protocol: IpProtocol::UDP,
        payload_len: gue::HEADER_LEN + inner.len(),
        ttl: 64,
        tos: 0,
        ident: 1,
        dont_frag: true,
    }
    .emit(&mut out[14..])
    .expect("room");
    GueRepr {
        src_port: 0xc001,
        dst_port: 6080,
        inner_v6: false,
        hop: Hop::Primary,
    }
    .emit(&mut out[14 + ip..], inner.len())
    .expect("room");
    out[14 + ip + gue::HEADER_LEN..].copy_from_slice(inner);
}

/// Bursts built and then timed together.
const GROUP: usize = 16;

/// Runs `bursts` bursts through `fwd`, `fill` loading each frame (untimed).
/// Returns the timed CPU time; notes the process's huge pages at the end
/// (while the tables are still allocated) in [`HUGE_MIB`].
fn run<W: Forwarder + ?Sized>(
    fwd: &mut W,
    bursts: u64,
    mut before_group: impl FnMut(&mut W),
    mut fill: impl FnMut(&mut BenchFrame),
) -> Duration {
    let mut out: Output<BenchFrame> = Output::new(2);
    let mut pool: Vec<BenchFrame> = (0..GROUP * BURST).map(|_| BenchFrame::new()).collect();
    let mut group: Vec<Vec<BenchFrame>> = (0..GROUP).map(|_| Vec::with_capacity(BURST)).collect();
    let mut total = Duration::ZERO;
    let mut left = bursts;
    while left > 0 {
        let n = (left as usize).min(GROUP);
        left -= n as u64;
        before_group(fwd);
        pool.resize_with(n * BURST, BenchFrame::new);
        for b in group.iter_mut().take(n) {
            let at = pool.len() - BURST;
            b.extend(pool.drain(at..));
            b.iter_mut().for_each(&mut fill);
        }
        let t = thread_cpu();
        for b in group.iter_mut().take(n) {
            fwd.burst(b, &mut out);
        }
        total += thread_cpu() - t;
        for q in &mut out.tx {
            pool.append(q);
        }
        for q in &mut out.host {
            pool.append(q);
        }
        for b in &mut group {
            pool.append(b);
        }
    }
    HUGE_MIB.store(
        tack_bench::anon_huge_mib().unwrap_or(0),
        std::sync::atomic::Ordering::Relaxed,
    );
    total
}

/// The IPv6 VIP of `established6`.
const VIP6: Ipv6Addr = Ipv6Addr::new(0x2001, 0xdb8, 2, 0, 0, 0, 0, 0x10);

/// Flow `i` of `established6`: its client address and port.
fn client6(i: u64) -> (Ipv6Addr, u16) {
    (
        Ipv6Addr::new(0x2001, 0xdb8, 0x1000, 0, 0, 0, 0, (i / 50_000) as u16),
        10_000 + (i % 50_000) as u16,
    )
}

/// Server `i` of `established6`.
fn server6(i: usize) -> IpAddr {
    IpAddr::V6(Ipv6Addr::new(0xfd00, 1, 0, 0, 0, 0, 0, 2 + i as u16))
}

/// `established6`'s pipeline: the IPv4 benchmark's topology in IPv6 (clients
/// behind a gateway on port 0, servers on-link on port 1), a NAT service on
/// VIP6:80 over [`SERVERS`] servers, and `flows` established connections.
fn pipeline6(flows: u64) -> Pipeline<BenchFrame> {
    let gw = IpAddr::V6(Ipv6Addr::new(0x2001, 0xdb8, 1, 0, 0, 0, 0, 0xfe));
    let mut s = Service::new(IpAddr::V6(VIP6), Protocol::Tcp, Some(80));
    s.scheduler = SchedulerKind::WeightedRoundRobin;
    s.servers = (0..SERVERS).map(|i| RealServer::new(server6(i))).collect();
    let cfg = PipelineConfig {
        ports: vec![
            PortSpec {
                mac: EthernetAddress([2, 0, 0, 0, 0, 2]),
                addresses: vec![(
                    IpAddr::V6(Ipv6Addr::new(0x2001, 0xdb8, 1, 0, 0, 0, 0, 1)),
                    64,
                )],
                mtu: 1500,
            },
            PortSpec {
                mac: EthernetAddress([2, 0, 0, 0, 1, 2]),
                addresses: vec![(IpAddr::V6(Ipv6Addr::new(0xfd00, 1, 0, 0, 0, 0, 0, 1)), 64)],
                mtu: 1500,
            },
        ],
        services: Arc::new(Config::new(vec![s]).expect("valid service")),
        routes: vec![Route {
            dst: IpAddr::V6(Ipv6Addr::UNSPECIFIED),
            prefix_len: 0,
            port: 0,
            gateway: Some(gw),
        }],
        conn6: ConnTableConfig {
            capacity: (2 * flows as usize).max(64),
            ..ConnTableConfig::default()
        },
        ..PipelineConfig::default()
    };
    let mut p = Pipeline::new(Arc::new(cfg), WorkerSpec::software(0, 1, 2)).expect("pipeline");
    for i in 0..SERVERS {
        let (port, addr, mac) = (1, server6(i), EthernetAddress([2, 0, 0, 0, 0, 3]));
        p.apply(ControlMsg::Neighbor { port, addr, mac });
    }
    let (port, addr, mac) = (0, gw, EthernetAddress([2, 0, 0, 0, 0, 1]));
    p.apply(ControlMsg::Neighbor { port, addr, mac });
    for i in 0..flows {
        let (client, client_port) = client6(i);
        let spec = ConnSpec {
            client: IpAddr::V6(client),
            client_port,
            vip: IpAddr::V6(VIP6),
            vip_port: 80,
            protocol: 6,
            server: ServerIdx((i % SERVERS as u64) as u16),
            local: None,
            seq_shift: None,
        };
        p.install_connection(NOW, &spec)
            .expect("room for every flow");
    }
    p
}

/// Writes into `buf` an Ethernet frame holding a TCP segment `src:sport` →
/// `dst:dport` over IPv6 with `flags` and a valid checksum.
fn segment6(buf: &mut Vec<u8>, src: Ipv6Addr, sport: u16, dst: Ipv6Addr, dport: u16, flags: u8) {
    let (src, dst) = ((IpAddr::V6(src), sport), (IpAddr::V6(dst), dport));
    tcp_frame(buf, src, dst, (1, 1, flags), None, &[]);
}

/// Writes into `buf` an Ethernet frame holding a TCP segment `src` → `dst`
/// (address, port) of either family with (sequence number, acknowledgement
/// number, flags), an MSS option if given, `payload` and valid checksums.
fn tcp_frame(
    buf: &mut Vec<u8>,
    (src, sport): (IpAddr, u16),
    (dst, dport): (IpAddr, u16),
    (seq, ack, flags): (u32, u32, u8),
    mss: Option<u16>,
    payload: &[u8],
) {
    let tcp = TcpRepr {
        src_port: sport,
        dst_port: dport,
        seq_number: seq,
        ack_number: ack,
        flags: tack_dataplane::wire::TcpFlags(flags),
        window_len: 64_000,
        urgent_at: 0,
        mss,
        window_scale: None,
        sack_permitted: false,
        timestamps: None,
        payload,
    };
    let ip_len = if src.is_ipv4() { 20 } else { 40 };
    let tcp_len = tcp.header_len() + payload.len();
    buf.clear();
    buf.resize(14 + ip_len + tcp_len, 0);
    EthernetRepr {
        src_addr: EthernetAddress([2, 0, 0, 0, 0, 1]),
        dst_addr: EthernetAddress([2, 0, 0, 0, 0, 2]),
        vlan: None,
        ethertype: if src.is_ipv4() {
            EtherType::IPV4
        } else {
            EtherType::IPV6
        },
    }
    .emit(buf)
    .expect("room");
    match (src, dst) {
        (IpAddr::V4(s), IpAddr::V4(d)) => Ipv4Repr {
            src_addr: s,
            dst_addr: d,
            protocol: IpProtocol::TCP,
            payload_len: tcp_len,
            ttl: 64,
            tos: 0,
            ident: 1,
            dont_frag: true,
        }
        .emit(&mut buf[14..]),
        (IpAddr::V6(s), IpAddr::V6(d)) => Ipv6Repr {
            src_addr: s,
            dst_addr: d,
            next_header: IpProtocol::TCP,
            payload_len: tcp_len,
            hop_limit: 64,
            traffic_class: 0,
            flow_label: 0,
        }
        .emit(&mut buf[14..]),
        _ => panic!("one family"),
    }
    .expect("room");
    tcp.emit(&mut buf[14 + ip_len..], &src, &dst).expect("room");
}

/// The `redirect-*` scenarios' pipeline: the benchmark's service on VIP:80
/// as a redirect service, each server with its URL.
fn redirect_pipeline() -> Pipeline<BenchFrame> {
    let mut s = services(ForwardMode::Nat, false).remove(0);
    s.redirect = Some(Redirect::default());
    for srv in &mut s.servers {
        let http = format!("http://{}", srv.addr);
        srv.urls = Some(ServerUrls {
            https: http.replacen("http://", "https://", 1),
            http,
        });
    }
    pipeline(vec![s], 64)
}

/// The `synproxy-established` scenario's pipeline: the benchmark's NAT
/// service with `syn_proxy`, `flows` connections opened through the proxy's
/// handshake (the client's ACK with its cookie, the chosen server's SYN-ACK).
fn synproxy_pipeline(flows: u64) -> Pipeline<BenchFrame> {
    let mut svcs = services(ForwardMode::Nat, false);
    svcs[0].syn_proxy = true;
    let mut p = pipeline(svcs, (2 * flows as usize).max(64));
    // The pipeline's cookie key (the default configuration's).
    let mut cookies = SynCookies::new([0; 16]);
    let mut out: Output<BenchFrame> = Output::new(2);
    let mut frame = Vec::with_capacity(80);
    let mut rx = Vec::with_capacity(1);
    let mut feed =
        |p: &mut Pipeline<BenchFrame>, port: u16, bytes: &[u8], out: &mut Output<BenchFrame>| {
            let mut f = BenchFrame::new();
            f.load(bytes);
            rx.push(f);
            p.process_burst(NOW, port, &mut rx, out, &mut tack_bench::Pool);
        };
    for i in 0..flows {
        let (addr, port) = client(i);
        let (src, dst) = ((IpAddr::V4(addr), port), (IpAddr::V4(VIP), 80));
        let isn = i as u32;
        let (seq, ack) = cookie_ack(&mut cookies, (addr, port), isn);
        tcp_frame(&mut frame, src, dst, (seq, ack, 0x10), None, &[]);
        feed(&mut p, 0, &frame, &mut out);
        let syn = out.tx[1].pop().expect("the server's SYN");
        let b = syn.bytes();
        let srv = IpAddr::V4(std::net::Ipv4Addr::new(b[30], b[31], b[32], b[33]));
        out.tx.iter_mut().for_each(|q| q.clear());
        tcp_frame(
            &mut frame,
            (srv, 80),
            src,
            (0x1000_0000, isn + 1, 0x12),
            Some(1460),
            &[],
        );
        frame[..6].copy_from_slice(&[2, 0, 0, 0, 1, 2]);
        feed(&mut p, 1, &frame, &mut out);
        out.tx.iter_mut().for_each(|q| q.clear());
    }
    let c = p.counters();
    assert_eq!(
        (c.synproxy_opened, c.synproxy_joined),
        (flows, flows),
        "{c:?}"
    );
    p
}

/// (sequence, acknowledgement) of the client `client`'s segments after a
/// SYN with `isn` (MSS 1460) to VIP:80 was answered with its SYN cookie.
fn cookie_ack(cookies: &mut SynCookies, client: (std::net::Ipv4Addr, u16), isn: u32) -> (u32, u32) {
    let flow = CookieFlow {
        client: IpAddr::V4(client.0),
        server: IpAddr::V4(VIP),
        client_port: client.1,
        server_port: 80,
    };
    let k = cookies.make(NOW, &flow, isn, Some(1460));
    (isn.wrapping_add(1), k.isn.wrapping_add(1))
}

/// The request of the `redirect-302` scenario.
const REQUEST: &[u8] = b"GET /cart/add?item=7 HTTP/1.1\r\nHost: shop.example.com\r\n\r\n";

/// Transparent huge pages in use at the end of the run, MiB.
static HUGE_MIB: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);

fn v4(a: IpAddr) -> std::net::Ipv4Addr {
    match a {
        IpAddr::V4(a) => a,
        IpAddr::V6(_) => unreachable!("IPv4 servers"),
    }
}

/// The connection table alone, filled as the pipeline fills it (forward and
/// reply entry per flow): burst lookup of the frames' tuples, then the state
/// update of each hit.
struct TableOnly {
    t: ConnTable4,
    keys: Vec<Key4>,
    hits: Vec<Option<tack_dataplane::conn::Handle>>,
    found: u64,
}

impl Forwarder for TableOnly {
    fn burst(&mut self, rx: &mut Vec<BenchFrame>, out: &mut Output<BenchFrame>) {
        self.keys.clear();
        for f in rx.iter() {
            let b = f.bytes();
            let a = |o: usize| std::net::Ipv4Addr::new(b[o], b[o + 1], b[o + 2], b[o + 3]);
            let p = |o: usize| u16::from_be_bytes([b[o], b[o + 1]]);
            self.keys.push(Key4::new(a(26), a(30), p(34), p(36), b[23]));
        }
        self.hits.resize(self.keys.len(), None);
        if self.t.lookup_burst(&self.keys, &mut self.hits).is_ok() {
            for h in self.hits.iter().flatten() {
                self.found += u64::from(self.t.on_packet(h, TcpFlags::ACK, NOW).is_some());
            }
        }
        out.tx[1].append(rx);
    }
}

/// The software steering step of a worker (`owner_worker` per frame), alone.
struct SteerOnly {
    p: Pipeline<BenchFrame>,
    /// Frames each worker owns.
    owners: [u64; 2],
}

impl Forwarder for SteerOnly {
    #[inline(never)]
    fn burst(&mut self, rx: &mut Vec<BenchFrame>, out: &mut Output<BenchFrame>) {
        for f in rx.iter() {
            if let Some(w) = self.p.owner_worker(f, 0) {
                self.owners[usize::from(w) & 1] += 1;
            }
        }
        out.tx[1].append(rx);
    }
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let scenario = args.get(1).map_or("established", String::as_str);
    let flows: u64 = args
        .get(2)
        .and_then(|s| s.parse().ok())
        .unwrap_or(1000)
        .max(1);
    let bursts: u64 = args.get(3).and_then(|s| s.parse().ok()).unwrap_or(10_000);
    let hp = tack_bench::huge_pages();
    let mut locked = false;
    let mut rng = Rng(0x5eed_0000 + flows);
    let mut buf = [0u8; 60];
    let mut client_pkt = |f: &mut BenchFrame| {
        let (addr, port) = client(rng.next() % flows);
        segment(&mut buf, addr, port, 0x10);
        f.load(&buf);
    };
    let total = match scenario {
        "established" | "established-reply" | "macswap" | "hashmap" | "table" | "steer"
        | "steer-reply" => {
            let mut fwd: Box<dyn Forwarder> = match scenario {
                "steer" | "steer-reply" => {
                    let cfg = pipeline(services(ForwardMode::Nat, false), 64)
                        .config()
                        .clone();
                    let p = Pipeline::new(cfg, WorkerSpec::software(0, 2, 2)).expect("pipeline");
                    Box::new(SteerOnly { p, owners: [0; 2] })
                }
                "established" | "established-reply" => {
                    let mut p = pipeline(
                        services(ForwardMode::Nat, false),
                        (2 * flows as usize).max(64),
                    );
                    install_flows(&mut p, flows);
                    Box::new(p)
                }
                "macswap" => Box::new(MacSwap::default()),
                "hashmap" => Box::new(HashLookup::new(flows)),
                _ => {
                    let mut t = ConnTable4::new(
                        ConnTableConfig {
                            capacity: (2 * flows as usize).max(64),
                            ..ConnTableConfig::default()
                        },
                        NOW,
                    )
                    .expect("table");
                    for i in 0..flows {
                        let (addr, port) = client(i);
                        let srv = v4(server((i % SERVERS as u64) as usize));
                        let nc = NewConn {
                            service: ServiceIdx(0),
                            server: ServerIdx((i % SERVERS as u64) as u16),
                            local: None,
                            user_flags: 0,
                        };
                        t.insert(
                            Key4::new(addr, VIP, port, 80, 6),
                            Some(Key4::new(srv, addr, 80, port, 6)),
                            nc,
                            TcpFlags::ACK,
                            NOW,
                        )
                        .expect("room");
                    }
                    Box::new(TableOnly {
                        t,
                        keys: Vec::with_capacity(BURST),
                        hits: Vec::with_capacity(BURST),
                        found: 0,
                    })
                }
            };
            if scenario == "established-reply" || scenario == "steer-reply" {
                let mut rng = Rng(0x5eed_0000 + flows);
                run(
                    fwd.as_mut(),
                    bursts,
                    |_| {},
                    |f| {
                        let i = rng.next() % flows;
                        let (addr, port) = client(i);
                        let srv = v4(server((i % SERVERS as u64) as usize));
                        tack_bench::segment_from(&mut buf, srv, 80, addr, port, 0x10);
                        f.load(&buf);
                    },
                )
            } else {
                run(fwd.as_mut(), bursts, |_| {}, &mut client_pkt)
            }
        }
        "redirect-syn" | "redirect-302" => {
            let mut p = redirect_pipeline();
            // The pipeline's cookie key (the default configuration's).
            let mut cookies = SynCookies::new([0; 16]);
            let mut rng = Rng(0x5eed_0000 + flows);
            let mut frame = Vec::with_capacity(200);
            let syn = scenario == "redirect-syn";
            let d = run(
                &mut p,
                bursts,
                |_| {},
                |f| {
                    let (addr, port) = client(rng.next() % flows);
                    let (src, dst) = ((IpAddr::V4(addr), port), (IpAddr::V4(VIP), 80));
                    let isn = rng.next() as u32;
                    if syn {
                        tcp_frame(&mut frame, src, dst, (isn, 0, 0x02), Some(1460), &[]);
                    } else {
                        let (seq, ack) = cookie_ack(&mut cookies, (addr, port), isn);
                        tcp_frame(&mut frame, src, dst, (seq, ack, 0x18), None, REQUEST);
                    }
                    f.load(&frame);
                },
            );
            let c = p.counters();
            assert_eq!(c.tx_local, c.rx_frames, "every segment answered: {c:?}");
            assert_eq!(c.redirect_found, if syn { 0 } else { c.rx_frames }, "{c:?}");
            d
        }
        "synproxy-established" => {
            let mut p = synproxy_pipeline(flows);
            let d = run(&mut p, bursts, |_| {}, &mut client_pkt);
            let c = p.counters();
            // The handshakes' server SYN-ACKs were answered; the rest forwarded.
            assert_eq!(c.tx_local, flows, "{c:?}");
            assert_eq!(
                c.tx_forward,
                c.rx_frames - flows,
                "every packet forwarded: {c:?}"
            );
            d
        }
        "established6" => {
            let mut p = pipeline6(flows);
            let mut rng = Rng(0x5eed_0000 + flows);
            let mut frame = Vec::with_capacity(80);
            let d = run(
                &mut p,
                bursts,
                |_| {},
                |f| {
                    let (addr, port) = client6(rng.next() % flows);
                    segment6(&mut frame, addr, port, VIP6, 80, 0x10);
                    f.load(&frame);
                },
            );
            let c = p.counters();
            assert_eq!(c.tx_forward, c.rx_frames, "every packet forwarded: {c:?}");
            d
        }
        "cluster-forward" | "cluster-receive" => {
            let forward = scenario == "cluster-forward";
            let mut p = pipeline_with(
                services(ForwardMode::Nat, false),
                (2 * flows as usize).max(64),
                |cfg| {
                    cfg.cluster = Some(ClusterConfig {
                        node: NodeId(1),
                        nodes: vec![(NodeId(1), NODE1), (NodeId(2), NODE2)],
                        key: 7,
                        port: 6080,
                        sync_port: 6081,
                        entry: Default::default(),
                    })
                },
            );
            p.apply(ControlMsg::Neighbor {
                port: 0,
                addr: NODE2,
                mac: EthernetAddress([2, 0, 0, 0, 0, 9]),
            });
            if forward {
                // Node 1 takes no flows (draining): every one is node 2's.
                p.apply(ControlMsg::ClusterLive {
                    active: vec![NodeId(2)],
                    draining: vec![],
                });
            } else {
                install_flows(&mut p, flows);
            }
            let mut rng = Rng(0x5eed_0000 + flows);
            let mut frame = Vec::with_capacity(128);
            let d = run(
                &mut p,
                bursts,
                |_| {},
                |f| {
                    let (addr, port) = client(rng.next() % flows);
                    segment(&mut buf, addr, port, 0x10);
                    if forward {
                        f.load(&buf);
                    } else {
                        gue_frame(&mut frame, &buf[14..54]);
                        f.load(&frame);
                    }
                },
            );
            let c = p.counters();
            if forward {
                assert_eq!(c.cluster_to_primary, c.rx_frames, "{c:?}");
            } else {
                assert_eq!(c.cluster_received * 2, c.rx_frames, "{c:?}");
                assert_eq!(c.tx_forward, c.cluster_received, "{c:?}");
            }
            d
        }
        "new-nat" | "new-fnat" | "new-dsr-sticky" => {
            let (mode, sticky) = match scenario {
                "new-nat" => (ForwardMode::Nat, false),
                "new-fnat" => (ForwardMode::FullNat, false),
                _ => (ForwardMode::Dsr, true),
            };
            // FLOWS is the table capacity here (entries).
            let cap = if args.len() > 2 {
                flows as usize
            } else {
                1 << 21
            };
            // TACK_BENCH_FLOW_EVENTS=1: every connection opened and closed
            // is reported as a flow event, as in a cluster (its sync's cost
            // in the pipeline; the events are taken, untimed, per group).
            let events = std::env::var_os("TACK_BENCH_FLOW_EVENTS").is_some();
            let mut p: Pipeline<BenchFrame> =
                pipeline_with(services(mode, sticky), cap.max(64), |cfg| {
                    cfg.flow_events = events;
                });
            let mut drained = Vec::new();
            // Optionally populate the tables now, their huge-page advice given.
            locked = tack_bench::lock_memory();
            let mut next = 0u64;
            tack_bench::warm_new_flows(&mut p, &mut next, cap / 4);
            let d = run(
                &mut p,
                bursts,
                |p| {
                    // Untimed: the flow events, and keep the table below a
                    // quarter full.
                    p.drain_events(&mut drained);
                    drained.clear();
                    if p.connection_count() > cap / 4 {
                        p.apply(ControlMsg::FlushConnections);
                        p.apply(ControlMsg::FlushSticky { service: None });
                    }
                },
                |f| {
                    let (addr, port) = client(next);
                    next = (next + 1) % 50_000_000;
                    segment(&mut buf, addr, port, 0x02);
                    f.load(&buf);
                },
            );
            let c = p.counters();
            assert_eq!(c.tx_forward, c.rx_frames, "every SYN forwarded: {c:?}");
            d
        }
        other => {
            eprintln!("unknown scenario {other}");
            std::process::exit(2);
        }
    };
    let pkts = bursts * BURST as u64;
    println!(
        "{scenario} flows={flows} bursts={bursts} hugepages={hp} mlock={locked} anon_huge_mib={}: {:.1} ns/packet (thread CPU)",
        HUGE_MIB.load(std::sync::atomic::Ordering::Relaxed),
        total.as_nanos() as f64 / pkts as f64
    );
}
