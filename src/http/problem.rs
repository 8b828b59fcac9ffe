//! RFC 9457 problem details: every error the API returns, with a stable `type` per kind.

use serde::Serialize;
use warp::http::StatusCode;

/// An API error.
#[derive(Debug, Clone, Serialize)]
pub struct Problem {
    /// Stable URI of the error kind.
    #[serde(rename = "type")]
    pub kind: String,
    /// Short summary of the kind.
    pub title: &'static str,
    /// HTTP status.
    pub status: u16,
    /// What went wrong this time.
    pub detail: String,
    /// The offending query or path parameter, for 400s.
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
        let body = serde_json::to_vec(self).unwrap_or_default();
        let mut r = warp::reply::Response::new(body.into());
        *r.status_mut() = StatusCode::from_u16(self.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        r.headers_mut().insert("content-type", warp::http::HeaderValue::from_static("application/problem+json"));
        r
    }
}

impl From<crate::store::StoreError> for Problem {
    fn from(e: crate::store::StoreError) -> Self {
        Problem::internal(&e)
    }
}
