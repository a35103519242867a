//! Polls queue depths for the `warren_queue_messages_ready` and
//! `warren_queue_consumers` gauges (the dashboard's backlog panels).
//!
//! It also notices a stalled consumer: tasks ready in the work queue, free
//! capacity in this pod (deliveries held for a copy do not count as work),
//! and still no delivery for several polls means the
//! broker cannot serve the queue (a quorum queue without a majority keeps
//! the consumer registered and answers stats, but delivers nothing), so
//! `/readyz` goes 503 until deliveries flow again.
//!
//! It follows the pool's connection: on each new one it polls on the spare
//! channel the pool opened for observers (a failed passive declare closes
//! the channel it ran on, which must never be the consuming one), until the
//! channel fails or the pool moves to another connection.

use crate::amqp::topology::{Topology, inspect};
use crate::health::{Health, Phase};
use lapin::Channel;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;
use tracing::{debug, info, warn};

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
        health.set_queue_problem(None);
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
    let mut stall = Stall::default();
    loop {
        ticker.tick().await;
        for (i, name) in names.iter().enumerate() {
            match inspect(channel, name).await {
                Ok((ready, consumers)) => {
                    if i == 0 {
                        stall.observe(health, name, ready, consumers);
                    }
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
                    health.set_queue_problem(None);
                    return;
                }
            }
        }
    }
}

/// Polls in a row that must look stalled before `/readyz` says so.
const STALLED_POLLS: u32 = 3;
/// Polls in a row after which a new connection and consumer are tried: a
/// consumer the broker lost track of (seen after a quorum queue regained
/// its majority) never gets deliveries again otherwise.
const RECONNECT_POLLS: u32 = 2 * STALLED_POLLS;

/// Watches the work queue for tasks that wait while this pod could take
/// them but receives none.
#[derive(Default)]
struct Stall {
    /// Deliveries received at the last poll.
    deliveries: u64,
    /// Polls in a row that looked stalled.
    polls: u32,
}

impl Stall {
    /// Updates the health from one poll of the work queue: `ready` tasks and
    /// `consumers` (0 although ours is registered: the broker cannot answer
    /// for the queue — a quorum follower without a majority says 0 and 0).
    fn observe(&mut self, health: &Health, queue: &str, ready: u32, consumers: u32) {
        let metrics = &health.metrics;
        let received = metrics.deliveries.get();
        // Held deliveries (a copy waiting to be stored) use credit, not workers.
        let working = metrics.in_flight.get() - metrics.copies_held.get();
        let free = working < metrics.prefetch.get();
        let starved = ready > 0 && free && received == self.deliveries;
        let stalled = health.phase() == Phase::Consuming && (starved || consumers == 0);
        self.deliveries = received;
        if !stalled {
            if self.polls >= STALLED_POLLS {
                info!("deliveries from '{queue}' flow again");
            }
            self.polls = 0;
            health.set_queue_problem(None);
            return;
        }
        self.polls += 1;
        if self.polls == RECONNECT_POLLS {
            health.request_reconnect(format!(
                "queue '{queue}' stalled for {RECONNECT_POLLS} polls; trying a new connection and consumer"
            ));
        }
        if self.polls == STALLED_POLLS {
            let why = match consumers {
                0 => format!(
                    "queue '{queue}' reports no consumers although Warren consumes from it, for \
                     {STALLED_POLLS} polls"
                ),
                _ => format!(
                    "queue '{queue}' has {ready} tasks ready and this pod has free workers, but \
                     no delivery came for {STALLED_POLLS} polls"
                ),
            };
            let why = format!(
                "{why}: the broker cannot serve the queue now (a quorum queue without a majority of its nodes?)"
            );
            warn!("{why}; not ready until deliveries flow again");
            health.set_queue_problem(Some(why));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ready_tasks_but_no_deliveries_with_free_workers_make_the_pod_unready() {
        let health = Health::default();
        health.set_phase(Phase::Consuming);
        health.metrics.prefetch.set(8);
        let mut stall = Stall::default();
        for _ in 0..STALLED_POLLS - 1 {
            stall.observe(&health, "q", 5, 1);
        }
        assert!(
            health.is_ready(),
            "a poll or two may fall between deliveries"
        );
        stall.observe(&health, "q", 5, 1);
        let why = health.readiness().unwrap_err();
        assert!(
            why.contains("5 tasks ready") && why.contains("no delivery"),
            "{why}"
        );
        // A delivery arrives: ready again.
        health.metrics.deliveries.inc();
        stall.observe(&health, "q", 5, 1);
        assert!(health.is_ready());
        // An empty queue, or busy workers, are not a stall.
        for _ in 0..5 {
            stall.observe(&health, "q", 0, 1);
        }
        assert!(health.is_ready());
        health.metrics.in_flight.set(8);
        for _ in 0..5 {
            stall.observe(&health, "q", 5, 1);
        }
        assert!(health.is_ready());
        // No consumers listed although ours is registered (stats unavailable).
        let reconnect = health.arm_reconnect();
        for _ in 0..STALLED_POLLS {
            stall.observe(&health, "q", 0, 0);
        }
        let why = health.readiness().unwrap_err();
        assert!(why.contains("reports no consumers"), "{why}");
        // A stall that lasts asks the pool for a new connection and consumer.
        assert!(!reconnect.is_cancelled());
        for _ in STALLED_POLLS..RECONNECT_POLLS {
            stall.observe(&health, "q", 0, 0);
        }
        assert!(reconnect.is_cancelled());
        assert!(health.reconnect_reason().unwrap().contains("stalled"));
    }
}
