//! Graceful drain (invariant 4): readiness off, consumer cancelled,
//! prefetched-but-unstarted deliveries requeued at once, in-flight tasks
//! given `pool.shutdown_timeout`, then the connection closed (the broker
//! requeues whatever is still unacked).

use super::Context;
use super::session::Session;
use crate::health::Phase;
use crate::metrics::Disposition;
use lapin::options::{BasicCancelOptions, BasicNackOptions};
use std::time::Duration;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::{info, warn};

/// How long abandoned workers get to drop their handler futures.
const ABANDON_GRACE: Duration = Duration::from_secs(5);

/// Graceful stop: no new deliveries, prefetched ones back to the queue now,
/// in-flight ones get `shutdown_timeout` to finish and be acked, then close.
pub(super) async fn drain(ctx: &Context, mut session: Session, tracker: &TaskTracker) {
    ctx.health.set_phase(Phase::Draining);
    ctx.draining.cancel();
    let tag = session.feed.tag();
    info!(
        in_flight = ctx.health.in_flight(),
        "draining: cancelling the consumer"
    );
    let cancel = async {
        (session.channel)
            .basic_cancel(tag, BasicCancelOptions::default())
            .await
            .map_err(|e| crate::Error::amqp("basic.cancel", e))
    };
    let limit = ctx.config.amqp.connect_timeout;
    match crate::amqp::within(limit, "cancelling the consumer", cancel).await {
        Ok(()) => requeue_prefetched(ctx, &mut session).await,
        // No cancel-ok: the feed would not end either (a frozen node).
        Err(e) => warn!("{e}; closing the connection will requeue everything unacked"),
    }
    wait_in_flight(ctx, tracker).await;
    // Every worker is done: let the batcher send its last acks, then close.
    let Session {
        conn,
        channel,
        acks,
        batcher,
        ..
    } = session;
    drop(acks);
    let _ = tokio::time::timeout(Duration::from_secs(5), batcher).await;
    crate::amqp::close_channel(&channel, "warren shutting down").await;
    if let Err(e) = crate::amqp::close(&conn, "warren shutting down").await {
        warn!("closing the connection: {e}");
    }
    info!("stopped");
}

/// After cancel-ok the feed ends; whatever it yields first was prefetched
/// but never started (including what consumers replaced by a prefetch
/// change still hold): give it back at once so another pod takes it now.
async fn requeue_prefetched(ctx: &Context, session: &mut Session) {
    let mut requeued = 0usize;
    while let Ok(Some(next)) =
        tokio::time::timeout(Duration::from_secs(5), session.feed.next()).await
    {
        if let Ok(delivery) = next {
            let requeue = BasicNackOptions {
                requeue: true,
                multiple: false,
            };
            if delivery.acker.nack(requeue).await.is_ok() {
                requeued += 1;
                ctx.health.metrics.count(Disposition::Requeued);
            }
        }
    }
    info!(requeued, "requeued prefetched tasks that had not started");
}

/// Gives in-flight tasks `pool.shutdown_timeout` to finish; after that,
/// workers abandon them (exec handlers kill their process groups) and leave
/// the deliveries unacked, so the broker requeues them when we close.
pub(super) async fn wait_in_flight(ctx: &Context, tracker: &TaskTracker) {
    ctx.draining.cancel();
    let limit = ctx.config.pool.shutdown_timeout;
    if !finish_within(tracker, limit, &ctx.hard_stop).await {
        warn!(
            in_flight = ctx.health.in_flight(),
            "shutdown_timeout ({}) passed with tasks still running; stopped them, the broker requeues them",
            crate::config::duration::format(&limit)
        );
    }
}

/// Waits up to `limit` for every tracked task; past it, cancels `hard_stop`
/// and waits (bounded) for the workers to let go. True when all finished in time.
async fn finish_within(
    tracker: &TaskTracker,
    limit: Duration,
    hard_stop: &CancellationToken,
) -> bool {
    tracker.close();
    if tokio::time::timeout(limit, tracker.wait()).await.is_ok() {
        return true;
    }
    hard_stop.cancel();
    let _ = tokio::time::timeout(ABANDON_GRACE, tracker.wait()).await;
    false
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A tracker with one task that ends when `hard_stop` is cancelled or after `work`.
    fn one_task(work: Duration, hard_stop: &CancellationToken) -> TaskTracker {
        let tracker = TaskTracker::new();
        let stop = hard_stop.clone();
        tracker.spawn(async move {
            tokio::select! {
                _ = tokio::time::sleep(work) => {}
                _ = stop.cancelled() => {}
            }
        });
        tracker
    }

    #[tokio::test(start_paused = true)]
    async fn tasks_that_finish_in_time_are_not_stopped() {
        let hard_stop = CancellationToken::new();
        let tracker = one_task(Duration::from_secs(3), &hard_stop);
        assert!(finish_within(&tracker, Duration::from_secs(25), &hard_stop).await);
        assert!(!hard_stop.is_cancelled());
    }

    #[tokio::test(start_paused = true)]
    async fn tasks_past_the_deadline_are_abandoned() {
        let hard_stop = CancellationToken::new();
        let tracker = one_task(Duration::from_secs(3600), &hard_stop);
        let started = tokio::time::Instant::now();
        assert!(!finish_within(&tracker, Duration::from_secs(25), &hard_stop).await);
        assert!(hard_stop.is_cancelled());
        assert!(tracker.is_empty(), "the worker let go once told to");
        assert_eq!(started.elapsed(), Duration::from_secs(25));
    }
}
