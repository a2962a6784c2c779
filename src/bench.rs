//! `refit-harness bench`: refit and inference measured as a sweep, each
//! beside a baseline taken in the same run, written as `bench.csv`, SVG
//! plots and `summary.md`. Absolute times move from machine to machine;
//! the ratios to the same-run baselines, and figures in machine units
//! ([`Row::machine`]), are what `gate` compares.
//!
//! Its parts: [`sampler`] (batched timing, medians and spreads, the
//! machine unit sampled beside them), [`stats`]
//! (confidence intervals of medians, ratios and changes), [`loops`] (the
//! loops instruction counts are taken of), [`sweep`]
//! (what is measured, beside which baseline), [`csv`] (`bench.csv` out and
//! in), [`plots`] (SVG), [`summary`](mod@summary) (`summary.md`) and [`gate`](mod@gate) (the
//! regression gate between two runs).

use std::path::{Path, PathBuf};

use crate::{Error, Result};

pub mod csv;
pub mod gate;
pub mod loops;
pub mod plots;
pub mod sampler;
pub mod stats;
pub mod summary;
pub mod sweep;

pub use self::csv::{read_csv, write_csv, HEADER};
pub use gate::{criterion_changes, gate, Comparison, CriterionChange};
pub use summary::summary;
pub use sweep::{oracle_model, run, sized_model, steady_allocator, with_writer, BenchConfig};

/// One measurement: the median time of one operation, its spread, its
/// confidence interval, and the same-run baseline it is compared with.
#[derive(Clone, Debug, Default, PartialEq)]
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
    /// The ratio to the baseline where it is not `median_ns / baseline_ns`:
    /// for paired samples, the median of each sample over the baseline's
    /// beside it ([`sampler::Stats::per`]); as read from `bench.csv`.
    pub ratio_value: Option<f64>,
    /// The [`stats::LEVEL`] confidence interval of the median, in
    /// nanoseconds (`None` in files written before intervals were kept).
    pub median_ci: Option<(f64, f64)>,
    /// The [`stats::LEVEL`] confidence interval of [`Row::ratio`].
    pub ratio_ci: Option<(f64, f64)>,
    /// The samples alternated with the baseline's ([`sampler::time_pair`]),
    /// so the ratio's interval comes from paired samples.
    pub paired: bool,
    /// A baseline that measures the machine or the harness, not the engine
    /// under test (a memcpy, the null engine's floor, the harness's own
    /// reference engine): other rows are ratios to it, and `gate` shows its
    /// change without judging it.
    pub baseline_only: bool,
    /// The median of each round's samples, in order (one for a sweep of one
    /// round): how far the rounds agreed.
    pub round_medians: Vec<f64>,
    /// The median in machine units: the median of each sample over a batch
    /// of [`sampler::machine_unit`] taken beside it, so a figure that holds
    /// when the whole machine slows or speeds up between (or within) runs.
    /// `None` for rows measured without it.
    pub machine: Option<f64>,
    /// The [`stats::LEVEL`] confidence interval of [`Row::machine`].
    pub machine_ci: Option<(f64, f64)>,
    /// [`Row::machine`] over every sample, those taken while the machine
    /// ran slow as well ([`sampler::Stats::at_full_speed`]), with its
    /// interval: the gate calls a change a regression only when this figure
    /// shows it too, so a slow state of the process that the machine unit
    /// does not see, in which one run's samples were dropped and the
    /// other's all kept, cannot make one.
    pub machine_all: Option<stats::Estimate>,
    /// The paired ratio ([`Row::ratio_value`]) over every pair, with its
    /// interval, as [`Row::machine_all`] is.
    pub ratio_all: Option<stats::Estimate>,
}

impl Row {
    /// A row of the measurement `t`: median, p10, p90, the median's
    /// interval, and in machine units where `t` has them
    /// ([`sampler::Stats::units`]); no baseline ([`Row::against`] adds one)
    /// and no tail figures.
    pub fn measured(engine: &str, benchmark: &str, parameter: &str, t: &sampler::Stats) -> Self {
        let machine = t.in_units().map(|m| m.estimate());
        Row {
            machine_all: t.in_units_all().map(|m| m.estimate()),
            machine: machine.map(|m| m.value),
            machine_ci: machine.and_then(|m| m.interval),
            engine: engine.into(),
            benchmark: benchmark.into(),
            parameter: parameter.into(),
            median_ns: t.median,
            p10_ns: t.p10,
            p90_ns: t.p90,
            samples: t.samples.len(),
            median_ci: t.estimate().interval,
            round_medians: t.round_medians(),
            ..Row::default()
        }
    }

    /// This row against the same-run baseline `name` (`benchmark/parameter`)
    /// measured as `base`, its ratio's interval from the samples of both:
    /// paired when `paired` (the two were sampled alternately).
    #[must_use]
    pub fn against(
        mut self,
        name: &str,
        t: &sampler::Stats,
        base: &sampler::Stats,
        paired: bool,
    ) -> Self {
        self.baseline = name.into();
        self.baseline_ns = Some(base.median);
        match t.per(base).filter(|_| paired) {
            // Paired: the median of the pairs' ratios (those taken at full
            // speed where the machine unit was sampled beside them), its
            // interval from them (rounds drawn, then pairs within).
            Some(all) => {
                let r = all.kept(&t.at_full_speed()).estimate();
                if !t.units.is_empty() {
                    self.ratio_all = Some(all.estimate());
                }
                self.ratio_value = Some(r.value);
                self.ratio_ci = r.interval;
                self.paired = true;
            }
            None => {
                self.ratio_ci = Some(stats::ratio_interval(
                    &t.by_round(),
                    &base.by_round(),
                    false,
                    stats::LEVEL,
                ));
                self.paired = false;
            }
        }
        self
    }

    /// The ratio to the baseline, when there is one: the paired median
    /// ([`Row::ratio_value`]) or `median / baseline`.
    pub fn ratio(&self) -> Option<f64> {
        self.ratio_value.or_else(|| {
            self.baseline_ns
                .filter(|b| *b > 0.0)
                .map(|b| self.median_ns / b)
        })
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
