//! The control plane, on the main lcore: publishes what one worker learns to
//! the others (sticky bindings, neighbours), collects counters, applies
//! reloads and management commands as new configuration epochs, and answers
//! questions about the workers' tables.

use std::collections::BTreeMap;
use std::fmt::Write;
use std::net::IpAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use tack_dataplane::cluster::NodeId;
use tack_dataplane::ids::{ServerIdx, ServiceIdx};
use tack_dataplane::model::ServerState;
use tack_dataplane::pipeline::{ControlMsg, Event, PipelineConfig};
use tack_dataplane::sticky::StickyEvent;
use tack_dpdk::ring::{Consumer, Producer};

use crate::cluster::Cluster;
use crate::exception::ExceptionCounters;
use crate::health::HealthState;
use crate::mgmt::MgmtThread;
use crate::msg::{FromWorker, Query, Reply, ToWorker};
mod redirect;

use crate::profile::{
    FieldError, PersistenceSection, Profile, ProfileError, ServerSection, TableCheck,
    pipeline_config,
};
use crate::report::{PortTotals, WorkerSnapshot, render_workers};
use crate::say;

/// Counters of the control plane.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ControlCounters {
    /// Sticky bindings published to the other workers.
    pub sticky_published: u64,
    /// Sticky bindings not published because a worker made them in an
    /// earlier configuration epoch, whose service and server indices may
    /// name other services and servers now.
    pub sticky_stale: u64,
    /// Neighbours published to the other workers.
    pub neighbours_published: u64,
    /// Messages to a worker dropped because its ring stayed full.
    pub messages_dropped: u64,
    /// Configuration epochs published.
    pub epochs: u64,
    /// Reloads refused.
    pub reload_errors: u64,
}

/// Why a management command or a reload was refused. The text is what
/// `tackctl` and `tack` print after `error: ` or `reload refused: `.
#[derive(Debug, thiserror::Error)]
pub enum CtlError {
    /// The command is not one the control plane knows.
    #[error(
        "unknown command `{0}` (try: status, counters, services, connections [N|flush], sticky [show|flush [SERVICE]|SERVICE MINUTES [NETWORK]], neighbours, server SERVICE SERVER state|weight V, server SERVICE add ADDR[:PORT] [weight N], server SERVICE remove SERVER, reload)"
    )]
    UnknownCommand(String),
    /// A command's arguments do not fit its usage.
    #[error("usage: {0}")]
    Usage(&'static str),
    /// An argument is not what its place asks for.
    #[error("`{value}` is not {expected}")]
    BadArgument {
        /// The argument as given.
        value: String,
        /// What was expected, e.g. `a count`.
        expected: &'static str,
    },
    /// No service has this name.
    #[error("no service named `{0}`")]
    UnknownService(String),
    /// The service has no server with this name or address.
    #[error("service `{service}` has no server `{server}`")]
    UnknownServer {
        /// The service.
        service: String,
        /// The server as given.
        server: String,
    },
    /// A reload would change what only a restart can (EAL, mempool,
    /// runtime, workers, the ports' devices, queues or MACs).
    #[error(
        "eal, mempool, runtime, workers or the ports' devices, queues or MACs changed; those need a restart"
    )]
    NeedsRestart,
    /// A reload would resize the workers' tables, allocated once.
    #[error(
        "tables: connections, connections_v6, sticky or neighbours changed; table sizes need a restart"
    )]
    TableSizes,
    /// The new profile's services or routes do not make a configuration.
    #[error(transparent)]
    Config(#[from] FieldError),
    /// `reload` without a profile file (the appliance was not started from one).
    #[error("no profile file to reload")]
    NoProfileFile,
    /// The profile file could not be read or is not a usable profile.
    #[error(transparent)]
    Profile(#[from] ProfileError),
    /// A worker did not answer a question about its tables in time.
    #[error("a worker did not answer within 1 s")]
    NoAnswer,
}

impl CtlError {
    fn bad(value: &str, expected: &'static str) -> CtlError {
        CtlError::BadArgument {
            value: value.to_string(),
            expected,
        }
    }
}

/// What asked for a reload, as `tack` reports it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReloadOrigin {
    /// SIGHUP.
    Signal,
    /// `tackctl reload` on the management socket.
    Tackctl,
}

impl std::fmt::Display for ReloadOrigin {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            ReloadOrigin::Signal => "SIGHUP",
            ReloadOrigin::Tackctl => "tackctl",
        })
    }
}

/// The control plane's state.
pub struct ControlPlane {
    profile: Profile,
    profile_path: Option<PathBuf>,
    macs: Vec<[u8; 6]>,
    cfg: Arc<PipelineConfig>,
    to_workers: Vec<Producer<Box<ToWorker>>>,
    from_workers: Vec<Consumer<Box<FromWorker>>>,
    exception: Option<Arc<ExceptionCounters>>,
    health: HealthState,
    cluster: Option<Cluster>,
    snapshots: Vec<WorkerSnapshot>,
    replies: Vec<Option<Reply>>,
    counters: ControlCounters,
    /// The ports, and their counters over the run ([`ControlPlane::sample_ports`]).
    ports: Vec<(tack_dpdk::Port, PortTotals)>,
    /// When the ports' counters are read next.
    next_port_sample: Instant,
}

