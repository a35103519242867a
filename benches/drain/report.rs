//! Samples → the markdown tables: medians with their spread, ratios to the
//! limit measured in the same run and to the ideal time.

use std::fmt::Write;

/// One measured run.
#[derive(Debug, Clone, Copy)]
pub struct Sample {
    /// Drain (or publish) time, seconds.
    pub secs: f64,
    /// Peak resident set, MiB.
    pub rss_mb: f64,
    /// CPU seconds of the process under test over the measured interval.
    pub cpu_s: f64,
    /// CPU seconds of the broker over the same interval, when it is local.
    pub broker_cpu_s: Option<f64>,
}

/// Every run of one contender in one scenario.
#[derive(Debug, Clone)]
pub struct Row {
    pub scenario: String,
    pub who: String,
    pub n: usize,
    /// The limit this row is compared with (none for the limit itself).
    pub is_limit: bool,
    /// The ideal time, for scenarios with a known lower bound.
    pub ideal_s: Option<f64>,
    pub samples: Vec<Sample>,
    /// Runs that failed, with why (shown under the table).
    pub failures: Vec<String>,
}

impl Row {
    fn rates(&self) -> Vec<f64> {
        self.samples
            .iter()
            .map(|s| self.n as f64 / s.secs.max(1e-9))
            .collect()
    }

    /// Median tasks/s.
    pub fn median_rate(&self) -> Option<f64> {
        median(&self.rates())
    }
}

/// The median (mean of the middle two for an even count).
pub fn median(values: &[f64]) -> Option<f64> {
    let mut v: Vec<f64> = values.iter().copied().filter(|x| x.is_finite()).collect();
    if v.is_empty() {
        return None;
    }
    v.sort_by(f64::total_cmp);
    let mid = v.len() / 2;
    Some(if v.len() % 2 == 0 {
        (v[mid - 1] + v[mid]) / 2.0
    } else {
        v[mid]
    })
}

fn spread(values: &[f64], digits: usize) -> String {
    let Some(m) = median(values) else {
        return "—".into();
    };
    if values.len() < 2 {
        return fmt_num(m, digits);
    }
    let lo = values.iter().copied().fold(f64::INFINITY, f64::min);
    let hi = values.iter().copied().fold(f64::NEG_INFINITY, f64::max);
    format!(
        "{} ({}–{})",
        fmt_num(m, digits),
        fmt_num(lo, digits),
        fmt_num(hi, digits)
    )
}

/// 12345.6 → "12,346"; with digits, plain decimals.
pub fn fmt_num(x: f64, digits: usize) -> String {
    if digits > 0 {
        return format!("{x:.digits$}");
    }
    let s = format!("{:.0}", x.round());
    let (sign, s) = s.strip_prefix('-').map_or(("", s.as_str()), |r| ("-", r));
    let mut out = String::new();
    for (i, c) in s.chars().enumerate() {
        if i > 0 && (s.len() - i) % 3 == 0 {
            out.push(',');
        }
        out.push(c);
    }
    format!("{sign}{out}")
}

/// The drain/publish table: one line per contender per scenario.
pub fn throughput_table(rows: &[Row]) -> String {
    let mut out = String::new();
    out.push_str(
        "| scenario | run by | N | time s: median (min–max) | tasks/s: median (min–max) | ÷ limit | ÷ ideal | peak RSS MB | CPU s | broker CPU s |\n\
         |---|---|---:|---:|---:|---:|---:|---:|---:|---:|\n",
    );
    for row in rows {
        let limit = rows
            .iter()
            .find(|r| r.is_limit && r.scenario == row.scenario)
            .and_then(Row::median_rate);
        let secs: Vec<f64> = row.samples.iter().map(|s| s.secs).collect();
        let vs_limit = match (row.is_limit, row.median_rate(), limit) {
            (false, Some(rate), Some(limit)) => format!("{:.2}×", rate / limit),
            _ => String::new(),
        };
        let vs_ideal = match (row.ideal_s, median(&secs)) {
            (Some(ideal), Some(t)) => format!("{:.2}×", t / ideal),
            _ => String::new(),
        };
        let pick = |f: fn(&Sample) -> Option<f64>, digits| {
            let v: Vec<f64> = row.samples.iter().filter_map(f).collect();
            median(&v).map_or("—".into(), |m| fmt_num(m, digits))
        };
        let _ = writeln!(
            out,
            "| {} | {} | {} | {} | {} | {vs_limit} | {vs_ideal} | {} | {} | {} |",
            row.scenario,
            row.who,
            fmt_num(row.n as f64, 0),
            spread(&secs, 3),
            spread(&row.rates(), 0),
            pick(|s| Some(s.rss_mb), 1),
            pick(|s| Some(s.cpu_s), 2),
            pick(|s| s.broker_cpu_s, 2),
        );
    }
    for row in rows {
        for failure in &row.failures {
            let _ = writeln!(out, "\nFAILED: {} / {}: {failure}", row.scenario, row.who);
        }
    }
    out
}

/// Start-up and idle figures of `warren work`.
#[derive(Debug, Clone, Copy)]
pub struct Startup {
    /// Spawn → first /readyz 200, ms.
    pub ready_ms: f64,
    /// VmRSS 2 s after ready with an empty queue, MiB.
    pub idle_rss_mb: f64,
    /// VmHWM at that point, MiB.
    pub idle_hwm_mb: f64,
    /// SIGTERM → exit, ms.
    pub stop_ms: f64,
}

/// The start-up table.
pub fn startup_table(samples: &[Startup]) -> String {
    let col = |f: fn(&Startup) -> f64| samples.iter().map(f).collect::<Vec<_>>();
    let mut out = String::from("| warren work, empty queue | median (min–max) |\n|---|---:|\n");
    for (what, values, digits) in [
        (
            "time from start to ready (/readyz 200), ms",
            col(|s| s.ready_ms),
            1,
        ),
        ("idle RSS 2 s after ready, MB", col(|s| s.idle_rss_mb), 1),
        ("peak RSS by then, MB", col(|s| s.idle_hwm_mb), 1),
        ("SIGTERM to exit, ms", col(|s| s.stop_ms), 1),
    ] {
        let _ = writeln!(out, "| {what} | {} |", spread(&values, digits));
    }
    out
}

/// The arithmetic above, checked when the binary runs without `--bench`
/// (`cargo test --all-targets`: a harness-less bench has no `#[test]`s).
pub fn self_check() {
    assert_eq!(median(&[3.0, 1.0, 2.0]), Some(2.0));
    assert_eq!(median(&[4.0, 1.0, 2.0, 3.0]), Some(2.5));
    assert_eq!(median(&[]), None);
    assert_eq!(fmt_num(65432.4, 0), "65,432");
    assert_eq!(fmt_num(999.0, 0), "999");
    assert_eq!(fmt_num(-1234.0, 0), "-1,234");
    assert_eq!(fmt_num(0.4049, 3), "0.405");
}
