//! The API's routes: each request checked and turned into a typed
//! [`Op`], handed to the control thread, and its answer turned into JSON
//! (or the Prometheus text of `/metrics`). Refusals are JSON
//! ([`ApiError`]) with a 4xx status saying why; nothing is applied unless
//! the whole request is. The OpenAPI document is made from the same
//! routes ([`openapi`]) and served at `/openapi.json`.

use std::sync::Arc;
use std::time::Duration;

use axum::extract::rejection::{JsonRejection, PathRejection, QueryRejection};
use axum::extract::{
    DefaultBodyLimit, FromRequest, FromRequestParts, Request as HttpRequest, State,
};
use axum::http::request::Parts;
use axum::http::{HeaderValue, StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::{Json, Router};
use crossbeam::channel::{Sender, TrySendError};
use serde::de::DeserializeOwned;
use tokio::sync::oneshot;
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::{IntoResponses, OpenApi};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::counters::ApiCounters;
use super::op::{Answer, Op, Origin, Request};
use super::types::*;
use crate::ctl::{CtlError, DEFAULT_LIST};

/// The largest request body taken (bytes); larger ones are answered 413.
pub const MAX_BODY: usize = 64 * 1024;
/// How long a request waits for the control thread's answer.
pub const ANSWER_TIMEOUT: Duration = Duration::from_secs(10);

/// A bearer token, compared in constant time.
#[derive(Clone)]
pub struct Token(Vec<u8>);

impl Token {
    /// The token `t`.
    pub fn new(t: &str) -> Token {
        Token(t.as_bytes().to_vec())
    }

    /// Whether an `Authorization` header value carries this token.
    fn admits(&self, header: Option<&HeaderValue>) -> bool {
        let Some(given) = header
            .and_then(|h| h.to_str().ok())
            .and_then(|h| h.strip_prefix("Bearer "))
            .map(str::as_bytes)
        else {
            return false;
        };
        given.len() == self.0.len()
            && given
                .iter()
                .zip(&self.0)
                .fold(0u8, |acc, (a, b)| acc | (a ^ b))
                == 0
    }
}

/// A refusal: a status and why.
#[derive(Debug)]
pub struct HttpError {
    status: StatusCode,
    message: String,
}

impl HttpError {
    fn new(status: StatusCode, message: impl Into<String>) -> HttpError {
        HttpError {
            status,
            message: message.into(),
        }
    }
}

impl IntoResponse for HttpError {
    fn into_response(self) -> Response {
        (
            self.status,
            Json(ApiError {
                error: self.message,
            }),
        )
            .into_response()
    }
}

impl From<CtlError> for HttpError {
    fn from(e: CtlError) -> HttpError {
        let status = match &e {
            CtlError::UnknownService(_) | CtlError::UnknownServer { .. } => StatusCode::NOT_FOUND,
            CtlError::Incomplete(_) | CtlError::BadArgument { .. } => StatusCode::BAD_REQUEST,
            CtlError::Config(_) => StatusCode::UNPROCESSABLE_ENTITY,
            CtlError::NeedsRestart
            | CtlError::TableSizes
            | CtlError::NoProfileFile
            | CtlError::Profile(_) => StatusCode::CONFLICT,
            CtlError::NoAnswer => StatusCode::SERVICE_UNAVAILABLE,
        };
        HttpError::new(status, e.to_string())
    }
}

impl From<JsonRejection> for HttpError {
    fn from(r: JsonRejection) -> HttpError {
        HttpError::new(r.status(), r.body_text())
    }
}

impl From<QueryRejection> for HttpError {
    fn from(r: QueryRejection) -> HttpError {
        HttpError::new(StatusCode::BAD_REQUEST, r.body_text())
    }
}

impl From<PathRejection> for HttpError {
    fn from(r: PathRejection) -> HttpError {
        HttpError::new(StatusCode::BAD_REQUEST, r.body_text())
    }
}

/// The refusals every operation may answer, as the document lists them.
#[derive(IntoResponses)]
#[allow(dead_code)]
enum Refusals {
    /// Malformed JSON or query, or an argument out of place.
    #[response(status = 400)]
    BadRequest(ApiError),
    /// `management.http` with a token: the request lacks it.
    #[response(status = 401)]
    Unauthorized(ApiError),
    /// No such service or server.
    #[response(status = 404)]
    NotFound(ApiError),
    /// The request conflicts with the running appliance (a reload that needs a restart).
    #[response(status = 409)]
    Conflict(ApiError),
    /// The body is larger than 64 KiB.
    #[response(status = 413)]
    TooLarge(ApiError),
    /// The body is not `application/json`.
    #[response(status = 415)]
    UnsupportedMediaType(ApiError),
    /// The JSON does not fit the operation (a weight out of 0..=65535), or
    /// the change makes a configuration the appliance refuses.
    #[response(status = 422)]
    Unprocessable(ApiError),
    /// The control thread is busy or stopping, or a worker did not answer.
    #[response(status = 503)]
    Unavailable(ApiError),
}

/// A JSON body, refused as [`HttpError`].
pub struct Body<T>(pub T);

impl<S: Send + Sync, T: DeserializeOwned> FromRequest<S> for Body<T> {
    type Rejection = HttpError;
    async fn from_request(req: HttpRequest, state: &S) -> Result<Self, HttpError> {
        Ok(Body(Json::<T>::from_request(req, state).await?.0))
    }
}

/// Query parameters, refused as [`HttpError`].
pub struct Params<T>(pub T);

impl<S: Send + Sync, T: DeserializeOwned> FromRequestParts<S> for Params<T> {
    type Rejection = HttpError;
    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, HttpError> {
        Ok(Params(
            axum::extract::Query::<T>::from_request_parts(parts, state)
                .await?
                .0,
        ))
    }
}

/// Path parameters, refused as [`HttpError`].
pub struct PathArgs<T>(pub T);

impl<S: Send + Sync, T: DeserializeOwned + Send> FromRequestParts<S> for PathArgs<T> {
    type Rejection = HttpError;
    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, HttpError> {
        Ok(PathArgs(
            axum::extract::Path::<T>::from_request_parts(parts, state)
                .await?
                .0,
        ))
    }
}

/// What every handler holds: the way to the control thread.
#[derive(Clone)]
struct Ctx {
    tx: Sender<Request>,
    origin: Origin,
    counters: Arc<ApiCounters>,
}

impl Ctx {
    /// Hands `op` to the control thread and waits for its answer.
    async fn ask(&self, op: Op) -> Result<Answer, HttpError> {
        let (reply, answer) = oneshot::channel();
        let request = Request {
            op,
            origin: self.origin,
            reply,
        };
        let unavailable = |m: &str| HttpError::new(StatusCode::SERVICE_UNAVAILABLE, m);
        match self.tx.try_send(request) {
            Ok(()) => {}
            Err(TrySendError::Full(_)) => return Err(unavailable("the control thread is busy")),
            Err(TrySendError::Disconnected(_)) => return Err(unavailable("tack is stopping")),
        }
        match tokio::time::timeout(ANSWER_TIMEOUT, answer).await {
            Ok(Ok(result)) => Ok(result?),
            Ok(Err(_)) => Err(unavailable("tack is stopping")),
            Err(_) => Err(unavailable("the control thread did not answer in time")),
        }
    }
}

/// An answer that is not the one the operation gives (a bug).
fn mismatch() -> HttpError {
    HttpError::new(StatusCode::INTERNAL_SERVER_ERROR, "unexpected answer")
}

macro_rules! answer {
    ($ctx:expr, $op:expr, $pat:pat => $val:expr) => {
        match $ctx.ask($op).await? {
            $pat => Ok(Json($val)),
            _ => Err(mismatch()),
        }
    };
}

/// Ports, workers and packet totals.
#[utoipa::path(get, path = "/status", tag = "appliance",
    responses((status = 200, body = Status), Refusals))]
