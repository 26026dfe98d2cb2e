//! Table benchmarks: connection-table burst lookups at 1 K – 10 M flows,
//! new-connection inserts, new timeouts applied to 1 M connections, sticky resolution, scheduler picks and Maglev
//! table builds.
//!
//! Run: `cargo bench -p tack-bench --bench tables` (add `-- lookup` etc. to
//! filter; `TACK_BENCH_FLOWS=1000,1000000,10000000` for other table sizes,
//! 10 M being opt-in: 1.8 GiB and a while to fill). Throughput figures are per
//! key / per connection / per pick.
//!
//! The burst lookups are compared with a baseline measured in the same run:
//! a plain `hashbrown::HashMap` holding the same keys, looked up one by one
//! (`baseline-hashmap`). A summary table (thread CPU time per key) is printed
//! at the end. Like the pipeline benchmark, this one gives its tables
//! transparent huge pages ([`tack_bench::huge_pages`];
//! `TACK_BENCH_HUGEPAGES=0` to measure 4 KiB pages).

#![forbid(unsafe_code)]

use std::collections::BTreeMap;
use std::hint::black_box;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use criterion::{BatchSize, Criterion, Throughput};
use hashbrown::HashMap;
use tack_bench::thread_cpu;
use tack_dataplane::Time;
use tack_dataplane::balance::Backend;
use tack_dataplane::balance::maglev::Maglev;
use tack_dataplane::conn::{
    BURST, ConnTable4, ConnTable6, ConnTableConfig, Handle, Key4, Key6, NewConn, TcpFlags, Timeouts,
};
use tack_dataplane::hash;
use tack_dataplane::ids::{ServerIdx, ServiceIdx};
use tack_dataplane::model::{
    ClientKeyRule, Config, Persistence, Protocol, RealServer, SchedulerKind, Service,
};
use tack_dataplane::sched::{PickKey, SchedState};
use tack_dataplane::sticky::{StickyConfig, StickyTable};

/// A bijective scramble of `i` so keys are spread over the address space.
fn scramble(i: u32) -> u32 {
    i.wrapping_mul(0x9E37_79B1).rotate_left(13) ^ 0x5bd1_e995
}

fn key4(i: u32) -> Key4 {
    Key4::new(
        Ipv4Addr::from(scramble(i)),
        Ipv4Addr::new(192, 0, 2, 1),
        (i >> 16) as u16 ^ 0x8000,
        443,
        6,
    )
}

fn key6(i: u32) -> Key6 {
    let mut a = [0u8; 16];
    a[0] = 0x20;
    a[1] = 0x01;
    a[12..].copy_from_slice(&scramble(i).to_be_bytes());
    Key6::new(
        Ipv6Addr::from(a),
        "2001:db8::80".parse().unwrap(),
        (i >> 16) as u16 ^ 0x8000,
        443,
        6,
    )
}

fn nc(i: u32) -> NewConn {
    NewConn {
        service: ServiceIdx(0),
        server: ServerIdx((i % 64) as u16),
        local: None,
        user_flags: 0,
    }
}

fn conn_cfg(capacity: usize) -> ConnTableConfig {
    ConnTableConfig {
        capacity,
        ..ConnTableConfig::default()
    }
}

fn filled4(n: u32) -> ConnTable4 {
    let mut t = ConnTable4::new(conn_cfg(n as usize), Time::ZERO).unwrap();
    for i in 0..n {
        t.insert(key4(i), None, nc(i), TcpFlags::ACK, Time::ZERO)
            .unwrap();
    }
    t
}

/// Lookup order: a pseudo-random walk over the present keys, so bursts hit
/// random buckets (no cache-friendly locality).
fn probe_order(n: u32, len: usize) -> Vec<u32> {
    let mut x = 0x2545_f491u64;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            (x % u64::from(n)) as u32
        })
        .collect()
}

/// Thread CPU time and keys per summary row.
static TOTALS: Mutex<BTreeMap<String, (Duration, u64)>> = Mutex::new(BTreeMap::new());

fn record(name: &str, d: Duration, keys: u64) {
    let mut t = TOTALS.lock().unwrap_or_else(|e| e.into_inner());
    let e = t.entry(name.to_string()).or_default();
    e.0 += d;
    e.1 += keys;
}

/// Runs `iters` bursts of `keys` (from `*pos`, wrapping) through `f`;
/// returns the thread CPU time.
fn bursts(keys: &[Key4], pos: &mut usize, iters: u64, mut f: impl FnMut(&[Key4])) -> Duration {
    let start = thread_cpu();
    for _ in 0..iters {
        let burst = &keys[*pos..*pos + BURST];
        *pos = (*pos + BURST) % (keys.len() - BURST);
        f(burst);
    }
    thread_cpu() - start
}

