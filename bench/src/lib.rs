//! Shared helpers for Tack's benchmarks: a reusable packet buffer, the
//! benchmark topology (one VIP, 16 NAT/full-NAT/DSR servers behind port 1,
//! clients behind port 0's gateway), frame builders, the thread CPU clock,
//! and the **baselines** every pipeline figure is compared with in the same
//! run:
//!
//! * [`MacSwap`]: the cheapest possible forwarder (testpmd's `macswap`): it
//!   touches each frame once, swaps its MAC addresses and queues it on a
//!   port. What is left above it is the pipeline's own work.
//! * [`HashLookup`]: the same flows in a plain `hashbrown::HashMap` of the
//!   same number of entries, looked up by the 5-tuple parsed at fixed
//!   offsets: the memory cost (cache and TLB misses) of *any* hash table of
//!   that size on this machine.
//!
//! # Running
//! ```sh
//! cargo bench -p tack-bench --bench pipeline   # ~3 min; summary table at the end
//! cargo bench -p tack-bench --bench tables     # connection table, sticky, schedulers
//! # one scenario, for profilers and quick A/B timings (see its docs):
//! cargo build --profile bench -p tack-bench --bin pipeprof
//! # tack over net_memif against dpdk-testpmd (the generator is bin/tackgen.rs,
//! # its frames are [`traffic`]'s; see docs/benchmarking.md):
//! ./scripts/bench.sh --quick
//! ```
//!
//! # Memory: huge pages and page faults
//! At a million flows the connection table is hundreds of MiB (392 MiB of
//! buckets for 1 M NAT connections) and every packet touches it at a random
//! place: with 4 KiB pages each touch is also a TLB miss and a page walk.
//! The benchmarks' global allocator is `tack`'s (`HugePageAlloc`, from the
//! control crate's `hugepages.rs`): once [`huge_pages`] has enabled it, it
//! advises transparent huge pages (`madvise(MADV_HUGEPAGE)`) for every
//! allocation of 2 MiB or more, so the tables get 2 MiB pages as they do in
//! `tack` (THP is in `madvise` mode on this machine), without `unsafe`
//! code in the pipeline.
//!
//! A table's pages are faulted in when they are first written, i.e. by the
//! first packets that create connections there; with huge pages each such
//! fault clears 2 MiB and may compact memory first (hundreds of µs on the
//! packet path). The new-flow benchmarks therefore warm their tables up,
//! untimed ([`warm_new_flows`]); a worker wants its tables populated before
//! it takes traffic (e.g. `mlockall(MCL_CURRENT | MCL_FUTURE)` once the
//! pipelines are built, so that the huge-page advice is already in place
//! when the pages are populated; [`lock_memory`] before building them gives
//! 4 KiB pages).
//!
//! The crate's `unsafe` code (libc calls and the allocator) is all in one
//! module, `os.rs`; the rest of the crate denies it.

#![deny(unsafe_code)]

use std::net::{IpAddr, Ipv4Addr};
use std::sync::Arc;

use hashbrown::HashMap;
use tack_dataplane::conn::ConnTableConfig;
use tack_dataplane::ids::ServerIdx;
use tack_dataplane::model::{
    ClientKeyRule, Config, ForwardMode, LocalPool, Persistence, Protocol, RealServer,
    SchedulerKind, Service,
};
use tack_dataplane::pipeline::{
    ConnSpec, ControlMsg, Output, Pipeline, PipelineConfig, PortSpec, Route, WorkerSpec,
};
use tack_dataplane::sticky::StickyConfig;
use tack_dataplane::wire::EthernetAddress;
use tack_dataplane::{Frame, FrameAlloc, Time};

#[allow(unsafe_code)]
mod os;
pub mod traffic;
pub use os::thread_cpu;

/// Frames per burst.
pub const BURST: usize = 32;
/// The benchmark's VIP (TCP port 80).
pub const VIP: Ipv4Addr = Ipv4Addr::new(203, 0, 113, 10);
/// Real servers in the benchmark's service.
pub const SERVERS: usize = 16;
/// The time every benchmark runs at.
pub const NOW: Time = Time::from_secs(10);

/// A packet buffer with a fixed headroom (like an mbuf), reused burst after burst.
pub struct BenchFrame {
    buf: Box<[u8; 2176]>,
    start: usize,
    len: usize,
}

