//! Proposal actors and voter-power shards spread over partitions and instances (NATS mode).
//!
//! The indexer (the pipeline that commits) decodes each range, computes clock ticks and
//! quorums, and then, instead of messaging actors in its own process, sends each partition's
//! share of the range to `govflow.<chain>.actors.<partition>` (NATS request/reply). Whichever
//! instance holds the lease `partition-<n>` answers: it hosts the proposal actors of the
//! proposals in that partition (`proposal id mod partitions`) and the voter-power shards in it
//! (`shard mod partitions`), applies the inputs in chain order, and replies with the writes.
//! The indexer commits all writes of the range with the cursor, as in the embedded mode.
//!
//! Consistency: a request names the indexer's epoch (a new one after every reset) and the last
//! range it sent to that partition. A worker whose state is not exactly after that range (it
//! just took the partition over, missed a request, or the indexer retried a range) reloads its
//! actors from the store, which holds everything committed so far, then applies. Replies are a
//! function of the store and the request, so a request answered twice (or by two instances
//! during a lease handover) gives the same writes, and only one is used.
//!
//! Requests go over core NATS rather than a JetStream stream: they are derived data, recomputed
//! by the indexer on any retry; the facts they come from are on the events stream already.
//!
//! A request or reply larger than one NATS message allows (the server's `max_payload`, 1 MiB by
//! default: a backfill range with thousands of votes for one partition is several) travels
//! through the JetStream object store instead (`bus::requests`).

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use actix::prelude::*;
use futures::future::BoxFuture;
use serde::{Deserialize, Serialize};
use tracing::Instrument;

use crate::actors::host::{ActorHost, ActorsError, RangeApplied, RangeWork};
use crate::actors::proposal::{Applied, Apply, GovernorRules, ProposalActor, ProposalInput, ProposalLogic};
use crate::actors::voter_power::{ApplyPower, VoterPowerShard};
use crate::bus::jetstream::JetStreamBus;
use crate::bus::requests::{NextRequest, Outgoing};
use crate::domain::{Proposal, U256};
use crate::metrics as m;
use crate::store::{Mutation, Store, StoreError};

/// Partition of a proposal.
pub fn partition_of_proposal(pid: &U256, partitions: usize) -> usize {
    (pid.low_u64() % partitions.max(1) as u64) as usize
}

/// Partition of a voter-power shard.
pub fn partition_of_shard(shard: usize, partitions: usize) -> usize {
    shard % partitions.max(1)
}

/// `govflow.<chain>.actors.<partition>`.
pub fn subject(chain_id: u64, partition: usize) -> String {
    format!("govflow.{chain_id}.actors.{partition}")
}

pub use crate::actors::host::ShardInputs;

/// One partition's share of a range.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct WorkRequest {
    /// Request id.
    pub id: String,
    /// The indexer's epoch (new after each reset).
    pub epoch: String,
    /// Partition.
    pub partition: usize,
    /// Last block of the previous range sent to this partition in this epoch (None: first).
    pub prev_to: Option<u64>,
    /// Last block of this range.
    pub to: u64,
    /// Proposals created in the range (or revived from the store by the indexer).
    pub spawn: Vec<Proposal>,
    /// Inputs per proposal, in chain order, with `quorum(snapshot)` when known.
    pub proposals: Vec<(U256, Vec<ProposalInput>, Option<U256>)>,
    /// Inputs per voter-power shard.
    pub power: Vec<(usize, ShardInputs)>,
}

/// A partition's answer.
#[derive(Debug, Serialize, Deserialize)]
pub struct WorkReply {
    /// Request id.
    pub id: String,
    /// Instance that answered.
    pub instance: String,
    /// Whether the worker reloaded its actors from the store first.
    pub reloaded: bool,
    /// Per proposal: writes and summary, or the refusal.
    pub proposals: Vec<(U256, Result<Applied, String>)>,
    /// Voter-power writes, or the error.
    pub power: Result<Vec<Mutation>, String>,
}

