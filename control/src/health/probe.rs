//! One check of one server: a TCP connection, or an HTTP/1.0 request
//! whose answer must have an expected status and, if configured, contain
//! a string.

use std::net::{IpAddr, SocketAddr};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use super::Target;
use crate::profile::CheckKind;

/// Most bytes of an HTTP answer read (the status line, headers and the
/// start of the body).
const MAX_ANSWER: usize = 64 * 1024;

/// Runs one check of `t` within its timeout: `Ok`, or why it failed.
pub async fn probe(t: &Target) -> Result<(), String> {
    match tokio::time::timeout(t.check.timeout(), check(t)).await {
        Ok(r) => r,
        Err(_) => Err(format!("no answer within {} ms", t.check.timeout_ms)),
    }
}

async fn check(t: &Target) -> Result<(), String> {
    let mut s = TcpStream::connect(SocketAddr::new(t.addr, t.port))
        .await
        .map_err(|e| format!("connect: {e}"))?;
    if t.check.check == CheckKind::Tcp {
        return Ok(());
    }
    let host = match (&t.check.host, t.addr) {
        (Some(h), _) => h.clone(),
        (None, IpAddr::V6(a)) => format!("[{a}]"),
        (None, IpAddr::V4(a)) => a.to_string(),
    };
    let request = format!(
        "GET {} HTTP/1.0\r\nHost: {host}\r\nUser-Agent: tack-health-check\r\nConnection: close\r\n\r\n",
        t.check.path
    );
    s.write_all(request.as_bytes())
        .await
        .map_err(|e| format!("send: {e}"))?;
    let mut answer = Vec::with_capacity(4096);
    let mut limited = (&mut s).take(MAX_ANSWER as u64);
    limited
        .read_to_end(&mut answer)
        .await
        .map_err(|e| format!("receive: {e}"))?;
    judge(&t.check, &answer)
}

/// Whether HTTP answer `a` passes `check`.
fn judge(check: &crate::profile::HealthSection, a: &[u8]) -> Result<(), String> {
    let line_end = a
        .windows(2)
        .position(|w| w == b"\r\n")
        .ok_or("no HTTP status line")?;
    let line = std::str::from_utf8(&a[..line_end]).map_err(|_| "no HTTP status line")?;
    let mut parts = line.split(' ');
    let (Some(version), Some(code)) = (parts.next(), parts.next()) else {
        return Err(format!("bad status line `{line}`"));
    };
    let status: u16 = match (version.starts_with("HTTP/1."), code.parse()) {
        (true, Ok(s)) => s,
        _ => return Err(format!("bad status line `{line}`")),
    };
    if !check.status_passes(status) {
        return Err(format!("status {status}"));
    }
    if let Some(want) = &check.body {
        let body = a
            .windows(4)
            .position(|w| w == b"\r\n\r\n")
            .map_or(&[][..], |i| &a[i + 4..]);
        if !body
            .windows(want.len().max(1))
            .any(|w| w == want.as_bytes())
        {
            return Err(format!("the body does not contain `{want}`"));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::profile::HealthSection;

    fn http(expect: Vec<u16>, body: Option<&str>) -> HealthSection {
        HealthSection {
            check: CheckKind::Http,
            port: None,
            path: "/".into(),
            host: None,
            expect,
            body: body.map(str::to_string),
            interval_ms: 1000,
            timeout_ms: 500,
            rise: 2,
            fall: 3,
        }
    }

    #[test]
    fn answers_are_judged_by_status_and_body() {
        let ok = b"HTTP/1.1 200 OK\r\nContent-Length: 6\r\n\r\nall ok";
        assert_eq!(judge(&http(vec![], None), ok), Ok(()));
        assert_eq!(judge(&http(vec![], Some("ok")), ok), Ok(()));
        assert_eq!(
            judge(&http(vec![], Some("ready")), ok),
            Err("the body does not contain `ready`".into())
        );
        assert_eq!(judge(&http(vec![204], None), ok), Err("status 200".into()));
        let unavailable = b"HTTP/1.1 503 Service Unavailable\r\n\r\n";
        assert_eq!(
            judge(&http(vec![], None), unavailable),
            Err("status 503".into())
        );
        // 3xx passes by default.
        assert_eq!(
            judge(&http(vec![], None), b"HTTP/1.0 302 Found\r\n\r\n"),
            Ok(())
        );
        for junk in [
            &b""[..],
            b"SSH-2.0-OpenSSH\r\n",
            b"HTTP/1.1 abc\r\n",
            b"\xff\xfe\r\n",
        ] {
            assert!(judge(&http(vec![], None), junk).is_err());
        }
    }
}
