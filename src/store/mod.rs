//! The store: one trait, designed query-first, with an embedded backend (redb) and a ScyllaDB one
//! (`scylla/`, any CQL engine).
//!
//! Writes arrive as [`Batch`]es: everything derived from a range of blocks plus the listener's
//! cursor, committed atomically, so a crash at any point resumes with nothing lost and nothing
//! counted twice. Batches near the head are *reversible*: the backend journals the previous
//! value of every key they touch, and [`Store::rollback`] restores them in one atomic step when
//! a reorg orphans those blocks.
//!
//! Reads are the API's access paths, each served by its own index:
//! proposals by id, by status, by proposer and by creation; votes by proposal (by block, by
//! weight, by voter) and by voter; voting power by account and block; history by proposal.

pub mod embedded;
pub mod migrate;
pub mod scylla;

use serde::{Deserialize, Serialize};

use crate::domain::achievement::{FeedItem, GovernanceEvent, Streak};
use crate::domain::{AccountPower, Address, GovernorInfo, HistoryEntry, Proposal, ProposalStatus, TimelockOperation, Vote, B256, U256};

/// Store failures.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The backend failed (I/O, corruption, transaction conflict).
    #[error("storage backend: {0}")]
    Backend(String),
    /// A stored value could not be decoded.
    #[error("corrupt value in {table}: {message}")]
    Corrupt {
        /// Table.
        table: &'static str,
        /// Decoder message.
        message: String,
    },
    /// A rollback was asked for beyond the reversible window.
    #[error("reorg deeper than the reversible window: block {ancestor} is older than the oldest reversible batch")]
    ReorgTooDeep {
        /// The common ancestor asked for.
        ancestor: u64,
    },
    /// The store belongs to another chain or governor.
    #[error("store was created for {stored}, not {configured}; use another data directory")]
    WrongDeployment {
        /// What the store holds.
        stored: String,
        /// What is configured.
        configured: String,
    },
}

impl StoreError {
    /// True when retrying the same operation may succeed.
    pub fn is_retryable(&self) -> bool {
        matches!(self, StoreError::Backend(_))
    }
}

/// An event's identity within one chain: `(block_hash, log_index)`, with the block number
/// so backends can keep identities in chain order.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct EventId {
    /// Block number.
    pub block_number: u64,
    /// Block hash.
    pub block_hash: B256,
    /// Log index in the block.
    pub log_index: u64,
}

/// Where indexing stands: the last block whose effects are committed.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Cursor {
    /// Block number.
    pub block: u64,
    /// Its hash.
    pub hash: B256,
}

/// A block header the store remembers for reorg detection.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct BlockRecord {
    /// Number.
    pub number: u64,
    /// Hash.
    pub hash: B256,
    /// Parent hash.
    pub parent_hash: B256,
    /// Timestamp.
    pub timestamp: u64,
}

/// One write derived from chain events.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub enum Mutation {
    /// Insert or replace a proposal (indexes follow its status and fields).
    Proposal(Box<Proposal>),
    /// Append a status change.
    History(HistoryEntry),
    /// Insert a vote record (ignored when the voter already has a record for the proposal and
    /// the same event identity).
    Vote(Box<Vote>),
    /// Set an account's state after a block (current row plus checkpoint at that block).
    Account {
        /// Account.
        account: Address,
        /// New state.
        power: AccountPower,
    },
    /// Insert or replace a timelock operation.
    TimelockOp(Box<TimelockOperation>),
    /// Replace the governor's settings (after `VotingDelaySet`, `TimelockChange`, ...).
    Info(Box<GovernorInfo>),
    /// A governance event for the achievement system, into the outbox; `achievement` marks the
    /// events an account's achievements are made of (indexed by account).
    Outbox {
        /// The event.
        event: Box<GovernanceEvent>,
        /// Index it under its account (first proposal, first vote, executions, streaks).
        achievement: bool,
    },
    /// A voter's participation streak.
    Streak {
        /// Voter.
        voter: Address,
        /// New streak.
        streak: Streak,
    },
}

/// Everything derived from blocks `[from, to]`, committed atomically with the cursor.
#[derive(Clone, Debug, Default)]
pub struct Batch {
    /// First block.
    pub from: u64,
    /// Last block (the new cursor).
    pub to: u64,
    /// Hash of `to`.
    pub to_hash: B256,
    /// Headers to remember for reorg detection.
    pub blocks: Vec<BlockRecord>,
    /// Identities of the events applied.
    pub events: Vec<EventId>,
    /// The writes, in order.
    pub mutations: Vec<Mutation>,
    /// Journal previous values so the batch can be rolled back.
    pub reversible: bool,
    /// Forget journals and headers of blocks below this number.
    pub prune_below: Option<u64>,
}

