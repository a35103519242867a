//! The supervisor: connect → declare → consume → (lost: reconnect) → drain.

use super::acks::Ticket;
use super::feed::retune;
use super::prefetch::{TICK, Tuner};
use super::session::{End, Session};
use super::settle::Unsettled;
use super::slots::Slots;
use super::{Context, drain, worker};
use crate::config::Prefetch;
use crate::error::{Error, Result};
use crate::handler::{Handler, Task};
use crate::health::Phase;
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
    let mut tuner = tuner(&ctx);
    let mut failures: u32 = 0;
    while let Some(mut session) = connect(&ctx, &*handler, &shutdown, &mut failures).await? {
        if let Some(tuner) = &mut tuner {
            tuner.restart(session.round_trip, std::time::Instant::now());
            metrics.prefetch.set(tuner.current().into());
        }
        ctx.health.set_node(Some(session.node.clone()));
        ctx.health.set_phase(Phase::Consuming);
        ctx.observer_channel
            .send_replace(session.conn.create_channel().await.ok());
        let mut run = Run {
            slots: &mut slots,
            tracker: &tracker,
            shutdown: &shutdown,
            tuner: tuner.as_mut(),
        };
        let end = consume_resubscribing(&ctx, &handler, &mut session, &mut run).await;
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
        let _ = crate::amqp::close(&session.conn, "reconnecting").await;
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

/// Adaptive prefetch for `pool.prefetch: auto`; None when it is pinned.
fn tuner(ctx: &Context) -> Option<Tuner> {
    let pool = &ctx.config.pool;
    (pool.prefetch == Prefetch::Auto).then(|| {
        let max = pool.prefetch_max.min(u32::from(u16::MAX)) as u16;
        Tuner::new(pool.effective_prefetch(), max, std::time::Instant::now())
    })
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

/// Why the feed ended: the broker cancelled the consumer, or it closed the
/// channel, whose consumers lapin then ends too (a prefetch change that met
/// a queue deleted under it gets a 404). Only a new session helps then, not
/// consuming again on that channel.
fn feed_ended(session: &Session) -> End {
    match session.channel.status().connected() {
        true => End::Cancelled,
        false => End::Lost("the broker closed the consuming channel".into()),
    }
}

/// Errors that a reconnect cannot fix: the operator must change something.
fn is_permanent(e: &Error) -> bool {
    matches!(
        e,
        Error::QueueMismatch { .. } | Error::QueueMissing { .. } | Error::Config { .. }
    )
}

/// What the dispatcher works with besides the session, for the whole run.
struct Run<'a> {
    slots: &'a mut Slots,
    tracker: &'a TaskTracker,
    shutdown: &'a CancellationToken,
    /// Adaptive prefetch; None when `pool.prefetch` is pinned.
    tuner: Option<&'a mut Tuner>,
}

/// [`consume`], resubscribing whenever the broker cancels the consumer.
async fn consume_resubscribing<H: Handler>(
    ctx: &Arc<Context>,
    handler: &Arc<H>,
    session: &mut Session,
    run: &mut Run<'_>,
) -> End {
    loop {
        let end = consume(ctx, handler, session, run).await;
        if !matches!(end, End::Cancelled) {
            return end;
        }
        if let Err(end) = session.resubscribe(ctx, run.shutdown).await {
            return end;
        }
    }
}

/// The dispatcher: a free worker first, then a delivery for it; between
/// them, adaptive prefetch's ticks.
async fn consume<H: Handler>(
    ctx: &Arc<Context>,
    handler: &Arc<H>,
    session: &mut Session,
    run: &mut Run<'_>,
) -> End {
    // One registration with each token for the whole session, not two per task.
    let cancelled = run.shutdown.cancelled();
    let stalled = session.stalled.clone();
    let stalled = stalled.cancelled();
    tokio::pin!(cancelled, stalled);
    let stalled_end = || End::Lost(ctx.health.reconnect_reason().unwrap_or_default());
    let mut tick = tokio::time::interval(TICK);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut tuning = run.tuner.is_some();
    let mut slot = None;
    loop {
        let next = tokio::select! {
            biased;
            _ = &mut cancelled => return End::Shutdown,
            _ = &mut stalled => return stalled_end(),
            _ = tick.tick(), if tuning => {
                let tuner = run.tuner.as_deref_mut().expect("tuning");
                tuning = match tune(ctx, session, tuner).await {
                    Ok(keep) => keep,
                    Err(end) => return end,
                };
                continue;
            }
            taken = run.slots.take(), if slot.is_none() => {
                slot = Some(taken);
                continue;
            }
            next = session.feed.next(), if slot.is_some() => next,
        };
        let slot = slot
            .take()
            .expect("a delivery is awaited only with a free slot");
        match next {
            Some(Ok(mut delivery)) => {
                ctx.health.metrics.deliveries.inc();
                let task = Task::from_delivery(&mut delivery, &ctx.topo.queue);
                let ticket = Ticket::issue(&session.acks, delivery.delivery_tag, delivery.acker);
                let unsettled =
                    Unsettled::new(ticket, session.channel.clone(), delivery.properties);
                run.tracker.spawn(worker::process(
                    ctx.clone(),
                    handler.clone(),
                    task,
                    unsettled,
                    slot,
                ));
            }
            Some(Err(e)) => return End::Lost(e.to_string()),
            None => return feed_ended(session),
        }
    }
}

/// One adaptive-prefetch tick. Ok(false) stops tuning for this session:
/// the broker closed the channel under us, and the feed ends with its
/// reason (a consumer_timeout, say), which the operator needs more than
/// "channel closed".
async fn tune(ctx: &Context, session: &mut Session, tuner: &mut Tuner) -> Result<bool, End> {
    match retune(ctx, &session.channel, &mut session.feed, tuner).await {
        Ok(()) => Ok(true),
        Err(_) if !session.channel.status().connected() => Ok(false),
        Err(end) => Err(end),
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
