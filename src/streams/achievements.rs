//! Governance events for the achievement system (the guide's §6.1): proposal created, vote
//! cast, proposal executed and continuous participation, in one versioned JSON schema
//! (`schema/governance-event.v1.json`), keyed by event identity.
//!
//! The pipeline derives them into the store's outbox in the same commit as the chain data, so
//! a reorg rollback removes them with everything else. The [`Publisher`] moves an event to the
//! feed (and the in-process bus) only once its block is final (past `confirmations`), exactly
//! once; an event already published that a deeper reorg removes is followed by a retraction.

use crate::store::{Store, StoreError};

pub use crate::domain::achievement::*;

/// Moves final outbox events to the feed and retracts published events a reorg removed.
pub struct Publisher {
    bus: tokio::sync::broadcast::Sender<FeedItem>,
    sent: std::sync::atomic::AtomicU64,
    /// The in-process bus (`govflow.<chain>.achievements.<kind>` for subscribers in process).
    subjects_bus: Option<(std::sync::Arc<dyn crate::bus::Bus>, crate::bus::Subjects)>,
}

impl Publisher {
    /// A publisher sending new feed items (after position `sent`, e.g. the feed's end at
    /// start-up) to `bus` as well.
    pub fn new(bus: tokio::sync::broadcast::Sender<FeedItem>, sent: u64) -> Self {
        Publisher { bus, sent: std::sync::atomic::AtomicU64::new(sent), subjects_bus: None }
    }

    /// Also sends each item to `bus` (an in-process bus: its publishes complete at once) on
    /// `govflow.<chain_id>.achievements.<kind>`.
    pub fn with_bus(mut self, bus: std::sync::Arc<dyn crate::bus::Bus>, chain_id: u64) -> Self {
        self.subjects_bus = Some((bus, crate::bus::Subjects::new(chain_id)));
        self
    }

    /// Publishes every outbox event up to block `finalized`, and any retraction a rollback
    /// wrote, to the bus; returns the items sent.
    pub fn publish(&self, store: &dyn Store, finalized: u64) -> Result<Vec<FeedItem>, StoreError> {
        let fresh = store.publish_final(finalized)?;
        let mut sent = self.sent.load(std::sync::atomic::Ordering::Relaxed);
        // What this call published is what is new when it starts right after the last item
        // sent and ends at the feed's end (no retraction written since, nothing published by
        // anyone else): no need to read it back from the store.
        let contiguous = fresh.first().map_or(sent, |i| i.seq - 1) == sent;
        let end = fresh.last().map_or(sent, |i| i.seq);
        let items = if contiguous && store.feed_position()? == end {
            sent = end;
            fresh
        } else {
            let mut items = Vec::new();
            loop {
                let page = store.feed(sent, 1000)?;
                if page.is_empty() {
                    break;
                }
                sent = page.last().map_or(sent, |i| i.seq);
                items.extend(page);
            }
            items
        };
        self.sent.store(sent, std::sync::atomic::Ordering::Relaxed);
        for i in &items {
            // No subscriber is fine: the feed in the store is the durable copy.
            let _ = self.bus.send(i.clone());
            if let Some((bus, subjects)) = &self.subjects_bus {
                use futures::FutureExt;
                // The in-process bus answers at once; the feed stays the durable copy whatever it says.
                let sent = match crate::streams::relay::achievement_envelope(subjects, i) {
                    Ok(envelope) => bus.publish(envelope).now_or_never(),
                    Err(e) => Some(Err(e)),
                };
                if let Some(Err(e)) = sent {
                    tracing::debug!(target: "achievements", seq = i.seq, error = %e, "feed item not published on the in-process bus");
                }
            }
        }
        if !items.is_empty() {
            metrics::counter!(crate::metrics::ACHIEVEMENTS_PUBLISHED_TOTAL, "type" => "event")
                .increment(items.iter().filter(|i| i.item_type == "event").count() as u64);
            metrics::counter!(crate::metrics::ACHIEVEMENTS_PUBLISHED_TOTAL, "type" => "retraction")
                .increment(items.iter().filter(|i| i.item_type == "retraction").count() as u64);
        }
        Ok(items)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::{Address, B256, U256};

    /// Block 7, log 3 of a transaction on `chain_id`.
    fn origin(chain_id: u64, timestamp: u64) -> Origin {
        Origin { chain_id, governor: Address([1; 20]), block_number: 7, block_hash: B256([2; 32]), log_index: 3, tx_hash: B256([4; 32]), timestamp }
    }

    #[test]
    fn streaks_count_consecutive_proposals() {
        let mut s = Streak::default();
        assert_eq!(s.on_vote(0), None);
        assert_eq!(s.on_vote(1), None);
        assert_eq!(s.on_vote(2), Some(3));
        assert_eq!(s.on_vote(2), None, "a second vote on the same proposal");
        assert_eq!(s.on_vote(1), None, "an older proposal");
        assert_eq!(s.len, 3);
        assert_eq!(s.on_vote(4), None, "a gap restarts the streak");
        assert_eq!(s.len, 1);
        for i in 5..8 {
            s.on_vote(i);
        }
        assert_eq!(s.on_vote(8), Some(5));
    }

    #[test]
    fn identity_and_order() {
        let o = origin(1, 0);
        let e = GovernanceEvent::new(kind::VOTE_CAST, &o, Address([5; 20]), &U256::from(9), vote_data(1, &U256::from(10)));
        assert!(e.id.starts_with("1:0x0202") && e.id.ends_with(":3:vote.cast"), "{}", e.id);
        let v = serde_json::to_value(&e).unwrap();
        assert_eq!(v["schemaVersion"], 1);
        assert_eq!(v["data"]["weight"], "10");
        assert!(
            e.key() < GovernanceEvent::new(kind::VOTE_CAST, &Origin { log_index: 4, ..o }, Address([5; 20]), &U256::from(9), vote_data(1, &U256::one())).key()
        );
    }

    #[test]
    fn a_feed_item_built_around_event_json_is_its_serialization() {
        let o = origin(31337, 1_700_000_000);
        let id = U256::from_dec_str("71997373598113158101446524930813516584474447102397287286512016738131497271463").unwrap();
        for (event, item_type) in [
            (GovernanceEvent::new(kind::VOTE_CAST, &o, Address([5; 20]), &id, vote_data(2, &U256::from(10))), "event"),
            (GovernanceEvent::new(kind::PROPOSAL_CREATED, &o, Address([6; 20]), &id, created_data("Quote \" and \u{e9}")), "retraction"),
        ] {
            let event_json = serde_json::to_vec(&event).unwrap();
            for seq in [1, 42, u64::MAX] {
                let item = FeedItem { seq, item_type: item_type.into(), event: event.clone() };
                let built = FeedItem::json_around(seq, item_type, &event_json);
                assert_eq!(String::from_utf8(built.clone()).unwrap(), serde_json::to_string(&item).unwrap());
                assert_eq!(serde_json::from_slice::<FeedItem>(&built).unwrap(), item);
            }
        }
    }
}
