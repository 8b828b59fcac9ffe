//! Core NATS request/reply between the indexer and the partitions' workers (NATS mode), with
//! bodies too large for one message carried by the work bucket.
//!
//! A body larger than the server's `max_payload` (1 MiB by default) travels through the
//! JetStream object store `govflow_work_<chain>`: the message then has an empty body and the
//! header `Govflow-Blob: <object name>`; the receiver reads the object. The requester deletes
//! the reply's object once read and its request's object once answered or given up; leftovers
//! expire after [`super::jetstream::WORK_BLOB_MAX_AGE`].

use std::time::Duration;

use bytes::Bytes;
use futures::StreamExt;

use super::jetstream::JetStreamBus;
use super::BusError;
use crate::metrics as m;

/// Header naming the work-bucket object that holds a message's body.
pub const BLOB_HEADER: &str = "Govflow-Blob";
/// Room left in a message for its headers and protocol framing.
const HEADER_ROOM: usize = 16 * 1024;

/// A request ready to send (and to send again): its body, or the object holding it.
#[derive(Clone)]
pub struct Outgoing {
    headers: async_nats::HeaderMap,
    body: Bytes,
    /// The work-bucket object holding the body, when it is one.
    pub object: Option<String>,
}

/// Why a request got no usable answer.
#[derive(Debug, thiserror::Error)]
pub enum RequestError {
    /// No answer within the attempt's time.
    #[error("no answer in {0:?}")]
    Timeout(Duration),
    /// Nobody serves the subject, or the bus failed.
    #[error("{0}")]
    Bus(#[from] BusError),
}

/// A request received by a worker.
pub struct Incoming {
    /// Its body (read from the work bucket when it named an object).
    pub body: Bytes,
    reply_to: async_nats::Subject,
}

/// A worker's subscription to its subject.
pub struct Requests {
    sub: async_nats::Subscriber,
}

impl JetStreamBus {
    fn needs_blob(&self, len: usize) -> bool {
        len + HEADER_ROOM > self.max_payload()
    }

    /// Prepares `body` for sending: itself when it fits in one message, else stored as the
    /// work-bucket object `key`.
    pub async fn outgoing(&self, key: &str, body: Bytes) -> Result<Outgoing, BusError> {
        let mut headers = async_nats::HeaderMap::new();
        if !self.needs_blob(body.len()) {
            return Ok(Outgoing { headers, body, object: None });
        }
        self.put_blob(key, &body).await?;
        metrics::counter!(m::ACTORS_BLOB_TRANSFERS_TOTAL).increment(1);
        headers.insert(BLOB_HEADER, key);
        Ok(Outgoing { headers, body: Bytes::new(), object: Some(key.to_string()) })
    }

    /// Sends `req` on `subject` and waits up to `timeout` for the reply's body (read from, then
    /// removed from, the work bucket when the reply names an object).
    pub async fn request(&self, subject: &str, req: &Outgoing, timeout: Duration) -> Result<Bytes, RequestError> {
        let sent = self.client_ref().request_with_headers(subject.to_string(), req.headers.clone(), req.body.clone());
        let msg = match tokio::time::timeout(timeout, sent).await {
            Err(_) => return Err(RequestError::Timeout(timeout)),
            Ok(Err(e)) => return Err(BusError::Unavailable(e.to_string()).into()),
            Ok(Ok(msg)) => msg,
        };
        let (body, object) = self.body_of(&msg).await?;
        if let Some(key) = object {
            self.delete_blob(&key).await;
        }
        Ok(body)
    }

    /// Subscribes to the requests on `subject` (a worker's partition).
    pub async fn serve_requests(&self, subject: &str) -> Result<Requests, BusError> {
        let sub = self.client_ref().subscribe(subject.to_string()).await.map_err(|e| BusError::Unavailable(e.to_string()))?;
        Ok(Requests { sub })
    }

    /// Answers `req` with `body` (through the work-bucket object `key` when it is too large).
    pub async fn respond(&self, req: &Incoming, key: &str, body: Bytes) -> Result<(), BusError> {
        let out = self.outgoing(key, body).await?;
        self.client_ref().publish_with_headers(req.reply_to.clone(), out.headers, out.body).await.map_err(|e| BusError::Unavailable(e.to_string()))
    }

    async fn body_of(&self, msg: &async_nats::Message) -> Result<(Bytes, Option<String>), BusError> {
        match msg.headers.as_ref().and_then(|h| h.get(BLOB_HEADER)) {
            Some(key) => {
                let key = key.to_string();
                Ok((self.get_blob(&key).await?.into(), Some(key)))
            }
            None => Ok((msg.payload.clone(), None)),
        }
    }
}

/// What waiting for the next request gave.
pub enum NextRequest {
    /// A request.
    Request(Incoming),
    /// Nothing within the wait (or a message that asks for no reply).
    Idle,
    /// A request whose body could not be read (no answer: the requester asks again).
    Unreadable(BusError),
    /// The subscription ended.
    Ended,
}

impl Requests {
    /// The next request, waiting at most `wait`.
    pub async fn next(&mut self, bus: &JetStreamBus, wait: Duration) -> NextRequest {
        let Ok(next) = tokio::time::timeout(wait, self.sub.next()).await else { return NextRequest::Idle };
        let Some(msg) = next else { return NextRequest::Ended };
        let Some(reply_to) = msg.reply.clone() else { return NextRequest::Idle };
        match bus.body_of(&msg).await {
            Ok((body, _)) => NextRequest::Request(Incoming { body, reply_to }),
            Err(e) => NextRequest::Unreadable(e),
        }
    }
}
