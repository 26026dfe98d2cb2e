//! End to end: a cluster of three `tack` nodes behind a router that
//! spreads the VIP over them by ECMP, learnt from the nodes over BGP with
//! BFD (BIRD 2 on the router and on each node, through the node's
//! exception path). Long-lived keep-alive connections through direct
//! server return survive the death of a node (`kill -9`).

mod common;

use std::io::{BufRead, BufReader, Write};
use std::path::Path;
use std::process::{Child, ChildStdin, ChildStdout, Command, Stdio};
use std::time::{Duration, Instant};

use common::lab::{LAB_LOCK, Lab, root, tackctl};
use common::{Netns, Tack, TempDir};

const NODES: usize = 3;
const VIP: &str = "10.100.0.12";

/// Node `i`'s profile (1-based): one worker, the exception path, the
/// cluster, and a DSR service balanced round robin (so that only the
/// synchronised state keeps a connection's server on another node).
fn node_profile(dir: &TempDir, i: usize, key: &Path) -> (std::path::PathBuf, std::path::PathBuf) {
    let socket = dir.path(&format!("n{i}.sock"));
    let nodes: String = (1..=NODES)
        .map(|n| format!("    - {{ id: {n}, address: 10.0.0.{} }}\n", 1 + n))
        .collect();
    let p = format!(
        "eal:\n  hugepages: false\n  lcores: \"(0,1)@(0,1)\"\nruntime:\n  idle: backoff\nmempool:\n  mbufs: 4095\n  cache: 64\n\
         ports:\n  - name: lan\n    device: net_af_packet0,iface=lb0\n    addresses: [10.0.0.{addr}/24]\n\
         workers:\n  - {{ lcore: 1, port: lan, queue: 0 }}\n\
         routes:\n  - {{ prefix: 0.0.0.0/0, via: 10.0.0.254 }}\n\
         exception:\n  enabled: true\n\
         cluster:\n  node: {i}\n  nodes:\n{nodes}  key_file: {key}\n\
         management:\n  socket: {sock}\n\
         services:\n  - name: web-dsr\n    vip: {VIP}\n    port: 80\n    mode: dsr\n    scheduler: rr\n    servers:\n      - {{ name: s1, address: 10.0.0.11 }}\n      - {{ name: s2, address: 10.0.0.12 }}\n      - {{ name: s3, address: 10.0.0.13 }}\n",
        addr = 1 + i,
        key = key.display(),
        sock = socket.display(),
    );
    let path = dir.path(&format!("n{i}.yaml"));
    std::fs::write(&path, p).expect("write profile");
    (path, socket)
}

/// `keepalive.py` in a client namespace.
struct Clients {
    child: Child,
    stdin: ChildStdin,
    stdout: BufReader<ChildStdout>,
}

impl Clients {
    fn start(lab: &Lab, ns: &str) -> Clients {
        let script = root().join("scripts/lab/keepalive.py");
        let mut child = Command::new("ip")
            .args(["netns", "exec", &lab.ns(ns), "python3"])
            .arg(script)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .expect("keepalive.py");
        let stdin = child.stdin.take().expect("piped");
        let stdout = BufReader::new(child.stdout.take().expect("piped"));
        Clients {
            child,
            stdin,
            stdout,
        }
    }

    fn ask(&mut self, line: &str) -> Vec<String> {
        writeln!(self.stdin, "{line}").expect("to keepalive.py");
        let mut answer = String::new();
        self.stdout
            .read_line(&mut answer)
            .expect("from keepalive.py");
        answer.split_whitespace().map(str::to_string).collect()
    }
}

impl Drop for Clients {
    fn drop(&mut self) {
        let _ = writeln!(self.stdin, "quit");
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Waits until the router has an ECMP route to the VIP over `n` nodes.
fn wait_for_paths(lab: &Lab, n: usize, timeout: Duration) -> String {
    let deadline = Instant::now() + timeout;
    loop {
        let (_, out, _) = lab.exec("rtr", &["ip", "route", "show", VIP]);
        if out.matches("nexthop via").count() == n {
            return out;
        }
        assert!(
            Instant::now() < deadline,
            "the router has no {n} paths to {VIP}: {out}"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
}

#[test]
fn dsr_connections_survive_the_death_of_a_node() {
    let _g = LAB_LOCK.lock().unwrap_or_else(|p| p.into_inner());
    let lab = Lab::up_with_nodes(NODES);
    let dir = TempDir::new();
    let key = dir.path("cluster.key");
    std::fs::write(&key, "00112233445566778899aabbccddeeff0123456789abcdef\n").expect("key");
    let mut nodes: Vec<(Option<Tack>, std::path::PathBuf)> = (1..=NODES)
        .map(|i| {
            let (profile, sock) = node_profile(&dir, i, &key);
            let ns = Netns::existing(&lab.ns(&format!("n{i}")));
            (Some(Tack::start(&ns, &profile)), sock)
        })
        .collect();
    let bgp = root().join("scripts/lab/bgp.sh");
    let out = Command::new(&bgp)
        .args([
            "up",
            "--prefix",
            &lab.prefix,
            "--nodes",
            &NODES.to_string(),
            VIP,
        ])
        .output()
        .expect("bgp.sh");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    wait_for_paths(&lab, NODES, Duration::from_secs(30));
    // Every node sees the others.
    for (_, sock) in &nodes {
        let t = tackctl(sock, "cluster");
        assert_eq!(t.matches(" live ").count(), NODES, "{t}");
    }

    // Long-lived keep-alive connections, spread over the nodes by the router.
    let mut clients = Clients::start(&lab, "c1");
    let first = clients.ask(&format!("open 60 http://{VIP}/"));
    assert_eq!(first.len(), 60);
    assert!(first.iter().all(|s| s.starts_with('s')), "{first:?}");
    let mut longest = Duration::ZERO;
    let mut killed_at = None;
    for round in 0..40 {
        let t0 = Instant::now();
        let answers = clients.ask("again");
        longest = longest.max(t0.elapsed());
        assert_eq!(
            answers, first,
            "round {round}: every connection on its server"
        );
        if round == 8 {
            // Node 1 dies at once.
            let tack = nodes[0].0.take().expect("running");
            let pid = tack.pid().to_string();
            Command::new("kill")
                .args(["-9", &pid])
                .status()
                .expect("kill");
            drop(tack);
            killed_at = Some(Instant::now());
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    let since_kill = killed_at.expect("killed").elapsed();
    println!(
        "longest round of 60 requests: {longest:?} (node killed {since_kill:?} before the end)"
    );
    // The router dropped the dead node, the others dropped it too.
    wait_for_paths(&lab, NODES - 1, Duration::from_secs(5));
    for (_, sock) in nodes.iter().skip(1) {
        let t = tackctl(sock, "cluster");
        assert!(t.contains("1      10.0.0.2         down"), "{t}");
    }
    // New connections go on.
    let hits = lab.hits("c2", &format!("http://{VIP}/"), 30, &[]);
    assert_eq!(hits.errors, 0, "{hits:?}");
    drop(clients);
    let _ = Command::new(&bgp)
        .args(["down", "--prefix", &lab.prefix])
        .status();
    for (t, _) in nodes.iter_mut() {
        if let Some(t) = t.take() {
            t.stop();
        }
    }
}
