//! Real networks (`fixtures/graphs/`, written by its `make.py` with ONNX
//! Runtime's outputs): the reference engine computes them within the
//! oracle's bound of what ONNX Runtime computed, with the models' weights
//! and after a refit of every weight; `check` passes on them; an engine that
//! ignores one bias of the ResNet fails, named; a model with ops outside
//! the set is a skip naming every such op; weights in a side file load,
//! and a side file outside the model's folder is refused.

use std::path::PathBuf;

use refit_harness::check::{self, CheckConfig, Verdict};
use refit_harness::engine::{refit_all, BuildOptions};
use refit_harness::model::{onnx, Model};
use refit_harness::oracle::{first_mismatch, Judge, Oracle};
use refit_harness::spec::EngineSpec;
use refit_harness::{io, Tensor};

const NETWORKS: [&str; 7] = [
    "mlp",
    "resnet",
    "depthwise",
    "attention",
    "transformer",
    "transposed",
    "mlp_external",
];

fn graph(name: &str) -> PathBuf {
    refit_harness::fixtures::dir().join("graphs").join(name)
}

/// Every element of `observed` within the oracle's f32 bound of the exact
/// value; `what` names the comparison.
fn within_bound(oracle: &Oracle, x: &Tensor, observed: &Tensor, what: &str) {
    let expected = oracle.infer(std::slice::from_ref(x)).unwrap();
    assert_eq!(expected[0].shape, observed.shape, "{what}");
    if let Err((i, m)) = first_mismatch(&expected[0], &observed.to_f32_vec(), &Judge::F32) {
        panic!(
            "{what}: element {i}: expected {}, observed {}",
            m.expected_text(),
            m.observed_text()
        );
    }
}

#[test]
fn the_reference_engine_and_onnx_runtime_agree_within_the_bound() {
    for name in NETWORKS {
        let model = graph(&format!("{name}.onnx"));
        let x = io::read_npy(&graph(&format!("{name}.input.npy"))).unwrap();
        let engine = EngineSpec::Reference
            .open(&model, &BuildOptions::default())
            .unwrap();
        let mut oracle = Oracle::new(Model::load(&model).unwrap());
        // ONNX Runtime's output, and the reference engine's, each within
        // the bound of the exact value.
        let ort = io::read_npy(&graph(&format!("{name}.output.npy"))).unwrap();
        within_bound(&oracle, &x, &ort, &format!("{name}: ONNX Runtime"));
        let ours = engine
            .context()
            .unwrap()
            .infer(std::slice::from_ref(&x))
            .unwrap();
        within_bound(&oracle, &x, &ours[0], &format!("{name}: reference engine"));
        // After a refit of every weight to the second set.
        let set = io::read_weights(&graph(&format!("{name}.refit.safetensors"))).unwrap();
        refit_all(engine.as_ref(), set.iter().map(|(n, t)| (n.as_str(), t))).unwrap();
        for (n, t) in &set {
            let i = oracle
                .model()
                .initializers()
                .iter()
                .position(|w| &w.info.name == n)
                .unwrap();
            oracle.set(i, t.to_f32_vec());
        }
        let ort = io::read_npy(&graph(&format!("{name}.refit_output.npy"))).unwrap();
        within_bound(&oracle, &x, &ort, &format!("{name} refitted: ONNX Runtime"));
        let ours = engine
            .context()
            .unwrap()
            .infer(std::slice::from_ref(&x))
            .unwrap();
        within_bound(
            &oracle,
            &x,
            &ours[0],
            &format!("{name} refitted: reference engine"),
        );
    }
}

fn run(spec: &EngineSpec, models: &[PathBuf], only: &[&str]) -> check::CheckReport {
    let scratch = tempfile::tempdir().unwrap();
    let mut c = CheckConfig::with_fixtures(scratch.path()).unwrap();
    c.models = models.to_vec();
    c.only = only.iter().map(|s| s.to_string()).collect();
    c.stress_ms = 100;
    check::run(spec, &c, &mut |_| {})
}

