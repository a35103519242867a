//! The Grafana dashboard against the real thing: a `warren work` process on
//! the shared broker is scraped directly (metric values after N tasks; every
//! metric the dashboard names exists), then by a real Prometheus that must
//! answer every dashboard query with at least one series. Reading the
//! dashboard's JSON is in tests/support/grafana.rs.

mod support;

use serde_json::Value;
use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};
use support::broker::{self, shared_url, unique_queue};
use support::grafana::{
    Dashboard, PENDING_METRICS, Query, exported, families, label_values, regex_escape, warren_names,
};
use support::health::{sample, tasks_total};
use support::net::http_get;
use support::proc::{Warren, command};
use support::prom::{self, Prometheus, Target};
use warren::metrics::Disposition;

const LIMIT: Duration = Duration::from_secs(20);
/// Static labels standing in for what Kubernetes service discovery adds; the
/// pod is named like a Deployment's (`<deployment>-<hash>-<suffix>`).
const LABELS: &[(&str, &str)] = &[("namespace", "test"), ("pod", "warren-7d9f8b6c5-x2x4q")];
/// What kube-state-metrics reports for that Deployment (the optional replicas panel),
/// plus a Deployment without Warren pods that the panel must leave out.
const KUBE_STATE_METRICS: &str = "\
# TYPE kube_deployment_spec_replicas gauge
kube_deployment_spec_replicas{namespace=\"test\",deployment=\"warren\"} 3
kube_deployment_spec_replicas{namespace=\"test\",deployment=\"other\"} 5
# TYPE kube_deployment_status_replicas_available gauge
kube_deployment_status_replicas_available{namespace=\"test\",deployment=\"warren\"} 2
kube_deployment_status_replicas_available{namespace=\"test\",deployment=\"other\"} 5
";

/// Scrapes until every `(series, value)` holds; panics with the scrape if not.
async fn wait_metrics(base: &str, want: &[(String, f64)]) -> String {
    let started = Instant::now();
    loop {
        let (status, scrape) = http_get(&format!("{base}/metrics"));
        assert_eq!(status, 200);
        let wrong: Vec<String> = want
            .iter()
            .filter(|(series, value)| sample(&scrape, series) != Some(*value))
            .map(|(series, value)| {
                format!("{series}: want {value}, got {:?}", sample(&scrape, series))
            })
            .collect();
        if wrong.is_empty() {
            return scrape;
        }
        assert!(
            started.elapsed() < LIMIT,
            "metrics never matched:\n{}\nlast scrape:\n{scrape}",
            wrong.join("\n")
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

fn want(series: &str, value: f64) -> (String, f64) {
    (series.to_owned(), value)
}

/// Tasks the first part runs; every one is acked.
const TASKS: usize = 20;

#[tokio::test(flavor = "multi_thread")]
async fn dashboard_queries_work_against_a_real_warren_and_prometheus() {
    let started = Instant::now();
    // Fail first, and clearly, when Prometheus is missing: no skipping.
    let prometheus_bin = prom::binary();
    let dashboard = Dashboard::load();
    let queries = dashboard.queries();
    check_shape(&queries);

    // (a) Tasks through a real warren; its own scrape tells the story.
    let url = shared_url();
    let q = unique_queue("dashboard");
    let mut cmd = command(&[
        "work",
        "--amqp-url",
        &url,
        "--queue",
        &q,
        "--concurrency",
        "4",
        "--per-dot",
        "10ms",
        "--max-body-bytes",
        "16",
    ]);
    // `warren work` has no --queue-poll-interval flag; the env var sets it.
    cmd.env("WARREN_SERVER_QUEUE_POLL_INTERVAL", "200ms");
    let w = Warren::spawn_with("dashboard", cmd);
    let base = w.base.clone();
    w.wait_ready().await;
    let scrape = run_tasks(&url, &q, &base).await;
    println!(
        "(a) {TASKS} tasks and 1 dead letter scraped after {:?}",
        started.elapsed()
    );

    // (b) Every warren_* name the dashboard uses is in the real scrape.
    check_metric_names(&dashboard, &queries, &scrape);

    // (c) A real Prometheus scrapes the warren; every query must answer.
    let stop = Arc::new(AtomicBool::new(false));
    let producer = tokio::spawn(keep_producing(url.clone(), q.clone(), stop.clone()));
    let address = base.trim_start_matches("http://");
    let ksm = serve_static(KUBE_STATE_METRICS);
    let prometheus = Prometheus::start(
        &[
            Target {
                address,
                labels: LABELS,
            },
            Target {
                address: &ksm,
                labels: &[],
            },
        ],
        "1s",
    );
    let prom_started = Instant::now();
    prometheus.wait_targets_up(LIMIT).await;
    println!(
        "(c) {} scrapes the warren after {:?}",
        prometheus_bin.display(),
        prom_started.elapsed()
    );
    let evaluated: Vec<&Query> = queries.iter().filter(|q| !q.needs_rabbitmq).collect();
    let checks_started = Instant::now();
    let mut rounds = 0;
    loop {
        rounds += 1;
        let problems = evaluate_all(&prometheus, &dashboard, &evaluated, &format!("{q}.dead"));
        if problems.is_empty() {
            break;
        }
        assert!(
            checks_started.elapsed() < LIMIT,
            "after {rounds} rounds in {:?}:\n{}\nprometheus log:\n{}",
            checks_started.elapsed(),
            problems.join("\n"),
            prometheus.log()
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    println!(
        "(c) {} of {} queries (each with All and with picked variable values) and {} variables \
         answered after {:?} ({rounds} rounds); total {:?}",
        evaluated.len(),
        queries.len(),
        dashboard.variables().len(),
        checks_started.elapsed(),
        started.elapsed()
    );

    stop.store(true, Ordering::Relaxed);
    producer.await.unwrap();
    drop(prometheus);
    drop(w);
    broker::cleanup(&url, &q).await;
}

/// Rules every query follows: at most one panel is exempt from evaluation,
/// and variables sit in regex matchers (multi-value and All need `=~`).
fn check_shape(queries: &[Query]) {
    assert!(!queries.is_empty(), "the dashboard has no queries");
    let marked: BTreeSet<&str> = queries
        .iter()
        .filter(|q| q.needs_rabbitmq)
        .map(|q| q.panel.as_str())
        .collect();
    assert!(
        marked.len() <= 1,
        "only one panel may be exempt from the Prometheus check: {marked:?}"
    );
    let outcomes = Disposition::ALL.map(|d| d.label());
    for q in queries {
        // `... or vector(0)` answers even for an outcome that never occurs,
        // so a misspelt outcome would pass Prometheus: check the spelling.
        for value in q.expr.split("outcome=\"").skip(1) {
            let value = &value[..value.find('"').unwrap_or(value.len())];
            assert!(
                outcomes.contains(&value),
                "panel {:?}: outcome {value:?} is none of {outcomes:?}",
                q.panel
            );
        }
        assert!(
            !q.expr.contains("=\"$"),
            "panel {:?}: variables need regex matchers (=~) for multi-value and All: {}",
            q.panel,
            q.expr
        );
    }
}

/// Publishes TASKS tasks and one oversize body; waits until the scrape shows
/// them all settled, and returns that scrape.
async fn run_tasks(url: &str, q: &str, base: &str) -> String {
    let bodies: Vec<String> = (0..TASKS).map(|i| format!("t{i:02}..")).collect();
    let refs: Vec<&[u8]> = bodies.iter().map(|b| b.as_bytes()).collect();
    broker::publish(url, q, &refs).await;
    let n = TASKS as f64;
    let ready = |queue: &str| format!("warren_queue_messages_ready{{queue=\"{queue}\"}}");
    let dead = format!("{q}.dead");
    let scrape = wait_metrics(
        base,
        &[
            want(&tasks_total(Disposition::Acked), n),
            want("warren_tasks_in_flight", 0.0),
            want("warren_task_duration_seconds_count", n),
            want(&ready(q), 0.0),
            want(&format!("warren_queue_consumers{{queue=\"{q}\"}}"), 1.0),
            want(&ready(&dead), 0.0),
            want(&ready(&format!("{q}.retry.1s")), 0.0),
            want("warren_workers", 4.0),
            want("warren_broker_connected", 1.0),
        ],
    )
    .await;
    // Every outcome series exists from the start (at 0), so rate() and
    // dashboards work before the first retry.
    assert_eq!(
        sample(&scrape, &tasks_total(Disposition::Retried)),
        Some(0.0)
    );

    // A body over --max-body-bytes is dead-lettered (a confirmed publish)
    // without running the handler; the dead queue's gauge sees it.
    broker::publish(url, q, &[&[b'.'; 40]]).await;
    wait_metrics(
        base,
        &[
            want(&tasks_total(Disposition::DeadLettered), 1.0),
            want(&tasks_total(Disposition::Acked), n),
            want("warren_task_duration_seconds_count", n),
            want("warren_publish_confirm_seconds_count", 1.0),
            want(&ready(&dead), 1.0),
        ],
    )
    .await
}

/// Every `warren_*` name in the dashboard's queries and variables is a
/// series the scrape exposes.
fn check_metric_names(dashboard: &Dashboard, queries: &[Query], scrape: &str) {
    let families = families(scrape);
    let mut used = BTreeSet::new();
    for expr in queries
        .iter()
        .map(|q| q.expr.clone())
        .chain(dashboard.variables().into_iter().map(|(_, q)| q))
    {
        used.extend(warren_names(&expr));
    }
    let missing: Vec<&String> = used
        .iter()
        .filter(|m| !exported(m, &families) && !PENDING_METRICS.contains(&m.as_str()))
        .collect();
    let landed: Vec<&&str> = PENDING_METRICS
        .iter()
        .filter(|m| exported(m, &families))
        .collect();
    assert!(
        landed.is_empty(),
        "{landed:?} are exported now: remove them from PENDING_METRICS (tests/support/grafana.rs, \
         scripts/check-chart.sh) and drop their `or vector(0)`"
    );
    assert!(
        missing.is_empty(),
        "the dashboard uses metrics warren does not export: {missing:?}\nscrape:\n{scrape}"
    );
    assert!(used.len() >= 10, "suspiciously few metric names: {used:?}");
    let unused: Vec<&String> = families
        .keys()
        .filter(|f| !used.iter().any(|u| u.starts_with(f.as_str())))
        .collect();
    println!(
        "(b) {} metric names checked; exported but not on the dashboard: {unused:?}",
        used.len()
    );
}

/// Two small tasks every 250 ms until `stop`, so rates and quantiles have
/// something to show.
async fn keep_producing(url: String, q: String, stop: Arc<AtomicBool>) {
    let mut i = 0;
    while !stop.load(Ordering::Relaxed) {
        let body = format!("p{i}.");
        broker::publish(&url, &q, &[body.as_bytes(), body.as_bytes()]).await;
        i += 1;
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

/// One round of Prometheus checks; what is not (yet) right. First the
/// variables, in dashboard order, as Grafana resolves them: each must find
/// its label, and its first value is picked for the variables after it.
/// Then every query twice, with every variable on All and with the picked
/// values, so a filter on a label that does not exist cannot pass.
fn evaluate_all(
    prometheus: &Prometheus,
    dashboard: &Dashboard,
    queries: &[&Query],
    dead_queue: &str,
) -> Vec<String> {
    let mut problems = Vec::new();
    let mut picked = BTreeMap::new();
    for (name, definition) in dashboard.variables() {
        let (selector, label) = label_values(&definition);
        let promql = dashboard.substitute(selector, &picked);
        let result = prometheus
            .query(&promql)
            .unwrap_or_else(|e| panic!("variable {name}: Prometheus rejects {promql}: {e}"));
        match result.iter().find_map(|s| s["metric"][label].as_str()) {
            Some(value) => {
                picked.insert(name, regex_escape(value));
            }
            None => problems.push(format!("variable {name}: no {label:?} label in {promql}")),
        }
    }
    for query in queries {
        for variables in [&BTreeMap::new(), &picked] {
            let promql = dashboard.substitute(&query.expr, variables);
            let result = prometheus.query(&promql).unwrap_or_else(|e| {
                panic!("panel {:?}: Prometheus rejects {promql}: {e}", query.panel)
            });
            if result.is_empty() {
                problems.push(format!("panel {:?}: no series for {promql}", query.panel));
            } else if promql.contains("warren_task_duration_seconds_bucket") {
                // Tasks keep running, so the quantiles must be numbers.
                let value = result[0]["value"][1].as_str().unwrap_or("NaN");
                if !value.parse::<f64>().is_ok_and(f64::is_finite) {
                    problems.push(format!("panel {:?}: {value} for {promql}", query.panel));
                }
            }
        }
    }
    // The replicas panel picks the Deployment of Warren's pods, not the other one.
    let desired = prometheus
        .query(
            &dashboard.substitute(
                &dashboard
                    .queries()
                    .into_iter()
                    .find(|q| q.panel == "Replicas: desired vs current")
                    .expect("the replicas panel")
                    .expr,
                &BTreeMap::new(),
            ),
        )
        .unwrap();
    let deployments: Vec<&Value> = desired.iter().map(|s| &s["metric"]["deployment"]).collect();
    if deployments != [&Value::from("warren")] {
        problems.push(format!(
            "replicas panel: deployments {deployments:?}, want [warren]"
        ));
    }
    let (ns, pod) = (LABELS[0].1, LABELS[1].1);
    let depth = prometheus
        .query(&format!(
            "warren_queue_messages_ready{{queue=\"{dead_queue}\", namespace=\"{ns}\", pod=\"{pod}\"}}"
        ))
        .unwrap();
    if depth.first().map(|s| &s["value"][1]) != Some(&Value::from("1")) {
        problems.push(format!(
            "the dead queue's depth is not 1 in Prometheus: {depth:?}"
        ));
    }
    problems
}

/// Serves `body` as `/metrics` on a free port, from a thread, for as long as
/// the test runs; the `host:port`.
fn serve_static(body: &'static str) -> String {
    use std::io::{Read, Write};
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let address = listener.local_addr().unwrap().to_string();
    std::thread::spawn(move || {
        for mut stream in listener.incoming().flatten() {
            let mut request = [0u8; 4096];
            let _ = stream.read(&mut request);
            let _ = write!(
                stream,
                "HTTP/1.1 200 OK\r\nContent-Type: text/plain; version=0.0.4\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                body.len()
            );
        }
    });
    address
}

#[test]
fn metric_names_are_found_outside_strings_only() {
    let names = warren_names(
        r#"histogram_quantile(0.5, sum by (le) (rate(warren_a_bucket{q=~"warren_not"}[30s]))) / warren_b"#,
    );
    assert_eq!(
        names.into_iter().collect::<Vec<_>>(),
        ["warren_a_bucket", "warren_b"]
    );
    let families = families("# TYPE warren_a histogram\n# TYPE warren_c counter\n");
    assert!(exported("warren_a_bucket", &families));
    assert!(exported("warren_a_count", &families));
    assert!(exported("warren_a_sum", &families));
    assert!(!exported("warren_c_bucket", &families));
    assert!(!exported("warren_d", &families));
}
