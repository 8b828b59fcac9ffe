//! The ScyllaDB backend (any CQL engine; tested on Apache Cassandra 5), with the `scylla` driver.
//!
//! ## Tables
//! `schema/cql/` holds the versioned schema: one table per API read (proposals by id, by status,
//! by proposer, by creation; history by proposal; votes by proposal, by proposal and voter, by
//! voter; voting power by account and block; the outbox, the feed, the listener cursor), plus
//! counter tables for the high-throughput statistics.
//!
//! ## A batch without multi-table transactions
//! CQL has no transaction across tables, so a [`Batch`] is made atomic in effect:
//! 1. the cursor row is marked `pending = from` (the batch in flight);
//! 2. for a reversible batch, the previous value of every row it will write is journaled
//!    (`undo_log`, partition = the batch's first block) before any of them is written;
//! 3. the rows are written; every row write is an idempotent upsert or delete (its key and
//!    value are functions of the chain), so writing it twice changes nothing;
//! 4. vote records are written with `INSERT ... IF NOT EXISTS`; the vote counters move only
//!    for the inserts that were applied, so replays never count twice;
//! 5. the cursor row is written with `pending = null` — this is the commit point.
//!
//! A crash between 1 and 5 leaves `pending` set. The next commit (which restarts from the same
//! cursor) first undoes the journal of the interrupted batch, then reconciles every counter
//! from the vote rows, so a crash can neither leave ghost rows of an orphaned chain nor let a
//! counter drift. Readers may see the rows of a batch before its cursor (read-uncommitted at
//! the edge), never rows the chain does not have once the cursor has passed them.
//!
//! ## Rollback
//! [`Store::rollback`] replays the journals of the undone batches newest first (restoring
//! old values, deleting rows that did not exist, decrementing the counters of vote records it
//! deletes), retracts published events, then moves the cursor back. It is idempotent: when
//! interrupted it is simply run again, and the reconciliation that follows any interrupted
//! operation corrects the counters.
//!
//! ## Consistency and routing
//! Every statement is prepared; the session uses token-aware routing (preferring
//! `scylla.local_datacenter`), the configured consistency (LOCAL_QUORUM by default) and serial
//! consistency for the lightweight transactions, the default retry policy (which retries only
//! what is safe: statements marked idempotent), and optional speculative execution of
//! idempotent statements. Counter updates and lightweight transactions are not idempotent and
//! are never retried or speculated by the driver.
//!
//! The [`Store`] trait is synchronous; this backend runs the driver on its own small tokio
//! runtime and blocks the calling thread (as the embedded backend blocks on disk I/O).

use std::collections::{BTreeMap, HashMap, HashSet};
use std::future::Future;
use std::num::NonZeroUsize;
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
use ::scylla::serialize::row::SerializeRow;
use ::scylla::statement::batch::{Batch as CqlBatch, BatchType};
use ::scylla::statement::prepared::PreparedStatement;
use ::scylla::statement::{Consistency, SerialConsistency};
use ::scylla::value::{Counter, CqlValue, Row};
use futures::stream::{self, StreamExt, TryStreamExt};
use serde::{de::DeserializeOwned, Deserialize, Serialize};

use super::*;
use crate::config::ScyllaConfig;
use crate::domain::achievement::{FeedItem, GovernanceEvent, Streak};
use crate::domain::u256_be;

/// Blocks per outbox partition.
const OUTBOX_BUCKET: u64 = 100_000;
/// Feed items per feed partition.
const FEED_BUCKET: u64 = 100_000;
const CURSOR: &str = "listener";
const FEED: &str = "feed";
/// `pending` value of an interrupted rollback.
const PENDING_ROLLBACK: i64 = -1;

fn be(e: impl std::fmt::Display) -> StoreError {
    StoreError::Backend(e.to_string())
}

fn enc<T: Serialize>(v: &T) -> Vec<u8> {
    bincode::serialize(v).expect("in-memory bincode serialization cannot fail for these types")
}

fn dec<T: DeserializeOwned>(table: &'static str, b: &[u8]) -> Result<T, StoreError> {
    bincode::deserialize(b).map_err(|e| StoreError::Corrupt { table, message: e.to_string() })
}

fn json_dec<T: DeserializeOwned>(table: &'static str, s: &str) -> Result<T, StoreError> {
    serde_json::from_str(s).map_err(|e| StoreError::Corrupt { table, message: e.to_string() })
}

fn i(v: u64) -> i64 {
    v as i64
}

fn parse_consistency(s: &str) -> Option<Consistency> {
    Some(match s.to_ascii_lowercase().as_str() {
        "any" => Consistency::Any,
        "one" => Consistency::One,
        "two" => Consistency::Two,
        "three" => Consistency::Three,
        "quorum" => Consistency::Quorum,
        "all" => Consistency::All,
        "local_quorum" => Consistency::LocalQuorum,
        "each_quorum" => Consistency::EachQuorum,
        "local_one" => Consistency::LocalOne,
        _ => return None,
    })
}

fn parse_serial(s: &str) -> Option<SerialConsistency> {
    Some(match s.to_ascii_lowercase().as_str() {
        "serial" => SerialConsistency::Serial,
        "local_serial" => SerialConsistency::LocalSerial,
        _ => return None,
    })
}

/// A column value of a journaled row.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
enum Val {
    B(Vec<u8>),
    I(i64),
    T(i8),
    S(String),
}

impl Val {
    fn cql(&self) -> CqlValue {
        match self {
            Val::B(b) => CqlValue::Blob(b.clone()),
            Val::I(v) => CqlValue::BigInt(*v),
            Val::T(v) => CqlValue::TinyInt(*v),
            Val::S(s) => CqlValue::Text(s.clone()),
        }
    }
    fn from_cql(c: CqlValue) -> Option<Val> {
        match c {
            CqlValue::Blob(b) => Some(Val::B(b)),
            CqlValue::BigInt(v) => Some(Val::I(v)),
            CqlValue::TinyInt(v) => Some(Val::T(v)),
            CqlValue::Text(s) | CqlValue::Ascii(s) => Some(Val::S(s)),
            _ => None,
        }
    }
}

type Key = Vec<Val>;
type Vals = Vec<Option<Val>>;

/// The tables batches write (and journal), by id.
struct Tbl {
    name: &'static str,
    keys: &'static [&'static str],
    vals: &'static [&'static str],
}

const TABLES: [Tbl; 15] = [
    Tbl { name: "meta", keys: &["name"], vals: &["value"] },
    Tbl { name: "proposals", keys: &["proposal_id"], vals: &["status", "body"] },
    Tbl { name: "proposals_by_status", keys: &["status", "created_block", "proposal_id"], vals: &[] },
    Tbl { name: "proposals_by_proposer", keys: &["proposer", "created_block", "proposal_id"], vals: &[] },
    Tbl { name: "proposals_by_created", keys: &["bucket", "created_block", "proposal_id"], vals: &[] },
    Tbl { name: "proposal_history", keys: &["proposal_id", "block_number", "status"], vals: &["body"] },
    Tbl { name: "votes_by_proposal", keys: &["proposal_id", "block_number", "log_index"], vals: &["voter", "support", "day", "body"] },
    Tbl { name: "votes_by_proposal_voter", keys: &["proposal_id", "voter", "block_number", "log_index"], vals: &[] },
    Tbl { name: "votes_by_voter", keys: &["voter", "block_number", "log_index"], vals: &["proposal_id"] },
    Tbl { name: "voting_power", keys: &["account", "block_number"], vals: &["ts", "body"] },
    Tbl { name: "account_latest", keys: &["account"], vals: &["block_number", "body"] },
    Tbl { name: "timelock_operations", keys: &["id"], vals: &["body"] },
    Tbl { name: "outbox", keys: &["bucket", "event_key"], vals: &["body"] },
    Tbl { name: "outbox_by_account", keys: &["account", "event_key"], vals: &[] },
    Tbl { name: "participation_streaks", keys: &["voter"], vals: &["body"] },
];
const T_META: u8 = 0;
const T_PROPOSALS: u8 = 1;
const T_BY_STATUS: u8 = 2;
const T_BY_PROPOSER: u8 = 3;
const T_BY_CREATED: u8 = 4;
const T_HISTORY: u8 = 5;
const T_VOTES: u8 = 6;
const T_VOTES_BY_PV: u8 = 7;
const T_VOTES_BY_VOTER: u8 = 8;
const T_POWER: u8 = 9;
const T_ACCOUNT: u8 = 10;
const T_TIMELOCK: u8 = 11;
const T_OUTBOX: u8 = 12;
const T_OUTBOX_BY_ACCOUNT: u8 = 13;
const T_STREAKS: u8 = 14;

/// Prepared statements of one table.
struct TblSt {
    insert: PreparedStatement,
    delete: PreparedStatement,
    select: PreparedStatement,
}

/// Every prepared statement.
struct Sts {
    tables: Vec<TblSt>,
    vote_insert_lwt: PreparedStatement,
    vote_delete_lwt: PreparedStatement,
    cursor_get: PreparedStatement,
    cursor_pending: PreparedStatement,
    cursor_set: PreparedStatement,
    block_put: PreparedStatement,
    block_get: PreparedStatement,
    blocks_all: PreparedStatement,
    blocks_delete_from: PreparedStatement,
    blocks_delete_below: PreparedStatement,
    batches_all: PreparedStatement,
    batch_put: PreparedStatement,
    batch_delete: PreparedStatement,
    undo_put: PreparedStatement,
    undo_get: PreparedStatement,
    undo_delete: PreparedStatement,
    by_status: PreparedStatement,
    by_status_count: PreparedStatement,
    by_proposer: PreparedStatement,
    by_created: PreparedStatement,
    history: PreparedStatement,
    votes_asc: PreparedStatement,
    votes_desc: PreparedStatement,
    votes_all: PreparedStatement,
    votes_scan: PreparedStatement,
    vote_of_voter: PreparedStatement,
    voter_asc: PreparedStatement,
    voter_desc: PreparedStatement,
    power_at_block: PreparedStatement,
    power_desc: PreparedStatement,
    accounts_all: PreparedStatement,
    accounts_count: PreparedStatement,
    outbox_range: PreparedStatement,
    outbox_by_account: PreparedStatement,
    published_put: PreparedStatement,
    published_get: PreparedStatement,
    published_after: PreparedStatement,
    published_delete: PreparedStatement,
    feed_put: PreparedStatement,
    feed_from: PreparedStatement,
    feed_state_get: PreparedStatement,
    feed_state_set: PreparedStatement,
    pc_add: PreparedStatement,
    pc_get: PreparedStatement,
    pc_all: PreparedStatement,
    vc_add: PreparedStatement,
    vc_get: PreparedStatement,
    vc_all: PreparedStatement,
    dc_add: PreparedStatement,
    dc_all: PreparedStatement,
    gc_add: PreparedStatement,
    gc_all: PreparedStatement,
}

