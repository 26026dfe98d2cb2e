//! Pipeline micro-benchmarks (criterion): established-flow forwarding with
//! 1 K / 100 K / 1 M / 10 M connections in the table, new-flow setup, sticky
//! lookup, Maglev table build. Prints a summary table at the end.
//!
//! ```sh
//! cargo bench -p tack-bench --bench pipeline
//! # fewer table sizes (comma-separated flow counts):
//! TACK_BENCH_FLOWS=1000,1000000 cargo bench -p tack-bench --bench pipeline
//! ```
//!
//! Every measured unit is a burst of 32 frames through
//! `Pipeline::process_burst`; 16 bursts are built (not timed), then run and
//! timed together with the thread's CPU clock (the machine is shared: wall
//! time would count time spent waiting for a CPU); results are per packet. Established flows are NAT connections
//! (two table entries each) preloaded with `Pipeline::install_connection`;
//! each burst hits 32 flows chosen uniformly at random, so large tables
//! miss the CPU caches as real traffic does.

use std::hint::black_box;
use std::net::{IpAddr, Ipv4Addr};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use criterion::{Criterion, Throughput};
use tack_dataplane::conn::ConnTableConfig;
use tack_dataplane::model::{
    ClientKeyRule, Config, ForwardMode, LocalPool, Persistence, Protocol, RealServer,
    SchedulerKind, Service,
};
use tack_dataplane::pipeline::{
    ConnSpec, ControlMsg, Output, Pipeline, PipelineConfig, PortSpec, Route, WorkerSpec,
};
use tack_dataplane::sched::Backend;
use tack_dataplane::sched::maglev::Maglev;
use tack_dataplane::sticky::{StickyConfig, StickyTable};
use tack_dataplane::wire::EthernetAddress;
use tack_dataplane::{Frame, FrameAlloc, Time};

const BURST: usize = 32;
const VIP: Ipv4Addr = Ipv4Addr::new(203, 0, 113, 10);
const SERVERS: usize = 16;

/// A packet buffer with a fixed headroom, reused burst after burst.
struct BenchFrame {
    buf: Box<[u8; 2176]>,
    start: usize,
    len: usize,
}

impl BenchFrame {
    const HEADROOM: usize = 128;
    fn new() -> BenchFrame {
        BenchFrame {
            buf: Box::new([0; 2176]),
            start: Self::HEADROOM,
            len: 0,
        }
    }
    fn load(&mut self, bytes: &[u8]) {
        self.start = Self::HEADROOM;
        self.len = bytes.len();
        self.buf[self.start..self.start + self.len].copy_from_slice(bytes);
    }
}

impl Frame for BenchFrame {
    fn bytes(&self) -> &[u8] {
        &self.buf[self.start..self.start + self.len]
    }
    fn bytes_mut(&mut self) -> &mut [u8] {
        &mut self.buf[self.start..self.start + self.len]
    }
    fn prepend(&mut self, n: usize) -> bool {
        if n > self.start {
            return false;
        }
        self.start -= n;
        self.len += n;
        true
    }
    fn strip_front(&mut self, n: usize) -> bool {
        if n > self.len {
            return false;
        }
        self.start += n;
        self.len -= n;
        true
    }
    fn set_len(&mut self, len: usize) -> bool {
        if self.start + len > self.buf.len() {
            return false;
        }
        self.len = len;
        true
    }
}

struct Pool;

impl FrameAlloc for Pool {
    type Frame = BenchFrame;
    fn alloc(&mut self) -> Option<BenchFrame> {
        Some(BenchFrame::new())
    }
}

/// xorshift64*.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }
}

fn server(i: usize) -> IpAddr {
    IpAddr::V4(Ipv4Addr::new(10, 1, (i / 250) as u8, 2 + (i % 250) as u8))
}

/// Flow `i`: its client address and port.
fn client(i: u64) -> (Ipv4Addr, u16) {
    (
        Ipv4Addr::from(0x1000_0000u32 + (i / 50_000) as u32),
        10_000 + (i % 50_000) as u16,
    )
}

fn services(mode: ForwardMode, sticky: bool) -> Vec<Service> {
    let mut s = Service::new(IpAddr::V4(VIP), Protocol::Tcp, Some(80));
    s.mode = mode;
    s.scheduler = SchedulerKind::WeightedRoundRobin;
    s.servers = (0..SERVERS).map(|i| RealServer::new(server(i))).collect();
    if mode == ForwardMode::FullNat {
        s.local_pool = Some(LocalPool {
            addrs: (0..4)
                .map(|i| IpAddr::V4(Ipv4Addr::new(10, 1, 200, 1 + i)))
                .collect(),
            port_min: 1024,
            port_max: 65535,
        });
    }
    if sticky {
        s.persistence = Some(Persistence {
            key: ClientKeyRule::Prefix(24),
            timeout_minutes: 10,
        });
    }
    vec![s]
}

