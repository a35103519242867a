//! One dead letter as an operator sees it: why it died, when, and how often
//! it was tried. Read from the `x-warren-*` headers Warren writes when it
//! dead-letters a task, or, for a letter the broker dead-lettered itself (a
//! delivery limit, a policy's `x-dead-letter-exchange`), from `x-death`.

use crate::headers::{
    ATTEMPTS, FAILURE, FIRST_FAILURE, LAST_FAILURE, REASON, REPLAYED, REPLAYED_AT, WORKER, integer,
    now, seconds, text,
};
use lapin::protocol::BasicProperties;
use lapin::types::{AMQPValue, FieldTable};

/// Why a letter died, grouped for the `list` summary.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Category {
    /// Retried `retry.max_attempts` times and still failing.
    MaxAttempts,
    /// The handler (or Warren, for a bad delivery) rejected it outright.
    Rejected,
    /// Its body exceeded `pool.max_body_bytes`.
    TooLarge,
    /// Dead-lettered by the broker (`x-death`, no Warren reason).
    Broker,
    /// Neither Warren nor the broker recorded why.
    Other,
}

impl Category {
    pub const ALL: [Category; 5] = [
        Category::MaxAttempts,
        Category::Rejected,
        Category::TooLarge,
        Category::Broker,
        Category::Other,
    ];

    pub fn label(self) -> &'static str {
        match self {
            Category::MaxAttempts => "max attempts",
            Category::Rejected => "rejected",
            Category::TooLarge => "too large",
            Category::Broker => "broker dead-lettered",
            Category::Other => "other",
        }
    }
}

/// What the headers of one dead letter say.
#[derive(Debug, Clone, PartialEq)]
pub struct Letter {
    /// The producer's message id ("" when it set none).
    pub id: String,
    pub reason: String,
    pub category: Category,
    /// Attempts made (Warren's count, or the broker's `x-death` count).
    pub attempts: Option<i64>,
    /// Seconds since the epoch.
    pub first_failure: Option<u64>,
    pub last_failure: Option<u64>,
    /// The pod (host) whose worker dead-lettered it.
    pub worker: Option<String>,
    /// How often it was replayed before.
    pub replayed: i64,
}

impl Letter {
    /// Reads a dead letter's properties.
    pub fn read(props: &BasicProperties) -> Letter {
        let empty = FieldTable::default();
        let headers = props.headers().as_ref().unwrap_or(&empty);
        let get = |key: &str| headers.inner().get(key);
        let id = props
            .message_id()
            .as_ref()
            .map_or_else(String::new, ToString::to_string);
        let death = get("x-death").and_then(first_death);
        let (reason, category) = match get(REASON).and_then(text) {
            Some(reason) => {
                let category = classify(&reason);
                (reason, category)
            }
            None => match &death {
                Some(d) => (d.describe(), Category::Broker),
                None => (
                    "no reason recorded (neither Warren nor the broker dead-lettered it)".into(),
                    Category::Other,
                ),
            },
        };
        let death_time = death.as_ref().and_then(|d| d.time);
        Letter {
            id,
            reason,
            category,
            attempts: get(ATTEMPTS)
                .and_then(integer)
                .or_else(|| death.as_ref().and_then(|d| d.count)),
            first_failure: get(FIRST_FAILURE).and_then(seconds),
            last_failure: get(LAST_FAILURE).and_then(seconds).or(death_time),
            worker: get(WORKER).and_then(text),
            replayed: get(REPLAYED).and_then(integer).unwrap_or(0),
        }
    }

    /// Seconds since the last failure, if it is known.
    pub fn age(&self) -> Option<u64> {
        let now = now();
        self.last_failure.map(|t| now.saturating_sub(t))
    }
}

/// The category of a reason Warren wrote (see `pool::settle` and `pool::worker`).
fn classify(reason: &str) -> Category {
    if reason.starts_with("gave up after") {
        Category::MaxAttempts
    } else if reason.starts_with("too large") {
        Category::TooLarge
    } else {
        Category::Rejected
    }
}

/// The newest `x-death` entry (the broker puts it first).
struct Death {
    reason: String,
    queue: String,
    count: Option<i64>,
    time: Option<u64>,
}

impl Death {
    fn describe(&self) -> String {
        let times = self.count.map(|n| format!(", {n}×")).unwrap_or_default();
        format!(
            "broker: {} in '{}'{times} (x-death)",
            self.reason, self.queue
        )
    }
}

fn first_death(value: &AMQPValue) -> Option<Death> {
    let AMQPValue::FieldArray(entries) = value else {
        return None;
    };
    let AMQPValue::FieldTable(entry) = entries.as_slice().first()? else {
        return None;
    };
    let get = |key: &str| entry.inner().get(key);
    Some(Death {
        reason: get("reason").and_then(text).unwrap_or_else(|| "?".into()),
        queue: get("queue").and_then(text).unwrap_or_else(|| "?".into()),
        count: get("count").and_then(integer),
        time: get("time").and_then(seconds),
    })
}

/// The properties a replayed copy is published with: everything kept (message
/// id, correlation id, content type, headers, `traceparent`) except the
/// failure headers, so the attempt count starts again at 1; plus
/// `x-warren-replayed` (one more than before) and `x-warren-replayed-at`.
pub fn replay_properties(props: &BasicProperties) -> BasicProperties {
    let mut headers = props.headers().clone().unwrap_or_default();
    let before = headers.inner().get(REPLAYED).and_then(integer);
    let mut kept = FieldTable::default();
    for (key, value) in headers.inner() {
        if !FAILURE.contains(&key.as_str()) {
            kept.insert(key.clone(), value.clone());
        }
    }
    headers = kept;
    headers.insert(
        REPLAYED.into(),
        AMQPValue::LongLongInt(before.unwrap_or(0) + 1),
    );
    headers.insert(REPLAYED_AT.into(), AMQPValue::Timestamp(now()));
    props.clone().with_headers(headers)
}

#[cfg(test)]
mod tests;
