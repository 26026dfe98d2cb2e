//! Round robin and smooth weighted round robin (nginx's algorithm).

use super::Backend;
use crate::ids::ServerIdx;

/// Plain round robin over the eligible backends (weights only gate
/// eligibility: weight 0 never picks).
#[derive(Debug, Clone, Default)]
pub struct RoundRobin {
    next: usize,
}

impl RoundRobin {
    /// A round robin starting at the first backend.
    pub fn new() -> RoundRobin {
        RoundRobin::default()
    }

    /// Picks the next backend with a positive weight.
    pub fn pick(&mut self, backends: &[Backend]) -> Option<ServerIdx> {
        let n = backends.len();
        for _ in 0..n {
            let i = self.next % n;
            self.next = (i + 1) % n;
            if backends[i].weight > 0 {
                return Some(backends[i].index);
            }
        }
        None
    }
}

/// Longest precomputed smooth weighted round robin cycle (the sum of the
/// eligible weights), see [`SmoothWrr::cycle`].
pub const MAX_CYCLE: usize = 4096;

/// Smooth weighted round robin as in nginx (`ngx_http_upstream_get_peer`):
/// on each pick every backend's current weight grows by its weight, the
/// largest current weight wins and is lowered by the total. Weights 5, 1, 1
/// give `a a b a c a a`, spreading the heavy backend instead of bursting it.
///
/// Current weights are kept per *server index* (a slice as long as the pool),
/// so they survive changes of the eligible set.
#[derive(Debug, Clone, Default)]
pub struct SmoothWrr {
    current: Vec<i64>,
}

impl SmoothWrr {
    /// State for a pool of `pool_len` servers.
    pub fn new(pool_len: usize) -> SmoothWrr {
        SmoothWrr {
            current: vec![0; pool_len],
        }
    }

    /// Resizes for a pool of `pool_len` servers, keeping existing current
    /// weights (allocates only when the pool grows: call at config change).
    pub fn resize(&mut self, pool_len: usize) {
        self.current.resize(pool_len, 0);
    }

    /// Resets all current weights (used when the pool is remapped).
    pub fn reset(&mut self) {
        self.current.iter_mut().for_each(|c| *c = 0);
    }

    /// The whole cycle of picks over `backends` from the zero state: one
    /// entry per unit of weight (the sum of the weights), after which the
    /// current weights are back at zero and the cycle repeats. Any `W`
    /// consecutive picks of it (`W` the sum) hold each backend exactly its
    /// weight times. `None` when the weights are all zero or sum to more
    /// than `max` (the caller then picks with the state instead).
    pub fn cycle(backends: &[Backend], max: usize) -> Option<Vec<ServerIdx>> {
        let total: usize = backends.iter().map(|b| usize::from(b.weight)).sum();
        if total == 0 || total > max {
            return None;
        }
        let pool = backends.iter().map(|b| usize::from(b.index)).max()? + 1;
        let mut s = SmoothWrr::new(pool);
        (0..total).map(|_| s.pick(backends)).collect()
    }

    /// Picks a backend, or `None` when none has a positive weight or a
    /// backend's index lies outside the pool this state was sized for.
    pub fn pick(&mut self, backends: &[Backend]) -> Option<ServerIdx> {
        let current = self.current.as_mut_slice();
        let mut total = 0i64;
        let mut best_c = i64::MIN;
        let mut best = usize::MAX;
        for b in backends {
            if b.weight == 0 {
                continue;
            }
            let w = i64::from(b.weight);
            let i = usize::from(b.index);
            let slot = current.get_mut(i)?;
            let c = *slot + w;
            *slot = c;
            total += w;
            // Strictly greater: the first of equal current weights wins.
            if c > best_c {
                best_c = c;
                best = i;
            }
        }
        let slot = current.get_mut(best)?;
        *slot -= total;
        Some(ServerIdx(best as u16))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    use crate::balance::test_backends as b;

    #[test]
    fn nginx_sequence() {
        let backends = b(&[5, 1, 1]);
        let mut s = SmoothWrr::new(3);
        let seq: Vec<u16> = (0..7).map(|_| s.pick(&backends).unwrap().0).collect();
        assert_eq!(seq, vec![0, 0, 1, 0, 2, 0, 0]);
        // The cycle repeats.
        let seq2: Vec<u16> = (0..7).map(|_| s.pick(&backends).unwrap().0).collect();
        assert_eq!(seq, seq2);
    }

    /// The precomputed cycle is the picks' sequence from zero, which then
    /// repeats; too long a cycle is refused.
    #[test]
    fn cycle_is_the_sequence_from_zero() {
        assert_eq!(
            SmoothWrr::cycle(&b(&[5, 1, 1]), MAX_CYCLE).unwrap(),
            [0, 0, 1, 0, 2, 0, 0].map(ServerIdx)
        );
        let backends = b(&[3, 0, 7, 2, 9]);
        let cyc = SmoothWrr::cycle(&backends, MAX_CYCLE).unwrap();
        assert_eq!(cyc.len(), 21);
        let mut s = SmoothWrr::new(5);
        let picks: Vec<ServerIdx> = (0..63).map(|_| s.pick(&backends).unwrap()).collect();
        assert_eq!(picks, [&cyc[..], &cyc[..], &cyc[..]].concat());
        // Every window of 21 picks holds each server its weight times.
        let doubled = [&cyc[..], &cyc[..]].concat();
        for w in doubled.windows(21) {
            for (i, want) in [(0u16, 3), (2, 7), (3, 2), (4, 9)] {
                assert_eq!(w.iter().filter(|&&x| x == ServerIdx(i)).count(), want);
            }
        }
        assert_eq!(SmoothWrr::cycle(&b(&[0, 0]), MAX_CYCLE), None);
        assert_eq!(SmoothWrr::cycle(&b(&[3000, 2000]), MAX_CYCLE), None);
    }

    #[test]
    fn rr_cycles_and_skips_zero() {
        let backends = b(&[1, 0, 3]);
        let mut r = RoundRobin::new();
        let seq: Vec<u16> = (0..4).map(|_| r.pick(&backends).unwrap().0).collect();
        assert_eq!(seq, vec![0, 2, 0, 2]);
        assert_eq!(r.pick(&b(&[0, 0])), None);
        assert_eq!(r.pick(&[]), None);
    }

    #[test]
    fn swrr_out_of_pool_is_none() {
        let mut s = SmoothWrr::new(1);
        assert_eq!(s.pick(&b(&[1, 1])), None);
    }
}
