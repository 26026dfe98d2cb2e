//! TLS pass-through with real clients and servers: `openssl s_client` through
//! tack-proxy's TCP frontend to nginx TLS servers that each keep their own
//! session cache (tickets off). SNI picks the backend; a TLS 1.2 session saved
//! with `-sess_out` and resumed with `-sess_in` reaches the server that issued
//! it (nginx answers with its name and `$ssl_session_reused`), for several
//! servers and sessions; TLS 1.3 clients stay on one server with source
//! affinity; the tables show on `/sessions`; garbage is refused and counted.

mod support;

use std::collections::HashSet;
use std::net::SocketAddr;

use support::nginx::{Nginx, free_port};
use support::pki::{Pki, s_client};
use support::*;

fn addr(port: u16) -> SocketAddr {
    format!("127.0.0.1:{port}").parse().unwrap()
}

/// The line nginx answered (`<name> reused=<r or .> <protocol>`).
fn answer(out: &str) -> String {
    out.lines()
        .find(|l| l.contains(" reused="))
        .unwrap_or_else(|| panic!("no answer from a server in:\n{out}"))
        .trim()
        .to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn resumed_sessions_reach_the_server_that_issued_them() {
    require_tool("openssl");
    let pki = Pki::new("pass-through CA");
    let cert = pki.server("servers", &["shop.test", "*.b.test"], "servers");
    // n1..n3 serve shop.test, m1 serves *.b.test; each its own session cache.
    let names = ["n1", "n2", "n3", "m1"];
    let ports: Vec<SocketAddr> = names.iter().map(|_| addr(free_port())).collect();
    let mut http = String::new();
    for (n, a) in names.iter().zip(&ports) {
        http.push_str(&format!(
            "  server {{\n    listen {a} ssl;\n    ssl_certificate {};\n    ssl_certificate_key {};\n    \
             ssl_protocols TLSv1.2 TLSv1.3;\n    ssl_session_tickets off;\n    \
             ssl_session_cache shared:{n}:1m;\n    access_log off;\n    \
             location / {{ return 200 \"{n} reused=$ssl_session_reused $ssl_protocol\\n\"; }}\n  }}\n",
            cert.cert.display(),
            cert.key.display(),
        ));
    }
    let _nginx = Nginx::start(&http, &ports);
    let yaml = format!(
        "passthrough:\n  - name: tls\n    bind: [\"127.0.0.1:0\"]\n    routes:\n      \
         - {{ sni: shop.test, backend: shop }}\n      - {{ sni: \"*.b.test\", backend: other }}\n    \
         session_table: {{ size: 1000, expire: 10m }}\n  \
         - name: tls13\n    bind: [\"127.0.0.1:0\"]\n    default_backend: shop\n    \
         affinity: {{ key: source }}\n  \
         - name: idle\n    bind: [\"127.0.0.1:0\"]\n    default_backend: shop\n    idle_timeout: 300ms\n\
         backends:\n  - name: shop\n    servers:\n      - {{ name: n1, address: \"{}\" }}\n      \
         - {{ name: n2, address: \"{}\" }}\n      - {{ name: n3, address: \"{}\" }}\n  \
         - name: other\n    servers:\n      - {{ name: m1, address: \"{}\" }}\n",
        ports[0], ports[1], ports[2], ports[3]
    );
    let proxy = start_proxy(&yaml).await;
    let pt = proxy.local_addr("tls").unwrap();

    // Six TLS 1.2 sessions, round robin over the three servers; each resumed
    // three times, always on the server that issued it.
    let mut issuers = HashSet::new();
    for k in 0..6 {
        let f = pki.path(&format!("s{k}.pem"));
        let f = f.to_str().unwrap();
        let first = answer(&s_client(
            pt,
            &["-tls1_2", "-servername", "shop.test", "-sess_out", f],
        ));
        assert!(first.ends_with("reused=. TLSv1.2"), "{first}");
        let server = first.split(' ').next().unwrap().to_string();
        issuers.insert(server.clone());
        for _ in 0..3 {
            let again = answer(&s_client(
                pt,
                &["-tls1_2", "-servername", "shop.test", "-sess_in", f],
            ));
            assert_eq!(again, format!("{server} reused=r TLSv1.2"), "session {k}");
        }
    }
    assert_eq!(issuers.len(), 3, "sessions on every server: {issuers:?}");
    let routed = metric(
        &proxy,
        "tack_proxy_passthrough_session_routed_total{frontend=\"tls\"}",
    );
    assert_eq!(routed, 18);
    assert_eq!(
        metric(
            &proxy,
            "tack_proxy_passthrough_sessions_learnt_total{frontend=\"tls\"}"
        ),
        6
    );

    // SNI routing: a name under b.test goes to the other backend; no SNI and no
    // default backend: closed, counted.
    let other = answer(&s_client(pt, &["-servername", "x.b.test"]));
    assert!(other.starts_with("m1 "), "{other}");
    let out = s_client(pt, &["-noservername"]);
    assert!(!out.contains(" reused="), "{out}");
    assert_eq!(
        metric(
            &proxy,
            "tack_proxy_passthrough_no_route_total{frontend=\"tls\"}"
        ),
        1
    );

    // TLS 1.3: the legacy session ID is random; source affinity keeps a client
    // on one server, so its TLS 1.3 session resumes there too.
    let pt13 = proxy.local_addr("tls13").unwrap();
    let f13 = pki.path("s13.pem");
    let f13 = f13.to_str().unwrap();
    let first = answer(&s_client(
        pt13,
        &["-tls1_3", "-servername", "shop.test", "-sess_out", f13],
    ));
    let server = first.split(' ').next().unwrap().to_string();
    for _ in 0..4 {
        let a = answer(&s_client(
            pt13,
            &["-tls1_3", "-servername", "shop.test", "-sess_in", f13],
        ));
        assert_eq!(a, format!("{server} reused=r TLSv1.3"));
    }
    assert_eq!(
        metric(
            &proxy,
            "tack_proxy_passthrough_affinity_routed_total{frontend=\"tls13\"}"
        ),
        4
    );

    // The admin view lists both tables.
    let view = proxy.render_sessions();
    assert!(
        view.contains("# passthrough tls TLS session IDs: 6 entries"),
        "{view}"
    );
    assert!(view.contains("\tshop/n"), "{view}");
    assert!(view.contains("127.0.0.1/32\tshop/"), "{view}");

    // A connection with no traffic for idle_timeout is closed (nginx would keep
    // it for 300 s); one in use is not.
    let idle = proxy.local_addr("idle").unwrap();
    let mut c = support::pki::TlsClient::connect(idle, "shop.test", &pki.ca).await;
    for _ in 0..3 {
        assert!(c.get("/").await.starts_with('n'));
        tokio::time::sleep(std::time::Duration::from_millis(150)).await;
    }
    assert!(c.closed_within(std::time::Duration::from_secs(3)).await);
    assert_eq!(
        metric(
            &proxy,
            "tack_proxy_passthrough_idle_closed_total{frontend=\"idle\"}"
        ),
        1
    );

    // Not TLS: refused and counted, the proxy goes on.
    let mut s = tokio::net::TcpStream::connect(pt).await.unwrap();
    use tokio::io::AsyncWriteExt;
    s.write_all(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
        .await
        .unwrap();
    assert!(closed_within(&mut s, std::time::Duration::from_secs(5)).await);
    assert_eq!(
        metric(
            &proxy,
            "tack_proxy_passthrough_bad_hello_total{frontend=\"tls\"}"
        ),
        1
    );
    let again = answer(&s_client(pt, &["-servername", "shop.test"]));
    assert!(again.contains(" reused="), "{again}");
    proxy.shutdown().await;
}
