//! Configuration: `config/*.toml`, then `GOVFLOW_<SECTION>_<KEY>` environment variables, then
//! command-line flags. Every invalid or missing value is reported at once, with its path.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::domain::Address;

/// The whole configuration.
#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    /// Chain and contracts.
    pub chain: ChainConfig,
    /// Storage.
    pub store: StoreConfig,
    /// HTTP API.
    pub http: HttpConfig,
    /// Voter-power shards.
    pub voter_power: VoterPowerConfig,
    /// Logging.
    pub log: LogConfig,
    /// Governance events for the achievement system.
    pub achievements: AchievementsConfig,
    /// ScyllaDB (or any CQL engine) store, used when `store.backend = "scylla"`.
    pub scylla: ScyllaConfig,
    /// Websockets.
    pub websocket: WebsocketConfig,
    /// Read cache.
    pub cache: CacheConfig,
    /// The bus between govflow's parts and to other systems (in-process or NATS JetStream).
    pub bus: BusConfig,
}

/// `bus.kind`.
#[derive(Clone, Copy, Debug, Default, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "kebab-case")]
pub enum BusKind {
    /// In the process: no service needed.
    #[default]
    InProcess,
    /// NATS JetStream: several instances, outside subscribers.
    Nats,
}

/// `bus.storage`.
#[derive(Clone, Copy, Debug, Default, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "kebab-case")]
pub enum BusStorage {
    /// Durable, on disk.
    #[default]
    File,
    /// In the server's memory.
    Memory,
}

/// `scylla.consistency`: the consistency of reads and writes (lower or upper case).
#[derive(Clone, Copy, Debug, Default, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
#[allow(missing_docs)]
pub enum Consistency {
    #[serde(alias = "ANY")]
    Any,
    #[serde(alias = "ONE")]
    One,
    #[serde(alias = "TWO")]
    Two,
    #[serde(alias = "THREE")]
    Three,
    #[serde(alias = "QUORUM")]
    Quorum,
    #[serde(alias = "ALL")]
    All,
    #[default]
    #[serde(alias = "LOCAL_QUORUM")]
    LocalQuorum,
    #[serde(alias = "EACH_QUORUM")]
    EachQuorum,
    #[serde(alias = "LOCAL_ONE")]
    LocalOne,
}

/// `scylla.serial_consistency`: the consistency of the Paxos phase of lightweight transactions.
#[derive(Clone, Copy, Debug, Default, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
#[allow(missing_docs)]
pub enum SerialConsistency {
    #[serde(alias = "SERIAL")]
    Serial,
    #[default]
    #[serde(alias = "LOCAL_SERIAL")]
    LocalSerial,
}

/// `scylla.retry_policy`.
#[derive(Clone, Copy, Debug, Default, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum RetryPolicy {
    /// Retry what is safe to retry (idempotent statements).
    #[default]
    Default,
    /// Never retry.
    None,
}

/// `store.backend`.
#[derive(Clone, Copy, Debug, Default, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "kebab-case")]
pub enum StoreBackend {
    /// A redb file in `store.data_dir`.
    #[default]
    Embedded,
    /// ScyllaDB or any CQL engine (`[scylla]`).
    Scylla,
}

/// `log.format`.
#[derive(Clone, Copy, Debug, Default, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "kebab-case")]
pub enum LogFormat {
    /// Human-readable lines.
    #[default]
    Text,
    /// One JSON object per line.
    Json,
}

/// `[bus]`: how the listener, the indexer and subscribers talk. `in-process` (default) needs
/// no service; `nats` puts every chain event, range, rollback and achievement event on NATS
/// JetStream, so several govflow instances can share the work and other systems subscribe.
#[derive(Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct BusConfig {
    /// `in-process` or `nats`.
    pub kind: BusKind,
    /// NATS server URL(s), comma separated (`nats://user:pass@host:4222`).
    pub nats_url: String,
    /// Replicas of each JetStream stream (1 on a single server, 3 in a cluster).
    pub replicas: usize,
    /// JetStream storage: `file` (durable) or `memory`.
    pub storage: BusStorage,
    /// Seconds within which a message id is deduplicated by the server.
    pub duplicate_window_s: u64,
    /// Days chain events and achievement events are kept on their streams.
    pub max_age_days: u64,
    /// Seconds a delivered message may stay unacknowledged before it is delivered again.
    pub ack_wait_s: u64,
    /// Seconds a role lease (listener, indexer) lives without renewal; another instance takes
    /// the role over after this long when its holder dies.
    pub lease_ttl_s: u64,
    /// The listener stays at most this many blocks ahead of the committed cursor.
    pub max_ahead_blocks: u64,
    /// Partitions of the proposal actors and voter-power shards; the instances alive share
    /// them (each serves at most its fair share).
    pub partitions: usize,
    /// Name of this instance in leases and logs (default: host name and process id).
    pub instance: Option<String>,
}

impl std::fmt::Debug for BusConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BusConfig")
            .field("kind", &self.kind)
            .field("nats_url", &redact_url(&self.nats_url))
            .field("replicas", &self.replicas)
            .field("storage", &self.storage)
            .field("lease_ttl_s", &self.lease_ttl_s)
            .finish_non_exhaustive()
    }
}

