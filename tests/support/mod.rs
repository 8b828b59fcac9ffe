//! Test support for govflow's integration tests: a throw-away anvil chain and a deployed
//! OpenZeppelin Governor stack to drive (use with `mod support;`).
//!
//! ```ignore
//! let anvil = Anvil::start().await;
//! let dao = Dao::deploy(&anvil, DaoOptions::default()
//!     .voter(anvil.wallet(1), tokens(100))
//!     .voter(anvil.wallet(2), tokens(50))).await;
//! let (id, _) = dao.propose_set_value(&anvil.wallet(1), 42.into(), "set 42").await;
//! dao.advance_past_snapshot(id).await;
//! dao.cast_vote(&anvil.wallet(1), id, vote::FOR).await;
//! dao.advance_past_deadline(id).await;
//! dao.queue(id).await;
//! dao.advance_past_eta(id).await;
//! dao.execute(id).await;
//! assert_eq!(dao.proposal_state(id).await, ProposalState::Executed);
//! ```
//!
//! [`CbDao`] (module [`cb`]) deploys the CultureBridge reference stack of `contracts/cb/` the same
//! way (achievement NFT, benefit executor, voting manager in front of the token) and derefs to
//! its [`Dao`].
//!
//! Anvil, the artifacts and the chain client are govflow's [`govflow::testkit`] (shared with
//! `govflow demo`), wrapped so that failures panic with their message; the contracts come from
//! `contracts/artifacts/*.json` (`node scripts/compile-contracts.js`, embedded at build time),
//! anvil from `node_modules` (`scripts/setup.sh`). Nothing here depends on govflow's indexing
//! code, only on its testkit (which names no other room but `domain`).
//!
//! Anvil 1.7.1 behaviour the helpers rely on (checked by tests/contracts_smoke.rs):
//! - `eth_call` at "latest" executes in the latest mined block's context (`clock()` equals the
//!   latest block number / timestamp); "pending" uses number latest+1.
//! - `eth_call` at a past block number sees that block's state and context.
//! - Automined blocks within the same wall-clock second share a timestamp; after
//!   `evm_setNextBlockTimestamp(t)` later blocks continue from `t` (and may share it too).
//! - `evm_snapshot` ids count from 0; `evm_revert(id)` drops that snapshot and all later ones
//!   (a second revert returns false, a dropped later id errors) and discards the blocks, receipts
//!   and logs after it: re-mined block numbers get new hashes, which simulates a reorg.
//! - With automine off, ethers would reuse the "latest" nonce; [`Chain::submit`] uses "pending".

#![allow(dead_code, unreachable_pub, unused_imports)]

pub mod anvil;
pub mod artifacts;
pub mod cb;
pub mod chain;
pub mod compound;
pub mod dao;
/// nats-server with JetStream (`.tools/bin/nats-server`, `scripts/nats.sh install`): [`nats::NatsServer`].
pub mod nats;

pub use self::anvil::{dev_wallets, Anvil, AnvilOptions, DEV_MNEMONIC};
pub use self::artifacts::{artifact, decode_revert, Artifact};
pub use self::cb::{decode_logs, default_achievement_types, AchievementType, BenefitsChange, BonusChange, CbDao, CbOptions, CbView, VoteCastLog};
pub use self::chain::{Chain, Receipt, TxError};
pub use self::dao::{role, ClockMode, Dao, DaoAddresses, DaoOptions, DaoView, Delegation, ProposalParams, ProposalRef, ProposalState, StackArtifacts, Voter};
pub use ethers::signers::{LocalWallet, Signer};
pub use ethers::types::{Address, Bytes, H256, U256};

/// `n` whole tokens (18 decimals).
pub use govflow::testkit::tokens;

/// Vote `support` values of GovernorCountingSimple.
pub mod vote {
    pub const AGAINST: u8 = 0;
    pub const FOR: u8 = 1;
    pub const ABSTAIN: u8 = 2;
}