fn flow_counts() -> Vec<u32> {
    match std::env::var("TACK_BENCH_FLOWS") {
        Ok(v) => v.split(',').filter_map(|s| s.trim().parse().ok()).collect(),
        Err(_) => vec![1_000, 100_000, 1_000_000],
    }
}

fn bench_lookup(c: &mut Criterion) {
    let mut g = c.benchmark_group("conn_lookup_burst32");
    g.throughput(Throughput::Elements(BURST as u64));
    g.sample_size(10);
    g.warm_up_time(Duration::from_secs(1));
    g.measurement_time(Duration::from_secs(3));
    for n in flow_counts() {
        let n = n.max(1);
        let mut t = filled4(n);
        eprintln!(
            "conn table v4: {n} flows, hash table {} MiB ({:.0} B/flow incl. slack)",
            t.table_bytes() >> 20,
            t.table_bytes() as f64 / f64::from(n)
        );
        let order = probe_order(n, 1 << 16);
        let keys: Vec<Key4> = order.iter().map(|&i| key4(i)).collect();
        let mut out = [None::<Handle>; BURST];
        let mut pos = 0usize;
        let name = format!("conn table burst lookup, {n} flows");
        g.bench_function(format!("lookup/{n}"), |b| {
            b.iter_custom(|iters| {
                let d = bursts(&keys, &mut pos, iters, |burst| {
                    t.lookup_burst(burst, &mut out).unwrap();
                    black_box(&out);
                });
                record(&name, d, iters * BURST as u64);
                d
            })
        });
        let mut now = 1u64;
        let name_u = format!("conn table burst lookup + state update, {n} flows");
        g.bench_function(format!("lookup+update/{n}"), |b| {
            b.iter_custom(|iters| {
                let d = bursts(&keys, &mut pos, iters, |burst| {
                    now += 1000;
                    t.lookup_burst(burst, &mut out).unwrap();
                    for h in out.iter().flatten() {
                        black_box(t.on_packet(h, TcpFlags::ACK, Time(now)));
                    }
                });
                record(&name_u, d, iters * BURST as u64);
                d
            })
        });
        drop(t);
        // Baseline: the same keys in a plain hashbrown map, one lookup each.
        let mut map: HashMap<Key4, u32> = HashMap::with_capacity(2 * n as usize);
        for i in 0..n {
            map.insert(key4(i), i);
        }
        let name_b = format!("hashbrown HashMap lookup, {n} flows");
        g.bench_function(format!("baseline-hashmap/{n}"), |b| {
            b.iter_custom(|iters| {
                let d = bursts(&keys, &mut pos, iters, |burst| {
                    for k in burst {
                        black_box(map.get(k));
                    }
                });
                record(&name_b, d, iters * BURST as u64);
                d
            })
        });
    }
    g.finish();

    let mut g = c.benchmark_group("conn_lookup_burst32_v6");
    g.throughput(Throughput::Elements(BURST as u64));
    g.sample_size(20);
    g.measurement_time(Duration::from_secs(4));
    let n = 1_000_000u32;
    let mut t = ConnTable6::new(conn_cfg(n as usize), Time::ZERO).unwrap();
    for i in 0..n {
        t.insert(key6(i), None, nc(i), TcpFlags::ACK, Time::ZERO)
            .unwrap();
    }
    let keys: Vec<Key6> = probe_order(n, 1 << 16).iter().map(|&i| key6(i)).collect();
    let mut out = [None::<Handle>; BURST];
    let mut pos = 0usize;
    g.bench_function(format!("lookup/{n}"), |b| {
        b.iter(|| {
            let burst = &keys[pos..pos + BURST];
            pos = (pos + BURST) % (keys.len() - BURST);
            t.lookup_burst(burst, &mut out).unwrap();
            black_box(&out);
        })
    });
    g.finish();
}

