//! The tutorial's promises, against a real broker and real `warren` processes:
//! round-robin, fair dispatch, redelivery after SIGKILL, graceful SIGTERM.
//! Which process handled which task comes from the handler's own record
//! (tests/support/record.rs), how many were acked from /metrics.

mod support;

use std::collections::BTreeSet;
use std::time::Duration;
use support::broker::{self, shared_url, unique_queue};
use support::proc::Warren;
use support::record::Recorder;

const MIN: Duration = Duration::from_secs(60);

/// `warren work` on the shared broker with the recording handler.
fn work(rec: &Recorder, name: &str, queue: &str, per_dot: Duration, extra: &[&str]) -> Warren {
    rec.work(name, &shared_url(), queue, per_dot, extra)
}

fn ms(n: u64) -> Duration {
    Duration::from_millis(n)
}

#[tokio::test(flavor = "multi_thread")]
async fn two_workers_share_tasks_round_robin() {
    let url = shared_url();
    let q = unique_queue("round_robin");
    let rec = Recorder::new();
    let a = work(&rec, "A", &q, ms(50), &["--concurrency", "1"]);
    let b = work(&rec, "B", &q, ms(50), &["--concurrency", "1"]);
    a.wait_ready().await;
    b.wait_ready().await;
    broker::wait_consumers(&url, &q, 2, MIN).await;

    let bodies: Vec<Vec<u8>> = (0..10).map(|i| format!("task-{i}.").into_bytes()).collect();
    let refs: Vec<&[u8]> = bodies.iter().map(Vec::as_slice).collect();
    broker::publish(&url, &q, &refs).await;
    let acked = support::health::tasks_total(warren::metrics::Disposition::Acked);
    let total = || a.metric(&acked) + b.metric(&acked);
    let started = std::time::Instant::now();
    while total() < 10.0 {
        assert!(started.elapsed() < MIN, "only {} of 10 tasks done", total());
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let (ra, rb) = (rec.record("A").received(), rec.record("B").received());
    println!("A got {ra:?}\nB got {rb:?}");
    assert_eq!(ra.len() + rb.len(), 10, "each task processed exactly once");
    assert!(
        (4..=6).contains(&ra.len()),
        "round-robin should split 10 tasks ~evenly: A={} B={}",
        ra.len(),
        rb.len()
    );
    let all: BTreeSet<_> = ra.iter().chain(&rb).collect();
    assert_eq!(all.len(), 10, "no task processed twice");
    broker::wait_empty(&url, &q, MIN).await;
    broker::cleanup(&url, &q).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn fair_dispatch_sends_new_tasks_to_the_idle_worker() {
    let url = shared_url();
    let q = unique_queue("fair");
    let rec = Recorder::new();
    let flags = ["--concurrency", "1", "--prefetch", "1"];
    let a = work(&rec, "A", &q, ms(100), &flags);
    let b = work(&rec, "B", &q, ms(100), &flags);
    a.wait_ready().await;
    b.wait_ready().await;
    broker::wait_consumers(&url, &q, 2, MIN).await;

    // 40 dots = 4 s of work for whoever takes it.
    let long = format!("long{}", ".".repeat(40));
    broker::publish(&url, &q, &[long.as_bytes()]).await;
    let started = std::time::Instant::now();
    let took_long = |w: &Warren| {
        let got = rec.record(&w.name).received();
        got.iter().filter(|b| b.starts_with("long")).count() == 1
    };
    let (busy, idle) = loop {
        if took_long(&a) {
            break (&a, &b);
        }
        if took_long(&b) {
            break (&b, &a);
        }
        assert!(started.elapsed() < MIN, "nobody took the long task");
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    let shorts: Vec<String> = (0..4).map(|i| format!("short-{i}.")).collect();
    let refs: Vec<&[u8]> = shorts.iter().map(|s| s.as_bytes()).collect();
    broker::publish(&url, &q, &refs).await;
    idle.wait_acked(4, MIN).await;
    let busy_record = rec.record(&busy.name);
    assert!(
        busy_record.done().is_empty(),
        "the long task is still running"
    );
    assert_eq!(
        busy_record.received().len(),
        1,
        "{} (busy) must not be given short tasks: {:?}",
        busy.name,
        busy_record.received()
    );
    let mut got = rec.record(&idle.name).received();
    got.sort();
    assert_eq!(got, shorts, "{} (idle) gets every short task", idle.name);
    busy.wait_acked(1, MIN).await;
    broker::cleanup(&url, &q).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn tasks_of_a_killed_worker_are_redelivered_to_another() {
    let url = shared_url();
    let q = unique_queue("redeliver");
    // A holds 4 tasks (2 running + 2 prefetched), each 100 s of work: it will never ack.
    let rec = Recorder::new();
    let flags = ["--concurrency", "2", "--prefetch", "4"];
    let mut a = work(&rec, "A", &q, Duration::from_secs(10), &flags);
    a.wait_ready().await;
    let bodies: Vec<String> = (0..6).map(|i| format!("job-{i}..........")).collect();
    let refs: Vec<&[u8]> = bodies.iter().map(|s| s.as_bytes()).collect();
    broker::publish(&url, &q, &refs).await;
    rec.wait_received("A", 2, MIN).await;
    let (ready, _) = broker::counts(&url, &q).await.unwrap();
    assert_eq!(ready, 2, "A holds 4 of 6 unacked (prefetch 4)");

    a.signal(libc::SIGKILL);
    assert!(a.wait_exit(MIN).await.is_some());
    assert_eq!(rec.record("A").done(), Vec::<String>::new());

    let b = work(&rec, "B", &q, ms(1), &["--concurrency", "3"]);
    b.wait_acked(6, MIN).await;
    let record = rec.record("B");
    let mut got = record.received();
    got.sort();
    assert_eq!(
        got, bodies,
        "every task, including the 4 A held, completed by B"
    );
    let redelivered = record.starts().filter(|t| t.redelivered).count();
    assert!(
        redelivered >= 4,
        "the 4 tasks A held carry the redelivered flag ({redelivered})"
    );
    broker::wait_empty(&url, &q, MIN).await;
    broker::cleanup(&url, &q).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn sigterm_finishes_in_flight_tasks_and_exits_zero() {
    let url = shared_url();
    let q = unique_queue("sigterm");
    let rec = Recorder::new();
    let flags = ["--concurrency", "1", "--prefetch", "3"];
    let mut a = work(&rec, "A", &q, ms(100), &flags);
    a.wait_ready().await;
    broker::publish(&url, &q, &[b"slow..........", b"next-1.", b"next-2."]).await;
    rec.wait_received("A", 1, MIN).await;
    a.signal(libc::SIGTERM);
    let status = a.wait_exit(MIN).await.expect("warren exits after SIGTERM");
    assert!(
        status.success(),
        "exit code 0 after a drain, got {status:?}"
    );
    let record = rec.record("A");
    assert_eq!(
        record.done().len(),
        1,
        "the in-flight task finished before exit"
    );
    assert_eq!(
        record.received(),
        ["slow.........."],
        "no new task started after SIGTERM"
    );
    // The finished task was acked; the two prefetched ones are back, ready.
    let (ready, consumers) = broker::counts(&url, &q).await.unwrap();
    assert_eq!((ready, consumers), (2, 0));
    let rest = broker::drain(&url, &q, 10).await;
    let bodies: Vec<_> = rest
        .iter()
        .map(|m| String::from_utf8_lossy(&m.delivery.data).into_owned())
        .collect();
    assert_eq!(bodies, ["next-1.", "next-2."]);
    broker::cleanup(&url, &q).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_task_finished_behind_a_slow_one_is_acked_and_the_slow_one_is_not() {
    // Acks are coalesced (one `multiple` ack per contiguous run): a finished
    // task behind an unfinished one must still be acked, and the unfinished
    // one must never be covered by a `multiple` ack.
    let url = shared_url();
    let q = unique_queue("ack_order");
    let flags = ["--concurrency", "3", "--per-dot", "10s"];
    let mut a = support::proc::work("A", &url, &q, &flags);
    a.wait_ready().await;
    broker::publish(&url, &q, &[b"slow..........", b"fast", b"also fast"]).await;
    a.wait_acked(2, MIN).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    a.signal(libc::SIGKILL);
    a.wait_exit(MIN).await;
    let started = std::time::Instant::now();
    while broker::counts(&url, &q).await.map(|c| c.0) != Some(1) {
        assert!(
            started.elapsed() < MIN,
            "exactly the slow task returns to the queue"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let back = broker::drain(&url, &q, 5).await;
    assert_eq!(back.len(), 1);
    assert_eq!(back[0].delivery.data, b"slow..........");
    assert!(back[0].delivery.redelivered);
    broker::cleanup(&url, &q).await;
}

/// 40 tasks of 200 ms for a `warren work` with concurrency 2 and `flags`; a
/// second one (same settings) starts 0.5 s after the first took a task.
/// The number of tasks each processed.
async fn late_joiner(flags: &[&str]) -> (usize, usize) {
    let url = shared_url();
    let q = unique_queue("late_joiner");
    let rec = Recorder::new();
    // The whole backlog is there before the first one consumes (`warren
    // publish` declares the queue and pipelines its confirms).
    let file = tempfile::NamedTempFile::new().expect("temp file");
    let bodies: Vec<String> = (0..40).map(|i| format!("task-{i}.\n")).collect();
    std::fs::write(file.path(), bodies.concat()).expect("write the tasks");
    let path = file.path().to_str().expect("utf-8 path");
    let args = ["publish", "--amqp-url", &url, "--queue", &q, "--file", path];
    let out = support::proc::run(&args, MIN);
    assert!(out.status.success(), "{out:?}");
    let mut all = vec!["--concurrency", "2"];
    all.extend(flags);
    let _first = work(&rec, "first", &q, ms(200), &all);
    rec.wait_received("first", 1, MIN).await;
    tokio::time::sleep(ms(500)).await;
    let started = std::time::Instant::now();
    let _second = work(&rec, "second", &q, ms(200), &all);
    let done = || rec.record("first").done().len() + rec.record("second").done().len();
    while done() < 40 {
        assert!(started.elapsed() < MIN, "only {} of 40 tasks done", done());
        tokio::time::sleep(ms(50)).await;
    }
    broker::cleanup(&url, &q).await;
    let (first, second) = (rec.record("first").done(), rec.record("second").done());
    let unique: BTreeSet<_> = first.iter().chain(&second).collect();
    assert_eq!(unique.len(), 40, "every task done");
    (first.len(), second.len())
}

#[tokio::test(flavor = "multi_thread")]
async fn a_pod_added_to_a_backlog_gets_work_at_once_with_default_prefetch() {
    let (first, second) = late_joiner(&[]).await;
    let share = second as f64 / (first + second) as f64;
    println!(
        "defaults (prefetch auto): first {first}, second {second}: the late one did {:.0}%",
        share * 100.0
    );
    assert!(
        share >= 0.3,
        "the pod that joined late must take at least 30% of the backlog: {first} vs {second}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn with_a_large_pinned_prefetch_the_first_pod_hoards_the_backlog() {
    let (first, second) = late_joiner(&["--prefetch", "1000"]).await;
    let share = second as f64 / (first + second) as f64;
    println!(
        "--prefetch 1000: first {first}, second {second}: the late one did {:.0}%",
        share * 100.0
    );
    // The first pod took every task when it subscribed: nothing was left
    // in the queue for the second one.
    assert_eq!(second, 0, "first {first} vs second {second}");
}