impl ControlPlane {
    /// A control plane for workers reached through these rings.
    pub fn new(
        profile: Profile,
        macs: Vec<[u8; 6]>,
        cfg: Arc<PipelineConfig>,
        to_workers: Vec<Producer<Box<ToWorker>>>,
        from_workers: Vec<Consumer<Box<FromWorker>>>,
    ) -> ControlPlane {
        let n = to_workers.len();
        ControlPlane {
            profile,
            profile_path: None,
            macs,
            cfg,
            to_workers,
            from_workers,
            exception: None,
            health: HealthState::default(),
            cluster: None,
            snapshots: vec![WorkerSnapshot::default(); n],
            replies: vec![None; n],
            counters: ControlCounters::default(),
            ports: Vec::new(),
            next_port_sample: Instant::now(),
        }
    }

    /// The ports whose counters the control thread reads every statistics
    /// interval ([`ControlPlane::sample_ports`]), in profile order.
    pub fn set_ports(&mut self, ports: Vec<tack_dpdk::Port>) {
        self.ports = ports
            .into_iter()
            .map(|p| (p, PortTotals::default()))
            .collect();
    }

    /// Reads every port's counters now ([`PortTotals`]: a driver that clears
    /// them, as memif does when its peer disconnects, loses nothing already
    /// read).
    pub fn sample_ports(&mut self) {
        for (port, totals) in &mut self.ports {
            match port.stats() {
                Ok(s) => totals.update(s),
                Err(e) => log::debug!("port {}: {e}", port.id()),
            }
        }
    }

    /// Each port's counters since the start, as of the last
    /// [`ControlPlane::sample_ports`], in profile order.
    pub fn port_totals(&self) -> Vec<tack_dpdk::PortStats> {
        self.ports.iter().map(|(_, t)| t.total()).collect()
    }

    /// The exception path's counters, shown with the control plane's.
    pub fn set_exception_counters(&mut self, c: Arc<ExceptionCounters>) {
        self.exception = Some(c);
    }

    /// Starts the health checks of the profile's servers (see
    /// [`crate::health`]).
    pub fn start_health_checks(&mut self) -> std::io::Result<()> {
        self.health.retarget(&self.profile)
    }

    /// Applies the health checks' verdicts: each change is logged and the
    /// servers' states published as a new configuration epoch.
    fn health_changes(&mut self) {
        let changes = self.health.poll();
        if changes.is_empty() {
            return;
        }
        for c in &changes {
            let t = &c.target;
            say!(
                "tack: health: {}/{} ({}:{}) {} ({})",
                t.service,
                t.server,
                fmt_addr(t.addr),
                t.port,
                if c.up { "up" } else { "down" },
                c.why
            );
        }
        let profile = self.profile.clone();
        if let Err(e) = self.apply_profile(profile) {
            log::error!("health: the servers' states could not be published: {e}");
        }
    }

    /// Joins the cluster of the profile's `cluster` section, if any: starts
    /// the link to the other nodes (see [`crate::cluster`]).
    pub fn start_cluster(&mut self) -> Result<(), String> {
        if let Some(c) = &self.profile.cluster {
            self.cluster = Some(Cluster::start(c)?);
        }
        Ok(())
    }

    /// The cluster's state for `tackctl cluster`.
    fn cluster_status(&self) -> Result<String, CtlError> {
        let (Some(cl), Some(section)) = (&self.cluster, &self.profile.cluster) else {
            return Ok("not in a cluster\n".into());
        };
        let mut s = String::new();
        let _ = writeln!(s, "{:<6} {:<16} {:<8} role", "node", "address", "state");
        for n in &section.nodes {
            let id = NodeId(n.id);
            let state = if cl.live().contains(&id) {
                "live"
            } else if cl.draining().contains(&id) {
                "draining"
            } else {
                "down"
            };
            let _ = writeln!(
                s,
                "{:<6} {:<16} {:<8} {}",
                n.id,
                n.address,
                state,
                if n.id == section.node {
                    "this node"
                } else {
                    "peer"
                }
            );
        }
        let counters = cl.counters().pairs();
        let _ = writeln!(
            s,
            "\n{}",
            counters
                .iter()
                .map(|(k, v)| format!("{k} {v}"))
                .collect::<Vec<_>>()
                .join(" ")
        );
        Ok(s)
    }

    /// Passes the cluster link's news to the workers.
    fn cluster_poll(&mut self) {
        let Some(cl) = &mut self.cluster else { return };
        let msgs = cl.poll(&self.cfg.services);
        for m in msgs {
            self.broadcast(m);
        }
    }

    /// Whether server `server` of service `service` failed its health check.
    pub fn health_down(&self, service: &str, server: &str) -> bool {
        self.health.is_down(service, server)
    }

    /// The file `reload` reads.
    pub fn set_profile_path(&mut self, path: PathBuf) {
        self.profile_path = Some(path);
    }

    /// The workers' latest counters.
    pub fn snapshots(&self) -> &[WorkerSnapshot] {
        &self.snapshots
    }

