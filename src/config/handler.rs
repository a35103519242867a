//! The handler's settings: which kind runs each task (`handler.kind`) and
//! the keys of each kind (`handler.sleep.*`, `handler.exec.*`, `handler.http.*`).

use super::duration;
use serde::{Deserialize, Serialize};
use std::time::Duration;

/// Which kind of handler processes tasks.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum HandlerKind {
    /// The tutorial's worker: sleep `per_dot` per `.` in the body.
    #[default]
    Sleep,
    /// Run a program per task (body on stdin).
    Exec,
    /// POST each task to an HTTP endpoint (a sidecar).
    Http,
}

/// Handler selection and per-kind settings.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct HandlerConfig {
    /// `sleep` (default), `exec` or `http`.
    pub kind: HandlerKind,
    /// Settings of the `sleep` handler.
    pub sleep: SleepConfig,
    /// Settings of the `exec` handler.
    pub exec: ExecConfig,
    /// Settings of the `http` handler.
    pub http: HttpConfig,
}

/// The tutorial handler.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SleepConfig {
    /// Work time per `.` byte in the body (the tutorial: one second).
    #[serde(with = "duration::single")]
    pub per_dot: Duration,
}

impl Default for SleepConfig {
    fn default() -> Self {
        SleepConfig {
            per_dot: Duration::from_secs(1),
        }
    }
}

/// A program run per task.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ExecConfig {
    /// argv of the program, run directly (no shell, so no quoting surprises);
    /// the task body goes to its stdin, never into argv.
    pub command: Vec<String>,
    /// Exit codes that mean "this task can never succeed": dead-letter at once
    /// instead of retrying (65 is sysexits' EX_DATAERR).
    pub reject_exit_codes: Vec<i32>,
    /// After a timeout or at the drain deadline the program's process group
    /// gets SIGTERM, then SIGKILL this much later, so programs can clean up
    /// but nothing they started outlives the task.
    #[serde(with = "duration::single")]
    pub kill_grace: Duration,
}

impl Default for ExecConfig {
    fn default() -> Self {
        ExecConfig {
            command: Vec::new(),
            reject_exit_codes: vec![65],
            kill_grace: Duration::from_secs(2),
        }
    }
}

/// An HTTP endpoint called per task.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct HttpConfig {
    /// Where each task is POSTed (`http://` or `https://`).
    pub url: Option<String>,
    /// Per-request time limit (connect + response); a timeout is retried.
    #[serde(with = "duration::single")]
    pub timeout: Duration,
    /// Optional URL the sidecar answers 2xx on when it can take work; until
    /// then Warren reports itself not ready, so no traffic is routed to a pod
    /// whose sidecar is still starting.
    pub ready_url: Option<String>,
}

impl Default for HttpConfig {
    fn default() -> Self {
        HttpConfig {
            url: None,
            timeout: Duration::from_secs(30),
            ready_url: None,
        }
    }
}

impl HttpConfig {
    /// A copy safe to print: passwords in `url` and `ready_url` replaced by `***`
    /// (a sidecar URL may carry basic-auth credentials).
    pub fn redacted(&self) -> HttpConfig {
        let redact = |u: &Option<String>| u.as_deref().map(crate::redact::redact_url);
        HttpConfig {
            url: redact(&self.url),
            ready_url: redact(&self.ready_url),
            ..self.clone()
        }
    }
}
