//! The pipeline: turns one range of blocks (headers and logs) into one atomic store batch.
//!
//! Per range it decodes the logs, routes governor events to the proposal actors and token
//! events to the voter-power shards, schedules the clock ticks at which proposals change status
//! without an event (computed exactly, also in timestamp mode), fetches `quorum(snapshot)` when a
//! proposal needs it, gathers every actor's writes and commits them with the cursor.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use actix::prelude::*;

use crate::actors::host::{ActorHost, ActorsError, LocalActors, RangeApplied, RangeWork, ShardInputs};
use crate::actors::proposal::{Apply, BlockPoint, EventAt, GovernorRules, LiveSummary, ProposalError, ProposalInput, ProposalLogic};
use crate::actors::voter_power::{shard_of, PowerInput};
use crate::chain::{ChainError, Header, RpcClient};
use crate::domain::{
    ids, metadata_uri_of, title_of, Address, ChainPoint, GovernorInfo, HexBytes, HistoryEntry, Proposal, ProposalStatus, TimelockOperation, B256, U256,
};
use crate::metrics as m;
use crate::store::{self, Batch, BlockRecord, EventId, Mutation, Store, StoreError};
use crate::streams::achievements::{self as ach, GovernanceEvent, Origin, Streak};
use crate::streams::decode::{self, GovEvent, RawLog, Setting};

