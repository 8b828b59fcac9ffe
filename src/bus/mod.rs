//! The bus: how govflow's parts hand messages to each other and to other systems.
//!
//! Two implementations, chosen by `[bus] kind`:
//! - [`memory::InProcessBus`] (`in-process`, the default): a broadcast inside the process with
//!   the same message-id deduplication; the listener hands ranges to the pipeline directly.
//! - [`jetstream::JetStreamBus`] (`nats`): NATS JetStream through `async-nats`. Every decoded
//!   chain event, every range and every rollback goes on a durable stream; the indexer consumes
//!   it with a durable consumer and acknowledges only after the store committed the effects;
//!   final governance events for the achievement system go on their own stream.
//!
//! Subjects (`<chain>` is the chain id, `<kind>` a snake_case event name):
//!
//! | subject | stream | what |
//! |---|---|---|
//! | `govflow.<chain>.events.<kind>` | `GOVFLOW_EVENTS_<chain>` | each decoded chain log (`vote_cast`, `proposal_created`, `transfer`, ...) |
//! | `govflow.<chain>.blocks.range` | `GOVFLOW_EVENTS_<chain>` | end of a range: its headers and event count |
//! | `govflow.<chain>.blocks.rollback` | `GOVFLOW_EVENTS_<chain>` | a reorg: everything after `ancestor` is void |
//! | `govflow.<chain>.achievements.<kind>` | `GOVFLOW_ACHIEVEMENTS_<chain>` | final governance events (schema v1) and retractions |
//! | `govflow.<chain>.inbound.<kind>` | `GOVFLOW_INBOUND_<chain>` | events other systems send with `POST /v1/events/governance` |
//!
//! Every message carries `Nats-Msg-Id` = its identity (a chain event: `<chain>:<blockHash>:<logIndex>`),
//! so a publish repeated after a fault is dropped by the server within `duplicate_window_s`.

pub mod jetstream;
pub mod memory;
pub mod requests;

use bytes::Bytes;
use futures::future::BoxFuture;
use futures::stream::BoxStream;

/// One message to publish.
#[derive(Clone, Debug, PartialEq)]
pub struct Envelope {
    /// Subject.
    pub subject: String,
    /// Identity (`Nats-Msg-Id`): a second publish with the same id is a duplicate.
    pub id: String,
    /// Extra headers.
    pub headers: Vec<(String, String)>,
    /// Body (JSON).
    pub payload: Bytes,
}

impl Envelope {
    /// A message with JSON `payload`; a payload that cannot be written as JSON is an error,
    /// never an empty message.
    pub fn json<T: serde::Serialize>(subject: impl Into<String>, id: impl Into<String>, payload: &T) -> Result<Envelope, BusError> {
        let subject = subject.into();
        match serde_json::to_vec(payload) {
            Ok(body) => Ok(Envelope { subject, id: id.into(), headers: Vec::new(), payload: Bytes::from(body) }),
            Err(e) => Err(BusError::Unencodable { subject, message: e.to_string() }),
        }
    }

    /// Adds a header.
    pub fn with_header(mut self, k: &str, v: impl Into<String>) -> Envelope {
        self.headers.push((k.to_string(), v.into()));
        self
    }

    /// A header's value.
    pub fn header(&self, k: &str) -> Option<&str> {
        self.headers.iter().find(|(n, _)| n.eq_ignore_ascii_case(k)).map(|(_, v)| v.as_str())
    }
}

/// What the bus said about a publish.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PublishAck {
    /// Position in its stream (in-process: a counter).
    pub sequence: u64,
    /// The id was seen within the deduplication window: nothing was appended.
    pub duplicate: bool,
}

/// Bus failures.
#[derive(Debug, thiserror::Error)]
pub enum BusError {
    /// The bus cannot be reached (retryable).
    #[error("bus unavailable: {0}")]
    Unavailable(String),
    /// The bus refused the request (configuration or protocol).
    #[error("bus refused: {0}")]
    Rejected(String),
    /// A message could not be written (its payload is not JSON-serialisable): nothing was sent.
    #[error("cannot encode a message for {subject}: {message}")]
    Unencodable {
        /// Subject.
        subject: String,
        /// Why.
        message: String,
    },
    /// A message could not be decoded.
    #[error("undecodable message on {subject}: {message}")]
    Undecodable {
        /// Subject.
        subject: String,
        /// Why.
        message: String,
    },
}

impl BusError {
    /// True for errors a retry may cure.
    pub fn is_retryable(&self) -> bool {
        matches!(self, BusError::Unavailable(_))
    }
}

/// Subject and stream names for one chain.
#[derive(Clone, Debug)]
pub struct Subjects {
    chain_id: u64,
}

impl Subjects {
    /// Names for `chain_id`.
    pub fn new(chain_id: u64) -> Self {
        Subjects { chain_id }
    }

    /// Chain id.
    pub fn chain_id(&self) -> u64 {
        self.chain_id
    }

    /// `govflow.<chain>.events.<kind>`.
    pub fn event(&self, kind: &str) -> String {
        format!("govflow.{}.events.{kind}", self.chain_id)
    }

