//! The lab of `scripts/lab.sh` for end-to-end tests: clients in class A, B
//! and C networks behind a router, three real servers (nginx and a UDP echo),
//! and the appliance's port `lb0`, each in its own namespace; removed on drop.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Mutex;

use super::{TempDir, unique};

/// One lab at a time per test binary: they share two CPUs.
pub static LAB_LOCK: Mutex<()> = Mutex::new(());

/// A running lab.
pub struct Lab {
    /// Namespace prefix.
    pub prefix: String,
    /// Scratch directory (profiles, sockets).
    pub dir: TempDir,
}

pub fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("workspace")
        .to_path_buf()
}

impl Lab {
    /// Builds the lab.
    pub fn up() -> Lab {
        Lab::up_with_nodes(0)
    }

    /// Builds the lab with `nodes` cluster nodes (namespaces n1, n2...,
    /// each with its port lb0 on the segment).
    pub fn up_with_nodes(nodes: usize) -> Lab {
        Lab::up_with(nodes, 1)
    }

    /// Builds the lab with `queues` queues each way on lb0 and p-lb
    /// (`lab.sh up --queues`), for several workers over `net_af_xdp`.
    pub fn up_with_queues(queues: usize) -> Lab {
        Lab::up_with(0, queues)
    }

    fn up_with(nodes: usize, queues: usize) -> Lab {
        super::require_root();
        let prefix = unique("tl");
        let out = Command::new(root().join("scripts/lab.sh"))
            .args(["up", "--prefix", &prefix, "--nodes", &nodes.to_string()])
            .args(["--queues", &queues.to_string()])
            .output()
            .expect("run scripts/lab.sh");
        let lab = Lab {
            prefix,
            dir: TempDir::new(),
        };
        assert!(
            out.status.success(),
            "lab.sh up failed: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        lab
    }

    /// The full name of lab namespace `n` (c1, s2, lb...).
    pub fn ns(&self, n: &str) -> String {
        format!("{}-{n}", self.prefix)
    }

    /// The state directory `scripts/lab.sh` keeps for lab host `n` (a
    /// server's nginx configuration, its site files and logs).
    pub fn state_dir(&self, n: &str) -> PathBuf {
        PathBuf::from(format!("/run/tack-lab-{}/{n}", self.prefix))
    }

    /// The appliance's namespace as a [`super::Netns`]-like handle for `Tack::start`.
    pub fn lb(&self) -> super::Netns {
        super::Netns::existing(&self.ns("lb"))
    }

    /// Runs a command in namespace `n`; returns (success, stdout, stderr).
    pub fn exec(&self, n: &str, args: &[&str]) -> (bool, String, String) {
        let out = Command::new("ip")
            .args(["netns", "exec", &self.ns(n)])
            .args(args)
            .output()
            .expect("ip netns exec");
        (
            out.status.success(),
            String::from_utf8_lossy(&out.stdout).to_string(),
            String::from_utf8_lossy(&out.stderr).to_string(),
        )
    }

    /// Starts `args` in namespace `n`, its stdout piped and its stderr
    /// discarded (`lab.sh down` kills whatever is left there).
    pub fn spawn(&self, n: &str, args: &[&str]) -> std::process::Child {
        Command::new("ip")
            .args(["netns", "exec", &self.ns(n)])
            .args(args)
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::null())
            .spawn()
            .expect("spawn")
    }

    /// `curl` from client `c`: the body, or the error.
    pub fn curl(&self, c: &str, url: &str) -> Result<String, String> {
        let (ok, out, err) = self.exec(c, &["curl", "-sS", "-m", "5", url]);
        if ok { Ok(out) } else { Err(err) }
    }

    /// `count` HTTP requests, each on a new connection, from client `c`
    /// (optionally from these source addresses, round robin).
    pub fn hits(&self, c: &str, url: &str, count: usize, sources: &[&str]) -> Hits {
        let script = root().join("scripts/lab/hits.py");
        let count = count.to_string();
        let mut args: Vec<&str> =
            vec!["python3", script.to_str().expect("utf-8 path"), url, &count];
        for s in sources {
            args.push("--source");
            args.push(s);
        }
        let (ok, out, err) = self.exec(c, &args);
        assert!(ok, "hits.py failed: {err}");
        let v: serde_json::Value = serde_json::from_str(out.trim())
            .unwrap_or_else(|e| panic!("hits.py output {out:?}: {e}"));
        let counts = |o: &serde_json::Value| -> BTreeMap<String, u64> {
            o.as_object()
                .map(|m| {
                    m.iter()
                        .map(|(k, v)| (k.clone(), v.as_u64().unwrap_or(0)))
                        .collect()
                })
                .unwrap_or_default()
        };
        Hits {
            servers: counts(&v["servers"]),
            errors: v["errors"].as_u64().unwrap_or(u64::MAX),
            by_source: v["by_source"]
                .as_object()
                .map(|m| m.iter().map(|(k, v)| (k.clone(), counts(v))).collect())
                .unwrap_or_default(),
        }
    }

