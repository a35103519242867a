//! `warren status` reads ready/consumers over AMQP and, with a management
//! URL, unacked counts from the management API of a private node.

mod support;

use std::time::{Duration, Instant};
use support::node::RabbitNode;
use support::proc::{Warren, run, text};

const LIMIT: Duration = Duration::from_secs(60);

#[tokio::test(flavor = "multi_thread")]
async fn status_shows_ready_consumers_and_unacked() {
    let node = RabbitNode::start_with_management();
    let url = node.amqp_url();
    let mgmt = node.management_url().expect("management enabled");
    for task in ["a..........", "b..........", "c.........."] {
        let out = run(
            &["publish", "--amqp-url", &url, "--queue", "jobs", task],
            LIMIT,
        );
        assert!(out.status.success(), "{}", text(&out));
    }
    // Two workers take one task each and sit on it (100 s of work).
    let w = Warren::spawn(
        "holder",
        &[
            "work",
            "--amqp-url",
            &url,
            "--queue",
            "jobs",
            "--concurrency",
            "2",
            "--per-dot",
            "10s",
        ],
    );
    w.wait_metric("warren_tasks_in_flight", 2.0, LIMIT).await;
    // Warren offers amqp.frame_max (16 KiB), so lapin's buffers stay small.
    assert_eq!(frame_max_of(&node, "warren work").await, 16384);

    let out = run(&["status", "--amqp-url", &url, "--queue", "jobs"], LIMIT);
    let table = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(out.status.success(), "{}", text(&out));
    let row = table
        .lines()
        .find(|l| l.starts_with("jobs "))
        .unwrap_or_else(|| panic!("{table}"));
    let cols: Vec<&str> = row.split_whitespace().collect();
    assert_eq!(
        cols,
        ["jobs", "1", "-", "1"],
        "ready 1, unacked unknown, 1 consumer: {table}"
    );
    assert!(
        table.contains("jobs.dead") && table.contains("jobs.retry.1s"),
        "{table}"
    );

    // The management API refreshes its statistics every few seconds.
    let started = Instant::now();
    loop {
        let out = run(
            &[
                "status",
                "--amqp-url",
                &url,
                "--queue",
                "jobs",
                "--management-url",
                &mgmt,
            ],
            LIMIT,
        );
        let all = text(&out);
        assert!(out.status.success(), "{all}");
        assert!(
            !all.contains(":guest@"),
            "the management password is not printed: {all}"
        );
        let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
        let row = stdout
            .lines()
            .find(|l| l.starts_with("jobs "))
            .unwrap()
            .to_owned();
        let cols: Vec<&str> = row.split_whitespace().collect();
        if cols == ["jobs", "1", "2", "1"] {
            break;
        }
        assert!(
            started.elapsed() < LIMIT,
            "unacked never reached 2: {stdout}"
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    }

    let bad = mgmt.replace("guest:guest@", "guest:hunter2@");
    let out = run(
        &[
            "status",
            "--amqp-url",
            &url,
            "--queue",
            "jobs",
            "--management-url",
            &bad,
        ],
        LIMIT,
    );
    let msg = text(&out);
    assert!(!out.status.success());
    assert!(
        msg.contains("401") && msg.contains("amqp.management_url") && !msg.contains("hunter2"),
        "{msg}"
    );
}

/// The frame_max of the connection whose name contains `name`, from the
/// management API (which lists a connection a moment after it opened).
async fn frame_max_of(node: &RabbitNode, name: &str) -> u64 {
    let started = Instant::now();
    loop {
        let list: serde_json::Value =
            serde_json::from_str(&node.management_get("/api/connections")).unwrap();
        let ours = list.as_array().into_iter().flatten().find(|c| {
            let named = c["client_properties"]["connection_name"].as_str();
            named.is_some_and(|n| n.contains(name))
        });
        if let Some(frame_max) = ours.and_then(|c| c["frame_max"].as_u64()) {
            return frame_max;
        }
        assert!(
            started.elapsed() < LIMIT,
            "no connection named {name}: {list}"
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}
