//! A node's files (rabbitmq.conf, plugins, env file) and its OS process: the
//! environment that keeps everything inside the node's directory, the spawn,
//! and the wait until it answers.

use super::{RabbitNode, amqp_answers, reap};
use std::ffi::OsString;
use std::fs::{self, OpenOptions};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::thread::sleep;
use std::time::{Duration, Instant};

const DEFAULT_SERVER_SCRIPT: &str = "/usr/lib/rabbitmq/bin/rabbitmq-server";
const START_TIMEOUT: Duration = Duration::from_secs(60);

impl RabbitNode {
    pub(super) fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    pub(super) fn write_config(&self) {
        let mut conf = format!("listeners.tcp.default = 127.0.0.1:{}\n", self.ports.amqp);
        let mut plugins = "[].\n";
        if let Some(mport) = self.ports.management {
            conf.push_str(&super::management::conf(mport));
            plugins = super::management::PLUGINS;
        }
        if let Some(tls) = &self.tls {
            conf.push_str(&self.tls_conf(tls));
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

    /// The environment of the node's processes: the same for the server and
    /// for any CLI tool (rabbitmqctl) that has to reach it, since the Erlang
    /// cookie lives in `HOME` and the node name and files come from here.
    pub(super) fn environment(&self, cmd: &mut Command) {
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
        let d = |name: &str| self.path(name).into_os_string();
        cmd.env(reap::ENV_TAG, &self.nodename)
            .env("HOME", self.dir.path()) // fresh .erlang.cookie
            .env("RABBITMQ_CONF_ENV_FILE", d("rabbitmq-env.conf"))
            .env("RABBITMQ_NODENAME", &self.nodename)
            .env("RABBITMQ_NODE_IP_ADDRESS", "127.0.0.1")
            .env("RABBITMQ_NODE_PORT", self.ports.amqp.to_string())
            .env("RABBITMQ_DIST_PORT", self.ports.dist.to_string())
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
            );
    }

    /// Spawns the node and blocks until it answers (or panics).
    pub(super) fn launch(&mut self) {
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
        let mut cmd = Command::new(&script);
        self.environment(&mut cmd);
        cmd.current_dir(self.dir.path())
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

        let amqp = self.ports.amqp;
        self.wait_until(started, "answer AMQP", || amqp_answers(amqp));
        if let Some(tport) = self.tls.as_ref().map(|t| t.port) {
            self.wait_until(started, "accept TCP on the TLS port", || {
                super::port_is_open(tport)
            });
        }
        if let Some(mport) = self.ports.management {
            self.wait_until(started, "answer HTTP on the management port", || {
                super::management::answers(mport)
            });
        }
    }

    fn wait_until(&mut self, started: Instant, what: &str, ready: impl Fn() -> bool) {
        loop {
            if ready() {
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
                    self.ports.amqp,
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
