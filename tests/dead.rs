//! `warren dead …` against the shared broker: dead letters made by a real
//! `warren work` (an exec handler exiting 65, one failing until
//! `max_attempts`) and by the broker itself (a TTL with a dead-letter
//! exchange), then listed, shown, replayed, purged and exported by the real
//! binary, while a worker consumes the work queue.

mod support;

use lapin::options::{BasicPublishOptions, ConfirmSelectOptions, QueueDeclareOptions};
use lapin::protocol::BasicProperties;
use lapin::types::{AMQPValue, FieldTable};
use serde_json::Value;
use std::collections::BTreeMap;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::time::{Duration, Instant};
use support::broker::{self, shared_url, unique_queue};
use support::proc::{Warren, command, run, text};

const LIMIT: Duration = Duration::from_secs(60);

/// The handler: records each task's id and headers, then fails ("bad…"
/// bodies exit 65, a reject; "flaky" exits 1, a retry) until `$DIR/fixed`
/// exists.
const HANDLER: &str = "#!/bin/bash\nbody=$(cat)\n\
    printf '%s\\t%s\\n' \"$WARREN_MESSAGE_ID\" \"$WARREN_HEADERS\" >> \"$DIR/seen\"\n\
    [ -e \"$DIR/fixed\" ] && exit 0\n\
    case \"$body\" in *bad*) echo 'bad input' >&2; exit 65;; *flaky*) exit 1;; esac\n";

/// `warren dead <args> --queue q` against the shared broker.
fn dead(q: &str, args: &[&str]) -> (bool, String) {
    let url = shared_url();
    let mut all = vec!["dead"];
    all.extend_from_slice(args);
    all.extend(["--amqp-url", &url, "--queue", q]);
    let out = run(&all, LIMIT);
    (out.status.success(), text(&out))
}

fn ready(q: &str) -> u32 {
    let rt = tokio::runtime::Handle::current();
    tokio::task::block_in_place(|| rt.block_on(broker::counts(&shared_url(), q))).map_or(0, |c| c.0)
}

async fn wait_ready_count(q: &str, n: u32) {
    let started = Instant::now();
    while broker::counts(&shared_url(), q).await.map(|c| c.0) != Some(n) {
        assert!(started.elapsed() < LIMIT, "{q}: waited for {n} messages");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// A worker on `q` whose handler fails until `dir/fixed` exists.
async fn worker(q: &str, dir: &Path) -> Warren {
    let path = dir.join("task.sh");
    let script = HANDLER.replacen(
        "#!/bin/bash\n",
        &format!("#!/bin/bash\nDIR='{}'\n", dir.display()),
        1,
    );
    std::fs::write(&path, script).unwrap();
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).unwrap();
    let url = shared_url();
    let args = [
        "work",
        "--amqp-url",
        &url,
        "--queue",
        q,
        "--handler",
        "exec",
        "--max-attempts",
        "2",
        "--backoff",
        "100ms",
        "--",
        path.to_str().unwrap(),
    ];
    let w = Warren::spawn_with("w", command(&args));
    w.wait_ready().await;
    w
}

/// Five dead letters: three rejected (one with a non-UTF-8 body and its own
/// headers), one that gave up after 2 attempts, one the broker expired.
async fn poison(q: &str, dir: &Path) -> Warren {
    let w = worker(q, dir).await;
    let url = shared_url();
    broker::publish(&url, q, &[b"bad one", b"bad two", b"flaky"]).await;
    let mut headers = FieldTable::default();
    headers.insert("tenant".into(), AMQPValue::LongString("acme".into()));
    let props = BasicProperties::default()
        .with_message_id("binary-1".into())
        .with_correlation_id("corr-7".into())
        .with_headers(headers);
    broker::publish_with(&url, q, b"\xff\xfe bad \x00\x01", props).await;
    wait_ready_count(&format!("{q}.dead"), 4).await;
    // The broker's own dead-lettering: a TTL queue whose DLX is the dead queue.
    let (conn, ch) = broker::channel(&url).await;
    let mut args = FieldTable::default();
    args.insert("x-message-ttl".into(), AMQPValue::LongLongInt(0));
    args.insert(
        "x-dead-letter-exchange".into(),
        AMQPValue::LongString("".into()),
    );
    let dead = format!("{q}.dead");
    args.insert(
        "x-dead-letter-routing-key".into(),
        AMQPValue::LongString(dead.as_str().into()),
    );
    let src = format!("{q}.src");
    let options = QueueDeclareOptions {
        durable: true,
        auto_delete: true,
        ..Default::default()
    };
    ch.queue_declare(src.as_str().into(), options, args)
        .await
        .unwrap();
    let _ = conn.close(200, "bye".into()).await;
    let props = BasicProperties::default().with_message_id("expired-1".into());
    broker::publish_with(&url, &src, b"expired task", props).await;
    wait_ready_count(&dead, 5).await;
    w
}

fn json_rows(q: &str, args: &[&str]) -> Vec<Value> {
    let mut all = vec!["list", "--json"];
    all.extend_from_slice(args);
    let (ok, out) = dead(q, &all);
    assert!(ok, "{out}");
    out.lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}")))
        .collect()
}

fn id_of(rows: &[Value], body_part: &str) -> String {
    let row = rows
        .iter()
        .find(|r| r["body_preview"].as_str().unwrap().contains(body_part));
    row.unwrap_or_else(|| panic!("{body_part} in {rows:?}"))["id"]
        .as_str()
        .unwrap()
        .to_owned()
}

