//! The log path, against real `warren work` processes and a real broker: a
//! log reader that stops reading never slows the pool (lines are dropped,
//! counted on /metrics and reported in the log), the last lines are written
//! at exit, and a task's text line shows the task, not its trace attributes.
//! Log lines are asserted here because their words and shape are the point.

mod support;

use std::time::Duration;
use support::broker::{self, shared_url, unique_queue};
use support::proc::{self, Warren};

const LIMIT: Duration = Duration::from_secs(60);

/// The series counting dropped log lines.
const DROPPED: &str = "warren_log_lines_dropped_total";

/// Publishes `n` tasks without dots (no work: only logging) through
/// `warren publish --file` (one connection, confirmed).
fn publish_tasks(url: &str, queue: &str, n: usize) {
    let file = tempfile::NamedTempFile::new().unwrap();
    let lines: Vec<String> = (0..n).map(|i| format!("task {i}")).collect();
    std::fs::write(file.path(), lines.join("\n")).unwrap();
    let path = file.path().to_str().unwrap();
    let args = [
        "publish",
        "--amqp-url",
        url,
        "--queue",
        queue,
        "--file",
        path,
    ];
    let out = proc::run(&args, LIMIT);
    assert!(out.status.success(), "{}", proc::text(&out));
}

#[tokio::test(flavor = "multi_thread")]
async fn a_stalled_log_reader_never_stalls_the_pool() {
    let url = shared_url();
    let q = unique_queue("stalled_log");
    // JSON (the default off a terminal) at info: two lines per task, ~200
    // bytes each. 6000 tasks log ~2.4 MB, far beyond the 64 KiB pipe and
    // the writer's queue of 8192 lines.
    let tasks = 6000;
    let mut cmd = proc::work_command(&url, &q, &["--per-dot", "0s"]);
    cmd.env_remove("WARREN_LOG_FORMAT");
    let mut w = Warren::spawn_unread("stalled", cmd);
    w.wait_ready().await;
    publish_tasks(&url, &q, tasks);
    w.wait_acked(tasks, Duration::from_secs(120)).await;
    let dropped = w.wait_metric(DROPPED, 1.0, LIMIT).await;
    println!("{dropped} log lines dropped while stderr was not read");

    w.read_stderr();
    w.wait_for("log lines dropped", 1, LIMIT).await;
    w.signal(libc::SIGTERM);
    assert!(w.wait_exit(LIMIT).await.unwrap().success());
    w.wait_for("stopped", 1, LIMIT).await;
    for line in w.lines() {
        let v: serde_json::Value =
            serde_json::from_str(&line).unwrap_or_else(|e| panic!("not JSON ({e}): {line}"));
        assert!(v["fields"]["message"].is_string(), "{line}");
    }
    let reported: u64 = w
        .matching("log lines dropped")
        .iter()
        .map(|line| {
            let v: serde_json::Value = serde_json::from_str(line).unwrap();
            assert_eq!(v["level"], "WARN", "{line}");
            let message = v["fields"]["message"].as_str().unwrap();
            message.split(' ').next().unwrap().parse::<u64>().unwrap()
        })
        .sum();
    assert!(
        reported as f64 >= dropped,
        "every dropped line is reported: {reported} reported, {dropped} counted"
    );
    broker::cleanup(&url, &q).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn the_last_lines_are_written_after_sigterm() {
    let url = shared_url();
    let q = unique_queue("flush_term");
    let mut w = proc::work("term", &url, &q, &["--per-dot", "0s"]);
    w.wait_ready().await;
    w.signal(libc::SIGTERM);
    assert!(w.wait_exit(LIMIT).await.unwrap().success());
    w.wait_for("stopped", 1, LIMIT).await;
    let lines = w.lines();
    assert!(
        lines.last().unwrap().ends_with("stopped"),
        "the drain's last line comes last:\n{}",
        lines.join("\n")
    );
    broker::cleanup(&url, &q).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn the_last_lines_are_written_after_a_second_signal() {
    let url = shared_url();
    let q = unique_queue("flush_twice");
    let mut w = proc::work("twice", &url, &q, &["--per-dot", "60s"]);
    w.wait_ready().await;
    broker::publish(&url, &q, &[b"long."]).await;
    w.wait_metric("warren_tasks_in_flight", 1.0, LIMIT).await;
    w.signal(libc::SIGTERM);
    w.wait_for("SIGTERM: draining", 1, LIMIT).await;
    w.signal(libc::SIGTERM);
    let status = w.wait_exit(LIMIT).await.expect("exits at once");
    assert_eq!(status.code(), Some(130));
    // Logged just before the exit: it is there only if the queue was flushed.
    w.wait_for("second signal: exiting now", 1, LIMIT).await;
    broker::cleanup(&url, &q).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_text_line_shows_the_task_not_its_trace_attributes() {
    let url = shared_url();
    let q = unique_queue("text_logs");
    // proc::command asks for text logs, as on a terminal.
    let w = proc::work("text", &url, &q, &["--per-dot", "0s"]);
    w.wait_ready().await;
    let props = lapin::protocol::BasicProperties::default()
        .with_message_id("abcdef01-2345-6789-abcd-ef0123456789".into());
    broker::publish_with(&url, &q, b"Hello World.", props).await;
    w.wait_acked(1, LIMIT).await;
    w.wait_for("[x] Done", 1, LIMIT).await;
    for line in w.matching("[x] ") {
        for needle in ["id=23456789 ", "worker=", "attempt=1"] {
            assert!(line.contains(needle), "{needle} in {line}");
        }
        assert!(
            !line.contains("otel.") && !line.contains("messaging."),
            "{line}"
        );
        assert!(line.len() < 150, "{} characters: {line}", line.len());
    }
    broker::cleanup(&url, &q).await;
}
