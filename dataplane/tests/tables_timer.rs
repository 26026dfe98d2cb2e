//! Timer wheel properties: every timer fires at or after its deadline and no
//! later than one tick after it; re-armed timers fire at their last deadline;
//! disarmed timers never fire.

use core::time::Duration;
use std::collections::HashMap;

use proptest::prelude::*;
use tack_dataplane::Time;
use tack_dataplane::timer::TimerWheel;

#[derive(Debug, Clone)]
enum Op {
    /// Arm timer `id` at `now + delay` ns.
    Arm(u32, u64),
    /// Disarm timer `id`.
    Disarm(u32),
    /// Advance the clock by `step` ns and poll everything due.
    Advance(u64),
}

fn op(cap: u32, max_delay: u64, max_step: u64) -> impl Strategy<Value = Op> {
    prop_oneof![
        4 => (0..cap, 0..max_delay).prop_map(|(i, d)| Op::Arm(i, d)),
        1 => (0..cap).prop_map(Op::Disarm),
        4 => (0..max_step).prop_map(Op::Advance),
    ]
}

/// Runs `ops` on a wheel and a reference model, checking after every poll:
/// each fired timer was armed with that deadline and deadline ≤ now; every
/// timer still armed has deadline > now − tick (so it is at most one tick late).
fn check(tick_ns: u64, start: u64, ops: &[Op]) -> Result<(), TestCaseError> {
    const CAP: u32 = 64;
    let mut w: TimerWheel =
        TimerWheel::new(CAP as usize, Duration::from_nanos(tick_ns), Time(start)).unwrap();
    let mut model: HashMap<u32, u64> = HashMap::new();
    let mut now = start;
    for op in ops {
        match *op {
            Op::Arm(id, delay) => {
                let d = now.saturating_add(delay);
                w.arm(id, Time(d)).unwrap();
                model.insert(id, d);
            }
            Op::Disarm(id) => {
                let was = w.disarm(id);
                prop_assert_eq!(was, model.remove(&id).is_some());
            }
            Op::Advance(step) => {
                now = now.saturating_add(step);
                while let Some((id, d)) = w.pop_expired(Time(now)) {
                    prop_assert_eq!(
                        model.remove(&id),
                        Some(d.as_nanos()),
                        "fired an unknown deadline"
                    );
                    prop_assert!(
                        d.as_nanos() <= now,
                        "fired early: {} > {}",
                        d.as_nanos(),
                        now
                    );
                }
                for (&id, &d) in &model {
                    prop_assert!(
                        d.saturating_add(tick_ns) > now,
                        "timer {} deadline {} not fired at {} (tick {})",
                        id,
                        d,
                        now,
                        tick_ns
                    );
                }
            }
        }
        prop_assert_eq!(w.len(), model.len());
    }
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(200))]

    /// Short horizons: deadlines within a few hundred ticks, fine steps.
    #[test]
    fn fires_within_one_tick_short(
        tick in 1u64..1000,
        start in 0u64..1_000_000,
        ops in proptest::collection::vec(op(64, 300_000, 3000), 1..300),
    ) {
        check(tick, start, &ops)?;
    }

    /// Long horizons: deadlines across several wheel levels, big jumps.
    #[test]
    fn fires_within_one_tick_long(
        tick in 1u64..100,
        start in 0u64..u64::MAX / 4,
        ops in proptest::collection::vec(op(64, 1 << 40, 1 << 34), 1..300),
    ) {
        check(tick, start, &ops)?;
    }
}

#[test]
fn huge_gap_costs_nothing() {
    // A poll after years of idleness finds the timers without stepping ticks.
    let mut w: TimerWheel = TimerWheel::new(4, Duration::from_millis(1), Time::ZERO).unwrap();
    w.arm(0, Time::from_secs(10)).unwrap();
    w.arm(1, Time::from_secs(86_400 * 365 * 5)).unwrap();
    let far = Time::from_secs(86_400 * 365 * 10);
    assert_eq!(w.pop_expired(far), Some((0, Time::from_secs(10))));
    assert_eq!(w.pop_expired(far).map(|x| x.0), Some(1));
    assert_eq!(w.pop_expired(far), None);
    assert_eq!(w.next_expiry(), None);
}
