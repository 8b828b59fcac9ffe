//! The HTTP conventions on real answers: the `govflow` binary indexing a governance stack on
//! anvil, the in-process cache alone (no Redis), and one in-process API over a real embedded
//! store that answers slowly (the request timeout).
//!
//! - `conventions_on_real_answers`: request ids (echoed, replaced, generated, in problem bodies
//!   and in the log), ETag / If-None-Match / 304 and new ETags after a vote, Cache-Control per
//!   route, br and gzip negotiated and decoding to the identity body, `Vary`, `fields=` on native
//!   and generic routes with 400 for unknown fields, CORS answers and preflights, versioned
//!   paths, problem+json everywhere; the cache without Redis: warmed at start, hits, and a vote
//!   invalidating the voted proposal only (the API equals the chain again).
//! - `rate_limit_per_client`: token buckets per `X-Forwarded-For` client, 429 with Retry-After,
//!   probes exempt, refills.
//! - `request_timeout_answers_503`: 503 problem+json with Retry-After and the timeout counted.

mod common;
mod support;

use std::io::Read as _;
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::{Govflow, GovflowOpts};
use reqwest::header::HeaderMap;
use serde_json::Value;
use support::*;

const WAIT: Duration = Duration::from_secs(120);

fn hexa(a: Address) -> String {
    format!("0x{}", hex::encode(a.as_bytes()))
}

/// One HTTP answer.
struct Answer {
    status: u16,
    headers: HeaderMap,
    body: Vec<u8>,
}

impl Answer {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }
    fn json(&self) -> Value {
        serde_json::from_slice(&self.body).unwrap_or_else(|e| panic!("not JSON ({e}): {}", String::from_utf8_lossy(&self.body)))
    }
    fn vary(&self) -> String {
        self.headers.get_all("vary").iter().filter_map(|v| v.to_str().ok()).collect::<Vec<_>>().join(", ")
    }
}

async fn call(method: reqwest::Method, url: &str, headers: &[(&str, &str)]) -> Answer {
    let client = reqwest::Client::builder().build().unwrap();
    let mut r = client.request(method, url);
    for (k, v) in headers {
        r = r.header(*k, *v);
    }
    let resp = r.send().await.unwrap_or_else(|e| panic!("{url}: {e}"));
    let status = resp.status().as_u16();
    let headers = resp.headers().clone();
    let body = resp.bytes().await.unwrap().to_vec();
    Answer { status, headers, body }
}

async fn get(gf: &Govflow, path: &str, headers: &[(&str, &str)]) -> Answer {
    call(reqwest::Method::GET, &format!("{}{}", gf.base, path), headers).await
}

async fn sync(gf: &mut Govflow, anvil: &Anvil) {
    let head = anvil.block_number().await;
    gf.wait_indexed(head, WAIT).await;
}