impl Default for BusConfig {
    fn default() -> Self {
        BusConfig {
            kind: BusKind::InProcess,
            nats_url: "nats://127.0.0.1:4222".into(),
            replicas: 1,
            storage: BusStorage::File,
            duplicate_window_s: 600,
            max_age_days: 30,
            ack_wait_s: 30,
            lease_ttl_s: 6,
            max_ahead_blocks: 20_000,
            partitions: 4,
            instance: None,
        }
    }
}

/// `[scylla]`: the ScyllaDB store (`store.backend = "scylla"`). Any CQL engine speaking the
/// native protocol v4 works; the tests run it on Apache Cassandra 5.
#[derive(Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct ScyllaConfig {
    /// Contact points, `host:port` separated by commas; the rest of the cluster is discovered.
    pub nodes: String,
    /// Keyspace (created by `govflow migrate` or at start-up with `migrate_on_start`).
    pub keyspace: String,
    /// Replication map of the keyspace, as CQL (used when the keyspace is created).
    pub replication: String,
    /// Extra keyspace options appended to `CREATE KEYSPACE` (ScyllaDB with tablets:
    /// `AND tablets = {'enabled': false}`, since counters and LWT need vnodes there).
    pub keyspace_options: String,
    /// Apply pending schema migrations at start-up.
    pub migrate_on_start: bool,
    /// Consistency of reads and writes: `local_quorum`, `quorum`, `local_one`, `one`, `all`, ...
    pub consistency: Consistency,
    /// Consistency of the Paxos phase of lightweight transactions: `local_serial` or `serial`.
    pub serial_consistency: SerialConsistency,
    /// Preferred datacenter for token-aware routing (unset: any).
    pub local_datacenter: Option<String>,
    /// Client-side timeout of one request, in milliseconds.
    pub request_timeout_ms: u64,
    /// Timeout of opening a connection, in milliseconds.
    pub connect_timeout_ms: u64,
    /// Connections per node (per shard on ScyllaDB).
    pub connections_per_node: usize,
    /// Speculative executions of idempotent reads and writes (0 = off).
    pub speculative_retries: usize,
    /// Delay before each speculative execution, in milliseconds.
    pub speculative_delay_ms: u64,
    /// Retry policy: `default` (retry what is safe to retry) or `none`.
    pub retry_policy: RetryPolicy,
    /// Rows per page when the store scans a partition or a table.
    pub page_size: i32,
    /// Requests in flight per batch commit.
    pub write_concurrency: usize,
    /// User name (password authentication); unset: no authentication.
    pub username: Option<String>,
    /// Password; never logged.
    pub password: Option<String>,
}

impl std::fmt::Debug for ScyllaConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ScyllaConfig")
            .field("nodes", &self.nodes)
            .field("keyspace", &self.keyspace)
            .field("replication", &self.replication)
            .field("consistency", &self.consistency)
            .field("username", &self.username)
            .field("password", &self.password.as_ref().map(|_| "<redacted>"))
            .finish_non_exhaustive()
    }
}

impl Default for ScyllaConfig {
    fn default() -> Self {
        ScyllaConfig {
            nodes: "127.0.0.1:9042".into(),
            keyspace: "govflow".into(),
            replication: "{'class': 'SimpleStrategy', 'replication_factor': 1}".into(),
            keyspace_options: String::new(),
            migrate_on_start: true,
            consistency: Consistency::LocalQuorum,
            serial_consistency: SerialConsistency::LocalSerial,
            local_datacenter: None,
            request_timeout_ms: 10_000,
            connect_timeout_ms: 5_000,
            connections_per_node: 1,
            speculative_retries: 0,
            speculative_delay_ms: 100,
            retry_policy: RetryPolicy::Default,
            page_size: 1_000,
            write_concurrency: 256,
            username: None,
            password: None,
        }
    }
}

/// `[achievements]`: governance events for the achievement system.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct AchievementsConfig {
    /// Derive governance events (outbox, feed, achievements endpoint).
    pub enabled: bool,
}

impl Default for AchievementsConfig {
    fn default() -> Self {
        AchievementsConfig { enabled: true }
    }
}

