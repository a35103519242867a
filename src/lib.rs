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
//! - [`app`]: the composition root — starts the pool, the pollers, the
//!   pod-deletion-cost updater and (opt-in) the HTTP server side by side.
//! - [`config`]: YAML file + `WARREN_*` env + flags → a validated [`Config`].
//! - [`amqp`]: connecting (with password redaction), declaring the topology,
//!   publishing with confirms.
//! - [`pool`]: supervisor → workers → settle (ack / retry / dead-letter).
//! - [`handler`]: the [`Handler`] trait, [`Task`], [`Outcome`] and the built-in handlers.
//! - [`headers`]: the names of the `x-warren-*` AMQP headers.
//! - [`health`]: phase, readiness and the [`metrics`] every part reports into.
//! - [`server`]: /livez, /readyz and /metrics over the health.
//! - [`queue_depth`]: polled queue depths for the dashboard.
//! - [`pod_cost`]: this pod's pod-deletion-cost, so scale-down removes idle pods first.
//! - [`reaper`]: as PID 1, reaps orphaned processes without taking the exit
//!   statuses the exec handler waits for.
//! - [`redact`]: URL parsing and password redaction, used by every part that prints a URL.
//! - [`dead`]: `warren dead …`, the dead-letter queue for operators.
//! - [`status`]: the `warren status` queue report.
//! - [`shutdown`]: SIGTERM / ctrl-c → a [`CancellationToken`].
//! - [`telemetry`]: log output (text or JSON, through a writer that never
//!   blocks a task), task spans, OTLP traces.
//! - [`cli`]: the command-line surface used by the `warren` binary.
//!
//! Dependencies point one way: `app` and `cli` at the top; `pool`, `server`,
//! `queue_depth` and `pod_cost` in the middle, sharing only [`health`];
//! `config`, `amqp`, `handler`, `metrics` below them; `reaper` at the bottom.
//!
//! # The path of one delivery
//! `pool::supervisor` takes a free worker slot, then a delivery; it becomes a
//! [`Task`] (`Task::from_delivery`) and an unsettled delivery registered with
//! the ack batcher; `pool::worker` runs the handler in the task's span
//! (`telemetry::span::task`), frees the slot, and `pool::settle` acks, or
//! publishes a confirmed retry / dead-letter copy and then acks, or requeues.
//!
//! # Library use
//! Implement [`Handler`] and call [`run`] (no HTTP server) or
//! [`App::serve_http`] with your own shutdown token; see
//! `examples/custom_handler.rs`.

pub mod amqp;
pub mod app;
pub mod cli;
pub mod config;
mod crypto;
pub mod dead;
pub mod error;
pub mod handler;
pub mod headers;
pub mod health;
pub mod metrics;
pub mod pod_cost;
pub mod pool;
pub mod queue_depth;
pub mod reaper;
pub mod redact;
pub mod server;
pub mod shutdown;
pub mod status;
pub mod telemetry;

pub use app::{App, run};
pub use config::Config;
pub use crypto::install_crypto_provider;
pub use error::{Error, Result};
pub use handler::{Handler, Outcome, Task};
pub use health::Health;
pub use tokio_util::sync::CancellationToken;
