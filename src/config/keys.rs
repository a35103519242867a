//! The one definition of every config key.
//!
//! A row here is all Warren knows about a key besides its struct field: the
//! env var (derived from the path), the flag and the commands that take it,
//! how the raw text of env and flags is read, and the doc line. clap's flags
//! ([`super::flags`]), the env layer ([`env_layers`](super::env_layers)), `warren config check`,
//! `warren config keys` and README.md's table are all generated from [`KEYS`];
//! defaults come from `Config::default()`, so they are not written twice.
//! Adding a key = a struct field (with its default) + one row.

use super::Config;
use serde_yaml::Value;

/// One config key.
#[derive(Debug, PartialEq, Eq)]
pub struct Key {
    /// Dotted YAML path (`pool.concurrency`).
    pub path: &'static str,
    /// How it is given on the command line.
    pub flag: Flag,
    /// Which commands take the flag.
    pub scope: Scope,
    /// The placeholder shown in `--help` (`N`, `DURATION`).
    pub value_name: &'static str,
    /// How env and flag text becomes a YAML value.
    pub form: Form,
    /// One line for `--help`, `warren config keys` and README.md.
    pub doc: &'static str,
}

/// The command-line form of a key.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Flag {
    /// `--name VALUE`.
    Long(&'static str),
    /// Everything after `--` (the exec program and its arguments), so argv
    /// needs no quoting.
    Trailing,
}

/// Which commands take a key's flag. Env vars and the file apply everywhere.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scope {
    /// Every command: connecting and the declared queues (publish and status
    /// declare or inspect the same topology as work).
    All,
    /// `warren work` and `warren config check` only.
    Work,
}

/// How the raw text of an env var or flag is read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Form {
    /// Taken as a string, so a queue named `123` stays a string.
    Text,
    /// Parsed as a YAML scalar (`3`, `true`, `auto`).
    Yaml,
    /// A YAML list (`[65, 78]`), or items separated by commas (`65,78`).
    List,
    /// Texts separated by commas, taken verbatim; the flag may be repeated
    /// (`--amqp-url A --amqp-url B` = `A,B`).
    Texts,
}

impl Key {
    /// The env var: `WARREN_` + the path upper-cased, `.` → `_`.
    pub fn env(&self) -> String {
        format!("WARREN_{}", self.path.to_uppercase().replace('.', "_"))
    }

    /// The flag as users type it: `--concurrency` or `-- PROGRAM ARGS`.
    pub fn flag_text(&self) -> String {
        match self.flag {
            Flag::Long(name) => format!("--{name}"),
            Flag::Trailing => format!("-- {}", self.value_name),
        }
    }

    /// Whether `warren <command>` takes this key's flag (`work_flags`: the
    /// command is work or config check).
    pub fn in_scope(&self, work_flags: bool) -> bool {
        work_flags || self.scope == Scope::All
    }

    /// The default, rendered as a user would write it.
    pub fn default_text(&self) -> String {
        let defaults = serde_yaml::to_value(Config::default()).expect("config serializes");
        lookup(&defaults, self.path).map_or_else(|| "?".into(), render)
    }
}

/// The key at a dotted path.
pub fn find(path: &str) -> Option<&'static Key> {
    KEYS.iter().find(|k| k.path == path)
}

/// The key whose flag is `--name`.
pub fn by_flag(flag: &str) -> Option<&'static Key> {
    let name = flag.strip_prefix("--")?;
    KEYS.iter()
        .find(|k| matches!(k.flag, Flag::Long(n) if n == name))
}

/// The key read from env var `name`.
pub fn by_env(name: &str) -> Option<&'static Key> {
    KEYS.iter().find(|k| k.env() == name)
}

/// The value at a dotted path of a YAML tree.
pub fn lookup<'v>(root: &'v Value, path: &str) -> Option<&'v Value> {
    path.split('.').try_fold(root, |node, part| node.get(part))
}

/// A leaf value on one line: `none`, `30s`, `[1s, 10s]`.
pub fn render(value: &Value) -> String {
    match value {
        Value::Null => "none".into(),
        Value::Bool(b) => b.to_string(),
        Value::Number(n) => n.to_string(),
        Value::String(s) => s.clone(),
        Value::Sequence(items) => {
            let items: Vec<String> = items.iter().map(render).collect();
            format!("[{}]", items.join(", "))
        }
        other => serde_yaml::to_string(other)
            .unwrap_or_default()
            .trim()
            .into(),
    }
}

/// Shorthand for a table row.
const fn key(
    path: &'static str,
    flag: &'static str,
    scope: Scope,
    value_name: &'static str,
    form: Form,
    doc: &'static str,
) -> Key {
    Key {
        path,
        flag: Flag::Long(flag),
        scope,
        value_name,
        form,
        doc,
    }
}

use Form::{List, Text, Texts, Yaml};
use Scope::{All, Work};

