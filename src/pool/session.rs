//! One connection's worth of consuming: open it (connect, declare, qos,
//! confirms, consume) and, when the broker cancels the consumer, consume
//! again on the same channel so in-flight tasks can still be acked.

use super::Context;
use super::acks::Acks;
use super::feed::{Feed, set_qos};
use crate::amqp::{self, publish, topology, within};
use crate::error::{Error, Result};
use crate::health::Phase;
use lapin::options::BasicConsumeOptions;
use lapin::types::FieldTable;
use lapin::{Channel, Connection, Consumer};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

/// A connection, its consuming channel and consumer, and the channel's ack batcher.
pub(super) struct Session {
    pub(super) conn: Connection,
    /// The node's URL (redacted), for logs and `/readyz`.
    pub(super) node: String,
    /// Deliveries arrive, are acked and copies are published (with
    /// confirms) on this one channel.
    pub(super) channel: Channel,
    pub(super) feed: Feed,
    /// The `basic.qos` round trip measured at the start.
    pub(super) round_trip: Duration,
    /// This channel's ack batcher (see `acks.rs`) and its task.
    pub(super) acks: Acks,
    /// Cancelled when the queue-depth poller finds the queue stalled for long.
    pub(super) stalled: CancellationToken,
    pub(super) batcher: tokio::task::JoinHandle<()>,
}

/// Why a session is over (or paused).
pub(super) enum End {
    /// Shutdown was requested: drain this session.
    Shutdown,
    /// The connection or channel died; carry the reason for the log.
    Lost(String),
    /// The broker cancelled the consumer; the channel is still open.
    Cancelled,
}

impl Session {
    /// Connects and starts consuming, each step within `amqp.connect_timeout`
    /// (a frozen node would otherwise hold a declare forever).
    pub(super) async fn open(ctx: &Context) -> Result<Session> {
        let pid = std::process::id();
        let name = format!("warren work {}/{pid}", ctx.worker_name);
        let (conn, node) = amqp::connect(&ctx.config.amqp, &name).await?;
        match start_consuming(ctx, &conn, &node).await {
            Ok((channel, consumer, round_trip)) => {
                let (acks, batcher) = Acks::spawn(ctx.health.metrics.acks_failed.clone());
                Ok(Session {
                    conn,
                    node,
                    channel,
                    feed: Feed::new(consumer),
                    round_trip,
                    acks,
                    stalled: ctx.health.arm_reconnect(),
                    batcher,
                })
            }
            Err(e) => {
                let _ = amqp::close(&conn, "warren could not start consuming").await;
                Err(e)
            }
        }
    }

    /// After the broker cancelled the consumer (the queue was deleted, a
    /// quorum member went away, RabbitMQ 4's consumer_timeout in notify
    /// mode): unready, declare again (or wait for the queue with
    /// `declare: false`) and consume again, with backoff. Err when the
    /// connection died or shutdown came first.
    pub(super) async fn resubscribe(
        &mut self,
        ctx: &Context,
        shutdown: &CancellationToken,
    ) -> std::result::Result<(), End> {
        ctx.health.set_phase(Phase::Resubscribing);
        let queue = &ctx.topo.queue;
        warn!(
            "the broker cancelled the consumer on '{queue}' (queue deleted, a quorum queue member \
             went away, or consumer_timeout); consuming again"
        );
        let mut failures = 0;
        loop {
            if !self.conn.status().connected() || !self.channel.status().connected() {
                return Err(End::Lost(
                    "the channel or its connection closed after a consumer cancel".into(),
                ));
            }
            match self.consume_again(ctx).await {
                Ok(consumer) => {
                    self.feed.resume(consumer);
                    ctx.health.set_phase(Phase::Consuming);
                    info!("consuming from '{queue}' again");
                    return Ok(());
                }
                Err(e) => {
                    failures += 1;
                    let delay = super::supervisor::reconnect_delay(failures);
                    warn!("{e}; trying again in {:.1}s", delay.as_secs_f64());
                    if super::supervisor::sleep_or_shutdown(delay, shutdown).await {
                        return Err(End::Shutdown);
                    }
                }
            }
        }
    }

    /// Declares (or checks) on a throwaway channel — a failed passive declare
    /// closes its channel, and the consuming one still has tasks to ack —
    /// then consumes on the session's channel.
    async fn consume_again(&self, ctx: &Context) -> Result<Consumer> {
        let limit = ctx.config.amqp.connect_timeout;
        let probe = amqp::open_channel(&self.conn, limit).await?;
        let declared = within(
            limit,
            "declaring queues",
            topology::declare(&probe, &ctx.topo),
        )
        .await;
        amqp::close_channel(&probe, "declared").await;
        declared?;
        within(limit, "consuming", basic_consume(ctx, &self.channel)).await
    }
}

async fn start_consuming(
    ctx: &Context,
    conn: &Connection,
    node: &str,
) -> Result<(Channel, Consumer, Duration)> {
    let limit = ctx.config.amqp.connect_timeout;
    let channel = amqp::open_channel(conn, limit).await?;
    let ready = within(
        limit,
        "declaring queues",
        topology::declare(&channel, &ctx.topo),
    )
    .await?;
    let prefetch = ctx.config.pool.effective_prefetch();
    let round_trip = within(limit, "setting basic_qos", set_qos(&channel, prefetch)).await?;
    // Retry and dead-letter copies are published on this same channel and
    // must be confirmed before the original is acked.
    within(
        limit,
        "enabling confirms",
        publish::enable_confirms(&channel),
    )
    .await?;
    let consumer = within(limit, "consuming", basic_consume(ctx, &channel)).await?;
    let (queue, workers) = (&ctx.topo.queue, ctx.config.pool.concurrency);
    info!(
        queue = %queue,
        node,
        concurrency = workers,
        prefetch,
        ready,
        "consuming from '{queue}' on {node} with {workers} workers, prefetch {prefetch}; {ready} tasks waiting",
    );
    Ok((channel, consumer, round_trip))
}

/// Starts a consumer on `channel`. Each gets its own tag: a consumer
/// replaced by a prefetch change may still hold deliveries under the old one.
pub(super) async fn basic_consume(ctx: &Context, channel: &Channel) -> Result<Consumer> {
    static SERIAL: AtomicU64 = AtomicU64::new(1);
    let queue = &ctx.topo.queue;
    let serial = SERIAL.fetch_add(1, Ordering::Relaxed);
    let tag = format!("warren.{}.{}.{serial}", ctx.worker_name, std::process::id());
    channel
        .basic_consume(
            queue.as_str().into(),
            tag.into(),
            BasicConsumeOptions::default(),
            FieldTable::default(),
        )
        .await
        .map_err(|e| Error::amqp(format!("consuming from queue '{queue}'"), e))
}
