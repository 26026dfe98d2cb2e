//! TLS termination with real clients: `curl --cacert`, `openssl s_client` and
//! `nghttp` against tack-proxy frontends with certificates made by the test.
//! SNI picks the certificate, ALPN negotiates h2, TLS 1.2 and 1.3 both work,
//! a certificate replaced on disk is served to new connections while an
//! established one goes on, sessions resume across two proxies sharing a
//! ticket-key file (also after a rotation), and client certificates are checked.

mod support;

use std::net::SocketAddr;
use std::time::Duration;

use support::pki::{Pki, replace_file, run_with_input, s_client};
use support::*;

fn tls_yaml(servers: &[TestServer], tls: &str) -> String {
    let mut s = format!(
        "frontends:\n  - name: web\n    bind: [\"127.0.0.1:0\"]\n    backend: app\n    access_log: false\n    tls:\n{tls}\nbackends:\n  - name: app\n    servers:\n"
    );
    for srv in servers {
        s.push_str(&format!(
            "      - {{ name: {}, address: \"{}\" }}\n",
            srv.name, srv.addr
        ));
    }
    s
}

fn certs_yaml(pairs: &[&support::pki::Issued]) -> String {
    let mut s = String::from("      certificates:\n");
    for p in pairs {
        s.push_str(&format!(
            "        - {{ cert: \"{}\", key: \"{}\" }}\n",
            p.cert.display(),
            p.key.display()
        ));
    }
    s
}

/// `curl` over HTTPS to `name` resolved to `addr`, verifying against the CA.
fn curl(pki: &Pki, addr: SocketAddr, name: &str, extra: &[&str]) -> (bool, String) {
    let resolve = format!("{name}:{}:127.0.0.1", addr.port());
    let url = format!("https://{name}:{}/", addr.port());
    let ca = pki.ca.display().to_string();
    let mut args = vec![
        "-sS",
        "--max-time",
        "10",
        "--cacert",
        &ca,
        "--resolve",
        &resolve,
        "-w",
        " http=%{http_version}",
    ];
    args.extend_from_slice(extra);
    args.push(&url);
    run_with_input("curl", &args, "")
}

