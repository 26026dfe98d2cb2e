//! The QoS manager (seed 003 claim 19): per-server concurrency limit (`maxconn`)
//! with a queue that serves higher classes first, then oldest; a bounded queue
//! (`maxqueue`); and a queue timeout.
//!
//! As in HAProxy's `set-priority-class`, a *lower* class number is a *higher*
//! priority. When a slot frees up it is handed directly to the first waiter, so a
//! late arrival can never overtake a queued request of the same or higher class.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::oneshot;

/// Why a slot was not obtained.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum QueueError {
    /// The queue already holds `maxqueue` requests.
    #[error("server queue is full")]
    Full,
    /// The request waited longer than the queue timeout.
    #[error("queue timeout")]
    Timeout,
}

/// Concurrency slots and the priority queue of one server.
#[derive(Debug)]
pub struct Slots {
    maxconn: u32,
    maxqueue: u32,
    inflight: AtomicU32,
    state: Mutex<State>,
    /// Requests that waited in the queue and got a slot.
    pub dequeued: AtomicU64,
    /// Requests that gave up after the queue timeout.
    pub timeouts: AtomicU64,
    /// Requests refused because the queue was full.
    pub full: AtomicU64,
}

#[derive(Debug, Default)]
struct State {
    active: u32,
    seq: u64,
    queue: BTreeMap<(i32, u64), oneshot::Sender<()>>,
}

/// A held slot; dropping it frees the slot or hands it to the next waiter.
#[derive(Debug)]
pub struct Permit {
    slots: Arc<Slots>,
}

impl Drop for Permit {
    fn drop(&mut self) {
        self.slots.release();
    }
}

impl Slots {
    /// `maxconn` 0 means unlimited; `maxqueue` 0 means an unbounded queue.
    pub fn new(maxconn: u32, maxqueue: u32) -> Slots {
        Slots {
            maxconn,
            maxqueue,
            inflight: AtomicU32::new(0),
            state: Mutex::new(State::default()),
            dequeued: AtomicU64::new(0),
            timeouts: AtomicU64::new(0),
            full: AtomicU64::new(0),
        }
    }

    /// Requests being served now.
    pub fn inflight(&self) -> u32 {
        self.inflight.load(Ordering::Relaxed)
    }

    /// Requests waiting now.
    pub fn queued(&self) -> usize {
        if self.maxconn == 0 {
            return 0;
        }
        self.lock().queue.len()
    }

    /// Whether a request arriving now would get a slot without waiting.
    pub fn has_free_slot(&self) -> bool {
        self.maxconn == 0 || self.inflight() < self.maxconn
    }

    /// Whether the queue is full (a request arriving now would be refused).
    pub fn queue_full(&self) -> bool {
        self.maxconn != 0
            && self.maxqueue != 0
            && !self.has_free_slot()
            && self.queued() >= self.maxqueue as usize
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Wait for a slot as a request of `class`, for at most `timeout`.
    pub async fn acquire(
        self: &Arc<Self>,
        class: i32,
        timeout: Duration,
    ) -> Result<Permit, QueueError> {
        if self.maxconn == 0 {
            self.inflight.fetch_add(1, Ordering::Relaxed);
            return Ok(Permit {
                slots: self.clone(),
            });
        }
        let (key, rx) = {
            let mut st = self.lock();
            if st.active < self.maxconn && st.queue.is_empty() {
                st.active += 1;
                self.inflight.store(st.active, Ordering::Relaxed);
                return Ok(Permit {
                    slots: self.clone(),
                });
            }
            if self.maxqueue != 0 && st.queue.len() >= self.maxqueue as usize {
                self.full.fetch_add(1, Ordering::Relaxed);
                return Err(QueueError::Full);
            }
            let (tx, rx) = oneshot::channel();
            st.seq += 1;
            let key = (class, st.seq);
            st.queue.insert(key, tx);
            (key, rx)
        };
        // If this future is dropped while waiting (the client went away), the guard
        // leaves the queue, or gives back a slot that was handed over meanwhile.
        let mut waiting = Waiting {
            slots: self,
            key,
            armed: true,
        };
        let res = tokio::time::timeout(timeout, rx).await;
        waiting.armed = false;
        if let Ok(Ok(())) = res {
            self.dequeued.fetch_add(1, Ordering::Relaxed);
            return Ok(Permit {
                slots: self.clone(),
            });
        }
        let mut st = self.lock();
        if st.queue.remove(&key).is_some() {
            drop(st);
            self.timeouts.fetch_add(1, Ordering::Relaxed);
            return Err(QueueError::Timeout);
        }
        // `release` took the entry and handed the slot over just as the timer fired.
        drop(st);
        self.dequeued.fetch_add(1, Ordering::Relaxed);
        Ok(Permit {
            slots: self.clone(),
        })
    }

    fn release(&self) {
        if self.maxconn == 0 {
            self.inflight.fetch_sub(1, Ordering::Relaxed);
            return;
        }
        let mut st = self.lock();
        while let Some((_, tx)) = st.queue.pop_first() {
            if tx.send(()).is_ok() {
                // The slot passes to the waiter; `active` is unchanged.
                return;
            }
        }
        st.active = st.active.saturating_sub(1);
        self.inflight.store(st.active, Ordering::Relaxed);
    }
}

/// A queued request; dropping it armed (cancellation) cleans up after it.
struct Waiting<'a> {
    slots: &'a Slots,
    key: (i32, u64),
    armed: bool,
}

