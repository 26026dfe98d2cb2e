//! `tackgen`: the throughput harness's traffic generator, on Tack's DPDK
//! bindings. It connects to a forwarder (`tack` or `dpdk-testpmd`) as the
//! client of a `net_memif` link, fills the forwarder's table with `--flows`
//! flows (one packet each, untimed), then sends the mix as fast as the link
//! takes it for `--seconds` on each of `--queues` queues (one lcore each)
//! and counts what comes back: packets, frames that fail the check
//! (`--check nat|same`), and the latency from the TSC each frame carries in
//! its payload. It prints one JSON object.
//!
//! ```sh
//! tackgen --socket /run/tack-bench.sock --flows 1000000 --seconds 5 \
//!     --proto udp --ip 4 --size 64 --new-share 0 --cpus 0 --file-prefix gen1
//! ```
//!
//! `--hook CMD` runs `sh -c CMD` with `TACKGEN_PHASE=start`, then `end`,
//! around the timed phase (the harness reads the forwarder's counters there),
//! each 300 ms after the phase before it ended.

#![forbid(unsafe_code)]

use std::path::PathBuf;
use std::process::Command;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use clap::{Parser, ValueEnum};
use hdrhistogram::Histogram;
use tack_bench::traffic::{FlowRng, Ip, Proto, Traffic};
use tack_dpdk::{Eal, Mbuf, Mempool, MempoolConfig, Port, PortConfig, RxQueue, TxQueue};

