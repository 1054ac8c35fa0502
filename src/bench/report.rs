//! The one table a run prints: every figure beside its baseline measured in the same run, the
//! ratio, the target and whether it is met.

use std::fmt::Write as _;
use std::time::Duration;

/// One figure: a number for the ratio, and how it reads.
#[derive(Debug, Clone, PartialEq)]
pub struct Figure {
    /// The number the ratio is computed from (`None` for a figure that is only text).
    pub value: Option<f64>,
    /// How the figure reads in the table.
    pub text: String,
}

impl Figure {
    /// A rate per second, e.g. `12,345 rows/s`.
    pub fn rate(per_second: f64, unit: &str) -> Figure {
        Figure {
            value: Some(per_second),
            text: format!("{} {unit}/s", thousands(per_second)),
        }
    }

    /// A wall time.
    pub fn time(duration: Duration) -> Figure {
        Figure {
            value: Some(duration.as_secs_f64()),
            text: human_duration(duration),
        }
    }

    /// Two latencies, `p50 / p99`; the ratio is taken on the p50.
    pub fn latencies(p50: Duration, p99: Duration) -> Figure {
        Figure {
            value: Some(p50.as_secs_f64()),
            text: format!("{} / {}", human_duration(p50), human_duration(p99)),
        }
    }

    /// A count.
    pub fn count(count: u64, unit: &str) -> Figure {
        Figure {
            value: Some(count as f64),
            text: format!("{} {unit}", thousands(count as f64)),
        }
    }

    /// An amount of memory, from kibibytes.
    pub fn memory_kib(kib: u64) -> Figure {
        Figure {
            value: Some(kib as f64),
            text: format!("{:.1} MiB", kib as f64 / 1024.0),
        }
    }

    /// Only text: nothing was measured.
    pub fn text(text: impl Into<String>) -> Figure {
        Figure {
            value: None,
            text: text.into(),
        }
    }
}

/// What a ratio (hub ÷ baseline) must be.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Target {
    /// Reported, not judged.
    None,
    /// The ratio must be at least this (throughputs).
    AtLeast(f64),
    /// The ratio must be at most this (times).
    AtMost(f64),
}

/// One row of the table.
#[derive(Debug, Clone, PartialEq)]
pub struct Row {
    /// Stable identifier (`ingest.people`, `prechecks.check_hire.c16.throughput`), for tests and
    /// for comparing runs.
    pub key: String,
    /// Which of the six measures it belongs to.
    pub section: &'static str,
    /// What is measured.
    pub measure: String,
    /// The hub's figure.
    pub hub: Figure,
    /// The baseline's figure, measured in the same run, named in its text.
    pub baseline: Option<Figure>,
    /// Hub ÷ baseline, when both are numbers.
    pub ratio: Option<f64>,
    /// What the ratio must be.
    pub target: Target,
    /// What the reader needs to weigh the figure.
    pub note: String,
}

impl Row {
    /// A row judged against a baseline.
    pub fn compared(
        key: impl Into<String>,
        section: &'static str,
        measure: impl Into<String>,
        hub: Figure,
        baseline: Figure,
        target: Target,
    ) -> Row {
        let ratio = match (hub.value, baseline.value) {
            (Some(hub), Some(base)) if base > 0.0 => Some(hub / base),
            _ => None,
        };
        Row {
            key: key.into(),
            section,
            measure: measure.into(),
            hub,
            baseline: Some(baseline),
            ratio,
            target,
            note: String::new(),
        }
    }

    /// A row reported without a baseline.
    pub fn reported(
        key: impl Into<String>,
        section: &'static str,
        measure: impl Into<String>,
        hub: Figure,
    ) -> Row {
        Row {
            key: key.into(),
            section,
            measure: measure.into(),
            hub,
            baseline: None,
            ratio: None,
            target: Target::None,
            note: String::new(),
        }
    }

    /// The same row with a note.
    pub fn note(mut self, note: impl Into<String>) -> Row {
        self.note = note.into();
        self
    }

    /// Whether the target is met; `None` when there is no target or no ratio.
    pub fn met(&self) -> Option<bool> {
        let ratio = self.ratio.filter(|r| r.is_finite())?;
        match self.target {
            Target::None => None,
            Target::AtLeast(bound) => Some(ratio >= bound),
            Target::AtMost(bound) => Some(ratio <= bound),
        }
    }
}

