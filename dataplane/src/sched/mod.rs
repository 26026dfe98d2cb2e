//! Schedulers: choose a real server for a client that is **not yet bound**
//! (no connection entry, no sticky binding). Established flows never come
//! here; they follow their connection entry.
//!
//! The algorithms are in [`crate::balance`], each usable on its own over a
//! slice of [`Backend`](crate::balance::Backend)s.
//!
//! [`SchedState`] is one core's scheduling state for a whole [`Config`]
//! (round-robin cursors, smooth-WRR cycle positions or current weights,
//! connection counts) and
//! dispatches on each service's [`SchedulerKind`].
//!
//! # Eligibility
//! Only servers that are `Up` with weight > 0 are eligible for new clients
//! (the snapshot precomputes that list per service); `Drain`, `Maint` and
//! `Down` servers and weight-0 servers are never picked. With no eligible
//! server every scheduler returns `None` and the pipeline drops the packet
//! (counted in [`SchedStats::no_server`]).
//!
//! # Cores and load-aware schedulers
//! Every worker core has its own [`SchedState`]: least-connection counts are
//! **per core** (the connections this core created and has not yet closed),
//! round-robin positions are per core. With RSS spreading clients evenly, the
//! per-core view is a fair sample of the global load, and nothing is shared or
//! locked. The hashing schedulers (source hash, Maglev, rendezvous) are pure
//! functions of the snapshot and the client, so all cores (and all nodes with
//! the same configuration) make the same choice. Persistence does not use the
//! service's scheduler at all: a sticky key's first server is a weighted
//! rendezvous hash (see [`crate::sticky`]), which ignores load so that two
//! cores agree without talking.

use std::net::IpAddr;

use crate::balance::{hrw, lc, rr, source_hash};
use crate::hash;
use crate::model::{Config, ReloadMap, SchedulerKind, ServerIdx, ServiceIdx};

/// What a scheduler may look at in a new client's first packet.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct PickKey {
    /// Client (source) address.
    pub src: IpAddr,
    /// Client (source) port.
    pub src_port: u16,
    /// Destination port (the VIP's port).
    pub dst_port: u16,
}

/// Counters of one core's schedulers.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SchedStats {
    /// Servers chosen.
    pub picks: u64,
    /// New clients with no eligible server (the pipeline drops them).
    pub no_server: u64,
    /// Calls naming a service that is not in the snapshot.
    pub invalid_service: u64,
    /// Times the state was resized because it was used with a snapshot it had
    /// not been [`SchedState::reconfigure`]d for.
    pub resyncs: u64,
}

#[derive(Debug, Clone, Default)]
struct ServiceSched {
    rr: rr::RoundRobin,
    swrr: rr::SmoothWrr,
    /// Position in the service's precomputed `wrr` cycle.
    swrr_pos: usize,
    lc_start: usize,
    conns: Vec<u32>,
}

impl ServiceSched {
    fn new(pool_len: usize) -> ServiceSched {
        ServiceSched {
            rr: rr::RoundRobin::new(),
            swrr: rr::SmoothWrr::new(pool_len),
            swrr_pos: 0,
            lc_start: 0,
            conns: vec![0; pool_len],
        }
    }
}

/// One core's scheduler state for a configuration snapshot.
#[derive(Debug, Clone, Default)]
pub struct SchedState {
    services: Vec<ServiceSched>,
    /// Counters.
    pub stats: SchedStats,
}

impl SchedState {
    /// State for `cfg`.
    pub fn new(cfg: &Config) -> SchedState {
        let services = cfg
            .services()
            .map(|(_, s)| ServiceSched::new(s.servers.len()))
            .collect();
        SchedState {
            services,
            stats: SchedStats::default(),
        }
    }

    /// Adopts a new snapshot. With `map` (from [`Config::reload_map`]) the
    /// per-server connection counts follow their servers to their new indices;
    /// without it (same structure, only states or weights changed) indices are
    /// kept. Round-robin positions and smooth-WRR weights restart when the
    /// structure changed. Allocates: call at configuration change only.
    pub fn reconfigure(&mut self, cfg: &Config, map: Option<&ReloadMap>) {
        match map {
            Some(map) if !map.is_identity() => {
                let mut next: Vec<ServiceSched> = cfg
                    .services()
                    .map(|(_, s)| ServiceSched::new(s.servers.len()))
                    .collect();
                for (old_i, old) in self.services.iter().enumerate() {
                    let Some(m) = map.service(ServiceIdx(old_i as u16)) else {
                        continue;
                    };
                    let Some(dst) = next.get_mut(usize::from(m.new_index)) else {
                        continue;
                    };
                    for (old_srv, &c) in old.conns.iter().enumerate() {
                        if let Some(Some(new_srv)) = m.servers.get(old_srv)
                            && let Some(slot) = dst.conns.get_mut(usize::from(*new_srv))
                        {
                            *slot = c;
                        }
                    }
                }
                self.services = next;
            }
            _ => self.resync(cfg),
        }
    }

