//! Everything that speaks AMQP: connecting, declaring, publishing.
//!
//! The pool and the CLI commands use these functions; nothing else in the
//! crate builds AMQP frames. URL parsing and password redaction live in
//! [`redact`](crate::redact), which config and the handlers use too.

pub mod connect;
pub mod publish;
pub mod topology;

pub use connect::connect;
