//! The in-process bus (the embedded default): a broadcast channel with the same message-id
//! deduplication as JetStream, for subscribers inside the process.

use std::collections::{HashSet, VecDeque};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use futures::future::BoxFuture;
use futures::stream::BoxStream;
use futures::StreamExt;

use super::{subject_matches, Bus, BusError, Envelope, PublishAck};

/// Ids seen within the deduplication window, and when, oldest first.
type Seen = (HashSet<String>, VecDeque<(Instant, String)>);

/// The in-process bus.
pub struct InProcessBus {
    tx: tokio::sync::broadcast::Sender<Envelope>,
    seq: AtomicU64,
    window: Duration,
    seen: Mutex<Seen>,
}

impl InProcessBus {
    /// A bus keeping `capacity` messages for slow subscribers and deduplicating ids for
    /// `window`.
    pub fn new(capacity: usize, window: Duration) -> Self {
        let (tx, _) = tokio::sync::broadcast::channel(capacity.max(16));
        InProcessBus { tx, seq: AtomicU64::new(0), window, seen: Mutex::new((HashSet::new(), VecDeque::new())) }
    }

    fn send(&self, e: Envelope) -> PublishAck {
        {
            let mut seen = self.seen.lock().unwrap_or_else(|p| p.into_inner());
            let now = Instant::now();
            while seen.1.front().is_some_and(|(t, _)| now.duration_since(*t) > self.window) {
                if let Some((_, id)) = seen.1.pop_front() {
                    seen.0.remove(&id);
                }
            }
            if !e.id.is_empty() && !seen.0.insert(e.id.clone()) {
                return PublishAck { sequence: self.seq.load(Ordering::Relaxed), duplicate: true };
            }
            if !e.id.is_empty() {
                seen.1.push_back((now, e.id.clone()));
            }
        }
        let sequence = self.seq.fetch_add(1, Ordering::Relaxed) + 1;
        // No subscriber is fine: in-process messages are for whoever listens now.
        let _ = self.tx.send(e);
        PublishAck { sequence, duplicate: false }
    }
}

impl Bus for InProcessBus {
    fn kind(&self) -> &'static str {
        "in-process"
    }

    fn publish(&self, e: Envelope) -> BoxFuture<'_, Result<PublishAck, BusError>> {
        let ack = self.send(e);
        Box::pin(async move { Ok(ack) })
    }

    fn publish_all(&self, es: Vec<Envelope>) -> BoxFuture<'_, Result<Vec<PublishAck>, BusError>> {
        let acks = es.into_iter().map(|e| self.send(e)).collect();
        Box::pin(async move { Ok(acks) })
    }

    fn subscribe(&self, filter: &str) -> BoxFuture<'_, Result<BoxStream<'static, Envelope>, BusError>> {
        let filter = filter.to_string();
        let rx = self.tx.subscribe();
        Box::pin(async move {
            let s = tokio_stream::wrappers::BroadcastStream::new(rx)
                .filter_map(move |m| {
                    let keep = match m {
                        Ok(e) if subject_matches(&filter, &e.subject) => Some(e),
                        _ => None,
                    };
                    async move { keep }
                })
                .boxed();
            Ok(s)
        })
    }

    fn healthy(&self) -> bool {
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn dedupes_and_filters() {
        let bus = InProcessBus::new(64, Duration::from_secs(60));
        let mut sub = bus.subscribe("govflow.1.achievements.>").await.unwrap();
        let a = bus.publish(Envelope::json("govflow.1.achievements.vote_cast", "x", &1).unwrap()).await.unwrap();
        let b = bus.publish(Envelope::json("govflow.1.achievements.vote_cast", "x", &1).unwrap()).await.unwrap();
        bus.publish(Envelope::json("govflow.1.inbound.vote_cast", "y", &2).unwrap()).await.unwrap();
        bus.publish(Envelope::json("govflow.1.achievements.vote_cast", "z", &3).unwrap()).await.unwrap();
        assert!(!a.duplicate && b.duplicate);
        assert_eq!(sub.next().await.unwrap().id, "x");
        assert_eq!(sub.next().await.unwrap().id, "z");
    }
}
