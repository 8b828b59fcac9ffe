//! Wiring: starts govflow's parts in a documented order.
//!
//! 1. metrics recorder;
//! 2. RPC client and chain-id check ([`connect_chain`]);
//! 3. store ([`open_store`]);
//! 4. discovery of the governor's token, timelock and modes, or the stored result
//!    ([`governor_info`]);
//! 5. start block ([`start_block`]);
//! 6. the bus: in-process, or NATS JetStream;
//! 7. embedded mode: the pipeline with its actors here and the listener actor
//!    ([`start_embedded`]); NATS mode: the listener, indexer and partition roles, presence and
//!    status tasks ([`start_cluster`]);
//! 8. HTTP API.
//!
//! Shutdown (SIGINT/SIGTERM) stops the listener between ranges and drains the HTTP server.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use actix::{Actor, Addr};
use anyhow::Context as _;

use crate::actors::host::{ActorHost, LocalActors};
use crate::actors::listener::ListenerActor;
use crate::bus::jetstream::JetStreamBus;
use crate::chain::{discovery, ChainError, RetryPolicy, RpcClient};
use crate::config::Config;
use crate::domain::GovernorInfo;
use crate::http::{self, ApiState};
use crate::store::embedded::EmbeddedStore;
use crate::store::scylla::ScyllaStore;
use crate::store::Store;
use crate::streams::destination::Direct;
use crate::streams::listener::{IndexerStatus, Listener, ListenerSettings};
use crate::streams::pipeline::{ChainViews, Pipeline, PipelineError};

/// Runs govflow until a signal or an unrecoverable error.
pub async fn run(cfg: Config) -> anyhow::Result<()> {
    let prometheus = crate::metrics::install().map_err(|e| anyhow::anyhow!("metrics: {e}"))?;
    let (rpc, chain_id) = connect_chain(&cfg).await?;
    let store = open_store(&cfg)?;
    let info = governor_info(&cfg, &store, &rpc, chain_id).await?;
    let start_block = start_block(&cfg, &rpc, &info).await?;
    let instance = instance_name(&cfg);
    let jetstream = match cfg.bus.kind {
        crate::config::BusKind::Nats => Some(
            crate::bus::jetstream::JetStreamBus::connect(&cfg.bus, chain_id, &instance)
                .await
                .with_context(|| format!("connecting to NATS JetStream at {} (bus.nats_url)", crate::config::redact_url(&cfg.bus.nats_url)))?,
        ),
        crate::config::BusKind::InProcess => None,
    };
    let bus: Arc<dyn crate::bus::Bus> = match &jetstream {
        Some(js) => js.clone(),
        None => Arc::new(crate::bus::memory::InProcessBus::new(4096, Duration::from_secs(cfg.bus.duplicate_window_s))),
    };
    let status = Arc::new(IndexerStatus::default());
    status.chain_id.store(chain_id, Ordering::Relaxed);
    let parts = Parts {
        new_pipeline: PipelineFactory {
            store: store.clone(),
            info,
            rpc: rpc.clone(),
            shards: cfg.voter_power.shards,
            cache: cfg.voter_power.cache_accounts_per_shard,
            achievements: cfg.achievements.enabled,
        },
        settings: ListenerSettings {
            start_block,
            confirmations: cfg.chain.confirmations,
            reorg_window: cfg.chain.reorg_window,
            max_range: cfg.chain.max_log_range,
            poll_interval: Duration::from_millis(cfg.chain.poll_interval_ms),
            header_concurrency: cfg.chain.header_concurrency,
            progress_interval: Duration::from_secs(cfg.chain.progress_interval_s),
        },
        rpc,
        store: store.clone(),
        status: status.clone(),
        // What each commit changed, for websockets and cache invalidation.
        changes: Arc::new(crate::streams::changes::ChangeHub::default()),
        stop: Arc::new(AtomicBool::new(false)),
        // Governance events for the achievement system: the store's feed is the durable copy;
        // the in-process bus serves subscribers in this process, JetStream any subscriber.
        feed_bus: tokio::sync::broadcast::channel(4096).0,
        bus: bus.clone(),
        chain_id,
        instance,
    };
    let (fatal_tx, fatal_rx) = tokio::sync::oneshot::channel::<String>();
    // The listener actor (embedded mode), or the NATS mode's role, partition, presence and
    // status tasks (awaited at shutdown).
    let (_listener, tasks) = match &jetstream {
        None => (Some(start_embedded(&parts, fatal_tx).await?), Vec::new()),
        Some(js) => (None, start_cluster(&cfg, &parts, js, fatal_tx)),
    };

    let (http_stop_tx, http_stop_rx) = tokio::sync::oneshot::channel::<()>();
    let state = ApiState {
        store,
        status,
        metrics: Some(prometheus),
        http: cfg.http.clone(),
        changes: parts.changes.clone(),
        cache: Arc::new(crate::http::cache::Cache::new(&cfg.cache)),
        websocket: cfg.websocket.clone(),
        bus,
    };
    // The read cache follows every commit from here on; it warms up once the listener caught up.
    crate::http::cache::start(state.clone());
    let (bound, server) = http::serve(state, cfg.listen(), async {
        let _ = http_stop_rx.await;
    })
    .with_context(|| format!("cannot listen on http.listen = {}", cfg.http.listen))?;
    tracing::info!(target: "app", listen = %bound, "API listening");
    let server = tokio::spawn(server);

    let outcome = tokio::select! {
        _ = shutdown_signal() => {
            tracing::info!(target: "app", "shutting down");
            Ok(())
        }
        r = fatal_rx => match r {
            Ok(msg) => Err(anyhow::anyhow!("listener stopped: {msg}")),
            Err(_) => Ok(()),
        },
    };
    parts.stop.store(true, Ordering::Relaxed);
    // The receiver may be gone already: then the server has stopped.
    let _ = http_stop_tx.send(());
    if tokio::time::timeout(Duration::from_secs(5), server).await.is_err() {
        tracing::warn!(target: "app", "HTTP server still draining after 5 s; leaving it");
    }
    stop_tasks(tasks, Duration::from_secs(cfg.bus.lease_ttl_s.max(1) + 5)).await;
    outcome
}

