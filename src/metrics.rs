//! Every metric Warren exports, defined once, in a registry of our own (not
//! the process-global default, so embedding programs keep theirs clean).
//!
//! Names follow Prometheus conventions: base units, `_total` for counters,
//! labels only where they stay bounded (queue, outcome — never a message id).
//! Where an event is both logged and counted, the helper here does both so
//! the log and the number never drift.

use prometheus::{
    Encoder, Histogram, HistogramOpts, IntCounter, IntCounterVec, IntGauge, IntGaugeVec, Opts,
    Registry, TextEncoder,
};
use std::sync::OnceLock;
use std::time::Duration;

/// Reads the log lines dropped so far. Logging is set up once per process,
/// registries once per pool: every registry reads the same count at scrape time.
type DroppedLogLines = Box<dyn Fn() -> u64 + Send + Sync>;

/// Where `warren_log_lines_dropped_total` comes from (set by telemetry).
static LOG_LINES_DROPPED: OnceLock<DroppedLogLines> = OnceLock::new();

/// Makes `warren_log_lines_dropped_total` read `dropped` (the log writer's
/// own counter, so the metric and the log's drop reports never disagree).
/// The first call wins.
pub fn count_dropped_log_lines(dropped: impl Fn() -> u64 + Send + Sync + 'static) {
    let _ = LOG_LINES_DROPPED.set(Box::new(dropped));
}

/// What became of a delivery (`warren_tasks_total{outcome}`); the handler's
/// [`Outcome`](crate::Outcome) is what it asked for, this is what was done.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Disposition {
    /// Handler succeeded; acked.
    Acked,
    /// A retry copy was confirmed; original acked.
    Retried,
    /// A dead-letter copy was confirmed; original acked.
    DeadLettered,
    /// Given back to the broker (drain, or a copy that could not be confirmed).
    Requeued,
}

impl Disposition {
    /// Every disposition, in declaration order (the `outcome` label values).
    pub const ALL: [Disposition; 4] = [
        Disposition::Acked,
        Disposition::Retried,
        Disposition::DeadLettered,
        Disposition::Requeued,
    ];

    /// The `outcome` label value.
    pub fn label(self) -> &'static str {
        match self {
            Disposition::Acked => "acked",
            Disposition::Retried => "retried",
            Disposition::DeadLettered => "dead_lettered",
            Disposition::Requeued => "requeued",
        }
    }
}

/// The metric handles. Cheap to share behind an `Arc`.
#[derive(Debug, Clone)]
pub struct Metrics {
    registry: Registry,
    /// Deliveries settled, by outcome.
    pub tasks: IntCounterVec,
    /// `tasks` per [`Disposition`] value, in declaration order (no label lookup on the hot path).
    outcomes: [IntCounter; 4],
    /// The same, for tasks that arrived with `x-warren-replayed` (sent back
    /// by `warren dead replay`): did the replay work, or is it failing again?
    replayed: [IntCounter; 4],
    /// Handler run time, 1 ms … 1 h.
    pub task_duration: Histogram,
    /// This process's unacked deliveries being worked on (the dashboard sums it).
    pub in_flight: IntGauge,
    /// Configured concurrency.
    pub workers: IntGauge,
    /// basic_qos prefetch in effect.
    pub prefetch: IntGauge,
    /// Deliveries received from the broker.
    pub deliveries: IntCounter,
    /// Deliveries that arrived with the redelivered flag.
    pub redelivered: IntCounter,
    /// Ready messages per queue (work, retry, dead), polled.
    pub queue_ready: IntGaugeVec,
    /// Consumers per queue, polled.
    pub queue_consumers: IntGaugeVec,
    /// 1 while connected to the broker.
    pub broker_connected: IntGauge,
    /// Reconnections after a lost connection.
    pub reconnects: IntCounter,
    /// Handler panics caught (each one became a retry).
    pub handler_panics: IntCounter,
    /// Time from publish to broker confirm (retries, dead letters, `warren publish`).
    pub publish_confirm: Histogram,
    /// Retry and dead-letter copies the broker did not store (each is tried again).
    pub copies_unconfirmed: IntCounter,
    /// Deliveries held unacked while their retry/dead-letter copy waits to
    /// be stored (they use prefetch credit but no worker).
    pub copies_held: IntGauge,
    /// Ack frames that could not be sent (the channel was lost): finished
    /// tasks the broker will deliver again.
    pub acks_failed: IntCounter,
    /// The pod-deletion-cost last written to this pod's annotation.
    pub pod_deletion_cost: IntGauge,
    /// Failed attempts to set the pod-deletion-cost (no cluster, no RBAC).
    pub pod_deletion_cost_errors: IntCounter,
    /// Log lines dropped because stderr's reader was too slow, process-wide
    /// (brought up to date at each scrape).
    log_lines_dropped: IntCounter,
}

