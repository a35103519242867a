//! One pass over the dead-letter queue: every message that was in it when the
//! pass began is looked at once, in order, in bounded batches.
//!
//! AMQP cannot read a queue without taking messages out of it, and a message
//! requeued while we consume comes straight back (and, on a quorum queue,
//! counts toward its delivery limit). So the pass *rotates* the queue: each
//! message it keeps is published again to the tail of the same queue, and the
//! original is acked only after the broker confirmed that copy. After a whole
//! pass the queue holds what it held, in the same order (letters that arrived
//! during the pass end up among the rotated ones). A replayed message is
//! published to the work queue instead, a purged one is only acked. At most
//! [`WINDOW`] messages are unacked at a time; memory does not grow with the
//! queue. An interrupted pass (a signal, a lost connection) leaves the
//! unacked messages to the broker, which puts them back: a message may then
//! be in the queue twice, never lost.

use crate::amqp::publish::{send, verdict};
use crate::amqp::topology::inspect;
use crate::error::{Error, Result};
use futures_lite::StreamExt;
use lapin::message::Delivery;
use lapin::options::{BasicAckOptions, BasicCancelOptions, BasicConsumeOptions, BasicQosOptions};
use lapin::protocol::BasicProperties;
use lapin::types::FieldTable;
use lapin::{Channel, Consumer, PublisherConfirm};
use std::time::Duration;
use tokio_util::sync::CancellationToken;

/// Messages unacked at once: the memory bound, and enough in flight that
/// confirms are pipelined rather than waited for one by one.
pub const WINDOW: u16 = 256;

/// What becomes of one message of the pass.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    /// Stays in the dead-letter queue (republished to its tail).
    Keep,
    /// Goes back to the work queue, with these properties.
    Replay,
    /// Leaves for good (acked, not republished).
    Remove,
}

/// What a pass did.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Counts {
    /// Messages looked at (those in the queue when the pass began).
    pub seen: usize,
    pub replayed: usize,
    pub removed: usize,
    /// The pass ended early because the queue held fewer than counted (a
    /// signal ends it with an error instead).
    pub stopped: Option<String>,
}

/// Where a pass reads and writes.
pub struct Pass<'a> {
    pub channel: &'a Channel,
    /// The dead-letter queue.
    pub dead: &'a str,
    /// Where replays go.
    pub work: &'a str,
    /// How long one copy's confirm may take (`amqp.confirm_timeout`).
    pub confirm_timeout: Duration,
    /// Replays per second, if limited.
    pub rate: Option<u32>,
    /// Ends the pass early (the rest stays where it is).
    pub stop: CancellationToken,
}

/// A message published, waiting for its confirm before its original is acked.
struct Pending {
    tag: u64,
    confirm: Option<PublisherConfirm>,
}

