//! The read cache: an in-process level (moka) in front of an optional shared level (Redis) in
//! front of the store, for the reads that dominate the traffic: the proposal list, proposal
//! details, voting power and the vote statistics.
//!
//! # What is cached
//! Whole `200` responses of four routes (`GET /v1/proposals`, `/v1/proposals/stats`,
//! `/v1/proposals/{proposalId}`, `/v1/users/{address}/voting-power`), exactly as the handlers
//! produced them, keyed by the canonical path (decimal proposal id, lower-case address) and the
//! query with its parameters in name order. Each entry keeps its strong ETag and, once asked
//! for, its gzip and brotli encodings, so a hit costs neither hashing nor compression.
//!
//! # Invalidation
//! An entry depends on tags: `*` (everything), `proposals` (every list), `stats`, `p:<id>`,
//! `a:<address>`. A tag hashes (FNV-1a, the same in every instance) to one of [`SLOTS`] slots,
//! each with a version; an entry records the versions of its slots when its computation starts
//! and is served only while they are unchanged, so an invalidation that lands while a response
//! is being computed makes that response stale at once (no race). Collisions only invalidate
//! more than needed.
//!
//! - Each commit ([`Update::Committed`] from the [`ChangeHub`]) bumps `p:<id>` + `proposals` for
//!   every proposal or vote it wrote, `a:<address>` for every account, and `stats` always (the
//!   statistics count every event). A rollback or a subscriber that lagged bumps `*`.
//! - Responses that name the indexed block (voting power "now") are valid only at the block
//!   they were computed at; responses with `"provisional":true` only while the finalized block
//!   is the same (otherwise they would keep a flag the handlers would no longer set).
//! - Until the cache has applied the changes of every block the API reports as indexed, reads
//!   bypass it (the hub is asynchronous: a read right after a commit never sees older data).
//! - Entries expire after `cache.ttl_ms` (the timed refresh); the hot proposals are recomputed
//!   every half TTL so they never expire while hot.
//! - `POST /v1/admin/cache/invalidate` (bearer `http.admin_token`) bumps chosen tags or `*`.
//!
//! # Redis (optional)
//! With `cache.redis_url`, an L1 miss asks Redis before the store: one round trip reads the entry
//! and the *global* versions of its slots (Redis keys incremented by every invalidation, in
//! every instance), and the entry is served only when the versions it was stored with are
//! still current, it was computed at or after the last block this instance saw change one of its
//! tags (instances index independently: one that is behind must not feed older data to one that
//! is ahead), and the block checks above pass. Invalidations are also published on a channel;
//! other instances bump their in-process versions when they receive them. An invalidation that
//! cannot reach Redis marks the shared level dirty: it is not used again until `*` has been
//! bumped there. Redis being unreachable never fails a request: the request falls back to the
//! store, the error is counted (`govflow_cache_redis_errors_total`) and logged once, and the
//! connection is retried in the background.

use std::future::Future;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use bytes::Bytes;
use serde::{Deserialize, Serialize};
use tokio::sync::broadcast::error::RecvError;
use warp::http::{HeaderName, HeaderValue, StatusCode};

use super::problem::Problem;
use super::{ApiState, Req};
use crate::config::CacheConfig;
use crate::domain::{parse_u256, Address};
use crate::metrics as m;
use crate::store::{ProposalQuery, ProposalSort};
use crate::streams::changes::{Change, Update};
use crate::streams::listener::IndexerStatus;

/// Number of version slots tags hash to.
pub const SLOTS: usize = 4096;
/// Longest wait for one Redis round trip before falling back to the store.
const REDIS_TIMEOUT: Duration = Duration::from_millis(250);
/// Redis is not tried again for this long after a failure.
const REDIS_BACKOFF: Duration = Duration::from_secs(1);
/// The tag every entry depends on.
const ALL: &str = "*";
/// Response header telling where an answer came from: `l1-hit`, `l2-hit`, `miss`, `bypass`.
pub const X_CACHE: &str = "x-cache";

fn fnv1a(s: &str) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in s.as_bytes() {
        h ^= u64::from(*b);
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    h
}

/// The slot of a tag.
pub fn slot(tag: &str) -> u16 {
    (fnv1a(tag) % SLOTS as u64) as u16
}

/// The tag of a proposal.
pub fn proposal_tag(id: &crate::domain::U256) -> String {
    format!("p:{id}")
}

/// The tag of an account.
pub fn account_tag(a: &Address) -> String {
    format!("a:{a}")
}

/// How one request may use the cache: its canonical key and what it depends on.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Plan {
    /// Route template.
    pub template: &'static str,
    /// Canonical path and query.
    pub key: String,
    /// Slots of its tags (`*` first), without duplicates.
    pub slots: Vec<u16>,
    /// The response names the indexed block (valid at that block only).
    pub per_block: bool,
}

/// Where an answer came from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Source {
    /// In-process level.
    L1,
    /// Redis.
    L2,
    /// Computed by the handler.
    Miss,
    /// Computed by the handler, the cache being behind the store or not started.
    Bypass,
}

impl Source {
    fn header(self) -> &'static str {
        match self {
            Source::L1 => "l1-hit",
            Source::L2 => "l2-hit",
            Source::Miss => "miss",
            Source::Bypass => "bypass",
        }
    }
}

