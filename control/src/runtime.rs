//! Bringing the appliance up and down: EAL, mempools, ports, one worker per
//! (port, receive queue) on its lcore, and the control loop on the main lcore.

use std::collections::BTreeMap;
use std::fmt;
use std::net::IpAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use tack_dataplane::pipeline::{Pipeline, PipelineConfig, PortSpec, WorkerSpec};
use tack_dataplane::wire::EthernetAddress;
use tack_dpdk::{
    Eal, LcoreJoin, Mempool, MempoolConfig, Port, PortConfig, PortStats, RssConfig, RxQueue,
    TxQueue,
};

use crate::clock::TscClock;
use crate::profile::{Profile, parse_hex};
use crate::worker::{Worker, WorkerShared, WorkerSnapshot};

/// Why the appliance could not start or stop cleanly. One line, naming the part at fault.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RunError(pub String);

impl fmt::Display for RunError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for RunError {}

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

/// What a finished run reports.
#[derive(Debug, Clone, Default)]
pub struct RunReport {
    /// Port name → final port counters.
    pub ports: Vec<(String, PortStats)>,
    /// Final snapshot of each worker.
    pub workers: Vec<WorkerSnapshot>,
}

/// The running appliance.
pub struct Appliance {
    eal: Eal,
    ports: Vec<RunningPort>,
    joins: Vec<LcoreJoin>,
    stop: Arc<AtomicBool>,
    shared: Vec<Arc<WorkerShared>>,
    pools: Vec<Mempool>,
}

