//! Results: summary statistics of repeated runs or of latency samples, targets, and the table and
//! JSON they are printed as.

use comfy_table::presets::ASCII_MARKDOWN;
use comfy_table::{CellAlignment, Table};
use serde::Serialize;

/// A summary of several numbers: runs of a benchmark, or latency samples.
#[derive(Debug, Clone, Serialize)]
pub struct Stats {
    /// How many numbers were summarised.
    pub n: usize,
    /// The median (p50).
    pub median: f64,
    /// The 99th percentile, for latency distributions.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub p99: Option<f64>,
    /// The smallest.
    pub min: f64,
    /// The largest.
    pub max: f64,
    /// The arithmetic mean.
    pub mean: f64,
}

/// The `p`th percentile (nearest rank) of sorted numbers.
pub fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let rank = ((p / 100.0) * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

impl Stats {
    /// Median, min, max and mean of the runs of a benchmark.
    pub fn of_runs(values: &[f64]) -> Stats {
        let mut v = values.to_vec();
        v.sort_by(f64::total_cmp);
        let n = v.len();
        let median = if n == 0 {
            f64::NAN
        } else if n % 2 == 1 {
            v[n / 2]
        } else {
            (v[n / 2 - 1] + v[n / 2]) / 2.0
        };
        Stats {
            n,
            median,
            p99: None,
            min: v.first().copied().unwrap_or(f64::NAN),
            max: v.last().copied().unwrap_or(f64::NAN),
            mean: if n == 0 {
                f64::NAN
            } else {
                v.iter().sum::<f64>() / n as f64
            },
        }
    }

    /// p50, p99, min, max and mean of latency samples.
    pub fn of_samples(values: &[f64]) -> Stats {
        let mut v = values.to_vec();
        v.sort_by(f64::total_cmp);
        let mut s = Stats::of_runs(&v);
        s.median = percentile(&v, 50.0);
        s.p99 = Some(percentile(&v, 99.0));
        s
    }
}

/// What a measurement should achieve; judged on its median.
#[derive(Debug, Clone, Copy, Serialize)]
pub enum Target {
    /// Below this value.
    Below(f64),
    /// Above this value.
    Above(f64),
}

impl Target {
    fn met(self, value: f64) -> bool {
        match self {
            Target::Below(t) => value < t,
            Target::Above(t) => value > t,
        }
    }

    fn text(self, unit: &str) -> String {
        match self {
            Target::Below(t) => format!("< {} {unit}", fmt(t)),
            Target::Above(t) => format!("> {} {unit}", fmt(t)),
        }
    }
}

/// One line of the results.
#[derive(Debug, Clone, Serialize)]
pub struct Measurement {
    /// The scenario it belongs to (`converge`, `steady`, ...).
    pub scenario: &'static str,
    /// What was measured, e.g. `N=1,000, no latency: commit to converged`.
    pub name: String,
    /// Unit of the numbers.
    pub unit: &'static str,
    /// `runs` (each number is one run) or `samples` (latency distribution).
    pub kind: &'static str,
    /// The numbers.
    pub stats: Stats,
    /// What it should achieve, if the brief sets a target.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub target: Option<Target>,
    /// Whether the median meets the target.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub met: Option<bool>,
    /// Anything needed to read the numbers right.
    #[serde(skip_serializing_if = "String::is_empty")]
    pub note: String,
}

impl Measurement {
    /// A measurement summarising benchmark runs.
    pub fn runs(
        scenario: &'static str,
        name: impl Into<String>,
        unit: &'static str,
        values: &[f64],
    ) -> Self {
        Self::new(scenario, name, unit, "runs", Stats::of_runs(values))
    }

    /// A measurement summarising latency samples.
    pub fn samples(
        scenario: &'static str,
        name: impl Into<String>,
        unit: &'static str,
        values: &[f64],
    ) -> Self {
        Self::new(scenario, name, unit, "samples", Stats::of_samples(values))
    }

    fn new(
        scenario: &'static str,
        name: impl Into<String>,
        unit: &'static str,
        kind: &'static str,
        stats: Stats,
    ) -> Self {
        Measurement {
            scenario,
            name: name.into(),
            unit,
            kind,
            stats,
            target: None,
            met: None,
            note: String::new(),
        }
    }

    /// Sets the target (judged on the median) unless `quick` (dev builds at small sizes are not
    /// judged).
    pub fn target(mut self, target: Target, quick: bool) -> Self {
        if !quick {
            self.met = Some(target.met(self.stats.median));
            self.target = Some(target);
        }
        self
    }

    /// Adds a note.
    pub fn note(mut self, note: impl Into<String>) -> Self {
        self.note = note.into();
        self
    }
}

/// A number with thousands separators and a sensible number of decimals.
pub fn fmt(v: f64) -> String {
    if !v.is_finite() {
        return "-".into();
    }
    let decimals = match v.abs() {
        a if a >= 100.0 => 0,
        a if a >= 10.0 => 1,
        a if a >= 1.0 => 2,
        _ => 3,
    };
    let s = format!("{v:.decimals$}");
    let (int, frac) = match s.split_once('.') {
        Some((i, f)) => (i.to_string(), Some(f.to_string())),
        None => (s.clone(), None),
    };
    let (sign, digits) = match int.strip_prefix('-') {
        Some(d) => ("-", d.to_string()),
        None => ("", int),
    };
    let mut grouped = String::new();
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i) % 3 == 0 {
            grouped.push(',');
        }
        grouped.push(c);
    }
    match frac {
        Some(f) => format!("{sign}{grouped}.{f}"),
        None => format!("{sign}{grouped}"),
    }
}

