//! The `tack-proxy` binary: configuration checks that name the field and line, a
//! profile's `proxy:` section, and a clean stop on SIGTERM.

mod support;

use std::process::{Command, Stdio};
use std::time::Duration;

use support::*;

const BIN: &str = env!("CARGO_BIN_EXE_tack-proxy");

fn configs_dir() -> std::path::PathBuf {
    std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../configs")
}

#[test]
fn shipped_configs_are_valid() {
    for f in ["proxy.yaml", "proxy-cache.yaml", "proxy-cdn.yaml"] {
        let out = Command::new(BIN)
            .arg("--check")
            .arg("--config")
            .arg(configs_dir().join(f))
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{f}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
}

#[test]
fn bad_config_names_field_and_line() {
    let dir = tempfile::tempdir().unwrap();
    let text = std::fs::read_to_string(configs_dir().join("proxy.yaml")).unwrap();
    let cases = [
        (
            text.replace("weight: 50,", "weigth: 50,"),
            "unknown field `weigth`",
        ),
        (
            text.replace("interval: 2s", "interval: 2 seconds"),
            "invalid duration",
        ),
        (
            text.replace("backend: app", "backend: nope"),
            "frontends[0].backend: no backend named \"nope\"",
        ),
    ];
    for (i, (bad, want)) in cases.iter().enumerate() {
        let p = dir.path().join(format!("bad{i}.yaml"));
        std::fs::write(&p, bad).unwrap();
        let out = Command::new(BIN)
            .arg("--check")
            .arg("--config")
            .arg(&p)
            .output()
            .unwrap();
        assert_eq!(out.status.code(), Some(2));
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains(want) && err.contains("line "), "{err}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn runs_a_profile_section_and_stops_on_sigterm() {
    let s1 = TestServer::start("s1").await;
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("profile.yaml");
    std::fs::write(
        &p,
        format!("# a Tack profile with other sections\ncores: [1]\nproxy:\n  frontends:\n    - {{ name: web, bind: [\"127.0.0.1:{port}\"], backend: app }}\n  backends:\n    - name: app\n      servers:\n        - {{ name: s1, address: \"{}\" }}\n", s1.addr),
    )
    .unwrap();
    let child = Command::new(BIN)
        .arg("--config")
        .arg(&p)
        .arg("--threads")
        .arg("1")
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut guard = ChildGuard(child);
    let addr: std::net::SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
    assert!(
        wait_until(Duration::from_secs(10), || std::net::TcpStream::connect(
            addr
        )
        .is_ok())
        .await
    );
    assert_eq!(get(addr, "/", &[]).await.body, "s1");
    let pid = guard.0.id().to_string();
    assert!(
        Command::new("kill")
            .arg("-TERM")
            .arg(&pid)
            .status()
            .unwrap()
            .success()
    );
    let t0 = std::time::Instant::now();
    let status = loop {
        if let Some(st) = guard.0.try_wait().unwrap() {
            break st;
        }
        assert!(
            t0.elapsed() < Duration::from_secs(10),
            "did not stop on SIGTERM"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    assert!(status.success(), "{status}");
}
