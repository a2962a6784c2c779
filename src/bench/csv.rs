//! `bench.csv`: one row per measurement, written and read back.

use std::path::Path;

use super::{io_err, Row};
use crate::{Error, Result};

/// The CSV header of `bench.csv`. Files without the last two columns
/// (`p99`, `max`: written since tails were measured) still read.
pub const HEADER: [&str; 13] = [
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
];

/// Writes `bench.csv`: one row per measurement (`median_time` in ns, with
/// p10, p90, the baseline and the ratio, and for per-call latencies p99
/// and max).
///
/// # Errors
/// [`Error::Io`].
pub fn write_csv(rows: &[Row], path: &Path) -> Result<()> {
    let mut w = csv::Writer::from_path(path).map_err(|e| io_err(path, e.into()))?;
    w.write_record(HEADER).map_err(|e| io_err(path, e.into()))?;
    for r in rows {
        let ratio = r.ratio().map(|x| format!("{x:.4}")).unwrap_or_default();
        w.write_record([
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
        ])
        .map_err(|e| io_err(path, e.into()))?;
    }
    w.flush().map_err(|e| io_err(path, e))
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
    if found != HEADER && found != HEADER[..11] {
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
}
