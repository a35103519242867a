//! `warren dead` at scale and under faults, against the shared broker: a
//! replay SIGKILLed half-way loses nothing, listing 20,000 dead letters
//! takes bounded memory and leaves them all in place, and bad input gets
//! one line naming the fix.

mod support;

use lapin::options::{BasicPublishOptions, ConfirmSelectOptions, QueueDeclareOptions};
use lapin::protocol::BasicProperties;
use lapin::types::FieldTable;
use std::collections::BTreeSet;
use std::time::{Duration, Instant};
use support::broker::{self, shared_url, unique_queue};
use support::proc::{command, run, text};

const LIMIT: Duration = Duration::from_secs(120);

/// Declares `q` and `q.dead` (durable, classic) and puts `n` messages with
/// ids `m-0` … into the dead queue, `size` bytes each, confirmed.
async fn dead_letters(q: &str, n: usize, size: usize) {
    let (conn, ch) = broker::channel(&shared_url()).await;
    let durable = QueueDeclareOptions {
        durable: true,
        ..Default::default()
    };
    let dead = format!("{q}.dead");
    for name in [q, dead.as_str()] {
        ch.queue_declare(name.into(), durable, FieldTable::default())
            .await
            .unwrap();
    }
    ch.confirm_select(ConfirmSelectOptions::default())
        .await
        .unwrap();
    let body = vec![b'x'; size];
    for chunk in (0..n).collect::<Vec<_>>().chunks(500) {
        let mut confirms = Vec::new();
        for i in chunk {
            let props = BasicProperties::default()
                .with_message_id(format!("m-{i}").into())
                .with_delivery_mode(2);
            let options = BasicPublishOptions::default();
            let confirm = ch
                .basic_publish("".into(), dead.as_str().into(), options, &body, props)
                .await
                .unwrap();
            confirms.push(confirm);
        }
        for confirm in confirms {
            assert!(confirm.await.unwrap().is_ack());
        }
    }
    let _ = conn.close(200, "bye".into()).await;
}

fn ready(q: &str) -> u32 {
    let rt = tokio::runtime::Handle::current();
    tokio::task::block_in_place(|| rt.block_on(broker::counts(&shared_url(), q))).map_or(0, |c| c.0)
}

/// Every message id in `queue` (taken out).
async fn ids(queue: &str) -> Vec<String> {
    let all = broker::drain(&shared_url(), queue, usize::MAX).await;
    all.iter()
        .map(|m| {
            m.delivery
                .properties
                .message_id()
                .clone()
                .unwrap()
                .to_string()
        })
        .collect()
}

/// `warren dead replay --rate rate` on `q`, once `n` letters are back in
/// the work queue (its stderr piped).
fn replaying(q: &str, rate: &str, n: u32) -> std::process::Child {
    let url = shared_url();
    let args = [
        "dead",
        "replay",
        "--amqp-url",
        &url,
        "--queue",
        q,
        "--rate",
        rate,
    ];
    let child = command(&args)
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let started = Instant::now();
    while ready(q) < n {
        assert!(started.elapsed() < LIMIT, "the replay never got going");
        std::thread::sleep(Duration::from_millis(20));
    }
    child
}

