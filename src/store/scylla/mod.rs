//! The ScyllaDB backend (any CQL engine; tested on Apache Cassandra 5), with the `scylla` driver.
//!
//! ## Tables
//! `schema/cql/` holds the versioned schema: one table per API read (proposals by id, by status,
//! by proposer, by creation; history by proposal; votes by proposal, by proposal and voter, by
//! voter; voting power by account and block; the outbox, the feed, the listener cursor), plus
//! counter tables for the high-throughput statistics.
//!
//! ## Layout
//! - `session.rs`: driver settings, connecting, the schema check, consistency and routing, and
//!   how the synchronous [`Store`] runs on the driver's runtime;
//! - `statements.rs`: every prepared statement;
//! - `tables.rs`: the tables batches write, as generic rows, and the value codecs;
//! - `stage.rs`: a batch's mutations turned into rows;
//! - `commit.rs`: the journaled commit, stage by stage, and how a batch is atomic in effect;
//! - `rollback.rs`: undoing journals, for a reorg or after an interrupted commit;
//! - `counters.rs`: the vote counters and their reconciliation;
//! - `cursor.rs`: the listener cursor and the block headers;
//! - `feed.rs`: the outbox and the feed;
//! - `reads.rs`: the API's reads.
//!
//! [`ScyllaStore`] implements [`Store`] by running the matching operation on the session
//! (`session::Inner`) and waiting for it.

mod commit;
mod counters;
mod cursor;
mod feed;
mod reads;
mod rollback;
mod session;
mod stage;
mod statements;
mod tables;

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

use self::session::{be, block_on_runtime, check_config, Inner};
use self::tables::{enc, some, Val, T_META};
use crate::config::ScyllaConfig;
use crate::domain::achievement::{FeedItem, GovernanceEvent, Streak};
use crate::domain::{u256_be, AccountPower, Address, GovernorInfo, HistoryEntry, Proposal, TimelockOperation, Vote, B256, U256};
use crate::store::{migrate, Batch, BlockRecord, Cursor, Page, ProposalQuery, ReconcileReport, Stats, Store, StoreError, VoteCounts, VoteQuery};

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

impl ScyllaStore {
    /// Connects to the cluster, applies migrations when `migrate` is true (else requires the
    /// schema to be there), and prepares every statement.
    pub fn connect(cfg: &ScyllaConfig, migrate: bool) -> Result<Self, StoreError> {
        check_config(cfg)?;
        let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).thread_name("govflow-cql").enable_all().build().map_err(be)?;
        let cfg2 = cfg.clone();
        let inner = block_on_runtime(rt.handle(), async move { Inner::connect(&cfg2, migrate).await })??;
        Ok(ScyllaStore { inner: Some(Arc::new(inner)), rt: Some(rt), keyspace: cfg.keyspace.clone() })
    }

    /// Applies the schema migrations only (for `govflow migrate`).
    pub fn migrate(cfg: &ScyllaConfig) -> Result<Vec<migrate::Applied>, StoreError> {
        check_config(cfg)?;
        let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(1).enable_all().build().map_err(be)?;
        let cfg = cfg.clone();
        rt.block_on(async move {
            let session = session::session(&cfg).await?;
            migrate::migrate(&session, &cfg.keyspace, &cfg.replication, &cfg.keyspace_options).await
        })
    }

    /// The keyspace.
    pub fn keyspace(&self) -> &str {
        &self.keyspace
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
    fn run<T: Send + 'static>(&self, f: impl FnOnce(Arc<Inner>) -> Pin<Box<dyn Future<Output = Result<T, StoreError>> + Send>>) -> Result<T, StoreError> {
        let inner = self.inner().clone();
        let rt = self.rt.as_ref().expect("runtime lives until drop");
        block_on_runtime(rt.handle(), f(inner))?
    }
}

/// `run!(self, |s| expr)`: evaluates the async `expr` with `s: Arc<Inner>` on the store's
/// runtime (the closure moves what it uses, so arguments are copied or cloned first).
macro_rules! run {
    ($self:ident, |$inner:ident| $body:expr) => {
        $self.run(move |$inner| Box::pin(async move { $body }))
    };
}

impl Store for ScyllaStore {
    fn info(&self) -> Result<Option<GovernorInfo>, StoreError> {
        run!(self, |s| s.info().await)
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
        run!(self, |s| s.recent_blocks().await)
    }

    fn proposal(&self, id: &U256) -> Result<Option<Proposal>, StoreError> {
        let id = u256_be(id).to_vec();
        run!(self, |s| s.proposal(id).await)
    }

    fn live_proposals(&self) -> Result<Vec<Proposal>, StoreError> {
        run!(self, |s| s.live_proposals().await)
    }

    fn list_proposals(&self, q: &ProposalQuery) -> Result<Page<Proposal>, StoreError> {
        let q = q.clone();
        run!(self, |s| s.list_proposals(&q).await)
    }

    fn history(&self, id: &U256) -> Result<Vec<HistoryEntry>, StoreError> {
        let id = *id;
        run!(self, |s| s.history(&id).await)
    }

    fn vote(&self, id: &U256, voter: &Address) -> Result<Option<Vote>, StoreError> {
        let (id, voter) = (*id, *voter);
        run!(self, |s| s.vote(&id, &voter).await)
    }

    fn proposal_votes(&self, id: &U256, q: &VoteQuery) -> Result<Page<Vote>, StoreError> {
        let (id, q) = (*id, q.clone());
        run!(self, |s| s.proposal_votes(&id, &q).await)
    }

    fn voter_votes(&self, voter: &Address, q: &VoteQuery) -> Result<Page<Vote>, StoreError> {
        let (voter, q) = (*voter, q.clone());
        run!(self, |s| s.voter_votes(&voter, &q).await)
    }

    fn account(&self, account: &Address) -> Result<Option<AccountPower>, StoreError> {
        let account = *account;
        run!(self, |s| s.account(&account).await)
    }

    fn latest_accounts(&self) -> Result<Vec<(Address, AccountPower)>, StoreError> {
        run!(self, |s| s.latest_accounts().await)
    }

    fn account_at_block(&self, account: &Address, block: u64) -> Result<Option<AccountPower>, StoreError> {
        let account = *account;
        run!(self, |s| s.account_at_block(&account, block).await)
    }

    fn account_at_time(&self, account: &Address, ts: u64) -> Result<Option<AccountPower>, StoreError> {
        let account = *account;
        run!(self, |s| s.account_at_time(&account, ts).await)
    }

    fn timelock_op(&self, id: &B256) -> Result<Option<TimelockOperation>, StoreError> {
        let id = *id;
        run!(self, |s| s.timelock_op(&id).await)
    }

    fn stats(&self) -> Result<Stats, StoreError> {
        run!(self, |s| s.stats().await)
    }

    fn streak(&self, voter: &Address) -> Result<Streak, StoreError> {
        let voter = *voter;
        run!(self, |s| s.streak(&voter).await)
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
        run!(self, |s| s.account_events(a).await)
    }

    fn voter_vote_count(&self, voter: &Address) -> Result<u64, StoreError> {
        let v = voter.0.to_vec();
        run!(self, |s| Ok(s.voter_count(&v).await?.max(0) as u64))
    }

    fn vote_counts(&self, id: &U256) -> Result<VoteCounts, StoreError> {
        let id = *id;
        run!(self, |s| s.vote_counts(&id).await)
    }

    fn reconcile(&self, proposal: Option<&U256>) -> Result<ReconcileReport, StoreError> {
        let p = proposal.copied();
        run!(self, |s| s.reconcile(p.as_ref()).await)
    }
}
