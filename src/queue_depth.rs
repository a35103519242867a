//! Polls queue depths for the `warren_queue_messages_ready` and
//! `warren_queue_consumers` gauges (the dashboard's backlog panels).
//!
//! It follows the pool's connection: on each new one it polls on the spare
//! channel the pool opened for observers (a failed passive declare closes
//! the channel it ran on, which must never be the consuming one), until the
//! channel fails or the pool moves to another connection.

use crate::amqp::topology::{Topology, inspect};
use crate::health::Health;
use lapin::Channel;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;
use tracing::debug;

/// The queues worth polling: the work queue, plus the retry and dead-letter
/// queues when Warren declares them (otherwise they may not exist).
pub fn queues(topo: &Topology) -> Vec<String> {
    let mut names = vec![topo.queue.clone()];
    if topo.declare {
        names.extend(topo.retry.iter().map(|(_, n)| n.clone()));
        names.push(topo.dead.clone());
    }
    names
}

/// Polls `names` every `interval` on each channel `channels` yields, until `stop`.
pub async fn run(
    health: Arc<Health>,
    names: Vec<String>,
    interval: Duration,
    mut channels: watch::Receiver<Option<Channel>>,
    stop: CancellationToken,
) {
    loop {
        let channel = channels.borrow_and_update().clone();
        if let Some(channel) = channel {
            tokio::select! {
                _ = poll(&health, &names, interval, &channel) => {}
                _ = channels.changed() => continue,
                _ = stop.cancelled() => return,
            }
        }
        tokio::select! {
            changed = channels.changed() => if changed.is_err() { return },
            _ = stop.cancelled() => return,
        }
    }
}

/// Polls on one channel until a declare fails (the channel is then closed).
async fn poll(health: &Health, names: &[String], interval: Duration, channel: &Channel) {
    let metrics = &health.metrics;
    let mut ticker = tokio::time::interval(interval);
    loop {
        ticker.tick().await;
        for name in names {
            match inspect(channel, name).await {
                Ok((ready, consumers)) => {
                    let queue = [name.as_str()];
                    metrics
                        .queue_ready
                        .with_label_values(&queue)
                        .set(ready.into());
                    metrics
                        .queue_consumers
                        .with_label_values(&queue)
                        .set(consumers.into());
                }
                Err(e) => {
                    debug!("stopped polling queue depths: '{name}': {e}");
                    return;
                }
            }
        }
    }
}
