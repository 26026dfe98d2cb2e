//! Checkpoints of the full-NAT port walk, for a restart after a crash.
//!
//! A stopping `tack` saves its full-NAT tuples (the parent module); one
//! that crashes (`kill -9`, a fault, the OOM killer) saves nothing, and the
//! next instance's workers would walk the local ports from where a fresh
//! start always begins: over the tuples the servers may still hold in
//! TIME_WAIT. Each worker hands local ports out in order from a cursor,
//! wrapping at the end of the range ([`PortWalk`]), so the ports used last
//! are just behind the cursor and those ahead of it were used a whole round
//! of the range ago. The control thread writes where each worker's walk
//! stands every second (a few lines, through a temporary file renamed
//! over the checkpoint); the next instance resumes each walk ahead of its
//! checkpoint by what it could have walked between the checkpoint and the
//! crash ([`Checkpoint::resume`]). No tuple is reused within the servers'
//! TIME_WAIT as long as a round of the range takes longer than that, which
//! the checkpoint records too (a warning says when it does not).
//!
//! The file is text: a line `checkpoint UNIX_MILLISECONDS`, then one line
//! per worker and port, `WORKER PORT CURSOR RATE RECENT`: the walk's
//! cursor, the most ports it moved over in one second, and the ports it
//! moved over within the last `keep` (the profile's `tcp_time_wait`).

use std::collections::VecDeque;
use std::ops::RangeInclusive;
use std::path::Path;
use std::time::{Duration, Instant, SystemTime};

use tack_dataplane::pipeline::PortWalk;

use super::{QuarantineError, unix_ms, write_file};

/// Ports ahead of a checkpointed cursor a resumed walk starts at, at least:
/// the walk's rate times this many checkpoint intervals (the crash came
/// within one interval after the checkpoint, unless the control thread
/// was late writing it).
const MARGIN_INTERVALS: u64 = 3;

/// Ports ahead of a checkpointed cursor a resumed walk starts at, besides
/// its rate: what a burst of new connections can take in less than a second.
const MARGIN_PORTS: u64 = 512;

/// Where one worker's walk stood on one port at a checkpoint.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WalkPoint {
    /// The worker (profile order).
    pub worker: u16,
    /// The port (profile order).
    pub port: u16,
    /// The walk's cursor.
    pub cursor: u16,
    /// The most ports the walk moved over in one second, recently.
    pub rate: u64,
    /// Ports the walk moved over within the servers' TIME_WAIT (the
    /// profile's `tcp_time_wait`) before the checkpoint.
    pub recent: u64,
}

/// A checkpoint file's content.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Checkpoint {
    /// When it was written.
    pub saved: SystemTime,
    /// Every worker's walk on every port.
    pub points: Vec<WalkPoint>,
}

/// Why a checkpoint is not resumed from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum NotResumed {
    /// Written longer ago than the servers keep a tuple: nothing to avoid.
    #[error("older than tcp_time_wait")]
    Old,
    /// Written by an instance with other workers or ports: its walks do not
    /// name this instance's.
    #[error("written with {0} workers × ports, this instance has {1}")]
    Layout(usize, usize),
}

/// Where each worker's walk resumes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Resume {
    /// Each worker's cursor per port (profile order).
    pub cursors: Vec<Vec<u16>>,
    /// The checkpoint's age.
    pub age: Duration,
    /// Whether some walk went round the whole range within the servers'
    /// TIME_WAIT: resuming ahead of it may still meet tuples they hold.
    pub lapped: bool,
}

