//! End to end: the two-tier array of seed 001 claim 1. `tack` schedules
//! connections in direct-server-return mode to two `tack-proxy`
//! load-balancing servers (on s1 and s2, holding the VIP on loopback),
//! which schedule each request to three nginx web servers and pin clients
//! with a cookie; the proxies answer the clients directly, never through
//! the scheduler.

mod common;

use std::collections::BTreeSet;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use common::lab::{LAB_LOCK, Lab, tackctl};
use common::{Bg, Tack, tack_bin};

const VIP: &str = "10.100.0.12";
const PORT: u16 = 8080;

/// The scheduler tier: DSR over the two load-balancing servers.
const SCHEDULER: &str = r#"  - name: lb-servers
    vip: 10.100.0.12
    port: 8080
    mode: dsr
    scheduler: rr
    servers:
      - { name: p1, address: 10.0.0.11 }
      - { name: p2, address: 10.0.0.12 }
"#;

/// A load-balancing server's configuration: the VIP (on the server's
/// loopback) to the three web servers, clients pinned by cookie.
const PROXY: &str = r#"frontends:
  - name: web
    bind: ["10.100.0.12:8080"]
    backend: app
backends:
  - name: app
    balance: { algorithm: roundrobin }
    cookie: { name: SERVERID, mode: insert }
    servers:
      - { name: web1, address: "10.0.0.11:80", cookie: w1 }
      - { name: web2, address: "10.0.0.12:80", cookie: w2 }
      - { name: web3, address: "10.0.0.13:80", cookie: w3 }
"#;

/// `tack-proxy`, built beside `tack` by `cargo test --workspace`.
fn proxy_bin() -> PathBuf {
    let p = tack_bin().with_file_name("tack-proxy");
    assert!(
        p.exists(),
        "{} is missing: build it with `cargo build -p tack-proxy` (cargo test --workspace does)",
        p.display()
    );
    p
}

/// The first sample of metric `name` whose labels contain every one of `with`.
fn metric(text: &str, name: &str, with: &[&str]) -> Option<u64> {
    text.lines()
        .filter(|l| l.starts_with(&format!("{name}{{")))
        .find(|l| with.iter().all(|w| l.contains(w)))
        .and_then(|l| l.rsplit(' ').next()?.parse().ok())
}

#[test]
fn proxies_behind_dsr_answer_directly_and_keep_cookie_pinned_clients() {
    let _g = LAB_LOCK.lock().unwrap_or_else(|p| p.into_inner());
    let lab = Lab::up();
    let (profile, sock) = lab.profile(1, SCHEDULER);
    let tack = Tack::start(&lab.lb(), &profile);
    let cfg = lab.dir.path("proxy.yaml");
    std::fs::write(&cfg, PROXY).expect("proxy config");
    let proxies: Vec<Bg> = ["s1", "s2"]
        .iter()
        .map(|s| {
            let bin = proxy_bin();
            let args = [
                bin.to_str().expect("utf-8"),
                "--config",
                cfg.to_str().expect("utf-8"),
                "--threads",
                "1",
            ];
            Bg(lab.spawn(s, &args))
        })
        .collect();
    // Both proxies listen on the VIP.
    let deadline = Instant::now() + Duration::from_secs(15);
    for s in ["s1", "s2"] {
        loop {
            let (_, out, _) = lab.exec(s, &["ss", "-Htln", &format!("sport = :{PORT}")]);
            if out.contains(VIP) {
                break;
            }
            assert!(
                Instant::now() < deadline,
                "tack-proxy on {s} does not listen"
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    // Clients with a cookie jar, each request on a new connection.
    let script = format!(
        r#"
import json, requests
out = {{}}
for c in range(4):
    s = requests.Session()
    seen = []
    for i in range(12):
        r = s.get("http://{VIP}:{PORT}/c%d/%d" % (c, i), headers={{"Connection": "close"}}, timeout=5)
        r.raise_for_status()
        web, proxy = r.text.split()[:2]
        seen.append([web, proxy])
    out[str(c)] = seen
print(json.dumps(out))
"#
    );
    let (ok, out, err) = lab.exec("c1", &["python3", "-c", &script]);
    assert!(ok, "client failed: {err}");
    let v: serde_json::Value = serde_json::from_str(out.trim()).expect("json");
    let mut proxies_seen = BTreeSet::new();
    let mut webs = BTreeSet::new();
    for (c, seen) in v.as_object().expect("clients") {
        let seen = seen.as_array().expect("requests");
        let web: BTreeSet<&str> = seen.iter().map(|p| p[0].as_str().unwrap()).collect();
        assert_eq!(
            web.len(),
            1,
            "client {c} pinned to one web server: {seen:?}"
        );
        webs.extend(web);
        for p in seen {
            proxies_seen.insert(p[1].as_str().unwrap().to_string());
        }
    }
    // Both load-balancing servers took connections (the web servers see
    // them as the client), and the clients spread over the web servers.
    assert_eq!(
        proxies_seen,
        BTreeSet::from(["10.0.0.11".to_string(), "10.0.0.12".to_string()]),
        "{v}"
    );
    assert!(webs.len() >= 2, "{webs:?}");
    // The scheduler saw the clients' packets only: the answers went from
    // the proxies straight to the clients.
    // At least the SYN and the request of each connection. The workers
    // publish their counters every 100 ms, so the last ones may lag: the
    // metrics are read until they are there (2 s at most).
    let vip = "service=\"lb-servers\"".to_string();
    let deadline = Instant::now() + Duration::from_secs(2);
    let (m, inbound, outbound) = loop {
        let m = tackctl(&sock, "metrics");
        let count = |dir: &str| metric(&m, "tack_service_packets_total", &[&vip, dir]);
        let (inbound, outbound) = (count("direction=\"in\""), count("direction=\"out\""));
        if inbound.unwrap_or(0) >= 4 * 12 * 2 || Instant::now() > deadline {
            break (m, inbound, outbound);
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    assert!(inbound.unwrap_or(0) >= 4 * 12 * 2, "{m}");
    assert_eq!(outbound, Some(0), "{m}");
    drop(proxies);
    let report = tack.stop();
    assert!(report.contains("mbufs in use after stop: 0"), "{report}");
}
