//! The conformance suite from `cargo test`: every scenario on the engine
//! under test (`REFIT_ENGINE`, default reference) and on the strict and
//! quiesced references; every seeded defect caught (by `selftest`, run as a
//! child process); the reports as written.

use std::path::Path;
use std::process::Command;
use std::sync::OnceLock;

use refit_harness::check::{self, CheckConfig, CheckReport};
use refit_harness::defects::Defect;
use refit_harness::spec::EngineSpec;

/// One scratch folder with the fixture models for the whole test binary.
fn config() -> &'static CheckConfig {
    static DIR: OnceLock<(tempfile::TempDir, CheckConfig)> = OnceLock::new();
    let (_, c) = DIR.get_or_init(|| {
        let dir = tempfile::tempdir().unwrap();
        let mut c = CheckConfig::with_fixtures(dir.path()).unwrap();
        c.seconds = 30.0;
        (dir, c)
    });
    c
}

fn run(spec: &EngineSpec, only: &[&str]) -> CheckReport {
    let base = config();
    // Each run gets its own scratch for generated models and its own
    // folder for failing property-test seeds.
    let scratch = tempfile::tempdir().unwrap();
    let c = CheckConfig {
        scratch: scratch.path().to_path_buf(),
        only: only.iter().map(|s| s.to_string()).collect(),
        regressions: Some(scratch.path().join("model_based.txt")),
        ..base.clone()
    };
    check::run(spec, &c, &mut |_| {})
}

fn assert_no_failure(r: &CheckReport) {
    assert!(!r.outcomes.is_empty());
    for o in &r.outcomes {
        assert!(
            !o.verdict.is_fail(),
            "{} {} {}: {} {}",
            r.engine,
            o.scenario,
            o.model,
            o.verdict.label(),
            o.verdict.detail()
        );
    }
}

/// One `#[test]` per scenario on the engine under test (`REFIT_ENGINE`,
/// default reference), from the same macro a vendor's crate uses, each in
/// a child process; and a test that the macro's list is the library's.
mod under_test {
    refit_harness::conformance_suite!(
        refit_harness::suite::Suite::from_env_or("reference").seconds(30.0)
    );

    #[test]
    fn every_scenario_has_a_test() {
        let names: Vec<&str> = refit_harness::check::scenarios()
            .iter()
            .map(|s| s.name)
            .collect();
        assert_eq!(
            SCENARIOS, names,
            "conformance_suite! (src/suite.rs) must list every scenario of check::scenarios(), in order"
        );
    }
}

/// The strict reference (requires-all) on every scenario but resources.
#[test]
fn strict_reference_passes() {
    let spec: EngineSpec = "reference-strict".parse().unwrap();
    let only: Vec<&str> = check::scenarios()
        .iter()
        .map(|s| s.name)
        .filter(|n| *n != "resources")
        .collect();
    assert_no_failure(&run(&spec, &only));
}

fn cli(args: &[&str]) -> (i32, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_refit-harness"))
        .args(args)
        .output()
        .unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr),
    )
}

#[test]
fn check_writes_csv_markdown_and_junit() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("run");
    let (code, out) = cli(&[
        "check",
        "--engine",
        "defect:never_published",
        "--scenario",
        "seed",
        "--scenario",
        "round_trip",
        "--report",
        dir.to_str().unwrap(),
    ]);
    assert_eq!(code, 1, "a failed check exits 1: {out}");
    let mut rdr = csv::Reader::from_path(dir.join("check.csv")).unwrap();
    let headers = rdr.headers().unwrap().clone();
    assert_eq!(
        headers.iter().collect::<Vec<_>>(),
        [
            "engine",
            "scenario",
            "model",
            "verdict",
            "millis",
            "error_ratio",
            "detail"
        ]
    );
    let rows: Vec<csv::StringRecord> = rdr.records().map(Result::unwrap).collect();
    assert_eq!(rows.len(), 1 + 7, "seed once, round_trip per fixture model");
    assert!(rows.iter().all(|r| &r[0] == "defect:never_published"));
    let seed = rows.iter().find(|r| &r[1] == "seed").unwrap();
    assert_eq!(&seed[3], "FAIL");
    assert!(
        seed[6].contains("expected 9, observed [0.0]"),
        "{}",
        &seed[6]
    );
    let md = std::fs::read_to_string(dir.join("check.md")).unwrap();
    assert!(md.contains("| seed | - | FAIL |"), "{md}");
    let xml = std::fs::read_to_string(dir.join("check.junit.xml")).unwrap();
    assert!(
        xml.contains("<testsuites") && xml.contains("failures=\"8\""),
        "{xml}"
    );
    assert!(xml.contains("defect:never_published/seed/-"), "{xml}");
}

