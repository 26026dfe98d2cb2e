//! What the control thread knows of the servers' health: the monitor it
//! reads, and the servers its checks found down. A server's state in the
//! configuration the workers get is its profile state (`up`, `drain`,
//! `maint`, as the operator set it), made `down` while its check fails
//! ([`HealthState::effective`]); the operator's state is kept, so a server
//! that recovers returns to it.

use std::collections::HashSet;

use tack_dataplane::model::ServerState;

use super::{Change, HealthMonitor, Target, targets};
use crate::profile::Profile;

/// The health of the servers, as the control thread tracks it.
#[derive(Default)]
pub struct HealthState {
    monitor: Option<HealthMonitor>,
    /// Checked servers currently down.
    down: HashSet<Target>,
}

impl HealthState {
    /// Starts (or retargets) the checks of `profile`'s servers; forgets
    /// what it knew of servers whose check changed or went away. No thread
    /// runs while no server has a check.
    pub fn retarget(&mut self, profile: &Profile) -> std::io::Result<()> {
        let list = targets(profile);
        self.down.retain(|t| list.contains(t));
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
