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

/// `onnx::replace_initializers` writes new weights into a model and keeps
/// everything else: a PyTorch export (with the metadata, opsets and
/// attributes this crate does not model) read back gives the new values for
/// the replaced initializer, the old ones for the rest, and the same
/// inputs, outputs and graph; a reference engine on it serves the new
/// weights. Bytes that are not a model are an error, not a panic.
#[test]
fn replacing_initializers_keeps_the_rest_of_the_model() {
    use refit_harness::model::onnx::replace_initializers;
    use refit_harness::model::{read_initializers, Model};
    let path = fixture("pytorch/stack_dynamo.onnx");
    let before = read_initializers(&path).unwrap();
    let target = &before[0];
    let new: Vec<f32> = (0..target.values.len())
        .map(|i| i as f32 * 0.25 - 3.0)
        .collect();
    let bytes = std::fs::read(&path).unwrap();
    let out = replace_initializers(&bytes, &|name| {
        (name == target.info.name).then_some(&new[..])
    })
    .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let written = dir.path().join("replaced.onnx");
    std::fs::write(&written, &out).unwrap();
    let after = read_initializers(&written).unwrap();
    assert_eq!(before.len(), after.len());
    for (b, a) in before.iter().zip(&after) {
        assert_eq!(b.info, a.info);
        let expected = if a.info.name == target.info.name {
            &new
        } else {
            &b.values
        };
        assert_eq!(&a.values, expected, "{}", a.info.name);
    }
    let (old, replaced) = (Model::load(&path).unwrap(), Model::load(&written).unwrap());
    assert_eq!(old.inputs(), replaced.inputs());
    assert_eq!(old.outputs(), replaced.outputs());
    assert_eq!(old.nodes().len(), replaced.nodes().len());
    // Nothing replaced: the same model, field for field, though the graph
    // moved to the end.
    let same = replace_initializers(&bytes, &|_| None).unwrap();
    assert_eq!(same.len(), bytes.len());
    let err = replace_initializers(b"\xff\xff\xff", &|_| None).unwrap_err();
    assert!(!err.is_empty());
    // Served: the model with the weight written in infers as the original
    // refitted with it.
    let x = refit_harness::io::read_npy(&fixture("pytorch/stack_input.npy")).unwrap();
    let open = |p: &std::path::Path| {
        EngineSpec::Reference
            .open(p, &BuildOptions::default())
            .unwrap()
    };
    let (original, rewritten) = (open(&path), open(&written));
    let t = refit_harness::Tensor::f32(target.shape.clone(), new.clone());
    refit_harness::engine::refit_all(original.as_ref(), [(target.info.name.as_str(), &t)]).unwrap();
    let y = |e: &dyn refit_harness::Engine| {
        e.context()
            .unwrap()
            .infer(std::slice::from_ref(&x))
            .unwrap()
    };
    assert_eq!(y(original.as_ref()), y(rewritten.as_ref()));
}