/// `[chain]`: where to read governance from.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct ChainConfig {
    /// HTTP JSON-RPC endpoint of an EVM node (an archive node for history and discovery).
    pub rpc_url: String,
    /// Expected chain id; start-up fails when the node reports another. Unset: accept any.
    pub chain_id: Option<u64>,
    /// Governor contract address; the token and timelock are discovered from it.
    pub governor: Option<String>,
    /// Override of the discovered ERC20Votes token (events of balances, delegations, votes).
    pub token: Option<String>,
    /// Override of the discovered timelock.
    pub timelock: Option<String>,
    /// Override of the discovered CultureBridge benefit executor (NFT bonuses).
    pub benefit_executor: Option<String>,
    /// Override of the discovered CultureBridge achievement NFT.
    pub achievement_nft: Option<String>,
    /// First block to index. Unset: the first block at which the governor, its token and its
    /// timelock all exist (found by binary search on `eth_getCode`).
    pub start_block: Option<u64>,
    /// Depth below the head at which a block counts as final. Newer data is served flagged
    /// `provisional`.
    pub confirmations: u64,
    /// Blocks below the head kept reversible and checked for reorgs.
    pub reorg_window: u64,
    /// Largest `eth_getLogs` block range (shrinks by itself when the node refuses).
    pub max_log_range: u64,
    /// Pause between head polls once caught up, in milliseconds.
    pub poll_interval_ms: u64,
    /// Timeout of one RPC request, in milliseconds.
    pub request_timeout_ms: u64,
    /// Attempts per RPC call before the listener restarts (0 = retry forever with backoff).
    pub rpc_max_attempts: u32,
    /// Parallel header requests.
    pub header_concurrency: usize,
    /// Seconds between backfill progress lines.
    pub progress_interval_s: u64,
}

impl Default for ChainConfig {
    fn default() -> Self {
        ChainConfig {
            rpc_url: "http://127.0.0.1:8545".into(),
            chain_id: None,
            governor: None,
            token: None,
            timelock: None,
            benefit_executor: None,
            achievement_nft: None,
            start_block: None,
            confirmations: 0,
            reorg_window: 64,
            max_log_range: 2_000,
            poll_interval_ms: 1_000,
            request_timeout_ms: 10_000,
            rpc_max_attempts: 6,
            header_concurrency: 8,
            progress_interval_s: 5,
        }
    }
}

/// `[store]`: where data lives.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct StoreConfig {
    /// Backend: `embedded` (redb file in `data_dir`) or `scylla` (the `[scylla]` section).
    pub backend: StoreBackend,
    /// Directory of the embedded store.
    pub data_dir: PathBuf,
}

impl Default for StoreConfig {
    fn default() -> Self {
        StoreConfig { backend: StoreBackend::Embedded, data_dir: PathBuf::from(".govflow") }
    }
}

/// `[http]`: the REST API.
#[derive(Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct HttpConfig {
    /// Listen address.
    pub listen: String,
    /// Page size when `limit` is not given.
    pub default_page_size: usize,
    /// Largest accepted `limit`.
    pub max_page_size: usize,
    /// Origins allowed by CORS, comma separated; `*` for any; empty: no CORS headers.
    pub cors_origins: String,
    /// Requests per second per client (by remote address) before 429; 0 = no limit.
    pub rate_limit_per_second: u32,
    /// Requests a client may burst above the rate.
    pub rate_limit_burst: u32,
    /// Take the client address from `X-Forwarded-For` (behind a trusted proxy only).
    pub trust_forwarded_for: bool,
    /// Time a request may take before it is answered 503.
    pub request_timeout_ms: u64,
    /// Responses at least this large are compressed (gzip or br, as the client accepts).
    pub compression_min_bytes: usize,
    /// Bearer token of the admin routes (`/v1/admin/...`); unset: admin routes disabled.
    pub admin_token: Option<String>,
    /// Bearer token of `POST /v1/events/governance` (events other systems send in for the
    /// achievement trigger system); unset: that route is disabled (404).
    pub events_token: Option<String>,
}

impl std::fmt::Debug for HttpConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HttpConfig")
            .field("listen", &self.listen)
            .field("cors_origins", &self.cors_origins)
            .field("rate_limit_per_second", &self.rate_limit_per_second)
            .field("admin_token", &self.admin_token.as_ref().map(|_| "<redacted>"))
            .field("events_token", &self.events_token.as_ref().map(|_| "<redacted>"))
            .finish_non_exhaustive()
    }
}

impl Default for HttpConfig {
    fn default() -> Self {
        HttpConfig {
            listen: "127.0.0.1:8080".into(),
            default_page_size: 50,
            max_page_size: 500,
            cors_origins: String::new(),
            rate_limit_per_second: 0,
            rate_limit_burst: 100,
            trust_forwarded_for: false,
            request_timeout_ms: 10_000,
            compression_min_bytes: 1_024,
            admin_token: None,
            events_token: None,
        }
    }
}

/// `[websocket]`: live updates on `/v1/ws`.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct WebsocketConfig {
    /// Open connections at most; more are refused with 503.
    pub max_connections: usize,
    /// Topics one connection may subscribe to.
    pub max_subscriptions: usize,
    /// Messages queued per client; a client that falls this far behind is disconnected.
    pub queue_per_client: usize,
    /// Seconds between heartbeats (ping frames and `heartbeat` messages).
    pub heartbeat_interval_s: u64,
    /// Messages kept per topic for clients that reconnect with their last sequence number.
    pub replay_per_topic: usize,
}

impl Default for WebsocketConfig {
    fn default() -> Self {
        WebsocketConfig { max_connections: 20_000, max_subscriptions: 64, queue_per_client: 1_024, heartbeat_interval_s: 15, replay_per_topic: 1_024 }
    }
}

