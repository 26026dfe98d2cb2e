//! Pipeline micro-benchmarks (criterion): established-flow forwarding with
//! 1 K / 100 K / 1 M (and, opt-in, 10 M) connections in the table, in both
//! directions; new-flow setup; sticky lookup; Maglev table build. Every
//! pipeline figure is compared with **baselines measured in the same run**
//! on the same frames, so that ratios stay meaningful on a shared, noisy
//! machine:
//!
//! * `macswap`: the trivial forwarder ([`tack_bench::MacSwap`], testpmd's
//!   macswap): what is left above it is the pipeline's own work;
//! * `hashmap`: a plain `hashbrown` map holding as many entries as the
//!   pipeline's table, looked up with the frames' 5-tuples
//!   ([`tack_bench::HashLookup`]): the memory cost of any hash table of that
//!   size here (new flows: [`HashInsert`], the same keys inserted).
//!
//! A summary table (ns per packet, the best sample, Mpps, the baselines,
//! the ratio to `macswap`, the target and whether the mean and the best
//! sample meet it) is printed at the end.
//!
//! ```sh
//! cargo bench -p tack-bench --bench pipeline
//! # other table sizes (comma-separated flow counts; 10 M takes ~2 GiB and a minute to fill):
//! TACK_BENCH_FLOWS=1000,1000000,10000000 cargo bench -p tack-bench --bench pipeline
//! # one group: established, new_flow, sticky, maglev_build
//! cargo bench -p tack-bench --bench pipeline -- new_flow
//! # without transparent huge pages:
//! TACK_BENCH_HUGEPAGES=0 cargo bench -p tack-bench --bench pipeline
//! ```
//!
//! Every measured unit is a burst of 32 frames; 16 bursts are built (not
//! timed), then run and timed together with the thread's CPU clock (wall
//! time would count the time spent waiting for a CPU). Established flows are
//! NAT connections (two table entries each) preloaded with
//! `Pipeline::install_connection`; each burst hits 32 flows chosen uniformly
//! at random, so large tables miss the CPU caches as real traffic does.
//!
//! The tables get transparent huge pages, as `tack`'s do
//! ([`tack_bench::huge_pages`]); `TACK_BENCH_HUGEPAGES=0` measures with
//! 4 KiB pages.

#![forbid(unsafe_code)]

use std::collections::BTreeMap;
use std::hint::black_box;
use std::net::{IpAddr, Ipv4Addr};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use criterion::{Criterion, Throughput};
use hashbrown::HashMap;
use tack_bench::{
    BURST, BenchFrame, Forwarder, HashLookup, MacSwap, Rng, SERVERS, client, install_flows,
    pipeline, segment, segment_from, server, services, thread_cpu,
};
use tack_dataplane::balance::Backend;
use tack_dataplane::balance::maglev::Maglev;
use tack_dataplane::ids::{ServerIdx, ServiceIdx};
use tack_dataplane::model::{Config, ForwardMode};
use tack_dataplane::pipeline::{ControlMsg, Output};
use tack_dataplane::sticky::{StickyConfig, StickyTable};
use tack_dataplane::{Frame, Time};

/// Measured totals per benchmark, for the summary table.
static TOTALS: Mutex<BTreeMap<String, Totals>> = Mutex::new(BTreeMap::new());

/// What one benchmark measured over all its criterion calls.
#[derive(Default)]
struct Totals {
    /// CPU time, warm-up included.
    time: Duration,
    /// Units (packets, builds, keys) in that time.
    units: u64,
    /// ns per unit of the fastest call of at least [`BEST_MIN_UNITS`].
    best: Option<f64>,
}

/// Smallest call that counts for the best sample (1000 bursts): smaller
/// ones are warm-up steps.
const BEST_MIN_UNITS: u64 = 1000 * BURST as u64;