/// Task duration buckets: 1 ms to 1 h.
const DURATION_BUCKETS: &[f64] = &[
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0,
    120.0, 300.0, 600.0, 1800.0, 3600.0,
];

/// Confirm latency buckets: 100 µs to 10 s.
const CONFIRM_BUCKETS: &[f64] = &[
    0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5,
    10.0,
];

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    /// Creates and registers every metric.
    pub fn new() -> Self {
        let r = Registrar(Registry::new());
        r.build_info();
        let (tasks, outcomes, replayed) = r.outcomes();
        let (queue_ready, queue_consumers) = r.queue_gauges();
        let (pod_deletion_cost, pod_deletion_cost_errors) = r.pod_cost();
        let (copies_unconfirmed, copies_held) = r.copies();
        let (task_duration, publish_confirm) = r.latencies();
        Metrics {
            outcomes,
            replayed,
            tasks,
            task_duration,
            in_flight: r.gauge(
                "warren_tasks_in_flight",
                "Unacked deliveries this process is working on.",
            ),
            workers: r.gauge("warren_workers", "Configured concurrency (async workers)."),
            prefetch: r.gauge("warren_prefetch", "basic_qos prefetch count in effect."),
            deliveries: r.counter(
                "warren_deliveries_total",
                "Deliveries received from the broker.",
            ),
            redelivered: r.counter(
                "warren_redelivered_total",
                "Deliveries that arrived with the redelivered flag set.",
            ),
            queue_ready,
            queue_consumers,
            broker_connected: r.gauge(
                "warren_broker_connected",
                "1 while connected to the broker, else 0.",
            ),
            reconnects: r.counter(
                "warren_reconnects_total",
                "Reconnections after the broker connection was lost.",
            ),
            handler_panics: r.counter(
                "warren_handler_panics_total",
                "Handler panics caught; each task was retried.",
            ),
            publish_confirm,
            copies_held,
            acks_failed: r.counter(
                "warren_acks_failed_total",
                "Ack frames not sent because the channel was lost; those tasks are redelivered.",
            ),
            copies_unconfirmed,
            pod_deletion_cost,
            pod_deletion_cost_errors,
            log_lines_dropped: r.log_lines_dropped(),
            registry: r.0,
        }
    }

    /// Counts a delivery's disposition (label handles resolved once, not per task).
    pub fn count(&self, how: Disposition) {
        self.outcomes[how as usize].inc();
    }

    /// Counts the disposition of a task `warren dead replay` sent back.
    pub fn count_replayed(&self, how: Disposition) {
        self.replayed[how as usize].inc();
    }

    /// Counts a delivery in `warren_tasks_in_flight` until the guard drops,
    /// however the task ends (settled, abandoned, or its future dropped).
    pub fn track_in_flight(&self) -> InFlight<'_> {
        self.in_flight.inc();
        InFlight(&self.in_flight)
    }

    /// Records a handler run.
    pub fn observe_task(&self, took: Duration) {
        self.task_duration.observe(took.as_secs_f64());
    }

    /// The Prometheus text exposition of every metric.
    pub fn render(&self) -> String {
        if let Some(dropped) = LOG_LINES_DROPPED.get() {
            // Two scrapes at once must not both add the same lines.
            static CATCHING_UP: std::sync::Mutex<()> = std::sync::Mutex::new(());
            let _one_at_a_time = CATCHING_UP.lock().unwrap_or_else(|e| e.into_inner());
            let behind = dropped().saturating_sub(self.log_lines_dropped.get());
            self.log_lines_dropped.inc_by(behind);
        }
        let mut out = Vec::new();
        TextEncoder::new()
            .encode(&self.registry.gather(), &mut out)
            .expect("text encoding into a Vec cannot fail");
        String::from_utf8(out).expect("the text format is UTF-8")
    }
}

/// Holds one unit of `warren_tasks_in_flight`; see [`Metrics::track_in_flight`].
pub struct InFlight<'a>(&'a IntGauge);

impl Drop for InFlight<'_> {
    fn drop(&mut self) {
        self.0.dec();
    }
}

/// Builds metrics into one registry; names are constants, so a failure is a bug.
struct Registrar(Registry);

