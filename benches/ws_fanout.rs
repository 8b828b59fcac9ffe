//! Benchmark: websocket fan-out of one proposal's updates to many subscribers.
//!
//! `cargo bench --bench ws_fanout [-- SUBSCRIBERS [UPDATES [PROCESSES [INTERVAL_MS]]]]`
//! (default 10,000 subscribers of `proposal:1`, 50 updates, as few client processes as the
//! open-file limit allows, an update every 100 ms). The server is govflow's warp
//! filter in this process (embedded store in a temporary directory, the real `/v1/ws` route and
//! HTTP conventions, no rate limit); the clients are websocket connections in child processes
//! (this binary again), so each process stays under the file-descriptor limit. Each update is a
//! `proposal.updated` sent into the change hub carrying its send time; the latency of a
//! delivery is the client's receive time minus that (hub → client, one clock: same machine).
//! Prints p50/p90/p99/max over all deliveries, the mean time until the last subscriber of an
//! update has it, and the CPU time of the server and of the client processes.

use std::io::{BufRead, BufReader, Write};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use futures::{SinkExt, StreamExt};
use govflow::config::{HttpConfig, WebsocketConfig};
use govflow::domain::{Address, ChainPoint, HexBytes, Proposal, ProposalStatus, U256};
use govflow::http::{self, ApiState};
use govflow::store::embedded::EmbeddedStore;
use govflow::store::Store;
use govflow::streams::changes::{Change, ChangeHub, Update};
use govflow::streams::listener::IndexerStatus;
use tokio_tungstenite::tungstenite::Message;

const CONNECT_CONCURRENCY: usize = 256;

/// CPU seconds of this process and of its waited-for children (`/proc/self/stat`).
fn cpu_seconds() -> (f64, f64) {
    let stat = std::fs::read_to_string("/proc/self/stat").unwrap_or_default();
    let fields: Vec<f64> = stat.rsplit(')').next().unwrap_or("").split_whitespace().filter_map(|f| f.parse().ok()).collect();
    // After the command: state is skipped by the filter; utime, stime, cutime, cstime are
    // fields 14-17 of the line, here 10-13 (ticks of 1/100 s).
    let tick = |i: usize| fields.get(i).copied().unwrap_or(0.0) / 100.0;
    (tick(10) + tick(11), tick(12) + tick(13))
}

/// The soft limit on open files (`/proc/self/limits`).
fn open_files_limit() -> usize {
    let limits = std::fs::read_to_string("/proc/self/limits").unwrap_or_default();
    limits.lines().find(|l| l.starts_with("Max open files")).and_then(|l| l.split_whitespace().nth(3)).and_then(|v| v.parse().ok()).unwrap_or(1024)
}

fn now_nanos() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_nanos() as u64
}

fn main() {
    if let Ok(url) = std::env::var("WS_FANOUT_URL") {
        let n: usize = std::env::var("WS_FANOUT_CLIENTS").unwrap().parse().unwrap();
        let updates: usize = std::env::var("WS_FANOUT_UPDATES").unwrap().parse().unwrap();
        let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        rt.block_on(clients(url, n, updates));
        return;
    }
    let args: Vec<String> = std::env::args().skip(1).filter(|a| !a.starts_with("--")).collect();
    let subscribers: usize = args.first().map_or(10_000, |s| s.parse().expect("SUBSCRIBERS"));
    let updates: usize = args.get(1).map_or(50, |s| s.parse().expect("UPDATES"));
    // Each client process holds its connections' sockets: stay under the soft open-file limit.
    let per_process = open_files_limit().saturating_sub(256).max(256);
    let processes: usize = args.get(2).map_or(subscribers.div_ceil(per_process).max(1), |s| s.parse().expect("PROCESSES"));
    let interval_ms: u64 = args.get(3).map_or(100, |s| s.parse().expect("INTERVAL_MS"));
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
    rt.block_on(server(subscribers, updates, processes, interval_ms));
}

fn proposal(i: u64) -> Proposal {
    let description = format!("# Fund the festival\nUpdate {i}, sent={}", now_nanos());
    Proposal {
        id: uuid::Uuid::nil(),
        proposal_id: U256::one(),
        title: "Fund the festival".into(),
        description,
        proposer: Address([0x11; 20]),
        start_block: 10,
        end_block: 100_000,
        original_end_block: 100_000,
        creation_index: 0,
        status: ProposalStatus::Active,
        for_votes: U256::from(i) * U256::exp10(18),
        against_votes: U256::exp10(18),
        abstain_votes: U256::zero(),
        vote_count: i + 1,
        quorum: Some(U256::from(4) * U256::exp10(18)),
        targets: vec![Address([0x22; 20])],
        values: vec![U256::zero()],
        signatures: vec![String::new()],
        calldatas: vec![HexBytes(vec![0x55, 0x24, 0x10, 0x77, 0, 0, 0, 42])],
        eta: None,
        timelock_operation_id: None,
        created: ChainPoint { block_number: 5, timestamp: 1_700_000_000, transaction_hash: None },
        created_at: 1_700_000_000,
        updated_at: 1_700_000_000 + i,
        updated_block: 10 + i,
        executed_at: None,
        metadata_uri: None,
    }
}

