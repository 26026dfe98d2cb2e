//! QoS (maxconn, priority classes, queue timeout, full queue) and health checks
//! (a killed server leaves rotation within interval × fall; its pinned clients are
//! redispatched with a new cookie; it comes back after `rise` good checks).

mod support;

use std::sync::Arc;
use std::time::{Duration, Instant};

use support::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn maxconn_queue_serves_high_class_first_and_times_out() {
    let slow = TestServer::start("slow").await;
    let yaml = format!(
        "frontends:\n  - name: web\n    bind: [\"127.0.0.1:0\"]\n    backend: app\n    access_log: false\n    priority_rules:\n      - {{ class: -10, header: {{ name: X-Tier, value: gold }} }}\n      - {{ class: 10, path_prefix: /bulk }}\n\
         \x20 - {{ name: tq, bind: [\"127.0.0.1:0\"], backend: tq, access_log: false }}\n\
         backends:\n  - name: app\n    timeouts: {{ queue: 10s }}\n    servers:\n      - {{ name: slow, address: \"{a}\", maxconn: 1 }}\n\
         \x20 - name: tq\n    timeouts: {{ queue: 300ms }}\n    servers:\n      - {{ name: slow, address: \"{a}\", maxconn: 1 }}\n",
        a = slow.addr
    );
    let proxy = Arc::new(start_proxy(&yaml).await);
    let addr = proxy.local_addr("web").unwrap();

    // The slot is taken by a slow request; then low and high class requests arrive
    // alternately and wait.
    let blocker = tokio::spawn(async move { get(addr, "/first?ms=600", &[]).await });
    let b = proxy.backend("app").unwrap().clone();
    assert!(
        wait_until(Duration::from_secs(5), || b.servers[0].slots.inflight()
            == 1)
        .await
    );
    let mut waiting = Vec::new();
    for (i, (path, gold)) in [
        ("/bulk/low1", false),
        ("/high1", true),
        ("/bulk/low2", false),
        ("/high2", true),
        ("/bulk/low3", false),
    ]
    .into_iter()
    .enumerate()
    {
        waiting.push(tokio::spawn(async move {
            let p = format!("{path}?ms=10");
            if gold {
                get(addr, &p, &[("x-tier", "gold")]).await
            } else {
                get(addr, &p, &[]).await
            }
        }));
        assert!(
            wait_until(Duration::from_secs(5), || b.servers[0].slots.queued()
                == i + 1)
            .await,
            "request {i} not queued"
        );
    }
    assert_eq!(blocker.await.unwrap().status, 200);
    for w in waiting {
        assert_eq!(w.await.unwrap().status, 200);
    }
    let order: Vec<String> = slow
        .seen()
        .iter()
        .map(|s| s.uri.split('?').next().unwrap().to_string())
        .collect();
    assert_eq!(
        order,
        [
            "/first",
            "/high1",
            "/high2",
            "/bulk/low1",
            "/bulk/low2",
            "/bulk/low3"
        ]
    );

    // Queue timeout: with the slot held for a second, a request queued for 300 ms gets 503.
    let tq = proxy.local_addr("tq").unwrap();
    let hold = tokio::spawn(async move { get(tq, "/hold?ms=1000", &[]).await });
    let bt = proxy.backend("tq").unwrap().clone();
    assert!(
        wait_until(Duration::from_secs(5), || bt.servers[0].slots.inflight()
            == 1)
        .await
    );
    let t0 = Instant::now();
    let r = get(tq, "/late", &[]).await;
    assert_eq!(r.status, 503);
    let waited = t0.elapsed();
    assert!(
        waited >= Duration::from_millis(280) && waited < Duration::from_millis(3000),
        "{waited:?}"
    );
    assert_eq!(hold.await.unwrap().status, 200);
    assert_eq!(
        bt.servers[0]
            .slots
            .timeouts
            .load(std::sync::atomic::Ordering::Relaxed),
        1
    );
    assert!(!slow.seen().iter().any(|s| s.uri == "/late"));
    Arc::try_unwrap(proxy).unwrap().shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn full_queue_redispatches_pinned_client() {
    let s1 = TestServer::start("s1").await;
    let s2 = TestServer::start("s2").await;
    let yaml = format!(
        "frontends:\n  - {{ name: web, bind: [\"127.0.0.1:0\"], backend: app, access_log: false }}\nbackends:\n  - name: app\n    cookie: {{ name: SRV, mode: insert }}\n    servers:\n      - {{ name: s1, address: \"{}\", maxconn: 1, maxqueue: 1 }}\n      - {{ name: s2, address: \"{}\" }}\n",
        s1.addr, s2.addr
    );
    let proxy = start_proxy(&yaml).await;
    let addr = proxy.local_addr("web").unwrap();
    let b = proxy.backend("app").unwrap().clone();
    let busy = tokio::spawn(async move { get(addr, "/a?ms=800", &[("cookie", "SRV=s1")]).await });
    assert!(
        wait_until(Duration::from_secs(5), || b.servers[0].slots.inflight()
            == 1)
        .await
    );
    let queued = tokio::spawn(async move { get(addr, "/b?ms=10", &[("cookie", "SRV=s1")]).await });
    assert!(wait_until(Duration::from_secs(5), || b.servers[0].slots.queued() == 1).await);
    // s1's queue is full: this pinned request goes to s2 and gets s2's cookie.
    let r = get(addr, "/c", &[("cookie", "SRV=s1")]).await;
    assert_eq!(r.body, "s2");
    assert_eq!(r.all("set-cookie"), vec!["SRV=s2; path=/"]);
    assert_eq!(busy.await.unwrap().body, "s1");
    assert_eq!(queued.await.unwrap().body, "s1");
    assert_eq!(
        b.stats
            .redispatches
            .load(std::sync::atomic::Ordering::Relaxed),
        1
    );
    proxy.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killed_server_leaves_rotation_and_pinned_clients_move() {
    require_tool("/usr/bin/python3");
    let mut servers = [
        TestServer::start("s1").await,
        TestServer::start("s2").await,
        TestServer::start("s3").await,
    ];
    let yaml = format!(
        "frontends:\n  - {{ name: web, bind: [\"127.0.0.1:0\"], backend: app, access_log: false }}\nbackends:\n  - name: app\n    cookie: {{ name: SERVERID, mode: insert, indirect: true }}\n    health_check: {{ type: http, path: /health, expect_status: 200, interval: 200ms, rise: 2, fall: 2 }}\n    servers:\n{}",
        servers
            .iter()
            .map(|s| format!("      - {{ name: {}, address: \"{}\" }}\n", s.name, s.addr))
            .collect::<String>()
    );
    let proxy = start_proxy(&yaml).await;
    let addr = proxy.local_addr("web").unwrap();
    let b = proxy.backend("app").unwrap().clone();
    // Let the checks run a little: every server is up.
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(b.servers.iter().all(|s| s.is_healthy()));
    assert!(
        servers
            .iter()
            .all(|s| s.seen().iter().any(|r| r.uri == "/health"))
    );

    // A Python requests.Session pinned to s2 keeps working across the kill.
    let url = format!("http://{addr}/page");
    let script = format!(
        r#"
import requests, sys, time
s = requests.Session()
s.cookies.set("SERVERID", "s2", domain="127.0.0.1", path="/")
before = [s.get("{url}").text for _ in range(5)]
print(" ".join(before)); sys.stdout.flush()
sys.stdin.readline()  # the test kills s2 now
r = s.get("{url}")
print(r.status_code, r.text, r.headers.get("Set-Cookie"), ",".join(c.value for c in s.cookies if c.name == "SERVERID"))
after = [s.get("{url}").text for _ in range(5)]
print(" ".join(after))
"#
    );
    let mut child = std::process::Command::new("/usr/bin/python3")
        .arg("-c")
        .arg(script)
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdin = child.stdin.take().unwrap();
    let stdout = child.stdout.take().unwrap();
    let guard = ChildGuard(child);
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
    std::thread::spawn(move || {
        use std::io::BufRead;
        for line in std::io::BufReader::new(stdout)
            .lines()
            .map_while(Result::ok)
        {
            let _ = tx.send(line);
        }
    });
    let line = tokio::time::timeout(Duration::from_secs(20), rx.recv())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(line, "s2 s2 s2 s2 s2");

    // Kill s2 and time how long the checks take to notice.
    servers[1].stop().await;
    let t0 = Instant::now();
    let bw = b.clone();
    let watcher = tokio::spawn(async move {
        while bw.servers[1].is_healthy() {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        t0.elapsed()
    });
    {
        use std::io::Write;
        writeln!(stdin).unwrap();
    }
    let line = tokio::time::timeout(Duration::from_secs(20), rx.recv())
        .await
        .unwrap()
        .unwrap();
    let parts: Vec<&str> = line.split_whitespace().collect();
    assert_eq!(parts[0], "200", "{line}");
    assert_ne!(parts[1], "s2", "{line}");
    assert!(
        parts[2].starts_with(&format!("SERVERID={};", parts[1])),
        "a new cookie: {line}"
    );
    assert_eq!(
        parts.last().unwrap(),
        &parts[1],
        "the session now holds the new cookie: {line}"
    );
    let line = tokio::time::timeout(Duration::from_secs(20), rx.recv())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        line,
        [parts[1]; 5].join(" "),
        "the client stays on its new server"
    );
    drop(guard);

    let detect = tokio::time::timeout(Duration::from_secs(3), watcher)
        .await
        .expect("s2 never marked down")
        .unwrap();
    eprintln!("s2 marked down {detect:?} after it was killed (interval 200 ms × fall 2)");
    // interval 200 ms × fall 2 = 400 ms, plus scheduling slack on a busy machine.
    assert!(
        detect <= Duration::from_millis(400 + 600),
        "down after {detect:?}"
    );
    // Load-balanced traffic avoids it now.
    for _ in 0..9 {
        assert_ne!(get(addr, "/lb", &[]).await.body, "s2");
    }
    // Restart s2 on its port: after `rise` good checks it is back in rotation.
    let a2 = servers[1].addr;
    servers[1] = TestServer::start_on("s2", a2).await;
    assert!(
        wait_until(Duration::from_secs(3), || b.servers[1].is_healthy()).await,
        "s2 did not come back"
    );
    let mut back = false;
    for _ in 0..6 {
        back |= get(addr, "/lb", &[]).await.body == "s2";
    }
    assert!(back, "s2 back in rotation");
    assert!(
        proxy
            .render_metrics()
            .contains("tack_proxy_server_downs_total{backend=\"app\",server=\"s2\"} 1")
    );
    proxy.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tcp_checks_take_a_dead_server_out_and_back() {
    let mut s1 = TestServer::start("s1").await;
    let s2 = TestServer::start("s2").await;
    let yaml = format!(
        "frontends:\n  - {{ name: web, bind: [\"127.0.0.1:0\"], backend: app, access_log: false }}\nbackends:\n  - name: app\n    health_check: {{ type: tcp, interval: 100ms, rise: 1, fall: 1 }}\n    servers:\n      - {{ name: s1, address: \"{}\" }}\n      - {{ name: s2, address: \"{}\" }}\n",
        s1.addr, s2.addr
    );
    let proxy = start_proxy(&yaml).await;
    let b = proxy.backend("app").unwrap().clone();
    s1.stop().await;
    assert!(wait_until(Duration::from_secs(2), || !b.servers[0].is_healthy()).await);
    let addr = proxy.local_addr("web").unwrap();
    for _ in 0..4 {
        assert_eq!(get(addr, "/", &[]).await.body, "s2");
    }
    let a1 = s1.addr;
    let _s1 = TestServer::start_on("s1", a1).await;
    assert!(wait_until(Duration::from_secs(2), || b.servers[0].is_healthy()).await);
    assert!(
        b.servers[0]
            .stats
            .check_failures
            .load(std::sync::atomic::Ordering::Relaxed)
            >= 1
    );
    proxy.shutdown().await;
}
