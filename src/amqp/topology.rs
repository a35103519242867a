//! The queues Warren uses and how they are declared.
//!
//! `<queue>` is the work queue. Failed tasks wait in one retry queue per
//! backoff step (`<queue>.retry.<delay>`): its TTL is the delay and its
//! dead-letter target is the work queue, so the broker puts them back when
//! the delay expires and no process holds them in memory meanwhile. One
//! queue per step means a short delay never waits behind a long one (a
//! per-message TTL only expires at a queue's head). Poison tasks go to
//! `<queue>.dead`.

use crate::config::{Config, QueueType, duration};
use crate::error::{Error, Result};
use lapin::options::QueueDeclareOptions;
use lapin::protocol::{AMQPErrorKind, AMQPSoftError};
use lapin::types::{AMQPValue, FieldTable};
use lapin::{Channel, ErrorKind};
use std::time::Duration;

/// Names and delays of every queue Warren touches for one work queue.
#[derive(Debug, Clone, PartialEq)]
pub struct Topology {
    /// The work queue.
    pub queue: String,
    /// Its type; the retry and dead-letter queues get the same type, so they
    /// are as available as the work queue.
    pub kind: QueueType,
    /// Whether Warren declares the queues or only checks the work queue exists.
    pub declare: bool,
    /// (delay, queue name), in backoff order.
    pub retry: Vec<(Duration, String)>,
    /// The dead-letter queue.
    pub dead: String,
    /// Quorum queues get this as `x-delivery-limit` (a crash-loop backstop).
    pub delivery_limit: u32,
}

impl Topology {
    /// Derives the queue set from the configuration.
    pub fn from_config(cfg: &Config) -> Self {
        let queue = cfg.queue.name.clone();
        let retry = cfg
            .retry
            .backoff
            .iter()
            .map(|d| {
                (
                    *d,
                    format!("{queue}.retry.{}", duration::format(d).replace(' ', "")),
                )
            })
            .collect();
        Topology {
            dead: cfg.dead_letter_queue(),
            kind: cfg.queue.kind,
            declare: cfg.queue.declare,
            delivery_limit: cfg.retry.max_attempts,
            retry,
            queue,
        }
    }

    /// The retry queue for a task whose attempt `failed_attempt` just failed:
    /// the backoff step for that attempt, or a longer one if the handler asked
    /// for at least `after`. The last step repeats.
    pub fn retry_queue(&self, failed_attempt: u32, after: Option<Duration>) -> &(Duration, String) {
        let step = (failed_attempt.max(1) as usize - 1).min(self.retry.len() - 1);
        let wanted = after.unwrap_or_default().max(self.retry[step].0);
        self.retry[step..]
            .iter()
            .find(|(delay, _)| *delay >= wanted)
            .unwrap_or(&self.retry[self.retry.len() - 1])
    }
}

/// Declares (or, with `declare: false`, checks) every queue; returns the
/// work queue's ready-message count.
pub async fn declare(channel: &Channel, topo: &Topology) -> Result<u32> {
    if !topo.declare {
        return inspect(channel, &topo.queue).await.map(|(ready, _)| ready);
    }
    let ready = declare_one(channel, &topo.queue, work_queue_args(topo)).await?;
    declare_one(channel, &topo.dead, typed(topo.kind)).await?;
    for (delay, name) in &topo.retry {
        declare_one(channel, name, retry_queue_args(topo, *delay)).await?;
    }
    Ok(ready)
}

/// `x-queue-type` for a quorum queue; nothing for a classic one.
fn typed(kind: QueueType) -> FieldTable {
    let mut args = FieldTable::default();
    if kind == QueueType::Quorum {
        args.insert("x-queue-type".into(), text("quorum"));
    }
    args
}

fn text(s: &str) -> AMQPValue {
    AMQPValue::LongString(s.into())
}

/// A quorum work queue dead-letters to the dead queue after `max_attempts`
/// deliveries: the broker's backstop against a crash loop.
fn work_queue_args(topo: &Topology) -> FieldTable {
    let mut args = typed(topo.kind);
    if topo.kind == QueueType::Quorum {
        args.insert(
            "x-delivery-limit".into(),
            AMQPValue::LongLongInt(topo.delivery_limit.into()),
        );
        args.insert("x-dead-letter-exchange".into(), text(""));
        args.insert("x-dead-letter-routing-key".into(), text(&topo.dead));
    }
    args
}

/// A retry tier holds copies for `delay`, then the broker dead-letters them
/// back to the work queue. Its type follows the work queue's: a quorum work
/// queue gets quorum tiers with at-least-once dead-lettering, so a delayed
/// retry survives the loss of any one node and is never dropped on its way
/// back (at-least-once needs `x-overflow: reject-publish`).
fn retry_queue_args(topo: &Topology, delay: Duration) -> FieldTable {
    let mut args = typed(topo.kind);
    let ttl = delay.as_millis().min(u32::MAX.into()) as i64;
    args.insert("x-message-ttl".into(), AMQPValue::LongLongInt(ttl));
    args.insert("x-dead-letter-exchange".into(), text(""));
    args.insert("x-dead-letter-routing-key".into(), text(&topo.queue));
    if topo.kind == QueueType::Quorum {
        args.insert("x-dead-letter-strategy".into(), text("at-least-once"));
        args.insert("x-overflow".into(), text("reject-publish"));
    }
    args
}

async fn declare_one(channel: &Channel, name: &str, args: FieldTable) -> Result<u32> {
    channel
        .queue_declare(name.into(), QueueDeclareOptions::durable(), args)
        .await
        .map(|q| q.message_count())
        .map_err(|e| declare_error(name, e))
}

