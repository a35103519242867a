//! `amqp.url` as a list of nodes: every command (publish, status, work) connects to whichever node
//! answers, `/readyz` names the node in use, and no password of any URL
//! reaches the output.

mod support;

use std::time::Duration;
use support::broker::{self, shared_url, unique_queue};
use support::net::free_port;
use support::proc::{Warren, run, text, work_command};

const LIMIT: Duration = Duration::from_secs(60);

/// A URL nothing listens on, with a password that must never be printed.
fn dead_node(password: &str) -> String {
    format!("amqp://guest:{password}@127.0.0.1:{}/%2f", free_port())
}

#[tokio::test(flavor = "multi_thread")]
async fn work_and_status_use_whichever_node_answers() {
    let url = shared_url();
    let q = unique_queue("urls");
    let list = format!("{},{url}", dead_node("dead-pw-1"));
    let out = run(
        &["publish", "--amqp-url", &list, "--queue", &q, "task"],
        LIMIT,
    );
    assert!(out.status.success(), "{}", text(&out));
    // The order is shuffled per connect: several runs meet both orders.
    for _ in 0..4 {
        let out = run(&["status", "--amqp-url", &list, "--queue", &q], LIMIT);
        assert!(out.status.success(), "{}", text(&out));
        assert!(!text(&out).contains("dead-pw-1"), "{}", text(&out));
    }

    let w = Warren::spawn_with("urls", work_command(&list, &q, &["--per-dot", "1ms"]));
    w.wait_ready().await;
    let (_, body) = w.readyz();
    assert!(
        body.contains("consuming from amqp://guest:***@127.0.0.1:"),
        "/readyz names the node, password hidden: {body}"
    );
    w.wait_acked(1, LIMIT).await;
    assert!(!w.lines().iter().any(|l| l.contains("dead-pw-1")));
    broker::cleanup(&url, &q).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn when_no_node_answers_no_password_is_printed() {
    let list = format!("{},{}", dead_node("dead-pw-2"), dead_node("dead-pw-3"));
    let out = run(
        &["status", "--amqp-url", &list, "--connect-timeout", "2s"],
        LIMIT,
    );
    let shown = text(&out);
    assert!(!out.status.success(), "{shown}");
    assert!(
        shown.contains("cannot connect to RabbitMQ at amqp://guest:***@127.0.0.1:"),
        "{shown}"
    );
    assert!(
        !shown.contains("dead-pw-2") && !shown.contains("dead-pw-3"),
        "{shown}"
    );

    let out = run(&["config", "check", "--amqp-url", &list], LIMIT);
    let shown = text(&out);
    assert!(out.status.success(), "{shown}");
    assert!(
        !shown.contains("dead-pw-2") && !shown.contains("dead-pw-3"),
        "{shown}"
    );
    assert_eq!(shown.matches("guest:***@").count(), 2, "{shown}");
}
