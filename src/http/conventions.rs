//! HTTP conventions around every response, the `/v1/ws` upgrade included:
//!
//! - **request ids**: `X-Request-Id` is taken from the request when sane (1 to 128 characters
//!   of `A-Za-z0-9._:-`), else a UUID v4 is generated; it is echoed on every response, added as
//!   `requestId` to every problem+json body, and named in the request log line (target `http`).
//! - **CORS** from `http.cors_origins` (`*`, or a comma list of origins echoed back with
//!   `Vary: Origin`); preflight `OPTIONS` requests are answered here (204, or 403 problem+json for
//!   an origin outside the list).
//! - **rate limiting** per client (`http.rate_limit_per_second`, bucket of
//!   `http.rate_limit_burst` requests): a token bucket per remote address, or per the last
//!   `X-Forwarded-For` address (the one the trusted proxy saw) with `http.trust_forwarded_for`;
//!   429 problem+json with `Retry-After`. Probes and scrapes (`/healthz`, `/readyz`, `/metrics`)
//!   are not limited.
//! - **Cache-Control**: `public, max-age=5` on successful reads, `no-store` on errors, on the
//!   admin routes, on `/v1/status`, the probes and `/metrics`.
//! - **ETag** (strong, over the uncompressed body) on successful cacheable reads, and `304 Not
//!   Modified` when `If-None-Match` names it.
//! - **compression**: br (preferred) or gzip as `Accept-Encoding` allows (q-values honoured),
//!   for text and JSON bodies of at least `http.compression_min_bytes`, with
//!   `Vary: Accept-Encoding`.
//!
//! A `101 Switching Protocols` answer only gets its request id: it is neither cached nor
//! compressed. The request timeout is applied where the handlers run ([`super::answer`]).

use std::convert::Infallible;
use std::io::Write as _;
use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use warp::http::header::{self, HeaderMap, HeaderValue};
use warp::http::{Method, StatusCode};
use warp::Filter;

use super::problem::Problem;
use super::ApiState;
use crate::config::HttpConfig;
use crate::metrics as m;

/// `X-Request-Id`.
pub const X_REQUEST_ID: &str = "x-request-id";
/// Headers a browser may read from a cross-origin answer.
const EXPOSED: &str = "ETag, X-Request-Id, Retry-After, Deprecation, Sunset, Link, X-Cache";

/// A problem of a kind the conventions add.
pub fn problem(kind: &str, title: &'static str, status: u16, detail: impl Into<String>) -> Problem {
    Problem { kind: format!("tag:govflow,2026:problem/{kind}"), title, status, detail: detail.into(), parameter: None, instance: None }
}

/// Content codings the API produces.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Encoding {
    /// Brotli.
    Br,
    /// Gzip.
    Gzip,
}

impl Encoding {
    fn token(self) -> &'static str {
        match self {
            Encoding::Br => "br",
            Encoding::Gzip => "gzip",
        }
    }

    /// Compresses a body.
    pub fn encode(self, body: &[u8]) -> Bytes {
        match self {
            Encoding::Br => {
                let mut out = Vec::with_capacity(body.len() / 4 + 64);
                {
                    let mut w = brotli::CompressorWriter::new(&mut out, 4096, 5, 22);
                    let _ = w.write_all(body);
                }
                out.into()
            }
            Encoding::Gzip => {
                let mut w = flate2::write::GzEncoder::new(Vec::with_capacity(body.len() / 4 + 64), flate2::Compression::default());
                let _ = w.write_all(body);
                w.finish().unwrap_or_default().into()
            }
        }
    }
}

/// The coding to answer with, from `Accept-Encoding`: the highest q-value among br and gzip
/// (`*` counts for both), br on ties; none when neither is acceptable.
pub fn negotiate(accept: Option<&str>) -> Option<Encoding> {
    let accept = accept?;
    let (mut br, mut gzip, mut star): (Option<f32>, Option<f32>, Option<f32>) = (None, None, None);
    for part in accept.split(',') {
        let mut it = part.split(';');
        let coding = it.next().unwrap_or("").trim().to_ascii_lowercase();
        let mut q = 1.0f32;
        for p in it {
            if let Some(v) = p.trim().strip_prefix("q=").or_else(|| p.trim().strip_prefix("Q=")) {
                q = v.trim().parse().unwrap_or(0.0);
            }
        }
        match coding.as_str() {
            "br" => br = Some(q),
            "gzip" | "x-gzip" => gzip = Some(q),
            "*" => star = Some(q),
            _ => {}
        }
    }
    let br = br.or(star).unwrap_or(0.0);
    let gzip = gzip.or(star).unwrap_or(0.0);
    if br <= 0.0 && gzip <= 0.0 {
        None
    } else if br >= gzip {
        Some(Encoding::Br)
    } else {
        Some(Encoding::Gzip)
    }
}

