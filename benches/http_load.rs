//! Benchmark: HTTP load on the cached reads with `wrk`, against the real `govflow` binary
//! indexing an anvil chain.
//!
//! `cargo bench --bench http_load [-- SECONDS CONNECTIONS]` (default 10 s, 64 connections,
//! 2 wrk threads). Builds a governance story (30 voters, 12 proposals, every voter voting on
//! every proposal), starts govflow (release, embedded store, in-process cache, no Redis),
//! waits until the cache is warm, then runs `wrk --latency` on:
//!
//! - `/healthz`: the trivial route (same stack: conventions, handler on the blocking pool),
//!   measured before and after the others; the ratio uses the mean of the two runs;
//! - `/v1/proposals?status=Active`: the active proposal list;
//! - `/v1/proposals/{id}`: a proposal's details;
//! - `/v1/users/{address}/voting-power`: voting power now.
//!
//! Prints requests/s, p99 latency and the ratio to the trivial route; checks that every
//! answer of the cached reads was a cache hit. wrk and govflow share the machine.

#[path = "../tests/support/mod.rs"]
mod support;

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use ethers::signers::LocalWallet;
use support::*;

fn hexa(a: Address) -> String {
    format!("0x{}", hex::encode(a.as_bytes()))
}

/// One wrk run.
struct Run {
    rps: f64,
    p99_ms: f64,
    requests: u64,
    errors: u64,
}

/// "1.23ms", "850.00us", "1.02s", "2.00m" as milliseconds.
fn millis(s: &str) -> Option<f64> {
    let s = s.trim();
    let (num, unit) = s.split_at(s.find(|c: char| c.is_ascii_alphabetic())?);
    let v: f64 = num.parse().ok()?;
    Some(match unit {
        "us" => v / 1_000.0,
        "ms" => v,
        "s" => v * 1_000.0,
        "m" => v * 60_000.0,
        _ => return None,
    })
}

fn wrk(url: &str, seconds: u64, connections: u64) -> Run {
    let out = Command::new("/usr/bin/wrk")
        .args(["-t2", &format!("-c{connections}"), &format!("-d{seconds}s"), "--latency", "--timeout", "5s", url])
        .stderr(Stdio::inherit())
        .output()
        .expect("wrk (Debian package wrk) must be installed at /usr/bin/wrk");
    let text = String::from_utf8_lossy(&out.stdout).to_string();
    let field = |prefix: &str| text.lines().map(str::trim).find(|l| l.starts_with(prefix)).map(|l| l[prefix.len()..].trim().to_string());
    let rps = field("Requests/sec:").and_then(|v| v.parse().ok()).unwrap_or_else(|| panic!("no Requests/sec in wrk output:\n{text}"));
    // The "Latency Distribution" block: "99%    1.23ms".
    let p99_ms = field("99%").and_then(|v| millis(&v)).unwrap_or_else(|| panic!("no 99% line in wrk output:\n{text}"));
    let requests = text.lines().find(|l| l.contains("requests in")).and_then(|l| l.split_whitespace().next()?.parse().ok()).unwrap_or(0);
    let errors = field("Non-2xx or 3xx responses:").and_then(|v| v.parse().ok()).unwrap_or(0)
        + field("Socket errors:").map_or(0, |v| v.split(',').filter_map(|p| p.split_whitespace().last()?.parse::<u64>().ok()).sum());
    Run { rps, p99_ms, requests, errors }
}

async fn get(url: &str) -> (u16, String, serde_json::Value) {
    let r = reqwest::get(url).await.unwrap_or_else(|e| panic!("{url}: {e}"));
    let status = r.status().as_u16();
    let cache = r.headers().get("x-cache").and_then(|v| v.to_str().ok()).unwrap_or("none").to_string();
    (status, cache, r.json().await.unwrap_or(serde_json::Value::Null))
}