/// One cached response.
#[derive(Debug)]
pub struct Entry {
    body: Bytes,
    etag: HeaderValue,
    headers: Vec<(HeaderName, HeaderValue)>,
    deps: Vec<(u16, u64)>,
    indexed: u64,
    per_block: bool,
    finalized: Option<u64>,
    encoded: [OnceLock<Bytes>; 2],
}

impl Entry {
    /// The uncompressed body.
    pub fn body(&self) -> &Bytes {
        &self.body
    }

    /// The body in encoding `slot` (0 = br, 1 = gzip), computed once by `encode`.
    pub fn encoded(&self, slot: usize, encode: impl FnOnce(&[u8]) -> Bytes) -> Bytes {
        self.encoded[slot % 2].get_or_init(|| encode(&self.body)).clone()
    }

    fn response(self: &Arc<Self>, source: Source) -> warp::reply::Response {
        let mut r = warp::reply::Response::new(self.body.clone().into());
        let h = r.headers_mut();
        for (k, v) in &self.headers {
            h.insert(k.clone(), v.clone());
        }
        h.insert(warp::http::header::ETAG, self.etag.clone());
        h.insert(X_CACHE, HeaderValue::from_static(source.header()));
        r.extensions_mut().insert(self.clone());
        r
    }
}

/// An entry as stored in Redis.
#[derive(Serialize, Deserialize)]
struct Shared {
    versions: Vec<u64>,
    indexed: u64,
    per_block: bool,
    finalized: Option<u64>,
    etag: String,
    headers: Vec<(String, Vec<u8>)>,
    body: Vec<u8>,
}

/// A strong ETag over a body: the first 128 bits of its keccak-256, quoted.
pub fn etag_of(body: &[u8]) -> HeaderValue {
    let h = crate::domain::keccak256(body);
    HeaderValue::from_str(&format!("\"{}\"", hex::encode(&h[..16]))).unwrap_or_else(|_| HeaderValue::from_static("\"0\""))
}

fn provisional(body: &[u8]) -> bool {
    const NEEDLE: &[u8] = b"\"provisional\":true";
    body.windows(NEEDLE.len()).any(|w| w == NEEDLE)
}

#[derive(Default)]
struct Counters {
    l1_hits: AtomicU64,
    l2_hits: AtomicU64,
    misses: AtomicU64,
    bypasses: AtomicU64,
}

/// The read cache.
pub struct Cache {
    enabled: bool,
    ttl: Duration,
    warm_proposals: usize,
    warm_accounts: usize,
    l1: moka::sync::Cache<String, Arc<Entry>>,
    versions: Box<[AtomicU64]>,
    last_changed: Box<[AtomicU64]>,
    applied: AtomicU64,
    ready: AtomicBool,
    redis: Option<Arc<Redis>>,
    instance: String,
    counters: Counters,
}

impl std::fmt::Debug for Cache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Cache")
            .field("enabled", &self.enabled)
            .field("ttl", &self.ttl)
            .field("entries", &self.l1.entry_count())
            .field("redis", &self.redis.is_some())
            .finish_non_exhaustive()
    }
}

impl Default for Cache {
    fn default() -> Self {
        Cache::disabled()
    }
}

fn atomics(n: usize) -> Box<[AtomicU64]> {
    (0..n).map(|_| AtomicU64::new(0)).collect()
}

impl Cache {
    /// A disabled cache: every read goes to the store.
    pub fn disabled() -> Self {
        Cache::new(&CacheConfig { enabled: false, capacity: 0, redis_url: None, ..CacheConfig::default() })
    }

    /// A cache as configured; it serves once [`start`] has subscribed it to the changes.
    pub fn new(cfg: &CacheConfig) -> Self {
        let ttl = Duration::from_millis(cfg.ttl_ms.max(1));
        let redis = cfg.redis_url.as_deref().filter(|_| cfg.enabled).and_then(|url| match redis::Client::open(url) {
            Ok(client) => Some(Arc::new(Redis::new(client, url, ttl))),
            Err(e) => {
                tracing::warn!(target: "cache", url = %crate::config::redact_url(url), error = %e, "cache.redis_url is unusable; the in-process cache serves alone");
                None
            }
        });
        Cache {
            enabled: cfg.enabled,
            ttl,
            warm_proposals: cfg.warm_proposals,
            warm_accounts: cfg.warm_accounts,
            l1: moka::sync::Cache::builder().max_capacity(cfg.capacity).time_to_live(ttl).build(),
            versions: atomics(SLOTS),
            last_changed: atomics(SLOTS),
            applied: AtomicU64::new(0),
            ready: AtomicBool::new(false),
            redis,
            instance: uuid::Uuid::new_v4().to_string(),
            counters: Counters::default(),
        }
    }

    /// Whether the cache serves at all.
    pub fn enabled(&self) -> bool {
        self.enabled
    }

    /// Entries held in process.
    pub fn entries(&self) -> u64 {
        self.l1.entry_count()
    }

    /// How a request may use the cache; `None` when it is not cacheable.
    pub fn plan(&self, path: &str, raw_query: &str) -> Option<Plan> {
        if !self.enabled {
            return None;
        }
        plan(path, raw_query)
    }