fn compressible(content_type: Option<&HeaderValue>) -> bool {
    let Some(ct) = content_type.and_then(|v| v.to_str().ok()) else { return false };
    let ct = ct.to_ascii_lowercase();
    ct.starts_with("text/") || ct.contains("json") || ct.contains("javascript") || ct.contains("xml") || ct.contains("svg")
}

/// A sane client-supplied request id.
fn sane_request_id(v: &str) -> bool {
    !v.is_empty() && v.len() <= 128 && v.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b':'))
}

/// Whether an `If-None-Match` value names `etag` (weak comparison, as RFC 9110 asks).
pub fn etag_matches(if_none_match: &str, etag: &str) -> bool {
    let strip = |s: &str| s.trim().trim_start_matches("W/").to_string();
    let want = strip(etag);
    if_none_match.split(',').any(|t| t.trim() == "*" || strip(t) == want)
}

/// `Cache-Control` of a successful answer on `path`.
/// (the route table's; `no-store` off the table). Answers the routes set themselves (the
/// route's method's) win over this.
pub fn cache_control(path: &str) -> &'static str {
    let segments: Vec<&str> = path.split('/').filter(|s| !s.is_empty()).collect();
    super::find(&segments).map_or("no-store", |r| r.cache_control.header())
}

/// One client's token bucket.
#[derive(Debug)]
struct Bucket {
    tokens: f64,
    at: Instant,
}

/// Per-client token buckets.
pub struct RateLimiter {
    rate: f64,
    burst: f64,
    buckets: moka::sync::Cache<IpAddr, Arc<Mutex<Bucket>>>,
}

impl RateLimiter {
    /// `per_second` requests per second with buckets of `burst`; `None` when unlimited.
    pub fn new(per_second: u32, burst: u32) -> Option<Self> {
        (per_second > 0).then(|| RateLimiter {
            rate: f64::from(per_second),
            burst: f64::from(burst.max(1)),
            buckets: moka::sync::Cache::builder().max_capacity(1_000_000).time_to_idle(Duration::from_secs(600)).build(),
        })
    }

    /// Takes a token for `client`, or says in how many seconds one will be there.
    pub fn check(&self, client: IpAddr) -> Result<(), u64> {
        let b = self.buckets.get_with(client, || Arc::new(Mutex::new(Bucket { tokens: self.burst, at: Instant::now() })));
        let mut b = b.lock().unwrap_or_else(|e| e.into_inner());
        let now = Instant::now();
        b.tokens = (b.tokens + now.duration_since(b.at).as_secs_f64() * self.rate).min(self.burst);
        b.at = now;
        if b.tokens >= 1.0 {
            b.tokens -= 1.0;
            Ok(())
        } else {
            Err(((1.0 - b.tokens) / self.rate).ceil().max(1.0) as u64)
        }
    }
}

enum Cors {
    Off,
    Any,
    List(Vec<String>),
}

/// The conventions' settings and state.
pub struct Conventions {
    cors: Cors,
    limiter: Option<RateLimiter>,
    trust_forwarded_for: bool,
    compression_min_bytes: usize,
}

impl Conventions {
    /// From `[http]`.
    pub fn new(cfg: &HttpConfig) -> Self {
        let origins: Vec<String> = cfg.cors_origins.split(',').map(|s| s.trim().trim_end_matches('/').to_string()).filter(|s| !s.is_empty()).collect();
        let cors = if origins.is_empty() {
            Cors::Off
        } else if origins.iter().any(|o| o == "*") {
            Cors::Any
        } else {
            Cors::List(origins)
        };
        Conventions {
            cors,
            limiter: RateLimiter::new(cfg.rate_limit_per_second, cfg.rate_limit_burst),
            trust_forwarded_for: cfg.trust_forwarded_for,
            compression_min_bytes: cfg.compression_min_bytes,
        }
    }

