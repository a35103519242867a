//! The supervisor: connect → declare → consume → (lost: reconnect) → drain.

use super::acks::Ticket;
use super::session::{End, Session};
use super::settle::Unsettled;
use super::slots::Slots;
use super::{Context, drain, worker};
use crate::error::{Error, Result};
use crate::handler::{Handler, Task};
use crate::health::Phase;
use futures_lite::StreamExt;
use std::sync::Arc;
use std::time::Duration;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::{error, info, warn};

/// Runs sessions until shutdown; reconnects with capped exponential backoff
/// and jitter when the broker goes away. Only permanent errors return early.
pub(super) async fn supervise<H: Handler>(
    ctx: Arc<Context>,
    handler: Arc<H>,
    shutdown: CancellationToken,
) -> Result<()> {
    let mut slots = Slots::new(ctx.config.pool.concurrency as usize);
    let tracker = TaskTracker::new();
    let metrics = &ctx.health.metrics;
    metrics.workers.set(ctx.config.pool.concurrency.into());
    metrics
        .prefetch
        .set(ctx.config.pool.effective_prefetch().into());
    let mut failures: u32 = 0;
    while let Some(mut session) = connect(&ctx, &*handler, &shutdown, &mut failures).await? {
        ctx.health.set_node(Some(session.node.clone()));
        ctx.health.set_phase(Phase::Consuming);
        ctx.observer_channel
            .send_replace(session.conn.create_channel().await.ok());
        let end = consume_resubscribing(
            &ctx,
            &handler,
            &mut session,
            &mut slots,
            &tracker,
            &shutdown,
        )
        .await;
        ctx.observer_channel.send_replace(None);
        let reason = match end {
            End::Shutdown => {
                drain::drain(&ctx, session, &tracker).await;
                return Ok(());
            }
            End::Lost(reason) => reason,
            End::Cancelled => "the broker cancelled the consumer".into(),
        };
        ctx.health.set_phase(Phase::Reconnecting);
        ctx.health.set_node(None);
        warn!(
            in_flight = ctx.health.in_flight(),
            node = %session.node,
            "lost the broker {} ({}); reconnecting. Tasks in flight cannot be acked on a new \
             channel: the broker will redeliver them",
            session.node,
            explain_loss(&reason)
        );
        let _ = session.conn.close(200, "reconnecting".into()).await;
        failures = 1;
        if sleep_or_shutdown(reconnect_delay(failures), &shutdown).await {
            break;
        }
    }
    // Shutdown while not consuming: nothing prefetched, only finish in-flight work.
    ctx.health.set_phase(Phase::Draining);
    drain::wait_in_flight(&ctx, &tracker).await;
    Ok(())
}

/// Waits for the handler, then opens a session, retrying with backoff.
/// Ok(None) when shutdown came first; Err only for permanent errors.
async fn connect<H: Handler>(
    ctx: &Context,
    handler: &H,
    shutdown: &CancellationToken,
    failures: &mut u32,
) -> Result<Option<Session>> {
    loop {
        if wait_for_handler(handler, shutdown).await {
            return Ok(None);
        }
        let opened = tokio::select! {
            _ = shutdown.cancelled() => return Ok(None),
            opened = Session::open(ctx) => opened,
        };
        match opened {
            Ok(session) => {
                if *failures > 0 {
                    ctx.health.metrics.reconnects.inc();
                    info!("reconnected after {failures} failed attempt(s)");
                }
                return Ok(Some(session));
            }
            Err(e) if is_permanent(&e) => return Err(e),
            Err(e) => {
                *failures += 1;
                let delay = reconnect_delay(*failures);
                error!(
                    "{e}; retrying in {:.1}s (attempt {failures})",
                    delay.as_secs_f64()
                );
                if sleep_or_shutdown(delay, shutdown).await {
                    return Ok(None);
                }
            }
        }
    }
}

/// Holds off consuming while the handler says it cannot work (e.g. its HTTP
/// sidecar is still starting), so tasks are not failed for nothing.
/// True when shutdown came first.
async fn wait_for_handler<H: Handler>(handler: &H, shutdown: &CancellationToken) -> bool {
    let mut logged = false;
    loop {
        match handler.ready().await {
            Ok(()) => return false,
            Err(why) if !logged => {
                warn!("waiting for the handler to be ready before consuming: {why}");
                logged = true;
            }
            Err(_) => {}
        }
        if sleep_or_shutdown(Duration::from_secs(1), shutdown).await {
            return true;
        }
    }
}

