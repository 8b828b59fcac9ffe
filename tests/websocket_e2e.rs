//! End-to-end: websocket clients of the real `govflow` binary follow a real anvil governance
//! history live (votes, power changes, every state up to execution, a reorg), with a client
//! that disconnects and resumes with `since`; limits, errors, a slow client and a silent one.

mod common;
mod support;

use std::collections::{BTreeMap, BTreeSet};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::{Govflow, GovflowOpts};
use futures::{SinkExt, StreamExt};
use serde_json::{json, Value};
use support::*;
use tokio_tungstenite::tungstenite::Message as WsMsg;

const WAIT: Duration = Duration::from_secs(120);

fn hexa(a: Address) -> String {
    format!("0x{}", hex::encode(a.as_bytes()))
}

fn ws_url(gf: &Govflow) -> String {
    format!("{}/v1/ws", gf.base.replace("http://", "ws://"))
}

async fn deploy(anvil: &Anvil) -> Dao {
    let opts = DaoOptions::with_clock(ClockMode::BlockNumber).timelock_min_delay(60).quorum_numerator(10).voting_delay(2).voting_period(40);
    Dao::deploy(
        anvil,
        opts.voter(anvil.wallet(1), tokens(40))
            .voter(anvil.wallet(2), tokens(25))
            .voter(anvil.wallet(3), tokens(15))
            .voter_with(Voter::delegating_to(anvil.wallet(4), tokens(10), anvil.address(1)))
            .voter(anvil.wallet(5), tokens(5))
            .voter_with(Voter::undelegated(anvil.wallet(6), tokens(3)))
            .voter(anvil.wallet(7), tokens(2)),
    )
    .await
}

async fn sync(gf: &mut Govflow, anvil: &Anvil) {
    let head = anvil.block_number().await;
    gf.wait_indexed(head, WAIT).await;
}

/// A websocket client reading continuously in the background: every message but heartbeats
/// goes to its log.
struct Live {
    name: &'static str,
    cmd: tokio::sync::mpsc::UnboundedSender<WsMsg>,
    log: Arc<Mutex<Vec<Value>>>,
    heartbeats: Arc<AtomicUsize>,
    pings: Arc<AtomicUsize>,
    ended: Arc<AtomicBool>,
    task: tokio::task::JoinHandle<()>,
    next_id: AtomicUsize,
}

impl Live {
    async fn connect(gf: &Govflow, name: &'static str) -> Live {
        let (mut ws, _) = tokio_tungstenite::connect_async(ws_url(gf)).await.unwrap_or_else(|e| panic!("{name}: connect: {e}"));
        let (cmd, mut rx) = tokio::sync::mpsc::unbounded_channel::<WsMsg>();
        let log = Arc::new(Mutex::new(Vec::new()));
        let heartbeats = Arc::new(AtomicUsize::new(0));
        let pings = Arc::new(AtomicUsize::new(0));
        let ended = Arc::new(AtomicBool::new(false));
        let (l, h, p, e) = (log.clone(), heartbeats.clone(), pings.clone(), ended.clone());
        let task = tokio::spawn(async move {
            loop {
                tokio::select! {
                    m = ws.next() => match m {
                        Some(Ok(WsMsg::Text(t))) => {
                            let v: Value = serde_json::from_str(&t).unwrap_or_else(|e| panic!("{name}: not JSON ({e}): {t}"));
                            if v["type"] == "heartbeat" {
                                h.fetch_add(1, Ordering::Relaxed);
                            } else {
                                l.lock().unwrap().push(v);
                            }
                        }
                        Some(Ok(WsMsg::Ping(_))) => {
                            p.fetch_add(1, Ordering::Relaxed);
                        }
                        Some(Ok(WsMsg::Close(f))) => {
                            l.lock().unwrap().push(json!({ "ended": format!("close frame {f:?}") }));
                            e.store(true, Ordering::Relaxed);
                            break;
                        }
                        Some(Err(err)) => {
                            l.lock().unwrap().push(json!({ "ended": err.to_string() }));
                            e.store(true, Ordering::Relaxed);
                            break;
                        }
                        None => {
                            e.store(true, Ordering::Relaxed);
                            break;
                        }
                        Some(Ok(_)) => {}
                    },
                    c = rx.recv() => match c {
                        Some(m) => {
                            if ws.send(m).await.is_err() {
                                e.store(true, Ordering::Relaxed);
                                break;
                            }
                        }
                        None => break,
                    },
                }
            }
        });
        Live { name, cmd, log, heartbeats, pings, ended, task, next_id: AtomicUsize::new(1) }
    }

