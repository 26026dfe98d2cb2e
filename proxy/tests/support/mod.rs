//! Test peers: real HTTP backends on loopback (hyper), tool checks, a small HTTP
//! client, and process guards that clean up after themselves.
#![allow(dead_code)]

use std::convert::Infallible;
use std::net::SocketAddr;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Empty, Full};
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo};
use tokio::net::TcpListener;
use tokio::task::JoinSet;

/// What a backend saw of one request.
#[derive(Debug, Clone)]
pub struct Seen {
    /// Path and query.
    pub uri: String,
    /// The Cookie header it received ("" when none).
    pub cookie: String,
    /// Value of `x-tag`, if sent.
    pub tag: String,
}

/// A real HTTP/1.1 server on 127.0.0.1 that answers with its own name.
///
/// - any path: body `<name>`, header `x-server: <name>`;
/// - `/login?sid=ID`: also `Set-Cookie: JSESSIONID=ID; Path=/`;
/// - `/setck?v=V`: also `Set-Cookie: SRVCK=V; Path=/`;
/// - `?big=N`: a body of N bytes;
/// - POST: reads the body, answers `<name> got <length>`;
/// - `/slow?ms=N`: waits N ms first;
/// - `/static...`: carries `Last-Modified` (cacheable in HAProxy's eyes).
pub struct TestServer {
    /// Name.
    pub name: String,
    /// Bound address.
    pub addr: SocketAddr,
    /// Requests seen, in arrival order.
    pub seen: Arc<Mutex<Vec<Seen>>>,
    tasks: Option<tokio::task::JoinHandle<()>>,
}

fn param<'a>(uri: &'a str, name: &str) -> Option<&'a str> {
    let q = uri.split_once('?')?.1;
    q.split('&').find_map(|kv| {
        kv.split_once('=')
            .filter(|(k, _)| *k == name)
            .map(|(_, v)| v)
    })
}

impl TestServer {
    /// Start on an ephemeral port.
    pub async fn start(name: &str) -> TestServer {
        Self::start_on(name, "127.0.0.1:0".parse().unwrap()).await
    }

    /// Start on a given address (to restart a stopped server on the same port).
    pub async fn start_on(name: &str, addr: SocketAddr) -> TestServer {
        let listener = tack_proxy::bind_listener(addr, false, false).expect("bind test backend");
        let addr = listener.local_addr().unwrap();
        let seen = Arc::new(Mutex::new(Vec::new()));
        let (n, s) = (name.to_string(), seen.clone());
        let tasks = tokio::spawn(serve(listener, n, s));
        TestServer {
            name: name.into(),
            addr,
            seen,
            tasks: Some(tasks),
        }
    }

    /// Stop: close the listener and every open connection.
    pub async fn stop(&mut self) {
        if let Some(t) = self.tasks.take() {
            t.abort();
            let _ = t.await;
        }
    }

    /// Requests seen so far.
    pub fn seen(&self) -> Vec<Seen> {
        self.seen.lock().unwrap().clone()
    }
}

impl Drop for TestServer {
    fn drop(&mut self) {
        if let Some(t) = self.tasks.take() {
            t.abort();
        }
    }
}

async fn serve(listener: TcpListener, name: String, seen: Arc<Mutex<Vec<Seen>>>) {
    // Connections live in this JoinSet so aborting the server task closes them all.
    let mut conns = JoinSet::new();
    loop {
        let (stream, _) = tokio::select! {
            r = listener.accept() => match r { Ok(x) => x, Err(_) => continue },
            Some(_) = conns.join_next(), if !conns.is_empty() => continue,
        };
        let (name, seen) = (name.clone(), seen.clone());
        conns.spawn(async move {
            let svc = service_fn(move |req: hyper::Request<hyper::body::Incoming>| {
                let (name, seen) = (name.clone(), seen.clone());
                async move {
                    let uri = req
                        .uri()
                        .path_and_query()
                        .map(|p| p.as_str().to_string())
                        .unwrap_or_default();
                    let cookie = req
                        .headers()
                        .get("cookie")
                        .and_then(|v| v.to_str().ok())
                        .unwrap_or("")
                        .to_string();
                    let tag = req
                        .headers()
                        .get("x-tag")
                        .and_then(|v| v.to_str().ok())
                        .unwrap_or("")
                        .to_string();
                    if req.method() == hyper::Method::POST {
                        let n = req
                            .into_body()
                            .collect()
                            .await
                            .map(|b| b.to_bytes().len())
                            .unwrap_or(0);
                        seen.lock().unwrap().push(Seen { uri, cookie, tag });
                        let body = Full::new(Bytes::from(format!("{name} got {n}")));
                        return Ok::<_, Infallible>(hyper::Response::new(body));
                    }
                    if let Some(n) = param(&uri, "big").and_then(|v| v.parse::<usize>().ok()) {
                        seen.lock().unwrap().push(Seen { uri, cookie, tag });
                        return Ok(hyper::Response::new(Full::new(Bytes::from(vec![b'x'; n]))));
                    }
                    seen.lock().unwrap().push(Seen {
                        uri: uri.clone(),
                        cookie,
                        tag,
                    });
                    if let Some(ms) = param(&uri, "ms").and_then(|v| v.parse::<u64>().ok()) {
                        tokio::time::sleep(Duration::from_millis(ms)).await;
                    }
                    let mut r = hyper::Response::new(Full::new(Bytes::from(name.clone())));
                    r.headers_mut().insert("x-server", name.parse().unwrap());
                    if uri.starts_with("/static") {
                        r.headers_mut().insert(
                            "last-modified",
                            "Sat, 21 Nov 2026 23:01:38 GMT".parse().unwrap(),
                        );
                    }
                    if uri.starts_with("/login")
                        && let Some(sid) = param(&uri, "sid")
                    {
                        r.headers_mut().append(
                            "set-cookie",
                            format!("JSESSIONID={sid}; Path=/").parse().unwrap(),
                        );
                    }
                    if uri.starts_with("/setck")
                        && let Some(v) = param(&uri, "v")
                    {
                        r.headers_mut()
                            .append("set-cookie", format!("SRVCK={v}; Path=/").parse().unwrap());
                    }
                    Ok::<_, Infallible>(r)
                }
            });
            let _ = hyper::server::conn::http1::Builder::new()
                .serve_connection(TokioIo::new(stream), svc)
                .await;
        });
    }
}

