//! The OpenAPI document (`GET /v1/openapi.json`) against the real `govflow` binary indexing a
//! CultureBridge governance stack on anvil (a story with executed, canceled, defeated,
//! succeeded, active and pending proposals, NFT bonuses, a delegation change and a
//! participation streak):
//!
//! - `every_route_is_documented_and_answers`: every `(method, template)` of
//!   `govflow::http::ROUTES` is in `paths`; every documented operation answers with real
//!   parameters (no 404/405: 2xx, or 101 for the websocket), with a status and content type the
//!   document lists; the explorer is served offline and points at the document; a method a route
//!   does not support answers 405 problem+json.
//! - `real_answers_match_their_schemas`: the answers of every documented read, with every
//!   parameter and every enumerated value, validate against their schemas (`jsonschema`, formats
//!   asserted); without `fields` they have exactly the documented members (every schema made
//!   strict); `fields` accepts exactly the names the document enumerates; errors are
//!   problem+json of the documented statuses.
//! - `schemathesis_finds_no_server_error_and_no_schema_break`: schemathesis (PyPI, installed by
//!   `scripts/setup.sh` into `.venv/schemathesis`) fuzzes every operation from the document,
//!   with a fixed seed, and finds no 5xx, no undocumented status or content type and no answer
//!   that breaks its schema.

mod common;
mod support;

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use common::{Govflow, GovflowOpts};
use serde_json::{json, Value};
use support::*;

const WAIT: Duration = Duration::from_secs(120);
const ADMIN_TOKEN: &str = "openapi-test-admin-token";
const SCHEMATHESIS_VERSION: &str = "4.32.5";
/// Bound of the schemathesis run (the whole test stays within about two minutes).
const SCHEMATHESIS_TIMEOUT: Duration = Duration::from_secs(150);

fn hexa(a: Address) -> String {
    format!("0x{}", hex::encode(a.as_bytes()))
}

/// A governance history indexed by a running govflow.
struct World {
    gf: Govflow,
    /// Proposals by label: executed, canceled, defeated, succeeded, active, pending.
    proposals: BTreeMap<&'static str, U256>,
    /// Accounts worth asking about: voters, a delegator, an account with no tokens.
    accounts: Vec<Address>,
    _anvil: Anvil,
    _dir: tempfile::TempDir,
}

