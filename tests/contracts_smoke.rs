//! Smoke tests of the Solidity test contracts and the `support` harness on a real anvil, in
//! both ERC-6372 clock modes. Every expectation is checked against the contracts' own views.

mod support;

use support::*;

/// Voting parameters per clock mode: blocks, or seconds (large enough that wall-clock drift
/// between two transactions never moves a proposal out of its state by itself).
fn options(clock: ClockMode) -> DaoOptions {
    let base = DaoOptions::with_clock(clock).timelock_min_delay(60).quorum_numerator(10);
    match clock {
        ClockMode::BlockNumber => base.voting_delay(2).voting_period(12).vote_extension(5),
        ClockMode::Timestamp => base.voting_delay(100).voting_period(600).vote_extension(300),
    }
}

/// Voters: #1 60 tokens, #2 30 tokens, #3 10 tokens (all self-delegated). Total 100.
async fn deploy(anvil: &Anvil, clock: ClockMode) -> Dao {
    Dao::deploy(anvil, options(clock).voter(anvil.wallet(1), tokens(60)).voter(anvil.wallet(2), tokens(30)).voter(anvil.wallet(3), tokens(10))).await
}

/// Index of the first log in `receipt` that is `event` of `abi`.
fn find_log(receipt: &Receipt, abi: &ethers::contract::BaseContract, event: &str) -> Option<usize> {
    let topic = abi.abi().event(event).unwrap().signature();
    receipt.logs.iter().position(|l| l.topics.first() == Some(&topic))
}