#[tokio::test(flavor = "multi_thread")]
async fn dead_letters_are_listed_shown_replayed_and_purged_while_a_worker_runs() {
    let (q, dir) = (unique_queue("dead"), tempfile::tempdir().unwrap());
    let dq = format!("{q}.dead");
    let w = poison(&q, dir.path()).await;

    let (ok, list) = dead(&q, &["list"]);
    assert!(ok, "{list}");
    for expected in [
        "5 dead letter(s)",
        "rejected              3",
        "max attempts          1",
        "broker dead-lettered  1",
        "'bad one'",
        "'flaky'",
        "expired in",
        "gave up after 2 attempts",
    ] {
        assert!(list.contains(expected), "{expected:?} in\n{list}");
    }
    assert_eq!(ready(&dq), 5, "list leaves every letter in place");
    let rows = json_rows(&q, &[]);
    assert_eq!(rows.len(), 5, "{rows:?}");
    let reasons: Vec<&str> = rows
        .iter()
        .map(|r| r["category"].as_str().unwrap())
        .collect();
    assert_eq!(
        reasons.iter().filter(|c| **c == "rejected").count(),
        3,
        "{reasons:?}"
    );

    let (ok, shown) = dead(&q, &["show", "binary-1"]);
    assert!(ok, "{shown}");
    for expected in [
        "not UTF-8",
        "base64:",
        "tenant: \"acme\"",
        "corr-7",
        "exit code 65",
        "x-warren-attempts: 1",
    ] {
        assert!(shown.contains(expected), "{expected:?} in\n{shown}");
    }

    // Fix the handler, then replay the rejected ones only.
    std::fs::write(dir.path().join("fixed"), "").unwrap();
    let (ok, out) = dead(&q, &["replay", "--reason", "EXIT CODE 65", "--dry-run"]);
    assert!(ok && out.contains("would replay 3 of 5"), "{out}");
    assert_eq!(ready(&dq), 5, "a dry run changes nothing");
    let (ok, out) = dead(&q, &["replay", "--reason", "exit code 65"]);
    assert!(ok && out.contains("replayed 3 of 5"), "{out}");
    w.wait_metric("warren_replayed_tasks_total{outcome=\"acked\"}", 3.0, LIMIT)
        .await;
    assert_eq!(ready(&dq), 2);
    let seen = std::fs::read_to_string(dir.path().join("seen")).unwrap();
    let replayed: Vec<&str> = seen
        .lines()
        .filter(|l| l.contains("x-warren-replayed"))
        .collect();
    assert_eq!(replayed.len(), 3, "{seen}");
    for line in &replayed {
        assert!(line.contains("\"x-warren-replayed\":1"), "{line}");
        assert!(
            !line.contains("x-warren-reason") && !line.contains("x-warren-attempt\""),
            "{line}"
        );
    }
    assert!(
        replayed
            .iter()
            .any(|l| l.starts_with("binary-1\t") && l.contains("acme")),
        "{seen}"
    );

    // Purge exactly one, by id.
    let rows = json_rows(&q, &[]);
    let flaky = id_of(&rows, "flaky");
    let (ok, out) = dead(&q, &["purge", "--message-id", &flaky, "--yes"]);
    assert!(ok && out.contains("purged 1 of 2"), "{out}");
    let left: Vec<String> = json_rows(&q, &[])
        .iter()
        .map(|r| r["id"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(left, ["expired-1"]);
    broker::cleanup(&shared_url(), &q).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn export_lines_publish_the_same_messages_again() {
    let (q, dir) = (unique_queue("dead-export"), tempfile::tempdir().unwrap());
    let dq = format!("{q}.dead");
    drop(poison(&q, dir.path()).await);
    let file = dir.path().join("export.jsonl");
    let (ok, out) = dead(&q, &["export", "--file", file.to_str().unwrap()]);
    assert!(ok, "{out}");
    let lines = std::fs::read_to_string(&file).unwrap();
    assert_eq!(lines.lines().count(), 5, "{lines}");
    assert_eq!(ready(&dq), 5, "export leaves every letter in place");
    let copy = format!("{q}.copy");
    let (conn, ch) = broker::channel(&shared_url()).await;
    let durable = QueueDeclareOptions {
        durable: true,
        ..Default::default()
    };
    ch.queue_declare(copy.as_str().into(), durable, FieldTable::default())
        .await
        .unwrap();
    ch.confirm_select(ConfirmSelectOptions::default())
        .await
        .unwrap();
    for line in lines.lines() {
        let (props, body) = warren::dead::render::import_line(line).unwrap();
        let options = BasicPublishOptions::default();
        ch.basic_publish("".into(), copy.as_str().into(), options, &body, props)
            .await
            .unwrap()
            .await
            .unwrap();
    }
    let _ = conn.close(200, "bye".into()).await;
    let key = |m: &lapin::message::BasicGetMessage| {
        (
            m.delivery
                .properties
                .message_id()
                .clone()
                .unwrap()
                .to_string(),
            (
                m.delivery.data.clone(),
                m.delivery.properties.headers().clone(),
            ),
        )
    };
    let originals: BTreeMap<_, _> = broker::drain(&shared_url(), &dq, 10)
        .await
        .iter()
        .map(key)
        .collect();
    let copies: BTreeMap<_, _> = broker::drain(&shared_url(), &copy, 10)
        .await
        .iter()
        .map(key)
        .collect();
    assert_eq!(originals.len(), 5);
    assert_eq!(copies, originals, "same bodies and headers, byte for byte");
    broker::cleanup(&shared_url(), &q).await;
    broker::cleanup(&shared_url(), &copy).await;
}
