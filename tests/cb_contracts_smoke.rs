//! Smoke tests of the CultureBridge reference contracts (`contracts/cb/`) and the `CbDao`
//! harness on a real anvil: achievement NFTs drive checkpointed governance-weight bonuses and
//! special benefits, the voting manager adds the bonus to token votes, and CBGovernorCore counts
//! the weight at the proposal snapshot. Every expectation is checked against the contracts' own
//! views and the receipts' logs.

mod support;

use support::*;

/// Block-clock governance: delay 2, period 12, quorum 10 % of the token supply, timelock 60 s.
fn base() -> CbOptions {
    CbOptions::default().dao_options(|d| d.voting_delay(2).voting_period(12).quorum_numerator(10).timelock_min_delay(60))
}

/// Voters: #1 60 tokens, #2 30 tokens, #3 10 tokens (self-delegated). Token supply 100.
fn with_voters(anvil: &Anvil, opts: CbOptions) -> CbOptions {
    opts.voter(anvil.wallet(1), tokens(60)).voter(anvil.wallet(2), tokens(30)).voter(anvil.wallet(3), tokens(10))
}

fn bonus_change(account: Address, previous: U256, new: U256) -> BonusChange {
    BonusChange { account, previous, new }
}

fn benefits_change(account: Address, fee_discount_bps: u64, priority_boost: u64) -> BenefitsChange {
    BenefitsChange { account, fee_discount_bps: fee_discount_bps.into(), priority_boost: priority_boost.into() }
}

fn benefits(fee_discount_bps: u64, priority_boost: u64) -> (U256, U256) {
    (fee_discount_bps.into(), priority_boost.into())
}

fn zero() -> U256 {
    U256::zero()
}

