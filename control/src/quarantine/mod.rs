//! The full-NAT tuples that outlive an instance: saved to a file when
//! `tack` stops, loaded by the next instance, which keeps them out of its
//! local port choice while the servers may still hold them in TIME_WAIT
//! (see `tack_dataplane::pipeline` `quarantine`).
//!
//! The file is text: a line `saved UNIX_MILLISECONDS`, then one tuple a
//! line, `PROTOCOL SERVER SERVER_PORT LOCAL LOCAL_PORT`. A crash saves no
//! tuples: [`walk`] checkpoints where the port choice stands instead.

pub mod walk;

use std::io::Write;
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use tack_dataplane::pipeline::FnatTuple;

/// Why a quarantine file could not be read or written.
#[derive(Debug, thiserror::Error)]
pub enum QuarantineError {
    /// The file could not be read or written.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The error.
        source: std::io::Error,
    },
    /// A line is not what [`save`] writes.
    #[error("{path}:{line}: {what}")]
    Parse {
        /// The file.
        path: PathBuf,
        /// Line number (from 1).
        line: usize,
        /// What is wrong.
        what: &'static str,
    },
}

/// Milliseconds since the Unix epoch at `t`.
fn unix_ms(t: SystemTime) -> u64 {
    t.duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

/// Writes `path` through a temporary file renamed over it (synced first
/// if `sync`), with what `body` writes.
fn write_file(
    path: &Path,
    sync: bool,
    body: impl FnOnce(&mut std::io::BufWriter<std::fs::File>) -> std::io::Result<()>,
) -> Result<(), QuarantineError> {
    let io = |source| QuarantineError::Io {
        path: path.to_path_buf(),
        source,
    };
    let mut tmp = path.as_os_str().to_owned();
    tmp.push(".tmp");
    let tmp = PathBuf::from(tmp);
    let mut out = std::io::BufWriter::new(std::fs::File::create(&tmp).map_err(io)?);
    body(&mut out).map_err(io)?;
    let file = out.into_inner().map_err(|e| io(e.into_error()))?;
    if sync {
        file.sync_all().map_err(io)?;
    }
    std::fs::rename(&tmp, path).map_err(io)
}

/// Reads `path`; `Ok(None)` if there is no such file.
fn read_file(path: &Path) -> Result<Option<String>, QuarantineError> {
    match std::fs::read_to_string(path) {
        Ok(t) => Ok(Some(t)),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(source) => Err(QuarantineError::Io {
            path: path.to_path_buf(),
            source,
        }),
    }
}

/// Writes `tuples` to `path` (through a temporary file synced and renamed
/// over it), saved at `now`.
pub fn save(path: &Path, tuples: &[FnatTuple], now: SystemTime) -> Result<(), QuarantineError> {
    write_file(path, true, |out| {
        writeln!(out, "saved {}", unix_ms(now))?;
        for t in tuples {
            writeln!(
                out,
                "{} {} {} {} {}",
                t.protocol, t.server, t.server_port, t.local, t.local_port
            )?;
        }
        Ok(())
    })
}

/// What a quarantine file holds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Saved {
    /// When the tuples were saved.
    pub saved: SystemTime,
    /// The tuples.
    pub tuples: Vec<FnatTuple>,
}

impl Saved {
    /// How long the tuples stay out of the port choice at `now`: `keep`
    /// (the profile's `tcp_time_wait`, what a running instance keeps an
    /// ended connection) less the time since they were saved; zero once
    /// that is over. A save time in the future counts as now.
    pub fn remaining(&self, keep: Duration, now: SystemTime) -> Duration {
        let age = now.duration_since(self.saved).unwrap_or_default();
        keep.saturating_sub(age)
    }
}

