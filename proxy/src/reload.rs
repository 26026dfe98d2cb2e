//! Configurations built and replaced at run time (reload on `SIGHUP` or the
//! admin API, and the admin API's server changes, which are reloads of an
//! edited configuration).
//!
//! A configuration is built whole before anything changes: a file that does not
//! parse or validate, TLS files that cannot be read, or a change to what needs
//! a restart (listeners, the metrics and admin addresses, pass-through
//! frontends) is refused with the field at fault and the running configuration
//! stays. Once built, each listener hands new connections to the new
//! frontend; connections already open finish on the configuration they started
//! with: the fast path closes them after their current (or next) request,
//! answered with `connection: close`, and hyper's HTTP/1 connections likewise
//! (HTTP/2 connections stay on it until they close).
//!
//! A backend whose configuration did not change is kept as it is (servers'
//! health and state, persistence tables, pooled connections, counters); a
//! changed one is rebuilt, its servers taking over the health of the servers
//! of the same name, and their administrative state (set through the admin
//! API) unless the configuration changed the server's `state`; the session-ID and
//! hash-group tables of a rebuilt backend start empty. Frontend counters carry
//! over.

use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use arc_swap::ArcSwap;
use hyper_util::rt::{TokioExecutor, TokioTimer};
use hyper_util::server::conn::auto;
use tokio::sync::{Mutex, watch};
use tokio::task::JoinSet;

use crate::backend::Backend;
use crate::config::{BackendConfig, ConfigError, FrontendConfig, ProxyConfig};
use crate::metrics::Registry;
use crate::passthrough::Passthrough;
use crate::proxy::Frontend;
use crate::route::Switch;
use crate::tls::TlsError;
use crate::tls::server::TlsTerminator;
use crate::upstream::Upstream;

/// Why a configuration could not be built.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum BuildError {
    /// The configuration is invalid (or changes what needs a restart).
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// A frontend's TLS files or settings cannot be used.
    #[error("frontend {frontend}: TLS: {source}")]
    Tls {
        /// The frontend.
        frontend: String,
        /// Why.
        source: TlsError,
    },
    /// A backend's SSL contexts to its servers cannot be set up.
    #[error("backend {backend}: server TLS: {source}")]
    ServerTls {
        /// The backend.
        backend: String,
        /// Why.
        source: TlsError,
    },
}

/// What a listener hands its new connections to.
#[derive(Debug)]
pub(crate) struct Listening {
    /// The frontend's handler.
    pub(crate) fe: Arc<Frontend>,
    /// Hyper's connection settings for it.
    pub(crate) builder: Arc<auto::Builder<TokioExecutor>>,
    /// Connections start with a PROXY protocol header.
    pub(crate) accept_proxy: bool,
}

/// Hyper's server settings for a frontend.
pub(crate) fn conn_builder(fe: &FrontendConfig) -> auto::Builder<TokioExecutor> {
    let mut b = auto::Builder::new(TokioExecutor::new());
    b.http1()
        .timer(TokioTimer::new())
        .header_read_timeout(fe.keepalive_timeout.0)
        .keep_alive(true);
    b.http2().timer(TokioTimer::new()).keep_alive_interval(None);
    if !fe.http2 {
        b = b.http1_only();
    }
    b
}

impl Listening {
    fn new(fc: &FrontendConfig, fe: Arc<Frontend>) -> Listening {
        Listening {
            fe,
            builder: Arc::new(conn_builder(fc)),
            accept_proxy: fc.accept_proxy,
        }
    }
}

/// A backend of the running configuration and what runs for it.
#[derive(Debug)]
struct BackendEntry {
    cfg: BackendConfig,
    backend: Arc<Backend>,
    pool: Arc<Upstream>,
    /// Stops its health checks and pool maintenance.
    stop: watch::Sender<bool>,
}

/// The running configuration and what a reload needs to replace it.
#[derive(Debug)]
struct State {
    cfg: ProxyConfig,
    backends: Vec<Arc<BackendEntry>>,
}

/// Reload counters.
#[derive(Debug, Default)]
pub struct ReloadStats {
    /// Configurations applied by a reload.
    pub reloads: AtomicU64,
    /// Reloads refused (the running configuration stayed).
    pub failures: AtomicU64,
}

