//! Decoding of governance logs into typed events.
//!
//! The ABI work is done by bindings generated from the contracts' own ABIs ([`abi`], alloy's
//! `sol!`): this module picks the event by topic 0, checks the topic count, lets the binding
//! decode (bounds-checked: a malformed log is an error, never a panic) and maps the result to
//! [`GovEvent`], the domain's view of every event govflow understands.

use alloy_sol_types::{SolEvent, SolType, TopicList};

use crate::domain::{Address, B256, U256};

pub mod abi;
pub mod encode;

use abi::{AchievementNft, BenefitExecutor, Governor, Timelock, VotesToken};

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

/// Event signatures govflow decodes, by kind: the bindings' own signatures.
pub const SIGNATURES: &[(&str, Kind)] = &[
    (Governor::ProposalCreated::SIGNATURE, Kind::ProposalCreated),
    (Governor::VoteCast::SIGNATURE, Kind::VoteCast),
    (Governor::VoteCastWithParams::SIGNATURE, Kind::VoteCastWithParams),
    (Governor::ProposalCanceled::SIGNATURE, Kind::ProposalCanceled),
    (Governor::ProposalQueued::SIGNATURE, Kind::ProposalQueued),
    (Governor::ProposalExecuted::SIGNATURE, Kind::ProposalExecuted),
    (Governor::ProposalExtended::SIGNATURE, Kind::ProposalExtended),
    (Governor::VotingDelaySet::SIGNATURE, Kind::VotingDelaySet),
    (Governor::VotingPeriodSet::SIGNATURE, Kind::VotingPeriodSet),
    (Governor::ProposalThresholdSet::SIGNATURE, Kind::ProposalThresholdSet),
    (Governor::QuorumNumeratorUpdated::SIGNATURE, Kind::QuorumNumeratorUpdated),
    (Governor::TimelockChange::SIGNATURE, Kind::TimelockChange),
    (Timelock::CallScheduled::SIGNATURE, Kind::CallScheduled),
    (Timelock::CallExecuted::SIGNATURE, Kind::CallExecuted),
    (Timelock::Cancelled::SIGNATURE, Kind::Cancelled),
    (Timelock::CallSalt::SIGNATURE, Kind::CallSalt),
    (Timelock::MinDelayChange::SIGNATURE, Kind::MinDelayChange),
    (VotesToken::DelegateChanged::SIGNATURE, Kind::DelegateChanged),
    (VotesToken::DelegateVotesChanged::SIGNATURE, Kind::DelegateVotesChanged),
    (VotesToken::Transfer::SIGNATURE, Kind::Transfer),
    (BenefitExecutor::GovernanceWeightBonusChanged::SIGNATURE, Kind::GovernanceWeightBonusChanged),
    (BenefitExecutor::SpecialBenefitsChanged::SIGNATURE, Kind::SpecialBenefitsChanged),
];

