//! One conformance suite for every bus (the in-process bus, and NATS JetStream on a real
//! `nats-server -js` started by the harness): the same cases, generated per backend by
//! `bus_suite!`, through the `Bus` trait govflow's parts use.
//!
//! - acknowledgements come back one per message, in order, with growing sequences;
//! - an id published again is acknowledged as a duplicate and not appended (a batch mixing new
//!   and repeated ids says which is which);
//! - a subscriber receives exactly the subjects its wildcard matches, in order, with the id,
//!   headers and payload intact;
//! - the bus is healthy while it is reachable.
//!
//! JetStream only: the streams are declared idempotently by every instance and keep what was
//! acknowledged (file storage); a stopped server makes the bus unhealthy and publishes fail
//! with a retryable error, and both recover by themselves when the server is back.

mod support;

use std::sync::Arc;
use std::time::{Duration, Instant};

use futures::StreamExt;
use govflow::bus::jetstream::JetStreamBus;
use govflow::bus::memory::InProcessBus;
use govflow::bus::{Bus, BusError, Envelope, Subjects};
use govflow::config::BusConfig;
use support::nats::NatsServer;

const CHAIN: u64 = 4242;
/// How long a subscriber waits for one message.
const RECV: Duration = Duration::from_secs(10);

/// A bus under test and whatever keeps it alive (the nats-server).
struct Backend {
    bus: Arc<dyn Bus>,
    _server: Option<NatsServer>,
}

async fn in_process() -> Backend {
    Backend { bus: Arc::new(InProcessBus::new(1024, Duration::from_secs(120))), _server: None }
}

fn nats_config(server: &NatsServer) -> BusConfig {
    BusConfig { kind: govflow::config::BusKind::Nats, nats_url: server.url(), ..Default::default() }
}

async fn jetstream() -> Backend {
    let server = NatsServer::start();
    let bus = JetStreamBus::connect(&nats_config(&server), CHAIN, "conformance").await.unwrap_or_else(|e| panic!("connect: {e}"));
    Backend { bus, _server: Some(server) }
}

fn subjects() -> Subjects {
    Subjects::new(CHAIN)
}

fn msg(subject: String, id: &str, n: u64) -> Envelope {
    Envelope::json(subject, id, &serde_json::json!({ "n": n, "id": id })).expect("a JSON value is always written")
}

async fn acks_in_order(b: Backend) {
    let s = subjects();
    let batch: Vec<Envelope> = (0..50u64)
        .map(|i| {
            let subject = if i % 2 == 0 { s.achievement("vote.cast") } else { s.inbound("forum.post_created") };
            msg(subject, &format!("order-{i}"), i)
        })
        .collect();
    let acks = b.bus.publish_all(batch).await.expect("publish_all");
    assert_eq!(acks.len(), 50, "one acknowledgement per message");
    assert!(acks.iter().all(|a| !a.duplicate), "fresh ids are not duplicates: {acks:?}");
    let single = b.bus.publish(msg(s.achievement("vote.cast"), "order-single", 99)).await.expect("publish");
    assert!(!single.duplicate);
    // Sequences grow within a stream (JetStream: one stream per family of subjects).
    let achievements: Vec<u64> = acks.iter().step_by(2).map(|a| a.sequence).collect();
    assert!(achievements.windows(2).all(|w| w[0] < w[1]), "sequences grow: {achievements:?}");
    assert!(single.sequence > *achievements.last().unwrap());
    assert!(b.bus.healthy(), "a reachable bus is healthy");
}

async fn duplicates_are_not_appended(b: Backend) {
    let s = subjects();
    let first = b.bus.publish(msg(s.achievement("vote.cast"), "dup-a", 1)).await.unwrap();
    let again = b.bus.publish(msg(s.achievement("vote.cast"), "dup-a", 1)).await.unwrap();
    assert!(!first.duplicate);
    assert!(again.duplicate, "the same id again is a duplicate");
    let acks = b
        .bus
        .publish_all(vec![
            msg(s.achievement("vote.cast"), "dup-b", 2),
            msg(s.achievement("vote.cast"), "dup-a", 1),
            msg(s.achievement("vote.cast"), "dup-c", 3),
            msg(s.achievement("vote.cast"), "dup-b", 2),
        ])
        .await
        .unwrap();
    assert_eq!(acks.iter().map(|a| a.duplicate).collect::<Vec<_>>(), [false, true, false, true]);
    // Nothing was appended for the duplicates: the next fresh message directly follows dup-c.
    let next = b.bus.publish(msg(s.achievement("vote.cast"), "dup-d", 4)).await.unwrap();
    assert_eq!(next.sequence, acks[2].sequence + 1, "duplicates take no sequence");
}

