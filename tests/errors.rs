//! Every bad input gets one clear error naming what was expected and what
//! was found, never a panic, and a failed refit leaves the engine serving
//! its previous weights.

use std::path::Path;
use std::process::Command;

use prost::Message;
use rstest::rstest;

use refit_harness::engine::reference::ReferenceEngine;
use refit_harness::engine::{refit_all, BuildOptions, Engine};
use refit_harness::fixtures::seed_model;
use refit_harness::model::onnx;
use refit_harness::spec::EngineSpec;
use refit_harness::{io, Error, Tensor, TensorData};

use crate::common::{engine_of, fixture, infer1};

fn seed_engine() -> ReferenceEngine {
    engine_of(&seed_model(), &BuildOptions::default())
}

fn ones() -> Tensor {
    Tensor::full([1, 1, 3, 3], 1.0)
}

/// Refits to all ones (result 9), applies `bad`, checks it fails with a
/// message containing every one of `needles`, and that the engine still
/// gives 9.
fn refit_fails_and_keeps_weights(bad: &[(&str, Tensor)], needles: &[&str]) {
    let engine = seed_engine();
    refit_all(&engine, [("weight", &ones())]).unwrap();
    let err = refit_all(&engine, bad.iter().map(|(n, t)| (*n, t))).unwrap_err();
    let msg = err.to_string();
    for n in needles {
        assert!(msg.contains(n), "'{msg}' does not mention '{n}'");
    }
    assert_eq!(
        infer1(&engine, &ones()),
        vec![9.0],
        "a failed refit changed the weights ({msg})"
    );
}

#[test]
fn unknown_weight_name() {
    refit_fails_and_keeps_weights(
        &[
            ("weight", Tensor::full([1, 1, 3, 3], 5.0)),
            ("const_data", ones()),
        ],
        &["unknown weight 'const_data'", "'weight'"],
    );
}

#[test]
fn wrong_shape_the_snippets_ten_values() {
    refit_fails_and_keeps_weights(
        &[("weight", Tensor::full([10], 1.0))],
        &[
            "weight 'weight'",
            "expected shape [1, 1, 3, 3] (9 values)",
            "found [10] (10 values)",
        ],
    );
}

#[test]
fn wrong_byte_count_ten_values_for_a_shape_of_nine() {
    refit_fails_and_keeps_weights(
        &[("weight", Tensor::f32([1, 1, 3, 3], vec![1.0; 10]))],
        &[
            "weight 'weight'",
            "needs 9 values (36 bytes)",
            "found 10 values (40 bytes)",
        ],
    );
}

#[test]
fn wrong_dtype() {
    refit_fails_and_keeps_weights(
        &[(
            "weight",
            Tensor {
                shape: vec![1, 1, 3, 3],
                data: TensorData::I32(vec![1; 9].into()),
            },
        )],
        &["weight 'weight'", "expected dtype f32, found i32"],
    );
}

#[rstest]
#[case::nan(f32::NAN, "NaN")]
#[case::inf(f32::INFINITY, "inf")]
#[case::neg_inf(f32::NEG_INFINITY, "-inf")]
fn non_finite_values_are_rejected(#[case] v: f32, #[case] text: &str) {
    let mut vals = vec![1.0; 9];
    vals[4] = v;
    refit_fails_and_keeps_weights(
        &[("weight", Tensor::f32([1, 1, 3, 3], vals))],
        &["weight 'weight'", &format!("value 4 is {text}")],
    );
}

#[test]
fn a_bad_tensor_after_a_good_one_applies_neither() {
    refit_fails_and_keeps_weights(
        &[
            ("weight", Tensor::full([1, 1, 3, 3], 7.0)),
            ("weight", Tensor::full([3, 3], 7.0)),
        ],
        &["expected shape [1, 1, 3, 3]"],
    );
}

#[test]
fn refit_on_an_engine_built_without_refit() {
    let engine = engine_of(&seed_model(), &BuildOptions::refit(false));
    assert!(!engine.info().refit_enabled);
    let err = engine.refitter().err().expect("refitter must be refused");
    assert!(matches!(err, Error::RefitDisabled));
    assert!(err.to_string().contains("enable_refit"), "{err}");
    assert_eq!(infer1(&engine, &ones()), vec![0.0]);
}

