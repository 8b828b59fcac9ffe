//! Deploys the CultureBridge stack from the embedded artifacts and drives it: GovToken,
//! CBBenefitExecutor, CBAchievementNFT (bound to the executor), CBVotingManager (token votes +
//! NFT bonus), CBTimelock, CBGovernorCore (votes from the voting manager) and Target (what
//! proposals call), wired as the test harness wires it: the governor proposes and cancels on
//! the timelock, anyone executes, the deployer renounces the timelock's admin role and keeps
//! owning the token (mints), the NFT (achievement mints) and the executor (type benefits).

use ethers::abi::{Detokenize, Token, Tokenize};
use ethers::contract::BaseContract;
use ethers::signers::{LocalWallet, Signer};
use ethers::types::{Address, Bytes, H256, U256};
use ethers::utils::keccak256;

use super::DemoError;
use crate::testkit::artifacts::{self, artifact};
use crate::testkit::deploy::{CbVoting, Governance, GovernorParams};
use crate::testkit::{self, dev_wallets, event_topic, DevChain, Receipt};
pub use crate::testkit::{role, tokens};

/// Governance parameters of the demo DAO (block-number clock: durations in blocks, the
/// timelock delay in seconds).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GovernanceParams {
    /// Governor name (EIP-712 domain too).
    pub governor_name: String,
    /// Token name and symbol.
    pub token_name: String,
    /// Token symbol.
    pub token_symbol: String,
    /// NFT name.
    pub nft_name: String,
    /// NFT symbol.
    pub nft_symbol: String,
    /// Blocks between a proposal and its snapshot.
    pub voting_delay: u64,
    /// Blocks of voting.
    pub voting_period: u64,
    /// Votes needed to propose.
    pub proposal_threshold: U256,
    /// Quorum, percent of the token supply at the snapshot (for + abstain count).
    pub quorum_numerator: u64,
    /// GovernorPreventLateQuorum: blocks of voting left after quorum is reached late.
    pub vote_extension: u64,
    /// Timelock delay, seconds.
    pub timelock_min_delay: u64,
}

impl Default for GovernanceParams {
    fn default() -> Self {
        GovernanceParams {
            governor_name: "CultureBridge Governor".into(),
            token_name: "CultureBridge Token".into(),
            token_symbol: "CBT".into(),
            nft_name: "CultureBridge Achievement".into(),
            nft_symbol: "CBA".into(),
            voting_delay: 5,
            voting_period: 60,
            proposal_threshold: tokens(25),
            quorum_numerator: 10,
            vote_extension: 10,
            timelock_min_delay: 3600,
        }
    }
}

/// One achievement type's configuration on the executor.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AchievementType {
    /// Type id (1..=255).
    pub id: u8,
    /// Weight bonus per NFT held, token units.
    pub bonus: U256,
    /// Proposal-fee discount, basis points.
    pub fee_discount_bps: u64,
    /// Priority boost.
    pub priority_boost: u64,
}

/// The demo's types: 1 = +5 tokens of weight; 2 = +20 tokens, 250 bps fee discount, priority
/// boost 1; 3 = no weight bonus, 500 bps fee discount.
pub fn achievement_types() -> Vec<AchievementType> {
    vec![
        AchievementType { id: 1, bonus: tokens(5), fee_discount_bps: 0, priority_boost: 0 },
        AchievementType { id: 2, bonus: tokens(20), fee_discount_bps: 250, priority_boost: 1 },
        AchievementType { id: 3, bonus: U256::zero(), fee_discount_bps: 500, priority_boost: 0 },
    ]
}

/// The ABIs of the deployed contracts.
#[derive(Debug, Clone)]
pub struct Abis {
    /// GovToken.
    pub token: BaseContract,
    /// CBAchievementNFT.
    pub nft: BaseContract,
    /// CBBenefitExecutor.
    pub executor: BaseContract,
    /// CBVotingManager.
    pub voting_manager: BaseContract,
    /// CBTimelock.
    pub timelock: BaseContract,
    /// CBGovernorCore.
    pub governor: BaseContract,
    /// Target.
    pub target: BaseContract,
}

