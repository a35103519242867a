//! The contract between Warren and the code that does the work.
//!
//! A [`Handler`] receives a [`Task`] and answers with an [`Outcome`]. Warren
//! settles the delivery from that answer (see `pool::settle`): the handler
//! never touches AMQP, so it cannot ack too early or forget to ack.
//!
//! Built in ([`Builtin`], chosen by `handler.kind`): [`SleepHandler`] (the
//! tutorial), [`ExecHandler`] (a program per task, for code in any language)
//! and [`HttpHandler`] (a POST per task to a sidecar). docs/handlers.md puts
//! their contracts and this trait side by side.

mod exec;
mod http;
mod sleep;
pub mod task;

pub use exec::ExecHandler;
pub use http::HttpHandler;
pub use sleep::SleepHandler;
pub use task::Task;

use crate::config::{Config, HandlerKind};
use crate::error::Result;
use std::future::Future;
use std::time::Duration;

/// What a handler decided about one task.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// Done: ack the delivery.
    Ack,
    /// Failed but may succeed later: republish to a retry tier, at least
    /// `after` from now when given (else the configured backoff), until
    /// `retry.max_attempts`; then dead-letter. Panics and timeouts land here.
    Retry {
        /// Minimum delay before the next attempt (e.g. an HTTP Retry-After).
        after: Option<Duration>,
        /// Why it failed; kept in the dead-letter headers if retries run out.
        reason: String,
    },
    /// Can never succeed (bad input): dead-letter now with this reason.
    Reject {
        /// Why; stored in the `x-warren-reason` header of the dead letter.
        reason: String,
    },
}

impl Outcome {
    /// A retry with the configured backoff.
    pub fn retry(reason: impl Into<String>) -> Self {
        Outcome::Retry {
            after: None,
            reason: reason.into(),
        }
    }

    /// A rejection (dead-letter now).
    pub fn reject(reason: impl Into<String>) -> Self {
        Outcome::Reject {
            reason: reason.into(),
        }
    }
}

/// Your work, plugged into the pool. One value serves all workers at once,
/// so it is shared (`&self`) and must be `Send + Sync`.
///
/// ```no_run
/// use warren::{Handler, Outcome, Task};
///
/// struct Resize;
///
/// impl Handler for Resize {
///     async fn handle(&self, task: &Task) -> Outcome {
///         if task.body.is_empty() {
///             return Outcome::reject("empty body");
///         }
///         Outcome::Ack
///     }
/// }
/// ```
pub trait Handler: Send + Sync + 'static {
    /// Processes one task. Runs concurrently with other calls on the same
    /// handler; a panic or exceeding `pool.handler_timeout` counts as a retry.
    fn handle(&self, task: &Task) -> impl Future<Output = Outcome> + Send;

    /// Whether the handler can take work now (e.g. an HTTP sidecar answers its
    /// ready URL). Polled for `/readyz`; the default is always ready.
    fn ready(&self) -> impl Future<Output = Result<(), String>> + Send {
        std::future::ready(Ok(()))
    }
}

/// The handlers the `warren` binary can run, chosen by `handler.kind`.
#[derive(Debug, Clone)]
pub enum Builtin {
    /// The tutorial's worker.
    Sleep(SleepHandler),
    /// A program run per task (`handler.exec`).
    Exec(ExecHandler),
    /// A POST per task to an HTTP endpoint (`handler.http`).
    Http(HttpHandler),
}

impl Builtin {
    /// Builds the configured handler from a validated `config` (see
    /// [`Config::validate`]), or says why it cannot run here (e.g. the exec
    /// PROGRAM is not on PATH): before the pool starts, so a broken setup
    /// fails once at startup instead of failing every task.
    pub fn from_config(config: &Config) -> Result<Self> {
        let handler = &config.handler;
        Ok(match handler.kind {
            HandlerKind::Sleep => Builtin::Sleep(SleepHandler::new(handler.sleep.per_dot)),
            HandlerKind::Exec => Builtin::Exec(ExecHandler::new(&handler.exec)?),
            HandlerKind::Http => {
                // An entry point for library users too: reqwest needs the provider.
                crate::crypto::install_crypto_provider();
                Builtin::Http(HttpHandler::new(&handler.http, config.pool.concurrency)?)
            }
        })
    }
}

impl Handler for Builtin {
    async fn handle(&self, task: &Task) -> Outcome {
        match self {
            Builtin::Sleep(h) => h.handle(task).await,
            Builtin::Exec(h) => h.handle(task).await,
            Builtin::Http(h) => h.handle(task).await,
        }
    }

    async fn ready(&self) -> Result<(), String> {
        match self {
            Builtin::Sleep(h) => h.ready().await,
            Builtin::Exec(h) => h.ready().await,
            Builtin::Http(h) => h.ready().await,
        }
    }
}
