//! What a new user meets: no silent green (a suite that names no engine
//! fails, saying how to name one), evidence that outlives a failing test,
//! mismatches explained by the weight a refit missed, honest ratios, and
//! output that fits the screen.

use std::path::Path;
use std::process::Command;

use refit_harness::check::{self, CheckConfig, CheckReport, Verdict};
use refit_harness::spec::EngineSpec;

use crate::common::example_plugin;

/// Runs this test binary on one test, with `env` set and `REFIT_ENGINE`
/// removed unless `env` sets it: (passed, stdout + stderr).
pub(crate) fn this_binary(test: &str, env: &[(&str, &str)]) -> (bool, String) {
    let mut cmd = Command::new(std::env::current_exe().unwrap());
    cmd.args([test, "--exact", "--test-threads", "1", "--nocapture"])
        .env_remove("REFIT_ENGINE");
    for (k, v) in env {
        cmd.env(k, v);
    }
    let out = cmd.output().unwrap();
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr),
    )
}

/// The suite as a vendor's `tests/refit.rs` builds it, `Suite::from_env()`,
/// when `REFIT_PROBE_FROM_ENV` is set (by the test below); otherwise every
/// scenario is left out, so these tests pass without running anything.
mod probe {
    use refit_harness::suite::Suite;

    fn suite() -> Suite {
        if std::env::var_os("REFIT_PROBE_FROM_ENV").is_some() {
            Suite::from_env()
        } else {
            Suite::spec("reference").skip(refit_harness::check::scenarios().iter().map(|s| s.name))
        }
    }

    refit_harness::conformance_suite!(suite());
}

#[test]
fn a_suite_that_names_no_engine_fails_saying_how_to_name_one() {
    let (ok, out) = this_binary("new_user::probe::seed", &[("REFIT_PROBE_FROM_ENV", "1")]);
    assert!(!ok, "Suite::from_env() without REFIT_ENGINE passed:\n{out}");
    assert!(
        out.contains("REFIT_ENGINE is not set")
            && out.contains("REFIT_ENGINE=plugin:/path/to/libmy_shim.so")
            && out.contains("REFIT_ENGINE=reference"),
        "{out}"
    );
    // Named, it runs, and every line of its output names the engine.
    let (ok, out) = this_binary(
        "new_user::probe::seed",
        &[("REFIT_PROBE_FROM_ENV", "1"), ("REFIT_ENGINE", "reference")],
    );
    assert!(ok, "{out}");
    assert!(out.contains("seed - on reference: pass"), "{out}");
}

/// A failing `model_based` in `cargo test` keeps its case in a file that
/// outlives the test, says how to replay it from the same crate, and
/// prints the minimal case as operations with the weight the engine missed.
#[test]
fn a_failing_property_test_keeps_its_case_and_explains_it() {
    let dir = tempfile::tempdir().unwrap();
    let saved = dir.path().join("kept").join("model_based.txt");
    let env = [
        ("REFIT_ENGINE", "defect:never_published"),
        ("REFIT_REGRESSIONS", saved.to_str().unwrap()),
        ("PROPTEST_CASES", "32"),
    ];
    let (ok, out) = this_binary("check::under_test::model_based", &env);
    assert!(!ok, "model_based passed on never_published:\n{out}");
    assert!(
        out.contains(&format!("the failing case is saved in {}", saved.display()))
            && out.contains("every later run of this test replays it first"),
        "{out}"
    );
    let kept = std::fs::read_to_string(&saved).unwrap_or_default();
    assert!(
        kept.contains("cc "),
        "no seed kept in {}: {kept:?}",
        saved.display()
    );
    assert!(out.contains("minimal failing case: input ["), "{out}");
    assert!(
        out.contains("; then ") && out.contains("(inferring after every step)"),
        "{out}"
    );
    assert!(!out.contains("Stage {"), "Rust debug output: {out}");
    assert!(
        out.contains("observed = the expected output with '") && out.contains("still at version"),
        "{out}"
    );
    // The next run replays the kept case first: it fails again at once.
    let (ok, again) = this_binary("check::under_test::model_based", &env);
    assert!(!ok, "{again}");
}

fn run(spec: &EngineSpec, only: &[&str], models: &[&Path]) -> CheckReport {
    let scratch = tempfile::tempdir().unwrap();
    let mut c = CheckConfig::with_fixtures(scratch.path()).unwrap();
    c.only = only.iter().map(|s| s.to_string()).collect();
    if !models.is_empty() {
        c.models = models.iter().map(|m| m.to_path_buf()).collect();
    }
    c.stress_ms = 200;
    check::run(spec, &c, &mut |_| {})
}

fn detail(r: &CheckReport, scenario: &str) -> String {
    r.outcomes
        .iter()
        .find(|o| o.scenario == scenario)
        .map(|o| format!("{}: {}", o.verdict.label(), o.verdict.detail()))
        .unwrap_or_default()
}

