//! The `http` handler: each task is POSTed to an HTTP endpoint, typically a
//! sidecar container written in any language.
//!
//! The request uses CloudEvents' HTTP binary mode (the body as is, metadata
//! in `ce-*` headers), so existing CloudEvents receivers work unchanged. The
//! status decides the outcome: 2xx acks; 4xx (but 408 and 429) dead-letters,
//! because sending the same bytes again cannot help; 5xx, 408, 429,
//! connection errors and timeouts retry, no sooner than a `Retry-After`.
//! See docs/handlers.md for the full contract.

use super::{Handler, Outcome, Task};
use crate::config::HttpConfig;
use crate::error::{Error, Result};
use crate::redact::redact_url;
use reqwest::header::{CONTENT_TYPE, HeaderMap, HeaderName, HeaderValue, RETRY_AFTER};
use reqwest::{Client, Response, StatusCode, Url};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

/// How much of a response body is read (the rest is dropped with the connection).
const BODY_READ: usize = 64 * 1024;
/// How much of an error response's body goes into the failure reason.
const BODY_EXCERPT: usize = 1024;
/// A readiness check must answer quickly: probes that call it have short timeouts.
const READY_TIMEOUT: Duration = Duration::from_secs(2);

/// POSTs tasks to `handler.http.url`. Cheap to clone (the client is shared).
#[derive(Debug, Clone)]
pub struct HttpHandler {
    /// Keep-alive pool sized to the pool's concurrency.
    client: Client,
    /// Where to, behind an `Arc` so the handler stays small to move around.
    target: Arc<Target>,
}

#[derive(Debug)]
struct Target {
    url: Url,
    /// The URL with any password redacted, for reasons and logs.
    shown: String,
    ready_url: Option<Url>,
    timeout: Duration,
}

impl HttpHandler {
    /// A handler with up to `concurrency` idle keep-alive connections, one
    /// per worker, so steady load never reconnects. `config` is validated
    /// (see `Config::validate`): the URLs are only parsed here, and a
    /// missing one fails like an unparsable one.
    pub fn new(config: &HttpConfig, concurrency: u32) -> Result<Self> {
        let parse = |key: &str, url: &str| {
            Url::parse(url)
                .map_err(|e| Error::config(key, format!("'{}' is not a URL: {e}", redact_url(url))))
        };
        let raw = config.url.as_deref().unwrap_or_default();
        let url = parse("handler.http.url", raw)?;
        let ready_url = match &config.ready_url {
            Some(r) => Some(parse("handler.http.ready_url", r)?),
            None => None,
        };
        let client = Client::builder()
            .pool_max_idle_per_host(concurrency as usize)
            .timeout(config.timeout)
            // A sidecar is local: a proxy from HTTP_PROXY must not be used.
            .no_proxy()
            // A redirected POST would turn into a GET and lose the body.
            .redirect(reqwest::redirect::Policy::none())
            .user_agent(concat!("warren/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|e| {
                Error::config(
                    "handler.http",
                    format!("cannot set up the HTTP client: {}", chain(&e)),
                )
            })?;
        let target = Target {
            shown: redact_url(raw),
            url,
            ready_url,
            timeout: config.timeout,
        };
        Ok(HttpHandler {
            client,
            target: Arc::new(target),
        })
    }

    /// What a response means for the task.
    async fn outcome(&self, response: Response) -> Outcome {
        let status = response.status();
        let after = retry_after(response.headers(), SystemTime::now());
        let body = read_bounded(response).await;
        if status.is_success() {
            return Outcome::Ack;
        }
        let reason = describe_status(status, &body);
        match status.as_u16() {
            408 | 429 => Outcome::Retry { after, reason },
            400..=499 => Outcome::reject(reason),
            500..=599 => Outcome::Retry { after, reason },
            // 1xx/3xx: a misconfigured URL, not a bad task; keep retrying.
            _ => Outcome::retry(format!("{reason} (check handler.http.url)")),
        }
    }

    /// Why a request got no response.
    fn describe_error(&self, e: reqwest::Error) -> String {
        let shown = &self.target.shown;
        if e.is_timeout() {
            let limit = crate::config::duration::format(&self.target.timeout);
            format!("no response from {shown} within {limit} (handler.http.timeout)")
        } else {
            format!("POST {shown} failed: {}", chain(&e.without_url()))
        }
    }
}

impl Handler for HttpHandler {
    async fn handle(&self, task: &Task) -> Outcome {
        let request = self
            .client
            .post(self.target.url.clone())
            .headers(request_headers(task, SystemTime::now()))
            .body(task.body.clone());
        match request.send().await {
            Ok(response) => self.outcome(response).await,
            Err(e) => Outcome::retry(self.describe_error(e)),
        }
    }

    async fn ready(&self) -> std::result::Result<(), String> {
        let Some(url) = &self.target.ready_url else {
            return Ok(());
        };
        let shown = redact_url(url.as_str());
        let check = self
            .client
            .get(url.clone())
            .timeout(READY_TIMEOUT.min(self.target.timeout));
        match check.send().await {
            Ok(r) if r.status().is_success() => Ok(()),
            Ok(r) => Err(format!("{shown} answered {}", r.status())),
            Err(e) => Err(format!("{shown}: {}", chain(&e.without_url()))),
        }
    }
}

