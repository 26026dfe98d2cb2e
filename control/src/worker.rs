//! The worker loop: one per (port, receive queue), pinned to its lcore.
//!
//! receive burst → pipeline → transmit bursts, then timers; every mbuf is
//! either transmitted or dropped (freed) exactly once. Counters are published
//! to the control thread at a fixed interval without blocking the worker.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tack_dataplane::pipeline::{Output, Pipeline};
use tack_dpdk::{Mbuf, Mempool, RxQueue, TxQueue};

use crate::clock::TscClock;
use crate::profile::IdlePolicy;

/// Runtime counters of one worker (the pipeline keeps its own).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct LoopCounters {
    /// Packets received.
    pub rx_packets: u64,
    /// Non-empty receive bursts.
    pub rx_bursts: u64,
    /// Packets handed to the NIC.
    pub tx_packets: u64,
    /// Packets dropped because a transmit queue stayed full.
    pub tx_queue_full: u64,
    /// Packets for the host dropped because there is no exception path.
    pub host_dropped: u64,
    /// Times the back-off policy slept.
    pub idle_sleeps: u64,
}

impl LoopCounters {
    /// Calls `f` with each counter's name and value.
    pub fn for_each(&self, mut f: impl FnMut(&'static str, u64)) {
        f("rx_packets", self.rx_packets);
        f("rx_bursts", self.rx_bursts);
        f("tx_packets", self.tx_packets);
        f("tx_queue_full", self.tx_queue_full);
        f("host_dropped", self.host_dropped);
        f("idle_sleeps", self.idle_sleeps);
    }
}

/// What a worker last published: its loop counters and its pipeline's.
#[derive(Debug, Clone, Default)]
pub struct WorkerSnapshot {
    /// Loop counters.
    pub lp: LoopCounters,
    /// Pipeline counters by name.
    pub pipeline: Vec<(&'static str, u64)>,
}

/// The slot a worker publishes its snapshot into.
#[derive(Debug, Default)]
pub struct WorkerShared {
    /// Latest snapshot.
    pub snapshot: Mutex<WorkerSnapshot>,
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
    /// Its pipeline.
    pub pipeline: Pipeline<Mbuf>,
    /// Pool for frames the pipeline originates.
    pub pool: Mempool,
    /// Set by the control thread to stop.
    pub stop: Arc<AtomicBool>,
    /// Where counters are published.
    pub shared: Arc<WorkerShared>,
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

impl Worker {
    /// Runs until `stop` is set; returns the final snapshot.
    pub fn run(mut self) -> WorkerSnapshot {
        let mut lp = LoopCounters::default();
        let mut rx: Vec<Mbuf> = Vec::with_capacity(self.burst as usize);
        let mut out: Output<Mbuf> = Output::new(self.tx.len());
        for v in &mut out.tx {
            v.reserve(self.burst as usize * 2);
        }
        let mut empty_polls = 0u32;
        let mut sleep_us = 1u64;
        let mut next_publish = 0u64;
        log::info!(
            "worker {} on lcore {:?}: port {} queue {}",
            self.index,
            tack_dpdk::current_lcore(),
            self.rx_port,
            self.rx.queue()
        );
        while !self.stop.load(Ordering::Relaxed) {
            let n = self.rx.rx_burst(&mut rx, self.burst);
            let now = self.clock.now();
            if n > 0 {
                lp.rx_packets += n as u64;
                lp.rx_bursts += 1;
                empty_polls = 0;
                sleep_us = 1;
                self.pipeline
                    .process_burst(now, self.rx_port, &mut rx, &mut out, &mut self.pool);
                // Whatever the pipeline left in `rx` is dropped here.
                rx.clear();
            }
            self.pipeline.poll(now, &mut out, &mut self.pool);
            self.flush(&mut out, &mut lp);
            if n == 0 {
                empty_polls = empty_polls.saturating_add(1);
                if self.idle == IdlePolicy::Backoff && empty_polls > SPIN_BEFORE_SLEEP {
                    std::thread::sleep(Duration::from_micros(sleep_us));
                    lp.idle_sleeps += 1;
                    sleep_us = (sleep_us * 2).min(self.idle_sleep_max.as_micros().max(1) as u64);
                } else {
                    std::hint::spin_loop();
                }
            }
            if now.as_nanos() >= next_publish {
                self.publish(&lp);
                next_publish = now.as_nanos() + self.stats_interval_ns;
            }
        }
        let snap = self.snapshot(&lp);
        *self
            .shared
            .snapshot
            .lock()
            .unwrap_or_else(|p| p.into_inner()) = snap.clone();
        snap
    }

    fn flush(&mut self, out: &mut Output<Mbuf>, lp: &mut LoopCounters) {
        for (port, pkts) in out.tx.iter_mut().enumerate() {
            if pkts.is_empty() {
                continue;
            }
            let mut tries = 0;
            while !pkts.is_empty() && tries < TX_RETRIES {
                lp.tx_packets += self.tx[port].tx_burst(pkts) as u64;
                tries += 1;
            }
            lp.tx_queue_full += pkts.len() as u64;
            pkts.clear();
        }
        if !out.host.is_empty() {
            lp.host_dropped += out.host.len() as u64;
            out.host.clear();
        }
    }

    fn snapshot(&self, lp: &LoopCounters) -> WorkerSnapshot {
        let mut pipeline = Vec::new();
        self.pipeline
            .counters()
            .for_each(|name, v| pipeline.push((name, v)));
        WorkerSnapshot { lp: *lp, pipeline }
    }

    fn publish(&self, lp: &LoopCounters) {
        // Never wait for the control thread: skip this round if it holds the lock.
        if let Ok(mut slot) = self.shared.snapshot.try_lock() {
            slot.lp = *lp;
            slot.pipeline.clear();
            self.pipeline
                .counters()
                .for_each(|name, v| slot.pipeline.push((name, v)));
        }
    }
}
