//! The governance data model shared by every room: proposals, votes, status history and
//! voting power, plus the small value types (addresses, hashes, uint256) they are made of.
//!
//! Values serialize two ways with one serde implementation: human-readable formats (the JSON
//! API) get `0x` hex and decimal strings, binary formats (the store) get fixed-width bytes.

pub mod achievement;
mod log;
pub mod schema;

pub use log::{keccak256, RawLog};

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

pub use primitive_types::U256;

/// A 20-byte account or contract address.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Default)]
pub struct Address(pub [u8; 20]);

/// A 32-byte hash (block hash, transaction hash, timelock operation id).
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Default)]
pub struct B256(pub [u8; 32]);

/// Error for a malformed hex value (address, hash, uint256).
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ParseError {
    /// Not `0x` followed by the right number of hex digits.
    #[error("expected 0x followed by {0} hex digits")]
    Hex(usize),
    /// Not a decimal or 0x-hex unsigned integer below 2^256.
    #[error("expected an unsigned integer below 2^256 (decimal or 0x hex)")]
    Uint,
}

fn parse_fixed<const N: usize>(s: &str) -> Result<[u8; N], ParseError> {
    let h = s.strip_prefix("0x").or_else(|| s.strip_prefix("0X")).ok_or(ParseError::Hex(N * 2))?;
    if h.len() != N * 2 {
        return Err(ParseError::Hex(N * 2));
    }
    let mut out = [0u8; N];
    hex::decode_to_slice(h, &mut out).map_err(|_| ParseError::Hex(N * 2))?;
    Ok(out)
}

macro_rules! fixed_bytes {
    ($t:ident, $n:expr) => {
        impl $t {
            /// Parses `0x`-prefixed hex.
            pub fn parse(s: &str) -> Result<Self, ParseError> {
                parse_fixed::<$n>(s).map($t)
            }
            /// Lower-case `0x` hex.
            pub fn to_hex(&self) -> String {
                format!("0x{}", hex::encode(self.0))
            }
            /// Builds from a slice of exactly the right length.
            pub fn from_slice(b: &[u8]) -> Option<Self> {
                <[u8; $n]>::try_from(b).ok().map($t)
            }
        }
        impl fmt::Display for $t {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.to_hex())
            }
        }
        impl fmt::Debug for $t {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.to_hex())
            }
        }
        impl FromStr for $t {
            type Err = ParseError;
            fn from_str(s: &str) -> Result<Self, ParseError> {
                Self::parse(s)
            }
        }
        impl Serialize for $t {
            fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                if s.is_human_readable() {
                    s.serialize_str(&self.to_hex())
                } else {
                    self.0.serialize(s)
                }
            }
        }
        impl<'de> Deserialize<'de> for $t {
            fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                if d.is_human_readable() {
                    let s = String::deserialize(d)?;
                    Self::parse(&s).map_err(serde::de::Error::custom)
                } else {
                    <[u8; $n]>::deserialize(d).map($t)
                }
            }
        }
    };
}
fixed_bytes!(Address, 20);
fixed_bytes!(B256, 32);

impl Address {
    /// The zero address (mint source, burn target, "no delegate").
    pub const ZERO: Address = Address([0u8; 20]);
    /// True for the zero address.
    pub fn is_zero(&self) -> bool {
        self.0 == [0u8; 20]
    }
}

/// Parses a decimal or `0x` hex uint256.
pub fn parse_u256(s: &str) -> Result<U256, ParseError> {
    if let Some(h) = s.strip_prefix("0x") {
        if h.is_empty() || h.len() > 64 {
            return Err(ParseError::Uint);
        }
        U256::from_str_radix(h, 16).map_err(|_| ParseError::Uint)
    } else {
        if s.is_empty() || s.len() > 78 || !s.bytes().all(|b| b.is_ascii_digit()) {
            return Err(ParseError::Uint);
        }
        U256::from_dec_str(s).map_err(|_| ParseError::Uint)
    }
}

/// Big-endian 32 bytes of a uint256 (sortable in keys).
pub fn u256_be(v: &U256) -> [u8; 32] {
    let mut b = [0u8; 32];
    v.to_big_endian(&mut b);
    b
}