/// `[cache]`: the read cache (in-process, optionally in front of Redis).
#[derive(Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct CacheConfig {
    /// Cache reads at all.
    pub enabled: bool,
    /// Entries kept in process.
    pub capacity: u64,
    /// An entry is refreshed from the store after this long even without an invalidation.
    pub ttl_ms: u64,
    /// Redis URL (`redis://host:6379/0`): a second level shared by instances, and the channel
    /// carrying invalidations between them. Unset: the in-process cache serves alone.
    pub redis_url: Option<String>,
    /// Proposals (newest first, plus every live one) loaded into the cache at start.
    pub warm_proposals: usize,
    /// Most recently active accounts whose voting power is loaded at start.
    pub warm_accounts: usize,
}

impl std::fmt::Debug for CacheConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CacheConfig")
            .field("enabled", &self.enabled)
            .field("capacity", &self.capacity)
            .field("ttl_ms", &self.ttl_ms)
            .field("redis_url", &self.redis_url.as_deref().map(redact_url))
            .finish_non_exhaustive()
    }
}

impl Default for CacheConfig {
    fn default() -> Self {
        CacheConfig { enabled: true, capacity: 100_000, ttl_ms: 30_000, redis_url: None, warm_proposals: 100, warm_accounts: 1_000 }
    }
}

/// `[voter_power]`: the voter-power shard actors.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct VoterPowerConfig {
    /// Number of shards of the address space, one actor each.
    pub shards: usize,
    /// Accounts cached per shard.
    pub cache_accounts_per_shard: usize,
}

impl Default for VoterPowerConfig {
    fn default() -> Self {
        VoterPowerConfig { shards: 4, cache_accounts_per_shard: 100_000 }
    }
}

/// `[log]`: logging.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct LogConfig {
    /// `text` or `json`.
    pub format: LogFormat,
    /// A tracing filter, e.g. `info` or `govflow=debug`.
    pub level: String,
}

impl Default for LogConfig {
    fn default() -> Self {
        LogConfig { format: LogFormat::Text, level: "info".into() }
    }
}

/// One problem with the configuration.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigIssue {
    /// Dotted key path, e.g. `chain.confirmations`.
    pub path: String,
    /// What is wrong.
    pub message: String,
}

/// Every problem found, reported together.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("invalid configuration:\n{}", .0.iter().map(|i| format!("  - {}: {}", i.path, i.message)).collect::<Vec<_>>().join("\n"))]
pub struct ConfigErrors(pub Vec<ConfigIssue>);

const SECTIONS: &[&str] = &["chain", "store", "http", "voter_power", "log", "achievements", "scylla", "websocket", "cache", "bus"];

fn check_section<T: for<'de> Deserialize<'de>>(name: &str, v: &toml::Value, issues: &mut Vec<ConfigIssue>) {
    let Some(t) = v.as_table() else {
        issues.push(ConfigIssue { path: name.into(), message: "must be a table".into() });
        return;
    };
    for (k, val) in t {
        let mut one = toml::Table::new();
        one.insert(k.clone(), val.clone());
        if let Err(e) = toml::Value::Table(one).try_into::<T>() {
            let msg = e.to_string();
            let msg = msg.lines().next().unwrap_or("").trim().to_string();
            issues.push(ConfigIssue { path: format!("{name}.{k}"), message: msg });
        }
    }
}

/// Parses an environment or flag value into the TOML type it most likely means.
fn scalar(s: &str) -> toml::Value {
    if let Ok(i) = s.parse::<i64>() {
        return toml::Value::Integer(i);
    }
    match s {
        "true" => toml::Value::Boolean(true),
        "false" => toml::Value::Boolean(false),
        _ => toml::Value::String(s.to_string()),
    }
}

/// Keys that stay strings even when they look like numbers.
const STRING_KEYS: &[&str] = &[
    "chain.governor",
    "chain.token",
    "chain.timelock",
    "chain.benefit_executor",
    "chain.achievement_nft",
    "chain.rpc_url",
    "http.listen",
    "store.data_dir",
    "log.level",
    "log.format",
    "store.backend",
    "scylla.nodes",
    "scylla.keyspace",
    "scylla.replication",
    "scylla.keyspace_options",
    "scylla.consistency",
    "scylla.serial_consistency",
    "scylla.local_datacenter",
    "scylla.retry_policy",
    "scylla.username",
    "scylla.password",
    "http.cors_origins",
    "http.admin_token",
    "http.events_token",
    "cache.redis_url",
    "bus.kind",
    "bus.nats_url",
    "bus.storage",
    "bus.instance",
];

/// Sets `section.key` in a TOML document.
pub fn set(doc: &mut toml::Table, path: &str, value: &str) {
    let Some((section, key)) = path.split_once('.') else { return };
    let v = if STRING_KEYS.contains(&path) { toml::Value::String(value.to_string()) } else { scalar(value) };
    let sec = doc.entry(section.to_string()).or_insert_with(|| toml::Value::Table(toml::Table::new()));
    if let Some(t) = sec.as_table_mut() {
        t.insert(key.to_string(), v);
    }
}