struct Inner {
    session: Session,
    st: Sts,
    page_size: i32,
    conc: usize,
    /// Fault injection for tests: the commit step after which a commit stops as if the process
    /// had died (`journal`, `rows`, `votes`, `counters`).
    #[cfg(any(test, feature = "test-utils"))]
    failpoint: std::sync::Mutex<Option<&'static str>>,
}

/// The ScyllaDB store.
pub struct ScyllaStore {
    inner: Option<Arc<Inner>>,
    rt: Option<tokio::runtime::Runtime>,
    keyspace: String,
}

impl Drop for ScyllaStore {
    fn drop(&mut self) {
        if let Some(rt) = self.rt.take() {
            {
                let _g = rt.enter();
                self.inner.take();
            }
            rt.shutdown_background();
        }
    }
}

/// Runs `f` on `rt` and blocks this thread until it is done. The wait is a plain channel
/// receive, not a poll of the task's `JoinHandle`: polled from inside a tokio task whose
/// cooperative budget is spent, a `JoinHandle` answers "pending" and wakes itself at once, so a
/// polling loop would spin forever. Async code does not get here anyway: it calls the store
/// through `store::off_thread`.
fn block_on_runtime<T: Send + 'static>(rt: &tokio::runtime::Handle, f: impl Future<Output = T> + Send + 'static) -> Result<T, StoreError> {
    let (tx, rx) = std::sync::mpsc::sync_channel(1);
    rt.spawn(async move {
        let _ = tx.send(f.await);
    });
    rx.recv().map_err(|_| StoreError::Backend("the CQL task ended without an answer (runtime shut down?)".into()))
}

/// The cursor row.
#[derive(Clone, Copy, Debug, Default)]
struct CursorRow {
    cursor: Option<Cursor>,
    events: u64,
    first_block: Option<u64>,
    pending: Option<i64>,
}

/// Vote counter deltas, aggregated before they are sent.
#[derive(Default)]
struct Deltas {
    /// proposal -> [votes, against, for, abstain, other]
    proposals: HashMap<Vec<u8>, [i64; 5]>,
    voters: HashMap<Vec<u8>, i64>,
    days: HashMap<String, i64>,
    global: HashMap<&'static str, i64>,
}

impl Deltas {
    fn vote(&mut self, pid: &[u8], voter: &[u8], support: i8, day: &str, d: i64) {
        let p = self.proposals.entry(pid.to_vec()).or_default();
        p[0] += d;
        p[support_column(support)] += d;
        *self.voters.entry(voter.to_vec()).or_default() += d;
        *self.days.entry(day.to_string()).or_default() += d;
        *self.global.entry("votes").or_default() += d;
    }
}

fn support_column(support: i8) -> usize {
    match support {
        0 => 1,
        1 => 2,
        2 => 3,
        _ => 4,
    }
}

/// Writes of one batch: the last write of a key wins, keys keep their first-write order.
#[derive(Default)]
struct Staged {
    order: Vec<(u8, Key)>,
    rows: HashMap<(u8, Key), Option<Vals>>,
}

impl Staged {
    fn put(&mut self, t: u8, k: Key, v: Vals) {
        self.set(t, k, Some(v));
    }
    fn del(&mut self, t: u8, k: Key) {
        self.set(t, k, None);
    }
    fn set(&mut self, t: u8, k: Key, v: Option<Vals>) {
        let key = (t, k);
        if !self.rows.contains_key(&key) {
            self.order.push(key.clone());
        }
        self.rows.insert(key, v);
    }
}

fn b(v: &[u8]) -> Val {
    Val::B(v.to_vec())
}

fn some(v: Val) -> Option<Val> {
    Some(v)
}

fn outbox_bucket(block: u64) -> i64 {
    i(block / OUTBOX_BUCKET)
}

fn event_block(key: &[u8]) -> u64 {
    key.get(..8).and_then(|k| k.try_into().ok()).map_or(0, u64::from_be_bytes)
}

fn bind(vals: impl IntoIterator<Item = Option<Val>>) -> Vec<Option<CqlValue>> {
    vals.into_iter().map(|v| v.map(|v| v.cql())).collect()
}

impl ScyllaStore {
    /// Connects to the cluster, applies migrations when `migrate` is true (else requires the
    /// schema to be there), and prepares every statement.
    pub fn connect(cfg: &ScyllaConfig, migrate: bool) -> Result<Self, StoreError> {
        let problems = cfg.problems();
        if !problems.is_empty() {
            return Err(StoreError::Backend(problems.into_iter().map(|(k, m)| format!("{k}: {m}")).collect::<Vec<_>>().join("; ")));
        }
        let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).thread_name("govflow-cql").enable_all().build().map_err(be)?;
        let cfg2 = cfg.clone();
        let inner = block_on_runtime(rt.handle(), async move { Self::connect_async(&cfg2, migrate).await })??;
        Ok(ScyllaStore { inner: Some(Arc::new(inner)), rt: Some(rt), keyspace: cfg.keyspace.clone() })
    }

    /// Applies the schema migrations only (for `govflow migrate`).
    pub fn migrate(cfg: &ScyllaConfig) -> Result<Vec<super::migrate::Applied>, StoreError> {
        let problems = cfg.problems();
        if !problems.is_empty() {
            return Err(StoreError::Backend(problems.into_iter().map(|(k, m)| format!("{k}: {m}")).collect::<Vec<_>>().join("; ")));
        }
        let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(1).enable_all().build().map_err(be)?;
        let cfg = cfg.clone();
        rt.block_on(async move {
            let session = Self::session(&cfg).await?;
            super::migrate::migrate(&session, &cfg.keyspace, &cfg.replication, &cfg.keyspace_options).await
        })
    }

    /// The keyspace.
    pub fn keyspace(&self) -> &str {
        &self.keyspace
    }

    async fn session(cfg: &ScyllaConfig) -> Result<Session, StoreError> {
        let consistency = parse_consistency(&cfg.consistency).unwrap_or(Consistency::LocalQuorum);
        let serial = parse_serial(&cfg.serial_consistency).unwrap_or(SerialConsistency::LocalSerial);
        let mut lb = DefaultPolicy::builder().token_aware(true).permit_dc_failover(false);
        if let Some(dc) = &cfg.local_datacenter {
            lb = lb.prefer_datacenter(dc.clone());
        }
        let retry: Arc<dyn RetryPolicy> = match cfg.retry_policy.as_str() {
            "none" => Arc::new(FallthroughRetryPolicy::new()),
            _ => Arc::new(DefaultRetryPolicy::new()),
        };
        let mut profile = ExecutionProfile::builder()
            .consistency(consistency)
            .serial_consistency(Some(serial))
            .request_timeout(Some(Duration::from_millis(cfg.request_timeout_ms)))
            .load_balancing_policy(lb.build())
            .retry_policy(retry);
        if cfg.speculative_retries > 0 {
            profile = profile.speculative_execution_policy(Some(Arc::new(SimpleSpeculativeExecutionPolicy {
                max_retry_count: cfg.speculative_retries,
                retry_interval: Duration::from_millis(cfg.speculative_delay_ms),
            })));
        }
        let nodes: Vec<&str> = cfg.nodes.split(',').map(str::trim).filter(|n| !n.is_empty()).collect();
        let mut builder = SessionBuilder::new()
            .known_nodes(&nodes)
            .connection_timeout(Duration::from_millis(cfg.connect_timeout_ms))
            .pool_size(PoolSize::PerHost(NonZeroUsize::new(cfg.connections_per_node.max(1)).unwrap_or(NonZeroUsize::MIN)))
            .default_execution_profile_handle(profile.build().into_handle());
        if let (Some(u), Some(p)) = (&cfg.username, &cfg.password) {
            builder = builder.user(u.clone(), p.clone());
        }
        builder.build().await.map_err(|e| StoreError::Backend(format!("cannot connect to the CQL nodes {} (scylla.nodes): {e}", cfg.nodes)))
    }

    async fn connect_async(cfg: &ScyllaConfig, migrate: bool) -> Result<Inner, StoreError> {
        let session = Self::session(cfg).await?;
        let ks = cfg.keyspace.as_str();
        if migrate {
            super::migrate::migrate(&session, ks, &cfg.replication, &cfg.keyspace_options).await?;
        } else {
            let r = session
                .query_unpaged(format!("SELECT max(version) FROM {ks}.schema_migrations"), ())
                .await
                .map_err(|e| StoreError::Backend(format!("keyspace {ks} has no govflow schema ({e}); run `govflow migrate`")))?;
            let v: Option<i32> = r.into_rows_result().map_err(be)?.first_row::<(Option<i32>,)>().map_err(be)?.0;
            let want = super::migrate::MIGRATIONS.last().map_or(0, |m| m.version);
            if v != Some(want) {
                return Err(StoreError::Backend(format!("keyspace {ks} is at schema version {v:?}, this govflow needs {want}; run `govflow migrate`")));
            }
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

    /// Test hook: the next commits stop right after step `step` (`journal`, `rows`, `votes`,
    /// `counters`) and fail, leaving the store as a crash at that point would.
    #[cfg(any(test, feature = "test-utils"))]
    pub fn set_failpoint(&self, step: Option<&'static str>) {
        *self.inner().failpoint.lock().unwrap_or_else(|e| e.into_inner()) = step;
    }

    fn inner(&self) -> &Arc<Inner> {
        self.inner.as_ref().expect("the store's session lives until drop")
    }

    /// Runs `f` on the store's runtime and waits for it.
    fn run<T: Send + 'static>(
        &self,
        f: impl FnOnce(Arc<Inner>) -> std::pin::Pin<Box<dyn Future<Output = Result<T, StoreError>> + Send>>,
    ) -> Result<T, StoreError> {
        let inner = self.inner().clone();
        let rt = self.rt.as_ref().expect("runtime lives until drop");
        block_on_runtime(rt.handle(), f(inner))?
    }
}

