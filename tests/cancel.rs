//! The broker cancels the consumer (here: the work queue is deleted under a
//! running pool). Warren goes unready with the reason, declares the queue
//! again (`declare: true`) or waits for it (`declare: false`), consumes again
//! on the same connection and is ready again. `/readyz` is scraped over HTTP.

mod support;

use lapin::options::{QueueDeclareOptions, QueueDeleteOptions};
use lapin::types::FieldTable;
use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};
use support::broker::{self, shared_url, unique_queue};
use support::net::{free_port, http_get, try_get};
use warren::{App, CancellationToken, Config, Handler, Outcome, Task};

const LIMIT: Duration = Duration::from_secs(30);

/// Acks every task and counts them.
#[derive(Clone, Default)]
struct Counts(Arc<AtomicU32>);

impl Handler for Counts {
    async fn handle(&self, _task: &Task) -> Outcome {
        self.0.fetch_add(1, Ordering::SeqCst);
        Outcome::Ack
    }
}

/// Polls `/readyz` (of an in-process server that may not listen yet) until
/// its status is `want`; returns the body.
async fn readyz_becomes(base: &str, want: u16) -> String {
    let started = Instant::now();
    loop {
        let url = format!("{base}/readyz");
        let answer = tokio::task::spawn_blocking(move || try_get(&url, &[]))
            .await
            .unwrap();
        match answer {
            Ok((status, body)) if status == want => return body,
            other => assert!(started.elapsed() < LIMIT, "/readyz: {other:?}"),
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

async fn wait_count(counts: &Counts, n: u32) {
    let started = Instant::now();
    while counts.0.load(Ordering::SeqCst) < n {
        assert!(
            started.elapsed() < LIMIT,
            "only {counts:?} tasks done",
            counts = counts.0
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Starts an in-process pool with its HTTP server on a free port.
fn start(
    q: &str,
    declare: bool,
) -> (
    Counts,
    String,
    CancellationToken,
    tokio::task::JoinHandle<warren::Result<()>>,
) {
    // Warren's log, shown when a test fails (libtest captures the test writer).
    let _ = tracing_subscriber::fmt()
        .with_env_filter("info,lapin=off")
        .with_test_writer()
        .try_init();
    let port = free_port();
    let mut config = Config::default();
    config.amqp.url = shared_url().into();
    config.queue.name = q.to_owned();
    config.queue.declare = declare;
    config.server.listen = format!("127.0.0.1:{port}");
    let counts = Counts::default();
    let shutdown = CancellationToken::new();
    let app = App::new(config, counts.clone()).serve_http();
    let pool = tokio::spawn(app.run(shutdown.clone()));
    (counts, format!("http://127.0.0.1:{port}"), shutdown, pool)
}

async fn delete_queue(q: &str) {
    let (conn, ch) = broker::channel(&shared_url()).await;
    ch.queue_delete(q.into(), QueueDeleteOptions::default())
        .await
        .unwrap();
    let _ = conn.close(200, "bye".into()).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_deleted_queue_is_declared_again_and_consumed() {
    let url = shared_url();
    let q = unique_queue("cancel-declare");
    let (counts, base, shutdown, pool) = start(&q, true);
    readyz_becomes(&base, 200).await;
    broker::publish(&url, &q, &[b"before"]).await;
    wait_count(&counts, 1).await;

    delete_queue(&q).await;
    // Declared again by Warren and consumed: a new task goes through.
    let again = broker::wait_consumers(&url, &q, 1, 2 * LIMIT);
    if tokio::time::timeout(LIMIT, again).await.is_err() {
        let url = format!("{base}/readyz");
        let readyz = tokio::task::spawn_blocking(move || try_get(&url, &[])).await;
        panic!("no consumer on {q} again within {LIMIT:?}; /readyz: {readyz:?}");
    }
    readyz_becomes(&base, 200).await;
    broker::publish(&url, &q, &[b"after"]).await;
    wait_count(&counts, 2).await;

    shutdown.cancel();
    pool.await.unwrap().unwrap();
    broker::cleanup(&url, &q).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn with_declare_false_a_deleted_queue_is_waited_for_while_unready() {
    let url = shared_url();
    let q = unique_queue("cancel-nodeclare");
    let (conn, ch) = broker::channel(&url).await;
    let declare = || {
        ch.queue_declare(
            q.as_str().into(),
            QueueDeclareOptions::durable(),
            FieldTable::default(),
        )
    };
    declare().await.unwrap();
    let (counts, base, shutdown, pool) = start(&q, false);
    readyz_becomes(&base, 200).await;

    delete_queue(&q).await;
    let why = readyz_becomes(&base, 503).await;
    assert!(why.contains("cancelled the consumer"), "{why}");
    // Still alive and unready a while later (not crashed, not consuming).
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert!(
        !pool.is_finished(),
        "a vanished queue must not stop the pool"
    );
    assert_eq!(http_get(&format!("{base}/readyz")).0, 503);
    assert_eq!(http_get(&format!("{base}/livez")).0, 200);

    // The owner declares it again: Warren consumes again and is ready.
    declare().await.unwrap();
    readyz_becomes(&base, 200).await;
    broker::publish(&url, &q, &[b"after"]).await;
    wait_count(&counts, 1).await;

    shutdown.cancel();
    pool.await.unwrap().unwrap();
    let _ = conn.close(200, "bye".into()).await;
    broker::cleanup(&url, &q).await;
}
