//! `ProposalActor`: one actor per live proposal owns its state machine and tally.
//!
//! The handlers only move data; the logic lives in [`ProposalLogic`], plain methods that unit
//! tests call without an actor system. The logic follows OpenZeppelin's `Governor.state()`
//! exactly, including the transitions no event announces: Pending becomes Active once the clock
//! passes the snapshot, Active becomes Succeeded or Defeated once it passes the deadline (with
//! `quorum(snapshot)` and the counting mode), and Queued becomes Expired after a timelock grace
//! period where the timelock has one.

use std::sync::Arc;

use actix::prelude::*;

use crate::domain::{ids, ChainPoint, ClockMode, HexBytes, HistoryEntry, Proposal, ProposalStatus, QuorumCounting, Vote, B256, U256};
use crate::store::Mutation;

/// Errors of the proposal state machine.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ProposalError {
    /// The deadline passed but `quorum(snapshot)` is not known yet.
    #[error("proposal {0}: quorum at the snapshot is needed to decide the outcome")]
    QuorumUnknown(U256),
    /// An event arrived for another proposal.
    #[error("event for proposal {got} routed to actor of {expected}")]
    Misrouted {
        /// The actor's proposal.
        expected: U256,
        /// The event's proposal.
        got: U256,
    },
}

/// Governor facts every proposal of a deployment shares.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct GovernorRules {
    /// Chain id (for ids).
    pub chain_id: u64,
    /// Governor address (for ids).
    pub governor: crate::domain::Address,
    /// Clock mode.
    pub clock_mode: ClockMode,
    /// Which votes count towards quorum.
    pub quorum_counting: QuorumCounting,
    /// Grace period after eta before a queued proposal expires (Compound-style timelocks).
    pub grace_period_secs: Option<u64>,
}

impl GovernorRules {
    /// The rules of the governor the store describes.
    pub fn of(info: &crate::domain::GovernorInfo) -> Self {
        GovernorRules {
            chain_id: info.chain_id,
            governor: info.governor,
            clock_mode: info.clock_mode,
            quorum_counting: info.quorum_counting,
            grace_period_secs: info.grace_period_secs,
        }
    }
}

/// A block as the clock sees it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct BlockPoint {
    /// Number.
    pub number: u64,
    /// Timestamp.
    pub timestamp: u64,
}

/// What happens to a proposal, in chain order.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum ProposalInput {
    /// The clock reached this block (no event): re-evaluate the status.
    Tick(BlockPoint),
    /// A vote.
    Vote {
        /// Voter.
        voter: crate::domain::Address,
        /// Support value.
        support: u8,
        /// Counted weight.
        weight: U256,
        /// Reason.
        reason: String,
        /// Params (`VoteCastWithParams`).
        params: Option<Vec<u8>>,
        /// Where.
        at: EventAt,
    },
    /// `ProposalQueued`, with the timelock operation scheduled in the same transaction.
    Queued {
        /// Eta (unix seconds).
        eta: u64,
        /// Timelock operation id.
        operation: Option<B256>,
        /// Where.
        at: EventAt,
    },
    /// `ProposalExecuted`, or the timelock executing the proposal's operation.
    Executed {
        /// Where.
        at: EventAt,
    },
    /// `ProposalCanceled`, or the timelock cancelling the proposal's operation.
    Canceled {
        /// Where.
        at: EventAt,
    },
    /// `ProposalExtended` (late quorum).
    Extended {
        /// New deadline.
        deadline: u64,
        /// Where.
        at: EventAt,
    },
}

/// Where an event happened.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct EventAt {
    /// Block.
    pub block: BlockPoint,
    /// Block hash.
    pub block_hash: B256,
    /// Transaction.
    pub tx_hash: B256,
    /// Log index.
    pub log_index: u64,
}

impl ProposalInput {
    /// The block the input belongs to.
    pub fn block(&self) -> u64 {
        match self {
            ProposalInput::Tick(b) => b.number,
            ProposalInput::Vote { at, .. }
            | ProposalInput::Queued { at, .. }
            | ProposalInput::Executed { at }
            | ProposalInput::Canceled { at }
            | ProposalInput::Extended { at, .. } => at.block.number,
        }
    }
}

/// The state machine and tally of one proposal.
#[derive(Clone, Debug)]
pub struct ProposalLogic {
    /// The proposal as stored.
    pub p: Proposal,
    rules: Arc<GovernorRules>,
}

