//! The typed answers of the JSON routes: the handlers build these, [`super::view`] serializes
//! them, and the OpenAPI document describes them from the same types (`ToSchema`). Values are
//! written as the domain writes them: uint256 as decimal strings, times as RFC 3339 (UTC).

use std::collections::BTreeMap;

use serde::Serialize;
use utoipa::ToSchema;

use crate::domain::achievement::FeedItem;
use crate::domain::achievement::GovernanceEvent;
use crate::domain::schema::{Timestamp, Uint256};
use crate::domain::{Address, ClockMode, HexBytes, HistoryEntry, Proposal, ProposalStatus, TimelockOperation, UserVotingPower, Vote, B256};
use crate::store::VoteCounts;

// As listed by `GET /v1/proposals` and pushed as the websocket's `proposal.updated`. One-line doc
// comments here: they are the document's descriptions.
/// A proposal as listed. Without `fields` every property is present; with `fields` only those named.
#[derive(Debug, Clone, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
#[schema(as = ProposalSummary)]
pub struct ProposalView {
    // The proposal's own members (no doc comment: it would wrap the inlined schema in a `oneOf`).
    #[serde(flatten)]
    #[schema(inline)]
    pub proposal: Proposal,
    /// For + against + abstain.
    #[schema(value_type = Uint256)]
    pub total_votes: String,
    /// True while the last change is newer than the finalized block (`chain.confirmations`): a reorg may still undo it.
    pub provisional: bool,
    /// The governor's clock: `startBlock`/`endBlock` are block numbers or unix seconds.
    pub clock_mode: ClockMode,
}

impl ProposalView {
    /// The proposal as served; `provisional` as the caller reads the finalized block.
    pub fn new(proposal: Proposal, clock_mode: ClockMode, provisional: bool) -> Self {
        ProposalView { total_votes: proposal.total_votes().to_string(), proposal, provisional, clock_mode }
    }
}

// `GET /v1/proposals/{proposalId}`.
/// A proposal with its status history. Without `fields` every property is present; with `fields` only those named.
#[derive(Debug, Clone, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
#[schema(as = Proposal)]
pub struct ProposalDetailView {
    // The proposal as listed.
    #[serde(flatten)]
    #[schema(inline)]
    pub summary: ProposalView,
    /// Status changes, oldest first.
    pub history: Vec<HistoryEntry>,
    /// Vote records per support (counts of records, not weights).
    pub vote_counts: VoteCounts,
}

/// A page of proposals.
#[derive(Debug, Clone, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct ProposalPage {
    /// The proposals of this page.
    pub items: Vec<ProposalView>,
    /// Pass as `cursor` for the next page; null on the last page.
    #[schema(pattern = "^[A-Za-z0-9_-]+$")]
    pub next_cursor: Option<String>,
}

/// A vote record. Without `fields` every property is present; with `fields` only those named.
#[derive(Debug, Clone, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
#[schema(as = Vote)]
pub struct VoteView {
    // The record's own members.
    #[serde(flatten)]
    #[schema(inline)]
    pub vote: Vote,
    /// True while the vote's block is newer than the finalized block.
    pub provisional: bool,
    /// The voter's weight at the proposal's snapshot, part by part.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(value_type = WeightBreakdown)]
    pub weight_breakdown: Option<WeightBreakdown>,
}

/// A page of votes.
#[derive(Debug, Clone, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct VotePage {
    /// The votes of this page.
    pub items: Vec<VoteView>,
    /// Pass as `cursor` for the next page; null on the last page.
    #[schema(pattern = "^[A-Za-z0-9_-]+$")]
    pub next_cursor: Option<String>,
}

/// An account's voting power, part by part. Without `fields` every property is present; with `fields` only those named.
#[derive(Debug, Clone, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
#[schema(as = VotingPower)]
pub struct VotingPowerView {
    // The parts.
    #[serde(flatten)]
    #[schema(inline)]
    pub power: UserVotingPower,
    /// True while `blockNumber` is newer than the finalized block.
    pub provisional: bool,
}

/// The voter's weight at a proposal's snapshot, part by part.
#[derive(Debug, Clone, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct WeightBreakdown {
    /// The voter's own balance, counted when it delegates to itself.
    #[schema(value_type = Uint256)]
    pub base_weight: String,
    /// Weight delegated to the voter by others.
    #[schema(value_type = Uint256)]
    pub delegated_weight: String,
    /// Bonus from achievement NFTs (zero for governors without one).
    #[schema(value_type = Uint256)]
    pub nft_bonus: String,
    /// What the governor counts: token votes plus the NFT bonus.
    #[schema(value_type = Uint256)]
    pub total_weight: String,
}

