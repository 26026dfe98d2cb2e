//! Token buckets: the pipeline's one rate limiter (ICMP errors it
//! generates, traffic it hands to the host).
//!
//! The limit is configuration ([`RateLimit`]) and the bucket is state
//! ([`TokenBucket`]): the limit is passed to each [`TokenBucket::take`], so a
//! new configuration applies at once without resetting the bucket.

use crate::time::Time;

/// A rate: at most `burst` at once, refilled at `per_sec` per second.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RateLimit {
    /// Tokens added per second (0: nothing passes).
    pub per_sec: u32,
    /// Most tokens kept (the largest burst that passes at once).
    pub burst: u32,
}

impl RateLimit {
    /// `per_sec` per second in bursts of up to one second's worth.
    pub const fn per_second(per_sec: u32) -> RateLimit {
        RateLimit {
            per_sec,
            burst: per_sec,
        }
    }
}

/// A token bucket. Starts full at its first use.
#[derive(Debug, Clone, Copy, Default)]
pub struct TokenBucket {
    /// Tokens in the bucket, in billionths of a token (so that refills at
    /// nanosecond resolution lose nothing).
    nano_tokens: u64,
    /// When it was last refilled (`None` before its first use).
    last: Option<Time>,
}

const NANO: u64 = 1_000_000_000;

impl TokenBucket {
    /// Takes one token at `now` under `limit`; false if the bucket is empty.
    #[inline]
    pub fn take(&mut self, now: Time, limit: RateLimit) -> bool {
        let cap = u64::from(limit.burst) * NANO;
        match self.last {
            None => self.nano_tokens = cap,
            Some(last) => {
                let elapsed = now.as_nanos().saturating_sub(last.as_nanos());
                let added = elapsed.saturating_mul(u64::from(limit.per_sec));
                self.nano_tokens = self.nano_tokens.saturating_add(added).min(cap);
            }
        }
        // Time never goes back: an earlier `now` adds nothing.
        self.last = Some(self.last.map_or(now, |l| l.max(now)));
        if self.nano_tokens >= NANO {
            self.nano_tokens -= NANO;
            true
        } else {
            false
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn passed(b: &mut TokenBucket, now: Time, limit: RateLimit, n: u32) -> u32 {
        (0..n).filter(|_| b.take(now, limit)).count() as u32
    }

    #[test]
    fn a_full_bucket_passes_its_burst_then_the_rate() {
        let limit = RateLimit {
            per_sec: 100,
            burst: 10,
        };
        let mut b = TokenBucket::default();
        let t0 = Time::from_secs(5);
        assert_eq!(passed(&mut b, t0, limit, 50), 10);
        // 100 ms later: 10 more.
        assert_eq!(
            passed(
                &mut b,
                t0 + core::time::Duration::from_millis(100),
                limit,
                50
            ),
            10
        );
        // 5 ms later half a token has come back: nothing; at 10 ms, one.
        assert_eq!(passed(&mut b, Time::from_millis(5_105), limit, 5), 0);
        assert_eq!(passed(&mut b, Time::from_millis(5_110), limit, 5), 1);
        // A long pause refills to the burst only.
        assert_eq!(passed(&mut b, Time::from_secs(100), limit, 50), 10);
    }

    #[test]
    fn time_going_back_adds_nothing_and_zero_passes_nothing() {
        let limit = RateLimit::per_second(2);
        let mut b = TokenBucket::default();
        assert_eq!(passed(&mut b, Time::from_secs(10), limit, 5), 2);
        assert_eq!(passed(&mut b, Time::from_secs(1), limit, 5), 0);
        assert_eq!(passed(&mut b, Time::from_secs(10), limit, 5), 0);
        assert_eq!(passed(&mut b, Time::from_secs(11), limit, 5), 2);
        let mut z = TokenBucket::default();
        assert_eq!(
            passed(&mut z, Time::from_secs(1), RateLimit::per_second(0), 5),
            0
        );
    }
}
