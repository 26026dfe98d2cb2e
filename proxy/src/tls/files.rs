//! Noticing that files changed on disk: a stamp of their modification times,
//! sizes and inodes, compared at each reload tick.

use std::path::PathBuf;
use std::time::SystemTime;

/// What the files looked like at one moment (a file that cannot be read counts
/// as its own state, so its return is a change too).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Stamp(Vec<Option<(SystemTime, u64, u64)>>);

impl Stamp {
    /// The stamp of these files now.
    pub fn of<'a>(paths: impl IntoIterator<Item = &'a PathBuf>) -> Stamp {
        use std::os::unix::fs::MetadataExt;
        Stamp(
            paths
                .into_iter()
                .map(|p| {
                    let m = std::fs::metadata(p).ok()?;
                    Some((m.modified().ok()?, m.len(), m.ino()))
                })
                .collect(),
        )
    }
}
