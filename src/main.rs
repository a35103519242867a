//! The `warren` binary: parse the command line, start logging, wire signals
//! to a cancellation token, and hand over to the library.

use clap::Parser;
use std::process::ExitCode;

#[tokio::main]
async fn main() -> ExitCode {
    warren::install_crypto_provider();
    let cli = warren::cli::Cli::parse();
    let telemetry = warren::telemetry::init();
    let shutdown = match warren::shutdown::on_signals(telemetry.flusher()) {
        Ok(token) => token,
        Err(e) => {
            eprintln!("error: cannot install signal handlers: {e}");
            return ExitCode::FAILURE;
        }
    };
    let code = match warren::cli::run(cli, shutdown).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    };
    // Flushing traces blocks on HTTP: keep it off the async workers.
    let _ = tokio::task::spawn_blocking(move || telemetry.shutdown()).await;
    code
}