#[tokio::test]
async fn deployment_wiring_and_guards() {
    let anvil = Anvil::start().await;
    let cb = CbDao::deploy(&anvil, with_voters(&anvil, base())).await;
    let v = cb.cb_view();
    let gov = cb.view();

    // Wiring, both ways.
    assert_eq!(v.nft_call::<_, Address>("benefitExecutor", ()).await, cb.executor);
    assert_eq!(v.executor_call::<_, Address>("achievementNFT", ()).await, cb.nft);
    assert_eq!(v.voting_manager_call::<_, Address>("token", ()).await, cb.token);
    assert_eq!(v.voting_manager_call::<_, Address>("benefitExecutor", ()).await, cb.executor);
    assert_eq!(gov.governor_call::<_, Address>("token", ()).await, cb.voting_manager, "governor votes come from the manager");
    assert_eq!(gov.governor_call::<_, Address>("timelock", ()).await, cb.timelock);
    assert_eq!(v.nft_call::<_, Address>("owner", ()).await, cb.deployer.address());
    assert_eq!(v.executor_call::<_, Address>("owner", ()).await, cb.deployer.address());

    // One clock everywhere: block numbers.
    let latest = anvil.block_number().await;
    assert_eq!(gov.CLOCK_MODE().await, "mode=blocknumber&from=default");
    assert_eq!(v.voting_manager_call::<_, String>("CLOCK_MODE", ()).await, "mode=blocknumber&from=default");
    assert_eq!(v.executor_call::<_, String>("CLOCK_MODE", ()).await, "mode=blocknumber&from=default");
    assert_eq!(v.voting_manager_call::<_, u64>("clock", ()).await, latest);
    assert_eq!(v.executor_call::<_, u64>("clock", ()).await, latest);
    assert_eq!(gov.clock().await, latest);

    // Timelock roles as in Dao::deploy; governance settings.
    assert!(gov.timelock_has_role("PROPOSER_ROLE", cb.governor).await);
    assert!(gov.timelock_has_role("CANCELLER_ROLE", cb.governor).await);
    assert!(gov.timelock_has_role("EXECUTOR_ROLE", Address::zero()).await);
    assert!(!gov.timelock_has_role("DEFAULT_ADMIN_ROLE", cb.deployer.address()).await);
    assert_eq!(gov.voting_delay().await, 2);
    assert_eq!(gov.voting_period().await, 12);
    assert_eq!(gov.governor_call::<_, String>("name", ()).await, "CBGovernorCore");

    // Default achievement types.
    assert_eq!(v.type_bonus(1).await, tokens(5));
    assert_eq!(v.type_bonus(2).await, tokens(20));
    assert_eq!(v.type_bonus(3).await, zero());
    assert_eq!(v.type_special_benefit(1).await, benefits(0, 0));
    assert_eq!(v.type_special_benefit(2).await, benefits(250, 1));
    assert_eq!(v.type_special_benefit(3).await, benefits(500, 0));

    // Without NFTs the manager's votes are the token's.
    let alice = anvil.address(1);
    assert_eq!(cb.voting_manager_get_votes(alice).await, tokens(60));
    assert_eq!(cb.get_votes(alice).await, tokens(60));
    assert_eq!(v.voting_manager_call::<_, Address>("delegates", alice).await, alice);
    assert_eq!(v.voting_manager_get_past_total_supply(latest - 1).await, tokens(100));

    // The NFT can be bound only once.
    let rebind = cb.executor_calldata("setAchievementNFT", anvil.address(9));
    let err = anvil.send(&cb.deployer, cb.executor, rebind).await.unwrap_err();
    assert!(err.is_revert_named("CBAchievementNFTAlreadySet"), "{err}");

    // Delegation happens on the token, never on the manager.
    let err = anvil.send(&anvil.wallet(1), cb.voting_manager, cb.voting_manager_calldata("delegate", alice)).await.unwrap_err();
    assert!(err.is_revert_named("CBDelegateOnToken"), "{err}");
    let by_sig = cb.voting_manager_calldata("delegateBySig", (alice, U256::zero(), U256::MAX, 27u8, H256::zero(), H256::zero()));
    let err = anvil.send(&anvil.wallet(1), cb.voting_manager, by_sig).await.unwrap_err();
    assert!(err.is_revert_named("CBDelegateOnToken"), "{err}");

    // A timestamp-clock token cannot be put in front of the block-number executor.
    let me = cb.deployer.address();
    let (ts_token, _) = anvil
        .deploy(
            &cb.deployer,
            "GovTokenTimestamp",
            &[ethers::abi::Token::String("T".into()), ethers::abi::Token::String("T".into()), ethers::abi::Token::Address(me)],
        )
        .await
        .unwrap();
    let err =
        anvil.deploy(&cb.deployer, "CBVotingManager", &[ethers::abi::Token::Address(ts_token), ethers::abi::Token::Address(cb.executor)]).await.unwrap_err();
    assert!(err.is_revert_named("CBClockModeMismatch(\"mode=timestamp\", \"mode=blocknumber&from=default\")"), "{err}");
}