/// The RPC client, and the chain id checked against the configured one.
async fn connect_chain(cfg: &Config) -> anyhow::Result<(RpcClient, u64)> {
    let retry = RetryPolicy { max_attempts: cfg.chain.rpc_max_attempts, ..RetryPolicy::default() };
    let rpc = RpcClient::new(&cfg.chain.rpc_url, Duration::from_millis(cfg.chain.request_timeout_ms), retry)?;
    let chain_id = rpc.chain_id().await.with_context(|| format!("cannot reach the RPC node at {} (chain.rpc_url)", rpc.redacted_url()))?;
    if let Some(want) = cfg.chain.chain_id {
        if want != chain_id {
            return Err(ChainError::ChainIdMismatch { configured: want, actual: chain_id }).context("chain.chain_id");
        }
    }
    Ok((rpc, chain_id))
}

/// The store of `[store] backend`.
fn open_store(cfg: &Config) -> anyhow::Result<Arc<dyn Store>> {
    Ok(match cfg.store.backend {
        crate::config::StoreBackend::Scylla => {
            let s = ScyllaStore::connect(&cfg.scylla, cfg.scylla.migrate_on_start)
                .with_context(|| format!("opening the ScyllaDB store (keyspace {} on {})", cfg.scylla.keyspace, cfg.scylla.nodes))?;
            tracing::info!(target: "app", nodes = %cfg.scylla.nodes, keyspace = %cfg.scylla.keyspace, consistency = ?cfg.scylla.consistency, "ScyllaDB store connected");
            Arc::new(s)
        }
        crate::config::StoreBackend::Embedded => {
            Arc::new(EmbeddedStore::open(&cfg.store.data_dir).with_context(|| format!("opening store in {}", cfg.store.data_dir.display()))?)
        }
    })
}

/// The governor's settings: stored, or discovered on chain (then stored), with the configured
/// contract addresses winning.
async fn governor_info(cfg: &Config, store: &Arc<dyn Store>, rpc: &RpcClient, chain_id: u64) -> anyhow::Result<GovernorInfo> {
    let governor = cfg.governor();
    let stored = crate::store::off_thread(store, |s| s.info()).await?;
    let (mut info, fresh) = match stored {
        Some(i) if i.governor == governor && i.chain_id == chain_id => (i, false),
        _ => (discovery::discover(rpc, chain_id, governor).await.context("discovering the governor")?, true),
    };
    // Configured addresses (a deployment whose wiring discovery cannot see) win.
    let discovered = info.clone();
    cfg.apply_overrides(&mut info);
    if fresh || info != discovered {
        if !fresh {
            tracing::warn!(target: "app", "configured contract addresses differ from the stored ones; using the configured ones from the current block on");
        }
        let init = info.clone();
        crate::store::off_thread(store, move |s| s.init_info(&init)).await?;
    }
    tracing::info!(
        target: "app",
        chain_id,
        rpc = rpc.redacted_url(),
        governor = %info.governor,
        name = %info.name,
        token = %info.token,
        timelock = ?info.timelock,
        benefit_executor = ?info.benefit_executor,
        achievement_nft = ?info.achievement_nft,
        clock_mode = ?info.clock_mode,
        counting_mode = %info.counting_mode,
        "governor discovered"
    );
    Ok(info)
}

