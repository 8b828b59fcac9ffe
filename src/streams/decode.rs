//! Decoding of governance logs into typed events.
//!
//! The ABI decoder is hand-written for the fixed set of OpenZeppelin governance events: it is
//! bounds-checked everywhere (a malformed log is an error, never a panic) and allocation-light,
//! which is what lets decoding run far above a million logs a second.

use std::sync::OnceLock;

use crate::domain::{Address, B256, U256};

pub use crate::domain::RawLog;

/// Where a decoded event sits on chain; `(chain_id, block_hash, log_index)` is its identity.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct EventMeta {
    /// Emitting contract.
    pub address: Address,
    /// Block number.
    pub block_number: u64,
    /// Block hash.
    pub block_hash: B256,
    /// Transaction hash.
    pub tx_hash: B256,
    /// Log index within the block.
    pub log_index: u64,
}

/// Every governance event govflow understands.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum GovEvent {
    /// Governor: a proposal was created.
    ProposalCreated {
        /// Proposal id.
        proposal_id: U256,
        /// Proposer.
        proposer: Address,
        /// Call targets.
        targets: Vec<Address>,
        /// Call values.
        values: Vec<U256>,
        /// Signatures.
        signatures: Vec<String>,
        /// Call data.
        calldatas: Vec<Vec<u8>>,
        /// Snapshot timepoint.
        vote_start: u64,
        /// Deadline timepoint.
        vote_end: u64,
        /// Description.
        description: String,
    },
    /// Governor: a vote (with or without params).
    VoteCast {
        /// Voter.
        voter: Address,
        /// Proposal id.
        proposal_id: U256,
        /// Support value.
        support: u8,
        /// Counted weight.
        weight: U256,
        /// Reason (empty string when none).
        reason: String,
        /// Params, for `VoteCastWithParams`.
        params: Option<Vec<u8>>,
    },
    /// Governor: proposal canceled.
    ProposalCanceled {
        /// Proposal id.
        proposal_id: U256,
    },
    /// Governor: proposal queued with its eta.
    ProposalQueued {
        /// Proposal id.
        proposal_id: U256,
        /// Eta in seconds.
        eta: u64,
    },
    /// Governor: proposal executed.
    ProposalExecuted {
        /// Proposal id.
        proposal_id: U256,
    },
    /// Governor: deadline extended (late quorum).
    ProposalExtended {
        /// Proposal id.
        proposal_id: U256,
        /// New deadline.
        extended_deadline: u64,
    },
    /// Governor settings and parameters changed.
    SettingChanged {
        /// Which setting.
        setting: Setting,
        /// Old value.
        old: U256,
        /// New value.
        new: U256,
    },
    /// Governor: timelock replaced.
    TimelockChange {
        /// Old timelock.
        old: Address,
        /// New timelock.
        new: Address,
    },
    /// Timelock: one call of an operation scheduled.
    CallScheduled {
        /// Operation id.
        id: B256,
        /// Call index.
        index: u64,
        /// Target.
        target: Address,
        /// Delay in seconds.
        delay: u64,
    },
    /// Timelock: one call of an operation executed.
    CallExecuted {
        /// Operation id.
        id: B256,
        /// Call index.
        index: u64,
    },
    /// Timelock: operation cancelled.
    Cancelled {
        /// Operation id.
        id: B256,
    },
    /// Timelock: salt of an operation (informational).
    CallSalt {
        /// Operation id.
        id: B256,
    },
    /// Token: delegate changed.
    DelegateChanged {
        /// Delegator.
        delegator: Address,
        /// Previous delegate.
        from: Address,
        /// New delegate.
        to: Address,
    },
    /// Token: a delegate's votes changed.
    DelegateVotesChanged {
        /// Delegate.
        delegate: Address,
        /// Votes before.
        previous: U256,
        /// Votes after.
        new: U256,
    },
    /// Achievement NFT (ERC-721): a token moved (mint from zero, burn to zero).
    NftTransfer {
        /// Sender.
        from: Address,
        /// Receiver.
        to: Address,
        /// Token id.
        token_id: U256,
    },
    /// Benefit executor: an account's governance-weight bonus changed.
    BonusChanged {
        /// Account.
        account: Address,
        /// Bonus before.
        previous: U256,
        /// Bonus after.
        new: U256,
    },
    /// Benefit executor: an account's special benefits changed.
    BenefitsChanged {
        /// Account.
        account: Address,
        /// Proposal-fee discount (basis points).
        fee_discount_bps: U256,
        /// Priority boost.
        priority_boost: U256,
    },
    /// Token: transfer (mint from zero, burn to zero).
    Transfer {
        /// Sender.
        from: Address,
        /// Receiver.
        to: Address,
        /// Amount.
        value: U256,
    },
}

