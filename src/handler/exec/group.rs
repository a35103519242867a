//! A task's program in its own process group, and the guarantee that nothing
//! in that group outlives the task.
//!
//! The program is spawned as the leader of a new process group, so it and
//! everything it starts (a shell's `sleep 1000 &`, a Python multiprocessing
//! pool) can be signalled at once with `killpg`. The leader is not reaped
//! while Warren may still signal the group: a zombie leader keeps the group
//! id reserved, so a signal can never reach an unrelated process that
//! happened to get the same id.
//!
//! Ending a group ([`Group::end`], also run on drop, i.e. when the pool
//! abandons the handler on `pool.handler_timeout` or at the drain deadline):
//! SIGTERM to the whole group, then SIGKILL after the grace period, from a
//! background thread so `Drop` never blocks. Groups still alive when Warren
//! itself exits are SIGKILLed by an `atexit` hook.

use std::collections::BTreeSet;
use std::io;
use std::os::fd::{FromRawFd, OwnedFd};
use std::os::unix::process::CommandExt;
use std::process::{Child, Command};
use std::sync::{Mutex, Once};
use std::time::{Duration, Instant};
use tokio::io::Interest;
use tokio::io::unix::AsyncFd;

/// How the group leader (the program) ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Exit {
    /// It exited with this code.
    Code(i32),
    /// A signal killed it.
    Signal(i32),
}

/// Group ids that may still have members, SIGKILLed if Warren exits first
/// (e.g. a second SIGTERM, or the drain deadline passing mid-task).
static LIVE: Mutex<BTreeSet<libc::pid_t>> = Mutex::new(BTreeSet::new());

/// How often the background thread checks whether a group has gone.
const POLL: Duration = Duration::from_millis(20);

/// A running program and its process group.
#[derive(Debug)]
pub struct Group {
    /// The leader's pid, which is also the group id.
    pid: libc::pid_t,
    /// The leader's exit, once seen (it stays unreaped until [`Group::end`]).
    exit: Option<Exit>,
    /// Time between SIGTERM and SIGKILL.
    grace: Duration,
    /// Set by [`Group::end`]; makes it idempotent.
    ended: bool,
}

impl Group {
    /// Spawns `cmd` as the leader of a new process group.
    pub fn spawn(cmd: &mut Command, grace: Duration) -> io::Result<(Group, Child)> {
        static HOOK: Once = Once::new();
        // SAFETY: registering a plain `extern "C" fn` with no captured state.
        HOOK.call_once(|| unsafe {
            libc::atexit(kill_live_groups);
        });
        // Claimed: as PID 1, the orphan reaper leaves the leader to us.
        let child = crate::reaper::spawn(cmd.process_group(0))?;
        let pid = libc::pid_t::try_from(child.id()).expect("pids fit in pid_t");
        lock_live().insert(pid);
        let group = Group {
            pid,
            exit: None,
            grace,
            ended: false,
        };
        Ok((group, child))
    }

    /// The leader's pid (= group id), for log lines.
    pub fn pid(&self) -> libc::pid_t {
        self.pid
    }

    /// Waits until the leader exits, without reaping it. Uses a pidfd when
    /// the kernel offers one (Linux ≥ 5.3), else polls.
    pub async fn wait(&mut self) -> io::Result<Exit> {
        // `with_interest` is deprecated in newer tokio for raw-fd types; an
        // OwnedFd is I/O-safe, and the replacement needs tokio ≥ 1.54.
        #[allow(deprecated)]
        let pidfd =
            open_pidfd(self.pid).and_then(|fd| AsyncFd::with_interest(fd, Interest::READABLE).ok());
        let mut nap = Duration::from_millis(1);
        loop {
            if let Some(exit) = peek(self.pid)? {
                self.exit = Some(exit);
                return Ok(exit);
            }
            match &pidfd {
                Some(fd) => fd.readable().await?.clear_ready(),
                None => {
                    tokio::time::sleep(nap).await;
                    nap = (nap * 2).min(Duration::from_millis(50));
                }
            }
        }
    }

    /// Ends the group: after a normal exit, only processes the program left
    /// behind get SIGTERM (then SIGKILL); if it is still running, the whole
    /// group does. Returns at once; escalation runs on a background thread.
    pub fn end(&mut self) {
        if std::mem::replace(&mut self.ended, true) {
            return;
        }
        let pid = self.pid;
        if self.exit.is_some() {
            reap(pid, 0);
            if !group_alive(pid) {
                lock_live().remove(&pid);
                return;
            }
        }
        // The leader is unreaped (or members remain): the id is still ours.
        // SAFETY: killpg has no memory-safety preconditions.
        unsafe { libc::killpg(pid, libc::SIGTERM) };
        let reaped = self.exit.is_some();
        let grace = self.grace;
        let spawned = std::thread::Builder::new()
            .name(format!("warren-kill-{pid}"))
            .spawn(move || escalate(pid, reaped, grace));
        if spawned.is_err() {
            escalate(pid, reaped, Duration::ZERO);
        }
    }
}

impl Drop for Group {
    fn drop(&mut self) {
        self.end();
    }
}

