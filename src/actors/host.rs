//! Where the proposal actors and voter-power shards run: the one seam between the pipeline and
//! its actors, chosen once at start.
//!
//! - [`LocalActors`] (embedded mode): the actors live in this process; a range's inputs are
//!   messages to their addresses.
//! - [`super::remote::RemoteActors`] (NATS mode): the actors live in partitions served by
//!   whichever instances hold them; a range's inputs travel as one request per partition.
//!
//! The pipeline computes a range's inputs the same way in both modes and hands them to
//! [`ActorHost::apply`]; what comes back (every proposal's writes and new summary, every shard's
//! writes) is committed with the cursor. After a failure the pipeline calls
//! [`ActorHost::reset`]: every actor is dropped and state comes back from the store.

use std::collections::HashMap;
use std::sync::Arc;

use actix::prelude::*;
use futures::future::BoxFuture;

use super::proposal::{Applied, Apply, BlockPoint, GovernorRules, ProposalActor, ProposalError, ProposalLogic};
use super::remote::RemoteError;
use super::voter_power::{ApplyPower, PowerInput, ResetPower, VoterPowerShard};
use crate::domain::{Address, Proposal, U256};
use crate::metrics as m;
use crate::store::{Mutation, Store, StoreError};

/// One voter-power shard's inputs of a range, in chain order.
pub type ShardInputs = Vec<(Address, BlockPoint, PowerInput)>;

/// A range's work for the actors.
pub struct RangeWork {
    /// Last block of the range.
    pub to: u64,
    /// Per proposal: its inputs in chain order, and `quorum(snapshot)` when fetched.
    pub proposals: Vec<(U256, Apply)>,
    /// Per voter-power shard (index = shard), its inputs in chain order.
    pub power: Vec<ShardInputs>,
}

/// What the actors answered for a range.
#[derive(Default)]
pub struct RangeApplied {
    /// Per proposal: its writes and the summary after the range.
    pub proposals: Vec<(U256, Applied)>,
    /// The voter-power shards' writes.
    pub power: Vec<Mutation>,
}

/// Why the actors could not apply a range.
#[derive(Debug, thiserror::Error)]
pub enum ActorsError {
    /// A proposal's state machine refused an input (not retryable).
    #[error(transparent)]
    Refused(#[from] ProposalError),
    /// An actor died while handling a message.
    #[error("actor mailbox: {0}")]
    Mailbox(#[from] MailboxError),
    /// A shard could not read the store.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// A partition's actors (in another instance) did not answer or refused.
    #[error(transparent)]
    Remote(#[from] RemoteError),
}

/// Where the actors run (see the module docs).
pub trait ActorHost: Send {
    /// Drops every actor: the next range starts from the store.
    fn reset(&mut self);
    /// A proposal is live from now on (created in the range, revived from the store, or loaded
    /// at a reset), under the governor's `rules`.
    fn spawn(&mut self, p: Proposal, rules: &Arc<GovernorRules>);
    /// A proposal reached a final state: its actor goes (it is revived from the store if an
    /// input ever names it again).
    fn retire(&mut self, pid: &U256);
    /// Applies a range's inputs.
    fn apply(&mut self, work: RangeWork) -> BoxFuture<'_, Result<RangeApplied, ActorsError>>;
}

/// The actors in this process (embedded mode).
pub struct LocalActors {
    store: Arc<dyn Store>,
    proposals: HashMap<U256, Addr<ProposalActor>>,
    shards: Vec<Addr<VoterPowerShard>>,
    shard_count: usize,
    cache_per_shard: usize,
}

impl LocalActors {
    /// `shard_count` voter-power shards over `store`, each caching `cache_per_shard` accounts.
    pub fn new(store: Arc<dyn Store>, shard_count: usize, cache_per_shard: usize) -> Self {
        LocalActors { store, proposals: HashMap::new(), shards: Vec::new(), shard_count: shard_count.max(1), cache_per_shard }
    }
}

impl ActorHost for LocalActors {
    fn reset(&mut self) {
        self.proposals.clear();
        if self.shards.is_empty() {
            self.shards = (0..self.shard_count).map(|i| VoterPowerShard::new(i, self.store.clone(), self.cache_per_shard).start()).collect();
        } else {
            for s in &self.shards {
                s.do_send(ResetPower);
            }
        }
        metrics::gauge!(m::PROPOSAL_ACTORS_LIVE).set(0.0);
    }

    fn spawn(&mut self, p: Proposal, rules: &Arc<GovernorRules>) {
        let id = p.proposal_id;
        self.proposals.insert(id, ProposalActor::new(ProposalLogic::new(p, rules.clone())).start());
        metrics::gauge!(m::PROPOSAL_ACTORS_LIVE).set(self.proposals.len() as f64);
    }

    fn retire(&mut self, pid: &U256) {
        self.proposals.remove(pid);
        metrics::gauge!(m::PROPOSAL_ACTORS_LIVE).set(self.proposals.len() as f64);
    }

    fn apply(&mut self, work: RangeWork) -> BoxFuture<'_, Result<RangeApplied, ActorsError>> {
        Box::pin(async move {
            let mut sends = Vec::with_capacity(work.proposals.len());
            for (pid, msg) in work.proposals {
                // The pipeline spawns (or revives) every proposal before it sends it inputs.
                let addr = self.proposals.get(&pid).cloned().ok_or(ActorsError::Mailbox(MailboxError::Closed))?;
                sends.push(async move { (pid, addr.send(msg).await) });
            }
            let power = self.shards.iter().zip(work.power).filter(|(_, v)| !v.is_empty()).map(|(s, v)| s.send(ApplyPower(v)));
            let (proposal_replies, power_replies) = futures::join!(futures::future::join_all(sends), futures::future::join_all(power));
            let mut out = RangeApplied::default();
            for (pid, reply) in proposal_replies {
                let applied = reply.inspect_err(|_| metrics::counter!(m::PROPOSAL_ACTOR_RESTARTS_TOTAL).increment(1))??;
                out.proposals.push((pid, applied));
            }
            for reply in power_replies {
                out.power.extend(reply??);
            }
            Ok(out)
        })
    }
}