/// Topic 0 of every kind, in [`SIGNATURES`] order: the bindings' signature hashes.
const TOPIC0: [([u8; 32], Kind); 22] = [
    (Governor::ProposalCreated::SIGNATURE_HASH.0, Kind::ProposalCreated),
    (Governor::VoteCast::SIGNATURE_HASH.0, Kind::VoteCast),
    (Governor::VoteCastWithParams::SIGNATURE_HASH.0, Kind::VoteCastWithParams),
    (Governor::ProposalCanceled::SIGNATURE_HASH.0, Kind::ProposalCanceled),
    (Governor::ProposalQueued::SIGNATURE_HASH.0, Kind::ProposalQueued),
    (Governor::ProposalExecuted::SIGNATURE_HASH.0, Kind::ProposalExecuted),
    (Governor::ProposalExtended::SIGNATURE_HASH.0, Kind::ProposalExtended),
    (Governor::VotingDelaySet::SIGNATURE_HASH.0, Kind::VotingDelaySet),
    (Governor::VotingPeriodSet::SIGNATURE_HASH.0, Kind::VotingPeriodSet),
    (Governor::ProposalThresholdSet::SIGNATURE_HASH.0, Kind::ProposalThresholdSet),
    (Governor::QuorumNumeratorUpdated::SIGNATURE_HASH.0, Kind::QuorumNumeratorUpdated),
    (Governor::TimelockChange::SIGNATURE_HASH.0, Kind::TimelockChange),
    (Timelock::CallScheduled::SIGNATURE_HASH.0, Kind::CallScheduled),
    (Timelock::CallExecuted::SIGNATURE_HASH.0, Kind::CallExecuted),
    (Timelock::Cancelled::SIGNATURE_HASH.0, Kind::Cancelled),
    (Timelock::CallSalt::SIGNATURE_HASH.0, Kind::CallSalt),
    (Timelock::MinDelayChange::SIGNATURE_HASH.0, Kind::MinDelayChange),
    (VotesToken::DelegateChanged::SIGNATURE_HASH.0, Kind::DelegateChanged),
    (VotesToken::DelegateVotesChanged::SIGNATURE_HASH.0, Kind::DelegateVotesChanged),
    (VotesToken::Transfer::SIGNATURE_HASH.0, Kind::Transfer),
    (BenefitExecutor::GovernanceWeightBonusChanged::SIGNATURE_HASH.0, Kind::GovernanceWeightBonusChanged),
    (BenefitExecutor::SpecialBenefitsChanged::SIGNATURE_HASH.0, Kind::SpecialBenefitsChanged),
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

/// Topic-0 hashes of every decoded event (for `eth_getLogs` filters).
pub fn topic0s() -> Vec<B256> {
    TOPIC0.iter().map(|(h, _)| B256(*h)).collect()
}

/// The kind for a topic 0.
pub fn kind_of(topic0: &B256) -> Option<Kind> {
    TOPIC0.iter().find(|(h, _)| *h == topic0.0).map(|(_, k)| *k)
}

fn u256(v: alloy_primitives::U256) -> U256 {
    // Both are four little-endian u64 limbs.
    U256(*v.as_limbs())
}

fn addr(a: alloy_primitives::Address) -> Address {
    Address(a.into_array())
}

fn to_u64(v: alloy_primitives::U256, name: &'static str) -> Result<u64, DecodeError> {
    u64::try_from(v).map_err(|_| DecodeError::Data(name))
}

/// An address topic: 12 zero bytes then the address (anything else is not an address).
fn topic_address(t: &B256, name: &'static str) -> Result<Address, DecodeError> {
    if t.0[..12].iter().any(|b| *b != 0) {
        return Err(DecodeError::Data(name));
    }
    let mut a = [0u8; 20];
    a.copy_from_slice(&t.0[12..]);
    Ok(Address(a))
}

/// The body (non-indexed parameters) of `log` as the binding `E` declares it, after checking
/// its topic count. Topic 0 has already chosen `E`; indexed values are read from the topics by
/// the callers, with their own checks, so only the data goes through the ABI decoder.
fn body<'a, E: SolEvent>(log: &'a RawLog, name: &'static str) -> Result<<E::DataTuple<'a> as SolType>::RustType, DecodeError> {
    if log.topics.len() != <E::TopicList as TopicList>::COUNT {
        return Err(DecodeError::Topics(name));
    }
    E::abi_decode_data(&log.data).map_err(|_| DecodeError::Data(name))
}

/// An indexed `uint256` that must fit a u64 (a call index).
fn topic_u64(t: &B256, name: &'static str) -> Result<u64, DecodeError> {
    if t.0[..24].iter().any(|b| *b != 0) {
        return Err(DecodeError::Data(name));
    }
    let mut w = [0u8; 8];
    w.copy_from_slice(&t.0[24..]);
    Ok(u64::from_be_bytes(w))
}

/// Decodes one log.
pub fn decode(log: &RawLog) -> Result<(GovEvent, EventMeta), DecodeError> {
    let t0 = log.topics.first().ok_or(DecodeError::NoTopics)?;
    let kind = kind_of(t0).ok_or(DecodeError::Unknown)?;
    let name = kind.name();
    let topic = |i: usize| &log.topics[i];
    let setting = |setting, (old, new): (alloy_primitives::U256, alloy_primitives::U256)| GovEvent::SettingChanged { setting, old: u256(old), new: u256(new) };
    let ev = match kind {
        Kind::ProposalCreated => {
            let (proposal_id, proposer, targets, values, signatures, calldatas, vote_start, vote_end, description) =
                body::<Governor::ProposalCreated>(log, name)?;
            GovEvent::ProposalCreated {
                proposal_id: u256(proposal_id),
                proposer: addr(proposer),
                targets: targets.into_iter().map(addr).collect(),
                values: values.into_iter().map(u256).collect(),
                signatures,
                calldatas: calldatas.into_iter().map(Vec::from).collect(),
                vote_start: to_u64(vote_start, name)?,
                vote_end: to_u64(vote_end, name)?,
                description,
            }
        }
        Kind::VoteCast => {
            let (proposal_id, support, weight, reason) = body::<Governor::VoteCast>(log, name)?;
            GovEvent::VoteCast { voter: topic_address(topic(1), name)?, proposal_id: u256(proposal_id), support, weight: u256(weight), reason, params: None }
        }
        Kind::VoteCastWithParams => {
            let (proposal_id, support, weight, reason, params) = body::<Governor::VoteCastWithParams>(log, name)?;
            GovEvent::VoteCast {
                voter: topic_address(topic(1), name)?,
                proposal_id: u256(proposal_id),
                support,
                weight: u256(weight),
                reason,
                params: Some(params.into()),
            }
        }
        Kind::ProposalCanceled => GovEvent::ProposalCanceled { proposal_id: u256(body::<Governor::ProposalCanceled>(log, name)?.0) },
        Kind::ProposalExecuted => GovEvent::ProposalExecuted { proposal_id: u256(body::<Governor::ProposalExecuted>(log, name)?.0) },
        Kind::ProposalQueued => {
            let (proposal_id, eta) = body::<Governor::ProposalQueued>(log, name)?;
            GovEvent::ProposalQueued { proposal_id: u256(proposal_id), eta: to_u64(eta, name)? }
        }
        Kind::ProposalExtended => {
            let (extended_deadline,) = body::<Governor::ProposalExtended>(log, name)?;
            GovEvent::ProposalExtended { proposal_id: U256::from_big_endian(&topic(1).0), extended_deadline }
        }
        Kind::VotingDelaySet => setting(Setting::VotingDelay, body::<Governor::VotingDelaySet>(log, name)?),
        Kind::VotingPeriodSet => setting(Setting::VotingPeriod, body::<Governor::VotingPeriodSet>(log, name)?),
        Kind::ProposalThresholdSet => setting(Setting::ProposalThreshold, body::<Governor::ProposalThresholdSet>(log, name)?),
        Kind::QuorumNumeratorUpdated => setting(Setting::QuorumNumerator, body::<Governor::QuorumNumeratorUpdated>(log, name)?),
        Kind::MinDelayChange => setting(Setting::TimelockMinDelay, body::<Timelock::MinDelayChange>(log, name)?),
        Kind::TimelockChange => {
            let (old, new) = body::<Governor::TimelockChange>(log, name)?;
            GovEvent::TimelockChange { old: addr(old), new: addr(new) }
        }
        Kind::CallScheduled => {
            let (target, _value, _data, _predecessor, delay) = body::<Timelock::CallScheduled>(log, name)?;
            GovEvent::CallScheduled { id: *topic(1), index: topic_u64(topic(2), name)?, target: addr(target), delay: to_u64(delay, name)? }
        }
        Kind::CallExecuted => {
            body::<Timelock::CallExecuted>(log, name)?;
            GovEvent::CallExecuted { id: *topic(1), index: topic_u64(topic(2), name)? }
        }
        Kind::Cancelled => {
            body::<Timelock::Cancelled>(log, name)?;
            GovEvent::Cancelled { id: *topic(1) }
        }
        Kind::CallSalt => {
            body::<Timelock::CallSalt>(log, name)?;
            GovEvent::CallSalt { id: *topic(1) }
        }
        Kind::DelegateChanged => {
            body::<VotesToken::DelegateChanged>(log, name)?;
            GovEvent::DelegateChanged { delegator: topic_address(topic(1), name)?, from: topic_address(topic(2), name)?, to: topic_address(topic(3), name)? }
        }
        Kind::DelegateVotesChanged => {
            let (previous, new) = body::<VotesToken::DelegateVotesChanged>(log, name)?;
            GovEvent::DelegateVotesChanged { delegate: topic_address(topic(1), name)?, previous: u256(previous), new: u256(new) }
        }
        // ERC-721 `Transfer` has the ERC-20 signature with the token id indexed: four topics.
        Kind::Transfer if log.topics.len() == 4 => {
            body::<AchievementNft::Transfer>(log, name)?;
            GovEvent::NftTransfer { from: topic_address(topic(1), name)?, to: topic_address(topic(2), name)?, token_id: U256::from_big_endian(&topic(3).0) }
        }
        Kind::Transfer => {
            let (value,) = body::<VotesToken::Transfer>(log, name)?;
            GovEvent::Transfer { from: topic_address(topic(1), name)?, to: topic_address(topic(2), name)?, value: u256(value) }
        }
        Kind::GovernanceWeightBonusChanged => {
            let (previous, new) = body::<BenefitExecutor::GovernanceWeightBonusChanged>(log, name)?;
            GovEvent::BonusChanged { account: topic_address(topic(1), name)?, previous: u256(previous), new: u256(new) }
        }
        Kind::SpecialBenefitsChanged => {
            let (fee_discount_bps, priority_boost) = body::<BenefitExecutor::SpecialBenefitsChanged>(log, name)?;
            GovEvent::BenefitsChanged {
                account: topic_address(topic(1), name)?,
                fee_discount_bps: u256(fee_discount_bps),
                priority_boost: u256(priority_boost),
            }
        }
    };
    Ok((ev, EventMeta { address: log.address, block_number: log.block_number, block_hash: log.block_hash, tx_hash: log.tx_hash, log_index: log.log_index }))
}

pub use self::encode::topic;

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

    fn a(x: u8) -> alloy_primitives::Address {
        alloy_primitives::Address::from([x; 20])
    }

    fn n(x: u64) -> alloy_primitives::U256 {
        alloy_primitives::U256::from(x)
    }

    /// The log a contract would emit for `e`: its topics and data as the binding encodes them.
    fn emitted<E: SolEvent>(e: &E) -> RawLog {
        let topics = e.encode_topics().into_iter().map(|t| B256(t.0 .0)).collect();
        log(topics, e.encode_data())
    }

    #[test]
    fn every_kind_decodes_from_what_the_contract_emits() {
        let id = alloy_primitives::B256::from([7; 32]);
        let cases: Vec<(RawLog, GovEvent)> = vec![
            (
                emitted(&Governor::VoteCastWithParams {
                    voter: a(9),
                    proposalId: n(5),
                    support: 2,
                    weight: n(40),
                    reason: "r".into(),
                    params: vec![1, 2].into(),
                }),
                GovEvent::VoteCast {
                    voter: Address([9; 20]),
                    proposal_id: U256::from(5),
                    support: 2,
                    weight: U256::from(40),
                    reason: "r".into(),
                    params: Some(vec![1, 2]),
                },
            ),
            (emitted(&Governor::ProposalCanceled { proposalId: n(5) }), GovEvent::ProposalCanceled { proposal_id: U256::from(5) }),
            (emitted(&Governor::ProposalExecuted { proposalId: n(5) }), GovEvent::ProposalExecuted { proposal_id: U256::from(5) }),
            (emitted(&Governor::ProposalQueued { proposalId: n(5), etaSeconds: n(99) }), GovEvent::ProposalQueued { proposal_id: U256::from(5), eta: 99 }),
            (
                emitted(&Governor::ProposalExtended { proposalId: n(5), extendedDeadline: 77 }),
                GovEvent::ProposalExtended { proposal_id: U256::from(5), extended_deadline: 77 },
            ),
            (
                emitted(&Governor::VotingDelaySet { oldVotingDelay: n(1), newVotingDelay: n(2) }),
                GovEvent::SettingChanged { setting: Setting::VotingDelay, old: U256::from(1), new: U256::from(2) },
            ),
            (
                emitted(&Governor::VotingPeriodSet { oldVotingPeriod: n(1), newVotingPeriod: n(2) }),
                GovEvent::SettingChanged { setting: Setting::VotingPeriod, old: U256::from(1), new: U256::from(2) },
            ),
            (
                emitted(&Governor::ProposalThresholdSet { oldProposalThreshold: n(1), newProposalThreshold: n(2) }),
                GovEvent::SettingChanged { setting: Setting::ProposalThreshold, old: U256::from(1), new: U256::from(2) },
            ),
            (
                emitted(&Governor::QuorumNumeratorUpdated { oldQuorumNumerator: n(1), newQuorumNumerator: n(2) }),
                GovEvent::SettingChanged { setting: Setting::QuorumNumerator, old: U256::from(1), new: U256::from(2) },
            ),
            (
                emitted(&Timelock::MinDelayChange { oldDuration: n(1), newDuration: n(2) }),
                GovEvent::SettingChanged { setting: Setting::TimelockMinDelay, old: U256::from(1), new: U256::from(2) },
            ),
            (
                emitted(&Governor::TimelockChange { oldTimelock: a(1), newTimelock: a(2) }),
                GovEvent::TimelockChange { old: Address([1; 20]), new: Address([2; 20]) },
            ),
            (
                emitted(&Timelock::CallScheduled {
                    id,
                    index: n(3),
                    target: a(4),
                    value: n(0),
                    data: vec![0xaa; 40].into(),
                    predecessor: alloy_primitives::B256::ZERO,
                    delay: n(3600),
                }),
                GovEvent::CallScheduled { id: B256([7; 32]), index: 3, target: Address([4; 20]), delay: 3600 },
            ),
            (
                emitted(&Timelock::CallExecuted { id, index: n(3), target: a(4), value: n(0), data: vec![].into() }),
                GovEvent::CallExecuted { id: B256([7; 32]), index: 3 },
            ),
            (emitted(&Timelock::Cancelled { id }), GovEvent::Cancelled { id: B256([7; 32]) }),
            (emitted(&Timelock::CallSalt { id, salt: alloy_primitives::B256::ZERO }), GovEvent::CallSalt { id: B256([7; 32]) }),
            (
                emitted(&VotesToken::DelegateChanged { delegator: a(1), fromDelegate: a(2), toDelegate: a(3) }),
                GovEvent::DelegateChanged { delegator: Address([1; 20]), from: Address([2; 20]), to: Address([3; 20]) },
            ),
            (
                emitted(&VotesToken::DelegateVotesChanged { delegate: a(1), previousVotes: n(10), newVotes: n(20) }),
                GovEvent::DelegateVotesChanged { delegate: Address([1; 20]), previous: U256::from(10), new: U256::from(20) },
            ),
            (
                emitted(&VotesToken::Transfer { from: a(1), to: a(2), value: alloy_primitives::U256::MAX }),
                GovEvent::Transfer { from: Address([1; 20]), to: Address([2; 20]), value: U256::MAX },
            ),
            (
                emitted(&AchievementNft::Transfer { from: a(0), to: a(2), tokenId: n(8) }),
                GovEvent::NftTransfer { from: Address([0; 20]), to: Address([2; 20]), token_id: U256::from(8) },
            ),
            (
                emitted(&BenefitExecutor::GovernanceWeightBonusChanged { account: a(1), previousBonus: n(0), newBonus: n(500) }),
                GovEvent::BonusChanged { account: Address([1; 20]), previous: U256::zero(), new: U256::from(500) },
            ),
            (
                emitted(&BenefitExecutor::SpecialBenefitsChanged { account: a(1), feeDiscountBps: n(250), priorityBoost: n(3) }),
                GovEvent::BenefitsChanged { account: Address([1; 20]), fee_discount_bps: U256::from(250), priority_boost: U256::from(3) },
            ),
        ];
        for (l, want) in cases {
            let (got, _) = decode(&l).unwrap_or_else(|e| panic!("{want:?}: {e}"));
            assert_eq!(got, want);
        }
    }

    #[test]
    fn signatures_and_topics_agree() {
        for (sig, kind) in SIGNATURES {
            assert_eq!(kind_of(&topic(sig)), Some(*kind), "{sig}");
            assert!(sig.starts_with(kind.name()), "{sig}");
        }
        assert_eq!(kind_of(&B256([0; 32])), None);
    }

    #[test]
    fn text_that_is_not_utf8_is_kept_lossily_not_dropped() {
        // Solidity does not check `string` contents: a proposer may send any bytes, and the
        // proposal must still be indexed.
        let mut data = proposal_created(U256::from(1), &Address([5; 20]), &Address([6; 20]), 1, 2, "ab");
        let at = data.windows(2).rposition(|w| w == b"ab").unwrap();
        data[at] = 0xff;
        let (ev, _) = decode(&log(vec![topic(SIGNATURES[0].0)], data)).unwrap();
        assert!(matches!(ev, GovEvent::ProposalCreated { description, .. } if description == "\u{fffd}b"));
    }

    #[test]
    fn numbers_too_large_for_a_timepoint_are_errors() {
        let mut data = proposal_created(U256::from(1), &Address([5; 20]), &Address([6; 20]), 1, 2, "x");
        data[6 * 32..7 * 32].copy_from_slice(&uint(U256::from(u64::MAX) + 1));
        assert_eq!(decode(&log(vec![topic(SIGNATURES[0].0)], data)).unwrap_err(), DecodeError::Data("ProposalCreated"));
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
