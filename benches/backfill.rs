//! Benchmark: backfill time of an anvil chain holding at least 10,000 votes, with the real
//! `govflow` binary and its embedded store, twice: with the in-process bus (the default), and
//! through NATS JetStream (`bus.kind = "nats"`, nats-server 2.15.2 from `scripts/nats.sh`
//! started on 127.0.0.1): the listener publishes every event and range with acknowledgements,
//! the indexer consumes the stream and commits, so its events/s are end to end through
//! JetStream.
//!
//! `cargo bench --bench backfill [-- VOTERS PROPOSALS]` (default 100 voters × 100 proposals).
//! Prints figures; checks only that govflow counted every vote in both modes.

#[path = "../tests/support/mod.rs"]
mod support;

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use support::nats::NatsServer;
use support::*;

fn hexa(a: Address) -> String {
    format!("0x{}", hex::encode(a.as_bytes()))
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let args: Vec<u64> = std::env::args().skip(1).filter_map(|a| a.parse().ok()).collect();
    let voters_n = *args.first().unwrap_or(&100) as usize;
    let proposals_n = *args.get(1).unwrap_or(&100) as usize;
    println!("govflow backfill benchmark: {voters_n} voters x {proposals_n} proposals = {} votes", voters_n * proposals_n);

    let anvil = Anvil::start().await;
    let t = Instant::now();
    let wallets = anvil.funded_wallets(voters_n).await;
    let opts = DaoOptions::default().voting_delay(1).voting_period(2_000).quorum_numerator(1).timelock_min_delay(60).graded_voters(&wallets);
    let dao = Dao::deploy(&anvil, opts).await;

    // Many transactions per block: automine off, mine every few hundred.
    anvil.set_automine(false).await;
    let mut ids = Vec::new();
    for k in 0..proposals_n {
        let proposer = &wallets[k % wallets.len()];
        let desc = format!("# Bench proposal {k}");
        let (targets, values, calldatas) = (vec![dao.target], vec![U256::zero()], vec![dao.set_value_calldata(U256::from(k))]);
        let desc_hash = H256(ethers::utils::keccak256(desc.as_bytes()));
        let id: U256 = dao.view().governor_call("hashProposal", (targets.clone(), values.clone(), calldatas.clone(), desc_hash)).await;
        ids.push(id);
        let data = dao.governor_calldata("propose", (targets, values, calldatas, desc));
        anvil.submit(proposer, dao.governor, data).await.expect("propose");
        if k % 100 == 99 {
            anvil.mine(1).await;
        }
    }
    anvil.mine(3).await;
    let mut pending = 0;
    for id in &ids {
        for (i, w) in wallets.iter().enumerate() {
            let data = dao.governor_calldata("castVote", (*id, (i % 3) as u8));
            anvil.submit(w, dao.governor, data).await.expect("vote");
            pending += 1;
            if pending == 250 {
                anvil.mine(1).await;
                pending = 0;
            }
        }
    }
    anvil.mine(1).await;
    anvil.set_automine(true).await;
    // Stretch the chain like a real one: blocks without governance logs.
    anvil.mine(5_000).await;
    let head = anvil.block_number().await;
    println!("  chain built in {:.1}s: head {head}", t.elapsed().as_secs_f64());

    let mut embedded = None;
    for mode in ["in-process bus", "NATS JetStream bus"] {
        let nats = mode.starts_with("NATS").then(NatsServer::start);
        let (secs, stats) = backfill(&anvil, &dao, head, nats.as_ref()).await;
        let votes = stats["votes"].as_u64().unwrap_or(0);
        let events = stats["eventsIndexed"].as_u64().unwrap_or(0);
        assert_eq!(votes as usize, voters_n * proposals_n, "every vote indexed ({mode})");
        println!(
            "backfill, {mode}: {head} blocks, {events} events ({votes} votes, {} proposals) in {secs:.2}s (process start to caught up): {:.0} events/s, {:.0} blocks/s",
            stats["proposals"],
            events as f64 / secs,
            head as f64 / secs
        );
        match &embedded {
            None => embedded = Some(stats),
            Some(e) => assert_eq!(e, &stats, "the same statistics through JetStream"),
        }
    }
}

/// Starts govflow on the chain (through `nats` when given), waits until it indexed `head`;
/// the time from process start and the proposal statistics.
async fn backfill(anvil: &Anvil, dao: &Dao, head: u64, nats: Option<&NatsServer>) -> (f64, serde_json::Value) {
    let dir = tempfile::tempdir().expect("tempdir");
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let base = format!("http://127.0.0.1:{port}");
    let t = Instant::now();
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_govflow"));
    cmd.args(["run", "--rpc-url", &anvil.rpc_url(), "--governor", &hexa(dao.governor), "--listen", &format!("127.0.0.1:{port}")])
        .arg("--data-dir")
        .arg(dir.path())
        .env("GOVFLOW_CHAIN_POLL_INTERVAL_MS", "20")
        .env("GOVFLOW_LOG", "warn")
        .stdout(Stdio::null());
    if let Some(n) = nats {
        cmd.env("GOVFLOW_BUS_KIND", "nats").env("GOVFLOW_BUS_NATS_URL", n.url()).env("GOVFLOW_BUS_INSTANCE", "bench");
    }
    let mut child = cmd.spawn().expect("spawn govflow");
    let stats = loop {
        if let Ok(r) = reqwest::get(format!("{base}/v1/status")).await {
            if let Ok(v) = r.json::<serde_json::Value>().await {
                if v["indexedBlock"].as_u64().is_some_and(|b| b >= head) {
                    break reqwest::get(format!("{base}/v1/proposals/stats")).await.unwrap().json::<serde_json::Value>().await.unwrap();
                }
            }
        }
        assert!(t.elapsed() < Duration::from_secs(600), "backfill did not finish");
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    let secs = t.elapsed().as_secs_f64();
    let _ = child.kill();
    let _ = child.wait();
    (secs, stats)
}
