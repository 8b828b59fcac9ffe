//! Deploys and drives a governor behind a Compound-style timelock: GovToken (or
//! GovTokenTimestamp), CompoundTimelock, TestGovernorCompound (OZ 5 Governor +
//! GovernorTimelockCompound) and Target. Unlike the TimelockController stack of [`Dao::deploy`],
//! a queued proposal here expires: `state()` is Expired from `eta + GRACE_PERIOD` on, and no
//! event says so.
//!
//! ```ignore
//! let anvil = Anvil::start().await;
//! let dao = CompoundDao::deploy(&anvil, DaoOptions::default()
//!     .timelock_min_delay(60)                        // the Compound timelock's delay, seconds
//!     .voter(anvil.wallet(1), tokens(100)), 300).await;  // GRACE_PERIOD = 300 s
//! let (id, _) = dao.propose_set_value(&anvil.wallet(1), 42.into(), "set 42").await;
//! dao.advance_past_snapshot(id).await;
//! dao.cast_vote(&anvil.wallet(1), id, vote::FOR).await;
//! dao.advance_past_deadline(id).await;
//! dao.queue(id).await;
//! dao.advance_to_expiry(id).await;
//! assert_eq!(dao.proposal_state(id).await, ProposalState::Expired);
//! ```
//!
//! A [`CompoundDao`] derefs to a [`Dao`] (built with [`Dao::assemble`]) whose `timelock` is the
//! CompoundTimelock: proposals, votes, queue/execute/cancel, token moves, the governor views
//! (`state`, `proposal_eta`, `proposal_snapshot`, `proposal_deadline`, `proposal_votes`, ...)
//! and the clock helpers are `Dao`'s. `DaoOptions::timelock_min_delay` is the timelock's
//! `delay` and `vote_extension` is ignored (this governor has no late-quorum protection). The
//! TimelockController views of `DaoView` (`timelock_min_delay`, `timelock_has_role`) do not
//! apply; use [`CompoundDao::timelock_delay`] and friends.
//!
//! Admin handover: the timelock is deployed with the deployer as admin, the governor next; the
//! deployer then uses the timelock's one-time direct `setPendingAdmin(governor)` (later calls
//! must come from the timelock itself, as in Compound) and calls the governor's
//! `__acceptAdmin()`, which makes the timelock's `acceptAdmin()` call from the governor.
//! [`CompoundDao::deploy`] checks that the governor is the admin afterwards.

use std::ops::Deref;

use ethers::abi::{Detokenize, Token, Tokenize};
use ethers::signers::Signer;
use ethers::types::{Address, H256, U256};

use super::anvil::Anvil;
use super::artifacts;
use super::chain::TxError;
use super::dao::{Dao, DaoAddresses, DaoOptions, StackArtifacts};

/// Artifact names of the Compound-style stack.
pub use super::artifacts::{COMPOUND_TIMELOCK, TEST_GOVERNOR_COMPOUND};

/// CompoundTimelock + TestGovernorCompound, for [`Dao::assemble`]. (Not for
/// [`Dao::deploy_governance`]: the constructors differ from the TimelockController stack's.)
pub const COMPOUND_STACK: StackArtifacts = StackArtifacts { timelock: COMPOUND_TIMELOCK, governor: TEST_GOVERNOR_COMPOUND };

fn ok<T>(r: Result<T, TxError>) -> T {
    r.unwrap_or_else(|e| panic!("{e}"))
}

/// A deployed Compound-timelock governance stack.
pub struct CompoundDao {
    dao: Dao,
    /// The timelock's `GRACE_PERIOD()`, seconds.
    pub grace_period: u64,
}

impl Deref for CompoundDao {
    type Target = Dao;
    fn deref(&self) -> &Dao {
        &self.dao
    }
}

impl std::fmt::Debug for CompoundDao {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CompoundDao").field("dao", &self.dao).field("grace_period", &self.grace_period).finish()
    }
}