/// Most flows in the table (the new flows of a timed phase come on top).
const MAX_FLOWS: u64 = 1 << 32;
/// Frames per burst.
const BURST: usize = 32;
/// Pause before each hook, for the forwarder's published counters to
/// include what happened before it.
const SETTLE: Duration = Duration::from_millis(300);
/// One frame in this many has its latency recorded.
const LATENCY_SAMPLE: u64 = 4;

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum ProtoArg {
    Tcp,
    Udp,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum Check {
    /// Do not look at what comes back beyond its timestamp.
    None,
    /// As NAT to one of the servers (tack): addresses, TTL, checksums.
    Nat,
    /// Unchanged (testpmd io).
    Same,
}

/// Command line.
#[derive(Debug, Parser)]
#[command(about = "Tack's traffic generator for the throughput harness (memif client)")]
struct Cli {
    /// The forwarder's memif socket (it is the memif server).
    #[arg(long)]
    socket: PathBuf,
    /// EAL file prefix (unique per process on a shared machine).
    #[arg(long, default_value = "tackgen")]
    file_prefix: String,
    /// CPUs for the generator's lcores, one per queue (comma-separated).
    #[arg(long, default_value = "0")]
    cpus: String,
    /// Queue pairs (one generator lcore and one forwarder worker each).
    #[arg(long, default_value_t = 1)]
    queues: u16,
    /// Flows in the forwarder's table.
    #[arg(long, default_value_t = 1000)]
    flows: u64,
    /// Frame size in bytes without FCS (raised to headers + 8).
    #[arg(long, default_value_t = 64)]
    size: usize,
    /// Share (0..1) of the timed frames that open a new flow.
    #[arg(long, default_value_t = 0.0)]
    new_share: f64,
    /// Transport protocol.
    #[arg(long, value_enum, default_value_t = ProtoArg::Udp)]
    proto: ProtoArg,
    /// IP version (4 or 6).
    #[arg(long, default_value_t = 4)]
    ip: u8,
    /// Seconds of the timed phase.
    #[arg(long, default_value_t = 5.0)]
    seconds: f64,
    /// Stop the timed phase after this many frames sent (0: no limit).
    #[arg(long, default_value_t = 0)]
    packets: u64,
    /// What the frames that come back must look like.
    #[arg(long, value_enum, default_value_t = Check::None)]
    check: Check,
    /// Run `sh -c HOOK` at the start and end of the timed phase.
    #[arg(long)]
    hook: Option<String>,
    /// Stay connected, sending nothing, this many seconds after the timed
    /// phase (the forwarder's idle polls, for profilers).
    #[arg(long, default_value_t = 0.0)]
    hold: f64,
    /// Use DPDK hugepages (default: none, `--no-huge`).
    #[arg(long)]
    huge: bool,
}

/// What one queue's lcore counted in the timed phase.
#[derive(Debug, Default)]
struct QueueResult {
    sent: u64,
    received: u64,
    bad: u64,
    new_flows: u64,
    latency: Option<Histogram<u64>>,
}

/// Shared state of the lcores.
struct Shared {
    traffic: Traffic,
    pool: Mempool,
    flows: u64,
    queues: u64,
    new_share: f64,
    check: Check,
    limit: u64,
    /// Set when the warm-up is to end / the timed phase starts / ends.
    timed: AtomicBool,
    stop: AtomicBool,
    /// Warm-up frames sent and received, all queues.
    warm_sent: AtomicU64,
    warm_received: AtomicU64,
    /// Queues that sent their share of `--packets`.
    done: AtomicU64,
}

fn main() {
    let cli = Cli::parse();
    if let Err(e) = run(&cli) {
        eprintln!("tackgen: {e}");
        std::process::exit(1);
    }
}

fn run(cli: &Cli) -> Result<(), String> {
    let cpus: Vec<&str> = cli.cpus.split(',').filter(|c| !c.is_empty()).collect();
    if cli.queues == 0 || cpus.len() < cli.queues as usize {
        return Err(format!(
            "--queues {} needs as many --cpus (got {:?})",
            cli.queues, cli.cpus
        ));
    }
    if !(0.0..=1.0).contains(&cli.new_share) {
        return Err("--new-share is a share between 0 and 1".into());
    }
    // 172.16.0.0/12 holds 2^20 client addresses of 16384 ports each; the
    // timed phase's new flows come after the table's.
    if !(1..=MAX_FLOWS).contains(&cli.flows) {
        return Err(format!("--flows must be between 1 and {MAX_FLOWS}"));
    }
    if !(60..=9000).contains(&cli.size) {
        return Err("--size must be between 60 and 9000 bytes (without FCS)".into());
    }
    let ip = match cli.ip {
        4 => Ip::V4,
        6 => Ip::V6,
        other => return Err(format!("--ip {other}: 4 or 6")),
    };
    let proto = match cli.proto {
        ProtoArg::Tcp => Proto::Tcp,
        ProtoArg::Udp => Proto::Udp,
    };
    // lcore 0 (the main one, which only waits) shares the first CPU.
    let lcores = std::iter::once(format!("0@{}", cpus[0]))
        .chain((0..cli.queues as usize).map(|q| format!("{}@{}", q + 1, cpus[q])))
        .collect::<Vec<_>>()
        .join(",");
    let mut args = vec![
        "tackgen".to_string(),
        "--no-pci".into(),
        "--no-telemetry".into(),
        "--no-shconf".into(),
        format!("--file-prefix={}", cli.file_prefix),
        format!("--lcores={lcores}"),
        "--log-level=*:warning".into(),
    ];
    if !cli.huge {
        args.extend(["--no-huge".into(), "-m".into(), "512".into()]);
    }
    let eal = Eal::init(args.iter().map(String::as_str)).map_err(|e| e.to_string())?;
    let pool = Mempool::create(
        eal,
        "tackgen",
        &MempoolConfig {
            size: 32767,
            cache_size: 256,
            ..MempoolConfig::default()
        },
    )
    .map_err(|e| e.to_string())?;
    let devargs = format!(
        "net_memif_gen,role=client,id=0,socket={},socket-abstract=no",
        cli.socket.display()
    );
    let port = Port::open(eal, &devargs).map_err(|e| e.to_string())?;
    let (rxs, txs) = port
        .configure(
            &PortConfig {
                rx_queues: cli.queues,
                tx_queues: cli.queues,
                ..PortConfig::default()
            },
            &[pool],
        )
        .map_err(|e| e.to_string())?;
    connect(&port, &cli.socket)?;
    // The server side may see the link up a little after this side does;
    // frames sent before it has set its rings up are lost.
    std::thread::sleep(Duration::from_millis(300));
    let traffic = Traffic::new(proto, ip, cli.size);
    let shared = Arc::new(Shared {
        traffic,
        pool,
        flows: cli.flows,
        queues: u64::from(cli.queues),
        new_share: cli.new_share,
        check: cli.check,
        limit: cli.packets / u64::from(cli.queues),
        timed: AtomicBool::new(false),
        stop: AtomicBool::new(false),
        warm_sent: AtomicU64::new(0),
        warm_received: AtomicU64::new(0),
        done: AtomicU64::new(0),
    });
    let results = Arc::new(std::sync::Mutex::new(Vec::<QueueResult>::new()));
    let mut joins = Vec::new();
    for (q, (rx, tx)) in rxs.into_iter().zip(txs).enumerate() {
        let (shared, results) = (shared.clone(), results.clone());
        let join = eal
            .launch(q as u32 + 1, move || {
                let r = queue_loop(&shared, q as u64, rx, tx);
                results.lock().unwrap_or_else(|e| e.into_inner()).push(r);
                0
            })
            .map_err(|e| e.to_string())?;
        joins.push(join);
    }
    // Warm-up: until every flow was sent and all came back, or nothing
    // more came back for a second.
    let started = Instant::now();
    let (mut last_got, mut last_change) = (0, Instant::now());
    loop {
        std::thread::sleep(Duration::from_millis(20));
        let sent = shared.warm_sent.load(Ordering::Relaxed);
        let got = shared.warm_received.load(Ordering::Relaxed);
        if got != last_got {
            (last_got, last_change) = (got, Instant::now());
        }
        let all_sent = sent >= cli.flows;
        if all_sent && (got >= sent || last_change.elapsed() > Duration::from_secs(1)) {
            break;
        }
    }
    let warm = (
        shared.warm_sent.load(Ordering::Relaxed),
        shared.warm_received.load(Ordering::Relaxed),
        started.elapsed(),
    );
    // The forwarder's published counters catch up (tack: every 100 ms).
    std::thread::sleep(SETTLE);
    hook(cli, "start")?;
    let t0 = Instant::now();
    shared.timed.store(true, Ordering::Release);
    let timed_for = Duration::from_secs_f64(cli.seconds);
    while t0.elapsed() < timed_for {
        std::thread::sleep(Duration::from_millis(10));
        if shared.done.load(Ordering::Relaxed) == u64::from(cli.queues) {
            // Every frame sent: wait for the last ones to come back.
            std::thread::sleep(Duration::from_millis(200));
            break;
        }
    }
    shared.stop.store(true, Ordering::Release);
    for j in joins {
        j.join();
    }
    let elapsed = t0.elapsed().as_secs_f64();
    std::thread::sleep(SETTLE + Duration::from_secs_f64(cli.hold));
    hook(cli, "end")?;
    let stats = port.stats().ok();
    let _ = port.stop();
    let _ = port.close();
    let results = std::mem::take(&mut *results.lock().unwrap_or_else(|e| e.into_inner()));
    report(cli, &shared.traffic, warm, elapsed, &results, stats);
    Ok(())
}

/// Starts the memif client `port` until its link is up, for at most 20 s.
/// A server that is not ready yet (its port not configured and started)
/// refuses the connection, and memif does not try again: start again.
fn connect(port: &Port, socket: &std::path::Path) -> Result<(), String> {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        if port.start().is_ok() {
            let attempt = Instant::now() + Duration::from_secs(2);
            while Instant::now() < attempt {
                if port.link().is_ok_and(|l| l.up) {
                    return Ok(());
                }
                std::thread::sleep(Duration::from_millis(20));
            }
            let _ = port.stop();
        }
        if Instant::now() > deadline {
            return Err(format!("memif on {} did not connect", socket.display()));
        }
        std::thread::sleep(Duration::from_millis(200));
    }
}

