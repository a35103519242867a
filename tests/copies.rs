//! Retry copies that the broker cannot store (invariant 1 and 3): the
//! original stays unacked and the copy is tried again after a pause — never
//! an immediate requeue that reruns the task in a loop (on a quorum queue,
//! every such requeue burns the delivery limit).

mod support;

use lapin::options::{QueueDeclareOptions, QueueDeleteOptions};
use lapin::types::{AMQPValue, FieldTable};
use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;
use support::broker::{self, shared_url, unique_queue};
use warren::{App, CancellationToken, Config, Handler, Outcome, Task};

const LIMIT: Duration = Duration::from_secs(30);

/// Fails the first attempt, succeeds after; counts every call.
#[derive(Clone, Default)]
struct FailsOnce {
    calls: Arc<AtomicU32>,
}

impl Handler for FailsOnce {
    async fn handle(&self, task: &Task) -> Outcome {
        self.calls.fetch_add(1, Ordering::SeqCst);
        match task.attempt {
            1 => Outcome::retry("first attempt fails"),
            _ => Outcome::Ack,
        }
    }
}

/// Waits until `check` holds, polling; panics with `what` after `limit`.
async fn until(what: &str, limit: Duration, check: impl Fn() -> bool) {
    let started = std::time::Instant::now();
    while !check() {
        assert!(started.elapsed() < limit, "timed out waiting: {what}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn an_unstorable_retry_copy_holds_the_task_instead_of_looping() {
    let url = shared_url();
    let q = unique_queue("copies");
    let retry_queue = format!("{q}.retry.300ms");
    let mut config = Config::default();
    config.amqp.url = url.clone().into();
    config.queue.name = q.clone();
    config.retry.backoff = vec![Duration::from_millis(300)];
    let handler = FailsOnce::default();
    let app = App::new(config, handler.clone());
    let health = app.health();
    let shutdown = CancellationToken::new();
    let pool = tokio::spawn(app.run(shutdown.clone()));
    broker::wait_consumers(&url, &q, 1, LIMIT).await;

    // The retry tier vanishes (as when the node holding it is down): the
    // copy comes back 312 NO_ROUTE.
    let (conn, ch) = broker::channel(&url).await;
    ch.queue_delete(retry_queue.as_str().into(), QueueDeleteOptions::default())
        .await
        .unwrap();
    broker::publish(&url, &q, &[b"task"]).await;
    let unconfirmed = || health.metrics.copies_unconfirmed.get();
    until("two failed copies", LIMIT, || unconfirmed() >= 2).await;
    assert_eq!(
        handler.calls.load(Ordering::SeqCst),
        1,
        "the task must not run again while its copy cannot be stored"
    );
    assert_eq!(
        broker::counts(&url, &q).await.map(|c| c.0),
        Some(0),
        "the original is held unacked by the worker, not requeued"
    );
    assert_eq!(health.in_flight(), 1, "held unacked, so counted in flight");

    // The tier is back: the held copy goes through and attempt 2 succeeds.
    let mut args = FieldTable::default();
    args.insert("x-message-ttl".into(), AMQPValue::LongLongInt(300));
    args.insert(
        "x-dead-letter-exchange".into(),
        AMQPValue::LongString("".into()),
    );
    args.insert(
        "x-dead-letter-routing-key".into(),
        AMQPValue::LongString(q.as_str().into()),
    );
    ch.queue_declare(
        retry_queue.as_str().into(),
        QueueDeclareOptions::durable(),
        args,
    )
    .await
    .unwrap();
    until("attempt 2", LIMIT, || {
        handler.calls.load(Ordering::SeqCst) == 2
    })
    .await;
    let acked = || health.metrics.tasks.with_label_values(&["acked"]).get();
    until("attempt 2 acked", LIMIT, || acked() == 1).await;
    assert_eq!(
        health.metrics.tasks.with_label_values(&["requeued"]).get(),
        0
    );
    assert_eq!(
        health.metrics.tasks.with_label_values(&["retried"]).get(),
        1
    );

    shutdown.cancel();
    pool.await.unwrap().unwrap();
    let _ = conn.close(200, "bye".into()).await;
    broker::cleanup(&url, &q).await;
    broker::cleanup(&url, &retry_queue).await;
}