async fn wait_log(gf: &Govflow, needle: &str) {
    let t = Instant::now();
    while !gf.log().contains(needle) {
        assert!(t.elapsed() < WAIT, "no {needle:?} in the log:\n{}", gf.log());
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Member names, sorted.
fn keys(v: &Value) -> Vec<String> {
    let mut k: Vec<String> = v.as_object().map(|o| o.keys().cloned().collect()).unwrap_or_default();
    k.sort();
    k
}

fn problem(a: &Answer, status: u16, kind: &str) -> Value {
    assert_eq!(a.status, status, "{}", String::from_utf8_lossy(&a.body));
    assert_eq!(a.header("content-type"), Some("application/problem+json"));
    let p = a.json();
    assert_eq!(p["type"], format!("tag:govflow,2026:problem/{kind}"), "{p}");
    assert_eq!(p["status"], status);
    assert_eq!(p["requestId"].as_str(), a.header("x-request-id"), "problem bodies carry the request id: {p}");
    assert_eq!(a.header("cache-control"), Some("no-store"));
    p
}

/// The proposal as the chain sees it, compared with govflow's answer.
async fn assert_proposal_equals_chain(dao: &Dao, p: &Value, id: U256) {
    let (against, for_, abstain) = dao.proposal_votes(id).await;
    assert_eq!(p["forVotes"], for_.to_string(), "forVotes of {id}: {p}");
    assert_eq!(p["againstVotes"], against.to_string(), "againstVotes of {id}: {p}");
    assert_eq!(p["abstainVotes"], abstain.to_string(), "abstainVotes of {id}: {p}");
    let state = dao.state(id).await;
    let name = ["Pending", "Active", "Canceled", "Defeated", "Succeeded", "Queued", "Expired", "Executed"][state as usize];
    assert_eq!(p["status"], name, "status of {id}");
}

async fn deploy(anvil: &Anvil) -> Dao {
    Dao::deploy(
        anvil,
        DaoOptions::default()
            .voting_delay(1)
            .voting_period(200)
            .quorum_numerator(4)
            .voter(anvil.wallet(1), tokens(40))
            .voter(anvil.wallet(2), tokens(25))
            .voter(anvil.wallet(3), tokens(15)),
    )
    .await
}

fn opts(anvil: &Anvil, dao: &Dao, env: &[(&str, &str)]) -> GovflowOpts {
    GovflowOpts {
        rpc_url: anvil.rpc_url(),
        governor: hexa(dao.governor),
        confirmations: 0,
        start_block: None,
        env: env.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect(),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn conventions_on_real_answers() {
    let anvil = Anvil::start().await;
    let dao = deploy(&anvil).await;
    let (p1, _) = dao.propose_set_value(&anvil.wallet(1), U256::from(1), "# First proposal\nA body long enough to compress.").await;
    let (p2, _) = dao.propose_set_value(&anvil.wallet(2), U256::from(2), "# Second proposal").await;
    dao.advance_past_snapshot(p2).await;
    dao.cast_vote_with_reason(&anvil.wallet(1), p1, vote::FOR, "for the festival").await;
    dao.cast_vote(&anvil.wallet(3), p2, vote::AGAINST).await;

    let dir = tempfile::tempdir().unwrap();
    let mut gf = Govflow::start(
        &opts(
            &anvil,
            &dao,
            &[
                ("GOVFLOW_HTTP_CORS_ORIGINS", "https://app.example, https://admin.example"),
                ("GOVFLOW_HTTP_COMPRESSION_MIN_BYTES", "256"),
                // No timed refresh during the test: the hits and misses below are the commits' doing.
                ("GOVFLOW_CACHE_TTL_MS", "600000"),
            ],
        ),
        &dir.path().join("gf"),
    );
    sync(&mut gf, &anvil).await;
    wait_log(&gf, "cache warmed").await;
    let w1 = hexa(anvil.address(1));

    // Request ids: echoed when sane, replaced when not, generated when absent; in the log line.
    let a = get(&gf, "/v1/proposals", &[("x-request-id", "trace-42.a:b_c")]).await;
    assert_eq!(a.status, 200);
    assert_eq!(a.header("x-request-id"), Some("trace-42.a:b_c"));
    let a = get(&gf, "/v1/proposals", &[("x-request-id", "not sane!")]).await;
    let id = a.header("x-request-id").unwrap();
    assert!(uuid::Uuid::parse_str(id).is_ok(), "an insane request id is replaced by a UUID: {id}");
    let a = get(&gf, "/healthz", &[]).await;
    assert!(uuid::Uuid::parse_str(a.header("x-request-id").unwrap()).is_ok());
    wait_log(&gf, "trace-42.a:b_c").await;

    // problem+json everywhere, with the request id.
    let a = get(&gf, "/v1/proposals/999", &[("x-request-id", "req-404")]).await;
    let p = problem(&a, 404, "not-found");
    assert_eq!(p["requestId"], "req-404");
    assert_eq!(p["instance"], "/v1/proposals/999");
    let a = get(&gf, "/proposals", &[]).await;
    let p = problem(&a, 404, "not-found");
    assert!(p["detail"].as_str().unwrap().contains("/v1"), "unversioned paths point to /v1: {p}");
    let a = call(reqwest::Method::POST, &format!("{}/v1/proposals", gf.base), &[]).await;
    problem(&a, 405, "method-not-allowed");
    let a = get(&gf, "/v1/proposals?limit=0", &[]).await;
    assert_eq!(problem(&a, 400, "invalid-parameter")["parameter"], "limit");
    let a = call(reqwest::Method::POST, &format!("{}/v1/admin/cache/invalidate?scope=all", gf.base), &[]).await;
    problem(&a, 404, "not-found");

    // The cache without Redis: warmed at start, then hits.
    let detail = |id: U256| format!("/v1/proposals/{id}");
    for path in [detail(p1), detail(p2), "/v1/proposals".into(), "/v1/proposals/stats".into(), format!("/v1/users/{w1}/voting-power")] {
        let a = get(&gf, &path, &[]).await;
        assert_eq!(a.status, 200, "{path}");
        assert_eq!(a.header("x-cache"), Some("l1-hit"), "{path} was warmed at start");
    }
    // Hex and decimal ids share one entry.
    let a = get(&gf, &format!("/v1/proposals/0x{p1:x}"), &[]).await;
    assert_eq!(a.header("x-cache"), Some("l1-hit"));

    // ETag, If-None-Match, 304, Cache-Control, on cached and uncached reads.
    for path in [
        detail(p1),
        "/v1/proposals?status=Active".into(),
        "/v1/proposals/stats".into(),
        format!("/v1/users/{w1}/voting-power"),
        format!("/v1/proposals/{p1}/votes"),
    ] {
        let a = get(&gf, &path, &[]).await;
        assert_eq!(a.status, 200);
        let etag = a.header("etag").unwrap_or_else(|| panic!("{path} has an ETag")).to_string();
        assert!(etag.starts_with('"') && etag.ends_with('"'), "strong ETag: {etag}");
        assert_eq!(a.header("cache-control"), Some("public, max-age=5"), "{path}");
        let b = get(&gf, &path, &[("if-none-match", &etag)]).await;
        assert_eq!(b.status, 304, "{path}");
        assert!(b.body.is_empty());
        assert_eq!(b.header("etag"), Some(etag.as_str()));
        assert_eq!(b.header("cache-control"), Some("public, max-age=5"));
        let c = get(&gf, &path, &[("if-none-match", "\"something-else\", W/\"x\"")]).await;
        assert_eq!(c.status, 200);
        assert_eq!(c.body, a.body);
        let d = call(reqwest::Method::HEAD, &format!("{}{}", gf.base, path), &[]).await;
        assert_eq!(d.status, 200);
        assert_eq!(d.header("etag"), Some(etag.as_str()), "HEAD carries the same ETag");
    }
    for path in ["/v1/status", "/metrics", "/healthz"] {
        let a = get(&gf, path, &[]).await;
        assert_eq!(a.header("cache-control"), Some("no-store"), "{path}");
        assert!(a.header("etag").is_none(), "{path}");
    }

    // Compression: br preferred, gzip, q-values, small bodies left alone; same bytes decoded.
    let plain = get(&gf, "/v1/proposals", &[]).await;
    assert!(plain.body.len() >= 256, "list body is large enough to compress");
    assert!(plain.header("content-encoding").is_none());
    assert!(plain.vary().contains("Accept-Encoding"), "vary: {}", plain.vary());
    let br = get(&gf, "/v1/proposals", &[("accept-encoding", "gzip, deflate, br")]).await;
    assert_eq!(br.header("content-encoding"), Some("br"));
    let mut out = Vec::new();
    brotli::Decompressor::new(&br.body[..], 4096).read_to_end(&mut out).unwrap();
    assert_eq!(out, plain.body);
    assert!(br.body.len() < plain.body.len());
    assert_eq!(br.header("etag"), plain.header("etag"), "the ETag is over the uncompressed body");
    let gz = get(&gf, "/v1/proposals", &[("accept-encoding", "br;q=0.5, gzip;q=0.9")]).await;
    assert_eq!(gz.header("content-encoding"), Some("gzip"));
    let mut out = Vec::new();
    flate2::read::GzDecoder::new(&gz.body[..]).read_to_end(&mut out).unwrap();
    assert_eq!(out, plain.body);
    let none = get(&gf, "/v1/proposals", &[("accept-encoding", "identity")]).await;
    assert!(none.header("content-encoding").is_none());
    let small = get(&gf, "/healthz", &[("accept-encoding", "br")]).await;
    assert!(small.header("content-encoding").is_none(), "below http.compression_min_bytes");
    let uncached = get(&gf, &format!("/v1/proposals/{p1}/votes"), &[("accept-encoding", "gzip")]).await;
    if uncached.body.len() >= 256 {
        assert_eq!(uncached.header("content-encoding"), Some("gzip"));
    }

    // fields= on every JSON read: native projections and the generic one.
    let a = get(&gf, "/v1/proposals?fields=proposalId,status", &[]).await.json();
    for item in a["items"].as_array().unwrap() {
        assert_eq!(keys(item), vec!["proposalId", "status"], "{item}");
    }
    // `history` and `voteCounts` (detail members) have always been accepted on the list, where
    // items have none: still accepted, still nothing.
    let a = get(&gf, "/v1/proposals?fields=history,status", &[]).await.json();
    for item in a["items"].as_array().unwrap() {
        assert_eq!(keys(item), vec!["status"], "{item}");
    }
    let a = get(&gf, &format!("/v1/proposals/{p1}?fields=forVotes"), &[]).await.json();
    assert_eq!(a.as_object().unwrap().len(), 1);
    let a = get(&gf, "/v1/proposals/stats?fields=proposals,votes", &[]).await.json();
    assert_eq!(a, serde_json::json!({ "proposals": 2, "votes": 2 }));
    let a = get(&gf, "/v1/status?fields=indexedBlock,caughtUp", &[]).await.json();
    assert_eq!(keys(&a), vec!["caughtUp", "indexedBlock"]);
    let a = get(&gf, &format!("/v1/proposals/{p1}/execution-status?fields=executionState"), &[]).await.json();
    assert_eq!(a, serde_json::json!({ "executionState": "voting" }));
    let a = get(&gf, "/v1/events/governance?fields=seq", &[]).await.json();
    let items = a["items"].as_array().unwrap();
    assert!(!items.is_empty(), "the feed has the proposals and votes: {a}");
    assert!(items.iter().all(|i| keys(i) == vec!["seq"]), "{a}");
    assert!(a.get("nextAfter").is_some(), "list members other than items stay: {a}");
    let a = get(&gf, &format!("/v1/users/{w1}/governance-achievements?fields=votesCast"), &[]).await.json();
    assert_eq!(a, serde_json::json!({ "votesCast": 1 }));
    for path in ["/v1/proposals/stats?fields=nope", "/v1/proposals?fields=nope", "/v1/status?fields=", "/healthz?fields=x"] {
        let a = get(&gf, path, &[]).await;
        assert_eq!(problem(&a, 400, "invalid-parameter")["parameter"], "fields", "{path}");
    }

    // CORS.
    let a = get(&gf, "/v1/proposals", &[("origin", "https://app.example")]).await;
    assert_eq!(a.header("access-control-allow-origin"), Some("https://app.example"));
    assert!(a.header("access-control-expose-headers").unwrap().contains("ETag"));
    assert!(a.vary().contains("Origin"));
    let a = get(&gf, "/v1/proposals", &[("origin", "https://evil.example")]).await;
    assert_eq!(a.status, 200);
    assert!(a.header("access-control-allow-origin").is_none());
    let pre = [("origin", "https://admin.example"), ("access-control-request-method", "GET"), ("access-control-request-headers", "if-none-match")];
    let a = call(reqwest::Method::OPTIONS, &format!("{}/v1/proposals/{p1}", gf.base), &pre).await;
    assert_eq!(a.status, 204);
    assert_eq!(a.header("access-control-allow-origin"), Some("https://admin.example"));
    assert_eq!(a.header("access-control-allow-methods"), Some("GET, HEAD, OPTIONS"));
    assert_eq!(a.header("access-control-allow-headers"), Some("if-none-match"));
    assert!(a.header("x-request-id").is_some());
    let a =
        call(reqwest::Method::OPTIONS, &format!("{}/v1/proposals", gf.base), &[("origin", "https://evil.example"), ("access-control-request-method", "GET")])
            .await;
    problem(&a, 403, "cors-origin");
    let a = call(reqwest::Method::OPTIONS, &format!("{}/v1/proposals", gf.base), &[]).await;
    assert_eq!(a.status, 204);
    assert_eq!(a.header("allow"), Some("GET, HEAD, OPTIONS"));

    // A vote on P1: its detail, the lists and the statistics are recomputed; P2 stays cached.
    let etag_before = get(&gf, &detail(p1), &[]).await.header("etag").unwrap().to_string();
    dao.cast_vote(&anvil.wallet(2), p1, vote::AGAINST).await;
    sync(&mut gf, &anvil).await;
    let a = get(&gf, &detail(p2), &[]).await;
    assert_eq!(a.header("x-cache"), Some("l1-hit"), "another proposal's vote leaves P2 cached");
    let a = get(&gf, &detail(p1), &[("if-none-match", &etag_before)]).await;
    assert_eq!(a.status, 200, "the old ETag no longer matches");
    assert_eq!(a.header("x-cache"), Some("miss"));
    assert_ne!(a.header("etag"), Some(etag_before.as_str()));
    assert_proposal_equals_chain(&dao, &a.json(), p1).await;
    let a = get(&gf, &detail(p1), &[]).await;
    assert_eq!(a.header("x-cache"), Some("l1-hit"));
    assert_proposal_equals_chain(&dao, &a.json(), p1).await;
    for path in ["/v1/proposals", "/v1/proposals/stats"] {
        assert_eq!(get(&gf, path, &[]).await.header("x-cache"), Some("miss"), "{path} recomputed after the vote");
    }
    assert_eq!(get(&gf, "/v1/proposals/stats?fields=votes", &[]).await.json()["votes"], 3);
    let vp = get(&gf, &format!("/v1/users/{w1}/voting-power"), &[]).await;
    assert_eq!(vp.header("x-cache"), Some("miss"), "voting power now names the indexed block");
    assert_eq!(vp.json()["blockNumber"], anvil.block_number().await);
    assert_eq!(vp.json()["totalWeight"], dao.get_votes(anvil.address(1)).await.to_string());

    // The cache is a metric.
    let metrics = String::from_utf8(get(&gf, "/metrics", &[]).await.body).unwrap();
    assert!(metrics.contains("govflow_cache_lookups_total{level=\"l1\",result=\"hit\"}"), "{metrics}");
    assert!(metrics.contains("govflow_cache_invalidations_total{source=\"chain\"}"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rate_limit_per_client() {
    let anvil = Anvil::start().await;
    let dao = deploy(&anvil).await;
    let dir = tempfile::tempdir().unwrap();
    let mut gf = Govflow::start(
        &opts(
            &anvil,
            &dao,
            &[("GOVFLOW_HTTP_RATE_LIMIT_PER_SECOND", "1"), ("GOVFLOW_HTTP_RATE_LIMIT_BURST", "3"), ("GOVFLOW_HTTP_TRUST_FORWARDED_FOR", "true")],
        ),
        &dir.path().join("gf"),
    );
    // /healthz is not limited: poll it freely while govflow catches up.
    sync(&mut gf, &anvil).await;
    for _ in 0..10 {
        assert_eq!(get(&gf, "/healthz", &[("x-forwarded-for", "10.0.0.1")]).await.status, 200);
    }
    // The last X-Forwarded-For address is the client; a burst of 3, then 429.
    let client = [("x-forwarded-for", "203.0.113.9, 10.0.0.1")];
    for i in 0..3 {
        assert_eq!(get(&gf, "/v1/proposals", &client).await.status, 200, "request {i} within the burst");
    }
    let a = get(&gf, "/v1/proposals", &client).await;
    let p = problem(&a, 429, "rate-limited");
    let retry: u64 = a.header("retry-after").expect("Retry-After").parse().unwrap();
    assert!((1..=2).contains(&retry), "retry after {retry} s: {p}");
    // Another client has its own bucket.
    assert_eq!(get(&gf, "/v1/proposals", &[("x-forwarded-for", "10.0.0.2")]).await.status, 200);
    // The bucket refills at the rate.
    tokio::time::sleep(Duration::from_secs(retry)).await;
    assert_eq!(get(&gf, "/v1/proposals", &client).await.status, 200);
    let metrics = String::from_utf8(get(&gf, "/metrics", &client).await.body).unwrap();
    assert!(metrics.lines().any(|l| l.starts_with("govflow_http_rate_limited_total") && !l.ends_with(" 0")), "{metrics}");
}

/// A real embedded store whose statistics take two seconds (a store under load).
struct SlowStats(govflow::store::embedded::EmbeddedStore);

mod slow {
    use govflow::domain::*;
    use govflow::store::*;
    use govflow::streams::achievements::{FeedItem, GovernanceEvent, Streak};

    impl Store for super::SlowStats {
        fn info(&self) -> Result<Option<GovernorInfo>, StoreError> {
            self.0.info()
        }
        fn init_info(&self, info: &GovernorInfo) -> Result<(), StoreError> {
            self.0.init_info(info)
        }
        fn cursor(&self) -> Result<Option<Cursor>, StoreError> {
            self.0.cursor()
        }
        fn commit(&self, batch: &Batch) -> Result<(), StoreError> {
            self.0.commit(batch)
        }
        fn rollback(&self, ancestor: u64) -> Result<Option<Cursor>, StoreError> {
            self.0.rollback(ancestor)
        }
        fn block(&self, number: u64) -> Result<Option<BlockRecord>, StoreError> {
            self.0.block(number)
        }
        fn recent_blocks(&self) -> Result<Vec<BlockRecord>, StoreError> {
            self.0.recent_blocks()
        }
        fn proposal(&self, id: &U256) -> Result<Option<Proposal>, StoreError> {
            self.0.proposal(id)
        }
        fn live_proposals(&self) -> Result<Vec<Proposal>, StoreError> {
            self.0.live_proposals()
        }
        fn list_proposals(&self, q: &ProposalQuery) -> Result<Page<Proposal>, StoreError> {
            self.0.list_proposals(q)
        }
        fn history(&self, id: &U256) -> Result<Vec<HistoryEntry>, StoreError> {
            self.0.history(id)
        }
        fn vote(&self, id: &U256, voter: &Address) -> Result<Option<Vote>, StoreError> {
            self.0.vote(id, voter)
        }
        fn proposal_votes(&self, id: &U256, q: &VoteQuery) -> Result<Page<Vote>, StoreError> {
            self.0.proposal_votes(id, q)
        }
        fn voter_votes(&self, voter: &Address, q: &VoteQuery) -> Result<Page<Vote>, StoreError> {
            self.0.voter_votes(voter, q)
        }
        fn account(&self, account: &Address) -> Result<Option<AccountPower>, StoreError> {
            self.0.account(account)
        }
        fn latest_accounts(&self) -> Result<Vec<(Address, AccountPower)>, StoreError> {
            self.0.latest_accounts()
        }
        fn account_at_block(&self, account: &Address, block: u64) -> Result<Option<AccountPower>, StoreError> {
            self.0.account_at_block(account, block)
        }
        fn account_at_time(&self, account: &Address, ts: u64) -> Result<Option<AccountPower>, StoreError> {
            self.0.account_at_time(account, ts)
        }
        fn timelock_op(&self, id: &B256) -> Result<Option<TimelockOperation>, StoreError> {
            self.0.timelock_op(id)
        }
        fn stats(&self) -> Result<Stats, StoreError> {
            std::thread::sleep(std::time::Duration::from_secs(2));
            self.0.stats()
        }
        fn streak(&self, voter: &Address) -> Result<Streak, StoreError> {
            self.0.streak(voter)
        }
        fn publish_final(&self, finalized: u64) -> Result<Vec<FeedItem>, StoreError> {
            self.0.publish_final(finalized)
        }
        fn feed_position(&self) -> Result<u64, StoreError> {
            self.0.feed_position()
        }
        fn feed(&self, after: u64, limit: usize) -> Result<Vec<FeedItem>, StoreError> {
            self.0.feed(after, limit)
        }
        fn account_events(&self, account: &Address) -> Result<Vec<(GovernanceEvent, bool)>, StoreError> {
            self.0.account_events(account)
        }
        fn voter_vote_count(&self, voter: &Address) -> Result<u64, StoreError> {
            self.0.voter_vote_count(voter)
        }
        fn vote_counts(&self, id: &U256) -> Result<VoteCounts, StoreError> {
            self.0.vote_counts(id)
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn request_timeout_answers_503() {
    let dir = tempfile::tempdir().unwrap();
    let store = SlowStats(govflow::store::embedded::EmbeddedStore::open(dir.path()).unwrap());
    let http = govflow::config::HttpConfig { request_timeout_ms: 300, ..Default::default() };
    let state = govflow::http::ApiState {
        store: Arc::new(store),
        status: Arc::new(govflow::streams::listener::IndexerStatus::default()),
        metrics: None,
        http,
        changes: Arc::new(govflow::streams::changes::ChangeHub::default()),
        cache: Arc::new(govflow::http::cache::Cache::disabled()),
        websocket: Default::default(),
        bus: std::sync::Arc::new(govflow::bus::memory::InProcessBus::new(1024, std::time::Duration::from_secs(600))),
    };
    let (tx, rx) = tokio::sync::oneshot::channel::<()>();
    let (addr, server) = govflow::http::serve(state, "127.0.0.1:0".parse().unwrap(), async {
        let _ = rx.await;
    })
    .unwrap();
    tokio::spawn(server);
    let base = format!("http://{addr}");
    let t = Instant::now();
    let a = call(reqwest::Method::GET, &format!("{base}/v1/proposals/stats"), &[("x-request-id", "slow-1")]).await;
    let elapsed = t.elapsed();
    let p = problem(&a, 503, "timeout");
    assert_eq!(p["requestId"], "slow-1");
    assert_eq!(a.header("retry-after"), Some("1"));
    assert!(elapsed < Duration::from_millis(1_500), "answered at the timeout, not when the store finished: {elapsed:?}");
    // Other routes are not held up.
    let a = call(reqwest::Method::GET, &format!("{base}/healthz"), &[]).await;
    assert_eq!(a.status, 200);
    let _ = tx.send(());
}
