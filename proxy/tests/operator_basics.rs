//! Operator basics with real peers: the PROXY protocol accepted from an L4
//! tier (HAProxy in TCP mode with `send-proxy-v2`, curl's
//! `--haproxy-protocol`) and sent to nginx (`listen ... proxy_protocol`), which
//! logs the client's address; a WebSocket echo through the proxy; backup
//! servers taking over when the primaries are down.

mod support;

use std::process::Command;
use std::time::Duration;

use support::nginx::{Nginx, free_port};
use support::*;

/// curl from a given loopback source address; extra arguments first.
async fn curl_from(src: &str, extra: &[&str], url: String) -> String {
    let mut args: Vec<String> = vec!["-sS".into(), "--interface".into(), src.into()];
    args.extend(extra.iter().map(|s| s.to_string()));
    args.push(url);
    run_cmd("curl", args).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nginx_logs_the_client_address_carried_by_the_proxy_protocol() {
    require_tool("curl");
    let (n1, n2) = (free_port(), free_port());
    let nginx = Nginx::start(
        &format!(
            "  log_format pp '$proxy_protocol_addr $remote_addr $request_uri';\n  \
             server {{ listen 127.0.0.1:{n1} proxy_protocol; access_log pp.log pp; \
             location / {{ return 200 \"nginx v1\\n\"; }} }}\n  \
             server {{ listen 127.0.0.1:{n2} proxy_protocol; access_log pp.log pp; \
             location / {{ return 200 \"nginx v2\\n\"; }} }}\n"
        ),
        &[
            format!("127.0.0.1:{n1}").parse().unwrap(),
            format!("127.0.0.1:{n2}").parse().unwrap(),
        ],
    );
    let yaml = format!(
        r#"
frontends:
  - name: l4
    bind: ["127.0.0.1:0"]
    accept_proxy: true
    backend: v1
    use_backend:
      - {{ backend: v2, path_prefix: /two }}
  - name: direct
    bind: ["127.0.0.1:0"]
    backend: v2
backends:
  - name: v1
    send_proxy: v1
    servers:
      - {{ name: n1, address: "127.0.0.1:{n1}" }}
  - name: v2
    servers:
      - {{ name: n2, address: "127.0.0.1:{n2}", send_proxy: v2 }}
"#
    );
    let proxy = start_proxy(&yaml).await;
    let l4 = proxy.local_addr("l4").unwrap();
    let direct = proxy.local_addr("direct").unwrap();
    // HAProxy in TCP mode stands in for an L4 tier that sends PROXY v2.
    let hp = free_port();
    let (_hp, _hd) = start_haproxy(
        &format!(
            "defaults\n  mode tcp\n  timeout connect 5s\n  timeout client 30s\n  timeout server 30s\n\
             frontend l4\n  bind 127.0.0.1:{hp}\n  default_backend tack\n\
             backend tack\n  server t {l4} send-proxy-v2\n"
        ),
        &[hp],
    )
    .await;
    let a = curl_from("127.0.0.5", &[], format!("http://127.0.0.1:{hp}/one")).await;
    assert_eq!(a, "nginx v1\n");
    let b = curl_from("127.0.0.5", &[], format!("http://127.0.0.1:{hp}/two")).await;
    assert_eq!(b, "nginx v2\n");
    // curl itself sends a PROXY v1 header.
    let c = curl_from(
        "127.0.0.6",
        &["--haproxy-protocol"],
        format!("http://{l4}/one-v1"),
    )
    .await;
    assert_eq!(c, "nginx v1\n");
    // Without a header on a frontend that wants one: refused and counted.
    let refused = Command::new("curl")
        .args(["-sS", "-m", "5", &format!("http://{l4}/none")])
        .output()
        .unwrap();
    assert!(!refused.status.success());
    // A frontend that does not accept the protocol: the connection's own address.
    let d = curl_from("127.0.0.7", &[], format!("http://{direct}/direct")).await;
    assert_eq!(d, "nginx v2\n");
    // The hyper path (HTTP/1.0 is handed to it) sends the header too.
    let e = curl_from("127.0.0.8", &["-0"], format!("http://{direct}/hyper")).await;
    assert_eq!(e, "nginx v2\n");
    let log = nginx.log("pp.log");
    let line = |uri: &str| {
        log.iter()
            .find(|l| l.ends_with(&format!(" {uri}")))
            .unwrap_or_else(|| panic!("no {uri} in nginx's log: {log:?}"))
            .clone()
    };
    assert_eq!(line("/one"), "127.0.0.5 127.0.0.1 /one");
    assert_eq!(line("/two"), "127.0.0.5 127.0.0.1 /two");
    assert_eq!(line("/one-v1"), "127.0.0.6 127.0.0.1 /one-v1");
    assert_eq!(line("/direct"), "127.0.0.7 127.0.0.1 /direct");
    assert_eq!(line("/hyper"), "127.0.0.8 127.0.0.1 /hyper");
    assert!(!log.iter().any(|l| l.ends_with(" /none")));
    let fe = proxy.frontend("l4").unwrap();
    assert!(
        fe.stats
            .conn_errors
            .load(std::sync::atomic::Ordering::Relaxed)
            >= 1
    );
    proxy.shutdown().await;
}

/// A WebSocket echo server (tokio-tungstenite) on loopback: echoes text and
/// binary messages, answers `whoami` with its name.
async fn ws_echo(name: &'static str) -> (std::net::SocketAddr, tokio::task::JoinHandle<()>) {
    use futures_util::{SinkExt, StreamExt};
    use tokio_tungstenite::tungstenite::Message;
    let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = l.local_addr().unwrap();
    let task = tokio::spawn(async move {
        let mut conns = tokio::task::JoinSet::new();
        loop {
            let Ok((s, _)) = l.accept().await else {
                continue;
            };
            conns.spawn(async move {
                let Ok(mut ws) = tokio_tungstenite::accept_async(s).await else {
                    return;
                };
                while let Some(Ok(m)) = ws.next().await {
                    let reply = match m {
                        Message::Text(t) if t.as_str() == "whoami" => Message::text(name),
                        Message::Text(_) | Message::Binary(_) => m,
                        Message::Close(_) => break,
                        _ => continue,
                    };
                    if ws.send(reply).await.is_err() {
                        break;
                    }
                }
            });
        }
    });
    (addr, task)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn websocket_echo_through_the_proxy() {
    use futures_util::{SinkExt, StreamExt};
    use tokio_tungstenite::tungstenite::Message;
    let (ws_addr, ws_task) = ws_echo("ws1").await;
    let http = TestServer::start("http1").await;
    let yaml = format!(
        r#"
frontends:
  - name: web
    bind: ["127.0.0.1:0"]
    backend: app
    use_backend:
      - {{ backend: ws, path_prefix: /ws }}
backends:
  - name: app
    servers: [{{ name: http1, address: "{}" }}]
  - name: ws
    servers: [{{ name: ws1, address: "{ws_addr}" }}]
"#,
        http.addr
    );
    let proxy = start_proxy(&yaml).await;
    let addr = proxy.local_addr("web").unwrap();
    // Plain HTTP on the same frontend still works.
    assert_eq!(get(addr, "/", &[]).await.body, "http1");
    let (mut ws, resp) = tokio_tungstenite::connect_async(format!("ws://{addr}/ws/chat"))
        .await
        .expect("websocket handshake through the proxy");
    assert_eq!(resp.status(), 101);
    ws.send(Message::text("whoami")).await.unwrap();
    assert_eq!(ws.next().await.unwrap().unwrap(), Message::text("ws1"));
    for i in 0..50 {
        let text = format!("message {i} {}", "x".repeat(i * 100));
        ws.send(Message::text(text.clone())).await.unwrap();
        assert_eq!(ws.next().await.unwrap().unwrap(), Message::text(text));
    }
    let big = vec![7u8; 300_000];
    ws.send(Message::binary(big.clone())).await.unwrap();
    assert_eq!(ws.next().await.unwrap().unwrap(), Message::binary(big));
    ws.close(None).await.unwrap();
    // The server's answer to the close ends the stream.
    while let Some(Ok(_)) = ws.next().await {}
    drop(ws);
    // The tunnel ends with both connections; its 101 is counted then.
    let ws_server = proxy.backend("ws").unwrap().servers[0].clone();
    let switched = || ws_server.stats.responses[0].load(std::sync::atomic::Ordering::Relaxed) == 1;
    assert!(wait_until(Duration::from_secs(5), switched).await);
    // An upgrade to a server that does not speak WebSocket: its refusal is passed on.
    let refused = tokio_tungstenite::connect_async(format!("ws://{addr}/plain")).await;
    match refused {
        Err(tokio_tungstenite::tungstenite::Error::Http(r)) => assert_eq!(r.status(), 200),
        other => panic!("expected the server's plain answer, got {other:?}"),
    }
    proxy.shutdown().await;
    ws_task.abort();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn backup_servers_take_over_when_the_primaries_are_down() {
    let p1 = TestServer::start("p1").await;
    let mut p2 = TestServer::start("p2").await;
    let b1 = TestServer::start("b1").await;
    let b2 = TestServer::start("b2").await;
    let yaml = format!(
        r#"
frontends:
  - name: web
    bind: ["127.0.0.1:0"]
    backend: app
backends:
  - name: app
    retries: 1
    health_check: {{ type: tcp, interval: 100ms, rise: 1, fall: 1 }}
    servers:
      - {{ name: p1, address: "{}" }}
      - {{ name: p2, address: "{}" }}
      - {{ name: b1, address: "{}", backup: true }}
      - {{ name: b2, address: "{}", backup: true }}
"#,
        p1.addr, p2.addr, b1.addr, b2.addr
    );
    let proxy = start_proxy(&yaml).await;
    let addr = proxy.local_addr("web").unwrap();
    let bodies = async |n: usize| {
        let mut v = Vec::new();
        for _ in 0..n {
            v.push(get(addr, "/", &[]).await.body);
        }
        v.sort();
        v.dedup();
        v
    };
    assert_eq!(
        bodies(8).await,
        ["p1", "p2"],
        "backups idle while primaries are up"
    );
    // A primary in maintenance: the other primary takes everything.
    let be = proxy.backend("app").unwrap();
    be.servers[0].set_admin_state(tack_proxy::config::AdminState::Maint);
    assert_eq!(bodies(6).await, ["p2"]);
    // The last primary dies: the health check takes it down, the backups take over
    // (round robin between them).
    p2.stop().await;
    assert!(wait_until(Duration::from_secs(5), || !be.servers[1].is_healthy()).await);
    assert_eq!(bodies(8).await, ["b1", "b2"]);
    // A primary back: the backups are idle again.
    be.servers[0].set_admin_state(tack_proxy::config::AdminState::Up);
    let before = (b1.seen().len(), b2.seen().len());
    assert_eq!(bodies(6).await, ["p1"]);
    assert_eq!((b1.seen().len(), b2.seen().len()), before);
    proxy.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http2_to_servers_with_prior_knowledge() {
    require_tool("curl");
    let n = free_port();
    let nginx = Nginx::start(
        &format!(
            "  log_format h2 '$server_protocol $connection $request_uri';\n  \
             server {{ listen 127.0.0.1:{n} http2; access_log h2.log h2; \
             location / {{ return 200 \"nginx $server_protocol\\n\"; }} }}\n"
        ),
        &[format!("127.0.0.1:{n}").parse().unwrap()],
    );
    let yaml = format!(
        r#"
frontends:
  - name: web
    bind: ["127.0.0.1:0"]
    backend: h2
backends:
  - name: h2
    http2: true
    servers:
      - {{ name: n, address: "127.0.0.1:{n}" }}
"#
    );
    let proxy = start_proxy(&yaml).await;
    let addr = proxy.local_addr("web").unwrap();
    // HTTP/1.1 clients (one connection, several requests, and separate ones).
    let mut args: Vec<String> = vec!["-sS".into()];
    for i in 0..3 {
        args.push(format!("http://{addr}/a{i}"));
    }
    assert_eq!(run_cmd("curl", args).await, "nginx HTTP/2.0\n".repeat(3));
    assert_eq!(get(addr, "/b", &[]).await.body, "nginx HTTP/2.0\n");
    let r = post(addr, "/c", 100_000).await;
    assert_eq!(r, "nginx HTTP/2.0\n");
    let log = nginx.log("h2.log");
    assert_eq!(log.len(), 5, "{log:?}");
    // Every request was a stream of one HTTP/2 connection.
    let conns: std::collections::BTreeSet<&str> =
        log.iter().map(|l| l.split(' ').nth(1).unwrap()).collect();
    assert_eq!(conns.len(), 1, "{log:?}");
    assert!(log.iter().all(|l| l.starts_with("HTTP/2.0 ")), "{log:?}");
    proxy.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http2_to_tls_servers_where_they_offer_it_by_alpn() {
    let pki = support::pki::Pki::new("h2 test CA");
    let c = pki.server("n", &["app.internal"], "n");
    let (h2, h1) = (free_port(), free_port());
    let server = |port: u16, http2: &str, name: &str| {
        format!(
            "  server {{ listen 127.0.0.1:{port} ssl{http2}; ssl_certificate {}; ssl_certificate_key {}; \
             access_log tls.log proto; location / {{ return 200 \"{name} $server_protocol\\n\"; }} }}\n",
            c.cert.display(),
            c.key.display()
        )
    };
    let nginx = Nginx::start(
        &format!(
            "  log_format proto '$server_port $server_protocol $connection $request_uri';\n{}{}",
            server(h2, " http2", "h2"),
            server(h1, "", "h1")
        ),
        &[
            format!("127.0.0.1:{h2}").parse().unwrap(),
            format!("127.0.0.1:{h1}").parse().unwrap(),
        ],
    );
    let yaml = format!(
        r#"
frontends:
  - name: web
    bind: ["127.0.0.1:0"]
    backend: app
    use_backend:
      - {{ backend: old, path_prefix: /old }}
backends:
  - name: app
    http2: true
    server_tls: {{ ca: "{ca}", sni: app.internal }}
    health_check: {{ type: http, interval: 100ms, rise: 1, fall: 1 }}
    servers:
      - {{ name: n2, address: "127.0.0.1:{h2}" }}
  - name: old
    http2: true
    server_tls: {{ ca: "{ca}", sni: app.internal }}
    servers:
      - {{ name: n1, address: "127.0.0.1:{h1}" }}
"#,
        ca = pki.ca.display()
    );
    let proxy = start_proxy(&yaml).await;
    let addr = proxy.local_addr("web").unwrap();
    for i in 0..4 {
        assert_eq!(
            get(addr, &format!("/new{i}"), &[]).await.body,
            "h2 HTTP/2.0\n"
        );
        assert_eq!(
            get(addr, &format!("/old{i}"), &[]).await.body,
            "h1 HTTP/1.1\n"
        );
    }
    // Health checks (HTTP/1.1 through a context of their own) keep the server up.
    tokio::time::sleep(Duration::from_millis(400)).await;
    assert!(proxy.backend("app").unwrap().servers[0].is_healthy());
    let log = nginx.log("tls.log");
    let streams: Vec<&String> = log.iter().filter(|l| l.contains(" /new")).collect();
    assert_eq!(streams.len(), 4, "{log:?}");
    assert!(streams.iter().all(|l| l.contains(" HTTP/2.0 ")), "{log:?}");
    let conns: std::collections::BTreeSet<&str> = streams
        .iter()
        .map(|l| l.split(' ').nth(2).unwrap())
        .collect();
    assert_eq!(conns.len(), 1, "one HTTP/2 connection: {log:?}");
    assert!(
        log.iter()
            .any(|l| l.contains(" HTTP/1.1 ") && l.ends_with(" /")),
        "health checks: {log:?}"
    );
    let old: Vec<&String> = log.iter().filter(|l| l.contains(" /old")).collect();
    assert_eq!(old.len(), 4);
    assert!(old.iter().all(|l| l.contains(" HTTP/1.1 ")), "{log:?}");
    proxy.shutdown().await;
}