#[tokio::test(flavor = "multi_thread")]
async fn a_replay_killed_half_way_loses_nothing() {
    let q = unique_queue("dead-kill");
    dead_letters(&q, 1000, 100).await;
    let url = shared_url();
    let mut child = replaying(&q, "250", 300);
    child.kill().unwrap();
    child.wait().unwrap();
    let (work, dead) = (ready(&q), ready(&format!("{q}.dead")));
    eprintln!("after SIGKILL: {work} in the work queue, {dead} in the dead queue");
    assert!(work < 1000, "killed half-way, not at the end: {work}");
    let mut seen: Vec<String> = ids(&q).await;
    seen.extend(ids(&format!("{q}.dead")).await);
    assert!(seen.len() >= 1000, "{} messages", seen.len());
    let unique: BTreeSet<String> = seen.into_iter().collect();
    let expected: BTreeSet<String> = (0..1000).map(|i| format!("m-{i}")).collect();
    assert_eq!(unique, expected, "every id is still somewhere");
    broker::cleanup(&url, &q).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn an_interrupted_replay_settles_what_it_holds_and_says_so() {
    let q = unique_queue("dead-int");
    dead_letters(&q, 300, 100).await;
    let url = shared_url();
    let child = replaying(&q, "100", 50);
    unsafe { libc::kill(child.id() as i32, libc::SIGINT) };
    let out = child.wait_with_output().unwrap();
    let said = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{said}");
    assert!(said.contains("pass was interrupted after"), "{said}");
    let (work, dead) = (ready(&q), ready(&format!("{q}.dead")));
    eprintln!("after SIGINT: {work} replayed, {dead} still dead");
    assert_eq!(work + dead, 300, "a clean stop doubles nothing");
    let mut seen: BTreeSet<String> = ids(&q).await.into_iter().collect();
    seen.extend(ids(&format!("{q}.dead")).await);
    assert_eq!(seen.len(), 300, "every id is somewhere, once");
    broker::cleanup(&url, &q).await;
}

/// Peak resident memory (KiB) of a finished child, from wait4's rusage.
fn wait_peak_kib(child: std::process::Child) -> (i32, i64) {
    let mut status = 0;
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    let pid = child.id() as i32;
    let got = unsafe { libc::wait4(pid, &mut status, 0, &mut usage) };
    assert_eq!(got, pid);
    (status, usage.ru_maxrss)
}

/// `warren dead list` on `q`: its stdout and peak RSS (KiB).
fn list_peak(q: &str) -> (String, i64) {
    let url = shared_url();
    let args = ["dead", "list", "--amqp-url", &url, "--queue", q];
    let out = tempfile::NamedTempFile::new().unwrap();
    let mut cmd = command(&args);
    cmd.stdout(out.reopen().unwrap());
    let (status, peak_kib) = wait_peak_kib(cmd.spawn().unwrap());
    let listed = std::fs::read_to_string(out.path()).unwrap();
    assert_eq!(status, 0, "{listed}");
    (listed, peak_kib)
}

#[tokio::test(flavor = "multi_thread")]
async fn listing_20000_dead_letters_takes_bounded_memory_and_keeps_them() {
    let (small, q) = (unique_queue("dead-small"), unique_queue("dead-big"));
    dead_letters(&small, 10, 4096).await;
    // 20,000 × 4 KiB = 80 MiB in the queue.
    dead_letters(&q, 20_000, 4096).await;
    let (_, baseline_kib) = list_peak(&small);
    let started = Instant::now();
    let (listed, peak_kib) = list_peak(&q);
    eprintln!(
        "warren dead list: peak RSS {baseline_kib} KiB over 10 letters, {peak_kib} KiB over \
         20,000 (80 MiB), which took {:?}",
        started.elapsed()
    );
    assert!(listed.contains("20000 dead letter(s)"), "{listed}");
    assert!(listed.contains("… 19950 more matching"), "{listed}");
    assert_eq!(ready(&format!("{q}.dead")), 20_000, "nothing taken out");
    assert!(
        peak_kib - baseline_kib < 16 * 1024,
        "memory must not grow with the queue: {baseline_kib} KiB → {peak_kib} KiB"
    );
    let first: Vec<String> = ids(&format!("{q}.dead"))
        .await
        .into_iter()
        .take(3)
        .collect();
    assert_eq!(first, ["m-0", "m-1", "m-2"], "the order is kept");
    broker::cleanup(&shared_url(), &q).await;
    broker::cleanup(&shared_url(), &small).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn bad_input_gets_one_line_naming_the_fix() {
    let q = unique_queue("dead-bad");
    let url = shared_url();
    let cases: [(&[&str], &str); 6] = [
        (&["list"], "does not exist; check --queue"),
        (&["list", "--reason", " "], "invalid --reason"),
        (&["purge"], "add --yes, or --dry-run"),
        (&["replay", "--rate", "0"], "invalid --rate"),
        (&["list", "--limit", "0"], "invalid --limit"),
        (&["show", "nope"], "does not exist"),
    ];
    for (args, expected) in cases {
        let mut all = vec!["dead"];
        all.extend_from_slice(args);
        all.extend(["--amqp-url", &url, "--queue", &q]);
        let out = run(&all, LIMIT);
        assert!(!out.status.success(), "{args:?}");
        assert!(text(&out).contains(expected), "{args:?}: {}", text(&out));
        assert_eq!(text(&out).trim().lines().count(), 1, "{}", text(&out));
    }
    // A queue that something consumes is not a dead-letter queue.
    dead_letters(&q, 1, 10).await;
    let dead = format!("{q}.dead");
    let (conn, ch) = broker::channel(&url).await;
    let _consumer = ch
        .basic_consume(
            dead.as_str().into(),
            "other".into(),
            Default::default(),
            FieldTable::default(),
        )
        .await
        .unwrap();
    let out = run(&["dead", "list", "--amqp-url", &url, "--queue", &q], LIMIT);
    assert!(text(&out).contains("has 1 consumer(s)"), "{}", text(&out));
    let _ = conn.close(200, "bye".into()).await;
    // The password never appears.
    let wrong = "amqp://guest:sekrit-pw@127.0.0.1:5672/%2f";
    let out = run(&["dead", "list", "--amqp-url", wrong, "--queue", &q], LIMIT);
    assert!(!out.status.success());
    assert!(!text(&out).contains("sekrit-pw"), "{}", text(&out));
    broker::cleanup(&url, &q).await;
}