/// Value of GovernorCountingFractional's fractional support type.
const VOTE_TYPE_FRACTIONAL: u8 = 255;

impl ProposalLogic {
    /// Wraps a stored proposal.
    pub fn new(p: Proposal, rules: Arc<GovernorRules>) -> Self {
        ProposalLogic { p, rules }
    }

    /// The status OpenZeppelin's `state()` returns at clock value `clock` and time `now`.
    pub fn status_at(&self, clock: u64, now: u64) -> Result<ProposalStatus, ProposalError> {
        let p = &self.p;
        if matches!(p.status, ProposalStatus::Executed | ProposalStatus::Canceled) {
            return Ok(p.status);
        }
        if p.start_block >= clock {
            return Ok(ProposalStatus::Pending);
        }
        if p.end_block >= clock {
            return Ok(ProposalStatus::Active);
        }
        let quorum = p.quorum.ok_or(ProposalError::QuorumUnknown(p.proposal_id))?;
        let counted = match self.rules.quorum_counting {
            QuorumCounting::ForAbstain => p.for_votes.saturating_add(p.abstain_votes),
            QuorumCounting::For => p.for_votes,
        };
        if counted < quorum || p.for_votes <= p.against_votes {
            return Ok(ProposalStatus::Defeated);
        }
        let Some(eta) = p.eta else { return Ok(ProposalStatus::Succeeded) };
        if let Some(grace) = self.rules.grace_period_secs {
            if now >= eta.saturating_add(grace) {
                return Ok(ProposalStatus::Expired);
            }
        }
        Ok(ProposalStatus::Queued)
    }

    /// The clock value of a block under this governor's clock mode.
    fn clock(&self, b: &BlockPoint) -> u64 {
        self.rules.clock_mode.clock_of(b.number, b.timestamp)
    }

    fn transition(&mut self, to: ProposalStatus, at: ChainPoint, out: &mut Vec<Mutation>) {
        if self.p.status == to {
            return;
        }
        self.p.status = to;
        self.touch(&at);
        out.push(Mutation::History(HistoryEntry {
            id: ids::history(&self.p.id, to, at.block_number),
            proposal_id: self.p.proposal_id,
            status: to,
            timestamp: at.timestamp,
            block_number: at.block_number,
            transaction_hash: at.transaction_hash,
        }));
    }

    fn touch(&mut self, at: &ChainPoint) {
        self.p.updated_at = at.timestamp;
        self.p.updated_block = at.block_number;
    }

    /// Clock-driven re-evaluation at a block.
    pub fn tick(&mut self, b: BlockPoint, out: &mut Vec<Mutation>) -> Result<(), ProposalError> {
        let s = self.status_at(self.clock(&b), b.timestamp)?;
        let at = ChainPoint { block_number: b.number, timestamp: b.timestamp, transaction_hash: None };
        self.transition(s, at, out);
        Ok(())
    }

    /// Counts a vote; returns the vote record.
    pub fn apply_vote(&mut self, voter: crate::domain::Address, support: u8, weight: U256, reason: String, params: Option<Vec<u8>>, at: EventAt) -> Vote {
        match support {
            0 => self.p.against_votes = self.p.against_votes.saturating_add(weight),
            1 => self.p.for_votes = self.p.for_votes.saturating_add(weight),
            2 => self.p.abstain_votes = self.p.abstain_votes.saturating_add(weight),
            VOTE_TYPE_FRACTIONAL => {
                // GovernorCountingFractional: params = abi.encodePacked(uint128 against, uint128 for, uint128 abstain).
                if let Some(pr) = params.as_ref().filter(|p| p.len() == 48) {
                    let part = |i: usize| U256::from_big_endian(&pr[i * 16..i * 16 + 16]);
                    self.p.against_votes = self.p.against_votes.saturating_add(part(0));
                    self.p.for_votes = self.p.for_votes.saturating_add(part(1));
                    self.p.abstain_votes = self.p.abstain_votes.saturating_add(part(2));
                }
            }
            _ => {}
        }
        self.p.vote_count += 1;
        self.touch(&ChainPoint { block_number: at.block.number, timestamp: at.block.timestamp, transaction_hash: None });
        Vote {
            id: ids::event(self.rules.chain_id, &at.block_hash, at.log_index),
            proposal_id: self.p.proposal_id,
            voter,
            support,
            weight,
            reason: (!reason.is_empty()).then_some(reason),
            params: params.filter(|p| !p.is_empty()).map(HexBytes),
            block_number: at.block.number,
            block_hash: at.block_hash,
            log_index: at.log_index,
            transaction_hash: at.tx_hash,
            timestamp: at.block.timestamp,
        }
    }

