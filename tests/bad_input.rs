//! Bad input gets one clear line naming the cause and the fix, with the
//! password redacted, and a non-zero exit where retrying cannot help. Those
//! lines are what users read, so these tests check their words; everything
//! else is observed through /readyz, /metrics and the handler's own record.

mod support;

use lapin::options::QueueDeclareOptions;
use lapin::types::FieldTable;
use std::time::Duration;
use support::broker::{self, shared_url, text_header, unique_queue};
use support::net::free_port;
use support::proc::{Warren, run, text, work_command};
use support::record::Recorder;

const LIMIT: Duration = Duration::from_secs(60);

#[tokio::test(flavor = "multi_thread")]
async fn a_queue_declared_non_durable_elsewhere_is_a_clear_406_error() {
    let url = shared_url();
    let q = unique_queue("hello");
    // As the tutorial's first part does: a non-durable queue with the same name.
    let (conn, ch) = broker::channel(&url).await;
    ch.queue_declare(
        q.as_str().into(),
        QueueDeclareOptions::default(),
        FieldTable::default(),
    )
    .await
    .unwrap();

    for args in [
        vec!["work", "--amqp-url", &url, "--queue", &q],
        vec!["publish", "--amqp-url", &url, "--queue", &q, "x"],
    ] {
        let out = run(&args, LIMIT);
        let msg = text(&out);
        assert!(!out.status.success(), "{args:?} must fail: {msg}");
        let line = msg
            .lines()
            .find(|l| l.starts_with("error:"))
            .unwrap_or_else(|| panic!("no error line: {msg}"));
        assert!(
            line.contains(&format!("queue '{q}'")),
            "names the queue: {line}"
        );
        assert!(
            line.contains("'durable' is 'false' on the broker"),
            "names the property: {line}"
        );
        assert!(
            line.contains("--queue") && line.contains("delete") && line.contains("declare: false"),
            "gives the fixes: {line}"
        );
    }
    // The broker's queue is untouched and still usable as it is with declare: false.
    let out = run(
        &["publish", "--amqp-url", &url, "--queue", &q, "kept"],
        LIMIT,
    );
    assert!(!out.status.success());
    let mut cmd = work_command(&url, &q, &["--per-dot", "1ms"]);
    cmd.env("WARREN_QUEUE_DECLARE", "false");
    let w = Warren::spawn_with("declare-false", cmd);
    w.wait_ready().await;
    broker::publish(&url, &q, &[b"as it is."]).await;
    w.wait_acked(1, LIMIT).await;
    let _ = conn.close(200, "bye".into()).await;
    broker::cleanup(&url, &q).await;
}

#[test]
fn wrong_password_is_named_and_redacted() {
    let url = shared_url().replace("guest:guest@", "guest:hunter2@");
    let out = run(&["publish", "--amqp-url", &url, "x"], LIMIT);
    let msg = text(&out);
    assert!(!out.status.success(), "{msg}");
    assert!(
        msg.contains("ACCESS_REFUSED") && msg.contains("user name and password"),
        "{msg}"
    );
    assert!(msg.contains("guest:***@"), "shows the URL redacted: {msg}");
    assert!(!msg.contains("hunter2"), "never prints the password: {msg}");
}

#[tokio::test(flavor = "multi_thread")]
async fn work_keeps_retrying_an_unreachable_broker_and_says_why() {
    let port = free_port();
    let url = format!("amqp://guest:hunter2@127.0.0.1:{port}/%2f");
    let out = run(&["status", "--amqp-url", &url], LIMIT);
    let msg = text(&out);
    assert!(!out.status.success());
    assert!(
        msg.contains("connection refused") && msg.contains("amqp.url"),
        "{msg}"
    );
    assert!(
        msg.contains(&format!("guest:***@127.0.0.1:{port}")) && !msg.contains("hunter2"),
        "{msg}"
    );

    // A worker must not crash-loop while the broker is away: it logs why
    // (redacted) and retries.
    let mut w = Warren::spawn("unreachable", &["work", "--amqp-url", &url]);
    w.wait_for("connection refused", 2, LIMIT).await;
    assert!(w.is_running());
    assert!(w.lines().iter().all(|l| !l.contains("hunter2")));
    w.signal(libc::SIGTERM);
    let status = w
        .wait_exit(LIMIT)
        .await
        .expect("exits on SIGTERM while reconnecting");
    assert!(status.success());
}

