//! The management socket: a local Unix socket (mode 0600) taking one command
//! line per connection and answering with text. `tackctl` is its client.
//!
//! Answer format: the first line is `ok` or `error: <why>`; the rest is the
//! command's output.

use std::io::{BufRead, BufReader, Read, Write};
use std::os::unix::fs::PermissionsExt;
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::ctl::ControlPlane;

/// The listening management socket; removed on drop.
pub struct MgmtServer {
    listener: UnixListener,
    path: PathBuf,
}

impl MgmtServer {
    /// Listens on `path` (its directory is created; a stale socket is replaced).
    pub fn bind(path: &Path) -> std::io::Result<MgmtServer> {
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir)?;
        }
        if path.exists() {
            // Refuse to steal the socket of a running appliance.
            if UnixStream::connect(path).is_ok() {
                return Err(std::io::Error::new(
                    std::io::ErrorKind::AddrInUse,
                    format!("{} is in use by another tack", path.display()),
                ));
            }
            std::fs::remove_file(path)?;
        }
        let listener = UnixListener::bind(path)?;
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600))?;
        listener.set_nonblocking(true)?;
        Ok(MgmtServer {
            listener,
            path: path.to_path_buf(),
        })
    }

    /// Serves the connections waiting now (never blocks for long).
    pub fn serve(&mut self, ctl: &mut ControlPlane) {
        while let Ok((stream, _)) = self.listener.accept() {
            if let Err(e) = handle(stream, ctl) {
                log::warn!("management connection: {e}");
            }
        }
    }
}

impl Drop for MgmtServer {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.path);
    }
}

fn handle(stream: UnixStream, ctl: &mut ControlPlane) -> std::io::Result<()> {
    stream.set_nonblocking(false)?;
    stream.set_read_timeout(Some(Duration::from_secs(2)))?;
    stream.set_write_timeout(Some(Duration::from_secs(2)))?;
    let mut line = String::new();
    BufReader::new((&stream).take(4096)).read_line(&mut line)?;
    let answer = match ctl.command(line.trim()) {
        Ok(text) => format!("ok\n{text}"),
        Err(e) => format!("error: {e}\n"),
    };
    (&stream).write_all(answer.as_bytes())
}

/// Why `tackctl` got no answer, or an error for an answer.
#[derive(Debug, thiserror::Error)]
pub enum MgmtError {
    /// Nothing listens on the socket (no `tack` running there, or no permission).
    #[error("cannot reach tack at {}: {source}", path.display())]
    Connect {
        /// The socket.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// Sending the command or reading the answer failed.
    #[error(transparent)]
    Io(#[from] std::io::Error),
    /// The appliance refused the command; its reason, as it gave it.
    #[error("{0}")]
    Refused(String),
    /// The answer is not in the protocol's format.
    #[error("unexpected answer: {0}")]
    UnexpectedAnswer(String),
}

/// Sends one command to the socket at `path` and returns the answer's text;
/// the appliance's refusal is [`MgmtError::Refused`].
pub fn request(path: &Path, command: &str) -> Result<String, MgmtError> {
    let mut s = UnixStream::connect(path).map_err(|source| MgmtError::Connect {
        path: path.to_path_buf(),
        source,
    })?;
    s.set_read_timeout(Some(Duration::from_secs(10)))?;
    s.write_all(format!("{command}\n").as_bytes())?;
    let mut answer = String::new();
    s.read_to_string(&mut answer)?;
    match answer.split_once('\n') {
        Some(("ok", rest)) => Ok(rest.to_string()),
        Some((err, _)) if err.starts_with("error: ") => {
            Err(MgmtError::Refused(err["error: ".len()..].to_string()))
        }
        _ => Err(MgmtError::UnexpectedAnswer(answer)),
    }
}
