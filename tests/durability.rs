//! Persistence and queue types: persistent tasks survive a broker restart
//! (a private node we may stop), quorum queues work, bulk publish confirms.

mod support;

use std::time::Duration;
use support::broker::{self, shared_url, unique_queue};
use support::node::RabbitNode;
use support::proc::{Warren, run, text};
use support::record::Recorder;

const LIMIT: Duration = Duration::from_secs(90);

#[tokio::test(flavor = "multi_thread")]
async fn persistent_tasks_survive_a_broker_restart() {
    let mut node = RabbitNode::start();
    let url = node.amqp_url();
    let q = "task_queue";
    let tasks = ["one.", "two..", "three..."];
    let out = run(&["publish", "--amqp-url", &url, "--file", "-"], LIMIT);
    // Nothing on stdin: an empty file publishes nothing and succeeds.
    assert!(out.status.success(), "{}", text(&out));
    for task in tasks {
        let out = run(&["publish", "--amqp-url", &url, task], LIMIT);
        assert!(out.status.success(), "{}", text(&out));
    }
    assert_eq!(broker::counts(&url, q).await, Some((3, 0)));

    node.stop();
    node.restart();
    assert_eq!(
        broker::counts(&url, q).await,
        Some((3, 0)),
        "durable queue, persistent tasks: all back"
    );

    let rec = Recorder::new();
    let w = rec.work("after-restart", &url, q, Duration::from_millis(10), &[]);
    w.wait_acked(3, LIMIT).await;
    let received = rec.record("after-restart").received();
    for task in tasks {
        let times = received.iter().filter(|r| *r == task).count();
        assert_eq!(times, 1, "{task} processed once: {received:?}");
    }
    broker::wait_empty(&url, q, LIMIT).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn quorum_queues_are_declared_and_consumed() {
    let url = shared_url();
    let q = unique_queue("quorum");
    let out = run(
        &[
            "publish",
            "--amqp-url",
            &url,
            "--queue",
            &q,
            "--queue-type",
            "quorum",
            "q..",
        ],
        LIMIT,
    );
    assert!(out.status.success(), "{}", text(&out));
    let w = Warren::spawn(
        "quorum",
        &[
            "work",
            "--amqp-url",
            &url,
            "--queue",
            &q,
            "--queue-type",
            "quorum",
            "--per-dot",
            "1ms",
        ],
    );
    w.wait_acked(1, LIMIT).await;
    // The broker holds x-delivery-limit = max_attempts (5) as a crash-loop
    // backstop: redeclaring with another limit is refused, with the same one accepted.
    let declare = |limit: i64| {
        let (url, q) = (url.clone(), q.clone());
        async move {
            use lapin::options::QueueDeclareOptions;
            use lapin::types::{AMQPValue, FieldTable};
            let (conn, ch) = broker::channel(&url).await;
            let mut args = FieldTable::default();
            args.insert(
                "x-queue-type".into(),
                AMQPValue::LongString("quorum".into()),
            );
            args.insert("x-delivery-limit".into(), AMQPValue::LongLongInt(limit));
            args.insert(
                "x-dead-letter-exchange".into(),
                AMQPValue::LongString("".into()),
            );
            args.insert(
                "x-dead-letter-routing-key".into(),
                AMQPValue::LongString(format!("{q}.dead").into()),
            );
            let result = ch
                .queue_declare(q.as_str().into(), QueueDeclareOptions::durable(), args)
                .await;
            let _ = conn.close(200, "bye".into()).await;
            result.map(|_| ()).map_err(|e| e.to_string())
        }
    };
    assert_eq!(declare(5).await, Ok(()));
    let err = declare(6).await.unwrap_err();
    assert!(err.contains("x-delivery-limit"), "{err}");
    // Declaring it as classic now is the 406 mismatch, with the fix in the message.
    let out = run(&["publish", "--amqp-url", &url, "--queue", &q, "x"], LIMIT);
    assert!(!out.status.success());
    assert!(
        text(&out).contains(&format!(
            "queue '{q}' already exists with different settings"
        )),
        "{}",
        text(&out)
    );
    drop(w);
    broker::cleanup(&url, &q).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn publish_file_sends_one_confirmed_task_per_line() {
    let url = shared_url();
    let q = unique_queue("bulk");
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("tasks.txt");
    let mut body: String = (0..500).map(|i| format!("task {i}.\n")).collect();
    body.push_str("\n\r\nlast one\r\n");
    std::fs::write(&path, body).unwrap();
    let out = run(
        &[
            "publish",
            "--amqp-url",
            &url,
            "--queue",
            &q,
            "--file",
            path.to_str().unwrap(),
        ],
        LIMIT,
    );
    let msg = text(&out);
    assert!(out.status.success(), "{msg}");
    assert!(
        msg.contains("published 501 task(s)") && msg.contains("501 confirmed"),
        "{msg}"
    );
    assert!(
        !msg.contains("[x] Sent"),
        "bulk publishes are summarised, not echoed: {msg}"
    );
    assert_eq!(broker::counts(&url, &q).await, Some((501, 0)));
    let got = broker::drain(&url, &q, 501).await;
    assert_eq!(got[0].delivery.data, b"task 0.");
    assert_eq!(
        got[500].delivery.data, b"last one",
        "CRLF endings are trimmed, blank lines skipped"
    );
    broker::cleanup(&url, &q).await;
}
