//! Live updates on `/v1/ws` (warp websockets): topics, per-topic sequence numbers with replay,
//! rollbacks, heartbeats, bounded per-client queues and limits.
//!
//! # Protocol
//! A client sends JSON commands (text frames); every command may carry an `id`, echoed in the
//! answer:
//! - `{"op":"subscribe","topic":T}`: live messages of `T` from now on;
//!   `{"op":"subscribe","topic":T,"since":S}`: first every message of `T` after `S` (the last
//!   `seq` the client saw), then live ones; if those are no longer kept (or `S` is not one this
//!   server issued) a `resync` message says so instead.
//! - `{"op":"unsubscribe","topic":T}`, `{"op":"ping"}`.
//!
//! Topics: `proposals` (every proposal's new state), `proposal:<id>` (decimal or `0x` hex: its
//! new states and the votes cast on it), `account:<address>` (the account's votes and voting
//! power), `status` (the indexer's position after each commit).
//!
//! Topic messages are `{"type","topic","seq","provisional","data"}`: `seq` increases by one per
//! message of a topic (values are large: they start above anything issued before, also by an
//! earlier process); `provisional` is true for data from blocks above the finalized block
//! (`head - confirmations`); `data` has the REST API's shape for the same object. Types:
//! `proposal.updated` (a proposal as in `GET /v1/proposals`), `proposal.removed` (a rollback
//! removed it), `vote.cast` (as in `GET /v1/proposals/{id}/votes`), `power.changed` (as in
//! `GET /v1/users/{address}/voting-power?block=N`), `status` (fields of `GET /v1/status`),
//! `rollback` (`ancestor`, `depth`, `voidAbove`: everything the topic delivered from blocks above
//! `voidAbove` is void; the restored state of each object those blocks touched follows, marked
//! `"restored": true`, then the canonical chain's changes), `resync` (the topic's continuity is
//! lost: refetch `data.rest`, live messages continue after this `seq`). Other messages carry no
//! `seq`: `subscribed` (`seq` = the position the subscription starts after), `unsubscribed`,
//! `pong`, `heartbeat` (every `heartbeat_interval_s`, with a ping frame) and `error`
//! (`{"type":"error","code","detail"}`).
//!
//! # Design
//! One fan-out task receives the [`ChangeHub`](crate::streams::changes::ChangeHub)'s updates
//! while some topic is tracked (subscribed, or unsubscribed for less than [`RETENTION`]), builds
//! each message once (store reads off the async threads) and, under the registry lock, gives it
//! its `seq`, keeps it in the topic's replay ring and offers it to every subscriber's bounded
//! queue without waiting: a full queue drops that client (an `error` `slow-consumer` if its
//! socket takes it, then close). Each connection has a writer task (its queue to the socket) and
//! a reader task (commands; any frame, such as a pong, counts as a sign of life). One ticker
//! queues a heartbeat for every client (the writer sends a ping frame with it) and drops
//! clients silent for three heartbeats.
//!
//! A commit reports each proposal once, with its state after the commit; votes and power
//! changes are reported one by one. Topics nobody subscribes to cost nothing: no message is
//! built for them, and with no topic at all the fan-out does not even receive the hub.

use std::collections::{HashMap, HashSet, VecDeque};
use std::fmt::Write as _;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use futures::{SinkExt, StreamExt};
use serde::Deserialize;
use serde_json::{json, Value};
use tokio::sync::{broadcast, mpsc, Notify};
use warp::ws::{Message, WebSocket, Ws};
use warp::{Filter, Reply};

use super::problem::Problem;
use super::{api, views, ApiState};
use crate::config::WebsocketConfig;
use crate::domain::{parse_u256, Address, ClockMode, Proposal, UserVotingPower, U256};
use crate::metrics as m;
use crate::streams::changes::{Change, Update};

/// How long a topic nobody subscribes to keeps its sequence and replay ring (for clients that
/// reconnect); after that, a reconnect with `since` gets `resync`.
pub const RETENTION: Duration = Duration::from_secs(300);
/// Blocks of recent commits remembered to know what a rollback touched.
const RECENT_BLOCKS: u64 = 1_024;
/// Largest command a client may send.
const MAX_COMMAND_BYTES: usize = 16 * 1024;
/// How long a dropped client's socket gets to take the error and the close frame.
const GOODBYE_TIMEOUT: Duration = Duration::from_millis(500);
/// Messages written to a socket before one flush.
const WRITE_BATCH: usize = 64;

/// The `/v1/ws` upgrade; rejects every other path so the table routes answer.
pub fn route(state: Arc<ApiState>) -> impl Filter<Extract = (warp::reply::Response,), Error = warp::Rejection> + Clone {
    let hub = Arc::new(Hub::new(state));
    let upgrade = warp::ws().map(Some).or(warp::any().map(|| None::<Ws>)).unify();
    warp::path!("v1" / "ws").and(warp::get()).and(upgrade).map(move |ws: Option<Ws>| accept(&hub, ws))
}

/// The answer to a request on `/v1/ws` without a websocket handshake: 426 problem+json with the
/// `Upgrade` header RFC 9110 asks for.
pub(crate) fn upgrade_required() -> warp::reply::Response {
    let mut r = Problem {
        kind: "tag:govflow,2026:problem/upgrade-required".into(),
        title: "Upgrade required",
        status: 426,
        detail: "/v1/ws is a websocket endpoint: connect with a websocket client (Upgrade: websocket)".into(),
        parameter: None,
        instance: Some("/v1/ws".into()),
    }
    .response();
    r.headers_mut().insert(warp::http::header::UPGRADE, warp::http::HeaderValue::from_static("websocket"));
    r.headers_mut().insert(warp::http::header::CONNECTION, warp::http::HeaderValue::from_static("Upgrade"));
    r
}

