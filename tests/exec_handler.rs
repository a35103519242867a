//! The exec handler with real processes: the real `warren` binary runs
//! /bin/sh scripts per task against the shared broker.

mod support;

use lapin::options::QueueDeleteOptions;
use lapin::protocol::BasicProperties;
use lapin::types::{AMQPValue, FieldTable};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};
use support::broker::{self, header, shared_url, text_header, unique_queue};
use support::proc::{Warren, command, run, text};
use support::procfs::process_alive;

const LIMIT: Duration = Duration::from_secs(60);

/// Writes an executable /bin/sh script; `$DIR` in it is the temp dir.
fn script(dir: &Path, body: &str) -> PathBuf {
    let path = dir.join("task.sh");
    let text = format!("#!/bin/sh\nDIR='{}'\n{body}", dir.display());
    std::fs::write(&path, text).unwrap();
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).unwrap();
    path
}

/// `warren work --handler exec` on `queue`, ready to consume.
async fn start(name: &str, queue: &str, program: &Path, extra: &[&str]) -> Warren {
    let url = shared_url();
    let mut args = vec![
        "work",
        "--queue",
        queue,
        "--handler",
        "exec",
        "--concurrency",
        "2",
    ];
    args.extend_from_slice(extra);
    args.extend_from_slice(&["--", program.to_str().unwrap()]);
    let mut cmd = command(&args);
    // Through env, so the test can check that the program does not see it.
    cmd.env("WARREN_AMQP_URL", &url);
    let w = Warren::spawn_with(name, cmd);
    w.wait_ready().await;
    w
}

/// Publishes one persistent message with the given properties.
async fn publish(queue: &str, body: &[u8], props: BasicProperties) {
    broker::publish_with(&shared_url(), queue, body, props).await;
}

