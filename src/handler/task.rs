//! One unit of work as a handler sees it: the body and its metadata.

use lapin::message::Delivery;
use lapin::types::{AMQPValue, FieldTable, ShortString};

use crate::headers::ATTEMPT as ATTEMPT_HEADER;

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
    /// The task a delivery carries. Takes the body out of `delivery` (no copy);
    /// the tag, acker and properties stay with the pool, which needs them to
    /// settle the delivery and to build retry and dead-letter copies.
    pub fn from_delivery(delivery: &mut Delivery, queue: &str) -> Task {
        let props = &delivery.properties;
        let text = |s: &Option<ShortString>| s.as_ref().map(ToString::to_string);
        let headers = props.headers().clone().unwrap_or_default();
        Task {
            body: std::mem::take(&mut delivery.data),
            attempt: attempt_from(&headers),
            headers,
            message_id: text(props.message_id()),
            correlation_id: text(props.correlation_id()),
            content_type: text(props.content_type()),
            redelivered: delivery.redelivered,
            queue: queue.to_owned(),
            routing_key: delivery.routing_key.to_string(),
        }
    }

    /// A short, printable form of the body for log lines (lossy, truncated).
    pub fn preview(&self) -> String {
        const MAX: usize = 120;
        let text = String::from_utf8_lossy(&self.body[..self.body.len().min(MAX)]);
        let ellipsis = if self.body.len() > MAX { "…" } else { "" };
        format!("'{}{ellipsis}'", text.escape_debug())
    }

    /// The application headers as a JSON object, for task code outside Rust
    /// (the exec handler's `WARREN_HEADERS`). Byte strings that are not
    /// UTF-8 are converted lossily; timestamps become seconds since the epoch.
    pub fn headers_json(&self) -> serde_json::Value {
        table_json(&self.headers)
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

/// AMQP headers as JSON (lossy for non-UTF-8 strings; timestamps as seconds).
pub fn table_json(table: &FieldTable) -> serde_json::Value {
    let map = table
        .inner()
        .iter()
        .map(|(k, v)| (k.to_string(), value_json(v)))
        .collect();
    serde_json::Value::Object(map)
}

fn value_json(value: &AMQPValue) -> serde_json::Value {
    use serde_json::{Value, json};
    let text = |bytes: &[u8]| Value::String(String::from_utf8_lossy(bytes).into_owned());
    match value {
        AMQPValue::Boolean(b) => json!(b),
        AMQPValue::ShortShortInt(n) => json!(n),
        AMQPValue::ShortShortUInt(n) => json!(n),
        AMQPValue::ShortInt(n) => json!(n),
        AMQPValue::ShortUInt(n) => json!(n),
        AMQPValue::LongInt(n) => json!(n),
        AMQPValue::LongUInt(n) => json!(n),
        AMQPValue::LongLongInt(n) => json!(n),
        AMQPValue::Timestamp(n) => json!(n),
        AMQPValue::Float(f) => json!(f),
        AMQPValue::Double(f) => json!(f),
        AMQPValue::DecimalValue(d) => json!(f64::from(d.value) / 10f64.powi(d.scale.into())),
        AMQPValue::ShortString(s) => json!(s.as_str()),
        AMQPValue::LongString(s) => text(s.as_bytes()),
        AMQPValue::ByteArray(b) => text(b.as_slice()),
        AMQPValue::FieldArray(a) => Value::Array(a.as_slice().iter().map(value_json).collect()),
        AMQPValue::FieldTable(t) => table_json(t),
        AMQPValue::Void => Value::Null,
    }
}

/// Reads the attempt number; a missing or malformed header means attempt 1,
/// never a crash (producers other than Warren may set anything).
pub fn attempt_from(headers: &FieldTable) -> u32 {
    let value = headers.inner().get(ATTEMPT_HEADER);
    let n: Option<i128> = match value {
        Some(AMQPValue::LongString(s)) => std::str::from_utf8(s.as_bytes())
            .ok()
            .and_then(|t| t.trim().parse().ok()),
        Some(AMQPValue::ShortString(s)) => s.as_str().trim().parse().ok(),
        Some(v) => crate::headers::integer(v).map(i128::from),
        None => None,
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
    fn headers_become_json() {
        let mut t = Task::for_test(Vec::new());
        t.headers
            .insert("name".into(), AMQPValue::LongString("ü".into()));
        t.headers.insert("n".into(), AMQPValue::LongLongInt(-3));
        t.headers
            .insert("raw".into(), AMQPValue::LongString(vec![b'a', 0xff].into()));
        let mut inner = FieldTable::default();
        inner.insert("ok".into(), AMQPValue::Boolean(true));
        t.headers
            .insert("nested".into(), AMQPValue::FieldTable(inner));
        assert_eq!(
            t.headers_json(),
            serde_json::json!({"name": "ü", "n": -3, "raw": "a\u{fffd}", "nested": {"ok": true}})
        );
        assert_eq!(
            Task::for_test(Vec::new()).headers_json(),
            serde_json::json!({})
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
