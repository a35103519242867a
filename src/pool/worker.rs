//! One worker turn: task → handler (guarded) → settle.

use super::Context;
use super::settle::Unsettled;
use super::slots::Slot;
use crate::handler::{Handler, Outcome, Task};
use crate::telemetry::span::TaskFields;
use futures_lite::FutureExt;
use prometheus::IntCounter;
use std::any::Any;
use std::panic::AssertUnwindSafe;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tracing::{Instrument, error, warn};

/// Processes one task on the worker holding `slot`, then settles its delivery.
pub(super) async fn process<H: Handler>(
    ctx: Arc<Context>,
    handler: Arc<H>,
    task: Task,
    delivery: Unsettled,
    slot: Slot,
) {
    let fields = TaskFields {
        queue: &task.queue,
        message_id: task.message_id.as_deref(),
        attempt: task.attempt,
        redelivered: task.redelivered,
        headers: &task.headers,
    };
    let span = crate::telemetry::span::task(fields, slot.id());
    async move {
        let metrics = &ctx.health.metrics;
        let _in_flight = ctx.health.track_in_flight();
        if task.redelivered {
            metrics.redelivered.inc();
            warn!("redelivered: a worker may have died while running it before");
        }
        let Some(outcome) = run(&ctx, &*handler, &task).await else {
            warn!("abandoned at the shutdown deadline; the broker will redeliver it");
            return;
        };
        // The handler is done: free the worker for the next prefetched task
        // now, so waiting for the ack (or a copy's confirm) never holds up
        // new work. Unsettled deliveries stay bounded by the prefetch count.
        drop(slot);
        let how = delivery.settle(&ctx, &task, outcome).await;
        metrics.count(how);
        if task.headers.contains_key(crate::headers::REPLAYED) {
            metrics.count_replayed(how);
        }
    }
    .instrument(span)
    .await;
}

/// The handler's outcome, or None when the drain deadline passed first.
/// Oversize bodies are rejected without calling the handler.
async fn run<H: Handler>(ctx: &Context, handler: &H, task: &Task) -> Option<Outcome> {
    let pool = &ctx.config.pool;
    if task.body.len() as u64 > pool.max_body_bytes {
        return Some(Outcome::reject(format!(
            "too large: {} bytes exceeds pool.max_body_bytes ({})",
            task.body.len(),
            pool.max_body_bytes
        )));
    }
    let metrics = &ctx.health.metrics;
    let started = Instant::now();
    let guarded = run_guarded(handler, task, pool.handler_timeout, &metrics.handler_panics);
    tokio::select! {
        outcome = guarded => {
            let took = started.elapsed();
            metrics.observe_task(took);
            ctx.clock.record(took);
            Some(outcome)
        }
        _ = ctx.hard_stop.cancelled() => None,
    }
}

/// Runs the handler; a panic or a timeout becomes a retry instead of
/// killing the worker or holding the delivery forever.
pub(super) async fn run_guarded<H: Handler>(
    handler: &H,
    task: &Task,
    limit: Duration,
    panics: &IntCounter,
) -> Outcome {
    let guarded = AssertUnwindSafe(handler.handle(task)).catch_unwind();
    match tokio::time::timeout(limit, guarded).await {
        Ok(Ok(outcome)) => outcome,
        Ok(Err(panic)) => {
            let why = panic_message(panic.as_ref());
            panics.inc();
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
        let panics = IntCounter::new("p", "p").unwrap();
        let outcome = run_guarded(&Panics, &task, Duration::from_secs(5), &panics).await;
        assert_eq!(outcome, Outcome::retry("handler panicked: boom"));
        assert_eq!(panics.get(), 1);
    }

    #[tokio::test(start_paused = true)]
    async fn a_timeout_becomes_a_retry() {
        let task = Task::for_test(b"x".to_vec());
        let panics = IntCounter::new("p", "p").unwrap();
        let outcome = run_guarded(&Slow, &task, Duration::from_secs(10), &panics).await;
        assert_eq!(outcome, Outcome::retry("handler timed out after 10s"));
    }
}
