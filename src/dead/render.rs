//! How `warren dead` prints letters: a summary and rows for people, one JSON
//! object per line for scripts, and export lines complete enough to publish
//! a message again exactly.

use super::letter::{Category, Letter};
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use lapin::protocol::BasicProperties;
use serde_json::{Value, json};
use std::fmt::Write;

/// Longest reason shown in a `list` row.
const REASON_WIDTH: usize = 60;
/// Longest body preview (characters).
const PREVIEW: usize = 40;

/// The `list` summary: the total and a count per category that occurs.
pub fn summary(queue: &str, by_category: &[usize; 5]) -> String {
    let total: usize = by_category.iter().sum();
    let mut out = format!("'{queue}': {total} dead letter(s)\n");
    for (category, n) in Category::ALL.iter().zip(by_category) {
        if *n > 0 {
            let _ = writeln!(out, "  {:<22}{n}", category.label());
        }
    }
    out
}

/// The header line of the `list` rows.
pub fn row_header() -> String {
    format!(
        "{:<40} {:>6} {:>8}  {:<REASON_WIDTH$}  BODY",
        "MESSAGE ID", "AGE", "ATTEMPTS", "REASON"
    )
}

/// One `list` row.
pub fn row(letter: &Letter, body: &[u8]) -> String {
    let id = if letter.id.is_empty() {
        "(no id)"
    } else {
        &letter.id
    };
    let attempts = letter.attempts.map_or("-".into(), |n| n.to_string());
    format!(
        "{id:<40} {:>6} {attempts:>8}  {:<REASON_WIDTH$}  {}",
        letter.age().map_or("-".into(), age),
        shorten(&letter.reason.replace('\n', " "), REASON_WIDTH),
        preview(body)
    )
}

/// A duration in seconds as `42s`, `5m`, `3h` or `2d`.
pub fn age(secs: u64) -> String {
    match secs {
        s if s < 60 => format!("{s}s"),
        s if s < 3600 => format!("{}m", s / 60),
        s if s < 86_400 => format!("{}h", s / 3600),
        s => format!("{}d", s / 86_400),
    }
}

/// `list --json`: what a script needs about one letter.
pub fn json_row(letter: &Letter, props: &BasicProperties, body: &[u8]) -> Value {
    let headers = props.headers().clone().unwrap_or_default();
    json!({
        "id": letter.id,
        "attempts": letter.attempts,
        "reason": letter.reason,
        "category": letter.category.label(),
        "first_failure": letter.first_failure.map(rfc3339),
        "last_failure": letter.last_failure.map(rfc3339),
        "worker": letter.worker,
        "replayed": letter.replayed,
        "headers": crate::handler::task::table_json(&headers),
        "body_preview": preview(body),
        "body_bytes": body.len(),
    })
}

/// `export`: the letter's summary fields plus its exact properties (typed
/// AMQP values, as lapin's own serde encoding writes them) and body (base64).
pub fn export_line(letter: &Letter, props: &BasicProperties, body: &[u8]) -> String {
    json!({
        "id": letter.id,
        "reason": letter.reason,
        "properties": props,
        "body_base64": BASE64.encode(body),
    })
    .to_string()
}

/// A message read back from an [`export_line`].
pub fn import_line(line: &str) -> Result<(BasicProperties, Vec<u8>), String> {
    let value: Value = serde_json::from_str(line).map_err(|e| e.to_string())?;
    let props = serde_json::from_value(value["properties"].clone()).map_err(|e| e.to_string())?;
    let body = value["body_base64"].as_str().ok_or("no body_base64")?;
    let body = BASE64.decode(body).map_err(|e| e.to_string())?;
    Ok((props, body))
}

/// `show`: every property and header, the reason, and the body.
pub fn show(letter: &Letter, props: &BasicProperties, body: &[u8]) -> String {
    let mut out = String::new();
    let attempts = letter.attempts.map_or("-".into(), |n| n.to_string());
    let reason = format!("{} ({})", letter.reason, letter.category.label());
    let times = [
        ("first failure", letter.first_failure),
        ("last failure", letter.last_failure),
    ];
    let times = times
        .iter()
        .filter_map(|(name, at)| Some((*name, rfc3339((*at)?))));
    let fields = [
        ("message id", letter.id.clone()),
        ("reason", reason),
        ("attempts", attempts),
    ];
    for (name, value) in fields.into_iter().chain(times) {
        let _ = writeln!(out, "{:<15}{value}", format!("{name}:"));
    }
    out.push_str("properties:\n");
    let mut fields = serde_json::to_value(props).unwrap_or(Value::Null);
    if let Some(map) = fields.as_object_mut() {
        map.remove("headers");
        map.retain(|_, v| !v.is_null());
        for (key, value) in map.iter() {
            let _ = writeln!(out, "  {key}: {value}");
        }
    }
    out.push_str("headers:\n");
    let headers = props.headers().clone().unwrap_or_default();
    if let Value::Object(map) = crate::handler::task::table_json(&headers) {
        for (key, value) in map {
            let _ = writeln!(out, "  {key}: {value}");
        }
    }
    out.push_str(&body_text(body));
    out
}

/// The body as text when it is UTF-8, else a hex dump (first 512 bytes)
/// and the whole body in base64, with its length either way.
fn body_text(body: &[u8]) -> String {
    match std::str::from_utf8(body) {
        Ok(text) => format!("body ({} bytes, UTF-8):\n{text}\n", body.len()),
        Err(_) => {
            let mut out = format!("body ({} bytes, not UTF-8):\n", body.len());
            for (i, chunk) in body.chunks(16).take(32).enumerate() {
                let hex: Vec<String> = chunk.iter().map(|b| format!("{b:02x}")).collect();
                let _ = writeln!(out, "  {:08x}  {}", i * 16, hex.join(" "));
            }
            if body.len() > 512 {
                out.push_str("  …\n");
            }
            let _ = writeln!(out, "base64:\n{}", BASE64.encode(body));
            out
        }
    }
}

/// A short, printable preview of a body.
pub fn preview(body: &[u8]) -> String {
    let text = String::from_utf8_lossy(&body[..body.len().min(PREVIEW * 4)]);
    format!("'{}'", shorten(&text.escape_debug().to_string(), PREVIEW))
}

fn shorten(text: &str, max: usize) -> String {
    match text.char_indices().nth(max) {
        None => text.to_owned(),
        Some((end, _)) => format!("{}…", &text[..end]),
    }
}

fn rfc3339(secs: u64) -> String {
    let at = std::time::UNIX_EPOCH + std::time::Duration::from_secs(secs);
    humantime::format_rfc3339_seconds(at).to_string()
}