impl From<&UserVotingPower> for WeightBreakdown {
    fn from(vp: &UserVotingPower) -> Self {
        WeightBreakdown {
            base_weight: vp.base_weight.to_string(),
            delegated_weight: vp.delegated_weight.to_string(),
            nft_bonus: vp.nft_bonus.to_string(),
            total_weight: vp.total_weight.to_string(),
        }
    }
}

/// An account ranked by the weight the governor counts now. Without `fields` every property is
/// present; with `fields` only those named.
#[derive(Debug, Clone, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct Delegate {
    /// The account.
    pub address: Address,
    /// What the governor counts: token votes plus the NFT bonus.
    #[schema(value_type = Uint256)]
    pub total_weight: String,
    /// Token votes (`getVotes` of the token): own delegated balance plus others'.
    #[schema(value_type = Uint256)]
    pub votes: String,
    /// Bonus from achievement NFTs.
    #[schema(value_type = Uint256)]
    pub nft_bonus: String,
    /// Token balance.
    #[schema(value_type = Uint256)]
    pub balance: String,
    /// Other accounts delegating to this one.
    pub delegators: u64,
    /// The account delegates to itself.
    pub self_delegated: bool,
    /// The account's delegate, if any.
    pub delegate: Option<Address>,
}

/// A page of delegates.
#[derive(Debug, Clone, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct DelegatePage {
    /// The delegates of this page, by total weight then address, descending.
    pub items: Vec<Delegate>,
    /// Pass as `cursor` for the next page; null on the last page.
    #[schema(pattern = "^[A-Za-z0-9_-]+$")]
    pub next_cursor: Option<String>,
}

/// NFT weight bonus and special benefits of an account. Without `fields` every property is
/// present; with `fields` only those named.
#[derive(Debug, Clone, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct GovernanceBenefits {
    /// The account.
    pub user: Address,
    /// Governance-weight bonus from achievement NFTs.
    #[schema(value_type = Uint256)]
    pub nft_bonus: String,
    /// Proposal-fee discount in basis points.
    #[schema(value_type = Uint256)]
    pub fee_discount_bps: String,
    /// Priority boost.
    #[schema(value_type = Uint256)]
    pub priority_boost: String,
    /// The benefit executor, when the governor has one.
    pub benefit_executor: Option<Address>,
    /// Block the answer is for.
    pub block_number: u64,
    /// True while `blockNumber` is newer than the finalized block.
    pub provisional: bool,
}

/// Where a proposal's execution stands.
#[derive(Debug, Clone, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct ExecutionStatus {
    /// On-chain proposal id.
    #[schema(value_type = Uint256)]
    pub proposal_id: String,
    /// The proposal's status.
    pub status: ProposalStatus,
    /// The execution state derived from the status, the eta and the indexed time.
    pub execution_state: ExecutionState,
    /// Timelock eta, once queued.
    #[schema(value_type = Option<Timestamp>)]
    pub eta: Option<String>,
    /// When a queued operation expires (timelocks with a grace period).
    #[schema(value_type = Option<Timestamp>)]
    pub expires_at: Option<String>,
    /// The governor's timelock, if any.
    pub timelock: Option<Address>,
    /// Timelock operation id, once queued.
    pub timelock_operation_id: Option<B256>,
    /// The timelock operation, once scheduled.
    pub operation: Option<TimelockOperation>,
    /// Execution time, once executed.
    #[schema(value_type = Option<Timestamp>)]
    pub executed_at: Option<String>,
    /// Call targets.
    pub targets: Vec<Address>,
    /// Call data.
    pub calldatas: Vec<HexBytes>,
}

/// Execution state of a proposal (an open set: new values may appear within `/v1`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub enum ExecutionState {
    /// Executed.
    Executed,
    /// Canceled.
    Canceled,
    /// Queued but not executed within the grace period.
    Expired,
    /// Voting closed without quorum or majority.
    Defeated,
    /// Pending or active.
    Voting,
    /// Succeeded, not queued yet.
    AwaitingQueue,
    /// Queued and past its eta.
    Ready,
    /// Queued, eta not reached.
    Waiting,
}