/// The indexer's side: sends partitions their work and collects the answers.
pub struct RemoteActors {
    bus: Arc<JetStreamBus>,
    chain_id: u64,
    partitions: usize,
    attempt_timeout: Duration,
    give_up: Duration,
    /// Changes at each reset; workers reload when it does.
    epoch: String,
    /// Per partition, the last block of the last range sent to it in this epoch.
    last_sent: HashMap<usize, u64>,
    /// Proposals created (or revived) since the last range was sent.
    spawned: Vec<Proposal>,
}

/// Remote work failed (retryable: the indexer restarts the range).
#[derive(Debug, thiserror::Error)]
#[error("partition {partition}: {message}")]
pub struct RemoteError {
    /// Partition.
    pub partition: usize,
    /// What happened.
    pub message: String,
    /// A proposal refused an input (not retryable).
    pub refused: bool,
}

impl RemoteActors {
    /// A client for `partitions` partitions on `bus`.
    pub fn new(bus: Arc<JetStreamBus>, partitions: usize) -> Self {
        RemoteActors {
            chain_id: bus.chain_id(),
            bus,
            partitions: partitions.max(1),
            attempt_timeout: Duration::from_secs(5),
            give_up: Duration::from_secs(90),
            epoch: uuid::Uuid::new_v4().to_string(),
            last_sent: HashMap::new(),
            spawned: Vec::new(),
        }
    }

    /// Number of partitions.
    pub fn partitions(&self) -> usize {
        self.partitions
    }

    /// Sends every non-empty partition its request (concurrently) and returns the replies, in
    /// the requests' order.
    async fn send_all(&self, requests: Vec<WorkRequest>) -> Result<Vec<WorkReply>, RemoteError> {
        let replies = futures::future::join_all(requests.into_iter().map(|r| self.one(r))).await;
        replies.into_iter().collect()
    }

    async fn one(&self, req: WorkRequest) -> Result<WorkReply, RemoteError> {
        let span = tracing::debug_span!("request", partition = req.partition, request = %req.id);
        self.one_inner(req).instrument(span).await
    }

    async fn one_inner(&self, req: WorkRequest) -> Result<WorkReply, RemoteError> {
        let key = format!("request-{}", req.id);
        let payload = match serde_json::to_vec(&req) {
            Ok(p) => bytes::Bytes::from(p),
            Err(e) => return Err(RemoteError { partition: req.partition, message: format!("request not serialisable: {e}"), refused: true }),
        };
        let mut object = None;
        let result = self.exchange(&req, payload, &key, &mut object).await;
        if let Some(key) = object {
            // Answered or given up, the request's object is done with: a range sent again is a
            // new request.
            self.bus.delete_blob(&key).await;
        }
        result
    }

