//! Publishing with publisher confirms: a message counts as stored only when
//! the broker confirmed it and did not return it as unroutable.

use crate::error::{Error, Result};
use lapin::options::{BasicPublishOptions, ConfirmSelectOptions};
use lapin::protocol::BasicProperties;
use lapin::{Channel, Confirmation, PublisherConfirm};
use std::collections::VecDeque;
use std::time::{Duration, Instant};

/// AMQP delivery mode 2: the broker writes the message to disk.
pub const PERSISTENT: u8 = 2;

/// Properties shared by every task of one publish run: persistent, and the
/// current trace context (`traceparent`) when tracing is on. Built once per
/// run, not per message.
pub fn task_properties() -> BasicProperties {
    let mut headers = lapin::types::FieldTable::default();
    crate::telemetry::propagate::inject(&mut headers);
    let props = if headers.inner().is_empty() {
        BasicProperties::default()
    } else {
        BasicProperties::default().with_headers(headers)
    };
    props
        .with_delivery_mode(PERSISTENT)
        .with_app_id("warren".into())
}

/// Unique message ids without a random-number syscall per message: one
/// random UUID per run, then a counter (`<uuid>-<n>`).
pub struct MessageIds {
    prefix: String,
    next: u64,
}

impl Default for MessageIds {
    fn default() -> Self {
        MessageIds {
            prefix: uuid::Uuid::new_v4().to_string(),
            next: 0,
        }
    }
}

impl Iterator for MessageIds {
    type Item = String;

    fn next(&mut self) -> Option<String> {
        self.next += 1;
        Some(format!("{}-{}", self.prefix, self.next))
    }
}

/// Puts the channel in confirm mode (idempotent on the broker side).
pub async fn enable_confirms(channel: &Channel) -> Result<()> {
    channel
        .confirm_select(ConfirmSelectOptions::default())
        .await
        .map_err(|e| Error::amqp("enabling publisher confirms", e))
}

/// Publishes one message (mandatory, default exchange) and returns its
/// pending confirm; [`verdict`] reads what the broker answered.
pub async fn send(
    channel: &Channel,
    queue: &str,
    body: &[u8],
    properties: BasicProperties,
) -> lapin::Result<PublisherConfirm> {
    // mandatory: a missing queue makes the broker return the message instead
    // of dropping it, so "confirmed" really means "stored in a queue".
    let options = BasicPublishOptions {
        mandatory: true,
        ..BasicPublishOptions::default()
    };
    channel
        .basic_publish("".into(), queue.into(), options, body, properties)
        .await
}

/// The broker's verdict on one message, or an error once `until` passes: a
/// quorum queue without a majority confirms nothing, and a slot must never
/// wait forever for it.
async fn await_confirm(
    confirm: PublisherConfirm,
    until: Instant,
) -> std::result::Result<(), String> {
    let Ok(confirmation) = tokio::time::timeout_at(until.into(), confirm).await else {
        return Err(
            "no confirm within amqp.confirm_timeout (a queue without a majority, or a frozen node?)"
                .into(),
        );
    };
    verdict(confirmation)
}

/// Whether the broker stored the message: acked and not returned.
pub fn verdict(confirmation: lapin::Result<Confirmation>) -> std::result::Result<(), String> {
    match confirmation {
        Ok(Confirmation::Ack(None)) => Ok(()),
        Ok(Confirmation::Ack(Some(returned)) | Confirmation::Nack(Some(returned))) => Err(format!(
            "returned by the broker: {} {}",
            returned.reply_code, returned.reply_text
        )),
        Ok(Confirmation::Nack(None)) => Err("nacked by the broker".into()),
        Ok(Confirmation::NotRequested) => Err("channel is not in confirm mode".into()),
        Err(e) => Err(format!("no confirm: {e}")),
    }
}

/// What a bulk publish achieved.
#[derive(Debug, Clone, Default)]
pub struct PublishReport {
    /// Messages handed to the broker.
    pub total: usize,
    /// Messages confirmed and routed.
    pub confirmed: usize,
    /// The first failure, for the error message.
    pub first_failure: Option<String>,
    /// From the first publish to the last confirm.
    pub elapsed: Duration,
}

impl PublishReport {
    /// Messages per second over the whole run.
    pub fn rate(&self) -> f64 {
        self.total as f64 / self.elapsed.as_secs_f64().max(1e-9)
    }

    /// `Ok` when every message was confirmed, else the count that was not.
    pub fn into_result(self) -> Result<PublishReport> {
        if self.confirmed == self.total {
            return Ok(self);
        }
        Err(Error::Unconfirmed {
            unconfirmed: self.total - self.confirmed,
            total: self.total,
            detail: self.first_failure.unwrap_or_default(),
        })
    }
}

/// Publishes persistent tasks to `queue`, keeping up to `window` confirms
/// outstanding so throughput is not one round trip per message. A message
/// not confirmed within `deadline` of its publish counts as unconfirmed.
pub async fn publish_tasks<I>(
    channel: &Channel,
    queue: &str,
    bodies: I,
    window: usize,
    deadline: Duration,
    mut on_sent: impl FnMut(&[u8]),
) -> Result<PublishReport>
where
    I: IntoIterator<Item = Vec<u8>>,
{
    let started = Instant::now();
    let mut report = PublishReport::default();
    let mut pending: VecDeque<(Instant, PublisherConfirm)> = VecDeque::with_capacity(window);
    let template = task_properties();
    let mut ids = MessageIds::default();
    for body in bodies {
        if pending.len() >= window.max(1) {
            let (sent, oldest) = pending.pop_front().expect("window is not empty");
            record(&mut report, await_confirm(oldest, sent + deadline).await);
        }
        let id = ids.next().expect("endless");
        let props = template.clone().with_message_id(id.into());
        let sent = Instant::now();
        let confirm = send(channel, queue, &body, props)
            .await
            .map_err(|e| Error::amqp(format!("publishing to queue '{queue}'"), e))?;
        report.total += 1;
        on_sent(&body);
        pending.push_back((sent, confirm));
    }
    for (sent, confirm) in pending {
        record(&mut report, await_confirm(confirm, sent + deadline).await);
    }
    report.elapsed = started.elapsed();
    Ok(report)
}

fn record(report: &mut PublishReport, outcome: std::result::Result<(), String>) {
    match outcome {
        Ok(()) => report.confirmed += 1,
        Err(why) => {
            report.first_failure.get_or_insert(why);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn message_ids_are_unique_per_run_and_across_runs() {
        let a: Vec<String> = MessageIds::default().take(3).collect();
        let b: Vec<String> = MessageIds::default().take(3).collect();
        assert!(a[0].ends_with("-1") && a[2].ends_with("-3"));
        assert_ne!(a[0], b[0]);
        assert_eq!(a.iter().collect::<std::collections::BTreeSet<_>>().len(), 3);
    }
}
