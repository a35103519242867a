//! Signals → cancellation. The library never installs signal handlers itself:
//! it takes a [`CancellationToken`], so tests and embedding programs decide
//! when to stop. The binary wires SIGTERM and ctrl-c to it here.

use std::time::Duration;
use tokio::signal::unix::{SignalKind, signal};
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

/// How long a second signal waits for `flush` before exiting anyway: whoever
/// sent it wants the process gone (Kubernetes SIGKILLs soon after).
const FLUSH_LIMIT: Duration = Duration::from_secs(2);

/// A token cancelled by the first SIGTERM or ctrl-c (graceful drain).
/// A second signal exits with 130 at once, after giving `flush` (writing the
/// queued log lines, exporting buffered traces) at most 2 s; the broker
/// requeues whatever was unacked.
pub fn on_signals(flush: impl FnOnce() + Send + 'static) -> std::io::Result<CancellationToken> {
    let token = CancellationToken::new();
    let mut term = signal(SignalKind::terminate())?;
    let mut int = signal(SignalKind::interrupt())?;
    let first = token.clone();
    tokio::spawn(async move {
        tokio::select! {
            _ = term.recv() => info!("SIGTERM: draining (send it again to exit at once)"),
            _ = int.recv() => info!("ctrl-c: draining (press it again to exit at once)"),
        }
        first.cancel();
        tokio::select! {
            _ = term.recv() => {},
            _ = int.recv() => {},
        }
        warn!("second signal: exiting now; the broker requeues every unacked task");
        flush_within(flush, FLUSH_LIMIT).await;
        std::process::exit(130);
    });
    Ok(token)
}

/// Runs the blocking `flush` on a thread of its own (the runtime's blocking
/// pool may be full) and waits for it at most `limit`.
async fn flush_within(flush: impl FnOnce() + Send + 'static, limit: Duration) -> bool {
    let (done, finished) = tokio::sync::oneshot::channel();
    let spawned = std::thread::Builder::new()
        .name("flush-on-exit".into())
        .spawn(move || {
            flush();
            let _ = done.send(());
        });
    spawned.is_ok() && matches!(tokio::time::timeout(limit, finished).await, Ok(Ok(())))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_slow_flush_is_abandoned_at_the_limit() {
        let started = std::time::Instant::now();
        let slow = || std::thread::sleep(Duration::from_secs(5));
        assert!(!flush_within(slow, Duration::from_millis(100)).await);
        assert!(started.elapsed() < Duration::from_secs(2));
        assert!(flush_within(|| {}, Duration::from_secs(1)).await);
    }
}
