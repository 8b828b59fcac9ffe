//! The HTTP API (warp): `/v1` read routes, health, readiness and Prometheus metrics.
//!
//! Routing is one table, [`routes::ROUTES`]: each route has a template used as the metrics label,
//! a handler, its cache policy, auth requirement, `fields=` projection and documentation; unknown routes and methods answer problem+json like every other error. Around the
//! table: the read cache ([`cache`]: proposal list, proposal details, voting power, statistics)
//! and the HTTP conventions ([`conventions`]: request ids, CORS, rate limits, ETags,
//! Cache-Control, compression); [`answer`] runs the handlers off the async threads with the
//! request timeout. Every JSON read takes `fields=a,b,...` (top-level members, or the members
//! of each `items[]` element of a list).
//!
//! # Versioning policy
//!
//! The API is versioned in the path: every resource lives under `/v1`; only the probes
//! (`/healthz`, `/readyz`) and `/metrics` are unversioned.
//!
//! - **Within `/v1`** changes are additive only: new routes, new optional query parameters, new
//!   members in response objects, new values in documented open sets (problem `type`s,
//!   governance event kinds, `executionState`). Clients must ignore members they do not know.
//!   Fixes that make an answer equal to what the contracts say are not breaking changes.
//! - **A `/v2`** is needed to remove or rename a route, a parameter or a member, to change a
//!   member's type, format or meaning (e.g. uint256 as decimal strings, times as RFC 3339,
//!   addresses in lower case), to change defaults (page size, sort order), pagination or the
//!   error format, or to make an optional parameter required. `/v1` and `/v2` are then served
//!   side by side.
//! - **Deprecation**: a route (or a whole version) due to go is announced with a
//!   `Deprecation: @<unix time>` header (RFC 9745) on each of its answers, a
//!   `Sunset: <HTTP date>` header (RFC 8594) at least six months later, and a
//!   `Link: <successor>; rel="successor-version"` header; it keeps answering exactly as before
//!   until the sunset date, and the change is listed in the README. The table is
//!   [`DEPRECATIONS`].

pub mod api;
pub mod auth;
pub mod cache;
pub mod conventions;
pub mod ingest;
pub mod openapi;
pub mod params;
pub mod problem;
pub mod routes;
pub mod views;
pub mod ws;

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use metrics_exporter_prometheus::PrometheusHandle;
use warp::http::{Method, StatusCode};
use warp::Filter;

use crate::config::{HttpConfig, WebsocketConfig};
use crate::metrics as m;
use crate::store::Store;
use crate::streams::changes::ChangeHub;
use crate::streams::listener::IndexerStatus;
use problem::Problem;
use routes::Projection;
pub use routes::{route_of, Route, ROUTES};

/// What the handlers share.
#[derive(Clone)]
pub struct ApiState {
    /// The store.
    pub store: Arc<dyn Store>,
    /// Listener position.
    pub status: Arc<IndexerStatus>,
    /// Prometheus renderer.
    pub metrics: Option<PrometheusHandle>,
    /// HTTP settings (page sizes, CORS, limits, admin token).
    pub http: HttpConfig,
    /// What each commit changed (websockets, cache invalidation).
    pub changes: Arc<ChangeHub>,
    /// The read cache.
    pub cache: Arc<cache::Cache>,
    /// Websocket settings.
    pub websocket: WebsocketConfig,
    /// The bus (in-process or NATS JetStream): readiness, inbound governance events.
    pub bus: Arc<dyn crate::bus::Bus>,
}

/// A parsed request.
pub struct Req<'a> {
    /// Path segments after the leading slash.
    pub segments: Vec<&'a str>,
    /// Query pairs.
    pub query: Vec<(String, String)>,
    /// Full path.
    pub path: &'a str,
    /// Request headers.
    pub headers: &'a warp::http::HeaderMap,
    /// The body (read for POST only).
    pub body: &'a Body,
    /// The members `fields=` keeps (validated by the router against the route's
    /// [`routes::Projection`]; applied by [`view`]); `None` keeps every member.
    pub fields: Option<Vec<String>>,
    /// The route takes `fields=` (taken off [`Req::query`] by the router).
    pub takes_fields: bool,
}

/// Largest request body read (`POST`): a longer one is [`Body::TooLarge`].
pub const MAX_BODY_BYTES: usize = 64 * 1024;
/// How much of a too-large body is still read (and dropped) so the client gets the 413 instead of
/// a reset connection; past this the connection is just closed.
const DRAIN_BYTES: usize = 1024 * 1024;

