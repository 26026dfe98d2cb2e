//! Bringing the appliance up and down: EAL, mempools, ports, one worker per
//! (port, receive queue) on its lcore with its rings, and the control plane
//! on the main lcore.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, SystemTime};

use tack_dataplane::pipeline::{FnatTuple, Pipeline, PipelineConfig, WorkerSpec};
use tack_dataplane::wire::EthernetAddress;
use tack_dpdk::ring::{self, Consumer, Producer};
use tack_dpdk::{
    Eal, LcoreJoin, Mbuf, Mempool, MempoolConfig, Port, PortConfig, RssConfig, RxQueue, TxQueue,
};

use crate::clock::TscClock;
use crate::ctl::ControlPlane;
use crate::exception::{ExceptionError, ExceptionPath, ExceptionRings, Taps};
use crate::msg::{FromWorker, ToWorker};
use crate::profile::{FieldError, Profile, Steering, parse_hex, pipeline_config};
use crate::quarantine;
use crate::report::RunReport;
use crate::worker::{Worker, WorkerRings};

/// Why the appliance could not start. Displayed as one line naming the part
/// at fault, with DPDK's or the pipeline's reason.
#[derive(Debug, thiserror::Error)]
pub enum RunError {
    /// EAL initialisation failed.
    #[error("EAL: {0}")]
    Eal(#[source] tack_dpdk::Error),
    /// A mempool could not be created.
    #[error("mempool: {0}")]
    Mempool(#[source] tack_dpdk::Error),
    /// A port's device could not be opened.
    #[error(
        "port `{port}`: cannot open device `{device}`: {source} (no such DPDK driver or device?)"
    )]
    PortOpen {
        /// The port's name in the profile.
        port: String,
        /// Its device string.
        device: String,
        /// DPDK's reason.
        source: tack_dpdk::Error,
    },
    /// A port could not be configured or started.
    #[error("port `{port}` ({device}): {source}")]
    PortSetup {
        /// The port's name in the profile.
        port: String,
        /// Its device string.
        device: String,
        /// DPDK's reason.
        source: tack_dpdk::Error,
    },
    /// The profile's MAC address could not be set on a port.
    #[error("port `{port}`: cannot set MAC: {source}")]
    PortMac {
        /// The port's name in the profile.
        port: String,
        /// DPDK's reason.
        source: tack_dpdk::Error,
    },
    /// A started port's MAC address or device information could not be read.
    #[error("port `{port}`: {source}")]
    PortInfo {
        /// The port's name in the profile.
        port: String,
        /// DPDK's reason.
        source: tack_dpdk::Error,
    },
    /// The profile's services or routes do not make a pipeline configuration.
    #[error(transparent)]
    Profile(#[from] FieldError),
    /// A ring between the control thread and the workers could not be created.
    #[error("ring: {0}")]
    Ring(#[source] tack_dpdk::Error),
    /// A worker's pipeline refused its configuration.
    #[error("worker {worker} (lcore {lcore}): {source}")]
    Pipeline {
        /// The worker's index.
        worker: usize,
        /// Its lcore.
        lcore: u32,
        /// The pipeline's reason.
        source: tack_dataplane::pipeline::ConfigError,
    },
    /// The exception path could not be set up.
    #[error("exception path: {0}")]
    Exception(#[from] ExceptionError),
    /// The cluster link could not be started.
    #[error("cluster: {0}")]
    Cluster(String),
    /// A thread of the control plane could not be started.
    #[error("thread: {0}")]
    Thread(#[source] std::io::Error),
    /// A worker could not be launched on its lcore.
    #[error("worker {worker}: {source}")]
    Launch {
        /// The worker's index.
        worker: usize,
        /// DPDK's reason.
        source: tack_dpdk::Error,
    },
}

/// Removes the EAL runtime directory of the process's own file prefix
/// (`/var/run/dpdk/tack<PID>`, see [`Profile::eal_runtime_dirs`]) when
/// dropped, if it is empty: EAL leaves it behind otherwise. Made before
/// EAL starts, dropped at exit.
#[derive(Debug)]
pub struct EalRuntimeDir {
    dirs: Vec<std::path::PathBuf>,
}

impl EalRuntimeDir {
    /// The guard for `profile`'s runtime directory (none when the profile
    /// uses a shared prefix).
    pub fn new(profile: &Profile) -> EalRuntimeDir {
        EalRuntimeDir {
            dirs: profile.eal_runtime_dirs(),
        }
    }
}

impl Drop for EalRuntimeDir {
    fn drop(&mut self) {
        for d in &self.dirs {
            // Only an empty directory is removed; a missing one was never made.
            match std::fs::remove_dir(d) {
                Ok(()) => log::debug!("removed EAL runtime directory {}", d.display()),
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => log::info!("EAL runtime directory {} left: {e}", d.display()),
            }
        }
    }
}

/// A started port.
#[derive(Debug)]
pub struct RunningPort {
    /// Its name in the profile.
    pub name: String,
    /// The DPDK port.
    pub port: Port,
    /// Its MAC address.
    pub mac: [u8; 6],
}

/// Ring sizes.
const CONTROL_RING: u32 = 1024;
const HOST_RING: u32 = 1024;
const STEER_RING: u32 = 4096;

/// The running appliance.
pub struct Appliance {
    ports: Vec<RunningPort>,
    joins: Vec<LcoreJoin>,
    stop: Arc<AtomicBool>,
    exception: Option<ExceptionPath>,
    pools: Vec<Mempool>,
    /// Mbufs drivers keep after their close by design ([`AF_XDP_FILL_RING`]).
    mbufs_kept_by_drivers: u32,
    /// Where the full-NAT tuples are saved at stop (`None` without full NAT).
    quarantine_file: Option<PathBuf>,
    /// Tuples of the previous instance kept out of the port choice, and for how long.
    quarantined: (usize, Duration),
    /// Where the full-NAT port walks resumed from the previous instance's
    /// checkpoint, if they did.
    resumed: Option<quarantine::walk::Resume>,
    /// The control plane (owned by the main lcore).
    pub control: ControlPlane,
}

/// The mbufs DPDK 22.11's `net_af_xdp` keeps in the fill ring of each
/// queue (`ETH_AF_XDP_DFLT_NUM_DESCS`): reserved when the queue is set up,
/// refilled after every receive, and not given back when the port closes.
pub const AF_XDP_FILL_RING: u32 = 2048;

impl Appliance {
    /// Initialises EAL, sets up and starts every port, and launches the workers.
    pub fn start(profile: &Profile) -> Result<Appliance, RunError> {
        let eal = Eal::init(profile.eal_args()).map_err(RunError::Eal)?;
        let n_workers = profile.workers.len();
        let mp = &profile.mempool;
        // net_af_xdp (DPDK 22.11) keeps a full fill ring of mbufs per queue
        // after its close...
        let mbufs_kept_by_drivers: u32 = profile
            .ports
            .iter()
            .filter(|p| p.device.starts_with("net_af_xdp"))
            .map(|p| u32::from(p.rx_queues) * AF_XDP_FILL_RING)
            .sum();
        // ...and registers the pool's memory as its UMEM assuming the
        // objects tile it: no padding between them.
        let af_xdp = mbufs_kept_by_drivers > 0;
        // One pool per NUMA socket in use by a worker.
        let mut pools_by_socket: BTreeMap<u32, Mempool> = BTreeMap::new();
        for w in &profile.workers {
            let socket = eal.lcore_socket(w.lcore);
            if let std::collections::btree_map::Entry::Vacant(e) = pools_by_socket.entry(socket) {
                let pool = Mempool::create(
                    eal,
                    &format!("tack_pool_s{socket}"),
                    &MempoolConfig {
                        size: mp.mbufs,
                        cache_size: mp.cache,
                        data_room: mp.data_room,
                        socket: Some(socket),
                        no_spread: af_xdp,
                    },
                )
                .map_err(RunError::Mempool)?;
                if af_xdp && 4096 % pool.object_size() != 0 {
                    log::warn!(
                        "net_af_xdp: the pool's objects are {} bytes, which do not tile 4096-byte pages: \
                         DPDK 22.11's net_af_xdp cannot use the mbufs past the first ones (mempool.data_room: \
                         3904 makes 4096-byte objects)",
                        pool.object_size()
                    );
                }
                e.insert(pool);
            }
        }
        let pool_of = |lcore: u32| pools_by_socket[&eal.lcore_socket(lcore)];

        // Ports: open, configure (tx queue i belongs to worker i), start.
        let mut ports = Vec::new();
        let mut rxqs: Vec<Vec<Option<RxQueue>>> = Vec::new();
        let mut txqs: Vec<Vec<Option<TxQueue>>> = Vec::new();
        let mut rss_keys: Vec<Option<Vec<u8>>> = Vec::new();
        let mut port_index: Vec<Option<u16>> = Vec::new();
        for (pi, ps) in profile.ports.iter().enumerate() {
            let port = Port::open(eal, &ps.device).map_err(|source| RunError::PortOpen {
                port: ps.name.clone(),
                device: ps.device.clone(),
                source,
            })?;
            let setup_err = |source| RunError::PortSetup {
                port: ps.name.clone(),
                device: ps.device.clone(),
                source,
            };
            let info_err = |source| RunError::PortInfo {
                port: ps.name.clone(),
                source,
            };
            let key = ps.rss_key.as_deref().and_then(parse_hex);
            let cfg = PortConfig {
                rx_queues: ps.rx_queues,
                tx_queues: n_workers as u16,
                rx_desc: ps.rx_desc,
                tx_desc: ps.tx_desc,
                mtu: ps.mtu,
                promiscuous: ps.promiscuous,
                rss: RssConfig {
                    key: key.clone(),
                    ..RssConfig::default()
                },
                rx_ipv4_checksum: true,
            };
            // Receive queue q takes buffers from the pool of the worker polling it.
            let pools: Vec<Mempool> = (0..ps.rx_queues)
                .map(|q| {
                    let w = profile
                        .workers
                        .iter()
                        .find(|w| w.port == ps.name && w.queue == q);
                    w.map_or_else(
                        || *pools_by_socket.values().next().expect("a pool"),
                        |w| pool_of(w.lcore),
                    )
                })
                .collect();
            let (rx, tx) = port.configure(&cfg, &pools).map_err(setup_err)?;
            // A configured MAC is set on the device; devices that cannot (pcap,
            // af_packet) receive everything in promiscuous mode, so the pipeline
            // can still use it as the port's address.
            let mut soft_mac = None;
            if let Some(mac) = ps.mac {
                match port.set_mac(mac.0) {
                    Ok(()) => {}
                    Err(e) if e.errno == libc::ENOTSUP && ps.promiscuous => {
                        log::info!(
                            "port `{}`: device cannot change its MAC; using {} in software",
                            ps.name,
                            EthernetAddress(mac.0)
                        );
                        soft_mac = Some(mac.0);
                    }
                    Err(source) => {
                        return Err(RunError::PortMac {
                            port: ps.name.clone(),
                            source,
                        });
                    }
                }
            }
            port.start().map_err(setup_err)?;
            let mac = match soft_mac {
                Some(m) => m,
                None => port.mac().map_err(info_err)?,
            };
            let info = port.info().map_err(info_err)?;
            // The pipeline steers flows to workers as the NIC's RSS does when the
            // NIC hashes with RSS and worker i polls its queue i (then NIC and
            // pipeline agree and frames rarely move between workers). Otherwise
            // it assumes software steering over the workers (key `None`).
            let queue_i_is_worker_i = ps.rx_queues as usize == n_workers
                && profile
                    .workers
                    .iter()
                    .enumerate()
                    .all(|(i, w)| w.port == ps.name && w.queue as usize == i);
            let key_in_use = if ps.rx_queues > 1 && info.rss_hash_types != 0 && queue_i_is_worker_i
            {
                port.rss_key().ok().flatten().or(key)
            } else {
                None
            };
            log::info!(
                "port `{}`: {} driver {} mac {} rx queues {} tx queues {}, IPv4 header checksums checked by {}",
                ps.name,
                ps.device,
                info.driver,
                EthernetAddress(mac),
                ps.rx_queues,
                n_workers,
                if cfg.rx_ipv4_checksum && info.offers_rx_ipv4_checksum() {
                    "the NIC"
                } else {
                    "the workers"
                }
            );
            let id = port.id() as usize;
            if port_index.len() <= id {
                port_index.resize(id + 1, None);
            }
            port_index[id] = Some(pi as u16);
            rss_keys.push(key_in_use);
            rxqs.push(rx.into_iter().map(Some).collect());
            txqs.push(tx.into_iter().map(Some).collect());
            ports.push(RunningPort {
                name: ps.name.clone(),
                port,
                mac,
            });
        }

        let macs: Vec<[u8; 6]> = ports.iter().map(|p| p.mac).collect();
        // The kernel interfaces exist before any worker can hand them a frame.
        let taps = if profile.exception.enabled {
            let pool = *pools_by_socket.values().next().expect("a pool");
            Taps::create(eal, profile, &macs, pool)?
        } else {
            Taps::none(ports.len())
        };
        let cfg = Arc::new(pipeline_config(profile, &macs)?);

        // Rings: control ↔ worker both ways, host frames, worker → worker steering.
        let mut to_workers: Vec<Producer<Box<ToWorker>>> = Vec::new();
        let mut from_control: Vec<Option<Consumer<Box<ToWorker>>>> = Vec::new();
        let mut from_workers: Vec<Consumer<Box<FromWorker>>> = Vec::new();
        let mut to_control: Vec<Option<Producer<Box<FromWorker>>>> = Vec::new();
        let mut host_in: Vec<Consumer<Mbuf>> = Vec::new();
        let mut host_out: Vec<Option<Producer<Mbuf>>> = Vec::new();
        let mut kernel_in: Vec<Option<Consumer<Mbuf>>> = Vec::new();
        let mut kernel_out: Vec<Producer<Mbuf>> = Vec::new();
        for i in 0..n_workers {
            let (p, c) =
                ring::spsc(eal, &format!("c2w{i}"), CONTROL_RING).map_err(RunError::Ring)?;
            to_workers.push(p);
            from_control.push(Some(c));
            let (p, c) =
                ring::spsc(eal, &format!("w2c{i}"), CONTROL_RING).map_err(RunError::Ring)?;
            to_control.push(Some(p));
            from_workers.push(c);
            let (p, c) = ring::spsc(eal, &format!("host{i}"), HOST_RING).map_err(RunError::Ring)?;
            host_out.push(Some(p));
            host_in.push(c);
            let (p, c) =
                ring::spsc(eal, &format!("kernel{i}"), HOST_RING).map_err(RunError::Ring)?;
            kernel_out.push(p);
            kernel_in.push(Some(c));
        }
        let steering = n_workers > 1 && profile.runtime.steering == Steering::Auto;
        let mut steer_out: Vec<Vec<Option<Producer<Mbuf>>>> =
            (0..n_workers).map(|_| Vec::new()).collect();
        let mut steer_in: Vec<Vec<Consumer<Mbuf>>> = (0..n_workers).map(|_| Vec::new()).collect();
        for (from, outs) in steer_out.iter_mut().enumerate() {
            for (to, ins) in steer_in.iter_mut().enumerate() {
                if !steering || from == to {
                    outs.push(None);
                    continue;
                }
                let (p, c) = ring::spsc(eal, &format!("st{from}_{to}"), STEER_RING)
                    .map_err(RunError::Ring)?;
                outs.push(Some(p));
                ins.push(c);
            }
        }

        let quarantine_file = profile
            .services
            .iter()
            .any(|s| !s.local_addresses.is_empty())
            .then(|| profile.fnat_quarantine_path());
        let (q_tuples, q_period) = quarantine_file
            .as_deref()
            .map(|f| load_quarantine(f, profile))
            .unwrap_or_default();
        let resumed = quarantine_file
            .is_some()
            .then(|| resume_walks(profile, &cfg))
            .flatten();
        let stop = Arc::new(AtomicBool::new(false));
        let clock = TscClock::new(tack_dpdk::tsc_hz());
        let mut joins = Vec::new();
        for (i, w) in profile.workers.iter().enumerate() {
            let port_idx = profile
                .ports
                .iter()
                .position(|p| p.name == w.port)
                .expect("validated");
            let rx = rxqs[port_idx][w.queue as usize]
                .take()
                .expect("validated: one worker per queue");
            let tx: Vec<TxQueue> = txqs
                .iter_mut()
                .map(|t| t[i].take().expect("one tx queue per worker"))
                .collect();
            let spec = WorkerSpec {
                index: i as u16,
                n_workers: n_workers as u16,
                queue: w.queue,
                rx_queues: profile.ports.iter().map(|p| p.rx_queues).collect(),
                rss_key: rss_keys.clone(),
            };
            let mut pipeline =
                Pipeline::new(cfg.clone(), spec).map_err(|source| RunError::Pipeline {
                    worker: i,
                    lcore: w.lcore,
                    source,
                })?;
            if !q_tuples.is_empty() {
                pipeline.quarantine_fnat(q_tuples.iter().copied(), q_period);
            }
            if let Some(c) = resumed.as_ref().and_then(|r| r.cursors.get(i)) {
                pipeline.resume_fnat_walk(c);
            }
            let worker = Worker {
                index: i,
                rx_port: port_idx as u16,
                rx,
                tx,
                port_index: port_index.clone(),
                pipeline,
                pool: pool_of(w.lcore),
                rings: WorkerRings {
                    from_control: from_control[i].take().expect("one per worker"),
                    to_control: to_control[i].take().expect("one per worker"),
                    host: host_out[i].take().expect("one per worker"),
                    from_host: kernel_in[i].take().expect("one per worker"),
                    steer_out: std::mem::take(&mut steer_out[i]),
                    steer_in: std::mem::take(&mut steer_in[i]),
                },
                steering,
                stop: stop.clone(),
                idle: profile.runtime.idle,
                idle_sleep_max: Duration::from_micros(profile.runtime.idle_sleep_max_us as u64),
                burst: profile.runtime.burst,
                clock,
                stats_interval_ns: profile.runtime.stats_interval_ms as u64 * 1_000_000,
            };
            let join = eal
                .launch(w.lcore, move || {
                    worker.run();
                    0
                })
                .map_err(|source| RunError::Launch { worker: i, source })?;
            joins.push(join);
        }
        let exception = ExceptionPath::spawn(
            taps,
            ExceptionRings {
                from_workers: host_in,
                to_workers: kernel_out,
                port_index: port_index.clone(),
                port_ids: ports.iter().map(|p| p.port.id()).collect(),
            },
        )
        .map_err(RunError::Thread)?;
        let mut control = ControlPlane::new(profile.clone(), macs, cfg, to_workers, from_workers);
        control.set_ports(ports.iter().map(|p| p.port).collect());
        control.set_exception_counters(exception.counters());
        control.start_health_checks().map_err(RunError::Thread)?;
        control.start_cluster().map_err(RunError::Cluster)?;
        if quarantine_file.is_some() {
            control.set_walk_checkpoints(quarantine::walk::Checkpointer::new(
                profile.fnat_walk_path(),
                Duration::from_secs(profile.tables.timeouts.tcp_time_wait),
            ));
        }
        Ok(Appliance {
            ports,
            joins,
            stop,
            exception: Some(exception),
            pools: pools_by_socket.into_values().collect(),
            mbufs_kept_by_drivers,
            quarantine_file,
            quarantined: (q_tuples.len(), q_period),
            resumed,
            control,
        })
    }

    /// The started ports.
    pub fn ports(&self) -> &[RunningPort] {
        &self.ports
    }

    /// How many full-NAT tuples of the previous instance this one keeps
    /// out of its port choice, and for how long from its start.
    pub fn quarantined(&self) -> (usize, Duration) {
        self.quarantined
    }

    /// Where the workers' full-NAT port walks resumed from the previous
    /// instance's checkpoint (`None`: they start where a fresh start does).
    pub fn resumed(&self) -> Option<&quarantine::walk::Resume> {
        self.resumed.as_ref()
    }

    /// Saves the full-NAT tuples of the workers' tables for the next
    /// instance (while the workers still run: they answer the query).
    fn save_quarantine(&mut self) {
        let Some(path) = self.quarantine_file.clone() else {
            return;
        };
        let saved = self
            .control
            .fnat_tuples()
            .map_err(|e| e.to_string())
            .and_then(|t| {
                quarantine::save(&path, &t, SystemTime::now())
                    .map(|()| t.len())
                    .map_err(|e| e.to_string())
            });
        match saved {
            Ok(n) => log::info!("saved {n} full-NAT tuples to {}", path.display()),
            Err(e) => log::warn!("full-NAT tuples not saved: {e}"),
        }
    }

    /// Mbufs handed out by the pools (receive rings, queues, rings, in flight).
    pub fn mbufs_in_use(&self) -> u32 {
        self.pools.iter().map(Mempool::in_use).sum()
    }

    /// Stops the workers, reads every port's counters, then stops and
    /// closes the ports, and reports the final counters.
    ///
    /// The port counters are read once no worker sends or receives any
    /// more, and before any port stops: a driver may clear its counters
    /// when its port stops (memif forgets them when it disconnects), and
    /// stopping one port may disconnect another (two memif ends in one
    /// process). What the control thread read while running counts too
    /// ([`crate::report::PortTotals`]): a memif port whose peer left
    /// before `tack` stopped reports what it had counted.
    pub fn shutdown(mut self) -> RunReport {
        self.save_quarantine();
        self.stop.store(true, Ordering::Relaxed);
        for j in self.joins.drain(..) {
            let rc = j.join();
            if rc != 0 {
                log::error!("a worker ended with status {rc}");
            }
        }
        // Nothing more to or from the kernel: stop its thread and remove
        // the TAP interfaces.
        if let Some(e) = self.exception.take() {
            e.shutdown();
        }
        // Take the workers' last words (final counters, events), and where
        // their full-NAT port walks ended.
        self.control.tick();
        self.control.checkpoint_walks(true);
        let mut report = RunReport::default();
        self.control.sample_ports();
        let totals = self.control.port_totals();
        for (p, stats) in self.ports.iter().zip(totals) {
            report.ports.push((p.name.clone(), stats));
        }
        for p in &self.ports {
            if let Err(e) = p.port.stop() {
                log::warn!("port `{}`: {e}", p.name);
            }
        }
        report.workers = self.control.snapshots().to_vec();
        for p in &self.ports {
            if let Err(e) = p.port.close() {
                log::warn!("port `{}`: {e}", p.name);
            }
        }
        let in_use: u32 = self.pools.iter().map(Mempool::in_use).sum();
        let kept = self.mbufs_kept_by_drivers;
        report.mbufs_in_driver_rings = in_use.min(kept);
        report.mbufs_in_use = in_use.saturating_sub(kept);
        report
    }
}

/// The previous instance's full-NAT tuples from `path` and how long they
/// stay out of the port choice: the profile's `tcp_time_wait` less their
/// age. A file that cannot be read is reported and ignored.
fn load_quarantine(path: &Path, profile: &Profile) -> (Vec<FnatTuple>, Duration) {
    let keep = Duration::from_secs(profile.tables.timeouts.tcp_time_wait);
    match quarantine::load(path) {
        Ok(Some(s)) => match s.remaining(keep, SystemTime::now()) {
            d if d.is_zero() => (Vec::new(), d),
            d => (s.tuples, d),
        },
        Ok(None) => (Vec::new(), Duration::ZERO),
        Err(e) => {
            log::warn!("full-NAT quarantine not loaded: {e}");
            (Vec::new(), Duration::ZERO)
        }
    }
}

/// Where the workers' full-NAT port walks resume: ahead of the previous
/// instance's checkpoint ([`quarantine::walk`]), if it is recent and was
/// written with the same workers and ports. Reported when it is not used.
fn resume_walks(profile: &Profile, cfg: &PipelineConfig) -> Option<quarantine::walk::Resume> {
    let path = profile.fnat_walk_path();
    let checkpoint = match quarantine::walk::load(&path) {
        Ok(c) => c?,
        Err(e) => {
            log::warn!("full-NAT walk checkpoint not loaded: {e}");
            return None;
        }
    };
    // The range every full-NAT service's ports are taken from.
    let (lo, hi) = cfg
        .services
        .services()
        .filter_map(|(_, s)| s.local_pool.as_ref())
        .fold((u16::MAX, 0), |(lo, hi), p| {
            (lo.min(p.port_min), hi.max(p.port_max))
        });
    if lo > hi {
        return None;
    }
    let keep = Duration::from_secs(profile.tables.timeouts.tcp_time_wait);
    match checkpoint.resume(
        keep,
        SystemTime::now(),
        profile.workers.len(),
        profile.ports.len(),
        lo..=hi,
        quarantine::walk::INTERVAL,
    ) {
        Ok(r) => Some(r),
        Err(e) => {
            log::info!("full-NAT walk checkpoint {} not used: {e}", path.display());
            None
        }
    }
}