#[tokio::test]
async fn nft_mint_transfer_burn_update_bonus_and_emit_events() {
    let anvil = Anvil::start().await;
    let cb = CbDao::deploy(&anvil, with_voters(&anvil, base())).await;
    let v = cb.cb_view();
    let (alice_w, bob_w) = (anvil.wallet(1), anvil.wallet(2));
    let (alice, bob, carol, dave) = (anvil.address(1), anvil.address(2), anvil.address(3), anvil.address(4));

    // Mint type 1 to Alice: +5.
    let (t1, m1) = cb.mint_achievement(alice, 1).await;
    assert_eq!(t1, U256::one(), "token ids start at 1");
    let transfers: Vec<(Address, Address, U256)> = decode_logs(&m1, &cb.nft_abi, cb.nft, "Transfer");
    assert_eq!(transfers, vec![(Address::zero(), alice, t1)]);
    let minted: Vec<(Address, U256, u8)> = decode_logs(&m1, &cb.nft_abi, cb.nft, "AchievementMinted");
    assert_eq!(minted, vec![(alice, t1, 1)]);
    assert_eq!(cb.bonus_changes(&m1), vec![bonus_change(alice, zero(), tokens(5))]);
    assert!(cb.benefits_changes(&m1).is_empty(), "type 1 has no special benefit");
    // The executor's event comes after the NFT's Transfer, in the same transaction.
    let transfer_topic = support::cb::event_topic(&cb.nft_abi, "Transfer");
    let transfer_pos = m1.logs.iter().position(|l| l.address == cb.nft && l.topics[0] == transfer_topic).unwrap();
    let bonus_pos = m1.logs.iter().position(|l| l.address == cb.executor).unwrap();
    assert!(transfer_pos < bonus_pos);
    assert_eq!(cb.bonus(alice).await, tokens(5));
    assert_eq!(cb.voting_manager_get_votes(alice).await, tokens(65));
    assert_eq!(cb.get_votes(alice).await, tokens(60), "the token alone does not see the bonus");
    assert_eq!(v.achievement_type_of(t1).await, 1);
    assert_eq!(v.nft_owner_of(t1).await, alice);

    // Mint type 2 to Alice: +20, and its special benefits.
    let (t2, m2) = cb.mint_achievement(alice, 2).await;
    assert_eq!(t2, U256::from(2));
    assert_eq!(cb.bonus_changes(&m2), vec![bonus_change(alice, tokens(5), tokens(25))]);
    assert_eq!(cb.benefits_changes(&m2), vec![benefits_change(alice, 250, 1)]);
    assert_eq!(cb.voting_manager_get_votes(alice).await, tokens(85));

    // Transfer type 1 Alice -> Bob: both bonuses move in one transaction, sender first.
    let x = cb.transfer_achievement(&alice_w, bob, t1).await;
    let transfers: Vec<(Address, Address, U256)> = decode_logs(&x, &cb.nft_abi, cb.nft, "Transfer");
    assert_eq!(transfers, vec![(alice, bob, t1)]);
    assert_eq!(cb.bonus_changes(&x), vec![bonus_change(alice, tokens(25), tokens(20)), bonus_change(bob, zero(), tokens(5))]);
    assert!(cb.benefits_changes(&x).is_empty(), "nobody's best benefit changed");
    assert_eq!(cb.voting_manager_get_votes(bob).await, tokens(35));
    assert_eq!(v.achievement_count(alice, 1).await, 0);
    assert_eq!(v.achievement_count(bob, 1).await, 1);

    // Moving a token to its own holder changes nothing.
    let same = cb.transfer_achievement(&bob_w, bob, t1).await;
    assert!(cb.bonus_changes(&same).is_empty());
    assert_eq!(cb.bonus(bob).await, tokens(5));

    // Burn type 2: Alice's bonus and benefits drop to zero.
    let b = cb.burn_achievement(&alice_w, t2).await;
    let transfers: Vec<(Address, Address, U256)> = decode_logs(&b, &cb.nft_abi, cb.nft, "Transfer");
    assert_eq!(transfers, vec![(alice, Address::zero(), t2)]);
    assert_eq!(cb.bonus_changes(&b), vec![bonus_change(alice, tokens(20), zero())]);
    assert_eq!(cb.benefits_changes(&b), vec![benefits_change(alice, 0, 0)]);
    assert_eq!(cb.voting_manager_get_votes(alice).await, tokens(60));
    let gone = v.try_nft_call::<_, u8>("achievementTypeOf", t2).await.unwrap_err();
    assert!(gone.starts_with("ERC721NonexistentToken"), "{gone}");
    assert_eq!(v.nft_balance_of(alice).await, 0);

    // History is checkpointed per block and readable afterwards.
    anvil.mine(1).await;
    assert_eq!(cb.past_bonus(alice, m1.block_number - 1).await, zero());
    assert_eq!(cb.past_bonus(alice, m1.block_number).await, tokens(5));
    assert_eq!(cb.past_bonus(alice, m2.block_number).await, tokens(25));
    assert_eq!(cb.past_bonus(alice, x.block_number).await, tokens(20));
    assert_eq!(cb.past_bonus(alice, b.block_number).await, zero());
    assert_eq!(cb.past_bonus(bob, m2.block_number).await, zero());
    assert_eq!(cb.past_bonus(bob, x.block_number).await, tokens(5));
    assert_eq!(cb.voting_manager_get_past_votes(alice, m2.block_number).await, tokens(85));
    assert_eq!(cb.voting_manager_get_past_votes(alice, b.block_number).await, tokens(60));
    assert_eq!(cb.cb_at(m2.block_number).bonus(alice).await, tokens(25), "historical eth_call agrees");
    assert_eq!(v.num_bonus_checkpoints(alice).await, 4);
    // A lookup at the current block is refused, as with the token.
    let now = anvil.block_number().await;
    let future = v.try_executor_call::<_, U256>("getPastGovernanceWeightBonus", (alice, U256::from(now))).await.unwrap_err();
    assert!(future.starts_with("ERC5805FutureLookup"), "{future}");

    // A type without bonus: no bonus event, but special benefits.
    let (_, m3) = cb.mint_achievement(carol, 3).await;
    assert!(cb.bonus_changes(&m3).is_empty());
    assert_eq!(cb.benefits_changes(&m3), vec![benefits_change(carol, 500, 0)]);

    // The bonus belongs to the holder whatever its token delegation: Dave has no tokens.
    let (_, m4) = cb.mint_achievement(dave, 2).await;
    assert_eq!(cb.bonus_changes(&m4), vec![bonus_change(dave, zero(), tokens(20))]);
    assert_eq!(cb.get_votes(dave).await, zero());
    assert_eq!(cb.voting_manager_get_votes(dave).await, tokens(20));

    // Guards.
    let err = cb.try_mint_achievement(&cb.deployer, alice, 0).await.unwrap_err();
    assert!(err.is_revert_named("CBInvalidAchievementType(0)"), "{err}");
    let err = cb.try_mint_achievement(&alice_w, alice, 1).await.unwrap_err();
    assert!(err.is_revert_named("OwnableUnauthorizedAccount"), "{err}");
    let err = cb.try_transfer_achievement(&alice_w, alice, t1).await.unwrap_err();
    assert!(err.is_revert_named("ERC721IncorrectOwner") || err.is_revert_named("ERC721InsufficientApproval"), "{err}");
    let err = cb.try_burn_achievement(&alice_w, t1).await.unwrap_err();
    assert!(err.is_revert_named("ERC721InsufficientApproval"), "{err}");
    assert_eq!(cb.bonus(bob).await, tokens(5));
}