#[test]
fn check_rejects_unknown_scenarios_and_engines() {
    let (code, out) = cli(&["check", "--scenario", "nope"]);
    assert_eq!(code, 2);
    assert!(out.contains("unknown scenario 'nope'"), "{out}");
    let (code, out) = cli(&["check", "--engine", "defect:nope"]);
    assert_eq!(code, 2);
    assert!(out.contains("unknown engine 'defect:nope'"), "{out}");
    let (code, out) = cli(&["check", "--skip-scenario", "resourcez"]);
    assert_eq!(code, 2);
    assert!(
        out.contains("unknown scenario 'resourcez' in --skip-scenario"),
        "{out}"
    );
}

/// `--skip-scenario` runs every scenario asked for but the skipped ones.
#[test]
fn check_skips_the_scenarios_named() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("run");
    let (code, out) = cli(&[
        "check",
        "--scenario",
        "seed",
        "--scenario",
        "round_trip",
        "--skip-scenario",
        "round_trip",
        "--report",
        dir.to_str().unwrap(),
    ]);
    assert_eq!(code, 0, "{out}");
    assert!(
        out.contains("1 passed, 0 failed") && !out.contains("round_trip"),
        "{out}"
    );
    let (code, out) = cli(&["check", "--scenario", "seed", "--skip-scenario", "seed"]);
    assert_eq!(code, 2);
    assert!(out.contains("leaves no scenario"), "{out}");
}

/// Every user mistake exits 2 with one line before anything runs, and
/// writes no report.
#[test]
fn check_refuses_user_mistakes_before_running() {
    let tmp = tempfile::tempdir().unwrap();
    let report = tmp.path().join("report");
    let readme = Path::new(env!("CARGO_MANIFEST_DIR")).join("README.md");
    let cases: [(&[&str], &str); 11] = [
        (
            &["--model", "typo.onnx"],
            "typo.onnx: expected an ONNX model file, found no such file",
        ),
        (
            &["--model", "fixtures"],
            "expected an ONNX model file, found a folder",
        ),
        (
            &["--model", readme.to_str().unwrap()],
            "the harness's oracle cannot read it",
        ),
        (
            &["--seconds", "0"],
            "--seconds: expected a time budget above 0, found 0",
        ),
        (
            &["--seconds=-1"],
            "--seconds: expected a time budget above 0",
        ),
        (
            &["--stress-ms", "0"],
            "--stress-ms: expected a duration above 0 ms",
        ),
        (
            &["--engine", "plugin:/nonexistent.so"],
            "cannot open plugin /nonexistent.so",
        ),
        (
            &["--engine-options", "[1]"],
            "--engine-options: engine options: expected a JSON object, found an array",
        ),
        (
            &["--engine-options", "{device: 1}"],
            "--engine-options: engine options: not JSON at line 1 column 2",
        ),
        (&["--timeout", "0"], "--timeout: expected seconds above 0"),
        (
            &["--stress-ms", "-5"],
            "--stress-ms: expected a duration above 0 ms, found -5",
        ),
    ];
    for (args, message) in cases {
        let mut all = vec!["check", "--report", report.to_str().unwrap()];
        all.extend_from_slice(args);
        let (code, out) = cli(&all);
        assert_eq!(code, 2, "{args:?}: {out}");
        assert!(out.contains(message), "{args:?}: {out}");
        assert_eq!(out.trim().lines().count(), 1, "{args:?}: {out}");
        assert!(!report.exists(), "{args:?} wrote a report");
    }
}

#[test]
fn scenario_list_is_documented() {
    let doc =
        std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("src/docs/contract.rs"))
            .unwrap();
    for s in check::scenarios() {
        assert!(
            doc.contains(&format!("`{}`", s.name)),
            "src/docs/contract.rs does not describe `{}`",
            s.name
        );
    }
}