async fn subscribers_get_matching_subjects_in_order(b: Backend) {
    let s = subjects();
    let mut achievements = b.bus.subscribe(&s.achievements_filter()).await.expect("subscribe");
    let mut votes = b.bus.subscribe(&format!("govflow.{CHAIN}.achievements.vote_cast")).await.expect("subscribe");
    let sent: Vec<Envelope> = (0..30u64)
        .map(|i| match i % 3 {
            0 => msg(s.achievement("vote.cast"), &format!("sub-{i}"), i),
            1 => msg(s.achievement("proposal.created"), &format!("sub-{i}"), i),
            _ => msg(s.inbound("forum.post_created"), &format!("sub-{i}"), i),
        })
        .collect();
    let mut with_header = msg(s.achievement("vote.cast"), "sub-h", 100);
    with_header = with_header.with_header("Govflow-Kind", "vote.cast");
    b.bus.publish_all(sent.clone()).await.unwrap();
    b.bus.publish(with_header.clone()).await.unwrap();

    let expected: Vec<&Envelope> = sent.iter().filter(|e| e.subject.contains(".achievements.")).chain([&with_header]).collect();
    for want in &expected {
        let got = tokio::time::timeout(RECV, achievements.next()).await.expect("message in time").expect("subscription open");
        assert_eq!((&got.subject, &got.id, &got.payload), (&want.subject, &want.id, &want.payload), "in order, intact");
    }
    let got_votes: Vec<String> = {
        let mut out = Vec::new();
        for _ in 0..expected.iter().filter(|e| e.subject.ends_with(".vote_cast")).count() {
            out.push(tokio::time::timeout(RECV, votes.next()).await.expect("message in time").unwrap().id);
        }
        out
    };
    assert_eq!(got_votes, expected.iter().filter(|e| e.subject.ends_with(".vote_cast")).map(|e| e.id.clone()).collect::<Vec<_>>());
    let last = tokio::time::timeout(Duration::from_millis(500), votes.next()).await;
    assert!(last.is_err(), "nothing else matches: {:?}", last.ok().flatten().map(|e| e.subject));
    // The header travelled (JetStream adds its own, e.g. Nats-Msg-Id, next to it).
    b.bus.publish(msg(s.achievement("vote.cast"), "sub-h2", 101).with_header("Govflow-Kind", "vote.cast")).await.unwrap();
    let h = tokio::time::timeout(RECV, votes.next()).await.unwrap().unwrap();
    assert_eq!(h.header("Govflow-Kind"), Some("vote.cast"), "{:?}", h.headers);
}

macro_rules! bus_suite {
    ($backend:ident) => {
        mod $backend {
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn acks_in_order() {
                super::acks_in_order(super::$backend().await).await;
            }
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn duplicates_are_not_appended() {
                super::duplicates_are_not_appended(super::$backend().await).await;
            }
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn subscribers_get_matching_subjects_in_order() {
                super::subscribers_get_matching_subjects_in_order(super::$backend().await).await;
            }
        }
    };
}

bus_suite!(in_process);
bus_suite!(jetstream);

/// Waits until `f()` holds, or panics with `what`.
async fn until(what: &str, timeout: Duration, mut f: impl FnMut() -> bool) {
    let t = Instant::now();
    while !f() {
        assert!(t.elapsed() < timeout, "{what} within {timeout:?}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn jetstream_streams_are_declared_idempotently_and_durable() {
    let server = NatsServer::start();
    let cfg = BusConfig { duplicate_window_s: 300, ..nats_config(&server) };
    let a = JetStreamBus::connect(&cfg, CHAIN, "a").await.unwrap();
    a.publish(msg(subjects().inbound("forum.post_created"), "kept-1", 1)).await.unwrap();
    // A second instance declares the same streams: nothing is reset.
    let b = JetStreamBus::connect(&cfg, CHAIN, "b").await.unwrap();
    let s = subjects();
    for (name, filter) in
        [(s.events_stream(), s.events_filters()), (s.achievements_stream(), vec![s.achievements_filter()]), (s.inbound_stream(), vec![s.inbound_filter()])]
    {
        let info = b.context().get_stream(&name).await.unwrap_or_else(|e| panic!("stream {name}: {e}")).get_info().await.unwrap();
        assert_eq!(info.config.subjects, filter, "{name} subjects");
        assert_eq!(info.config.storage, async_nats::jetstream::stream::StorageType::File, "{name} is on file storage");
        assert_eq!(info.config.duplicate_window, Duration::from_secs(300), "{name} dedupe window from bus.duplicate_window_s");
    }
    let inbound = b.context().get_stream(s.inbound_stream()).await.unwrap().get_info().await.unwrap();
    assert_eq!(inbound.state.messages, 1, "the second declaration kept the message");
    // The id is deduplicated across instances.
    assert!(b.publish(msg(s.inbound("forum.post_created"), "kept-1", 1)).await.unwrap().duplicate);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn jetstream_outage_is_unhealthy_retryable_and_recovers() {
    let mut server = NatsServer::start();
    let bus = JetStreamBus::connect(&nats_config(&server), CHAIN, "outage").await.unwrap();
    let s = subjects();
    let before = bus.publish(msg(s.achievement("vote.cast"), "outage-1", 1)).await.unwrap();
    assert!(bus.healthy());

    server.kill();
    until("the bus notices the server is gone", Duration::from_secs(20), || !bus.healthy()).await;
    match bus.publish(msg(s.achievement("vote.cast"), "outage-2", 2)).await {
        Err(e @ BusError::Unavailable(_)) => assert!(e.is_retryable()),
        other => panic!("a publish while the server is down fails with a retryable error, got {other:?}"),
    }

    server.restart();
    until("the bus reconnects by itself", Duration::from_secs(30), || bus.healthy()).await;
    // The publish the caller retries goes through; what was acknowledged before survived
    // (file storage), and the retried id is deduplicated if the first attempt did land.
    let t = Instant::now();
    let retried = loop {
        match bus.publish(msg(s.achievement("vote.cast"), "outage-2", 2)).await {
            Ok(a) => break a,
            Err(e) if e.is_retryable() && t.elapsed() < Duration::from_secs(20) => tokio::time::sleep(Duration::from_millis(200)).await,
            Err(e) => panic!("publish after the restart: {e}"),
        }
    };
    assert!(retried.sequence > before.sequence);
    let info = bus.context().get_stream(s.achievements_stream()).await.unwrap().get_info().await.unwrap();
    assert_eq!(info.state.messages, 2, "outage-1 kept across the restart, outage-2 stored once");
}
