//! Deploys and drives a governance stack (token, timelock, TestGovernor, Target) from the
//! committed artifacts.

use std::collections::HashMap;
use std::fmt;
use std::sync::Mutex;

use ethers::abi::{self, Detokenize, Token, Tokenize};
use ethers::contract::BaseContract;
use ethers::signers::{LocalWallet, Signer};
use ethers::types::{Address, Bytes, H256, U256};
use ethers::utils::keccak256;

use super::anvil::Anvil;
use super::artifacts::{self, artifact};
use super::chain::{Chain, Receipt, TxError};
use govflow::testkit::deploy::GovernorParams;

/// Which ERC-6372 clock the token (and so the governor) uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ClockMode {
    /// `block.number` (GovToken; CLOCK_MODE "mode=blocknumber&from=default").
    BlockNumber,
    /// `block.timestamp` (GovTokenTimestamp; CLOCK_MODE "mode=timestamp").
    Timestamp,
}

/// The governor's `ProposalState`, in the contract's order.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[repr(u8)]
pub enum ProposalState {
    Pending = 0,
    Active = 1,
    Canceled = 2,
    Defeated = 3,
    Succeeded = 4,
    Queued = 5,
    Expired = 6,
    Executed = 7,
}

impl ProposalState {
    pub fn from_u8(v: u8) -> ProposalState {
        match v {
            0 => ProposalState::Pending,
            1 => ProposalState::Active,
            2 => ProposalState::Canceled,
            3 => ProposalState::Defeated,
            4 => ProposalState::Succeeded,
            5 => ProposalState::Queued,
            6 => ProposalState::Expired,
            7 => ProposalState::Executed,
            _ => panic!("invalid ProposalState {v}"),
        }
    }
}

impl PartialEq<u8> for ProposalState {
    fn eq(&self, other: &u8) -> bool {
        *self as u8 == *other
    }
}

impl PartialEq<ProposalState> for u8 {
    fn eq(&self, other: &ProposalState) -> bool {
        *self == *other as u8
    }
}

/// How a voter's tokens are delegated at deployment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Delegation {
    /// `delegate(self)`: the voter's own votes count.
    SelfDelegate,
    /// No delegation: the tokens carry no votes yet.
    None,
    /// `delegate(to)`.
    To(Address),
}

/// A token holder created at deployment.
#[derive(Debug, Clone)]
pub struct Voter {
    pub wallet: LocalWallet,
    pub amount: U256,
    pub delegation: Delegation,
}

impl Voter {
    /// Minted `amount`, self-delegated.
    pub fn new(wallet: LocalWallet, amount: U256) -> Voter {
        Voter { wallet, amount, delegation: Delegation::SelfDelegate }
    }

    /// Minted `amount`, not delegated.
    pub fn undelegated(wallet: LocalWallet, amount: U256) -> Voter {
        Voter { wallet, amount, delegation: Delegation::None }
    }

    /// Minted `amount`, delegated to `to`.
    pub fn delegating_to(wallet: LocalWallet, amount: U256, to: Address) -> Voter {
        Voter { wallet, amount, delegation: Delegation::To(to) }
    }

    pub fn address(&self) -> Address {
        self.wallet.address()
    }
}

/// Deployment parameters. Durations are in the clock's unit: blocks, or seconds in
/// [`ClockMode::Timestamp`]; the timelock delay is always seconds.
#[derive(Debug, Clone)]
pub struct DaoOptions {
    pub clock: ClockMode,
    pub governor_name: String,
    pub token_name: String,
    pub token_symbol: String,
    /// uint48
    pub voting_delay: u64,
    /// uint32
    pub voting_period: u64,
    pub proposal_threshold: U256,
    /// Quorum as a percentage of the past total supply (denominator 100).
    pub quorum_numerator: u64,
    /// GovernorPreventLateQuorum extension (uint48); 0 disables it in effect.
    pub vote_extension: u64,
    /// TimelockController min delay, seconds.
    pub timelock_min_delay: u64,
    pub voters: Vec<Voter>,
    /// Deploys everything and owns the token (so it can `mint`). Default: dev account 0.
    pub deployer: Option<LocalWallet>,
}