    /// The `Access-Control-Allow-Origin` value for a request's `Origin`; `Err` for an origin
    /// outside the list; `Ok(None)` when CORS is off or the request has no `Origin`.
    fn allow_origin(&self, origin: Option<&HeaderValue>) -> Result<Option<HeaderValue>, ()> {
        let Some(origin) = origin else { return Ok(None) };
        match &self.cors {
            Cors::Off => Ok(None),
            Cors::Any => Ok(Some(HeaderValue::from_static("*"))),
            Cors::List(list) => {
                let o = origin.to_str().unwrap_or("").trim_end_matches('/');
                if list.iter().any(|x| x.eq_ignore_ascii_case(o)) {
                    Ok(Some(origin.clone()))
                } else {
                    Err(())
                }
            }
        }
    }

    /// The client a request is counted against.
    fn client(&self, headers: &HeaderMap, remote: Option<SocketAddr>) -> Option<IpAddr> {
        if self.trust_forwarded_for {
            let forwarded = headers
                .get_all("x-forwarded-for")
                .iter()
                .filter_map(|v| v.to_str().ok())
                .flat_map(|v| v.split(','))
                .filter_map(|s| s.trim().parse::<IpAddr>().ok())
                .next_back();
            if forwarded.is_some() {
                return forwarded;
            }
        }
        remote.map(|a| a.ip())
    }
}

/// What the conventions learn about a request before it is answered.
#[derive(Debug, Clone)]
pub struct Ctx {
    method: Method,
    path: String,
    request_id: HeaderValue,
    allow_origin: Option<HeaderValue>,
    encoding: Option<Encoding>,
    if_none_match: Option<String>,
    client: Option<IpAddr>,
    started: Instant,
}

/// An answer given before the routes: a preflight, a refused origin, a rate-limited client.
#[derive(Debug)]
enum Early {
    Preflight { ctx: Ctx, methods: String, headers: Option<HeaderValue> },
    OriginRefused(Ctx),
    Limited { ctx: Ctx, retry_after: u64 },
}

#[derive(Debug)]
struct EarlyAnswer(Mutex<Option<Early>>);

impl warp::reject::Reject for EarlyAnswer {}

fn admit(conv: &Conventions, method: Method, path: String, headers: HeaderMap, remote: Option<SocketAddr>) -> Result<Ctx, warp::Rejection> {
    let request_id = headers
        .get(X_REQUEST_ID)
        .and_then(|v| v.to_str().ok())
        .filter(|v| sane_request_id(v))
        .and_then(|v| HeaderValue::from_str(v).ok())
        .unwrap_or_else(|| HeaderValue::from_str(&uuid::Uuid::new_v4().to_string()).unwrap_or(HeaderValue::from_static("-")));
    tracing::Span::current().record("request_id", request_id.to_str().unwrap_or("-"));
    let origin = conv.allow_origin(headers.get(header::ORIGIN));
    let mut ctx = Ctx {
        method,
        path,
        request_id,
        allow_origin: origin.clone().ok().flatten(),
        encoding: negotiate(headers.get(header::ACCEPT_ENCODING).and_then(|v| v.to_str().ok())),
        if_none_match: headers.get(header::IF_NONE_MATCH).and_then(|v| v.to_str().ok()).map(str::to_string),
        client: conv.client(&headers, remote),
        started: Instant::now(),
    };
    let early = |e: Early| Err(warp::reject::custom(EarlyAnswer(Mutex::new(Some(e)))));
    if ctx.method == Method::OPTIONS && headers.contains_key(header::ORIGIN) && headers.contains_key(header::ACCESS_CONTROL_REQUEST_METHOD) {
        if origin.is_err() {
            return early(Early::OriginRefused(ctx));
        }
        if !matches!(conv.cors, Cors::Off) {
            let segments: Vec<&str> = ctx.path.split('/').filter(|s| !s.is_empty()).collect();
            // Every method of the route (`/v1/events/governance` has GET and POST).
            let methods = match super::find(&segments) {
                Some(route) => super::allowed_methods(route.path),
                None => "GET, HEAD, OPTIONS".to_string(),
            };
            let requested = headers.get(header::ACCESS_CONTROL_REQUEST_HEADERS).cloned();
            return early(Early::Preflight { ctx, methods, headers: requested });
        }
    }
    if let (Some(limiter), Some(client)) = (&conv.limiter, ctx.client) {
        if !matches!(ctx.path.as_str(), "/healthz" | "/readyz" | "/metrics") {
            if let Err(retry_after) = limiter.check(client) {
                metrics::counter!(m::HTTP_RATE_LIMITED_TOTAL).increment(1);
                return early(Early::Limited { ctx, retry_after });
            }
        }
    }
    if origin.is_err() {
        // Not a preflight: answered, without CORS headers (the browser withholds it).
        ctx.allow_origin = None;
    }
    Ok(ctx)
}