/// Sort keys for proposal lists.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ProposalSort {
    /// Creation block.
    CreatedAt,
    /// Snapshot.
    StartBlock,
    /// Current deadline.
    EndBlock,
    /// For votes.
    ForVotes,
    /// All votes.
    TotalVotes,
}

impl ProposalSort {
    /// Parses an API sort name.
    pub fn parse(s: &str) -> Option<ProposalSort> {
        Some(match s {
            "createdAt" => ProposalSort::CreatedAt,
            "startBlock" => ProposalSort::StartBlock,
            "endBlock" => ProposalSort::EndBlock,
            "forVotes" => ProposalSort::ForVotes,
            "totalVotes" => ProposalSort::TotalVotes,
            _ => return None,
        })
    }
}

/// A proposal list query.
#[derive(Clone, Debug)]
pub struct ProposalQuery {
    /// Only these statuses (any when empty).
    pub statuses: Vec<ProposalStatus>,
    /// Only this proposer.
    pub proposer: Option<Address>,
    /// Created at or after (unix seconds).
    pub created_from: Option<u64>,
    /// Created at or before (unix seconds).
    pub created_to: Option<u64>,
    /// Deadline at or after (clock units).
    pub end_from: Option<u64>,
    /// Deadline at or before (clock units).
    pub end_to: Option<u64>,
    /// Sort key.
    pub sort: ProposalSort,
    /// Descending when true.
    pub descending: bool,
    /// Keyset cursor from a previous page.
    pub after: Option<Vec<u8>>,
    /// Page size.
    pub limit: usize,
}

/// Sort keys for vote lists.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum VoteSort {
    /// By block and log index.
    Block,
    /// By weight.
    Weight,
}

/// A vote list query.
#[derive(Clone, Debug)]
pub struct VoteQuery {
    /// Sort key.
    pub sort: VoteSort,
    /// Descending when true.
    pub descending: bool,
    /// Only this support value.
    pub support: Option<u8>,
    /// Keyset cursor from a previous page.
    pub after: Option<Vec<u8>>,
    /// Page size.
    pub limit: usize,
}

/// One page of results with the cursor of the next page.
#[derive(Clone, Debug)]
pub struct Page<T> {
    /// Items.
    pub items: Vec<T>,
    /// Opaque keyset cursor, when there is more.
    pub next: Option<Vec<u8>>,
}

/// Governance-wide counters.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Stats {
    /// Proposals.
    pub proposals: u64,
    /// Proposals per status.
    pub by_status: std::collections::BTreeMap<String, u64>,
    /// Vote records.
    pub votes: u64,
    /// Distinct voters.
    pub unique_voters: u64,
    /// Accounts with token state.
    pub accounts: u64,
    /// Events applied.
    pub events: u64,
    /// Vote records per UTC day (`YYYY-MM-DD`) of the vote's block, the most recent
    /// [`STATS_DAYS`] days that had votes.
    pub votes_by_day: std::collections::BTreeMap<String, u64>,
}

/// Days of [`Stats::votes_by_day`].
pub const STATS_DAYS: usize = 30;

/// The UTC day (`YYYY-MM-DD`) of a unix time.
pub fn utc_day(ts: u64) -> String {
    // Civil date from days since 1970-01-01 (H. Hinnant's algorithm), no allocation but the
    // result.
    let z = (ts / 86_400) as i64 + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1_460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!("{y:04}-{m:02}-{d:02}")
}

#[cfg(test)]
mod tests {
    #[test]
    fn utc_days_match_the_calendar() {
        assert_eq!(super::utc_day(0), "1970-01-01");
        assert_eq!(super::utc_day(951_782_400), "2000-02-29");
        assert_eq!(super::utc_day(1_764_028_799), "2025-11-24");
        assert_eq!(super::utc_day(1_764_028_800), "2025-11-25");
        for ts in (0..4_000_000_000u64).step_by(7_776_013) {
            let t = std::time::UNIX_EPOCH + std::time::Duration::from_secs(ts);
            assert_eq!(super::utc_day(ts), humantime::format_rfc3339_seconds(t).to_string()[..10]);
        }
    }
}

/// Vote records of one proposal by support (counts of records, not weights).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct VoteCounts {
    /// All records.
    pub total: u64,
    /// Against.
    pub against: u64,
    /// For.
    #[schema(rename = "for")]
    pub for_: u64,
    /// Abstain.
    pub abstain: u64,
    /// Fractional (split) votes.
    pub fractional: u64,
}