impl Default for DaoOptions {
    fn default() -> Self {
        DaoOptions {
            clock: ClockMode::BlockNumber,
            governor_name: "TestGovernor".to_owned(),
            token_name: "GovToken".to_owned(),
            token_symbol: "GOV".to_owned(),
            voting_delay: 1,
            voting_period: 10,
            proposal_threshold: U256::zero(),
            quorum_numerator: 4,
            vote_extension: 0,
            timelock_min_delay: 60,
            voters: Vec::new(),
            deployer: None,
        }
    }
}

impl DaoOptions {
    /// Defaults with the given clock.
    pub fn with_clock(clock: ClockMode) -> DaoOptions {
        DaoOptions { clock, ..DaoOptions::default() }
    }
    pub fn clock(mut self, clock: ClockMode) -> Self {
        self.clock = clock;
        self
    }
    pub fn voting_delay(mut self, v: u64) -> Self {
        self.voting_delay = v;
        self
    }
    pub fn voting_period(mut self, v: u64) -> Self {
        self.voting_period = v;
        self
    }
    pub fn proposal_threshold(mut self, v: U256) -> Self {
        self.proposal_threshold = v;
        self
    }
    pub fn quorum_numerator(mut self, percent: u64) -> Self {
        self.quorum_numerator = percent;
        self
    }
    pub fn vote_extension(mut self, v: u64) -> Self {
        self.vote_extension = v;
        self
    }
    pub fn timelock_min_delay(mut self, secs: u64) -> Self {
        self.timelock_min_delay = secs;
        self
    }
    pub fn governor_name(mut self, name: &str) -> Self {
        self.governor_name = name.to_owned();
        self
    }
    pub fn deployer(mut self, wallet: LocalWallet) -> Self {
        self.deployer = Some(wallet);
        self
    }
    /// Adds every wallet as a self-delegated voter, wallet `i` holding `i + 1` tokens (distinct
    /// weights, so tallies tell the voters apart).
    pub fn graded_voters(self, wallets: &[LocalWallet]) -> Self {
        wallets.iter().enumerate().fold(self, |o, (i, w)| o.voter(w.clone(), super::tokens(1 + i as u64)))
    }
    /// Adds a self-delegated voter.
    pub fn voter(mut self, wallet: LocalWallet, amount: U256) -> Self {
        self.voters.push(Voter::new(wallet, amount));
        self
    }
    /// Adds a voter with explicit delegation.
    pub fn voter_with(mut self, voter: Voter) -> Self {
        self.voters.push(voter);
        self
    }
}

/// The four deployed addresses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DaoAddresses {
    pub token: Address,
    pub timelock: Address,
    pub governor: Address,
    pub target: Address,
}

/// Timelock and governor artifacts [`Dao::deploy_governance`] deploys. Both governors take the
/// same constructor arguments and the timelocks are plain TimelockControllers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StackArtifacts {
    pub timelock: &'static str,
    pub governor: &'static str,
}

impl StackArtifacts {
    /// GovTimelock + TestGovernor, what [`Dao::deploy`] uses.
    pub const TEST: StackArtifacts = StackArtifacts { timelock: artifacts::GOV_TIMELOCK, governor: artifacts::TEST_GOVERNOR };
}

/// Everything needed to queue/execute/cancel a proposal (OZ 5 identifies proposals by hash).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProposalParams {
    pub id: U256,
    pub proposer: Address,
    pub targets: Vec<Address>,
    pub values: Vec<U256>,
    pub calldatas: Vec<Bytes>,
    pub description: String,
    pub description_hash: H256,
}

impl ProposalParams {
    /// `(targets, values, calldatas, descriptionHash)` as ABI tokens.
    pub fn tokens(&self) -> (Vec<Address>, Vec<U256>, Vec<Bytes>, H256) {
        (self.targets.clone(), self.values.clone(), self.calldatas.clone(), self.description_hash)
    }
}

/// Something that identifies a proposal: its id (for proposals made through this [`Dao`]) or
/// its full parameters.
pub trait ProposalRef {
    fn params(&self, dao: &Dao) -> ProposalParams;
}

impl ProposalRef for U256 {
    fn params(&self, dao: &Dao) -> ProposalParams {
        dao.proposal(*self)
    }
}

impl ProposalRef for &ProposalParams {
    fn params(&self, _dao: &Dao) -> ProposalParams {
        (*self).clone()
    }
}

impl ProposalRef for ProposalParams {
    fn params(&self, _dao: &Dao) -> ProposalParams {
        self.clone()
    }
}

