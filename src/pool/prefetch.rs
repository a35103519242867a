//! Adaptive prefetch (`pool.prefetch: auto`): how many deliveries the broker
//! may push ahead of the workers, tuned while the pool runs.
//!
//! The rule: the deliveries waiting unstarted in this process should cover
//! about one broker round trip of work, so no worker waits for the network
//! and no more tasks than that sit where other pods cannot take them.
//! With `C` workers each busy `T` per task, the pool finishes `C / T` tasks a
//! second; one round trip `R` of that is `C · R / T` tasks. So
//!
//! ```text
//! prefetch = clamp(C + round(2 · C · R / T), C, pool.prefetch_max)
//! ```
//!
//! (the factor 2 covers coalesced acks and jitter). Tasks that are long next
//! to the round trip keep prefetch = C, the tutorial's fair dispatch; floods
//! of tiny tasks raise it up to the ceiling. `T` is measured from handler
//! times (and, while no task finishes, from how long the workers have been
//! busy, so longer tasks lower it before the first one ends); `R` from timed
//! `basic.qos` round trips on the consuming channel. See docs/design-notes.md.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

/// How often the tuner looks at the figures.
pub(super) const TICK: Duration = Duration::from_millis(100);
/// At most one change per this interval (each change replaces the consumer).
const MIN_CHANGE_INTERVAL: Duration = Duration::from_millis(500);
/// A round trip is measured again this often when nothing changes.
const PROBE_INTERVAL: Duration = Duration::from_secs(5);
/// A change must move the prefetch by at least this factor (either way).
const HYSTERESIS: f64 = 1.5;
/// Below this a task time is measurement noise, not work.
const MIN_TASK: Duration = Duration::from_micros(5);

/// Handler times, recorded by the workers and read by the tuner (lock-free:
/// it is on every task's path).
#[derive(Default)]
pub(super) struct TaskClock {
    busy_nanos: AtomicU64,
    done: AtomicU64,
}

impl TaskClock {
    /// One handler run took `took`.
    pub(super) fn record(&self, took: Duration) {
        let nanos = u64::try_from(took.as_nanos()).unwrap_or(u64::MAX);
        self.busy_nanos.fetch_add(nanos, Ordering::Relaxed);
        self.done.fetch_add(1, Ordering::Relaxed);
    }

    /// (total handler time, tasks) since the last call.
    fn take(&self) -> (Duration, u64) {
        let done = self.done.swap(0, Ordering::Relaxed);
        let busy = self.busy_nanos.swap(0, Ordering::Relaxed);
        (Duration::from_nanos(busy), done)
    }
}

/// The prefetch a pool of `concurrency` workers needs when a task takes
/// `task` and a broker round trip takes `round_trip`; see the module docs.
pub fn target(concurrency: u16, max: u16, task: Duration, round_trip: Duration) -> u16 {
    let task = task.max(MIN_TASK).as_secs_f64();
    let extra = (2.0 * f64::from(concurrency) * round_trip.as_secs_f64() / task).round();
    let wanted = f64::from(concurrency) + extra;
    wanted.clamp(f64::from(concurrency), f64::from(max.max(concurrency))) as u16
}

/// What the tuner wants done at a tick.
#[derive(Debug, PartialEq, Eq)]
pub(super) enum Step {
    /// Nothing.
    Keep,
    /// Re-issue `basic.qos` with the current value to measure a round trip.
    Probe,
    /// Replace the consumer with one at this prefetch.
    Change(u16),
}

/// The adaptive-prefetch state of one pool.
pub(super) struct Tuner {
    concurrency: u16,
    max: u16,
    current: u16,
    /// Smoothed handler time per task; None until a task finished.
    task: Option<Duration>,
    round_trip: Duration,
    last_change: Instant,
    last_probe: Instant,
    last_done: Instant,
}

impl Tuner {
    /// Starts at prefetch = concurrency (fair dispatch until measured); the
    /// first change may come at the first tick (a flood of tiny tasks should
    /// not wait for the rate limit).
    pub(super) fn new(concurrency: u16, max: u16, now: Instant) -> Tuner {
        Tuner {
            concurrency,
            max: max.max(concurrency),
            current: concurrency,
            task: None,
            round_trip: Duration::from_millis(1),
            last_change: now.checked_sub(MIN_CHANGE_INTERVAL).unwrap_or(now),
            last_probe: now,
            last_done: now,
        }
    }

    /// The prefetch in effect.
    pub(super) fn current(&self) -> u16 {
        self.current
    }

    /// The smoothed (task time, round trip), for the debug log.
    pub(super) fn figures(&self) -> (Option<Duration>, Duration) {
        (self.task, self.round_trip)
    }

    /// A measured `basic.qos` round trip; a new consumer starts at `applied`.
    pub(super) fn measured(&mut self, round_trip: Duration, applied: u16, now: Instant) {
        self.round_trip = (self.round_trip * 3 + round_trip) / 4;
        self.last_probe = now;
        if applied != self.current {
            self.current = applied;
            self.last_change = now;
        }
    }

    /// A session starts with a new consumer at concurrency: forget the old
    /// round trip (maybe another node) but keep the task time.
    pub(super) fn restart(&mut self, round_trip: Duration, now: Instant) {
        self.round_trip = round_trip;
        self.current = self.concurrency;
        self.last_probe = now;
    }

