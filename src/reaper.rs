//! Reaping orphans when Warren is PID 1.
//!
//! A process whose parent exits is re-parented to PID 1 of its PID
//! namespace. In the distroless image Warren *is* PID 1, so a grandchild an
//! exec program leaves behind (a shell's `cmd &` before it exits, a `setsid`
//! daemon) becomes Warren's child, and when it exits it stays a zombie until
//! Warren waits for it. Each zombie holds a pid; enough of them and no task
//! can fork any more.
//!
//! # Why not `waitpid(-1)`
//! The classic init loop reaps *any* exited child. Warren also waits for
//! children of its own: the exec handler keeps each program (a process-group
//! leader) unreaped until the task ends, reads its exit status with
//! `waitid(WNOWAIT)` and reaps it with `waitpid(pid)` (see
//! `handler::exec::group`). A `waitpid(-1)` would steal those statuses — a
//! program that exited 0 would look like "no such child" and its task would
//! be retried — and would free the leader's pid while Warren may still
//! `killpg` its group. Peeking with `waitid(P_ALL, WNOWAIT)` does not help
//! either: it reports one waitable child only, and that may be a leader kept
//! unreaped on purpose, hiding every orphan behind it.
//!
//! So children Warren waits for itself are *claimed*: [`spawn`] forks under
//! a shared lock and records the pid before letting go, and the owner calls
//! [`release`] once it has reaped the pid. [`sweep`] takes the lock
//! exclusively (no fork is between spawn and claim then), lists Warren's
//! children from /proc, and reaps with `waitpid(pid, WNOHANG)` only zombies
//! that are not claimed and not in Warren's own process group: children
//! that libraries start with a plain `Command` (a kubeconfig `exec`
//! credential plugin) stay in our group and are waited for by whoever
//! started them, while task programs and everything they leave behind are
//! in groups (or sessions) of their own. [`run`] sweeps on every SIGCHLD.
//!
//! # When
//! Only as PID 1 ([`is_init`]). Under any other parent, the init above
//! Warren (tini, Docker's `--init`, the pause container with
//! `shareProcessNamespace`, systemd) reaps orphans already. Warren does not
//! make itself a child subreaper (`PR_SET_CHILD_SUBREAPER`) there: that
//! would only move the reaping from that init to Warren, and would keep
//! daemons that tasks detach on purpose re-parented under the worker.

use std::collections::BTreeSet;
use std::io;
use std::process::{Child, Command};
use std::sync::{Mutex, MutexGuard, PoisonError, RwLock};
use tokio::signal::unix::{SignalKind, signal};
use tokio_util::sync::CancellationToken;
use tracing::{debug, warn};

/// Pids of children some part of Warren waits for itself.
static CLAIMED: Mutex<BTreeSet<libc::pid_t>> = Mutex::new(BTreeSet::new());

/// Shared while forking a claimed child, exclusive while sweeping: a sweep
/// never sees a child that exited before its claim was recorded.
static FORKS: RwLock<()> = RwLock::new(());

/// Spawns `cmd` as a claimed child: [`sweep`] never reaps it. The caller
/// must wait for it and then call [`release`].
pub fn spawn(cmd: &mut Command) -> io::Result<Child> {
    let _forking = FORKS.read().unwrap_or_else(PoisonError::into_inner);
    let child = cmd.spawn()?;
    claimed().insert(pid_of(&child));
    Ok(child)
}

/// Forgets a claim, once its owner has reaped `pid` (idempotent).
pub fn release(pid: libc::pid_t) {
    claimed().remove(&pid);
}

/// Whether Warren is PID 1 of its PID namespace, i.e. the one that has to
/// reap orphans.
pub fn is_init() -> bool {
    // SAFETY: getpid has no preconditions.
    unsafe { libc::getpid() == 1 }
}

/// Reaps every exited child that is neither claimed nor in Warren's own
/// process group; returns how many. Blocks briefly (reads /proc).
pub fn sweep() -> usize {
    let _no_forks = FORKS.write().unwrap_or_else(PoisonError::into_inner);
    // SAFETY: getpid and getpgrp have no preconditions.
    let (me, our_group) = unsafe { (libc::getpid(), libc::getpgrp()) };
    let claimed = claimed();
    children(me)
        .into_iter()
        .filter(|&pid| !claimed.contains(&pid))
        .filter(|&pid| {
            stat(pid).is_some_and(|s| s.state == b'Z' && s.pgrp != our_group) && reap(pid)
        })
        .count()
}