/// A deployed governance stack.
pub struct Dao {
    chain: Chain,
    pub options: DaoOptions,
    pub clock_mode: ClockMode,
    pub deployer: LocalWallet,
    pub token: Address,
    pub timelock: Address,
    pub governor: Address,
    pub target: Address,
    /// Block of the first deployment transaction (the token).
    pub deployment_block: u64,
    /// Block the governor was deployed in.
    pub governor_deployment_block: u64,
    /// Block of the last setup transaction (roles, mints, delegations).
    pub setup_block: u64,
    pub token_abi: BaseContract,
    pub governor_abi: BaseContract,
    pub timelock_abi: BaseContract,
    pub target_abi: BaseContract,
    proposals: Mutex<HashMap<U256, ProposalParams>>,
}

impl fmt::Debug for Dao {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Dao")
            .field("clock_mode", &self.clock_mode)
            .field("addresses", &self.addresses())
            .field("deployment_block", &self.deployment_block)
            .finish()
    }
}

fn ok<T>(r: Result<T, TxError>) -> T {
    r.unwrap_or_else(|e| panic!("{e}"))
}

/// Role ids of OZ's TimelockController.
pub use govflow::testkit::role;

impl Dao {
    /// Deploys token, timelock, governor and target from `opts.deployer` (default dev account
    /// 0), wires the timelock roles (governor: proposer + canceller; executor: anyone; the
    /// deployer renounces admin), mints to the voters and applies their delegations.
    /// Requires automine.
    pub async fn deploy(anvil: &Anvil, opts: DaoOptions) -> Dao {
        let deployer = Dao::deployer_wallet(anvil, &opts);
        let (token, deployment_block) = Dao::deploy_token(anvil.chain(), &deployer, &opts).await;
        Dao::deploy_governance(anvil.chain(), deployer, opts, token, deployment_block, token, StackArtifacts::TEST).await
    }

    /// The wallet that deploys and owns everything: `opts.deployer`, default dev account 0
    /// (with the chain's id).
    pub fn deployer_wallet(anvil: &Anvil, opts: &DaoOptions) -> LocalWallet {
        opts.deployer.clone().unwrap_or_else(|| anvil.wallet(0)).with_chain_id(anvil.chain_id)
    }

