//! NATS JetStream through `async-nats`: streams, publishing with acknowledgements, the
//! indexer's durable consumer and the role leases.
//!
//! Everything is declared in code and created idempotently at start-up
//! (`create_or_update_stream`), so a fresh server and a running one both end up with:
//! - `GOVFLOW_EVENTS_<chain>`: `govflow.<chain>.events.>` and `govflow.<chain>.blocks.>`;
//! - `GOVFLOW_ACHIEVEMENTS_<chain>`: `govflow.<chain>.achievements.>`;
//! - `GOVFLOW_INBOUND_<chain>`: `govflow.<chain>.inbound.>`;
//!
//! all with `limits` retention (`max_age_days`), `file` storage (configurable), `replicas`
//! replicas and a `duplicate_window_s` deduplication window on `Nats-Msg-Id`; plus the key-value
//! bucket `govflow_leases_<chain>` (history 1, entries expire after `lease_ttl_s`), and the object
//! store `govflow_work_<chain>` (memory, objects expire after [`WORK_BLOB_MAX_AGE`]) carrying the
//! partition requests and replies too large for one NATS message. The indexer's durable pull
//! consumer `indexer` reads the events stream with `AckPolicy::All`.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use async_nats::jetstream::{self, consumer, kv, object_store, stream};
use futures::future::BoxFuture;
use futures::stream::BoxStream;
use futures::{StreamExt, TryStreamExt};

use super::{Bus, BusError, Envelope, PublishAck, Subjects};
use crate::config::BusConfig;
use crate::metrics as m;

/// Name of the indexer's durable consumer.
pub const INDEXER_CONSUMER: &str = "indexer";
/// Objects of the work bucket left behind (a reply nobody read) expire after this long.
pub const WORK_BLOB_MAX_AGE: Duration = Duration::from_secs(600);

/// A message as stored on a stream.
#[derive(Clone, Debug)]
pub struct StoredMessage {
    /// Its subject.
    pub subject: String,
    /// Its sequence in the stream.
    pub sequence: u64,
    /// Its body.
    pub payload: bytes::Bytes,
}

/// The indexer consumer's messages.
pub struct Deliveries {
    messages: consumer::pull::Stream,
}

impl Deliveries {
    /// The next message (`None`: the consumer's stream ended).
    pub async fn next(&mut self) -> Option<Result<Delivery, BusError>> {
        Some(self.messages.next().await?.map_err(unavailable).map(|msg| {
            let (delivered, pending) = msg.info().map(|i| (i.delivered, i.pending)).unwrap_or((1, 0));
            Delivery { subject: msg.subject.to_string(), payload: msg.payload.clone(), delivered, pending, msg }
        }))
    }
}

/// One message delivered to the indexer.
pub struct Delivery {
    /// Its subject.
    pub subject: String,
    /// Its body.
    pub payload: bytes::Bytes,
    /// How many times it was delivered (more than 1: a redelivery).
    pub delivered: i64,
    /// Messages still pending for the consumer after this one.
    pub pending: u64,
    msg: jetstream::Message,
}

impl Delivery {
    /// Acknowledges it (and, the consumer acknowledging cumulatively, everything before it).
    pub async fn ack(&self) -> Result<(), BusError> {
        self.msg.ack().await.map_err(unavailable)
    }

    /// Terminates it: never delivered again.
    pub async fn terminate(&self) -> Result<(), BusError> {
        self.msg.ack_with(jetstream::AckKind::Term).await.map_err(unavailable)
    }
}

/// The JetStream bus.
pub struct JetStreamBus {
    client: async_nats::Client,
    js: jetstream::Context,
    cfg: BusConfig,
    subjects: Subjects,
    published: AtomicU64,
}

fn unavailable(e: impl std::fmt::Display) -> BusError {
    BusError::Unavailable(e.to_string())
}