fn record(name: &str, d: Duration, units: u64) {
    let mut t = TOTALS.lock().unwrap_or_else(|e| e.into_inner());
    let e = t.entry(name.to_string()).or_default();
    e.time += d;
    e.units += units;
    if units >= BEST_MIN_UNITS {
        let v = d.as_nanos() as f64 / units as f64;
        e.best = Some(e.best.map_or(v, |b| b.min(v)));
    }
}

/// ns per unit of a recorded benchmark: the mean over all its calls, and
/// its best sample.
fn ns(name: &str) -> Option<(f64, Option<f64>)> {
    let t = TOTALS.lock().unwrap_or_else(|e| e.into_inner());
    t.get(name)
        .filter(|e| e.units > 0)
        .map(|e| (e.time.as_nanos() as f64 / e.units as f64, e.best))
}

/// Bursts timed together (the CPU clock costs a system call).
const GROUP: usize = 16;

/// Runs `iters` bursts through `fwd`, `GROUP` at a time: `fill` loads every
/// frame of the group (not timed), then the group's bursts are timed.
fn run_bursts<W: Forwarder>(
    fwd: &mut W,
    pool: &mut Vec<BenchFrame>,
    iters: u64,
    mut before_group: impl FnMut(&mut W),
    mut fill: impl FnMut(&mut BenchFrame),
) -> Duration {
    let mut out: Output<BenchFrame> = Output::new(2);
    let mut bursts: Vec<Vec<BenchFrame>> = (0..GROUP).map(|_| Vec::with_capacity(BURST)).collect();
    let mut total = Duration::ZERO;
    let mut left = iters;
    while left > 0 {
        let n = (left as usize).min(GROUP);
        left -= n as u64;
        before_group(fwd);
        pool.resize_with(pool.len().max(n * BURST), BenchFrame::new);
        for b in bursts.iter_mut().take(n) {
            let at = pool.len() - BURST;
            b.extend(pool.drain(at..));
            b.iter_mut().for_each(&mut fill);
        }
        let t = thread_cpu();
        for b in bursts.iter_mut().take(n) {
            fwd.burst(b, &mut out);
        }
        total += thread_cpu() - t;
        // Recycle every frame (forwarded, held, or dropped by a counter).
        for q in &mut out.tx {
            pool.append(q);
        }
        for q in &mut out.host {
            pool.append(q);
        }
        for b in &mut bursts {
            pool.append(b);
        }
    }
    total
}

fn flow_counts() -> Vec<u64> {
    match std::env::var("TACK_BENCH_FLOWS") {
        Ok(v) => v.split(',').filter_map(|s| s.trim().parse().ok()).collect(),
        Err(_) => vec![1_000, 100_000, 1_000_000],
    }
}

fn v4(a: IpAddr) -> Ipv4Addr {
    match a {
        IpAddr::V4(a) => a,
        IpAddr::V6(_) => unreachable!("IPv4 servers"),
    }
}

/// Criterion settings shared by the groups.
fn group<'a>(
    c: &'a mut Criterion,
    name: &str,
) -> criterion::BenchmarkGroup<'a, criterion::measurement::WallTime> {
    let mut g = c.benchmark_group(name);
    g.throughput(Throughput::Elements(BURST as u64));
    g.sample_size(10);
    g.warm_up_time(Duration::from_secs(1));
    g.measurement_time(Duration::from_secs(3));
    g
}

