//! Benchmark: decoding alone, and decoding plus the whole pipeline (proposal actors,
//! voter-power shards, atomic commits to the embedded store), on a synthetic stream of
//! governance logs.
//!
//! `cargo bench --bench pipeline [-- LOGS [BLOCKS_PER_RANGE]]` (default 1,000,000 logs and
//! 2,000 blocks per range, govflow's default `chain.max_log_range`). Prints figures; asserts only
//! that every event was applied.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Instant;

use govflow::domain::{Address, GovernorInfo, B256, U256};
use govflow::store::embedded::EmbeddedStore;
use govflow::store::Store;
use govflow::streams::decode::{self, encode, RawLog};
use govflow::streams::pipeline::{synthetic_header as header, ChainViews, Pipeline, RangeData};

const GOVERNOR: Address = Address([0x60; 20]);
const TOKEN: Address = Address([0x70; 20]);
const LOGS_PER_BLOCK: u64 = 50;
const VOTES_PER_PROPOSAL: u64 = 5_000;

fn addr(i: u64) -> Address {
    let mut a = [0u8; 20];
    a[12..].copy_from_slice(&(i + 1).to_be_bytes());
    Address(a)
}

/// A deterministic stream: proposals, votes (70%), delegate-vote changes (20%), transfers (10%).
fn synthetic(total: u64) -> Vec<RawLog> {
    let t_created = encode::topic(decode::SIGNATURES[0].0);
    let t_vote = encode::topic(decode::SIGNATURES[1].0);
    let t_dvc = encode::topic("DelegateVotesChanged(address,uint256,uint256)");
    let t_transfer = encode::topic("Transfer(address,address,uint256)");
    let mut logs = Vec::with_capacity(total as usize);
    let mut proposal = 0u64;
    let mut votes_in_proposal = VOTES_PER_PROPOSAL;
    for i in 0..total {
        let block = 1 + i / LOGS_PER_BLOCK;
        let log_index = i % LOGS_PER_BLOCK;
        let h = header(block);
        let (address, topics, data) = if votes_in_proposal >= VOTES_PER_PROPOSAL {
            proposal += 1;
            votes_in_proposal = 0;
            let data = encode::proposal_created(
                U256::from(proposal),
                &addr(proposal),
                &TOKEN,
                block,
                block + 1_000_000,
                &format!("# Proposal {proposal}\nFund item {proposal}"),
            );
            (GOVERNOR, vec![t_created], data)
        } else {
            match i % 10 {
                0..=6 => {
                    votes_in_proposal += 1;
                    let voter = addr(1000 + votes_in_proposal);
                    let data = encode::vote_cast(U256::from(proposal), (i % 3) as u8, U256::from(1_000 + i % 977), "");
                    (GOVERNOR, vec![t_vote, B256(encode::address(&voter))], data)
                }
                7 | 8 => {
                    let who = addr(i % 50_000);
                    let mut data = encode::uint(U256::from(i)).to_vec();
                    data.extend_from_slice(&encode::uint(U256::from(i + 5)));
                    (TOKEN, vec![t_dvc, B256(encode::address(&who))], data)
                }
                _ => {
                    let from = addr(i % 40_000);
                    let to = addr((i * 7) % 40_000);
                    (TOKEN, vec![t_transfer, B256(encode::address(&from)), B256(encode::address(&to))], encode::uint(U256::from(1)).to_vec())
                }
            }
        };
        logs.push(RawLog { address, topics, data, block_number: block, block_hash: h.hash, tx_hash: B256([7; 32]), log_index });
    }
    logs
}

fn info() -> GovernorInfo {
    GovernorInfo {
        chain_id: 31337,
        governor: GOVERNOR,
        name: "bench".into(),
        vote_source: TOKEN,
        token: TOKEN,
        benefit_executor: None,
        achievement_nft: None,
        timelock: None,
        clock_mode: govflow::domain::ClockMode::BlockNumber,
        clock_mode_raw: "mode=blocknumber&from=default".into(),
        counting_mode: "support=bravo&quorum=for,abstain".into(),
        quorum_counting: govflow::domain::QuorumCounting::ForAbstain,
        voting_delay: 0,
        voting_period: 1_000_000,
        proposal_threshold: U256::zero(),
        grace_period_secs: None,
    }
}

