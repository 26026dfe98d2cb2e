//! Session-ID persistence with secure and non-secure requests (seed 003:4-14,
//! 22-25; `session_id.pin: secure`), the shopping cart of seed 004's background
//! with Python `requests`: the cart over HTTP sets the session ID, checkout over
//! HTTPS goes to the server that holds the session through that server's SSL
//! context (nginx answers `https=on` on its TLS port), a secure path on the
//! plain frontend does too, while non-secure requests of other clients with
//! known IDs are load balanced freely by weight and leave the table alone, and a
//! secure request with an unknown ID is balanced and recorded.

mod support;

use std::collections::HashMap;
use std::net::SocketAddr;

use support::nginx::{Nginx, free_port};
use support::pki::Pki;
use support::*;

fn addr(port: u16) -> SocketAddr {
    format!("127.0.0.1:{port}").parse().unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cart_over_http_checkout_over_https_on_the_session_server() {
    require_tool("/usr/bin/python3");
    let pki = Pki::new("shop CA");
    let srv_cert = pki.server("servers", &["shop.internal"], "servers");
    let front = pki.server("front", &["127.0.0.1"], "front");
    // Three nginx servers, each with a plain and a TLS port.
    let plain: Vec<SocketAddr> = (0..3).map(|_| addr(free_port())).collect();
    let tls: Vec<SocketAddr> = (0..3).map(|_| addr(free_port())).collect();
    let mut http = String::new();
    for i in 0..3 {
        http.push_str(&format!(
            "  server {{\n    listen {};\n    listen {} ssl;\n    ssl_certificate {};\n    \
             ssl_certificate_key {};\n    ssl_protocols TLSv1.2 TLSv1.3;\n    access_log off;\n    \
             location /cart {{ add_header Set-Cookie \"JSESSIONID=$arg_sid; Path=/\"; \
             return 200 \"n{n} cart https=$https\"; }}\n    \
             location / {{ return 200 \"n{n} $uri https=$https\"; }}\n  }}\n",
            plain[i],
            tls[i],
            srv_cert.cert.display(),
            srv_cert.key.display(),
            n = i + 1
        ));
    }
    let all: Vec<SocketAddr> = plain.iter().chain(&tls).copied().collect();
    let _nginx = Nginx::start(&http, &all);
    let mut servers = String::new();
    for (i, w) in [1, 2, 1].into_iter().enumerate() {
        servers.push_str(&format!(
            "      - {{ name: n{}, address: \"{}\", tls_address: \"{}\", weight: {w} }}\n",
            i + 1,
            plain[i],
            tls[i]
        ));
    }
    let yaml = format!(
        "frontends:\n  - {{ name: http, bind: [\"127.0.0.1:0\"], backend: shop, access_log: false, secure_paths: [/secure-area] }}\n\
         \x20 - name: https\n    bind: [\"127.0.0.1:0\"]\n    backend: shop\n    access_log: false\n    \
         tls: {{ certificates: [{{ cert: \"{}\", key: \"{}\" }}] }}\n\
         backends:\n  - name: shop\n    session_id: {{ cookie: JSESSIONID, pin: secure }}\n    \
         server_tls: {{ ca: \"{}\", sni: shop.internal, pool: 2 }}\n    servers:\n{servers}\
         metrics: {{ listen: \"127.0.0.1:0\" }}\n",
        front.cert.display(),
        front.key.display(),
        pki.ca.display()
    );
    let proxy = start_proxy(&yaml).await;
    let hp = proxy.local_addr("http").unwrap().port();
    let sp = proxy.local_addr("https").unwrap().port();
    let ca = pki.ca.display();
    let script = format!(
        r#"
import requests
H = "http://127.0.0.1:{hp}"
S = "https://127.0.0.1:{sp}"
CA = "{ca}"
def say(*f):
    print("|".join(f))
s = requests.Session()
say("cart", s.get(H + "/cart?sid=CART1").text)
say("cookie", s.cookies.get("JSESSIONID"))
for _ in range(20):
    say("checkout", s.get(S + "/checkout", verify=CA).text)
for _ in range(5):
    say("secure_path", s.get(H + "/secure-area/pay").text)
owners = {{}}
for i in range(40):
    t = requests.Session()
    owners[i] = t.get(H + f"/cart?sid=OTHER{{i}}").text.split()[0]
    got = [t.get(H + "/browse").text.split()[0] for _ in range(10)]
    say("browse", *got)
for i in range(40):
    r = requests.get(S + "/checkout", cookies={{"JSESSIONID": f"OTHER{{i}}"}}, verify=CA)
    say("other", owners[i], r.text)
for _ in range(10):
    say("new", requests.get(S + "/checkout", cookies={{"JSESSIONID": "NEW1"}}, verify=CA).text)
"#
    );
    let out = run_cmd("/usr/bin/python3", vec!["-c".into(), script]).await;
    let mut lines: HashMap<&str, Vec<Vec<&str>>> = HashMap::new();
    for l in out.lines() {
        let mut f = l.split('|');
        let key = f.next().unwrap();
        lines.entry(key).or_default().push(f.collect());
    }
    let one = |k: &str| lines[k][0][0].to_string();
    let col = |k: &str| {
        lines[k]
            .iter()
            .map(|f| f[0].to_string())
            .collect::<Vec<_>>()
    };
    let cart = one("cart");
    let owner = cart.split(' ').next().unwrap().to_string();
    assert!(
        cart.ends_with("cart https="),
        "the cart is plain HTTP: {cart}"
    );
    assert_eq!(one("cookie"), "CART1");
    // Checkout over HTTPS: the cart's server, reached over TLS.
    let checkout = col("checkout");
    assert_eq!(checkout.len(), 20);
    for c in checkout {
        assert_eq!(c, format!("{owner} /checkout https=on"));
    }
    // A secure path on the plain frontend: the same.
    for c in col("secure_path") {
        assert_eq!(c, format!("{owner} /secure-area/pay https=on"));
    }
    // Non-secure requests with known IDs: spread by weight (1:2:1), each
    // client's requests over several servers.
    let mut spread: HashMap<&str, u64> = HashMap::new();
    for got in &lines["browse"] {
        for s in got {
            *spread.entry(s).or_default() += 1;
        }
        let distinct: std::collections::HashSet<_> = got.iter().collect();
        assert!(
            distinct.len() >= 2,
            "a client's browsing was pinned: {got:?}"
        );
    }
    let total: u64 = spread.values().sum();
    assert_eq!(total, 400);
    for (s, share) in [("n1", 0.25), ("n2", 0.5), ("n3", 0.25)] {
        let got = spread.get(s).copied().unwrap_or(0) as f64 / total as f64;
        assert!(
            (got - share).abs() < 0.05,
            "{s}: {got} of the requests, {spread:?}"
        );
    }
    // ...and they did not move the sessions: each checks out on its cart's server.
    assert_eq!(lines["other"].len(), 40);
    for f in &lines["other"] {
        assert_eq!(f[1], format!("{} /checkout https=on", f[0]));
    }
    // A secure request with an unknown ID: balanced once, then recorded.
    let new = col("new");
    assert!(
        new.iter().all(|n| n == &new[0] && n.ends_with("https=on")),
        "{new:?}"
    );
    let text = proxy.render_metrics();
    let routed = text
        .lines()
        .find(|l| l.starts_with("tack_proxy_backend_session_routed_total{backend=\"shop\"}"))
        .unwrap();
    // The admin view: the cart's session, its server and that server's SSL context.
    let owner_idx: usize = owner[1..].parse::<usize>().unwrap() - 1;
    let view = get(proxy.metrics_addr().unwrap(), "/sessions", &[]).await;
    assert_eq!(view.status, 200);
    let want = format!(
        "CART1\t{owner}\ttls {} sni=shop.internal\tidle ",
        tls[owner_idx]
    );
    assert!(view.body.contains(&want), "{want} in\n{}", view.body);
    assert!(
        view.body
            .starts_with("# backend shop session IDs: 42 entries"),
        "{}",
        view.body
    );
    // 20 + 5 + 40 + 9 secure requests found their session; none of the 400.
    assert!(routed.ends_with(" 74"), "{routed}");
    proxy.shutdown().await;
}