impl Pass<'_> {
    /// Looks at every message once; `visit` decides what becomes of it (it
    /// gets the delivery and returns the action and, for a replay, the
    /// properties to publish with).
    pub async fn run(
        &self,
        mut visit: impl FnMut(&Delivery) -> (Action, Option<BasicProperties>),
    ) -> Result<Counts> {
        let ready = self.count().await?;
        let mut counts = Counts::default();
        if ready == 0 {
            return Ok(counts);
        }
        let consumer = self.consume().await?;
        let mut pending = Vec::with_capacity(WINDOW.into());
        let mut pace = self.rate.map(pacer);
        let mut acked = 0usize;
        let mut feed = consumer.clone();
        while counts.seen < ready as usize {
            let Some(delivery) = self.next(&mut feed, &mut counts).await? else {
                break;
            };
            counts.seen += 1;
            let (action, props) = visit(&delivery);
            let confirm = self
                .carry_out(&delivery, action, props, &mut pace, &mut counts)
                .await?;
            pending.push(Pending {
                tag: delivery.delivery_tag,
                confirm,
            });
            // Ack no further than WINDOW short of the counted messages: the
            // broker then never sends past them (our own rotated copies), so
            // none is rotated twice and the order survives the pass.
            let allowed = (ready as usize).saturating_sub(usize::from(WINDOW) + acked);
            let batch = pending.len().min(allowed);
            if batch > 0 && pending.len() >= usize::from(WINDOW / 2) {
                self.settle(&mut pending, batch).await?;
                acked += batch;
            }
        }
        self.finish(consumer, feed, pending).await?;
        if self.stop.is_cancelled() {
            return Err(interrupted(self.dead, ready, &counts));
        }
        Ok(counts)
    }

    /// The messages in the dead-letter queue now; refuses a queue that
    /// something consumes (not a dead-letter queue, or another pass).
    async fn count(&self) -> Result<u32> {
        let (ready, consumers) = inspect(self.channel, self.dead).await?;
        if consumers > 0 {
            return Err(Error::DeadQueue {
                queue: self.dead.to_owned(),
                problem: format!("has {consumers} consumer(s)"),
                fix: "a dead-letter queue has none: is --queue the work queue, and is another \
                      `warren dead` running? Wait for it, or stop what consumes this queue"
                    .into(),
            });
        }
        Ok(ready)
    }

    /// Publishes the copy `action` calls for (none for a removal).
    async fn carry_out(
        &self,
        delivery: &Delivery,
        action: Action,
        props: Option<BasicProperties>,
        pace: &mut Option<tokio::time::Interval>,
        counts: &mut Counts,
    ) -> Result<Option<PublisherConfirm>> {
        Ok(match action {
            Action::Keep => Some(self.publish(self.dead, delivery, None).await?),
            Action::Replay => {
                if let Some(pace) = pace.as_mut() {
                    pace.tick().await;
                }
                counts.replayed += 1;
                Some(self.publish(self.work, delivery, props).await?)
            }
            Action::Remove => {
                counts.removed += 1;
                None
            }
        })
    }

    async fn consume(&self) -> Result<Consumer> {
        let fail = |e| Error::amqp("consuming the dead-letter queue", e);
        self.channel
            .basic_qos(WINDOW, BasicQosOptions::default())
            .await
            .map_err(fail)?;
        // Exclusive: a second `warren dead` on the same queue is refused
        // (403) instead of interleaving two rotations.
        let options = BasicConsumeOptions {
            exclusive: true,
            ..BasicConsumeOptions::default()
        };
        self.channel
            .basic_consume(
                self.dead.into(),
                "warren-dead".into(),
                options,
                FieldTable::default(),
            )
            .await
            .map_err(fail)
    }

    /// The next delivery, or None when the pass must stop (a signal, or no
    /// message within the confirm timeout: the queue held fewer than counted).
    async fn next(&self, feed: &mut Consumer, counts: &mut Counts) -> Result<Option<Delivery>> {
        let idle = self.confirm_timeout.max(Duration::from_secs(5));
        tokio::select! {
            next = tokio::time::timeout(idle, feed.next()) => match next {
                Ok(Some(delivery)) => delivery
                    .map(Some)
                    .map_err(|e| Error::amqp("reading the dead-letter queue", e)),
                Ok(None) => Err(Error::DeadQueue {
                    queue: self.dead.to_owned(),
                    problem: "was taken away during the pass (the broker cancelled the consumer)".into(),
                    fix: "was it deleted? nothing acked was lost; check `warren status`".into(),
                }),
                Err(_) => {
                    counts.stopped = Some(format!(
                        "no message for {}s: the queue held fewer than counted (expired or taken by another client)",
                        idle.as_secs()
                    ));
                    Ok(None)
                }
            },
            // `run` turns a stop into its error once the pass is settled.
            _ = self.stop.cancelled() => Ok(None),
        }
    }

    /// Publishes `delivery`'s body to `queue` with `props` (or its own).
    async fn publish(
        &self,
        queue: &str,
        delivery: &Delivery,
        props: Option<BasicProperties>,
    ) -> Result<PublisherConfirm> {
        let props = props.unwrap_or_else(|| delivery.properties.clone());
        send(self.channel, queue, &delivery.data, props)
            .await
            .map_err(|e| Error::amqp("publishing a copy", e))
    }

    /// Waits for the confirms of the first `n` pending copies, in order, and
    /// acks the originals whose copies were stored. A copy not stored stops
    /// the pass: its original and every later one stay unacked, so the
    /// broker keeps them.
    async fn settle(&self, pending: &mut Vec<Pending>, n: usize) -> Result<()> {
        let mut stored = None;
        let mut failure = None;
        for p in pending.drain(..n) {
            if let Some(confirm) = p.confirm {
                let outcome = match tokio::time::timeout(self.confirm_timeout, confirm).await {
                    Ok(confirmation) => verdict(confirmation),
                    Err(_) => Err("no confirm within amqp.confirm_timeout".into()),
                };
                if let Err(why) = outcome {
                    failure = Some(why);
                    break;
                }
            }
            stored = Some(p.tag);
        }
        if let Some(tag) = stored {
            // Tags are acked in delivery order, so `multiple` covers exactly
            // the originals settled so far.
            self.channel
                .basic_ack(tag, BasicAckOptions { multiple: true })
                .await
                .map_err(|e| Error::amqp("acking dead letters", e))?;
        }
        match failure {
            None => Ok(()),
            Some(why) => Err(Error::DeadQueue {
                queue: self.dead.to_owned(),
                problem: format!("kept its messages: a copy was not stored ({why})"),
                fix: "nothing was lost; run the command again when the broker is healthy".into(),
            }),
        }
    }

    /// Stops the consumer, settles the rest, and rotates anything the broker
    /// still sent past the counted messages (none, by the ack rule above,
    /// unless a pass stopped early) rather than requeue it: a requeue counts
    /// toward a quorum queue's delivery limit.
    async fn finish(
        &self,
        consumer: Consumer,
        mut feed: Consumer,
        mut pending: Vec<Pending>,
    ) -> Result<()> {
        self.channel
            .basic_cancel(consumer.tag(), BasicCancelOptions::default())
            .await
            .map_err(|e| Error::amqp("cancelling the dead-letter consumer", e))?;
        while let Ok(Some(Ok(extra))) =
            tokio::time::timeout(Duration::from_millis(200), feed.next()).await
        {
            let confirm = self.publish(self.dead, &extra, None).await?;
            pending.push(Pending {
                tag: extra.delivery_tag,
                confirm: Some(confirm),
            });
        }
        let n = pending.len();
        self.settle(&mut pending, n).await
    }
}

fn interrupted(dead: &str, ready: u32, counts: &Counts) -> Error {
    Error::DeadQueue {
        queue: dead.to_owned(),
        problem: format!(
            "pass was interrupted after {} of {ready} letter(s) ({} replayed, {} purged)",
            counts.seen, counts.replayed, counts.removed
        ),
        fix: "what was done stays done, and every letter it held was settled; run the command \
              again for the rest"
            .into(),
    }
}

/// A ticker for `--rate` replays per second.
fn pacer(rate: u32) -> tokio::time::Interval {
    let mut interval = tokio::time::interval(Duration::from_secs(1) / rate.max(1));
    interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    interval
}