    /// Answers a cacheable request: from the in-process level, from Redis, or by running
    /// `compute` (the handler) and keeping its answer when it is a `200`. With `refresh`, the
    /// levels are not read (the hot set's timed refresh).
    pub async fn serve(
        &self,
        status: &IndexerStatus,
        plan: Plan,
        refresh: bool,
        compute: impl Future<Output = warp::reply::Response>,
    ) -> warp::reply::Response {
        let indexed = status.indexed.load(Ordering::Acquire);
        if !self.ready.load(Ordering::Acquire) || self.applied.load(Ordering::Acquire) < indexed {
            self.count(Source::Bypass);
            let mut r = compute.await;
            r.headers_mut().insert(X_CACHE, HeaderValue::from_static(Source::Bypass.header()));
            return r;
        }
        let finalized = status.finalized();
        let local: Vec<(u16, u64)> = plan.slots.iter().map(|s| (*s, self.versions[*s as usize].load(Ordering::Acquire))).collect();
        let fresh = |per_block: bool, at: u64, fin: Option<u64>| (!per_block || at == indexed) && fin.is_none_or(|f| f == finalized);
        if !refresh {
            if let Some(e) = self.l1.get(&plan.key) {
                if e.deps == local && fresh(e.per_block, e.indexed, e.finalized) {
                    self.count(Source::L1);
                    return e.response(Source::L1);
                }
            }
        }
        // The shared level: entry and current global versions in one round trip.
        let mut global = None;
        if let Some(redis) = self.redis.as_ref().filter(|r| r.usable()) {
            if let Some((raw, versions)) = redis.lookup(&plan).await {
                if !refresh {
                    if let Some(s) = raw.and_then(|raw| bincode::deserialize::<Shared>(&raw).ok()) {
                        let floor = plan.slots.iter().map(|s| self.last_changed[*s as usize].load(Ordering::Acquire)).max().unwrap_or(0);
                        if s.versions == versions && s.indexed >= floor && fresh(s.per_block, s.indexed, s.finalized) {
                            let e = Arc::new(Entry {
                                etag: HeaderValue::from_str(&s.etag).unwrap_or_else(|_| etag_of(&s.body)),
                                headers: s
                                    .headers
                                    .into_iter()
                                    .filter_map(|(k, v)| Some((HeaderName::from_bytes(k.as_bytes()).ok()?, HeaderValue::from_bytes(&v).ok()?)))
                                    .collect(),
                                body: Bytes::from(s.body),
                                deps: local,
                                indexed: s.indexed,
                                per_block: s.per_block,
                                finalized: s.finalized,
                                encoded: Default::default(),
                            });
                            self.l1.insert(plan.key, e.clone());
                            self.count(Source::L2);
                            return e.response(Source::L2);
                        }
                    }
                }
                global = Some(versions);
            }
        }
        let resp = compute.await;
        // A refresh is not a read: it is not counted.
        let counted = if refresh { None } else { Some(Source::Miss) };
        if resp.status() != StatusCode::OK {
            if let Some(s) = counted {
                self.count(s);
            }
            return resp;
        }
        let (parts, body) = resp.into_parts();
        let body = match warp::hyper::body::to_bytes(body).await {
            Ok(b) => b,
            Err(e) => return Problem::internal(&e).response(),
        };
        let e = Arc::new(Entry {
            etag: etag_of(&body),
            headers: parts
                .headers
                .iter()
                .filter(|(k, _)| *k != warp::http::header::CONTENT_LENGTH && k.as_str() != X_CACHE)
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect(),
            finalized: provisional(&body).then_some(finalized),
            body,
            deps: local,
            indexed,
            per_block: plan.per_block,
            encoded: Default::default(),
        });
        self.l1.insert(plan.key.clone(), e.clone());
        if let (Some(redis), Some(versions)) = (self.redis.clone(), global) {
            let shared = Shared {
                versions,
                indexed,
                per_block: e.per_block,
                finalized: e.finalized,
                etag: e.etag.to_str().unwrap_or_default().to_string(),
                headers: e.headers.iter().map(|(k, v)| (k.as_str().to_string(), v.as_bytes().to_vec())).collect(),
                body: e.body.to_vec(),
            };
            if let Ok(raw) = bincode::serialize(&shared) {
                let key = plan.key;
                tokio::spawn(async move { redis.store(&key, raw).await });
            }
        }
        if let Some(s) = counted {
            self.count(s);
        }
        e.response(Source::Miss)
    }

    fn count(&self, s: Source) {
        let c = &self.counters;
        match s {
            Source::L1 => {
                c.l1_hits.fetch_add(1, Ordering::Relaxed);
                metrics::counter!(m::CACHE_LOOKUPS_TOTAL, "level" => "l1", "result" => "hit").increment(1);
            }
            Source::L2 => {
                c.l2_hits.fetch_add(1, Ordering::Relaxed);
                metrics::counter!(m::CACHE_LOOKUPS_TOTAL, "level" => "l1", "result" => "miss").increment(1);
                metrics::counter!(m::CACHE_LOOKUPS_TOTAL, "level" => "l2", "result" => "hit").increment(1);
            }
            Source::Miss => {
                c.misses.fetch_add(1, Ordering::Relaxed);
                metrics::counter!(m::CACHE_LOOKUPS_TOTAL, "level" => "l1", "result" => "miss").increment(1);
                if self.redis.is_some() {
                    metrics::counter!(m::CACHE_LOOKUPS_TOTAL, "level" => "l2", "result" => "miss").increment(1);
                }
            }
            Source::Bypass => {
                c.bypasses.fetch_add(1, Ordering::Relaxed);
                metrics::counter!(m::CACHE_LOOKUPS_TOTAL, "level" => "l1", "result" => "bypass").increment(1);
            }
        }
    }