/// Governor settings announced by events.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Setting {
    /// `VotingDelaySet`.
    VotingDelay,
    /// `VotingPeriodSet`.
    VotingPeriod,
    /// `ProposalThresholdSet`.
    ProposalThreshold,
    /// `QuorumNumeratorUpdated`.
    QuorumNumerator,
    /// Timelock `MinDelayChange`.
    TimelockMinDelay,
}

/// Why a log could not be decoded.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum DecodeError {
    /// Topic 0 is not a known governance event.
    #[error("unknown event signature")]
    Unknown,
    /// No topics at all (anonymous event).
    #[error("log has no topics")]
    NoTopics,
    /// Known signature but the wrong number of topics.
    #[error("{0}: wrong number of topics")]
    Topics(&'static str),
    /// Known signature but the data does not fit the ABI.
    #[error("{0}: malformed data")]
    Data(&'static str),
}

pub use crate::domain::keccak256;

/// Event signatures govflow decodes, by kind.
pub const SIGNATURES: &[(&str, Kind)] = &[
    ("ProposalCreated(uint256,address,address[],uint256[],string[],bytes[],uint256,uint256,string)", Kind::ProposalCreated),
    ("VoteCast(address,uint256,uint8,uint256,string)", Kind::VoteCast),
    ("VoteCastWithParams(address,uint256,uint8,uint256,string,bytes)", Kind::VoteCastWithParams),
    ("ProposalCanceled(uint256)", Kind::ProposalCanceled),
    ("ProposalQueued(uint256,uint256)", Kind::ProposalQueued),
    ("ProposalExecuted(uint256)", Kind::ProposalExecuted),
    ("ProposalExtended(uint256,uint64)", Kind::ProposalExtended),
    ("VotingDelaySet(uint256,uint256)", Kind::VotingDelaySet),
    ("VotingPeriodSet(uint256,uint256)", Kind::VotingPeriodSet),
    ("ProposalThresholdSet(uint256,uint256)", Kind::ProposalThresholdSet),
    ("QuorumNumeratorUpdated(uint256,uint256)", Kind::QuorumNumeratorUpdated),
    ("TimelockChange(address,address)", Kind::TimelockChange),
    ("CallScheduled(bytes32,uint256,address,uint256,bytes,bytes32,uint256)", Kind::CallScheduled),
    ("CallExecuted(bytes32,uint256,address,uint256,bytes)", Kind::CallExecuted),
    ("Cancelled(bytes32)", Kind::Cancelled),
    ("CallSalt(bytes32,bytes32)", Kind::CallSalt),
    ("MinDelayChange(uint256,uint256)", Kind::MinDelayChange),
    ("DelegateChanged(address,address,address)", Kind::DelegateChanged),
    ("DelegateVotesChanged(address,uint256,uint256)", Kind::DelegateVotesChanged),
    ("Transfer(address,address,uint256)", Kind::Transfer),
    ("GovernanceWeightBonusChanged(address,uint256,uint256)", Kind::GovernanceWeightBonusChanged),
    ("SpecialBenefitsChanged(address,uint256,uint256)", Kind::SpecialBenefitsChanged),
];

/// The event kinds, one per signature.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[allow(missing_docs)]
pub enum Kind {
    ProposalCreated,
    VoteCast,
    VoteCastWithParams,
    ProposalCanceled,
    ProposalQueued,
    ProposalExecuted,
    ProposalExtended,
    VotingDelaySet,
    VotingPeriodSet,
    ProposalThresholdSet,
    QuorumNumeratorUpdated,
    TimelockChange,
    CallScheduled,
    CallExecuted,
    Cancelled,
    CallSalt,
    MinDelayChange,
    DelegateChanged,
    DelegateVotesChanged,
    Transfer,
    GovernanceWeightBonusChanged,
    SpecialBenefitsChanged,
}

impl Kind {
    /// Name used in metrics labels and logs.
    pub fn name(&self) -> &'static str {
        let sig = SIGNATURES.iter().find(|(_, k)| k == self).map(|(s, _)| *s).unwrap_or("?");
        &sig[..sig.find('(').unwrap_or(sig.len())]
    }
}

