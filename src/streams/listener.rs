//! The chain listener: backfills history in block ranges, then follows the head.
//!
//! - Ranges adapt: a range the node refuses (too wide, too many results) is split in halves and
//!   the range size shrinks; after a run of successes it grows back.
//! - Near the head (within the reorg window) every header of a range is fetched and the parent
//!   hashes are checked against the remembered chain; a mismatch rolls the store back to the
//!   common ancestor in one atomic step and indexing resumes from there. This holds whatever
//!   `confirmations` says: confirmations only decide what is final, not what is indexed.
//! - Deep in history only the headers of blocks with logs (and the range end) are fetched.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures::StreamExt;
use tracing::Instrument;

use crate::chain::{ChainError, Header, RpcClient};
use crate::domain::{Address, B256};
use crate::metrics as m;
use crate::store::{self, Store, StoreError};
use crate::streams::decode;
use crate::streams::destination::{Destination, Reorg};
use crate::streams::pipeline::{Pipeline, PipelineError, RangeData};

/// Listener settings.
#[derive(Clone, Debug)]
pub struct ListenerSettings {
    /// First block to index.
    pub start_block: u64,
    /// Depth below the head at which blocks count as final.
    pub confirmations: u64,
    /// Blocks below the head that are checked for reorgs and kept reversible.
    pub reorg_window: u64,
    /// Largest `eth_getLogs` range.
    pub max_range: u64,
    /// Pause between polls once caught up.
    pub poll_interval: Duration,
    /// Parallel header requests.
    pub header_concurrency: usize,
    /// Seconds between backfill progress lines.
    pub progress_interval: Duration,
}

