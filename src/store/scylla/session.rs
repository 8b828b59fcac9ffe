//! The driver's session: settings, connecting, the schema version check, and the plumbing every
//! statement goes through.
//!
//! ## Consistency and routing
//! Every statement is prepared; the session uses token-aware routing (preferring
//! `scylla.local_datacenter`), the configured consistency (LOCAL_QUORUM by default) and serial
//! consistency for the lightweight transactions, the default retry policy (which retries only
//! what is safe: statements marked idempotent), and optional speculative execution of
//! idempotent statements. Counter updates and lightweight transactions are not idempotent and
//! are never retried or speculated by the driver.
//!
//! ## A synchronous store over an async driver
//! The [`Store`](crate::store::Store) trait is synchronous; this backend runs the driver on its
//! own small tokio runtime and blocks the calling thread (as the embedded backend blocks on disk
//! I/O), with [`block_on_runtime`].

use std::future::Future;
use std::num::NonZeroUsize;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use ::scylla::client::execution_profile::ExecutionProfile;
use ::scylla::client::session::Session;
use ::scylla::client::session_builder::SessionBuilder;
use ::scylla::client::PoolSize;
use ::scylla::deserialize::row::DeserializeRow;
use ::scylla::policies::load_balancing::DefaultPolicy;
use ::scylla::policies::retry::{DefaultRetryPolicy, FallthroughRetryPolicy, RetryPolicy};
use ::scylla::policies::speculative_execution::SimpleSpeculativeExecutionPolicy;
use ::scylla::response::query_result::QueryResult;
use ::scylla::serialize::row::SerializeRow;
use ::scylla::statement::prepared::PreparedStatement;
use ::scylla::statement::{Consistency, SerialConsistency};
use ::scylla::value::{CqlValue, Row};
use futures::stream::{self, StreamExt, TryStreamExt};

use super::statements::Sts;
use crate::config::{self, ScyllaConfig};
use crate::store::{migrate, StoreError};

/// A driver error as a store error.
pub(super) fn be(e: impl std::fmt::Display) -> StoreError {
    StoreError::Backend(e.to_string())
}

/// A boxed store future, for running many with bounded concurrency ([`Inner::each`]).
pub(super) type Fut<'a, T> = Pin<Box<dyn Future<Output = Result<T, StoreError>> + Send + 'a>>;

/// The connected session with its prepared statements: what every operation runs on.
pub(super) struct Inner {
    pub(super) session: Session,
    pub(super) st: Sts,
    pub(super) page_size: i32,
    conc: usize,
    /// Fault injection for tests: the commit step after which a commit stops as if the process
    /// had died (`journal`, `rows`, `votes`, `counters`).
    #[cfg(any(test, feature = "test-utils"))]
    pub(super) failpoint: std::sync::Mutex<Option<&'static str>>,
}

/// Runs `f` on `rt` and blocks this thread until it is done. The wait is a plain channel
/// receive, not a poll of the task's `JoinHandle`: polled from inside a tokio task whose
/// cooperative budget is spent, a `JoinHandle` answers "pending" and wakes itself at once, so a
/// polling loop would spin forever. Async code does not get here anyway: it calls the store
/// through `store::off_thread`.
pub(super) fn block_on_runtime<T: Send + 'static>(rt: &tokio::runtime::Handle, f: impl Future<Output = T> + Send + 'static) -> Result<T, StoreError> {
    let (tx, rx) = std::sync::mpsc::sync_channel(1);
    rt.spawn(async move {
        let _ = tx.send(f.await);
    });
    rx.recv().map_err(|_| StoreError::Backend("the CQL task ended without an answer (runtime shut down?)".into()))
}

/// Refuses a configuration with problems, naming every one of them.
pub(super) fn check_config(cfg: &ScyllaConfig) -> Result<(), StoreError> {
    let problems = cfg.problems();
    if !problems.is_empty() {
        return Err(StoreError::Backend(problems.into_iter().map(|(k, m)| format!("{k}: {m}")).collect::<Vec<_>>().join("; ")));
    }
    Ok(())
}

fn consistency(c: config::Consistency) -> Consistency {
    match c {
        config::Consistency::Any => Consistency::Any,
        config::Consistency::One => Consistency::One,
        config::Consistency::Two => Consistency::Two,
        config::Consistency::Three => Consistency::Three,
        config::Consistency::Quorum => Consistency::Quorum,
        config::Consistency::All => Consistency::All,
        config::Consistency::LocalQuorum => Consistency::LocalQuorum,
        config::Consistency::EachQuorum => Consistency::EachQuorum,
        config::Consistency::LocalOne => Consistency::LocalOne,
    }
}

fn serial(c: config::SerialConsistency) -> SerialConsistency {
    match c {
        config::SerialConsistency::Serial => SerialConsistency::Serial,
        config::SerialConsistency::LocalSerial => SerialConsistency::LocalSerial,
    }
}

/// The default execution profile: consistencies, timeout, routing, retries, speculation.
fn execution_profile(cfg: &ScyllaConfig) -> ExecutionProfile {
    let mut lb = DefaultPolicy::builder().token_aware(true).permit_dc_failover(false);
    if let Some(dc) = &cfg.local_datacenter {
        lb = lb.prefer_datacenter(dc.clone());
    }
    let retry: Arc<dyn RetryPolicy> = match cfg.retry_policy {
        config::RetryPolicy::None => Arc::new(FallthroughRetryPolicy::new()),
        config::RetryPolicy::Default => Arc::new(DefaultRetryPolicy::new()),
    };
    let mut profile = ExecutionProfile::builder()
        .consistency(consistency(cfg.consistency))
        .serial_consistency(Some(serial(cfg.serial_consistency)))
        .request_timeout(Some(Duration::from_millis(cfg.request_timeout_ms)))
        .load_balancing_policy(lb.build())
        .retry_policy(retry);
    if cfg.speculative_retries > 0 {
        profile = profile.speculative_execution_policy(Some(Arc::new(SimpleSpeculativeExecutionPolicy {
            max_retry_count: cfg.speculative_retries,
            retry_interval: Duration::from_millis(cfg.speculative_delay_ms),
        })));
    }
    profile.build()
}

