//! govflow over NATS JetStream (`[bus] kind = "nats"`): the listener publishes, the indexer
//! consumes, and two leases decide which instance does which.
//!
//! ```text
//!  listener role (one instance, lease "listener")
//!    Listener::run with an EventLog: each range's decoded logs → govflow.<chain>.events.<kind>
//!    (Nats-Msg-Id = <chain>:<blockHash>:<logIndex>), all acknowledged, then one
//!    govflow.<chain>.blocks.range message (headers, event count); a reorg → blocks.rollback
//!                          │ GOVFLOW_EVENTS_<chain> (file storage, dedupe window)
//!                          ▼
//!  indexer role (one instance, lease "indexer"), durable consumer "indexer", AckPolicy::All
//!    events are buffered by (block, log index); a range message turns the buffered events of
//!    its blocks into a RangeData → Pipeline::process → Store::commit (with the cursor) → ack
//!    (acknowledges the range and every event before it); a rollback → Store::rollback → ack;
//!    then final governance events go from the store's feed to govflow.<chain>.achievements.*
//! ```
//!
//! Exactly once: the store's cursor only accepts the range after it, so a range delivered
//! again (after a crash, a failover, a lost acknowledgement) is acknowledged and skipped; events
//! are keyed by their identity in the buffer; the server drops repeated publishes by id; the
//! achievement relay resumes after the feed position carried by the last message on its stream.

use std::collections::{BTreeMap, HashMap};
use std::future::Future;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use futures::future::LocalBoxFuture;
use futures::StreamExt;
use serde::{Deserialize, Serialize};
use tracing::Instrument;

use crate::bus::jetstream::JetStreamBus;
use crate::bus::{snake, Bus, BusError, Envelope, Subjects};
use crate::chain::Header;
use crate::domain::{Address, B256};
use crate::metrics as m;
use crate::store::{Cursor, Store, StoreError};
use crate::streams::achievements::{FeedItem, Publisher};
use crate::streams::decode::{self, RawLog};
use crate::streams::destination::{Destination, Reorg};
use crate::streams::listener::{IndexerStatus, ListenerError};
use crate::streams::pipeline::{Pipeline, PipelineError, RangeData, RangeOutcome};

/// Header carrying a feed position on achievement messages.
pub const FEED_SEQ_HEADER: &str = "Govflow-Feed-Seq";

/// A chain log on `govflow.<chain>.events.<kind>`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct EventMessage {
    /// Schema version (1).
    pub schema_version: u32,
    /// Event name (`VoteCast`, `Transfer`, ...).
    pub event: String,
    /// Chain id.
    pub chain_id: u64,
    /// Emitting contract.
    pub address: Address,
    /// Topics.
    pub topics: Vec<B256>,
    /// Data, 0x-hex.
    pub data: String,
    /// Block.
    pub block_number: u64,
    /// Block hash.
    pub block_hash: B256,
    /// Transaction.
    pub transaction_hash: B256,
    /// Log index.
    pub log_index: u64,
}

impl EventMessage {
    fn of(chain_id: u64, log: &RawLog) -> EventMessage {
        let event = log.topics.first().and_then(decode::kind_of).map_or("Unknown", |k| k.name()).to_string();
        EventMessage {
            schema_version: 1,
            event,
            chain_id,
            address: log.address,
            topics: log.topics.clone(),
            data: format!("0x{}", hex::encode(&log.data)),
            block_number: log.block_number,
            block_hash: log.block_hash,
            transaction_hash: log.tx_hash,
            log_index: log.log_index,
        }
    }

    fn log(&self) -> Result<RawLog, String> {
        let data = hex::decode(self.data.trim_start_matches("0x")).map_err(|e| format!("data: {e}"))?;
        Ok(RawLog {
            address: self.address,
            topics: self.topics.clone(),
            data,
            block_number: self.block_number,
            block_hash: self.block_hash,
            tx_hash: self.transaction_hash,
            log_index: self.log_index,
        })
    }

    /// The identity used as `Nats-Msg-Id`.
    pub fn id(chain_id: u64, block_hash: &B256, log_index: u64) -> String {
        format!("{chain_id}:{block_hash}:{log_index}")
    }
}

/// A block header on the wire.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct WireHeader {
    /// Number.
    pub number: u64,
    /// Hash.
    pub hash: B256,
    /// Parent hash.
    pub parent_hash: B256,
    /// Timestamp.
    pub timestamp: u64,
}

/// The end of a range on `govflow.<chain>.blocks.range`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RangeMessage {
    /// First block.
    pub from: u64,
    /// Last block.
    pub to: u64,
    /// Hash of `to`.
    pub to_hash: B256,
    /// Chain head when the range was read.
    pub head: u64,
    /// Within the reorg window (every header present, journaled).
    pub reversible: bool,
    /// Journals below this block may be pruned.
    pub prune_below: Option<u64>,
    /// Events published for the range.
    pub events: u64,
    /// Headers (every block of a reversible range; else blocks with logs and `to`).
    pub headers: Vec<WireHeader>,
}

