//! The read cache with a real Redis: Debian's `redis-server` started on a free 127.0.0.1 port
//! (`--save '' --appendonly no`), two `govflow` binaries on one anvil chain sharing it.
//!
//! `cache_with_redis_across_instances`, in order:
//! 1. reads hit the cache (warmed at start, in process) and fill Redis;
//! 2. a vote invalidates exactly what it changes (the voted proposal, the lists, the statistics,
//!    voting power "now" which names the new block) and leaves the rest cached; a transfer
//!    invalidates the two accounts; every answer equals the chain again;
//! 3. a second instance serves entries the first computed (L2 hits), a vote indexed only by the
//!    first instance reaches the second through Redis (its in-process entry is dropped, the
//!    first instance's fresh entry served), and an admin invalidation on the second reaches the
//!    first;
//! 4. the admin route: 401 without credentials, 403 with a wrong token, 400 for bad input,
//!    405 for GET, 200 with the token;
//! 5. redis-server killed: every read still answers and equals the chain, local invalidation
//!    still works, the failure is counted and logged once; redis-server restarted: the shared
//!    level is cleaned and used again.

mod common;
mod support;

use std::io::{Read as _, Write as _};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::{free_port, Govflow, GovflowOpts};
use reqwest::header::HeaderMap;
use serde_json::Value;
use support::*;

const WAIT: Duration = Duration::from_secs(120);
const TOKEN: &str = "test-admin-token-0123456789";

fn hexa(a: Address) -> String {
    format!("0x{}", hex::encode(a.as_bytes()))
}

/// A `redis-server` child process.
struct RedisServer {
    child: Option<Child>,
    port: u16,
    dir: tempfile::TempDir,
}

impl RedisServer {
    fn start(port: u16) -> RedisServer {
        let dir = tempfile::tempdir().unwrap();
        let mut s = RedisServer { child: None, port, dir };
        s.restart();
        s
    }

