//! The processes under test: spawning, reading their output lines with the
//! instant each arrived, stopping them, and Warren's HTTP endpoints.

use super::procfs::Usage;
use anyhow::{Context, Result, bail};
use std::path::Path;
use std::process::Stdio;
use std::time::{Duration, Instant};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::process::{Child, Command};
use tokio::sync::mpsc;

/// Warren's line naming the health/metrics address.
const SERVING: &str = "serving /livez /readyz /metrics on http://";

/// A running child whose output lines are collected with their arrival time.
pub struct Proc {
    child: Child,
    /// The child's process id, for /proc and signals.
    pub pid: u32,
    /// When it was spawned.
    pub started: Instant,
    lines: mpsc::UnboundedReceiver<(Instant, String)>,
}

impl Proc {
    /// Spawns `cmd`, reading lines from its stdout or (for Warren's logs) stderr.
    pub fn spawn(mut cmd: Command, from_stderr: bool) -> Result<Proc> {
        let (out, err) = if from_stderr {
            (Stdio::null(), Stdio::piped())
        } else {
            (Stdio::piped(), Stdio::inherit())
        };
        cmd.stdin(Stdio::null())
            .stdout(out)
            .stderr(err)
            .kill_on_drop(true);
        let started = Instant::now();
        let mut child = cmd.spawn().context("spawning the process under test")?;
        let pid = child.id().context("no pid")?;
        let (tx, lines) = mpsc::unbounded_channel();
        let reader: Box<dyn tokio::io::AsyncRead + Unpin + Send> = if from_stderr {
            Box::new(child.stderr.take().context("no stderr")?)
        } else {
            Box::new(child.stdout.take().context("no stdout")?)
        };
        tokio::spawn(async move {
            let mut reader = BufReader::new(reader).lines();
            while let Ok(Some(line)) = reader.next_line().await {
                if tx.send((Instant::now(), line)).is_err() {
                    break;
                }
            }
        });
        Ok(Proc {
            child,
            pid,
            started,
            lines,
        })
    }

    /// Waits for a line containing `needle`; other lines are dropped, except
    /// warnings and errors, which are shown.
    pub async fn line_with(&mut self, needle: &str, limit: Duration) -> Result<(Instant, String)> {
        let deadline = tokio::time::Instant::now() + limit;
        loop {
            let next = tokio::time::timeout_at(deadline, self.lines.recv()).await;
            match next {
                Err(_) => bail!("no line with '{needle}' within {limit:?}"),
                Ok(None) => bail!("the process ended without printing '{needle}'"),
                Ok(Some((at, line))) if line.contains(needle) => return Ok((at, line)),
                Ok(Some((_, line))) => {
                    if line.contains("WARN") || line.contains("ERROR") || line.contains("rror") {
                        eprintln!("  [pid {}] {line}", self.pid);
                    }
                }
            }
        }
    }

    /// Whether the child has exited already.
    pub fn exited(&mut self) -> bool {
        !matches!(self.child.try_wait(), Ok(None))
    }

    /// Its CPU and memory counters now.
    pub fn usage(&self) -> Result<Usage> {
        Usage::of(self.pid)
    }

    /// SIGTERM, then waits for the exit; returns how long that took.
    pub async fn terminate(&mut self, limit: Duration) -> Result<Duration> {
        let asked = Instant::now();
        // SAFETY: kill(2) on our own child's pid, which has not been reaped.
        unsafe { libc::kill(self.pid as libc::pid_t, libc::SIGTERM) };
        self.wait(limit).await?;
        Ok(asked.elapsed())
    }

    /// Waits for the child to exit (killing it after `limit`); fails unless it exited 0.
    pub async fn wait(&mut self, limit: Duration) -> Result<()> {
        match tokio::time::timeout(limit, self.child.wait()).await {
            Ok(status) => {
                let status = status?;
                anyhow::ensure!(status.success(), "pid {} exited with {status}", self.pid);
                Ok(())
            }
            Err(_) => {
                let _ = self.child.kill().await;
                bail!("pid {} did not exit within {limit:?}; killed", self.pid)
            }
        }
    }
}

/// `warren ARGS` with a clean environment for Warren's own settings.
pub fn warren_command(bin: &Path, args: &[String]) -> std::process::Command {
    let mut cmd = std::process::Command::new(bin);
    cmd.args(args);
    for (name, _) in std::env::vars_os() {
        let name = name.to_string_lossy();
        if name.starts_with("WARREN_") || name.starts_with("OTEL_") || name == "RUST_LOG" {
            cmd.env_remove(name.as_ref());
        }
    }
    // Default logging, as users run it: `info`, JSON (stderr is a pipe here,
    // as under Kubernetes, where the container runtime reads it).
    cmd
}

/// A running `warren work` and its health/metrics address.
pub struct Warren {
    pub proc: Proc,
    /// host:port of /livez, /readyz, /metrics.
    pub addr: String,
}

impl Warren {
    /// Starts `warren work ARGS` and waits for its "serving" line.
    pub async fn start(bin: &Path, args: &[String]) -> Result<Warren> {
        let mut proc = Proc::spawn(warren_command(bin, args).into(), true)?;
        let (_, line) = proc.line_with(SERVING, Duration::from_secs(10)).await?;
        // Text or JSON: the address ends at a space or a quote.
        let addr = line[line.find(SERVING).expect("matched") + SERVING.len()..]
            .split(|c: char| c.is_whitespace() || c == '"')
            .next()
            .unwrap_or_default()
            .trim_end_matches('/')
            .to_owned();
        Ok(Warren { proc, addr })
    }

    /// `warren_tasks_total{outcome="acked"}` from /metrics.
    pub async fn acked(&self) -> Result<u64> {
        let (_, body) = http_get(&self.addr, "/metrics").await?;
        Ok(body
            .lines()
            .find_map(|l| l.strip_prefix("warren_tasks_total{outcome=\"acked\"} "))
            .and_then(|v| v.trim().parse::<f64>().ok())
            .map_or(0, |v| v as u64))
    }

    /// Whether /readyz answers 200.
    pub async fn ready(&self) -> bool {
        matches!(http_get(&self.addr, "/readyz").await, Ok((200, _)))
    }
}

/// A minimal HTTP/1.1 GET (one connection per request): status and body.
pub async fn http_get(addr: &str, path: &str) -> Result<(u16, String)> {
    let mut stream = tokio::net::TcpStream::connect(addr).await?;
    let request = format!("GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n");
    stream.write_all(request.as_bytes()).await?;
    let mut response = Vec::new();
    stream.read_to_end(&mut response).await?;
    let text = String::from_utf8_lossy(&response);
    let status = text
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .context("no HTTP status")?;
    let body = text.split_once("\r\n\r\n").map_or("", |(_, b)| b);
    Ok((status, body.to_owned()))
}