impl JetStreamBus {
    /// Connects (retrying until the server answers, logging every few seconds) and declares
    /// the streams and the lease bucket.
    pub async fn connect(cfg: &BusConfig, chain_id: u64, instance: &str) -> Result<Arc<JetStreamBus>, BusError> {
        let urls: Vec<async_nats::ServerAddr> = cfg
            .nats_url
            .split(',')
            .map(|u| u.trim().parse::<async_nats::ServerAddr>().map_err(|e| BusError::Rejected(format!("bus.nats_url: {e}"))))
            .collect::<Result<_, _>>()?;
        let redacted = crate::config::redact_url(&cfg.nats_url);
        let options = async_nats::ConnectOptions::new()
            .name(format!("govflow {instance}"))
            .retry_on_initial_connect()
            .connection_timeout(Duration::from_secs(3))
            .request_timeout(Some(Duration::from_secs(5)))
            .event_callback(move |event| {
                let redacted = redacted.clone();
                async move {
                    match event {
                        async_nats::Event::Connected => tracing::info!(target: "bus", server = %redacted, "connected to NATS"),
                        async_nats::Event::Disconnected => tracing::warn!(target: "bus", server = %redacted, "disconnected from NATS; reconnecting"),
                        other => tracing::debug!(target: "bus", event = %other, "NATS event"),
                    }
                }
            });
        let client = options.connect(urls).await.map_err(unavailable)?;
        let js = jetstream::new(client.clone());
        let bus = Arc::new(JetStreamBus { client, js, cfg: cfg.clone(), subjects: Subjects::new(chain_id), published: AtomicU64::new(0) });
        let started = Instant::now();
        let mut warned = Instant::now();
        loop {
            match bus.declare().await {
                Ok(()) => break,
                Err(e) if e.is_retryable() => {
                    if warned.elapsed() > Duration::from_secs(5) {
                        tracing::warn!(target: "bus", error = %e, waited_s = started.elapsed().as_secs(), "JetStream not available yet; retrying");
                        warned = Instant::now();
                    }
                    tokio::time::sleep(Duration::from_millis(250)).await;
                }
                Err(e) => return Err(e),
            }
        }
        Ok(bus)
    }

    /// Chain id.
    pub fn chain_id(&self) -> u64 {
        self.subjects.chain_id()
    }

    /// The NATS client (core request/reply between the indexer and the partitions).
    pub(super) fn client_ref(&self) -> &async_nats::Client {
        &self.client
    }

    /// Subject and stream names.
    pub fn subjects(&self) -> &Subjects {
        &self.subjects
    }

    /// The JetStream context (for the bus's tests).
    #[cfg(any(test, feature = "test-utils"))]
    pub fn context(&self) -> &jetstream::Context {
        &self.js
    }

    fn storage(&self) -> stream::StorageType {
        if self.cfg.storage == crate::config::BusStorage::Memory {
            stream::StorageType::Memory
        } else {
            stream::StorageType::File
        }
    }

    fn stream_config(&self, name: String, subjects: Vec<String>) -> stream::Config {
        stream::Config {
            name,
            subjects,
            retention: stream::RetentionPolicy::Limits,
            discard: stream::DiscardPolicy::Old,
            storage: self.storage(),
            num_replicas: self.cfg.replicas,
            duplicate_window: Duration::from_secs(self.cfg.duplicate_window_s),
            max_age: Duration::from_secs(self.cfg.max_age_days.max(1) * 86_400),
            allow_direct: true,
            ..Default::default()
        }
    }

    async fn declare(&self) -> Result<(), BusError> {
        let s = &self.subjects;
        for (name, subjects) in
            [(s.events_stream(), s.events_filters()), (s.achievements_stream(), vec![s.achievements_filter()]), (s.inbound_stream(), vec![s.inbound_filter()])]
        {
            self.js.create_or_update_stream(self.stream_config(name.clone(), subjects)).await.map_err(|e| {
                let text = e.to_string();
                if text.contains("timed out") || text.contains("no responders") || text.contains("disconnected") {
                    BusError::Unavailable(format!("stream {name}: {text}"))
                } else {
                    BusError::Rejected(format!("stream {name}: {text}"))
                }
            })?;
        }
        self.js
            .create_or_update_key_value(kv::Config {
                bucket: s.lease_bucket(),
                history: 1,
                max_age: Duration::from_secs(self.cfg.lease_ttl_s),
                storage: self.storage(),
                num_replicas: self.cfg.replicas,
                ..Default::default()
            })
            .await
            .map_err(unavailable)?;
        self.js
            .create_object_store(object_store::Config {
                bucket: s.work_bucket(),
                description: Some("govflow: partition requests and replies larger than one NATS message".into()),
                max_age: WORK_BLOB_MAX_AGE,
                storage: stream::StorageType::Memory,
                num_replicas: self.cfg.replicas,
                ..Default::default()
            })
            .await
            .map_err(unavailable)?;
        Ok(())
    }

