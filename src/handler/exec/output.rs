//! A program's stdout and stderr: logged line by line as they arrive, and
//! the last [`TAIL_BYTES`] kept for the dead-letter reason. Memory stays
//! bounded whatever the program prints (no newline for a gigabyte included).

use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncReadExt};
use tokio::task::JoinHandle;
use tracing::{Instrument, info};

/// How much of each stream is kept.
pub const TAIL_BYTES: usize = 64 * 1024;

/// Longer lines are logged in pieces of this size.
const MAX_LINE: usize = 4 * 1024;

/// The end of a stream, shared by the reader task and the handler.
#[derive(Debug, Default)]
struct Tail {
    bytes: Vec<u8>,
    /// Bytes that no longer fit and were dropped from the front.
    dropped: u64,
}

impl Tail {
    fn push(&mut self, chunk: &[u8]) {
        self.bytes.extend_from_slice(chunk);
        let excess = self.bytes.len().saturating_sub(TAIL_BYTES);
        if excess > 0 {
            self.bytes.drain(..excess);
            self.dropped += excess as u64;
        }
    }
}

/// One stream being read by a background task.
#[derive(Debug)]
pub struct Capture {
    tail: Arc<Mutex<Tail>>,
    reader: JoinHandle<()>,
}

impl Capture {
    /// Starts reading `pipe` in a task of its own (in the current span, so
    /// its log lines carry the task's message id). The task ends at EOF,
    /// which comes when every process holding the pipe has exited.
    pub fn start<R>(pipe: R, stream: &'static str) -> Capture
    where
        R: AsyncRead + Unpin + Send + 'static,
    {
        let tail = Arc::new(Mutex::new(Tail::default()));
        let reader =
            tokio::spawn(read(pipe, stream, tail.clone()).instrument(tracing::Span::current()));
        Capture { tail, reader }
    }

    /// Waits up to `limit` for EOF, then returns what was kept. The limit
    /// matters only when a process outside the task's group (one that called
    /// setsid) still holds the pipe: Warren does not wait for it forever.
    pub async fn finish(mut self, limit: Duration) -> Vec<u8> {
        if tokio::time::timeout(limit, &mut self.reader).await.is_err() {
            self.reader.abort();
        }
        let tail = self
            .tail
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let mut out = Vec::with_capacity(tail.bytes.len() + 32);
        if tail.dropped > 0 {
            out.extend_from_slice(format!("[{} earlier bytes omitted] ", tail.dropped).as_bytes());
        }
        out.extend_from_slice(&tail.bytes);
        out
    }
}

async fn read<R: AsyncRead + Unpin>(mut pipe: R, stream: &'static str, tail: Arc<Mutex<Tail>>) {
    let mut buf = vec![0u8; 8192];
    let mut line = Vec::new();
    loop {
        let n = match pipe.read(&mut buf).await {
            Ok(0) | Err(_) => break,
            Ok(n) => n,
        };
        let chunk = &buf[..n];
        tail.lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .push(chunk);
        for piece in chunk.split_inclusive(|b| *b == b'\n') {
            line.extend_from_slice(piece);
            if line.ends_with(b"\n") || line.len() >= MAX_LINE {
                log_line(stream, &line);
                line.clear();
            }
        }
    }
    if !line.is_empty() {
        log_line(stream, &line);
    }
}

fn log_line(stream: &'static str, line: &[u8]) {
    let text = String::from_utf8_lossy(line);
    let text = text.trim_end_matches(['\n', '\r']);
    info!("{stream}: {text}");
}

/// The last `max` bytes of `tail` as trimmed text, for a failure reason.
pub fn excerpt(tail: &[u8], max: usize) -> String {
    let start = tail.len().saturating_sub(max);
    let text = String::from_utf8_lossy(&tail[start..]);
    let text = text.trim();
    if start > 0 {
        format!("…{text}")
    } else {
        text.to_owned()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_tail_is_bounded() {
        let mut t = Tail::default();
        t.push(&vec![b'a'; TAIL_BYTES]);
        t.push(b"end");
        assert_eq!(t.bytes.len(), TAIL_BYTES);
        assert_eq!(t.dropped, 3);
        assert!(t.bytes.ends_with(b"aend"));
    }

    #[test]
    fn excerpts_keep_the_end() {
        assert_eq!(
            excerpt(b"  line one\nline two\n", 100),
            "line one\nline two"
        );
        assert_eq!(excerpt(b"0123456789", 4), "…6789");
        assert_eq!(excerpt(&[0xff, b'x'], 10), "\u{fffd}x");
    }

    #[tokio::test]
    async fn captures_everything_a_pipe_carries() {
        let (mut w, r) = tokio::io::duplex(64);
        let capture = Capture::start(r, "stdout");
        tokio::io::AsyncWriteExt::write_all(&mut w, b"one\ntwo\n\0\xff")
            .await
            .unwrap();
        drop(w);
        let got = capture.finish(Duration::from_secs(5)).await;
        assert_eq!(got, b"one\ntwo\n\0\xff");
    }
}
