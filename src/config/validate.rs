//! [`Config::validate`]: ranges and combinations, each error naming the key
//! and the fix. [`load`](fn@super::load) runs it, so code that gets a config
//! from there trusts it and checks nothing again; library users who build a
//! `Config` by hand call it once (the pool's entry point does).
//!
//! Zero durations, per key: a zero *interval* or *limit* would panic
//! (`tokio::time::interval`) or make every task fail, so it is an error;
//! a zero *delay* or *grace* means "at once" and is allowed
//! (`amqp.heartbeat` off, `pool.shutdown_timeout` no drain time,
//! `handler.sleep.per_dot` for benchmarks, `handler.exec.kill_grace`
//! SIGKILL at once, a `retry.backoff` step of `0s` an immediate retry).

use super::{Config, HandlerKind, Prefetch, duration};
use crate::error::{Error, Result};
use std::time::Duration;

impl Config {
    /// Checks ranges and combinations; returns warnings for legal but doubtful values.
    pub fn validate(&self) -> Result<Vec<String>> {
        self.validate_urls()?;
        if self.queue.name.is_empty() || self.queue.name.len() > 255 {
            return Err(Error::config(
                "queue.name",
                "must be 1 to 255 bytes long (set --queue or WARREN_QUEUE_NAME)",
            ));
        }
        let mut warnings = self.validate_pool()?;
        self.validate_intervals()?;
        self.validate_optional_texts()?;
        self.validate_tls()?;
        self.validate_retry()?;
        self.validate_handler()?;
        if self.server.listen.parse::<std::net::SocketAddr>().is_err() {
            return Err(Error::config(
                "server.listen",
                format!(
                    "'{}' is not an address like 0.0.0.0:9090",
                    self.server.listen
                ),
            ));
        }
        warnings.extend(self.consumer_timeout_warning());
        Ok(warnings)
    }

    fn validate_pool(&self) -> Result<Vec<String>> {
        let mut warnings = Vec::new();
        let pool = &self.pool;
        if pool.concurrency == 0 || pool.concurrency > u32::from(u16::MAX) {
            return Err(Error::config(
                "pool.concurrency",
                format!(
                    "must be between 1 and 65535, got {}; set --concurrency or WARREN_POOL_CONCURRENCY",
                    pool.concurrency
                ),
            ));
        }
        if let Prefetch::Count(n) = pool.prefetch {
            if n == 0 || n > u32::from(u16::MAX) {
                return Err(Error::config(
                    "pool.prefetch",
                    format!(
                        "must be between 1 and 65535 (AMQP basic.qos is 16-bit) or auto, got {n}"
                    ),
                ));
            }
            if n < pool.concurrency {
                warnings.push(format!(
                    "pool.prefetch ({n}) is below pool.concurrency ({}): only {n} workers can ever be busy; \
                     use prefetch: auto or at least the concurrency",
                    pool.concurrency
                ));
            }
        }
        if pool.prefetch_max == 0 || pool.prefetch_max > u32::from(u16::MAX) {
            return Err(Error::config(
                "pool.prefetch_max",
                format!(
                    "must be between pool.concurrency and 65535 (AMQP basic.qos is 16-bit), got {}",
                    pool.prefetch_max
                ),
            ));
        }
        if pool.prefetch == Prefetch::Auto && pool.prefetch_max < pool.concurrency {
            return Err(Error::config(
                "pool.prefetch_max",
                format!(
                    "{} is below pool.concurrency ({}): adaptive prefetch never goes below the concurrency; \
                     raise pool.prefetch_max (--prefetch-max) to at least {} or pin pool.prefetch",
                    pool.prefetch_max, pool.concurrency, pool.concurrency
                ),
            ));
        }
        if pool.max_body_bytes == 0 {
            return Err(Error::config(
                "pool.max_body_bytes",
                "must be greater than 0",
            ));
        }
        Ok(warnings)
    }