    /// The control plane's counters.
    pub fn counters(&self) -> ControlCounters {
        self.counters
    }

    /// The configuration in force.
    pub fn config(&self) -> &Arc<PipelineConfig> {
        &self.cfg
    }

    /// Runs until `quit`; `reload` (set by SIGHUP) re-reads the profile;
    /// the management thread's commands are answered as they come.
    pub fn run(&mut self, quit: &AtomicBool, reload: &AtomicBool, mgmt: Option<&MgmtThread>) {
        let interval = Duration::from_millis(u64::from(self.profile.runtime.stats_interval_ms));
        while !quit.load(Ordering::Relaxed) {
            let busy = self.tick();
            self.health_changes();
            self.cluster_poll();
            if Instant::now() >= self.next_port_sample {
                self.sample_ports();
                self.next_port_sample = Instant::now() + interval;
            }
            if reload.swap(false, Ordering::Relaxed) {
                // Reported by reload_from; nobody else waits for the outcome.
                let _ = self.reload_from(ReloadOrigin::Signal);
            }
            for request in mgmt.iter().flat_map(|m| m.pending()) {
                let answer = self.command(request.line());
                // Changes are reported like reloads (which report themselves).
                if changes_configuration(request.line()) {
                    match &answer {
                        Ok(_) => say!("tack: tackctl {}: applied", request.line()),
                        Err(e) => say!("tack: tackctl {}: refused: {e}", request.line()),
                    }
                }
                request.answer(answer);
            }
            if !busy {
                std::thread::sleep(Duration::from_millis(1));
            }
        }
    }

    /// Drains the workers' rings once: publishes events, stores counters and
    /// replies, takes host frames. True if anything arrived.
    pub fn tick(&mut self) -> bool {
        let mut busy = false;
        let mut publish: Vec<(usize, ControlMsg)> = Vec::new();
        for (i, ring) in self.from_workers.iter_mut().enumerate() {
            while let Some(msg) = ring.pop() {
                busy = true;
                match *msg {
                    FromWorker::Counters(s) => self.snapshots[i] = s,
                    FromWorker::Reply(r) => self.replies[i] = Some(r),
                    FromWorker::Events { epoch, events } => {
                        if let Some(cl) = &mut self.cluster {
                            events.iter().for_each(|ev| cl.on_event(ev));
                        }
                        let current = self.cfg.epoch;
                        let c = &mut self.counters;
                        publishable(c, current, i, epoch, events, &mut publish);
                    }
                }
            }
        }
        for (from, m) in publish {
            for to in 0..self.to_workers.len() {
                if to != from {
                    self.send(to, ToWorker::Msg(m.clone()));
                }
            }
        }
        busy
    }

    fn send(&mut self, worker: usize, msg: ToWorker) {
        let mut msg = Box::new(msg);
        let deadline = Instant::now() + Duration::from_millis(100);
        loop {
            match self.to_workers[worker].push(msg) {
                Ok(()) => return,
                Err(back) if Instant::now() < deadline => {
                    msg = back;
                    std::thread::sleep(Duration::from_micros(100));
                }
                Err(_) => {
                    self.counters.messages_dropped += 1;
                    log::error!("worker {worker} does not take messages; one was dropped");
                    return;
                }
            }
        }
    }

    /// Publishes a new configuration epoch to every worker.
    fn publish(&mut self, mut cfg: PipelineConfig) {
        cfg.epoch = self.cfg.epoch + 1;
        self.cfg = Arc::new(cfg);
        for w in 0..self.to_workers.len() {
            self.send(w, ToWorker::Config(self.cfg.clone()));
        }
        self.counters.epochs += 1;
    }

    /// Applies a changed profile (same ports, workers and EAL settings) as a
    /// new configuration epoch; established connections stay.
    pub fn apply_profile(&mut self, new: Profile) -> Result<String, CtlError> {
        let same = |a: &Profile, b: &Profile| {
            a.eal == b.eal
                && a.mempool == b.mempool
                && a.workers == b.workers
                && a.runtime == b.runtime
                && a.exception.enabled == b.exception.enabled
                && a.exception.routes == b.exception.routes
                && a.cluster == b.cluster
                && a.ports.len() == b.ports.len()
                && a.ports.iter().zip(&b.ports).all(|(x, y)| {
                    x.name == y.name
                        && x.device == y.device
                        && x.rx_queues == y.rx_queues
                        && x.mac == y.mac
                        && x.tap_name() == y.tap_name()
                        && x.addresses == y.addresses
                })
        };
        if !same(&self.profile, &new) {
            self.counters.reload_errors += 1;
            return Err(CtlError::NeedsRestart);
        }
        // The workers' tables are allocated once; their timeouts and
        // `when_full` apply at a reload.
        let sizes = |p: &Profile| {
            let t = &p.tables;
            (t.connections, t.connections_v6, t.sticky, t.neighbours)
        };
        if sizes(&self.profile) != sizes(&new) {
            self.counters.reload_errors += 1;
            return Err(CtlError::TableSizes);
        }
        // The workers get the servers' health on top of the operator's states.
        let cfg = pipeline_config(&self.health.effective(&new), &self.macs).inspect_err(|_| {
            self.counters.reload_errors += 1;
        })?;
        let n = cfg.services.len();
        if let Err(e) = self.health.retarget(&new) {
            log::error!("health checks not started: {e}");
        }
        self.profile = new;
        self.publish(cfg);
        Ok(format!(
            "configuration epoch {} with {n} service(s) published",
            self.counters.epochs
        ))
    }