/// serde for uint256: decimal string for humans, 32 big-endian bytes for the store.
pub mod u256 {
    use super::*;
    /// Serializes a uint256.
    pub fn serialize<S: Serializer>(v: &U256, s: S) -> Result<S::Ok, S::Error> {
        if s.is_human_readable() {
            s.serialize_str(&v.to_string())
        } else {
            u256_be(v).serialize(s)
        }
    }
    /// Deserializes a uint256.
    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<U256, D::Error> {
        if d.is_human_readable() {
            let s = String::deserialize(d)?;
            parse_u256(&s).map_err(serde::de::Error::custom)
        } else {
            let b = <[u8; 32]>::deserialize(d)?;
            Ok(U256::from_big_endian(&b))
        }
    }
}

/// serde for `Vec<U256>`.
pub mod u256_vec {
    use super::*;
    #[derive(Serialize, Deserialize)]
    struct W(#[serde(with = "super::u256")] U256);
    /// Serializes a list of uint256.
    pub fn serialize<S: Serializer>(v: &[U256], s: S) -> Result<S::Ok, S::Error> {
        let w: Vec<W> = v.iter().map(|x| W(*x)).collect();
        w.serialize(s)
    }
    /// Deserializes a list of uint256.
    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<U256>, D::Error> {
        Ok(Vec::<W>::deserialize(d)?.into_iter().map(|w| w.0).collect())
    }
}

/// serde for `Option<U256>`.
pub mod u256_opt {
    use super::*;
    #[derive(Serialize, Deserialize)]
    struct W(#[serde(with = "super::u256")] U256);
    /// Serializes an optional uint256.
    pub fn serialize<S: Serializer>(v: &Option<U256>, s: S) -> Result<S::Ok, S::Error> {
        v.map(W).serialize(s)
    }
    /// Deserializes an optional uint256.
    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Option<U256>, D::Error> {
        Ok(Option::<W>::deserialize(d)?.map(|w| w.0))
    }
}

/// serde for unix-second timestamps: RFC 3339 for humans, u64 for the store.
pub mod time {
    use super::*;
    use std::time::{Duration, UNIX_EPOCH};
    /// Formats unix seconds as RFC 3339 (UTC).
    pub fn format(secs: u64) -> String {
        humantime::format_rfc3339_seconds(UNIX_EPOCH + Duration::from_secs(secs)).to_string()
    }
    /// Parses unix seconds or an RFC 3339 time.
    pub fn parse(s: &str) -> Option<u64> {
        if let Ok(n) = s.parse::<u64>() {
            return Some(n);
        }
        humantime::parse_rfc3339_weak(s).ok().and_then(|t| t.duration_since(UNIX_EPOCH).ok()).map(|d| d.as_secs())
    }
    /// Serializes a timestamp.
    pub fn serialize<S: Serializer>(v: &u64, s: S) -> Result<S::Ok, S::Error> {
        if s.is_human_readable() {
            s.serialize_str(&format(*v))
        } else {
            v.serialize(s)
        }
    }
    /// Deserializes a timestamp.
    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<u64, D::Error> {
        if d.is_human_readable() {
            let s = String::deserialize(d)?;
            parse(&s).ok_or_else(|| serde::de::Error::custom("expected an RFC 3339 time"))
        } else {
            u64::deserialize(d)
        }
    }
}

/// serde for optional timestamps.
pub mod time_opt {
    use super::*;
    #[derive(Serialize, Deserialize)]
    struct W(#[serde(with = "super::time")] u64);
    /// Serializes an optional timestamp.
    pub fn serialize<S: Serializer>(v: &Option<u64>, s: S) -> Result<S::Ok, S::Error> {
        v.map(W).serialize(s)
    }
    /// Deserializes an optional timestamp.
    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Option<u64>, D::Error> {
        Ok(Option::<W>::deserialize(d)?.map(|w| w.0))
    }
}

/// Hex-encoded bytes (`0x...`) for humans, raw bytes for the store.
#[derive(Clone, PartialEq, Eq, Default)]
pub struct HexBytes(pub Vec<u8>);

impl fmt::Debug for HexBytes {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "0x{}", hex::encode(&self.0))
    }
}
impl Serialize for HexBytes {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        if s.is_human_readable() {
            s.serialize_str(&format!("0x{}", hex::encode(&self.0)))
        } else {
            s.serialize_bytes(&self.0)
        }
    }
}
impl<'de> Deserialize<'de> for HexBytes {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        if d.is_human_readable() {
            let s = String::deserialize(d)?;
            let h = s.strip_prefix("0x").ok_or_else(|| serde::de::Error::custom("expected 0x hex"))?;
            hex::decode(h).map(HexBytes).map_err(serde::de::Error::custom)
        } else {
            Ok(HexBytes(serde_bytes_vec(d)?))
        }
    }
}
fn serde_bytes_vec<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<u8>, D::Error> {
    struct V;
    impl<'de> serde::de::Visitor<'de> for V {
        type Value = Vec<u8>;
        fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.write_str("bytes")
        }
        fn visit_bytes<E>(self, v: &[u8]) -> Result<Vec<u8>, E> {
            Ok(v.to_vec())
        }
        fn visit_byte_buf<E>(self, v: Vec<u8>) -> Result<Vec<u8>, E> {
            Ok(v)
        }
        fn visit_seq<A: serde::de::SeqAccess<'de>>(self, mut a: A) -> Result<Vec<u8>, A::Error> {
            let mut out = Vec::new();
            while let Some(b) = a.next_element()? {
                out.push(b);
            }
            Ok(out)
        }
    }
    d.deserialize_byte_buf(V)
}