/// Builds the configuration from a file (optional), the environment and flag overrides
/// (`("chain.rpc_url", "http://...")`), validating everything.
pub fn load(file: Option<&Path>, env: impl IntoIterator<Item = (String, String)>, overrides: &[(&str, String)]) -> Result<Config, ConfigErrors> {
    load_with(file, env, overrides, true)
}

/// Like [`load`], for commands that only use the store (`migrate`, `reconcile`): the chain
/// section is checked but no governor is required.
pub fn load_store_only(file: Option<&Path>, env: impl IntoIterator<Item = (String, String)>, overrides: &[(&str, String)]) -> Result<Config, ConfigErrors> {
    load_with(file, env, overrides, false)
}

fn load_with(
    file: Option<&Path>,
    env: impl IntoIterator<Item = (String, String)>,
    overrides: &[(&str, String)],
    require_governor: bool,
) -> Result<Config, ConfigErrors> {
    let mut issues = Vec::new();
    let mut doc = toml::Table::new();
    if let Some(f) = file {
        match std::fs::read_to_string(f) {
            Ok(s) => match s.parse::<toml::Table>() {
                Ok(t) => doc = t,
                Err(e) => issues.push(ConfigIssue { path: f.display().to_string(), message: e.to_string().replace('\n', " ") }),
            },
            Err(e) => issues.push(ConfigIssue { path: f.display().to_string(), message: e.to_string() }),
        }
    }
    for (k, v) in env {
        let Some(rest) = k.strip_prefix("GOVFLOW_") else { continue };
        let rest = rest.to_ascii_lowercase();
        if let Some(section) = SECTIONS.iter().filter(|s| rest.starts_with(&format!("{s}_"))).max_by_key(|s| s.len()) {
            let key = &rest[section.len() + 1..];
            set(&mut doc, &format!("{section}.{key}"), &v);
        }
    }
    for (path, v) in overrides {
        set(&mut doc, path, v);
    }
    for (k, v) in &doc {
        match k.as_str() {
            "chain" => check_section::<ChainConfig>(k, v, &mut issues),
            "store" => check_section::<StoreConfig>(k, v, &mut issues),
            "http" => check_section::<HttpConfig>(k, v, &mut issues),
            "voter_power" => check_section::<VoterPowerConfig>(k, v, &mut issues),
            "log" => check_section::<LogConfig>(k, v, &mut issues),
            "achievements" => check_section::<AchievementsConfig>(k, v, &mut issues),
            "scylla" => check_section::<ScyllaConfig>(k, v, &mut issues),
            "websocket" => check_section::<WebsocketConfig>(k, v, &mut issues),
            "cache" => check_section::<CacheConfig>(k, v, &mut issues),
            "bus" => check_section::<BusConfig>(k, v, &mut issues),
            other => issues.push(ConfigIssue { path: other.into(), message: format!("unknown section; expected one of {}", SECTIONS.join(", ")) }),
        }
    }
    // Report every problem at once: the values that did not parse fall back to their defaults so
    // that the checks of everything else still run.
    for i in &issues {
        match i.path.split_once('.') {
            Some((section, key)) => {
                if let Some(t) = doc.get_mut(section).and_then(toml::Value::as_table_mut) {
                    t.remove(key);
                }
            }
            None => {
                doc.remove(&i.path);
            }
        }
    }
    let cfg: Config = match toml::Value::Table(doc).try_into() {
        Ok(c) => c,
        Err(e) => {
            let e: toml::de::Error = e;
            issues.push(ConfigIssue { path: "config".into(), message: e.to_string() });
            return Err(ConfigErrors(issues));
        }
    };
    if let Err(ConfigErrors(more)) = cfg.validate_with(require_governor) {
        issues.extend(more.into_iter().filter(|m| !issues.iter().any(|i| i.path == m.path)).collect::<Vec<_>>());
    }
    if issues.is_empty() {
        Ok(cfg)
    } else {
        Err(ConfigErrors(issues))
    }
}

impl Config {
    /// Semantic checks beyond types.
    pub fn validate(&self) -> Result<(), ConfigErrors> {
        self.validate_with(true)
    }

