//! Health checks (seed 001 claim 13): TCP connect or HTTP request with an expected
//! status, every `interval`; `fall` consecutive failures take a server out of
//! rotation, `rise` consecutive successes bring it back. As in HAProxy, servers
//! start up, so a dead server leaves rotation within `interval × fall`.
//! A server that speaks only TLS (a `server_tls` backend, no `tls_address`) is
//! checked through its SSL context: the check's handshake is verified like any
//! other.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::Empty;
use hyper_util::rt::TokioIo;
use tokio::net::TcpStream;
use tokio::sync::watch;

use crate::backend::Server;
use crate::config::{CheckKind, HealthCheckConfig};
use crate::tls::client::ServerContext;
use crate::upstream::ServerStream;

/// Outcome of one check.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CheckResult {
    /// Passed.
    Ok,
    /// Failed, with the reason.
    Failed(String),
}

/// Run one check against a server (through `tls`, its SSL context, when it
/// speaks only TLS).
pub async fn check_once(
    cfg: &HealthCheckConfig,
    server: &Server,
    tls: Option<&ServerContext>,
) -> CheckResult {
    let timeout = cfg.timeout.map(|d| d.0).unwrap_or(cfg.interval.0);
    match tokio::time::timeout(timeout, check_inner(cfg, server, tls)).await {
        Ok(r) => r,
        Err(_) => CheckResult::Failed("timeout".into()),
    }
}

async fn check_inner(
    cfg: &HealthCheckConfig,
    server: &Server,
    tls: Option<&ServerContext>,
) -> CheckResult {
    let tcp = match TcpStream::connect(server.addr).await {
        Ok(s) => s,
        Err(e) => return CheckResult::Failed(format!("connect: {e}")),
    };
    if cfg.kind == CheckKind::Tcp {
        return CheckResult::Ok;
    }
    let stream = match tls {
        None => ServerStream::Plain(tcp),
        Some(ctx) => match ctx.handshake(tcp).await {
            Ok(s) => ServerStream::Tls(Box::new(s)),
            Err(e) => return CheckResult::Failed(format!("TLS: {e}")),
        },
    };
    let (mut sender, conn) = match hyper::client::conn::http1::handshake::<_, Empty<Bytes>>(
        TokioIo::new(stream),
    )
    .await
    {
        Ok(x) => x,
        Err(e) => return CheckResult::Failed(format!("handshake: {e}")),
    };
    let driver = tokio::spawn(conn);
    let req = match http::Request::builder()
        .method(cfg.method.as_str())
        .uri(cfg.path.as_str())
        .header(http::header::HOST, server.addr.to_string())
        .header(http::header::USER_AGENT, "tack-proxy-check")
        .header(http::header::CONNECTION, "close")
        .body(Empty::new())
    {
        Ok(r) => r,
        Err(e) => return CheckResult::Failed(format!("request: {e}")),
    };
    let res = sender.send_request(req).await;
    driver.abort();
    match res {
        Ok(r) => {
            let st = r.status().as_u16();
            let ok = match cfg.expect_status {
                Some(want) => st == want,
                None => (200..400).contains(&st),
            };
            if ok {
                CheckResult::Ok
            } else {
                CheckResult::Failed(format!("status {st}"))
            }
        }
        Err(e) => CheckResult::Failed(format!("response: {e}")),
    }
}

/// The rise/fall state machine of one server.
#[derive(Debug, Clone)]
pub struct HealthState {
    rise: u32,
    fall: u32,
    up: bool,
    count: u32,
}

impl HealthState {
    /// A server that starts up.
    pub fn new(rise: u32, fall: u32) -> HealthState {
        HealthState {
            rise,
            fall,
            up: true,
            count: 0,
        }
    }

    /// Feed one result; returns the new state when it changed.
    pub fn feed(&mut self, ok: bool) -> Option<bool> {
        if ok == self.up {
            self.count = 0;
            return None;
        }
        self.count += 1;
        let need = if self.up { self.fall } else { self.rise };
        if self.count >= need {
            self.up = !self.up;
            self.count = 0;
            Some(self.up)
        } else {
            None
        }
    }
}

/// Check `server` until `stop` changes.
pub async fn run_checks(
    cfg: HealthCheckConfig,
    server: Arc<Server>,
    tls: Option<Arc<ServerContext>>,
    mut stop: watch::Receiver<bool>,
) {
    let mut state = HealthState::new(cfg.rise.0, cfg.fall.0);
    let mut tick = tokio::time::interval(cfg.interval.0);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    // Spread the first checks a little so servers are not probed in lockstep.
    let jitter = Duration::from_millis(fastrand::u64(
        0..=cfg.interval.0.as_millis().min(1000) as u64 / 4,
    ));
    tokio::select! {
        _ = tokio::time::sleep(jitter) => {}
        _ = stop.changed() => return,
    }
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            _ = stop.changed() => return,
        }
        let r = check_once(&cfg, &server, tls.as_deref()).await;
        if let CheckResult::Failed(why) = &r {
            server.stats.check_failures.fetch_add(1, Ordering::Relaxed);
            log::debug!("health check of {} failed: {why}", server.name);
        }
        if let Some(up) = state.feed(r == CheckResult::Ok) {
            server.set_healthy(up);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rise_and_fall() {
        let mut h = HealthState::new(2, 3);
        assert_eq!(h.feed(false), None);
        assert_eq!(h.feed(true), None, "a success resets the failure count");
        assert_eq!(h.feed(false), None);
        assert_eq!(h.feed(false), None);
        assert_eq!(h.feed(false), Some(false));
        assert_eq!(h.feed(true), None);
        assert_eq!(h.feed(true), Some(true));
    }
}
