//! The management thread's own counters: what it refused or cut, shown in
//! `/metrics` as `tack_api_events_total{kind}`.

use std::sync::atomic::{AtomicU64, Ordering};

/// Counters of the management listeners, shared by their tasks.
#[derive(Debug, Default)]
pub struct ApiCounters {
    /// Connections closed on accept: [`super::serve::MAX_CLIENTS`] were open.
    pub connections_refused: AtomicU64,
    /// Connections cut for sending their request head too slowly
    /// ([`super::serve::HEAD_TIMEOUT`]) or lasting too long
    /// ([`super::serve::CONNECTION_TIMEOUT`]).
    pub connections_timed_out: AtomicU64,
    /// Requests answered 4xx (malformed, unknown, unauthorised, refused).
    pub requests_refused: AtomicU64,
    /// Requests answered 5xx (the control thread busy or a worker silent).
    pub requests_failed: AtomicU64,
}

impl ApiCounters {
    /// Counts one event.
    pub fn add(counter: &AtomicU64) {
        counter.fetch_add(1, Ordering::Relaxed);
    }

    /// Calls `f` with each counter's name and value.
    pub fn for_each(&self, mut f: impl FnMut(&'static str, u64)) {
        let get = |c: &AtomicU64| c.load(Ordering::Relaxed);
        f("connections_refused", get(&self.connections_refused));
        f("connections_timed_out", get(&self.connections_timed_out));
        f("requests_refused", get(&self.requests_refused));
        f("requests_failed", get(&self.requests_failed));
    }
}
