//! The command-line surface: `warren work | publish | status | config check`.
//!
//! Flags are taken as text and merged into the config by
//! [`config::load`](crate::config::load), so a bad flag value fails with the
//! same message (key + flag name) as a bad YAML or env value.

use crate::amqp::{self, publish, topology};
use crate::app::App;
use crate::config::{self, Config};
use crate::error::{Error, Result};
use crate::handler::Builtin;
use crate::status;
use clap::{Args, Parser, Subcommand};
use std::io::{BufRead, Write};
use std::path::PathBuf;
use std::time::Duration;
use tokio_util::sync::CancellationToken;

/// Warren: a RabbitMQ work-queue worker pool.
#[derive(Debug, Parser)]
#[command(name = "warren", version, about, propagate_version = true)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

/// The subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Consume the queue and run the handler (the tutorial's worker.py).
    Work(WorkArgs),
    /// Publish persistent tasks with confirms (the tutorial's new_task.py).
    Publish(PublishArgs),
    /// Show ready/unacked messages and consumers of the queues.
    Status(StatusArgs),
    /// Inspect the configuration.
    #[command(subcommand)]
    Config(ConfigCommand),
}

/// `warren config …`
#[derive(Debug, Subcommand)]
pub enum ConfigCommand {
    /// Load, validate and print the effective config (password redacted).
    Check(WorkArgs),
}

/// Flags every command shares.
#[derive(Debug, Args)]
pub struct CommonArgs {
    /// YAML config file (also WARREN_CONFIG).
    #[arg(long, env = "WARREN_CONFIG", value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// Broker URL [default: amqp://guest:guest@127.0.0.1:5672/%2f; env WARREN_AMQP_URL].
    #[arg(long, value_name = "URL")]
    pub amqp_url: Option<String>,
    /// Work queue name [default: task_queue; env WARREN_QUEUE_NAME].
    #[arg(long, value_name = "NAME")]
    pub queue: Option<String>,
    /// Queue type when declaring: classic or quorum [env WARREN_QUEUE_TYPE].
    #[arg(long, value_name = "TYPE")]
    pub queue_type: Option<String>,
    /// amqps: PEM CA bundle that signed the broker's certificate, trusted in
    /// addition to the system roots [env WARREN_AMQP_TLS_CA_FILE].
    #[arg(long, value_name = "FILE")]
    pub tls_ca_file: Option<String>,
    /// amqps: PEM client certificate for mutual TLS [env WARREN_AMQP_TLS_CERT_FILE].
    #[arg(long, value_name = "FILE")]
    pub tls_cert_file: Option<String>,
    /// amqps: PEM (PKCS#8) key of --tls-cert-file [env WARREN_AMQP_TLS_KEY_FILE].
    #[arg(long, value_name = "FILE")]
    pub tls_key_file: Option<String>,
}