/// Listener failures.
#[derive(Debug, thiserror::Error)]
pub enum ListenerError {
    /// Chain access failed.
    #[error(transparent)]
    Chain(#[from] ChainError),
    /// Indexing a range failed.
    #[error(transparent)]
    Pipeline(#[from] PipelineError),
    /// Store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// The bus failed (NATS mode).
    #[error(transparent)]
    Bus(#[from] crate::bus::BusError),
    /// A single block has more logs than the node will return.
    #[error("the node refuses logs of block {0} even alone: {1}")]
    Unsplittable(u64, String),
    /// The chain reorganised deeper than the reorg window.
    #[error("reorg deeper than the window of {window} blocks below block {cursor}")]
    ReorgTooDeep {
        /// Window.
        window: u64,
        /// Cursor at detection.
        cursor: u64,
    },
}

impl ListenerError {
    /// True for errors a restart may cure.
    pub fn is_retryable(&self) -> bool {
        match self {
            ListenerError::Chain(e) => e.is_retryable() || matches!(e, ChainError::Exhausted { .. }),
            ListenerError::Pipeline(e) => e.is_retryable(),
            ListenerError::Store(e) => e.is_retryable(),
            ListenerError::Bus(e) => !matches!(e, crate::bus::BusError::Rejected(_) | crate::bus::BusError::Unencodable { .. }),
            ListenerError::Unsplittable(..) | ListenerError::ReorgTooDeep { .. } => false,
        }
    }
}

/// Indexer position, shared with the HTTP API.
#[derive(Debug, Default)]
pub struct IndexerStatus {
    /// Chain id.
    pub chain_id: AtomicU64,
    /// Head as last seen.
    pub head: AtomicU64,
    /// Last committed block.
    pub indexed: AtomicU64,
    /// Configured confirmations.
    pub confirmations: AtomicU64,
    /// Whether the listener caught up with the head at least once.
    pub caught_up: AtomicBool,
    /// Whether the last RPC round trip succeeded.
    pub rpc_ok: AtomicBool,
    /// Reorgs handled.
    pub reorgs: AtomicU64,
    /// First block to index.
    pub start_block: AtomicU64,
}

impl IndexerStatus {
    /// The highest block considered final: `head - confirmations`.
    pub fn finalized(&self) -> u64 {
        self.head.load(Ordering::Relaxed).saturating_sub(self.confirmations.load(Ordering::Relaxed))
    }
}

/// The listener.
pub struct Listener {
    rpc: RpcClient,
    store: Arc<dyn Store>,
    pipeline: Pipeline,
    settings: ListenerSettings,
    status: Arc<IndexerStatus>,
    range: u64,
    successes: u32,
    stop: Arc<AtomicBool>,
    /// Where ranges go: the pipeline here, or the events stream.
    dest: Box<dyn Destination>,
    /// The pipeline reloads from the store before the next run (set after a failure).
    reset_before_run: bool,
}

impl Listener {
    /// A listener handing ranges to `dest` (with `pipeline`: it commits them, or only tracks
    /// the governor's settings when the events stream takes them).
    pub fn new(
        rpc: RpcClient,
        store: Arc<dyn Store>,
        pipeline: Pipeline,
        settings: ListenerSettings,
        status: Arc<IndexerStatus>,
        stop: Arc<AtomicBool>,
        dest: Box<dyn Destination>,
    ) -> Self {
        status.confirmations.store(settings.confirmations, Ordering::Relaxed);
        status.start_block.store(settings.start_block, Ordering::Relaxed);
        let range = settings.max_range.max(1);
        Listener { rpc, store, pipeline, settings, status, range, successes: 0, stop, dest, reset_before_run: false }
    }

    async fn store_cursor(&self) -> Result<Option<crate::store::Cursor>, ListenerError> {
        Ok(store::off_thread(&self.store, |s| s.cursor()).await?)
    }

    /// The position to continue from: the store's cursor, or in NATS mode what was published.
    async fn position(&self) -> Result<Option<crate::store::Cursor>, ListenerError> {
        let c = self.store_cursor().await?;
        Ok(self.dest.position(c))
    }

    /// After an error: the next run drops in-memory actor state and reloads it from the store.
    pub fn reset_before_next_run(&mut self) {
        self.reset_before_run = true;
    }

    fn addresses(&self) -> Vec<Address> {
        let i = self.pipeline.info();
        let mut a = vec![i.governor, i.token];
        a.extend(i.timelock);
        a.extend(i.benefit_executor);
        a.extend(i.achievement_nft);
        a
    }

    /// Runs until the stop flag is set; returns an error to be handled by the supervisor.
    pub async fn run(&mut self) -> Result<(), ListenerError> {
        if self.reset_before_run {
            self.pipeline.reset().await?;
            self.reset_before_run = false;
        }
        let c = self.store_cursor().await?;
        self.dest.resume(c).await?;
        let topics = decode::topic0s();
        let mut progress = Progress::new(self.settings.progress_interval);
        while !self.stop.load(Ordering::Relaxed) {
            let head = match self.rpc.block_number().await {
                Ok(h) => {
                    self.status.rpc_ok.store(true, Ordering::Relaxed);
                    h
                }
                Err(e) => {
                    self.status.rpc_ok.store(false, Ordering::Relaxed);
                    return Err(e.into());
                }
            };
            self.status.head.store(head, Ordering::Relaxed);
            metrics::gauge!(m::LISTENER_HEAD_BLOCK).set(head as f64);
            let cursor = self.position().await?;
            if self.dest.too_far_ahead(self.store_cursor().await?.map(|c| c.block)) {
                // The indexer is behind: wait for it rather than filling the stream.
                tokio::time::sleep(self.settings.poll_interval.min(Duration::from_millis(200))).await;
                continue;
            }
            let next = cursor.map_or(self.settings.start_block, |c| c.block + 1);
            if let Some(c) = cursor {
                if self.dest.commits_here() {
                    self.status.indexed.store(c.block, Ordering::Relaxed);
                    metrics::gauge!(m::LISTENER_INDEXED_BLOCK).set(c.block as f64);
                }
                // With nothing new to read, the block at the cursor itself may have been replaced.
                if head <= c.block {
                    match self.rpc.header(c.block).await? {
                        Some(h) if h.hash == c.hash => {}
                        _ => {
                            self.handle_reorg(c.block).await?;
                            continue;
                        }
                    }
                }
            }
            if next > head {
                self.dest.idle().await?;
                self.status.caught_up.store(true, Ordering::Relaxed);
                metrics::gauge!(m::LISTENER_BACKFILL_REMAINING_BLOCKS).set(0.0);
                progress.finish(head);
                tokio::time::sleep(self.settings.poll_interval).await;
                continue;
            }
            let to = range_end(next, self.range, head, self.settings.reorg_window);
            let reversible = to + self.settings.reorg_window > head;
            let data = match self.fetch_range(next, to, reversible, &topics, cursor.map(|c| c.hash)).await {
                Ok(d) => d,
                Err(FetchError::Reorg) => {
                    self.handle_reorg(next.saturating_sub(1)).await?;
                    continue;
                }
                Err(FetchError::Other(e)) => return Err(e),
            };
            let logs = data.logs.len();
            let mut data = data;
            data.prune_below = Some(head.saturating_sub(self.settings.reorg_window + 1));
            let span = tracing::info_span!("range", from = next, to = data.to, reversible, logs);
            let outcome = self.dest.deliver(&mut self.pipeline, data, head).instrument(span).await?;
            metrics::counter!(m::LISTENER_LOGS_FETCHED_TOTAL).increment(logs as u64);
            metrics::gauge!(m::LISTENER_BACKFILL_REMAINING_BLOCKS).set(head.saturating_sub(to) as f64);
            if outcome.timelock_changed.is_some() {
                tracing::info!(target: "listener", timelock = ?outcome.timelock_changed, "governor timelock changed; indexing it from the next block");
            }
            progress.tick(next, to, head, self.settings.start_block);
        }
        Ok(())
    }

    async fn fetch_range(&mut self, from: u64, to: u64, reversible: bool, topics: &[B256], parent: Option<B256>) -> Result<RangeData, FetchError> {
        let addresses = self.addresses();
        let logs = self.logs_split(&addresses, topics, from, to).await?;
        // A governor switching timelocks: stop the range at that block, so the next range
        // fetches the new timelock's logs.
        let mut to = to;
        let tl_change = decode::topic("TimelockChange(address,address)");
        let logs = match logs.iter().find(|l| l.topics.first() == Some(&tl_change)).map(|l| l.block_number) {
            Some(b) if b < to => {
                to = b;
                logs.into_iter().filter(|l| l.block_number <= b).collect()
            }
            _ => logs,
        };
        let mut wanted: Vec<u64> = if reversible { (from..=to).collect() } else { logs.iter().map(|l| l.block_number).collect() };
        wanted.push(to);
        wanted.sort_unstable();
        wanted.dedup();
        let rpc = self.rpc.clone();
        let fetched: Vec<Result<Option<Header>, ChainError>> = futures::stream::iter(wanted.iter().copied())
            .map(|n| {
                let rpc = rpc.clone();
                async move { rpc.header(n).await }
            })
            .buffered(self.settings.header_concurrency.max(1))
            .collect()
            .await;
        let mut headers = BTreeMap::new();
        for (n, h) in wanted.iter().zip(fetched) {
            match h.map_err(|e| FetchError::Other(e.into()))? {
                Some(h) => {
                    headers.insert(*n, h);
                }
                // The head moved backwards between calls: a reorg.
                None => return Err(FetchError::Reorg),
            }
        }
        // Logs must belong to the blocks we hold headers for.
        for l in &logs {
            if headers.get(&l.block_number).map(|h| h.hash) != Some(l.block_hash) {
                return Err(FetchError::Reorg);
            }
        }
        if reversible {
            // The range must continue the remembered chain, block by block.
            let mut prev = parent;
            for n in from..=to {
                let h = &headers[&n];
                if let Some(p) = prev {
                    if h.parent_hash != p {
                        return Err(FetchError::Reorg);
                    }
                }
                prev = Some(h.hash);
            }
        }
        Ok(RangeData { from, to, headers, logs, reversible, prune_below: None })
    }

    async fn logs_split(&mut self, addresses: &[Address], topics: &[B256], from: u64, to: u64) -> Result<Vec<crate::streams::decode::RawLog>, FetchError> {
        let mut out = Vec::new();
        let mut stack = vec![(from, to)];
        while let Some((a, b)) = stack.pop() {
            match self.rpc.logs(addresses, topics, a, b).await {
                Ok(mut logs) => {
                    out.append(&mut logs);
                    self.successes += 1;
                    if self.successes >= 8 && self.range < self.settings.max_range {
                        self.range = (self.range * 2).min(self.settings.max_range);
                        self.successes = 0;
                        metrics::gauge!(m::LISTENER_LOG_RANGE_BLOCKS).set(self.range as f64);
                    }
                }
                Err(ChainError::RangeTooLarge(msg)) => {
                    if a == b {
                        return Err(FetchError::Other(ListenerError::Unsplittable(a, msg)));
                    }
                    let mid = a + (b - a) / 2;
                    self.range = (b - a + 1).div_ceil(2).max(1);
                    self.successes = 0;
                    metrics::counter!(m::LISTENER_RANGE_SPLITS_TOTAL).increment(1);
                    metrics::gauge!(m::LISTENER_LOG_RANGE_BLOCKS).set(self.range as f64);
                    tracing::debug!(target: "listener", from = a, to = b, range = self.range, reason = %msg, "log range refused, splitting");
                    // Pop order: first half first.
                    stack.push((mid + 1, b));
                    stack.push((a, mid));
                }
                Err(e) => return Err(FetchError::Other(e.into())),
            }
        }
        out.sort_by_key(|l| (l.block_number, l.log_index));
        Ok(out)
    }

    /// Finds the common ancestor below `from_block` among the blocks the store remembers and
    /// those handed over since, and rolls back to it (the store here, or a rollback published
    /// on the events stream).
    async fn handle_reorg(&mut self, from_block: u64) -> Result<(), ListenerError> {
        let mut remembered: BTreeMap<u64, B256> =
            store::off_thread(&self.store, |s| s.recent_blocks()).await?.into_iter().map(|b| (b.number, b.hash)).collect();
        remembered.extend(self.dest.recent());
        let tip = self.position().await?.map_or((0, B256::default()), |c| (c.block, c.hash));
        let mut ancestor = None;
        for (n, hash) in remembered.iter().rev().filter(|(n, _)| **n <= from_block) {
            if let Some(h) = self.rpc.header(*n).await? {
                if h.hash == *hash {
                    ancestor = Some((*n, *hash));
                    break;
                }
            }
        }
        let window = self.settings.reorg_window;
        let Some((ancestor, ancestor_hash)) = ancestor else {
            return Err(ListenerError::ReorgTooDeep { window, cursor: tip.0 });
        };
        let reorg = Reorg { ancestor, ancestor_hash, depth: tip.0.saturating_sub(ancestor), tip, window };
        self.dest.roll_back(&mut self.pipeline, reorg).await
    }
}

/// The last block of the next range starting at `next`: at most `range` blocks and never past
/// `head`, and a range never straddles the start of the reorg window. Reversible ranges fetch
/// every header, so a range reaching into the window from deep history would otherwise fetch
/// the headers of all its blocks (2,000 of them at the default `max_log_range`) instead of
/// those of the blocks with logs; cut at the window, the deep part stays cheap and the
/// following range covers the window alone.
fn range_end(next: u64, range: u64, head: u64, reorg_window: u64) -> u64 {
    let to = head.min(next.saturating_add(range.max(1) - 1));
    // First block whose range is reversible: `to + reorg_window > head`.
    let window_start = (head + 1).saturating_sub(reorg_window);
    if next < window_start && to >= window_start {
        window_start - 1
    } else {
        to
    }
}

enum FetchError {
    Reorg,
    Other(ListenerError),
}

impl From<ChainError> for FetchError {
    fn from(e: ChainError) -> Self {
        FetchError::Other(e.into())
    }
}

/// Backfill progress on the terminal: blocks done, rate, time left.
struct Progress {
    every: Duration,
    last: Instant,
    last_block: Option<u64>,
    started: Instant,
    reported_done: bool,
}

impl Progress {
    fn new(every: Duration) -> Self {
        Progress { every, last: Instant::now(), last_block: None, started: Instant::now(), reported_done: false }
    }

    fn tick(&mut self, from: u64, to: u64, head: u64, start: u64) {
        let since = *self.last_block.get_or_insert(from.saturating_sub(1));
        if self.last.elapsed() < self.every {
            return;
        }
        let secs = self.last.elapsed().as_secs_f64();
        let rate = (to.saturating_sub(since)) as f64 / secs.max(1e-9);
        let total = head.saturating_sub(start) + 1;
        let done = to.saturating_sub(start) + 1;
        let left = head.saturating_sub(to);
        let eta = if rate > 0.0 { left as f64 / rate } else { f64::INFINITY };
        metrics::gauge!(m::LISTENER_BACKFILL_RATE_BLOCKS_PER_SECOND).set(rate);
        tracing::info!(
            target: "listener",
            blocks_done = done,
            blocks_total = total,
            percent = format!("{:.1}", done as f64 * 100.0 / total as f64),
            rate_blocks_per_s = format!("{rate:.0}"),
            eta_s = format!("{eta:.0}"),
            "backfill"
        );
        self.last = Instant::now();
        self.last_block = Some(to);
        self.reported_done = false;
    }

    fn finish(&mut self, head: u64) {
        if !self.reported_done {
            tracing::info!(target: "listener", head, elapsed_s = format!("{:.1}", self.started.elapsed().as_secs_f64()), "caught up with the head; following");
            self.reported_done = true;
        }
    }
}

/// The listener actor supervises this loop.
impl crate::actors::listener::Follow for Listener {
    type Error = ListenerError;

    fn run(&mut self) -> impl std::future::Future<Output = Result<(), ListenerError>> + '_ {
        Listener::run(self)
    }

    fn is_retryable(e: &ListenerError) -> bool {
        e.is_retryable()
    }

    fn reason(e: &ListenerError) -> &'static str {
        match e {
            ListenerError::Chain(_) => "chain",
            ListenerError::Pipeline(_) => "pipeline",
            ListenerError::Store(_) => "store",
            ListenerError::Bus(_) => "bus",
            ListenerError::Unsplittable(..) => "unsplittable",
            ListenerError::ReorgTooDeep { .. } => "reorg_too_deep",
        }
    }

    fn reset_before_next_run(&mut self) {
        Listener::reset_before_next_run(self)
    }
}

#[cfg(test)]
mod tests {
    use super::range_end;