/// How the governor measures time (ERC-6372 `CLOCK_MODE()`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub enum ClockMode {
    /// `mode=blocknumber&from=default`: timepoints are block numbers.
    BlockNumber,
    /// `mode=timestamp`: timepoints are unix seconds.
    Timestamp,
}

impl ClockMode {
    /// Parses an ERC-6372 clock mode string.
    pub fn parse(s: &str) -> Option<ClockMode> {
        if s.contains("mode=timestamp") {
            Some(ClockMode::Timestamp)
        } else if s.contains("mode=blocknumber") {
            Some(ClockMode::BlockNumber)
        } else {
            None
        }
    }
    /// The clock value of a block in this mode.
    pub fn clock_of(&self, block: u64, timestamp: u64) -> u64 {
        match self {
            ClockMode::BlockNumber => block,
            ClockMode::Timestamp => timestamp,
        }
    }
}

/// Which votes count towards quorum (from `COUNTING_MODE()`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum QuorumCounting {
    /// `quorum=for,abstain` (GovernorCountingSimple).
    ForAbstain,
    /// `quorum=for` or `quorum=bravo`: only For votes count.
    For,
}

impl QuorumCounting {
    /// Reads the `quorum=` parameter of an OpenZeppelin `COUNTING_MODE()` string.
    pub fn parse(counting_mode: &str) -> QuorumCounting {
        let q = counting_mode.split('&').find_map(|kv| kv.strip_prefix("quorum=")).unwrap_or("for,abstain");
        if q.contains("abstain") {
            QuorumCounting::ForAbstain
        } else {
            QuorumCounting::For
        }
    }
}

/// A proposal's lifecycle status: the eight values of OpenZeppelin's `ProposalState`, in order.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize, utoipa::ToSchema)]
pub enum ProposalStatus {
    /// Created, voting not started (`snapshot >= clock`).
    Pending = 0,
    /// Voting open.
    Active = 1,
    /// Canceled by the proposer, a guardian or on the timelock.
    Canceled = 2,
    /// Voting closed without quorum or majority.
    Defeated = 3,
    /// Voting closed with quorum and majority; not queued yet.
    Succeeded = 4,
    /// Scheduled on the timelock.
    Queued = 5,
    /// Queued but not executed within the grace period.
    Expired = 6,
    /// Executed.
    Executed = 7,
}