    /// Sends `req` (serialised: `payload`; through the object `key` when it is too large for a
    /// message, named in `object` once stored) until its partition answers, or gives up after
    /// `give_up`.
    async fn exchange(&self, req: &WorkRequest, payload: bytes::Bytes, key: &str, object: &mut Option<String>) -> Result<WorkReply, RemoteError> {
        let subject = subject(self.chain_id, req.partition);
        let started = Instant::now();
        let mut attempt = 0u32;
        let mut prepared: Option<Outgoing> = None;
        loop {
            attempt += 1;
            let sent = Instant::now();
            let message = match &prepared {
                Some(p) => Ok(p.clone()),
                None => self.bus.outgoing(key, payload.clone()).await.inspect(|p| {
                    object.clone_from(&p.object);
                    prepared = Some(p.clone());
                }),
            };
            let failure = match message {
                Err(e) => e.to_string(),
                Ok(out) => match self.bus.request(&subject, &out, self.attempt_timeout).await {
                    Ok(body) => match serde_json::from_slice::<WorkReply>(&body) {
                        Ok(reply) if reply.id == req.id => {
                            metrics::histogram!(m::ACTORS_REMOTE_DURATION_SECONDS).record(sent.elapsed().as_secs_f64());
                            if reply.reloaded {
                                metrics::counter!(m::ACTORS_REMOTE_RELOADS_TOTAL).increment(1);
                            }
                            if let Some((pid, e)) = reply.proposals.iter().find_map(|(p, r)| r.as_ref().err().map(|e| (p, e))) {
                                return Err(RemoteError {
                                    partition: req.partition,
                                    message: format!("proposal {pid}: {e}"),
                                    refused: e.starts_with("refused:"),
                                });
                            }
                            return Ok(reply);
                        }
                        Ok(_) => "a reply to another request".to_string(),
                        Err(e) => format!("undecodable reply: {e}"),
                    },
                    Err(e) => e.to_string(),
                },
            };
            metrics::counter!(m::ACTORS_REMOTE_RETRIES_TOTAL).increment(1);
            if started.elapsed() > self.give_up {
                return Err(RemoteError { partition: req.partition, message: format!("{failure} (after {attempt} attempts)"), refused: false });
            }
            if attempt == 1 || attempt.is_multiple_of(20) {
                tracing::warn!(target: "actors", partition = req.partition, attempt, error = %failure, "partition not answering; retrying (its lease may be moving)");
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
}

impl ActorHost for RemoteActors {
    fn reset(&mut self) {
        // The partitions' workers see the new epoch and reload from the store.
        self.epoch = uuid::Uuid::new_v4().to_string();
        self.last_sent.clear();
        self.spawned.clear();
    }

    fn spawn(&mut self, p: Proposal, _rules: &Arc<GovernorRules>) {
        // Sent with the next range to the proposal's partition, whose worker starts its actor.
        self.spawned.push(p);
    }

    fn retire(&mut self, _pid: &U256) {
        // The worker passivates final proposals itself.
    }

    fn apply(&mut self, work: RangeWork) -> BoxFuture<'_, Result<RangeApplied, ActorsError>> {
        Box::pin(async move {
            let parts = self.partitions;
            let mut reqs: BTreeMap<usize, WorkRequest> = BTreeMap::new();
            let (epoch, last_sent, to) = (&self.epoch, &self.last_sent, work.to);
            let new_request = |part: usize| WorkRequest {
                id: uuid::Uuid::new_v4().to_string(),
                epoch: epoch.clone(),
                partition: part,
                prev_to: last_sent.get(&part).copied(),
                to,
                spawn: Vec::new(),
                proposals: Vec::new(),
                power: Vec::new(),
            };
            for p in std::mem::take(&mut self.spawned) {
                let part = partition_of_proposal(&p.proposal_id, parts);
                reqs.entry(part).or_insert_with(|| new_request(part)).spawn.push(p);
            }
            for (pid, msg) in work.proposals {
                let part = partition_of_proposal(&pid, parts);
                reqs.entry(part).or_insert_with(|| new_request(part)).proposals.push((pid, msg.inputs, msg.quorum));
            }
            for (shard, inputs) in work.power.into_iter().enumerate().filter(|(_, v)| !v.is_empty()) {
                let part = partition_of_shard(shard, parts);
                reqs.entry(part).or_insert_with(|| new_request(part)).power.push((shard, inputs));
            }
            let sent: Vec<usize> = reqs.keys().copied().collect();
            let replies = self.send_all(reqs.into_values().collect()).await?;
            let mut out = RangeApplied::default();
            for (part, reply) in sent.iter().zip(replies) {
                for (pid, applied) in reply.proposals {
                    let applied = applied.map_err(|e| RemoteError { partition: *part, message: e, refused: true })?;
                    out.proposals.push((pid, applied));
                }
                out.power.extend(reply.power.map_err(|e| RemoteError { partition: *part, message: e, refused: false })?);
            }
            for part in sent {
                self.last_sent.insert(part, to);
            }
            Ok(out)
        })
    }
}

/// The worker's side: the actors of one partition, in the instance holding its lease.
pub struct PartitionWorker {
    partition: usize,
    partitions: usize,
    shard_count: usize,
    cache_per_shard: usize,
    store: Arc<dyn Store>,
    instance: String,
    proposals: HashMap<U256, Addr<ProposalActor>>,
    shards: HashMap<usize, Addr<VoterPowerShard>>,
    rules: Option<Arc<GovernorRules>>,
    /// (epoch, last range applied).
    position: Option<(String, Option<u64>)>,
}

impl PartitionWorker {
    /// The worker of `partition`.
    pub fn new(partition: usize, partitions: usize, shard_count: usize, cache_per_shard: usize, store: Arc<dyn Store>, instance: String) -> Self {
        PartitionWorker {
            partition,
            partitions,
            shard_count: shard_count.max(1),
            cache_per_shard,
            store,
            instance,
            proposals: HashMap::new(),
            shards: HashMap::new(),
            rules: None,
            position: None,
        }
    }

    /// Drops every actor and starts the partition's live proposals and shards from the store
    /// (read off the async threads).
    async fn reload(&mut self) -> Result<(), StoreError> {
        for (_, a) in self.proposals.drain() {
            drop(a);
        }
        self.shards.clear();
        self.rules = None;
        let (info, live) = crate::store::off_thread(&self.store, |s| Ok((s.info()?, s.live_proposals()?))).await?;
        let info = info.ok_or_else(|| StoreError::Backend("the store has no governor settings yet".into()))?;
        let rules = Arc::new(GovernorRules::of(&info));
        self.rules = Some(rules.clone());
        for p in live {
            if partition_of_proposal(&p.proposal_id, self.partitions) == self.partition {
                let id = p.proposal_id;
                self.proposals.insert(id, ProposalActor::new(ProposalLogic::new(p, rules.clone())).start());
            }
        }
        for s in (0..self.shard_count).filter(|s| partition_of_shard(*s, self.partitions) == self.partition) {
            self.shards.insert(s, VoterPowerShard::new(s, self.store.clone(), self.cache_per_shard).start());
        }
        metrics::gauge!(m::PROPOSAL_ACTORS_LIVE).set(self.proposals.len() as f64);
        Ok(())
    }

    /// Applies one request.
    pub async fn handle(&mut self, req: WorkRequest) -> WorkReply {
        let span = tracing::info_span!("partition", partition = self.partition, request = %req.id, epoch = %req.epoch, to = req.to);
        self.apply_request(req).instrument(span).await
    }

    async fn apply_request(&mut self, req: WorkRequest) -> WorkReply {
        let mut reply = WorkReply { id: req.id.clone(), instance: self.instance.clone(), reloaded: false, proposals: Vec::new(), power: Ok(Vec::new()) };
        let expected = Some((req.epoch.clone(), req.prev_to));
        if self.position != expected || self.rules.is_none() {
            reply.reloaded = true;
            if let Err(e) = self.reload().await {
                self.position = None;
                let msg = format!("reload: {e}");
                reply.power = Err(msg.clone());
                reply.proposals = req.proposals.iter().map(|(p, _, _)| (*p, Err(msg.clone()))).collect();
                return reply;
            }
        }
        let Some(rules) = self.rules.clone() else { return reply };
        for p in req.spawn {
            let id = p.proposal_id;
            self.proposals.insert(id, ProposalActor::new(ProposalLogic::new(p, rules.clone())).start());
        }
        // Passivated proposals that receive inputs are revived from the store, in one read.
        let revive: Vec<U256> = req.proposals.iter().map(|(pid, _, _)| *pid).filter(|pid| !self.proposals.contains_key(pid)).collect();
        let mut stored: HashMap<U256, Result<Option<Proposal>, String>> = HashMap::new();
        if !revive.is_empty() {
            let read = crate::store::off_thread(&self.store, move |s| {
                revive.into_iter().map(|pid| Ok((pid, s.proposal(&pid)?))).collect::<Result<Vec<_>, StoreError>>()
            })
            .await;
            match read {
                Ok(found) => stored.extend(found.into_iter().map(|(pid, p)| (pid, Ok(p)))),
                Err(e) => {
                    for (pid, _, _) in &req.proposals {
                        stored.insert(*pid, Err(e.to_string()));
                    }
                }
            }
        }
        let mut sends = Vec::new();
        for (pid, inputs, quorum) in req.proposals {
            let addr = match self.proposals.get(&pid) {
                Some(a) => a.clone(),
                None => match stored.remove(&pid).unwrap_or(Ok(None)) {
                    Ok(Some(p)) => {
                        let a = ProposalActor::new(ProposalLogic::new(p, rules.clone())).start();
                        self.proposals.insert(pid, a.clone());
                        a
                    }
                    Ok(None) => {
                        reply.proposals.push((pid, Err("unknown proposal".into())));
                        continue;
                    }
                    Err(e) => {
                        reply.proposals.push((pid, Err(e.to_string())));
                        continue;
                    }
                },
            };
            sends.push(async move { (pid, addr.send(Apply { inputs, quorum }).await) });
        }
        let power_sends: Vec<_> =
            req.power.into_iter().filter_map(|(s, inputs)| self.shards.get(&s).cloned().map(|a| async move { a.send(ApplyPower(inputs)).await })).collect();
        let (answers, power) = futures::join!(futures::future::join_all(sends), futures::future::join_all(power_sends));
        let mut failed = false;
        for (pid, r) in answers {
            match r {
                Ok(Ok(applied)) => {
                    if applied.summary.status.is_final() {
                        // Passivate: revived from the store if anything arrives for it.
                        self.proposals.remove(&pid);
                    }
                    reply.proposals.push((pid, Ok(applied)));
                }
                Ok(Err(e)) => {
                    failed = true;
                    reply.proposals.push((pid, Err(format!("refused: {e}"))));
                }
                Err(e) => {
                    failed = true;
                    reply.proposals.push((pid, Err(format!("actor mailbox: {e}"))));
                }
            }
        }
        let mut writes = Vec::new();
        for r in power {
            match r {
                Ok(Ok(m)) => writes.extend(m),
                Ok(Err(e)) => {
                    failed = true;
                    reply.power = Err(e.to_string());
                }
                Err(e) => {
                    failed = true;
                    reply.power = Err(format!("shard mailbox: {e}"));
                }
            }
        }
        if reply.power.is_ok() {
            reply.power = Ok(writes);
        }
        // After a failure the next request reloads.
        self.position = if failed { None } else { Some((req.epoch, Some(req.to))) };
        metrics::gauge!(m::PROPOSAL_ACTORS_LIVE).set(self.proposals.len() as f64);
        reply
    }

    /// Serves requests for the partition until `stop` is set, the subscription ends, or this
    /// instance holds more than its fair `share` (then it gives one partition up: returns
    /// `Ok(true)` with `share.held` already decremented).
    pub async fn serve(mut self, bus: Arc<JetStreamBus>, stop: Arc<AtomicBool>, share: Arc<Share>) -> Result<bool, String> {
        let mut requests = bus.serve_requests(&subject(bus.chain_id(), self.partition)).await.map_err(|e| e.to_string())?;
        tracing::info!(target: "actors", partition = self.partition, instance = %self.instance, "serving the partition's actors");
        while !stop.load(Ordering::Relaxed) {
            let held = share.held.load(Ordering::Relaxed);
            if held > share.fair() && share.held.compare_exchange(held, held - 1, Ordering::SeqCst, Ordering::SeqCst).is_ok() {
                tracing::info!(target: "actors", partition = self.partition, held, fair = share.fair(), "more than a fair share of partitions; giving this one up");
                return Ok(true);
            }
            let incoming = match requests.next(&bus, Duration::from_millis(500)).await {
                NextRequest::Request(r) => r,
                NextRequest::Idle => continue,
                NextRequest::Ended => return Err("subscription ended".into()),
                NextRequest::Unreadable(e) => {
                    // No answer: the indexer asks again.
                    tracing::warn!(target: "actors", partition = self.partition, error = %e, "work request object not readable");
                    continue;
                }
            };
            let req: WorkRequest = match serde_json::from_slice(&incoming.body) {
                Ok(r) => r,
                Err(e) => {
                    metrics::counter!(m::BUS_TERMINATED_TOTAL).increment(1);
                    tracing::error!(target: "actors", partition = self.partition, error = %e, "undecodable work request dropped");
                    continue;
                }
            };
            let reply = self.handle(req).await;
            metrics::counter!(m::ACTORS_REQUESTS_SERVED_TOTAL).increment(1);
            let sent = match serde_json::to_vec(&reply) {
                Ok(body) => bus.respond(&incoming, &format!("reply-{}", reply.id), body.into()).await.map_err(|e| e.to_string()),
                Err(e) => Err(format!("reply not serialisable: {e}")),
            };
            if let Err(e) = sent {
                tracing::warn!(target: "actors", partition = self.partition, error = %e, "reply not sent; the indexer will ask again");
            }
        }
        Ok(false)
    }
}

/// How many partitions this instance may hold now: its fair share of the instances alive
/// (counted from their presence keys), rounded up.
pub struct Share {
    /// Partitions held by this instance.
    pub held: AtomicUsize,
    /// Instances alive (refreshed by the presence loop).
    pub alive: AtomicUsize,
    /// Partitions in all.
    pub partitions: usize,
}

impl Share {
    /// The fair share.
    pub fn fair(&self) -> usize {
        self.partitions.div_ceil(self.alive.load(Ordering::Relaxed).max(1))
    }

    /// Counts one more partition held, until the returned guard is dropped: the count comes
    /// back down however the serving ends, including when its future is dropped because the
    /// lease was lost (a count left up would keep this instance from ever taking a partition
    /// again, and that partition would go unserved).
    pub fn hold(self: &Arc<Self>) -> HeldPartition {
        self.held.fetch_add(1, Ordering::SeqCst);
        HeldPartition { share: self.clone(), counted: true }
    }
}

/// One partition counted in [`Share::held`] (see [`Share::hold`]).
pub struct HeldPartition {
    share: Arc<Share>,
    counted: bool,
}

impl HeldPartition {
    /// The worker gave the partition up and already took it off the count.
    pub fn given_up(mut self) {
        self.counted = false;
    }
}

impl Drop for HeldPartition {
    fn drop(&mut self) {
        if self.counted {
            self.share.held.fetch_sub(1, Ordering::SeqCst);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn share(partitions: usize) -> Arc<Share> {
        Arc::new(Share { held: AtomicUsize::new(0), alive: AtomicUsize::new(1), partitions })
    }

    #[tokio::test]
    async fn a_partition_whose_serving_future_is_dropped_is_no_longer_counted() {
        let share = share(2);
        let serving = {
            let share = share.clone();
            async move {
                let _held = share.hold();
                std::future::pending::<()>().await;
            }
        };
        // The lease is lost while the worker serves: the role loop drops the future.
        let lost = tokio::time::timeout(Duration::from_millis(20), serving).await;
        assert!(lost.is_err());
        assert_eq!(share.held.load(Ordering::SeqCst), 0, "a dropped worker must give its count back");
        assert!(share.held.load(Ordering::SeqCst) < share.fair(), "the instance may take the partition again");
    }

    #[test]
    fn a_partition_given_up_is_counted_down_once() {
        let share = share(4);
        let a = share.hold();
        let b = share.hold();
        assert_eq!(share.held.load(Ordering::SeqCst), 2);
        // The worker decrements the count itself when it gives a partition up (rebalancing).
        share.held.fetch_sub(1, Ordering::SeqCst);
        a.given_up();
        assert_eq!(share.held.load(Ordering::SeqCst), 1);
        drop(b);
        assert_eq!(share.held.load(Ordering::SeqCst), 0);
    }
}
