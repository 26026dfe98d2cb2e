//! The full-NAT quarantine: reply tuples a previous instance used, kept out
//! of the local port choice for a while after a restart.
//!
//! A server keeps a closed connection's tuple (server address and port,
//! local address and port) in TIME_WAIT for a minute (Linux's
//! `TCP_TIMEWAIT_LEN`). A running instance never hands such a tuple out
//! again: its own table keeps the ended connection longer (the
//! `tcp_time_wait` timeout, 120 s by default). A fresh instance starts with
//! an empty table, and a SYN it sends on a tuple the server still holds is
//! dropped by PAWS when the new client's timestamps are older: the client
//! retries a second later. `tack` saves the full-NAT tuples of its tables
//! when it stops; the next instance loads them here and skips them until
//! the servers have forgotten them.

use super::flow::Tuple;
use super::*;

/// A full-NAT connection's tuple as its server sees it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct FnatTuple {
    /// IP protocol.
    pub protocol: u8,
    /// Server address.
    pub server: IpAddr,
    /// Server port.
    pub server_port: u16,
    /// Local address.
    pub local: IpAddr,
    /// Local port.
    pub local_port: u16,
}

impl FnatTuple {
    /// The quarantined form of a reply tuple.
    fn of_reply(t: &Tuple) -> FnatTuple {
        FnatTuple {
            protocol: t.proto,
            server: t.src,
            server_port: t.sport,
            local: t.dst,
            local_port: t.dport,
        }
    }
}

/// Where a worker's full-NAT port walk stands on one port: the walk hands
/// out local ports in order from its cursor, wrapping at the end of the
/// range, so the ports just behind the cursor are the ones used last, and
/// those ahead of it were used a whole round of the range ago. A restart
/// after a crash, which saves no tuples, resumes the walk past where it
/// stood (see `tack`'s walk checkpoints).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct PortWalk {
    /// The port the walk goes on from.
    pub cursor: u16,
    /// Ports the walk has moved over since the worker started.
    pub walked: u64,
}

/// Tuples kept out of the port choice until a time.
#[derive(Debug, Default)]
pub(super) struct Quarantine {
    tuples: hashbrown::HashSet<FnatTuple>,
    until: Time,
}

impl Quarantine {
    /// Whether the reply tuple `t` may not be handed out at `now`; forgets
    /// every tuple once the quarantine is over.
    pub(super) fn holds(&mut self, t: &Tuple, now: Time) -> bool {
        if self.tuples.is_empty() {
            return false;
        }
        if now >= self.until {
            self.tuples = hashbrown::HashSet::new();
            return false;
        }
        self.tuples.contains(&FnatTuple::of_reply(t))
    }

    /// Whether tuples are still kept out (at the last check).
    pub(super) fn active(&self) -> bool {
        !self.tuples.is_empty()
    }
}

impl<F: Frame> Pipeline<F> {
    /// Keeps `tuples` (full-NAT tuples a previous instance used) out of the
    /// local port choice for `period` from now. Replaces an earlier
    /// quarantine.
    pub fn quarantine_fnat(
        &mut self,
        tuples: impl IntoIterator<Item = FnatTuple>,
        period: Duration,
    ) {
        self.quarantine = Quarantine {
            tuples: tuples.into_iter().collect(),
            until: self.now + period,
        };
    }

    /// The tuples still kept out of the port choice (none once the
    /// quarantine is over).
    pub fn quarantined(&self) -> usize {
        if self.now >= self.quarantine.until {
            0
        } else {
            self.quarantine.tuples.len()
        }
    }

    /// Where this worker's full-NAT port walk stands, per port (in the
    /// configuration's port order): published with the counters.
    pub fn fnat_walk(&self) -> Vec<PortWalk> {
        self.pickers
            .iter()
            .map(|p| PortWalk {
                cursor: p.cursor(),
                walked: p.walked(),
            })
            .collect()
    }

    /// Resumes the full-NAT port walk of each port at `cursors` (in the
    /// configuration's port order; ports beyond keep theirs): where a
    /// previous instance's walk, checkpointed before it ended, can no
    /// longer have used a port within the servers' TIME_WAIT.
    pub fn resume_fnat_walk(&mut self, cursors: &[u16]) {
        for (p, &c) in self.pickers.iter_mut().zip(cursors) {
            *p = SnatPortPicker::new(p.queue(), c);
        }
    }

    /// The full-NAT tuples of this worker's connections, open or ended:
    /// what the next instance must not reuse while the servers may still
    /// hold them ([`Pipeline::quarantine_fnat`]). Walks the connection
    /// tables: for the control thread, not the packet path.
    pub fn fnat_tuples(&self) -> impl Iterator<Item = FnatTuple> + '_ {
        self.connections().filter_map(|c| {
            let (local, local_port) = c.local?;
            let server = c.server_addr?;
            let svc = self.services.service(c.service)?;
            let server_port = svc
                .servers
                .get(usize::from(c.server))
                .and_then(|s| s.port)
                .unwrap_or(c.vip_port);
            Some(FnatTuple {
                protocol: c.protocol,
                server,
                server_port,
                local,
                local_port,
            })
        })
    }
}
