//! HTTP conventions around every response (to be completed by issue 7's conventions work).

use std::convert::Infallible;
use std::sync::Arc;

use warp::Filter;

use super::ApiState;

/// Wraps the routes with the conventions; for now, as they are.
pub fn wrap(
    _state: Arc<ApiState>,
    inner: impl Filter<Extract = (warp::reply::Response,), Error = Infallible> + Clone + Send + Sync + 'static,
) -> impl Filter<Extract = (warp::reply::Response,), Error = Infallible> + Clone {
    inner
}
