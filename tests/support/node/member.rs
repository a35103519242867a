//! What a node needs to be one member of a cluster: a shared Erlang cookie,
//! `rabbitmqctl` run with the node's own environment, and freezing (SIGSTOP:
//! the process is alive, its sockets open, nothing answers) and thawing.

use super::RabbitNode;
use std::os::unix::fs::PermissionsExt;
use std::process::{Command, Output};
use std::time::Duration;

const DEFAULT_CTL: &str = "/usr/lib/rabbitmq/bin/rabbitmqctl";

impl RabbitNode {
    /// Starts a node that can join others started with the same `cookie`;
    /// `conf` adds rabbitmq.conf lines.
    pub fn start_member(cookie: &str, conf: &str) -> RabbitNode {
        Self::start_full(false, None, (conf.to_owned(), String::new()), Some(cookie))
    }

    /// `rabbit@host`-style name, for `join_cluster` and `-n`.
    pub fn nodename(&self) -> &str {
        &self.nodename
    }

    /// Writes `$HOME/.erlang.cookie` (the node's directory is its HOME) before
    /// the node starts; Erlang refuses a cookie file others can read.
    pub(super) fn write_cookie(&self, cookie: &str) {
        let path = self.path(".erlang.cookie");
        std::fs::write(&path, cookie).expect("RabbitNode: cannot write .erlang.cookie");
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o400))
            .expect("RabbitNode: cannot chmod .erlang.cookie");
    }

    /// Runs `rabbitmqctl -n <node> ARGS` with the node's environment (its
    /// cookie), with a time limit; a frozen target makes it wait, not hang.
    pub fn ctl(&self, args: &[&str], limit: Duration) -> Output {
        self.cli("rabbitmqctl", args, limit)
    }

    /// Runs another CLI tool of the same installation (`rabbitmq-queues`)
    /// the way [`ctl`](RabbitNode::ctl) runs rabbitmqctl.
    pub fn cli(&self, tool: &str, args: &[&str], limit: Duration) -> Output {
        let ctl = std::env::var_os("WARREN_RABBITMQCTL").unwrap_or_else(|| DEFAULT_CTL.into());
        let ctl = std::path::Path::new(&ctl).with_file_name(tool);
        let mut cmd = Command::new(ctl);
        self.environment(&mut cmd);
        cmd.arg("-n")
            .arg(&self.nodename)
            .arg("--timeout")
            .arg(limit.as_secs().max(1).to_string())
            .args(args);
        cmd.output()
            .unwrap_or_else(|e| panic!("RabbitNode {}: cannot run rabbitmqctl: {e}", self.nodename))
    }

    /// SIGSTOP to the node's process group: a frozen broker whose TCP
    /// connections stay open.
    pub fn freeze(&self) {
        self.signal_group(libc::SIGSTOP);
    }

    /// SIGCONT after [`freeze`](RabbitNode::freeze).
    pub fn thaw(&self) {
        self.signal_group(libc::SIGCONT);
    }

    fn signal_group(&self, signal: libc::c_int) {
        if let Some(pgid) = self.pgid {
            // The script is not reaped while `pgid` is set, so the group is ours.
            unsafe { libc::killpg(pgid, signal) };
        }
    }
}
