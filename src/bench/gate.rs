//! The regression gate: two runs compared row by row, each change judged
//! by its confidence interval. A row passes on a one-sided bound of its
//! own (every row must pass for the run to pass, so the run's pass needs
//! no correction: an intersection-union test); a row is called regressed
//! only on a bound corrected for judging many rows at once (Bonferroni),
//! and, for a figure taken at full speed, only when the same figure over
//! every sample shows it too.

use super::stats::{self, Estimate};
use super::{find, Row};

/// The confidence of the gate's two decisions: a build passes (every row
/// within) while some row regressed beyond the threshold with a chance of
/// at most 5%, and any row of an unchanged build is called regressed with
/// a chance of at most 5%.
pub const FAMILY_CONFIDENCE: f64 = 0.95;

/// The confidence of the interval [`Comparison::interval_pct`] (90%):
/// two-sided, each end a one-sided bound at [`FAMILY_CONFIDENCE`].
pub const INTERVAL_CONFIDENCE: f64 = 2.0 * FAMILY_CONFIDENCE - 1.0;

/// One compared measurement of `gate`.
#[derive(Clone, Debug)]
pub struct Comparison {
    /// `benchmark/parameter`.
    pub name: String,
    /// What is compared ([`basis`]): `ratio`, `machine` (the median in
    /// machine units) or `time`.
    pub compared: &'static str,
    /// Baseline run's figure.
    pub before: f64,
    /// Current run's figure.
    pub after: f64,
    /// Change in percent (positive: slower).
    pub change_pct: f64,
    /// The change's interval in percent at [`INTERVAL_CONFIDENCE`]: each
    /// end is a one-sided bound at [`FAMILY_CONFIDENCE`]; its upper end
    /// judges whether the row is within the threshold.
    pub interval_pct: (f64, f64),
    /// The change's bounds in percent, each one-sided at
    /// [`Comparison::confidence`]: a row regressed when the lower one lies
    /// above the threshold.
    pub corrected_pct: (f64, f64),
    /// The confidence of [`Comparison::corrected_pct`]'s bounds:
    /// [`FAMILY_CONFIDENCE`] shared among the rows compared (Bonferroni),
    /// so that an unchanged build has any row called regressed with a
    /// chance of at most 1 - [`FAMILY_CONFIDENCE`].
    pub confidence: f64,
    /// The change's bounds in percent as [`Comparison::corrected_pct`],
    /// of the figures over every sample ([`Row::machine_all`],
    /// [`Row::ratio_all`]) where both runs have them: the samples taken
    /// while the machine ran slow kept too.
    pub all_pct: Option<(f64, f64)>,
    /// The change lies above the threshold at [`Comparison::confidence`]
    /// ([`Comparison::corrected_pct`]'s lower bound above it), and so it
    /// does over every sample where both runs have those figures
    /// ([`Comparison::all_pct`]).
    pub regressed: bool,
    /// The change lies above the threshold at full speed but not over every
    /// sample: a state of one run that the machine unit did not see (its
    /// samples all kept at full speed, the other run's in that state
    /// dropped as slow) tells such a change from a regression no better
    /// than noise does. Counted as [`Comparison::too_noisy`].
    pub full_speed_only: bool,
    /// Neither within nor regressed, so a change of the threshold's size
    /// could not be told from none. A row is within when the upper end of
    /// [`Comparison::interval_pct`] lies at or below the threshold (no
    /// regression beyond it, at [`FAMILY_CONFIDENCE`]: the run passes only
    /// when every row does, so no row's bound needs correcting for the
    /// others), or [`Comparison::corrected_pct`] is no wider than the
    /// threshold.
    pub too_noisy: bool,
    /// About how many samples per measurement (in both runs) would narrow
    /// [`Comparison::interval_pct`] to the threshold (enough to judge an
    /// unchanged row), taken in [`Comparison::rounds_needed`]
    /// rounds: the interval narrows as one over the square root of the
    /// samples, and of the rounds when the rounds disagree.
    pub samples_needed: usize,
    /// About how many rounds those samples take (as many per round as
    /// now): the rounds, not the samples within one, are the independent
    /// units ([`super::stats::Rounds`]).
    pub rounds_needed: usize,
    /// The baseline run's figure carries no interval (a `bench.csv` from
    /// before intervals were kept, or an exact count): taken as exact.
    pub baseline_exact: bool,
    /// The same for the current run's figure.
    pub current_exact: bool,
    /// A baseline of the machine or the harness ([`Row::baseline_only`]):
    /// its change is shown, not judged (never regressed nor too noisy).
    pub baseline_only: bool,
}