/// Connects a session to the configured nodes.
pub(super) async fn session(cfg: &ScyllaConfig) -> Result<Session, StoreError> {
    let nodes: Vec<&str> = cfg.nodes.split(',').map(str::trim).filter(|n| !n.is_empty()).collect();
    let mut builder = SessionBuilder::new()
        .known_nodes(&nodes)
        .connection_timeout(Duration::from_millis(cfg.connect_timeout_ms))
        .pool_size(PoolSize::PerHost(NonZeroUsize::new(cfg.connections_per_node.max(1)).unwrap_or(NonZeroUsize::MIN)))
        .default_execution_profile_handle(execution_profile(cfg).into_handle());
    if let (Some(u), Some(p)) = (&cfg.username, &cfg.password) {
        builder = builder.user(u.clone(), p.clone());
    }
    builder.build().await.map_err(|e| StoreError::Backend(format!("cannot connect to the CQL nodes {} (scylla.nodes): {e}", cfg.nodes)))
}

/// Requires the keyspace to be at the schema version this build was written for.
async fn check_schema(session: &Session, ks: &str) -> Result<(), StoreError> {
    let r = session
        .query_unpaged(format!("SELECT max(version) FROM {ks}.schema_migrations"), ())
        .await
        .map_err(|e| StoreError::Backend(format!("keyspace {ks} has no govflow schema ({e}); run `govflow migrate`")))?;
    let v: Option<i32> = r.into_rows_result().map_err(be)?.first_row::<(Option<i32>,)>().map_err(be)?.0;
    let want = migrate::MIGRATIONS.last().map_or(0, |m| m.version);
    if v != Some(want) {
        return Err(StoreError::Backend(format!("keyspace {ks} is at schema version {v:?}, this govflow needs {want}; run `govflow migrate`")));
    }
    Ok(())
}

impl Inner {
    /// Connects, migrates the schema when `migrate` is true (else checks its version), and
    /// prepares every statement.
    pub(super) async fn connect(cfg: &ScyllaConfig, migrate: bool) -> Result<Inner, StoreError> {
        let session = session(cfg).await?;
        let ks = cfg.keyspace.as_str();
        if migrate {
            migrate::migrate(&session, ks, &cfg.replication, &cfg.keyspace_options).await?;
        } else {
            check_schema(&session, ks).await?;
        }
        let st = Sts::prepare(&session, ks).await?;
        Ok(Inner {
            session,
            st,
            page_size: cfg.page_size,
            conc: cfg.write_concurrency,
            #[cfg(any(test, feature = "test-utils"))]
            failpoint: std::sync::Mutex::new(None),
        })
    }

    /// Runs one statement, unpaged.
    pub(super) async fn exec(&self, st: &PreparedStatement, v: impl SerializeRow) -> Result<QueryResult, StoreError> {
        self.session.execute_unpaged(st, v).await.map_err(be)
    }

    /// Every row of a (paged) query.
    pub(super) async fn all<R>(&self, st: &PreparedStatement, v: impl SerializeRow) -> Result<Vec<R>, StoreError>
    where
        R: for<'f, 'm> DeserializeRow<'f, 'm> + Send + 'static,
    {
        let mut st = st.clone();
        st.set_page_size(self.page_size);
        let mut rows = self.session.execute_iter(st, v).await.map_err(be)?.rows_stream::<R>().map_err(be)?;
        let mut out = Vec::new();
        while let Some(r) = rows.try_next().await.map_err(be)? {
            out.push(r);
        }
        Ok(out)
    }

    /// The first row of a query, if any.
    pub(super) async fn one<R>(&self, st: &PreparedStatement, v: impl SerializeRow) -> Result<Option<R>, StoreError>
    where
        R: for<'f> DeserializeRow<'f, 'f>,
    {
        let r = self.exec(st, v).await?.into_rows_result().map_err(be)?;
        r.maybe_first_row::<R>().map_err(be)
    }

    /// Whether a lightweight transaction applied.
    pub(super) fn applied(r: QueryResult) -> Result<bool, StoreError> {
        let rows = r.into_rows_result().map_err(be)?;
        let row = rows.first_row::<Row>().map_err(be)?;
        Ok(matches!(row.columns.first(), Some(Some(CqlValue::Boolean(true)))))
    }

    /// Runs futures with bounded concurrency, failing on the first error.
    pub(super) async fn each<'a, T: Send + 'a>(&'a self, futs: Vec<Fut<'a, T>>) -> Result<Vec<T>, StoreError> {
        stream::iter(futs).buffered(self.conc).try_collect().await
    }

    #[cfg(not(any(test, feature = "test-utils")))]
    #[inline(always)]
    pub(super) fn failpoint(&self, _step: &'static str) -> Result<(), StoreError> {
        Ok(())
    }

    /// Fails when the test hook names `step`, as if the process had died right after it.
    #[cfg(any(test, feature = "test-utils"))]
    pub(super) fn failpoint(&self, step: &'static str) -> Result<(), StoreError> {
        if *self.failpoint.lock().unwrap_or_else(|e| e.into_inner()) == Some(step) {
            return Err(StoreError::Backend(format!("failpoint after {step}")));
        }
        Ok(())
    }
}