    /// Re-reads the profile file and applies it ([`ControlPlane::reload`]),
    /// and reports the outcome on `tack`'s output, accepted or refused with
    /// its cause: `tack: reload (ORIGIN): ...` or `tack: reload refused
    /// (ORIGIN): ...`, like the start and stop lines of `tack run`.
    pub fn reload_from(&mut self, origin: ReloadOrigin) -> Result<String, CtlError> {
        let result = self.reload();
        match &result {
            Ok(msg) => say!("tack: reload ({origin}): {msg}"),
            Err(e) => say!("tack: reload refused ({origin}): {e}"),
        }
        result
    }

    /// Re-reads the profile file and applies it.
    pub fn reload(&mut self) -> Result<String, CtlError> {
        let Some(path) = self.profile_path.clone() else {
            return Err(CtlError::NoProfileFile);
        };
        // The tables keep their sizes at a reload (a change is refused), so
        // they are not built again to check the new profile.
        let new = Profile::load_with(&path, TableCheck::Skip).inspect_err(|_| {
            self.counters.reload_errors += 1;
        })?;
        self.apply_profile(new)
    }

    /// Asks every worker and waits (up to a second) for all answers.
    pub fn query(&mut self, q: Query) -> Result<Vec<Reply>, CtlError> {
        for r in &mut self.replies {
            *r = None;
        }
        for w in 0..self.to_workers.len() {
            self.send(w, ToWorker::Query(q));
        }
        let deadline = Instant::now() + Duration::from_secs(1);
        while self.replies.iter().any(Option::is_none) {
            if Instant::now() > deadline {
                return Err(CtlError::NoAnswer);
            }
            if !self.tick() {
                std::thread::sleep(Duration::from_micros(200));
            }
        }
        Ok(self.replies.iter_mut().filter_map(Option::take).collect())
    }

    fn service_index(&self, name: &str) -> Result<usize, CtlError> {
        self.profile
            .services
            .iter()
            .position(|s| s.name == name)
            .ok_or_else(|| CtlError::UnknownService(name.to_string()))
    }

    fn server_index(&self, service: usize, name: &str) -> Result<usize, CtlError> {
        let svc = &self.profile.services[service];
        svc.servers
            .iter()
            .position(|s| s.display_name() == name || s.address.to_string() == name)
            .ok_or_else(|| CtlError::UnknownServer {
                service: svc.name.clone(),
                server: name.to_string(),
            })
    }

    /// Handles one management command line; returns the answer text.
    pub fn command(&mut self, line: &str) -> Result<String, CtlError> {
        let args: Vec<&str> = line.split_whitespace().collect();
        match args.as_slice() {
            ["status"] | [] => Ok(self.status()),
            ["counters"] => Ok(render_workers(&self.snapshots) + &self.render_control_counters()),
            ["services"] => self.services(),
            ["redirects"] => Ok(redirect::render(
                &self.profile,
                |svc, srv| self.health.is_down(svc, srv),
                &self.snapshots,
            )),
            ["connections"] => self.connections(20),
            ["connections", "flush"] => {
                self.broadcast(ControlMsg::FlushConnections);
                Ok("connections flushed".into())
            }
            ["connections", n] => {
                self.connections(n.parse().map_err(|_| CtlError::bad(n, "a count"))?)
            }
            ["sticky"] | ["sticky", "show"] => self.sticky_show(),
            ["sticky", "flush"] => {
                self.broadcast(ControlMsg::FlushSticky { service: None });
                Ok("all sticky bindings flushed".into())
            }
            ["sticky", "flush", svc] => {
                let i = self.service_index(svc)?;
                self.broadcast(ControlMsg::FlushSticky {
                    service: Some(ServiceIdx(i as u16)),
                });
                Ok(format!("sticky bindings of `{svc}` flushed"))
            }
            ["sticky", svc, minutes, rest @ ..] if rest.len() <= 1 => {
                self.sticky_set(svc, minutes, rest.first().copied())
            }
            ["neighbours"] | ["neighbors"] => self.neighbours(),
            ["server", svc, server, "state", st] => {
                let state = parse_state(st)?;
                let (i, j) = self.locate(svc, server)?;
                let mut p = self.profile.clone();
                p.services[i].servers[j].state = state;
                self.apply_profile(p)
                    .map(|_| format!("{svc}/{server}: state {st}"))
            }
            ["server", svc, server, "weight", w] => {
                let weight: u16 = w
                    .parse()
                    .map_err(|_| CtlError::bad(w, "a weight (0..65535)"))?;
                let (i, j) = self.locate(svc, server)?;
                let mut p = self.profile.clone();
                p.services[i].servers[j].weight = weight;
                self.apply_profile(p)
                    .map(|_| format!("{svc}/{server}: weight {weight}"))
            }
            ["server", svc, "add", addr, rest @ ..] => self.server_add(svc, addr, rest),
            ["server", svc, "remove", server] => {
                let (i, j) = self.locate(svc, server)?;
                let mut p = self.profile.clone();
                let removed = p.services[i].servers.remove(j).display_name();
                for s in &mut p.services[i].servers {
                    if s.backup.as_deref() == Some(removed.as_str()) {
                        s.backup = None;
                    }
                }
                self.apply_profile(p)
                    .map(|_| format!("{svc}/{server}: removed"))
            }
            ["reload"] => self.reload_from(ReloadOrigin::Tackctl),
            ["cluster"] => self.cluster_status(),
            ["cluster", what @ ("drain" | "activate")] => {
                let Some(cl) = &mut self.cluster else {
                    return Err(CtlError::Usage("not in a cluster"));
                };
                cl.set_draining(*what == "drain");
                Ok(format!("this node: {what} requested"))
            }
            _ => Err(CtlError::UnknownCommand(line.to_string())),
        }
    }

