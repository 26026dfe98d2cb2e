//! Bad input gets a clear answer and a counter, never a crash; drain and
//! maintenance states; server errors map to 502/503.

mod support;

use std::io::{Read, Write};
use std::sync::atomic::Ordering;
use std::time::Duration;

use support::*;
use tack_proxy::config::AdminState;

fn raw(addr: std::net::SocketAddr, bytes: &[u8]) -> String {
    let mut s = std::net::TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    s.write_all(bytes).unwrap();
    let mut out = Vec::new();
    let _ = s.read_to_end(&mut out);
    String::from_utf8_lossy(&out).to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_requests_are_refused_and_counted() {
    let s1 = TestServer::start("s1").await;
    let yaml = format!(
        "frontends:\n  - {{ name: web, bind: [\"127.0.0.1:0\"], backend: app, access_log: false, keepalive_timeout: 500ms }}\nbackends:\n  - name: app\n    servers:\n      - {{ name: s1, address: \"{}\" }}\n      - {{ name: dead, address: \"127.0.0.1:1\", weight: 0 }}\n",
        s1.addr
    );
    let proxy = start_proxy(&yaml).await;
    let addr = proxy.local_addr("web").unwrap();
    let cases: [&[u8]; 4] = [
        b"G(T / HTTP/1.1\r\nHost: x\r\n\r\n",
        b"GET /\x01\x02 HTTP/1.1\r\nHost: x\r\n\r\n",
        b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03garbage-tls-hello\r\n\r\n",
        b"GET / HTTP/1.1\r\nHost: x\r\nBad Header\r\n\r\n",
    ];
    for c in cases {
        let out = tokio::task::spawn_blocking(move || raw(addr, c))
            .await
            .unwrap();
        assert!(out.is_empty() || out.starts_with("HTTP/1.1 400"), "{out:?}");
    }
    let out = tokio::task::spawn_blocking(move || {
        raw(
            addr,
            b"CONNECT example.com:443 HTTP/1.1\r\nHost: example.com:443\r\n\r\n",
        )
    })
    .await
    .unwrap();
    assert!(out.starts_with("HTTP/1.1 405"), "{out}");
    let fe = proxy.frontend("web").unwrap();
    assert!(
        wait_until(Duration::from_secs(2), || fe
            .stats
            .conn_errors
            .load(Ordering::Relaxed)
            >= 4)
        .await
    );
    assert_eq!(fe.stats.errors.load(Ordering::Relaxed), 1);
    // Still serving.
    assert_eq!(get(addr, "/", &[]).await.body, "s1");
    // A pinned server that refuses connections: retried, then redispatched.
    let r = get(addr, "/", &[]).await;
    assert_eq!(r.status, 200);
    proxy.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn drain_keeps_pinned_clients_and_maint_takes_nothing() {
    let s1 = TestServer::start("s1").await;
    let s2 = TestServer::start("s2").await;
    let yaml = format!(
        "frontends:\n  - {{ name: web, bind: [\"127.0.0.1:0\"], backend: app, access_log: false }}\nbackends:\n  - name: app\n    redispatch: false\n    retries: 1\n    cookie: {{ name: SRV, mode: insert }}\n    servers:\n      - {{ name: s1, address: \"{}\" }}\n      - {{ name: s2, address: \"{}\" }}\n",
        s1.addr, s2.addr
    );
    let proxy = start_proxy(&yaml).await;
    let addr = proxy.local_addr("web").unwrap();
    let b = proxy.backend("app").unwrap();
    b.server_by_name("s2")
        .unwrap()
        .set_admin_state(AdminState::Drain);
    // New clients all go to s1; the client pinned to s2 stays there.
    for _ in 0..6 {
        assert_eq!(get(addr, "/", &[]).await.body, "s1");
        let r = get(addr, "/", &[("cookie", "SRV=s2")]).await;
        assert_eq!(r.body, "s2");
        assert!(r.all("set-cookie").is_empty());
    }
    // Maintenance: pinned clients move too, with a new cookie.
    b.server_by_name("s2")
        .unwrap()
        .set_admin_state(AdminState::Maint);
    let r = get(addr, "/", &[("cookie", "SRV=s2")]).await;
    assert_eq!(r.body, "s1");
    assert_eq!(r.all("set-cookie"), vec!["SRV=s1; path=/"]);
    // Nothing usable: 503 with HAProxy's wording, counted.
    b.server_by_name("s1")
        .unwrap()
        .set_admin_state(AdminState::Maint);
    let r = get(addr, "/", &[]).await;
    assert_eq!(r.status, 503);
    assert!(r.body.contains("No server is available"), "{}", r.body);
    assert_eq!(b.stats.no_server.load(Ordering::Relaxed), 1);
    // A server that refuses connections without redispatch: 503 after the retries.
    b.server_by_name("s1")
        .unwrap()
        .set_admin_state(AdminState::Up);
    let mut s1 = s1;
    s1.stop().await;
    let r = get(addr, "/", &[]).await;
    assert_eq!(r.status, 503);
    assert_eq!(b.stats.retries.load(Ordering::Relaxed), 1);
    proxy.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idle_server_connections_are_reused_and_reaped_when_closed() {
    let mut s1 = TestServer::start("s1").await;
    let yaml = format!(
        "frontends:\n  - {{ name: web, bind: [\"127.0.0.1:0\"], backend: app, access_log: false }}\nbackends:\n  - name: app\n    timeouts: {{ pool_idle: 2s }}\n    servers:\n      - {{ name: s1, address: \"{}\" }}\n",
        s1.addr
    );
    let proxy = start_proxy(&yaml).await;
    let addr = proxy.local_addr("web").unwrap();
    let pool = proxy
        .frontend("web")
        .unwrap()
        .upstream()
        .pool(0, false)
        .clone();
    for _ in 0..5 {
        assert_eq!(get(addr, "/", &[]).await.body, "s1");
        // The connection goes back to the pool once the proxy has seen the
        // response end, which may be just after the client has: wait for it,
        // so that the next request can only reuse it or open another.
        assert!(wait_until(Duration::from_millis(1000), || pool.idle_count() >= 1).await);
    }
    assert_eq!(
        pool.idle_count(),
        1,
        "sequential requests reuse one server connection"
    );
    // The server goes away: its idle connection is noticed closed and dropped
    // (well before the 2 s idle limit).
    s1.stop().await;
    assert!(wait_until(Duration::from_millis(1500), || pool.idle_count() == 0).await);
    proxy.shutdown().await;
}
