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

/// One benchmark's change as criterion estimated it against a saved
/// baseline (`cargo bench -- --baseline NAME`): the mean's relative change
/// and its confidence interval, from `<id>/change/estimates.json`.
#[derive(Clone, Debug, PartialEq)]
pub struct CriterionChange {
    /// Criterion's full id (`refit/reference/36`).
    pub name: String,
    /// The estimated change of the mean time, in percent (positive:
    /// slower).
    pub change_pct: f64,
    /// The confidence interval of that change, in percent.
    pub interval_pct: (f64, f64),
    /// Its confidence level (0.95 by default).
    pub confidence: f64,
    /// The whole interval lies above the threshold.
    pub regressed: bool,
}

/// Reads every change estimate criterion saved under `dir` (its output
/// folder, `target/criterion`), judged against `max_regression_pct`: a
/// benchmark regressed when the whole confidence interval of its change
/// lies above the threshold. Criterion's own statistics, not redone. A
/// benchmark criterion compared with nothing has no change file and is not
/// listed.
///
/// # Errors
/// [`crate::Error::BenchFile`] for a change file that is not criterion's JSON.
pub fn criterion_changes(
    root: &std::path::Path,
    max_regression_pct: f64,
) -> crate::Result<Vec<CriterionChange>> {
    let mut files = Vec::new();
    let mut stack = vec![root.to_path_buf()];
    while let Some(d) = stack.pop() {
        let Ok(entries) = std::fs::read_dir(&d) else {
            continue;
        };
        for e in entries.flatten() {
            let p = e.path();
            if p.is_dir() {
                if p.file_name().is_some_and(|n| n == "change") {
                    let f = p.join("estimates.json");
                    if f.is_file() {
                        files.push(f);
                    }
                } else {
                    stack.push(p);
                }
            }
        }
    }
    files.sort();
    let bad = |path: &std::path::Path, reason: String| crate::Error::BenchFile {
        path: path.to_path_buf(),
        reason,
    };
    let mut out = Vec::new();
    for f in files {
        let text = std::fs::read_to_string(&f).map_err(|e| bad(&f, e.to_string()))?;
        let v: serde_json::Value =
            serde_json::from_str(&text).map_err(|e| bad(&f, e.to_string()))?;
        let num = |ptr: &str| {
            v.pointer(ptr)
                .and_then(serde_json::Value::as_f64)
                .ok_or_else(|| {
                    bad(
                        &f,
                        format!("expected a number at {ptr} (criterion's change estimates)"),
                    )
                })
        };
        let (point, lo, hi) = (
            num("/mean/point_estimate")?,
            num("/mean/confidence_interval/lower_bound")?,
            num("/mean/confidence_interval/upper_bound")?,
        );
        let confidence = num("/mean/confidence_interval/confidence_level")?;
        // The benchmark's id, from criterion's benchmark.json beside it.
        let dir = f.parent().and_then(std::path::Path::parent);
        let name = dir
            .and_then(|d| std::fs::read_to_string(d.join("new/benchmark.json")).ok())
            .and_then(|t| serde_json::from_str::<serde_json::Value>(&t).ok())
            .and_then(|j| j.get("full_id").and_then(|s| s.as_str()).map(String::from))
            .or_else(|| {
                dir.and_then(|d| d.strip_prefix(root).ok())
                    .map(|p| p.display().to_string())
            })
            .unwrap_or_else(|| f.display().to_string());
        out.push(CriterionChange {
            name,
            change_pct: point * 100.0,
            interval_pct: (lo * 100.0, hi * 100.0),
            confidence,
            regressed: lo * 100.0 > max_regression_pct,
        });
    }
    Ok(out)
}
