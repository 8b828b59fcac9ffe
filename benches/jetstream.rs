//! Benchmark: govflow's NATS JetStream mode (`[bus] kind = "nats"`), with nats-server 2.15.2
//! (`.tools/bin/nats-server`, `scripts/nats.sh install`) started by the test harness.
//!
//! `cargo bench --bench jetstream [-- EVENTS VOTES]` (default 200,000 events, 200 votes).
//!
//! 1. Publish throughput with asynchronous acknowledgements: [`JetStreamBus::publish_all`]
//!    (what the listener's `EventLog` uses) of EVENTS `VoteCast` event messages (the real
//!    `EventMessage` JSON, ids `31337:0x<blockHash>:<logIndex>`, subject
//!    `govflow.31337.events.vote_cast`, file storage) in batches of 1,000 and of 4,096 (the
//!    listener's chunk); events/s, MB/s, p50/p99 of the time from a batch's first publish to its
//!    last acknowledgement; then the same ids again: every one must come back a duplicate.
//!    Target: at least 50,000 events/s.
//! 2. End-to-end visibility latency: anvil (automine), a Governor DAO, the real `govflow`
//!    binary with confirmations 0 and a 50 ms poll interval; VOTES votes cast one at a time;
//!    for each, the time from its receipt (its block mined, and final with 0 confirmations)
//!    until `GET /v1/users/{voter}/votes` (not cached) shows it, polled every 5 ms. Once with
//!    the embedded default (in-process bus), once with the NATS bus on a fresh server and
//!    store. Target: NATS p99 < 200 ms.
//!
//! Everything listens on 127.0.0.1 only.

#[path = "../tests/support/mod.rs"]
mod support;

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use ethers::signers::LocalWallet;
use govflow::bus::jetstream::JetStreamBus;
use govflow::bus::{Bus, Envelope, Subjects};
use govflow::config::BusConfig;
use govflow::domain::{Address as GAddress, B256};
use govflow::streams::relay::EventMessage;
use support::nats::NatsServer;
use support::*;

const CHAIN_ID: u64 = 31337;
/// Votes cast before the measured ones in each mode (connections, caches, first commits).
const WARMUP_VOTES: usize = 5;
/// The API is polled this often while waiting for a vote.
const API_POLL: Duration = Duration::from_millis(5);
/// A vote not visible after this long counts as a timeout.
const VISIBILITY_TIMEOUT: Duration = Duration::from_secs(10);

fn hexa(a: Address) -> String {
    format!("0x{}", hex::encode(a.as_bytes()))
}

fn keccak(b: &[u8]) -> [u8; 32] {
    ethers::utils::keccak256(b)
}

/// Nearest-rank percentile of sorted `v`.
fn pct(v: &[f64], p: f64) -> f64 {
    if v.is_empty() {
        return f64::NAN;
    }
    let i = ((p / 100.0 * v.len() as f64).ceil() as usize).clamp(1, v.len()) - 1;
    v[i]
}

fn sorted(mut v: Vec<f64>) -> Vec<f64> {
    v.sort_by(|a, b| a.partial_cmp(b).unwrap());
    v
}

// ----- part 1: publish throughput --------------------------------------------------------------

