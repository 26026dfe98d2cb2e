//! A real browser through the redirect service (seed 000, requirement R3):
//! headless Chromium (Debian's `chromium`, driven over the DevTools protocol
//! by `scripts/lab/browse.py`) in a lab client loads a page through the
//! primary virtual server. The appliance answers with a 302 to one server's
//! directed address; the page and every sub-resource (stylesheet, script,
//! image) come from that one server, which the servers' access logs show;
//! and the page's link into the secure section is followed to the same
//! server's HTTPS URL, through the directed address's port 443 (TLS with a
//! certificate the test makes with openssl, served by an nginx the test
//! starts in each server's namespace).

mod common;

use std::path::Path;
use std::process::Command;

use common::lab::{LAB_LOCK, Lab, root, tackctl};
use common::{Tack, TempDir, counter, sh};

/// The redirect service: each server has a directed address, whose port 80
/// and 443 go to that server only; `/site/checkout/` is the secure section.
const SHOP: &str = r#"  - name: shop
    vip: 10.100.0.15
    port: 80
    servers:
      - { name: s1, address: 10.0.0.11, url: "http://10.100.0.31", directed: 10.100.0.31 }
      - { name: s2, address: 10.0.0.12, url: "http://10.100.0.32", directed: 10.100.0.32 }
      - { name: s3, address: 10.0.0.13, url: "http://10.100.0.33", directed: 10.100.0.33 }
    redirect: { secure_paths: [/site/checkout/] }
"#;

const SERVERS: [&str; 3] = ["s1", "s2", "s3"];

/// A 1×1 PNG (a real image the browser decodes).
const PNG: &[u8] = &[
    0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a, 0x00, 0x00, 0x00, 0x0d, 0x49, 0x48, 0x44, 0x52,
    0x00, 0x00, 0x00, 0x01, 0x00, 0x00, 0x00, 0x01, 0x08, 0x06, 0x00, 0x00, 0x00, 0x1f, 0x15, 0xc4,
    0x89, 0x00, 0x00, 0x00, 0x0d, 0x49, 0x44, 0x41, 0x54, 0x78, 0x9c, 0x63, 0x00, 0x01, 0x00, 0x00,
    0x05, 0x00, 0x01, 0x0d, 0x0a, 0x2d, 0xb4, 0x00, 0x00, 0x00, 0x00, 0x49, 0x45, 0x4e, 0x44, 0xae,
    0x42, 0x60, 0x82,
];

/// The site of server `s` in its state directory: a page with a stylesheet,
/// a script and an image, and a secure page its link leads to.
fn write_site(dir: &Path, s: &str) {
    let site = dir.join("site");
    std::fs::create_dir_all(site.join("checkout")).expect("site dir");
    let index = format!(
        "<!doctype html><html><head><title>shop</title>\
         <link rel=\"stylesheet\" href=\"style.css\"><script src=\"app.js\"></script></head>\
         <body><p>shop page from {s}</p><img src=\"logo.png\" alt=\"logo\">\
         <a id=\"pay\" href=\"checkout/pay.html\">pay</a></body></html>\n"
    );
    let pay = format!("<!doctype html><html><body><p>secure page from {s}</p></body></html>\n");
    let files: [(&str, &[u8]); 5] = [
        ("index.html", index.as_bytes()),
        ("style.css", b"body { color: rgb(1, 2, 3); }\n"),
        ("app.js", b"window.scriptRan = true;\n"),
        ("logo.png", PNG),
        ("checkout/pay.html", pay.as_bytes()),
    ];
    for (name, body) in files {
        std::fs::write(site.join(name), body).expect("site file");
    }
}

/// Starts a TLS nginx on port 443 in server `s`'s namespace serving its
/// site, logging to `tls.log` in its state directory.
fn start_tls(lab: &Lab, s: &str, cert: &Path, key: &Path) {
    let dir = lab.state_dir(s);
    let d = dir.display();
    let conf = format!(
        "worker_processes 1;\ndaemon on;\npid {d}/tls.pid;\nerror_log {d}/tls-error.log warn;\n\
         events {{ worker_connections 256; }}\nhttp {{\n  include /etc/nginx/mime.types;\n  access_log {d}/tls.log;\n\
         client_body_temp_path {d}/tls-body;\n  proxy_temp_path {d}/tls-proxy;\n\
         fastcgi_temp_path {d}/tls-fastcgi;\n  uwsgi_temp_path {d}/tls-uwsgi;\n\
         scgi_temp_path {d}/tls-scgi;\n  server {{\n    listen 443 ssl;\n\
         ssl_certificate {};\n    ssl_certificate_key {};\n    root {d};\n\
         add_header X-Server {s} always;\n  }}\n}}\n",
        cert.display(),
        key.display()
    );
    let path = dir.join("tls.conf");
    std::fs::write(&path, conf).expect("tls.conf");
    let path = path.to_str().expect("utf-8 path");
    let err = format!("{d}/tls-error.log");
    let dir = dir.to_str().expect("utf-8 path");
    sh(&[
        "ip",
        "netns",
        "exec",
        &lab.ns(s),
        "nginx",
        "-e",
        &err,
        "-c",
        path,
        "-p",
        dir,
    ]);
}

