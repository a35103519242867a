//! Throughput of `warren work` against the limit, a minimal lapin consumer,
//! measured in the same run on the same broker (issue 7; docs/BENCHMARKS.md).
//!
//! ```sh
//! cargo build --release
//! cargo bench --bench drain -- [--scenario S1,S2,S3,P,X,I,PF] [--rounds N] [--quick]
//! ```
//!
//! For each run: a fresh queue is filled with N persistent messages
//! (confirmed, pipelined), then one consumer drains it. The time runs from
//! the first delivery (the broker's ready count drops below N, polled by
//! passive declare) to the N-th ack (Warren: its `/metrics`; the raw
//! consumer: its completion line). Afterwards the consumer is stopped and
//! the queue must be empty. Contenders alternate within every round, so
//! noise from other work on the machine hits both alike.
//!
//! The same binary is the limit (see `raw.rs`):
//! `--raw-consumer URL QUEUE N [PREFETCH=1000] [SLEEP_MS=0] [WORKERS=0]`,
//! `--raw-publisher URL QUEUE FILE [WINDOW=1024]`, `--raw-exec N CONCURRENCY PROGRAM`.
//!
//! Environment: `WARREN_BENCH_AMQP_URL` (default the local broker),
//! `WARREN_BIN` (default `target/release/warren`).

#[path = "drain/child.rs"]
mod child;
#[path = "drain/procfs.rs"]
mod procfs;
#[path = "drain/raw.rs"]
mod raw;
#[path = "drain/report.rs"]
mod report;

use anyhow::{Context, Result, bail};
use child::{Proc, Warren, warren_command};
use lapin::options::{QueueDeclareOptions, QueueDeleteOptions};
use lapin::types::FieldTable;
use lapin::{Channel, Connection, ConnectionProperties};
use procfs::Usage;
use report::{Row, Sample, Startup};
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::{Duration, Instant};