async fn server(subscribers: usize, updates: usize, processes: usize, interval_ms: u64) {
    let dir = tempfile::tempdir().unwrap();
    let store: Arc<dyn Store> = Arc::new(EmbeddedStore::open(dir.path()).unwrap());
    let status = Arc::new(IndexerStatus::default());
    status.head.store(10_000, Ordering::Relaxed);
    status.indexed.store(10_000, Ordering::Relaxed);
    let changes = Arc::new(ChangeHub::default());
    let state = ApiState {
        store,
        status,
        metrics: None,
        http: HttpConfig { rate_limit_per_second: 0, ..HttpConfig::default() },
        changes: changes.clone(),
        cache: Arc::new(http::cache::Cache::disabled()),
        websocket: WebsocketConfig { max_connections: subscribers + 100, heartbeat_interval_s: 3_600, ..WebsocketConfig::default() },
        bus: std::sync::Arc::new(govflow::bus::memory::InProcessBus::new(1024, std::time::Duration::from_secs(600))),
    };
    let (addr, serving) = http::serve(state, "127.0.0.1:0".parse().unwrap(), std::future::pending()).unwrap();
    tokio::spawn(serving);
    let url = format!("ws://{addr}/v1/ws");
    println!("ws_fanout: {subscribers} subscribers of proposal:1 in {processes} client processes, {updates} updates every {interval_ms} ms");

    let started = Instant::now();
    let exe = std::env::current_exe().unwrap();
    let mut children = Vec::new();
    for p in 0..processes {
        let n = subscribers / processes + usize::from(p < subscribers % processes);
        let child = Command::new(&exe)
            .env("WS_FANOUT_URL", &url)
            .env("WS_FANOUT_CLIENTS", n.to_string())
            .env("WS_FANOUT_UPDATES", (updates + 1).to_string())
            .stdout(Stdio::piped())
            .spawn()
            .unwrap();
        children.push(child);
    }
    // Each child says "ready" once all its clients are subscribed, then reports latencies.
    let mut readers: Vec<_> = children.iter_mut().map(|c| BufReader::new(c.stdout.take().unwrap())).collect();
    let mut readers = tokio::task::spawn_blocking(move || {
        for r in readers.iter_mut() {
            let mut line = String::new();
            r.read_line(&mut line).unwrap();
            assert_eq!(line.trim(), "ready", "a client process failed to subscribe");
        }
        readers
    })
    .await
    .unwrap();
    println!("connected and subscribed in {:.1} s", started.elapsed().as_secs_f64());

    let (cpu_before, _) = cpu_seconds();
    // Update 0 warms the connections up (first frames, TCP windows) and is reported apart.
    let mut tick = tokio::time::interval(Duration::from_millis(interval_ms));
    for i in 0..=updates as u64 {
        tick.tick().await;
        changes.send(Update::Committed { from: 10 + i, to: 10 + i, changes: vec![Change::Proposal(Box::new(proposal(i)))] });
    }

    let results = tokio::task::spawn_blocking(move || {
        let mut all: Vec<u64> = Vec::new();
        let mut last_per_update: Vec<u64> = vec![0; updates + 1];
        let mut missing = 0u64;
        for r in readers.iter_mut() {
            for line in r.lines() {
                let line = line.unwrap();
                let mut parts = line.split_whitespace();
                match parts.next() {
                    Some("lat") => {
                        let u: usize = parts.next().unwrap().parse().unwrap();
                        let ns: u64 = parts.next().unwrap().parse().unwrap();
                        last_per_update[u] = last_per_update[u].max(ns);
                        if u > 0 {
                            all.push(ns);
                        }
                    }
                    Some("missing") => missing += parts.next().unwrap().parse::<u64>().unwrap(),
                    _ => {}
                }
            }
        }
        (all, last_per_update, missing)
    })
    .await
    .unwrap();
    let (cpu_after, _) = cpu_seconds();
    for mut c in children {
        let _ = c.wait();
    }
    let (_, children_cpu) = cpu_seconds();
    let (mut all, last, missing) = results;
    all.sort_unstable();
    let pct = |q: f64| all[((all.len() as f64 - 1.0) * q).round() as usize] as f64 / 1e6;
    let expected = (subscribers * updates) as u64;
    println!("deliveries: {} of {expected} ({missing} missing)", all.len());
    if all.is_empty() {
        return;
    }
    println!(
        "delivery latency (hub -> client): p50 {:.2} ms, p90 {:.2} ms, p99 {:.2} ms, max {:.2} ms",
        pct(0.50),
        pct(0.90),
        pct(0.99),
        *all.last().unwrap() as f64 / 1e6
    );
    let mut lasts: Vec<u64> = last[1..].to_vec();
    lasts.sort_unstable();
    let mean_last = lasts.iter().sum::<u64>() as f64 / lasts.len() as f64 / 1e6;
    println!(
        "time until the last of {subscribers} subscribers has an update: mean {mean_last:.2} ms, median {:.2} ms, max {:.2} ms (warm-up update: {:.2} ms)",
        lasts[lasts.len() / 2] as f64 / 1e6,
        *lasts.last().unwrap() as f64 / 1e6,
        last[0] as f64 / 1e6
    );
    println!(
        "CPU: server {:.2} s while sending and delivering ({:.1} us per delivery), client processes {:.2} s in all",
        cpu_after - cpu_before,
        (cpu_after - cpu_before) * 1e6 / all.len() as f64,
        children_cpu
    );
    println!("target: p99 under 100 ms: {}", if pct(0.99) < 100.0 { "met" } else { "NOT met" });
}

