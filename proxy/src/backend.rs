//! Runtime state of backends and servers: weights, administrative and health state,
//! load, queues, persistence tables and counters.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU8, AtomicU64, Ordering};
use std::time::Duration;

use crate::balance::{Balancer, Candidate};
use crate::config::{AdminState, BackendConfig, HashKey};
use crate::persist::{HashGroups, SessionTable};
use crate::qos::Slots;

/// Counters of one server.
#[derive(Debug, Default)]
pub struct ServerStats {
    /// Requests sent to the server.
    pub requests: AtomicU64,
    /// Responses by class: 1xx..5xx at index 0..4.
    pub responses: [AtomicU64; 5],
    /// Failed connection attempts / upstream errors.
    pub connect_errors: AtomicU64,
    /// Requests answered with a redirect (redirect persistence).
    pub redirects: AtomicU64,
    /// Health checks that failed.
    pub check_failures: AtomicU64,
    /// Transitions to down.
    pub downs: AtomicU64,
}

/// One server of a backend.
#[derive(Debug)]
pub struct Server {
    /// Index in the backend.
    pub idx: usize,
    /// Name.
    pub name: String,
    /// Address.
    pub addr: SocketAddr,
    /// Weight (0..=256).
    pub weight: u32,
    /// Cookie value that designates it.
    pub cookie: String,
    /// Redirect prefix (redirect persistence).
    pub redir: Option<String>,
    /// Whether health checks run on it.
    pub check: bool,
    /// A backup server: takes new requests only when no primary server can.
    pub backup: bool,
    admin: AtomicU8,
    healthy: AtomicBool,
    /// Concurrency slots and queue.
    pub slots: Arc<Slots>,
    /// Counters.
    pub stats: ServerStats,
}

impl Server {
    /// Administrative state.
    pub fn admin_state(&self) -> AdminState {
        match self.admin.load(Ordering::Relaxed) {
            0 => AdminState::Up,
            1 => AdminState::Drain,
            _ => AdminState::Maint,
        }
    }

    /// Change the administrative state (up, drain, maint).
    pub fn set_admin_state(&self, s: AdminState) {
        self.admin.store(
            match s {
                AdminState::Up => 0,
                AdminState::Drain => 1,
                AdminState::Maint => 2,
            },
            Ordering::Relaxed,
        );
    }

    /// Health as last decided by the checks (true when checks are off).
    pub fn is_healthy(&self) -> bool {
        self.healthy.load(Ordering::Relaxed)
    }

    /// Set the health state (used by the health checker).
    pub fn set_healthy(&self, up: bool) {
        let was = self.healthy.swap(up, Ordering::Relaxed);
        if was && !up {
            self.stats.downs.fetch_add(1, Ordering::Relaxed);
        }
        if was != up {
            log::warn!(
                "server {} ({}) is {}",
                self.name,
                self.addr,
                if up { "UP" } else { "DOWN" }
            );
        }
    }

    /// May take new load-balanced requests.
    pub fn usable_for_new(&self) -> bool {
        self.admin_state() == AdminState::Up && self.is_healthy() && self.weight > 0
    }

    /// May take requests of clients pinned to it (drain keeps them).
    pub fn usable_for_pinned(&self) -> bool {
        self.admin_state() != AdminState::Maint && self.is_healthy()
    }
}

impl Candidate for Arc<Server> {
    fn weight(&self) -> u32 {
        self.weight
    }
    fn load(&self) -> u32 {
        self.slots.inflight() + self.slots.queued() as u32
    }
}

