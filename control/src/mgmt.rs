//! The management socket's file: a local Unix socket (mode 0600) bound
//! only where nothing but a stale socket is ([`MgmtServer::bind`]), and
//! removed when the appliance stops. The management API is served on it
//! by the management thread ([`crate::api::serve`]); `tackctl` is its
//! client ([`crate::api::client`]).

use std::io::ErrorKind;
use std::os::unix::fs::{DirBuilderExt, FileTypeExt, PermissionsExt};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};

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

    /// The listening socket.
    pub fn listener(&self) -> &UnixListener {
        &self.listener
    }

    /// Its path.
    pub fn path(&self) -> &Path {
        &self.path
    }
}

impl Drop for MgmtServer {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.path);
    }
}

/// Why the management socket could not be made.
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
    /// Creating the socket failed.
    #[error(transparent)]
    Io(#[from] std::io::Error),
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
