//! End-to-end: a real anvil chain, the vanilla OpenZeppelin 5 governance stack, the real
//! `govflow` binary; govflow's answers are compared with the contracts' own views
//! (`state`, `proposalVotes`, `proposalSnapshot`, `proposalDeadline`, `hasVoted`,
//! `getPastVotes`, `getVotes`, `balanceOf`, `delegates`).

mod common;
mod cql;
mod support;

use std::collections::BTreeSet;
use std::time::Duration;

use common::{stream_messages, Faults, Govflow, GovflowOpts, RpcProxy};
use serde_json::Value;
use support::*;

const WAIT: Duration = Duration::from_secs(120);

fn hexa(a: Address) -> String {
    format!("0x{}", hex::encode(a.as_bytes()))
}

fn state_name(s: u8) -> &'static str {
    ["Pending", "Active", "Canceled", "Defeated", "Succeeded", "Queued", "Expired", "Executed"][s as usize]
}

/// Everything the story did that the comparison needs.
struct Story {
    proposals: Vec<U256>,
    orphaned: Vec<U256>,
    accounts: Vec<Address>,
    executed: U256,
    extended: U256,
}

async fn deploy(anvil: &Anvil, clock: ClockMode) -> Dao {
    let opts = DaoOptions::with_clock(clock).timelock_min_delay(60).quorum_numerator(10);
    let opts = match clock {
        ClockMode::BlockNumber => opts.voting_delay(2).voting_period(12).vote_extension(5),
        ClockMode::Timestamp => opts.voting_delay(100).voting_period(600).vote_extension(300),
    };
    let w4 = anvil.wallet(4);
    Dao::deploy(
        anvil,
        opts.voter(anvil.wallet(1), tokens(40))
            .voter(anvil.wallet(2), tokens(25))
            .voter(anvil.wallet(3), tokens(15))
            .voter_with(Voter::delegating_to(w4, tokens(10), anvil.address(1)))
            .voter(anvil.wallet(5), tokens(5))
            .voter_with(Voter::undelegated(anvil.wallet(6), tokens(3)))
            .voter(anvil.wallet(7), tokens(2)),
    )
    .await
}

/// Waits until govflow has indexed the chain's head.
async fn sync(gf: &mut Govflow, anvil: &Anvil) {
    let head = anvil.block_number().await;
    gf.wait_indexed(head, WAIT).await;
}

/// What a story is played against: one govflow, or several instances sharing the work.
trait Watch {
    /// The instance to read from now.
    fn primary(&mut self) -> &mut Govflow;
    /// Reorgs handled so far, as the instances report them.
    async fn reorgs(&mut self) -> u64 {
        self.primary().get_ok("/v1/status").await["reorgsHandled"].as_u64().unwrap()
    }
    /// Called at each numbered step of the story (a chance to kill or restart an instance).
    async fn step(&mut self, _n: usize) {}
}

impl Watch for Govflow {
    fn primary(&mut self) -> &mut Govflow {
        self
    }
}

