//! Deploys and drives the CultureBridge reference stack (`contracts/cb/`): GovToken,
//! CBAchievementNFT, CBBenefitExecutor, CBVotingManager, CBTimelock and CBGovernorCore, plus
//! Target for proposals to call.
//!
//! ```ignore
//! let anvil = Anvil::start().await;
//! let cb = CbDao::deploy(&anvil, CbOptions::default()
//!     .voter(anvil.wallet(1), tokens(60))
//!     .achievement(anvil.address(1), 2)).await;          // type 2: +20 tokens of weight
//! assert_eq!(cb.voting_manager_get_votes(anvil.address(1)).await, tokens(80));
//! let (id, _) = cb.propose_set_value(&anvil.wallet(1), 42.into(), "set 42").await;
//! ```
//!
//! A [`CbDao`] derefs to the [`Dao`] it is built on, whose `governor` is CBGovernorCore (with
//! the voting manager as its `token()`), `timelock` CBTimelock and `token` GovToken: proposals,
//! votes, queue/execute, token delegation/transfers and the governor views are `Dao`'s. Note
//! that `Dao::get_votes`/`get_past_votes` read the token; the weight the governor counts is
//! [`CbDao::voting_manager_get_votes`]/[`CbDao::voting_manager_get_past_votes`].
//!
//! The executor checkpoints bonuses on block numbers, so only [`ClockMode::BlockNumber`] is
//! supported (CBVotingManager's constructor rejects a token on another clock).

use std::ops::Deref;

use ethers::abi::{Detokenize, Token, Tokenize};
use ethers::contract::BaseContract;
use ethers::signers::{LocalWallet, Signer};
use ethers::types::{Address, Bytes, H256, U256};

use super::anvil::Anvil;
use super::artifacts::artifact;
use super::chain::{Chain, Receipt, TxError};
use super::dao::{ClockMode, Dao, DaoOptions, DaoView, StackArtifacts, Voter};
use super::tokens;

/// Artifact names of the CultureBridge contracts.
pub use super::artifacts::{CB_ACHIEVEMENT_NFT, CB_BENEFIT_EXECUTOR, CB_GOVERNOR_CORE, CB_TIMELOCK, CB_VOTING_MANAGER};

/// CBTimelock + CBGovernorCore for [`Dao::deploy_governance`].
pub const CB_STACK: StackArtifacts = StackArtifacts { timelock: CB_TIMELOCK, governor: CB_GOVERNOR_CORE };

/// Configuration of one achievement type (1..=255).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AchievementType {
    pub id: u8,
    /// Governance weight bonus per NFT held, in token units.
    pub bonus: U256,
    /// Proposal-fee discount, basis points (at most 10 000).
    pub fee_discount_bps: u64,
    pub priority_boost: U256,
}

impl AchievementType {
    pub fn new(id: u8, bonus: U256, fee_discount_bps: u64, priority_boost: U256) -> AchievementType {
        AchievementType { id, bonus, fee_discount_bps, priority_boost }
    }
}

/// The default achievement types:
/// - type 1: +5 tokens of weight, no special benefit;
/// - type 2: +20 tokens of weight, 250 bps fee discount, priority boost 1;
/// - type 3: no weight bonus, 500 bps fee discount, no priority boost.
pub fn default_achievement_types() -> Vec<AchievementType> {
    vec![
        AchievementType::new(1, tokens(5), 0, U256::zero()),
        AchievementType::new(2, tokens(20), 250, U256::one()),
        AchievementType::new(3, U256::zero(), 500, U256::zero()),
    ]
}

/// Deployment parameters of a [`CbDao`].
#[derive(Debug, Clone)]
pub struct CbOptions {
    /// Governor/timelock/token parameters and voters, as for [`Dao::deploy`] (block clock only).
    pub dao: DaoOptions,
    pub nft_name: String,
    pub nft_symbol: String,
    /// Types configured at deployment (`setTypeBonus` if the bonus is not zero,
    /// `setSpecialBenefit` if either benefit is not zero).
    pub types: Vec<AchievementType>,
    /// NFTs minted at deployment (after the voters are set up), in order: (holder, type).
    pub achievements: Vec<(Address, u8)>,
}