impl Sts {
    async fn prepare(s: &Session, ks: &str) -> Result<Sts, StoreError> {
        let p = |cql: String, idempotent: bool| async move {
            let mut st = s.prepare(cql.clone()).await.map_err(|e| StoreError::Backend(format!("preparing {cql}: {e}")))?;
            st.set_is_idempotent(idempotent);
            Ok::<_, StoreError>(st)
        };
        let mut tables = Vec::new();
        for t in &TABLES {
            let cols: Vec<&str> = t.keys.iter().chain(t.vals.iter()).copied().collect();
            let marks = vec!["?"; cols.len()].join(", ");
            let wh = t.keys.iter().map(|k| format!("{k} = ?")).collect::<Vec<_>>().join(" AND ");
            let sel_cols = if t.vals.is_empty() { t.keys.join(", ") } else { t.vals.join(", ") };
            tables.push(TblSt {
                insert: p(format!("INSERT INTO {ks}.{} ({}) VALUES ({marks})", t.name, cols.join(", ")), true).await?,
                delete: p(format!("DELETE FROM {ks}.{} WHERE {wh}", t.name), true).await?,
                select: p(format!("SELECT {sel_cols} FROM {ks}.{} WHERE {wh}", t.name), true).await?,
            });
        }
        Ok(Sts {
            tables,
            vote_insert_lwt: p(format!("INSERT INTO {ks}.votes_by_proposal (proposal_id, block_number, log_index, voter, support, day, body) VALUES (?, ?, ?, ?, ?, ?, ?) IF NOT EXISTS"), false).await?,
            vote_delete_lwt: p(format!("DELETE FROM {ks}.votes_by_proposal WHERE proposal_id = ? AND block_number = ? AND log_index = ? IF EXISTS"), false).await?,
            cursor_get: p(format!("SELECT block_number, block_hash, events, first_block, pending FROM {ks}.listener_cursors WHERE name = ?"), true).await?,
            cursor_pending: p(format!("UPDATE {ks}.listener_cursors SET pending = ? WHERE name = ?"), true).await?,
            cursor_set: p(format!("UPDATE {ks}.listener_cursors SET block_number = ?, block_hash = ?, events = ?, first_block = ?, pending = null WHERE name = ?"), true).await?,
            block_put: p(format!("INSERT INTO {ks}.blocks (bucket, number, hash, parent_hash, ts) VALUES (0, ?, ?, ?, ?)"), true).await?,
            block_get: p(format!("SELECT number, hash, parent_hash, ts FROM {ks}.blocks WHERE bucket = 0 AND number = ?"), true).await?,
            blocks_all: p(format!("SELECT number, hash, parent_hash, ts FROM {ks}.blocks WHERE bucket = 0"), true).await?,
            blocks_delete_from: p(format!("DELETE FROM {ks}.blocks WHERE bucket = 0 AND number >= ?"), true).await?,
            blocks_delete_below: p(format!("DELETE FROM {ks}.blocks WHERE bucket = 0 AND number < ?"), true).await?,
            batches_all: p(format!("SELECT from_block, to_block, events_before FROM {ks}.reversible_batches WHERE bucket = 0"), true).await?,
            batch_put: p(format!("INSERT INTO {ks}.reversible_batches (bucket, from_block, to_block, events_before) VALUES (0, ?, ?, ?)"), true).await?,
            batch_delete: p(format!("DELETE FROM {ks}.reversible_batches WHERE bucket = 0 AND from_block = ?"), true).await?,
            undo_put: p(format!("INSERT INTO {ks}.undo_log (batch_from, seq, tbl, row_key, old_value) VALUES (?, ?, ?, ?, ?)"), true).await?,
            undo_get: p(format!("SELECT seq, tbl, row_key, old_value FROM {ks}.undo_log WHERE batch_from = ?"), true).await?,
            undo_delete: p(format!("DELETE FROM {ks}.undo_log WHERE batch_from = ?"), true).await?,
            by_status: p(format!("SELECT proposal_id FROM {ks}.proposals_by_status WHERE status = ?"), true).await?,
            by_status_count: p(format!("SELECT COUNT(*) FROM {ks}.proposals_by_status WHERE status = ?"), true).await?,
            by_proposer: p(format!("SELECT proposal_id FROM {ks}.proposals_by_proposer WHERE proposer = ?"), true).await?,
            by_created: p(format!("SELECT proposal_id FROM {ks}.proposals_by_created WHERE bucket = 0"), true).await?,
            history: p(format!("SELECT body FROM {ks}.proposal_history WHERE proposal_id = ?"), true).await?,
            votes_asc: p(format!("SELECT block_number, log_index, support, body FROM {ks}.votes_by_proposal WHERE proposal_id = ? AND (block_number, log_index) > (?, ?)"), true).await?,
            votes_desc: p(format!("SELECT block_number, log_index, support, body FROM {ks}.votes_by_proposal WHERE proposal_id = ? AND (block_number, log_index) < (?, ?) ORDER BY block_number DESC, log_index DESC"), true).await?,
            votes_all: p(format!("SELECT block_number, log_index, voter, support, day FROM {ks}.votes_by_proposal WHERE proposal_id = ?"), true).await?,
            votes_scan: p(format!("SELECT proposal_id, voter, support, day FROM {ks}.votes_by_proposal"), true).await?,
            vote_of_voter: p(format!("SELECT block_number, log_index FROM {ks}.votes_by_proposal_voter WHERE proposal_id = ? AND voter = ? ORDER BY voter DESC, block_number DESC, log_index DESC LIMIT 1"), true).await?,
            voter_asc: p(format!("SELECT block_number, log_index, proposal_id FROM {ks}.votes_by_voter WHERE voter = ? AND (block_number, log_index) > (?, ?) LIMIT ?"), true).await?,
            voter_desc: p(format!("SELECT block_number, log_index, proposal_id FROM {ks}.votes_by_voter WHERE voter = ? AND (block_number, log_index) < (?, ?) ORDER BY block_number DESC, log_index DESC LIMIT ?"), true).await?,
            power_at_block: p(format!("SELECT body FROM {ks}.voting_power WHERE account = ? AND block_number <= ? ORDER BY block_number DESC LIMIT 1"), true).await?,
            power_desc: p(format!("SELECT ts, body FROM {ks}.voting_power WHERE account = ? ORDER BY block_number DESC"), true).await?,
            accounts_all: p(format!("SELECT account, body FROM {ks}.account_latest"), true).await?,
            accounts_count: p(format!("SELECT account FROM {ks}.account_latest"), true).await?,
            outbox_range: p(format!("SELECT event_key, body FROM {ks}.outbox WHERE bucket = ? AND event_key > ? AND event_key < ?"), true).await?,
            outbox_by_account: p(format!("SELECT event_key FROM {ks}.outbox_by_account WHERE account = ?"), true).await?,
            published_put: p(format!("INSERT INTO {ks}.published_events (bucket, event_key, body) VALUES (?, ?, ?)"), true).await?,
            published_get: p(format!("SELECT body FROM {ks}.published_events WHERE bucket = ? AND event_key = ?"), true).await?,
            published_after: p(format!("SELECT event_key, body FROM {ks}.published_events WHERE bucket = ? AND event_key >= ?"), true).await?,
            published_delete: p(format!("DELETE FROM {ks}.published_events WHERE bucket = ? AND event_key = ?"), true).await?,
            feed_put: p(format!("INSERT INTO {ks}.feed (bucket, seq, body) VALUES (?, ?, ?)"), true).await?,
            feed_from: p(format!("SELECT seq, body FROM {ks}.feed WHERE bucket = ? AND seq > ? LIMIT ?"), true).await?,
            feed_state_get: p(format!("SELECT seq, published_through FROM {ks}.feed_state WHERE name = ?"), true).await?,
            feed_state_set: p(format!("INSERT INTO {ks}.feed_state (name, seq, published_through) VALUES (?, ?, ?)"), true).await?,
            pc_add: p(format!("UPDATE {ks}.proposal_vote_counters SET votes = votes + ?, against_votes = against_votes + ?, for_votes = for_votes + ?, abstain_votes = abstain_votes + ?, other_votes = other_votes + ? WHERE proposal_id = ?"), false).await?,
            pc_get: p(format!("SELECT votes, against_votes, for_votes, abstain_votes, other_votes FROM {ks}.proposal_vote_counters WHERE proposal_id = ?"), true).await?,
            pc_all: p(format!("SELECT proposal_id, votes, against_votes, for_votes, abstain_votes, other_votes FROM {ks}.proposal_vote_counters"), true).await?,
            vc_add: p(format!("UPDATE {ks}.voter_vote_counters SET votes = votes + ? WHERE voter = ?"), false).await?,
            vc_get: p(format!("SELECT votes FROM {ks}.voter_vote_counters WHERE voter = ?"), true).await?,
            vc_all: p(format!("SELECT voter, votes FROM {ks}.voter_vote_counters"), true).await?,
            dc_add: p(format!("UPDATE {ks}.daily_vote_counters SET votes = votes + ? WHERE bucket = 0 AND day = ?"), false).await?,
            dc_all: p(format!("SELECT day, votes FROM {ks}.daily_vote_counters WHERE bucket = 0"), true).await?,
            gc_add: p(format!("UPDATE {ks}.global_counters SET value = value + ? WHERE name = ?"), false).await?,
            gc_all: p(format!("SELECT name, value FROM {ks}.global_counters"), true).await?,
        })
    }
}

type Fut<'a, T> = std::pin::Pin<Box<dyn Future<Output = Result<T, StoreError>> + Send + 'a>>;

impl Inner {
    async fn exec(&self, st: &PreparedStatement, v: impl SerializeRow) -> Result<::scylla::response::query_result::QueryResult, StoreError> {
        self.session.execute_unpaged(st, v).await.map_err(be)
    }

    /// Every row of a (paged) query.
    async fn all<R>(&self, st: &PreparedStatement, v: impl SerializeRow) -> Result<Vec<R>, StoreError>
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
    async fn one<R>(&self, st: &PreparedStatement, v: impl SerializeRow) -> Result<Option<R>, StoreError>
    where
        R: for<'f> DeserializeRow<'f, 'f>,
    {
        let r = self.exec(st, v).await?.into_rows_result().map_err(be)?;
        r.maybe_first_row::<R>().map_err(be)
    }

    /// Whether a lightweight transaction applied.
    fn applied(r: ::scylla::response::query_result::QueryResult) -> Result<bool, StoreError> {
        let rows = r.into_rows_result().map_err(be)?;
        let row = rows.first_row::<Row>().map_err(be)?;
        Ok(matches!(row.columns.first(), Some(Some(CqlValue::Boolean(true)))))
    }

    async fn cursor_row(&self) -> Result<CursorRow, StoreError> {
        type R = (Option<i64>, Option<Vec<u8>>, Option<i64>, Option<i64>, Option<i64>);
        let Some((blk, hash, events, first, pending)) = self.one::<R>(&self.st.cursor_get, (CURSOR,)).await? else {
            return Ok(CursorRow::default());
        };
        let cursor = match (blk, hash) {
            (Some(n), Some(h)) => Some(Cursor { block: n as u64, hash: B256::from_slice(&h).unwrap_or_default() }),
            _ => None,
        };
        Ok(CursorRow { cursor, events: events.unwrap_or(0) as u64, first_block: first.map(|f| f as u64), pending })
    }