async fn get_status(State(ctx): State<Ctx>) -> Result<Json<Status>, HttpError> {
    answer!(ctx, Op::Status, Answer::Status(s) => s)
}

/// Every counter: ports, workers, control plane.
#[utoipa::path(get, path = "/counters", tag = "appliance",
    responses((status = 200, body = Counters), Refusals))]
async fn get_counters(State(ctx): State<Ctx>) -> Result<Json<Counters>, HttpError> {
    answer!(ctx, Op::Counters, Answer::Counters(c) => c)
}

/// Prometheus metrics (text exposition format 0.0.4).
#[utoipa::path(get, path = "/metrics", tag = "appliance",
    responses((status = 200, body = String, content_type = "text/plain"), Refusals))]
async fn get_metrics(State(ctx): State<Ctx>) -> Result<Response, HttpError> {
    match ctx.ask(Op::Metrics).await? {
        Answer::Metrics(m) => {
            let mut text = crate::metrics::render(&m);
            crate::metrics::render_api(&mut text, &ctx.counters);
            Ok(([(header::CONTENT_TYPE, crate::metrics::CONTENT_TYPE)], text).into_response())
        }
        _ => Err(mismatch()),
    }
}

/// The ARP / NDP table.
#[utoipa::path(get, path = "/neighbours", tag = "appliance",
    responses((status = 200, body = Vec<Neighbour>), Refusals))]