/// The requests server `s` logged (site on port 80, then TLS), as
/// "METHOD PATH STATUS" lines.
fn logged(lab: &Lab, s: &str, log: &str) -> Vec<String> {
    let text = std::fs::read_to_string(lab.state_dir(s).join(log)).unwrap_or_default();
    text.lines()
        .filter_map(|l| {
            // combined format: ... "GET /path HTTP/1.1" 200 ...
            let (_, rest) = l.split_once('"')?;
            let (req, rest) = rest.split_once('"')?;
            let mut r = req.split_whitespace();
            let status = rest.split_whitespace().next()?;
            Some(format!("{} {} {status}", r.next()?, r.next()?))
        })
        .collect()
}

/// Chromium in client `c`: one JSON report per page loaded.
fn browse(lab: &Lab, c: &str, url: &str, click: Option<&str>) -> Vec<serde_json::Value> {
    let script = root().join("scripts/lab/browse.py");
    let mut args = vec![
        "python3",
        script.to_str().expect("utf-8 path"),
        url,
        "--timeout",
        "60",
    ];
    if let Some(sel) = click {
        args.extend(["--click", sel]);
    }
    let (ok, out, err) = lab.exec(c, &args);
    assert!(ok, "browse.py {url}: {err}\n{out}");
    out.lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{l:?}: {e}")))
        .collect()
}

/// The server whose directed address `url` names.
fn server_of_url(url: &str) -> &'static str {
    let host = url
        .split("://")
        .nth(1)
        .and_then(|r| r.split('/').next())
        .unwrap_or("");
    match host {
        "10.100.0.31" => "s1",
        "10.100.0.32" => "s2",
        "10.100.0.33" => "s3",
        _ => panic!("not a directed address: {url}"),
    }
}

/// (url, status, location) of each response of a page report.
fn responses(page: &serde_json::Value) -> Vec<(String, u64, String)> {
    page["responses"]
        .as_array()
        .expect("responses")
        .iter()
        .map(|r| {
            (
                r["url"].as_str().unwrap_or("").to_string(),
                r["status"].as_u64().unwrap_or(0),
                r["location"].as_str().unwrap_or("").to_string(),
            )
        })
        .collect()
}

