//! Process health: what the pool is doing, whether the handler can work, and
//! every metric. The pool writes it; the HTTP server, the pod-deletion-cost
//! updater and library users read it. It imports nothing but the metrics, so
//! everything above can share it without depending on each other.

use crate::metrics::{InFlight, Metrics};
use std::sync::Mutex;
use std::sync::atomic::{AtomicI64, AtomicU8, Ordering};
use tokio_util::sync::CancellationToken;

/// What the supervisor is doing; only `Consuming` is ready.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub enum Phase {
    /// Not connected yet.
    Connecting = 0,
    /// Connected, consumer running.
    Consuming = 1,
    /// Lost the broker; reconnecting with backoff.
    Reconnecting = 2,
    /// SIGTERM received; finishing in-flight tasks.
    Draining = 3,
    /// Done.
    Stopped = 4,
    /// The broker cancelled the consumer; declaring and consuming again on
    /// the same connection.
    Resubscribing = 5,
}

impl Phase {
    fn from_u8(v: u8) -> Phase {
        match v {
            1 => Phase::Consuming,
            2 => Phase::Reconnecting,
            3 => Phase::Draining,
            4 => Phase::Stopped,
            5 => Phase::Resubscribing,
            _ => Phase::Connecting,
        }
    }

    fn reason(self) -> &'static str {
        match self {
            Phase::Connecting => "connecting to the broker",
            Phase::Consuming => "consuming",
            Phase::Reconnecting => "reconnecting to the broker",
            Phase::Draining => "draining for shutdown",
            Phase::Stopped => "stopped",
            Phase::Resubscribing => "the broker cancelled the consumer; consuming again",
        }
    }
}

/// Shared (behind an `Arc`) by the pool, its workers, the HTTP server and
/// the pod-deletion-cost updater.
#[derive(Debug)]
pub struct Health {
    /// The supervisor's [`Phase`], as a `u8` so readers never lock.
    phase: AtomicU8,
    /// Why the handler is not ready (None = ready).
    handler_problem: Mutex<Option<String>>,
    /// The broker node in use (URL, password redacted); None while not connected.
    node: Mutex<Option<String>>,
    /// Why consuming has stalled although the consumer is registered (a
    /// quorum queue without a majority); None = no sign of trouble.
    queue_problem: Mutex<Option<String>>,
    /// The current session's "reconnect now" token and why it was cancelled:
    /// a stall that lasts is cured by a new connection and consumer.
    reconnect: Mutex<(CancellationToken, Option<String>)>,
    /// The most tasks in flight at once since the last
    /// [`take_in_flight_peak`](Health::take_in_flight_peak): the
    /// pod-deletion-cost updater samples every few seconds and must not
    /// miss the quick tasks that start and end between two samples.
    in_flight_peak: AtomicI64,
    /// Every metric of this process.
    pub metrics: Metrics,
}

impl Default for Health {
    fn default() -> Self {
        Health {
            phase: AtomicU8::new(Phase::Connecting as u8),
            handler_problem: Mutex::new(None),
            node: Mutex::new(None),
            queue_problem: Mutex::new(None),
            reconnect: Mutex::new((CancellationToken::new(), None)),
            in_flight_peak: AtomicI64::new(0),
            metrics: Metrics::new(),
        }
    }
}

impl Health {
    /// The supervisor's current phase.
    pub fn phase(&self) -> Phase {
        Phase::from_u8(self.phase.load(Ordering::Relaxed))
    }

    /// Ok while consuming with a ready handler, else the reason.
    pub fn readiness(&self) -> Result<(), String> {
        match self.phase() {
            Phase::Consuming => {
                if let Some(why) = &*self.queue_problem.lock().unwrap() {
                    return Err(why.clone());
                }
                match &*self.handler_problem.lock().unwrap() {
                    None => Ok(()),
                    Some(why) => Err(format!("handler not ready: {why}")),
                }
            }
            other => Err(other.reason().to_owned()),
        }
    }

    /// The broker node in use (password redacted), if connected.
    pub fn node(&self) -> Option<String> {
        self.node.lock().unwrap().clone()
    }