    /// Share of cacheable reads answered from a cache level since start.
    pub fn hit_ratio(&self) -> f64 {
        let c = &self.counters;
        let hits = c.l1_hits.load(Ordering::Relaxed) + c.l2_hits.load(Ordering::Relaxed);
        let all = hits + c.misses.load(Ordering::Relaxed) + c.bypasses.load(Ordering::Relaxed);
        if all == 0 {
            0.0
        } else {
            hits as f64 / all as f64
        }
    }

    /// Bumps the in-process versions of `slots`; `changed_at` is the block that changed them
    /// (this instance's own indexing).
    fn bump_local(&self, slots: &[u16], changed_at: Option<u64>) {
        for s in slots {
            self.versions[*s as usize].fetch_add(1, Ordering::AcqRel);
            if let Some(b) = changed_at {
                self.last_changed[*s as usize].fetch_max(b, Ordering::AcqRel);
            }
        }
    }

    /// Invalidates `tags` here and, through Redis, in every instance. Returns whether the
    /// other instances were told.
    pub async fn invalidate(&self, tags: &[String], source: &'static str, changed_at: Option<u64>) -> bool {
        let mut slots: Vec<u16> = tags.iter().map(|t| slot(t)).collect();
        slots.sort_unstable();
        slots.dedup();
        let all = tags.iter().any(|t| t == ALL);
        self.bump_local(&slots, changed_at);
        if all {
            self.l1.invalidate_all();
        }
        metrics::counter!(m::CACHE_INVALIDATIONS_TOTAL, "source" => source).increment(1);
        match &self.redis {
            Some(r) => r.invalidate(&slots, all, &self.instance).await,
            None => false,
        }
    }

    /// Applies an invalidation published by another instance.
    fn apply_remote(&self, msg: &Message) {
        if msg.from == self.instance {
            return;
        }
        let slots: Vec<u16> = msg.slots.iter().copied().filter(|s| (*s as usize) < SLOTS).collect();
        self.bump_local(&slots, None);
        if msg.all {
            self.l1.invalidate_all();
        }
        metrics::counter!(m::CACHE_INVALIDATIONS_TOTAL, "source" => "remote").increment(1);
    }
}

/// The canonical form of a query: pairs stably sorted by name (repeated names keep their order,
/// the handlers read the first), re-encoded.
fn canonical_query(raw: &str) -> Option<String> {
    let mut q: Vec<(String, String)> = serde_urlencoded::from_str(raw).ok()?;
    q.sort_by(|a, b| a.0.cmp(&b.0));
    serde_urlencoded::to_string(&q).ok()
}

fn plan(path: &str, raw_query: &str) -> Option<Plan> {
    let segments: Vec<&str> = path.split('/').filter(|s| !s.is_empty()).collect();
    let route = super::find(&segments).filter(|r| r.cached)?;
    let template = route.path;
    let query = canonical_query(raw_query)?;
    let mut tags = vec![ALL.to_string()];
    let mut per_block = false;
    let path = match template {
        "/v1/proposals" => {
            tags.push("proposals".into());
            "/v1/proposals".to_string()
        }
        "/v1/proposals/stats" => {
            tags.push("stats".into());
            "/v1/proposals/stats".to_string()
        }
        "/v1/proposals/{proposalId}" => {
            let id = parse_u256(segments[2]).ok()?;
            tags.push(proposal_tag(&id));
            format!("/v1/proposals/{id}")
        }
        "/v1/users/{address}/voting-power" => {
            let a = Address::parse(segments[2]).ok()?;
            tags.push(account_tag(&a));
            let pairs: Vec<(String, String)> = serde_urlencoded::from_str(raw_query).ok()?;
            let first = |n: &str| pairs.iter().find(|(k, _)| k == n).map(|(_, v)| v.as_str());
            match (first("block"), first("proposalId")) {
                (None, None) => per_block = true,
                (_, Some(pid)) => tags.push(proposal_tag(&parse_u256(pid).ok()?)),
                _ => {}
            }
            format!("/v1/users/{a}/voting-power")
        }
        _ => return None,
    };
    let mut slots: Vec<u16> = Vec::with_capacity(tags.len());
    for t in &tags {
        let s = slot(t);
        if !slots.contains(&s) {
            slots.push(s);
        }
    }
    let key = if query.is_empty() { path } else { format!("{path}?{query}") };
    Some(Plan { template, key, slots, per_block })
}

/// What a committed batch invalidates.
pub fn tags_of(changes: &[Change]) -> Vec<String> {
    let mut tags = vec!["stats".to_string()];
    let mut lists = false;
    for c in changes {
        match c {
            Change::Proposal(p) => {
                tags.push(proposal_tag(&p.proposal_id));
                lists = true;
            }
            Change::Vote(v) => {
                tags.push(proposal_tag(&v.proposal_id));
                lists = true;
            }
            Change::Power { account, .. } => tags.push(account_tag(account)),
        }
    }
    if lists {
        tags.push("proposals".into());
    }
    tags.sort();
    tags.dedup();
    tags
}