    /// Applies inputs in chain order; returns the writes, the proposal row last when changed.
    pub fn apply(&mut self, inputs: Vec<ProposalInput>, quorum: Option<U256>) -> Result<Vec<Mutation>, ProposalError> {
        let mut out = Vec::new();
        let before = self.p.clone();
        // Quorum belongs to proposals that reached their snapshot: one canceled while Pending
        // has none, whether its cancellation is seen live or in a backfill batch.
        if self.p.quorum.is_none() && self.p.status != ProposalStatus::Canceled {
            self.p.quorum = quorum;
        }
        for input in inputs {
            match input {
                ProposalInput::Tick(b) => self.tick(b, &mut out)?,
                ProposalInput::Vote { voter, support, weight, reason, params, at } => {
                    let v = self.apply_vote(voter, support, weight, reason, params, at);
                    out.push(Mutation::Vote(Box::new(v)));
                }
                ProposalInput::Queued { eta, operation, at } => {
                    self.p.eta = Some(eta);
                    if operation.is_some() {
                        self.p.timelock_operation_id = operation;
                    }
                    self.transition(ProposalStatus::Queued, point(&at), &mut out);
                    // A grace period already over in the queuing block (no delay, no grace):
                    // that block's clock tick came before the event, so expire here.
                    if self.rules.grace_period_secs.is_some_and(|g| at.block.timestamp >= eta.saturating_add(g)) {
                        let expiry = ChainPoint { block_number: at.block.number, timestamp: at.block.timestamp, transaction_hash: None };
                        self.transition(ProposalStatus::Expired, expiry, &mut out);
                    }
                }
                ProposalInput::Executed { at } => {
                    if self.p.executed_at.is_none() {
                        self.p.executed_at = Some(at.block.timestamp);
                    }
                    self.transition(ProposalStatus::Executed, point(&at), &mut out);
                }
                ProposalInput::Canceled { at } => {
                    if self.p.status == ProposalStatus::Pending {
                        self.p.quorum = None;
                    }
                    if self.p.status != ProposalStatus::Executed {
                        self.transition(ProposalStatus::Canceled, point(&at), &mut out);
                    }
                }
                ProposalInput::Extended { deadline, at } => {
                    self.p.end_block = deadline;
                    self.touch(&point(&at));
                }
            }
        }
        if self.p != before {
            out.push(Mutation::Proposal(Box::new(self.p.clone())));
        }
        Ok(out)
    }

    /// What the pipeline needs to know to schedule this proposal's clock ticks.
    pub fn summary(&self) -> LiveSummary {
        LiveSummary {
            status: self.p.status,
            snapshot: self.p.start_block,
            deadline: self.p.end_block,
            expires_at: match (self.p.eta, self.rules.grace_period_secs) {
                (Some(eta), Some(g)) if self.p.status == ProposalStatus::Queued => Some(eta.saturating_add(g)),
                _ => None,
            },
            quorum_known: self.p.quorum.is_some(),
            creation_index: self.p.creation_index,
            proposer: self.p.proposer,
        }
    }
}

fn point(at: &EventAt) -> ChainPoint {
    ChainPoint { block_number: at.block.number, timestamp: at.block.timestamp, transaction_hash: Some(at.tx_hash) }
}

/// The pipeline's view of a live proposal.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct LiveSummary {
    /// Status after the last batch.
    pub status: ProposalStatus,
    /// Snapshot (clock units).
    pub snapshot: u64,
    /// Deadline (clock units).
    pub deadline: u64,
    /// Unix time at which a queued proposal expires, where the timelock has a grace period.
    pub expires_at: Option<u64>,
    /// Whether `quorum(snapshot)` is known.
    pub quorum_known: bool,
    /// Position in creation order.
    pub creation_index: u64,
    /// Proposer.
    pub proposer: crate::domain::Address,
}

/// The actor.
pub struct ProposalActor {
    logic: ProposalLogic,
}

impl ProposalActor {
    /// An actor for a stored (or just created) proposal.
    pub fn new(logic: ProposalLogic) -> Self {
        ProposalActor { logic }
    }
}