/// Fail clearly when a tool the test needs is missing (install: scripts/setup.sh).
pub fn require_tool(path: &str) {
    let ok = Command::new("sh")
        .arg("-c")
        .arg(format!("command -v {path}"))
        .stdout(Stdio::null())
        .status()
        .map(|s| s.success())
        .unwrap_or(false);
    assert!(
        ok,
        "required tool {path:?} is missing: run scripts/setup.sh (Debian packages in scripts/debian-packages.txt)"
    );
}

/// Start a proxy from YAML text.
pub async fn start_proxy(yaml: &str) -> tack_proxy::Proxy {
    let cfg = tack_proxy::config::ProxyConfig::from_yaml_str(yaml)
        .unwrap_or_else(|e| panic!("bad test config: {e}\n{yaml}"));
    tack_proxy::Proxy::start(cfg).await.expect("start proxy")
}

/// A response as the tests look at it.
#[derive(Debug)]
pub struct Resp {
    /// Status.
    pub status: u16,
    /// Headers.
    pub headers: http::HeaderMap,
    /// Body.
    pub body: String,
}

impl Resp {
    /// All values of a header.
    pub fn all(&self, name: &str) -> Vec<String> {
        self.headers
            .get_all(name)
            .iter()
            .map(|v| v.to_str().unwrap().to_string())
            .collect()
    }
}

/// A POST of `len` bytes on a fresh connection; returns the body of the answer.
pub async fn post(addr: SocketAddr, path: &str, len: usize) -> String {
    let client: hyper_util::client::legacy::Client<_, Full<Bytes>> =
        hyper_util::client::legacy::Client::builder(TokioExecutor::new()).build_http();
    let req = hyper::Request::post(format!("http://{addr}{path}"))
        .body(Full::new(Bytes::from(vec![b'u'; len])))
        .unwrap();
    let r = tokio::time::timeout(Duration::from_secs(20), client.request(req))
        .await
        .expect("post timed out")
        .expect("post failed");
    String::from_utf8_lossy(&r.into_body().collect().await.unwrap().to_bytes()).to_string()
}

/// One HTTP/1.1 request on a fresh connection (for tests that need no real client).
pub async fn get(addr: SocketAddr, path: &str, headers: &[(&str, &str)]) -> Resp {
    let client: hyper_util::client::legacy::Client<_, Empty<Bytes>> =
        hyper_util::client::legacy::Client::builder(TokioExecutor::new())
            .pool_max_idle_per_host(0)
            .build_http();
    let mut req = hyper::Request::builder().uri(format!("http://{addr}{path}"));
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
    let status = r.status().as_u16();
    let headers = r.headers().clone();
    let body =
        String::from_utf8_lossy(&r.into_body().collect().await.unwrap().to_bytes()).to_string();
    Resp {
        status,
        headers,
        body,
    }
}

/// A child process killed (and reaped) when dropped.
pub struct ChildGuard(pub Child);

impl Drop for ChildGuard {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Run a command to completion in a blocking thread, returning stdout (panics with
/// stderr on failure).
pub async fn run_cmd(program: &str, args: Vec<String>) -> String {
    let p = program.to_string();
    let out = tokio::task::spawn_blocking(move || Command::new(&p).args(&args).output())
        .await
        .unwrap()
        .unwrap_or_else(|e| panic!("cannot run {program}: {e}"));
    assert!(
        out.status.success(),
        "{program} failed: {}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).to_string()
}

/// Wait until `cond` holds, polling every 20 ms, for at most `limit`.
pub async fn wait_until(limit: Duration, mut cond: impl FnMut() -> bool) -> bool {
    let t0 = std::time::Instant::now();
    while t0.elapsed() < limit {
        if cond() {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    cond()
}
