//! Signals → cancellation. The library never installs signal handlers itself:
//! it takes a [`CancellationToken`], so tests and embedding programs decide
//! when to stop. The binary wires SIGTERM and ctrl-c to it here.

use tokio::signal::unix::{SignalKind, signal};
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

/// A token cancelled by the first SIGTERM or ctrl-c (graceful drain).
/// A second signal exits at once: the broker requeues whatever was unacked.
pub fn on_signals() -> std::io::Result<CancellationToken> {
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
        std::process::exit(130);
    });
    Ok(token)
}
