//! What the control thread knows of the servers' health: the monitor it
//! reads, and the servers its checks found down. A server's state in the
//! configuration the workers get is its profile state (`up`, `drain`,
//! `maint`, as the operator set it), made `down` while its check fails
//! ([`HealthState::effective`]); the operator's state is kept, so a server
//! that recovers returns to it.

use std::collections::{HashMap, HashSet};

use tack_dataplane::model::ServerState;

use super::{Change, HealthMonitor, Target, targets};
use crate::profile::Profile;

/// The health of the servers, as the control thread tracks it.
#[derive(Default)]
pub struct HealthState {
    monitor: Option<HealthMonitor>,
    /// Checked servers currently down.
    down: HashSet<Target>,
    /// Passive health: each checked server's unanswered SYNs and resets at
    /// the last look, and when that was.
    seen: HashMap<Target, (u64, std::time::Instant)>,
    /// The servers checked.
    targets: Vec<Target>,
}

impl HealthState {
    /// Starts (or retargets) the checks of `profile`'s servers; forgets
    /// what it knew of servers whose check changed or went away. No thread
    /// runs while no server has a check.
    pub fn retarget(&mut self, profile: &Profile) -> std::io::Result<()> {
        let list = targets(profile);
        self.down.retain(|t| list.contains(t));
        self.seen.retain(|t, _| list.contains(t));
        self.targets = list.clone();
        match &self.monitor {
            Some(m) => m.set_targets(list),
            None if list.is_empty() => {}
            None => self.monitor = Some(HealthMonitor::spawn(list)?),
        }
        Ok(())
    }

    /// Takes the monitor's reports; the changes that apply to the current
    /// targets.
    pub fn poll(&mut self) -> Vec<Change> {
        let Some(m) = &self.monitor else {
            return Vec::new();
        };
        let mut applied = Vec::new();
        for c in m.changes() {
            let changed = if c.up {
                self.down.remove(&c.target)
            } else {
                self.down.insert(c.target.clone())
            };
            if changed {
                applied.push(c);
            }
        }
        applied
    }

    /// Passive health: `failures(service, server)` gives a server's
    /// unanswered SYNs and resets so far (summed over the workers). A
    /// server with `passive: N` whose count grew by N or more within one
    /// check interval is taken down (its active check brings it back).
    /// Returns the servers taken down, with why.
    pub fn observe(&mut self, failures: impl Fn(&str, &str) -> Option<u64>) -> Vec<Change> {
        let Some(m) = &self.monitor else {
            return Vec::new();
        };
        let now = std::time::Instant::now();
        let mut out = Vec::new();
        for t in self.targets.clone() {
            let Some(limit) = t.check.passive else {
                continue;
            };
            let Some(count) = failures(&t.service, &t.server) else {
                continue;
            };
            let (base, since) = *self.seen.entry(t.clone()).or_insert((count, now));
            if count.saturating_sub(base) >= u64::from(limit) && !self.down.contains(&t) {
                self.down.insert(t.clone());
                m.mark_down(t.clone());
                out.push(Change {
                    why: format!(
                        "passive: {} unanswered SYNs or resets within {} ms",
                        count - base,
                        t.check.interval_ms
                    ),
                    target: t.clone(),
                    up: false,
                });
                self.seen.insert(t, (count, now));
            } else if now.duration_since(since) >= t.check.interval() {
                self.seen.insert(t, (count, now));
            }
        }
        out
    }

    /// Whether server `server` of service `service` failed its check.
    pub fn is_down(&self, service: &str, server: &str) -> bool {
        self.down
            .iter()
            .any(|t| t.service == service && t.server == server)
    }

    /// `profile` with the servers whose check failed made `down` (unless
    /// the operator took them out with `maint`).
    pub fn effective(&self, profile: &Profile) -> Profile {
        let mut p = profile.clone();
        for svc in &mut p.services {
            for s in &mut svc.servers {
                if s.state != ServerState::Maint && self.is_down(&svc.name, &s.display_name()) {
                    s.state = ServerState::Down;
                }
            }
        }
        p
    }
}
