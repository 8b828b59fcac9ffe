//! [`Chain`]: [`govflow::testkit::DevChain`] for tests, its RPC failures turned into panics
//! that name the method; transactions keep returning their [`TxError`] (a revert is what many
//! tests check).

use std::fmt;
use std::sync::Arc;

use ethers::abi::{Detokenize, Token, Tokenize};
use ethers::contract::BaseContract;
use ethers::providers::{Http, Provider};
use ethers::signers::LocalWallet;
use ethers::types::{Address, Bytes, H256, U256};
use govflow::testkit::{DevChain, TestkitError};
use serde::de::DeserializeOwned;
use serde::Serialize;
use serde_json::Value;

pub use govflow::testkit::chain::{Receipt, SignerClient, TxError, RECEIPT_TIMEOUT};

/// The value, or a panic with the error's message.
fn must<T>(r: Result<T, TestkitError>) -> T {
    r.unwrap_or_else(|e| panic!("{e}"))
}

/// A transaction's outcome: its [`TxError`] is returned, anything else (the node) panics.
fn tx<T>(r: Result<T, TestkitError>) -> Result<T, TxError> {
    match r {
        Ok(v) => Ok(v),
        Err(TestkitError::Tx(e)) => Err(e),
        Err(e) => panic!("{e}"),
    }
}

/// Cloneable JSON-RPC handle on the dev chain. [`super::Anvil`] derefs to it, and every
/// [`super::Dao`] carries one.
#[derive(Clone, Debug)]
pub struct Chain {
    kit: DevChain,
    /// The chain id (31337 unless configured otherwise).
    pub chain_id: u64,
}

impl Chain {
    /// Connects to a JSON-RPC endpoint (no request is made).
    pub fn connect(url: &str, chain_id: u64) -> Chain {
        Chain::from_kit(must(DevChain::with_chain_id(url, chain_id)))
    }

    /// Wraps the testkit's handle.
    pub fn from_kit(kit: DevChain) -> Chain {
        Chain { chain_id: kit.chain_id(), kit }
    }

    /// The testkit's handle (its methods return `Result`s).
    pub fn kit(&self) -> &DevChain {
        &self.kit
    }

    pub fn rpc_url(&self) -> String {
        self.kit.url().to_owned()
    }

    /// The ethers provider (polling interval 10 ms).
    pub fn provider(&self) -> &Provider<Http> {
        self.kit.provider()
    }

    /// An ethers signing client for `wallet` (its chain id is set to this chain's).
    pub fn signer(&self, wallet: &LocalWallet) -> Arc<SignerClient> {
        self.kit.signer(wallet)
    }

    // ----- raw RPC ---------------------------------------------------------------------------

    /// Raw JSON-RPC request; `Err` carries the node's error.
    pub async fn try_request<P, R>(&self, method: &str, params: P) -> Result<R, TestkitError>
    where
        P: Serialize + fmt::Debug + Send + Sync,
        R: Serialize + DeserializeOwned + fmt::Debug + Send,
    {
        self.kit.request(method, params).await
    }

    /// Raw JSON-RPC request that panics (naming the method and its parameters) on error.
    pub async fn request<P, R>(&self, method: &str, params: P) -> R
    where
        P: Serialize + fmt::Debug + Send + Sync,
        R: Serialize + DeserializeOwned + fmt::Debug + Send,
    {
        let shown = format!("{params:?}");
        self.kit.request(method, params).await.unwrap_or_else(|e| panic!("{e} (params {shown})"))
    }

    pub async fn block_number(&self) -> u64 {
        must(self.kit.block_number().await)
    }

    /// The block as raw JSON (`None` if it does not exist).
    pub async fn block_json(&self, number: u64) -> Option<Value> {
        must(self.kit.block_json(number).await)
    }

    pub async fn block_timestamp(&self, number: u64) -> u64 {
        must(self.kit.block_timestamp(number).await)
    }

    pub async fn block_hash(&self, number: u64) -> H256 {
        must(self.kit.block_hash(number).await)
    }

    /// (number, timestamp) of the latest block.
    pub async fn latest(&self) -> (u64, u64) {
        must(self.kit.latest().await)
    }

    pub async fn latest_timestamp(&self) -> u64 {
        must(self.kit.latest_timestamp().await)
    }

    /// Mines `n` blocks at once (`anvil_mine`). Returns the new latest block number.
    pub async fn mine(&self, n: u64) -> u64 {
        must(self.kit.mine(n).await)
    }

    /// Moves time forward by `secs` and mines one block carrying it; returns its timestamp.
    pub async fn increase_time(&self, secs: u64) -> u64 {
        must(self.kit.increase_time(secs).await)
    }

