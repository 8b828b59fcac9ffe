//! Governance events for the achievement system: each is emitted exactly once, once final,
//! across a restart and reorgs (a shallow one inside the confirmation depth that is never
//! emitted, a deeper one that is retracted), and every feed item validates against the
//! versioned JSON schema in `schema/`.

mod common;
mod support;

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

use common::{Govflow, GovflowOpts};
use ethers::providers::Middleware;
use serde_json::Value;
use support::*;

fn hexa(a: Address) -> String {
    format!("0x{}", hex::encode(a.as_bytes()))
}

fn schema_validator() -> jsonschema::Validator {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("schema");
    let event: Value = serde_json::from_str(&std::fs::read_to_string(dir.join("governance-event.v1.json")).unwrap()).unwrap();
    let item: Value = serde_json::from_str(&std::fs::read_to_string(dir.join("governance-feed-item.v1.json")).unwrap()).unwrap();
    jsonschema::options()
        .with_resource("tag:govflow,2026:schema/governance-event/v1", jsonschema::Resource::from_contents(event).unwrap())
        .build(&item)
        .expect("valid schema")
}

async fn feed(gf: &Govflow) -> Vec<Value> {
    let mut out = Vec::new();
    let mut after = 0;
    loop {
        let page = gf.get_ok(&format!("/v1/events/governance?after={after}&limit=7")).await;
        let items = page["items"].as_array().unwrap().clone();
        if items.is_empty() {
            return out;
        }
        after = page["nextAfter"].as_u64().unwrap();
        out.extend(items);
    }
}

