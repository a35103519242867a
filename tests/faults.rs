//! Fault tests with real processes, real signals and a private broker that
//! we stop and restart: drain on SIGTERM, broker restart, chaos.

mod support;

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};
use support::broker::{self, shared_url, unique_queue};
use support::node::RabbitNode;
use support::proc::{Warren, http_get, run, text, work};

const LIMIT: Duration = Duration::from_secs(120);

/// message_id → body, and message_id → number of "[x] Done", from log lines.
#[derive(Default)]
struct Ledger {
    bodies: BTreeMap<String, String>,
    done: BTreeMap<String, usize>,
    /// (log timestamp, redelivered flag) of every delivery, per message id.
    received_redelivered: BTreeMap<String, Vec<(String, bool)>>,
}

impl Ledger {
    fn add(&mut self, lines: &[String]) {
        for line in lines {
            let Some(id) = field(line, "messaging.message.id=\"") else {
                continue;
            };
            if let Some(body) = line.split("[x] Received '").nth(1) {
                self.bodies
                    .insert(id.clone(), body.trim_end_matches('\'').to_owned());
                let redelivered = line.contains("redelivered=true");
                // Text log lines start with an RFC 3339 UTC timestamp: sortable as text.
                let at = line.split_whitespace().next().unwrap_or("").to_owned();
                let deliveries = self.received_redelivered.entry(id).or_default();
                deliveries.push((at, redelivered));
                deliveries.sort();
            } else if line.contains("[x] Done") {
                *self.done.entry(id).or_default() += 1;
            }
        }
    }
}

fn field(line: &str, prefix: &str) -> Option<String> {
    let rest = line.split(prefix).nth(1)?;
    Some(rest[..rest.find('"')?].to_owned())
}

