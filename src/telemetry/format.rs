//! How a log line looks: text on a terminal, one JSON object per line
//! elsewhere, and in both only the fields a reader of logs wants.
//!
//! Fields named `otel.*` and `messaging.*` are instructions to the trace
//! exporter and OpenTelemetry attributes: they describe the exported span
//! and would add ~250 characters to every line of a task. [`LogFields`]
//! leaves them out of the log, whatever the span carries.

use std::fmt;
use tracing::field::{Field, Visit};
use tracing_subscriber::field::{RecordFields, VisitOutput};
use tracing_subscriber::fmt::format::{DefaultVisitor, Writer};
use tracing_subscriber::fmt::{FormatFields, FormattedFields, MakeWriter};
use tracing_subscriber::{Layer, Registry};

/// A boxed layer over the registry, as the subscriber stack holds them.
pub type BoxedLayer = Box<dyn Layer<Registry> + Send + Sync>;

/// The fmt layer: text (`ansi` colours on a terminal) or JSON lines with
/// the current span's fields, written to `writer`.
pub fn layer<W>(json: bool, ansi: bool, writer: W) -> BoxedLayer
where
    W: for<'w> MakeWriter<'w> + Send + Sync + 'static,
{
    let fmt = tracing_subscriber::fmt::layer()
        .with_timer(super::timestamp::Timestamp)
        .with_target(false)
        .with_ansi(ansi)
        .with_writer(writer);
    if json {
        let json = fmt.event_format(super::json::JsonLines);
        Box::new(json.fmt_fields(LogFields { json: true }))
    } else {
        Box::new(fmt.fmt_fields(LogFields { json: false }))
    }
}

/// True for fields that belong to the exported span only.
fn trace_only(field: &Field) -> bool {
    let name = field.name();
    name.starts_with("otel.") || name.starts_with("messaging.")
}

/// Formats fields as text (`key=value`) or JSON (`"key":value` pairs, for
/// [`super::json::JsonLines`] to put in an object), without the trace-only ones.
#[derive(Debug, Clone, Copy)]
pub struct LogFields {
    json: bool,
}

impl<'w> FormatFields<'w> for LogFields {
    fn format_fields<R: RecordFields>(&self, mut writer: Writer<'w>, fields: R) -> fmt::Result {
        if self.json {
            let mut visitor = super::json::Fields::new(&mut writer);
            fields.record(&mut LogOnly(&mut visitor));
            visitor.result
        } else {
            let mut visitor = DefaultVisitor::new(writer, true);
            fields.record(&mut LogOnly(&mut visitor));
            visitor.finish()
        }
    }

    /// Fields recorded after a span started: appended, skipping trace-only ones.
    fn add_fields(
        &self,
        current: &'w mut FormattedFields<Self>,
        fields: &tracing::span::Record<'_>,
    ) -> fmt::Result {
        let mut new = String::new();
        self.format_fields(Writer::new(&mut new), fields)?;
        if !new.is_empty() && !current.fields.is_empty() {
            current.fields.push(if self.json { ',' } else { ' ' });
        }
        current.fields.push_str(&new);
        Ok(())
    }
}

/// Passes every field but the trace-only ones to the visitor inside.
struct LogOnly<'v, V>(&'v mut V);

