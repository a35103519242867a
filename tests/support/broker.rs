//! The shared broker most tests use, unique queue names, and AMQP helpers
//! built on lapin directly (not on Warren's own code, so a Warren bug cannot
//! hide itself in its own test).

use futures_lite::StreamExt;
use lapin::options::*;
use lapin::protocol::BasicProperties;
use lapin::types::{AMQPValue, FieldTable};
use lapin::{Channel, Connection, ConnectionProperties};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

/// The shared broker: WARREN_TEST_AMQP_URL, else the local default
/// (`make test` makes sure one answers there).
pub fn shared_url() -> String {
    std::env::var("WARREN_TEST_AMQP_URL")
        .unwrap_or_else(|_| "amqp://guest:guest@127.0.0.1:5672/%2f".into())
}

/// A queue name no other test (or earlier run) uses.
pub fn unique_queue(prefix: &str) -> String {
    static N: AtomicUsize = AtomicUsize::new(0);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .subsec_nanos();
    format!(
        "test.{prefix}.{}.{}.{nanos}",
        std::process::id(),
        N.fetch_add(1, Ordering::Relaxed)
    )
}

pub async fn connect(url: &str) -> Connection {
    Connection::connect(url, ConnectionProperties::default())
        .await
        .unwrap_or_else(|e| panic!("test broker at {url} must answer: {e}"))
}

pub async fn channel(url: &str) -> (Connection, Channel) {
    let conn = connect(url).await;
    let ch = conn.create_channel().await.unwrap();
    (conn, ch)
}

/// (ready messages, consumers) by passive declare; None if the queue is missing.
pub async fn counts(url: &str, queue: &str) -> Option<(u32, u32)> {
    let (conn, ch) = channel(url).await;
    let q = ch
        .queue_declare(
            queue.into(),
            QueueDeclareOptions::default().passive(),
            FieldTable::default(),
        )
        .await
        .ok()
        .map(|q| (q.message_count(), q.consumer_count()));
    let _ = conn.close(200, "bye".into()).await;
    q
}

/// Like [`counts`], but None also when the broker does not answer within
/// 5 s (a node of a cluster may be down or frozen).
pub async fn try_counts(url: &str, queue: &str) -> Option<(u32, u32)> {
    let ask = async {
        let conn = Connection::connect(url, ConnectionProperties::default())
            .await
            .ok()?;
        let ch = conn.create_channel().await.ok()?;
        let options = QueueDeclareOptions::default().passive();
        let q = ch
            .queue_declare(queue.into(), options, FieldTable::default())
            .await
            .ok();
        let _ = conn.close(200, "bye".into()).await;
        q.map(|q| (q.message_count(), q.consumer_count()))
    };
    tokio::time::timeout(Duration::from_secs(5), ask)
        .await
        .ok()
        .flatten()
}

/// Waits until `queue` has `consumers` consumers.
pub async fn wait_consumers(url: &str, queue: &str, consumers: u32, limit: Duration) {
    let started = Instant::now();
    loop {
        if counts(url, queue).await.map(|c| c.1) == Some(consumers) {
            return;
        }
        assert!(
            started.elapsed() < limit,
            "queue {queue} never had {consumers} consumers"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Waits until `queue` has no ready messages.
pub async fn wait_empty(url: &str, queue: &str, limit: Duration) {
    let started = Instant::now();
    loop {
        if counts(url, queue).await.map(|c| c.0) == Some(0) {
            return;
        }
        assert!(
            started.elapsed() < limit,
            "queue {queue} never became empty"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Publishes persistent messages with confirms, as a plain producer would.
pub async fn publish(url: &str, queue: &str, bodies: &[&[u8]]) {
    for body in bodies {
        let id = uuid::Uuid::new_v4().to_string();
        publish_with(
            url,
            queue,
            body,
            BasicProperties::default().with_message_id(id.into()),
        )
        .await;
    }
}

/// Publishes one persistent message with the given properties and checks
/// that the broker confirmed AND routed it (mandatory + Ack without return).
pub async fn publish_with(url: &str, queue: &str, body: &[u8], props: BasicProperties) {
    let (conn, ch) = channel(url).await;
    ch.confirm_select(ConfirmSelectOptions::default())
        .await
        .unwrap();
    let options = BasicPublishOptions {
        mandatory: true,
        ..Default::default()
    };
    let confirm = ch
        .basic_publish(
            "".into(),
            queue.into(),
            options,
            body,
            props.with_delivery_mode(2),
        )
        .await
        .unwrap()
        .await
        .unwrap();
    assert!(
        matches!(confirm, lapin::Confirmation::Ack(None)),
        "broker must confirm and route the test message to {queue}: {confirm:?}"
    );
    let _ = conn.close(200, "bye".into()).await;
}

/// Reads up to `n` messages with basic.get (acking them).
pub async fn drain(url: &str, queue: &str, n: usize) -> Vec<lapin::message::BasicGetMessage> {
    let (conn, ch) = channel(url).await;
    let mut out = Vec::new();
    while out.len() < n {
        match ch
            .basic_get(queue.into(), BasicGetOptions::default())
            .await
            .unwrap()
        {
            Some(msg) => {
                msg.delivery
                    .acker
                    .ack(BasicAckOptions::default())
                    .await
                    .unwrap();
                out.push(msg);
            }
            None => break,
        }
    }
    let _ = conn.close(200, "bye".into()).await;
    out
}

/// Deletes the queue and the retry/dead queues Warren declared for it.
pub async fn cleanup(url: &str, queue: &str) {
    let (conn, _) = channel(url).await;
    let mut names = vec![queue.to_owned(), format!("{queue}.dead")];
    for step in ["1s", "10s", "1m", "10m"] {
        names.push(format!("{queue}.retry.{step}"));
    }
    for name in names {
        let ch = conn.create_channel().await.unwrap();
        let _ = ch
            .queue_delete(name.as_str().into(), QueueDeleteOptions::default())
            .await;
    }
    let _ = conn.close(200, "bye".into()).await;
}

/// Consumes one message with a timeout (used to check what Warren published).
pub async fn consume_one(
    url: &str,
    queue: &str,
    limit: Duration,
) -> Option<lapin::message::Delivery> {
    let (conn, ch) = channel(url).await;
    let mut consumer = ch
        .basic_consume(
            queue.into(),
            "test".into(),
            BasicConsumeOptions::default(),
            FieldTable::default(),
        )
        .await
        .unwrap();
    let got = tokio::time::timeout(limit, consumer.next())
        .await
        .ok()
        .flatten()
        .map(Result::unwrap);
    if let Some(d) = &got {
        d.acker.ack(BasicAckOptions::default()).await.unwrap();
    }
    let _ = conn.close(200, "bye".into()).await;
    got
}

/// A header of a delivery (a dead letter's `x-warren-*`, a `traceparent`).
pub fn header(d: &lapin::message::Delivery, key: &str) -> Option<AMQPValue> {
    d.properties.headers().as_ref()?.inner().get(key).cloned()
}

/// A header that must be a string; panics with what it is otherwise.
pub fn text_header(d: &lapin::message::Delivery, key: &str) -> String {
    match header(d, key) {
        Some(AMQPValue::LongString(s)) => String::from_utf8_lossy(s.as_bytes()).into_owned(),
        other => panic!("{key}: {other:?}"),
    }
}
