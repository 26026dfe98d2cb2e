//! Counters as the workers publish them ([`WorkerSnapshot`]) and as the
//! operator reads them: the tables `tack run` prints when it stops
//! ([`RunReport`]) and `tackctl counters` answers.

use std::collections::BTreeMap;

use tack_dpdk::PortStats;

/// Runtime counters of one worker (the pipeline keeps its own).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct LoopCounters {
    /// Packets received from the NIC.
    pub rx_packets: u64,
    /// Non-empty receive bursts.
    pub rx_bursts: u64,
    /// Packets handed to the NIC.
    pub tx_packets: u64,
    /// Packets dropped because a transmit queue stayed full.
    pub tx_queue_full: u64,
    /// Packets handed to the worker that owns their flow.
    pub steered_out: u64,
    /// Packets received from other workers.
    pub steered_in: u64,
    /// Packets dropped because another worker's steering ring was full.
    pub steer_ring_full: u64,
    /// Packets passed to the control thread for the host.
    pub host_packets: u64,
    /// Host-bound packets dropped because the ring to the control thread was full.
    pub host_ring_full: u64,
    /// Pipeline events dropped because the ring to the control thread was full.
    pub events_dropped: u64,
    /// Configuration epochs applied.
    pub config_epochs: u64,
    /// Times the back-off policy slept.
    pub idle_sleeps: u64,
    /// TSC cycles of the loop iterations that did work (received, was
    /// handed or transmitted a frame, or applied a control message); see
    /// [`CycleMeter`].
    pub busy_cycles: u64,
    /// TSC cycles of every loop iteration: `busy_cycles / total_cycles` is
    /// the share of the worker's time spent working.
    pub total_cycles: u64,
}

/// Splits a worker's time into busy and idle loop iterations, as testpmd's
/// `--record-core-cycles` does, from the one TSC reading each iteration
/// already takes for the pipeline's clock.
///
/// [`CycleMeter::lap`] is called once per iteration with that reading: the
/// cycles since the previous reading go to [`LoopCounters::total_cycles`],
/// and to [`LoopCounters::busy_cycles`] too if the iteration they cover did
/// work.
#[derive(Debug, Clone, Copy)]
pub struct CycleMeter {
    last: u64,
}

impl CycleMeter {
    /// A meter whose first lap starts at TSC reading `tsc`.
    pub fn starting_at(tsc: u64) -> CycleMeter {
        CycleMeter { last: tsc }
    }

    /// Counts the cycles from the previous reading to `tsc`, busy or not.
    #[inline(always)]
    pub fn lap(&mut self, tsc: u64, busy: bool, lp: &mut LoopCounters) {
        let spent = tsc.wrapping_sub(self.last);
        self.last = tsc;
        lp.total_cycles = lp.total_cycles.wrapping_add(spent);
        if busy {
            lp.busy_cycles = lp.busy_cycles.wrapping_add(spent);
        }
    }
}

impl LoopCounters {
    /// Calls `f` with each counter's name and value.
    pub fn for_each(&self, mut f: impl FnMut(&'static str, u64)) {
        f("rx_packets", self.rx_packets);
        f("rx_bursts", self.rx_bursts);
        f("tx_packets", self.tx_packets);
        f("tx_queue_full", self.tx_queue_full);
        f("steered_out", self.steered_out);
        f("steered_in", self.steered_in);
        f("steer_ring_full", self.steer_ring_full);
        f("host_packets", self.host_packets);
        f("host_ring_full", self.host_ring_full);
        f("events_dropped", self.events_dropped);
        f("config_epochs", self.config_epochs);
        f("idle_sleeps", self.idle_sleeps);
        f("busy_cycles", self.busy_cycles);
        f("total_cycles", self.total_cycles);
    }
}

/// A port's counters over the whole run, across the driver clearing them:
/// memif forgets its counters when its peer disconnects (a traffic
/// generator that ends before `tack` does) and counts from zero when it
/// connects again. Fed with a reading every statistics interval by the
/// control thread and once more at shutdown ([`PortTotals::update`]): a
/// counter that went down was cleared, and what it had counted is kept.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct PortTotals {
    /// What counters cleared since the start had counted.
    base: PortStats,
    /// The last reading.
    last: PortStats,
}