impl<V: Visit> Visit for LogOnly<'_, V> {
    fn record_f64(&mut self, field: &Field, value: f64) {
        if !trace_only(field) {
            self.0.record_f64(field, value)
        }
    }
    fn record_i64(&mut self, field: &Field, value: i64) {
        if !trace_only(field) {
            self.0.record_i64(field, value)
        }
    }
    fn record_u64(&mut self, field: &Field, value: u64) {
        if !trace_only(field) {
            self.0.record_u64(field, value)
        }
    }
    fn record_bool(&mut self, field: &Field, value: bool) {
        if !trace_only(field) {
            self.0.record_bool(field, value)
        }
    }
    fn record_str(&mut self, field: &Field, value: &str) {
        if !trace_only(field) {
            self.0.record_str(field, value)
        }
    }
    fn record_error(&mut self, field: &Field, value: &(dyn std::error::Error + 'static)) {
        if !trace_only(field) {
            self.0.record_error(field, value)
        }
    }
    fn record_debug(&mut self, field: &Field, value: &dyn fmt::Debug) {
        if !trace_only(field) {
            self.0.record_debug(field, value)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::{Arc, Mutex};
    use tracing_subscriber::layer::SubscriberExt;

    /// The lines `emit` logs through [`layer`] in the given format.
    fn logged(json: bool, emit: impl FnOnce()) -> String {
        logged_by(|writer| layer(json, false, writer), emit)
    }

    /// The lines `emit` logs through the layer `make` builds.
    fn logged_by(make: impl FnOnce(Writes) -> BoxedLayer, emit: impl FnOnce()) -> String {
        let out = Arc::new(Mutex::new(Vec::new()));
        let sink = out.clone();
        let writer: Writes = Box::new(move || Sink(sink.clone()));
        let subscriber = tracing_subscriber::registry().with(make(writer));
        tracing::subscriber::with_default(subscriber, emit);
        String::from_utf8(out.lock().unwrap().clone()).unwrap()
    }

    type Writes = Box<dyn Fn() -> Sink + Send + Sync>;

    struct Sink(Arc<Mutex<Vec<u8>>>);

    impl std::io::Write for Sink {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(buf);
            Ok(buf.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    fn task_line() {
        let span = tracing::info_span!(
            "task",
            otel.name = "q process",
            otel.kind = tracing::field::Empty,
            messaging.system = "rabbitmq",
            id = %"3f2a9c1e",
            worker = 3,
            attempt = 1,
            late = tracing::field::Empty,
        );
        span.record("otel.kind", "consumer");
        span.record("late", true);
        span.in_scope(|| tracing::info!(" [x] Done"));
    }

    #[test]
    fn text_lines_show_the_task_not_its_trace_attributes() {
        let line = logged(false, task_line);
        assert!(
            line.contains("task{id=3f2a9c1e worker=3 attempt=1 late=true}:  [x] Done"),
            "{line}"
        );
        assert!(
            !line.contains("otel.") && !line.contains("messaging."),
            "{line}"
        );
    }

    #[test]
    fn json_lines_carry_the_span_fields_without_trace_attributes() {
        let line = logged(true, task_line);
        let v: serde_json::Value = serde_json::from_str(&line).unwrap();
        let span = v["span"].as_object().unwrap();
        let keys: Vec<&str> = span.keys().map(String::as_str).collect();
        assert_eq!(keys, ["attempt", "id", "late", "name", "worker"], "{line}");
        assert_eq!(v["fields"]["message"], " [x] Done");
    }

    #[test]
    fn json_lines_are_the_objects_tracing_subscriber_writes() {
        let emit = || {
            let span = tracing::info_span!("task", id = %"ab\"c", worker = 2_u64, n = -3_i64);
            span.in_scope(|| {
                let error = std::io::Error::other("boom");
                tracing::warn!(ok = true, ratio = 0.5, text = "a\nb", error = %error, "said \"hi\"");
            });
            tracing::info!(r#type = "raw", "outside");
        };
        let ours = logged(true, emit);
        let stock = logged_by(
            |writer| {
                let fmt = tracing_subscriber::fmt::layer()
                    .with_target(false)
                    .with_writer(writer);
                Box::new(fmt.json().with_current_span(true).with_span_list(false))
            },
            emit,
        );
        let objects = |text: &str| -> Vec<serde_json::Value> {
            let mut lines: Vec<serde_json::Value> = text
                .lines()
                .map(|l| serde_json::from_str(l).unwrap())
                .collect();
            for line in &mut lines {
                line.as_object_mut().unwrap().remove("timestamp").unwrap();
            }
            lines
        };
        assert_eq!(objects(&ours), objects(&stock), "{ours}\n{stock}");
    }
}
