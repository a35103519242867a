//! The one error type of the library.
//!
//! Every variant a user can meet renders as one line that names the cause and
//! the fix (which key, which queue, which URL). URLs inside errors are always
//! redacted before they get here.

/// Library result alias.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Everything that can stop Warren from doing its job.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A configuration value is missing, malformed or out of range.
    /// `key` is the dotted YAML path; `origin` tells where the value came from.
    #[error("invalid configuration: {key}{origin}: {message}")]
    Config {
        key: String,
        origin: String,
        message: String,
    },

    /// The configuration file could not be read.
    #[error(
        "cannot read config file {path}: {source}; fix the path given with --config or WARREN_CONFIG"
    )]
    ConfigFile {
        path: String,
        #[source]
        source: std::io::Error,
    },

    /// The broker could not be reached or refused the connection.
    #[error("cannot connect to RabbitMQ at {url}: {reason}; {fix}")]
    Connect {
        url: String,
        reason: String,
        fix: String,
    },

    /// The queue exists with other properties than the ones Warren declares
    /// (AMQP 406 PRECONDITION_FAILED on queue.declare).
    #[error(
        "queue '{queue}' already exists with different settings: {conflict} (broker said: {broker}); \
         fix: use another queue name (--queue), delete the queue (rabbitmqctl delete_queue {queue}), \
         or set queue.declare: false (WARREN_QUEUE_DECLARE=false) to use it as it is"
    )]
    QueueMismatch {
        queue: String,
        conflict: String,
        broker: String,
    },

    /// `queue.declare: false` but the queue does not exist.
    #[error(
        "queue '{queue}' does not exist and queue.declare is false; declare it, or set queue.declare: true"
    )]
    QueueMissing { queue: String },

    /// The queue exists but cannot be used now: its home node (classic) or
    /// its majority (quorum) is down. Retried; never fatal.
    #[error(
        "queue '{queue}' is unavailable now (broker said: {broker}); a RabbitMQ node that holds it is down or \
         unreachable: Warren retries until it is back. If this lasts, check the cluster (rabbitmq-diagnostics cluster_status)"
    )]
    QueueUnavailable { queue: String, broker: String },

    /// A broker call did not answer in time (a frozen node, a network
    /// black hole); retried like a lost connection.
    #[error(
        "the broker did not answer {step} within {after} (amqp.connect_timeout); a node may be frozen or \
         unreachable: Warren reconnects, to another node when the URL list has one"
    )]
    Timeout { step: String, after: String },

    /// Some published messages were not confirmed by the broker.
    #[error(
        "{unconfirmed} of {total} messages were not confirmed by the broker ({detail}); they may not be stored: publish them again"
    )]
    Unconfirmed {
        unconfirmed: usize,
        total: usize,
        detail: String,
    },

    /// Any other AMQP failure, with what Warren was doing at the time.
    #[error("{context}: {source}")]
    Amqp {
        context: String,
        #[source]
        source: lapin::Error,
    },

    /// `warren dead`: the dead-letter queue is missing, is not one, or a
    /// pass over it had to stop.
    #[error("dead-letter queue '{queue}' {problem}; {fix}")]
    DeadQueue {
        queue: String,
        problem: String,
        fix: String,
    },

    /// A command-line value that no config key covers is invalid.
    #[error("invalid {flag}: {message}")]
    Usage { flag: String, message: String },

    /// Local I/O (reading a task file, stdin) failed.
    #[error("{context}: {source}")]
    Io {
        context: String,
        #[source]
        source: std::io::Error,
    },
}

impl Error {
    /// Wraps a lapin error with what we were doing.
    pub fn amqp(context: impl Into<String>, source: lapin::Error) -> Self {
        Error::Amqp {
            context: context.into(),
            source,
        }
    }

    /// A config error without origin information (validation of the merged value).
    pub fn config(key: impl Into<String>, message: impl Into<String>) -> Self {
        Error::Config {
            key: key.into(),
            origin: String::new(),
            message: message.into(),
        }
    }
}