/// The running proxy's replaceable parts.
#[derive(Debug)]
pub struct Live {
    /// What metrics and the admin API report on.
    pub(crate) registry: ArcSwap<Registry>,
    /// Each listener's frontend name and what it hands connections to.
    pub(crate) listeners: Vec<(String, Arc<ArcSwap<Listening>>)>,
    state: Mutex<State>,
    /// The file `SIGHUP` and `POST /api/reload` re-read (none when embedded).
    path: Option<PathBuf>,
    tasks: std::sync::Mutex<JoinSet<()>>,
    /// Counters.
    pub stats: ReloadStats,
}

/// A built configuration, not yet running.
pub(crate) struct Built {
    /// The frontends' handlers, in configuration order.
    pub(crate) frontends: Vec<Arc<Frontend>>,
    backends: Vec<Arc<BackendEntry>>,
    /// TLS contexts made for this configuration (their files are re-read
    /// periodically while they are in use).
    new_tls: Vec<(String, Arc<TlsTerminator>)>,
}

fn tls_key(fc: &FrontendConfig) -> String {
    format!("{:?}/{}", fc.tls, fc.http2)
}

/// Build every frontend and backend of `cfg`, reusing what `prev` has of the
/// same configuration.
fn build(cfg: &ProxyConfig, prev: Option<(&State, &Registry)>) -> Result<Built, BuildError> {
    let mut backends: Vec<Arc<BackendEntry>> = Vec::with_capacity(cfg.backends.len());
    for bc in &cfg.backends {
        let old = prev.and_then(|(st, _)| st.backends.iter().find(|e| e.cfg.name == bc.name));
        if let Some(old) = old
            && format!("{:?}", old.cfg) == format!("{bc:?}")
        {
            backends.push(old.clone());
            continue;
        }
        let backend = Backend::new(bc);
        if let Some(old) = old {
            // Servers of the same name keep their health, and their
            // administrative state unless the configuration changed it.
            for (s, sc) in backend.servers.iter().zip(&bc.servers) {
                if let Some(o) = old.backend.server_by_name(&s.name) {
                    let was = old.cfg.servers.iter().find(|x| x.name == s.name);
                    if was.is_some_and(|w| w.state == sc.state) {
                        s.set_admin_state(o.admin_state());
                    }
                    s.set_healthy(o.is_healthy());
                }
            }
        }
        let pool = Upstream::for_backend(bc).map_err(|source| BuildError::ServerTls {
            backend: bc.name.clone(),
            source,
        })?;
        backends.push(Arc::new(BackendEntry {
            cfg: bc.clone(),
            backend: Arc::new(backend),
            pool: Arc::new(pool),
            stop: watch::channel(false).0,
        }));
    }
    let by_name = |name: &str| backends.iter().find(|e| e.cfg.name == name);
    let mut frontends = Vec::with_capacity(cfg.frontends.len());
    let mut new_tls = Vec::new();
    for (i, fc) in cfg.frontends.iter().enumerate() {
        let old = prev.and_then(|(_, r)| r.frontends.iter().find(|f| f.name == fc.name));
        let old_cfg = prev.and_then(|(st, _)| st.cfg.frontends.iter().find(|f| f.name == fc.name));
        let tls = match (&fc.tls, old, old_cfg) {
            (None, _, _) => None,
            (Some(_), Some(o), Some(oc)) if tls_key(oc) == tls_key(fc) && o.tls.is_some() => {
                o.tls.clone()
            }
            (Some(t), _, _) => {
                let t = Arc::new(TlsTerminator::new(t, fc.http2).map_err(|source| {
                    BuildError::Tls {
                        frontend: fc.name.clone(),
                        source,
                    }
                })?);
                new_tls.push((fc.name.clone(), t.clone()));
                Some(t)
            }
        };
        let handler = |name: &str| -> Result<Frontend, BuildError> {
            let e = by_name(name).ok_or_else(|| ConfigError::Invalid {
                field: format!("frontends[{i}].backend"),
                message: format!("no backend named {name:?}"),
                line: None,
            })?;
            Ok(Frontend::new(
                fc,
                e.backend.clone(),
                e.pool.clone(),
                tls.clone(),
            ))
        };
        let mut root = handler(&fc.backend)?;
        if let Some(o) = old {
            root.share_with(o);
        }
        if !fc.use_backend.is_empty() {
            // One handler per backend the rules name.
            let mut made: Vec<(String, Arc<Frontend>)> = Vec::new();
            for r in &fc.use_backend {
                if !made.iter().any(|(n, _)| *n == r.backend) {
                    let mut h = handler(&r.backend)?;
                    h.share_with(&root);
                    made.push((r.backend.clone(), Arc::new(h)));
                }
            }
            let switch = Switch::new(&fc.use_backend, |r| {
                made.iter()
                    .find(|(n, _)| *n == r.backend)
                    .map(|(_, h)| h.clone())
                    .unwrap_or_else(|| unreachable!("a handler per named backend"))
            })
            .map_err(|e| ConfigError::Invalid {
                field: format!("frontends[{i}].use_backend"),
                message: e.to_string(),
                line: None,
            })?;
            root.set_routes(switch);
        }
        frontends.push(Arc::new(root));
    }
    Ok(Built {
        frontends,
        backends,
        new_tls,
    })
}

