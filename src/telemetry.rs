//! Logging setup. Filter from `WARREN_LOG` (or `RUST_LOG`), default `info`;
//! `WARREN_LOG_FORMAT=json` for one JSON object per line (log shippers).

use tracing_subscriber::EnvFilter;

/// Installs the global subscriber, writing to stderr so stdout stays free
/// for command output (`publish`, `status`, `config check`).
pub fn init() {
    let filter = std::env::var("WARREN_LOG")
        .or_else(|_| std::env::var("RUST_LOG"))
        .unwrap_or_else(|_| "info".into());
    let filter = EnvFilter::try_new(&filter).unwrap_or_else(|_| EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_target(false)
        .with_writer(std::io::stderr);
    if std::env::var("WARREN_LOG_FORMAT").is_ok_and(|f| f == "json") {
        builder.json().init();
    } else {
        builder.init();
    }
}
