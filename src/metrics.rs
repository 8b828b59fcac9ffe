//! Every metric govflow exports, named `govflow_<component>_<noun>_<unit>[_total]`.
//!
//! Labels are bounded sets (RPC method, error kind, status, route); never a proposal id or an
//! address.

/// Blocks indexed (committed). Counter.
pub const LISTENER_BLOCKS_PROCESSED_TOTAL: &str = "govflow_listener_blocks_processed_total";
/// Logs fetched from the node. Counter.
pub const LISTENER_LOGS_FETCHED_TOTAL: &str = "govflow_listener_logs_fetched_total";
/// Chain head as last seen. Gauge.
pub const LISTENER_HEAD_BLOCK: &str = "govflow_listener_head_block";
/// Last committed block. Gauge.
pub const LISTENER_INDEXED_BLOCK: &str = "govflow_listener_indexed_block";
/// Blocks left to backfill. Gauge.
pub const LISTENER_BACKFILL_REMAINING_BLOCKS: &str = "govflow_listener_backfill_remaining_blocks";
/// Backfill rate over the last progress interval. Gauge.
pub const LISTENER_BACKFILL_RATE_BLOCKS_PER_SECOND: &str = "govflow_listener_backfill_rate_blocks_per_second";
/// Current `eth_getLogs` range size. Gauge.
pub const LISTENER_LOG_RANGE_BLOCKS: &str = "govflow_listener_log_range_blocks";
/// Log ranges split after a refusal. Counter.
pub const LISTENER_RANGE_SPLITS_TOTAL: &str = "govflow_listener_range_splits_total";
/// Reorgs detected. Counter.
pub const LISTENER_REORGS_TOTAL: &str = "govflow_listener_reorgs_total";
/// Depth of the last reorg in blocks. Gauge.
pub const LISTENER_REORG_DEPTH_BLOCKS: &str = "govflow_listener_reorg_depth_blocks";
/// Listener restarts after an error. Counter, label `reason`.
pub const LISTENER_RESTARTS_TOTAL: &str = "govflow_listener_restarts_total";

/// RPC request duration. Histogram, label `method`.
pub const CHAIN_RPC_DURATION_SECONDS: &str = "govflow_chain_rpc_duration_seconds";
/// RPC errors. Counter, labels `method`, `kind`.
pub const CHAIN_RPC_ERRORS_TOTAL: &str = "govflow_chain_rpc_errors_total";
/// RPC retries. Counter, label `method`.
pub const CHAIN_RPC_RETRIES_TOTAL: &str = "govflow_chain_rpc_retries_total";

/// Logs that could not be decoded (unknown or malformed). Counter.
pub const DECODE_UNDECODABLE_TOTAL: &str = "govflow_decode_undecodable_total";
/// Events applied. Counter.
pub const PIPELINE_EVENTS_TOTAL: &str = "govflow_pipeline_events_total";
/// Votes applied. Counter.
pub const PIPELINE_VOTES_TOTAL: &str = "govflow_pipeline_votes_total";
/// Proposals created. Counter.
pub const PIPELINE_PROPOSALS_CREATED_TOTAL: &str = "govflow_pipeline_proposals_created_total";
/// Events about proposals never seen (start block too late). Counter.
pub const PIPELINE_ORPHAN_EVENTS_TOTAL: &str = "govflow_pipeline_orphan_events_total";

/// Live proposal actors. Gauge.
pub const PROPOSAL_ACTORS_LIVE: &str = "govflow_proposal_actors_live";
/// Proposal actors that died and were restarted from the store. Counter.
pub const PROPOSAL_ACTOR_RESTARTS_TOTAL: &str = "govflow_proposal_actor_restarts_total";

/// Proposals per status. Gauge, label `status` (the eight contract states).
pub const PROPOSALS: &str = "govflow_proposals";
/// Decided proposals that passed (Succeeded, Queued, Executed, Expired over those plus Defeated). Gauge.
pub const PROPOSALS_PASS_RATIO: &str = "govflow_proposals_pass_ratio";
/// Passed proposals that were executed. Gauge.
pub const PROPOSALS_EXECUTED_RATIO: &str = "govflow_proposals_executed_ratio";

/// Governance events published to the feed once final, and retractions. Counter, label `type`.
pub const ACHIEVEMENTS_PUBLISHED_TOTAL: &str = "govflow_achievements_published_total";