async fn lifecycle(clock: ClockMode) {
    let anvil = Anvil::start().await;
    let dao = deploy(&anvil, clock).await;
    let (alice, bob, carol) = (anvil.wallet(1), anvil.wallet(2), anvil.wallet(3));

    // Deployment wiring.
    let view = dao.view();
    assert_eq!(
        view.CLOCK_MODE().await,
        match clock {
            ClockMode::BlockNumber => "mode=blocknumber&from=default",
            ClockMode::Timestamp => "mode=timestamp",
        }
    );
    assert_eq!(dao.clock().await, dao.latest_clock().await, "eth_call at latest sees the latest block");
    assert!(view.timelock_has_role("PROPOSER_ROLE", dao.governor).await);
    assert!(view.timelock_has_role("CANCELLER_ROLE", dao.governor).await);
    assert!(view.timelock_has_role("EXECUTOR_ROLE", Address::zero()).await);
    assert!(!view.timelock_has_role("DEFAULT_ADMIN_ROLE", dao.deployer.address()).await);
    assert!(view.timelock_has_role("DEFAULT_ADMIN_ROLE", dao.timelock).await);
    assert_eq!(view.timelock_min_delay().await, 60);
    assert_eq!(view.voting_delay().await, dao.options.voting_delay);
    assert_eq!(view.voting_period().await, dao.options.voting_period);
    assert_eq!(dao.get_votes(alice.address()).await, tokens(60));
    assert_eq!(view.total_supply().await, tokens(100));
    assert!(dao.deployment_block < dao.governor_deployment_block && dao.governor_deployment_block <= dao.setup_block);

    // Pending.
    let (id, proposed) = dao.propose_set_value(&alice, U256::from(42), "Set the value to 42").await;
    assert_eq!(dao.proposal_state(id).await, ProposalState::Pending);
    let snapshot = dao.proposal_snapshot(id).await;
    let deadline = dao.proposal_deadline(id).await;
    let propose_clock = match clock {
        ClockMode::BlockNumber => proposed.block_number,
        ClockMode::Timestamp => anvil.block_timestamp(proposed.block_number).await,
    };
    assert_eq!(snapshot, propose_clock + dao.options.voting_delay);
    assert_eq!(deadline, snapshot + dao.options.voting_period);
    assert_eq!(view.proposal_proposer(id).await, alice.address());
    assert_eq!(dao.proposal_eta(id).await, 0);
    // Voting before the snapshot is refused with the governor's custom error.
    let early = dao.try_cast_vote(&alice, id, vote::FOR).await.unwrap_err();
    assert!(early.is_revert_named("GovernorUnexpectedProposalState"), "{early}");

    // Active.
    dao.advance_past_snapshot(id).await;
    assert_eq!(dao.proposal_state(id).await, ProposalState::Active);
    assert_eq!(dao.quorum(snapshot).await, tokens(10));
    assert_eq!(dao.get_past_votes(alice.address(), snapshot).await, tokens(60));
    let v1 = dao.cast_vote(&alice, id, vote::FOR).await;
    dao.cast_vote_with_reason(&bob, id, vote::AGAINST, "too high").await;
    dao.cast_vote(&carol, id, vote::ABSTAIN).await;
    assert_eq!(dao.proposal_votes(id).await, (tokens(30), tokens(60), tokens(10)));
    assert!(dao.has_voted(id, alice.address()).await);
    assert!(!dao.has_voted(id, anvil.address(4)).await);
    let twice = dao.try_cast_vote(&alice, id, vote::FOR).await.unwrap_err();
    assert!(twice.is_revert_named("GovernorAlreadyCastVote"), "{twice}");
    // Historical eth_call: before Alice's vote block nothing was counted.
    assert_eq!(dao.at(v1.block_number - 1).proposal_votes(id).await, (U256::zero(), U256::zero(), U256::zero()));
    assert_eq!(dao.at(v1.block_number).proposal_votes(id).await.1, tokens(60));

    // Succeeded.
    dao.advance_past_deadline(id).await;
    assert_eq!(dao.proposal_state(id).await, ProposalState::Succeeded);

    // Queued.
    let queued = dao.queue(id).await;
    assert_eq!(dao.proposal_state(id).await, ProposalState::Queued);
    let eta = dao.proposal_eta(id).await;
    assert_eq!(eta, anvil.block_timestamp(queued.block_number).await + 60);
    let too_soon = dao.try_execute(id).await.unwrap_err();
    assert!(too_soon.is_revert_named("TimelockUnexpectedOperationState"), "{too_soon}");

    // Executed.
    dao.advance_past_eta(id).await;
    assert_eq!(dao.target_value().await, U256::zero());
    let executed = dao.execute(id).await;
    assert_eq!(dao.proposal_state(id).await, ProposalState::Executed);
    assert_eq!(dao.target_value().await, U256::from(42));
    assert!(find_log(&executed, &dao.target_abi, "ValueSet").is_some());
    assert!(find_log(&executed, &dao.governor_abi, "ProposalExecuted").is_some());

    // The past is still readable.
    assert_eq!(dao.at(proposed.block_number).proposal_state(id).await, ProposalState::Pending);
    assert_eq!(dao.at(queued.block_number).proposal_state(id).await, ProposalState::Queued);
    assert_eq!(dao.at(executed.block_number - 1).target_value().await, U256::zero());
}

async fn defeated_without_quorum(clock: ClockMode) {
    let anvil = Anvil::start().await;
    let dao = deploy(&anvil, clock).await;
    let (id, _) = dao.propose_set_value(&anvil.wallet(1), U256::from(7), "Too few voters").await;
    dao.advance_past_snapshot(id).await;
    // Carol alone holds exactly 10% = quorum, so vote Against: For + Abstain stays below quorum.
    dao.cast_vote(&anvil.wallet(3), id, vote::AGAINST).await;
    dao.advance_past_deadline(id).await;
    assert_eq!(dao.proposal_state(id).await, ProposalState::Defeated);
    assert_eq!(dao.proposal_votes(id).await, (tokens(10), U256::zero(), U256::zero()));
    let err = dao.try_queue(id).await.unwrap_err();
    assert!(err.is_revert_named("GovernorUnexpectedProposalState"), "{err}");
}

