//! Warren's configuration: what a YAML file, `WARREN_*` env vars and flags can set.
//!
//! Every field has a default, so an empty file (or none) is a working config
//! that reproduces the RabbitMQ tutorial. Unknown keys are errors, not silently
//! ignored typos. Every key is defined once, in [`keys`]: flags, env names,
//! `config check` and the README table derive from that table. [`load`]
//! merges the three sources (flags win over env, env over the file) and runs
//! [`Config::validate`], which checks ranges with the key's name.

pub mod duration;
pub mod flags;
mod handler;
pub mod keys;
mod listing;
mod load;
mod prefetch;
mod urls;
mod validate;

pub use handler::{ExecConfig, HandlerConfig, HandlerKind, HttpConfig, SleepConfig};
pub use keys::{KEYS, Key};
pub use listing::{effective_yaml, keys_markdown, keys_text};
pub use load::{Layer, Loaded, Source, env_layers, load};
pub use prefetch::Prefetch;
pub use urls::BrokerUrls;

use serde::{Deserialize, Serialize};
use std::path::PathBuf;
use std::time::Duration;

/// The whole configuration. YAML keys are the field names.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    /// How to reach the broker.
    pub amqp: AmqpConfig,
    /// Which queue to consume and how it is declared.
    pub queue: QueueConfig,
    /// How many tasks run at once and how long they may take.
    pub pool: PoolConfig,
    /// What happens to tasks whose handler did not succeed.
    pub retry: RetryConfig,
    /// Which handler does the work.
    pub handler: HandlerConfig,
    /// The health and metrics HTTP server.
    pub server: ServerConfig,
    /// Kubernetes integration.
    pub kube: KubeConfig,
}

/// `amqp.frame_max` unless set: see [`AmqpConfig::frame_max`].
pub const FRAME_MAX_DEFAULT: u32 = 16 * 1024;

/// Broker connection settings.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AmqpConfig {
    /// AMQP URL, `amqp://user:password@host:port/vhost` (`amqps://` for TLS),
    /// or several: the nodes of a cluster, tried in a shuffled order. The
    /// password is redacted wherever Warren prints a URL.
    pub url: BrokerUrls,
    /// Heartbeat interval negotiated with the broker, so a dead network is noticed.
    #[serde(with = "duration::single")]
    pub heartbeat: Duration,
    /// The largest frame Warren offers the broker, in bytes. lapin keeps 32
    /// frames of read buffer and 32 of write buffer per connection, zeroed
    /// when the broker's larger value is accepted: RabbitMQ's 128 KiB makes
    /// that 8 MiB, the default 16 KiB makes it 1 MiB. Bodies above it are
    /// sent in several frames, which costs next to nothing.
    pub frame_max: u32,
    /// How long one connection attempt may take before it counts as failed
    /// (an unreachable host would otherwise hang on TCP retransmits).
    #[serde(with = "duration::single")]
    pub connect_timeout: Duration,
    /// How long a publish may wait for the broker's confirm; after it, the
    /// message counts as not stored (a quorum queue without a majority
    /// confirms nothing, and a worker must never wait forever).
    #[serde(with = "duration::single")]
    pub confirm_timeout: Duration,
    /// Optional RabbitMQ management API base URL (`http://user:pass@host:15672`);
    /// `warren status` uses it to show unacked counts, which AMQP cannot report.
    pub management_url: Option<String>,
    /// The broker's `consumer_timeout` (RabbitMQ closes a channel whose
    /// delivery stays unacked longer; 30 min by default since 3.8.17). Warren
    /// warns at startup when `pool.handler_timeout` is not below it.
    #[serde(with = "duration::single")]
    pub broker_consumer_timeout: Duration,
    /// Certificates for `amqps://` URLs: which CAs may sign the broker's
    /// certificate and, for mutual TLS, the client certificate Warren presents.
    pub tls: TlsConfig,
}

impl Default for AmqpConfig {
    fn default() -> Self {
        AmqpConfig {
            url: "amqp://guest:guest@127.0.0.1:5672/%2f".into(),
            heartbeat: Duration::from_secs(30),
            frame_max: FRAME_MAX_DEFAULT,
            connect_timeout: Duration::from_secs(10),
            confirm_timeout: Duration::from_secs(30),
            management_url: None,
            broker_consumer_timeout: Duration::from_secs(30 * 60),
            tls: TlsConfig::default(),
        }
    }
}

/// TLS for `amqps://` URLs. Setting any file with an `amqp://` URL is an
/// error: Warren never sends credentials in plaintext when TLS was asked for.
/// The files are read at every connect, so renewed certificates are picked
/// up on the next reconnect.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct TlsConfig {
    /// PEM bundle of the CA certificates that may sign the broker's certificate
    /// (a private CA), trusted in addition to the system roots. Unset: the
    /// system roots only (`SSL_CERT_FILE`/`SSL_CERT_DIR` are honoured).
    pub ca_file: Option<PathBuf>,
    /// PEM client certificate (leaf first, then any intermediates) for brokers
    /// that require mutual TLS; needs `key_file`.
    pub cert_file: Option<PathBuf>,
    /// PEM private key of `cert_file` (unencrypted PKCS#8, `BEGIN PRIVATE KEY`);
    /// needs `cert_file`. Only its path is ever printed.
    pub key_file: Option<PathBuf>,
}

