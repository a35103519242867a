//! The pod-deletion-cost updater against an HTTP server that checks each
//! PATCH exactly as the Kubernetes API server would receive it (no API server
//! can run on our machines; see docs/kubernetes.md).

mod support;

use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, Method, StatusCode, Uri};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use support::broker::{self, shared_url, unique_queue};
use support::proc::{Warren, command, run, work_command};

const LIMIT: Duration = Duration::from_secs(60);

#[derive(Clone, Debug)]
struct Seen {
    method: Method,
    path: String,
    content_type: String,
    authorization: String,
    body: serde_json::Value,
}

#[derive(Clone)]
struct Api {
    seen: Arc<Mutex<Vec<Seen>>>,
    status: StatusCode,
}

async fn any(
    State(api): State<Api>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> (StatusCode, String) {
    let header = |name: &str| {
        headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
            .to_owned()
    };
    api.seen.lock().unwrap().push(Seen {
        method,
        path: uri.path().to_owned(),
        content_type: header("content-type"),
        authorization: header("authorization"),
        body: serde_json::from_slice(&body).unwrap_or(serde_json::Value::Null),
    });
    if api.status != StatusCode::OK {
        let denied = r#"{"kind":"Status","apiVersion":"v1","status":"Failure","message":"pods \"warren-0\" is forbidden","reason":"Forbidden","code":403}"#;
        return (api.status, denied.into());
    }
    let pod =
        r#"{"apiVersion":"v1","kind":"Pod","metadata":{"name":"warren-0","namespace":"jobs"}}"#;
    (StatusCode::OK, pod.into())
}

/// Starts the fake API server and writes a kubeconfig pointing at it.
async fn fake_api(status: StatusCode, dir: &std::path::Path) -> (Api, std::path::PathBuf) {
    let api = Api {
        seen: Arc::default(),
        status,
    };
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let app = Router::new().fallback(any).with_state(api.clone());
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    let kubeconfig = dir.join("kubeconfig");
    std::fs::write(
        &kubeconfig,
        format!(
            "apiVersion: v1\nkind: Config\nclusters:\n- name: t\n  cluster: {{server: \"http://{addr}\"}}\n\
             users:\n- name: t\n  user: {{token: test-token}}\ncontexts:\n- name: t\n  context: {{cluster: t, user: t, namespace: jobs}}\n\
             current-context: t\n"
        ),
    )
    .unwrap();
    (api, kubeconfig)
}

fn worker(url: &str, q: &str, kubeconfig: &std::path::Path) -> Warren {
    worker_with(url, q, kubeconfig, "4", "1s", "200ms")
}

fn worker_with(
    url: &str,
    q: &str,
    kubeconfig: &std::path::Path,
    concurrency: &str,
    per_dot: &str,
    interval: &str,
) -> Warren {
    let mut cmd = command(&[
        "work",
        "--amqp-url",
        url,
        "--queue",
        q,
        "--concurrency",
        concurrency,
        "--per-dot",
        per_dot,
    ]);
    cmd.env("WARREN_KUBE_POD_DELETION_COST", "true")
        .env("WARREN_KUBE_UPDATE_INTERVAL", interval)
        .env("POD_NAME", "warren-0")
        .env("POD_NAMESPACE", "jobs")
        .env("KUBECONFIG", kubeconfig)
        .env_remove("KUBERNETES_SERVICE_HOST");
    Warren::spawn_with("kube", cmd)
}

/// The annotation's value in each request so far.
fn costs(api: &Api) -> Vec<String> {
    let seen = api.seen.lock().unwrap().clone();
    seen.iter()
        .map(|s| {
            let v =
                &s.body["metadata"]["annotations"]["controller.kubernetes.io/pod-deletion-cost"];
            v.as_str().unwrap_or("(not a string)").to_owned()
        })
        .collect()
}

async fn wait_for_cost(api: &Api, cost: &str) {
    let started = Instant::now();
    loop {
        let seen = api.seen.lock().unwrap().clone();
        let last = seen.last().map(|s| {
            s.body["metadata"]["annotations"]["controller.kubernetes.io/pod-deletion-cost"].clone()
        });
        if last == Some(serde_json::Value::String(cost.into())) {
            return;
        }
        assert!(
            started.elapsed() < LIMIT,
            "cost never became {cost}: {seen:#?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn the_pod_annotation_follows_in_flight_tasks() {
    let dir = tempfile::tempdir().unwrap();
    let (api, kubeconfig) = fake_api(StatusCode::OK, dir.path()).await;
    let url = shared_url();
    let q = unique_queue("kube");
    let w = worker(&url, &q, &kubeconfig);
    w.wait_ready().await;
    wait_for_cost(&api, "0").await;
    broker::publish(&url, &q, &[b"two..", b"three..."]).await;
    // Two in flight: the 1–9 bucket.
    wait_for_cost(&api, "1").await;
    w.wait_acked(2, LIMIT).await;
    wait_for_cost(&api, "0").await;

    let seen = api.seen.lock().unwrap().clone();
    for s in &seen {
        assert_eq!(s.method, Method::PATCH);
        assert_eq!(s.path, "/api/v1/namespaces/jobs/pods/warren-0");
        assert_eq!(s.content_type, "application/merge-patch+json");
        assert_eq!(s.authorization, "Bearer test-token");
        assert_eq!(
            s.body.as_object().unwrap().len(),
            1,
            "only metadata.annotations: {}",
            s.body
        );
    }
    let values = costs(&api);
    assert!(
        values.windows(2).all(|w| w[0] != w[1]),
        "patched only when the value changed: {values:?}"
    );
    assert_eq!(w.metric("warren_pod_deletion_cost"), 0.0);
    broker::cleanup(&url, &q).await;
}

/// Hundreds of quick tasks, published as a burst and then a trickle, with
/// in-flight moving between 0 and 16: the pod is patched when the cost
/// bucket changes, not per task nor per sample.
#[tokio::test(flavor = "multi_thread")]
async fn under_load_the_pod_is_patched_per_bucket_change() {
    const BURST: usize = 800;
    const TRICKLE: usize = 40;
    let dir = tempfile::tempdir().unwrap();
    let (api, kubeconfig) = fake_api(StatusCode::OK, dir.path()).await;
    let url = shared_url();
    let q = unique_queue("kube_load");
    let w = worker_with(&url, &q, &kubeconfig, "16", "10ms", "200ms");
    w.wait_ready().await;
    wait_for_cost(&api, "0").await;
    // 1 to 6 dots, 10–60 ms each: with 16 workers in-flight swings around 10.
    let lines: String = (0..BURST).map(|i| ".".repeat(1 + i % 6) + "\n").collect();
    let file = dir.path().join("burst.txt");
    std::fs::write(&file, lines).unwrap();
    let args = ["publish", "--amqp-url", &url, "--queue", &q, "--file"];
    let out = run(&[&args[..], &[file.to_str().unwrap()]].concat(), LIMIT);
    assert!(out.status.success(), "{}", support::proc::text(&out));
    // Then one by one (a connection each, ~20/s): busy with gaps of ~50 ms.
    let trickle: Vec<&[u8]> = vec![b"."; TRICKLE];
    broker::publish(&url, &q, &trickle).await;
    w.wait_acked(BURST + TRICKLE, LIMIT).await;
    wait_for_cost(&api, "0").await;
    // More intervals pass: an idle pod is not patched again.
    tokio::time::sleep(Duration::from_secs(1)).await;

    let values = costs(&api);
    assert_eq!(values.last().map(String::as_str), Some("0"), "{values:?}");
    assert!(
        values
            .iter()
            .all(|v| ["0", "1", "10"].contains(&v.as_str())),
        "only buckets: {values:?}"
    );
    assert!(
        values.contains(&"10".to_owned()),
        "10+ in flight: {values:?}"
    );
    assert!(
        values.windows(2).all(|w| w[0] != w[1]),
        "patched only when the bucket changed: {values:?}"
    );
    // Hundreds of tasks; the bucket changes a handful of times.
    assert!(values.len() <= 8, "{} PATCHes: {values:?}", values.len());
    assert_eq!(w.metric("warren_pod_deletion_cost"), 0.0);
    broker::cleanup(&url, &q).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn without_rbac_it_warns_once_and_keeps_working() {
    let dir = tempfile::tempdir().unwrap();
    let (api, kubeconfig) = fake_api(StatusCode::FORBIDDEN, dir.path()).await;
    let url = shared_url();
    let q = unique_queue("kube_denied");
    let w = worker(&url, &q, &kubeconfig);
    w.wait_ready().await;
    broker::publish(&url, &q, &[b"still works."]).await;
    w.wait_acked(1, LIMIT).await;
    let started = Instant::now();
    while api.seen.lock().unwrap().len() < 3 {
        assert!(started.elapsed() < LIMIT, "keeps retrying quietly");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // The warning is what the operator reads, so its words are checked.
    assert_eq!(
        w.count("cannot patch controller.kubernetes.io/pod-deletion-cost"),
        1,
        "one warning"
    );
    assert!(w.count("RBAC") >= 1);
    let errors = w.metric("warren_pod_deletion_cost_errors_total");
    assert!(errors >= 3.0, "{errors} errors counted");
    broker::cleanup(&url, &q).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn outside_a_cluster_it_warns_and_keeps_working() {
    let url = shared_url();
    let q = unique_queue("kube_outside");
    let mut cmd = work_command(&url, &q, &["--per-dot", "1ms"]);
    cmd.env("WARREN_KUBE_POD_DELETION_COST", "true")
        .env_remove("POD_NAME")
        .env_remove("POD_NAMESPACE");
    let w = Warren::spawn_with("outside", cmd);
    w.wait_ready().await;
    broker::publish(&url, &q, &[b"fine."]).await;
    w.wait_acked(1, LIMIT).await;
    // The warning is what the operator reads, so its words are checked.
    assert_eq!(w.count("pod-deletion-cost updates are off"), 1);
    broker::cleanup(&url, &q).await;
}