/// `chain.start_block`, or the block the first of the governance contracts was deployed in.
async fn start_block(cfg: &Config, rpc: &RpcClient, info: &GovernorInfo) -> anyhow::Result<u64> {
    if let Some(b) = cfg.chain.start_block {
        return Ok(b);
    }
    let mut contracts = vec![info.governor, info.token];
    contracts.extend(info.timelock);
    contracts.extend(info.benefit_executor);
    contracts.extend(info.achievement_nft);
    let b = discovery::deployment_block(rpc, &contracts).await?;
    tracing::info!(target: "app", start_block = b, "start block found from contract deployment");
    Ok(b)
}

/// `bus.instance`, or `<hostname>-<pid>`.
fn instance_name(cfg: &Config) -> String {
    cfg.bus.instance.clone().unwrap_or_else(|| {
        let host = std::env::var("HOSTNAME")
            .ok()
            .filter(|h| !h.is_empty())
            .or_else(|| std::fs::read_to_string("/etc/hostname").ok().map(|h| h.trim().to_string()).filter(|h| !h.is_empty()));
        format!("{}-{}", host.unwrap_or_else(|| "govflow".into()), std::process::id())
    })
}

/// Builds pipelines: at start (embedded mode) and each time this instance takes the listener
/// or the indexer role (NATS mode).
#[derive(Clone)]
struct PipelineFactory {
    store: Arc<dyn Store>,
    info: GovernorInfo,
    rpc: RpcClient,
    shards: usize,
    cache: usize,
    achievements: bool,
}

impl PipelineFactory {
    /// A pipeline whose actors run in `actors` (`None`: in this process).
    fn build(&self, actors: Option<Box<dyn ActorHost>>) -> impl std::future::Future<Output = Result<Pipeline, PipelineError>> + 'static {
        let f = self.clone();
        async move {
            // The stored settings win over the discovered ones once indexing has begun.
            let stored = crate::store::off_thread(&f.store, |s| s.info()).await?;
            let info = stored.unwrap_or(f.info);
            let actors = actors.unwrap_or_else(|| Box::new(LocalActors::new(f.store.clone(), f.shards, f.cache)));
            Ok(Pipeline::with_actors(f.store, info, ChainViews::Rpc(f.rpc), f.shards, actors).await?.with_achievements(f.achievements))
        }
    }
}

/// What the parts started below share.
struct Parts {
    new_pipeline: PipelineFactory,
    settings: ListenerSettings,
    rpc: RpcClient,
    store: Arc<dyn Store>,
    status: Arc<IndexerStatus>,
    changes: Arc<crate::streams::changes::ChangeHub>,
    stop: Arc<AtomicBool>,
    feed_bus: tokio::sync::broadcast::Sender<crate::domain::achievement::FeedItem>,
    bus: Arc<dyn crate::bus::Bus>,
    chain_id: u64,
    instance: String,
}

/// Embedded mode: the listener actor commits through the pipeline in this process.
async fn start_embedded(p: &Parts, fatal: tokio::sync::oneshot::Sender<String>) -> anyhow::Result<Addr<ListenerActor<Listener>>> {
    let pipeline = p.new_pipeline.build(None).await?.with_changes(p.changes.clone());
    let feed_end = crate::store::off_thread(&p.store, |s| s.feed_position()).await?;
    let publisher = crate::streams::achievements::Publisher::new(p.feed_bus.clone(), feed_end).with_bus(p.bus.clone(), p.chain_id);
    let direct = Direct::new(p.store.clone(), p.status.clone()).with_publisher(publisher);
    let listener = Listener::new(p.rpc.clone(), p.store.clone(), pipeline, p.settings.clone(), p.status.clone(), p.stop.clone(), Box::new(direct));
    Ok(ListenerActor::new(listener, p.stop.clone(), fatal).start())
}

/// The first unrecoverable error of a task stops govflow (later ones are only logged).
#[derive(Clone)]
struct Fatal(Arc<std::sync::Mutex<Option<tokio::sync::oneshot::Sender<String>>>>);

