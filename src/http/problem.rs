//! RFC 9457 problem details: every error the API returns, with a stable `type` per kind.

use serde::Serialize;
use utoipa::ToSchema;
use warp::http::StatusCode;

/// An error (RFC 9457 problem details), served as `application/problem+json`.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct Problem {
    /// Stable id of the error kind: `tag:govflow,2026:problem/<kind>`.
    #[serde(rename = "type")]
    #[schema(pattern = "^tag:govflow,2026:problem/[a-z-]+$", example = "tag:govflow,2026:problem/invalid-parameter")]
    pub kind: String,
    /// Short summary of the kind.
    #[schema(value_type = String)]
    pub title: &'static str,
    /// The HTTP status.
    #[schema(minimum = 400, maximum = 599)]
    pub status: u16,
    /// What went wrong this time.
    pub detail: String,
    /// The offending query or path parameter (400s).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub parameter: Option<String>,
    /// The request path.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub instance: Option<String>,
}

fn kind(k: &str) -> String {
    format!("tag:govflow,2026:problem/{k}")
}

impl Problem {
    /// 400 for a bad parameter.
    pub fn bad_param(parameter: &str, detail: impl Into<String>) -> Problem {
        Problem {
            kind: kind("invalid-parameter"),
            title: "Invalid parameter",
            status: 400,
            detail: detail.into(),
            parameter: Some(parameter.to_string()),
            instance: None,
        }
    }
    /// 404 for an unknown resource.
    pub fn not_found(detail: impl Into<String>) -> Problem {
        Problem { kind: kind("not-found"), title: "Not found", status: 404, detail: detail.into(), parameter: None, instance: None }
    }
    /// 405.
    pub fn method_not_allowed(method: &str) -> Problem {
        Problem {
            kind: kind("method-not-allowed"),
            title: "Method not allowed",
            status: 405,
            detail: format!("{method} is not supported on this route"),
            parameter: None,
            instance: None,
        }
    }
    /// 503 while not ready.
    pub fn unavailable(detail: impl Into<String>) -> Problem {
        Problem { kind: kind("unavailable"), title: "Service unavailable", status: 503, detail: detail.into(), parameter: None, instance: None }
    }
    /// 500; the detail is logged, not returned.
    pub fn internal(e: &dyn std::fmt::Display) -> Problem {
        tracing::error!(target: "http", error = %e, "internal error");
        Problem {
            kind: kind("internal"),
            title: "Internal error",
            status: 500,
            detail: "the server failed to answer; the error is logged".into(),
            parameter: None,
            instance: None,
        }
    }
    /// Attaches the request path.
    pub fn at(mut self, path: &str) -> Problem {
        self.instance = Some(path.to_string());
        self
    }
    /// The HTTP response.
    pub fn response(&self) -> warp::reply::Response {
        problem_json(self, self.status)
    }
}

/// A problem+json answer of `status`.
fn problem_json<T: Serialize>(body: &T, status: u16) -> warp::reply::Response {
    // Strings and integers only (no maps with non-string keys, no failing `Serialize`): writing
    // them cannot fail.
    let body = serde_json::to_vec(body).expect("a problem document is strings and integers");
    let mut r = warp::reply::Response::new(body.into());
    *r.status_mut() = StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    r.headers_mut().insert("content-type", warp::http::HeaderValue::from_static("application/problem+json"));
    r
}

/// A 422 problem: every invalid member of the request body.
#[derive(Debug, Clone, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct ValidationProblem {
    /// `tag:govflow,2026:problem/invalid-event`.
    #[serde(rename = "type")]
    #[schema(pattern = "^tag:govflow,2026:problem/[a-z-]+$", example = "tag:govflow,2026:problem/invalid-event")]
    pub kind: String,
    /// Short summary of the kind.
    #[schema(value_type = String)]
    pub title: &'static str,
    /// The HTTP status (422).
    #[schema(minimum = 400, maximum = 599)]
    pub status: u16,
    /// Every reason, joined.
    pub detail: String,
    /// The request path.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub instance: Option<String>,
    /// Each invalid member and why.
    pub invalid_params: Vec<InvalidParam>,
}

/// One invalid member of a request body.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct InvalidParam {
    /// The member.
    #[schema(example = "account")]
    pub name: String,
    /// What is wrong with it.
    pub reason: String,
}

impl ValidationProblem {
    /// `problem` with `invalidParams` (its `parameter`, if any, is not part of a 422).
    pub fn new(problem: Problem, invalid_params: Vec<InvalidParam>) -> Self {
        let Problem { kind, title, status, detail, instance, .. } = problem;
        ValidationProblem { kind, title, status, detail, instance, invalid_params }
    }

    /// The HTTP response.
    pub fn response(&self) -> warp::reply::Response {
        problem_json(self, self.status)
    }
}

impl From<crate::store::StoreError> for Problem {
    fn from(e: crate::store::StoreError) -> Self {
        Problem::internal(&e)
    }
}
