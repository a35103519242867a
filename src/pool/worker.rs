//! One worker turn: delivery → task → handler (guarded) → settle.

use super::Ctx;
use super::acks::Ticket;
use super::settle;
use super::slots::Slot;
use crate::handler::task::attempt_from;
use crate::handler::{Handler, Outcome, Task};
use crate::metrics::Disposition;
use futures_lite::FutureExt;
use lapin::Channel;
use lapin::message::Delivery;
use prometheus::{IntCounter, IntGauge};
use std::any::Any;
use std::panic::AssertUnwindSafe;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tracing::{Instrument, error, info_span, warn};

/// Processes one delivery on the worker holding `slot`.
pub(super) async fn process<H: Handler>(
    ctx: Arc<Ctx<H>>,
    channel: Channel,
    delivery: Delivery,
    ticket: Ticket,
    slot: Slot,
) {
    let Delivery {
        routing_key,
        redelivered,
        properties,
        data,
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
        otel.name = %format!("{} process", ctx.topo.queue),
        otel.kind = "consumer",
        messaging.system = "rabbitmq",
        messaging.operation = "process",
        messaging.destination.name = %ctx.topo.queue,
        messaging.message.id = task.message_id.as_deref().unwrap_or(""),
        worker = slot.id(),
        attempt = task.attempt,
        redelivered
    );
    crate::telemetry::propagate::adopt(&span, &task.headers);
    async {
        let metrics = &ctx.state.metrics;
        let _in_flight = InFlight::enter(&metrics.in_flight);
        if redelivered {
            metrics.redelivered.inc();
            warn!("redelivered: a worker may have died while running it before");
        }
        let outcome = if task.body.len() as u64 > ctx.config.pool.max_body_bytes {
            Outcome::reject(format!(
                "too large: {} bytes exceeds pool.max_body_bytes ({})",
                task.body.len(),
                ctx.config.pool.max_body_bytes
            ))
        } else {
            let started = Instant::now();
            let limit = ctx.config.pool.handler_timeout;
            let guarded = run_guarded(&ctx.handler, &task, limit, &metrics.handler_panics);
            let outcome = tokio::select! {
                outcome = guarded => outcome,
                _ = ctx.hard_stop.cancelled() => {
                    warn!("abandoned at the shutdown deadline; the broker will redeliver it");
                    return;
                }
            };
            metrics.observe_task(started.elapsed());
            outcome
        };
        // The handler is done: free the worker for the next prefetched task
        // now, so waiting for the ack (or a copy's confirm) never holds up
        // new work. Unsettled deliveries stay bounded by the prefetch count.
        drop(slot);
        let settled = if outcome == Outcome::Ack {
            ticket.ack();
            Disposition::Acked
        } else {
            // Boxed: the retry/dead-letter path (publish + confirm) is rare and
            // large; keeping it out of line keeps every task's future small.
            Box::pin(settle::settle(
                &ctx,
                &channel,
                &ticket,
                &properties,
                &task,
                outcome,
            ))
            .await
        };
        metrics.count(settled);
    }
    .instrument(span)
    .await;
}

/// Counts a delivery in `warren_tasks_in_flight` for as long as it lives,
/// including when the task is abandoned midway.
struct InFlight<'a>(&'a IntGauge);

impl<'a> InFlight<'a> {
    fn enter(gauge: &'a IntGauge) -> Self {
        gauge.inc();
        InFlight(gauge)
    }
}

impl Drop for InFlight<'_> {
    fn drop(&mut self) {
        self.0.dec();
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