#[test]
fn selftest_catches_every_defect_and_passes_the_correct_engines() {
    let tmp = tempfile::tempdir().unwrap();
    let (code, out) = cli(&[
        "selftest",
        "--seconds",
        "5",
        "--report",
        tmp.path().to_str().unwrap(),
    ]);
    assert_eq!(code, 0, "{out}");
    // The console output fits a 120-column terminal.
    let wide: Vec<&str> = out.lines().filter(|l| l.chars().count() > 120).collect();
    assert!(wide.is_empty(), "{wide:#?}");
    // The plugins that crash or hang, each caught with its own verdict.
    for (fault, verdict) in [
        ("segv_in_infer", "CRASHED by seed"),
        ("abort_in_refit", "CRASHED by seed"),
        ("hang_in_refit", "HUNG by seed"),
        ("hang_infer_while_refit", "HUNG by stress_vendor"),
        ("reads_after_return", "FAIL by warm_equals_cold"),
        ("skips_seen_address", "FAIL by history_independence"),
        ("thread torn", "FAIL by stress_r1w1: race"),
        (
            "address use_after_free",
            "FAIL by stress_vendor: the vendor",
        ),
    ] {
        let line = out
            .lines()
            .find(|l| l.trim_start().starts_with(fault))
            .unwrap_or_else(|| panic!("no {fault} in:\n{out}"));
        assert!(line.contains(&format!("caught: {verdict}")), "{line}");
    }
    let md = std::fs::read_to_string(tmp.path().join("selftest.md")).unwrap();
    for d in Defect::ALL {
        let row = md
            .lines()
            .find(|l| l.starts_with(&format!("| defect:{d} |")))
            .unwrap_or_else(|| panic!("{md}"));
        assert!(row.contains("caught first by"), "{row}");
    }
    for e in ["reference", "reference-strict", "reference-quiesced"] {
        let row = md
            .lines()
            .find(|l| l.starts_with(&format!("| {e} |")))
            .unwrap();
        assert!(
            row.ends_with("| passes |") && !row.contains("FAIL"),
            "{row}"
        );
    }
    assert!(tmp
        .path()
        .join("defect-leaks_per_refit/check.junit.xml")
        .is_file());
}

/// `check | head -1`: a reader that closes the pipe ends only the
/// printing; the report is written and nothing panics.
#[test]
fn check_survives_a_closed_stdout() {
    let tmp = tempfile::tempdir().unwrap();
    let report = tmp.path().join("report");
    let mut child = Command::new(env!("CARGO_BIN_EXE_refit-harness"))
        .args(["check", "--scenario", "seed", "--report"])
        .arg(&report)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    drop(child.stdout.take());
    let out = child.wait_with_output().unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{err}");
    assert!(!err.contains("panicked"), "{err}");
    assert!(report.join("check.csv").is_file());
}

/// `check` draws each stress scenario's timeline into the report folder
/// and links it from check.md; a torn engine's timeline marks its torn
/// reads in red, a correct one's has no red mark but the legend's.
#[test]
fn stress_timelines_are_drawn_and_show_torn_reads_in_red() {
    let red_marks = |svg: &str| svg.matches("#FF0000").count();
    for (engine, torn) in [("reference", false), ("defect:in_place_copy", true)] {
        let tmp = tempfile::tempdir().unwrap();
        let report = tmp.path().join("report");
        let (code, out) = cli(&[
            "check",
            "--engine",
            engine,
            "--scenario",
            "stress_r4w2",
            "--stress-ms",
            "300",
            "--report",
            report.to_str().unwrap(),
        ]);
        assert_eq!(code, i32::from(torn), "{out}");
        let svg = std::fs::read_to_string(report.join("timeline_stress_r4w2.svg")).unwrap();
        let md = std::fs::read_to_string(report.join("check.md")).unwrap();
        assert!(md.contains("](timeline_stress_r4w2.svg)"), "{md}");
        if torn {
            assert!(
                red_marks(&svg) > 10,
                "{engine}: {} red marks",
                red_marks(&svg)
            );
        } else {
            assert!(
                red_marks(&svg) <= 2,
                "{engine}: {} red marks",
                red_marks(&svg)
            );
        }
    }
}