async fn get_neighbours(State(ctx): State<Ctx>) -> Result<Json<Vec<Neighbour>>, HttpError> {
    answer!(ctx, Op::Neighbours, Answer::Neighbours(n) => n)
}

/// Re-read the profile file: the file wins over runtime changes, which the answer lists.
#[utoipa::path(post, path = "/reload", tag = "appliance",
    responses((status = 200, body = Reloaded), Refusals))]
async fn post_reload(State(ctx): State<Ctx>) -> Result<Json<Reloaded>, HttpError> {
    answer!(ctx, Op::Reload, Answer::Reloaded(r) => r)
}

/// The redirect services (their servers' URLs, directed addresses, backups,
/// weights and states), the SYN-proxied services, and their counters.
#[utoipa::path(get, path = "/redirects", tag = "services",
    responses((status = 200, body = Redirects), Refusals))]
async fn get_redirects(State(ctx): State<Ctx>) -> Result<Json<Redirects>, HttpError> {
    answer!(ctx, Op::Redirects, Answer::Redirects(r) => r)
}

/// The cluster's nodes (live, draining or down) and its link's counters.
#[utoipa::path(get, path = "/cluster", tag = "cluster",
    responses((status = 200, body = Cluster), Refusals))]
async fn get_cluster(State(ctx): State<Ctx>) -> Result<Json<Cluster>, HttpError> {
    answer!(ctx, Op::Cluster, Answer::Cluster(c) => c)
}

/// Drain this node: every node stops giving it new flows; its own go on.
#[utoipa::path(post, path = "/cluster/drain", tag = "cluster",
    responses((status = 200, body = Done), Refusals))]
async fn post_cluster_drain(State(ctx): State<Ctx>) -> Result<Json<Done>, HttpError> {
    answer!(ctx, Op::ClusterDrain(true), Answer::Done(d) => d)
}

/// Take this node back into the ranking of new flows.
#[utoipa::path(post, path = "/cluster/activate", tag = "cluster",
    responses((status = 200, body = Done), Refusals))]
async fn post_cluster_activate(State(ctx): State<Ctx>) -> Result<Json<Done>, HttpError> {
    answer!(ctx, Op::ClusterDrain(false), Answer::Done(d) => d)
}

/// Make this node the active scheduler (`entry: scheduler`): it answers
/// for the VIPs and announces them (gratuitous ARP). The election
/// (keepalived's MASTER state, through its notify FIFO) calls this.
#[utoipa::path(post, path = "/cluster/scheduler/active", tag = "cluster",
    responses((status = 200, body = Done), Refusals))]
async fn post_cluster_scheduler_active(State(ctx): State<Ctx>) -> Result<Json<Done>, HttpError> {
    answer!(ctx, Op::ClusterScheduler(true), Answer::Done(d) => d)
}

