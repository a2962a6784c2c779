//! The committed fixtures are exactly what `gen-model` writes.

use refit_harness::engine::BuildOptions;
use refit_harness::fixtures;
use refit_harness::spec::EngineSpec;

use crate::common::fixture;

#[test]
fn committed_fixtures_match_gen_model() {
    let dir = tempfile::tempdir().unwrap();
    let written = fixtures::write_all(dir.path()).unwrap();
    assert!(written.len() >= 6);
    for path in written {
        let name = path.file_name().unwrap().to_str().unwrap();
        let fresh = std::fs::read(&path).unwrap();
        let committed = std::fs::read(fixture(name)).unwrap_or_else(|e| {
            panic!("fixtures/{name}: {e}; run `refit-harness gen-model --out fixtures`")
        });
        assert!(
            fresh == committed,
            "fixtures/{name} differs from what gen-model writes; regenerate it"
        );
    }
}

#[test]
fn every_fixture_model_loads_and_infers() {
    for (name, _) in fixtures::models() {
        let engine = EngineSpec::Reference
            .open(&fixture(name), &BuildOptions::default())
            .unwrap();
        let x = &engine.inputs()[0];
        let shape = x.static_shape().unwrap();
        let input = refit_harness::Tensor::full(shape, 1.0);
        let out = engine.context().unwrap().infer(&[input]).unwrap();
        assert_eq!(
            out[0].shape,
            engine.outputs()[0].static_shape().unwrap(),
            "{name}"
        );
    }
}

#[test]
fn seed_model_is_the_vendor_model() {
    let engine = EngineSpec::Reference
        .open(&fixture("seed_conv.onnx"), &BuildOptions::default())
        .unwrap();
    let w = engine.weights();
    assert_eq!(w.len(), 1);
    assert_eq!(w[0].static_shape().unwrap(), vec![1, 1, 3, 3]);
    assert_eq!(engine.inputs()[0].static_shape().unwrap(), vec![1, 1, 3, 3]);
    assert_eq!(
        engine.outputs()[0].static_shape().unwrap(),
        vec![1, 1, 1, 1]
    );
    let out = engine
        .context()
        .unwrap()
        .infer(&[refit_harness::io::read_npy(&fixture("seed_input.npy")).unwrap()])
        .unwrap();
    assert_eq!(out[0].as_f32(), Some(&[0.0][..]));
}