/// RabbitMQ queue types Warren can declare.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum QueueType {
    /// The tutorial's durable classic queue.
    #[default]
    Classic,
    /// Replicated Raft queue; needs durable, supports a delivery limit.
    Quorum,
}

/// The work queue.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct QueueConfig {
    /// Queue name; producers publish to it through the default exchange.
    pub name: String,
    /// `classic` (default) or `quorum`; must match an existing queue.
    #[serde(rename = "type")]
    pub kind: QueueType,
    /// Declare the queue (durable). `false` uses an existing queue as it is,
    /// for queues owned by another team or declared with other arguments.
    pub declare: bool,
}

impl Default for QueueConfig {
    fn default() -> Self {
        QueueConfig {
            name: "task_queue".into(),
            kind: QueueType::Classic,
            declare: true,
        }
    }
}

/// Worker pool sizing and time limits.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct PoolConfig {
    /// Tasks processed at once by this process (async workers).
    pub concurrency: u32,
    /// basic_qos prefetch; `auto` starts at concurrency (fair dispatch
    /// across pods) and adapts to task and round-trip times; a number pins it.
    pub prefetch: Prefetch,
    /// The ceiling of adaptive prefetch: at most this many deliveries
    /// buffered (memory, and tasks other pods cannot take).
    pub prefetch_max: u32,
    /// A handler running longer than this is abandoned and the task retried.
    #[serde(with = "duration::single")]
    pub handler_timeout: Duration,
    /// On SIGTERM, how long in-flight tasks may take to finish before the
    /// connection closes (keep it below Kubernetes' terminationGracePeriodSeconds).
    #[serde(with = "duration::single")]
    pub shutdown_timeout: Duration,
    /// Bodies larger than this are dead-lettered ("too large") without
    /// calling the handler: a bounded worst case for memory and handlers.
    pub max_body_bytes: u64,
}

impl Default for PoolConfig {
    fn default() -> Self {
        PoolConfig {
            concurrency: 8,
            prefetch: Prefetch::Auto,
            prefetch_max: 1000,
            handler_timeout: Duration::from_secs(600),
            shutdown_timeout: Duration::from_secs(25),
            max_body_bytes: 64 * 1024 * 1024,
        }
    }
}

impl PoolConfig {
    /// The prefetch count a consumer starts with (`auto`: the concurrency).
    pub fn effective_prefetch(&self) -> u16 {
        let count = match self.prefetch {
            Prefetch::Auto => self.concurrency,
            Prefetch::Count(n) => n,
        };
        count.min(u32::from(u16::MAX)) as u16
    }
}

/// Retry and dead-letter policy.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RetryConfig {
    /// Attempts before a failing task is dead-lettered (1 = never retried).
    pub max_attempts: u32,
    /// Delay before attempt 2, 3, …; the last step repeats. One retry queue per step.
    #[serde(with = "duration::list")]
    pub backoff: Vec<Duration>,
    /// Where poison tasks go; default `<queue>.dead`.
    pub dead_letter_queue: Option<String>,
}

impl Default for RetryConfig {
    fn default() -> Self {
        RetryConfig {
            max_attempts: 5,
            backoff: [1, 10, 60, 600].map(Duration::from_secs).to_vec(),
            dead_letter_queue: None,
        }
    }
}

/// The health/metrics server.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ServerConfig {
    /// Address for /livez, /readyz and /metrics.
    pub listen: String,
    /// How often queue depths are polled (passive declare) for the
    /// `warren_queue_*` gauges.
    #[serde(with = "duration::single")]
    pub queue_poll_interval: Duration,
}

impl Default for ServerConfig {
    fn default() -> Self {
        ServerConfig {
            listen: "0.0.0.0:9090".into(),
            queue_poll_interval: Duration::from_secs(5),
        }
    }
}

/// Kubernetes integration (see `src/pod_cost.rs`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct KubeConfig {
    /// Keep this pod's `controller.kubernetes.io/pod-deletion-cost` at the
    /// bucket of its in-flight tasks (0 idle, then 1, 10, 100, …) so
    /// scale-down removes idle pods first. Needs POD_NAME/POD_NAMESPACE and
    /// RBAC `patch` on pods.
    pub pod_deletion_cost: bool,
    /// How often the cost is computed, from the peak in-flight count of
    /// the interval; the pod is patched only when the bucket changes.
    #[serde(with = "duration::single")]
    pub update_interval: Duration,
}

impl Default for KubeConfig {
    fn default() -> Self {
        KubeConfig {
            pod_deletion_cost: false,
            update_interval: Duration::from_secs(5),
        }
    }
}

impl Config {
    /// The dead-letter queue name (`<queue>.dead` unless configured).
    pub fn dead_letter_queue(&self) -> String {
        self.retry
            .dead_letter_queue
            .clone()
            .unwrap_or_else(|| format!("{}.dead", self.queue.name))
    }

    /// A copy safe to print: the AMQP and management passwords replaced by `***`.
    pub fn redacted(&self) -> Config {
        let mut copy = self.clone();
        copy.amqp.url = copy.amqp.url.redacted();
        copy.amqp.management_url = copy
            .amqp
            .management_url
            .as_deref()
            .map(crate::redact::redact_url);
        copy.handler.http = copy.handler.http.redacted();
        copy
    }
}

#[cfg(test)]
mod tests;