/// A deployed CultureBridge stack.
#[derive(Debug, Clone)]
pub struct CbDeployment {
    /// The chain it lives on.
    pub chain: DevChain,
    /// Dev account 0: deployed everything; owns the token, the NFT and the executor.
    pub deployer: LocalWallet,
    /// Governance parameters.
    pub params: GovernanceParams,
    /// Achievement types configured.
    pub types: Vec<AchievementType>,
    /// GovToken.
    pub token: Address,
    /// CBAchievementNFT.
    pub nft: Address,
    /// CBBenefitExecutor.
    pub executor: Address,
    /// CBVotingManager (the governor's `token()`).
    pub voting_manager: Address,
    /// CBTimelock.
    pub timelock: Address,
    /// CBGovernorCore.
    pub governor: Address,
    /// Target.
    pub target: Address,
    /// Block of the first deployment (the token).
    pub deployment_block: u64,
    /// Block the governor was deployed in.
    pub governor_block: u64,
    /// Block of the last setup transaction.
    pub setup_block: u64,
    /// ABIs.
    pub abi: Abis,
}

/// A proposal's parameters (OpenZeppelin 5 identifies proposals by their hash).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProposalCall {
    /// Proposal id.
    pub id: U256,
    /// Targets.
    pub targets: Vec<Address>,
    /// Values.
    pub values: Vec<U256>,
    /// Calldatas.
    pub calldatas: Vec<Bytes>,
    /// Description.
    pub description: String,
}

impl ProposalCall {
    fn tokens(&self) -> (Vec<Address>, Vec<U256>, Vec<Bytes>, H256) {
        (self.targets.clone(), self.values.clone(), self.calldatas.clone(), H256(keccak256(self.description.as_bytes())))
    }
}

/// The governor's `VoteCast(voter, proposalId, support, weight, reason)`, with where it was mined.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VoteCast {
    /// Voter.
    pub voter: Address,
    /// Proposal id.
    pub proposal_id: U256,
    /// 0 against, 1 for, 2 abstain.
    pub support: u8,
    /// Weight counted.
    pub weight: U256,
    /// Reason (empty for `castVote`).
    pub reason: String,
    /// Block.
    pub block: u64,
    /// Transaction.
    pub tx: H256,
}

/// Dev account `index` of anvil's default mnemonic, for chain `chain_id`.
pub fn dev_wallet(index: u32, chain_id: u64) -> Result<LocalWallet, DemoError> {
    let w = dev_wallets().get(index as usize).ok_or_else(|| DemoError::Story(format!("there is no dev account {index}")))?;
    Ok(w.clone().with_chain_id(chain_id))
}

/// Deploys and wires the CultureBridge stack with [`GovernanceParams::default`] and
/// [`achievement_types`] on the dev chain at `rpc_url` (automine), from dev account 0.
pub async fn deploy(rpc_url: &str) -> Result<CbDeployment, DemoError> {
    deploy_with(rpc_url, GovernanceParams::default(), achievement_types()).await
}