async fn wait_for(gf: &mut Govflow, what: &str, mut ok: impl FnMut(&Value) -> bool, path: &str) -> Value {
    let t = Instant::now();
    loop {
        let v = gf.get_ok(path).await;
        if ok(&v) {
            return v;
        }
        assert!(t.elapsed() < Duration::from_secs(60), "timed out waiting for {what}: {v}\n{}", gf.log());
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn achievement_events_exactly_once_across_restart_and_reorgs() {
    let anvil = Anvil::start().await;
    let w = |i| anvil.wallet(i);
    let dao = Dao::deploy(
        &anvil,
        DaoOptions::default()
            .voting_delay(2)
            .voting_period(30)
            .quorum_numerator(10)
            .timelock_min_delay(60)
            .voter(w(1), tokens(40))
            .voter(w(2), tokens(30))
            .voter(w(3), tokens(20))
            .voter(w(4), tokens(5))
            .voter(w(5), tokens(5)),
    )
    .await;
    let dir = tempfile::tempdir().unwrap();
    let opts = GovflowOpts { rpc_url: anvil.rpc_url(), governor: hexa(dao.governor), confirmations: 2, start_block: None, env: vec![] };
    let data = dir.path().join("data");
    let mut gf = Govflow::start(&opts, &data);

    let mut ids = Vec::new();
    for k in 0..4u64 {
        let (id, _) = dao.propose_set_value(&w(1), U256::from(k), &format!("# Round {k}")).await;
        ids.push(id);
    }
    dao.advance_past_snapshot(ids[3]).await;
    for id in &ids {
        dao.cast_vote(&w(2), *id, vote::FOR).await;
    }
    dao.cast_vote(&w(3), ids[0], vote::FOR).await;
    dao.cast_vote(&w(3), ids[2], vote::AGAINST).await;

    // A restart in the middle of the story.
    gf.wait_indexed(anvil.block_number().await, Duration::from_secs(60)).await;
    gf.stop();
    let mut gf = Govflow::start(&opts, &data);
    gf.wait_indexed(anvil.block_number().await, Duration::from_secs(60)).await;

    // A deep reorg: an event is final (published) before the chain drops it.
    let snap = anvil.snapshot().await;
    let orphan = dao.cast_vote(&w(3), ids[1], vote::FOR).await;
    anvil.mine(6).await;
    let orphan_id = format!(
        "31337:0x{}:{}:vote.cast",
        hex::encode(orphan.block_hash.as_bytes()),
        orphan.logs.iter().find(|l| l.address == dao.governor).unwrap().log_index.unwrap()
    );
    let oid = orphan_id.clone();
    wait_for(
        &mut gf,
        "the orphaned vote published",
        |v| v["items"].as_array().unwrap().iter().any(|i| i["event"]["id"] == oid.as_str()),
        "/v1/events/governance?limit=500",
    )
    .await;
    assert!(anvil.revert(snap).await);
    dao.cast_vote(&w(4), ids[1], vote::AGAINST).await;
    anvil.mine(3).await;
    let head = anvil.block_number().await;
    wait_for(&mut gf, "the deep reorg handled", |v| v["reorgsHandled"].as_u64() >= Some(1) && v["indexedBlock"].as_u64() >= Some(head), "/v1/status").await;

    // A shallow reorg inside the confirmation depth: never emitted.
    let snap = anvil.snapshot().await;
    let shallow = dao.cast_vote(&w(5), ids[1], vote::FOR).await;
    let w5 = hexa(anvil.address(5));
    wait_for(
        &mut gf,
        "the shallow vote indexed",
        |v| v["items"].as_array().unwrap().iter().any(|x| x["voter"] == w5.as_str()),
        &format!("/v1/proposals/{}/votes?limit=50", ids[1]),
    )
    .await;
    assert!(anvil.revert(snap).await);
    anvil.mine(1).await;

    // Execute the first proposal, then bury everything under the confirmation depth.
    dao.advance_past_deadline(ids[3]).await;
    dao.queue(ids[0]).await;
    dao.advance_past_eta(ids[0]).await;
    dao.execute(ids[0]).await;
    anvil.mine(5).await;
    let head = anvil.block_number().await;
    gf.wait_indexed(head, Duration::from_secs(60)).await;
    let t = Instant::now();
    while gf.get_ok("/v1/status").await["reorgsHandled"].as_u64().unwrap() < 2 {
        assert!(t.elapsed() < Duration::from_secs(60), "reorgs not handled\n{}", gf.log());
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    gf.wait_indexed(head, Duration::from_secs(60)).await;
    tokio::time::sleep(Duration::from_millis(500)).await;

    // Expected: every canonical governance log up to the finalized block, plus the streak.
    let finalized = head - 2;
    let filter = ethers::types::Filter::new().address(dao.governor).from_block(0u64).to_block(finalized);
    let logs = anvil.chain().provider().get_logs(&filter).await.unwrap();
    let topic = |sig: &str| H256(ethers::utils::keccak256(sig.as_bytes()));
    let created = topic("ProposalCreated(uint256,address,address[],uint256[],string[],bytes[],uint256,uint256,string)");
    let voted = topic("VoteCast(address,uint256,uint8,uint256,string)");
    let executed = topic("ProposalExecuted(uint256)");
    let mut expected = BTreeSet::new();
    let mut w2_votes = Vec::new();
    for l in &logs {
        let id = |kind: &str| format!("31337:0x{}:{}:{kind}", hex::encode(l.block_hash.unwrap().as_bytes()), l.log_index.unwrap());
        let t0 = l.topics[0];
        if t0 == created {
            expected.insert(id("proposal.created"));
        } else if t0 == voted {
            expected.insert(id("vote.cast"));
            if Address::from(l.topics[1]) == anvil.address(2) {
                w2_votes.push(id("participation.streak"));
            }
        } else if t0 == executed {
            expected.insert(id("proposal.executed"));
        }
    }
    // w2 voted on proposals 0, 1, 2, 3 in creation order: a streak of 3 at the third vote.
    expected.insert(w2_votes[2].clone());
    // 4 proposals; votes: w2 on all four, w3 on two, w4 on one; one execution; one streak.
    assert_eq!(expected.len(), 4 + 7 + 1 + 1, "{expected:?}");

    let items = feed(&gf).await;
    let validator = schema_validator();
    let mut events: BTreeMap<String, usize> = BTreeMap::new();
    let mut retracted = BTreeSet::new();
    let mut last_seq = 0;
    for item in &items {
        if let Err(e) = validator.validate(item) {
            panic!("feed item does not match the schema: {e}\n{item}");
        }
        let seq = item["seq"].as_u64().unwrap();
        assert_eq!(seq, last_seq + 1, "feed positions are consecutive");
        last_seq = seq;
        let id = item["event"]["id"].as_str().unwrap().to_string();
        match item["type"].as_str().unwrap() {
            "event" => *events.entry(id).or_default() += 1,
            _ => {
                assert!(events.contains_key(&id), "a retraction follows its event: {id}");
                retracted.insert(id);
            }
        }
    }
    assert!(events.values().all(|n| *n == 1), "every event exactly once: {events:?}");
    assert_eq!(retracted, BTreeSet::from([orphan_id.clone()]), "only the deep-reorged vote is retracted");
    let live: BTreeSet<String> = events.keys().filter(|k| !retracted.contains(*k)).cloned().collect();
    assert_eq!(live, expected, "the feed holds exactly the final canonical events");
    let shallow_id = format!("31337:0x{}", hex::encode(shallow.block_hash.as_bytes()));
    assert!(!events.keys().any(|k| k.starts_with(&shallow_id)), "a reorg inside the confirmation depth emits nothing");

    // Achievements, with the events that earned them.
    let a1 = gf.get_ok(&format!("/v1/users/{}/governance-achievements", hexa(anvil.address(1)))).await;
    let names: Vec<&str> = a1["achievements"].as_array().unwrap().iter().map(|a| a["achievement"].as_str().unwrap()).collect();
    assert_eq!(names, ["firstProposal", "executedProposal"], "{a1}");
    assert_eq!(a1["proposalsCreated"], 4);
    let a2 = gf.get_ok(&format!("/v1/users/{}/governance-achievements", hexa(anvil.address(2)))).await;
    let names: Vec<&str> = a2["achievements"].as_array().unwrap().iter().map(|a| a["achievement"].as_str().unwrap()).collect();
    assert_eq!(names, ["firstVote", "participationStreak3"], "{a2}");
    assert!(a2["achievements"].as_array().unwrap().iter().all(|a| a["final"] == true));
    gf.stop();
}
