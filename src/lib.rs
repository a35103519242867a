//! Warren: the worker side of RabbitMQ's "work queues" pattern, done properly.
//!
//! Producers publish persistent tasks to a durable queue; Warren connects once,
//! sets `basic_qos(prefetch)` for fair dispatch, and runs up to `concurrency`
//! handlers at a time on one channel. A task is acked only after its handler
//! said [`Outcome::Ack`]; anything else is settled without ever being lost
//! (see [`pool`]). Scaling is by replicas: a process that dies leaves its
//! tasks unacked and the broker redelivers them to the others.
//!
//! # Module map
//! - [`config`]: YAML file + `WARREN_*` env + flags → a validated [`Config`].
//! - [`amqp`]: connecting (with password redaction), declaring the topology,
//!   publishing with confirms.
//! - [`pool`]: supervisor → dispatcher → workers → settle (ack / retry / dead-letter).
//! - [`handler`]: the [`Handler`] trait and the built-in handlers.
//! - [`server`] and [`metrics`]: /livez, /readyz and Prometheus /metrics.
//! - [`kube`]: this pod's pod-deletion-cost, so scale-down removes idle pods first.
//! - [`status`]: the `warren status` queue report.
//! - [`shutdown`]: SIGTERM / ctrl-c → a [`CancellationToken`].
//! - [`telemetry`]: log output (text or JSON).
//! - [`cli`]: the command-line surface used by the `warren` binary.
//!
//! # Library use
//! Implement [`Handler`] and call [`run`] with your own shutdown token; see
//! `examples/custom_handler.rs`.

pub mod amqp;
pub mod cli;
pub mod config;
pub mod error;
pub mod handler;
pub mod kube;
pub mod metrics;
pub mod pool;
pub mod server;
pub mod shutdown;
pub mod status;
pub mod telemetry;

pub use config::Config;
pub use error::{Error, Result};
pub use handler::{Handler, Outcome, Task};
pub use pool::run;
pub use tokio_util::sync::CancellationToken;

/// Installs ring as the process-wide rustls crypto provider (reqwest and kube
/// are built without a bundled one, to avoid the aws-lc C build). Idempotent.
pub fn install_crypto_provider() {
    let _ = rustls::crypto::ring::default_provider().install_default();
}
