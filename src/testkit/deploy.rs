//! Deployment sequences shared by the demo ([`crate::demo`]) and the integration tests
//! (`tests/support/dao.rs`, `tests/support/cb.rs`), so the two wire contracts the same way:
//! the governance half of an OpenZeppelin DAO ([`governance`]: a timelock, a governor counting a
//! votes source, Target, the timelock roles) and CultureBridge's voting half ([`cb_voting`]: the
//! benefit executor, the achievement NFT bound to it and the voting manager).

use ethers::abi::Token;
use ethers::signers::{LocalWallet, Signer};
use ethers::types::{Address, U256};

use super::artifacts::{self, artifact};
use super::{role, DevChain, Receipt, TestkitError};

/// The governor's constructor parameters (a `Governor` with the settings, quorum-fraction,
/// timelock-control and prevent-late-quorum extensions) and the timelock's delay.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GovernorParams {
    /// Governor name (EIP-712 domain too).
    pub name: String,
    /// Timepoints between a proposal and its snapshot.
    pub voting_delay: u64,
    /// Timepoints of voting.
    pub voting_period: u64,
    /// Votes needed to propose.
    pub proposal_threshold: U256,
    /// Quorum, percent of the supply at the snapshot.
    pub quorum_numerator: u64,
    /// Voting left after quorum is reached late.
    pub vote_extension: u64,
    /// Timelock delay, seconds.
    pub timelock_min_delay: u64,
}

/// What [`governance`] deployed.
#[derive(Debug, Clone)]
pub struct Governance {
    /// The timelock.
    pub timelock: Address,
    /// The governor.
    pub governor: Address,
    /// Target, what proposals call.
    pub target: Address,
    /// The governor's deployment block.
    pub governor_block: u64,
    /// The last transaction (the deployer renouncing the timelock's admin role).
    pub last: Receipt,
}

/// Deploys `timelock_artifact` (admin: the deployer, until the roles are set),
/// `governor_artifact` counting the votes of `votes` and Target; then the governor proposes
/// and cancels on the timelock, anyone executes, and the deployer renounces the timelock's
/// admin role.
pub async fn governance(
    chain: &DevChain,
    deployer: &LocalWallet,
    timelock_artifact: &str,
    governor_artifact: &str,
    votes: Address,
    p: &GovernorParams,
) -> Result<Governance, TestkitError> {
    let me = deployer.address();
    let (timelock, _) = chain
        .deploy(deployer, timelock_artifact, &[Token::Uint(p.timelock_min_delay.into()), Token::Array(vec![]), Token::Array(vec![]), Token::Address(me)])
        .await?;
    let (governor, r) = chain
        .deploy(
            deployer,
            governor_artifact,
            &[
                Token::String(p.name.clone()),
                Token::Address(votes),
                Token::Address(timelock),
                Token::Uint(p.voting_delay.into()),
                Token::Uint(p.voting_period.into()),
                Token::Uint(p.proposal_threshold),
                Token::Uint(p.quorum_numerator.into()),
                Token::Uint(p.vote_extension.into()),
            ],
        )
        .await?;
    let governor_block = r.block_number;
    let (target, _) = chain.deploy(deployer, artifacts::TARGET, &[]).await?;

    let abi = artifact(timelock_artifact)?.base();
    let encode = |method: &str, args: (ethers::types::H256, Address)| {
        abi.encode(method, args).map_err(|e| TestkitError::Artifact { name: timelock_artifact.into(), message: format!("cannot encode {method}: {e}") })
    };
    for (name, who) in [("PROPOSER_ROLE", governor), ("CANCELLER_ROLE", governor), ("EXECUTOR_ROLE", Address::zero())] {
        chain.send(deployer, timelock, encode("grantRole", (role(name), who))?).await?;
    }
    let last = chain.send(deployer, timelock, encode("renounceRole", (role("DEFAULT_ADMIN_ROLE"), me))?).await?;
    Ok(Governance { timelock, governor, target, governor_block, last })
}

/// What [`cb_voting`] deployed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CbVoting {
    /// CBBenefitExecutor (owner: the deployer).
    pub executor: Address,
    /// CBAchievementNFT (owner: the deployer), bound to the executor both ways.
    pub nft: Address,
    /// CBVotingManager: the token's votes plus the NFT bonus, what the governor counts.
    pub voting_manager: Address,
}

/// Deploys CultureBridge's voting half on `token`: CBBenefitExecutor; CBAchievementNFT bound
/// to it and `executor.setAchievementNFT(nft)`; CBVotingManager(token, executor).
pub async fn cb_voting(chain: &DevChain, deployer: &LocalWallet, token: Address, nft_name: &str, nft_symbol: &str) -> Result<CbVoting, TestkitError> {
    let me = deployer.address();
    let (executor, _) = chain.deploy(deployer, artifacts::CB_BENEFIT_EXECUTOR, &[Token::Address(me)]).await?;
    let (nft, _) = chain
        .deploy(
            deployer,
            artifacts::CB_ACHIEVEMENT_NFT,
            &[Token::String(nft_name.into()), Token::String(nft_symbol.into()), Token::Address(me), Token::Address(executor)],
        )
        .await?;
    let data = artifact(artifacts::CB_BENEFIT_EXECUTOR)?
        .base()
        .encode("setAchievementNFT", nft)
        .map_err(|e| TestkitError::Artifact { name: artifacts::CB_BENEFIT_EXECUTOR.into(), message: format!("cannot encode setAchievementNFT: {e}") })?;
    chain.send(deployer, executor, data).await?;
    let (voting_manager, _) = chain.deploy(deployer, artifacts::CB_VOTING_MANAGER, &[Token::Address(token), Token::Address(executor)]).await?;
    Ok(CbVoting { executor, nft, voting_manager })
}
