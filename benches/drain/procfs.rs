//! What a process cost, read from /proc (Linux only): CPU time, resident
//! memory and its peak, plus the few machine facts the report prints.

use anyhow::{Context, Result};

/// One reading of a process's counters.
#[derive(Debug, Clone, Copy, Default)]
pub struct Usage {
    /// utime + stime, plus cutime + cstime of reaped children (the exec
    /// handler's programs), in clock ticks.
    pub cpu_ticks: u64,
    /// Peak resident set (VmHWM), KiB.
    pub vm_hwm_kb: u64,
    /// Current resident set (VmRSS), KiB.
    pub vm_rss_kb: u64,
}

impl Usage {
    /// The counters of process `pid`.
    pub fn of(pid: u32) -> Result<Usage> {
        Self::read(&format!("/proc/{pid}"))
    }

    /// The counters of the calling process.
    pub fn of_self() -> Result<Usage> {
        Self::read("/proc/self")
    }

    fn read(dir: &str) -> Result<Usage> {
        let stat = std::fs::read_to_string(format!("{dir}/stat")).context("reading stat")?;
        // The command name may hold spaces and parentheses: count fields
        // from the last ')'. Field 3 (state) is index 0 there, so utime,
        // stime, cutime, cstime (fields 14–17) are 11–14.
        let after = &stat[stat.rfind(')').context("malformed stat")? + 1..];
        let fields: Vec<&str> = after.split_whitespace().collect();
        let tick = |i: usize| fields.get(i).and_then(|f| f.parse::<u64>().ok());
        let cpu_ticks = (11..=14).map(|i| tick(i).unwrap_or(0)).sum();
        let status = std::fs::read_to_string(format!("{dir}/status")).context("reading status")?;
        Ok(Usage {
            cpu_ticks,
            vm_hwm_kb: status_kb(&status, "VmHWM:"),
            vm_rss_kb: status_kb(&status, "VmRSS:"),
        })
    }
}

fn status_kb(status: &str, key: &str) -> u64 {
    status
        .lines()
        .find_map(|l| l.strip_prefix(key))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse().ok())
        .unwrap_or(0)
}

/// Clock ticks per second, to turn `cpu_ticks` into seconds.
pub fn ticks_per_second() -> f64 {
    // SAFETY: sysconf has no preconditions.
    let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    if hz > 0 { hz as f64 } else { 100.0 }
}

/// What `wait4` says about a child that exited: its whole life's CPU and peak RSS.
#[derive(Debug, Clone, Copy)]
pub struct Exited {
    pub success: bool,
    pub cpu_seconds: f64,
    pub max_rss_kb: u64,
}

/// Reaps child `pid` (blocking) and returns its resource usage.
pub fn wait4(pid: u32) -> Result<Exited> {
    let mut status = 0;
    // SAFETY: an all-zero rusage is a valid value for the kernel to fill in.
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    // SAFETY: valid pointers to locals; pid is our own child.
    let rc = unsafe { libc::wait4(pid as libc::pid_t, &mut status, 0, &mut usage) };
    anyhow::ensure!(rc == pid as libc::pid_t, "wait4({pid}) failed");
    let secs = |t: libc::timeval| t.tv_sec as f64 + t.tv_usec as f64 / 1e6;
    Ok(Exited {
        success: libc::WIFEXITED(status) && libc::WEXITSTATUS(status) == 0,
        cpu_seconds: secs(usage.ru_utime) + secs(usage.ru_stime),
        max_rss_kb: usage.ru_maxrss as u64,
    })
}

/// The process listening on TCP `port` (the broker, when it is local), found
/// through the socket inode in /proc/net/tcp{,6}. Read only; never signalled.
pub fn listener_pid(port: u16) -> Option<u32> {
    let wanted = format!(":{port:04X}");
    let mut inodes = Vec::new();
    for table in ["/proc/net/tcp", "/proc/net/tcp6"] {
        let Ok(text) = std::fs::read_to_string(table) else {
            continue;
        };
        for line in text.lines().skip(1) {
            let f: Vec<&str> = line.split_whitespace().collect();
            // local_address, state 0A = LISTEN, inode.
            if f.len() > 9 && f[1].ends_with(&wanted) && f[3] == "0A" {
                inodes.push(format!("socket:[{}]", f[9]));
            }
        }
    }
    if inodes.is_empty() {
        return None;
    }
    for proc in std::fs::read_dir("/proc").ok()?.flatten() {
        let Ok(pid) = proc.file_name().to_string_lossy().parse::<u32>() else {
            continue;
        };
        let Ok(fds) = std::fs::read_dir(proc.path().join("fd")) else {
            continue;
        };
        for fd in fds.flatten() {
            if let Ok(target) = std::fs::read_link(fd.path())
                && inodes.iter().any(|i| target.as_os_str() == i.as_str())
            {
                return Some(pid);
            }
        }
    }
    None
}

/// "2 cores (AMD EPYC), 24 GB RAM" from /proc.
pub fn machine() -> String {
    let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
    let model = cpuinfo
        .lines()
        .find_map(|l| l.strip_prefix("model name"))
        .and_then(|l| l.split(':').nth(1))
        .map_or("unknown CPU", str::trim)
        .to_owned();
    let cores = std::thread::available_parallelism().map_or(0, |n| n.get());
    let meminfo = std::fs::read_to_string("/proc/meminfo").unwrap_or_default();
    let mem_gb = status_kb(&meminfo, "MemTotal:") as f64 / 1024.0 / 1024.0;
    format!("{cores} cores ({model}), {mem_gb:.0} GB RAM")
}

/// The 1-minute load average: how busy the machine was with other work.
pub fn load_average() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .ok()
        .and_then(|l| l.split_whitespace().next().map(str::to_owned))
        .unwrap_or_else(|| "?".into())
}