/// What the gate compares of a row measured in both runs, the first that
/// both have of: the ratio to a baseline sampled alternately with it
/// (`ratio`; a machine slowing down moves both sides alike); the median in
/// machine units (`machine`, [`Row::machine`]; sampled alternately with a
/// fixed piece of work); a ratio to a baseline measured at another moment
/// (`ratio`); the median time (`time`).
pub fn basis(before: &Row, after: &Row) -> &'static str {
    let ratio = before.ratio().is_some() && after.ratio().is_some();
    let machine = before.machine.is_some() && after.machine.is_some();
    if ratio && (before.paired && after.paired || !machine) {
        "ratio"
    } else if machine {
        "machine"
    } else {
        "time"
    }
}

/// A row's figure for the gate on `basis` ([`basis`]), with its interval.
fn estimate(r: &Row, basis: &str) -> Estimate {
    match basis {
        "ratio" => Estimate {
            value: r.ratio().unwrap_or(0.0),
            interval: r.ratio_ci,
        },
        "machine" => Estimate {
            value: r.machine.unwrap_or(0.0),
            interval: r.machine_ci,
        },
        _ => Estimate {
            value: r.median_ns,
            interval: r.median_ci,
        },
    }
}

/// Compares two runs row by row on ratios to same-run baselines or on
/// machine units, where both runs have them, else on median time
/// ([`basis`]): a figure relative to something measured beside it holds
/// where absolute times move with the machine. Each change gets its
/// bounds from both runs' intervals ([`stats::change_interval`]). A row is
/// within `max_regression_pct` when the change's one-sided upper bound at
/// [`FAMILY_CONFIDENCE`] lies at or below it, or its interval at the
/// corrected confidence below is no wider than it: the run passes only when
/// every row is within, and such a pass, made of tests each at
/// [`FAMILY_CONFIDENCE`], wrongly passes a regression with a chance of at
/// most 5% without a correction (an intersection-union test, as
/// bioequivalence's two one-sided tests are; a row within by the second
/// rule is known to within the threshold, and may lie that much above
/// it). A row regressed when the
/// change's one-sided lower bound lies above the threshold at the
/// confidence that holds for all the rows together with
/// [`FAMILY_CONFIDENCE`] (Bonferroni over the rows compared): a regression
/// is claimed of one row, and with many rows one would be by chance; a
/// figure taken at full speed regressed only when its figure over every
/// sample ([`Row::ratio_all`], [`Row::machine_all`]) did too, where both
/// runs have it ([`Comparison::full_speed_only`]). Else it is not judged
/// ([`Comparison::too_noisy`]). A figure without an
/// interval (an older file, a count) is taken as exact. A row either run
/// marks [`Row::baseline_only`] is shown and not judged, nor counted in the
/// correction.
pub fn gate(before: &[Row], after: &[Row], max_regression_pct: f64) -> Vec<Comparison> {
    let pairs: Vec<(&Row, &Row)> = after
        .iter()
        .filter_map(|a| Some((find(before, &a.benchmark, &a.parameter)?, a)))
        .collect();
    let judged = pairs
        .iter()
        .filter(|(b, a)| !(a.baseline_only || b.baseline_only))
        .count();
    let confidence = stats::bonferroni(FAMILY_CONFIDENCE, judged);
    let z_regressed = stats::normal_quantile(confidence);
    let z_within = stats::normal_quantile(FAMILY_CONFIDENCE);
    let threshold = max_regression_pct.max(0.0);
    pairs
        .into_iter()
        .map(|(b, a)| {
            let on = basis(b, a);
            let (x, y) = (estimate(b, on), estimate(a, on));
            let change_pct = if x.value > 0.0 {
                (y.value - x.value) / x.value * 100.0
            } else {
                0.0
            };
            let pct = |r: f64| (r - 1.0) * 100.0;
            let (lo, hi) = stats::change_interval(&x, &y, z_within);
            let interval_pct = (pct(lo), pct(hi));
            let (lo, hi) = stats::change_interval(&x, &y, z_regressed);
            let corrected_pct = (pct(lo), pct(hi));
            let all = |r: &Row| match on {
                "ratio" => r.ratio_all,
                "machine" => r.machine_all,
                _ => None,
            };
            let all_pct = all(b).zip(all(a)).map(|(x, y)| {
                let (lo, hi) = stats::change_interval(&x, &y, z_regressed);
                (pct(lo), pct(hi))
            });
            let baseline_only = a.baseline_only || b.baseline_only;
            let above = !baseline_only && corrected_pct.0 > threshold;
            let regressed = above && all_pct.is_none_or(|(lo, _)| lo > threshold);
            let full_speed_only = above && !regressed;
            // A NaN width (no figure) is not judged either. An upper bound
            // at or below the threshold answers the gate's question (no
            // regression beyond it) however wide the interval is.
            let judgeable =
                corrected_pct.1 - corrected_pct.0 <= threshold || interval_pct.1 <= threshold;
            // A row regressed at full speed only is judged on its figure
            // over every sample: that interval's width at the within
            // confidence.
            let width = match all_pct.filter(|_| full_speed_only) {
                Some((lo, hi)) => (hi - lo) * z_within / z_regressed,
                None => interval_pct.1 - interval_pct.0,
            };
            let too_noisy = !baseline_only && !regressed && (full_speed_only || !judgeable);
            let samples = a.samples.max(b.samples).max(1);
            let rounds = a.round_medians.len().max(b.round_medians.len()).max(1);
            // How many times as many samples and rounds (capped: a figure
            // without an interval at all advises nothing sensible).
            let factor = if too_noisy {
                if width.is_finite() && threshold > 0.0 {
                    (width / threshold).powi(2).min(1e6)
                } else {
                    1e6
                }
            } else {
                1.0
            };
            let samples_needed = (samples as f64 * factor).ceil() as usize;
            let rounds_needed = (rounds as f64 * factor).ceil() as usize;
            Comparison {
                name: format!("{}/{}", a.benchmark, a.parameter),
                compared: on,
                before: x.value,
                after: y.value,
                change_pct,
                interval_pct,
                corrected_pct,
                all_pct,
                confidence,
                regressed,
                full_speed_only,
                too_noisy,
                samples_needed,
                rounds_needed,
                baseline_exact: x.interval.is_none(),
                current_exact: y.interval.is_none(),
                baseline_only,
            }
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

/// What `refit-harness gate` prints and how it exits.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct GateReport {
    /// The table and its summary lines (standard output).
    pub table: String,
    /// The error line, if any (standard error).
    pub error: Option<String>,
    /// 0: every row judged and none regressed; 1: a row regressed (however
    /// many others could not be judged); 2: none regressed but some could
    /// not be judged.
    pub exit: u8,
}

/// The gate's table of `rows` (from [`gate`]) against `max_regression_pct`,
/// its summary and its exit code.
pub fn report(rows: &[Comparison], max_regression_pct: f64) -> GateReport {
    use std::fmt::Write as _;
    let t = max_regression_pct;
    let width = rows.iter().map(|c| c.name.len()).max().unwrap_or(9).max(9);
    let confidence = rows.first().map_or(FAMILY_CONFIDENCE, |c| c.confidence);
    let mut out = String::new();
    let _ = writeln!(
        out,
        "{:width$} {:>7} {:>12} {:>12} {:>8}  {:>18}  verdict",
        "benchmark",
        "on",
        "baseline",
        "current",
        "change",
        format!("interval @{:.0}%", INTERVAL_CONFIDENCE * 100.0),
    );
    // Ratios as `1.234x`, machine units as `1.234 u`, times in their unit.
    let value = |c: &Comparison, v: f64| {
        if c.compared == "ratio" {
            format!("{v:.4}x")
        } else if c.compared == "machine" {
            format!("{v:.4} u")
        } else if c.name.contains("instructions") {
            format!("{v:.0} instr")
        } else {
            super::summary::human(v)
        }
    };
    for c in rows {
        let _ = writeln!(
            out,
            "{:width$} {:>7} {:>12} {:>12} {:>+7.1}%  {:>18}  {}",
            c.name,
            c.compared,
            value(c, c.before),
            value(c, c.after),
            c.change_pct,
            format!("[{:+.1}%, {:+.1}%]", c.interval_pct.0, c.interval_pct.1),
            if c.regressed {
                format!("REGRESSED (>= {:+.1}%)", c.corrected_pct.0)
            } else if c.full_speed_only {
                format!(
                    "TOO NOISY (>= {:+.1}% at full speed, {:+.1}% over all)",
                    c.corrected_pct.0,
                    c.all_pct.map_or(f64::NAN, |p| p.0)
                )
            } else if c.too_noisy {
                "TOO NOISY".into()
            } else if c.baseline_only {
                "(baseline)".into()
            } else {
                "ok".into()
            }
        );
    }
    let bad: Vec<&str> = rows
        .iter()
        .filter(|c| c.regressed)
        .map(|c| c.name.as_str())
        .collect();
    let noisy: Vec<&Comparison> = rows.iter().filter(|c| c.too_noisy).collect();
    let baselines = rows.iter().filter(|c| c.baseline_only).count();
    let judged = rows.len() - baselines;
    let _ = writeln!(
        out,
        "{} regressed beyond {t}% (lower bound above it), {} within, {} too noisy to judge (interval reaching above {t}%, too wide to tell){}",
        bad.len(),
        judged - bad.len() - noisy.len(),
        noisy.len(),
        if baselines > 0 {
            format!("; {baselines} baselines of the machine or the harness shown, not judged")
        } else {
            String::new()
        }
    );
    let family = FAMILY_CONFIDENCE * 100.0;
    let _ = writeln!(
        out,
        "within: the interval's upper end (a one-sided {family:.0}% bound) at or below {t}%, or the change's bounds at {:.2}% no more than {t}% apart; the run passes when every row is within, which holds at {family:.0}% with no correction",
        confidence * 100.0,
    );
    let _ = writeln!(
        out,
        "regressed: the change's lower bound at {:.2}% (one-sided) above {t}% (shown in the verdict), so that all {judged} rows hold together at {family:.0}% (Bonferroni): over the samples at full speed and, where both runs have it, over all of them",
        confidence * 100.0,
    );
    let exact_before = rows.iter().filter(|c| c.baseline_exact).count();
    let exact_after = rows.iter().filter(|c| c.current_exact).count();
    if exact_before > 0 {
        let _ = writeln!(
            out,
            "note: {exact_before} of the baseline's figures carry no confidence interval (a bench.csv from before intervals were kept, or exact counts): judged as exact, against the current run's interval alone"
        );
    }
    if exact_after > 0 {
        let _ = writeln!(
            out,
            "note: {exact_after} of the current run's figures carry no confidence interval: judged as exact"
        );
    }
    if !bad.is_empty() {
        let more = if noisy.is_empty() {
            String::new()
        } else {
            format!(" ({} more too noisy to judge)", noisy.len())
        };
        return GateReport {
            table: out,
            error: Some(format!(
                "{} benchmark(s) regressed beyond {t}%: {}{more}",
                bad.len(),
                bad.join(", ")
            )),
            exit: 1,
        };
    }
    if let Some(worst) = noisy.iter().max_by_key(|c| c.samples_needed) {
        return GateReport {
            table: out,
            error: Some(format!(
                "{} benchmark(s) could not be judged: the interval of their change reaches above the {t}% they are held to and is too wide to tell (widest: {} at [{:+.1}%, {:+.1}%]); measure with about {} samples each in {} rounds (`bench --samples {} --rounds {}`), or gate on instruction counts (ci/instructions.sh)",
                noisy.len(),
                worst.name,
                worst.interval_pct.0,
                worst.interval_pct.1,
                worst.samples_needed,
                worst.rounds_needed,
                worst.samples_needed,
                worst.rounds_needed
            )),
            exit: 2,
        };
    }
    GateReport {
        table: out,
        error: None,
        exit: 0,
    }
}

/// `gate --criterion`'s table of criterion's change estimates (from
/// [`criterion_changes`]), its summary and its exit code: 1 when any
/// benchmark's whole interval lies above `max_regression_pct`, else 0.
pub fn criterion_report(changes: &[CriterionChange], max_regression_pct: f64) -> GateReport {
    use std::fmt::Write as _;
    let t = max_regression_pct;
    let mut out = String::new();
    let _ = writeln!(
        out,
        "{:40} {:>9} {:>22}  verdict",
        "benchmark (criterion)", "change", "interval"
    );
    for c in changes {
        let _ = writeln!(
            out,
            "{:40} {:>+8.2}% {:>22}  {}",
            c.name,
            c.change_pct,
            format!(
                "[{:+.2}%, {:+.2}%] @{:.0}%",
                c.interval_pct.0,
                c.interval_pct.1,
                c.confidence * 100.0
            ),
            if c.regressed { "REGRESSED" } else { "ok" }
        );
    }
    let bad: Vec<&str> = changes
        .iter()
        .filter(|c| c.regressed)
        .map(|c| c.name.as_str())
        .collect();
    let _ = writeln!(
        out,
        "{} regressed (whole interval above {t}%), {} not",
        bad.len(),
        changes.len() - bad.len()
    );
    GateReport {
        table: out,
        error: (!bad.is_empty()).then(|| {
            format!(
                "{} benchmark(s) regressed beyond {t}%: {}",
                bad.len(),
                bad.join(", ")
            )
        }),
        exit: u8::from(!bad.is_empty()),
    }
}

#[cfg(test)]
mod tests {
    //! The gate's decisions on figures with given intervals.

    use super::*;

    /// A timed row `name` at `value` ns with the 95% interval `ci`.
    fn row(name: &str, value: f64, ci: Option<(f64, f64)>) -> Row {
        Row {
            benchmark: "b".into(),
            parameter: name.into(),
            median_ns: value,
            median_ci: ci,
            ..Row::default()
        }
    }

    /// Twenty rows, the first three as given and the rest unchanged, at
    /// 100 ns exactly before; the first three's verdicts.
    fn judge(rows: [(f64, (f64, f64)); 3]) -> Vec<Comparison> {
        let before: Vec<Row> = (0..20).map(|i| row(&i.to_string(), 100.0, None)).collect();
        let mut after = before.clone();
        for (r, (value, ci)) in after.iter_mut().zip(rows) {
            r.median_ns = value;
            r.median_ci = Some(ci);
        }
        gate(&before, &after, 10.0).into_iter().take(3).collect()
    }

    /// Each row's standard error on the log scale is ln(1.111) / 1.96 =
    /// 5.4%: its change's one-sided 95% upper bound lies 9.2% above its
    /// figure, its bounds at 99.75% (20 rows) 16.2% either side.
    #[test]
    fn a_row_is_within_on_its_own_bound_and_regressed_on_the_corrected_one() {
        let c = judge([
            (100.0, (90.0, 111.1)),
            (125.0, (112.5, 138.9)),
            (140.0, (126.0, 155.6)),
        ]);
        assert!((c[0].confidence - 0.9975).abs() < 1e-12, "{c:#?}");
        // Unchanged: within on the upper bound (+9.2%), though its
        // interval at the corrected confidence reaches +16.2%.
        assert!((c[0].interval_pct.1 - 9.2).abs() < 0.1, "{c:#?}");
        assert!(c[0].corrected_pct.1 > 16.0, "{c:#?}");
        assert!(!c[0].regressed && !c[0].too_noisy, "{c:#?}");
        // +25%: above the threshold on its upper bound, not shown above
        // it on the corrected lower bound (+7.5%): not judged.
        assert!((c[1].corrected_pct.0 - 7.5).abs() < 0.2, "{c:#?}");
        assert!(!c[1].regressed && c[1].too_noisy, "{c:#?}");
        // +40%: the corrected lower bound (+20.4%) lies above it.
        assert!(c[2].corrected_pct.0 > 20.0 && c[2].regressed, "{c:#?}");
        let report = report(&c, 10.0);
        assert_eq!(report.exit, 1, "{report:?}");
        assert!(
            report.table.contains("REGRESSED (>= +20."),
            "{}",
            report.table
        );
    }

    /// A narrow interval across the threshold is judged within: the change
    /// is known to within the threshold and not shown to exceed it.
    #[test]
    fn a_narrow_interval_across_the_threshold_is_within() {
        let c = judge([
            (111.0, (110.0, 112.0)),
            (100.0, (99.0, 101.0)),
            (100.0, (99.0, 101.0)),
        ]);
        assert!(c[0].interval_pct.1 > 10.0, "{c:#?}");
        assert!(
            c[0].corrected_pct.1 - c[0].corrected_pct.0 <= 10.0,
            "{c:#?}"
        );
        assert!(!c[0].regressed && !c[0].too_noisy, "{c:#?}");
    }
}