impl Checkpoint {
    /// Where each of `workers` × `ports` walks resumes at `now`, within the
    /// local port `range` (the full-NAT services'), for checkpoints written
    /// every `interval` and tuples kept `keep`: each cursor moved ahead by
    /// the walk's rate times [`MARGIN_INTERVALS`] intervals (at least
    /// [`MARGIN_PORTS`] more), wrapping in `range`.
    pub fn resume(
        &self,
        keep: Duration,
        now: SystemTime,
        workers: usize,
        ports: usize,
        range: RangeInclusive<u16>,
        interval: Duration,
    ) -> Result<Resume, NotResumed> {
        let age = now.duration_since(self.saved).unwrap_or_default();
        if age >= keep {
            return Err(NotResumed::Old);
        }
        let layout = |w: usize, p: usize| {
            self.points
                .iter()
                .find(|x| usize::from(x.worker) == w && usize::from(x.port) == p)
        };
        let complete = (0..workers).all(|w| (0..ports).all(|p| layout(w, p).is_some()));
        if !complete || self.points.len() != workers * ports {
            return Err(NotResumed::Layout(self.points.len(), workers * ports));
        }
        let (lo, hi) = (*range.start(), *range.end().max(range.start()));
        let span = u64::from(hi - lo) + 1;
        let secs = interval.as_secs_f64().max(1.0);
        let mut lapped = false;
        let cursors = (0..workers)
            .map(|w| {
                (0..ports)
                    .map(|p| {
                        let x = layout(w, p).expect("checked");
                        let margin =
                            (x.rate as f64 * secs) as u64 * MARGIN_INTERVALS + MARGIN_PORTS;
                        lapped |= x.recent + margin >= span;
                        let from = u64::from(x.cursor.clamp(lo, hi) - lo);
                        lo + ((from + margin % span) % span) as u16
                    })
                    .collect()
            })
            .collect();
        Ok(Resume {
            cursors,
            age,
            lapped,
        })
    }
}

/// The walks the workers published over the last `keep`, one sample a
/// checkpoint, from which each checkpoint's rates are taken.
#[derive(Debug)]
pub struct WalkLog {
    keep: Duration,
    /// When, and each worker's walk per port.
    samples: VecDeque<(Instant, Vec<Vec<PortWalk>>)>,
}

impl WalkLog {
    /// A log keeping samples for `keep` (the profile's `tcp_time_wait`).
    pub fn new(keep: Duration) -> WalkLog {
        WalkLog {
            keep,
            samples: VecDeque::new(),
        }
    }

    /// Adds the workers' walks (per worker, per port) published by `at`.
    pub fn record(&mut self, at: Instant, walks: Vec<Vec<PortWalk>>) {
        self.samples.push_back((at, walks));
        while self
            .samples
            .front()
            .is_some_and(|(t, _)| at.duration_since(*t) > self.keep)
        {
            self.samples.pop_front();
        }
    }

    /// The checkpoint of the last sample, written at `saved`. A walk whose
    /// count went down (a worker's walk started again) counts from zero.
    pub fn checkpoint(&self, saved: SystemTime) -> Checkpoint {
        let mut points = Vec::new();
        let Some((_, last)) = self.samples.back() else {
            return Checkpoint { saved, points };
        };
        for (w, ports) in last.iter().enumerate() {
            for (p, walk) in ports.iter().enumerate() {
                let mut rate = 0u64;
                let mut recent = 0u64;
                let at = |s: &Vec<Vec<PortWalk>>| s.get(w).and_then(|x| x.get(p)).copied();
                let pairs = self.samples.iter().zip(self.samples.iter().skip(1));
                for ((t0, a), (t1, b)) in pairs {
                    let (Some(a), Some(b)) = (at(a), at(b)) else {
                        continue;
                    };
                    let moved = if b.walked >= a.walked {
                        b.walked - a.walked
                    } else {
                        b.walked
                    };
                    recent += moved;
                    let secs = t1.duration_since(*t0).as_secs_f64().max(0.001);
                    rate = rate.max((moved as f64 / secs).ceil() as u64);
                }
                points.push(WalkPoint {
                    worker: w as u16,
                    port: p as u16,
                    cursor: walk.cursor,
                    rate,
                    recent,
                });
            }
        }
        Checkpoint { saved, points }
    }
}

/// How often the control thread writes a checkpoint.
pub const INTERVAL: Duration = Duration::from_secs(1);

