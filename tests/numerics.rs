//! The oracle's floating-point bound: correct engines that round
//! differently pass on float weights (the reference engine in f32, an
//! engine in f16 declaring f16), engines with defects or with more error
//! than they declare fail, and integer checks stay exact.

use std::path::{Path, PathBuf};

use refit_harness::check::{self, CheckConfig, CheckReport, EngineFactory, Verdict};
use refit_harness::engine::{BuildOptions, Context, Description, Engine, Precision, Refitter};
use refit_harness::model::build::{ConvChain, ConvLayer};
use refit_harness::model::conv::ConvAttrs;
use refit_harness::model::Model;
use refit_harness::oracle::{Judge, Oracle};
use refit_harness::spec::EngineSpec;
use refit_harness::{Result, Tensor, TensorData};

use crate::common::{failures, fixture};

/// The per-model scenarios that compare numbers with the oracle.
const NUMERIC: [&str; 4] = [
    "refittable_parity",
    "round_trip",
    "partial_refit",
    "bad_input",
];

/// The float-weight PyTorch exports.
fn float_models() -> Vec<PathBuf> {
    ["float_stack", "float_grouped"]
        .iter()
        .flat_map(|m| ["torchscript", "dynamo"].map(|e| fixture(&format!("pytorch/{m}_{e}.onnx"))))
        .collect()
}

fn run_on(factory: &dyn EngineFactory, models: Vec<PathBuf>, only: &[&str]) -> CheckReport {
    let scratch = tempfile::tempdir().unwrap();
    let mut c = CheckConfig::with_fixtures(scratch.path()).unwrap();
    c.models = models;
    c.only = only.iter().map(|s| s.to_string()).collect();
    check::run(factory, &c, &mut |_| {})
}

#[test]
fn reference_passes_float_models_within_the_bound() {
    let r = run_on(&EngineSpec::Reference, float_models(), &NUMERIC);
    assert!(failures(&r).is_empty(), "{:#?}", failures(&r));
    assert_eq!(r.outcomes.len(), 16);
    let worst = r.worst_error_ratio().unwrap();
    // Float arithmetic: not exact, and well inside the bound.
    assert!(worst > 0.0 && worst < 1.0, "worst error/bound {worst}");
    for o in &r.outcomes {
        assert!(o.error_ratio.is_some(), "{} recorded no ratio", o.scenario);
    }
}

#[test]
fn integer_models_stay_exact() {
    let r = run_on(
        &EngineSpec::Reference,
        vec![
            fixture("conv_stack.onnx"),
            fixture("pytorch/stack_torchscript.onnx"),
        ],
        &NUMERIC,
    );
    assert!(failures(&r).is_empty(), "{:#?}", failures(&r));
    assert_eq!(r.worst_error_ratio(), Some(0.0));
}

#[test]
fn layout_and_padding_defects_are_caught_on_float_weights() {
    for defect in ["defect:off_by_one_padding", "defect:transposed_kernel"] {
        let spec: EngineSpec = defect.parse().unwrap();
        let r = run_on(&spec, float_models(), &NUMERIC);
        let f = failures(&r);
        assert!(!f.is_empty(), "{defect} passed every float model");
        // Every float model exposes it (each has padding and a kernel that
        // is not symmetric under transposition).
        for m in float_models() {
            let name = m.file_name().unwrap().to_string_lossy().into_owned();
            assert!(
                f.iter().any(|l| l.contains(&name)),
                "{defect} not caught on {name}: {f:#?}"
            );
        }
        assert!(f.iter().any(|l| l.contains("the bound")), "{f:#?}");
    }
}

/// A chain of `layers` 3x3 convs over 64 channels with integer weights
/// 1..=2 on an 8x8 input: exact integers whose partial sums pass 2^24.
fn deep_integer_stack(layers: usize) -> ConvChain {
    let layer = |i: usize, c_in: usize| ConvLayer {
        weight_name: format!("l{i}.weight"),
        bias_name: None,
        c_out: 64,
        kernel: vec![3, 3],
        attrs: ConvAttrs {
            pads: vec![1, 1, 1, 1],
            ..ConvAttrs::default()
        },
        weight: (0..64 * c_in * 9).map(|k| 1.0 + (k % 2) as f32).collect(),
        bias: Vec::new(),
        relu: false,
    };
    ConvChain {
        input_name: "x".into(),
        input_shape: vec![1, 3, 8, 8],
        output_name: "y".into(),
        layers: (0..layers)
            .map(|i| layer(i, if i == 0 { 3 } else { 64 }))
            .collect(),
    }
}

#[test]
fn integer_weights_past_2_pow_24_use_the_bound() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("deep.onnx");
    let chain = deep_integer_stack(4);
    std::fs::write(&path, chain.to_bytes()).unwrap();
    // The model's own values pass 2^24, where f32 sums round.
    let oracle = Oracle::new(Model::load(&path).unwrap());
    let x = Tensor::f32([1, 3, 8, 8], check::ints(192, 7));
    let out = oracle.infer(&[x]).unwrap();
    let max = out[0].values.iter().fold(0f64, |m, v| m.max(v.abs()));
    assert!(max > 16_777_216.0, "max {max}");
    assert!(out[0].bounds.iter().any(|&b| b > 0.0));
    let r = run_on(&EngineSpec::Reference, vec![path], &NUMERIC);
    assert!(failures(&r).is_empty(), "{:#?}", failures(&r));
}

