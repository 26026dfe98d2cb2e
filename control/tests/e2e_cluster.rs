//! End to end: a cluster of three `tack` nodes behind a router that
//! spreads the VIP over them by ECMP, learnt from the nodes over BGP with
//! BFD (BIRD 2 on the router and on each node, through the node's
//! exception path), or reached through the scheduler the nodes elect with
//! VRRP (keepalived on each node, through the exception path). Long-lived
//! keep-alive connections through direct server return and through full
//! NAT survive the death of a node (`kill -9`), of the scheduler, a silent
//! node, a link going down, a drain, a restart and a join.

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
/// A full-NAT VIP: each node connects to the servers from its own local
/// address, 10.0.0.(30 + node).
const FNAT_VIP: &str = "10.100.0.32";
/// A full-NAT VIP with netmask persistence (255.0.0.0).
const MASK_VIP: &str = "10.100.0.33";
/// Keep-alive connections per VIP (DSR and full NAT).
const CONNS: usize = 150;

/// How clients reach the nodes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Entry {
    /// The router spreads them (BGP, ECMP).
    Ecmp,
    /// The elected scheduler owns the VIPs (VRRP).
    Scheduler,
}

/// Node `i`'s profile (1-based): one worker, the exception path, the
/// cluster, and DSR and full-NAT services balanced round robin (so that
/// only the synchronised state keeps a connection's server on another
/// node). Its management socket is `/run/tack-lab-P/nI.sock`
/// (`scripts/lab/vrrp.sh` calls it there).
fn node_profile(
    lab: &Lab,
    dir: &TempDir,
    i: usize,
    total: usize,
    key: &Path,
    entry: Entry,
) -> (std::path::PathBuf, std::path::PathBuf) {
    let socket = lab.state_dir(&format!("n{i}.sock"));
    let nodes: String = (1..=total)
        .map(|n| {
            format!(
                "    - {{ id: {n}, address: 10.0.0.{}, local_addresses: [10.0.0.{}] }}\n",
                1 + n,
                30 + n
            )
        })
        .collect();
    let entry = match entry {
        Entry::Ecmp => "ecmp",
        Entry::Scheduler => "scheduler",
    };
    let p = format!(
        "eal:\n  hugepages: false\n  lcores: \"(0,1)@(0,1)\"\nruntime:\n  idle: backoff\nmempool:\n  mbufs: 4095\n  cache: 64\n\
         ports:\n  - name: lan\n    device: net_af_packet0,iface=lb0\n    addresses: [10.0.0.{addr}/24]\n\
         workers:\n  - {{ lcore: 1, port: lan, queue: 0 }}\n\
         routes:\n  - {{ prefix: 0.0.0.0/0, via: 10.0.0.254 }}\n\
         exception:\n  enabled: true\n\
         cluster:\n  node: {i}\n  entry: {entry}\n  nodes:\n{nodes}  key_file: {key}\n  notify: /run/tack-lab-{prefix}/notify-n{i}.sh\n\
         management:\n  socket: {sock}\n\
         services:\n  - name: web-dsr\n    vip: {VIP}\n    port: 80\n    mode: dsr\n    scheduler: rr\n    servers:\n      - {{ name: s1, address: 10.0.0.11 }}\n      - {{ name: s2, address: 10.0.0.12 }}\n      - {{ name: s3, address: 10.0.0.13 }}\n  - name: sticky-dsr\n    vip: {STICKY_VIP}\n    port: 80\n    mode: dsr\n    scheduler: rr\n    persistence: {{ timeout: 5, natural_class: true }}\n    servers:\n      - {{ name: s1, address: 10.0.0.11 }}\n      - {{ name: s2, address: 10.0.0.12 }}\n      - {{ name: s3, address: 10.0.0.13 }}\n  - name: web-fnat\n    vip: {FNAT_VIP}\n    port: 80\n    mode: fullnat\n    scheduler: rr\n    local_addresses: [10.0.0.{local}]\n    servers:\n      - {{ name: s1, address: 10.0.0.11 }}\n      - {{ name: s2, address: 10.0.0.12 }}\n      - {{ name: s3, address: 10.0.0.13 }}\n  - name: sticky-fnat\n    vip: {MASK_VIP}\n    port: 80\n    mode: fullnat\n    scheduler: rr\n    local_addresses: [10.0.0.{local}]\n    persistence: {{ timeout: 5, netmask: 255.0.0.0 }}\n    servers:\n      - {{ name: s1, address: 10.0.0.11 }}\n      - {{ name: s2, address: 10.0.0.12 }}\n      - {{ name: s3, address: 10.0.0.13 }}\n",
        addr = 1 + i,
        local = 30 + i,
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

/// Waits until the router has an ECMP route to each VIP over `n` nodes.
fn wait_for_paths(lab: &Lab, n: usize, timeout: Duration) {
    let deadline = Instant::now() + timeout;
    for vip in [VIP, STICKY_VIP, FNAT_VIP, MASK_VIP] {
        loop {
            let (_, out, _) = lab.exec("rtr", &["ip", "route", "show", vip]);
            if out.matches("nexthop via").count() == n {
                break;
            }
            assert!(
                Instant::now() < deadline,
                "the router has no {n} paths to {vip}: {out}"
            );
            std::thread::sleep(Duration::from_millis(200));
        }
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
        let (profile, sock) = node_profile(&lab, &dir, i, total, &key, Entry::Ecmp);
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
            FNAT_VIP,
            MASK_VIP,
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
                        l.starts_with("drop_")
                            || l.starts_with("cluster")
                            || l.starts_with("conn_")
                            || l.starts_with("control")
                    })
                    .collect();
                r.push_str(&format!(
                    "node {}:\n{}\nconnections: {}{}\n",
                    i + 1,
                    lines.join("\n"),
                    tackctl(sock, "connections count"),
                    tackctl(sock, "cluster")
                ));
            }
        }
        r
    };
    // Sticky clients: two addresses of one class A network (natural
    // class, DSR) and of one /8 (netmask, full NAT).
    let sticky_urls = [
        format!("http://{STICKY_VIP}/"),
        format!("http://{MASK_VIP}/"),
    ];
    let sources = ["11.1.2.3", "11.200.0.1"];
    let before: Vec<_> = sticky_urls
        .iter()
        .map(|url| lab.hits("c1", url, 20, &sources))
        .collect();
    for b in &before {
        assert_eq!(b.errors, 0, "{b:?}\n{}", report(&nodes));
        assert_eq!(b.servers.len(), 1, "one server for the network: {b:?}");
    }

    let mut first = clients.ask(&format!("open {CONNS} http://{VIP}/"));
    first.extend(clients.ask(&format!("open {CONNS} http://{FNAT_VIP}/")));
    assert_eq!(first.len(), 2 * CONNS);
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
        "{event:?}: longest round of {} requests {longest:?} (event {since:?} before the end)",
        2 * CONNS
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
    for (url, b) in sticky_urls.iter().zip(&before) {
        let after = lab.hits("c1", url, 20, &sources);
        assert_eq!(after.errors, 0, "{url}: {after:?}");
        assert_eq!(
            after.servers.keys().collect::<Vec<_>>(),
            b.servers.keys().collect::<Vec<_>>(),
            "{url}"
        );
    }
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
    if matches!(event, Event::Kill | Event::Silent | Event::LinkDown) {
        // One survivor answers for node 1's local address, whose
        // connections it holds.
        let claimed: Vec<String> = nodes
            .iter()
            .skip(1)
            .map(|(_, sock)| tackctl(sock, "cluster"))
            .filter(|c| c.contains("local addresses: 10.0.0.31"))
            .collect();
        assert_eq!(claimed.len(), 1, "{claimed:?}");
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

/// Waits until every running node of `nodes` counts `n` live nodes.
fn wait_live(nodes: &[(Option<Tack>, std::path::PathBuf)], n: usize, timeout: Duration) {
    let deadline = Instant::now() + timeout;
    for (t, sock) in nodes {
        if t.is_none() {
            continue;
        }
        loop {
            let c = tackctl(sock, "cluster");
            if c.matches(" live ").count() == n {
                break;
            }
            assert!(Instant::now() < deadline, "not {n} live nodes:\n{c}");
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}

/// Waits until one of the running nodes says it is the active scheduler,
/// and the others that they stand by; returns its index in `nodes`.
fn wait_scheduler(
    lab: &Lab,
    nodes: &[(Option<Tack>, std::path::PathBuf)],
    timeout: Duration,
) -> usize {
    let deadline = Instant::now() + timeout;
    loop {
        let roles: Vec<(usize, String)> = nodes
            .iter()
            .enumerate()
            .filter(|(_, (t, _))| t.is_some())
            .map(|(i, (_, sock))| (i, tackctl(sock, "cluster")))
            .collect();
        let active: Vec<usize> = roles
            .iter()
            .filter(|(_, c)| c.contains("scheduler: active"))
            .map(|(i, _)| *i)
            .collect();
        let standby = roles
            .iter()
            .filter(|(_, c)| c.contains("scheduler: standby"))
            .count();
        if active.len() == 1 && standby == roles.len() - 1 {
            return active[0];
        }
        let c: String = roles.iter().map(|(_, c)| c.as_str()).collect();
        assert!(
            Instant::now() < deadline,
            "not the active scheduler:\n{c}\n{}",
            (1..=NODES)
                .map(|i| {
                    let log = lab.state_dir(&format!("vrrp-n{i}.log"));
                    format!(
                        "keepalived on n{i}:\n{}",
                        std::fs::read_to_string(log).unwrap_or_default()
                    )
                })
                .collect::<String>()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// The elected scheduler (seed 001 claims 1-4): the three nodes elect one
/// with VRRP (keepalived on each, through the exception path); it alone
/// answers ARP for the VIPs, and schedules each flow to a node (itself
/// included), which sends it to a server; with full NAT the server's
/// answer goes back to that node, which sends it straight to the client.
/// `kill -9` of the scheduler: another node is elected, announces the VIPs
/// (gratuitous ARP, seen by the client on the segment), and every
/// connection goes on — those the dead node held too, their local address
/// taken over by a survivor.
#[test]
fn a_new_scheduler_is_elected_and_takes_the_vips_when_the_active_one_dies() {
    let _g = LAB_LOCK.lock().unwrap_or_else(|p| p.into_inner());
    let lab = Lab::up_with_nodes(NODES);
    let dir = TempDir::new();
    let key = dir.path("cluster.key");
    std::fs::write(&key, "00112233445566778899aabbccddeeff0123456789abcdef\n").expect("key");
    let mut nodes: Vec<(Option<Tack>, std::path::PathBuf)> = (1..=NODES)
        .map(|i| {
            let (profile, sock) = node_profile(&lab, &dir, i, NODES, &key, Entry::Scheduler);
            let ns = Netns::existing(&lab.ns(&format!("n{i}")));
            (Some(Tack::start(&ns, &profile)), sock)
        })
        .collect();
    wait_live(&nodes, NODES, Duration::from_secs(20));
    let vrrp = root().join("scripts/lab/vrrp.sh");
    let tackctl_bin = common::tack_bin().with_file_name("tackctl");
    let up = Command::new(&vrrp)
        .args(["up", "--prefix", &lab.prefix, "--nodes", &NODES.to_string()])
        .arg("--tackctl")
        .arg(&tackctl_bin)
        .output()
        .expect("vrrp.sh");
    assert!(
        up.status.success(),
        "{}",
        String::from_utf8_lossy(&up.stderr)
    );
    // One node is elected (without preemption, the first whose timer
    // runs out, not always the highest priority). Two nodes whose timers
    // ran out together are both masters until each hears the other's
    // advertisement, and one steps back: the election has settled when the
    // same node is the only active one a second apart (ten adverts).
    let deadline = Instant::now() + Duration::from_secs(15);
    let old = loop {
        let a = wait_scheduler(&lab, &nodes, Duration::from_secs(15));
        std::thread::sleep(Duration::from_secs(1));
        let b = wait_scheduler(&lab, &nodes, Duration::from_secs(5));
        if a == b {
            break b;
        }
        assert!(Instant::now() < deadline, "the election does not settle");
    };
    // The client beside the nodes watches the ARP traffic.
    let mut arp = lab.spawn(
        "c0",
        &["tcpdump", "-l", "-n", "-e", "-tt", "-i", "eth0", "arp"],
    );
    std::thread::sleep(Duration::from_millis(500));
    let mut clients = Clients::start(&lab, "c0");
    let mut first = clients.ask(&format!("open {CONNS} http://{FNAT_VIP}/"));
    first.extend(clients.ask(&format!("open {CONNS} http://{VIP}/")));
    assert_eq!(first.len(), 2 * CONNS);
    assert!(first.iter().all(|s| s.starts_with('s')), "{first:?}");
    // The scheduler spread the flows over the nodes, itself included.
    for (i, (_, sock)) in nodes.iter().enumerate() {
        let created = common::counter(&tackctl(sock, "counters"), "conn_created").unwrap_or(0);
        assert!(created > 0, "node {} opened no connection", i + 1);
    }
    let mut longest = Duration::ZERO;
    let mut killed = None;
    for round in 0..30 {
        let t0 = Instant::now();
        let answers = clients.ask("again");
        longest = longest.max(t0.elapsed());
        assert_eq!(
            answers,
            first,
            "round {round}, {:?} after the scheduler died",
            killed.map(|(t, _): (Instant, f64)| t.elapsed())
        );
        if round == 8 {
            let tack = nodes[old].0.take().expect("running");
            let pid = tack.pid().to_string();
            let at = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .expect("clock")
                .as_secs_f64();
            Command::new("kill")
                .args(["-9", &pid])
                .status()
                .expect("kill");
            drop(tack);
            killed = Some((Instant::now(), at));
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    let (_, killed_at) = killed.expect("killed");
    // Another node was elected and announced the VIPs.
    let new = wait_scheduler(&lab, &nodes, Duration::from_secs(5));
    let (_, link, _) = lab.exec(
        &format!("n{}", new + 1),
        &["cat", "/sys/class/net/lb0/address"],
    );
    let new_mac = link.trim().to_string();
    let _ = arp.kill();
    let mut dump = String::new();
    if let Some(mut out) = arp.stdout.take() {
        use std::io::Read;
        let _ = out.read_to_string(&mut dump);
    }
    let _ = arp.wait();
    let announced = dump
        .lines()
        .filter(|l| {
            l.contains(&new_mac) && l.contains(&format!("who-has {FNAT_VIP} tell {FNAT_VIP}"))
        })
        .filter_map(|l| l.split_whitespace().next()?.parse::<f64>().ok())
        .find(|t| *t > killed_at);
    let announced = announced
        .unwrap_or_else(|| panic!("no gratuitous ARP for {FNAT_VIP} from {new_mac}:\n{dump}"));
    let takeover = announced - killed_at;
    println!(
        "scheduler node {} killed: node {} announced the VIPs {:.0} ms later; longest round of {} requests {longest:?}",
        old + 1,
        new + 1,
        takeover * 1000.0,
        2 * CONNS
    );
    assert!(takeover < 3.0, "the VIPs moved after {takeover:.2} s");
    // One survivor answers for the dead node's local address.
    let dead_local = format!("local addresses: 10.0.0.{}", 31 + old);
    let claimed = nodes
        .iter()
        .filter(|(t, sock)| t.is_some() && tackctl(sock, "cluster").contains(&dead_local))
        .count();
    assert_eq!(claimed, 1);
    // New connections go on through the new scheduler.
    for url in [format!("http://{FNAT_VIP}/"), format!("http://{VIP}/")] {
        let hits = lab.hits("c0", &url, 30, &[]);
        assert_eq!(hits.errors, 0, "{url}: {hits:?}");
    }
    drop(clients);
    let _ = Command::new(&vrrp)
        .args(["down", "--prefix", &lab.prefix])
        .status();
    for (t, _) in nodes.iter_mut() {
        if let Some(t) = t.take() {
            t.stop();
        }
    }
}
