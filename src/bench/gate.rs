//! The regression gate: two runs compared row by row, beyond their noise.

use super::{find, Row};

/// One compared measurement of `gate`.
#[derive(Clone, Debug)]
pub struct Comparison {
    /// `benchmark/parameter`.
    pub name: String,
    /// What is compared: `ratio` where both runs have a baseline, else `time`.
    pub compared: &'static str,
    /// Baseline run's figure.
    pub before: f64,
    /// Current run's figure.
    pub after: f64,
    /// Change in percent (positive: slower).
    pub change_pct: f64,
    /// The noise allowance in percent (both runs' p10-p90 spread).
    pub noise_pct: f64,
    /// Whether it got worse than the threshold beyond the noise.
    pub regressed: bool,
}

/// Compares two runs row by row on ratios where both have a baseline (absolute
/// times move from machine to machine), else on median time. A benchmark
/// regresses when it got slower by more than `max_regression_pct` plus the
/// noise of every measurement involved (each row's and, for a ratio, its
/// baseline's p10-p90 spread, in both runs).
pub fn gate(before: &[Row], after: &[Row], max_regression_pct: f64) -> Vec<Comparison> {
    let noise_of = |rows: &[Row], r: &Row, with_baseline: bool| {
        let base = r
            .baseline
            .split_once('/')
            .and_then(|(b, p)| find(rows, b, p))
            .filter(|_| with_baseline)
            .map_or(0.0, Row::noise);
        r.noise() + base
    };
    after
        .iter()
        .filter_map(|a| {
            let b = find(before, &a.benchmark, &a.parameter)?;
            let (compared, x, y) = match (b.ratio(), a.ratio()) {
                (Some(x), Some(y)) => ("ratio", x, y),
                _ => ("time", b.median_ns, a.median_ns),
            };
            let ratio = compared == "ratio";
            let change_pct = if x > 0.0 { (y - x) / x * 100.0 } else { 0.0 };
            let noise_pct = (noise_of(after, a, ratio) + noise_of(before, b, ratio)) * 100.0;
            Some(Comparison {
                name: format!("{}/{}", a.benchmark, a.parameter),
                compared,
                before: x,
                after: y,
                change_pct,
                noise_pct,
                regressed: change_pct > max_regression_pct + noise_pct,
            })
        })
        .collect()
}