fn established(c: &mut Criterion) {
    let mut g = group(c, "established");
    let mut pool: Vec<BenchFrame> = Vec::new();
    for n in flow_counts() {
        let n = n.max(1);
        let t = Instant::now();
        let mut p = pipeline(services(ForwardMode::Nat, false), (2 * n as usize).max(64));
        install_flows(&mut p, n);
        let mut map = HashLookup::new(n);
        eprintln!(
            "established/{n}: {n} connections installed in {:.1} s; transparent huge pages in use: {} MiB",
            t.elapsed().as_secs_f64(),
            tack_bench::anon_huge_mib().unwrap_or(0)
        );
        let mut buf = [0u8; 60];
        // The same frame stream (same seed) for the pipeline and the baselines.
        let client_frames = |seed: u64| {
            let mut rng = Rng(0x5eed_0000 + seed);
            move |f: &mut BenchFrame, buf: &mut [u8; 60]| {
                let (addr, port) = client(rng.next() % n);
                segment(buf, addr, port, 0x10);
                f.load(buf);
            }
        };
        let mut fill = client_frames(n);
        let name = format!("established NAT, {n} flows");
        g.bench_function(format!("{n}/nat"), |b| {
            b.iter_custom(|iters| {
                let d = run_bursts(&mut p, &mut pool, iters, |_| {}, |f| fill(f, &mut buf));
                record(&name, d, iters * BURST as u64);
                d
            });
        });
        let mut rng = Rng(0x7e91_0000 + n);
        let name_r = format!("established NAT reply, {n} flows");
        g.bench_function(format!("{n}/nat-reply"), |b| {
            b.iter_custom(|iters| {
                let d = run_bursts(
                    &mut p,
                    &mut pool,
                    iters,
                    |_| {},
                    |f| {
                        let i = rng.next() % n;
                        let (addr, port) = client(i);
                        let srv = v4(server((i % SERVERS as u64) as usize));
                        segment_from(&mut buf, srv, 80, addr, port, 0x10);
                        f.load(&buf);
                    },
                );
                record(&name_r, d, iters * BURST as u64);
                d
            });
        });
        let c = p.counters();
        assert_eq!(c.tx_forward, c.rx_frames, "every packet forwarded: {c:?}");
        let mut fill = client_frames(n);
        let name_m = format!("macswap, {n} flows");
        let mut mac = MacSwap::default();
        g.bench_function(format!("{n}/baseline-macswap"), |b| {
            b.iter_custom(|iters| {
                let d = run_bursts(&mut mac, &mut pool, iters, |_| {}, |f| fill(f, &mut buf));
                record(&name_m, d, iters * BURST as u64);
                d
            });
        });
        let mut fill = client_frames(n);
        let name_h = format!("hashmap, {n} flows");
        g.bench_function(format!("{n}/baseline-hashmap"), |b| {
            b.iter_custom(|iters| {
                let d = run_bursts(&mut map, &mut pool, iters, |_| {}, |f| fill(f, &mut buf));
                record(&name_h, d, iters * BURST as u64);
                d
            });
        });
        assert!(map.hits > 0);
        drop(p);
        drop(map);
    }
    g.finish();
}

/// The new-flow baseline: the frames' forward and reply 5-tuples inserted
/// into a plain `hashbrown` map of the pipeline table's size (flushed,
/// untimed, when a quarter full, as the pipeline's table is).
struct HashInsert {
    map: HashMap<(u32, u32, u16, u16, u8), u32>,
    cap: usize,
    next: u32,
}

impl Forwarder for HashInsert {
    fn burst(&mut self, rx: &mut Vec<BenchFrame>, out: &mut Output<BenchFrame>) {
        for f in rx.drain(..) {
            let b = f.bytes();
            if b.len() >= 54 {
                let rd32 = |o: usize| u32::from_be_bytes([b[o], b[o + 1], b[o + 2], b[o + 3]]);
                let rd16 = |o: usize| u16::from_be_bytes([b[o], b[o + 1]]);
                let (src, dst, sport, dport) = (rd32(26), rd32(30), rd16(34), rd16(36));
                let srv = 0x0a01_0002 + self.next % SERVERS as u32;
                self.map.insert((src, dst, sport, dport, b[23]), self.next);
                self.map.insert((srv, src, dport, sport, b[23]), self.next);
                self.next = self.next.wrapping_add(1);
            }
            out.tx[1].push(f);
        }
    }
}

