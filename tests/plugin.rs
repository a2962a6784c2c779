//! The plugin ABI end to end: the reference plugin (this crate's cdylib)
//! and faulty plugins in C (`plugins/faulty.c`), all built by the tests.

use std::path::Path;

use rstest::rstest;

use refit_harness::engine::{refit_all, BuildOptions};
use refit_harness::faulty_plugins;
use refit_harness::ffi::{LoadError, Plugin};
use refit_harness::spec::EngineSpec;
use refit_harness::{Error, Tensor};

use crate::common::{c_plugin, example_plugin, failures, fixture, reference_plugin};

fn load_error(fault: &str) -> LoadError {
    match Plugin::load(&c_plugin(fault)) {
        Err(Error::PluginLoad(e)) => *e,
        Err(other) => panic!("FAULT_{fault}: expected a load error, got {other}"),
        Ok(_) => panic!("FAULT_{fault}: the plugin loaded"),
    }
}

#[test]
fn each_load_failure_has_its_own_error_with_the_path() {
    let e = load_error("WRONG_VERSION");
    assert!(
        matches!(e, LoadError::UnsupportedVersion { requested: 1, .. }),
        "{e}"
    );
    let e = load_error("NO_ENTRY_POINT");
    assert!(
        matches!(e, LoadError::MissingEntryPoint { .. })
            && e.to_string().contains("refit_plugin_get_api"),
        "{e}"
    );
    let e = load_error("NULL_SLOT");
    assert!(
        matches!(e, LoadError::NullSlot { slot: "infer", .. }),
        "{e}"
    );
    assert!(e.to_string().contains("libfault_null_slot"), "{e}");
    let missing = std::path::Path::new("/nonexistent/libshim.so");
    match Plugin::load(missing) {
        Err(Error::PluginLoad(e)) => assert!(
            matches!(*e, LoadError::Open { .. })
                && e.to_string().contains("/nonexistent/libshim.so"),
            "{e}"
        ),
        other => panic!("expected an open error, got {:?}", other.err()),
    }
}

#[test]
fn a_failure_without_a_message_is_reported_as_such() {
    let engine = EngineSpec::Plugin(c_plugin("NO_MESSAGE"))
        .open(&fixture("seed_conv.onnx"), &BuildOptions::default())
        .unwrap();
    let err = refit_all(engine.as_ref(), [("weight", &Tensor::full([10], 1.0))])
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("refitter_set_named_weights failed (status 4)")
            && err.contains("failed without a message"),
        "{err}"
    );
}

#[test]
fn an_independent_c_engine_passes_the_seed_scenario_and_garbage_is_caught() {
    let run = |fault: &str| {
        let dir = tempfile::tempdir().unwrap();
        let mut config = refit_harness::check::CheckConfig::with_fixtures(dir.path()).unwrap();
        config.only = vec!["seed".into(), "stress_vendor".into()];
        config.stress_ms = 200;
        refit_harness::check::run(&EngineSpec::Plugin(c_plugin(fault)), &config, &mut |_| {})
    };
    let good = run("NONE");
    assert!(!good.failed(), "{:?}", good.outcomes);
    let bad = run("GARBAGE_AFTER_REFIT");
    let seed = bad.outcomes.iter().find(|o| o.scenario == "seed").unwrap();
    assert!(
        seed.verdict.is_fail() && seed.verdict.detail().contains("observed [12345.0]"),
        "{}",
        seed.verdict.detail()
    );
}