    /// Limits and polling intervals that must not be zero (see the module docs).
    fn validate_intervals(&self) -> Result<()> {
        let nonzero: [(&str, Duration); 6] = [
            ("pool.handler_timeout", self.pool.handler_timeout),
            ("amqp.connect_timeout", self.amqp.connect_timeout),
            ("amqp.confirm_timeout", self.amqp.confirm_timeout),
            (
                "amqp.broker_consumer_timeout",
                self.amqp.broker_consumer_timeout,
            ),
            (
                "server.queue_poll_interval",
                self.server.queue_poll_interval,
            ),
            ("kube.update_interval", self.kube.update_interval),
        ];
        if let Some((key, _)) = nonzero.iter().find(|(_, value)| value.is_zero()) {
            let default = super::keys::find(key).map(|k| k.default_text());
            return Err(Error::config(
                *key,
                format!(
                    "must be greater than 0 (the default is {})",
                    default.unwrap_or_default()
                ),
            ));
        }
        if !(4096..=1 << 20).contains(&self.amqp.frame_max) {
            return Err(Error::config(
                "amqp.frame_max",
                format!(
                    "is {}; it must be 4096 (AMQP's smallest frame) to 1048576 bytes \
                     (lapin keeps 64 frames of buffer per connection); the default is {}",
                    self.amqp.frame_max,
                    super::FRAME_MAX_DEFAULT
                ),
            ));
        }
        if self.amqp.heartbeat.as_secs() > u64::from(u16::MAX) {
            return Err(Error::config(
                "amqp.heartbeat",
                "must be at most 65535s (0 disables heartbeats)",
            ));
        }
        Ok(())
    }

    /// An optional name or URL set to "" would name a server-generated
    /// queue or an unusable URL; unset is how to ask for the default.
    fn validate_optional_texts(&self) -> Result<()> {
        let optional = [
            ("retry.dead_letter_queue", &self.retry.dead_letter_queue),
            ("amqp.management_url", &self.amqp.management_url),
        ];
        match optional.iter().find(|(_, v)| v.as_deref() == Some("")) {
            Some((key, _)) => Err(Error::config(
                *key,
                "is empty; remove the key (or the variable) to use the default",
            )),
            None => Ok(()),
        }
    }

    /// The broker's consumer_timeout closes the channel under a handler
    /// that may legally run longer.
    fn consumer_timeout_warning(&self) -> Option<String> {
        let (handler, broker) = (self.pool.handler_timeout, self.amqp.broker_consumer_timeout);
        (handler >= broker).then(|| {
            format!(
                "pool.handler_timeout ({}) is not below the broker's consumer_timeout ({}, amqp.broker_consumer_timeout): \
                 RabbitMQ will close the channel under a long task and redeliver it; lower the handler timeout or raise consumer_timeout on the broker",
                duration::format(&handler),
                duration::format(&broker)
            )
        })
    }

    /// Client certificate and key come together; TLS files need an `amqps://`
    /// URL (never a silent downgrade); every file given must be readable.
    /// Every URL parses, and all use one scheme: TLS settings apply to every
    /// node, and a cluster reached partly in plaintext would leak the password.
    fn validate_urls(&self) -> Result<lapin::uri::AMQPScheme> {
        let urls = &self.amqp.url;
        let mut schemes = Vec::new();
        for url in urls.iter() {
            schemes.push(crate::redact::parse_amqp_url(url)?.scheme);
        }
        let Some(first) = schemes.first().cloned() else {
            return Err(Error::config(
                "amqp.url",
                "is empty; give a URL, or several separated by commas (--amqp-url, WARREN_AMQP_URL)",
            ));
        };
        if schemes.iter().any(|s| *s != first) {
            return Err(Error::config(
                "amqp.url",
                format!(
                    "mixes amqp:// and amqps:// ({}); TLS settings apply to every node: use amqps:// for all of them",
                    urls.redacted()
                ),
            ));
        }
        Ok(first)
    }