#[tokio::test]
async fn type_bonus_change_recomputes_current_holders() {
    let anvil = Anvil::start().await;
    let (alice, bob, carol) = (anvil.address(1), anvil.address(2), anvil.address(3));
    let cb = CbDao::deploy(&anvil, with_voters(&anvil, base()).achievement(alice, 1).achievement(alice, 1).achievement(bob, 1).achievement(carol, 3)).await;
    let v = cb.cb_view();
    assert_eq!(cb.bonus(alice).await, tokens(10));
    assert_eq!(cb.bonus(bob).await, tokens(5));
    assert_eq!(v.holder_count(1).await, 2);
    let before = anvil.block_number().await;

    // 5 -> 8 per NFT: every holder of type 1 gets a new checkpoint and an event.
    let r = cb.set_type_bonus(1, tokens(8)).await;
    let set: Vec<(u8, U256)> = decode_logs(&r, &cb.executor_abi, cb.executor, "TypeBonusSet");
    assert_eq!(set, vec![(1, tokens(8))]);
    assert_eq!(cb.bonus_changes(&r), vec![bonus_change(alice, tokens(10), tokens(16)), bonus_change(bob, tokens(5), tokens(8))]);
    assert_eq!(cb.voting_manager_get_votes(alice).await, tokens(76));
    anvil.mine(1).await;
    assert_eq!(cb.past_bonus(alice, before).await, tokens(10), "the past is not rewritten");
    assert_eq!(cb.past_bonus(alice, r.block_number).await, tokens(16));

    // Setting the same value: the event, no change.
    let same = cb.set_type_bonus(1, tokens(8)).await;
    assert_eq!(decode_logs::<(u8, U256)>(&same, &cb.executor_abi, cb.executor, "TypeBonusSet").len(), 1);
    assert!(cb.bonus_changes(&same).is_empty());

    // New movements use the new value.
    let (_, m) = cb.mint_achievement(carol, 1).await;
    assert_eq!(cb.bonus_changes(&m), vec![bonus_change(carol, zero(), tokens(8))]);

    // Down to zero, and a type that had no bonus gets one.
    let r0 = cb.set_type_bonus(1, zero()).await;
    assert_eq!(
        cb.bonus_changes(&r0),
        vec![bonus_change(alice, tokens(16), zero()), bonus_change(bob, tokens(8), zero()), bonus_change(carol, tokens(8), zero())]
    );
    let r3 = cb.set_type_bonus(3, tokens(1)).await;
    assert_eq!(cb.bonus_changes(&r3), vec![bonus_change(carol, zero(), tokens(1))]);
    assert_eq!(cb.voting_manager_get_votes(carol).await, tokens(11));

    // Owner only; type 0 does not exist.
    let err = cb.try_set_type_bonus(&anvil.wallet(1), 1, tokens(100)).await.unwrap_err();
    assert!(err.is_revert_named("OwnableUnauthorizedAccount"), "{err}");
    let err = cb.try_set_type_bonus(&cb.deployer, 0, tokens(1)).await.unwrap_err();
    assert!(err.is_revert_named("CBInvalidAchievementType(0)"), "{err}");
}