const DEFAULT_URL: &str = "amqp://guest:guest@127.0.0.1:5672/%2f";
/// Confirms outstanding while publishing (as `warren publish`).
const WINDOW: usize = 1024;
/// How often the broker's ready count is read while waiting for the first delivery.
const READY_POLL: Duration = Duration::from_millis(2);
/// How often Warren's /metrics is read while it drains.
const METRICS_POLL: Duration = Duration::from_millis(5);
/// Give up on a run after this long.
const RUN_LIMIT: Duration = Duration::from_secs(300);

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("a tokio runtime");
    let result = match args.first().map(String::as_str) {
        Some("--raw-consumer") => runtime.block_on(raw_consumer(&args[1..])),
        Some("--raw-publisher") => runtime.block_on(raw_publisher(&args[1..])),
        Some("--raw-exec") => runtime.block_on(raw_exec(&args[1..])),
        // `cargo bench` passes --bench; `cargo test --all-targets` runs us
        // without it: check the arithmetic and do not touch any broker.
        _ if !args.iter().any(|a| a == "--bench") => {
            report::self_check();
            eprintln!("drain: run it with `cargo bench --bench drain -- [--quick]`");
            Ok(())
        }
        _ => Options::parse(&args).and_then(|o| runtime.block_on(orchestrate(o))),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("drain: error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn arg<T: std::str::FromStr>(
    args: &[String],
    i: usize,
    name: &str,
    default: Option<T>,
) -> Result<T> {
    match (args.get(i), default) {
        (Some(v), _) => v.parse().ok().with_context(|| format!("bad {name}: {v}")),
        (None, Some(d)) => Ok(d),
        (None, None) => bail!("missing {name}"),
    }
}

async fn raw_consumer(args: &[String]) -> Result<()> {
    let url: String = arg(args, 0, "URL", None)?;
    let queue: String = arg(args, 1, "QUEUE", None)?;
    let n: u64 = arg(args, 2, "N", None)?;
    let prefetch: u16 = arg(args, 3, "PREFETCH", Some(1000))?;
    let sleep_ms: u64 = arg(args, 4, "SLEEP_MS", Some(0))?;
    let workers: usize = arg(args, 5, "WORKERS", Some(0))?;
    let work = Duration::from_millis(sleep_ms);
    raw::consume(&url, &queue, n, prefetch, work, workers).await
}

async fn raw_publisher(args: &[String]) -> Result<()> {
    let url: String = arg(args, 0, "URL", None)?;
    let queue: String = arg(args, 1, "QUEUE", None)?;
    let file: String = arg(args, 2, "FILE", None)?;
    let window: usize = arg(args, 3, "WINDOW", Some(WINDOW))?;
    raw::publish_file(&url, &queue, &file, window).await
}

async fn raw_exec(args: &[String]) -> Result<()> {
    let n: usize = arg(args, 0, "N", None)?;
    let concurrency: usize = arg(args, 1, "CONCURRENCY", None)?;
    let program: String = arg(args, 2, "PROGRAM", None)?;
    raw::exec(n, concurrency, &program).await
}

/// The orchestrator's command line.
struct Options {
    scenarios: Vec<String>,
    rounds: usize,
    quick: bool,
}

impl Options {
    fn parse(args: &[String]) -> Result<Options> {
        let mut o = Options {
            scenarios: ["S1", "S2", "S3", "P", "X", "I"].map(String::from).to_vec(),
            rounds: 0,
            quick: false,
        };
        let mut it = args.iter();
        while let Some(a) = it.next() {
            match a.as_str() {
                "--bench" => {}
                "--quick" => o.quick = true,
                "--rounds" => o.rounds = it.next().context("--rounds N")?.parse()?,
                "--scenario" | "--scenarios" => {
                    let list = it.next().context("--scenario S1,S2,…")?;
                    o.scenarios = list.split(',').map(|s| s.trim().to_uppercase()).collect();
                }
                other => bail!(
                    "unknown argument {other}; use --scenario S1,S2,S3,P,X,I[,PF] --rounds N --quick"
                ),
            }
        }
        if o.rounds == 0 {
            o.rounds = if o.quick { 1 } else { 3 };
        }
        Ok(o)
    }
}

/// Who drains a queue in a run.
#[derive(Debug, Clone)]
enum Contender {
    /// `warren work` with these extra arguments.
    Warren(Vec<String>),
    /// The minimal lapin consumer: prefetch, work per task in ms, and
    /// workers (0: acks never awaited; n: Warren's shape, see raw.rs).
    Raw {
        prefetch: u16,
        sleep_ms: u64,
        workers: usize,
    },
    /// The cost of a process per task without a broker: concurrency, program.
    RawExec { concurrency: usize, program: String },
}

/// A drain scenario and its contenders; the first is the limit.
struct Scenario {
    id: &'static str,
    title: String,
    n: usize,
    /// Dots per body (the sleep handler's work).
    dots: usize,
    ideal_s: Option<f64>,
    contenders: Vec<(String, Contender)>,
}

fn s(args: &[&str]) -> Vec<String> {
    args.iter().map(|a| a.to_string()).collect()
}

fn scenarios(quick: bool) -> Vec<Scenario> {
    let size = |full: usize, small: usize| if quick { small } else { full };
    let noop = s(&["--handler", "sleep", "--per-dot", "0s"]);
    let with = |extra: &[&str]| [noop.clone(), s(extra)].concat();
    let raw = |prefetch: u16, sleep_ms: u64| Contender::Raw {
        prefetch,
        sleep_ms,
        workers: 0,
    };
    let limit = |label: &str, c| (label.to_owned(), c);
    let (s1, s3) = (size(50_000, 5_000), size(20_000, 5_000));
    let sleepy = |c: &str| {
        s(&[
            "--handler",
            "sleep",
            "--per-dot",
            "20ms",
            "--concurrency",
            c,
        ])
    };
    vec![
        Scenario {
            id: "S1",
            title: "S1 no-op".into(),
            n: s1,
            dots: 0,
            ideal_s: None,
            contenders: vec![
                limit("raw lapin, prefetch 1000", raw(1000, 0)),
                (
                    "warren, defaults (c 8, prefetch auto)".into(),
                    Contender::Warren(noop.clone()),
                ),
                (
                    "warren --concurrency 200 --prefetch 1000".into(),
                    Contender::Warren(with(&["--concurrency", "200", "--prefetch", "1000"])),
                ),
                (
                    "warren --prefetch 1000 (c 8)".into(),
                    Contender::Warren(with(&["--prefetch", "1000"])),
                ),
                (
                    "warren --concurrency 1000 --prefetch 1000".into(),
                    Contender::Warren(with(&["--concurrency", "1000", "--prefetch", "1000"])),
                ),
                (
                    "diagnostic: raw lapin shaped like warren (8 workers, each awaits its ack, prefetch 8)"
                        .into(),
                    Contender::Raw {
                        prefetch: 8,
                        sleep_ms: 0,
                        workers: 8,
                    },
                ),
            ],
        },
        Scenario {
            // Not run by default: the prefetch trade at the default concurrency.
            id: "PF",
            title: "PF prefetch sweep, c 8".into(),
            n: s1,
            dots: 0,
            ideal_s: None,
            contenders: [8, 32, 128, 1000].into_iter().fold(
                vec![limit("raw lapin, prefetch 1000", raw(1000, 0))],
                |mut all, p| {
                    let p = p.to_string();
                    let who = format!("warren --prefetch {p} (c 8)");
                    all.push((who, Contender::Warren(with(&["--prefetch", &p]))));
                    all
                },
            ),
        },
        Scenario {
            id: "S2",
            title: "S2 20 ms, c 100".into(),
            n: 2_000,
            dots: 1,
            ideal_s: Some(2_000.0 / 100.0 * 0.020),
            contenders: vec![
                limit("raw lapin, prefetch 100, 20 ms sleep", raw(100, 20)),
                (
                    "warren --concurrency 100".into(),
                    Contender::Warren(sleepy("100")),
                ),
            ],
        },
        Scenario {
            id: "S3",
            title: "S3 20 ms, c 1000".into(),
            n: s3,
            dots: 1,
            ideal_s: Some(s3 as f64 / 1000.0 * 0.020),
            contenders: vec![
                limit("raw lapin, prefetch 1000, 20 ms sleep", raw(1000, 20)),
                (
                    "warren --concurrency 1000".into(),
                    Contender::Warren(sleepy("1000")),
                ),
            ],
        },
        Scenario {
            id: "X",
            title: "X exec /bin/true, c 8".into(),
            n: size(2_000, 500),
            dots: 0,
            ideal_s: None,
            contenders: vec![
                limit(
                    "spawn /bin/true, 8 at a time, no broker",
                    Contender::RawExec {
                        concurrency: 8,
                        program: "/bin/true".into(),
                    },
                ),
                (
                    "warren --handler exec -- /bin/true".into(),
                    Contender::Warren(s(&[
                        "--handler",
                        "exec",
                        "--concurrency",
                        "8",
                        "--",
                        "/bin/true",
                    ])),
                ),
            ],
        },
    ]
}

/// What every run needs: the broker, the binaries, a channel for setup.
struct Bench {
    url: String,
    warren: PathBuf,
    me: PathBuf,
    conn: Connection,
    channel: Channel,
    broker_pid: Option<u32>,
    hz: f64,
    /// Queues this run declared, deleted again at the end.
    queues: Vec<String>,
}

async fn orchestrate(opts: Options) -> Result<()> {
    let url = std::env::var("WARREN_BENCH_AMQP_URL").unwrap_or_else(|_| DEFAULT_URL.into());
    let warren = std::env::var_os("WARREN_BIN").map_or_else(
        || PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("target/release/warren"),
        PathBuf::from,
    );
    anyhow::ensure!(
        warren.exists(),
        "{} is missing: run `cargo build --release` or set WARREN_BIN",
        warren.display()
    );
    let conn = Connection::connect(&url, ConnectionProperties::default())
        .await
        .with_context(|| format!("connecting to {url} (WARREN_BENCH_AMQP_URL)"))?;
    let channel = conn.create_channel().await?;
    let mut bench = Bench {
        broker_pid: broker_pid(&url),
        url,
        me: std::env::current_exe()?,
        warren,
        conn,
        channel,
        hz: procfs::ticks_per_second(),
        queues: Vec::new(),
    };
    let load_before = procfs::load_average();
    let mut rows = Vec::new();
    for sc in scenarios(opts.quick) {
        if opts.scenarios.iter().any(|s| s == sc.id) {
            rows.extend(bench.drain_scenario(&sc, opts.rounds).await);
        }
    }
    if opts.scenarios.iter().any(|s| s == "P") {
        rows.extend(
            bench
                .publish_scenario(if opts.quick { 5_000 } else { 50_000 }, opts.rounds)
                .await?,
        );
    }
    let startup = if opts.scenarios.iter().any(|s| s == "I") {
        bench.startup_scenario(opts.rounds.max(3)).await?
    } else {
        Vec::new()
    };
    bench.delete_all().await;
    let version = std::process::Command::new(&bench.warren)
        .arg("--version")
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_owned())
        .unwrap_or_default();
    println!(
        "Machine: {}; broker {} ({}); {version}; {} round(s), contenders alternating; \
         1-min load average {load_before} before, {} after.\n",
        procfs::machine(),
        redact(&bench.url),
        if bench.broker_pid.is_some() {
            "local: its CPU is measured"
        } else {
            "remote or not found: no broker CPU"
        },
        opts.rounds,
        procfs::load_average(),
    );
    if !rows.is_empty() {
        println!("{}", report::throughput_table(&rows));
    }
    if !startup.is_empty() {
        println!("{}", report::startup_table(&startup));
    }
    let _ = bench.conn.close(200, "done".into()).await;
    Ok(())
}