#[test]
fn bounds_are_zero_for_small_integers_and_scale_with_precision() {
    let chain = ConvChain {
        input_name: "x".into(),
        input_shape: vec![1, 2, 5, 5],
        output_name: "y".into(),
        layers: vec![ConvLayer {
            weight_name: "w".into(),
            bias_name: None,
            c_out: 3,
            kernel: vec![3, 3],
            attrs: ConvAttrs::default(),
            weight: check::ints(54, 1),
            bias: Vec::new(),
            relu: true,
        }],
    };
    let model = Model::from_bytes(&chain.to_bytes(), Path::new("m.onnx")).unwrap();
    let ints = Tensor::f32([1, 2, 5, 5], check::ints(50, 2));
    let floats = Tensor::f32(
        [1, 2, 5, 5],
        (0..50).map(|i| (i as f32 * 0.37).sin()).collect(),
    );
    let bound = |p: Precision, x: &Tensor| {
        let judge = Judge {
            precision: p,
            ..Judge::F32
        };
        let o = Oracle::with_judge(model.clone(), judge);
        o.infer(std::slice::from_ref(x)).unwrap()[0]
            .bounds
            .iter()
            .fold(0f64, |m, &b| m.max(b))
    };
    for p in Precision::ALL {
        assert_eq!(bound(p, &ints), 0.0, "{p}: small integers are exact");
    }
    let b32 = bound(Precision::F32, &floats);
    let b16 = bound(Precision::F16, &floats);
    let bb16 = bound(Precision::Bf16, &floats);
    assert!(b32 > 0.0 && b32 < b16 && b16 < bb16, "{b32} {b16} {bb16}");
}

/// An engine that rounds every operand to `format` (f16 or bf16) and
/// stores every output in it, around `inner` (the reference engine, or one
/// with a seeded defect): another precision than the oracle's and the
/// reference's. It declares `declared`.
struct F16Factory {
    declared: Precision,
    format: Precision,
    inner: EngineSpec,
}

impl F16Factory {
    /// The reference engine in f16, declaring `declared`.
    fn f16(declared: Precision) -> Self {
        F16Factory {
            declared,
            format: Precision::F16,
            inner: EngineSpec::Reference,
        }
    }
}

fn round_to(format: Precision, t: &Tensor) -> Tensor {
    let round = |x: f32| match format {
        Precision::Bf16 => half::bf16::from_f32(x).to_f32(),
        _ => half::f16::from_f32(x).to_f32(),
    };
    match &t.data {
        TensorData::F32(v) => Tensor {
            shape: t.shape.clone(),
            data: TensorData::F32(v.iter().map(|&x| round(x)).collect()),
        },
        _ => t.clone(),
    }
}

struct F16Engine {
    inner: Box<dyn Engine>,
    description: Description,
    format: Precision,
}

struct F16Context(Box<dyn Context>, Precision);

struct F16Refitter(Box<dyn Refitter>, Precision);

impl EngineFactory for F16Factory {
    fn name(&self) -> String {
        format!(
            "{}-{}-engine-declaring-{}",
            self.inner, self.format, self.declared
        )
    }

    fn open(&self, model: &Path, options: &BuildOptions) -> Result<Box<dyn Engine>> {
        let inner = self.inner.open(model, options)?;
        if options.enable_refit {
            // The model's own weights, rounded as the engine stores them.
            let parsed = Model::load(model)?;
            let mut r = inner.refitter()?;
            for i in parsed.initializers() {
                let t = Tensor::f32(
                    i.info
                        .shape
                        .iter()
                        .map(|d| d.unwrap_or(0))
                        .collect::<Vec<_>>(),
                    i.values.clone(),
                );
                r.set_named_weights(&i.info.name, &round_to(self.format, &t))?;
            }
            r.refit()?;
        }
        let mut description = inner.description().clone();
        description.info.name = self.name();
        description.info.contract.precision = self.declared;
        Ok(Box::new(F16Engine {
            inner,
            description,
            format: self.format,
        }))
    }
}

impl Engine for F16Engine {
    fn description(&self) -> &Description {
        &self.description
    }
    fn context(&self) -> Result<Box<dyn Context>> {
        Ok(Box::new(F16Context(self.inner.context()?, self.format)))
    }
    fn refitter(&self) -> Result<Box<dyn Refitter>> {
        Ok(Box::new(F16Refitter(self.inner.refitter()?, self.format)))
    }
}

impl Context for F16Context {
    fn infer(&mut self, inputs: &[Tensor]) -> Result<Vec<Tensor>> {
        let inputs: Vec<Tensor> = inputs.iter().map(|t| round_to(self.1, t)).collect();
        Ok(self
            .0
            .infer(&inputs)?
            .iter()
            .map(|t| round_to(self.1, t))
            .collect())
    }
}