/// Store commit duration. Histogram.
pub const STORE_COMMIT_DURATION_SECONDS: &str = "govflow_store_commit_duration_seconds";
/// Counter: vote counters corrected by reconciliation (ScyllaDB store).
pub const STORE_COUNTER_CORRECTIONS_TOTAL: &str = "govflow_store_counter_corrections_total";
/// Counter: vote records already present when written again (replays; counters untouched).
pub const STORE_VOTE_REPLAYS_TOTAL: &str = "govflow_store_vote_replays_total";

/// HTTP request duration. Histogram, labels `route`, `status`.
pub const HTTP_REQUEST_DURATION_SECONDS: &str = "govflow_http_request_duration_seconds";
/// HTTP requests. Counter, labels `route`, `status`.
pub const HTTP_REQUESTS_TOTAL: &str = "govflow_http_requests_total";

/// Open websocket connections on `/v1/ws`. Gauge.
pub const WEBSOCKET_CONNECTIONS: &str = "govflow_websocket_connections";
/// Websocket connections refused over `websocket.max_connections` (HTTP 503). Counter.
pub const WEBSOCKET_CONNECTIONS_REFUSED_TOTAL: &str = "govflow_websocket_connections_refused_total";
/// Topic subscriptions over all websocket connections. Gauge.
pub const WEBSOCKET_SUBSCRIPTIONS: &str = "govflow_websocket_subscriptions";
/// Messages written to websocket clients. Counter.
pub const WEBSOCKET_MESSAGES_SENT_TOTAL: &str = "govflow_websocket_messages_sent_total";
/// Websocket clients dropped by the server. Counter, label `reason` (`slow`: queue full, `idle`: silent).
pub const WEBSOCKET_CLIENTS_DROPPED_TOTAL: &str = "govflow_websocket_clients_dropped_total";

/// Cacheable reads by cache level and result. Counter, labels `level` (`l1`, `l2`), `result`
/// (`hit`, `miss`, `bypass`: the cache had not yet applied the last indexed block's changes).
pub const CACHE_LOOKUPS_TOTAL: &str = "govflow_cache_lookups_total";
/// Share of cacheable reads answered from a cache level since start. Gauge.
pub const CACHE_HIT_RATIO: &str = "govflow_cache_hit_ratio";
/// Entries in the in-process cache. Gauge.
pub const CACHE_ENTRIES: &str = "govflow_cache_entries";
/// Cache invalidations. Counter, label `source` (`chain`, `rollback`, `lagged`, `remote`, `admin`).
pub const CACHE_INVALIDATIONS_TOTAL: &str = "govflow_cache_invalidations_total";
/// Redis operations that failed or timed out (the request fell back to the store). Counter,
/// label `op` (`connect`, `lookup`, `store`, `invalidate`, `clean`).
pub const CACHE_REDIS_ERRORS_TOTAL: &str = "govflow_cache_redis_errors_total";
/// Requests answered 503 after `http.request_timeout_ms`. Counter, label `route`.
pub const HTTP_REQUEST_TIMEOUTS_TOTAL: &str = "govflow_http_request_timeouts_total";
/// Requests refused with 429 by the per-client rate limit. Counter.
pub const HTTP_RATE_LIMITED_TOTAL: &str = "govflow_http_rate_limited_total";

/// Messages published on the bus and acknowledged. Counter.
pub const BUS_PUBLISHED_TOTAL: &str = "govflow_bus_published_total";
/// Publishes the server reported as duplicates (dropped by `Nats-Msg-Id`). Counter.
pub const BUS_DUPLICATES_TOTAL: &str = "govflow_bus_duplicates_total";
/// Publish batches that failed (retried by the caller). Counter.
pub const BUS_PUBLISH_FAILURES_TOTAL: &str = "govflow_bus_publish_failures_total";
/// Time from sending a batch of messages to the last acknowledgement. Histogram.
pub const BUS_PUBLISH_DURATION_SECONDS: &str = "govflow_bus_publish_duration_seconds";
/// Messages of the events stream the indexer has not acknowledged yet. Gauge.
pub const BUS_CONSUMER_LAG_MESSAGES: &str = "govflow_bus_consumer_lag_messages";
/// Messages delivered again (after a crash, a failover or a failed commit). Counter.
pub const BUS_REDELIVERIES_TOTAL: &str = "govflow_bus_redeliveries_total";
/// Messages that could not be decoded and were terminated. Counter.
pub const BUS_TERMINATED_TOTAL: &str = "govflow_bus_terminated_total";
/// Role leases taken (listener, indexer). Counter, label `role`.
pub const BUS_LEASES_ACQUIRED_TOTAL: &str = "govflow_bus_leases_acquired_total";
/// Whether this instance holds a role now. Gauge, label `role`.
pub const BUS_ROLE_HELD: &str = "govflow_bus_role_held";
/// Round trip of a partition's work request (NATS mode). Histogram.
pub const ACTORS_REMOTE_DURATION_SECONDS: &str = "govflow_actors_remote_duration_seconds";
/// Work requests sent again (no answer, lease moving). Counter.
pub const ACTORS_REMOTE_RETRIES_TOTAL: &str = "govflow_actors_remote_retries_total";
/// Partition workers that reloaded their actors from the store (takeover, retry). Counter.
pub const ACTORS_REMOTE_RELOADS_TOTAL: &str = "govflow_actors_remote_reloads_total";
/// Work requests this instance's partitions answered. Counter.
pub const ACTORS_REQUESTS_SERVED_TOTAL: &str = "govflow_actors_requests_served_total";
/// Partitions this instance serves now. Gauge.
pub const ACTORS_PARTITIONS_HELD: &str = "govflow_actors_partitions_held";
/// Events received with `POST /v1/events/governance`. Counter, label `outcome`.
pub const BUS_INBOUND_EVENTS_TOTAL: &str = "govflow_bus_inbound_events_total";
/// Partition requests and replies sent through the work object store (too large for one
/// message). Counter.
pub const ACTORS_BLOB_TRANSFERS_TOTAL: &str = "govflow_actors_blob_transfers_total";