    fn validate_with(&self, require_governor: bool) -> Result<(), ConfigErrors> {
        let mut issues = Vec::new();
        let mut bad = |path: &str, message: String| issues.push(ConfigIssue { path: path.into(), message });
        match &self.chain.governor {
            None if !require_governor => {}
            None => bad("chain.governor", "required: the governor contract address (--governor or GOVFLOW_CHAIN_GOVERNOR)".into()),
            Some(g) => {
                if let Err(e) = Address::parse(g) {
                    bad("chain.governor", format!("{g:?} is not an address: {e}"));
                }
            }
        }
        for (key, v) in [
            ("chain.token", &self.chain.token),
            ("chain.timelock", &self.chain.timelock),
            ("chain.benefit_executor", &self.chain.benefit_executor),
            ("chain.achievement_nft", &self.chain.achievement_nft),
        ] {
            if let Some(v) = v {
                if let Err(e) = Address::parse(v) {
                    bad(key, format!("{v:?} is not an address: {e}"));
                }
            }
        }
        if !(self.chain.rpc_url.starts_with("http://") || self.chain.rpc_url.starts_with("https://")) {
            bad("chain.rpc_url", "must be an http:// or https:// URL".into());
        }
        if self.chain.reorg_window == 0 {
            bad("chain.reorg_window", "must be at least 1".into());
        }
        if self.chain.max_log_range == 0 {
            bad("chain.max_log_range", "must be at least 1".into());
        }
        if self.chain.request_timeout_ms == 0 {
            bad("chain.request_timeout_ms", "must be at least 1".into());
        }
        if self.http.listen.parse::<SocketAddr>().is_err() {
            bad("http.listen", format!("{:?} is not HOST:PORT (e.g. 127.0.0.1:8080)", self.http.listen));
        }
        if self.http.default_page_size == 0 || self.http.default_page_size > self.http.max_page_size {
            bad("http.default_page_size", "must be between 1 and http.max_page_size".into());
        }
        if self.http.request_timeout_ms == 0 {
            bad("http.request_timeout_ms", "must be at least 1".into());
        }
        if self.http.admin_token.as_deref().is_some_and(|t| t.len() < 16) {
            bad("http.admin_token", "must be at least 16 characters".into());
        }
        if self.http.events_token.as_deref().is_some_and(|t| t.len() < 16) {
            bad("http.events_token", "must be at least 16 characters".into());
        }
        if let Some(u) = &self.cache.redis_url {
            if !(u.starts_with("redis://") || u.starts_with("rediss://") || u.starts_with("unix://")) {
                bad("cache.redis_url", "must be a redis://, rediss:// or unix:// URL".into());
            }
        }
        match self.bus.kind {
            BusKind::InProcess => {}
            BusKind::Nats => {
                if self.bus.nats_url.split(',').any(|u| !(u.trim().starts_with("nats://") || u.trim().starts_with("tls://"))) {
                    bad("bus.nats_url", "must be nats:// or tls:// URLs, comma separated".into());
                }
                if self.bus.partitions == 0 || self.bus.partitions > 256 {
                    bad("bus.partitions", "must be between 1 and 256".into());
                }
                if self.bus.replicas == 0 || self.bus.replicas > 5 {
                    bad("bus.replicas", "must be between 1 and 5".into());
                }
                if self.bus.lease_ttl_s < 2 || self.bus.ack_wait_s == 0 || self.bus.duplicate_window_s == 0 {
                    bad("bus", "lease_ttl_s must be at least 2; ack_wait_s and duplicate_window_s at least 1".into());
                }
            }
        }
        if self.websocket.queue_per_client == 0 || self.websocket.heartbeat_interval_s == 0 {
            bad("websocket", "queue_per_client and heartbeat_interval_s must be at least 1".into());
        }
        if self.voter_power.shards == 0 || self.voter_power.shards > 1024 {
            bad("voter_power.shards", "must be between 1 and 1024".into());
        }
        if self.store.backend == StoreBackend::Scylla {
            for m in self.scylla.problems() {
                bad(&m.0, m.1);
            }
        }
        if issues.is_empty() {
            Ok(())
        } else {
            Err(ConfigErrors(issues))
        }
    }

    /// The governor address (validated).
    pub fn governor(&self) -> Address {
        self.chain.governor.as_deref().and_then(|g| Address::parse(g).ok()).unwrap_or_default()
    }

    /// Applies the configured contract addresses over what discovery found.
    pub fn apply_overrides(&self, info: &mut crate::domain::GovernorInfo) {
        let parse = |v: &Option<String>| v.as_deref().and_then(|s| Address::parse(s).ok());
        if let Some(a) = parse(&self.chain.token) {
            info.token = a;
        }
        if let Some(a) = parse(&self.chain.timelock) {
            info.timelock = Some(a);
        }
        if let Some(a) = parse(&self.chain.benefit_executor) {
            info.benefit_executor = Some(a);
        }
        if let Some(a) = parse(&self.chain.achievement_nft) {
            info.achievement_nft = Some(a);
        }
    }

    /// The listen address (validated).
    pub fn listen(&self) -> SocketAddr {
        self.http.listen.parse().unwrap_or_else(|_| SocketAddr::from(([127, 0, 0, 1], 8080)))
    }
}

