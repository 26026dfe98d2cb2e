//! End to end in the lab: the management API and `/metrics` of a running
//! `tack`, from the LB namespace (where `tack` listens) with curl, a real
//! Prometheus server, promtool, schemathesis and misbehaving clients.

mod common;

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::lab::{LAB_LOCK, Lab, root, tackctl};
use common::{Bg, Tack, sh};
use serde_json::Value;

/// The lab's web service, weights 1:2:3.
const WEB: &str = r#"  - name: web
    vip: 10.100.0.10
    port: 80
    scheduler: wrr
    mode: nat
    servers:
      - { name: s1, address: 10.0.0.11, weight: 1 }
      - { name: s2, address: 10.0.0.12, weight: 2 }
      - { name: s3, address: 10.0.0.13, weight: 3 }
"#;

const TOKEN: &str = "lab-token-7f3a9c";

/// A lab profile whose management section also has `http` (the given
/// YAML lines, indented under `http:`).
fn with_http(profile: &Path, http: &str) {
    let text = std::fs::read_to_string(profile).unwrap();
    let text = text.replacen("management:\n", &format!("management:\n  http:\n{http}"), 1);
    std::fs::write(profile, text).unwrap();
}

/// An HTTP request from the LB namespace: (status, body).
fn api(
    lab: &Lab,
    method: &str,
    path: &str,
    body: Option<&str>,
    token: Option<&str>,
) -> (u16, String) {
    let url = format!("http://127.0.0.1:9180{path}");
    let auth = token.map(|t| format!("Authorization: Bearer {t}"));
    let mut args = vec![
        "curl",
        "-sS",
        "-m",
        "10",
        "-X",
        method,
        "-w",
        "\n%{http_code}",
    ];
    if let Some(a) = &auth {
        args.extend(["-H", a]);
    }
    if let Some(b) = body {
        args.extend(["-H", "Content-Type: application/json", "--data-binary", b]);
    }
    args.push(&url);
    let (ok, out, err) = lab.exec("lb", &args);
    assert!(ok, "curl {method} {path}: {err}");
    let (body, code) = out.rsplit_once('\n').expect("status line");
    (code.trim().parse().expect("status"), body.to_string())
}

/// The value of the sample `series` (name and labels as written) in `text`.
fn metric(text: &str, series: &str) -> u64 {
    text.lines()
        .find_map(|l| l.strip_prefix(series)?.trim().parse().ok())
        .unwrap_or_else(|| panic!("no {series} in:\n{text}"))
}

/// The error message of a refusal (its JSON `error`).
fn error_of(body: &str) -> String {
    let v: Value = serde_json::from_str(body).unwrap_or_else(|e| panic!("{body}: {e}"));
    v["error"]
        .as_str()
        .unwrap_or_else(|| panic!("no error in {body}"))
        .to_string()
}

/// Each server's (name, weight, state) of every service.
fn servers(lab: &Lab) -> Vec<(String, String, u64, String)> {
    let (code, body) = api(lab, "GET", "/services", None, Some(TOKEN));
    assert_eq!(code, 200, "{body}");
    let v: Value = serde_json::from_str(&body).unwrap();
    let mut out = Vec::new();
    for svc in v.as_array().unwrap() {
        for s in svc["servers"].as_array().unwrap() {
            out.push((
                svc["name"].as_str().unwrap().to_string(),
                s["name"].as_str().unwrap().to_string(),
                s["weight"].as_u64().unwrap(),
                s["state"].as_str().unwrap().to_string(),
            ));
        }
    }
    out
}

/// Runs a PromQL query through Prometheus's HTTP API: label `server` → value.
fn promql(lab: &Lab, query: &str) -> std::collections::BTreeMap<String, u64> {
    let q = format!("query={query}");
    let (ok, out, err) = lab.exec(
        "lb",
        &[
            "curl",
            "-sS",
            "-m",
            "5",
            "-G",
            "--data-urlencode",
            &q,
            "http://127.0.0.1:9090/api/v1/query",
        ],
    );
    if !ok {
        eprintln!("prometheus query: {err}");
        return Default::default();
    }
    let v: Value = serde_json::from_str(&out).unwrap_or_default();
    v["data"]["result"]
        .as_array()
        .map(|r| {
            r.iter()
                .filter_map(|x| {
                    let server = x["metric"]["server"].as_str()?.to_string();
                    let value = x["value"][1].as_str()?.parse::<f64>().ok()? as u64;
                    Some((server, value))
                })
                .collect()
        })
        .unwrap_or_default()
}

