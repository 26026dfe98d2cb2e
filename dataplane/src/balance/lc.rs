//! Least connections and weighted least connections over **per-core**
//! connection counts.
//!
//! Each worker core only knows the connections it created itself (share
//! nothing). With RSS spreading flows evenly over cores, per-core counts are a
//! good sample of the global load, but two cores can pick the same lightly
//! loaded server at the same instant; the imbalance stays within one
//! connection per core.

use super::Backend;
use crate::ids::ServerIdx;

/// Picks the backend with the fewest connections (`weighted = false`) or the
/// lowest `(connections + 1) / weight` (`weighted = true`; the `+1` makes an
/// idle pool prefer the heaviest server, as IPVS's `wlc` does in effect).
///
/// `conns[i]` is the number of this core's connections on server index `i`
/// (missing entries count as 0). Ties are broken by scanning from `start`
/// (callers rotate it) so that equal servers share the load. Backends with
/// weight 0 are never picked.
pub fn pick(
    backends: &[Backend],
    conns: &[u32],
    start: usize,
    weighted: bool,
) -> Option<ServerIdx> {
    let start = if backends.is_empty() {
        0
    } else {
        start % backends.len()
    };
    let (tail, head) = backends.split_at(start);
    let mut best: Option<(u64, u64, ServerIdx)> = None; // (load numerator, weight, index)
    for b in head.iter().chain(tail) {
        if b.weight == 0 {
            continue;
        }
        let c = u64::from(conns.get(usize::from(b.index)).copied().unwrap_or(0));
        let (num, w) = if weighted {
            (c + 1, u64::from(b.weight))
        } else {
            (c, 1)
        };
        let better = match best {
            None => true,
            // num / w < bnum / bw  <=>  num * bw < bnum * w  (no overflow: < 2^49)
            Some((bnum, bw, _)) => num * bw < bnum * w,
        };
        if better {
            best = Some((num, w, b.index));
        }
    }
    best.map(|(_, _, i)| i)
}

#[cfg(test)]
mod tests {
    use super::*;

    use crate::balance::test_backends as b;

    #[test]
    fn least_and_weighted() {
        let backends = b(&[1, 1, 1]);
        assert_eq!(pick(&backends, &[3, 1, 2], 0, false), Some(ServerIdx(1)));
        // Weighted: (c+1)/w → server 0: 11/10, server 1: 2/1.
        let backends = b(&[10, 1]);
        assert_eq!(pick(&backends, &[10, 1], 0, true), Some(ServerIdx(0)));
        assert_eq!(pick(&backends, &[0, 0], 1, true), Some(ServerIdx(0)));
        assert_eq!(pick(&b(&[0]), &[0], 0, false), None);
    }

    #[test]
    fn ties_rotate() {
        let backends = b(&[1, 1, 1]);
        assert_eq!(pick(&backends, &[0, 0, 0], 0, false), Some(ServerIdx(0)));
        assert_eq!(pick(&backends, &[0, 0, 0], 1, false), Some(ServerIdx(1)));
        assert_eq!(pick(&backends, &[0, 0, 0], 2, false), Some(ServerIdx(2)));
    }
}
