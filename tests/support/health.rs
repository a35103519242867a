//! What a running `warren` reports about itself: readiness on /readyz and
//! its metrics on /metrics. Tests wait and count with these, so the log's
//! wording stays free to change.

use super::net::try_get;
use super::proc::Warren;
use super::procfs::process_alive;
use std::time::{Duration, Instant};
use warren::metrics::Disposition;

/// How long a process may take to become ready.
const READY_LIMIT: Duration = Duration::from_secs(30);
const POLL: Duration = Duration::from_millis(25);

/// `warren_tasks_total{outcome="..."}`, the series counting one outcome.
pub fn tasks_total(outcome: Disposition) -> String {
    format!("warren_tasks_total{{outcome=\"{}\"}}", outcome.label())
}

/// Value of one exact series (`name{labels}` as rendered) in a scrape.
pub fn sample(scrape: &str, series: &str) -> Option<f64> {
    scrape.lines().find_map(|l| {
        l.strip_prefix(series)
            .and_then(|rest| rest.strip_prefix(' '))
            .and_then(|v| v.trim().parse().ok())
    })
}

impl Warren {
    /// (status, body) of `GET <base><path>`; None while nothing answers.
    pub fn get(&self, path: &str) -> Option<(u16, String)> {
        try_get(&format!("{}{path}", self.base), &[]).ok()
    }

    /// (status, body) of /readyz; panics if the server does not answer.
    pub fn readyz(&self) -> (u16, String) {
        self.get("/readyz")
            .unwrap_or_else(|| panic!("{}: /readyz does not answer", self.name))
    }

    /// Waits until /readyz answers 200 (connected, consuming, handler ready).
    pub async fn wait_ready(&self) {
        self.wait_readyz(200, READY_LIMIT).await;
    }

    /// Waits until /readyz answers `status`; its body then.
    pub async fn wait_readyz(&self, status: u16, limit: Duration) -> String {
        let started = Instant::now();
        loop {
            match self.get("/readyz") {
                Some((s, body)) if s == status => return body,
                got => {
                    let what = format!("/readyz {status}, got {got:?}");
                    self.check_waiting(started, limit, &what);
                }
            }
            tokio::time::sleep(POLL).await;
        }
    }

    /// The /metrics text; panics if the server does not answer.
    pub fn scrape(&self) -> String {
        match self.get("/metrics") {
            Some((200, text)) => text,
            other => panic!("{}: GET /metrics: {other:?}", self.name),
        }
    }

    /// The value of one series, e.g. `warren_tasks_total{outcome="acked"}`;
    /// panics if the scrape does not have it.
    pub fn metric(&self, series: &str) -> f64 {
        let scrape = self.scrape();
        sample(&scrape, series)
            .unwrap_or_else(|| panic!("{}: no series {series} in\n{scrape}", self.name))
    }

    /// Waits until `series` is at least `at_least`; its value then. Polls
    /// from the start, so the process need not be ready yet.
    pub async fn wait_metric(&self, series: &str, at_least: f64, limit: Duration) -> f64 {
        let started = Instant::now();
        loop {
            let scrape = self.get("/metrics").map(|(_, text)| text);
            let value = scrape.as_deref().and_then(|s| sample(s, series));
            if let Some(v) = value.filter(|v| *v >= at_least) {
                return v;
            }
            let what = format!("{series} >= {at_least}, got {value:?}");
            self.check_waiting(started, limit, &what);
            tokio::time::sleep(POLL).await;
        }
    }

    /// Waits until `n` tasks were acked (the handler succeeded and the
    /// broker got the ack).
    pub async fn wait_acked(&self, n: usize, limit: Duration) {
        let acked = tasks_total(Disposition::Acked);
        self.wait_metric(&acked, n as f64, limit).await;
    }

    /// Panics, with the log, once `limit` passed or the process is gone.
    fn check_waiting(&self, started: Instant, limit: Duration, what: &str) {
        let failure = if !process_alive(self.pid()) {
            "the process exited"
        } else if started.elapsed() > limit {
            "timed out"
        } else {
            return;
        };
        panic!(
            "{}: waited {:?} for {what}: {failure}; log:\n{}",
            self.name,
            started.elapsed(),
            self.lines().join("\n")
        );
    }
}