/// Off loopback with a token: requests without it get 401. A real
/// Prometheus (with the token) scrapes `/metrics`, and a PromQL query
/// matches the connections the test opened per server; promtool accepts
/// the text. Malformed JSON, unknown servers and out-of-range weights get
/// a 4xx with a message and change nothing. A runtime change is reverted
/// by a reload, which says so. Schemathesis, against the OpenAPI document,
/// finds no 5xx and no answer the document does not allow.
#[test]
fn api_metrics_and_refusals_in_the_lab() {
    let _g = LAB_LOCK.lock().unwrap_or_else(|e| e.into_inner());
    let lab = Lab::up();
    let (profile, socket) = lab.profile(1, WEB);
    let token_file = lab.dir.path("token");
    std::fs::write(&token_file, format!("{TOKEN}\n")).unwrap();
    with_http(
        &profile,
        &format!(
            "    listen: 0.0.0.0:9180\n    token_file: {}\n",
            token_file.display()
        ),
    );
    let mut tack = Tack::start(&lab.lb(), &profile);

    // The token.
    let (code, body) = api(&lab, "GET", "/status", None, None);
    assert_eq!(code, 401, "{body}");
    assert!(error_of(&body).contains("bearer token"), "{body}");
    let (code, _) = api(&lab, "GET", "/status", None, Some("wrong"));
    assert_eq!(code, 401);
    let (code, body) = api(&lab, "GET", "/status", None, Some(TOKEN));
    assert_eq!(code, 200, "{body}");

    // Prometheus scrapes every second, with the token.
    let prom_dir = lab.dir.path("prometheus");
    std::fs::create_dir_all(&prom_dir).unwrap();
    let prom_cfg = prom_dir.join("prometheus.yml");
    std::fs::write(
        &prom_cfg,
        format!(
            "global:\n  scrape_interval: 1s\n  evaluation_interval: 1s\nscrape_configs:\n  - job_name: tack\n    authorization:\n      type: Bearer\n      credentials_file: {}\n    static_configs:\n      - targets: ['127.0.0.1:9180']\n",
            token_file.display()
        ),
    )
    .unwrap();
    let prom = Command::new("ip")
        .args(["netns", "exec", &lab.ns("lb"), "prometheus"])
        .arg(format!("--config.file={}", prom_cfg.display()))
        .arg(format!(
            "--storage.tsdb.path={}",
            prom_dir.join("data").display()
        ))
        .args(["--web.listen-address=127.0.0.1:9090", "--log.level=warn"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("run prometheus (Debian package prometheus: ./scripts/setup.sh)");
    let _prom = Bg(prom);

    let hits = lab.hits("c1", "http://10.100.0.10/", 36, &[]);
    assert_eq!(hits.errors, 0, "{hits:?}");
    assert_eq!(hits.servers.values().sum::<u64>(), 36, "{hits:?}");
    let query = "tack_server_connections_total{job=\"tack\",service=\"web\"}";
    let deadline = Instant::now() + Duration::from_secs(30);
    let seen = loop {
        let seen = promql(&lab, query);
        if seen == hits.servers || Instant::now() > deadline {
            break seen;
        }
        std::thread::sleep(Duration::from_millis(500));
    };
    assert_eq!(
        seen, hits.servers,
        "Prometheus {query} against the connections opened"
    );

    // promtool accepts the exposition.
    let (code, metrics) = api(&lab, "GET", "/metrics", None, Some(TOKEN));
    assert_eq!(code, 200);
    let text = lab.dir.path("metrics.txt");
    std::fs::write(&text, &metrics).unwrap();
    let out = Command::new("sh")
        .arg("-c")
        .arg(format!("promtool check metrics < {}", text.display()))
        .output()
        .expect("run promtool");
    assert!(
        out.status.success(),
        "promtool check metrics: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    for family in [
        "tack_port_packets_total",
        "tack_worker_drops_total",
        "tack_service_packets_total",
        "tack_server_active_connections",
        "tack_worker_sticky_hits_total",
    ] {
        assert!(metrics.contains(&format!("# TYPE {family} ")), "{family}");
    }

    // tackctl: filtered counts and flushes, --json, top.
    let count = |filter: &str| -> u64 {
        let out = tackctl(&socket, &format!("connections count {filter}"));
        out.trim()
            .parse()
            .unwrap_or_else(|_| panic!("count: {out}"))
    };
    let (on_s1, on_s3) = (
        count("service web server s1"),
        count("service web server s3"),
    );
    assert!(
        on_s1 > 0 && on_s3 > 0,
        "the lingering connections are counted: {on_s1} {on_s3}"
    );
    assert_eq!(count("client 10.99.99.0/24"), 0);
    tackctl(&socket, "connections flush service web server s1");
    assert_eq!(count("service web server s1"), 0);
    assert_eq!(
        count("service web server s3"),
        on_s3,
        "other servers' connections stay"
    );
    let json = tackctl(&socket, "--json services");
    let v: Value = serde_json::from_str(&json).unwrap_or_else(|e| panic!("{json}: {e}"));
    assert_eq!(v[0]["servers"][2]["name"], "s3");
    let top = Command::new(env!("CARGO_BIN_EXE_tackctl"))
        .arg("--socket")
        .arg(&socket)
        .args(["--interval", "0.2", "--iterations", "2", "top"])
        .output()
        .expect("tackctl top");
    let top = String::from_utf8_lossy(&top.stdout);
    assert!(
        top.contains("conn/s") && top.lines().filter(|l| l.starts_with("web ")).count() >= 6,
        "{top}"
    );
    // LocalDirector's sticky with the first-octet form: c2's two addresses
    // (172.16.1.5, 172.16.200.9) share one key and one server; c1 (11/8,
    // not in 172) is keyed by its address. Then a flush by key.
    let set = tackctl(&socket, "sticky web 5 172");
    assert!(
        set.contains("natural-class persistence, 5 minute(s) for 172"),
        "{set}"
    );
    let h = lab.hits(
        "c2",
        "http://10.100.0.10/",
        6,
        &["172.16.1.5", "172.16.200.9"],
    );
    assert_eq!(h.servers.len(), 1, "one natural class, one server: {h:?}");
    lab.hits("c1", "http://10.100.0.10/", 2, &[]);
    let sticky = tackctl(&socket, "sticky show web");
    assert!(
        sticky.contains("172.16.0.0/16") && sticky.contains("11.1.2.3/32"),
        "{sticky}"
    );
    let (code, body) = api(
        &lab,
        "DELETE",
        "/sticky?service=web&key=172.16.0.0/16",
        None,
        Some(TOKEN),
    );
    assert_eq!(code, 200, "{body}");
    std::thread::sleep(Duration::from_millis(100));
    let sticky = tackctl(&socket, "sticky show web");
    assert!(
        !sticky.contains("172.16.0.0/16") && sticky.contains("11.1.2.3/32"),
        "{sticky}"
    );
    let (code, body) = api(
        &lab,
        "GET",
        "/sticky?service=web&key=11.1.2.3",
        None,
        Some(TOKEN),
    );
    assert_eq!(code, 200, "{body}");
    let one: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(one.as_array().map(Vec::len), Some(1), "{body}");
    assert_eq!(one[0]["key"], "11.1.2.3/32");
    tackctl(&socket, "sticky web 0");

    // Refusals change nothing.
    let before = servers(&lab);
    let epochs = |lab: &Lab| {
        let (_, b) = api(lab, "GET", "/status", None, Some(TOKEN));
        serde_json::from_str::<Value>(&b).unwrap()["epochs"]
            .as_u64()
            .unwrap()
    };
    let epoch = epochs(&lab);
    let refused = [
        (
            "POST",
            "/services/web/servers",
            Some("{\"address\": \"10.0.0.14\""),
            400,
            "JSON",
        ),
        (
            "PATCH",
            "/services/web/servers/s9",
            Some("{\"weight\": 2}"),
            404,
            "no server `s9`",
        ),
        (
            "PATCH",
            "/services/nope/servers/s1",
            Some("{\"weight\": 2}"),
            404,
            "no service named `nope`",
        ),
        (
            "PATCH",
            "/services/web/servers/s1",
            Some("{\"weight\": 70000}"),
            422,
            "70000",
        ),
        (
            "PATCH",
            "/services/web/servers/s1",
            Some("{\"weight\": -1}"),
            422,
            "-1",
        ),
        (
            "PATCH",
            "/services/web/servers/s1",
            Some("{\"weight\": 5, \"state\": \"off\"}"),
            422,
            "off",
        ),
        (
            "PATCH",
            "/services/web/servers/s1",
            Some("{}"),
            400,
            "give weight and/or state",
        ),
        (
            "POST",
            "/services/web/servers",
            Some("{\"address\": \"10.0.0.14\", \"name\": \"s1\"}"),
            422,
            "s1",
        ),
        (
            "PUT",
            "/services/web/sticky",
            Some("{\"minutes\": 5, \"network\": \"192\"}"),
            400,
            "first octet",
        ),
        (
            "DELETE",
            "/connections?server=s1",
            None,
            400,
            "needs its service",
        ),
        ("GET", "/connections?limit=many", None, 400, "limit"),
    ];
    for (method, path, body, status, why) in refused {
        let (code, answer) = api(&lab, method, path, body, Some(TOKEN));
        assert_eq!(code, status, "{method} {path} {body:?}: {answer}");
        let e = error_of(&answer);
        assert!(e.contains(why), "{method} {path}: {e}");
    }
    assert_eq!(servers(&lab), before, "a refused request changed nothing");
    let (_, metrics) = api(&lab, "GET", "/metrics", None, Some(TOKEN));
    let refusals = metric(&metrics, "tack_api_events_total{kind=\"requests_refused\"}");
    assert!(refusals >= 13, "401s and refusals are counted: {refusals}");
    assert_eq!(epochs(&lab), epoch);

    // A runtime change, then a reload of the unchanged file: reverted and said.
    let (code, body) = api(
        &lab,
        "PATCH",
        "/services/web/servers/s1",
        Some("{\"weight\": 5, \"state\": \"drain\"}"),
        Some(TOKEN),
    );
    assert_eq!(code, 200, "{body}");
    assert!(servers(&lab).contains(&("web".into(), "s1".into(), 5, "drain".into())));
    let (code, body) = api(&lab, "POST", "/reload", None, Some(TOKEN));
    assert_eq!(code, 200, "{body}");
    let r: Value = serde_json::from_str(&body).unwrap();
    let reverted: Vec<&str> = r["reverted"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(Value::as_str)
        .collect();
    assert_eq!(
        reverted,
        [
            "web/s1: weight 5 set at runtime, now 1",
            "web/s1: state drain set at runtime, now up"
        ],
        "{body}"
    );
    assert_eq!(servers(&lab), before);
    let line = tack.wait_for_line("reverted: web/s1: weight 5", Duration::from_secs(5));
    assert!(line.starts_with("tack: reload (http) reverted:"), "{line}");
    // tackctl over the socket: the same API.
    assert!(tackctl(&socket, "services").contains("s3"));

    // Schemathesis against the document, bounded in examples and time.
    let st = "/opt/tack-test/venv/bin/schemathesis";
    assert!(
        Path::new(st).exists(),
        "schemathesis missing: run ./scripts/setup.sh"
    );
    let auth = format!("Authorization: Bearer {TOKEN}");
    let out = Command::new("ip")
        .args(["netns", "exec", &lab.ns("lb"), st, "run", "http://127.0.0.1:9180/openapi.json"])
        .args(["-H", &auth])
        .args(["--checks", "not_a_server_error,status_code_conformance,content_type_conformance,response_schema_conformance"])
        .args(["--max-examples", "5", "--max-time", "45", "--seed", "20", "--request-timeout", "10", "--no-color"])
        .env("SCHEMATHESIS_HOOKS", "")
        // Its cache goes to the scratch directory, not the source tree.
        .current_dir(&lab.dir.0)
        .output()
        .expect("run schemathesis");
    let report = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success() && report.contains(" passed") && !report.contains(" failed"),
        "schemathesis: {report}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // The appliance still answers, and still forwards.
    let (code, _) = api(&lab, "GET", "/status", None, Some(TOKEN));
    assert_eq!(code, 200);
    tack.stop();
}

/// Twenty idle or byte-at-a-time clients on the management socket and the
/// API do not delay new flows, reloads, `tackctl` or shutdown.
#[test]
fn slow_management_clients_delay_nothing() {
    let _g = LAB_LOCK.lock().unwrap_or_else(|e| e.into_inner());
    let lab = Lab::up();
    let (profile, socket) = lab.profile(1, WEB);
    // The default address: loopback, no token.
    with_http(&profile, "    {}\n");
    let text = std::fs::read_to_string(&profile)
        .unwrap()
        .replace("  http:\n    {}\n", "  http: {}\n");
    std::fs::write(&profile, text).unwrap();
    let mut tack = Tack::start(&lab.lb(), &profile);
    assert!(
        tack.wait_for_line("management API on", Duration::from_secs(5))
            .contains("http://127.0.0.1:9180/"),
    );
    let script = root().join("scripts/lab/slowclients.py");
    let sock = socket.display().to_string();
    let mut child = Command::new("ip")
        .args(["netns", "exec", &lab.ns("lb"), "python3"])
        .arg(&script)
        .args([
            "--tcp",
            "127.0.0.1:9180",
            "--unix",
            &sock,
            "--per-target",
            "10",
            "--duration",
            "60",
        ])
        .stdout(Stdio::piped())
        .spawn()
        .expect("run slowclients.py");
    let stdout = child.stdout.take().expect("piped");
    let _clients = Bg(child);
    let mut ready = String::new();
    BufReader::new(stdout)
        .read_line(&mut ready)
        .expect("slowclients.py output");
    assert_eq!(ready.trim(), "ready");
    std::thread::sleep(Duration::from_millis(500));

    let timed = |what: &str, bound: Duration, f: &mut dyn FnMut()| {
        let t = Instant::now();
        f();
        let took = t.elapsed();
        assert!(
            took < bound,
            "{what} took {took:?} with 20 slow clients (bound {bound:?})"
        );
        took
    };
    for i in 0..3 {
        timed(
            &format!("new flow {i}"),
            Duration::from_secs(1),
            &mut || {
                lab.curl("c1", "http://10.100.0.10/")
                    .expect("a new flow is answered");
            },
        );
        timed("tackctl status", Duration::from_secs(2), &mut || {
            assert!(tackctl(&socket, "status").contains("workers: 1"));
        });
        timed("API status", Duration::from_secs(2), &mut || {
            assert_eq!(api(&lab, "GET", "/status", None, None).0, 200);
        });
        timed("tackctl reload", Duration::from_secs(2), &mut || {
            assert!(tackctl(&socket, "reload").contains("configuration epoch"));
        });
        std::thread::sleep(Duration::from_secs(2));
    }
    // The trickling clients were cut for their slow request heads, and counted.
    let (_, metrics) = api(&lab, "GET", "/metrics", None, None);
    let cut = metric(
        &metrics,
        "tack_api_events_total{kind=\"connections_timed_out\"}",
    );
    assert!(cut >= 10, "slow request heads are cut and counted: {cut}");

    // Shutdown: SIGINT, out within 3 s.
    let pid = tack.pid().to_string();
    let t = Instant::now();
    sh(&["kill", "-INT", &pid]);
    let out = tack.stop_within(Duration::from_secs(3));
    assert!(
        t.elapsed() < Duration::from_secs(3),
        "shutdown took {:?}",
        t.elapsed()
    );
    assert!(out.contains("tack: stopping"), "{out}");
}

/// `tack check` refuses an HTTP listener off loopback without a token file.
#[test]
fn check_wants_a_token_off_loopback() {
    let dir = common::TempDir::new();
    let p = dir.path("p.yaml");
    let lab = std::fs::read_to_string(root().join("configs/lab.yaml")).unwrap();
    assert!(
        lab.contains("  http: {}\n"),
        "the lab profile listens on loopback"
    );
    let open = lab.replacen("  http: {}\n", "  http:\n    listen: 0.0.0.0:9180\n", 1);
    std::fs::write(&p, open).unwrap();
    let out = Command::new(common::tack_bin())
        .args(["check", "--config"])
        .arg(&p)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("management.http.token_file: needed: 0.0.0.0:9180 is not a loopback address"),
        "{err}"
    );
}