impl Appliance {
    /// Initialises EAL, sets up and starts every port, and launches the workers.
    pub fn start(profile: &Profile) -> Result<Appliance, RunError> {
        let eal = Eal::init(profile.eal_args()).map_err(|e| RunError(format!("EAL: {e}")))?;
        let n_workers = profile.workers.len();
        let mp = &profile.mempool;
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
                    },
                )
                .map_err(|e| RunError(format!("mempool: {e}")))?;
                e.insert(pool);
            }
        }
        let pool_of = |lcore: u32| pools_by_socket[&eal.lcore_socket(lcore)];

        // Ports: open, configure (tx queue i belongs to worker i), start.
        let mut ports = Vec::new();
        let mut rxqs: Vec<Vec<Option<RxQueue>>> = Vec::new();
        let mut txqs: Vec<Vec<Option<TxQueue>>> = Vec::new();
        let mut rss_keys: Vec<Option<Vec<u8>>> = Vec::new();
        for ps in &profile.ports {
            let port = Port::open(eal, &ps.device).map_err(|e| {
                RunError(format!(
                    "port `{}`: cannot open device `{}`: {e} (no such DPDK driver or device?)",
                    ps.name, ps.device
                ))
            })?;
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
            };
            // Receive queue q takes buffers from the pool of the worker polling it.
            let pools: Vec<Mempool> = (0..ps.rx_queues)
                .map(|q| {
                    profile
                        .workers
                        .iter()
                        .find(|w| w.port == ps.name && w.queue == q)
                        .map_or(
                            pools_by_socket.values().next().copied().expect("a pool"),
                            |w| pool_of(w.lcore),
                        )
                })
                .collect();
            let (rx, tx) = port
                .configure(&cfg, &pools)
                .map_err(|e| RunError(format!("port `{}` ({}): {e}", ps.name, ps.device)))?;
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
                    Err(e) => {
                        return Err(RunError(format!("port `{}`: cannot set MAC: {e}", ps.name)));
                    }
                }
            }
            port.start()
                .map_err(|e| RunError(format!("port `{}` ({}): {e}", ps.name, ps.device)))?;
            let mac = match soft_mac {
                Some(m) => m,
                None => port
                    .mac()
                    .map_err(|e| RunError(format!("port `{}`: {e}", ps.name)))?,
            };
            let info = port
                .info()
                .map_err(|e| RunError(format!("port `{}`: {e}", ps.name)))?;
            let key_in_use = if ps.rx_queues > 1 {
                port.rss_key().ok().flatten().or(key)
            } else {
                None
            };
            log::info!(
                "port `{}`: {} driver {} mac {} rx queues {} tx queues {}",
                ps.name,
                ps.device,
                info.driver,
                EthernetAddress(mac),
                ps.rx_queues,
                n_workers
            );
            rss_keys.push(key_in_use);
            rxqs.push(rx.into_iter().map(Some).collect());
            txqs.push(tx.into_iter().map(Some).collect());
            ports.push(RunningPort {
                name: ps.name.clone(),
                port,
                mac,
            });
        }

        let cfg = Arc::new(pipeline_config(profile, &ports));
        let stop = Arc::new(AtomicBool::new(false));
        let clock = TscClock::new(tack_dpdk::tsc_hz());
        let mut joins = Vec::new();
        let mut shared = Vec::new();
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
            let pipeline = Pipeline::new(cfg.clone(), spec)
                .map_err(|e| RunError(format!("worker {i} (lcore {}): {e}", w.lcore)))?;
            let slot = Arc::new(WorkerShared::default());
            let worker = Worker {
                index: i,
                rx_port: port_idx as u16,
                rx,
                tx,
                pipeline,
                pool: pool_of(w.lcore),
                stop: stop.clone(),
                shared: slot.clone(),
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
                .map_err(|e| RunError(format!("worker {i}: {e}")))?;
            joins.push(join);
            shared.push(slot);
        }
        Ok(Appliance {
            eal,
            ports,
            joins,
            stop,
            shared,
            pools: pools_by_socket.into_values().collect(),
        })
    }

    /// The started ports.
    pub fn ports(&self) -> &[RunningPort] {
        &self.ports
    }

    /// The latest counters each worker published.
    pub fn snapshots(&self) -> Vec<WorkerSnapshot> {
        self.shared
            .iter()
            .map(|s| s.snapshot.lock().unwrap_or_else(|p| p.into_inner()).clone())
            .collect()
    }

    /// Mbufs in use in each pool (idle level: those posted to receive rings).
    pub fn mbufs_in_use(&self) -> u32 {
        self.pools.iter().map(Mempool::in_use).sum()
    }

    /// Runs the control loop until `quit` is set (by a signal handler).
    pub fn control_loop(&self, quit: &AtomicBool) {
        while !quit.load(Ordering::Relaxed) {
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Stops the workers, then the ports, and reports the final counters.
    pub fn shutdown(self) -> RunReport {
        self.stop.store(true, Ordering::Relaxed);
        for j in self.joins {
            let rc = j.join();
            if rc != 0 {
                log::error!("a worker ended with status {rc}");
            }
        }
        let mut report = RunReport::default();
        for p in &self.ports {
            let stats = p.port.stats().unwrap_or_default();
            if let Err(e) = p.port.stop() {
                log::warn!("port `{}`: {e}", p.name);
            }
            report.ports.push((p.name.clone(), stats));
        }
        report.workers = self
            .shared
            .iter()
            .map(|s| s.snapshot.lock().unwrap_or_else(|p| p.into_inner()).clone())
            .collect();
        for p in &self.ports {
            if let Err(e) = p.port.close() {
                log::warn!("port `{}`: {e}", p.name);
            }
        }
        let _ = self.eal;
        report
    }
}

/// The pipeline's view of the profile.
pub fn pipeline_config(profile: &Profile, ports: &[RunningPort]) -> PipelineConfig {
    PipelineConfig {
        ports: profile
            .ports
            .iter()
            .zip(ports)
            .map(|(ps, rp)| PortSpec {
                mac: EthernetAddress(rp.mac),
                addresses: ps
                    .addresses
                    .iter()
                    .map(|n| (n.addr(), n.prefix_len()))
                    .collect::<Vec<(IpAddr, u8)>>(),
                mtu: ps.mtu.unwrap_or(1500),
            })
            .collect(),
        ..PipelineConfig::default()
    }
}

impl RunReport {
    /// Counters as a text table: ports, then every non-zero worker counter
    /// summed over workers with a column per worker.
    pub fn render(&self) -> String {
        use std::fmt::Write;
        let mut s = String::new();
        let _ = writeln!(
            s,
            "{:<12} {:>12} {:>12} {:>14} {:>14} {:>10} {:>10} {:>10}",
            "port",
            "rx_packets",
            "tx_packets",
            "rx_bytes",
            "tx_bytes",
            "rx_missed",
            "rx_errors",
            "tx_errors"
        );
        for (name, st) in &self.ports {
            let _ = writeln!(
                s,
                "{:<12} {:>12} {:>12} {:>14} {:>14} {:>10} {:>10} {:>10}",
                name,
                st.ipackets,
                st.opackets,
                st.ibytes,
                st.obytes,
                st.imissed,
                st.ierrors,
                st.oerrors
            );
        }
        let mut rows: BTreeMap<&'static str, Vec<u64>> = BTreeMap::new();
        let mut order: Vec<&'static str> = Vec::new();
        let n = self.workers.len();
        for (i, w) in self.workers.iter().enumerate() {
            let mut add = |name: &'static str, v: u64| {
                let row = rows.entry(name).or_insert_with(|| {
                    order.push(name);
                    vec![0; n]
                });
                row[i] = v;
            };
            w.lp.for_each(&mut add);
            for (name, v) in &w.pipeline {
                add(name, *v);
            }
        }
        let _ = write!(s, "\n{:<32} {:>12}", "counter", "total");
        for i in 0..n {
            let _ = write!(s, " {:>12}", format!("worker{i}"));
        }
        let _ = writeln!(s);
        for name in order {
            let row = &rows[name];
            let total: u64 = row.iter().sum();
            if total == 0 {
                continue;
            }
            let _ = write!(s, "{name:<32} {total:>12}");
            for v in row {
                let _ = write!(s, " {v:>12}");
            }
            let _ = writeln!(s);
        }
        s
    }
}