/// A run's results.
#[derive(Debug, Clone, Default)]
pub struct BenchReport {
    /// What was run, where: one line each, printed above the table.
    pub context: Vec<String>,
    /// The rows, in section order.
    pub rows: Vec<Row>,
}

impl BenchReport {
    /// The row with this key.
    pub fn row(&self, key: &str) -> Option<&Row> {
        self.rows.iter().find(|row| row.key == key)
    }

    /// The table, in Markdown, with the context above it.
    pub fn to_markdown(&self) -> String {
        let mut out = String::new();
        for line in &self.context {
            let _ = writeln!(out, "- {line}");
        }
        out.push('\n');
        out.push_str(
            "| # | measure | hub | baseline (same run) | ratio | target | met | notes |\n",
        );
        out.push_str("|---|---|---|---|---|---|---|---|\n");
        for row in &self.rows {
            let baseline = row
                .baseline
                .as_ref()
                .map_or_else(|| "—".to_owned(), |b| b.text.clone());
            let ratio = row
                .ratio
                .map_or_else(|| "—".to_owned(), |r| format!("{r:.2}×"));
            let target = match row.target {
                Target::None => "report only".to_owned(),
                Target::AtLeast(bound) => format!("≥ {bound}×"),
                Target::AtMost(bound) => format!("≤ {bound}×"),
            };
            let met = match row.met() {
                Some(true) => "yes",
                Some(false) => "**no**",
                None => "—",
            };
            let _ = writeln!(
                out,
                "| {} | {} | {} | {} | {} | {} | {} | {} |",
                row.section,
                cell(&row.measure),
                cell(&row.hub.text),
                cell(&baseline),
                ratio,
                target,
                met,
                cell(&row.note)
            );
        }
        out
    }
}

/// Keeps a cell on one line of the table.
fn cell(text: &str) -> String {
    text.replace('|', "\\|").replace('\n', " ")
}

/// `1234567.8` → `1,234,568`; small numbers keep a decimal or two.
pub fn thousands(value: f64) -> String {
    if !value.is_finite() {
        return value.to_string();
    }
    if value.fract() != 0.0 && value.abs() < 10.0 {
        return format!("{value:.2}");
    }
    if value.fract() != 0.0 && value.abs() < 100.0 {
        return format!("{value:.1}");
    }
    let rounded = value.round() as i128;
    let digits = rounded.unsigned_abs().to_string();
    let mut out = String::new();
    for (i, digit) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(digit);
    }
    if rounded < 0 {
        out.insert(0, '-');
    }
    out
}

/// A duration with three significant digits in a fitting unit.
pub fn human_duration(duration: Duration) -> String {
    let seconds = duration.as_secs_f64();
    if seconds >= 1.0 {
        format!("{seconds:.2} s")
    } else if seconds >= 1e-3 {
        format!("{:.2} ms", seconds * 1e3)
    } else {
        format!("{:.0} µs", seconds * 1e6)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers_read_as_people_write_them() {
        assert_eq!(thousands(1_234_567.8), "1,234,568");
        assert_eq!(thousands(999.0), "999");
        assert_eq!(thousands(12.34), "12.3");
        assert_eq!(thousands(60.0), "60");
        assert_eq!(human_duration(Duration::from_micros(1_500)), "1.50 ms");
        assert_eq!(human_duration(Duration::from_millis(2_500)), "2.50 s");
    }

    #[test]
    fn targets_judge_the_ratio() {
        let faster = Row::compared(
            "k",
            "1",
            "m",
            Figure::rate(600.0, "rows"),
            Figure::rate(1_000.0, "rows"),
            Target::AtLeast(0.5),
        );
        assert_eq!(faster.met(), Some(true));
        let slower = Row::compared(
            "k",
            "2",
            "m",
            Figure::time(Duration::from_secs(3)),
            Figure::time(Duration::from_secs(1)),
            Target::AtMost(2.0),
        );
        assert_eq!(slower.met(), Some(false));
        let table = BenchReport {
            context: vec!["scale: tiny".into()],
            rows: vec![faster, slower],
        }
        .to_markdown();
        assert!(table.contains("| 1 | m | 600 rows/s | 1,000 rows/s | 0.60× | ≥ 0.5× | yes |"));
        assert!(table.contains("**no**"));
    }
}
