//! Reload without dropping connections: `tack-proxy` under `wrk` load is sent
//! `SIGHUP` with a new configuration (the backend's server replaced), then with
//! a broken one: wrk sees no socket error and no non-2xx response, the new
//! server takes the traffic after the first reload, and the broken file is
//! refused with its field and line while the running configuration serves on.

mod support;

use std::process::{Command, Stdio};
use std::time::Duration;

use support::nginx::free_port;
use support::*;

const BIN: &str = env!("CARGO_BIN_EXE_tack-proxy");

fn config(port: u16, server: &TestServer) -> String {
    format!(
        "frontends:\n  - name: web\n    bind: [\"127.0.0.1:{port}\"]\n    access_log: false\n    backend: app\n    use_backend:\n      - {{ backend: app, path_prefix: /api/ }}\nbackends:\n  - name: app\n    servers:\n      - {{ name: {}, address: \"{}\" }}\n",
        server.name, server.addr
    )
}

fn hup(pid: u32) {
    let ok = Command::new("kill")
        .args(["-HUP", &pid.to_string()])
        .status()
        .unwrap()
        .success();
    assert!(ok, "kill -HUP {pid}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sighup_under_wrk_load_drops_nothing_and_a_broken_file_keeps_the_old_configuration() {
    require_tool("wrk");
    let old = TestServer::start("old").await;
    let new = TestServer::start("new").await;
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("proxy.yaml");
    let port = free_port();
    std::fs::write(&path, config(port, &old)).unwrap();
    let log = std::fs::File::create(dir.path().join("stderr")).unwrap();
    let child = Command::new(BIN)
        .arg("--config")
        .arg(&path)
        .args(["--threads", "1"])
        .stdout(Stdio::null())
        .stderr(log)
        .spawn()
        .unwrap();
    let pid = child.id();
    let _guard = ChildGuard(child);
    let addr: std::net::SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
    assert!(
        wait_until(Duration::from_secs(10), || std::net::TcpStream::connect(
            addr
        )
        .is_ok())
        .await,
        "tack-proxy did not start"
    );
    assert_eq!(get(addr, "/api/x", &[]).await.body, "old");

    let wrk = tokio::task::spawn_blocking(move || {
        Command::new("wrk")
            .args(["-t1", "-c8", "-d4s", &format!("http://{addr}/api/load")])
            .output()
            .unwrap()
    });
    tokio::time::sleep(Duration::from_millis(1200)).await;
    std::fs::write(&path, config(port, &new)).unwrap();
    hup(pid);
    tokio::time::sleep(Duration::from_millis(1200)).await;
    let broken = config(port, &new).replace("path_prefix: /api/", "path_regex: \"^/api(\"");
    std::fs::write(&path, broken).unwrap();
    hup(pid);
    let out = wrk.await.unwrap();
    let report = String::from_utf8_lossy(&out.stdout).to_string();
    assert!(out.status.success(), "wrk: {report}");
    assert!(
        !report.contains("Socket errors"),
        "wrk saw socket errors:\n{report}"
    );
    assert!(
        !report.contains("Non-2xx"),
        "wrk saw non-2xx responses:\n{report}"
    );
    // Both configurations served wrk's connections.
    let (o, n) = (old.seen().len(), new.seen().len());
    assert!(o > 10 && n > 10, "old {o}, new {n}:\n{report}");
    // The broken file was refused: named field and line; the new configuration
    // still serves.
    let stderr = std::fs::read_to_string(dir.path().join("stderr")).unwrap();
    assert!(
        stderr.contains("reload of")
            && stderr
                .contains("frontends[0].use_backend[0].path_regex: invalid regular expression")
            && stderr.contains("(line 7)"),
        "{stderr}"
    );
    assert_eq!(get(addr, "/api/x", &[]).await.body, "new");
    assert_eq!(
        old.seen().len(),
        o,
        "nothing reaches the old server after the reload"
    );
}