/// Headers carried by one range message at most (~200 bytes each in JSON: ~420 KB, within the
/// 1 MiB a NATS server accepts by default). A longer range (a large `chain.max_log_range` on a
/// chain with logs in most blocks) is announced as consecutive sub-ranges, each committed alone.
pub const MAX_HEADERS_PER_RANGE_MESSAGE: usize = 2_000;

/// The range messages announcing `r`: one, or consecutive sub-ranges of at most `max_headers`
/// headers each, every one ending at a block whose header it carries, the last at `r.to`.
pub fn range_messages(r: &RangeData, head: u64, max_headers: usize) -> Vec<RangeMessage> {
    let headers: Vec<WireHeader> =
        r.headers.values().map(|h| WireHeader { number: h.number, hash: h.hash, parent_hash: h.parent_hash, timestamp: h.timestamp }).collect();
    let groups = headers.len().div_ceil(max_headers.max(1));
    let mut out = Vec::with_capacity(groups);
    let mut from = r.from;
    for group in headers.chunks(max_headers.max(1)) {
        let last = group.last().expect("chunks are not empty");
        let to = if out.len() + 1 == groups { r.to } else { last.number.min(r.to) };
        let to_hash = headers.iter().find(|h| h.number == to).map(|h| h.hash).unwrap_or_default();
        let events = r.logs.iter().filter(|l| (from..=to).contains(&l.block_number)).count() as u64;
        out.push(RangeMessage { from, to, to_hash, head, reversible: r.reversible, prune_below: r.prune_below, events, headers: group.to_vec() });
        from = to + 1;
    }
    if out.is_empty() {
        out.push(RangeMessage {
            from: r.from,
            to: r.to,
            to_hash: B256::default(),
            head,
            reversible: r.reversible,
            prune_below: r.prune_below,
            events: r.logs.len() as u64,
            headers,
        });
    }
    out
}

/// NATS mode: the listener's ranges and rollbacks go on the events stream.
impl Destination for EventLog {
    fn resume(&mut self, store_cursor: Option<Cursor>) -> LocalBoxFuture<'_, Result<(), ListenerError>> {
        Box::pin(async move { Ok(EventLog::resume(self, store_cursor.map(|c| (c.block, c.hash))).await?) })
    }

    fn position(&self, store_cursor: Option<Cursor>) -> Option<Cursor> {
        EventLog::position(self, store_cursor.map(|c| (c.block, c.hash))).map(|(block, hash)| Cursor { block, hash })
    }

    fn too_far_ahead(&self, store_block: Option<u64>) -> bool {
        EventLog::too_far_ahead(self, store_block)
    }

    fn recent(&self) -> Vec<(u64, B256)> {
        EventLog::recent(self).iter().map(|(n, h)| (*n, *h)).collect()
    }

    fn commits_here(&self) -> bool {
        // The indexer commits, and reports what it indexed.
        false
    }

    fn deliver<'a>(&'a mut self, pipeline: &'a mut Pipeline, data: RangeData, head: u64) -> LocalBoxFuture<'a, Result<RangeOutcome, ListenerError>> {
        Box::pin(async move {
            self.publish_range(&data, head).await?;
            Ok(RangeOutcome { timelock_changed: pipeline.observe_timelock(&data.logs), ..Default::default() })
        })
    }

    fn roll_back<'a>(&'a mut self, _pipeline: &'a mut Pipeline, reorg: Reorg) -> LocalBoxFuture<'a, Result<(), ListenerError>> {
        Box::pin(async move {
            self.publish_rollback(reorg.ancestor, reorg.ancestor_hash, reorg.depth, reorg.tip.1).await?;
            // The indexer counts the reorg when it rolls the store back.
            metrics::gauge!(m::LISTENER_REORG_DEPTH_BLOCKS).set(reorg.depth as f64);
            tracing::warn!(target: "listener", ancestor = reorg.ancestor, depth = reorg.depth, "reorg: rollback published on the events stream");
            Ok(())
        })
    }

    fn idle(&mut self) -> LocalBoxFuture<'_, Result<(), ListenerError>> {
        // The indexer publishes final events after its commits.
        Box::pin(async { Ok(()) })
    }
}

/// A reorg on `govflow.<chain>.blocks.rollback`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RollbackMessage {
    /// Last block still valid.
    pub ancestor: u64,
    /// Blocks void above it.
    pub depth: u64,
    /// Hash of the abandoned tip (makes the id unique per reorg).
    pub orphaned_tip: B256,
    /// Hash of the ancestor (where a listener taking over continues).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ancestor_hash: Option<B256>,
}

/// The listener's side: publishes ranges and rollbacks, remembers what it published.
pub struct EventLog {
    bus: Arc<JetStreamBus>,
    subjects: Subjects,
    chain_id: u64,
    /// Last block published and its hash.
    published: Option<(u64, B256)>,
    /// Hashes of recently published blocks (reorg detection before the store has them).
    recent: BTreeMap<u64, B256>,
    window: u64,
    max_ahead: u64,
}