/// Start what runs for a backend: pool maintenance (idle connections reaped,
/// the tunnels of its SSL contexts kept established) and health checks, until
/// its `stop`.
fn spawn_backend(tasks: &mut JoinSet<()>, e: &BackendEntry) {
    let (up, be, mut stop) = (e.pool.clone(), e.backend.clone(), e.stop.subscribe());
    tasks.spawn(async move {
        let mut tick = tokio::time::interval(up.reap_interval());
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = async {
                    tick.tick().await;
                    up.reap();
                    up.fill_tunnels(|i| be.servers[i].usable_for_pinned()).await;
                } => {}
                _ = stop.wait_for(|s| *s) => break,
            }
        }
    });
    if let Some(hc) = &e.cfg.health_check {
        for s in e.backend.servers.iter().filter(|s| s.check) {
            let tls = e.pool.tls_only_context(s.idx).cloned();
            tasks.spawn(crate::health::run_checks(
                hc.clone(),
                s.clone(),
                tls,
                e.stop.subscribe(),
            ));
        }
    }
}

/// Re-read a frontend's TLS files periodically while its context is in use
/// (by a frontend of the running configuration or an open connection).
fn spawn_tls(
    tasks: &mut JoinSet<()>,
    name: String,
    t: Arc<TlsTerminator>,
    stop: watch::Receiver<bool>,
) {
    let mut stop = stop;
    tasks.spawn(async move {
        let mut tick = tokio::time::interval(t.reload_interval);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = tick.tick() => {
                    if Arc::strong_count(&t) == 1 {
                        break; // replaced by a reload, and no connection uses it
                    }
                    t.reload(&name);
                }
                _ = stop.wait_for(|s| *s) => break,
            }
        }
    });
}

/// The first line of `text` with `needle`, for errors that name a line.
fn line_of(text: Option<&str>, needle: &str) -> Option<usize> {
    text?
        .lines()
        .position(|l| l.contains(needle))
        .map(|i| i + 1)
}

/// Refuse what a reload cannot change: listeners, pass-through frontends, the
/// metrics and admin addresses.
fn check_fixed(
    old: &ProxyConfig,
    new: &ProxyConfig,
    text: Option<&str>,
) -> Result<(), ConfigError> {
    let restart = |field: String, needle: &str| ConfigError::Invalid {
        field,
        message: "cannot change on reload (restart tack-proxy to change listeners)".into(),
        line: line_of(text, needle),
    };
    if old.frontends.len() != new.frontends.len() {
        return Err(restart("frontends".into(), "frontends:"));
    }
    for (i, (o, n)) in old.frontends.iter().zip(&new.frontends).enumerate() {
        if o.name != n.name {
            return Err(restart(format!("frontends[{i}].name"), &n.name));
        }
        if o.bind != n.bind || o.freebind != n.freebind || o.transparent != n.transparent {
            return Err(restart(format!("frontends[{i}].bind"), "bind"));
        }
        if o.tls.is_some() != n.tls.is_some() {
            return Err(restart(format!("frontends[{i}].tls"), &n.name));
        }
    }
    if format!("{:?}", old.passthrough) != format!("{:?}", new.passthrough) {
        return Err(restart("passthrough".into(), "passthrough:"));
    }
    // Pass-through frontends keep the backends they started with.
    for pt in &old.passthrough {
        for name in pt.backends() {
            let (o, n) = (
                old.backends.iter().find(|b| b.name == name),
                new.backends.iter().position(|b| b.name == name),
            );
            let same = match (o, n) {
                (Some(o), Some(i)) => format!("{o:?}") == format!("{:?}", new.backends[i]),
                _ => false,
            };
            if !same {
                return Err(ConfigError::Invalid {
                    field: match n {
                        Some(i) => format!("backends[{i}]"),
                        None => "backends".into(),
                    },
                    message: format!(
                        "backend {name:?} serves passthrough frontend {:?}: it cannot change on reload (restart tack-proxy)",
                        pt.name
                    ),
                    line: line_of(text, name),
                });
            }
        }
    }
    if old.metrics.as_ref().map(|m| m.listen) != new.metrics.as_ref().map(|m| m.listen) {
        return Err(restart("metrics.listen".into(), "metrics:"));
    }
    if format!("{:?}", old.admin) != format!("{:?}", new.admin) {
        return Err(restart("admin".into(), "admin:"));
    }
    Ok(())
}