impl Actor for ProposalActor {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Self::Context) {
        // Bounded mailbox: the pipeline awaits each reply, so back-pressure reaches the listener.
        ctx.set_mailbox_capacity(64);
        tracing::debug!(target: "proposal", actor = "proposal", proposal_id = %self.logic.p.proposal_id, "started");
    }

    fn stopped(&mut self, _ctx: &mut Self::Context) {
        tracing::debug!(target: "proposal", actor = "proposal", proposal_id = %self.logic.p.proposal_id, status = self.logic.p.status.as_str(), "passivated");
    }
}

/// Apply a batch's inputs; replies with the writes and the new summary.
#[derive(Message)]
#[rtype(result = "Result<Applied, ProposalError>")]
pub struct Apply {
    /// Inputs in chain order.
    pub inputs: Vec<ProposalInput>,
    /// `quorum(snapshot)`, when the pipeline has fetched it.
    pub quorum: Option<U256>,
}

/// Reply to [`Apply`].
#[derive(Debug, serde::Serialize, serde::Deserialize)]
pub struct Applied {
    /// Writes for the batch.
    pub mutations: Vec<Mutation>,
    /// State after the batch.
    pub summary: LiveSummary,
}

impl Handler<Apply> for ProposalActor {
    type Result = Result<Applied, ProposalError>;

