//! Test peers: real HTTP backends on loopback (hyper), tool checks, a small HTTP
//! client, and process guards that clean up after themselves.
#![allow(dead_code)]

pub mod nginx;
pub mod pki;

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

/// The value of the first metrics line of `proxy` that starts with `line_start`
/// (a metric name with its labels).
pub fn metric(proxy: &tack_proxy::Proxy, line_start: &str) -> u64 {
    let text = proxy.render_metrics();
    text.lines()
        .find(|l| l.starts_with(line_start))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| panic!("no {line_start} in the metrics:\n{text}"))
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

/// Starts HAProxy (Debian's) in the foreground on configuration `cfg`,
/// checked first with `haproxy -c`, and waits until it listens on every
/// port of `ports` on the loopback. Killed when the guard drops.
pub async fn start_haproxy(cfg: &str, ports: &[u16]) -> (ChildGuard, tempfile::TempDir) {
    require_tool("haproxy");
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("haproxy.cfg");
    std::fs::write(&path, cfg).unwrap();
    let check = Command::new("haproxy")
        .arg("-c")
        .arg("-f")
        .arg(&path)
        .output()
        .unwrap();
    assert!(
        check.status.success(),
        "haproxy -c: {}\n{}\n{cfg}",
        String::from_utf8_lossy(&check.stdout),
        String::from_utf8_lossy(&check.stderr)
    );
    let child = Command::new("haproxy")
        .arg("-db")
        .arg("-f")
        .arg(&path)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("start haproxy");
    let guard = ChildGuard(child);
    for &p in ports {
        let up = wait_until(Duration::from_secs(10), || {
            std::net::TcpStream::connect(("127.0.0.1", p)).is_ok()
        })
        .await;
        assert!(up, "haproxy did not listen on {p}:\n{cfg}");
    }
    (guard, dir)
}

/// What a [`RawServer`] does with a request, decided from its head.
pub struct Reply {
    /// Bytes to send back (written as they are).
    pub bytes: Vec<u8>,
    /// Read the request body before answering (false: answer right after the head).
    pub read_body: bool,
    /// Close the connection after answering.
    pub close: bool,
}

impl Reply {
    /// Answer after reading the whole request, keep the connection.
    pub fn keep(bytes: &[u8]) -> Reply {
        Reply {
            bytes: bytes.to_vec(),
            read_body: true,
            close: false,
        }
    }
}

/// A scripted HTTP/1.1 server on loopback that sees and sends raw bytes: it
/// records every request as received (head and body with its framing) and answers
/// with what the script returns, so tests control framing byte for byte.
pub struct RawServer {
    /// Bound address.
    pub addr: SocketAddr,
    /// Requests received, raw.
    pub requests: Arc<Mutex<Vec<Vec<u8>>>>,
    /// Connections accepted.
    pub connections: Arc<std::sync::atomic::AtomicUsize>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for RawServer {
    fn drop(&mut self) {
        self.task.abort();
    }
}

fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}

/// The length of a chunked body at the start of `b` (with trailers), if complete.
pub fn chunked_len(b: &[u8]) -> Option<usize> {
    let mut i = 0;
    loop {
        let line_end = i + find(&b[i..], b"\r\n")?;
        let line = std::str::from_utf8(&b[i..line_end]).ok()?;
        let size = usize::from_str_radix(line.split(';').next()?.trim(), 16).ok()?;
        i = line_end + 2;
        if size == 0 {
            // Trailers, then an empty line.
            loop {
                let e = i + find(&b[i..], b"\r\n")?;
                let empty = e == i;
                i = e + 2;
                if empty {
                    return Some(i);
                }
            }
        }
        if b.len() < i + size + 2 {
            return None;
        }
        i += size + 2;
    }
}

/// A header of a raw head (case-insensitive name), first value.
pub fn head_field(head: &str, name: &str) -> Option<String> {
    head.split("\r\n").skip(1).find_map(|l| {
        let (k, v) = l.split_once(':')?;
        k.trim()
            .eq_ignore_ascii_case(name)
            .then(|| v.trim().to_string())
    })
}

