//! The demo: a local chain (anvil), the OpenZeppelin governance stack deployed, a governance
//! story played, and govflow indexing it and serving the API until Ctrl-C.
//!
//! Run with `scripts/demo.sh` (installs what is missing, then `cargo run --release --example demo`).

#[path = "../tests/support/mod.rs"]
mod support;

use std::time::Duration;

use support::*;

fn hexa(a: Address) -> String {
    format!("0x{}", hex::encode(a.as_bytes()))
}

async fn story(anvil: &Anvil) -> (Dao, Vec<(U256, &'static str)>) {
    let dao = Dao::deploy(
        anvil,
        DaoOptions::default()
            .governor_name("CultureBridge Demo Governor")
            .voting_delay(2)
            .voting_period(20)
            .quorum_numerator(10)
            .vote_extension(5)
            .timelock_min_delay(60)
            .voter(anvil.wallet(1), tokens(400))
            .voter(anvil.wallet(2), tokens(250))
            .voter(anvil.wallet(3), tokens(150))
            .voter_with(Voter::delegating_to(anvil.wallet(4), tokens(100), anvil.address(1)))
            .voter(anvil.wallet(5), tokens(50))
            .voter_with(Voter::undelegated(anvil.wallet(6), tokens(30)))
            .voter(anvil.wallet(7), tokens(20)),
    )
    .await;
    let w = |i| anvil.wallet(i);
    let mut out = Vec::new();

    let (p1, _) = dao
        .propose_set_value(&w(1), U256::from(2026), "# Fund the autumn festival\nGrant 2026 units to the festival. ipfs://bafyfestival2026")
        .await;
    dao.advance_past_snapshot(p1).await;
    dao.cast_vote_with_reason(&w(1), p1, vote::FOR, "Culture brings us together").await;
    dao.cast_vote(&w(2), p1, vote::AGAINST).await;
    dao.cast_vote_with_reason(&w(3), p1, vote::ABSTAIN, "Conflict of interest").await;
    dao.cast_vote_by_sig(&w(5), &w(9), p1, vote::FOR).await;
    dao.transfer(&w(2), anvil.address(6), tokens(20)).await;
    dao.delegate(&w(6), anvil.address(6)).await;
    dao.advance_past_deadline(p1).await;
    dao.queue(p1).await;
    dao.advance_past_eta(p1).await;
    dao.execute(p1).await;
    out.push((p1, "executed through the timelock"));

    let (p2, _) = dao.propose_set_value(&w(2), U256::from(7), "# Rename the guild\nNobody came to vote.").await;
    let (p3, _) = dao.propose_set_value(&w(3), U256::from(8), "# Withdrawn idea").await;
    dao.cancel(&w(3), p3).await;
    dao.advance_past_snapshot(p2).await;
    dao.cast_vote(&w(7), p2, vote::FOR).await;
    dao.advance_past_deadline(p2).await;
    out.push((p2, "defeated: no quorum"));
    out.push((p3, "canceled while pending"));

    let (p4, _) = dao.propose_set_value(&w(1), U256::from(9), "# Late rally\nQuorum reached at the last block.").await;
    let deadline = dao.proposal_deadline(p4).await;
    dao.advance_clock_to(deadline - 1).await;
    dao.cast_vote(&w(1), p4, vote::FOR).await;
    dao.advance_past_deadline(p4).await;
    out.push((p4, "succeeded after a late-quorum extension"));

    let (p5, _) = dao.propose_set_value(&w(5), U256::from(10), "# Unpopular change").await;
    dao.advance_past_snapshot(p5).await;
    dao.cast_vote(&w(2), p5, vote::AGAINST).await;
    dao.cast_vote(&w(7), p5, vote::FOR).await;
    dao.advance_past_deadline(p5).await;
    out.push((p5, "defeated by the majority"));

    let (p6, _) = dao.propose_set_value(&w(1), U256::from(11), "# Open call for artists\nVoting is open.").await;
    dao.advance_past_snapshot(p6).await;
    dao.cast_vote(&w(3), p6, vote::FOR).await;
    out.push((p6, "active: voting open"));
    (dao, out)
}

fn main() -> anyhow::Result<()> {
    let listen = std::env::var("GOVFLOW_DEMO_LISTEN").unwrap_or_else(|_| "127.0.0.1:8080".into());
    let system = actix_rt::System::with_tokio_rt(|| tokio::runtime::Builder::new_multi_thread().enable_all().build().expect("runtime"));
    system.block_on(async move {
        tracing_subscriber::fmt().with_env_filter(std::env::var("GOVFLOW_LOG").unwrap_or_else(|_| "info".into())).init();
        println!("== govflow demo: starting anvil (a local EVM node) and deploying the governance contracts");
        let anvil = Anvil::start().await;
        let (dao, proposals) = story(&anvil).await;
        println!("== story played: {} proposals, chain head at block {}", proposals.len(), anvil.block_number().await);
        let data = tempfile::tempdir()?;
        let cfg = govflow::config::load(
            None,
            std::env::vars(),
            &[
                ("chain.rpc_url", anvil.rpc_url()),
                ("chain.governor", hexa(dao.governor)),
                ("chain.poll_interval_ms", "500".into()),
                ("http.listen", listen.clone()),
                ("store.data_dir", data.path().display().to_string()),
            ],
        )?;
        let base = format!("http://{listen}");
        let head = anvil.block_number().await;
        // Show where to look once govflow has caught up (govflow runs beside, in this task,
        // because its actors live on the actix system's local set).
        let guide = async {
        for _ in 0..600 {
            if let Ok(r) = reqwest::get(format!("{base}/v1/status")).await {
                if let Ok(v) = r.json::<serde_json::Value>().await {
                    if v["indexedBlock"].as_u64().is_some_and(|b| b >= head) {
                        break;
                    }
                }
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        println!("\n== govflow is indexing governor {} on {} and serving {base}", hexa(dao.governor), anvil.rpc_url());
        println!("   proposals:");
        for (id, what) in &proposals {
            println!("     {what:<42} curl {base}/v1/proposals/{id}");
        }
        println!("   try:");
        println!("     curl '{base}/v1/proposals?sort=forVotes&fields=proposalId,title,status,forVotes'");
        println!("     curl {base}/v1/proposals/{}/votes?sort=weight", proposals[0].0);
        println!("     curl {base}/v1/users/{}/voting-power?proposalId={}", hexa(anvil.address(1)), proposals[0].0);
        println!("     curl {base}/v1/proposals/{}/execution-status", proposals[0].0);
        println!("     curl {base}/v1/proposals/stats");
        println!("     curl {base}/v1/status");
        println!("     curl {base}/metrics");
        println!("   the chain keeps going: `cast`-style JSON-RPC at {} (chain id 31337)", anvil.rpc_url());
        println!("== Ctrl-C to stop (anvil and govflow are stopped with it)\n");
        };
        let (r, ()) = tokio::join!(govflow::app::run(cfg), guide);
        drop(anvil);
        r
    })
}