    async fn set_cursor(&self, c: Option<Cursor>, events: u64, first: Option<u64>) -> Result<(), StoreError> {
        let (n, h) = match c {
            Some(c) => (Some(i(c.block)), Some(c.hash.0.to_vec())),
            None => (None, None),
        };
        self.exec(&self.st.cursor_set, (n, h, i(events), first.map(i), CURSOR)).await?;
        Ok(())
    }

    async fn select_row(&self, t: u8, k: &Key) -> Result<Option<Vals>, StoreError> {
        let r = self.exec(&self.st.tables[t as usize].select, bind(k.iter().cloned().map(Some))).await?;
        let rows = r.into_rows_result().map_err(be)?;
        match rows.maybe_first_row::<Row>().map_err(be)? {
            None => Ok(None),
            Some(row) if TABLES[t as usize].vals.is_empty() => {
                let _ = row;
                Ok(Some(vec![]))
            }
            Some(row) => Ok(Some(row.columns.into_iter().map(|c| c.and_then(Val::from_cql)).collect())),
        }
    }

    async fn write_row(&self, t: u8, k: &Key, v: &Option<Vals>) -> Result<(), StoreError> {
        let ts = &self.st.tables[t as usize];
        match v {
            Some(v) => self.exec(&ts.insert, bind(k.iter().cloned().map(Some).chain(v.iter().cloned()))).await?,
            None => self.exec(&ts.delete, bind(k.iter().cloned().map(Some))).await?,
        };
        Ok(())
    }

    /// Runs futures with bounded concurrency, failing on the first error.
    async fn each<'a, T: Send + 'a>(&'a self, futs: Vec<Fut<'a, T>>) -> Result<Vec<T>, StoreError> {
        stream::iter(futs).buffered(self.conc).try_collect().await
    }

    async fn apply_deltas(&self, d: Deltas) -> Result<(), StoreError> {
        let mut futs: Vec<Fut<'_, ()>> = Vec::new();
        for (pid, c) in d.proposals {
            if c.iter().all(|x| *x == 0) {
                continue;
            }
            futs.push(Box::pin(async move {
                self.exec(&self.st.pc_add, (Counter(c[0]), Counter(c[1]), Counter(c[2]), Counter(c[3]), Counter(c[4]), pid)).await.map(|_| ())
            }));
        }
        for (voter, n) in d.voters.into_iter().filter(|(_, n)| *n != 0) {
            futs.push(Box::pin(async move { self.exec(&self.st.vc_add, (Counter(n), voter)).await.map(|_| ()) }));
        }
        for (day, n) in d.days.into_iter().filter(|(_, n)| *n != 0) {
            futs.push(Box::pin(async move { self.exec(&self.st.dc_add, (Counter(n), day)).await.map(|_| ()) }));
        }
        for (name, n) in d.global.into_iter().filter(|(_, n)| *n != 0) {
            futs.push(Box::pin(async move { self.exec(&self.st.gc_add, (Counter(n), name)).await.map(|_| ()) }));
        }
        self.each(futs).await?;
        Ok(())
    }

    #[cfg(not(any(test, feature = "test-utils")))]
    #[inline(always)]
    fn failpoint(&self, _step: &'static str) -> Result<(), StoreError> {
        Ok(())
    }

    #[cfg(any(test, feature = "test-utils"))]
    fn failpoint(&self, step: &'static str) -> Result<(), StoreError> {
        if *self.failpoint.lock().unwrap_or_else(|e| e.into_inner()) == Some(step) {
            return Err(StoreError::Backend(format!("failpoint after {step}")));
        }
        Ok(())
    }

    /// Writes rows of one partition: one statement, or an unlogged batch of them.
    async fn write_group(&self, rows: Vec<(u8, &Key, &Option<Vals>)>) -> Result<(), StoreError> {
        if let [(t, k, v)] = rows.as_slice() {
            return self.write_row(*t, k, v).await;
        }
        let mut batch = CqlBatch::new(BatchType::Unlogged);
        batch.set_is_idempotent(true);
        let mut values: Vec<Vec<Option<CqlValue>>> = Vec::with_capacity(rows.len());
        for (t, k, v) in &rows {
            let ts = &self.st.tables[*t as usize];
            match v {
                Some(v) => {
                    batch.append_statement(ts.insert.clone());
                    values.push(bind(k.iter().cloned().map(Some).chain(v.iter().cloned())));
                }
                None => {
                    batch.append_statement(ts.delete.clone());
                    values.push(bind(k.iter().cloned().map(Some)));
                }
            }
        }
        self.session.batch(&batch, &values).await.map_err(be)?;
        Ok(())
    }