#[tokio::test]
async fn snapshot_weight_includes_bonus_held_at_snapshot_and_is_frozen() {
    let anvil = Anvil::start().await;
    let (alice_w, bob_w, carol_w) = (anvil.wallet(1), anvil.wallet(2), anvil.wallet(3));
    let (alice, bob, carol) = (alice_w.address(), bob_w.address(), carol_w.address());
    let cb = CbDao::deploy(&anvil, with_voters(&anvil, base()).achievement(alice, 2)).await;
    let alice_nft = cb.initial_achievements[0];

    let (id, proposed) = cb.propose_set_value(&alice_w, U256::from(1), "Snapshot weights").await;
    let snapshot = cb.proposal_snapshot(id).await;
    assert_eq!(snapshot, proposed.block_number + 2);
    assert_eq!(cb.proposal_state(id).await, ProposalState::Pending);

    // While Pending, before the snapshot: an NFT minted now counts.
    let (carol_nft, m) = cb.mint_achievement(carol, 1).await;
    assert!(m.block_number <= snapshot);

    cb.advance_past_snapshot(id).await;
    assert_eq!(cb.proposal_state(id).await, ProposalState::Active);

    // After the snapshot: Alice gives her type-2 NFT to Bob, Carol burns hers.
    let moved = cb.transfer_achievement(&alice_w, bob, alice_nft).await;
    assert!(moved.block_number > snapshot);
    cb.burn_achievement(&carol_w, carol_nft).await;
    assert_eq!(cb.voting_manager_get_votes(alice).await, tokens(60));
    assert_eq!(cb.voting_manager_get_votes(bob).await, tokens(50));
    assert_eq!(cb.voting_manager_get_votes(carol).await, tokens(10));

    // At the snapshot nothing moved.
    assert_eq!(cb.past_bonus(alice, snapshot).await, tokens(20));
    assert_eq!(cb.past_bonus(bob, snapshot).await, zero());
    assert_eq!(cb.past_bonus(carol, snapshot).await, tokens(5));
    assert_eq!(cb.voting_manager_get_past_votes(alice, snapshot).await, tokens(80));
    assert_eq!(cb.voting_manager_get_past_votes(bob, snapshot).await, tokens(30));
    assert_eq!(cb.voting_manager_get_past_votes(carol, snapshot).await, tokens(15));
    assert_eq!(cb.view().governor_get_votes(alice, snapshot).await, tokens(80));
    // The token's own snapshot votes do not include the bonus.
    assert_eq!(cb.get_past_votes(alice, snapshot).await, tokens(60));

    // The governor counts the snapshot weights.
    let va = cb.cast_vote(&alice_w, id, vote::FOR).await;
    let vb = cb.cast_vote_with_reason(&bob_w, id, vote::AGAINST, "not now").await;
    let vc = cb.cast_vote(&carol_w, id, vote::ABSTAIN).await;
    let cast: Vec<VoteCastLog> = [&va, &vb, &vc].iter().flat_map(|r| cb.votes_cast(r)).collect();
    assert_eq!(
        cast.iter().map(|c| (c.voter, c.proposal_id, c.support, c.weight)).collect::<Vec<_>>(),
        vec![(alice, id, vote::FOR, tokens(80)), (bob, id, vote::AGAINST, tokens(30)), (carol, id, vote::ABSTAIN, tokens(15))]
    );
    assert_eq!(cast[1].reason, "not now");
    assert_eq!(cb.proposal_votes(id).await, (tokens(30), tokens(80), tokens(15)));

    // Moving the NFT back during the vote changes neither the snapshot nor the tally.
    cb.transfer_achievement(&bob_w, alice, alice_nft).await;
    assert_eq!(cb.voting_manager_get_past_votes(alice, snapshot).await, tokens(80));
    assert_eq!(cb.voting_manager_get_past_votes(bob, snapshot).await, tokens(30));
    assert_eq!(cb.proposal_votes(id).await, (tokens(30), tokens(80), tokens(15)));
    assert!(cb.has_voted(id, bob).await);

    // Quorum: 10 % of the token supply at the snapshot (100), bonuses not included.
    assert_eq!(cb.quorum(snapshot).await, tokens(10));
    cb.advance_past_deadline(id).await;
    assert_eq!(cb.proposal_state(id).await, ProposalState::Succeeded);
}

