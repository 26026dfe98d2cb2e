//! Helpers for the end-to-end tests: network namespaces joined by veth pairs,
//! the `tack` binary running inside one, and cleanup of everything on drop.
//!
//! Every test host (client, server, the appliance's ports) lives in its own
//! namespace with no route towards the machine's real interfaces.
#![allow(dead_code)]

pub mod lab;

/// A process started for a test, killed (and reaped) on drop.
pub struct Bg(pub std::process::Child);

impl Drop for Bg {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

use std::io::{BufRead, BufReader, Read};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::mpsc;
use std::time::{Duration, Instant};

/// Fails the test unless it runs as root with `ip` available.
pub fn require_root() {
    // SAFETY-free check through the id command, to keep the tests free of unsafe.
    let out = Command::new("id").arg("-u").output().expect("run id");
    let uid = String::from_utf8_lossy(&out.stdout).trim().to_string();
    assert_eq!(
        uid, "0",
        "end-to-end tests need root (network namespaces, af_packet); run ./scripts/test.sh as root"
    );
    assert!(
        Command::new("ip").arg("-V").output().is_ok(),
        "iproute2 (`ip`) is missing: run ./scripts/setup.sh"
    );
}

/// A short name unique to this process and call, for namespaces and interfaces.
pub fn unique(prefix: &str) -> String {
    static N: AtomicU32 = AtomicU32::new(0);
    format!(
        "{prefix}{}x{}",
        std::process::id() % 100_000,
        N.fetch_add(1, Ordering::Relaxed)
    )
}

/// Runs a command, panicking with its output if it fails.
pub fn sh(args: &[&str]) -> Output {
    let out = Command::new(args[0])
        .args(&args[1..])
        .output()
        .unwrap_or_else(|e| panic!("{args:?}: {e}"));
    assert!(
        out.status.success(),
        "{args:?} failed: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

/// A network namespace, deleted (with its interfaces and processes' sockets) on drop.
pub struct Netns {
    /// Its name.
    pub name: String,
    owned: bool,
}

impl Netns {
    /// Creates a namespace with loopback up.
    pub fn new(prefix: &str) -> Netns {
        let name = unique(prefix);
        sh(&["ip", "netns", "add", &name]);
        let ns = Netns { name, owned: true };
        ns.run(&["ip", "link", "set", "lo", "up"]);
        ns
    }

    /// A handle on a namespace created elsewhere (not deleted on drop).
    pub fn existing(name: &str) -> Netns {
        Netns {
            name: name.to_string(),
            owned: false,
        }
    }

    /// Runs a command inside the namespace, panicking on failure.
    pub fn run(&self, args: &[&str]) -> Output {
        let mut full = vec!["ip", "netns", "exec", &self.name];
        full.extend_from_slice(args);
        sh(&full)
    }

    /// Runs a command inside the namespace and returns its output whatever the status.
    pub fn try_run(&self, args: &[&str]) -> Output {
        Command::new("ip")
            .args(["netns", "exec", &self.name])
            .args(args)
            .output()
            .expect("spawn ip netns exec")
    }

    /// A command to spawn inside the namespace.
    pub fn command(&self, program: &Path) -> Command {
        let mut c = Command::new("ip");
        c.args(["netns", "exec", &self.name]).arg(program);
        c
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        if !self.owned {
            return;
        }
        let _ = Command::new("ip")
            .args(["netns", "pids", &self.name])
            .output()
            .map(|o| {
                for pid in String::from_utf8_lossy(&o.stdout).split_whitespace() {
                    let _ = Command::new("kill").args(["-9", pid]).status();
                }
            });
        let _ = Command::new("ip")
            .args(["netns", "del", &self.name])
            .status();
    }
}

/// Joins `a` (interface `a_if`) and `b` (interface `b_if`) with a veth pair,
/// both ends up, IPv6 autoconfiguration off on the ends, checksum offloads off
/// (so frames seen through af_packet carry complete checksums).
pub fn veth(a: &Netns, a_if: &str, b: &Netns, b_if: &str) {
    let tmp_a = unique("va");
    let tmp_b = unique("vb");
    sh(&[
        "ip", "link", "add", &tmp_a, "type", "veth", "peer", "name", &tmp_b,
    ]);
    sh(&["ip", "link", "set", &tmp_a, "netns", &a.name]);
    sh(&["ip", "link", "set", &tmp_b, "netns", &b.name]);
    for (ns, tmp, name) in [(a, &tmp_a, a_if), (b, &tmp_b, b_if)] {
        ns.run(&["ip", "link", "set", tmp, "name", name]);
        ns.try_run(&[
            "sysctl",
            "-qw",
            &format!("net.ipv6.conf.{name}.accept_ra=0"),
        ]);
        ns.try_run(&["ethtool", "-K", name, "tx", "off", "rx", "off"]);
        ns.run(&["ip", "link", "set", name, "up"]);
    }
}

/// The `tack` binary of this build.
pub fn tack_bin() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_tack"))
}

/// A running `tack`, killed on drop if still running.
pub struct Tack {
    child: Child,
    stdout: mpsc::Receiver<String>,
    lines: Vec<String>,
    stderr: Option<std::process::ChildStderr>,
}

impl Tack {
    /// Starts `tack run --config profile` in `ns` and waits until it reports it runs.
    pub fn start(ns: &Netns, profile: &Path) -> Tack {
        Tack::spawn(ns.command(&tack_bin()), profile)
    }

    /// Starts `tack run --config profile` in the test's own namespace (for
    /// ports that are files or in-process devices).
    pub fn start_plain(profile: &Path) -> Tack {
        Tack::spawn(Command::new(tack_bin()), profile)
    }

    fn spawn(mut cmd: Command, profile: &Path) -> Tack {
        cmd.args(["run", "--config"])
            .arg(profile)
            .env("RUST_LOG", "warn");
        Tack::start_command(cmd)
    }

    /// Starts `cmd`, a complete `tack run` command line (as a unit file's
    /// `ExecStart` gives it), and waits until it reports it runs. Its process
    /// must be `tack` itself (wrappers such as `ip netns exec` exec it).
    pub fn start_command(mut cmd: Command) -> Tack {
        let mut child = cmd
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn tack");
        let (tx, rx) = mpsc::channel();
        let out = child.stdout.take().expect("piped");
        std::thread::spawn(move || {
            for line in BufReader::new(out).lines().map_while(Result::ok) {
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        let stderr = child.stderr.take();
        let mut t = Tack {
            child,
            stdout: rx,
            lines: Vec::new(),
            stderr,
        };
        t.wait_for_line("running", Duration::from_secs(30));
        t
    }

    /// The process id of `tack`.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Waits for a stdout line containing `needle`, panicking (with stderr) after `timeout`.
    pub fn wait_for_line(&mut self, needle: &str, timeout: Duration) -> String {
        let deadline = Instant::now() + timeout;
        if let Some(l) = self.lines.iter().find(|l| l.contains(needle)) {
            return l.clone();
        }
        while Instant::now() < deadline {
            match self.stdout.recv_timeout(Duration::from_millis(100)) {
                Ok(line) => {
                    self.lines.push(line.clone());
                    if line.contains(needle) {
                        return line;
                    }
                }
                Err(mpsc::RecvTimeoutError::Timeout) => {
                    if let Ok(Some(st)) = self.child.try_wait() {
                        panic!(
                            "tack exited ({st}) before printing {needle:?}: {}\n{}",
                            self.lines.join("\n"),
                            self.stderr_text()
                        );
                    }
                }
                Err(mpsc::RecvTimeoutError::Disconnected) => {
                    let st = self.child.wait().expect("wait tack");
                    panic!(
                        "tack exited ({st}) before printing {needle:?}: {}\n{}",
                        self.lines.join("\n"),
                        self.stderr_text()
                    );
                }
            }
        }
        panic!(
            "tack did not print {needle:?} in {timeout:?}: {}\n{}",
            self.lines.join("\n"),
            self.stderr_text()
        );
    }

    fn stderr_text(&mut self) -> String {
        let mut s = String::new();
        if let Some(mut e) = self.stderr.take() {
            let _ = e.read_to_string(&mut s);
        }
        s
    }

    /// Sends SIGHUP (reload the profile), waits until `tack` reports it
    /// applied it, and panics if it refused it.
    pub fn reload(&mut self) {
        let line = self.reload_outcome();
        assert!(!line.contains("refused"), "{line}");
    }

    /// Sends SIGHUP and returns `tack`'s report of the reload.
    pub fn reload_outcome(&mut self) -> String {
        let before = self
            .lines
            .iter()
            .filter(|l| l.starts_with("tack: reload"))
            .count();
        sh(&["kill", "-HUP", &self.child.id().to_string()]);
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let done: Vec<&String> = self
                .lines
                .iter()
                .filter(|l| l.starts_with("tack: reload"))
                .collect();
            if done.len() > before {
                let last = done[done.len() - 1].clone();
                // Workers take the new epoch at their next loop iteration.
                std::thread::sleep(Duration::from_millis(20));
                return last;
            }
            assert!(Instant::now() < deadline, "tack did not report the reload");
            if let Ok(l) = self.stdout.recv_timeout(Duration::from_millis(100)) {
                self.lines.push(l);
            }
        }
    }

    /// Sends SIGTERM and waits for a clean exit; returns everything it printed.
    pub fn stop(self) -> String {
        sh(&["kill", "-TERM", &self.child.id().to_string()]);
        self.stop_within(Duration::from_secs(20))
    }

    /// Waits up to `timeout` for a clean exit (after a signal the caller
    /// sent); returns everything it printed.
    pub fn stop_within(mut self, timeout: Duration) -> String {
        let deadline = Instant::now() + timeout;
        let status = loop {
            if let Some(st) = self.child.try_wait().expect("wait tack") {
                break st;
            }
            assert!(
                Instant::now() < deadline,
                "tack did not stop within {timeout:?}"
            );
            std::thread::sleep(Duration::from_millis(20));
        };
        while let Ok(l) = self.stdout.recv_timeout(Duration::from_millis(500)) {
            self.lines.push(l);
        }
        let err = self.stderr_text();
        assert!(
            status.success(),
            "tack exited with {status}: {}\n{err}",
            self.lines.join("\n")
        );
        self.lines.join("\n")
    }
}

impl Drop for Tack {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// A temporary directory removed on drop.
pub struct TempDir(pub PathBuf);

impl TempDir {
    /// Creates one.
    pub fn new() -> TempDir {
        let p = std::env::temp_dir().join(unique("tack-test-"));
        std::fs::create_dir_all(&p).expect("temp dir");
        TempDir(p)
    }

    /// A path inside it.
    pub fn path(&self, name: &str) -> PathBuf {
        self.0.join(name)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// The requests a `wrk` run reports having made (`N requests in ...`), 0
/// if its output has no such line.
pub fn wrk_requests(out: &str) -> u64 {
    out.lines()
        .find_map(|l| {
            l.trim()
                .split_once(" requests in ")
                .map(|(n, _)| n.trim().parse().unwrap_or(0))
        })
        .unwrap_or(0)
}

/// Reads a counter's total from `tack`'s final table.
pub fn counter(report: &str, name: &str) -> Option<u64> {
    report.lines().find_map(|l| {
        let mut it = l.split_whitespace();
        (it.next() == Some(name))
            .then(|| it.next().and_then(|v| v.parse().ok()))
            .flatten()
    })
}