    /// The next mined block gets exactly this timestamp (`evm_setNextBlockTimestamp`).
    pub async fn set_next_block_timestamp(&self, ts: u64) {
        must(self.kit.set_next_block_timestamp(ts).await)
    }

    /// Mines one block whose timestamp is exactly `ts` (must be after the latest block's).
    pub async fn mine_at(&self, ts: u64) -> u64 {
        must(self.kit.mine_at(ts).await)
    }

    /// Mines blocks until the latest block number is at least `number`.
    pub async fn mine_to(&self, number: u64) -> u64 {
        must(self.kit.mine_to(number).await)
    }

    /// Mines one block with a timestamp of at least `ts` if the latest block is older.
    pub async fn advance_time_to(&self, ts: u64) -> u64 {
        must(self.kit.advance_time_to(ts).await)
    }

    /// `evm_snapshot`: returns the snapshot id.
    pub async fn snapshot(&self) -> U256 {
        must(self.kit.snapshot().await)
    }

    /// `evm_revert`: back to the state of snapshot `id`. Returns whether it was reverted.
    /// Anvil consumes the snapshot (and every later one): to go back again, take a new one.
    pub async fn revert(&self, id: U256) -> bool {
        // anvil answers "Resource not found" for an id it has dropped: report that as false.
        self.kit.revert(id).await.unwrap_or_default()
    }

    /// `evm_setAutomine` (see [`govflow::testkit::DevChain::set_automine`]).
    pub async fn set_automine(&self, on: bool) {
        must(self.kit.set_automine(on).await)
    }

    pub async fn automine(&self) -> bool {
        must(self.kit.automine().await)
    }

    pub async fn set_balance(&self, who: Address, wei: U256) {
        must(self.kit.set_balance(who, wei).await)
    }

    /// `n` new random wallets for this chain, each given 100 ether.
    pub async fn funded_wallets(&self, n: usize) -> Vec<LocalWallet> {
        must(self.kit.funded_wallets(n).await)
    }

    pub async fn balance(&self, who: Address) -> U256 {
        must(self.kit.balance(who).await)
    }

    // ----- transactions ----------------------------------------------------------------------

    /// Signs and sends `data` to `to` from `from`, waits for it to be mined and returns the
    /// receipt; a revert (at gas estimation or on chain) is an `Err` with the decoded reason.
    pub async fn send(&self, from: &LocalWallet, to: Address, data: Bytes) -> Result<Receipt, TxError> {
        tx(self.kit.send(from, to, data).await)
    }

    /// [`Chain::send`] with ETH attached.
    pub async fn send_with_value(&self, from: &LocalWallet, to: Address, data: Bytes, value: U256) -> Result<Receipt, TxError> {
        tx(self.kit.send_with_value(from, to, data, value).await)
    }

    /// Sends without waiting for it to be mined (for automine-off scenarios); returns the hash.
    pub async fn submit(&self, from: &LocalWallet, to: Address, data: Bytes) -> Result<H256, TxError> {
        tx(self.kit.submit(from, to, data).await)
    }

    /// The receipt of `hash` if it has been mined.
    pub async fn receipt(&self, hash: H256) -> Option<Receipt> {
        must(self.kit.receipt(hash).await)
    }

    /// Polls until `hash` is mined. Panics after [`RECEIPT_TIMEOUT`] (is automine off?).
    pub async fn wait_receipt(&self, hash: H256) -> Receipt {
        must(self.kit.wait_receipt(hash).await)
    }

    /// Deploys artifact `name` with constructor `args` from `from`. Returns the address and
    /// the deployment receipt; bad constructor arguments panic.
    pub async fn deploy(&self, from: &LocalWallet, name: &str, args: &[Token]) -> Result<(Address, Receipt), TxError> {
        tx(self.kit.deploy(from, name, args).await)
    }

    // ----- calls -----------------------------------------------------------------------------

    /// `eth_call` of `method(args)` on `to` (ABI `abi`) at `block` (latest if `None`).
    /// `Err` carries the decoded revert reason or the node's error.
    pub async fn try_call<T: Tokenize, D: Detokenize>(&self, abi: &BaseContract, to: Address, method: &str, args: T, block: Option<u64>) -> Result<D, String> {
        match self.kit.call(abi, to, method, args, block).await {
            Ok(d) => Ok(d),
            Err(TestkitError::Call { message, .. }) => Err(message),
            Err(e) => Err(e.to_string()),
        }
    }

    /// [`Chain::try_call`] that panics with the method, address, block and reason.
    pub async fn call<T: Tokenize, D: Detokenize>(&self, abi: &BaseContract, to: Address, method: &str, args: T, block: Option<u64>) -> D {
        must(self.kit.call(abi, to, method, args, block).await)
    }
}
