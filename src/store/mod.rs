//! The store: one trait, designed query-first, with an embedded backend (redb).
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

use serde::{Deserialize, Serialize};

use crate::domain::{
    AccountPower, Address, GovernorInfo, HistoryEntry, Proposal, ProposalStatus, TimelockOperation, Vote, B256, U256,
};
use crate::streams::achievements::{FeedItem, GovernanceEvent, Streak};

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
#[derive(Clone, Debug, PartialEq)]
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
}
