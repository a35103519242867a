//! The timestamp at the start of every log line: RFC 3339 in UTC with
//! microseconds (`2026-12-06T18:46:37.650667Z`), as tracing-subscriber's
//! `SystemTime` writes it. That one converted the date for every line
//! (~2,000 instructions); here each thread keeps the date and time of day of
//! the current second and writes only the microseconds anew.

use std::cell::Cell;
use std::fmt::{self, Write};
use std::time::{Duration, UNIX_EPOCH};
use tracing_subscriber::fmt::format::Writer;
use tracing_subscriber::fmt::time::FormatTime;

/// `YYYY-MM-DDTHH:MM:SS`.
type Second = [u8; 19];

thread_local! {
    /// The last second this thread wrote, and how it is written.
    static LAST: Cell<(u64, Second)> = const { Cell::new((u64::MAX, [b'0'; 19])) };
}

/// The log lines' timer.
#[derive(Debug, Clone, Copy, Default)]
pub struct Timestamp;

impl FormatTime for Timestamp {
    fn format_time(&self, w: &mut Writer<'_>) -> fmt::Result {
        let now = std::time::SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap_or_default();
        write(w, now)
    }
}

/// Writes `since_epoch` as a timestamp.
fn write(w: &mut impl Write, since_epoch: Duration) -> fmt::Result {
    let secs = since_epoch.as_secs();
    let second = LAST.with(|last| {
        let (cached, text) = last.get();
        if cached == secs {
            return text;
        }
        let text = second(secs);
        last.set((secs, text));
        text
    });
    // Only ASCII digits and separators were written into it.
    w.write_str(std::str::from_utf8(&second).map_err(|_| fmt::Error)?)?;
    let mut micros = [b'.', 0, 0, 0, 0, 0, 0, b'Z'];
    digits(&mut micros[1..7], u64::from(since_epoch.subsec_micros()));
    w.write_str(std::str::from_utf8(&micros).map_err(|_| fmt::Error)?)
}

/// The date and time of day of `secs` since the epoch (UTC), by the civil
/// calendar (Howard Hinnant's `civil_from_days`).
fn second(secs: u64) -> Second {
    let days = (secs / 86_400) as i64;
    let of_day = secs % 86_400;
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    let mut out = *b"0000-00-00T00:00:00";
    digits(&mut out[0..4], year.clamp(0, 9999) as u64);
    digits(&mut out[5..7], month as u64);
    digits(&mut out[8..10], day as u64);
    digits(&mut out[11..13], of_day / 3600);
    digits(&mut out[14..16], of_day / 60 % 60);
    digits(&mut out[17..19], of_day % 60);
    out
}

/// `n` in decimal, zero-padded to fill `out`.
fn digits(out: &mut [u8], mut n: u64) {
    for digit in out.iter_mut().rev() {
        *digit = b'0' + (n % 10) as u8;
        n /= 10;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(secs: u64, micros: u32) -> String {
        let mut out = String::new();
        write(&mut out, Duration::new(secs, micros * 1000)).unwrap();
        out
    }

    #[test]
    fn writes_rfc3339_utc_with_microseconds() {
        assert_eq!(at(0, 0), "1970-01-01T00:00:00.000000Z");
        assert_eq!(at(951_782_400, 7), "2000-02-29T00:00:00.000007Z");
        assert_eq!(at(1_709_164_800, 999_999), "2024-02-29T00:00:00.999999Z");
        assert_eq!(at(1_798_761_599, 650_667), "2026-12-31T23:59:59.650667Z");
        assert_eq!(at(1_798_761_599, 1), "2026-12-31T23:59:59.000001Z");
        assert_eq!(at(4_102_531_199, 0), "2100-01-01T23:59:59.000000Z");
    }

    #[test]
    fn looks_like_tracing_subscribers_own() {
        let mut ours = String::new();
        Timestamp.format_time(&mut Writer::new(&mut ours)).unwrap();
        let mut theirs = String::new();
        let stock = tracing_subscriber::fmt::time::SystemTime;
        stock.format_time(&mut Writer::new(&mut theirs)).unwrap();
        let shape = |s: &str| s.replace(|c: char| c.is_ascii_digit(), "0");
        assert_eq!(shape(&ours), shape(&theirs), "{ours} {theirs}");
    }
}
