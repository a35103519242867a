//! Finding every process of a node. The `rabbitmq-server` script is our
//! child and leads the node's process group; beam.smp is in that group, but
//! erl_child_setup and the port programs it spawns (inet_gethost, the `sh`
//! used by os_mon, ...) call setsid() and leave it. They exit by themselves
//! when beam.smp dies. To make sure that happened (and to SIGKILL any
//! straggler), every process of a node is recognised by an environment
//! variable it inherits (`WARREN_RABBIT_NODE=<node name>`), epmd excepted:
//! it may be the machine's shared daemon. Orphans are reaped by init.
//!
//! If a test process dies without running `Drop` (SIGKILL, `abort`), its
//! nodes keep running. The first node started by a later test process kills
//! such leftovers (nodes named `warren-test-<pid>-*` whose test process <pid>
//! is gone) and removes their temporary directories.

use super::{DIR_PREFIX, NODE_PREFIX};
use crate::support::procfs::{comm, entries, is_live_state, process_alive, processes};
use std::fs;
use std::path::Path;
use std::thread::sleep;
use std::time::{Duration, Instant};

/// Environment variable inherited by every process of a node.
pub(super) const ENV_TAG: &str = "WARREN_RABBIT_NODE";

/// SIGKILLs the processes of `nodename` still alive (after a 1 s grace to
/// exit by themselves) until none is left or `deadline` passes; returns
/// those still alive then.
pub(super) fn kill_stragglers(nodename: &str, deadline: Instant) -> Vec<libc::pid_t> {
    let tag = format!("{ENV_TAG}={nodename}").into_bytes();
    let started = Instant::now();
    loop {
        let left = tagged_processes(&tag);
        if left.is_empty() || Instant::now() >= deadline {
            return left;
        }
        if started.elapsed() > Duration::from_secs(1) {
            for pid in &left {
                unsafe { libc::kill(*pid, libc::SIGKILL) };
            }
        }
        sleep(Duration::from_millis(10));
    }
}

/// Live processes, epmd excepted, whose environment contains `tag` (`NAME=value`).
fn tagged_processes(tag: &[u8]) -> Vec<libc::pid_t> {
    processes()
        .into_iter()
        .filter(|&(pid, _, state)| {
            is_live_state(state)
                && comm(pid) != "epmd"
                && entries(pid, "environ").iter().any(|var| var == tag)
        })
        .map(|(pid, _, _)| pid)
        .collect()
}

/// The test process that started the node `pid` belongs to, from its tag.
fn owner(pid: libc::pid_t) -> Option<u32> {
    let tag_prefix = format!("{ENV_TAG}={NODE_PREFIX}");
    entries(pid, "environ").iter().find_map(|var| {
        let rest = var.strip_prefix(tag_prefix.as_bytes())?;
        let end = rest.iter().position(|b| *b == b'-')?;
        std::str::from_utf8(&rest[..end]).ok()?.parse::<u32>().ok()
    })
}

/// Kills the nodes left behind by test processes that died without dropping
/// them, and removes their temporary directories (the nodes' working dir).
pub(super) fn kill_leftover_nodes() {
    let mut dirs = Vec::new();
    let mut killed = Vec::new();
    for (pid, _, state) in processes() {
        if !is_live_state(state) {
            continue;
        }
        let Some(owner) = owner(pid) else { continue };
        if owner == std::process::id() || Path::new(&format!("/proc/{owner}")).exists() {
            continue; // its test process is still running
        }
        if comm(pid) == "epmd" {
            continue;
        }
        if let Ok(cwd) = fs::read_link(format!("/proc/{pid}/cwd")) {
            dirs.push(cwd);
        }
        unsafe { libc::kill(pid, libc::SIGKILL) };
        killed.push(pid);
    }
    if killed.is_empty() {
        return;
    }
    eprintln!("RabbitNode: killed leftover RabbitMQ test node processes {killed:?}");
    let deadline = Instant::now() + Duration::from_secs(5);
    while killed.iter().any(|&pid| process_alive(pid)) && Instant::now() < deadline {
        sleep(Duration::from_millis(10));
    }
    let tmp = std::env::temp_dir();
    for dir in dirs {
        let ours = dir.parent() == Some(tmp.as_path())
            && dir
                .file_name()
                .is_some_and(|n| n.to_string_lossy().starts_with(DIR_PREFIX));
        if ours {
            let _ = fs::remove_dir_all(&dir);
        }
    }
}