#[test]
fn missing_lists_unstaged_weights_and_a_failed_stage_keeps_earlier_ones() {
    let engine =
        ReferenceEngine::load(&fixture("conv_stack.onnx"), &BuildOptions::default()).unwrap();
    let mut r = engine.refitter().unwrap();
    assert_eq!(r.missing().unwrap().len(), 5);
    r.set_named_weights("conv1.bias", &Tensor::full([16], 1.0))
        .unwrap();
    assert!(r
        .set_named_weights("conv2.bias", &Tensor::full([15], 1.0))
        .is_err());
    assert_eq!(
        r.missing().unwrap(),
        ["conv1.weight", "conv2.weight", "conv2.bias", "conv3.weight"]
    );
    r.refit().unwrap();
    assert_eq!(
        r.missing().unwrap().len(),
        5,
        "a refit clears what was staged"
    );
}

fn with_graph(f: impl FnOnce(&mut onnx::GraphProto)) -> Vec<u8> {
    let mut proto = seed_model().to_proto();
    f(proto.graph.as_mut().unwrap());
    proto.encode_to_vec()
}

fn load_err(bytes: &[u8]) -> String {
    ReferenceEngine::from_bytes(bytes, "bad.onnx".as_ref(), &BuildOptions::default())
        .err()
        .expect("the model must be refused")
        .to_string()
}

#[test]
fn unsupported_op_names_the_node() {
    let bytes = with_graph(|g| g.node[0].op_type = Some("InstanceNormalization".into()));
    let err = ReferenceEngine::from_bytes(&bytes, "bad.onnx".as_ref(), &BuildOptions::default())
        .err()
        .expect("the model must be refused");
    assert!(err.is_unsupported(), "{err}");
    let msg = err.to_string();
    assert!(
        msg.contains("bad.onnx")
            && msg.contains("do not run: InstanceNormalization (1 node: conv0)"),
        "{msg}"
    );
}

#[test]
fn invalid_conv_attributes_name_the_node_and_attribute() {
    let bytes = with_graph(|g| {
        g.node[0].attribute.push(onnx::AttributeProto {
            name: Some("group".into()),
            i: Some(2),
            r#type: Some(onnx::ATTR_INT),
            ..Default::default()
        })
    });
    let msg = load_err(&bytes);
    assert!(
        msg.contains("node 'conv0' (Conv)") && msg.contains("group 2"),
        "{msg}"
    );
    let bytes = with_graph(|g| {
        g.node[0]
            .attribute
            .retain(|a| a.name.as_deref() != Some("pads"))
    });
    assert!(
        ReferenceEngine::from_bytes(&bytes, "ok.onnx".as_ref(), &BuildOptions::default()).is_ok()
    );
    let bytes = with_graph(|g| {
        for a in &mut g.node[0].attribute {
            if a.name.as_deref() == Some("strides") {
                a.ints = vec![1, 1, 1];
            }
        }
    });
    let msg = load_err(&bytes);
    assert!(msg.contains("strides has 3 values"), "{msg}");
}

#[test]
fn weight_fed_by_a_graph_input_is_refused() {
    let bytes = with_graph(|g| g.node[0].input[1] = "x".into());
    let msg = load_err(&bytes);
    assert!(msg.contains("input 'x' is not a weight"), "{msg}");
}

#[test]
fn initializer_with_wrong_byte_count_names_it() {
    let bytes = with_graph(|g| {
        g.initializer[0]
            .raw_data
            .as_mut()
            .unwrap()
            .pop()
            .map(|_| ())
            .unwrap()
    });
    let msg = load_err(&bytes);
    assert!(
        msg.contains("initializer 'weight'")
            && msg.contains("raw_data has 35 bytes")
            && msg.contains("needs 36"),
        "{msg}"
    );
}

#[test]
fn typed_float_data_initializers_load() {
    let bytes = with_graph(|g| {
        let t = &mut g.initializer[0];
        t.raw_data = None;
        t.float_data = vec![2.0; 9];
    });
    let engine =
        ReferenceEngine::from_bytes(&bytes, "typed.onnx".as_ref(), &BuildOptions::default())
            .unwrap();
    assert_eq!(infer1(&engine, &ones()), vec![18.0]);
}

#[test]
fn malformed_and_truncated_models_are_errors_not_panics() {
    let msg = load_err(b"this is not an onnx file at all");
    assert!(msg.contains("bad.onnx: not a valid ONNX model"), "{msg}");
    for name in [
        "seed_conv.onnx",
        "conv_stack.onnx",
        "pytorch/stack_dynamo.onnx",
    ] {
        let bytes = std::fs::read(fixture(name)).unwrap();
        for len in 0..bytes.len() {
            let _ = ReferenceEngine::from_bytes(
                &bytes[..len],
                "t.onnx".as_ref(),
                &BuildOptions::default(),
            );
        }
        for i in (0..bytes.len()).step_by(3) {
            let mut b = bytes.clone();
            b[i] ^= 0x5a;
            if let Ok(e) =
                ReferenceEngine::from_bytes(&b, "m.onnx".as_ref(), &BuildOptions::default())
            {
                if let Some(shape) = e.inputs()[0].static_shape() {
                    let _ = e.context().unwrap().infer(&[Tensor::full(shape, 1.0)]);
                }
            }
        }
    }
}