impl EventLog {
    /// An event log on `bus`; `window` blocks of hashes are remembered, and the listener keeps
    /// at most `max_ahead` blocks ahead of the committed cursor.
    pub fn new(bus: Arc<JetStreamBus>, chain_id: u64, window: u64, max_ahead: u64) -> EventLog {
        EventLog { subjects: Subjects::new(chain_id), bus, chain_id, published: None, recent: BTreeMap::new(), window, max_ahead }
    }

    /// Resumes after the last range on the stream if it is ahead of the store's cursor, or at
    /// the ancestor of a rollback published after it (whatever the store's cursor: the indexer
    /// may not have applied the rollback yet).
    pub async fn resume(&mut self, store_cursor: Option<(u64, B256)>) -> Result<(), BusError> {
        self.published = None;
        self.recent.clear();
        let stream = self.subjects.events_stream();
        let last_range = self.bus.last_message(&stream, &self.subjects.range()).await?;
        let last_rollback = self.bus.last_message(&stream, &self.subjects.rollback()).await?;
        let undecodable =
            |raw: &crate::bus::jetstream::StoredMessage, e: serde_json::Error| BusError::Undecodable { subject: raw.subject.clone(), message: e.to_string() };
        if let Some(raw) = &last_range {
            let r: RangeMessage = serde_json::from_slice(&raw.payload).map_err(|e| undecodable(raw, e))?;
            if store_cursor.is_none_or(|(b, _)| r.to > b) {
                for h in &r.headers {
                    self.recent.insert(h.number, h.hash);
                }
                self.published = Some((r.to, r.to_hash));
                tracing::info!(target: "bus", published = r.to, "listener resumes after the last range on the stream");
            }
        }
        if let Some(raw) = last_rollback.filter(|rb| last_range.as_ref().is_none_or(|r| rb.sequence > r.sequence)) {
            let rb: RollbackMessage = serde_json::from_slice(&raw.payload).map_err(|e| undecodable(&raw, e))?;
            self.recent.retain(|n, _| *n <= rb.ancestor);
            self.published = rb.ancestor_hash.map(|h| (rb.ancestor, h));
            tracing::info!(target: "bus", ancestor = rb.ancestor, "listener resumes at the ancestor of the last rollback on the stream");
        }
        Ok(())
    }

    /// Where the listener continues: after what it published (the stream holds everything up
    /// to it, and a rollback it published may not be applied to the store yet), or else after
    /// the store's cursor.
    pub fn position(&self, store_cursor: Option<(u64, B256)>) -> Option<(u64, B256)> {
        self.published.or(store_cursor)
    }

    /// True when the listener should wait for the indexer.
    pub fn too_far_ahead(&self, store_cursor: Option<u64>) -> bool {
        match (self.published, store_cursor) {
            (Some((p, _)), Some(c)) => p > c + self.max_ahead,
            (Some((p, _)), None) => p > self.max_ahead + self.recent.keys().next().copied().unwrap_or(0),
            _ => false,
        }
    }

    /// Hashes of recently published blocks.
    pub fn recent(&self) -> &BTreeMap<u64, B256> {
        &self.recent
    }

    /// Publishes a range: every event (acknowledged), then the range message.
    pub async fn publish_range(&mut self, r: &RangeData, head: u64) -> Result<(), BusError> {
        let events: Vec<Envelope> = r
            .logs
            .iter()
            .map(|l| {
                let msg = EventMessage::of(self.chain_id, l);
                let subject = self.subjects.event(&snake(&msg.event));
                Envelope::json(subject, EventMessage::id(self.chain_id, &l.block_hash, l.log_index), &msg)
            })
            .collect::<Result<_, _>>()?;
        // Events first, all acknowledged, so the range message is always behind its events on
        // the stream even when a batch has to be published again.
        for chunk in events.chunks(4096) {
            self.bus.publish_all(chunk.to_vec()).await?;
        }
        for msg in range_messages(r, head, MAX_HEADERS_PER_RANGE_MESSAGE) {
            let id = format!("range:{}:{}:{}", msg.from, msg.to, msg.to_hash);
            self.bus.publish(Envelope::json(self.subjects.range(), id, &msg)?).await?;
        }
        let to_hash = r.headers.get(&r.to).map(|h| h.hash).unwrap_or_default();
        for h in r.headers.values() {
            self.recent.insert(h.number, h.hash);
        }
        let keep_from = r.to.saturating_sub(self.window + 1);
        self.recent = self.recent.split_off(&keep_from);
        self.published = Some((r.to, to_hash));
        Ok(())
    }

    /// Publishes a rollback to `ancestor`.
    pub async fn publish_rollback(&mut self, ancestor: u64, ancestor_hash: B256, depth: u64, orphaned_tip: B256) -> Result<(), BusError> {
        let msg = RollbackMessage { ancestor, depth, orphaned_tip, ancestor_hash: Some(ancestor_hash) };
        let id = format!("rollback:{ancestor}:{orphaned_tip}");
        self.bus.publish(Envelope::json(self.subjects.rollback(), id, &msg)?).await?;
        self.recent.retain(|n, _| *n <= ancestor);
        self.published = Some((ancestor, ancestor_hash));
        Ok(())
    }
}