fn table() -> &'static Vec<(B256, Kind)> {
    static T: OnceLock<Vec<(B256, Kind)>> = OnceLock::new();
    T.get_or_init(|| SIGNATURES.iter().map(|(s, k)| (B256(keccak256(s.as_bytes())), *k)).collect())
}

/// Topic-0 hashes of every decoded event (for `eth_getLogs` filters).
pub fn topic0s() -> Vec<B256> {
    table().iter().map(|(h, _)| *h).collect()
}

/// The kind for a topic 0.
pub fn kind_of(topic0: &B256) -> Option<Kind> {
    table().iter().find(|(h, _)| h == topic0).map(|(_, k)| *k)
}

struct Words<'a> {
    d: &'a [u8],
    name: &'static str,
}

impl<'a> Words<'a> {
    fn word(&self, i: usize) -> Result<&'a [u8], DecodeError> {
        self.d.get(i * 32..i * 32 + 32).ok_or(DecodeError::Data(self.name))
    }
    fn uint(&self, i: usize) -> Result<U256, DecodeError> {
        Ok(U256::from_big_endian(self.word(i)?))
    }
    fn u64(&self, i: usize) -> Result<u64, DecodeError> {
        word_u64(self.word(i)?, self.name)
    }
    fn address(&self, i: usize) -> Result<Address, DecodeError> {
        word_address(self.word(i)?, self.name)
    }
    fn offset(&self, i: usize) -> Result<usize, DecodeError> {
        let v = self.u64(i)?;
        usize::try_from(v).ok().filter(|o| *o <= self.d.len()).ok_or(DecodeError::Data(self.name))
    }
    /// Dynamic `bytes`/`string` whose head is at word `i` (relative to this frame).
    fn bytes(&self, i: usize) -> Result<&'a [u8], DecodeError> {
        let off = self.offset(i)?;
        self.bytes_at(off)
    }
    fn bytes_at(&self, off: usize) -> Result<&'a [u8], DecodeError> {
        let len_w = self.d.get(off..off + 32).ok_or(DecodeError::Data(self.name))?;
        let len = usize::try_from(word_u64(len_w, self.name)?).map_err(|_| DecodeError::Data(self.name))?;
        let start = off + 32;
        self.d.get(start..start.checked_add(len).ok_or(DecodeError::Data(self.name))?).ok_or(DecodeError::Data(self.name))
    }
    fn string(&self, i: usize) -> Result<String, DecodeError> {
        Ok(String::from_utf8_lossy(self.bytes(i)?).into_owned())
    }
    /// A dynamic array: returns the element frame and the count.
    fn array(&self, i: usize) -> Result<(Words<'a>, usize), DecodeError> {
        let off = self.offset(i)?;
        let len_w = self.d.get(off..off + 32).ok_or(DecodeError::Data(self.name))?;
        let n = usize::try_from(word_u64(len_w, self.name)?).map_err(|_| DecodeError::Data(self.name))?;
        let body = &self.d[off + 32..];
        if n > body.len() / 32 {
            return Err(DecodeError::Data(self.name));
        }
        Ok((Words { d: body, name: self.name }, n))
    }
}

fn word_u64(w: &[u8], name: &'static str) -> Result<u64, DecodeError> {
    if w[..24].iter().any(|b| *b != 0) {
        return Err(DecodeError::Data(name));
    }
    Ok(u64::from_be_bytes(w[24..32].try_into().map_err(|_| DecodeError::Data(name))?))
}

fn word_address(w: &[u8], name: &'static str) -> Result<Address, DecodeError> {
    if w[..12].iter().any(|b| *b != 0) {
        return Err(DecodeError::Data(name));
    }
    Address::from_slice(&w[12..32]).ok_or(DecodeError::Data(name))
}

fn topic_address(t: &B256, name: &'static str) -> Result<Address, DecodeError> {
    word_address(&t.0, name)
}

fn need_topics(log: &RawLog, n: usize, name: &'static str) -> Result<(), DecodeError> {
    if log.topics.len() == n {
        Ok(())
    } else {
        Err(DecodeError::Topics(name))
    }
}