#[test]
fn check_passes_on_real_networks_and_fails_an_engine_that_ignores_a_bias() {
    let models: Vec<PathBuf> = NETWORKS
        .iter()
        .map(|n| graph(&format!("{n}.onnx")))
        .collect();
    let per_model = [
        "refittable_parity",
        "round_trip",
        "partial_refit",
        "bad_input",
    ];
    let r = run(&EngineSpec::Reference, &models, &per_model);
    assert_eq!(r.outcomes.len(), per_model.len() * models.len());
    for o in &r.outcomes {
        assert!(
            matches!(o.verdict, Verdict::Pass(_)),
            "{} {}: {}",
            o.scenario,
            o.model,
            o.verdict.detail()
        );
    }
    // The last weight of the ResNet is its classifier's bias.
    let resnet = [graph("resnet.onnx")];
    let r = run(
        &"defect:ignores_name".parse().unwrap(),
        &resnet,
        &["round_trip"],
    );
    let d = r.outcomes[0].verdict.detail();
    assert!(r.outcomes[0].verdict.is_fail(), "{d}");
    assert!(
        d.contains("observed = the expected output with 'fc.bias' still at version 0"),
        "{d}"
    );
}

#[test]
fn a_model_with_ops_outside_the_set_names_them_all() {
    let m = graph("unsupported.onnx");
    let e = Model::load(&m).unwrap_err();
    assert!(e.is_unsupported(), "{e}");
    let msg = e.to_string();
    assert!(
        msg.contains("InstanceNormalization (1 node: /in/InstanceNormalization)")
            && msg.contains("ReduceMax (2 nodes: /ReduceMax, /ReduceMax_1)"),
        "{msg}"
    );
    let r = run(&EngineSpec::Reference, &[m], &["round_trip"]);
    assert!(
        matches!(&r.outcomes[0].verdict, Verdict::Skip(d) if d.contains("InstanceNormalization") && d.contains("ReduceMax")),
        "{:?}",
        r.outcomes[0].verdict
    );
}

#[test]
fn initializers_that_are_not_weights_stay_constants() {
    // The MLP's GELU and Clip constants are scalars, its Reshape shape an
    // INT64 tensor: none is a refittable weight.
    let names: Vec<String> = refit_harness::model::read_initializers(&graph("mlp.onnx"))
        .unwrap()
        .into_iter()
        .map(|w| w.info.name)
        .collect();
    assert_eq!(
        names,
        [
            "fc1.weight",
            "fc1.bias",
            "fc2.weight",
            "fc2.bias",
            "fc3.weight",
            "fc3.bias"
        ]
    );
    let model = Model::load(&graph("mlp.onnx")).unwrap();
    let constants: Vec<&str> = model.constants().iter().map(|c| c.name.as_str()).collect();
    assert!(
        constants.contains(&"val_0") && constants.contains(&"flat"),
        "{constants:?}"
    );
}

/// Weights in a side file (`location`, `offset`, `length` relative to the
/// model's folder) load as the file's own would; a location leaving that
/// folder, or bytes past the file's end, are refused naming the tensor.
#[test]
fn weights_beside_the_model_load_and_may_not_leave_its_folder() {
    let ext = refit_harness::model::read_initializers(&graph("mlp_external.onnx")).unwrap();
    assert_eq!(ext.len(), 6);
    assert!(ext.iter().all(|w| w.values.iter().any(|&v| v != 0.0)));
    let dir = tempfile::tempdir().unwrap();
    let bytes = std::fs::read(graph("mlp_external.onnx")).unwrap();
    for (location, offset, needle) in [
        (
            "../mlp_external.onnx.data",
            None,
            "leaves the model's folder",
        ),
        ("/etc/passwd", None, "leaves the model's folder"),
        ("mlp_external.onnx.data", Some("99999999"), "past its"),
    ] {
        use prost::Message;
        let mut m = onnx::ModelProto::decode(&bytes[..]).unwrap();
        let g = m.graph.as_mut().unwrap();
        let t = g
            .initializer
            .iter_mut()
            .find(|t| !t.external_data.is_empty())
            .unwrap();
        for e in &mut t.external_data {
            match (e.key.as_deref(), offset) {
                (Some("location"), _) => e.value = Some(location.into()),
                (Some("offset"), Some(o)) => e.value = Some(o.into()),
                _ => {}
            }
        }
        let path = dir.path().join("m.onnx");
        std::fs::write(&path, m.encode_to_vec()).unwrap();
        std::fs::copy(
            graph("mlp_external.onnx.data"),
            dir.path().join("mlp_external.onnx.data"),
        )
        .unwrap();
        let e = Model::load(&path).unwrap_err().to_string();
        assert!(
            e.contains(needle) && e.contains("initializer 'fc1.weight'"),
            "{location}: {e}"
        );
    }
    // Loaded from elsewhere, the side file is still found beside the model.
    let copy = dir.path().join("copy");
    std::fs::create_dir_all(&copy).unwrap();
    for f in ["mlp_external.onnx", "mlp_external.onnx.data"] {
        std::fs::copy(graph(f), copy.join(f)).unwrap();
    }
    assert!(Model::load(&copy.join("mlp_external.onnx")).is_ok());
}