    /// Reads the clock and decides. `busy` is how many tasks are in flight.
    pub(super) fn tick(&mut self, clock: &TaskClock, busy: u64, now: Instant) -> Step {
        let (spent, done) = clock.take();
        if done > 0 {
            let sample = spent / u32::try_from(done).unwrap_or(u32::MAX);
            self.task = Some(self.task.map_or(sample, |t| (t + sample) / 2));
            self.last_done = now;
        } else if busy > 0 {
            // Nothing finished for a while although workers are busy: tasks
            // take at least that long now. Lower prefetch before one ends.
            let waited = now - self.last_done;
            self.task = Some(self.task.map_or(waited, |t| t.max(waited)));
        }
        let Some(task) = self.task else {
            return Step::Keep;
        };
        // An idle pool has nothing to tune for: round-trip noise alone must
        // not replace consumers.
        let working = done > 0 || busy > 0;
        let wanted = target(self.concurrency, self.max, task, self.round_trip);
        let far = f64::from(wanted) >= f64::from(self.current) * HYSTERESIS
            || f64::from(wanted) * HYSTERESIS <= f64::from(self.current);
        if working && far && now - self.last_change >= MIN_CHANGE_INTERVAL {
            return Step::Change(wanted);
        }
        if now - self.last_probe >= PROBE_INTERVAL {
            return Step::Probe;
        }
        Step::Keep
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MS: Duration = Duration::from_millis(1);

    #[test]
    fn long_tasks_keep_fair_dispatch_and_tiny_ones_raise_it_to_the_ceiling() {
        // 200 ms tasks, 0.3 ms round trip: one task per worker.
        assert_eq!(target(2, 1000, 200 * MS, MS * 3 / 10), 2);
        assert_eq!(target(8, 1000, 20 * MS, MS * 3 / 10), 8);
        // 20 ms tasks on 100 workers: a few extra.
        assert_eq!(target(100, 1000, 20 * MS, MS * 3 / 10), 103);
        // 50 µs no-op tasks: the round trip is worth many tasks.
        assert_eq!(target(8, 1000, MS / 20, MS * 3 / 10), 104);
        assert_eq!(target(8, 1000, Duration::ZERO, MS), 1000);
        // The ceiling never goes below the concurrency.
        assert_eq!(target(1000, 1000, Duration::ZERO, MS), 1000);
        assert_eq!(target(2000, 1000, 20 * MS, MS), 2000);
    }

    fn run(tuner: &mut Tuner, clock: &TaskClock, task: Duration, n: u32, at: Instant) -> Step {
        for _ in 0..n {
            clock.record(task);
        }
        tuner.tick(clock, 0, at)
    }

    #[test]
    fn it_rises_for_short_tasks_and_falls_as_fast_when_they_grow() {
        let t0 = Instant::now();
        let clock = TaskClock::default();
        let mut tuner = Tuner::new(8, 1000, t0);
        tuner.restart(MS / 2, t0);
        let up = run(&mut tuner, &clock, MS / 100, 50, t0 + TICK);
        assert_eq!(up, Step::Change(808));
        tuner.measured(MS / 2, 808, t0 + TICK);
        // Tasks now take 100 ms: rate-limited at first, then back to fair dispatch.
        let soon = run(&mut tuner, &clock, 100 * MS, 8, t0 + 2 * TICK);
        assert_eq!(soon, Step::Keep);
        let t = t0 + 7 * TICK;
        assert_eq!(run(&mut tuner, &clock, 100 * MS, 8, t), Step::Change(8));
    }

    #[test]
    fn busy_workers_with_nothing_finished_lower_it_before_a_task_ends() {
        let t0 = Instant::now();
        let clock = TaskClock::default();
        let mut tuner = Tuner::new(4, 1000, t0);
        tuner.restart(MS, t0);
        clock.record(MS / 100);
        assert_eq!(tuner.tick(&clock, 0, t0 + TICK), Step::Change(804));
        tuner.measured(MS, 804, t0 + TICK);
        // Then no task finishes for 2 s while all four workers are busy.
        let step = tuner.tick(&clock, 4, t0 + TICK + Duration::from_secs(2));
        assert_eq!(step, Step::Change(4));
    }

    #[test]
    fn an_idle_pool_only_probes() {
        let t0 = Instant::now();
        let clock = TaskClock::default();
        let mut tuner = Tuner::new(8, 1000, t0);
        assert_eq!(tuner.tick(&clock, 0, t0 + TICK), Step::Keep);
        assert_eq!(tuner.tick(&clock, 0, t0 + PROBE_INTERVAL), Step::Keep);
        clock.record(100 * MS);
        assert_eq!(tuner.tick(&clock, 0, t0 + PROBE_INTERVAL), Step::Probe);
        // A round trip that would justify more changes nothing while idle.
        tuner.measured(200 * MS, 8, t0 + PROBE_INTERVAL);
        let later = t0 + PROBE_INTERVAL + Duration::from_secs(1);
        assert_eq!(tuner.tick(&clock, 0, later), Step::Keep);
    }
}