/// Governance-wide figures.
#[derive(Debug, Clone, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct Stats {
    /// Proposals.
    pub proposals: u64,
    /// Proposals per status name.
    pub by_status: BTreeMap<String, u64>,
    /// Proposals now Active.
    pub active_proposals: u64,
    /// Vote records.
    pub votes: u64,
    /// Distinct voters.
    pub unique_voters: u64,
    /// Accounts with token state.
    pub accounts: u64,
    /// Chain events applied.
    pub events_indexed: u64,
    /// Vote records per UTC day (`YYYY-MM-DD`), the 30 most recent days with votes.
    pub votes_by_day: BTreeMap<String, u64>,
    /// Unique voters per account with token state.
    #[schema(minimum = 0.0)]
    pub voter_turnout: f64,
    /// Vote records per proposal.
    #[schema(minimum = 0.0)]
    pub average_votes_per_proposal: f64,
    /// Passed (Succeeded, Queued, Executed, Expired) per decided proposal (passed or Defeated).
    #[schema(minimum = 0.0, maximum = 1.0)]
    pub pass_rate: f64,
    /// Executed per passed proposal.
    #[schema(minimum = 0.0, maximum = 1.0)]
    pub execution_rate: f64,
}

/// Where indexing stands, and what discovery found. The contract fields are null until the
/// governor has been discovered.
#[derive(Debug, Clone, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct Status {
    /// Chain id of the node.
    pub chain_id: u64,
    /// The governor.
    pub governor: Option<Address>,
    /// The governor's `name()`.
    pub governor_name: Option<String>,
    /// The governor's vote source (`token()`): the token or a voting manager.
    pub vote_source: Option<Address>,
    /// The ERC20Votes token.
    pub token: Option<Address>,
    /// CultureBridge benefit executor, if any.
    pub benefit_executor: Option<Address>,
    /// CultureBridge achievement NFT, if any.
    pub achievement_nft: Option<Address>,
    /// The timelock, if any.
    pub timelock: Option<Address>,
    /// `CLOCK_MODE()`.
    pub clock_mode: Option<ClockMode>,
    /// `COUNTING_MODE()`.
    pub counting_mode: Option<String>,
    /// `votingDelay()` at discovery, in clock units.
    pub voting_delay: Option<u64>,
    /// `votingPeriod()` at discovery, in clock units.
    pub voting_period: Option<u64>,
    /// `proposalThreshold()` at discovery.
    #[schema(value_type = Option<Uint256>)]
    pub proposal_threshold: Option<String>,
    /// First block indexed.
    pub start_block: u64,
    /// The node's head.
    pub head_block: u64,
    /// Last block whose effects are committed.
    pub indexed_block: u64,
    /// Last block deep enough to be final (`chain.confirmations`).
    pub finalized_block: u64,
    /// Confirmations configured.
    pub confirmations: u64,
    /// Head minus indexed.
    pub lag_blocks: u64,
    /// Backfill done; following the head.
    pub caught_up: bool,
    /// The last RPC request succeeded.
    pub rpc_reachable: bool,
    /// Reorgs rolled back since start-up.
    pub reorgs_handled: u64,
}

/// An account's governance achievements.
#[derive(Debug, Clone, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct GovernanceAchievements {
    /// The account.
    pub user: Address,
    /// Proposals the account created.
    pub proposals_created: u64,
    /// Vote records of the account.
    pub votes_cast: u64,
    /// First proposal, first vote, executed proposals, then participation streaks.
    pub achievements: Vec<Achievement>,
}

/// One achievement and the event that earned it.
#[derive(Debug, Clone, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct Achievement {
    /// `firstProposal`, `firstVote`, `executedProposal` or `participationStreak<N>` (N in 3, 5,
    /// 10, 20, 50, 100).
    #[schema(pattern = "^(firstProposal|firstVote|executedProposal|participationStreak[0-9]+)$")]
    pub achievement: String,
    /// The event is final (published on the feed); false while a reorg may still undo it.
    pub r#final: bool,
    /// The governance event that earned it (documented as `schema/`'s `GovernanceEvent`).
    #[schema(value_type = Object)]
    pub earned_by: GovernanceEvent,
}

/// A page of the governance event feed.
#[derive(Debug, Clone, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct GovernanceEventPage {
    /// Feed items after `after`, in order (documented as `schema/`'s `GovernanceFeedItem`).
    #[schema(value_type = Vec<Object>)]
    pub items: Vec<FeedItem>,
    /// The last `seq` of this page (`after` when empty): pass it as `after`.
    pub next_after: u64,
}

/// What the admin route invalidated.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct CacheInvalidation {
    /// The cache tags invalidated: `p:<proposalId>`, `a:<address>`, `proposals`, `stats` or `*`.
    pub invalidated: Vec<String>,
    /// Other instances were told (through Redis).
    pub propagated: bool,
    /// This instance has a Redis level.
    pub redis: bool,
}

/// `GET /healthz`.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct Health {
    /// Always `ok`.
    #[schema(value_type = String, pattern = "^ok$")]
    pub status: &'static str,
}

/// `GET /readyz` when ready.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct Ready {
    /// Always `ready`.
    #[schema(value_type = String, pattern = "^ready$")]
    pub status: &'static str,
}