fn hook(cli: &Cli, phase: &str) -> Result<(), String> {
    let Some(cmd) = &cli.hook else { return Ok(()) };
    let st = Command::new("sh")
        .args(["-c", cmd])
        .env("TACKGEN_PHASE", phase)
        .status()
        .map_err(|e| format!("hook: {e}"))?;
    if st.success() {
        Ok(())
    } else {
        Err(format!("hook {cmd:?} ({phase}) failed: {st}"))
    }
}

/// Fills a burst of up to `n` frames, reusing `spare` mbufs first.
fn fill(
    s: &Shared,
    spare: &mut Vec<Mbuf>,
    out: &mut Vec<Mbuf>,
    n: usize,
    mut next: impl FnMut() -> (u64, bool),
) {
    let len = s.traffic.len();
    let tsc = tack_dpdk::rdtsc();
    while out.len() < n {
        let m = match spare.pop() {
            Some(mut m) => m.set_len(len).then_some(m),
            None => s.pool.alloc().and_then(|mut m| {
                m.append(len as u16)?;
                Some(m)
            }),
        };
        let Some(mut m) = m else { break };
        let (flow, first) = next();
        s.traffic.build(m.data_mut(), flow, first, tsc);
        out.push(m);
    }
}

/// One queue: warm-up (each of its flows once), then the timed phase.
fn queue_loop(s: &Shared, q: u64, mut rx: RxQueue, mut tx: TxQueue) -> QueueResult {
    let mut r = QueueResult::default();
    let mut hist = Histogram::<u64>::new_with_bounds(1, 10_000_000_000, 3).ok();
    let ns_per_cycle = 1e9 / tack_dpdk::tsc_hz() as f64;
    let mut got: Vec<Mbuf> = Vec::with_capacity(BURST);
    let mut spare: Vec<Mbuf> = Vec::with_capacity(BURST * 2);
    let mut out: Vec<Mbuf> = Vec::with_capacity(BURST);
    // This queue's flows: q, q + queues, ...
    let mine = s.flows.div_ceil(s.queues).max(1);
    let mut warm_next = 0u64;
    let mut rng = FlowRng::new(0x9e37_79b9_7f4a_7c15 ^ (q + 1));
    let mut new_flow = 0u64;
    let new_threshold = (s.new_share * u64::MAX as f64) as u64;
    let mut timed = false;
    let mut stamp_seen = 0u64;
    let mut reached = false;
    loop {
        if !timed && s.timed.load(Ordering::Acquire) {
            timed = true;
        }
        if s.stop.load(Ordering::Relaxed) {
            break;
        }
        let sending = !(timed && s.limit > 0 && r.sent >= s.limit);
        if !sending && !reached {
            reached = true;
            s.done.fetch_add(1, Ordering::Relaxed);
        }
        // Receive what came back.
        let n = rx.rx_burst(&mut got, BURST as u16);
        if n > 0 {
            if timed {
                r.received += n as u64;
                let now = tack_dpdk::rdtsc();
                for m in &got {
                    let f = m.data();
                    let ok = match s.check {
                        Check::None => Ok(()),
                        Check::Nat => s.traffic.check_nat(f),
                        Check::Same => s.traffic.check_same(f),
                    };
                    if ok.is_err() {
                        r.bad += 1;
                    }
                    stamp_seen += 1;
                    if stamp_seen.is_multiple_of(LATENCY_SAMPLE)
                        && let (Some(h), Some(ts)) = (hist.as_mut(), s.traffic.stamp(f))
                    {
                        let ns = (now.wrapping_sub(ts) as f64 * ns_per_cycle) as u64;
                        let _ = h.record(ns.max(1));
                    }
                }
            } else {
                s.warm_received.fetch_add(n as u64, Ordering::Relaxed);
            }
            spare.append(&mut got);
        }
        // Send.
        if out.is_empty() && sending {
            if timed {
                let n = if s.limit > 0 {
                    BURST.min((s.limit - r.sent) as usize)
                } else {
                    BURST
                };
                fill(s, &mut spare, &mut out, n, || {
                    if new_threshold > 0 && rng.next_u64() < new_threshold {
                        new_flow += 1;
                        // New flows beyond every queue's table share.
                        (s.flows + (new_flow * s.queues + q), true)
                    } else {
                        (rng.below(mine) * s.queues + q, false)
                    }
                });
            } else if warm_next < mine {
                let left = (mine - warm_next) as usize;
                fill(s, &mut spare, &mut out, BURST.min(left), || {
                    let f = warm_next * s.queues + q;
                    warm_next += 1;
                    // TCP flows are picked up mid-stream (ACK|PSH).
                    (f, false)
                });
            }
            // Keep a bounded stock of spare mbufs.
            spare.truncate(BURST * 2);
        }
        if !out.is_empty() {
            let before = out.len();
            tx.tx_burst(&mut out);
            let sent = (before - out.len()) as u64;
            if timed {
                r.sent += sent;
            } else {
                s.warm_sent.fetch_add(sent, Ordering::Relaxed);
            }
        }
    }
    r.new_flows = new_flow;
    r.latency = hist;
    r
}

