//! [`Anvil`]: [`govflow::testkit::Anvil`] for tests: a start that fails panics with the reason,
//! and the dev accounts by index.

use std::ops::Deref;
use std::path::PathBuf;

use ethers::signers::{LocalWallet, Signer};
use ethers::types::Address;
use govflow::testkit::anvil as kit;

use super::chain::Chain;

pub use govflow::testkit::anvil::{AnvilOptions, PortChoice, ANVIL_BIN};
pub use govflow::testkit::{dev_wallets, DEV_ACCOUNTS, DEV_MNEMONIC};

/// A running anvil; killed (and reaped) on drop. Derefs to [`Chain`] for the RPC helpers
/// (`mine`, `increase_time`, `snapshot`, `revert`, `set_automine`, `block_number`, ...).
pub struct Anvil {
    kit: kit::Anvil,
    chain: Chain,
}

impl Anvil {
    /// Path of the anvil binary (panics with a hint if it is missing).
    pub fn binary() -> PathBuf {
        kit::find_binary().unwrap_or_else(|e| panic!("{e}"))
    }

    /// Starts anvil with the default options.
    pub async fn start() -> Anvil {
        Anvil::start_with(AnvilOptions::default()).await
    }

    /// Starts anvil on 127.0.0.1 with a port of its choosing and waits until its RPC answers.
    pub async fn start_with(opts: AnvilOptions) -> Anvil {
        let kit = kit::Anvil::start_with(opts).await.unwrap_or_else(|e| panic!("{e}"));
        let chain = Chain::from_kit(kit.chain().clone());
        Anvil { kit, chain }
    }

    /// The JSON-RPC URL, `http://127.0.0.1:<port>`.
    pub fn rpc_url(&self) -> String {
        self.kit.rpc_url().to_owned()
    }

    pub fn port(&self) -> u16 {
        self.kit.port()
    }

    /// Process id of the anvil child.
    pub fn pid(&self) -> Option<u32> {
        self.kit.pid()
    }

    /// The RPC handle (also reachable through `Deref`); clone it to keep it in other structs.
    pub fn chain(&self) -> &Chain {
        &self.chain
    }

    /// The 10 funded dev accounts (chain id set).
    pub fn accounts(&self) -> &[LocalWallet] {
        self.kit.accounts()
    }

    /// Dev account `i` (0..10). Account 0 is the default deployer.
    pub fn wallet(&self, i: usize) -> LocalWallet {
        self.accounts().get(i).unwrap_or_else(|| panic!("anvil has {} dev accounts, no #{i}", self.accounts().len())).clone()
    }

    /// Address of dev account `i`.
    pub fn address(&self, i: usize) -> Address {
        self.wallet(i).address()
    }

    /// What anvil printed on stderr so far (capped at 64 KiB).
    pub fn output(&self) -> String {
        self.kit.output()
    }

    /// Kills and reaps anvil now (also done on drop). Idempotent.
    pub fn stop(&mut self) {
        self.kit.stop();
    }
}

impl Deref for Anvil {
    type Target = Chain;
    fn deref(&self) -> &Chain {
        &self.chain
    }
}

impl std::fmt::Debug for Anvil {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Anvil").field("url", &self.rpc_url()).field("pid", &self.pid()).finish()
    }
}
