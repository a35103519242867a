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
    let result = warren::cli::run(cli, shutdown).await;
    // Flushing traces blocks on HTTP and the log writer on stderr: keep them
    // off the async workers, and before the error so it is the last line.
    let _ = tokio::task::spawn_blocking(move || telemetry.shutdown()).await;
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}
