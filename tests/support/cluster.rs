//! A RabbitMQ cluster of private nodes (the production shape: three nodes,
//! quorum queues), started once per test binary and shared by its tests.
//!
//! Nodes share an Erlang cookie and are joined with `rabbitmqctl
//! join_cluster`. A test takes the cluster with [`shared`] (one test at a
//! time: they kill and freeze nodes), and gets it back healed: every node
//! thawed and running. The nodes are killed when the test binary exits
//! (statics are never dropped, so an `atexit` hook does it).

use super::node::RabbitNode;
use std::sync::{Mutex, MutexGuard, OnceLock};
use std::time::{Duration, Instant};

const CTL_LIMIT: Duration = Duration::from_secs(30);
const FORM_LIMIT: Duration = Duration::from_secs(120);

/// The members and which of them are frozen.
pub struct Cluster {
    nodes: Vec<RabbitNode>,
    frozen: Vec<bool>,
}

static SHARED: OnceLock<Mutex<Cluster>> = OnceLock::new();

/// The binary's cluster of three, started on first use and healed for each
/// caller. Holding the guard keeps other tests off it.
pub fn shared() -> MutexGuard<'static, Cluster> {
    let cluster = SHARED.get_or_init(|| {
        let cluster = Cluster::start(3);
        extern "C" fn kill_nodes() {
            if let Some(cluster) = SHARED.get() {
                let mut cluster = cluster.lock().unwrap_or_else(|e| e.into_inner());
                for node in &mut cluster.nodes {
                    node.thaw();
                    node.kill();
                }
            }
        }
        unsafe { libc::atexit(kill_nodes) };
        Mutex::new(cluster)
    });
    // A test that panicked while holding it leaves it poisoned; heal anyway.
    let mut guard = cluster.lock().unwrap_or_else(|e| e.into_inner());
    guard.heal();
    guard
}

impl Cluster {
    /// Starts `n` nodes and joins the others to the first (panics with the
    /// rabbitmqctl output if a join fails).
    pub fn start(n: usize) -> Cluster {
        let cookie = format!("WARRENTESTCOOKIE{}", std::process::id());
        let nodes: Vec<RabbitNode> = (0..n)
            .map(|_| RabbitNode::start_member(&cookie, "cluster_partition_handling = autoheal"))
            .collect();
        let first = nodes[0].nodename().to_owned();
        for node in &nodes[1..] {
            for args in [&["stop_app"][..], &["join_cluster", &first], &["start_app"]] {
                let out = node.ctl(args, CTL_LIMIT);
                assert!(
                    out.status.success(),
                    "rabbitmqctl {args:?} on {}: {}{}",
                    node.nodename(),
                    String::from_utf8_lossy(&out.stdout),
                    String::from_utf8_lossy(&out.stderr)
                );
            }
        }
        let cluster = Cluster {
            frozen: vec![false; n],
            nodes,
        };
        cluster.wait_running(n);
        cluster
    }

    /// Every member's AMQP URL, in node order.
    pub fn urls(&self) -> Vec<String> {
        self.nodes.iter().map(RabbitNode::amqp_url).collect()
    }

    /// The URLs as one comma-separated value (`--amqp-url`, `WARREN_AMQP_URL`).
    pub fn url_list(&self) -> String {
        self.urls().join(",")
    }

    pub fn len(&self) -> usize {
        self.nodes.len()
    }

    /// SIGKILL member `i` (its data directory is kept).
    pub fn kill(&mut self, i: usize) {
        self.nodes[i].thaw();
        self.frozen[i] = false;
        self.nodes[i].kill();
    }

    /// Starts a killed (or stopped) member `i` again; it rejoins the cluster.
    pub fn restart(&mut self, i: usize) {
        self.nodes[i].restart();
    }

    /// Graceful stop of member `i`.
    pub fn stop(&mut self, i: usize) {
        self.nodes[i].stop();
    }