    fn handle(&mut self, msg: Apply, _ctx: &mut Self::Context) -> Self::Result {
        let _span = tracing::debug_span!("actor", actor = "proposal", proposal_id = %self.logic.p.proposal_id, inputs = msg.inputs.len()).entered();
        let mutations = self.logic.apply(msg.inputs, msg.quorum)?;
        Ok(Applied { mutations, summary: self.logic.summary() })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::Address;

    fn rules(mode: ClockMode, grace: Option<u64>) -> Arc<GovernorRules> {
        Arc::new(GovernorRules {
            chain_id: 1,
            governor: Address([1; 20]),
            clock_mode: mode,
            quorum_counting: QuorumCounting::ForAbstain,
            grace_period_secs: grace,
        })
    }

    fn proposal(start: u64, end: u64) -> Proposal {
        let pid = U256::from(42);
        Proposal {
            id: ids::proposal(1, &Address([1; 20]), &pid),
            proposal_id: pid,
            title: "t".into(),
            description: "t".into(),
            proposer: Address([2; 20]),
            creation_index: 0,
            start_block: start,
            end_block: end,
            original_end_block: end,
            status: ProposalStatus::Pending,
            for_votes: U256::zero(),
            against_votes: U256::zero(),
            abstain_votes: U256::zero(),
            vote_count: 0,
            quorum: None,
            targets: vec![],
            values: vec![],
            signatures: vec![],
            calldatas: vec![],
            eta: None,
            timelock_operation_id: None,
            created: ChainPoint { block_number: 9, timestamp: 900, transaction_hash: Some(B256([3; 32])) },
            created_at: 900,
            updated_at: 900,
            updated_block: 9,
            executed_at: None,
            metadata_uri: None,
        }
    }

    fn at(n: u64) -> EventAt {
        EventAt { block: BlockPoint { number: n, timestamp: n * 100 }, block_hash: B256([n as u8; 32]), tx_hash: B256([7; 32]), log_index: 0 }
    }

    fn tick(n: u64) -> ProposalInput {
        ProposalInput::Tick(BlockPoint { number: n, timestamp: n * 100 })
    }

    fn vote(support: u8, w: u64, n: u64) -> ProposalInput {
        ProposalInput::Vote { voter: Address([n as u8; 20]), support, weight: U256::from(w), reason: String::new(), params: None, at: at(n) }
    }

    fn statuses(m: &[Mutation]) -> Vec<(ProposalStatus, u64)> {
        m.iter()
            .filter_map(|x| match x {
                Mutation::History(h) => Some((h.status, h.block_number)),
                _ => None,
            })
            .collect()
    }

    #[test]
    fn block_clock_pending_active_succeeded_queued_executed() {
        let mut l = ProposalLogic::new(proposal(10, 20), rules(ClockMode::BlockNumber, None));
        // Pending while snapshot >= clock.
        assert!(statuses(&l.apply(vec![tick(10)], None).unwrap()).is_empty());
        let m = l.apply(vec![tick(11), vote(1, 60, 12), vote(0, 10, 13), vote(2, 5, 13)], Some(U256::from(50))).unwrap();
        assert_eq!(statuses(&m), vec![(ProposalStatus::Active, 11)]);
        assert_eq!(l.p.for_votes, U256::from(60));
        assert_eq!(l.p.vote_count, 3);
        assert!(matches!(m.last(), Some(Mutation::Proposal(_))));
        // Still active at the deadline itself.
        assert!(statuses(&l.apply(vec![tick(20)], None).unwrap()).is_empty());
        let m = l.apply(vec![tick(21)], None).unwrap();
        assert_eq!(statuses(&m), vec![(ProposalStatus::Succeeded, 21)]);
        let m = l.apply(vec![ProposalInput::Queued { eta: 5000, operation: Some(B256([9; 32])), at: at(25) }], None).unwrap();
        assert_eq!(statuses(&m), vec![(ProposalStatus::Queued, 25)]);
        let m = l.apply(vec![ProposalInput::Executed { at: at(60) }], None).unwrap();
        assert_eq!(statuses(&m), vec![(ProposalStatus::Executed, 60)]);
        assert_eq!(l.p.executed_at, Some(6000));
        assert!(l.p.status.is_final());
    }

    /// NATS mode sends inputs to a partition's actors and their writes back as JSON: both
    /// must come back exactly as they were.
    #[test]
    fn inputs_and_writes_survive_the_wire() {
        let mut l = ProposalLogic::new(proposal(10, 20), rules(ClockMode::BlockNumber, None));
        let inputs = vec![
            tick(11),
            ProposalInput::Vote {
                voter: Address([3; 20]),
                support: 1,
                weight: U256::MAX,
                reason: "ünïcode ✓".into(),
                params: Some(vec![0, 1, 255]),
                at: at(12),
            },
            vote(0, 10, 13),
            ProposalInput::Extended { deadline: 30, at: at(14) },
        ];
        let wire: Vec<ProposalInput> = serde_json::from_slice(&serde_json::to_vec(&inputs).unwrap()).unwrap();
        assert_eq!(wire, inputs);
        let mut m = l.apply(inputs, Some(U256::from(50))).unwrap();
        m.extend(l.apply(vec![tick(31), ProposalInput::Queued { eta: 5000, operation: Some(B256([9; 32])), at: at(35) }], None).unwrap());
        let applied = Applied { mutations: m, summary: l.summary() };
        let back: Applied = serde_json::from_slice(&serde_json::to_vec(&applied).unwrap()).unwrap();
        assert_eq!(back.mutations, applied.mutations);
        assert_eq!(back.summary, applied.summary);
        assert!(applied.mutations.iter().any(|x| matches!(x, Mutation::Vote(_))));
        assert!(applied.mutations.iter().any(|x| matches!(x, Mutation::History(_))));
    }

    #[test]
    fn defeated_without_quorum_or_majority() {
        let mut l = ProposalLogic::new(proposal(10, 20), rules(ClockMode::BlockNumber, None));
        l.apply(vec![tick(11), vote(1, 40, 12)], Some(U256::from(50))).unwrap();
        assert_eq!(statuses(&l.apply(vec![tick(25)], None).unwrap()), vec![(ProposalStatus::Defeated, 25)]);

        let mut l = ProposalLogic::new(proposal(10, 20), rules(ClockMode::BlockNumber, None));
        // Quorum reached through abstain, but For does not beat Against.
        l.apply(vec![tick(11), vote(1, 30, 12), vote(0, 30, 12), vote(2, 100, 13)], Some(U256::from(50))).unwrap();
        assert_eq!(statuses(&l.apply(vec![tick(21)], None).unwrap()), vec![(ProposalStatus::Defeated, 21)]);
    }

    #[test]
    fn quorum_counting_for_only() {
        let mut r = (*rules(ClockMode::BlockNumber, None)).clone();
        r.quorum_counting = QuorumCounting::For;
        let mut l = ProposalLogic::new(proposal(10, 20), Arc::new(r));
        l.apply(vec![tick(11), vote(1, 40, 12), vote(2, 100, 12)], Some(U256::from(50))).unwrap();
        assert_eq!(statuses(&l.apply(vec![tick(21)], None).unwrap()), vec![(ProposalStatus::Defeated, 21)]);
    }

    #[test]
    fn late_quorum_extension_moves_the_deadline() {
        let mut l = ProposalLogic::new(proposal(10, 20), rules(ClockMode::BlockNumber, None));
        l.apply(vec![tick(11), vote(1, 60, 19), ProposalInput::Extended { deadline: 29, at: at(19) }], Some(U256::from(50))).unwrap();
        assert_eq!(l.p.end_block, 29);
        assert_eq!(l.p.original_end_block, 20);
        assert!(statuses(&l.apply(vec![tick(21)], None).unwrap()).is_empty());
        assert_eq!(statuses(&l.apply(vec![tick(30)], None).unwrap()), vec![(ProposalStatus::Succeeded, 30)]);
    }

    #[test]
    fn timestamp_clock_and_expiry_after_grace_period() {
        // Snapshot and deadline are unix times; block n has timestamp n*100.
        let mut l = ProposalLogic::new(proposal(1000, 2000), rules(ClockMode::Timestamp, Some(500)));
        assert!(statuses(&l.apply(vec![tick(10)], Some(U256::from(1))).unwrap()).is_empty());
        assert_eq!(statuses(&l.apply(vec![tick(11), vote(1, 5, 12)], None).unwrap()), vec![(ProposalStatus::Active, 11)]);
        assert_eq!(statuses(&l.apply(vec![tick(21)], None).unwrap()), vec![(ProposalStatus::Succeeded, 21)]);
        l.apply(vec![ProposalInput::Queued { eta: 3000, operation: None, at: at(22) }], None).unwrap();
        assert_eq!(l.summary().expires_at, Some(3500));
        // Still queued before eta + grace, expired at it.
        assert!(statuses(&l.apply(vec![tick(34)], None).unwrap()).is_empty());
        assert_eq!(statuses(&l.apply(vec![tick(35)], None).unwrap()), vec![(ProposalStatus::Expired, 35)]);
        assert!(l.p.status.is_final());
    }

    #[test]
    fn canceled_is_sticky_and_quorum_is_required() {
        let mut l = ProposalLogic::new(proposal(10, 20), rules(ClockMode::BlockNumber, None));
        assert_eq!(l.apply(vec![tick(30)], None).unwrap_err(), ProposalError::QuorumUnknown(U256::from(42)));
        let mut l = ProposalLogic::new(proposal(10, 20), rules(ClockMode::BlockNumber, None));
        l.apply(vec![ProposalInput::Canceled { at: at(5) }], None).unwrap();
        assert!(statuses(&l.apply(vec![tick(30)], Some(U256::from(7))).unwrap()).is_empty());
        assert_eq!(l.p.status, ProposalStatus::Canceled);
        assert_eq!(l.p.quorum, None, "canceled while Pending: no quorum, even when offered later");
        // The same cancellation seen in one backfill batch with the snapshot behind it.
        let mut l = ProposalLogic::new(proposal(10, 20), rules(ClockMode::BlockNumber, None));
        l.apply(vec![ProposalInput::Canceled { at: at(5) }, tick(15)], Some(U256::from(7))).unwrap();
        assert_eq!((l.p.status, l.p.quorum), (ProposalStatus::Canceled, None));
        // Canceled once Active: the quorum at the snapshot stays.
        let mut l = ProposalLogic::new(proposal(10, 20), rules(ClockMode::BlockNumber, None));
        l.apply(vec![tick(11), ProposalInput::Canceled { at: at(12) }], Some(U256::from(7))).unwrap();
        assert_eq!((l.p.status, l.p.quorum), (ProposalStatus::Canceled, Some(U256::from(7))));
    }

    #[test]
    fn fractional_votes_split_the_weight() {
        let mut l = ProposalLogic::new(proposal(10, 20), rules(ClockMode::BlockNumber, None));
        let mut params = vec![0u8; 48];
        params[15] = 1;
        params[31] = 2;
        params[47] = 3;
        l.apply(
            vec![
                tick(11),
                ProposalInput::Vote { voter: Address([5; 20]), support: 255, weight: U256::from(6), reason: String::new(), params: Some(params), at: at(12) },
            ],
            None,
        )
        .unwrap();
        assert_eq!((l.p.against_votes, l.p.for_votes, l.p.abstain_votes), (U256::from(1), U256::from(2), U256::from(3)));
    }

    #[actix_rt::test]
    async fn actor_applies_and_replies() {
        let addr = ProposalActor::new(ProposalLogic::new(proposal(10, 20), rules(ClockMode::BlockNumber, None))).start();
        let r = addr.send(Apply { inputs: vec![tick(11), vote(1, 1, 12)], quorum: Some(U256::one()) }).await.unwrap().unwrap();
        assert_eq!(r.summary.status, ProposalStatus::Active);
        assert!(r.summary.quorum_known);
        assert_eq!(r.mutations.len(), 3);
    }
}