impl RawServer {
    /// Start; `script` maps a request head (text) to the reply.
    pub async fn start(script: impl Fn(&str) -> Reply + Send + Sync + 'static) -> RawServer {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let listener =
            tack_proxy::bind_listener("127.0.0.1:0".parse().unwrap(), false, false).unwrap();
        let addr = listener.local_addr().unwrap();
        let requests = Arc::new(Mutex::new(Vec::new()));
        let connections = Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let script = Arc::new(script);
        let (reqs, conns) = (requests.clone(), connections.clone());
        let task = tokio::spawn(async move {
            let mut set = JoinSet::new();
            loop {
                let Ok((mut s, _)) = listener.accept().await else {
                    continue;
                };
                conns.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                let (script, reqs) = (script.clone(), reqs.clone());
                set.spawn(async move {
                    let mut buf = Vec::new();
                    let mut tmp = vec![0u8; 65536];
                    loop {
                        let head_end = loop {
                            if let Some(p) = find(&buf, b"\r\n\r\n") {
                                break p + 4;
                            }
                            match s.read(&mut tmp).await {
                                Ok(0) | Err(_) => return,
                                Ok(n) => buf.extend_from_slice(&tmp[..n]),
                            }
                        };
                        let head = String::from_utf8_lossy(&buf[..head_end]).to_string();
                        let reply = script(&head);
                        let mut total = head_end;
                        if reply.read_body {
                            let chunked = head_field(&head, "transfer-encoding")
                                .is_some_and(|v| v.eq_ignore_ascii_case("chunked"));
                            let len: usize = head_field(&head, "content-length")
                                .and_then(|v| v.parse().ok())
                                .unwrap_or(0);
                            loop {
                                let have = if chunked {
                                    chunked_len(&buf[head_end..]).map(|n| head_end + n)
                                } else if buf.len() >= head_end + len {
                                    Some(head_end + len)
                                } else {
                                    None
                                };
                                if let Some(t) = have {
                                    total = t;
                                    break;
                                }
                                match s.read(&mut tmp).await {
                                    Ok(0) | Err(_) => return,
                                    Ok(n) => buf.extend_from_slice(&tmp[..n]),
                                }
                            }
                        }
                        reqs.lock().unwrap().push(buf[..total].to_vec());
                        buf.drain(..total);
                        if s.write_all(&reply.bytes).await.is_err() || reply.close {
                            let _ = s.shutdown().await;
                            return;
                        }
                    }
                });
            }
        });
        RawServer {
            addr,
            requests,
            connections,
            task,
        }
    }

    /// Requests received so far.
    pub fn requests(&self) -> Vec<Vec<u8>> {
        self.requests.lock().unwrap().clone()
    }
}

/// A response read off a raw connection.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RawResponse {
    /// Status code.
    pub status: u16,
    /// The head as text.
    pub head: String,
    /// The body as sent (chunked framing included).
    pub body: Vec<u8>,
}

impl RawResponse {
    /// First value of a header.
    pub fn field(&self, name: &str) -> Option<String> {
        head_field(&self.head, name)
    }

    /// All values of a header.
    pub fn fields(&self, name: &str) -> Vec<String> {
        self.head
            .split("\r\n")
            .skip(1)
            .filter_map(|l| {
                let (k, v) = l.split_once(':')?;
                k.trim()
                    .eq_ignore_ascii_case(name)
                    .then(|| v.trim().to_string())
            })
            .collect()
    }
}

async fn more<S: tokio::io::AsyncRead + Unpin>(s: &mut S, buf: &mut Vec<u8>) -> bool {
    use tokio::io::AsyncReadExt;
    let mut tmp = [0u8; 16384];
    match tokio::time::timeout(Duration::from_secs(10), s.read(&mut tmp)).await {
        Ok(Ok(0)) | Ok(Err(_)) => false,
        Ok(Ok(n)) => {
            buf.extend_from_slice(&tmp[..n]);
            true
        }
        Err(_) => panic!("no response within 10 s"),
    }
}

/// Read one response from `s` (with `buf` holding bytes already read); `head`: the
/// request was HEAD. Bodies without a length are read to the end of the stream.
pub async fn read_response<S: tokio::io::AsyncRead + Unpin>(
    s: &mut S,
    buf: &mut Vec<u8>,
    head: bool,
) -> Option<RawResponse> {
    let head_end = loop {
        if let Some(p) = find(buf, b"\r\n\r\n") {
            break p + 4;
        }
        if !more(s, buf).await {
            return None;
        }
    };
    let text = String::from_utf8_lossy(&buf[..head_end]).to_string();
    let status: u16 = text.split(' ').nth(1)?.parse().ok()?;
    let chunked = head_field(&text, "transfer-encoding").is_some_and(|v| v.contains("chunked"));
    let len = head_field(&text, "content-length").and_then(|v| v.parse::<usize>().ok());
    let body_len = if head || (100..200).contains(&status) || status == 204 || status == 304 {
        0
    } else if chunked {
        loop {
            if let Some(n) = chunked_len(&buf[head_end..]) {
                break n;
            }
            if !more(s, buf).await {
                return None;
            }
        }
    } else if let Some(n) = len {
        while buf.len() < head_end + n {
            if !more(s, buf).await {
                return None;
            }
        }
        n
    } else {
        while more(s, buf).await {}
        buf.len() - head_end
    };
    let body = buf[head_end..head_end + body_len].to_vec();
    buf.drain(..head_end + body_len);
    Some(RawResponse {
        status,
        head: text,
        body,
    })
}

/// Whether the peer closed `s` (end of stream within `limit`).
pub async fn closed_within(s: &mut tokio::net::TcpStream, limit: Duration) -> bool {
    use tokio::io::AsyncReadExt;
    let mut b = [0u8; 1024];
    let t0 = std::time::Instant::now();
    while t0.elapsed() < limit {
        match tokio::time::timeout(limit, s.read(&mut b)).await {
            Ok(Ok(0)) | Ok(Err(_)) => return true,
            Ok(Ok(_)) => continue,
            Err(_) => return false,
        }
    }
    false
}