#[test]
fn chromium_loads_a_site_from_one_server_and_follows_its_secure_link_to_the_same_server() {
    let _g = LAB_LOCK.lock().unwrap_or_else(|p| p.into_inner());
    assert!(
        Command::new("chromium").arg("--version").output().is_ok(),
        "chromium is missing: run ./scripts/setup.sh"
    );
    let lab = Lab::up();
    let tmp = TempDir::new();
    let (cert, key) = (tmp.path("cert.pem"), tmp.path("key.pem"));
    sh(&[
        "openssl",
        "req",
        "-x509",
        "-newkey",
        "ec",
        "-pkeyopt",
        "ec_paramgen_curve:prime256v1",
        "-nodes",
        "-days",
        "1",
        "-subj",
        "/CN=tack-lab-shop",
        "-addext",
        "subjectAltName=IP:10.100.0.31,IP:10.100.0.32,IP:10.100.0.33",
        "-keyout",
        key.to_str().expect("utf-8 path"),
        "-out",
        cert.to_str().expect("utf-8 path"),
    ]);
    for s in SERVERS {
        write_site(&lab.state_dir(s), s);
        start_tls(&lab, s, &cert, &key);
    }
    let (profile, sock) = lab.profile(1, SHOP);
    let tack = Tack::start(&lab.lb(), &profile);
    // The redirect view: each server's URLs and directed address.
    let view = tackctl(&sock, "redirects");
    assert!(
        view.starts_with("redirect shop tcp/10.100.0.15:80  secure paths: /site/checkout/"),
        "{view}"
    );
    for (s, a) in [("s1", "31"), ("s2", "32"), ("s3", "33")] {
        let row = format!("http://10.100.0.{a}");
        let line = view
            .lines()
            .find(|l| l.split_whitespace().next() == Some(s))
            .unwrap_or_else(|| panic!("{s}: {view}"));
        let cols: Vec<&str> = line.split_whitespace().collect();
        assert_eq!(
            cols[3..6],
            [
                row.as_str(),
                &row.replacen("http", "https", 1),
                &format!("10.100.0.{a}")
            ],
            "{view}"
        );
    }

    // The page through the primary VIP, then a click on its secure link.
    let pages = browse(
        &lab,
        "c1",
        "http://10.100.0.15/site/index.html",
        Some("#pay"),
    );
    assert_eq!(pages.len(), 2, "{pages:?}");
    let (page, secure) = (&pages[0], &pages[1]);
    let r = responses(page);
    // The appliance's 302, to a server's directed address.
    let (url, status, location) = &r[0];
    assert_eq!(
        (url.as_str(), *status),
        ("http://10.100.0.15/site/index.html", 302),
        "{r:?}"
    );
    let server = server_of_url(location);
    let base = format!("http://{}/site/", location.split('/').nth(2).unwrap_or(""));
    assert_eq!(location, &format!("{base}index.html"));
    // The page and its stylesheet, script and image: all 200 from there.
    let mut fetched: Vec<&str> = r[1..]
        .iter()
        .map(|(u, st, _)| {
            assert_eq!(*st, 200, "{u}: {r:?}");
            u.strip_prefix(&base)
                .unwrap_or_else(|| panic!("{u} not from {base}"))
        })
        .collect();
    fetched.sort_unstable();
    assert_eq!(
        fetched,
        ["app.js", "index.html", "logo.png", "style.css"],
        "{r:?}"
    );
    assert_eq!(page["url"], format!("{base}index.html"));
    assert!(
        page["text"]
            .as_str()
            .is_some_and(|t| t.contains(&format!("shop page from {server}"))),
        "{page}"
    );
    assert_eq!(page["body_color"], "rgb(1, 2, 3)", "the stylesheet applied");
    assert_eq!(page["script_ran"], true, "the script ran");
    assert_eq!(page["images"][0]["ok"], true, "the image decoded: {page}");
    // The secure link: the server moves it to HTTPS on the same host, which
    // the directed address's port 443 takes to the same server.
    let https = format!(
        "https://{}/site/checkout/pay.html",
        location.split('/').nth(2).unwrap_or("")
    );
    assert_eq!(secure["url"], https.as_str(), "{secure}");
    assert!(
        secure["text"]
            .as_str()
            .is_some_and(|t| t.contains(&format!("secure page from {server}"))),
        "{secure}"
    );
    // The servers' logs: every request of the visit at the chosen one,
    // nothing at the others.
    for s in SERVERS {
        let mut site = logged(&lab, s, "site.log");
        site.sort_unstable();
        let mut tls = logged(&lab, s, "tls.log");
        if s == server {
            // The browser asks the HTTPS host for its icon too: the same server.
            tls.retain(|l| l != "GET /favicon.ico 404");
            assert_eq!(
                site,
                [
                    "GET /site/app.js 200",
                    "GET /site/checkout/pay.html 301",
                    "GET /site/index.html 200",
                    "GET /site/logo.png 200",
                    "GET /site/style.css 200",
                ],
                "{s}'s site log"
            );
            assert_eq!(tls, ["GET /site/checkout/pay.html 200"], "{s}'s TLS log");
        } else {
            assert!(site.is_empty() && tls.is_empty(), "{s}: {site:?} {tls:?}");
        }
    }

    // Straight to the secure section through the primary VIP: the 302 names
    // the chosen server's HTTPS URL, and that server serves it over TLS.
    let pages = browse(
        &lab,
        "c2",
        "http://10.100.0.15/site/checkout/pay.html",
        None,
    );
    let r = responses(&pages[0]);
    let (url, status, location) = &r[0];
    assert_eq!(
        (url.as_str(), *status),
        ("http://10.100.0.15/site/checkout/pay.html", 302),
        "{r:?}"
    );
    assert!(location.starts_with("https://10.100.0.3"), "{location}");
    let chosen = server_of_url(location);
    assert_eq!(pages[0]["url"], location.as_str());
    assert!(
        pages[0]["text"]
            .as_str()
            .is_some_and(|t| t.contains(&format!("secure page from {chosen}"))),
        "{}",
        pages[0]
    );
    let pays = logged(&lab, chosen, "tls.log")
        .iter()
        .filter(|l| *l == "GET /site/checkout/pay.html 200")
        .count();
    assert_eq!(
        pays,
        1 + usize::from(chosen == server),
        "{chosen}'s TLS log"
    );

    let report = tack.stop();
    assert_eq!(
        counter(&report, "redirect_found"),
        Some(2),
        "two redirects, the rest went to directed addresses\n{report}"
    );
    assert_eq!(
        counter(&report, "drop_redirect_bad_cookie"),
        None,
        "{report}"
    );
    assert!(
        report.contains("mbufs in use after stop: 0"),
        "mempool back to idle:\n{report}"
    );
}
