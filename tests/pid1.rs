//! Warren as PID 1, as in the distroless image (no init): it reaps the
//! orphans exec programs leave behind and still sees each program's own exit
//! status. The real binary runs as PID 1 of a new PID namespace
//! (`unshare --pid --fork --mount-proc`, which needs root, as these tests
//! have) against the shared broker.

mod support;

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};
use support::broker::{self, shared_url, unique_queue};
use support::health::tasks_total;
use support::proc::{Warren, wrapped_command};
use support::procfs::{children, comm, state};
use warren::metrics::Disposition;

const LIMIT: Duration = Duration::from_secs(60);
/// Tasks whose program exits 0 (acked) and 65 (dead-lettered).
const GOOD: usize = 8;
const BAD: usize = 3;

/// A program that leaves two grandchildren behind: one in its process
/// group (ended with the task, then a zombie of PID 1) and one that leaves
/// the group with `setsid` (the program waits until it did, or ending the
/// group would reach it) and exits on its own a little later, leaving a
/// file in `dir` just before.
fn program(dir: &Path) -> PathBuf {
    let path = dir.join("task.sh");
    let text = format!(
        "#!/bin/sh\n\
         DIR='{}'\n\
         body=$(cat)\n\
         (sleep 0.2 &)\n\
         setsid sh -c 'touch \"$0/in-session.$1\"; sleep 0.3; mktemp \"$0/left.XXXXXX\" >/dev/null' \"$DIR\" $$ &\n\
         until [ -e \"$DIR/in-session.$$\" ]; do sleep 0.01; done\n\
         [ \"$body\" = bad ] && exit 65\n\
         exit 0\n",
        dir.display()
    );
    std::fs::write(&path, text).unwrap();
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).unwrap();
    path
}

/// The host pid of the process `unshare --fork` started (Warren).
async fn forked_child(unshare: i32) -> i32 {
    let started = Instant::now();
    loop {
        if let Some(&pid) = children(unshare).first() {
            return pid;
        }
        assert!(started.elapsed() < LIMIT, "unshare started nothing");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// The pid a process has inside its own PID namespace (last of `NSpid`).
fn pid_in_namespace(pid: i32) -> Option<i32> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let line = status.lines().find(|l| l.starts_with("NSpid:"))?;
    line.split_whitespace().last()?.parse().ok()
}

async fn wait_files(dir: &Path, prefix: &str, n: usize) {
    let started = Instant::now();
    loop {
        let count = std::fs::read_dir(dir)
            .unwrap()
            .filter(|e| {
                let name = e.as_ref().unwrap().file_name();
                name.to_string_lossy().starts_with(prefix)
            })
            .count();
        if count >= n {
            return;
        }
        assert!(
            started.elapsed() < LIMIT,
            "{count} of {n} grandchildren ran"
        );
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
}

/// Waits until no child of `pid` is a zombie; panics naming them if some stay.
async fn wait_no_zombies(pid: i32, limit: Duration) {
    let started = Instant::now();
    loop {
        let zombies: Vec<(i32, String)> = children(pid)
            .into_iter()
            .filter(|&c| state(c) == Some(b'Z'))
            .map(|c| (c, comm(c)))
            .collect();
        if zombies.is_empty() {
            return;
        }
        assert!(
            started.elapsed() < limit,
            "zombies left under Warren (PID 1): {zombies:?}"
        );
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn as_pid_1_warren_reaps_orphans_and_keeps_exit_statuses() {
    let probe = std::process::Command::new("unshare")
        .arg("--version")
        .output();
    assert!(
        probe.is_ok_and(|o| o.status.success()),
        "this test needs unshare (util-linux) and root"
    );
    let url = shared_url();
    let q = unique_queue("pid1");
    let dir = tempfile::tempdir().unwrap();
    let program = program(dir.path());
    // --kill-child: Warren dies with unshare if the test is interrupted.
    let wrapper = ["unshare", "--pid", "--fork", "--mount-proc", "--kill-child"];
    let args = [
        "work",
        "--amqp-url",
        &url,
        "--queue",
        &q,
        "--handler",
        "exec",
        "--concurrency",
        "4",
        "--",
        program.to_str().unwrap(),
    ];
    let mut w = Warren::spawn_with("pid1", wrapped_command(&wrapper, &args));
    w.wait_ready().await;
    let warren = forked_child(w.pid()).await;
    assert_eq!(pid_in_namespace(warren), Some(1), "Warren is PID 1");

    let mut bodies: Vec<&[u8]> = vec![b"good"; GOOD];
    bodies.extend(std::iter::repeat_n(&b"bad"[..], BAD));
    broker::publish(&url, &q, &bodies).await;
    w.wait_acked(GOOD, LIMIT).await;
    let dead = tasks_total(Disposition::DeadLettered);
    w.wait_metric(&dead, BAD as f64, LIMIT).await;
    wait_files(dir.path(), "left.", GOOD + BAD).await;
    wait_no_zombies(warren, Duration::from_secs(10)).await;

    // Each program's own exit status reached Warren: none was reaped away
    // (that would read as a failure and retry the task).
    assert_eq!(w.metric(&tasks_total(Disposition::Acked)), GOOD as f64);
    assert_eq!(w.metric(&dead), BAD as f64);
    assert_eq!(w.metric(&tasks_total(Disposition::Retried)), 0.0);

    // PID 1 gets only the signals it handles: SIGTERM still drains.
    unsafe { libc::kill(warren, libc::SIGTERM) };
    let status = w.wait_exit(LIMIT).await.expect("Warren exits on SIGTERM");
    assert!(
        status.success(),
        "{status:?}; log:\n{}",
        w.lines().join("\n")
    );
    broker::cleanup(&url, &q).await;
}
