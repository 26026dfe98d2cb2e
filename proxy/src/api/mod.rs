//! The runtime admin API (`admin:` in the configuration; `tack-proxy ctl` is
//! its command-line client, [`client`]). JSON over HTTP/1.1 (hyper), on a
//! loopback address by default; with a `token_file` every request must carry
//! `Authorization: Bearer <token>` (required when the address is not
//! loopback).
//!
//! | method and path | what |
//! | --- | --- |
//! | `GET /api/servers` | every backend's servers: address, weight, state, health, backup, load |
//! | `PUT /api/backends/{b}/servers/{s}/state` `{"state": "ready"\|"drain"\|"maint"}` | administrative state, at once |
//! | `PUT /api/backends/{b}/servers/{s}/weight` `{"weight": N}` | weight (a reload of the edited configuration) |
//! | `POST /api/backends/{b}/servers` `{"name": ..., "address": ..., ...}` | add a server (same fields as in the file; a reload) |
//! | `DELETE /api/backends/{b}/servers/{s}` | remove a server (a reload) |
//! | `POST /api/reload` | re-read the configuration file |
//! | `GET /api/sessions` | the session tables (as `GET /sessions` on the metrics address) |
//! | `GET /api/status` | reload and API counters |
//! | `GET /api/cache` | each frontend's page cache: use and entries ([`cache`]) |
//! | `POST /api/cache/purge` `{"url": U}` or `{"prefix": P}` (`"frontend": F`) | purge from the page caches |
//!
//! Changes made through the API last until the next reload of the file.
//! Errors are JSON `{"error": "..."}` with `400` (bad request body or value,
//! a configuration the change would make invalid), `401` (token), `404`
//! (no such backend, server or path) or `405`, and are counted.

mod cache;
pub mod client;
mod servers;

use std::convert::Infallible;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use bytes::Bytes;
use http::{Method, Request, Response, StatusCode, header};
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use tokio::net::TcpListener;
use tokio::sync::watch;

use crate::reload::Live;

/// Largest request body the API reads.
const MAX_BODY: usize = 64 * 1024;

/// Counters of the admin API.
#[derive(Debug, Default)]
pub struct ApiStats {
    /// Requests received.
    pub requests: AtomicU64,
    /// Requests refused for a bad path, method, body or value.
    pub errors: AtomicU64,
    /// Requests refused for a missing or wrong token.
    pub unauthorized: AtomicU64,
}

/// What the API's handlers share.
#[derive(Debug)]
pub struct Api {
    live: Arc<Live>,
    token: Option<String>,
    stop: watch::Receiver<bool>,
    /// Counters.
    pub stats: ApiStats,
}

/// A JSON answer.
fn json(status: StatusCode, v: &serde_json::Value) -> Response<Full<Bytes>> {
    let mut r = Response::new(Full::new(Bytes::from(format!("{v}\n"))));
    *r.status_mut() = status;
    r.headers_mut().insert(
        header::CONTENT_TYPE,
        header::HeaderValue::from_static("application/json"),
    );
    r
}

/// A refused request: `{"error": message}`.
pub(crate) struct ApiError(StatusCode, String);

impl ApiError {
    pub(crate) fn bad(m: impl Into<String>) -> ApiError {
        ApiError(StatusCode::BAD_REQUEST, m.into())
    }
    pub(crate) fn not_found(m: impl Into<String>) -> ApiError {
        ApiError(StatusCode::NOT_FOUND, m.into())
    }
}

/// Constant-time comparison of the presented token with ours.
fn token_ok(presented: &[u8], ours: &[u8]) -> bool {
    presented.len() == ours.len()
        && presented
            .iter()
            .zip(ours)
            .fold(0u8, |acc, (a, b)| acc | (a ^ b))
            == 0
}

impl Api {
    /// The API over `live`; `token`: what `Authorization: Bearer` must carry.
    pub fn new(live: Arc<Live>, token: Option<String>, stop: watch::Receiver<bool>) -> Api {
        Api {
            live,
            token,
            stop,
            stats: ApiStats::default(),
        }
    }

    fn authorized(&self, req: &Request<Incoming>) -> bool {
        let Some(ours) = &self.token else {
            return true;
        };
        req.headers()
            .get(header::AUTHORIZATION)
            .and_then(|v| v.as_bytes().strip_prefix(b"Bearer "))
            .is_some_and(|t| token_ok(t, ours.as_bytes()))
    }

