//! Wiring: starts govflow's parts in a documented order.
//!
//! 1. metrics recorder;
//! 2. RPC client and chain-id check;
//! 3. store;
//! 4. discovery of the governor's token, timelock and modes (or the stored result);
//! 5. start block;
//! 6. pipeline with its proposal actors and voter-power shards;
//! 7. listener actor;
//! 8. HTTP API.
//!
//! Shutdown (SIGINT/SIGTERM) stops the listener between ranges and drains the HTTP server.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use actix::Actor;
use anyhow::Context as _;

use crate::actors::listener::ListenerActor;
use crate::chain::{discovery, ChainError, RetryPolicy, RpcClient};
use crate::config::Config;
use crate::http::{self, ApiState};
use crate::store::embedded::EmbeddedStore;
use crate::store::scylla::ScyllaStore;
use crate::store::Store;
use crate::streams::listener::{IndexerStatus, Listener, ListenerSettings};
use crate::streams::pipeline::{ChainViews, Pipeline};

/// Runs govflow until a signal or an unrecoverable error.
pub async fn run(cfg: Config) -> anyhow::Result<()> {
    let prometheus = crate::metrics::install().map_err(|e| anyhow::anyhow!("metrics: {e}"))?;
    let retry = RetryPolicy { max_attempts: cfg.chain.rpc_max_attempts, ..RetryPolicy::default() };
    let rpc = RpcClient::new(&cfg.chain.rpc_url, Duration::from_millis(cfg.chain.request_timeout_ms), retry)?;
    let chain_id = rpc.chain_id().await.with_context(|| format!("cannot reach the RPC node at {} (chain.rpc_url)", rpc.redacted_url()))?;
    if let Some(want) = cfg.chain.chain_id {
        if want != chain_id {
            return Err(ChainError::ChainIdMismatch { configured: want, actual: chain_id }).context("chain.chain_id");
        }
    }
    let store: Arc<dyn Store> = match cfg.store.backend.as_str() {
        "scylla" => {
            let s = ScyllaStore::connect(&cfg.scylla, cfg.scylla.migrate_on_start)
                .with_context(|| format!("opening the ScyllaDB store (keyspace {} on {})", cfg.scylla.keyspace, cfg.scylla.nodes))?;
            tracing::info!(target: "app", nodes = %cfg.scylla.nodes, keyspace = %cfg.scylla.keyspace, consistency = %cfg.scylla.consistency, "ScyllaDB store connected");
            Arc::new(s)
        }
        _ => Arc::new(EmbeddedStore::open(&cfg.store.data_dir).with_context(|| format!("opening store in {}", cfg.store.data_dir.display()))?),
    };
    let governor = cfg.governor();
    let stored = crate::store::off_thread(&store, |s| s.info()).await?;
    let (mut info, fresh) = match stored {
        Some(i) if i.governor == governor && i.chain_id == chain_id => (i, false),
        _ => (discovery::discover(&rpc, chain_id, governor).await.context("discovering the governor")?, true),
    };
    // Configured addresses (a deployment whose wiring discovery cannot see) win.
    let discovered = info.clone();
    cfg.apply_overrides(&mut info);
    if fresh || info != discovered {
        if !fresh {
            tracing::warn!(target: "app", "configured contract addresses differ from the stored ones; using the configured ones from the current block on");
        }
        let init = info.clone();
        crate::store::off_thread(&store, move |s| s.init_info(&init)).await?;
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
    let start_block = match cfg.chain.start_block {
        Some(b) => b,
        None => {
            let mut contracts = vec![info.governor, info.token];
            contracts.extend(info.timelock);
            contracts.extend(info.benefit_executor);
            contracts.extend(info.achievement_nft);
            let b = discovery::deployment_block(&rpc, &contracts).await?;
            tracing::info!(target: "app", start_block = b, "start block found from contract deployment");
            b
        }
    };

    let instance = cfg.bus.instance.clone().unwrap_or_else(|| {
        let host = std::env::var("HOSTNAME")
            .ok()
            .filter(|h| !h.is_empty())
            .or_else(|| std::fs::read_to_string("/etc/hostname").ok().map(|h| h.trim().to_string()).filter(|h| !h.is_empty()));
        format!("{}-{}", host.unwrap_or_else(|| "govflow".into()), std::process::id())
    });
    let jetstream = match cfg.bus.kind.as_str() {
        "nats" => Some(
            crate::bus::jetstream::JetStreamBus::connect(&cfg.bus, chain_id, &instance)
                .await
                .with_context(|| format!("connecting to NATS JetStream at {} (bus.nats_url)", crate::config::redact_url(&cfg.bus.nats_url)))?,
        ),
        _ => None,
    };
    let bus: Arc<dyn crate::bus::Bus> = match &jetstream {
        Some(js) => js.clone(),
        None => Arc::new(crate::bus::memory::InProcessBus::new(4096, Duration::from_secs(cfg.bus.duplicate_window_s))),
    };
    let status = Arc::new(IndexerStatus::default());
    status.chain_id.store(chain_id, Ordering::Relaxed);
    let new_pipeline = {
        let store = store.clone();
        let info = info.clone();
        let rpc = rpc.clone();
        let shards = cfg.voter_power.shards;
        let cache = cfg.voter_power.cache_accounts_per_shard;
        let achievements = cfg.achievements.enabled;
        // `actors`: where the proposal actors and voter-power shards run (`None`: here).
        move |actors: Option<Box<dyn crate::actors::host::ActorHost>>| {
            let (store, info, rpc) = (store.clone(), info.clone(), rpc.clone());
            async move {
                // The stored settings win over the discovered ones once indexing has begun.
                let stored = crate::store::off_thread(&store, |s| s.info()).await?;
                let info = stored.unwrap_or(info);
                let actors = actors.unwrap_or_else(|| Box::new(crate::actors::host::LocalActors::new(store.clone(), shards, cache)));
                Ok::<_, crate::streams::pipeline::PipelineError>(
                    Pipeline::with_actors(store, info, ChainViews::Rpc(rpc), shards, actors).await?.with_achievements(achievements),
                )
            }
        }
    };
    // What each commit changed, for websockets and cache invalidation.
    let changes = Arc::new(crate::streams::changes::ChangeHub::default());
    let stop = Arc::new(AtomicBool::new(false));
    let settings = ListenerSettings {
        start_block,
        confirmations: cfg.chain.confirmations,
        reorg_window: cfg.chain.reorg_window,
        max_range: cfg.chain.max_log_range,
        poll_interval: Duration::from_millis(cfg.chain.poll_interval_ms),
        header_concurrency: cfg.chain.header_concurrency,
        progress_interval: Duration::from_secs(cfg.chain.progress_interval_s),
    };
    // Governance events for the achievement system: the store's feed is the durable copy; the
    // in-process bus serves subscribers in this process, JetStream any subscriber.
    let (feed_bus, _) = tokio::sync::broadcast::channel(4096);
    let (fatal_tx, fatal_rx) = tokio::sync::oneshot::channel::<String>();
    // NATS mode's role, partition, presence and status tasks: awaited at shutdown.
    let mut tasks: Vec<tokio::task::JoinHandle<()>> = Vec::new();
    let _listener = match &jetstream {
        None => {
            let pipeline = new_pipeline(None).await?.with_changes(changes.clone());
            let feed_end = crate::store::off_thread(&store, |s| s.feed_position()).await?;
            let direct = crate::streams::destination::Direct::new(store.clone(), status.clone())
                .with_publisher(crate::streams::achievements::Publisher::new(feed_bus.clone(), feed_end).with_bus(bus.clone(), chain_id));
            let listener = Listener::new(rpc.clone(), store.clone(), pipeline, settings, status.clone(), stop.clone(), Box::new(direct));
            Some(ListenerActor::new(listener, stop.clone(), fatal_tx).start())
        }
        Some(js) => {
            status.confirmations.store(cfg.chain.confirmations, Ordering::Relaxed);
            status.start_block.store(start_block, Ordering::Relaxed);
            let fatal = Arc::new(std::sync::Mutex::new(Some(fatal_tx)));
            let ttl = Duration::from_secs(cfg.bus.lease_ttl_s);
            let partitions = cfg.bus.partitions;
            // The listener role: chain → events stream.
            {
                let (js, rpc, store, status, stop, settings, fatal, new_pipeline) =
                    (js.clone(), rpc.clone(), store.clone(), status.clone(), stop.clone(), settings.clone(), fatal.clone(), new_pipeline.clone());
                let (window, ahead) = (cfg.chain.reorg_window, cfg.bus.max_ahead_blocks);
                let holder = instance.clone();
                tasks.push(actix_rt::spawn(async move {
                    let r = crate::streams::relay::hold_role(js.clone(), "listener", holder, ttl, stop.clone(), || {
                        let (js, rpc, store, status, stop, settings) = (js.clone(), rpc.clone(), store.clone(), status.clone(), stop.clone(), settings.clone());
                        let pipeline = new_pipeline(None);
                        async move {
                            let pipeline = pipeline.await.map_err(|e| (!e.is_retryable(), e.to_string()))?;
                            let log =
                                crate::streams::relay::EventLog::new(js, status.chain_id.load(Ordering::Relaxed), settings.reorg_window.max(window), ahead);
                            let mut listener = Listener::new(rpc, store, pipeline, settings, status, stop, Box::new(log));
                            listener.run().await.map_err(|e| (!e.is_retryable(), e.to_string()))
                        }
                    })
                    .await;
                    if let Err(msg) = r {
                        if let Some(tx) = fatal.lock().unwrap_or_else(|p| p.into_inner()).take() {
                            let _ = tx.send(format!("listener: {msg}"));
                        }
                    }
                }));
            }
            // The indexer role: events stream → store → achievements stream.
            {
                let (js, store, status, stop, fatal, changes, new_pipeline) =
                    (js.clone(), store.clone(), status.clone(), stop.clone(), fatal.clone(), changes.clone(), new_pipeline.clone());
                let holder = instance.clone();
                let idle = Duration::from_millis(cfg.chain.poll_interval_ms.clamp(50, 1_000));
                let feed_bus = feed_bus.clone();
                tasks.push(actix_rt::spawn(async move {
                    let r = crate::streams::relay::hold_role(js.clone(), "indexer", holder, ttl, stop.clone(), || {
                        let (js, store, status, stop, changes, feed_bus) =
                            (js.clone(), store.clone(), status.clone(), stop.clone(), changes.clone(), feed_bus.clone());
                        let pipeline = new_pipeline(Some(Box::new(crate::actors::remote::RemoteActors::new(js.clone(), partitions))));
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
                        if let Some(tx) = fatal.lock().unwrap_or_else(|p| p.into_inner()).take() {
                            let _ = tx.send(format!("indexer: {msg}"));
                        }
                    }
                }));
            }
            // Every instance: the partitions of proposal actors and voter-power shards, up to
            // its fair share of the instances alive.
            let share = Arc::new(crate::actors::remote::Share {
                held: std::sync::atomic::AtomicUsize::new(0),
                alive: std::sync::atomic::AtomicUsize::new(1),
                partitions,
            });
            tasks.push(tokio::spawn(crate::streams::relay::presence(js.clone(), instance.clone(), ttl, share.clone(), stop.clone())));
            for part in 0..partitions {
                let (js, store, stop, share, fatal) = (js.clone(), store.clone(), stop.clone(), share.clone(), fatal.clone());
                let (shards, cache) = (cfg.voter_power.shards, cfg.voter_power.cache_accounts_per_shard);
                let holder = instance.clone();
                let may = share.clone();
                tasks.push(actix_rt::spawn(async move {
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
                        if let Some(tx) = fatal.lock().unwrap_or_else(|p| p.into_inner()).take() {
                            let _ = tx.send(format!("partition {part}: {msg}"));
                        }
                    }
                }));
            }
            // Every instance: status from the ranges and the store.
            tasks.push(tokio::spawn(crate::streams::relay::follow_status(
                js.clone(),
                store.clone(),
                status.clone(),
                Duration::from_millis(cfg.chain.poll_interval_ms.clamp(50, 1_000)),
                stop.clone(),
            )));
            None
        }
    };

    let (http_stop_tx, http_stop_rx) = tokio::sync::oneshot::channel::<()>();
    let state = ApiState {
        store: store.clone(),
        status: status.clone(),
        metrics: Some(prometheus),
        http: cfg.http.clone(),
        changes: changes.clone(),
        cache: Arc::new(crate::http::cache::Cache::new(&cfg.cache)),
        websocket: cfg.websocket.clone(),
        bus: bus.clone(),
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
    stop.store(true, Ordering::Relaxed);
    let _ = http_stop_tx.send(());
    let _ = tokio::time::timeout(Duration::from_secs(5), server).await;
    stop_tasks(tasks, Duration::from_secs(cfg.bus.lease_ttl_s.max(1) + 5)).await;
    outcome
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