impl ProposalStatus {
    /// All statuses, in contract order.
    pub const ALL: [ProposalStatus; 8] = [
        ProposalStatus::Pending,
        ProposalStatus::Active,
        ProposalStatus::Canceled,
        ProposalStatus::Defeated,
        ProposalStatus::Succeeded,
        ProposalStatus::Queued,
        ProposalStatus::Expired,
        ProposalStatus::Executed,
    ];
    /// The status for a `state()` return value.
    pub fn from_u8(v: u8) -> Option<ProposalStatus> {
        Self::ALL.get(v as usize).copied()
    }
    /// The name used in the API (`Active`, ...).
    pub fn as_str(&self) -> &'static str {
        match self {
            ProposalStatus::Pending => "Pending",
            ProposalStatus::Active => "Active",
            ProposalStatus::Canceled => "Canceled",
            ProposalStatus::Defeated => "Defeated",
            ProposalStatus::Succeeded => "Succeeded",
            ProposalStatus::Queued => "Queued",
            ProposalStatus::Expired => "Expired",
            ProposalStatus::Executed => "Executed",
        }
    }
    /// Parses an API status name (case-insensitive).
    pub fn parse(s: &str) -> Option<ProposalStatus> {
        Self::ALL.iter().copied().find(|st| st.as_str().eq_ignore_ascii_case(s))
    }
    /// True once nothing can change the status any more.
    pub fn is_final(&self) -> bool {
        matches!(self, ProposalStatus::Canceled | ProposalStatus::Defeated | ProposalStatus::Expired | ProposalStatus::Executed)
    }
}

impl fmt::Display for ProposalStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Where something happened on chain.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, Default, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct ChainPoint {
    /// Block number.
    pub block_number: u64,
    /// Block timestamp (unix seconds; RFC 3339 in JSON).
    #[serde(with = "time")]
    #[schema(value_type = crate::domain::schema::Timestamp)]
    pub timestamp: u64,
    /// Transaction, when an event caused it (none for clock-driven changes).
    pub transaction_hash: Option<B256>,
}

/// A governance proposal as the governor sees it, plus indexing metadata.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct Proposal {
    /// Stable UUID derived from chain id, governor and proposal id.
    #[schema(value_type = crate::domain::schema::Uuid)]
    pub id: uuid::Uuid,
    /// On-chain proposal id.
    #[serde(with = "u256")]
    #[schema(value_type = crate::domain::schema::Uint256)]
    pub proposal_id: U256,
    /// First line of the description, without Markdown heading marks.
    pub title: String,
    /// Full description as proposed.
    pub description: String,
    /// Proposer address.
    pub proposer: Address,
    /// Vote start (the snapshot timepoint), in the governor's clock units.
    pub start_block: u64,
    /// Current deadline including late-quorum extensions, in clock units.
    pub end_block: u64,
    /// Deadline as proposed, before any extension.
    pub original_end_block: u64,
    /// Position in creation order (0 for the first proposal indexed).
    pub creation_index: u64,
    /// Current status.
    pub status: ProposalStatus,
    /// Votes for.
    #[serde(with = "u256")]
    #[schema(value_type = crate::domain::schema::Uint256)]
    pub for_votes: U256,
    /// Votes against.
    #[serde(with = "u256")]
    #[schema(value_type = crate::domain::schema::Uint256)]
    pub against_votes: U256,
    /// Abstaining votes.
    #[serde(with = "u256")]
    #[schema(value_type = crate::domain::schema::Uint256)]
    pub abstain_votes: U256,
    /// Number of distinct vote records.
    pub vote_count: u64,
    /// `quorum(snapshot)`, known once the snapshot has passed.
    #[serde(with = "u256_opt")]
    #[schema(value_type = Option<crate::domain::schema::Uint256>)]
    pub quorum: Option<U256>,
    /// Call targets.
    pub targets: Vec<Address>,
    /// Call values (wei).
    #[serde(with = "u256_vec")]
    #[schema(value_type = Vec<crate::domain::schema::Uint256>)]
    pub values: Vec<U256>,
    /// Function signatures as emitted (empty strings in OpenZeppelin 5).
    pub signatures: Vec<String>,
    /// Call data.
    pub calldatas: Vec<HexBytes>,
    /// Timelock eta (unix seconds; RFC 3339 in JSON) once queued.
    #[serde(with = "time_opt")]
    #[schema(value_type = Option<crate::domain::schema::Timestamp>)]
    pub eta: Option<u64>,
    /// Timelock operation id once queued.
    pub timelock_operation_id: Option<B256>,
    /// Where the proposal was created.
    pub created: ChainPoint,
    /// Creation time (same as `created.timestamp`), for sorting and filters.
    #[serde(with = "time")]
    #[schema(value_type = crate::domain::schema::Timestamp)]
    pub created_at: u64,
    /// Time of the last change.
    #[serde(with = "time")]
    #[schema(value_type = crate::domain::schema::Timestamp)]
    pub updated_at: u64,
    /// Block of the last change.
    pub updated_block: u64,
    /// Execution time, once executed.
    #[serde(with = "time_opt")]
    #[schema(value_type = Option<crate::domain::schema::Timestamp>)]
    pub executed_at: Option<u64>,
    /// First URI found in the description (ipfs://, ar://, https://), if any (the guide's
    /// `metadataURI`).
    #[serde(rename = "metadataURI")]
    pub metadata_uri: Option<String>,
}

