//! The chain edge: JSON-RPC through ethers, with retries, and the governor's contract views.
//!
//! Nothing outside this room sees an ethers type; everything crosses as `domain` values and
//! `RawLog`s so that a later move to ethers' successor is this room's work only.

pub mod discovery;

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use ethers::abi::{self, ParamType, Token};
use ethers::providers::{Http, Provider, ProviderError, RpcError};
use ethers::types as et;
use serde::Deserialize;

use crate::config::redact_url;
use crate::domain::RawLog;
use crate::domain::{Address, B256, U256};
use crate::metrics as m;

/// Failures talking to the chain.
#[derive(Debug, thiserror::Error)]
pub enum ChainError {
    /// Connection, timeout, HTTP status or unparsable response: worth retrying.
    #[error("transport: {0}")]
    Transport(String),
    /// The node refused a log query as too large (range or result count).
    #[error("log range refused by the node: {0}")]
    RangeTooLarge(String),
    /// The node answered with a JSON-RPC error.
    #[error("rpc error {code}: {message}")]
    Rpc {
        /// JSON-RPC error code.
        code: i64,
        /// Message.
        message: String,
    },
    /// A contract call reverted.
    #[error("call reverted: {0}")]
    Reverted(String),
    /// A response did not have the expected shape.
    #[error("unexpected response: {0}")]
    Decode(String),
    /// The node serves another chain than configured.
    #[error("chain id mismatch: configured {configured}, node reports {actual}")]
    ChainIdMismatch {
        /// Configured chain id.
        configured: u64,
        /// Reported chain id.
        actual: u64,
    },
    /// Gave up after the configured number of attempts.
    #[error("gave up after {attempts} attempts: {last}")]
    Exhausted {
        /// Attempts made.
        attempts: u32,
        /// Last error.
        last: Box<ChainError>,
    },
}

impl ChainError {
    /// True for faults that a retry may cure.
    pub fn is_retryable(&self) -> bool {
        match self {
            ChainError::Transport(_) => true,
            ChainError::Rpc { code, message } => {
                // Server-side hiccups (-32000 "header not found" on a lagging replica, -32603
                // internal error, 429 rate limits surfaced as codes) are transient.
                *code == -32603 || *code == -32000 && is_transient_message(message) || *code == 429
            }
            _ => false,
        }
    }
}

fn is_transient_message(m: &str) -> bool {
    let m = m.to_ascii_lowercase();
    ["header not found", "timeout", "timed out", "try again", "busy", "unavailable", "rate"].iter().any(|p| m.contains(p))
}

/// True when a node's error message means "make the log query smaller".
pub fn is_range_refusal(message: &str) -> bool {
    let m = message.to_ascii_lowercase();
    ["block range", "range too", "range is too", "too many", "more than", "limit exceeded", "exceed", "response size", "query timeout", "too large"]
        .iter()
        .any(|p| m.contains(p))
}

/// A block header, reduced to what the listener needs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Header {
    /// Number.
    pub number: u64,
    /// Hash.
    pub hash: B256,
    /// Parent hash.
    pub parent_hash: B256,
    /// Timestamp (unix seconds).
    pub timestamp: u64,
}

/// Retry policy for RPC calls.
#[derive(Clone, Debug)]
pub struct RetryPolicy {
    /// First backoff.
    pub initial: Duration,
    /// Backoff ceiling.
    pub max: Duration,
    /// Attempts before giving up (0 = retry forever).
    pub max_attempts: u32,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        RetryPolicy { initial: Duration::from_millis(100), max: Duration::from_secs(10), max_attempts: 0 }
    }
}

impl RetryPolicy {
    /// Backoff before attempt `n` (1-based), exponential with full jitter in [d/2, d].
    pub fn backoff(&self, attempt: u32) -> Duration {
        let exp = self.initial.saturating_mul(1u32 << attempt.saturating_sub(1).min(16));
        let d = exp.min(self.max);
        let half = d / 2;
        half + Duration::from_nanos(rand::random::<u64>() % (half.as_nanos() as u64 + 1))
    }
}

/// JSON-RPC client with retries.
#[derive(Clone)]
pub struct RpcClient {
    provider: Arc<Provider<Http>>,
    retry: RetryPolicy,
    calls: Arc<AtomicU64>,
    url: Arc<str>,
    redacted: Arc<str>,
}

#[derive(Debug, Deserialize, serde::Serialize)]
#[serde(rename_all = "camelCase")]
struct RpcHeader {
    number: et::U64,
    hash: et::H256,
    parent_hash: et::H256,
    timestamp: et::U256,
}

