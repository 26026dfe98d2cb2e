//! The health checks' probe against real servers on loopback: `openssl
//! s_server` for HTTPS (with and without verifying its certificate), a
//! plain listener for TCP, and refusals.

mod common;

use std::net::{IpAddr, Ipv4Addr, TcpListener};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::TempDir;
use tack_control::health::{Target, Transport, probe};
use tack_control::profile::{CheckKind, HealthSection};

fn check(kind: CheckKind) -> HealthSection {
    HealthSection {
        check: kind,
        port: None,
        path: "/".into(),
        host: None,
        expect: vec![],
        body: None,
        ca: None,
        sni: None,
        passive: None,
        interval_ms: 1000,
        timeout_ms: 2000,
        rise: 1,
        fall: 1,
    }
}

fn target(port: u16, check: HealthSection) -> Target {
    Target {
        service: "web".into(),
        server: "s1".into(),
        addr: IpAddr::V4(Ipv4Addr::LOCALHOST),
        port,
        check,
    }
}

/// `openssl ARGS`, which must succeed.
fn openssl(args: &[&str]) {
    let out = Command::new("openssl")
        .args(args)
        .output()
        .expect("openssl");
    assert!(
        out.status.success(),
        "openssl {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// A CA named `name` in `dir`, and a certificate for `localhost` it signed:
/// (CA certificate, server certificate, server key).
fn certificate(
    dir: &TempDir,
    name: &str,
) -> (std::path::PathBuf, std::path::PathBuf, std::path::PathBuf) {
    let p = |f: &str| dir.path(&format!("{name}-{f}"));
    let s = |f: &str| p(f).to_str().expect("utf-8").to_string();
    let ec = [
        "-newkey",
        "ec",
        "-pkeyopt",
        "ec_paramgen_curve:P-256",
        "-nodes",
    ];
    let mut ca = vec!["req", "-x509", "-days", "1", "-subj", "/CN=test CA"];
    ca.extend(ec);
    let (ca_key, ca_cert) = (s("ca.key"), s("ca.pem"));
    ca.extend(["-keyout", &ca_key, "-out", &ca_cert]);
    openssl(&ca);
    let mut csr = vec!["req", "-new", "-subj", "/CN=localhost"];
    csr.extend(ec);
    let (key, req) = (s("server.key"), s("server.csr"));
    csr.extend(["-keyout", &key, "-out", &req]);
    openssl(&csr);
    let ext = p("ext.cnf");
    std::fs::write(
        &ext,
        "subjectAltName=DNS:localhost\nbasicConstraints=CA:FALSE\n",
    )
    .unwrap();
    let cert = s("server.pem");
    openssl(&[
        "x509",
        "-req",
        "-days",
        "1",
        "-in",
        &req,
        "-CA",
        &ca_cert,
        "-CAkey",
        &ca_key,
        "-CAcreateserial",
        "-extfile",
        ext.to_str().unwrap(),
        "-out",
        &cert,
    ]);
    (p("ca.pem"), p("server.pem"), p("server.key"))
}

/// A free loopback port.
fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// `openssl s_server -www` on `port`, killed on drop.
struct Server(Child);

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn tls_server(port: u16, cert: &Path, key: &Path) -> Server {
    let child = Command::new("openssl")
        .args([
            "s_server",
            "-quiet",
            "-www",
            "-accept",
            &format!("127.0.0.1:{port}"),
        ])
        .arg("-cert")
        .arg(cert)
        .arg("-key")
        .arg(key)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("openssl s_server");
    let deadline = Instant::now() + Duration::from_secs(10);
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(Instant::now() < deadline, "s_server did not start");
        std::thread::sleep(Duration::from_millis(50));
    }
    Server(child)
}

fn run(t: &Target) -> Result<(), String> {
    let transport = Transport::of(&t.check)?;
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
        .block_on(probe(t, &transport))
}

#[test]
fn https_checks_verify_what_they_are_told_to() {
    let dir = TempDir::new();
    let (ca, cert, key) = certificate(&dir, "server");
    let (other, _, _) = certificate(&dir, "other");
    let port = free_port();
    let _server = tls_server(port, &cert, &key);

    // Without a CA: the server answers, that is enough.
    assert_eq!(run(&target(port, check(CheckKind::Https))), Ok(()));
    // With its own certificate as CA, under its name.
    let mut verified = check(CheckKind::Https);
    verified.ca = Some(ca);
    verified.sni = Some("localhost".into());
    assert_eq!(run(&target(port, verified.clone())), Ok(()));
    // Another CA: refused in the handshake.
    verified.ca = Some(other);
    let e = run(&target(port, verified)).unwrap_err();
    assert!(e.starts_with("TLS:"), "{e}");
    // The body `s_server -www` sends, and a string it does not hold.
    let mut body = check(CheckKind::Https);
    body.body = Some("Ciphers".into());
    assert_eq!(run(&target(port, body.clone())), Ok(()));
    body.body = Some("no such text".into());
    assert!(run(&target(port, body)).is_err());
    // Plain HTTP to a TLS port gets no HTTP answer.
    assert!(run(&target(port, check(CheckKind::Http))).is_err());
}

#[test]
fn tcp_checks_pass_on_a_listener_and_fail_on_a_closed_port() {
    // On 127.0.0.3, where the other test's server never listens. A port
    // closed here may be taken at once by something else on the machine:
    // then another one is tried.
    for _ in 0..10 {
        let l = TcpListener::bind("127.0.0.3:0").unwrap();
        let port = l.local_addr().unwrap().port();
        let mut t = target(port, check(CheckKind::Tcp));
        t.addr = IpAddr::V4(Ipv4Addr::new(127, 0, 0, 3));
        assert_eq!(run(&t), Ok(()));
        drop(l);
        if let Err(e) = run(&t) {
            assert!(e.starts_with("connect:"), "{e}");
            return;
        }
    }
    panic!("no closed port found on 127.0.0.3");
}
