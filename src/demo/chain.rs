//! A JSON-RPC handle on a development node (anvil): transactions sent one at a time and waited
//! for, read-only calls, and anvil's test methods (`anvil_mine`, `evm_increaseTime`,
//! `anvil_setBalance`, `evm_snapshot`, `evm_revert`).

use std::fmt;
use std::time::{Duration, Instant};

use ethers::abi::{Detokenize, Token, Tokenize};
use ethers::contract::BaseContract;
use ethers::middleware::SignerMiddleware;
use ethers::providers::{Http, Middleware, MiddlewareError, Provider};
use ethers::signers::{LocalWallet, Signer};
use ethers::types::transaction::eip2718::TypedTransaction;
use ethers::types::{Address, BlockId, BlockNumber, Bytes, Eip1559TransactionRequest, TransactionReceipt, H256, U256, U64};
use serde::de::DeserializeOwned;
use serde::Serialize;
use serde_json::{json, Value};

use super::artifacts::{self, decode_revert, function_name};
use super::DemoError;

/// How long a sent transaction may take to be mined (automine mines at once).
const RECEIPT_TIMEOUT: Duration = Duration::from_secs(30);

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

impl DevChain {
    /// Connects to `url` and reads its chain id.
    pub async fn connect(url: &str) -> Result<DevChain, DemoError> {
        let mut chain = DevChain::with_chain_id(url, 0)?;
        let id: U64 = chain.request("eth_chainId", ()).await?;
        chain.chain_id = id.as_u64();
        Ok(chain)
    }