#[test]
fn the_reference_plugin_serves_what_the_reference_engine_serves() {
    let plugin = EngineSpec::Plugin(reference_plugin());
    let engine = plugin
        .open(&fixture("conv_stack.onnx"), &BuildOptions::default())
        .unwrap();
    assert!(
        engine.info().name.starts_with("plugin:"),
        "{}",
        engine.info().name
    );
    assert_eq!(engine.weights().len(), 5);
    let x = refit_harness::io::read_npy(&fixture("pytorch/stack_input.npy")).unwrap();
    let torch = EngineSpec::Plugin(reference_plugin())
        .open(
            &fixture("pytorch/stack_dynamo.onnx"),
            &BuildOptions::default(),
        )
        .unwrap();
    let y = torch.context().unwrap().infer(&[x]).unwrap();
    assert_eq!(
        y[0],
        refit_harness::io::read_npy(&fixture("pytorch/stack_expected.npy")).unwrap()
    );
    // Errors come back with the plugin's own message.
    let err = refit_all(engine.as_ref(), [("conv1.bias", &Tensor::full([15], 1.0))])
        .unwrap_err()
        .to_string();
    assert!(
        err.contains(
            "weight 'conv1.bias': expected shape [16] (16 values), found [15] (15 values)"
        ),
        "{err}"
    );
    let plain = plugin
        .open(&fixture("seed_conv.onnx"), &BuildOptions::refit(false))
        .unwrap();
    assert!(plain
        .refitter()
        .err()
        .unwrap()
        .to_string()
        .contains("enable_refit"));
}

/// Through the plugin ABI the harness makes no copy of its own: after a
/// warm-up, `infer_into` allocates nothing (in-process, through the loader
/// over a library, whose own allocations are its allocator's, and through
/// the loader over the linked reference plugin, both sides counted), and a
/// refit of 1 MiB allocates far less than the weight (the plugin reads the
/// caller's buffer in place into its own). The values follow the refit.
#[test]
fn the_abi_makes_no_copies_of_its_own() {
    let seed = fixture("seed_conv.onnx");
    let options = BuildOptions::default();
    let open = |name: &str, model: &Path| -> Box<dyn refit_harness::Engine> {
        match name {
            "reference" => EngineSpec::Reference.open(model, &options).unwrap(),
            "plugin" => EngineSpec::Plugin(reference_plugin())
                .open(model, &options)
                .unwrap(),
            _ => Box::new(
                Plugin::linked("linked")
                    .unwrap()
                    .open(model, &options)
                    .unwrap(),
            ),
        }
    };
    let x = refit_harness::demo::seed_input();
    let scratch = tempfile::tempdir().unwrap();
    let big = scratch.path().join("sized.onnx");
    std::fs::write(&big, refit_harness::bench::sized_model(1 << 20).to_bytes()).unwrap();
    for name in ["reference", "plugin", "linked"] {
        let engine = open(name, &seed);
        let mut ctx = engine.context().unwrap();
        let mut out = Vec::new();
        ctx.infer_into(std::slice::from_ref(&x), &mut out).unwrap();
        let info = allocation_counter::measure(|| {
            for _ in 0..10 {
                ctx.infer_into(std::slice::from_ref(&x), &mut out).unwrap();
            }
        });
        assert_eq!(info.count_total, 0, "{name}: {info:?}");
        assert_eq!(out[0].as_f32(), Some(&[0.0][..]), "{name}");
        let w = &engine.weights()[0];
        refit_all(
            engine.as_ref(),
            [(
                w.name.as_str(),
                &Tensor::full(w.static_shape().unwrap(), 1.0),
            )],
        )
        .unwrap();
        ctx.infer_into(std::slice::from_ref(&x), &mut out).unwrap();
        assert_eq!(out[0].as_f32(), Some(&[9.0][..]), "{name}");

        let engine = open(name, &big);
        let w = engine.weights()[0].clone();
        let values = [1.0, 2.0].map(|v| Tensor::full(w.static_shape().unwrap(), v));
        for v in &values {
            refit_all(engine.as_ref(), [(w.name.as_str(), v)]).unwrap();
        }
        let info = allocation_counter::measure(|| {
            refit_all(engine.as_ref(), [(w.name.as_str(), &values[0])]).unwrap();
        });
        assert!(info.bytes_total < (1 << 18), "{name}: {info:?}");
    }
}

