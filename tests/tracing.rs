//! Logs and traces: JSON logs off a terminal, and W3C trace context through
//! AMQP headers to a real OTLP/HTTP receiver (a tiny collector in the test).

mod support;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpListener;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use support::broker::{self, shared_url, text_header, unique_queue};
use support::proc::{Warren, command, text, work_command};

const LIMIT: Duration = Duration::from_secs(60);

/// Accepts OTLP/HTTP JSON posts and keeps every span as JSON.
struct Collector {
    endpoint: String,
    spans: Arc<Mutex<Vec<serde_json::Value>>>,
}

impl Collector {
    fn start() -> Collector {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let endpoint = format!("http://{}", listener.local_addr().unwrap());
        let spans = Arc::new(Mutex::new(Vec::new()));
        let sink = spans.clone();
        std::thread::spawn(move || {
            for stream in listener.incoming().map_while(Result::ok) {
                let sink = sink.clone();
                std::thread::spawn(move || serve(stream, &sink));
            }
        });
        Collector { endpoint, spans }
    }

    fn spans(&self) -> Vec<serde_json::Value> {
        self.spans.lock().unwrap().clone()
    }

    fn span_named(&self, name: &str) -> Option<serde_json::Value> {
        self.spans().into_iter().find(|s| s["name"] == name)
    }
}

fn serve(stream: std::net::TcpStream, sink: &Mutex<Vec<serde_json::Value>>) {
    let mut reader = BufReader::new(stream);
    loop {
        let mut length = 0usize;
        let mut line = String::new();
        if reader.read_line(&mut line).unwrap_or(0) == 0 {
            return;
        }
        loop {
            line.clear();
            reader.read_line(&mut line).unwrap();
            if line.trim().is_empty() {
                break;
            }
            if let Some(v) = line.to_ascii_lowercase().strip_prefix("content-length:") {
                length = v.trim().parse().unwrap();
            }
        }
        let mut body = vec![0; length];
        reader.read_exact(&mut body).unwrap();
        if let Ok(doc) = serde_json::from_slice::<serde_json::Value>(&body) {
            for rs in doc["resourceSpans"].as_array().into_iter().flatten() {
                for ss in rs["scopeSpans"].as_array().into_iter().flatten() {
                    for span in ss["spans"].as_array().into_iter().flatten() {
                        let mut span = span.clone();
                        span["service"] = rs["resource"].clone();
                        sink.lock().unwrap().push(span);
                    }
                }
            }
        }
        let reply =
            "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 2\r\n\r\n{}";
        reader.get_mut().write_all(reply.as_bytes()).unwrap();
    }
}

fn with_otel(
    mut cmd: std::process::Command,
    collector: &Collector,
    service: &str,
) -> std::process::Command {
    cmd.env("OTEL_EXPORTER_OTLP_ENDPOINT", &collector.endpoint)
        .env("OTEL_EXPORTER_OTLP_PROTOCOL", "http/json")
        .env("OTEL_SERVICE_NAME", service);
    cmd
}

