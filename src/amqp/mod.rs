//! Everything that speaks AMQP: connecting, declaring, publishing.
//!
//! The pool and the CLI commands use these functions; nothing else in the
//! crate builds AMQP frames. URL parsing and password redaction live in
//! [`redact`](crate::redact), which config and the handlers use too.

pub mod connect;
pub mod publish;
pub mod topology;

pub use connect::connect;

use crate::error::{Error, Result};
use std::time::Duration;

/// Runs one broker call with a deadline; a timeout is an error naming the
/// step (a frozen node, or a declare that waits for a frozen cluster member,
/// would otherwise hold the caller forever).
pub async fn within<T>(
    limit: Duration,
    step: &str,
    fut: impl Future<Output = Result<T>>,
) -> Result<T> {
    match tokio::time::timeout(limit, fut).await {
        Ok(result) => result,
        Err(_) => Err(Error::Timeout {
            step: step.to_owned(),
            after: crate::config::duration::format(&limit),
        }),
    }
}

/// Opens a channel within `limit`.
pub async fn open_channel(conn: &lapin::Connection, limit: Duration) -> Result<lapin::Channel> {
    within(limit, "opening a channel", async {
        conn.create_channel()
            .await
            .map_err(|e| Error::amqp("opening a channel", e))
    })
    .await
}

/// How long a close waits for the broker's close-ok. Closing is a courtesy:
/// a connection dropped without it is reset, and the broker requeues what
/// it had unacked all the same.
const CLOSE_LIMIT: Duration = Duration::from_secs(2);

/// Closes `conn`, giving up on the broker's close-ok after [`CLOSE_LIMIT`]:
/// a frozen node never sends one, and leaving it to the heartbeat (up to
/// twice `amqp.heartbeat`, a minute by default) would hold a reconnect or
/// an exit that long.
pub async fn close(conn: &lapin::Connection, reason: &str) -> Result<()> {
    within(CLOSE_LIMIT, "closing the connection", async {
        conn.close(200, reason.into())
            .await
            .map_err(|e| Error::amqp("closing the connection", e))
    })
    .await
}

/// Closes `channel` the same way.
pub async fn close_channel(channel: &lapin::Channel, reason: &str) {
    let _ = tokio::time::timeout(CLOSE_LIMIT, channel.close(200, reason.into())).await;
}
