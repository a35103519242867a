//! Private, throw-away RabbitMQ nodes for integration tests that have to stop,
//! kill or restart a broker (the shared broker on 127.0.0.1:5672 must never be
//! touched by tests).
//!
//! Every [`RabbitNode`] runs `/usr/lib/rabbitmq/bin/rabbitmq-server` (override
//! with `WARREN_RABBITMQ_SERVER`) in its own process group, with a unique node
//! name, its own AMQP and Erlang-distribution ports on 127.0.0.1 and all of its
//! state (config, Mnesia/quorum/stream data, logs, pid file, Erlang cookie,
//! crash dumps) inside a [`tempfile::TempDir`]. Nothing is written outside that
//! directory, with one exception: the node registers its name with the epmd
//! daemon on port 4369, which is shared with any other Erlang node on the
//! machine. If no epmd is running, the first node starts one (bound to
//! 127.0.0.1); it stays running after the tests, as it would for any Erlang
//! node. epmd is never killed here.
//!
//! By concern: this file is the node's lifecycle (start, stop, kill, restart);
//! [`launch`] writes its files and spawns its process, [`ports`] picks and
//! probes its ports, [`tls`] and [`management`] add those listeners, and
//! [`reap`] finds every process of a node (also those a dead test left).
//! [`member`] adds what a cluster member needs (a shared cookie,
//! `rabbitmqctl`, freeze/thaw); `support::cluster` builds the cluster.

mod launch;
mod management;
mod member;
mod ports;
mod reap;
mod tls;

pub use ports::{amqp_answers, port_is_open};

use super::procfs::{group_alive, process_alive};
use ports::Ports;
use std::io;
use std::path::Path;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::thread::sleep;
use std::time::{Duration, Instant};
use tls::{TlsFiles, TlsListener};

const STOP_TIMEOUT: Duration = Duration::from_secs(60);
const REAP_TIMEOUT: Duration = Duration::from_secs(30);
const POLL: Duration = Duration::from_millis(50);
/// Node names are `<NODE_PREFIX><test process pid>-<counter>@localhost`.
const NODE_PREFIX: &str = "warren-test-";
/// Prefix of the nodes' temporary directories.
const DIR_PREFIX: &str = "warren-rabbitmq-";

static NODE_COUNTER: AtomicUsize = AtomicUsize::new(0);

/// A private RabbitMQ node (see the module docs). Dropping it SIGKILLs the
/// node's whole process group and deletes its temporary directory.
pub struct RabbitNode {
    nodename: String,
    ports: Ports,
    /// The TLS listener, for nodes from [`RabbitNode::start_with_tls`].
    tls: Option<TlsListener>,
    /// Pid of the `rabbitmq-server` script we spawned, which is also the id
    /// of the node's process group. `None` once the script has been reaped:
    /// until then the id cannot be reused, so signalling it is safe.
    pgid: Option<libc::pid_t>,
    /// Removed (after `Drop::drop` killed the node) when the node is dropped.
    dir: tempfile::TempDir,
    /// Extra rabbitmq.conf lines and an advanced.config term, for
    /// [`RabbitNode::start_with_config`].
    extra: (String, String),
}

impl RabbitNode {
    /// Starts a fresh node and blocks until it answers AMQP (panics after 60 s,
    /// with the tail of the node's logs).
    pub fn start() -> RabbitNode {
        Self::start_full(false, None, Default::default(), None)
    }

    /// Like [`RabbitNode::start`], with extra `rabbitmq.conf` lines and an
    /// `advanced.config` term (e.g. `[{rabbit, [{channel_tick_interval, 500}]}].`).
    pub fn start_with_config(conf: &str, advanced: &str) -> RabbitNode {
        Self::start_full(false, None, (conf.to_owned(), advanced.to_owned()), None)
    }

    /// Like [`RabbitNode::start`], plus a TLS listener on another free port of
    /// 127.0.0.1 presenting `cert_pem`/`key_pem` (give the server certificate
    /// SANs DNS:localhost and IP:127.0.0.1). With `require_client_cert`, clients
    /// must present a certificate signed by `ca_pem` (`verify_peer` +
    /// `fail_if_no_peer_cert`). Also blocks until the TLS port accepts TCP.
    pub fn start_with_tls(
        ca_pem: &Path,
        cert_pem: &Path,
        key_pem: &Path,
        require_client_cert: bool,
    ) -> RabbitNode {
        let files = TlsFiles {
            ca: ca_pem,
            cert: cert_pem,
            key: key_pem,
            require_client_cert,
        };
        Self::start_full(false, Some(files), Default::default(), None)
    }