impl VoteCounts {
    /// Counts one record of `support`.
    pub fn add(&mut self, support: u8) {
        self.total += 1;
        match support {
            0 => self.against += 1,
            1 => self.for_ += 1,
            2 => self.abstain += 1,
            _ => self.fractional += 1,
        }
    }
}

/// What a reconciliation found and corrected.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ReconcileReport {
    /// Vote records read.
    pub votes_scanned: u64,
    /// Counters compared.
    pub counters_checked: u64,
    /// Counters that had drifted and were corrected.
    pub counters_corrected: u64,
    /// Sum of the absolute corrections.
    pub drift: u64,
}

/// Runs `f` against `store` on tokio's blocking pool and waits for it without blocking.
///
/// The `Store` trait is synchronous (redb blocks on disk; the CQL backend blocks on its own
/// runtime), so async code (the listener, the indexer, the pipeline, the actors) never calls it
/// in place: a blocking wait inside an async task stalls the executor thread, and the CQL
/// backend's wait on its runtime could spin forever once the task's cooperative budget is spent.
pub async fn off_thread<T, F>(store: &std::sync::Arc<dyn Store>, f: F) -> Result<T, StoreError>
where
    T: Send + 'static,
    F: FnOnce(&dyn Store) -> Result<T, StoreError> + Send + 'static,
{
    let store = store.clone();
    tokio::task::spawn_blocking(move || f(&*store)).await.map_err(|e| StoreError::Backend(format!("store task: {e}")))?
}

/// The storage interface every backend implements.
pub trait Store: Send + Sync + 'static {
    /// Discovery result the store was initialised with.
    fn info(&self) -> Result<Option<GovernorInfo>, StoreError>;
    /// Records the discovery result; refuses a store made for another chain or governor.
    fn init_info(&self, info: &GovernorInfo) -> Result<(), StoreError>;
    /// Last committed block.
    fn cursor(&self) -> Result<Option<Cursor>, StoreError>;
    /// Applies a batch and moves the cursor, atomically.
    fn commit(&self, batch: &Batch) -> Result<(), StoreError>;
    /// Undoes every reversible batch that reaches past `ancestor`; returns the new cursor
    /// (at or below `ancestor`). Atomic.
    fn rollback(&self, ancestor: u64) -> Result<Option<Cursor>, StoreError>;
    /// A remembered header.
    fn block(&self, number: u64) -> Result<Option<BlockRecord>, StoreError>;
    /// Remembered headers, ascending.
    fn recent_blocks(&self) -> Result<Vec<BlockRecord>, StoreError>;

    /// One proposal.
    fn proposal(&self, id: &U256) -> Result<Option<Proposal>, StoreError>;
    /// Proposals whose status is not final.
    fn live_proposals(&self) -> Result<Vec<Proposal>, StoreError>;
    /// A page of proposals.
    fn list_proposals(&self, q: &ProposalQuery) -> Result<Page<Proposal>, StoreError>;
    /// A proposal's status history, oldest first.
    fn history(&self, id: &U256) -> Result<Vec<HistoryEntry>, StoreError>;
    /// A voter's record on a proposal.
    fn vote(&self, id: &U256, voter: &Address) -> Result<Option<Vote>, StoreError>;
    /// A page of a proposal's votes.
    fn proposal_votes(&self, id: &U256, q: &VoteQuery) -> Result<Page<Vote>, StoreError>;
    /// A page of a voter's votes, newest first unless `q.descending` is false.
    fn voter_votes(&self, voter: &Address, q: &VoteQuery) -> Result<Page<Vote>, StoreError>;
    /// An account's latest state.
    fn account(&self, account: &Address) -> Result<Option<AccountPower>, StoreError>;
    /// Every account's latest state, in address order (for delegate rankings).
    fn latest_accounts(&self) -> Result<Vec<(Address, AccountPower)>, StoreError>;
    /// An account's state after block `block` (the last checkpoint at or before it).
    fn account_at_block(&self, account: &Address, block: u64) -> Result<Option<AccountPower>, StoreError>;
    /// An account's state at a timestamp (the last checkpoint with `timestamp <= ts`).
    fn account_at_time(&self, account: &Address, ts: u64) -> Result<Option<AccountPower>, StoreError>;
    /// A timelock operation.
    fn timelock_op(&self, id: &B256) -> Result<Option<TimelockOperation>, StoreError>;
    /// Counters for the stats endpoint.
    fn stats(&self) -> Result<Stats, StoreError>;

    /// A voter's participation streak.
    fn streak(&self, voter: &Address) -> Result<Streak, StoreError>;
    /// Appends every unpublished outbox event of blocks up to `finalized` to the feed, in chain
    /// order, exactly once; returns the items appended.
    fn publish_final(&self, finalized: u64) -> Result<Vec<FeedItem>, StoreError>;
    /// Position of the last feed item (0 when empty).
    fn feed_position(&self) -> Result<u64, StoreError>;
    /// Feed items after position `after`.
    fn feed(&self, after: u64, limit: usize) -> Result<Vec<FeedItem>, StoreError>;
    /// An account's achievement events (outbox, final or not) with whether each is published.
    fn account_events(&self, account: &Address) -> Result<Vec<(GovernanceEvent, bool)>, StoreError>;
    /// Number of vote records of a voter.
    fn voter_vote_count(&self, voter: &Address) -> Result<u64, StoreError>;
    /// Number of vote records of a proposal, by support.
    fn vote_counts(&self, id: &U256) -> Result<VoteCounts, StoreError>;
    /// Recomputes the vote counters from the vote records and corrects any drift: one
    /// proposal's counters, or (`None`) every counter. Backends whose counters are written in
    /// the same transaction as the records they count have nothing to correct.
    fn reconcile(&self, proposal: Option<&U256>) -> Result<ReconcileReport, StoreError> {
        let _ = proposal;
        Ok(ReconcileReport::default())
    }
}

