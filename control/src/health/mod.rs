//! Active health checks: `tack` checks each server that has a `health`
//! check in the profile (TCP connect, or an HTTP request with an expected
//! status and body) every interval, and reports a server down after `fall`
//! consecutive failures and up again after `rise` consecutive passes.
//!
//! The checks are ordinary kernel sockets: with the exception path on,
//! they leave through the appliance's kernel interface and the DPDK port,
//! from the port's own address (see [`crate::exception`]). They run on a
//! thread of their own (a single-threaded tokio runtime, one task per
//! server), away from the control thread and the workers; the thread
//! reports changes on a channel that the control thread reads
//! ([`HealthMonitor::changes`]), and the control thread publishes the
//! server's state to the workers as a new configuration epoch.
//!
//! A server starts up; a changed check (or a server added by a reload)
//! starts afresh, up.

mod probe;
mod state;

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::JoinHandle;

use crossbeam::channel::{self, Receiver, Sender};
use tokio::sync::mpsc;

use crate::profile::{HealthSection, Profile};

pub use probe::{Transport, probe};
pub use state::HealthState;

/// One server to check, and how.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Target {
    /// The service's name.
    pub service: String,
    /// The server's name in the service.
    pub server: String,
    /// The server's address.
    pub addr: IpAddr,
    /// The port checked.
    pub port: u16,
    /// The check.
    pub check: HealthSection,
}

/// The servers of `profile` that have a check.
pub fn targets(profile: &Profile) -> Vec<Target> {
    let mut out = Vec::new();
    for svc in &profile.services {
        for s in &svc.servers {
            let (Some(check), Some(port)) = (svc.health_of(s), svc.health_port(s)) else {
                continue;
            };
            out.push(Target {
                service: svc.name.clone(),
                server: s.display_name(),
                addr: s.address,
                port,
                check: check.clone(),
            });
        }
    }
    out
}

/// A server changed state.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Change {
    /// The server and its check.
    pub target: Target,
    /// Up (true) or down.
    pub up: bool,
    /// The last check's outcome (`ok`, or why it failed).
    pub why: String,
}

/// Consecutive outcomes against the current state: `rise` passes bring a
/// down server up, `fall` failures take an up server down.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Streak {
    up: bool,
    run: u32,
}

impl Default for Streak {
    fn default() -> Self {
        Streak { up: true, run: 0 }
    }
}

impl Streak {
    /// Down, as the passive check found it: `rise` passes bring it up.
    pub fn down() -> Streak {
        Streak { up: false, run: 0 }
    }

    /// Whether the server is up.
    pub fn is_up(&self) -> bool {
        self.up
    }

    /// Records a check's outcome; the new state if it changed.
    pub fn record(&mut self, passed: bool, rise: u32, fall: u32) -> Option<bool> {
        if passed == self.up {
            self.run = 0;
            return None;
        }
        self.run += 1;
        let needed = if self.up { fall } else { rise };
        if self.run >= needed.max(1) {
            self.up = passed;
            self.run = 0;
            Some(passed)
        } else {
            None
        }
    }
}

/// What the control thread tells the checks.
enum Order {
    /// Check these targets from now on.
    Targets(Vec<Target>),
    /// This target was found down by its passive check: its active check
    /// starts from down.
    Down(Box<Target>),
}

/// The health-check thread.
pub struct HealthMonitor {
    targets: Option<mpsc::UnboundedSender<Order>>,
    changes: Receiver<Change>,
    handle: Option<JoinHandle<()>>,
}

impl HealthMonitor {
    /// Starts checking `targets`.
    pub fn spawn(targets: Vec<Target>) -> std::io::Result<HealthMonitor> {
        let (ttx, trx) = mpsc::unbounded_channel();
        let (ctx, crx) = channel::unbounded();
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?;
        let handle = std::thread::Builder::new()
            .name("tack-health".into())
            .spawn(move || rt.block_on(supervise(trx, ctx)))?;
        let _ = ttx.send(Order::Targets(targets));
        Ok(HealthMonitor {
            targets: Some(ttx),
            changes: crx,
            handle: Some(handle),
        })
    }