impl Bench {
    /// A fresh queue name for one run (and its Warren topology, deleted later).
    fn queue(&mut self, what: &str, round: usize, k: usize) -> String {
        let q = format!("warren-bench-{}-{what}-{round}-{k}", std::process::id());
        self.queues.push(q.clone());
        q
    }

    /// A working channel: the old one, unless a failed operation closed it.
    async fn chan(&mut self) -> Result<&Channel> {
        if !self.channel.status().connected() {
            self.channel = self.conn.create_channel().await?;
        }
        Ok(&self.channel)
    }

    async fn ready_count(&mut self, queue: &str) -> Result<u32> {
        let q = self
            .chan()
            .await?
            .queue_declare(
                queue.into(),
                QueueDeclareOptions::default().passive(),
                FieldTable::default(),
            )
            .await?;
        Ok(q.message_count())
    }

    fn broker_ticks(&self) -> Option<u64> {
        self.broker_pid
            .and_then(|pid| Usage::of(pid).ok())
            .map(|u| u.cpu_ticks)
    }

    /// Declares `queue` and fills it with `n` persistent bodies "task i" + dots.
    async fn fill(&mut self, queue: &str, n: usize, dots: usize) -> Result<()> {
        let bodies: Vec<Vec<u8>> = (1..=n)
            .map(|i| format!("task {i}{}", ".".repeat(dots)).into_bytes())
            .collect();
        let channel = self.chan().await?.clone();
        let before = raw::declare(&channel, queue).await?;
        anyhow::ensure!(
            before == 0,
            "queue {queue} is not fresh ({before} messages)"
        );
        raw::publish(&channel, queue, bodies.iter().map(Vec::as_slice), WINDOW).await?;
        let ready = self.ready_count(queue).await?;
        anyhow::ensure!(
            ready as usize == n,
            "filled {queue} with {ready}, wanted {n}"
        );
        Ok(())
    }