impl CompoundDao {
    /// Deploys token, CompoundTimelock (`delay` = `opts.timelock_min_delay`, `GRACE_PERIOD` =
    /// `grace_period_secs`), TestGovernorCompound and Target from `opts.deployer` (default dev
    /// account 0), hands the timelock's admin to the governor, mints to the voters and applies
    /// their delegations. Requires automine.
    pub async fn deploy(anvil: &Anvil, opts: DaoOptions, grace_period_secs: u64) -> CompoundDao {
        let chain = anvil.chain();
        let deployer = Dao::deployer_wallet(anvil, &opts);
        let me = deployer.address();
        let (token, deployment_block) = Dao::deploy_token(chain, &deployer, &opts).await;

        let (timelock, _) = ok(chain
            .deploy(&deployer, COMPOUND_TIMELOCK, &[Token::Address(me), Token::Uint(opts.timelock_min_delay.into()), Token::Uint(grace_period_secs.into())])
            .await);

        assert!(opts.voting_delay < (1 << 48), "voting_delay must fit uint48");
        assert!(opts.voting_period <= u32::MAX as u64, "voting_period must fit uint32");
        let (governor, r) = ok(chain
            .deploy(
                &deployer,
                TEST_GOVERNOR_COMPOUND,
                &[
                    Token::String(opts.governor_name.clone()),
                    Token::Address(token),
                    Token::Address(timelock),
                    Token::Uint(opts.voting_delay.into()),
                    Token::Uint(opts.voting_period.into()),
                    Token::Uint(opts.proposal_threshold),
                    Token::Uint(opts.quorum_numerator.into()),
                ],
            )
            .await);
        let governor_deployment_block = r.block_number;
        let (target, _) = ok(chain.deploy(&deployer, artifacts::TARGET, &[]).await);

        let addresses = DaoAddresses { token, timelock, governor, target };
        let mut dao = Dao::assemble(chain, deployer.clone(), opts, addresses, deployment_block, governor_deployment_block, COMPOUND_STACK);

        // Admin handover: the deployer's one direct setPendingAdmin, then the governor accepts.
        let data = dao.timelock_abi.encode("setPendingAdmin", governor).unwrap();
        ok(chain.send(&deployer, timelock, data).await);
        let last = ok(chain.send(&deployer, governor, dao.governor_calldata("__acceptAdmin", ())).await);

        let last = dao.setup_voters().await.unwrap_or(last);
        dao.setup_block = last.block_number;
        let cd = CompoundDao { dao, grace_period: grace_period_secs };
        assert_eq!(cd.timelock_admin().await, governor, "the governor is the timelock's admin");
        assert_eq!(cd.timelock_pending_admin().await, Address::zero());
        assert_eq!(cd.timelock_grace_period().await, grace_period_secs);
        cd
    }

    /// The underlying [`Dao`] (also reachable through `Deref`).
    pub fn dao(&self) -> &Dao {
        &self.dao
    }

    // ----- timelock views (latest block) -----------------------------------------------------

    pub async fn timelock_call<T: Tokenize, D: Detokenize>(&self, method: &str, args: T) -> D {
        self.view().timelock_call(method, args).await
    }
    pub async fn timelock_admin(&self) -> Address {
        self.timelock_call("admin", ()).await
    }
    pub async fn timelock_pending_admin(&self) -> Address {
        self.timelock_call("pendingAdmin", ()).await
    }
    /// The timelock's `delay()`, seconds.
    pub async fn timelock_delay(&self) -> u64 {
        self.timelock_call::<_, U256>("delay", ()).await.as_u64()
    }
    /// The timelock's `GRACE_PERIOD()`, seconds.
    pub async fn timelock_grace_period(&self) -> u64 {
        self.timelock_call::<_, U256>("GRACE_PERIOD", ()).await.as_u64()
    }
    /// `queuedTransactions(keccak256(abi.encode(target, value, "", data, eta)))` for each call
    /// of the proposal, at its current eta (all false if it was never queued).
    pub async fn calls_queued(&self, id: U256) -> Vec<bool> {
        let p = self.proposal(id);
        let eta = self.proposal_eta(id).await;
        let mut out = Vec::new();
        for ((target, value), data) in p.targets.iter().zip(&p.values).zip(&p.calldatas) {
            let hash = ethers::utils::keccak256(ethers::abi::encode(&[
                Token::Address(*target),
                Token::Uint(*value),
                Token::String(String::new()),
                Token::Bytes(data.to_vec()),
                Token::Uint(eta.into()),
            ]));
            out.push(self.timelock_call::<_, bool>("queuedTransactions", H256(hash)).await);
        }
        out
    }

    // ----- time ------------------------------------------------------------------------------

    /// Unix time from which the queued proposal is Expired: `proposalEta + GRACE_PERIOD`.
    pub async fn expiry(&self, id: U256) -> u64 {
        let eta = self.proposal_eta(id).await;
        assert!(eta != 0, "proposal {id} has no ETA (not queued?)");
        eta + self.grace_period
    }

    /// Mines a block at exactly `expiry - 1` (still Queued) if the chain is older than that,
    /// then one at exactly `expiry` (Expired from that block on), so the boundary is exact.
    /// Returns the latest block number.
    pub async fn advance_to_expiry(&self, id: U256) -> u64 {
        let expiry = self.expiry(id).await;
        let chain = self.chain();
        if chain.latest_timestamp().await < expiry.saturating_sub(1) {
            chain.mine_at(expiry - 1).await;
        }
        chain.advance_time_to(expiry).await;
        chain.block_number().await
    }
}
