//! The self-test's verdict: every seeded defect caught by at least one
//! scenario, and the correct engines passing everything.

use crate::check::{scenarios, CheckReport, Verdict};

/// The defect x scenario matrix, as text and Markdown, and the verdict.
#[derive(Clone, Debug)]
pub struct Matrix {
    /// For the console.
    pub text: String,
    /// For `selftest.md`.
    pub markdown: String,
    /// Whether the correct engines passed and every defect was caught.
    pub ok: bool,
}

impl Matrix {
    /// The closing line.
    pub fn verdict_line(&self) -> &'static str {
        if self.ok {
            "selftest: the correct engines pass and every defect is caught"
        } else {
            "selftest: FAILED"
        }
    }
}

/// Whether an engine name is one of the correct engines (which must pass).
fn is_correct(engine: &str) -> bool {
    !engine.starts_with("defect:")
}

/// Builds the matrix from one check report per engine.
pub fn matrix(reports: &[CheckReport]) -> Matrix {
    let names: Vec<&str> = scenarios().iter().map(|s| s.name).collect();
    let mut ok = true;
    let mut rows = Vec::new();
    for r in reports {
        let mut cells = Vec::new();
        for s in &names {
            let outs: Vec<_> = r.outcomes.iter().filter(|o| o.scenario == *s).collect();
            let failed = outs.iter().any(|o| o.verdict.is_fail());
            let all_skipped =
                !outs.is_empty() && outs.iter().all(|o| matches!(o.verdict, Verdict::Skip(_)));
            cells.push(match (is_correct(&r.engine), failed) {
                (true, true) => "FAIL",
                (true, false) if all_skipped => "skip",
                (true, false) => "pass",
                (false, true) => "caught",
                (false, false) => "-",
            });
        }
        // First catch: the scenario, and the run time up to it.
        let mut elapsed = 0.0;
        let mut first = None;
        for o in &r.outcomes {
            elapsed += o.elapsed.as_secs_f64();
            if o.verdict.is_fail() {
                first = Some(format!(
                    "{} on {} after {:.2} s",
                    o.scenario, o.model, elapsed
                ));
                break;
            }
        }
        let verdict = if is_correct(&r.engine) {
            if r.failed() {
                ok = false;
                "FAILED: a correct engine must pass".to_string()
            } else {
                "passes".to_string()
            }
        } else {
            match first {
                Some(f) => format!("caught first by {f}"),
                None => {
                    ok = false;
                    "MISSED by every scenario".to_string()
                }
            }
        };
        rows.push((r.engine.clone(), cells, verdict));
    }
    // The console matrix fits 120 columns: short column names (listed
    // above it), one-letter cells, and the first catch below the matrix.
    let ew = rows.iter().map(|r| r.0.len()).max().unwrap_or(6).max(6);
    let short: Vec<String> = names.iter().map(|n| abbreviate(n)).collect();
    let legend = format!(
        "columns: {}. Cells: P pass, S skip, F FAIL (a correct engine), X caught, . not caught.",
        names
            .iter()
            .zip(&short)
            .map(|(n, a)| format!("{a} = {n}"))
            .collect::<Vec<_>>()
            .join(", ")
    );
    let mut text = crate::report::wrap(&legend, 118).join("\n");
    text.push_str("\n\n");
    text.push_str(&format!("{:ew$}", "engine"));
    for a in &short {
        text.push_str(&format!(" {a:>4}"));
    }
    text.push_str("  verdict\n");
    let mut markdown = format!(
        "# refit-harness selftest\n\n| engine | {} | verdict |\n|---|{}---|\n",
        names.join(" | "),
        "---|".repeat(names.len())
    );
    for (engine, cells, verdict) in &rows {
        text.push_str(&format!("{engine:ew$}"));
        for c in cells {
            let letter = match *c {
                "pass" => "P",
                "skip" => "S",
                "FAIL" => "F",
                "caught" => "X",
                _ => ".",
            };
            text.push_str(&format!(" {letter:>4}"));
        }
        let brief = if let Some(rest) = verdict.strip_prefix("caught first by ") {
            format!(
                "first: {}",
                abbreviate(rest.split(' ').next().unwrap_or(""))
            )
        } else {
            verdict.clone()
        };
        text.push_str(&format!("  {brief}\n"));
        markdown.push_str(&format!(
            "| {engine} | {} | {verdict} |\n",
            cells.join(" | ")
        ));
    }
    Matrix { text, markdown, ok }
}

/// A scenario's column name in the console matrix (at most 4 characters).
fn abbreviate(name: &str) -> String {
    match name {
        "seed" => "seed",
        "refittable_parity" => "par",
        "round_trip" => "rt",
        "partial_refit" => "part",
        "bad_input" => "bad",
        "model_based" => "mb",
        "stress_r1w1" => "r1w1",
        "stress_r4w1" => "r4w1",
        "stress_r4w2" => "r4w2",
        "stress_cores_w1" => "core",
        "stress_disjoint" => "disj",
        "stress_vendor" => "vend",
        "resources" => "res",
        other => return other.chars().take(4).collect(),
    }
    .to_string()
}