    pub fn freeze(&mut self, i: usize) {
        self.nodes[i].freeze();
        self.frozen[i] = true;
    }

    pub fn thaw(&mut self, i: usize) {
        self.nodes[i].thaw();
        self.frozen[i] = false;
    }

    /// The member that leads quorum queue `queue` (asked of any running,
    /// unfrozen member).
    pub fn leader(&mut self, queue: &str) -> usize {
        let started = Instant::now();
        loop {
            for i in self.live() {
                let out = self.nodes[i].ctl(
                    &["-q", "list_queues", "name", "leader", "--no-table-headers"],
                    CTL_LIMIT,
                );
                let text = String::from_utf8_lossy(&out.stdout);
                let leader = text.lines().find_map(|line| {
                    let (name, node) = line.split_once('\t')?;
                    (name == queue).then(|| node.trim().to_owned())
                });
                if let Some(pos) =
                    leader.and_then(|node| self.nodes.iter().position(|n| n.nodename() == node))
                {
                    return pos;
                }
            }
            assert!(started.elapsed() < CTL_LIMIT, "no leader found for {queue}");
            std::thread::sleep(Duration::from_millis(200));
        }
    }

    /// Shrinks quorum queue `queue` to member `keep` alone (`rabbitmq-queues
    /// delete_member` for the others), so stopping `keep` takes its majority.
    pub fn only_on(&self, queue: &str, keep: usize) {
        for (i, node) in self.nodes.iter().enumerate().filter(|(i, _)| *i != keep) {
            let args = ["delete_member", queue, node.nodename()];
            let out = self.nodes[keep].cli("rabbitmq-queues", &args, CTL_LIMIT);
            assert!(
                out.status.success(),
                "delete_member {queue} on node {i}: {}{}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            );
        }
    }

    /// All messages of `queue` (ready, unacked and any the broker holds for
    /// dead-lettering), as `rabbitmqctl list_queues messages` counts them.
    pub fn messages(&mut self, queue: &str) -> usize {
        for i in self.live() {
            let out = self.nodes[i].ctl(
                &[
                    "-q",
                    "list_queues",
                    "name",
                    "messages",
                    "--no-table-headers",
                ],
                CTL_LIMIT,
            );
            let text = String::from_utf8_lossy(&out.stdout);
            let count = text.lines().find_map(|line| {
                let (name, n) = line.split_once('\t')?;
                (name == queue).then(|| n.trim().parse().ok())?
            });
            if let Some(count) = count {
                return count;
            }
        }
        panic!("no running node lists {queue}");
    }

    /// Members that are running and not frozen.
    fn live(&mut self) -> Vec<usize> {
        (0..self.nodes.len())
            .filter(|&i| !self.frozen[i] && self.nodes[i].is_running())
            .collect()
    }

    /// Thaws frozen members, restarts dead ones, waits until all run.
    pub fn heal(&mut self) {
        for i in 0..self.nodes.len() {
            if self.frozen[i] {
                self.thaw(i);
            }
            if !self.nodes[i].is_running() {
                self.restart(i);
            }
        }
        self.wait_running(self.nodes.len());
    }

    /// Waits until a member reports `n` running nodes in the cluster.
    fn wait_running(&self, n: usize) {
        let started = Instant::now();
        loop {
            let out = self.nodes[0].ctl(&["cluster_status", "--formatter", "json"], CTL_LIMIT);
            let json: serde_json::Value =
                serde_json::from_slice(&out.stdout).unwrap_or(serde_json::Value::Null);
            let running = json["running_nodes"].as_array().map_or(0, Vec::len);
            if running == n {
                return;
            }
            assert!(
                started.elapsed() < FORM_LIMIT,
                "the cluster has {running} of {n} nodes running: {}",
                String::from_utf8_lossy(&out.stderr)
            );
            std::thread::sleep(Duration::from_millis(500));
        }
    }
}
