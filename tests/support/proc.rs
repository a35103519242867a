//! Running the real `warren` binary: long-lived processes whose stderr is
//! collected line by line, and one-shot commands with a time limit. What a
//! running process reports about itself (/readyz, /metrics) is in
//! [`super::health`]; its log is read only where users rely on its words.

use super::net::free_port;
use std::io::{BufRead, BufReader};
use std::process::{Child, ChildStderr, Command, ExitStatus, Output, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// Path of the binary cargo built for these tests.
pub fn warren_bin() -> &'static str {
    env!("CARGO_BIN_EXE_warren")
}

/// A `warren` command with a clean WARREN_* environment.
pub fn command(args: &[&str]) -> Command {
    wrapped_command(&[], args)
}

/// [`command`] run through a wrapper (`unshare --pid --fork …`): the
/// wrapper's argv, then the warren binary and `args`.
pub fn wrapped_command(wrapper: &[&str], args: &[&str]) -> Command {
    let mut cmd = match wrapper.split_first() {
        Some((program, rest)) => {
            let mut cmd = Command::new(program);
            cmd.args(rest).arg(warren_bin());
            cmd
        }
        None => Command::new(warren_bin()),
    };
    cmd.args(args);
    for (k, _) in std::env::vars() {
        if k.starts_with("WARREN_") {
            cmd.env_remove(k);
        }
    }
    cmd.env("WARREN_LOG", "info,lapin=off").env("NO_COLOR", "1");
    // Tests read the text log lines (JSON is the default off a terminal).
    cmd.env("WARREN_LOG_FORMAT", "text");
    // One-shot commands never serve; a `work` that got this far by mistake
    // must not collide with another. [`Warren`] picks a port it can reach.
    cmd.env("WARREN_SERVER_LISTEN", "127.0.0.1:0");
    cmd
}

/// `warren work --amqp-url URL --queue QUEUE EXTRA...`, to add env to.
pub fn work_command(url: &str, queue: &str, extra: &[&str]) -> Command {
    let mut args = vec!["work", "--amqp-url", url, "--queue", queue];
    args.extend_from_slice(extra);
    command(&args)
}

/// Starts `warren work` on `queue` (see [`work_command`]).
pub fn work(name: &str, url: &str, queue: &str, extra: &[&str]) -> Warren {
    Warren::spawn_with(name, work_command(url, queue, extra))
}

/// Runs a one-shot command; panics if it does not finish within `limit`.
pub fn run(args: &[&str], limit: Duration) -> Output {
    let child = command(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn warren");
    let pid = child.id();
    let waiter = std::thread::spawn(move || child.wait_with_output().expect("wait warren"));
    let started = Instant::now();
    while !waiter.is_finished() {
        if started.elapsed() > limit {
            unsafe { libc::kill(pid as i32, libc::SIGKILL) };
            panic!("warren {args:?} did not finish within {limit:?}");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    waiter.join().unwrap()
}

/// Text of a command's stdout and stderr together.
pub fn text(out: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

/// A running `warren` process; killed when dropped.
pub struct Warren {
    pub name: String,
    /// `http://127.0.0.1:PORT` of its /livez, /readyz and /metrics.
    pub base: String,
    child: Child,
    lines: Arc<Mutex<Vec<String>>>,
    /// stderr while nobody reads it yet (see [`Warren::spawn_unread`]).
    unread: Option<ChildStderr>,
}

impl Warren {
    /// Starts `warren <args>` and collects its stderr.
    pub fn spawn(name: &str, args: &[&str]) -> Warren {
        Self::spawn_with(name, command(args))
    }

    /// Starts a prepared command (extra env etc.), serving health and
    /// metrics on a port picked here, so the test knows where to look.
    pub fn spawn_with(name: &str, cmd: Command) -> Warren {
        let mut warren = Self::spawn_unread(name, cmd);
        warren.read_stderr();
        warren
    }

    /// Like [`Warren::spawn_with`], but nobody reads stderr until
    /// [`Warren::read_stderr`]: the pipe fills up and stays full, as with a
    /// log reader that stalled.
    pub fn spawn_unread(name: &str, mut cmd: Command) -> Warren {
        let listen = format!("127.0.0.1:{}", free_port());
        cmd.env("WARREN_SERVER_LISTEN", &listen);
        let mut child = cmd
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn warren");
        let unread = child.stderr.take();
        Warren {
            name: name.to_owned(),
            base: format!("http://{listen}"),
            child,
            lines: Arc::new(Mutex::new(Vec::new())),
            unread,
        }
    }

    /// Starts collecting stderr lines (once; later calls do nothing).
    pub fn read_stderr(&mut self) {
        let Some(stderr) = self.unread.take() else {
            return;
        };
        let sink = self.lines.clone();
        let tag = self.name.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                if std::env::var_os("WARREN_TEST_ECHO").is_some() {
                    eprintln!("[{tag}] {line}");
                }
                sink.lock().unwrap().push(line);
            }
        });
    }

    pub fn pid(&self) -> i32 {
        self.child.id() as i32
    }

    /// Every stderr line so far (for log tests and failure messages).
    pub fn lines(&self) -> Vec<String> {
        self.lines.lock().unwrap().clone()
    }

    /// Number of lines containing `needle`.
    pub fn count(&self, needle: &str) -> usize {
        self.lines().iter().filter(|l| l.contains(needle)).count()
    }

    /// Lines containing `needle`.
    pub fn matching(&self, needle: &str) -> Vec<String> {
        self.lines()
            .into_iter()
            .filter(|l| l.contains(needle))
            .collect()
    }

    /// Waits until at least `n` lines contain `needle`; panics with the log if not.
    pub async fn wait_for(&self, needle: &str, n: usize, limit: Duration) {
        let started = Instant::now();
        while self.count(needle) < n {
            if started.elapsed() > limit {
                panic!(
                    "{}: waited {limit:?} for {n}× {needle:?}; log:\n{}",
                    self.name,
                    self.lines().join("\n")
                );
            }
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
    }

    /// Sends a real signal.
    pub fn signal(&self, sig: i32) {
        unsafe { libc::kill(self.pid(), sig) };
    }

    /// Waits for the process to exit.
    pub async fn wait_exit(&mut self, limit: Duration) -> Option<ExitStatus> {
        let started = Instant::now();
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                return Some(status);
            }
            if started.elapsed() > limit {
                return None;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// True while the process runs.
    pub fn is_running(&mut self) -> bool {
        self.child.try_wait().unwrap().is_none()
    }

    /// SIGKILL and reap.
    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Warren {
    fn drop(&mut self) {
        self.kill();
    }
}