#[test]
fn missing_model_file_names_the_path() {
    let err = EngineSpec::Reference
        .open(
            Path::new("/nonexistent/model.onnx"),
            &BuildOptions::default(),
        )
        .err()
        .unwrap();
    assert!(
        err.to_string()
            .starts_with("cannot read /nonexistent/model.onnx"),
        "{err}"
    );
}

#[test]
fn inputs_that_do_not_fit_the_model() {
    let engine = seed_engine();
    let mut ctx = engine.context().unwrap();
    let msg = |r: refit_harness::Result<Vec<Tensor>>| r.unwrap_err().to_string();
    assert!(
        msg(ctx.infer(&[Tensor::full([1, 1, 4, 4], 1.0)])).contains("expected shape [1, 1, 3, 3]")
    );
    assert!(msg(ctx.infer(&[])).contains("expected 1 input(s), found 0"));
    let i32_input = Tensor {
        shape: vec![1, 1, 3, 3],
        data: TensorData::I32(vec![1; 9].into()),
    };
    assert!(msg(ctx.infer(&[i32_input])).contains("input 'x': expected dtype f32, found i32"));
    assert!(msg(ctx.infer(&[Tensor::f32([1, 1, 3, 3], vec![1.0; 8])])).contains("found 8 values"));
}

#[test]
fn bad_tensor_files() {
    let dir = tempfile::tempdir().unwrap();
    let junk = dir.path().join("junk.safetensors");
    std::fs::write(&junk, b"\xff\xff\xff\xff\xff\xff\xff\x7fnot json").unwrap();
    let msg = io::read_weights(&junk).unwrap_err().to_string();
    assert!(
        msg.contains("junk.safetensors: not a valid safetensors file"),
        "{msg}"
    );
    let npy = dir.path().join("junk.npy");
    std::fs::write(&npy, b"\x93NUMPY\x01\x00v\x00{'descr': '<f4', 'fortran_order': False, 'shape': (1000000000000,), }").unwrap();
    let msg = io::read_npy(&npy).unwrap_err().to_string();
    assert!(msg.contains("junk.npy"), "{msg}");
    let f64npy = dir.path().join("f64.npy");
    let mut buf = Vec::new();
    {
        use npyz::WriterBuilder;
        let mut w = npyz::WriteOptions::new()
            .default_dtype()
            .shape(&[2])
            .writer(&mut buf)
            .begin_nd()
            .unwrap();
        w.extend([1.0f64, 2.0]).unwrap();
        w.finish().unwrap();
    }
    std::fs::write(&f64npy, buf).unwrap();
    let msg = io::read_npy(&f64npy).unwrap_err().to_string();
    assert!(msg.contains("dtype <f8 is not supported"), "{msg}");
}

