//! The command-line surface: `warren work | publish | status | dead … | config check`.
//!
//! The config flags are generated from the key table
//! ([`config::flags`]) and their text is merged into
//! the config by [`config::load()`], so a bad flag value
//! fails with the same message (key + flag name) as a bad YAML or env value.

use crate::amqp::{self, publish, topology};
use crate::app::App;
use crate::config::flags::KeyFlags;
use crate::config::{self, Config, Layer, Loaded};
use crate::error::{Error, Result};
use crate::handler::Builtin;
use crate::status;
use clap::{Args, Parser, Subcommand};
use std::io::{BufRead, Write};
use std::path::PathBuf;
use tokio_util::sync::CancellationToken;

pub mod dead;

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
    /// Inspect, replay, purge or export the dead-letter queue.
    #[command(subcommand)]
    Dead(dead::DeadCommand),
    /// Inspect the configuration.
    #[command(subcommand)]
    Config(ConfigCommand),
}

/// `warren config …`
#[derive(Debug, Subcommand)]
pub enum ConfigCommand {
    /// Load, validate and print the effective config (password redacted).
    Check(WorkArgs),
    /// List every config key: default, env var, flag and meaning.
    Keys(KeysArgs),
}

/// Flags every command shares besides the config keys.
#[derive(Debug, Args)]
pub struct CommonArgs {
    /// YAML config file (also WARREN_CONFIG).
    #[arg(long, env = "WARREN_CONFIG", value_name = "FILE")]
    pub config: Option<PathBuf>,
}

/// `warren work` (and `config check`, which accepts the same flags): every
/// config key's flag, and the exec program after `--`.
#[derive(Debug, Args)]
pub struct WorkArgs {
    #[command(flatten)]
    pub common: CommonArgs,
    #[command(flatten)]
    pub keys: KeyFlags<true>,
}

/// `warren publish`
#[derive(Debug, Args)]
pub struct PublishArgs {
    #[command(flatten)]
    pub common: CommonArgs,
    #[command(flatten)]
    pub keys: KeyFlags<false>,
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
    #[command(flatten)]
    pub keys: KeyFlags<false>,
}

/// `warren config keys`
#[derive(Debug, Args)]
pub struct KeysArgs {
    /// Print README.md's Markdown table instead of text.
    #[arg(long)]
    pub markdown: bool,
}

impl CommonArgs {
    /// Merges file, env and `flags` and validates; logs env warnings.
    fn load(&self, flags: &[Layer]) -> Result<Loaded> {
        let (mut layers, warnings) = config::env_layers(std::env::vars());
        for w in warnings {
            tracing::warn!("{w}");
        }
        layers.extend_from_slice(flags);
        config::load(self.config.as_deref(), &layers)
    }
}

impl WorkArgs {
    fn load(&self) -> Result<Loaded> {
        self.common.load(self.keys.layers())
    }
}

/// Runs a parsed command line. `shutdown` stops `work` gracefully.
pub async fn run(cli: Cli, shutdown: CancellationToken) -> Result<()> {
    match cli.command {
        Command::Work(args) => {
            let loaded = args.load()?;
            let handler = Builtin::from_config(&loaded.config)?;
            App::from_loaded(loaded, handler)
                .serve_http()
                .reap_orphans()
                .run(shutdown)
                .await
        }
        Command::Publish(args) => run_publish(args).await,
        Command::Dead(command) => dead::run(command, shutdown).await,
        Command::Status(args) => {
            let config = args.common.load(args.keys.layers())?.config;
            let rows = status::queue_status(&config).await?;
            print!("{}", status::render(&rows));
            Ok(())
        }
        Command::Config(ConfigCommand::Check(args)) => {
            let loaded = args.load()?;
            for warning in &loaded.warnings {
                eprintln!("warning: {warning}");
            }
            print!("{}", config::effective_yaml(&loaded));
            Ok(())
        }
        Command::Config(ConfigCommand::Keys(args)) => {
            match args.markdown {
                true => print!("{}", config::keys_markdown()),
                false => print!("{}", config::keys_text()),
            }
            Ok(())
        }
    }
}

async fn run_publish(args: PublishArgs) -> Result<()> {
    use tracing::Instrument;
    let config = args.common.load(args.keys.layers())?.config;
    let span = tracing::info_span!(
        "publish",
        otel.name = %format!("{} publish", config.queue.name),
        otel.kind = "producer",
        messaging.system = "rabbitmq",
        messaging.operation = "publish",
    );
    publish_in_span(args, config).instrument(span).await
}

/// The body of `warren publish`, inside its producer span so every task
/// carries that span's `traceparent`.
async fn publish_in_span(args: PublishArgs, config: Config) -> Result<()> {
    let bodies = match &args.file {
        Some(path) => read_lines(path)?,
        None if args.message.is_empty() => vec![b"Hello World!".to_vec()],
        None => vec![args.message.join(" ").into_bytes()],
    };
    let (conn, _node) = amqp::connect(&config.amqp, "warren publish").await?;
    // Each call has a deadline: a frozen cluster member can hold a declare.
    let limit = config.amqp.connect_timeout;
    let channel = amqp::open_channel(&conn, limit).await?;
    let topo = topology::Topology::from_config(&config);
    amqp::within(
        limit,
        "declaring queues",
        topology::declare(&channel, &topo),
    )
    .await?;
    amqp::within(
        limit,
        "enabling confirms",
        publish::enable_confirms(&channel),
    )
    .await?;
    let echo = bodies.len() <= 20;
    let mut stdout = std::io::stdout().lock();
    let report = publish::publish_tasks(
        &channel,
        &topo.queue,
        bodies,
        1024,
        config.amqp.confirm_timeout,
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
