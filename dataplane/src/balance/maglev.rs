//! Maglev consistent hashing (Eisenbud et al., "Maglev: A Fast and Reliable
//! Software Network Load Balancer", NSDI 2016, §3.4).
//!
//! Each backend has a permutation of the table positions, `offset + j * skip
//! (mod M)`, derived from two hashes of its *identity* (address and port, not
//! its index), with `M` prime so every permutation visits every position.
//! Backends take turns claiming their next unclaimed preferred position until
//! the table is full. Weights are honoured the way Envoy's Maglev does it: in
//! round `i` a backend of weight `w` takes a turn only when `i * w` has reached
//! its running target, which grows by the largest weight at each turn; so the
//! heaviest backend takes a turn every round and a backend of half its weight
//! every second round. Shares of the table follow the weights, and removing one
//! of `N` equal backends moves about `1/N` of the positions.
//!
//! Building is `O(M log M)` on average; the table is built once per
//! configuration snapshot (by the control thread) and shared read-only by all
//! cores; a lookup is one modulo and one array read.

use thiserror::Error;
use xxhash_rust::xxh3::xxh3_64_with_seed;

use super::Backend;
use crate::ids::ServerIdx;

/// Default Maglev table size (a prime, as the paper recommends ≫ 100 × backends).
pub const DEFAULT_TABLE_SIZE: u32 = 65_537;
/// Largest accepted table size (memory bound: 2 bytes per position).
pub const MAX_TABLE_SIZE: u32 = 16_777_259; // the first prime above 2^24

const OFFSET_SEED: u64 = 0x6d61_676c_6576_5f6f; // "maglev_o"
const SKIP_SEED: u64 = 0x6d61_676c_6576_5f73; // "maglev_s"
const EMPTY: u16 = u16::MAX;

/// Why a Maglev table cannot be built.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[non_exhaustive]
pub enum MaglevError {
    /// The table size is not a prime number.
    #[error("maglev table size {0} is not prime")]
    NotPrime(u32),
    /// The table size is out of the accepted range.
    #[error("maglev table size {0} is out of range (3..={max})", max = MAX_TABLE_SIZE)]
    OutOfRange(u32),
    /// More backends than table positions.
    #[error("maglev table size {size} is smaller than the number of servers ({backends})")]
    TooManyBackends {
        /// Requested table size.
        size: u32,
        /// Number of backends.
        backends: usize,
    },
}

/// A populated Maglev lookup table mapping hash positions to server indices.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Maglev {
    /// Server index per position; empty when there are no backends.
    table: Vec<u16>,
    size: u32,
}

/// Returns whether `n` is prime (deterministic trial division; `n` ≤ 2^32).
pub fn is_prime(n: u32) -> bool {
    if n < 2 {
        return false;
    }
    if n < 4 {
        return true;
    }
    if n.is_multiple_of(2) || n.is_multiple_of(3) {
        return false;
    }
    let n = u64::from(n);
    let mut i = 5u64;
    while i * i <= n {
        if n.is_multiple_of(i) || n.is_multiple_of(i + 2) {
            return false;
        }
        i += 6;
    }
    true
}

/// Checks that `size` is a usable Maglev table size.
pub fn check_table_size(size: u32, backends: usize) -> Result<(), MaglevError> {
    if !(3..=MAX_TABLE_SIZE).contains(&size) {
        return Err(MaglevError::OutOfRange(size));
    }
    if !is_prime(size) {
        return Err(MaglevError::NotPrime(size));
    }
    if backends > size as usize {
        return Err(MaglevError::TooManyBackends { size, backends });
    }
    Ok(())
}

struct Builder {
    pos: u64,
    skip: u64,
    weight: u64,
    target: u64,
    index: u16,
}

