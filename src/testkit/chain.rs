//! A JSON-RPC handle on a development node (anvil): raw requests, anvil's test methods
//! (`anvil_mine`, `evm_increaseTime`, `evm_snapshot`, `evm_revert`, automine, balances),
//! transactions signed here and waited for with readable revert errors, deployments of the
//! embedded artifacts and read-only calls.

use std::fmt;
use std::sync::Arc;
use std::time::{Duration, Instant};

use ethers::abi::{Detokenize, Token, Tokenize};
use ethers::contract::BaseContract;
use ethers::middleware::SignerMiddleware;
use ethers::providers::{Http, Middleware, MiddlewareError, Provider};
use ethers::signers::{LocalWallet, Signer};
use ethers::types::transaction::eip2718::TypedTransaction;
use ethers::types::{Address, BlockId, BlockNumber, Bytes, Eip1559TransactionRequest, Log, TransactionReceipt, H256, U256, U64};
use serde::de::DeserializeOwned;
use serde::Serialize;
use serde_json::{json, Value};

use super::artifacts::{self, decode_revert, function_name};
use super::TestkitError;

/// How long a sent transaction may take to be mined (automine mines at once).
pub const RECEIPT_TIMEOUT: Duration = Duration::from_secs(30);

/// An ethers client that signs with one wallet.
pub type SignerClient = SignerMiddleware<Provider<Http>, LocalWallet>;

/// A mined transaction: the fields callers usually want, plus the full receipt.
#[derive(Debug, Clone)]
pub struct Receipt {
    /// Transaction hash.
    pub tx_hash: H256,
    /// Block it was mined in.
    pub block_number: u64,
    /// That block's hash.
    pub block_hash: H256,
    /// Position of the transaction in its block.
    pub tx_index: u64,
    /// Sender.
    pub from: Address,
    /// Recipient (`None` for a deployment).
    pub to: Option<Address>,
    /// Gas used.
    pub gas_used: U256,
    /// The logs it emitted.
    pub logs: Vec<Log>,
    /// The node's receipt.
    pub raw: TransactionReceipt,
}

impl Receipt {
    /// `None` while the receipt has no block (not mined yet).
    fn from_raw(raw: TransactionReceipt) -> Option<Receipt> {
        Some(Receipt {
            tx_hash: raw.transaction_hash,
            block_number: raw.block_number?.as_u64(),
            block_hash: raw.block_hash?,
            tx_index: raw.transaction_index.as_u64(),
            from: raw.from,
            to: raw.to,
            gas_used: raw.gas_used.unwrap_or_default(),
            logs: raw.logs.clone(),
            raw,
        })
    }
}

/// A transaction that failed: rejected at gas estimation (revert), mined with status 0, refused
/// by the node or never mined.
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

/// Cloneable JSON-RPC handle on a development chain with anvil's test methods.
#[derive(Clone)]
pub struct DevChain {
    provider: Provider<Http>,
    url: String,
    chain_id: u64,
}

impl fmt::Debug for DevChain {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("DevChain").field("url", &self.url).field("chain_id", &self.chain_id).finish()
    }
}

fn rpc_error(method: &str, e: impl fmt::Display) -> TestkitError {
    TestkitError::Rpc { method: method.to_owned(), message: e.to_string() }
}

impl DevChain {
    /// Connects to `url` and reads its chain id.
    pub async fn connect(url: &str) -> Result<DevChain, TestkitError> {
        let mut chain = DevChain::with_chain_id(url, 0)?;
        let id: U64 = chain.request("eth_chainId", ()).await?;
        chain.chain_id = id.as_u64();
        Ok(chain)
    }

    /// A handle on `url` for chain `chain_id`, without any request.
    pub fn with_chain_id(url: &str, chain_id: u64) -> Result<DevChain, TestkitError> {
        let provider =
            Provider::<Http>::try_from(url).map_err(|e| rpc_error("connect", format!("bad RPC url {url}: {e}")))?.interval(Duration::from_millis(10));
        Ok(DevChain { provider, url: url.to_owned(), chain_id })
    }

    /// The JSON-RPC URL.
    pub fn url(&self) -> &str {
        &self.url
    }