/// Writes the workers' walks to a checkpoint file every [`INTERVAL`].
#[derive(Debug)]
pub struct Checkpointer {
    path: std::path::PathBuf,
    log: WalkLog,
    next: Instant,
    /// Whether the last write failed (reported once until one succeeds).
    failing: bool,
}

impl Checkpointer {
    /// Checkpoints to `path`, for tuples the servers keep `keep`.
    pub fn new(path: std::path::PathBuf, keep: Duration) -> Checkpointer {
        Checkpointer {
            path,
            log: WalkLog::new(keep),
            next: Instant::now(),
            failing: false,
        }
    }

    /// Whether a checkpoint is due at `now`.
    pub fn due(&self, now: Instant) -> bool {
        now >= self.next
    }

    /// Records the workers' walks (per worker, per port) at `now` and
    /// writes a checkpoint stamped `wall`; the next is due an [`INTERVAL`]
    /// later. Walks not yet published (a worker with none) are not
    /// recorded: a checkpoint always names every worker. A failed write is
    /// logged once until one succeeds; the error is returned each time.
    pub fn write(
        &mut self,
        now: Instant,
        wall: SystemTime,
        walks: Vec<Vec<PortWalk>>,
    ) -> Result<(), QuarantineError> {
        if walks.is_empty() || walks.iter().any(Vec::is_empty) {
            return Ok(());
        }
        self.next = now + INTERVAL;
        self.log.record(now, walks);
        let written = save(&self.path, &self.log.checkpoint(wall));
        match &written {
            Ok(()) => self.failing = false,
            Err(e) if !self.failing => {
                log::warn!("full-NAT walk checkpoint not written: {e}");
                self.failing = true;
            }
            Err(_) => {}
        }
        written
    }
}

/// Writes `c` to `path` (through a temporary file renamed over it).
pub fn save(path: &Path, c: &Checkpoint) -> Result<(), QuarantineError> {
    // A crash of the process leaves what it wrote in the page cache: no
    // sync every second.
    write_file(path, false, |out| {
        use std::io::Write;
        writeln!(out, "checkpoint {}", unix_ms(c.saved))?;
        for x in &c.points {
            writeln!(
                out,
                "{} {} {} {} {}",
                x.worker, x.port, x.cursor, x.rate, x.recent
            )?;
        }
        Ok(())
    })
}

