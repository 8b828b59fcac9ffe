//! CultureBridge voting power end to end: achievement NFTs add checkpointed bonuses through the
//! benefit executor and the voting manager; govflow discovers the manager, executor and NFT
//! from the governor alone and its voting power (now and at every snapshot), its vote weights
//! and its tallies equal the contracts' own views.

mod common;
mod support;

use std::time::Duration;

use common::{Govflow, GovflowOpts};
use support::*;

fn hexa(a: Address) -> String {
    format!("0x{}", hex::encode(a.as_bytes()))
}

fn dec(v: &serde_json::Value) -> U256 {
    U256::from_dec_str(v.as_str().unwrap_or_else(|| panic!("not a decimal string: {v}"))).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nft_bonuses_count_exactly_as_the_governor_counts_them() {
    let anvil = Anvil::start().await;
    let w = |i| anvil.wallet(i);
    let cb = CbDao::deploy(
        &anvil,
        CbOptions::default()
            .dao_options(|d| d.voting_delay(2).voting_period(15).quorum_numerator(10).vote_extension(3).timelock_min_delay(60))
            .voter(w(1), tokens(40))
            .voter(w(2), tokens(25))
            .voter(w(3), tokens(15))
            .voter_with(Voter::delegating_to(w(4), tokens(10), anvil.address(1)))
            .voter(w(5), tokens(5))
            .voter_with(Voter::undelegated(w(6), tokens(5))),
    )
    .await;
    let dir = tempfile::tempdir().unwrap();
    let opts = GovflowOpts { rpc_url: anvil.rpc_url(), governor: hexa(cb.governor), confirmations: 0, start_block: None, env: vec![] };
    let mut gf = Govflow::start(&opts, &dir.path().join("data"));

    // Achievements before the first proposal.
    let (nft2, _) = cb.mint_achievement(anvil.address(2), 2).await;
    let (nft3, _) = cb.mint_achievement(anvil.address(3), 1).await;
    cb.mint_achievement(anvil.address(5), 1).await;
    cb.mint_achievement(anvil.address(6), 3).await;

    let (p1, _) = cb.propose_set_value(&w(1), U256::from(1), "# Festival budget").await;
    // Before the snapshot: counts for P1. The bonus is not delegable: w4 keeps it.
    cb.mint_achievement(anvil.address(4), 1).await;
    cb.advance_past_snapshot(p1).await;
    // After the snapshot: must not change P1's weights.
    cb.transfer_achievement(&w(2), anvil.address(5), nft2).await;
    cb.burn_achievement(&w(3), nft3).await;
    cb.set_type_bonus(1, tokens(7)).await;
    let mut weights = Vec::new();
    for (i, support) in [(1usize, vote::FOR), (2, vote::AGAINST), (3, vote::ABSTAIN), (4, vote::FOR), (5, vote::FOR)] {
        let r = cb.cast_vote(&w(i), p1, support).await;
        weights.extend(cb.votes_cast(&r));
    }

    let (p2, _) = cb.propose_set_value(&w(2), U256::from(2), "# Second round").await;
    cb.advance_past_snapshot(p2).await;
    cb.transfer_achievement(&w(5), anvil.address(6), nft2).await;
    for (i, support) in [(5usize, vote::AGAINST), (6, vote::FOR), (1, vote::FOR)] {
        let r = cb.cast_vote(&w(i), p2, support).await;
        weights.extend(cb.votes_cast(&r));
    }
    cb.advance_past_deadline(p1).await;
    cb.advance_past_deadline(p2).await;
    let head = anvil.block_number().await;
    gf.wait_indexed(head, Duration::from_secs(120)).await;

    let st = gf.get_ok("/v1/status").await;
    assert_eq!(st["voteSource"], hexa(cb.voting_manager), "{st}");
    assert_eq!(st["token"], hexa(cb.token));
    assert_eq!(st["benefitExecutor"], hexa(cb.executor));
    assert_eq!(st["achievementNft"], hexa(cb.nft));

    let at = cb.cb_at(head);
    let accounts: Vec<Address> = (1..=6).map(|i| anvil.address(i)).collect();
    for id in [p1, p2] {
        let p = gf.get_ok(&format!("/v1/proposals/{id}")).await;
        assert_eq!(
            p["status"].as_str().unwrap(),
            ["Pending", "Active", "Canceled", "Defeated", "Succeeded", "Queued", "Expired", "Executed"][cb.state(id).await as usize]
        );
        let (against, for_, abstain) = cb.proposal_votes(id).await;
        assert_eq!((dec(&p["againstVotes"]), dec(&p["forVotes"]), dec(&p["abstainVotes"])), (against, for_, abstain), "tallies of {id}");
        let snapshot = cb.proposal_snapshot(id).await;
        for a in &accounts {
            let vp = gf.get_ok(&format!("/v1/users/{}/voting-power?proposalId={id}", hexa(*a))).await;
            assert_eq!(dec(&vp["totalWeight"]), at.voting_manager_get_past_votes(*a, snapshot).await, "weight of {a:?} at {id}: {vp}");
            assert_eq!(dec(&vp["nftBonus"]), cb.past_bonus(*a, snapshot).await, "bonus of {a:?} at {id}");
            assert_eq!(dec(&vp["baseWeight"]) + dec(&vp["delegatedWeight"]) + dec(&vp["nftBonus"]), dec(&vp["totalWeight"]));
        }
    }
    // Every vote's weight is the weight in its VoteCast event.
    assert_eq!(weights.len(), 8);
    for v in &weights {
        let votes = gf.all_pages(&format!("/v1/proposals/{}/votes", v.proposal_id)).await;
        let mine = votes.iter().find(|x| x["voter"] == hexa(v.voter)).unwrap_or_else(|| panic!("vote of {:?} missing", v.voter));
        assert_eq!(dec(&mine["weight"]), v.weight, "weight of {:?}", v.voter);
        // The record carries the breakdown at the snapshot: it adds up to the counted weight.
        let b = &mine["weightBreakdown"];
        assert_eq!(dec(&b["totalWeight"]), v.weight, "{mine}");
        let snapshot = cb.proposal_snapshot(v.proposal_id).await;
        assert_eq!(dec(&b["nftBonus"]), cb.past_bonus(v.voter, snapshot).await, "{mine}");
        assert_eq!(dec(&b["baseWeight"]) + dec(&b["delegatedWeight"]) + dec(&b["nftBonus"]), v.weight);
    }
    // Now: token votes plus the current bonus; special benefits.
    for a in &accounts {
        let vp = gf.get_ok(&format!("/v1/users/{}/voting-power", hexa(*a))).await;
        assert_eq!(dec(&vp["totalWeight"]), at.voting_manager_get_votes(*a).await, "weight of {a:?} now: {vp}");
        assert_eq!(dec(&vp["nftBonus"]), cb.bonus(*a).await, "bonus of {a:?} now");
        let b = gf.get_ok(&format!("/v1/users/{}/governance-benefits", hexa(*a))).await;
        let (fee, boost) = cb.special_benefits(*a).await;
        assert_eq!((dec(&b["feeDiscountBps"]), dec(&b["priorityBoost"])), (fee, boost), "benefits of {a:?}: {b}");
    }
    // Delegates ranked by the weight the governor counts now, with delegator counts.
    let ranked = gf.all_pages("/v1/delegates?limit=2").await;
    assert!(ranked.len() >= 5, "{ranked:?}");
    let mut last: Option<U256> = None;
    for d in &ranked {
        let a: Address = d["address"].as_str().unwrap().parse().unwrap();
        let total = dec(&d["totalWeight"]);
        assert_eq!(total, at.voting_manager_get_votes(a).await, "{d}");
        if let Some(l) = last {
            assert!(total <= l, "sorted by weight, descending");
        }
        last = Some(total);
        let expected = {
            let mut n = 0u64;
            for o in &accounts {
                if *o != a && at.dao().delegates(*o).await == a {
                    n += 1;
                }
            }
            n
        };
        assert_eq!(d["delegators"], expected, "delegators of {a:?}");
    }
    let w1 = ranked.iter().find(|d| d["address"] == hexa(anvil.address(1))).unwrap();
    assert_eq!(w1["delegators"], 1, "w4 delegates to w1: {w1}");

    // The bonus-only voter (w4 delegated its tokens away) voted with its bonus alone.
    let w4 = gf.get_ok(&format!("/v1/users/{}/voting-power?proposalId={p1}", hexa(anvil.address(4)))).await;
    assert_eq!(dec(&w4["nftBonus"]), tokens(5));
    assert_eq!(dec(&w4["totalWeight"]), tokens(5));
    gf.stop();
}
