//! The HTTP API (warp): `/v1` read routes, health, readiness and Prometheus metrics.
//!
//! Routing is one table in [`route`]: each route has a template used as the metrics label and
//! a handler; unknown routes and methods answer problem+json like every other error.

pub mod api;
pub mod cache;
pub mod conventions;
pub mod openapi;
pub mod problem;
pub mod ws;

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Instant;

use metrics_exporter_prometheus::PrometheusHandle;
use warp::http::{Method, StatusCode};
use warp::Filter;

use crate::config::{HttpConfig, WebsocketConfig};
use crate::metrics as m;
use crate::store::Store;
use crate::streams::changes::ChangeHub;
use crate::streams::listener::IndexerStatus;
use problem::Problem;

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
}

impl Req<'_> {
    /// A query parameter.
    pub fn param(&self, name: &str) -> Option<&str> {
        self.query.iter().find(|(k, _)| k == name).map(|(_, v)| v.as_str())
    }
    /// Rejects parameters outside `allowed`.
    pub fn only(&self, allowed: &[&str]) -> Result<(), Problem> {
        for (k, _) in &self.query {
            if !allowed.contains(&k.as_str()) {
                let list = if allowed.is_empty() { "none".to_string() } else { allowed.join(", ") };
                return Err(Problem::bad_param(k, format!("unknown query parameter {k:?}; this route accepts: {list}")));
            }
        }
        Ok(())
    }
}

type Handler = fn(&ApiState, &Req<'_>) -> Result<warp::reply::Response, Problem>;

/// Route table: method, template, handler. Templates use `{name}` for path parameters.
pub const ROUTES: &[(&str, &str)] = &[
    ("GET", "/v1/proposals"),
    ("GET", "/v1/proposals/stats"),
    ("GET", "/v1/proposals/{proposalId}"),
    ("GET", "/v1/proposals/{proposalId}/votes"),
    ("GET", "/v1/proposals/{proposalId}/execution-status"),
    ("GET", "/v1/users/{address}/votes"),
    ("GET", "/v1/users/{address}/voting-power"),
    ("GET", "/v1/users/{address}/governance-benefits"),
    ("GET", "/v1/users/{address}/governance-achievements"),
    ("GET", "/v1/events/governance"),
    ("GET", "/v1/delegates"),
    ("GET", "/v1/status"),
    ("GET", "/v1/openapi.json"),
    ("GET", "/v1/docs"),
    ("GET", "/v1/docs/{asset}"),
    ("POST", "/v1/admin/cache/invalidate"),
    ("GET", "/healthz"),
    ("GET", "/readyz"),
    ("GET", "/metrics"),
];

fn handler_for(template: &str) -> Handler {
    match template {
        "/v1/proposals" => api::list_proposals,
        "/v1/proposals/stats" => api::stats,
        "/v1/proposals/{proposalId}" => api::proposal,
        "/v1/proposals/{proposalId}/votes" => api::proposal_votes,
        "/v1/proposals/{proposalId}/execution-status" => api::execution_status,
        "/v1/users/{address}/votes" => api::user_votes,
        "/v1/users/{address}/voting-power" => api::voting_power,
        "/v1/users/{address}/governance-benefits" => api::governance_benefits,
        "/v1/users/{address}/governance-achievements" => api::governance_achievements,
        "/v1/events/governance" => api::governance_events,
        "/v1/delegates" => api::delegates,
        "/v1/status" => api::status,
        "/v1/openapi.json" => openapi::document,
        "/v1/docs" => openapi::explorer,
        "/v1/docs/{asset}" => openapi::asset,
        "/v1/admin/cache/invalidate" => cache::invalidate,
        "/healthz" => api::healthz,
        "/readyz" => api::readyz,
        _ => api::metrics,
    }
}

fn matches(template: &str, segments: &[&str]) -> bool {
    let t: Vec<&str> = template.split('/').filter(|s| !s.is_empty()).collect();
    t.len() == segments.len() && t.iter().zip(segments).all(|(a, b)| a.starts_with('{') || a == b)
}

/// Finds the route for a path; literal templates win over parameterised ones.
fn find(segments: &[&str]) -> Option<&'static (&'static str, &'static str)> {
    ROUTES
        .iter()
        .filter(|(_, t)| matches(t, segments))
        .min_by_key(|(_, t)| t.matches('{').count())
}

/// Answers one request.
pub fn route(
    state: &ApiState,
    method: &Method,
    path: &str,
    raw_query: &str,
    headers: &warp::http::HeaderMap,
) -> (String, warp::reply::Response) {
    let segments: Vec<&str> = path.split('/').filter(|s| !s.is_empty()).collect();
    let Some((route_method, template)) = find(&segments) else {
        return ("unmatched".into(), Problem::not_found(format!("no route {path}")).at(path).response());
    };
    if method.as_str() != *route_method && !(method == Method::HEAD && *route_method == "GET") {
        return ((*template).into(), Problem::method_not_allowed(method.as_str()).at(path).response());
    }
    let query: Vec<(String, String)> = match serde_urlencoded::from_str(raw_query) {
        Ok(q) => q,
        Err(e) => return ((*template).into(), Problem::bad_param("query", format!("malformed query string: {e}")).at(path).response()),
    };
    let req = Req { segments, query, path, headers };
    let resp = match handler_for(template)(state, &req) {
        Ok(r) => r,
        Err(p) => p.at(path).response(),
    };
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
        .and_then(move |method: Method, path: warp::path::FullPath, q: String, headers: warp::http::HeaderMap| {
            let st = api_state.clone();
            async move { Ok::<_, Infallible>(answer(st, method, path.as_str().to_string(), q, headers).await) }
        });
    conventions::wrap(state.clone(), ws::route(state).or(api).unify())
}

/// Answers one table route off the async threads (store reads block), with metrics.
async fn answer(state: Arc<ApiState>, method: Method, path: String, q: String, headers: warp::http::HeaderMap) -> warp::reply::Response {
    let started = Instant::now();
    let (template, resp) = match tokio::task::spawn_blocking(move || route(&state, &method, &path, &q, &headers)).await {
        Ok(r) => r,
        Err(e) => ("unmatched".to_string(), Problem::internal(&e).response()),
    };
    let status = resp.status().as_u16().to_string();
    metrics::counter!(m::HTTP_REQUESTS_TOTAL, "route" => template.clone(), "status" => status.clone()).increment(1);
    metrics::histogram!(m::HTTP_REQUEST_DURATION_SECONDS, "route" => template, "status" => status).record(started.elapsed().as_secs_f64());
    resp
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
pub fn json<T: serde::Serialize>(v: &T) -> warp::reply::Response {
    json_status(v, StatusCode::OK)
}

/// A JSON response with a status.
pub fn json_status<T: serde::Serialize>(v: &T, status: StatusCode) -> warp::reply::Response {
    let body = serde_json::to_vec(v).unwrap_or_default();
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
        assert_eq!(find(&["v1", "proposals", "stats"]).unwrap().1, "/v1/proposals/stats");
        assert_eq!(find(&["v1", "proposals", "12"]).unwrap().1, "/v1/proposals/{proposalId}");
        assert!(find(&["v1", "nope"]).is_none());
    }
}