/// The `VoteCast` event message of vote `i` of run `run`, as the listener publishes it: 20 votes
/// per block, a block hash and transaction hash per vote derived from `(run, i)`.
fn vote_event(run: u64, i: u64) -> Envelope {
    let block_number = 1_000_000 + i / 20;
    let log_index = i % 20;
    let block_hash = B256(keccak(format!("bench block {run}:{block_number}").as_bytes()));
    let tx_hash = B256(keccak(format!("bench tx {run}:{i}").as_bytes()));
    let mut voter = [0u8; 32];
    voter[12..].copy_from_slice(&keccak(format!("voter {i}").as_bytes())[..20]);
    // VoteCast(address indexed voter, uint256 proposalId, uint8 support, uint256 weight, string reason)
    // with an empty reason: 5 words.
    let mut data = Vec::with_capacity(160);
    for word in [U256::from_big_endian(&keccak(b"bench proposal")), U256::from(i % 3), tokens(1 + i % 1000), U256::from(0x80), U256::zero()] {
        let mut w = [0u8; 32];
        word.to_big_endian(&mut w);
        data.extend_from_slice(&w);
    }
    let msg = EventMessage {
        schema_version: 1,
        event: "VoteCast".into(),
        chain_id: CHAIN_ID,
        address: GAddress(keccak(b"bench governor")[..20].try_into().unwrap()),
        topics: vec![B256(keccak(b"VoteCast(address,uint256,uint8,uint256,string)")), B256(voter)],
        data: format!("0x{}", hex::encode(&data)),
        block_number,
        block_hash,
        transaction_hash: tx_hash,
        log_index,
    };
    Envelope::json(Subjects::new(CHAIN_ID).event("vote_cast"), EventMessage::id(CHAIN_ID, &block_hash, log_index), &msg).expect("an event message is JSON")
}

struct Pass {
    events: usize,
    bytes: usize,
    secs: f64,
    batch_ms: Vec<f64>,
    duplicates: usize,
}

impl Pass {
    fn rate(&self) -> f64 {
        self.events as f64 / self.secs
    }
    fn mbps(&self) -> f64 {
        self.bytes as f64 / self.secs / 1e6
    }
}

async fn publish_pass(bus: &JetStreamBus, events: &[Envelope], batch: usize) -> Pass {
    let mut batch_ms = Vec::with_capacity(events.len() / batch + 1);
    let mut duplicates = 0;
    let t = Instant::now();
    for chunk in events.chunks(batch) {
        let b = Instant::now();
        let acks = bus.publish_all(chunk.to_vec()).await.unwrap_or_else(|e| panic!("publish_all: {e}"));
        batch_ms.push(b.elapsed().as_secs_f64() * 1e3);
        assert_eq!(acks.len(), chunk.len(), "one acknowledgement per message");
        duplicates += acks.iter().filter(|a| a.duplicate).count();
    }
    let secs = t.elapsed().as_secs_f64();
    Pass { events: events.len(), bytes: events.iter().map(|e| e.payload.len()).sum(), secs, batch_ms: sorted(batch_ms), duplicates }
}

struct PublishRow {
    batch: usize,
    first: Pass,
    again: Pass,
}

async fn publish_throughput(n: usize) -> Vec<PublishRow> {
    let nats = NatsServer::start();
    let cfg = BusConfig { kind: govflow::config::BusKind::Nats, nats_url: nats.url(), ..Default::default() };
    let bus = JetStreamBus::connect(&cfg, CHAIN_ID, "bench-publisher").await.unwrap_or_else(|e| panic!("connect: {e}"));
    let sample = vote_event(0, 0);
    println!(
        "  message: {} bytes of JSON on {}, id {} (file storage, dedupe window {} s)",
        sample.payload.len(),
        sample.subject,
        sample.id,
        cfg.duplicate_window_s
    );
    // A short warm-up (connection, stream files), on ids of its own.
    let warm: Vec<Envelope> = (0..5_000).map(|i| vote_event(99, i)).collect();
    publish_pass(&bus, &warm, 1_000).await;
    drop(warm);

    let mut rows = Vec::new();
    for (run, batch) in [(1u64, 1_000usize), (2, 4_096)] {
        let events: Vec<Envelope> = (0..n as u64).map(|i| vote_event(run, i)).collect();
        let first = publish_pass(&bus, &events, batch).await;
        assert_eq!(first.duplicates, 0, "fresh ids must not be duplicates");
        let again = publish_pass(&bus, &events, batch).await;
        println!(
            "  batch {batch:>5}: {:>8.0} events/s, {:>6.1} MB/s, batch ack p50 {:.1} ms p99 {:.1} ms | again: {:.2}% duplicates, {:.0} events/s",
            first.rate(),
            first.mbps(),
            pct(&first.batch_ms, 50.0),
            pct(&first.batch_ms, 99.0),
            again.duplicates as f64 * 100.0 / again.events as f64,
            again.rate()
        );
        rows.push(PublishRow { batch, first, again });
    }
    let info = bus.context().get_stream(bus.subjects().events_stream()).await.expect("stream").get_info().await.expect("stream info");
    println!("  stream {}: {} messages, {:.1} MB stored", info.config.name, info.state.messages, info.state.bytes as f64 / 1e6);
    drop(bus);
    drop(nats);
    rows
}

