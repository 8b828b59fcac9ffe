//! End-to-end: the status changes no event announces, several of them inside one indexed range.
//!
//! A real anvil chain, an OpenZeppelin 5 governor behind a Compound-style timelock
//! (`contracts/TestGovernorCompound.sol` + `contracts/CompoundTimelock.sol`, whose short
//! `GRACE_PERIOD` lets a queued proposal expire), and the real `govflow` binary. One story
//! reaches every clock-driven transition: Pending→Active at the snapshot, Active→Succeeded or
//! Defeated at the deadline and Queued→Expired at `eta + GRACE_PERIOD`:
//!
//! - P1 is voted for, queued and never executed: Expired;
//! - P2 is voted for, queued and executed through the timelock: Executed;
//! - P3 misses the quorum: Defeated;
//! - P4 is queued last: still Queued at the end (its grace period is not over);
//! - P5 is still Active at the end.
//!
//! govflow's answers are compared with the contracts': the status with `state(id)`, the tallies
//! with `proposalVotes`, the eta with `proposalEta`, and the `history` of each proposal with the
//! on-chain history, read as `state(id)` at every block from the proposal's creation to the head
//! (`eth_call` at a past block runs in that block's context): every change of status must be in
//! govflow's history at exactly that block. Each clock-driven change is also checked against
//! its definition with the block before it (first block whose clock is past the snapshot or
//! deadline; first block whose timestamp reaches eta + GRACE_PERIOD).
//!
//! The story is played with the block-number clock and with the timestamp clock, once before
//! govflow starts (one deep backfill range holds every boundary) and once while govflow
//! follows the head.

mod common;
mod support;

use std::collections::HashMap;
use std::time::Duration;

use common::{Govflow, GovflowOpts};
use futures::StreamExt;
use serde_json::Value;
use support::compound::CompoundDao;
use support::*;

/// Longest wait for govflow to index a block.
const WAIT: Duration = Duration::from_secs(45);
/// The Compound timelock's `delay`, seconds.
const TIMELOCK_DELAY: u64 = 60;
/// The Compound timelock's `GRACE_PERIOD`, seconds.
const GRACE_PERIOD: u64 = 1000;
/// govflow's default `chain.reorg_window`: deep (non-reversible) ranges end this many blocks
/// below the head.
const REORG_WINDOW: u64 = 64;
/// Empty blocks mined after the story in the backfill tests, so every story block is deeper
/// than the reorg window.
const EMPTY_TAIL: u64 = 80;

const STATE_NAMES: [&str; 8] = ["Pending", "Active", "Canceled", "Defeated", "Succeeded", "Queued", "Expired", "Executed"];

fn state_name(s: u8) -> &'static str {
    STATE_NAMES[s as usize]
}

fn hexa(a: Address) -> String {
    format!("0x{}", hex::encode(a.as_bytes()))
}

/// Voting delay and period in the clock's unit. The block clock's period outlasts
/// [`EMPTY_TAIL`] blocks, so P5 is still Active after them.
fn settings(clock: ClockMode) -> (u64, u64) {
    match clock {
        ClockMode::BlockNumber => (2, 100),
        ClockMode::Timestamp => (100, 600),
    }
}

/// Wallet 1 holds 40 tokens, 2: 25, 3: 15, 4: 2 (all self-delegated): quorum is 10% of 82.
async fn deploy(anvil: &Anvil, clock: ClockMode) -> CompoundDao {
    let (delay, period) = settings(clock);
    let opts = DaoOptions::with_clock(clock)
        .governor_name("CompoundGovernor")
        .voting_delay(delay)
        .voting_period(period)
        .quorum_numerator(10)
        .timelock_min_delay(TIMELOCK_DELAY)
        .voter(anvil.wallet(1), tokens(40))
        .voter(anvil.wallet(2), tokens(25))
        .voter(anvil.wallet(3), tokens(15))
        .voter(anvil.wallet(4), tokens(2));
    CompoundDao::deploy(anvil, opts, GRACE_PERIOD).await
}