fn cli(args: &[&str]) -> (i32, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_refit-harness"))
        .args(args)
        .output()
        .unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[rstest]
#[case::missing_model(&["weights", "--model", "/nonexistent.onnx"], "cannot read /nonexistent.onnx")]
#[case::malformed_model(&["weights", "--model", "{fixtures}/seed_input.npy"], "not a valid ONNX model")]
#[case::ten_values(&["infer", "--model", "{fixtures}/seed_conv.onnx", "--weights", "{fixtures}/seed_ten_values.safetensors", "--input", "{fixtures}/seed_input.npy", "--output", "{tmp}/y.npy"], "seed_ten_values.safetensors: weight 'weight': expected shape [1, 1, 3, 3] (9 values), found [10] (10 values)")]
#[case::int32(&["infer", "--model", "{fixtures}/seed_conv.onnx", "--weights", "{fixtures}/seed_int32.safetensors", "--input", "{fixtures}/seed_input.npy", "--output", "{tmp}/y.npy"], "expected dtype f32, found i32")]
#[case::unknown_name(&["infer", "--model", "{fixtures}/conv1d.onnx", "--weights", "{fixtures}/seed_ones.safetensors", "--input", "{fixtures}/seed_input.npy", "--output", "{tmp}/y.npy"], "unknown weight 'weight'")]
#[case::shape(&["infer", "--model", "{fixtures}/pytorch/seed_torchscript.onnx", "--weights", "{fixtures}/pytorch/stack_refit.safetensors", "--input", "{fixtures}/seed_input.npy", "--output", "{tmp}/y.npy"], "unknown weight 'a.bias'")]
#[case::input_shape(&["infer", "--model", "{fixtures}/conv1d.onnx", "--input", "{fixtures}/seed_input.npy", "--output", "{tmp}/y.npy"], "input 'x' (declared [1, 4, 50]): expected shape [1, 4, 50]")]
#[case::missing_input(&["infer", "--model", "{fixtures}/seed_conv.onnx", "--input", "/nonexistent.npy", "--output", "{tmp}/y.npy"], "cannot read /nonexistent.npy")]
#[case::engine(&["weights", "--engine", "tensorrt", "--model", "{fixtures}/seed_conv.onnx"], "unknown engine 'tensorrt'")]
#[case::replay_missing(&["check", "--regressions", "{tmp}/none.txt", "--report", "{tmp}/r"], "--regressions {tmp}/none.txt: expected a file of saved seeds to replay")]
#[case::negative_tolerance(&["check", "--abs-tolerance", "-1", "--report", "{tmp}/r"], "--abs-tolerance: expected a finite number >= 0, found -1")]
#[case::reference_option(&["weights", "--engine-options", "{\"device\": 1}", "--model", "{fixtures}/seed_conv.onnx"], "unknown option 'device': the built-in reference engine takes scalar_weights")]
#[case::check_option(&["check", "--engine-options", "{\"device\": 1}", "--report", "{tmp}/r"], "reference: the engine cannot be built on the seed model (seed_conv.onnx), which every engine must run: engine options: unknown option 'device'")]
#[case::check_plugin_option(&["check", "--engine", "plugin:{reference_plugin}", "--engine-options", "{\"devcie\": 1}", "--report", "{tmp}/r"], "unknown option 'devcie': the reference plugin takes enable_refit, engine, scalar_weights")]
fn cli_bad_input_exits_2_with_a_clear_message(#[case] args: &[&str], #[case] needle: &str) {
    let tmp = tempfile::tempdir().unwrap();
    let fixtures = fixture("");
    let args: Vec<String> = args
        .iter()
        .map(|a| {
            a.replace("{fixtures}/", &fixtures.display().to_string())
                .replace("{tmp}", &tmp.path().display().to_string())
                .replace(
                    "{reference_plugin}",
                    &crate::common::reference_plugin().display().to_string(),
                )
        })
        .collect();
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let (code, _, stderr) = cli(&args);
    assert_eq!(code, 2, "{stderr}");
    let needle = needle.replace("{tmp}", &tmp.path().display().to_string());
    assert!(
        stderr.contains(&needle),
        "'{stderr}' does not contain '{needle}'"
    );
    assert!(!stderr.contains("panicked"), "{stderr}");
    assert_eq!(stderr.trim().lines().count(), 1, "one message: {stderr}");
}

#[test]
fn cli_infer_applies_weight_files_in_order() {
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("y.npy");
    let twos = tmp.path().join("twos.safetensors");
    io::write_weights(&twos, [("weight", &Tensor::full([1, 1, 3, 3], 2.0))]).unwrap();
    let f = |n: &str| fixture(n).display().to_string();
    let (code, stdout, stderr) = cli(&[
        "infer",
        "--model",
        &f("seed_conv.onnx"),
        "--weights",
        &f("seed_ones.safetensors"),
        "--weights",
        twos.to_str().unwrap(),
        "--input",
        &f("seed_input.npy"),
        "--output",
        out.to_str().unwrap(),
    ]);
    assert_eq!(code, 0, "{stderr}");
    assert!(stdout.contains("wrote"), "{stdout}");
    assert_eq!(
        io::read_npy(&out).unwrap(),
        Tensor::f32([1, 1, 1, 1], vec![18.0])
    );
}

#[test]
fn cli_weights_lists_name_dtype_shape() {
    let (code, stdout, _) = cli(&[
        "weights",
        "--model",
        &fixture("pytorch/stack_dynamo.onnx").display().to_string(),
    ]);
    assert_eq!(code, 0);
    assert_eq!(stdout.lines().next(), Some("a.weight\tf32\t[8, 3, 3, 3]"));
    assert_eq!(stdout.lines().count(), 5);
}

#[test]
fn cli_demo_single_thread() {
    let (code, stdout, _) = cli(&["demo", "single-thread"]);
    assert_eq!(code, 0);
    assert!(
        stdout.contains("result: 0")
            && stdout.contains("--- weight refit ---")
            && stdout.contains("result: 9"),
        "{stdout}"
    );
}
