//! ONNX Runtime under the harness, through the plugin ABI (the cdylib this
//! crate builds, loaded like any vendor's): a second oracle for the
//! reference engine, and the harness's verdicts on the refit modes. Needs
//! `ORT_DYLIB_PATH` (`plugins/onnxruntime/setup.sh` prints it) and the
//! library built (`cargo build -p refit-onnxruntime`); without either every
//! test fails saying so.

use std::path::{Path, PathBuf};

use refit_harness::check::{self, CheckConfig};
use refit_harness::engine::{refit_all, BuildOptions};
use refit_harness::model::Model;
use refit_harness::oracle::{first_mismatch, Judge, Oracle};
use refit_harness::spec::EngineSpec;
use refit_harness::{Engine, Error, Tensor};

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// The plugin library cargo built beside this test binary.
fn plugin() -> PathBuf {
    assert!(
        std::env::var_os("ORT_DYLIB_PATH").is_some_and(|p| !p.is_empty()),
        "set ORT_DYLIB_PATH: export ORT_DYLIB_PATH=$(plugins/onnxruntime/setup.sh)"
    );
    let exe = std::env::current_exe().unwrap();
    let lib = exe
        .parent()
        .unwrap()
        .parent()
        .unwrap()
        .join("librefit_onnxruntime.so");
    assert!(
        lib.exists(),
        "{} is missing: `cargo test` builds the rlib only; run `cargo build -p refit-onnxruntime` first",
        lib.display()
    );
    lib
}

fn open(
    spec: &EngineSpec,
    model: &Path,
    options: Option<&str>,
) -> refit_harness::Result<Box<dyn Engine>> {
    spec.open(
        model,
        &BuildOptions {
            engine_options: options.map(str::to_string),
            ..BuildOptions::default()
        },
    )
}

/// Every fixture and PyTorch export, with an input for it.
/// The `.onnx` files of a folder, sorted.
fn onnx_files(dir: &std::path::Path) -> Vec<PathBuf> {
    let mut names: Vec<_> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "onnx"))
        .collect();
    names.sort();
    names
}

fn models() -> Vec<(PathBuf, Vec<Tensor>)> {
    let scratch = root().join("target/onnxruntime-models");
    refit_harness::fixtures::write_all(&scratch).unwrap();
    let mut out = Vec::new();
    for (name, _) in refit_harness::fixtures::models() {
        let model = refit_harness::model::Model::load(&scratch.join(name)).unwrap();
        let shape = model.inputs()[0].static_shape().unwrap();
        let n = shape.iter().product();
        let x = Tensor::f32(
            shape,
            refit_harness::fixtures::pattern(n, 3)
                .iter()
                .map(|v| v / 7.0)
                .collect(),
        );
        out.push((scratch.join(name), vec![x]));
    }
    let torch = root().join("fixtures/pytorch");
    for p in onnx_files(&torch) {
        let stem = p.file_stem().unwrap().to_string_lossy().into_owned();
        let base = stem.rsplit_once('_').unwrap().0;
        let x = refit_harness::io::read_npy(&torch.join(format!("{base}_input.npy"))).unwrap();
        out.push((p, vec![x]));
    }
    // The real networks (fixtures/graphs/make.py), each with its input;
    // the one of ops outside the oracle's set has none.
    let graphs = root().join("fixtures/graphs");
    for p in onnx_files(&graphs) {
        let stem = p.file_stem().unwrap().to_string_lossy().into_owned();
        let input = graphs.join(format!("{stem}.input.npy"));
        if input.is_file() {
            out.push((p, vec![refit_harness::io::read_npy(&input).unwrap()]));
        }
    }
    out
}

/// ONNX Runtime and the reference engine agree with the oracle within its
/// f32 bound on every model ONNX Runtime runs, with the model's weights and
/// after a refit of every weight; a model ONNX Runtime cannot run is
/// refused as unsupported at load, never a wrong answer.
#[test]
fn onnxruntime_and_the_reference_engine_agree_within_the_oracle_bound() {
    let ort = EngineSpec::Plugin(plugin());
    let mut agreed = Vec::new();
    let mut refused = Vec::new();
    for (path, x) in models() {
        let name = path.file_name().unwrap().to_string_lossy().into_owned();
        let engine = match open(&ort, &path, None) {
            Ok(e) => e,
            Err(e) if e.is_unsupported() => {
                refused.push(format!("{name}: {e}"));
                continue;
            }
            Err(e) => panic!("{name}: {e}"),
        };
        let reference = open(&EngineSpec::Reference, &path, None).unwrap();
        let mut oracle = Oracle::new(Model::load(&path).unwrap());
        for round in 0..2 {
            if round == 1 {
                let new: Vec<(String, Tensor)> = engine
                    .weights()
                    .iter()
                    .enumerate()
                    .map(|(i, w)| {
                        let shape = w.static_shape().unwrap();
                        let n = shape.iter().product();
                        // A variance stays positive: the outputs stay defined.
                        let positive = oracle.model().needs_positive(i);
                        let v: Vec<f32> = refit_harness::fixtures::pattern(n, 11 + i)
                            .iter()
                            .map(|v| {
                                if positive {
                                    v.abs() / 5.0 + 0.5
                                } else {
                                    v / 5.0
                                }
                            })
                            .collect();
                        oracle.set(i, v.clone());
                        (w.name.clone(), Tensor::f32(shape, v))
                    })
                    .collect();
                for e in [&engine, &reference] {
                    refit_all(e.as_ref(), new.iter().map(|(n, t)| (n.as_str(), t))).unwrap();
                }
            }
            let expected = oracle.infer(&x).unwrap();
            for (who, e) in [("onnxruntime", &engine), ("reference", &reference)] {
                let y = e.context().unwrap().infer(&x).unwrap();
                for (o, exp) in y.iter().zip(expected.iter()) {
                    assert_eq!(o.shape, exp.shape, "{who} {name} round {round}");
                    if let Err((i, m)) = first_mismatch(exp, o.as_f32().unwrap(), &Judge::F32) {
                        panic!(
                            "{who} {name} round {round}: element {i}: expected {}, observed {}",
                            m.expected_text(),
                            m.observed_text()
                        );
                    }
                }
            }
        }
        agreed.push(name);
    }
    eprintln!("agreed: {agreed:?}\nrefused: {refused:#?}");
    assert!(
        agreed.len() >= 20,
        "agreed on {agreed:?}; refused {refused:#?}"
    );
}