    fn validate_tls(&self) -> Result<()> {
        let tls = &self.amqp.tls;
        let files = [
            ("amqp.tls.ca_file", "--tls-ca-file", &tls.ca_file),
            ("amqp.tls.cert_file", "--tls-cert-file", &tls.cert_file),
            ("amqp.tls.key_file", "--tls-key-file", &tls.key_file),
        ];
        let Some((first, _, _)) = files.iter().find(|(_, _, path)| path.is_some()) else {
            return Ok(());
        };
        if self.validate_urls()? != lapin::uri::AMQPScheme::AMQPS {
            return Err(Error::config(
                *first,
                "set but amqp.url is amqp://; use amqps:// — Warren never downgrades to plaintext",
            ));
        }
        if tls.cert_file.is_some() != tls.key_file.is_some() {
            let (key, flag) = match tls.cert_file {
                Some(_) => ("amqp.tls.key_file", "--tls-key-file"),
                None => ("amqp.tls.cert_file", "--tls-cert-file"),
            };
            return Err(Error::config(
                key,
                format!(
                    "is required for mutual TLS: set amqp.tls.cert_file and amqp.tls.key_file together ({flag})"
                ),
            ));
        }
        for (key, flag, path) in files {
            let Some(path) = path else { continue };
            let problem = match std::fs::File::open(path).and_then(|f| f.metadata()) {
                Ok(meta) if meta.is_file() => continue,
                Ok(_) => "not a regular file".to_owned(),
                Err(e) => e.to_string(),
            };
            return Err(Error::config(
                key,
                format!(
                    "cannot read '{}': {problem}; give a readable PEM file ({flag})",
                    path.display()
                ),
            ));
        }
        Ok(())
    }

    fn validate_retry(&self) -> Result<()> {
        if self.retry.max_attempts == 0 {
            return Err(Error::config(
                "retry.max_attempts",
                "must be at least 1 (1 = dead-letter on the first failure)",
            ));
        }
        if self.retry.backoff.is_empty() {
            return Err(Error::config(
                "retry.backoff",
                "needs at least one delay, e.g. 1s,10s,1m",
            ));
        }
        if let Some(step) = self
            .retry
            .backoff
            .iter()
            .find(|d| d.as_millis() > u128::from(u32::MAX))
        {
            return Err(Error::config(
                "retry.backoff",
                format!(
                    "{} is longer than RabbitMQ's TTL limit (~49 days)",
                    duration::format(step)
                ),
            ));
        }
        if self.dead_letter_queue() == self.queue.name {
            return Err(Error::config(
                "retry.dead_letter_queue",
                "must differ from queue.name, or poison tasks would loop forever",
            ));
        }
        Ok(())
    }

    /// Checks the settings of the selected handler only (an unused `http.url`
    /// must not stop an exec worker).
    fn validate_handler(&self) -> Result<()> {
        match self.handler.kind {
            HandlerKind::Sleep => Ok(()),
            HandlerKind::Exec => self.validate_exec(),
            HandlerKind::Http => self.validate_http(),
        }
    }

    fn validate_exec(&self) -> Result<()> {
        let exec = &self.handler.exec;
        if exec.command.first().is_none_or(|p| p.is_empty()) {
            return Err(Error::config(
                "handler.exec.command",
                "is empty; give the program after `--` (warren work --handler exec -- python3 task.py)",
            ));
        }
        if let Some(code) = exec
            .reject_exit_codes
            .iter()
            .find(|c| !(1..=255).contains(*c))
        {
            return Err(Error::config(
                "handler.exec.reject_exit_codes",
                format!("{code} is not a failure exit code; use codes from 1 to 255, e.g. [65]"),
            ));
        }
        Ok(())
    }

    fn validate_http(&self) -> Result<()> {
        /// An absolute http(s) URL; the message shows it with the password redacted.
        fn check_http_url(key: &str, url: &str) -> Result<()> {
            let shown = crate::redact::redact_url(url);
            match reqwest::Url::parse(url) {
                Ok(u) if matches!(u.scheme(), "http" | "https") && u.has_host() => Ok(()),
                Ok(_) => Err(Error::config(
                    key,
                    format!("'{shown}' must be an http:// or https:// URL with a host"),
                )),
                Err(e) => Err(Error::config(
                    key,
                    format!("'{shown}' is not a URL ({e}); use e.g. http://127.0.0.1:8080/tasks"),
                )),
            }
        }
        let http = &self.handler.http;
        let Some(url) = &http.url else {
            return Err(Error::config(
                "handler.http.url",
                "is required for the http handler (--http-url http://127.0.0.1:8080/tasks)",
            ));
        };
        check_http_url("handler.http.url", url)?;
        if let Some(ready) = &http.ready_url {
            check_http_url("handler.http.ready_url", ready)?;
        }
        if http.timeout.is_zero() {
            return Err(Error::config(
                "handler.http.timeout",
                "must be greater than 0 (e.g. 30s; WARREN_HANDLER_HTTP_TIMEOUT)",
            ));
        }
        Ok(())
    }
}