/// The counters of `s`, in a fixed order.
fn port_fields(s: &mut PortStats) -> [&mut u64; 8] {
    [
        &mut s.ipackets,
        &mut s.opackets,
        &mut s.ibytes,
        &mut s.obytes,
        &mut s.imissed,
        &mut s.ierrors,
        &mut s.oerrors,
        &mut s.rx_nombuf,
    ]
}

impl PortTotals {
    /// Takes a new reading of the port's counters.
    pub fn update(&mut self, mut now: PortStats) {
        let mut last = self.last;
        for ((base, last), now) in port_fields(&mut self.base)
            .into_iter()
            .zip(port_fields(&mut last))
            .zip(port_fields(&mut now))
        {
            if *now < *last {
                *base = base.saturating_add(*last);
            }
        }
        self.last = now;
    }

    /// The counts since the start: the last reading plus what was cleared.
    pub fn total(&self) -> PortStats {
        let mut t = self.base;
        let mut last = self.last;
        for (t, l) in port_fields(&mut t).into_iter().zip(port_fields(&mut last)) {
            *t = t.saturating_add(*l);
        }
        t
    }
}

/// What a worker last published: its loop counters and its pipeline's.
#[derive(Debug, Clone, Default)]
pub struct WorkerSnapshot {
    /// Loop counters.
    pub lp: LoopCounters,
    /// Pipeline counters by name.
    pub pipeline: Vec<(&'static str, u64)>,
    /// Traffic per service and server, by service index of the worker's
    /// configuration epoch.
    pub services: Vec<tack_dataplane::pipeline::ServiceCounters>,
    /// Open connections per server, by service index and pool order.
    pub open: Vec<Vec<u32>>,
    /// Where the worker's full-NAT port walk stands, per port (profile
    /// order): what the walk checkpoints record (`quarantine::walk`).
    pub fnat_walk: Vec<tack_dataplane::pipeline::PortWalk>,
}

/// A port's counters by the names `tackctl counters` and `/metrics` use.
pub fn port_counters(s: &PortStats) -> BTreeMap<String, u64> {
    [
        ("rx_packets", s.ipackets),
        ("tx_packets", s.opackets),
        ("rx_bytes", s.ibytes),
        ("tx_bytes", s.obytes),
        ("rx_missed", s.imissed),
        ("rx_errors", s.ierrors),
        ("tx_errors", s.oerrors),
        ("rx_nombuf", s.rx_nombuf),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v))
    .collect()
}

/// What a finished run reports.
#[derive(Debug, Clone, Default)]
pub struct RunReport {
    /// Port name → final port counters.
    pub ports: Vec<(String, PortStats)>,
    /// Final snapshot of each worker.
    pub workers: Vec<WorkerSnapshot>,
    /// Mbufs in use after the ports stopped and closed, less those of
    /// [`RunReport::mbufs_in_driver_rings`]: 0 unless mbufs leaked.
    pub mbufs_in_use: u32,
    /// Mbufs a driver keeps after its close by design: `net_af_xdp` (DPDK
    /// 22.11) keeps 2048 per queue in its fill ring (refilled after every
    /// receive, so always full) and its close does not give them back.
    pub mbufs_in_driver_rings: u32,
}

impl RunReport {
    /// Counters as a text table: ports, then every non-zero worker counter
    /// summed over workers with a column per worker.
    pub fn render(&self) -> String {
        let mut s = render_ports(&self.ports);
        s.push('\n');
        s.push_str(&render_workers(&self.workers));
        s.push_str(&format!(
            "\nmbufs in use after stop: {}\n",
            self.mbufs_in_use
        ));
        if self.mbufs_in_driver_rings > 0 {
            s.push_str(&format!(
                "mbufs kept by net_af_xdp's fill rings (2048 a queue, not returned by its close): {}\n",
                self.mbufs_in_driver_rings
            ));
        }
        s
    }
}

/// The port table.
pub fn render_ports(ports: &[(String, PortStats)]) -> String {
    let rows: Vec<(String, BTreeMap<String, u64>)> = ports
        .iter()
        .map(|(n, st)| (n.clone(), port_counters(st)))
        .collect();
    render_port_rows(&rows)
}