    async fn drain_scenario(&mut self, sc: &Scenario, rounds: usize) -> Vec<Row> {
        let mut rows: Vec<Row> = sc
            .contenders
            .iter()
            .enumerate()
            .map(|(k, (who, _))| Row {
                scenario: sc.title.clone(),
                who: who.clone(),
                n: sc.n,
                is_limit: k == 0,
                ideal_s: sc.ideal_s,
                samples: Vec::new(),
                failures: Vec::new(),
            })
            .collect();
        for round in 0..rounds {
            // Rotate the order each round so neither side always goes first.
            let count = sc.contenders.len();
            for k in (0..count).map(|i| (i + round) % count) {
                let (who, contender) = &sc.contenders[k];
                eprintln!("drain: {} round {}/{rounds}: {who}", sc.id, round + 1);
                let result = self.drain_once(sc, contender, round, k).await;
                match result {
                    Ok(sample) => {
                        eprintln!(
                            "  {:.3} s, {:.0} tasks/s, peak RSS {:.1} MB, CPU {:.2} s",
                            sample.secs,
                            sc.n as f64 / sample.secs,
                            sample.rss_mb,
                            sample.cpu_s
                        );
                        rows[k].samples.push(sample);
                    }
                    Err(e) => {
                        eprintln!("  failed: {e:#}");
                        rows[k].failures.push(format!("{e:#}"));
                    }
                }
            }
        }
        rows
    }

