//! End to end in the lab: the exception path (the appliance's kernel
//! interface `tack-lan` in its namespace, reached through the DPDK port)
//! and the health checks that use it.

mod common;

use std::process::Child;
use std::time::{Duration, Instant};

use common::lab::{LAB_LOCK, Lab, root, tackctl};
use common::{Bg, Tack, counter};

/// A NAT service whose servers are checked over HTTP every 300 ms.
const CHECKED: &str = r#"  - name: web
    vip: 10.100.0.10
    port: 80
    mode: nat
    health: { check: http, path: /, interval_ms: 300, timeout_ms: 250, rise: 2, fall: 2 }
    servers:
      - { name: s1, address: 10.0.0.11 }
      - { name: s2, address: 10.0.0.12 }
      - { name: s3, address: 10.0.0.13 }
"#;

fn bg(lab: &Lab, n: &str, args: &[&str]) -> Bg {
    Bg(lab.spawn(n, args))
}

/// The value of `name` in `tackctl counters`: the workers' total (a
/// counter still at 0 is not listed), or the control line (`control: ...
/// exception_to_kernel N ...`).
fn live_counter(sock: &std::path::Path, name: &str) -> u64 {
    let text = tackctl(sock, "counters");
    if let Some(line) = text.lines().find(|l| l.starts_with("control:")) {
        let w: Vec<&str> = line.split_whitespace().collect();
        if let Some(i) = w.iter().position(|x| *x == name) {
            return w[i + 1].parse().expect("a count");
        }
    }
    counter(&text, name).unwrap_or(0)
}