/// Names the broker's consumer_timeout plainly: RabbitMQ reports it as a
/// 406 on the channel, which otherwise reads like a configuration error.
fn explain_loss(reason: &str) -> String {
    if reason.contains("PRECONDITION_FAILED") && reason.contains("timed out") {
        format!(
            "{reason} — a task ran longer than the broker's consumer_timeout, so RabbitMQ closed the \
             channel and will redeliver it; lower pool.handler_timeout below consumer_timeout \
             (amqp.broker_consumer_timeout) or raise consumer_timeout on the broker"
        )
    } else {
        reason.to_owned()
    }
}

/// Errors that a reconnect cannot fix: the operator must change something.
fn is_permanent(e: &Error) -> bool {
    matches!(
        e,
        Error::QueueMismatch { .. } | Error::QueueMissing { .. } | Error::Config { .. }
    )
}

/// [`consume`], resubscribing whenever the broker cancels the consumer.
async fn consume_resubscribing<H: Handler>(
    ctx: &Arc<Context>,
    handler: &Arc<H>,
    session: &mut Session,
    slots: &mut Slots,
    tracker: &TaskTracker,
    shutdown: &CancellationToken,
) -> End {
    loop {
        let end = consume(ctx, handler, session, slots, tracker, shutdown).await;
        if !matches!(end, End::Cancelled) {
            return end;
        }
        if let Err(end) = session.resubscribe(ctx, shutdown).await {
            return end;
        }
    }
}

/// The dispatcher: a free worker first, then a delivery for it.
async fn consume<H: Handler>(
    ctx: &Arc<Context>,
    handler: &Arc<H>,
    session: &mut Session,
    slots: &mut Slots,
    tracker: &TaskTracker,
    shutdown: &CancellationToken,
) -> End {
    // One registration with each token for the whole session, not two per task.
    let cancelled = shutdown.cancelled();
    let stalled = session.stalled.clone();
    let stalled = stalled.cancelled();
    tokio::pin!(cancelled, stalled);
    let stalled_end = || End::Lost(ctx.health.reconnect_reason().unwrap_or_default());
    loop {
        let slot = tokio::select! {
            biased;
            _ = &mut cancelled => return End::Shutdown,
            _ = &mut stalled => return stalled_end(),
            slot = slots.take() => slot,
        };
        let next = tokio::select! {
            biased;
            _ = &mut cancelled => return End::Shutdown,
            _ = &mut stalled => return stalled_end(),
            next = session.consumer.next() => next,
        };
        match next {
            Some(Ok(mut delivery)) => {
                ctx.health.metrics.deliveries.inc();
                let task = Task::from_delivery(&mut delivery, &ctx.topo.queue);
                let ticket = Ticket::issue(&session.acks, delivery.delivery_tag, delivery.acker);
                let unsettled =
                    Unsettled::new(ticket, session.channel.clone(), delivery.properties);
                tracker.spawn(worker::process(
                    ctx.clone(),
                    handler.clone(),
                    task,
                    unsettled,
                    slot,
                ));
            }
            Some(Err(e)) => return End::Lost(e.to_string()),
            None => return End::Cancelled,
        }
    }
}

/// Capped exponential backoff (0.5 s … 30 s) with ±50 % jitter so a fleet
/// of pods does not reconnect in lockstep after a broker restart.
pub(super) fn reconnect_delay(failures: u32) -> Duration {
    let base = Duration::from_millis(500).saturating_mul(1 << failures.min(6).saturating_sub(1));
    let capped = base.min(Duration::from_secs(30));
    capped.mul_f64(0.5 + jitter())
}

/// A number in [0, 1) from the std hasher's random keys (no RNG crate needed).
fn jitter() -> f64 {
    use std::hash::{BuildHasher, RandomState};
    (RandomState::new().hash_one(std::time::Instant::now()) % 1_000_000) as f64 / 1_000_000.0
}

/// Sleeps; true when shutdown came first.
pub(super) async fn sleep_or_shutdown(delay: Duration, shutdown: &CancellationToken) -> bool {
    tokio::select! {
        _ = shutdown.cancelled() => true,
        _ = tokio::time::sleep(delay) => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reconnect_delay_grows_and_is_capped() {
        for failures in 1..20 {
            let d = reconnect_delay(failures);
            assert!(d >= Duration::from_millis(250), "{failures}: {d:?}");
            assert!(d <= Duration::from_secs(45), "{failures}: {d:?}");
        }
        assert!(reconnect_delay(1) < Duration::from_secs(1));
        assert!(reconnect_delay(10) >= Duration::from_secs(8));
    }
}
