//! A handle on a running dev chain's JSON-RPC: raw anvil/evm helpers, transaction sending with
//! readable revert errors, contract deployment and read-only calls.

use std::fmt;
use std::sync::Arc;
use std::time::{Duration, Instant};

use ethers::abi::{Detokenize, Token, Tokenize};
use ethers::contract::BaseContract;
use ethers::middleware::SignerMiddleware;
use ethers::providers::{Http, Middleware, MiddlewareError, Provider, ProviderError};
use ethers::signers::{LocalWallet, Signer};
use ethers::types::{Address, BlockId, BlockNumber, Bytes, Eip1559TransactionRequest, Log, TransactionReceipt, H256, U256};
use serde::de::DeserializeOwned;
use serde::Serialize;
use serde_json::{json, Value};

use super::artifacts::{self, decode_revert, function_name};

/// How long to wait for a transaction to be mined before giving up.
pub const RECEIPT_TIMEOUT: Duration = Duration::from_secs(30);

pub type SignerClient = SignerMiddleware<Provider<Http>, LocalWallet>;

/// A mined transaction: the fields tests usually want, plus the full receipt.
#[derive(Debug, Clone)]
pub struct Receipt {
    pub tx_hash: H256,
    pub block_number: u64,
    pub block_hash: H256,
    /// Position of the transaction in its block.
    pub tx_index: u64,
    pub from: Address,
    pub to: Option<Address>,
    pub gas_used: U256,
    pub logs: Vec<Log>,
    pub raw: TransactionReceipt,
}

impl Receipt {
    fn from_raw(raw: TransactionReceipt) -> Receipt {
        Receipt {
            tx_hash: raw.transaction_hash,
            block_number: raw.block_number.expect("mined receipt has a block number").as_u64(),
            block_hash: raw.block_hash.expect("mined receipt has a block hash"),
            tx_index: raw.transaction_index.as_u64(),
            from: raw.from,
            to: raw.to,
            gas_used: raw.gas_used.unwrap_or_default(),
            logs: raw.logs.clone(),
            raw,
        }
    }
}

/// A transaction that failed: rejected at gas estimation (revert), mined with status 0, or
/// refused by the node.
#[derive(Debug, Clone)]
pub struct TxError {
    /// e.g. `castVote(uint256,uint8) on 0x… from 0x…`
    pub action: String,
    /// Revert data, when the node returned some (empty for a bare `revert()`).
    pub revert_data: Option<Bytes>,
    /// Decoded reason (`GovernorUnexpectedProposalState(…)`, `Error("…")`) or the node's message.
    pub reason: String,
    /// Set when the transaction was mined and reverted on chain.
    pub receipt: Option<Box<Receipt>>,
}

impl TxError {
    /// True if this is a revert whose decoded reason starts with `name` (e.g.
    /// `"GovernorAlreadyCastVote"`).
    pub fn is_revert_named(&self, name: &str) -> bool {
        self.revert_data.is_some() && self.reason.starts_with(name)
    }
}

impl fmt::Display for TxError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match (&self.revert_data, &self.receipt) {
            (_, Some(r)) => write!(f, "transaction {} reverted on chain (tx {:?}, block {}): {}", self.action, r.tx_hash, r.block_number, self.reason),
            (Some(_), None) => write!(f, "transaction {} reverted: {}", self.action, self.reason),
            (None, None) => write!(f, "transaction {} failed: {}", self.action, self.reason),
        }
    }
}

impl std::error::Error for TxError {}

/// Cloneable JSON-RPC handle on the dev chain. [`super::Anvil`] derefs to it, and every
/// [`super::Dao`] carries one.
#[derive(Clone, Debug)]
pub struct Chain {
    provider: Provider<Http>,
    url: String,
    /// The chain id (31337 unless configured otherwise).
    pub chain_id: u64,
}

impl Chain {
    /// Connects to a JSON-RPC endpoint (no request is made).
    pub fn connect(url: &str, chain_id: u64) -> Chain {
        let provider = Provider::<Http>::try_from(url).unwrap_or_else(|e| panic!("bad RPC url {url}: {e}")).interval(Duration::from_millis(10));
        Chain { provider, url: url.to_owned(), chain_id }
    }

    pub fn rpc_url(&self) -> String {
        self.url.clone()
    }

    /// The ethers provider (polling interval 10 ms).
    pub fn provider(&self) -> &Provider<Http> {
        &self.provider
    }

