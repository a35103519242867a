//! The AMQP headers Warren writes and reads, named once (docs/reliability.md
//! and docs/operations.md describe them for users), and the readers of their
//! values: producers other than Warren pick whichever AMQP type they like.

use lapin::types::AMQPValue;
use std::time::{SystemTime, UNIX_EPOCH};

/// The attempt number across retries (1 = first try; absent = 1).
pub const ATTEMPT: &str = "x-warren-attempt";
/// When the task first failed (timestamp), kept across retries.
pub const FIRST_FAILURE: &str = "x-warren-first-failure";
/// The last error, on a retry copy.
pub const LAST_ERROR: &str = "x-warren-last-error";
/// Why a dead letter died.
pub const REASON: &str = "x-warren-reason";
/// Attempts made, on a dead letter.
pub const ATTEMPTS: &str = "x-warren-attempts";
/// When a dead letter's last attempt failed (timestamp).
pub const LAST_FAILURE: &str = "x-warren-last-failure";
/// The host (pod) whose worker dead-lettered it.
pub const WORKER: &str = "x-warren-worker";
/// The queue and routing key the task was consumed with.
pub const ORIGINAL_QUEUE: &str = "x-warren-original-queue";
pub const ORIGINAL_ROUTING_KEY: &str = "x-warren-original-routing-key";
/// How often `warren dead replay` sent this task back (absent = never).
pub const REPLAYED: &str = "x-warren-replayed";
/// When the last replay sent it back (timestamp).
pub const REPLAYED_AT: &str = "x-warren-replayed-at";

/// Headers that describe a past failure. A replay drops them, so the task
/// starts again at attempt 1 and a new failure is recorded afresh.
pub const FAILURE: &[&str] = &[
    ATTEMPT,
    FIRST_FAILURE,
    LAST_ERROR,
    REASON,
    ATTEMPTS,
    LAST_FAILURE,
    WORKER,
    ORIGINAL_QUEUE,
    ORIGINAL_ROUTING_KEY,
];

/// A header value of any AMQP integer type (not a timestamp) as an i64.
pub fn integer(value: &AMQPValue) -> Option<i64> {
    Some(match *value {
        AMQPValue::ShortShortInt(n) => n.into(),
        AMQPValue::ShortShortUInt(n) => n.into(),
        AMQPValue::ShortInt(n) => n.into(),
        AMQPValue::ShortUInt(n) => n.into(),
        AMQPValue::LongInt(n) => n.into(),
        AMQPValue::LongUInt(n) => n.into(),
        AMQPValue::LongLongInt(n) => n,
        _ => return None,
    })
}

/// A time header (an AMQP timestamp, or an integer) as seconds since the epoch.
pub fn seconds(value: &AMQPValue) -> Option<u64> {
    match *value {
        AMQPValue::Timestamp(n) => Some(n),
        _ => integer(value).and_then(|n| u64::try_from(n).ok()),
    }
}

/// A string header as text (AMQP strings are bytes; shown lossily).
pub fn text(value: &AMQPValue) -> Option<String> {
    match value {
        AMQPValue::LongString(s) => Some(String::from_utf8_lossy(s.as_bytes()).into_owned()),
        AMQPValue::ShortString(s) => Some(s.to_string()),
        _ => None,
    }
}

/// Now, as the AMQP timestamp Warren writes (seconds since the epoch).
pub fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}