/// The plugin with fixed engine options, for an in-process check.
struct WithOptions(EngineSpec, String);

impl check::EngineFactory for WithOptions {
    fn name(&self) -> String {
        format!("{} {}", self.0, self.1)
    }

    fn open(&self, model: &Path, options: &BuildOptions) -> refit_harness::Result<Box<dyn Engine>> {
        self.0.open(
            model,
            &BuildOptions {
                engine_options: Some(self.1.clone()),
                ..options.clone()
            },
        )
    }
}

fn check(options: &str, scenarios: &[&str], stress_ms: u64) -> check::CheckReport {
    let scratch = tempfile::tempdir().unwrap();
    let mut config = CheckConfig::with_fixtures(scratch.path()).unwrap();
    config.only = scenarios.iter().map(|s| s.to_string()).collect();
    config.stress_ms = stress_ms;
    let factory = WithOptions(EngineSpec::Plugin(plugin()), options.into());
    check::run(&factory, &config, &mut |_| {})
}

fn verdicts(r: &check::CheckReport) -> Vec<String> {
    r.outcomes
        .iter()
        .map(|o| {
            format!(
                "{} {} {}: {}",
                o.scenario,
                o.model,
                o.verdict.label(),
                o.verdict.detail()
            )
        })
        .collect()
}

/// `rebuild` (the default) keeps the contract it declares under the stress
/// scenarios; the two ways a user reaches for instead are caught: weights
/// given with `AddInitializer` at ONNX Runtime's default optimization level
/// are never served (the layout optimizations keep the file's values), and
/// writing them in place under a running inference tears outputs.
#[test]
fn the_harness_passes_rebuild_and_catches_what_users_try_instead() {
    let r = check(
        r#"{"refit_mode": "rebuild"}"#,
        &["seed", "stress_r4w1", "stress_vendor"],
        500,
    );
    assert!(!r.failed(), "{:#?}", verdicts(&r));

    for options in [
        r#"{"rebuild_with": "add_initializer"}"#,
        r#"{"refit_mode": "in_place"}"#,
    ] {
        let r = check(options, &["seed"], 500);
        let v = verdicts(&r);
        assert!(
            r.failed() && v[0].contains("expected 9, observed [0.0]"),
            "{options}: {v:#?}"
        );
    }

    let r = check(
        r#"{"refit_mode": "in_place", "graph_optimization_level": "disable"}"#,
        &["seed", "stress_r4w1"],
        2000,
    );
    let v = verdicts(&r);
    assert!(v[0].starts_with("seed - pass"), "{v:#?}");
    assert!(v[1].contains("FAIL") && v[1].contains("torn"), "{v:#?}");
}

/// Options are checked: a typo is an error naming the key, not a run on
/// the defaults.
#[test]
fn unknown_or_malformed_options_are_refused_by_name() {
    let seed = root().join("fixtures/seed_conv.onnx");
    let ort = EngineSpec::Plugin(plugin());
    for (options, needle) in [
        (r#"{"refit_mod": "in_place"}"#, "unknown option 'refit_mod'"),
        (
            r#"{"refit_mode": "inplace"}"#,
            "refit_mode 'inplace': expected 'rebuild' or 'in_place'",
        ),
        (
            r#"{"graph_optimization_level": 3}"#,
            "graph_optimization_level: expected a string",
        ),
        (
            r#"{"prepacking": "no"}"#,
            "prepacking: expected true or false",
        ),
    ] {
        let e = open(&ort, &seed, Some(options)).err().unwrap();
        assert!(
            matches!(e, Error::Plugin { .. }) && e.to_string().contains(needle),
            "{options}: {e}"
        );
    }
}