/// A proxy's configuration built for starting: the listeners are bound by the
/// caller, then [`Live::start`] runs it.
pub(crate) struct Initial {
    pub(crate) built: Built,
}

impl Initial {
    /// Build `cfg` from scratch.
    pub(crate) fn build(cfg: &ProxyConfig) -> Result<Initial, BuildError> {
        Ok(Initial {
            built: build(cfg, None)?,
        })
    }

    /// The backends, in configuration order.
    pub(crate) fn backends(&self) -> Vec<Arc<Backend>> {
        self.built
            .backends
            .iter()
            .map(|e| e.backend.clone())
            .collect()
    }
}

impl Live {
    /// Run a built configuration: `listeners` are the frontends' names and
    /// (the frontend's index) for each bound listener; background tasks go
    /// into `tasks`.
    pub(crate) fn start(
        cfg: ProxyConfig,
        init: Initial,
        listeners: &[(String, usize)],
        passthrough: Vec<Arc<Passthrough>>,
        path: Option<PathBuf>,
        mut tasks: JoinSet<()>,
        stop: &watch::Receiver<bool>,
    ) -> Live {
        let Built {
            frontends,
            backends,
            new_tls,
        } = init.built;
        for e in &backends {
            spawn_backend(&mut tasks, e);
        }
        for (name, t) in new_tls {
            spawn_tls(&mut tasks, name, t, stop.clone());
        }
        let slots = listeners
            .iter()
            .map(|(name, i)| {
                let l = Listening::new(&cfg.frontends[*i], frontends[*i].clone());
                (name.clone(), Arc::new(ArcSwap::from_pointee(l)))
            })
            .collect();
        let registry = Registry {
            frontends,
            backends: backends.iter().map(|e| e.backend.clone()).collect(),
            pools: backends.iter().map(|e| e.pool.clone()).collect(),
            passthrough,
        };
        Live {
            registry: ArcSwap::from_pointee(registry),
            listeners: slots,
            state: Mutex::new(State { cfg, backends }),
            path,
            tasks: std::sync::Mutex::new(tasks),
            stats: ReloadStats::default(),
        }
    }

    /// The running configuration.
    pub async fn config(&self) -> ProxyConfig {
        self.state.lock().await.cfg.clone()
    }

    /// Re-read the configuration file and apply it (`SIGHUP`).
    pub async fn reload_file(&self, stop: &watch::Receiver<bool>) -> Result<(), BuildError> {
        let Some(path) = &self.path else {
            return Err(ConfigError::Invalid {
                field: "--config".into(),
                message: "the proxy was not started from a file".into(),
                line: None,
            }
            .into());
        };
        let res = match ProxyConfig::from_file(path) {
            Ok(cfg) => {
                let text = std::fs::read_to_string(path).ok();
                self.apply(cfg, text.as_deref(), stop).await
            }
            Err(e) => Err(e.into()),
        };
        if let Err(e) = &res {
            self.stats.failures.fetch_add(1, Ordering::Relaxed);
            log::error!(
                "reload of {} refused, the running configuration stays: {e}",
                path.display()
            );
        }
        res
    }

    /// Apply an edited configuration (the admin API's server changes): the
    /// running one is passed to `edit`, which changes it or says why not; the
    /// result is validated and applied as a reload.
    pub async fn edit(
        &self,
        stop: &watch::Receiver<bool>,
        edit: impl FnOnce(&mut ProxyConfig) -> Result<(), ConfigError>,
    ) -> Result<(), BuildError> {
        let mut cfg = self.config().await;
        let res = match edit(&mut cfg).and_then(|()| cfg.validate()) {
            Ok(()) => self.apply(cfg, None, stop).await,
            Err(e) => Err(e.into()),
        };
        if res.is_err() {
            self.stats.failures.fetch_add(1, Ordering::Relaxed);
        }
        res
    }