    fn locate(&self, svc: &str, server: &str) -> Result<(usize, usize), CtlError> {
        let i = self.service_index(svc)?;
        Ok((i, self.server_index(i, server)?))
    }

    fn broadcast(&mut self, msg: ControlMsg) {
        for w in 0..self.to_workers.len() {
            self.send(w, ToWorker::Msg(msg.clone()));
        }
    }

    fn server_add(&mut self, svc: &str, addr: &str, rest: &[&str]) -> Result<String, CtlError> {
        let i = self.service_index(svc)?;
        let (address, port) = parse_addr_port(addr)?;
        let weight = match rest {
            [] => 1,
            ["weight", w] => w.parse().map_err(|_| CtlError::bad(w, "a weight"))?,
            _ => return Err(CtlError::Usage("server SERVICE add ADDR[:PORT] [weight N]")),
        };
        let mut p = self.profile.clone();
        p.services[i].servers.push(ServerSection {
            name: None,
            address,
            port,
            weight,
            state: ServerState::Up,
            backup: None,
            url: None,
            https_url: None,
            directed: None,
            health: None,
        });
        self.apply_profile(p)
            .map(|_| format!("{svc}: server {addr} added with weight {weight}"))
    }

    /// LocalDirector's `sticky <vid> <minutes> [nc-subnet]`: natural-class
    /// persistence for a service (0 minutes turns persistence off).
    fn sticky_set(
        &mut self,
        svc: &str,
        minutes: &str,
        network: Option<&str>,
    ) -> Result<String, CtlError> {
        let i = self.service_index(svc)?;
        let minutes: u32 = minutes
            .parse()
            .map_err(|_| CtlError::bad(minutes, "a number of minutes"))?;
        let networks = match network {
            None => Vec::new(),
            Some(n) => vec![
                n.parse()
                    .map_err(|_| CtlError::bad(n, "a classful network address like 172.16.0.0"))?,
            ],
        };
        let mut p = self.profile.clone();
        p.services[i].persistence = (minutes > 0).then_some(PersistenceSection {
            timeout: minutes,
            netmask: None,
            prefix: None,
            natural_class: true,
            networks,
        });
        self.apply_profile(p).map(|_| match minutes {
            0 => format!("{svc}: persistence off"),
            m => format!(
                "{svc}: natural-class persistence, {m} minute(s){}",
                network.map(|n| format!(" for {n}")).unwrap_or_default()
            ),
        })
    }

    fn status(&self) -> String {
        let mut s = String::new();
        let _ = writeln!(s, "workers: {}", self.to_workers.len());
        for (i, p) in self.profile.ports.iter().enumerate() {
            let mac = self.macs.get(i).copied().unwrap_or_default();
            let addrs: Vec<String> = p.addresses.iter().map(ToString::to_string).collect();
            let _ = writeln!(
                s,
                "port {}: {} mac {} addresses {}",
                p.name,
                p.device,
                tack_dataplane::wire::EthernetAddress(mac),
                addrs.join(" ")
            );
        }
        let _ = writeln!(s, "services: {}", self.profile.services.len());
        let _ = writeln!(
            s,
            "configuration epochs published: {}",
            self.counters.epochs
        );
        let total = |name: &str| -> u64 {
            self.snapshots
                .iter()
                .map(|w| {
                    let mut v = 0;
                    w.lp.for_each(|n, x| {
                        if n == name {
                            v = x;
                        }
                    });
                    v
                })
                .sum()
        };
        let _ = writeln!(
            s,
            "rx_packets: {}  tx_packets: {}",
            total("rx_packets"),
            total("tx_packets")
        );
        s
    }

    fn render_control_counters(&self) -> String {
        let c = self.counters;
        format!(
            "\ncontrol: sticky_published {} sticky_stale {} neighbours_published {} messages_dropped {} epochs {} reload_errors {}\n{}\n",
            c.sticky_published,
            c.sticky_stale,
            c.neighbours_published,
            c.messages_dropped,
            c.epochs,
            c.reload_errors,
            self.exception
                .as_ref()
                .map(|e| e.snapshot())
                .unwrap_or_default()
        )
    }

