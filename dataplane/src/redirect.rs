//! The HTTP half of the redirect responder (seed 000, claims 1, 6, 7, 25,
//! 30): from the first data segment a client sends to a primary virtual
//! server, the `302 Found` that sends it to the chosen real server's URL
//! with the original path and query, built into a buffer at packet rate and
//! without state.
//!
//! * The segment must hold the whole request head (request line, `Host`,
//!   the blank line): a request that spans more than one segment, or is
//!   malformed, or has no `Host`, is answered `400 Bad Request`.
//! * Paths under a secure prefix (e.g. `/checkout/`) are sent to the
//!   server's HTTPS URL, the others to its HTTP URL (000:30).
//! * An answer that would not fit `max` bytes (the client's MSS and
//!   window) becomes `414 URI Too Long`.
//! * Every answer closes the connection (`Connection: close`, and the
//!   responder sends FIN with it); a retransmitted request gets the
//!   identical answer, since the answer depends on the request alone.
//!
//! The TCP half (SYN cookies: [`crate::syncookie`]; the segment built in
//! place) is the pipeline's responder stage (`pipeline/respond.rs`).

use core::fmt;

/// The URLs of one real server: the base its clients are redirected to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServerUrls {
    /// Base URL for plain requests, without a trailing `/`
    /// (e.g. `http://www3.example.com`).
    pub http: String,
    /// Base URL for requests under a secure prefix
    /// (e.g. `https://www3.example.com`).
    pub https: String,
}

/// What the responder answered.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Answer {
    /// `302 Found` to the server's URL (`secure`: its HTTPS URL); `len`
    /// bytes written.
    Found {
        /// Bytes written.
        len: usize,
        /// Whether the HTTPS URL was used.
        secure: bool,
    },
    /// `400 Bad Request`: malformed, incomplete in this segment, or
    /// without `Host`.
    BadRequest {
        /// Bytes written.
        len: usize,
    },
    /// `414 URI Too Long`: the redirect would not fit the segment.
    TooLong {
        /// Bytes written.
        len: usize,
    },
}

impl Answer {
    /// Bytes written.
    pub fn len(&self) -> usize {
        match *self {
            Answer::Found { len, .. } | Answer::BadRequest { len } | Answer::TooLong { len } => len,
        }
    }

    /// Whether nothing was written (never: every answer has a status line).
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// Why nothing could be written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct NoRoom;

impl fmt::Display for NoRoom {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("no room for the shortest answer")
    }
}

const BAD_REQUEST: &[u8] =
    b"HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\nConnection: close\r\n\r\n";
const TOO_LONG: &[u8] =
    b"HTTP/1.1 414 URI Too Long\r\nContent-Length: 0\r\nConnection: close\r\n\r\n";

/// Most header fields a request may carry (more: 400).
const MAX_HEADERS: usize = 64;

/// Answers `request` (the first data segment's payload) for a client sent
/// to `urls`, into `out` (at most `max` bytes of it: the segment's room).
pub fn answer(
    request: &[u8],
    urls: &ServerUrls,
    secure_prefixes: &[String],
    out: &mut [u8],
    max: usize,
) -> Result<Answer, NoRoom> {
    let room = max.min(out.len());
    let fixed = |body: &[u8], out: &mut [u8]| -> Result<usize, NoRoom> {
        let dst = out
            .get_mut(..body.len())
            .filter(|_| body.len() <= room)
            .ok_or(NoRoom)?;
        dst.copy_from_slice(body);
        Ok(body.len())
    };
    let Some(path) = target_path(request) else {
        return fixed(BAD_REQUEST, out).map(|len| Answer::BadRequest { len });
    };
    let secure = secure_prefixes.iter().any(|p| path.starts_with(p.as_str()));
    let base = if secure { &urls.https } else { &urls.http };
    let parts: [&[u8]; 4] = [
        b"HTTP/1.1 302 Found\r\nLocation: ",
        base.as_bytes(),
        path.as_bytes(),
        b"\r\nContent-Length: 0\r\nConnection: close\r\n\r\n",
    ];
    let len: usize = parts.iter().map(|p| p.len()).sum();
    if len > room {
        return fixed(TOO_LONG, out).map(|len| Answer::TooLong { len });
    }
    let mut at = 0;
    for p in parts {
        out[at..at + p.len()].copy_from_slice(p);
        at += p.len();
    }
    Ok(Answer::Found { len, secure })
}