    #[test]
    fn a_deep_range_stops_before_the_reorg_window() {
        // head 5253, window 64: blocks 5190..=5253 are reversible.
        assert_eq!(range_end(3254, 2000, 5253, 64), 5189);
        // The next range is the window alone.
        assert_eq!(range_end(5190, 2000, 5253, 64), 5253);
        // Entirely deep: unchanged.
        assert_eq!(range_end(1, 2000, 5253, 64), 2000);
        // Entirely inside the window: unchanged, capped at the head.
        assert_eq!(range_end(5200, 10, 5253, 64), 5209);
        assert_eq!(range_end(5250, 10, 5253, 64), 5253);
        // Ending exactly at the last deep block: unchanged.
        assert_eq!(range_end(5180, 10, 5253, 64), 5189);
    }

    #[test]
    fn short_chains_and_edge_windows() {
        // The whole chain is inside the window.
        assert_eq!(range_end(0, 2000, 30, 64), 30);
        // No reorg window: nothing is reversible, nothing is cut.
        assert_eq!(range_end(0, 2000, 5253, 0), 1999);
        assert_eq!(range_end(5000, 2000, 5253, 0), 5253);
        // A window of one block: only the head is reversible.
        assert_eq!(range_end(5000, 2000, 5253, 1), 5252);
        assert_eq!(range_end(5253, 2000, 5253, 1), 5253);
        // A range of one block, and a zero range treated as one.
        assert_eq!(range_end(7, 1, 5253, 64), 7);
        assert_eq!(range_end(7, 0, 5253, 64), 7);
        // Every cut range is followed by a reversible one and the two join without a gap.
        for (next, range, head, window) in [(0u64, 2000u64, 100u64, 64u64), (10, 500, 3000, 64), (2990, 500, 3000, 64), (0, 3, 5, 2)] {
            let mut b = next;
            while b <= head {
                let to = range_end(b, range, head, window);
                assert!(to >= b && to <= head);
                let window_start = (head + 1).saturating_sub(window);
                assert!(!(b < window_start && to >= window_start), "range {b}..={to} straddles the window at {window_start}");
                if to + window <= head {
                    assert!(b + range - 1 == to || to + 1 == window_start, "deep ranges are cut only at the window");
                }
                b = to + 1;
            }
        }
    }
}
