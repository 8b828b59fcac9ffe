//! govflow: the governance process service. It indexes an OpenZeppelin Governor DAO exactly
//! and serves proposals, votes, status history and voting power over REST.
//!
//! # Layout
//! Rooms import downwards only (ARCHITECTURE.md, "Rooms"; `tests/architecture.rs` checks it).
//! From the bottom:
//! - `domain/`: the data model with its schema derives, raw logs, achievement events;
//!   `metrics.rs`: metric names.
//! - `config.rs`: typed configuration and its checks.
//! - `chain/`: the JSON-RPC edge (ethers), retries, discovery of the governor's satellites.
//! - `store/`: the store trait, its embedded (redb) and CQL (ScyllaDB) backends.
//! - `bus/`: the bus between the parts: in-process, or NATS JetStream (streams, consumer,
//!   leases, request/reply).
//! - `actors/`: supervised actix actors: the chain listener, one per live proposal, one per
//!   voter-power shard, and where they run (`host`: here, or partitions over NATS).
//! - `streams/`: log decoding, the pipeline, the listener and where its ranges go
//!   (`destination`), the indexer over NATS, achievements, changes.
//! - `http/`: the warp API (`/v1`), problem+json errors, cache, websockets, health and metrics.
//! - `app.rs`: wiring and start-up order.
//! - `testkit/`: a dev chain for the demo and the tests: anvil, the contracts' artifacts and
//!   revert decoding, a JSON-RPC client with anvil's test methods (independent of the rooms
//!   below `domain`'s).
//! - `demo/`: `govflow demo`: anvil, the CultureBridge contracts, a governance story and
//!   govflow following it (also used by `tests/demo_e2e.rs`).

pub mod actors;
pub mod app;
pub mod bus;
pub mod chain;
pub mod config;
pub mod demo;
pub mod domain;
pub mod http;
pub mod metrics;
pub mod store;
pub mod streams;
pub mod testkit;
