//! One unit of work as a handler sees it: the body and its metadata.

use lapin::types::{AMQPValue, FieldTable};

/// The header carrying the attempt number across retries (1 = first try).
pub const ATTEMPT_HEADER: &str = "x-warren-attempt";

/// A delivery's payload and metadata, independent of AMQP plumbing.
#[derive(Debug, Clone, Default)]
pub struct Task {
    /// The message body, byte-exact (may be empty or non-UTF-8).
    pub body: Vec<u8>,
    /// Application headers (AMQP `headers` property), empty when absent.
    pub headers: FieldTable,
    /// The producer's message id, if it set one.
    pub message_id: Option<String>,
    /// The producer's correlation id, if it set one.
    pub correlation_id: Option<String>,
    /// The content type the producer declared, if any.
    pub content_type: Option<String>,
    /// True when the broker delivered this before (a worker died or nacked):
    /// the task may have run already, so handlers should be idempotent.
    pub redelivered: bool,
    /// 1 on the first try; +1 per retry (from the `x-warren-attempt` header).
    pub attempt: u32,
    /// The queue it was consumed from.
    pub queue: String,
    /// The routing key it was published with.
    pub routing_key: String,
}

impl Task {
    /// A short, printable form of the body for log lines (lossy, truncated).
    pub fn preview(&self) -> String {
        const MAX: usize = 120;
        let text = String::from_utf8_lossy(&self.body[..self.body.len().min(MAX)]);
        let ellipsis = if self.body.len() > MAX { "…" } else { "" };
        format!("'{}{ellipsis}'", text.escape_debug())
    }

    /// A task with only a body, for handler unit tests.
    pub fn for_test(body: Vec<u8>) -> Task {
        Task {
            body,
            attempt: 1,
            ..Task::default()
        }
    }
}

/// Reads the attempt number; a missing or malformed header means attempt 1,
/// never a crash (producers other than Warren may set anything).
pub fn attempt_from(headers: &FieldTable) -> u32 {
    let value = headers.inner().get(ATTEMPT_HEADER);
    let n: Option<i128> = match value {
        Some(AMQPValue::ShortShortInt(v)) => Some((*v).into()),
        Some(AMQPValue::ShortShortUInt(v)) => Some((*v).into()),
        Some(AMQPValue::ShortInt(v)) => Some((*v).into()),
        Some(AMQPValue::ShortUInt(v)) => Some((*v).into()),
        Some(AMQPValue::LongInt(v)) => Some((*v).into()),
        Some(AMQPValue::LongUInt(v)) => Some((*v).into()),
        Some(AMQPValue::LongLongInt(v)) => Some((*v).into()),
        Some(AMQPValue::LongString(s)) => std::str::from_utf8(s.as_bytes())
            .ok()
            .and_then(|t| t.trim().parse().ok()),
        Some(AMQPValue::ShortString(s)) => s.as_str().trim().parse().ok(),
        _ => None,
    };
    match n {
        Some(n) if n >= 1 => u32::try_from(n).unwrap_or(u32::MAX),
        _ => 1,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn with(value: AMQPValue) -> FieldTable {
        let mut t = FieldTable::default();
        t.insert(ATTEMPT_HEADER.into(), value);
        t
    }

    #[test]
    fn attempt_header_is_forgiving() {
        assert_eq!(attempt_from(&FieldTable::default()), 1);
        assert_eq!(attempt_from(&with(AMQPValue::LongLongInt(3))), 3);
        assert_eq!(attempt_from(&with(AMQPValue::ShortShortUInt(2))), 2);
        assert_eq!(attempt_from(&with(AMQPValue::LongString("4".into()))), 4);
        assert_eq!(attempt_from(&with(AMQPValue::LongString("four".into()))), 1);
        assert_eq!(attempt_from(&with(AMQPValue::LongInt(-7))), 1);
        assert_eq!(attempt_from(&with(AMQPValue::LongLongInt(0))), 1);
        assert_eq!(attempt_from(&with(AMQPValue::Boolean(true))), 1);
        assert_eq!(
            attempt_from(&with(AMQPValue::LongLongInt(i64::MAX))),
            u32::MAX
        );
    }

    #[test]
    fn preview_is_printable_and_bounded() {
        let t = Task::for_test(b"First message.".to_vec());
        assert_eq!(t.preview(), "'First message.'");
        let t = Task::for_test(vec![b'.'; 500]);
        assert!(t.preview().chars().count() < 130);
        let t = Task::for_test(vec![0xff, b'\n']);
        assert_eq!(t.preview(), "'\u{fffd}\\n'");
    }
}
