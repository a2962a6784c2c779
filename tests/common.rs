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
