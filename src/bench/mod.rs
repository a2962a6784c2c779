//! `refit-harness bench`: refit and inference measured as a sweep, each
//! beside a baseline taken in the same run, written as `bench.csv`, SVG
//! plots and `summary.md`. Absolute times move from machine to machine;
//! the ratios to the same-run baselines are what `gate` compares.
//!
//! Its parts: [`sampler`] (batched timing, medians and spreads), [`sweep`]
//! (what is measured, beside which baseline), [`csv`] (`bench.csv` out and
//! in), [`plots`] (SVG), [`summary`](mod@summary) (`summary.md`) and [`gate`](mod@gate) (the
//! regression gate between two runs).

use std::path::{Path, PathBuf};

use crate::{Error, Result};

pub mod csv;
pub mod gate;
pub mod plots;
pub mod sampler;
pub mod summary;
pub mod sweep;

pub use self::csv::{read_csv, write_csv, HEADER};
pub use gate::{criterion_changes, gate, Comparison, CriterionChange};
pub use summary::summary;
pub use sweep::{oracle_model, run, sized_model, with_writer, BenchConfig};

/// One measurement: the median time of one operation, its spread, and the
/// same-run baseline it is compared with.
#[derive(Clone, Debug, PartialEq)]
pub struct Row {
    /// The engine.
    pub engine: String,
    /// `refit`, `infer`, ...
    pub benchmark: String,
    /// Bytes, model or mode.
    pub parameter: String,
    /// Median time per operation, in nanoseconds.
    pub median_ns: f64,
    /// 10th percentile over samples.
    pub p10_ns: f64,
    /// 90th percentile over samples.
    pub p90_ns: f64,
    /// 99th percentile of single calls (tail measurements only).
    pub p99_ns: Option<f64>,
    /// The slowest single call (tail measurements only).
    pub max_ns: Option<f64>,
    /// Samples taken.
    pub samples: usize,
    /// The baseline's name, if any.
    pub baseline: String,
    /// The baseline's median, in nanoseconds.
    pub baseline_ns: Option<f64>,
}

impl Row {
    /// A batch-timed row ([`sampler::time`]): median, p10 and p90 from
    /// `t`, no tail figures; `baseline` names the row `baseline_ns` is the
    /// median of (empty and `None` without one).
    pub fn timed(
        engine: &str,
        benchmark: &str,
        parameter: &str,
        t: sampler::Stats,
        samples: usize,
        baseline: &str,
        baseline_ns: Option<f64>,
    ) -> Self {
        Row {
            engine: engine.into(),
            benchmark: benchmark.into(),
            parameter: parameter.into(),
            median_ns: t.0,
            p10_ns: t.1,
            p90_ns: t.2,
            p99_ns: None,
            max_ns: None,
            samples,
            baseline: baseline.into(),
            baseline_ns,
        }
    }

    /// `median / baseline`, when there is a baseline.
    pub fn ratio(&self) -> Option<f64> {
        self.baseline_ns
            .filter(|b| *b > 0.0)
            .map(|b| self.median_ns / b)
    }

    /// The relative spread `(p90 - p10) / median`: the run's noise.
    pub fn noise(&self) -> f64 {
        if self.median_ns > 0.0 {
            (self.p90_ns - self.p10_ns) / self.median_ns
        } else {
            0.0
        }
    }
}

fn io_err(path: &Path, error: std::io::Error) -> Error {
    Error::Io {
        op: "write",
        path: path.to_path_buf(),
        error,
    }
}

/// Writes the plots and `summary.md` into `dir`; returns the files.
///
/// # Errors
/// [`Error::Io`] when a file cannot be written.
pub fn write_report(rows: &[Row], dir: &Path) -> Result<Vec<PathBuf>> {
    std::fs::create_dir_all(dir).map_err(|e| io_err(dir, e))?;
    let mut files = Vec::new();
    let csv = dir.join("bench.csv");
    write_csv(rows, &csv)?;
    files.push(csv);

    plots::write_plots(rows, dir, &mut files)?;
    let md = dir.join("summary.md");
    std::fs::write(&md, summary(rows)).map_err(|e| io_err(&md, e))?;
    files.push(md);
    Ok(files)
}

/// The row of `benchmark` with `parameter`, if any.
pub(crate) fn find<'a>(rows: &'a [Row], benchmark: &str, parameter: &str) -> Option<&'a Row> {
    rows.iter()
        .find(|r| r.benchmark == benchmark && r.parameter == parameter)
}
