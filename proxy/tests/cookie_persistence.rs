//! Cookie insertion with real clients: curl and Python `requests.Session` stay on one
//! server for 100 requests, fresh sessions spread by weight, and with `indirect`
//! the servers never see the cookie.

mod support;

use std::collections::HashMap;

use support::*;

fn config(servers: &[&TestServer], weights: &[u32]) -> String {
    let mut s = String::from(
        "frontends:\n  - { name: web, bind: [\"127.0.0.1:0\"], backend: app, access_log: false }\nbackends:\n  - name: app\n    cookie: { name: SERVERID, mode: insert, indirect: true, nocache: true }\n    servers:\n",
    );
    for (srv, w) in servers.iter().zip(weights) {
        s.push_str(&format!(
            "      - {{ name: {}, address: \"{}\", weight: {w} }}\n",
            srv.name, srv.addr
        ));
    }
    s
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn curl_and_requests_stay_pinned_and_sessions_spread_by_weight() {
    require_tool("curl");
    require_tool("/usr/bin/python3");
    let servers = vec![
        TestServer::start("s1").await,
        TestServer::start("s2").await,
        TestServer::start("s3").await,
    ];
    let refs: Vec<&TestServer> = servers.iter().collect();
    let proxy = start_proxy(&config(&refs, &[1, 2, 1])).await;
    let addr = proxy.local_addr("web").unwrap();
    let url = format!("http://{addr}/page");

    // curl: one process, one kept-alive connection, a cookie jar, 100 requests.
    let jar = tempfile::NamedTempFile::new().unwrap();
    let jar_path = jar.path().to_str().unwrap().to_string();
    let mut args = vec![
        "-s".to_string(),
        "-b".into(),
        jar_path.clone(),
        "-c".into(),
        jar_path.clone(),
    ];
    for _ in 0..100 {
        args.push(url.clone());
        args.push("-w".into());
        args.push("\n".into());
    }
    let out = run_cmd("curl", args).await;
    let names: Vec<&str> = out.lines().filter(|l| !l.is_empty()).collect();
    assert_eq!(names.len(), 100, "{out}");
    assert!(
        names.iter().all(|n| *n == names[0]),
        "curl moved between servers: {names:?}"
    );
    let jar_text = std::fs::read_to_string(&jar_path).unwrap();
    assert!(
        jar_text.contains(&format!("SERVERID\t{}", names[0])),
        "jar: {jar_text}"
    );

    // Python requests.Session: 100 requests on one session; then 200 fresh sessions.
    let script = format!(
        r#"
import requests, collections
s = requests.Session()
got = [s.get("{url}").text for _ in range(100)]
assert len(set(got)) == 1, collections.Counter(got)
print("pinned", got[0], s.cookies.get("SERVERID"))
fresh = collections.Counter()
for i in range(200):
    with requests.Session() as t:
        first = t.get("{url}").text
        again = t.get("{url}").text
        assert first == again, (first, again)
        fresh[first] += 1
print("spread", " ".join(f"{{k}}={{v}}" for k, v in sorted(fresh.items())))
"#
    );
    let out = run_cmd("/usr/bin/python3", vec!["-c".into(), script]).await;
    let mut lines = out.lines();
    let pinned: Vec<&str> = lines.next().unwrap().split_whitespace().collect();
    assert_eq!(pinned[0], "pinned");
    assert_eq!(
        pinned[1], pinned[2],
        "cookie value is the server's cookie: {out}"
    );
    let spread: HashMap<String, u32> = lines
        .next()
        .unwrap()
        .split_whitespace()
        .skip(1)
        .map(|kv| {
            let (k, v) = kv.split_once('=').unwrap();
            (k.to_string(), v.parse().unwrap())
        })
        .collect();
    // Weights 1:2:1 → 50:100:50 fresh sessions (round robin is exact up to the
    // requests the earlier clients made).
    let (a, b, c) = (spread["s1"], spread["s2"], spread["s3"]);
    assert_eq!(a + b + c, 200);
    assert!(
        (40..=60).contains(&a) && (90..=110).contains(&b) && (40..=60).contains(&c),
        "{spread:?}"
    );

    // indirect: the servers never saw the persistence cookie.
    for s in &servers {
        for seen in s.seen() {
            assert!(
                !seen.cookie.contains("SERVERID"),
                "{} saw {:?}",
                s.name,
                seen.cookie
            );
        }
    }
    let m = proxy.render_metrics();
    assert!(
        m.contains("tack_proxy_backend_cookie_valid_total{backend=\"app\"}"),
        "{m}"
    );
    proxy.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn other_cookies_still_reach_the_server_and_cache_is_private() {
    let servers = [TestServer::start("s1").await, TestServer::start("s2").await];
    let proxy = start_proxy(&config(&[&servers[0], &servers[1]], &[1, 1])).await;
    let addr = proxy.local_addr("web").unwrap();
    let r = get(addr, "/static/x", &[]).await;
    assert_eq!(r.status, 200);
    let sc = r.all("set-cookie");
    assert_eq!(sc, vec![format!("SERVERID={}; path=/", r.body)]);
    assert_eq!(r.all("cache-control"), vec!["private"]);
    let ck = format!("a=1; SERVERID={}; b=2", r.body);
    let r2 = get(addr, "/y", &[("cookie", &ck)]).await;
    assert_eq!(r2.body, r.body);
    assert!(
        r2.all("set-cookie").is_empty(),
        "no new cookie for a client already pinned"
    );
    let srv = servers.iter().find(|s| s.name == r.body).unwrap();
    assert_eq!(srv.seen().last().unwrap().cookie, "a=1; b=2");
    // a cookie naming no server is load balanced and replaced
    let r3 = get(addr, "/z", &[("cookie", "SERVERID=nosuch")]).await;
    assert_eq!(r3.all("set-cookie").len(), 1);
    proxy.shutdown().await;
}