/// Make this node a standby scheduler: it stops answering for the VIPs
/// (keepalived's BACKUP and FAULT states, through its notify FIFO).
#[utoipa::path(post, path = "/cluster/scheduler/standby", tag = "cluster",
    responses((status = 200, body = Done), Refusals))]
async fn post_cluster_scheduler_standby(State(ctx): State<Ctx>) -> Result<Json<Done>, HttpError> {
    answer!(ctx, Op::ClusterScheduler(false), Answer::Done(d) => d)
}

/// Services with their servers, weights, states, open connections and traffic.
#[utoipa::path(get, path = "/services", tag = "services",
    responses((status = 200, body = Vec<Service>), Refusals))]
async fn get_services(State(ctx): State<Ctx>) -> Result<Json<Vec<Service>>, HttpError> {
    answer!(ctx, Op::Services, Answer::Services(s) => s)
}

/// Add a real server: it takes new clients at once.
#[utoipa::path(post, path = "/services/{service}/servers", tag = "services",
    params(("service" = String, Path, description = "service name")),
    request_body = NewServer,
    responses((status = 200, body = Done), Refusals))]
async fn post_server(
    State(ctx): State<Ctx>,
    PathArgs(service): PathArgs<String>,
    Body(server): Body<NewServer>,
) -> Result<Json<Done>, HttpError> {
    answer!(ctx, Op::AddServer { service, server }, Answer::Done(d) => d)
}

/// Change a server's weight and/or state (one configuration epoch).
#[utoipa::path(patch, path = "/services/{service}/servers/{server}", tag = "services",
    params(("service" = String, Path, description = "service name"),
           ("server" = String, Path, description = "server name or address")),
    request_body = ServerChange,
    responses((status = 200, body = Done), Refusals))]
async fn patch_server(
    State(ctx): State<Ctx>,
    PathArgs((service, server)): PathArgs<(String, String)>,
    Body(change): Body<ServerChange>,
) -> Result<Json<Done>, HttpError> {
    answer!(ctx, Op::ChangeServer { service, server, change }, Answer::Done(d) => d)
}

/// Remove a real server: its connections are dropped, its sticky clients rebound.
#[utoipa::path(delete, path = "/services/{service}/servers/{server}", tag = "services",
    params(("service" = String, Path, description = "service name"),
           ("server" = String, Path, description = "server name or address")),
    responses((status = 200, body = Done), Refusals))]
async fn delete_server(
    State(ctx): State<Ctx>,
    PathArgs((service, server)): PathArgs<(String, String)>,
) -> Result<Json<Done>, HttpError> {
    answer!(ctx, Op::RemoveServer { service, server }, Answer::Done(d) => d)
}

/// LocalDirector's `sticky <vid> <minutes> [nc-subnet]`: natural-class persistence.
#[utoipa::path(put, path = "/services/{service}/sticky", tag = "sticky",
    params(("service" = String, Path, description = "service name")),
    request_body = StickySetting,
    responses((status = 200, body = Done), Refusals))]
async fn put_sticky(
    State(ctx): State<Ctx>,
    PathArgs(service): PathArgs<String>,
    Body(setting): Body<StickySetting>,
) -> Result<Json<Done>, HttpError> {
    answer!(ctx, Op::SetSticky { service, setting }, Answer::Done(d) => d)
}

/// Connections matching a selection: how many, and the first `limit` of each worker.
#[utoipa::path(get, path = "/connections", tag = "connections",
    params(ConnSelect, ListLimit),
    responses((status = 200, body = ConnectionList), Refusals))]
async fn get_connections(
    State(ctx): State<Ctx>,
    Params(select): Params<ConnSelect>,
    Params(limit): Params<ListLimit>,
) -> Result<Json<ConnectionList>, HttpError> {
    let op = Op::Connections {
        select,
        limit: limit.limit.map_or(DEFAULT_LIST, |l| l as usize),
    };
    answer!(ctx, op, Answer::Connections(c) => c)
}

/// Remove the connections matching a selection (all without one).
#[utoipa::path(delete, path = "/connections", tag = "connections",
    params(ConnSelect),
    responses((status = 200, body = Done), Refusals))]