impl Proposal {
    /// Sum of all votes.
    pub fn total_votes(&self) -> U256 {
        self.for_votes.saturating_add(self.against_votes).saturating_add(self.abstain_votes)
    }
}

/// Derives a proposal's title: the description's first non-empty line, without `#` marks.
pub fn title_of(description: &str) -> String {
    let line = description.lines().map(str::trim).find(|l| !l.is_empty()).unwrap_or("");
    let t = line.trim_start_matches('#').trim();
    t.chars().take(200).collect()
}

/// Finds the first metadata URI in a description.
pub fn metadata_uri_of(description: &str) -> Option<String> {
    description
        .split(|c: char| c.is_whitespace() || c == '(' || c == ')' || c == '<' || c == '>' || c == '"')
        .find(|w| w.starts_with("ipfs://") || w.starts_with("ar://") || w.starts_with("https://"))
        .map(|w| w.trim_end_matches(['.', ',', ';']).to_string())
}

/// One vote record (from `VoteCast` or `VoteCastWithParams`).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct Vote {
    /// Stable UUID derived from the event identity.
    #[schema(value_type = crate::domain::schema::Uuid)]
    pub id: uuid::Uuid,
    /// On-chain proposal id.
    #[serde(with = "u256")]
    #[schema(value_type = crate::domain::schema::Uint256)]
    pub proposal_id: U256,
    /// Voter.
    pub voter: Address,
    /// 0 = Against, 1 = For, 2 = Abstain (255 = fractional split in `params`).
    #[schema(maximum = 255)]
    pub support: u8,
    /// Weight the governor counted.
    #[serde(with = "u256")]
    #[schema(value_type = crate::domain::schema::Uint256)]
    pub weight: U256,
    /// Reason, when one was given.
    pub reason: Option<String>,
    /// Extra parameters (`VoteCastWithParams`).
    pub params: Option<HexBytes>,
    /// Block number.
    pub block_number: u64,
    /// Block hash.
    pub block_hash: B256,
    /// Log index within the block.
    pub log_index: u64,
    /// Transaction.
    pub transaction_hash: B256,
    /// Block time.
    #[serde(with = "time")]
    #[schema(value_type = crate::domain::schema::Timestamp)]
    pub timestamp: u64,
}

/// One status change of a proposal.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct HistoryEntry {
    /// Stable UUID derived from proposal, status and block.
    #[schema(value_type = crate::domain::schema::Uuid)]
    pub id: uuid::Uuid,
    /// On-chain proposal id.
    #[serde(with = "u256")]
    #[schema(value_type = crate::domain::schema::Uint256)]
    pub proposal_id: U256,
    /// The new status.
    pub status: ProposalStatus,
    /// Block time.
    #[serde(with = "time")]
    #[schema(value_type = crate::domain::schema::Timestamp)]
    pub timestamp: u64,
    /// Block where the status took effect.
    pub block_number: u64,
    /// Transaction, for changes caused by an event; none for clock-driven changes.
    pub transaction_hash: Option<B256>,
}

/// A timelock operation and what happened to it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct TimelockOperation {
    /// Operation id (`hashOperationBatch`).
    pub id: B256,
    /// Proposal that scheduled it, when known.
    #[serde(with = "u256_opt")]
    #[schema(value_type = Option<crate::domain::schema::Uint256>)]
    pub proposal_id: Option<U256>,
    /// Number of calls scheduled.
    pub calls: u64,
    /// Delay given at scheduling (seconds).
    pub delay: u64,
    /// Where it was scheduled.
    pub scheduled: ChainPoint,
    /// Where it was executed.
    pub executed: Option<ChainPoint>,
    /// Where it was cancelled.
    pub cancelled: Option<ChainPoint>,
}

