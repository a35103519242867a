//! Where log lines go: a bounded in-memory queue that a thread of its own
//! writes to stderr, so no task ever waits for a write syscall or a reader
//! that stopped reading (a stalled pipe, a stuck log shipper).
//!
//! When the queue is full a line is dropped, never waited for. Drops are
//! counted (`warren_log_lines_dropped_total`, read from the same counter) and
//! reported in the log itself: the writer thread writes a warning line
//! before the next line that gets through, or when it next catches up, so a
//! gap in the log is never silent. The report is written by that thread
//! directly, so it is never itself dropped or counted.

use super::timestamp::Timestamp;
use std::io::{self, Write};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};
use tracing_appender::non_blocking::{ErrorCounter, NonBlocking, NonBlockingBuilder, WorkerGuard};
use tracing_subscriber::fmt::format::Writer;
use tracing_subscriber::fmt::time::FormatTime;

/// Lines the queue holds before it drops new ones. 8192 lines of 150–400
/// bytes (text / JSON task lines) hold at most ~3 MiB, and absorb a reader
/// pause of about half a second at 10 000 tasks/s (two lines per task at
/// info). A reader slower than that for longer is not pausing but stalled:
/// a bigger queue would only hold more memory and report the gap later.
/// (tracing-appender's default, 128 000 lines, could hold ~50 MiB.)
pub const BUFFERED_LINES: usize = 8192;

/// The writer thread flushes at most this often. Flushing at every catch-up
/// made a flood cost a wake-up of the thread (a futex call in the task that
/// logged) and a `write(2)` per line; pausing after a flush lets a batch
/// gather in the queue meanwhile (500 lines at 100,000 lines/s, well inside
/// [`BUFFERED_LINES`]), so tasks pass lines without waking anybody. A line
/// after a quiet spell is still written at once.
const FLUSH_PACE: Duration = Duration::from_millis(5);

/// A non-blocking, lossy writer to `out`; the guard flushes it when dropped.
/// The counter says how many lines were dropped so far.
pub fn non_blocking<W: Write + Send + 'static>(
    out: W,
    json: bool,
) -> (NonBlocking, WorkerGuard, ErrorCounter) {
    let counter = Arc::new(OnceLock::new());
    let reporting = DropReporting {
        out,
        dropped: counter.clone(),
        reported: 0,
        json,
        flushed: Instant::now(),
    };
    let (writer, guard) = NonBlockingBuilder::default()
        .buffered_lines_limit(BUFFERED_LINES)
        .lossy(true)
        .thread_name("warren-log-writer")
        .finish(reporting);
    let dropped = writer.error_counter();
    let _ = counter.set(dropped.clone());
    (writer, guard, dropped)
}

/// The writer thread's end: writes each line to `out`, preceded by a report
/// of the lines dropped since the last report.
struct DropReporting<W> {
    out: W,
    /// Set right after the queue is built (it creates the counter).
    dropped: Arc<OnceLock<ErrorCounter>>,
    /// Dropped lines already reported.
    reported: usize,
    /// Write the report as a JSON object line, like the other lines.
    json: bool,
    /// When the last flush ended (see [`FLUSH_PACE`]).
    flushed: Instant,
}

impl<W: Write> DropReporting<W> {
    fn report_drops(&mut self) -> io::Result<()> {
        let dropped = self.dropped.get().map_or(0, ErrorCounter::dropped_lines);
        if dropped <= self.reported {
            return Ok(());
        }
        let line = drop_report(dropped - self.reported, self.json);
        self.reported = dropped;
        self.out.write_all(line.as_bytes())
    }
}

impl<W: Write> Write for DropReporting<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.out.write(buf)
    }

    /// The writer thread hands over whole lines with `write_all`: the report
    /// goes before a line, never inside one.
    fn write_all(&mut self, line: &[u8]) -> io::Result<()> {
        self.report_drops()?;
        self.out.write_all(line)
    }

    /// Called when the writer caught up with the queue and at exit: a gap
    /// at the end of a burst is reported then, not only when the next line
    /// comes. Paced by [`FLUSH_PACE`].
    fn flush(&mut self) -> io::Result<()> {
        if let Some(wait) = FLUSH_PACE.checked_sub(self.flushed.elapsed()) {
            std::thread::sleep(wait);
        }
        self.report_drops()?;
        let flushed = self.out.flush();
        self.flushed = Instant::now();
        flushed
    }
}

/// A warning line saying `n` lines were dropped, shaped like the fmt
/// layer's own lines (JSON object or text).
fn drop_report(n: usize, json: bool) -> String {
    let mut timestamp = String::new();
    let _ = Timestamp.format_time(&mut Writer::new(&mut timestamp));
    let message = format!(
        "{n} log lines dropped: the log reader (stderr pipe) is too slow; \
         tasks never wait for it (warren_log_lines_dropped_total counts them)"
    );
    if json {
        let line = serde_json::json!({
            "timestamp": timestamp,
            "level": "WARN",
            "fields": { "message": message },
        });
        format!("{line}\n")
    } else {
        format!("{timestamp}  WARN {message}\n")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Mutex;

    /// An `out` the test can read; it stalls while its lock is held.
    #[derive(Clone, Default)]
    struct Shared(Arc<Mutex<Vec<u8>>>);

    impl Write for Shared {
        fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(buf);
            Ok(buf.len())
        }
        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }

    #[test]
    fn drops_are_counted_and_reported_before_the_next_line() {
        let out = Shared::default();
        let held = out.0.lock().unwrap(); // the reader stalls
        let (mut writer, guard, dropped) = non_blocking(out.clone(), true);
        let extra = 100;
        for i in 0..BUFFERED_LINES + extra + 1 {
            writer.write_all(format!("line {i}\n").as_bytes()).unwrap();
        }
        // The writer thread took one line and waits on the held reader.
        assert!(dropped.dropped_lines() >= extra);
        drop(held);
        drop(guard); // flushes what was queued

        let text = String::from_utf8(out.0.lock().unwrap().clone()).unwrap();
        let reports: Vec<&str> = text.lines().filter(|l| l.contains("dropped")).collect();
        assert_eq!(reports.len(), 1, "{reports:?}");
        let report: serde_json::Value = serde_json::from_str(reports[0]).unwrap();
        let message = report["fields"]["message"].as_str().unwrap();
        let n = dropped.dropped_lines();
        assert!(message.starts_with(&format!("{n} log lines dropped")));
        assert_eq!(report["level"], "WARN");
        let first_lines: Vec<&str> = text.lines().take(2).collect();
        assert!(
            first_lines.contains(&reports[0]),
            "reported first: {first_lines:?}"
        );
        let kept = text.lines().filter(|l| l.starts_with("line ")).count();
        assert_eq!(
            kept + n,
            BUFFERED_LINES + extra + 1,
            "each line written or counted"
        );
    }

    #[test]
    fn the_text_report_looks_like_a_text_line() {
        let line = drop_report(3, false);
        assert!(line.contains("Z  WARN 3 log lines dropped: "), "{line}");
        assert!(line.ends_with('\n') && line.lines().count() == 1);
    }
}