    /// Inserts vote records of one proposal that are not there yet, with one conditional
    /// batch; when some exist the batch applies nothing and names them, and the others are
    /// sent again. Returns the records this call inserted.
    async fn insert_votes_once<'v>(&self, votes: Vec<&'v Vote>) -> Result<Vec<&'v Vote>, StoreError> {
        let mut todo = votes;
        let mut inserted = Vec::new();
        while !todo.is_empty() {
            let values: Vec<_> = todo
                .iter()
                .map(|v| {
                    (u256_be(&v.proposal_id).to_vec(), i(v.block_number), i(v.log_index), v.voter.0.to_vec(), v.support as i8, utc_day(v.timestamp), enc(*v))
                })
                .collect();
            let r = if todo.len() == 1 {
                self.exec(&self.st.vote_insert_lwt, &values[0]).await?
            } else {
                let mut batch = CqlBatch::new(BatchType::Unlogged);
                for _ in &todo {
                    batch.append_statement(self.st.vote_insert_lwt.clone());
                }
                self.session.batch(&batch, &values).await.map_err(be)?
            };
            let rows = r.into_rows_result().map_err(be)?;
            let ok = matches!(rows.first_row::<Row>().map_err(be)?.columns.first(), Some(Some(CqlValue::Boolean(true))));
            if ok {
                inserted.append(&mut todo);
                break;
            }
            let specs = rows.column_specs();
            let (Some((bi, _)), Some((li, _))) = (specs.get_by_name("block_number"), specs.get_by_name("log_index")) else {
                return Err(StoreError::Backend("a conditional vote batch did not apply and named no existing row".into()));
            };
            let mut have: HashSet<(i64, i64)> = HashSet::new();
            for row in rows.rows::<Row>().map_err(be)? {
                let row = row.map_err(be)?;
                if let (Some(Some(CqlValue::BigInt(b_))), Some(Some(CqlValue::BigInt(l)))) = (row.columns.get(bi), row.columns.get(li)) {
                    have.insert((*b_, *l));
                }
            }
            let before = todo.len();
            todo.retain(|v| !have.contains(&(i(v.block_number), i(v.log_index))));
            if todo.len() == before {
                return Err(StoreError::Backend("a conditional vote batch did not apply but every row is new".into()));
            }
        }
        Ok(inserted)
    }

    async fn voter_count(&self, voter: &[u8]) -> Result<i64, StoreError> {
        Ok(self.one::<(Option<Counter>,)>(&self.st.vc_get, (voter,)).await?.and_then(|r| r.0).map_or(0, |c| c.0))
    }

    async fn commit(&self, batch: &Batch) -> Result<(), StoreError> {
        let cur = self.cursor_row().await?;
        if let Some(c) = cur.cursor {
            if batch.from != c.block + 1 {
                return Err(StoreError::Backend(format!("batch starts at block {} but the cursor is at {}", batch.from, c.block)));
            }
        }
        let interrupted = cur.pending.is_some();
        if let Some(p) = cur.pending {
            tracing::warn!(target: "store", pending = p, "the previous write was interrupted; undoing its journal, then reconciling the counters");
            self.undo_stale(cur.cursor.map(|c| c.block)).await?;
        }
        self.exec(&self.st.cursor_pending, (i(batch.from), CURSOR)).await?;

        // Stage every row write (reads see earlier staged proposal rows).
        let mut st = Staged::default();
        let mut statuses: HashMap<[u8; 32], Option<i8>> = HashMap::new();
        let mut votes: Vec<&Vote> = Vec::new();
        let mut vote_keys: HashSet<Key> = HashSet::new();
        let mut accounts: Vec<Address> = Vec::new();
        let mut seen_accounts: HashSet<Address> = HashSet::new();
        for m in &batch.mutations {
            match m {
                Mutation::Proposal(p) => {
                    let id = u256_be(&p.proposal_id);
                    let old = match statuses.get(&id) {
                        Some(s) => *s,
                        None => match self.select_row(T_PROPOSALS, &vec![b(&id)]).await? {
                            Some(v) => match v.first() {
                                Some(Some(Val::T(s))) => Some(*s),
                                _ => None,
                            },
                            None => None,
                        },
                    };
                    let created = Val::I(i(p.created.block_number));
                    let new = p.status as u8 as i8;
                    match old {
                        Some(o) if o != new => {
                            st.del(T_BY_STATUS, vec![Val::T(o), created.clone(), b(&id)]);
                            st.put(T_BY_STATUS, vec![Val::T(new), created.clone(), b(&id)], vec![]);
                        }
                        Some(_) => {}
                        None => {
                            st.put(T_BY_STATUS, vec![Val::T(new), created.clone(), b(&id)], vec![]);
                            st.put(T_BY_CREATED, vec![Val::I(0), created.clone(), b(&id)], vec![]);
                            st.put(T_BY_PROPOSER, vec![b(&p.proposer.0), created.clone(), b(&id)], vec![]);
                        }
                    }
                    st.put(T_PROPOSALS, vec![b(&id)], vec![some(Val::T(new)), some(Val::B(enc(p.as_ref())))]);
                    statuses.insert(id, Some(new));
                }
                Mutation::History(h) => {
                    let k = vec![b(&u256_be(&h.proposal_id)), Val::I(i(h.block_number)), Val::T(h.status as u8 as i8)];
                    st.put(T_HISTORY, k, vec![some(Val::B(enc(h)))]);
                }
                Mutation::Vote(v) => {
                    let pid = u256_be(&v.proposal_id);
                    let k = vec![b(&pid), Val::I(i(v.block_number)), Val::I(i(v.log_index))];
                    if vote_keys.insert(k) {
                        votes.push(v.as_ref());
                    }
                    st.put(T_VOTES_BY_VOTER, vec![b(&v.voter.0), Val::I(i(v.block_number)), Val::I(i(v.log_index))], vec![some(b(&pid))]);
                    st.put(T_VOTES_BY_PV, vec![b(&pid), b(&v.voter.0), Val::I(i(v.block_number)), Val::I(i(v.log_index))], vec![]);
                }
                Mutation::Account { account, power } => {
                    let body = enc(power);
                    st.put(T_POWER, vec![b(&account.0), Val::I(i(power.block_number))], vec![some(Val::I(i(power.timestamp))), some(Val::B(body.clone()))]);
                    st.put(T_ACCOUNT, vec![b(&account.0)], vec![some(Val::I(i(power.block_number))), some(Val::B(body))]);
                    if seen_accounts.insert(*account) {
                        accounts.push(*account);
                    }
                }
                Mutation::TimelockOp(op) => st.put(T_TIMELOCK, vec![b(&op.id.0)], vec![some(Val::B(enc(op.as_ref())))]),
                Mutation::Info(info) => st.put(T_META, vec![Val::S("info".into())], vec![some(Val::B(enc(info.as_ref())))]),
                Mutation::Outbox { event, achievement } => {
                    let k = event.key();
                    if *achievement {
                        st.put(T_OUTBOX_BY_ACCOUNT, vec![b(&event.account.0), b(&k)], vec![]);
                    }
                    let body = serde_json::to_string(event.as_ref()).unwrap_or_default();
                    st.put(T_OUTBOX, vec![Val::I(outbox_bucket(event.block_number)), b(&k)], vec![some(Val::S(body))]);
                }
                Mutation::Streak { voter, streak } => st.put(T_STREAKS, vec![b(&voter.0)], vec![some(Val::B(enc(streak)))]),
            }
        }

        // Reads the counters depend on, before anything is written.
        let mut voters: Vec<Vec<u8>> = votes.iter().map(|v| v.voter.0.to_vec()).collect();
        voters.sort();
        voters.dedup();
        let futs: Vec<Fut<'_, (Vec<u8>, i64)>> = voters
            .into_iter()
            .map(|v| -> Fut<'_, (Vec<u8>, i64)> {
                Box::pin(async move {
                    let n = self.voter_count(&v).await?;
                    Ok((v, n))
                })
            })
            .collect();
        let voter_before: HashMap<Vec<u8>, i64> = self.each(futs).await?.into_iter().collect();
        let futs: Vec<Fut<'_, bool>> =
            accounts.iter().map(|a| -> Fut<'_, bool> { Box::pin(async move { Ok(self.select_row(T_ACCOUNT, &vec![b(&a.0)]).await?.is_none()) }) }).collect();
        let new_accounts = self.each(futs).await?.into_iter().filter(|n| *n).count() as i64;

        // Write-ahead journal of a reversible batch.
        let mut insert_votes: Vec<&Vote> = votes.clone();
        if batch.reversible {
            let keys: Vec<(u8, Key)> = st.order.clone();
            let futs: Vec<Fut<'_, Option<Vals>>> = keys.iter().map(|(t, k)| -> Fut<'_, Option<Vals>> { Box::pin(self.select_row(*t, k)) }).collect();
            let olds = self.each(futs).await?;
            let mut recs: Vec<(u8, Key, Option<Vals>)> = keys.into_iter().zip(olds).map(|((t, k), o)| (t, k, o)).collect();
            // A vote row that is already there is not written again: not journaled either.
            let vkeys: Vec<Key> = votes.iter().map(|v| vec![b(&u256_be(&v.proposal_id)), Val::I(i(v.block_number)), Val::I(i(v.log_index))]).collect();
            let futs: Vec<Fut<'_, Option<Vals>>> = vkeys.iter().map(|k| -> Fut<'_, Option<Vals>> { Box::pin(self.select_row(T_VOTES, k)) }).collect();
            let exist = self.each(futs).await?;
            insert_votes = votes.iter().zip(&exist).filter(|(_, e)| e.is_none()).map(|(v, _)| *v).collect();
            for (k, e) in vkeys.into_iter().zip(exist) {
                if e.is_none() {
                    recs.push((T_VOTES, k, None));
                }
            }
            let from = i(batch.from);
            let futs: Vec<Fut<'_, ()>> = recs
                .into_iter()
                .enumerate()
                .map(|(seq, (t, k, old))| -> Fut<'_, ()> {
                    Box::pin(async move {
                        let old = old.map(|o| enc(&o));
                        self.exec(&self.st.undo_put, (from, seq as i32, t as i8, enc(&k), old)).await.map(|_| ())
                    })
                })
                .collect();
            self.each(futs).await?;
            self.failpoint("journal")?;
        }

        // The rows, grouped by partition into unlogged batches (one round trip and one
        // mutation per partition instead of one per row).
        let rows: Vec<(u8, &Key, &Option<Vals>)> = st.order.iter().map(|key| (key.0, &key.1, &st.rows[key])).collect();
        let futs: Vec<Fut<'_, ()>> = group_by_partition(rows, |(t, k, _)| (*t, k.first().cloned()), |(_, k, v)| row_bytes(k, v))
            .into_iter()
            .map(|g| -> Fut<'_, ()> { Box::pin(self.write_group(g)) })
            .collect();
        self.each(futs).await?;
        self.failpoint("rows")?;

        // Vote records once: one conditional batch per proposal partition (Paxos once per
        // group, not per vote), then their counters.
        let futs: Vec<Fut<'_, Vec<&Vote>>> = group_by_partition(
            insert_votes.clone(),
            |v| (T_VOTES, Some(Val::B(u256_be(&v.proposal_id).to_vec()))),
            |v| 192 + v.reason.as_ref().map_or(0, String::len) + v.params.as_ref().map_or(0, |p| p.0.len()),
        )
        .into_iter()
        .map(|g| -> Fut<'_, Vec<&Vote>> { Box::pin(self.insert_votes_once(g)) })
        .collect();
        let applied: Vec<&Vote> = self.each(futs).await?.into_iter().flatten().collect();
        let replays = (insert_votes.len() - applied.len()) as u64;
        if replays > 0 {
            metrics::counter!(crate::metrics::STORE_VOTE_REPLAYS_TOTAL).increment(replays);
        }
        self.failpoint("votes")?;
        let mut d = Deltas::default();
        for v in &applied {
            d.vote(&u256_be(&v.proposal_id), &v.voter.0, v.support as i8, &utc_day(v.timestamp), 1);
        }
        let new_voters = d.voters.keys().filter(|v| voter_before.get(*v).copied().unwrap_or(0) <= 0).count() as i64;
        *d.global.entry("voters").or_default() += new_voters;
        *d.global.entry("accounts").or_default() += new_accounts;
        self.apply_deltas(d).await?;
        self.failpoint("counters")?;

        // Headers, the batch's journal entry, pruning.
        let futs: Vec<Fut<'_, ()>> = batch
            .blocks
            .iter()
            .map(|blk| -> Fut<'_, ()> {
                Box::pin(async move {
                    self.exec(&self.st.block_put, (i(blk.number), blk.hash.0.to_vec(), blk.parent_hash.0.to_vec(), i(blk.timestamp))).await.map(|_| ())
                })
            })
            .collect();
        self.each(futs).await?;
        if batch.reversible {
            self.exec(&self.st.batch_put, (i(batch.from), i(batch.to), i(cur.events))).await?;
        }
        if let Some(floor) = batch.prune_below {
            let batches: Vec<(i64, Option<i64>, Option<i64>)> = self.all(&self.st.batches_all, ()).await?;
            let mut kept_first: Option<u64> = None;
            for (from, to, _) in batches {
                let (from, to) = (from as u64, to.unwrap_or(0) as u64);
                if from < floor && to < floor {
                    self.exec(&self.st.undo_delete, (i(from),)).await?;
                    self.exec(&self.st.batch_delete, (i(from),)).await?;
                } else if kept_first.is_none() {
                    kept_first = Some(from);
                }
            }
            let keep_from = kept_first.map_or(floor, |f| f.saturating_sub(1).min(floor)).min(batch.to);
            self.exec(&self.st.blocks_delete_below, (i(keep_from),)).await?;
        }

        // The commit point.
        let events = cur.events + batch.events.len() as u64;
        let first = cur.first_block.or(Some(batch.from));
        self.set_cursor(Some(Cursor { block: batch.to, hash: batch.to_hash }), events, first).await?;
        if interrupted {
            let r = self.reconcile(None).await?;
            tracing::warn!(target: "store", corrected = r.counters_corrected, drift = r.drift, "counters reconciled after an interrupted write");
        }
        Ok(())
    }

    /// Undoes what an interrupted commit wrote: the journals of batches past the cursor.
    async fn undo_stale(&self, cursor: Option<u64>) -> Result<(), StoreError> {
        let floor = cursor.map_or(0, |c| c + 1);
        let batches: Vec<(i64, Option<i64>, Option<i64>)> = self.all(&self.st.batches_all, ()).await?;
        let mut froms: Vec<u64> = batches.iter().map(|b| b.0 as u64).filter(|f| *f >= floor).collect();
        if !froms.contains(&floor) {
            froms.push(floor);
        }
        froms.sort_unstable();
        for from in froms.into_iter().rev() {
            self.undo_batch(from).await?;
            self.exec(&self.st.batch_delete, (i(from),)).await?;
        }
        Ok(())
    }

    /// Restores the journal of the batch starting at `from` (newest record first), then drops it.
    async fn undo_batch(&self, from: u64) -> Result<(), StoreError> {
        let mut recs: Vec<UndoRow> = self.all(&self.st.undo_get, (i(from),)).await?;
        recs.sort_by_key(|r| std::cmp::Reverse(r.0));
        let mut d = Deltas::default();
        let mut touched_voters: HashMap<Vec<u8>, i64> = HashMap::new();
        for (_, t, k, old) in recs {
            let t = t.unwrap_or(-1);
            if t < 0 || t as usize >= TABLES.len() {
                return Err(StoreError::Corrupt { table: "undo_log", message: format!("table id {t}") });
            }
            let t = t as u8;
            let k: Key = dec("undo_log", &k.unwrap_or_default())?;
            let old: Option<Vals> = old.map(|o| dec("undo_log", &o)).transpose()?;
            match (t, &old) {
                (T_VOTES, None) => {
                    let Some(cur) = self.select_row(T_VOTES, &k).await? else { continue };
                    let r = self.exec(&self.st.vote_delete_lwt, bind(k.iter().cloned().map(Some))).await?;
                    if Self::applied(r)? {
                        if let (Some(Val::B(pid)), Some(Some(Val::B(voter))), Some(Some(Val::T(support))), Some(Some(Val::S(day)))) =
                            (k.first(), cur.first(), cur.get(1), cur.get(2))
                        {
                            d.vote(pid, voter, *support, day, -1);
                            *touched_voters.entry(voter.clone()).or_default() += 1;
                        }
                    }
                }
                (T_ACCOUNT, None) => {
                    if self.select_row(T_ACCOUNT, &k).await?.is_some() {
                        self.write_row(t, &k, &None).await?;
                        *d.global.entry("accounts").or_default() -= 1;
                    }
                }
                _ => self.write_row(t, &k, &old).await?,
            }
        }
        for (voter, n) in touched_voters {
            if self.voter_count(&voter).await? - n <= 0 {
                *d.global.entry("voters").or_default() -= 1;
            }
        }
        self.apply_deltas(d).await?;
        self.exec(&self.st.undo_delete, (i(from),)).await?;
        Ok(())
    }

    async fn rollback(&self, ancestor: u64) -> Result<Option<Cursor>, StoreError> {
        let cur = self.cursor_row().await?;
        let Some(c) = cur.cursor else { return Ok(None) };
        if c.block <= ancestor {
            return Ok(Some(c));
        }
        let mut batches: Vec<(u64, u64, u64)> = self
            .all::<(i64, Option<i64>, Option<i64>)>(&self.st.batches_all, ())
            .await?
            .into_iter()
            .map(|(f, t, e)| (f as u64, t.unwrap_or(0) as u64, e.unwrap_or(0) as u64))
            .collect();
        batches.sort_unstable();
        // Batches past the cursor belong to an interrupted commit: undone as well.
        let undone: Vec<(u64, u64, u64)> = batches.iter().rev().take_while(|(_, to, _)| *to > ancestor).copied().collect();
        let mut expect_to = c.block;
        for (from, to, _) in undone.iter().filter(|(f, _, _)| *f <= c.block) {
            if *to != expect_to {
                return Err(StoreError::ReorgTooDeep { ancestor });
            }
            expect_to = from.saturating_sub(1);
        }
        let (earliest, _, events_before) = *undone.iter().rev().find(|(f, _, _)| *f <= c.block).ok_or(StoreError::ReorgTooDeep { ancestor })?;
        if earliest > ancestor + 1 {
            return Err(StoreError::ReorgTooDeep { ancestor });
        }
        let target = earliest - 1;
        let rec = self.block(target).await?;
        let new_cursor = match rec {
            Some(r) => Some(Cursor { block: r.number, hash: r.hash }),
            None if cur.first_block == Some(earliest) => None,
            None => return Err(StoreError::ReorgTooDeep { ancestor }),
        };
        let interrupted = cur.pending.is_some();
        self.exec(&self.st.cursor_pending, (PENDING_ROLLBACK, CURSOR)).await?;
        for (from, _, _) in &undone {
            self.undo_batch(*from).await?;
            self.exec(&self.st.batch_delete, (i(*from),)).await?;
        }
        self.retract_orphans(target).await?;
        self.exec(&self.st.blocks_delete_from, (i(target + 1),)).await?;
        self.set_cursor(new_cursor, events_before, cur.first_block).await?;
        if interrupted {
            self.reconcile(None).await?;
        }
        Ok(new_cursor)
    }

    async fn block(&self, n: u64) -> Result<Option<BlockRecord>, StoreError> {
        Ok(self.one::<BlockRow>(&self.st.block_get, (i(n),)).await?.map(block_record))
    }

    async fn feed_state(&self) -> Result<(u64, Option<u64>), StoreError> {
        let r = self.one::<(Option<i64>, Option<i64>)>(&self.st.feed_state_get, (FEED,)).await?;
        Ok(r.map_or((0, None), |(s, p)| (s.unwrap_or(0) as u64, p.map(|p| p as u64))))
    }

    async fn publish_final(&self, finalized: u64) -> Result<Vec<FeedItem>, StoreError> {
        // Final blocks not committed yet are published once they are.
        let cur = self.cursor_row().await?;
        let Some(c) = cur.cursor else { return Ok(vec![]) };
        let finalized = finalized.min(c.block);
        let (mut seq, through) = self.feed_state().await?;
        if through.is_some_and(|t| t >= finalized) {
            return Ok(vec![]);
        }
        let first = match through {
            Some(t) => t + 1,
            None => cur.first_block.unwrap_or(0),
        };
        if first > finalized {
            return Ok(vec![]);
        }
        let lo = (first.saturating_sub(1)).to_be_bytes().to_vec();
        let lo = if first == 0 { vec![] } else { [lo.as_slice(), &[0xff; 32]].concat() };
        let hi = finalized.saturating_add(1).to_be_bytes().to_vec();
        let mut out = Vec::new();
        for bucket in outbox_bucket(first)..=outbox_bucket(finalized) {
            let rows: Vec<(Vec<u8>, Option<String>)> = self.all(&self.st.outbox_range, (bucket, lo.clone(), hi.clone())).await?;
            for (k, body) in rows {
                let body = body.unwrap_or_default();
                let event: GovernanceEvent = json_dec("outbox", &body)?;
                seq += 1;
                let item = FeedItem { seq, item_type: "event".into(), event };
                self.exec(&self.st.feed_put, (i(seq / FEED_BUCKET), i(seq), serde_json::to_string(&item).unwrap_or_default())).await?;
                self.exec(&self.st.published_put, (outbox_bucket(event_block(&k)), k, body)).await?;
                out.push(item);
            }
        }
        self.exec(&self.st.feed_state_set, (FEED, i(seq), i(finalized))).await?;
        Ok(out)
    }

    /// After a rollback to `target`: published events of later blocks that the rollback
    /// removed (or replaced) are retracted on the feed, and publishing resumes from `target`.
    async fn retract_orphans(&self, target: u64) -> Result<(), StoreError> {
        let (mut seq, through) = self.feed_state().await?;
        let Some(through) = through else { return Ok(()) };
        if through <= target {
            return Ok(());
        }
        let from_key = (target + 1).to_be_bytes().to_vec();
        for bucket in outbox_bucket(target + 1)..=outbox_bucket(through) {
            let rows: Vec<(Vec<u8>, Option<String>)> = self.all(&self.st.published_after, (bucket, from_key.clone())).await?;
            for (k, body) in rows {
                let body = body.unwrap_or_default();
                let still = self.select_row(T_OUTBOX, &vec![Val::I(bucket), b(&k)]).await?;
                if matches!(still.as_ref().and_then(|v| v.first()), Some(Some(Val::S(s))) if *s == body) {
                    continue;
                }
                let event: GovernanceEvent = json_dec("published_events", &body)?;
                seq += 1;
                let item = FeedItem { seq, item_type: "retraction".into(), event };
                self.exec(&self.st.feed_put, (i(seq / FEED_BUCKET), i(seq), serde_json::to_string(&item).unwrap_or_default())).await?;
                self.exec(&self.st.published_delete, (bucket, k)).await?;
            }
        }
        self.exec(&self.st.feed_state_set, (FEED, i(seq), i(target))).await?;
        Ok(())
    }

    async fn feed(&self, after: u64, limit: usize) -> Result<Vec<FeedItem>, StoreError> {
        let (last, _) = self.feed_state().await?;
        let mut out = Vec::new();
        let mut bucket = (after + 1) / FEED_BUCKET;
        while out.len() < limit && bucket <= last / FEED_BUCKET {
            let rows: Vec<(i64, Option<String>)> = self.all(&self.st.feed_from, (i(bucket), i(after), (limit - out.len()) as i32)).await?;
            for (_, body) in rows {
                out.push(json_dec("feed", &body.unwrap_or_default())?);
            }
            bucket += 1;
        }
        Ok(out)
    }

    /// Recomputes the counters from the vote rows and adds the differences.
    async fn reconcile(&self, proposal: Option<&U256>) -> Result<ReconcileReport, StoreError> {
        let mut rep = ReconcileReport::default();
        let mut want = Deltas::default();
        match proposal {
            Some(pid) => {
                let pid = u256_be(pid).to_vec();
                let rows: Vec<VoteCountRow> = self.all(&self.st.votes_all, (pid.clone(),)).await?;
                let p = want.proposals.entry(pid.clone()).or_default();
                for (_, _, _, support, _) in &rows {
                    p[0] += 1;
                    p[support_column(support.unwrap_or(-1))] += 1;
                }
                rep.votes_scanned = rows.len() as u64;
                let have =
                    self.one::<(Option<Counter>, Option<Counter>, Option<Counter>, Option<Counter>, Option<Counter>)>(&self.st.pc_get, (pid.clone(),)).await?;
                let have = have.map_or([0; 5], |h| [h.0, h.1, h.2, h.3, h.4].map(|c| c.map_or(0, |c| c.0)));
                let want = want.proposals.remove(&pid).unwrap_or_default();
                let mut fix = Deltas::default();
                rep.counters_checked = 5;
                let diff = [0, 1, 2, 3, 4].map(|k| want[k] - have[k]);
                if diff.iter().any(|d| *d != 0) {
                    rep.counters_corrected = diff.iter().filter(|d| **d != 0).count() as u64;
                    rep.drift = diff.iter().map(|d| d.unsigned_abs()).sum();
                    fix.proposals.insert(pid, diff);
                }
                self.apply_deltas(fix).await?;
            }
            None => {
                let mut scan = {
                    let mut st = self.st.votes_scan.clone();
                    st.set_page_size(self.page_size);
                    self.session.execute_iter(st, ()).await.map_err(be)?.rows_stream::<(Vec<u8>, Option<Vec<u8>>, Option<i8>, Option<String>)>().map_err(be)?
                };
                while let Some((pid, voter, support, day)) = scan.try_next().await.map_err(be)? {
                    rep.votes_scanned += 1;
                    want.vote(&pid, &voter.unwrap_or_default(), support.unwrap_or(-1), &day.unwrap_or_default(), 1);
                }
                let voters = want.voters.len() as i64;
                want.global.insert("voters", voters);
                let accounts: Vec<(Vec<u8>,)> = self.all(&self.st.accounts_count, ()).await?;
                want.global.insert("accounts", accounts.len() as i64);
                want.global.entry("votes").or_insert(0);
                let mut fix = Deltas::default();
                let note = |have: i64, want: i64, rep: &mut ReconcileReport| -> i64 {
                    rep.counters_checked += 1;
                    let d = want - have;
                    if d != 0 {
                        rep.counters_corrected += 1;
                        rep.drift += d.unsigned_abs();
                    }
                    d
                };
                type Pc = (Vec<u8>, Option<Counter>, Option<Counter>, Option<Counter>, Option<Counter>, Option<Counter>);
                let have_p: Vec<Pc> = self.all(&self.st.pc_all, ()).await?;
                let mut have_pm: HashMap<Vec<u8>, [i64; 5]> = HashMap::new();
                for (pid, a, b_, c, d_, e) in have_p {
                    have_pm.insert(pid, [a, b_, c, d_, e].map(|c| c.map_or(0, |c| c.0)));
                }
                let pids: HashSet<Vec<u8>> = have_pm.keys().chain(want.proposals.keys()).cloned().collect();
                for pid in pids {
                    let h = have_pm.get(&pid).copied().unwrap_or_default();
                    let w = want.proposals.get(&pid).copied().unwrap_or_default();
                    let diff = [0, 1, 2, 3, 4].map(|k| note(h[k], w[k], &mut rep));
                    fix.proposals.insert(pid, diff);
                }
                let have_v: HashMap<Vec<u8>, i64> =
                    self.all::<(Vec<u8>, Option<Counter>)>(&self.st.vc_all, ()).await?.into_iter().map(|(k, c)| (k, c.map_or(0, |c| c.0))).collect();
                let keys: HashSet<Vec<u8>> = have_v.keys().chain(want.voters.keys()).cloned().collect();
                for k in keys {
                    let d = note(have_v.get(&k).copied().unwrap_or(0), want.voters.get(&k).copied().unwrap_or(0), &mut rep);
                    fix.voters.insert(k, d);
                }
                let have_d: HashMap<String, i64> =
                    self.all::<(String, Option<Counter>)>(&self.st.dc_all, ()).await?.into_iter().map(|(k, c)| (k, c.map_or(0, |c| c.0))).collect();
                let keys: HashSet<String> = have_d.keys().chain(want.days.keys()).cloned().collect();
                for k in keys {
                    let d = note(have_d.get(&k).copied().unwrap_or(0), want.days.get(&k).copied().unwrap_or(0), &mut rep);
                    fix.days.insert(k, d);
                }
                let have_g: HashMap<String, i64> =
                    self.all::<(String, Option<Counter>)>(&self.st.gc_all, ()).await?.into_iter().map(|(k, c)| (k, c.map_or(0, |c| c.0))).collect();
                for (k, w) in want.global.iter() {
                    let d = note(have_g.get(*k).copied().unwrap_or(0), *w, &mut rep);
                    fix.global.insert(k, d);
                }
                self.apply_deltas(fix).await?;
            }
        }
        if rep.counters_corrected > 0 {
            metrics::counter!(crate::metrics::STORE_COUNTER_CORRECTIONS_TOTAL).increment(rep.counters_corrected);
        }
        Ok(rep)
    }
}