#[derive(Debug, Deserialize, serde::Serialize)]
#[serde(rename_all = "camelCase")]
struct RpcLog {
    address: et::Address,
    topics: Vec<et::H256>,
    data: et::Bytes,
    block_number: Option<et::U64>,
    block_hash: Option<et::H256>,
    transaction_hash: Option<et::H256>,
    log_index: Option<et::U256>,
    #[serde(default)]
    removed: Option<bool>,
}

fn classify(e: ProviderError) -> ChainError {
    if let Some(resp) = e.as_error_response() {
        if is_range_refusal(&resp.message) {
            return ChainError::RangeTooLarge(resp.message.clone());
        }
        if resp.code == 3 || resp.message.contains("revert") {
            return ChainError::Reverted(resp.message.clone());
        }
        return ChainError::Rpc { code: resp.code, message: resp.message.clone() };
    }
    let s = e.to_string();
    if is_range_refusal(&s) && !s.contains("error sending request") {
        return ChainError::RangeTooLarge(s);
    }
    ChainError::Transport(s)
}

impl RpcClient {
    /// A client for an HTTP JSON-RPC endpoint.
    pub fn new(url: &str, timeout: Duration, retry: RetryPolicy) -> Result<Self, ChainError> {
        let client = reqwest::Client::builder().timeout(timeout).build().map_err(|e| ChainError::Transport(e.to_string()))?;
        let parsed: reqwest::Url = url.parse().map_err(|e| ChainError::Transport(format!("invalid RPC URL: {e}")))?;
        let provider = Provider::new(Http::new_with_client(parsed, client));
        Ok(RpcClient {
            provider: Arc::new(provider),
            retry,
            calls: Arc::new(AtomicU64::new(0)),
            url: Arc::from(url.trim_end_matches('/')),
            redacted: Arc::from(redact_url(url)),
        })
    }

    /// The endpoint, redacted for logs.
    pub fn redacted_url(&self) -> &str {
        &self.redacted
    }

    /// Number of RPC requests sent so far (retries included).
    pub fn requests(&self) -> u64 {
        self.calls.load(Ordering::Relaxed)
    }

    async fn raw<T: serde::de::DeserializeOwned + serde::Serialize + Send + Sync + std::fmt::Debug>(
        &self,
        method: &'static str,
        params: serde_json::Value,
    ) -> Result<T, ChainError> {
        self.calls.fetch_add(1, Ordering::Relaxed);
        let started = Instant::now();
        let r = self.provider.request::<_, T>(method, params).await.map_err(|e| self.redact(classify(e)));
        metrics::histogram!(m::CHAIN_RPC_DURATION_SECONDS, "method" => method).record(started.elapsed().as_secs_f64());
        if let Err(e) = &r {
            metrics::counter!(m::CHAIN_RPC_ERRORS_TOTAL, "method" => method, "kind" => error_kind(e)).increment(1);
        }
        r
    }

    fn redact(&self, e: ChainError) -> ChainError {
        let clean = |s: String| s.replace(&*self.url, &self.redacted);
        match e {
            ChainError::Transport(s) => ChainError::Transport(clean(s)),
            ChainError::RangeTooLarge(s) => ChainError::RangeTooLarge(clean(s)),
            ChainError::Rpc { code, message } => ChainError::Rpc { code, message: clean(message) },
            other => other,
        }
    }