/// The alternative the decoder was chosen against: ethers' ABI decoding (`ethabi`), which is
/// what `abigen!`-generated event types run, on the same logs from the same contracts' ABIs.
fn ethabi_decode(logs: &[RawLog]) {
    use ethers::abi::RawLog as EthLog;
    use ethers::types::H256;
    let mut events = std::collections::HashMap::new();
    for name in [govflow::testkit::artifacts::TEST_GOVERNOR, govflow::testkit::artifacts::GOV_TOKEN] {
        let abi = govflow::testkit::artifact(name).expect("embedded artifact").abi.clone();
        for e in abi.events() {
            events.insert(e.signature(), e.clone());
        }
    }
    let t = Instant::now();
    let mut ok = 0u64;
    for l in logs {
        let topics: Vec<H256> = l.topics.iter().map(|t| H256(t.0)).collect();
        if let Some(e) = events.get(&topics[0]) {
            if e.parse_log(EthLog { topics, data: l.data.clone() }).is_ok() {
                ok += 1;
            }
        }
    }
    let secs = t.elapsed().as_secs_f64();
    assert_eq!(ok, logs.len() as u64, "every synthetic log decodes with ethabi too");
    println!("  (ethers' ethabi, what abigen! runs: {:>10.0} events/s  ({:.3}s))", logs.len() as f64 / secs, secs);
}

fn main() {
    let args: Vec<u64> = std::env::args().skip(1).filter_map(|a| a.parse().ok()).collect();
    let total = *args.first().unwrap_or(&1_000_000);
    let blocks_per_range = *args.get(1).unwrap_or(&2_000);
    println!("govflow pipeline benchmark: {total} synthetic governance logs ({LOGS_PER_BLOCK} per block, {blocks_per_range} blocks per range)");
    let t = Instant::now();
    let logs = synthetic(total);
    println!("  generated in {:.2}s", t.elapsed().as_secs_f64());

    // 1. Decoding alone.
    let t = Instant::now();
    let mut ok = 0u64;
    for l in &logs {
        if decode::decode(l).is_ok() {
            ok += 1;
        }
    }
    let secs = t.elapsed().as_secs_f64();
    assert_eq!(ok, total, "every synthetic log decodes");
    println!("decode only:            {:>10.0} events/s  ({:.3}s)", total as f64 / secs, secs);
    ethabi_decode(&logs);

    // 2. Decode + proposal actors + voter-power shards + atomic commits with the cursor, with
    //    and without the governance events for the achievement system.
    for achievements in [false, true] {
        run_pipeline(&logs, total, blocks_per_range, achievements);
    }
}

fn run_pipeline(logs: &[RawLog], total: u64, blocks_per_range: u64, achievements: bool) {
    let dir = tempfile::tempdir().expect("temp dir");
    let mut store = EmbeddedStore::open(dir.path()).expect("store");
    if std::env::var("BENCH_NO_FSYNC").is_ok() {
        store.set_durable(false);
    }
    let store: Arc<dyn Store> = Arc::new(store);
    store.init_info(&info()).expect("init");
    let sys = actix_rt::System::new();
    let (applied, secs, commits) = sys.block_on(async {
        let mut pipeline = Pipeline::new(store.clone(), info(), ChainViews::Synthetic { quorum: U256::from(1) }, 4, 100_000)
            .await
            .expect("pipeline")
            .with_achievements(achievements);
        let last_block = logs.last().map(|l| l.block_number).unwrap_or(1);
        let t = Instant::now();
        let mut applied = 0usize;
        let mut commits = 0usize;
        let mut idx = 0usize;
        let mut from = 1u64;
        while from <= last_block {
            let to = (from + blocks_per_range - 1).min(last_block);
            let start = idx;
            while idx < logs.len() && logs[idx].block_number <= to {
                idx += 1;
            }
            let chunk = logs[start..idx].to_vec();
            let mut headers = BTreeMap::new();
            for l in &chunk {
                headers.entry(l.block_number).or_insert_with(|| header(l.block_number));
            }
            headers.insert(to, header(to));
            let out = pipeline.process(RangeData { from, to, headers, logs: chunk, reversible: false, prune_below: None }).await.expect("range");
            applied += out.events;
            commits += 1;
            from = to + 1;
        }
        (applied, t.elapsed().as_secs_f64(), commits)
    });
    assert_eq!(applied as u64, total, "every event applied");
    let label = if achievements { "+ achievement events" } else { "indexing only" };
    println!(
        "decode + actors + commit ({label}): {:>9.0} events/s  ({:.3}s, {commits} atomic commits, {:.1} ms/commit)",
        total as f64 / secs,
        secs,
        secs * 1000.0 / commits as f64
    );
    let s = store.stats().expect("stats");
    let feed_len = store.publish_final(u64::MAX).expect("publish").len();
    println!("  store: {} proposals, {} votes, {} accounts, {} events, {feed_len} governance events", s.proposals, s.votes, s.accounts, s.events);
    let size: u64 = std::fs::read_dir(dir.path()).map(|d| d.filter_map(|e| e.ok()?.metadata().ok()).map(|m| m.len()).sum()).unwrap_or(0);
    println!("  store file: {:.1} MiB ({:.0} bytes/event)", size as f64 / 1048576.0, size as f64 / total as f64);
}