impl Fatal {
    fn report(&self, what: &str, msg: String) {
        tracing::error!(target: "app", task = what, error = %msg, "unrecoverable error");
        if let Some(tx) = self.0.lock().unwrap_or_else(|p| p.into_inner()).take() {
            // The receiver is gone only when govflow is already stopping.
            let _ = tx.send(format!("{what}: {msg}"));
        }
    }
}

/// NATS mode: the listener and indexer roles, the partitions of actors, presence and status,
/// each a task (see the README's "Several instances").
fn start_cluster(cfg: &Config, p: &Parts, js: &Arc<JetStreamBus>, fatal_tx: tokio::sync::oneshot::Sender<String>) -> Vec<tokio::task::JoinHandle<()>> {
    p.status.confirmations.store(cfg.chain.confirmations, Ordering::Relaxed);
    p.status.start_block.store(p.settings.start_block, Ordering::Relaxed);
    let fatal = Fatal(Arc::new(std::sync::Mutex::new(Some(fatal_tx))));
    let ttl = Duration::from_secs(cfg.bus.lease_ttl_s);
    let mut tasks = vec![listener_role(cfg, p, js, &fatal, ttl), indexer_role(cfg, p, js, &fatal, ttl)];
    // Every instance: the partitions of proposal actors and voter-power shards, up to its fair
    // share of the instances alive.
    let partitions = cfg.bus.partitions;
    let share =
        Arc::new(crate::actors::remote::Share { held: std::sync::atomic::AtomicUsize::new(0), alive: std::sync::atomic::AtomicUsize::new(1), partitions });
    tasks.push(tokio::spawn(crate::streams::relay::presence(js.clone(), p.instance.clone(), ttl, share.clone(), p.stop.clone())));
    tasks.extend((0..partitions).map(|part| partition_role(cfg, p, js, &fatal, ttl, &share, part)));
    // Every instance: status from the ranges and the store.
    tasks.push(tokio::spawn(crate::streams::relay::follow_status(
        js.clone(),
        p.store.clone(),
        p.status.clone(),
        Duration::from_millis(cfg.chain.poll_interval_ms.clamp(50, 1_000)),
        p.stop.clone(),
    )));
    tasks
}

/// The listener role: chain → events stream.
fn listener_role(cfg: &Config, p: &Parts, js: &Arc<JetStreamBus>, fatal: &Fatal, ttl: Duration) -> tokio::task::JoinHandle<()> {
    let (js, rpc, store, status, stop, settings, fatal, new_pipeline) =
        (js.clone(), p.rpc.clone(), p.store.clone(), p.status.clone(), p.stop.clone(), p.settings.clone(), fatal.clone(), p.new_pipeline.clone());
    let (window, ahead) = (cfg.chain.reorg_window, cfg.bus.max_ahead_blocks);
    let holder = p.instance.clone();
    actix_rt::spawn(async move {
        let r = crate::streams::relay::hold_role(js.clone(), "listener", holder, ttl, stop.clone(), || {
            let (js, rpc, store, status, stop, settings) = (js.clone(), rpc.clone(), store.clone(), status.clone(), stop.clone(), settings.clone());
            let pipeline = new_pipeline.build(None);
            async move {
                let pipeline = pipeline.await.map_err(|e| (!e.is_retryable(), e.to_string()))?;
                let log = crate::streams::relay::EventLog::new(js, status.chain_id.load(Ordering::Relaxed), settings.reorg_window.max(window), ahead);
                let mut listener = Listener::new(rpc, store, pipeline, settings, status, stop, Box::new(log));
                listener.run().await.map_err(|e| (!e.is_retryable(), e.to_string()))
            }
        })
        .await;
        if let Err(msg) = r {
            fatal.report("listener", msg);
        }
    })
}

