//! The http handler against a real HTTP server (tests/support/http.rs): the
//! real `warren` binary POSTs tasks from the shared broker to it.

mod support;

use lapin::options::QueueDeleteOptions;
use lapin::protocol::BasicProperties;
use std::time::Duration;
use support::broker::{self, shared_url, text_header, unique_queue};
use support::http::{Reply, Server};
use support::net::free_port;
use support::proc::{Warren, command};
use warren::config::HandlerKind;
use warren::handler::Builtin;
use warren::{Config, Handler, Outcome, Task};

const LIMIT: Duration = Duration::from_secs(60);

/// The receiver: what it answers depends on the body and the attempt.
fn receiver() -> Server {
    Server::start(|req| {
        let first = req.header("x-warren-attempt") == Some("1");
        match req.body.as_slice() {
            b"ok" => Reply::status(200),
            b"invalid" => Reply::status(422).body("field 'x' is missing\n"),
            b"flaky" if first => Reply::status(503).body("warming up"),
            b"later" if first => Reply::status(429).header("Retry-After", "2"),
            b"slow" if first => Reply::status(200).delay(Duration::from_secs(3)),
            big if big.starts_with(b"big ") && first => Reply::status(503),
            _ => Reply::status(200),
        }
    })
}

async fn publish(queue: &str, body: &[u8], props: BasicProperties) {
    broker::publish_with(&shared_url(), queue, body, props).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn statuses_decide_ack_reject_and_retry() {
    let url = shared_url();
    let q = unique_queue("http");
    let server = receiver();
    let target = server.url("/tasks");
    let mut cmd = command(&[
        "work",
        "--amqp-url",
        &url,
        "--queue",
        &q,
        "--handler",
        "http",
        "--http-url",
        &target,
        "--concurrency",
        "4",
        "--max-attempts",
        "3",
        "--backoff",
        "100ms,2s",
    ]);
    cmd.env("WARREN_HANDLER_HTTP_TIMEOUT", "500ms");
    let w = Warren::spawn_with("http", cmd);
    w.wait_ready().await;

    let props = BasicProperties::default()
        .with_message_id("m-ok".into())
        .with_correlation_id("c-ok".into())
        .with_content_type("application/json".into());
    publish(&q, b"ok", props).await;
    // Many frames long (amqp.frame_max is 16 KiB), to the pod and as a retry copy.
    let big = format!("big {}", "x".repeat(300_000)).into_bytes();
    let bodies: [&[u8]; 5] = [b"invalid", b"flaky", b"later", b"slow", &big];
    broker::publish(&url, &q, &bodies).await;

    // 200: acked after one request, with the CloudEvents and Warren headers.
    let ok = server.wait_for(b"ok", 1, LIMIT).await.remove(0);
    assert_eq!((ok.method.as_str(), ok.path.as_str()), ("POST", "/tasks"));
    for (name, value) in [
        ("content-type", "application/json"),
        ("ce-id", "m-ok"),
        ("ce-specversion", "1.0"),
        ("ce-type", "warren.task"),
        ("x-warren-attempt", "1"),
        ("x-warren-redelivered", "false"),
        ("x-warren-correlation-id", "c-ok"),
    ] {
        assert_eq!(ok.header(name), Some(value), "{name}: {:?}", ok.headers);
    }
    assert_eq!(ok.header("ce-source"), Some(format!("warren/{q}").as_str()));
    let time = ok.header("ce-time").expect("ce-time");
    assert!(humantime::parse_rfc3339(time).is_ok(), "RFC 3339: {time}");

    // 422: dead-lettered at once with the status and the body's start.
    let dead = broker::consume_one(&url, &format!("{q}.dead"), LIMIT)
        .await
        .expect("422 is dead-lettered");
    assert_eq!(dead.data, b"invalid");
    let reason = text_header(&dead, "x-warren-reason");
    assert!(reason.contains("HTTP 422"), "{reason}");
    assert!(reason.contains("field 'x' is missing"), "{reason}");
    let invalid = server.requests_for(b"invalid");
    assert_eq!(invalid.len(), 1, "a 4xx is not retried");
    assert_eq!(
        invalid[0].header("content-type"),
        Some("application/octet-stream")
    );
    assert_eq!(
        invalid[0].header("ce-id").map(str::len),
        Some(36),
        "a generated id"
    );

    // 503 then 200: retried after the first backoff step, then acked.
    let flaky = server.wait_for(b"flaky", 2, LIMIT).await;
    assert_eq!(flaky[1].header("x-warren-attempt"), Some("2"));
    assert!(flaky[1].at - flaky[0].at >= Duration::from_millis(100));

    // 429 with Retry-After: 2 → the next attempt waits at least 2s, not 100ms.
    let later = server.wait_for(b"later", 2, LIMIT).await;
    let gap = later[1].at - later[0].at;
    assert!(
        gap >= Duration::from_secs(2),
        "Retry-After honoured: {gap:?}"
    );

    // A body of 19 frames arrives whole, and so does its retry copy.
    let big_requests = server.wait_for(&big, 2, LIMIT).await;
    assert_eq!(big_requests[1].header("x-warren-attempt"), Some("2"));

    // No answer within handler.http.timeout (500ms): retried.
    let slow = server.wait_for(b"slow", 2, LIMIT).await;
    assert_eq!(slow[1].header("x-warren-attempt"), Some("2"));
    // The error line users read names the setting to change.
    assert!(
        w.count("within 500ms (handler.http.timeout)") >= 1,
        "{:?}",
        w.lines()
    );

    // Everything settled: nothing ready, only "invalid" dead-lettered.
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(broker::counts(&url, &q).await.map(|c| c.0), Some(0));
    assert_eq!(
        broker::counts(&url, &format!("{q}.dead"))
            .await
            .map(|c| c.0),
        Some(0)
    );
    assert_eq!(server.requests_for(b"ok").len(), 1);
    let (conn, ch) = broker::channel(&url).await;
    let _ = ch
        .queue_delete(
            format!("{q}.retry.100ms").as_str().into(),
            QueueDeleteOptions::default(),
        )
        .await;
    let _ = ch
        .queue_delete(
            format!("{q}.retry.2s").as_str().into(),
            QueueDeleteOptions::default(),
        )
        .await;
    let _ = conn.close(200, "bye".into()).await;
    broker::cleanup(&url, &q).await;
}

fn http_config(url: &str, ready_url: Option<String>) -> Config {
    let mut config = Config::default();
    config.handler.kind = HandlerKind::Http;
    config.handler.http.url = Some(url.to_owned());
    config.handler.http.ready_url = ready_url;
    config.handler.http.timeout = Duration::from_secs(2);
    config
}

#[tokio::test(flavor = "multi_thread")]
async fn readiness_follows_the_ready_url_and_refused_connections_retry() {
    let server = Server::start(|req| match req.path.as_str() {
        "/healthz" => Reply::status(200),
        _ => Reply::status(503),
    });
    let ready = Builtin::from_config(&http_config(
        &server.url("/tasks"),
        Some(server.url("/healthz")),
    ))
    .unwrap();
    assert_eq!(ready.ready().await, Ok(()));
    let starting = Builtin::from_config(&http_config(
        &server.url("/tasks"),
        Some(server.url("/starting")),
    ))
    .unwrap();
    let why = starting.ready().await.unwrap_err();
    assert!(why.contains("503"), "{why}");
    let no_check = Builtin::from_config(&http_config(&server.url("/tasks"), None)).unwrap();
    assert_eq!(no_check.ready().await, Ok(()));

    // Nothing listens on the port of a dropped listener: connection refused.
    let port = free_port();
    let gone = format!("http://127.0.0.1:{port}/tasks");
    let down = Builtin::from_config(&http_config(&gone, Some(gone.clone()))).unwrap();
    assert!(down.ready().await.is_err());
    match down.handle(&Task::for_test(b"x".to_vec())).await {
        Outcome::Retry {
            after: None,
            reason,
        } => {
            assert!(
                reason.contains("POST http://127.0.0.1") && reason.contains("failed"),
                "{reason}"
            )
        }
        other => panic!("a refused connection is retried: {other:?}"),
    }
}