/// Counters of a backend.
#[derive(Debug, Default)]
pub struct BackendStats {
    /// Requests handled.
    pub requests: AtomicU64,
    /// Requests sent to another server than persistence asked for.
    pub redispatches: AtomicU64,
    /// Connection retries.
    pub retries: AtomicU64,
    /// Requests refused for lack of a usable server or queue slot (503).
    pub no_server: AtomicU64,
    /// Requests whose persistence cookie matched a usable server.
    pub cookie_valid: AtomicU64,
    /// ... matched a server that is down or in maintenance.
    pub cookie_down: AtomicU64,
    /// ... matched no server.
    pub cookie_invalid: AtomicU64,
    /// ... was idle past `maxidle`.
    pub cookie_expired: AtomicU64,
    /// ... was older than `maxlife`.
    pub cookie_old: AtomicU64,
    /// Set-Cookie headers inserted or rewritten.
    pub cookie_set: AtomicU64,
    /// Requests routed by the session-ID table.
    pub session_routed: AtomicU64,
    /// Requests routed by hash-group persistence.
    pub group_routed: AtomicU64,
}

/// A backend: its servers and how requests are spread and pinned.
#[derive(Debug)]
pub struct Backend {
    /// Name.
    pub name: String,
    /// Configuration.
    pub cfg: BackendConfig,
    /// Servers, in configuration order.
    pub servers: Vec<Arc<Server>>,
    /// Scheduler.
    pub balancer: Balancer,
    /// Application session-ID table.
    pub sessions: Option<SessionTable>,
    /// Hash-group persistence table.
    pub groups: Option<HashGroups>,
    /// Counters.
    pub stats: BackendStats,
}

impl Backend {
    /// Build the runtime state from configuration.
    pub fn new(cfg: &BackendConfig) -> Backend {
        let servers: Vec<Arc<Server>> = cfg
            .servers
            .iter()
            .enumerate()
            .map(|(idx, s)| {
                let srv = Server {
                    idx,
                    name: s.name.clone(),
                    addr: s.address,
                    weight: s.weight.0,
                    cookie: s.cookie.clone().unwrap_or_else(|| s.name.clone()),
                    redir: s
                        .redir
                        .as_ref()
                        .map(|r| r.trim_end_matches('/').to_string()),
                    check: s.check,
                    backup: s.backup,
                    admin: AtomicU8::new(0),
                    healthy: AtomicBool::new(true),
                    slots: Arc::new(Slots::new(s.maxconn, s.maxqueue)),
                    stats: ServerStats::default(),
                };
                srv.set_admin_state(s.state);
                Arc::new(srv)
            })
            .collect();
        let ring_keys: Vec<(String, u32)> = cfg
            .servers
            .iter()
            .map(|s| {
                let key = match cfg.hash_key {
                    HashKey::Id => s.name.clone(),
                    HashKey::AddrPort => s.address.to_string(),
                };
                (key, s.weight.0)
            })
            .collect();
        Backend {
            name: cfg.name.clone(),
            balancer: Balancer::new(cfg.balance.clone(), cfg.hash_type, &ring_keys),
            sessions: cfg
                .session_id
                .as_ref()
                .map(|s| SessionTable::new(s.table_size, s.expire.0)),
            groups: cfg.hash_groups.as_ref().map(|h| HashGroups::new(h.groups)),
            servers,
            cfg: cfg.clone(),
            stats: BackendStats::default(),
        }
    }

    /// The server whose cookie value is `value`.
    pub fn server_by_cookie(&self, value: &str) -> Option<&Arc<Server>> {
        self.servers.iter().find(|s| s.cookie == value)
    }

    /// The server named `name`.
    pub fn server_by_name(&self, name: &str) -> Option<&Arc<Server>> {
        self.servers.iter().find(|s| s.name == name)
    }

    /// Whether new requests go to the backup servers: the backend has some and
    /// no primary server may take new requests (down, in drain or maintenance,
    /// or weight 0).
    pub fn use_backups(&self) -> bool {
        self.servers.iter().any(|s| s.backup)
            && !self.servers.iter().any(|s| !s.backup && s.usable_for_new())
    }

    /// Queue timeout.
    pub fn queue_timeout(&self) -> Duration {
        self.cfg.timeouts.queue.0
    }
}
