//! The library API in-process: a custom Handler run by `warren::run` with a
//! caller-owned shutdown token, against the real broker. Also checks how
//! outcomes are settled: retry tiers, dead letters and their headers.

mod support;

use lapin::types::AMQPValue;
use std::sync::Mutex;
use std::time::{Duration, Instant};
use support::broker::{self, header, shared_url, text_header, unique_queue};
use warren::{CancellationToken, Config, Handler, Outcome, Task};

/// Fails bodies starting with "poison", rejects "bad", retries "flaky" once,
/// acks the rest; records (body, attempt, time) of every call.
#[derive(Default)]
struct Scripted {
    calls: Mutex<Vec<(String, u32, Instant)>>,
}

impl Handler for Scripted {
    async fn handle(&self, task: &Task) -> Outcome {
        let body = String::from_utf8_lossy(&task.body).into_owned();
        self.calls
            .lock()
            .unwrap()
            .push((body.clone(), task.attempt, Instant::now()));
        match body.as_str() {
            "poison" => Outcome::retry("always fails"),
            "bad" => Outcome::reject("malformed input"),
            "flaky" if task.attempt == 1 => Outcome::retry("first try fails"),
            "panics" if task.attempt == 1 => panic!("handler bug"),
            _ => Outcome::Ack,
        }
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn outcomes_are_settled_with_retries_and_dead_letters() {
    let url = shared_url();
    let q = unique_queue("library");
    let mut config = Config::default();
    config.amqp.url = url.clone().into();
    config.queue.name = q.clone();
    config.retry.max_attempts = 3;
    config.retry.backoff = vec![Duration::from_millis(200), Duration::from_millis(400)];
    config.pool.concurrency = 4;

    let handler = std::sync::Arc::new(Scripted::default());
    struct Shared(std::sync::Arc<Scripted>);
    impl Handler for Shared {
        async fn handle(&self, task: &Task) -> Outcome {
            self.0.handle(task).await
        }
    }
    let shutdown = CancellationToken::new();
    let pool = tokio::spawn(warren::run(
        config,
        Shared(handler.clone()),
        shutdown.clone(),
    ));
    broker::wait_consumers(&url, &q, 1, Duration::from_secs(30)).await;
    broker::publish(&url, &q, &[b"poison", b"bad", b"flaky", b"fine", b"panics"]).await;

    let dead = format!("{q}.dead");
    let first = broker::consume_one(&url, &dead, Duration::from_secs(30))
        .await
        .expect("a dead letter");
    let second = broker::consume_one(&url, &dead, Duration::from_secs(30))
        .await
        .expect("two dead letters");
    let (bad, poison) = if first.data == b"bad" {
        (first, second)
    } else {
        (second, first)
    };
    assert_eq!(poison.data, b"poison");
    let reason = |d: &lapin::message::Delivery| text_header(d, "x-warren-reason");
    assert_eq!(reason(&bad), "malformed input");
    assert!(
        reason(&poison).contains("gave up after 3 attempts")
            && reason(&poison).contains("always fails")
    );
    assert_eq!(
        header(&poison, "x-warren-attempts"),
        Some(AMQPValue::LongLongInt(3))
    );
    assert_eq!(
        header(&bad, "x-warren-attempts"),
        Some(AMQPValue::LongLongInt(1))
    );
    for d in [&bad, &poison] {
        assert!(
            header(d, "x-warren-first-failure").is_some()
                && header(d, "x-warren-last-failure").is_some()
        );
        assert!(header(d, "x-warren-worker").is_some());
        assert_eq!(
            header(d, "x-warren-original-routing-key"),
            Some(AMQPValue::LongString(q.as_str().into()))
        );
        assert_eq!(d.properties.delivery_mode(), &Some(2));
    }

    // Wait for "flaky" to succeed on its second attempt.
    let started = Instant::now();
    while !handler
        .calls
        .lock()
        .unwrap()
        .iter()
        .any(|(b, a, _)| b == "flaky" && *a == 2)
    {
        assert!(
            started.elapsed() < Duration::from_secs(30),
            "flaky never retried"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    while !handler
        .calls
        .lock()
        .unwrap()
        .iter()
        .any(|(b, a, _)| b == "panics" && *a == 2)
    {
        assert!(
            started.elapsed() < Duration::from_secs(30),
            "a panicking task is retried"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let calls = handler.calls.lock().unwrap().clone();
    let attempts = |body: &str| {
        calls
            .iter()
            .filter(|(b, _, _)| b == body)
            .map(|(_, a, t)| (*a, *t))
            .collect::<Vec<_>>()
    };
    assert_eq!(
        attempts("bad").len(),
        1,
        "Reject: dead-lettered after one attempt"
    );
    assert_eq!(attempts("fine").len(), 1);
    let poison_calls = attempts("poison");
    assert_eq!(
        poison_calls.iter().map(|c| c.0).collect::<Vec<_>>(),
        [1, 2, 3],
        "exactly max_attempts"
    );
    let gaps: Vec<Duration> = poison_calls.windows(2).map(|w| w[1].1 - w[0].1).collect();
    assert!(
        gaps[0] >= Duration::from_millis(200),
        "first backoff step honoured: {gaps:?}"
    );
    assert!(
        gaps[1] >= Duration::from_millis(400),
        "second backoff step honoured: {gaps:?}"
    );

    shutdown.cancel();
    pool.await.unwrap().expect("the pool stops cleanly");
    for retry in [format!("{q}.retry.200ms"), format!("{q}.retry.400ms")] {
        assert_eq!(
            broker::counts(&url, &retry).await,
            Some((0, 0)),
            "{retry} drained"
        );
        let ch = broker::channel(&url).await;
        let _ =
            ch.1.queue_delete(retry.as_str().into(), Default::default())
                .await;
    }
    assert_eq!(broker::counts(&url, &q).await, Some((0, 0)));
    broker::cleanup(&url, &q).await;
}