fn bench_insert(c: &mut Criterion) {
    let mut g = c.benchmark_group("conn_insert");
    g.throughput(Throughput::Elements(1));
    g.sample_size(20);
    g.measurement_time(Duration::from_secs(4));
    // Pure insert into a table holding 500 K flows (capacity 2 M entries).
    const BASE: u32 = 500_000;
    const CHUNK: u64 = 200_000;
    let mut t_cap = ConnTable4::new(conn_cfg(2_000_000), Time::ZERO).unwrap();
    for i in 0..BASE {
        t_cap
            .insert(key4(i), None, nc(i), TcpFlags::ACK, Time::ZERO)
            .unwrap();
    }
    g.bench_function("insert/500k", |b| {
        b.iter_custom(|iters| {
            let mut total = Duration::ZERO;
            let mut done = 0u64;
            while done < iters {
                let n = (iters - done).min(CHUNK) as u32;
                let start = Instant::now();
                for j in 0..n {
                    let i = BASE + j;
                    black_box(
                        t_cap
                            .insert(key4(i), None, nc(i), TcpFlags::SYN, Time::ZERO)
                            .is_ok(),
                    );
                }
                total += start.elapsed();
                // Untimed: take the new flows out again.
                for j in 0..n {
                    if let Some(h) = t_cap.lookup(&key4(BASE + j)) {
                        t_cap.remove(&h);
                    }
                }
                done += u64::from(n);
            }
            total
        })
    });
    // Steady churn at 1 M flows: the oldest flow removed, a new one inserted.
    drop(t_cap);
    let mut t = filled4(1_000_000);
    let mut next = 1_000_000u32;
    let mut oldest = 0u32;
    g.bench_function("remove+insert/1M", |b| {
        b.iter(|| {
            let h = t.lookup(&key4(oldest)).unwrap();
            t.remove(&h);
            let ins = t
                .insert(key4(next), None, nc(next), TcpFlags::SYN, Time::ZERO)
                .unwrap();
            black_box(ins.handle);
            next += 1;
            oldest += 1;
        })
    });
    // A reload's new timeouts: every entry rebased, alternately to a
    // shorter timeout (every timer moves earlier) and back. Per entry.
    g.throughput(Throughput::Elements(t.entries() as u64));
    let mut shorter = false;
    g.bench_function("set_timeouts/1M", |b| {
        b.iter(|| {
            shorter = !shorter;
            let established = Duration::from_secs(if shorter { 300 } else { 900 });
            black_box(t.set_timeouts(Timeouts {
                established,
                ..Timeouts::default()
            }))
        })
    });
    g.throughput(Throughput::Elements(1));
    // Eviction path: a full table with the evict-oldest policy.
    let mut full = ConnTable4::new(
        ConnTableConfig {
            capacity: 1_000_000,
            full_policy: tack_dataplane::conn::FullPolicy::EvictOldest,
            ..ConnTableConfig::default()
        },
        Time::ZERO,
    )
    .unwrap();
    for i in 0..1_000_000u32 {
        full.insert(
            key4(i),
            None,
            nc(i),
            TcpFlags::SYN,
            Time(u64::from(i) * 1000),
        )
        .unwrap();
    }
    let mut next = 1_000_000u32;
    g.bench_function("insert_evicting/1M", |b| {
        b.iter(|| {
            let ins = full
                .insert(
                    key4(next),
                    None,
                    nc(next),
                    TcpFlags::SYN,
                    Time(u64::from(next) * 1000),
                )
                .unwrap();
            black_box(ins.evicted[0].is_some());
            next += 1;
        })
    });
    g.finish();
}

fn sticky_service(servers: usize) -> Config {
    let mut s = Service::new(
        IpAddr::V4(Ipv4Addr::new(192, 0, 2, 10)),
        Protocol::Tcp,
        Some(443),
    );
    s.scheduler = SchedulerKind::Maglev;
    s.persistence = Some(Persistence {
        key: ClientKeyRule::Prefix(24),
        timeout_minutes: 30,
    });
    s.servers = (0..servers)
        .map(|i| {
            RealServer::new(IpAddr::V4(Ipv4Addr::new(
                10,
                1,
                (i / 250) as u8,
                (i % 250) as u8 + 1,
            )))
        })
        .collect();
    Config::new(vec![s]).unwrap()
}

