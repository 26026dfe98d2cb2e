//! The control plane, on the main lcore: publishes what one worker learns to
//! the others (sticky bindings, neighbours), collects counters, applies
//! reloads and management commands as new configuration epochs, and answers
//! questions about the workers' tables.

use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant, SystemTime};

use tack_dataplane::cluster::NodeId;
use tack_dataplane::pipeline::{ControlMsg, Event, PipelineConfig};
use tack_dataplane::sticky::StickyEvent;
use tack_dpdk::ring::{Consumer, Producer};

use crate::api::serve::ApiServer;
use crate::api::types::{self as doc, Reloaded};
use crate::cluster::Cluster;
use crate::exception::ExceptionCounters;
use crate::health::HealthState;
use crate::msg::{FromWorker, Query, Reply, ToWorker};
mod redirect;

use crate::profile::{FieldError, Profile, ProfileError, TableCheck, pipeline_config};
use crate::report::{PortTotals, WorkerSnapshot};
use crate::say;

mod ops;
mod revert;

pub use ops::{DEFAULT_LIST, MAX_LIST, admin_state, nc_subnet, server_state, state_name};
pub use redirect::render as render_redirects;

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
    /// Full-NAT walk checkpoints that could not be written.
    pub walk_checkpoint_errors: u64,
}

impl ControlCounters {
    /// Calls `f` with each counter's name and value.
    pub fn for_each(&self, mut f: impl FnMut(&'static str, u64)) {
        f("sticky_published", self.sticky_published);
        f("sticky_stale", self.sticky_stale);
        f("neighbours_published", self.neighbours_published);
        f("messages_dropped", self.messages_dropped);
        f("epochs", self.epochs);
        f("reload_errors", self.reload_errors);
        f("walk_checkpoint_errors", self.walk_checkpoint_errors);
    }
}

/// Why a management command or a reload was refused. The text is what
/// `tackctl` and `tack` print after `error: ` or `reload refused: `.
#[derive(Debug, thiserror::Error)]
pub enum CtlError {
    /// A request that cannot be carried out as given.
    #[error("{0}")]
    Incomplete(&'static str),
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
    /// runtime, workers, the management API's TCP listener, the ports'
    /// devices, queues or MACs).
    #[error(
        "eal, mempool, runtime, workers, management.http or the ports' devices, queues or MACs changed; those need a restart"
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
    /// An argument that is not what its place asks for.
    pub fn bad(value: &str, expected: &'static str) -> CtlError {
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
    /// `tackctl reload` (the management socket).
    Tackctl,
    /// `POST /reload` on the management API's TCP listener.
    Http,
}

impl std::fmt::Display for ReloadOrigin {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            ReloadOrigin::Signal => "SIGHUP",
            ReloadOrigin::Tackctl => "tackctl",
            ReloadOrigin::Http => "http",
        })
    }
}