async fn delete_connections(
    State(ctx): State<Ctx>,
    Params(s): Params<ConnSelect>,
) -> Result<Json<Done>, HttpError> {
    answer!(ctx, Op::FlushConnections(s), Answer::Done(d) => d)
}

/// How many connections match a selection.
#[utoipa::path(get, path = "/connections/count", tag = "connections",
    params(ConnSelect),
    responses((status = 200, body = ConnectionCount), Refusals))]
async fn count_connections(
    State(ctx): State<Ctx>,
    Params(s): Params<ConnSelect>,
) -> Result<Json<ConnectionCount>, HttpError> {
    answer!(ctx, Op::CountConnections(s), Answer::Count(c) => c)
}

/// Sticky bindings (of one service, or one key, or all), merged over the workers.
#[utoipa::path(get, path = "/sticky", tag = "sticky",
    params(StickySelect),
    responses((status = 200, body = Vec<StickyBinding>), Refusals))]
async fn get_sticky(
    State(ctx): State<Ctx>,
    Params(s): Params<StickySelect>,
) -> Result<Json<Vec<StickyBinding>>, HttpError> {
    answer!(ctx, Op::Sticky(s), Answer::Sticky(b) => b)
}

/// Remove sticky bindings: all, a service's, or one key of a service.
#[utoipa::path(delete, path = "/sticky", tag = "sticky",
    params(StickySelect),
    responses((status = 200, body = Done), Refusals))]
async fn delete_sticky(
    State(ctx): State<Ctx>,
    Params(s): Params<StickySelect>,
) -> Result<Json<Done>, HttpError> {
    answer!(ctx, Op::FlushSticky(s), Answer::Done(d) => d)
}

#[derive(OpenApi)]
#[openapi(
    info(title = "Tack management API", description = "Services, servers, connections, sticky bindings, counters, reloads and Prometheus metrics of a running Tack appliance. On the local socket no token is needed; on TCP, `Authorization: Bearer TOKEN` when `management.http.token_file` is set."),
    components(schemas(ApiError)),
    modifiers(&BearerAuth)
)]
struct ApiDoc;

struct BearerAuth;

impl utoipa::Modify for BearerAuth {
    fn modify(&self, doc: &mut utoipa::openapi::OpenApi) {
        let c = doc.components.get_or_insert_with(Default::default);
        c.add_security_scheme(
            "bearer",
            SecurityScheme::Http(HttpBuilder::new().scheme(HttpAuthScheme::Bearer).build()),
        );
    }
}

/// The routes and their document, before state and layers.
fn parts() -> (Router<Ctx>, utoipa::openapi::OpenApi) {
    let mut doc = ApiDoc::openapi();
    doc.info.version = env!("CARGO_PKG_VERSION").to_string();
    OpenApiRouter::with_openapi(doc)
        .routes(routes!(get_status))
        .routes(routes!(get_counters))
        .routes(routes!(get_metrics))
        .routes(routes!(get_neighbours))
        .routes(routes!(post_reload))
        .routes(routes!(get_services))
        .routes(routes!(post_server))
        .routes(routes!(patch_server, delete_server))
        .routes(routes!(put_sticky))
        .routes(routes!(get_connections, delete_connections))
        .routes(routes!(count_connections))
        .routes(routes!(get_sticky, delete_sticky))
        .routes(routes!(get_cluster))
        .routes(routes!(get_redirects))
        .routes(routes!(post_cluster_drain))
        .routes(routes!(post_cluster_scheduler_active))
        .routes(routes!(post_cluster_scheduler_standby))
        .routes(routes!(post_cluster_activate))
        .split_for_parts()
}

/// The OpenAPI document of the API (as served at `/openapi.json`).
pub fn openapi() -> utoipa::openapi::OpenApi {
    parts().1
}