async fn world() -> World {
    let anvil = Anvil::start().await;
    let w = |i| anvil.wallet(i);
    let cb = CbDao::deploy(
        &anvil,
        CbOptions::default()
            .dao_options(|d| d.voting_delay(2).voting_period(10).quorum_numerator(10).vote_extension(3).timelock_min_delay(60))
            .voter(w(1), tokens(40))
            .voter(w(2), tokens(25))
            .voter(w(3), tokens(15))
            .voter_with(Voter::delegating_to(w(4), tokens(10), anvil.address(1)))
            .voter(w(5), tokens(5))
            .voter_with(Voter::undelegated(w(6), tokens(5))),
    )
    .await;
    let dir = tempfile::tempdir().unwrap();
    let opts = GovflowOpts {
        rpc_url: anvil.rpc_url(),
        governor: hexa(cb.governor),
        confirmations: 2,
        start_block: None,
        // One token for both protected routes: schemathesis sends a single Authorization header.
        env: vec![("GOVFLOW_HTTP_ADMIN_TOKEN".into(), ADMIN_TOKEN.into()), ("GOVFLOW_HTTP_EVENTS_TOKEN".into(), ADMIN_TOKEN.into())],
    };
    let mut gf = Govflow::start(&opts, &dir.path().join("data"));

    cb.mint_achievement(anvil.address(2), 2).await;
    cb.mint_achievement(anvil.address(3), 1).await;
    let mut proposals = BTreeMap::new();

    // Executed through the timelock, voted every way, with reasons and a metadata URI.
    let (p1, _) = cb.propose_set_value(&w(1), U256::from(1), "# Fund the festival\nSet the value to 1. ipfs://bafyfestival").await;
    cb.advance_past_snapshot(p1).await;
    cb.cast_vote_with_reason(&w(1), p1, vote::FOR, "culture matters").await;
    cb.cast_vote(&w(2), p1, vote::AGAINST).await;
    cb.cast_vote_with_reason(&w(3), p1, vote::ABSTAIN, "conflict of interest").await;
    cb.cast_vote(&w(5), p1, vote::FOR).await;
    cb.delegate(&w(4), anvil.address(2)).await;
    // Canceled while pending.
    let (p2, _) = cb.propose_set_value(&w(2), U256::from(2), "Withdrawn idea").await;
    cb.cancel(&w(2), p2).await;
    cb.advance_past_deadline(p1).await;
    cb.queue(p1).await;
    cb.advance_past_eta(p1).await;
    cb.execute(p1).await;
    // Defeated by the majority; succeeded; w1 votes on three proposals in a row (a streak).
    let (p3, _) = cb.propose_set_value(&w(3), U256::from(3), "# Unpopular\nNobody wants this").await;
    let (p4, _) = cb.propose_set_value(&w(1), U256::from(4), "Popular").await;
    cb.advance_past_snapshot(p4).await;
    cb.cast_vote(&w(1), p3, vote::AGAINST).await;
    cb.cast_vote(&w(5), p3, vote::FOR).await;
    cb.cast_vote(&w(1), p4, vote::FOR).await;
    cb.advance_past_deadline(p4).await;
    // Active, then pending at the end.
    let (p5, _) = cb.propose_set_value(&w(5), U256::from(5), "Still voting").await;
    cb.advance_past_snapshot(p5).await;
    cb.cast_vote(&w(1), p5, vote::FOR).await;
    let (p6, _) = cb.propose_set_value(&w(3), U256::from(6), "Not started").await;
    for (label, id) in [("executed", p1), ("canceled", p2), ("defeated", p3), ("succeeded", p4), ("active", p5), ("pending", p6)] {
        proposals.insert(label, id);
    }
    let head = anvil.block_number().await;
    gf.wait_indexed(head, WAIT).await;
    for (label, id) in &proposals {
        let p = gf.get_ok(&format!("/v1/proposals/{id}")).await;
        assert_eq!(p["status"].as_str().unwrap().to_lowercase(), *label, "the story reaches {label}: {p}");
    }
    let ready = std::time::Instant::now();
    while gf.get("/readyz").await.0 != 200 {
        assert!(ready.elapsed() < WAIT, "govflow is not ready\n{}", gf.log());
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let accounts = vec![anvil.address(1), anvil.address(2), anvil.address(4), anvil.address(6), anvil.address(9)];
    World { gf, proposals, accounts, _anvil: anvil, _dir: dir }
}

/// One HTTP answer.
struct Answer {
    status: u16,
    content_type: String,
    headers: reqwest::header::HeaderMap,
    body: Vec<u8>,
}

impl Answer {
    fn json(&self) -> Value {
        serde_json::from_slice(&self.body).unwrap_or_else(|e| panic!("not JSON ({e}): {}", String::from_utf8_lossy(&self.body)))
    }
    fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }
}

async fn call(method: &str, url: &str, headers: &[(&str, &str)]) -> Answer {
    call_with(method, url, headers, None).await
}

async fn call_with(method: &str, url: &str, headers: &[(&str, &str)], body: Option<&Value>) -> Answer {
    let client = reqwest::Client::new();
    let mut r = client.request(reqwest::Method::from_bytes(method.as_bytes()).unwrap(), url);
    if let Some(b) = body {
        r = r.json(b);
    }
    for (k, v) in headers {
        r = r.header(*k, *v);
    }
    let resp = r.send().await.unwrap_or_else(|e| panic!("{method} {url}: {e}"));
    let status = resp.status().as_u16();
    let content_type = resp.headers().get("content-type").and_then(|v| v.to_str().ok()).unwrap_or("").to_string();
    let headers = resp.headers().clone();
    let body = resp.bytes().await.unwrap().to_vec();
    Answer { status, content_type, headers, body }
}

async fn document(gf: &Govflow) -> Value {
    let a = call("GET", &format!("{}/v1/openapi.json", gf.base), &[]).await;
    assert_eq!(a.status, 200, "{}", a.text());
    assert_eq!(a.content_type, "application/json");
    a.json()
}