impl Refitter for F16Refitter {
    fn set_named_weights(&mut self, name: &str, weights: &Tensor) -> Result<()> {
        self.0.set_named_weights(name, &round_to(self.1, weights))
    }
    fn missing(&self) -> Result<Vec<String>> {
        self.0.missing()
    }
    fn refit(&mut self) -> Result<()> {
        self.0.refit()
    }
}

#[test]
fn an_f16_engine_passes_declaring_f16_and_fails_declaring_f32() {
    let honest = run_on(&F16Factory::f16(Precision::F16), float_models(), &NUMERIC);
    assert!(failures(&honest).is_empty(), "{:#?}", failures(&honest));
    let worst = honest.worst_error_ratio().unwrap();
    assert!(worst > 0.0 && worst <= 1.0, "{worst}");

    let overclaiming = run_on(
        &F16Factory::f16(Precision::F32),
        float_models(),
        &["refittable_parity"],
    );
    let f = failures(&overclaiming);
    assert_eq!(f.len(), 4, "{f:#?}");
    // The evidence: the exact value with its bound, the error against the
    // bound, and the error in ulps.
    assert!(
        f.iter()
            .all(|l| l.contains(" ± ") && l.contains("x the bound") && l.contains("ulp")),
        "{f:#?}"
    );
}

#[test]
fn fixed_tolerances_override_the_bound() {
    let scratch = tempfile::tempdir().unwrap();
    let mut c = CheckConfig::with_fixtures(scratch.path()).unwrap();
    c.models = float_models();
    c.only = vec!["refittable_parity".into()];
    c.tolerance = Some(check::Tolerance {
        abs: 1e-2,
        rel: 0.0,
    });
    let r = check::run(&F16Factory::f16(Precision::F32), &c, &mut |_| {});
    assert!(failures(&r).is_empty(), "{:#?}", failures(&r));
    assert!(r
        .outcomes
        .iter()
        .all(|o| matches!(o.verdict, Verdict::Pass(_))));
}

/// The stress scenarios on engines in f16 and bf16 declaring it: the
/// correct one passes every race, and torn copies and lost updates are
/// still caught in those precisions.
#[test]
fn stress_scenarios_judge_f16_and_bf16_engines() {
    const STRESS: [&str; 3] = ["stress_r1w1", "stress_disjoint", "stress_vendor"];
    let stress = |factory: &F16Factory, only: &[&str]| {
        let scratch = tempfile::tempdir().unwrap();
        let mut c = CheckConfig::with_fixtures(scratch.path()).unwrap();
        c.only = only.iter().map(|s| s.to_string()).collect();
        c.stress_ms = 300;
        check::run(factory, &c, &mut |_| {})
    };
    for format in [Precision::F16, Precision::Bf16] {
        let correct = F16Factory {
            declared: format,
            format,
            inner: EngineSpec::Reference,
        };
        let r = stress(&correct, &STRESS);
        assert!(failures(&r).is_empty(), "{format}: {:#?}", failures(&r));
        assert_eq!(r.outcomes.len(), STRESS.len());
        assert!(r
            .outcomes
            .iter()
            .all(|o| matches!(o.verdict, Verdict::Pass(_))));
        // An update one writer loses to the other's publish shows as lost,
        // or, when a reader saw the lost version after its refit returned,
        // as stale: either names the race.
        for (defect, scenario, findings) in [
            ("in_place_copy", "stress_r1w1", &["torn"][..]),
            ("no_writer_lock", "stress_disjoint", &["lost", "stale"][..]),
        ] {
            let broken = F16Factory {
                declared: format,
                format,
                inner: format!("defect:{defect}").parse().unwrap(),
            };
            let r = stress(&broken, &[scenario]);
            let f = failures(&r);
            assert_eq!(f.len(), 1, "{format} {defect}: {:#?}", r.outcomes);
            assert!(
                findings.iter().any(|w| f[0].contains(w)),
                "{format} {defect}: {f:#?}"
            );
        }
    }
}

/// Another precision on the real networks: the f16 engine declaring f16
/// passes the toy ResNet and transformer block (against the oracle and
/// against fresh builds of itself), and the property test's
/// residual CNNs and attention blocks; declaring f32, the oracle's f32
/// bound catches it on the transformer block (the toy ResNet's worst-case
/// bound, over six layers of accumulation, leaves room for f16 outputs).
#[test]
fn an_f16_engine_passes_the_real_networks_declaring_f16() {
    let models = vec![fixture("resnet_tiny.onnx"), fixture("attention_tiny.onnx")];
    let mut only = NUMERIC.to_vec();
    only.extend(["model_based", "warm_equals_cold", "history_independence"]);
    let honest = run_on(&F16Factory::f16(Precision::F16), models.clone(), &only);
    assert!(failures(&honest).is_empty(), "{:#?}", failures(&honest));
    assert_eq!(honest.outcomes.len(), 13);
    let overclaiming = run_on(&F16Factory::f16(Precision::F32), models, &["round_trip"]);
    let f = failures(&overclaiming);
    assert!(
        f.iter()
            .any(|l| l.contains("attention_tiny") && l.contains("x the bound")),
        "{f:#?}"
    );
}
