//! The self-test's verdict: every seeded defect caught by at least one
//! scenario, and the correct engines passing everything; and the faults
//! only a real plugin or a sanitizer shows ([`faults`]).

use std::path::Path;

use crate::check::sanitizer::Sanitizer;
use crate::check::{scenarios, CheckReport, Verdict};
use crate::{faulty_plugins, report};

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

impl Matrix {
    /// Adds the lines of [`faults`] to both texts, and their verdict.
    pub fn add_faults(&mut self, faults: &Faults) {
        let lines = faults.lines.join("\n");
        self.ok &= faults.ok;
        self.text.push_str(&(lines.clone() + "\n"));
        self.markdown.push_str(&format!("\n```\n{lines}\n```\n"));
    }
}

/// What [`faults`] found: one line (or several, wrapped) per fault, under
/// a heading per kind, and whether every fault tried was caught.
#[derive(Clone, Debug, Default)]
pub struct Faults {
    /// The lines, as printed.
    pub lines: Vec<String>,
    /// Every fault tried was caught (a fault skipped for want of a
    /// compiler or a sanitizer runtime does not count against it).
    pub ok: bool,
}

impl Faults {
    /// One fault's line, wrapped to the console: `label caught: how` or
    /// `label MISSED: how`.
    fn verdict(&mut self, label: &str, caught: bool, how: &str) {
        self.ok &= caught;
        let word = if caught { "caught" } else { "MISSED" };
        for (i, l) in report::wrap(&format!("{label} {word}: {how}"), 114)
            .into_iter()
            .enumerate()
        {
            self.lines
                .push(format!("{}{l}", if i == 0 { "  " } else { "      " }));
        }
    }
}

/// The faults of real plugins, each run under the harness (`harness`, this
/// program, for the child processes) with `scratch` for the libraries it
/// builds: the plugin faults of `plugins/faulty.c`, the caller-buffer
/// faults of `plugins/example.c`, both built with `cc`, and the races and
/// memory errors a sanitizer's runtime catches. A fault whose compiler or
/// runtime is missing is listed as skipped, with the reason.
pub fn faults(scratch: &Path, harness: &Path) -> Faults {
    let mut f = Faults {
        lines: vec!["plugin faults (plugins/faulty.c, built with cc):".to_string()],
        ok: true,
    };
    for fault in faulty_plugins::FAULTS {
        let label = format!("{:22}", fault.to_lowercase());
        match faulty_plugins::build(fault, &scratch.join("c-plugins")) {
            Ok(lib) => {
                let (caught, how) = faulty_plugins::verdict(fault, &lib, scratch, harness);
                f.verdict(&label, caught, &how);
            }
            Err(e) => f.lines.push(format!("  {label} skipped: {e}")),
        }
    }
    f.lines
        .push("caller buffers (plugins/example.c, built with cc; on conv_depthwise):".to_string());
    for (fault, _, _) in faulty_plugins::BUFFER_FAULTS {
        let (caught, how) = faulty_plugins::buffer_verdict(fault, scratch, harness);
        f.verdict(&format!("{:22}", fault.to_lowercase()), caught, &how);
    }
    f.lines
        .push("sanitizers (their runtime preloaded into the checks' children):".to_string());
    for sanitizer in [Sanitizer::Thread, Sanitizer::Address] {
        let (_, fault, _) = faulty_plugins::sanitizer_defect(sanitizer);
        let label = format!("{} {}", sanitizer.name(), fault.to_lowercase());
        if let Err(e) = sanitizer.runtime() {
            f.lines.push(format!("  {label} skipped: {e}"));
            continue;
        }
        let (caught, how) = faulty_plugins::sanitizer_verdict(sanitizer, scratch, harness);
        f.verdict(&label, caught, &how);
    }
    f
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

/// A scenario's column name in the console matrix ([`crate::check::Scenario::short`]).
fn abbreviate(name: &str) -> String {
    scenarios()
        .iter()
        .find(|s| s.name == name)
        .map_or_else(|| name.chars().take(4).collect(), |s| s.short.to_string())
}