    fn services(&mut self) -> Result<String, CtlError> {
        let replies = self.query(Query::Connections { limit: 0 })?;
        let mut active: BTreeMap<(ServiceIdx, ServerIdx), u64> = BTreeMap::new();
        for r in replies {
            if let Reply::Connections { per_server, .. } = r {
                for (k, v) in per_server {
                    *active.entry(k).or_default() += v;
                }
            }
        }
        let mut s = String::new();
        let _ = writeln!(
            s,
            "{:<16} {:<28} {:<8} {:<8} {:<24} {:>6} {:<12} {:>12}",
            "service", "vip", "mode", "sched", "server", "weight", "state", "connections"
        );
        for (i, svc) in self.profile.services.iter().enumerate() {
            let vip = match svc.port {
                Some(p) => format!("{}/{}:{p}", svc.protocol, fmt_addr(svc.vip)),
                None => format!("{}/{}:*", svc.protocol, fmt_addr(svc.vip)),
            };
            let mode = format!("{:?}", svc.mode).to_lowercase();
            let sched = sched_name(svc.scheduler);
            for (j, sv) in svc.servers.iter().enumerate() {
                let conns = active
                    .get(&(ServiceIdx(i as u16), ServerIdx(j as u16)))
                    .copied()
                    .unwrap_or(0);
                let mut state = format!("{:?}", sv.state).to_lowercase();
                if self.health.is_down(&svc.name, &sv.display_name()) {
                    state.push_str(",failing");
                }
                let _ = writeln!(
                    s,
                    "{:<16} {:<28} {:<8} {:<8} {:<24} {:>6} {:<12} {:>12}",
                    svc.name,
                    vip,
                    mode,
                    sched,
                    sv.display_name(),
                    sv.weight,
                    state,
                    conns
                );
            }
        }
        Ok(s)
    }

    fn connections(&mut self, limit: usize) -> Result<String, CtlError> {
        let replies = self.query(Query::Connections { limit })?;
        let mut s = String::new();
        let mut total = 0;
        let _ = writeln!(
            s,
            "{:<6} {:<5} {:<28} {:<28} {:<28} {:<12}",
            "worker", "proto", "client", "vip", "server", "state"
        );
        for (w, r) in replies.into_iter().enumerate() {
            if let Reply::Connections { total: t, list, .. } = r {
                total += t;
                for c in list {
                    let proto = match c.protocol {
                        6 => "tcp",
                        17 => "udp",
                        _ => "other",
                    };
                    let server = c.server_addr.map_or("(removed)".to_string(), fmt_addr);
                    let _ = writeln!(
                        s,
                        "{:<6} {:<5} {:<28} {:<28} {:<28} {:<12}",
                        w,
                        proto,
                        format!("{}:{}", fmt_addr(c.client), c.client_port),
                        format!("{}:{}", fmt_addr(c.vip), c.vip_port),
                        server,
                        format!("{:?}", c.state)
                    );
                }
            }
        }
        let _ = writeln!(s, "connection table entries: {total}");
        Ok(s)
    }

    fn sticky_show(&mut self) -> Result<String, CtlError> {
        let replies = self.query(Query::Sticky)?;
        // One line per (service, key): the server, its open connections
        // summed over the workers (ended ones lingering in TIME_WAIT or CLOSE
        // are not counted: `Pipeline::sticky_bindings`), and on how many
        // workers it is known.
        let mut rows: BTreeMap<(ServiceIdx, String), (Option<ServerIdx>, u32, usize)> =
            BTreeMap::new();
        for r in replies {
            if let Reply::Sticky(list) = r {
                for b in list {
                    let e = rows
                        .entry((b.service, b.key.to_string()))
                        .or_insert((b.server, 0, 0));
                    e.1 += b.active;
                    e.2 += 1;
                }
            }
        }
        let mut s = String::new();
        let _ = writeln!(
            s,
            "{:<16} {:<24} {:<24} {:>8} {:>8}",
            "service", "client key", "server", "active", "workers"
        );
        for ((svc, key), (server, active, workers)) in &rows {
            let svc_sec = self.profile.services.get(usize::from(*svc));
            let name = svc_sec.map_or("?".to_string(), |x| x.name.clone());
            let server_name = server
                .and_then(|j| svc_sec.and_then(|x| x.servers.get(usize::from(j))))
                .map_or("(none)".to_string(), ServerSection::display_name);
            let _ = writeln!(
                s,
                "{name:<16} {key:<24} {server_name:<24} {active:>8} {workers:>8}"
            );
        }
        let _ = writeln!(s, "sticky bindings: {}", rows.len());
        Ok(s)
    }

    fn neighbours(&mut self) -> Result<String, CtlError> {
        let replies = self.query(Query::Neighbours)?;
        let mut rows: BTreeMap<(u16, IpAddr), String> = BTreeMap::new();
        for r in replies {
            if let Reply::Neighbours(list) = r {
                for n in list {
                    let mac = n.mac.map_or("(resolving)".to_string(), |m| m.to_string());
                    rows.entry((n.port, n.addr))
                        .or_insert(format!("{mac} {:?}", n.state));
                }
            }
        }
        let mut s = String::new();
        for ((port, addr), v) in rows {
            let pname = self
                .profile
                .ports
                .get(port as usize)
                .map_or("?", |p| p.name.as_str());
            let _ = writeln!(s, "{pname:<10} {addr:<28} {v}");
        }
        Ok(s)
    }
}