    /// An ethers signing client for `wallet` (its chain id is set to this chain's).
    pub fn signer(&self, wallet: &LocalWallet) -> Arc<SignerClient> {
        Arc::new(SignerMiddleware::new(self.provider.clone(), wallet.clone().with_chain_id(self.chain_id)))
    }

    // ----- raw RPC ---------------------------------------------------------------------------

    /// Raw JSON-RPC request; `Err` carries the node's error.
    pub async fn try_request<P, R>(&self, method: &str, params: P) -> Result<R, ProviderError>
    where
        P: Serialize + fmt::Debug + Send + Sync,
        R: Serialize + DeserializeOwned + fmt::Debug + Send,
    {
        self.provider.request(method, params).await
    }

    /// Raw JSON-RPC request that panics (naming the method) on error.
    pub async fn request<P, R>(&self, method: &str, params: P) -> R
    where
        P: Serialize + fmt::Debug + Send + Sync,
        R: Serialize + DeserializeOwned + fmt::Debug + Send,
    {
        let shown = format!("{params:?}");
        match self.try_request(method, params).await {
            Ok(r) => r,
            Err(e) => panic!("RPC {method}({shown}) failed: {e}"),
        }
    }

    /// `eth_blockNumber`.
    pub async fn block_number(&self) -> u64 {
        let n: ethers::types::U64 = self.request("eth_blockNumber", ()).await;
        n.as_u64()
    }

    /// The block as raw JSON (`None` if it does not exist). Raw so that fields newer than
    /// ethers 2 knows about never get in the way.
    pub async fn block_json(&self, number: u64) -> Option<Value> {
        let v: Value = self.request("eth_getBlockByNumber", json!([format!("0x{number:x}"), false])).await;
        (!v.is_null()).then_some(v)
    }

    /// Timestamp of block `number`.
    pub async fn block_timestamp(&self, number: u64) -> u64 {
        let b = self.block_json(number).await.unwrap_or_else(|| panic!("block {number} does not exist"));
        parse_quantity(&b["timestamp"])
    }

    /// Hash of block `number`.
    pub async fn block_hash(&self, number: u64) -> H256 {
        let b = self.block_json(number).await.unwrap_or_else(|| panic!("block {number} does not exist"));
        serde_json::from_value(b["hash"].clone()).expect("block hash")
    }

    /// (number, timestamp) of the latest block.
    pub async fn latest(&self) -> (u64, u64) {
        let b: Value = self.request("eth_getBlockByNumber", json!(["latest", false])).await;
        (parse_quantity(&b["number"]), parse_quantity(&b["timestamp"]))
    }

    /// Timestamp of the latest block.
    pub async fn latest_timestamp(&self) -> u64 {
        self.latest().await.1
    }

    /// Mines `n` blocks at once (`anvil_mine`). Returns the new latest block number.
    pub async fn mine(&self, n: u64) -> u64 {
        if n > 0 {
            let _: Value = self.request("anvil_mine", json!([format!("0x{n:x}")])).await;
        }
        self.block_number().await
    }

    /// Moves time forward by `secs` (`evm_increaseTime`) and mines one block so the latest
    /// block carries the new time. Returns the new latest block's timestamp.
    pub async fn increase_time(&self, secs: u64) -> u64 {
        let _: Value = self.request("evm_increaseTime", json!([secs])).await;
        let _: Value = self.request("evm_mine", ()).await;
        self.latest_timestamp().await
    }

    /// The next mined block gets exactly this timestamp (`evm_setNextBlockTimestamp`).
    pub async fn set_next_block_timestamp(&self, ts: u64) {
        let _: Value = self.request("evm_setNextBlockTimestamp", json!([ts])).await;
    }

    /// Mines one block whose timestamp is exactly `ts` (must be after the latest block's).
    pub async fn mine_at(&self, ts: u64) -> u64 {
        self.set_next_block_timestamp(ts).await;
        let _: Value = self.request("evm_mine", ()).await;
        self.block_number().await
    }

    /// Mines blocks until the latest block number is at least `number`.
    pub async fn mine_to(&self, number: u64) -> u64 {
        let now = self.block_number().await;
        if now < number {
            self.mine(number - now).await
        } else {
            now
        }
    }

    /// Mines one block with a timestamp of at least `ts` if the latest block is older.
    /// Returns the latest block's timestamp afterwards.
    pub async fn advance_time_to(&self, ts: u64) -> u64 {
        let now = self.latest_timestamp().await;
        if now < ts {
            self.mine_at(ts).await;
            self.latest_timestamp().await
        } else {
            now
        }
    }