    /// Resizes to `cfg` keeping indices (no-op when the sizes already match).
    fn resync(&mut self, cfg: &Config) {
        self.services.resize_with(cfg.len(), ServiceSched::default);
        for (i, s) in cfg.services() {
            let st = &mut self.services[usize::from(i)];
            st.conns.resize(s.servers.len(), 0);
            st.swrr.resize(s.servers.len());
        }
    }

    fn in_sync(&self, cfg: &Config, service: ServiceIdx) -> bool {
        self.services.len() == cfg.len()
            && cfg.service(service).map(|s| s.servers.len())
                == self
                    .services
                    .get(usize::from(service))
                    .map(|s| s.conns.len())
    }

    /// Chooses a server of `service` for a new client, or `None` when no
    /// server is eligible (or the service does not exist; counted).
    pub fn pick(&mut self, cfg: &Config, service: ServiceIdx, key: &PickKey) -> Option<ServerIdx> {
        let Some(entry) = cfg.entry(service) else {
            self.stats.invalid_service += 1;
            return None;
        };
        if !self.in_sync(cfg, service) {
            self.stats.resyncs += 1;
            self.resync(cfg);
        }
        let eligible = entry.eligible();
        if eligible.is_empty() {
            self.stats.no_server += 1;
            return None;
        }
        let st = &mut self.services[usize::from(service)];
        let choice = match entry.spec().scheduler {
            SchedulerKind::RoundRobin => st.rr.pick(eligible),
            SchedulerKind::WeightedRoundRobin => {
                // The cycle of the current eligible set, walked in O(1);
                // after a change the walk goes on from the same position
                // of the new cycle. Too long a cycle: O(servers) per pick.
                let cycle = entry.swrr_cycle();
                if cycle.is_empty() {
                    st.swrr.pick(eligible)
                } else {
                    let i = st.swrr_pos % cycle.len();
                    st.swrr_pos = i + 1;
                    cycle.get(i).copied()
                }
            }
            SchedulerKind::LeastConn | SchedulerKind::WeightedLeastConn => {
                let weighted = entry.spec().scheduler == SchedulerKind::WeightedLeastConn;
                let start = st.lc_start % eligible.len();
                st.lc_start = (start + 1) % eligible.len();
                lc::pick(eligible, &st.conns, start, weighted)
            }
            SchedulerKind::SourceHash => source_hash(
                eligible,
                entry.cumulative_weights(),
                hash::addr_hash(entry.seed(), key.src),
            ),
            SchedulerKind::Maglev => entry.maglev().and_then(|m| {
                m.lookup(hash::flow_hash(
                    entry.seed(),
                    key.src,
                    key.src_port,
                    key.dst_port,
                ))
            }),
            SchedulerKind::Failover => eligible.first().map(|b| b.index),
            SchedulerKind::Rendezvous => hrw::pick(
                eligible,
                hash::flow_hash(entry.seed(), key.src, key.src_port, key.dst_port),
            ),
        };
        match choice {
            Some(_) => self.stats.picks += 1,
            None => self.stats.no_server += 1,
        }
        choice
    }

    /// Records a new connection on (`service`, `server`) for the
    /// least-connection schedulers. Out-of-range indices are ignored.
    #[inline]
    pub fn conn_opened(&mut self, service: ServiceIdx, server: ServerIdx) {
        if let Some(c) = self
            .services
            .get_mut(usize::from(service))
            .and_then(|s| s.conns.get_mut(usize::from(server)))
        {
            *c = c.saturating_add(1);
        }
    }

    /// Records the end of a connection on (`service`, `server`).
    #[inline]
    pub fn conn_closed(&mut self, service: ServiceIdx, server: ServerIdx) {
        if let Some(c) = self
            .services
            .get_mut(usize::from(service))
            .and_then(|s| s.conns.get_mut(usize::from(server)))
        {
            *c = c.saturating_sub(1);
        }
    }

    /// This core's open connections on (`service`, `server`).
    pub fn conns(&self, service: ServiceIdx, server: ServerIdx) -> u32 {
        self.services
            .get(usize::from(service))
            .and_then(|s| s.conns.get(usize::from(server)))
            .copied()
            .unwrap_or(0)
    }
}
