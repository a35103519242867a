//! The tutorial's worker.py as a handler: one `per_dot` of "work" per `.`.

use super::{Handler, Outcome, Task};
use std::time::Duration;
use tracing::info;

/// Sleeps `per_dot` for every `.` byte in the body, then acks.
/// Any body works, including empty and non-UTF-8 ones.
#[derive(Debug, Clone)]
pub struct SleepHandler {
    per_dot: Duration,
}

impl SleepHandler {
    /// A handler that works `per_dot` per dot (the tutorial uses one second).
    pub fn new(per_dot: Duration) -> Self {
        SleepHandler { per_dot }
    }

    /// How long a body takes: `per_dot` × number of `.` bytes.
    pub fn work_time(&self, body: &[u8]) -> Duration {
        let dots = count_dots(body);
        self.per_dot
            .saturating_mul(u32::try_from(dots).unwrap_or(u32::MAX))
    }
}

/// The number of `.` bytes, as `body.count(b'.')` in the tutorial.
pub fn count_dots(body: &[u8]) -> usize {
    body.iter().filter(|&&b| b == b'.').count()
}

impl Handler for SleepHandler {
    async fn handle(&self, task: &Task) -> Outcome {
        info!(" [x] Received {}", task.preview());
        let work = self.work_time(&task.body);
        if !work.is_zero() {
            tokio::time::sleep(work).await;
        }
        info!(" [x] Done");
        Outcome::Ack
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_dots_like_the_tutorial() {
        assert_eq!(count_dots(b"Hello World!"), 0);
        assert_eq!(count_dots(b"First message."), 1);
        assert_eq!(count_dots(b"Fifth message....."), 5);
        assert_eq!(count_dots(b""), 0);
        assert_eq!(count_dots(&[0xff, b'.', 0x00, b'.']), 2);
    }

    #[test]
    fn work_time_is_per_dot_times_dots() {
        let h = SleepHandler::new(Duration::from_millis(10));
        assert_eq!(h.work_time(b"a..."), Duration::from_millis(30));
        assert_eq!(h.work_time(b"none"), Duration::ZERO);
    }

    #[tokio::test(start_paused = true)]
    async fn sleeps_and_acks() {
        let h = SleepHandler::new(Duration::from_secs(1));
        let task = Task::for_test(b"Third message...".to_vec());
        let start = tokio::time::Instant::now();
        assert_eq!(h.handle(&task).await, Outcome::Ack);
        assert_eq!(start.elapsed(), Duration::from_secs(3));
    }
}