fn accept(hub: &Arc<Hub>, ws: Option<Ws>) -> warp::reply::Response {
    let Some(ws) = ws else {
        return upgrade_required();
    };
    let Some(slot) = hub.acquire() else {
        metrics::counter!(m::WEBSOCKET_CONNECTIONS_REFUSED_TOTAL).increment(1);
        let mut r = Problem::unavailable(format!("too many websocket connections (websocket.max_connections = {}); retry later", hub.cfg.max_connections))
            .at("/v1/ws")
            .response();
        r.headers_mut().insert("retry-after", warp::http::HeaderValue::from_static("5"));
        return r;
    };
    hub.start();
    let hub = hub.clone();
    ws.max_message_size(MAX_COMMAND_BYTES).max_frame_size(MAX_COMMAND_BYTES).on_upgrade(move |socket| connection(hub, socket, slot)).into_response()
}

/// A topic.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
enum Topic {
    Proposals,
    Proposal(U256),
    Account(Address),
    Status,
}

impl Topic {
    fn parse(s: &str) -> Result<Topic, String> {
        match s.split_once(':') {
            None if s == "proposals" => Ok(Topic::Proposals),
            None if s == "status" => Ok(Topic::Status),
            Some(("proposal", id)) => parse_u256(id).map(Topic::Proposal).map_err(|e| format!("proposal id {id:?}: {e}")),
            Some(("account", a)) => Address::parse(a).map(Topic::Account).map_err(|e| format!("address {a:?}: {e}")),
            _ => Err(format!("unknown topic {s:?}; one of proposals, proposal:<id>, account:<address>, status")),
        }
    }

    fn name(&self) -> String {
        match self {
            Topic::Proposals => "proposals".into(),
            Topic::Status => "status".into(),
            Topic::Proposal(id) => format!("proposal:{id}"),
            Topic::Account(a) => format!("account:{}", a.to_hex()),
        }
    }

    /// Where a client that lost continuity refetches the topic's state.
    fn rest(&self) -> String {
        match self {
            Topic::Proposals => "/v1/proposals".into(),
            Topic::Status => "/v1/status".into(),
            Topic::Proposal(id) => format!("/v1/proposals/{id}"),
            Topic::Account(a) => format!("/v1/users/{}/voting-power", a.to_hex()),
        }
    }
}

/// Message types carrying a topic `seq`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Kind {
    ProposalUpdated,
    ProposalRemoved,
    VoteCast,
    PowerChanged,
    Status,
    Rollback,
}

impl Kind {
    fn as_str(self) -> &'static str {
        match self {
            Kind::ProposalUpdated => "proposal.updated",
            Kind::ProposalRemoved => "proposal.removed",
            Kind::VoteCast => "vote.cast",
            Kind::PowerChanged => "power.changed",
            Kind::Status => "status",
            Kind::Rollback => "rollback",
        }
    }
}

/// A topic message before its `seq` is known.
struct Outgoing {
    topic: Topic,
    kind: Kind,
    provisional: bool,
    restored: bool,
    data: Arc<str>,
}