impl Maglev {
    /// Builds the table for `backends` (weight-0 backends are ignored) with
    /// `size` positions (`size` must be prime).
    pub fn build(backends: &[Backend], size: u32) -> Result<Maglev, MaglevError> {
        check_table_size(size, backends.len())?;
        let m = u64::from(size);
        let mut builders: Vec<Builder> = backends
            .iter()
            .filter(|b| b.weight > 0)
            .map(|b| {
                let id = b.ident.to_le_bytes();
                let offset = xxh3_64_with_seed(&id, OFFSET_SEED) % m;
                let skip = xxh3_64_with_seed(&id, SKIP_SEED) % (m - 1) + 1;
                Builder {
                    pos: offset,
                    skip,
                    weight: u64::from(b.weight),
                    target: 0,
                    index: b.index.0,
                }
            })
            .collect();
        if builders.is_empty() {
            return Ok(Maglev {
                table: Vec::new(),
                size,
            });
        }
        // Deterministic turn order independent of the order servers are listed in.
        builders.sort_by_key(|b| (b.pos, b.skip, b.index));
        let max_weight = builders.iter().map(|b| b.weight).max().unwrap_or(1);
        let mut table = vec![EMPTY; size as usize];
        let mut filled = 0u64;
        let mut round = 1u64;
        while filled < m {
            for b in builders.iter_mut() {
                if round * b.weight < b.target {
                    continue;
                }
                b.target += max_weight;
                while table[b.pos as usize] != EMPTY {
                    b.pos = (b.pos + b.skip) % m;
                }
                table[b.pos as usize] = b.index;
                b.pos = (b.pos + b.skip) % m;
                filled += 1;
                if filled == m {
                    break;
                }
            }
            round += 1;
        }
        Ok(Maglev { table, size })
    }

    /// The server index for a flow hash, or `None` when the table has no backends.
    #[inline]
    pub fn lookup(&self, hash: u64) -> Option<ServerIdx> {
        if self.table.is_empty() {
            return None;
        }
        Some(ServerIdx(
            self.table[(hash % u64::from(self.size)) as usize],
        ))
    }

    /// Table size (number of positions, prime).
    pub fn size(&self) -> u32 {
        self.size
    }

    /// The populated positions (server index per position); empty without backends.
    pub fn positions(&self) -> &[u16] {
        &self.table
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn backends(weights: &[u16]) -> Vec<Backend> {
        crate::balance::test_backends_by(weights, |i| crate::hash::combine(i as u64, 42))
    }

    #[test]
    fn primes() {
        assert!(is_prime(65_537));
        assert!(is_prime(251));
        assert!(!is_prime(65_536));
        assert!(!is_prime(1));
        assert!(is_prime(MAX_TABLE_SIZE));
        assert_eq!(check_table_size(100, 1), Err(MaglevError::NotPrime(100)));
        assert_eq!(check_table_size(1, 1), Err(MaglevError::OutOfRange(1)));
        assert!(matches!(
            check_table_size(7, 8),
            Err(MaglevError::TooManyBackends { .. })
        ));
    }

    #[test]
    fn shares_follow_weights() {
        let m = Maglev::build(&backends(&[1, 2, 3, 4]), 65_537).unwrap();
        let mut counts = [0usize; 4];
        for &s in m.positions() {
            counts[s as usize] += 1;
        }
        for (i, &c) in counts.iter().enumerate() {
            let expect = 65_537.0 * (i as f64 + 1.0) / 10.0;
            assert!(
                (c as f64 - expect).abs() / expect < 0.02,
                "server {i}: {c} vs {expect}"
            );
        }
    }

    #[test]
    fn empty_and_zero_weight() {
        let m = Maglev::build(&[], 251).unwrap();
        assert_eq!(m.lookup(7), None);
        let m = Maglev::build(&backends(&[0, 0]), 251).unwrap();
        assert_eq!(m.lookup(7), None);
        let m = Maglev::build(&backends(&[0, 5]), 251).unwrap();
        assert!(m.positions().iter().all(|&s| s == 1));
    }

    #[test]
    fn listing_order_does_not_matter() {
        let mut b = backends(&[3, 1, 2]);
        let m1 = Maglev::build(&b, 1009).unwrap();
        b.reverse();
        let m2 = Maglev::build(&b, 1009).unwrap();
        assert_eq!(m1, m2);
    }
}