impl ScyllaConfig {
    /// Problems of the `[scylla]` section, as `(path, message)`.
    pub fn problems(&self) -> Vec<(String, String)> {
        let c = self;
        let mut out = Vec::new();
        let mut bad = |k: &str, m: String| out.push((format!("scylla.{k}"), m));
        if c.nodes.split(',').map(str::trim).filter(|n| !n.is_empty()).count() == 0 {
            bad("nodes", "at least one contact point host:port is required".into());
        }
        for n in c.nodes.split(',').map(str::trim).filter(|n| !n.is_empty()) {
            if n.rsplit_once(':').is_none_or(|(h, p)| h.is_empty() || p.parse::<u16>().is_err()) {
                bad("nodes", format!("{n:?} is not host:port"));
            }
        }
        let ident = |s: &str| {
            !s.is_empty()
                && s.len() <= 48
                && s.chars().next().is_some_and(|c| c.is_ascii_alphabetic())
                && s.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
        };
        if !ident(&c.keyspace) {
            bad("keyspace", format!("{:?} is not a keyspace name (a letter, then letters, digits or _, at most 48)", c.keyspace));
        }
        if !(c.replication.trim_start().starts_with('{') && c.replication.trim_end().ends_with('}')) {
            bad("replication", "must be a CQL map, e.g. {'class': 'NetworkTopologyStrategy', 'dc1': 3}".into());
        }
        if c.request_timeout_ms == 0 {
            bad("request_timeout_ms", "must be at least 1".into());
        }
        if c.connect_timeout_ms == 0 {
            bad("connect_timeout_ms", "must be at least 1".into());
        }
        if c.connections_per_node == 0 {
            bad("connections_per_node", "must be at least 1".into());
        }
        if c.page_size < 1 {
            bad("page_size", "must be at least 1".into());
        }
        if c.write_concurrency == 0 {
            bad("write_concurrency", "must be at least 1".into());
        }
        if c.password.is_some() && c.username.is_none() {
            bad("username", "a password is set without a user name".into());
        }
        out
    }
}