/// Indexer failures.
#[derive(Debug, thiserror::Error)]
pub enum IndexerError {
    /// The bus failed.
    #[error(transparent)]
    Bus(#[from] BusError),
    /// The pipeline failed.
    #[error(transparent)]
    Pipeline(#[from] PipelineError),
    /// The store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// The stream lost messages (retention) between the cursor and a range.
    #[error("the events stream has no range after block {cursor}; the next one starts at {from}")]
    Gap {
        /// Committed cursor.
        cursor: u64,
        /// First block of the range received.
        from: u64,
    },
    /// A range arrived without all its events.
    #[error("range {from}..={to} announced {expected} events, {got} arrived")]
    Missing {
        /// First block.
        from: u64,
        /// Last block.
        to: u64,
        /// Announced.
        expected: u64,
        /// Buffered.
        got: u64,
    },
    /// A reorg deeper than the store can undo.
    #[error("reorg deeper than the store's reorg window (ancestor {0})")]
    ReorgTooDeep(u64),
    /// A rollback undid a batch reaching below the announced ancestor.
    #[error("the rollback to block {ancestor} undid a batch reaching below it (the store is at {landed:?}); re-index from a fresh store")]
    RolledBackBelow {
        /// Announced ancestor.
        ancestor: u64,
        /// Where the store's cursor landed.
        landed: Option<u64>,
    },
}

impl IndexerError {
    /// True for errors a restart may cure.
    pub fn is_retryable(&self) -> bool {
        match self {
            IndexerError::Bus(e) => !matches!(e, BusError::Rejected(_) | BusError::Unencodable { .. }),
            IndexerError::Pipeline(e) => e.is_retryable(),
            IndexerError::Store(e) => e.is_retryable(),
            IndexerError::Missing { .. } => true,
            IndexerError::Gap { .. } | IndexerError::ReorgTooDeep(_) | IndexerError::RolledBackBelow { .. } => false,
        }
    }
}

/// Moves the store's feed (final governance events and retractions) to the achievements
/// stream, exactly once: each item's id is its event identity (`:retraction` appended for a
/// retraction), and the relay resumes after the feed position of the stream's last message.
pub struct AchievementRelay {
    bus: Arc<dyn Bus>,
    subjects: Subjects,
    sent: u64,
}

impl AchievementRelay {
    /// A relay that has sent everything up to feed position `sent`.
    pub fn new(bus: Arc<dyn Bus>, chain_id: u64, sent: u64) -> Self {
        AchievementRelay { bus, subjects: Subjects::new(chain_id), sent }
    }

    /// The feed position of the last item on the achievements stream (0 when empty).
    pub async fn resume_position(bus: &JetStreamBus) -> Result<u64, BusError> {
        let last = bus.last_header(&bus.subjects().achievements_stream(), FEED_SEQ_HEADER).await?;
        Ok(last.and_then(|v| v.parse().ok()).unwrap_or(0))
    }

    /// The envelope of a feed item.
    pub fn envelope(&self, item: &FeedItem) -> Result<Envelope, BusError> {
        achievement_envelope(&self.subjects, item)
    }

    /// Sends every feed item after the last one sent; returns how many.
    pub async fn relay(&mut self, store: &Arc<dyn Store>) -> Result<usize, IndexerError> {
        let mut n = 0;
        loop {
            let st = store.clone();
            let after = self.sent;
            let page = tokio::task::spawn_blocking(move || st.feed(after, 1000)).await.map_err(|e| StoreError::Backend(format!("feed task: {e}")))??;
            let Some(last) = page.last().map(|i| i.seq) else { break };
            let envelopes = page.iter().map(|i| self.envelope(i)).collect::<Result<Vec<_>, _>>()?;
            self.bus.publish_all(envelopes).await?;
            n += page.len();
            self.sent = last;
        }
        Ok(n)
    }
}

/// The message of a feed item on `govflow.<chain>.achievements.<kind>`: the feed item's JSON,
/// id = the event's identity (`:retraction` appended for a retraction), the feed position in
/// the `Govflow-Feed-Seq` header.
pub fn achievement_envelope(subjects: &Subjects, item: &FeedItem) -> Result<Envelope, BusError> {
    let id = if item.item_type == "retraction" { format!("{}:retraction", item.event.id) } else { item.event.id.clone() };
    Ok(Envelope::json(subjects.achievement(&item.event.kind), id, item)?
        .with_header(FEED_SEQ_HEADER, item.seq.to_string())
        .with_header("Govflow-Item-Type", item.item_type.clone()))
}

/// The indexer role: consumes the events stream into the store.
pub struct Indexer {
    bus: Arc<JetStreamBus>,
    store: Arc<dyn Store>,
    pipeline: Pipeline,
    status: Arc<IndexerStatus>,
    publisher: Option<Arc<Publisher>>,
    relay: Option<AchievementRelay>,
    buffer: BTreeMap<(u64, u64), RawLog>,
    /// The store's cursor, as this indexer (its only writer while it holds the role) moved it.
    committed: Option<u64>,
    idle: Duration,
    stop: Arc<AtomicBool>,
}

impl Indexer {
    /// An indexer committing through `pipeline`; `publisher` and `relay` carry final
    /// governance events to the feed and the achievements stream.
    pub fn new(
        bus: Arc<JetStreamBus>,
        store: Arc<dyn Store>,
        pipeline: Pipeline,
        status: Arc<IndexerStatus>,
        publisher: Option<(Publisher, AchievementRelay)>,
        idle: Duration,
        stop: Arc<AtomicBool>,
    ) -> Indexer {
        let (publisher, relay) = match publisher {
            Some((p, r)) => (Some(Arc::new(p)), Some(r)),
            None => (None, None),
        };
        Indexer { bus, store, pipeline, status, publisher, relay, buffer: BTreeMap::new(), committed: None, idle, stop }
    }

    async fn publish_final(&mut self) -> Result<(), IndexerError> {
        if let Some(p) = &self.publisher {
            let (p, finalized) = (p.clone(), self.status.finalized());
            // The publisher moves final outbox events to the feed (one store transaction).
            crate::store::off_thread(&self.store, move |s| p.publish(s, finalized)).await?;
        }
        if let Some(r) = &mut self.relay {
            r.relay(&self.store).await?;
        }
        Ok(())
    }

    /// Consumes until the stop flag is set or an error.
    pub async fn run(&mut self) -> Result<(), IndexerError> {
        self.committed = crate::store::off_thread(&self.store, |s| s.cursor()).await?.map(|c| c.block);
        let mut messages = self.bus.indexer_deliveries().await?;
        self.publish_final().await?;
        let subjects = self.bus.subjects().clone();
        let range_subject = subjects.range();
        let rollback_subject = subjects.rollback();
        while !self.stop.load(Ordering::Relaxed) {
            let msg = match tokio::time::timeout(self.idle, messages.next()).await {
                Err(_) => {
                    // Idle: the head may have moved (finality), and the lag is worth a look.
                    self.publish_final().await?;
                    if let Ok(lag) = self.bus.indexer_lag().await {
                        metrics::gauge!(m::BUS_CONSUMER_LAG_MESSAGES).set(lag as f64);
                    }
                    continue;
                }
                Ok(None) => return Err(BusError::Unavailable("the consumer's message stream ended".into()).into()),
                Ok(Some(Err(e))) => return Err(e.into()),
                Ok(Some(Ok(msg))) => msg,
            };
            if msg.delivered > 1 {
                metrics::counter!(m::BUS_REDELIVERIES_TOTAL).increment(1);
            }
            metrics::gauge!(m::BUS_CONSUMER_LAG_MESSAGES).set(msg.pending as f64);
            let subject = msg.subject.clone();
            if subject == range_subject {
                let r: RangeMessage = match serde_json::from_slice(&msg.payload) {
                    Ok(r) => r,
                    Err(e) => {
                        self.terminate(&msg, &subject, &e.to_string()).await;
                        continue;
                    }
                };
                let span = tracing::info_span!("range", from = r.from, to = r.to, events = r.events, delivered = msg.delivered);
                match self.apply_range(r).instrument(span).await {
                    Ok(()) => {
                        msg.ack().await?;
                        self.publish_final().await?;
                    }
                    Err(e) => {
                        // Not acknowledged: the role restarts and the consumer is recreated
                        // after its acknowledgement floor, so the range comes again with its
                        // events, in order.
                        return Err(e);
                    }
                }
            } else if subject == rollback_subject {
                let r: RollbackMessage = match serde_json::from_slice(&msg.payload) {
                    Ok(r) => r,
                    Err(e) => {
                        self.terminate(&msg, &subject, &e.to_string()).await;
                        continue;
                    }
                };
                let span = tracing::info_span!("rollback", ancestor = r.ancestor, depth = r.depth);
                self.apply_rollback(r).instrument(span).await?;
                msg.ack().await?;
                self.publish_final().await?;
            } else {
                let e: EventMessage = match serde_json::from_slice(&msg.payload) {
                    Ok(e) => e,
                    Err(err) => {
                        self.terminate(&msg, &subject, &err.to_string()).await;
                        continue;
                    }
                };
                match e.log() {
                    Ok(log) => {
                        if self.committed.is_none_or(|c| log.block_number > c) {
                            self.buffer.insert((log.block_number, log.log_index), log);
                        }
                    }
                    Err(err) => self.terminate(&msg, &subject, &err).await,
                }
            }
        }
        Ok(())
    }

    async fn terminate(&self, msg: &crate::bus::jetstream::Delivery, subject: &str, why: &str) {
        metrics::counter!(m::BUS_TERMINATED_TOTAL).increment(1);
        tracing::error!(target: "bus", subject, error = why, "undecodable message terminated");
        // The consumer acknowledges cumulatively (AckPolicy::All): a Term would also settle the
        // buffered events still waiting for their range's commit. With events buffered, the
        // message is only skipped; the range's acknowledgement settles it with them.
        if self.buffer.is_empty() {
            if let Err(e) = msg.terminate().await {
                // Not settled: it comes again after the next start and is terminated then.
                tracing::warn!(target: "bus", subject, error = %e, "undecodable message not terminated");
            }
        }
    }

    async fn apply_range(&mut self, r: RangeMessage) -> Result<(), IndexerError> {
        self.status.head.fetch_max(r.head, Ordering::Relaxed);
        let cursor = self.committed;
        if cursor.is_some_and(|c| r.to <= c) {
            // Committed before (a redelivery): nothing to do but drop what it buffered.
            self.buffer = self.buffer.split_off(&(r.to + 1, 0));
            return Ok(());
        }
        let from = match cursor {
            Some(c) if r.from <= c => c + 1,
            Some(c) if r.from > c + 1 => return Err(IndexerError::Gap { cursor: c, from: r.from }),
            _ => r.from,
        };
        let headers: BTreeMap<u64, Header> = r
            .headers
            .iter()
            .filter(|h| h.number >= from)
            .map(|h| (h.number, Header { number: h.number, hash: h.hash, parent_hash: h.parent_hash, timestamp: h.timestamp }))
            .collect();
        let hashes: HashMap<u64, B256> = headers.iter().map(|(n, h)| (*n, h.hash)).collect();
        let rest = self.buffer.split_off(&(r.to + 1, 0));
        let taken = std::mem::replace(&mut self.buffer, rest);
        let logs: Vec<RawLog> = taken.into_values().filter(|l| l.block_number >= from && hashes.get(&l.block_number) == Some(&l.block_hash)).collect();
        if from == r.from && logs.len() as u64 != r.events {
            tracing::error!(target: "bus", from = r.from, to = r.to, expected = r.events, got = logs.len(), "range has a different number of events than announced; reading the stream again");
            return Err(IndexerError::Missing { from: r.from, to: r.to, expected: r.events, got: logs.len() as u64 });
        }
        if r.reversible {
            // Within the reorg window every block is a batch of its own, so a rollback to any
            // ancestor the listener announces lands exactly on it: the store undoes whole
            // batches, and the blocks between a batch's start and the ancestor are not on the
            // stream again (their events were delivered, acknowledged and deduplicated).
            let mut logs = logs.into_iter().peekable();
            for b in from..=r.to {
                let Some(h) = headers.get(&b) else { return Err(PipelineError::MissingHeader(b).into()) };
                let mut block_logs = Vec::new();
                while let Some(l) = logs.next_if(|l| l.block_number == b) {
                    block_logs.push(l);
                }
                let data = RangeData { from: b, to: b, headers: BTreeMap::from([(b, *h)]), logs: block_logs, reversible: true, prune_below: r.prune_below };
                self.pipeline.process(data).await?;
                self.committed = Some(b);
            }
        } else {
            let data = RangeData { from, to: r.to, headers, logs, reversible: false, prune_below: r.prune_below };
            self.pipeline.process(data).await?;
            self.committed = Some(r.to);
        }
        self.status.indexed.store(r.to, Ordering::Relaxed);
        self.status.caught_up.store(r.to >= r.head, Ordering::Relaxed);
        metrics::gauge!(m::LISTENER_INDEXED_BLOCK).set(r.to as f64);
        metrics::counter!(m::LISTENER_BLOCKS_PROCESSED_TOTAL).increment(r.to - from + 1);
        Ok(())
    }

    async fn apply_rollback(&mut self, r: RollbackMessage) -> Result<(), IndexerError> {
        self.buffer = {
            let mut b = std::mem::take(&mut self.buffer);
            let _ = b.split_off(&(r.ancestor + 1, 0));
            b
        };
        let cursor = self.committed;
        if cursor.is_some_and(|c| c > r.ancestor) {
            let ancestor = r.ancestor;
            let landed = match crate::store::off_thread(&self.store, move |s| s.rollback(ancestor)).await {
                Ok(c) => c.map(|c| c.block),
                Err(StoreError::ReorgTooDeep { .. }) => return Err(IndexerError::ReorgTooDeep(r.ancestor)),
                Err(e) => return Err(e.into()),
            };
            self.committed = landed;
            if landed != Some(ancestor) {
                // A batch spanning the ancestor (committed before batches in the window were
                // one block each): the blocks up to the ancestor are gone from the store and
                // will not come again on the stream.
                return Err(IndexerError::RolledBackBelow { ancestor, landed });
            }
            let depth = cursor.unwrap_or(0).saturating_sub(r.ancestor);
            self.status.reorgs.fetch_add(1, Ordering::Relaxed);
            self.status.indexed.store(r.ancestor, Ordering::Relaxed);
            metrics::counter!(m::LISTENER_REORGS_TOTAL).increment(1);
            tracing::warn!(target: "bus", ancestor = r.ancestor, depth, "reorg from the events stream: rolled back");
            self.pipeline.reset().await?;
            self.pipeline.notify_rollback(r.ancestor, depth);
        }
        Ok(())
    }
}

/// Runs `work` while this instance holds lease `role`; takes the role again (or waits for it)
/// after `work` fails or the lease is lost. Returns when `stop` is set, or with the message of a
/// failure `work` says is fatal.
pub async fn hold_role<F, Fut>(bus: Arc<JetStreamBus>, role: &'static str, holder: String, ttl: Duration, stop: Arc<AtomicBool>, work: F) -> Result<(), String>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<(), (bool, String)>>,
{
    hold_role_when(bus, role.to_string(), holder, ttl, stop, || true, work).await
}

/// [`hold_role`] for a role this instance may take only while `may_take()` says so; when `work`
/// returns `Ok(())` before `stop`, the lease is given up (so another instance takes it).
pub async fn hold_role_when<M, F, Fut>(
    bus: Arc<JetStreamBus>,
    role: String,
    holder: String,
    ttl: Duration,
    stop: Arc<AtomicBool>,
    may_take: M,
    mut work: F,
) -> Result<(), String>
where
    M: Fn() -> bool,
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<(), (bool, String)>>,
{
    let role = role.as_str();
    let label = if role.starts_with("partition-") { "partition".to_string() } else { role.to_string() };
    let renew_every = ttl / 3;
    let mut failures = 0u32;
    while !stop.load(Ordering::Relaxed) {
        if !may_take() {
            tokio::time::sleep(renew_every).await;
            continue;
        }
        let revision = match bus.try_acquire(role, &holder).await {
            Ok(Some(r)) => r,
            Ok(None) => {
                tokio::time::sleep(renew_every).await;
                continue;
            }
            Err(e) => {
                tracing::debug!(target: "bus", role, error = %e, "lease not available");
                tokio::time::sleep(renew_every).await;
                continue;
            }
        };
        tracing::info!(target: "bus", role, instance = %holder, "took the role");
        metrics::counter!(m::BUS_LEASES_ACQUIRED_TOTAL, "role" => label.clone()).increment(1);
        if label != "partition" {
            metrics::gauge!(m::BUS_ROLE_HELD, "role" => label.clone()).set(1.0);
        }
        let mut revision = revision;
        let fut = work().instrument(tracing::info_span!("role", role, instance = %holder));
        tokio::pin!(fut);
        let mut tick = tokio::time::interval(renew_every);
        tick.tick().await;
        let outcome = loop {
            tokio::select! {
                r = &mut fut => break Some(r),
                _ = tick.tick() => {
                    if stop.load(Ordering::Relaxed) {
                        break None;
                    }
                    match bus.renew(role, &holder, revision).await {
                        Ok(r) => revision = r,
                        Err(e) => {
                            tracing::warn!(target: "bus", role, error = %e, "lease lost; giving the role up");
                            break None;
                        }
                    }
                }
            }
        };
        if label != "partition" {
            metrics::gauge!(m::BUS_ROLE_HELD, "role" => label.clone()).set(0.0);
        }
        match outcome {
            Some(Ok(())) => {
                failures = 0;
                if !stop.load(Ordering::Relaxed) {
                    // Given up on purpose (rebalancing): let another instance have it.
                    bus.release(role, &holder).await;
                    tracing::info!(target: "bus", role, "gave the role up");
                    tokio::time::sleep(ttl).await;
                }
            }
            None => failures = 0,
            Some(Err((true, msg))) => {
                bus.release(role, &holder).await;
                return Err(msg);
            }
            Some(Err((false, msg))) => {
                failures += 1;
                let backoff = Duration::from_millis(200u64.saturating_mul(1 << failures.min(7)));
                tracing::warn!(target: "bus", role, error = %msg, retry_in_ms = backoff.as_millis() as u64, "role failed; retrying");
                tokio::time::sleep(backoff).await;
            }
        }
    }
    bus.release(role, &holder).await;
    Ok(())
}

/// On every instance: follows range messages (head) and the store's cursor, so readiness and
/// `/v1/status` are right on instances that do not hold the indexer role.
pub async fn follow_status(bus: Arc<JetStreamBus>, store: Arc<dyn Store>, status: Arc<IndexerStatus>, every: Duration, stop: Arc<AtomicBool>) {
    let subject = bus.subjects().range();
    // The head as the last range on the stream tells it, so an instance started after the
    // chain went quiet does not serve everything as provisional until the next block.
    if let Ok(Some(raw)) = bus.last_message(&bus.subjects().events_stream(), &subject).await {
        if let Ok(r) = serde_json::from_slice::<RangeMessage>(&raw.payload) {
            status.head.fetch_max(r.head, Ordering::Relaxed);
        }
    }
    let mut sub = match bus.subscribe(&subject).await {
        Ok(s) => Some(s),
        Err(e) => {
            tracing::warn!(target: "bus", error = %e, "cannot follow ranges; status from the store only");
            None
        }
    };
    while !stop.load(Ordering::Relaxed) {
        let msg = match sub.as_mut() {
            Some(s) => tokio::time::timeout(every, s.next()).await.ok().flatten(),
            None => {
                tokio::time::sleep(every).await;
                None
            }
        };
        if let Some(e) = msg {
            if let Ok(r) = serde_json::from_slice::<RangeMessage>(&e.payload) {
                status.head.fetch_max(r.head, Ordering::Relaxed);
                // Ranges arrive: the listener (in whichever instance) reaches the node.
                status.rpc_ok.store(true, Ordering::Relaxed);
            }
        }
        let st = store.clone();
        if let Ok(Some(c)) = crate::store::off_thread(&st, |s| s.cursor()).await {
            status.indexed.store(c.block, Ordering::Relaxed);
            // The chain is at least where the store is.
            status.head.fetch_max(c.block, Ordering::Relaxed);
            if c.block >= status.head.load(Ordering::Relaxed) {
                status.caught_up.store(true, Ordering::Relaxed);
            }
        }
    }
}

/// Announces this instance (key `instance.<name>` in the lease bucket, expiring after the
/// lease TTL) and counts the instances alive, for the fair share of partitions.
pub async fn presence(bus: Arc<JetStreamBus>, holder: String, ttl: Duration, share: Arc<crate::actors::remote::Share>, stop: Arc<AtomicBool>) {
    let key = format!("instance.{holder}");
    while !stop.load(Ordering::Relaxed) {
        match bus.announce(&key, &holder).await {
            Ok(()) => match bus.count_keys("instance.").await {
                Ok(n) => share.alive.store(n.max(1), Ordering::Relaxed),
                Err(e) => tracing::debug!(target: "bus", error = %e, "instances alive not counted"),
            },
            Err(e) => tracing::debug!(target: "bus", error = %e, "presence not announced"),
        }
        metrics::gauge!(m::ACTORS_PARTITIONS_HELD).set(share.held.load(Ordering::Relaxed) as f64);
        tokio::time::sleep(ttl / 3).await;
    }
    bus.withdraw(&key).await;
}

#[cfg(test)]
mod tests {
    use super::*;

    fn range(from: u64, to: u64, with_logs: &[u64], every_block: bool) -> RangeData {
        let numbers: Vec<u64> = if every_block { (from..=to).collect() } else { with_logs.iter().copied().chain([to]).collect() };
        let hash = |n: u64| B256([n as u8; 32]);
        let headers = numbers.iter().map(|&n| (n, Header { number: n, hash: hash(n), parent_hash: hash(n.wrapping_sub(1)), timestamp: n * 12 })).collect();
        let logs = with_logs
            .iter()
            .flat_map(|&b| {
                (0..2).map(move |i| RawLog {
                    address: Default::default(),
                    topics: vec![],
                    data: vec![],
                    block_number: b,
                    block_hash: hash(b),
                    tx_hash: hash(b),
                    log_index: i,
                })
            })
            .collect();
        RangeData { from, to, headers, logs, reversible: every_block, prune_below: None }
    }

    #[test]
    fn a_range_is_announced_whole_when_its_headers_fit() {
        let r = range(10, 2_000, &[15, 700, 1_999], false);
        let m = range_messages(&r, 2_100, MAX_HEADERS_PER_RANGE_MESSAGE);
        assert_eq!(m.len(), 1);
        assert_eq!((m[0].from, m[0].to, m[0].events, m[0].headers.len()), (10, 2_000, 6, 4));
        assert_eq!(m[0].to_hash, B256([2_000u64 as u8; 32]));
    }

    #[test]
    fn long_ranges_are_split_into_consecutive_sub_ranges() {
        // Logs in every block: 10 headers per message at most.
        let r = range(100, 124, &(100..=124).collect::<Vec<_>>(), false);
        let m = range_messages(&r, 200, 10);
        let spans: Vec<(u64, u64, u64, usize)> = m.iter().map(|x| (x.from, x.to, x.events, x.headers.len())).collect();
        assert_eq!(spans, [(100, 109, 20, 10), (110, 119, 20, 10), (120, 124, 10, 5)]);
        assert_eq!(m.iter().map(|x| x.events).sum::<u64>(), r.logs.len() as u64, "every event announced once");
        for x in &m {
            assert_eq!(x.to_hash, B256([x.to as u8; 32]), "each sub-range ends at a header it carries");
            assert!(x.headers.iter().all(|h| (x.from..=x.to).contains(&h.number)));
        }
        // Sparse logs: the last sub-range still ends at `to`.
        let r = range(1, 50, &[3, 5, 7, 9], false);
        let m = range_messages(&r, 60, 2);
        let spans: Vec<(u64, u64, u64)> = m.iter().map(|x| (x.from, x.to, x.events)).collect();
        assert_eq!(spans, [(1, 5, 4), (6, 9, 4), (10, 50, 0)]);
        // A reversible range carries every header: split, each sub-range whole.
        let r = range(1, 7, &[2], true);
        let m = range_messages(&r, 7, 3);
        assert_eq!(m.iter().map(|x| (x.from, x.to, x.headers.len())).collect::<Vec<_>>(), [(1, 3, 3), (4, 6, 3), (7, 7, 1)]);
    }
}