    /// A UDP request to the echo service through `vip` from client `c`: the answer.
    pub fn udp(&self, c: &str, vip: &str, port: u16, payload: &str) -> Result<String, String> {
        let code = format!(
            "import socket,sys\nfam=socket.AF_INET6 if ':' in '{vip}' else socket.AF_INET\ns=socket.socket(fam,socket.SOCK_DGRAM)\ns.settimeout(3)\ns.sendto(b'{payload}',('{vip}',{port}))\nprint(s.recvfrom(2048)[0].decode())"
        );
        let (ok, out, err) = self.exec(c, &["python3", "-c", &code]);
        if ok {
            Ok(out.trim().to_string())
        } else {
            Err(err)
        }
    }

    /// A profile for this lab: `workers` workers (one rx queue each on lb0),
    /// the exception path on (the kernel interface `tack-lan` in the
    /// appliance's namespace), and the given `services:` YAML (indented
    /// list items). lb0 is bound with `net_af_packet`, or with
    /// `net_af_xdp` for one worker when `TACK_LAB_PMD=af_xdp` (the lab's
    /// other path, see docs/benchmarking-lab.md).
    pub fn profile(&self, workers: usize, services: &str) -> (PathBuf, PathBuf) {
        let xdp = std::env::var("TACK_LAB_PMD").is_ok_and(|v| v == "af_xdp");
        let device = match workers {
            1 if xdp => "net_af_xdp0,iface=lb0".to_string(),
            1 => "net_af_packet0,iface=lb0".to_string(),
            n => format!("net_af_packet0,iface=lb0,qpairs={n}"),
        };
        let data_room = if xdp && workers == 1 { 3904 } else { 2176 };
        self.profile_on(workers, &device, data_room, services)
    }

    /// A profile as [`Lab::profile`] with `workers` workers over
    /// `net_af_xdp` on lb0's first `workers` queues (a lab of
    /// [`Lab::up_with_queues`]; run it with [`Lab::start_tack_xdp`]).
    pub fn profile_xdp(&self, workers: usize, services: &str) -> (PathBuf, PathBuf) {
        let device = format!("net_af_xdp0,iface=lb0,start_queue=0,queue_count={workers}");
        self.profile_on(workers, &device, 3904, services)
    }

    /// Starts `tack` on `profile` in the appliance's namespace with the
    /// lab's shim that lets `net_af_xdp` bind several queues of lb0.
    pub fn start_tack_xdp(&self, profile: &Path) -> super::Tack {
        let mut cmd = self.lb().command(&super::tack_bin());
        cmd.env(
            "LD_PRELOAD",
            format!("/run/tack-lab-{}/combined_channels.so", self.prefix),
        )
        .env("RUST_LOG", "warn")
        .args(["run", "--config"])
        .arg(profile);
        super::Tack::start_command(cmd)
    }

    fn profile_on(
        &self,
        workers: usize,
        device: &str,
        data_room: u16,
        services: &str,
    ) -> (PathBuf, PathBuf) {
        let socket = self.dir.path("tack.sock");
        let lcores: Vec<String> = (0..=workers).map(|i| i.to_string()).collect();
        let mut p = format!(
            "eal:\n  hugepages: false\n  lcores: \"({})@(0,1)\"\nruntime:\n  idle: backoff\nmempool:\n  mbufs: 8191\n  cache: 128\n  data_room: {data_room}\n\
             ports:\n  - name: lan\n    device: {device}\n    rx_queues: {workers}\n    addresses: [10.0.0.1/24, fd00::1/64]\n\
             workers:\n",
            lcores.join(","),
        );
        for w in 0..workers {
            p.push_str(&format!(
                "  - {{ lcore: {}, port: lan, queue: {w} }}\n",
                w + 1
            ));
        }
        p.push_str("routes:\n  - { prefix: 0.0.0.0/0, via: 10.0.0.254 }\n  - { prefix: \"::/0\", via: \"fd00::fe\" }\n");
        p.push_str(&format!(
            "exception:\n  enabled: true\nmanagement:\n  socket: {}\nservices:\n{services}",
            socket.display()
        ));
        let path = self.dir.path(&format!("lab{}.yaml", unique("")));
        std::fs::write(&path, p).expect("write profile");
        (path, socket)
    }
}

impl Drop for Lab {
    fn drop(&mut self) {
        let _ = Command::new(root().join("scripts/lab.sh"))
            .args(["down", "--prefix", &self.prefix])
            .status();
    }
}

/// What `hits.py` saw.
#[derive(Debug, Clone)]
pub struct Hits {
    /// Answers per server name.
    pub servers: BTreeMap<String, u64>,
    /// Requests that failed.
    pub errors: u64,
    /// Answers per server name, per source address.
    pub by_source: BTreeMap<String, BTreeMap<String, u64>>,
}

/// `tackctl` on `socket`: the answer text, panicking on error.
pub fn tackctl(socket: &Path, cmd: &str) -> String {
    let out = Command::new(env!("CARGO_BIN_EXE_tackctl"))
        .arg("--socket")
        .arg(socket)
        .args(cmd.split_whitespace())
        .output()
        .expect("run tackctl");
    assert!(
        out.status.success(),
        "tackctl {cmd}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).to_string()
}