fn metric(text: &str, prefix: &str) -> f64 {
    text.lines().filter(|l| l.starts_with(prefix)).filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok()).sum()
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let args: Vec<u64> = std::env::args().skip(1).filter_map(|a| a.parse().ok()).collect();
    let seconds = *args.first().unwrap_or(&10);
    let connections = *args.get(1).unwrap_or(&64);
    let (voters_n, proposals_n) = (30usize, 12usize);
    println!("govflow HTTP load benchmark: wrk -t2 -c{connections} -d{seconds}s, {voters_n} voters x {proposals_n} proposals");

    let anvil = Anvil::start().await;
    let t = Instant::now();
    let wallets: Vec<LocalWallet> = (0..voters_n).map(|_| LocalWallet::new(&mut rand::thread_rng()).with_chain_id(anvil.chain_id)).collect();
    for w in &wallets {
        anvil.set_balance(w.address(), U256::exp10(20)).await;
    }
    let opts = DaoOptions::default().voting_delay(1).voting_period(100_000).quorum_numerator(1).timelock_min_delay(60).graded_voters(&wallets);
    let dao = Dao::deploy(&anvil, opts).await;
    anvil.set_automine(false).await;
    let mut ids = Vec::new();
    for k in 0..proposals_n {
        let proposer = &wallets[k % wallets.len()];
        let desc = format!("# Proposal {k}: fund the cultural programme\n\nA description of a few lines, as proposals have. ipfs://bafy{k}");
        let (targets, values, calldatas) = (vec![dao.target], vec![U256::zero()], vec![dao.set_value_calldata(U256::from(k))]);
        let desc_hash = H256(ethers::utils::keccak256(desc.as_bytes()));
        let id: U256 = dao.view().governor_call("hashProposal", (targets.clone(), values.clone(), calldatas.clone(), desc_hash)).await;
        ids.push(id);
        anvil.submit(proposer, dao.governor, dao.governor_calldata("propose", (targets, values, calldatas, desc))).await.expect("propose");
    }
    anvil.mine(3).await;
    for id in &ids {
        for (i, w) in wallets.iter().enumerate() {
            anvil.submit(w, dao.governor, dao.governor_calldata("castVote", (*id, (i % 3) as u8))).await.expect("vote");
        }
        anvil.mine(1).await;
    }
    anvil.set_automine(true).await;
    let head = anvil.block_number().await;
    println!("  chain built in {:.1}s: head {head}", t.elapsed().as_secs_f64());

    let dir = tempfile::tempdir().expect("tempdir");
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let base = format!("http://127.0.0.1:{port}");
    let mut child = Command::new(env!("CARGO_BIN_EXE_govflow"))
        .args(["run", "--rpc-url", &anvil.rpc_url(), "--governor", &hexa(dao.governor), "--listen", &format!("127.0.0.1:{port}")])
        .arg("--data-dir")
        .arg(dir.path())
        .env("GOVFLOW_CHAIN_POLL_INTERVAL_MS", "1000")
        .env("GOVFLOW_LOG", "warn")
        .stdout(Stdio::null())
        .spawn()
        .expect("spawn govflow");
    let t = Instant::now();
    loop {
        if let Ok(r) = reqwest::get(format!("{base}/v1/status")).await {
            if let Ok(v) = r.json::<serde_json::Value>().await {
                if v["indexedBlock"].as_u64().is_some_and(|b| b >= head) {
                    break;
                }
            }
        }
        assert!(t.elapsed() < Duration::from_secs(120), "govflow did not catch up");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let voter = hexa(wallets[voters_n - 1].address());
    let routes = [
        ("proposal list (Active)", "/v1/proposals?status=Active".to_string()),
        ("proposal detail", format!("/v1/proposals/{}", ids[proposals_n / 2])),
        ("voting power", format!("/v1/users/{voter}/voting-power")),
    ];
    // Warm: every cached read answers from the in-process level.
    let t = Instant::now();
    for (_, path) in &routes {
        loop {
            let (status, cache, body) = get(&format!("{base}{path}")).await;
            assert_eq!(status, 200, "{path}: {body}");
            if cache == "l1-hit" {
                let len = serde_json::to_vec(&body).map(|b| b.len()).unwrap_or(0);
                println!("  {path}: warm, {len} bytes");
                break;
            }
            assert!(t.elapsed() < Duration::from_secs(60), "{path} never became a cache hit");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
    let metrics_before = reqwest::get(format!("{base}/metrics")).await.unwrap().text().await.unwrap();

    let trivial_a = wrk(&format!("{base}/healthz"), seconds, connections);
    let mut runs = Vec::new();
    for (name, path) in &routes {
        runs.push((*name, path.clone(), wrk(&format!("{base}{path}"), seconds, connections)));
    }
    let trivial_b = wrk(&format!("{base}/healthz"), seconds, connections);
    let trivial = (trivial_a.rps + trivial_b.rps) / 2.0;

    let metrics = reqwest::get(format!("{base}/metrics")).await.unwrap().text().await.unwrap();
    let hits = metric(&metrics, "govflow_cache_lookups_total{level=\"l1\",result=\"hit\"}")
        - metric(&metrics_before, "govflow_cache_lookups_total{level=\"l1\",result=\"hit\"}");
    let misses = metric(&metrics, "govflow_cache_lookups_total{level=\"l1\",result=\"miss\"}")
        - metric(&metrics_before, "govflow_cache_lookups_total{level=\"l1\",result=\"miss\"}");
    let _ = child.kill();
    let _ = child.wait();

    println!();
    println!("| route | requests/s | p99 | ratio to /healthz | requests | errors |");
    println!("|---|---:|---:|---:|---:|---:|");
    let row = |name: &str, r: &Run, ratio: f64| {
        println!("| {name} | {:.0} | {:.2} ms | {ratio:.2} | {} | {} |", r.rps, r.p99_ms, r.requests, r.errors);
    };
    row("/healthz (trivial, first)", &trivial_a, trivial_a.rps / trivial);
    for (name, path, r) in &runs {
        let shown = if path.len() > 44 { format!("{}…", &path[..44]) } else { path.clone() };
        row(&format!("{name} `{shown}`"), r, r.rps / trivial);
    }
    row("/healthz (trivial, last)", &trivial_b, trivial_b.rps / trivial);
    println!();
    println!("cache during the cached runs: {hits:.0} in-process hits, {misses:.0} misses");
    let worst = runs.iter().map(|(_, _, r)| r.rps / trivial).fold(f64::INFINITY, f64::min);
    println!("target: cached reads >= 0.5 x the trivial route; worst ratio {worst:.2}: {}", if worst >= 0.5 { "met" } else { "NOT met" });
    for (name, _, r) in &runs {
        assert_eq!(r.errors, 0, "{name}: wrk saw errors");
    }
}
