//! A task handler that keeps its own record: `warren work --handler exec`
//! running a small bash script that appends a line to a file per warren
//! process when a task starts and when it is done, with the task's id,
//! attempt, redelivered flag and body. Tests that must know WHICH tasks a
//! given process handled (round-robin, fair dispatch, redelivery after a
//! kill, every id of a chaos run) read this record, not the log.
//!
//! The script works like the tutorial's worker: `per_dot` of sleep per `.`
//! in the body. A SIGKILLed warren never learns the result of a task it was
//! running, so the script writes "done" only while warren (its parent) is
//! alive. Programs orphaned that way are killed when the [`Recorder`] is
//! dropped. Bodies must not contain tabs or newlines. A body containing
//! `fail-once` fails its first attempt (exit 1, so Warren retries it).

use super::proc::{Warren, work_command};
use super::procfs::{entries, processes};
use std::collections::BTreeMap;
use std::os::unix::fs::PermissionsExt;
use std::path::PathBuf;
use std::process::Command;
use std::time::{Duration, Instant};

/// Forks only for `sleep`: thousands of tasks run through it.
const SCRIPT: &str = r#"#!/bin/bash
# Runs one task for Warren's exec handler: records its start and end in $1,
# working $2 microseconds per '.' of the body.
record=$1 per_dot_us=$2
IFS= read -r -d '' body
dots=${body//[^.]/}
us=$(( ${#dots} * per_dot_us ))
line() {
  printf '%s\t%s\t%s\t%s\t%s\t%s\n' "$1" "${EPOCHREALTIME/[.,]/}" \
    "$WARREN_REDELIVERED" "$WARREN_ATTEMPT" "$WARREN_MESSAGE_ID" "$body" >> "$record"
}
line start
# A body containing "fail-once" fails its first attempt (exit 1: a retry).
[[ $body == *fail-once* && $WARREN_ATTEMPT == 1 ]] && exit 1
if (( us > 0 )); then
  printf -v frac '%06d' $(( us % 1000000 ))
  sleep "$(( us / 1000000 )).$frac"
fi
read -r stat < /proc/$$/stat
stat=${stat##*) }
set -- $stat
# Field 2 after the name is the parent: still warren, or did warren die?
[ "$2" = "$PPID" ] && line done
exit 0
"#;

/// Whether a task was starting or had finished.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Event {
    Start,
    Done,
}

/// One line of a record.
#[derive(Debug, Clone)]
pub struct Entry {
    pub event: Event,
    /// Wall-clock microseconds since the Unix epoch.
    pub at_us: u64,
    pub redelivered: bool,
    pub attempt: u32,
    pub id: String,
    pub body: String,
}

/// What one warren process's handler did, in order.
#[derive(Debug, Clone, Default)]
pub struct Record {
    pub entries: Vec<Entry>,
}

impl Record {
    /// Every task started (each delivery handed to the handler).
    pub fn starts(&self) -> impl Iterator<Item = &Entry> {
        self.entries.iter().filter(|e| e.event == Event::Start)
    }

    /// Bodies of the tasks started, in order.
    pub fn received(&self) -> Vec<String> {
        self.starts().map(|e| e.body.clone()).collect()
    }

    /// Bodies of the tasks finished, in order.
    pub fn done(&self) -> Vec<String> {
        self.entries
            .iter()
            .filter(|e| e.event == Event::Done)
            .map(|e| e.body.clone())
            .collect()
    }
}

/// Per message id, from the records of every process: its body, how often
/// it was finished, and (time, redelivered flag) of every delivery. What
/// tests that count every task id (lost? done twice? flagged?) compare.
///
/// A program started by a warren that is SIGKILLed before it writes the
/// body reads a cut-short one (stdin closes as the kernel tears warren
/// down, before the program is reparented, so it may record "done"). Such a
/// run is a delivery, but not the task done: only runs that read the full
/// body (the longest seen for the id) count as done.
#[derive(Debug, Default)]
pub struct Ledger {
    pub bodies: BTreeMap<String, String>,
    pub done: BTreeMap<String, usize>,
    /// (wall-clock µs, redelivered flag) of every delivery, per message id.
    pub received_redelivered: BTreeMap<String, Vec<(u64, bool)>>,
}

impl Ledger {
    /// The ledger of every process that used `rec`.
    pub fn of(rec: &Recorder) -> Ledger {
        let entries: Vec<Entry> = rec
            .names()
            .into_iter()
            .flat_map(|name| rec.record(&name).entries)
            .collect();
        let mut ledger = Ledger::default();
        for task in entries.iter().filter(|e| e.event == Event::Start) {
            let body = ledger.bodies.entry(task.id.clone()).or_default();
            if task.body.len() > body.len() {
                body.clone_from(&task.body);
            }
            let deliveries = ledger
                .received_redelivered
                .entry(task.id.clone())
                .or_default();
            deliveries.push((task.at_us, task.redelivered));
            deliveries.sort();
        }
        for task in entries.iter().filter(|e| e.event == Event::Done) {
            if ledger.bodies.get(&task.id) == Some(&task.body) {
                *ledger.done.entry(task.id.clone()).or_default() += 1;
            }
        }
        ledger
    }
}

/// The recording handler's script and the records of every process using it.
pub struct Recorder {
    dir: tempfile::TempDir,
}

impl Recorder {
    pub fn new() -> Recorder {
        let dir = tempfile::tempdir().expect("temp dir");
        let recorder = Recorder { dir };
        let script = recorder.script();
        std::fs::write(&script, SCRIPT).expect("write the task script");
        std::fs::set_permissions(&script, std::fs::Permissions::from_mode(0o755))
            .expect("chmod the task script");
        recorder
    }

    fn script(&self) -> PathBuf {
        self.dir.path().join("task.sh")
    }

    fn file(&self, name: &str) -> PathBuf {
        self.dir.path().join(format!("{name}.record"))
    }

    /// `warren work` on `queue` whose handler records as `name`, taking
    /// `per_dot` per `.`; `extra` flags come before the handler's.
    pub fn command(
        &self,
        name: &str,
        url: &str,
        queue: &str,
        per_dot: Duration,
        extra: &[&str],
    ) -> Command {
        let (script, file) = (self.script(), self.file(name));
        let per_dot_us = per_dot.as_micros().to_string();
        let mut args = extra.to_vec();
        args.extend_from_slice(&["--handler", "exec", "--"]);
        args.extend_from_slice(&[
            script.to_str().unwrap(),
            file.to_str().unwrap(),
            &per_dot_us,
        ]);
        work_command(url, queue, &args)
    }

    /// Starts [`Recorder::command`].
    pub fn work(
        &self,
        name: &str,
        url: &str,
        queue: &str,
        per_dot: Duration,
        extra: &[&str],
    ) -> Warren {
        Warren::spawn_with(name, self.command(name, url, queue, per_dot, extra))
    }

    /// Everything the process `name` recorded so far (complete lines only).
    pub fn record(&self, name: &str) -> Record {
        let text = std::fs::read_to_string(self.file(name)).unwrap_or_default();
        let complete = text.rsplit_once('\n').map_or("", |(lines, _)| lines);
        let entries = complete
            .lines()
            .map(|line| parse(line).unwrap_or_else(|| panic!("bad record line {line:?}")))
            .collect();
        Record { entries }
    }

    /// The names of every process that recorded something.
    pub fn names(&self) -> Vec<String> {
        let dir = std::fs::read_dir(self.dir.path()).expect("read the records' directory");
        let mut names: Vec<String> = dir
            .filter_map(|e| {
                let file = e.ok()?.file_name().into_string().ok()?;
                Some(file.strip_suffix(".record")?.to_owned())
            })
            .collect();
        names.sort();
        names
    }

    /// Waits until the record of `name` satisfies `done`; that record.
    pub async fn wait(
        &self,
        name: &str,
        what: &str,
        limit: Duration,
        done: impl Fn(&Record) -> bool,
    ) -> Record {
        let started = Instant::now();
        loop {
            let record = self.record(name);
            if done(&record) {
                return record;
            }
            assert!(
                started.elapsed() < limit,
                "{name}: waited {limit:?} for {what}; record: {:#?}",
                record.entries
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Waits until `name` started at least `n` tasks.
    pub async fn wait_received(&self, name: &str, n: usize, limit: Duration) -> Record {
        let what = format!("{n} tasks started");
        self.wait(name, &what, limit, |r| r.starts().count() >= n)
            .await
    }
}

impl Drop for Recorder {
    /// Kills the programs a SIGKILLed warren left running (each leads its
    /// own process group, as the exec handler starts it).
    fn drop(&mut self) {
        let script = self.script().into_os_string().into_encoded_bytes();
        for (pid, pgid, _) in processes() {
            let cmdline = entries(pid, "cmdline");
            if pid == pgid && cmdline.get(1) == Some(&script) {
                unsafe { libc::killpg(pgid, libc::SIGKILL) };
            }
        }
    }
}

fn parse(line: &str) -> Option<Entry> {
    let mut fields = line.splitn(6, '\t');
    let event = match fields.next()? {
        "start" => Event::Start,
        "done" => Event::Done,
        _ => return None,
    };
    Some(Entry {
        event,
        at_us: fields.next()?.parse().ok()?,
        redelivered: fields.next()? == "true",
        attempt: fields.next()?.parse().ok()?,
        id: fields.next()?.to_owned(),
        body: fields.next()?.to_owned(),
    })
}
