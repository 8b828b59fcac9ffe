//! Where the listener's ranges go: the one seam between the listener and the deployment mode,
//! chosen once at start.
//!
//! - [`Direct`] (embedded mode): the pipeline in this process commits each range with the
//!   cursor; a reorg rolls the store back here; final governance events are published here.
//! - [`super::relay::EventLog`] (NATS mode): each range and each rollback goes on the events
//!   stream, where the indexer (in this instance or another) commits it; the listener's position
//!   is what it published, which may be ahead of the store.
//!
//! The listener itself (fetching, range sizing, the reorg check and the ancestor search) is the
//! same in both modes.

use std::sync::atomic::Ordering;
use std::sync::Arc;

use futures::future::LocalBoxFuture;

use crate::domain::B256;
use crate::metrics as m;
use crate::store::{self, Cursor, Store, StoreError};
use crate::streams::achievements::Publisher;
use crate::streams::listener::{IndexerStatus, ListenerError};
use crate::streams::pipeline::{Pipeline, RangeData, RangeOutcome};

/// A reorg the listener found: roll back to `ancestor`.
#[derive(Clone, Copy, Debug)]
pub struct Reorg {
    /// The common ancestor (last block both chains share).
    pub ancestor: u64,
    /// Its hash.
    pub ancestor_hash: B256,
    /// Blocks orphaned (from the listener's position down to the ancestor).
    pub depth: u64,
    /// The listener's position before the reorg.
    pub tip: (u64, B256),
    /// The reorg window (for the error of a reorg deeper than the store remembers).
    pub window: u64,
}

/// Where the listener's ranges go (see the module docs).
pub trait Destination: Send {
    /// Before following: reads where the destination stands.
    fn resume(&mut self, store_cursor: Option<Cursor>) -> LocalBoxFuture<'_, Result<(), ListenerError>>;
    /// The position to continue from, given the store's cursor.
    fn position(&self, store_cursor: Option<Cursor>) -> Option<Cursor>;
    /// Whether the listener should wait before fetching more (the committer is behind).
    fn too_far_ahead(&self, store_block: Option<u64>) -> bool;
    /// Blocks handed over but perhaps not yet in the store (for the ancestor search).
    fn recent(&self) -> Vec<(u64, B256)>;
    /// Whether ranges are committed here (then the listener reports them as indexed).
    fn commits_here(&self) -> bool;
    /// Hands one range over.
    fn deliver<'a>(&'a mut self, pipeline: &'a mut Pipeline, data: RangeData, head: u64) -> LocalBoxFuture<'a, Result<RangeOutcome, ListenerError>>;
    /// Rolls back to the ancestor of a reorg.
    fn roll_back<'a>(&'a mut self, pipeline: &'a mut Pipeline, reorg: Reorg) -> LocalBoxFuture<'a, Result<(), ListenerError>>;
    /// Nothing new on the chain: time for work that waits on finality.
    fn idle(&mut self) -> LocalBoxFuture<'_, Result<(), ListenerError>>;
}

/// Embedded mode: the pipeline here commits (see the module docs).
pub struct Direct {
    store: Arc<dyn Store>,
    status: Arc<IndexerStatus>,
    publisher: Option<Arc<Publisher>>,
}

impl Direct {
    /// Commits through the pipeline into `store`, reporting to `status`.
    pub fn new(store: Arc<dyn Store>, status: Arc<IndexerStatus>) -> Self {
        Direct { store, status, publisher: None }
    }

    /// Publishes governance events to the feed (and the bus) once final.
    pub fn with_publisher(mut self, publisher: Publisher) -> Self {
        self.publisher = Some(Arc::new(publisher));
        self
    }

    async fn publish(&self) -> Result<(), ListenerError> {
        if let Some(p) = &self.publisher {
            let (p, finalized) = (p.clone(), self.status.finalized());
            store::off_thread(&self.store, move |s| p.publish(s, finalized)).await?;
        }
        Ok(())
    }
}

impl Destination for Direct {
    fn resume(&mut self, _store_cursor: Option<Cursor>) -> LocalBoxFuture<'_, Result<(), ListenerError>> {
        Box::pin(async { Ok(()) })
    }

    fn position(&self, store_cursor: Option<Cursor>) -> Option<Cursor> {
        store_cursor
    }

    fn too_far_ahead(&self, _store_block: Option<u64>) -> bool {
        false
    }

    fn recent(&self) -> Vec<(u64, B256)> {
        Vec::new()
    }

    fn commits_here(&self) -> bool {
        true
    }

    fn deliver<'a>(&'a mut self, pipeline: &'a mut Pipeline, data: RangeData, _head: u64) -> LocalBoxFuture<'a, Result<RangeOutcome, ListenerError>> {
        Box::pin(async move {
            let (from, to) = (data.from, data.to);
            let outcome = pipeline.process(data).await?;
            self.publish().await?;
            self.status.indexed.store(to, Ordering::Relaxed);
            metrics::gauge!(m::LISTENER_INDEXED_BLOCK).set(to as f64);
            metrics::counter!(m::LISTENER_BLOCKS_PROCESSED_TOTAL).increment(to - from + 1);
            Ok(outcome)
        })
    }

    fn roll_back<'a>(&'a mut self, pipeline: &'a mut Pipeline, reorg: Reorg) -> LocalBoxFuture<'a, Result<(), ListenerError>> {
        Box::pin(async move {
            let ancestor = reorg.ancestor;
            let too_deep = || ListenerError::ReorgTooDeep { window: reorg.window, cursor: reorg.tip.0 };
            let new_cursor = match store::off_thread(&self.store, move |s| s.rollback(ancestor)).await {
                Ok(c) => c,
                Err(StoreError::ReorgTooDeep { .. }) => return Err(too_deep()),
                Err(e) => return Err(e.into()),
            };
            self.status.reorgs.fetch_add(1, Ordering::Relaxed);
            metrics::counter!(m::LISTENER_REORGS_TOTAL).increment(1);
            metrics::gauge!(m::LISTENER_REORG_DEPTH_BLOCKS).set(reorg.depth as f64);
            tracing::warn!(target: "listener", ancestor, depth = reorg.depth, resume_after = ?new_cursor.map(|c| c.block), "reorg: rolled back orphaned blocks");
            pipeline.reset().await?;
            pipeline.notify_rollback(ancestor, reorg.depth);
            // Retractions written by the rollback go out now.
            self.publish().await
        })
    }

    fn idle(&mut self) -> LocalBoxFuture<'_, Result<(), ListenerError>> {
        Box::pin(self.publish())
    }
}
