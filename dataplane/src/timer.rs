//! A hierarchical timer wheel with a fixed number of timers.
//!
//! Time is cut into ticks of a configured length. Level `L` of the wheel has 64
//! slots of `64^L` ticks each; a timer sits at the level given by the highest
//! 6-bit digit in which its tick differs from the wheel's current tick, in the
//! slot given by its own digit at that level. Eleven levels cover every `u64`
//! tick, so no deadline is ever clamped. When the wheel advances into an
//! occupied slot of a higher level, that slot's timers cascade to lower levels;
//! a level-0 slot holds timers of exactly one tick, which fire. A 64-bit
//! occupancy mask per level finds the next occupied slot in constant time, so
//! a long idle gap costs nothing.
//!
//! A timer with deadline `d` belongs to tick `ceil(d / tick)`; it is returned
//! by [`TimerWheel::pop_expired`] once `now` has reached that tick, i.e. at or
//! after `d` and no later than one tick after `d` (given polls at least that
//! often).
//!
//! Timers are identified by a [`TimerId`] in `0..capacity` chosen by the owner
//! (the connection and sticky tables use their entry ids). All nodes are
//! allocated at construction; arming, disarming and firing never allocate.
//! Lists are intrusive and doubly linked, so re-arming or disarming is O(1).
//! Each node carries a small owner payload `P` (the tables keep their per-id
//! metadata there), so one cache line serves both the timer and the owner.
//!
//! **Lazy re-arming** is the owners' policy: a table does not move a timer
//! when a packet pushes an entry's expiry later; when the old timer fires the
//! owner sees the entry is not due and re-arms it at the new expiry. Only a
//! shortening (for example a TCP state change to a shorter timeout) re-arms
//! immediately.

use core::time::Duration;

use thiserror::Error;

use crate::time::Time;

/// Identifies a timer: an index below the wheel's capacity.
pub type TimerId = u32;

const SLOT_BITS: u32 = 6;
const SLOTS: usize = 1 << SLOT_BITS;
const LEVELS: usize = 11; // 11 * 6 = 66 ≥ 64 bits of ticks
const NIL: u32 = u32::MAX;
const UNARMED: u16 = u16::MAX;

/// Why a wheel cannot be built or a timer cannot be armed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Error)]
#[non_exhaustive]
pub enum TimerError {
    /// The tick length is zero.
    #[error("timer tick must be at least one nanosecond")]
    ZeroTick,
    /// The capacity does not fit timer ids.
    #[error("timer capacity {0} is too large")]
    Capacity(usize),
    /// The allocator refused the timer nodes.
    #[error("cannot allocate {0} timers")]
    Alloc(usize),
    /// A timer id at or above the capacity.
    #[error("timer id {id} is out of range (capacity {capacity})")]
    BadId {
        /// The id given.
        id: TimerId,
        /// The wheel's capacity.
        capacity: usize,
    },
}

#[derive(Debug, Clone, Copy)]
struct Node<P> {
    deadline: u64,
    next: u32,
    prev: u32,
    slot: u16,
    payload: P,
}

impl<P: Default> Node<P> {
    fn free() -> Node<P> {
        Node {
            deadline: 0,
            next: NIL,
            prev: NIL,
            slot: UNARMED,
            payload: P::default(),
        }
    }
}

/// A hierarchical timer wheel (see the module documentation) whose nodes
/// carry an owner payload `P` (default none).
#[derive(Debug, Clone)]
pub struct TimerWheel<P = ()> {
    tick_ns: u64,
    /// Current tick: every armed timer's tick is ≥ `elapsed`.
    elapsed: u64,
    heads: Vec<u32>,
    occupied: [u64; LEVELS],
    nodes: Vec<Node<P>>,
    armed: usize,
}

impl<P: Copy + Default> TimerWheel<P> {
    /// A wheel for timer ids `0..capacity` with ticks of `tick`, starting at `now`.
    pub fn new(capacity: usize, tick: Duration, now: Time) -> Result<TimerWheel<P>, TimerError> {
        let tick_ns = u64::try_from(tick.as_nanos()).unwrap_or(u64::MAX);
        if tick_ns == 0 {
            return Err(TimerError::ZeroTick);
        }
        if capacity >= NIL as usize {
            return Err(TimerError::Capacity(capacity));
        }
        let mut nodes = Vec::new();
        nodes
            .try_reserve_exact(capacity)
            .map_err(|_| TimerError::Alloc(capacity))?;
        nodes.resize(capacity, Node::free());
        Ok(TimerWheel {
            tick_ns,
            elapsed: now.as_nanos() / tick_ns,
            heads: vec![NIL; LEVELS * SLOTS],
            occupied: [0; LEVELS],
            nodes,
            armed: 0,
        })
    }

