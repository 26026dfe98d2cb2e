//! CDN rewriting and the page cache (seed 001 claims 14, 15, 29, 30) with real
//! peers: a hyper origin that counts the requests it gets, a second loopback
//! server standing for the CDN (it serves the assets), headless Chromium
//! (Debian's `chromium`) loading the page through the proxy, and hyper clients.

mod support;

use std::collections::HashMap;
use std::convert::Infallible;
use std::io::{Read, Write};
use std::net::SocketAddr;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Empty, Full};
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo};
use support::{metric, require_tool, start_proxy};
use tokio::task::JoinSet;

/// A 1×1 PNG.
const PNG: &[u8] = &[
    0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a, 0x00, 0x00, 0x00, 0x0d, 0x49, 0x48, 0x44, 0x52,
    0x00, 0x00, 0x00, 0x01, 0x00, 0x00, 0x00, 0x01, 0x08, 0x06, 0x00, 0x00, 0x00, 0x1f, 0x15, 0xc4,
    0x89, 0x00, 0x00, 0x00, 0x0d, 0x49, 0x44, 0x41, 0x54, 0x78, 0x9c, 0x63, 0x00, 0x01, 0x00, 0x00,
    0x05, 0x00, 0x01, 0x0d, 0x0a, 0x2d, 0xb4, 0x00, 0x00, 0x00, 0x00, 0x49, 0x45, 0x4e, 0x44, 0xae,
    0x42, 0x60, 0x82,
];

/// The page: a stylesheet, a script and an image under `/static/` (moved to the
/// CDN), and a link and an image that stay on the site.
fn page(title: &str) -> String {
    format!(
        r#"<!DOCTYPE html>
<html><head><title>{title}</title>
<link rel="stylesheet" href="/static/site.css">
<script src="/static/app.js"></script>
<link rel="alternate" href="/feed.xml">
</head><body>
<h1>{title}</h1>
<img id="logo" src="/static/logo.png" srcset="/static/logo.png 1x, /static/logo.png 2x" width="40" height="40">
<img id="local" src="/local.png" width="1" height="1">
</body></html>
"#
    )
}

/// What a test server answers on a path: headers and body.
type Site = HashMap<&'static str, (Vec<(&'static str, String)>, Vec<u8>)>;

/// A hyper server on loopback serving `site`, counting requests per path.
struct Server {
    addr: SocketAddr,
    hits: Arc<Mutex<HashMap<String, u32>>>,
    task: tokio::task::JoinHandle<()>,
}

impl Server {
    async fn start(site: Site) -> Server {
        let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = l.local_addr().unwrap();
        let hits = Arc::new(Mutex::new(HashMap::new()));
        let (site, h) = (Arc::new(site), hits.clone());
        let task = tokio::spawn(async move {
            let mut conns = JoinSet::new();
            loop {
                let (s, _) = tokio::select! {
                    r = l.accept() => match r { Ok(x) => x, Err(_) => continue },
                    Some(_) = conns.join_next(), if !conns.is_empty() => continue,
                };
                let (site, h) = (site.clone(), h.clone());
                conns.spawn(async move {
                    let svc = service_fn(move |req: hyper::Request<hyper::body::Incoming>| {
                        let (site, h) = (site.clone(), h.clone());
                        async move {
                            let path = req.uri().path().to_string();
                            *h.lock().unwrap().entry(path.clone()).or_insert(0) += 1;
                            let mut r = match site.get(path.as_str()) {
                                Some((headers, body)) => {
                                    let mut r =
                                        hyper::Response::new(Full::new(Bytes::from(body.clone())));
                                    for (k, v) in headers {
                                        r.headers_mut().insert(*k, v.parse().unwrap());
                                    }
                                    r
                                }
                                None => {
                                    let mut r = hyper::Response::new(Full::new(Bytes::from("no")));
                                    *r.status_mut() = hyper::StatusCode::NOT_FOUND;
                                    r
                                }
                            };
                            // Conditional requests the origin answers itself.
                            if let (Some(inm), Some(e)) =
                                (req.headers().get("if-none-match"), r.headers().get("etag"))
                                && inm == e
                            {
                                *r.status_mut() = hyper::StatusCode::NOT_MODIFIED;
                                *r.body_mut() = Full::new(Bytes::new());
                            }
                            Ok::<_, Infallible>(r)
                        }
                    });
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(TokioIo::new(s), svc)
                        .await;
                });
            }
        });
        Server { addr, hits, task }
    }