impl Drop for Waiting<'_> {
    fn drop(&mut self) {
        if !self.armed {
            return;
        }
        let mut st = self.slots.lock();
        if st.queue.remove(&self.key).is_none() {
            // The slot was handed to this request, which no longer wants it.
            drop(st);
            self.slots.release();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn higher_class_first_then_oldest() {
        let slots = Arc::new(Slots::new(1, 0));
        let first = slots.acquire(0, Duration::from_secs(10)).await.unwrap();
        let order = Arc::new(Mutex::new(Vec::new()));
        let mut tasks = Vec::new();
        for (name, class) in [
            ("low1", 10),
            ("high1", -5),
            ("low2", 10),
            ("high2", -5),
            ("mid", 0),
        ] {
            let (s, o) = (slots.clone(), order.clone());
            tasks.push(tokio::spawn(async move {
                let _p = s.acquire(class, Duration::from_secs(10)).await.unwrap();
                o.lock().unwrap().push(name);
                tokio::time::sleep(Duration::from_millis(1)).await;
            }));
            tokio::task::yield_now().await;
        }
        assert_eq!(slots.queued(), 5);
        drop(first);
        for t in tasks {
            t.await.unwrap();
        }
        assert_eq!(
            *order.lock().unwrap(),
            vec!["high1", "high2", "mid", "low1", "low2"]
        );
        assert_eq!(slots.inflight(), 0);
        assert_eq!(slots.dequeued.load(Ordering::Relaxed), 5);
    }

    #[tokio::test(start_paused = true)]
    async fn timeout_and_full_queue() {
        let slots = Arc::new(Slots::new(1, 1));
        let p = slots.acquire(0, Duration::from_secs(1)).await.unwrap();
        let waiting = slots.acquire(0, Duration::from_millis(100));
        let refused = async {
            tokio::task::yield_now().await;
            slots.acquire(0, Duration::from_millis(100)).await
        };
        let (w, r) = tokio::join!(waiting, refused);
        assert_eq!(w.unwrap_err(), QueueError::Timeout);
        assert_eq!(r.unwrap_err(), QueueError::Full);
        assert_eq!(slots.queued(), 0);
        drop(p);
        assert_eq!(slots.inflight(), 0);
        let _again = slots.acquire(0, Duration::from_millis(1)).await.unwrap();
        assert_eq!(slots.inflight(), 1);
    }

    #[tokio::test(start_paused = true)]
    async fn cancelled_waiters_leave_the_queue_and_return_slots() {
        let slots = Arc::new(Slots::new(1, 0));
        let p = slots.acquire(0, Duration::from_secs(1)).await.unwrap();
        // A waiter dropped while queued leaves the queue.
        let s2 = slots.clone();
        let w =
            tokio::spawn(async move { s2.acquire(0, Duration::from_secs(10)).await.map(|_| ()) });
        while slots.queued() == 0 {
            tokio::task::yield_now().await;
        }
        w.abort();
        let _ = w.await;
        assert_eq!(slots.queued(), 0);
        // A waiter handed the slot but dropped before it ran gives the slot back.
        let s3 = slots.clone();
        let w =
            tokio::spawn(async move { s3.acquire(0, Duration::from_secs(10)).await.map(|_| ()) });
        while slots.queued() == 0 {
            tokio::task::yield_now().await;
        }
        drop(p); // hands the slot to the queued waiter
        w.abort();
        let _ = w.await;
        assert_eq!(slots.inflight(), 0, "no slot leaked");
        let _again = slots.acquire(0, Duration::ZERO).await.unwrap();
    }

    #[tokio::test]
    async fn unlimited_counts_inflight() {
        let slots = Arc::new(Slots::new(0, 0));
        let a = slots.acquire(0, Duration::ZERO).await.unwrap();
        let b = slots.acquire(0, Duration::ZERO).await.unwrap();
        assert_eq!(slots.inflight(), 2);
        drop((a, b));
        assert_eq!(slots.inflight(), 0);
    }
}
