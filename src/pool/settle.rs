//! Outcome → AMQP. The one rule: the original delivery is acked only after
//! the handler succeeded, or after a copy (retry or dead letter) was
//! confirmed by the broker. If a copy cannot be confirmed, the original is
//! nacked with requeue, so the broker still holds the task.

use super::Context;
use super::acks::Ticket;
use super::copy::confirmed_copy;
use crate::amqp::publish::PERSISTENT;
use crate::amqp::topology::Topology;
use crate::handler::{Outcome, Task};
use crate::headers::{
    ATTEMPT, ATTEMPTS, FIRST_FAILURE, LAST_ERROR, LAST_FAILURE, ORIGINAL_QUEUE,
    ORIGINAL_ROUTING_KEY, REASON, WORKER,
};
use crate::metrics::Disposition;
use lapin::Channel;
use lapin::protocol::BasicProperties;
use lapin::types::{AMQPValue, FieldTable};
use std::time::Duration;
use tracing::{error, info, warn};

/// A delivery the pool holds unacked. The methods below are the only ways it
/// leaves the pool, and each consumes it, so none is settled twice.
pub(super) struct Unsettled {
    ticket: Ticket,
    /// The consuming channel: copies are published (and confirmed) on it.
    channel: Channel,
    /// The original's properties, kept on retry and dead-letter copies.
    props: BasicProperties,
}

impl Unsettled {
    /// Wraps a delivery whose tag `ticket` registered with the ack batcher.
    pub(super) fn new(ticket: Ticket, channel: Channel, props: BasicProperties) -> Self {
        Unsettled {
            ticket,
            channel,
            props,
        }
    }

    /// Settles according to the handler's outcome.
    pub(super) async fn settle(self, ctx: &Context, task: &Task, outcome: Outcome) -> Disposition {
        if outcome == Outcome::Ack {
            self.ticket.ack();
            return Disposition::Acked;
        }
        // Boxed: the retry/dead-letter path (publish + confirm) is rare and
        // large; keeping it out of line keeps every task's future small.
        Box::pin(self.settle_failure(ctx, task, outcome)).await
    }

    async fn settle_failure(self, ctx: &Context, task: &Task, outcome: Outcome) -> Disposition {
        match decide(
            &ctx.topo,
            ctx.config.retry.max_attempts,
            task.attempt,
            outcome,
        ) {
            Decision::Ack => {
                self.ticket.ack();
                Disposition::Acked
            }
            Decision::Retry {
                delay,
                queue,
                reason,
            } => self.retry(ctx, task, delay, queue, &reason).await,
            Decision::DeadLetter { reason } => self.dead_letter(ctx, task, &reason).await,
        }
    }

    /// A copy with attempt + 1 into `queue`, which delays it by `delay`.
    async fn retry(
        self,
        ctx: &Context,
        task: &Task,
        delay: Duration,
        queue: &str,
        reason: &str,
    ) -> Disposition {
        let copy = self.copy_props(retry_headers(task, reason));
        match confirmed_copy(ctx, &self.channel, queue, &task.body, copy).await {
            Ok(()) => {
                info!(
                    "attempt {} of {} failed ({reason}); retrying in {}",
                    task.attempt,
                    ctx.config.retry.max_attempts,
                    crate::config::duration::format(&delay)
                );
                self.ticket.ack();
                Disposition::Retried
            }
            Err(why) => {
                let why = format!("retry copy to '{queue}' not confirmed: {why}");
                self.requeue_original(&why).await
            }
        }
    }

    /// A copy with the reason and history into the dead-letter queue.
    async fn dead_letter(self, ctx: &Context, task: &Task, reason: &str) -> Disposition {
        let dead = &ctx.topo.dead;
        let copy = self.copy_props(dead_letter_headers(task, reason, &ctx.worker_name));
        match confirmed_copy(ctx, &self.channel, dead, &task.body, copy).await {
            Ok(()) => {
                error!("dead-lettered to '{dead}': {reason}");
                self.ticket.ack();
                Disposition::DeadLettered
            }
            Err(why) => {
                let why = format!("dead letter to '{dead}' not confirmed: {why}");
                self.requeue_original(&why).await
            }
        }
    }

    /// The copy failed: give the original back to the broker rather than lose it.
    async fn requeue_original(self, why: &str) -> Disposition {
        warn!("{why}; requeueing the original so it is not lost");
        if let Err(e) = self.ticket.requeue().await {
            warn!(
                "could not nack ({e}); the broker will redeliver this task when the channel closes"
            );
        }
        Disposition::Requeued
    }

    /// The original's properties with `headers`, persistent.
    fn copy_props(&self, headers: FieldTable) -> BasicProperties {
        self.props
            .clone()
            .with_headers(headers)
            .with_delivery_mode(PERSISTENT)
    }
}

/// What to do with a failed or finished task, from the outcome alone (no
/// I/O, so the rules are unit-tested without a broker).
#[derive(Debug, PartialEq)]
enum Decision<'t> {
    Ack,
    /// Republish to `queue`, which holds it for `delay`.
    Retry {
        delay: Duration,
        queue: &'t str,
        reason: String,
    },
    /// Republish to the dead-letter queue with `reason`.
    DeadLetter {
        reason: String,
    },
}