/// Sort key of a proposal in a list (also its keyset cursor): the sort value, then the id.
pub(crate) fn proposal_sort_key(p: &Proposal, sort: ProposalSort) -> Vec<u8> {
    let id = crate::domain::u256_be(&p.proposal_id);
    let v: Vec<u8> = match sort {
        ProposalSort::CreatedAt => p.created.block_number.to_be_bytes().to_vec(),
        ProposalSort::StartBlock => p.start_block.to_be_bytes().to_vec(),
        ProposalSort::EndBlock => p.end_block.to_be_bytes().to_vec(),
        ProposalSort::ForVotes => crate::domain::u256_be(&p.for_votes).to_vec(),
        ProposalSort::TotalVotes => crate::domain::u256_be(&p.total_votes()).to_vec(),
    };
    [v.as_slice(), id.as_slice()].concat()
}

/// Filters, sorts and pages candidate proposals (every backend reads its narrowest index for
/// the candidates, then shares this step so pages are identical across backends).
pub(crate) fn page_proposals(candidates: Vec<Proposal>, q: &ProposalQuery) -> Page<Proposal> {
    let rows: Vec<(Vec<u8>, Proposal)> = candidates
        .into_iter()
        .filter(|p| q.statuses.is_empty() || q.statuses.contains(&p.status))
        .filter(|p| q.proposer.is_none_or(|a| p.proposer == a))
        .filter(|p| q.created_from.is_none_or(|t| p.created_at >= t))
        .filter(|p| q.created_to.is_none_or(|t| p.created_at <= t))
        .filter(|p| q.end_from.is_none_or(|t| p.end_block >= t))
        .filter(|p| q.end_to.is_none_or(|t| p.end_block <= t))
        .map(|p| (proposal_sort_key(&p, q.sort), p))
        .collect();
    page_sorted(rows, q.descending, q.after.as_deref(), q.limit)
}

/// Sorts `(key, item)` rows by key, keeps those after the keyset cursor and cuts a page.
pub(crate) fn page_sorted<T>(mut rows: Vec<(Vec<u8>, T)>, descending: bool, after: Option<&[u8]>, limit: usize) -> Page<T> {
    rows.sort_by(|a, b| a.0.cmp(&b.0));
    if descending {
        rows.reverse();
    }
    if let Some(after) = after {
        rows.retain(|(k, _)| if descending { k.as_slice() < after } else { k.as_slice() > after });
    }
    let more = rows.len() > limit;
    rows.truncate(limit);
    let next = if more { rows.last().map(|(k, _)| k.clone()) } else { None };
    Page { items: rows.into_iter().map(|(_, v)| v).collect(), next }
}

/// Causal order of statuses within one block (history is listed in this order).
pub(crate) fn status_rank(s: ProposalStatus) -> u8 {
    match s {
        ProposalStatus::Pending => 0,
        ProposalStatus::Active => 1,
        ProposalStatus::Succeeded | ProposalStatus::Defeated => 2,
        ProposalStatus::Queued => 3,
        ProposalStatus::Expired => 4,
        ProposalStatus::Executed | ProposalStatus::Canceled => 5,
    }
}

/// Sorts a proposal's history in causal order: block, then changes announced by a transaction
/// after clock-driven ones, then status rank.
pub(crate) fn sort_history(h: &mut [HistoryEntry]) {
    h.sort_by_key(|h| (h.block_number, h.transaction_hash.is_some(), status_rank(h.status)));
}
