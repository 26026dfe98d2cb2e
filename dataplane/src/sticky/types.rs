//! What the sticky table takes and gives: events, decisions, bindings, configuration, errors and counters.

use super::*;

/// A binding change to publish to the other cores.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum StickyEvent {
    /// A new key was bound by this core's deterministic first choice.
    Learned {
        /// Service index (in the snapshot the table was using).
        service: ServiceIdx,
        /// The client key.
        key: ClientKey,
        /// The chosen server.
        server: ServerIdx,
    },
    /// A key was moved because its server went `Down`/`Maint` or was removed.
    Rebound {
        /// Service index.
        service: ServiceIdx,
        /// The client key.
        key: ClientKey,
        /// The previous server (`None` if it was removed by a reload).
        from: Option<ServerIdx>,
        /// The new server.
        to: ServerIdx,
    },
}

impl StickyEvent {
    /// The event in the indices of a new snapshot (`map` from the reload),
    /// or `None` if its service, its key rule or its server is gone: an
    /// event must name the service and server as the snapshot that applies
    /// it does.
    pub fn remap(self, map: &ReloadMap) -> Option<StickyEvent> {
        match self {
            StickyEvent::Learned {
                service,
                key,
                server,
            } => {
                let m = keeps_bindings(map, service)?;
                Some(StickyEvent::Learned {
                    service: m.new_index,
                    key,
                    server: m.server(server)?,
                })
            }
            StickyEvent::Rebound {
                service,
                key,
                from,
                to,
            } => {
                let m = keeps_bindings(map, service)?;
                Some(StickyEvent::Rebound {
                    service: m.new_index,
                    key,
                    from: from.and_then(|f| m.server(f)),
                    to: m.server(to)?,
                })
            }
        }
    }
}

/// How old service `service` maps into the new snapshot, if its bindings
/// carry over: it is still there with the same key rule.
pub(super) fn keeps_bindings(map: &ReloadMap, service: ServiceIdx) -> Option<&ServiceMap> {
    map.service(service).filter(|m| !m.persistence_changed)
}

/// What to do with a new client of a persistent service.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum StickyDecision {
    /// No persistence applies (service not persistent, or a class D/E source):
    /// use the service's scheduler.
    NotSticky,
    /// Send the connection to `server`.
    Pinned {
        /// The server.
        server: ServerIdx,
        /// The client key.
        key: ClientKey,
        /// Whether the connection now holds a reference on the binding, to be
        /// given back with [`StickyTable::release`] when it ends. `false` when
        /// the table was full and the choice was made without an entry.
        tracked: bool,
    },
    /// Persistence applies but no server can take the client: drop.
    NoServer,
}

/// A binding as shown by `tackctl sticky show`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StickyBinding {
    /// Service index.
    pub service: ServiceIdx,
    /// Client key.
    pub key: ClientKey,
    /// Bound server (`None` after its removal by a reload, until rebound).
    pub server: Option<ServerIdx>,
    /// Connections using the binding. [`StickyTable::iter`] counts every
    /// connection that holds it, ended ones lingering in TIME_WAIT or CLOSE
    /// included; [`Pipeline::sticky_bindings`](crate::pipeline::Pipeline::sticky_bindings)
    /// (what `tackctl sticky show` reads) only the open ones.
    pub active: u32,
    /// When the binding expires if still idle (`None` while connections hold it).
    pub idle_expires: Option<Time>,
}

/// What a full table does with a new key.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash)]
pub enum StickyFullPolicy {
    /// Serve the key with its deterministic choice but without an entry
    /// (counted in [`StickyStats::full_bypass`]).
    Bypass,
    /// Remove the idle binding closest to expiry (counted in
    /// [`StickyStats::full_evictions`]); bypass if every binding is in use.
    #[default]
    EvictIdle,
}

/// Configuration of one sticky table.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StickyConfig {
    /// Maximum number of bindings.
    pub capacity: usize,
    /// Full-table policy.
    pub full_policy: StickyFullPolicy,
    /// Timer wheel tick (expiry precision), default 1 s.
    pub tick: Duration,
    /// Hash seed of the table (not of the choice, which is seeded by the
    /// service). `tack` picks a random one at start; tests fix it.
    pub hash_seed: u64,
    /// Maximum number of undrained events (further events are dropped and counted).
    pub outbox_capacity: usize,
}

impl Default for StickyConfig {
    fn default() -> StickyConfig {
        StickyConfig {
            capacity: 1 << 16,
            full_policy: StickyFullPolicy::EvictIdle,
            tick: Duration::from_secs(1),
            hash_seed: 0x7374_6963_6b79_7462,
            outbox_capacity: 1024,
        }
    }
}

/// Why a sticky table cannot be built.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[non_exhaustive]
pub enum StickyTableError {
    /// Capacity 0 or too large.
    #[error("sticky table capacity {0} is out of range")]
    Capacity(usize),
    /// The timer wheel refused the configuration.
    #[error("timer wheel: {0}")]
    Timer(#[from] TimerError),
    /// The allocator refused the table.
    #[error("cannot allocate a sticky table of {0} entries")]
    Alloc(usize),
}

/// Why a binding from another core was not installed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Error)]
#[non_exhaustive]
pub enum InstallError {
    /// The service does not exist in the snapshot.
    #[error("no such service")]
    NoSuchService,
    /// The service has no persistence.
    #[error("service is not persistent")]
    NotPersistent,
    /// The key is not a canonical key of the service's rule.
    #[error("key {0} is not a key of the service's persistence rule")]
    InvalidKey(ClientKey),
    /// The server does not exist.
    #[error("no such server")]
    NoSuchServer,
    /// The server is `Down` or in `Maint`.
    #[error("server is not available")]
    Unavailable,
    /// The table is full of bindings in use.
    #[error("sticky table full")]
    Full,
}

/// Result of a successful install.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum InstallOutcome {
    /// A new binding was created (idle, timer started).
    Created,
    /// The binding already pointed at that server.
    Unchanged,
    /// The binding pointed elsewhere and was replaced.
    Replaced {
        /// The previous server.
        previous: Option<ServerIdx>,
    },
}

/// Counters of one sticky table.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct StickyStats {
    /// New connections that found their binding.
    pub hits: u64,
    /// New keys bound by the deterministic first choice (sticky misses).
    pub learned: u64,
    /// Bindings moved off a `Down`/`Maint`/removed server.
    pub rebinds: u64,
    /// Sources never sticky (class D/E, or a family the rule cannot key).
    pub unsticky: u64,
    /// Persistent clients with no server available.
    pub no_server: u64,
    /// New keys served without an entry because the table was full.
    pub full_bypass: u64,
    /// Idle bindings evicted to make room.
    pub full_evictions: u64,
    /// Bindings removed by their idle timeout.
    pub expired: u64,
    /// Bindings installed from other cores.
    pub installs: u64,
    /// Installs refused.
    pub install_rejected: u64,
    /// Installs that replaced a different local binding.
    pub install_replaced: u64,
    /// Releases that matched no binding in use.
    pub release_unknown: u64,
    /// Bindings removed by flush.
    pub flushed: u64,
    /// Bindings removed by a reload (service gone or rule changed).
    pub reload_removed: u64,
    /// Events dropped because the outbox was full.
    pub events_dropped: u64,
    /// Pending events dropped by a reload that removed their service,
    /// server or key rule (the others are carried over to the new indices).
    pub reload_events_dropped: u64,
    /// Calls naming a service that is not in the snapshot.
    pub invalid_service: u64,
}