impl Default for CbOptions {
    fn default() -> Self {
        CbOptions {
            dao: DaoOptions::default().governor_name("CBGovernorCore"),
            nft_name: "CultureBridge Achievement".to_owned(),
            nft_symbol: "CBA".to_owned(),
            types: default_achievement_types(),
            achievements: Vec::new(),
        }
    }
}

impl CbOptions {
    /// Defaults with these governance parameters (their voters included).
    pub fn with_dao(dao: DaoOptions) -> CbOptions {
        CbOptions { dao, ..CbOptions::default() }
    }
    /// Edits the governance parameters: `.dao_options(|d| d.voting_delay(2))`.
    pub fn dao_options(mut self, f: impl FnOnce(DaoOptions) -> DaoOptions) -> Self {
        self.dao = f(self.dao);
        self
    }
    /// Adds a self-delegated token holder.
    pub fn voter(mut self, wallet: LocalWallet, amount: U256) -> Self {
        self.dao = self.dao.voter(wallet, amount);
        self
    }
    /// Adds a token holder with explicit delegation.
    pub fn voter_with(mut self, voter: Voter) -> Self {
        self.dao = self.dao.voter_with(voter);
        self
    }
    /// No achievement type configured at deployment.
    pub fn no_types(mut self) -> Self {
        self.types.clear();
        self
    }
    /// Configures (or reconfigures) a type.
    pub fn achievement_type(mut self, t: AchievementType) -> Self {
        self.types.retain(|x| x.id != t.id);
        self.types.push(t);
        self
    }
    /// Mints an NFT of `achievement_type` to `to` at deployment.
    pub fn achievement(mut self, to: Address, achievement_type: u8) -> Self {
        self.achievements.push((to, achievement_type));
        self
    }
}

/// `GovernanceWeightBonusChanged(account, previousBonus, newBonus)`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BonusChange {
    pub account: Address,
    pub previous: U256,
    pub new: U256,
}

/// `SpecialBenefitsChanged(account, feeDiscountBps, priorityBoost)`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BenefitsChange {
    pub account: Address,
    pub fee_discount_bps: U256,
    pub priority_boost: U256,
}

/// The governor's `VoteCast(voter, proposalId, support, weight, reason)`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VoteCastLog {
    pub voter: Address,
    pub proposal_id: U256,
    pub support: u8,
    pub weight: U256,
    pub reason: String,
}

/// Every log of `receipt` emitted by `address` that is `event` of `abi`, decoded (parameters in
/// declaration order, indexed ones included).
pub fn decode_logs<D: Detokenize>(receipt: &Receipt, abi: &BaseContract, address: Address, event: &str) -> Vec<D> {
    govflow::testkit::decode_logs(receipt, abi, address, event).unwrap_or_else(|e| panic!("{e}"))
}

fn ok<T>(r: Result<T, TxError>) -> T {
    r.unwrap_or_else(|e| panic!("{e}"))
}

/// A deployed CultureBridge stack; derefs to the underlying [`Dao`].
pub struct CbDao {
    dao: Dao,
    pub cb_options: CbOptions,
    pub nft: Address,
    pub executor: Address,
    pub voting_manager: Address,
    pub nft_abi: BaseContract,
    pub executor_abi: BaseContract,
    pub voting_manager_abi: BaseContract,
    /// Token ids minted at deployment, in the order of `cb_options.achievements`.
    pub initial_achievements: Vec<U256>,
}

impl Deref for CbDao {
    type Target = Dao;
    fn deref(&self) -> &Dao {
        &self.dao
    }
}

