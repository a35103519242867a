//! The AMQP headers Warren writes and reads, named once (docs/reliability.md
//! and docs/operations.md describe them for users).

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