/// The story's proposals, with their creation blocks, and its last block.
struct Story {
    /// (label, id, creation block, expected final state).
    proposals: Vec<(&'static str, U256, u64, ProposalState)>,
    last_block: u64,
}

/// Mines until the latest block's clock is past `t`, so that the chain has a block whose
/// clock is exactly `t` (still before the boundary) when it was behind `t`, followed by one
/// at `t + 1` (the first past it). Block clock: every number exists anyway.
async fn cross(dao: &CompoundDao, t: u64) {
    let chain = dao.chain();
    match dao.clock_mode {
        ClockMode::BlockNumber => {
            chain.mine_to(t).await;
            if chain.block_number().await <= t {
                chain.mine(1).await;
            }
        }
        ClockMode::Timestamp => {
            if chain.latest_timestamp().await < t {
                chain.mine_at(t).await;
            }
            if chain.latest_timestamp().await <= t {
                chain.mine_at(t + 1).await;
            }
        }
    }
}

/// Waits until govflow has indexed the head, when it follows the chain.
async fn sync(anvil: &Anvil, gf: &mut Option<&mut Govflow>) {
    if let Some(gf) = gf.as_deref_mut() {
        let head = anvil.block_number().await;
        gf.wait_indexed(head, WAIT).await;
    }
}

/// Plays the story (see the module documentation). With `gf`, waits for govflow after each
/// phase, so phases land in different ranges (a phase may still cross several boundaries at
/// once). No two status changes of one proposal share a block.
async fn play(anvil: &Anvil, dao: &CompoundDao, mut gf: Option<&mut Govflow>) -> Story {
    let w = |i| anvil.wallet(i);
    let (p1, r1) = dao.propose_set_value(&w(1), U256::from(1), "P1: queued, then expired").await;
    let (p2, r2) = dao.propose_set_value(&w(2), U256::from(2), "P2: queued and executed").await;
    let (p3, r3) = dao.propose_set_value(&w(3), U256::from(3), "P3: defeated for lack of quorum").await;
    sync(anvil, &mut gf).await;

    // All three open (their snapshots are at most one clock unit apart).
    cross(dao, dao.proposal_snapshot(p3).await).await;
    dao.cast_vote(&w(1), p1, vote::FOR).await;
    dao.cast_vote(&w(2), p1, vote::AGAINST).await;
    dao.cast_vote(&w(3), p1, vote::FOR).await;
    dao.cast_vote(&w(1), p2, vote::FOR).await;
    dao.cast_vote(&w(2), p2, vote::AGAINST).await;
    dao.cast_vote(&w(3), p2, vote::ABSTAIN).await;
    dao.cast_vote(&w(4), p3, vote::FOR).await; // 2 tokens: below the quorum of 8.2
    let (p4, r4) = dao.propose_set_value(&w(1), U256::from(4), "P4: queued, still queued at the end").await;
    sync(anvil, &mut gf).await;

    // P1 and P2 succeed, P3 is defeated (P4's snapshot passes on the way).
    cross(dao, dao.proposal_deadline(p3).await).await;
    dao.queue(p1).await;
    dao.queue(p2).await;
    sync(anvil, &mut gf).await;

    cross(dao, dao.proposal_snapshot(p4).await).await;
    dao.cast_vote(&w(1), p4, vote::FOR).await;
    dao.cast_vote(&w(3), p4, vote::AGAINST).await;
    sync(anvil, &mut gf).await;

    // P2 executed at its eta; P1 expires at eta + GRACE_PERIOD (a block one second before it,
    // one exactly at it).
    dao.advance_past_eta(p2).await;
    dao.execute(p2).await;
    assert_eq!(dao.target_value().await, U256::from(2), "P2 executed through the timelock");
    dao.advance_to_expiry(p1).await;
    sync(anvil, &mut gf).await;

    cross(dao, dao.proposal_deadline(p4).await).await;
    dao.queue(p4).await;
    let (p5, r5) = dao.propose_set_value(&w(2), U256::from(5), "P5: active at the end").await;
    cross(dao, dao.proposal_snapshot(p5).await).await;
    dao.cast_vote(&w(2), p5, vote::FOR).await;
    dao.cast_vote(&w(4), p5, vote::AGAINST).await;
    sync(anvil, &mut gf).await;

    Story {
        proposals: vec![
            ("P1", p1, r1.block_number, ProposalState::Expired),
            ("P2", p2, r2.block_number, ProposalState::Executed),
            ("P3", p3, r3.block_number, ProposalState::Defeated),
            ("P4", p4, r4.block_number, ProposalState::Queued),
            ("P5", p5, r5.block_number, ProposalState::Active),
        ],
        last_block: anvil.block_number().await,
    }
}

/// Timestamps of blocks, fetched once.
struct Blocks<'a> {
    anvil: &'a Anvil,
    timestamps: HashMap<u64, u64>,
}