/// Decodes one log.
pub fn decode(log: &RawLog) -> Result<(GovEvent, EventMeta), DecodeError> {
    let t0 = log.topics.first().ok_or(DecodeError::NoTopics)?;
    let kind = kind_of(t0).ok_or(DecodeError::Unknown)?;
    let name = kind.name();
    let w = Words { d: &log.data, name };
    let ev = match kind {
        Kind::ProposalCreated => {
            need_topics(log, 1, name)?;
            let (ta, nt) = w.array(2)?;
            let targets = (0..nt).map(|i| ta.address(i)).collect::<Result<Vec<_>, _>>()?;
            let (va, nv) = w.array(3)?;
            let values = (0..nv).map(|i| va.uint(i)).collect::<Result<Vec<_>, _>>()?;
            let (sa, ns) = w.array(4)?;
            let signatures = (0..ns).map(|i| sa.bytes(i).map(|b| String::from_utf8_lossy(b).into_owned())).collect::<Result<Vec<_>, _>>()?;
            let (ca, nc) = w.array(5)?;
            let calldatas = (0..nc).map(|i| ca.bytes(i).map(<[u8]>::to_vec)).collect::<Result<Vec<_>, _>>()?;
            GovEvent::ProposalCreated {
                proposal_id: w.uint(0)?,
                proposer: w.address(1)?,
                targets,
                values,
                signatures,
                calldatas,
                vote_start: w.u64(6)?,
                vote_end: w.u64(7)?,
                description: w.string(8)?,
            }
        }
        Kind::VoteCast | Kind::VoteCastWithParams => {
            need_topics(log, 2, name)?;
            let support = w.u64(1)?;
            let params = if kind == Kind::VoteCastWithParams { Some(w.bytes(4)?.to_vec()) } else { None };
            GovEvent::VoteCast {
                voter: topic_address(&log.topics[1], name)?,
                proposal_id: w.uint(0)?,
                support: u8::try_from(support).map_err(|_| DecodeError::Data(name))?,
                weight: w.uint(2)?,
                reason: w.string(3)?,
                params,
            }
        }
        Kind::ProposalCanceled => {
            need_topics(log, 1, name)?;
            GovEvent::ProposalCanceled { proposal_id: w.uint(0)? }
        }
        Kind::ProposalExecuted => {
            need_topics(log, 1, name)?;
            GovEvent::ProposalExecuted { proposal_id: w.uint(0)? }
        }
        Kind::ProposalQueued => {
            need_topics(log, 1, name)?;
            GovEvent::ProposalQueued { proposal_id: w.uint(0)?, eta: w.u64(1)? }
        }
        Kind::ProposalExtended => {
            need_topics(log, 2, name)?;
            GovEvent::ProposalExtended { proposal_id: U256::from_big_endian(&log.topics[1].0), extended_deadline: w.u64(0)? }
        }
        Kind::VotingDelaySet | Kind::VotingPeriodSet | Kind::ProposalThresholdSet | Kind::QuorumNumeratorUpdated | Kind::MinDelayChange => {
            need_topics(log, 1, name)?;
            let setting = match kind {
                Kind::VotingDelaySet => Setting::VotingDelay,
                Kind::VotingPeriodSet => Setting::VotingPeriod,
                Kind::ProposalThresholdSet => Setting::ProposalThreshold,
                Kind::QuorumNumeratorUpdated => Setting::QuorumNumerator,
                _ => Setting::TimelockMinDelay,
            };
            GovEvent::SettingChanged { setting, old: w.uint(0)?, new: w.uint(1)? }
        }
        Kind::TimelockChange => {
            need_topics(log, 1, name)?;
            GovEvent::TimelockChange { old: w.address(0)?, new: w.address(1)? }
        }
        Kind::CallScheduled => {
            need_topics(log, 3, name)?;
            // data: target, value, data (dynamic), predecessor, delay
            let _value = w.uint(1)?;
            let _data = w.bytes(2)?;
            GovEvent::CallScheduled { id: log.topics[1], index: word_u64(&log.topics[2].0, name)?, target: w.address(0)?, delay: w.u64(4)? }
        }
        Kind::CallExecuted => {
            need_topics(log, 3, name)?;
            let _target = w.address(0)?;
            GovEvent::CallExecuted { id: log.topics[1], index: word_u64(&log.topics[2].0, name)? }
        }
        Kind::Cancelled => {
            need_topics(log, 2, name)?;
            GovEvent::Cancelled { id: log.topics[1] }
        }
        Kind::CallSalt => {
            need_topics(log, 2, name)?;
            GovEvent::CallSalt { id: log.topics[1] }
        }
        Kind::DelegateChanged => {
            need_topics(log, 4, name)?;
            GovEvent::DelegateChanged {
                delegator: topic_address(&log.topics[1], name)?,
                from: topic_address(&log.topics[2], name)?,
                to: topic_address(&log.topics[3], name)?,
            }
        }
        Kind::DelegateVotesChanged => {
            need_topics(log, 2, name)?;
            GovEvent::DelegateVotesChanged { delegate: topic_address(&log.topics[1], name)?, previous: w.uint(0)?, new: w.uint(1)? }
        }
        Kind::Transfer if log.topics.len() == 4 => {
            // ERC-721 Transfer: the same signature with the token id indexed.
            GovEvent::NftTransfer {
                from: topic_address(&log.topics[1], name)?,
                to: topic_address(&log.topics[2], name)?,
                token_id: U256::from_big_endian(&log.topics[3].0),
            }
        }
        Kind::Transfer => {
            need_topics(log, 3, name)?;
            GovEvent::Transfer { from: topic_address(&log.topics[1], name)?, to: topic_address(&log.topics[2], name)?, value: w.uint(0)? }
        }
        Kind::GovernanceWeightBonusChanged => {
            need_topics(log, 2, name)?;
            GovEvent::BonusChanged { account: topic_address(&log.topics[1], name)?, previous: w.uint(0)?, new: w.uint(1)? }
        }
        Kind::SpecialBenefitsChanged => {
            need_topics(log, 2, name)?;
            GovEvent::BenefitsChanged { account: topic_address(&log.topics[1], name)?, fee_discount_bps: w.uint(0)?, priority_boost: w.uint(1)? }
        }
    };
    Ok((ev, EventMeta { address: log.address, block_number: log.block_number, block_hash: log.block_hash, tx_hash: log.tx_hash, log_index: log.log_index }))
}

