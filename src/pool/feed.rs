//! Where a session's deliveries come from: the consumer, and the consumers it
//! replaced that still hold deliveries.
//!
//! RabbitMQ applies a per-consumer prefetch when the consumer starts
//! (`basic.consume`): re-issuing `basic.qos` on the channel does not change a
//! running consumer (tried on 3.10: the old limit stays). So a prefetch
//! change cancels the consumer, sets the new `basic.qos` and consumes again
//! on the same channel. The old consumer's buffered deliveries are
//! dispatched first and acked on the same channel as before; cancelling
//! before consuming again keeps delivery tags in dispatch order, which the
//! coalesced `multiple` acks rely on (see `acks.rs`).

use super::Context;
use super::prefetch::{Step, Tuner};
use super::session::{End, basic_consume};
use crate::amqp::within;
use crate::error::{Error, Result};
use futures_lite::StreamExt;
use lapin::message::Delivery;
use lapin::options::{BasicCancelOptions, BasicQosOptions};
use lapin::{Channel, Consumer};
use std::collections::VecDeque;
use std::time::{Duration, Instant};
use tracing::debug;

/// The live consumer and, first in line, cancelled ones still holding deliveries.
pub(super) struct Feed {
    current: Consumer,
    /// Cancelled by a prefetch change; each ends (None) after its buffered deliveries.
    retiring: VecDeque<Consumer>,
}

impl Feed {
    pub(super) fn new(current: Consumer) -> Feed {
        Feed {
            current,
            retiring: VecDeque::new(),
        }
    }

    /// The next delivery: those of cancelled consumers first. None when the
    /// live consumer ended (the broker cancelled it, or we did at a drain).
    /// Cancel-safe, so it can sit in a `select!`.
    pub(super) async fn next(&mut self) -> Option<lapin::Result<Delivery>> {
        while let Some(old) = self.retiring.front_mut() {
            match old.next().await {
                Some(delivery) => return Some(delivery),
                None => {
                    self.retiring.pop_front();
                }
            }
        }
        self.current.next().await
    }

    /// The live consumer's tag.
    pub(super) fn tag(&self) -> lapin::types::ShortString {
        self.current.tag()
    }

    /// Consumes from `current` after the broker cancelled the old live one
    /// (its deliveries were all read: it had ended).
    pub(super) fn resume(&mut self, current: Consumer) {
        self.current = current;
    }

    fn replace(&mut self, current: Consumer) {
        let old = std::mem::replace(&mut self.current, current);
        self.retiring.push_back(old);
    }
}

/// Sets `basic.qos` on `channel` for consumers started from now on; the
/// round trip it took.
pub(super) async fn set_qos(channel: &Channel, prefetch: u16) -> Result<Duration> {
    let started = Instant::now();
    channel
        .basic_qos(prefetch, BasicQosOptions::default())
        .await
        .map_err(|e| Error::amqp("setting basic_qos prefetch", e))?;
    Ok(started.elapsed())
}

/// One tuner tick: probe the round trip or change the prefetch, as the
/// tuner asks. Err (the session is lost) when the channel fails meanwhile.
pub(super) async fn retune(
    ctx: &Context,
    channel: &Channel,
    feed: &mut Feed,
    tuner: &mut Tuner,
) -> std::result::Result<(), End> {
    let busy = u64::try_from(ctx.health.metrics.in_flight.get()).unwrap_or(0);
    let limit = ctx.config.amqp.connect_timeout;
    let lost = |e: Error| End::Lost(e.to_string());
    match tuner.tick(&ctx.clock, busy, Instant::now()) {
        Step::Keep => {}
        Step::Probe => {
            let current = tuner.current();
            let rtt = within(limit, "setting basic_qos", set_qos(channel, current))
                .await
                .map_err(lost)?;
            tuner.measured(rtt, current, Instant::now());
        }
        Step::Change(prefetch) => {
            let from = tuner.current();
            let change = change(ctx, channel, feed, prefetch);
            let rtt = within(limit, "changing the prefetch", change)
                .await
                .map_err(lost)?;
            tuner.measured(rtt, prefetch, Instant::now());
            ctx.health.metrics.prefetch.set(prefetch.into());
            let (task, round_trip) = tuner.figures();
            debug!(from, to = prefetch, ?task, ?round_trip, "adaptive prefetch");
        }
    }
    Ok(())
}

/// Cancel, `basic.qos`, consume again: see the module docs.
async fn change(
    ctx: &Context,
    channel: &Channel,
    feed: &mut Feed,
    prefetch: u16,
) -> Result<Duration> {
    channel
        .basic_cancel(feed.tag(), BasicCancelOptions::default())
        .await
        .map_err(|e| Error::amqp("cancelling the consumer to change its prefetch", e))?;
    let rtt = set_qos(channel, prefetch).await?;
    feed.replace(basic_consume(ctx, channel).await?);
    Ok(rtt)
}