impl std::fmt::Debug for CbDao {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CbDao")
            .field("dao", &self.dao)
            .field("nft", &self.nft)
            .field("executor", &self.executor)
            .field("voting_manager", &self.voting_manager)
            .finish()
    }
}

impl CbDao {
    /// Deploys, from `opts.dao.deployer` (default dev account 0, which owns the token, the NFT
    /// and the executor): GovToken; CBBenefitExecutor; CBAchievementNFT bound to it, and
    /// `executor.setAchievementNFT(nft)`; CBVotingManager(token, executor); then, like
    /// [`Dao::deploy`], CBTimelock, CBGovernorCore (votes from the voting manager), Target,
    /// the timelock roles and the voters' mints and delegations; then configures the
    /// achievement types and mints the initial achievements. `setup_block` is the last of
    /// those transactions. Requires automine.
    pub async fn deploy(anvil: &Anvil, opts: CbOptions) -> CbDao {
        assert_eq!(opts.dao.clock, ClockMode::BlockNumber, "the CultureBridge executor checkpoints on block numbers: use ClockMode::BlockNumber");
        let chain = anvil.chain();
        let deployer = Dao::deployer_wallet(anvil, &opts.dao);

        let (token, deployment_block) = Dao::deploy_token(chain, &deployer, &opts.dao).await;
        let voting = govflow::testkit::deploy::cb_voting(chain.kit(), &deployer, token, &opts.nft_name, &opts.nft_symbol)
            .await
            .unwrap_or_else(|e| panic!("deploy the CultureBridge voting contracts: {e}"));
        let (executor, nft, voting_manager) = (voting.executor, voting.nft, voting.voting_manager);
        let executor_abi = artifact(CB_BENEFIT_EXECUTOR).base();

        let dao = Dao::deploy_governance(chain, deployer, opts.dao.clone(), token, deployment_block, voting_manager, CB_STACK).await;
        let mut cb = CbDao {
            dao,
            cb_options: opts.clone(),
            nft,
            executor,
            voting_manager,
            nft_abi: artifact(CB_ACHIEVEMENT_NFT).base(),
            executor_abi,
            voting_manager_abi: artifact(CB_VOTING_MANAGER).base(),
            initial_achievements: Vec::new(),
        };

        let mut last = None;
        for t in &opts.types {
            if !t.bonus.is_zero() {
                last = Some(cb.set_type_bonus(t.id, t.bonus).await);
            }
            if t.fee_discount_bps != 0 || !t.priority_boost.is_zero() {
                last = Some(cb.set_special_benefit(t.id, t.fee_discount_bps, t.priority_boost).await);
            }
        }
        for &(to, t) in &opts.achievements {
            let (id, r) = cb.mint_achievement(to, t).await;
            cb.initial_achievements.push(id);
            last = Some(r);
        }
        if let Some(r) = last {
            cb.dao.setup_block = r.block_number;
        }
        cb
    }

    /// The underlying [`Dao`] (also reachable through `Deref`).
    pub fn dao(&self) -> &Dao {
        &self.dao
    }

    // ----- encoding helpers ------------------------------------------------------------------

    /// NFT calldata for `method(args)`.
    pub fn nft_calldata<T: Tokenize>(&self, method: &str, args: T) -> Bytes {
        self.nft_abi.encode(method, args).unwrap_or_else(|e| panic!("encode {method}: {e}"))
    }

    /// Executor calldata for `method(args)` (e.g. `setTypeBonus` in a proposal once the
    /// timelock owns the executor).
    pub fn executor_calldata<T: Tokenize>(&self, method: &str, args: T) -> Bytes {
        self.executor_abi.encode(method, args).unwrap_or_else(|e| panic!("encode {method}: {e}"))
    }

    /// Voting manager calldata for `method(args)`.
    pub fn voting_manager_calldata<T: Tokenize>(&self, method: &str, args: T) -> Bytes {
        self.voting_manager_abi.encode(method, args).unwrap_or_else(|e| panic!("encode {method}: {e}"))
    }