    fn restart(&mut self) {
        let child = Command::new("redis-server")
            .args(["--port", &self.port.to_string(), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"])
            .arg("--dir")
            .arg(self.dir.path())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("redis-server (Debian package redis-server) must be installed");
        self.child = Some(child);
        let t = Instant::now();
        loop {
            if let Ok(mut c) = std::net::TcpStream::connect(("127.0.0.1", self.port)) {
                let _ = c.set_read_timeout(Some(Duration::from_secs(1)));
                let mut buf = [0u8; 7];
                if c.write_all(b"PING\r\n").is_ok() && c.read_exact(&mut buf).is_ok() && &buf == b"+PONG\r\n" {
                    return;
                }
            }
            assert!(t.elapsed() < Duration::from_secs(10), "redis-server did not start on port {}", self.port);
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    fn url(&self) -> String {
        format!("redis://127.0.0.1:{}/0", self.port)
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        self.kill();
    }
}

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
    fn cache(&self) -> &str {
        self.header("x-cache").unwrap_or("none")
    }
}

async fn call(method: reqwest::Method, url: &str, headers: &[(&str, &str)]) -> Answer {
    let mut r = reqwest::Client::new().request(method, url);
    for (k, v) in headers {
        r = r.header(*k, *v);
    }
    let resp = r.send().await.unwrap_or_else(|e| panic!("{url}: {e}"));
    let status = resp.status().as_u16();
    let headers = resp.headers().clone();
    Answer { status, headers, body: resp.bytes().await.unwrap().to_vec() }
}

async fn get(gf: &Govflow, path: &str) -> Answer {
    let a = call(reqwest::Method::GET, &format!("{}{}", gf.base, path), &[]).await;
    assert_eq!(a.status, 200, "GET {path}: {}", String::from_utf8_lossy(&a.body));
    a
}

/// GETs until the cache has applied the last indexed block (no `bypass`).
async fn get_settled(gf: &Govflow, path: &str) -> Answer {
    let t = Instant::now();
    loop {
        let a = get(gf, path).await;
        if a.cache() != "bypass" {
            return a;
        }
        assert!(t.elapsed() < WAIT, "the cache never caught up with the indexer");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

async fn admin(gf: &Govflow, query: &str, auth: Option<&str>) -> Answer {
    let headers: Vec<(&str, &str)> = auth.map(|a| vec![("authorization", a)]).unwrap_or_default();
    call(reqwest::Method::POST, &format!("{}/v1/admin/cache/invalidate?{query}", gf.base), &headers).await
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

fn state_name(s: u8) -> &'static str {
    ["Pending", "Active", "Canceled", "Defeated", "Succeeded", "Queued", "Expired", "Executed"][s as usize]
}

async fn assert_proposal_equals_chain(dao: &Dao, p: &Value, id: U256) {
    let (against, for_, abstain) = dao.proposal_votes(id).await;
    assert_eq!(p["forVotes"], for_.to_string(), "forVotes of {id}: {p}");
    assert_eq!(p["againstVotes"], against.to_string(), "againstVotes of {id}: {p}");
    assert_eq!(p["abstainVotes"], abstain.to_string(), "abstainVotes of {id}: {p}");
    assert_eq!(p["status"], state_name(dao.state(id).await), "status of {id}");
}

async fn assert_power_equals_chain(dao: &Dao, vp: &Value, a: Address) {
    assert_eq!(vp["totalWeight"], dao.get_votes(a).await.to_string(), "votes of {a:?}: {vp}");
    assert_eq!(vp["balance"], dao.view().balance_of(a).await.to_string(), "balance of {a:?}: {vp}");
}

/// A value in Redis.
async fn redis_get(url: &str, key: &str) -> Option<Vec<u8>> {
    let client = redis::Client::open(url).ok()?;
    let mut con = client.get_multiplexed_async_connection().await.ok()?;
    redis::cmd("GET").arg(key).query_async::<Option<Vec<u8>>>(&mut con).await.ok().flatten()
}

/// Waits until `key` holds something other than `before`.
async fn wait_redis_change(url: &str, key: &str, before: Option<Vec<u8>>) {
    let t = Instant::now();
    while redis_get(url, key).await == before {
        assert!(t.elapsed() < Duration::from_secs(10), "{key} never changed in Redis");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

fn metric(text: &str, prefix: &str) -> f64 {
    text.lines().filter(|l| l.starts_with(prefix)).filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok()).sum()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cache_with_redis_across_instances() {
    let mut redis = RedisServer::start(free_port());
    let url = redis.url();
    let anvil = Anvil::start().await;
    let dao = Dao::deploy(
        &anvil,
        DaoOptions::default()
            .voting_delay(1)
            .voting_period(300)
            .quorum_numerator(4)
            .voter(anvil.wallet(1), tokens(40))
            .voter(anvil.wallet(2), tokens(25))
            .voter(anvil.wallet(3), tokens(15))
            .voter(anvil.wallet(4), tokens(10)),
    )
    .await;
    let (w1, w3, w4) = (anvil.address(1), anvil.address(3), anvil.address(4));
    let (p1, _) = dao.propose_set_value(&anvil.wallet(1), U256::from(1), "# Fund the festival").await;
    let (p2, _) = dao.propose_set_value(&anvil.wallet(2), U256::from(2), "# Open the archive").await;
    dao.advance_past_snapshot(p2).await;
    dao.cast_vote(&anvil.wallet(1), p1, vote::FOR).await;
    dao.cast_vote(&anvil.wallet(3), p2, vote::AGAINST).await;

    let env = |extra: &[(&str, &str)]| {
        let mut e = vec![
            ("GOVFLOW_CACHE_REDIS_URL".to_string(), url.clone()),
            ("GOVFLOW_HTTP_ADMIN_TOKEN".to_string(), TOKEN.to_string()),
            // No timed refresh during the test: the hits and misses below are the commits' doing.
            ("GOVFLOW_CACHE_TTL_MS".to_string(), "600000".to_string()),
        ];
        e.extend(extra.iter().map(|(k, v)| (k.to_string(), v.to_string())));
        GovflowOpts { rpc_url: anvil.rpc_url(), governor: hexa(dao.governor), confirmations: 0, start_block: None, env: e }
    };
    let dir = tempfile::tempdir().unwrap();
    let mut a = Govflow::start(&env(&[]), &dir.path().join("a"));
    sync(&mut a, &anvil).await;
    wait_log(&a, "redis connected").await;
    wait_log(&a, "cache warmed").await;
    let prefix = format!("govflow:{}:{}:", anvil.chain_id, hexa(dao.governor));

    // 1. Reads hit the cache, and fill Redis.
    let r = get_settled(&a, &format!("/v1/proposals/{p1}")).await;
    assert_eq!(r.cache(), "l1-hit", "warmed at start");
    assert_proposal_equals_chain(&dao, &r.json(), p1).await;
    assert_eq!(get(&a, "/v1/proposals?limit=1").await.cache(), "miss");
    assert_eq!(get(&a, "/v1/proposals?limit=1").await.cache(), "l1-hit");
    wait_redis_change(&url, &format!("{prefix}e:/v1/proposals?limit=1"), None).await;

    // 2. A vote invalidates exactly what it changes.
    let b0 = anvil.block_number().await;
    let snapshot2 = dao.proposal_snapshot(p2).await;
    let untouched = [
        format!("/v1/proposals/{p2}"),
        format!("/v1/users/{}/voting-power?block={b0}", hexa(w1)),
        format!("/v1/users/{}/voting-power?proposalId={p2}", hexa(w1)),
    ];
    let touched = [
        format!("/v1/proposals/{p1}"),
        "/v1/proposals".to_string(),
        "/v1/proposals?status=Active".to_string(),
        "/v1/proposals/stats".to_string(),
        format!("/v1/users/{}/voting-power", hexa(w1)),
    ];
    for p in untouched.iter().chain(&touched) {
        get(&a, p).await;
        assert_eq!(get(&a, p).await.cache(), "l1-hit", "{p}");
    }
    dao.cast_vote(&anvil.wallet(2), p1, vote::FOR).await;
    sync(&mut a, &anvil).await;
    let r = get_settled(&a, &touched[0]).await;
    assert_eq!(r.cache(), "miss", "{}", touched[0]);
    assert_proposal_equals_chain(&dao, &r.json(), p1).await;
    for p in &touched[1..] {
        assert_eq!(get(&a, p).await.cache(), "miss", "{p} is recomputed after the vote");
    }
    for p in &untouched {
        assert_eq!(get(&a, p).await.cache(), "l1-hit", "{p} stays cached");
    }
    let vp = get(&a, &touched[4]).await.json();
    assert_eq!(vp["blockNumber"], anvil.block_number().await);
    assert_power_equals_chain(&dao, &vp, w1).await;
    assert_eq!(get(&a, "/v1/proposals/stats").await.json()["votes"], 3);
    // A transfer changes two accounts: their entries go, the others stay.
    let at_snapshot = format!("/v1/users/{}/voting-power?proposalId={p2}", hexa(w4));
    get(&a, &at_snapshot).await;
    dao.transfer(&anvil.wallet(3), w4, tokens(5)).await;
    sync(&mut a, &anvil).await;
    let r = get_settled(&a, &at_snapshot).await;
    assert_eq!(r.cache(), "miss", "an account's entries go with its changes");
    assert_eq!(r.json()["totalWeight"], dao.get_past_votes(w4, snapshot2).await.to_string());
    assert_eq!(get(&a, &untouched[1]).await.cache(), "l1-hit", "another account's past power stays");
    assert_eq!(get(&a, &format!("/v1/proposals/{p2}")).await.cache(), "l1-hit");
    for w in [w1, w3, w4] {
        assert_power_equals_chain(&dao, &get(&a, &format!("/v1/users/{}/voting-power", hexa(w))).await.json(), w).await;
    }

    // 3. A second instance shares Redis; it does not follow the head after catching up.
    let mut b = Govflow::start(&env(&[("GOVFLOW_CHAIN_POLL_INTERVAL_MS", "600000")]), &dir.path().join("b"));
    sync(&mut b, &anvil).await;
    wait_log(&b, "redis connected").await;
    wait_log(&b, "cache warmed").await;
    let head = anvil.block_number().await;
    // An entry only the first instance computed is served to the second from Redis.
    let key = "/v1/proposals?limit=2";
    let before = redis_get(&url, &format!("{prefix}e:{key}")).await;
    let ra = get_settled(&a, key).await;
    assert_eq!(ra.cache(), "miss");
    wait_redis_change(&url, &format!("{prefix}e:{key}"), before).await;
    let rb = get_settled(&b, key).await;
    assert_eq!(rb.cache(), "l2-hit");
    assert_eq!(rb.body, ra.body);
    assert_eq!(rb.header("etag"), ra.header("etag"));
    // A vote only the first instance indexes: the second drops its entry and serves the first's.
    let detail2 = format!("/v1/proposals/{p2}");
    get_settled(&b, &detail2).await;
    let stale = get(&b, &detail2).await;
    assert_eq!(stale.cache(), "l1-hit");
    dao.cast_vote(&anvil.wallet(1), p2, vote::AGAINST).await;
    sync(&mut a, &anvil).await;
    assert_eq!(b.get_ok("/v1/status").await["indexedBlock"], head, "the second instance did not index the vote");
    let before = redis_get(&url, &format!("{prefix}e:{detail2}")).await;
    let fresh = get_settled(&a, &detail2).await;
    assert_eq!(fresh.cache(), "miss");
    assert_proposal_equals_chain(&dao, &fresh.json(), p2).await;
    wait_redis_change(&url, &format!("{prefix}e:{detail2}"), before).await;
    let r = get(&b, &detail2).await;
    assert_eq!(r.cache(), "l2-hit", "the first instance's invalidation reached the second");
    assert_eq!(r.body, fresh.body);
    assert_ne!(r.body, stale.body);
    assert_proposal_equals_chain(&dao, &r.json(), p2).await;
    // An admin invalidation on the second instance reaches the first.
    let detail1 = format!("/v1/proposals/{p1}");
    get_settled(&a, &detail1).await;
    assert_eq!(get(&a, &detail1).await.cache(), "l1-hit");
    let r = admin(&b, &format!("proposalId={p1}"), Some(&format!("Bearer {TOKEN}"))).await;
    assert_eq!(r.status, 200, "{}", String::from_utf8_lossy(&r.body));
    assert_eq!(r.json()["propagated"], true);
    assert_eq!(r.header("cache-control"), Some("no-store"));
    let t = Instant::now();
    loop {
        let r = get(&a, &detail1).await;
        if r.cache() == "miss" {
            assert_proposal_equals_chain(&dao, &r.json(), p1).await;
            break;
        }
        assert_eq!(r.cache(), "l1-hit");
        assert!(t.elapsed() < Duration::from_secs(5), "the admin invalidation never reached the first instance");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    b.stop();

    // 4. The admin route is authenticated.
    let r = admin(&a, "scope=all", None).await;
    assert_eq!(r.status, 401);
    assert_eq!(r.header("content-type"), Some("application/problem+json"));
    assert_eq!(r.header("www-authenticate"), Some("Bearer realm=\"govflow-admin\""));
    assert_eq!(r.json()["type"], "tag:govflow,2026:problem/unauthorized");
    assert!(r.json()["requestId"].is_string());
    let r = admin(&a, "scope=all", Some("Bearer not-the-token-at-all")).await;
    assert_eq!(r.status, 403);
    assert_eq!(r.json()["type"], "tag:govflow,2026:problem/forbidden");
    let r = admin(&a, "scope=everything", Some(&format!("Bearer {TOKEN}"))).await;
    assert_eq!(r.status, 400);
    assert_eq!(r.json()["parameter"], "scope");
    let r = admin(&a, "", Some(&format!("Bearer {TOKEN}"))).await;
    assert_eq!(r.status, 400);
    let r = call(reqwest::Method::GET, &format!("{}/v1/admin/cache/invalidate", a.base), &[]).await;
    assert_eq!(r.status, 405);
    get(&a, "/v1/proposals/stats").await;
    assert_eq!(get(&a, "/v1/proposals/stats").await.cache(), "l1-hit");
    let r = admin(&a, &format!("scope=stats&account={}", hexa(w1)), Some(&format!("bearer {TOKEN}"))).await;
    assert_eq!(r.status, 200);
    assert_eq!(r.json()["invalidated"], serde_json::json!([format!("a:{}", hexa(w1)), "stats"]));
    assert_eq!(get(&a, "/v1/proposals/stats").await.cache(), "miss");

    // 5. Redis dies mid-test: everything still answers and follows the chain.
    redis.kill();
    for p in [format!("/v1/proposals/{p1}"), "/v1/proposals".into(), "/v1/proposals?limit=7".into(), "/v1/proposals/stats".into()] {
        get(&a, &p).await;
    }
    assert_proposal_equals_chain(&dao, &get(&a, &detail1).await.json(), p1).await;
    dao.cast_vote(&anvil.wallet(4), p2, vote::FOR).await;
    sync(&mut a, &anvil).await;
    let r = get_settled(&a, &detail2).await;
    assert_eq!(r.cache(), "miss");
    assert_proposal_equals_chain(&dao, &r.json(), p2).await;
    assert_eq!(get(&a, &detail2).await.cache(), "l1-hit", "the in-process level serves alone");
    assert_power_equals_chain(&dao, &get_settled(&a, &format!("/v1/users/{}/voting-power", hexa(w4))).await.json(), w4).await;
    let r = admin(&a, "scope=all", Some(&format!("Bearer {TOKEN}"))).await;
    assert_eq!(r.status, 200);
    assert_eq!(r.json()["propagated"], false);
    assert_eq!(get(&a, &detail2).await.cache(), "miss");
    let metrics = String::from_utf8(get(&a, "/metrics").await.body).unwrap();
    assert!(metric(&metrics, "govflow_cache_redis_errors_total") >= 1.0, "{metrics}");
    assert!(metric(&metrics, "govflow_cache_lookups_total{level=\"l2\",result=\"hit\"}") >= 1.0, "L2 hits are counted");
    assert_eq!(a.log().matches("redis unreachable").count(), 1, "logged once:\n{}", a.log());

    // Redis back: the shared level is cleaned of what it missed, then used again.
    redis.restart();
    wait_log(&a, "redis reachable again").await;
    wait_log(&a, "shared cache level invalidated after undelivered invalidations").await;
    let key = "/v1/proposals?limit=3";
    let t = Instant::now();
    loop {
        get(&a, &format!("{key}&order=asc")).await;
        if redis_get(&url, &format!("{prefix}e:{key}&order=asc")).await.is_some() {
            break;
        }
        admin(&a, "scope=proposals", Some(&format!("Bearer {TOKEN}"))).await;
        assert!(t.elapsed() < Duration::from_secs(15), "Redis was never used again");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert_proposal_equals_chain(&dao, &get(&a, &detail2).await.json(), p2).await;
    a.stop();
}