/// A URL safe to log (RPC, NATS, Redis): scheme, host and port only (paths, queries and credentials often
/// carry API keys).
pub fn redact_url(url: &str) -> String {
    match reqwest::Url::parse(url) {
        Ok(u) => {
            let host = u.host_str().unwrap_or("?");
            let port = u.port().map(|p| format!(":{p}")).unwrap_or_default();
            let hidden = !u.username().is_empty() || u.password().is_some() || u.path().len() > 1 || u.query().is_some();
            format!("{}://{host}{port}{}", u.scheme(), if hidden { "/***" } else { "" })
        }
        Err(_) => "<invalid url>".into(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const GOV: &str = "0x5FbDB2315678afecb367f032d93F642f64180aa3";

    #[test]
    fn chain_section_parses() {
        let t: ChainConfig = toml::from_str("rpc_url = \"http://x:1\"\nconfirmations = 3\ngovernor = \"0x00\"").unwrap();
        assert_eq!(t.confirmations, 3);
        assert_eq!(t.reorg_window, 64);
    }

    #[test]
    fn other_sections_parse() {
        let s: StoreConfig = toml::from_str("data_dir = \"/tmp/x\"").unwrap();
        assert_eq!(s.data_dir, PathBuf::from("/tmp/x"));
        let h: HttpConfig = toml::from_str("listen = \"0.0.0.0:9\"").unwrap();
        assert_eq!(h.max_page_size, 500);
        let v: VoterPowerConfig = toml::from_str("shards = 8").unwrap();
        assert_eq!(v.shards, 8);
        let l: LogConfig = toml::from_str("format = \"json\"").unwrap();
        assert_eq!(l.level, "info");
        let a: AchievementsConfig = toml::from_str("enabled = false").unwrap();
        assert!(!a.enabled);
    }

    #[test]
    fn reports_every_problem_with_its_path() {
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("c.toml");
        std::fs::write(&f, "[chain]\nconfirmations = \"many\"\nbogus = 1\n[http]\nlisten = 5\n[nope]\n").unwrap();
        let e = load(Some(&f), vec![], &[]).unwrap_err();
        let paths: Vec<&str> = e.0.iter().map(|i| i.path.as_str()).collect();
        assert!(paths.contains(&"chain.confirmations"), "{e}");
        assert!(paths.contains(&"chain.bogus"), "{e}");
        assert!(paths.contains(&"http.listen"), "{e}");
        assert!(paths.contains(&"nope"), "{e}");
    }

    #[test]
    fn semantic_errors_all_at_once() {
        let e = load(None, vec![], &[("chain.rpc_url", "ftp://x".into()), ("http.listen", "nowhere".into())]).unwrap_err();
        let paths: Vec<&str> = e.0.iter().map(|i| i.path.as_str()).collect();
        assert_eq!(paths, vec!["chain.governor", "chain.rpc_url", "http.listen"]);
    }

    #[test]
    fn contract_addresses_are_validated() {
        let e = load(None, vec![], &[("chain.governor", GOV.into()), ("chain.token", "0x12".into()), ("chain.achievement_nft", "nft".into())]).unwrap_err();
        let paths: Vec<&str> = e.0.iter().map(|i| i.path.as_str()).collect();
        assert_eq!(paths, vec!["chain.token", "chain.achievement_nft"]);
        let c = load(None, vec![("GOVFLOW_CHAIN_BENEFIT_EXECUTOR".into(), GOV.into())], &[("chain.governor", GOV.into())]).unwrap();
        assert_eq!(c.chain.benefit_executor.as_deref(), Some(GOV));
    }

    #[test]
    fn env_then_flags_override_the_file() {
        let env = vec![
            ("GOVFLOW_CHAIN_GOVERNOR".to_string(), GOV.to_string()),
            ("GOVFLOW_CHAIN_CONFIRMATIONS".to_string(), "5".to_string()),
            ("GOVFLOW_VOTER_POWER_SHARDS".to_string(), "2".to_string()),
            ("UNRELATED".to_string(), "x".to_string()),
        ];
        let c = load(None, env, &[("chain.confirmations", "7".into())]).unwrap();
        assert_eq!(c.chain.confirmations, 7);
        assert_eq!(c.voter_power.shards, 2);
        assert_eq!(c.governor(), Address::parse(GOV).unwrap());
    }

    #[test]
    fn scylla_section_is_validated_and_its_password_never_printed() {
        let env = |kv: &[(&str, &str)]| kv.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect::<Vec<_>>();
        let e = load(
            None,
            env(&[
                ("GOVFLOW_STORE_BACKEND", "scylla"),
                ("GOVFLOW_SCYLLA_NODES", "nohost"),
                ("GOVFLOW_SCYLLA_KEYSPACE", "9bad"),
                ("GOVFLOW_SCYLLA_CONSISTENCY", "most"),
                ("GOVFLOW_SCYLLA_PASSWORD", "hunter2"),
            ]),
            &[("chain.governor", GOV.into())],
        )
        .unwrap_err();
        let paths: Vec<&str> = e.0.iter().map(|i| i.path.as_str()).collect();
        assert_eq!(paths, ["scylla.consistency", "scylla.nodes", "scylla.keyspace", "scylla.username"], "{e}");
        assert!(e.to_string().contains("local_quorum"), "the valid levels are listed: {e}");
        let c = load(
            None,
            env(&[
                ("GOVFLOW_STORE_BACKEND", "scylla"),
                ("GOVFLOW_SCYLLA_NODES", "10.0.0.1:9042, 10.0.0.2:9042"),
                ("GOVFLOW_SCYLLA_USERNAME", "gf"),
                ("GOVFLOW_SCYLLA_PASSWORD", "hunter2"),
            ]),
            &[("chain.governor", GOV.into())],
        )
        .unwrap();
        assert_eq!(c.scylla.password.as_deref(), Some("hunter2"));
        assert!(!format!("{c:?}").contains("hunter2"));
        let e = load(None, env(&[("GOVFLOW_STORE_BACKEND", "postgres")]), &[("chain.governor", GOV.into())]).unwrap_err();
        assert_eq!(e.0[0].path, "store.backend");
    }

    #[test]
    fn a_value_of_the_wrong_type_does_not_hide_the_other_problems() {
        let env = |kv: &[(&str, &str)]| kv.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect::<Vec<_>>();
        let e = load(
            None,
            env(&[("GOVFLOW_BUS_KIND", "kafka"), ("GOVFLOW_CHAIN_RPC_URL", "ftp://node"), ("GOVFLOW_SCYLLA_RETRY_POLICY", "always")]),
            &[("chain.governor", "0x12".into())],
        )
        .unwrap_err();
        let mut paths: Vec<&str> = e.0.iter().map(|i| i.path.as_str()).collect();
        paths.sort();
        assert_eq!(paths, ["bus.kind", "chain.governor", "chain.rpc_url", "scylla.retry_policy"], "{e}");
    }

    #[test]
    fn typed_choices_report_every_bad_value_at_once_with_the_valid_ones() {
        let env = |kv: &[(&str, &str)]| kv.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect::<Vec<_>>();
        let e = load(
            None,
            env(&[("GOVFLOW_BUS_KIND", "kafka"), ("GOVFLOW_LOG_FORMAT", "xml"), ("GOVFLOW_STORE_BACKEND", "postgres"), ("GOVFLOW_BUS_STORAGE", "tape")]),
            &[("chain.governor", GOV.into())],
        )
        .unwrap_err();
        let mut found: Vec<(&str, &str)> = e.0.iter().map(|i| (i.path.as_str(), i.message.as_str())).collect();
        found.sort();
        assert_eq!(found.len(), 4, "{found:?}");
        for ((path, message), (want_path, valid)) in found.iter().zip([
            ("bus.kind", "`in-process` or `nats`"),
            ("bus.storage", "`file` or `memory`"),
            ("log.format", "`text` or `json`"),
            ("store.backend", "`embedded` or `scylla`"),
        ]) {
            assert_eq!(*path, want_path);
            assert!(message.contains(valid), "{path}: {message}");
        }
        let ok = load(None, env(&[("GOVFLOW_BUS_KIND", "nats"), ("GOVFLOW_LOG_FORMAT", "json")]), &[("chain.governor", GOV.into())]).unwrap();
        assert_eq!((ok.bus.kind, ok.log.format, ok.store.backend), (BusKind::Nats, LogFormat::Json, StoreBackend::Embedded));
    }

    #[test]
    fn every_shipped_config_file_loads() {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("config");
        let mut n = 0;
        for e in std::fs::read_dir(&dir).unwrap() {
            let p = e.unwrap().path();
            if p.extension().and_then(|x| x.to_str()) == Some("toml") {
                load(Some(&p), vec![], &[("chain.governor", GOV.into())]).unwrap_or_else(|e| panic!("{}: {e}", p.display()));
                n += 1;
            }
        }
        assert!(n >= 1);
    }
}
