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
    /// The noise alone exceeds the threshold and the change is not beyond
    /// threshold plus noise: a change of the threshold's size could not be
    /// told from noise, so the benchmark is not judged. A change beyond
    /// threshold plus noise is [`Comparison::regressed`] however noisy.
    pub too_noisy: bool,
    /// About how many samples per measurement would bring the noise under
    /// the threshold (the spread of a median shrinks as one over the square
    /// root of the samples).
    pub samples_needed: usize,
}

/// Compares two runs row by row on ratios where both have a baseline (absolute
/// times move from machine to machine), else on median time. A benchmark
/// regresses when it got slower by more than `max_regression_pct` plus the
/// noise of every measurement involved (each row's and, for a ratio, its
/// baseline's p10-p90 spread, in both runs). A benchmark whose noise alone
/// exceeds `max_regression_pct` is not judged ([`Comparison::too_noisy`]):
/// it would let a slowdown of that size through; unless it got slower
/// than threshold plus noise, which is a regression however noisy.
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
            let regressed = change_pct > max_regression_pct + noise_pct;
            let too_noisy = !regressed && noise_pct > max_regression_pct;
            let samples = a.samples.max(b.samples).max(1) as f64;
            let samples_needed = if too_noisy {
                (samples * (noise_pct / max_regression_pct.max(1e-9)).powi(2)).ceil() as usize
            } else {
                a.samples.max(b.samples)
            };
            Some(Comparison {
                name: format!("{}/{}", a.benchmark, a.parameter),
                compared,
                before: x,
                after: y,
                change_pct,
                noise_pct,
                regressed,
                too_noisy,
                samples_needed,
            })
        })
        .collect()
}