    /// `govflow.<chain>.blocks.range`.
    pub fn range(&self) -> String {
        format!("govflow.{}.blocks.range", self.chain_id)
    }

    /// `govflow.<chain>.blocks.rollback`.
    pub fn rollback(&self) -> String {
        format!("govflow.{}.blocks.rollback", self.chain_id)
    }

    /// `govflow.<chain>.achievements.<kind>` (`.` in the kind become `_`).
    pub fn achievement(&self, kind: &str) -> String {
        format!("govflow.{}.achievements.{}", self.chain_id, kind.replace('.', "_"))
    }

    /// `govflow.<chain>.inbound.<kind>`.
    pub fn inbound(&self, kind: &str) -> String {
        format!("govflow.{}.inbound.{}", self.chain_id, kind.replace('.', "_"))
    }

    /// Stream of chain events, ranges and rollbacks.
    pub fn events_stream(&self) -> String {
        format!("GOVFLOW_EVENTS_{}", self.chain_id)
    }

    /// Stream of achievement events.
    pub fn achievements_stream(&self) -> String {
        format!("GOVFLOW_ACHIEVEMENTS_{}", self.chain_id)
    }

    /// Stream of inbound events.
    pub fn inbound_stream(&self) -> String {
        format!("GOVFLOW_INBOUND_{}", self.chain_id)
    }

    /// Wildcards of the events stream.
    pub fn events_filters(&self) -> Vec<String> {
        vec![format!("govflow.{}.events.>", self.chain_id), format!("govflow.{}.blocks.>", self.chain_id)]
    }

    /// Wildcard of the achievements stream.
    pub fn achievements_filter(&self) -> String {
        format!("govflow.{}.achievements.>", self.chain_id)
    }

    /// Wildcard of the inbound stream.
    pub fn inbound_filter(&self) -> String {
        format!("govflow.{}.inbound.>", self.chain_id)
    }

    /// Key-value bucket of the role leases.
    pub fn lease_bucket(&self) -> String {
        format!("govflow_leases_{}", self.chain_id)
    }

    /// Object store of the partition requests and replies too large for one message.
    pub fn work_bucket(&self) -> String {
        format!("govflow_work_{}", self.chain_id)
    }
}

/// What govflow needs from a bus, whichever it is.
pub trait Bus: Send + Sync + 'static {
    /// `in-process` or `nats`.
    fn kind(&self) -> &'static str;

    /// Publishes one message and waits for the bus to have it (JetStream: the publish
    /// acknowledgement, after the stream stored it).
    fn publish(&self, e: Envelope) -> BoxFuture<'_, Result<PublishAck, BusError>>;

    /// Publishes messages in order without waiting between them, then waits for every
    /// acknowledgement; fails if any failed (the caller publishes again: ids deduplicate).
    fn publish_all(&self, es: Vec<Envelope>) -> BoxFuture<'_, Result<Vec<PublishAck>, BusError>>;

    /// Live messages on subjects matching `filter` (NATS wildcards `*` and `>`), from now on.
    fn subscribe(&self, filter: &str) -> BoxFuture<'_, Result<BoxStream<'static, Envelope>, BusError>>;

    /// Whether the bus is reachable now (readiness).
    fn healthy(&self) -> bool;
}

/// Whether `subject` matches the NATS wildcard `filter`.
pub fn subject_matches(filter: &str, subject: &str) -> bool {
    let mut f = filter.split('.');
    let mut s = subject.split('.');
    loop {
        match (f.next(), s.next()) {
            (Some(">"), Some(_)) => return true,
            (Some("*"), Some(_)) => {}
            (Some(a), Some(b)) if a == b => {}
            (None, None) => return true,
            _ => return false,
        }
    }
}

/// snake_case of an event name (`VoteCast` → `vote_cast`).
pub fn snake(name: &str) -> String {
    let mut out = String::with_capacity(name.len() + 4);
    for (i, c) in name.chars().enumerate() {
        if c.is_ascii_uppercase() {
            if i > 0 {
                out.push('_');
            }
            out.push(c.to_ascii_lowercase());
        } else {
            out.push(c);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wildcards() {
        assert!(subject_matches("govflow.1.events.>", "govflow.1.events.vote_cast"));
        assert!(!subject_matches("govflow.1.events.>", "govflow.1.events"));
        assert!(subject_matches("govflow.*.achievements.*", "govflow.7.achievements.vote_cast"));
        assert!(!subject_matches("govflow.*.achievements.*", "govflow.7.achievements.vote_cast.x"));
        assert!(subject_matches("a.b", "a.b"));
        assert!(!subject_matches("a.b", "a.c"));
    }

    #[test]
    fn names() {
        let s = Subjects::new(31337);
        assert_eq!(s.event("vote_cast"), "govflow.31337.events.vote_cast");
        assert_eq!(s.achievement("vote.cast"), "govflow.31337.achievements.vote_cast");
        assert_eq!(snake("VoteCast"), "vote_cast");
        assert_eq!(snake("ProposalCreated"), "proposal_created");
    }
}
