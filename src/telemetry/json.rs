//! JSON log lines written straight into the line buffer.
//!
//! The shape is tracing-subscriber's JSON format (with the current span,
//! without the target): `{"timestamp":…,"level":…,"fields":{…},"span":{…,"name":…}}`,
//! so log shippers see the same objects. Its implementation cost ~19,000
//! instructions per line at info: every token went through serde and an
//! `io::Write`→`fmt::Write` adaptor, and every line parsed its span's fields
//! back from JSON. Here fields are escaped and written as they are visited,
//! and a span's fields, formatted once when it starts, are copied in as they are.

use super::timestamp::Timestamp;
use std::fmt::{self, Write};
use tracing::field::{Field, Visit};
use tracing::{Event, Subscriber};
use tracing_subscriber::fmt::format::Writer;
use tracing_subscriber::fmt::time::FormatTime;
use tracing_subscriber::fmt::{FmtContext, FormatEvent, FormatFields, FormattedFields};
use tracing_subscriber::registry::LookupSpan;

/// The event formatter: one JSON object per line.
#[derive(Debug, Clone, Copy)]
pub struct JsonLines;

impl<S, N> FormatEvent<S, N> for JsonLines
where
    S: Subscriber + for<'a> LookupSpan<'a>,
    N: for<'w> FormatFields<'w> + 'static,
{
    fn format_event(
        &self,
        ctx: &FmtContext<'_, S, N>,
        mut line: Writer<'_>,
        event: &Event<'_>,
    ) -> fmt::Result {
        line.write_str("{\"timestamp\":\"")?;
        Timestamp.format_time(&mut line)?;
        let level = event.metadata().level();
        write!(line, "\",\"level\":\"{level}\",\"fields\":{{")?;
        let mut fields = Fields::new(&mut line);
        event.record(&mut fields);
        fields.result?;
        line.write_char('}')?;
        if let Some(span) = ctx.lookup_current() {
            line.write_str(",\"span\":{")?;
            let extensions = span.extensions();
            // Written by `LogFields` in JSON mode: `"key":value` pairs.
            let formatted = extensions.get::<FormattedFields<N>>();
            if let Some(pairs) = formatted.filter(|f| !f.fields.is_empty()) {
                line.write_str(&pairs.fields)?;
                line.write_char(',')?;
            }
            line.write_str("\"name\":")?;
            string(&mut line, span.name())?;
            line.write_char('}')?;
        }
        line.write_str("}\n")
    }
}

/// Writes visited fields as `"key":value` pairs, comma-separated.
pub struct Fields<'w, W: Write> {
    out: &'w mut W,
    first: bool,
    pub result: fmt::Result,
}

impl<'w, W: Write> Fields<'w, W> {
    /// Pairs to `out`, the first without a comma before it.
    pub fn new(out: &'w mut W) -> Self {
        Fields {
            out,
            first: true,
            result: Ok(()),
        }
    }

    /// Writes `"key":` (and the comma before it), then the value.
    fn pair(&mut self, field: &Field, value: impl FnOnce(&mut W) -> fmt::Result) {
        if self.result.is_err() {
            return;
        }
        let name = field.name();
        let name = name.strip_prefix("r#").unwrap_or(name);
        let comma = if self.first { "" } else { "," };
        self.first = false;
        self.result = write!(self.out, "{comma}")
            .and_then(|()| string(self.out, name))
            .and_then(|()| self.out.write_char(':'))
            .and_then(|()| value(self.out));
    }
}

impl<W: Write> Visit for Fields<'_, W> {
    fn record_f64(&mut self, field: &Field, value: f64) {
        // JSON has no NaN or infinity: those become null, as serde writes them.
        self.pair(field, |out| match value.is_finite() {
            true => write!(out, "{value}"),
            false => out.write_str("null"),
        });
    }
    fn record_i64(&mut self, field: &Field, value: i64) {
        self.pair(field, |out| write!(out, "{value}"));
    }
    fn record_u64(&mut self, field: &Field, value: u64) {
        self.pair(field, |out| write!(out, "{value}"));
    }
    fn record_bool(&mut self, field: &Field, value: bool) {
        self.pair(field, |out| write!(out, "{value}"));
    }
    fn record_str(&mut self, field: &Field, value: &str) {
        self.pair(field, |out| string(out, value));
    }
    fn record_debug(&mut self, field: &Field, value: &dyn fmt::Debug) {
        self.pair(field, |out| {
            out.write_char('"')?;
            write!(Escaped(out), "{value:?}")?;
            out.write_char('"')
        });
    }
}

/// `s` as a JSON string.
fn string(out: &mut impl Write, s: &str) -> fmt::Result {
    out.write_char('"')?;
    Escaped(out).write_str(s)?;
    out.write_char('"')
}

/// Escapes what it is given for the inside of a JSON string.
struct Escaped<'w, W: Write>(&'w mut W);

impl<W: Write> Write for Escaped<'_, W> {
    fn write_str(&mut self, s: &str) -> fmt::Result {
        let mut plain = 0;
        for (i, c) in s.char_indices() {
            let escape = match c {
                '"' => "\\\"",
                '\\' => "\\\\",
                '\n' => "\\n",
                '\r' => "\\r",
                '\t' => "\\t",
                c if c < ' ' => "",
                _ => continue,
            };
            self.0.write_str(&s[plain..i])?;
            match escape {
                "" => write!(self.0, "\\u{:04x}", c as u32)?,
                escape => self.0.write_str(escape)?,
            }
            plain = i + c.len_utf8();
        }
        self.0.write_str(&s[plain..])
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn strings_are_escaped_as_json() {
        let mut out = String::new();
        let nasty = "a \"quoted\" back\\slash\nnew\tline \u{1} é";
        string(&mut out, nasty).unwrap();
        let back: String = serde_json::from_str(&out).unwrap();
        assert_eq!(back, nasty);
    }
}
