//! The read cache (to be completed by the cache work of issue 7).

use super::problem::Problem;
use super::{ApiState, Req};

/// The read cache: for now, a pass-through.
#[derive(Debug, Default)]
pub struct Cache {}

impl Cache {
    /// A disabled cache.
    pub fn disabled() -> Self {
        Cache {}
    }
}

/// `POST /v1/admin/cache/invalidate`.
pub fn invalidate(_state: &ApiState, _req: &Req<'_>) -> Result<warp::reply::Response, Problem> {
    Err(Problem::not_found("the cache has no admin routes yet"))
}