fn new_flows(c: &mut Criterion) {
    let mut g = group(c, "new_flow");
    let mut pool: Vec<BenchFrame> = Vec::new();
    let next = std::cell::Cell::new(0u64);
    let mut buf = [0u8; 60];
    let mut syn = |f: &mut BenchFrame| {
        let (addr, port) = client(next.get());
        next.set((next.get() + 1) % 50_000_000);
        segment(&mut buf, addr, port, 0x02);
        f.load(&buf);
    };
    for (label, mode, sticky, cap) in [
        ("NAT wrr", ForwardMode::Nat, false, 1usize << 21),
        ("full NAT wrr", ForwardMode::FullNat, false, 1 << 21),
        ("DSR sticky", ForwardMode::Dsr, true, 1 << 21),
        // A table small enough for the caches: the pipeline's own cost.
        ("NAT wrr, 16K-entry table", ForwardMode::Nat, false, 1 << 14),
    ] {
        let mut p = pipeline(services(mode, sticky), cap);
        // Untimed: fault the tables' pages in (see `warm_new_flows`).
        let mut n = next.get();
        tack_bench::warm_new_flows(&mut p, &mut n, cap / 4);
        next.set(n);
        let name = format!("new flow, {label}");
        g.bench_function(label, |b| {
            b.iter_custom(|iters| {
                let d = run_bursts(
                    &mut p,
                    &mut pool,
                    iters,
                    |p| {
                        // Untimed: keep the table below a quarter full.
                        if p.connection_count() > cap / 4 {
                            p.apply(ControlMsg::FlushConnections);
                            p.apply(ControlMsg::FlushSticky { service: None });
                        }
                    },
                    &mut syn,
                );
                record(&name, d, iters * BURST as u64);
                d
            });
        });
        let c = p.counters();
        assert_eq!(c.tx_forward, c.rx_frames, "every SYN forwarded: {c:?}");
    }
    for cap in [1usize << 21, 1 << 14] {
        let mut h = HashInsert {
            map: HashMap::with_capacity(2 * cap),
            cap,
            next: 0,
        };
        let name = format!("hashmap insert, {}-entry table", cap);
        g.bench_function(format!("baseline-hashmap-insert/{cap}"), |b| {
            b.iter_custom(|iters| {
                let d = run_bursts(
                    &mut h,
                    &mut pool,
                    iters,
                    |h| {
                        if h.map.len() > h.cap / 2 {
                            h.map.clear();
                        }
                    },
                    &mut syn,
                );
                record(&name, d, iters * BURST as u64);
                d
            });
        });
    }
    let mut mac = MacSwap::default();
    g.bench_function("baseline-macswap", |b| {
        b.iter_custom(|iters| {
            let d = run_bursts(&mut mac, &mut pool, iters, |_| {}, &mut syn);
            record("macswap, SYNs", d, iters * BURST as u64);
            d
        });
    });
    g.finish();
}

