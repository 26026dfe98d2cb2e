//! The management socket: a local Unix socket (mode 0600) taking one command
//! line per connection and answering with text. `tackctl` is its client.
//!
//! Answer format: the first line is `ok` or `error: <why>`; the rest is the
//! command's output.
//!
//! The socket is served by a management thread of its own ([`MgmtServer::spawn`]),
//! so that a slow or silent client never holds up the control thread: the
//! management thread reads the command line, hands it to the control thread
//! as a [`Request`] on a crossbeam channel, and writes back the answer the
//! control thread sends on the request's reply channel. It is spawned by the
//! control thread once EAL has pinned that thread to the main lcore, and
//! inherits that affinity: it runs on the housekeeping core(s), away from the
//! workers' lcores (unless the profile's `eal.lcores` shares them).

use std::fmt;
use std::io::ErrorKind;
use std::io::{BufRead, BufReader, Read, Write};
use std::os::unix::fs::{DirBuilderExt, FileTypeExt, PermissionsExt};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::JoinHandle;
use std::time::Duration;

use crossbeam::channel::{self, Receiver, Sender};

/// The directory of the default management socket, created if missing
/// (other directories must exist).
pub const DEFAULT_SOCKET_DIR: &str = "/run/tack";

/// What a file type is, in words.
fn file_kind(t: std::fs::FileType) -> &'static str {
    if t.is_file() {
        "a regular file"
    } else if t.is_dir() {
        "a directory"
    } else if t.is_symlink() {
        "a symbolic link"
    } else if t.is_fifo() {
        "a FIFO"
    } else if t.is_block_device() || t.is_char_device() {
        "a device"
    } else {
        "not a socket"
    }
}

/// The listening management socket; removed on drop.
pub struct MgmtServer {
    listener: UnixListener,
    path: PathBuf,
}