#[tokio::test(flavor = "multi_thread")]
async fn task_spans_are_children_of_the_publishers_span() {
    let url = shared_url();
    let q = unique_queue("traces");
    let collector = Collector::start();

    let out = with_otel(
        command(&["publish", "--amqp-url", &url, "--queue", &q, "traced."]),
        &collector,
        "producer",
    )
    .output()
    .unwrap();
    assert!(out.status.success(), "{}", text(&out));
    let publish = collector
        .span_named(&format!("{q} publish"))
        .expect("the producer span was exported");

    let mut w = Warren::spawn_with(
        "worker",
        with_otel(
            work_command(&url, &q, &["--per-dot", "1ms"]),
            &collector,
            "consumer",
        ),
    );
    w.wait_acked(1, LIMIT).await;
    w.signal(libc::SIGTERM);
    assert!(w.wait_exit(LIMIT).await.unwrap().success());

    let name = format!("{q} process");
    let started = Instant::now();
    let task = loop {
        if let Some(span) = collector.span_named(&name) {
            break span;
        }
        assert!(
            started.elapsed() < LIMIT,
            "no task span among {:#?}",
            collector.spans()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert_eq!(
        task["traceId"], publish["traceId"],
        "same trace as the producer"
    );
    assert_eq!(
        task["parentSpanId"], publish["spanId"],
        "the task span is a child of the publish span"
    );
    let attrs = task["attributes"].to_string();
    for needle in [
        r#""messaging.system""#,
        r#""rabbitmq""#,
        r#""messaging.destination.name""#,
        r#""messaging.operation""#,
        r#""messaging.message.id""#,
        r#""attempt""#,
        r#""redelivered""#,
    ] {
        assert!(attrs.contains(needle), "{needle} in {attrs}");
    }
    broker::cleanup(&url, &q).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn traceparent_from_any_producer_is_honoured_and_published_tasks_carry_one() {
    let url = shared_url();
    let q = unique_queue("traceparent");
    let collector = Collector::start();
    let out = with_otel(
        command(&["publish", "--amqp-url", &url, "--queue", &q, "x"]),
        &collector,
        "p",
    )
    .output()
    .unwrap();
    assert!(out.status.success(), "{}", text(&out));
    let msg = broker::consume_one(&url, &q, LIMIT)
        .await
        .expect("the task");
    let traceparent = text_header(&msg, "traceparent");
    let parts: Vec<&str> = traceparent.split('-').collect();
    assert_eq!(
        (parts.len(), parts[0], parts[1].len(), parts[2].len()),
        (4, "00", 32, 16),
        "{traceparent}"
    );

    // A pika-style producer that only sets the header: the task joins its trace.
    let mut w = Warren::spawn_with(
        "worker",
        with_otel(
            work_command(&url, &q, &["--per-dot", "1ms"]),
            &collector,
            "c",
        ),
    );
    w.wait_ready().await;
    let (conn, ch) = broker::channel(&url).await;
    let mut table = lapin::types::FieldTable::default();
    let foreign = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01";
    table.insert(
        "traceparent".into(),
        lapin::types::AMQPValue::LongString(foreign.into()),
    );
    let props = lapin::protocol::BasicProperties::default()
        .with_headers(table)
        .with_message_id("pika-1".into());
    ch.basic_publish(
        "".into(),
        q.as_str().into(),
        Default::default(),
        b"from pika",
        props,
    )
    .await
    .unwrap();
    w.wait_acked(1, LIMIT).await;
    w.signal(libc::SIGTERM);
    assert!(w.wait_exit(LIMIT).await.unwrap().success());
    let task = collector
        .span_named(&format!("{q} process"))
        .expect("task span exported at exit");
    assert_eq!(
        task["traceId"], "0af7651916cd43dd8448eb211c80319c",
        "joins the producer's trace"
    );
    assert_eq!(
        task["parentSpanId"], "b7ad6b7169203331",
        "child of the producer's span"
    );
    let _ = conn.close(200, "bye".into()).await;
    broker::cleanup(&url, &q).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn logs_are_json_off_a_terminal() {
    let url = shared_url();
    let q = unique_queue("json_logs");
    let mut cmd = work_command(&url, &q, &["--per-dot", "1ms"]);
    cmd.env_remove("WARREN_LOG_FORMAT");
    let mut w = Warren::spawn_with("json", cmd);
    w.wait_ready().await;
    broker::publish(&url, &q, &[b"json."]).await;
    // The log's format is the point here: a task's line (the tutorial's)
    // must carry the task span's fields.
    w.wait_for("[x] Done", 1, LIMIT).await;
    w.signal(libc::SIGTERM);
    w.wait_exit(LIMIT).await;
    for line in w.lines() {
        let v: serde_json::Value =
            serde_json::from_str(&line).unwrap_or_else(|e| panic!("not JSON ({e}): {line}"));
        assert!(
            v["level"].is_string() && v["fields"]["message"].is_string(),
            "{line}"
        );
    }
    let done = w.matching("[x] Done").remove(0);
    let v: serde_json::Value = serde_json::from_str(&done).unwrap();
    let span = v["span"].as_object().expect("the task span's fields");
    for key in ["id", "worker", "attempt"] {
        assert!(span.contains_key(key), "{key} in {done}");
    }
    assert!(
        !done.contains("otel.") && !done.contains("messaging."),
        "trace attributes stay in the trace: {done}"
    );
    broker::cleanup(&url, &q).await;
}
