//! The span each task runs in.
//!
//! One place decides its fields. Every log line of a task shows the short
//! fields: `id` (the last 8 characters of the message id: enough to tell
//! tasks apart and to search for; the end, because ids made of a prefix and
//! a counter — `warren publish`'s `<uuid>-<n>`, `order-000123` — differ
//! there, and a UUID is random at both ends), `worker` and `attempt` — the same in text
//! and JSON, so a line seen on a terminal is found by the same values in a
//! log shipper. The queue is not repeated: a process consumes one queue, and
//! says which when it starts.
//!
//! When traces are exported the span also carries the OpenTelemetry
//! messaging attributes (and a `traceparent` header makes it a child of the
//! publish); the log format leaves those out ([`super::format`]). Without an
//! exporter they are not built at all: no `format!` and no extra fields per task.

use lapin::types::FieldTable;
use tracing::{Span, info_span};

/// What the task span records about a task (borrowed from it).
pub struct TaskFields<'a> {
    pub queue: &'a str,
    pub message_id: Option<&'a str>,
    pub attempt: u32,
    pub redelivered: bool,
    /// Carries the producer's `traceparent`, if any.
    pub headers: &'a FieldTable,
}

/// Characters of the message id a log line shows.
const SHORT_ID: usize = 8;

/// The consumer span of one task on worker `worker`, continuing the trace
/// the task's headers carry (if any).
pub fn task(task: TaskFields<'_>, worker: usize) -> Span {
    let id = short_id(task.message_id);
    if !super::exporting() {
        return info_span!("task", id = %id, worker, attempt = task.attempt);
    }
    let queue = task.queue;
    let span = info_span!(
        "task",
        otel.name = %format!("{queue} process"),
        otel.kind = "consumer",
        messaging.system = "rabbitmq",
        messaging.operation = "process",
        messaging.destination.name = %queue,
        messaging.message.id = task.message_id.unwrap_or(""),
        id = %id,
        worker,
        attempt = task.attempt,
    );
    #[cfg(feature = "otel")]
    {
        // An attribute of the trace only: as a span field it would show in
        // every log line (only `otel.*`/`messaging.*` fields are left out).
        use tracing_opentelemetry::OpenTelemetrySpanExt;
        span.set_attribute("redelivered", task.redelivered);
    }
    super::propagate::adopt(&span, task.headers);
    span
}

/// The last [`SHORT_ID`] characters of the message id; `-` without one.
fn short_id(message_id: Option<&str>) -> &str {
    let Some(id) = message_id else { return "-" };
    match id.char_indices().rev().nth(SHORT_ID - 1) {
        Some((start, _)) => &id[start..],
        None => id,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn short_ids_keep_the_last_eight_characters() {
        let uuid = "3f2a9c1e-77b0-4c55-9d1e-0a1b2c3d4e5f";
        assert_eq!(short_id(Some(uuid)), "2c3d4e5f");
        assert_eq!(short_id(Some(&format!("{uuid}-17"))), "d4e5f-17");
        assert_eq!(short_id(Some("pika-1")), "pika-1");
        assert_eq!(short_id(Some("12345678")), "12345678");
        assert_eq!(short_id(Some("aéééééééé")), "éééééééé");
        assert_eq!(short_id(None), "-");
    }
}
