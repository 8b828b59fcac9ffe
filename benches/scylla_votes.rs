//! Benchmark: the ScyllaDB store's vote write path against the local CQL engine (Apache
//! Cassandra 5 from `scripts/cassandra.sh`, or `GOVFLOW_TEST_CQL` host:port).
//!
//! `cargo bench --bench scylla_votes [-- VOTES [PROPOSALS [WRITE_CONCURRENCY [RAW_WRITES]]]]`
//! (default 50,000 votes over 250 proposals, `scylla.write_concurrency` 256, VOTES / 2 raw
//! writes per raw pass). `GOVFLOW_KEEP_KEYSPACES=1` keeps the keyspace.
//!
//! Measures, in a fresh keyspace that is dropped at the end:
//! 1. `Store::commit` of non-reversible vote batches of 1,000 and of 5,000 votes (each pass
//!    writes VOTES new votes): votes/s, p50/p99 commit latency per batch and per vote, and the
//!    CQL requests the store sends per vote;
//! 2. a replay pass: the 1,000-vote batches' votes committed again as new batches that
//!    continue the cursor (every vote insert is then a lightweight transaction that does not
//!    apply); checks with `Store::stats` that the vote count did not change;
//! 3. the exact-once path against plain inserts: single `votes_by_proposal` rows written
//!    with a raw session, `INSERT` against `INSERT ... IF NOT EXISTS` (new rows, then the
//!    same rows again), the same number in flight;
//! 4. for comparison, two ways the store could write vote rows per partition instead of one
//!    LWT per vote (see [`Alt`]).
//!
//! For each pass it also prints where the CPU went, from /proc: this process (the client:
//! bench and store driver), the Cassandra JVM (found by its main class) and the rest of the
//! machine, and the engine's CPU time per vote, since the engine shares the machine's cores.
//! CPU figures come from 10 ms ticks: coarse for passes shorter than a second.
//! Prints figures; asserts only the vote counts (no timing targets).

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use futures::stream::{self, StreamExt};
use govflow::config::ScyllaConfig;
use govflow::domain::{ids, Address, ChainPoint, HexBytes, Proposal, ProposalStatus, Vote, B256, U256};
use govflow::store::scylla::ScyllaStore;
use govflow::store::{Batch, BlockRecord, EventId, Mutation, Store};
use scylla::client::execution_profile::ExecutionProfile;
use scylla::client::session::Session;
use scylla::client::session_builder::SessionBuilder;
use scylla::statement::batch::{Batch as CqlBatch, BatchType};
use scylla::statement::prepared::PreparedStatement;
use scylla::statement::{Consistency, SerialConsistency};
use scylla::value::{CqlValue, Row};

const GOVERNOR: Address = Address([0x60; 20]);
/// Votes per block (log indexes 0..).
const VOTES_PER_BLOCK: u64 = 50;
/// Distinct voters.
const VOTERS: u64 = 2_000;
/// Unix time of block 0.
const T0: u64 = 1_700_000_000;
/// Raw writes in flight (the store's default `write_concurrency`).
const RAW_IN_FLIGHT: usize = 256;
/// At least this many partition groups in flight in the alternative passes.
const ALT_MIN_IN_FLIGHT: usize = 16;

fn addr(i: u64) -> Address {
    let mut a = [0u8; 20];
    a[12..].copy_from_slice(&(i + 1).to_be_bytes());
    Address(a)
}

fn hash(n: u64) -> B256 {
    let mut h = [0x11u8; 32];
    h[24..].copy_from_slice(&n.to_be_bytes());
    B256(h)
}

fn header(n: u64) -> BlockRecord {
    BlockRecord { number: n, hash: hash(n), parent_hash: hash(n.saturating_sub(1)), timestamp: T0 + n * 12 }
}

fn proposal(n: u64, block: u64) -> Proposal {
    let pid = U256::from(n);
    Proposal {
        id: ids::proposal(1, &GOVERNOR, &pid),
        proposal_id: pid,
        title: format!("Bench proposal {n}"),
        description: format!("# Bench proposal {n}\n\nSets the value to {n}."),
        proposer: addr(n % VOTERS),
        creation_index: n,
        start_block: block + 1,
        end_block: block + 50_000,
        original_end_block: block + 50_000,
        status: ProposalStatus::Active,
        for_votes: U256::zero(),
        against_votes: U256::zero(),
        abstain_votes: U256::zero(),
        vote_count: 0,
        quorum: None,
        targets: vec![Address([9; 20])],
        values: vec![U256::zero()],
        signatures: vec![String::new()],
        calldatas: vec![HexBytes(vec![0x55, 0x24, 0x10, 0xb0, 0, 0, 0, 1])],
        eta: None,
        timelock_operation_id: None,
        created: ChainPoint { block_number: block, timestamp: T0 + block * 12, transaction_hash: Some(hash(block)) },
        created_at: T0 + block * 12,
        updated_at: T0 + block * 12,
        updated_block: block,
        executed_at: None,
        metadata_uri: None,
    }
}