/// The control plane's state.
pub struct ControlPlane {
    /// The running profile: the file's, with the management API's changes.
    profile: Profile,
    /// The profile as last read from its file (or given at the start): what
    /// a reload compares the running one with to report what it reverts.
    file_profile: Profile,
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
    /// Where the workers' full-NAT port walks are checkpointed, with
    /// full-NAT services ([`crate::quarantine::walk`]).
    walk: Option<crate::quarantine::walk::Checkpointer>,
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
            file_profile: profile.clone(),
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
            walk: None,
        }
    }

    /// Checkpoints the workers' full-NAT port walks with `c` from now on.
    pub fn set_walk_checkpoints(&mut self, c: crate::quarantine::walk::Checkpointer) {
        self.walk = Some(c);
    }

    /// Writes a checkpoint of the workers' full-NAT port walks, if one is
    /// due or `force` (see [`crate::quarantine::walk::Checkpointer::tick`]).
    pub fn checkpoint_walks(&mut self, force: bool) {
        let now = Instant::now();
        let Some(c) = self.walk.as_mut().filter(|c| force || c.due(now)) else {
            return;
        };
        let walks = self.snapshots.iter().map(|s| s.fnat_walk.clone()).collect();
        if c.write(now, SystemTime::now(), walks).is_err() {
            self.counters.walk_checkpoint_errors += 1;
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
        let mut changes = self.health.poll();
        // Passive health: unanswered SYNs and resets, summed over the workers.
        let (profile, snapshots) = (&self.profile, &self.snapshots);
        changes.extend(self.health.observe(|svc, srv| {
            let i = profile.services.iter().position(|s| s.name == svc)?;
            let j = profile.services[i]
                .servers
                .iter()
                .position(|s| s.display_name() == srv)?;
            let count = |w: &WorkerSnapshot| {
                w.services
                    .get(i)
                    .and_then(|c| c.servers.get(j))
                    .map_or(0, |c| c.syn_unanswered + c.resets)
            };
            Some(snapshots.iter().map(count).sum())
        }));
        if changes.is_empty() {
            return;
        }
        for c in &changes {
            let t = &c.target;
            say!(
                "tack: health: {}/{} ({}:{}) {} ({})",
                t.service,
                t.server,
                t.addr,
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

    /// The cluster's state (`GET /cluster`, `tackctl cluster`).
    pub(crate) fn cluster_doc(&self) -> doc::Cluster {
        let (Some(cl), Some(section)) = (&self.cluster, &self.profile.cluster) else {
            return doc::Cluster::default();
        };
        let nodes = section
            .nodes
            .iter()
            .map(|n| {
                let id = NodeId(n.id);
                let state = if cl.live().contains(&id) {
                    "live"
                } else if cl.draining().contains(&id) {
                    "draining"
                } else {
                    "down"
                };
                doc::ClusterNode {
                    id: n.id,
                    address: n.address,
                    state: state.to_string(),
                    this_node: n.id == section.node,
                }
            })
            .collect();
        doc::Cluster {
            node: Some(section.node),
            scheduler: cl.is_scheduler(),
            taken_over: cl.claims().taken_over.clone(),
            nodes,
            counters: cl
                .counters()
                .pairs()
                .into_iter()
                .map(|(k, v)| (k.to_string(), v))
                .collect(),
        }
    }

    /// `POST /cluster/drain` and `/cluster/activate`.
    pub(crate) fn cluster_drain(&mut self, drain: bool) -> Result<doc::Done, CtlError> {
        let Some(cl) = &mut self.cluster else {
            return Err(CtlError::Incomplete("this appliance is not in a cluster"));
        };
        cl.set_draining(drain);
        let what = if drain { "drain" } else { "activate" };
        say!("tack: cluster: {what} requested");
        Ok(doc::Done {
            message: format!("this node: {what} requested"),
        })
    }

    /// `POST /cluster/scheduler/active` and `/standby`.
    pub(crate) fn cluster_scheduler(&mut self, active: bool) -> Result<doc::Done, CtlError> {
        let Some(cl) = &mut self.cluster else {
            return Err(CtlError::Incomplete("this appliance is not in a cluster"));
        };
        let msg = cl.set_scheduler(active).map_err(CtlError::Incomplete)?;
        let role = if active { "active" } else { "standby" };
        say!("tack: cluster: scheduler {role}");
        if let Some(m) = msg {
            self.broadcast(m);
        }
        Ok(doc::Done {
            message: format!("this node: scheduler {role}"),
        })
    }

    /// The exception path's and the cluster link's counters, by name, for
    /// `GET /counters` and the metrics.
    pub(crate) fn more_counters(&self, mut f: impl FnMut(String, u64)) {
        if let Some(e) = &self.exception {
            for (k, v) in e.pairs() {
                f(format!("exception_{k}"), v);
            }
        }
        if let Some(cl) = &self.cluster {
            for (k, v) in cl.counters().pairs() {
                f(format!("cluster_{k}"), v);
            }
        }
    }

    /// Passes the cluster link's news to the workers.
    fn cluster_poll(&mut self) {
        let Some(cl) = &mut self.cluster else { return };
        let msgs = cl.poll(&self.cfg.services);
        let joined = cl.take_joined();
        for m in msgs {
            self.broadcast(m);
        }
        if !joined.is_empty() {
            self.hand_over(&joined);
        }
    }

    /// Sends nodes that just joined the state they need (see
    /// [`Cluster::hand_over`]): every worker's connections (up to
    /// `MAX_LIST` per worker) and sticky bindings, read once.
    fn hand_over(&mut self, joined: &[NodeId]) {
        let conns = self.query(Query::Connections {
            filter: tack_dataplane::pipeline::ConnFilter::default(),
            limit: MAX_LIST,
        });
        let sticky = self.query(Query::Sticky);
        let (Ok(conns), Ok(sticky)) = (conns, sticky) else {
            log::warn!("cluster: the workers did not answer; nothing handed over");
            return;
        };
        let views: Vec<_> = conns
            .into_iter()
            .flat_map(|r| match r {
                Reply::Connections { list, .. } => list,
                _ => Vec::new(),
            })
            .collect();
        let bindings: Vec<_> = sticky
            .into_iter()
            .flat_map(|r| match r {
                Reply::Sticky(list) => list,
                _ => Vec::new(),
            })
            .collect();
        let Some(cl) = &mut self.cluster else { return };
        let sent = cl.hand_over(joined, &views, &bindings, &self.cfg.services);
        let ids: Vec<String> = joined.iter().map(|n| n.0.to_string()).collect();
        say!(
            "tack: cluster: {sent} record(s) handed over to node(s) {}",
            ids.join(",")
        );
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
    /// the management API's operations are carried out as they come.
    pub fn run(&mut self, quit: &AtomicBool, reload: &AtomicBool, api: Option<&ApiServer>) {
        let interval = Duration::from_millis(u64::from(self.profile.runtime.stats_interval_ms));
        while !quit.load(Ordering::Relaxed) {
            let busy = self.tick();
            self.health_changes();
            self.cluster_poll();
            self.checkpoint_walks(false);
            if Instant::now() >= self.next_port_sample {
                self.sample_ports();
                self.next_port_sample = Instant::now() + interval;
            }
            if reload.swap(false, Ordering::Relaxed) {
                // Reported by reload_from; nobody else waits for the outcome.
                let _ = self.reload_from(ReloadOrigin::Signal);
            }
            for request in api.iter().flat_map(|m| m.pending()) {
                let changes = request.op.changes();
                // Names in a request are the client's: control characters are escaped.
                let line = changes.then(|| {
                    format!("{} {}", request.origin, request.op)
                        .escape_debug()
                        .to_string()
                });
                let answer = self.handle(request.op.clone(), request.origin);
                // Changes are reported like reloads (which report themselves).
                if let Some(line) = line {
                    match &answer {
                        Ok(_) => say!("tack: {line}: applied"),
                        Err(e) => say!("tack: {line}: refused: {e}"),
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
                && a.management.http == b.management.http
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
        // The checks `tack check` makes of a profile, then the pipeline's,
        // which gets the servers' health on top of the operator's states.
        let cfg = new
            .validate()
            .and_then(|()| pipeline_config(&self.health.effective(&new), &self.macs))
            .inspect_err(|_| {
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
    /// (ORIGIN): ...`, like the start and stop lines of `tack run`; then
    /// one line `tack: reload (ORIGIN) reverted: ...` per runtime change
    /// the reload reverted.
    pub fn reload_from(&mut self, origin: ReloadOrigin) -> Result<Reloaded, CtlError> {
        let result = self.reload();
        match &result {
            Ok(r) => {
                say!("tack: reload ({origin}): {}", r.message);
                for line in &r.reverted {
                    say!("tack: reload ({origin}) reverted: {line}");
                }
            }
            Err(e) => say!("tack: reload refused ({origin}): {e}"),
        }
        result
    }

    /// Re-reads the profile file and applies it: the file wins over the
    /// changes made through the management API since it was last read,
    /// and the answer lists those it reverted.
    pub fn reload(&mut self) -> Result<Reloaded, CtlError> {
        let Some(path) = self.profile_path.clone() else {
            return Err(CtlError::NoProfileFile);
        };
        // The tables keep their sizes at a reload (a change is refused), so
        // they are not built again to check the new profile.
        let new = Profile::load_with(&path, TableCheck::Skip).inspect_err(|_| {
            self.counters.reload_errors += 1;
        })?;
        let reverted = revert::reverted(&self.file_profile, &self.profile, &new);
        let message = self.apply_profile(new.clone())?;
        self.file_profile = new;
        Ok(Reloaded { message, reverted })
    }

    /// The full-NAT tuples of every worker's connections, open or ended
    /// (for [`crate::quarantine::save`]).
    pub fn fnat_tuples(&mut self) -> Result<Vec<tack_dataplane::pipeline::FnatTuple>, CtlError> {
        let mut all = Vec::new();
        for r in self.query(Query::FnatTuples)? {
            if let Reply::FnatTuples(list) = r {
                all.extend(list);
            }
        }
        all.sort_unstable();
        all.dedup();
        Ok(all)
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

    use tack_dataplane::ids::{ServerIdx, ServiceIdx};
    use tack_dataplane::model::ServerState;

    use super::*;
    use crate::api::op::{Answer, Op, Origin};
    use crate::api::types::{AdminState, NewServer, ServerChange, StickySelect, StickySetting};
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

    fn change(server: &str, weight: Option<u16>, state: Option<AdminState>) -> Op {
        Op::ChangeServer {
            service: "web".into(),
            server: server.into(),
            change: ServerChange { weight, state },
        }
    }

    /// Refused operations say why and publish nothing: the configuration
    /// epoch stays where it was.
    #[test]
    fn refused_operations_say_why_and_change_nothing() {
        let mut c = plane();
        let before = c.profile.clone();
        let mut refused = |op: Op| c.handle(op, Origin::Http).unwrap_err().to_string();
        assert_eq!(
            refused(Op::FlushSticky(StickySelect {
                service: Some("nope".into()),
                key: None
            })),
            "no service named `nope`"
        );
        assert_eq!(
            refused(change("s9", Some(2), None)),
            "service `web` has no server `s9`"
        );
        assert_eq!(
            refused(change("s1", None, None)),
            "give weight and/or state"
        );
        let dup = Op::AddServer {
            service: "web".into(),
            server: NewServer {
                address: "10.0.0.11".parse().unwrap(),
                port: None,
                name: Some("s1".into()),
                weight: Some(4),
                state: None,
            },
        };
        let e = refused(dup);
        assert!(e.contains("s1"), "{e}");
        assert_eq!(
            refused(Op::SetSticky {
                service: "web".into(),
                setting: StickySetting {
                    minutes: 5,
                    network: Some("here".into())
                }
            }),
            "`here` is not a classful network like 172.16.0.0, or a class A or B first octet like 172"
        );
        assert_eq!(refused(Op::Reload), "no profile file to reload");
        assert_eq!(c.config().epoch, 0);
        assert_eq!(c.profile, before);
    }

    /// A change is applied whole, as one configuration epoch.
    #[test]
    fn a_change_is_one_epoch() {
        let mut c = plane();
        let done = c
            .handle(
                change("s2", Some(9), Some(AdminState::Drain)),
                Origin::Socket,
            )
            .unwrap();
        assert!(matches!(done, Answer::Done(_)));
        assert_eq!(c.config().epoch, 1);
        let s2 = &c.profile.services[0].servers[1];
        assert_eq!((s2.weight, s2.state), (9, ServerState::Drain));
        assert!(change("s2", Some(9), None).changes());
        assert!(!Op::Services.changes());
        assert_eq!(
            change("s2", Some(9), Some(AdminState::Drain)).to_string(),
            "server web s2 state drain weight 9"
        );
    }

    /// The management API's listener is bound once: a reload that moves it
    /// is refused, and nothing changes.
    #[test]
    fn reload_keeps_the_http_listener() {
        let mut c = plane();
        let mut moved = c.profile.clone();
        moved.management.http = Some(crate::profile::HttpSection {
            listen: "127.0.0.1:9999".parse().unwrap(),
            token_file: None,
        });
        let e = c.apply_profile(moved).unwrap_err();
        assert!(matches!(e, CtlError::NeedsRestart), "{e}");
        assert!(e.to_string().contains("management.http"), "{e}");
        assert_eq!(c.config().epoch, 0);
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
