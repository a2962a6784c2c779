//! The plugin ABI end to end: the reference plugin (this crate's cdylib)
//! and faulty plugins in C (`plugins/faulty.c`), all built by the tests.

use rstest::rstest;

use refit_harness::engine::{refit_all, BuildOptions, EngineSpec};
use refit_harness::ffi::{LoadError, Plugin};
use refit_harness::{Error, Tensor};

use crate::common::{c_plugin, fixture, reference_plugin};

fn load_error(fault: &str) -> LoadError {
    match Plugin::load(&c_plugin(fault)) {
        Err(Error::PluginLoad(e)) => *e,
        Err(other) => panic!("FAULT_{fault}: expected a load error, got {other}"),
        Ok(_) => panic!("FAULT_{fault}: the plugin loaded"),
    }
}

#[test]
fn each_load_failure_has_its_own_error_with_the_path() {
    let e = load_error("WRONG_VERSION");
    assert!(
        matches!(e, LoadError::UnsupportedVersion { requested: 1, .. }),
        "{e}"
    );
    let e = load_error("NO_ENTRY_POINT");
    assert!(
        matches!(e, LoadError::MissingEntryPoint { .. })
            && e.to_string().contains("refit_plugin_get_api"),
        "{e}"
    );
    let e = load_error("NULL_SLOT");
    assert!(
        matches!(e, LoadError::NullSlot { slot: "infer", .. }),
        "{e}"
    );
    assert!(e.to_string().contains("libfault_null_slot"), "{e}");
    let missing = std::path::Path::new("/nonexistent/libshim.so");
    match Plugin::load(missing) {
        Err(Error::PluginLoad(e)) => assert!(
            matches!(*e, LoadError::Open { .. })
                && e.to_string().contains("/nonexistent/libshim.so"),
            "{e}"
        ),
        other => panic!("expected an open error, got {:?}", other.err()),
    }
}

#[test]
fn a_failure_without_a_message_is_reported_as_such() {
    let engine = EngineSpec::Plugin(c_plugin("NO_MESSAGE"))
        .open(&fixture("seed_conv.onnx"), &BuildOptions::default())
        .unwrap();
    let err = refit_all(engine.as_ref(), [("weight", &Tensor::full([10], 1.0))])
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("refitter_set_named_weights failed (status 4)")
            && err.contains("failed without a message"),
        "{err}"
    );
}

#[test]
fn an_independent_c_engine_passes_the_seed_scenario_and_garbage_is_caught() {
    let run = |fault: &str| {
        let dir = tempfile::tempdir().unwrap();
        let mut config = refit_harness::check::CheckConfig::with_fixtures(dir.path()).unwrap();
        config.only = vec!["seed".into(), "stress_vendor".into()];
        config.stress_ms = 200;
        refit_harness::check::run(&EngineSpec::Plugin(c_plugin(fault)), &config, &mut |_| {})
    };
    let good = run("NONE");
    assert!(!good.failed(), "{:?}", good.outcomes);
    let bad = run("GARBAGE_AFTER_REFIT");
    let seed = bad.outcomes.iter().find(|o| o.scenario == "seed").unwrap();
    assert!(
        seed.verdict.is_fail() && seed.verdict.detail().contains("observed [12345.0]"),
        "{}",
        seed.verdict.detail()
    );
}

#[test]
fn the_reference_plugin_serves_what_the_reference_engine_serves() {
    let plugin = EngineSpec::Plugin(reference_plugin());
    let engine = plugin
        .open(&fixture("conv_stack.onnx"), &BuildOptions::default())
        .unwrap();
    assert!(
        engine.info().name.starts_with("plugin:"),
        "{}",
        engine.info().name
    );
    assert_eq!(engine.weights().len(), 5);
    let x = refit_harness::io::read_npy(&fixture("pytorch/stack_input.npy")).unwrap();
    let torch = EngineSpec::Plugin(reference_plugin())
        .open(
            &fixture("pytorch/stack_dynamo.onnx"),
            &BuildOptions::default(),
        )
        .unwrap();
    let y = torch.context().unwrap().infer(&[x]).unwrap();
    assert_eq!(
        y[0],
        refit_harness::io::read_npy(&fixture("pytorch/stack_expected.npy")).unwrap()
    );
    // Errors come back with the plugin's own message.
    let err = refit_all(engine.as_ref(), [("conv1.bias", &Tensor::full([15], 1.0))])
        .unwrap_err()
        .to_string();
    assert!(
        err.contains(
            "weight 'conv1.bias': expected shape [16] (16 values), found [15] (15 values)"
        ),
        "{err}"
    );
    let plain = plugin
        .open(
            &fixture("seed_conv.onnx"),
            &BuildOptions {
                enable_refit: false,
            },
        )
        .unwrap();
    assert!(plain
        .refitter()
        .err()
        .unwrap()
        .to_string()
        .contains("enable_refit"));
}

#[test]
fn contexts_keep_the_library_and_engine_alive() {
    let engine = EngineSpec::Plugin(reference_plugin())
        .open(&fixture("seed_conv.onnx"), &BuildOptions::default())
        .unwrap();
    let mut ctx = engine.context().unwrap();
    let mut refitter = engine.refitter().unwrap();
    drop(engine);
    refitter
        .set_named_weights("weight", &Tensor::full([1, 1, 3, 3], 2.0))
        .unwrap();
    refitter.refit().unwrap();
    assert_eq!(
        ctx.infer(&[Tensor::full([1, 1, 3, 3], 1.0)]).unwrap()[0].as_f32(),
        Some(&[18.0][..])
    );
}

#[rstest]
#[case::missing_library(
    "plugin:/nonexistent/libvendor.so",
    "cannot open plugin /nonexistent/libvendor.so"
)]
#[case::empty_path("plugin:", "unknown engine 'plugin:'")]
fn a_named_plugin_that_cannot_load_is_a_clear_failure(#[case] spec: &str, #[case] needle: &str) {
    let err = spec
        .parse::<EngineSpec>()
        .and_then(|s| s.open(&fixture("seed_conv.onnx"), &BuildOptions::default()))
        .err()
        .expect("must fail")
        .to_string();
    assert!(err.contains(needle), "{err}");
}