    /// The largest message the server accepts (its `max_payload`, 1 MiB by default).
    pub fn max_payload(&self) -> usize {
        self.client.server_info().max_payload
    }

    async fn work_bucket(&self) -> Result<object_store::ObjectStore, BusError> {
        self.js.get_object_store(self.subjects.work_bucket()).await.map_err(unavailable)
    }

    /// Stores `data` under `key` in the work bucket (chunked by JetStream).
    pub async fn put_blob(&self, key: &str, data: &[u8]) -> Result<(), BusError> {
        let mut reader = data;
        // Chunks of at most 128 KiB (the client's default), and within the server's limit.
        let meta =
            object_store::ObjectMetadata { name: key.to_string(), chunk_size: Some((self.max_payload() / 2).clamp(1024, 128 * 1024)), ..Default::default() };
        self.work_bucket().await?.put(meta, &mut reader).await.map_err(|e| unavailable(format!("object {key}: {e}")))?;
        Ok(())
    }

    /// The object `key` of the work bucket.
    pub async fn get_blob(&self, key: &str) -> Result<Vec<u8>, BusError> {
        use tokio::io::AsyncReadExt;
        let mut object = self.work_bucket().await?.get(key).await.map_err(|e| unavailable(format!("object {key}: {e}")))?;
        let mut out = Vec::new();
        object.read_to_end(&mut out).await.map_err(|e| unavailable(format!("object {key}: {e}")))?;
        Ok(out)
    }

    /// Deletes the object `key` of the work bucket (best effort: leftovers expire).
    pub async fn delete_blob(&self, key: &str) {
        if let Ok(store) = self.work_bucket().await {
            if let Err(e) = store.delete(key).await {
                tracing::debug!(target: "bus", key, error = %e, "work object not deleted (it expires)");
            }
        }
    }

    fn outbound(e: Envelope) -> (String, jetstream::message::PublishMessage) {
        let mut p = jetstream::message::PublishMessage::build().payload(e.payload);
        if !e.id.is_empty() {
            p = p.message_id(e.id);
        }
        for (k, v) in e.headers {
            p = p.header(k.as_str(), v.as_str());
        }
        (e.subject, p)
    }

    /// The indexer's durable consumer on the events stream, positioned right after its
    /// acknowledgement floor (the last range committed and acknowledged). It is created anew
    /// each time the indexer starts, so everything not yet acknowledged is delivered again in
    /// stream order (a redelivery by `ack_wait` alone could bring a range before its events).
    async fn indexer_consumer(&self) -> Result<consumer::PullConsumer, BusError> {
        let stream = self.js.get_stream(self.subjects.events_stream()).await.map_err(unavailable)?;
        let start = match stream.consumer_info(INDEXER_CONSUMER).await {
            Ok(info) => Some(info.ack_floor.stream_sequence + 1),
            Err(e) if e.to_string().to_ascii_lowercase().contains("not found") => None,
            Err(e) => return Err(unavailable(e)),
        };
        if start.is_some() {
            stream.delete_consumer(INDEXER_CONSUMER).await.map_err(unavailable)?;
        }
        let deliver_policy = match start {
            Some(s) if s > 1 => consumer::DeliverPolicy::ByStartSequence { start_sequence: s },
            _ => consumer::DeliverPolicy::All,
        };
        stream
            .create_consumer(consumer::pull::Config {
                durable_name: Some(INDEXER_CONSUMER.into()),
                description: Some("govflow indexer: commits ranges to the store, acknowledges after the commit".into()),
                ack_policy: consumer::AckPolicy::All,
                ack_wait: Duration::from_secs(self.cfg.ack_wait_s),
                deliver_policy,
                max_deliver: -1,
                max_ack_pending: 200_000,
                ..Default::default()
            })
            .await
            .map_err(unavailable)
    }

    /// Messages the indexer has not acknowledged yet (its lag), and redeliveries so far.
    pub async fn indexer_lag(&self) -> Result<u64, BusError> {
        let stream = self.js.get_stream_no_info(self.subjects.events_stream()).await.map_err(unavailable)?;
        let info = stream.consumer_info(INDEXER_CONSUMER).await.map_err(unavailable)?;
        Ok(info.num_pending + info.num_ack_pending as u64)
    }