/// The voting state of one account after a block: a checkpoint.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "camelCase")]
pub struct AccountPower {
    /// Token balance.
    #[serde(with = "u256")]
    pub balance: U256,
    /// Current delegate, if any.
    pub delegate: Option<Address>,
    /// Votes as the token counts them (`getVotes`): own delegated balance plus others'.
    #[serde(with = "u256")]
    pub votes: U256,
    /// Governance-weight bonus from achievement NFTs (CultureBridge's benefit executor).
    #[serde(with = "u256")]
    pub nft_bonus: U256,
    /// Proposal-fee discount in basis points from special benefits.
    #[serde(with = "u256")]
    pub fee_discount_bps: U256,
    /// Priority boost from special benefits.
    #[serde(with = "u256")]
    pub priority_boost: U256,
    /// Block of this checkpoint.
    pub block_number: u64,
    /// Time of that block.
    pub timestamp: u64,
}

/// Voting power of an account as served (the guide's UserVotingPower).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct UserVotingPower {
    /// Account.
    pub user: Address,
    /// Proposal whose snapshot this is, or none for "now"/a block.
    #[serde(with = "u256_opt")]
    #[schema(value_type = Option<crate::domain::schema::Uint256>)]
    pub proposal_id: Option<U256>,
    /// The account's own balance, counted when it delegates to itself.
    #[serde(with = "u256")]
    #[schema(value_type = crate::domain::schema::Uint256)]
    pub base_weight: U256,
    /// Bonus from achievement NFTs (zero for governors without one).
    #[serde(with = "u256")]
    #[schema(value_type = crate::domain::schema::Uint256)]
    pub nft_bonus: U256,
    /// Weight delegated to this account by others.
    #[serde(with = "u256")]
    #[schema(value_type = crate::domain::schema::Uint256)]
    pub delegated_weight: U256,
    /// Weight the governor counts (`getVotes`/`getPastVotes` of its vote source): token votes
    /// plus the NFT bonus.
    #[serde(with = "u256")]
    #[schema(value_type = crate::domain::schema::Uint256)]
    pub total_weight: U256,
    /// Token balance.
    #[serde(with = "u256")]
    #[schema(value_type = crate::domain::schema::Uint256)]
    pub balance: U256,
    /// The account's delegate, if any.
    pub delegate: Option<Address>,
    /// Block the answer is for.
    pub block_number: u64,
    /// Timepoint in the governor's clock the answer is for.
    pub timepoint: u64,
    /// Time of the checkpoint block (unix seconds, RFC 3339 in JSON).
    #[serde(with = "time")]
    #[schema(value_type = crate::domain::schema::Timestamp)]
    pub timestamp: u64,
}

impl UserVotingPower {
    /// Splits an account checkpoint into its parts.
    pub fn from_power(user: Address, p: &AccountPower, block_number: u64, timepoint: u64) -> Self {
        let base = if p.delegate == Some(user) { p.balance.min(p.votes) } else { U256::zero() };
        UserVotingPower {
            user,
            proposal_id: None,
            base_weight: base,
            nft_bonus: p.nft_bonus,
            delegated_weight: p.votes.saturating_sub(base),
            total_weight: p.votes.saturating_add(p.nft_bonus),
            balance: p.balance,
            delegate: p.delegate,
            block_number,
            timepoint,
            timestamp: p.timestamp,
        }
    }
}

/// What discovery learnt about the governor and its satellites.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct GovernorInfo {
    /// Chain id.
    pub chain_id: u64,
    /// Governor address.
    pub governor: Address,
    /// `name()`.
    pub name: String,
    /// The governor's vote source (`token()`): the voting token, or a voting manager that adds
    /// bonuses to it (CultureBridge's CBVotingManager).
    pub vote_source: Address,
    /// The ERC20Votes token whose events carry balances, delegations and votes.
    pub token: Address,
    /// CultureBridge benefit executor (NFT governance-weight bonuses), when the vote source has one.
    pub benefit_executor: Option<Address>,
    /// CultureBridge achievement NFT, when the benefit executor has one.
    pub achievement_nft: Option<Address>,
    /// Timelock (`timelock()`), when the governor has one.
    pub timelock: Option<Address>,
    /// `CLOCK_MODE()`.
    pub clock_mode: ClockMode,
    /// Raw `CLOCK_MODE()` string.
    pub clock_mode_raw: String,
    /// `COUNTING_MODE()`.
    pub counting_mode: String,
    /// Which votes count towards quorum.
    pub quorum_counting: QuorumCounting,
    /// `votingDelay()` at discovery.
    pub voting_delay: u64,
    /// `votingPeriod()` at discovery.
    pub voting_period: u64,
    /// `proposalThreshold()` at discovery.
    #[serde(with = "u256")]
    pub proposal_threshold: U256,
    /// Timelock grace period in seconds, for timelocks that expire operations (Compound).
    pub grace_period_secs: Option<u64>,
}

