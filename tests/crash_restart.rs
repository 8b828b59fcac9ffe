//! Crash safety: SIGKILL govflow at several points of a backfill, restart it on the same data
//! directory, and get exactly the answers of an uninterrupted run.

mod common;
mod support;

use std::time::{Duration, Instant};

use common::{Govflow, GovflowOpts};
use serde_json::Value;
use support::*;

fn hexa(a: Address) -> String {
    format!("0x{}", hex::encode(a.as_bytes()))
}

/// A history spread over a few thousand blocks: proposals in every outcome, votes, delegation
/// changes and transfers, with long stretches of empty blocks in between.
async fn history(anvil: &Anvil) -> (Dao, Vec<U256>) {
    let dao = Dao::deploy(
        anvil,
        DaoOptions::default()
            .voting_delay(3)
            .voting_period(40)
            .quorum_numerator(10)
            .vote_extension(4)
            .timelock_min_delay(30)
            .voter(anvil.wallet(1), tokens(40))
            .voter(anvil.wallet(2), tokens(25))
            .voter(anvil.wallet(3), tokens(15))
            .voter(anvil.wallet(4), tokens(10))
            .voter(anvil.wallet(5), tokens(5))
            .voter_with(Voter::undelegated(anvil.wallet(6), tokens(5))),
    )
    .await;
    let w = |i| anvil.wallet(i);
    let mut ids = Vec::new();
    for k in 0..8u64 {
        let (id, _) = dao.propose_set_value(&w(1 + (k as usize % 3)), U256::from(100 + k), &format!("# Proposal {k}\nRound {k}")).await;
        ids.push(id);
        dao.advance_past_snapshot(id).await;
        for (i, voter) in [1usize, 2, 3, 4, 5].iter().enumerate() {
            if !(k + i as u64).is_multiple_of(3) {
                let support = ((k + i as u64) % 3) as u8;
                dao.cast_vote_with_reason(&w(*voter), id, support, &format!("r{k}{i}")).await;
            }
        }
        if k % 2 == 0 {
            dao.transfer(&w(2), anvil.address(6), tokens(1)).await;
            dao.delegate(&w(6), anvil.address(if k % 4 == 0 { 6 } else { 3 })).await;
        }
        anvil.mine(350).await;
        if dao.proposal_state(id).await == ProposalState::Succeeded && k % 3 == 0 {
            dao.queue(id).await;
            dao.advance_past_eta(id).await;
            dao.execute(id).await;
        }
    }
    (dao, ids)
}

/// Every answer the API gives about the history, as one JSON document.
async fn snapshot(gf: &Govflow, ids: &[U256], accounts: &[Address]) -> Value {
    let mut doc = serde_json::Map::new();
    doc.insert("list".into(), Value::Array(gf.all_pages("/v1/proposals?limit=3&sort=totalVotes").await));
    doc.insert("stats".into(), gf.get_ok("/v1/proposals/stats").await);
    for id in ids {
        doc.insert(format!("p{id}"), gf.get_ok(&format!("/v1/proposals/{id}")).await);
        doc.insert(format!("v{id}"), Value::Array(gf.all_pages(&format!("/v1/proposals/{id}/votes?limit=2")).await));
        doc.insert(format!("x{id}"), gf.get_ok(&format!("/v1/proposals/{id}/execution-status")).await);
        for a in accounts {
            doc.insert(format!("vp{id}{a:?}"), gf.get_ok(&format!("/v1/users/{}/voting-power?proposalId={id}", hexa(*a))).await);
        }
    }
    for a in accounts {
        doc.insert(format!("vp{a:?}"), gf.get_ok(&format!("/v1/users/{}/voting-power", hexa(*a))).await);
        doc.insert(format!("uv{a:?}"), Value::Array(gf.all_pages(&format!("/v1/users/{}/votes?limit=2", hexa(*a))).await));
    }
    Value::Object(doc)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigkill_during_backfill_loses_and_duplicates_nothing() {
    let anvil = Anvil::start().await;
    let (dao, ids) = history(&anvil).await;
    let head = anvil.block_number().await;
    let accounts: Vec<Address> = (1..=6).map(|i| anvil.address(i)).collect();
    let dir = tempfile::tempdir().unwrap();
    // Small log ranges make the backfill long enough to interrupt.
    let opts = GovflowOpts {
        rpc_url: anvil.rpc_url(),
        governor: hexa(dao.governor),
        confirmations: 0,
        start_block: None,
        env: vec![("GOVFLOW_CHAIN_MAX_LOG_RANGE".into(), "3".into())],
    };

    // Reference: one uninterrupted run.
    let mut reference = Govflow::start(&opts, &dir.path().join("reference"));
    reference.wait_indexed(head, Duration::from_secs(300)).await;
    let expected = snapshot(&reference, &ids, &accounts).await;
    reference.stop();

    // Interrupted: killed with SIGKILL at several points, restarted each time.
    let data = dir.path().join("crashy");
    let mut kills = Vec::new();
    for fraction in [0.15, 0.4, 0.65, 0.9] {
        let mut gf = Govflow::start(&opts, &data);
        let target = (head as f64 * fraction) as u64;
        let t = Instant::now();
        loop {
            let indexed = match reqwest::get(format!("{}/v1/status", gf.base)).await {
                Ok(r) => r.json::<Value>().await.ok().and_then(|v| v["indexedBlock"].as_u64()).unwrap_or(0),
                Err(_) => 0,
            };
            if indexed >= target {
                kills.push(indexed);
                break;
            }
            assert!(gf.running(), "govflow died by itself:\n{}", gf.log());
            assert!(t.elapsed() < Duration::from_secs(300), "no progress to {target}\n{}", gf.log());
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        gf.kill9();
    }
    assert!(kills.windows(2).all(|w| w[0] <= w[1]), "each restart resumed where the last left off: {kills:?}");
    eprintln!("SIGKILL at indexed blocks {kills:?} of {head}");
    assert!(kills.iter().all(|k| *k < head), "killed during the backfill: {kills:?}");
    let mut gf = Govflow::start(&opts, &data);
    gf.wait_indexed(head, Duration::from_secs(300)).await;
    let got = snapshot(&gf, &ids, &accounts).await;
    gf.stop();
    if got != expected {
        for (k, v) in expected.as_object().unwrap() {
            assert_eq!(&got[k], v, "answer {k} differs after crashes at blocks {kills:?}");
        }
    }
    assert_eq!(got, expected);
    // The story is not trivial.
    assert_eq!(expected["stats"]["proposals"], 8);
    assert!(expected["stats"]["votes"].as_u64().unwrap() >= 20);
}