async fn wait_file(path: &Path) -> Vec<u8> {
    let started = Instant::now();
    loop {
        if let Ok(bytes) = std::fs::read(path) {
            return bytes;
        }
        assert!(
            started.elapsed() < LIMIT,
            "{} never appeared",
            path.display()
        );
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
}

/// Gone, or a zombie (dead, waiting for init to reap it).
fn gone(pid: i32) -> bool {
    !process_alive(pid)
}

async fn wait_gone(pids: &[i32], limit: Duration) {
    let started = Instant::now();
    while !pids.iter().all(|&p| gone(p)) {
        let left: Vec<_> = pids.iter().filter(|&&p| !gone(p)).collect();
        assert!(started.elapsed() < limit, "processes {left:?} survived");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

async fn read_pid(path: &Path) -> i32 {
    let started = Instant::now();
    loop {
        let text = String::from_utf8(wait_file(path).await).unwrap();
        if let Ok(pid) = text.trim().parse() {
            return pid;
        }
        assert!(started.elapsed() < LIMIT);
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
}

async fn delete(queue: &str) {
    let (conn, ch) = broker::channel(&shared_url()).await;
    let _ = ch
        .queue_delete(queue.into(), QueueDeleteOptions::default())
        .await;
    let _ = conn.close(200, "bye".into()).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn the_program_gets_the_exact_body_and_the_metadata() {
    let url = shared_url();
    let q = unique_queue("exec-body");
    let dir = tempfile::tempdir().unwrap();
    let program = script(
        dir.path(),
        "cat > \"$DIR/$WARREN_MESSAGE_ID.body\"\n\
         env | grep '^WARREN_' | sort > \"$DIR/$WARREN_MESSAGE_ID.env.tmp\"\n\
         mv \"$DIR/$WARREN_MESSAGE_ID.env.tmp\" \"$DIR/$WARREN_MESSAGE_ID.env\"\n",
    );
    let mut w = start("exec-body", &q, &program, &[]).await;

    let mut body = b"a\0b\xff\xfe\x00\n\r. \"end\" $(rm -rf /) '".to_vec();
    body.extend((0..100_000u32).map(|i| (i * 7 % 256) as u8));
    let mut headers = FieldTable::default();
    headers.insert("tenant".into(), AMQPValue::LongString("acme".into()));
    headers.insert("n".into(), AMQPValue::LongLongInt(7));
    let props = BasicProperties::default()
        .with_message_id("m1".into())
        .with_correlation_id("c1".into())
        .with_headers(headers);
    publish(&q, &body, props).await;
    let empty = BasicProperties::default().with_message_id("m2".into());
    publish(&q, b"", empty).await;

    assert_eq!(wait_file(&dir.path().join("m1.body")).await, body);
    let env = String::from_utf8(wait_file(&dir.path().join("m1.env")).await).unwrap();
    for line in [
        "WARREN_MESSAGE_ID=m1",
        "WARREN_CORRELATION_ID=c1",
        "WARREN_ATTEMPT=1",
        "WARREN_REDELIVERED=false",
        &format!("WARREN_QUEUE={q}"),
    ] {
        assert!(env.lines().any(|l| l == line), "{line} missing:\n{env}");
    }
    let json = env
        .lines()
        .find_map(|l| l.strip_prefix("WARREN_HEADERS="))
        .expect("WARREN_HEADERS");
    let json: serde_json::Value = serde_json::from_str(json).unwrap();
    assert_eq!(json, serde_json::json!({"tenant": "acme", "n": 7}));
    assert!(
        !env.contains("WARREN_AMQP_URL") && !env.contains("guest"),
        "Warren's own config (and the broker password) must not reach the program:\n{env}"
    );
    assert_eq!(wait_file(&dir.path().join("m2.body")).await, b"");
    let _ = wait_file(&dir.path().join("m2.env")).await;

    // Acked: after Warren is gone nothing comes back, and nothing was dead-lettered.
    w.wait_acked(2, LIMIT).await;
    w.kill();
    assert_eq!(broker::counts(&url, &q).await, Some((0, 0)));
    assert_eq!(
        broker::counts(&url, &format!("{q}.dead")).await,
        Some((0, 0))
    );
    broker::cleanup(&url, &q).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn exit_codes_ack_reject_or_retry() {
    let url = shared_url();
    let q = unique_queue("exec-codes");
    let dir = tempfile::tempdir().unwrap();
    let program = script(
        dir.path(),
        "body=$(cat)\n\
         echo \"$WARREN_ATTEMPT\" >> \"$DIR/$body.runs\"\n\
         case \"$body\" in\n\
           ok) echo ' [x] Done'; exit 0 ;;\n\
           bad) echo \"bad input: field 'x' is missing\" >&2; exit 65 ;;\n\
           *) echo 'temporarily broken' >&2; exit 1 ;;\n\
         esac\n",
    );
    let w = start(
        "exec-codes",
        &q,
        &program,
        &["--max-attempts", "3", "--backoff", "100ms"],
    )
    .await;
    broker::publish(&url, &q, &[b"ok", b"bad", b"flaky"]).await;

    let dead = format!("{q}.dead");
    let mut letters = Vec::new();
    for _ in 0..2 {
        letters.push(
            broker::consume_one(&url, &dead, LIMIT)
                .await
                .expect("two dead letters"),
        );
    }
    letters.sort_by(|a, b| a.data.cmp(&b.data));
    let (bad, flaky) = (&letters[0], &letters[1]);
    assert_eq!(
        (bad.data.as_slice(), flaky.data.as_slice()),
        (&b"bad"[..], &b"flaky"[..])
    );

    let reason = text_header(bad, "x-warren-reason");
    assert!(reason.contains("exit code 65"), "{reason}");
    assert!(
        reason.contains("bad input: field 'x' is missing"),
        "stderr in the reason: {reason}"
    );
    assert_eq!(
        header(bad, "x-warren-attempts"),
        Some(AMQPValue::LongLongInt(1))
    );

    let reason = text_header(flaky, "x-warren-reason");
    assert!(reason.contains("gave up after 3 attempts"), "{reason}");
    assert!(
        reason.contains("exit code 1") && reason.contains("temporarily broken"),
        "{reason}"
    );
    assert_eq!(
        header(flaky, "x-warren-attempts"),
        Some(AMQPValue::LongLongInt(3))
    );

    let runs =
        |name: &str| std::fs::read_to_string(dir.path().join(format!("{name}.runs"))).unwrap();
    assert_eq!(runs("ok"), "1\n");
    assert_eq!(runs("bad"), "1\n", "a reject code is not retried");
    assert_eq!(runs("flaky"), "1\n2\n3\n", "retried up to max attempts");
    // The program's output in Warren's log is the feature checked here.
    assert!(w.count("stdout:  [x] Done") >= 1, "stdout is logged");
    assert!(
        w.count("stderr: temporarily broken") >= 3,
        "stderr is logged"
    );

    assert_eq!(broker::counts(&url, &q).await.map(|c| c.0), Some(0));
    delete(&format!("{q}.retry.100ms")).await;
    broker::cleanup(&url, &q).await;
}

/// The script: a child that waits, a grandchild that ignores SIGTERM (so
/// only the SIGKILL step can end it) and a plain grandchild.
const STUBBORN: &str = "echo $$ > \"$DIR/child.pid\"\n\
    (trap '' TERM; exec sleep 1000) &\n\
    echo $! > \"$DIR/stubborn.pid\"\n\
    sleep 1000 &\n\
    echo $! > \"$DIR/plain.pid\"\n\
    wait\n";

async fn pids(dir: &Path) -> Vec<i32> {
    let mut pids = Vec::new();
    for name in ["child", "stubborn", "plain"] {
        pids.push(read_pid(&dir.join(format!("{name}.pid"))).await);
    }
    pids
}

#[tokio::test(flavor = "multi_thread")]
async fn a_timeout_kills_the_program_and_its_grandchildren() {
    let url = shared_url();
    let q = unique_queue("exec-timeout");
    let dir = tempfile::tempdir().unwrap();
    let program = script(dir.path(), STUBBORN);
    let w = start(
        "exec-timeout",
        &q,
        &program,
        &["--handler-timeout", "1s", "--max-attempts", "1"],
    )
    .await;
    broker::publish(&url, &q, &[b"forever"]).await;
    let pids = pids(dir.path()).await;
    assert!(pids.iter().all(|&p| !gone(p)), "all running at first");

    let letter = broker::consume_one(&url, &format!("{q}.dead"), LIMIT)
        .await
        .expect("dead-lettered after the timeout");
    let reason = text_header(&letter, "x-warren-reason");
    assert!(reason.contains("timed out after 1s"), "{reason}");
    // SIGTERM at once, SIGKILL after handler.exec.kill_grace (2s).
    wait_gone(&pids, Duration::from_secs(10)).await;
    // The error line users read says why.
    assert!(w.count("timed out") >= 1);
    broker::cleanup(&url, &q).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn the_drain_deadline_kills_the_program_and_its_grandchildren() {
    let url = shared_url();
    let q = unique_queue("exec-drain");
    let dir = tempfile::tempdir().unwrap();
    let program = script(dir.path(), STUBBORN);
    let mut w = start("exec-drain", &q, &program, &["--shutdown-timeout", "1s"]).await;
    broker::publish(&url, &q, &[b"forever"]).await;
    let pids = pids(dir.path()).await;
    w.signal(libc::SIGTERM);
    let status = w
        .wait_exit(LIMIT)
        .await
        .expect("warren exits after the deadline");
    assert!(status.success(), "{:?}", w.lines());
    wait_gone(&pids, Duration::from_secs(10)).await;
    // The broker got the task back (unacked when the connection closed).
    assert_eq!(broker::counts(&url, &q).await.map(|c| c.0), Some(1));
    broker::cleanup(&url, &q).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_program_that_cannot_run_is_a_startup_error() {
    let url = shared_url();
    let q = unique_queue("exec-startup");
    let dir = tempfile::tempdir().unwrap();
    let not_executable = dir.path().join("task.py");
    std::fs::write(&not_executable, "print('hi')\n").unwrap();
    let cases = [
        ("warren-no-such-program", "not found on PATH"),
        ("/nonexistent/task.sh", "No such file"),
        (not_executable.to_str().unwrap(), "chmod +x"),
    ];
    for (program, needle) in cases {
        let args = ["work", "--amqp-url", &url, "--queue", &q];
        let out = run(
            &[&args[..], &["--handler", "exec", "--", program]].concat(),
            LIMIT,
        );
        let msg = text(&out);
        assert!(!out.status.success(), "{program}: must fail: {msg}");
        let errors: Vec<_> = msg.lines().filter(|l| l.starts_with("error:")).collect();
        assert_eq!(errors.len(), 1, "one error line: {msg}");
        assert!(
            errors[0].contains("handler.exec.command") && errors[0].contains(needle),
            "{program}: names the key and the problem: {}",
            errors[0]
        );
        assert_eq!(
            broker::counts(&url, &q).await,
            None,
            "the pool never started: {q} was not even declared"
        );
    }
}