/// Reads a checkpoint file; `Ok(None)` if there is none.
pub fn load(path: &Path) -> Result<Option<Checkpoint>, QuarantineError> {
    let read = super::read_records(
        path,
        "checkpoint",
        "expected `checkpoint UNIX_MILLISECONDS`",
        |[worker, port, cursor, rate, recent], bad| {
            let num = |s: &str| s.parse::<u64>().map_err(|_| bad("bad number"));
            let small = |s: &str| s.parse::<u16>().map_err(|_| bad("bad number"));
            Ok(WalkPoint {
                worker: small(worker)?,
                port: small(port)?,
                cursor: small(cursor)?,
                rate: num(rate)?,
                recent: num(recent)?,
            })
        },
    )?;
    Ok(read.map(|(saved, points)| Checkpoint { saved, points }))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::UNIX_EPOCH;

    fn walk(cursor: u16, walked: u64) -> PortWalk {
        PortWalk { cursor, walked }
    }

    #[test]
    fn the_log_takes_each_walks_cursor_rate_and_recent_ports() {
        let t0 = Instant::now();
        let s = |n| t0 + Duration::from_secs(n);
        let mut log = WalkLog::new(Duration::from_secs(10));
        // Two workers, one port: worker 0 walks 100 then 300 ports a
        // second; worker 1 restarts its walk (a reload) in the middle.
        log.record(s(0), vec![vec![walk(1024, 0)], vec![walk(2000, 50)]]);
        log.record(s(1), vec![vec![walk(1124, 100)], vec![walk(2010, 60)]]);
        log.record(s(2), vec![vec![walk(1424, 400)], vec![walk(2015, 5)]]);
        let saved = UNIX_EPOCH + Duration::from_secs(1_700_000_000);
        let c = log.checkpoint(saved);
        assert_eq!(c.saved, saved);
        assert_eq!(
            c.points,
            [
                WalkPoint {
                    worker: 0,
                    port: 0,
                    cursor: 1424,
                    rate: 300,
                    recent: 400
                },
                WalkPoint {
                    worker: 1,
                    port: 0,
                    cursor: 2015,
                    rate: 10,
                    recent: 15
                },
            ]
        );
        // Samples older than `keep` leave the log, their ports the recent
        // count and their rates the rate (10 ports in the 10 s since).
        log.record(s(12), vec![vec![walk(1434, 410)], vec![walk(2015, 5)]]);
        let c = log.checkpoint(saved);
        assert_eq!((c.points[0].recent, c.points[0].rate), (10, 1));
        assert_eq!(WalkLog::new(Duration::ZERO).checkpoint(saved).points, []);
    }

    #[test]
    fn a_walk_resumes_ahead_by_its_rate_within_the_range() {
        let saved = UNIX_EPOCH + Duration::from_secs(1_700_000_000);
        let point = |worker, cursor, rate, recent| WalkPoint {
            worker,
            port: 0,
            cursor,
            rate,
            recent,
        };
        let c = Checkpoint {
            saved,
            points: vec![point(0, 2000, 100, 5000), point(1, 64_000, 1000, 9000)],
        };
        let keep = Duration::from_secs(120);
        let at = saved + Duration::from_secs(3);
        let sec = Duration::from_secs(1);
        let r = c.resume(keep, at, 2, 1, 1024..=65535, sec).unwrap();
        // 100 × 3 + 512 ahead; 1000 × 3 + 512 ahead, wrapping to the start
        // (64 000 + 3 512 is 1 976 past the end of the range).
        assert_eq!(r.cursors, [vec![2812], vec![3000]]);
        assert_eq!((r.age, r.lapped), (Duration::from_secs(3), false));
        // A walk that went round the range within TIME_WAIT is reported.
        let r = c.resume(keep, at, 2, 1, 1024..=9999, sec).unwrap();
        assert!(r.lapped);
        assert_eq!(r.cursors[0], [2812]);
        // Too old, or another layout: not resumed.
        let late = saved + Duration::from_secs(121);
        assert_eq!(
            c.resume(keep, late, 2, 1, 1024..=65535, sec),
            Err(NotResumed::Old)
        );
        assert_eq!(
            c.resume(keep, at, 3, 1, 1024..=65535, sec),
            Err(NotResumed::Layout(2, 3))
        );
        assert_eq!(
            c.resume(keep, at, 1, 1, 1024..=65535, sec),
            Err(NotResumed::Layout(2, 1))
        );
    }

    #[test]
    fn a_checkpoint_file_comes_back_and_a_damaged_one_is_refused() {
        let dir = std::env::temp_dir().join(format!("tack-walk-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("fnat.walk");
        assert_eq!(load(&path).unwrap(), None);
        let c = Checkpoint {
            saved: UNIX_EPOCH + Duration::from_millis(1_700_000_000_123),
            points: vec![WalkPoint {
                worker: 1,
                port: 2,
                cursor: 40_000,
                rate: 3000,
                recent: 123_456,
            }],
        };
        save(&path, &c).unwrap();
        assert_eq!(load(&path).unwrap(), Some(c));
        for (text, line) in [
            ("", 1),
            ("saved 5\n", 1),
            ("checkpoint 5\n0 0 1024 3\n", 2),
            ("checkpoint 5\n0 0 70000 3 4\n", 2),
        ] {
            std::fs::write(&path, text).unwrap();
            match load(&path) {
                Err(QuarantineError::Parse { line: l, .. }) => assert_eq!(l, line, "{text:?}"),
                other => panic!("{text:?}: {other:?}"),
            }
        }
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