/// The organisation in the subject of the certificate `openssl s_client` saw.
fn served_org(out: &str) -> String {
    out.lines()
        .find_map(|l| l.strip_prefix("subject="))
        .and_then(|s| s.split(", ").find_map(|p| p.strip_prefix("O = ")))
        .unwrap_or_else(|| panic!("no subject in s_client output:\n{out}"))
        .to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sni_alpn_versions_and_reload_with_real_clients() {
    for t in ["curl", "openssl", "nghttp"] {
        require_tool(t);
    }
    let pki = Pki::new("tack test CA");
    let a = pki.server("a", &["a.test"], "cert-a");
    let b = pki.server("b", &["b.test", "*.b.test"], "cert-b");
    let servers = vec![TestServer::start("s1").await];
    let yaml = tls_yaml(
        &servers,
        &format!("{}      reload_interval: 100ms\n", certs_yaml(&[&a, &b])),
    );
    let proxy = start_proxy(&yaml).await;
    let addr = proxy.local_addr("web").unwrap();

    // curl verifies the chain and the name: each name gets its own certificate.
    for name in ["a.test", "b.test", "www.b.test"] {
        let (ok, out) = curl(&pki, addr, name, &["--http1.1"]);
        assert!(ok, "curl {name}: {out}");
        assert_eq!(out, "s1 http=1.1", "{name}");
    }
    // openssl s_client: the certificate per SNI, the first one without SNI or for
    // a name no certificate covers.
    for (sni, org) in [
        (Some("a.test"), "cert-a"),
        (Some("b.test"), "cert-b"),
        (Some("x.b.test"), "cert-b"),
        (Some("other.test"), "cert-a"),
        (None, "cert-a"),
    ] {
        let mut args = vec!["-CAfile", pki.ca.to_str().unwrap()];
        match sni {
            Some(n) => args.extend(["-servername", n]),
            None => args.push("-noservername"),
        }
        let out = s_client(addr, &args);
        assert_eq!(served_org(&out), org, "SNI {sni:?}");
        assert!(out.contains("HTTP/1.1 200"), "SNI {sni:?}: {out}");
    }
    // TLS 1.2 and 1.3.
    for (flag, proto) in [("-tls1_2", "TLSv1.2"), ("-tls1_3", "TLSv1.3")] {
        let out = s_client(addr, &["-servername", "a.test", flag]);
        assert!(
            out.contains(&format!("Protocol  : {proto}")) || out.contains(&format!("New, {proto}")),
            "{flag}: {out}"
        );
        assert!(out.contains("HTTP/1.1 200"), "{flag}: {out}");
    }
    // h2 by ALPN: curl uses it, nghttp reports it.
    let (ok, out) = curl(&pki, addr, "a.test", &["--http2"]);
    assert!(ok && out == "s1 http=2", "curl --http2: {out}");
    let url = format!("https://127.0.0.1:{}/", addr.port());
    let (ok, out) = run_with_input("nghttp", &["-v", &url], "");
    assert!(ok, "nghttp: {out}");
    assert!(out.contains("The negotiated protocol: h2"), "{out}");
    assert!(out.contains(":status: 200"), "{out}");
    assert!(metric(&proxy, "tack_proxy_frontend_tls_alpn_h2_total") >= 2);

    // An established connection (HTTP/1.1 keep-alive, through rustls) survives a
    // certificate replaced on disk; new connections get the new certificate.
    let mut held = support::pki::TlsClient::connect(addr, "a.test", &pki.ca).await;
    assert_eq!(held.get("/one").await, "s1");
    let first_cert = support::pki::cert_der(&a.cert);
    assert_eq!(held.peer_cert(), first_cert);
    let reloads = metric(&proxy, "tack_proxy_frontend_tls_reloads_total");
    pki.server("a", &["a.test"], "cert-a-renewed");
    assert!(
        wait_until(Duration::from_secs(5), || metric(
            &proxy,
            "tack_proxy_frontend_tls_reloads_total"
        ) > reloads)
        .await,
        "the new certificate was not loaded"
    );
    assert!(
        wait_until(Duration::from_secs(5), || served_org(&s_client(
            addr,
            &["-servername", "a.test"]
        )) == "cert-a-renewed")
        .await
    );
    let (ok, out) = curl(&pki, addr, "a.test", &[]);
    assert!(ok, "curl after the reload: {out}");
    assert_eq!(held.get("/two").await, "s1", "the held connection goes on");
    assert_eq!(held.peer_cert(), first_cert);
    assert_ne!(support::pki::cert_der(&a.cert), first_cert);
    // A broken file is refused, counted, and the certificate in use stays.
    let errors = metric(&proxy, "tack_proxy_frontend_tls_reload_errors_total");
    replace_file(&a.cert, b"-----BEGIN CERTIFICATE-----\nbroken\n");
    assert!(
        wait_until(Duration::from_secs(5), || metric(
            &proxy,
            "tack_proxy_frontend_tls_reload_errors_total"
        ) > errors)
        .await
    );
    assert_eq!(
        served_org(&s_client(addr, &["-servername", "a.test"])),
        "cert-a-renewed"
    );
    assert!(metric(&proxy, "tack_proxy_frontend_tls_handshakes_total") >= 12);
    proxy.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sessions_resume_across_proxies_sharing_ticket_keys() {
    require_tool("openssl");
    let pki = Pki::new("tack test CA");
    let a = pki.server("a", &["a.test"], "cert-a");
    let keys = pki.path("tickets.key");
    // Keys made as the documentation says.
    let key = || {
        let (ok, k) = run_with_input("sh", &["-c", "openssl rand 80 | openssl base64 -A"], "");
        assert!(ok, "{k}");
        k
    };
    let (k1, k2) = (key(), key());
    std::fs::write(&keys, format!("{k1}\n")).unwrap();
    let servers = vec![TestServer::start("s1").await];
    let tls = format!(
        "{}      reload_interval: 100ms\n      tickets: {{ key_file: \"{}\" }}\n",
        certs_yaml(&[&a]),
        keys.display()
    );
    let p1 = start_proxy(&tls_yaml(&servers, &tls)).await;
    let p2 = start_proxy(&tls_yaml(&servers, &tls)).await;
    let (a1, a2) = (p1.local_addr("web").unwrap(), p2.local_addr("web").unwrap());
    let sess = pki.path("sess.pem");
    let sess_s = sess.to_str().unwrap().to_string();
    for flag in ["-tls1_2", "-tls1_3"] {
        let out = s_client(a1, &["-servername", "a.test", flag, "-sess_out", &sess_s]);
        assert!(out.contains("New, TLSv1."), "{flag}: {out}");
        // The other proxy resumes the session the first one issued.
        let out = s_client(a2, &["-servername", "a.test", flag, "-sess_in", &sess_s]);
        assert!(
            out.contains("Reused, TLSv1."),
            "{flag} on the second proxy: {out}"
        );
        assert!(out.contains("HTTP/1.1 200"), "{out}");
    }
    // Rotation: a key appended to the file; a ticket issued afterwards is sealed
    // with the next-to-last key (k1), which a proxy that has not reloaded yet
    // also holds, and resumes on the other proxy.
    std::fs::write(&keys, format!("{k1}\n{k2}\n")).unwrap();
    assert!(
        wait_until(Duration::from_secs(5), || metric(
            &p1,
            "tack_proxy_frontend_tls_reloads_total"
        ) > 0
            && metric(&p2, "tack_proxy_frontend_tls_reloads_total") > 0)
        .await
    );
    let out = s_client(
        a1,
        &["-servername", "a.test", "-tls1_3", "-sess_out", &sess_s],
    );
    assert!(out.contains("New, TLSv1.3"), "{out}");
    let out = s_client(
        a2,
        &["-servername", "a.test", "-tls1_3", "-sess_in", &sess_s],
    );
    assert!(out.contains("Reused, TLSv1.3"), "after rotation: {out}");
    assert!(metric(&p2, "tack_proxy_frontend_tls_resumed_total") >= 3);
    p1.shutdown().await;
    p2.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn client_certificates_are_verified_when_asked() {
    require_tool("curl");
    let pki = Pki::new("tack test CA");
    let a = pki.server("a", &["a.test"], "cert-a");
    let client = pki.client("client", "alice");
    let other = Pki::new("another CA");
    let stranger = other.client("stranger", "mallory");
    let servers = vec![TestServer::start("s1").await];
    let tls = format!(
        "{}      client_auth: {{ ca: \"{}\" }}\n",
        certs_yaml(&[&a]),
        pki.ca.display()
    );
    let proxy = start_proxy(&tls_yaml(&servers, &tls)).await;
    let addr = proxy.local_addr("web").unwrap();
    let (ok, out) = curl(&pki, addr, "a.test", &[]);
    assert!(!ok, "no client certificate must be refused: {out}");
    let (cert, key) = (client.cert.to_str().unwrap(), client.key.to_str().unwrap());
    let (ok, out) = curl(&pki, addr, "a.test", &["--cert", cert, "--key", key]);
    assert!(
        ok && out.starts_with("s1"),
        "with a client certificate: {out}"
    );
    let (sc, sk) = (
        stranger.cert.to_str().unwrap(),
        stranger.key.to_str().unwrap(),
    );
    let (ok, out) = curl(&pki, addr, "a.test", &["--cert", sc, "--key", sk]);
    assert!(!ok, "a certificate of another CA must be refused: {out}");
    assert!(metric(&proxy, "tack_proxy_frontend_tls_handshake_failures_total") >= 2);
    proxy.shutdown().await;

    // Optional: clients without a certificate are served, bad ones still refused.
    let tls = format!(
        "{}      client_auth: {{ ca: \"{}\", required: false }}\n",
        certs_yaml(&[&a]),
        pki.ca.display()
    );
    let proxy = start_proxy(&tls_yaml(&servers, &tls)).await;
    let addr = proxy.local_addr("web").unwrap();
    let (ok, out) = curl(&pki, addr, "a.test", &[]);
    assert!(ok, "optional: {out}");
    let (ok, _) = curl(&pki, addr, "a.test", &["--cert", sc, "--key", sk]);
    assert!(!ok);
    proxy.shutdown().await;
}

#[test]
fn check_reads_the_tls_files_of_the_shipped_example() {
    let bin = env!("CARGO_BIN_EXE_tack-proxy");
    let pki = Pki::new("tack test CA");
    let _www = pki.server("www", &["www.example.com"], "www");
    let _api = pki.server("api", &["api.example.com"], "api");
    let (ok, key) = run_with_input("sh", &["-c", "openssl rand 80 | openssl base64 -A"], "");
    assert!(ok);
    std::fs::write(pki.path("tickets.key"), key).unwrap();
    std::fs::copy(&pki.ca, pki.path("servers-ca.pem")).unwrap();
    let example = std::fs::read_to_string(
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../configs/proxy-tls.yaml"),
    )
    .unwrap();
    let dir = pki.dir.path().display().to_string();
    let text = example.replace("/etc/tack/tls", &dir);
    let check = |text: &str| {
        let p = pki.path("cfg.yaml");
        std::fs::write(&p, text).unwrap();
        let out = std::process::Command::new(bin)
            .args(["--check", "--config", p.to_str().unwrap()])
            .output()
            .unwrap();
        (
            out.status.code(),
            String::from_utf8_lossy(&out.stderr).to_string(),
        )
    };
    assert_eq!(check(&text), (Some(0), String::new()));
    // The example as shipped names files this machine does not have.
    let (code, err) = check(&example);
    assert_eq!(code, Some(2));
    assert!(err.contains("/etc/tack/tls/www.pem"), "{err}");
    // A key that does not belong to the certificate.
    let (code, err) = check(&text.replace("www.key", "api.key"));
    assert_eq!(code, Some(2));
    assert!(err.contains("does not fit"), "{err}");
    // A bad ticket-key file names the line.
    std::fs::write(pki.path("tickets.key"), "# keys\nshort\n").unwrap();
    let (code, err) = check(&text);
    assert_eq!(code, Some(2));
    assert!(err.contains("line 2"), "{err}");
}
