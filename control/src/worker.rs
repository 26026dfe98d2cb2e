//! The worker loop: one per (port, receive queue), pinned to its lcore.
//!
//! Each iteration: take the control thread's messages (configuration epochs
//! are swapped here, at a burst boundary), receive a burst, hand frames whose
//! flow another worker owns to that worker (software steering), run the
//! pipeline on the rest and on what other workers handed over, run the timers,
//! transmit, pass host-bound frames and pipeline events to the control
//! thread. Every mbuf is transmitted, handed over or freed exactly once.
//! The iteration's one clock reading also splits the worker's time into
//! busy and idle iterations ([`CycleMeter`]).

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use tack_dataplane::pipeline::{Event, Output, Pipeline};
use tack_dpdk::ring::{Consumer, Producer};
use tack_dpdk::{Mbuf, Mempool, RxQueue, TxQueue};

use crate::clock::TscClock;
use crate::msg::{FromWorker, Query, Reply, ToWorker};
use crate::profile::IdlePolicy;
use crate::report::{CycleMeter, LoopCounters, WorkerSnapshot};

/// The rings of one worker.
pub struct WorkerRings {
    /// Messages from the control thread.
    pub from_control: Consumer<Box<ToWorker>>,
    /// Events, counters and replies to the control thread.
    pub to_control: Producer<Box<FromWorker>>,
    /// Host-bound frames to the exception path.
    pub host: Producer<Mbuf>,
    /// Frames the kernel sent, from the exception path, to transmit.
    pub from_host: Consumer<Mbuf>,
    /// Frames for the other workers, by worker index (`None` for itself).
    pub steer_out: Vec<Option<Producer<Mbuf>>>,
    /// Frames from the other workers.
    pub steer_in: Vec<Consumer<Mbuf>>,
}

/// Everything a worker owns.
pub struct Worker {
    /// Worker number.
    pub index: usize,
    /// Index (in profile order) of the port it receives from.
    pub rx_port: u16,
    /// Its receive queue.
    pub rx: RxQueue,
    /// Its transmit queue on every port, by port index.
    pub tx: Vec<TxQueue>,
    /// Port index by DPDK port id (for frames handed over by other workers).
    pub port_index: Vec<Option<u16>>,
    /// Its pipeline.
    pub pipeline: Pipeline<Mbuf>,
    /// Pool for frames the pipeline originates.
    pub pool: Mempool,
    /// Its rings.
    pub rings: WorkerRings,
    /// Whether to hand frames to the worker owning their flow.
    pub steering: bool,
    /// Set by the control thread to stop.
    pub stop: Arc<AtomicBool>,
    /// Idle policy.
    pub idle: IdlePolicy,
    /// Longest back-off sleep.
    pub idle_sleep_max: Duration,
    /// Receive burst size.
    pub burst: u16,
    /// Clock.
    pub clock: TscClock,
    /// Publishing interval in nanoseconds.
    pub stats_interval_ns: u64,
}

/// Empty polls before the back-off policy starts sleeping.
const SPIN_BEFORE_SLEEP: u32 = 64;
/// Times a transmit burst is retried before the rest is dropped.
const TX_RETRIES: u32 = 4;
/// Connections listed at most per query.
const QUERY_LIMIT_MAX: usize = 100_000;