/// Planted bugs: a bias never refitted, weights applied late, a context's
/// cached copy. Each failure says which weight version the engine served;
/// each failed exact expectation counts as an infinite error / bound.
#[test]
fn value_mismatches_name_the_weight_a_refit_missed() {
    let dw = crate::common::fixture("conv_depthwise.onnx");
    // The last initializer's name is ignored: conv_depthwise's bias.
    let r = run(
        &"defect:ignores_name".parse().unwrap(),
        &["round_trip"],
        &[&dw],
    );
    let d = detail(&r, "round_trip");
    assert!(
        d.starts_with("FAIL")
            && d.contains("observed = the expected output with 'dw.bias' still at version 0"),
        "{d}"
    );
    assert_eq!(r.outcomes[0].error_ratio, Some(f64::INFINITY));
    assert!(
        refit_harness::report::summary_line(&r).contains("worst error/bound inf"),
        "{}",
        refit_harness::report::summary_line(&r)
    );
    // Published late, or served from a context's cached snapshot: the
    // refit is not applied when the inference after it runs.
    for defect in ["delayed_publish", "cached_snapshot"] {
        let spec: EngineSpec = format!("defect:{defect}").parse().unwrap();
        let r = run(&spec, &["seed", "partial_refit"], &[&dw]);
        let seed = detail(&r, "seed");
        assert!(
            seed.starts_with("FAIL")
                && seed.contains("observed = the expected output with 'weight' still at version 0"),
            "{defect}: {seed}"
        );
        let partial = detail(&r, "partial_refit");
        assert!(
            partial.starts_with("FAIL") && partial.contains("'dw.weight' still at version 0"),
            "{defect}: {partial}"
        );
    }
    // A correct engine: nothing to explain, and a finite ratio.
    let r = run(&EngineSpec::Reference, &["round_trip", "seed"], &[&dw]);
    assert!(!r.failed(), "{:?}", r.outcomes);
    assert!(r.worst_error_ratio().is_some_and(f64::is_finite));
}

/// The same diagnosis through a plugin written in C that never refits
/// its bias (plugins/example.c built with -DFAULT_STALE_BIAS), and through
/// the suite a vendor runs.
#[test]
fn a_plugin_that_never_refits_a_bias_is_told_so() {
    let lib = example_plugin("STALE_BIAS");
    let spec = EngineSpec::Plugin(lib.clone());
    let dw = crate::common::fixture("conv_depthwise.onnx");
    let r = run(&spec, &["bad_input", "round_trip"], &[&dw]);
    for s in ["bad_input", "round_trip"] {
        let d = detail(&r, s);
        assert!(
            d.starts_with("FAIL") && d.contains("'dw.bias' still at version"),
            "{s}: {d}"
        );
    }
    let (ok, out) = this_binary(
        "check::under_test::round_trip",
        &[("REFIT_ENGINE", &format!("plugin:{}", lib.display()))],
    );
    assert!(!ok, "{out}");
    assert!(out.contains("'dw.bias' still at version"), "{out}");
    // The correct build passes.
    let good = EngineSpec::Plugin(example_plugin("NONE"));
    let r = run(&good, &["bad_input", "round_trip"], &[&dw]);
    assert!(
        r.outcomes
            .iter()
            .all(|o| matches!(o.verdict, Verdict::Pass(_))),
        "{:?}",
        r.outcomes
    );
}

/// A plugin refuses option keys it does not take, naming the key, and
/// `check` stops before any scenario with exit 2.
#[test]
fn an_option_typo_stops_the_check() {
    let lib = example_plugin("NONE");
    let out = Command::new(env!("CARGO_BIN_EXE_refit-harness"))
        .args(["check", "--engine"])
        .arg(format!("plugin:{}", lib.display()))
        .args(["--engine-options", r#"{"devcie": 1}"#, "--report"])
        .arg(tempfile::tempdir().unwrap().path())
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(err.contains("unknown option 'devcie'"), "{err}");
    assert!(!String::from_utf8_lossy(&out.stdout).contains("FAIL"));
}

/// The table and `--help` fit the terminal's width (COLUMNS here), breaking
/// between words.
#[test]
fn output_fits_the_terminal() {
    let dir = tempfile::tempdir().unwrap();
    for width in [80usize, 100] {
        let out = Command::new(env!("CARGO_BIN_EXE_refit-harness"))
            .args(["check", "--engine", "defect:ignores_name", "--scenario"])
            .args(["round_trip", "--report"])
            .arg(dir.path())
            .env("COLUMNS", width.to_string())
            .output()
            .unwrap();
        let text = String::from_utf8_lossy(&out.stdout);
        assert!(text.contains("still at version"), "{text}");
        for line in text.lines().filter(|l| !l.starts_with("wrote ")) {
            assert!(line.chars().count() <= width, "{width}: {line}");
        }
        let help = Command::new(env!("CARGO_BIN_EXE_refit-harness"))
            .args(["check", "--help"])
            .env("COLUMNS", width.to_string())
            .output()
            .unwrap();
        for line in String::from_utf8_lossy(&help.stdout).lines() {
            assert!(line.chars().count() <= width, "--help at {width}: {line}");
        }
    }
}
