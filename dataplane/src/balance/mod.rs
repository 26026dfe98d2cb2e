//! Scheduling algorithms, each a pure function (or a table built once per
//! snapshot) over a slice of eligible [`Backend`]s:
//! - [`rr::RoundRobin`] and [`rr::SmoothWrr`] (nginx's smooth weighted round
//!   robin; the snapshot precomputes its whole cycle, one entry per unit of
//!   weight up to [`rr::MAX_CYCLE`], so a pick is one array read);
//! - [`lc::pick`]: least connections and weighted least connections;
//! - [`source_hash`]: hash of the source address over the weighted servers;
//! - [`maglev::Maglev`]: Maglev consistent hashing (table built per snapshot);
//! - [`hrw::pick`]: weighted rendezvous hashing.
//!
//! They know nothing of services or configuration: [`crate::model`] builds
//! their tables per snapshot and [`crate::sched`] dispatches on each
//! service's scheduler.

pub mod hrw;
pub mod lc;
pub mod maglev;
pub mod rr;

use crate::ids::ServerIdx;

/// An eligible server as the schedulers see it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Backend {
    /// Index of the server in its pool.
    pub index: ServerIdx,
    /// Weight (> 0 for eligible servers).
    pub weight: u16,
    /// Identity hash of the server (address and port), stable across reloads.
    pub ident: u64,
}

/// Backends `0..weights.len()` with the given weights (identity = index),
/// for the schedulers' unit tests.
#[cfg(test)]
pub(crate) fn test_backends(weights: &[u16]) -> Vec<Backend> {
    test_backends_by(weights, |i| i as u64)
}

/// Backends `0..weights.len()` with the given weights and identities
/// `ident(index)`, for the schedulers' unit tests.
#[cfg(test)]
pub(crate) fn test_backends_by(weights: &[u16], ident: impl Fn(usize) -> u64) -> Vec<Backend> {
    weights
        .iter()
        .enumerate()
        .map(|(i, &w)| Backend {
            index: ServerIdx(i as u16),
            weight: w,
            ident: ident(i),
        })
        .collect()
}

/// Source hashing: `hash % total weight` located in the running sums of the
/// eligible servers' weights (`cum[i]` = weight of backends `0..=i`). A server
/// gets a share of sources proportional to its weight; the mapping is not
/// consistent (use Maglev or rendezvous for that).
pub fn source_hash(backends: &[Backend], cum: &[u64], hash: u64) -> Option<ServerIdx> {
    let total = *cum.last()?;
    if total == 0 || cum.len() != backends.len() {
        return None;
    }
    let point = hash % total;
    let i = cum.partition_point(|&c| c <= point);
    backends.get(i).map(|b| b.index)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn source_hash_by_weight() {
        let b = [
            Backend {
                index: ServerIdx(3),
                weight: 1,
                ident: 0,
            },
            Backend {
                index: ServerIdx(7),
                weight: 3,
                ident: 1,
            },
        ];
        let cum = [1, 4];
        assert_eq!(source_hash(&b, &cum, 0), Some(ServerIdx(3)));
        assert_eq!(source_hash(&b, &cum, 1), Some(ServerIdx(7)));
        assert_eq!(source_hash(&b, &cum, 3), Some(ServerIdx(7)));
        assert_eq!(source_hash(&b, &cum, 4), Some(ServerIdx(3)));
        assert_eq!(source_hash(&[], &[], 4), None);
    }
}
