//! SSL contexts to servers: tack-proxy re-encrypts to real nginx TLS servers
//! through a pool of connections it keeps established per server. While
//! thousands of requests flow, the servers see only the pool's handshakes
//! (counted in nginx's access log by connection serial and
//! `$ssl_session_reused`, and in the proxy's metrics); the name sent (SNI) is
//! the configured one; certificates are verified against the CA, refused
//! under another CA, and accepted when verification is explicitly off.

mod support;

use std::collections::{HashMap, HashSet};
use std::net::SocketAddr;
use std::time::Duration;

use support::nginx::{Nginx, free_port};
use support::pki::Pki;
use support::*;

/// Two nginx TLS servers (`n1`, `n2`) that answer with their name and the SNI
/// they received; access log: `port connection reused protocol`; a plain
/// status port (`stub_status`) as the third address.
fn tls_servers(pki: &Pki) -> (Nginx, [SocketAddr; 3]) {
    let c1 = pki.server("n1", &["n1.internal", "app.internal"], "n1");
    let c2 = pki.server("n2", &["n2.internal", "app.internal"], "n2");
    let addrs: [SocketAddr; 3] = [
        format!("127.0.0.1:{}", free_port()).parse().unwrap(),
        format!("127.0.0.1:{}", free_port()).parse().unwrap(),
        format!("127.0.0.1:{}", free_port()).parse().unwrap(),
    ];
    let mut http = String::from(
        "  log_format tls '$server_port $connection $ssl_session_reused $ssl_protocol';\n",
    );
    for (i, (a, c)) in addrs.iter().zip([&c1, &c2]).enumerate() {
        http.push_str(&format!(
            "  server {{\n    listen {a} ssl;\n    ssl_certificate {};\n    ssl_certificate_key {};\n    \
             ssl_protocols TLSv1.2 TLSv1.3;\n    access_log tls.log tls;\n    location / {{ return 200 \"n{} sni=$ssl_server_name\"; }}\n  }}\n",
            c.cert.display(),
            c.key.display(),
            i + 1
        ));
    }
    http.push_str(&format!(
        "  server {{\n    listen {};\n    access_log off;\n    location / {{ stub_status; }}\n  }}\n",
        addrs[2]
    ));
    (Nginx::start(&http, &addrs), addrs)
}

/// Connections nginx accepted so far (its status page; the connection that
/// reads it counts too).
async fn accepted(status: SocketAddr) -> u64 {
    let text = get(status, "/", &[]).await.body;
    // "Active connections: N \nserver accepts handled requests\n A H R \n..."
    text.lines()
        .nth(2)
        .and_then(|l| l.split_whitespace().next())
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| panic!("status page: {text}"))
}

/// An HTTP health check, inserted before a backend's `servers:`.
const HTTP_CHECK: &str =
    "    health_check: { type: http, interval: 100ms, rise: 1, fall: 1 }\n    servers:\n";

fn yaml(addrs: &[SocketAddr], server_tls: &str) -> String {
    format!(
        "frontends:\n  - {{ name: web, bind: [\"127.0.0.1:0\"], backend: app, access_log: false }}\n\
         backends:\n  - name: app\n    server_tls: {server_tls}\n    servers:\n\
         \x20     - {{ name: n1, address: \"{}\" }}\n      - {{ name: n2, address: \"{}\" }}\n",
        addrs[0], addrs[1]
    )
}