impl MgmtServer {
    /// Listens on `path`. What is there already is replaced only if it is a
    /// stale socket (one nobody listens on); a socket that answers is
    /// another appliance's ([`MgmtError::InUse`]), and anything else is
    /// refused ([`MgmtError::NotASocket`]). The directory must exist, except
    /// the default one, [`DEFAULT_SOCKET_DIR`], which is created.
    pub fn bind(path: &Path) -> Result<MgmtServer, MgmtError> {
        let dir = match path.parent() {
            Some(d) if !d.as_os_str().is_empty() => d,
            _ => Path::new("."),
        };
        match std::fs::metadata(dir) {
            Ok(m) if m.is_dir() => {}
            Ok(_) => return Err(MgmtError::NoDirectory(dir.to_path_buf())),
            Err(e) if e.kind() == ErrorKind::NotFound && dir == Path::new(DEFAULT_SOCKET_DIR) => {
                std::fs::DirBuilder::new().mode(0o755).create(dir)?;
            }
            Err(e) if e.kind() == ErrorKind::NotFound => {
                return Err(MgmtError::NoDirectory(dir.to_path_buf()));
            }
            Err(e) => return Err(e.into()),
        }
        match std::fs::symlink_metadata(path) {
            Ok(m) if m.file_type().is_socket() => match UnixStream::connect(path) {
                // Refuse to steal the socket of a running appliance.
                Ok(_) => return Err(MgmtError::InUse(path.to_path_buf())),
                // Stale: left by an appliance that ended without removing it.
                Err(e) if e.kind() == ErrorKind::ConnectionRefused => std::fs::remove_file(path)?,
                Err(e) => return Err(e.into()),
            },
            Ok(m) => {
                return Err(MgmtError::NotASocket {
                    path: path.to_path_buf(),
                    kind: file_kind(m.file_type()),
                });
            }
            Err(e) if e.kind() == ErrorKind::NotFound => {}
            Err(e) => return Err(e.into()),
        }
        let listener = UnixListener::bind(path)?;
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600))?;
        Ok(MgmtServer {
            listener,
            path: path.to_path_buf(),
        })
    }

    /// Serves the socket on a management thread (`tack-mgmt`, with the
    /// calling thread's CPU affinity) until the returned handle is dropped.
    pub fn spawn(self) -> Result<MgmtThread, MgmtError> {
        // A rendezvous channel: a request is either taken by the control
        // thread (which then answers it or drops it) or not sent at all.
        let (tx, rx) = channel::bounded(0);
        let stop = Arc::new(AtomicBool::new(false));
        let path = self.path.clone();
        let thread_stop = stop.clone();
        let join = std::thread::Builder::new()
            .name("tack-mgmt".into())
            .spawn(move || self.serve(&tx, &thread_stop))?;
        Ok(MgmtThread {
            requests: Some(rx),
            stop,
            path,
            join: Some(join),
        })
    }

    /// Accepts connections, one at a time, until `stop` is set.
    fn serve(self, requests: &Sender<Request>, stop: &AtomicBool) {
        for stream in self.listener.incoming() {
            if stop.load(Ordering::Relaxed) {
                break;
            }
            let result = stream.and_then(|s| handle(s, requests));
            if let Err(e) = result {
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

/// The running management thread. Dropping it stops the thread and removes
/// the socket.
pub struct MgmtThread {
    requests: Option<Receiver<Request>>,
    stop: Arc<AtomicBool>,
    path: PathBuf,
    join: Option<JoinHandle<()>>,
}

impl MgmtThread {
    /// The commands waiting for the control thread now (never blocks).
    pub fn pending(&self) -> impl Iterator<Item = Request> + '_ {
        self.requests.iter().flat_map(Receiver::try_iter)
    }
}

impl Drop for MgmtThread {
    fn drop(&mut self) {
        // A connection waiting for the control thread ends unanswered.
        self.requests = None;
        self.stop.store(true, Ordering::Relaxed);
        // Wake the thread if it waits in accept. If the socket cannot be
        // reached any more, the thread is left to end with the process.
        if let Err(e) = UnixStream::connect(&self.path) {
            log::warn!("management socket {}: {e}", self.path.display());
            return;
        }
        if let Some(j) = self.join.take()
            && j.join().is_err()
        {
            log::error!("the management thread panicked");
        }
    }
}

/// A command line read by the management thread, for the control thread.
pub struct Request {
    line: String,
    reply: Sender<String>,
}

impl Request {
    /// The command line, trimmed.
    pub fn line(&self) -> &str {
        &self.line
    }

    /// Answers the client: `ok` and the command's text, or `error: ` and
    /// why it was refused.
    pub fn answer<E: fmt::Display>(self, result: Result<String, E>) {
        let answer = match result {
            Ok(text) => format!("ok\n{text}"),
            Err(e) => format!("error: {e}\n"),
        };
        // The management thread is gone only when the appliance stops.
        let _ = self.reply.send(answer);
    }
}

fn handle(stream: UnixStream, requests: &Sender<Request>) -> std::io::Result<()> {
    stream.set_read_timeout(Some(Duration::from_secs(2)))?;
    stream.set_write_timeout(Some(Duration::from_secs(2)))?;
    let mut line = String::new();
    BufReader::new((&stream).take(4096)).read_line(&mut line)?;
    let (reply, answer) = channel::bounded(1);
    let request = Request {
        line: line.trim().to_string(),
        reply,
    };
    if requests.send(request).is_err() {
        return Ok(()); // stopping
    }
    match answer.recv() {
        Ok(text) => (&stream).write_all(text.as_bytes()),
        Err(_) => Ok(()), // stopping
    }
}

/// What went wrong on the management socket: serving it (`tack`) or asking
/// it (`tackctl`, which got no answer or a refusal).
#[derive(Debug, thiserror::Error)]
pub enum MgmtError {
    /// Another appliance answers on the socket.
    #[error("{} is in use by another tack", .0.display())]
    InUse(PathBuf),
    /// Something other than a socket is at the socket's path; it is left alone.
    #[error("{} is {kind}, not a socket: remove it or choose another path", path.display())]
    NotASocket {
        /// The path.
        path: PathBuf,
        /// What is there.
        kind: &'static str,
    },
    /// The socket's directory does not exist (only the default one is created).
    #[error("directory {} does not exist", .0.display())]
    NoDirectory(PathBuf),
    /// Nothing listens on the socket (no `tack` running there, or no permission).
    #[error("cannot reach tack at {}: {source}", path.display())]
    Connect {
        /// The socket.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// Creating the socket or its thread, sending the command or reading
    /// the answer failed.
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

#[cfg(test)]
mod tests {
    use super::*;

    /// A scratch directory, removed on drop.
    struct Scratch(PathBuf);

    impl Scratch {
        fn new(name: &str) -> Scratch {
            let p = std::env::temp_dir().join(format!("tack-mgmt-{name}-{}", std::process::id()));
            std::fs::create_dir_all(&p).unwrap();
            Scratch(p)
        }
    }

    impl Drop for Scratch {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }

    #[test]
    fn refuses_what_is_not_a_stale_socket() {
        let dir = Scratch::new("refuse");
        // A regular file stays as it was.
        let file = dir.0.join("file");
        std::fs::write(&file, "keep me").unwrap();
        let e = MgmtServer::bind(&file).err().expect("a file is refused");
        assert!(matches!(e, MgmtError::NotASocket { .. }), "{e}");
        assert!(
            e.to_string().contains("is a regular file, not a socket"),
            "{e}"
        );
        assert_eq!(std::fs::read_to_string(&file).unwrap(), "keep me");
        // So does a directory.
        let e = MgmtServer::bind(&dir.0)
            .err()
            .expect("a directory is refused");
        assert!(e.to_string().contains("is a directory"), "{e}");
        assert!(dir.0.is_dir());
        // A missing directory is not created.
        let deep = dir.0.join("no/such/dir/tack.sock");
        let e = MgmtServer::bind(&deep).err().expect("no directory");
        assert!(matches!(e, MgmtError::NoDirectory(_)), "{e}");
        assert!(!dir.0.join("no").exists());
    }

    #[test]
    fn replaces_only_a_stale_socket() {
        let dir = Scratch::new("stale");
        let path = dir.0.join("tack.sock");
        // A socket that answers belongs to another appliance.
        let live = UnixListener::bind(&path).unwrap();
        let e = MgmtServer::bind(&path).err().expect("in use");
        assert!(matches!(e, MgmtError::InUse(_)), "{e}");
        // Left behind by a listener that is gone: replaced.
        drop(live);
        assert!(path.exists(), "the socket file stays after its listener");
        let again = MgmtServer::bind(&path).expect("a stale socket is replaced");
        assert!(UnixStream::connect(&path).is_ok());
        let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
        drop(again);
        assert!(!path.exists(), "removed on drop");
    }
}