impl Blocks<'_> {
    async fn timestamp(&mut self, n: u64) -> u64 {
        if let Some(t) = self.timestamps.get(&n) {
            return *t;
        }
        let t = self.anvil.block_timestamp(n).await;
        self.timestamps.insert(n, t);
        t
    }

    async fn clock(&mut self, mode: ClockMode, n: u64) -> u64 {
        match mode {
            ClockMode::BlockNumber => n,
            ClockMode::Timestamp => self.timestamp(n).await,
        }
    }
}

/// The proposal's status history on chain: `(state, first block)` for each change of
/// `state(id)` between its creation block and `head`.
async fn chain_history(dao: &CompoundDao, id: U256, created: u64, head: u64) -> Vec<(u8, u64)> {
    let states: Vec<(u64, u8)> = futures::stream::iter(created..=head).map(|b| async move { (b, dao.at(b).state(id).await) }).buffered(16).collect().await;
    let mut out: Vec<(u8, u64)> = Vec::new();
    for (b, s) in states {
        if out.last().map(|(last, _)| *last) != Some(s) {
            out.push((s, b));
        }
    }
    out
}

fn rfc3339(v: &Value) -> Option<u64> {
    let s = v.as_str()?;
    let t = humantime::parse_rfc3339(s).ok()?;
    Some(t.duration_since(std::time::UNIX_EPOCH).ok()?.as_secs())
}