/// A count with thousands separators and no decimals (`5`, `1,000`).
pub fn count(n: usize) -> String {
    fmt(n as f64)
        .split('.')
        .next()
        .unwrap_or_default()
        .to_string()
}

/// The results as a Markdown-compatible table.
pub fn table(results: &[Measurement]) -> String {
    let mut t = Table::new();
    t.load_preset(ASCII_MARKDOWN);
    t.set_header(vec![
        "scenario",
        "measurement",
        "median/p50",
        "p99",
        "min",
        "max",
        "n",
        "unit",
        "target",
        "met",
    ]);
    for m in results {
        let s = &m.stats;
        t.add_row(vec![
            m.scenario.to_string(),
            if m.note.is_empty() {
                m.name.clone()
            } else {
                format!("{} ({})", m.name, m.note)
            },
            fmt(s.median),
            s.p99.map(fmt).unwrap_or_else(|| "-".into()),
            fmt(s.min),
            fmt(s.max),
            format!("{} {}", s.n, m.kind),
            m.unit.to_string(),
            m.target
                .map(|t| t.text(m.unit))
                .unwrap_or_else(|| "-".into()),
            match m.met {
                Some(true) => "yes".into(),
                Some(false) => "NO".into(),
                None => "-".into(),
            },
        ]);
    }
    for i in 2..7 {
        if let Some(c) = t.column_mut(i) {
            c.set_cell_alignment(CellAlignment::Right);
        }
    }
    t.to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stats_of_runs_and_samples() {
        let s = Stats::of_runs(&[3.0, 1.0, 2.0, 10.0]);
        assert_eq!((s.n, s.median, s.min, s.max), (4, 2.5, 1.0, 10.0));
        let v: Vec<f64> = (1..=100).map(f64::from).collect();
        let s = Stats::of_samples(&v);
        assert_eq!((s.median, s.p99), (50.0, Some(99.0)));
    }

    #[test]
    fn numbers_are_grouped() {
        assert_eq!(fmt(1234567.0), "1,234,567");
        assert_eq!(fmt(12.345), "12.3");
        assert_eq!(fmt(0.01234), "0.012");
        assert_eq!(fmt(-1500.0), "-1,500");
        assert_eq!(
            (count(5), count(20), count(100_000)),
            ("5".into(), "20".into(), "100,000".into())
        );
    }

    #[test]
    fn targets_are_judged_on_the_median_unless_quick() {
        let m =
            Measurement::runs("x", "y", "ms", &[5.0, 20.0, 6.0]).target(Target::Below(10.0), false);
        assert_eq!(m.met, Some(true));
        let m = Measurement::runs("x", "y", "ms", &[5.0]).target(Target::Below(1.0), true);
        assert_eq!(m.met, None);
    }
}
