//! Everything that speaks AMQP: connecting, declaring, publishing.
//!
//! The pool and the CLI commands use these functions; nothing else in the
//! crate builds AMQP frames or sees an unredacted URL.

pub mod connect;
pub mod publish;
pub mod redact;
pub mod topology;

pub use connect::connect;