    // ----- actions (each panics with the decoded revert reason; try_* return Err instead) ---

    /// `nft.mint(to, achievementType)` by the deployer (the NFT's owner). Returns the token id
    /// (from the AchievementMinted event) and the receipt.
    pub async fn mint_achievement(&self, to: Address, achievement_type: u8) -> (U256, Receipt) {
        ok(self.try_mint_achievement(&self.deployer, to, achievement_type).await)
    }

    /// `nft.mint(to, achievementType)` sent by `sender`.
    pub async fn try_mint_achievement(&self, sender: &LocalWallet, to: Address, achievement_type: u8) -> Result<(U256, Receipt), TxError> {
        let data = self.nft_calldata("mint", (to, achievement_type));
        let receipt = self.chain().send(sender, self.nft, data).await?;
        let minted: Vec<(Address, U256, u8)> = decode_logs(&receipt, &self.nft_abi, self.nft, "AchievementMinted");
        assert_eq!(minted.len(), 1, "one AchievementMinted event expected: {minted:?}");
        assert_eq!((minted[0].0, minted[0].2), (to, achievement_type));
        Ok((minted[0].1, receipt))
    }

    /// `nft.transferFrom(from, to, tokenId)` by `from`.
    pub async fn transfer_achievement(&self, from: &LocalWallet, to: Address, token_id: U256) -> Receipt {
        ok(self.try_transfer_achievement(from, to, token_id).await)
    }

    pub async fn try_transfer_achievement(&self, from: &LocalWallet, to: Address, token_id: U256) -> Result<Receipt, TxError> {
        let data = self.nft_calldata("transferFrom", (from.address(), to, token_id));
        self.chain().send(from, self.nft, data).await
    }

    /// `nft.burn(tokenId)` by `owner` (the holder or an approved account).
    pub async fn burn_achievement(&self, owner: &LocalWallet, token_id: U256) -> Receipt {
        ok(self.try_burn_achievement(owner, token_id).await)
    }

    pub async fn try_burn_achievement(&self, owner: &LocalWallet, token_id: U256) -> Result<Receipt, TxError> {
        self.chain().send(owner, self.nft, self.nft_calldata("burn", token_id)).await
    }

    /// `executor.setTypeBonus(type, bonus)` by the deployer (the executor's owner).
    pub async fn set_type_bonus(&self, achievement_type: u8, bonus: U256) -> Receipt {
        ok(self.try_set_type_bonus(&self.deployer, achievement_type, bonus).await)
    }

    pub async fn try_set_type_bonus(&self, sender: &LocalWallet, achievement_type: u8, bonus: U256) -> Result<Receipt, TxError> {
        let data = self.executor_calldata("setTypeBonus", (achievement_type, bonus));
        self.chain().send(sender, self.executor, data).await
    }

    /// `executor.setSpecialBenefit(type, feeDiscountBps, priorityBoost)` by the deployer.
    pub async fn set_special_benefit(&self, achievement_type: u8, fee_discount_bps: u64, priority_boost: U256) -> Receipt {
        ok(self.try_set_special_benefit(&self.deployer, achievement_type, fee_discount_bps, priority_boost).await)
    }

    pub async fn try_set_special_benefit(
        &self,
        sender: &LocalWallet,
        achievement_type: u8,
        fee_discount_bps: u64,
        priority_boost: U256,
    ) -> Result<Receipt, TxError> {
        let data = self.executor_calldata("setSpecialBenefit", (achievement_type, U256::from(fee_discount_bps), priority_boost));
        self.chain().send(sender, self.executor, data).await
    }