/// Rows per batch and bytes per batch (well under Cassandra's default 50 KiB batch limit and
/// ScyllaDB's 1 MiB one).
const GROUP_ROWS: usize = 64;
const GROUP_BYTES: usize = 16 * 1024;

/// Groups items by partition, in first-seen order, cut to at most [`GROUP_ROWS`] items and
/// about [`GROUP_BYTES`] bytes per group.
fn group_by_partition<T, K: std::hash::Hash + Eq>(items: Vec<T>, key: impl Fn(&T) -> K, size: impl Fn(&T) -> usize) -> Vec<Vec<T>> {
    let mut index: HashMap<K, usize> = HashMap::new();
    let mut groups: Vec<(Vec<T>, usize)> = Vec::new();
    for item in items {
        let k = key(&item);
        let n = size(&item);
        let open = index.get(&k).copied().filter(|g| groups[*g].0.len() < GROUP_ROWS && groups[*g].1 + n <= GROUP_BYTES);
        match open {
            Some(g) => {
                groups[g].0.push(item);
                groups[g].1 += n;
            }
            None => {
                index.insert(k, groups.len());
                groups.push((vec![item], n));
            }
        }
    }
    groups.into_iter().map(|(g, _)| g).collect()
}

fn row_bytes(k: &Key, v: &Option<Vals>) -> usize {
    let size = |x: &Val| match x {
        Val::B(b) => b.len(),
        Val::S(s) => s.len(),
        _ => 8,
    };
    16 + k.iter().map(size).sum::<usize>() + v.as_ref().map_or(0, |v| v.iter().flatten().map(size).sum())
}

