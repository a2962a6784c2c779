//! `bench.csv`: one row per measurement, written and read back.

use std::path::Path;

use super::stats::Estimate;
use super::{io_err, Row};
use crate::{Error, Result};

/// The CSV header of `bench.csv`. Files that end before `p99` and `max`
/// (written since tails were measured), before the intervals (`median_low`
/// to `round_medians`: their figures carry no interval, and the gate takes
/// them as exact), before machine units (`machine` to `machine_high`)
/// or before the figures over every sample (`machine_all` to
/// `ratio_all_high`: the gate then judges on the full-speed figures alone)
/// still read.
pub const HEADER: [&str; 29] = [
    "engine",
    "benchmark",
    "parameter",
    "statistic",
    "value",
    "unit",
    "samples",
    "p10",
    "p90",
    "baseline",
    "ratio",
    "p99",
    "max",
    "median_low",
    "median_high",
    "ratio_low",
    "ratio_high",
    "paired",
    "baseline_only",
    "round_medians",
    "machine",
    "machine_low",
    "machine_high",
    "machine_all",
    "machine_all_low",
    "machine_all_high",
    "ratio_all",
    "ratio_all_low",
    "ratio_all_high",
];

/// The column counts of older `bench.csv` files that still read.
const OLDER: [usize; 4] = [11, 13, 20, 23];

/// Writes `bench.csv`: one row per measurement (`median_time` in ns, with
/// p10, p90, the baseline and the ratio, for per-call latencies p99 and
/// max, the 95% confidence intervals of the median and of the ratio,
/// with whether the ratio's samples were paired, the median in machine
/// units with its interval, and the machine-unit median and the paired
/// ratio over every sample, those taken at less than full speed too, with
/// their intervals).
///
/// # Errors
/// [`Error::Io`].
pub fn write_csv(rows: &[Row], path: &Path) -> Result<()> {
    let mut w = csv::Writer::from_path(path).map_err(|e| io_err(path, e.into()))?;
    w.write_record(HEADER).map_err(|e| io_err(path, e.into()))?;
    for r in rows {
        let ratio = r.ratio().map(significant).unwrap_or_default();
        w.write_record(
            [
                r.engine.as_str(),
                &r.benchmark,
                &r.parameter,
                "median_time",
                &format!("{:.1}", r.median_ns),
                "ns",
                &r.samples.to_string(),
                &format!("{:.1}", r.p10_ns),
                &format!("{:.1}", r.p90_ns),
                &r.baseline,
                &ratio,
                &r.p99_ns.map(|x| format!("{x:.1}")).unwrap_or_default(),
                &r.max_ns.map(|x| format!("{x:.1}")).unwrap_or_default(),
                &r.median_ci
                    .map(|c| format!("{:.1}", c.0))
                    .unwrap_or_default(),
                &r.median_ci
                    .map(|c| format!("{:.1}", c.1))
                    .unwrap_or_default(),
                &r.ratio_ci.map(|c| significant(c.0)).unwrap_or_default(),
                &r.ratio_ci.map(|c| significant(c.1)).unwrap_or_default(),
                if r.ratio_ci.is_some() {
                    if r.paired {
                        "true"
                    } else {
                        "false"
                    }
                } else {
                    ""
                },
                if r.baseline_only { "true" } else { "" },
                &r.round_medians
                    .iter()
                    .map(|m| format!("{m:.1}"))
                    .collect::<Vec<_>>()
                    .join(";"),
                &r.machine.map(significant).unwrap_or_default(),
                &r.machine_ci.map(|c| significant(c.0)).unwrap_or_default(),
                &r.machine_ci.map(|c| significant(c.1)).unwrap_or_default(),
            ]
            .into_iter()
            .map(str::to_owned)
            .chain(estimate(r.machine_all))
            .chain(estimate(r.ratio_all)),
        )
        .map_err(|e| io_err(path, e.into()))?;
    }
    w.flush().map_err(|e| io_err(path, e))
}

/// The value of `e` and its interval's ends, with [`significant`] digits;
/// empty where there is none.
fn estimate(e: Option<Estimate>) -> [String; 3] {
    let (value, interval) = (e.map(|e| e.value), e.and_then(|e| e.interval));
    [value, interval.map(|c| c.0), interval.map(|c| c.1)].map(|x| {
        x.filter(|x| x.is_finite())
            .map(significant)
            .unwrap_or_default()
    })
}