    /// `executor.transferOwnership(newOwner)` by the deployer (e.g. to the timelock, so that
    /// type bonuses are set by proposals).
    pub async fn transfer_executor_ownership(&self, new_owner: Address) -> Receipt {
        ok(self.chain().send(&self.deployer, self.executor, self.executor_calldata("transferOwnership", new_owner)).await)
    }

    // ----- receipts --------------------------------------------------------------------------

    /// The executor's GovernanceWeightBonusChanged events in `receipt`, in log order.
    pub fn bonus_changes(&self, receipt: &Receipt) -> Vec<BonusChange> {
        decode_logs::<(Address, U256, U256)>(receipt, &self.executor_abi, self.executor, "GovernanceWeightBonusChanged")
            .into_iter()
            .map(|(account, previous, new)| BonusChange { account, previous, new })
            .collect()
    }

    /// The executor's SpecialBenefitsChanged events in `receipt`, in log order.
    pub fn benefits_changes(&self, receipt: &Receipt) -> Vec<BenefitsChange> {
        decode_logs::<(Address, U256, U256)>(receipt, &self.executor_abi, self.executor, "SpecialBenefitsChanged")
            .into_iter()
            .map(|(account, fee_discount_bps, priority_boost)| BenefitsChange { account, fee_discount_bps, priority_boost })
            .collect()
    }

    /// The governor's VoteCast events in `receipt`.
    pub fn votes_cast(&self, receipt: &Receipt) -> Vec<VoteCastLog> {
        decode_logs::<(Address, U256, u8, U256, String)>(receipt, &self.governor_abi, self.governor, "VoteCast")
            .into_iter()
            .map(|(voter, proposal_id, support, weight, reason)| VoteCastLog { voter, proposal_id, support, weight, reason })
            .collect()
    }

    // ----- views -----------------------------------------------------------------------------

    /// CultureBridge views at the latest block (governor/token views: [`Dao::view`]).
    pub fn cb_view(&self) -> CbView<'_> {
        CbView { cb: self, block: None }
    }

    /// CultureBridge views at block `n` (governor/token views: [`Dao::at`]).
    pub fn cb_at(&self, n: u64) -> CbView<'_> {
        CbView { cb: self, block: Some(n) }
    }

    /// `votingManager.getVotes(account)`: token votes + current bonus.
    pub async fn voting_manager_get_votes(&self, account: Address) -> U256 {
        self.cb_view().voting_manager_get_votes(account).await
    }
    /// `votingManager.getPastVotes(account, timepoint)`: what the governor counts at a snapshot.
    pub async fn voting_manager_get_past_votes(&self, account: Address, timepoint: u64) -> U256 {
        self.cb_view().voting_manager_get_past_votes(account, timepoint).await
    }
    /// `executor.getGovernanceWeightBonus(account)`.
    pub async fn bonus(&self, account: Address) -> U256 {
        self.cb_view().bonus(account).await
    }
    /// `executor.getPastGovernanceWeightBonus(account, timepoint)` (timepoint before the latest block).
    pub async fn past_bonus(&self, account: Address, timepoint: u64) -> U256 {
        self.cb_view().past_bonus(account, timepoint).await
    }
    /// `executor.getSpecialBenefits(account)`: (feeDiscountBps, priorityBoost).
    pub async fn special_benefits(&self, account: Address) -> (U256, U256) {
        self.cb_view().special_benefits(account).await
    }
}

/// Read-only calls on the NFT, executor and voting manager at a fixed block or at latest.
#[derive(Clone, Copy)]
pub struct CbView<'a> {
    cb: &'a CbDao,
    block: Option<u64>,
}

