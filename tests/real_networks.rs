//! Real networks: the seeded defects of tensors an engine derives from the
//! weights at build, caught by `check` and by the suite with the weight
//! named; the property test on residual CNNs and attention; a ResNet-18
//! built without torch.

use refit_harness::check::{self, CheckConfig, CheckReport, Verdict};
use refit_harness::engine::BuildOptions;
use refit_harness::model::{build, Model};
use refit_harness::spec::EngineSpec;

use crate::common::{failures, fixture, reference_plugin};
use crate::new_user::this_binary;

/// The defects, the weight each one's evidence must name, and what the
/// minimal `model_based` case must contain.
const DERIVED: [(&str, &str, &[&str]); 4] = [
    (
        "batchnorm_not_refolded",
        "'conv1.weight'",
        &["batchnorm", "stage "],
    ),
    (
        "packed_gemm_stale",
        "'fc.weight'",
        &["(transB)", "stage fc.weight"],
    ),
    (
        "zero_bias_dropped",
        "'fc.bias'",
        &["(all zero)", "bias = values"],
    ),
    (
        "fused_halves_swapped",
        "'attn.q.weight'",
        &["attention: q, k", "stage "],
    ),
];

fn run(spec: &dyn check::EngineFactory, only: &[&str], cases: u32) -> CheckReport {
    let scratch = tempfile::tempdir().unwrap();
    let mut c = CheckConfig::with_fixtures(scratch.path()).unwrap();
    c.only = only.iter().map(|s| s.to_string()).collect();
    c.models = ["resnet_tiny.onnx", "attention_tiny.onnx"]
        .map(fixture)
        .to_vec();
    c.cases = cases;
    c.seconds = 60.0;
    check::run(spec, &c, &mut |_| {})
}

fn detail(r: &CheckReport, scenario: &str, model: &str) -> String {
    r.outcomes
        .iter()
        .filter(|o| o.scenario == scenario && o.model.contains(model))
        .map(|o| format!("{}: {}", o.verdict.label(), o.verdict.detail()))
        .collect::<Vec<_>>()
        .join("\n")
}

/// Each derived-tensor defect fails `round_trip` on the toy network that
/// has its structure, the evidence localizing the weight involved, and
/// fails `model_based` with a small minimal case that shows the structure.
#[test]
fn derived_tensor_defects_are_caught_with_the_weight_named() {
    for (defect, weight, minimal) in DERIVED {
        let spec: EngineSpec = format!("defect:{defect}").parse().unwrap();
        let r = run(&spec, &["round_trip", "model_based"], 256);
        let model = if defect == "fused_halves_swapped" {
            "attention_tiny"
        } else {
            "resnet_tiny"
        };
        let rt = detail(&r, "round_trip", model);
        assert!(
            rt.starts_with("FAIL") && rt.contains(weight),
            "{defect}: {rt}"
        );
        let mb = detail(&r, "model_based", "-");
        assert!(mb.starts_with("FAIL"), "{defect}: {mb}");
        assert!(
            minimal.iter().all(|m| mb.contains(m)),
            "{defect}: {minimal:?} not in {mb}"
        );
        // Readable: at most a few blocks and operations.
        let case = mb.split("(inferring").next().unwrap();
        assert!(case.len() < 400, "{defect}: a long minimal case: {case}");
    }
}

/// The same through the `cargo test` suite a vendor runs.
#[test]
fn the_suite_catches_derived_tensor_defects() {
    for (defect, weight, _) in DERIVED {
        let engine = format!("defect:{defect}");
        let (ok, out) = this_binary(
            "check::under_test::round_trip",
            &[("REFIT_ENGINE", engine.as_str())],
        );
        assert!(!ok, "{defect} passed the suite's round_trip:\n{out}");
        assert!(
            out.contains(weight),
            "{defect}: {weight} not named in\n{out}"
        );
    }
}

/// Correct engines that compute differently pass the real networks and
/// the property test on them: the reference engine, the same through the
/// C ABI (the reference plugin, built as its own library), and an engine
/// that folds BatchNorm into the conv before it and refolds on refit.
#[test]
fn correct_engines_pass_the_real_networks() {
    let only = [
        "refittable_parity",
        "round_trip",
        "partial_refit",
        "bad_input",
        "model_based",
    ];
    let plugin = EngineSpec::Plugin(reference_plugin());
    let engines: [&dyn check::EngineFactory; 3] =
        [&EngineSpec::Reference, &plugin, &refolding::Factory];
    for spec in engines {
        let spec_name = spec.name();
        let r = run(spec, &only, 256);
        assert!(failures(&r).is_empty(), "{spec_name}: {:#?}", failures(&r));
        assert!(r
            .outcomes
            .iter()
            .all(|o| matches!(o.verdict, Verdict::Pass(_))));
        let mb = detail(&r, "model_based", "-");
        // Every kind of generated model ran.
        for kind in ["conv chain", "residual CNN", "attention"] {
            assert!(mb.contains(kind), "{spec_name}: {mb}");
        }
    }
}