/// The path and query of a complete, well-formed request head with a
/// `Host`, from an origin-form (`/a?b`) or absolute-form
/// (`http://host/a?b`) target.
fn target_path(request: &[u8]) -> Option<&str> {
    let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
    let mut req = httparse::Request::new(&mut headers);
    match req.parse(request) {
        Ok(httparse::Status::Complete(_)) => {}
        _ => return None,
    }
    let hosts = req
        .headers
        .iter()
        .filter(|h| h.name.eq_ignore_ascii_case("host"))
        .count();
    if hosts != 1
        || req
            .headers
            .iter()
            .any(|h| h.name.eq_ignore_ascii_case("host") && h.value.is_empty())
    {
        return None;
    }
    let target = req.path?;
    let path = if target.starts_with('/') {
        target
    } else {
        // Absolute form: scheme://authority[/path]
        let rest = target
            .strip_prefix("http://")
            .or_else(|| target.strip_prefix("https://"))?;
        match rest.find(['/', '?']) {
            Some(i) if rest.as_bytes()[i] == b'/' => &rest[i..],
            _ => return None,
        }
    };
    path.bytes().all(|b| b.is_ascii_graphic()).then_some(path)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn urls() -> ServerUrls {
        ServerUrls {
            http: "http://www3.example.com".into(),
            https: "https://www3.example.com".into(),
        }
    }

    fn run(req: &[u8], max: usize) -> (Answer, String) {
        let mut out = [0u8; 2048];
        let a = answer(req, &urls(), &["/checkout/".to_string()], &mut out, max).unwrap();
        (a, String::from_utf8(out[..a.len()].to_vec()).unwrap())
    }

    #[test]
    fn redirects_with_path_and_query() {
        let (a, s) = run(
            b"GET /cart/add?item=7&q=2 HTTP/1.1\r\nHost: shop.example.com\r\nUser-Agent: t\r\n\r\n",
            1460,
        );
        assert_eq!(
            a,
            Answer::Found {
                len: s.len(),
                secure: false
            }
        );
        assert_eq!(
            s,
            "HTTP/1.1 302 Found\r\nLocation: http://www3.example.com/cart/add?item=7&q=2\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
        );
        // The same request again gets the same bytes (a retransmission).
        assert_eq!(run(b"GET /cart/add?item=7&q=2 HTTP/1.1\r\nHost: shop.example.com\r\nUser-Agent: t\r\n\r\n", 1460).1, s);
    }

    #[test]
    fn secure_paths_go_to_the_https_url() {
        let (a, s) = run(b"GET /checkout/pay HTTP/1.1\r\nHost: shop\r\n\r\n", 1460);
        assert!(matches!(a, Answer::Found { secure: true, .. }));
        assert!(
            s.contains("Location: https://www3.example.com/checkout/pay\r\n"),
            "{s}"
        );
    }

    #[test]
    fn absolute_form_keeps_its_path() {
        let (_, s) = run(
            b"GET http://shop.example.com/a/b?c HTTP/1.1\r\nHost: shop.example.com\r\n\r\n",
            1460,
        );
        assert!(
            s.contains("Location: http://www3.example.com/a/b?c\r\n"),
            "{s}"
        );
    }

    #[test]
    fn bad_or_partial_requests_get_400() {
        for req in [
            &b"GET /a HTTP/1.1\r\nHost: x\r\n"[..], // spans segments
            b"GET /a HTTP/1.1\r\n\r\n",             // no Host
            b"GET /a HTTP/1.1\r\nHost: x\r\nHost: y\r\n\r\n", // two Hosts
            b"GET /a HTTP/1.1\r\nHost:\r\n\r\n",    // empty Host
            b"GARBAGE\r\n\r\n",
            b"GET a HTTP/1.1\r\nHost: x\r\n\r\n",
            b"GET ftp://x/a HTTP/1.1\r\nHost: x\r\n\r\n",
            b"",
        ] {
            let (a, s) = run(req, 1460);
            assert!(matches!(a, Answer::BadRequest { .. }), "{req:?}");
            assert!(s.starts_with("HTTP/1.1 400 Bad Request\r\n"), "{s}");
        }
    }

    #[test]
    fn too_long_for_the_segment_gets_414() {
        let path = "/".repeat(1500);
        let req = format!("GET {path} HTTP/1.1\r\nHost: x\r\n\r\n");
        let (a, s) = run(req.as_bytes(), 536);
        assert!(matches!(a, Answer::TooLong { .. }));
        assert!(s.starts_with("HTTP/1.1 414 "));
        let mut tiny = [0u8; 10];
        assert_eq!(
            answer(
                b"GET / HTTP/1.1\r\nHost: x\r\n\r\n",
                &urls(),
                &[],
                &mut tiny,
                10
            ),
            Err(NoRoom)
        );
    }
}