impl<'a> CbView<'a> {
    fn chain(&self) -> &'a Chain {
        self.cb.dao.chain()
    }
    /// The governor/token/timelock views at the same block.
    pub fn dao(&self) -> DaoView<'a> {
        match self.block {
            Some(n) => self.cb.dao.at(n),
            None => self.cb.dao.view(),
        }
    }
    pub async fn nft_call<T: Tokenize, D: Detokenize>(&self, method: &str, args: T) -> D {
        self.chain().call(&self.cb.nft_abi, self.cb.nft, method, args, self.block).await
    }
    pub async fn executor_call<T: Tokenize, D: Detokenize>(&self, method: &str, args: T) -> D {
        self.chain().call(&self.cb.executor_abi, self.cb.executor, method, args, self.block).await
    }
    pub async fn voting_manager_call<T: Tokenize, D: Detokenize>(&self, method: &str, args: T) -> D {
        self.chain().call(&self.cb.voting_manager_abi, self.cb.voting_manager, method, args, self.block).await
    }
    /// `executor.method(args)`, or the decoded revert.
    pub async fn try_executor_call<T: Tokenize, D: Detokenize>(&self, method: &str, args: T) -> Result<D, String> {
        self.chain().try_call(&self.cb.executor_abi, self.cb.executor, method, args, self.block).await
    }
    /// `nft.method(args)`, or the decoded revert.
    pub async fn try_nft_call<T: Tokenize, D: Detokenize>(&self, method: &str, args: T) -> Result<D, String> {
        self.chain().try_call(&self.cb.nft_abi, self.cb.nft, method, args, self.block).await
    }

    pub async fn voting_manager_get_votes(&self, account: Address) -> U256 {
        self.voting_manager_call("getVotes", account).await
    }
    pub async fn voting_manager_get_past_votes(&self, account: Address, timepoint: u64) -> U256 {
        self.voting_manager_call("getPastVotes", (account, U256::from(timepoint))).await
    }
    pub async fn voting_manager_get_past_total_supply(&self, timepoint: u64) -> U256 {
        self.voting_manager_call("getPastTotalSupply", U256::from(timepoint)).await
    }
    pub async fn bonus(&self, account: Address) -> U256 {
        self.executor_call("getGovernanceWeightBonus", account).await
    }
    pub async fn past_bonus(&self, account: Address, timepoint: u64) -> U256 {
        self.executor_call("getPastGovernanceWeightBonus", (account, U256::from(timepoint))).await
    }
    /// (feeDiscountBps, priorityBoost)
    pub async fn special_benefits(&self, account: Address) -> (U256, U256) {
        self.executor_call("getSpecialBenefits", account).await
    }
    pub async fn type_bonus(&self, achievement_type: u8) -> U256 {
        self.executor_call("typeBonus", achievement_type).await
    }
    /// (feeDiscountBps, priorityBoost) of a type.
    pub async fn type_special_benefit(&self, achievement_type: u8) -> (U256, U256) {
        self.executor_call("typeSpecialBenefit", achievement_type).await
    }
    pub async fn achievement_count(&self, account: Address, achievement_type: u8) -> u64 {
        self.executor_call::<_, U256>("achievementCount", (account, achievement_type)).await.as_u64()
    }
    pub async fn holder_count(&self, achievement_type: u8) -> u64 {
        self.executor_call::<_, U256>("holderCount", achievement_type).await.as_u64()
    }
    pub async fn num_bonus_checkpoints(&self, account: Address) -> u64 {
        self.executor_call::<_, U256>("numBonusCheckpoints", account).await.as_u64()
    }
    pub async fn achievement_type_of(&self, token_id: U256) -> u8 {
        self.nft_call("achievementTypeOf", token_id).await
    }
    pub async fn nft_owner_of(&self, token_id: U256) -> Address {
        self.nft_call("ownerOf", token_id).await
    }
    pub async fn nft_balance_of(&self, account: Address) -> u64 {
        self.nft_call::<_, U256>("balanceOf", account).await.as_u64()
    }
}

/// `keccak256` topic of `event` in `abi` (for filtering raw logs).
pub fn event_topic(abi: &BaseContract, event: &str) -> H256 {
    govflow::testkit::event_topic(abi, event).unwrap_or_else(|e| panic!("{e}"))
}
