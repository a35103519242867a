//! Logs and traces.
//!
//! - Logs: filter from `WARREN_LOG` (or `RUST_LOG`), default `info,lapin=off`.
//!   Format from `WARREN_LOG_FORMAT` (`text` or `json`); by default JSON when
//!   stderr (where logs go) is not a terminal — one object per line for log
//!   shippers — and text on a terminal. stdout stays free for command output.
//!   Lines go through a bounded queue that a thread of its own writes
//!   ([`writer`]): logging never blocks a task; lines that do not fit are
//!   dropped, counted and reported. What a line shows: [`format`].
//! - Traces (cargo feature `otel`, on by default): exported over OTLP when the
//!   standard `OTEL_EXPORTER_OTLP_ENDPOINT` (or `…_TRACES_ENDPOINT`) is set,
//!   with `OTEL_SERVICE_NAME` (default `warren`) and
//!   `OTEL_EXPORTER_OTLP_PROTOCOL` (`http/protobuf` default, or `http/json`).
//!   Unset, no OpenTelemetry layer is installed at all: no cost.
//! - [`propagate`]: W3C `traceparent`/`tracestate` in AMQP headers.
//! - [`span`]: the span each task runs in.

pub mod format;
pub mod json;
pub mod propagate;
pub mod span;
pub mod timestamp;
pub mod writer;

use std::io::IsTerminal;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use tracing_appender::non_blocking::WorkerGuard;
use tracing_subscriber::EnvFilter;
use tracing_subscriber::filter::Targets;
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;

/// lapin logs every error it also returns to us; Warren reports those itself
/// with the cause and the fix, so lapin's own lines are off unless asked for
/// (`WARREN_LOG=info,lapin=debug`).
const DEFAULT_FILTER: &str = "info,lapin=off";

/// Set once traces are exported: only then does a task span carry the
/// OpenTelemetry attributes (building them costs every task).
static EXPORTING: AtomicBool = AtomicBool::new(false);

/// True when task spans carry the OpenTelemetry attributes: [`init`]
/// installed an OpenTelemetry layer, or [`set_exporting`] said so.
pub fn exporting() -> bool {
    EXPORTING.load(Ordering::Relaxed)
}

/// For programs that embed Warren and install their own OpenTelemetry
/// layer instead of calling [`init`]: task spans then carry the attributes.
pub fn set_exporting(on: bool) {
    EXPORTING.store(on, Ordering::Relaxed);
}

/// Keeps the log writer and the trace exporter alive;
/// [`Telemetry::shutdown`] flushes both.
#[must_use = "call shutdown() before exiting so buffered lines and spans are written"]
pub struct Telemetry {
    /// Dropping it writes the queued log lines; taken by whichever of
    /// `shutdown` and a `flusher` runs first.
    logs: Arc<Mutex<Option<WorkerGuard>>>,
    #[cfg(feature = "otel")]
    provider: Option<opentelemetry_sdk::trace::SdkTracerProvider>,
}

/// Installs the global subscriber: logs, plus OTLP traces when configured.
pub fn init() -> Telemetry {
    crate::crypto::install_crypto_provider();
    let filter = std::env::var("WARREN_LOG")
        .or_else(|_| std::env::var("RUST_LOG"))
        .unwrap_or_else(|_| DEFAULT_FILTER.into());
    let (targets, env_filter) = filters(&filter);
    let terminal = std::io::stderr().is_terminal();
    let json = match std::env::var("WARREN_LOG_FORMAT").as_deref() {
        Ok("json") => true,
        Ok("text") => false,
        _ => !terminal,
    };
    // Buffered on the writer thread: it drains every queued line, then
    // flushes (tracing-appender's worker), so a burst of lines costs one
    // write syscall, not one per line, and a quiet log is still written at once.
    let stderr = std::io::BufWriter::with_capacity(64 * 1024, std::io::stderr());
    let (lines, guard, dropped) = writer::non_blocking(stderr, json);
    crate::metrics::count_dropped_log_lines(move || dropped.dropped_lines() as u64);
    #[cfg_attr(not(feature = "otel"), allow(unused_mut))] // extended with the otel layer
    let mut layers = vec![format::layer(json, terminal, lines)];
    #[cfg(feature = "otel")]
    let (otel, provider) = otel::layer();
    #[cfg(feature = "otel")]
    {
        set_exporting(otel.is_some());
        layers.extend(otel);
    }
    tracing_subscriber::registry()
        .with(layers)
        .with(targets)
        .with(env_filter)
        .init();
    Telemetry {
        logs: Arc::new(Mutex::new(Some(guard))),
        #[cfg(feature = "otel")]
        provider,
    }
}