/// The short name a profile uses for a scheduler.
/// Whether a management command changes the running configuration or
/// tables (servers, persistence, flushes), other than `reload`.
fn changes_configuration(line: &str) -> bool {
    let args: Vec<&str> = line.split_whitespace().collect();
    match args.as_slice() {
        ["server", ..] => true,
        ["sticky", "show"] | ["sticky"] => false,
        ["sticky", ..] => true,
        ["connections", "flush"] => true,
        ["cluster", "drain" | "activate"] => true,
        _ => false,
    }
}

fn sched_name(s: tack_dataplane::model::SchedulerKind) -> &'static str {
    use tack_dataplane::model::SchedulerKind as K;
    match s {
        K::RoundRobin => "rr",
        K::WeightedRoundRobin => "wrr",
        K::LeastConn => "lc",
        K::WeightedLeastConn => "wlc",
        K::SourceHash => "sh",
        K::Maglev => "maglev",
        K::Rendezvous => "hrw",
        K::Failover => "failover",
    }
}

fn fmt_addr(a: IpAddr) -> String {
    match a {
        IpAddr::V4(v) => v.to_string(),
        IpAddr::V6(v) => format!("[{v}]"),
    }
}

fn parse_state(s: &str) -> Result<ServerState, CtlError> {
    match s {
        "up" => Ok(ServerState::Up),
        "drain" => Ok(ServerState::Drain),
        "maint" => Ok(ServerState::Maint),
        "down" => Ok(ServerState::Down),
        _ => Err(CtlError::bad(s, "a state (up, drain, maint, down)")),
    }
}

fn parse_addr_port(s: &str) -> Result<(IpAddr, Option<u16>), CtlError> {
    if let Ok(a) = s.parse::<IpAddr>() {
        return Ok((a, None));
    }
    if let Ok(sa) = s.parse::<std::net::SocketAddr>() {
        return Ok((sa.ip(), Some(sa.port())));
    }
    Err(CtlError::bad(s, "ADDRESS or ADDRESS:PORT ([v6]:port)"))
}

/// Appends to `out` the messages that carry worker `from`'s events, taken
/// in configuration `epoch`, to the other workers (`current`: the epoch in
/// force).
fn publishable(
    counters: &mut ControlCounters,
    current: u64,
    from: usize,
    epoch: u64,
    events: Vec<Event>,
    out: &mut Vec<(usize, ControlMsg)>,
) {
    for ev in events {
        // Indices are those of the worker's epoch: a binding made before the
        // last reload could name another service or server in the epoch in
        // force.
        if matches!(ev, Event::Sticky(_)) && epoch != current {
            counters.sticky_stale += 1;
            continue;
        }
        if let Some(m) = event_to_msg(ev, counters) {
            out.push((from, m));
        }
    }
}