/// `warren work` (and `config check`, which accepts the same flags).
#[derive(Debug, Args)]
pub struct WorkArgs {
    #[command(flatten)]
    pub common: CommonArgs,
    /// Tasks processed at once [default: 8].
    #[arg(long, value_name = "N")]
    pub concurrency: Option<String>,
    /// basic_qos prefetch: a number or auto (= concurrency) [default: auto].
    #[arg(long, value_name = "N")]
    pub prefetch: Option<String>,
    /// sleep (the tutorial), exec or http [default: sleep].
    #[arg(long, value_name = "KIND")]
    pub handler: Option<String>,
    /// Sleep handler: work time per '.' in the body [default: 1s].
    #[arg(long, value_name = "DURATION")]
    pub per_dot: Option<String>,
    /// Address of /livez, /readyz and /metrics [default: 0.0.0.0:9090].
    #[arg(long, value_name = "ADDR")]
    pub listen: Option<String>,
    /// Attempts before a failing task is dead-lettered [default: 5].
    #[arg(long, value_name = "N")]
    pub max_attempts: Option<String>,
    /// Retry delays, comma-separated [default: 1s,10s,1m,10m].
    #[arg(long, value_name = "LIST")]
    pub backoff: Option<String>,
    /// A handler running longer is abandoned and retried [default: 10m].
    #[arg(long, value_name = "DURATION")]
    pub handler_timeout: Option<String>,
    /// Time in-flight tasks get to finish after SIGTERM [default: 25s].
    #[arg(long, value_name = "DURATION")]
    pub shutdown_timeout: Option<String>,
    /// Http handler: where tasks are POSTed.
    #[arg(long, value_name = "URL")]
    pub http_url: Option<String>,
    /// Bodies larger than this are dead-lettered unprocessed [default: 67108864].
    #[arg(long, value_name = "BYTES")]
    pub max_body_bytes: Option<String>,
    /// Dead-letter queue [default: <queue>.dead].
    #[arg(long, value_name = "NAME")]
    pub dead_letter_queue: Option<String>,
    /// AMQP heartbeat interval [default: 30s].
    #[arg(long, value_name = "DURATION")]
    pub heartbeat: Option<String>,
    /// The broker's consumer_timeout, to warn about slow handlers [default: 30m].
    #[arg(long, value_name = "DURATION")]
    pub broker_consumer_timeout: Option<String>,
    /// Exec handler: the program and its arguments, after `--`.
    #[arg(last = true, value_name = "PROGRAM ARGS")]
    pub command: Vec<String>,
}

/// `warren publish`
#[derive(Debug, Args)]
pub struct PublishArgs {
    #[command(flatten)]
    pub common: CommonArgs,
    /// Publish one task per non-empty line of this file (`-` = stdin).
    #[arg(long, value_name = "PATH", conflicts_with = "message")]
    pub file: Option<PathBuf>,
    /// The task: the words are joined with spaces [default: "Hello World!"].
    pub message: Vec<String>,
}

/// `warren status`
#[derive(Debug, Args)]
pub struct StatusArgs {
    #[command(flatten)]
    pub common: CommonArgs,
    /// RabbitMQ management API base URL, to show unacked counts.
    #[arg(long, value_name = "URL")]
    pub management_url: Option<String>,
}

impl CommonArgs {
    fn flags(&self) -> Vec<(&'static str, String)> {
        [
            ("--amqp-url", &self.amqp_url),
            ("--queue", &self.queue),
            ("--queue-type", &self.queue_type),
            ("--tls-ca-file", &self.tls_ca_file),
            ("--tls-cert-file", &self.tls_cert_file),
            ("--tls-key-file", &self.tls_key_file),
        ]
        .into_iter()
        .filter_map(|(flag, value)| value.clone().map(|v| (flag, v)))
        .collect()
    }