fn set(h: &mut HeaderMap, name: header::HeaderName, v: &str) {
    if let Ok(v) = HeaderValue::from_str(v) {
        h.insert(name, v);
    }
}

fn add_vary(h: &mut HeaderMap, what: &str) {
    let present = h.get_all(header::VARY).iter().filter_map(|v| v.to_str().ok()).flat_map(|v| v.split(',')).any(|v| v.trim().eq_ignore_ascii_case(what));
    if !present {
        if let Ok(v) = HeaderValue::from_str(what) {
            h.append(header::VARY, v);
        }
    }
}

/// Headers every answer gets: the request id and CORS.
fn common(ctx: &Ctx, h: &mut HeaderMap) {
    h.insert(X_REQUEST_ID, ctx.request_id.clone());
    if let Some(o) = &ctx.allow_origin {
        h.insert(header::ACCESS_CONTROL_ALLOW_ORIGIN, o.clone());
        h.insert(header::ACCESS_CONTROL_EXPOSE_HEADERS, HeaderValue::from_static(EXPOSED));
        if o != "*" {
            add_vary(h, "Origin");
        }
    }
}

fn log(ctx: &Ctx, status: StatusCode) {
    tracing::info!(
        target: "http",
        request_id = ctx.request_id.to_str().unwrap_or(""),
        method = %ctx.method,
        path = %ctx.path,
        status = status.as_u16(),
        client = ?ctx.client,
        elapsed_us = ctx.started.elapsed().as_micros() as u64,
        "request"
    );
}

/// Adds `requestId` to a problem+json body.
fn with_request_id(body: &[u8], id: &HeaderValue) -> Option<Vec<u8>> {
    let mut v: serde_json::Value = serde_json::from_slice(body).ok()?;
    v.as_object_mut()?.insert("requestId".into(), serde_json::Value::String(id.to_str().ok()?.to_string()));
    serde_json::to_vec(&v).ok()
}

fn is_problem(h: &HeaderMap) -> bool {
    h.get(header::CONTENT_TYPE).and_then(|v| v.to_str().ok()).is_some_and(|v| v.starts_with("application/problem+json"))
}

fn early_response(e: Early) -> (Ctx, warp::reply::Response) {
    match e {
        Early::Preflight { ctx, methods, headers } => {
            let mut r = warp::reply::Response::new(warp::hyper::Body::empty());
            *r.status_mut() = StatusCode::NO_CONTENT;
            let h = r.headers_mut();
            set(h, header::ACCESS_CONTROL_ALLOW_METHODS, &methods);
            h.insert(
                header::ACCESS_CONTROL_ALLOW_HEADERS,
                headers.unwrap_or(HeaderValue::from_static("Authorization, Content-Type, If-None-Match, X-Request-Id")),
            );
            h.insert(header::ACCESS_CONTROL_MAX_AGE, HeaderValue::from_static("600"));
            add_vary(h, "Access-Control-Request-Headers");
            (ctx, r)
        }
        Early::OriginRefused(ctx) => {
            let r = problem("cors-origin", "Origin not allowed", 403, "this origin is not in http.cors_origins").at(&ctx.path).response();
            (ctx, r)
        }
        Early::Limited { ctx, retry_after } => {
            let mut r = problem("rate-limited", "Too many requests", 429, format!("this client is over its request rate; retry in {retry_after} s"))
                .at(&ctx.path)
                .response();
            set(r.headers_mut(), header::RETRY_AFTER, &retry_after.to_string());
            (ctx, r)
        }
    }
}

