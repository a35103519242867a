//! Merging the file, `WARREN_*` env vars and flags into one [`Config`].
//!
//! All three sources are merged as YAML values first and deserialized once,
//! so every bad value, wherever it came from, fails with the same message
//! naming its dotted key and its origin (the env var or the flag).

use super::Config;
use crate::error::{Error, Result};
use serde_yaml::{Mapping, Value};
use std::path::Path;

/// Where a value came from; shown in error messages.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Source {
    /// An environment variable, by name.
    Env(&'static str),
    /// A command-line flag, by name (`--concurrency`).
    Flag(&'static str),
}

/// One key settable from env and flags. `text` keys are taken verbatim
/// (a queue named "123" stays a string); others are parsed as YAML scalars.
struct Key {
    path: &'static str,
    env: &'static str,
    flag: &'static str,
    text: bool,
}

const fn key(path: &'static str, env: &'static str, flag: &'static str, text: bool) -> Key {
    Key {
        path,
        env,
        flag,
        text,
    }
}

/// Every env var and flag that maps onto a config key. Documented in README.md.
const KEYS: &[Key] = &[
    key("amqp.url", "WARREN_AMQP_URL", "--amqp-url", true),
    key(
        "amqp.heartbeat",
        "WARREN_AMQP_HEARTBEAT",
        "--heartbeat",
        true,
    ),
    key(
        "amqp.connect_timeout",
        "WARREN_AMQP_CONNECT_TIMEOUT",
        "--connect-timeout",
        true,
    ),
    key(
        "amqp.management_url",
        "WARREN_AMQP_MANAGEMENT_URL",
        "--management-url",
        true,
    ),
    key(
        "amqp.broker_consumer_timeout",
        "WARREN_AMQP_BROKER_CONSUMER_TIMEOUT",
        "--broker-consumer-timeout",
        true,
    ),
    key(
        "amqp.tls.ca_file",
        "WARREN_AMQP_TLS_CA_FILE",
        "--tls-ca-file",
        true,
    ),
    key(
        "amqp.tls.cert_file",
        "WARREN_AMQP_TLS_CERT_FILE",
        "--tls-cert-file",
        true,
    ),
    key(
        "amqp.tls.key_file",
        "WARREN_AMQP_TLS_KEY_FILE",
        "--tls-key-file",
        true,
    ),
    key("queue.name", "WARREN_QUEUE_NAME", "--queue", true),
    key("queue.type", "WARREN_QUEUE_TYPE", "--queue-type", true),
    key("queue.declare", "WARREN_QUEUE_DECLARE", "--declare", false),
    key(
        "pool.concurrency",
        "WARREN_POOL_CONCURRENCY",
        "--concurrency",
        false,
    ),
    key("pool.prefetch", "WARREN_POOL_PREFETCH", "--prefetch", false),
    key(
        "pool.handler_timeout",
        "WARREN_POOL_HANDLER_TIMEOUT",
        "--handler-timeout",
        true,
    ),
    key(
        "pool.shutdown_timeout",
        "WARREN_POOL_SHUTDOWN_TIMEOUT",
        "--shutdown-timeout",
        true,
    ),
    key(
        "retry.max_attempts",
        "WARREN_RETRY_MAX_ATTEMPTS",
        "--max-attempts",
        false,
    ),
    key("retry.backoff", "WARREN_RETRY_BACKOFF", "--backoff", true),
    key(
        "retry.dead_letter_queue",
        "WARREN_RETRY_DEAD_LETTER_QUEUE",
        "--dead-letter-queue",
        true,
    ),
    key(
        "pool.max_body_bytes",
        "WARREN_POOL_MAX_BODY_BYTES",
        "--max-body-bytes",
        false,
    ),
    key("handler.kind", "WARREN_HANDLER_KIND", "--handler", true),
    key(
        "handler.sleep.per_dot",
        "WARREN_HANDLER_SLEEP_PER_DOT",
        "--per-dot",
        true,
    ),
    key(
        "handler.http.url",
        "WARREN_HANDLER_HTTP_URL",
        "--http-url",
        true,
    ),
    key(
        "handler.http.timeout",
        "WARREN_HANDLER_HTTP_TIMEOUT",
        "--http-timeout",
        true,
    ),
    key(
        "handler.http.ready_url",
        "WARREN_HANDLER_HTTP_READY_URL",
        "--http-ready-url",
        true,
    ),
    key(
        "handler.exec.reject_exit_codes",
        "WARREN_HANDLER_EXEC_REJECT_EXIT_CODES",
        "--reject-exit-codes",
        false,
    ),
    key(
        "handler.exec.kill_grace",
        "WARREN_HANDLER_EXEC_KILL_GRACE",
        "--kill-grace",
        true,
    ),
    key("server.listen", "WARREN_SERVER_LISTEN", "--listen", true),
    key(
        "kube.pod_deletion_cost",
        "WARREN_KUBE_POD_DELETION_COST",
        "--pod-deletion-cost",
        false,
    ),
    key(
        "kube.update_interval",
        "WARREN_KUBE_UPDATE_INTERVAL",
        "--pod-deletion-cost-interval",
        true,
    ),
    key(
        "server.queue_poll_interval",
        "WARREN_SERVER_QUEUE_POLL_INTERVAL",
        "--queue-poll-interval",
        true,
    ),
];

/// Env vars Warren reads that are not config keys (not warned about).
const OTHER_ENV: &[&str] = &["WARREN_CONFIG", "WARREN_LOG", "WARREN_LOG_FORMAT"];

/// One override: the key, its value, and where it came from.
#[derive(Debug, Clone, PartialEq)]
pub struct Layer {
    path: &'static str,
    value: Value,
    source: Source,
}

/// Turns env vars and flags into overrides, env first so flags win.
/// `flags` pairs a flag name from the table (`--concurrency`) with its raw text;
/// `command` is the exec argv given after `--`.
pub fn parse_layers(
    env: impl IntoIterator<Item = (String, String)>,
    flags: &[(&str, String)],
    command: Option<Vec<String>>,
) -> (Vec<Layer>, Vec<String>) {
    let mut layers = Vec::new();
    let mut warnings = Vec::new();
    let mut env: Vec<(String, String)> = env.into_iter().collect();
    env.sort();
    for (name, raw) in env {
        if let Some(k) = KEYS.iter().find(|k| k.env == name) {
            layers.push(layer(k, &raw, Source::Env(k.env)));
        } else if name.starts_with("WARREN_")
            && !name.starts_with("WARREN_TEST_")
            && !OTHER_ENV.contains(&name.as_str())
        {
            warnings.push(format!(
                "ignoring unknown environment variable {name}; see README.md for the WARREN_* names"
            ));
        }
    }
    for (flag, raw) in flags {
        let k = KEYS
            .iter()
            .find(|k| k.flag == *flag)
            .unwrap_or_else(|| panic!("flag {flag} is missing from the config key table"));
        layers.push(layer(k, raw, Source::Flag(k.flag)));
    }
    if let Some(argv) = command {
        layers.push(Layer {
            path: "handler.exec.command",
            value: Value::Sequence(argv.into_iter().map(Value::String).collect()),
            source: Source::Flag("-- PROGRAM ARGS"),
        });
    }
    (layers, warnings)
}

fn layer(k: &Key, raw: &str, source: Source) -> Layer {
    let value = if k.text {
        Value::String(raw.to_owned())
    } else {
        serde_yaml::from_str::<Value>(raw).unwrap_or_else(|_| Value::String(raw.to_owned()))
    };
    Layer {
        path: k.path,
        value,
        source,
    }
}

/// Reads the optional file, applies the layers in order, and deserializes.
pub fn load(file: Option<&Path>, layers: &[Layer]) -> Result<Config> {
    let mut root = match file {
        Some(path) => read_file(path)?,
        None => Value::Mapping(Mapping::new()),
    };
    for l in layers {
        set_path(&mut root, l.path, l.value.clone());
    }
    serde_path_to_error::deserialize::<_, Config>(root).map_err(|e| {
        let key = e.path().to_string();
        let origin = match layers.iter().rev().find(|l| l.path == key) {
            Some(Layer {
                source: Source::Env(name) | Source::Flag(name),
                ..
            }) => format!(" (from {name})"),
            None => file
                .map(|p| format!(" (in {})", p.display()))
                .unwrap_or_default(),
        };
        Error::Config {
            key,
            origin,
            message: e.into_inner().to_string(),
        }
    })
}

fn read_file(path: &Path) -> Result<Value> {
    let text = std::fs::read_to_string(path).map_err(|source| Error::ConfigFile {
        path: path.display().to_string(),
        source,
    })?;
    match serde_yaml::from_str::<Value>(&text) {
        Ok(Value::Null) => Ok(Value::Mapping(Mapping::new())),
        Ok(v @ Value::Mapping(_)) => Ok(v),
        Ok(_) => Err(Error::Config {
            key: path.display().to_string(),
            origin: String::new(),
            message: "the file must be a YAML mapping (amqp:, queue:, pool:, …)".into(),
        }),
        Err(e) => Err(Error::Config {
            key: path.display().to_string(),
            origin: String::new(),
            message: format!("not valid YAML: {e}"),
        }),
    }
}

/// Sets `a.b.c` in a YAML tree, creating (or replacing non-mapping) parents.
fn set_path(root: &mut Value, path: &str, value: Value) {
    let mut node = root;
    let mut parts = path.split('.').peekable();
    while let Some(part) = parts.next() {
        if !node.is_mapping() {
            *node = Value::Mapping(Mapping::new());
        }
        let map = node.as_mapping_mut().expect("just made a mapping");
        let key = Value::String(part.to_owned());
        if parts.peek().is_none() {
            map.insert(key, value);
            return;
        }
        node = map.entry(key).or_insert(Value::Null);
    }
}
