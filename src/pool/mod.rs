//! The worker pool: one connection, one channel, one consumer, N workers.
//!
//! - [`supervisor`] connects, consumes and reconnects; a [`session`] is one
//!   connection (opened with deadlines; consumes again after a broker cancel);
//!   [`drain`] stops it gracefully on shutdown.
//! - [`worker`] runs the handler on one task (catching panics, enforcing the
//!   timeout) and hands the outcome to settle.
//! - [`settle`]: an [`Unsettled`](settle::Unsettled) delivery and the only
//!   ways it leaves the pool — ack, retry copy, dead letter, or requeue —
//!   never acking the original before a copy is confirmed.
//! - [`copy`] publishes a retry or dead-letter copy until it is stored.
//! - [`acks`] coalesces acks; [`slots`] numbers the workers.
//! - [`prefetch`] tunes `pool.prefetch: auto` while the pool runs; [`feed`]
//!   replaces the consumer when it changes.
//!
//! The pool depends on config, amqp, handler and health only. It reports
//! through [`Health`], and with each connection it opens a spare channel that
//! it announces on a watch, so an observer (the queue-depth poller) can ask
//! the broker things without the pool knowing who it is.

mod acks;
mod copy;
mod drain;
mod feed;
mod prefetch;
mod session;
mod settle;
mod slots;
mod supervisor;
mod worker;

use crate::amqp::topology::Topology;
use crate::config::Config;
use crate::error::Result;
use crate::handler::Handler;
use crate::health::Health;
use lapin::Channel;
use std::sync::Arc;
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

/// What every worker shares, apart from the handler (kept separate so the
/// settle, drain and copy code is not generic over it).
struct Context {
    config: Config,
    topo: Topology,
    health: Arc<Health>,
    /// Host or pod name, recorded in dead-letter headers and the connection name.
    worker_name: String,
    /// Cancelled when the drain starts: settling stops retrying unconfirmed
    /// copies and requeues the originals instead.
    draining: CancellationToken,
    /// Cancelled when the drain deadline passes: workers abandon their tasks.
    hard_stop: CancellationToken,
    /// A spare channel on the live connection, for observers; None between
    /// sessions. Not the consuming channel: an observer's failed passive
    /// declare closes the channel it ran on.
    observer_channel: watch::Sender<Option<Channel>>,
    /// Handler times, for adaptive prefetch.
    clock: prefetch::TaskClock,
}

/// A configured pool, not yet running.
pub struct Pool {
    ctx: Arc<Context>,
}

impl Pool {
    /// A pool for a validated `config`, reporting through `health`.
    pub fn new(config: Config, health: Arc<Health>) -> Pool {
        let (observer_channel, _) = watch::channel(None);
        Pool {
            ctx: Arc::new(Context {
                topo: Topology::from_config(&config),
                worker_name: worker_name(),
                draining: CancellationToken::new(),
                hard_stop: CancellationToken::new(),
                config,
                health,
                observer_channel,
                clock: prefetch::TaskClock::default(),
            }),
        }
    }

    /// A channel of each connection the pool opens, for observers (None
    /// while it has no connection).
    pub fn observer_channels(&self) -> watch::Receiver<Option<Channel>> {
        self.ctx.observer_channel.subscribe()
    }

    /// The queues the pool uses.
    pub fn topology(&self) -> &Topology {
        &self.ctx.topo
    }

    /// Consumes with `handler` until `shutdown` is cancelled, then drains
    /// (in-flight tasks finish within `pool.shutdown_timeout`) and returns.
    /// Returns an error only for problems retrying cannot fix (a queue
    /// declared elsewhere with other arguments, a missing queue).
    pub async fn run<H: Handler>(self, handler: Arc<H>, shutdown: CancellationToken) -> Result<()> {
        supervisor::supervise(self.ctx, handler, shutdown).await
    }
}

/// POD_NAME (set by the Helm chart from the downward API), else the host name.
fn worker_name() -> String {
    if let Ok(pod) = std::env::var("POD_NAME") {
        return pod;
    }
    let mut buf = [0u8; 256];
    // SAFETY: the buffer is valid for its length; gethostname NUL-terminates on success.
    let rc = unsafe { libc::gethostname(buf.as_mut_ptr().cast(), buf.len()) };
    if rc == 0 {
        let end = buf.iter().position(|&b| b == 0).unwrap_or(buf.len());
        return String::from_utf8_lossy(&buf[..end]).into_owned();
    }
    "unknown-host".into()
}