/// Applies the conventions to an answer.
async fn finish(conv: &Conventions, ctx: Ctx, resp: warp::reply::Response) -> warp::reply::Response {
    let status = resp.status();
    if status == StatusCode::SWITCHING_PROTOCOLS {
        let mut resp = resp;
        resp.headers_mut().insert(X_REQUEST_ID, ctx.request_id.clone());
        log(&ctx, status);
        return resp;
    }
    let (mut parts, body) = resp.into_parts();
    let entry = parts.extensions.remove::<Arc<super::cache::Entry>>();
    let mut body = match &entry {
        Some(e) => e.body().clone(),
        None => warp::hyper::body::to_bytes(body).await.unwrap_or_default(),
    };
    let h = &mut parts.headers;
    if is_problem(h) {
        if let Some(b) = with_request_id(&body, &ctx.request_id) {
            body = b.into();
        }
    }
    if !h.contains_key(header::CACHE_CONTROL) {
        let cc = if status.is_success() { cache_control(&ctx.path) } else { "no-store" };
        h.insert(header::CACHE_CONTROL, HeaderValue::from_static(cc));
    }
    let reading = ctx.method == Method::GET || ctx.method == Method::HEAD;
    let no_store = h.get(header::CACHE_CONTROL).is_some_and(|v| v.as_bytes().starts_with(b"no-store"));
    let compressible = compressible(h.get(header::CONTENT_TYPE));
    if compressible && status != StatusCode::NO_CONTENT {
        add_vary(h, "Accept-Encoding");
    }
    if status == StatusCode::OK && reading && !no_store {
        if !h.contains_key(header::ETAG) {
            h.insert(header::ETAG, super::cache::etag_of(&body));
        }
        let etag = h.get(header::ETAG).and_then(|v| v.to_str().ok()).unwrap_or("").to_string();
        if ctx.if_none_match.as_deref().is_some_and(|inm| etag_matches(inm, &etag)) {
            h.remove(header::CONTENT_TYPE);
            h.remove(header::CONTENT_LENGTH);
            parts.status = StatusCode::NOT_MODIFIED;
            common(&ctx, &mut parts.headers);
            log(&ctx, StatusCode::NOT_MODIFIED);
            return warp::reply::Response::from_parts(parts, warp::hyper::Body::empty());
        }
    } else if no_store {
        h.remove(header::ETAG);
    }
    if let Some(enc) = ctx.encoding {
        if compressible && body.len() >= conv.compression_min_bytes && !h.contains_key(header::CONTENT_ENCODING) {
            body = match &entry {
                Some(e) => e.encoded(enc as usize, |b| enc.encode(b)),
                None => enc.encode(&body),
            };
            h.insert(header::CONTENT_ENCODING, HeaderValue::from_static(enc.token()));
            h.remove(header::CONTENT_LENGTH);
        }
    }
    common(&ctx, &mut parts.headers);
    log(&ctx, status);
    warp::reply::Response::from_parts(parts, body.into())
}

