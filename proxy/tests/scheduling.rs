//! Per-request scheduling and persistence tables over kept-alive connections:
//! session IDs learnt from the server, URL hashing (consistent), hash groups,
//! redirect persistence, HTTP/2 (h2c) clients, metrics.

mod support;

use std::collections::HashMap;
use std::time::Duration;

use support::*;

fn servers_yaml(servers: &[TestServer], extra: &str) -> String {
    let mut s = String::from("    servers:\n");
    for srv in servers {
        s.push_str(&format!(
            "      - {{ name: {}, address: \"{}\"{extra} }}\n",
            srv.name, srv.addr
        ));
    }
    s
}

async fn start_servers(n: usize) -> Vec<TestServer> {
    let mut v = Vec::new();
    for i in 1..=n {
        v.push(TestServer::start(&format!("s{i}")).await);
    }
    v
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn session_id_is_learnt_matched_and_expires() {
    let servers = start_servers(3).await;
    let yaml = format!(
        "frontends:\n  - {{ name: web, bind: [\"127.0.0.1:0\"], backend: app, access_log: false }}\nbackends:\n  - name: app\n    session_id: {{ cookie: JSESSIONID, url_param: jsessionid, table_size: 1000, expire: 600ms }}\n{}",
        servers_yaml(&servers, "")
    );
    let proxy = start_proxy(&yaml).await;
    let addr = proxy.local_addr("web").unwrap();
    // The server sets the session ID on login; it is learnt with that server.
    let login = get(addr, "/login?sid=ABC123", &[]).await;
    let owner = login.body.clone();
    assert_eq!(login.all("set-cookie"), vec!["JSESSIONID=ABC123; Path=/"]);
    // Round robin would spread these; the session ID keeps them on the owner,
    // whether it comes as a cookie or as a URL (path or query) parameter.
    for i in 0..12 {
        let r = match i % 3 {
            0 => get(addr, "/cart", &[("cookie", "JSESSIONID=ABC123")]).await,
            1 => get(addr, "/cart;jsessionid=ABC123", &[]).await,
            _ => get(addr, "/cart?x=1&jsessionid=ABC123", &[]).await,
        };
        assert_eq!(r.body, owner, "request {i}");
    }
    // A request with an unknown ID is load balanced and binds the ID to its server.
    let first = get(addr, "/x", &[("cookie", "JSESSIONID=NEW1")]).await.body;
    for _ in 0..5 {
        assert_eq!(
            get(addr, "/y", &[("cookie", "JSESSIONID=NEW1")]).await.body,
            first
        );
    }
    let b = proxy.backend("app").unwrap();
    let t = b.sessions.as_ref().unwrap();
    assert!(t.stats.hits.load(std::sync::atomic::Ordering::Relaxed) >= 17);
    // After the idle expiry the entry is gone: requests are load balanced again
    // (so over several tries they reach other servers).
    tokio::time::sleep(Duration::from_millis(700)).await;
    let mut seen = HashMap::new();
    for _ in 0..3 {
        // each lookup after expiry misses, then the response re-binds it; expire it again
        let r = get(addr, "/after", &[("cookie", "JSESSIONID=ABC123")]).await;
        *seen.entry(r.body).or_insert(0) += 1;
        tokio::time::sleep(Duration::from_millis(700)).await;
    }
    assert!(t.stats.expired.load(std::sync::atomic::Ordering::Relaxed) >= 3);
    assert!(
        seen.len() >= 2,
        "after expiry requests were load balanced again: {seen:?}"
    );
    proxy.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn url_hash_is_stable_and_moves_a_quarter_when_one_of_four_leaves() {
    let servers = start_servers(4).await;
    let yaml = format!(
        "frontends:\n  - {{ name: web, bind: [\"127.0.0.1:0\"], backend: app, access_log: false }}\nbackends:\n  - name: app\n    balance: {{ algorithm: uri }}\n    hash_type: consistent\n{}",
        servers_yaml(&servers, "")
    );
    let proxy = start_proxy(&yaml).await;
    let addr = proxy.local_addr("web").unwrap();
    let paths: Vec<String> = (0..400).map(|i| format!("/objects/{i}.jpg")).collect();
    let mut before = Vec::new();
    for p in &paths {
        before.push(get(addr, p, &[]).await.body);
    }
    // same path, same server (query strings are not part of the key by default)
    for p in paths.iter().take(50) {
        let i = paths.iter().position(|x| x == p).unwrap();
        assert_eq!(get(addr, &format!("{p}?v=2"), &[]).await.body, before[i]);
    }
    let counts = before.iter().fold(HashMap::new(), |mut m, s| {
        *m.entry(s.clone()).or_insert(0) += 1;
        m
    });
    assert_eq!(counts.len(), 4, "{counts:?}");
    // Take s3 out of rotation (maintenance): only its paths move.
    let b = proxy.backend("app").unwrap();
    b.server_by_name("s3")
        .unwrap()
        .set_admin_state(tack_proxy::config::AdminState::Maint);
    let mut moved = 0;
    for (i, p) in paths.iter().enumerate() {
        let now = get(addr, p, &[]).await.body;
        if now != before[i] {
            assert_eq!(before[i], "s3", "{p} moved from {} to {now}", before[i]);
            moved += 1;
        }
    }
    assert_eq!(moved, counts["s3"]);
    assert!((50..=150).contains(&moved), "{moved} of 400 paths moved");
    proxy.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hash_groups_pin_clients_in_a_fixed_table() {
    let servers = start_servers(3).await;
    let yaml = format!(
        "frontends:\n  - {{ name: web, bind: [\"127.0.0.1:0\"], backend: app, access_log: false }}\nbackends:\n  - name: app\n    hash_groups: {{ key: \"hdr(X-Client)\", groups: 64 }}\n{}",
        servers_yaml(&servers, "")
    );
    let proxy = start_proxy(&yaml).await;
    let addr = proxy.local_addr("web").unwrap();
    let mut first = HashMap::new();
    for c in 0..300 {
        let id = format!("client-{c}");
        let r = get(addr, "/", &[("x-client", &id)]).await;
        first.insert(id, r.body);
    }
    for c in (0..300).step_by(7) {
        let id = format!("client-{c}");
        assert_eq!(
            get(addr, "/again", &[("x-client", &id)]).await.body,
            first[&id]
        );
    }
    let per_server = first.values().fold(HashMap::new(), |mut m, s| {
        *m.entry(s.clone()).or_insert(0) += 1;
        m
    });
    assert_eq!(per_server.len(), 3, "{per_server:?}");
    let b = proxy.backend("app").unwrap();
    let g = b.groups.as_ref().unwrap();
    assert_eq!(g.len(), 64, "the table does not grow with clients");
    assert!((1..=64).contains(&g.distribution(3).iter().sum::<usize>()));
    // A pinned server that goes down: its groups are re-pinned to live servers.
    b.server_by_name("s1").unwrap().set_healthy(false);
    for c in 0..60 {
        let id = format!("client-{c}");
        let r = get(addr, "/", &[("x-client", &id)]).await;
        assert_ne!(r.body, "s1");
        if first[&id] != "s1" {
            assert_eq!(
                r.body, first[&id],
                "clients of live servers keep their server"
            );
        }
    }
    proxy.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redirect_persistence_h2c_and_metrics() {
    require_tool("curl");
    let servers = start_servers(2).await;
    let yaml = format!(
        "frontends:\n  - {{ name: web, bind: [\"127.0.0.1:0\"], backend: app, access_log: true }}\n  - {{ name: redir, bind: [\"127.0.0.1:0\"], backend: redir, access_log: false }}\nmetrics: {{ listen: \"127.0.0.1:0\" }}\nbackends:\n  - name: app\n    balance: {{ algorithm: leastconn }}\n{}  - name: redir\n    servers:\n      - {{ name: r1, address: \"{}\", redir: \"http://r1.example.test\" }}\n",
        servers_yaml(&servers, ""),
        servers[0].addr
    );
    let proxy = start_proxy(&yaml).await;
    // Redirect persistence: GET/HEAD get 302 to the server's prefix plus the path.
    let raddr = proxy.local_addr("redir").unwrap();
    let r = get(raddr, "/shop/item?id=7", &[]).await;
    assert_eq!(r.status, 302);
    assert_eq!(
        r.all("location"),
        vec!["http://r1.example.test/shop/item?id=7"]
    );
    // HTTP/2 with prior knowledge (h2load: one connection, 6 concurrent streams);
    // each request is scheduled on its own, so both servers get some.
    // (curl 7.88 fails re-using an h2c prior-knowledge connection with any server,
    // HAProxy included, so h2load is the h2 client here.)
    require_tool("h2load");
    let addr = proxy.local_addr("web").unwrap();
    let out = run_cmd(
        "h2load",
        vec![
            "-n".into(),
            "6".into(),
            "-c".into(),
            "1".into(),
            "-m".into(),
            "6".into(),
            format!("http://{addr}/h2"),
        ],
    )
    .await;
    assert!(out.contains("6 succeeded"), "{out}");
    assert!(out.contains("status codes: 6 2xx"), "{out}");
    for s in &servers {
        assert!(
            s.seen().iter().any(|r| r.uri == "/h2"),
            "{} got no h2 request: {out}",
            s.name
        );
    }
    // Prometheus endpoint.
    let m = get(proxy.metrics_addr().unwrap(), "/metrics", &[]).await;
    assert_eq!(m.status, 200);
    assert!(
        m.body
            .contains("tack_proxy_frontend_requests_total{frontend=\"web\"} 6"),
        "{}",
        m.body
    );
    assert!(
        m.body
            .contains("tack_proxy_server_redirects_total{backend=\"redir\",server=\"r1\"} 1"),
        "{}",
        m.body
    );
    assert!(m.body.contains("# TYPE tack_proxy_queue_current gauge"));
    proxy.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn large_bodies_stream_both_ways_on_reused_connections() {
    let servers = start_servers(1).await;
    let yaml = format!(
        "frontends:\n  - {{ name: web, bind: [\"127.0.0.1:0\"], backend: app, access_log: false }}\nbackends:\n  - name: app\n{}",
        servers_yaml(&servers, ", maxconn: 2")
    );
    let proxy = start_proxy(&yaml).await;
    let addr = proxy.local_addr("web").unwrap();
    // Downloads and uploads of a few MB, several in a row and some at once, over
    // the pooled server connections.
    for round in 0..3 {
        let big = get(addr, "/dl?big=3000000", &[]).await;
        assert_eq!(big.body.len(), 3_000_000, "round {round}");
        assert_eq!(post(addr, "/up", 2_000_000).await, "s1 got 2000000");
    }
    let mut tasks = Vec::new();
    for i in 0..6 {
        tasks.push(tokio::spawn(async move {
            if i % 2 == 0 {
                get(addr, "/dl?big=1000000", &[]).await.body.len()
            } else {
                post(addr, "/up", 1_000_000).await.len()
            }
        }));
    }
    for t in tasks {
        assert!(t.await.unwrap() > 0);
    }
    // Every slot was given back and the pool kept its connections.
    let b = proxy.backend("app").unwrap();
    assert!(
        wait_until(Duration::from_secs(2), || b.servers[0].slots.inflight()
            == 0)
        .await
    );
    assert!(get(addr, "/after", &[]).await.status == 200);
    proxy.shutdown().await;
}