/// A `blocks` row: number, hash, parent hash, timestamp.
type BlockRow = (i64, Option<Vec<u8>>, Option<Vec<u8>>, Option<i64>);
/// An `undo_log` row: sequence, table, key, old value.
type UndoRow = (i32, Option<i8>, Option<Vec<u8>>, Option<Vec<u8>>);
/// A `votes_by_proposal` row as reconciliation reads it.
type VoteCountRow = (i64, i64, Option<Vec<u8>>, Option<i8>, Option<String>);

fn block_record((n, h, p, t): BlockRow) -> BlockRecord {
    BlockRecord {
        number: n as u64,
        hash: B256::from_slice(&h.unwrap_or_default()).unwrap_or_default(),
        parent_hash: B256::from_slice(&p.unwrap_or_default()).unwrap_or_default(),
        timestamp: t.unwrap_or(0) as u64,
    }
}

fn body<T: DeserializeOwned>(table: &'static str, v: Option<Vec<u8>>) -> Result<T, StoreError> {
    dec(table, &v.unwrap_or_default())
}

macro_rules! run {
    ($self:ident, |$inner:ident| $body:expr) => {
        $self.run(move |$inner| Box::pin(async move { $body }))
    };
}

impl Store for ScyllaStore {
    fn info(&self) -> Result<Option<GovernorInfo>, StoreError> {
        run!(self, |s| {
            match s.select_row(T_META, &vec![Val::S("info".into())]).await? {
                Some(v) => match v.into_iter().next().flatten() {
                    Some(Val::B(b)) => Ok(Some(dec("meta", &b)?)),
                    _ => Ok(None),
                },
                None => Ok(None),
            }
        })
    }

    fn init_info(&self, info: &GovernorInfo) -> Result<(), StoreError> {
        if let Some(old) = self.info()? {
            if old.chain_id != info.chain_id || old.governor != info.governor {
                return Err(StoreError::WrongDeployment {
                    stored: format!("governor {} on chain {} (keyspace {})", old.governor, old.chain_id, self.keyspace),
                    configured: format!("governor {} on chain {}", info.governor, info.chain_id),
                });
            }
        }
        let v = enc(info);
        run!(self, |s| s.write_row(T_META, &vec![Val::S("info".into())], &Some(vec![some(Val::B(v))])).await)
    }

    fn cursor(&self) -> Result<Option<Cursor>, StoreError> {
        run!(self, |s| Ok(s.cursor_row().await?.cursor))
    }

    fn commit(&self, batch: &Batch) -> Result<(), StoreError> {
        let batch = batch.clone();
        run!(self, |s| s.commit(&batch).await)
    }

    fn rollback(&self, ancestor: u64) -> Result<Option<Cursor>, StoreError> {
        run!(self, |s| s.rollback(ancestor).await)
    }

    fn block(&self, number: u64) -> Result<Option<BlockRecord>, StoreError> {
        run!(self, |s| s.block(number).await)
    }

    fn recent_blocks(&self) -> Result<Vec<BlockRecord>, StoreError> {
        run!(self, |s| {
            let rows: Vec<BlockRow> = s.all(&s.st.blocks_all, ()).await?;
            Ok(rows.into_iter().map(block_record).collect())
        })
    }

    fn proposal(&self, id: &U256) -> Result<Option<Proposal>, StoreError> {
        let id = u256_be(id);
        run!(self, |s| load_proposal(&s, id.to_vec()).await)
    }

    fn live_proposals(&self) -> Result<Vec<Proposal>, StoreError> {
        run!(self, |s| {
            let mut ids = Vec::new();
            for st in ProposalStatus::ALL.iter().filter(|x| !x.is_final()) {
                let rows: Vec<(Vec<u8>,)> = s.all(&s.st.by_status, (*st as u8 as i8,)).await?;
                ids.extend(rows.into_iter().map(|r| r.0));
            }
            load_proposals(&s, ids).await
        })
    }

    fn list_proposals(&self, q: &ProposalQuery) -> Result<Page<Proposal>, StoreError> {
        let q = q.clone();
        run!(self, |s| {
            let mut ids: Vec<Vec<u8>> = Vec::new();
            if !q.statuses.is_empty() {
                for st in &q.statuses {
                    let rows: Vec<(Vec<u8>,)> = s.all(&s.st.by_status, (*st as u8 as i8,)).await?;
                    ids.extend(rows.into_iter().map(|r| r.0));
                }
            } else if let Some(p) = &q.proposer {
                let rows: Vec<(Vec<u8>,)> = s.all(&s.st.by_proposer, (p.0.to_vec(),)).await?;
                ids.extend(rows.into_iter().map(|r| r.0));
            } else {
                let rows: Vec<(Vec<u8>,)> = s.all(&s.st.by_created, ()).await?;
                ids.extend(rows.into_iter().map(|r| r.0));
            }
            Ok(page_proposals(load_proposals(&s, ids).await?, &q))
        })
    }

    fn history(&self, id: &U256) -> Result<Vec<HistoryEntry>, StoreError> {
        let id = u256_be(id).to_vec();
        run!(self, |s| {
            let rows: Vec<(Option<Vec<u8>>,)> = s.all(&s.st.history, (id,)).await?;
            let mut out = rows.into_iter().map(|r| body("proposal_history", r.0)).collect::<Result<Vec<HistoryEntry>, _>>()?;
            sort_history(&mut out);
            Ok(out)
        })
    }

    fn vote(&self, id: &U256, voter: &Address) -> Result<Option<Vote>, StoreError> {
        let (pid, voter) = (u256_be(id).to_vec(), voter.0.to_vec());
        run!(self, |s| {
            let Some((blk, log)) = s.one::<(i64, i64)>(&s.st.vote_of_voter, (pid.clone(), voter)).await? else { return Ok(None) };
            load_vote(&s, pid, blk, log).await
        })
    }

    fn proposal_votes(&self, id: &U256, q: &VoteQuery) -> Result<Page<Vote>, StoreError> {
        let pid = u256_be(id).to_vec();
        let q = q.clone();
        run!(self, |s| {
            let pos = |a: &[u8]| -> (i64, i64) {
                let blk = a.get(..8).and_then(|x| x.try_into().ok()).map_or(0, u64::from_be_bytes);
                let log = a.get(8..16).and_then(|x| x.try_into().ok()).map_or(0, u64::from_be_bytes);
                (i(blk), i(log))
            };
            let keep = |support: Option<i8>| q.support.is_none_or(|x| Some(x as i8) == support);
            type R = (i64, i64, Option<i8>, Option<Vec<u8>>);
            match q.sort {
                VoteSort::Block => {
                    let (st, (blk, log)) = match (&q.after, q.descending) {
                        (Some(a), false) => (&s.st.votes_asc, pos(a)),
                        (Some(a), true) => (&s.st.votes_desc, pos(a)),
                        (None, false) => (&s.st.votes_asc, (-1, -1)),
                        (None, true) => (&s.st.votes_desc, (i64::MAX, i64::MAX)),
                    };
                    let mut st = st.clone();
                    st.set_page_size(s.page_size.min(q.limit as i32 + 1).max(1));
                    let mut rows = s.session.execute_iter(st, (pid, blk, log)).await.map_err(be)?.rows_stream::<R>().map_err(be)?;
                    let mut out = Vec::new();
                    let mut last = None;
                    let mut more = false;
                    while let Some((blk, log, support, b)) = rows.try_next().await.map_err(be)? {
                        if !keep(support) {
                            continue;
                        }
                        if out.len() == q.limit {
                            more = true;
                            break;
                        }
                        last = Some([(blk as u64).to_be_bytes(), (log as u64).to_be_bytes()].concat());
                        out.push(body::<Vote>("votes_by_proposal", b)?);
                    }
                    Ok(Page { items: out, next: if more { last } else { None } })
                }
                VoteSort::Weight => {
                    let rows: Vec<R> = s.all(&s.st.votes_asc, (pid, -1i64, -1i64)).await?;
                    let mut keyed = Vec::new();
                    for (blk, log, support, b) in rows {
                        if !keep(support) {
                            continue;
                        }
                        let v: Vote = body("votes_by_proposal", b)?;
                        let k = [u256_be(&v.weight).as_slice(), &(blk as u64).to_be_bytes(), &(log as u64).to_be_bytes()].concat();
                        keyed.push((k, v));
                    }
                    Ok(page_sorted(keyed, q.descending, q.after.as_deref(), q.limit))
                }
            }
        })
    }