/// Wraps the routes with the conventions.
pub fn wrap(
    state: Arc<ApiState>,
    inner: impl Filter<Extract = (warp::reply::Response,), Error = Infallible> + Clone + Send + Sync + 'static,
) -> impl Filter<Extract = (warp::reply::Response,), Error = Infallible> + Clone {
    let conv = Arc::new(Conventions::new(&state.http));
    let (c1, c2, c3) = (conv.clone(), conv.clone(), conv);
    let gate = warp::method().and(warp::path::full()).and(warp::header::headers_cloned()).and(warp::addr::remote()).and_then(
        move |method: Method, path: warp::path::FullPath, headers: HeaderMap, remote: Option<SocketAddr>| {
            let conv = c1.clone();
            async move { admit(&conv, method, path.as_str().to_string(), headers, remote) }
        },
    );
    gate.and(inner)
        .and_then(move |ctx: Ctx, resp: warp::reply::Response| {
            let conv = c2.clone();
            async move { Ok::<_, warp::Rejection>(finish(&conv, ctx, resp).await) }
        })
        .recover(move |rejection: warp::Rejection| {
            let conv = c3.clone();
            async move {
                let early = rejection.find::<EarlyAnswer>().and_then(|e| e.0.lock().ok().and_then(|mut g| g.take()));
                Ok::<_, Infallible>(match early {
                    Some(e) => {
                        let (ctx, r) = early_response(e);
                        finish(&conv, ctx, r).await
                    }
                    None => Problem::internal(&format!("unhandled rejection: {rejection:?}")).response(),
                })
            }
        })
        .unify()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn encodings_are_negotiated() {
        assert_eq!(negotiate(None), None);
        assert_eq!(negotiate(Some("gzip, deflate, br")), Some(Encoding::Br));
        assert_eq!(negotiate(Some("gzip")), Some(Encoding::Gzip));
        assert_eq!(negotiate(Some("br;q=0.5, gzip;q=0.8")), Some(Encoding::Gzip));
        assert_eq!(negotiate(Some("br;q=0, gzip;q=0")), None);
        assert_eq!(negotiate(Some("identity")), None);
        assert_eq!(negotiate(Some("*")), Some(Encoding::Br));
        assert_eq!(negotiate(Some("*;q=0.1, br;q=0")), Some(Encoding::Gzip));
    }

    #[test]
    fn compression_round_trips() {
        let body = br#"{"items":[1,2,3,4,5,6,7,8,9,10,11,12,13,14,15,16,17,18,19,20]}"#.repeat(50);
        let gz = Encoding::Gzip.encode(&body);
        let mut out = Vec::new();
        std::io::Read::read_to_end(&mut flate2::read::GzDecoder::new(&gz[..]), &mut out).unwrap();
        assert_eq!(out, body);
        let br = Encoding::Br.encode(&body);
        let mut out = Vec::new();
        std::io::Read::read_to_end(&mut brotli::Decompressor::new(&br[..], 4096), &mut out).unwrap();
        assert_eq!(out, body);
        assert!(br.len() < body.len() / 10);
    }

    #[test]
    fn etags_match_like_rfc_9110_says() {
        assert!(etag_matches("\"abc\"", "\"abc\""));
        assert!(etag_matches("W/\"abc\"", "\"abc\""));
        assert!(etag_matches("\"x\", \"abc\"", "\"abc\""));
        assert!(etag_matches("*", "\"abc\""));
        assert!(!etag_matches("\"abd\"", "\"abc\""));
    }

    #[test]
    fn request_ids_are_checked() {
        assert!(sane_request_id("abc-123_X.y:z"));
        assert!(!sane_request_id(""));
        assert!(!sane_request_id("has space"));
        assert!(!sane_request_id(&"a".repeat(129)));
    }

    #[test]
    fn buckets_refill_at_the_rate() {
        let l = RateLimiter::new(10, 3).unwrap();
        let ip: IpAddr = "10.0.0.1".parse().unwrap();
        assert!(l.check(ip).is_ok());
        assert!(l.check(ip).is_ok());
        assert!(l.check(ip).is_ok());
        assert_eq!(l.check(ip), Err(1));
        assert!(l.check("10.0.0.2".parse().unwrap()).is_ok(), "buckets are per client");
        std::thread::sleep(Duration::from_millis(120));
        assert!(l.check(ip).is_ok());
        assert!(RateLimiter::new(0, 10).is_none());
    }

    #[test]
    fn forwarded_for_is_trusted_only_when_configured() {
        let mut h = HeaderMap::new();
        h.insert("x-forwarded-for", HeaderValue::from_static("1.1.1.1, 2.2.2.2"));
        let remote: SocketAddr = "127.0.0.1:5000".parse().unwrap();
        let off = Conventions::new(&HttpConfig::default());
        assert_eq!(off.client(&h, Some(remote)), Some("127.0.0.1".parse().unwrap()));
        let on = Conventions::new(&HttpConfig { trust_forwarded_for: true, ..HttpConfig::default() });
        assert_eq!(on.client(&h, Some(remote)), Some("2.2.2.2".parse().unwrap()));
    }

    #[test]
    fn cache_control_by_route() {
        assert_eq!(cache_control("/v1/proposals"), "public, max-age=5");
        assert_eq!(cache_control("/v1/status"), "no-store");
        assert_eq!(cache_control("/v1/admin/cache/invalidate"), "no-store");
        assert_eq!(cache_control("/metrics"), "no-store");
    }
}