#[tokio::test(flavor = "multi_thread")]
async fn sigterm_drains_in_flight_and_requeues_prefetched() {
    let url = shared_url();
    let q = unique_queue("drain");
    let mut a = work(
        "A",
        &url,
        &q,
        &[
            "--concurrency",
            "2",
            "--prefetch",
            "6",
            "--per-dot",
            "300ms",
        ],
    );
    let base = a.http_base().await;
    a.wait_ready().await;
    let tasks: Vec<String> = (0..6).map(|i| format!("t{i}..........")).collect();
    let refs: Vec<&[u8]> = tasks.iter().map(|t| t.as_bytes()).collect();
    broker::publish(&url, &q, &refs).await;
    a.wait_for("[x] Received", 2, LIMIT).await;
    assert_eq!(http_get(&format!("{base}/readyz")).0, 200);

    let signalled = Instant::now();
    a.signal(libc::SIGTERM);
    // While the two 3 s tasks finish: unready (Kubernetes stops routing), still live.
    a.wait_for("requeued prefetched tasks", 1, LIMIT).await;
    let (status, body) = http_get(&format!("{base}/readyz"));
    assert_eq!(
        (status, body.trim()),
        (503, "not ready: draining for shutdown")
    );
    assert_eq!(http_get(&format!("{base}/livez")).0, 200);
    let (ready, _) = broker::counts(&url, &q).await.unwrap();
    assert_eq!(
        ready, 4,
        "the 4 prefetched-but-unstarted tasks are back at once, not after exit"
    );

    let status = a.wait_exit(LIMIT).await.expect("exits");
    assert!(status.success(), "{status:?}");
    assert!(
        signalled.elapsed() < Duration::from_secs(25),
        "within the shutdown timeout"
    );
    assert_eq!(a.count("[x] Done"), 2, "both in-flight tasks finished");
    assert_eq!(
        a.count("[x] Received"),
        2,
        "nothing new started after SIGTERM"
    );

    let b = work("B", &url, &q, &["--per-dot", "1ms"]);
    b.wait_for("[x] Done", 4, LIMIT).await;
    let mut ledger = Ledger::default();
    ledger.add(&a.lines());
    ledger.add(&b.lines());
    let mut done: Vec<&String> = ledger.done.keys().map(|id| &ledger.bodies[id]).collect();
    done.sort();
    assert_eq!(done, tasks.iter().collect::<Vec<_>>(), "none lost");
    assert!(
        ledger.done.values().all(|&n| n == 1),
        "none processed twice: {:?}",
        ledger.done
    );
    broker::wait_empty(&url, &q, LIMIT).await;
    broker::cleanup(&url, &q).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn workers_ride_out_a_broker_restart() {
    let mut node = RabbitNode::start();
    let url = node.amqp_url();
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("tasks");
    std::fs::write(
        &file,
        (0..300).map(|i| format!("r{i}.....\n")).collect::<String>(),
    )
    .unwrap();
    let out = run(
        &[
            "publish",
            "--amqp-url",
            &url,
            "--file",
            file.to_str().unwrap(),
        ],
        LIMIT,
    );
    assert!(out.status.success(), "{}", text(&out));

    let flags = ["--concurrency", "5", "--per-dot", "20ms"];
    let mut procs = [
        work("A", &url, "task_queue", &flags),
        work("B", &url, "task_queue", &flags),
    ];
    let mut bases = Vec::new();
    for w in &procs {
        bases.push(w.http_base().await);
        w.wait_for("[x] Done", 10, LIMIT).await;
    }
    node.stop();
    for base in &bases {
        let started = Instant::now();
        while http_get(&format!("{base}/readyz")).0 != 503 {
            assert!(
                started.elapsed() < LIMIT,
                "readyz never turned 503 without a broker"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        assert_eq!(
            http_get(&format!("{base}/livez")).0,
            200,
            "liveness ignores the broker"
        );
        let (_, metrics) = http_get(&format!("{base}/metrics"));
        assert!(metrics.contains("warren_broker_connected 0"), "{metrics}");
    }
    tokio::time::sleep(Duration::from_secs(2)).await;
    node.restart();
    for (w, base) in procs.iter_mut().zip(&bases) {
        assert!(
            w.is_running(),
            "{} must not exit while the broker is down",
            w.name
        );
        let started = Instant::now();
        while http_get(&format!("{base}/readyz")).0 != 200 {
            assert!(
                started.elapsed() < LIMIT,
                "{} never became ready again",
                w.name
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        assert!(
            w.count("reconnected after") >= 1,
            "{}",
            w.lines().join("\n")
        );
    }
    broker::wait_empty(&url, "task_queue", LIMIT).await;
    // Wait for the last in-flight tasks, then check every task completed.
    tokio::time::sleep(Duration::from_secs(1)).await;
    let mut ledger = Ledger::default();
    for w in &procs {
        ledger.add(&w.lines());
    }
    let bodies: BTreeSet<&String> = ledger.done.keys().map(|id| &ledger.bodies[id]).collect();
    assert_eq!(bodies.len(), 300, "every task completed at least once");
    for w in &procs {
        let (_, metrics) = http_get(&format!(
            "{}/metrics",
            bases[procs.iter().position(|p| p.name == w.name).unwrap()]
        ));
        assert!(
            metrics.contains("warren_reconnects_total 1")
                || metrics.contains("warren_reconnects_total 2"),
            "{metrics}"
        );
    }
}

/// A tiny deterministic PRNG so a failing run can be replayed from its seed.
struct Lcg(u64);

impl Lcg {
    fn next(&mut self, below: u64) -> u64 {
        self.0 = self
            .0
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        (self.0 >> 33) % below
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn chaos_kills_and_a_broker_restart_lose_nothing() {
    let mut node = RabbitNode::start();
    let url = node.amqp_url();
    let total = 3000;
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("tasks");
    std::fs::write(
        &file,
        (0..total)
            .map(|i| format!("c{i:05}..........\n"))
            .collect::<String>(),
    )
    .unwrap();
    let out = run(
        &[
            "publish",
            "--amqp-url",
            &url,
            "--file",
            file.to_str().unwrap(),
        ],
        LIMIT,
    );
    assert!(out.status.success(), "{}", text(&out));

    let seed = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos() as u64;
    println!("chaos seed {seed}");
    let mut rng = Lcg(seed);
    let flags = ["--concurrency", "10", "--per-dot", "15ms"];
    let spawn = |i: usize, generation: usize| {
        work(&format!("w{i}.{generation}"), &url, "task_queue", &flags)
    };
    let mut procs: Vec<Warren> = (0..3).map(|i| spawn(i, 0)).collect();
    let mut ledger = Ledger::default();
    let (mut kills, mut generation, mut restarted_broker) = (0, 0, false);
    let mut broker_stopped_at = String::new();
    let started = Instant::now();
    loop {
        tokio::time::sleep(Duration::from_millis(2000 + rng.next(2000))).await;
        let ready = broker::counts(&url, "task_queue").await.map(|c| c.0);
        if ready == Some(0) {
            break;
        }
        assert!(
            started.elapsed() < Duration::from_secs(300),
            "chaos run did not finish"
        );
        if kills == 2 && !restarted_broker {
            broker_stopped_at =
                humantime::format_rfc3339_micros(std::time::SystemTime::now()).to_string();
            node.stop();
            tokio::time::sleep(Duration::from_secs(1)).await;
            node.restart();
            restarted_broker = true;
            continue;
        }
        let victim = rng.next(3) as usize;
        procs[victim].signal(libc::SIGKILL);
        procs[victim].wait_exit(LIMIT).await;
        ledger.add(&procs[victim].lines());
        generation += 1;
        procs[victim] = spawn(victim, generation);
        kills += 1;
    }
    // The queue is empty; let the last in-flight tasks finish and be acked.
    let settle_started = Instant::now();
    loop {
        let mut current = Ledger::default();
        for w in &procs {
            current.add(&w.lines());
        }
        let done: usize = current.done.len() + ledger.done.len();
        if done >= total || settle_started.elapsed() > Duration::from_secs(30) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    for w in &procs {
        ledger.add(&w.lines());
    }
    assert!(restarted_broker, "the broker restart happened");
    let completed: BTreeSet<&String> = ledger.done.keys().map(|id| &ledger.bodies[id]).collect();
    let duplicates: Vec<&String> = ledger
        .done
        .iter()
        .filter(|(_, n)| **n > 1)
        .map(|(id, _)| id)
        .collect();
    // A repeat delivery must carry the redelivered flag. The one exception is
    // the broker's own: a classic queue restarted while a task was unacked may
    // deliver it again unflagged (RabbitMQ does not always persist the
    // "delivered" mark). Those are counted and shown, not failed.
    let (mut unflagged, mut unflagged_after_restart) = (Vec::new(), 0);
    for (id, deliveries) in &ledger.received_redelivered {
        for pair in deliveries.windows(2) {
            let ((before, _), (after, flagged)) = (&pair[0], &pair[1]);
            if *flagged {
                continue;
            }
            if before.as_str() < broker_stopped_at.as_str()
                && after.as_str() > broker_stopped_at.as_str()
            {
                unflagged_after_restart += 1;
            } else {
                unflagged.push(id);
            }
        }
    }
    println!(
        "chaos: {total} tasks, {kills} SIGKILLs, 1 broker restart, {} completed, {} completed more than once, \
         {} deliveries in all, {unflagged_after_restart} repeat deliveries unflagged across the broker restart, {:.1}s",
        completed.len(),
        duplicates.len(),
        ledger
            .received_redelivered
            .values()
            .map(Vec::len)
            .sum::<usize>(),
        started.elapsed().as_secs_f64()
    );
    assert_eq!(
        completed.len(),
        total,
        "every task id completed at least once"
    );
    assert!(
        unflagged.is_empty(),
        "a second delivery always carries the redelivered flag: {unflagged:?}"
    );
    assert_eq!(
        broker::counts(&url, "task_queue").await.map(|c| c.0),
        Some(0)
    );
    assert!(kills >= 3, "at least three kills happened ({kills})");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_second_sigterm_exits_at_once_and_the_broker_keeps_the_task() {
    let url = shared_url();
    let q = unique_queue("second_signal");
    let mut a = work("A", &url, &q, &["--concurrency", "1", "--per-dot", "10s"]);
    a.wait_ready().await;
    broker::publish(&url, &q, &[b"long.........."]).await;
    a.wait_for("[x] Received", 1, LIMIT).await;
    a.signal(libc::SIGTERM);
    a.wait_for("draining", 1, LIMIT).await;
    let signalled = Instant::now();
    a.signal(libc::SIGTERM);
    let status = a.wait_exit(LIMIT).await.expect("exits");
    assert!(
        signalled.elapsed() < Duration::from_secs(5),
        "the second signal does not wait for the 100 s task"
    );
    assert_eq!(status.code(), Some(130), "{status:?}");
    assert_eq!(a.count("[x] Done"), 0);
    let started = Instant::now();
    while broker::counts(&url, &q).await.map(|c| c.0) != Some(1) {
        assert!(
            started.elapsed() < LIMIT,
            "the unacked task returns to the queue"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    broker::cleanup(&url, &q).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn the_brokers_consumer_timeout_is_explained_and_survived() {
    // A broker that gives a delivery 2 s before closing the channel, checked every 500 ms.
    let node = RabbitNode::start_with_config(
        "consumer_timeout = 2000",
        "[{rabbit, [{channel_tick_interval, 500}]}].",
    );
    let url = node.amqp_url();
    let mut w = work(
        "slow",
        &url,
        "task_queue",
        &[
            "--concurrency",
            "1",
            "--per-dot",
            "1s",
            "--broker-consumer-timeout",
            "2s",
        ],
    );
    w.wait_ready().await;
    assert_eq!(
        w.count("is not below the broker's consumer_timeout"),
        1,
        "startup warning"
    );
    broker::publish(&url, "task_queue", &[b"slow....."]).await;
    w.wait_for("consumer_timeout", 3, LIMIT).await;
    let line = w.matching("lost the broker").remove(0);
    assert!(
        line.contains("PRECONDITION_FAILED") && line.contains("lower pool.handler_timeout"),
        "{line}"
    );
    w.wait_for("reconnected after", 1, LIMIT).await;
    assert!(
        w.is_running(),
        "a consumer timeout is recovered from, not fatal"
    );
    assert!(w.wait_exit(Duration::from_millis(100)).await.is_none());
}
