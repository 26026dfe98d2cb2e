//! Content switching (`use_backend`): `/api/*`, `/static/*` and a `Host` reach
//! their own backends over one kept-alive connection (curl reusing its
//! connection), on the fast path and on the hyper path; each backend keeps its
//! own balancing; a bad rule is refused with its field and line.

mod support;

use support::*;

fn config(
    api: &[&TestServer],
    st: &TestServer,
    img: &TestServer,
    dflt: &TestServer,
    fast: bool,
) -> String {
    let api_servers: String = api
        .iter()
        .map(|s| format!("      - {{ name: {}, address: \"{}\" }}\n", s.name, s.addr))
        .collect();
    format!(
        r#"
frontends:
  - name: web
    bind: ["127.0.0.1:0"]
    fast_path: {fast}
    backend: default
    use_backend:
      - {{ backend: api, path_prefix: /api/ }}
      - {{ backend: static, path_prefix: /static/ }}
      - {{ backend: images, host: img.example.test }}
backends:
  - name: api
    balance: {{ algorithm: roundrobin }}
    servers:
{api_servers}  - name: static
    servers:
      - {{ name: {st}, address: "{sta}" }}
  - name: images
    servers:
      - {{ name: {img}, address: "{imga}" }}
  - name: default
    servers:
      - {{ name: {d}, address: "{da}" }}
"#,
        st = st.name,
        sta = st.addr,
        img = img.name,
        imga = img.addr,
        d = dflt.name,
        da = dflt.addr,
    )
}

/// curl fetching `urls` (with `-H` options before each) in one run: each
/// transfer's body and its count of new connections.
async fn curl_one_connection(urls: Vec<(String, Option<&str>)>) -> Vec<(String, u32)> {
    require_tool("curl");
    let mut args: Vec<String> = Vec::new();
    for (i, (url, host)) in urls.iter().enumerate() {
        if i > 0 {
            args.push("--next".into());
        }
        args.extend(["-sS".into(), "-w".into(), "\n%{num_connects}\n".into()]);
        if let Some(h) = host {
            args.extend(["-H".into(), format!("Host: {h}")]);
        }
        args.push(url.clone());
    }
    let out = run_cmd("curl", args).await;
    let lines: Vec<&str> = out.lines().collect();
    lines
        .chunks(2)
        .map(|c| (c[0].to_string(), c[1].trim().parse().unwrap()))
        .collect()
}

async fn switching(fast: bool) {
    let a1 = TestServer::start("api1").await;
    let a2 = TestServer::start("api2").await;
    let st = TestServer::start("static1").await;
    let img = TestServer::start("img1").await;
    let dflt = TestServer::start("default1").await;
    let proxy = start_proxy(&config(&[&a1, &a2], &st, &img, &dflt, fast)).await;
    let base = format!("http://{}", proxy.local_addr("web").unwrap());
    let got = curl_one_connection(vec![
        (format!("{base}/api/users"), None),
        (format!("{base}/static/app.css"), None),
        (format!("{base}/logo.png"), Some("img.example.test")),
        (format!("{base}/api/orders"), None),
        (format!("{base}/index.html"), None),
        (format!("{base}/static/x"), Some("img.example.test")),
        (format!("{base}/photo.jpg"), Some("IMG.example.test:8080")),
    ])
    .await;
    let bodies: Vec<&str> = got.iter().map(|(b, _)| b.as_str()).collect();
    // The api backend balances its own two servers round robin; the static
    // rule comes before the host rule.
    assert_eq!(
        bodies,
        [
            "api1", "static1", "img1", "api2", "default1", "static1", "img1"
        ],
        "fast path: {fast}"
    );
    // One connection for all of them: curl opened one, the proxy accepted one.
    let connects: Vec<u32> = got.iter().map(|(_, n)| *n).collect();
    assert_eq!(connects, [1, 0, 0, 0, 0, 0, 0]);
    let fe = proxy.frontend("web").unwrap();
    assert_eq!(
        fe.stats
            .connections
            .load(std::sync::atomic::Ordering::Relaxed),
        1
    );
    assert_eq!(
        fe.stats.requests.load(std::sync::atomic::Ordering::Relaxed),
        7
    );
    let uris = |s: &TestServer| s.seen().into_iter().map(|x| x.uri).collect::<Vec<_>>();
    assert_eq!(uris(&a1), ["/api/users"]);
    assert_eq!(uris(&a2), ["/api/orders"]);
    assert_eq!(uris(&img), ["/logo.png", "/photo.jpg"]);
    assert_eq!(uris(&dflt), ["/index.html"]);
    // Each backend counts its own requests.
    assert_eq!(
        metric(&proxy, "tack_proxy_backend_requests_total{backend=\"api\"}"),
        2
    );
    assert_eq!(
        metric(
            &proxy,
            "tack_proxy_backend_requests_total{backend=\"static\"}"
        ),
        2
    );
    proxy.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rules_choose_backends_per_request_on_one_connection_fast_path() {
    switching(true).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rules_choose_backends_per_request_on_one_connection_hyper_path() {
    switching(false).await;
}

#[test]
fn a_bad_rule_names_its_field_and_line() {
    let text = "frontends:\n  - name: web\n    bind: [\"127.0.0.1:0\"]\n    backend: app\n    use_backend:\n      - { backend: app, path_prefix: /a/ }\n      - { backend: app, path_regex: \"^/v[0-9+/\" }\nbackends:\n  - name: app\n    servers: [{ name: s, address: \"127.0.0.1:1\" }]\n";
    let e = tack_proxy::config::ProxyConfig::from_yaml_str(text)
        .unwrap_err()
        .to_string();
    assert!(
        e.starts_with("frontends[0].use_backend[1].path_regex: invalid regular expression"),
        "{e}"
    );
    assert!(e.ends_with("(line 7)"), "{e}");
    let e = tack_proxy::config::ProxyConfig::from_yaml_str(&text.replace(
        "{ backend: app, path_prefix: /a/ }",
        "{ backend: nope, path_prefix: /a/ }",
    ))
    .unwrap_err()
    .to_string();
    assert_eq!(
        e,
        "frontends[0].use_backend[0].backend: no backend named \"nope\" (line 6)"
    );
    let e = tack_proxy::config::ProxyConfig::from_yaml_str(
        &text.replace("path_prefix: /a/", "paht: /a/"),
    )
    .unwrap_err()
    .to_string();
    assert!(
        e.contains("unknown field `paht`") && e.contains("line 6"),
        "{e}"
    );
}

#[test]
fn the_routing_example_is_valid() {
    let path =
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../configs/proxy-routing.yaml");
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_tack-proxy"))
        .arg("--check")
        .arg("--config")
        .arg(&path)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let cfg = tack_proxy::config::ProxyConfig::from_file(&path).unwrap();
    assert_eq!(cfg.frontends[0].use_backend.len(), 7);
    assert!(cfg.backends[0].servers[2].backup);
}