    fn hits(&self, path: &str) -> u32 {
        self.hits.lock().unwrap().get(path).copied().unwrap_or(0)
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.task.abort();
    }
}

fn html(cache_control: &str, extra: &[(&'static str, &str)]) -> Vec<(&'static str, String)> {
    let mut h = vec![
        ("content-type", "text/html; charset=utf-8".to_string()),
        ("cache-control", cache_control.to_string()),
    ];
    h.extend(extra.iter().map(|(k, v)| (*k, v.to_string())));
    h
}

fn gzip(b: &[u8]) -> Vec<u8> {
    let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    e.write_all(b).unwrap();
    e.finish().unwrap()
}

fn br(b: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    brotli::BrotliCompress(&mut &b[..], &mut out, &Default::default()).unwrap();
    out
}

struct Lab {
    origin: Server,
    cdn: Server,
    proxy: tack_proxy::Proxy,
    addr: SocketAddr,
}

async fn lab() -> Lab {
    let mut site = Site::new();
    let last_modified = "Thu, 01 Jan 2026 00:00:00 GMT";
    site.insert(
        "/index.html",
        (
            html(
                "max-age=60",
                &[("etag", "\"v1\""), ("last-modified", last_modified)],
            ),
            page("Tack").into_bytes(),
        ),
    );
    site.insert(
        "/nostore.html",
        (html("no-store", &[]), page("no store").into_bytes()),
    );
    site.insert(
        "/gz.html",
        (
            html(
                "max-age=60",
                &[("content-encoding", "gzip"), ("vary", "Accept-Encoding")],
            ),
            gzip(page("gzip").as_bytes()),
        ),
    );
    site.insert(
        "/br.html",
        (
            html(
                "max-age=60",
                &[("content-encoding", "br"), ("vary", "Accept-Encoding")],
            ),
            br(page("brotli").as_bytes()),
        ),
    );
    site.insert(
        "/deflate.html",
        (
            html("max-age=60", &[("content-encoding", "deflate")]),
            b"\x00not really".to_vec(),
        ),
    );
    site.insert(
        "/local.png",
        (vec![("content-type", "image/png".into())], PNG.to_vec()),
    );
    let origin = Server::start(site).await;
    let mut assets = Site::new();
    let asset = |t: &str| {
        vec![
            ("content-type", t.to_string()),
            ("access-control-allow-origin", "*".to_string()),
        ]
    };
    assets.insert(
        "/static/site.css",
        (
            asset("text/css"),
            b"html, body { background: rgb(0, 128, 255); margin: 0; }".to_vec(),
        ),
    );
    assets.insert(
        "/static/app.js",
        (
            asset("text/javascript"),
            b"document.addEventListener('DOMContentLoaded', function () { document.body.setAttribute('data-script-ran', 'yes'); });".to_vec(),
        ),
    );
    assets.insert("/static/logo.png", (asset("image/png"), PNG.to_vec()));
    let cdn = Server::start(assets).await;
    let yaml = format!(
        r#"
frontends:
  - name: www
    bind: ["127.0.0.1:0"]
    backend: web
    access_log: false
    cdn:
      rules:
        - {{ prefix: "/static/", to: "http://{cdn}/static/" }}
    cache: {{ max_bytes: 1MiB, max_object: 256KiB }}
metrics: {{ listen: "127.0.0.1:0" }}
admin: {{ listen: "127.0.0.1:0" }}
backends:
  - name: web
    servers:
      - {{ name: o1, address: "{origin}" }}
"#,
        cdn = cdn.addr,
        origin = origin.addr
    );
    let proxy = start_proxy(&yaml).await;
    let addr = proxy.local_addr("www").unwrap();
    Lab {
        origin,
        cdn,
        proxy,
        addr,
    }
}

struct Got {
    status: u16,
    headers: http::HeaderMap,
    body: Vec<u8>,
}

async fn request(method: &str, addr: SocketAddr, path: &str, headers: &[(&str, &str)]) -> Got {
    let client: hyper_util::client::legacy::Client<_, Empty<Bytes>> =
        hyper_util::client::legacy::Client::builder(TokioExecutor::new())
            .pool_max_idle_per_host(0)
            .build_http();
    let mut req = hyper::Request::builder()
        .method(method)
        .uri(format!("http://{addr}{path}"));
    for (k, v) in headers {
        req = req.header(*k, *v);
    }
    let r = tokio::time::timeout(
        Duration::from_secs(20),
        client.request(req.body(Empty::new()).unwrap()),
    )
    .await
    .expect("request timed out")
    .expect("request failed");
    let (status, headers) = (r.status().as_u16(), r.headers().clone());
    let body = r.into_body().collect().await.unwrap().to_bytes().to_vec();
    Got {
        status,
        headers,
        body,
    }
}

async fn get(addr: SocketAddr, path: &str, headers: &[(&str, &str)]) -> Got {
    request("GET", addr, path, headers).await
}

fn text(g: &Got) -> String {
    String::from_utf8(g.body.clone()).unwrap()
}

/// The page as rewritten: `/static/` URLs on the CDN, the rest untouched.
fn assert_rewritten(page: &str, cdn: SocketAddr) {
    let base = format!("http://{cdn}/static/");
    for want in [
        format!(r#"href="{base}site.css""#),
        format!(r#"src="{base}app.js""#),
        format!(r#"src="{base}logo.png""#),
        format!(r#"srcset="{base}logo.png 1x, {base}logo.png 2x""#),
        r#"href="/feed.xml""#.to_string(),
        r#"src="/local.png""#.to_string(),
    ] {
        assert!(page.contains(&want), "{want} not in\n{page}");
    }
    assert!(!page.contains("\"/static/"), "a /static/ URL left:\n{page}");
}

fn m(p: &tack_proxy::Proxy, name: &str) -> u64 {
    metric(p, &format!("tack_proxy_{name}{{frontend=\"www\"}}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pages_are_rewritten_cached_revalidated_and_purged() {
    let lab = lab().await;
    let (a, o) = (lab.addr, &lab.origin);

    // Miss: the origin is asked, the page comes back rewritten, chunked.
    let r = get(a, "/index.html", &[]).await;
    assert_eq!(r.status, 200);
    assert_rewritten(&text(&r), lab.cdn.addr);
    assert_eq!(r.headers["x-cache"], "MISS");
    assert_eq!(r.headers["x-tack-cdn"], "rewritten");
    assert_eq!(r.headers["etag"], "W/\"v1\"");
    assert_eq!(o.hits("/index.html"), 1);

    // Hit: same bytes, origin not asked again.
    let r2 = get(a, "/index.html", &[]).await;
    assert_eq!(r2.headers["x-cache"], "HIT");
    assert_eq!(r2.body, r.body);
    assert_eq!(r2.headers["content-length"], r.body.len().to_string());
    assert_eq!(o.hits("/index.html"), 1, "a hit does not reach the origin");
    let h = request("HEAD", a, "/index.html", &[]).await;
    assert_eq!((h.status, h.body.len()), (200, 0));
    assert_eq!(h.headers["content-length"], r.body.len().to_string());

    // Conditional requests are answered from the cache.
    for cond in [
        ("if-none-match", "\"v1\""),
        ("if-none-match", "W/\"v1\", \"other\""),
        ("if-modified-since", "Fri, 02 Jan 2026 00:00:00 GMT"),
    ] {
        let r = get(a, "/index.html", &[cond]).await;
        assert_eq!(r.status, 304, "{cond:?}");
        assert!(r.body.is_empty());
        assert_eq!(r.headers["etag"], "W/\"v1\"");
    }
    let r = get(a, "/index.html", &[("if-none-match", "\"v0\"")]).await;
    assert_eq!(r.status, 200);
    assert_eq!(o.hits("/index.html"), 1);
    assert_eq!(m(&lab.proxy, "cache_not_modified_total"), 3);

    // no-store: every request goes to the origin, nothing is stored.
    for i in 1..=3 {
        let r = get(a, "/nostore.html", &[]).await;
        assert_rewritten(&text(&r), lab.cdn.addr);
        assert_eq!(o.hits("/nostore.html"), i);
    }

    // The cache listing, then a purge by URL and by prefix (admin API).
    let api = lab.proxy.admin_addr().unwrap();
    let call = |method: http::Method, path: &'static str, body: Option<serde_json::Value>| {
        tack_proxy::api::client::call(api, None, method, path, body)
    };
    let (status, listed) = call(http::Method::GET, "/api/cache", None).await.unwrap();
    assert_eq!(status, 200);
    let listed: serde_json::Value = serde_json::from_str(&listed).unwrap();
    let entries = listed[0]["entries"].as_array().unwrap();
    assert!(
        entries
            .iter()
            .any(|e| e["url"].as_str().unwrap().ends_with("/index.html") && e["variants"] == 1),
        "{listed}"
    );
    assert!(!listed.to_string().contains("nostore"), "{listed}");
    let hits = m(&lab.proxy, "cache_hits_total");
    assert_eq!(hits, 6);
    let purge = |body: serde_json::Value| call(http::Method::POST, "/api/cache/purge", Some(body));
    assert_eq!(
        call(http::Method::GET, "/api/cache/purge", None)
            .await
            .unwrap()
            .0,
        405
    );
    assert_eq!(purge(serde_json::json!({})).await.unwrap().0, 400);
    assert_eq!(
        purge(serde_json::json!({"url": "/x", "frontend": "nope"}))
            .await
            .unwrap()
            .0,
        404
    );
    let (status, p) = purge(serde_json::json!({"url": "/index.html"}))
        .await
        .unwrap();
    assert_eq!((status, p.trim()), (200, r#"{"purged":{"www":1}}"#));
    let r = get(a, "/index.html", &[]).await;
    assert_eq!(
        r.headers["x-cache"], "MISS",
        "a purge makes the next request a miss"
    );
    assert_eq!(o.hits("/index.html"), 2);
    assert_eq!(get(a, "/index.html", &[]).await.headers["x-cache"], "HIT");
    let (status, p) = purge(serde_json::json!({"prefix": format!("http://{a}/ind")}))
        .await
        .unwrap();
    assert_eq!((status, p.trim()), (200, r#"{"purged":{"www":1}}"#));
    get(a, "/index.html", &[]).await;
    assert_eq!(o.hits("/index.html"), 3);
    assert_eq!(m(&lab.proxy, "cache_purged_total"), 2);
    assert_eq!(m(&lab.proxy, "cache_stores_total"), 3);
    assert!(m(&lab.proxy, "cache_bytes") > r.body.len() as u64);
    // Misses: the page three times, the no-store page three times.
    let metrics = text(&get(lab.proxy.metrics_addr().unwrap(), "/metrics", &[]).await);
    assert!(
        metrics.contains("tack_proxy_cache_misses_total{frontend=\"www\"} 6"),
        "{metrics}"
    );

    // gzip and br pages: decoded, rewritten, re-encoded; cached per Accept-Encoding.
    for (path, coding, ae) in [("/gz.html", "gzip", "gzip"), ("/br.html", "br", "br, gzip")] {
        for round in 1..=2 {
            let r = get(a, path, &[("accept-encoding", ae)]).await;
            assert_eq!(r.headers["content-encoding"], coding);
            assert_eq!(
                r.headers["x-cache"],
                if round == 1 { "MISS" } else { "HIT" }
            );
            let mut page = Vec::new();
            if coding == "gzip" {
                flate2::read::GzDecoder::new(&r.body[..])
                    .read_to_end(&mut page)
                    .unwrap();
            } else {
                brotli::BrotliDecompress(&mut &r.body[..], &mut page).unwrap();
            }
            assert_rewritten(&String::from_utf8(page).unwrap(), lab.cdn.addr);
        }
        // Another Accept-Encoding is another variant.
        assert_eq!(
            get(a, path, &[("accept-encoding", "zstd")]).await.headers["x-cache"],
            "MISS"
        );
        assert_eq!(o.hits(path), 2);
    }
    // A HEAD miss on a compressed page: no body to rewrite, nothing cut short.
    let h = request("HEAD", a, "/gz.html", &[("accept-encoding", "gzip;q=1")]).await;
    assert_eq!((h.status, h.body.len()), (200, 0));
    assert_eq!(o.hits("/gz.html"), 3);
    // Other codings pass untouched, and are counted.
    let r = get(a, "/deflate.html", &[]).await;
    assert_eq!(r.body, b"\x00not really");
    assert_eq!(m(&lab.proxy, "cdn_skipped_encoding_total"), 1);
    assert_eq!(m(&lab.proxy, "cdn_errors_total"), 0);
}

/// Chromium loads the page through the proxy: its DOM has the `/static/` URLs
/// on the CDN, the script from the CDN ran, and the screenshot shows the CDN's
/// stylesheet applied (the page rendered with its assets). The second load is
/// a cache hit. A br page comes back re-encoded and Chromium reads it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn chromium_renders_the_rewritten_page_from_the_cdn_and_the_cache() {
    require_tool("chromium");
    let lab = lab().await;
    let url = format!("http://{}/index.html", lab.addr);
    let dir = tempfile::tempdir().unwrap();

    let dom = chromium(dir.path(), &["--dump-dom", &url]).await;
    assert_rewritten(&String::from_utf8_lossy(&dom), lab.cdn.addr);
    assert!(
        String::from_utf8_lossy(&dom).contains("data-script-ran=\"yes\""),
        "the CDN's script did not run:\n{}",
        String::from_utf8_lossy(&dom)
    );
    assert_eq!(lab.origin.hits("/index.html"), 1);

    let shot = dir.path().join("shot.png");
    chromium(
        dir.path(),
        &[
            "--window-size=320,240",
            &format!("--screenshot={}", shot.display()),
            &url,
        ],
    )
    .await;
    assert_eq!(
        lab.origin.hits("/index.html"),
        1,
        "the second load is a cache hit"
    );
    assert!(lab.cdn.hits("/static/site.css") >= 2 && lab.cdn.hits("/static/logo.png") >= 1);
    assert_eq!(
        lab.origin.hits("/static/site.css"),
        0,
        "assets come from the CDN"
    );

    // A brotli page, decoded, rewritten and re-encoded: Chromium decodes it.
    let br_url = format!("http://{}/br.html", lab.addr);
    let dom = chromium(dir.path(), &["--dump-dom", &br_url]).await;
    let dom = String::from_utf8_lossy(&dom);
    assert_rewritten(&dom, lab.cdn.addr);
    assert!(dom.contains("<h1>brotli</h1>"), "{dom}");
    assert_eq!(lab.origin.hits("/br.html"), 1);

    // The screenshot is not blank: mostly the CDN stylesheet's background.
    let decoder = png::Decoder::new(std::io::BufReader::new(std::fs::File::open(&shot).unwrap()));
    let mut reader = decoder.read_info().unwrap();
    let mut buf = vec![0; reader.output_buffer_size().unwrap()];
    let info = reader.next_frame(&mut buf).unwrap();
    let px = info.color_type.samples();
    let pixels: Vec<&[u8]> = buf[..info.buffer_size()].chunks(px).collect();
    let blue = pixels
        .iter()
        .filter(|p| p[0] < 20 && (118..=138).contains(&p[1]) && p[2] > 235)
        .count();
    let distinct: std::collections::HashSet<&[u8]> = pixels.iter().copied().collect();
    assert!(
        blue * 2 > pixels.len(),
        "{blue} of {} pixels have the CDN stylesheet's background",
        pixels.len()
    );
    assert!(distinct.len() > 2, "the screenshot is a flat image");
}

/// Run headless Chromium on loopback with a profile in `dir`; its stdout.
async fn chromium(dir: &Path, args: &[&str]) -> Vec<u8> {
    let profile = tempfile::tempdir_in(dir).unwrap();
    let mut cmd = tokio::process::Command::new("chromium");
    cmd.args([
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--no-first-run",
        "--no-default-browser-check",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--disable-default-apps",
        "--disable-extensions",
        "--disable-dev-shm-usage",
        "--hide-scrollbars",
        "--virtual-time-budget=5000",
    ])
    .arg(format!("--user-data-dir={}", profile.path().display()))
    .args(args)
    .kill_on_drop(true)
    .stdin(std::process::Stdio::null());
    let out = tokio::time::timeout(Duration::from_secs(60), cmd.output())
        .await
        .expect("chromium timed out")
        .expect("run chromium");
    assert!(
        out.status.success(),
        "chromium {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    out.stdout
}
