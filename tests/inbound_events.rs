//! `POST /v1/events/governance` (the guide's §4.3: other systems send governance-related events
//! to the achievement trigger system) on the real `govflow` binary indexing a Governor on anvil.
//!
//! - `nats_inbound_events_exactly_once_and_outage`: with the NATS JetStream bus (a real
//!   `nats-server -js`): accepted events land on `govflow.<chainId>.inbound.<kind>` exactly once
//!   by id (retries with the same `id`, and identical bodies without one, are duplicates), with
//!   the published payload normalised; a live NATS subscriber and the stream agree; bad input
//!   gets the precise problem+json (401, 403, 415, 400, 422 with every invalid member, 413) and
//!   publishes nothing (a core NATS subscriber sees retried publishes too, and has each event
//!   once by `Nats-Msg-Id`); while nats-server is down the POST answers 503 with `Retry-After` and
//!   `/readyz` fails, and both recover by themselves when it is back; the outcomes are counted.
//! - `in_process_bus_and_disabled_route`: the embedded default publishes on the in-process bus
//!   (202); without `http.events_token` the route answers 404 and the token never reaches the
//!   log.

mod common;
mod support;

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use common::{stream_messages, Govflow, GovflowOpts};
use futures::StreamExt;
use serde_json::{json, Value};
use support::nats::NatsServer;
use support::*;

const TOKEN: &str = "inbound-test-token-0123456789";
const WAIT: Duration = Duration::from_secs(120);

fn hexa(a: Address) -> String {
    format!("0x{}", hex::encode(a.as_bytes()))
}

struct Answer {
    status: u16,
    content_type: String,
    retry_after: Option<String>,
    www_authenticate: Option<String>,
    body: Value,
}

async fn post(gf: &Govflow, token: Option<&str>, content_type: &str, body: impl Into<reqwest::Body>) -> Answer {
    let mut r = reqwest::Client::new().post(format!("{}/v1/events/governance", gf.base)).header("content-type", content_type).body(body);
    if let Some(t) = token {
        r = r.bearer_auth(t);
    }
    let resp = r.send().await.unwrap_or_else(|e| panic!("POST /v1/events/governance: {e}\n{}", gf.log()));
    let h = |n: &str| resp.headers().get(n).and_then(|v| v.to_str().ok()).map(str::to_string);
    let (content_type, retry_after, www_authenticate) = (h("content-type").unwrap_or_default(), h("retry-after"), h("www-authenticate"));
    let status = resp.status().as_u16();
    let text = resp.text().await.unwrap();
    Answer { status, content_type, retry_after, www_authenticate, body: serde_json::from_str(&text).unwrap_or(Value::String(text)) }
}

async fn post_event(gf: &Govflow, event: &Value) -> Answer {
    post(gf, Some(TOKEN), "application/json", serde_json::to_vec(event).unwrap()).await
}

async fn deploy(anvil: &Anvil) -> Dao {
    Dao::deploy(anvil, DaoOptions::default().voter(anvil.wallet(1), tokens(100)).voter(anvil.wallet(2), tokens(50))).await
}