/// The indexer role: events stream → store → achievements stream.
fn indexer_role(cfg: &Config, p: &Parts, js: &Arc<JetStreamBus>, fatal: &Fatal, ttl: Duration) -> tokio::task::JoinHandle<()> {
    let (js, store, status, stop, fatal, changes, new_pipeline, feed_bus) =
        (js.clone(), p.store.clone(), p.status.clone(), p.stop.clone(), fatal.clone(), p.changes.clone(), p.new_pipeline.clone(), p.feed_bus.clone());
    let holder = p.instance.clone();
    let idle = Duration::from_millis(cfg.chain.poll_interval_ms.clamp(50, 1_000));
    let partitions = cfg.bus.partitions;
    actix_rt::spawn(async move {
        let r = crate::streams::relay::hold_role(js.clone(), "indexer", holder, ttl, stop.clone(), || {
            let (js, store, status, stop, changes, feed_bus) = (js.clone(), store.clone(), status.clone(), stop.clone(), changes.clone(), feed_bus.clone());
            let pipeline = new_pipeline.build(Some(Box::new(crate::actors::remote::RemoteActors::new(js.clone(), partitions))));
            async move {
                let fail = |e: crate::streams::relay::IndexerError| (!e.is_retryable(), e.to_string());
                let pipeline = pipeline.await.map_err(|e| (!e.is_retryable(), e.to_string()))?.with_changes(changes);
                let sent = crate::streams::relay::AchievementRelay::resume_position(&js).await.map_err(|e| fail(e.into()))?;
                let feed_end = crate::store::off_thread(&store, |s| s.feed_position()).await.map_err(|e| fail(e.into()))?;
                let chain_id = status.chain_id.load(Ordering::Relaxed);
                let publisher = crate::streams::achievements::Publisher::new(feed_bus, feed_end);
                let relay = crate::streams::relay::AchievementRelay::new(js.clone(), chain_id, sent);
                let mut indexer = crate::streams::relay::Indexer::new(js, store, pipeline, status, Some((publisher, relay)), idle, stop);
                indexer.run().await.map_err(fail)
            }
        })
        .await;
        if let Err(msg) = r {
            fatal.report("indexer", msg);
        }
    })
}

/// The role of partition `part`: its proposal actors and voter-power shards, while this
/// instance holds the partition's lease and no more than its fair `share`.
fn partition_role(
    cfg: &Config,
    p: &Parts,
    js: &Arc<JetStreamBus>,
    fatal: &Fatal,
    ttl: Duration,
    share: &Arc<crate::actors::remote::Share>,
    part: usize,
) -> tokio::task::JoinHandle<()> {
    let (js, store, stop, share, fatal) = (js.clone(), p.store.clone(), p.stop.clone(), share.clone(), fatal.clone());
    let (partitions, shards, cache) = (cfg.bus.partitions, cfg.voter_power.shards, cfg.voter_power.cache_accounts_per_shard);
    let holder = p.instance.clone();
    let may = share.clone();
    actix_rt::spawn(async move {
        let r = crate::streams::relay::hold_role_when(
            js.clone(),
            format!("partition-{part}"),
            holder.clone(),
            ttl,
            stop.clone(),
            move || may.held.load(Ordering::Relaxed) < may.fair(),
            || {
                let worker = crate::actors::remote::PartitionWorker::new(part, partitions, shards, cache, store.clone(), holder.clone());
                let (js, stop, share) = (js.clone(), stop.clone(), share.clone());
                async move {
                    let held = share.hold();
                    let r = worker.serve(js, stop, share.clone()).await;
                    if matches!(r, Ok(true)) {
                        held.given_up();
                    }
                    r.map(|_| ()).map_err(|e| (false, e))
                }
            },
        )
        .await;
        if let Err(msg) = r {
            fatal.report(&format!("partition {part}"), msg);
        }
    })
}

/// Shutdown order: the tasks see the stop flag, finish their current step, give their leases
/// up and drop their NATS subscriptions while the runtime still runs (a subscription dropped
/// after it, when the runtime drops leftover tasks, panics in async-nats: its `Drop` spawns
/// the unsubscribe on the runtime). What has not finished in `patience` is aborted and awaited,
/// which drops it inside the runtime too.
async fn stop_tasks(tasks: Vec<tokio::task::JoinHandle<()>>, patience: Duration) {
    if tasks.is_empty() {
        return;
    }
    let aborts: Vec<tokio::task::AbortHandle> = tasks.iter().map(|t| t.abort_handle()).collect();
    let all = futures::future::join_all(tasks);
    tokio::pin!(all);
    if tokio::time::timeout(patience, &mut all).await.is_err() {
        tracing::warn!(target: "app", "tasks still running at shutdown; aborting them");
        for a in &aborts {
            a.abort();
        }
        all.await;
    }
    tracing::info!(target: "app", "stopped");
}

async fn shutdown_signal() {
    #[cfg(unix)]
    {
        let mut term = match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(s) => s,
            Err(_) => {
                let _ = tokio::signal::ctrl_c().await;
                return;
            }
        };
        tokio::select! {
            _ = tokio::signal::ctrl_c() => {}
            _ = term.recv() => {}
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
    }
}
