//! Pipeline time from the CPU's time-stamp counter.

use tack_dataplane::Time;

/// Converts TSC readings to nanoseconds since the clock was made.
#[derive(Debug, Clone, Copy)]
pub struct TscClock {
    start: u64,
    /// Nanoseconds per tick as a 64.64 fixed-point number.
    mult: u128,
}

impl TscClock {
    /// A clock starting now, for a TSC running at `hz` ticks per second.
    pub fn new(hz: u64) -> TscClock {
        TscClock::starting_at(tack_dpdk::rdtsc(), hz)
    }

    /// A clock whose zero is the TSC reading `start`.
    pub fn starting_at(start: u64, hz: u64) -> TscClock {
        let hz = hz.max(1) as u128;
        TscClock {
            start,
            mult: (1_000_000_000u128 << 64) / hz,
        }
    }

    /// The time at TSC reading `tsc`.
    #[inline(always)]
    pub fn at(&self, tsc: u64) -> Time {
        Time(
            (((tsc.wrapping_sub(self.start) as u128).wrapping_mul(self.mult) + (1 << 63)) >> 64)
                as u64,
        )
    }

    /// The time now.
    #[inline(always)]
    pub fn now(&self) -> Time {
        self.at(tack_dpdk::rdtsc())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn converts_ticks_to_nanoseconds() {
        let c = TscClock::starting_at(1_000, 2_500_000_000);
        assert_eq!(c.at(1_000), Time(0));
        assert_eq!(c.at(1_000 + 2_500_000_000), Time(1_000_000_000));
        assert_eq!(c.at(1_000 + 25), Time(10));
        // A day at 2.5 GHz stays exact to the nanosecond scale.
        let day = 86_400u64 * 2_500_000_000;
        assert_eq!(c.at(1_000 + day).as_nanos() / 1_000_000_000, 86_400);
    }
}