impl Default for BenchFrame {
    fn default() -> Self {
        Self::new()
    }
}

impl BenchFrame {
    /// Headroom in front of the frame.
    pub const HEADROOM: usize = 128;

    /// An empty frame.
    pub fn new() -> BenchFrame {
        BenchFrame {
            buf: Box::new([0; 2176]),
            start: Self::HEADROOM,
            len: 0,
        }
    }

    /// Replaces the content with `bytes`.
    pub fn load(&mut self, bytes: &[u8]) {
        self.start = Self::HEADROOM;
        self.len = bytes.len();
        self.buf[self.start..self.start + self.len].copy_from_slice(bytes);
    }
}

impl Frame for BenchFrame {
    #[inline]
    fn bytes(&self) -> &[u8] {
        &self.buf[self.start..self.start + self.len]
    }
    #[inline]
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

/// Hands out fresh frames (only ARP requests would need one here).
pub struct Pool;

impl FrameAlloc for Pool {
    type Frame = BenchFrame;
    fn alloc(&mut self) -> Option<BenchFrame> {
        Some(BenchFrame::new())
    }
}

/// xorshift64*: a deterministic stream of flow choices.
pub struct Rng(pub u64);

impl Rng {
    /// The next value.
    #[allow(clippy::should_implement_trait)]
    pub fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }
}

/// Address of real server `i`.
pub fn server(i: usize) -> IpAddr {
    IpAddr::V4(Ipv4Addr::new(10, 1, (i / 250) as u8, 2 + (i % 250) as u8))
}

/// Flow `i`: its client address and port.
pub fn client(i: u64) -> (Ipv4Addr, u16) {
    (
        Ipv4Addr::from(0x1000_0000u32 + (i / 50_000) as u32),
        10_000 + (i % 50_000) as u16,
    )
}

