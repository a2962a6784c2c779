//! Models as PyTorch exports them, with both its TorchScript and its dynamo
//! exporter (`fixtures/pytorch/export.py`): the reference engine reproduces
//! PyTorch's outputs exactly for the integer conv models, and within the
//! oracle's bound for float weights and the real networks, before and after
//! refitting a second weight set.

use rstest::rstest;

use refit_harness::engine::{refit_all, BuildOptions};
use refit_harness::io;
use refit_harness::spec::EngineSpec;

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

/// Float-weight exports: PyTorch and the reference engine each round in
/// f32, so both must lie within the oracle's f32 bound of the exact value
/// (before and after refitting PyTorch's float checkpoint).
#[rstest]
fn float_exports_agree_with_pytorch_within_the_bound(
    #[values("float_stack", "float_grouped")] model: &str,
    #[values("torchscript", "dynamo")] exporter: &str,
) {
    agree_within_the_bound(model, exporter, "refit.safetensors");
}

/// Real networks as PyTorch exports them (a residual CNN with BatchNorm and
/// pooling, a depthwise CNN with ReLU6, an MLP with GELU and Softmax, a
/// transformer encoder layer; the TorchScript exporter folds BatchNorm
/// into the convs, the dynamo one keeps one model's weights in a side
/// file): the reference engine and PyTorch both lie within the oracle's
/// f32 bound of the exact value, with the exported weights and after
/// refitting the export's own second weight set.
#[rstest]
#[case("resnet_small", "torchscript")]
#[case("resnet_small", "dynamo")]
#[case("mobile_small", "torchscript")]
#[case("mobile_small", "dynamo")]
#[case("mlp_gelu", "torchscript")]
#[case("mlp_gelu", "dynamo")]
#[case("encoder", "dynamo")]
fn real_networks_agree_with_pytorch_within_the_bound(#[case] model: &str, #[case] exporter: &str) {
    agree_within_the_bound(model, exporter, &format!("{exporter}_refit.safetensors"));
}

/// The reference engine and PyTorch's outputs for `model`'s `exporter`
/// export, each within the oracle's f32 bound, before and after refitting
/// the weight set in `refit`.
fn agree_within_the_bound(model: &str, exporter: &str, refit: &str) {
    use refit_harness::oracle::{first_mismatch, Judge, Oracle};
    let f = |s: &str| fixture(&format!("pytorch/{model}_{s}"));
    let path = f(&format!("{exporter}.onnx"));
    let engine = EngineSpec::Reference
        .open(&path, &BuildOptions::default())
        .unwrap();
    let mut oracle = Oracle::new(refit_harness::model::Model::load(&path).unwrap());
    let x = io::read_npy(&f("input.npy")).unwrap();
    let mut ctx = engine.context().unwrap();
    let mut check = |oracle: &Oracle, torch: &str| {
        let ours = ctx.infer(std::slice::from_ref(&x)).unwrap();
        let expected = &oracle.infer(std::slice::from_ref(&x)).unwrap()[0];
        let theirs = io::read_npy(&f(torch)).unwrap();
        for (who, y) in [("reference", &ours[0]), ("PyTorch", &theirs)] {
            assert_eq!(y.shape, expected.shape, "{who}");
            if let Err((i, m)) = first_mismatch(expected, &y.to_f32_vec(), &Judge::F32) {
                panic!(
                    "{model} {exporter}, {who} ({torch}) at {i}: expected {}, observed {}",
                    m.expected_text(),
                    m.observed_text()
                );
            }
        }
    };
    check(&oracle, "expected.npy");
    let set = io::read_weights(&f(refit)).unwrap();
    assert!(!set.is_empty());
    refit_all(engine.as_ref(), set.iter().map(|(n, t)| (n.as_str(), t))).unwrap();
    for (name, t) in &set {
        let i = oracle
            .model()
            .initializers()
            .iter()
            .position(|w| &w.info.name == name)
            .unwrap();
        oracle.set(i, t.to_f32_vec());
    }
    check(&oracle, "refit_expected.npy");
}
