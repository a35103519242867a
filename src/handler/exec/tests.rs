use super::*;

fn handler(script: &str) -> ExecHandler {
    let config = ExecConfig {
        command: vec!["/bin/sh".into(), "-c".into(), script.into()],
        kill_grace: Duration::from_millis(200),
        ..ExecConfig::default()
    };
    ExecHandler::new(&config).unwrap()
}

#[tokio::test]
async fn the_body_goes_to_stdin_byte_exact() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("got");
    let h = handler(&format!("cat > '{}'", out.display()));
    // Larger than a pipe buffer, with NUL and non-UTF-8 bytes.
    let body: Vec<u8> = (0..200_000u32).map(|i| (i % 256) as u8).collect();
    let task = Task::for_test(body.clone());
    assert_eq!(h.handle(&task).await, Outcome::Ack);
    assert_eq!(std::fs::read(&out).unwrap(), body);
}

#[tokio::test]
async fn exit_codes_map_to_outcomes() {
    let task = Task::for_test(b"x".to_vec());
    let rejected = handler("echo 'bad input' >&2; exit 65").handle(&task).await;
    assert_eq!(
        rejected,
        Outcome::reject("exit code 65 (a reject code); stderr: bad input")
    );
    let retried = handler("exit 1").handle(&task).await;
    assert_eq!(retried, Outcome::retry("exit code 1 (stderr empty)"));
    let killed = handler("kill -KILL $$").handle(&task).await;
    assert_eq!(killed, Outcome::retry("killed by signal 9 (stderr empty)"));
    // A program that never reads its stdin still gets its exit code seen.
    let big = Task::for_test(vec![b'.'; 1 << 20]);
    assert_eq!(handler("exit 0").handle(&big).await, Outcome::Ack);
}

#[tokio::test]
async fn metadata_is_in_the_environment() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("env");
    let h = handler(&format!("env > '{}'", out.display()));
    let mut task = Task::for_test(Vec::new());
    task.message_id = Some("m-1".into());
    task.attempt = 2;
    task.queue = "jobs".into();
    assert_eq!(h.handle(&task).await, Outcome::Ack);
    let env = std::fs::read_to_string(&out).unwrap();
    for line in [
        "WARREN_MESSAGE_ID=m-1",
        "WARREN_CORRELATION_ID=",
        "WARREN_ATTEMPT=2",
        "WARREN_REDELIVERED=false",
        "WARREN_QUEUE=jobs",
        "WARREN_HEADERS={}",
    ] {
        assert!(env.lines().any(|l| l == line), "{line} missing from {env}");
    }
}

#[tokio::test]
async fn a_background_process_does_not_hold_the_task() {
    // `sleep` keeps stdout open; the task must still end when the shell does.
    let h = handler("sleep 1000 & echo started");
    let task = Task::for_test(Vec::new());
    let started = Instant::now();
    assert_eq!(h.handle(&task).await, Outcome::Ack);
    assert!(started.elapsed() < Duration::from_secs(3));
}

#[test]
fn a_missing_program_is_a_config_error() {
    let config = ExecConfig {
        command: vec!["warren-no-such-program".into()],
        ..ExecConfig::default()
    };
    let err = ExecHandler::new(&config).unwrap_err().to_string();
    assert!(err.contains("handler.exec.command"), "{err}");
    assert!(err.contains("not found on PATH"), "{err}");
}
