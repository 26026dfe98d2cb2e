//! What travels on the rings between the control thread and the workers.

use std::sync::Arc;

use tack_dataplane::pipeline::{
    ConnFilter, ConnView, ControlMsg, Event, FnatTuple, Neighbor, PipelineConfig,
};
use tack_dataplane::sticky::StickyBinding;

use crate::report::WorkerSnapshot;

/// Control thread → worker.
#[derive(Debug)]
pub enum ToWorker {
    /// A new configuration epoch, swapped in at the next burst boundary.
    Config(Arc<PipelineConfig>),
    /// A state change for the pipeline (server state, learned sticky binding, flush...).
    Msg(ControlMsg),
    /// A question from the management API; answered with [`FromWorker::Reply`].
    Query(Query),
}

/// Worker → control thread.
#[derive(Debug)]
pub enum FromWorker {
    /// Pipeline events (new sticky bindings, neighbours) to publish to the others.
    Events {
        /// The epoch of the worker's configuration when it took them
        /// ([`PipelineConfig::epoch`]).
        epoch: u64,
        /// The events.
        events: Vec<Event>,
    },
    /// The worker's counters.
    Counters(WorkerSnapshot),
    /// The answer to a [`Query`].
    Reply(Reply),
}

/// A question about a worker's tables.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Query {
    /// Up to `limit` of the connections `filter` selects, and the totals.
    Connections {
        /// Which connections to count and list.
        filter: ConnFilter,
        /// Most connections to list.
        limit: usize,
    },
    /// Every sticky binding.
    Sticky,
    /// Every neighbour entry.
    Neighbours,
    /// The full-NAT tuples of every connection (saved when `tack` stops).
    FnatTuples,
}

/// A worker's answer.
#[derive(Debug, Clone)]
pub enum Reply {
    /// Connections: the totals and the first `limit` selected.
    Connections {
        /// Connections in the worker's tables.
        total: usize,
        /// Connections the filter selects.
        matching: usize,
        /// The listed ones.
        list: Vec<ConnView>,
    },
    /// Sticky bindings.
    Sticky(Vec<StickyBinding>),
    /// Neighbours.
    Neighbours(Vec<Neighbor>),
    /// Full-NAT tuples.
    FnatTuples(Vec<FnatTuple>),
}