    /// The payload of timer `id` (armed or not).
    #[inline]
    pub fn payload(&self, id: TimerId) -> Option<&P> {
        self.nodes.get(id as usize).map(|n| &n.payload)
    }

    /// Mutable payload of timer `id` (armed or not).
    #[inline]
    pub fn payload_mut(&mut self, id: TimerId) -> Option<&mut P> {
        self.nodes.get_mut(id as usize).map(|n| &mut n.payload)
    }

    /// Number of timer ids.
    pub fn capacity(&self) -> usize {
        self.nodes.len()
    }

    /// Number of armed timers.
    pub fn len(&self) -> usize {
        self.armed
    }

    /// Whether no timer is armed.
    pub fn is_empty(&self) -> bool {
        self.armed == 0
    }

    /// The tick length.
    pub fn tick(&self) -> Duration {
        Duration::from_nanos(self.tick_ns)
    }

    /// Whether timer `id` is armed.
    pub fn is_armed(&self, id: TimerId) -> bool {
        self.nodes
            .get(id as usize)
            .is_some_and(|n| n.slot != UNARMED)
    }

    /// Deadline of timer `id`, if armed.
    pub fn deadline(&self, id: TimerId) -> Option<Time> {
        self.nodes
            .get(id as usize)
            .filter(|n| n.slot != UNARMED)
            .map(|n| Time(n.deadline))
    }

    /// Arms timer `id` at `deadline`, moving it if it was armed already.
    /// A deadline in the past fires at the next poll.
    pub fn arm(&mut self, id: TimerId, deadline: Time) -> Result<(), TimerError> {
        if id as usize >= self.nodes.len() {
            return Err(TimerError::BadId {
                id,
                capacity: self.nodes.len(),
            });
        }
        if self.nodes[id as usize].slot != UNARMED {
            self.unlink(id);
        } else {
            self.armed += 1;
        }
        self.nodes[id as usize].deadline = deadline.as_nanos();
        self.place(id);
        Ok(())
    }

    /// Disarms timer `id`; returns whether it was armed.
    pub fn disarm(&mut self, id: TimerId) -> bool {
        if !self.is_armed(id) {
            return false;
        }
        self.unlink(id);
        self.armed -= 1;
        true
    }

    /// Disarms every timer and resets every payload.
    pub fn clear(&mut self) {
        self.heads.iter_mut().for_each(|h| *h = NIL);
        self.occupied = [0; LEVELS];
        self.nodes.iter_mut().for_each(|n| *n = Node::free());
        self.armed = 0;
    }

    #[inline]
    fn deadline_tick(&self, deadline_ns: u64) -> u64 {
        deadline_ns / self.tick_ns + u64::from(!deadline_ns.is_multiple_of(self.tick_ns))
    }

    /// Links `id` (unlinked, deadline set) into the slot for its deadline.
    fn place(&mut self, id: TimerId) {
        let t = self
            .deadline_tick(self.nodes[id as usize].deadline)
            .max(self.elapsed);
        let significant = 63 - ((self.elapsed ^ t) | (SLOTS as u64 - 1)).leading_zeros();
        let level = (significant / SLOT_BITS) as usize;
        let digit = ((t >> (SLOT_BITS as usize * level)) & (SLOTS as u64 - 1)) as usize;
        let slot = level * SLOTS + digit;
        let head = self.heads[slot];
        {
            let n = &mut self.nodes[id as usize];
            n.next = head;
            n.prev = NIL;
            n.slot = slot as u16;
        }
        if head != NIL {
            self.nodes[head as usize].prev = id;
        }
        self.heads[slot] = id;
        self.occupied[level] |= 1 << digit;
    }

    fn unlink(&mut self, id: TimerId) {
        let Node {
            next, prev, slot, ..
        } = self.nodes[id as usize];
        if prev != NIL {
            self.nodes[prev as usize].next = next;
        } else {
            self.heads[slot as usize] = next;
            if next == NIL {
                let (level, digit) = (slot as usize / SLOTS, slot as usize % SLOTS);
                self.occupied[level] &= !(1 << digit);
            }
        }
        if next != NIL {
            self.nodes[next as usize].prev = prev;
        }
        let n = &mut self.nodes[id as usize];
        n.next = NIL;
        n.prev = NIL;
        n.slot = UNARMED;
    }

    /// The earliest occupied slot: (level, digit, first tick of the slot).
    fn earliest_slot(&self) -> Option<(usize, usize, u64)> {
        for level in 0..LEVELS {
            let shift = SLOT_BITS as usize * level;
            let pos = (self.elapsed >> shift) & (SLOTS as u64 - 1);
            let mask = self.occupied[level] & (u64::MAX << pos);
            if mask != 0 {
                let digit = mask.trailing_zeros() as u64;
                let upper = shift + SLOT_BITS as usize;
                let window = if upper >= 64 {
                    0
                } else {
                    (self.elapsed >> upper) << upper
                };
                return Some((level, digit as usize, window + (digit << shift)));
            }
        }
        None
    }

