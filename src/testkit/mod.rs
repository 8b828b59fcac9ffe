//! The dev-chain kit shared by `govflow demo` and the integration tests: anvil as a child
//! process ([`anvil`]), the compiled contracts and their revert decoding ([`artifacts`]), a
//! JSON-RPC client with anvil's test methods ([`chain`]) and the deployment sequences of the
//! governance contracts ([`deploy`]), so the demo and the tests wire them the same way.
//!
//! It knows nothing of govflow's indexing code (it names no other room of the crate), so tests
//! that drive a chain with it and compare govflow's answers with the contracts' own views stay
//! an independent check. It ships in the binary because the demo needs it.

pub mod anvil;
pub mod artifacts;
pub mod chain;
pub mod deploy;

use std::sync::OnceLock;

use ethers::abi::Detokenize;
use ethers::contract::BaseContract;
use ethers::signers::coins_bip39::English;
use ethers::signers::{LocalWallet, MnemonicBuilder};
use ethers::types::{Address, H256, U256};
use ethers::utils::keccak256;

pub use self::anvil::{Anvil, AnvilOptions};
pub use self::artifacts::{artifact, decode_revert, function_name, Artifact};
pub use self::chain::{DevChain, Receipt, TxError};

/// Anvil's default mnemonic; its first [`DEV_ACCOUNTS`] accounts are funded with 10 000 ETH each.
pub const DEV_MNEMONIC: &str = "test test test test test test test test test test test junk";
/// Number of funded dev accounts anvil is started with.
pub const DEV_ACCOUNTS: usize = 10;

/// What can go wrong while running a dev chain and driving contracts on it.
#[derive(Debug, Clone, thiserror::Error)]
pub enum TestkitError {
    /// The anvil binary is not installed.
    #[error(
        "anvil not found (looked for {looked}, ...): run scripts/setup.sh from the repository \
         (it installs the npm package @foundry-rs/anvil-linux-amd64)"
    )]
    AnvilMissing {
        /// Paths tried.
        looked: String,
    },
    /// Anvil did not start or answer.
    #[error("anvil did not start: {0}")]
    AnvilStart(String),
    /// A JSON-RPC request failed.
    #[error("RPC {method} failed: {message}")]
    Rpc {
        /// Method.
        method: String,
        /// The node's error.
        message: String,
    },
    /// A transaction was refused, reverted or not mined.
    #[error(transparent)]
    Tx(#[from] TxError),
    /// A read-only call failed.
    #[error("eth_call {method} on {to:?} at {at} failed: {message}")]
    Call {
        /// Method.
        method: String,
        /// Contract.
        to: Address,
        /// Block.
        at: String,
        /// Decoded revert reason or the node's error.
        message: String,
    },
    /// A contract artifact is missing or unusable.
    #[error("contract artifact {name}: {message}")]
    Artifact {
        /// Contract name.
        name: String,
        /// What is wrong.
        message: String,
    },
    /// A receipt does not hold the event expected, or it does not decode.
    #[error("{0}")]
    Event(String),
}

/// `n` whole tokens (18 decimals).
pub fn tokens(n: u64) -> U256 {
    U256::from(n) * U256::exp10(18)
}

/// The [`DEV_ACCOUNTS`] dev wallets of [`DEV_MNEMONIC`] (derived once), without a chain id.
pub fn dev_wallets() -> &'static [LocalWallet] {
    static WALLETS: OnceLock<Vec<LocalWallet>> = OnceLock::new();
    WALLETS.get_or_init(|| {
        (0..DEV_ACCOUNTS as u32)
            // The mnemonic and indexes are constants, so a failure is a broken build of ethers.
            .map(|i| MnemonicBuilder::<English>::default().phrase(DEV_MNEMONIC).index(i).and_then(|b| b.build()).expect("derive a dev wallet"))
            .collect()
    })
}

/// Role id of OpenZeppelin's AccessControl (`DEFAULT_ADMIN_ROLE` is zero).
pub fn role(name: &str) -> H256 {
    if name == "DEFAULT_ADMIN_ROLE" {
        H256::zero()
    } else {
        H256(keccak256(name.as_bytes()))
    }
}

/// The `keccak256` topic of `event` in `abi` (for filtering raw logs).
pub fn event_topic(abi: &BaseContract, event: &str) -> Result<H256, TestkitError> {
    abi.abi().event(event).map(|e| e.signature()).map_err(|e| TestkitError::Event(format!("no event {event}: {e}")))
}

/// Every log of `receipt` emitted by `address` that is `event` of `abi`, decoded (parameters in
/// declaration order, indexed ones included).
pub fn decode_logs<D: Detokenize>(receipt: &Receipt, abi: &BaseContract, address: Address, event: &str) -> Result<Vec<D>, TestkitError> {
    let topic = event_topic(abi, event)?;
    receipt
        .logs
        .iter()
        .filter(|l| l.address == address && l.topics.first() == Some(&topic))
        .map(|l| abi.decode_event(event, l.topics.clone(), l.data.clone()).map_err(|e| TestkitError::Event(format!("cannot decode {event} log: {e}"))))
        .collect()
}