/// The reference plugin serves the null engine for `{"engine": "null"}`
/// (the floor `bench` measures through the ABI) and names a wrong engine.
#[test]
fn the_reference_plugin_serves_the_null_engine_on_request() {
    let seed = fixture("seed_conv.onnx");
    let with = |json: &str| BuildOptions {
        engine_options: Some(json.into()),
        ..BuildOptions::default()
    };
    let null = EngineSpec::Plugin(reference_plugin())
        .open(&seed, &with(r#"{"engine": "null"}"#))
        .unwrap();
    assert!(null.info().name.contains("null"), "{}", null.info().name);
    let w = &null.weights()[0];
    refit_all(
        null.as_ref(),
        [(
            w.name.as_str(),
            &Tensor::full(w.static_shape().unwrap(), 1.0),
        )],
    )
    .unwrap();
    let y = null
        .context()
        .unwrap()
        .infer(&[refit_harness::demo::seed_input()])
        .unwrap();
    assert_eq!(
        y[0].as_f32(),
        Some(&[0.0][..]),
        "the null engine does no work"
    );
    let err = EngineSpec::Plugin(reference_plugin())
        .open(&seed, &with(r#"{"engine": "fast"}"#))
        .err()
        .unwrap()
        .to_string();
    assert!(
        err.contains("engine 'fast' is not one of 'reference', 'null'"),
        "{err}"
    );
}

#[test]
fn contexts_keep_the_library_and_engine_alive() {
    let engine = EngineSpec::Plugin(reference_plugin())
        .open(&fixture("seed_conv.onnx"), &BuildOptions::default())
        .unwrap();
    let mut ctx = engine.context().unwrap();
    let mut refitter = engine.refitter().unwrap();
    drop(engine);
    refitter
        .set_named_weights("weight", &Tensor::full([1, 1, 3, 3], 2.0))
        .unwrap();
    refitter.refit().unwrap();
    assert_eq!(
        ctx.infer(&[Tensor::full([1, 1, 3, 3], 1.0)]).unwrap()[0].as_f32(),
        Some(&[18.0][..])
    );
}

#[rstest]
#[case::missing_library(
    "plugin:/nonexistent/libvendor.so",
    "cannot open plugin /nonexistent/libvendor.so"
)]
#[case::empty_path("plugin:", "unknown engine 'plugin:'")]
fn a_named_plugin_that_cannot_load_is_a_clear_failure(#[case] spec: &str, #[case] needle: &str) {
    let err = spec
        .parse::<EngineSpec>()
        .and_then(|s| s.open(&fixture("seed_conv.onnx"), &BuildOptions::default()))
        .err()
        .expect("must fail")
        .to_string();
    assert!(err.contains(needle), "{err}");
}

/// An engine written in C from the header alone, running 2-D convolutions
/// only in its own summation order: it passes `check`, with the 1-D model,
/// the toy real networks (ops beyond Conv and Relu) and the generated
/// models it cannot run counted as skips, not failures.
#[test]
fn a_2d_only_c_engine_passes_check_with_skips() {
    let spec = EngineSpec::Plugin(example_plugin("NONE"));
    let scratch = tempfile::tempdir().unwrap();
    let mut c = refit_harness::check::CheckConfig::with_fixtures(scratch.path()).unwrap();
    c.seconds = 10.0;
    c.models.extend(
        ["float_stack_dynamo.onnx", "float_grouped_torchscript.onnx"]
            .map(|m| fixture(&format!("pytorch/{m}"))),
    );
    c.only = [
        "refittable_parity",
        "round_trip",
        "partial_refit",
        "bad_input",
        "model_based",
        "stress_r1w1",
        "stress_disjoint",
    ]
    .map(String::from)
    .to_vec();
    let r = refit_harness::check::run(&spec, &c, &mut |_| {});
    let failed = failures(&r);
    assert!(failed.is_empty(), "{failed:#?}");
    let (_, _, skipped) = r.counts();
    assert_eq!(
        skipped, 12,
        "conv1d, resnet_tiny and attention_tiny in the four per-model scenarios"
    );
    for o in r
        .outcomes
        .iter()
        .filter(|o| matches!(o.verdict, refit_harness::check::Verdict::Skip(_)))
    {
        let why = match o.model.as_str() {
            "conv1d.onnx" => "2-D convolutions only",
            "resnet_tiny.onnx" => "op 'BatchNormalization': this engine runs Conv and Relu only",
            "attention_tiny.onnx" => "op 'MatMul': this engine runs Conv and Relu only",
            m => panic!("{m} skipped: {}", o.verdict.detail()),
        };
        assert!(o.verdict.detail().contains(why), "{}", o.verdict.detail());
    }
    let mb = r
        .outcomes
        .iter()
        .find(|o| o.scenario == "model_based")
        .unwrap();
    assert!(
        mb.verdict.detail().contains("refused as unsupported"),
        "{}",
        mb.verdict.detail()
    );
    // Float weights in another summation order: not exact, within the bound.
    assert!(r.worst_error_ratio().unwrap() > 0.0);

    // With --fail-on-skip, a gate that needs full coverage fails.
    c.only = vec!["round_trip".into()];
    c.fail_on_skip = true;
    let r = refit_harness::check::run(&spec, &c, &mut |_| {});
    assert_eq!(r.counts().1, 3, "{:?}", r.outcomes);
}

/// `REFIT_ENGINE=plugin:... cargo test` on a plugin that copies weights in
/// place while inferences run: the stress tests fail, naming torn outputs;
/// the same tests pass on the correct build of the same engine.
#[test]
fn cargo_test_on_a_torn_plugin_fails() {
    let exe = std::env::current_exe().unwrap();
    let run = |fault: &str, test: &str| {
        let out = std::process::Command::new(&exe)
            .args([test, "--exact", "--test-threads", "1"])
            .env(
                "REFIT_ENGINE",
                format!("plugin:{}", example_plugin(fault).display()),
            )
            .output()
            .unwrap();
        (
            out.status.success(),
            String::from_utf8_lossy(&out.stdout).into_owned()
                + &String::from_utf8_lossy(&out.stderr),
        )
    };
    for test in [
        "check::under_test::stress_r1w1",
        "check::under_test::stress_disjoint",
    ] {
        let (ok, out) = run("TORN", test);
        assert!(!ok, "{test} passed on the torn plugin:\n{out}");
        assert!(out.contains("1 failed"), "{out}");
        assert!(out.contains("torn") || out.contains("stale"), "{out}");
        let (ok, out) = run("NONE", test);
        assert!(ok, "{test} failed on the correct plugin:\n{out}");
        assert!(out.contains("1 passed"), "{out}");
    }
}

fn harness() -> &'static Path {
    Path::new(env!("CARGO_BIN_EXE_refit-harness"))
}

/// Plugins that segfault, abort or hang: the scenario that meets the fault
/// gets CRASHED (with the signal) or HUNG, naming the ABI call in flight.
#[test]
fn crashes_and_hangs_are_verdicts_naming_the_call_in_flight() {
    let scratch = tempfile::tempdir().unwrap();
    for fault in [
        "SEGV_IN_INFER",
        "ABORT_IN_REFIT",
        "HANG_IN_REFIT",
        "HANG_INFER_WHILE_REFIT",
    ] {
        let (caught, how) =
            faulty_plugins::verdict(fault, &c_plugin(fault), scratch.path(), harness());
        assert!(caught, "{fault}: {how}");
    }
}

/// `check` on a plugin that segfaults: every scenario still has its row
/// in every report file, the crash among them, and `check` exits 1.
#[test]
fn a_crash_leaves_a_complete_report() {
    let report = tempfile::tempdir().unwrap();
    let engine = format!("plugin:{}", c_plugin("SEGV_IN_INFER").display());
    let scenarios = ["seed", "round_trip", "bad_input", "stress_vendor"];
    let mut args = vec![
        "check".to_string(),
        "--engine".into(),
        engine,
        "--model".into(),
        fixture("seed_conv.onnx").display().to_string(),
        "--timeout".into(),
        "20".into(),
        "--report".into(),
        report.path().display().to_string(),
    ];
    for s in scenarios {
        args.extend(["--scenario".to_string(), s.to_string()]);
    }
    let out = std::process::Command::new(harness())
        .args(&args)
        .output()
        .unwrap();
    let text =
        String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{text}");
    let csv = std::fs::read_to_string(report.path().join("check.csv")).unwrap();
    let rows: Vec<&str> = csv.lines().skip(1).collect();
    assert_eq!(rows.len(), scenarios.len(), "{csv}");
    for s in scenarios {
        assert!(
            rows.iter().any(|r| r.contains(&format!(",{s},"))),
            "{s} missing:\n{csv}"
        );
    }
    let seed = rows.iter().find(|r| r.contains(",seed,")).unwrap();
    assert!(
        seed.contains("CRASHED") && seed.contains("SIGSEGV") && seed.contains("in flight: infer"),
        "{seed}"
    );
    let junit = std::fs::read_to_string(report.path().join("check.junit.xml")).unwrap();
    assert!(junit.contains("<error"), "{junit}");
    assert!(report.path().join("check.md").is_file());
    assert!(text.contains("CRASHED"), "{text}");
}

/// `REFIT_ENGINE=plugin:... cargo test` on a plugin that segfaults: the
/// test fails with the crash as its message; the test binary lives on.
#[test]
fn cargo_test_on_a_crashing_plugin_fails_with_the_crash() {
    let out = std::process::Command::new(std::env::current_exe().unwrap())
        .args(["check::under_test::seed", "--exact", "--test-threads", "1"])
        .env(
            "REFIT_ENGINE",
            format!("plugin:{}", c_plugin("SEGV_IN_INFER").display()),
        )
        .output()
        .unwrap();
    let text =
        String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{text}");
    assert!(text.contains("1 failed"), "{text}");
    assert!(
        text.contains("CRASHED") && text.contains("SIGSEGV"),
        "{text}"
    );
}

/// `--engine-options` reach a plugin's `options_json` unchanged, beside
/// the harness's own `enable_refit` (which wins).
#[test]
fn engine_options_pass_through_to_options_json() {
    let o = BuildOptions {
        enable_refit: false,
        engine_options: Some(r#"{"device": 1, "arch": "mlu370", "enable_refit": true}"#.into()),
    };
    let v: serde_json::Value = serde_json::from_str(&o.options_json().unwrap()).unwrap();
    assert_eq!(
        v,
        serde_json::json!({"device": 1, "arch": "mlu370", "enable_refit": false})
    );
    assert_eq!(
        BuildOptions::default().options_json().unwrap(),
        r#"{"enable_refit":true}"#
    );
    let bad = BuildOptions {
        engine_options: Some("[1]".into()),
        ..BuildOptions::default()
    };
    assert!(bad
        .options_json()
        .unwrap_err()
        .to_string()
        .contains("expected a JSON object, found an array"));
    // The example plugin refuses a vendor option it does not take, naming
    // it, and builds with the harness's own.
    let spec = EngineSpec::Plugin(example_plugin("NONE"));
    let err = spec
        .open(&fixture("seed_conv.onnx"), &o)
        .err()
        .map(|e| e.to_string())
        .unwrap_or_default();
    assert!(
        err.contains("unknown option 'arch': this plugin takes enable_refit"),
        "{err}"
    );
    let o = BuildOptions::refit(false);
    let engine = spec.open(&fixture("seed_conv.onnx"), &o).unwrap();
    // REFIT_DISABLED from a plugin is the error a Rust engine returns.
    assert!(
        matches!(engine.refitter(), Err(Error::RefitDisabled)),
        "enable_refit false must hold"
    );
}

/// `--sanitizer`: ThreadSanitizer catches the example copying weights in
/// place while inferences read them, AddressSanitizer catches weights
/// freed while an inference still reads them, each reported with its kind
/// and the engine's frames; the correct example under ThreadSanitizer
/// passes.
#[test]
fn sanitizers_catch_their_defects_and_pass_a_correct_engine() {
    use refit_harness::check::sanitizer::Sanitizer;
    for s in [Sanitizer::Thread, Sanitizer::Address] {
        s.runtime().unwrap_or_else(|e| panic!("{e}"));
    }
    let scratch = tempfile::tempdir().unwrap();
    for s in [Sanitizer::Thread, Sanitizer::Address] {
        let (caught, how) = faulty_plugins::sanitizer_verdict(s, scratch.path(), harness());
        assert!(caught, "{}: {how}", s.name());
        assert!(how.contains(" in "), "no frame: {how}");
    }
    // The correct example, instrumented: no report.
    let dir = scratch.path().join("c-plugins");
    let lib = faulty_plugins::build_sanitized(
        &faulty_plugins::example_source(),
        "NONE",
        Sanitizer::Thread,
        &dir,
    )
    .unwrap();
    let iso =
        refit_harness::check::Isolation::new(harness(), EngineSpec::Plugin(lib.to_path_buf()))
            .with_sanitizer(Sanitizer::Thread)
            .unwrap();
    let mut c = refit_harness::check::CheckConfig::with_fixtures(scratch.path()).unwrap();
    c.only = ["seed", "round_trip", "stress_r1w1", "stress_disjoint"]
        .map(String::from)
        .to_vec();
    c.stress_ms = 300;
    c.isolation = Some(iso);
    let r = refit_harness::check::run(&EngineSpec::Plugin(lib), &c, &mut |_| {});
    let failed = failures(&r);
    assert!(failed.is_empty(), "{failed:#?}");
}

/// Every tensor's values start 64-byte aligned, however they were made,
/// and survive the round trip through `Aligned` unchanged.
#[test]
fn tensor_data_is_64_byte_aligned() {
    use refit_harness::tensor::{Aligned, ALIGN};
    for n in [0usize, 1, 3, 9, 17, 1000, 1 << 20] {
        let v: Vec<f32> = (0..n).map(|i| i as f32).collect();
        let a = Aligned::from_vec(v.clone());
        assert_eq!(a.as_ptr() as usize % ALIGN, 0, "{n}");
        assert_eq!(&a[..], &v[..]);
        let b = a.clone();
        assert_eq!(b.as_ptr() as usize % ALIGN, 0, "{n} cloned");
        assert_eq!(a.into_vec(), v);
        let t = Tensor::f32([n], (0..n).map(|i| i as f32).collect());
        assert_eq!(t.data.as_bytes().as_ptr() as usize % ALIGN, 0);
    }
}

/// Little-endian bytes are read in place only where they are aligned for
/// their type; `assign` keeps a buffer of the same dtype and replaces one of
/// another, and the values always come through exactly.
#[test]
fn bytes_are_read_in_place_when_aligned_and_decoded_otherwise() {
    use refit_harness::tensor::{DType, TensorData, Values};
    let values: Vec<f32> = (0..9).map(|i| i as f32 - 4.5).collect();
    let t = Tensor::f32([9], values.clone());
    let bytes = t.data.as_bytes();
    let Some(Values::F32(v)) = Values::from_le_bytes(DType::F32, bytes) else {
        panic!("aligned f32 bytes are read in place");
    };
    assert_eq!(v.as_ptr().cast::<u8>(), bytes.as_ptr());
    // The same values one byte off their alignment: decoded, not read.
    let mut shifted = vec![0u8; bytes.len() + 1];
    shifted[1..].copy_from_slice(bytes);
    assert!(Values::from_le_bytes(DType::F32, &shifted[1..]).is_none());
    assert!(Values::from_le_bytes(DType::F32, &bytes[..7]).is_none());
    let mut data = TensorData::F32(vec![0.0; 9].into());
    let before = data.as_bytes().as_ptr();
    data.assign_le_bytes(DType::F32, &shifted[1..]).unwrap();
    assert_eq!(data, t.data);
    data.assign(Values::F32(&values));
    assert_eq!((data.as_bytes().as_ptr(), &data), (before, &t.data));
    assert!(data.assign_le_bytes(DType::F32, &bytes[..7]).is_none());
    assert_eq!(data, t.data, "a failed assign changes nothing");
    data.assign_le_bytes(DType::F16, &[0x00, 0x3c]).unwrap();
    assert_eq!(data, TensorData::F16(vec![half::f16::ONE].into()));
}

/// The optional `engine_numerics_ext` slot (appended to the table, the
/// struct sized by the caller): read where a plugin has it, the defaults
/// where it does not (a NULL slot, or a plugin built before the slot
/// existed, whose table ends earlier), refused naming the field when out of
/// range; the reference plugin's exports serve the reference engine's.
#[test]
fn numerics_ext_is_read_when_present_and_defaults_otherwise() {
    use refit_harness::engine::{Allowance, Family, Numerics};
    let seed = fixture("seed_conv.onnx");
    let open = |variant: &str| {
        EngineSpec::Plugin(example_plugin(variant)).open(&seed, &BuildOptions::default())
    };
    let n = open("NUMERICS_EXT").unwrap().info().contract.numerics;
    assert!(n.refit_bit_identical);
    for f in Family::ALL {
        assert_eq!(n.allowance(f), Allowance { rel: 1.0, abs: 2.0 });
    }
    for variant in ["NONE", "V1_TABLE"] {
        assert_eq!(
            open(variant).unwrap().info().contract.numerics,
            Numerics::DEFAULT,
            "{variant}"
        );
    }
    let e = open("BAD_NUMERICS_EXT").err().unwrap().to_string();
    assert!(
        e.contains("engine_numerics_ext")
            && e.contains("the Softmax allowance is 1 relative, -1 absolute"),
        "{e}"
    );
    let linked = Plugin::linked("linked")
        .unwrap()
        .open(&seed, &BuildOptions::default())
        .unwrap();
    assert_eq!(
        refit_harness::Engine::info(&linked).contract.numerics,
        Numerics::DEFAULT
    );
}

/// An engine that refuses every model it is given judged nothing: `check`
/// exits 1 saying so, with the engine's reason (the suite's test fails on
/// the same report); one model it can run among them is enough.
#[test]
fn an_engine_that_refuses_every_model_fails_the_run() {
    let lib = example_plugin("NONE");
    let engine = format!("plugin:{}", lib.display());
    let dir = tempfile::tempdir().unwrap();
    let conv1d = fixture("conv1d.onnx");
    let run = |models: &[&std::path::Path]| {
        let mut cmd = std::process::Command::new(env!("CARGO_BIN_EXE_refit-harness"));
        cmd.args(["check", "--engine", &engine, "--scenario", "round_trip"]);
        for m in models {
            cmd.arg("--model").arg(m);
        }
        cmd.arg("--report").arg(dir.path());
        let out = cmd.output().unwrap();
        (
            out.status.code(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    };
    let (code, err) = run(&[&conv1d]);
    assert_eq!(code, Some(1), "{err}");
    assert!(
        err.contains("no model was judged: the engine refused every one as unsupported")
            && err.contains("2-D convolutions only"),
        "{err}"
    );
    let (code, err) = run(&[&conv1d, &fixture("conv_stack.onnx")]);
    assert_eq!(code, Some(0), "{err}");
    // The report says the same to the suite, which fails its test on it.
    let scratch = tempfile::tempdir().unwrap();
    let mut c = refit_harness::check::CheckConfig::with_fixtures(scratch.path()).unwrap();
    c.models = vec![conv1d.clone()];
    c.only = vec!["round_trip".into(), "warm_equals_cold".into()];
    let r = refit_harness::check::run(&EngineSpec::Plugin(lib.clone()), &c, &mut |_| {});
    let why = r.refused_every_model().expect("every model refused");
    assert!(why.contains("2-D convolutions only"), "{why}");
}
