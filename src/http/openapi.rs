//! The OpenAPI document and its explorer (to be completed by issue 7's OpenAPI work).

use super::problem::Problem;
use super::{ApiState, Req};

/// `GET /v1/openapi.json`.
pub fn document(_state: &ApiState, _req: &Req<'_>) -> Result<warp::reply::Response, Problem> {
    Err(Problem::not_found("no OpenAPI document yet"))
}

/// `GET /v1/docs`.
pub fn explorer(_state: &ApiState, _req: &Req<'_>) -> Result<warp::reply::Response, Problem> {
    Err(Problem::not_found("no explorer yet"))
}

/// `GET /v1/docs/{asset}`.
pub fn asset(_state: &ApiState, _req: &Req<'_>) -> Result<warp::reply::Response, Problem> {
    Err(Problem::not_found("no explorer yet"))
}
