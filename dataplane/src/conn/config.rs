//! A connection table's configuration and the errors of building and inserting.

use super::*;

/// What a full table does with a new flow.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash)]
pub enum FullPolicy {
    /// Refuse the new flow (counted in [`ConnStats::full_drops`]).
    #[default]
    Drop,
    /// Remove the connection closest to expiry (a timed-out one if any, which
    /// under a SYN flood is typically a half-open one); counted in
    /// [`ConnStats::evictions`] (or [`ConnStats::expired`] if it had timed out).
    EvictOldest,
}

/// Configuration of one connection table.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ConnTableConfig {
    /// Maximum number of entries (a NAT / full-NAT connection uses two: forward
    /// and reply; a DSR / tunnel connection one).
    pub capacity: usize,
    /// Per-state timeouts.
    pub timeouts: Timeouts,
    /// What to do when full.
    pub full_policy: FullPolicy,
    /// Timer wheel tick (expiry precision), default 100 ms.
    pub tick: Duration,
    /// Hash seed. `tack` picks a random one per table at start, so that
    /// clients cannot aim collisions; tests and benchmarks fix it.
    pub hash_seed: u64,
}

impl Default for ConnTableConfig {
    fn default() -> ConnTableConfig {
        ConnTableConfig {
            capacity: 1 << 20,
            timeouts: Timeouts::default(),
            full_policy: FullPolicy::Drop,
            tick: Duration::from_millis(100),
            hash_seed: 0x636f_6e6e_7461_626c,
        }
    }
}

/// Why a table cannot be built.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[non_exhaustive]
pub enum ConnTableError {
    /// Capacity 0 or above [`MAX_CONNS`].
    #[error("connection table capacity {0} is out of range (1..={max})", max = MAX_CONNS)]
    Capacity(usize),
    /// The timer wheel refused the configuration.
    #[error("timer wheel: {0}")]
    Timer(#[from] TimerError),
    /// The allocator refused the table.
    #[error("cannot allocate a connection table of {0} entries")]
    Alloc(usize),
}

/// Why a connection was not inserted.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Error)]
#[non_exhaustive]
pub enum InsertError {
    /// The forward key is already in the table (the handle points to it).
    #[error("connection already exists")]
    Exists(Handle),
    /// The reply key is already in the table (for full NAT: the local port is taken).
    #[error("reply tuple already in use")]
    ReplyExists,
    /// The reply key equals the forward key.
    #[error("reply tuple equals the forward tuple")]
    ReplyIsForward,
    /// The table is full and the policy (or the lack of a victim) refused the flow.
    #[error("connection table full")]
    Full,
}

/// A caller-side mistake in a burst call.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Error)]
#[error("output slice holds {out} results for {keys} keys")]
pub struct BurstLenMismatch {
    /// Number of keys.
    pub keys: usize,
    /// Length of the output slice.
    pub out: usize,
}