/// Pipeline failures.
#[derive(Debug, thiserror::Error)]
pub enum PipelineError {
    /// Chain access failed.
    #[error(transparent)]
    Chain(#[from] ChainError),
    /// Store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// A proposal's state machine refused an input.
    #[error(transparent)]
    Proposal(#[from] ProposalError),
    /// An actor died while handling a message.
    #[error("actor mailbox: {0}")]
    Mailbox(#[from] MailboxError),
    /// A header needed for the clock is missing (the chain moved under us).
    #[error("block {0} has no header on the node")]
    MissingHeader(u64),
    /// A partition's actors (in another instance, NATS mode) did not answer or refused.
    #[error(transparent)]
    Remote(#[from] crate::actors::remote::RemoteError),
}

impl From<ActorsError> for PipelineError {
    fn from(e: ActorsError) -> Self {
        match e {
            ActorsError::Refused(e) => PipelineError::Proposal(e),
            ActorsError::Mailbox(e) => PipelineError::Mailbox(e),
            ActorsError::Store(e) => PipelineError::Store(e),
            ActorsError::Remote(e) => PipelineError::Remote(e),
        }
    }
}

impl PipelineError {
    /// True when a retry of the same range may succeed.
    pub fn is_retryable(&self) -> bool {
        match self {
            PipelineError::Chain(e) => e.is_retryable() || matches!(e, ChainError::Exhausted { .. }),
            PipelineError::Store(e) => e.is_retryable(),
            PipelineError::Mailbox(_) | PipelineError::MissingHeader(_) => true,
            PipelineError::Proposal(_) => false,
            PipelineError::Remote(e) => !e.refused,
        }
    }
}

/// One range of blocks to index.
#[derive(Clone, Debug, Default)]
pub struct RangeData {
    /// First block.
    pub from: u64,
    /// Last block.
    pub to: u64,
    /// Headers known for the range: at least every block with logs and `to`.
    pub headers: BTreeMap<u64, Header>,
    /// Logs, in chain order.
    pub logs: Vec<RawLog>,
    /// Journal the batch so a reorg can undo it.
    pub reversible: bool,
    /// Forget journals and headers below this block.
    pub prune_below: Option<u64>,
}

/// What the pipeline asks of the chain beyond the logs themselves.
#[derive(Clone)]
pub enum ChainViews {
    /// Read views and headers through RPC.
    Rpc(RpcClient),
    /// A synthetic chain (benchmarks): every quorum is this value, timestamps are `block * 12`.
    #[cfg(any(test, feature = "test-utils"))]
    Synthetic {
        /// Quorum for every snapshot.
        quorum: U256,
    },
}

impl ChainViews {
    async fn quorum(&self, governor: &Address, snapshot: u64) -> Result<U256, ChainError> {
        match self {
            ChainViews::Rpc(rpc) => rpc.view_uint(governor, "quorum(uint256)", &[U256::from(snapshot)], None).await,
            #[cfg(any(test, feature = "test-utils"))]
            ChainViews::Synthetic { quorum } => Ok(*quorum),
        }
    }

    /// `getGovernanceWeightBonus(account)` on the benefit executor after block `block`.
    async fn bonus_at(&self, executor: &Address, account: &Address, block: u64) -> Result<U256, ChainError> {
        match self {
            ChainViews::Rpc(rpc) => {
                let arg = U256::from_big_endian(&account.0);
                rpc.view_uint(executor, "getGovernanceWeightBonus(address)", &[arg], Some(block)).await
            }
            #[cfg(any(test, feature = "test-utils"))]
            ChainViews::Synthetic { .. } => Ok(U256::zero()),
        }
    }

    async fn header(&self, n: u64) -> Result<Option<Header>, ChainError> {
        match self {
            ChainViews::Rpc(rpc) => rpc.header(n).await,
            #[cfg(any(test, feature = "test-utils"))]
            ChainViews::Synthetic { .. } => Ok(Some(synthetic_header(n))),
        }
    }
}

/// Header `n` of the synthetic chain (benchmarks, tests): hash of the number, timestamp `n * 12`.
#[cfg(any(test, feature = "test-utils"))]
pub fn synthetic_header(n: u64) -> Header {
    Header {
        number: n,
        hash: B256(decode::keccak256(&n.to_be_bytes())),
        parent_hash: B256(decode::keccak256(&n.saturating_sub(1).to_be_bytes())),
        timestamp: n * 12,
    }
}

/// What one processed range did.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct RangeOutcome {
    /// Logs decoded and applied.
    pub events: usize,
    /// Logs that did not decode.
    pub undecodable: usize,
    /// Events about proposals govflow has never seen.
    pub orphans: usize,
    /// Status changes written.
    pub status_changes: usize,
    /// The governor's timelock changed: index the new one from the next block on.
    pub timelock_changed: Option<Address>,
}

/// The pipeline and the actors it owns.
pub struct Pipeline {
    store: Arc<dyn Store>,
    info: GovernorInfo,
    rules: Arc<GovernorRules>,
    views: ChainViews,
    /// The live proposals' summaries (what the clock and the quorum need of them).
    live: HashMap<U256, LiveSummary>,
    /// Where the proposal actors and voter-power shards run (this process, or partitions).
    actors: Box<dyn ActorHost>,
    quorum_cache: HashMap<u64, U256>,
    shard_count: usize,
    proposal_count: u64,
    achievements: bool,
    changes: Option<Arc<crate::streams::changes::ChangeHub>>,
}

impl Pipeline {
    /// A pipeline over `store` with its actors in this process; live proposals are loaded and
    /// their actors started.
    pub async fn new(store: Arc<dyn Store>, info: GovernorInfo, views: ChainViews, shard_count: usize, cache_per_shard: usize) -> Result<Self, PipelineError> {
        let actors = Box::new(LocalActors::new(store.clone(), shard_count, cache_per_shard));
        Self::with_actors(store, info, views, shard_count, actors).await
    }

    /// A pipeline whose proposal actors and `shard_count` voter-power shards run in `actors`
    /// (this process, or the partitions of a cluster).
    pub async fn with_actors(
        store: Arc<dyn Store>,
        info: GovernorInfo,
        views: ChainViews,
        shard_count: usize,
        actors: Box<dyn ActorHost>,
    ) -> Result<Self, PipelineError> {
        let rules = Arc::new(GovernorRules::of(&info));
        let mut p = Pipeline {
            store,
            info,
            rules,
            views,
            live: HashMap::new(),
            actors,
            quorum_cache: HashMap::new(),
            shard_count: shard_count.max(1),
            proposal_count: 0,
            achievements: true,
            changes: None,
        };
        p.reset().await?;
        Ok(p)
    }

    /// Drops every actor and reloads live state from the store (after a failed commit, a
    /// rollback or a restart).
    pub async fn reset(&mut self) -> Result<(), PipelineError> {
        self.live.clear();
        self.actors.reset();
        let (info, live, proposal_count) = store::off_thread(&self.store, |s| {
            let mut live = Vec::new();
            for p in s.live_proposals()? {
                // Counters that drifted (a crash between a vote record and its counters) are
                // corrected before the proposal's actor starts.
                let r = s.reconcile(Some(&p.proposal_id))?;
                if r.counters_corrected > 0 {
                    tracing::warn!(target: "pipeline", proposal = %p.proposal_id, corrected = r.counters_corrected, drift = r.drift, "vote counters reconciled");
                }
                live.push(p);
            }
            Ok((s.info()?, live, s.stats()?.proposals))
        })
        .await?;
        if let Some(info) = info {
            self.info = info;
            self.rules = Arc::new(GovernorRules::of(&self.info));
        }
        for p in live {
            self.spawn(p);
        }
        self.proposal_count = proposal_count;
        Ok(())
    }

    /// Sends what each committed batch changed to `hub` (websockets, cache invalidation).
    pub fn with_changes(mut self, hub: Arc<crate::streams::changes::ChangeHub>) -> Self {
        self.changes = Some(hub);
        self
    }

    /// Tells live readers that a reorg rolled the store back to `ancestor`.
    pub fn notify_rollback(&self, ancestor: u64, depth: u64) {
        if let Some(h) = &self.changes {
            h.send(crate::streams::changes::Update::RolledBack { ancestor, depth });
        }
    }

    /// Turns the derivation of governance events for the achievement system on or off.
    pub fn with_achievements(mut self, on: bool) -> Self {
        self.achievements = on;
        self
    }

    /// The governor's current settings.
    pub fn info(&self) -> &GovernorInfo {
        &self.info
    }

    /// Number of live proposal actors.
    pub fn live_actors(&self) -> usize {
        self.live.len()
    }

    fn spawn(&mut self, p: Proposal) {
        let logic = ProposalLogic::new(p, self.rules.clone());
        self.live.insert(logic.p.proposal_id, logic.summary());
        self.actors.spawn(logic.p, &self.rules);
    }

    /// Indexes one range; commits it atomically with the cursor.
    ///
    /// Exactly-once comes from the cursor: the store only accepts the range that follows the
    /// last committed block, and commits the range's effects with the cursor. The stages:
    /// decode, read what the events need from the store, route each event, read the NFT
    /// bonuses, revive stored proposals, schedule the clock ticks, fetch quorums, let the actors
    /// apply, commit, and move the live summaries on.
    pub async fn process(&mut self, r: RangeData) -> Result<RangeOutcome, PipelineError> {
        let mut out = RangeOutcome::default();
        let to_header = *r.headers.get(&r.to).ok_or(PipelineError::MissingHeader(r.to))?;
        let mut headers = r.headers.clone();
        let decoded = decode_all(&r.logs, &mut out);
        let mut known = self.prefetch(&decoded, r.from).await?;
        let mut x = Routed::new(self.shard_count, r.logs.len());
        for (ev, meta) in decoded {
            self.route(ev, meta, &headers, &known, &mut x, &mut out)?;
        }
        self.read_nft_bonuses(&mut x).await?;
        self.revive(&mut x, &mut known, &mut out).await?;
        self.schedule_ticks(&mut x, &mut headers, &r, &known).await?;
        let requests = self.with_quorums(std::mem::take(&mut x.inputs), &to_header).await?;
        let power = std::mem::take(&mut x.power);
        let answered = self.actors.apply(RangeWork { to: r.to, proposals: requests, power }).await?;
        let (batch, summaries) = self.assemble(&r, &to_header, &headers, x, answered, &mut out);
        self.commit(batch).await?;
        self.advance(summaries, &out).await?;
        Ok(out)
    }

    /// `ProposalCreated`: the proposal, its first history entry, its clock thresholds, the
    /// achievement event, and its actor. A proposal already known is left alone (a replay).
    #[allow(clippy::too_many_arguments)]
    fn create(
        &mut self,
        ev: GovEvent,
        bp: BlockPoint,
        point: ChainPoint,
        origin: &Origin,
        tx_hash: B256,
        known: &Known,
        x: &mut Routed,
        out: &mut RangeOutcome,
    ) {
        let GovEvent::ProposalCreated { proposal_id, proposer, targets, values, signatures, calldatas, vote_start, vote_end, description } = ev else { return };
        if self.live.contains_key(&proposal_id) || known.proposal(&proposal_id).is_some() {
            return;
        }
        let id = ids::proposal(self.info.chain_id, &self.info.governor, &proposal_id);
        let creation_index = self.proposal_count;
        self.proposal_count += 1;
        x.batch_proposals.insert(proposal_id, (creation_index, proposer));
        if self.achievements {
            x.outbox
                .push((GovernanceEvent::new(ach::kind::PROPOSAL_CREATED, origin, proposer, &proposal_id, ach::created_data(&title_of(&description))), true));
        }
        let p = Proposal {
            id,
            creation_index,
            proposal_id,
            title: title_of(&description),
            metadata_uri: metadata_uri_of(&description),
            description,
            proposer,
            start_block: vote_start,
            end_block: vote_end,
            original_end_block: vote_end,
            status: ProposalStatus::Pending,
            for_votes: U256::zero(),
            against_votes: U256::zero(),
            abstain_votes: U256::zero(),
            vote_count: 0,
            quorum: None,
            targets,
            values,
            signatures,
            calldatas: calldatas.into_iter().map(HexBytes).collect(),
            eta: None,
            timelock_operation_id: None,
            created: point,
            created_at: bp.timestamp,
            updated_at: bp.timestamp,
            updated_block: bp.number,
            executed_at: None,
        };
        x.created.push(Mutation::History(HistoryEntry {
            id: ids::history(&id, ProposalStatus::Pending, bp.number),
            proposal_id,
            status: ProposalStatus::Pending,
            timestamp: bp.timestamp,
            block_number: bp.number,
            transaction_hash: Some(tx_hash),
        }));
        x.created.push(Mutation::Proposal(Box::new(p.clone())));
        x.thresholds.entry(proposal_id).or_default().extend([vote_start, vote_end]);
        out.status_changes += 1;
        self.spawn(p);
        metrics::counter!(m::PIPELINE_PROPOSALS_CREATED_TOTAL).increment(1);
    }

    /// A timelock call scheduled: the operation gains a call (created on its first).
    fn schedule(x: &mut Routed, known: &Known, id: B256, delay: u64, point: ChainPoint, tx_hash: B256) {
        x.scheduled_in_tx.insert(tx_hash, id);
        let mut op = match x.ops.remove(&id) {
            Some(op) => op,
            None => known.ops.get(&id).cloned().flatten().unwrap_or(TimelockOperation {
                id,
                proposal_id: None,
                calls: 0,
                delay,
                scheduled: point,
                executed: None,
                cancelled: None,
            }),
        };
        op.calls += 1;
        x.ops.insert(id, op);
    }

    /// A timelock operation executed or cancelled (first time only): the proposal it belongs
    /// to, if any, with what happened to it.
    fn settle(x: &mut Routed, known: &Known, id: B256, executed: bool, point: ChainPoint, at: EventAt) -> Option<(U256, ProposalInput)> {
        let mut op = match x.ops.remove(&id) {
            Some(op) => op,
            None => known.ops.get(&id).cloned().flatten()?,
        };
        let mut input = None;
        if executed && op.executed.is_none() {
            op.executed = Some(point);
            input = op.proposal_id.map(|pid| (pid, ProposalInput::Executed { at }));
        } else if !executed && op.cancelled.is_none() {
            op.cancelled = Some(point);
            input = op.proposal_id.map(|pid| (pid, ProposalInput::Canceled { at }));
        }
        x.ops.insert(id, op);
        input
    }

    /// Routes one decoded event: proposal inputs, power inputs, timelock operations, settings,
    /// and the achievement events it derives.
    fn route(
        &mut self,
        ev: GovEvent,
        meta: decode::EventMeta,
        headers: &BTreeMap<u64, Header>,
        known: &Known,
        x: &mut Routed,
        out: &mut RangeOutcome,
    ) -> Result<(), PipelineError> {
        let h = *headers.get(&meta.block_number).ok_or(PipelineError::MissingHeader(meta.block_number))?;
        let bp = BlockPoint { number: h.number, timestamp: h.timestamp };
        let at = EventAt { block: bp, block_hash: meta.block_hash, tx_hash: meta.tx_hash, log_index: meta.log_index };
        let point = ChainPoint { block_number: bp.number, timestamp: bp.timestamp, transaction_hash: Some(meta.tx_hash) };
        let from_governor = meta.address == self.info.governor;
        let from_token = meta.address == self.info.token;
        let from_timelock = Some(meta.address) == self.info.timelock;
        let from_executor = Some(meta.address) == self.info.benefit_executor;
        let from_nft = Some(meta.address) == self.info.achievement_nft;
        x.applied.push(EventId { block_number: meta.block_number, block_hash: meta.block_hash, log_index: meta.log_index });
        out.events += 1;
        let origin = Origin {
            chain_id: self.info.chain_id,
            governor: self.info.governor,
            block_number: bp.number,
            block_hash: meta.block_hash,
            log_index: meta.log_index,
            tx_hash: meta.tx_hash,
            timestamp: bp.timestamp,
        };
        let mut push = |pid: U256, input: ProposalInput| {
            x.inputs.entry(pid).or_default().push((bp.number, meta.log_index + 1, input));
        };
        match ev {
            ev @ GovEvent::ProposalCreated { .. } if from_governor => self.create(ev, bp, point, &origin, meta.tx_hash, known, x, out),
            GovEvent::VoteCast { voter, proposal_id, support, weight, reason, params } if from_governor => {
                metrics::counter!(m::PIPELINE_VOTES_TOTAL).increment(1);
                if self.achievements {
                    let streak = x.streaks.entry(voter).or_insert_with(|| known.streaks.get(&voter).copied().unwrap_or_default());
                    // A voter with no streak yet has never voted: this is its first vote.
                    let first_vote = streak.len == 0;
                    x.outbox.push((GovernanceEvent::new(ach::kind::VOTE_CAST, &origin, voter, &proposal_id, ach::vote_data(support, &weight)), first_vote));
                    if let Some((index, _)) = self.proposal_meta(&x.batch_proposals, known, &proposal_id) {
                        if let Some(len) = streak.on_vote(index) {
                            x.outbox.push((GovernanceEvent::new(ach::kind::PARTICIPATION_STREAK, &origin, voter, &proposal_id, ach::streak_data(len)), true));
                        }
                    }
                }
                push(proposal_id, ProposalInput::Vote { voter, support, weight, reason, params, at });
            }
            GovEvent::ProposalCanceled { proposal_id } if from_governor => push(proposal_id, ProposalInput::Canceled { at }),
            GovEvent::ProposalExecuted { proposal_id } if from_governor => {
                if let Some((_, proposer)) = self.achievements.then(|| self.proposal_meta(&x.batch_proposals, known, &proposal_id)).flatten() {
                    x.outbox.push((GovernanceEvent::new(ach::kind::PROPOSAL_EXECUTED, &origin, proposer, &proposal_id, serde_json::json!({})), true));
                }
                push(proposal_id, ProposalInput::Executed { at });
            }
            GovEvent::ProposalQueued { proposal_id, eta } if from_governor => {
                let operation = x.scheduled_in_tx.get(&meta.tx_hash).copied();
                if let Some(op) = operation.and_then(|id| x.ops.get_mut(&id)) {
                    op.proposal_id = Some(proposal_id);
                }
                if let Some(grace) = self.info.grace_period_secs {
                    x.expiries.entry(proposal_id).or_default().push(eta.saturating_add(grace));
                }
                push(proposal_id, ProposalInput::Queued { eta, operation, at });
            }
            GovEvent::ProposalExtended { proposal_id, extended_deadline } if from_governor => {
                x.thresholds.entry(proposal_id).or_default().push(extended_deadline);
                push(proposal_id, ProposalInput::Extended { deadline: extended_deadline, at });
            }
            GovEvent::SettingChanged { setting, new, .. } if from_governor || from_timelock => {
                match setting {
                    Setting::VotingDelay => self.info.voting_delay = new.low_u64(),
                    Setting::VotingPeriod => self.info.voting_period = new.low_u64(),
                    Setting::ProposalThreshold => self.info.proposal_threshold = new,
                    Setting::QuorumNumerator | Setting::TimelockMinDelay => {}
                }
                x.info_changed = true;
            }
            GovEvent::TimelockChange { new, .. } if from_governor => {
                self.info.timelock = (!new.is_zero()).then_some(new);
                out.timelock_changed = Some(new);
                x.info_changed = true;
            }
            GovEvent::CallScheduled { id, delay, .. } if from_timelock => Self::schedule(x, known, id, delay, point, meta.tx_hash),
            GovEvent::CallExecuted { id, .. } | GovEvent::Cancelled { id } if from_timelock => {
                let executed = matches!(ev, GovEvent::CallExecuted { .. });
                if let Some((pid, input)) = Self::settle(x, known, id, executed, point, at) {
                    x.inputs.entry(pid).or_default().push((bp.number, meta.log_index + 1, input));
                }
            }
            GovEvent::CallSalt { .. } if from_timelock => {}
            GovEvent::Transfer { from, to, value } if from_token => {
                if !from.is_zero() {
                    x.power[shard_of(&from, self.shard_count)].push((from, bp, PowerInput::Debit(value)));
                }
                if !to.is_zero() {
                    x.power[shard_of(&to, self.shard_count)].push((to, bp, PowerInput::Credit(value)));
                }
            }
            GovEvent::DelegateChanged { delegator, to, .. } if from_token => {
                let d = (!to.is_zero()).then_some(to);
                x.power[shard_of(&delegator, self.shard_count)].push((delegator, bp, PowerInput::Delegate(d)));
            }
            GovEvent::DelegateVotesChanged { delegate, new, .. } if from_token => {
                x.power[shard_of(&delegate, self.shard_count)].push((delegate, bp, PowerInput::Votes(new)));
            }
            GovEvent::BonusChanged { account, new, .. } if from_executor => {
                x.bonus_events.insert((account, bp.number));
                x.power[shard_of(&account, self.shard_count)].push((account, bp, PowerInput::Bonus(new)));
            }
            GovEvent::BenefitsChanged { account, fee_discount_bps, priority_boost } if from_executor => {
                x.power[shard_of(&account, self.shard_count)].push((account, bp, PowerInput::Benefits(fee_discount_bps, priority_boost)));
            }
            GovEvent::NftTransfer { from, to, .. } if from_nft => {
                for a in [from, to] {
                    if !a.is_zero() {
                        x.nft_moves.push((a, bp));
                    }
                }
            }
            _ => {
                // A known signature from a contract that does not emit it in this role.
                out.events -= 1;
                x.applied.pop();
                out.undecodable += 1;
                metrics::counter!(m::DECODE_UNDECODABLE_TOTAL).increment(1);
            }
        }
        Ok(())
    }

    /// NFT moves without a bonus event for the account in the same block: the bonus is read
    /// from the benefit executor at that block (one call per account and block, concurrently).
    async fn read_nft_bonuses(&self, x: &mut Routed) -> Result<(), PipelineError> {
        if let Some(executor) = self.info.benefit_executor {
            let mut wanted: Vec<(Address, BlockPoint)> = Vec::new();
            let mut seen: std::collections::HashSet<(Address, u64)> = std::collections::HashSet::new();
            for (a, bp) in std::mem::take(&mut x.nft_moves) {
                if !x.bonus_events.contains(&(a, bp.number)) && seen.insert((a, bp.number)) {
                    wanted.push((a, bp));
                }
            }
            let views = &self.views;
            let bonuses = futures::future::try_join_all(wanted.iter().map(|(a, bp)| views.bonus_at(&executor, a, bp.number))).await?;
            for ((a, bp), bonus) in wanted.into_iter().zip(bonuses) {
                x.power[shard_of(&a, self.shard_count)].push((a, bp, PowerInput::Bonus(bonus)));
            }
            for inputs in x.power.iter_mut() {
                inputs.sort_by_key(|(_, bp, _)| bp.number);
            }
        }
        Ok(())
    }

    /// Starts (or revives) the actors of stored proposals that received inputs; inputs for
    /// proposals govflow never saw are orphans (created before the start block).
    async fn revive(&mut self, x: &mut Routed, known: &mut Known, out: &mut RangeOutcome) -> Result<(), PipelineError> {
        let unknown: Vec<U256> = x.inputs.keys().filter(|pid| !self.live.contains_key(pid) && !known.proposals.contains_key(pid)).copied().collect();
        if !unknown.is_empty() {
            // Proposals named only through a stored timelock operation.
            let found =
                store::off_thread(&self.store, move |s| unknown.into_iter().map(|pid| Ok((pid, s.proposal(&pid)?))).collect::<Result<Vec<_>, StoreError>>())
                    .await?;
            known.proposals.extend(found);
        }
        let targets: Vec<U256> = x.inputs.keys().copied().collect();
        for pid in targets {
            if !self.live.contains_key(&pid) {
                match known.proposals.remove(&pid).flatten() {
                    Some(p) => self.spawn(p),
                    None => {
                        let n = x.inputs.remove(&pid).map_or(0, |v| v.len());
                        out.orphans += n;
                        metrics::counter!(m::PIPELINE_ORPHAN_EVENTS_TOTAL).increment(n as u64);
                        tracing::warn!(target: "pipeline", proposal_id = %pid, events = n, "events for a proposal created before the start block; set start_block earlier");
                    }
                }
            }
        }
        Ok(())
    }

    /// Clock ticks: the exact first block of the range whose clock passes each threshold
    /// (snapshot, deadline, expiry), for every live proposal.
    async fn schedule_ticks(&mut self, x: &mut Routed, headers: &mut BTreeMap<u64, Header>, r: &RangeData, known: &Known) -> Result<(), PipelineError> {
        let prev_point = known.prev.map(|b| BlockPoint { number: b.number, timestamp: b.timestamp });
        for (pid, l) in &self.live {
            let mut ts = x.thresholds.remove(pid).unwrap_or_default();
            if !l.status.is_final() {
                ts.extend([l.snapshot, l.deadline]);
            }
            for t in ts {
                if let Some(b) = self.crossing(headers, r.from, r.to, prev_point, t, false).await? {
                    x.inputs.entry(*pid).or_default().push((b.number, 0, ProposalInput::Tick(b)));
                }
            }
            let mut exps = x.expiries.remove(pid).unwrap_or_default();
            exps.extend(l.expires_at);
            for exp in exps {
                if let Some(b) = self.crossing(headers, r.from, r.to, prev_point, exp, true).await? {
                    x.inputs.entry(*pid).or_default().push((b.number, 0, ProposalInput::Tick(b)));
                }
            }
        }
        Ok(())
    }

    /// Each proposal's inputs in chain order, with `quorum(snapshot)` once the snapshot is past.
    async fn with_quorums(&mut self, inputs: BTreeMap<U256, Vec<(u64, u64, ProposalInput)>>, to_header: &Header) -> Result<Vec<(U256, Apply)>, PipelineError> {
        let end_clock = self.info.clock_mode.clock_of(to_header.number, to_header.timestamp);
        let mut requests = Vec::new();
        for (pid, mut items) in inputs {
            let l = &self.live[&pid];
            let mut quorum = None;
            if !l.quorum_known && l.snapshot < end_clock {
                let s = l.snapshot;
                let q = match self.quorum_cache.get(&s) {
                    Some(q) => *q,
                    None => {
                        let q = self.views.quorum(&self.info.governor, s).await?;
                        self.quorum_cache.insert(s, q);
                        q
                    }
                };
                quorum = Some(q);
            }
            items.sort_by_key(|(b, order, _)| (*b, *order));
            requests.push((pid, Apply { inputs: items.into_iter().map(|(_, _, i)| i).collect(), quorum }));
        }

        Ok(requests)
    }

    /// The range's batch: created proposals, the actors' writes, timelock operations, settings,
    /// streaks and the outbox, with the headers to remember and the events applied.
    fn assemble(
        &self,
        r: &RangeData,
        to_header: &Header,
        headers: &BTreeMap<u64, Header>,
        x: Routed,
        answered: RangeApplied,
        out: &mut RangeOutcome,
    ) -> (Batch, Vec<(U256, LiveSummary)>) {
        let mut mutations = x.created;
        let mut summaries = Vec::new();
        for (pid, applied) in answered.proposals {
            out.status_changes += applied.mutations.iter().filter(|m| matches!(m, Mutation::History(_))).count();
            mutations.extend(applied.mutations);
            summaries.push((pid, applied.summary));
        }
        mutations.extend(answered.power);
        mutations.extend(x.ops.into_values().map(|op| Mutation::TimelockOp(Box::new(op))));
        if x.info_changed {
            mutations.push(Mutation::Info(Box::new(self.info.clone())));
        }
        if self.achievements {
            mutations.extend(x.streaks.into_iter().map(|(voter, streak)| Mutation::Streak { voter, streak }));
            mutations.extend(x.outbox.into_iter().map(|(e, achievement)| Mutation::Outbox { event: Box::new(e), achievement }));
        }
        let batch = Batch {
            from: r.from,
            to: r.to,
            to_hash: to_header.hash,
            blocks: headers
                .values()
                .filter(|h| r.reversible || h.number == r.to)
                .map(|h| BlockRecord { number: h.number, hash: h.hash, parent_hash: h.parent_hash, timestamp: h.timestamp })
                .collect(),
            events: x.applied,
            mutations,
            reversible: r.reversible,
            prune_below: r.prune_below,
        };
        (batch, summaries)
    }

    /// Commits the batch off the async threads and tells live readers what changed.
    async fn commit(&self, batch: Batch) -> Result<(), PipelineError> {
        let store = self.store.clone();
        let started = std::time::Instant::now();
        let update = self.changes.as_ref().filter(|h| h.has_subscribers()).map(|_| crate::streams::changes::Update::of_batch(&batch));
        tokio::task::spawn_blocking(move || store.commit(&batch)).await.map_err(|e| StoreError::Backend(format!("commit task: {e}")))??;
        metrics::histogram!(m::STORE_COMMIT_DURATION_SECONDS).record(started.elapsed().as_secs_f64());
        if let (Some(h), Some(u)) = (&self.changes, update) {
            h.send(u);
        }
        Ok(())
    }

    /// After the commit: final proposals leave the live set (their actors go), the others
    /// take their new summaries.
    async fn advance(&mut self, summaries: Vec<(U256, LiveSummary)>, out: &RangeOutcome) -> Result<(), PipelineError> {
        for (pid, s) in summaries {
            if s.status.is_final() {
                self.live.remove(&pid);
                self.actors.retire(&pid);
            } else if let Some(l) = self.live.get_mut(&pid) {
                *l = s;
            }
        }
        metrics::counter!(m::PIPELINE_EVENTS_TOTAL).increment(out.events as u64);
        if out.status_changes > 0 {
            self.publish_business_metrics().await?;
        }
        Ok(())
    }

    /// Reads, in one trip off the async threads, what the range's events need from the store:
    /// the stored proposals they name (not live here), the voters' streaks, the timelock
    /// operations, and the header before the range (for the clock).
    async fn prefetch(&self, events: &[(GovEvent, decode::EventMeta)], from: u64) -> Result<Known, StoreError> {
        let mut proposals = std::collections::BTreeSet::new();
        let mut voters = std::collections::BTreeSet::new();
        let mut ops = std::collections::BTreeSet::new();
        for (ev, _) in events {
            match ev {
                GovEvent::ProposalCreated { proposal_id, .. }
                | GovEvent::ProposalCanceled { proposal_id }
                | GovEvent::ProposalExecuted { proposal_id }
                | GovEvent::ProposalQueued { proposal_id, .. }
                | GovEvent::ProposalExtended { proposal_id, .. } => {
                    proposals.insert(*proposal_id);
                }
                GovEvent::VoteCast { proposal_id, voter, .. } => {
                    proposals.insert(*proposal_id);
                    if self.achievements {
                        voters.insert(*voter);
                    }
                }
                GovEvent::CallScheduled { id, .. } | GovEvent::CallExecuted { id, .. } | GovEvent::Cancelled { id } => {
                    ops.insert(*id);
                }
                _ => {}
            }
        }
        proposals.retain(|p| !self.live.contains_key(p));
        if proposals.is_empty() && voters.is_empty() && ops.is_empty() && from == 0 {
            return Ok(Known::default());
        }
        store::off_thread(&self.store, move |s| {
            Ok(Known {
                proposals: proposals.into_iter().map(|p| Ok((p, s.proposal(&p)?))).collect::<Result<_, StoreError>>()?,
                streaks: voters.into_iter().map(|v| Ok((v, s.streak(&v)?))).collect::<Result<_, StoreError>>()?,
                ops: ops.into_iter().map(|id| Ok((id, s.timelock_op(&id)?))).collect::<Result<_, StoreError>>()?,
                prev: from.checked_sub(1).map(|b| s.block(b)).transpose()?.flatten(),
            })
        })
        .await
    }

    /// NATS mode, on the listener's side: follows the governor's timelock changes in `logs`
    /// (so the next ranges read the new timelock) without processing anything else.
    pub fn observe_timelock(&mut self, logs: &[crate::streams::decode::RawLog]) -> Option<Address> {
        let mut changed = None;
        for log in logs.iter().filter(|l| l.address == self.info.governor) {
            if let Ok((GovEvent::TimelockChange { new, .. }, _)) = decode::decode(log) {
                self.info.timelock = (!new.is_zero()).then_some(new);
                changed = Some(new);
            }
        }
        changed
    }

    /// Creation index and proposer of a proposal: created in this batch, live, or stored.
    fn proposal_meta(&self, batch: &HashMap<U256, (u64, Address)>, known: &Known, pid: &U256) -> Option<(u64, Address)> {
        if let Some(m) = batch.get(pid) {
            return Some(*m);
        }
        if let Some(l) = self.live.get(pid) {
            return Some((l.creation_index, l.proposer));
        }
        known.proposal(pid).map(|p| (p.creation_index, p.proposer))
    }

    /// Proposals per status, pass and execution rates (the guide's business metrics).
    async fn publish_business_metrics(&self) -> Result<(), StoreError> {
        let s = store::off_thread(&self.store, |s| s.stats()).await?;
        for (status, n) in &s.by_status {
            metrics::gauge!(m::PROPOSALS, "status" => status.clone()).set(*n as f64);
        }
        let get = |k: &str| s.by_status.get(k).copied().unwrap_or(0) as f64;
        let passed = get("Succeeded") + get("Queued") + get("Executed") + get("Expired");
        let decided = passed + get("Defeated");
        if decided > 0.0 {
            metrics::gauge!(m::PROPOSALS_PASS_RATIO).set(passed / decided);
        }
        if passed > 0.0 {
            metrics::gauge!(m::PROPOSALS_EXECUTED_RATIO).set(get("Executed") / passed);
        }
        Ok(())
    }

    /// The first block in `[from, to]` whose clock passes `threshold` (`clock > threshold`, or
    /// for expiry `timestamp >= threshold`), when that happens inside the range.
    async fn crossing(
        &self,
        headers: &mut BTreeMap<u64, Header>,
        from: u64,
        to: u64,
        prev: Option<BlockPoint>,
        threshold: u64,
        expiry: bool,
    ) -> Result<Option<BlockPoint>, PipelineError> {
        let mode = self.info.clock_mode;
        let passes = |h: &Header| {
            if expiry {
                h.timestamp >= threshold
            } else {
                mode.clock_of(h.number, h.timestamp) > threshold
            }
        };
        if !expiry && mode == crate::domain::ClockMode::BlockNumber {
            let b = threshold.saturating_add(1);
            if b < from || b > to {
                return Ok(None);
            }
            let h = self.header(headers, b).await?;
            return Ok(Some(BlockPoint { number: h.number, timestamp: h.timestamp }));
        }
        if let Some(p) = prev {
            let ph = Header { number: p.number, hash: B256::default(), parent_hash: B256::default(), timestamp: p.timestamp };
            if passes(&ph) {
                return Ok(None);
            }
        }
        let last = self.header(headers, to).await?;
        if !passes(&last) {
            return Ok(None);
        }
        let (mut lo, mut hi) = (from, to);
        while lo < hi {
            let mid = lo + (hi - lo) / 2;
            let h = self.header(headers, mid).await?;
            if passes(&h) {
                hi = mid;
            } else {
                lo = mid + 1;
            }
        }
        let h = self.header(headers, lo).await?;
        Ok(Some(BlockPoint { number: h.number, timestamp: h.timestamp }))
    }

    async fn header(&self, headers: &mut BTreeMap<u64, Header>, n: u64) -> Result<Header, PipelineError> {
        if let Some(h) = headers.get(&n) {
            return Ok(*h);
        }
        let h = self.views.header(n).await?.ok_or(PipelineError::MissingHeader(n))?;
        headers.insert(n, h);
        Ok(h)
    }
}

/// What one range's events add up to, before the actors apply them.
struct Routed {
    /// Writes of the proposals created in the range.
    created: Vec<Mutation>,
    /// Per proposal: (block, order in block, input).
    inputs: BTreeMap<U256, Vec<(u64, u64, ProposalInput)>>,
    /// Per voter-power shard, its inputs.
    power: Vec<ShardInputs>,
    /// Timelock operations touched.
    ops: HashMap<B256, TimelockOperation>,
    /// Operation scheduled in each transaction (to link `ProposalQueued` to its operation).
    scheduled_in_tx: HashMap<B256, B256>,
    /// Clock thresholds (snapshot, deadline) and expiry times (eta + grace period) learnt from
    /// this range's own events: boundaries the proposals' summaries from before the range cannot
    /// know, and that may fall inside the range too.
    thresholds: BTreeMap<U256, Vec<u64>>,
    expiries: BTreeMap<U256, Vec<u64>>,
    /// The governor's settings changed.
    info_changed: bool,
    /// NFT moves, and the (account, block) pairs that had a bonus event: the others get their
    /// bonus read from the benefit executor at that block.
    bonus_events: std::collections::HashSet<(Address, u64)>,
    nft_moves: Vec<(Address, BlockPoint)>,
    /// Governance events for the achievement system, and the streaks they move.
    outbox: Vec<(GovernanceEvent, bool)>,
    streaks: HashMap<Address, Streak>,
    /// Proposals created in the range: (creation index, proposer).
    batch_proposals: HashMap<U256, (u64, Address)>,
    /// Identities of the events applied.
    applied: Vec<EventId>,
}

impl Routed {
    fn new(shard_count: usize, logs: usize) -> Self {
        Routed {
            created: Vec::new(),
            inputs: BTreeMap::new(),
            power: vec![Vec::new(); shard_count],
            ops: HashMap::new(),
            scheduled_in_tx: HashMap::new(),
            thresholds: BTreeMap::new(),
            expiries: BTreeMap::new(),
            info_changed: false,
            bonus_events: std::collections::HashSet::new(),
            nft_moves: Vec::new(),
            outbox: Vec::new(),
            streaks: HashMap::new(),
            batch_proposals: HashMap::new(),
            applied: Vec::with_capacity(logs),
        }
    }
}

/// Decodes a range's logs; undecodable ones are counted and skipped.
fn decode_all(logs: &[RawLog], out: &mut RangeOutcome) -> Vec<(GovEvent, decode::EventMeta)> {
    let mut decoded = Vec::with_capacity(logs.len());
    for log in logs {
        match decode::decode(log) {
            Ok(x) => decoded.push(x),
            Err(e) => {
                out.undecodable += 1;
                metrics::counter!(m::DECODE_UNDECODABLE_TOTAL).increment(1);
                tracing::debug!(target: "pipeline", block = log.block_number, log_index = log.log_index, error = %e, "undecodable log skipped");
            }
        }
    }
    decoded
}

/// What a range's events need from the store, read before they are routed.
#[derive(Default)]
struct Known {
    /// Proposals named by the events and not live (None: not stored either).
    proposals: HashMap<U256, Option<Proposal>>,
    /// Voters' participation streaks before the range.
    streaks: HashMap<Address, Streak>,
    /// Timelock operations before the range.
    ops: HashMap<B256, Option<TimelockOperation>>,
    /// The committed header right before the range.
    prev: Option<BlockRecord>,
}

impl Known {
    fn proposal(&self, pid: &U256) -> Option<&Proposal> {
        self.proposals.get(pid).and_then(Option::as_ref)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::{ClockMode, QuorumCounting};
    use crate::store::embedded::EmbeddedStore;
    use crate::streams::decode::encode;

    const GOVERNOR: Address = Address([0x60; 20]);
    const TOKEN: Address = Address([0x70; 20]);

    use super::synthetic_header as header;

    fn info(grace: Option<u64>) -> GovernorInfo {
        GovernorInfo {
            chain_id: 31337,
            governor: GOVERNOR,
            name: "t".into(),
            vote_source: TOKEN,
            token: TOKEN,
            benefit_executor: None,
            achievement_nft: None,
            timelock: None,
            clock_mode: ClockMode::BlockNumber,
            clock_mode_raw: "mode=blocknumber&from=default".into(),
            counting_mode: "support=bravo&quorum=for,abstain".into(),
            quorum_counting: QuorumCounting::ForAbstain,
            voting_delay: 4,
            voting_period: 5,
            proposal_threshold: U256::zero(),
            grace_period_secs: grace,
        }
    }

    fn log(block: u64, index: u64, topics: Vec<B256>, data: Vec<u8>) -> RawLog {
        RawLog { address: GOVERNOR, topics, data, block_number: block, block_hash: header(block).hash, tx_hash: B256([block as u8; 32]), log_index: index }
    }

    fn created(block: u64, id: u64, start: u64, end: u64) -> RawLog {
        let data = encode::proposal_created(U256::from(id), &Address([1; 20]), &TOKEN, start, end, "# Boundaries");
        log(block, 0, vec![encode::topic(decode::SIGNATURES[0].0)], data)
    }

    fn vote(block: u64, id: u64) -> RawLog {
        let voter = Address([2; 20]);
        let topics = vec![encode::topic(decode::SIGNATURES[1].0), B256(encode::address(&voter))];
        log(block, 0, topics, encode::vote_cast(U256::from(id), 1, U256::from(10), ""))
    }

    fn queued(block: u64, id: u64, eta: u64) -> RawLog {
        let mut data = encode::uint(U256::from(id)).to_vec();
        data.extend_from_slice(&encode::uint(U256::from(eta)));
        log(block, 0, vec![encode::topic("ProposalQueued(uint256,uint256)")], data)
    }

    fn range(from: u64, to: u64, logs: Vec<RawLog>) -> RangeData {
        let headers = logs.iter().map(|l| l.block_number).chain([to]).map(|n| (n, header(n))).collect();
        RangeData { from, to, headers, logs, reversible: false, prune_below: None }
    }

    async fn history_of(store: &Arc<dyn Store>, id: u64) -> Vec<(ProposalStatus, u64)> {
        store.history(&U256::from(id)).unwrap().into_iter().map(|h| (h.status, h.block_number)).collect()
    }

    /// Snapshot, deadline, queuing and the end of the grace period all inside one range: every
    /// transition lands at its exact first block, whatever the proposal's state before the range.
    #[actix_rt::test]
    async fn every_clock_boundary_inside_one_range() {
        let dir = tempfile::tempdir().unwrap();
        let store: Arc<dyn Store> = Arc::new(EmbeddedStore::open(dir.path()).unwrap());
        store.init_info(&info(Some(100))).unwrap();
        let mut p = Pipeline::new(store.clone(), info(Some(100)), ChainViews::Synthetic { quorum: U256::one() }, 2, 100).await.unwrap();
        // Created at 1 (snapshot 5, deadline 10), voted at 7, queued at 12 with eta 204: the
        // grace period ends at 304, first reached by block 26 (timestamp 312; block 25 is 300).
        let logs = vec![created(1, 7, 5, 10), vote(7, 7), queued(12, 7, 204)];
        p.process(range(1, 40, logs)).await.unwrap();
        let want = vec![
            (ProposalStatus::Pending, 1),
            (ProposalStatus::Active, 6),
            (ProposalStatus::Succeeded, 11),
            (ProposalStatus::Queued, 12),
            (ProposalStatus::Expired, 26),
        ];
        assert_eq!(history_of(&store, 7).await, want);
        assert_eq!(store.proposal(&U256::from(7)).unwrap().unwrap().status, ProposalStatus::Expired);
        assert_eq!(p.live_actors(), 0, "the expired proposal passivated");

        // The same story cut into ranges ending right after the queuing: the expiry comes in a
        // later range from the proposal's summary.
        let dir = tempfile::tempdir().unwrap();
        let store: Arc<dyn Store> = Arc::new(EmbeddedStore::open(dir.path()).unwrap());
        store.init_info(&info(Some(100))).unwrap();
        let mut p = Pipeline::new(store.clone(), info(Some(100)), ChainViews::Synthetic { quorum: U256::one() }, 2, 100).await.unwrap();
        p.process(range(1, 12, vec![created(1, 7, 5, 10), vote(7, 7), queued(12, 7, 204)])).await.unwrap();
        assert_eq!(store.proposal(&U256::from(7)).unwrap().unwrap().status, ProposalStatus::Queued);
        p.process(range(13, 40, vec![])).await.unwrap();
        assert_eq!(history_of(&store, 7).await, want);

        // No delay and no grace period: queued and expired in the same block.
        let dir = tempfile::tempdir().unwrap();
        let store: Arc<dyn Store> = Arc::new(EmbeddedStore::open(dir.path()).unwrap());
        store.init_info(&info(Some(0))).unwrap();
        let mut p = Pipeline::new(store.clone(), info(Some(0)), ChainViews::Synthetic { quorum: U256::one() }, 2, 100).await.unwrap();
        p.process(range(1, 20, vec![created(1, 7, 5, 10), vote(7, 7), queued(12, 7, 144)])).await.unwrap();
        let h = history_of(&store, 7).await;
        assert!(h.contains(&(ProposalStatus::Queued, 12)) && h.contains(&(ProposalStatus::Expired, 12)), "{h:?}");
        assert_eq!(store.proposal(&U256::from(7)).unwrap().unwrap().status, ProposalStatus::Expired);
    }
}