/// Compares govflow with the contracts for every proposal of the story; returns every
/// mismatch (empty when govflow is exact). Panics if the chain itself does not show what the
/// story meant to build (a broken story, not a govflow bug).
async fn compare(anvil: &Anvil, dao: &CompoundDao, gf: &Govflow, story: &Story) -> Vec<String> {
    let head = anvil.block_number().await;
    let at = dao.at(head);
    let mode = dao.clock_mode;
    let mut blocks = Blocks { anvil, timestamps: HashMap::new() };
    let mut problems = Vec::new();
    for &(label, id, created, expected) in &story.proposals {
        let state = at.state(id).await;
        assert_eq!(state, expected as u8, "{label}: the story should leave it {expected:?} on chain");
        let snapshot = at.proposal_snapshot(id).await;
        let deadline = at.proposal_deadline(id).await;
        let eta = at.proposal_eta(id).await;

        // The on-chain history, each clock-driven change checked against its definition.
        let on_chain = chain_history(dao, id, created, head).await;
        for &(s, b) in &on_chain {
            let (now, before) = (blocks.clock(mode, b).await, blocks.clock(mode, b - 1).await);
            let (ts, ts_before) = (blocks.timestamp(b).await, blocks.timestamp(b - 1).await);
            match state_name(s) {
                "Active" => assert!(before <= snapshot && now > snapshot, "{label}: Active at {b}: clock {before} → {now}, snapshot {snapshot}"),
                "Succeeded" | "Defeated" => {
                    assert!(before <= deadline && now > deadline, "{label}: decided at {b}: clock {before} → {now}, deadline {deadline}")
                }
                "Expired" => assert!(
                    ts_before < eta + GRACE_PERIOD && ts >= eta + GRACE_PERIOD,
                    "{label}: Expired at {b}: time {ts_before} → {ts}, eta {eta} + grace {GRACE_PERIOD}"
                ),
                _ => {}
            }
        }

        let p = gf.get_ok(&format!("/v1/proposals/{id}")).await;
        let mut check = |what: &str, ok: bool, detail: String| {
            if !ok {
                problems.push(format!("{label} ({}) {what}: {detail}", state_name(state)));
            }
        };
        check("status", p["status"] == state_name(state), format!("govflow {} vs state() {}", p["status"], state_name(state)));
        let (against, for_, abstain) = at.proposal_votes(id).await;
        for (field, want) in [("forVotes", for_), ("againstVotes", against), ("abstainVotes", abstain)] {
            check(field, p[field] == want.to_string(), format!("govflow {} vs proposalVotes {want}", p[field]));
        }
        check("startBlock", p["startBlock"] == snapshot, format!("govflow {} vs proposalSnapshot {snapshot}", p["startBlock"]));
        check("endBlock", p["endBlock"] == deadline, format!("govflow {} vs proposalDeadline {deadline}", p["endBlock"]));
        let served_eta = rfc3339(&p["eta"]);
        check("eta", served_eta == (eta != 0).then_some(eta), format!("govflow {} vs proposalEta {eta}", p["eta"]));
        if eta != 0 {
            let ex = gf.get_ok(&format!("/v1/proposals/{id}/execution-status")).await;
            check(
                "expiresAt",
                rfc3339(&ex["expiresAt"]) == Some(eta + GRACE_PERIOD),
                format!("govflow {} vs proposalEta + GRACE_PERIOD {}", ex["expiresAt"], eta + GRACE_PERIOD),
            );
        }

        // The history: the same changes at the same blocks; clock-driven ones without a
        // transaction, at their block's time.
        let history = p["history"].as_array().cloned().unwrap_or_default();
        let served: Vec<(String, u64)> =
            history.iter().map(|h| (h["status"].as_str().unwrap_or("?").to_owned(), h["blockNumber"].as_u64().unwrap_or(0))).collect();
        let wanted: Vec<(String, u64)> = on_chain.iter().map(|&(s, b)| (state_name(s).to_owned(), b)).collect();
        check("history", served == wanted, format!("govflow {served:?} vs chain {wanted:?}"));
        for h in &history {
            let (status, b) = (h["status"].as_str().unwrap_or("?"), h["blockNumber"].as_u64().unwrap_or(0));
            let clock_driven = matches!(status, "Active" | "Succeeded" | "Defeated" | "Expired");
            check(
                "history transactionHash",
                h["transactionHash"].is_null() == clock_driven,
                format!("{status} at {b}: transactionHash {} (clock-driven changes have none, the others theirs)", h["transactionHash"]),
            );
            let ts = blocks.timestamp(b).await;
            check("history timestamp", rfc3339(&h["timestamp"]) == Some(ts), format!("{status} at {b}: {} vs block time {ts}", h["timestamp"]));
        }
    }
    problems
}

/// One sample of govflow's Prometheus metrics, 0 when absent.
fn metric(text: &str, name: &str) -> f64 {
    text.lines()
        .filter(|l| !l.starts_with('#'))
        .find_map(|l| {
            let (key, value) = l.rsplit_once(' ')?;
            (key == name).then(|| value.parse().ok()).flatten()
        })
        .unwrap_or(0.0)
}

fn govflow_opts(anvil: &Anvil, dao: &CompoundDao) -> GovflowOpts {
    GovflowOpts { rpc_url: anvil.rpc_url(), governor: hexa(dao.governor), confirmations: 0, start_block: None, env: vec![] }
}

fn assert_no_problems(gf: &Govflow, problems: &[String]) {
    assert!(problems.is_empty(), "govflow differs from the chain:\n  {}\n\ngovflow log:\n{}", problems.join("\n  "), gf.log());
}