/// `n` votes in chain order from block `first_block` on, spread over proposals
/// `first_proposal..first_proposal + proposals` (interleaved, as while they are all active);
/// each proposal's voters are distinct.
fn votes(n: u64, first_proposal: u64, proposals: u64, first_block: u64) -> Vec<Vote> {
    (0..n)
        .map(|j| {
            let p = j % proposals;
            let k = j / proposals;
            let voter = addr((p * 13 + k) % VOTERS);
            let block = first_block + j / VOTES_PER_BLOCK;
            let log = j % VOTES_PER_BLOCK;
            Vote {
                id: ids::event(1, &hash(block), log),
                proposal_id: U256::from(first_proposal + p),
                voter,
                support: (j % 3) as u8,
                weight: U256::from(1_000_000_000_000_000_000u64) * U256::from(1 + (j * 7919) % 10_000),
                reason: if j % 10 == 0 { Some("Aligned with the forum discussion.".into()) } else { None },
                params: None,
                block_number: block,
                block_hash: hash(block),
                log_index: log,
                transaction_hash: hash(block ^ (log << 40)),
                timestamp: T0 + block * 12,
            }
        })
        .collect()
}

/// Batches of `size` votes; batch `i` covers blocks `cursor + 1 ..` as many blocks as its
/// votes span (for a replay, the votes' own blocks are older than the batch's range).
fn batches(votes: &[Vote], size: usize, cursor: &mut u64) -> Vec<Batch> {
    votes
        .chunks(size)
        .map(|c| {
            let span = c.last().map_or(0, |l| l.block_number) - c.first().map_or(0, |f| f.block_number) + 1;
            let from = *cursor + 1;
            let to = *cursor + span;
            *cursor = to;
            Batch {
                from,
                to,
                to_hash: hash(to),
                blocks: vec![header(to)],
                events: c.iter().map(|v| EventId { block_number: v.block_number, block_hash: v.block_hash, log_index: v.log_index }).collect(),
                mutations: c.iter().map(|v| Mutation::Vote(Box::new(v.clone()))).collect(),
                reversible: false,
                prune_below: None,
            }
        })
        .collect()
}

