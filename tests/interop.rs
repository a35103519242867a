//! Interop with the tutorial's own Python code (pika): tasks published by
//! new_task.py are processed by warren, and tasks from `warren publish` reach
//! a pika consumer intact and persistent. The venv comes from
//! scripts/python-env.sh (`make test` runs it); a missing venv is a failure.

mod support;

use std::path::PathBuf;
use std::process::Command;
use std::time::Duration;
use support::broker::{self, shared_url, unique_queue};
use support::proc::{Warren, run, text};

fn python() -> PathBuf {
    let venv = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join(".venv/bin/python");
    assert!(
        venv.exists(),
        "{} is missing: run scripts/python-env.sh (make test does)",
        venv.display()
    );
    venv
}

fn script(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/python")
        .join(name)
}

#[tokio::test(flavor = "multi_thread")]
async fn tasks_from_pika_new_task_py_are_processed_by_warren() {
    let url = shared_url();
    let q = unique_queue("pika_in");
    let tasks = ["First message.", "Second message..", "Third message..."];
    let out = Command::new(python())
        .arg(script("new_task.py"))
        .args([&url, &q])
        .args(tasks)
        .output()
        .unwrap();
    assert!(out.status.success(), "new_task.py failed: {}", text(&out));

    let w = Warren::spawn(
        "warren",
        &[
            "work",
            "--amqp-url",
            &url,
            "--queue",
            &q,
            "--per-dot",
            "10ms",
        ],
    );
    // The tutorial's worker.py prints these lines and its readers look for
    // them: this is the one test that checks their words on purpose.
    w.wait_for(" [x] Done", 3, Duration::from_secs(60)).await;
    for task in tasks {
        assert_eq!(
            w.count(&format!(" [x] Received '{task}'")),
            1,
            "{task} processed once"
        );
    }
    broker::wait_empty(&url, &q, Duration::from_secs(30)).await;
    broker::cleanup(&url, &q).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn tasks_from_warren_publish_reach_a_pika_consumer_persistent() {
    let url = shared_url();
    let q = unique_queue("pika_out");
    let out = run(
        &[
            "publish",
            "--amqp-url",
            &url,
            "--queue",
            &q,
            "Hello",
            "from",
            "warren...",
        ],
        Duration::from_secs(60),
    );
    assert!(out.status.success(), "{}", text(&out));
    assert!(
        text(&out).contains(" [x] Sent 'Hello from warren...'"),
        "{}",
        text(&out)
    );
    let out = run(
        &["publish", "--amqp-url", &url, "--queue", &q],
        Duration::from_secs(60),
    );
    assert!(out.status.success(), "{}", text(&out));

    let out = Command::new(python())
        .arg(script("consume.py"))
        .args([&url, &q, "2"])
        .output()
        .unwrap();
    assert!(out.status.success(), "consume.py failed: {}", text(&out));
    let lines: Vec<String> = String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(str::to_owned)
        .collect();
    assert_eq!(lines.len(), 2, "{lines:?}");
    assert!(
        lines[0].contains(r#""body": "Hello from warren...""#),
        "{}",
        lines[0]
    );
    assert!(
        lines[1].contains(r#""body": "Hello World!""#),
        "the tutorial's default: {}",
        lines[1]
    );
    for line in &lines {
        assert!(line.contains(r#""delivery_mode": 2"#), "persistent: {line}");
        assert!(
            !line.contains(r#""message_id": null"#),
            "message_id set: {line}"
        );
    }
    broker::cleanup(&url, &q).await;
}