/// Installs the Prometheus recorder and describes every metric.
pub fn install() -> Result<metrics_exporter_prometheus::PrometheusHandle, String> {
    use metrics_exporter_prometheus::{Matcher, PrometheusBuilder};
    let buckets = [0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0];
    let handle = PrometheusBuilder::new()
        .set_buckets_for_metric(Matcher::Suffix("_seconds".into()), &buckets)
        .map_err(|e| e.to_string())?
        .install_recorder()
        .map_err(|e| e.to_string())?;
    describe();
    Ok(handle)
}

fn describe() {
    use metrics::{describe_counter, describe_gauge, describe_histogram, Unit};
    describe_counter!(BUS_PUBLISHED_TOTAL, Unit::Count, "Messages published on the bus and acknowledged");
    describe_counter!(BUS_DUPLICATES_TOTAL, Unit::Count, "Publishes dropped by the server as duplicates (Nats-Msg-Id)");
    describe_counter!(BUS_PUBLISH_FAILURES_TOTAL, Unit::Count, "Publish batches that failed and were retried");
    describe_histogram!(BUS_PUBLISH_DURATION_SECONDS, Unit::Seconds, "Time from sending a batch to its last acknowledgement");
    describe_gauge!(BUS_CONSUMER_LAG_MESSAGES, Unit::Count, "Events-stream messages the indexer has not acknowledged");
    describe_counter!(BUS_REDELIVERIES_TOTAL, Unit::Count, "Messages delivered again");
    describe_counter!(BUS_TERMINATED_TOTAL, Unit::Count, "Undecodable messages terminated");
    describe_counter!(BUS_LEASES_ACQUIRED_TOTAL, Unit::Count, "Role leases taken");
    describe_gauge!(BUS_ROLE_HELD, Unit::Count, "1 while this instance holds the role");
    describe_histogram!(ACTORS_REMOTE_DURATION_SECONDS, Unit::Seconds, "Round trip of a partition's work request");
    describe_counter!(ACTORS_REMOTE_RETRIES_TOTAL, Unit::Count, "Work requests sent again");
    describe_counter!(ACTORS_REMOTE_RELOADS_TOTAL, Unit::Count, "Partition workers reloading their actors from the store");
    describe_counter!(ACTORS_REQUESTS_SERVED_TOTAL, Unit::Count, "Work requests this instance's partitions answered");
    describe_gauge!(ACTORS_PARTITIONS_HELD, Unit::Count, "Partitions this instance serves");
    describe_counter!(BUS_INBOUND_EVENTS_TOTAL, Unit::Count, "Events received on POST /v1/events/governance");
    describe_counter!(ACTORS_BLOB_TRANSFERS_TOTAL, Unit::Count, "Partition requests and replies sent through the work object store");
    describe_counter!(STORE_COUNTER_CORRECTIONS_TOTAL, Unit::Count, "Vote counters corrected by reconciliation");
    describe_counter!(STORE_VOTE_REPLAYS_TOTAL, Unit::Count, "Vote records written again and left as they were");
    describe_counter!(LISTENER_BLOCKS_PROCESSED_TOTAL, Unit::Count, "Blocks indexed and committed");
    describe_counter!(LISTENER_LOGS_FETCHED_TOTAL, Unit::Count, "Logs fetched from the node");
    describe_gauge!(LISTENER_HEAD_BLOCK, Unit::Count, "Chain head as last seen");
    describe_gauge!(LISTENER_INDEXED_BLOCK, Unit::Count, "Last committed block");
    describe_gauge!(LISTENER_BACKFILL_REMAINING_BLOCKS, Unit::Count, "Blocks left to backfill");
    describe_gauge!(LISTENER_BACKFILL_RATE_BLOCKS_PER_SECOND, Unit::CountPerSecond, "Backfill rate");
    describe_gauge!(LISTENER_LOG_RANGE_BLOCKS, Unit::Count, "Current eth_getLogs range size");
    describe_counter!(LISTENER_RANGE_SPLITS_TOTAL, Unit::Count, "Log ranges split after a refusal");
    describe_counter!(LISTENER_REORGS_TOTAL, Unit::Count, "Reorgs detected and rolled back");
    describe_gauge!(LISTENER_REORG_DEPTH_BLOCKS, Unit::Count, "Depth of the last reorg");
    describe_counter!(LISTENER_RESTARTS_TOTAL, Unit::Count, "Listener restarts after an error");
    describe_histogram!(CHAIN_RPC_DURATION_SECONDS, Unit::Seconds, "RPC request duration");
    describe_counter!(CHAIN_RPC_ERRORS_TOTAL, Unit::Count, "RPC errors");
    describe_counter!(CHAIN_RPC_RETRIES_TOTAL, Unit::Count, "RPC retries");
    describe_counter!(DECODE_UNDECODABLE_TOTAL, Unit::Count, "Logs that could not be decoded");
    describe_counter!(PIPELINE_EVENTS_TOTAL, Unit::Count, "Governance events applied");
    describe_counter!(PIPELINE_VOTES_TOTAL, Unit::Count, "Votes applied");
    describe_counter!(PIPELINE_PROPOSALS_CREATED_TOTAL, Unit::Count, "Proposals created");
    describe_counter!(PIPELINE_ORPHAN_EVENTS_TOTAL, Unit::Count, "Events about unknown proposals");
    describe_gauge!(PROPOSAL_ACTORS_LIVE, Unit::Count, "Live proposal actors");
    describe_counter!(PROPOSAL_ACTOR_RESTARTS_TOTAL, Unit::Count, "Proposal actors restarted");
    describe_gauge!(PROPOSALS, Unit::Count, "Proposals per status");
    describe_gauge!(PROPOSALS_PASS_RATIO, "Share of decided proposals that passed");
    describe_gauge!(PROPOSALS_EXECUTED_RATIO, "Share of passed proposals that were executed");
    describe_counter!(ACHIEVEMENTS_PUBLISHED_TOTAL, Unit::Count, "Governance events published once final, and retractions");
    describe_histogram!(STORE_COMMIT_DURATION_SECONDS, Unit::Seconds, "Store batch commit duration");
    describe_histogram!(HTTP_REQUEST_DURATION_SECONDS, Unit::Seconds, "HTTP request duration");
    describe_counter!(HTTP_REQUESTS_TOTAL, Unit::Count, "HTTP requests");
    describe_counter!(CACHE_LOOKUPS_TOTAL, Unit::Count, "Cacheable reads by cache level and result");
    describe_gauge!(CACHE_HIT_RATIO, "Share of cacheable reads answered from a cache level");
    describe_gauge!(CACHE_ENTRIES, Unit::Count, "Entries in the in-process cache");
    describe_counter!(CACHE_INVALIDATIONS_TOTAL, Unit::Count, "Cache invalidations");
    describe_counter!(CACHE_REDIS_ERRORS_TOTAL, Unit::Count, "Redis operations that failed or timed out");
    describe_counter!(HTTP_REQUEST_TIMEOUTS_TOTAL, Unit::Count, "Requests answered 503 after the request timeout");
    describe_counter!(HTTP_RATE_LIMITED_TOTAL, Unit::Count, "Requests refused by the per-client rate limit");
    describe_gauge!(WEBSOCKET_CONNECTIONS, Unit::Count, "Open websocket connections");
    describe_counter!(WEBSOCKET_CONNECTIONS_REFUSED_TOTAL, Unit::Count, "Websocket connections refused over the limit");
    describe_gauge!(WEBSOCKET_SUBSCRIPTIONS, Unit::Count, "Websocket topic subscriptions");
    describe_counter!(WEBSOCKET_MESSAGES_SENT_TOTAL, Unit::Count, "Messages written to websocket clients");
    describe_counter!(WEBSOCKET_CLIENTS_DROPPED_TOTAL, Unit::Count, "Websocket clients dropped (slow or silent)");
}
