//! Websockets on `/v1/ws` (to be completed by issue 7's websocket work).

use std::convert::Infallible;
use std::sync::Arc;

use warp::Filter;

use super::ApiState;

/// The `/v1/ws` upgrade; rejects everything else so the table routes answer.
pub fn route(_state: Arc<ApiState>) -> impl Filter<Extract = (warp::reply::Response,), Error = warp::Rejection> + Clone {
    warp::path!("v1" / "ws").and(warp::get()).map(|| {
        super::problem::Problem::not_found("websockets are not served yet").response()
    })
}

#[allow(dead_code)]
fn _unused(_: Infallible) {}