    /// Runs `f` with the retry policy; non-retryable errors return at once.
    pub async fn retrying<T, F, Fut>(&self, what: &'static str, mut f: F) -> Result<T, ChainError>
    where
        F: FnMut() -> Fut,
        Fut: std::future::Future<Output = Result<T, ChainError>>,
    {
        let mut attempt = 0u32;
        loop {
            attempt += 1;
            match f().await {
                Ok(v) => return Ok(v),
                Err(e) if e.is_retryable() => {
                    if self.retry.max_attempts != 0 && attempt >= self.retry.max_attempts {
                        return Err(ChainError::Exhausted { attempts: attempt, last: Box::new(e) });
                    }
                    let d = self.retry.backoff(attempt);
                    tracing::warn!(target: "chain", call = what, attempt, backoff_ms = d.as_millis() as u64, error = %e, "rpc call failed, retrying");
                    metrics::counter!(m::CHAIN_RPC_RETRIES_TOTAL, "method" => what).increment(1);
                    tokio::time::sleep(d).await;
                }
                Err(e) => return Err(e),
            }
        }
    }

    /// `eth_chainId`.
    pub async fn chain_id(&self) -> Result<u64, ChainError> {
        self.retrying("eth_chainId", || async {
            let v: et::U64 = self.raw("eth_chainId", serde_json::json!([])).await?;
            Ok(v.as_u64())
        })
        .await
    }

    /// `eth_blockNumber`.
    pub async fn block_number(&self) -> Result<u64, ChainError> {
        self.retrying("eth_blockNumber", || async {
            let v: et::U64 = self.raw("eth_blockNumber", serde_json::json!([])).await?;
            Ok(v.as_u64())
        })
        .await
    }

    /// Header of block `n`, or `None` when the node has no such block.
    pub async fn header(&self, n: u64) -> Result<Option<Header>, ChainError> {
        self.retrying("eth_getBlockByNumber", || async {
            let v: Option<RpcHeader> = self.raw("eth_getBlockByNumber", serde_json::json!([format!("0x{n:x}"), false])).await?;
            Ok(v.map(|h| Header { number: h.number.as_u64(), hash: B256(h.hash.0), parent_hash: B256(h.parent_hash.0), timestamp: h.timestamp.low_u64() }))
        })
        .await
    }

    /// Logs of `addresses` with one of `topic0s` in blocks `[from, to]`.
    ///
    /// A node's refusal of the range comes back as [`ChainError::RangeTooLarge`] without retry,
    /// so the caller can split it.
    pub async fn logs(&self, addresses: &[Address], topic0s: &[B256], from: u64, to: u64) -> Result<Vec<RawLog>, ChainError> {
        let addrs: Vec<String> = addresses.iter().map(Address::to_hex).collect();
        let topics: Vec<String> = topic0s.iter().map(B256::to_hex).collect();
        let params = serde_json::json!([{
            "address": addrs,
            "topics": [topics],
            "fromBlock": format!("0x{from:x}"),
            "toBlock": format!("0x{to:x}"),
        }]);
        let logs: Vec<RpcLog> = self.retrying("eth_getLogs", || async { self.raw("eth_getLogs", params.clone()).await }).await?;
        let mut out = Vec::with_capacity(logs.len());
        for l in logs {
            if l.removed == Some(true) {
                continue;
            }
            let (Some(bn), Some(bh), Some(tx), Some(li)) = (l.block_number, l.block_hash, l.transaction_hash, l.log_index) else {
                return Err(ChainError::Decode("pending log without block fields".into()));
            };
            out.push(RawLog {
                address: Address(l.address.0),
                topics: l.topics.iter().map(|t| B256(t.0)).collect(),
                data: l.data.to_vec(),
                block_number: bn.as_u64(),
                block_hash: B256(bh.0),
                tx_hash: B256(tx.0),
                log_index: li.low_u64(),
            });
        }
        out.sort_by_key(|l| (l.block_number, l.log_index));
        Ok(out)
    }

    /// `eth_call` of `data` on `to` at `block` (latest when `None`).
    pub async fn call(&self, to: &Address, data: Vec<u8>, block: Option<u64>) -> Result<Vec<u8>, ChainError> {
        let tag = block.map(|b| format!("0x{b:x}")).unwrap_or_else(|| "latest".into());
        let params = serde_json::json!([{ "to": to.to_hex(), "data": format!("0x{}", hex::encode(&data)) }, tag]);
        self.retrying("eth_call", || async {
            let v: et::Bytes = self.raw("eth_call", params.clone()).await?;
            Ok(v.to_vec())
        })
        .await
    }

    /// True when `addr` has code at `block`.
    pub async fn has_code(&self, addr: &Address, block: u64) -> Result<bool, ChainError> {
        let params = serde_json::json!([addr.to_hex(), format!("0x{block:x}")]);
        self.retrying("eth_getCode", || async {
            let v: et::Bytes = self.raw("eth_getCode", params.clone()).await?;
            Ok(!v.is_empty())
        })
        .await
    }

    /// Calls a view with no arguments returning one value of type `ty`.
    pub async fn view(&self, to: &Address, signature: &str, args: &[Token], ty: ParamType, block: Option<u64>) -> Result<Token, ChainError> {
        let mut data = selector(signature).to_vec();
        data.extend_from_slice(&abi::encode(args));
        let ret = self.call(to, data, block).await?;
        let mut toks = abi::decode(&[ty], &ret).map_err(|e| ChainError::Decode(format!("{signature}: {e}")))?;
        toks.pop().ok_or_else(|| ChainError::Decode(format!("{signature}: empty return")))
    }

    /// A `uint256` view.
    pub async fn view_uint(&self, to: &Address, signature: &str, args: &[U256], block: Option<u64>) -> Result<U256, ChainError> {
        let args: Vec<Token> = args.iter().map(|a| Token::Uint(et::U256(a.0))).collect();
        match self.view(to, signature, &args, ParamType::Uint(256), block).await? {
            Token::Uint(v) => Ok(U256(v.0)),
            t => Err(ChainError::Decode(format!("{signature}: got {t:?}"))),
        }
    }

    /// An `address` view.
    pub async fn view_address(&self, to: &Address, signature: &str, block: Option<u64>) -> Result<Address, ChainError> {
        match self.view(to, signature, &[], ParamType::Address, block).await? {
            Token::Address(a) => Ok(Address(a.0)),
            t => Err(ChainError::Decode(format!("{signature}: got {t:?}"))),
        }
    }

    /// A `string` view.
    pub async fn view_string(&self, to: &Address, signature: &str, block: Option<u64>) -> Result<String, ChainError> {
        match self.view(to, signature, &[], ParamType::String, block).await? {
            Token::String(s) => Ok(s),
            t => Err(ChainError::Decode(format!("{signature}: got {t:?}"))),
        }
    }
}

/// The 4-byte selector of a function signature.
pub fn selector(signature: &str) -> [u8; 4] {
    let h = crate::domain::keccak256(signature.as_bytes());
    [h[0], h[1], h[2], h[3]]
}

fn error_kind(e: &ChainError) -> &'static str {
    match e {
        ChainError::Transport(_) => "transport",
        ChainError::RangeTooLarge(_) => "range",
        ChainError::Rpc { .. } => "rpc",
        ChainError::Reverted(_) => "revert",
        ChainError::Decode(_) => "decode",
        ChainError::ChainIdMismatch { .. } => "chain_id",
        ChainError::Exhausted { .. } => "exhausted",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn recognizes_range_refusals() {
        assert!(is_range_refusal("query returned more than 10000 results"));
        assert!(is_range_refusal("block range is too wide"));
        assert!(is_range_refusal("exceed maximum block range: 2000"));
        assert!(is_range_refusal("Log response size exceeded."));
        assert!(!is_range_refusal("execution reverted"));
    }

    #[test]
    fn backoff_grows_with_jitter_and_caps() {
        let p = RetryPolicy { initial: Duration::from_millis(100), max: Duration::from_secs(2), max_attempts: 0 };
        for attempt in 1..20 {
            let d = p.backoff(attempt);
            let cap = (Duration::from_millis(100) * (1 << (attempt - 1).min(16))).min(Duration::from_secs(2));
            assert!(d >= cap / 2 && d <= cap, "attempt {attempt}: {d:?} vs {cap:?}");
        }
    }

    #[tokio::test(start_paused = true)]
    async fn retries_with_exponential_backoff_then_gives_up() {
        use std::sync::atomic::AtomicU32;
        let policy = RetryPolicy { initial: Duration::from_millis(100), max: Duration::from_secs(1), max_attempts: 4 };
        let c = RpcClient::new("http://127.0.0.1:1", Duration::from_secs(1), policy).unwrap();
        let attempts = AtomicU32::new(0);
        let start = tokio::time::Instant::now();
        let r: Result<(), _> = c
            .retrying("test", || async {
                attempts.fetch_add(1, Ordering::Relaxed);
                Err(ChainError::Transport("down".into()))
            })
            .await;
        assert!(matches!(r, Err(ChainError::Exhausted { attempts: 4, .. })), "{r:?}");
        assert_eq!(attempts.load(Ordering::Relaxed), 4);
        // Three backoffs of 100, 200 and 400 ms, each jittered into [d/2, d].
        let waited = start.elapsed();
        assert!(waited >= Duration::from_millis(350) && waited <= Duration::from_millis(700), "{waited:?}");

        // A transient failure then success; a non-retryable error returns at once.
        let n = AtomicU32::new(0);
        let r = c
            .retrying("test", || async {
                if n.fetch_add(1, Ordering::Relaxed) < 2 {
                    Err(ChainError::Rpc { code: -32603, message: "internal".into() })
                } else {
                    Ok(7)
                }
            })
            .await;
        assert_eq!(r.unwrap(), 7);
        let m = AtomicU32::new(0);
        let r: Result<(), _> = c
            .retrying("test", || async {
                m.fetch_add(1, Ordering::Relaxed);
                Err(ChainError::Reverted("no".into()))
            })
            .await;
        assert!(matches!(r, Err(ChainError::Reverted(_))));
        assert_eq!(m.load(Ordering::Relaxed), 1);
    }

    #[test]
    fn urls_are_redacted() {
        assert_eq!(redact_url("https://mainnet.example/v3/SECRETKEY"), "https://mainnet.example/***");
        assert_eq!(redact_url("https://user:pw@node.example:8545"), "https://node.example:8545/***");
        assert_eq!(redact_url("http://127.0.0.1:8545"), "http://127.0.0.1:8545");
        let c = RpcClient::new("http://127.0.0.1:1/key123", Duration::from_secs(1), RetryPolicy::default()).unwrap();
        let e = c.redact(ChainError::Transport("error sending request for url (http://127.0.0.1:1/key123)".into()));
        assert!(!e.to_string().contains("key123"), "{e}");
    }

    #[test]
    fn selectors() {
        assert_eq!(hex::encode(selector("token()")), "fc0c546a");
        assert_eq!(hex::encode(selector("state(uint256)")), "3e4f49e6");
    }
}
