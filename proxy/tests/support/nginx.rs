//! A real nginx (Debian's) started by a test: one process (`master_process off`,
//! so it runs as the test's user and can write its logs in a temporary
//! directory), stopped when dropped.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::Duration;

use super::{ChildGuard, require_tool};

/// A running nginx.
pub struct Nginx {
    /// Its directory (configuration, logs).
    pub dir: tempfile::TempDir,
    _child: ChildGuard,
}

/// A free port on 127.0.0.1 (bound and released).
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

impl Nginx {
    /// Start with `http` as the body of the `http { }` block; waits until every
    /// address of `listening` accepts connections.
    pub fn start(http: &str, listening: &[SocketAddr]) -> Nginx {
        require_tool("nginx");
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path().display();
        let conf = format!(
            "daemon off;\nmaster_process off;\npid {d}/nginx.pid;\nerror_log {d}/error.log warn;\n\
             events {{ worker_connections 4096; }}\n\
             http {{\n  client_body_temp_path {d}/body;\n  proxy_temp_path {d}/proxy;\n  \
             fastcgi_temp_path {d}/fcgi;\n  uwsgi_temp_path {d}/uwsgi;\n  scgi_temp_path {d}/scgi;\n  \
             keepalive_requests 1000000;\n  keepalive_timeout 300s;\n{http}\n}}\n"
        );
        let path = dir.path().join("nginx.conf");
        std::fs::write(&path, conf).unwrap();
        let child = Command::new("nginx")
            .arg("-c")
            .arg(&path)
            .arg("-p")
            .arg(dir.path())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("start nginx");
        let guard = ChildGuard(child);
        for a in listening {
            let t0 = std::time::Instant::now();
            while std::net::TcpStream::connect(a).is_err() {
                assert!(
                    t0.elapsed() < Duration::from_secs(10),
                    "nginx does not listen on {a}: {}",
                    std::fs::read_to_string(dir.path().join("error.log")).unwrap_or_default()
                );
                std::thread::sleep(Duration::from_millis(20));
            }
        }
        Nginx { dir, _child: guard }
    }

    /// A file of its directory.
    pub fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    /// The lines of a log file in its directory.
    pub fn log(&self, name: &str) -> Vec<String> {
        std::fs::read_to_string(self.path(name))
            .unwrap_or_default()
            .lines()
            .map(str::to_string)
            .collect()
    }
}