/// Refuses requests without the token.
async fn authorize(State(token): State<Token>, req: HttpRequest, next: Next) -> Response {
    if token.admits(req.headers().get(header::AUTHORIZATION)) {
        next.run(req).await
    } else {
        let mut r =
            HttpError::new(StatusCode::UNAUTHORIZED, "a bearer token is needed").into_response();
        r.headers_mut()
            .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
        r
    }
}

/// Counts the refusals and failures a listener answers.
async fn count_outcome(
    State(counters): State<Arc<ApiCounters>>,
    req: HttpRequest,
    next: Next,
) -> Response {
    let res = next.run(req).await;
    if res.status().is_client_error() {
        ApiCounters::add(&counters.requests_refused);
    } else if res.status().is_server_error() {
        ApiCounters::add(&counters.requests_failed);
    }
    res
}

/// The API for one listener: operations go to `tx`, tagged with `origin`;
/// with a `token`, every request must carry it; what it refuses is counted
/// in `counters`.
pub fn router(
    tx: Sender<Request>,
    origin: Origin,
    token: Option<Token>,
    counters: Arc<ApiCounters>,
) -> Router {
    let (routes, doc) = parts();
    let doc = doc
        .to_json()
        .unwrap_or_else(|e| format!("{{\"error\":\"{e}\"}}"));
    let app = routes
        .route(
            "/openapi.json",
            axum::routing::get(move || async move {
                ([(header::CONTENT_TYPE, "application/json")], doc.clone())
            }),
        )
        .fallback(|| async { HttpError::new(StatusCode::NOT_FOUND, "no such operation") })
        .method_not_allowed_fallback(|| async {
            HttpError::new(StatusCode::METHOD_NOT_ALLOWED, "method not allowed here")
        })
        .layer(DefaultBodyLimit::max(MAX_BODY))
        .with_state(Ctx {
            tx,
            origin,
            counters: counters.clone(),
        });
    let app = match token {
        Some(t) => app.layer(middleware::from_fn_with_state(t, authorize)),
        None => app,
    };
    app.layer(middleware::from_fn_with_state(counters, count_outcome))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_are_compared_whole() {
        let t = Token::new("s3cret");
        let h = |s: &str| HeaderValue::from_str(s).unwrap();
        assert!(t.admits(Some(&h("Bearer s3cret"))));
        assert!(!t.admits(Some(&h("Bearer s3cre"))));
        assert!(!t.admits(Some(&h("Bearer s3cretX"))));
        assert!(!t.admits(Some(&h("Basic s3cret"))));
        assert!(!t.admits(None));
    }

    /// The document shipped in docs/ is the one the routes make
    /// (regenerate it with `tack openapi > docs/openapi.json`).
    #[test]
    fn the_shipped_document_is_current() {
        let shipped = include_str!("../../../docs/openapi.json");
        let now = openapi().to_pretty_json().unwrap();
        assert!(
            shipped.trim_end() == now.trim_end(),
            "docs/openapi.json is stale: run `tack openapi > docs/openapi.json`"
        );
    }

    /// Every route is in the document, and the document holds no other.
    #[test]
    fn the_document_lists_the_routes() {
        let doc = openapi();
        let mut ops: Vec<String> = Vec::new();
        for (path, item) in &doc.paths.paths {
            for (m, op) in [
                ("get", &item.get),
                ("post", &item.post),
                ("put", &item.put),
                ("patch", &item.patch),
                ("delete", &item.delete),
            ] {
                if op.is_some() {
                    ops.push(format!("{m} {path}"));
                }
            }
        }
        ops.sort();
        assert_eq!(
            ops,
            [
                "delete /connections",
                "delete /services/{service}/servers/{server}",
                "delete /sticky",
                "get /cluster",
                "get /connections",
                "get /connections/count",
                "get /counters",
                "get /metrics",
                "get /neighbours",
                "get /redirects",
                "get /services",
                "get /status",
                "get /sticky",
                "patch /services/{service}/servers/{server}",
                "post /cluster/activate",
                "post /cluster/drain",
                "post /cluster/scheduler/active",
                "post /cluster/scheduler/standby",
                "post /reload",
                "post /services/{service}/servers",
                "put /services/{service}/sticky",
            ]
        );
    }
}