/// The port table from each port's counters by name ([`port_counters`]).
pub fn render_port_rows(ports: &[(String, BTreeMap<String, u64>)]) -> String {
    use std::fmt::Write;
    let mut s = String::new();
    let _ = writeln!(
        s,
        "{:<12} {:>12} {:>12} {:>14} {:>14} {:>10} {:>10} {:>10}",
        "port",
        "rx_packets",
        "tx_packets",
        "rx_bytes",
        "tx_bytes",
        "rx_missed",
        "rx_errors",
        "tx_errors"
    );
    for (name, m) in ports {
        let g = |k: &str| m.get(k).copied().unwrap_or(0);
        let _ = writeln!(
            s,
            "{:<12} {:>12} {:>12} {:>14} {:>14} {:>10} {:>10} {:>10}",
            name,
            g("rx_packets"),
            g("tx_packets"),
            g("rx_bytes"),
            g("tx_bytes"),
            g("rx_missed"),
            g("rx_errors"),
            g("tx_errors")
        );
    }
    s
}

/// Every non-zero worker counter, total and per worker.
pub fn render_workers(workers: &[WorkerSnapshot]) -> String {
    let per_worker: Vec<Vec<(&str, u64)>> = workers
        .iter()
        .map(|w| {
            let mut v = Vec::new();
            w.lp.for_each(|n, x| v.push((n, x)));
            v.extend(w.pipeline.iter().copied());
            v
        })
        .collect();
    render_counter_table(&per_worker)
}

/// Counters by name with a total and a column per worker, in the order
/// they first appear; rows that are zero everywhere are left out.
pub fn render_counter_table(workers: &[Vec<(&str, u64)>]) -> String {
    use std::fmt::Write;
    let mut rows: BTreeMap<&str, Vec<u64>> = BTreeMap::new();
    let mut order: Vec<&str> = Vec::new();
    let n = workers.len();
    for (i, w) in workers.iter().enumerate() {
        for &(name, v) in w {
            let row = rows.entry(name).or_insert_with(|| {
                order.push(name);
                vec![0; n]
            });
            row[i] = v;
        }
    }
    let mut s = String::new();
    let _ = write!(s, "{:<32} {:>12}", "counter", "total");
    for i in 0..n {
        let _ = write!(s, " {:>12}", format!("worker{i}"));
    }
    let _ = writeln!(s);
    for name in order {
        let row = &rows[name];
        let total: u64 = row.iter().sum();
        if total == 0 {
            continue;
        }
        let _ = write!(s, "{name:<32} {total:>12}");
        for v in row {
            let _ = write!(s, " {v:>12}");
        }
        let _ = writeln!(s);
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cycle_meter_counts_busy_laps_apart() {
        let mut lp = LoopCounters::default();
        let mut m = CycleMeter::starting_at(1_000);
        m.lap(1_100, false, &mut lp);
        m.lap(1_400, true, &mut lp);
        m.lap(1_450, false, &mut lp);
        m.lap(2_450, true, &mut lp);
        assert_eq!((lp.busy_cycles, lp.total_cycles), (1_300, 1_450));
        let mut names = Vec::new();
        lp.for_each(|n, v| names.push((n, v)));
        assert!(names.contains(&("busy_cycles", 1_300)));
        assert!(names.contains(&("total_cycles", 1_450)));
    }

    #[test]
    fn port_totals_keep_what_a_cleared_counter_had_counted() {
        let at = |ipackets, opackets| PortStats {
            ipackets,
            opackets,
            ..PortStats::default()
        };
        let mut t = PortTotals::default();
        t.update(at(100, 90));
        t.update(at(250, 240));
        assert_eq!(t.total(), at(250, 240));
        // The peer disconnected: the driver reads zero.
        t.update(at(0, 0));
        assert_eq!(t.total(), at(250, 240));
        // It connected again and counts from zero.
        t.update(at(10, 5));
        assert_eq!(t.total(), at(260, 245));
        t.update(at(10, 5));
        assert_eq!(t.total(), at(260, 245));
    }
}
