//! The exception path to the kernel: for each data port a kernel TAP
//! interface (DPDK's `net_tap`) carrying the port's MAC address and
//! addresses, so that kernel programs — health checks, BGP/BFD daemons,
//! keepalived, ssh — reach the network through the DPDK ports unchanged.
//!
//! The workers hand what is for the host (traffic to the ports' own
//! addresses that the pipeline does not answer itself; control traffic
//! first, the rest rate-limited: `tack_dataplane::pipeline`'s host module)
//! to this path's thread over one ring each; it writes each frame to the
//! TAP interface of the port it arrived on. What the kernel writes to a TAP
//! interface is read by the same thread and handed to the worker that
//! transmits for that port (worker `port % workers`: one worker per port
//! keeps the kernel's frames in order), which sends it out as it is.
//!
//! The thread is not a worker: it runs on the housekeeping core(s) with
//! the control thread, polls while there is traffic and sleeps up to
//! [`MAX_SLEEP`] when there is none.

use std::net::IpAddr;
use std::process::Command;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::thread::JoinHandle;
use std::time::Duration;

use ipnet::IpNet;
use tack_dataplane::wire::EthernetAddress;
use tack_dpdk::ring::{Consumer, Producer};
use tack_dpdk::{Eal, Mbuf, Mempool, Port, PortConfig, RxQueue, TxQueue};

use crate::profile::{Profile, ROUTE_METRIC};

/// Longest sleep of the thread when there is no traffic.
pub const MAX_SLEEP: Duration = Duration::from_micros(500);
/// Frames moved per burst.
const BURST: usize = 64;

/// The exception path's counters (read by `tackctl` and the metrics).
#[derive(Debug, Default)]
pub struct ExceptionCounters {
    /// Frames written to a TAP interface (from the wire to the kernel).
    pub to_kernel: AtomicU64,
    /// Frames the kernel wrote, handed to a worker to send out.
    pub from_kernel: AtomicU64,
    /// Frames for the kernel dropped: its TAP interface did not take them.
    pub to_kernel_dropped: AtomicU64,
    /// Frames from the kernel dropped: the worker's ring was full.
    pub from_kernel_dropped: AtomicU64,
    /// Frames for the kernel with no TAP interface (exception path off, or
    /// a port without one).
    pub no_interface: AtomicU64,
}

impl ExceptionCounters {
    /// `name value` pairs, for `GET /counters` and the metrics (as
    /// [`crate::cluster::ClusterCounters::pairs`]).
    pub fn pairs(&self) -> Vec<(&'static str, u64)> {
        let r = |c: &AtomicU64| c.load(Ordering::Relaxed);
        vec![
            ("to_kernel", r(&self.to_kernel)),
            ("from_kernel", r(&self.from_kernel)),
            ("to_kernel_dropped", r(&self.to_kernel_dropped)),
            ("from_kernel_dropped", r(&self.from_kernel_dropped)),
            ("no_interface", r(&self.no_interface)),
        ]
    }
}

/// Why the exception path could not be set up.
#[derive(Debug, thiserror::Error)]
pub enum ExceptionError {
    /// The TAP device could not be created or started.
    #[error("port `{port}`: kernel interface `{tap}`: {source} (is /dev/net/tun there?)")]
    Tap {
        /// The data port.
        port: String,
        /// The TAP interface's name.
        tap: String,
        /// DPDK's reason.
        source: tack_dpdk::Error,
    },
    /// An address or route could not be set on the TAP interface.
    #[error("kernel interface `{tap}`: `ip {args}` failed: {why}")]
    Ip {
        /// The TAP interface's name.
        tap: String,
        /// The `ip` command's arguments.
        args: String,
        /// What it said.
        why: String,
    },
}

/// One data port's kernel interface.
struct Tap {
    port: Port,
    rx: RxQueue,
    tx: TxQueue,
}

/// The TAP interfaces, made before the workers start (their frames need
/// somewhere to go) and run by [`ExceptionPath::spawn`].
pub struct Taps {
    /// By data port (profile order); `None` when the path is off.
    taps: Vec<Option<Tap>>,
}