/// SIGKILLs the group once `grace` has passed unless it is gone by then, and
/// reaps the leader. Runs on its own thread: it may sleep.
fn escalate(pid: libc::pid_t, mut reaped: bool, grace: Duration) {
    let deadline = Instant::now() + grace;
    loop {
        reaped = reaped || reap(pid, libc::WNOHANG);
        if reaped && !group_alive(pid) {
            break;
        }
        if Instant::now() >= deadline {
            // SAFETY: as above; the id is reserved by the unreaped leader
            // or by members that are still alive.
            unsafe { libc::killpg(pid, libc::SIGKILL) };
            if !reaped {
                reap(pid, 0);
            }
            break;
        }
        std::thread::sleep(POLL);
    }
    lock_live().remove(&pid);
}

/// Whether any process (zombies included) is still in group `pid`.
fn group_alive(pid: libc::pid_t) -> bool {
    // SAFETY: signal 0 only checks for existence.
    unsafe { libc::killpg(pid, 0) == 0 }
}

/// Reaps the leader; true when it is reaped (or was already).
fn reap(pid: libc::pid_t, flags: libc::c_int) -> bool {
    loop {
        let mut status = 0;
        // SAFETY: `status` is a valid out pointer.
        let rc = unsafe { libc::waitpid(pid, &mut status, flags) };
        if rc == 0 {
            return false;
        }
        if rc == -1 && io::Error::last_os_error().raw_os_error() == Some(libc::EINTR) {
            continue;
        }
        // Reaped, or ECHILD: nothing left to reap.
        crate::reaper::release(pid);
        return true;
    }
}

/// The leader's exit if it has exited, leaving it unreaped (`WNOWAIT`).
fn peek(pid: libc::pid_t) -> io::Result<Option<Exit>> {
    loop {
        // SAFETY: siginfo_t is plain data; zeroed is a valid value, and
        // waitid writes into it only.
        let mut info: libc::siginfo_t = unsafe { std::mem::zeroed() };
        let flags = libc::WEXITED | libc::WNOHANG | libc::WNOWAIT;
        // SAFETY: `info` is a valid out pointer.
        let rc = unsafe { libc::waitid(libc::P_PID, pid as libc::id_t, &mut info, flags) };
        if rc != 0 {
            let err = io::Error::last_os_error();
            if err.raw_os_error() == Some(libc::EINTR) {
                continue;
            }
            return Err(err);
        }
        // SAFETY: waitid filled in the SIGCHLD fields (si_pid 0 = no change).
        let (child, status) = unsafe { (info.si_pid(), info.si_status()) };
        return Ok(match (child, info.si_code) {
            (0, _) => None,
            (_, libc::CLD_EXITED) => Some(Exit::Code(status)),
            _ => Some(Exit::Signal(status)),
        });
    }
}

/// A pidfd for `pid`: readable once the process has exited.
fn open_pidfd(pid: libc::pid_t) -> Option<OwnedFd> {
    // SAFETY: pidfd_open takes a pid and flags and returns a new fd or -1.
    let fd = unsafe { libc::syscall(libc::SYS_pidfd_open, pid, 0) };
    let fd = i32::try_from(fd).ok().filter(|fd| *fd >= 0)?;
    // SAFETY: the kernel just gave us this fd and nothing else owns it.
    Some(unsafe { OwnedFd::from_raw_fd(fd) })
}

fn lock_live() -> std::sync::MutexGuard<'static, BTreeSet<libc::pid_t>> {
    LIVE.lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// atexit hook: Warren is exiting, so nothing it started may keep running.
extern "C" fn kill_live_groups() {
    // try_lock: never deadlock the exit on a thread that held the lock.
    if let Ok(live) = LIVE.try_lock() {
        for pid in live.iter() {
            // SAFETY: killpg has no memory-safety preconditions.
            unsafe { libc::killpg(*pid, libc::SIGKILL) };
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::process::Stdio;

    fn sh(script: &str) -> Command {
        let mut cmd = Command::new("/bin/sh");
        cmd.args(["-c", script])
            .stdin(Stdio::null())
            .stdout(Stdio::null());
        cmd
    }

    fn gone(pid: libc::pid_t) -> bool {
        match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
            Err(_) => true,
            Ok(stat) => stat
                .rsplit(')')
                .next()
                .is_some_and(|s| s.trim_start().starts_with('Z')),
        }
    }

    #[tokio::test]
    async fn reports_exit_codes_and_signals() {
        let (mut g, _) = Group::spawn(&mut sh("exit 3"), Duration::from_secs(1)).unwrap();
        assert_eq!(g.wait().await.unwrap(), Exit::Code(3));
        let (mut g, _) = Group::spawn(&mut sh("kill -9 $$"), Duration::from_secs(1)).unwrap();
        assert_eq!(g.wait().await.unwrap(), Exit::Signal(libc::SIGKILL));
        g.end();
        assert!(!lock_live().contains(&g.pid()));
    }

    #[tokio::test]
    async fn dropping_a_running_group_kills_it_even_if_it_ignores_sigterm() {
        let script = "trap '' TERM; sleep 1000 & echo $!; wait";
        let mut cmd = sh(script);
        cmd.stdout(Stdio::piped());
        let (g, mut child) = Group::spawn(&mut cmd, Duration::from_millis(200)).unwrap();
        let mut line = String::new();
        std::io::BufRead::read_line(
            &mut std::io::BufReader::new(child.stdout.take().unwrap()),
            &mut line,
        )
        .unwrap();
        let sleeper: libc::pid_t = line.trim().parse().unwrap();
        let leader = g.pid();
        drop(g);
        let started = Instant::now();
        while !(gone(leader) && gone(sleeper)) {
            assert!(started.elapsed() < Duration::from_secs(5), "group survived");
            std::thread::sleep(POLL);
        }
    }
}