    async fn drain_once(
        &mut self,
        sc: &Scenario,
        contender: &Contender,
        round: usize,
        k: usize,
    ) -> Result<Sample> {
        if let Contender::RawExec {
            concurrency,
            program,
        } = contender
        {
            return self.raw_exec_once(sc.n, *concurrency, program).await;
        }
        let queue = self.queue(sc.id, round, k);
        self.fill(&queue, sc.n, sc.dots).await?;
        let result = self.drain_filled(sc.n, contender, &queue).await;
        self.delete_topology(&queue).await;
        result
    }

    async fn drain_filled(
        &mut self,
        n: usize,
        contender: &Contender,
        queue: &str,
    ) -> Result<Sample> {
        let (mut warren, mut proc) = match contender {
            Contender::Warren(extra) => {
                let mut args = s(&[
                    "work",
                    "--amqp-url",
                    &self.url,
                    "--queue",
                    queue,
                    "--listen",
                    "127.0.0.1:0",
                ]);
                // Extra arguments last: they may end with `-- PROGRAM`.
                args.extend(extra.iter().cloned());
                let w = Warren::start(&self.warren, &args).await?;
                (Some(w), None)
            }
            Contender::Raw {
                prefetch,
                sleep_ms,
                workers,
            } => {
                let mut cmd = tokio::process::Command::new(&self.me);
                cmd.arg("--raw-consumer").args([
                    &self.url,
                    queue,
                    &n.to_string(),
                    &prefetch.to_string(),
                    &sleep_ms.to_string(),
                    &workers.to_string(),
                ]);
                (None, Some(Proc::spawn(cmd, false)?))
            }
            Contender::RawExec { .. } => unreachable!("handled by drain_once"),
        };
        let p = warren
            .as_mut()
            .map_or_else(|| proc.as_mut().expect("one of them"), |w| &mut w.proc);
        // The first delivery: the broker's ready count drops below n.
        let deadline = Instant::now() + RUN_LIMIT;
        let t0 = loop {
            if (self.ready_count(queue).await? as usize) < n {
                break Instant::now();
            }
            anyhow::ensure!(!p.exited(), "the consumer exited before the first delivery");
            anyhow::ensure!(
                Instant::now() < deadline,
                "no delivery within {RUN_LIMIT:?}"
            );
            tokio::time::sleep(READY_POLL).await;
        };
        let cpu0 = p.usage()?.cpu_ticks;
        let broker0 = self.broker_ticks();
        let (t1, end) = if let Some(w) = &warren {
            loop {
                if w.acked().await? >= n as u64 {
                    break (Instant::now(), w.proc.usage()?);
                }
                anyhow::ensure!(
                    Instant::now() < deadline,
                    "not all acked within {RUN_LIMIT:?}"
                );
                tokio::time::sleep(METRICS_POLL).await;
            }
        } else {
            let p = proc.as_mut().expect("raw consumer");
            let (at, line) = p.line_with(raw::CONSUMER_DONE, RUN_LIMIT).await?;
            (at, parse_usage(&line))
        };
        let broker1 = self.broker_ticks();
        if let Some(w) = &mut warren {
            let acked = w.acked().await?;
            anyhow::ensure!(acked == n as u64, "warren acked {acked}, expected {n}");
            w.proc.terminate(Duration::from_secs(60)).await?;
        } else if let Some(p) = &mut proc {
            p.wait(Duration::from_secs(30)).await?;
        }
        // Unacked messages would be back in the queue once the consumer is gone.
        let left = self.ready_count(queue).await?;
        anyhow::ensure!(left == 0, "{left} messages left in {queue} after the drain");
        Ok(Sample {
            secs: (t1 - t0).as_secs_f64(),
            rss_mb: end.vm_hwm_kb as f64 / 1024.0,
            cpu_s: end.cpu_ticks.saturating_sub(cpu0) as f64 / self.hz,
            broker_cpu_s: broker0.zip(broker1).map(|(a, b)| (b - a) as f64 / self.hz),
        })
    }