/// A request body as read by [`filter`]: only `POST` bodies are read, at most
/// [`MAX_BODY_BYTES`], within `http.request_timeout_ms`.
#[derive(Debug, Clone, Default)]
pub enum Body {
    /// No body (or not a `POST`).
    #[default]
    Empty,
    /// The whole body.
    Bytes(bytes::Bytes),
    /// Longer than [`MAX_BODY_BYTES`].
    TooLarge,
    /// Not received within `http.request_timeout_ms`.
    TimedOut,
    /// The transfer failed (malformed chunking, connection lost).
    Failed(String),
}

/// Reads a `POST` body (see [`Body`]); other methods' bodies are left unread.
async fn read_body<S, B>(method: &Method, headers: &warp::http::HeaderMap, timeout: Duration, stream: S) -> Body
where
    S: futures::Stream<Item = Result<B, warp::Error>> + Send,
    B: bytes::Buf,
{
    use futures::StreamExt;
    if method != Method::POST {
        return Body::Empty;
    }
    let declared = headers.get(warp::http::header::CONTENT_LENGTH).and_then(|v| v.to_str().ok()).and_then(|v| v.trim().parse::<u64>().ok());
    if declared.is_some_and(|n| n > DRAIN_BYTES as u64) {
        return Body::TooLarge;
    }
    let read = async {
        let mut stream = std::pin::pin!(stream);
        let mut buf = bytes::BytesMut::new();
        let mut total = 0usize;
        while let Some(chunk) = stream.next().await {
            let mut chunk = match chunk {
                Ok(c) => c,
                Err(e) => return Body::Failed(e.to_string()),
            };
            total += chunk.remaining();
            if total <= MAX_BODY_BYTES {
                while chunk.has_remaining() {
                    let part = chunk.chunk();
                    let n = part.len();
                    buf.extend_from_slice(part);
                    chunk.advance(n);
                }
            } else if total > DRAIN_BYTES {
                return Body::TooLarge;
            }
        }
        if total > MAX_BODY_BYTES {
            Body::TooLarge
        } else if total == 0 {
            Body::Empty
        } else {
            Body::Bytes(buf.freeze())
        }
    };
    tokio::time::timeout(timeout, read).await.unwrap_or(Body::TimedOut)
}

impl Req<'_> {
    /// A query parameter.
    pub fn param(&self, name: &str) -> Option<&str> {
        self.query.iter().find(|(k, _)| k == name).map(|(_, v)| v.as_str())
    }
    /// Rejects parameters other than those `T` declares ([`params`]) and `fields` when the route
    /// takes it.
    pub fn accept<T: utoipa::IntoParams>(&self) -> Result<(), Problem> {
        let names = params::names::<T>();
        self.only(&names.iter().map(String::as_str).collect::<Vec<_>>())
    }
    /// Rejects parameters outside `allowed` (and `fields`, when the route takes it).
    pub fn only(&self, allowed: &[&str]) -> Result<(), Problem> {
        for (k, _) in &self.query {
            if !allowed.contains(&k.as_str()) {
                let accepted: Vec<&str> = allowed.iter().copied().chain(self.takes_fields.then_some("fields")).collect();
                let list = if accepted.is_empty() { "none".to_string() } else { accepted.join(", ") };
                return Err(Problem::bad_param(k, format!("unknown query parameter {k:?}; this route accepts: {list}")));
            }
        }
        Ok(())
    }
}

fn matches(template: &str, segments: &[&str]) -> bool {
    let t: Vec<&str> = template.split('/').filter(|s| !s.is_empty()).collect();
    t.len() == segments.len() && t.iter().zip(segments).all(|(a, b)| a.starts_with('{') || a == b)
}

/// The methods a route template has, for `Allow` and CORS preflights (`HEAD` with `GET`,
/// `OPTIONS` always).
pub(crate) fn allowed_methods(template: &str) -> String {
    let mut out: Vec<&str> = Vec::new();
    for r in ROUTES.iter().filter(|r| r.path == template) {
        out.push(r.method);
        if r.method == "GET" {
            out.push("HEAD");
        }
    }
    out.push("OPTIONS");
    out.join(", ")
}

