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
use tracing_subscriber::fmt::format::{DefaultVisitor, JsonVisitor, Writer};
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
        .with_target(false)
        .with_ansi(ansi)
        .with_writer(writer);
    if json {
        let json = fmt.json().with_current_span(true).with_span_list(false);
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

/// Formats fields as text (`key=value`) or a JSON object, without the
/// trace-only ones.
#[derive(Debug, Clone, Copy)]
pub struct LogFields {
    json: bool,
}

impl<'w> FormatFields<'w> for LogFields {
    fn format_fields<R: RecordFields>(&self, mut writer: Writer<'w>, fields: R) -> fmt::Result {
        if self.json {
            let mut visitor = JsonVisitor::new(&mut writer);
            fields.record(&mut LogOnly(&mut visitor));
            visitor.finish()
        } else {
            let mut visitor = DefaultVisitor::new(writer, true);
            fields.record(&mut LogOnly(&mut visitor));
            visitor.finish()
        }
    }

    /// Fields recorded after a span started: appended (text) or merged into
    /// the span's object (JSON), skipping trace-only ones.
    fn add_fields(
        &self,
        current: &'w mut FormattedFields<Self>,
        fields: &tracing::span::Record<'_>,
    ) -> fmt::Result {
        let mut new = String::new();
        self.format_fields(Writer::new(&mut new), fields)?;
        if new.is_empty() || new == "{}" {
            return Ok(());
        }
        if current.fields.is_empty() {
            current.fields = new;
        } else if self.json {
            type Object = serde_json::Map<String, serde_json::Value>;
            let parse = |s: &str| serde_json::from_str::<Object>(s).map_err(|_| fmt::Error);
            let mut merged = parse(&current.fields)?;
            merged.extend(parse(&new)?);
            current.fields = serde_json::Value::Object(merged).to_string();
        } else {
            current.fields.push(' ');
            current.fields.push_str(&new);
        }
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
        let out = Arc::new(Mutex::new(Vec::new()));
        let sink = out.clone();
        let writer = move || Sink(sink.clone());
        let subscriber = tracing_subscriber::registry().with(layer(json, false, writer));
        tracing::subscriber::with_default(subscriber, emit);
        String::from_utf8(out.lock().unwrap().clone()).unwrap()
    }

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
}