/// The whole story is played before govflow starts, then buried under [`EMPTY_TAIL`] empty
/// blocks: govflow backfills it as ONE deep range (from the block after the governor's
/// deployment to the start of the reorg window), in which P1..P5 cross their snapshots, P1..P4
/// their deadlines, P1/P2/P4 are queued, P2 is executed and P1 expires. Proves every
/// clock-driven change is applied at its exact block even when several fall inside one range,
/// including an expiry after a queuing in the same range.
async fn boundaries_inside_one_backfill_range(clock: ClockMode) {
    let anvil = Anvil::start().await;
    let dao = deploy(&anvil, clock).await;
    let story = play(&anvil, &dao, None).await;
    let head = anvil.mine(EMPTY_TAIL).await;
    assert!(story.last_block + REORG_WINDOW <= head, "the story is deeper than the reorg window");

    let dir = tempfile::tempdir().unwrap();
    let mut gf = Govflow::start(&govflow_opts(&anvil, &dao), &dir.path().join("data"));
    gf.wait_indexed(head, WAIT).await;
    let status = gf.get_ok("/v1/status").await;
    assert_eq!(status["timelock"], hexa(dao.timelock), "{status}");

    // One range for the story. Backfill ranges are cut only where the governor reports a
    // timelock (TimelockChange, emitted by its constructor: that block ends a range), at the
    // start of the reorg window, every max_log_range (2000) blocks, and where the node refuses
    // a log range (a split, counted). So exactly three commits without a split are
    // [token deployment, governor deployment], [governor deployment + 1, head - 64], which
    // holds the whole story, and [head - 63, head].
    let text = reqwest::get(format!("{}/metrics", gf.base)).await.unwrap().text().await.unwrap();
    let start = dao.deployment_block;
    assert!(dao.governor_deployment_block < story.proposals[0].2, "the story starts after the governor's deployment");
    assert!(head - start < 2000, "shorter than one max_log_range");
    let commits = metric(&text, "govflow_store_commit_duration_seconds_count");
    let splits = metric(&text, "govflow_listener_range_splits_total");
    let indexed = metric(&text, "govflow_listener_indexed_block");
    assert_eq!(
        (commits, splits, indexed),
        (3.0, 0.0, head as f64),
        "(commits, range splits, indexed block): the backfill was not [{start}, {}], [{}, {}], [{}, {head}]\n{text}",
        dao.governor_deployment_block,
        dao.governor_deployment_block + 1,
        head - REORG_WINDOW,
        head - REORG_WINDOW + 1,
    );

    let problems = compare(&anvil, &dao, &gf, &story).await;
    assert_no_problems(&gf, &problems);
    gf.stop();
}

/// govflow follows the head (confirmations 0) while the same story is played live, waiting
/// for it after each phase: boundaries are crossed by the ranges of a follower (every header
/// fetched), a few at a time. Proves the same exact history as a backfill.
async fn boundaries_while_following(clock: ClockMode) {
    let anvil = Anvil::start().await;
    let dao = deploy(&anvil, clock).await;
    let dir = tempfile::tempdir().unwrap();
    let mut gf = Govflow::start(&govflow_opts(&anvil, &dao), &dir.path().join("data"));
    gf.wait_indexed(anvil.block_number().await, WAIT).await;
    let story = play(&anvil, &dao, Some(&mut gf)).await;
    gf.wait_indexed(anvil.block_number().await, WAIT).await;
    let problems = compare(&anvil, &dao, &gf, &story).await;
    assert_no_problems(&gf, &problems);
    gf.stop();
}

/// [`boundaries_inside_one_backfill_range`] with the block-number clock.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn boundaries_inside_one_backfill_range_block_clock() {
    boundaries_inside_one_backfill_range(ClockMode::BlockNumber).await;
}

/// [`boundaries_inside_one_backfill_range`] with the timestamp clock: a deep range comes with
/// the headers of its blocks with logs only, and the blocks that cross a snapshot, deadline or
/// expiry here have none (they are mined empty at chosen timestamps), so govflow has to find
/// them by itself.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn boundaries_inside_one_backfill_range_timestamp_clock() {
    boundaries_inside_one_backfill_range(ClockMode::Timestamp).await;
}

/// [`boundaries_while_following`] with the block-number clock.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn boundaries_while_following_block_clock() {
    boundaries_while_following(ClockMode::BlockNumber).await;
}

/// [`boundaries_while_following`] with the timestamp clock.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn boundaries_while_following_timestamp_clock() {
    boundaries_while_following(ClockMode::Timestamp).await;
}