/// The benchmark's service: VIP:80/TCP, smooth weighted round robin over
/// [`SERVERS`] servers, in `mode`, with /24 persistence if `sticky`.
pub fn services(mode: ForwardMode, sticky: bool) -> Vec<Service> {
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
            peer_addrs: Vec::new(),
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

/// A one-worker pipeline with two ports (clients on port 0 behind a
/// gateway, servers on-link on port 1, every server's MAC known) and an
/// IPv4 connection table of `capacity` entries.
pub fn pipeline(services: Vec<Service>, capacity: usize) -> Pipeline<BenchFrame> {
    pipeline_with(services, capacity, |_| {})
}

/// [`pipeline`] with its configuration edited by `edit` first.
pub fn pipeline_with(
    services: Vec<Service>,
    capacity: usize,
    edit: impl FnOnce(&mut PipelineConfig),
) -> Pipeline<BenchFrame> {
    let mut cfg = PipelineConfig {
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
    edit(&mut cfg);
    let worker = WorkerSpec::software(0, 1, 2);
    let mut p = Pipeline::new(Arc::new(cfg), worker).expect("valid pipeline");
    for i in 0..SERVERS {
        p.apply(ControlMsg::Neighbor {
            port: 1,
            addr: server(i),
            mac: EthernetAddress([2, 0, 0, 0, 0, 3]),
        });
    }
    p.apply(ControlMsg::Neighbor {
        port: 0,
        addr: IpAddr::V4(Ipv4Addr::new(198, 51, 100, 254)),
        mac: EthernetAddress([2, 0, 0, 0, 0, 1]),
    });
    p
}

/// Installs `n` established NAT connections (flows `0..n`, server `i % 16`).
pub fn install_flows(p: &mut Pipeline<BenchFrame>, n: u64) {
    for i in 0..n {
        let (addr, port) = client(i);
        p.install_connection(
            NOW,
            &ConnSpec {
                client: IpAddr::V4(addr),
                client_port: port,
                vip: IpAddr::V4(VIP),
                vip_port: 80,
                protocol: 6,
                server: ServerIdx((i % SERVERS as u64) as u16),
                local: None,
                seq_shift: None,
            },
        )
        .expect("room for every flow");
    }
}

/// Writes a 60-byte frame holding a TCP segment `src:sport` → VIP:80 with
/// `flags` and a valid IPv4 header checksum.
pub fn segment(buf: &mut [u8; 60], src: Ipv4Addr, sport: u16, flags: u8) {
    segment_from(buf, src, sport, VIP, 80, flags);
}

/// Writes a 60-byte frame holding a TCP segment `src:sport` → `dst:dport`
/// with `flags`, a valid IPv4 header checksum and a valid TCP checksum.
pub fn segment_from(
    buf: &mut [u8; 60],
    src: Ipv4Addr,
    sport: u16,
    dst: Ipv4Addr,
    dport: u16,
    flags: u8,
) {
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
    ip[16..20].copy_from_slice(&dst.octets());
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
    tcp[2..4].copy_from_slice(&dport.to_be_bytes());
    tcp[12] = 0x50;
    tcp[13] = flags;
    tcp[14..16].copy_from_slice(&1000u16.to_be_bytes());
    // TCP checksum over the pseudo-header and the 20-byte segment.
    let mut sum = 6u32 + 20;
    for w in src.octets().chunks(2).chain(dst.octets().chunks(2)) {
        sum += u32::from(u16::from_be_bytes([w[0], w[1]]));
    }
    for w in buf[34..54].chunks(2) {
        sum += u32::from(u16::from_be_bytes([w[0], w[1]]));
    }
    while sum > 0xffff {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    buf[50..52].copy_from_slice(&(!(sum as u16)).to_be_bytes());
}

/// Something that forwards a burst: the pipeline, or a baseline.
pub trait Forwarder {
    /// Processes `rx` (taking every frame) into `out`.
    fn burst(&mut self, rx: &mut Vec<BenchFrame>, out: &mut Output<BenchFrame>);
}

impl Forwarder for Pipeline<BenchFrame> {
    // Never inlined: profilers (`callgrind --toggle-collect`) count from here.
    #[inline(never)]
    fn burst(&mut self, rx: &mut Vec<BenchFrame>, out: &mut Output<BenchFrame>) {
        self.process_burst(NOW, 0, rx, out, &mut Pool);
    }
}

/// The trivial forwarder (testpmd `macswap`): swaps the Ethernet addresses
/// of each frame and queues it on port 1.
#[derive(Debug, Default)]
pub struct MacSwap {
    /// Frames forwarded.
    pub forwarded: u64,
}

impl Forwarder for MacSwap {
    #[inline]
    fn burst(&mut self, rx: &mut Vec<BenchFrame>, out: &mut Output<BenchFrame>) {
        for mut f in rx.drain(..) {
            if let Some(h) = f.bytes_mut().get_mut(..12) {
                let mut d = [0u8; 6];
                d.copy_from_slice(&h[..6]);
                h.copy_within(6..12, 0);
                h[6..].copy_from_slice(&d);
                self.forwarded += 1;
            }
            out.tx[1].push(f);
        }
    }
}

/// A 5-tuple as the [`HashLookup`] baseline keys it.
type Tuple = (u32, u32, u16, u16, u8);

/// The memory baseline: a plain `hashbrown::HashMap` holding as many
/// entries as the pipeline's table (every flow's forward and reply tuple),
/// looked up with the 5-tuple read at fixed offsets of each frame; a hit
/// bumps a per-entry counter (a write to the entry, like the pipeline's
/// expiry update) and the frame is queued as is.
pub struct HashLookup {
    map: HashMap<Tuple, (u32, u64)>,
    /// Frames whose flow was found.
    pub hits: u64,
}

impl HashLookup {
    /// A map with the forward and reply tuples of flows `0..n` (as
    /// [`install_flows`] creates them).
    pub fn new(n: u64) -> HashLookup {
        let mut map = HashMap::with_capacity(2 * n as usize);
        for i in 0..n {
            let (addr, port) = client(i);
            let srv = match server((i % SERVERS as u64) as usize) {
                IpAddr::V4(a) => u32::from(a),
                IpAddr::V6(_) => 0,
            };
            map.insert(
                (u32::from(addr), u32::from(VIP), port, 80, 6),
                (i as u32, 0),
            );
            map.insert((srv, u32::from(addr), 80, port, 6), (i as u32, 0));
        }
        HashLookup { map, hits: 0 }
    }
}

impl Forwarder for HashLookup {
    #[inline]
    fn burst(&mut self, rx: &mut Vec<BenchFrame>, out: &mut Output<BenchFrame>) {
        for f in rx.drain(..) {
            let b = f.bytes();
            if b.len() >= 54 {
                let rd32 = |o: usize| u32::from_be_bytes([b[o], b[o + 1], b[o + 2], b[o + 3]]);
                let rd16 = |o: usize| u16::from_be_bytes([b[o], b[o + 1]]);
                let key = (rd32(26), rd32(30), rd16(34), rd16(36), b[23]);
                if let Some(v) = self.map.get_mut(&key) {
                    v.1 += 1;
                    self.hits += 1;
                }
            }
            out.tx[1].push(f);
        }
    }
}

/// `tack`'s allocator (from the same source file, see `os.rs`): advises
/// transparent huge pages for the tables once [`huge_pages`] has enabled it.
#[global_allocator]
static ALLOC: os::hugepages::HugePageAlloc = os::hugepages::HugePageAlloc;

/// Has the global allocator advise transparent huge pages for the large
/// allocations made from now on (the tables), unless
/// `TACK_BENCH_HUGEPAGES=0`. Call it before building the tables. Returns
/// whether large allocations get huge pages (advised, and the kernel's THP
/// mode, `/sys/kernel/mm/transparent_hugepage/enabled`, is `madvise` or
/// `always`).
pub fn huge_pages() -> bool {
    let off = std::env::var("TACK_BENCH_HUGEPAGES").is_ok_and(|v| v == "0");
    !off && os::hugepages::enable()
}

/// Locks the process's memory, present and future (`mlockall(MCL_CURRENT |
/// MCL_FUTURE)`), if `TACK_BENCH_MLOCK=1`: every later allocation is then
/// populated when it is made, so no page fault lands in a timed region. Off
/// by default: populating at `mmap` time comes before glibc's
/// `madvise(MADV_HUGEPAGE)`, so the tables get 4 KiB pages (the benchmarks
/// warm their tables up instead, untimed). Returns whether the memory is
/// locked (it needs `CAP_IPC_LOCK` or a large enough `RLIMIT_MEMLOCK`).
pub fn lock_memory() -> bool {
    if !std::env::var("TACK_BENCH_MLOCK").is_ok_and(|v| v == "1") {
        return false;
    }
    match os::mlockall() {
        Ok(()) => true,
        Err(e) => {
            eprintln!("mlockall failed ({e}): page faults may land in timed regions");
            false
        }
    }
}

/// Opens new flows (SYNs of flows `*next..`) until `p` has held
/// `connections` of them, then flushes its connections and sticky bindings:
/// every page of the tables a new-flow benchmark writes to is then faulted
/// in (and, with [`huge_pages`], backed by huge pages) before it is timed.
pub fn warm_new_flows(p: &mut Pipeline<BenchFrame>, next: &mut u64, connections: usize) {
    let mut out: Output<BenchFrame> = Output::new(2);
    let mut rx: Vec<BenchFrame> = (0..BURST).map(|_| BenchFrame::new()).collect();
    let mut buf = [0u8; 60];
    while p.connection_count() < connections {
        for f in rx.iter_mut() {
            let (addr, port) = client(*next);
            *next = (*next + 1) % 50_000_000;
            segment(&mut buf, addr, port, 0x02);
            f.load(&buf);
        }
        let before = p.connection_count();
        p.burst(&mut rx, &mut out);
        rx.append(&mut out.tx[1]);
        rx.append(&mut out.tx[0]);
        for q in &mut out.host {
            rx.append(q);
        }
        rx.resize_with(BURST, BenchFrame::new);
        if p.connection_count() == before {
            break;
        }
    }
    p.apply(ControlMsg::FlushConnections);
    p.apply(ControlMsg::FlushSticky { service: None });
}

/// Transparent huge pages currently backing this process's anonymous
/// memory, in MiB (`AnonHugePages` of `/proc/self/smaps_rollup`).
pub fn anon_huge_mib() -> Option<u64> {
    let s = std::fs::read_to_string("/proc/self/smaps_rollup").ok()?;
    let line = s.lines().find(|l| l.starts_with("AnonHugePages:"))?;
    let kb: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kb / 1024)
}
