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
//! Processes: the script is our child and leads the node's process group;
//! beam.smp is in that group, but erl_child_setup and the port programs it
//! spawns (inet_gethost, the `sh` used by os_mon, ...) call setsid() and leave
//! it. They exit by themselves when beam.smp dies. To make sure that happened
//! (and to SIGKILL any straggler), every process of a node is recognised by
//! an environment variable it inherits (`WARREN_RABBIT_NODE=<node name>`,
//! read from /proc/<pid>/environ), epmd excepted. Orphans are reaped by init.
//!
//! If a test process dies without running `Drop` (SIGKILL, `abort`), its
//! nodes keep running. The first node started by a later test process kills
//! such leftovers (nodes named `warren-test-<pid>-*` whose test process <pid>
//! is gone) and removes their temporary directories.
#![allow(dead_code)]

use std::ffi::OsString;
use std::fs::{self, OpenOptions};
use std::io::{self, Read, Write};
use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4, TcpListener, TcpStream};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::thread::sleep;
use std::time::{Duration, Instant};

const DEFAULT_SERVER_SCRIPT: &str = "/usr/lib/rabbitmq/bin/rabbitmq-server";
const START_TIMEOUT: Duration = Duration::from_secs(60);
const STOP_TIMEOUT: Duration = Duration::from_secs(60);
const REAP_TIMEOUT: Duration = Duration::from_secs(30);
const POLL: Duration = Duration::from_millis(50);
/// AMQP 0-9-1 protocol header.
const AMQP_HEADER: &[u8; 8] = b"AMQP\x00\x00\x09\x01";

/// Environment variable inherited by every process of a node.
const ENV_TAG: &str = "WARREN_RABBIT_NODE";
/// Node names are `<NODE_PREFIX><test process pid>-<counter>@localhost`.
const NODE_PREFIX: &str = "warren-test-";
/// Prefix of the nodes' temporary directories.
const DIR_PREFIX: &str = "warren-rabbitmq-";

static NODE_COUNTER: AtomicUsize = AtomicUsize::new(0);

/// A private RabbitMQ node (see the module docs). Dropping it SIGKILLs the
/// node's whole process group and deletes its temporary directory.
pub struct RabbitNode {
    nodename: String,
    amqp_port: u16,
    dist_port: u16,
    management_port: Option<u16>,
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

/// An `amqps` listener: its port and whether it demands a client certificate.
/// The PEM files are copied into the node's directory (`tls/`), so a restart
/// still finds them after the test's own files are gone.
struct TlsListener {
    port: u16,
    require_client_cert: bool,
}

/// What [`RabbitNode::start_with_tls`] was given.
struct TlsFiles<'a> {
    ca: &'a Path,
    cert: &'a Path,
    key: &'a Path,
    require_client_cert: bool,
}

impl RabbitNode {
    /// Starts a fresh node and blocks until it answers AMQP (panics after 60 s,
    /// with the tail of the node's logs).
    pub fn start() -> RabbitNode {
        Self::start_inner(false, None)
    }

    /// Like [`RabbitNode::start`], with extra `rabbitmq.conf` lines and an
    /// `advanced.config` term (e.g. `[{rabbit, [{channel_tick_interval, 500}]}].`).
    pub fn start_with_config(conf: &str, advanced: &str) -> RabbitNode {
        Self::start_full(false, None, (conf.to_owned(), advanced.to_owned()))
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
        Self::start_inner(false, Some(files))
    }

    /// Like [`RabbitNode::start`], with the `rabbitmq_management` plugin
    /// listening on another free port of 127.0.0.1. Also blocks until
    /// `GET /api/overview` answers 200.
    pub fn start_with_management() -> RabbitNode {
        Self::start_inner(true, None)
    }

    /// `amqps://guest:guest@localhost:<tls port>/%2f` (`localhost`, so the
    /// host name is checked against the certificate's DNS SAN); panics if
    /// the node has no TLS listener.
    pub fn amqps_url(&self) -> String {
        format!("amqps://guest:guest@localhost:{}/%2f", self.tls_port())
    }

    /// The TLS listener's port; panics if the node has none.
    pub fn tls_port(&self) -> u16 {
        self.tls
            .as_ref()
            .expect("RabbitNode: started without TLS (use start_with_tls)")
            .port
    }

