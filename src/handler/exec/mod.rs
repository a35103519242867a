//! The `exec` handler: one process per task, so task code can be written in
//! any language (the tutorial's worker.py, a shell script) without a rewrite.
//!
//! The contract (docs/handlers.md): PROGRAM is run directly (no shell) with
//! the body on stdin, byte-exact, then stdin is closed; metadata is in env
//! (`WARREN_MESSAGE_ID`, `WARREN_CORRELATION_ID`, `WARREN_ATTEMPT`,
//! `WARREN_REDELIVERED`, `WARREN_QUEUE`, `WARREN_HEADERS`). Exit 0 acks, an
//! exit code in `reject_exit_codes` dead-letters, anything else (another
//! code, death by a signal) retries. Every program runs in a process group
//! of its own that is ended with the task (see [`group`]).

mod group;
mod output;
mod program;

use super::{Handler, Outcome, Task};
use crate::config::ExecConfig;
use crate::error::{Error, Result};
use group::{Exit, Group};
use std::ffi::OsString;
use std::os::fd::OwnedFd;
use std::os::unix::process::CommandExt;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::io::AsyncWriteExt;
use tokio::net::unix::pipe;
use tracing::{debug, error};

/// How much of stderr goes into a failure reason (the dead-letter header
/// holds 4 KiB; the end of stderr is where the error usually is).
const REASON_STDERR: usize = 3000;

/// Runs a program per task. Cheap to clone: the pool shares one.
#[derive(Debug, Clone)]
pub struct ExecHandler {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    /// PROGRAM as resolved at startup (PATH lookups are not redone per task).
    program: PathBuf,
    /// argv[0] as the user wrote it.
    argv0: String,
    /// The remaining arguments.
    args: Vec<String>,
    /// Exit codes that dead-letter at once.
    reject_exit_codes: Vec<i32>,
    /// SIGTERM → SIGKILL delay when a group is ended.
    kill_grace: Duration,
    /// Warren's own `WARREN_*` variables (broker URL with its password, …)
    /// are not passed on: task code needs the task's metadata, not our config.
    hidden_env: Vec<OsString>,
}

impl ExecHandler {
    /// Finds PROGRAM (once, like execvp) for a validated config, whose
    /// command is not empty; the error names `handler.exec.command` and says
    /// how to fix it.
    pub fn new(config: &ExecConfig) -> Result<Self> {
        // An empty argv (a config that skipped validation) resolves "", which
        // fails like any other program that is not there.
        let (argv0, args) = match config.command.split_first() {
            Some((argv0, args)) => (argv0.as_str(), args),
            None => ("", &[][..]),
        };
        let program =
            program::resolve(argv0).map_err(|why| Error::config("handler.exec.command", why))?;
        let hidden_env = std::env::vars_os()
            .map(|(name, _)| name)
            .filter(|name| name.to_string_lossy().starts_with("WARREN_"))
            .collect();
        Ok(ExecHandler {
            inner: Arc::new(Inner {
                program,
                argv0: argv0.to_owned(),
                args: args.to_vec(),
                reject_exit_codes: config.reject_exit_codes.clone(),
                kill_grace: config.kill_grace,
                hidden_env,
            }),
        })
    }

