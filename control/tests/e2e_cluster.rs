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
/// A DSR VIP with natural-class persistence.
const STICKY_VIP: &str = "10.100.0.22";

/// Node `i`'s profile (1-based): one worker, the exception path, the
/// cluster, and a DSR service balanced round robin (so that only the
/// synchronised state keeps a connection's server on another node).
fn node_profile(
    lab: &Lab,
    dir: &TempDir,
    i: usize,
    total: usize,
    key: &Path,
) -> (std::path::PathBuf, std::path::PathBuf) {
    let socket = dir.path(&format!("n{i}.sock"));
    let nodes: String = (1..=total)
        .map(|n| format!("    - {{ id: {n}, address: 10.0.0.{} }}\n", 1 + n))
        .collect();
    let p = format!(
        "eal:\n  hugepages: false\n  lcores: \"(0,1)@(0,1)\"\nruntime:\n  idle: backoff\nmempool:\n  mbufs: 4095\n  cache: 64\n\
         ports:\n  - name: lan\n    device: net_af_packet0,iface=lb0\n    addresses: [10.0.0.{addr}/24]\n\
         workers:\n  - {{ lcore: 1, port: lan, queue: 0 }}\n\
         routes:\n  - {{ prefix: 0.0.0.0/0, via: 10.0.0.254 }}\n\
         exception:\n  enabled: true\n\
         cluster:\n  node: {i}\n  nodes:\n{nodes}  key_file: {key}\n  notify: /run/tack-lab-{prefix}/notify-n{i}.sh\n\
         management:\n  socket: {sock}\n\
         services:\n  - name: web-dsr\n    vip: {VIP}\n    port: 80\n    mode: dsr\n    scheduler: rr\n    servers:\n      - {{ name: s1, address: 10.0.0.11 }}\n      - {{ name: s2, address: 10.0.0.12 }}\n      - {{ name: s3, address: 10.0.0.13 }}\n  - name: sticky-dsr\n    vip: {STICKY_VIP}\n    port: 80\n    mode: dsr\n    scheduler: rr\n    persistence: {{ timeout: 5, natural_class: true }}\n    servers:\n      - {{ name: s1, address: 10.0.0.11 }}\n      - {{ name: s2, address: 10.0.0.12 }}\n      - {{ name: s3, address: 10.0.0.13 }}\n",
        addr = 1 + i,
        key = key.display(),
        prefix = lab.prefix,
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

/// How a node fails, or joins.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Event {
    /// `kill -9` of its appliance.
    Kill,
    /// Its link drops everything, both ways, and says nothing.
    Silent,
    /// Its link goes down.
    LinkDown,
    /// A node that was not running starts.
    Join,
    /// A node drains (`tackctl cluster drain`): it takes no new flows and
    /// keeps its own.
    Drain,
    /// A node is killed, then started again: the others hand it the state
    /// it needs before it takes new flows.
    Rejoin,
}

/// Three nodes serve long-lived keep-alive connections (and sticky
/// clients); node 1 fails as `event` says (or node 4 joins) in the middle:
/// no connection breaks, sticky clients keep their server, new
/// connections are served.
fn cluster_through(event: Event) {
    let _g = LAB_LOCK.lock().unwrap_or_else(|p| p.into_inner());
    let total = if event == Event::Join {
        NODES + 1
    } else {
        NODES
    };
    let lab = Lab::up_with_nodes(total);
    let dir = TempDir::new();
    let key = dir.path("cluster.key");
    std::fs::write(&key, "00112233445566778899aabbccddeeff0123456789abcdef\n").expect("key");
    let start = |i: usize| {
        let (profile, sock) = node_profile(&lab, &dir, i, total, &key);
        let ns = Netns::existing(&lab.ns(&format!("n{i}")));
        (Some(Tack::start(&ns, &profile)), sock)
    };
    let mut nodes: Vec<(Option<Tack>, std::path::PathBuf)> = (1..=NODES).map(start).collect();
    let bgp = root().join("scripts/lab/bgp.sh");
    let out = Command::new(&bgp)
        .args([
            "up",
            "--prefix",
            &lab.prefix,
            "--nodes",
            &total.to_string(),
            VIP,
            STICKY_VIP,
        ])
        .output()
        .expect("bgp.sh");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    wait_for_paths(&lab, NODES, Duration::from_secs(30));
    for (_, sock) in &nodes {
        let t = tackctl(sock, "cluster");
        assert_eq!(t.matches(" live ").count(), NODES, "{t}");
    }
    // Sticky clients: two addresses of one class A network.
    let sticky_url = format!("http://{STICKY_VIP}/");
    let sources = ["11.1.2.3", "11.200.0.1"];
    let before = lab.hits("c1", &sticky_url, 20, &sources);
    assert_eq!(before.errors, 0, "{before:?}");
    assert_eq!(
        before.servers.len(),
        1,
        "one server for the class: {before:?}"
    );

    // Long-lived keep-alive connections, spread over the nodes by the router.
    let mut clients = Clients::start(&lab, "c1");
    // What every running node counted, for a failure's message.
    let report = |nodes: &[(Option<Tack>, std::path::PathBuf)]| -> String {
        let mut r = String::new();
        for (i, (t, sock)) in nodes.iter().enumerate() {
            if t.is_some() {
                let c = tackctl(sock, "counters");
                let lines: Vec<&str> = c
                    .lines()
                    .filter(|l| {
                        l.starts_with("drop_") || l.starts_with("cluster") || l.starts_with("conn_")
                    })
                    .collect();
                r.push_str(&format!(
                    "node {}:\n{}\n{}\n",
                    i + 1,
                    lines.join("\n"),
                    tackctl(sock, "cluster")
                ));
            }
        }
        r
    };
    let first = clients.ask(&format!("open 100 http://{VIP}/"));
    assert_eq!(first.len(), 100);
    assert!(
        first.iter().all(|s| s.starts_with('s')),
        "{first:?}\n{}",
        report(&nodes)
    );
    let mut longest = Duration::ZERO;
    let mut at = None;
    let mut drained_at: Option<(u64, u64)> = None;
    for round in 0..40 {
        let t0 = Instant::now();
        let answers = clients.ask("again");
        longest = longest.max(t0.elapsed());
        if answers != first {
            panic!(
                "round {round} ({event:?}), {:?} after the event: not every connection on its server\n{answers:?}\n{first:?}\n{}",
                at.map(|t: Instant| t.elapsed()),
                report(&nodes)
            );
        }
        if round == 20 && event == Event::Rejoin {
            nodes[0] = start(1);
        }
        if round == 8 {
            let sw = |args: &[&str]| {
                let (ok, _, err) = lab.exec("sw", args);
                assert!(ok, "{args:?}: {err}");
            };
            match event {
                Event::Kill | Event::Rejoin => {
                    let tack = nodes[0].0.take().expect("running");
                    let pid = tack.pid().to_string();
                    Command::new("kill")
                        .args(["-9", &pid])
                        .status()
                        .expect("kill");
                    drop(tack);
                }
                Event::Silent => {
                    // Everything to and from the node is lost on the
                    // segment, silently (the lab's kernel has no netem:
                    // the bridge drops the frames).
                    sw(&["nft", "add table bridge silence"]);
                    sw(&[
                        "nft",
                        "add chain bridge silence through { type filter hook forward priority 0; policy accept; }",
                    ]);
                    sw(&["nft", "add rule bridge silence through iifname p-n1 drop"]);
                    sw(&["nft", "add rule bridge silence through oifname p-n1 drop"]);
                }
                Event::LinkDown => sw(&["ip", "link", "set", "p-n1", "down"]),
                Event::Join => nodes.push(start(NODES + 1)),
                Event::Drain => {
                    let out = tackctl(&nodes[0].1, "cluster drain");
                    assert!(out.contains("drain requested"), "{out}");
                    drained_at = Some(counters_of(&nodes[0].1));
                }
            }
            at = Some(Instant::now());
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    let since = at.expect("the event happened").elapsed();
    println!(
        "{event:?}: longest round of 100 requests {longest:?} (event {since:?} before the end)"
    );
    let live_after = match event {
        Event::Join => NODES + 1,
        Event::Rejoin => NODES,
        _ => NODES - 1,
    };
    // A restarted node's BGP session comes back within a few seconds (BIRD
    // retries every second).
    wait_for_paths(&lab, live_after, Duration::from_secs(15));
    for (t, sock) in nodes.iter().skip(1) {
        if t.is_some() {
            let c = tackctl(sock, "cluster");
            assert_eq!(c.matches(" live ").count(), live_after, "{c}");
        }
    }
    // Sticky clients keep their server; new connections go on.
    let after = lab.hits("c1", &sticky_url, 20, &sources);
    assert_eq!(after.errors, 0, "{after:?}");
    assert_eq!(
        after.servers.keys().collect::<Vec<_>>(),
        before.servers.keys().collect::<Vec<_>>()
    );
    let hits = lab.hits("c2", &format!("http://{VIP}/"), 40, &[]);
    assert_eq!(hits.errors, 0, "{hits:?}");
    if let Some((created, received)) = drained_at {
        // The draining node opened nothing new, and its own flows still
        // came to it (from the other nodes, once the router withdrew it).
        let (created_now, received_now) = counters_of(&nodes[0].1);
        assert_eq!(created_now, created, "a draining node opens no flow");
        assert!(received_now > received, "its flows still reach it");
        let c = tackctl(&nodes[0].1, "cluster");
        assert!(c.contains("1      10.0.0.2         draining"), "{c}");
    }
    if event == Event::Rejoin {
        let c = tackctl(&nodes[0].1, "cluster");
        assert!(
            records_received(&c) >= 20,
            "the restarted node was handed its flows\n{c}"
        );
    }
    if event == Event::Join {
        // The others handed node 4 the connections it now ranks among the
        // top two for (about half of the 100) and the sticky bindings.
        let c = tackctl(&nodes[NODES].1, "cluster");
        let received = records_received(&c);
        assert!(received >= 20, "node 4 received {received} records\n{c}");
        // New flows reach the new node.
        let c = tackctl(&nodes[NODES].1, "counters");
        let created = common::counter(&c, "conn_created").unwrap_or(0);
        assert!(created > 0, "node 4 opened no connection\n{c}");
    }
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

/// The `records_received` counter in `tackctl cluster`'s answer.
fn records_received(cluster: &str) -> u64 {
    cluster
        .split_whitespace()
        .skip_while(|w| *w != "records_received")
        .nth(1)
        .and_then(|v| v.parse().ok())
        .unwrap_or(0)
}

/// (connections created, packets received from other nodes) of a node.
fn counters_of(sock: &Path) -> (u64, u64) {
    let c = tackctl(sock, "counters");
    (
        common::counter(&c, "conn_created").unwrap_or(0),
        common::counter(&c, "cluster_received").unwrap_or(0),
    )
}

#[test]
fn a_draining_node_keeps_its_flows_and_takes_no_new_ones() {
    cluster_through(Event::Drain);
}

#[test]
fn a_node_killed_and_started_again_is_handed_its_flows() {
    cluster_through(Event::Rejoin);
}

#[test]
fn dsr_connections_survive_kill_9_of_a_node() {
    cluster_through(Event::Kill);
}

#[test]
fn dsr_connections_survive_a_silent_node() {
    cluster_through(Event::Silent);
}

#[test]
fn dsr_connections_survive_a_node_whose_link_goes_down() {
    cluster_through(Event::LinkDown);
}

#[test]
fn a_joining_node_breaks_nothing_and_takes_new_flows() {
    cluster_through(Event::Join);
}
