//! Publishing a retry or dead-letter copy until the broker has stored it.
//! The original delivery stays unacked (held) for as long as this takes.

use super::Context;
use crate::amqp::publish::{send, verdict};
use lapin::Channel;
use lapin::protocol::BasicProperties;
use prometheus::IntGauge;
use std::time::Duration;
use tracing::{info, warn};

/// Counts one delivery in `warren_copies_held` from its first refused or
/// late copy until its copy is settled either way.
pub(super) struct Held<'a> {
    gauge: &'a IntGauge,
    marked: bool,
}

impl<'a> Held<'a> {
    fn new(gauge: &'a IntGauge) -> Self {
        Held {
            gauge,
            marked: false,
        }
    }

    fn mark(&mut self) {
        if !self.marked {
            self.marked = true;
            self.gauge.inc();
        }
    }
}

impl Drop for Held<'_> {
    fn drop(&mut self) {
        if self.marked {
            self.gauge.dec();
        }
    }
}

/// Pause before trying an unconfirmed copy again: doubles from 1 s to 30 s.
fn copy_retry_delay(failures: u32) -> Duration {
    Duration::from_secs((1u64 << failures.clamp(1, 6).saturating_sub(1)).min(30))
}

/// How long a copy may stay held, in units of `amqp.confirm_timeout`, before
/// the original is given back to the broker (nack with requeue). Long enough
/// that a node restart or a lost majority ends first (no requeue loop); short
/// enough that no worker slot waits forever on a broker that never answers.
pub(super) const HOLD_LIMIT_TIMEOUTS: u32 = 10;

/// Publishes a copy until the broker confirms it, holding the original
/// unacked meanwhile. A copy refused now (`312 NO_ROUTE` while a queue's node
/// is down, a nack) is published again after a pause: requeueing the
/// original at once would run the task again within milliseconds and, on a
/// quorum queue, burn its delivery limit. A confirm that misses
/// `amqp.confirm_timeout` is not a refusal: the copy may still be stored (a
/// queue regaining its majority), so Warren keeps waiting for that confirm
/// rather than publish a duplicate. Gives up (`Err`, and the caller requeues
/// the original) when the pool drains, the channel is gone (then the broker
/// redelivers the original), or the hold passes [`HOLD_LIMIT_TIMEOUTS`].
pub(super) async fn confirmed_copy(
    ctx: &Context,
    channel: &Channel,
    queue: &str,
    body: &[u8],
    props: BasicProperties,
) -> Result<(), String> {
    // The next attempt (or whoever reads the dead letter) continues this trace.
    let mut headers = props.headers().clone().unwrap_or_default();
    crate::telemetry::propagate::inject(&mut headers);
    let props = props.with_headers(headers);
    let metrics = &ctx.health.metrics;
    let mut held = Held::new(&metrics.copies_held);
    let mut refusals = 0;
    let give_up_at =
        tokio::time::Instant::now() + ctx.config.amqp.confirm_timeout * HOLD_LIMIT_TIMEOUTS;
    loop {
        let started = std::time::Instant::now();
        let outcome = match send(channel, queue, body, props.clone()).await {
            Ok(confirm) => wait_confirm(ctx, queue, confirm, &mut held, give_up_at).await,
            Err(e) => Err(format!("publish failed: {e}")),
        };
        metrics
            .publish_confirm
            .observe(started.elapsed().as_secs_f64());
        let Err(why) = outcome else { return Ok(()) };
        let out_of_time = tokio::time::Instant::now() >= give_up_at;
        if out_of_time || !channel.status().connected() || ctx.draining.is_cancelled() {
            return Err(why);
        }
        refusals += 1;
        metrics.copies_unconfirmed.inc();
        held.mark();
        let pause = copy_retry_delay(refusals);
        warn!(
            "copy to '{queue}' not stored ({why}); holding the task and trying again in {}s",
            pause.as_secs()
        );
        tokio::select! {
            _ = tokio::time::sleep_until(give_up_at.min(tokio::time::Instant::now() + pause)) => {}
            _ = ctx.draining.cancelled() => return Err(why),
        }
    }
}

/// The broker's verdict on one copy. Past each `amqp.confirm_timeout` the
/// copy counts as unconfirmed (the original stays held) and the wait goes on
/// until the broker answers, the channel dies, the pool drains or the hold
/// reaches `give_up_at`.
async fn wait_confirm(
    ctx: &Context,
    queue: &str,
    confirm: lapin::PublisherConfirm,
    held: &mut Held<'_>,
    give_up_at: tokio::time::Instant,
) -> Result<(), String> {
    let limit = ctx.config.amqp.confirm_timeout;
    tokio::pin!(confirm);
    let mut late = false;
    loop {
        tokio::select! {
            confirmation = &mut confirm => {
                if late {
                    info!("the copy to '{queue}' was confirmed late");
                }
                return verdict(confirmation);
            }
            _ = tokio::time::sleep(limit) => {
                ctx.health.metrics.copies_unconfirmed.inc();
                held.mark();
                if !late {
                    late = true;
                    warn!(
                        "no confirm for the copy to '{queue}' within amqp.confirm_timeout ({}); \
                         holding the task unacked and waiting (publishing again could duplicate it)",
                        crate::config::duration::format(&limit)
                    );
                }
            }
            _ = ctx.draining.cancelled() => return Err("no confirm before the drain".into()),
            _ = tokio::time::sleep_until(give_up_at) => {
                return Err(format!(
                    "no confirm after {} × amqp.confirm_timeout",
                    HOLD_LIMIT_TIMEOUTS
                ));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unconfirmed_copies_are_retried_with_growing_pauses() {
        let pauses: Vec<u64> = (1..8).map(|n| copy_retry_delay(n).as_secs()).collect();
        assert_eq!(pauses, [1, 2, 4, 8, 16, 30, 30]);
    }

    #[test]
    fn a_held_delivery_is_counted_once_until_settled() {
        let gauge = IntGauge::new("g", "g").unwrap();
        {
            let mut held = Held::new(&gauge);
            held.mark();
            held.mark();
            assert_eq!(gauge.get(), 1);
        }
        assert_eq!(gauge.get(), 0);
        let _unmarked = Held::new(&gauge);
        assert_eq!(gauge.get(), 0);
    }
}