async fn canceled_while_pending(clock: ClockMode) {
    let anvil = Anvil::start().await;
    let dao = deploy(&anvil, clock).await;
    let (alice, bob) = (anvil.wallet(1), anvil.wallet(2));
    let (id, _) = dao.propose_set_value(&alice, U256::from(9), "Cancel me").await;
    // Only the proposer may cancel.
    let err = dao.try_cancel(&bob, id).await.unwrap_err();
    assert!(err.is_revert_named("GovernorUnableToCancel"), "{err}");
    let receipt = dao.cancel(&alice, id).await;
    assert!(find_log(&receipt, &dao.governor_abi, "ProposalCanceled").is_some());
    assert_eq!(dao.proposal_state(id).await, ProposalState::Canceled);
    dao.advance_past_deadline(id).await;
    assert_eq!(dao.proposal_state(id).await, ProposalState::Canceled);
    let err = dao.try_cast_vote(&alice, id, vote::FOR).await.unwrap_err();
    assert!(err.is_revert_named("GovernorUnexpectedProposalState"), "{err}");
}

async fn vote_by_signature(clock: ClockMode) {
    let anvil = Anvil::start().await;
    let dao = deploy(&anvil, clock).await;
    let (signer, relayer) = (anvil.wallet(2), anvil.wallet(5));
    let (id, _) = dao.propose_set_value(&anvil.wallet(1), U256::from(1), "Vote by sig").await;
    dao.advance_past_snapshot(id).await;
    let nonce_before: U256 = dao.view().governor_call("nonces", signer.address()).await;
    let receipt = dao.cast_vote_by_sig(&signer, &relayer, id, vote::FOR).await;
    assert_eq!(receipt.from, relayer.address());
    assert!(dao.has_voted(id, signer.address()).await);
    assert!(!dao.has_voted(id, relayer.address()).await);
    assert_eq!(dao.proposal_votes(id).await, (U256::zero(), tokens(30), U256::zero()));
    let nonce_after: U256 = dao.view().governor_call("nonces", signer.address()).await;
    assert_eq!(nonce_after, nonce_before + 1);
    // The VoteCast event names the signer as voter (first indexed topic).
    let topic = dao.governor_abi.abi().event("VoteCast").unwrap().signature();
    let log = receipt.logs.iter().find(|l| l.topics[0] == topic).expect("VoteCast log");
    assert_eq!(Address::from(log.topics[1]), signer.address());
}

async fn late_quorum_extends_deadline(clock: ClockMode) {
    let anvil = Anvil::start().await;
    let dao = deploy(&anvil, clock).await;
    let extension = dao.options.vote_extension;
    assert_eq!(dao.view().late_quorum_vote_extension().await, extension);
    let (id, _) = dao.propose_set_value(&anvil.wallet(1), U256::from(5), "Late quorum").await;
    let deadline = dao.proposal_deadline(id).await;

    // A vote that reaches quorum well before the deadline does not move it...
    let (early, _) = dao.propose_set_value(&anvil.wallet(1), U256::from(6), "Early quorum").await;
    dao.advance_past_snapshot(early).await;
    let early_deadline = dao.proposal_deadline(early).await;
    dao.cast_vote(&anvil.wallet(1), early, vote::FOR).await;
    assert_eq!(dao.proposal_deadline(early).await, early_deadline);

    // ...one in the last moments of voting extends it to (vote time + extension). In timestamp
    // mode leave a few seconds of slack for the wall clock.
    let slack = match clock {
        ClockMode::BlockNumber => 1,
        ClockMode::Timestamp => 5,
    };
    dao.advance_clock_to(deadline - slack).await;
    assert_eq!(dao.proposal_state(id).await, ProposalState::Active);
    let receipt = dao.cast_vote(&anvil.wallet(1), id, vote::FOR).await;
    let vote_clock = match clock {
        ClockMode::BlockNumber => receipt.block_number,
        ClockMode::Timestamp => anvil.block_timestamp(receipt.block_number).await,
    };
    assert!(vote_clock <= deadline);
    let extended = dao.proposal_deadline(id).await;
    assert_eq!(extended, vote_clock + extension);
    assert!(extended > deadline);
    assert!(find_log(&receipt, &dao.governor_abi, "ProposalExtended").is_some());
    assert_eq!(dao.at(receipt.block_number - 1).proposal_deadline(id).await, deadline);

    // Past the original deadline it is still Active, and only ends at the extended one.
    dao.advance_clock_to(deadline + 1).await;
    assert_eq!(dao.proposal_state(id).await, ProposalState::Active);
    dao.advance_past_deadline(id).await;
    assert_eq!(dao.proposal_state(id).await, ProposalState::Succeeded);
}