/// Invariant 3: at most `max_attempts` attempts, then the dead-letter queue.
fn decide(topo: &Topology, max_attempts: u32, attempt: u32, outcome: Outcome) -> Decision<'_> {
    match outcome {
        Outcome::Ack => Decision::Ack,
        Outcome::Retry { after, reason } if attempt < max_attempts => {
            let (delay, queue) = topo.retry_queue(attempt, after);
            Decision::Retry {
                delay: *delay,
                queue,
                reason,
            }
        }
        Outcome::Retry { reason, .. } => Decision::DeadLetter {
            reason: format!("gave up after {attempt} attempts; last error: {reason}"),
        },
        Outcome::Reject { reason } => Decision::DeadLetter { reason },
    }
}

/// Dead-letter headers: the reason, attempts, first/last failure, worker,
/// and where the task came from (docs/reliability.md lists them).
fn dead_letter_headers(task: &Task, reason: &str, worker: &str) -> FieldTable {
    let mut headers = task.headers.clone();
    let now = crate::headers::now();
    let first = task.headers.inner().get(FIRST_FAILURE).cloned();
    let text = |s: &str| AMQPValue::LongString(s.into());
    headers.insert(REASON.into(), text(&truncate(reason, 4096)));
    headers.insert(ATTEMPTS.into(), AMQPValue::LongLongInt(task.attempt.into()));
    headers.insert(
        FIRST_FAILURE.into(),
        first.unwrap_or(AMQPValue::Timestamp(now)),
    );
    headers.insert(LAST_FAILURE.into(), AMQPValue::Timestamp(now));
    headers.insert(WORKER.into(), text(worker));
    headers.insert(ORIGINAL_QUEUE.into(), text(&task.queue));
    headers.insert(ORIGINAL_ROUTING_KEY.into(), text(&task.routing_key));
    headers
}

/// Headers for the next attempt: attempt + 1, first failure time kept.
fn retry_headers(task: &Task, reason: &str) -> FieldTable {
    let mut headers = task.headers.clone();
    let next = i64::from(task.attempt.saturating_add(1));
    headers.insert(ATTEMPT.into(), AMQPValue::LongLongInt(next));
    if !headers.contains_key(FIRST_FAILURE) {
        headers.insert(
            FIRST_FAILURE.into(),
            AMQPValue::Timestamp(crate::headers::now()),
        );
    }
    headers.insert(
        LAST_ERROR.into(),
        AMQPValue::LongString(truncate(reason, 4096).into()),
    );
    headers
}

fn truncate(s: &str, max: usize) -> String {
    if s.len() <= max {
        return s.to_owned();
    }
    let mut end = max;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}…", &s[..end])
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::handler::task::attempt_from;

    #[test]
    fn retry_headers_count_attempts_and_keep_the_first_failure() {
        let mut task = Task::for_test(b"x".to_vec());
        task.headers
            .insert("custom".into(), AMQPValue::LongString("kept".into()));
        let h1 = retry_headers(&task, "boom");
        assert_eq!(attempt_from(&h1), 2);
        assert!(h1.contains_key("custom"));
        let first = h1.inner().get(FIRST_FAILURE).cloned();
        task.headers = h1;
        task.attempt = 2;
        let h2 = retry_headers(&task, "boom again");
        assert_eq!(attempt_from(&h2), 3);
        assert_eq!(h2.inner().get(FIRST_FAILURE).cloned(), first);
        assert_eq!(
            h2.inner().get(LAST_ERROR),
            Some(&AMQPValue::LongString("boom again".into()))
        );
    }

    fn topology() -> Topology {
        let mut config = crate::config::Config::default();
        config.queue.name = "q".into();
        config.retry.backoff = [1, 10, 60].map(Duration::from_secs).to_vec();
        Topology::from_config(&config)
    }

    #[test]
    fn failures_retry_with_backoff_until_max_attempts_then_dead_letter() {
        let topo = topology();
        let retry = |attempt, after| {
            decide(
                &topo,
                4,
                attempt,
                Outcome::Retry {
                    after,
                    reason: "boom".into(),
                },
            )
        };
        let delays: Vec<_> = (1..4)
            .map(|attempt| match retry(attempt, None) {
                Decision::Retry { delay, queue, .. } => (delay.as_secs(), queue.to_owned()),
                other => panic!("attempt {attempt}: {other:?}"),
            })
            .collect();
        assert_eq!(
            delays,
            [
                (1, "q.retry.1s".into()),
                (10, "q.retry.10s".into()),
                (60, "q.retry.1m".into())
            ]
        );
        assert_eq!(
            retry(4, None),
            Decision::DeadLetter {
                reason: "gave up after 4 attempts; last error: boom".into()
            }
        );
        // A handler's Retry-After picks a longer tier, never a shorter one.
        match retry(1, Some(Duration::from_secs(5))) {
            Decision::Retry { delay, .. } => assert_eq!(delay, Duration::from_secs(10)),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn rejects_dead_letter_at_once_and_acks_ack() {
        let topo = topology();
        assert_eq!(
            decide(&topo, 5, 1, Outcome::reject("bad input")),
            Decision::DeadLetter {
                reason: "bad input".into()
            }
        );
        assert_eq!(decide(&topo, 5, 5, Outcome::Ack), Decision::Ack);
        // max_attempts 1: the first failure is the last.
        assert!(matches!(
            decide(&topo, 1, 1, Outcome::retry("x")),
            Decision::DeadLetter { .. }
        ));
    }

    #[test]
    fn truncate_respects_char_boundaries() {
        assert_eq!(truncate("abc", 10), "abc");
        assert_eq!(truncate("ééé", 3), "é…");
    }
}