    fn send(&self, v: Value) {
        self.cmd.send(WsMsg::Text(v.to_string())).unwrap();
    }

    fn log(&self) -> Vec<Value> {
        self.log.lock().unwrap().clone()
    }

    /// Sends a command with a fresh `id` and waits for the answer carrying it.
    async fn request(&self, mut cmd: Value) -> Value {
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        cmd["id"] = json!(format!("{}-{id}", self.name));
        self.send(cmd.clone());
        let want = cmd["id"].clone();
        self.wait_for(&format!("answer to {cmd}"), |log| log.iter().any(|m| m["id"] == want)).await;
        self.log().into_iter().find(|m| m["id"] == want).unwrap()
    }

    async fn subscribe(&self, topic: &str, since: Option<u64>) -> Value {
        let mut cmd = json!({ "op": "subscribe", "topic": topic });
        if let Some(s) = since {
            cmd["since"] = json!(s);
        }
        let ack = self.request(cmd).await;
        assert_eq!(ack["type"], "subscribed", "{}: {ack}", self.name);
        ack
    }

    async fn wait_for(&self, what: &str, pred: impl Fn(&[Value]) -> bool) {
        let t = Instant::now();
        loop {
            if pred(&self.log.lock().unwrap()) {
                return;
            }
            assert!(!self.ended.load(Ordering::Relaxed), "{}: connection ended while waiting for {what}: {:#?}", self.name, self.log());
            assert!(t.elapsed() < WAIT, "{}: no {what} after {WAIT:?}: {:#?}", self.name, self.log());
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// The topic's messages (those with a `seq`, acknowledgements aside).
    fn topic(&self, topic: &str) -> Vec<Value> {
        topic_msgs(&self.log(), topic)
    }
}

impl Drop for Live {
    fn drop(&mut self) {
        self.task.abort();
    }
}

fn topic_msgs(log: &[Value], topic: &str) -> Vec<Value> {
    log.iter().filter(|m| m["topic"] == topic && m["seq"].is_u64() && m["type"] != "subscribed").cloned().collect()
}

fn seq(m: &Value) -> u64 {
    m["seq"].as_u64().unwrap()
}

/// Each message of the topic follows the previous one by exactly one, from the subscription on.
fn assert_contiguous(who: &str, ack: &Value, msgs: &[Value]) {
    for (expected, m) in (seq(ack) + 1..).zip(msgs) {
        assert_eq!(seq(m), expected, "{who}: {} out of sequence: {m}", ack["topic"]);
    }
}

fn of_type<'a>(msgs: &'a [Value], t: &str) -> Vec<&'a Value> {
    msgs.iter().filter(|m| m["type"] == t).collect()
}

/// The block a change message is about.
fn block_of(m: &Value) -> Option<u64> {
    match m["type"].as_str()? {
        "proposal.updated" => m["data"]["updatedBlock"].as_u64(),
        "vote.cast" | "power.changed" => m["data"]["blockNumber"].as_u64(),
        _ => None,
    }
}

/// Votes a topic delivered and did not void: each vote before a rollback whose block is above
/// the rollback's `voidAbove` is void. Panics on a vote delivered twice.
fn effective_votes(who: &str, msgs: &[Value]) -> (BTreeMap<String, Value>, Vec<Value>) {
    let mut live: BTreeMap<String, Value> = BTreeMap::new();
    let mut voided = Vec::new();
    for m in msgs {
        match m["type"].as_str().unwrap() {
            "vote.cast" => {
                let id = m["data"]["id"].as_str().unwrap().to_string();
                assert!(live.insert(id, m["data"].clone()).is_none(), "{who}: vote delivered twice: {m}");
            }
            "rollback" => {
                let above = m["data"]["voidAbove"].as_u64().unwrap();
                let (gone, kept): (Vec<_>, Vec<_>) = std::mem::take(&mut live).into_iter().partition(|(_, v)| v["blockNumber"].as_u64().unwrap() > above);
                live = kept.into_iter().collect();
                voided.extend(gone.into_iter().map(|(_, v)| v));
            }
            _ => {}
        }
    }
    (live, voided)
}