/// A client process: `n` connections subscribed to `proposal:1`; prints `ready`, then one
/// `lat <update> <nanoseconds>` line per delivery.
async fn clients(url: String, n: usize, updates: usize) {
    let subscribed = Arc::new(AtomicUsize::new(0));
    // Connections stay open until every client of the process has every update, so closing
    // ones do not load the server while others still wait.
    let barrier = Arc::new(tokio::sync::Barrier::new(n));
    let samples = Arc::new(std::sync::Mutex::new(Vec::<(u64, u64)>::with_capacity(n * updates)));
    let gate = Arc::new(tokio::sync::Semaphore::new(CONNECT_CONCURRENCY));
    let mut tasks = Vec::new();
    for _ in 0..n {
        let (url, subscribed, samples, gate, barrier) = (url.clone(), subscribed.clone(), samples.clone(), gate.clone(), barrier.clone());
        tasks.push(tokio::spawn(async move {
            let permit = gate.acquire_owned().await.unwrap();
            let (mut ws, _) = tokio_tungstenite::connect_async(url.as_str()).await.expect("connect");
            ws.send(Message::Text(r#"{"op":"subscribe","topic":"proposal:1"}"#.into())).await.unwrap();
            loop {
                match ws.next().await {
                    Some(Ok(Message::Text(t))) if t.contains("\"subscribed\"") => break,
                    Some(Ok(_)) => {}
                    other => panic!("no subscription: {other:?}"),
                }
            }
            drop(permit);
            subscribed.fetch_add(1, Ordering::Relaxed);
            let mut mine = Vec::with_capacity(updates);
            while mine.len() < updates {
                match ws.next().await {
                    Some(Ok(Message::Text(t))) => {
                        let at = now_nanos();
                        // Parse only what is needed: the update number and its send time.
                        let (Some(i), Some(j)) = (t.find("sent="), t.find("Update ")) else { continue };
                        mine.push((digits(&t[j + 7..]), at.saturating_sub(digits(&t[i + 5..]))));
                    }
                    Some(Ok(_)) => {}
                    _ => break,
                }
            }
            let missing = updates - mine.len();
            samples.lock().unwrap().extend(mine);
            barrier.wait().await;
            drop(ws);
            missing
        }));
    }
    while subscribed.load(Ordering::Relaxed) < n {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    println!("ready");
    std::io::stdout().flush().unwrap();
    let mut missing = 0;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(120);
    for mut t in tasks {
        match tokio::time::timeout_at(deadline, &mut t).await {
            Ok(r) => missing += r.unwrap_or(updates),
            Err(_) => {
                t.abort();
                missing += updates;
            }
        }
    }
    let samples = std::mem::take(&mut *samples.lock().unwrap());
    let mut out = std::io::BufWriter::new(std::io::stdout().lock());
    for (u, ns) in samples {
        writeln!(out, "lat {u} {ns}").unwrap();
    }
    writeln!(out, "missing {missing}").unwrap();
    out.flush().unwrap();
}

/// The decimal number at the start of `s`.
fn digits(s: &str) -> u64 {
    s.bytes().take_while(u8::is_ascii_digit).fold(0, |n, b| n * 10 + u64::from(b - b'0'))
}