impl Registrar {
    fn add<C: prometheus::core::Collector + Clone + 'static>(
        &self,
        metric: prometheus::Result<C>,
    ) -> C {
        let metric = metric.expect("metric definition is valid");
        self.0
            .register(Box::new(metric.clone()))
            .expect("metric names are unique");
        metric
    }

    fn counter(&self, name: &str, help: &str) -> IntCounter {
        self.add(IntCounter::new(name, help))
    }

    fn gauge(&self, name: &str, help: &str) -> IntGauge {
        self.add(IntGauge::new(name, help))
    }

    fn by_outcome(&self, name: &str, help: &str) -> IntCounterVec {
        self.add(IntCounterVec::new(Opts::new(name, help), &["outcome"]))
    }

    /// `warren_tasks_total`, and a handle per outcome of it and of
    /// `warren_replayed_tasks_total` (label lookups done once, here).
    fn outcomes(&self) -> (IntCounterVec, [IntCounter; 4], [IntCounter; 4]) {
        let tasks = self.by_outcome("warren_tasks_total", "Deliveries settled, by outcome.");
        let replayed = self.by_outcome(
            "warren_replayed_tasks_total",
            "Replayed dead letters (x-warren-replayed) settled, by outcome.",
        );
        let handles =
            |vec: &IntCounterVec| Disposition::ALL.map(|how| vec.with_label_values(&[how.label()]));
        let (outcomes, replayed) = (handles(&tasks), handles(&replayed));
        (tasks, outcomes, replayed)
    }

    /// Ready messages and consumers per queue, polled by `queue_depth`.
    fn queue_gauges(&self) -> (IntGaugeVec, IntGaugeVec) {
        let by_queue = |name, help| self.add(IntGaugeVec::new(Opts::new(name, help), &["queue"]));
        (
            by_queue(
                "warren_queue_messages_ready",
                "Ready messages in the queue (passive declare, polled).",
            ),
            by_queue(
                "warren_queue_consumers",
                "Consumers on the queue (passive declare, polled).",
            ),
        )
    }

    fn histogram(&self, name: &str, help: &str, buckets: &[f64]) -> Histogram {
        let opts = HistogramOpts::new(name, help).buckets(buckets.to_vec());
        self.add(Histogram::with_opts(opts))
    }

    /// Handler run times and publish-confirm latencies.
    fn latencies(&self) -> (Histogram, Histogram) {
        (
            self.histogram(
                "warren_task_duration_seconds",
                "Handler run time per task.",
                DURATION_BUCKETS,
            ),
            self.histogram(
                "warren_publish_confirm_seconds",
                "Time from publish to broker confirm.",
                CONFIRM_BUCKETS,
            ),
        )
    }

    /// Retry/dead-letter copies not stored, and deliveries held for them.
    fn copies(&self) -> (IntCounter, IntGauge) {
        (
            self.counter(
                "warren_copies_unconfirmed_total",
                "Retry/dead-letter copies not confirmed by the broker; each is held and tried again.",
            ),
            self.gauge(
                "warren_copies_held",
                "Deliveries held unacked until their retry/dead-letter copy is stored.",
            ),
        )
    }

    /// The pod-deletion-cost written, and failed updates (see `pod_cost`).
    fn pod_cost(&self) -> (IntGauge, IntCounter) {
        (
            self.gauge(
                "warren_pod_deletion_cost",
                "pod-deletion-cost last written to this pod (its in-flight tasks).",
            ),
            self.counter(
                "warren_pod_deletion_cost_errors_total",
                "Failed pod-deletion-cost updates (not in a cluster, or no RBAC).",
            ),
        )
    }

    /// Lines the log writer dropped (see `count_dropped_log_lines`).
    fn log_lines_dropped(&self) -> IntCounter {
        self.counter(
            "warren_log_lines_dropped_total",
            "Log lines dropped because the log reader (stderr) was too slow; tasks never wait for it.",
        )
    }

    /// `warren_build_info{version}` = 1, set once.
    fn build_info(&self) {
        let info = self.add(IntGaugeVec::new(
            Opts::new("warren_build_info", "Warren build; the value is always 1."),
            &["version"],
        ));
        info.with_label_values(&[env!("CARGO_PKG_VERSION")]).set(1);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_every_metric_with_its_labels() {
        let m = Metrics::new();
        m.count(Disposition::Acked);
        m.count(Disposition::DeadLettered);
        m.queue_ready.with_label_values(&["task_queue"]).set(3);
        m.observe_task(Duration::from_millis(20));
        let text = m.render();
        for needle in [
            "warren_tasks_total{outcome=\"acked\"} 1",
            "warren_tasks_total{outcome=\"dead_lettered\"} 1",
            "warren_queue_messages_ready{queue=\"task_queue\"} 3",
            "warren_task_duration_seconds_count 1",
            "warren_task_duration_seconds_bucket{le=\"3600\"} 1",
            "warren_build_info{version=",
            "warren_tasks_in_flight 0",
            "warren_broker_connected 0",
            "warren_log_lines_dropped_total 0",
        ] {
            assert!(text.contains(needle), "missing {needle} in\n{text}");
        }
    }
}
