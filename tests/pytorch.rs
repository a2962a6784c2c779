//! Models as PyTorch exports them, with both its TorchScript and its dynamo
//! exporter (`fixtures/pytorch/export.py`): the reference engine reproduces
//! PyTorch's outputs exactly, before and after refitting the weight set
//! PyTorch saved by parameter name.

use rstest::rstest;

use refit_harness::engine::{refit_all, BuildOptions, EngineSpec};
use refit_harness::io;

use crate::common::fixture;

#[rstest]
fn pytorch_export_matches_pytorch(
    #[values("seed", "stack", "conv1d")] model: &str,
    #[values("torchscript", "dynamo")] exporter: &str,
) {
    let f = |s: &str| fixture(&format!("pytorch/{model}_{s}"));
    let engine = EngineSpec::Reference
        .open(&f(&format!("{exporter}.onnx")), &BuildOptions::default())
        .unwrap();
    let x = io::read_npy(&f("input.npy")).unwrap();
    let mut ctx = engine.context().unwrap();
    let y = ctx.infer(std::slice::from_ref(&x)).unwrap();
    assert_eq!(y[0], io::read_npy(&f("expected.npy")).unwrap());

    let set = io::read_weights(&f("refit.safetensors")).unwrap();
    let names: Vec<&str> = set.iter().map(|(n, _)| n.as_str()).collect();
    let mut weights: Vec<&str> = engine.weights().iter().map(|w| w.name.as_str()).collect();
    weights.sort();
    assert_eq!(
        names, weights,
        "the checkpoint's names are the initializer names"
    );
    refit_all(engine.as_ref(), set.iter().map(|(n, t)| (n.as_str(), t))).unwrap();
    let y = ctx.infer(&[x]).unwrap();
    assert_eq!(y[0], io::read_npy(&f("refit_expected.npy")).unwrap());
}