fn pipeline(services: Vec<Service>, capacity: usize) -> Pipeline<BenchFrame> {
    let cfg = PipelineConfig {
        ports: vec![
            PortSpec {
                mac: EthernetAddress([2, 0, 0, 0, 0, 2]),
                addresses: vec![(IpAddr::V4(Ipv4Addr::new(198, 51, 100, 1)), 24)],
                mtu: 1500,
            },
            PortSpec {
                mac: EthernetAddress([2, 0, 0, 0, 1, 2]),
                addresses: vec![(IpAddr::V4(Ipv4Addr::new(10, 1, 0, 1)), 16)],
                mtu: 1500,
            },
        ],
        services: Arc::new(Config::new(services).expect("valid services")),
        routes: vec![Route {
            dst: IpAddr::V4(Ipv4Addr::UNSPECIFIED),
            prefix_len: 0,
            port: 0,
            gateway: Some(IpAddr::V4(Ipv4Addr::new(198, 51, 100, 254))),
        }],
        conn4: ConnTableConfig {
            capacity,
            ..ConnTableConfig::default()
        },
        sticky: StickyConfig {
            capacity: 1 << 20,
            ..StickyConfig::default()
        },
        ..PipelineConfig::default()
    };
    let worker = WorkerSpec {
        index: 0,
        n_workers: 1,
        queue: 0,
        rx_queues: vec![1, 1],
        rss_key: vec![None, None],
    };
    let mut p = Pipeline::new(Arc::new(cfg), worker).expect("valid pipeline");
    for i in 0..SERVERS {
        p.apply(ControlMsg::Neighbor {
            port: 1,
            addr: server(i),
            mac: EthernetAddress([2, 0, 0, 0, 0, 3]),
        });
    }
    p
}