    /// A handle on `url` for chain `chain_id`, without any request.
    pub fn with_chain_id(url: &str, chain_id: u64) -> Result<DevChain, DemoError> {
        let provider = Provider::<Http>::try_from(url)
            .map_err(|e| DemoError::Rpc { method: "connect".into(), message: format!("bad RPC url {url}: {e}") })?
            .interval(Duration::from_millis(10));
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

    /// The ethers provider.
    pub fn provider(&self) -> &Provider<Http> {
        &self.provider
    }

    /// A raw JSON-RPC request.
    pub async fn request<P, R>(&self, method: &str, params: P) -> Result<R, DemoError>
    where
        P: Serialize + fmt::Debug + Send + Sync,
        R: Serialize + DeserializeOwned + fmt::Debug + Send,
    {
        self.provider.request(method, params).await.map_err(|e| DemoError::Rpc { method: method.to_owned(), message: e.to_string() })
    }

    /// `eth_blockNumber`.
    pub async fn block_number(&self) -> Result<u64, DemoError> {
        let n: U64 = self.request("eth_blockNumber", ()).await?;
        Ok(n.as_u64())
    }

    /// Timestamp of the latest block.
    pub async fn latest_timestamp(&self) -> Result<u64, DemoError> {
        let b: Value = self.request("eth_getBlockByNumber", json!(["latest", false])).await?;
        b["timestamp"]
            .as_str()
            .and_then(|s| u64::from_str_radix(s.trim_start_matches("0x"), 16).ok())
            .ok_or_else(|| DemoError::Rpc { method: "eth_getBlockByNumber".into(), message: format!("no timestamp in {b}") })
    }

    /// Mines `n` empty blocks at once (`anvil_mine`); returns the new head.
    pub async fn mine(&self, n: u64) -> Result<u64, DemoError> {
        if n > 0 {
            let _: Value = self.request("anvil_mine", json!([format!("0x{n:x}")])).await?;
        }
        self.block_number().await
    }

    /// Mines until the head is at least `number`; returns the head.
    pub async fn mine_to(&self, number: u64) -> Result<u64, DemoError> {
        let head = self.block_number().await?;
        if head < number {
            self.mine(number - head).await
        } else {
            Ok(head)
        }
    }

    /// Moves time forward by `secs` (`evm_increaseTime`) and mines a block carrying it;
    /// returns that block's timestamp.
    pub async fn increase_time(&self, secs: u64) -> Result<u64, DemoError> {
        let _: Value = self.request("evm_increaseTime", json!([secs])).await?;
        let _: Value = self.request("evm_mine", ()).await?;
        self.latest_timestamp().await
    }

    /// `anvil_setBalance`.
    pub async fn set_balance(&self, who: Address, wei: U256) -> Result<(), DemoError> {
        let _: Value = self.request("anvil_setBalance", json!([who, wei])).await?;
        Ok(())
    }

    /// `evm_snapshot`: the snapshot id.
    pub async fn snapshot(&self) -> Result<U256, DemoError> {
        self.request("evm_snapshot", ()).await
    }

    /// `evm_revert`: back to the state of snapshot `id`, dropping the blocks mined since (the
    /// next blocks get the same numbers and other hashes: a reorg). True if reverted.
    pub async fn revert(&self, id: U256) -> Result<bool, DemoError> {
        self.request("evm_revert", json!([id])).await
    }

    /// Signs and sends `data` to `to` from `from`, waits until it is mined and returns the
    /// receipt; a revert (at gas estimation or on chain) is an error with the decoded reason.
    pub async fn send(&self, from: &LocalWallet, to: Address, data: Bytes) -> Result<TransactionReceipt, DemoError> {
        let action = describe(Some(to), &data, from.address());
        self.send_tx(from, Some(to), data, action).await
    }

    /// Deploys `artifact` with constructor arguments `args`; returns its address and receipt.
    pub async fn deploy(&self, from: &LocalWallet, artifact: &str, args: &[Token]) -> Result<(Address, TransactionReceipt), DemoError> {
        let art = artifacts::artifact(artifact)?;
        let data = match art.abi.constructor() {
            Some(c) => c
                .encode_input(art.bytecode.to_vec(), args)
                .map_err(|e| DemoError::Artifact { name: artifact.to_owned(), message: format!("constructor arguments: {e}") })?,
            None => art.bytecode.to_vec(),
        };
        let receipt = self.send_tx(from, None, data.into(), format!("deploy {artifact}")).await?;
        let address = receipt
            .contract_address
            .ok_or_else(|| DemoError::Tx { action: format!("deploy {artifact}"), reason: "the receipt has no contract address".into() })?;
        Ok((address, receipt))
    }

    async fn send_tx(&self, from: &LocalWallet, to: Option<Address>, data: Bytes, action: String) -> Result<TransactionReceipt, DemoError> {
        let client = SignerMiddleware::new(self.provider.clone(), from.clone().with_chain_id(self.chain_id));
        let mut tx = Eip1559TransactionRequest::new().from(from.address()).data(data);
        if let Some(to) = to {
            tx = tx.to(to);
        }
        let hash: H256 = match client.send_transaction(tx, None).await {
            Ok(pending) => pending.tx_hash(),
            Err(e) => {
                let reason = match e.as_error_response().and_then(|r| r.as_revert_data()) {
                    Some(d) => decode_revert(&d),
                    None => e.to_string(),
                };
                return Err(DemoError::Tx { action, reason });
            }
        };
        let start = Instant::now();
        loop {
            let receipt = self
                .provider
                .get_transaction_receipt(hash)
                .await
                .map_err(|e| DemoError::Rpc { method: "eth_getTransactionReceipt".into(), message: e.to_string() })?;
            match receipt {
                Some(r) if r.block_number.is_some() => {
                    if r.status != Some(1u64.into()) {
                        return Err(DemoError::Tx { action, reason: format!("reverted on chain (tx {hash:?})") });
                    }
                    return Ok(r);
                }
                _ if start.elapsed() > RECEIPT_TIMEOUT => {
                    return Err(DemoError::Tx { action, reason: format!("not mined after {RECEIPT_TIMEOUT:?} (is automine off?)") });
                }
                _ => tokio::time::sleep(Duration::from_millis(5)).await,
            }
        }
    }

    /// `eth_call` of `method(args)` on `to` at `block` (latest if `None`).
    pub async fn call<T: Tokenize, D: Detokenize>(&self, abi: &BaseContract, to: Address, method: &str, args: T, block: Option<u64>) -> Result<D, DemoError> {
        let at = block.map_or("latest".to_owned(), |n| format!("block {n}"));
        let fail = |message: String| DemoError::Call { method: method.to_owned(), to, at: at.clone(), message };
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