    /// `evm_snapshot`: returns the snapshot id.
    pub async fn snapshot(&self) -> U256 {
        self.request("evm_snapshot", ()).await
    }

    /// `evm_revert`: back to the state of snapshot `id`. Returns whether it was reverted.
    /// Anvil consumes the snapshot (and every later one): to go back again, take a new one.
    pub async fn revert(&self, id: U256) -> bool {
        // anvil answers "Resource not found" for an id it has dropped: report that as false.
        self.try_request::<_, bool>("evm_revert", json!([id])).await.unwrap_or_default()
    }

    /// `evm_setAutomine`. With automine off, transactions wait in the pool until [`Chain::mine`];
    /// use [`Chain::submit`] + [`Chain::mine`] + [`Chain::wait_receipt`] then.
    pub async fn set_automine(&self, on: bool) {
        let _: Value = self.request("evm_setAutomine", json!([on])).await;
    }

    /// `anvil_getAutomine`.
    pub async fn automine(&self) -> bool {
        self.request("anvil_getAutomine", ()).await
    }

    /// `anvil_setBalance`.
    pub async fn set_balance(&self, who: Address, wei: U256) {
        let _: Value = self.request("anvil_setBalance", json!([who, wei])).await;
    }

    /// `n` new random wallets for this chain, each given 100 ether.
    pub async fn funded_wallets(&self, n: usize) -> Vec<LocalWallet> {
        let wallets: Vec<LocalWallet> = (0..n).map(|_| LocalWallet::new(&mut rand::thread_rng()).with_chain_id(self.chain_id)).collect();
        for w in &wallets {
            self.set_balance(w.address(), U256::exp10(20)).await;
        }
        wallets
    }

    /// `eth_getBalance` at latest.
    pub async fn balance(&self, who: Address) -> U256 {
        self.provider.get_balance(who, None).await.expect("eth_getBalance")
    }

    // ----- transactions ----------------------------------------------------------------------

    /// Signs and sends `data` to `to` from `from`, waits for it to be mined and returns the
    /// receipt; a revert (at gas estimation or on chain) is an `Err` with the decoded reason.
    pub async fn send(&self, from: &LocalWallet, to: Address, data: Bytes) -> Result<Receipt, TxError> {
        self.send_with_value(from, to, data, U256::zero()).await
    }

    /// [`Chain::send`] with ETH attached.
    pub async fn send_with_value(&self, from: &LocalWallet, to: Address, data: Bytes, value: U256) -> Result<Receipt, TxError> {
        let action = describe(Some(to), &data, from.address());
        let hash = self.submit_tx(from, Some(to), data, value, &action).await?;
        self.finish(hash, action).await
    }

    /// Sends without waiting for it to be mined (for automine-off scenarios); returns the hash.
    /// Gas is estimated against the current state, so a call that would revert now is an `Err`.
    pub async fn submit(&self, from: &LocalWallet, to: Address, data: Bytes) -> Result<H256, TxError> {
        let action = describe(Some(to), &data, from.address());
        self.submit_tx(from, Some(to), data, U256::zero(), &action).await
    }

    async fn submit_tx(&self, from: &LocalWallet, to: Option<Address>, data: Bytes, value: U256, action: &str) -> Result<H256, TxError> {
        let client = self.signer(from);
        // The "pending" nonce, so several transactions can wait in the pool with automine off
        // (ethers would use the "latest" count).
        let nonce = self
            .provider
            .get_transaction_count(from.address(), Some(BlockId::Number(BlockNumber::Pending)))
            .await
            .unwrap_or_else(|e| panic!("eth_getTransactionCount: {e}"));
        let mut tx = Eip1559TransactionRequest::new().from(from.address()).data(data).value(value).nonce(nonce);
        if let Some(to) = to {
            tx = tx.to(to);
        }
        let sent = client.send_transaction(tx, None).await.map(|pending| pending.tx_hash());
        match sent {
            Ok(hash) => Ok(hash),
            Err(e) => {
                let revert_data = e.as_error_response().and_then(|r| r.as_revert_data());
                let reason = match &revert_data {
                    Some(d) => decode_revert(d),
                    None => e.to_string(),
                };
                Err(TxError { action: action.to_owned(), revert_data, reason, receipt: None })
            }
        }
    }

