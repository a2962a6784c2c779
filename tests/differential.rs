//! The engine as its own oracle: `warm_equals_cold` and
//! `history_independence` pass on correct engines of other make and fail,
//! explained, on engines that cache results, drift, read the caller's
//! buffer after the call or skip a buffer address seen before.

use refit_harness::check::{self, CheckConfig, CheckReport};
use refit_harness::spec::EngineSpec;

use crate::common::{example_plugin, failures, fixture, reference_plugin};
use crate::new_user::this_binary;

const DIFFERENTIAL: [&str; 2] = ["warm_equals_cold", "history_independence"];

fn run(spec: &EngineSpec, models: &[&str]) -> CheckReport {
    let scratch = tempfile::tempdir().unwrap();
    let mut c = CheckConfig::with_fixtures(scratch.path()).unwrap();
    c.only = DIFFERENTIAL.map(String::from).to_vec();
    if !models.is_empty() {
        c.models = models.iter().map(|m| fixture(m)).collect();
    }
    check::run(spec, &c, &mut |_| {})
}

/// The reference engine, the same through the C ABI, and the example
/// plugin written in C pass on every fixture their op sets cover.
#[test]
fn correct_engines_equal_their_fresh_builds() {
    for spec in [
        EngineSpec::Reference,
        EngineSpec::Plugin(reference_plugin()),
        EngineSpec::Plugin(example_plugin("NONE")),
    ] {
        let r = run(&spec, &[]);
        assert!(failures(&r).is_empty(), "{spec}: {:#?}", failures(&r));
        let passed = r.counts().0;
        assert!(passed >= 8, "{spec}: {:#?}", r.outcomes);
    }
}

/// A result cache and a drift per refit are caught without any oracle,
/// by `check` and by the suite a vendor runs.
#[test]
fn a_result_cache_and_drift_are_caught() {
    for (defect, scenario, words) in [
        ("cached_result", "warm_equals_cold", "the fresh build's"),
        ("drifts", "history_independence", "cycle 1: infer back at A"),
    ] {
        let spec: EngineSpec = format!("defect:{defect}").parse().unwrap();
        let r = run(&spec, &["conv_depthwise.onnx"]);
        let f = failures(&r);
        assert!(
            f.iter()
                .any(|l| l.starts_with(scenario) && l.contains(words)),
            "{defect}: {f:#?}"
        );
        let engine = format!("defect:{defect}");
        let (ok, out) = this_binary(
            &format!("check::under_test::{scenario}"),
            &[("REFIT_ENGINE", engine.as_str())],
        );
        assert!(!ok && out.contains(words), "{defect}: {out}");
    }
}

/// Plugins that misuse the caller's staging buffers, each caught by the
/// scenario that uses the buffers that way, naming what happened.
#[test]
fn buffer_misuse_is_caught_and_named() {
    let scratch = tempfile::tempdir().unwrap();
    let harness = std::path::Path::new(env!("CARGO_BIN_EXE_refit-harness"));
    for (fault, scenario, _) in refit_harness::faulty_plugins::BUFFER_FAULTS {
        let (caught, how) =
            refit_harness::faulty_plugins::buffer_verdict(fault, scratch.path(), harness);
        assert!(caught, "{fault}: {how}");
        assert!(
            how.starts_with(&format!("FAIL by {scenario}")),
            "{fault}: {how}"
        );
    }
    // Through the suite a vendor runs.
    for (fault, scenario, words) in refit_harness::faulty_plugins::BUFFER_FAULTS {
        let engine = format!("plugin:{}", example_plugin(fault).display());
        let (ok, out) = this_binary(
            &format!("check::under_test::{scenario}"),
            &[("REFIT_ENGINE", engine.as_str())],
        );
        assert!(!ok && out.contains(words), "{fault}: {out}");
    }
    // The same builds through `check`: the poison shows up only where the
    // harness poisons, and the address reuse only where it reuses.
    let lib = example_plugin("SKIPS_SEEN_ADDRESS");
    let r = run(&EngineSpec::Plugin(lib), &["conv_depthwise.onnx"]);
    let f = failures(&r);
    assert_eq!(f.len(), 1, "{f:#?}");
    assert!(
        f[0].contains("observed = a fresh build with every weight still at B"),
        "{f:#?}"
    );
}