/// Every key, in the order `config check`, `--help` and README.md show them.
#[rustfmt::skip]
pub static KEYS: &[Key] = &[
    key("amqp.url", "amqp-url", All, "URL", Texts,
        "broker URL (`amqps://` for TLS), or the nodes of a cluster, comma-separated; passwords are redacted everywhere"),
    key("amqp.heartbeat", "heartbeat", All, "DURATION", Text,
        "heartbeat interval, so a dead network is noticed; `0s` disables heartbeats"),
    key("amqp.frame_max", "frame-max", All, "BYTES", Yaml,
        "largest AMQP frame offered (4096 to 1048576); lapin buffers 64 frames per connection, so it sets memory"),
    key("amqp.connect_timeout", "connect-timeout", All, "DURATION", Text,
        "limit per connection attempt (must be above 0)"),
    key("amqp.confirm_timeout", "confirm-timeout", All, "DURATION", Text,
        "how long a publish (retry and dead-letter copies, `warren publish`) waits for the broker's confirm"),
    key("amqp.broker_consumer_timeout", "broker-consumer-timeout", Work, "DURATION", Text,
        "the broker's `consumer_timeout`; startup warns if `pool.handler_timeout` is not below it"),
    key("amqp.management_url", "management-url", All, "URL", Text,
        "management API (`http://user:password@host:15672`), for unacked counts in `status`"),
    key("amqp.tls.ca_file", "tls-ca-file", All, "FILE", Text,
        "PEM CA bundle that signed the broker's certificate, trusted besides the system roots; needs `amqps://`"),
    key("amqp.tls.cert_file", "tls-cert-file", All, "FILE", Text,
        "PEM client certificate for mutual TLS; set with `key_file`"),
    key("amqp.tls.key_file", "tls-key-file", All, "FILE", Text,
        "PEM (unencrypted PKCS#8) key of `cert_file`; set with `cert_file`"),
    key("queue.name", "queue", All, "NAME", Text,
        "the work queue"),
    key("queue.type", "queue-type", All, "TYPE", Text,
        "`classic` or `quorum`"),
    key("queue.declare", "declare", All, "BOOL", Yaml,
        "`false`: use an existing queue as it is"),
    key("pool.concurrency", "concurrency", Work, "N", Yaml,
        "tasks processed at once (1..65535)"),
    key("pool.prefetch", "prefetch", Work, "N", Yaml,
        "basic_qos; `auto` starts at concurrency and adapts to task and round-trip times; a number (1..65535) pins it"),
    key("pool.prefetch_max", "prefetch-max", Work, "N", Yaml,
        "ceiling of `prefetch: auto` (concurrency..65535)"),
    key("pool.handler_timeout", "handler-timeout", Work, "DURATION", Text,
        "longer runs are abandoned and retried (must be above 0)"),
    key("pool.shutdown_timeout", "shutdown-timeout", Work, "DURATION", Text,
        "drain time after SIGTERM; `0s` requeues in-flight tasks at once"),
    key("pool.max_body_bytes", "max-body-bytes", Work, "BYTES", Yaml,
        "larger bodies are dead-lettered (\"too large\") without running the handler"),
    key("retry.max_attempts", "max-attempts", All, "N", Yaml,
        "attempts before dead-lettering (1 = never retried)"),
    key("retry.backoff", "backoff", All, "LIST", Text,
        "delay per retry (`1s,10s,1m`), one retry queue each; the last step repeats"),
    key("retry.dead_letter_queue", "dead-letter-queue", All, "NAME", Text,
        "where poison tasks go; none = `<queue>.dead`"),
    key("handler.kind", "handler", Work, "KIND", Text,
        "`sleep` (the tutorial), `exec` (a program per task) or `http` (a POST per task); see [docs/handlers.md](docs/handlers.md)"),
    key("handler.sleep.per_dot", "per-dot", Work, "DURATION", Text,
        "tutorial work time per `.` (`0s` is allowed)"),
    Key {
        path: "handler.exec.command",
        flag: Flag::Trailing,
        scope: Work,
        value_name: "PROGRAM ARGS",
        form: List,
        doc: "program run per task, no shell; body on stdin, metadata in `WARREN_*` env; checked at startup",
    },
    key("handler.exec.reject_exit_codes", "reject-exit-codes", Work, "CODES", List,
        "exit codes (1..255) that dead-letter at once (`65,78`); other non-zero codes retry"),
    key("handler.exec.kill_grace", "kill-grace", Work, "DURATION", Text,
        "SIGTERM → SIGKILL delay when a program's process group is ended (timeout, drain deadline)"),
    key("handler.http.url", "http-url", Work, "URL", Text,
        "endpoint each task is POSTed to (`http://` or `https://`)"),
    key("handler.http.timeout", "http-timeout", Work, "DURATION", Text,
        "per request; a timeout is retried (must be above 0)"),
    key("handler.http.ready_url", "http-ready-url", Work, "URL", Text,
        "optional; not ready until it answers 2xx"),
    key("server.listen", "listen", Work, "ADDR", Text,
        "/livez, /readyz, /metrics"),
    key("server.queue_poll_interval", "queue-poll-interval", Work, "DURATION", Text,
        "how often `warren_queue_*` gauges are refreshed (must be above 0)"),
    key("kube.pod_deletion_cost", "pod-deletion-cost", Work, "BOOL", Yaml,
        "set this pod's pod-deletion-cost from its in-flight tasks: 0 idle, then 1, 10, 100, … (needs POD_NAME, POD_NAMESPACE, RBAC patch)"),
    key("kube.update_interval", "pod-deletion-cost-interval", Work, "DURATION", Text,
        "how often the cost is recomputed (from the peak in-flight); a PATCH only when its bucket changes (must be above 0)"),
];

#[cfg(test)]
mod tests;