#[tokio::test]
async fn full_lifecycle_through_cb_timelock() {
    let anvil = Anvil::start().await;
    let (alice_w, bob) = (anvil.wallet(1), anvil.address(2));
    let cb = CbDao::deploy(&anvil, with_voters(&anvil, base()).achievement(anvil.address(1), 2).achievement(bob, 1)).await;

    // Governance takes over the executor: type bonuses now change by proposal.
    cb.transfer_executor_ownership(cb.timelock).await;
    assert_eq!(cb.cb_view().executor_call::<_, Address>("owner", ()).await, cb.timelock);
    let err = cb.try_set_type_bonus(&cb.deployer, 1, tokens(7)).await.unwrap_err();
    assert!(err.is_revert_named("OwnableUnauthorizedAccount"), "{err}");

    let calls = vec![cb.set_value_calldata(U256::from(42)), cb.executor_calldata("setTypeBonus", (1u8, tokens(7)))];
    let (id, proposed) = cb.propose(&alice_w, vec![cb.target, cb.executor], vec![zero(), zero()], calls, "Raise the contributor bonus to 7").await;
    assert_eq!(cb.proposal_state(id).await, ProposalState::Pending);
    let snapshot = cb.proposal_snapshot(id).await;
    assert_eq!(cb.proposal_deadline(id).await, snapshot + 12);

    cb.advance_past_snapshot(id).await;
    assert_eq!(cb.proposal_state(id).await, ProposalState::Active);
    let voted = cb.cast_vote(&alice_w, id, vote::FOR).await;
    assert_eq!(cb.votes_cast(&voted)[0].weight, tokens(80));
    assert!(cb.has_voted(id, alice_w.address()).await);
    assert_eq!(cb.proposal_votes(id).await, (zero(), tokens(80), zero()));

    cb.advance_past_deadline(id).await;
    assert_eq!(cb.proposal_state(id).await, ProposalState::Succeeded);

    let queued = cb.queue(id).await;
    assert_eq!(cb.proposal_state(id).await, ProposalState::Queued);
    assert_eq!(cb.proposal_eta(id).await, anvil.block_timestamp(queued.block_number).await + 60);
    let scheduled = ethers::utils::keccak256("CallScheduled(bytes32,uint256,address,uint256,bytes,bytes32,uint256)");
    assert_eq!(queued.logs.iter().filter(|l| l.address == cb.timelock && l.topics[0] == H256(scheduled)).count(), 2, "both calls scheduled on CBTimelock");
    let too_soon = cb.try_execute(id).await.unwrap_err();
    assert!(too_soon.is_revert_named("TimelockUnexpectedOperationState"), "{too_soon}");

    cb.advance_past_eta(id).await;
    let executed = cb.execute(id).await;
    assert_eq!(cb.proposal_state(id).await, ProposalState::Executed);
    assert_eq!(cb.target_value().await, U256::from(42));
    let set: Vec<(u8, U256)> = decode_logs(&executed, &cb.executor_abi, cb.executor, "TypeBonusSet");
    assert_eq!(set, vec![(1, tokens(7))]);
    assert_eq!(cb.bonus_changes(&executed), vec![bonus_change(bob, tokens(5), tokens(7))]);
    let value_set: Vec<(Address, U256, U256)> = decode_logs(&executed, &cb.target_abi, cb.target, "ValueSet");
    assert_eq!(value_set, vec![(cb.timelock, zero(), U256::from(42))], "called by the timelock");
    assert_eq!(decode_logs::<U256>(&executed, &cb.governor_abi, cb.governor, "ProposalExecuted"), vec![id]);
    assert_eq!(cb.bonus(bob).await, tokens(7));

    // History stays readable.
    assert_eq!(cb.at(proposed.block_number).proposal_state(id).await, ProposalState::Pending);
    assert_eq!(cb.at(queued.block_number).proposal_state(id).await, ProposalState::Queued);
    assert_eq!(cb.voting_manager_get_past_votes(bob, snapshot).await, tokens(35));
}