/// An invalidation published on the Redis channel.
#[derive(Serialize, Deserialize, Debug)]
struct Message {
    from: String,
    slots: Vec<u16>,
    all: bool,
}

/// The shared level.
struct Redis {
    client: redis::Client,
    url: String,
    ttl: Duration,
    conn: Mutex<Option<redis::aio::ConnectionManager>>,
    prefix: OnceLock<String>,
    down_until: Mutex<Option<Instant>>,
    down_logged: AtomicBool,
    dirty: AtomicBool,
}

impl Redis {
    fn new(client: redis::Client, url: &str, ttl: Duration) -> Self {
        Redis {
            client,
            url: crate::config::redact_url(url),
            ttl,
            conn: Mutex::new(None),
            prefix: OnceLock::new(),
            down_until: Mutex::new(None),
            down_logged: AtomicBool::new(false),
            dirty: AtomicBool::new(false),
        }
    }

    fn prefix(&self) -> &str {
        self.prefix.get().map_or("govflow:", |s| s.as_str())
    }

    fn entry_key(&self, key: &str) -> String {
        format!("{}e:{key}", self.prefix())
    }

    fn version_key(&self, slot: u16) -> String {
        format!("{}v:{slot}", self.prefix())
    }

    fn channel(&self) -> String {
        format!("{}invalidate", self.prefix())
    }

    /// Connected, past any backoff, and holding no invalidation it could not deliver.
    fn usable(&self) -> bool {
        !self.dirty.load(Ordering::Acquire) && self.connection().is_some()
    }

    fn connection(&self) -> Option<redis::aio::ConnectionManager> {
        self.prefix.get()?;
        if let Some(until) = *self.down_until.lock().unwrap_or_else(|e| e.into_inner()) {
            if Instant::now() < until {
                return None;
            }
        }
        self.conn.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }

    fn failed(&self, op: &'static str, error: &dyn std::fmt::Display) {
        metrics::counter!(m::CACHE_REDIS_ERRORS_TOTAL, "op" => op).increment(1);
        *self.down_until.lock().unwrap_or_else(|e| e.into_inner()) = Some(Instant::now() + REDIS_BACKOFF);
        if !self.down_logged.swap(true, Ordering::AcqRel) {
            tracing::warn!(target: "cache", url = %self.url, op, error = %error, "redis unreachable: serving from the in-process cache and the store until it is back");
        }
    }

    fn succeeded(&self) {
        if self.down_logged.swap(false, Ordering::AcqRel) {
            tracing::info!(target: "cache", url = %self.url, "redis reachable again");
        }
    }

    async fn run<T: redis::FromRedisValue>(&self, op: &'static str, p: &redis::Pipeline) -> Option<T> {
        let mut conn = self.connection()?;
        match tokio::time::timeout(REDIS_TIMEOUT, p.query_async::<T>(&mut conn)).await {
            Ok(Ok(v)) => {
                self.succeeded();
                Some(v)
            }
            Ok(Err(e)) => {
                self.failed(op, &e);
                None
            }
            Err(_) => {
                self.failed(op, &"timed out");
                None
            }
        }
    }

    /// The stored entry and the current global versions of the plan's slots.
    async fn lookup(&self, plan: &Plan) -> Option<(Option<Vec<u8>>, Vec<u64>)> {
        let keys: Vec<String> = plan.slots.iter().map(|s| self.version_key(*s)).collect();
        let mut p = redis::pipe();
        p.cmd("GET").arg(self.entry_key(&plan.key)).cmd("MGET").arg(&keys);
        let (raw, versions): (Option<Vec<u8>>, Vec<Option<u64>>) = self.run("lookup", &p).await?;
        Some((raw, versions.into_iter().map(|v| v.unwrap_or(0)).collect()))
    }

    async fn store(&self, key: &str, raw: Vec<u8>) {
        let mut p = redis::pipe();
        p.cmd("SET").arg(self.entry_key(key)).arg(raw).arg("PX").arg(self.ttl.as_millis() as u64).ignore();
        let _: Option<()> = self.run("store", &p).await;
    }

    /// Bumps the global versions and tells the other instances. On failure the shared level is
    /// dirty until `*` is bumped there.
    async fn invalidate(&self, slots: &[u16], all: bool, instance: &str) -> bool {
        if self.prefix.get().is_none() {
            return false;
        }
        // A string, integers and a boolean: writing them cannot fail.
        let msg =
            serde_json::to_string(&Message { from: instance.to_string(), slots: slots.to_vec(), all }).expect("an invalidation message is always written");
        let mut p = redis::pipe();
        for s in slots {
            p.cmd("INCR").arg(self.version_key(*s)).ignore();
        }
        p.cmd("PUBLISH").arg(self.channel()).arg(msg).ignore();
        let ok = self.run::<()>("invalidate", &p).await.is_some();
        if !ok {
            self.dirty.store(true, Ordering::Release);
        }
        ok
    }