fn pct(sorted: &[Duration], p: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    let rank = ((p / 100.0) * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

fn us(d: Duration) -> f64 {
    d.as_secs_f64() * 1e6
}

// ---------------------------------------------------------------------------------------------
// CPU accounting from /proc (Linux): this process, the Cassandra JVM, the rest of the machine.

#[derive(Clone, Copy, Default)]
struct Cpu {
    /// All CPUs: busy and total ticks.
    busy: u64,
    total: u64,
    /// This process (client: bench thread + the store's driver runtime).
    own: u64,
    /// The Cassandra JVM, when found.
    engine: u64,
}

fn proc_ticks(pid: &str) -> Option<u64> {
    let s = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let rest = s.rsplit_once(')')?.1;
    let f: Vec<&str> = rest.split_whitespace().collect();
    // After the command: state is field 3, utime 14, stime 15 (1-based over the whole line).
    Some(f.get(11)?.parse::<u64>().ok()? + f.get(12)?.parse::<u64>().ok()?)
}

fn engine_pid() -> Option<String> {
    for e in std::fs::read_dir("/proc").ok()?.flatten() {
        let name = e.file_name().to_string_lossy().to_string();
        if !name.bytes().all(|b| b.is_ascii_digit()) {
            continue;
        }
        if let Ok(cmd) = std::fs::read(format!("/proc/{name}/cmdline")) {
            if String::from_utf8_lossy(&cmd).contains("org.apache.cassandra.service.CassandraDaemon") {
                return Some(name);
            }
        }
    }
    None
}

fn cpu(engine: Option<&str>) -> Cpu {
    let mut c = Cpu::default();
    if let Ok(s) = std::fs::read_to_string("/proc/stat") {
        if let Some(line) = s.lines().next() {
            let v: Vec<u64> = line.split_whitespace().skip(1).filter_map(|x| x.parse().ok()).collect();
            // user nice system idle iowait irq softirq steal (guest is inside user)
            if v.len() >= 8 {
                c.busy = v[0] + v[1] + v[2] + v[5] + v[6] + v[7];
                c.total = c.busy + v[3] + v[4];
            }
        }
    }
    c.own = proc_ticks("self").unwrap_or(0);
    c.engine = engine.and_then(proc_ticks).unwrap_or(0);
    c
}

/// Cores used between two samples.
#[derive(Clone, Copy)]
struct Use {
    client: f64,
    /// None when the engine's process was not found (then it is inside `other`).
    engine: Option<f64>,
    other: f64,
    idle: f64,
}

fn cores(a: Cpu, b: Cpu, n: f64, have_engine: bool) -> Option<Use> {
    let total = b.total.saturating_sub(a.total);
    if total == 0 {
        return None;
    }
    let f = |t: u64| t as f64 / total as f64 * n;
    let busy = b.busy.saturating_sub(a.busy).min(total);
    let own = b.own.saturating_sub(a.own);
    let eng = if have_engine { b.engine.saturating_sub(a.engine) } else { 0 };
    Some(Use { client: f(own), engine: have_engine.then(|| f(eng)), other: f(busy.saturating_sub(own + eng)), idle: f(total - busy) })
}

fn loadavg() -> String {
    std::fs::read_to_string("/proc/loadavg").map(|s| s.split_whitespace().take(3).collect::<Vec<_>>().join(" ")).unwrap_or_else(|_| "n/a".into())
}

// ---------------------------------------------------------------------------------------------

struct Line {
    name: String,
    n: u64,
    unit: &'static str,
    secs: f64,
    p50: Duration,
    p99: Duration,
    per_vote: Option<(Duration, Duration)>,
    cpu: Option<Use>,
}

impl Line {
    fn rate(&self) -> f64 {
        self.n as f64 / self.secs
    }
    /// Engine CPU time per vote (row), in µs.
    fn engine_us(&self) -> Option<f64> {
        Some(self.cpu?.engine? * self.secs / self.n as f64 * 1e6)
    }
}

const NAME_W: usize = 52;

fn print_row(r: &Line) {
    let pv = match r.per_vote {
        Some((a, b)) => format!("{:>8.1} {:>8.1}", us(a), us(b)),
        None => format!("{:>8} {:>8}", "-", "-"),
    };
    let cpu = match r.cpu {
        Some(u) => format!(
            "{:>6.2} {:>6} {:>6.2} {:>6.2} {:>7}",
            u.client,
            u.engine.map_or("?".into(), |e| format!("{e:.2}")),
            u.other,
            u.idle,
            r.engine_us().map_or("?".into(), |e| format!("{e:.0}"))
        ),
        None => "n/a".into(),
    };
    println!("{:<NAME_W$} {:>6} {:>6.2} {:>8.0} {:>8.2} {:>8.2} {} {:>7}  {}", r.name, r.n, r.secs, r.rate(), ms(r.p50), ms(r.p99), pv, r.unit, cpu);
}

fn header_line(ncores: usize) {
    println!(
        "{:<NAME_W$} {:>6} {:>6} {:>8} {:>8} {:>8} {:>8} {:>8} {:>7}  {:>6} {:>6} {:>6} {:>6} {:>7}",
        "pass", "votes", "secs", "votes/s", "p50 ms", "p99 ms", "p50 µs/v", "p99 µs/v", "lat. of", "client", "engine", "other", "idle", "eng µs/v"
    );
    println!(
        "{:<NAME_W$} (µs/v = latency / votes in the batch or group; CPU in cores of {ncores}: client = this process, bench and store driver; \
         engine = the Cassandra JVM; other = the rest of the machine; eng µs/v = engine CPU time per vote)",
        ""
    );
}

/// The CQL requests `ScyllaStore::commit` sends for these vote-only, non-reversible batches
/// (from `Inner::commit`), per vote: the vote records' conditional batches (one per proposal
/// partition of a commit, up to 64 rows each), the index rows (unlogged batches per
/// partition: `votes_by_proposal_voter` per proposal, `votes_by_voter` per voter), one voter-counter read
/// per distinct voter of a batch, the counter updates of the applied votes (one per proposal,
/// voter and day of the batch, and the global `votes`/`voters`), and four cursor/header
/// requests per batch.
fn store_requests(batches: &[Batch], replay: bool) -> String {
    let (mut votes, mut reads, mut counters, mut fixed, mut lwt, mut idx) = (0usize, 0usize, 0usize, 0usize, 0usize, 0usize);
    for b in batches {
        let vs: Vec<&Vote> = b.mutations.iter().filter_map(|m| if let Mutation::Vote(v) = m { Some(v.as_ref()) } else { None }).collect();
        let voters: std::collections::HashSet<Address> = vs.iter().map(|v| v.voter).collect();
        let props: std::collections::HashSet<U256> = vs.iter().map(|v| v.proposal_id).collect();
        let days: std::collections::HashSet<String> = vs.iter().map(|v| govflow::store::utc_day(v.timestamp)).collect();
        votes += vs.len();
        reads += voters.len();
        let mut per_prop: std::collections::HashMap<U256, usize> = std::collections::HashMap::new();
        let mut per_voter: std::collections::HashMap<Address, usize> = std::collections::HashMap::new();
        for v in &vs {
            *per_prop.entry(v.proposal_id).or_default() += 1;
            *per_voter.entry(v.voter).or_default() += 1;
        }
        lwt += per_prop.values().map(|n| n.div_ceil(64)).sum::<usize>();
        idx += per_prop.values().map(|n| n.div_ceil(64)).sum::<usize>() + per_voter.values().map(|n| n.div_ceil(64)).sum::<usize>();
        if !replay {
            counters += props.len() + voters.len() + days.len() + 2;
        }
        fixed += 4;
    }
    let per = |x: usize| x as f64 / votes.max(1) as f64;
    format!(
        "{:.3} conditional batches + {:.3} index batches + {:.2} counter reads + {:.2} counter updates + {:.3} cursor/header",
        per(lwt),
        per(idx),
        per(reads),
        per(counters),
        per(fixed)
    )
}

/// Commits `batches` one after another, timing each commit.
fn store_pass(store: &ScyllaStore, name: &str, batches: &[Batch], ncores: f64, engine: Option<&str>) -> Line {
    let n: u64 = batches.iter().map(|b| b.mutations.len() as u64).sum();
    let size = batches.first().map_or(1, |b| b.mutations.len());
    let mut lat = Vec::with_capacity(batches.len());
    let c0 = cpu(engine);
    let t = Instant::now();
    for b in batches {
        let s = Instant::now();
        store.commit(b).unwrap_or_else(|e| panic!("commit of blocks {}..{}: {e}", b.from, b.to));
        lat.push(s.elapsed());
    }
    let secs = t.elapsed().as_secs_f64();
    let c1 = cpu(engine);
    lat.sort_unstable();
    let (p50, p99) = (pct(&lat, 50.0), pct(&lat, 99.0));
    Line {
        name: format!("{name} ({} x {size})", batches.len()),
        n,
        unit: "batch",
        secs,
        p50,
        p99,
        per_vote: Some((p50 / size as u32, p99 / size as u32)),
        cpu: cores(c0, c1, ncores, engine.is_some()),
    }
}

fn vote_row(v: &Vote, pid: Vec<u8>) -> VoteRow {
    let day = govflow::store::utc_day(v.timestamp);
    let body = bincode::serialize(v).expect("in-memory bincode serialization");
    (pid, v.block_number as i64, v.log_index as i64, v.voter.0.to_vec(), v.support as i8, day, body)
}

/// Raw writes of vote rows, `RAW_IN_FLIGHT` at a time; returns the row and the number of
/// applied lightweight transactions (all rows, for a plain insert).
async fn raw_pass(s: &Session, st: &PreparedStatement, name: &str, rows: &[VoteRow], lwt: bool, ncores: f64, engine: Option<&str>) -> (Line, u64) {
    let c0 = cpu(engine);
    let t = Instant::now();
    let results: Vec<(Duration, bool)> = stream::iter(rows)
        .map(|r| async move {
            let s0 = Instant::now();
            let res = s.execute_unpaged(st, r).await.unwrap_or_else(|e| panic!("{name}: {e}"));
            let ok = !lwt || applied(res);
            (s0.elapsed(), ok)
        })
        .buffer_unordered(RAW_IN_FLIGHT)
        .collect()
        .await;
    let secs = t.elapsed().as_secs_f64();
    let c1 = cpu(engine);
    let applied = results.iter().filter(|r| r.1).count() as u64;
    let mut lat: Vec<Duration> = results.into_iter().map(|r| r.0).collect();
    lat.sort_unstable();
    let row = Line {
        name: name.to_string(),
        n: rows.len() as u64,
        unit: "write",
        secs,
        p50: pct(&lat, 50.0),
        p99: pct(&lat, 99.0),
        per_vote: None,
        cpu: cores(c0, c1, ncores, engine.is_some()),
    };
    (row, applied)
}

type VoteRow = (Vec<u8>, i64, i64, Vec<u8>, i8, String, Vec<u8>);

/// Rows grouped as a store batch of `batch` rows would group them by partition (proposal).
fn partition_groups(rows: &[VoteRow], batch: usize) -> Vec<Vec<&VoteRow>> {
    let mut out = Vec::new();
    for chunk in rows.chunks(batch) {
        let mut by: BTreeMap<&[u8], Vec<&VoteRow>> = BTreeMap::new();
        for r in chunk {
            by.entry(r.0.as_slice()).or_default().push(r);
        }
        out.extend(by.into_values());
    }
    out
}

/// Whether the first column of a result (`[applied]`) is true.
fn applied(res: scylla::response::query_result::QueryResult) -> bool {
    let rows = res.into_rows_result().expect("LWT result has rows");
    let row = rows.first_row::<Row>().expect("LWT result row");
    matches!(row.columns.first(), Some(Some(CqlValue::Boolean(true))))
}

/// Alternatives the store could use, timed per partition group: `Cond` = one conditional
/// batch (`INSERT ... IF NOT EXISTS` for every row: one Paxos round per group; when it does
/// not apply, its result names the rows that exist, and the batch is retried without them);
/// `ReadThenInsert` = one range read of the group's keys, then a plain unlogged batch of
/// the absent rows (exact-once only with a single writer per keyspace).
#[derive(Clone, Copy, PartialEq)]
enum Alt {
    Cond,
    ReadThenInsert,
}

#[allow(clippy::too_many_arguments)]
async fn alt_pass(
    s: &Session,
    alt: Alt,
    lwt: &PreparedStatement,
    plain: &PreparedStatement,
    keys: &PreparedStatement,
    name: &str,
    groups: &[Vec<&VoteRow>],
    in_flight: usize,
    ncores: f64,
    engine: Option<&str>,
) -> (Line, u64) {
    let c0 = cpu(engine);
    let t = Instant::now();
    let results: Vec<(Duration, u64)> = stream::iter(groups)
        .map(|g| async move {
            let s0 = Instant::now();
            let inserted = match alt {
                Alt::Cond => {
                    // A conditional batch that does not apply returns the rows that exist:
                    // retry with the others until it applies or none is left.
                    let mut todo: Vec<&VoteRow> = g.clone();
                    let mut n = 0;
                    while !todo.is_empty() {
                        let mut b = CqlBatch::new(BatchType::Unlogged);
                        for _ in &todo {
                            b.append_statement(lwt.clone());
                        }
                        let res = s.batch(&b, &todo).await.unwrap_or_else(|e| panic!("{name}: {e}"));
                        let rows = res.into_rows_result().expect("LWT result has rows");
                        let ok = matches!(rows.first_row::<Row>().expect("LWT result row").columns.first(), Some(Some(CqlValue::Boolean(true))));
                        if ok {
                            n += todo.len() as u64;
                            break;
                        }
                        let specs = rows.column_specs();
                        let (Some((bi, _)), Some((li, _))) = (specs.get_by_name("block_number"), specs.get_by_name("log_index")) else {
                            panic!("{name}: a conditional batch that did not apply returned no keys")
                        };
                        let have: std::collections::HashSet<(i64, i64)> = rows
                            .rows::<Row>()
                            .expect("rows")
                            .filter_map(|r| {
                                let r = r.expect("row");
                                match (r.columns.get(bi), r.columns.get(li)) {
                                    (Some(Some(CqlValue::BigInt(b))), Some(Some(CqlValue::BigInt(l)))) => Some((*b, *l)),
                                    _ => None,
                                }
                            })
                            .collect();
                        let before = todo.len();
                        todo.retain(|r| !have.contains(&(r.1, r.2)));
                        assert!(todo.len() < before, "{name}: a conditional batch did not apply but named no existing row");
                    }
                    n
                }
                Alt::ReadThenInsert => {
                    let (lo, hi) = (g.iter().map(|r| (r.1, r.2)).min().unwrap_or_default(), g.iter().map(|r| (r.1, r.2)).max().unwrap_or_default());
                    let have: std::collections::HashSet<(i64, i64)> = s
                        .execute_unpaged(keys, (&g[0].0, lo.0, lo.1, hi.0, hi.1))
                        .await
                        .unwrap_or_else(|e| panic!("{name}: {e}"))
                        .into_rows_result()
                        .expect("rows")
                        .rows::<(i64, i64)>()
                        .expect("typed rows")
                        .map(|r| r.expect("row"))
                        .collect();
                    let absent: Vec<&VoteRow> = g.iter().copied().filter(|r| !have.contains(&(r.1, r.2))).collect();
                    if !absent.is_empty() {
                        let mut b = CqlBatch::new(BatchType::Unlogged);
                        for _ in &absent {
                            b.append_statement(plain.clone());
                        }
                        s.batch(&b, &absent).await.unwrap_or_else(|e| panic!("{name}: {e}"));
                    }
                    absent.len() as u64
                }
            };
            (s0.elapsed(), inserted)
        })
        .buffer_unordered(in_flight)
        .collect()
        .await;
    let secs = t.elapsed().as_secs_f64();
    let c1 = cpu(engine);
    let inserted = results.iter().map(|r| r.1).sum();
    let rows: usize = groups.iter().map(Vec::len).sum();
    let per = rows.div_ceil(groups.len().max(1)).max(1) as u32;
    let mut lat: Vec<Duration> = results.into_iter().map(|r| r.0).collect();
    lat.sort_unstable();
    let (p50, p99) = (pct(&lat, 50.0), pct(&lat, 99.0));
    let line = Line {
        name: name.to_string(),
        n: rows as u64,
        unit: "group",
        secs,
        p50,
        p99,
        per_vote: Some((p50 / per, p99 / per)),
        cpu: cores(c0, c1, ncores, engine.is_some()),
    };
    (line, inserted)
}

fn nodes() -> String {
    if let Ok(n) = std::env::var("GOVFLOW_TEST_CQL") {
        return n;
    }
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/scripts/cassandra.sh");
    let st = std::process::Command::new(script).arg("start").status().expect("running scripts/cassandra.sh start");
    assert!(st.success(), "scripts/cassandra.sh start failed");
    format!("127.0.0.1:{}", std::env::var("GOVFLOW_CQL_PORT").unwrap_or_else(|_| "9042".into()))
}

async fn raw_session(nodes: &str) -> Session {
    // The store's settings: LOCAL_QUORUM, LOCAL_SERIAL for the Paxos phase.
    let profile = ExecutionProfile::builder()
        .consistency(Consistency::LocalQuorum)
        .serial_consistency(Some(SerialConsistency::LocalSerial))
        .request_timeout(Some(Duration::from_secs(10)))
        .build();
    let list: Vec<&str> = nodes.split(',').map(str::trim).filter(|n| !n.is_empty()).collect();
    SessionBuilder::new()
        .known_nodes(&list)
        .default_execution_profile_handle(profile.into_handle())
        .build()
        .await
        .unwrap_or_else(|e| panic!("connecting to {nodes}: {e}"))
}

/// Drops the keyspace when the bench ends, even on a panic.
struct DropKeyspace {
    rt: tokio::runtime::Runtime,
    session: Session,
    keyspace: String,
}

impl Drop for DropKeyspace {
    fn drop(&mut self) {
        if std::env::var("GOVFLOW_KEEP_KEYSPACES").is_ok() {
            println!("keyspace {} kept (GOVFLOW_KEEP_KEYSPACES)", self.keyspace);
            return;
        }
        let cql = format!("DROP KEYSPACE IF EXISTS {}", self.keyspace);
        match self.rt.block_on(self.session.query_unpaged(cql, ())) {
            Ok(_) => println!("dropped keyspace {}", self.keyspace),
            Err(e) => eprintln!("could not drop keyspace {}: {e}", self.keyspace),
        }
    }
}

fn main() {
    // `cargo bench` passes `--bench`; only numbers are ours.
    let args: Vec<u64> = std::env::args().skip(1).filter_map(|a| a.parse().ok()).collect();
    let n = args.first().copied().unwrap_or(50_000).max(1);
    let proposals = args.get(1).copied().unwrap_or(250).clamp(1, n);
    let conc = args.get(2).copied().unwrap_or(256).max(1) as usize;
    let raw_n = args.get(3).copied().unwrap_or((n / 2).max(1));

    let ncores = std::thread::available_parallelism().map_or(1, |c| c.get());
    let cpu_model = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|s| s.lines().find(|l| l.starts_with("model name")).and_then(|l| l.split_once(':')).map(|(_, m)| m.trim().to_string()))
        .unwrap_or_else(|| "unknown".into());
    let nodes = nodes();
    let engine = engine_pid();
    let keyspace = format!("bench_{}", &uuid::Uuid::new_v4().simple().to_string()[..12]);

    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().expect("tokio runtime");
    let session = rt.block_on(raw_session(&nodes));
    let version: String = rt
        .block_on(session.query_unpaged("SELECT release_version FROM system.local", ()))
        .ok()
        .and_then(|r| r.into_rows_result().ok())
        .and_then(|r| r.maybe_first_row::<(Option<String>,)>().ok().flatten())
        .and_then(|r| r.0)
        .unwrap_or_else(|| "?".into());

    println!("govflow ScyllaDB-store vote write benchmark");
    println!("  machine : {ncores} cores ({cpu_model}); load average at start {}", loadavg());
    println!(
        "  engine  : CQL {version} at {nodes}, on this machine{}",
        engine.as_deref().map_or(" (JVM not found in /proc: its CPU is counted as other)".to_string(), |p| format!(" (Cassandra JVM pid {p})"))
    );
    println!("  store   : keyspace {keyspace}, LOCAL_QUORUM / LOCAL_SERIAL, write_concurrency {conc}");
    println!(
        "  workload: {n} votes over {proposals} proposals per pass, {VOTERS} voters, {VOTES_PER_BLOCK} votes per block, non-reversible batches of votes only"
    );
    println!();

    let cfg = ScyllaConfig { nodes: nodes.clone(), keyspace: keyspace.clone(), write_concurrency: conc, ..Default::default() };
    let _drop = DropKeyspace { rt, session, keyspace: keyspace.clone() };
    let t = Instant::now();
    let store = ScyllaStore::connect(&cfg, true).unwrap_or_else(|e| panic!("connecting the store: {e}"));
    println!("keyspace created and migrated in {:.1}s", t.elapsed().as_secs_f64());

    // Proposals (3 sets: warm-up, 1,000-vote batches, 5,000-vote batches), at block 1.
    let warm_n = 2_000.min(n);
    let (w_first, a_first, b_first) = (1, 1 + proposals, 1 + 2 * proposals);
    let props: Vec<Mutation> = (1..1 + 3 * proposals).map(|p| Mutation::Proposal(Box::new(proposal(p, 1)))).collect();
    let mut cursor = 1u64;
    store
        .commit(&Batch { from: 1, to: 1, to_hash: hash(1), blocks: vec![header(1)], mutations: props, ..Default::default() })
        .unwrap_or_else(|e| panic!("committing the proposals: {e}"));

    let mut block = 2;
    let warm = votes(warm_n, w_first, proposals, block);
    block += warm_n.div_ceil(VOTES_PER_BLOCK);
    let set_a = votes(n, a_first, proposals, block);
    block += n.div_ceil(VOTES_PER_BLOCK);
    let set_b = votes(n, b_first, proposals, block);

    // Warm-up (JIT, connections, prepared statements): not reported.
    let t = Instant::now();
    for b in batches(&warm, 1_000, &mut cursor) {
        store.commit(&b).unwrap_or_else(|e| panic!("warm-up commit: {e}"));
    }
    println!("warm-up: {warm_n} votes in {:.1}s", t.elapsed().as_secs_f64());
    println!("load average before the measured passes: {}", loadavg());
    println!();

    header_line(ncores);
    let mut rows = Vec::new();
    let mut requests = Vec::new();
    let ba = batches(&set_a, 1_000, &mut cursor);
    let r = store_pass(&store, "store: new votes", &ba, ncores as f64, engine.as_deref());
    requests.push(store_requests(&ba, false));
    print_row(&r);
    rows.push(r);
    let bb = batches(&set_b, 5_000, &mut cursor);
    let r = store_pass(&store, "store: new votes", &bb, ncores as f64, engine.as_deref());
    requests.push(store_requests(&bb, false));
    print_row(&r);
    rows.push(r);

    let before = store.stats().unwrap_or_else(|e| panic!("stats: {e}"));
    assert_eq!(before.votes, warm_n + 2 * n, "every new vote is counted once");
    let br = batches(&set_a, 1_000, &mut cursor);
    let r = store_pass(&store, "store: replayed votes", &br, ncores as f64, engine.as_deref());
    requests.push(store_requests(&br, true));
    print_row(&r);
    rows.push(r);
    let after = store.stats().unwrap_or_else(|e| panic!("stats: {e}"));
    assert_eq!(after.votes, before.votes, "a replay must not change the vote count");
    assert_eq!(after.unique_voters, before.unique_voters, "a replay must not change the voter count");
    let replay_check = format!(
        "Store::stats: {} votes, {} voters before the replay, {} votes, {} voters after it (unchanged)",
        before.votes, before.unique_voters, after.votes, after.unique_voters
    );

    // The exact-once path against plain inserts, with a raw session in the same keyspace.
    let rt = &_drop.rt;
    let s = &_drop.session;
    let cols = "(proposal_id, block_number, log_index, voter, support, day, body) VALUES (?, ?, ?, ?, ?, ?, ?)";
    let plain = rt.block_on(s.prepare(format!("INSERT INTO {keyspace}.votes_by_proposal {cols}"))).expect("prepare");
    let lwt = rt.block_on(s.prepare(format!("INSERT INTO {keyspace}.votes_by_proposal {cols} IF NOT EXISTS"))).expect("prepare");
    // Same votes (shape, partitions), proposal ids of their own per pass.
    let raw_votes = votes(raw_n, 0, proposals, 2);
    let pid = |tag: u8, v: &Vote| {
        let mut p = govflow::domain::u256_be(&v.proposal_id);
        p[0] = tag;
        p.to_vec()
    };
    let plain_rows: Vec<_> = raw_votes.iter().map(|v| vote_row(v, pid(0xa1, v))).collect();
    let lwt_rows: Vec<_> = raw_votes.iter().map(|v| vote_row(v, pid(0xa2, v))).collect();
    let nc = ncores as f64;
    let (rp, _) = rt.block_on(raw_pass(s, &plain, "raw: INSERT", &plain_rows, false, nc, engine.as_deref()));
    print_row(&rp);
    let (rl, applied) = rt.block_on(raw_pass(s, &lwt, "raw: INSERT IF NOT EXISTS, new rows", &lwt_rows, true, nc, engine.as_deref()));
    print_row(&rl);
    assert_eq!(applied, raw_n, "every new row is inserted");
    let (rr, applied) = rt.block_on(raw_pass(s, &lwt, "raw: INSERT IF NOT EXISTS, existing rows", &lwt_rows, true, nc, engine.as_deref()));
    print_row(&rr);
    assert_eq!(applied, 0, "no existing row is inserted again");

    // Alternatives (not what the store does today): per-partition groups as a store batch of
    // 5,000 votes would form them.
    let keys = rt
        .block_on(s.prepare(format!(
            "SELECT block_number, log_index FROM {keyspace}.votes_by_proposal WHERE proposal_id = ? \
             AND (block_number, log_index) >= (?, ?) AND (block_number, log_index) <= (?, ?)"
        )))
        .expect("prepare");
    let cond_rows: Vec<_> = raw_votes.iter().map(|v| vote_row(v, pid(0xa3, v))).collect();
    let rti_rows: Vec<_> = raw_votes.iter().map(|v| vote_row(v, pid(0xa4, v))).collect();
    let (cg, rg) = (partition_groups(&cond_rows, 5_000), partition_groups(&rti_rows, 5_000));
    let per_group = cond_rows.len().div_ceil(cg.len().max(1)).max(1);
    let groups_in_flight = RAW_IN_FLIGHT.div_ceil(per_group).max(ALT_MIN_IN_FLIGHT);
    println!("alternatives: rows grouped per proposal as in a 5,000-vote batch: {} groups of ~{per_group} rows, {groups_in_flight} groups in flight", cg.len());
    let mut alts = Vec::new();
    for (alt, label, groups) in [(Alt::Cond, "alt: 1-partition IF NOT EXISTS BATCH", &cg), (Alt::ReadThenInsert, "alt: range read + plain BATCH", &rg)] {
        for (round, want) in [("new rows", raw_n), ("existing rows", 0)] {
            let name = format!("{label}, {round}");
            let (line, inserted) = rt.block_on(alt_pass(s, alt, &lwt, &plain, &keys, &name, groups, groups_in_flight, nc, engine.as_deref()));
            print_row(&line);
            assert_eq!(inserted, want, "{name}: rows inserted");
            alts.push(line);
        }
    }
    println!();

    println!("summary");
    println!("  {replay_check}");
    for (r, req) in rows.iter().zip(&requests) {
        println!("  {:<40} {:>7.0} votes/s   CQL requests per vote: {req}", r.name, r.rate());
    }
    println!(
        "  exact-once cost, single-row writes at {RAW_IN_FLIGHT} in flight: INSERT {:.0}/s, INSERT IF NOT EXISTS {:.0}/s on new rows ({:.1}x slower), \
         {:.0}/s on existing rows ({:.1}x slower)",
        rp.rate(),
        rl.rate(),
        rp.rate() / rl.rate(),
        rr.rate(),
        rp.rate() / rr.rate()
    );
    println!(
        "  per-write latency p50 / p99: INSERT {:.2} / {:.2} ms; IF NOT EXISTS {:.2} / {:.2} ms (new rows), {:.2} / {:.2} ms (existing rows)",
        ms(rp.p50),
        ms(rp.p99),
        ms(rl.p50),
        ms(rl.p99),
        ms(rr.p50),
        ms(rr.p99)
    );
    let eng = |r: &Line| r.engine_us().map_or("?".to_string(), |e| format!("{e:.0}"));
    println!(
        "  engine CPU per write: INSERT {} µs, IF NOT EXISTS {} µs (new) / {} µs (existing); per stored vote through the store: {} µs (1,000-vote batches), {} µs (5,000)",
        eng(&rp),
        eng(&rl),
        eng(&rr),
        eng(&rows[0]),
        eng(&rows[1])
    );
    println!(
        "  alternatives per vote row: 1-partition conditional batch {:.0}/s new, {:.0}/s existing ({} / {} engine µs); range read + plain batch {:.0}/s new, {:.0}/s existing ({} / {} engine µs)",
        alts[0].rate(),
        alts[1].rate(),
        eng(&alts[0]),
        eng(&alts[1]),
        alts[2].rate(),
        alts[3].rate(),
        eng(&alts[2]),
        eng(&alts[3])
    );
    let best = rows.iter().take(2).map(Line::rate).fold(0.0, f64::max);
    println!("  target: 10,000 votes/s through the store; best store pass: {best:.0} votes/s");
    println!("  load average at the end: {}", loadavg());
    drop(store);
}