    /// The command for one task: no shell, body never in argv, metadata in env.
    fn command(&self, task: &Task) -> Command {
        let me = &self.inner;
        let mut cmd = Command::new(&me.program);
        cmd.arg0(&me.argv0)
            .args(&me.args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        for name in &me.hidden_env {
            cmd.env_remove(name);
        }
        let text = |v: &Option<String>| env_safe(v.as_deref().unwrap_or(""));
        cmd.env("WARREN_MESSAGE_ID", text(&task.message_id))
            .env("WARREN_CORRELATION_ID", text(&task.correlation_id))
            .env("WARREN_ATTEMPT", task.attempt.to_string())
            .env("WARREN_REDELIVERED", task.redelivered.to_string())
            .env("WARREN_QUEUE", env_safe(&task.queue))
            .env("WARREN_HEADERS", task.headers_json().to_string());
        cmd
    }

    /// What an exit means, with stderr's end as the reason of a failure.
    fn outcome(&self, exit: Exit, stderr: &[u8]) -> Outcome {
        let why = |what: String| {
            let err = output::excerpt(stderr, REASON_STDERR);
            if err.is_empty() {
                format!("{what} (stderr empty)")
            } else {
                format!("{what}; stderr: {err}")
            }
        };
        match exit {
            Exit::Code(0) => Outcome::Ack,
            Exit::Code(code) if self.inner.reject_exit_codes.contains(&code) => {
                Outcome::reject(why(format!("exit code {code} (a reject code)")))
            }
            Exit::Code(code) => Outcome::retry(why(format!("exit code {code}"))),
            Exit::Signal(sig) => Outcome::retry(why(format!("killed by signal {sig}"))),
        }
    }
}

impl Handler for ExecHandler {
    async fn handle(&self, task: &Task) -> Outcome {
        let started = Instant::now();
        let (mut group, child) = match Group::spawn(&mut self.command(task), self.inner.kill_grace)
        {
            Ok(spawned) => spawned,
            Err(e) => {
                let program = self.inner.program.display();
                error!("cannot start {program}: {e}; the task will be retried");
                return Outcome::retry(format!("cannot start {program}: {e}"));
            }
        };
        // From here on, dropping `group` (timeout, drain deadline) ends it.
        let Ok((stdin, stdout, stderr)) = pipes(child) else {
            return Outcome::retry("cannot set up the program's stdin/stdout/stderr pipes");
        };
        let out = output::Capture::start(stdout, "stdout");
        let err = output::Capture::start(stderr, "stderr");
        let exit = feed_and_wait(&mut group, stdin, &task.body).await;
        // Processes the program left behind go now, which also closes the pipes.
        group.end();
        let limit = self.inner.kill_grace + Duration::from_secs(1);
        let (_, stderr) = tokio::join!(out.finish(limit), err.finish(limit));
        debug!(pid = group.pid(), ?exit, elapsed = ?started.elapsed(), "program ended");
        match exit {
            Ok(exit) => self.outcome(exit, &stderr),
            Err(e) => Outcome::retry(format!("waiting for the program failed: {e}")),
        }
    }
}

/// Writes the body to stdin and closes it, while waiting for the exit. A
/// program may exit without reading stdin: the write error is ignored then.
async fn feed_and_wait(
    group: &mut Group,
    mut stdin: pipe::Sender,
    body: &[u8],
) -> std::io::Result<Exit> {
    let feed = async move {
        let _ = stdin.write_all(body).await;
        // Dropping `stdin` here closes it: the program sees EOF.
    };
    let exit = group.wait();
    tokio::pin!(exit);
    tokio::select! {
        exit = &mut exit => exit,
        () = feed => exit.await,
    }
}

/// The child's pipes as non-blocking tokio pipes.
fn pipes(mut child: Child) -> std::io::Result<(pipe::Sender, pipe::Receiver, pipe::Receiver)> {
    let missing = || std::io::Error::other("pipe missing");
    let stdin = OwnedFd::from(child.stdin.take().ok_or_else(missing)?);
    let stdout = OwnedFd::from(child.stdout.take().ok_or_else(missing)?);
    let stderr = OwnedFd::from(child.stderr.take().ok_or_else(missing)?);
    Ok((
        pipe::Sender::from_owned_fd(stdin)?,
        pipe::Receiver::from_owned_fd(stdout)?,
        pipe::Receiver::from_owned_fd(stderr)?,
    ))
}

/// Env values cannot hold NUL bytes; AMQP strings can.
fn env_safe(value: &str) -> String {
    value.replace('\0', "")
}

#[cfg(test)]
mod tests;