/// Plays every proposal state the contracts can reach (Expired aside: see the state-machine
/// unit tests), votes with and without reasons and by signature, delegation and transfers after
/// a snapshot, a late-quorum extension, queue and execute through the timelock, and a reorg
/// while govflow follows the head.
async fn play<W: Watch>(anvil: &Anvil, dao: &Dao, w8: &mut W) -> Story {
    let w = |i| anvil.wallet(i);
    let mut proposals = Vec::new();

    // P1: full lifecycle, voted every way, executed through the timelock.
    let (p1, _) = dao.propose_set_value(&w(1), U256::from(42), "# Fund the festival\nSet the value to 42. ipfs://bafyfestival").await;
    proposals.push(p1);
    dao.advance_past_snapshot(p1).await;
    dao.cast_vote_with_reason(&w(1), p1, vote::FOR, "culture matters").await;
    dao.cast_vote(&w(2), p1, vote::AGAINST).await;
    dao.cast_vote_with_reason(&w(3), p1, vote::ABSTAIN, "conflict of interest").await;
    dao.cast_vote_by_sig(&w(5), &w(9), p1, vote::FOR).await;
    // After the snapshot: moves that must not change P1's weights.
    dao.transfer(&w(2), anvil.address(6), tokens(10)).await;
    dao.delegate(&w(4), anvil.address(2)).await;
    dao.delegate(&w(6), anvil.address(6)).await;
    sync(w8.primary(), anvil).await;

    // P2: defeated for lack of quorum (2 of 10 needed).
    let (p2, _) = dao.propose_set_value(&w(2), U256::from(7), "Low turnout").await;
    proposals.push(p2);
    // P3: canceled while pending.
    let (p3, _) = dao.propose_set_value(&w(3), U256::from(8), "Withdrawn idea").await;
    proposals.push(p3);
    dao.cancel(&w(3), p3).await;
    dao.advance_past_snapshot(p2).await;
    dao.cast_vote(&w(7), p2, vote::FOR).await;
    w8.step(1).await;

    dao.advance_past_deadline(p1).await;
    dao.queue(p1).await;
    sync(w8.primary(), anvil).await;
    dao.advance_past_eta(p1).await;
    dao.execute(p1).await;
    dao.advance_past_deadline(p2).await;
    w8.step(2).await;

    // P4: quorum reached in the last moments: the deadline is extended.
    let (p4, _) = dao.propose_set_value(&w(1), U256::from(9), "Late quorum").await;
    proposals.push(p4);
    let deadline = dao.proposal_deadline(p4).await;
    dao.advance_clock_to(deadline - 1).await;
    dao.cast_vote(&w(1), p4, vote::FOR).await;
    assert!(dao.proposal_deadline(p4).await > deadline, "late quorum extends the deadline");
    // P5: quorum reached but the majority is against.
    let (p5, _) = dao.propose_set_value(&w(5), U256::from(10), "Unpopular").await;
    proposals.push(p5);
    dao.advance_past_snapshot(p5).await;
    dao.cast_vote(&w(2), p5, vote::AGAINST).await;
    dao.cast_vote(&w(7), p5, vote::FOR).await;
    dao.advance_past_deadline(p4).await;
    dao.advance_past_deadline(p5).await;
    sync(w8.primary(), anvil).await;

    // A reorg while govflow follows the head: a proposal and votes that vanish.
    w8.step(3).await;
    let reorgs_before = w8.reorgs().await;
    let snap = anvil.snapshot().await;
    let (gone, _) = dao.propose_set_value(&w(2), U256::from(666), "Orphaned proposal").await;
    dao.advance_past_snapshot(gone).await;
    dao.cast_vote(&w(2), gone, vote::FOR).await;
    sync(w8.primary(), anvil).await;
    let (s, _) = w8.primary().get(&format!("/v1/proposals/{gone}")).await;
    assert_eq!(s, 200, "the orphaned proposal was indexed before the reorg");
    w8.step(4).await;
    assert!(anvil.revert(snap).await);
    // The canonical chain goes on differently (and further than the orphaned one).
    let (p6, _) = dao.propose_set_value(&w(1), U256::from(11), "# After the reorg\nStill active at the end").await;
    proposals.push(p6);
    dao.advance_past_snapshot(p6).await;
    dao.cast_vote(&w(3), p6, vote::FOR).await;
    dao.cast_vote_with_reason(&w(2), p6, vote::AGAINST, "too soon").await;
    anvil.mine(5).await;
    let t = std::time::Instant::now();
    loop {
        let reorgs = w8.reorgs().await;
        let st = w8.primary().get_ok("/v1/status").await;
        if reorgs > reorgs_before && st["indexedBlock"].as_u64().unwrap() >= anvil.block_number().await {
            break;
        }
        assert!(t.elapsed() < WAIT, "reorg not handled: {st}\n{}", w8.primary().log());
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    w8.step(5).await;
    // P7: still pending at the end.
    let (p7, _) = dao.propose_set_value(&w(2), U256::from(12), "Pending at the end").await;
    proposals.push(p7);
    sync(w8.primary(), anvil).await;

    let accounts = (1..=9).map(|i| anvil.address(i)).collect();
    Story { proposals, orphaned: vec![gone], accounts, executed: p1, extended: p4 }
}

/// Compares every answer of govflow with the contracts' views at the indexed head.
async fn compare(anvil: &Anvil, dao: &Dao, gf: &Govflow, story: &Story) {
    let head = anvil.block_number().await;
    let at = dao.at(head);
    let listed: BTreeSet<String> = gf.all_pages("/v1/proposals?limit=2").await.iter().map(|p| p["proposalId"].as_str().unwrap().to_string()).collect();
    let expected: BTreeSet<String> = story.proposals.iter().map(|p| p.to_string()).collect();
    assert_eq!(listed, expected, "govflow lists exactly the canonical proposals");
    for gone in &story.orphaned {
        let (s, body) = gf.get(&format!("/v1/proposals/{gone}")).await;
        assert_eq!(s, 404, "orphaned proposal rolled back: {body}");
    }
    let mut states = BTreeSet::new();
    for id in &story.proposals {
        let p = gf.get_ok(&format!("/v1/proposals/{id}")).await;
        let state = at.state(*id).await;
        states.insert(state_name(state));
        assert_eq!(p["status"], state_name(state), "status of {id}: {p}");
        let (against, for_, abstain) = at.proposal_votes(*id).await;
        assert_eq!(p["forVotes"], for_.to_string(), "forVotes of {id}");
        assert_eq!(p["againstVotes"], against.to_string(), "againstVotes of {id}");
        assert_eq!(p["abstainVotes"], abstain.to_string(), "abstainVotes of {id}");
        let snapshot = at.proposal_snapshot(*id).await;
        assert_eq!(p["startBlock"], snapshot, "snapshot of {id}");
        assert_eq!(p["endBlock"], at.proposal_deadline(*id).await, "deadline of {id}");
        assert_eq!(p["proposer"], hexa(at.proposal_proposer(*id).await));
        let eta = at.proposal_eta(*id).await;
        assert_eq!(p["eta"].is_null(), eta == 0, "eta of {id}: {p}");
        if state >= 1 && state != 2 {
            assert_eq!(p["quorum"], at.quorum(snapshot).await.to_string(), "quorum of {id}");
        }
        // Voters and weights.
        let votes = gf.all_pages(&format!("/v1/proposals/{id}/votes?sort=weight&limit=2")).await;
        assert_eq!(p["voteCounts"]["total"], votes.len(), "vote counters of {id}: {p}");
        let by = |s: u64| votes.iter().filter(|v| v["support"] == s).count();
        assert_eq!(
            (p["voteCounts"]["against"].as_u64(), p["voteCounts"]["for"].as_u64(), p["voteCounts"]["abstain"].as_u64()),
            (Some(by(0) as u64), Some(by(1) as u64), Some(by(2) as u64)),
            "{p}"
        );
        let voters: BTreeSet<String> = votes.iter().map(|v| v["voter"].as_str().unwrap().to_string()).collect();
        for a in &story.accounts {
            assert_eq!(voters.contains(&hexa(*a)), at.has_voted(*id, *a).await, "hasVoted({id}, {a:?})");
        }
        let mut last = None;
        for v in &votes {
            let voter: Address = v["voter"].as_str().unwrap().parse().unwrap();
            let weight = at.get_past_votes(voter, snapshot).await;
            assert_eq!(v["weight"], weight.to_string(), "weight of {voter:?} on {id}");
            let w = U256::from_dec_str(v["weight"].as_str().unwrap()).unwrap();
            if let Some(l) = last {
                assert!(w <= l, "votes sorted by weight, descending");
            }
            last = Some(w);
            assert_eq!(v["provisional"], false);
        }
        // Voting power at the snapshot, for every account.
        if state != 0 {
            for a in &story.accounts {
                let vp = gf.get_ok(&format!("/v1/users/{}/voting-power?proposalId={id}", hexa(*a))).await;
                assert_eq!(vp["totalWeight"], at.get_past_votes(*a, snapshot).await.to_string(), "power of {a:?} at snapshot of {id}");
            }
        }
    }
    // (`long_history` is a backfill story: its proposals end Succeeded or Defeated.)
    assert!(states.len() >= 6 || story.orphaned.is_empty(), "the story reaches the contract states {states:?}");
    // Voting power now.
    for a in &story.accounts {
        let vp = gf.get_ok(&format!("/v1/users/{}/voting-power", hexa(*a))).await;
        assert_eq!(vp["totalWeight"], at.get_votes(*a).await.to_string(), "votes of {a:?}");
        assert_eq!(vp["balance"], at.balance_of(*a).await.to_string(), "balance of {a:?}");
        let d = at.delegates(*a).await;
        if d.is_zero() {
            assert!(vp["delegate"].is_null(), "{vp}");
        } else {
            assert_eq!(vp["delegate"], hexa(d));
        }
        let total = U256::from_dec_str(vp["totalWeight"].as_str().unwrap()).unwrap();
        let base = U256::from_dec_str(vp["baseWeight"].as_str().unwrap()).unwrap();
        let delegated = U256::from_dec_str(vp["delegatedWeight"].as_str().unwrap()).unwrap();
        assert_eq!(base + delegated, total);
    }
    // The executed proposal's history and execution status.
    // The lifecycle story's own landmarks (`play`; the backfill story has none of these).
    if !story.orphaned.is_empty() {
        let p = gf.get_ok(&format!("/v1/proposals/{}", story.executed)).await;
        let hist: Vec<&str> = p["history"].as_array().unwrap().iter().map(|h| h["status"].as_str().unwrap()).collect();
        assert_eq!(hist, ["Pending", "Active", "Succeeded", "Queued", "Executed"], "{p}");
        assert_eq!(p["title"], "Fund the festival");
        assert_eq!(p["metadataURI"], "ipfs://bafyfestival");
        let ex = gf.get_ok(&format!("/v1/proposals/{}/execution-status", story.executed)).await;
        assert_eq!(ex["executionState"], "executed", "{ex}");
        assert!(ex["operation"]["executed"]["blockNumber"].as_u64().is_some(), "{ex}");
        let ext = gf.get_ok(&format!("/v1/proposals/{}", story.extended)).await;
        assert_ne!(ext["endBlock"], ext["originalEndBlock"], "extension visible: {ext}");
    }
    // Every vote of a voter.
    let mine = gf.all_pages(&format!("/v1/users/{}/votes?limit=1", hexa(anvil.address(2)))).await;
    let mut n = 0;
    for id in &story.proposals {
        if at.has_voted(*id, anvil.address(2)).await {
            n += 1;
        }
    }
    assert_eq!(mine.len(), n);
    let stats = gf.get_ok("/v1/proposals/stats").await;
    assert_eq!(stats["proposals"], story.proposals.len());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn block_clock_history_through_faulty_rpc_with_a_reorg() {
    let anvil = Anvil::start().await;
    let dao = deploy(&anvil, ClockMode::BlockNumber).await;
    // A flaky node that also refuses wide log ranges.
    let proxy = RpcProxy::start(&anvil.rpc_url(), Faults { max_log_range: Some(4), max_log_results: None, fail_one_in: Some(9) });
    let dir = tempfile::tempdir().unwrap();
    let opts = GovflowOpts { rpc_url: proxy.url.clone(), governor: hexa(dao.governor), confirmations: 0, start_block: None, env: vec![] };
    let mut gf = Govflow::start(&opts, &dir.path().join("data"));
    let story = play(&anvil, &dao, &mut gf).await;
    compare(&anvil, &dao, &gf, &story).await;
    assert!(proxy.refused.load(std::sync::atomic::Ordering::Relaxed) > 0, "ranges were refused");
    assert!(proxy.failed.load(std::sync::atomic::Ordering::Relaxed) > 0, "requests failed");
    let metrics = reqwest::get(format!("{}/metrics", gf.base)).await.unwrap().text().await.unwrap();
    assert!(metrics.contains("govflow_listener_reorgs_total 1"), "{metrics}");
    assert!(metrics.contains("govflow_chain_rpc_retries_total"), "retries are counted");
    // Final proposals passivated their actors: only Pending/Active/Succeeded/Queued stay live.
    let mut live = 0;
    for id in &story.proposals {
        if [0u8, 1, 4, 5].contains(&dao.state(*id).await) {
            live += 1;
        }
    }
    assert!(metrics.contains(&format!("govflow_proposal_actors_live {live}")), "{live} live actors expected:\n{metrics}");
    assert!(metrics.contains("govflow_proposals{status=\"Executed\"} 1"), "{metrics}");
    let st = gf.get_ok("/v1/status").await;
    assert_eq!(st["clockMode"], "blockNumber");
    assert_eq!(st["token"], hexa(dao.token));
    assert_eq!(st["timelock"], hexa(dao.timelock));

    // A fresh govflow backfilling the same history directly gives the same answers.
    let opts2 = GovflowOpts { rpc_url: anvil.rpc_url(), ..opts };
    let mut gf2 = Govflow::start(&opts2, &dir.path().join("data2"));
    sync(&mut gf2, &anvil).await;
    compare(&anvil, &dao, &gf2, &story).await;
    gf.stop();
    gf2.stop();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn timestamp_clock_history() {
    let anvil = Anvil::start().await;
    let dao = deploy(&anvil, ClockMode::Timestamp).await;
    let dir = tempfile::tempdir().unwrap();
    let opts = GovflowOpts { rpc_url: anvil.rpc_url(), governor: hexa(dao.governor), confirmations: 0, start_block: None, env: vec![] };
    let mut gf = Govflow::start(&opts, &dir.path().join("data"));
    let story = play(&anvil, &dao, &mut gf).await;
    compare(&anvil, &dao, &gf, &story).await;
    assert_eq!(gf.get_ok("/v1/status").await["clockMode"], "timestamp");
    // Clock-driven transitions land on the first block whose timestamp passes the threshold.
    let p = gf.get_ok(&format!("/v1/proposals/{}", story.executed)).await;
    for h in p["history"].as_array().unwrap() {
        let b = h["blockNumber"].as_u64().unwrap();
        let ts = anvil.block_timestamp(b).await;
        let prev = anvil.block_timestamp(b - 1).await;
        match h["status"].as_str().unwrap() {
            "Active" => {
                let s = p["startBlock"].as_u64().unwrap();
                assert!(ts > s && prev <= s, "Active at the first block past the snapshot");
            }
            "Succeeded" => {
                let d = p["endBlock"].as_u64().unwrap();
                assert!(ts > d && prev <= d, "Succeeded at the first block past the deadline");
            }
            _ => {}
        }
    }
    gf.stop();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn api_errors_are_problem_json() {
    let anvil = Anvil::start().await;
    let dao = deploy(&anvil, ClockMode::BlockNumber).await;
    let (id, _) = dao.propose_set_value(&anvil.wallet(1), U256::from(1), "One").await;
    let dir = tempfile::tempdir().unwrap();
    let opts = GovflowOpts { rpc_url: anvil.rpc_url(), governor: hexa(dao.governor), confirmations: 3, start_block: None, env: vec![] };
    let mut gf = Govflow::start(&opts, &dir.path().join("data"));
    sync(&mut gf, &anvil).await;
    // Within the confirmation depth: served, flagged provisional.
    let p = gf.get_ok(&format!("/v1/proposals/{id}")).await;
    assert_eq!(p["provisional"], true, "{p}");
    // Clock-driven changes (Active, then Defeated) are provisional too until buried.
    anvil.mine(30).await;
    sync(&mut gf, &anvil).await;
    let p = gf.get_ok(&format!("/v1/proposals/{id}")).await;
    assert_eq!(p["status"], "Defeated");
    assert_eq!(p["provisional"], false, "{p}");
    let st = gf.get_ok("/v1/status").await;
    assert_eq!(st["finalizedBlock"].as_u64().unwrap() + 3, st["headBlock"].as_u64().unwrap());

    let cases: &[(&str, u16, Option<&str>)] = &[
        ("/v1/users/0x123/voting-power", 400, Some("address")),
        ("/v1/users/nothex/votes", 400, Some("address")),
        ("/v1/proposals?cursor=@@@", 400, Some("cursor")),
        ("/v1/proposals?status=Sleeping", 400, Some("status")),
        ("/v1/proposals?sort=title", 400, Some("sort")),
        ("/v1/proposals?order=sideways", 400, Some("order")),
        ("/v1/proposals?limit=0", 400, Some("limit")),
        ("/v1/proposals?proposer=0xzz", 400, Some("proposer")),
        ("/v1/proposals?fields=nope", 400, Some("fields")),
        ("/v1/proposals?colour=red", 400, Some("colour")),
        ("/v1/proposals/12345", 404, None),
        ("/v1/proposals/notanumber", 400, Some("proposalId")),
        ("/v1/proposals/12345/votes", 404, None),
        ("/v1/users/0x0000000000000000000000000000000000000001/voting-power?block=99999999", 400, Some("block")),
        ("/v1/nothing", 404, None),
    ];
    for (path, status, param) in cases {
        let r = reqwest::get(format!("{}{}", gf.base, path)).await.unwrap();
        assert_eq!(r.status().as_u16(), *status, "{path}");
        assert_eq!(r.headers()["content-type"], "application/problem+json", "{path}");
        let body: Value = r.json().await.unwrap();
        assert_eq!(body["status"], *status, "{path}: {body}");
        assert!(body["type"].as_str().unwrap().starts_with("tag:govflow"), "{body}");
        if let Some(p) = param {
            assert_eq!(body["parameter"], *p, "{path}: {body}");
        }
    }
    // A cursor from one listing is refused by another.
    dao.propose_set_value(&anvil.wallet(2), U256::from(2), "Two").await;
    sync(&mut gf, &anvil).await;
    let page = gf.get_ok("/v1/proposals?limit=1&sort=forVotes").await;
    let cursor = page["nextCursor"].as_str().expect("two proposals, one per page").to_string();
    let (s, body) = gf.get(&format!("/v1/proposals?limit=1&sort=endBlock&cursor={cursor}")).await;
    assert_eq!((s, body["parameter"].as_str()), (400, Some("cursor")), "{body}");
    let (s, _) = gf.get(&format!("/v1/proposals?limit=1&sort=forVotes&cursor={cursor}")).await;
    assert_eq!(s, 200);
    let proj = gf.get_ok("/v1/proposals?fields=proposalId,status").await;
    let item = proj["items"][0].as_object().unwrap();
    assert_eq!(item.len(), 2, "projection keeps only the fields asked for: {item:?}");
    let c = reqwest::Client::new().post(format!("{}/v1/proposals", gf.base)).send().await.unwrap();
    assert_eq!(c.status().as_u16(), 405);
    assert_eq!(gf.get("/readyz").await.0, 200);
    gf.stop();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deep_reorg_across_batches_with_confirmations() {
    let anvil = Anvil::start().await;
    let dao = deploy(&anvil, ClockMode::BlockNumber).await;
    let (w1, w2, w3) = (anvil.wallet(1), anvil.wallet(2), anvil.wallet(3));
    let (p1, _) = dao.propose_set_value(&w1, U256::from(1), "Survives the reorg").await;
    dao.advance_past_snapshot(p1).await;
    dao.cast_vote(&w2, p1, vote::FOR).await;
    let dir = tempfile::tempdir().unwrap();
    let opts = GovflowOpts {
        rpc_url: anvil.rpc_url(),
        governor: hexa(dao.governor),
        confirmations: 5,
        start_block: None,
        // Two-block ranges: the reorg spans several committed batches.
        env: vec![("GOVFLOW_CHAIN_MAX_LOG_RANGE".into(), "2".into())],
    };
    let mut gf = Govflow::start(&opts, &dir.path().join("data"));
    sync(&mut gf, &anvil).await;

    let snap = anvil.snapshot().await;
    let fork_point = anvil.block_number().await;
    let (gone, _) = dao.propose_set_value(&w2, U256::from(2), "Orphaned").await;
    dao.cast_vote(&w3, p1, vote::AGAINST).await;
    dao.delegate(&w3, anvil.address(1)).await;
    anvil.mine(12).await;
    sync(&mut gf, &anvil).await;
    let old_head = anvil.block_number().await;
    assert_eq!(gf.get(&format!("/v1/proposals/{gone}")).await.0, 200);
    let before = gf.get_ok(&format!("/v1/proposals/{p1}")).await;
    assert_ne!(before["againstVotes"], "0", "the orphaned vote was counted: {before}");

    assert!(anvil.revert(snap).await);
    // A different, longer canonical chain from the fork point.
    let (p3, _) = dao.propose_set_value(&w3, U256::from(3), "Canonical").await;
    dao.cast_vote(&w1, p1, vote::ABSTAIN).await;
    anvil.mine(20).await;
    let head = anvil.block_number().await;
    assert!(head > old_head);
    let t = std::time::Instant::now();
    loop {
        let st = gf.get_ok("/v1/status").await;
        if st["reorgsHandled"].as_u64().unwrap() >= 1 && st["indexedBlock"].as_u64().unwrap() >= head {
            break;
        }
        assert!(t.elapsed() < WAIT, "reorg not handled: {st}\n{}", gf.log());
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(gf.get(&format!("/v1/proposals/{gone}")).await.0, 404, "orphaned proposal rolled back");
    let at = dao.at(head);
    let p = gf.get_ok(&format!("/v1/proposals/{p1}")).await;
    let (against, for_, abstain) = at.proposal_votes(p1).await;
    assert_eq!(
        (p["againstVotes"].as_str().unwrap(), p["forVotes"].as_str().unwrap(), p["abstainVotes"].as_str().unwrap()),
        (against.to_string().as_str(), for_.to_string().as_str(), abstain.to_string().as_str())
    );
    assert_eq!(gf.get_ok(&format!("/v1/proposals/{p3}")).await["status"], state_name(at.state(p3).await));
    let vp = gf.get_ok(&format!("/v1/users/{}/voting-power", hexa(anvil.address(3)))).await;
    assert_eq!(vp["delegate"], hexa(at.delegates(anvil.address(3)).await), "the orphaned delegation was undone");
    let voters: Vec<Value> = gf.all_pages(&format!("/v1/proposals/{p1}/votes")).await;
    assert_eq!(voters.len(), 2, "one orphaned vote removed, one canonical vote added: {voters:?}");
    let log = gf.log();
    assert!(log.contains("reorg: rolled back orphaned blocks"), "{log}");
    assert!(fork_point < head);
    gf.stop();
}

/// ScyllaDB mode: the same history, through the faulty RPC and with its reorg, indexed into a
/// keyspace of a real CQL engine gives the chain's answers, and exactly the answers of the
/// embedded store backfilling the same chain.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scylla_store_gives_the_embedded_answers() {
    let nodes = tokio::task::spawn_blocking(cql::nodes).await.unwrap();
    let anvil = Anvil::start().await;
    let dao = deploy(&anvil, ClockMode::BlockNumber).await;
    let proxy = RpcProxy::start(&anvil.rpc_url(), Faults { max_log_range: Some(4), max_log_results: None, fail_one_in: Some(9) });
    let ks = cql::fresh_keyspace("e2e");
    let _drop = cql::DropKeyspace(ks.clone());
    let env = vec![
        ("GOVFLOW_STORE_BACKEND".to_string(), "scylla".to_string()),
        ("GOVFLOW_SCYLLA_NODES".to_string(), nodes),
        ("GOVFLOW_SCYLLA_KEYSPACE".to_string(), ks.clone()),
    ];
    let dir = tempfile::tempdir().unwrap();
    let opts = GovflowOpts { rpc_url: proxy.url.clone(), governor: hexa(dao.governor), confirmations: 0, start_block: None, env };
    let mut gf = Govflow::start(&opts, &dir.path().join("unused"));
    let story = play(&anvil, &dao, &mut gf).await;
    compare(&anvil, &dao, &gf, &story).await;
    let metrics = reqwest::get(format!("{}/metrics", gf.base)).await.unwrap().text().await.unwrap();
    assert!(metrics.contains("govflow_listener_reorgs_total 1"), "the scylla store went through the reorg: {metrics}");
    assert!(!dir.path().join("unused").exists(), "no embedded store was opened");

    let opts2 = GovflowOpts { rpc_url: anvil.rpc_url(), env: vec![], ..opts };
    let mut gf2 = Govflow::start(&opts2, &dir.path().join("embedded"));
    sync(&mut gf2, &anvil).await;
    assert_same_answers(&gf, &gf2, &story, "scylla").await;
    gf.stop();
    gf2.stop();
}

/// Every API answer about the story (and every page of paginated votes) is byte-identical on
/// `gf` (the mode under test) and `gf2` (embedded, direct).
async fn assert_same_answers(gf: &Govflow, gf2: &Govflow, story: &Story, mode: &str) {
    let mut paths: Vec<String> = vec![
        "/v1/proposals?limit=100".into(),
        "/v1/proposals?limit=100&status=Active,Succeeded,Defeated".into(),
        "/v1/proposals/stats".into(),
        "/v1/delegates?limit=100".into(),
    ];
    for id in &story.proposals {
        paths.push(format!("/v1/proposals/{id}"));
        paths.push(format!("/v1/proposals/{id}/votes?limit=100"));
        paths.push(format!("/v1/proposals/{id}/votes?limit=100&sort=weight&order=asc"));
        paths.push(format!("/v1/proposals/{id}/votes?limit=2&support=1"));
        paths.push(format!("/v1/proposals/{id}/execution-status"));
    }
    for a in &story.accounts {
        let a = hexa(*a);
        paths.push(format!("/v1/users/{a}/votes?limit=100"));
        paths.push(format!("/v1/users/{a}/votes?limit=1&order=asc"));
        paths.push(format!("/v1/users/{a}/voting-power"));
        paths.push(format!("/v1/users/{a}/governance-benefits"));
        paths.push(format!("/v1/users/{a}/governance-achievements"));
    }
    for path in &paths {
        let (s1, b1) = gf.get(path).await;
        let (s2, b2) = gf2.get(path).await;
        assert_eq!((s1, &b1), (s2, &b2), "{path}: {mode} (left) and embedded (right) differ");
    }
    // Every page of a paginated list, followed by its cursor, is the same too.
    for id in &story.proposals {
        let p1 = gf.all_pages(&format!("/v1/proposals/{id}/votes?sort=weight&limit=2")).await;
        let p2 = gf2.all_pages(&format!("/v1/proposals/{id}/votes?sort=weight&limit=2")).await;
        assert_eq!(p1, p2, "pages of votes on {id}");
    }
}

/// The feed items govflow serves, as (item id, feed item) where the id is what the achievements
/// stream uses as message id.
async fn feed_ids(gf: &Govflow) -> Vec<String> {
    let feed = gf.get_ok("/v1/events/governance?limit=500").await;
    feed["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| {
            let id = i["event"]["id"].as_str().unwrap().to_string();
            if i["type"] == "retraction" {
                format!("{id}:retraction")
            } else {
                id
            }
        })
        .collect()
}

/// Asserts the achievements stream holds every feed item exactly once, in feed order.
async fn assert_achievements_exactly_once(js: &async_nats::jetstream::Context, chain_id: u64, gf: &Govflow) -> usize {
    let feed = feed_ids(gf).await;
    assert!(!feed.is_empty(), "the story produces governance events");
    let msgs = stream_messages(js, &format!("GOVFLOW_ACHIEVEMENTS_{chain_id}")).await;
    let ids: Vec<String> = msgs.iter().map(|(_, id, _)| id.clone()).collect();
    let unique: BTreeSet<&String> = ids.iter().collect();
    assert_eq!(unique.len(), ids.len(), "no achievement event twice on the stream");
    assert_eq!(ids, feed, "the achievements stream is the feed, in order");
    for (subject, _, body) in &msgs {
        let kind = body["event"]["kind"].as_str().unwrap().replace('.', "_");
        assert_eq!(subject, &format!("govflow.{chain_id}.achievements.{kind}"));
    }
    msgs.len()
}

fn nats_env(url: &str, instance: &str) -> Vec<(String, String)> {
    vec![
        ("GOVFLOW_BUS_KIND".to_string(), "nats".to_string()),
        ("GOVFLOW_BUS_NATS_URL".to_string(), url.to_string()),
        ("GOVFLOW_BUS_INSTANCE".to_string(), instance.to_string()),
        ("GOVFLOW_BUS_LEASE_TTL_S".to_string(), "2".to_string()),
        ("GOVFLOW_BUS_ACK_WAIT_S".to_string(), "5".to_string()),
    ]
}

/// The full history (faulty RPC, a reorg while following) through NATS JetStream: the
/// listener publishes, the indexer consumes; the answers equal the chain's views and the
/// embedded mode's, byte for byte; a NATS subscriber receives every achievement event once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nats_bus_gives_the_embedded_answers() {
    use futures::StreamExt;
    let nats = support::nats::NatsServer::start();
    let anvil = Anvil::start().await;
    let dao = deploy(&anvil, ClockMode::BlockNumber).await;
    let chain_id = anvil.chain_id;
    let client = async_nats::connect(nats.url()).await.unwrap();
    let js = async_nats::jetstream::new(client.clone());
    let mut live = client.subscribe(format!("govflow.{chain_id}.achievements.>")).await.unwrap();
    let proxy = RpcProxy::start(&anvil.rpc_url(), Faults { max_log_range: Some(4), max_log_results: None, fail_one_in: Some(9) });
    let dir = tempfile::tempdir().unwrap();
    let opts =
        GovflowOpts { rpc_url: proxy.url.clone(), governor: hexa(dao.governor), confirmations: 0, start_block: None, env: nats_env(&nats.url(), "solo") };
    let mut gf = Govflow::start(&opts, &dir.path().join("nats"));
    let story = play(&anvil, &dao, &mut gf).await;
    compare(&anvil, &dao, &gf, &story).await;
    let metrics = reqwest::get(format!("{}/metrics", gf.base)).await.unwrap().text().await.unwrap();
    assert!(metrics.contains("govflow_bus_published_total"), "{metrics}");
    assert!(metrics.contains("govflow_bus_role_held{role=\"indexer\"} 1"), "{metrics}");

    // The events stream holds each chain log once (by identity), ranges and the rollback.
    let events = stream_messages(&js, &format!("GOVFLOW_EVENTS_{chain_id}")).await;
    let ids: Vec<&String> = events.iter().map(|(_, id, _)| id).collect();
    assert_eq!(ids.iter().collect::<BTreeSet<_>>().len(), ids.len(), "no message twice on the events stream");
    assert!(events.iter().any(|(s, _, _)| s == &format!("govflow.{chain_id}.events.vote_cast")));
    assert!(events.iter().any(|(s, _, _)| s == &format!("govflow.{chain_id}.blocks.rollback")), "the reorg travelled on the stream");

    let opts2 = GovflowOpts { rpc_url: anvil.rpc_url(), env: vec![], ..opts };
    let mut gf2 = Govflow::start(&opts2, &dir.path().join("embedded"));
    sync(&mut gf2, &anvil).await;
    assert_same_answers(&gf, &gf2, &story, "nats").await;

    // Achievement events: the stream is the feed, each once; the live subscriber got them all.
    let n = assert_achievements_exactly_once(&js, chain_id, &gf).await;
    let mut got = Vec::new();
    while got.len() < n {
        match tokio::time::timeout(Duration::from_secs(5), live.next()).await {
            Ok(Some(m)) => got.push(m.headers.as_ref().and_then(|h| h.get("Nats-Msg-Id")).map(|v| v.to_string()).unwrap_or_default()),
            _ => break,
        }
    }
    assert_eq!(got, feed_ids(&gf).await, "the live NATS subscriber received every achievement event once, in order");
    gf.stop();
    gf2.stop();
}

/// A history made before govflow starts, long enough for a backfill to be interrupted: six
/// proposals with votes, transfers and delegations, separated by hundreds of empty blocks.
async fn long_history(anvil: &Anvil, dao: &Dao) -> Story {
    let w = |i| anvil.wallet(i);
    let mut proposals = Vec::new();
    for k in 0..6u64 {
        let (p, _) = dao.propose_set_value(&w(1 + (k as usize % 3)), U256::from(100 + k), &format!("# Backfill {k}\nProposal {k}")).await;
        proposals.push(p);
        dao.advance_past_snapshot(p).await;
        for (i, support) in [(1, vote::FOR), (2, vote::AGAINST), (3, vote::FOR), (5, vote::ABSTAIN), (7, vote::FOR)] {
            if !(i + k as usize).is_multiple_of(4) {
                dao.cast_vote(&w(i), p, support).await;
            }
        }
        dao.transfer(&w(2), anvil.address(5 + (k as usize % 3)), tokens(1)).await;
        anvil.mine(600).await;
    }
    let accounts = (1..=9).map(|i| anvil.address(i)).collect();
    Story { proposals: proposals.clone(), orphaned: vec![], accounts, executed: proposals[0], extended: proposals[0] }
}

/// Waits until `gf` has indexed at least `block` (without the panic on timeout of
/// `wait_indexed`, and tolerating a process that is gone).
async fn indexed(gf: &Govflow) -> u64 {
    match reqwest::get(format!("{}/v1/status", gf.base)).await {
        Ok(r) => r.json::<Value>().await.ok().and_then(|v| v["indexedBlock"].as_u64()).unwrap_or(0),
        Err(_) => 0,
    }
}

/// Feed, achievements stream and every answer agree with an embedded run over the same chain.
async fn assert_like_embedded(anvil: &Anvil, dao: &Dao, gf: &Govflow, story: &Story, js: &async_nats::jetstream::Context, dir: &std::path::Path, mode: &str) {
    let opts2 = GovflowOpts { rpc_url: anvil.rpc_url(), governor: hexa(dao.governor), confirmations: 0, start_block: None, env: vec![] };
    let mut gf2 = Govflow::start(&opts2, &dir.join(format!("embedded-{mode}")));
    sync(&mut gf2, anvil).await;
    // Deep history costs the headers of the blocks with logs only: the range that reaches the
    // reorg window stops at it instead of fetching every header of its 2,000 blocks.
    let head = anvil.block_number().await;
    let metrics = reqwest::get(format!("{}/metrics", gf2.base)).await.unwrap().text().await.unwrap();
    let headers: f64 = metrics
        .lines()
        .find_map(|l| l.strip_prefix("govflow_chain_rpc_duration_seconds_count{method=\"eth_getBlockByNumber\"} "))
        .and_then(|v| v.trim().parse().ok())
        .expect("header requests are measured");
    assert!(headers < (head / 4) as f64, "{headers} headers fetched for a backfill of {head} blocks");
    assert_same_answers(gf, &gf2, story, mode).await;
    // No reorg here: the feed itself is the same, item for item.
    assert_eq!(gf.get_ok("/v1/events/governance?limit=500").await, gf2.get_ok("/v1/events/governance?limit=500").await, "feed");
    let n = assert_achievements_exactly_once(js, anvil.chain_id, gf).await;
    assert!(n >= 6, "the history has achievement events");
    gf2.stop();
}

/// nats-server restarts in the middle of a backfill: readiness fails while it is away and
/// comes back by itself; nothing is lost or counted twice. Then every message of the events
/// stream is published again (same ids: all dropped as duplicates) and the ranges once more
/// with new ids (as after the deduplication window): the answers do not move.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nats_restart_during_backfill_and_duplicate_publishes() {
    let mut nats = support::nats::NatsServer::start();
    let anvil = Anvil::start().await;
    let dao = deploy(&anvil, ClockMode::BlockNumber).await;
    let story = long_history(&anvil, &dao).await;
    let head = anvil.block_number().await;
    let dir = tempfile::tempdir().unwrap();
    let mut env = nats_env(&nats.url(), "solo");
    env.push(("GOVFLOW_CHAIN_MAX_LOG_RANGE".into(), "1".into()));
    let opts = GovflowOpts { rpc_url: anvil.rpc_url(), governor: hexa(dao.governor), confirmations: 0, start_block: None, env };
    let mut gf = Govflow::start(&opts, &dir.path().join("nats"));
    let t = std::time::Instant::now();
    while indexed(&gf).await < head / 3 {
        assert!(t.elapsed() < WAIT, "no backfill progress\n{}", gf.log());
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let before = indexed(&gf).await;
    nats.stop();
    let t = std::time::Instant::now();
    let mut unready = false;
    while t.elapsed() < Duration::from_secs(3) {
        let (s, _) = gf.get("/readyz").await;
        if s == 503 {
            unready = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(unready, "readiness fails while NATS is away");
    nats.restart();
    gf.wait_indexed(head, WAIT).await;
    assert!(before < head, "the restart happened during the backfill ({before} of {head})");
    let t = std::time::Instant::now();
    while gf.get("/readyz").await.0 != 200 {
        assert!(t.elapsed() < WAIT, "readiness did not recover\n{}", gf.log());
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let client = async_nats::connect(nats.url()).await.unwrap();
    let js = async_nats::jetstream::new(client);
    compare(&anvil, &dao, &gf, &story).await;
    assert_like_embedded(&anvil, &dao, &gf, &story, &js, dir.path(), "nats-restart").await;

    // Duplicate publishes.
    let events = stream_messages(&js, &format!("GOVFLOW_EVENTS_{}", anvil.chain_id)).await;
    let before_answers = gf.get_ok(&format!("/v1/proposals/{}/votes?limit=100", story.proposals[0])).await;
    let stats = gf.get_ok("/v1/proposals/stats").await;
    for (subject, id, body) in &events {
        let ack = js
            .send_publish(
                subject.clone(),
                async_nats::jetstream::message::PublishMessage::build().message_id(id).payload(serde_json::to_vec(body).unwrap().into()),
            )
            .await
            .unwrap()
            .await
            .unwrap();
        assert!(ack.duplicate, "{id} published again is a duplicate");
    }
    let mut fresh = 0;
    for (subject, id, body) in &events {
        let ack = js
            .send_publish(
                subject.clone(),
                async_nats::jetstream::message::PublishMessage::build().message_id(format!("{id}#again")).payload(serde_json::to_vec(body).unwrap().into()),
            )
            .await
            .unwrap()
            .await
            .unwrap();
        assert!(!ack.duplicate);
        fresh += 1;
    }
    // The indexer reads them all (its consumer's lag drains) and changes nothing.
    let t = std::time::Instant::now();
    loop {
        let metrics = reqwest::get(format!("{}/metrics", gf.base)).await.unwrap().text().await.unwrap();
        let redelivered_done = metrics.lines().any(|l| l == "govflow_bus_consumer_lag_messages 0");
        if redelivered_done && t.elapsed() > Duration::from_secs(2) {
            break;
        }
        assert!(t.elapsed() < WAIT, "indexer did not drain {fresh} copies\n{metrics}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    // Undecodable messages are terminated and counted, never retried forever or fatal.
    let vote_subject = format!("govflow.{}.events.vote_cast", anvil.chain_id);
    for (i, payload) in [&b"not json"[..], &br#"{"schemaVersion":1,"event":"VoteCast"}"#[..]].into_iter().enumerate() {
        js.send_publish(
            vote_subject.clone(),
            async_nats::jetstream::message::PublishMessage::build().message_id(format!("garbage-{i}")).payload(payload.to_vec().into()),
        )
        .await
        .unwrap()
        .await
        .unwrap();
    }
    let t = std::time::Instant::now();
    loop {
        let metrics = reqwest::get(format!("{}/metrics", gf.base)).await.unwrap().text().await.unwrap();
        if metrics.lines().any(|l| l == "govflow_bus_terminated_total 2") {
            break;
        }
        assert!(t.elapsed() < WAIT, "the undecodable messages were not terminated\n{metrics}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert!(gf.log().contains("undecodable message terminated"), "{}", gf.log());
    assert_eq!(gf.get_ok(&format!("/v1/proposals/{}/votes?limit=100", story.proposals[0])).await, before_answers);
    assert_eq!(gf.get_ok("/v1/proposals/stats").await, stats, "no vote counted twice");
    compare(&anvil, &dao, &gf, &story).await;
    assert_achievements_exactly_once(&js, anvil.chain_id, &gf).await;
    gf.stop();
}

/// Two instances share one ScyllaDB keyspace and one NATS server; the one holding the indexer
/// role is SIGKILLed during the backfill; the other takes the roles over after the lease
/// expires and finishes. Everything is present exactly once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_instances_survive_a_kill_during_backfill() {
    let nodes = tokio::task::spawn_blocking(cql::nodes).await.unwrap();
    let nats = support::nats::NatsServer::start();
    let anvil = Anvil::start().await;
    let dao = deploy(&anvil, ClockMode::BlockNumber).await;
    let story = long_history(&anvil, &dao).await;
    let head = anvil.block_number().await;
    let ks = cql::fresh_keyspace("nats");
    let _drop = cql::DropKeyspace(ks.clone());
    let dir = tempfile::tempdir().unwrap();
    let start = |name: &str| {
        let mut env = nats_env(&nats.url(), name);
        env.push(("GOVFLOW_CHAIN_MAX_LOG_RANGE".into(), "1".into()));
        env.push(("GOVFLOW_STORE_BACKEND".into(), "scylla".into()));
        env.push(("GOVFLOW_SCYLLA_NODES".into(), nodes.clone()));
        env.push(("GOVFLOW_SCYLLA_KEYSPACE".into(), ks.clone()));
        let opts = GovflowOpts { rpc_url: anvil.rpc_url(), governor: hexa(dao.governor), confirmations: 0, start_block: None, env };
        Govflow::start(&opts, &dir.path().join(name))
    };
    let mut a = start("a");
    let mut b = start("b");
    let holds = |gf: &Govflow, role: &'static str| {
        let base = gf.base.clone();
        async move {
            let m = match reqwest::get(format!("{base}/metrics")).await {
                Ok(r) => r.text().await.unwrap_or_default(),
                Err(_) => return false,
            };
            m.lines().any(|l| l == format!("govflow_bus_role_held{{role=\"{role}\"}} 1"))
        }
    };
    // Both instances serve partitions of the actors (the fair share of 4 is 2 each) and
    // answer work requests, while the backfill runs.
    let metric = |gf: &Govflow, name: &'static str| {
        let base = gf.base.clone();
        async move {
            let m = match reqwest::get(format!("{base}/metrics")).await {
                Ok(r) => r.text().await.unwrap_or_default(),
                Err(_) => return 0.0,
            };
            m.lines().find_map(|l| l.strip_prefix(name).and_then(|v| v.trim().parse::<f64>().ok())).unwrap_or(0.0)
        }
    };
    let t = std::time::Instant::now();
    loop {
        let shared = metric(&a, "govflow_actors_partitions_held ").await >= 1.0
            && metric(&b, "govflow_actors_partitions_held ").await >= 1.0
            && metric(&a, "govflow_actors_requests_served_total ").await >= 1.0
            && metric(&b, "govflow_actors_requests_served_total ").await >= 1.0;
        if shared {
            break;
        }
        assert!(t.elapsed() < WAIT, "the instances never shared the partitions\n{}\n{}", a.log(), b.log());
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let shared_at = indexed(&a).await.max(indexed(&b).await);
    assert!(shared_at < head, "work was shared during the backfill ({shared_at} of {head})");
    let served_before = (metric(&a, "govflow_actors_requests_served_total ").await, metric(&b, "govflow_actors_requests_served_total ").await);
    let t = std::time::Instant::now();
    let victim_is_a = loop {
        let progress = indexed(&a).await.max(indexed(&b).await);
        if progress >= head / 4 {
            if holds(&a, "indexer").await {
                break true;
            }
            if holds(&b, "indexer").await {
                break false;
            }
        }
        assert!(t.elapsed() < WAIT, "no backfill progress\n{}\n{}", a.log(), b.log());
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    let (victim, survivor) = if victim_is_a { (&mut a, &mut b) } else { (&mut b, &mut a) };
    let at_kill = indexed(victim).await;
    victim.kill9();
    assert!(at_kill < head, "the kill happened during the backfill ({at_kill} of {head})");
    survivor.wait_indexed(head, WAIT).await;
    assert!(holds(survivor, "indexer").await && holds(survivor, "listener").await, "the survivor took both roles");
    let t = std::time::Instant::now();
    while metric(survivor, "govflow_actors_partitions_held ").await < 4.0 {
        assert!(t.elapsed() < WAIT, "the survivor did not take every partition over\n{}", survivor.log());
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    eprintln!("requests served before the kill: a {} b {}; killed at block {at_kill} of {head}", served_before.0, served_before.1);
    let client = async_nats::connect(nats.url()).await.unwrap();
    let js = async_nats::jetstream::new(client);
    compare(&anvil, &dao, survivor, &story).await;
    assert_like_embedded(&anvil, &dao, survivor, &story, &js, dir.path(), "two-instances").await;
    survivor.stop();
}

/// A range whose partition request and reply exceed one NATS message (1 MiB by default): 400
/// votes with 3,000-character reasons mined in one block. They travel through the work object
/// store; every vote is indexed, the tallies equal the governor's, the answers equal the
/// embedded mode's, and the objects are removed afterwards.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nats_ranges_larger_than_a_message() {
    const VOTERS: usize = 400;
    let nats = support::nats::NatsServer::start();
    let anvil = Anvil::start().await;
    let wallets = anvil.funded_wallets(VOTERS).await;
    let opts = DaoOptions::default().voting_delay(1).voting_period(1_000).quorum_numerator(1).timelock_min_delay(60).graded_voters(&wallets);
    let dao = Dao::deploy(&anvil, opts).await;
    let (id, _) = dao.propose_set_value(&wallets[0], U256::from(7), "# Long reasons").await;
    dao.advance_past_snapshot(id).await;
    anvil.set_automine(false).await;
    for (i, w) in wallets.iter().enumerate() {
        let reason = format!("voter {i}: {}", "because ".repeat(375));
        let data = dao.governor_calldata("castVoteWithReason", (id, (i % 3) as u8, reason));
        anvil.submit(w, dao.governor, data).await.expect("vote");
    }
    anvil.mine(1).await;
    anvil.set_automine(true).await;
    // Deeper than the reorg window (64 blocks), the votes' blocks are one batch; inside it the
    // indexer commits block by block, and 400 votes may not fit in one block's gas.
    anvil.mine(80).await;
    let head = anvil.block_number().await;

    let dir = tempfile::tempdir().unwrap();
    let opts = GovflowOpts { rpc_url: anvil.rpc_url(), governor: hexa(dao.governor), confirmations: 0, start_block: None, env: nats_env(&nats.url(), "solo") };
    let mut gf = Govflow::start(&opts, &dir.path().join("nats"));
    gf.wait_indexed(head, WAIT).await;
    let metrics = reqwest::get(format!("{}/metrics", gf.base)).await.unwrap().text().await.unwrap();
    let blobs: u64 = metrics.lines().find_map(|l| l.strip_prefix("govflow_actors_blob_transfers_total ")).and_then(|v| v.parse().ok()).unwrap_or(0);
    assert!(blobs >= 2, "the request and the reply went through the object store\n{metrics}");

    let votes = gf.all_pages(&format!("/v1/proposals/{id}/votes?limit=500")).await;
    assert_eq!(votes.len(), VOTERS, "every vote indexed");
    let p = gf.get_ok(&format!("/v1/proposals/{id}")).await;
    let (against, for_, abstain) = dao.proposal_votes(id).await;
    assert_eq!(p["forVotes"], for_.to_string());
    assert_eq!(p["againstVotes"], against.to_string());
    assert_eq!(p["abstainVotes"], abstain.to_string());
    assert!(votes.iter().all(|v| v["reason"].as_str().is_some_and(|r| r.len() > 3_000)), "reasons intact");

    let embedded = GovflowOpts { env: vec![], ..opts };
    let mut gf2 = Govflow::start(&embedded, &dir.path().join("embedded"));
    gf2.wait_indexed(head, WAIT).await;
    assert_eq!(gf2.get_ok(&format!("/v1/proposals/{id}")).await, p, "the embedded answer");
    assert_eq!(gf2.all_pages(&format!("/v1/proposals/{id}/votes?limit=500")).await, votes, "the embedded votes");

    // Objects are deleted once read (leftovers would expire).
    use futures::StreamExt;
    let js = async_nats::jetstream::new(async_nats::connect(nats.url()).await.unwrap());
    let bucket = js.get_object_store(format!("govflow_work_{}", anvil.chain_id)).await.unwrap();
    let left: Vec<_> = bucket.list().await.unwrap().collect().await;
    assert!(left.is_empty(), "work objects left: {}", left.len());
    gf.stop();
    gf2.stop();
}

/// Instances playing the story together; one is SIGKILLed at a step and started again later.
struct Cluster {
    nodes: Vec<Option<Govflow>>,
    names: Vec<String>,
    opts: GovflowOpts,
    /// Extra environment per instance (its name goes into `GOVFLOW_BUS_INSTANCE`).
    nats: bool,
    dir: std::path::PathBuf,
    kill_at: usize,
    restart_at: usize,
    killed: Option<usize>,
    starts: usize,
    log: Vec<String>,
}

impl Cluster {
    /// Waits until instance `i` serves its API.
    async fn until_serving(&mut self, i: usize) {
        let t = std::time::Instant::now();
        let gf = self.nodes[i].as_mut().expect("started");
        while reqwest::get(format!("{}/v1/status", gf.base)).await.is_err() {
            assert!(gf.running(), "{} exited\n{}", self.names[i], gf.log());
            assert!(t.elapsed() < WAIT, "{} does not serve its API\n{}", self.names[i], gf.log());
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    fn start_node(&mut self, i: usize) {
        let mut opts = self.opts.clone();
        if self.nats {
            opts.env.push(("GOVFLOW_BUS_INSTANCE".into(), self.names[i].clone()));
        }
        self.starts += 1;
        // Embedded mode: a restarted instance finds its own store again (a fresh one would
        // index the chain anew and never see the blocks the reorg orphans); over NATS the
        // store is the shared CQL keyspace and the directory only holds what is local.
        let dir = if self.nats { self.dir.join(format!("{}-{}", self.names[i], self.starts)) } else { self.dir.join(&self.names[i]) };
        let gf = Govflow::start(&opts, &dir);
        self.nodes[i] = Some(gf);
    }

    /// The instance holding the indexer role (the first one in embedded mode).
    async fn leader(&self) -> usize {
        if !self.nats {
            return 0;
        }
        let t = std::time::Instant::now();
        loop {
            for (i, gf) in self.nodes.iter().enumerate() {
                let Some(gf) = gf else { continue };
                let m = match reqwest::get(format!("{}/metrics", gf.base)).await {
                    Ok(r) => r.text().await.unwrap_or_default(),
                    Err(_) => continue,
                };
                if m.lines().any(|l| l == "govflow_bus_role_held{role=\"indexer\"} 1") {
                    return i;
                }
            }
            assert!(t.elapsed() < WAIT, "no instance holds the indexer role");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
}

impl Watch for Cluster {
    fn primary(&mut self) -> &mut Govflow {
        self.nodes.iter_mut().flatten().next().expect("an instance runs")
    }

    async fn reorgs(&mut self) -> u64 {
        let mut n = 0;
        for gf in self.nodes.iter().flatten() {
            if let Ok(r) = reqwest::get(format!("{}/v1/status", gf.base)).await {
                n += r.json::<Value>().await.ok().and_then(|v| v["reorgsHandled"].as_u64()).unwrap_or(0);
            }
        }
        n
    }

    async fn step(&mut self, n: usize) {
        if n == self.kill_at {
            let i = self.leader().await;
            self.nodes[i].as_mut().unwrap().kill9();
            self.log.push(format!("step {n}: SIGKILL {} (indexer)", self.names[i]));
            self.nodes[i] = None;
            self.killed = Some(i);
            if self.nodes.iter().all(Option::is_none) {
                // A lone instance comes back at once: nobody else would index meanwhile.
                self.start_node(i);
                self.until_serving(i).await;
                self.killed = None;
                self.log.push(format!("step {n}: restarted {}", self.names[i]));
            }
        }
        if n == self.restart_at {
            if let Some(i) = self.killed.take() {
                self.start_node(i);
                self.until_serving(i).await;
                self.log.push(format!("step {n}: restarted {}", self.names[i]));
            }
        }
    }
}

/// The story with its live reorg, played against `instances` govflow processes (NATS
/// JetStream and a Cassandra keyspace when `nats`, else one embedded instance); the instance
/// holding the indexer role is SIGKILLed at step `kill_at` (step 4: the orphaned blocks are
/// indexed and the chain reorganises while it is dead) and restarted at the next step. Every
/// instance ends equal to the chain's views and to an embedded backfill, byte for byte, and
/// stops cleanly on SIGTERM (exit 0, no panic).
async fn story_with_a_leader_kill(instances: usize, nats: bool, kill_at: usize) {
    let nats_server = nats.then(support::nats::NatsServer::start);
    let nodes = if nats { Some(tokio::task::spawn_blocking(cql::nodes).await.unwrap()) } else { None };
    let anvil = Anvil::start().await;
    let dao = deploy(&anvil, ClockMode::BlockNumber).await;
    let ks = cql::fresh_keyspace("cluster");
    let _drop = nats.then(|| cql::DropKeyspace(ks.clone()));
    let mut env = vec![];
    if let (Some(server), Some(nodes)) = (&nats_server, &nodes) {
        env = vec![
            ("GOVFLOW_BUS_KIND".to_string(), "nats".to_string()),
            ("GOVFLOW_BUS_NATS_URL".to_string(), server.url()),
            // As deploy/nats: 8 partitions, 6-second leases.
            ("GOVFLOW_BUS_PARTITIONS".to_string(), "8".to_string()),
            ("GOVFLOW_BUS_LEASE_TTL_S".to_string(), "6".to_string()),
            ("GOVFLOW_BUS_ACK_WAIT_S".to_string(), "5".to_string()),
            ("GOVFLOW_STORE_BACKEND".to_string(), "scylla".to_string()),
            ("GOVFLOW_SCYLLA_NODES".to_string(), nodes.clone()),
            ("GOVFLOW_SCYLLA_KEYSPACE".to_string(), ks.clone()),
            // Instances that do not hold the indexer role serve their read cache until its TTL
            // (or a Redis invalidation): compared right after the story, they read the store.
            ("GOVFLOW_CACHE_ENABLED".to_string(), "false".to_string()),
        ];
    }
    let dir = tempfile::tempdir().unwrap();
    let opts = GovflowOpts { rpc_url: anvil.rpc_url(), governor: hexa(dao.governor), confirmations: 0, start_block: None, env };
    let names: Vec<String> = (0..instances).map(|i| format!("node{i}")).collect();
    let mut c = Cluster {
        nodes: (0..instances).map(|_| None).collect(),
        names,
        opts: opts.clone(),
        nats,
        dir: dir.path().to_path_buf(),
        kill_at,
        restart_at: kill_at + 1,
        killed: None,
        starts: 0,
        log: vec![],
    };
    for i in 0..instances {
        c.start_node(i);
    }
    for i in 0..instances {
        c.until_serving(i).await;
    }
    let story = play(&anvil, &dao, &mut c).await;
    // Restarted at the end at the latest.
    c.step(c.restart_at).await;
    let head = anvil.block_number().await;
    for gf in c.nodes.iter_mut().flatten() {
        gf.wait_indexed(head, WAIT).await;
    }
    eprintln!("cluster story: {}", c.log.join("; "));
    for gf in c.nodes.iter().flatten() {
        compare(&anvil, &dao, gf, &story).await;
    }
    let embedded = GovflowOpts { env: vec![], ..opts };
    let mut reference = Govflow::start(&embedded, &dir.path().join("reference"));
    sync(&mut reference, &anvil).await;
    for gf in c.nodes.iter().flatten() {
        assert_same_answers(gf, &reference, &story, "after a leader kill").await;
    }
    reference.stop();
    for (i, gf) in c.nodes.iter_mut().enumerate() {
        if let Some(gf) = gf {
            gf.stop_clean(&format!("node{i}"));
        }
    }
}

/// The step at which the leader is killed: `GOVFLOW_STRESS_KILL_AT` (1 to 4; `scripts/stress-cluster.sh`
/// runs every one), else 4, the hardest: the reorg happens while the leader is dead.
fn kill_step() -> usize {
    std::env::var("GOVFLOW_STRESS_KILL_AT").ok().and_then(|v| v.parse().ok()).filter(|n| (1..=4).contains(n)).unwrap_or(4)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_instances_nats_cql_reorg_and_leader_kill() {
    story_with_a_leader_kill(2, true, kill_step()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_instance_nats_cql_reorg_and_kill() {
    story_with_a_leader_kill(1, true, kill_step()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn embedded_reorg_and_kill() {
    story_with_a_leader_kill(1, false, kill_step()).await;
}
