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
        _ => Arc::new(
            EmbeddedStore::open(&cfg.store.data_dir).with_context(|| format!("opening store in {}", cfg.store.data_dir.display()))?,
        ),
    };
    let governor = cfg.governor();
    let (mut info, fresh) = match store.info()? {
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
        store.init_info(&info)?;
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

    let bus: Arc<dyn crate::bus::Bus> =
        Arc::new(crate::bus::memory::InProcessBus::new(4096, Duration::from_secs(cfg.bus.duplicate_window_s)));
    let status = Arc::new(IndexerStatus::default());
    status.chain_id.store(chain_id, Ordering::Relaxed);
    let pipeline = Pipeline::new(
        store.clone(),
        info,
        ChainViews::Rpc(rpc.clone()),
        cfg.voter_power.shards,
        cfg.voter_power.cache_accounts_per_shard,
    )?
    .with_achievements(cfg.achievements.enabled);
    // What each commit changed, for websockets and cache invalidation.
    let changes = Arc::new(crate::streams::changes::ChangeHub::default());
    let pipeline = pipeline.with_changes(changes.clone());
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
    // in-process bus serves subscribers in this process.
    let (feed_bus, _) = tokio::sync::broadcast::channel(4096);
    let feed_end = store.feed_position()?;
    let listener = Listener::new(rpc.clone(), store.clone(), pipeline, settings, status.clone(), stop.clone())
        .with_publisher(crate::streams::achievements::Publisher::new(feed_bus.clone(), feed_end));
    let (fatal_tx, fatal_rx) = tokio::sync::oneshot::channel();
    let _listener = ListenerActor::new(listener, stop.clone(), fatal_tx).start();

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
    outcome
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