async fn wait_ready(gf: &Govflow, want: u16, timeout: Duration) {
    let t = Instant::now();
    loop {
        let (s, _) = gf.get("/readyz").await;
        if s == want {
            return;
        }
        assert!(t.elapsed() < timeout, "/readyz did not answer {want} within {timeout:?} (last {s})\n{}", gf.log());
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nats_inbound_events_exactly_once_and_outage() {
    let mut nats = NatsServer::start();
    let anvil = Anvil::start().await;
    let dao = deploy(&anvil).await;
    let chain = anvil.chain_id;
    let dir = tempfile::tempdir().unwrap();
    let opts = GovflowOpts {
        rpc_url: anvil.rpc_url(),
        governor: hexa(dao.governor),
        confirmations: 0,
        start_block: None,
        env: vec![
            ("GOVFLOW_BUS_KIND".into(), "nats".into()),
            ("GOVFLOW_BUS_NATS_URL".into(), nats.url()),
            ("GOVFLOW_BUS_INSTANCE".into(), "inbound".into()),
            ("GOVFLOW_HTTP_EVENTS_TOKEN".into(), TOKEN.into()),
        ],
    };
    let mut gf = Govflow::start(&opts, &dir.path().join("data"));
    gf.wait_indexed(anvil.block_number().await, WAIT).await;
    wait_ready(&gf, 200, WAIT).await;

    let client = async_nats::connect(nats.url()).await.unwrap();
    let js = async_nats::jetstream::new(client.clone());
    let mut live = client.subscribe(format!("govflow.{chain}.inbound.>")).await.unwrap();
    let voter = anvil.address(1);

    // Accepted, normalised, and its id is the Nats-Msg-Id.
    let post1 = json!({
        "id": "forum-4711",
        "kind": "forum.post_created",
        "account": format!("{:?}", voter).to_uppercase().replacen("0X", "0x", 1),
        "proposalId": "42",
        "source": "forum",
        "occurredAt": "2026-01-31T13:30:00.500+01:00",
        "data": { "postId": 4711, "title": "Why I vote for" }
    });
    let a = post_event(&gf, &post1).await;
    assert_eq!(a.status, 202, "{}", a.body);
    assert_eq!(a.body["id"], "forum-4711");
    assert_eq!(a.body["subject"], format!("govflow.{chain}.inbound.forum_post_created"));
    assert_eq!(a.body["duplicate"], false);
    let first_seq = a.body["sequence"].as_u64().unwrap();

    // A retry of the same id (even with another body) is a duplicate: the first one stands.
    let mut changed = post1.clone();
    changed["data"]["title"] = json!("edited");
    let a = post_event(&gf, &changed).await;
    assert_eq!((a.status, &a.body["duplicate"], a.body["sequence"].as_u64()), (202, &json!(true), Some(first_seq)), "{}", a.body);

    // Without an id: identical bodies (members in any order) get the same derived id.
    let discussed = json!({ "kind": "proposal.discussed", "account": hexa(voter), "source": "discourse", "data": { "b": 1, "a": [2, 3] } });
    let reordered = json!({ "data": { "a": [2, 3], "b": 1 }, "source": "discourse", "account": hexa(voter).to_uppercase().replacen("0X", "0x", 1), "kind": "proposal.discussed" });
    let d1 = post_event(&gf, &discussed).await;
    let d2 = post_event(&gf, &reordered).await;
    assert_eq!((d1.status, d2.status), (202, 202), "{} {}", d1.body, d2.body);
    assert_eq!(d1.body["id"], d2.body["id"]);
    assert_eq!((d1.body["duplicate"].as_bool(), d2.body["duplicate"].as_bool()), (Some(false), Some(true)));
    let other = post_event(&gf, &json!({ "kind": "proposal.discussed", "account": hexa(voter), "source": "discourse", "data": { "b": 2 } })).await;
    assert_eq!(other.status, 202);
    assert_ne!(other.body["id"], d1.body["id"]);

    // Bad input: precise problems, nothing published.
    let bad = post(&gf, None, "application/json", "{}").await;
    assert_eq!(bad.status, 401, "{}", bad.body);
    assert_eq!(bad.www_authenticate.as_deref(), Some("Bearer realm=\"govflow-events\""));
    assert_eq!(bad.content_type, "application/problem+json");
    let bad = post(&gf, Some("wrong-token-0123456789"), "application/json", "{}").await;
    assert_eq!(bad.status, 403, "{}", bad.body);
    let bad = post(&gf, Some(TOKEN), "text/plain", "{}").await;
    assert_eq!((bad.status, bad.body["type"].as_str()), (415, Some("tag:govflow,2026:problem/unsupported-media-type")), "{}", bad.body);
    let bad = post(&gf, Some(TOKEN), "application/json", "{\"kind\":").await;
    assert_eq!((bad.status, bad.body["parameter"].as_str()), (400, Some("body")), "{}", bad.body);
    let bad = post_event(&gf, &json!({ "kind": "a.b", "account": hexa(voter), "source": "s", "weight": 1 })).await;
    assert_eq!((bad.status, bad.body["parameter"].as_str()), (400, Some("weight")), "{}", bad.body);
    let bad =
        post_event(&gf, &json!({ "kind": "Forum", "account": "0x12", "proposalId": 42, "source": "", "occurredAt": "2026-02-30T00:00:00Z", "data": [1] }))
            .await;
    assert_eq!(bad.status, 422, "{}", bad.body);
    assert_eq!(bad.body["type"], "tag:govflow,2026:problem/invalid-event");
    let names: Vec<&str> = bad.body["invalidParams"].as_array().unwrap().iter().map(|p| p["name"].as_str().unwrap()).collect();
    assert_eq!(names, ["kind", "account", "proposalId", "source", "occurredAt", "data"], "{}", bad.body);
    assert!(bad.body["detail"].as_str().unwrap().contains("2026-02 has no day 30"), "{}", bad.body);
    let huge = json!({ "kind": "a.b", "account": hexa(voter), "source": "s", "data": { "blob": "x".repeat(70_000) } });
    let bad = post_event(&gf, &huge).await;
    assert_eq!(bad.status, 413, "{}", bad.body);

    // The stream holds each accepted event once; the live subscriber saw the same.
    let subject = |k: &str| format!("govflow.{chain}.inbound.{k}");
    let msgs = stream_messages(&js, &format!("GOVFLOW_INBOUND_{chain}")).await;
    let ids: Vec<&str> = msgs.iter().map(|(_, id, _)| id.as_str()).collect();
    assert_eq!(ids, ["forum-4711", d1.body["id"].as_str().unwrap(), other.body["id"].as_str().unwrap()]);
    let (s, _, body) = &msgs[0];
    assert_eq!(s, &subject("forum_post_created"));
    assert_eq!(body["schemaVersion"], 1);
    assert_eq!(body["chainId"], chain);
    assert_eq!(body["account"], hexa(voter), "lower-case address");
    assert_eq!(body["proposalId"], "42");
    assert_eq!(body["occurredAt"], "2026-01-31T12:30:00.5Z", "normalised to UTC");
    assert_eq!(body["data"], post1["data"], "the first body stands");
    assert!(body["receivedAt"].as_str().unwrap().ends_with('Z'));
    assert_eq!(msgs[1].2["proposalId"], Value::Null);
    // A core NATS subscriber sees every publish, retries included (JetStream deduplicates what
    // it stores, not what it relays): by Nats-Msg-Id it has each event once, as documented.
    let mut seen = Vec::new();
    while seen.len() < 5 {
        let m = tokio::time::timeout(Duration::from_secs(5), live.next()).await.expect("live inbound message").unwrap();
        seen.push(m.headers.as_ref().and_then(|h| h.get("Nats-Msg-Id")).map(|v| v.to_string()).unwrap_or_default());
    }
    assert_eq!(seen.iter().map(String::as_str).collect::<Vec<_>>(), [ids[0], ids[0], ids[1], ids[1], ids[2]], "every publish, in order");
    let mut by_id: Vec<&str> = Vec::new();
    for id in &seen {
        if !by_id.contains(&id.as_str()) {
            by_id.push(id);
        }
    }
    assert_eq!(by_id, ids, "deduplicated by Nats-Msg-Id, the live subscriber has each accepted event once");

    // nats-server down: 503 with Retry-After, readiness fails; both recover by themselves.
    nats.kill();
    let outage = json!({ "id": "during-outage", "kind": "forum.post_created", "account": hexa(voter), "source": "forum" });
    let t = Instant::now();
    let a = loop {
        let a = post_event(&gf, &outage).await;
        if a.status != 202 || t.elapsed() > Duration::from_secs(20) {
            break a;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert_eq!(a.status, 503, "{}", a.body);
    assert_eq!(a.retry_after.as_deref(), Some("1"));
    assert!(a.body["detail"].as_str().unwrap().contains("during-outage"), "the answer names the id to retry with: {}", a.body);
    wait_ready(&gf, 503, Duration::from_secs(20)).await;
    let (_, why) = gf.get("/readyz").await;
    assert!(why["detail"].as_str().unwrap_or("").contains("NATS"), "{why}");

    nats.restart();
    wait_ready(&gf, 200, Duration::from_secs(60)).await;
    let t = Instant::now();
    let a = loop {
        let a = post_event(&gf, &outage).await;
        if a.status == 202 || t.elapsed() > Duration::from_secs(30) {
            break a;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    assert_eq!(a.status, 202, "the retried event goes through after the restart: {}", a.body);
    let msgs = stream_messages(&js, &format!("GOVFLOW_INBOUND_{chain}")).await;
    let ids: BTreeSet<&str> = msgs.iter().map(|(_, id, _)| id.as_str()).collect();
    assert_eq!(msgs.len(), 4, "the earlier events survived the restart (file storage) and the retried one is stored once");
    assert!(ids.contains("during-outage"));

    let metrics = reqwest::get(format!("{}/metrics", gf.base)).await.unwrap().text().await.unwrap();
    let count = |outcome: &str| -> u64 {
        let p = format!("govflow_bus_inbound_events_total{{outcome=\"{outcome}\"}} ");
        metrics.lines().find_map(|l| l.strip_prefix(&p)).and_then(|v| v.parse().ok()).unwrap_or(0)
    };
    // The publish attempted during the outage may have been delivered when the connection came
    // back (the client buffers it): the retry is then a duplicate. Either way it counts once.
    assert_eq!(count("accepted") + count("duplicate"), 6, "{metrics}");
    assert!((3..=4).contains(&count("accepted")), "{metrics}");
    assert_eq!(count("invalid"), 5, "{metrics}");
    assert_eq!(count("unauthorized"), 2, "{metrics}");
    assert!(count("unavailable") >= 1, "{metrics}");
    assert!(!gf.log().contains(TOKEN), "the token never reaches the log");
    gf.stop();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn in_process_bus_and_disabled_route() {
    let anvil = Anvil::start().await;
    let dao = deploy(&anvil).await;
    let dir = tempfile::tempdir().unwrap();
    let mut opts = GovflowOpts { rpc_url: anvil.rpc_url(), governor: hexa(dao.governor), confirmations: 0, start_block: None, env: vec![] };
    let mut off = Govflow::start(&opts, &dir.path().join("off"));
    opts.env.push(("GOVFLOW_HTTP_EVENTS_TOKEN".into(), TOKEN.into()));
    let mut on = Govflow::start(&opts, &dir.path().join("on"));
    let head = anvil.block_number().await;
    off.wait_indexed(head, WAIT).await;
    on.wait_indexed(head, WAIT).await;

    let event = json!({ "kind": "forum.post_created", "account": hexa(anvil.address(1)), "source": "forum" });
    let a = post_event(&off, &event).await;
    assert_eq!(a.status, 404, "{}", a.body);
    assert!(a.body["detail"].as_str().unwrap().contains("http.events_token"), "{}", a.body);

    let a = post_event(&on, &event).await;
    assert_eq!(a.status, 202, "{}", a.body);
    assert_eq!(a.body["subject"], format!("govflow.{}.inbound.forum_post_created", anvil.chain_id));
    assert_eq!(a.body["duplicate"], false);
    let again = post_event(&on, &event).await;
    assert_eq!((again.status, &again.body["duplicate"], &again.body["id"]), (202, &json!(true), &a.body["id"]));
    // OPTIONS and 405 name both methods of the route.
    let r = reqwest::Client::new().delete(format!("{}/v1/events/governance", on.base)).send().await.unwrap();
    assert_eq!(r.status().as_u16(), 405);
    assert_eq!(r.headers()["allow"], "GET, HEAD, POST, OPTIONS");
    assert!(!on.log().contains(TOKEN), "the token never reaches the log");
    off.stop();
    on.stop();
}