impl Worker {
    /// Runs until `stop` is set; returns the final snapshot.
    pub fn run(mut self) -> WorkerSnapshot {
        let mut lp = LoopCounters::default();
        let burst = self.burst as usize;
        let mut rx: Vec<Mbuf> = Vec::with_capacity(burst);
        let mut keep: Vec<Mbuf> = Vec::with_capacity(burst);
        let mut handed: Vec<Mbuf> = Vec::with_capacity(burst);
        let mut by_port: BTreeMap<u16, Vec<Mbuf>> = BTreeMap::new();
        let mut events: Vec<Event> = Vec::new();
        let mut out: Output<Mbuf> = Output::new(self.tx.len());
        for v in &mut out.tx {
            v.reserve(burst * 2);
        }
        let mut empty_polls = 0u32;
        let mut sleep_us = 1u64;
        let mut next_publish = 0u64;
        log::info!(
            "worker {} on lcore {:?}: port {} queue {}, steering {}",
            self.index,
            tack_dpdk::current_lcore(),
            self.rx_port,
            self.rx.queue(),
            if self.steering { "on" } else { "off" }
        );
        let mut cycles = CycleMeter::starting_at(tack_dpdk::rdtsc());
        // Whether the iteration since the last clock reading did work.
        let mut worked = false;
        while !self.stop.load(Ordering::Relaxed) {
            let mut busy = self.control_messages(&mut lp);
            // The one clock reading of the iteration. The cycles since the
            // previous one cover the rest of the previous iteration and this
            // one's control messages.
            let tsc = tack_dpdk::rdtsc();
            let now = self.clock.at(tsc);
            cycles.lap(tsc, worked || busy, &mut lp);

            let n = self.rx.rx_burst(&mut rx, self.burst);
            if n > 0 {
                busy = true;
                lp.rx_packets += n as u64;
                lp.rx_bursts += 1;
                if self.steering {
                    self.steer(&mut rx, &mut keep, &mut lp);
                    std::mem::swap(&mut rx, &mut keep);
                }
                self.pipeline
                    .process_burst(now, self.rx_port, &mut rx, &mut out, &mut self.pool);
                rx.clear(); // whatever the pipeline left is dropped (freed) here
            }
            for ring in &mut self.rings.steer_in {
                if ring.pop_burst(&mut handed, burst) == 0 {
                    continue;
                }
                busy = true;
                lp.steered_in += handed.len() as u64;
                for m in handed.drain(..) {
                    match self.port_index.get(m.port() as usize).copied().flatten() {
                        Some(p) => by_port.entry(p).or_default().push(m),
                        None => drop(m),
                    }
                }
                for (port, frames) in by_port.iter_mut() {
                    if !frames.is_empty() {
                        self.pipeline
                            .process_burst(now, *port, frames, &mut out, &mut self.pool);
                        frames.clear();
                    }
                }
            }
            if self.rings.from_host.pop_burst(&mut handed, burst) > 0 {
                busy = true;
                for m in handed.drain(..) {
                    match self.port_index.get(m.port() as usize).copied().flatten() {
                        Some(p) => self.pipeline.send_from_host(m, p, &mut out),
                        None => drop(m),
                    }
                }
            }
            self.pipeline.poll(now, &mut out, &mut self.pool);
            let sent = self.flush(&mut out, &mut lp);
            worked = busy || sent;
            self.pipeline.drain_events(&mut events);
            if !events.is_empty() {
                let batch = Box::new(FromWorker::Events {
                    epoch: self.pipeline.config().epoch,
                    events: std::mem::take(&mut events),
                });
                if let Err(b) = self.rings.to_control.push(batch)
                    && let FromWorker::Events { events: v, .. } = *b
                {
                    lp.events_dropped += v.len() as u64;
                }
            }
            if now.as_nanos() >= next_publish {
                let snap = Box::new(FromWorker::Counters(self.snapshot(&lp)));
                // A full ring only delays the next publication.
                let _ = self.rings.to_control.push(snap);
                next_publish = now.as_nanos() + self.stats_interval_ns;
            }
            if busy {
                empty_polls = 0;
                sleep_us = 1;
            } else {
                empty_polls = empty_polls.saturating_add(1);
                if self.idle == IdlePolicy::Backoff && empty_polls > SPIN_BEFORE_SLEEP {
                    std::thread::sleep(Duration::from_micros(sleep_us));
                    lp.idle_sleeps += 1;
                    sleep_us = (sleep_us * 2).min(self.idle_sleep_max.as_micros().max(1) as u64);
                } else {
                    std::hint::spin_loop();
                }
            }
        }
        cycles.lap(tack_dpdk::rdtsc(), worked, &mut lp);
        // What the devices have finished sending goes back to the pool:
        // drivers that free sent mbufs on their next call (`net_af_xdp`
        // reads its completion ring then) would keep the last bursts'.
        std::thread::sleep(Duration::from_millis(10));
        for t in &mut self.tx {
            t.reclaim();
        }
        let snap = self.snapshot(&lp);
        let _ = self
            .rings
            .to_control
            .push(Box::new(FromWorker::Counters(snap.clone())));
        snap
    }

