//! Logging setup. Filter from `WARREN_LOG` (or `RUST_LOG`), default `info,lapin=off`;
//! `WARREN_LOG_FORMAT=json` for one JSON object per line (log shippers).

use std::io::IsTerminal;
use tracing_subscriber::EnvFilter;

/// lapin logs every error it also returns to us; Warren reports those itself
/// with the cause and the fix, so lapin's own lines are off unless asked for
/// (`WARREN_LOG=info,lapin=debug`).
const DEFAULT_FILTER: &str = "info,lapin=off";

/// Installs the global subscriber, writing to stderr so stdout stays free
/// for command output (`publish`, `status`, `config check`).
pub fn init() {
    let filter = std::env::var("WARREN_LOG")
        .or_else(|_| std::env::var("RUST_LOG"))
        .unwrap_or_else(|_| DEFAULT_FILTER.into());
    let filter = EnvFilter::try_new(&filter).unwrap_or_else(|_| EnvFilter::new(DEFAULT_FILTER));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_target(false)
        .with_ansi(std::io::stderr().is_terminal())
        .with_writer(std::io::stderr);
    if std::env::var("WARREN_LOG_FORMAT").is_ok_and(|f| f == "json") {
        builder.json().init();
    } else {
        builder.init();
    }
}