pub use self::encode::topic;

/// ABI encoding helpers used by tests and the synthetic benchmark stream.
pub mod encode {
    use super::*;

    /// A uint word.
    pub fn uint(v: U256) -> [u8; 32] {
        crate::domain::u256_be(&v)
    }
    /// An address word / topic.
    pub fn address(a: &Address) -> [u8; 32] {
        let mut w = [0u8; 32];
        w[12..].copy_from_slice(&a.0);
        w
    }
    /// The topic 0 for a signature.
    pub fn topic(signature: &str) -> B256 {
        B256(keccak256(signature.as_bytes()))
    }
    /// Encodes dynamic bytes (length word + padded body).
    pub fn dyn_bytes(b: &[u8]) -> Vec<u8> {
        let mut out = uint(U256::from(b.len())).to_vec();
        out.extend_from_slice(b);
        out.resize(32 + b.len().div_ceil(32) * 32, 0);
        out
    }

    /// ABI-encodes a tuple of head words and dynamic tails; `None` heads are placeholders for
    /// the next tail's offset.
    pub fn tuple(heads: &[Option<[u8; 32]>], tails: &[Vec<u8>]) -> Vec<u8> {
        let mut out = Vec::new();
        let mut tail = Vec::new();
        let mut ti = 0;
        for h in heads {
            match h {
                Some(w) => out.extend_from_slice(w),
                None => {
                    out.extend_from_slice(&uint(U256::from(heads.len() * 32 + tail.len())));
                    tail.extend_from_slice(&tails[ti]);
                    ti += 1;
                }
            }
        }
        out.extend_from_slice(&tail);
        out
    }

    /// Data of a `VoteCast` log.
    pub fn vote_cast(proposal_id: U256, support: u8, weight: U256, reason: &str) -> Vec<u8> {
        tuple(&[Some(uint(proposal_id)), Some(uint(U256::from(support))), Some(uint(weight)), None], &[dyn_bytes(reason.as_bytes())])
    }

    /// Data of a `ProposalCreated` log with one call.
    pub fn proposal_created(proposal_id: U256, proposer: &Address, target: &Address, vote_start: u64, vote_end: u64, description: &str) -> Vec<u8> {
        let one = |w: [u8; 32]| {
            let mut v = uint(U256::one()).to_vec();
            v.extend_from_slice(&w);
            v
        };
        let mut sigs = uint(U256::one()).to_vec();
        sigs.extend_from_slice(&uint(U256::from(32)));
        sigs.extend_from_slice(&dyn_bytes(b""));
        let mut datas = uint(U256::one()).to_vec();
        datas.extend_from_slice(&uint(U256::from(32)));
        datas.extend_from_slice(&dyn_bytes(&[0x55, 0x24, 0x10, 0x77, 0, 0, 0, 1]));
        tuple(
            &[
                Some(uint(proposal_id)),
                Some(address(proposer)),
                None,
                None,
                None,
                None,
                Some(uint(U256::from(vote_start))),
                Some(uint(U256::from(vote_end))),
                None,
            ],
            &[one(address(target)), one(uint(U256::zero())), sigs, datas, dyn_bytes(description.as_bytes())],
        )
    }
}

