//! Operator basics with real peers: the PROXY protocol accepted from an L4
//! tier (HAProxy in TCP mode with `send-proxy-v2`, curl's
//! `--haproxy-protocol`) and sent to nginx (`listen ... proxy_protocol`), which
//! logs the client's address; a WebSocket echo through the proxy; backup
//! servers taking over when the primaries are down.

mod support;

use std::process::{Command, Stdio};
use std::time::Duration;

use support::nginx::{Nginx, free_port};
use support::*;

async fn start_haproxy(cfg: &str, port: u16) -> (ChildGuard, tempfile::TempDir) {
    require_tool("haproxy");
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("haproxy.cfg");
    std::fs::write(&path, cfg).unwrap();
    let child = Command::new("haproxy")
        .arg("-db")
        .arg("-f")
        .arg(&path)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("start haproxy");
    let guard = ChildGuard(child);
    let up = wait_until(Duration::from_secs(10), || {
        std::net::TcpStream::connect(("127.0.0.1", port)).is_ok()
    })
    .await;
    assert!(up, "haproxy did not listen on {port}");
    (guard, dir)
}

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
    // Tack's L4 tier stands in as HAProxy in TCP mode, sending PROXY v2.
    let hp = free_port();
    let (_hp, _hd) = start_haproxy(
        &format!(
            "defaults\n  mode tcp\n  timeout connect 5s\n  timeout client 30s\n  timeout server 30s\n\
             frontend l4\n  bind 127.0.0.1:{hp}\n  default_backend tack\n\
             backend tack\n  server t {l4} send-proxy-v2\n"
        ),
        hp,
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