/// The log filter for `spec`: exactly one of the two is set. A list of
/// `target=level` directives (the default, and what nearly everyone writes)
/// becomes a [`Targets`] filter, decided once per call site. Only a spec that
/// needs [`EnvFilter`] (span or field directives, `[task{attempt=2}]=debug`)
/// gets it: it tracks every span's enter and exit, which a pool running
/// thousands of task spans a second pays for on every poll.
fn filters(spec: &str) -> (Option<Targets>, Option<EnvFilter>) {
    if !spec.contains('[')
        && let Ok(targets) = spec.parse::<Targets>()
    {
        return (Some(targets), None);
    }
    let env = EnvFilter::try_new(spec).unwrap_or_else(|_| EnvFilter::new(DEFAULT_FILTER));
    (None, Some(env))
}

impl Telemetry {
    /// A blocking function that writes the queued log lines, then exports
    /// the spans buffered so far, for an exit that cannot wait for
    /// [`Telemetry::shutdown`] (a second signal). Logs go first: exporting
    /// can wait on a slow collector, and the caller's time limit is short.
    pub fn flusher(&self) -> impl FnOnce() + Send + 'static {
        let logs = self.logs.clone();
        #[cfg(feature = "otel")]
        let provider = self.provider.clone();
        move || {
            flush_logs(&logs);
            #[cfg(feature = "otel")]
            if let Some(provider) = provider {
                if let Err(e) = provider.force_flush() {
                    eprintln!("warning: flushing traces failed: {e}");
                }
            }
        }
    }

    /// Flushes buffered spans, then the queued log lines (blocking; call
    /// once, at exit). Lines logged after this are dropped.
    pub fn shutdown(self) {
        #[cfg(feature = "otel")]
        if let Some(provider) = self.provider {
            if let Err(e) = provider.shutdown() {
                eprintln!("warning: flushing traces failed: {e}");
            }
        }
        flush_logs(&self.logs);
    }
}

/// Stops the log writer once it wrote what was queued (at most ~1 s on a
/// stalled reader, tracing-appender's limit).
fn flush_logs(logs: &Mutex<Option<WorkerGuard>>) {
    let guard = logs.lock().unwrap_or_else(|e| e.into_inner()).take();
    drop(guard);
}

#[cfg(feature = "otel")]
mod otel {
    use opentelemetry::trace::TracerProvider as _;
    use opentelemetry_sdk::Resource;
    use opentelemetry_sdk::trace::SdkTracerProvider;

    use super::format::BoxedLayer;

    /// The OpenTelemetry layer, or none when no OTLP endpoint is configured.
    pub fn layer() -> (Option<BoxedLayer>, Option<SdkTracerProvider>) {
        let configured = [
            "OTEL_EXPORTER_OTLP_ENDPOINT",
            "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT",
        ]
        .iter()
        .any(|k| std::env::var(k).is_ok_and(|v| !v.is_empty()));
        if !configured {
            return (None, None);
        }
        let exporter = match opentelemetry_otlp::SpanExporter::builder()
            .with_http()
            .build()
        {
            Ok(exporter) => exporter,
            Err(e) => {
                eprintln!("warning: OTLP trace export disabled: {e}; check OTEL_EXPORTER_OTLP_*");
                return (None, None);
            }
        };
        let mut resource = Resource::builder();
        if std::env::var("OTEL_SERVICE_NAME").is_err() {
            resource = resource.with_service_name("warren");
        }
        let provider = SdkTracerProvider::builder()
            .with_batch_exporter(exporter)
            .with_resource(resource.build())
            .build();
        opentelemetry::global::set_text_map_propagator(
            opentelemetry_sdk::propagation::TraceContextPropagator::new(),
        );
        let tracer = provider.tracer("warren");
        let layer = tracing_opentelemetry::layer().with_tracer(tracer);
        (Some(Box::new(layer)), Some(provider))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plain_target_lists_get_the_cheap_filter_and_span_directives_env_filter() {
        for spec in [DEFAULT_FILTER, "warn", "info,warren::pool=debug,lapin=off"] {
            let (targets, env) = filters(spec);
            assert!(targets.is_some() && env.is_none(), "{spec}");
        }
        let (targets, env) = filters("info,[task{attempt=2}]=debug");
        assert!(targets.is_none() && env.is_some());
        let (targets, env) = filters("[[not a filter");
        assert!(
            targets.is_none() && env.is_some(),
            "falls back to the default"
        );
    }
}