    /// Artifact name of the voting token for `clock`.
    pub fn token_artifact(clock: ClockMode) -> &'static str {
        match clock {
            ClockMode::BlockNumber => artifacts::GOV_TOKEN,
            ClockMode::Timestamp => artifacts::GOV_TOKEN_TIMESTAMP,
        }
    }

    /// First step of [`Dao::deploy`]: the voting token (owned by `deployer`). Returns its
    /// address and deployment block.
    pub async fn deploy_token(chain: &Chain, deployer: &LocalWallet, opts: &DaoOptions) -> (Address, u64) {
        let (token, r) = ok(chain
            .deploy(
                deployer,
                Dao::token_artifact(opts.clock),
                &[Token::String(opts.token_name.clone()), Token::String(opts.token_symbol.clone()), Token::Address(deployer.address())],
            )
            .await);
        (token, r.block_number)
    }

    /// The rest of [`Dao::deploy`] once the token exists: deploys `stack.timelock`, then
    /// `stack.governor` reading votes from `votes` (the token itself, or a contract in front
    /// of it with the same IVotes interface), then Target; wires the timelock roles, funds,
    /// mints to and delegates for the voters. `deployment_block` is the token's.
    pub async fn deploy_governance(
        chain: &Chain,
        deployer: LocalWallet,
        opts: DaoOptions,
        token: Address,
        deployment_block: u64,
        votes: Address,
        stack: StackArtifacts,
    ) -> Dao {
        let chain = chain.clone();
        assert!(opts.voting_delay < (1 << 48), "voting_delay must fit uint48");
        assert!(opts.voting_period <= u32::MAX as u64, "voting_period must fit uint32");
        assert!(opts.vote_extension < (1 << 48), "vote_extension must fit uint48");
        let params = GovernorParams {
            name: opts.governor_name.clone(),
            voting_delay: opts.voting_delay,
            voting_period: opts.voting_period,
            proposal_threshold: opts.proposal_threshold,
            quorum_numerator: opts.quorum_numerator,
            vote_extension: opts.vote_extension,
            timelock_min_delay: opts.timelock_min_delay,
        };
        let g = govflow::testkit::deploy::governance(chain.kit(), &deployer, stack.timelock, stack.governor, votes, &params)
            .await
            .unwrap_or_else(|e| panic!("deploy the governance contracts: {e}"));
        let addresses = DaoAddresses { token, timelock: g.timelock, governor: g.governor, target: g.target };
        let mut dao = Dao::assemble(&chain, deployer.clone(), opts, addresses, deployment_block, g.governor_block, stack);
        let last = g.last;
        let last = dao.setup_voters().await.unwrap_or(last);
        dao.setup_block = last.block_number;
        dao
    }

    /// A `Dao` handle on contracts deployed elsewhere (e.g. another timelock kind, see
    /// `support::compound`): `stack` names the artifacts whose ABIs the helpers use (the
    /// governor's must have the OZ 5 `Governor` functions), the token's is chosen by
    /// `opts.clock`. `setup_block` starts at 0. Sends nothing.
    pub fn assemble(
        chain: &Chain,
        deployer: LocalWallet,
        opts: DaoOptions,
        addresses: DaoAddresses,
        deployment_block: u64,
        governor_deployment_block: u64,
        stack: StackArtifacts,
    ) -> Dao {
        let DaoAddresses { token, timelock, governor, target } = addresses;
        Dao {
            chain: chain.clone(),
            clock_mode: opts.clock,
            deployer,
            token,
            timelock,
            governor,
            target,
            deployment_block,
            governor_deployment_block,
            setup_block: 0,
            token_abi: artifact(Dao::token_artifact(opts.clock)).base(),
            governor_abi: artifact(stack.governor).base(),
            timelock_abi: artifact(stack.timelock).base(),
            target_abi: artifact(artifacts::TARGET).base(),
            proposals: Mutex::new(HashMap::new()),
            options: opts,
        }
    }

    /// The voters of `self.options`: makes sure each can pay gas, mints its tokens (the
    /// deployer owns the token) and applies its delegation. Returns the last receipt, if any
    /// transaction was sent. Part of [`Dao::deploy_governance`].
    pub async fn setup_voters(&self) -> Option<Receipt> {
        let mut last = None;
        for v in &self.options.voters {
            if self.chain.balance(v.address()).await.is_zero() {
                self.chain.set_balance(v.address(), U256::exp10(20)).await;
            }
            if !v.amount.is_zero() {
                last = Some(self.mint(v.address(), v.amount).await);
            }
            match &v.delegation {
                Delegation::SelfDelegate => last = Some(self.delegate(&v.wallet, v.address()).await),
                Delegation::To(to) => last = Some(self.delegate(&v.wallet, *to).await),
                Delegation::None => {}
            }
        }
        last
    }

    /// The RPC handle.
    pub fn chain(&self) -> &Chain {
        &self.chain
    }

    pub fn addresses(&self) -> DaoAddresses {
        DaoAddresses { token: self.token, timelock: self.timelock, governor: self.governor, target: self.target }
    }

    // ----- encoding helpers ------------------------------------------------------------------

    /// Calldata for `Target.setValue(value)`.
    pub fn set_value_calldata(&self, value: U256) -> Bytes {
        self.target_abi.encode("setValue", value).unwrap()
    }

    /// Calldata for `Target.alwaysRevert()` (execution of such a proposal fails).
    pub fn always_revert_calldata(&self) -> Bytes {
        self.target_abi.encode("alwaysRevert", ()).unwrap()
    }

    /// Governor calldata for `method(args)`, for [`Chain::submit`] in automine-off tests.
    pub fn governor_calldata<T: Tokenize>(&self, method: &str, args: T) -> Bytes {
        self.governor_abi.encode(method, args).unwrap_or_else(|e| panic!("encode {method}: {e}"))
    }

    /// Token calldata for `method(args)`.
    pub fn token_calldata<T: Tokenize>(&self, method: &str, args: T) -> Bytes {
        self.token_abi.encode(method, args).unwrap_or_else(|e| panic!("encode {method}: {e}"))
    }

    /// Parameters of a proposal made through this `Dao` (panics if unknown).
    pub fn proposal(&self, id: U256) -> ProposalParams {
        self.proposals.lock().unwrap().get(&id).cloned().unwrap_or_else(|| panic!("proposal {id} was not made through this Dao; pass its ProposalParams"))
    }

    // ----- actions (each panics with the decoded revert reason; try_* return Err instead) ---

    /// `propose(...)`; returns the proposal id (checked against the ProposalCreated event).
    pub async fn propose(&self, proposer: &LocalWallet, targets: Vec<Address>, values: Vec<U256>, calldatas: Vec<Bytes>, description: &str) -> (U256, Receipt) {
        ok(self.try_propose(proposer, targets, values, calldatas, description).await)
    }

    pub async fn try_propose(
        &self,
        proposer: &LocalWallet,
        targets: Vec<Address>,
        values: Vec<U256>,
        calldatas: Vec<Bytes>,
        description: &str,
    ) -> Result<(U256, Receipt), TxError> {
        let description_hash = H256(keccak256(description.as_bytes()));
        let data = self.governor_abi.encode("propose", (targets.clone(), values.clone(), calldatas.clone(), description.to_owned())).unwrap();
        let receipt = self.chain.send(proposer, self.governor, data).await?;
        let id: U256 = self.view().governor_call("hashProposal", (targets.clone(), values.clone(), calldatas.clone(), description_hash)).await;
        let created = self.governor_abi.abi().event("ProposalCreated").unwrap().signature();
        let logged = receipt
            .logs
            .iter()
            .find(|l| l.address == self.governor && l.topics.first() == Some(&created))
            .map(|l| abi::decode(&[abi::ParamType::Uint(256)], &l.data[..32]).unwrap()[0].clone().into_uint().unwrap());
        assert_eq!(logged, Some(id), "ProposalCreated event missing or with another id");
        let params = ProposalParams { id, proposer: proposer.address(), targets, values, calldatas, description: description.to_owned(), description_hash };
        self.proposals.lock().unwrap().insert(id, params);
        Ok((id, receipt))
    }

    /// Proposes a single call `Target.setValue(value)`.
    pub async fn propose_set_value(&self, proposer: &LocalWallet, value: U256, description: &str) -> (U256, Receipt) {
        let data = self.set_value_calldata(value);
        self.propose(proposer, vec![self.target], vec![U256::zero()], vec![data], description).await
    }

    /// `castVote(id, support)`; support: see [`super::vote`].
    pub async fn cast_vote(&self, voter: &LocalWallet, id: U256, support: u8) -> Receipt {
        ok(self.try_cast_vote(voter, id, support).await)
    }

    pub async fn try_cast_vote(&self, voter: &LocalWallet, id: U256, support: u8) -> Result<Receipt, TxError> {
        let data = self.governor_calldata("castVote", (id, support));
        self.chain.send(voter, self.governor, data).await
    }

    /// `castVoteWithReason(id, support, reason)`.
    pub async fn cast_vote_with_reason(&self, voter: &LocalWallet, id: U256, support: u8, reason: &str) -> Receipt {
        let data = self.governor_calldata("castVoteWithReason", (id, support, reason.to_owned()));
        ok(self.chain.send(voter, self.governor, data).await)
    }

    /// `castVoteWithReasonAndParams(id, support, reason, params)`.
    pub async fn cast_vote_with_reason_and_params(&self, voter: &LocalWallet, id: U256, support: u8, reason: &str, params: Bytes) -> Receipt {
        let data = self.governor_calldata("castVoteWithReasonAndParams", (id, support, reason.to_owned(), params));
        ok(self.chain.send(voter, self.governor, data).await)
    }

    /// EIP-712 `Ballot(uint256 proposalId,uint8 support,address voter,uint256 nonce)`
    /// signature by `signer` with its current governor nonce (65 bytes r‖s‖v).
    pub async fn sign_ballot(&self, signer: &LocalWallet, id: U256, support: u8) -> Bytes {
        let nonce: U256 = self.view().governor_call("nonces", signer.address()).await;
        let struct_hash = keccak256(abi::encode(&[
            Token::FixedBytes(keccak256("Ballot(uint256 proposalId,uint8 support,address voter,uint256 nonce)").to_vec()),
            Token::Uint(id),
            Token::Uint(support.into()),
            Token::Address(signer.address()),
            Token::Uint(nonce),
        ]));
        let digest = self.eip712_digest(struct_hash).await;
        let sig = signer.sign_hash(H256(digest)).expect("sign ballot");
        Bytes::from(sig.to_vec())
    }

    /// `keccak256("\x19\x01" ‖ domainSeparator ‖ structHash)` with the domain read from the
    /// governor's `eip712Domain()` (ERC-5267).
    pub async fn eip712_digest(&self, struct_hash: [u8; 32]) -> [u8; 32] {
        let domain: Token = self.view().governor_call("eip712Domain", ()).await;
        let t = domain.into_tuple().expect("eip712Domain tuple");
        let fields = t[0].clone().into_fixed_bytes().unwrap()[0];
        assert_eq!(fields, 0x0f, "unexpected eip712Domain fields {fields:#x}");
        let (name, version) = (t[1].clone().into_string().unwrap(), t[2].clone().into_string().unwrap());
        let (chain_id, verifying) = (t[3].clone().into_uint().unwrap(), t[4].clone().into_address().unwrap());
        let separator = keccak256(abi::encode(&[
            Token::FixedBytes(keccak256("EIP712Domain(string name,string version,uint256 chainId,address verifyingContract)").to_vec()),
            Token::FixedBytes(keccak256(name.as_bytes()).to_vec()),
            Token::FixedBytes(keccak256(version.as_bytes()).to_vec()),
            Token::Uint(chain_id),
            Token::Address(verifying),
        ]));
        let mut buf = Vec::with_capacity(66);
        buf.extend_from_slice(&[0x19, 0x01]);
        buf.extend_from_slice(&separator);
        buf.extend_from_slice(&struct_hash);
        keccak256(buf)
    }

    /// `castVoteBySig(id, support, voter, signature)`: `signer` signs the ballot, `relayer`
    /// sends (and pays for) the transaction.
    pub async fn cast_vote_by_sig(&self, signer: &LocalWallet, relayer: &LocalWallet, id: U256, support: u8) -> Receipt {
        let sig = self.sign_ballot(signer, id, support).await;
        let data = self.governor_calldata("castVoteBySig", (id, support, signer.address(), sig));
        ok(self.chain.send(relayer, self.governor, data).await)
    }

    /// `queue(targets, values, calldatas, descriptionHash)`, sent by the deployer.
    pub async fn queue(&self, proposal: impl ProposalRef) -> Receipt {
        ok(self.try_queue(proposal).await)
    }

    pub async fn try_queue(&self, proposal: impl ProposalRef) -> Result<Receipt, TxError> {
        let data = self.governor_calldata("queue", proposal.params(self).tokens());
        self.chain.send(&self.deployer, self.governor, data).await
    }

    /// `execute(targets, values, calldatas, descriptionHash)`, sent by the deployer.
    pub async fn execute(&self, proposal: impl ProposalRef) -> Receipt {
        ok(self.try_execute(proposal).await)
    }

    pub async fn try_execute(&self, proposal: impl ProposalRef) -> Result<Receipt, TxError> {
        let data = self.governor_calldata("execute", proposal.params(self).tokens());
        self.chain.send(&self.deployer, self.governor, data).await
    }

    /// `cancel(targets, values, calldatas, descriptionHash)` by `sender` (OZ 5 allows only the
    /// proposer, and only while Pending).
    pub async fn cancel(&self, sender: &LocalWallet, proposal: impl ProposalRef) -> Receipt {
        ok(self.try_cancel(sender, proposal).await)
    }

    pub async fn try_cancel(&self, sender: &LocalWallet, proposal: impl ProposalRef) -> Result<Receipt, TxError> {
        let data = self.governor_calldata("cancel", proposal.params(self).tokens());
        self.chain.send(sender, self.governor, data).await
    }

    /// `token.delegate(to)` by `from`.
    pub async fn delegate(&self, from: &LocalWallet, to: Address) -> Receipt {
        ok(self.chain.send(from, self.token, self.token_calldata("delegate", to)).await)
    }

    /// `token.transfer(to, amount)` by `from`.
    pub async fn transfer(&self, from: &LocalWallet, to: Address, amount: U256) -> Receipt {
        ok(self.chain.send(from, self.token, self.token_calldata("transfer", (to, amount))).await)
    }

    /// `token.mint(to, amount)` by the deployer (the token's owner).
    pub async fn mint(&self, to: Address, amount: U256) -> Receipt {
        ok(self.chain.send(&self.deployer, self.token, self.token_calldata("mint", (to, amount))).await)
    }

    /// `token.burn(amount)` by `from`.
    pub async fn burn(&self, from: &LocalWallet, amount: U256) -> Receipt {
        ok(self.chain.send(from, self.token, self.token_calldata("burn", amount)).await)
    }

    // ----- views -----------------------------------------------------------------------------

    /// Views at the latest block.
    pub fn view(&self) -> DaoView<'_> {
        DaoView { dao: self, block: None }
    }

    /// Views at block `n` (`eth_call` with that block number).
    pub fn at(&self, n: u64) -> DaoView<'_> {
        DaoView { dao: self, block: Some(n) }
    }

    pub async fn state(&self, id: U256) -> u8 {
        self.view().state(id).await
    }
    pub async fn proposal_state(&self, id: U256) -> ProposalState {
        self.view().proposal_state(id).await
    }
    /// (against, for, abstain)
    pub async fn proposal_votes(&self, id: U256) -> (U256, U256, U256) {
        self.view().proposal_votes(id).await
    }
    pub async fn has_voted(&self, id: U256, account: Address) -> bool {
        self.view().has_voted(id, account).await
    }
    pub async fn get_votes(&self, account: Address) -> U256 {
        self.view().get_votes(account).await
    }
    pub async fn get_past_votes(&self, account: Address, timepoint: u64) -> U256 {
        self.view().get_past_votes(account, timepoint).await
    }
    pub async fn proposal_snapshot(&self, id: U256) -> u64 {
        self.view().proposal_snapshot(id).await
    }
    pub async fn proposal_deadline(&self, id: U256) -> u64 {
        self.view().proposal_deadline(id).await
    }
    pub async fn proposal_eta(&self, id: U256) -> u64 {
        self.view().proposal_eta(id).await
    }
    pub async fn quorum(&self, timepoint: u64) -> U256 {
        self.view().quorum(timepoint).await
    }
    pub async fn clock(&self) -> u64 {
        self.view().clock().await
    }
    pub async fn target_value(&self) -> U256 {
        self.view().target_value().await
    }

    // ----- moving time -----------------------------------------------------------------------

    /// The current clock as of the latest block: its number, or its timestamp.
    pub async fn latest_clock(&self) -> u64 {
        match self.clock_mode {
            ClockMode::BlockNumber => self.chain.block_number().await,
            ClockMode::Timestamp => self.chain.latest_timestamp().await,
        }
    }

    /// Mines until the latest block's clock (number or timestamp) is at least `timepoint`.
    /// Block mode: `anvil_mine` of the missing blocks; timestamp mode: one block at exactly
    /// `timepoint` (if the latest is older). Returns the latest block number.
    pub async fn advance_clock_to(&self, timepoint: u64) -> u64 {
        match self.clock_mode {
            ClockMode::BlockNumber => self.chain.mine_to(timepoint).await,
            ClockMode::Timestamp => {
                self.chain.advance_time_to(timepoint).await;
                self.chain.block_number().await
            }
        }
    }

    /// Until the clock is past the proposal's snapshot: the proposal is Active as seen from the
    /// latest block and for the next transaction.
    pub async fn advance_past_snapshot(&self, id: U256) -> u64 {
        let snapshot = self.proposal_snapshot(id).await;
        self.advance_clock_to(snapshot + 1).await
    }

    /// Until the clock is past the proposal's (possibly extended) deadline: voting is over.
    pub async fn advance_past_deadline(&self, id: U256) -> u64 {
        let deadline = self.proposal_deadline(id).await;
        self.advance_clock_to(deadline + 1).await
    }

    /// Until the latest block's timestamp has reached the queued proposal's ETA (a timestamp
    /// in both clock modes): it can be executed in the next transaction.
    pub async fn advance_past_eta(&self, id: U256) -> u64 {
        let eta = self.proposal_eta(id).await;
        assert!(eta != 0, "proposal {id} has no ETA (not queued?)");
        self.chain.advance_time_to(eta).await;
        self.chain.block_number().await
    }
}

