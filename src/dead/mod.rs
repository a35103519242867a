//! `warren dead list | show | replay | purge | export`: the dead-letter
//! queue for operators, safe while workers run.
//!
//! Every command is one [`pass::Pass`] over the dead-letter queue (bounded
//! batches; a message leaves it only after its replayed copy was confirmed,
//! or on a purge). [`letter`] reads why a message died; [`render`] prints it.

mod commands;
pub mod letter;
pub mod pass;
pub mod render;

use crate::amqp::{self, publish::enable_confirms, topology::Topology};
use crate::config::Config;
use crate::error::{Error, Result};
use lapin::message::Delivery;
use letter::Letter;
use pass::{Counts, Pass};
use std::io::Write;
use tokio_util::sync::CancellationToken;

/// Which letters a command acts on: all those matching every filter given,
/// up to `limit` of them, in queue order.
#[derive(Debug, Clone, Default)]
pub struct Selection {
    /// Lower-cased substring of the reason.
    pub reason: Option<String>,
    /// Exact message ids (any of them).
    pub ids: Vec<String>,
    pub limit: Option<usize>,
    picked: usize,
}

impl Selection {
    /// Checks the filters: each given one must be able to match something.
    pub fn new(reason: Option<String>, ids: Vec<String>, limit: Option<usize>) -> Result<Self> {
        let usage = |flag: &str, message: &str| Error::Usage {
            flag: flag.into(),
            message: message.into(),
        };
        if reason.as_deref().is_some_and(|r| r.trim().is_empty()) {
            return Err(usage(
                "--reason",
                "empty; give part of a reason, e.g. --reason 'exit code 65'",
            ));
        }
        if ids.iter().any(|id| id.trim().is_empty()) {
            return Err(usage(
                "--message-id",
                "empty; copy an id from `warren dead list`",
            ));
        }
        if limit == Some(0) {
            return Err(usage(
                "--limit",
                "0 selects nothing; give 1 or more, or leave it out",
            ));
        }
        Ok(Selection {
            reason: reason.map(|r| r.to_lowercase()),
            ids,
            limit,
            picked: 0,
        })
    }

    /// Whether `letter` matches the filters (regardless of the limit).
    pub fn matches(&self, letter: &Letter) -> bool {
        let reason_ok = self
            .reason
            .as_ref()
            .is_none_or(|r| letter.reason.to_lowercase().contains(r));
        let id_ok = self.ids.is_empty() || self.ids.contains(&letter.id);
        reason_ok && id_ok
    }

    /// Whether `letter` is selected: matching, and within the limit.
    pub fn pick(&mut self, letter: &Letter) -> bool {
        if !self.matches(letter) || self.limit.is_some_and(|l| self.picked >= l) {
            return false;
        }
        self.picked += 1;
        true
    }
}

/// What to do, parsed from the command line.
#[derive(Debug)]
pub enum Command {
    List {
        selection: Selection,
        json: bool,
    },
    Show {
        id: String,
    },
    Replay {
        selection: Selection,
        dry_run: bool,
        rate: Option<u32>,
    },
    Purge {
        selection: Selection,
        dry_run: bool,
    },
    Export {
        selection: Selection,
    },
}

/// Runs `command` against the configured queue's dead-letter queue, writing
/// its report (or export) to `out`. `stop` ends a pass early and cleanly.
pub async fn run(
    config: &Config,
    command: Command,
    stop: CancellationToken,
    out: &mut dyn Write,
) -> Result<()> {
    let topo = Topology::from_config(config);
    if topo.dead == topo.queue {
        return Err(Error::DeadQueue {
            queue: topo.dead,
            problem: "is the work queue itself".into(),
            fix: "set retry.dead_letter_queue to another queue, or leave it unset (<queue>.dead)"
                .into(),
        });
    }
    let (conn, _node) = amqp::connect(&config.amqp, "warren dead").await?;
    let channel = amqp::open_channel(&conn, config.amqp.connect_timeout).await?;
    let result = async {
        enable_confirms(&channel).await?;
        if matches!(command, Command::Replay { dry_run: false, .. }) {
            work_queue_exists(&conn, config, &topo).await?;
        }
        let pass = Pass {
            channel: &channel,
            dead: &topo.dead,
            work: &topo.queue,
            confirm_timeout: config.amqp.confirm_timeout,
            rate: None,
            stop,
        };
        commands::run(pass, command, out).await
    }
    .await;
    let _ = conn.close(200, "done".into()).await;
    result.map_err(|e| missing_dead_queue(e, &topo))
}

/// Replays need the work queue: say so before taking anything.
async fn work_queue_exists(
    conn: &lapin::Connection,
    config: &Config,
    topo: &Topology,
) -> Result<()> {
    let channel = amqp::open_channel(conn, config.amqp.connect_timeout).await?;
    match amqp::topology::inspect(&channel, &topo.queue).await {
        Ok(_) => {
            let _ = channel.close(200, "done".into()).await;
            Ok(())
        }
        Err(Error::QueueMissing { queue }) => Err(Error::DeadQueue {
            queue: topo.dead.clone(),
            problem: format!("cannot be replayed: the work queue '{queue}' does not exist"),
            fix: "check --queue, or start `warren work` once (it declares the queue)".into(),
        }),
        Err(e) => Err(e),
    }
}

/// A 404 on the dead-letter queue names the key that derives it.
fn missing_dead_queue(e: Error, topo: &Topology) -> Error {
    match e {
        Error::QueueMissing { queue } if queue == topo.dead => Error::DeadQueue {
            queue,
            problem: "does not exist".into(),
            fix: format!(
                "check --queue (the work queue '{}', whose dead letters go to <queue>.dead) \
                 or retry.dead_letter_queue; Warren declares it when `warren work` starts",
                topo.queue
            ),
        },
        e => e,
    }
}

/// A one-line report of a pass, for the end of replay and purge.
fn report(counts: &Counts, verb: &str, n: usize, dead: &str) -> String {
    let mut line = format!("{verb} {n} of {} dead letter(s) in '{dead}'", counts.seen);
    if let Some(why) = &counts.stopped {
        line.push_str(&format!(" (stopped early: {why})"));
    }
    line
}

/// The letter a delivery carries.
fn read(delivery: &Delivery) -> Letter {
    Letter::read(&delivery.properties)
}