#[cfg(test)]
mod tests {
    use super::encode::*;
    use super::*;

    fn log(topics: Vec<B256>, data: Vec<u8>) -> RawLog {
        RawLog { address: Address([1; 20]), topics, data, block_number: 7, block_hash: B256([2; 32]), tx_hash: B256([3; 32]), log_index: 4 }
    }

    #[test]
    fn known_topic_hashes() {
        // Well-known OpenZeppelin / ERC-20 topic hashes.
        assert_eq!(topic("Transfer(address,address,uint256)").to_hex(), "0xddf252ad1be2c89b69c2b068fc378daa952ba7f163c4a11628f55a4df523b3ef");
        assert_eq!(topic("DelegateVotesChanged(address,uint256,uint256)").to_hex(), "0xdec2bacdd2f05b59de34da9b523dff8be42e5e38e818c82fdb0bae774387a724");
        assert_eq!(topic0s().len(), SIGNATURES.len());
    }

    #[test]
    fn decodes_vote_cast() {
        let voter = Address([9; 20]);
        let l = log(vec![topic(SIGNATURES[1].0), B256(address(&voter))], vote_cast(U256::from(77), 1, U256::from(1000), "because"));
        let (ev, meta) = decode(&l).unwrap();
        assert_eq!(meta.log_index, 4);
        assert_eq!(ev, GovEvent::VoteCast { voter, proposal_id: U256::from(77), support: 1, weight: U256::from(1000), reason: "because".into(), params: None });
    }

    #[test]
    fn decodes_proposal_created() {
        let p = Address([5; 20]);
        let t = Address([6; 20]);
        let data = proposal_created(U256::from(123), &p, &t, 10, 20, "# Title\nbody");
        let (ev, _) = decode(&log(vec![topic(SIGNATURES[0].0)], data)).unwrap();
        match ev {
            GovEvent::ProposalCreated { proposal_id, proposer, targets, values, calldatas, vote_start, vote_end, description, signatures } => {
                assert_eq!(proposal_id, U256::from(123));
                assert_eq!(proposer, p);
                assert_eq!(targets, vec![t]);
                assert_eq!(values, vec![U256::zero()]);
                assert_eq!(signatures, vec![String::new()]);
                assert_eq!(calldatas.len(), 1);
                assert_eq!((vote_start, vote_end), (10, 20));
                assert_eq!(description, "# Title\nbody");
            }
            other => panic!("unexpected {other:?}"),
        }
    }

    #[test]
    fn malformed_logs_are_errors_not_panics() {
        let t = topic(SIGNATURES[0].0);
        for len in [0usize, 31, 64, 200, 288] {
            let r = decode(&log(vec![t], vec![0xff; len]));
            assert!(r.is_err(), "len {len}");
        }
        assert_eq!(decode(&log(vec![B256([0xaa; 32])], vec![])).unwrap_err(), DecodeError::Unknown);
        assert_eq!(decode(&log(vec![], vec![])).unwrap_err(), DecodeError::NoTopics);
        // ERC-721 Transfer (4 topics) is an NFT move, not an ERC-20 transfer.
        let tr = topic("Transfer(address,address,uint256)");
        let a = B256(address(&Address([4; 20])));
        assert!(matches!(decode(&log(vec![tr, a, a, B256([0; 32])], vec![])), Ok((GovEvent::NftTransfer { .. }, _))));
        assert!(matches!(decode(&log(vec![tr, tr, tr, tr], vec![])), Err(DecodeError::Data(_))));
        assert!(matches!(decode(&log(vec![tr, a], vec![])), Err(DecodeError::Topics(_))));
        // Huge offsets and lengths are rejected.
        let mut data = vote_cast(U256::from(1), 1, U256::from(1), "x");
        data[96..128].copy_from_slice(&uint(U256::MAX));
        let voter = B256(address(&Address([1; 20])));
        assert!(decode(&log(vec![topic(SIGNATURES[1].0), voter], data)).is_err());
    }
}