/// `x` with six significant digits (at least four decimals): a ratio of
/// 0.000123 keeps its digits.
fn significant(x: f64) -> String {
    let digits = if x.is_finite() && x != 0.0 {
        (5 - x.abs().log10().floor() as i32).clamp(4, 12) as usize
    } else {
        4
    };
    format!("{x:.digits$}")
}

/// Reads a `bench.csv`.
///
/// # Errors
/// [`Error::BenchFile`] naming the file, row and column.
pub fn read_csv(path: &Path) -> Result<Vec<Row>> {
    let bad = |reason: String| Error::BenchFile {
        path: path.to_path_buf(),
        reason,
    };
    let mut rdr = csv::Reader::from_path(path).map_err(|e| bad(format!("cannot read: {e}")))?;
    let headers = rdr.headers().map_err(|e| bad(e.to_string()))?.clone();
    let found: Vec<&str> = headers.iter().collect();
    if found != HEADER && !OLDER.iter().any(|&n| found == HEADER[..n]) {
        return Err(bad(format!(
            "expected the columns {}, found {}",
            HEADER.join(","),
            found.join(",")
        )));
    }
    let mut rows = Vec::new();
    for (i, rec) in rdr.deserialize::<CsvRow>().enumerate() {
        let r = rec.map_err(|e| {
            let row = i + 2;
            match e.kind() {
                csv::ErrorKind::Deserialize { err, .. } => {
                    let column = err
                        .field()
                        .and_then(|f| HEADER.get(f as usize))
                        .map_or_else(String::new, |c| format!(", column '{c}'"));
                    bad(format!("row {row}{column}: {}", err.kind()))
                }
                _ => bad(format!("row {row}: {e}")),
            }
        })?;
        rows.push(Row {
            engine: r.engine,
            benchmark: r.benchmark,
            parameter: r.parameter,
            median_ns: r.value,
            p10_ns: r.p10,
            p90_ns: r.p90,
            p99_ns: r.p99,
            max_ns: r.max,
            samples: r.samples,
            baseline: r.baseline,
            baseline_ns: r.ratio.filter(|x| *x > 0.0).map(|x| r.value / x),
            ratio_value: r.ratio,
            median_ci: r.median_low.zip(r.median_high),
            ratio_ci: r.ratio_low.zip(r.ratio_high),
            paired: r.paired.unwrap_or(false),
            baseline_only: r.baseline_only.unwrap_or(false),
            round_medians: r
                .round_medians
                .split(';')
                .filter(|m| !m.is_empty())
                .map(str::parse)
                .collect::<std::result::Result<_, _>>()
                .map_err(|e| bad(format!("row {}, column 'round_medians': {e}", i + 2)))?,
            machine: r.machine,
            machine_ci: r.machine_low.zip(r.machine_high),
            machine_all: r.machine_all.map(|value| Estimate {
                value,
                interval: r.machine_all_low.zip(r.machine_all_high),
            }),
            ratio_all: r.ratio_all.map(|value| Estimate {
                value,
                interval: r.ratio_all_low.zip(r.ratio_all_high),
            }),
        });
    }
    Ok(rows)
}

/// One line of `bench.csv`, by column name.
#[derive(serde::Deserialize)]
struct CsvRow {
    engine: String,
    benchmark: String,
    parameter: String,
    value: f64,
    samples: usize,
    p10: f64,
    p90: f64,
    baseline: String,
    ratio: Option<f64>,
    #[serde(default)]
    p99: Option<f64>,
    #[serde(default)]
    max: Option<f64>,
    #[serde(default)]
    median_low: Option<f64>,
    #[serde(default)]
    median_high: Option<f64>,
    #[serde(default)]
    ratio_low: Option<f64>,
    #[serde(default)]
    ratio_high: Option<f64>,
    #[serde(default)]
    paired: Option<bool>,
    #[serde(default)]
    baseline_only: Option<bool>,
    #[serde(default)]
    round_medians: String,
    #[serde(default)]
    machine: Option<f64>,
    #[serde(default)]
    machine_low: Option<f64>,
    #[serde(default)]
    machine_high: Option<f64>,
    #[serde(default)]
    machine_all: Option<f64>,
    #[serde(default)]
    machine_all_low: Option<f64>,
    #[serde(default)]
    machine_all_high: Option<f64>,
    #[serde(default)]
    ratio_all: Option<f64>,
    #[serde(default)]
    ratio_all_low: Option<f64>,
    #[serde(default)]
    ratio_all_high: Option<f64>,
}