    /// Keeps a connection, and cleans the shared level after undelivered invalidations.
    async fn maintain(self: Arc<Self>) {
        let mut logged = false;
        loop {
            let connected = self.conn.lock().unwrap_or_else(|e| e.into_inner()).is_some();
            if !connected {
                let cfg = redis::aio::ConnectionManagerConfig::new()
                    .set_connection_timeout(Some(REDIS_TIMEOUT))
                    .set_response_timeout(Some(REDIS_TIMEOUT))
                    .set_number_of_retries(1)
                    .set_max_delay(REDIS_BACKOFF);
                match tokio::time::timeout(REDIS_TIMEOUT * 4, redis::aio::ConnectionManager::new_with_config(self.client.clone(), cfg)).await {
                    Ok(Ok(c)) => {
                        *self.conn.lock().unwrap_or_else(|e| e.into_inner()) = Some(c);
                        tracing::info!(target: "cache", url = %self.url, "redis connected: shared cache level and cross-instance invalidation on");
                        logged = false;
                    }
                    Ok(Err(e)) if !logged => {
                        metrics::counter!(m::CACHE_REDIS_ERRORS_TOTAL, "op" => "connect").increment(1);
                        tracing::warn!(target: "cache", url = %self.url, error = %e, "redis unreachable: the in-process cache serves alone until it is");
                        logged = true;
                    }
                    Err(_) if !logged => {
                        metrics::counter!(m::CACHE_REDIS_ERRORS_TOTAL, "op" => "connect").increment(1);
                        tracing::warn!(target: "cache", url = %self.url, "redis connection timed out: the in-process cache serves alone until it answers");
                        logged = true;
                    }
                    _ => {}
                }
            }
            if self.dirty.load(Ordering::Acquire) {
                let mut p = redis::pipe();
                p.cmd("INCR").arg(self.version_key(slot(ALL))).ignore();
                if self.run::<()>("clean", &p).await.is_some() {
                    self.dirty.store(false, Ordering::Release);
                    tracing::info!(target: "cache", "shared cache level invalidated after undelivered invalidations; in use again");
                }
            }
            tokio::time::sleep(REDIS_BACKOFF).await;
        }
    }

    /// Receives the other instances' invalidations. Messages may have been missed while not
    /// subscribed, so every (re)subscription invalidates the in-process level.
    async fn subscribe(self: Arc<Self>, cache: Arc<Cache>) {
        loop {
            let pubsub = match tokio::time::timeout(REDIS_TIMEOUT * 4, self.client.get_async_pubsub()).await {
                Ok(Ok(p)) => Some(p),
                _ => None,
            };
            if let Some(mut pubsub) = pubsub {
                if pubsub.subscribe(self.channel()).await.is_ok() {
                    cache.bump_local(&[slot(ALL)], None);
                    cache.l1.invalidate_all();
                    tracing::debug!(target: "cache", "subscribed to cache invalidations");
                    let mut stream = pubsub.into_on_message();
                    while let Some(msg) = futures::StreamExt::next(&mut stream).await {
                        if let Ok(m) = serde_json::from_slice::<Message>(msg.get_payload_bytes()) {
                            cache.apply_remote(&m);
                        }
                    }
                    // The connection ended: whatever follows may have been missed.
                    cache.bump_local(&[slot(ALL)], None);
                    cache.l1.invalidate_all();
                }
            }
            tokio::time::sleep(REDIS_BACKOFF).await;
        }
    }
}

/// Starts the cache's tasks: following the changes of every commit (subscribed before this
/// returns, so no commit is missed), Redis (connection, invalidations from other instances), the
/// warm-up once the indexer has caught up and the timed refresh of the hot set.
pub fn start(state: ApiState) {
    let cache = state.cache.clone();
    if !cache.enabled {
        return;
    }
    let rx = state.changes.subscribe();
    if let Some(redis) = &cache.redis {
        let governor = state.store.info().ok().flatten().map(|i| i.governor.to_string()).unwrap_or_default();
        let chain = state.status.chain_id.load(Ordering::Relaxed);
        let _ = redis.prefix.set(format!("govflow:{chain}:{governor}:"));
        tokio::spawn(redis.clone().maintain());
        tokio::spawn(redis.clone().subscribe(cache.clone()));
    }
    tokio::spawn(follow(state.clone(), rx));
    tokio::spawn(warm_and_refresh(Arc::new(state)));
    let c = cache.clone();
    tokio::spawn(async move {
        loop {
            tokio::time::sleep(Duration::from_secs(5)).await;
            metrics::gauge!(m::CACHE_HIT_RATIO).set(c.hit_ratio());
            metrics::gauge!(m::CACHE_ENTRIES).set(c.entries() as f64);
        }
    });
}

async fn cursor(state: &ApiState) -> u64 {
    let store = state.store.clone();
    tokio::task::spawn_blocking(move || store.cursor()).await.ok().and_then(|r| r.ok()).flatten().map_or(0, |c| c.block)
}