/// Sweeps once, then on every SIGCHLD, until `stop`.
pub async fn run(stop: CancellationToken) {
    let mut sigchld = match signal(SignalKind::child()) {
        Ok(sigchld) => sigchld,
        Err(e) => {
            warn!(
                "cannot watch SIGCHLD ({e}); orphaned processes will stay zombies: \
                 run Warren under an init (tini, docker --init)"
            );
            return;
        }
    };
    loop {
        // A signal that arrives during a sweep is kept for the next recv.
        let reaped = tokio::task::spawn_blocking(sweep).await.unwrap_or(0);
        if reaped > 0 {
            debug!(reaped, "reaped orphaned processes");
        }
        tokio::select! {
            () = stop.cancelled() => return,
            _ = sigchld.recv() => {}
        }
    }
}

fn claimed() -> MutexGuard<'static, BTreeSet<libc::pid_t>> {
    CLAIMED.lock().unwrap_or_else(PoisonError::into_inner)
}

fn pid_of(child: &Child) -> libc::pid_t {
    libc::pid_t::try_from(child.id()).expect("pids fit in pid_t")
}

/// Reaps `pid` if it has exited; true when it was reaped.
fn reap(pid: libc::pid_t) -> bool {
    loop {
        let mut status = 0;
        // SAFETY: `status` is a valid out pointer.
        let rc = unsafe { libc::waitpid(pid, &mut status, libc::WNOHANG) };
        if rc == -1 && io::Error::last_os_error().raw_os_error() == Some(libc::EINTR) {
            continue;
        }
        return rc == pid;
    }
}

/// The fields of /proc/<pid>/stat a sweep needs.
struct Stat {
    state: u8,
    ppid: libc::pid_t,
    pgrp: libc::pid_t,
}

fn stat(pid: libc::pid_t) -> Option<Stat> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    parse_stat(&text)
}

/// "pid (comm) state ppid pgrp …"; comm may hold spaces and parentheses.
fn parse_stat(text: &str) -> Option<Stat> {
    let mut fields = text.get(text.rfind(')')? + 2..)?.split(' ');
    let state = *fields.next()?.as_bytes().first()?;
    let ppid = fields.next()?.parse().ok()?;
    let pgrp = fields.next()?.parse().ok()?;
    Some(Stat { state, ppid, pgrp })
}

/// Warren's children (zombies included): from each thread's `children`
/// file, or by scanning every process where the kernel lacks that file.
fn children(me: libc::pid_t) -> Vec<libc::pid_t> {
    let pids = |text: &str| -> Vec<libc::pid_t> {
        text.split_whitespace()
            .filter_map(|p| p.parse().ok())
            .collect()
    };
    if std::fs::metadata(format!("/proc/{me}/task/{me}/children")).is_ok() {
        let Ok(tasks) = std::fs::read_dir(format!("/proc/{me}/task")) else {
            return Vec::new();
        };
        return tasks
            .filter_map(|t| std::fs::read_to_string(t.ok()?.path().join("children")).ok())
            .flat_map(|text| pids(&text))
            .collect();
    }
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    entries
        .filter_map(|e| e.ok()?.file_name().to_str()?.parse().ok())
        .filter(|&pid| stat(pid).is_some_and(|s| s.ppid == me))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_stat_with_awkward_names() {
        let s = parse_stat("42 (a) b (c) Z 1 42 7 0 -1").unwrap();
        assert_eq!((s.state, s.ppid, s.pgrp), (b'Z', 1, 42));
        assert!(parse_stat("42 (cut").is_none());
    }

    #[test]
    #[allow(clippy::zombie_processes, reason = "waited for with waitpid")]
    fn a_sweep_leaves_claimed_children_to_their_owner() {
        let mut cmd = Command::new("/bin/true");
        // Its own group, like a task program: sweep would take it unclaimed.
        std::os::unix::process::CommandExt::process_group(&mut cmd, 0);
        let child = spawn(&mut cmd).unwrap();
        let pid = pid_of(&child);
        while stat(pid).is_some_and(|s| s.state != b'Z') {
            std::thread::sleep(std::time::Duration::from_millis(5));
        }
        sweep();
        assert!(stat(pid).is_some_and(|s| s.state == b'Z'), "still unreaped");
        let mut status = 0;
        // SAFETY: `status` is a valid out pointer.
        assert_eq!(unsafe { libc::waitpid(pid, &mut status, 0) }, pid);
        assert!(libc::WIFEXITED(status) && libc::WEXITSTATUS(status) == 0);
        release(pid);
    }

    #[test]
    #[allow(clippy::zombie_processes, reason = "the sweep reaps it")]
    fn a_sweep_reaps_unclaimed_children_of_other_groups() {
        let mut cmd = Command::new("/bin/true");
        std::os::unix::process::CommandExt::process_group(&mut cmd, 0);
        let child = cmd.spawn().unwrap();
        let pid = pid_of(&child);
        let started = std::time::Instant::now();
        while stat(pid).is_some() {
            sweep();
            assert!(started.elapsed().as_secs() < 10, "{pid} was not reaped");
            std::thread::sleep(std::time::Duration::from_millis(5));
        }
    }
}