fn bench_sticky(c: &mut Criterion) {
    let mut g = c.benchmark_group("sticky");
    g.throughput(Throughput::Elements(1));
    g.sample_size(20);
    g.measurement_time(Duration::from_secs(3));
    let cfg = sticky_service(16);
    let n = 100_000u32;
    let mut t = StickyTable::new(
        StickyConfig {
            capacity: 2 * n as usize,
            ..StickyConfig::default()
        },
        Time::ZERO,
    )
    .unwrap();
    let src = |i: u32| IpAddr::V4(Ipv4Addr::from(scramble(i) << 8 | 9));
    for i in 0..n {
        t.resolve(&cfg, ServiceIdx(0), src(i), Time::ZERO);
    }
    t.drain_events().for_each(drop);
    let order = probe_order(n, 1 << 16);
    let mut pos = 0;
    g.bench_function("resolve_hit+release/100k", |b| {
        b.iter(|| {
            let s = src(order[pos]);
            pos = (pos + 1) % order.len();
            black_box(t.resolve(&cfg, ServiceIdx(0), s, Time::ZERO));
            t.release(&cfg, ServiceIdx(0), s, Time::ZERO);
        })
    });
    // Miss: a new key learned (rendezvous over 16 servers), then flushed.
    let mut next = n;
    g.bench_function("resolve_learn/16servers", |b| {
        b.iter_batched_ref(
            || {
                next += 1;
                src(next)
            },
            |s| {
                black_box(t.resolve(&cfg, ServiceIdx(0), *s, Time::ZERO));
                t.drain_events().for_each(drop);
            },
            BatchSize::SmallInput,
        )
    });
    g.finish();
}

fn backends(n: usize) -> Vec<Backend> {
    (0..n)
        .map(|i| Backend {
            index: ServerIdx(i as u16),
            weight: 1 + (i % 4) as u16,
            ident: hash::server_ident(
                IpAddr::V4(Ipv4Addr::new(10, 1, (i / 250) as u8, (i % 250) as u8 + 1)),
                Some(80),
            ),
        })
        .collect()
}

fn bench_sched(c: &mut Criterion) {
    let mut g = c.benchmark_group("maglev_build_65537");
    g.sample_size(10);
    g.measurement_time(Duration::from_secs(3));
    for &n in &[10usize, 100, 1000] {
        let b = backends(n);
        g.bench_function(format!("{n}_servers"), |bch| {
            bch.iter(|| black_box(Maglev::build(&b, 65_537).unwrap()))
        });
    }
    g.finish();

    let mut g = c.benchmark_group("sched_pick");
    g.throughput(Throughput::Elements(1));
    g.sample_size(20);
    g.measurement_time(Duration::from_secs(2));
    for kind in [
        SchedulerKind::WeightedRoundRobin,
        SchedulerKind::WeightedLeastConn,
        SchedulerKind::Maglev,
        SchedulerKind::Rendezvous,
    ] {
        for servers in [16usize, 128] {
            let mut cfg_s = sticky_service(servers);
            let mut svc = cfg_s.service(ServiceIdx(0)).unwrap().clone();
            svc.scheduler = kind;
            svc.persistence = None;
            cfg_s = Config::new(vec![svc]).unwrap();
            let mut st = SchedState::new(&cfg_s);
            let mut i = 0u32;
            g.bench_function(format!("{kind:?}/{servers}"), |b| {
                b.iter(|| {
                    i = i.wrapping_add(1);
                    let k = PickKey {
                        src: IpAddr::V4(Ipv4Addr::from(scramble(i))),
                        src_port: i as u16,
                        dst_port: 443,
                    };
                    black_box(st.pick(&cfg_s, ServiceIdx(0), &k))
                })
            });
        }
    }
    g.finish();
}

fn main() {
    let huge = tack_bench::huge_pages();
    let mut c = Criterion::default().configure_from_args();
    bench_lookup(&mut c);
    bench_insert(&mut c);
    bench_sticky(&mut c);
    bench_sched(&mut c);
    c.final_summary();
    let t = TOTALS.lock().unwrap_or_else(|e| e.into_inner());
    if t.is_empty() {
        return;
    }
    println!(
        "\nConnection table lookups (thread CPU time per key, warm-up included; \
         transparent huge pages {}; baseline: a plain hashbrown HashMap of the same keys, \
         looked up one by one, in the same run):\n",
        if huge { "requested" } else { "off" }
    );
    println!("| flows | burst lookup ns/key | + state update | HashMap ns/key | burst / HashMap |");
    println!("|---:|---:|---:|---:|---:|");
    let get = |name: String| {
        t.get(&name)
            .filter(|(_, n)| *n > 0)
            .map(|(d, n)| d.as_nanos() as f64 / *n as f64)
    };
    for n in flow_counts() {
        let l = get(format!("conn table burst lookup, {n} flows"));
        let u = get(format!("conn table burst lookup + state update, {n} flows"));
        let b = get(format!("hashbrown HashMap lookup, {n} flows"));
        let f = |x: Option<f64>| x.map_or_else(|| "–".to_string(), |x| format!("{x:.1}"));
        let r = match (l, b) {
            (Some(l), Some(b)) => format!("{:.2}", l / b),
            _ => "–".to_string(),
        };
        println!("| {n} | {} | {} | {} | {r} |", f(l), f(u), f(b));
    }
}