impl Taps {
    /// No interfaces: the exception path is off.
    pub fn none(n_ports: usize) -> Taps {
        Taps {
            taps: (0..n_ports).map(|_| None).collect(),
        }
    }

    /// Creates, for each port of `profile`, its TAP interface with the
    /// port's MAC address (`macs`, profile order), MTU and addresses, up,
    /// with the profile's routes if `exception.routes`.
    pub fn create(
        eal: Eal,
        profile: &Profile,
        macs: &[[u8; 6]],
        pool: Mempool,
    ) -> Result<Taps, ExceptionError> {
        let mut taps = Vec::new();
        for (i, (ps, mac)) in profile.ports.iter().zip(macs).enumerate() {
            let name = ps.tap_name();
            let tap_err = |source| ExceptionError::Tap {
                port: ps.name.clone(),
                tap: name.clone(),
                source,
            };
            let devargs = format!("net_tap_tack{i},iface={name},mac={}", EthernetAddress(*mac));
            let port = Port::open(eal, &devargs).map_err(tap_err)?;
            let cfg = PortConfig {
                rx_queues: 1,
                tx_queues: 1,
                rx_desc: 512,
                tx_desc: 512,
                mtu: ps.mtu,
                promiscuous: false,
                rx_ipv4_checksum: false,
                ..PortConfig::default()
            };
            let (mut rx, mut tx) = port.configure(&cfg, &[pool]).map_err(tap_err)?;
            port.start().map_err(tap_err)?;
            let tap = Tap {
                port,
                rx: rx.remove(0),
                tx: tx.remove(0),
            };
            ip(&name, &["link", "set", "dev", &name, "up"])?;
            for a in &ps.addresses {
                add_address(&name, a)?;
            }
            log::info!(
                "port `{}`: kernel interface `{name}` ({}) with {} address(es)",
                ps.name,
                EthernetAddress(*mac),
                ps.addresses.len()
            );
            taps.push(Some(tap));
        }
        if profile.exception.routes {
            for r in &profile.routes {
                // A route is the kernel's too when its next hop is on one
                // of the ports (validated: it is, or it names its port).
                let port = profile
                    .ports
                    .iter()
                    .position(|p| p.addresses.iter().any(|n| n.contains(&r.via)));
                let Some(p) = port else { continue };
                let name = profile.ports[p].tap_name();
                let prefix = r.prefix.to_string();
                let metric = ROUTE_METRIC.to_string();
                let via = r.via.to_string();
                let args = [
                    "route", "replace", &prefix, "via", &via, "dev", &name, "metric", &metric,
                ];
                ip(&name, &args)?;
            }
        }
        Ok(Taps { taps })
    }
}

/// `ip addr add` for a port address: IPv6 without duplicate address
/// detection (the address is the appliance's already: the port answers
/// for it).
fn add_address(tap: &str, a: &IpNet) -> Result<(), ExceptionError> {
    let cidr = a.to_string();
    match a.addr() {
        IpAddr::V4(_) => ip(tap, &["addr", "replace", &cidr, "dev", tap]),
        IpAddr::V6(_) => ip(tap, &["-6", "addr", "replace", &cidr, "dev", tap, "nodad"]),
    }
}

/// Runs `ip ARGS` (iproute2) for interface `tap`.
fn ip(tap: &str, args: &[&str]) -> Result<(), ExceptionError> {
    let fail = |why: String| ExceptionError::Ip {
        tap: tap.to_string(),
        args: args.join(" "),
        why,
    };
    let out = Command::new("ip")
        .args(args)
        .output()
        .map_err(|e| fail(e.to_string()))?;
    if out.status.success() {
        Ok(())
    } else {
        Err(fail(
            String::from_utf8_lossy(&out.stderr).trim().to_string(),
        ))
    }
}

/// The running exception path.
pub struct ExceptionPath {
    handle: Option<JoinHandle<Taps>>,
    stop: Arc<AtomicBool>,
    counters: Arc<ExceptionCounters>,
}

/// What the exception path's thread moves frames between.
pub struct ExceptionRings {
    /// From each worker: frames for the host.
    pub from_workers: Vec<Consumer<Mbuf>>,
    /// To each worker: frames the kernel sent, to transmit.
    pub to_workers: Vec<Producer<Mbuf>>,
    /// Profile port index by DPDK port id.
    pub port_index: Vec<Option<u16>>,
    /// DPDK port id by profile port index.
    pub port_ids: Vec<u16>,
}