    /// Build `cfg` and switch every listener to it (the running configuration
    /// stays when it cannot be built). `text`: its source, for error lines.
    pub async fn apply(
        &self,
        cfg: ProxyConfig,
        text: Option<&str>,
        stop: &watch::Receiver<bool>,
    ) -> Result<(), BuildError> {
        let mut st = self.state.lock().await;
        check_fixed(&st.cfg, &cfg, text)?;
        let old = self.registry.load_full();
        let built = build(&cfg, Some((&st, &old)))?;
        {
            let mut tasks = self.tasks.lock().unwrap_or_else(|e| e.into_inner());
            for e in &built.backends {
                if !st.backends.iter().any(|o| Arc::ptr_eq(o, e)) {
                    spawn_backend(&mut tasks, e);
                }
            }
            for (name, t) in &built.new_tls {
                spawn_tls(&mut tasks, name.clone(), t.clone(), stop.clone());
            }
        }
        for (name, slot) in &self.listeners {
            if let Some(i) = cfg.frontends.iter().position(|f| f.name == *name) {
                slot.store(Arc::new(Listening::new(
                    &cfg.frontends[i],
                    built.frontends[i].clone(),
                )));
            }
        }
        for f in &old.frontends {
            f.retire();
        }
        for o in &st.backends {
            if !built.backends.iter().any(|e| Arc::ptr_eq(o, e)) {
                o.stop.send_replace(true);
            }
        }
        self.registry.store(Arc::new(Registry {
            frontends: built.frontends,
            backends: built.backends.iter().map(|e| e.backend.clone()).collect(),
            pools: built.backends.iter().map(|e| e.pool.clone()).collect(),
            passthrough: old.passthrough.clone(),
        }));
        st.backends = built.backends;
        st.cfg = cfg;
        self.stats.reloads.fetch_add(1, Ordering::Relaxed);
        log::info!("configuration reloaded");
        Ok(())
    }

    /// The reload counters in the Prometheus text format.
    pub fn render_metrics(&self, o: &mut String) {
        use std::fmt::Write;
        for (name, help, v) in [
            (
                "tack_proxy_reloads_total",
                "Configurations applied by a reload (SIGHUP, the admin API).",
                &self.stats.reloads,
            ),
            (
                "tack_proxy_reload_failures_total",
                "Reloads refused (the running configuration stayed).",
                &self.stats.failures,
            ),
        ] {
            let _ = writeln!(
                o,
                "# HELP {name} {help}\n# TYPE {name} counter\n{name} {}",
                v.load(Ordering::Relaxed)
            );
        }
    }

    /// Run a background task until shutdown (which waits for it).
    pub(crate) fn spawn(&self, f: impl std::future::Future<Output = ()> + Send + 'static) {
        self.tasks
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .spawn(f);
    }

    /// Stop every background task and wait for them (shutdown).
    pub(crate) async fn stop_tasks(&self) {
        for e in &self.state.lock().await.backends {
            e.stop.send_replace(true);
        }
        let mut tasks = std::mem::take(&mut *self.tasks.lock().unwrap_or_else(|e| e.into_inner()));
        while tasks.join_next().await.is_some() {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const BASE: &str = "frontends:\n  - name: web\n    bind: [\"127.0.0.1:8080\"]\n    backend: app\npassthrough:\n  - name: tls\n    bind: [\"127.0.0.1:8443\"]\n    default_backend: pt\nbackends:\n  - name: app\n    servers: [{ name: a, address: \"127.0.0.1:1\" }]\n  - name: pt\n    servers: [{ name: p, address: \"127.0.0.1:2\" }]\n";

    fn fixed(new: &str) -> Result<(), String> {
        let old = ProxyConfig::from_yaml_str(BASE).unwrap();
        let cfg = ProxyConfig::from_yaml_str(new).unwrap();
        check_fixed(&old, &cfg, Some(new)).map_err(|e| e.to_string())
    }

    #[test]
    fn what_needs_a_restart_is_refused_with_its_field_and_line() {
        assert_eq!(fixed(BASE), Ok(()));
        // A backend of the HTTP frontends may change.
        assert_eq!(fixed(&BASE.replace("127.0.0.1:1", "127.0.0.1:3")), Ok(()));
        let e = fixed(&BASE.replace("127.0.0.1:8080", "127.0.0.1:8081")).unwrap_err();
        assert!(
            e.starts_with("frontends[0].bind: cannot change on reload") && e.ends_with("(line 3)"),
            "{e}"
        );
        let e = fixed(&BASE.replace("127.0.0.1:2", "127.0.0.1:3")).unwrap_err();
        assert!(
            e.starts_with("backends[1]: backend \"pt\" serves passthrough frontend \"tls\""),
            "{e}"
        );
        let e = fixed(&BASE.replace("name: web", "name: www")).unwrap_err();
        assert!(e.starts_with("frontends[0].name"), "{e}");
    }
}
