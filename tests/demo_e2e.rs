//! The demo's story end to end: the same anvil, contracts and story `govflow demo` plays
//! (`govflow::demo`), indexed live by the real `govflow run` binary (reorg included); every
//! answer about the story's proposals, votes and accounts is compared with the contracts' own
//! views. A second test runs `govflow demo --exit-after-story` itself and checks that it exits
//! cleanly without leaving anvil behind.

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::{free_port, Govflow, GovflowOpts};
use ethers::types::{Address, U256};
use govflow::demo::{deploy, hex_address, play, Follower, PlayOptions, ProposalState};
use govflow::testkit::Anvil;
use serde_json::Value;

const WAIT: Duration = Duration::from_secs(120);

fn dec(v: &Value) -> U256 {
    U256::from_dec_str(v.as_str().unwrap_or_else(|| panic!("not a decimal string: {v}"))).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn govflow_agrees_with_the_chain_on_the_demo_story() {
    let anvil = Anvil::start().await.expect("anvil");
    let dep = deploy(anvil.rpc_url()).await.expect("deploy");
    let dir = tempfile::tempdir().unwrap();
    let opts = GovflowOpts { rpc_url: anvil.rpc_url().to_owned(), governor: hex_address(dep.governor), confirmations: 0, start_block: None, env: vec![] };
    // GOVFLOW_CHAIN_POLL_INTERVAL_MS=100 (set by Govflow::start).
    let mut gf = Govflow::start(&opts, &dir.path().join("data"));
    gf.wait_indexed(dep.setup_block, WAIT).await;

    // Played while govflow follows the head: it sees the orphaned branch, then the reorg.
    let follower = Follower::new(gf.base.clone());
    let story =
        play(&dep, &anvil, &PlayOptions { follower: Some(follower.clone()), narrate: false }).await.unwrap_or_else(|e| panic!("story: {e}\n{}", gf.log()));
    assert!(story.reorg.followed);
    let head = anvil.block_number().await.unwrap();
    assert_eq!(head, story.head);
    let st = follower.wait_until(head, 1).await.unwrap_or_else(|e| panic!("{e}\n{}", gf.log()));
    assert!(st["reorgsHandled"].as_u64().unwrap() >= 1, "{st}");
    assert_eq!(st["voteSource"], hex_address(dep.voting_manager), "{st}");
    assert_eq!(st["benefitExecutor"], hex_address(dep.executor), "{st}");
    assert_eq!(st["achievementNft"], hex_address(dep.nft), "{st}");

    // The story reaches every state it meant to (Expired has no grace period to reach).
    let states: BTreeSet<ProposalState> = story.proposals.iter().map(|p| p.intended).collect();
    use ProposalState::*;
    assert_eq!(states, BTreeSet::from([Pending, Active, Canceled, Defeated, Succeeded, Queued, Executed]));
    assert_eq!(story.accounts.len(), 30);

    // Exactly the story's proposals.
    let listed: BTreeSet<String> = gf.all_pages("/v1/proposals?limit=4").await.iter().map(|p| p["proposalId"].as_str().unwrap().to_owned()).collect();
    let expected: BTreeSet<String> = story.proposals.iter().map(|p| p.id.to_string()).collect();
    assert_eq!(listed, expected);

    // Proposals: status, tallies, snapshot, deadline (with the late-quorum extension).
    for p in &story.proposals {
        let g = gf.get_ok(&format!("/v1/proposals/{}", p.id)).await;
        let state = ProposalState::from_u8(dep.state(p.id).await.unwrap()).unwrap();
        assert_eq!(state, p.intended, "{} on chain", p.label);
        assert_eq!(g["status"], state.as_str(), "status of {}: {g}", p.label);
        let (against, for_, abstain) = dep.proposal_votes(p.id).await.unwrap();
        assert_eq!((dec(&g["againstVotes"]), dec(&g["forVotes"]), dec(&g["abstainVotes"])), (against, for_, abstain), "tallies of {}", p.label);
        assert_eq!(g["startBlock"], dep.proposal_snapshot(p.id).await.unwrap(), "snapshot of {}", p.label);
        assert_eq!(g["endBlock"], dep.proposal_deadline(p.id).await.unwrap(), "deadline of {}", p.label);
        assert_eq!(g["endBlock"], p.deadline);
        if p.original_deadline != p.deadline {
            assert_eq!(g["originalEndBlock"], p.original_deadline, "original deadline of {}: {g}", p.label);
        }
        let eta = dep.proposal_eta(p.id).await.unwrap();
        assert_eq!(g["eta"].is_null(), eta == 0, "eta of {}: {g}", p.label);
    }
    let late = story.proposals.iter().filter(|p| p.deadline > p.original_deadline).count();
    assert_eq!(late, 1, "one late-quorum extension");

    // Votes: every VoteCast of the canonical chain, with its weight, support, reason and
    // transaction; nothing else (the orphaned vote is replaced by the canonical one).
    let mut by_proposal: BTreeMap<U256, Vec<Value>> = BTreeMap::new();
    for p in &story.proposals {
        by_proposal.insert(p.id, gf.all_pages(&format!("/v1/proposals/{}/votes?limit=7", p.id)).await);
    }
    assert_eq!(by_proposal.values().map(Vec::len).sum::<usize>(), story.votes.len(), "number of votes");
    for v in &story.votes {
        let listed = &by_proposal[&v.proposal_id];
        let mine: Vec<&Value> = listed.iter().filter(|x| x["voter"] == hex_address(v.voter)).collect();
        assert_eq!(mine.len(), 1, "one vote of {:?} on {}", v.voter, v.proposal_id);
        let g = mine[0];
        assert_eq!(dec(&g["weight"]), v.weight, "weight of {:?} on {}: {g}", v.voter, v.proposal_id);
        assert_eq!(g["support"], v.support, "support of {:?}: {g}", v.voter);
        let reason = g["reason"].as_str().unwrap_or("");
        assert_eq!(reason, v.reason, "reason of {:?}: {g}", v.voter);
        assert_eq!(g["transactionHash"].as_str().unwrap(), format!("{:?}", v.tx), "transaction of {:?}", v.voter);
        assert_eq!(g["blockNumber"], v.block);
    }
    for orphan in &story.reorg.orphaned_votes {
        let listed = &by_proposal[&orphan.proposal_id];
        assert!(listed.iter().all(|x| x["transactionHash"].as_str() != Some(&format!("{:?}", orphan.tx))), "the orphaned vote is gone");
    }
    for p in &story.proposals {
        let voters: BTreeSet<String> = by_proposal[&p.id].iter().map(|v| v["voter"].as_str().unwrap().to_owned()).collect();
        for a in &story.accounts {
            assert_eq!(voters.contains(&hex_address(a.address)), dep.has_voted(p.id, a.address).await.unwrap(), "hasVoted({}, {})", p.label, a.name);
        }
    }

    // Voting power at every snapshot that has passed: what the governor counts.
    for p in story.proposals.iter().filter(|p| p.snapshot < head) {
        for a in &story.accounts {
            let vp = gf.get_ok(&format!("/v1/users/{}/voting-power?proposalId={}", hex_address(a.address), p.id)).await;
            let want = dep.get_past_votes(a.address, p.snapshot).await.unwrap();
            assert_eq!(dec(&vp["totalWeight"]), want, "weight of {} at {}: {vp}", a.name, p.label);
            let bonus = dep.past_bonus(a.address, p.snapshot).await.unwrap();
            assert_eq!(dec(&vp["nftBonus"]), bonus, "bonus of {} at {}: {vp}", a.name, p.label);
            assert_eq!(dec(&vp["baseWeight"]) + dec(&vp["delegatedWeight"]) + dec(&vp["nftBonus"]), dec(&vp["totalWeight"]), "{vp}");
        }
    }
    // Now: weights, bonuses, balances, delegates and special benefits.
    for a in &story.accounts {
        let vp = gf.get_ok(&format!("/v1/users/{}/voting-power", hex_address(a.address))).await;
        assert_eq!(dec(&vp["totalWeight"]), dep.get_votes(a.address).await.unwrap(), "weight of {} now: {vp}", a.name);
        assert_eq!(dec(&vp["nftBonus"]), dep.bonus(a.address).await.unwrap(), "bonus of {} now: {vp}", a.name);
        assert_eq!(dec(&vp["balance"]), dep.balance_of(a.address).await.unwrap(), "balance of {}: {vp}", a.name);
        let delegate = dep.delegates(a.address).await.unwrap();
        if delegate == Address::zero() {
            assert!(vp["delegate"].is_null() || vp["delegate"] == hex_address(delegate), "delegate of {}: {vp}", a.name);
        } else {
            assert_eq!(vp["delegate"], hex_address(delegate), "delegate of {}: {vp}", a.name);
        }
        let b = gf.get_ok(&format!("/v1/users/{}/governance-benefits", hex_address(a.address))).await;
        let (fee, boost) = dep.special_benefits(a.address).await.unwrap();
        assert_eq!((dec(&b["feeDiscountBps"]), dec(&b["priorityBoost"])), (fee, boost), "benefits of {}: {b}", a.name);
    }
    // The reorg moved amara's type-2 NFT to cyrus, not to bea.
    let (bea, cyrus) = (story.account("bea").unwrap().address, story.account("cyrus").unwrap().address);
    assert_eq!(story.reorg.orphaned_nft_transfers[0].1, bea);
    assert_eq!(story.reorg.canonical_nft_transfers[0].1, cyrus);
    let bonus_of = |v: Value| dec(&v["nftBonus"]);
    assert_eq!(bonus_of(gf.get_ok(&format!("/v1/users/{}/voting-power", hex_address(bea))).await), U256::zero());
    assert_eq!(bonus_of(gf.get_ok(&format!("/v1/users/{}/voting-power", hex_address(cyrus))).await), U256::exp10(18) * 20);
    gf.stop();
}

/// `govflow demo --exit-after-story`: exits 0 once the story is indexed, printed where to look,
/// and stopped the anvil it started.
#[test]
fn the_demo_command_runs_end_to_end_and_cleans_up() {
    let port = free_port();
    let out_path = std::env::temp_dir().join(format!("govflow-demo-e2e-{}-{port}.out", std::process::id()));
    let err_path = out_path.with_extension("err");
    let mut child = Command::new(env!("CARGO_BIN_EXE_govflow"))
        .args(["demo", "--listen", &format!("127.0.0.1:{port}"), "--exit-after-story"])
        .env("GOVFLOW_LOG", "warn")
        .stdin(Stdio::null())
        .stdout(std::fs::File::create(&out_path).unwrap())
        .stderr(std::fs::File::create(&err_path).unwrap())
        .spawn()
        .expect("spawn govflow demo");
    let demo_pid = child.id();
    let start = Instant::now();
    let status = loop {
        if let Some(s) = child.try_wait().unwrap() {
            break s;
        }
        if start.elapsed() > Duration::from_secs(300) {
            let _ = child.kill();
            let _ = child.wait();
            panic!("govflow demo did not exit within 300 s: {}", std::fs::read_to_string(&out_path).unwrap_or_default());
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    let out = std::fs::read_to_string(&out_path).unwrap_or_default();
    let err = std::fs::read_to_string(&err_path).unwrap_or_default();
    let _ = std::fs::remove_file(&out_path);
    let _ = std::fs::remove_file(&err_path);
    assert!(status.success(), "govflow demo exited with {status}\nstdout:\n{out}\nstderr:\n{err}");
    assert!(out.contains(&format!("API          http://127.0.0.1:{port}")), "{out}");
    assert!(out.contains("govflow caught up with the story"), "{out}");
    assert!(out.contains("1 reorg(s) handled"), "{out}");
    for state in ["Executed", "Queued", "Succeeded", "Defeated", "Canceled", "Active", "Pending"] {
        assert!(out.contains(&format!(" {state} ")), "{state} missing from the guide:\n{out}");
    }
    assert!(out.contains(&format!("curl http://127.0.0.1:{port}/metrics")), "{out}");
    assert!(out.contains("/voting-power?proposalId="), "{out}");
    assert!(out.contains("/governance-benefits"), "{out}");

    // "anvil http://127.0.0.1:PORT (chain id 31337, pid N)"
    let line = out.lines().find(|l| l.trim_start().starts_with("anvil http://")).unwrap_or_else(|| panic!("{out}"));
    let pid: u32 = line.rsplit("pid ").next().unwrap().trim_end_matches(')').parse().unwrap();
    let anvil_port = line.split(':').nth(2).and_then(|s| s.split_whitespace().next()).unwrap();
    let gone = |pid: u32| match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Err(_) => true,
        // A zombie (state Z) is dead; anything else must not be anvil.
        Ok(stat) => stat.contains(") Z ") || !stat.contains("(anvil)"),
    };
    assert!(gone(pid), "anvil (pid {pid}) still running after the demo exited");
    let pgrep = Command::new("pgrep").args(["-f", &format!("anvil.*--port {anvil_port} ")]).output();
    if let Ok(o) = pgrep {
        assert!(o.stdout.is_empty(), "an anvil on port {anvil_port} is still running: {}", String::from_utf8_lossy(&o.stdout));
    }
    // The states anvil persisted on disk went with it (not left in ~/.foundry/anvil/tmp).
    let cache = std::env::temp_dir().join(format!("govflow-demo-anvil-{demo_pid}-{anvil_port}"));
    assert!(!cache.exists(), "anvil's cache {} is left behind", cache.display());
}