/// What a worker's event means for the others.
fn event_to_msg(ev: Event, counters: &mut ControlCounters) -> Option<ControlMsg> {
    match ev {
        Event::Sticky(StickyEvent::Learned {
            service,
            key,
            server,
        })
        | Event::Sticky(StickyEvent::Rebound {
            service,
            key,
            to: server,
            ..
        }) => {
            counters.sticky_published += 1;
            Some(ControlMsg::StickyBinding {
                service,
                key,
                server,
            })
        }
        Event::Neighbor { port, addr, mac } => {
            counters.neighbours_published += 1;
            Some(ControlMsg::Neighbor { port, addr, mac })
        }
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use tack_dataplane::conn::FullPolicy;
    use tack_dataplane::sticky::ClientKey;
    use tack_dataplane::wire::EthernetAddress;

    use super::*;
    use crate::profile::WhenFull;

    fn lab() -> (Profile, Vec<[u8; 6]>) {
        let profile = Profile::parse(include_str!("../../configs/lab.yaml")).unwrap();
        (profile, vec![[2, 0, 0, 0, 0, 1]])
    }

    fn plane() -> ControlPlane {
        let (profile, macs) = lab();
        let cfg = Arc::new(pipeline_config(&profile, &macs).unwrap());
        ControlPlane::new(profile, macs, cfg, Vec::new(), Vec::new())
    }

    /// Every table of every start gets a hash seed of its own.
    #[test]
    fn tables_get_random_hash_seeds() {
        let (profile, macs) = lab();
        let seeds = |c: PipelineConfig| [c.conn4.hash_seed, c.conn6.hash_seed, c.sticky.hash_seed];
        let a = seeds(pipeline_config(&profile, &macs).unwrap());
        let b = seeds(pipeline_config(&profile, &macs).unwrap());
        let all: std::collections::HashSet<u64> = a.into_iter().chain(b).collect();
        assert_eq!(all.len(), 6, "{a:x?} {b:x?}");
    }

    fn learned(service: u16) -> Event {
        Event::Sticky(StickyEvent::Learned {
            service: ServiceIdx(service),
            key: ClientKey {
                addr: "172.16.0.0".parse().unwrap(),
                prefix: 16,
            },
            server: ServerIdx(1),
        })
    }

    fn neighbour() -> Event {
        Event::Neighbor {
            port: 0,
            addr: "10.0.0.254".parse().unwrap(),
            mac: EthernetAddress([2, 0, 0, 0, 0, 9]),
        }
    }

    /// Sticky bindings made in an earlier configuration epoch are not
    /// passed on (their indices may name other services now); neighbours
    /// are, and bindings of the epoch in force are.
    #[test]
    fn stale_sticky_events_are_not_published() {
        let mut c = plane();
        let mut out = Vec::new();
        publishable(
            &mut c.counters,
            c.cfg.epoch,
            0,
            0,
            vec![learned(3)],
            &mut out,
        );
        assert_eq!(out.len(), 1);
        assert_eq!(c.counters.sticky_published, 1);

        let again = c.profile.clone();
        c.apply_profile(again).unwrap();
        assert_eq!(c.config().epoch, 1);
        out.clear();
        let events = vec![learned(3), neighbour()];
        publishable(&mut c.counters, c.cfg.epoch, 1, 0, events, &mut out);
        assert!(
            matches!(out.as_slice(), [(1, ControlMsg::Neighbor { .. })]),
            "{out:?}"
        );
        assert_eq!(c.counters.sticky_stale, 1);
        assert_eq!(c.counters.sticky_published, 1);

        out.clear();
        publishable(
            &mut c.counters,
            c.cfg.epoch,
            0,
            1,
            vec![learned(3)],
            &mut out,
        );
        assert!(
            matches!(
                out.as_slice(),
                [(
                    0,
                    ControlMsg::StickyBinding {
                        service: ServiceIdx(3),
                        ..
                    }
                )]
            ),
            "{out:?}"
        );
        assert_eq!(c.counters.sticky_published, 2);
    }

    /// Refused commands answer with the same text as before the errors were
    /// typed (`tackctl` prints it after `tackctl: `).
    #[test]
    fn refused_commands_keep_their_text() {
        let mut c = plane();
        let mut refused = |line: &str| c.command(line).unwrap_err().to_string();
        assert_eq!(refused("sticky flush nope"), "no service named `nope`");
        assert_eq!(
            refused("server web s9 state up"),
            "service `web` has no server `s9`"
        );
        assert_eq!(
            refused("server web s1 state off"),
            "`off` is not a state (up, drain, maint, down)"
        );
        assert_eq!(
            refused("server web s1 weight -1"),
            "`-1` is not a weight (0..65535)"
        );
        assert_eq!(
            refused("server web add 10.0.0.14 weight x"),
            "`x` is not a weight"
        );
        assert_eq!(
            refused("server web add 10.0.0.14 wait"),
            "usage: server SERVICE add ADDR[:PORT] [weight N]"
        );
        assert_eq!(
            refused("server web add nowhere"),
            "`nowhere` is not ADDRESS or ADDRESS:PORT ([v6]:port)"
        );
        assert_eq!(refused("connections many"), "`many` is not a count");
        assert_eq!(
            refused("sticky web soon"),
            "`soon` is not a number of minutes"
        );
        assert_eq!(
            refused("sticky web 5 here"),
            "`here` is not a classful network address like 172.16.0.0"
        );
        assert_eq!(refused("reload"), "no profile file to reload");
        let unknown = refused("frobnicate");
        assert!(
            unknown.starts_with("unknown command `frobnicate` (try: status, "),
            "{unknown}"
        );
    }

    #[test]
    fn configuration_changes_are_told_from_queries() {
        for line in [
            "server web s1 state down",
            "server web add 10.0.0.14",
            "sticky web 5",
            "sticky flush",
            "connections flush",
        ] {
            assert!(changes_configuration(line), "{line}");
        }
        for line in [
            "status",
            "sticky",
            "sticky show",
            "connections 5",
            "services",
            "redirects",
            "reload",
            "",
        ] {
            assert!(!changes_configuration(line), "{line}");
        }
    }

    /// A reload may change the tables' timeouts and full policy, which the
    /// workers apply, but not their sizes, which are allocated once.
    #[test]
    fn reload_takes_table_timeouts_not_sizes() {
        let mut c = plane();
        let mut bigger = c.profile.clone();
        bigger.tables.connections *= 2;
        let e = c.apply_profile(bigger).unwrap_err();
        assert!(matches!(e, CtlError::TableSizes), "{e}");
        assert!(e.to_string().contains("table sizes need a restart"), "{e}");
        assert_eq!((c.counters.reload_errors, c.config().epoch), (1, 0));

        let mut shorter = c.profile.clone();
        shorter.tables.timeouts.udp = 30;
        shorter.tables.when_full = WhenFull::EvictOldest;
        c.apply_profile(shorter).unwrap();
        let cfg = c.config();
        assert_eq!(cfg.epoch, 1);
        assert_eq!(cfg.conn4.timeouts.udp, Duration::from_secs(30));
        assert_eq!(cfg.conn6.full_policy, FullPolicy::EvictOldest);
    }
}
