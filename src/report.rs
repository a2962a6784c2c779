//! Check reports: a console table, and the same as CSV, Markdown and JUnit
//! XML in a run folder (`reports/<timestamp>/` by default).

use std::path::{Path, PathBuf};
use std::time::SystemTime;

use crate::check::{CheckReport, Verdict};
use crate::{Error, Result};

/// `reports/<UTC timestamp>` under `root`.
pub fn run_dir(root: &Path) -> PathBuf {
    let stamp = humantime::format_rfc3339_seconds(SystemTime::now())
        .to_string()
        .replace(':', "-");
    root.join(stamp)
}

fn io_err(path: &Path, error: std::io::Error) -> Error {
    Error::Io {
        op: "write",
        path: path.to_path_buf(),
        error,
    }
}

/// `text` broken at spaces into lines of at most `width` characters (a
/// longer word gets a line of its own, whole).
pub(crate) fn wrap(text: &str, width: usize) -> Vec<String> {
    let mut lines = Vec::new();
    let mut line = String::new();
    for word in text.split_whitespace() {
        if !line.is_empty() && line.chars().count() + 1 + word.chars().count() > width {
            lines.push(std::mem::take(&mut line));
        }
        if !line.is_empty() {
            line.push(' ');
        }
        line.push_str(word);
    }
    if !line.is_empty() || lines.is_empty() {
        lines.push(line);
    }
    lines
}

/// The console table: scenario, model, verdict, time, error/bound and the
/// evidence or reason, wrapped (never cut) to fit `width` columns; where
/// the columns leave too little room, the evidence goes on the lines below.
pub fn table(report: &CheckReport, width: usize) -> String {
    let mut out = String::new();
    let sw = report
        .outcomes
        .iter()
        .map(|o| o.scenario.len())
        .max()
        .unwrap_or(8)
        .max(8);
    let mw = report
        .outcomes
        .iter()
        .map(|o| o.model.len())
        .max()
        .unwrap_or(5)
        .max(5);
    let vw = report
        .outcomes
        .iter()
        .map(|o| o.verdict.label().len())
        .max()
        .unwrap_or(7)
        .max(7);
    let lead = sw + mw + vw + 9 + 9 + 10;
    let (indent, room) = if width >= lead + 40 {
        (lead, width - lead)
    } else {
        (4, width.saturating_sub(4).max(40))
    };
    let head = format!(
        "{:sw$}  {:mw$}  {:vw$}  {:>9}  {:>9}",
        "scenario", "model", "verdict", "time", "err/bound"
    );
    if indent == lead {
        out.push_str(&format!("{head}  evidence or reason\n"));
    } else {
        // Narrow: the evidence goes on the lines below each row.
        out.push_str(&format!("{head}\n{:indent$}evidence or reason\n", ""));
    }
    for o in &report.outcomes {
        let head = format!(
            "{:sw$}  {:mw$}  {:vw$}  {:>7.0}ms  {:>9}  ",
            o.scenario,
            o.model,
            o.verdict.label(),
            o.elapsed.as_secs_f64() * 1000.0,
            ratio_text(o.error_ratio),
        );
        let lines = wrap(&o.verdict.detail(), room);
        if indent == lead {
            out.push_str(&head);
            out.push_str(&lines[0]);
            out.push('\n');
            for l in &lines[1..] {
                out.push_str(&format!("{:indent$}{l}\n", ""));
            }
        } else {
            out.push_str(head.trim_end());
            out.push('\n');
            for l in &lines {
                out.push_str(&format!("{:indent$}{l}\n", ""));
            }
        }
    }
    for l in wrap(&summary_line(report), width) {
        out.push_str(&l);
        out.push('\n');
    }
    out
}

/// `0.031`, or `-` where nothing was compared with the oracle.
fn ratio_text(r: Option<f64>) -> String {
    r.map_or_else(|| "-".into(), |r| format!("{r:.3}"))
}

/// `N passed, N failed, N skipped (engine; contract; worst error/bound R)`.
pub fn summary_line(report: &CheckReport) -> String {
    let (p, f, s) = report.counts();
    format!(
        "{p} passed, {f} failed, {s} skipped ({}; {}; worst error/bound {})",
        report.engine,
        report
            .contract
            .map_or_else(|| "contract unknown".to_string(), |c| c.to_string()),
        ratio_text(report.worst_error_ratio())
    )
}