/// The allowance an engine declares for its functions sets the bound: none
/// gives a tighter one than the default, a large one a looser one.
#[test]
fn the_declared_allowance_sets_the_bound() {
    use refit_harness::engine::{Allowance, Numerics};
    let model = Model::load(&graph("mlp.onnx")).unwrap();
    let x = io::read_npy(&graph("mlp.input.npy")).unwrap();
    let widest = |a: Allowance| {
        let judge = Judge {
            numerics: Numerics {
                allowance: [a; 3],
                ..Numerics::DEFAULT
            },
            ..Judge::F32
        };
        Oracle::with_judge(model.clone(), judge)
            .infer(std::slice::from_ref(&x))
            .unwrap()[0]
            .bounds
            .iter()
            .fold(0f64, |m, &b| m.max(b))
    };
    let none = widest(Allowance { rel: 0.0, abs: 0.0 });
    let default = widest(Allowance::DEFAULT);
    let loose = widest(Allowance {
        rel: 1000.0,
        abs: 1000.0,
    });
    assert!(
        none < default && default < loose,
        "{none} {default} {loose}"
    );
}

/// A scalar parameter is a constant by default and a refittable weight
/// where the engine's `scalar_weights` option lists it; the oracle follows
/// the engine's list, so `check` judges its refits; a listed name that is
/// not a scalar is refused, naming it.
#[test]
fn a_scalar_parameter_is_refittable_when_listed() {
    let m = graph("mlp.onnx");
    let listed = r#"{"scalar_weights": ["val_2"]}"#;
    let names = |opts: Option<&str>| -> Vec<String> {
        let o = BuildOptions {
            engine_options: opts.map(str::to_string),
            ..BuildOptions::default()
        };
        let e = EngineSpec::Reference.open(&m, &o).unwrap();
        e.weights().iter().map(|w| w.name.clone()).collect()
    };
    assert!(!names(None).contains(&"val_2".to_string()));
    assert!(names(Some(listed)).contains(&"val_2".to_string()));
    let scratch = tempfile::tempdir().unwrap();
    let mut c = CheckConfig::with_fixtures(scratch.path()).unwrap();
    c.models = vec![m.clone()];
    c.only = [
        "round_trip",
        "partial_refit",
        "warm_equals_cold",
        "history_independence",
    ]
    .map(String::from)
    .to_vec();
    let factory = check::SpecFactory {
        spec: EngineSpec::Reference,
        options: Some(listed.into()),
    };
    let r = check::run(&factory, &c, &mut |_| {});
    for o in &r.outcomes {
        assert!(
            matches!(&o.verdict, Verdict::Pass(d) if d.contains("7 weight(s)")),
            "{}: {}",
            o.scenario,
            o.verdict.detail()
        );
    }
    // The same from the command line, each scenario in a child process:
    // the options travel with the engine into the child.
    let report = scratch.path().join("report");
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_refit-harness"))
        .args(["check", "--engine", "reference", "--engine-options", listed])
        .arg("--model")
        .arg(&m)
        .args(["--scenario", "round_trip", "--report"])
        .arg(&report)
        .output()
        .unwrap();
    let text =
        String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success() && text.contains("7 weight(s)"),
        "{text}"
    );
    let o = BuildOptions {
        engine_options: Some(r#"{"scalar_weights": ["fc1.weight"]}"#.into()),
        ..BuildOptions::default()
    };
    let e = EngineSpec::Reference
        .open(&m, &o)
        .err()
        .unwrap()
        .to_string();
    assert!(e.contains("'fc1.weight': listed as a scalar weight"), "{e}");
}
