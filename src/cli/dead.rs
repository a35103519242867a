//! `warren dead …`: the flags of the dead-letter commands (the contract in
//! docs/operations.md), turned into a [`dead::Command`].

use super::CommonArgs;
use crate::config::flags::KeyFlags;
use crate::dead::{self, Command, Selection};
use crate::error::{Error, Result};
use clap::{Args, Subcommand};
use std::path::PathBuf;
use tokio_util::sync::CancellationToken;

/// `warren dead`
#[derive(Debug, Subcommand)]
pub enum DeadCommand {
    /// A summary by reason, then one row per dead letter.
    List(ListArgs),
    /// One dead letter in full: properties, headers, reason and body.
    Show(ShowArgs),
    /// Publish dead letters back to the work queue (confirmed, then removed).
    Replay(ReplayArgs),
    /// Remove dead letters for good (needs --yes).
    Purge(PurgeArgs),
    /// Write dead letters as JSON lines, complete enough to publish again.
    Export(ExportArgs),
}

/// The queue and broker: `--config`, `--amqp-url`, `--queue`, `--tls-*` ….
/// `--queue` names the work queue; its dead-letter queue is
/// `retry.dead_letter_queue` (default `<queue>.dead`).
#[derive(Debug, Args)]
pub struct Target {
    #[command(flatten)]
    common: CommonArgs,
    #[command(flatten)]
    keys: KeyFlags<false>,
}

/// Which dead letters: every filter given must match.
#[derive(Debug, Args)]
pub struct Filter {
    /// At most this many.
    #[arg(long, value_name = "N")]
    limit: Option<usize>,
    /// Part of the reason (case-insensitive).
    #[arg(long, value_name = "TEXT")]
    reason: Option<String>,
}

/// What `replay` and `purge` act on, and whether only to show it.
#[derive(Debug, Args)]
pub struct Pick {
    #[command(flatten)]
    filter: Filter,
    /// Only these message ids (repeat the flag for more).
    #[arg(long = "message-id", value_name = "ID")]
    ids: Vec<String>,
    /// Print what would be done; change nothing.
    #[arg(long)]
    dry_run: bool,
}

#[derive(Debug, Args)]
pub struct ListArgs {
    #[command(flatten)]
    target: Target,
    #[command(flatten)]
    filter: Filter,
    /// One JSON object per dead letter, for scripts (no summary).
    #[arg(long)]
    json: bool,
}

#[derive(Debug, Args)]
pub struct ShowArgs {
    #[command(flatten)]
    target: Target,
    /// The message id (from `warren dead list`).
    message_id: String,
}

#[derive(Debug, Args)]
pub struct ReplayArgs {
    #[command(flatten)]
    target: Target,
    #[command(flatten)]
    pick: Pick,
    /// At most this many messages per second.
    #[arg(long, value_name = "N")]
    rate: Option<u32>,
}

#[derive(Debug, Args)]
pub struct PurgeArgs {
    #[command(flatten)]
    target: Target,
    #[command(flatten)]
    pick: Pick,
    /// Really remove them.
    #[arg(long)]
    yes: bool,
}

#[derive(Debug, Args)]
pub struct ExportArgs {
    #[command(flatten)]
    target: Target,
    #[command(flatten)]
    filter: Filter,
    /// Write here instead of stdout (`-` = stdout).
    #[arg(long, value_name = "PATH")]
    file: Option<PathBuf>,
}

impl Filter {
    fn selection(self, ids: Vec<String>) -> Result<Selection> {
        Selection::new(self.reason, ids, self.limit)
    }
}

/// Runs one `warren dead` command; `stop` (the first signal) ends its pass
/// cleanly.
pub async fn run(command: DeadCommand, stop: CancellationToken) -> Result<()> {
    let (target, command, file) = parse(command)?;
    let config = target.common.load(target.keys.layers())?.config;
    let mut out: Box<dyn std::io::Write> = match file {
        Some(path) if path.as_os_str() != "-" => {
            let file = std::fs::File::create(&path).map_err(|source| Error::Io {
                context: format!("creating the export file {}", path.display()),
                source,
            })?;
            Box::new(std::io::BufWriter::new(file))
        }
        _ => Box::new(std::io::BufWriter::new(std::io::stdout().lock())),
    };
    dead::run(&config, command, stop, &mut out).await
}

fn parse(command: DeadCommand) -> Result<(Target, Command, Option<PathBuf>)> {
    Ok(match command {
        DeadCommand::List(a) => {
            let selection = a.filter.selection(Vec::new())?;
            let json = a.json;
            (a.target, Command::List { selection, json }, None)
        }
        DeadCommand::Show(a) => (a.target, Command::Show { id: a.message_id }, None),
        DeadCommand::Replay(a) => {
            if a.rate == Some(0) {
                return Err(Error::Usage {
                    flag: "--rate".into(),
                    message: "0 replays nothing; give messages per second (1 or more)".into(),
                });
            }
            let selection = a.pick.filter.selection(a.pick.ids)?;
            let (dry_run, rate) = (a.pick.dry_run, a.rate);
            let command = Command::Replay {
                selection,
                dry_run,
                rate,
            };
            (a.target, command, None)
        }
        DeadCommand::Purge(a) => {
            if !a.yes && !a.pick.dry_run {
                return Err(Error::Usage {
                    flag: "--yes".into(),
                    message: "purge removes dead letters for good: add --yes, or --dry-run to see \
                              which it would remove"
                        .into(),
                });
            }
            let selection = a.pick.filter.selection(a.pick.ids)?;
            let dry_run = a.pick.dry_run;
            (a.target, Command::Purge { selection, dry_run }, None)
        }
        DeadCommand::Export(a) => {
            let selection = a.filter.selection(Vec::new())?;
            (a.target, Command::Export { selection }, a.file)
        }
    })
}