/// Finds the route for a path (its first method when it has several); literal templates win
/// over parameterised ones.
pub(crate) fn find(segments: &[&str]) -> Option<&'static Route> {
    ROUTES.iter().filter(|r| matches(r.path, segments)).min_by_key(|r| r.path.matches('{').count())
}

/// Deprecated routes: template, `Deprecation` (RFC 9745, `@<unix time>`), `Sunset` (RFC 8594,
/// HTTP date) and the successor's path (`Link: <...>; rel="successor-version"`). Empty: nothing
/// in `/v1` is deprecated.
pub const DEPRECATIONS: &[(&str, &str, &str, &str)] = &[];

/// The `fields=` of a request to a route projecting `members`: the names, checked against the
/// members. An empty list or a name that is not a member is a 400.
fn requested_fields(fields: &str, members: &[String]) -> Result<Vec<String>, Problem> {
    let list: Vec<String> = fields.split(',').map(str::trim).filter(|s| !s.is_empty()).map(str::to_string).collect();
    if list.is_empty() {
        return Err(Problem::bad_param("fields", "fields must name at least one field"));
    }
    if let Some(name) = list.iter().find(|f| !members.contains(f)) {
        return Err(Problem::bad_param("fields", format!("unknown field {name:?}; known: {}", members.join(", "))));
    }
    Ok(list)
}

/// Keeps the `fields` members of an answer: of each `items[]` element when the answer is a
/// list, else of the object itself.
fn project(v: &mut serde_json::Value, fields: &[String]) {
    let keep = |o: &mut serde_json::Map<String, serde_json::Value>| o.retain(|k, _| fields.contains(k));
    match v.as_object_mut() {
        Some(o) if o.get("items").is_some_and(serde_json::Value::is_array) => {
            for item in o.get_mut("items").and_then(serde_json::Value::as_array_mut).into_iter().flatten() {
                if let Some(o) = item.as_object_mut() {
                    keep(o);
                }
            }
        }
        Some(o) => keep(o),
        None => {}
    }
}

/// A typed answer as JSON: members in name order (every answer has always been written through
/// a `serde_json::Value`). A value serde cannot write is a 500, never an empty answer.
pub(crate) fn to_json<T: serde::Serialize>(v: &T) -> Result<serde_json::Value, Problem> {
    serde_json::to_value(v).map_err(|e| Problem::internal(&e))
}

/// A typed answer (a view of [`views`]) as served: written as JSON ([`to_json`]), then only the
/// request's `fields` kept ([`Req::fields`]).
pub(crate) fn view<T: serde::Serialize>(req: &Req<'_>, v: &T) -> Result<warp::reply::Response, Problem> {
    let mut v = to_json(v)?;
    if let Some(fields) = &req.fields {
        project(&mut v, fields);
    }
    Ok(json(&v))
}

/// Answers one request.
pub fn route(state: &ApiState, method: &Method, path: &str, raw_query: &str, headers: &warp::http::HeaderMap, body: &Body) -> (String, warp::reply::Response) {
    let segments: Vec<&str> = path.split('/').filter(|s| !s.is_empty()).collect();
    let Some(Route { path: template, .. }) = find(&segments) else {
        let detail = if segments.first() == Some(&"v1") || path == "/" {
            format!("no route {path}")
        } else {
            format!("no route {path}; the API is versioned: resources are under /v1")
        };
        return ("unmatched".into(), Problem::not_found(detail).at(path).response());
    };
    let allow = || warp::http::HeaderValue::from_str(&allowed_methods(template)).unwrap_or(warp::http::HeaderValue::from_static("OPTIONS"));
    if method == Method::OPTIONS {
        let mut r = warp::reply::Response::new(warp::hyper::Body::empty());
        *r.status_mut() = StatusCode::NO_CONTENT;
        r.headers_mut().insert(warp::http::header::ALLOW, allow());
        return ((*template).into(), r);
    }
    let wanted = if method == Method::HEAD { "GET" } else { method.as_str() };
    let Some(route) = route_of(wanted, template) else {
        // RFC 9110: a 405 says which methods the route has.
        let mut r = Problem::method_not_allowed(method.as_str()).at(path).response();
        r.headers_mut().insert(warp::http::header::ALLOW, allow());
        return ((*template).into(), r);
    };
    let mut query: Vec<(String, String)> = match serde_urlencoded::from_str(raw_query) {
        Ok(q) => q,
        Err(e) => return ((*template).into(), Problem::bad_param("query", format!("malformed query string: {e}")).at(path).response()),
    };
    // `fields=`: taken off the query (the handlers never see it) and checked against the
    // members of the route's answer; [`view`] applies it.
    let fields = match route.projection {
        Projection::Fields(members) => {
            let f = query.iter().find(|(k, _)| k == "fields").map(|(_, v)| v.clone());
            query.retain(|(k, _)| k != "fields");
            match f.map(|f| requested_fields(&f, &members())).transpose() {
                Ok(f) => f,
                Err(p) => return ((*template).into(), p.at(path).response()),
            }
        }
        Projection::None => None,
    };
    let takes_fields = matches!(route.projection, Projection::Fields(_));
    let req = Req { segments, query, path, headers, body, fields, takes_fields };
    if let Err(refused) = route.auth.check(state, &req) {
        return ((*template).into(), *refused);
    }
    let mut resp = match (route.handler)(state, &req) {
        Ok(r) => r,
        Err(p) => p.at(path).response(),
    };
    if resp.status().is_success() && !resp.headers().contains_key(warp::http::header::CACHE_CONTROL) {
        resp.headers_mut().insert(warp::http::header::CACHE_CONTROL, warp::http::HeaderValue::from_static(route.cache_control.header()));
    }
    if let Some((_, deprecation, sunset, successor)) = DEPRECATIONS.iter().find(|d| d.0 == *template) {
        let h = resp.headers_mut();
        for (k, v) in [("deprecation", deprecation.to_string()), ("sunset", sunset.to_string()), ("link", format!("<{successor}>; rel=\"successor-version\""))]
        {
            if let Ok(v) = warp::http::HeaderValue::from_str(&v) {
                h.insert(k, v);
            }
        }
    }
    ((*template).into(), resp)
}