/// A TCP segment client → VIP:80 with a valid IPv4 header checksum.
fn segment(buf: &mut [u8; 60], src: Ipv4Addr, sport: u16, flags: u8) {
    buf.fill(0);
    buf[..6].copy_from_slice(&[2, 0, 0, 0, 0, 2]);
    buf[6..12].copy_from_slice(&[2, 0, 0, 0, 0, 1]);
    buf[12..14].copy_from_slice(&[0x08, 0x00]);
    let ip = &mut buf[14..34];
    ip[0] = 0x45;
    ip[2..4].copy_from_slice(&40u16.to_be_bytes());
    ip[6] = 0x40;
    ip[8] = 64;
    ip[9] = 6;
    ip[12..16].copy_from_slice(&src.octets());
    ip[16..20].copy_from_slice(&VIP.octets());
    let mut sum = 0u32;
    for w in ip.chunks(2) {
        sum += u32::from(u16::from_be_bytes([w[0], w[1]]));
    }
    while sum > 0xffff {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    ip[10..12].copy_from_slice(&(!(sum as u16)).to_be_bytes());
    let tcp = &mut buf[34..54];
    tcp[..2].copy_from_slice(&sport.to_be_bytes());
    tcp[2..4].copy_from_slice(&80u16.to_be_bytes());
    tcp[12] = 0x50;
    tcp[13] = flags;
    tcp[14..16].copy_from_slice(&1000u16.to_be_bytes());
}

/// Measured totals per benchmark, for the summary table.
static TOTALS: Mutex<Vec<(String, Duration, u64)>> = Mutex::new(Vec::new());

fn record(name: &str, d: Duration, packets: u64) {
    let mut t = TOTALS.lock().unwrap_or_else(|e| e.into_inner());
    match t.iter_mut().find(|(n, _, _)| n == name) {
        Some(e) => {
            e.1 += d;
            e.2 += packets;
        }
        None => t.push((name.to_string(), d, packets)),
    }
}

/// CPU time of the calling thread (`CLOCK_THREAD_CPUTIME_ID`). The machine
/// the benchmarks run on is shared: wall time would also count the time the
/// thread waits for a CPU.
fn thread_cpu() -> Duration {
    #[repr(C)]
    struct Timespec {
        tv_sec: i64,
        tv_nsec: i64,
    }
    unsafe extern "C" {
        fn clock_gettime(clock: i32, ts: *mut Timespec) -> i32;
    }
    const CLOCK_THREAD_CPUTIME_ID: i32 = 3;
    let mut ts = Timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: `ts` is a valid, writable timespec for the call's duration.
    let rc = unsafe { clock_gettime(CLOCK_THREAD_CPUTIME_ID, &mut ts) };
    assert_eq!(rc, 0, "clock_gettime(CLOCK_THREAD_CPUTIME_ID)");
    Duration::new(ts.tv_sec as u64, ts.tv_nsec as u32)
}

/// Bursts timed together (the CPU clock costs a system call).
const GROUP: usize = 16;

/// Runs `iters` bursts, `GROUP` at a time: `fill` loads every frame of the
/// group (not timed), then the group's `process_burst` calls are timed.
fn run_bursts(
    p: &mut Pipeline<BenchFrame>,
    pool: &mut Vec<BenchFrame>,
    iters: u64,
    mut fill: impl FnMut(&mut Pipeline<BenchFrame>, &mut [BenchFrame]),
) -> Duration {
    let mut out: Output<BenchFrame> = Output::new(2);
    let mut bursts: Vec<Vec<BenchFrame>> = (0..GROUP).map(|_| Vec::with_capacity(BURST)).collect();
    let mut total = Duration::ZERO;
    let now = Time::from_secs(10);
    let mut left = iters;
    while left > 0 {
        let n = (left as usize).min(GROUP);
        left -= n as u64;
        while pool.len() < n * BURST {
            pool.push(BenchFrame::new());
        }
        for b in bursts.iter_mut().take(n) {
            let at = pool.len() - BURST;
            b.extend(pool.drain(at..));
            fill(p, &mut b[..]);
        }
        let t = thread_cpu();
        for b in bursts.iter_mut().take(n) {
            p.process_burst(now, 0, b, &mut out, &mut Pool);
        }
        total += thread_cpu() - t;
        // Recycle every frame (forwarded, or dropped by a drop counter).
        for q in &mut out.tx {
            pool.append(q);
        }
        pool.append(&mut out.host);
    }
    black_box(p.counters().tx_forward);
    total
}

fn flow_counts() -> Vec<u64> {
    match std::env::var("TACK_BENCH_FLOWS") {
        Ok(v) => v.split(',').filter_map(|s| s.trim().parse().ok()).collect(),
        Err(_) => vec![1_000, 100_000, 1_000_000, 10_000_000],
    }
}

fn established(c: &mut Criterion) {
    let mut g = c.benchmark_group("established");
    g.throughput(Throughput::Elements(BURST as u64));
    g.sample_size(20);
    g.measurement_time(Duration::from_secs(5));
    for n in flow_counts() {
        let mut p = pipeline(services(ForwardMode::Nat, false), (2 * n as usize).max(64));
        let t = Instant::now();
        for i in 0..n {
            let (addr, port) = client(i);
            p.install_connection(
                Time::from_secs(10),
                &ConnSpec {
                    client: IpAddr::V4(addr),
                    client_port: port,
                    vip: IpAddr::V4(VIP),
                    vip_port: 80,
                    protocol: 6,
                    server: (i % SERVERS as u64) as u16,
                    local: None,
                },
            )
            .expect("room for every flow");
        }
        eprintln!(
            "established/{n}: {n} connections installed in {:.1} s",
            t.elapsed().as_secs_f64()
        );
        let mut frames: Vec<BenchFrame> = Vec::new();
        let mut rng = Rng(0x5eed_0000 + n);
        let mut buf = [0u8; 60];
        let name = format!("established NAT, {n} flows");
        g.bench_function(format!("{n}"), |b| {
            b.iter_custom(|iters| {
                let d = run_bursts(&mut p, &mut frames, iters, |_, fr| {
                    for f in fr {
                        let (addr, port) = client(rng.next() % n);
                        segment(&mut buf, addr, port, 0x10);
                        f.load(&buf);
                    }
                });
                record(&name, d, iters * BURST as u64);
                d
            });
        });
        let c = p.counters();
        assert_eq!(c.tx_forward, c.rx_frames, "every packet forwarded: {c:?}");
    }
    g.finish();
}

fn new_flows(c: &mut Criterion) {
    let mut g = c.benchmark_group("new_flow");
    g.throughput(Throughput::Elements(BURST as u64));
    g.sample_size(20);
    g.measurement_time(Duration::from_secs(5));
    for (label, mode, sticky, cap) in [
        ("NAT wrr", ForwardMode::Nat, false, 1 << 21),
        ("full NAT wrr", ForwardMode::FullNat, false, 1 << 21),
        ("DSR sticky", ForwardMode::Dsr, true, 1 << 21),
        // A table small enough for the caches: the pipeline's own cost.
        ("NAT wrr, 16K-entry table", ForwardMode::Nat, false, 1 << 14),
    ] {
        let mut p = pipeline(services(mode, sticky), cap);
        let mut frames: Vec<BenchFrame> = Vec::new();
        let mut next = 0u64;
        let mut buf = [0u8; 60];
        let name = format!("new flow, {label}");
        g.bench_function(label, |b| {
            b.iter_custom(|iters| {
                let d = run_bursts(&mut p, &mut frames, iters, |p, fr| {
                    // Untimed: keep the table below a quarter full.
                    if p.connection_count() > cap / 4 {
                        p.apply(ControlMsg::FlushConnections);
                        p.apply(ControlMsg::FlushSticky { service: None });
                    }
                    for f in fr {
                        let (addr, port) = client(next);
                        next = next.wrapping_add(1) % 50_000_000;
                        segment(&mut buf, addr, port, 0x02);
                        f.load(&buf);
                    }
                });
                record(&name, d, iters * BURST as u64);
                d
            });
        });
        let c = p.counters();
        assert_eq!(c.tx_forward, c.rx_frames, "every SYN forwarded: {c:?}");
    }
    g.finish();
}

fn sticky_lookup(c: &mut Criterion) {
    let mut g = c.benchmark_group("sticky");
    g.throughput(Throughput::Elements(1024));
    g.sample_size(20);
    let cfg = Config::new(services(ForwardMode::Dsr, true)).expect("valid");
    let mut t = StickyTable::new(
        StickyConfig {
            capacity: 1 << 17,
            outbox_capacity: 1 << 17,
            ..StickyConfig::default()
        },
        Time::ZERO,
    )
    .expect("table");
    let keys = 100_000u32;
    let addr = |i: u32| IpAddr::V4(Ipv4Addr::from(0x1000_0000 + (i << 8)));
    for i in 0..keys {
        t.resolve(&cfg, 0, addr(i), Time::ZERO);
    }
    t.drain_events();
    let mut rng = Rng(42);
    g.bench_function("resolve+release, 100K keys", |b| {
        b.iter_custom(|iters| {
            let start = thread_cpu();
            for _ in 0..iters {
                for _ in 0..1024 {
                    let a = addr((rng.next() % u64::from(keys)) as u32);
                    black_box(t.resolve(&cfg, 0, a, Time::ZERO));
                    t.release(&cfg, 0, a, Time::ZERO);
                }
            }
            let d = thread_cpu() - start;
            record("sticky resolve+release, 100K keys", d, iters * 1024);
            d
        });
    });
    g.finish();
}

fn maglev(c: &mut Criterion) {
    let mut g = c.benchmark_group("maglev_build");
    g.sample_size(10);
    for (n, size) in [(10usize, 65_537u32), (100, 65_537), (1000, 655_373)] {
        let backends: Vec<Backend> = (0..n)
            .map(|i| Backend {
                index: i as u16,
                weight: 1 + (i % 4) as u16,
                ident: tack_dataplane::sched::hash::server_ident(server(i), None),
            })
            .collect();
        let name = format!("Maglev build, {n} servers, table {size}");
        g.bench_function(format!("{n}x{size}"), |b| {
            b.iter_custom(|iters| {
                let start = thread_cpu();
                for _ in 0..iters {
                    black_box(Maglev::build(&backends, size).expect("prime size"));
                }
                let d = thread_cpu() - start;
                record(&name, d, iters);
                d
            });
        });
    }
    g.finish();
}

fn main() {
    let mut c = Criterion::default().configure_from_args();
    established(&mut c);
    new_flows(&mut c);
    sticky_lookup(&mut c);
    maglev(&mut c);
    c.final_summary();
    let t = TOTALS.lock().unwrap_or_else(|e| e.into_inner());
    println!(
        "\nAll timed runs, warm-up included (thread CPU time; criterion's estimates above exclude warm-up):"
    );
    println!("\n| benchmark | ns per packet (or per op) | Mpps (or Mops) |");
    println!("|---|---:|---:|");
    for (name, d, n) in t.iter() {
        let ns = d.as_nanos() as f64 / (*n).max(1) as f64;
        if name.starts_with("Maglev") {
            println!("| {name} | {:.2} ms per build | |", ns / 1e6);
        } else {
            println!("| {name} | {ns:.1} | {:.2} |", 1e3 / ns);
        }
    }
}