/// [`deploy`] with other parameters and types.
pub async fn deploy_with(rpc_url: &str, params: GovernanceParams, types: Vec<AchievementType>) -> Result<CbDeployment, DemoError> {
    let chain = DevChain::connect(rpc_url).await?;
    let deployer = dev_wallet(0, chain.chain_id())?;
    let me = deployer.address();
    let abi = Abis {
        token: artifact(artifacts::GOV_TOKEN)?.base(),
        nft: artifact(artifacts::CB_ACHIEVEMENT_NFT)?.base(),
        executor: artifact(artifacts::CB_BENEFIT_EXECUTOR)?.base(),
        voting_manager: artifact(artifacts::CB_VOTING_MANAGER)?.base(),
        timelock: artifact(artifacts::CB_TIMELOCK)?.base(),
        governor: artifact(artifacts::CB_GOVERNOR_CORE)?.base(),
        target: artifact(artifacts::TARGET)?.base(),
    };
    let encode = |c: &BaseContract, method: &str, args: Vec<Token>| encode_with(c, method, args.as_slice());

    // Token, then the voting half (executor, NFT bound to it, voting manager) and the
    // governance half (timelock, governor, Target, roles) as the tests deploy them.
    let (token, r) = chain
        .deploy(&deployer, artifacts::GOV_TOKEN, &[Token::String(params.token_name.clone()), Token::String(params.token_symbol.clone()), Token::Address(me)])
        .await?;
    let deployment_block = r.block_number;
    let CbVoting { executor, nft, voting_manager } = testkit::deploy::cb_voting(&chain, &deployer, token, &params.nft_name, &params.nft_symbol).await?;
    let governor_params = GovernorParams {
        name: params.governor_name.clone(),
        voting_delay: params.voting_delay,
        voting_period: params.voting_period,
        proposal_threshold: params.proposal_threshold,
        quorum_numerator: params.quorum_numerator,
        vote_extension: params.vote_extension,
        timelock_min_delay: params.timelock_min_delay,
    };
    let Governance { timelock, governor, target, governor_block, last } =
        testkit::deploy::governance(&chain, &deployer, artifacts::CB_TIMELOCK, artifacts::CB_GOVERNOR_CORE, voting_manager, &governor_params).await?;
    let mut last = last;

    // Achievement types: bonuses and special benefits.
    for t in &types {
        if !t.bonus.is_zero() {
            let data = encode(&abi.executor, "setTypeBonus", vec![Token::Uint(t.id.into()), Token::Uint(t.bonus)])?;
            last = chain.send(&deployer, executor, data).await?;
        }
        if t.fee_discount_bps != 0 || t.priority_boost != 0 {
            let data = encode(
                &abi.executor,
                "setSpecialBenefit",
                vec![Token::Uint(t.id.into()), Token::Uint(t.fee_discount_bps.into()), Token::Uint(t.priority_boost.into())],
            )?;
            last = chain.send(&deployer, executor, data).await?;
        }
    }
    let setup_block = last.block_number;
    Ok(CbDeployment {
        chain,
        deployer,
        params,
        types,
        token,
        nft,
        executor,
        voting_manager,
        timelock,
        governor,
        target,
        deployment_block,
        governor_block,
        setup_block,
        abi,
    })
}

fn encode_with<T: Tokenize>(c: &BaseContract, method: &str, args: T) -> Result<Bytes, DemoError> {
    c.encode(method, args).map_err(|e| DemoError::Story(format!("cannot encode {method}: {e}")))
}

impl CbDeployment {
    // ----- actions (automine: each waits for its receipt) ----------------------------------

    /// `token.mint(to, amount)` by the deployer.
    pub async fn mint_tokens(&self, to: Address, amount: U256) -> Result<Receipt, DemoError> {
        Ok(self.chain.send(&self.deployer, self.token, encode_with(&self.abi.token, "mint", (to, amount))?).await?)
    }

    /// `token.delegate(to)` by `from`.
    pub async fn delegate(&self, from: &LocalWallet, to: Address) -> Result<Receipt, DemoError> {
        Ok(self.chain.send(from, self.token, encode_with(&self.abi.token, "delegate", to)?).await?)
    }

    /// `token.transfer(to, amount)` by `from`.
    pub async fn transfer_tokens(&self, from: &LocalWallet, to: Address, amount: U256) -> Result<Receipt, DemoError> {
        Ok(self.chain.send(from, self.token, encode_with(&self.abi.token, "transfer", (to, amount))?).await?)
    }

    /// `nft.mint(to, type)` by the deployer; returns the NFT id (AchievementMinted).
    pub async fn mint_achievement(&self, to: Address, achievement_type: u8) -> Result<(U256, Receipt), DemoError> {
        let r = self.chain.send(&self.deployer, self.nft, encode_with(&self.abi.nft, "mint", (to, achievement_type))?).await?;
        let minted: Vec<(Address, U256, u8)> = decode_logs(&r, &self.abi.nft, self.nft, "AchievementMinted")?;
        let id = minted.first().map(|m| m.1).ok_or_else(|| DemoError::Story("no AchievementMinted event in the mint's receipt".into()))?;
        Ok((id, r))
    }

