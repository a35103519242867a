//! The span each task runs in.
//!
//! One place decides its fields: the OpenTelemetry messaging attributes an
//! exported trace needs, and the short fields (worker, attempt) log lines
//! show. A producer's `traceparent` header makes it a child of the publish.

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

/// The consumer span of one task on worker `worker`, continuing the trace
/// the task's headers carry (if any).
pub fn task(task: TaskFields<'_>, worker: usize) -> Span {
    let queue = task.queue;
    let span = info_span!(
        "task",
        otel.name = %format!("{queue} process"),
        otel.kind = "consumer",
        messaging.system = "rabbitmq",
        messaging.operation = "process",
        messaging.destination.name = %queue,
        messaging.message.id = task.message_id.unwrap_or(""),
        worker,
        attempt = task.attempt,
        redelivered = task.redelivered
    );
    super::propagate::adopt(&span, task.headers);
    span
}
