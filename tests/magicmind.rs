//! The MagicMind shim (`plugins/magicmind/shim.cc`) built against the
//! stand-in SDK (`plugins/magicmind/standin/`, over the reference plugin):
//! it passes `check`, the vendor's demos run through it, and the mistakes a
//! shim can make on a device are caught.

use std::path::{Path, PathBuf};
use std::process::Command;

use refit_harness::check::{self, CheckConfig};
use refit_harness::spec::EngineSpec;

use crate::common::{failures, reference_plugin};

/// `plugins/magicmind/build.sh` into `out`, with extra compile flags.
fn build(out: &Path, flags: &str) -> PathBuf {
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("plugins/magicmind/build.sh");
    let run = Command::new("bash")
        .arg(script)
        .arg(out)
        .env("STANDIN_BACKEND", reference_plugin())
        .env("SHIM_CXXFLAGS", flags)
        .env_remove("NEUWARE_HOME")
        .output()
        .unwrap();
    assert!(
        run.status.success(),
        "build.sh: {}",
        String::from_utf8_lossy(&run.stderr)
    );
    out.join("libmagicmind_shim.so")
}

fn run(lib: &Path, scenarios: &[&str]) -> check::CheckReport {
    run_with(lib, scenarios, false)
}

/// As [`run`], each scenario in a child process of the harness, whose
/// stderr (what the stand-in SDK says about the shim's mistakes) is kept
/// for the evidence instead of reaching the test's output.
fn run_isolated(lib: &Path, scenarios: &[&str]) -> check::CheckReport {
    run_with(lib, scenarios, true)
}

fn run_with(lib: &Path, scenarios: &[&str], isolated: bool) -> check::CheckReport {
    let scratch = tempfile::tempdir().unwrap();
    let mut config = CheckConfig::with_fixtures(scratch.path()).unwrap();
    config.only = scenarios.iter().map(|s| s.to_string()).collect();
    config.stress_ms = 300;
    config.seconds = 3.0;
    let spec = EngineSpec::Plugin(lib.to_path_buf());
    if isolated {
        config.isolation = Some(check::Isolation::new(
            env!("CARGO_BIN_EXE_refit-harness"),
            spec.clone(),
        ));
    }
    check::run(&spec, &config, &mut |_| {})
}

/// The shim passes every scenario on the seed model and the fixtures (conv
/// chains, a toy ResNet and a toy transformer block) but `resources` (the stand-in's "device" memory is host memory, so a
/// refit there counts the device's copy too), and the seed's demos give
/// what the vendor's do.
#[test]
fn the_shim_passes_check_and_runs_the_vendor_demos() {
    let dir = tempfile::tempdir().unwrap();
    let lib = build(dir.path(), "");
    let all: Vec<&str> = check::scenarios()
        .iter()
        .map(|s| s.name)
        .filter(|n| *n != "resources")
        .collect();
    let r = run(&lib, &all);
    let failed = failures(&r);
    assert!(failed.is_empty(), "{failed:#?}");
    assert_eq!(r.outcomes.len(), 50, "{:#?}", r.outcomes.len());

    let harness = env!("CARGO_BIN_EXE_refit-harness");
    let engine = format!("plugin:{}", lib.display());
    let single = Command::new(harness)
        .args(["demo", "--engine", &engine, "single-thread"])
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&single.stdout);
    assert!(
        single.status.success() && text.contains("result: 0") && text.contains("result: 9"),
        "{text}"
    );
    let multi = Command::new(harness)
        .args([
            "demo",
            "--engine",
            &engine,
            "multi-thread",
            "--interval-ms",
            "30",
            "--verify",
        ])
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&multi.stdout);
    assert!(
        multi.status.success()
            && text.contains("distinct results in order: 0, 9, 18, 27, 36, 45, 54, 63, 72, 81")
            && text.contains("violations: none"),
        "{text}"
    );
}

/// A shim that copies outputs back without `cnrtQueueSync` reads the
/// device's garbage; one that calls `CreateIContext` unguarded from several
/// threads meets the stand-in's detector. `check` fails both.
#[test]
fn the_mistakes_a_shim_makes_on_a_device_are_caught() {
    let dir = tempfile::tempdir().unwrap();
    let no_sync = build(&dir.path().join("no_sync"), "-DSHIM_FAULT_NO_SYNC");
    let r = run(&no_sync, &["seed"]);
    let failed = failures(&r);
    assert!(
        failed.len() == 1 && failed[0].contains("observed [NaN]"),
        "{failed:#?}"
    );

    let no_lock = build(&dir.path().join("no_lock"), "-DSHIM_FAULT_NO_CONTEXT_LOCK");
    let r = run_isolated(&no_lock, &["stress_r4w2"]);
    let failed = failures(&r);
    assert!(
        failed.len() == 1 && failed[0].contains("IEngine::CreateIContext returned NULL"),
        "{failed:#?}"
    );
}

/// An SDK that cannot build anything (here the stand-in without its
/// backend, as a missing install or device would be) is an error, not an
/// unsupported model: `check` stops before any scenario with the SDK's
/// failure instead of skipping every model.
#[test]
fn an_sdk_that_builds_nothing_is_an_error_not_a_skip() {
    let dir = tempfile::tempdir().unwrap();
    let lib = build(dir.path(), "");
    let out = Command::new(env!("CARGO_BIN_EXE_refit-harness"))
        .args(["check", "--engine"])
        .arg(format!("plugin:{}", lib.display()))
        .args(["--scenario", "round_trip", "--report"])
        .arg(dir.path().join("report"))
        .env("MM_STANDIN_BACKEND", dir.path().join("no-such-backend.so"))
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(
        err.contains("without a reason: the SDK cannot build") && !err.contains("unsupported:"),
        "{err}"
    );
}