    /// `nft.transferFrom(from, to, id)` by `from`.
    pub async fn transfer_achievement(&self, from: &LocalWallet, to: Address, id: U256) -> Result<Receipt, DemoError> {
        let data = encode_with(&self.abi.nft, "transferFrom", (from.address(), to, id))?;
        Ok(self.chain.send(from, self.nft, data).await?)
    }

    /// Proposes `Target.setValue(value)`; returns the proposal (id from ProposalCreated).
    pub async fn propose_set_value(&self, proposer: &LocalWallet, value: u64, description: &str) -> Result<(ProposalCall, Receipt), DemoError> {
        let call = encode_with(&self.abi.target, "setValue", U256::from(value))?;
        let mut p = ProposalCall {
            id: U256::zero(),
            targets: vec![self.target],
            values: vec![U256::zero()],
            calldatas: vec![call],
            description: description.to_owned(),
        };
        let data = encode_with(&self.abi.governor, "propose", (p.targets.clone(), p.values.clone(), p.calldatas.clone(), p.description.clone()))?;
        let r = self.chain.send(proposer, self.governor, data).await?;
        let topic = event_topic(&self.abi.governor, "ProposalCreated")?;
        let log = r
            .logs
            .iter()
            .find(|l| l.address == self.governor && l.topics.first() == Some(&topic))
            .ok_or_else(|| DemoError::Story("no ProposalCreated event in the proposal's receipt".into()))?;
        p.id = U256::from_big_endian(log.data.get(..32).unwrap_or_default());
        Ok((p, r))
    }

    /// `castVote` (empty reason) or `castVoteWithReason`; returns the VoteCast event.
    pub async fn vote(&self, voter: &LocalWallet, id: U256, support: u8, reason: &str) -> Result<VoteCast, DemoError> {
        let data = if reason.is_empty() {
            encode_with(&self.abi.governor, "castVote", (id, support))?
        } else {
            encode_with(&self.abi.governor, "castVoteWithReason", (id, support, reason.to_owned()))?
        };
        let r = self.chain.send(voter, self.governor, data).await?;
        let cast: Vec<(Address, U256, u8, U256, String)> = decode_logs(&r, &self.abi.governor, self.governor, "VoteCast")?;
        let (voter, proposal_id, support, weight, reason) =
            cast.into_iter().next().ok_or_else(|| DemoError::Story("no VoteCast event in the vote's receipt".into()))?;
        Ok(VoteCast { voter, proposal_id, support, weight, reason, block: r.block_number, tx: r.tx_hash })
    }

    /// `cancel(...)` by the proposer (allowed while Pending).
    pub async fn cancel(&self, proposer: &LocalWallet, p: &ProposalCall) -> Result<Receipt, DemoError> {
        Ok(self.chain.send(proposer, self.governor, encode_with(&self.abi.governor, "cancel", p.tokens())?).await?)
    }

    /// `queue(...)` by the deployer.
    pub async fn queue(&self, p: &ProposalCall) -> Result<Receipt, DemoError> {
        Ok(self.chain.send(&self.deployer, self.governor, encode_with(&self.abi.governor, "queue", p.tokens())?).await?)
    }

    /// `execute(...)` by the deployer.
    pub async fn execute(&self, p: &ProposalCall) -> Result<Receipt, DemoError> {
        Ok(self.chain.send(&self.deployer, self.governor, encode_with(&self.abi.governor, "execute", p.tokens())?).await?)
    }

    // ----- views (latest block unless `at`) ------------------------------------------------

    /// A governor view.
    pub async fn governor_call<T: Tokenize, D: Detokenize>(&self, method: &str, args: T, at: Option<u64>) -> Result<D, DemoError> {
        Ok(self.chain.call(&self.abi.governor, self.governor, method, args, at).await?)
    }

    /// A voting-manager view.
    pub async fn voting_manager_call<T: Tokenize, D: Detokenize>(&self, method: &str, args: T, at: Option<u64>) -> Result<D, DemoError> {
        Ok(self.chain.call(&self.abi.voting_manager, self.voting_manager, method, args, at).await?)
    }