#[tokio::test]
async fn quorum_counts_token_supply_only_but_bonus_votes_reach_it() {
    let anvil = Anvil::start().await;
    let (alice_w, dave_w) = (anvil.wallet(1), anvil.wallet(4));
    // Dave holds no tokens, only a type-2 NFT (+20); Bob a type-1 (+5).
    let cb = CbDao::deploy(&anvil, with_voters(&anvil, base()).achievement(dave_w.address(), 2).achievement(anvil.address(2), 1)).await;
    let (id, _) = cb.propose_set_value(&alice_w, U256::from(3), "Bonus-only quorum").await;
    cb.advance_past_snapshot(id).await;
    let snapshot = cb.proposal_snapshot(id).await;
    assert_eq!(cb.cb_view().voting_manager_get_past_total_supply(snapshot).await, tokens(100));
    assert_eq!(cb.quorum(snapshot).await, tokens(10), "10 % of 100 tokens; 25 tokens of bonus not counted");

    let r = cb.cast_vote(&dave_w, id, vote::FOR).await;
    assert_eq!(cb.votes_cast(&r)[0].weight, tokens(20));
    cb.advance_past_deadline(id).await;
    assert_eq!(cb.proposal_votes(id).await, (zero(), tokens(20), zero()));
    assert_eq!(cb.proposal_state(id).await, ProposalState::Succeeded);
}

#[tokio::test]
async fn special_benefits_are_the_best_among_held_types() {
    let anvil = Anvil::start().await;
    let (alice_w, alice) = (anvil.wallet(1), anvil.address(1));
    let cb = CbDao::deploy(&anvil, with_voters(&anvil, base())).await;

    let (t1, r1) = cb.mint_achievement(alice, 1).await;
    assert!(cb.benefits_changes(&r1).is_empty());
    assert_eq!(cb.special_benefits(alice).await, benefits(0, 0));
    let (t2, r2) = cb.mint_achievement(alice, 2).await;
    assert_eq!(cb.benefits_changes(&r2), vec![benefits_change(alice, 250, 1)]);
    let (t3, r3) = cb.mint_achievement(alice, 3).await;
    assert_eq!(cb.benefits_changes(&r3), vec![benefits_change(alice, 500, 1)], "best fee from 3, boost from 2");
    assert_eq!(cb.special_benefits(alice).await, benefits(500, 1));
    // A second NFT of a held type changes nothing.
    let (_, r3b) = cb.mint_achievement(alice, 3).await;
    assert!(cb.benefits_changes(&r3b).is_empty());

    let gone2 = cb.burn_achievement(&alice_w, t2).await;
    assert_eq!(cb.benefits_changes(&gone2), vec![benefits_change(alice, 500, 0)]);

    // Changing a type's benefit refreshes its holders.
    let r = cb.set_special_benefit(1, 100, U256::from(3)).await;
    let set: Vec<(u8, U256, U256)> = decode_logs(&r, &cb.executor_abi, cb.executor, "SpecialBenefitSet");
    assert_eq!(set, vec![(1, U256::from(100), U256::from(3))]);
    assert_eq!(cb.benefits_changes(&r), vec![benefits_change(alice, 500, 3)]);
    assert_eq!(cb.cb_view().type_special_benefit(1).await, benefits(100, 3));

    // Burning one of the two type-3 NFTs keeps the fee discount; the second one drops it.
    let first3 = cb.burn_achievement(&alice_w, t3).await;
    assert!(cb.benefits_changes(&first3).is_empty());
    let last3 = cb.burn_achievement(&alice_w, U256::from(4)).await;
    assert_eq!(cb.benefits_changes(&last3), vec![benefits_change(alice, 100, 3)]);
    let last1 = cb.burn_achievement(&alice_w, t1).await;
    assert_eq!(cb.benefits_changes(&last1), vec![benefits_change(alice, 0, 0)]);
    assert_eq!(cb.special_benefits(alice).await, benefits(0, 0));

    // Guards.
    let err = cb.try_set_special_benefit(&cb.deployer, 1, 10_001, zero()).await.unwrap_err();
    assert!(err.is_revert_named("CBInvalidFeeDiscount(10001)"), "{err}");
    let err = cb.try_set_special_benefit(&alice_w, 1, 1, zero()).await.unwrap_err();
    assert!(err.is_revert_named("OwnableUnauthorizedAccount"), "{err}");
}

