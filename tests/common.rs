//! Helpers shared by the integration tests.

use std::path::{Path, PathBuf};

use refit_harness::engine::reference::ReferenceEngine;
use refit_harness::engine::BuildOptions;
use refit_harness::model::build::ConvChain;

/// A path under the repository's `fixtures/`.
pub fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("fixtures")
        .join(name)
}

/// The reference engine over a model built in memory.
pub fn engine_of(chain: &ConvChain, options: &BuildOptions) -> ReferenceEngine {
    ReferenceEngine::from_bytes(&chain.to_bytes(), "test.onnx".as_ref(), options)
        .expect("test model loads")
}

/// Inference on one input, the first output as f32 values.
pub fn infer1(engine: &dyn refit_harness::Engine, x: &refit_harness::Tensor) -> Vec<f32> {
    let mut ctx = engine.context().expect("context");
    ctx.infer(std::slice::from_ref(x)).expect("infer")[0].to_f32_vec()
}

/// The build folder the test binary runs from (`target/`).
fn target_dir() -> PathBuf {
    let exe = std::env::current_exe().expect("test binary path");
    // target/<profile>/deps/<binary>
    exe.ancestors().nth(3).expect("target folder").to_path_buf()
}

/// The reference plugin, the `reference_plugin` example that `cargo test`
/// builds beside the tests (`target/<profile>/examples/`).
pub fn reference_plugin() -> PathBuf {
    let exe = std::env::current_exe().expect("test binary path");
    // target/<profile>/deps/<binary>
    let profile = exe.ancestors().nth(2).expect("profile folder");
    let lib = profile.join("examples").join(format!(
        "{}reference_plugin{}",
        std::env::consts::DLL_PREFIX,
        std::env::consts::DLL_SUFFIX
    ));
    assert!(
        lib.is_file(),
        "{} is missing: `cargo test` builds it; with a filter on the test targets, run `cargo build --examples` first",
        lib.display()
    );
    lib
}

/// `plugins/faulty.c` built with `-DFAULT_<fault>` (see the file), once per
/// test run.
pub fn c_plugin(fault: &str) -> PathBuf {
    static BUILT: std::sync::Mutex<Vec<(String, PathBuf)>> = std::sync::Mutex::new(Vec::new());
    let mut built = BUILT.lock().unwrap_or_else(|p| p.into_inner());
    if let Some((_, p)) = built.iter().find(|(f, _)| f == fault) {
        return p.clone();
    }
    let lib = refit_harness::faulty_plugins::build(fault, &target_dir().join("c-plugins"))
        .unwrap_or_else(|e| panic!("{e}"));
    built.push((fault.to_string(), lib.clone()));
    lib
}

/// `plugins/example.c` built with `-DFAULT_<fault>`, once per test run.
pub fn example_plugin(fault: &str) -> PathBuf {
    static BUILT: std::sync::Mutex<Vec<(String, PathBuf)>> = std::sync::Mutex::new(Vec::new());
    let mut built = BUILT.lock().unwrap_or_else(|p| p.into_inner());
    if let Some((_, p)) = built.iter().find(|(f, _)| f == fault) {
        return p.clone();
    }
    let lib = refit_harness::faulty_plugins::build_example(fault, &target_dir().join("c-plugins"))
        .unwrap_or_else(|e| panic!("{e}"));
    built.push((fault.to_string(), lib.clone()));
    lib
}

/// Every failing row of a check: scenario, model and evidence.
pub fn failures(r: &refit_harness::check::CheckReport) -> Vec<String> {
    r.outcomes
        .iter()
        .filter(|o| o.verdict.is_fail())
        .map(|o| format!("{} {}: {}", o.scenario, o.model, o.verdict.detail()))
        .collect()
}