/// Passive declare: (ready messages, consumers) of an existing queue.
pub async fn inspect(channel: &Channel, name: &str) -> Result<(u32, u32)> {
    let options = QueueDeclareOptions::default().passive();
    channel
        .queue_declare(name.into(), options, FieldTable::default())
        .await
        .map(|q| (q.message_count(), q.consumer_count()))
        .map_err(|e| declare_error(name, e))
}

/// 406 becomes a [`Error::QueueMismatch`] naming the conflicting property,
/// 404 a [`Error::QueueMissing`]; anything else stays an AMQP error.
fn declare_error(queue: &str, e: lapin::Error) -> Error {
    if let ErrorKind::ProtocolError(amqp) = e.kind() {
        match amqp.kind() {
            AMQPErrorKind::Soft(AMQPSoftError::PRECONDITIONFAILED) => {
                let broker = amqp.get_message().to_string();
                return Error::QueueMismatch {
                    queue: queue.to_owned(),
                    conflict: describe_conflict(&broker),
                    broker,
                };
            }
            // RabbitMQ says 404 both for "no such queue" and for a queue
            // whose home node is down: only the first is the operator's to fix.
            AMQPErrorKind::Soft(AMQPSoftError::NOTFOUND) => {
                let broker = amqp.get_message().to_string();
                if broker.contains("down or inaccessible") {
                    return Error::QueueUnavailable {
                        queue: queue.to_owned(),
                        broker,
                    };
                }
                return Error::QueueMissing {
                    queue: queue.to_owned(),
                };
            }
            _ => {}
        }
    }
    Error::amqp(format!("declaring queue '{queue}'"), e)
}

/// Turns RabbitMQ's "inequivalent arg 'durable' … received 'true' but current
/// is 'false'" into "'durable' is 'false' on the broker, warren wants 'true'".
pub fn describe_conflict(broker: &str) -> String {
    let quoted = |after: &str| -> Option<String> {
        let start = broker.find(after)? + after.len();
        let rest = broker[start..].trim_start();
        let rest = rest.strip_prefix("the value ").unwrap_or(rest);
        match rest.strip_prefix('\'') {
            Some(inner) => Some(inner[..inner.find('\'')?].to_owned()),
            None => Some(rest.split_whitespace().next()?.to_owned()),
        }
    };
    match (
        quoted("inequivalent arg"),
        quoted("received"),
        quoted("current is"),
    ) {
        (Some(arg), Some(wanted), Some(current)) => {
            format!("property '{arg}' is '{current}' on the broker but warren declares '{wanted}'")
        }
        _ => "its arguments differ from the ones warren declares".to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_the_conflicting_property() {
        let msg = "PRECONDITION_FAILED - inequivalent arg 'durable' for queue 'hello' in vhost '/': received 'true' but current is 'false'";
        assert_eq!(
            describe_conflict(msg),
            "property 'durable' is 'false' on the broker but warren declares 'true'"
        );
        let msg = "PRECONDITION_FAILED - inequivalent arg 'x-queue-type' for queue 'q' in vhost '/': received the value 'quorum' of type 'longstr' but current is none";
        assert_eq!(
            describe_conflict(msg),
            "property 'x-queue-type' is 'none' on the broker but warren declares 'quorum'"
        );
        assert_eq!(
            describe_conflict("something else"),
            "its arguments differ from the ones warren declares"
        );
    }

    #[test]
    fn retry_tiers_of_a_quorum_queue_are_quorum_with_at_least_once_dead_lettering() {
        let mut cfg = Config::default();
        cfg.queue.kind = QueueType::Quorum;
        let topo = Topology::from_config(&cfg);
        let args = retry_queue_args(&topo, Duration::from_secs(10));
        let get = |k: &str| args.inner().get(k).cloned();
        assert_eq!(get("x-queue-type"), Some(text("quorum")));
        assert_eq!(get("x-dead-letter-strategy"), Some(text("at-least-once")));
        assert_eq!(get("x-overflow"), Some(text("reject-publish")));
        assert_eq!(get("x-message-ttl"), Some(AMQPValue::LongLongInt(10_000)));
        assert_eq!(get("x-dead-letter-routing-key"), Some(text("task_queue")));
        // Classic tiers stay as they were (no arguments a classic queue rejects).
        cfg.queue.kind = QueueType::Classic;
        let topo = Topology::from_config(&cfg);
        let args = retry_queue_args(&topo, Duration::from_secs(10));
        assert!(args.inner().get("x-queue-type").is_none());
        assert!(args.inner().get("x-dead-letter-strategy").is_none());
    }

    #[test]
    fn retry_queue_follows_backoff_and_honours_after() {
        let mut cfg = Config::default();
        cfg.retry.backoff = [1, 10, 60].map(Duration::from_secs).to_vec();
        let topo = Topology::from_config(&cfg);
        assert_eq!(topo.retry[0].1, "task_queue.retry.1s");
        assert_eq!(topo.retry[2].1, "task_queue.retry.1m");
        assert_eq!(topo.retry_queue(1, None).0, Duration::from_secs(1));
        assert_eq!(topo.retry_queue(2, None).0, Duration::from_secs(10));
        assert_eq!(topo.retry_queue(9, None).0, Duration::from_secs(60));
        let after = Some(Duration::from_secs(5));
        assert_eq!(topo.retry_queue(1, after).0, Duration::from_secs(10));
        let after = Some(Duration::from_secs(3600));
        assert_eq!(topo.retry_queue(1, after).0, Duration::from_secs(60));
        assert_eq!(topo.dead, "task_queue.dead");
    }
}