/// Content-Type from the message, CloudEvents binary-mode attributes, and
/// the attempt facts a receiver needs to be idempotent.
fn request_headers(task: &Task, now: SystemTime) -> HeaderMap {
    let value = |s: &str| HeaderValue::from_str(s).ok();
    let mut h = HeaderMap::new();
    let content_type = task.content_type.as_deref().and_then(value);
    h.insert(
        CONTENT_TYPE,
        content_type.unwrap_or(HeaderValue::from_static("application/octet-stream")),
    );
    let id = task
        .message_id
        .as_deref()
        .filter(|id| !id.is_empty())
        .and_then(value);
    let id = id.unwrap_or_else(|| {
        HeaderValue::from_str(&uuid::Uuid::new_v4().to_string()).expect("a uuid is ASCII")
    });
    h.insert(HeaderName::from_static("ce-id"), id);
    let source = format!("warren/{}", percent_encode(&task.queue));
    let time = humantime::format_rfc3339_millis(now).to_string();
    for (name, text) in [
        ("ce-specversion", "1.0".to_owned()),
        ("ce-type", "warren.task".to_owned()),
        ("ce-source", source),
        ("ce-time", time),
        ("x-warren-attempt", task.attempt.to_string()),
        ("x-warren-redelivered", task.redelivered.to_string()),
    ] {
        if let Some(v) = value(&text) {
            h.insert(HeaderName::from_static(name), v);
        }
    }
    if let Some(v) = task.correlation_id.as_deref().and_then(value) {
        h.insert(HeaderName::from_static("x-warren-correlation-id"), v);
    }
    h
}

/// Retry-After as delay-seconds or an HTTP date; a date in the past is 0.
fn retry_after(headers: &HeaderMap, now: SystemTime) -> Option<Duration> {
    let text = headers.get(RETRY_AFTER)?.to_str().ok()?.trim();
    if let Ok(secs) = text.parse::<u64>() {
        return Some(Duration::from_secs(secs));
    }
    let when = httpdate::parse_http_date(text).ok()?;
    Some(when.duration_since(now).unwrap_or(Duration::ZERO))
}

/// Reads at most [`BODY_READ`] bytes: a huge error page cannot cost memory.
/// A fully read body also lets the connection go back to the pool.
async fn read_bounded(mut response: Response) -> Vec<u8> {
    let mut body = Vec::new();
    while body.len() < BODY_READ {
        match response.chunk().await {
            Ok(Some(chunk)) => body.extend_from_slice(&chunk),
            _ => break,
        }
    }
    body
}

/// "HTTP 422 Unprocessable Entity: <start of the body>".
fn describe_status(status: StatusCode, body: &[u8]) -> String {
    let shown = &body[..body.len().min(BODY_EXCERPT)];
    let text = String::from_utf8_lossy(shown);
    let text = text.trim();
    let more = if body.len() > BODY_EXCERPT { "…" } else { "" };
    if text.is_empty() {
        format!("HTTP {status}")
    } else {
        format!("HTTP {status}: {text}{more}")
    }
}

/// An error and its causes on one line (reqwest's own text is terse).
fn chain(e: &dyn std::error::Error) -> String {
    let mut text = e.to_string();
    let mut cause = e.source();
    while let Some(c) = cause {
        text.push_str(": ");
        text.push_str(&c.to_string());
        cause = c.source();
    }
    text
}

/// A queue name made safe for a URI reference (CloudEvents `source`).
fn percent_encode(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for b in text.bytes() {
        if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retry_after_takes_seconds_and_dates() {
        let now = SystemTime::UNIX_EPOCH + Duration::from_secs(1_700_000_000);
        let mut h = HeaderMap::new();
        assert_eq!(retry_after(&h, now), None);
        h.insert(RETRY_AFTER, HeaderValue::from_static(" 7 "));
        assert_eq!(retry_after(&h, now), Some(Duration::from_secs(7)));
        let later = httpdate::fmt_http_date(now + Duration::from_secs(90));
        h.insert(RETRY_AFTER, HeaderValue::from_str(&later).unwrap());
        assert_eq!(retry_after(&h, now), Some(Duration::from_secs(90)));
        let past = httpdate::fmt_http_date(now - Duration::from_secs(90));
        h.insert(RETRY_AFTER, HeaderValue::from_str(&past).unwrap());
        assert_eq!(retry_after(&h, now), Some(Duration::ZERO));
        h.insert(RETRY_AFTER, HeaderValue::from_static("soon"));
        assert_eq!(retry_after(&h, now), None);
    }

    #[test]
    fn headers_follow_cloudevents_binary_mode() {
        let mut task = Task::for_test(b"x".to_vec());
        task.message_id = Some("m-1".into());
        task.queue = "jobs/eu west".into();
        task.attempt = 3;
        task.content_type = Some("application/json".into());
        let h = request_headers(&task, SystemTime::UNIX_EPOCH);
        let get = |n: &str| h.get(n).unwrap().to_str().unwrap().to_owned();
        assert_eq!(get("content-type"), "application/json");
        assert_eq!(get("ce-id"), "m-1");
        assert_eq!(get("ce-source"), "warren/jobs%2Feu%20west");
        assert_eq!(get("ce-type"), "warren.task");
        assert_eq!(get("ce-specversion"), "1.0");
        assert_eq!(get("ce-time"), "1970-01-01T00:00:00.000Z");
        assert_eq!(get("x-warren-attempt"), "3");
        assert_eq!(get("x-warren-redelivered"), "false");
        let bare = request_headers(&Task::for_test(Vec::new()), SystemTime::now());
        assert_eq!(bare["content-type"], "application/octet-stream");
        assert_eq!(bare["ce-id"].len(), 36, "a generated uuid");
    }

    #[test]
    fn status_reasons_are_bounded() {
        let long = vec![b'e'; 5000];
        let reason = describe_status(StatusCode::UNPROCESSABLE_ENTITY, &long);
        assert!(reason.starts_with("HTTP 422 Unprocessable Entity: eee"));
        assert!(reason.len() < BODY_EXCERPT + 50);
        assert_eq!(
            describe_status(StatusCode::BAD_GATEWAY, b" \n"),
            "HTTP 502 Bad Gateway"
        );
    }
}