    /// The newest message on `subject` of `stream`, if any.
    pub async fn last_message(&self, stream: &str, subject: &str) -> Result<Option<StoredMessage>, BusError> {
        let s = self.js.get_stream_no_info(stream).await.map_err(unavailable)?;
        match s.get_last_raw_message_by_subject(subject).await {
            Ok(m) => Ok(Some(StoredMessage { subject: m.subject.to_string(), sequence: m.sequence, payload: m.payload })),
            Err(e) if matches!(e.kind(), stream::LastRawMessageErrorKind::NoMessageFound) => Ok(None),
            Err(e) => Err(unavailable(e)),
        }
    }

    /// The value of `header` on the last message of `stream` (`None` when the stream is empty
    /// or the message has no such header).
    pub async fn last_header(&self, stream: &str, header: &str) -> Result<Option<String>, BusError> {
        let stream = self.js.get_stream_no_info(stream).await.map_err(unavailable)?;
        let info = stream.get_info().await.map_err(unavailable)?;
        if info.state.messages == 0 {
            return Ok(None);
        }
        let last = stream.direct_get(info.state.last_sequence).await.map_err(unavailable)?;
        Ok(last.headers.get(header).map(|v| v.as_str().to_string()))
    }

    /// The indexer's deliveries: [`Self::indexer_consumer`]'s messages, in batches of up to
    /// 2,000, with heartbeats.
    pub async fn indexer_deliveries(&self) -> Result<Deliveries, BusError> {
        let consumer = self.indexer_consumer().await?;
        let messages = consumer
            .stream()
            .max_messages_per_batch(2_000)
            .heartbeat(Duration::from_secs(5))
            .expires(Duration::from_secs(10))
            .messages()
            .await
            .map_err(unavailable)?;
        Ok(Deliveries { messages })
    }

    /// Puts `key` = `value` in the lease bucket (presence keys expire with the leases).
    pub async fn announce(&self, key: &str, value: &str) -> Result<(), BusError> {
        self.leases().await?.put(key, value.to_string().into()).await.map_err(unavailable)?;
        Ok(())
    }

    /// How many keys of the lease bucket start with `prefix`.
    pub async fn count_keys(&self, prefix: &str) -> Result<usize, BusError> {
        let keys = self.leases().await?.keys().await.map_err(unavailable)?;
        keys.map_err(unavailable).try_fold(0usize, |n, k| futures::future::ready(Ok(n + usize::from(k.starts_with(prefix))))).await
    }

    /// Removes `key` from the lease bucket (best effort: it expires anyway).
    pub async fn withdraw(&self, key: &str) {
        if let Ok(kv) = self.leases().await {
            if let Err(e) = kv.purge(key).await {
                tracing::debug!(target: "bus", key, error = %e, "lease-bucket key not removed (it expires)");
            }
        }
    }

    /// The lease bucket.
    async fn leases(&self) -> Result<kv::Store, BusError> {
        self.js.get_key_value(self.subjects.lease_bucket()).await.map_err(unavailable)
    }

    /// Takes role `role` for `holder` if nobody holds it (or `holder` already does); returns
    /// the entry's revision to renew with.
    pub async fn try_acquire(&self, role: &str, holder: &str) -> Result<Option<u64>, BusError> {
        let store = self.leases().await?;
        match store.create(role, holder.to_string().into()).await {
            Ok(rev) => Ok(Some(rev)),
            Err(e) if matches!(e.kind(), kv::CreateErrorKind::AlreadyExists) => match store.entry(role).await.map_err(unavailable)? {
                Some(entry) if entry.value.as_ref() == holder.as_bytes() => self.renew(role, holder, entry.revision).await.map(Some),
                _ => Ok(None),
            },
            Err(e) => Err(unavailable(e)),
        }
    }

    /// Renews a held lease; an error means it was lost (expired and taken, or the bus is down).
    pub async fn renew(&self, role: &str, holder: &str, revision: u64) -> Result<u64, BusError> {
        let store = self.leases().await?;
        store.update(role, holder.to_string().into(), revision).await.map_err(|e| BusError::Unavailable(format!("lease {role}: {e}")))
    }