fn envelope(kind: &str, topic: &str, seq: u64, provisional: bool, restored: bool, data: &str) -> Arc<str> {
    let mut s = String::with_capacity(data.len() + 112);
    let _ = write!(s, r#"{{"type":"{kind}","topic":"{topic}","seq":{seq},"provisional":{provisional}"#);
    if restored {
        s.push_str(r#","restored":true"#);
    }
    s.push_str(r#","data":"#);
    s.push_str(data);
    s.push('}');
    s.into()
}

/// One connected client, as the registry and its reader see it. Its queue closes when both
/// let go of it, which ends its writer.
struct Client {
    tx: mpsc::Sender<Arc<str>>,
    switch: Arc<KillSwitch>,
    /// When a frame last came from the client, in milliseconds of the hub's clock.
    last_heard: AtomicU64,
}

impl Client {
    fn drop_with(&self, reason: &'static str) {
        self.switch.trip(reason);
    }
}

/// How a client's writer learns that the server dropped the client.
#[derive(Default)]
struct KillSwitch {
    notify: Notify,
    killed: AtomicBool,
    /// Why (`slow-consumer`, `idle`).
    reason: Mutex<Option<&'static str>>,
}

impl KillSwitch {
    fn trip(&self, reason: &'static str) {
        if !self.killed.swap(true, Ordering::AcqRel) {
            if let Ok(mut r) = self.reason.lock() {
                *r = Some(reason);
            }
            let label = if reason == "idle" { "idle" } else { "slow" };
            metrics::counter!(m::WEBSOCKET_CLIENTS_DROPPED_TOTAL, "reason" => label).increment(1);
            self.notify.notify_one();
        }
    }

    fn tripped(&self) -> bool {
        self.killed.load(Ordering::Acquire)
    }
}

struct TopicState {
    /// Last `seq` issued (or the starting position).
    seq: u64,
    /// The smallest `since` that may be served from the ring.
    floor: u64,
    ring: VecDeque<(u64, Arc<str>)>,
    subscribers: HashMap<u64, Arc<Client>>,
    /// Since when nobody subscribes.
    idle_since: Option<Instant>,
}

impl TopicState {
    fn earliest_since(&self) -> u64 {
        self.floor.max(self.ring.front().map_or(self.seq, |(s, _)| s - 1))
    }
}

/// Whether the fan-out receives the hub's updates.
enum HubLink {
    Idle,
    /// A receiver created when the first topic appeared, for the fan-out to take.
    Pending(broadcast::Receiver<Arc<Update>>),
    Active,
}

struct Registry {
    topics: HashMap<Topic, TopicState>,
    clients: HashMap<u64, (Arc<Client>, HashSet<Topic>)>,
    /// At least every `seq` ever issued by this process (and, by construction, by earlier ones).
    high_water: u64,
    link: HubLink,
    subscriptions: usize,
}

/// What the tracked topics want of an update.
#[derive(Default)]
struct Wanted {
    proposals: bool,
    status: bool,
    proposal: HashSet<U256>,
    account: HashSet<Address>,
    all: Vec<Topic>,
}

impl Wanted {
    fn proposal(&self, id: &U256) -> bool {
        self.proposals || self.proposal.contains(id)
    }
}

/// The websocket service behind one filter.
struct Hub {
    state: Arc<ApiState>,
    cfg: WebsocketConfig,
    connections: AtomicUsize,
    next_client: AtomicU64,
    registry: Mutex<Registry>,
    wake: Notify,
    started: OnceLock<()>,
    /// The clock of `Client::last_heard`.
    t0: Instant,
}

/// A connection slot; frees itself when dropped.
struct Slot(Arc<Hub>);

impl Drop for Slot {
    fn drop(&mut self) {
        let n = self.0.connections.fetch_sub(1, Ordering::AcqRel) - 1;
        metrics::gauge!(m::WEBSOCKET_CONNECTIONS).set(n as f64);
    }
}

impl Hub {
    fn new(state: Arc<ApiState>) -> Hub {
        let cfg = state.websocket.clone();
        // Sequence numbers start above the process start time in microseconds, so a client
        // carrying a `since` from an earlier process is always told to resynchronise.
        let start = SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_millis() as u64) * 1_000;
        Hub {
            state,
            cfg,
            connections: AtomicUsize::new(0),
            next_client: AtomicU64::new(1),
            registry: Mutex::new(Registry { topics: HashMap::new(), clients: HashMap::new(), high_water: start, link: HubLink::Idle, subscriptions: 0 }),
            wake: Notify::new(),
            started: OnceLock::new(),
            t0: Instant::now(),
        }
    }

    fn registry(&self) -> std::sync::MutexGuard<'_, Registry> {
        // A panic while holding the lock leaves plain data behind; keep serving.
        self.registry.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn acquire(self: &Arc<Self>) -> Option<Slot> {
        let max = self.cfg.max_connections;
        self.connections.fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| (n < max).then_some(n + 1)).ok().map(|n| {
            metrics::gauge!(m::WEBSOCKET_CONNECTIONS).set((n + 1) as f64);
            Slot(self.clone())
        })
    }

    /// Starts the fan-out and heartbeat tasks (once).
    fn start(self: &Arc<Self>) {
        self.started.get_or_init(|| {
            tokio::spawn(fanout(self.clone()));
            tokio::spawn(heartbeats(self.clone()));
        });
    }

    fn now_ms(&self) -> u64 {
        self.t0.elapsed().as_millis() as u64
    }

    fn register(&self, client: Arc<Client>) -> u64 {
        let id = self.next_client.fetch_add(1, Ordering::Relaxed);
        self.registry().clients.insert(id, (client, HashSet::new()));
        id
    }

    fn unregister(&self, id: u64) {
        let mut reg = self.registry();
        remove_client(&mut reg, id);
    }

    /// Subscribes a client; the answer, the replay (or a resync) and then live messages go to
    /// its queue in that order.
    fn subscribe(&self, id: u64, topic: Topic, since: Option<u64>, cmd_id: &Option<Value>) -> Result<(), Refusal> {
        let mut reg = self.registry();
        let reg = &mut *reg;
        let Some((client, topics)) = reg.clients.get_mut(&id) else { return Err(Refusal::Gone) };
        let client = client.clone();
        if topics.contains(&topic) {
            return Err(Refusal::Error("already-subscribed", format!("already subscribed to {}", topic.name())));
        }
        if topics.len() >= self.cfg.max_subscriptions {
            return Err(Refusal::Error(
                "too-many-subscriptions",
                format!("at most {} subscriptions per connection (websocket.max_subscriptions)", self.cfg.max_subscriptions),
            ));
        }
        topics.insert(topic.clone());
        reg.subscriptions += 1;
        metrics::gauge!(m::WEBSOCKET_SUBSCRIPTIONS).set(reg.subscriptions as f64);
        if matches!(reg.link, HubLink::Idle) {
            // Subscribed to the hub under the lock: nothing committed from now on is missed.
            reg.link = HubLink::Pending(self.state.changes.subscribe());
            self.wake.notify_one();
        }
        let hw = &mut reg.high_water;
        let t = reg.topics.entry(topic.clone()).or_insert_with(|| {
            *hw += 1;
            TopicState { seq: *hw, floor: *hw, ring: VecDeque::new(), subscribers: HashMap::new(), idle_since: None }
        });
        let name = topic.name();
        let cap = self.cfg.queue_per_client.max(1);
        // What to send after the answer.
        let mut replay: Vec<Arc<str>> = Vec::new();
        let mut resync: Option<String> = None;
        if let Some(s) = since {
            let earliest = t.earliest_since();
            if s > t.seq {
                resync = Some(format!("since {s} is not a position of this topic (now at {}); it may come from another server", t.seq));
            } else if s < earliest {
                resync = Some(format!("messages after {s} are no longer kept (oldest position served: {earliest})"));
            } else if (t.seq - s) as usize + 2 > cap {
                resync = Some(format!("{} messages missed, more than the client queue holds ({cap})", t.seq - s));
            } else {
                let skip = t.ring.len() - (t.seq - s) as usize;
                replay.extend(t.ring.iter().skip(skip).map(|(_, m)| m.clone()));
            }
        }
        let mut data = json!({ "replayed": replay.len(), "resync": resync.is_some() });
        if let Some(s) = since {
            data["since"] = json!(s);
        }
        let mut ack = json!({ "type": "subscribed", "topic": name, "seq": t.seq, "data": data });
        if let Some(i) = cmd_id {
            ack["id"] = i.clone();
        }
        let mut queue = vec![Arc::<str>::from(ack.to_string())];
        if let Some(reason) = resync {
            queue.push(resync_message(&topic, t.seq, &reason, since));
        }
        queue.extend(replay);
        for q in queue {
            if client.tx.try_send(q).is_err() {
                client.drop_with("slow-consumer");
                remove_client(reg, id);
                return Err(Refusal::Gone);
            }
        }
        t.subscribers.insert(id, client);
        t.idle_since = None;
        Ok(())
    }

    fn unsubscribe(&self, id: u64, topic: &Topic) -> Result<(), Refusal> {
        let mut reg = self.registry();
        let reg = &mut *reg;
        let Some((_, topics)) = reg.clients.get_mut(&id) else { return Err(Refusal::Gone) };
        if !topics.remove(topic) {
            return Err(Refusal::Error("not-subscribed", format!("not subscribed to {}", topic.name())));
        }
        reg.subscriptions -= 1;
        metrics::gauge!(m::WEBSOCKET_SUBSCRIPTIONS).set(reg.subscriptions as f64);
        if let Some(t) = reg.topics.get_mut(topic) {
            t.subscribers.remove(&id);
            if t.subscribers.is_empty() {
                t.idle_since = Some(Instant::now());
            }
        }
        Ok(())
    }

    fn wanted(&self) -> Wanted {
        let reg = self.registry();
        let mut w = Wanted::default();
        for t in reg.topics.keys() {
            match t {
                Topic::Proposals => w.proposals = true,
                Topic::Status => w.status = true,
                Topic::Proposal(id) => {
                    w.proposal.insert(*id);
                }
                Topic::Account(a) => {
                    w.account.insert(*a);
                }
            }
            w.all.push(t.clone());
        }
        w
    }

    /// Gives each message its `seq`, keeps it for replay and offers it to the subscribers;
    /// never waits for a client.
    fn publish(&self, out: Vec<Outgoing>) {
        if out.is_empty() {
            return;
        }
        let mut reg = self.registry();
        let reg = &mut *reg;
        let ring_cap = self.cfg.replay_per_topic;
        let mut slow: Vec<u64> = Vec::new();
        let mut gone: Vec<u64> = Vec::new();
        for o in out {
            let Some(t) = reg.topics.get_mut(&o.topic) else { continue };
            t.seq += 1;
            reg.high_water = reg.high_water.max(t.seq);
            let text = envelope(o.kind.as_str(), &o.topic.name(), t.seq, o.provisional, o.restored, &o.data);
            if ring_cap > 0 {
                if t.ring.len() >= ring_cap {
                    t.ring.pop_front();
                }
                t.ring.push_back((t.seq, text.clone()));
            }
            deliver(t, &text, &mut slow, &mut gone);
        }
        drop_clients(reg, slow, gone);
    }

    /// Every topic lost continuity (the fan-out lagged, or a rollback went below what it
    /// remembers): skip a `seq`, forget the ring, tell the subscribers.
    fn resync_all(&self, reason: &str) {
        let mut reg = self.registry();
        let reg = &mut *reg;
        let mut slow = Vec::new();
        let mut gone = Vec::new();
        for (topic, t) in reg.topics.iter_mut() {
            t.seq += 1;
            t.floor = t.seq;
            t.ring.clear();
            reg.high_water = reg.high_water.max(t.seq);
            let text = resync_message(topic, t.seq, reason, None);
            deliver(t, &text, &mut slow, &mut gone);
        }
        drop_clients(reg, slow, gone);
        tracing::warn!(target: "websocket", reason, topics = reg.topics.len(), "websocket topics resynchronised");
    }

    /// Forgets topics nobody subscribed to for [`RETENTION`]; with none left, lets go of the
    /// hub (returns false).
    fn sweep(&self) -> bool {
        let mut reg = self.registry();
        reg.topics.retain(|_, t| t.idle_since.is_none_or(|i| i.elapsed() < RETENTION));
        if reg.topics.is_empty() {
            reg.link = HubLink::Idle;
            return false;
        }
        true
    }

    fn take_receiver(&self) -> Option<broadcast::Receiver<Arc<Update>>> {
        let mut reg = self.registry();
        match std::mem::replace(&mut reg.link, HubLink::Active) {
            HubLink::Pending(rx) => Some(rx),
            other => {
                reg.link = other;
                None
            }
        }
    }
}

fn deliver(t: &mut TopicState, text: &Arc<str>, slow: &mut Vec<u64>, gone: &mut Vec<u64>) {
    for (id, c) in &t.subscribers {
        match c.tx.try_send(text.clone()) {
            Ok(()) => {}
            Err(mpsc::error::TrySendError::Full(_)) => slow.push(*id),
            Err(mpsc::error::TrySendError::Closed(_)) => gone.push(*id),
        }
    }
}

fn drop_clients(reg: &mut Registry, slow: Vec<u64>, gone: Vec<u64>) {
    for id in slow {
        if let Some((c, _)) = reg.clients.get(&id) {
            c.drop_with("slow-consumer");
        }
        remove_client(reg, id);
    }
    for id in gone {
        remove_client(reg, id);
    }
}

fn remove_client(reg: &mut Registry, id: u64) {
    let Some((_, topics)) = reg.clients.remove(&id) else { return };
    reg.subscriptions -= topics.len();
    metrics::gauge!(m::WEBSOCKET_SUBSCRIPTIONS).set(reg.subscriptions as f64);
    for topic in topics {
        if let Some(t) = reg.topics.get_mut(&topic) {
            t.subscribers.remove(&id);
            if t.subscribers.is_empty() {
                t.idle_since = Some(Instant::now());
            }
        }
    }
}

fn resync_message(topic: &Topic, seq: u64, reason: &str, since: Option<u64>) -> Arc<str> {
    let data = json!({ "reason": reason, "since": since, "rest": topic.rest() });
    envelope("resync", &topic.name(), seq, false, false, &data.to_string())
}

enum Refusal {
    /// The client is gone (dropped meanwhile).
    Gone,
    /// An error to answer.
    Error(&'static str, String),
}

// ---------------------------------------------------------------------------------------------
// Fan-out

/// Objects touched by recent commits, to know what a rollback undid.
struct Recent {
    /// Blocks from here on are all remembered.
    covered_from: u64,
    batches: VecDeque<Touched>,
}

struct Touched {
    from: u64,
    to: u64,
    proposals: HashSet<U256>,
    accounts: HashSet<Address>,
}

impl Touched {
    fn of(from: u64, to: u64, changes: &[Change]) -> Touched {
        let mut t = Touched { from, to, proposals: HashSet::new(), accounts: HashSet::new() };
        for c in changes {
            match c {
                Change::Proposal(p) => {
                    t.proposals.insert(p.proposal_id);
                }
                Change::Vote(v) => {
                    t.proposals.insert(v.proposal_id);
                    t.accounts.insert(v.voter);
                }
                Change::Power { account, .. } => {
                    t.accounts.insert(*account);
                }
            }
        }
        t
    }
}

impl Recent {
    fn push(&mut self, t: Touched) {
        let to = t.to;
        self.batches.push_back(t);
        while self.batches.front().is_some_and(|b| b.to + RECENT_BLOCKS < to) {
            if let Some(b) = self.batches.pop_front() {
                self.covered_from = self.covered_from.max(b.to + 1);
            }
        }
    }

    /// What the commits above `ancestor` touched, and the block above which they were undone;
    /// none when they are not all remembered.
    fn rollback(&mut self, ancestor: u64) -> Option<(Touched, u64)> {
        let mut undone = Touched { from: ancestor + 1, to: ancestor, proposals: HashSet::new(), accounts: HashSet::new() };
        while self.batches.back().is_some_and(|b| b.to > ancestor) {
            if let Some(b) = self.batches.pop_back() {
                undone.from = undone.from.min(b.from);
                undone.proposals.extend(b.proposals);
                undone.accounts.extend(b.accounts);
            }
        }
        let void_above = undone.from.saturating_sub(1);
        if ancestor + 1 < self.covered_from {
            self.covered_from = void_above + 1;
            self.batches.clear();
            return None;
        }
        Some((undone, void_above))
    }
}

async fn fanout(hub: Arc<Hub>) {
    let mut sweep = tokio::time::interval(Duration::from_secs(10));
    sweep.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        // Idle until a subscription hands over a receiver.
        let mut rx = loop {
            let woken = hub.wake.notified();
            if let Some(rx) = hub.take_receiver() {
                break rx;
            }
            woken.await;
        };
        let store = hub.state.store.clone();
        let cursor = tokio::task::spawn_blocking(move || store.cursor()).await.ok().and_then(|c| c.ok()).flatten();
        let mut recent = Recent { covered_from: cursor.map_or(0, |c| c.block + 1), batches: VecDeque::new() };
        let mut backlog: VecDeque<Arc<Update>> = VecDeque::new();
        tracing::debug!(target: "websocket", "fan-out following the change hub");
        loop {
            let next = match backlog.pop_front() {
                Some(u) => Ok(u),
                None => tokio::select! {
                    r = rx.recv() => r,
                    _ = sweep.tick() => {
                        if hub.sweep() { continue } else { break }
                    }
                },
            };
            match next {
                Ok(u) => handle(&hub, u, &mut rx, &mut backlog, &mut recent).await,
                Err(broadcast::error::RecvError::Lagged(n)) => {
                    tracing::warn!(target: "websocket", missed = n, "fan-out fell behind the change hub");
                    hub.resync_all("the server fell behind the indexer; refetch");
                    recent.batches.clear();
                    recent.covered_from = u64::MAX;
                }
                Err(broadcast::error::RecvError::Closed) => return,
            }
        }
        tracing::debug!(target: "websocket", "no topic left; fan-out idle");
    }
}

async fn handle(hub: &Arc<Hub>, u: Arc<Update>, rx: &mut broadcast::Receiver<Arc<Update>>, backlog: &mut VecDeque<Arc<Update>>, recent: &mut Recent) {
    match &*u {
        Update::Committed { from, to, changes } => {
            if recent.covered_from == u64::MAX {
                recent.covered_from = *from;
            }
            recent.push(Touched::of(*from, *to, changes));
            let want = hub.wanted();
            let state = hub.state.clone();
            let u2 = u.clone();
            let out = tokio::task::spawn_blocking(move || build_committed(&state, &u2, &want)).await.unwrap_or_default();
            hub.publish(out);
        }
        Update::RolledBack { ancestor, depth } => {
            // Updates already queued behind the rollback carry newer states than a store read
            // could: their objects need no restoring.
            let mut lagged = false;
            loop {
                match rx.try_recv() {
                    Ok(x) => backlog.push_back(x),
                    Err(broadcast::error::TryRecvError::Lagged(_)) => lagged = true,
                    Err(_) => break,
                }
            }
            let mut fresh = Touched { from: 0, to: 0, proposals: HashSet::new(), accounts: HashSet::new() };
            for b in backlog.iter() {
                if let Update::Committed { changes, .. } = &**b {
                    let t = Touched::of(0, 0, changes);
                    fresh.proposals.extend(t.proposals);
                    fresh.accounts.extend(t.accounts);
                }
            }
            let undone = recent.rollback(*ancestor);
            let void_above = undone.as_ref().map_or(*ancestor, |(_, v)| *v);
            let want = hub.wanted();
            let data: Arc<str> = json!({ "ancestor": ancestor, "depth": depth, "voidAbove": void_above }).to_string().into();
            let mut out: Vec<Outgoing> =
                want.all.iter().map(|t| Outgoing { topic: t.clone(), kind: Kind::Rollback, provisional: false, restored: false, data: data.clone() }).collect();
            tracing::info!(target: "websocket", ancestor, depth, void_above, "pushing rollback to websocket topics");
            match undone {
                Some((touched, _)) if !lagged => {
                    let state = hub.state.clone();
                    let restored = tokio::task::spawn_blocking(move || build_restored(&state, &touched, &fresh, &want, void_above)).await.unwrap_or_default();
                    out.extend(restored);
                    hub.publish(out);
                }
                _ => {
                    hub.publish(out);
                    hub.resync_all("a rollback went below what the server remembers; refetch");
                }
            }
        }
    }
}

fn clock_mode(state: &ApiState) -> ClockMode {
    state.store.info().ok().flatten().map_or(ClockMode::BlockNumber, |i| i.clock_mode)
}

/// A view as a message's `data`: the REST shape of the same object, written as the REST answers
/// are (through a `Value`: members in name order). A view serde cannot write is logged and its
/// message not sent.
fn message_data<T: serde::Serialize>(v: &T) -> Option<Arc<str>> {
    match serde_json::to_value(v) {
        Ok(v) => Some(v.to_string().into()),
        Err(e) => {
            tracing::error!(target: "websocket", error = %e, "cannot write a message");
            None
        }
    }
}

fn power_view(account: Address, p: &crate::domain::AccountPower, mode: ClockMode, fin: u64) -> views::VotingPowerView {
    let tp = if mode == ClockMode::BlockNumber { p.block_number } else { p.timestamp };
    let vp = UserVotingPower::from_power(account, p, p.block_number, tp);
    let provisional = vp.block_number > fin;
    views::VotingPowerView { power: vp, provisional }
}

fn status_json(state: &ApiState, indexed: u64, fin: u64) -> Arc<str> {
    let st = &state.status;
    let head = st.head.load(Ordering::Relaxed);
    json!({
        "headBlock": head,
        "indexedBlock": indexed,
        "finalizedBlock": fin,
        "confirmations": st.confirmations.load(Ordering::Relaxed),
        "lagBlocks": head.saturating_sub(indexed),
        "caughtUp": st.caught_up.load(Ordering::Relaxed),
        "rpcReachable": st.rpc_ok.load(Ordering::Relaxed),
        "reorgsHandled": st.reorgs.load(Ordering::Relaxed),
    })
    .to_string()
    .into()
}

/// The messages of one commit for the tracked topics (store reads: call off the async threads).
fn build_committed(state: &ApiState, u: &Update, want: &Wanted) -> Vec<Outgoing> {
    let Update::Committed { to, changes, .. } = u else { return Vec::new() };
    // One reading of the finalized block for the whole commit, so its messages agree.
    let fin = state.status.finalized();
    let mode = clock_mode(state);
    let mut snapshots: HashMap<U256, Option<u64>> = HashMap::new();
    // A proposal written twice in one commit (created, then advanced) is pushed once, with
    // its state after the commit.
    let mut last_state: HashMap<U256, usize> = HashMap::new();
    for (i, c) in changes.iter().enumerate() {
        if let Change::Proposal(p) = c {
            last_state.insert(p.proposal_id, i);
        }
    }
    let mut out = Vec::new();
    for (i, c) in changes.iter().enumerate() {
        match c {
            Change::Proposal(p) => {
                let id = p.proposal_id;
                if !want.proposal(&id) || last_state.get(&id) != Some(&i) {
                    continue;
                }
                let view = api::proposal_view(Proposal::clone(p), mode, fin);
                let provisional = view.provisional;
                let Some(data) = message_data(&view) else { continue };
                if want.proposals {
                    out.push(Outgoing { topic: Topic::Proposals, kind: Kind::ProposalUpdated, provisional, restored: false, data: data.clone() });
                }
                if want.proposal.contains(&id) {
                    out.push(Outgoing { topic: Topic::Proposal(id), kind: Kind::ProposalUpdated, provisional, restored: false, data });
                }
            }
            Change::Vote(v) => {
                let on_proposal = want.proposal.contains(&v.proposal_id);
                let on_account = want.account.contains(&v.voter);
                if !on_proposal && !on_account {
                    continue;
                }
                let snapshot = *snapshots.entry(v.proposal_id).or_insert_with(|| state.store.proposal(&v.proposal_id).ok().flatten().map(|p| p.start_block));
                let Ok(view) = api::vote_view(state, v, snapshot.map(|s| (s, mode)), fin) else { continue };
                let provisional = view.provisional;
                let Some(data) = message_data(&view) else { continue };
                if on_proposal {
                    out.push(Outgoing { topic: Topic::Proposal(v.proposal_id), kind: Kind::VoteCast, provisional, restored: false, data: data.clone() });
                }
                if on_account {
                    out.push(Outgoing { topic: Topic::Account(v.voter), kind: Kind::VoteCast, provisional, restored: false, data });
                }
            }
            Change::Power { account, power } => {
                if !want.account.contains(account) {
                    continue;
                }
                let view = power_view(*account, power, mode, fin);
                let Some(data) = message_data(&view) else { continue };
                out.push(Outgoing { topic: Topic::Account(*account), kind: Kind::PowerChanged, provisional: view.provisional, restored: false, data });
            }
        }
    }
    if want.status {
        out.push(Outgoing { topic: Topic::Status, kind: Kind::Status, provisional: false, restored: false, data: status_json(state, *to, fin) });
    }
    out
}

/// After a rollback: the store's state of every tracked object the undone commits touched,
/// except those updates already queued will bring.
fn build_restored(state: &ApiState, undone: &Touched, fresh: &Touched, want: &Wanted, void_above: u64) -> Vec<Outgoing> {
    let fin = state.status.finalized();
    let mode = clock_mode(state);
    let mut out = Vec::new();
    let mut ids: Vec<&U256> = undone.proposals.iter().filter(|id| want.proposal(id) && !fresh.proposals.contains(id)).collect();
    ids.sort();
    for id in ids {
        let (kind, provisional, data): (Kind, bool, Arc<str>) = match state.store.proposal(id) {
            Ok(Some(p)) => {
                let view = api::proposal_view(p, mode, fin);
                let Some(data) = message_data(&view) else { continue };
                (Kind::ProposalUpdated, view.provisional, data)
            }
            Ok(None) => (Kind::ProposalRemoved, false, json!({ "proposalId": id.to_string() }).to_string().into()),
            Err(e) => {
                tracing::warn!(target: "websocket", error = %e, "cannot read a proposal to restore");
                continue;
            }
        };
        if want.proposals {
            out.push(Outgoing { topic: Topic::Proposals, kind, provisional, restored: true, data: data.clone() });
        }
        if want.proposal.contains(id) {
            out.push(Outgoing { topic: Topic::Proposal(*id), kind, provisional, restored: true, data });
        }
    }
    let mut accounts: Vec<&Address> = undone.accounts.iter().filter(|a| want.account.contains(a) && !fresh.accounts.contains(a)).collect();
    accounts.sort();
    for a in accounts {
        let power = match state.store.account(a) {
            Ok(p) => p.unwrap_or_default(),
            Err(e) => {
                tracing::warn!(target: "websocket", error = %e, "cannot read an account to restore");
                continue;
            }
        };
        let view = power_view(*a, &power, mode, fin);
        let Some(data) = message_data(&view) else { continue };
        out.push(Outgoing { topic: Topic::Account(*a), kind: Kind::PowerChanged, provisional: view.provisional, restored: true, data });
    }
    if want.status {
        out.push(Outgoing { topic: Topic::Status, kind: Kind::Status, provisional: false, restored: false, data: status_json(state, void_above, fin) });
    }
    out
}

// ---------------------------------------------------------------------------------------------
// Connections

#[derive(Deserialize)]
struct Command {
    op: Option<String>,
    topic: Option<String>,
    since: Option<u64>,
    id: Option<Value>,
}

fn error_text(code: &str, detail: &str, id: &Option<Value>, topic: Option<&str>) -> Arc<str> {
    let mut v = json!({ "type": "error", "code": code, "detail": detail });
    if let Some(i) = id {
        v["id"] = i.clone();
    }
    if let Some(t) = topic {
        v["topic"] = json!(t);
    }
    v.to_string().into()
}

/// Answers one command; false when the client is gone.
fn command(hub: &Hub, id: u64, client: &Client, text: &str) -> bool {
    let reply = |m: Arc<str>| -> bool {
        if client.tx.try_send(m).is_err() {
            client.drop_with("slow-consumer");
            return false;
        }
        true
    };
    let cmd: Command = match serde_json::from_str(text) {
        Ok(c) => c,
        Err(e) => return reply(error_text("bad-request", &format!("commands are JSON objects with an op: {e}"), &None, None)),
    };
    let topic = || -> Result<Topic, Arc<str>> {
        match &cmd.topic {
            None => Err(error_text("invalid-topic", "this op needs a topic", &cmd.id, None)),
            Some(t) => Topic::parse(t).map_err(|e| error_text("invalid-topic", &e, &cmd.id, Some(t))),
        }
    };
    match cmd.op.as_deref() {
        Some("subscribe") => {
            let t = match topic() {
                Ok(t) => t,
                Err(e) => return reply(e),
            };
            match hub.subscribe(id, t.clone(), cmd.since, &cmd.id) {
                Ok(()) => true,
                Err(Refusal::Gone) => false,
                Err(Refusal::Error(code, detail)) => reply(error_text(code, &detail, &cmd.id, Some(&t.name()))),
            }
        }
        Some("unsubscribe") => {
            let t = match topic() {
                Ok(t) => t,
                Err(e) => return reply(e),
            };
            match hub.unsubscribe(id, &t) {
                Ok(()) => {
                    let mut v = json!({ "type": "unsubscribed", "topic": t.name() });
                    if let Some(i) = &cmd.id {
                        v["id"] = i.clone();
                    }
                    reply(v.to_string().into())
                }
                Err(Refusal::Gone) => false,
                Err(Refusal::Error(code, detail)) => reply(error_text(code, &detail, &cmd.id, Some(&t.name()))),
            }
        }
        Some("ping") => {
            let mut v = json!({ "type": "pong" });
            if let Some(i) = &cmd.id {
                v["id"] = i.clone();
            }
            reply(v.to_string().into())
        }
        Some(op) => reply(error_text("unknown-op", &format!("unknown op {op:?}; one of subscribe, unsubscribe, ping"), &cmd.id, None)),
        None => reply(error_text("bad-request", "a command needs an op (subscribe, unsubscribe, ping)", &cmd.id, None)),
    }
}

/// Heartbeat messages begin so; the writer sends a ping frame before each.
const HEARTBEAT_PREFIX: &str = r#"{"type":"heartbeat""#;

fn heartbeat_text(hub: &Hub) -> Arc<str> {
    let st = &hub.state.status;
    let now = SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs());
    heartbeat_json(now, st.head.load(Ordering::Relaxed), st.indexed.load(Ordering::Relaxed), st.finalized()).into()
}