    /// Checks `targets` from now on: unchanged ones keep their state,
    /// new ones start up, the others stop.
    pub fn set_targets(&self, targets: Vec<Target>) {
        if let Some(t) = &self.targets {
            let _ = t.send(Order::Targets(targets));
        }
    }

    /// Tells `target`'s check that the server was taken down (passive
    /// health): it reports it up again after `rise` passes.
    pub fn mark_down(&self, target: Target) {
        if let Some(t) = &self.targets {
            let _ = t.send(Order::Down(Box::new(target)));
        }
    }

    /// The changes reported since the last call.
    pub fn changes(&self) -> Vec<Change> {
        self.changes.try_iter().collect()
    }
}

impl Drop for HealthMonitor {
    fn drop(&mut self) {
        // Closing the channel ends the thread; its checks are cancelled.
        self.targets = None;
        if let Some(h) = self.handle.take() {
            let _ = h.join();
        }
    }
}

/// Runs one task per target until the target list's channel closes.
async fn supervise(mut orders: mpsc::UnboundedReceiver<Order>, changes: Sender<Change>) {
    type Task = (tokio::task::JoinHandle<()>, Arc<AtomicBool>);
    let mut tasks: HashMap<Target, Task> = HashMap::new();
    while let Some(order) = orders.recv().await {
        let list = match order {
            Order::Targets(list) => list,
            Order::Down(t) => {
                if let Some((_, down)) = tasks.get(&*t) {
                    down.store(true, Ordering::Relaxed);
                }
                continue;
            }
        };
        tasks.retain(|t, (h, _)| {
            let keep = list.contains(t);
            if !keep {
                h.abort();
            }
            keep
        });
        for t in list {
            if let std::collections::hash_map::Entry::Vacant(e) = tasks.entry(t) {
                let down = Arc::new(AtomicBool::new(false));
                let task = tokio::spawn(watch(e.key().clone(), changes.clone(), down.clone()));
                e.insert((task, down));
            }
        }
    }
    for (_, (h, _)) in tasks {
        h.abort();
    }
}

/// Checks `t` every interval, reporting state changes.
async fn watch(t: Target, changes: Sender<Change>, marked_down: Arc<AtomicBool>) {
    let mut streak = Streak::default();
    let transport = match Transport::of(&t.check) {
        Ok(tr) => tr,
        Err(e) => {
            // Checked by the profile's validation; a file gone since is
            // reported once and the server taken down.
            let _ = changes.send(Change {
                target: t.clone(),
                up: false,
                why: e,
            });
            return;
        }
    };
    let mut tick = tokio::time::interval(t.check.interval());
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        if marked_down.swap(false, Ordering::Relaxed) {
            streak = Streak::down();
        }
        let outcome = probe(&t, &transport).await;
        let passed = outcome.is_ok();
        if let Some(up) = streak.record(passed, t.check.rise, t.check.fall) {
            let why = outcome.err().unwrap_or_else(|| "ok".into());
            if changes
                .send(Change {
                    target: t.clone(),
                    up,
                    why,
                })
                .is_err()
            {
                return;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fall_failures_take_it_down_and_rise_passes_bring_it_up() {
        let mut s = Streak::default();
        let (rise, fall) = (2, 3);
        assert_eq!(s.record(false, rise, fall), None);
        assert_eq!(s.record(false, rise, fall), None);
        // A pass in between starts the count again.
        assert_eq!(s.record(true, rise, fall), None);
        assert_eq!(s.record(false, rise, fall), None);
        assert_eq!(s.record(false, rise, fall), None);
        assert_eq!(s.record(false, rise, fall), Some(false));
        assert!(!s.is_up());
        assert_eq!(s.record(false, rise, fall), None);
        assert_eq!(s.record(true, rise, fall), None);
        assert_eq!(s.record(true, rise, fall), Some(true));
        assert!(s.is_up());
    }
}