#[test]
fn kernel_programs_reach_the_network_through_the_dpdk_port() {
    let _g = LAB_LOCK.lock().unwrap_or_else(|p| p.into_inner());
    let lab = Lab::up();
    let (profile, sock) = lab.profile(2, CHECKED);
    let tack = Tack::start(&lab.lb(), &profile);
    // The interface carries the port's addresses.
    let (ok, out, _) = lab.exec("lb", &["ip", "-br", "addr", "show", "dev", "tack-lan"]);
    assert!(
        ok && out.contains("10.0.0.1/24") && out.contains("fd00::1/64"),
        "{out}"
    );
    let from_before = live_counter(&sock, "from_host");
    // ping and curl from the appliance's namespace reach the servers.
    for (args, what) in [
        (&["ping", "-c", "2", "-W", "2", "10.0.0.11"][..], "ping"),
        (
            &["ping", "-6", "-c", "2", "-W", "2", "fd00::12"][..],
            "ping -6",
        ),
    ] {
        let (ok, out, err) = lab.exec("lb", args);
        assert!(ok, "{what}: {out}{err}");
        assert!(!out.contains("DUP"), "{what}: duplicate answers\n{out}");
    }
    let (ok, body, err) = lab.exec("lb", &["curl", "-sS", "-m", "5", "http://10.0.0.12/"]);
    assert!(ok, "curl: {err}");
    assert_eq!(
        body.split_whitespace().collect::<Vec<_>>(),
        ["s2", "10.0.0.1"]
    );
    // A listener on the appliance's own address, reached from a client.
    let _server = bg(
        &lab,
        "lb",
        &["python3", "-m", "http.server", "9000", "--bind", "10.0.0.1"],
    );
    let mut code = String::new();
    for _ in 0..50 {
        let (_, out, _) = lab.exec(
            "c1",
            &[
                "curl",
                "-s",
                "-m",
                "2",
                "-o",
                "/dev/null",
                "-w",
                "%{http_code}",
                "http://10.0.0.1:9000/",
            ],
        );
        code = out;
        if code == "200" {
            break;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    assert_eq!(
        code, "200",
        "a client reaches a listener on the appliance's address"
    );
    // Those frames crossed the DPDK port, both ways.
    let from = live_counter(&sock, "from_host") - from_before;
    let to = live_counter(&sock, "exception_to_kernel");
    assert!(from >= 10 && to >= 10, "from the kernel {from}, to it {to}");
    let report = tack.stop();
    assert_eq!(counter(&report, "drop_host_rate"), None, "{report}");
    assert!(report.contains("mbufs in use after stop: 0"), "{report}");
    // The interface went with the appliance.
    let (ok, _, _) = lab.exec("lb", &["ip", "link", "show", "tack-lan"]);
    assert!(!ok, "tack-lan removed at exit");
}

/// Stops or starts nginx on server `s` of the lab.
fn nginx(lab: &Lab, s: &str, start: bool) {
    let dir = format!("/run/tack-lab-{}/{s}", lab.prefix);
    let conf = format!("{dir}/nginx.conf");
    let mut args = vec!["nginx", "-c", &conf, "-p", &dir];
    if !start {
        args.extend(["-s", "stop"]);
    }
    let (ok, _, err) = lab.exec(s, &args);
    assert!(ok, "nginx {args:?}: {err}");
}

#[test]
fn health_checks_follow_a_server_and_hold_through_a_flood() {
    let _g = LAB_LOCK.lock().unwrap_or_else(|p| p.into_inner());
    let lab = Lab::up();
    let (profile, sock) = lab.profile(1, CHECKED);
    // A tight limit for the host's other traffic, so the flood shows it.
    let text = std::fs::read_to_string(&profile).expect("profile");
    let text = text.replace(
        "exception:\n  enabled: true\n",
        "exception:\n  enabled: true\n  rate: 500\n  burst: 50\n",
    );
    std::fs::write(&profile, text).expect("profile");
    let mut tack = Tack::start(&lab.lb(), &profile);
    let state = |server: &str| -> String {
        let t = tackctl(&sock, "services");
        let line = t
            .lines()
            .find(|l| l.split_whitespace().nth(4) == Some(server))
            .unwrap_or_else(|| panic!("{server} in\n{t}"))
            .to_string();
        line.split_whitespace().nth(6).unwrap_or("").to_string()
    };
    assert_eq!(state("s1"), "up");

    // nginx stops on s1: down within interval × fall + one interval.
    nginx(&lab, "s1", false);
    let t0 = Instant::now();
    let line = tack.wait_for_line("health: web/s1", Duration::from_secs(5));
    let took = t0.elapsed();
    assert!(line.contains(" down "), "{line}");
    assert!(
        took <= Duration::from_millis(300 * 2 + 300 + 600),
        "down after {took:?}"
    );
    assert_eq!(state("s1"), "up,failing");
    // New connections avoid it.
    let hits = lab.hits("c1", "http://10.100.0.10/", 30, &[]);
    assert_eq!(hits.errors, 0, "{hits:?}");
    assert!(!hits.servers.contains_key("s1"), "{hits:?}");
    // The checks were seen crossing the DPDK port.
    assert!(live_counter(&sock, "from_host") > 0);

    // Back after `rise` passes.
    nginx(&lab, "s1", true);
    let t0 = Instant::now();
    let line = tack.wait_for_line("health: web/s1 (10.0.0.11:80) up", Duration::from_secs(5));
    assert!(
        t0.elapsed() <= Duration::from_millis(300 * 2 + 300 + 600),
        "{line}"
    );
    assert_eq!(state("s1"), "up");
    let hits = lab.hits("c1", "http://10.100.0.10/", 30, &[]);
    assert!(hits.servers.contains_key("s1"), "{hits:?}");

    // A session standing in for BGP (TCP 179 to the appliance's address,
    // a keepalive every 100 ms) and a bounded flood of TCP SYNs and UDP at
    // the appliance's own address.
    let script = root().join("scripts/lab/tcp_session.py");
    let script = script.to_str().expect("utf-8");
    let mut serve = bg(
        &lab,
        "lb",
        &["python3", script, "serve", "10.0.0.1", "179", "30"],
    );
    {
        use std::io::{BufRead, BufReader};
        let out = serve.0.stdout.take().expect("piped");
        let mut line = String::new();
        BufReader::new(out).read_line(&mut line).expect("listening");
        assert_eq!(line.trim(), "listening");
    }
    let session = lab.spawn(
        "rtr",
        &["python3", script, "client", "10.0.0.1", "179", "8", "100"],
    );
    let flood_script = root().join("scripts/lab/synflood.py");
    let syn_flood = lab.spawn(
        "c2",
        &[
            "python3",
            flood_script.to_str().expect("utf-8"),
            "10.0.0.1",
            "22",
            "20000",
            "6",
        ],
    );
    let udp_flood = lab.spawn(
        "c3",
        &[
            "python3",
            "-c",
            "import socket,time\ns=socket.socket(socket.AF_INET,socket.SOCK_DGRAM)\nend=time.time()+6\nn=0\nwhile n<20000 and time.time()<end:\n  s.sendto(b'x'*64,('10.0.0.1',9999)); n+=1\nprint(n)",
        ],
    );
    for f in [syn_flood, udp_flood] {
        let out = f.wait_with_output_bounded();
        assert!(out > 1000, "the flood sent {out}");
    }
    let out = session.wait_with_output_bounded_json();
    assert_eq!(out["broken"], "", "the session broke: {out}");
    assert!(out["echoed"].as_u64().unwrap_or(0) >= 40, "{out}");
    // The checks held: no state change during the flood.
    let report = tack.stop();
    let changes = report
        .lines()
        .filter(|l| l.contains("tack: health:"))
        .count();
    assert_eq!(changes, 2, "only the down and up of s1:\n{report}");
    let limited = counter(&report, "drop_host_rate").unwrap_or(0);
    assert!(limited > 1000, "the rate limit dropped {limited}\n{report}");
    assert!(
        counter(&report, "host_control").unwrap_or(0) > 0,
        "{report}"
    );
}

/// Waiting on a lab helper with a deadline.
trait WaitBounded {
    /// Waits (at most 30 s) and parses stdout as a count.
    fn wait_with_output_bounded(self) -> u64;
    /// Waits (at most 30 s) and parses stdout as JSON.
    fn wait_with_output_bounded_json(self) -> serde_json::Value;
}

impl WaitBounded for Child {
    fn wait_with_output_bounded(self) -> u64 {
        let out = wait(self);
        out.trim()
            .parse()
            .unwrap_or_else(|e| panic!("{out:?}: {e}"))
    }

    fn wait_with_output_bounded_json(self) -> serde_json::Value {
        let out = wait(self);
        serde_json::from_str(out.trim()).unwrap_or_else(|e| panic!("{out:?}: {e}"))
    }
}

fn wait(mut c: Child) -> String {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        if c.try_wait().expect("wait").is_some() {
            break;
        }
        if Instant::now() > deadline {
            let _ = c.kill();
            panic!("a lab helper did not finish in 30 s");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let out = c.wait_with_output().expect("output");
    String::from_utf8_lossy(&out.stdout).to_string()
}

/// Passive health: a server that resets its clients' connections is taken
/// down by the resets alone (its active check would take 30 s), and its
/// active check brings it back.
#[test]
fn resets_take_a_server_down_and_its_check_brings_it_back() {
    let _g = LAB_LOCK.lock().unwrap_or_else(|p| p.into_inner());
    let lab = Lab::up();
    let services = r#"  - name: web
    vip: 10.100.0.10
    port: 80
    mode: nat
    scheduler: rr
    health: { check: tcp, interval_ms: 300, timeout_ms: 250, rise: 2, fall: 100, passive: 3 }
    servers:
      - { name: s1, address: 10.0.0.11 }
      - { name: s2, address: 10.0.0.12 }
      - { name: s3, address: 10.0.0.13 }
"#;
    let (profile, sock) = lab.profile(1, services);
    let mut tack = Tack::start(&lab.lb(), &profile);
    nginx(&lab, "s1", false);
    // Clients whose connections s1 resets (its port is closed).
    let t0 = Instant::now();
    for i in 0..12 {
        let _ = lab.exec(
            "c1",
            &[
                "curl",
                "-s",
                "-m",
                "1",
                "-o",
                "/dev/null",
                &format!("http://10.100.0.10/{i}"),
            ],
        );
    }
    let line = tack.wait_for_line("health: web/s1", Duration::from_secs(5));
    assert!(line.contains(" down (passive:"), "{line}");
    assert!(t0.elapsed() < Duration::from_secs(10));
    let hits = lab.hits("c1", "http://10.100.0.10/", 30, &[]);
    assert_eq!(hits.errors, 0, "{hits:?}");
    assert!(!hits.servers.contains_key("s1"), "{hits:?}");
    let m = tackctl(&sock, "metrics");
    let resets: u64 = m
        .lines()
        .find(|l| l.starts_with("tack_server_resets_total{") && l.contains("server=\"s1\""))
        .and_then(|l| l.rsplit(' ').next()?.parse().ok())
        .unwrap_or(0);
    assert!(resets >= 3, "{m}");
    // Back up once its port answers again.
    nginx(&lab, "s1", true);
    let line = tack.wait_for_line("health: web/s1 (10.0.0.11:80) up", Duration::from_secs(5));
    assert!(line.contains("(ok)"), "{line}");
    let report = tack.stop();
    assert!(report.contains("mbufs in use after stop: 0"), "{report}");
}