/// Deterministic UUIDs: the same chain data always gets the same ids.
pub mod ids {
    use super::*;
    const NS: uuid::Uuid = uuid::Uuid::from_u128(0x6f1b_2a57_9c1e_4d8a_b0c4_61f3_a9d2_7e55);
    /// Id of a proposal.
    pub fn proposal(chain_id: u64, governor: &Address, proposal_id: &U256) -> uuid::Uuid {
        let mut b = Vec::with_capacity(60);
        b.extend_from_slice(&chain_id.to_be_bytes());
        b.extend_from_slice(&governor.0);
        b.extend_from_slice(&u256_be(proposal_id));
        uuid::Uuid::new_v5(&NS, &b)
    }
    /// Id of an event-derived record.
    pub fn event(chain_id: u64, block_hash: &B256, log_index: u64) -> uuid::Uuid {
        let mut b = Vec::with_capacity(48);
        b.extend_from_slice(&chain_id.to_be_bytes());
        b.extend_from_slice(&block_hash.0);
        b.extend_from_slice(&log_index.to_be_bytes());
        uuid::Uuid::new_v5(&NS, &b)
    }
    /// Id of a history entry.
    pub fn history(proposal: &uuid::Uuid, status: ProposalStatus, block: u64) -> uuid::Uuid {
        let mut b = Vec::with_capacity(25);
        b.extend_from_slice(proposal.as_bytes());
        b.push(status as u8);
        b.extend_from_slice(&block.to_be_bytes());
        uuid::Uuid::new_v5(&NS, &b)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_round_trip_in_both_formats() {
        let p = AccountPower {
            balance: U256::from(10u64).pow(U256::from(30u64)),
            delegate: Some(Address([7; 20])),
            votes: U256::MAX,
            nft_bonus: U256::from(5),
            fee_discount_bps: U256::zero(),
            priority_boost: U256::zero(),
            block_number: 9,
            timestamp: 1_700_000_000,
        };
        let bin = bincode::serialize(&p).unwrap();
        assert_eq!(bincode::deserialize::<AccountPower>(&bin).unwrap(), p);
        let js = serde_json::to_value(&p).unwrap();
        assert_eq!(js["balance"], "1000000000000000000000000000000");
        assert_eq!(js["delegate"], "0x0707070707070707070707070707070707070707");
        assert_eq!(serde_json::from_value::<AccountPower>(js).unwrap(), p);
    }

    #[test]
    fn parses_and_rejects_hex() {
        assert!(Address::parse("0x00000000000000000000000000000000000000aa").is_ok());
        assert_eq!(Address::parse("0x12"), Err(ParseError::Hex(40)));
        assert_eq!(Address::parse("zz"), Err(ParseError::Hex(40)));
        assert_eq!(parse_u256("42").unwrap(), U256::from(42));
        assert_eq!(parse_u256("0x2a").unwrap(), U256::from(42));
        assert!(parse_u256("-1").is_err());
        assert!(parse_u256(&"9".repeat(79)).is_err());
    }

    #[test]
    fn titles_and_uris() {
        assert_eq!(title_of("\n# Fund the festival\n\nDetails ipfs://bafy123."), "Fund the festival");
        assert_eq!(metadata_uri_of("see ipfs://bafy123. and more").as_deref(), Some("ipfs://bafy123"));
        assert_eq!(metadata_uri_of("nothing"), None);
    }

    #[test]
    fn counting_and_clock_modes() {
        assert_eq!(QuorumCounting::parse("support=bravo&quorum=for,abstain"), QuorumCounting::ForAbstain);
        assert_eq!(QuorumCounting::parse("support=bravo&quorum=bravo"), QuorumCounting::For);
        assert_eq!(ClockMode::parse("mode=blocknumber&from=default"), Some(ClockMode::BlockNumber));
        assert_eq!(ClockMode::parse("mode=timestamp"), Some(ClockMode::Timestamp));
    }
}