#[tokio::test]
async fn only_the_nft_contract_can_call_on_achievement_transfer() {
    let anvil = Anvil::start().await;
    let (alice_w, alice) = (anvil.wallet(1), anvil.address(1));
    let cb = CbDao::deploy(&anvil, with_voters(&anvil, base())).await;
    let hook = cb.executor_calldata("onAchievementTransfer", (Address::zero(), alice, U256::from(99), 2u8));

    for sender in [&alice_w, &cb.deployer] {
        let err = anvil.send(sender, cb.executor, hook.clone()).await.unwrap_err();
        let expected = format!("CBUnauthorizedCaller({:?})", sender.address());
        assert!(err.is_revert_named(&expected), "{err}");
    }
    assert_eq!(cb.bonus(alice).await, zero());

    // Another NFT contract pointing at this executor cannot mint: the executor rejects it and
    // the whole mint reverts.
    let me = cb.deployer.address();
    use ethers::abi::Token;
    let (rogue, _) = anvil
        .deploy(&cb.deployer, "CBAchievementNFT", &[Token::String("Rogue".into()), Token::String("R".into()), Token::Address(me), Token::Address(cb.executor)])
        .await
        .unwrap();
    let err = anvil.send(&cb.deployer, rogue, cb.nft_calldata("mint", (alice, 2u8))).await.unwrap_err();
    assert!(err.is_revert_named(&format!("CBUnauthorizedCaller({rogue:?})")), "{err}");
    assert_eq!(cb.bonus(alice).await, zero());

    // An executor not yet bound to an NFT accepts nobody; it cannot be bound to address zero.
    let (fresh, _) = anvil.deploy(&cb.deployer, "CBBenefitExecutor", &[Token::Address(me)]).await.unwrap();
    let err = anvil.send(&cb.deployer, fresh, hook.clone()).await.unwrap_err();
    assert!(err.is_revert_named("CBUnauthorizedCaller"), "{err}");
    let err = anvil.send(&cb.deployer, fresh, cb.executor_calldata("setAchievementNFT", Address::zero())).await.unwrap_err();
    assert!(err.is_revert_named("CBZeroAddress"), "{err}");
}

#[test]
fn cb_artifacts_are_loaded() {
    for name in ["CBAchievementNFT", "CBBenefitExecutor", "CBVotingManager", "CBTimelock", "CBGovernorCore"] {
        let a = artifact(name);
        assert_eq!(a.contract_name, name);
        assert!(!a.bytecode.is_empty() && !a.deployed_bytecode.is_empty());
        assert!(a.deployed_bytecode.len() <= 24576, "{name} exceeds EIP-170");
    }
    // The voting manager is a complete IVotes + IERC6372 for the governor.
    let vm = &artifact("CBVotingManager").abi;
    for f in ["getVotes", "getPastVotes", "getPastTotalSupply", "delegates", "delegate", "delegateBySig", "clock", "CLOCK_MODE"] {
        assert!(vm.function(f).is_ok(), "CBVotingManager lacks {f}");
    }
}