/// The warp filter serving everything: the websocket upgrade on `/v1/ws`, then every route of
/// the table, with the HTTP conventions (request ids, CORS, rate limits, timeouts, ETags,
/// compression) around them.
pub fn filter(state: ApiState) -> impl Filter<Extract = (warp::reply::Response,), Error = Infallible> + Clone {
    let state = Arc::new(state);
    let api_state = state.clone();
    let api = warp::method()
        .and(warp::path::full())
        .and(warp::query::raw().or(warp::any().map(String::new)).unify())
        .and(warp::header::headers_cloned())
        .and(body_stream())
        .and_then(move |method: Method, path: warp::path::FullPath, q: String, headers: warp::http::HeaderMap, stream: BodyStream| {
            let st = api_state.clone();
            async move {
                let timeout = Duration::from_millis(st.http.request_timeout_ms.max(1));
                let body = read_body(&method, &headers, timeout, stream).await;
                Ok::<_, Infallible>(answer(st, method, path.as_str().to_string(), q, headers, body).await)
            }
        });
    // One span per request; the conventions record its id (the client's X-Request-Id, or a new
    // one) as soon as they have it, so every log line of the request carries it.
    let span = warp::trace(|info| tracing::info_span!("request", method = %info.method(), path = %info.path(), request_id = tracing::field::Empty));
    conventions::wrap(state.clone(), ws::route(state).or(api).unify()).with(span).map(warp::Reply::into_response)
}

type BodyStream = futures::stream::BoxStream<'static, Result<bytes::Bytes, warp::Error>>;

/// The request body as a stream (empty when warp has none to give).
fn body_stream() -> impl Filter<Extract = (BodyStream,), Error = Infallible> + Clone {
    use futures::StreamExt;
    fn boxed<S, B>(s: S) -> BodyStream
    where
        S: futures::Stream<Item = Result<B, warp::Error>> + Send + 'static,
        B: bytes::Buf,
    {
        s.map(|c| c.map(|mut b| b.copy_to_bytes(b.remaining()))).boxed()
    }
    warp::body::stream().map(boxed).or(warp::any().map(|| -> BodyStream { futures::stream::empty().boxed() })).unify()
}

/// Answers one table route, with metrics.
async fn answer(state: Arc<ApiState>, method: Method, path: String, q: String, headers: warp::http::HeaderMap, body: Body) -> warp::reply::Response {
    let started = Instant::now();
    let (template, resp) = respond_with(&state, method, path, q, headers, body, false).await;
    let status = resp.status().as_u16().to_string();
    metrics::counter!(m::HTTP_REQUESTS_TOTAL, "route" => template.clone(), "status" => status.clone()).increment(1);
    metrics::histogram!(m::HTTP_REQUEST_DURATION_SECONDS, "route" => template, "status" => status).record(started.elapsed().as_secs_f64());
    resp
}