/// `clients` keep-alive connections sending `each` requests apiece; the bodies.
async fn load(addr: SocketAddr, clients: usize, each: usize) -> Vec<String> {
    let mut set = tokio::task::JoinSet::new();
    for _ in 0..clients {
        set.spawn(async move {
            use tokio::io::AsyncWriteExt;
            let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
            let mut buf = Vec::new();
            let mut bodies = Vec::with_capacity(each);
            for _ in 0..each {
                s.write_all(b"GET / HTTP/1.1\r\nHost: shop\r\n\r\n")
                    .await
                    .unwrap();
                let r = read_response(&mut s, &mut buf, false)
                    .await
                    .expect("response");
                assert_eq!(r.status, 200, "{}", r.head);
                bodies.push(String::from_utf8(r.body).unwrap());
            }
            bodies
        });
    }
    let mut all = Vec::new();
    while let Some(r) = set.join_next().await {
        all.extend(r.unwrap());
    }
    all
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn thousands_of_requests_reuse_the_pools_tunnels() {
    let pki = Pki::new("servers CA");
    let (nginx, addrs) = tls_servers(&pki);
    let cfg = format!(
        "{{ ca: \"{}\", sni: app.internal, pool: 4 }}",
        pki.ca.display()
    );
    let before = accepted(addrs[2]).await;
    let proxy = start_proxy(&yaml(&addrs, &cfg)).await;
    let addr = proxy.local_addr("web").unwrap();
    // The tunnels are established before any request.
    for s in ["n1", "n2"] {
        let line = format!("tack_proxy_server_tls_tunnels_idle{{backend=\"app\",server=\"{s}\"}}");
        assert!(
            wait_until(Duration::from_secs(10), || metric(&proxy, &line) == 4).await,
            "{s}: {}",
            proxy.render_metrics()
        );
    }
    // 4 clients (no more than the pool) x 750 requests, round robin over both.
    let bodies = load(addr, 4, 750).await;
    assert_eq!(bodies.len(), 3000);
    let mut per: HashMap<&str, usize> = HashMap::new();
    for b in &bodies {
        *per.entry(b.as_str()).or_default() += 1;
    }
    assert_eq!(
        per,
        HashMap::from([("n1 sni=app.internal", 1500), ("n2 sni=app.internal", 1500)])
    );
    // h2c clients take the hyper path, through the same tunnels.
    require_tool("curl");
    let url = format!("http://{addr}/");
    for _ in 0..4 {
        let out = run_cmd(
            "curl",
            vec!["-sS".into(), "--http2-prior-knowledge".into(), url.clone()],
        )
        .await;
        assert!(out.ends_with("sni=app.internal"), "{out}");
    }
    // At the servers: 3004 requests, and no connection (so no handshake) beyond
    // the 8 tunnels (the other two accepted are the status page's).
    let log = nginx.log("tls.log");
    assert_eq!(log.len(), 3004, "requests logged by nginx");
    assert_eq!(
        accepted(addrs[2]).await - before,
        8 + 1,
        "connections accepted by nginx"
    );
    let conns: HashSet<(String, String)> = log
        .iter()
        .map(|l| {
            let f: Vec<&str> = l.split(' ').collect();
            (f[0].to_string(), f[1].to_string())
        })
        .collect();
    assert!(
        conns.len() <= 8,
        "connections that carried requests: {conns:?}"
    );
    for s in ["n1", "n2"] {
        let l = format!("tack_proxy_server_tls_handshakes_total{{backend=\"app\",server=\"{s}\"}}");
        assert_eq!(metric(&proxy, &l), 4, "{s}");
    }
    assert!(
        log.iter().all(|l| l.ends_with("TLSv1.3")),
        "{:?}",
        &log[..4]
    );
    proxy.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn server_certificates_are_verified_or_explicitly_not() {
    let pki = Pki::new("servers CA");
    let (_nginx, addrs) = tls_servers(&pki);
    let other = Pki::new("another CA");
    // Per-server names: each server is reached by its own name.
    let text = yaml(
        &addrs,
        &format!("{{ ca: \"{}\", pool: 1 }}", pki.ca.display()),
    )
    .replace(
        &format!("address: \"{}\" }}", addrs[0]),
        &format!("address: \"{}\", tls_sni: n1.internal }}", addrs[0]),
    )
    .replace(
        &format!("address: \"{}\" }}", addrs[1]),
        &format!("address: \"{}\", tls_sni: n2.internal }}", addrs[1]),
    )
    .replace("    servers:\n", HTTP_CHECK);
    let proxy = start_proxy(&text).await;
    let addr = proxy.local_addr("web").unwrap();
    // HTTP health checks of TLS-only servers go through their contexts: the
    // servers stay up.
    let checks = "tack_proxy_server_tls_handshakes_total{backend=\"app\",server=\"n1\"}";
    assert!(wait_until(Duration::from_secs(5), || metric(&proxy, checks) >= 4).await);
    let mut bodies: Vec<String> = Vec::new();
    for _ in 0..2 {
        bodies.push(get(addr, "/", &[]).await.body);
    }
    bodies.sort();
    assert_eq!(bodies, ["n1 sni=n1.internal", "n2 sni=n2.internal"]);
    for s in ["n1", "n2"] {
        let up = format!("tack_proxy_server_up{{backend=\"app\",server=\"{s}\"}}");
        assert_eq!(metric(&proxy, &up), 1, "{s}");
    }
    proxy.shutdown().await;

    // Under a CA that did not issue the servers' certificates: refused, 503,
    // and the health checks take the servers down.
    let proxy = start_proxy(
        &yaml(
            &addrs,
            &format!(
                "{{ ca: \"{}\", sni: app.internal, pool: 1 }}",
                other.ca.display()
            ),
        )
        .replace("    servers:\n", HTTP_CHECK),
    )
    .await;
    let addr = proxy.local_addr("web").unwrap();
    let r = get(addr, "/", &[]).await;
    assert_eq!(r.status, 503);
    let down = "tack_proxy_server_up{backend=\"app\",server=\"n1\"}";
    assert!(wait_until(Duration::from_secs(5), || metric(&proxy, down) == 0).await);
    assert!(
        metric(
            &proxy,
            "tack_proxy_server_tls_handshake_failures_total{backend=\"app\",server=\"n1\"}"
        ) > 0
    );
    proxy.shutdown().await;

    // A name the certificates do not carry: refused too.
    let proxy = start_proxy(&yaml(
        &addrs,
        &format!(
            "{{ ca: \"{}\", sni: wrong.internal, pool: 0 }}",
            pki.ca.display()
        ),
    ))
    .await;
    let r = get(proxy.local_addr("web").unwrap(), "/", &[]).await;
    assert_eq!(r.status, 503);
    proxy.shutdown().await;

    // verify: false: encrypted, not authenticated.
    let proxy = start_proxy(&yaml(
        &addrs,
        "{ verify: false, sni: whatever.example, pool: 0 }",
    ))
    .await;
    let r = get(proxy.local_addr("web").unwrap(), "/", &[]).await;
    assert_eq!(r.status, 200);
    assert!(r.body.ends_with("sni=whatever.example"), "{}", r.body);
    proxy.shutdown().await;

    // verify without a CA is a configuration error.
    let bad = yaml(&addrs, "{ sni: app.internal }");
    let e = tack_proxy::config::ProxyConfig::from_yaml_str(&bad)
        .unwrap_err()
        .to_string();
    assert!(e.contains("backends[0].server_tls.ca"), "{e}");
}
