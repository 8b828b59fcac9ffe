//! govflow: the governance process service. It indexes an OpenZeppelin Governor DAO exactly
//! and serves proposals, votes, status history and voting power over REST.
//!
//! # Layout
//! - `actors/`: supervised actix actors: the chain listener, one per live proposal, one per
//!   voter-power shard.
//! - `streams/`: the listener's range logic, log decoding and the pipeline to the store.
//! - `http/`: the warp API (`/v1`), problem+json errors, health and metrics.
//! - `bus/`: the bus between the parts: in-process, or NATS JetStream (streams, consumer, leases).
//! - `store/`: the store trait and its embedded (redb) backend.
//! - `chain/`: the JSON-RPC edge (ethers), retries, discovery of the governor's satellites.
//! - `demo/`: `govflow demo`: anvil, the CultureBridge contracts, a governance story and
//!   govflow following it (also used by `tests/demo_e2e.rs`).
//! - `domain.rs`: the data model; `config.rs`: configuration; `metrics.rs`: metric names;
//!   `app.rs`: wiring and start-up order.

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
