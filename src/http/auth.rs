//! Who may call a route: the bearer tokens of the admin routes (`http.admin_token`) and of the
//! systems sending governance events (`http.events_token`). The route table names each route's
//! [`Auth`]; the router checks it before the handler runs.

use warp::http::HeaderValue;

use super::problem::Problem;
use super::{ApiState, Req};

/// What a route asks of its caller.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Auth {
    /// Anyone.
    None,
    /// The admin bearer token (`http.admin_token`); without one configured the route answers 404.
    Admin,
    /// The events bearer token (`http.events_token`); without one configured the route answers 404.
    Events,
}

impl Auth {
    /// The bearer route of this requirement, `None` for [`Auth::None`].
    fn bearer<'a>(self, state: &'a ApiState) -> Option<BearerRoute<'a>> {
        match self {
            Auth::None => None,
            Auth::Admin => Some(BearerRoute {
                token: state.http.admin_token.as_deref(),
                key: "http.admin_token",
                what: "the admin routes",
                challenge: "Bearer realm=\"govflow-admin\"",
            }),
            Auth::Events => Some(BearerRoute {
                token: state.http.events_token.as_deref(),
                key: "http.events_token",
                what: "POST /v1/events/governance",
                challenge: "Bearer realm=\"govflow-events\"",
            }),
        }
    }

    /// The OpenAPI security scheme of this requirement, if any.
    pub fn scheme(self) -> Option<&'static str> {
        match self {
            Auth::None => None,
            Auth::Admin => Some("adminToken"),
            Auth::Events => Some("eventsToken"),
        }
    }

    /// Checks the caller; the refusal is the problem's response, ready to send.
    pub(crate) fn check(self, state: &ApiState, req: &Req<'_>) -> Result<(), Box<warp::reply::Response>> {
        let Some(route) = self.bearer(state) else { return Ok(()) };
        let checked = check_bearer(&route, req);
        if checked.is_err() && self == Auth::Events {
            // Every POST of an event is counted by outcome, refused ones too.
            metrics::counter!(crate::metrics::BUS_INBOUND_EVENTS_TOTAL, "outcome" => "unauthorized").increment(1);
        }
        checked
    }
}

fn admin_problem(kind: &str, title: &'static str, status: u16, detail: impl Into<String>) -> Problem {
    Problem { kind: format!("tag:govflow,2026:problem/{kind}"), title, status, detail: detail.into(), parameter: None, instance: None }
}

/// Compares two secrets in time independent of where they differ.
fn same_secret(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// A route protected by a bearer token: which token, and what to say when it is unset.
struct BearerRoute<'a> {
    /// The configured token (`None`: the route is disabled).
    token: Option<&'a str>,
    /// Its configuration key, for messages (`http.admin_token`).
    key: &'static str,
    /// What the token opens, for messages (`the admin routes`).
    what: &'static str,
    /// The `WWW-Authenticate` header of a 401.
    challenge: &'static str,
}

/// Checks `Authorization: Bearer <token>`: 404 when the route is disabled (no token), 401
/// (with `WWW-Authenticate`) without credentials, 403 with wrong ones. The answer is the
/// problem's response, ready to send.
fn check_bearer(route: &BearerRoute<'_>, req: &Req<'_>) -> Result<(), Box<warp::reply::Response>> {
    let Some(token) = route.token else {
        let detail = format!("{} {} disabled ({} is not set)", route.what, if route.what.ends_with('s') { "are" } else { "is" }, route.key);
        return Err(Box::new(admin_problem("not-found", "Not found", 404, detail).at(req.path).response()));
    };
    let given = req.headers.get(warp::http::header::AUTHORIZATION).and_then(|v| v.to_str().ok()).and_then(|v| {
        let (scheme, rest) = v.split_once(' ')?;
        scheme.eq_ignore_ascii_case("bearer").then(|| rest.trim())
    });
    let p = match given {
        Some(t) if same_secret(t.as_bytes(), token.as_bytes()) => return Ok(()),
        None => admin_problem("unauthorized", "Unauthorized", 401, format!("this route needs Authorization: Bearer <{}>", route.key)),
        Some(_) => admin_problem("forbidden", "Forbidden", 403, format!("the bearer token is not {}", route.key)),
    };
    let status = p.status;
    let mut r = p.at(req.path).response();
    if status == 401 {
        r.headers_mut().insert(warp::http::header::WWW_AUTHENTICATE, HeaderValue::from_static(route.challenge));
    }
    Err(Box::new(r))
}