    async fn handle(self: Arc<Self>, req: Request<Incoming>) -> Response<Full<Bytes>> {
        self.stats.requests.fetch_add(1, Ordering::Relaxed);
        if !self.authorized(&req) {
            self.stats.unauthorized.fetch_add(1, Ordering::Relaxed);
            let mut r = json(
                StatusCode::UNAUTHORIZED,
                &serde_json::json!({"error": "a bearer token is required (Authorization: Bearer <token>)"}),
            );
            r.headers_mut().insert(
                header::WWW_AUTHENTICATE,
                header::HeaderValue::from_static("Bearer"),
            );
            return r;
        }
        let method = req.method().clone();
        let path = req.uri().path().to_string();
        let body = match Limited::new(req.into_body(), MAX_BODY).collect().await {
            Ok(b) => b.to_bytes(),
            Err(_) => {
                self.stats.errors.fetch_add(1, Ordering::Relaxed);
                return json(
                    StatusCode::PAYLOAD_TOO_LARGE,
                    &serde_json::json!({"error": "request body too large or cut short"}),
                );
            }
        };
        match self.route(&method, &path, &body).await {
            Ok((status, v)) => json(status, &v),
            Err(ApiError(status, message)) => {
                self.stats.errors.fetch_add(1, Ordering::Relaxed);
                log::info!("admin API: {method} {path}: {status}: {message}");
                json(status, &serde_json::json!({ "error": message }))
            }
        }
    }

    async fn route(
        &self,
        method: &Method,
        path: &str,
        body: &[u8],
    ) -> Result<(StatusCode, serde_json::Value), ApiError> {
        let seg: Vec<&str> = path.trim_matches('/').split('/').collect();
        let live = &self.live;
        let ok = |v| Ok((StatusCode::OK, v));
        match (method, seg.as_slice()) {
            (&Method::GET, ["api", "servers"]) => ok(servers::list(&live.registry.load())),
            (&Method::PUT, ["api", "backends", b, "servers", s, "state"]) => {
                ok(servers::set_state(&live.registry.load(), b, s, body)?)
            }
            (&Method::PUT, ["api", "backends", b, "servers", s, "weight"]) => {
                ok(servers::set_weight(live, &self.stop, b, s, body).await?)
            }
            (&Method::POST, ["api", "backends", b, "servers"]) => Ok((
                StatusCode::CREATED,
                servers::add(live, &self.stop, b, body).await?,
            )),
            (&Method::DELETE, ["api", "backends", b, "servers", s]) => {
                ok(servers::remove(live, &self.stop, b, s).await?)
            }
            (&Method::POST, ["api", "reload"]) => match live.reload_file(&self.stop).await {
                Ok(()) => ok(serde_json::json!({"reloaded": true})),
                Err(e) => Err(ApiError::bad(format!(
                    "reload refused, the running configuration stays: {e}"
                ))),
            },
            (&Method::GET, ["api", "sessions"]) => ok(serde_json::Value::String(
                crate::admin::sessions(&live.registry.load()),
            )),
            (&Method::GET, ["api", "status"]) => ok(serde_json::json!({
                "reloads": live.stats.reloads.load(Ordering::Relaxed),
                "reload_failures": live.stats.failures.load(Ordering::Relaxed),
                "api_requests": self.stats.requests.load(Ordering::Relaxed),
                "api_errors": self.stats.errors.load(Ordering::Relaxed),
                "api_unauthorized": self.stats.unauthorized.load(Ordering::Relaxed),
            })),
            (&Method::GET, ["api", "cache"]) => ok(cache::list(&live.registry.load())),
            (&Method::POST, ["api", "cache", "purge"]) => {
                ok(cache::purge(&live.registry.load(), body)?)
            }
            (_, ["api", ..]) if known_path(&seg) => Err(ApiError(
                StatusCode::METHOD_NOT_ALLOWED,
                format!("{method} is not allowed on {path}"),
            )),
            _ => Err(ApiError::not_found(format!(
                "no such endpoint {path} (try GET /api/servers)"
            ))),
        }
    }
}

/// Whether `seg` is a path the API serves (with another method).
fn known_path(seg: &[&str]) -> bool {
    matches!(
        seg,
        [
            "api",
            "servers" | "reload" | "sessions" | "status" | "cache"
        ] | ["api", "cache", "purge"]
            | ["api", "backends", _, "servers"]
            | ["api", "backends", _, "servers", _]
            | ["api", "backends", _, "servers", _, "state" | "weight"]
    )
}

/// Serve the API on `listener` until `stop`.
pub async fn serve(listener: TcpListener, api: Arc<Api>, mut stop: watch::Receiver<bool>) {
    loop {
        let (stream, _) = tokio::select! {
            r = listener.accept() => match r {
                Ok(x) => x,
                Err(_) => {
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            _ = stop.changed() => break,
        };
        let api = api.clone();
        tokio::spawn(async move {
            let svc = service_fn(move |req| {
                let api = api.clone();
                async move { Ok::<_, Infallible>(api.handle(req).await) }
            });
            let _ = hyper::server::conn::http1::Builder::new()
                .serve_connection(TokioIo::new(stream), svc)
                .await;
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_compare_whole() {
        assert!(token_ok(b"s3cret", b"s3cret"));
        assert!(!token_ok(b"s3cre", b"s3cret"));
        assert!(!token_ok(b"s3creT", b"s3cret"));
        assert!(known_path(&[
            "api", "backends", "a", "servers", "s", "state"
        ]));
        assert!(!known_path(&["api", "nope"]));
    }
}
