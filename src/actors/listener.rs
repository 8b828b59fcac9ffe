//! `ListenerActor`: runs the chain listener and supervises it.
//!
//! A retryable failure (RPC down, store busy, an actor lost) restarts the listener after an
//! exponential backoff; the restart drops all in-memory actor state and reloads it from the
//! store, which is consistent with the cursor by construction. A fatal failure (reorg deeper
//! than the window, a block the node will not serve) stops the system with an error.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use actix::prelude::*;

use crate::chain::RetryPolicy;
use crate::metrics as m;

/// What the actor supervises: a loop that follows the chain until it ends or fails.
/// (`streams::listener::Listener` is the one govflow runs.)
pub trait Follow: Unpin + 'static {
    /// Its error.
    type Error: std::fmt::Display;
    /// Follows until told to stop (`Ok`) or until it fails.
    fn run(&mut self) -> impl std::future::Future<Output = Result<(), Self::Error>> + '_;
    /// Whether a failure is worth a restart.
    fn is_retryable(e: &Self::Error) -> bool;
    /// The failure's kind, a bounded metric label.
    fn reason(e: &Self::Error) -> &'static str;
    /// Drops in-memory state so that the next run starts from the store.
    fn reset_before_next_run(&mut self);
}

/// The actor.
pub struct ListenerActor<L: Follow> {
    listener: Option<L>,
    restarts: u32,
    backoff: RetryPolicy,
    stop: Arc<AtomicBool>,
    on_fatal: Option<tokio::sync::oneshot::Sender<String>>,
}

impl<L: Follow> ListenerActor<L> {
    /// Wraps a listener; `on_fatal` receives the message of an unrecoverable error.
    pub fn new(listener: L, stop: Arc<AtomicBool>, on_fatal: tokio::sync::oneshot::Sender<String>) -> Self {
        ListenerActor {
            listener: Some(listener),
            restarts: 0,
            backoff: RetryPolicy { initial: Duration::from_millis(200), max: Duration::from_secs(30), max_attempts: 0 },
            stop,
            on_fatal: Some(on_fatal),
        }
    }

    fn spawn_run(&mut self, ctx: &mut Context<Self>) {
        let Some(mut listener) = self.listener.take() else { return };
        let fut = async move {
            let r = listener.run().await;
            (listener, r)
        };
        ctx.spawn(fut.into_actor(self).map(|(listener, r), act, ctx| {
            act.listener = Some(listener);
            match r {
                Ok(()) => ctx.stop(),
                Err(e) if L::is_retryable(&e) && !act.stop.load(Ordering::Relaxed) => {
                    act.restarts += 1;
                    let d = act.backoff.backoff(act.restarts.min(10));
                    metrics::counter!(m::LISTENER_RESTARTS_TOTAL, "reason" => L::reason(&e)).increment(1);
                    tracing::warn!(target: "listener", actor = "listener", error = %e, restart_in_ms = d.as_millis() as u64, "listener failed; restarting from the store");
                    if let Some(l) = act.listener.as_mut() {
                        l.reset_before_next_run();
                    }
                    ctx.run_later(d, |act, ctx| act.spawn_run(ctx));
                }
                Err(e) => {
                    tracing::error!(target: "listener", actor = "listener", error = %e, "listener stopped on an unrecoverable error");
                    if let Some(tx) = act.on_fatal.take() {
                        let _ = tx.send(e.to_string());
                    }
                    ctx.stop();
                }
            }
        }));
    }
}

impl<L: Follow> Actor for ListenerActor<L> {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Self::Context) {
        tracing::info!(target: "listener", actor = "listener", "started");
        self.spawn_run(ctx);
    }
}