    fn voter_votes(&self, voter: &Address, q: &VoteQuery) -> Result<Page<Vote>, StoreError> {
        let voter = voter.0.to_vec();
        let q = q.clone();
        run!(self, |s| {
            let (blk, log) = match &q.after {
                Some(a) => (
                    i(a.get(..8).and_then(|x| x.try_into().ok()).map_or(0, u64::from_be_bytes)),
                    i(a.get(8..16).and_then(|x| x.try_into().ok()).map_or(0, u64::from_be_bytes)),
                ),
                None if q.descending => (i64::MAX, i64::MAX),
                None => (-1, -1),
            };
            let st = if q.descending { &s.st.voter_desc } else { &s.st.voter_asc };
            let limit = (q.limit + 1).min(i32::MAX as usize) as i32;
            let refs: Vec<(i64, i64, Option<Vec<u8>>)> = s.all(st, (voter, blk, log, limit)).await?;
            let more = refs.len() > q.limit;
            let refs: Vec<_> = refs.into_iter().take(q.limit).collect();
            let next = if more { refs.last().map(|(b_, l, _)| [(*b_ as u64).to_be_bytes(), (*l as u64).to_be_bytes()].concat()) } else { None };
            let futs: Vec<Fut<'_, Option<Vote>>> =
                refs.into_iter().map(|(b_, l, p)| -> Fut<'_, Option<Vote>> { Box::pin(load_vote(&s, p.unwrap_or_default(), b_, l)) }).collect();
            let items = s.each(futs).await?.into_iter().flatten().collect();
            Ok(Page { items, next })
        })
    }

    fn account(&self, account: &Address) -> Result<Option<AccountPower>, StoreError> {
        let a = account.0.to_vec();
        run!(self, |s| {
            match s.select_row(T_ACCOUNT, &vec![Val::B(a)]).await? {
                Some(v) => match v.into_iter().nth(1).flatten() {
                    Some(Val::B(b)) => Ok(Some(dec("account_latest", &b)?)),
                    _ => Ok(None),
                },
                None => Ok(None),
            }
        })
    }

    fn latest_accounts(&self) -> Result<Vec<(Address, AccountPower)>, StoreError> {
        run!(self, |s| {
            let rows: Vec<(Vec<u8>, Option<Vec<u8>>)> = s.all(&s.st.accounts_all, ()).await?;
            let mut out = rows
                .into_iter()
                .map(|(a, b)| Ok((Address::from_slice(&a).unwrap_or_default(), body("account_latest", b)?)))
                .collect::<Result<Vec<(Address, AccountPower)>, StoreError>>()?;
            out.sort_by_key(|x| x.0);
            Ok(out)
        })
    }

    fn account_at_block(&self, account: &Address, block: u64) -> Result<Option<AccountPower>, StoreError> {
        let a = account.0.to_vec();
        run!(self, |s| {
            match s.one::<(Option<Vec<u8>>,)>(&s.st.power_at_block, (a, i(block))).await? {
                Some((b,)) => Ok(Some(body("voting_power", b)?)),
                None => Ok(None),
            }
        })
    }

    fn account_at_time(&self, account: &Address, ts: u64) -> Result<Option<AccountPower>, StoreError> {
        let a = account.0.to_vec();
        run!(self, |s| {
            let mut st = s.st.power_desc.clone();
            st.set_page_size(s.page_size);
            let mut rows = s.session.execute_iter(st, (a,)).await.map_err(be)?.rows_stream::<(Option<i64>, Option<Vec<u8>>)>().map_err(be)?;
            while let Some((t, b)) = rows.try_next().await.map_err(be)? {
                if t.unwrap_or(0) as u64 <= ts {
                    return Ok(Some(body("voting_power", b)?));
                }
            }
            Ok(None)
        })
    }

    fn timelock_op(&self, id: &B256) -> Result<Option<TimelockOperation>, StoreError> {
        let k = id.0.to_vec();
        run!(self, |s| {
            match s.select_row(T_TIMELOCK, &vec![Val::B(k)]).await? {
                Some(v) => match v.into_iter().next().flatten() {
                    Some(Val::B(b)) => Ok(Some(dec("timelock_operations", &b)?)),
                    _ => Ok(None),
                },
                None => Ok(None),
            }
        })
    }

    fn stats(&self) -> Result<Stats, StoreError> {
        run!(self, |s| {
            let mut out = Stats::default();
            for st in ProposalStatus::ALL {
                let n = s.one::<(i64,)>(&s.st.by_status_count, (st as u8 as i8,)).await?.map_or(0, |r| r.0) as u64;
                out.by_status.insert(st.as_str().to_string(), n);
                out.proposals += n;
            }
            let g: HashMap<String, i64> =
                s.all::<(String, Option<Counter>)>(&s.st.gc_all, ()).await?.into_iter().map(|(k, c)| (k, c.map_or(0, |c| c.0))).collect();
            let get = |k: &str| g.get(k).copied().unwrap_or(0).max(0) as u64;
            out.votes = get("votes");
            out.unique_voters = get("voters");
            out.accounts = get("accounts");
            out.events = s.cursor_row().await?.events;
            let days: Vec<(String, Option<Counter>)> = s.all(&s.st.dc_all, ()).await?;
            let days: BTreeMap<String, u64> = days.into_iter().filter_map(|(d, c)| c.map(|c| (d, c.0.max(0) as u64))).filter(|(_, n)| *n > 0).collect();
            out.votes_by_day = days.into_iter().rev().take(STATS_DAYS).collect();
            Ok(out)
        })
    }

    fn streak(&self, voter: &Address) -> Result<Streak, StoreError> {
        let v = voter.0.to_vec();
        run!(self, |s| {
            match s.select_row(T_STREAKS, &vec![Val::B(v)]).await? {
                Some(v) => match v.into_iter().next().flatten() {
                    Some(Val::B(b)) => dec("participation_streaks", &b),
                    _ => Ok(Streak::default()),
                },
                None => Ok(Streak::default()),
            }
        })
    }

    fn publish_final(&self, finalized: u64) -> Result<Vec<FeedItem>, StoreError> {
        run!(self, |s| s.publish_final(finalized).await)
    }

    fn feed_position(&self) -> Result<u64, StoreError> {
        run!(self, |s| Ok(s.feed_state().await?.0))
    }

    fn feed(&self, after: u64, limit: usize) -> Result<Vec<FeedItem>, StoreError> {
        run!(self, |s| s.feed(after, limit).await)
    }

    fn account_events(&self, account: &Address) -> Result<Vec<(GovernanceEvent, bool)>, StoreError> {
        let a = account.0.to_vec();
        run!(self, |s| {
            let keys: Vec<(Vec<u8>,)> = s.all(&s.st.outbox_by_account, (a,)).await?;
            let mut out = Vec::new();
            for (k,) in keys {
                let bucket = outbox_bucket(event_block(&k));
                let Some(v) = s.select_row(T_OUTBOX, &vec![Val::I(bucket), b(&k)]).await? else { continue };
                let Some(Some(Val::S(body))) = v.into_iter().next() else { continue };
                let e: GovernanceEvent = json_dec("outbox", &body)?;
                let published = s.one::<(Option<String>,)>(&s.st.published_get, (bucket, k)).await?.is_some();
                out.push((e, published));
            }
            Ok(out)
        })
    }

    fn voter_vote_count(&self, voter: &Address) -> Result<u64, StoreError> {
        let v = voter.0.to_vec();
        run!(self, |s| Ok(s.voter_count(&v).await?.max(0) as u64))
    }

    fn vote_counts(&self, id: &U256) -> Result<VoteCounts, StoreError> {
        let pid = u256_be(id).to_vec();
        run!(self, |s| {
            type R = (Option<Counter>, Option<Counter>, Option<Counter>, Option<Counter>, Option<Counter>);
            let Some(r) = s.one::<R>(&s.st.pc_get, (pid,)).await? else { return Ok(VoteCounts::default()) };
            let n = |c: Option<Counter>| c.map_or(0, |c| c.0.max(0) as u64);
            Ok(VoteCounts { total: n(r.0), against: n(r.1), for_: n(r.2), abstain: n(r.3), fractional: n(r.4) })
        })
    }

    fn reconcile(&self, proposal: Option<&U256>) -> Result<ReconcileReport, StoreError> {
        let p = proposal.copied();
        run!(self, |s| s.reconcile(p.as_ref()).await)
    }
}

async fn load_proposal(s: &Inner, id: Vec<u8>) -> Result<Option<Proposal>, StoreError> {
    match s.select_row(T_PROPOSALS, &vec![Val::B(id)]).await? {
        Some(v) => match v.into_iter().nth(1).flatten() {
            Some(Val::B(b)) => Ok(Some(dec("proposals", &b)?)),
            _ => Ok(None),
        },
        None => Ok(None),
    }
}

async fn load_proposals(s: &Inner, ids: Vec<Vec<u8>>) -> Result<Vec<Proposal>, StoreError> {
    let futs: Vec<Fut<'_, Option<Proposal>>> = ids.into_iter().map(|id| -> Fut<'_, Option<Proposal>> { Box::pin(load_proposal(s, id)) }).collect();
    Ok(s.each(futs).await?.into_iter().flatten().collect())
}

async fn load_vote(s: &Inner, pid: Vec<u8>, blk: i64, log: i64) -> Result<Option<Vote>, StoreError> {
    match s.select_row(T_VOTES, &vec![Val::B(pid), Val::I(blk), Val::I(log)]).await? {
        Some(v) => match v.into_iter().nth(3).flatten() {
            Some(Val::B(b)) => Ok(Some(dec("votes_by_proposal", &b)?)),
            _ => Ok(None),
        },
        None => Ok(None),
    }
}