fn heartbeat_json(now: u64, head: u64, indexed: u64, finalized: u64) -> String {
    let data = json!({ "headBlock": head, "indexedBlock": indexed, "finalizedBlock": finalized });
    // Written by hand: the writer recognises heartbeats by their first bytes.
    format!(r#"{HEARTBEAT_PREFIX},"time":"{}","data":{data}}}"#, crate::domain::time::format(now))
}

/// Every `heartbeat_interval_s`: a heartbeat into every client's queue (one timer for all
/// connections), and clients silent for three intervals dropped.
async fn heartbeats(hub: Arc<Hub>) {
    let every = Duration::from_secs(hub.cfg.heartbeat_interval_s.max(1));
    let mut beat = tokio::time::interval_at(tokio::time::Instant::now() + every, every);
    beat.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let silent_ms = 3 * every.as_millis() as u64;
    loop {
        beat.tick().await;
        let text = heartbeat_text(&hub);
        let now = hub.now_ms();
        let mut reg = hub.registry();
        let reg = &mut *reg;
        let mut slow = Vec::new();
        for (id, (c, _)) in &reg.clients {
            if now.saturating_sub(c.last_heard.load(Ordering::Relaxed)) > silent_ms {
                c.drop_with("idle");
            }
            // Also wakes the writer of a client just dropped, so it notices.
            if let Err(mpsc::error::TrySendError::Full(_)) = c.tx.try_send(text.clone()) {
                slow.push(*id);
            }
        }
        drop_clients(reg, slow, Vec::new());
    }
}

enum End {
    Closed,
    Killed,
}

/// One connection: this task writes the client's queue (messages and heartbeats) to the
/// socket; a second task reads the client's commands. The write path waits on the queue alone.
async fn connection(hub: Arc<Hub>, socket: WebSocket, _slot: Slot) {
    let (tx, mut rx) = mpsc::channel::<Arc<str>>(hub.cfg.queue_per_client.max(1));
    let switch = Arc::new(KillSwitch::default());
    let client = Arc::new(Client { tx, switch: switch.clone(), last_heard: AtomicU64::new(hub.now_ms()) });
    let id = hub.register(client.clone());
    let (mut sink, stream) = socket.split();
    let reader = tokio::spawn(read_commands(hub.clone(), id, client, stream));

    let sent = metrics::counter!(m::WEBSOCKET_MESSAGES_SENT_TOTAL);
    let mut batch: Vec<Arc<str>> = Vec::with_capacity(WRITE_BATCH);
    let end = loop {
        // A client is dropped with a full queue (slow) or after a heartbeat was queued (idle),
        // so never while this task waits for messages: the flag is enough here, the
        // notification serves blocked writes.
        if switch.tripped() {
            break End::Killed;
        }
        // Zero: the reader and the registry let go of the client (it left).
        let n = rx.recv_many(&mut batch, WRITE_BATCH).await;
        if n == 0 {
            break End::Closed;
        }
        if switch.tripped() {
            break End::Killed;
        }
        let mut write = std::pin::pin!(async {
            for m in batch.drain(..) {
                if m.starts_with(HEARTBEAT_PREFIX) {
                    sink.feed(Message::ping(Vec::new())).await?;
                }
                sink.feed(Message::text(m.to_string())).await?;
            }
            sink.flush().await
        });
        // Most writes complete at once; only a blocked one waits for the kill signal.
        let r = match futures::poll!(write.as_mut()) {
            std::task::Poll::Ready(r) => r,
            std::task::Poll::Pending => tokio::select! {
                biased;
                _ = switch.notify.notified() => break End::Killed,
                r = write => r,
            },
        };
        match r {
            Ok(()) => sent.increment(n as u64),
            Err(_) => break End::Closed,
        }
    };
    reader.abort();
    hub.unregister(id);
    if let End::Killed = end {
        let reason = switch.reason.lock().ok().and_then(|r| *r).unwrap_or("slow-consumer");
        let detail = if reason == "idle" {
            "nothing heard from the client for three heartbeat intervals"
        } else {
            "the client did not read its messages fast enough; its queue is full (websocket.queue_per_client)"
        };
        tracing::info!(target: "websocket", client = id, reason, "websocket client dropped");
        let bye = async {
            sink.send(Message::text(error_text(reason, detail, &None, None).to_string())).await?;
            sink.send(Message::close_with(1008u16, reason)).await
        };
        let _ = tokio::time::timeout(GOODBYE_TIMEOUT, bye).await;
    } else {
        let _ = tokio::time::timeout(GOODBYE_TIMEOUT, sink.close()).await;
    }
}

/// Reads a client's frames: commands, and any frame (a pong) as a sign of life. On the way out
/// it lets go of the client, which closes the queue and ends the writer.
async fn read_commands(hub: Arc<Hub>, id: u64, client: Arc<Client>, mut stream: futures::stream::SplitStream<WebSocket>) {
    while let Some(Ok(msg)) = stream.next().await {
        client.last_heard.store(hub.now_ms(), Ordering::Relaxed);
        if msg.is_close() {
            break;
        }
        if msg.is_text() {
            if !command(&hub, id, &client, msg.to_str().unwrap_or_default()) {
                break;
            }
        } else if msg.is_binary() {
            let e = error_text("bad-request", "commands are JSON text frames", &None, None);
            if client.tx.try_send(e).is_err() {
                client.drop_with("slow-consumer");
                break;
            }
        }
    }
    hub.unregister(id);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn topics_parse_and_normalise() {
        assert_eq!(Topic::parse("proposals").unwrap(), Topic::Proposals);
        assert_eq!(Topic::parse("status").unwrap(), Topic::Status);
        assert_eq!(Topic::parse("proposal:0x10").unwrap().name(), "proposal:16");
        let a = "account:0xAbCdEf0000000000000000000000000000000001";
        assert_eq!(Topic::parse(a).unwrap().name(), a.to_lowercase());
        for bad in ["", "proposal", "proposal:", "proposal:x", "account:0x12", "votes", "proposals:1"] {
            assert!(Topic::parse(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn heartbeats_are_json_recognised_by_their_prefix() {
        let h = heartbeat_json(1_700_000_000, 12, 11, 9);
        assert!(h.starts_with(HEARTBEAT_PREFIX), "{h}");
        let v: Value = serde_json::from_str(&h).unwrap();
        assert_eq!(v["type"], "heartbeat");
        assert_eq!(v["data"], json!({ "headBlock": 12, "indexedBlock": 11, "finalizedBlock": 9 }));
        assert!(v["time"].as_str().unwrap().starts_with("2023-11-14T"));
    }

    #[test]
    fn envelope_is_json() {
        let e = envelope("vote.cast", "proposal:1", 7, true, true, r#"{"a":1}"#);
        let v: Value = serde_json::from_str(&e).unwrap();
        assert_eq!(v, json!({"type":"vote.cast","topic":"proposal:1","seq":7,"provisional":true,"restored":true,"data":{"a":1}}));
    }

    fn touched(from: u64, to: u64, p: u64) -> Touched {
        Touched { from, to, proposals: [U256::from(p)].into(), accounts: HashSet::new() }
    }

    #[test]
    fn recent_commits_tell_what_a_rollback_undid() {
        let mut r = Recent { covered_from: 10, batches: VecDeque::new() };
        r.push(touched(10, 12, 1));
        r.push(touched(13, 13, 2));
        r.push(touched(14, 16, 3));
        // A rollback inside a batch undoes the whole batch.
        let (t, void_above) = r.rollback(14).unwrap();
        assert_eq!(void_above, 13);
        assert_eq!(t.proposals, [U256::from(3)].into());
        let (t, void_above) = r.rollback(12).unwrap();
        assert_eq!((void_above, t.proposals.len()), (12, 1));
        // Below what is remembered: unknown.
        assert!(r.rollback(5).is_none());
        // Old batches are forgotten once the chain moved on.
        let mut r = Recent { covered_from: 0, batches: VecDeque::new() };
        r.push(touched(1, 1, 1));
        r.push(touched(2, 2 + RECENT_BLOCKS, 2));
        assert_eq!(r.batches.len(), 1);
        assert_eq!(r.covered_from, 2);
        assert!(r.rollback(0).is_none());
    }
}
