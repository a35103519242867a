//! A private, real Prometheus server for dashboard tests: the OS package's
//! binary with a temporary config and data directory, on a free port,
//! scraping the targets a test names. Killed when dropped (also on panic).
//!
//! `scripts/ensure-prometheus.sh` installs the binary; without it the tests
//! that need it fail (they do not skip), saying to run that script.

use super::net::{free_port, http_get, percent_encode};
use serde_json::Value;
use std::net::TcpStream;
use std::os::unix::process::CommandExt;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// The Prometheus binary: the Debian package's, else one on PATH.
/// Panics with the fix when there is none.
pub fn binary() -> PathBuf {
    let packaged = PathBuf::from("/usr/bin/prometheus");
    if packaged.is_file() {
        return packaged;
    }
    std::env::var_os("PATH")
        .into_iter()
        .flat_map(|path| std::env::split_paths(&path).collect::<Vec<_>>())
        .map(|dir| dir.join("prometheus"))
        .find(|candidate| candidate.is_file())
        .unwrap_or_else(|| {
            panic!(
                "Prometheus is not installed (no /usr/bin/prometheus, none on PATH). \
                 Run scripts/ensure-prometheus.sh (as root it installs the Debian package \
                 `prometheus` without starting its service)."
            )
        })
}

/// One scrape target and the static labels Kubernetes would have added.
pub struct Target<'a> {
    /// `host:port` serving `/metrics`.
    pub address: &'a str,
    /// Extra labels, e.g. `namespace` and `pod`, which only exist on Kubernetes.
    pub labels: &'a [(&'a str, &'a str)],
}

/// A running Prometheus; SIGKILLed and reaped when dropped.
pub struct Prometheus {
    /// `http://127.0.0.1:PORT`.
    pub base: String,
    child: Child,
    /// Holds config, TSDB and log; removed after the process is gone.
    dir: tempfile::TempDir,
}

impl Prometheus {
    /// Starts Prometheus scraping `targets` every `interval` (e.g. "1s").
    pub fn start(targets: &[Target], interval: &str) -> Prometheus {
        let bin = binary();
        let dir = tempfile::tempdir().expect("temp dir");
        let config = dir.path().join("prometheus.yml");
        std::fs::write(&config, config_yaml(targets, interval)).expect("write prometheus.yml");
        let port = free_port();
        let log = std::fs::File::create(dir.path().join("prometheus.log")).expect("log file");
        let mut cmd = Command::new(&bin);
        cmd.arg(format!("--config.file={}", config.display()))
            .arg(format!(
                "--storage.tsdb.path={}",
                dir.path().join("data").display()
            ))
            .arg(format!("--web.listen-address=127.0.0.1:{port}"))
            .arg("--log.level=warn")
            .stdin(Stdio::null())
            .stdout(Stdio::from(log.try_clone().expect("log file")))
            .stderr(Stdio::from(log));
        // If this test process dies without unwinding (SIGKILL), the kernel
        // still takes Prometheus down with it instead of leaving an orphan.
        unsafe {
            cmd.pre_exec(|| {
                libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL);
                Ok(())
            });
        }
        let child = cmd
            .spawn()
            .unwrap_or_else(|e| panic!("start {}: {e}", bin.display()));
        let mut prom = Prometheus {
            base: format!("http://127.0.0.1:{port}"),
            child,
            dir,
        };
        prom.wait_ready(Duration::from_secs(30));
        prom
    }

    /// Everything Prometheus logged so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("prometheus.log")).unwrap_or_default()
    }

    fn wait_ready(&mut self, limit: Duration) {
        let started = Instant::now();
        let addr = self.base.trim_start_matches("http://").to_owned();
        loop {
            if let Some(status) = self.child.try_wait().expect("try_wait") {
                panic!("prometheus exited early ({status}); log:\n{}", self.log());
            }
            if TcpStream::connect(&addr).is_ok()
                && http_get(&format!("{}/-/ready", self.base)).0 == 200
            {
                return;
            }
            assert!(
                started.elapsed() < limit,
                "prometheus not ready after {limit:?}; log:\n{}",
                self.log()
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// GET an API path; the parsed JSON body. Panics on a non-200 answer.
    pub fn api(&self, path_and_query: &str) -> Value {
        let (status, body) = http_get(&format!("{}{path_and_query}", self.base));
        assert_eq!(status, 200, "GET {path_and_query}: {body}");
        serde_json::from_str(&body).unwrap_or_else(|e| panic!("GET {path_and_query}: {e}: {body}"))
    }

    /// Waits until every active target reports `health: up`.
    pub async fn wait_targets_up(&self, limit: Duration) {
        let started = Instant::now();
        loop {
            let targets = self.api("/api/v1/targets?state=active");
            let active = targets["data"]["activeTargets"]
                .as_array()
                .cloned()
                .unwrap_or_default();
            if !active.is_empty() && active.iter().all(|t| t["health"] == "up") {
                return;
            }
            assert!(
                started.elapsed() < limit,
                "targets not up after {limit:?}: {targets}\nlog:\n{}",
                self.log()
            );
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }

    /// Evaluates an instant query now; `Err` carries Prometheus's error
    /// (e.g. a PromQL parse error), `Ok` the `data.result` (vector items, or
    /// `[time, value]` for a scalar).
    pub fn query(&self, promql: &str) -> Result<Vec<Value>, String> {
        let path = format!("/api/v1/query?query={}", percent_encode(promql));
        let (status, body) = http_get(&format!("{}{path}", self.base));
        let json: Value = serde_json::from_str(&body)
            .map_err(|e| format!("HTTP {status}, not JSON ({e}): {body}"))?;
        if json["status"] != "success" {
            return Err(format!(
                "{}: {}",
                json["errorType"].as_str().unwrap_or("error"),
                json["error"].as_str().unwrap_or(&body)
            ));
        }
        Ok(json["data"]["result"]
            .as_array()
            .cloned()
            .unwrap_or_default())
    }
}

impl Drop for Prometheus {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn config_yaml(targets: &[Target], interval: &str) -> String {
    let mut yaml = format!(
        "global:\n  scrape_interval: {interval}\n  scrape_timeout: {interval}\n  evaluation_interval: {interval}\n\
         scrape_configs:\n  - job_name: warren\n    metrics_path: /metrics\n    static_configs:\n"
    );
    for t in targets {
        yaml.push_str(&format!("      - targets: [\"{}\"]\n", t.address));
        if !t.labels.is_empty() {
            yaml.push_str("        labels:\n");
            for (k, v) in t.labels {
                yaml.push_str(&format!("          {k}: \"{v}\"\n"));
            }
        }
    }
    yaml
}
