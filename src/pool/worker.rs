//! One worker turn: delivery → task → handler (guarded) → settle.

use super::Ctx;
use super::settle;
use super::slots::Slot;
use crate::handler::task::attempt_from;
use crate::handler::{Handler, Outcome, Task};
use futures_lite::FutureExt;
use lapin::Channel;
use lapin::message::Delivery;
use std::any::Any;
use std::panic::AssertUnwindSafe;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;
use tracing::{Instrument, error, info_span, warn};

/// Processes one delivery on the worker holding `slot`.
pub(super) async fn process<H: Handler>(
    ctx: Arc<Ctx<H>>,
    channel: Channel,
    delivery: Delivery,
    slot: Slot,
) {
    let Delivery {
        routing_key,
        redelivered,
        properties,
        data,
        acker,
        ..
    } = delivery;
    let headers = properties.headers().clone().unwrap_or_default();
    let task = Task {
        body: data,
        attempt: attempt_from(&headers),
        headers,
        message_id: properties.message_id().as_ref().map(ToString::to_string),
        correlation_id: properties
            .correlation_id()
            .as_ref()
            .map(ToString::to_string),
        content_type: properties.content_type().as_ref().map(ToString::to_string),
        redelivered,
        queue: ctx.topo.queue.clone(),
        routing_key: routing_key.to_string(),
    };
    let span = info_span!(
        "task",
        worker = slot.id(),
        message_id = task.message_id.as_deref().unwrap_or(""),
        attempt = task.attempt,
        redelivered
    );
    async {
        if redelivered {
            warn!("redelivered: a worker may have died while running it before");
        }
        ctx.state.in_flight.fetch_add(1, Ordering::Relaxed);
        let outcome = run_guarded(&ctx.handler, &task, ctx.config.pool.handler_timeout).await;
        settle::settle(&ctx, &channel, &acker, &properties, &task, outcome).await;
        ctx.state.in_flight.fetch_sub(1, Ordering::Relaxed);
    }
    .instrument(span)
    .await;
    drop(slot);
}

/// Runs the handler; a panic or a timeout becomes a retry instead of
/// killing the worker or holding the delivery forever.
pub(super) async fn run_guarded<H: Handler>(handler: &H, task: &Task, limit: Duration) -> Outcome {
    let guarded = AssertUnwindSafe(handler.handle(task)).catch_unwind();
    match tokio::time::timeout(limit, guarded).await {
        Ok(Ok(outcome)) => outcome,
        Ok(Err(panic)) => {
            let why = panic_message(panic.as_ref());
            error!("handler panicked: {why}; the task will be retried");
            Outcome::retry(format!("handler panicked: {why}"))
        }
        Err(_) => {
            let limit = crate::config::duration::format(&limit);
            warn!("handler exceeded pool.handler_timeout ({limit}); the task will be retried");
            Outcome::retry(format!("handler timed out after {limit}"))
        }
    }
}

fn panic_message(panic: &(dyn Any + Send)) -> String {
    if let Some(s) = panic.downcast_ref::<&str>() {
        (*s).to_owned()
    } else if let Some(s) = panic.downcast_ref::<String>() {
        s.clone()
    } else {
        "non-string panic payload".to_owned()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    struct Panics;
    impl Handler for Panics {
        async fn handle(&self, _task: &Task) -> Outcome {
            panic!("boom")
        }
    }

    struct Slow;
    impl Handler for Slow {
        async fn handle(&self, _task: &Task) -> Outcome {
            tokio::time::sleep(Duration::from_secs(3600)).await;
            Outcome::Ack
        }
    }

    #[tokio::test]
    async fn a_panic_becomes_a_retry() {
        let task = Task::for_test(b"x".to_vec());
        let outcome = run_guarded(&Panics, &task, Duration::from_secs(5)).await;
        assert_eq!(outcome, Outcome::retry("handler panicked: boom"));
    }

    #[tokio::test(start_paused = true)]
    async fn a_timeout_becomes_a_retry() {
        let task = Task::for_test(b"x".to_vec());
        let outcome = run_guarded(&Slow, &task, Duration::from_secs(10)).await;
        assert_eq!(outcome, Outcome::retry("handler timed out after 10s"));
    }
}