    /// Merges file, env and `flags`; logs merge warnings.
    fn load(
        &self,
        mut flags: Vec<(&'static str, String)>,
        command: Option<Vec<String>>,
    ) -> Result<Config> {
        flags.splice(0..0, self.flags());
        let (layers, warnings) = config::parse_layers(std::env::vars(), &flags, command);
        for w in warnings {
            tracing::warn!("{w}");
        }
        config::load(self.config.as_deref(), &layers)
    }
}

impl WorkArgs {
    fn load(&self) -> Result<Config> {
        let flags = [
            ("--concurrency", &self.concurrency),
            ("--prefetch", &self.prefetch),
            ("--handler", &self.handler),
            ("--per-dot", &self.per_dot),
            ("--listen", &self.listen),
            ("--max-attempts", &self.max_attempts),
            ("--backoff", &self.backoff),
            ("--handler-timeout", &self.handler_timeout),
            ("--shutdown-timeout", &self.shutdown_timeout),
            ("--http-url", &self.http_url),
            ("--max-body-bytes", &self.max_body_bytes),
            ("--dead-letter-queue", &self.dead_letter_queue),
            ("--heartbeat", &self.heartbeat),
            ("--broker-consumer-timeout", &self.broker_consumer_timeout),
        ]
        .into_iter()
        .filter_map(|(flag, value)| value.clone().map(|v| (flag, v)))
        .collect();
        let command = (!self.command.is_empty()).then(|| self.command.clone());
        self.common.load(flags, command)
    }
}

/// Runs a parsed command line. `shutdown` stops `work` gracefully.
pub async fn run(cli: Cli, shutdown: CancellationToken) -> Result<()> {
    match cli.command {
        Command::Work(args) => {
            let config = args.load()?;
            let handler = Builtin::from_config(&config)?;
            App::new(config, handler).serve_http().run(shutdown).await
        }
        Command::Publish(args) => run_publish(args).await,
        Command::Status(args) => {
            let mut flags = Vec::new();
            if let Some(url) = &args.management_url {
                flags.push(("--management-url", url.clone()));
            }
            let config = args.common.load(flags, None)?;
            let rows = status::queue_status(&config).await?;
            print!("{}", status::render(&rows));
            Ok(())
        }
        Command::Config(ConfigCommand::Check(args)) => {
            let config = args.load()?;
            for warning in config.validate()? {
                eprintln!("warning: {warning}");
            }
            let yaml = serde_yaml::to_string(&config.redacted()).expect("config serializes");
            print!("{yaml}");
            Ok(())
        }
    }
}

async fn run_publish(args: PublishArgs) -> Result<()> {
    use tracing::Instrument;
    let span = tracing::info_span!(
        "publish",
        otel.name = %format!("{} publish", args.common.queue.as_deref().unwrap_or("task_queue")),
        otel.kind = "producer",
        messaging.system = "rabbitmq",
        messaging.operation = "publish",
    );
    publish_in_span(args).instrument(span).await
}

/// The body of `warren publish`, inside its producer span so every task
/// carries that span's `traceparent`.
async fn publish_in_span(args: PublishArgs) -> Result<()> {
    let config = args.common.load(Vec::new(), None)?;
    config.validate()?;
    let bodies = match &args.file {
        Some(path) => read_lines(path)?,
        None if args.message.is_empty() => vec![b"Hello World!".to_vec()],
        None => vec![args.message.join(" ").into_bytes()],
    };
    let conn = amqp::connect(&config.amqp, "warren publish").await?;
    let channel = conn
        .create_channel()
        .await
        .map_err(|e| Error::amqp("opening a channel", e))?;
    let topo = topology::Topology::from_config(&config);
    topology::declare(&channel, &topo).await?;
    publish::enable_confirms(&channel).await?;
    let echo = bodies.len() <= 20;
    let mut stdout = std::io::stdout().lock();
    let report = publish::publish_tasks(
        &channel,
        &topo.queue,
        bodies,
        1024,
        Duration::from_secs(30),
        |body| {
            if echo {
                let shown = String::from_utf8_lossy(body);
                let _ = writeln!(stdout, " [x] Sent '{}'", shown.escape_debug());
            }
        },
    )
    .await?;
    let _ = conn.close(200, "done".into()).await;
    let _ = writeln!(
        stdout,
        "published {} task(s) to '{}' in {:.3}s ({:.0}/s), {} confirmed",
        report.total,
        topo.queue,
        report.elapsed.as_secs_f64(),
        report.rate(),
        report.confirmed
    );
    report.into_result().map(|_| ())
}

/// One task per non-empty line (trailing `\r` removed); `-` reads stdin.
fn read_lines(path: &std::path::Path) -> Result<Vec<Vec<u8>>> {
    let io_err = |source| Error::Io {
        context: format!("reading tasks from {}", path.display()),
        source,
    };
    let reader: Box<dyn BufRead> = if path.as_os_str() == "-" {
        Box::new(std::io::stdin().lock())
    } else {
        Box::new(std::io::BufReader::new(
            std::fs::File::open(path).map_err(io_err)?,
        ))
    };
    let mut tasks = Vec::new();
    for line in reader.split(b'\n') {
        let mut line = line.map_err(io_err)?;
        if line.last() == Some(&b'\r') {
            line.pop();
        }
        if !line.is_empty() {
            tasks.push(line);
        }
    }
    Ok(tasks)
}