    /// An executor view.
    pub async fn executor_call<T: Tokenize, D: Detokenize>(&self, method: &str, args: T, at: Option<u64>) -> Result<D, DemoError> {
        Ok(self.chain.call(&self.abi.executor, self.executor, method, args, at).await?)
    }

    /// A token view.
    pub async fn token_call<T: Tokenize, D: Detokenize>(&self, method: &str, args: T, at: Option<u64>) -> Result<D, DemoError> {
        Ok(self.chain.call(&self.abi.token, self.token, method, args, at).await?)
    }

    /// `state(id)` (see [`super::story::ProposalState`]).
    pub async fn state(&self, id: U256) -> Result<u8, DemoError> {
        self.governor_call("state", id, None).await
    }

    /// `proposalVotes(id)`: (against, for, abstain).
    pub async fn proposal_votes(&self, id: U256) -> Result<(U256, U256, U256), DemoError> {
        self.governor_call("proposalVotes", id, None).await
    }

    /// `proposalSnapshot(id)`.
    pub async fn proposal_snapshot(&self, id: U256) -> Result<u64, DemoError> {
        Ok(self.governor_call::<_, U256>("proposalSnapshot", id, None).await?.as_u64())
    }

    /// `proposalDeadline(id)` (late-quorum extension included).
    pub async fn proposal_deadline(&self, id: U256) -> Result<u64, DemoError> {
        Ok(self.governor_call::<_, U256>("proposalDeadline", id, None).await?.as_u64())
    }

    /// `proposalEta(id)` (a timestamp; 0 if not queued).
    pub async fn proposal_eta(&self, id: U256) -> Result<u64, DemoError> {
        Ok(self.governor_call::<_, U256>("proposalEta", id, None).await?.as_u64())
    }

    /// `hasVoted(id, account)`.
    pub async fn has_voted(&self, id: U256, account: Address) -> Result<bool, DemoError> {
        self.governor_call("hasVoted", (id, account), None).await
    }

    /// `quorum(timepoint)`.
    pub async fn quorum(&self, timepoint: u64) -> Result<U256, DemoError> {
        self.governor_call("quorum", U256::from(timepoint), None).await
    }

    /// `votingManager.getVotes(account)`: token votes + current NFT bonus.
    pub async fn get_votes(&self, account: Address) -> Result<U256, DemoError> {
        self.voting_manager_call("getVotes", account, None).await
    }

    /// `votingManager.getPastVotes(account, timepoint)`: what the governor counts at a snapshot.
    pub async fn get_past_votes(&self, account: Address, timepoint: u64) -> Result<U256, DemoError> {
        self.voting_manager_call("getPastVotes", (account, U256::from(timepoint)), None).await
    }

    /// `executor.getGovernanceWeightBonus(account)`.
    pub async fn bonus(&self, account: Address) -> Result<U256, DemoError> {
        self.executor_call("getGovernanceWeightBonus", account, None).await
    }

    /// `executor.getPastGovernanceWeightBonus(account, timepoint)`.
    pub async fn past_bonus(&self, account: Address, timepoint: u64) -> Result<U256, DemoError> {
        self.executor_call("getPastGovernanceWeightBonus", (account, U256::from(timepoint)), None).await
    }

    /// `executor.getSpecialBenefits(account)`: (feeDiscountBps, priorityBoost).
    pub async fn special_benefits(&self, account: Address) -> Result<(U256, U256), DemoError> {
        self.executor_call("getSpecialBenefits", account, None).await
    }

    /// `token.balanceOf(account)`.
    pub async fn balance_of(&self, account: Address) -> Result<U256, DemoError> {
        self.token_call("balanceOf", account, None).await
    }

    /// `token.delegates(account)`.
    pub async fn delegates(&self, account: Address) -> Result<Address, DemoError> {
        self.token_call("delegates", account, None).await
    }
}

/// Every `event` log of `address` in `receipt`, decoded with `abi`.
pub fn decode_logs<D: Detokenize>(receipt: &Receipt, abi: &BaseContract, address: Address, event: &str) -> Result<Vec<D>, DemoError> {
    Ok(crate::testkit::decode_logs(receipt, abi, address, event)?)
}