    /// Applies what the control thread sent; true if there was anything.
    fn control_messages(&mut self, lp: &mut LoopCounters) -> bool {
        let mut any = false;
        while let Some(msg) = self.rings.from_control.pop() {
            any = true;
            match *msg {
                ToWorker::Config(cfg) => {
                    self.pipeline.set_config(cfg);
                    lp.config_epochs += 1;
                }
                ToWorker::Msg(m) => self.pipeline.apply(m),
                ToWorker::Query(q) => {
                    let reply = Box::new(FromWorker::Reply(self.answer(q)));
                    // The control thread waits for replies, so the ring has room;
                    // if not, the query times out there.
                    let _ = self.rings.to_control.push(reply);
                }
            }
        }
        any
    }

    fn answer(&self, q: Query) -> Reply {
        match q {
            Query::Connections { filter, limit } => {
                let mut list = Vec::new();
                let mut matching = 0;
                let limit = limit.min(QUERY_LIMIT_MAX);
                for c in self.pipeline.connections() {
                    if filter.matches(&c) {
                        matching += 1;
                        if list.len() < limit {
                            list.push(c);
                        }
                    }
                }
                Reply::Connections {
                    total: self.pipeline.connection_count(),
                    matching,
                    list,
                }
            }
            Query::Sticky => Reply::Sticky(self.pipeline.sticky_bindings().collect()),
            Query::Neighbours => Reply::Neighbours(self.pipeline.neighbors().collect()),
            Query::FnatTuples => Reply::FnatTuples(self.pipeline.fnat_tuples().collect()),
        }
    }

    /// Splits a burst: frames this worker owns go to `keep`, the others to their owner.
    fn steer(&mut self, rx: &mut Vec<Mbuf>, keep: &mut Vec<Mbuf>, lp: &mut LoopCounters) {
        keep.clear();
        for m in rx.drain(..) {
            let owner = self.pipeline.owner_worker(&m, self.rx_port);
            match owner.map(usize::from) {
                Some(o) if o != self.index => {
                    match self.rings.steer_out.get_mut(o).and_then(Option::as_mut) {
                        Some(ring) => match ring.push(m) {
                            Ok(()) => lp.steered_out += 1,
                            Err(m) => {
                                lp.steer_ring_full += 1;
                                drop(m);
                            }
                        },
                        None => keep.push(m),
                    }
                }
                _ => keep.push(m),
            }
        }
    }

    /// Transmits the pipeline's output and hands host-bound frames to the
    /// control thread; true if there was any.
    fn flush(&mut self, out: &mut Output<Mbuf>, lp: &mut LoopCounters) -> bool {
        let mut any = false;
        for (port, pkts) in out.tx.iter_mut().enumerate() {
            if pkts.is_empty() {
                continue;
            }
            any = true;
            let mut tries = 0;
            while !pkts.is_empty() && tries < TX_RETRIES {
                lp.tx_packets += self.tx[port].tx_burst(pkts) as u64;
                tries += 1;
            }
            lp.tx_queue_full += pkts.len() as u64;
            pkts.clear();
        }
        for frames in out.host.iter_mut().filter(|q| !q.is_empty()) {
            any = true;
            let n = frames.len();
            let sent = self.rings.host.push_burst(frames);
            lp.host_packets += sent as u64;
            lp.host_ring_full += (n - sent) as u64;
            frames.clear();
        }
        any
    }

    fn snapshot(&self, lp: &LoopCounters) -> WorkerSnapshot {
        let mut pipeline = Vec::with_capacity(128);
        self.pipeline
            .counters()
            .for_each(|name, v| pipeline.push((name, v)));
        WorkerSnapshot {
            lp: *lp,
            pipeline,
            services: self.pipeline.service_counters().to_vec(),
            open: self.pipeline.open_per_server(),
            fnat_walk: self.pipeline.fnat_walk(),
        }
    }
}