/// Read-only calls at a fixed block (`Dao::at(n)`) or at latest (`Dao::view()`).
#[derive(Clone, Copy)]
pub struct DaoView<'a> {
    dao: &'a Dao,
    block: Option<u64>,
}

impl<'a> DaoView<'a> {
    pub async fn governor_call<T: Tokenize, D: Detokenize>(&self, method: &str, args: T) -> D {
        self.dao.chain.call(&self.dao.governor_abi, self.dao.governor, method, args, self.block).await
    }
    pub async fn token_call<T: Tokenize, D: Detokenize>(&self, method: &str, args: T) -> D {
        self.dao.chain.call(&self.dao.token_abi, self.dao.token, method, args, self.block).await
    }
    pub async fn timelock_call<T: Tokenize, D: Detokenize>(&self, method: &str, args: T) -> D {
        self.dao.chain.call(&self.dao.timelock_abi, self.dao.timelock, method, args, self.block).await
    }
    pub async fn target_call<T: Tokenize, D: Detokenize>(&self, method: &str, args: T) -> D {
        self.dao.chain.call(&self.dao.target_abi, self.dao.target, method, args, self.block).await
    }

    /// `state(id)` as its numeric value (see [`ProposalState`]).
    pub async fn state(&self, id: U256) -> u8 {
        self.governor_call("state", id).await
    }
    /// `state(id)`, or the decoded revert (e.g. `GovernorNonexistentProposal(…)`).
    pub async fn try_state(&self, id: U256) -> Result<u8, String> {
        self.dao.chain.try_call(&self.dao.governor_abi, self.dao.governor, "state", id, self.block).await
    }
    pub async fn proposal_state(&self, id: U256) -> ProposalState {
        ProposalState::from_u8(self.state(id).await)
    }
    /// (against, for, abstain)
    pub async fn proposal_votes(&self, id: U256) -> (U256, U256, U256) {
        self.governor_call("proposalVotes", id).await
    }
    pub async fn has_voted(&self, id: U256, account: Address) -> bool {
        self.governor_call("hasVoted", (id, account)).await
    }
    /// The token's current `getVotes(account)`.
    pub async fn get_votes(&self, account: Address) -> U256 {
        self.token_call("getVotes", account).await
    }
    /// The token's `getPastVotes(account, timepoint)` (timepoint must be in the past).
    pub async fn get_past_votes(&self, account: Address, timepoint: u64) -> U256 {
        self.token_call("getPastVotes", (account, U256::from(timepoint))).await
    }
    /// The governor's `getVotes(account, timepoint)`.
    pub async fn governor_get_votes(&self, account: Address, timepoint: u64) -> U256 {
        self.governor_call("getVotes", (account, U256::from(timepoint))).await
    }
    pub async fn proposal_snapshot(&self, id: U256) -> u64 {
        self.governor_call::<_, U256>("proposalSnapshot", id).await.as_u64()
    }
    pub async fn proposal_deadline(&self, id: U256) -> u64 {
        self.governor_call::<_, U256>("proposalDeadline", id).await.as_u64()
    }
    /// The timelock ETA (a timestamp), 0 if not queued.
    pub async fn proposal_eta(&self, id: U256) -> u64 {
        self.governor_call::<_, U256>("proposalEta", id).await.as_u64()
    }
    pub async fn proposal_proposer(&self, id: U256) -> Address {
        self.governor_call("proposalProposer", id).await
    }
    pub async fn quorum(&self, timepoint: u64) -> U256 {
        self.governor_call("quorum", U256::from(timepoint)).await
    }
    /// The governor's `clock()`.
    pub async fn clock(&self) -> u64 {
        self.governor_call::<_, u64>("clock", ()).await
    }
    #[allow(non_snake_case)]
    pub async fn CLOCK_MODE(&self) -> String {
        self.governor_call("CLOCK_MODE", ()).await
    }
    pub async fn voting_delay(&self) -> u64 {
        self.governor_call::<_, U256>("votingDelay", ()).await.as_u64()
    }
    pub async fn voting_period(&self) -> u64 {
        self.governor_call::<_, U256>("votingPeriod", ()).await.as_u64()
    }
    pub async fn proposal_threshold(&self) -> U256 {
        self.governor_call("proposalThreshold", ()).await
    }
    pub async fn late_quorum_vote_extension(&self) -> u64 {
        self.governor_call::<_, u64>("lateQuorumVoteExtension", ()).await
    }
    pub async fn balance_of(&self, account: Address) -> U256 {
        self.token_call("balanceOf", account).await
    }
    pub async fn delegates(&self, account: Address) -> Address {
        self.token_call("delegates", account).await
    }
    pub async fn total_supply(&self) -> U256 {
        self.token_call("totalSupply", ()).await
    }
    pub async fn get_past_total_supply(&self, timepoint: u64) -> U256 {
        self.token_call("getPastTotalSupply", U256::from(timepoint)).await
    }
    pub async fn timelock_min_delay(&self) -> u64 {
        self.timelock_call::<_, U256>("getMinDelay", ()).await.as_u64()
    }
    pub async fn timelock_has_role(&self, role_name: &str, account: Address) -> bool {
        self.timelock_call("hasRole", (role(role_name), account)).await
    }
    /// `Target.value()`.
    pub async fn target_value(&self) -> U256 {
        self.target_call("value", ()).await
    }
}