    /// The exec limit: `n` processes, no broker; measured with wait4.
    async fn raw_exec_once(
        &mut self,
        n: usize,
        concurrency: usize,
        program: &str,
    ) -> Result<Sample> {
        let mut cmd = std::process::Command::new(&self.me);
        cmd.args([
            "--raw-exec",
            &n.to_string(),
            &concurrency.to_string(),
            program,
        ]);
        let (out, exited, _) = self.run_to_exit(cmd).await?;
        Ok(Sample {
            secs: reported_secs(&out, raw::EXEC_DONE)?,
            rss_mb: exited.max_rss_kb as f64 / 1024.0,
            cpu_s: exited.cpu_seconds,
            broker_cpu_s: None,
        })
    }

    /// Runs `cmd` to completion; its stdout, wait4's usage, and the broker's CPU meanwhile.
    async fn run_to_exit(
        &self,
        mut cmd: std::process::Command,
    ) -> Result<(String, procfs::Exited, Option<f64>)> {
        use std::io::Read;
        let broker0 = self.broker_ticks();
        let mut child = cmd
            .stdout(std::process::Stdio::piped())
            .stdin(std::process::Stdio::null())
            .spawn()?;
        let pid = child.id();
        let mut stdout = child.stdout.take().context("no stdout")?;
        let (out, exited) = tokio::task::spawn_blocking(move || {
            let mut out = String::new();
            let _ = stdout.read_to_string(&mut out);
            (out, procfs::wait4(pid))
        })
        .await?;
        let exited = exited?;
        anyhow::ensure!(exited.success, "{cmd:?} failed: {out}");
        let broker = broker0
            .zip(self.broker_ticks())
            .map(|(a, b)| (b - a) as f64 / self.hz);
        Ok((out, exited, broker))
    }

    /// `warren publish --file` against the raw confirmed publisher.
    async fn publish_scenario(&mut self, n: usize, rounds: usize) -> Result<Vec<Row>> {
        let file = std::env::temp_dir().join(format!("warren-bench-{}.txt", std::process::id()));
        let text: String = (1..=n).map(|i| format!("task {i}\n")).collect();
        std::fs::write(&file, text)?;
        let title = "P publish (confirmed)".to_owned();
        let row = |who: &str, is_limit| Row {
            scenario: title.clone(),
            who: who.into(),
            n,
            is_limit,
            ideal_s: None,
            samples: Vec::new(),
            failures: Vec::new(),
        };
        let mut rows = vec![
            row("raw lapin publisher, window 1024", true),
            row("warren publish --file", false),
        ];
        for round in 0..rounds {
            for k in (0..2).map(|i| (i + round) % 2) {
                eprintln!("drain: P round {}/{rounds}: {}", round + 1, rows[k].who);
                let queue = self.queue("P", round, k);
                let result = self.publish_once(k == 0, &queue, &file, n).await;
                self.delete_topology(&queue).await;
                match result {
                    Ok(sample) => rows[k].samples.push(sample),
                    Err(e) => {
                        eprintln!("  failed: {e:#}");
                        rows[k].failures.push(format!("{e:#}"));
                    }
                }
            }
        }
        let _ = std::fs::remove_file(&file);
        Ok(rows)
    }

    async fn publish_once(
        &mut self,
        raw: bool,
        queue: &str,
        file: &std::path::Path,
        n: usize,
    ) -> Result<Sample> {
        let file = file.to_string_lossy().into_owned();
        let cmd = if raw {
            let mut cmd = std::process::Command::new(&self.me);
            cmd.args(["--raw-publisher", &self.url, queue, &file]);
            cmd
        } else {
            let args = s(&[
                "publish",
                "--amqp-url",
                &self.url,
                "--queue",
                queue,
                "--file",
                &file,
            ]);
            let mut cmd = warren_command(&self.warren, &args);
            cmd.env("WARREN_LOG", "warn");
            cmd
        };
        let (out, exited, broker) = self.run_to_exit(cmd).await?;
        let secs = if raw {
            reported_secs(&out, raw::PUBLISHER_DONE)?
        } else {
            reported_secs(&out, "published ")?
        };
        let stored = self.ready_count(queue).await? as usize;
        anyhow::ensure!(stored == n, "{stored} of {n} messages in {queue}");
        Ok(Sample {
            secs,
            rss_mb: exited.max_rss_kb as f64 / 1024.0,
            cpu_s: exited.cpu_seconds,
            broker_cpu_s: broker,
        })
    }