/// The operations of the document: (method, path template, operation).
fn operations(doc: &Value) -> Vec<(String, String, Value)> {
    let mut out = Vec::new();
    for (path, item) in doc["paths"].as_object().unwrap() {
        for (method, op) in item.as_object().unwrap() {
            out.push((method.to_uppercase(), path.clone(), op.clone()));
        }
    }
    out
}

/// A response object of an operation, `$ref`s to `components/responses` followed.
fn response<'a>(doc: &'a Value, op: &'a Value, status: u16) -> Option<&'a Value> {
    let r = op["responses"].get(status.to_string())?;
    match r.get("$ref").and_then(Value::as_str) {
        Some(target) => doc.pointer(target.trim_start_matches('#')),
        None => Some(r),
    }
}

/// The media type a content type matches among `content`'s keys (parameters compared too).
fn media<'a>(content: &'a Value, content_type: &str) -> Option<&'a Value> {
    let norm = |s: &str| s.replace(' ', "").to_ascii_lowercase();
    content.as_object()?.iter().find(|(k, _)| norm(k) == norm(content_type)).map(|(_, v)| v)
}

/// A validator of `schema`, whose `$ref`s point into `doc`'s components.
fn validator(doc: &Value, schema: &Value) -> jsonschema::Validator {
    let root = json!({ "allOf": [schema], "components": doc["components"] });
    jsonschema::options()
        .with_draft(jsonschema::Draft::Draft202012)
        .should_validate_formats(true)
        .build(&root)
        .unwrap_or_else(|e| panic!("invalid schema {schema}: {e}"))
}

/// The document with every closed object made strict: all its properties required. Answers
/// without `fields` must have exactly the documented members.
fn strict(doc: &Value) -> Value {
    fn walk(v: &mut Value) {
        match v {
            Value::Object(o) => {
                if o.get("additionalProperties") == Some(&Value::Bool(false)) {
                    if let Some(Value::Object(props)) = o.get("properties") {
                        let keys: Vec<Value> = props.keys().map(|k| Value::String(k.clone())).collect();
                        o.insert("required".into(), Value::Array(keys));
                    }
                }
                o.values_mut().for_each(walk);
            }
            Value::Array(a) => a.iter_mut().for_each(walk),
            _ => {}
        }
    }
    let mut d = doc.clone();
    walk(&mut d);
    d
}

/// Checks an answer against its operation: a documented status and content type, and a body
/// valid against the documented schema (and the strict one when `exact`).
fn check(doc: &Value, strict_doc: &Value, method: &str, template: &str, url: &str, a: &Answer, exact: bool) {
    let op = &doc["paths"][template][method.to_lowercase()];
    let what = format!("{method} {url} -> {}", a.status);
    let r = response(doc, op, a.status).unwrap_or_else(|| panic!("{what}: status not documented: {}", a.text()));
    for (name, h) in r["headers"].as_object().into_iter().flatten() {
        if h["required"] == true {
            assert!(a.headers.contains_key(name.as_str()), "{what}: no {name} header");
        }
    }
    let Some(content) = r.get("content") else {
        assert!(a.body.is_empty(), "{what}: no content documented, got {}", a.text());
        return;
    };
    let m = media(content, &a.content_type).unwrap_or_else(|| panic!("{what}: content type {:?} not documented", a.content_type));
    if !(a.content_type.contains("json")) {
        return;
    }
    let schema = m.get("schema").unwrap_or_else(|| panic!("{what}: no schema"));
    let body = a.json();
    let errors: Vec<String> = validator(doc, schema).iter_errors(&body).map(|e| format!("{e} at {}", e.instance_path)).collect();
    assert!(errors.is_empty(), "{what}: the answer breaks its schema:\n{}\n{body}", errors.join("\n"));
    if exact {
        let strict_schema = response(strict_doc, &strict_doc["paths"][template][method.to_lowercase()], a.status).unwrap()["content"]
            [m_key(content, &a.content_type)]["schema"]
            .clone();
        let errors: Vec<String> = validator(strict_doc, &strict_schema).iter_errors(&body).map(|e| format!("{e} at {}", e.instance_path)).collect();
        assert!(errors.is_empty(), "{what}: the answer lacks documented members:\n{}\n{body}", errors.join("\n"));
    }
}