/// Prints the run as one JSON object.
fn report(
    cli: &Cli,
    t: &Traffic,
    warm: (u64, u64, Duration),
    secs: f64,
    results: &[QueueResult],
    stats: Option<tack_dpdk::PortStats>,
) {
    let sent: u64 = results.iter().map(|r| r.sent).sum();
    let received: u64 = results.iter().map(|r| r.received).sum();
    let bad: u64 = results.iter().map(|r| r.bad).sum();
    let new_flows: u64 = results.iter().map(|r| r.new_flows).sum();
    let mut all = Histogram::<u64>::new_with_bounds(1, 10_000_000_000, 3).ok();
    for r in results {
        if let (Some(a), Some(h)) = (all.as_mut(), r.latency.as_ref()) {
            let _ = a.add(h);
        }
    }
    let pct = |p: f64| {
        all.as_ref()
            .filter(|h| !h.is_empty())
            .map_or(0, |h| h.value_at_quantile(p))
    };
    let (imissed, oerrors) = stats.map_or((0, 0), |s| (s.imissed, s.oerrors));
    // The latency distribution: (quantile, ns) at every 2 % and in the tail.
    let cdf = (0..=50)
        .map(|i| f64::from(i) / 50.0)
        .chain([0.99, 0.999, 0.9999])
        .map(|q| format!("[{q},{}]", pct(q)))
        .collect::<Vec<_>>()
        .join(",");
    println!(
        "{{\"proto\":\"{}\",\"ip\":{},\"size\":{},\"flows\":{},\"new_share\":{},\"queues\":{},\
\"warm_sent\":{},\"warm_received\":{},\"warm_seconds\":{:.3},\"seconds\":{secs:.3},\
\"sent\":{sent},\"received\":{received},\"bad\":{bad},\"new_flows\":{new_flows},\
\"tx_mpps\":{:.3},\"rx_mpps\":{:.3},\"lat_p50_ns\":{},\"lat_p90_ns\":{},\"lat_p99_ns\":{},\
\"lat_p999_ns\":{},\"lat_cdf\":[{cdf}],\"gen_imissed\":{imissed},\"gen_oerrors\":{oerrors}}}",
        if cli.proto == ProtoArg::Tcp {
            "tcp"
        } else {
            "udp"
        },
        cli.ip,
        t.len(),
        cli.flows,
        cli.new_share,
        cli.queues,
        warm.0,
        warm.1,
        warm.2.as_secs_f64(),
        sent as f64 / secs / 1e6,
        received as f64 / secs / 1e6,
        pct(0.5),
        pct(0.9),
        pct(0.99),
        pct(0.999),
    );
}
