//! The admin API's server endpoints: list, state, weight, add, remove. State
//! changes apply at once to the running servers; weight, add and remove edit
//! the running configuration and apply it as a reload ([`crate::reload`]), so
//! they are validated like a file and the backend's scheduler is rebuilt.

use serde::Deserialize;
use serde_json::{Value, json};
use tokio::sync::watch;

use super::ApiError;
use crate::config::{AdminState, ConfigError, ProxyConfig, ServerConfig, Weight};
use crate::metrics::Registry;
use crate::reload::Live;

/// The API's name of a state (`ready` is HAProxy's name for up).
fn state_name(s: AdminState) -> &'static str {
    match s {
        AdminState::Up => "ready",
        AdminState::Drain => "drain",
        AdminState::Maint => "maint",
    }
}

/// Every backend's servers.
pub(super) fn list(r: &Registry) -> Value {
    let backends: Vec<Value> = r
        .backends
        .iter()
        .map(|b| {
            let servers: Vec<Value> = b
                .servers
                .iter()
                .map(|s| {
                    json!({
                        "name": s.name,
                        "address": s.addr.to_string(),
                        "weight": s.weight,
                        "state": state_name(s.admin_state()),
                        "healthy": s.is_healthy(),
                        "backup": s.backup,
                        "active": s.slots.inflight(),
                        "queued": s.slots.queued(),
                        "requests": s.stats.requests.load(std::sync::atomic::Ordering::Relaxed),
                    })
                })
                .collect();
            json!({ "name": b.name, "servers": servers })
        })
        .collect();
    json!({ "backends": backends })
}

fn body<'a, T: Deserialize<'a>>(body: &'a [u8], example: &str) -> Result<T, ApiError> {
    serde_json::from_slice(body)
        .map_err(|e| ApiError::bad(format!("invalid body ({e}); expected {example}")))
}

/// `PUT .../state`: `{"state": "ready" | "drain" | "maint"}` (`up` is `ready`).
pub(super) fn set_state(r: &Registry, b: &str, s: &str, raw: &[u8]) -> Result<Value, ApiError> {
    #[derive(Deserialize)]
    #[serde(deny_unknown_fields)]
    struct Body {
        state: String,
    }
    let want: Body = body(raw, r#"{"state": "ready"|"drain"|"maint"}"#)?;
    let state = match want.state.as_str() {
        "ready" | "up" => AdminState::Up,
        "drain" => AdminState::Drain,
        "maint" => AdminState::Maint,
        other => {
            return Err(ApiError::bad(format!(
                "unknown state {other:?}: ready, drain or maint"
            )));
        }
    };
    let be = r
        .backends
        .iter()
        .find(|x| x.name == b)
        .ok_or_else(|| ApiError::not_found(format!("no backend named {b:?}")))?;
    let srv = be
        .server_by_name(s)
        .ok_or_else(|| ApiError::not_found(format!("backend {b} has no server named {s:?}")))?;
    srv.set_admin_state(state);
    log::info!("admin API: server {b}/{s} is now {}", state_name(state));
    Ok(json!({ "backend": b, "server": s, "state": state_name(state) }))
}

/// Where a change to the configuration fails: a missing backend or server is
/// `404`, anything else `400`.
fn apply_error(e: crate::reload::BuildError) -> ApiError {
    match e {
        crate::reload::BuildError::Config(ConfigError::Invalid { field, message, .. })
            if message.starts_with("no such") =>
        {
            ApiError::not_found(format!("{field}: {message}"))
        }
        other => ApiError::bad(other.to_string()),
    }
}

fn invalid(field: String, message: String) -> ConfigError {
    ConfigError::Invalid {
        field,
        message,
        line: None,
    }
}

/// The backend named `b` in `cfg`, by index.
fn backend_index(cfg: &ProxyConfig, b: &str) -> Result<usize, ConfigError> {
    cfg.backends
        .iter()
        .position(|x| x.name == b)
        .ok_or_else(|| invalid("backend".into(), format!("no such backend {b:?}")))
}

fn server_index(cfg: &ProxyConfig, bi: usize, s: &str) -> Result<usize, ConfigError> {
    cfg.backends[bi]
        .servers
        .iter()
        .position(|x| x.name == s)
        .ok_or_else(|| {
            invalid(
                format!("backends[{bi}].servers"),
                format!("no such server {s:?}"),
            )
        })
}

/// `PUT .../weight`: `{"weight": 0..=256}`.
pub(super) async fn set_weight(
    live: &Live,
    stop: &watch::Receiver<bool>,
    b: &str,
    s: &str,
    raw: &[u8],
) -> Result<Value, ApiError> {
    #[derive(Deserialize)]
    #[serde(deny_unknown_fields)]
    struct Body {
        weight: Weight,
    }
    let want: Body = body(raw, r#"{"weight": 0..256}"#)?;
    live.edit(stop, |cfg| {
        let bi = backend_index(cfg, b)?;
        let si = server_index(cfg, bi, s)?;
        cfg.backends[bi].servers[si].weight = want.weight;
        Ok(())
    })
    .await
    .map_err(apply_error)?;
    Ok(json!({ "backend": b, "server": s, "weight": want.weight.0 }))
}

/// `POST /api/backends/{b}/servers`: a server as in the file (`name`,
/// `address`, `weight`, `backup`...).
pub(super) async fn add(
    live: &Live,
    stop: &watch::Receiver<bool>,
    b: &str,
    raw: &[u8],
) -> Result<Value, ApiError> {
    let srv: ServerConfig = body(raw, r#"{"name": "s4", "address": "10.0.0.14:80", ...}"#)?;
    let name = srv.name.clone();
    live.edit(stop, |cfg| {
        let bi = backend_index(cfg, b)?;
        cfg.backends[bi].servers.push(srv);
        Ok(())
    })
    .await
    .map_err(apply_error)?;
    log::info!("admin API: server {b}/{name} added");
    Ok(json!({ "backend": b, "server": name, "added": true }))
}

/// `DELETE /api/backends/{b}/servers/{s}`: the backend keeps at least one.
pub(super) async fn remove(
    live: &Live,
    stop: &watch::Receiver<bool>,
    b: &str,
    s: &str,
) -> Result<Value, ApiError> {
    live.edit(stop, |cfg| {
        let bi = backend_index(cfg, b)?;
        let si = server_index(cfg, bi, s)?;
        cfg.backends[bi].servers.remove(si);
        Ok(())
    })
    .await
    .map_err(apply_error)?;
    log::info!("admin API: server {b}/{s} removed");
    Ok(json!({ "backend": b, "server": s, "removed": true }))
}