/// Answers one table route: cacheable reads through the cache, everything else (and cache
/// misses) by the handler. `refresh` recomputes a cacheable read even when cached.
pub(crate) async fn respond(
    state: &Arc<ApiState>,
    method: Method,
    path: String,
    q: String,
    headers: warp::http::HeaderMap,
    refresh: bool,
) -> (String, warp::reply::Response) {
    respond_with(state, method, path, q, headers, Body::Empty, refresh).await
}

/// [`respond`] with the request's body.
async fn respond_with(
    state: &Arc<ApiState>,
    method: Method,
    path: String,
    q: String,
    headers: warp::http::HeaderMap,
    body: Body,
    refresh: bool,
) -> (String, warp::reply::Response) {
    if method == Method::GET || method == Method::HEAD {
        if let Some(plan) = state.cache.plan(&path, &q) {
            let template = plan.template.to_string();
            let run = run(state.clone(), method, path, q, headers, body);
            let resp = state.cache.serve(&state.status, plan, refresh, async move { run.await.1 }).await;
            return (template, resp);
        }
    }
    run(state.clone(), method, path, q, headers, body).await
}

/// Runs the handler off the async threads (store reads block) within `http.request_timeout_ms`;
/// past it, 503 problem+json with `Retry-After` (the handler finishes in the background).
async fn run(state: Arc<ApiState>, method: Method, path: String, q: String, headers: warp::http::HeaderMap, body: Body) -> (String, warp::reply::Response) {
    let timeout = Duration::from_millis(state.http.request_timeout_ms.max(1));
    let p = path.clone();
    let work = tokio::task::spawn_blocking(move || route(&state, &method, &p, &q, &headers, &body));
    match tokio::time::timeout(timeout, work).await {
        Ok(Ok(r)) => r,
        Ok(Err(e)) => ("unmatched".to_string(), Problem::internal(&e).at(&path).response()),
        Err(_) => {
            let segments: Vec<&str> = path.split('/').filter(|s| !s.is_empty()).collect();
            let template = find(&segments).map_or("unmatched", |r| r.path).to_string();
            metrics::counter!(m::HTTP_REQUEST_TIMEOUTS_TOTAL, "route" => template.clone()).increment(1);
            let mut r = conventions::problem("timeout", "Request timeout", 503, format!("the answer took longer than {} ms; retry later", timeout.as_millis()))
                .at(&path)
                .response();
            r.headers_mut().insert(warp::http::header::RETRY_AFTER, warp::http::HeaderValue::from_static("1"));
            (template, r)
        }
    }
}

/// Serves the API until `shutdown` resolves; returns the bound address.
pub fn serve(
    state: ApiState,
    addr: SocketAddr,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> Result<(SocketAddr, impl std::future::Future<Output = ()>), warp::Error> {
    warp::serve(filter(state)).try_bind_with_graceful_shutdown(addr, shutdown)
}

/// A JSON 200 response.
pub fn json(v: &serde_json::Value) -> warp::reply::Response {
    json_status(v, StatusCode::OK)
}

/// A JSON response with a status.
pub fn json_status(v: &serde_json::Value, status: StatusCode) -> warp::reply::Response {
    // A `Value`'s maps have string keys and its numbers are finite: writing it cannot fail.
    let body = serde_json::to_vec(v).expect("a JSON value is always written");
    let mut r = warp::reply::Response::new(body.into());
    *r.status_mut() = status;
    r.headers_mut().insert("content-type", warp::http::HeaderValue::from_static("application/json"));
    r
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn literal_routes_win() {
        assert_eq!(find(&["v1", "proposals", "stats"]).unwrap().path, "/v1/proposals/stats");
        assert_eq!(find(&["v1", "proposals", "12"]).unwrap().path, "/v1/proposals/{proposalId}");
        assert!(find(&["v1", "nope"]).is_none());
    }

    #[test]
    fn allow_lists_every_method_of_a_route() {
        assert_eq!(allowed_methods("/v1/proposals"), "GET, HEAD, OPTIONS");
        assert_eq!(allowed_methods("/v1/events/governance"), "GET, HEAD, POST, OPTIONS");
        assert_eq!(allowed_methods("/v1/admin/cache/invalidate"), "POST, OPTIONS");
    }
}