/// Applies every commit's changes to the cache, in commit order.
async fn follow(state: ApiState, mut rx: tokio::sync::broadcast::Receiver<Arc<Update>>) {
    let cache = state.cache.clone();
    let at = cursor(&state).await;
    for s in cache.last_changed.iter() {
        s.fetch_max(at, Ordering::AcqRel);
    }
    cache.applied.fetch_max(at, Ordering::AcqRel);
    cache.ready.store(true, Ordering::Release);
    loop {
        match rx.recv().await {
            Ok(u) => match &*u {
                Update::Committed { to, changes, .. } => {
                    cache.invalidate(&tags_of(changes), "chain", Some(*to)).await;
                    cache.applied.fetch_max(*to, Ordering::AcqRel);
                }
                Update::RolledBack { ancestor, .. } => {
                    cache.invalidate(&[ALL.to_string()], "rollback", None).await;
                    cache.applied.store(*ancestor, Ordering::Release);
                }
            },
            Err(RecvError::Lagged(n)) => {
                tracing::warn!(target: "cache", missed = n, "cache fell behind the change feed; invalidating everything");
                let at = cursor(&state).await;
                for s in cache.last_changed.iter() {
                    s.fetch_max(at, Ordering::AcqRel);
                }
                cache.invalidate(&[ALL.to_string()], "lagged", None).await;
                cache.applied.store(at, Ordering::Release);
            }
            Err(RecvError::Closed) => return,
        }
    }
}

/// The hot set: the proposal lists, the statistics, every live proposal and the newest
/// `cache.warm_proposals`, and (with `accounts`) the voting power of the `cache.warm_accounts`
/// most recently active accounts.
fn hot_set(state: &ApiState, accounts: bool) -> Vec<(String, String)> {
    let mut out = vec![
        ("/v1/proposals".to_string(), String::new()),
        ("/v1/proposals".to_string(), "status=Active".to_string()),
        ("/v1/proposals/stats".to_string(), String::new()),
    ];
    let mut ids: Vec<crate::domain::U256> = state.store.live_proposals().map(|v| v.into_iter().map(|p| p.proposal_id).collect()).unwrap_or_default();
    if state.cache.warm_proposals > 0 {
        let q = ProposalQuery {
            statuses: vec![],
            proposer: None,
            created_from: None,
            created_to: None,
            end_from: None,
            end_to: None,
            sort: ProposalSort::CreatedAt,
            descending: true,
            after: None,
            limit: state.cache.warm_proposals,
        };
        if let Ok(page) = state.store.list_proposals(&q) {
            ids.extend(page.items.into_iter().map(|p| p.proposal_id));
        }
    }
    ids.sort();
    ids.dedup();
    out.extend(ids.into_iter().map(|id| (format!("/v1/proposals/{id}"), String::new())));
    if accounts && state.cache.warm_accounts > 0 {
        let mut all = state.store.latest_accounts().unwrap_or_default();
        all.sort_by_key(|a| std::cmp::Reverse(a.1.block_number));
        out.extend(all.into_iter().take(state.cache.warm_accounts).map(|(a, _)| (format!("/v1/users/{a}/voting-power"), String::new())));
    }
    out
}

async fn warm(state: &Arc<ApiState>, accounts: bool, refresh: bool) -> usize {
    let st = state.clone();
    let set = tokio::task::spawn_blocking(move || hot_set(&st, accounts)).await.unwrap_or_default();
    let mut n = 0;
    for (path, q) in set {
        let (_, r) = super::respond(state, warp::http::Method::GET, path, q, warp::http::HeaderMap::new(), refresh).await;
        n += usize::from(r.status() == StatusCode::OK);
    }
    n
}