fn without_provisional(mut v: Value) -> Value {
    if let Value::Object(o) = &mut v {
        o.remove("provisional");
    }
    v
}

async fn metric(gf: &Govflow, line_prefix: &str) -> Option<f64> {
    let text = reqwest::get(format!("{}/metrics", gf.base)).await.unwrap().text().await.unwrap();
    text.lines().find(|l| l.starts_with(line_prefix)).and_then(|l| l.rsplit(' ').next()).and_then(|v| v.parse().ok())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn clients_follow_the_history_live_through_a_reorg_and_a_reconnect() {
    let anvil = Anvil::start().await;
    let dao = deploy(&anvil).await;
    let w = |i| anvil.wallet(i);
    let w2 = hexa(anvil.address(2));
    let dir = tempfile::tempdir().unwrap();
    let opts = GovflowOpts {
        rpc_url: anvil.rpc_url(),
        governor: hexa(dao.governor),
        confirmations: 2,
        start_block: None,
        env: vec![("GOVFLOW_WEBSOCKET_REPLAY_PER_TOPIC".into(), "16".into()), ("GOVFLOW_WEBSOCKET_HEARTBEAT_INTERVAL_S".into(), "1".into())],
    };
    let mut gf = Govflow::start(&opts, &dir.path().join("data"));
    sync(&mut gf, &anvil).await;

    // A follows every proposal, the indexer's status and one account.
    let a = Live::connect(&gf, "a").await;
    let a_proposals = a.subscribe("proposals", None).await;
    let a_status = a.subscribe("status", None).await;
    let a_account = a.subscribe(&format!("account:{}", w2.to_uppercase().replace("0X", "0x")), None).await;
    assert_eq!(a_account["topic"], format!("account:{w2}"), "topics are normalised");

    let (p1, _) = dao.propose_set_value(&w(1), U256::from(42), "# Fund the festival\nSet the value to 42.").await;
    // B follows the proposal from right after its creation (hex id accepted).
    let b = Live::connect(&gf, "b").await;
    let b_ack = b.subscribe(&format!("proposal:0x{p1:x}"), None).await;
    let p1_topic = format!("proposal:{p1}");
    assert_eq!(b_ack["topic"], p1_topic);
    sync(&mut gf, &anvil).await;
    dao.advance_past_snapshot(p1).await;
    sync(&mut gf, &anvil).await;
    dao.cast_vote_with_reason(&w(1), p1, vote::FOR, "culture matters").await;
    sync(&mut gf, &anvil).await;

    // C follows the proposal and the account, then goes away for a while.
    let c1 = Live::connect(&gf, "c1").await;
    let c_p_ack = c1.subscribe(&p1_topic, None).await;
    let c_a_ack = c1.subscribe(&format!("account:{w2}"), None).await;
    dao.cast_vote(&w(2), p1, vote::AGAINST).await;
    sync(&mut gf, &anvil).await;
    c1.wait_for("w2's vote on both topics", |log| {
        let on = |t: &str| topic_msgs(log, t).iter().any(|m| m["type"] == "vote.cast" && m["data"]["voter"] == w2);
        on(&p1_topic) && on(&format!("account:{w2}"))
    })
    .await;
    let c1_log = c1.log();
    drop(c1);
    let c1_p = topic_msgs(&c1_log, &p1_topic);
    let c1_a = topic_msgs(&c1_log, &format!("account:{w2}"));
    assert_contiguous("c1", &c_p_ack, &c1_p);
    assert_contiguous("c1", &c_a_ack, &c1_a);
    let (last_p, last_a) = (seq(c1_p.last().unwrap()), seq(c1_a.last().unwrap()));

    // While C is away: a vote, a transfer and a delegation that change w2's power.
    dao.cast_vote_with_reason(&w(3), p1, vote::ABSTAIN, "conflict of interest").await;
    dao.transfer(&w(2), anvil.address(6), tokens(10)).await;
    dao.delegate(&w(4), anvil.address(2)).await;
    sync(&mut gf, &anvil).await;
    a.wait_for("the delegation's power change", |log| {
        topic_msgs(log, &format!("account:{w2}")).iter().any(|m| m["type"] == "power.changed" && m["data"]["delegatedWeight"] == tokens(10).to_string())
    })
    .await;
    // C comes back with its last sequence numbers: it gets exactly what it missed, then live.
    let c2 = Live::connect(&gf, "c2").await;
    let c2_p_ack = c2.subscribe(&p1_topic, Some(last_p)).await;
    let c2_a_ack = c2.subscribe(&format!("account:{w2}"), Some(last_a)).await;
    assert_eq!(c2_p_ack["data"]["resync"], false, "{c2_p_ack}");
    assert!(c2_p_ack["data"]["replayed"].as_u64().unwrap() >= 2, "the abstain vote and the new tally were missed: {c2_p_ack}");
    assert!(c2_a_ack["data"]["replayed"].as_u64().unwrap() >= 2, "the transfer and the delegation were missed: {c2_a_ack}");

    // A reorg while the proposal is active: a vote, a transfer and a proposal that vanish.
    let fork_point = anvil.block_number().await;
    let snap = anvil.snapshot().await;
    dao.cast_vote(&w(5), p1, vote::FOR).await;
    dao.transfer(&w(2), anvil.address(7), tokens(1)).await;
    let (gone, _) = dao.propose_set_value(&w(2), U256::from(666), "Orphaned proposal").await;
    sync(&mut gf, &anvil).await;
    let gone_id = gone.to_string();
    a.wait_for("the orphaned proposal", |log| topic_msgs(log, "proposals").iter().any(|m| m["data"]["proposalId"] == gone_id)).await;
    b.wait_for("the orphaned vote", |log| topic_msgs(log, &p1_topic).iter().any(|m| m["type"] == "vote.cast" && m["data"]["voter"] == hexa(anvil.address(5))))
        .await;
    assert!(anvil.revert(snap).await);
    dao.cast_vote(&w(7), p1, vote::FOR).await;
    anvil.mine(5).await;
    sync(&mut gf, &anvil).await;
    for (c, t) in [(&a, "proposals"), (&a, "status"), (&b, p1_topic.as_str()), (&c2, p1_topic.as_str())] {
        c.wait_for(&format!("the rollback on {t}"), |log| topic_msgs(log, t).iter().any(|m| m["type"] == "rollback")).await;
    }

    // The rest of the lifecycle.
    dao.advance_past_deadline(p1).await;
    sync(&mut gf, &anvil).await;
    dao.queue(p1).await;
    sync(&mut gf, &anvil).await;
    dao.advance_past_eta(p1).await;
    dao.execute(p1).await;
    anvil.mine(3).await;
    sync(&mut gf, &anvil).await;
    let head = anvil.block_number().await;
    a.wait_for("the status at the head", |log| {
        topic_msgs(log, "status").iter().any(|m| m["type"] == "status" && m["data"]["indexedBlock"].as_u64() >= Some(head))
    })
    .await;
    for c in [&b, &c2] {
        c.wait_for("the execution", |log| {
            topic_msgs(log, &p1_topic).iter().rev().find(|m| m["type"] == "proposal.updated").is_some_and(|m| m["data"]["status"] == "Executed")
        })
        .await;
    }
    let c2_len = b.topic(&p1_topic).last().map(seq).unwrap();
    c2.wait_for("every message b got", |log| topic_msgs(log, &p1_topic).last().map(seq) == Some(c2_len)).await;

    // Every topic of every client: contiguous sequence numbers, nothing lost or repeated.
    let (a_log, b_log, c2_log) = (a.log(), b.log(), c2.log());
    let a_p = topic_msgs(&a_log, "proposals");
    let a_s = topic_msgs(&a_log, "status");
    let a_a = topic_msgs(&a_log, &format!("account:{w2}"));
    let b_p = topic_msgs(&b_log, &p1_topic);
    assert_contiguous("a", &a_proposals, &a_p);
    assert_contiguous("a", &a_status, &a_s);
    assert_contiguous("a", &a_account, &a_a);
    assert_contiguous("b", &b_ack, &b_p);
    for log in [&a_log, &b_log, &c2_log] {
        assert!(!log.iter().any(|m| m["type"] == "resync" || m["type"] == "error"), "no resync, no error: {log:#?}");
    }

    // The reconnecting client got exactly what B got, once, in order: before it left, the
    // replay, and live messages after it.
    let c2_p = topic_msgs(&c2_log, &p1_topic);
    let c2_a = topic_msgs(&c2_log, &format!("account:{w2}"));
    let c_all_p: Vec<Value> = c1_p.iter().chain(c2_p.iter()).cloned().collect();
    let b_from_c: Vec<Value> = b_p.iter().filter(|m| seq(m) > seq(&c_p_ack)).cloned().collect();
    assert_eq!(c_all_p, b_from_c, "c (before and after reconnecting) and b differ on {p1_topic}");
    let c_all_a: Vec<Value> = c1_a.iter().chain(c2_a.iter()).cloned().collect();
    let a_from_c: Vec<Value> = a_a.iter().filter(|m| seq(m) > seq(&c_a_ack)).cloned().collect();
    assert_eq!(c_all_a, a_from_c, "c (before and after reconnecting) and a differ on account:{w2}");
    assert_eq!(seq(&c2_p[0]), last_p + 1);
    assert_eq!(seq(&c2_a[0]), last_a + 1);

    // The rollback: pushed on every topic, from the fork point, before the canonical vote.
    for (who, msgs) in [("a proposals", &a_p), ("a status", &a_s), ("a account", &a_a), ("b", &b_p)] {
        let r = of_type(msgs, "rollback");
        assert_eq!(r.len(), 1, "{who}: one rollback: {msgs:#?}");
        assert_eq!(r[0]["data"]["ancestor"], fork_point, "{who}: {}", r[0]);
        assert!(r[0]["data"]["voidAbove"].as_u64().unwrap() <= fork_point, "{who}: {}", r[0]);
    }
    let rb = |msgs: &[Value]| msgs.iter().position(|m| m["type"] == "rollback").unwrap();
    // The orphaned proposal is withdrawn after the rollback.
    let removed: Vec<&Value> = a_p[rb(&a_p)..].iter().filter(|m| m["type"] == "proposal.removed").collect();
    assert_eq!(removed.len(), 1, "{a_p:#?}");
    assert_eq!(removed[0]["data"]["proposalId"], gone_id);
    assert_eq!(removed[0]["restored"], true);
    // The proposal's tally after the rollback no longer counts the orphaned vote.
    let first_after = b_p[rb(&b_p)..].iter().find(|m| m["type"] == "proposal.updated").unwrap();
    let before_fork = b_p[..rb(&b_p)].iter().rev().find(|m| m["type"] == "proposal.updated" && m["data"]["updatedBlock"].as_u64() <= Some(fork_point)).unwrap();
    let f = U256::from_dec_str(before_fork["data"]["forVotes"].as_str().unwrap()).unwrap();
    // Restored to the tally at the fork point, or already with the canonical vote (w7: 2).
    let for_votes = first_after["data"]["forVotes"].as_str().unwrap();
    assert!(for_votes == f.to_string() || for_votes == (f + tokens(2)).to_string(), "tally after the rollback: {first_after}");
    // The orphaned transfer is undone on the account topic: its restored state follows.
    let restored: Vec<&Value> = a_a[rb(&a_a)..].iter().filter(|m| m["type"] == "power.changed" && m["restored"] == true).collect();
    assert_eq!(restored.len(), 1, "{a_a:#?}");

    // Votes: each canonical vote exactly once, the orphaned one voided.
    let (votes, voided) = effective_votes("b", &b_p);
    let rest_votes = gf.all_pages(&format!("/v1/proposals/{p1}/votes?limit=100")).await;
    let rest_ids: BTreeSet<String> = rest_votes.iter().map(|v| v["id"].as_str().unwrap().to_string()).collect();
    assert_eq!(votes.keys().cloned().collect::<BTreeSet<_>>(), rest_ids, "b's votes are the canonical votes");
    assert_eq!(rest_ids.len(), 4, "w1, w2, w3 and w7 voted");
    assert_eq!(voided.len(), 1, "the orphaned vote was voided: {voided:?}");
    assert_eq!(voided[0]["voter"], hexa(anvil.address(5)));
    for v in &rest_votes {
        let mine = &votes[v["id"].as_str().unwrap()];
        assert_eq!(without_provisional(mine.clone()), without_provisional(v.clone()), "vote.cast data is the REST vote");
    }
    let (a_votes, _) = effective_votes("a", &a_a);
    assert_eq!(a_votes.len(), 1, "w2 voted once: {a_votes:?}");

    // State changes: the proposal went through every status in order, once each.
    let rest = gf.get_ok(&format!("/v1/proposals/{p1}")).await;
    let history: Vec<String> = rest["history"].as_array().unwrap().iter().map(|h| h["status"].as_str().unwrap().to_string()).collect();
    let mut seen: Vec<String> = Vec::new();
    for m in of_type(&b_p, "proposal.updated") {
        let s = m["data"]["status"].as_str().unwrap().to_string();
        if seen.last() != Some(&s) {
            seen.push(s);
        }
    }
    assert!(history.ends_with(&seen), "statuses seen {seen:?}, history {history:?}");
    assert!(seen.ends_with(&["Active".to_string(), "Succeeded".into(), "Queued".into(), "Executed".into()]), "{seen:?}");
    // The last state pushed is the state served.
    let listed = gf.all_pages("/v1/proposals?limit=100").await;
    let served = listed.iter().find(|p| p["proposalId"] == p1.to_string()).unwrap();
    let last = of_type(&b_p, "proposal.updated").last().unwrap()["data"].clone();
    assert_eq!(without_provisional(last.clone()), without_provisional(served.clone()));
    let last_a = of_type(&a_p, "proposal.updated").into_iter().rev().find(|m| m["data"]["proposalId"] == p1.to_string()).unwrap();
    assert_eq!(without_provisional(last_a["data"].clone()), without_provisional(served.clone()));
    // And the account's last power is the power served.
    let vp = gf.get_ok(&format!("/v1/users/{w2}/voting-power")).await;
    let last_power = of_type(&a_a, "power.changed").last().unwrap()["data"].clone();
    for k in ["totalWeight", "baseWeight", "delegatedWeight", "balance", "delegate"] {
        assert_eq!(last_power[k], vp[k], "{k}: pushed {last_power}, served {vp}");
    }

    // Provisional marks: with 2 confirmations, a change is provisional exactly when its block
    // is above the finalized block of its commit (the status message closing the commit).
    let mut provisional = 0;
    for (i, m) in a_log.iter().enumerate() {
        let Some(block) = block_of(m) else { continue };
        let closing = a_log[i..].iter().find(|x| x["type"] == "status").unwrap_or_else(|| panic!("no status after {m}"));
        let fin = closing["data"]["finalizedBlock"].as_u64().unwrap();
        assert_eq!(m["provisional"], block > fin, "{m} with finalized {fin}");
        assert_eq!(m["data"]["provisional"], m["provisional"], "{m}");
        provisional += (block > fin) as usize;
    }
    assert!(provisional > 0, "changes followed live at the head are provisional");
    let st = a_s.last().unwrap();
    assert_eq!(st["data"]["finalizedBlock"].as_u64().unwrap() + 2, st["data"]["headBlock"].as_u64().unwrap(), "{st}");
    // Status: the indexed block only moves forward, except back to the rollback point.
    let mut prev = 0;
    for m in &a_s {
        match m["type"].as_str().unwrap() {
            "status" => {
                let b = m["data"]["indexedBlock"].as_u64().unwrap();
                assert!(b >= prev, "indexed block went back without a rollback: {m}");
                prev = b;
            }
            "rollback" => prev = m["data"]["voidAbove"].as_u64().unwrap(),
            t => panic!("unexpected {t} on status"),
        }
    }

    // Too old, or not from this server: resync, then live messages. More commits than the
    // replay ring keeps (16) first.
    while a.topic("status").len() < a_s.len() + 20 {
        anvil.mine(1).await;
        tokio::time::sleep(Duration::from_millis(150)).await;
    }
    sync(&mut gf, &anvil).await;
    let head = anvil.block_number().await;
    a.wait_for("the status at the head", |log| topic_msgs(log, "status").iter().any(|m| m["data"]["indexedBlock"].as_u64() >= Some(head))).await;
    let d = Live::connect(&gf, "d").await;
    let old = seq(&a_s[0]);
    let ack = d.subscribe("status", Some(old)).await;
    assert_eq!(ack["data"]["resync"], true, "{ack}");
    let now = seq(&ack);
    assert_eq!(now, seq(a.topic("status").last().unwrap()));
    d.wait_for("the resync", |log| topic_msgs(log, "status").iter().any(|m| m["type"] == "resync")).await;
    let r = d.topic("status")[0].clone();
    assert_eq!((r["type"].as_str(), seq(&r), r["data"]["rest"].as_str()), (Some("resync"), now, Some("/v1/status")), "{r}");
    let ack = d.subscribe(&format!("account:{}", hexa(anvil.address(9))), Some(12_345)).await;
    assert_eq!(ack["data"]["resync"], true, "a sequence number this server never issued: {ack}");
    anvil.mine(1).await;
    sync(&mut gf, &anvil).await;
    d.wait_for("a live status after the resync", |log| topic_msgs(log, "status").iter().any(|m| m["type"] == "status")).await;
    assert_eq!(seq(&d.topic("status")[1]), now + 1, "live messages continue after the resync's seq");

    // A client that never reads answers no ping: dropped after three silent heartbeats.
    let (mut silent, _) = tokio_tungstenite::connect_async(ws_url(&gf)).await.unwrap();
    silent.send(WsMsg::Text(json!({"op":"subscribe","topic":"status"}).to_string())).await.unwrap();
    let t = Instant::now();
    while metric(&gf, "govflow_websocket_clients_dropped_total{reason=\"idle\"}").await != Some(1.0) {
        assert!(t.elapsed() < Duration::from_secs(30), "the silent client was not dropped");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert!(metric(&gf, "govflow_websocket_messages_sent_total").await.unwrap() > 50.0);
    assert!(!a.ended.load(Ordering::Relaxed) && !b.ended.load(Ordering::Relaxed), "the reading clients stay connected");
    // Heartbeats: a message and a ping frame every second (the reading clients answered the
    // pings, or they would have been dropped too).
    assert!(a.heartbeats.load(Ordering::Relaxed) >= 2 && a.pings.load(Ordering::Relaxed) >= 2, "heartbeats");
    gf.stop();
}

/// A client that stops reading gets its socket buffers and queue filled, then is dropped; a
/// fast client on the same topic receives every message meanwhile. Connection and
/// subscription limits, bad commands.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn limits_errors_and_a_slow_client() {
    let anvil = Anvil::start().await;
    let dao = deploy(&anvil).await;
    let dir = tempfile::tempdir().unwrap();
    let opts = GovflowOpts {
        rpc_url: anvil.rpc_url(),
        governor: hexa(dao.governor),
        confirmations: 0,
        start_block: None,
        env: vec![
            ("GOVFLOW_WEBSOCKET_MAX_CONNECTIONS".into(), "3".into()),
            ("GOVFLOW_WEBSOCKET_MAX_SUBSCRIPTIONS".into(), "2".into()),
            ("GOVFLOW_WEBSOCKET_QUEUE_PER_CLIENT".into(), "64".into()),
            ("GOVFLOW_WEBSOCKET_HEARTBEAT_INTERVAL_S".into(), "60".into()),
        ],
    };
    let mut gf = Govflow::start(&opts, &dir.path().join("data"));
    sync(&mut gf, &anvil).await;

    // Not a websocket handshake: 426, problem+json.
    let r = reqwest::get(ws_url(&gf).replace("ws://", "http://")).await.unwrap();
    assert_eq!(r.status().as_u16(), 426);
    assert_eq!(r.headers()["content-type"], "application/problem+json");

    let fast = Live::connect(&gf, "fast").await;
    let fast_ack = fast.subscribe("proposals", None).await;

    // A slow client: a tiny receive buffer, and it stops reading after its acknowledgement.
    let addr: std::net::SocketAddr = gf.base.trim_start_matches("http://").parse().unwrap();
    let sock = tokio::net::TcpSocket::new_v4().unwrap();
    sock.set_recv_buffer_size(4096).unwrap();
    let stream = sock.connect(addr).await.unwrap();
    let (mut slow, _) = tokio_tungstenite::client_async(ws_url(&gf), stream).await.unwrap();
    slow.send(WsMsg::Text(json!({"op":"subscribe","topic":"proposals"}).to_string())).await.unwrap();
    let ack = tokio::time::timeout(WAIT, slow.next()).await.unwrap().unwrap().unwrap();
    assert!(ack.to_text().unwrap().contains("\"subscribed\""), "{ack}");

    // Commands: errors are JSON and leave the connection open.
    let probe = Live::connect(&gf, "probe").await;
    probe.cmd.send(WsMsg::Text("not json".into())).unwrap();
    probe.cmd.send(WsMsg::Binary(vec![1, 2, 3])).unwrap();
    probe.wait_for("two errors", |log| log.iter().filter(|m| m["code"] == "bad-request").count() == 2).await;
    let e = probe.request(json!({"op":"dance"})).await;
    assert_eq!((e["type"].as_str(), e["code"].as_str()), (Some("error"), Some("unknown-op")), "{e}");
    let e = probe.request(json!({"op":"subscribe","topic":"votes"})).await;
    assert_eq!(e["code"], "invalid-topic", "{e}");
    let e = probe.request(json!({"op":"subscribe","topic":"account:0x12"})).await;
    assert_eq!(e["code"], "invalid-topic", "{e}");
    probe.subscribe("status", None).await;
    let e = probe.request(json!({"op":"subscribe","topic":"status"})).await;
    assert_eq!(e["code"], "already-subscribed", "{e}");
    probe.subscribe("proposal:1", None).await;
    let e = probe.request(json!({"op":"subscribe","topic":"proposals"})).await;
    assert_eq!(e["code"], "too-many-subscriptions", "{e}");
    let u = probe.request(json!({"op":"unsubscribe","topic":"status"})).await;
    assert_eq!(u["type"], "unsubscribed", "{u}");
    let e = probe.request(json!({"op":"unsubscribe","topic":"status"})).await;
    assert_eq!(e["code"], "not-subscribed", "{e}");
    probe.subscribe("proposals", None).await;
    let p = probe.request(json!({"op":"ping"})).await;
    assert_eq!(p["type"], "pong");
    assert!(!probe.ended.load(Ordering::Relaxed));

    // A fourth connection: 503 before the upgrade, problem+json.
    match tokio_tungstenite::connect_async(ws_url(&gf)).await {
        Err(tokio_tungstenite::tungstenite::Error::Http(resp)) => {
            assert_eq!(resp.status().as_u16(), 503);
            assert_eq!(resp.headers()["content-type"], "application/problem+json");
            let body: Value = serde_json::from_slice(resp.body().as_deref().unwrap_or_default()).unwrap();
            assert_eq!(body["status"], 503, "{body}");
        }
        other => panic!("a fourth connection must be refused: {:?}", other.map(|_| ())),
    }
    assert_eq!(metric(&gf, "govflow_websocket_connections_refused_total").await, Some(1.0));
    assert_eq!(metric(&gf, "govflow_websocket_connections ").await, Some(3.0));

    // Proposals with long descriptions: more than the slow client's buffers and queue hold.
    let n = 120;
    let filler = "x".repeat(48_000);
    let mut ids = Vec::new();
    for i in 0..n {
        let (id, _) = dao.propose_set_value(&anvil.wallet(1 + i % 3), U256::from(1000 + i), &format!("# Proposal {i}\n{filler}")).await;
        ids.push(id.to_string());
        // Keep commits small even on a busy machine: the fast client's queue (64) must take a
        // whole commit's messages.
        if i % 10 == 9 {
            sync(&mut gf, &anvil).await;
        }
    }
    sync(&mut gf, &anvil).await;
    fast.wait_for("every new proposal", |log| {
        let seen: BTreeSet<String> = topic_msgs(log, "proposals").iter().filter_map(|m| m["data"]["proposalId"].as_str().map(String::from)).collect();
        ids.iter().all(|id| seen.contains(id))
    })
    .await;
    let t = Instant::now();
    while metric(&gf, "govflow_websocket_clients_dropped_total{reason=\"slow\"}").await != Some(1.0) {
        assert!(t.elapsed() < Duration::from_secs(30), "the slow client was not dropped");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // The fast client got every message, in order, and stays connected.
    let fast_msgs = fast.topic("proposals");
    assert_contiguous("fast", &fast_ack, &fast_msgs);
    assert!(fast_msgs.len() >= n);
    assert!(!fast.ended.load(Ordering::Relaxed));
    // The slow client, reading again, finds what its buffers held, then the end.
    let mut got = 0;
    let ended = tokio::time::timeout(Duration::from_secs(20), async {
        while let Some(Ok(m)) = slow.next().await {
            if let WsMsg::Text(t) = m {
                let v: Value = serde_json::from_str(&t).unwrap();
                if v["type"] == "proposal.updated" {
                    got += 1;
                }
            }
        }
    })
    .await;
    assert!(ended.is_ok(), "the slow client's connection was closed");
    assert!(got < n, "the slow client was cut off before the end ({got} of {n})");
    // Its slot is free again.
    let again = Live::connect(&gf, "again").await;
    again.subscribe("status", None).await;
    gf.stop();
}