    /// The chain id.
    pub fn chain_id(&self) -> u64 {
        self.chain_id
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

    /// A raw JSON-RPC request.
    pub async fn request<P, R>(&self, method: &str, params: P) -> Result<R, TestkitError>
    where
        P: Serialize + fmt::Debug + Send + Sync,
        R: Serialize + DeserializeOwned + fmt::Debug + Send,
    {
        self.provider.request(method, params).await.map_err(|e| rpc_error(method, e))
    }

    /// `eth_blockNumber`.
    pub async fn block_number(&self) -> Result<u64, TestkitError> {
        let n: U64 = self.request("eth_blockNumber", ()).await?;
        Ok(n.as_u64())
    }

    /// Block `number` as raw JSON (`None` if it does not exist). Raw so that fields newer than
    /// ethers 2 knows about never get in the way.
    pub async fn block_json(&self, number: u64) -> Result<Option<Value>, TestkitError> {
        let v: Value = self.request("eth_getBlockByNumber", json!([format!("0x{number:x}"), false])).await?;
        Ok((!v.is_null()).then_some(v))
    }

    async fn existing_block(&self, number: u64) -> Result<Value, TestkitError> {
        self.block_json(number).await?.ok_or_else(|| rpc_error("eth_getBlockByNumber", format!("block {number} does not exist")))
    }

    /// Timestamp of block `number`.
    pub async fn block_timestamp(&self, number: u64) -> Result<u64, TestkitError> {
        quantity(&self.existing_block(number).await?, "timestamp")
    }

    /// Hash of block `number`.
    pub async fn block_hash(&self, number: u64) -> Result<H256, TestkitError> {
        let b = self.existing_block(number).await?;
        serde_json::from_value(b["hash"].clone()).map_err(|e| rpc_error("eth_getBlockByNumber", format!("block hash in {b}: {e}")))
    }

    /// (number, timestamp) of the latest block.
    pub async fn latest(&self) -> Result<(u64, u64), TestkitError> {
        let b: Value = self.request("eth_getBlockByNumber", json!(["latest", false])).await?;
        Ok((quantity(&b, "number")?, quantity(&b, "timestamp")?))
    }

    /// Timestamp of the latest block.
    pub async fn latest_timestamp(&self) -> Result<u64, TestkitError> {
        Ok(self.latest().await?.1)
    }

    /// Mines `n` blocks at once (`anvil_mine`); returns the new head.
    pub async fn mine(&self, n: u64) -> Result<u64, TestkitError> {
        if n > 0 {
            let _: Value = self.request("anvil_mine", json!([format!("0x{n:x}")])).await?;
        }
        self.block_number().await
    }

    /// Mines until the head is at least `number`; returns the head.
    pub async fn mine_to(&self, number: u64) -> Result<u64, TestkitError> {
        let head = self.block_number().await?;
        if head < number {
            self.mine(number - head).await
        } else {
            Ok(head)
        }
    }

    /// Moves time forward by `secs` (`evm_increaseTime`) and mines a block carrying it;
    /// returns that block's timestamp.
    pub async fn increase_time(&self, secs: u64) -> Result<u64, TestkitError> {
        let _: Value = self.request("evm_increaseTime", json!([secs])).await?;
        let _: Value = self.request("evm_mine", ()).await?;
        self.latest_timestamp().await
    }

    /// The next mined block gets exactly this timestamp (`evm_setNextBlockTimestamp`).
    pub async fn set_next_block_timestamp(&self, ts: u64) -> Result<(), TestkitError> {
        let _: Value = self.request("evm_setNextBlockTimestamp", json!([ts])).await?;
        Ok(())
    }

    /// Mines one block whose timestamp is exactly `ts` (after the latest block's); returns the
    /// head.
    pub async fn mine_at(&self, ts: u64) -> Result<u64, TestkitError> {
        self.set_next_block_timestamp(ts).await?;
        let _: Value = self.request("evm_mine", ()).await?;
        self.block_number().await
    }

    /// Mines one block with a timestamp of at least `ts` if the latest block is older; returns
    /// the latest block's timestamp afterwards.
    pub async fn advance_time_to(&self, ts: u64) -> Result<u64, TestkitError> {
        let now = self.latest_timestamp().await?;
        if now < ts {
            self.mine_at(ts).await?;
            self.latest_timestamp().await
        } else {
            Ok(now)
        }
    }

    /// `evm_snapshot`: the snapshot id.
    pub async fn snapshot(&self) -> Result<U256, TestkitError> {
        self.request("evm_snapshot", ()).await
    }

    /// `evm_revert`: back to the state of snapshot `id`, dropping the blocks mined since (the
    /// next blocks get the same numbers and other hashes: a reorg). True if reverted. Anvil
    /// consumes the snapshot and every later one (an id it has dropped is an error).
    pub async fn revert(&self, id: U256) -> Result<bool, TestkitError> {
        self.request("evm_revert", json!([id])).await
    }

    /// `evm_setAutomine`. With automine off, transactions wait in the pool until [`DevChain::mine`];
    /// use [`DevChain::submit`] + [`DevChain::mine`] + [`DevChain::wait_receipt`] then.
    pub async fn set_automine(&self, on: bool) -> Result<(), TestkitError> {
        let _: Value = self.request("evm_setAutomine", json!([on])).await?;
        Ok(())
    }

    /// `anvil_getAutomine`.
    pub async fn automine(&self) -> Result<bool, TestkitError> {
        self.request("anvil_getAutomine", ()).await
    }

    /// `anvil_setBalance`.
    pub async fn set_balance(&self, who: Address, wei: U256) -> Result<(), TestkitError> {
        let _: Value = self.request("anvil_setBalance", json!([who, wei])).await?;
        Ok(())
    }

    /// `n` new random wallets for this chain, each given 100 ether.
    pub async fn funded_wallets(&self, n: usize) -> Result<Vec<LocalWallet>, TestkitError> {
        let wallets: Vec<LocalWallet> = (0..n).map(|_| LocalWallet::new(&mut rand::thread_rng()).with_chain_id(self.chain_id)).collect();
        for w in &wallets {
            self.set_balance(w.address(), U256::exp10(20)).await?;
        }
        Ok(wallets)
    }

    /// `eth_getBalance` at latest.
    pub async fn balance(&self, who: Address) -> Result<U256, TestkitError> {
        self.provider.get_balance(who, None).await.map_err(|e| rpc_error("eth_getBalance", e))
    }

    // ----- transactions ----------------------------------------------------------------------

    /// Signs and sends `data` to `to` from `from`, waits until it is mined and returns the
    /// receipt; a revert (at gas estimation or on chain) is a [`TxError`] with the decoded reason.
    pub async fn send(&self, from: &LocalWallet, to: Address, data: Bytes) -> Result<Receipt, TestkitError> {
        self.send_with_value(from, to, data, U256::zero()).await
    }

    /// [`DevChain::send`] with ETH attached.
    pub async fn send_with_value(&self, from: &LocalWallet, to: Address, data: Bytes, value: U256) -> Result<Receipt, TestkitError> {
        let action = describe(Some(to), &data, from.address());
        let hash = self.submit_tx(from, Some(to), data, value, &action).await?;
        self.finish(hash, action).await
    }

    /// Sends without waiting for it to be mined (for automine-off scenarios); returns the hash.
    /// Gas is estimated against the current state, so a call that would revert now is an error.
    pub async fn submit(&self, from: &LocalWallet, to: Address, data: Bytes) -> Result<H256, TestkitError> {
        let action = describe(Some(to), &data, from.address());
        self.submit_tx(from, Some(to), data, U256::zero(), &action).await
    }

    /// Deploys artifact `name` with constructor arguments `args`; returns its address and receipt.
    pub async fn deploy(&self, from: &LocalWallet, name: &str, args: &[Token]) -> Result<(Address, Receipt), TestkitError> {
        let art = artifacts::artifact(name)?;
        let bad = |message: String| TestkitError::Artifact { name: name.to_owned(), message };
        let data = match art.abi.constructor() {
            Some(c) => c.encode_input(art.bytecode.to_vec(), args).map_err(|e| bad(format!("constructor arguments: {e}")))?,
            None if args.is_empty() => art.bytecode.to_vec(),
            None => return Err(bad("no constructor, but arguments were given".into())),
        };
        let action = format!("deploy {name} from {:?}", from.address());
        let hash = self.submit_tx(from, None, data.into(), U256::zero(), &action).await?;
        let receipt = self.finish(hash, action.clone()).await?;
        let address = receipt.raw.contract_address.ok_or_else(|| TxError {
            action,
            revert_data: None,
            reason: "the receipt has no contract address".into(),
            receipt: None,
        })?;
        Ok((address, receipt))
    }

    async fn submit_tx(&self, from: &LocalWallet, to: Option<Address>, data: Bytes, value: U256, action: &str) -> Result<H256, TestkitError> {
        let client = self.signer(from);
        // The "pending" nonce, so that several transactions can wait in the pool with automine
        // off (ethers would use the "latest" count).
        let nonce = self
            .provider
            .get_transaction_count(from.address(), Some(BlockId::Number(BlockNumber::Pending)))
            .await
            .map_err(|e| rpc_error("eth_getTransactionCount", e))?;
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
                Err(TxError { action: action.to_owned(), revert_data, reason, receipt: None }.into())
            }
        }
    }

    async fn finish(&self, hash: H256, action: String) -> Result<Receipt, TestkitError> {
        let receipt = self.wait_receipt(hash).await?;
        if receipt.raw.status == Some(1u64.into()) {
            Ok(receipt)
        } else {
            Err(TxError { action, revert_data: None, reason: "status 0 (reverted on chain)".to_owned(), receipt: Some(Box::new(receipt)) }.into())
        }
    }

    /// The receipt of `hash` if it has been mined.
    pub async fn receipt(&self, hash: H256) -> Result<Option<Receipt>, TestkitError> {
        let raw = self.provider.get_transaction_receipt(hash).await.map_err(|e| rpc_error("eth_getTransactionReceipt", format!("{hash:?}: {e}")))?;
        Ok(raw.and_then(Receipt::from_raw))
    }

    /// Polls until `hash` is mined; an error after [`RECEIPT_TIMEOUT`] (is automine off?).
    pub async fn wait_receipt(&self, hash: H256) -> Result<Receipt, TestkitError> {
        let start = Instant::now();
        loop {
            if let Some(r) = self.receipt(hash).await? {
                return Ok(r);
            }
            if start.elapsed() > RECEIPT_TIMEOUT {
                let automine = match self.automine().await {
                    Ok(true) => "on",
                    Ok(false) => "off",
                    Err(_) => "unknown",
                };
                return Err(TxError {
                    action: format!("{hash:?}"),
                    revert_data: None,
                    reason: format!("not mined after {RECEIPT_TIMEOUT:?}; automine is {automine} (with automine off, call mine() first)"),
                    receipt: None,
                }
                .into());
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }

    // ----- calls -----------------------------------------------------------------------------

    /// `eth_call` of `method(args)` on `to` (ABI `abi`) at `block` (latest if `None`); the error
    /// carries the decoded revert reason or the node's error.
    pub async fn call<T: Tokenize, D: Detokenize>(
        &self,
        abi: &BaseContract,
        to: Address,
        method: &str,
        args: T,
        block: Option<u64>,
    ) -> Result<D, TestkitError> {
        let at = block.map_or("latest".to_owned(), |n| format!("block {n}"));
        let fail = |message: String| TestkitError::Call { method: method.to_owned(), to, at: at.clone(), message };
        let data = abi.encode(method, args).map_err(|e| fail(format!("cannot encode: {e}")))?;
        let tx: TypedTransaction = Eip1559TransactionRequest::new().to(to).data(data).into();
        let block = block.map(|n| BlockId::Number(BlockNumber::Number(n.into())));
        match self.provider.call(&tx, block).await {
            Ok(out) => abi.decode_output(method, out).map_err(|e| fail(format!("cannot decode the output: {e}"))),
            Err(e) => Err(fail(match e.as_error_response().and_then(|r| r.as_revert_data()) {
                Some(d) => decode_revert(&d),
                None => e.to_string(),
            })),
        }
    }
}

/// `setValue(uint256) on 0x… from 0x…`: what a transaction does, for error messages.
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

fn quantity(block: &Value, field: &str) -> Result<u64, TestkitError> {
    block[field]
        .as_str()
        .and_then(|s| u64::from_str_radix(s.trim_start_matches("0x"), 16).ok())
        .ok_or_else(|| rpc_error("eth_getBlockByNumber", format!("no hex {field} in {block}")))
}