    /// Start-up time and idle memory of `warren work` on an empty queue.
    async fn startup_scenario(&mut self, rounds: usize) -> Result<Vec<Startup>> {
        let mut samples = Vec::new();
        for round in 0..rounds {
            eprintln!("drain: I round {}/{rounds}: start, idle, stop", round + 1);
            let queue = self.queue("I", round, 0);
            let args = s(&[
                "work",
                "--amqp-url",
                &self.url,
                "--queue",
                &queue,
                "--listen",
                "127.0.0.1:0",
            ]);
            let mut w = Warren::start(&self.warren, &args).await?;
            let ready_at = loop {
                if w.ready().await {
                    break Instant::now();
                }
                anyhow::ensure!(
                    w.proc.started.elapsed() < Duration::from_secs(30),
                    "not ready in 30 s"
                );
                tokio::time::sleep(Duration::from_millis(1)).await;
            };
            tokio::time::sleep(Duration::from_secs(2)).await;
            let usage = w.proc.usage()?;
            let stop = w.proc.terminate(Duration::from_secs(60)).await?;
            self.delete_topology(&queue).await;
            samples.push(Startup {
                ready_ms: (ready_at - w.proc.started).as_secs_f64() * 1e3,
                idle_rss_mb: usage.vm_rss_kb as f64 / 1024.0,
                idle_hwm_mb: usage.vm_hwm_kb as f64 / 1024.0,
                stop_ms: stop.as_secs_f64() * 1e3,
            });
        }
        Ok(samples)
    }

    /// Deletes `queue` and what Warren declares beside it.
    async fn delete_topology(&mut self, queue: &str) {
        let mut names = vec![queue.to_owned(), format!("{queue}.dead")];
        names.extend(["1s", "10s", "1m", "10m"].map(|d| format!("{queue}.retry.{d}")));
        for name in names {
            if let Ok(channel) = self.chan().await {
                let _ = channel
                    .queue_delete(name.as_str().into(), QueueDeleteOptions::default())
                    .await;
            }
        }
    }

    async fn delete_all(&mut self) {
        for queue in std::mem::take(&mut self.queues) {
            self.delete_topology(&queue).await;
        }
    }
}

/// "…acked N cpu_ticks=X vm_hwm_kb=Y" → the usage it reports of itself.
fn parse_usage(line: &str) -> Usage {
    let field = |key: &str| {
        line.split_whitespace()
            .find_map(|w| w.strip_prefix(key))
            .and_then(|v| v.parse().ok())
            .unwrap_or(0)
    };
    Usage {
        cpu_ticks: field("cpu_ticks="),
        vm_hwm_kb: field("vm_hwm_kb="),
        vm_rss_kb: 0,
    }
}

/// "… in 1.234s …" on the line starting with `prefix`.
fn reported_secs(out: &str, prefix: &str) -> Result<f64> {
    out.lines()
        .filter(|l| l.starts_with(prefix))
        .find_map(|l| {
            let rest = &l[l.find(" in ")? + 4..];
            rest.split('s').next()?.trim().parse().ok()
        })
        .with_context(|| format!("no '{prefix}… in Xs' line in: {out}"))
}

/// The broker's pid when the URL points at this host (its CPU is then measured).
fn broker_pid(url: &str) -> Option<u32> {
    let uri: lapin::uri::AMQPUri = url.parse().ok()?;
    let local = matches!(
        uri.authority.host.as_str(),
        "127.0.0.1" | "localhost" | "::1"
    );
    local
        .then(|| procfs::listener_pid(uri.authority.port))
        .flatten()
}

fn redact(url: &str) -> String {
    match (url.find("://"), url.rfind('@')) {
        (Some(scheme), Some(at)) if at > scheme => {
            format!("{}://…@{}", &url[..scheme], &url[at + 1..])
        }
        _ => url.to_owned(),
    }
}
