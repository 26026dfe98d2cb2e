//! Weighted rendezvous (highest random weight) hashing.
//!
//! Every backend gets a score for the key and the highest score wins. With
//! weights, the "weighted logarithmic" method is used: for a uniform hash
//! `u ∈ (0, 1)` of (key, backend identity), `score = -w / ln(u)`. The winner is
//! backend `i` with probability exactly `w_i / Σ w` (the scores are scaled
//! exponential variates), removing a backend moves only the keys it had, and
//! adding one takes keys only for itself. A pick costs one hash and one
//! logarithm per eligible backend (`O(N)`); it runs only when a client is first
//! bound.
//!
//! Backends are identified by their identity hash (address and port), never by
//! index, so scores survive reordering and reloads.

use super::Backend;
use crate::hash::combine;
use crate::ids::ServerIdx;

/// The weighted-logarithmic score of a backend with `weight` for a combined
/// 64-bit hash `h` of (key, backend). Zero for weight 0.
#[inline]
pub fn score(weight: u16, h: u64) -> f64 {
    if weight == 0 {
        return 0.0;
    }
    // 52 random bits mapped into the open interval (0, 1); every value
    // `k + 0.5` with k < 2^52 is exact in an f64, so u is never 0 or 1.
    let u = ((h >> 12) as f64 + 0.5) * (1.0 / (1u64 << 52) as f64);
    -f64::from(weight) / u.ln()
}

/// Picks the backend with the highest weighted score for `key_hash`, or `None`
/// when no backend has a positive weight. Ties (practically impossible) go to
/// the larger identity, so the result never depends on the listing order.
///
/// When all positive weights are equal the score is monotonic in the hash,
/// so the hashes are compared directly and no logarithm is computed; the
/// result is the same as with scores.
pub fn pick(backends: &[Backend], key_hash: u64) -> Option<ServerIdx> {
    let mut weights = backends.iter().map(|b| b.weight).filter(|&w| w > 0);
    let first = weights.next()?;
    if weights.all(|w| w == first) {
        return backends
            .iter()
            .filter(|b| b.weight > 0)
            .map(|b| (combine(key_hash, b.ident) >> 12, b.ident, b.index))
            .max()
            .map(|(_, _, i)| i);
    }
    let mut best: Option<(f64, u64, ServerIdx)> = None;
    for b in backends {
        if b.weight == 0 {
            continue;
        }
        let s = score(b.weight, combine(key_hash, b.ident));
        let better = match best {
            None => true,
            Some((bs, bi, _)) => s > bs || (s == bs && b.ident > bi),
        };
        if better {
            best = Some((s, b.ident, b.index));
        }
    }
    best.map(|(_, _, i)| i)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn score_is_finite_and_positive() {
        for h in [0u64, 1, u64::MAX, 1 << 63, 12345] {
            let s = score(10, h);
            assert!(s.is_finite() && s > 0.0, "{h}: {s}");
        }
        assert_eq!(score(0, 5), 0.0);
    }

    #[test]
    fn equal_weight_fast_path_matches_scores() {
        let b: Vec<Backend> = (0..20u16)
            .map(|i| Backend {
                index: ServerIdx(i),
                weight: if i == 7 { 0 } else { 3 },
                ident: combine(u64::from(i), 99),
            })
            .collect();
        for k in 0..2000u64 {
            let kh = combine(k, 1);
            let slow = b
                .iter()
                .filter(|x| x.weight > 0)
                .map(|x| (score(x.weight, combine(kh, x.ident)), x.ident, x.index))
                .max_by(|a, c| a.0.total_cmp(&c.0).then(a.1.cmp(&c.1)))
                .map(|x| x.2);
            assert_eq!(pick(&b, kh), slow);
        }
    }

    #[test]
    fn none_without_weight() {
        assert_eq!(pick(&[], 1), None);
        let b = [Backend {
            index: ServerIdx(0),
            weight: 0,
            ident: 1,
        }];
        assert_eq!(pick(&b, 1), None);
    }
}