/// Warms the cache once the indexer has caught up, then recomputes the hot proposals every half
/// TTL.
async fn warm_and_refresh(state: Arc<ApiState>) {
    let cache = state.cache.clone();
    loop {
        let caught_up = state.status.caught_up.load(Ordering::Acquire);
        let indexed = state.status.indexed.load(Ordering::Acquire);
        if caught_up && cache.ready.load(Ordering::Acquire) && cache.applied.load(Ordering::Acquire) >= indexed {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let t = Instant::now();
    let n = warm(&state, true, false).await;
    tracing::info!(target: "cache", entries = n, elapsed_ms = t.elapsed().as_millis() as u64, "cache warmed: hot proposals and active accounts");
    loop {
        tokio::time::sleep(cache.ttl / 2).await;
        warm(&state, false, true).await;
    }
}

/// `POST /v1/admin/cache/invalidate`: invalidates, in this instance and (through Redis) every
/// other, the cached reads of `proposalId=` (comma list, decimal or hex), `account=` (comma
/// list), or `scope=` `all`, `proposals` (the lists) or `stats`. For emergencies: the cache
/// follows the chain by itself. The router has checked the admin token ([`super::auth`]).
pub fn invalidate(state: &ApiState, req: &Req<'_>) -> Result<warp::reply::Response, Problem> {
    req.accept::<super::params::InvalidateQuery>()?;
    let mut tags = Vec::new();
    for (k, v) in &req.query {
        for item in v.split(',').map(str::trim).filter(|s| !s.is_empty()) {
            match k.as_str() {
                "proposalId" => tags.push(proposal_tag(&parse_u256(item).map_err(|e| Problem::bad_param("proposalId", format!("{item:?}: {e}")))?)),
                "account" => {
                    tags.push(account_tag(&Address::parse(item).map_err(|e| Problem::bad_param("account", format!("{item:?} is not an address: {e}")))?))
                }
                _ => tags.push(match item {
                    "all" => ALL.to_string(),
                    "proposals" | "stats" => item.to_string(),
                    _ => return Err(Problem::bad_param("scope", format!("unknown scope {item:?}; one of all, proposals, stats"))),
                }),
            }
        }
    }
    if tags.is_empty() {
        return Err(Problem::bad_param("scope", "name what to invalidate: proposalId=, account= or scope=all|proposals|stats"));
    }
    tags.sort();
    tags.dedup();
    let cache = state.cache.clone();
    let t = tags.clone();
    let propagated = match tokio::runtime::Handle::try_current() {
        Ok(h) => h.block_on(async move { cache.invalidate(&t, "admin", None).await }),
        Err(_) => false,
    };
    tracing::warn!(target: "cache", tags = ?tags, propagated, "cache invalidated by the admin route");
    let answer = super::views::CacheInvalidation { invalidated: tags, propagated, redis: state.cache.redis.is_some() };
    Ok(super::json(&super::to_json(&answer)?))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn plans_are_canonical() {
        let a = plan("/v1/proposals/0x10", "fields=status&fields=id").unwrap();
        let b = plan("/v1/proposals/16", "fields=status&fields=id").unwrap();
        assert_eq!(a.key, b.key);
        assert_eq!(a.key, "/v1/proposals/16?fields=status&fields=id");
        assert_eq!(a.slots[0], slot("*"));
        let l1 = plan("/v1/proposals", "status=Active&limit=5").unwrap();
        let l2 = plan("/v1/proposals", "limit=5&status=Active").unwrap();
        assert_eq!(l1.key, l2.key);
        let vp = plan("/v1/users/0xABCDEFabcdefABCDEFabcdefABCDEFabcdefABCD/voting-power", "").unwrap();
        assert_eq!(vp.key, "/v1/users/0xabcdefabcdefabcdefabcdefabcdefabcdefabcd/voting-power");
        assert!(vp.per_block);
        let at = plan("/v1/users/0xabcdefabcdefabcdefabcdefabcdefabcdefabcd/voting-power", "proposalId=7").unwrap();
        assert!(!at.per_block);
        assert!(at.slots.contains(&slot("p:7")));
        assert!(plan("/v1/proposals/nope", "").is_none());
        assert!(plan("/v1/delegates", "").is_none());
        assert!(plan("/v1/proposals/1/votes", "").is_none());
    }

    #[test]
    fn commits_invalidate_what_they_touch() {
        let tags = tags_of(&[Change::Power { account: Address([1; 20]), power: Default::default() }]);
        assert_eq!(tags, vec![format!("a:{}", Address([1; 20])), "stats".to_string()]);
        assert_eq!(tags_of(&[]), vec!["stats".to_string()]);
    }

    #[test]
    fn provisional_flag_is_found() {
        assert!(provisional(br#"{"a":1,"provisional":true}"#));
        assert!(!provisional(br#"{"provisional":false}"#));
    }

    #[tokio::test]
    async fn serves_until_invalidated() {
        let cache = Cache::new(&CacheConfig::default());
        cache.ready.store(true, Ordering::Release);
        let status = IndexerStatus::default();
        let computed = Arc::new(AtomicU64::new(0));
        let run = |c: Arc<AtomicU64>| async move {
            c.fetch_add(1, Ordering::Relaxed);
            super::super::json(&json!({ "n": 1 }))
        };
        let p = plan("/v1/proposals/5", "").unwrap();
        let r = cache.serve(&status, p.clone(), false, run(computed.clone())).await;
        assert_eq!(r.headers()[X_CACHE], "miss");
        let r = cache.serve(&status, p.clone(), false, run(computed.clone())).await;
        assert_eq!(r.headers()[X_CACHE], "l1-hit");
        assert_eq!(computed.load(Ordering::Relaxed), 1);
        cache.invalidate(&["p:6".into()], "admin", None).await;
        let r = cache.serve(&status, p.clone(), false, run(computed.clone())).await;
        assert_eq!(r.headers()[X_CACHE], "l1-hit", "another proposal's invalidation leaves it");
        cache.invalidate(&["p:5".into()], "admin", None).await;
        let r = cache.serve(&status, p.clone(), false, run(computed.clone())).await;
        assert_eq!(r.headers()[X_CACHE], "miss");
        // The cache behind the store: bypass.
        status.indexed.store(10, Ordering::Release);
        let r = cache.serve(&status, p, false, run(computed.clone())).await;
        assert_eq!(r.headers()[X_CACHE], "bypass");
        assert_eq!(computed.load(Ordering::Relaxed), 3);
    }

    #[tokio::test]
    async fn per_block_entries_follow_the_indexed_block() {
        let cache = Cache::new(&CacheConfig::default());
        cache.ready.store(true, Ordering::Release);
        cache.applied.store(100, Ordering::Release);
        let status = IndexerStatus::default();
        status.indexed.store(5, Ordering::Release);
        let p = plan("/v1/users/0x0101010101010101010101010101010101010101/voting-power", "").unwrap();
        let mk = || async { super::super::json(&json!({ "blockNumber": 5 })) };
        assert_eq!(cache.serve(&status, p.clone(), false, mk()).await.headers()[X_CACHE], "miss");
        assert_eq!(cache.serve(&status, p.clone(), false, mk()).await.headers()[X_CACHE], "l1-hit");
        status.indexed.store(6, Ordering::Release);
        assert_eq!(cache.serve(&status, p, false, mk()).await.headers()[X_CACHE], "miss");
    }
}