    async fn finish(&self, hash: H256, action: String) -> Result<Receipt, TxError> {
        let receipt = self.wait_receipt(hash).await;
        if receipt.raw.status == Some(1u64.into()) {
            Ok(receipt)
        } else {
            Err(TxError { action, revert_data: None, reason: "status 0 (reverted on chain)".to_owned(), receipt: Some(Box::new(receipt)) })
        }
    }

    /// The receipt of `hash` if it has been mined.
    pub async fn receipt(&self, hash: H256) -> Option<Receipt> {
        self.provider
            .get_transaction_receipt(hash)
            .await
            .unwrap_or_else(|e| panic!("eth_getTransactionReceipt({hash:?}): {e}"))
            .filter(|r| r.block_number.is_some())
            .map(Receipt::from_raw)
    }

    /// Polls until `hash` is mined. Panics after [`RECEIPT_TIMEOUT`] (is automine off?).
    pub async fn wait_receipt(&self, hash: H256) -> Receipt {
        let start = Instant::now();
        loop {
            if let Some(r) = self.receipt(hash).await {
                return r;
            }
            if start.elapsed() > RECEIPT_TIMEOUT {
                panic!(
                    "transaction {hash:?} not mined after {RECEIPT_TIMEOUT:?}; automine is {} \
                     (with automine off, call mine() first)",
                    if self.automine().await { "on" } else { "off" }
                );
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }

    /// Deploys artifact `name` with constructor `args` from `from`. Returns the address and
    /// the deployment receipt.
    pub async fn deploy(&self, from: &LocalWallet, name: &str, args: &[Token]) -> Result<(Address, Receipt), TxError> {
        let art = artifacts::artifact(name);
        let data = match art.abi.constructor() {
            Some(c) => c.encode_input(art.bytecode.to_vec(), args).unwrap_or_else(|e| panic!("bad constructor arguments for {name}: {e}")),
            None => {
                assert!(args.is_empty(), "{name} has no constructor but got arguments");
                art.bytecode.to_vec()
            }
        };
        let action = format!("deploy {name} from {:?}", from.address());
        let hash = self.submit_tx(from, None, data.into(), U256::zero(), &action).await?;
        let receipt = self.finish(hash, action).await?;
        let addr = receipt.raw.contract_address.expect("deployment receipt has a contract address");
        Ok((addr, receipt))
    }

    // ----- calls -----------------------------------------------------------------------------

    /// `eth_call` of `method(args)` on `to` (ABI `abi`) at `block` (latest if `None`).
    /// `Err` carries the decoded revert reason or the node's error.
    pub async fn try_call<T: Tokenize, D: Detokenize>(&self, abi: &BaseContract, to: Address, method: &str, args: T, block: Option<u64>) -> Result<D, String> {
        let data = abi.encode(method, args).unwrap_or_else(|e| panic!("cannot encode {method}: {e}"));
        let tx: ethers::types::transaction::eip2718::TypedTransaction = Eip1559TransactionRequest::new().to(to).data(data).into();
        let block = block.map(|n| BlockId::Number(BlockNumber::Number(n.into())));
        match self.provider.call(&tx, block).await {
            Ok(out) => abi.decode_output(method, out).map_err(|e| format!("cannot decode {method} output: {e}")),
            Err(e) => Err(match e.as_error_response().and_then(|r| r.as_revert_data()) {
                Some(d) => decode_revert(&d),
                None => e.to_string(),
            }),
        }
    }

    /// [`Chain::try_call`] that panics with the method, address, block and reason.
    pub async fn call<T: Tokenize, D: Detokenize>(&self, abi: &BaseContract, to: Address, method: &str, args: T, block: Option<u64>) -> D {
        match self.try_call(abi, to, method, args, block).await {
            Ok(d) => d,
            Err(e) => panic!("eth_call {method} on {to:?} at {} failed: {e}", block.map_or("latest".to_owned(), |n| format!("block {n}"))),
        }
    }
}

fn describe(to: Option<Address>, data: &[u8], from: Address) -> String {
    let f = function_name(data).unwrap_or_else(|| match data.get(..4) {
        Some(sel) => format!("0x{}", hex::encode(sel)),
        None => "(no calldata)".to_owned(),
    });
    match to {
        Some(to) => format!("{f} on {to:?} from {from:?}"),
        None => format!("contract creation from {from:?}"),
    }
}

fn parse_quantity(v: &Value) -> u64 {
    let s = v.as_str().unwrap_or_else(|| panic!("expected a hex quantity, got {v}"));
    u64::from_str_radix(s.trim_start_matches("0x"), 16).unwrap_or_else(|e| panic!("bad quantity {s}: {e}"))
}