    /// True when `readiness` is Ok.
    pub fn is_ready(&self) -> bool {
        self.readiness().is_ok()
    }

    /// Deliveries this process holds unacked and is working on.
    pub fn in_flight(&self) -> i64 {
        self.metrics.in_flight.get()
    }

    /// Counts a task in flight until the guard drops (see
    /// [`Metrics::track_in_flight`]), and in the peak.
    pub fn track_in_flight(&self) -> InFlight<'_> {
        let guard = self.metrics.track_in_flight();
        self.in_flight_peak
            .fetch_max(self.in_flight(), Ordering::Relaxed);
        guard
    }

    /// The most tasks in flight at once since the previous call (at least
    /// as many as now), starting a new period.
    pub fn take_in_flight_peak(&self) -> i64 {
        let now = self.in_flight();
        self.in_flight_peak.swap(now, Ordering::Relaxed).max(now)
    }

    /// Records what the supervisor does now (and whether it is connected).
    pub(crate) fn set_phase(&self, phase: Phase) {
        self.phase.store(phase as u8, Ordering::Relaxed);
        let connected = matches!(
            phase,
            Phase::Consuming | Phase::Draining | Phase::Resubscribing
        );
        self.metrics.broker_connected.set(i64::from(connected));
    }

    /// Records which node the pool is connected to (None: none).
    pub(crate) fn set_node(&self, node: Option<String>) {
        *self.node.lock().unwrap() = node;
    }

    /// Records what the queue-depth poller sees wrong with the work queue.
    pub(crate) fn set_queue_problem(&self, problem: Option<String>) {
        *self.queue_problem.lock().unwrap() = problem;
    }

    /// A fresh reconnect token for a new session (see `request_reconnect`).
    pub(crate) fn arm_reconnect(&self) -> CancellationToken {
        let token = CancellationToken::new();
        *self.reconnect.lock().unwrap() = (token.clone(), None);
        token
    }

    /// Asks the pool to drop this session and reconnect, saying why.
    pub(crate) fn request_reconnect(&self, why: String) {
        let mut reconnect = self.reconnect.lock().unwrap();
        reconnect.1 = Some(why);
        reconnect.0.cancel();
    }

    /// Why a reconnect was requested, if it was.
    pub(crate) fn reconnect_reason(&self) -> Option<String> {
        self.reconnect.lock().unwrap().1.clone()
    }

    /// Records the handler's last readiness answer (None = ready).
    pub(crate) fn set_handler_problem(&self, problem: Option<String>) {
        *self.handler_problem.lock().unwrap() = problem;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_in_flight_peak_sees_tasks_that_came_and_went() {
        let h = Health::default();
        assert_eq!(h.take_in_flight_peak(), 0);
        let (a, b) = (h.track_in_flight(), h.track_in_flight());
        drop((a, b));
        let c = h.track_in_flight();
        assert_eq!(h.take_in_flight_peak(), 2, "two at once, then one");
        assert_eq!(h.take_in_flight_peak(), 1, "one still runs");
        drop(c);
        assert_eq!(h.take_in_flight_peak(), 1, "it ran during this period");
        assert_eq!(h.take_in_flight_peak(), 0);
    }

    #[test]
    fn only_consuming_with_a_ready_handler_is_ready() {
        let s = Health::default();
        assert_eq!(s.readiness(), Err("connecting to the broker".into()));
        s.set_phase(Phase::Consuming);
        assert!(s.is_ready());
        assert_eq!(s.metrics.broker_connected.get(), 1);
        s.set_handler_problem(Some("sidecar answers 503".into()));
        assert_eq!(
            s.readiness(),
            Err("handler not ready: sidecar answers 503".into())
        );
        s.set_handler_problem(None);
        s.set_phase(Phase::Draining);
        assert_eq!(s.readiness(), Err("draining for shutdown".into()));
        s.set_phase(Phase::Reconnecting);
        assert_eq!(s.metrics.broker_connected.get(), 0);
    }
}