fn m_key(content: &Value, content_type: &str) -> String {
    let norm = |s: &str| s.replace(' ', "").to_ascii_lowercase();
    content.as_object().unwrap().keys().find(|k| norm(k) == norm(content_type)).unwrap().clone()
}

fn parameters(op: &Value) -> Vec<Value> {
    op["parameters"].as_array().cloned().unwrap_or_default()
}

fn enum_values(p: &Value) -> Vec<String> {
    let s = &p["schema"];
    let e = s.get("enum").or_else(|| s["items"].get("enum"));
    e.and_then(Value::as_array).map(|a| a.iter().filter_map(|v| v.as_str().map(str::to_string)).collect()).unwrap_or_default()
}

/// Fills a template's path parameters.
fn fill(template: &str, proposal: &U256, account: &Address, asset: &str) -> String {
    template.replace("{proposalId}", &proposal.to_string()).replace("{address}", &hexa(*account)).replace("{asset}", asset)
}

/// Real values for each query parameter of the API.
fn query_values(name: &str, p: &Value, world: &World, status: &Value) -> Vec<String> {
    let indexed = status["indexedBlock"].as_u64().unwrap();
    match name {
        "status" => vec!["Executed,Active".into(), "pending".into()],
        "proposer" => vec![hexa(world.accounts[0])],
        "createdFrom" => vec!["0".into(), "2020-01-01T00:00:00Z".into()],
        "createdTo" => vec![u64::MAX.to_string(), "2100-01-01T00:00:00+00:00".into()],
        "endFrom" => vec!["0".into()],
        "endTo" => vec![indexed.to_string()],
        "limit" => vec!["1".into(), p["schema"]["maximum"].to_string()],
        "block" => vec!["1".into(), indexed.to_string()],
        "proposalId" => vec![world.proposals["executed"].to_string(), format!("{:#x}", world.proposals["active"])],
        "after" => vec!["0".into(), "1".into()],
        "account" => vec![format!("{},{}", hexa(world.accounts[0]), hexa(world.accounts[1]))],
        "cursor" => vec![],
        _ => {
            let e = enum_values(p);
            assert!(!e.is_empty(), "no test value for parameter {name}");
            e
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_route_is_documented_and_answers() {
    let world = world().await;
    let gf = &world.gf;
    let doc = document(gf).await;
    let strict_doc = strict(&doc);
    assert!(doc["openapi"].as_str().unwrap().starts_with("3.1."), "{}", doc["openapi"]);
    assert_eq!(doc["info"]["version"], env!("CARGO_PKG_VERSION"));
    assert_eq!(doc["servers"], json!([{ "url": "/" }]));
    assert!(doc["info"]["description"].as_str().unwrap().contains("additive"), "the versioning note");

    let documented: BTreeSet<(String, String)> = operations(&doc).into_iter().map(|(m, p, _)| (m, p)).collect();
    for govflow::http::Route { method, path: template, .. } in govflow::http::ROUTES {
        assert!(documented.contains(&(method.to_string(), template.to_string())), "{method} {template} is not in the document");
    }

    // Every documented operation answers, with real parameters.
    let executed = world.proposals["executed"];
    for (method, template, op) in operations(&doc) {
        let url = format!("{}{}", gf.base, fill(&template, &executed, &world.accounts[0], "swagger-ui.css"));
        if template == "/v1/ws" {
            let ws = url.replacen("http://", "ws://", 1);
            let (_socket, resp) = tokio_tungstenite::connect_async(&ws).await.unwrap_or_else(|e| panic!("websocket {ws}: {e}"));
            assert_eq!(resp.status().as_u16(), 101);
            assert!(response(&doc, &op, 101).is_some());
            continue;
        }
        let bearer = format!("Bearer {ADMIN_TOKEN}");
        let a = if (method.as_str(), template.as_str()) == ("POST", "/v1/events/governance") {
            let event = json!({
                "id": "openapi-1",
                "kind": "forum.post_created",
                "account": hexa(world.accounts[0]),
                "proposalId": executed.to_string(),
                "source": "forum",
                "occurredAt": "2026-01-31T12:00:00+01:00",
                "data": { "postId": 4711 }
            });
            call_with("POST", &url, &[("authorization", &bearer)], Some(&event)).await
        } else if method == "POST" {
            call("POST", &format!("{url}?scope=all"), &[("authorization", &bearer)]).await
        } else {
            call(&method, &url, &[]).await
        };
        assert!((200..300).contains(&a.status), "{method} {url} -> {}: {}", a.status, a.text());
        check(&doc, &strict_doc, &method, &template, &url, &a, true);
    }

    // The admin route and the events route need their token.
    let admin = format!("{}/v1/admin/cache/invalidate?scope=stats", gf.base);
    let events = format!("{}/v1/events/governance", gf.base);
    for (headers, status) in [(vec![], 401), (vec![("authorization", "Bearer nope")], 403)] {
        let a = call("POST", &admin, &headers).await;
        assert_eq!(a.status, status, "{}", a.text());
        check(&doc, &strict_doc, "POST", "/v1/admin/cache/invalidate", &admin, &a, false);
        let a = call_with("POST", &events, &headers, Some(&json!({"kind": "a.b", "account": hexa(world.accounts[0]), "source": "s"}))).await;
        assert_eq!(a.status, status, "{}", a.text());
        check(&doc, &strict_doc, "POST", "/v1/events/governance", &events, &a, false);
    }
    // Invalid events: every documented error answer matches its schema.
    let bearer = format!("Bearer {ADMIN_TOKEN}");
    for (body, status) in [
        (json!({"kind": "Forum", "account": "0x12", "source": ""}), 422),
        (json!({"kind": "a.b", "account": hexa(world.accounts[0]), "source": "s", "extra": 1}), 400),
        (json!([1, 2]), 400),
    ] {
        let a = call_with("POST", &events, &[("authorization", &bearer)], Some(&body)).await;
        assert_eq!(a.status, status, "{body}: {}", a.text());
        assert_eq!(a.content_type, "application/problem+json");
        check(&doc, &strict_doc, "POST", "/v1/events/governance", &events, &a, false);
    }

    // A method a route does not support: 405 problem+json.
    for (method, path) in [("POST", "/v1/proposals"), ("DELETE", "/v1/status"), ("GET", "/v1/admin/cache/invalidate")] {
        let a = call(method, &format!("{}{path}", gf.base), &[]).await;
        assert_eq!(a.status, 405, "{method} {path}: {}", a.text());
        assert_eq!(a.content_type, "application/problem+json");
        let schema = &doc["components"]["responses"]["MethodNotAllowed"]["content"]["application/problem+json"]["schema"];
        let body = a.json();
        assert!(validator(&doc, schema).is_valid(&body), "{body}");
        assert_eq!(body["type"], "tag:govflow,2026:problem/method-not-allowed");
    }

    // The explorer: served by govflow, its page and files from the binary, pointing at the document.
    let page = call("GET", &format!("{}/v1/docs", gf.base), &[]).await;
    assert_eq!(page.status, 200);
    assert!(page.content_type.starts_with("text/html"), "{}", page.content_type);
    let html = page.text();
    assert!(html.contains("<base href=\"/v1/docs/\">"), "{html}");
    for link in html.split(['"', '\'']).filter(|s| s.starts_with("./") || s.ends_with(".css") || s.ends_with(".js") || s.ends_with(".png")) {
        assert!(!link.contains("://"), "the explorer loads {link} from elsewhere");
        let name = link.trim_start_matches("./");
        let url = format!("{}/v1/docs/{name}", gf.base);
        let a = call("GET", &url, &[]).await;
        assert_eq!(a.status, 200, "{url}: {}", a.text());
        check(&doc, &strict_doc, "GET", "/v1/docs/{asset}", &url, &a, false);
    }
    let init = call("GET", &format!("{}/v1/docs/swagger-initializer.js", gf.base), &[]).await.text();
    assert!(init.contains("\"/v1/openapi.json\""), "{init}");
    assert!(init.contains("\"validatorUrl\": \"none\""), "no online validator: {init}");
    assert!(!init.contains("https://"), "{init}");
    for name in ["nope.js", "swagger-ui.js.map", "..%2FCargo.toml"] {
        let missing = format!("{}/v1/docs/{name}", gf.base);
        let a = call("GET", &missing, &[]).await;
        assert_eq!(a.status, 404, "{missing}: {}", a.text());
        check(&doc, &strict_doc, "GET", "/v1/docs/{asset}", &missing, &a, false);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn real_answers_match_their_schemas() {
    let world = world().await;
    let gf = &world.gf;
    let doc = document(gf).await;
    let strict_doc = strict(&doc);
    // The validation bites: wrong types, unknown members, formats and patterns are errors.
    let page = json!({ "$ref": "#/components/schemas/ProposalPage" });
    let v = validator(&doc, &page);
    assert!(v.is_valid(&json!({ "items": [{ "proposalId": "12", "createdAt": "2026-01-31T12:00:00Z" }], "nextCursor": null })));
    for wrong in [
        json!({ "items": [{ "proposalId": 12 }], "nextCursor": null }),
        json!({ "items": [{ "proposalId": "012" }], "nextCursor": null }),
        json!({ "items": [{ "createdAt": "yesterday" }], "nextCursor": null }),
        json!({ "items": [{ "proposer": "0xABCDEFabcdefABCDEFabcdefABCDEFabcdefABCD" }], "nextCursor": null }),
        json!({ "items": [{ "surprise": true }], "nextCursor": null }),
        json!({ "items": [] }),
    ] {
        assert!(!v.is_valid(&wrong), "{wrong} should break ProposalPage");
    }
    let status = gf.get_ok("/v1/status").await;
    let unknown_proposal = U256::from(987_654_321u64);
    let mut checked = 0;

    for (method, template, op) in operations(&doc) {
        if method != "GET" || template == "/v1/ws" {
            continue;
        }
        let params = parameters(&op);
        let has = |name: &str| params.iter().any(|p| p["name"] == name && p["in"] == "query");
        // Every path value worth asking about.
        let mut paths = Vec::new();
        if template.contains("{proposalId}") {
            for id in world.proposals.values() {
                paths.push(fill(&template, id, &world.accounts[0], ""));
            }
            paths.push(template.replace("{proposalId}", &format!("{:#x}", world.proposals["executed"])));
        } else if template.contains("{address}") {
            for a in &world.accounts {
                paths.push(fill(&template, &U256::zero(), a, ""));
            }
            paths.push(template.replace("{address}", &hexa(world.accounts[0]).to_uppercase().replacen("0X", "0x", 1)));
        } else if template.contains("{asset}") {
            let p = params.iter().find(|p| p["name"] == "asset").unwrap();
            for asset in enum_values(p) {
                paths.push(template.replace("{asset}", &asset));
            }
        } else {
            paths.push(template.clone());
        }
        for path in &paths {
            // Without parameters: exactly the documented members.
            let url = format!("{}{path}", gf.base);
            let a = call("GET", &url, &[]).await;
            assert_eq!(a.status, 200, "GET {url}: {}", a.text());
            check(&doc, &strict_doc, "GET", &template, &url, &a, true);
            checked += 1;
            // Each query parameter, with each real or enumerated value.
            for p in params.iter().filter(|p| p["in"] == "query" && p["name"] != "fields") {
                let name = p["name"].as_str().unwrap();
                for v in query_values(name, p, &world, &status) {
                    let url = format!("{}{path}?{name}={}", gf.base, urlencode(&v));
                    let a = call("GET", &url, &[]).await;
                    assert_eq!(a.status, 200, "GET {url}: {}", a.text());
                    check(&doc, &strict_doc, "GET", &template, &url, &a, true);
                    checked += 1;
                }
            }
            // Pages: follow `nextCursor` with every sort and order.
            if has("cursor") {
                let sorts = params.iter().find(|p| p["name"] == "sort").map(enum_values).unwrap_or_else(|| vec![String::new()]);
                let orders: &[&str] = if has("order") { &["asc", "desc"] } else { &[""] };
                for sort in sorts {
                    for order in orders {
                        let mut q = "limit=2".to_string();
                        if !order.is_empty() {
                            q.push_str(&format!("&order={order}"));
                        }
                        if !sort.is_empty() {
                            q.push_str(&format!("&sort={sort}"));
                        }
                        let mut url = format!("{}{path}?{q}", gf.base);
                        for _ in 0..3 {
                            let a = call("GET", &url, &[]).await;
                            assert_eq!(a.status, 200, "GET {url}: {}", a.text());
                            check(&doc, &strict_doc, "GET", &template, &url, &a, true);
                            checked += 1;
                            match a.json()["nextCursor"].as_str() {
                                Some(c) => url = format!("{}{path}?{q}&cursor={c}", gf.base),
                                None => break,
                            }
                        }
                    }
                }
            }
            // `fields`: each enumerated name alone, all of them, and no other member.
            if let Some(p) = params.iter().find(|p| p["name"] == "fields") {
                let names = enum_values(p);
                for name in &names {
                    let url = format!("{}{path}?fields={name}", gf.base);
                    let a = call("GET", &url, &[]).await;
                    assert_eq!(a.status, 200, "GET {url}: {}", a.text());
                    check(&doc, &strict_doc, "GET", &template, &url, &a, false);
                    checked += 1;
                }
                let url = format!("{}{path}?fields={}", gf.base, names.join(","));
                let a = call("GET", &url, &[]).await;
                assert_eq!(a.status, 200, "GET {url}: {}", a.text());
                check(&doc, &strict_doc, "GET", &template, &url, &a, false);
                for member in members_of(&doc, &op) {
                    if !names.contains(&member) {
                        let url = format!("{}{path}?fields={member}", gf.base);
                        let a = call("GET", &url, &[]).await;
                        assert_eq!(a.status, 400, "{member} is a member but not an accepted field: GET {url}: {}", a.text());
                    }
                }
            }
        }
        // Errors: problem+json with a documented status.
        let path = &paths[0];
        if response(&doc, &op, 400).is_some() {
            for q in ["nope=1", "limit=0", "fields=nope", "block=x", "after=-1", "cursor=*"] {
                let name = q.split('=').next().unwrap();
                // The probes and metrics ignore unknown parameters; the /v1 routes refuse them.
                if (name == "nope" && !template.starts_with("/v1/")) || (name != "nope" && !has(name)) {
                    continue;
                }
                let url = format!("{}{path}?{q}", gf.base);
                let a = call("GET", &url, &[]).await;
                assert_eq!(a.status, 400, "GET {url}: {}", a.text());
                assert_eq!(a.content_type, "application/problem+json");
                check(&doc, &strict_doc, "GET", &template, &url, &a, false);
                assert_eq!(a.json()["parameter"], name, "{}", a.text());
            }
        }
        if template.contains("{proposalId}") {
            for bad in ["nope", "0xzz", "-1"] {
                let url = format!("{}{}", gf.base, template.replace("{proposalId}", bad));
                let a = call("GET", &url, &[]).await;
                assert_eq!(a.status, 400, "GET {url}: {}", a.text());
                check(&doc, &strict_doc, "GET", &template, &url, &a, false);
            }
            let url = format!("{}{}", gf.base, fill(&template, &unknown_proposal, &world.accounts[0], ""));
            let a = call("GET", &url, &[]).await;
            assert_eq!(a.status, 404, "GET {url}: {}", a.text());
            check(&doc, &strict_doc, "GET", &template, &url, &a, false);
        }
        if template.contains("{address}") {
            let url = format!("{}{}", gf.base, template.replace("{address}", "0x1234"));
            let a = call("GET", &url, &[]).await;
            assert_eq!(a.status, 400, "GET {url}: {}", a.text());
            check(&doc, &strict_doc, "GET", &template, &url, &a, false);
        }
    }
    // Voting power at an unknown proposal's snapshot; both `block` and `proposalId`.
    let a0 = hexa(world.accounts[0]);
    for (q, s) in [(format!("proposalId={unknown_proposal}"), 404), (format!("block=1&proposalId={}", world.proposals["executed"]), 400)] {
        let url = format!("{}/v1/users/{a0}/voting-power?{q}", gf.base);
        let a = call("GET", &url, &[]).await;
        assert_eq!(a.status, s, "GET {url}: {}", a.text());
        check(&doc, &strict_doc, "GET", "/v1/users/{address}/voting-power", &url, &a, false);
    }
    assert!(checked > 300, "only {checked} answers checked");
    println!("{checked} answers validated");
}

/// The members an operation's 200 answer may have: of its object, or of each element of
/// `items` for a list.
fn members_of(doc: &Value, op: &Value) -> Vec<String> {
    let resolve = |s: &Value| -> Value {
        match s.get("$ref").and_then(Value::as_str) {
            Some(t) => doc.pointer(t.trim_start_matches('#')).cloned().unwrap_or(Value::Null),
            None => s.clone(),
        }
    };
    let schema = resolve(&response(doc, op, 200).unwrap()["content"]["application/json"]["schema"]);
    let schema = match schema["properties"].get("items") {
        Some(items) => resolve(&items["items"]),
        None => schema,
    };
    schema["properties"].as_object().map(|o| o.keys().cloned().collect()).unwrap_or_default()
}

fn urlencode(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' | b',' | b':' => (b as char).to_string(),
            _ => format!("%{b:02X}"),
        })
        .collect()
}

fn schemathesis() -> PathBuf {
    let bin = Path::new(env!("CARGO_MANIFEST_DIR")).join(".venv/schemathesis/bin/schemathesis");
    assert!(
        bin.exists(),
        "schemathesis is not installed at {}: run scripts/setup.sh (it installs schemathesis {SCHEMATHESIS_VERSION} from PyPI into .venv/schemathesis)",
        bin.display()
    );
    bin
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn schemathesis_finds_no_server_error_and_no_schema_break() {
    let bin = schemathesis();
    let version = std::process::Command::new(&bin).arg("--version").output().expect("run schemathesis --version");
    let version = String::from_utf8_lossy(&version.stdout).to_string();
    assert!(version.contains(SCHEMATHESIS_VERSION), "schemathesis {SCHEMATHESIS_VERSION} expected (scripts/setup.sh), found {version}");
    let world = world().await;
    let gf = &world.gf;
    let doc = document(gf).await;
    let operations = operations(&doc).len();
    let work = tempfile::tempdir().unwrap();
    let args: Vec<String> = vec![
        "run".into(),
        format!("{}/v1/openapi.json", gf.base),
        "--url".into(),
        gf.base.clone(),
        "--checks".into(),
        [
            "not_a_server_error",
            "status_code_conformance",
            "content_type_conformance",
            "response_headers_conformance",
            "response_schema_conformance",
            "negative_data_rejection",
            "missing_required_header",
            "ignored_auth",
            "unsupported_method",
            "allow_header_conformance",
        ]
        .join(","),
        "--max-examples".into(),
        "40".into(),
        "--seed".into(),
        "20260131".into(),
        // One worker: Python 3.11's `ast.parse` is not thread-safe (CPython gh-106905: "AST
        // constructor recursion depth mismatch"), and hypothesis parses lambdas while a second
        // worker generates; on two cores a second worker gains little anyway.
        "--workers".into(),
        "1".into(),
        "--request-timeout".into(),
        "10".into(),
        "--generation-database".into(),
        "none".into(),
        "--header".into(),
        format!("Authorization: Bearer {ADMIN_TOKEN}"),
        "--no-color".into(),
    ];
    let child = tokio::process::Command::new(&bin)
        .args(&args)
        .current_dir(work.path())
        .env("SCHEMATHESIS_TELEMETRY", "false")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("start schemathesis");
    let out = match tokio::time::timeout(SCHEMATHESIS_TIMEOUT, child.wait_with_output()).await {
        Ok(out) => out.expect("schemathesis"),
        Err(_) => panic!("schemathesis did not finish within {SCHEMATHESIS_TIMEOUT:?}\n{}", gf.log()),
    };
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    let command = format!("schemathesis {}", args.join(" "));
    assert!(out.status.success(), "{command}\nexited with {}:\n{stdout}\n{stderr}\n--- govflow log (tail) ---\n{}", out.status, tail(&gf.log(), 40));
    // Every operation but the document itself, which schemathesis leaves out (it is its input).
    assert!(stdout.contains(&format!("Tested: {}", operations - 1)), "not every operation was tested:\n{stdout}");
    println!("{command}\n{stdout}");
}

fn tail(s: &str, n: usize) -> String {
    let lines: Vec<&str> = s.lines().collect();
    lines[lines.len().saturating_sub(n)..].join("\n")
}
