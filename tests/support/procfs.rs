//! What /proc says about processes the tests started indirectly (broker
//! nodes, exec handler programs): whether they live, their process group,
//! their command line and environment.

use std::fs;

/// pid, process group and state of every process, from /proc/<pid>/stat.
pub fn processes() -> Vec<(libc::pid_t, libc::pid_t, u8)> {
    let Ok(entries) = fs::read_dir("/proc") else {
        return Vec::new();
    };
    entries
        .filter_map(|e| {
            let pid: libc::pid_t = e.ok()?.file_name().to_str()?.parse().ok()?;
            let (pgrp, state) = stat(pid)?;
            Some((pid, pgrp, state))
        })
        .collect()
}

/// (process group, state) of `pid`.
fn stat(pid: libc::pid_t) -> Option<(libc::pid_t, u8)> {
    let stat = fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // "pid (comm) state ppid pgrp ..."; comm may contain anything.
    let mut fields = stat.get(stat.rfind(')')? + 2..)?.split(' ');
    let state = *fields.next()?.as_bytes().first()?;
    let pgrp = fields.nth(1)?.parse().ok()?;
    Some((pgrp, state))
}

/// Not a zombie (dead, waiting to be reaped) nor dead.
pub fn is_live_state(state: u8) -> bool {
    !matches!(state, b'Z' | b'X' | b'x')
}

/// Whether `pid` exists and is not a zombie.
pub fn process_alive(pid: libc::pid_t) -> bool {
    stat(pid).is_some_and(|(_, state)| is_live_state(state))
}

/// Whether the process group has a member that is not a zombie.
pub fn group_alive(pgid: libc::pid_t) -> bool {
    processes()
        .iter()
        .any(|&(_, pgrp, state)| pgrp == pgid && is_live_state(state))
}

/// The process's name (`/proc/<pid>/comm`), empty if it is gone.
pub fn comm(pid: libc::pid_t) -> String {
    fs::read_to_string(format!("/proc/{pid}/comm"))
        .map(|c| c.trim_end().to_owned())
        .unwrap_or_default()
}

/// NUL-separated entries of `/proc/<pid>/<file>` (`environ`, `cmdline`);
/// empty if unreadable.
pub fn entries(pid: libc::pid_t, file: &str) -> Vec<Vec<u8>> {
    fs::read(format!("/proc/{pid}/{file}"))
        .map(|bytes| {
            bytes
                .split(|b| *b == 0)
                .filter(|e| !e.is_empty())
                .map(<[u8]>::to_vec)
                .collect()
        })
        .unwrap_or_default()
}

/// State letter of `pid` (`b'Z'` for a zombie), None if it is gone.
pub fn state(pid: libc::pid_t) -> Option<u8> {
    stat(pid).map(|(_, state)| state)
}

/// Children of `pid` (zombies included), from every thread's
/// `/proc/<pid>/task/<tid>/children`.
pub fn children(pid: libc::pid_t) -> Vec<libc::pid_t> {
    let Ok(tasks) = fs::read_dir(format!("/proc/{pid}/task")) else {
        return Vec::new();
    };
    tasks
        .filter_map(|t| fs::read_to_string(t.ok()?.path().join("children")).ok())
        .flat_map(|text| {
            text.split_whitespace()
                .filter_map(|p| p.parse().ok())
                .collect::<Vec<_>>()
        })
        .collect()
}