macro_rules! both_clocks {
    ($($name:ident),* $(,)?) => {
        mod block_clock {
            $(#[tokio::test] async fn $name() { super::$name(super::ClockMode::BlockNumber).await })*
        }
        mod timestamp_clock {
            $(#[tokio::test] async fn $name() { super::$name(super::ClockMode::Timestamp).await })*
        }
    };
}

both_clocks!(lifecycle, defeated_without_quorum, canceled_while_pending, vote_by_signature, late_quorum_extends_deadline);

// ----- harness itself --------------------------------------------------------------------------

#[tokio::test]
async fn anvil_accounts_rpc_helpers_and_cleanup() {
    let mut anvil = Anvil::start().await;
    assert_eq!(anvil.chain_id, 31337);
    assert!(anvil.rpc_url().starts_with("http://127.0.0.1:"));
    let listed: Vec<Address> = anvil.request("eth_accounts", ()).await;
    let ours: Vec<Address> = anvil.accounts().iter().map(|w| w.address()).collect();
    assert_eq!(listed, ours);
    assert_eq!(anvil.address(0), "0xf39Fd6e51aad88F6F4ce6aB8827279cffFb92266".parse::<Address>().unwrap());

    // mine / increase_time
    let start = anvil.block_number().await;
    assert_eq!(anvil.mine(5).await, start + 5);
    let t0 = anvil.latest_timestamp().await;
    let t1 = anvil.increase_time(3600).await;
    assert!(t1 >= t0 + 3600, "{t0} -> {t1}");
    assert_eq!(anvil.block_number().await, start + 6);

    // snapshot / revert
    let id = anvil.snapshot().await;
    anvil.mine(3).await;
    assert!(anvil.revert(id).await);
    assert_eq!(anvil.block_number().await, start + 6);
    assert!(!anvil.revert(id).await, "a snapshot is consumed by evm_revert");

    // automine off: two transactions land in one block, in submission order
    let (a, b) = (anvil.wallet(7), anvil.address(8));
    anvil.set_automine(false).await;
    assert!(!anvil.automine().await);
    let h1 = anvil.submit(&a, b, Bytes::new()).await.unwrap();
    let h2 = anvil.submit(&a, b, Bytes::new()).await.unwrap();
    assert!(anvil.receipt(h1).await.is_none());
    anvil.mine(1).await;
    let (r1, r2) = (anvil.wait_receipt(h1).await, anvil.wait_receipt(h2).await);
    assert_eq!(r1.block_number, r2.block_number);
    assert_eq!((r1.tx_index, r2.tx_index), (0, 1));
    anvil.set_automine(true).await;

    // Drop kills and reaps the process.
    let pid = anvil.pid().unwrap();
    assert!(std::path::Path::new(&format!("/proc/{pid}")).exists());
    anvil.stop();
    assert!(!std::path::Path::new(&format!("/proc/{pid}")).exists(), "anvil {pid} still present");
}

#[tokio::test]
async fn delegation_options_and_token_actions() {
    let anvil = Anvil::start().await;
    let (a, b, c, d) = (anvil.wallet(1), anvil.wallet(2), anvil.wallet(3), anvil.wallet(4));
    // A fresh key with no ETH: the harness funds it so it can delegate.
    let fresh = LocalWallet::new(&mut rand::thread_rng());
    let dao = Dao::deploy(
        &anvil,
        DaoOptions::default()
            .voter(a.clone(), tokens(10))
            .voter_with(Voter::delegating_to(b.clone(), tokens(20), a.address()))
            .voter_with(Voter::undelegated(c.clone(), tokens(30)))
            .voter(fresh.clone(), tokens(2)),
    )
    .await;
    let view = dao.view();
    assert_eq!(dao.get_votes(fresh.address()).await, tokens(2));
    assert_eq!(dao.get_votes(a.address()).await, tokens(30));
    assert_eq!(dao.get_votes(b.address()).await, U256::zero());
    assert_eq!(dao.get_votes(c.address()).await, U256::zero());
    assert_eq!(view.delegates(b.address()).await, a.address());
    assert_eq!(view.balance_of(c.address()).await, tokens(30));

    dao.delegate(&c, c.address()).await;
    assert_eq!(dao.get_votes(c.address()).await, tokens(30));
    dao.transfer(&c, a.address(), tokens(5)).await;
    dao.transfer(&fresh, a.address(), tokens(2)).await;
    assert_eq!(dao.get_votes(a.address()).await, tokens(37));
    assert_eq!(dao.get_votes(fresh.address()).await, U256::zero());
    let minted = dao.mint(d.address(), tokens(1)).await;
    assert_eq!(view.total_supply().await, tokens(63));
    assert_eq!(dao.at(minted.block_number - 1).total_supply().await, tokens(62));
    dao.burn(&a, tokens(1)).await;
    assert_eq!(view.balance_of(a.address()).await, tokens(16));
    // Only the deployer owns the token.
    let data = dao.token_calldata("mint", (a.address(), tokens(1)));
    let err = anvil.send(&a, dao.token, data).await.unwrap_err();
    assert!(err.is_revert_named("OwnableUnauthorizedAccount"), "{err}");
}

#[tokio::test]
async fn snapshot_revert_rewrites_history_like_a_reorg() {
    let anvil = Anvil::start().await;
    let dao = Dao::deploy(&anvil, DaoOptions::default().voter(anvil.wallet(1), tokens(100))).await;
    let base = anvil.block_number().await;
    let snap = anvil.snapshot().await;
    let old = dao.transfer(&anvil.wallet(1), anvil.address(2), tokens(1)).await;
    let old_hash = anvil.block_hash(old.block_number).await;
    assert!(anvil.revert(snap).await);
    assert_eq!(anvil.block_number().await, base);
    assert!(anvil.receipt(old.tx_hash).await.is_none(), "reverted transaction is forgotten");
    assert!(anvil.block_json(old.block_number).await.is_none());
    let new = dao.transfer(&anvil.wallet(1), anvil.address(3), tokens(1)).await;
    assert_eq!(new.block_number, old.block_number);
    assert_ne!(anvil.block_hash(new.block_number).await, old_hash);
    assert_eq!(dao.view().balance_of(anvil.address(2)).await, U256::zero());
}

#[tokio::test]
async fn failing_execution_and_unknown_proposal() {
    let anvil = Anvil::start().await;
    let dao = deploy(&anvil, ClockMode::BlockNumber).await;
    let calldata = dao.always_revert_calldata();
    let (id, _) = dao.propose(&anvil.wallet(1), vec![dao.target], vec![U256::zero()], vec![calldata], "Doomed").await;
    dao.advance_past_snapshot(id).await;
    dao.cast_vote(&anvil.wallet(1), id, vote::FOR).await;
    dao.advance_past_deadline(id).await;
    dao.queue(id).await;
    dao.advance_past_eta(id).await;
    let err = dao.try_execute(id).await.unwrap_err();
    assert!(err.is_revert_named("AlwaysReverts(42)"), "{err}");
    assert_eq!(dao.proposal_state(id).await, ProposalState::Queued);

    let missing = dao.view().try_state(U256::from(12345)).await.unwrap_err();
    assert!(missing.starts_with("GovernorNonexistentProposal(12345)"), "{missing}");
}

#[test]
fn artifacts_are_loaded() {
    for name in ["GovToken", "GovTokenTimestamp", "GovTimelock", "TestGovernor", "Target"] {
        let a = artifact(name);
        assert_eq!(a.contract_name, name);
        assert!(!a.bytecode.is_empty() && !a.deployed_bytecode.is_empty());
        assert!(a.deployed_bytecode.len() <= 24576, "{name} exceeds EIP-170");
        assert!(a.source_hash.starts_with("0x") && a.source_hash.len() == 66);
    }
}
