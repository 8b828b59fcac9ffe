//! The governance events of the achievement system (the guide's §6.1) as data: the versioned
//! event (`schema/governance-event.v1.json`), the feed item that carries it, and a voter's
//! participation streak. The pipeline derives them, the store keeps them in its outbox and
//! feed, `streams::achievements` publishes them.

use serde::{Deserialize, Serialize};
use serde_json::json;

use super::{Address, B256, U256};

/// Version of the event schema.
pub const SCHEMA_VERSION: u32 = 1;

/// Streak lengths that are achievements.
pub const STREAK_MILESTONES: &[u64] = &[3, 5, 10, 20, 50, 100];

/// Event kinds.
pub mod kind {
    /// A proposal was created.
    pub const PROPOSAL_CREATED: &str = "proposal.created";
    /// A vote was cast.
    pub const VOTE_CAST: &str = "vote.cast";
    /// A proposal was executed.
    pub const PROPOSAL_EXECUTED: &str = "proposal.executed";
    /// A voter voted on N consecutive proposals.
    pub const PARTICIPATION_STREAK: &str = "participation.streak";
}

/// One governance event (schema v1).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct GovernanceEvent {
    /// Schema version.
    pub schema_version: u32,
    /// Identity: `<chainId>:<blockHash>:<logIndex>:<kind>`; consumers deduplicate on it.
    pub id: String,
    /// Kind.
    pub kind: String,
    /// Chain id.
    pub chain_id: u64,
    /// Governor.
    pub governor: Address,
    /// The account the event is about (proposer or voter).
    pub account: Address,
    /// Proposal id (decimal string).
    pub proposal_id: String,
    /// Block.
    pub block_number: u64,
    /// Block hash.
    pub block_hash: B256,
    /// Log index.
    pub log_index: u64,
    /// Transaction.
    pub transaction_hash: B256,
    /// Block time (RFC 3339).
    pub timestamp: String,
    /// Kind-specific data.
    pub data: serde_json::Value,
}

/// Where an event comes from on chain.
#[derive(Clone, Copy, Debug)]
pub struct Origin {
    /// Chain id.
    pub chain_id: u64,
    /// Governor.
    pub governor: Address,
    /// Block.
    pub block_number: u64,
    /// Block hash.
    pub block_hash: B256,
    /// Log index.
    pub log_index: u64,
    /// Transaction.
    pub tx_hash: B256,
    /// Block time (unix seconds).
    pub timestamp: u64,
}

impl GovernanceEvent {
    /// Builds an event of `kind` about `account` and `proposal_id`.
    pub fn new(kind: &str, o: &Origin, account: Address, proposal_id: &U256, data: serde_json::Value) -> Self {
        GovernanceEvent {
            schema_version: SCHEMA_VERSION,
            id: format!("{}:{}:{}:{}", o.chain_id, o.block_hash, o.log_index, kind),
            kind: kind.to_string(),
            chain_id: o.chain_id,
            governor: o.governor,
            account,
            proposal_id: proposal_id.to_string(),
            block_number: o.block_number,
            block_hash: o.block_hash,
            log_index: o.log_index,
            transaction_hash: o.tx_hash,
            timestamp: crate::domain::time::format(o.timestamp),
            data,
        }
    }

    /// Order key within the outbox: block, log index, kind.
    pub fn key(&self) -> Vec<u8> {
        let mut k = Vec::with_capacity(17 + self.kind.len());
        k.extend_from_slice(&self.block_number.to_be_bytes());
        k.extend_from_slice(&self.log_index.to_be_bytes());
        k.extend_from_slice(self.kind.as_bytes());
        k
    }
}

/// A voter's participation streak: the creation index of the last proposal voted on and the
/// number of consecutive proposals (by creation order) voted on up to it.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Streak {
    /// Creation index of the last proposal in the streak.
    pub last: u64,
    /// Length of the streak.
    pub len: u64,
}

impl Streak {
    /// The streak after a vote on the proposal with creation index `index`; `Some(len)` when it
    /// reaches a milestone.
    pub fn on_vote(&mut self, index: u64) -> Option<u64> {
        if self.len > 0 && index <= self.last {
            // Voting again (fractional) or on an older proposal: the streak does not move.
            return None;
        }
        self.len = if self.len > 0 && index == self.last + 1 { self.len + 1 } else { 1 };
        self.last = index;
        STREAK_MILESTONES.contains(&self.len).then_some(self.len)
    }
}

/// One item of the feed: an event once final, or the retraction of one a reorg removed.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct FeedItem {
    /// Position in the feed (1, 2, ...).
    pub seq: u64,
    /// `event` or `retraction`.
    #[serde(rename = "type")]
    pub item_type: String,
    /// The event (for a retraction: the event retracted).
    pub event: GovernanceEvent,
}

impl FeedItem {
    /// The JSON of a feed item built around an event already in JSON (`event_json`, as
    /// `serde_json` writes a [`GovernanceEvent`]), byte for byte what serializing the item
    /// gives, without decoding and encoding the event again.
    pub fn json_around(seq: u64, item_type: &str, event_json: &[u8]) -> Vec<u8> {
        let head = format!("{{\"seq\":{seq},\"type\":{},\"event\":", serde_json::Value::from(item_type));
        let mut v = Vec::with_capacity(head.len() + event_json.len() + 1);
        v.extend_from_slice(head.as_bytes());
        v.extend_from_slice(event_json);
        v.push(b'}');
        v
    }
}

/// Data of each kind.
pub fn created_data(title: &str) -> serde_json::Value {
    json!({ "title": title })
}

/// Data of `vote.cast`.
pub fn vote_data(support: u8, weight: &U256) -> serde_json::Value {
    json!({ "support": support, "weight": weight.to_string() })
}

/// Data of `participation.streak`.
pub fn streak_data(len: u64) -> serde_json::Value {
    json!({ "streak": len })
}