/// Writes `check.csv`, `check.md` and `check.junit.xml` into `dir`
/// (created if missing); returns their paths.
///
/// # Errors
/// [`Error::Io`] when a file cannot be written.
pub fn write(report: &CheckReport, dir: &Path) -> Result<Vec<PathBuf>> {
    std::fs::create_dir_all(dir).map_err(|e| io_err(dir, e))?;
    let csv_path = dir.join("check.csv");
    let mut w = csv::Writer::from_path(&csv_path).map_err(|e| io_err(&csv_path, e.into()))?;
    let row = |w: &mut csv::Writer<std::fs::File>, r: &[&str]| {
        w.write_record(r).map_err(|e| io_err(&csv_path, e.into()))
    };
    row(
        &mut w,
        &[
            "engine",
            "scenario",
            "model",
            "verdict",
            "millis",
            "error_ratio",
            "detail",
        ],
    )?;
    for o in &report.outcomes {
        let ms = format!("{:.3}", o.elapsed.as_secs_f64() * 1000.0);
        let ratio = o
            .error_ratio
            .map_or_else(String::new, |r| format!("{r:.6}"));
        row(
            &mut w,
            &[
                &report.engine,
                o.scenario,
                &o.model,
                o.verdict.label(),
                &ms,
                &ratio,
                &o.verdict.detail(),
            ],
        )?;
    }
    w.flush().map_err(|e| io_err(&csv_path, e))?;

    let md_path = dir.join("check.md");
    let (p, f, s) = report.counts();
    let mut md = format!(
        "# refit-harness check: {}\n\nContract declared: {}\n\n{p} passed, {f} failed, {s} skipped. Worst observed error / allowed error: {}.\n\n| scenario | model | verdict | time (ms) | error / bound | evidence or reason |\n|---|---|---|---:|---:|---|\n",
        report.engine,
        report.contract.map_or_else(|| "unknown (the engine could not be opened)".to_string(), |c| c.to_string()),
        ratio_text(report.worst_error_ratio()),
    );
    for o in &report.outcomes {
        md.push_str(&format!(
            "| {} | {} | {} | {:.1} | {} | {} |\n",
            o.scenario,
            o.model,
            o.verdict.label(),
            o.elapsed.as_secs_f64() * 1000.0,
            ratio_text(o.error_ratio),
            o.verdict.detail().replace('|', "\\|").replace('\n', " ")
        ));
    }
    // The stress scenarios' timelines, drawn into this folder as they ran.
    let mut timelines: Vec<String> = std::fs::read_dir(dir)
        .map(|d| {
            d.filter_map(|e| e.ok())
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .filter(|n| n.starts_with("timeline_") && n.ends_with(".svg"))
                .collect()
        })
        .unwrap_or_default();
    timelines.sort();
    if !timelines.is_empty() {
        md.push_str("\n## Stress timelines\n\nEach reader's observed version over time, refits as bands, torn and stale reads as red crosses.\n\n");
        for t in &timelines {
            md.push_str(&format!("![{t}]({t})\n\n"));
        }
    }
    std::fs::write(&md_path, md).map_err(|e| io_err(&md_path, e))?;

    let xml_path = dir.join("check.junit.xml");
    let xml = junit(report).map_err(|e| io_err(&xml_path, std::io::Error::other(e.to_string())))?;
    std::fs::write(&xml_path, xml).map_err(|e| io_err(&xml_path, e))?;
    Ok(vec![csv_path, md_path, xml_path])
}

/// The report as JUnit XML: one test suite per engine, one test case per
/// scenario and model.
///
/// # Errors
/// When serialisation fails.
pub fn junit(report: &CheckReport) -> std::result::Result<String, quick_junit::SerializeError> {
    use quick_junit::{NonSuccessKind, Report, TestCase, TestCaseStatus, TestSuite};
    let mut suite = TestSuite::new(format!("refit-harness check {}", report.engine));
    for o in &report.outcomes {
        let status = match &o.verdict {
            Verdict::Pass(_) => TestCaseStatus::success(),
            Verdict::Fail(_) | Verdict::Inconclusive(_) => {
                let mut s = TestCaseStatus::non_success(NonSuccessKind::Failure);
                s.set_message(o.verdict.detail());
                s
            }
            Verdict::Crashed(_) | Verdict::Hung(_) => {
                let mut s = TestCaseStatus::non_success(NonSuccessKind::Error);
                s.set_message(o.verdict.detail());
                s
            }
            Verdict::Skip(reason) => {
                let mut s = TestCaseStatus::skipped();
                s.set_message(reason.clone());
                s
            }
        };
        let mut case = TestCase::new(
            format!("{}/{}/{}", report.engine, o.scenario, o.model),
            status,
        );
        case.set_time(o.elapsed);
        suite.add_test_case(case);
    }
    let mut r = Report::new("refit-harness");
    r.add_test_suite(suite);
    r.to_string()
}
