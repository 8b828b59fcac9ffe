//! What changed, for live readers (websockets) and cache invalidation: every committed batch's
//! new proposal states, vote records and account states, and every rollback, in commit order.
//!
//! The pipeline sends an [`Update::Committed`] after each batch commits (only while someone
//! listens: a backfill without subscribers clones nothing), the listener sends an
//! [`Update::RolledBack`] after a reorg rollback, before the canonical blocks are re-applied.
//! Subscribers get a `tokio::sync::broadcast` receiver: a subscriber that falls more than the
//! hub's capacity behind gets `Lagged` and must resynchronise from the store.

use std::sync::Arc;

use tokio::sync::broadcast;

use crate::domain::{AccountPower, Address, Proposal, Vote};
use crate::store::{Batch, Mutation};

/// One change inside a committed batch.
#[derive(Clone, Debug, PartialEq)]
pub enum Change {
    /// A proposal's new state (creation, tally, status, extension, queue, execution).
    Proposal(Box<Proposal>),
    /// A new vote record.
    Vote(Box<Vote>),
    /// An account's new state (balance, delegation, votes, NFT bonus).
    Power {
        /// Account.
        account: Address,
        /// New state.
        power: Box<AccountPower>,
    },
}

/// An update, in commit order.
#[derive(Clone, Debug, PartialEq)]
pub enum Update {
    /// Blocks `from..=to` committed with these changes.
    Committed {
        /// First block.
        from: u64,
        /// Last block (the new cursor).
        to: u64,
        /// Changes, in chain order.
        changes: Vec<Change>,
    },
    /// A reorg rolled the store back: everything after `ancestor` is gone until re-applied.
    RolledBack {
        /// Last block kept.
        ancestor: u64,
        /// Blocks undone.
        depth: u64,
    },
}

impl Update {
    /// The changes a batch makes, as live readers see them.
    pub fn of_batch(batch: &Batch) -> Update {
        let changes = batch
            .mutations
            .iter()
            .filter_map(|m| match m {
                Mutation::Proposal(p) => Some(Change::Proposal(p.clone())),
                Mutation::Vote(v) => Some(Change::Vote(v.clone())),
                Mutation::Account { account, power } => Some(Change::Power { account: *account, power: Box::new(power.clone()) }),
                _ => None,
            })
            .collect();
        Update::Committed { from: batch.from, to: batch.to, changes }
    }
}

/// The broadcast point.
#[derive(Clone, Debug)]
pub struct ChangeHub {
    tx: broadcast::Sender<Arc<Update>>,
}

impl ChangeHub {
    /// A hub keeping up to `capacity` updates for slow subscribers.
    pub fn new(capacity: usize) -> Self {
        ChangeHub { tx: broadcast::channel(capacity.max(1)).0 }
    }

    /// True when someone listens.
    pub fn has_subscribers(&self) -> bool {
        self.tx.receiver_count() > 0
    }

    /// Sends an update to every subscriber (dropped when there is none).
    pub fn send(&self, u: Update) {
        let _ = self.tx.send(Arc::new(u));
    }

    /// A new subscriber, receiving updates sent from now on.
    pub fn subscribe(&self) -> broadcast::Receiver<Arc<Update>> {
        self.tx.subscribe()
    }
}

impl Default for ChangeHub {
    fn default() -> Self {
        ChangeHub::new(4_096)
    }
}