    pub fn amqp_port(&self) -> u16 {
        self.amqp_port
    }

    /// `amqp://guest:guest@127.0.0.1:<port>/%2f`
    pub fn amqp_url(&self) -> String {
        format!("amqp://guest:guest@127.0.0.1:{}/%2f", self.amqp_port)
    }

    /// `http://guest:guest@127.0.0.1:<port>` when management is enabled.
    pub fn management_url(&self) -> Option<String> {
        self.management_port
            .map(|p| format!("http://guest:guest@127.0.0.1:{p}"))
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
        let tag = self.env_tag();
        let started = Instant::now();
        loop {
            let left = tagged_processes(&tag);
            if left.is_empty() {
                return;
            }
            if started.elapsed() > Duration::from_secs(1) {
                for pid in &left {
                    unsafe { libc::kill(*pid, libc::SIGKILL) };
                }
            }
            if Instant::now() >= deadline {
                eprintln!(
                    "RabbitNode {}: processes {left:?} still alive after SIGKILL",
                    self.nodename
                );
                return;
            }
            sleep(Duration::from_millis(10));
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

    // ---------------------------------------------------------------------

    fn start_inner(management: bool, tls: Option<TlsFiles>) -> RabbitNode {
        Self::start_full(management, tls, Default::default())
    }

    fn start_full(management: bool, tls: Option<TlsFiles>, extra: (String, String)) -> RabbitNode {
        static CLEANUP: std::sync::Once = std::sync::Once::new();
        CLEANUP.call_once(kill_leftover_nodes);
        let dir = tempfile::Builder::new()
            .prefix(DIR_PREFIX)
            .tempdir()
            .expect("RabbitNode: cannot create a temporary directory");
        let ports = free_ports(2 + usize::from(management) + usize::from(tls.is_some()));
        let nodename = format!(
            "{NODE_PREFIX}{}-{}@localhost",
            std::process::id(),
            NODE_COUNTER.fetch_add(1, Ordering::SeqCst)
        );
        let mut node = RabbitNode {
            nodename,
            amqp_port: ports[0],
            dist_port: ports[1],
            management_port: management.then(|| ports[2]),
            tls: tls.as_ref().map(|t| TlsListener {
                port: *ports.last().unwrap(),
                require_client_cert: t.require_client_cert,
            }),
            pgid: None,
            dir,
            extra,
        };
        if let Some(files) = &tls {
            node.copy_tls_files(files);
        }
        node.write_config();
        node.launch();
        node
    }

    /// `WARREN_RABBIT_NODE=<node name>`, as found in /proc/<pid>/environ.
    fn env_tag(&self) -> Vec<u8> {
        format!("{ENV_TAG}={}", self.nodename).into_bytes()
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    fn write_config(&self) {
        let mut conf = format!("listeners.tcp.default = 127.0.0.1:{}\n", self.amqp_port);
        let mut plugins = "[].\n";
        if let Some(mport) = self.management_port {
            conf.push_str(&format!(
                "management.tcp.port = {mport}\nmanagement.tcp.ip = 127.0.0.1\n"
            ));
            plugins = "[rabbitmq_management].\n";
        }
        if let Some(tls) = &self.tls {
            let file = |name: &str| self.path("tls").join(name).display().to_string();
            let (verify, fail) = match tls.require_client_cert {
                true => ("verify_peer", "true"),
                false => ("verify_none", "false"),
            };
            conf.push_str(&format!(
                "listeners.ssl.default = 127.0.0.1:{}\n\
                 ssl_options.cacertfile = {}\n\
                 ssl_options.certfile = {}\n\
                 ssl_options.keyfile = {}\n\
                 ssl_options.verify = {verify}\n\
                 ssl_options.fail_if_no_peer_cert = {fail}\n",
                tls.port,
                file("ca.pem"),
                file("cert.pem"),
                file("key.pem"),
            ));
        }
        conf.push_str(&self.extra.0);
        conf.push('\n');
        if !self.extra.1.is_empty() {
            fs::write(self.path("advanced.config"), &self.extra.1)
                .expect("RabbitNode: cannot write advanced.config");
        }
        for d in ["mnesia", "log", "conf.d"] {
            fs::create_dir_all(self.path(d)).expect("RabbitNode: cannot create a directory");
        }
        let files = [
            ("rabbitmq.conf", conf.as_str()),
            ("enabled_plugins", plugins),
            // Empty, so /etc/rabbitmq/rabbitmq-env.conf (NODENAME=...) is not read.
            ("rabbitmq-env.conf", ""),
        ];
        for (name, content) in files {
            fs::write(self.path(name), content)
                .unwrap_or_else(|e| panic!("RabbitNode: cannot write {name}: {e}"));
        }
    }

    fn copy_tls_files(&self, files: &TlsFiles) {
        let dir = self.path("tls");
        fs::create_dir_all(&dir).expect("RabbitNode: cannot create tls/");
        for (from, name) in [
            (files.ca, "ca.pem"),
            (files.cert, "cert.pem"),
            (files.key, "key.pem"),
        ] {
            fs::copy(from, dir.join(name)).unwrap_or_else(|e| {
                panic!(
                    "RabbitNode: cannot copy {} to tls/{name}: {e}",
                    from.display()
                )
            });
        }
    }

    /// Spawns the node and blocks until it answers (or panics).
    fn launch(&mut self) {
        let script = std::env::var_os("WARREN_RABBITMQ_SERVER")
            .unwrap_or_else(|| OsString::from(DEFAULT_SERVER_SCRIPT));
        if !Path::new(&script).exists() {
            panic!(
                "RabbitNode: {} not found. Install RabbitMQ (scripts/ensure-rabbitmq.sh, or \
                 apt-get install rabbitmq-server) or set WARREN_RABBITMQ_SERVER to a \
                 rabbitmq-server script (not the /usr/sbin wrapper).",
                script.to_string_lossy()
            );
        }
        let out = OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.path("stdout.log"))
            .expect("RabbitNode: cannot create stdout.log");
        let err = out.try_clone().expect("RabbitNode: cannot dup stdout.log");
        let d = |name: &str| self.path(name).into_os_string();

        let mut cmd = Command::new(&script);
        cmd.env_clear();
        for key in ["PATH", "LANG", "LC_ALL", "LC_CTYPE", "TZ"] {
            if let Some(v) = std::env::var_os(key) {
                cmd.env(key, v);
            }
        }
        if std::env::var_os("PATH").is_none() {
            cmd.env(
                "PATH",
                "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
            );
        }
        if std::env::var_os("LANG").is_none() {
            cmd.env("LANG", "C.UTF-8");
        }
        cmd.env(ENV_TAG, &self.nodename)
            .env("HOME", self.dir.path()) // fresh .erlang.cookie
            .env("RABBITMQ_CONF_ENV_FILE", d("rabbitmq-env.conf"))
            .env("RABBITMQ_NODENAME", &self.nodename)
            .env("RABBITMQ_NODE_IP_ADDRESS", "127.0.0.1")
            .env("RABBITMQ_NODE_PORT", self.amqp_port.to_string())
            .env("RABBITMQ_DIST_PORT", self.dist_port.to_string())
            .env("RABBITMQ_CONFIG_FILE", d("rabbitmq.conf"))
            // Defaults are /etc/rabbitmq/{conf.d/*.conf,advanced.config,motd}.
            .env("RABBITMQ_CONFIG_FILES", self.path("conf.d").join("*.conf"))
            .env("RABBITMQ_ADVANCED_CONFIG_FILE", d("advanced.config"))
            .env("RABBITMQ_MOTD_FILE", d("motd"))
            .env("RABBITMQ_ENABLED_PLUGINS_FILE", d("enabled_plugins"))
            // Quorum/stream dirs, feature-flags file and plugins-expand dir
            // default to subdirectories of these two.
            .env("RABBITMQ_MNESIA_BASE", d("mnesia"))
            .env("RABBITMQ_LOG_BASE", d("log"))
            .env("RABBITMQ_PID_FILE", d("rabbitmq.pid"))
            // Only used if no epmd is running yet: keep a new one off the network.
            .env("ERL_EPMD_ADDRESS", "127.0.0.1")
            .env("ERL_CRASH_DUMP", d("erl_crash.dump"))
            .env(
                "RABBITMQ_SERVER_ADDITIONAL_ERL_ARGS",
                "-kernel inet_dist_use_interface {127,0,0,1}",
            )
            .current_dir(self.dir.path())
            .stdin(Stdio::null())
            .stdout(out)
            .stderr(err)
            .process_group(0);

        let started = Instant::now();
        let child = cmd
            .spawn()
            .unwrap_or_else(|e| panic!("RabbitNode: cannot run {}: {e}", script.to_string_lossy()));
        // Reaped with waitpid() in `kill`, not through `child`.
        self.pgid = Some(child.id() as libc::pid_t);
        drop(child);

        self.wait_until(started, "answer AMQP", |n| amqp_answers(n.amqp_port));
        if let Some(tport) = self.tls.as_ref().map(|t| t.port) {
            self.wait_until(started, "accept TCP on the TLS port", |_| {
                port_is_open(tport)
            });
        }
        if let Some(mport) = self.management_port {
            self.wait_until(started, "answer HTTP on the management port", |_| {
                management_answers(mport)
            });
        }
    }

    fn wait_until(&mut self, started: Instant, what: &str, ready: impl Fn(&Self) -> bool) {
        loop {
            if ready(self) {
                return;
            }
            if !self.is_running() {
                self.kill();
                panic!(
                    "RabbitNode {}: the node exited before it could {what}\n{}",
                    self.nodename,
                    self.log_tail()
                );
            }
            if started.elapsed() > START_TIMEOUT {
                self.kill();
                panic!(
                    "RabbitNode {}: did not {what} on 127.0.0.1 within {} s (AMQP port {})\n{}",
                    self.nodename,
                    START_TIMEOUT.as_secs(),
                    self.amqp_port,
                    self.log_tail()
                );
            }
            sleep(Duration::from_millis(100));
        }
    }

    fn log_tail(&self) -> String {
        let mut out = String::new();
        let main_log = self.path("log").join(format!("{}.log", self.nodename));
        for path in [self.path("stdout.log"), main_log] {
            out.push_str(&format!("---- last lines of {} ----\n", path.display()));
            match fs::read(&path) {
                Ok(bytes) => {
                    let text = String::from_utf8_lossy(&bytes);
                    let lines: Vec<&str> = text.lines().collect();
                    for line in &lines[lines.len().saturating_sub(40)..] {
                        out.push_str(line);
                        out.push('\n');
                    }
                }
                Err(e) => out.push_str(&format!("(cannot read: {e})\n")),
            }
        }
        out
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

/// pid, process group and state of every process, from /proc/<pid>/stat.
fn processes() -> Vec<(libc::pid_t, libc::pid_t, u8)> {
    let Ok(entries) = fs::read_dir("/proc") else {
        return Vec::new();
    };
    entries
        .filter_map(|e| {
            let pid: libc::pid_t = e.ok()?.file_name().to_str()?.parse().ok()?;
            let stat = fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
            // "pid (comm) state ppid pgrp ..."; comm may contain anything.
            let mut fields = stat.get(stat.rfind(')')? + 2..)?.split(' ');
            let state = *fields.next()?.as_bytes().first()?;
            let pgrp = fields.nth(1)?.parse().ok()?;
            Some((pid, pgrp, state))
        })
        .collect()
}

fn is_live_state(state: u8) -> bool {
    !matches!(state, b'Z' | b'X' | b'x')
}

/// Whether `pid` exists and is not a zombie.
fn process_alive(pid: libc::pid_t) -> bool {
    let Ok(stat) = fs::read_to_string(format!("/proc/{pid}/stat")) else {
        return false;
    };
    stat.rfind(')')
        .and_then(|i| stat.as_bytes().get(i + 2))
        .is_some_and(|s| is_live_state(*s))
}

/// Whether the process group has a member that is not a zombie.
fn group_alive(pgid: libc::pid_t) -> bool {
    processes()
        .iter()
        .any(|&(_, pgrp, state)| pgrp == pgid && is_live_state(state))
}

/// Live processes (epmd excepted: it may be the machine's shared daemon)
/// whose environment contains `tag` (`NAME=value`).
fn tagged_processes(tag: &[u8]) -> Vec<libc::pid_t> {
    processes()
        .into_iter()
        .filter(|&(pid, _, state)| {
            is_live_state(state)
                && fs::read_to_string(format!("/proc/{pid}/comm"))
                    .is_ok_and(|comm| comm.trim_end() != "epmd")
                && fs::read(format!("/proc/{pid}/environ"))
                    .is_ok_and(|env| env.split(|b| *b == 0).any(|var| var == tag))
        })
        .map(|(pid, _, _)| pid)
        .collect()
}

/// Kills the nodes left behind by test processes that died without dropping
/// them, and removes their temporary directories (the nodes' working dir).
fn kill_leftover_nodes() {
    let tag_prefix = format!("{ENV_TAG}={NODE_PREFIX}");
    let mut dirs = Vec::new();
    let mut killed = Vec::new();
    for (pid, _, state) in processes() {
        if !is_live_state(state) {
            continue;
        }
        let Ok(env) = fs::read(format!("/proc/{pid}/environ")) else {
            continue;
        };
        let Some(owner) = env.split(|b| *b == 0).find_map(|var| {
            let rest = var.strip_prefix(tag_prefix.as_bytes())?;
            let end = rest.iter().position(|b| *b == b'-')?;
            std::str::from_utf8(&rest[..end]).ok()?.parse::<u32>().ok()
        }) else {
            continue;
        };
        if owner == std::process::id() || Path::new(&format!("/proc/{owner}")).exists() {
            continue; // its test process is still running
        }
        let comm = fs::read_to_string(format!("/proc/{pid}/comm")).unwrap_or_default();
        if comm.trim_end() == "epmd" {
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

/// `n` distinct free TCP ports on 127.0.0.1 (all listeners are held until the
/// last one is picked, so they differ).
fn free_ports(n: usize) -> Vec<u16> {
    let listeners: Vec<TcpListener> = (0..n)
        .map(|_| TcpListener::bind("127.0.0.1:0").expect("RabbitNode: cannot bind 127.0.0.1:0"))
        .collect();
    listeners
        .iter()
        .map(|l| l.local_addr().unwrap().port())
        .collect()
}

fn local(port: u16) -> SocketAddr {
    SocketAddr::V4(SocketAddrV4::new(Ipv4Addr::LOCALHOST, port))
}

/// Sends the AMQP 0-9-1 header and checks that the reply starts with a
/// Connection.Start method frame (type 1, channel 0, class 10, method 10).
fn amqp_answers(port: u16) -> bool {
    let attempt = || -> io::Result<bool> {
        let mut s = TcpStream::connect_timeout(&local(port), Duration::from_secs(1))?;
        s.set_read_timeout(Some(Duration::from_secs(5)))?;
        s.set_write_timeout(Some(Duration::from_secs(5)))?;
        s.write_all(AMQP_HEADER)?;
        let mut buf = [0u8; 11];
        s.read_exact(&mut buf)?;
        Ok(buf[0] == 1 && buf[1..3] == [0, 0] && buf[7..11] == [0, 10, 0, 10])
    };
    attempt().unwrap_or(false)
}

/// `GET /api/overview` as guest answers 200.
fn management_answers(port: u16) -> bool {
    let attempt = || -> io::Result<bool> {
        let mut s = TcpStream::connect_timeout(&local(port), Duration::from_secs(1))?;
        s.set_read_timeout(Some(Duration::from_secs(5)))?;
        s.set_write_timeout(Some(Duration::from_secs(5)))?;
        // "Z3Vlc3Q6Z3Vlc3Q=" is base64("guest:guest").
        s.write_all(
            b"GET /api/overview HTTP/1.0\r\nHost: 127.0.0.1\r\n\
              Authorization: Basic Z3Vlc3Q6Z3Vlc3Q=\r\n\r\n",
        )?;
        let mut buf = [0u8; 12];
        s.read_exact(&mut buf)?;
        Ok(buf.starts_with(b"HTTP/1.") && &buf[8..12] == b" 200")
    };
    attempt().unwrap_or(false)
}

/// Whether something accepts TCP connections on 127.0.0.1:`port`.
pub fn port_is_open(port: u16) -> bool {
    TcpStream::connect_timeout(&local(port), Duration::from_secs(1)).is_ok()
}
