//! The runtime admin API through its CLI (`tack-proxy ctl`): server state,
//! weight, servers added and removed, reload of the file, bad calls refused
//! with a clear error and counted; exposed beyond loopback it needs a token
//! file, and calls without the token are refused.

mod support;

use std::process::Command;

use support::*;

const BIN: &str = env!("CARGO_BIN_EXE_tack-proxy");

/// `tack-proxy ctl --api ADDR [args]`: exit code, stdout, stderr.
async fn ctl(api: std::net::SocketAddr, args: &[&str]) -> (i32, String, String) {
    let mut all = vec!["ctl".to_string(), "--api".into(), api.to_string()];
    all.extend(args.iter().map(|s| s.to_string()));
    let out = tokio::task::spawn_blocking(move || Command::new(BIN).args(&all).output())
        .await
        .unwrap()
        .unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// Which servers answer `n` requests, sorted, with counts.
async fn spread(addr: std::net::SocketAddr, n: usize) -> Vec<(String, usize)> {
    let mut m = std::collections::BTreeMap::new();
    for _ in 0..n {
        *m.entry(get(addr, "/", &[]).await.body).or_insert(0) += 1;
    }
    m.into_iter().collect()
}

fn config(admin: &str, servers: &[&TestServer]) -> String {
    let list: String = servers
        .iter()
        .map(|s| format!("      - {{ name: {}, address: \"{}\" }}\n", s.name, s.addr))
        .collect();
    format!(
        "frontends:\n  - name: web\n    bind: [\"127.0.0.1:0\"]\n    backend: app\nbackends:\n  - name: app\n    servers:\n{list}admin:\n{admin}"
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ctl_changes_state_weight_and_servers() {
    let s1 = TestServer::start("s1").await;
    let s2 = TestServer::start("s2").await;
    let s3 = TestServer::start("s3").await;
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("proxy.yaml");
    std::fs::write(&path, config("  listen: \"127.0.0.1:0\"\n", &[&s1, &s2])).unwrap();
    let proxy = tack_proxy::Proxy::start_file(&path).await.unwrap();
    let addr = proxy.local_addr("web").unwrap();
    let api = proxy.admin_addr().unwrap();

    let (code, out, _) = ctl(api, &["servers"]).await;
    assert_eq!(code, 0);
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(v["backends"][0]["name"], "app");
    assert_eq!(v["backends"][0]["servers"][1]["name"], "s2");
    assert_eq!(v["backends"][0]["servers"][1]["state"], "ready");
    assert_eq!(spread(addr, 4).await, [("s1".into(), 2), ("s2".into(), 2)]);

    // State: at once.
    assert_eq!(ctl(api, &["state", "app", "s1", "maint"]).await.0, 0);
    assert_eq!(spread(addr, 4).await, [("s2".into(), 4)]);
    assert_eq!(ctl(api, &["state", "app", "s1", "ready"]).await.0, 0);
    // Weight: 3 to 1.
    assert_eq!(ctl(api, &["weight", "app", "s1", "3"]).await.0, 0);
    assert_eq!(spread(addr, 8).await, [("s1".into(), 6), ("s2".into(), 2)]);
    // A state set through the API survives the rebuild of its backend.
    assert_eq!(ctl(api, &["state", "app", "s2", "drain"]).await.0, 0);
    let add = ["add", "app", "s3", &s3.addr.to_string()];
    let (code, out, err) = ctl(api, &add).await;
    assert_eq!(code, 0, "{out}{err}");
    assert_eq!(spread(addr, 8).await, [("s1".into(), 6), ("s3".into(), 2)]);
    assert_eq!(
        proxy.backend("app").unwrap().servers[1].admin_state(),
        tack_proxy::config::AdminState::Drain
    );
    // Remove: s1 leaves, nothing more reaches it.
    assert_eq!(ctl(api, &["remove", "app", "s1"]).await.0, 0);
    let s1_seen = s1.seen().len();
    assert_eq!(spread(addr, 4).await, [("s3".into(), 4)]);
    assert_eq!(s1.seen().len(), s1_seen);

    // Bad calls: a clear error, exit 1, counted; nothing changes.
    let (code, _, err) = ctl(api, &["state", "app", "nope", "drain"]).await;
    assert_eq!(code, 1);
    assert!(
        err.contains("404") && err.contains("no server named \\\"nope\\\""),
        "{err}"
    );
    let (code, _, err) = ctl(api, &["weight", "app", "s3", "999"]).await;
    assert_eq!(code, 1);
    assert!(err.contains("weight 999 out of range 0..=256"), "{err}");
    let (code, _, err) = ctl(api, &["state", "app", "s3", "sleepy"]).await;
    assert_eq!(code, 1);
    assert!(err.contains("unknown state"), "{err}");
    let (code, _, err) = ctl(api, &["add", "app", "s3", "127.0.0.1:1"]).await;
    assert_eq!(code, 1);
    assert!(err.contains("duplicate server name"), "{err}");
    let (code, _, err) = ctl(api, &["remove", "nope", "s3"]).await;
    assert_eq!(code, 1);
    assert!(
        err.contains("404") && err.contains("no such backend"),
        "{err}"
    );
    assert_eq!(spread(addr, 2).await, [("s3".into(), 2)]);

    // Reload re-reads the file: its servers and weights replace the API's;
    // s2 stays drained (a state set at run time stands unless the file
    // changes the server's state).
    let (code, _, err) = ctl(api, &["reload"]).await;
    assert_eq!(code, 0, "{err}");
    assert_eq!(spread(addr, 4).await, [("s1".into(), 4)]);
    assert_eq!(ctl(api, &["state", "app", "s2", "ready"]).await.0, 0);
    assert_eq!(spread(addr, 4).await, [("s1".into(), 2), ("s2".into(), 2)]);
    std::fs::write(&path, "frontends: [").unwrap();
    let (code, _, err) = ctl(api, &["reload"]).await;
    assert_eq!(code, 1);
    assert!(
        err.contains("reload refused") && err.contains("line"),
        "{err}"
    );
    assert_eq!(spread(addr, 2).await, [("s1".into(), 1), ("s2".into(), 1)]);

    let (_, out, _) = ctl(api, &["status"]).await;
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(v["api_errors"], 6);
    assert_eq!(v["reload_failures"], 3);
    assert_eq!(metric(&proxy, "tack_proxy_reload_failures_total"), 3);
    // Weight, add, remove and the reload of the file.
    assert_eq!(metric(&proxy, "tack_proxy_reloads_total"), 4);
    assert!(ctl(api, &["sessions"]).await.0 == 0);
    proxy.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn exposed_api_needs_the_token() {
    let s1 = TestServer::start("s1").await;
    // Reachable from elsewhere without a token: refused with the field.
    let e = tack_proxy::config::ProxyConfig::from_yaml_str(&config(
        "  listen: \"0.0.0.0:0\"\n",
        &[&s1],
    ))
    .unwrap_err()
    .to_string();
    assert!(
        e.starts_with("admin.token_file: the admin API on 0.0.0.0:0 is reachable from other hosts"),
        "{e}"
    );
    let dir = tempfile::tempdir().unwrap();
    let token = dir.path().join("token");
    std::fs::write(&token, "s3cret-token\n").unwrap();
    let cfg = config(
        &format!(
            "  listen: \"0.0.0.0:0\"\n  token_file: {}\n",
            token.display()
        ),
        &[&s1],
    );
    let proxy = start_proxy(&cfg).await;
    let api: std::net::SocketAddr = format!("127.0.0.1:{}", proxy.admin_addr().unwrap().port())
        .parse()
        .unwrap();
    let (code, _, err) = ctl(api, &["state", "app", "s1", "maint"]).await;
    assert_eq!(code, 1);
    assert!(err.contains("401"), "{err}");
    let wrong = dir.path().join("wrong");
    std::fs::write(&wrong, "s3cret-tokeN\n").unwrap();
    let w = wrong.display().to_string();
    assert!(
        ctl(api, &["--token-file", &w, "servers"])
            .await
            .2
            .contains("401")
    );
    let t = token.display().to_string();
    assert_eq!(
        proxy.backend("app").unwrap().servers[0].admin_state(),
        tack_proxy::config::AdminState::Up
    );
    let (code, _, err) = ctl(api, &["--token-file", &t, "state", "app", "s1", "maint"]).await;
    assert_eq!(code, 0, "{err}");
    assert_eq!(
        proxy.backend("app").unwrap().servers[0].admin_state(),
        tack_proxy::config::AdminState::Maint
    );
    let (_, out, _) = ctl(api, &["--token-file", &t, "status"]).await;
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(v["api_unauthorized"], 2);
    proxy.shutdown().await;
}
