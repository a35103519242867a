//! W3C trace context (`traceparent`, `tracestate`) carried in AMQP headers,
//! so a task's span is a child of the span that published it — whether the
//! producer is `warren publish`, a retry copy, or any client that sets the
//! header (pika: `properties.headers = {"traceparent": "00-<trace>-<span>-01"}`).

use lapin::types::FieldTable;

/// Writes the current span's context into `headers` (no-op without OTel).
pub fn inject(headers: &mut FieldTable) {
    #[cfg(feature = "otel")]
    {
        use tracing_opentelemetry::OpenTelemetrySpanExt;
        let context = tracing::Span::current().context();
        opentelemetry::global::get_text_map_propagator(|p| {
            p.inject_context(&context, &mut otel::Injector(headers));
        });
    }
    #[cfg(not(feature = "otel"))]
    let _ = headers;
}

/// Makes `span` a child of the context found in `headers`, if any.
pub fn adopt(span: &tracing::Span, headers: &FieldTable) {
    #[cfg(feature = "otel")]
    {
        use tracing_opentelemetry::OpenTelemetrySpanExt;
        if !headers.contains_key("traceparent") {
            return;
        }
        let parent = opentelemetry::global::get_text_map_propagator(|p| {
            p.extract(&otel::Extractor(headers))
        });
        let _ = span.set_parent(parent);
    }
    #[cfg(not(feature = "otel"))]
    let _ = (span, headers);
}

#[cfg(feature = "otel")]
mod otel {
    use lapin::types::{AMQPValue, FieldTable};
    use opentelemetry::propagation::{Extractor as Extract, Injector as Inject};

    pub struct Injector<'a>(pub &'a mut FieldTable);

    impl Inject for Injector<'_> {
        fn set(&mut self, key: &str, value: String) {
            self.0
                .insert(key.into(), AMQPValue::LongString(value.into()));
        }
    }

    pub struct Extractor<'a>(pub &'a FieldTable);

    impl Extract for Extractor<'_> {
        fn get(&self, key: &str) -> Option<&str> {
            match self.0.inner().get(key)? {
                AMQPValue::LongString(s) => std::str::from_utf8(s.as_bytes()).ok(),
                AMQPValue::ShortString(s) => Some(s.as_str()),
                _ => None,
            }
        }

        fn keys(&self) -> Vec<&str> {
            self.0.inner().keys().map(|k| k.as_str()).collect()
        }
    }
}
