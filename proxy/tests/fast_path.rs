//! The HTTP/1.1 fast path: framing edge cases (pipelining, chunked bodies with
//! extensions and trailers, `Expect: 100-continue`, HEAD/204/304, responses without
//! a length), head edits, limits, slow clients, hand-over to hyper, and agreement
//! with the hyper path. Raw sockets on loopback on both sides, so every byte is
//! under the test's control.

mod support;

use std::net::SocketAddr;
use std::sync::atomic::Ordering;
use std::time::Duration;

use support::*;
use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;

fn one_server(addr: SocketAddr, fe_extra: &str, be_extra: &str) -> String {
    format!(
        "frontends:\n  - {{ name: web, bind: [\"127.0.0.1:0\"], backend: app, access_log: false{fe_extra} }}\nbackends:\n  - name: app\n{be_extra}    servers:\n      - {{ name: s1, address: \"{addr}\" }}\n"
    )
}

async fn connect(addr: SocketAddr) -> TcpStream {
    let s = TcpStream::connect(addr).await.unwrap();
    s.set_nodelay(true).unwrap();
    s
}

fn strip_date(head: &str) -> String {
    head.split("\r\n")
        .filter(|l| !l.to_ascii_lowercase().starts_with("date:"))
        .collect::<Vec<_>>()
        .join("\r\n")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pipelined_requests_are_answered_in_order() {
    let s1 = TestServer::start("s1").await;
    let proxy = start_proxy(&one_server(s1.addr, "", "")).await;
    let addr = proxy.local_addr("web").unwrap();
    let mut c = connect(addr).await;
    c.write_all(
        b"GET /a HTTP/1.1\r\nHost: x\r\n\r\n\
          POST /b HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n\r\nhello\
          POST /c HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n3;ext=1\r\nabc\r\n4\r\ndefg\r\n0\r\nX-T: 1\r\n\r\n\
          HEAD /d HTTP/1.1\r\nHost: x\r\n\r\n\
          GET /e HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
    )
    .await
    .unwrap();
    let mut buf = Vec::new();
    let mut bodies = Vec::new();
    for head in [false, false, false, true, false] {
        let r = read_response(&mut c, &mut buf, head)
            .await
            .expect("response");
        assert_eq!(r.status, 200, "{}", r.head);
        bodies.push(String::from_utf8(r.body).unwrap());
    }
    assert_eq!(bodies, ["s1", "s1 got 5", "s1 got 7", "", "s1"]);
    assert!(closed_within(&mut c, Duration::from_secs(2)).await);
    let uris: Vec<String> = s1.seen().into_iter().map(|s| s.uri).collect();
    assert_eq!(uris, ["/a", "/b", "/c", "/d", "/e"]);
    // One kept-alive server connection carried them all.
    assert_eq!(
        proxy
            .frontend("web")
            .unwrap()
            .upstream()
            .pool(0, false)
            .idle_count(),
        1
    );
    proxy.shutdown().await;
}

/// The same request stream, written in pieces split at arbitrary points, gets the
/// same responses byte for byte (dates aside).
#[test]
fn split_request_streams_get_the_same_answers() {
    use proptest::prelude::*;
    use proptest::test_runner::{Config, TestRunner};
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let (s1, proxy) = rt.block_on(async {
        let s1 = TestServer::start("s1").await;
        let proxy = start_proxy(&one_server(
            s1.addr,
            "",
            "    cookie: { name: SRV, mode: insert, indirect: true }\n",
        ))
        .await;
        (s1, proxy)
    });
    let addr = proxy.local_addr("web").unwrap();
    let stream: &[u8] = b"GET /a?x=1 HTTP/1.1\r\nHost: x\r\nCookie: SRV=s1; z=2\r\n\r\n\
        POST /b HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n5;a=b\r\nhello\r\n0\r\nX-Trailer: t\r\n\r\n\
        POST /c HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\n\r\nxyz\
        GET /d HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n";
    let exchange = |cuts: Vec<usize>| {
        rt.block_on(async {
            let mut c = connect(addr).await;
            let mut prev = 0;
            for cut in cuts.into_iter().chain([stream.len()]) {
                if cut > prev {
                    c.write_all(&stream[prev..cut]).await.unwrap();
                    tokio::time::sleep(Duration::from_millis(1)).await;
                    prev = cut;
                }
            }
            let mut buf = Vec::new();
            let mut out = Vec::new();
            while let Some(r) = read_response(&mut c, &mut buf, false).await {
                out.push((strip_date(&r.head), r.body));
            }
            out
        })
    };
    let reference = exchange(Vec::new());
    assert_eq!(reference.len(), 4, "{reference:?}");
    assert!(!reference[0].0.contains("set-cookie"));
    assert_eq!(reference[1].1, b"s1 got 5");
    assert_eq!(reference[2].1, b"s1 got 3");
    let mut runner = TestRunner::new(Config {
        cases: 24,
        failure_persistence: None,
        ..Config::default()
    });
    runner
        .run(
            &proptest::collection::vec(0..stream.len(), 1..6),
            |mut cuts| {
                cuts.sort_unstable();
                prop_assert_eq!(exchange(cuts), reference.clone());
                Ok(())
            },
        )
        .unwrap();
    // The client's persistence cookie never reached the server (indirect).
    assert!(s1.seen().iter().all(|s| !s.cookie.contains("SRV")));
    rt.block_on(proxy.shutdown());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn chunked_bodies_pass_verbatim_with_extensions_and_trailers() {
    let raw = RawServer::start(|head| {
        if head.starts_with("POST") {
            Reply::keep(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nTrailer: X-Sum\r\n\r\n5;e=\"q\"\r\nhello\r\n6\r\n world\r\n0\r\nX-Sum: 11\r\n\r\n")
        } else {
            Reply::keep(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
        }
    })
    .await;
    let proxy = start_proxy(&one_server(raw.addr, "", "")).await;
    let addr = proxy.local_addr("web").unwrap();
    let mut c = connect(addr).await;
    let body: &[u8] = b"4;name=value\r\nwiki\r\n5\r\npedia\r\nE\r\n in\r\n\r\nchunks.\r\n0\r\nExpires: never\r\nX-Check: 1\r\n\r\n";
    c.write_all(b"POST /up HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n")
        .await
        .unwrap();
    c.write_all(&body[..10]).await.unwrap();
    tokio::time::sleep(Duration::from_millis(30)).await;
    c.write_all(&body[10..]).await.unwrap();
    let mut buf = Vec::new();
    let r = read_response(&mut c, &mut buf, false).await.unwrap();
    assert_eq!(r.status, 200);
    assert_eq!(
        r.body,
        b"5;e=\"q\"\r\nhello\r\n6\r\n world\r\n0\r\nX-Sum: 11\r\n\r\n"
    );
    assert_eq!(r.field("transfer-encoding").as_deref(), Some("chunked"));
    assert_eq!(r.field("trailer").as_deref(), Some("X-Sum"));
    // Then a request on the same client connection (the body's end was found).
    c.write_all(b"GET /next HTTP/1.1\r\nHost: x\r\n\r\n")
        .await
        .unwrap();
    let r = read_response(&mut c, &mut buf, false).await.unwrap();
    assert_eq!(r.body, b"ok");
    let reqs = raw.requests();
    assert_eq!(reqs.len(), 2);
    assert!(
        reqs[0].ends_with(body),
        "{:?}",
        String::from_utf8_lossy(&reqs[0])
    );
    assert_eq!(
        raw.connections.load(Ordering::SeqCst),
        1,
        "server connection reused"
    );
    proxy.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn expect_100_continue_is_answered_before_the_body() {
    let s1 = TestServer::start("s1").await;
    let proxy = start_proxy(&one_server(s1.addr, "", "")).await;
    let addr = proxy.local_addr("web").unwrap();
    let mut c = connect(addr).await;
    c.write_all(
        b"POST /up HTTP/1.1\r\nHost: x\r\nExpect: 100-continue\r\nContent-Length: 5\r\n\r\n",
    )
    .await
    .unwrap();
    let mut buf = Vec::new();
    let r = read_response(&mut c, &mut buf, false).await.unwrap();
    assert_eq!(r.status, 100);
    c.write_all(b"hello").await.unwrap();
    let r = read_response(&mut c, &mut buf, false).await.unwrap();
    assert_eq!((r.status, r.body.as_slice()), (200, &b"s1 got 5"[..]));
    proxy.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn head_204_and_304_have_no_body() {
    let raw = RawServer::start(|head| {
        let path = head.split(' ').nth(1).unwrap_or("");
        Reply::keep(match path {
            "/h" => b"HTTP/1.1 200 OK\r\nContent-Length: 1000\r\n\r\n",
            "/204" => b"HTTP/1.1 204 No Content\r\n\r\n",
            "/304" => b"HTTP/1.1 304 Not Modified\r\nETag: \"v1\"\r\nContent-Length: 50\r\n\r\n",
            "/103" => b"HTTP/1.1 103 Early Hints\r\nLink: </s.css>\r\n\r\nHTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nhi",
            _ => b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok",
        })
    })
    .await;
    let proxy = start_proxy(&one_server(raw.addr, "", "")).await;
    let addr = proxy.local_addr("web").unwrap();
    let mut c = connect(addr).await;
    let mut buf = Vec::new();
    for (req, head, status, body) in [
        ("HEAD /h", true, 200, ""),
        ("GET /204", false, 204, ""),
        ("GET /304", false, 304, ""),
        ("GET /103", false, 103, ""),
        ("GET /ok", false, 200, "hi"),
        ("GET /ok", false, 200, "ok"),
    ] {
        if status != 200 || body != "hi" {
            c.write_all(format!("{req} HTTP/1.1\r\nHost: x\r\n\r\n").as_bytes())
                .await
                .unwrap();
        }
        let r = read_response(&mut c, &mut buf, head).await.unwrap();
        assert_eq!(r.status, status, "{req}: {}", r.head);
        assert_eq!(String::from_utf8_lossy(&r.body), body, "{req}");
        if req == "HEAD /h" {
            assert_eq!(r.field("content-length").as_deref(), Some("1000"));
        }
    }
    assert!(buf.is_empty(), "no stray bytes: {buf:?}");
    assert_eq!(raw.connections.load(Ordering::SeqCst), 1);
    proxy.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn responses_without_length_close_the_connection() {
    let raw = RawServer::start(|head| {
        if head.starts_with("GET /stream") {
            Reply {
                bytes:
                    b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\n\r\nall of it, until the end"
                        .to_vec(),
                read_body: true,
                close: true,
            }
        } else {
            Reply {
                bytes: b"HTTP/1.0 200 OK\r\nContent-Length: 3\r\n\r\nold".to_vec(),
                read_body: true,
                close: true,
            }
        }
    })
    .await;
    let proxy = start_proxy(&one_server(raw.addr, "", "")).await;
    let addr = proxy.local_addr("web").unwrap();
    let mut c = connect(addr).await;
    c.write_all(b"GET /stream HTTP/1.1\r\nHost: x\r\n\r\n")
        .await
        .unwrap();
    let mut buf = Vec::new();
    let r = read_response(&mut c, &mut buf, false).await.unwrap();
    assert_eq!(r.body, b"all of it, until the end");
    assert_eq!(r.field("connection").as_deref(), Some("close"));
    // An HTTP/1.0 server closing after its response: the client connection stays.
    let mut c = connect(addr).await;
    for _ in 0..2 {
        c.write_all(b"GET /old HTTP/1.1\r\nHost: x\r\n\r\n")
            .await
            .unwrap();
        let r = read_response(&mut c, &mut buf, false).await.unwrap();
        assert!(r.head.starts_with("HTTP/1.1 200 OK\r\n"), "{}", r.head);
        assert_eq!(r.body, b"old");
        assert_eq!(r.field("connection"), None);
    }
    assert_eq!(raw.connections.load(Ordering::SeqCst), 3);
    proxy.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn head_and_response_edits() {
    let raw = RawServer::start(|_| {
        Reply::keep(b"HTTP/1.1 200 OK\r\nConnection: keep-alive, X-Hop\r\nX-Hop: 1\r\nKeep-Alive: timeout=5\r\nSet-Cookie: SRV=evil; path=/\r\nSet-Cookie: other=1\r\nContent-Length: 2\r\n\r\nok")
    })
    .await;
    let proxy = start_proxy(&one_server(
        raw.addr,
        "",
        "    forwardfor: true\n    cookie: { name: SRV, mode: insert, indirect: true }\n",
    ))
    .await;
    let addr = proxy.local_addr("web").unwrap();
    let mut c = connect(addr).await;
    c.write_all(b"GET /p?q=1 HTTP/1.1\r\nHost: h.example\r\nConnection: keep-alive, X-Secret\r\nX-Secret: 1\r\nKeep-Alive: 5\r\nTE: trailers\r\nCookie: a=1; SRV=s1; b=2\r\nX-Forwarded-For: 10.0.0.1\r\nX-Kept: yes\r\n\r\n").await.unwrap();
    let mut buf = Vec::new();
    let r = read_response(&mut c, &mut buf, false).await.unwrap();
    assert_eq!(r.body, b"ok");
    assert_eq!(r.fields("set-cookie"), ["other=1"], "{}", r.head);
    for hop in ["connection", "keep-alive", "x-hop"] {
        assert_eq!(r.field(hop), None, "{hop} in {}", r.head);
    }
    let seen = String::from_utf8(raw.requests()[0].clone()).unwrap();
    assert!(seen.starts_with("GET /p?q=1 HTTP/1.1\r\n"), "{seen}");
    assert_eq!(head_field(&seen, "host").as_deref(), Some("h.example"));
    assert_eq!(head_field(&seen, "cookie").as_deref(), Some("a=1; b=2"));
    assert_eq!(
        head_field(&seen, "x-forwarded-for").as_deref(),
        Some("10.0.0.1, 127.0.0.1")
    );
    assert_eq!(head_field(&seen, "x-kept").as_deref(), Some("yes"));
    for hop in ["connection", "keep-alive", "x-secret", "te"] {
        assert_eq!(head_field(&seen, hop), None, "{hop} in {seen}");
    }
    // No cookie: one is inserted (and the server's own is still dropped).
    c.write_all(b"GET / HTTP/1.1\r\n\r\n").await.unwrap();
    let r = read_response(&mut c, &mut buf, false).await.unwrap();
    assert_eq!(r.fields("set-cookie"), ["other=1", "SRV=s1; path=/"]);
    let seen = String::from_utf8(raw.requests()[1].clone()).unwrap();
    assert_eq!(
        head_field(&seen, "host").as_deref(),
        Some(raw.addr.to_string().as_str()),
        "Host added when the client sent none"
    );
    proxy.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn oversized_and_malformed_requests_are_refused_and_counted() {
    let s1 = TestServer::start("s1").await;
    let proxy = start_proxy(&one_server(s1.addr, "", "")).await;
    let addr = proxy.local_addr("web").unwrap();
    let many: String = (0..150).map(|i| format!("x-h{i}: v\r\n")).collect();
    let huge = format!("x-big: {}\r\n", "a".repeat(70_000));
    let cases: Vec<(Vec<u8>, u16)> = vec![
        (format!("GET / HTTP/1.1\r\n{many}\r\n").into_bytes(), 431),
        (format!("GET / HTTP/1.1\r\n{huge}\r\n").into_bytes(), 431),
        (
            b"GET / HTTP/1.1\r\nHost: x\r\nBad Header\r\n\r\n".to_vec(),
            400,
        ),
        (
            b"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n".to_vec(),
            400,
        ),
    ];
    for (req, status) in cases {
        let mut c = connect(addr).await;
        // The server may answer (and close) before a huge head is fully written.
        let _ = c.write_all(&req).await;
        let mut buf = Vec::new();
        let r = read_response(&mut c, &mut buf, false)
            .await
            .expect("answer");
        assert_eq!(r.status, status);
        assert_eq!(r.field("connection").as_deref(), Some("close"));
        assert!(closed_within(&mut c, Duration::from_secs(2)).await);
    }
    let fe = proxy.frontend("web").unwrap();
    assert_eq!(fe.stats.conn_errors.load(Ordering::Relaxed), 4);
    assert_eq!(get(addr, "/", &[]).await.body, "s1");
    assert!(s1.seen().iter().all(|s| s.uri == "/"));
    assert_eq!(s1.seen().len(), 1, "nothing malformed reached the server");
    proxy.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slow_clients() {
    let s1 = TestServer::start("s1").await;
    let proxy = start_proxy(&one_server(
        s1.addr,
        ", keepalive_timeout: 400ms, client_timeout: 500ms",
        "",
    ))
    .await;
    let addr = proxy.local_addr("web").unwrap();
    // A head trickling in byte by byte is served.
    let mut c = connect(addr).await;
    for b in b"GET /slow HTTP/1.1\r\nHost: x\r\n\r\n" {
        c.write_all(&[*b]).await.unwrap();
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    let mut buf = Vec::new();
    let r = read_response(&mut c, &mut buf, false).await.unwrap();
    assert_eq!(r.body, b"s1");
    // Idle past the keep-alive timeout: closed silently.
    assert!(closed_within(&mut c, Duration::from_secs(3)).await);
    // A head that stops half-way: 408, then closed.
    let mut c = connect(addr).await;
    c.write_all(b"GET / HTTP/1.1\r\nHo").await.unwrap();
    let r = read_response(&mut c, &mut buf, false).await.unwrap();
    assert_eq!(r.status, 408);
    assert!(closed_within(&mut c, Duration::from_secs(2)).await);
    // A client that stops reading a large response is cut after the client
    // timeout; its server slot is given back.
    let mut c = connect(addr).await;
    c.write_all(b"GET /dl?big=30000000 HTTP/1.1\r\nHost: x\r\n\r\n")
        .await
        .unwrap();
    let fe = proxy.frontend("web").unwrap();
    let errors = fe.stats.conn_errors.load(Ordering::Relaxed);
    let b = proxy.backend("app").unwrap();
    assert!(
        wait_until(Duration::from_secs(5), || b.servers[0].slots.inflight()
            == 0
            && fe.stats.conn_errors.load(Ordering::Relaxed) > errors)
        .await,
        "stalled client not cut"
    );
    drop(c);
    assert_eq!(get(addr, "/after", &[]).await.body, "s1");
    proxy.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn early_answer_while_the_body_is_sent() {
    let raw = RawServer::start(|_| Reply {
        bytes:
            b"HTTP/1.1 413 Payload Too Large\r\nContent-Length: 4\r\nConnection: close\r\n\r\nbig!"
                .to_vec(),
        read_body: false,
        close: true,
    })
    .await;
    let proxy = start_proxy(&one_server(raw.addr, "", "")).await;
    let addr = proxy.local_addr("web").unwrap();
    let c = connect(addr).await;
    let (mut rd, mut wr) = c.into_split();
    let writer = tokio::spawn(async move {
        let _ = wr
            .write_all(b"POST /up HTTP/1.1\r\nHost: x\r\nContent-Length: 50000000\r\n\r\n")
            .await;
        let chunk = vec![b'u'; 65536];
        for _ in 0..763 {
            if wr.write_all(&chunk).await.is_err() {
                break;
            }
        }
    });
    let mut buf = Vec::new();
    let mut got = Vec::new();
    let t0 = std::time::Instant::now();
    let head = loop {
        use tokio::io::AsyncReadExt;
        let mut tmp = [0u8; 4096];
        let n = tokio::time::timeout(Duration::from_secs(10), rd.read(&mut tmp))
            .await
            .expect("answer in time")
            .unwrap_or(0);
        assert!(n > 0 || !got.is_empty(), "closed without an answer");
        got.extend_from_slice(&tmp[..n]);
        if let Some(p) = got.windows(4).position(|w| w == b"\r\n\r\n") {
            buf.extend_from_slice(&got[p + 4..]);
            break String::from_utf8_lossy(&got[..p]).to_string();
        }
    };
    assert!(head.starts_with("HTTP/1.1 413"), "{head}");
    assert!(head.to_ascii_lowercase().contains("connection: close"));
    assert!(t0.elapsed() < Duration::from_secs(10));
    writer.abort();
    proxy.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn what_the_fast_path_leaves_goes_to_hyper() {
    let s1 = TestServer::start("s1").await;
    let proxy = start_proxy(&one_server(s1.addr, "", "")).await;
    let addr = proxy.local_addr("web").unwrap();
    let mut c = connect(addr).await;
    let mut buf = Vec::new();
    // Fast path first, then an upgrade request, then more on the same connection.
    c.write_all(b"GET /a HTTP/1.1\r\nHost: x\r\n\r\n")
        .await
        .unwrap();
    assert_eq!(
        read_response(&mut c, &mut buf, false).await.unwrap().body,
        b"s1"
    );
    c.write_all(
        b"GET /ws HTTP/1.1\r\nHost: x\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\r\nGET /b HTTP/1.1\r\nHost: x\r\n\r\n",
    )
    .await
    .unwrap();
    for _ in 0..2 {
        let r = read_response(&mut c, &mut buf, false).await.unwrap();
        assert_eq!((r.status, r.body.as_slice()), (200, &b"s1"[..]));
    }
    // HTTP/1.0 goes to hyper; a transfer coding other than chunked is refused
    // (it used to reach hyper, which forwarded the body re-chunked without it).
    let mut c = connect(addr).await;
    c.write_all(b"GET /c HTTP/1.0\r\nHost: x\r\n\r\n")
        .await
        .unwrap();
    let r = read_response(&mut c, &mut buf, false).await.unwrap();
    assert_eq!(r.body, b"s1");
    let mut c = connect(addr).await;
    c.write_all(
        b"POST /d HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: gzip, chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\n",
    )
    .await
    .unwrap();
    let r = read_response(&mut c, &mut buf, false).await.unwrap();
    assert_eq!(r.status, 501, "{}", r.head);
    let uris: Vec<String> = s1.seen().into_iter().map(|s| s.uri).collect();
    assert_eq!(uris, ["/a", "/ws", "/b", "/c"]);
    proxy.shutdown().await;
}

/// Frontends with and without the fast path, on the same backends, answer alike.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fast_and_hyper_paths_agree() {
    let s1 = TestServer::start("s1").await;
    let s2 = TestServer::start("s2").await;
    let yaml = format!(
        "frontends:
  - {{ name: fast, bind: [\"127.0.0.1:0\"], backend: ins, access_log: false }}
  - {{ name: hyper, bind: [\"127.0.0.1:0\"], backend: ins, access_log: false, fast_path: false }}
  - {{ name: pfast, bind: [\"127.0.0.1:0\"], backend: pre, access_log: false }}
  - {{ name: phyper, bind: [\"127.0.0.1:0\"], backend: pre, access_log: false, fast_path: false }}
backends:
  - name: ins
    cookie: {{ name: SRV, mode: insert, indirect: true, nocache: true, httponly: true }}
    session_id: {{ cookie: JSESSIONID }}
    servers:
      - {{ name: s1, address: \"{a}\" }}
      - {{ name: s2, address: \"{b}\" }}
  - name: pre
    cookie: {{ name: SRVCK, mode: prefix }}
    servers:
      - {{ name: s1, address: \"{a}\" }}
      - {{ name: s2, address: \"{b}\" }}
",
        a = s1.addr,
        b = s2.addr
    );
    let proxy = start_proxy(&yaml).await;
    type Case<'a> = (&'a str, &'a str, &'a [(&'a str, &'a str)]);
    let cases: [Case<'_>; 6] = [
        ("fast", "/static/x", &[("cookie", "SRV=s2")]),
        ("fast", "/", &[("cookie", "SRV=s1; a=b")]),
        ("fast", "/login?sid=abc", &[("cookie", "SRV=s2")]),
        ("fast", "/x", &[("cookie", "JSESSIONID=abc")]),
        ("pfast", "/setck?v=7", &[("cookie", "SRVCK=s2~old")]),
        ("pfast", "/", &[("cookie", "SRVCK=s1~v")]),
    ];
    for (fe, path, hdrs) in cases {
        let other = if fe == "fast" { "hyper" } else { "phyper" };
        let a = get(proxy.local_addr(fe).unwrap(), path, hdrs).await;
        let b = get(proxy.local_addr(other).unwrap(), path, hdrs).await;
        assert_eq!(a.status, b.status, "{path}");
        assert_eq!(a.body, b.body, "{path}");
        for h in ["set-cookie", "cache-control", "x-server", "content-length"] {
            assert_eq!(a.all(h), b.all(h), "{h} on {path}");
        }
    }
    // A fresh client gets a cookie of the same form on both paths, and a
    // cacheable response is marked private.
    let a = get(proxy.local_addr("fast").unwrap(), "/static/z", &[]).await;
    let b = get(proxy.local_addr("hyper").unwrap(), "/static/z", &[]).await;
    let form = |r: &Resp| {
        r.all("set-cookie")[0]
            .replace("s1", "sX")
            .replace("s2", "sX")
    };
    assert_eq!(form(&a), "SRV=sX; path=/; HttpOnly");
    assert_eq!(form(&a), form(&b));
    assert_eq!(a.all("cache-control"), ["private"]);
    assert_eq!(a.all("cache-control"), b.all("cache-control"));
    // Servers saw the same requests from both paths (cookies rewritten alike).
    let seen: Vec<(String, String)> = s1
        .seen()
        .into_iter()
        .chain(s2.seen())
        .map(|s| (s.uri, s.cookie))
        .collect();
    for (uri, cookie) in &seen {
        assert!(
            seen.iter().filter(|(u, c)| u == uri && c == cookie).count() >= 2,
            "{uri} {cookie:?} seen once: {seen:?}"
        );
    }
    proxy.shutdown().await;
}

/// Mutated request streams (bytes flipped, inserted or cut) get an answer or a
/// close, never break the proxy: it keeps serving and its counters stay sane.
#[test]
fn mutated_requests_never_break_the_proxy() {
    use proptest::prelude::*;
    use proptest::test_runner::{Config, TestRunner};
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let (s1, proxy) = rt.block_on(async {
        let s1 = TestServer::start("s1").await;
        let proxy = start_proxy(&one_server(
            s1.addr,
            ", keepalive_timeout: 1s, client_timeout: 1s",
            "    cookie: { name: SRV, mode: prefix }\n    forwardfor: true\n    timeouts: { server: 2s }\n",
        ))
        .await;
        (s1, proxy)
    });
    let addr = proxy.local_addr("web").unwrap();
    let seed: &[u8] = b"POST /a?b=1 HTTP/1.1\r\nHost: x\r\nCookie: SRV=s1~v; o=1\r\nConnection: keep-alive, X-A\r\nX-A: 1\r\nTransfer-Encoding: chunked\r\n\r\n4;e=1\r\nbody\r\n0\r\nT: 1\r\n\r\nGET /c HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\nExpect: 100-continue\r\n\r\nhi";
    let mutation = (
        proptest::collection::vec((0..seed.len(), any::<u8>(), 0u8..3), 1..6),
        0..=seed.len(),
    );
    let mut runner = TestRunner::new(Config {
        cases: 128,
        failure_persistence: None,
        ..Config::default()
    });
    runner
        .run(&mutation, |(edits, cut)| {
            let mut req = seed[..cut].to_vec();
            for (at, byte, how) in edits {
                let at = at.min(req.len());
                match how {
                    0 if at < req.len() => req[at] = byte,
                    1 => req.insert(at, byte),
                    _ if at < req.len() => {
                        req.remove(at);
                    }
                    _ => {}
                }
            }
            rt.block_on(async {
                let mut c = connect(addr).await;
                let _ = c.write_all(&req).await;
                let _ = c.shutdown().await;
                // Whatever comes back, the connection ends within the timeouts.
                let mut buf = Vec::new();
                let end = tokio::time::timeout(Duration::from_secs(8), async {
                    while read_response(&mut c, &mut buf, false).await.is_some() {}
                })
                .await;
                prop_assert!(
                    end.is_ok(),
                    "connection left open: {:?}",
                    String::from_utf8_lossy(&req)
                );
                Ok(())
            })
        })
        .unwrap();
    rt.block_on(async {
        assert_eq!(get(addr, "/after", &[]).await.body, "s1");
        let b = proxy.backend("app").unwrap();
        assert!(
            wait_until(Duration::from_secs(3), || b.servers[0].slots.inflight()
                == 0)
            .await,
            "a slot leaked"
        );
        let fe = proxy.frontend("web").unwrap();
        assert!(
            wait_until(Duration::from_secs(3), || fe
                .stats
                .open_connections
                .load(Ordering::Relaxed)
                == 0)
            .await,
            "a client connection was left open"
        );
    });
    // Some mutated streams were still valid requests and were served.
    assert!(s1.seen().len() > 10, "{}", s1.seen().len());
    drop(s1);
    rt.block_on(proxy.shutdown());
}

/// HTTP/1.0 clients (served by hyper after the hand-over): kept alive when they
/// ask for it, closed after the response when they do not; a request with both a
/// length and a coding is answered, then its connection closed (RFC 9112 6.3).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http10_keep_alive_and_close_after_length_with_coding() {
    let s1 = TestServer::start("s1").await;
    for fast in [true, false] {
        let proxy = start_proxy(&one_server(s1.addr, &format!(", fast_path: {fast}"), "")).await;
        let addr = proxy.local_addr("web").unwrap();
        let mut buf = Vec::new();
        let mut c = connect(addr).await;
        for path in ["/a", "/b"] {
            c.write_all(
                format!("GET {path} HTTP/1.0\r\nConnection: keep-alive\r\n\r\n").as_bytes(),
            )
            .await
            .unwrap();
            let r = read_response(&mut c, &mut buf, false).await.unwrap();
            assert_eq!((r.status, r.body.as_slice()), (200, &b"s1"[..]), "{fast}");
            assert_eq!(
                r.field("connection")
                    .map(|v| v.to_ascii_lowercase())
                    .as_deref(),
                Some("keep-alive"),
                "{fast}: {}",
                r.head
            );
        }
        c.write_all(b"GET /c HTTP/1.0\r\n\r\n").await.unwrap();
        let r = read_response(&mut c, &mut buf, false).await.unwrap();
        assert_eq!(r.status, 200);
        assert!(
            closed_within(&mut c, Duration::from_secs(2)).await,
            "{fast}"
        );

        let mut c = connect(addr).await;
        c.write_all(
            b"POST /d HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n",
        )
        .await
        .unwrap();
        let r = read_response(&mut c, &mut buf, false).await.unwrap();
        assert_eq!(r.body, b"s1 got 5", "{fast}");
        assert_eq!(r.field("connection").as_deref(), Some("close"), "{fast}");
        assert!(
            closed_within(&mut c, Duration::from_secs(2)).await,
            "{fast}"
        );
        proxy.shutdown().await;
    }
}

/// A request refused after pipelined ones that were fine: those are answered
/// first, then the refusal, then the connection closes, on both paths (on the
/// hyper path the guard writes the refusal after hyper's last response).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refusal_after_pipelined_requests() {
    let s1 = TestServer::start("s1").await;
    for fast in [true, false] {
        let proxy = start_proxy(&one_server(s1.addr, &format!(", fast_path: {fast}"), "")).await;
        let addr = proxy.local_addr("web").unwrap();
        let mut c = connect(addr).await;
        c.write_all(
            b"GET /a HTTP/1.1\r\nHost: x\r\n\r\n\
              POST /b HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\n\r\nhi\
              GET /c HTTP/1.1\r\nHost: x\r\nHost: y\r\n\r\n\
              GET /d HTTP/1.1\r\nHost: x\r\n\r\n",
        )
        .await
        .unwrap();
        let mut buf = Vec::new();
        let mut got = Vec::new();
        while let Some(r) = read_response(&mut c, &mut buf, false).await {
            got.push((r.status, String::from_utf8_lossy(&r.body).to_string()));
            if r.status == 400 {
                break;
            }
        }
        assert_eq!(
            got.iter().map(|(s, _)| *s).collect::<Vec<_>>(),
            [200, 200, 400],
            "fast path {fast}: {got:?}"
        );
        assert_eq!(got[1].1, "s1 got 2");
        assert!(
            closed_within(&mut c, Duration::from_secs(2)).await,
            "{fast}"
        );
        proxy.shutdown().await;
    }
    let uris: Vec<String> = s1.seen().into_iter().map(|s| s.uri).collect();
    assert_eq!(
        uris,
        ["/a", "/b", "/a", "/b"],
        "nothing after the refused request"
    );
}