    /// Like [`RabbitNode::start`], with the `rabbitmq_management` plugin
    /// listening on another free port of 127.0.0.1. Also blocks until
    /// `GET /api/overview` answers 200.
    pub fn start_with_management() -> RabbitNode {
        Self::start_full(true, None, Default::default(), None)
    }

    pub fn amqp_port(&self) -> u16 {
        self.ports.amqp
    }

    /// `amqp://guest:guest@127.0.0.1:<port>/%2f`
    pub fn amqp_url(&self) -> String {
        format!("amqp://guest:guest@127.0.0.1:{}/%2f", self.ports.amqp)
    }

    /// Graceful stop: SIGTERM to the `rabbitmq-server` script (which stops the
    /// Erlang VM cleanly), then waits until every process of the node has
    /// exited. After 60 s, the group gets SIGKILL. The data directory is kept.
    pub fn stop(&mut self) {
        let Some(pgid) = self.pgid else { return };
        if !process_alive(pgid) {
            // The script is gone: nothing left to stop gracefully.
            return self.kill();
        }
        // Only the script: it traps TERM and forwards it to beam.smp.
        unsafe { libc::kill(pgid, libc::SIGTERM) };
        let deadline = Instant::now() + STOP_TIMEOUT;
        while group_alive(pgid) {
            if Instant::now() >= deadline {
                eprintln!(
                    "RabbitNode {}: still running {} s after SIGTERM, sending SIGKILL",
                    self.nodename,
                    STOP_TIMEOUT.as_secs()
                );
                break;
            }
            sleep(POLL);
        }
        self.kill();
    }

    /// SIGKILLs every process of the node and waits until they are gone. The
    /// data directory is kept (persistent messages of durable queues survive
    /// a restart if they had reached the disk: a kill skips the clean shutdown).
    pub fn kill(&mut self) {
        let Some(pgid) = self.pgid else { return };
        // The script is not reaped yet, so `pgid` is still ours.
        unsafe { libc::killpg(pgid, libc::SIGKILL) };
        let deadline = Instant::now() + REAP_TIMEOUT;
        while group_alive(pgid) && Instant::now() < deadline {
            sleep(Duration::from_millis(10));
        }
        let mut status = 0;
        while unsafe { libc::waitpid(pgid, &mut status, 0) } < 0
            && io::Error::last_os_error().raw_os_error() == Some(libc::EINTR)
        {}
        self.pgid = None;
        // erl_child_setup & co. left the group (setsid) and exit on their own
        // once beam.smp is gone; SIGKILL them if they linger.
        let left = reap::kill_stragglers(&self.nodename, deadline);
        if !left.is_empty() {
            eprintln!(
                "RabbitNode {}: processes {left:?} still alive after SIGKILL",
                self.nodename
            );
        }
    }

    /// Starts the node again with the same name, ports and data directory (a
    /// running node is stopped first) and blocks until it answers AMQP.
    pub fn restart(&mut self) {
        self.stop();
        self.launch();
    }

    /// Whether the node's OS process (the `rabbitmq-server` script, which lives
    /// exactly as long as the Erlang VM) is alive. It may be alive but not
    /// yet, or no longer, answering AMQP.
    pub fn is_running(&mut self) -> bool {
        self.pgid.is_some_and(process_alive)
    }

    fn start_full(
        management: bool,
        tls: Option<TlsFiles>,
        extra: (String, String),
        cookie: Option<&str>,
    ) -> RabbitNode {
        static CLEANUP: std::sync::Once = std::sync::Once::new();
        CLEANUP.call_once(reap::kill_leftover_nodes);
        let dir = tempfile::Builder::new()
            .prefix(DIR_PREFIX)
            .tempdir()
            .expect("RabbitNode: cannot create a temporary directory");
        let ports = Ports::pick(management, tls.is_some());
        let nodename = format!(
            "{NODE_PREFIX}{}-{}@localhost",
            std::process::id(),
            NODE_COUNTER.fetch_add(1, Ordering::SeqCst)
        );
        let mut node = RabbitNode {
            nodename,
            tls: tls.as_ref().map(|t| TlsListener {
                port: ports.tls.expect("a TLS port was picked"),
                require_client_cert: t.require_client_cert,
            }),
            ports,
            pgid: None,
            dir,
            extra,
        };
        if let Some(files) = &tls {
            node.copy_tls_files(files);
        }
        node.write_config();
        if let Some(cookie) = cookie {
            node.write_cookie(cookie);
        }
        node.launch();
        node
    }
}

impl Drop for RabbitNode {
    fn drop(&mut self) {
        // SIGKILL to the node's process group only: the shared epmd daemon
        // runs in its own session and is not touched.
        self.kill();
        // `dir` (TempDir) is removed after this.
    }
}