#[test]
fn invalid_values_name_the_key() {
    let cases: &[(&[&str], &str)] = &[
        (&["work", "--concurrency", "0"], "pool.concurrency"),
        (&["work", "--prefetch", "70000"], "pool.prefetch"),
        (&["work", "--per-dot", "soon"], "handler.sleep.per_dot"),
        (&["work", "--amqp-url", "amqp//broken"], "amqp.url"),
        (
            &["work", "--handler", "exec", "--", "/nonexistent/program"],
            "handler.exec.command",
        ),
        (&["work", "--handler", "http"], "handler.http.url"),
        (&["config", "check", "--queue-type", "stream"], "queue.type"),
    ];
    for (args, needle) in cases {
        let out = run(args, LIMIT);
        let msg = text(&out);
        assert!(!out.status.success(), "{args:?} must fail");
        assert!(
            msg.contains(needle),
            "{args:?}: expected {needle:?} in {msg}"
        );
        assert_eq!(
            msg.lines().filter(|l| l.starts_with("error:")).count(),
            1,
            "one error line: {msg}"
        );
    }
}

#[test]
fn bad_yaml_and_unknown_keys_name_the_file_and_key() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("warren.yaml");
    std::fs::write(&path, "pool:\n  concurency: 3\n").unwrap();
    let out = run(
        &["config", "check", "--config", path.to_str().unwrap()],
        LIMIT,
    );
    let msg = text(&out);
    assert!(!out.status.success());
    assert!(
        msg.contains("unknown field `concurency`") && msg.contains("warren.yaml"),
        "{msg}"
    );
}

#[test]
fn config_check_prints_the_effective_config_redacted() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("warren.yaml");
    std::fs::write(
        &path,
        "pool: { concurrency: 2 }\nqueue: { name: from_file }\n",
    )
    .unwrap();
    let mut cmd = support::proc::command(&[
        "config",
        "check",
        "--config",
        path.to_str().unwrap(),
        "--concurrency",
        "4",
        "--prefetch",
        "2",
    ]);
    cmd.env("WARREN_AMQP_URL", "amqp://app:s3cret@rabbit:5672/%2f");
    let out = cmd.output().unwrap();
    let msg = text(&out);
    assert!(out.status.success(), "{msg}");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        stdout.contains("url: amqp://app:***@rabbit:5672/%2f"),
        "{stdout}"
    );
    assert!(
        stdout.contains("concurrency: 4") && stdout.contains("name: from_file"),
        "{stdout}"
    );
    assert!(!msg.contains("s3cret"), "{msg}");
    assert!(
        msg.contains("warning: pool.prefetch (2) is below pool.concurrency (4)"),
        "{msg}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn oversize_bodies_are_dead_lettered_without_running_the_handler() {
    let url = shared_url();
    let q = unique_queue("oversize");
    let big = vec![b'.'; 64];
    let rec = Recorder::new();
    let limit = ["--max-body-bytes", "16"];
    let w = rec.work("oversize", &url, &q, Duration::from_millis(1), &limit);
    w.wait_ready().await;
    broker::publish(&url, &q, &[&big, b"small."]).await;
    w.wait_acked(1, LIMIT).await;
    let dead = broker::consume_one(&url, &format!("{q}.dead"), LIMIT)
        .await
        .expect("dead letter");
    assert_eq!(dead.data, big);
    assert_eq!(
        text_header(&dead, "x-warren-reason"),
        "too large: 64 bytes exceeds pool.max_body_bytes (16)"
    );
    assert_eq!(
        rec.record("oversize").received(),
        ["small."],
        "the handler never saw the big body"
    );
    broker::cleanup(&url, &q).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn malformed_attempt_headers_count_as_attempt_one() {
    use lapin::options::{BasicPublishOptions, ConfirmSelectOptions};
    use lapin::protocol::BasicProperties;
    use lapin::types::AMQPValue;
    let url = shared_url();
    let q = unique_queue("attempt_header");
    let rec = Recorder::new();
    let w = rec.work("hdr", &url, &q, Duration::from_millis(1), &[]);
    w.wait_ready().await;
    let (conn, ch) = broker::channel(&url).await;
    ch.confirm_select(ConfirmSelectOptions::default())
        .await
        .unwrap();
    let values = [
        AMQPValue::LongString("garbage".into()),
        AMQPValue::Boolean(true),
        AMQPValue::LongLongInt(-3),
        AMQPValue::FieldArray(vec![AMQPValue::LongLongInt(2)].into()),
    ];
    for (i, value) in values.into_iter().enumerate() {
        let mut headers = FieldTable::default();
        headers.insert("x-warren-attempt".into(), value);
        let props = BasicProperties::default()
            .with_headers(headers)
            .with_message_id(format!("hdr-{i}").into());
        ch.basic_publish(
            "".into(),
            q.as_str().into(),
            BasicPublishOptions::default(),
            b"h.",
            props,
        )
        .await
        .unwrap()
        .await
        .unwrap();
    }
    w.wait_acked(4, LIMIT).await;
    let record = rec.record("hdr");
    assert_eq!(record.done().len(), 4);
    assert_eq!(
        record.starts().filter(|t| t.attempt == 1).count(),
        4,
        "{record:?}"
    );
    let _ = conn.close(200, "bye".into()).await;
    broker::wait_empty(&url, &q, LIMIT).await;
    broker::cleanup(&url, &q).await;
}