// ----- part 2: end-to-end visibility -----------------------------------------------------------

/// The govflow process; killed on drop.
struct Govflow {
    child: Child,
    base: String,
    _dir: tempfile::TempDir,
}

impl Drop for Govflow {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

async fn start_govflow(anvil: &Anvil, dao: &Dao, nats_url: Option<&str>, http: &reqwest::Client) -> Govflow {
    let dir = tempfile::tempdir().expect("tempdir");
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let base = format!("http://127.0.0.1:{port}");
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_govflow"));
    cmd.args(["run", "--rpc-url", &anvil.rpc_url(), "--governor", &hexa(dao.governor), "--listen", &format!("127.0.0.1:{port}")])
        .arg("--data-dir")
        .arg(dir.path())
        .env("GOVFLOW_CHAIN_CONFIRMATIONS", "0")
        .env("GOVFLOW_CHAIN_POLL_INTERVAL_MS", "50")
        .env("GOVFLOW_LOG", "warn")
        .stdout(Stdio::null());
    if let Some(url) = nats_url {
        cmd.env("GOVFLOW_BUS_KIND", "nats").env("GOVFLOW_BUS_NATS_URL", url).env("GOVFLOW_BUS_INSTANCE", "bench");
    }
    let child = cmd.spawn().expect("spawn govflow");
    let g = Govflow { child, base, _dir: dir };
    let head = anvil.block_number().await;
    let t = Instant::now();
    loop {
        if let Ok(r) = http.get(format!("{}/v1/status", g.base)).send().await {
            if let Ok(v) = r.json::<serde_json::Value>().await {
                if v["indexedBlock"].as_u64().is_some_and(|b| b >= head) {
                    break;
                }
            }
        }
        assert!(t.elapsed() < Duration::from_secs(60), "govflow did not catch up");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    g
}

/// Sum of `<name>_sum` and of `<name>_count` over all label sets.
fn sum_count(text: &str, name: &str) -> (f64, f64) {
    let pick = |suffix: &str| -> f64 {
        let p = format!("{name}{suffix}");
        text.lines().filter(|l| l.starts_with(&p) && l[p.len()..].starts_with([' ', '{'])).filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok()).sum()
    };
    (pick("_sum"), pick("_count"))
}

const STAGES: [(&str, &str); 3] = [
    ("chain RPC call", "govflow_chain_rpc_duration_seconds"),
    ("bus publish (batch + acks)", "govflow_bus_publish_duration_seconds"),
    ("store commit", "govflow_store_commit_duration_seconds"),
];

struct Visibility {
    mode: &'static str,
    /// Receipt → visible, ms (sorted).
    from_receipt: Vec<f64>,
    /// Send returned → visible, ms (sorted).
    from_send: Vec<f64>,
    /// Send returned → receipt, ms (sorted).
    mining: Vec<f64>,
    timeouts: usize,
    /// Mean per call of each stage over the measured votes (ms) and calls per vote.
    stages: Vec<(&'static str, f64, f64)>,
}

async fn metrics_text(http: &reqwest::Client, base: &str) -> String {
    match http.get(format!("{base}/metrics")).send().await {
        Ok(r) => r.text().await.unwrap_or_default(),
        Err(_) => String::new(),
    }
}

async fn visible(http: &reqwest::Client, url: &str, id: &str) -> bool {
    let Ok(r) = http.get(url).send().await else { return false };
    if !r.status().is_success() {
        return false;
    }
    let Ok(v) = r.json::<serde_json::Value>().await else { return false };
    v["items"].as_array().is_some_and(|items| items.iter().any(|i| i["proposalId"].as_str() == Some(id)))
}

async fn measure_votes(
    mode: &'static str,
    anvil: &Anvil,
    dao: &Dao,
    gf: &Govflow,
    http: &reqwest::Client,
    proposal: U256,
    voters: &[LocalWallet],
) -> Visibility {
    let id = proposal.to_string();
    let mut v = Visibility { mode, from_receipt: Vec::new(), from_send: Vec::new(), mining: Vec::new(), timeouts: 0, stages: Vec::new() };
    let mut before = String::new();
    for (k, w) in voters.iter().enumerate() {
        if k == WARMUP_VOTES {
            before = metrics_text(http, &gf.base).await;
        }
        let url = format!("{}/v1/users/{}/votes?limit=100", gf.base, hexa(w.address()));
        let data = dao.governor_calldata("castVote", (proposal, (k % 3) as u8));
        let hash = anvil.submit(w, dao.governor, data).await.unwrap_or_else(|e| panic!("castVote: {}", e.reason));
        let sent = Instant::now();
        // Poll the receipt tightly: its arrival is "mined" (and final, with 0 confirmations).
        let receipt = loop {
            if let Some(r) = anvil.receipt(hash).await {
                break r;
            }
            assert!(sent.elapsed() < Duration::from_secs(30), "vote not mined");
            tokio::time::sleep(Duration::from_millis(1)).await;
        };
        let mined = Instant::now();
        assert_eq!(receipt.raw.status, Some(1u64.into()), "vote reverted");
        let mut seen = false;
        while mined.elapsed() < VISIBILITY_TIMEOUT {
            if visible(http, &url, &id).await {
                seen = true;
                break;
            }
            tokio::time::sleep(API_POLL).await;
        }
        let done = Instant::now();
        if k < WARMUP_VOTES {
            continue;
        }
        if !seen {
            v.timeouts += 1;
            continue;
        }
        v.from_receipt.push((done - mined).as_secs_f64() * 1e3);
        v.from_send.push((done - sent).as_secs_f64() * 1e3);
        v.mining.push((mined - sent).as_secs_f64() * 1e3);
    }
    let after = metrics_text(http, &gf.base).await;
    let measured = (voters.len() - WARMUP_VOTES) as f64;
    for (label, name) in STAGES {
        let (s0, c0) = sum_count(&before, name);
        let (s1, c1) = sum_count(&after, name);
        if c1 > c0 {
            v.stages.push((label, (s1 - s0) / (c1 - c0) * 1e3, (c1 - c0) / measured));
        }
    }
    v.from_receipt = sorted(v.from_receipt);
    v.from_send = sorted(v.from_send);
    v.mining = sorted(v.mining);
    println!(
        "  {mode}: receipt → visible p50 {:.1} ms, p99 {:.1} ms, max {:.1} ms ({} votes, {} timeouts)",
        pct(&v.from_receipt, 50.0),
        pct(&v.from_receipt, 99.0),
        v.from_receipt.last().copied().unwrap_or(f64::NAN),
        v.from_receipt.len(),
        v.timeouts
    );
    for (label, mean, per_vote) in &v.stages {
        println!("    {label}: mean {mean:.2} ms per call, {per_vote:.1} calls per vote");
    }
    v
}

async fn visibility(votes: usize) -> Vec<Visibility> {
    let http = reqwest::Client::builder().no_proxy().pool_max_idle_per_host(4).build().expect("http client");
    let anvil = Anvil::start_with(AnvilOptions { block_time: None, ..Default::default() }).await;
    let t = Instant::now();
    let n = votes + WARMUP_VOTES;
    let wallets = anvil.funded_wallets(n).await;
    let opts = DaoOptions::default().voting_delay(1).voting_period(100_000).quorum_numerator(1).timelock_min_delay(60).graded_voters(&wallets);
    let dao = Dao::deploy(&anvil, opts).await;
    // One proposal per mode, so every wallet votes once in each.
    let (embedded_id, _) = dao.propose_set_value(&wallets[0], U256::from(1), "# Bench: embedded visibility").await;
    let (nats_id, _) = dao.propose_set_value(&wallets[0], U256::from(2), "# Bench: NATS visibility").await;
    dao.advance_past_snapshot(nats_id).await;
    println!("  chain built in {:.1}s: {n} voters, head {}", t.elapsed().as_secs_f64(), anvil.block_number().await);

    let mut out = Vec::new();
    {
        let gf = start_govflow(&anvil, &dao, None, &http).await;
        out.push(measure_votes("embedded (in-process bus)", &anvil, &dao, &gf, &http, embedded_id, &wallets).await);
    }
    {
        let nats = NatsServer::start();
        let gf = start_govflow(&anvil, &dao, Some(&nats.url()), &http).await;
        out.push(measure_votes("nats (JetStream bus)", &anvil, &dao, &gf, &http, nats_id, &wallets).await);
        drop(gf);
        drop(nats);
    }
    out
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let args: Vec<usize> = std::env::args().skip(1).filter_map(|a| a.parse().ok()).collect();
    let events = *args.first().unwrap_or(&200_000);
    let votes = *args.get(1).unwrap_or(&200);
    let started = Instant::now();
    println!("govflow JetStream benchmark: {events} events published per pass, {votes} votes per mode");
    println!(
        "nats-server: {}",
        String::from_utf8_lossy(&Command::new(NatsServer::binary()).arg("--version").output().map(|o| o.stdout).unwrap_or_default()).trim()
    );

    println!("\n1. publish throughput (JetStreamBus::publish_all, asynchronous acknowledgements)");
    let publish = publish_throughput(events).await;

    println!("\n2. end-to-end visibility (vote receipt → GET /v1/users/{{voter}}/votes shows it)");
    let vis = visibility(votes).await;

    println!();
    println!("| publish | events/s | MB/s | batch ack p50 | batch ack p99 | re-publish: duplicates | re-publish events/s |");
    println!("|---|---:|---:|---:|---:|---:|---:|");
    for r in &publish {
        println!(
            "| {} × batch {} | {:.0} | {:.1} | {:.1} ms | {:.1} ms | {:.2}% | {:.0} |",
            r.first.events,
            r.batch,
            r.first.rate(),
            r.first.mbps(),
            pct(&r.first.batch_ms, 50.0),
            pct(&r.first.batch_ms, 99.0),
            r.again.duplicates as f64 * 100.0 / r.again.events as f64,
            r.again.rate()
        );
    }
    println!();
    println!("| visibility | votes | receipt→visible p50 | p99 | max | send→visible p99 | send→receipt p50 | timeouts |");
    println!("|---|---:|---:|---:|---:|---:|---:|---:|");
    for v in &vis {
        println!(
            "| {} | {} | {:.1} ms | {:.1} ms | {:.1} ms | {:.1} ms | {:.1} ms | {} |",
            v.mode,
            v.from_receipt.len(),
            pct(&v.from_receipt, 50.0),
            pct(&v.from_receipt, 99.0),
            v.from_receipt.last().copied().unwrap_or(f64::NAN),
            pct(&v.from_send, 99.0),
            pct(&v.mining, 50.0),
            v.timeouts
        );
    }
    println!();
    let worst_rate = publish.iter().map(|r| r.first.rate()).fold(f64::INFINITY, f64::min);
    let all_dup = publish.iter().all(|r| r.again.duplicates == r.again.events);
    println!("target: publish >= 50,000 events/s; slowest batch size {worst_rate:.0} events/s: {}", if worst_rate >= 50_000.0 { "met" } else { "NOT met" });
    println!("target: re-publish 100% duplicates: {}", if all_dup { "met" } else { "NOT met" });
    if let Some(n) = vis.iter().find(|v| v.mode.starts_with("nats")) {
        let p99 = pct(&n.from_receipt, 99.0);
        println!("target: NATS visibility p99 < 200 ms; {p99:.1} ms: {}", if p99 < 200.0 && n.timeouts == 0 { "met" } else { "NOT met" });
    }
    println!("total time {:.0}s", started.elapsed().as_secs_f64());
    assert!(all_dup, "a re-published id was appended again");
}