/// Reads a file of this module's shape: a first line `HEADER
/// UNIX_MILLISECONDS` (`expected` says so when it is not), then records of
/// five fields, each made by `record` (given its fields and a maker of its
/// line's error); `Ok(None)` if there is no file.
fn read_records<T>(
    path: &Path,
    header: &str,
    expected: &'static str,
    mut record: impl FnMut(
        [&str; 5],
        &dyn Fn(&'static str) -> QuarantineError,
    ) -> Result<T, QuarantineError>,
) -> Result<Option<(SystemTime, Vec<T>)>, QuarantineError> {
    let Some(text) = read_file(path)? else {
        return Ok(None);
    };
    let bad = |line: usize, what: &'static str| QuarantineError::Parse {
        path: path.to_path_buf(),
        line,
        what,
    };
    let mut lines = text.lines().enumerate();
    let at = lines
        .next()
        .and_then(|(_, l)| l.strip_prefix(header)?.strip_prefix(' '))
        .and_then(|ms| ms.trim().parse::<u64>().ok())
        .ok_or_else(|| bad(1, expected))?;
    let mut records = Vec::new();
    for (i, line) in lines {
        let f: Vec<&str> = line.split_whitespace().collect();
        let Ok(fields) = <[&str; 5]>::try_from(f) else {
            return Err(bad(i + 1, "expected 5 fields"));
        };
        records.push(record(fields, &|what| bad(i + 1, what))?);
    }
    Ok(Some((UNIX_EPOCH + Duration::from_millis(at), records)))
}

/// Reads a quarantine file; `Ok(None)` if there is none.
pub fn load(path: &Path) -> Result<Option<Saved>, QuarantineError> {
    let read = read_records(
        path,
        "saved",
        "expected `saved UNIX_MILLISECONDS`",
        |[proto, server, sport, local, lport], bad| {
            let addr = |s: &str| s.parse::<IpAddr>().map_err(|_| bad("bad address"));
            let port = |s: &str| s.parse::<u16>().map_err(|_| bad("bad port"));
            let (server, local) = (addr(server)?, addr(local)?);
            if server.is_ipv4() != local.is_ipv4() {
                return Err(bad("addresses of two families"));
            }
            Ok(FnatTuple {
                protocol: proto.parse().map_err(|_| bad("bad protocol"))?,
                server,
                server_port: port(sport)?,
                local,
                local_port: port(lport)?,
            })
        },
    )?;
    Ok(read.map(|(saved, tuples)| Saved { saved, tuples }))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tuple(lport: u16) -> FnatTuple {
        FnatTuple {
            protocol: 6,
            server: "10.0.0.11".parse().unwrap(),
            server_port: 80,
            local: "10.0.0.201".parse().unwrap(),
            local_port: lport,
        }
    }

    #[test]
    fn saved_tuples_come_back_with_what_is_left_of_their_time() {
        let dir = std::env::temp_dir().join(format!("tack-q-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("fnat");
        assert_eq!(load(&path).unwrap(), None);
        let t0 = UNIX_EPOCH + Duration::from_secs(1_700_000_000);
        let six6 = FnatTuple {
            server: "fd00::11".parse().unwrap(),
            local: "fd00::201".parse().unwrap(),
            ..tuple(9)
        };
        save(&path, &[tuple(1024), six6], t0).unwrap();
        let s = load(&path).unwrap().unwrap();
        assert_eq!(s.tuples, [tuple(1024), six6]);
        let keep = Duration::from_secs(120);
        assert_eq!(
            s.remaining(keep, t0 + Duration::from_secs(20)),
            Duration::from_secs(100)
        );
        assert_eq!(
            s.remaining(keep, t0 + Duration::from_secs(200)),
            Duration::ZERO
        );
        assert_eq!(s.remaining(keep, t0 - Duration::from_secs(5)), keep);
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn a_damaged_file_is_refused_with_its_line() {
        let dir = std::env::temp_dir().join(format!("tack-qd-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("fnat");
        for (text, line) in [
            ("", 1),
            ("saved x\n", 1),
            ("saved 5\n6 10.0.0.1 80 10.0.0.2\n", 2),
            ("saved 5\n6 10.0.0.1 80 fd00::1 9\n", 2),
            ("saved 5\n6 10.0.0.1 80 10.0.0.2 99999\n", 2),
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