impl ExceptionPath {
    /// Starts the thread moving frames between the workers and `taps`.
    pub fn spawn(taps: Taps, rings: ExceptionRings) -> std::io::Result<ExceptionPath> {
        let stop = Arc::new(AtomicBool::new(false));
        let counters = Arc::new(ExceptionCounters::default());
        let (s, c) = (stop.clone(), counters.clone());
        let handle = std::thread::Builder::new()
            .name("tack-exception".into())
            .spawn(move || run(taps, rings, &s, &c))?;
        Ok(ExceptionPath {
            handle: Some(handle),
            stop,
            counters,
        })
    }

    /// The counters, shared with the thread.
    pub fn counters(&self) -> Arc<ExceptionCounters> {
        self.counters.clone()
    }

    /// Stops the thread, then stops and closes the TAP devices (the kernel
    /// removes their interfaces). Call after the workers stopped.
    pub fn shutdown(mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(h) = self.handle.take() {
            match h.join() {
                Ok(taps) => {
                    for t in taps.taps.into_iter().flatten() {
                        let _ = t.port.stop();
                        let _ = t.port.close();
                    }
                }
                Err(_) => log::error!("the exception path's thread panicked"),
            }
        }
    }
}

/// The thread: until `stop`, frames from the workers to the TAP
/// interfaces, and from the TAP interfaces to the workers.
fn run(
    mut taps: Taps,
    mut rings: ExceptionRings,
    stop: &AtomicBool,
    c: &ExceptionCounters,
) -> Taps {
    let mut frames: Vec<Mbuf> = Vec::with_capacity(BURST);
    let mut by_port: Vec<Vec<Mbuf>> = taps.taps.iter().map(|_| Vec::new()).collect();
    let n_workers = rings.to_workers.len().max(1);
    let mut sleep = Duration::from_micros(1);
    while !stop.load(Ordering::Relaxed) {
        let mut busy = false;
        // Wire → kernel.
        for ring in &mut rings.from_workers {
            if ring.pop_burst(&mut frames, BURST) == 0 {
                continue;
            }
            busy = true;
            for m in frames.drain(..) {
                match rings
                    .port_index
                    .get(usize::from(m.port()))
                    .copied()
                    .flatten()
                {
                    Some(p) if taps.taps[usize::from(p)].is_some() => {
                        by_port[usize::from(p)].push(m)
                    }
                    _ => {
                        c.no_interface.fetch_add(1, Ordering::Relaxed);
                        drop(m);
                    }
                }
            }
        }
        for (p, q) in by_port.iter_mut().enumerate() {
            if q.is_empty() {
                continue;
            }
            let Some(tap) = taps.taps[p].as_mut() else {
                continue;
            };
            let n = q.len();
            let sent = tap.tx.tx_burst(q);
            c.to_kernel.fetch_add(sent as u64, Ordering::Relaxed);
            c.to_kernel_dropped
                .fetch_add((n - sent) as u64, Ordering::Relaxed);
            q.clear();
        }
        // Kernel → wire, through the worker that sends for the port.
        for (p, tap) in taps.taps.iter_mut().enumerate() {
            let Some(tap) = tap.as_mut() else { continue };
            if tap.rx.rx_burst(&mut frames, BURST as u16) == 0 {
                continue;
            }
            busy = true;
            let id = rings.port_ids[p];
            for m in &mut frames {
                m.set_port(id);
            }
            let n = frames.len();
            let sent = rings.to_workers[p % n_workers].push_burst(&mut frames);
            c.from_kernel.fetch_add(sent as u64, Ordering::Relaxed);
            c.from_kernel_dropped
                .fetch_add((n - sent) as u64, Ordering::Relaxed);
            frames.clear();
        }
        if busy {
            sleep = Duration::from_micros(1);
        } else {
            std::thread::sleep(sleep);
            sleep = (sleep * 2).min(MAX_SLEEP);
        }
    }
    // Frames still in the rings are freed with them.
    taps
}