fn sticky_lookup(c: &mut Criterion) {
    let mut g = c.benchmark_group("sticky");
    g.throughput(Throughput::Elements(1024));
    g.sample_size(10);
    g.warm_up_time(Duration::from_secs(1));
    g.measurement_time(Duration::from_secs(3));
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
        t.resolve(&cfg, ServiceIdx(0), addr(i), Time::ZERO);
    }
    t.drain_events();
    let mut rng = Rng(42);
    g.bench_function("resolve+release, 100K keys", |b| {
        b.iter_custom(|iters| {
            let start = thread_cpu();
            for _ in 0..iters {
                for _ in 0..1024 {
                    let a = addr((rng.next() % u64::from(keys)) as u32);
                    black_box(t.resolve(&cfg, ServiceIdx(0), a, Time::ZERO));
                    t.release(&cfg, ServiceIdx(0), a, Time::ZERO);
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
    g.warm_up_time(Duration::from_secs(1));
    g.measurement_time(Duration::from_secs(3));
    for (n, size) in [(10usize, 65_537u32), (100, 65_537), (1000, 655_373)] {
        let backends: Vec<Backend> = (0..n)
            .map(|i| Backend {
                index: ServerIdx(i as u16),
                weight: 1 + (i % 4) as u16,
                ident: tack_dataplane::hash::server_ident(server(i), None),
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

/// One row of the summary: the pipeline figure, its baselines, its target.
fn row(name: &str, base_mac: &str, base_mem: &str, target: Option<f64>) {
    let Some((v, best)) = ns(name) else {
        return;
    };
    let mac = ns(base_mac).map(|m| m.0);
    let mem = ns(base_mem).map(|m| m.0);
    let fmt = |x: Option<f64>| x.map_or_else(|| "–".to_string(), |x| format!("{x:.1}"));
    let ratio = mac.map_or_else(|| "–".to_string(), |m| format!("{:.1}×", v / m));
    let met = |x: Option<f64>, t: f64| match x {
        Some(x) if x <= t => "yes",
        Some(_) => "no",
        None => "–",
    };
    let (target, met_mean, met_best) = match target {
        Some(t) => (format!("≤ {t:.0}"), met(Some(v), t), met(best, t)),
        None => (String::new(), "", ""),
    };
    println!(
        "| {name} | {v:.1} | {} | {:.2} | {} | {} | {ratio} | {target} | {met_mean} | {met_best} |",
        fmt(best),
        1e3 / v,
        fmt(mac),
        fmt(mem),
    );
}

fn main() {
    let huge = tack_bench::huge_pages();
    let mut c = Criterion::default().configure_from_args();
    established(&mut c);
    new_flows(&mut c);
    sticky_lookup(&mut c);
    maglev(&mut c);
    c.final_summary();
    println!(
        "\nSummary (thread CPU time, warm-up included; transparent huge pages {}). \
         Baselines on the same frames in the same run: macswap = swap MACs and queue \
         (the floor of any forwarder); hashmap = a plain hashbrown map of the same size \
         looked up (established) or inserted into (new flows): the memory floor of a \
         table that size on this machine. ns/packet is the mean over every call; best is \
         the fastest criterion sample of at least {BEST_MIN_UNITS} packets (other tenants \
         of a shared machine only ever add time). Mpps and the ratio use the mean; the \
         target is checked on both.\n",
        if huge { "requested" } else { "off" }
    );
    println!(
        "| benchmark | ns/packet | best ns | Mpps | macswap ns | hashmap ns | × macswap | target ns | met | met, best |"
    );
    println!("|---|---:|---:|---:|---:|---:|---:|---:|---|---|");
    for n in flow_counts() {
        let target = (n == 1_000_000).then_some(100.0);
        let (mac, mem) = (format!("macswap, {n} flows"), format!("hashmap, {n} flows"));
        row(&format!("established NAT, {n} flows"), &mac, &mem, target);
        row(
            &format!("established NAT reply, {n} flows"),
            &mac,
            &mem,
            target,
        );
    }
    let big = format!("hashmap insert, {}-entry table", 1 << 21);
    let small = format!("hashmap insert, {}-entry table", 1 << 14);
    for (label, mem) in [
        ("NAT wrr", &big),
        ("full NAT wrr", &big),
        ("DSR sticky", &big),
        ("NAT wrr, 16K-entry table", &small),
    ] {
        row(
            &format!("new flow, {label}"),
            "macswap, SYNs",
            mem,
            Some(500.0),
        );
    }
    let t = TOTALS.lock().unwrap_or_else(|e| e.into_inner());
    println!();
    println!("| other | ns per op |\n|---|---:|");
    for (name, e) in t.iter() {
        let v = e.time.as_nanos() as f64 / e.units.max(1) as f64;
        if name.starts_with("Maglev") {
            println!("| {name} | {:.2} ms per build |", v / 1e6);
        } else if name.starts_with("sticky") {
            println!("| {name} | {v:.1} |");
        }
    }
}