    /// Gives a lease up (on shutdown), so another instance takes it without waiting.
    pub async fn release(&self, role: &str, holder: &str) {
        if let Ok(store) = self.leases().await {
            if let Ok(Some(entry)) = store.entry(role).await {
                if entry.value.as_ref() == holder.as_bytes() {
                    if let Err(e) = store.purge(role).await {
                        // It expires after the lease TTL instead.
                        tracing::debug!(target: "bus", role, error = %e, "lease not released");
                    }
                }
            }
        }
    }

    /// The holder of `role`, if any.
    pub async fn holder(&self, role: &str) -> Result<Option<String>, BusError> {
        let store = self.leases().await?;
        Ok(store.entry(role).await.map_err(unavailable)?.filter(|e| !e.value.is_empty()).map(|e| String::from_utf8_lossy(&e.value).into_owned()))
    }

    /// Messages published by this process so far.
    pub fn published(&self) -> u64 {
        self.published.load(Ordering::Relaxed)
    }

    async fn wait_acks(&self, futures: Vec<jetstream::context::PublishAckFuture>, started: Instant) -> Result<Vec<PublishAck>, BusError> {
        let n = futures.len();
        let acks = futures::future::join_all(futures.into_iter().map(std::future::IntoFuture::into_future)).await;
        let mut out = Vec::with_capacity(n);
        let mut first_error = None;
        for a in acks {
            match a {
                Ok(ack) => {
                    if ack.duplicate {
                        metrics::counter!(m::BUS_DUPLICATES_TOTAL).increment(1);
                    }
                    out.push(PublishAck { sequence: ack.sequence, duplicate: ack.duplicate });
                }
                Err(e) => {
                    first_error.get_or_insert_with(|| unavailable(e));
                }
            }
        }
        let secs = started.elapsed().as_secs_f64();
        metrics::histogram!(m::BUS_PUBLISH_DURATION_SECONDS).record(secs);
        if let Some(e) = first_error {
            metrics::counter!(m::BUS_PUBLISH_FAILURES_TOTAL).increment(1);
            return Err(e);
        }
        self.published.fetch_add(n as u64, Ordering::Relaxed);
        metrics::counter!(m::BUS_PUBLISHED_TOTAL).increment(n as u64);
        Ok(out)
    }
}

impl Bus for JetStreamBus {
    fn kind(&self) -> &'static str {
        "nats"
    }

    fn publish(&self, e: Envelope) -> BoxFuture<'_, Result<PublishAck, BusError>> {
        Box::pin(async move {
            let mut acks = self.publish_all(vec![e]).await?;
            acks.pop().ok_or_else(|| BusError::Rejected("no acknowledgement".into()))
        })
    }

    fn publish_all(&self, es: Vec<Envelope>) -> BoxFuture<'_, Result<Vec<PublishAck>, BusError>> {
        Box::pin(async move {
            let started = Instant::now();
            let mut pending = Vec::with_capacity(es.len());
            for e in es {
                let (subject, p) = Self::outbound(e);
                match self.js.send_publish(subject, p).await {
                    Ok(f) => pending.push(f),
                    Err(err) => {
                        // Wait for what was sent, then report the failure: the caller publishes
                        // everything again and the ids deduplicate.
                        let _ = self.wait_acks(pending, started).await;
                        metrics::counter!(m::BUS_PUBLISH_FAILURES_TOTAL).increment(1);
                        return Err(unavailable(err));
                    }
                }
            }
            self.wait_acks(pending, started).await
        })
    }

    fn subscribe(&self, filter: &str) -> BoxFuture<'_, Result<BoxStream<'static, Envelope>, BusError>> {
        let filter = filter.to_string();
        Box::pin(async move {
            let sub = self.client.subscribe(filter).await.map_err(unavailable)?;
            Ok(sub
                .map(|m| {
                    let headers = m.headers.as_ref();
                    let id = headers.and_then(|h| h.get(async_nats::header::NATS_MESSAGE_ID)).map(|v| v.to_string()).unwrap_or_default();
                    let extra =
                        headers.map(|h| h.iter().flat_map(|(k, vs)| vs.iter().map(move |v| (k.to_string(), v.to_string()))).collect()).unwrap_or_default();
                    Envelope { subject: m.subject.to_string(), id, headers: extra, payload: m.payload }
                })
                .boxed())
        })
    }

    fn healthy(&self) -> bool {
        matches!(self.client.connection_state(), async_nats::connection::State::Connected)
    }
}