/// ResNet-18 from the crate's own builder: torchvision's shapes and
/// weight count, 44.6 MiB of f32, and a refit of every weight that the
/// oracle follows.
#[test]
fn resnet18_is_built_without_torch_and_refits() {
    let g = build::resnet18(32, 1);
    // torchvision's 11,689,512 parameters and 9,600 BatchNorm running statistics.
    assert_eq!(g.parameters(), 11_689_512 + 9_600);
    assert_eq!(g.weight_names().len(), 102);
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("resnet18.onnx");
    std::fs::write(&path, g.to_bytes()).unwrap();
    let m = Model::load(&path).unwrap();
    let bytes: usize = m.initializers().iter().map(|i| i.values.len() * 4).sum();
    assert_eq!(bytes, (11_689_512 + 9_600) * 4);
    assert_eq!(m.outputs()[0].shape, vec![Some(1), Some(1000)]);
    let engine = EngineSpec::Reference
        .open(&path, &BuildOptions::default())
        .unwrap();
    assert_eq!(engine.weights().len(), 102);
    let scratch = tempfile::tempdir().unwrap();
    let mut c = CheckConfig::with_fixtures(scratch.path()).unwrap();
    c.only = vec!["round_trip".into()];
    c.models = vec![path];
    let r = check::run(&EngineSpec::Reference, &c, &mut |_| {});
    assert!(!r.failed(), "{:#?}", failures(&r));
    assert!(detail(&r, "round_trip", "resnet18").contains("over 102 weight(s)"));
}

/// A correct engine that folds every BatchNorm into the conv before it, as
/// TensorRT and ONNX Runtime do, and refolds on every refit: it computes
/// `conv(x, W k) + b'` where the oracle computes `bn(conv(x, W))`.
mod refolding {
    use std::collections::HashMap;
    use std::path::{Path, PathBuf};
    use std::sync::{Arc, Mutex};

    use prost::Message;
    use refit_harness::check::EngineFactory;
    use refit_harness::defects::derived::{rewrite, Derivation};
    use refit_harness::engine::reference::{validate_weight, ReferenceEngine};
    use refit_harness::engine::{BuildOptions, Context, Description, Engine, Refitter};
    use refit_harness::model::{onnx, Model};
    use refit_harness::{Result, Tensor, TensorInfo};

    pub struct Factory;

    struct Folding {
        description: Description,
        shared: Arc<Shared>,
    }

    struct Shared {
        inner: ReferenceEngine,
        path: PathBuf,
        weights: Vec<TensorInfo>,
        /// The model with the raw weights now served.
        raw: Mutex<onnx::ModelProto>,
    }

    impl EngineFactory for Factory {
        fn name(&self) -> String {
            "reference-refolding".into()
        }

        fn open(&self, model: &Path, options: &BuildOptions) -> Result<Box<dyn Engine>> {
            let bytes = std::fs::read(model).expect("read the model");
            let weights = ReferenceEngine::from_bytes(&bytes, model, options)?
                .weights()
                .to_vec();
            let (folded, _) = rewrite(Derivation::FoldsBatchNorm, &bytes, model)?;
            let inner = ReferenceEngine::from_bytes(&folded, model, options)?;
            let mut description = inner.description().clone();
            description.info.name = self.name();
            description.weights = weights.clone();
            Ok(Box::new(Folding {
                description,
                shared: Arc::new(Shared {
                    inner,
                    path: model.to_path_buf(),
                    weights,
                    raw: Mutex::new(onnx::ModelProto::decode(&bytes[..]).expect("decode")),
                }),
            }))
        }
    }

    impl Engine for Folding {
        fn description(&self) -> &Description {
            &self.description
        }
        fn context(&self) -> Result<Box<dyn Context>> {
            self.shared.inner.context()
        }
        fn refitter(&self) -> Result<Box<dyn Refitter>> {
            // Refused as the inner engine refuses it (built without refit).
            self.shared.inner.refitter()?;
            Ok(Box::new(Refolder {
                shared: Arc::clone(&self.shared),
                staged: HashMap::new(),
            }))
        }
    }

    struct Refolder {
        shared: Arc<Shared>,
        staged: HashMap<String, Vec<f32>>,
    }

    impl Refitter for Refolder {
        fn set_named_weights(&mut self, name: &str, weights: &Tensor) -> Result<()> {
            validate_weight(&self.shared.weights, name, weights)?;
            self.staged.insert(name.into(), weights.to_f32_vec());
            Ok(())
        }
        fn missing(&self) -> Result<Vec<String>> {
            Ok(self
                .shared
                .weights
                .iter()
                .filter(|w| !self.staged.contains_key(&w.name))
                .map(|w| w.name.clone())
                .collect())
        }
        fn refit(&mut self) -> Result<()> {
            let mut raw = self.shared.raw.lock().unwrap();
            let before = raw.clone();
            for t in &mut raw.graph.as_mut().unwrap().initializer {
                if let Some(v) = self.staged.get(t.name.as_deref().unwrap_or("")) {
                    t.raw_data = Some(v.iter().flat_map(|x| x.to_le_bytes()).collect());
                    t.float_data.clear();
                }
            }
            self.staged.clear();
            let path = &self.shared.path;
            let apply = || -> Result<()> {
                let (folded, _) = rewrite(Derivation::FoldsBatchNorm, &raw.encode_to_vec(), path)?;
                let folded = Model::from_bytes(&folded, path)?;
                let mut r = self.shared.inner.refitter()?;
                for i in folded.initializers() {
                    let t = Tensor::f32(i.shape.clone(), i.values.clone());
                    r.set_named_weights(&i.info.name, &t)?;
                }
                r.refit()
            };
            let result = apply();
            if result.is_err() {
                *raw = before;
            }
            result
        }
    }
}