    /// A lower bound of the next deadline (the start of the earliest occupied slot).
    pub fn next_expiry(&self) -> Option<Time> {
        self.earliest_slot()
            .map(|(_, _, t)| Time(t.saturating_mul(self.tick_ns)))
    }

    /// A timer from the earliest occupied slot (approximately the earliest
    /// deadline: exact at level 0, within the slot's span above), without
    /// advancing the wheel. Used to pick eviction victims.
    pub fn earliest(&self) -> Option<TimerId> {
        self.earliest_slot()
            .map(|(level, digit, _)| self.heads[level * SLOTS + digit])
            .filter(|&id| id != NIL)
    }

    /// Removes and returns one timer whose deadline is ≤ `now` (with its
    /// deadline), or `None` when no timer is due. Advances the wheel to `now`.
    pub fn pop_expired(&mut self, now: Time) -> Option<(TimerId, Time)> {
        let now_tick = now.as_nanos() / self.tick_ns;
        loop {
            let Some((level, digit, start)) = self.earliest_slot() else {
                self.elapsed = self.elapsed.max(now_tick);
                return None;
            };
            if start > now_tick {
                self.elapsed = self.elapsed.max(now_tick);
                return None;
            }
            self.elapsed = self.elapsed.max(start);
            let slot = level * SLOTS + digit;
            if level == 0 {
                let id = self.heads[slot];
                let deadline = self.nodes[id as usize].deadline;
                self.unlink(id);
                self.armed -= 1;
                return Some((id, Time(deadline)));
            }
            // Cascade: everything in this slot now lies in lower levels.
            let mut id = self.heads[slot];
            self.heads[slot] = NIL;
            self.occupied[level] &= !(1 << digit);
            while id != NIL {
                let next = self.nodes[id as usize].next;
                self.place(id);
                id = next;
            }
        }
    }
}

/// The ids `0..n` as a stack popping 0 first, allocated fallibly.
pub(crate) fn id_stack(n: usize) -> Option<Vec<u32>> {
    let mut v = Vec::new();
    v.try_reserve_exact(n).ok()?;
    v.extend((0..n as u32).rev());
    Some(v)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ms(v: u64) -> Time {
        Time::from_millis(v)
    }

    #[test]
    fn fires_in_order_within_a_tick() {
        let mut w = TimerWheel::<()>::new(8, Duration::from_millis(10), Time::ZERO).unwrap();
        w.arm(0, ms(25)).unwrap();
        w.arm(1, ms(5)).unwrap();
        w.arm(2, ms(100_000)).unwrap();
        assert_eq!(w.len(), 3);
        assert_eq!(w.pop_expired(ms(9)), None);
        assert_eq!(w.pop_expired(ms(10)), Some((1, ms(5))));
        assert_eq!(w.pop_expired(ms(29)), None);
        assert_eq!(w.pop_expired(ms(30)), Some((0, ms(25))));
        assert_eq!(w.pop_expired(ms(99_999)), None);
        assert_eq!(w.pop_expired(ms(100_000)), Some((2, ms(100_000))));
        assert!(w.is_empty());
    }

    #[test]
    fn rearm_disarm_and_far_deadlines() {
        let mut w = TimerWheel::<()>::new(4, Duration::from_millis(1), Time::ZERO).unwrap();
        let far = Time(u64::MAX - 1_000_000_000);
        w.arm(3, far).unwrap();
        w.arm(2, ms(50)).unwrap();
        w.arm(2, ms(70)).unwrap();
        assert_eq!(w.deadline(2), Some(ms(70)));
        assert_eq!(w.pop_expired(ms(60)), None);
        assert!(w.disarm(2));
        assert!(!w.disarm(2));
        assert_eq!(w.pop_expired(ms(80)), None);
        assert_eq!(w.earliest(), Some(3));
        assert_eq!(w.pop_expired(Time(u64::MAX - 1_000_000_001)), None);
        assert_eq!(w.pop_expired(Time(u64::MAX)), Some((3, far)));
        assert!(w.arm(4, ms(1)).is_err());
        assert!(TimerWheel::<()>::new(1, Duration::ZERO, Time::ZERO).is_err());
    }

    #[test]
    fn past_deadline_fires_next_poll() {
        let mut w = TimerWheel::<()>::new(2, Duration::from_secs(1), Time::from_secs(100)).unwrap();
        w.arm(0, Time::from_secs(3)).unwrap();
        assert_eq!(
            w.pop_expired(Time::from_secs(100)),
            Some((0, Time::from_secs(3)))
        );
    }
}
