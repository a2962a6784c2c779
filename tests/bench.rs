//! The bench sweep and the regression gate: a short run written to a
//! temporary folder and read back, and the gate on runs that did and did not
//! regress.

use std::time::Duration;

use refit_harness::bench::{self, BenchConfig, Row};
use refit_harness::spec::EngineSpec;

fn tiny(dir: &std::path::Path) -> BenchConfig {
    BenchConfig {
        samples: 6,
        sample_time: Duration::from_millis(3),
        sizes: vec![36, 4096],
        scratch: dir.to_path_buf(),
        resnet18: Some(32),
        rounds: 2,
    }
}

#[test]
fn a_short_sweep_writes_csv_plots_and_summary() {
    let scratch = tempfile::tempdir().unwrap();
    let rows = bench::run(&EngineSpec::Reference, &tiny(scratch.path()), &mut |_| {}).unwrap();
    for (b, p) in [
        ("refit", "36"),
        ("memcpy", "4096"),
        ("refit_rate", "seed_conv"),
        ("refit_rate", "infer_seed_conv"),
        ("infer", "conv_wide"),
        ("infer_under_refit", "w1_every_1ms"),
        ("infer_under_refit", "w1_full_speed"),
        ("visibility", "seed_conv"),
        ("visibility", "infer_seed_conv"),
        ("refit_vs_reload", "refit"),
        ("oracle", "conv64_56x56_f32"),
        ("oracle", "conv64_56x56_f16"),
        ("oracle_cached", "conv64_56x56"),
        ("latency", "infer_conv_stack"),
        ("latency", "infer_conv_stack_w1_every_1ms"),
        ("latency", "infer_conv_stack_w1_full_speed"),
        ("latency", "refit_16777216"),
        ("latency", "memcpy_16777216"),
        ("floor", "infer_seed_conv"),
        ("floor", "refit_seed_conv"),
        ("floor", "abi_infer_seed_conv"),
        ("floor", "abi_refit_seed_conv"),
        ("abi", "infer_seed_conv_in_process"),
        ("abi", "infer_seed_conv"),
        ("abi", "memcpy_16777216"),
        ("abi", "refit_16777216"),
        ("refit_tax", "infer_conv_stack_refit_disabled"),
        ("refit_tax", "infer_conv_stack"),
        ("resnet18", "memcpy_all"),
        ("resnet18", "refit_all"),
        ("resnet18", "refit_one_tensor"),
        ("resnet18", "reload"),
        ("resnet18", "infer_reference_32x32"),
        ("resnet18", "oracle_32x32"),
        ("latency", "infer_resnet18_32x32"),
        ("latency", "infer_resnet18_32x32_w1_refit_all"),
    ] {
        let r = rows
            .iter()
            .find(|r| r.benchmark == b && r.parameter == p)
            .unwrap_or_else(|| panic!("no {b}/{p}"));
        assert!(
            r.median_ns > 0.0 && r.p10_ns <= r.median_ns && r.median_ns <= r.p90_ns,
            "{r:?}"
        );
    }
    assert!(
        rows.iter()
            .find(|r| r.benchmark == "refit")
            .unwrap()
            .ratio()
            .is_some(),
        "refit has its memcpy baseline"
    );
    // Two rounds of three samples asked, at least the sampler's minimum
    // taken in each: each batch-timed row has both rounds' samples, with
    // the median's interval and each round's median; the baselines of the
    // machine are marked.
    let taken = 2 * bench::sampler::MIN_SAMPLES.max(3);
    for r in rows
        .iter()
        .filter(|r| !matches!(r.benchmark.as_str(), "latency" | "visibility"))
    {
        assert_eq!((r.samples, r.round_medians.len()), (taken, 2), "{r:?}");
        let (lo, hi) = r.median_ci.unwrap();
        assert!(lo <= r.median_ns && r.median_ns <= hi, "{r:?}");
    }
    for (b, p, only) in [
        ("memcpy", "36", true),
        ("floor", "abi_infer_seed_conv", true),
        ("abi", "infer_seed_conv_in_process", true),
        ("resnet18", "memcpy_all", true),
        ("visibility", "infer_seed_conv", true),
        ("latency", "memcpy_16777216", true),
        ("latency", "refit_16777216", false),
        ("visibility", "seed_conv", false),
        ("refit", "36", false),
        ("abi", "infer_seed_conv", false),
        ("infer", "conv_wide", false),
    ] {
        let r = rows
            .iter()
            .find(|r| r.benchmark == b && r.parameter == p)
            .unwrap();
        assert_eq!(r.baseline_only, only, "{r:?}");
    }
    // Rows bound by the core carry a figure in machine units (a fixed
    // piece of arithmetic sampled beside them); copies, refits and reloads
    // do not.
    for (b, p, units) in [
        ("infer", "conv_wide", true),
        ("infer", "seed_conv", true),
        ("latency", "infer_conv_stack", true),
        ("visibility", "infer_seed_conv", true),
        ("refit_rate", "infer_seed_conv", true),
        ("refit", "36", false),
        ("memcpy", "36", false),
        ("refit_vs_reload", "reload", false),
        ("latency", "refit_16777216", false),
        ("latency", "memcpy_16777216", false),
        ("resnet18", "refit_one_tensor", false),
    ] {
        let r = rows
            .iter()
            .find(|r| r.benchmark == b && r.parameter == p)
            .unwrap();
        assert_eq!(r.machine.is_some(), units, "{r:?}");
        if let (Some(m), Some((lo, hi))) = (r.machine, r.machine_ci) {
            assert!(m > 0.0 && lo <= m && m <= hi, "{r:?}");
        }
    }
    // Every ratio divides by the row its baseline names, measured in the
    // same run (a ratio over another measurement misleads the gate), and
    // carries its interval; alternated samples are paired, as many as the
    // baseline's.
    for r in rows.iter().filter(|r| r.baseline_ns.is_some()) {
        let (b, p) = r.baseline.split_once('/').unwrap_or_else(|| {
            panic!(
                "{}/{}: baseline '{}' names no row",
                r.benchmark, r.parameter, r.baseline
            )
        });
        let base = rows
            .iter()
            .find(|x| x.benchmark == b && x.parameter == p)
            .unwrap_or_else(|| panic!("{}/{}: no baseline row {b}/{p}", r.benchmark, r.parameter));
        assert_eq!(
            r.baseline_ns,
            Some(base.median_ns),
            "{}/{} divides by something other than its baseline {}",
            r.benchmark,
            r.parameter,
            r.baseline
        );
        let (lo, hi) = r.ratio_ci.unwrap();
        assert!(
            lo <= r.ratio().unwrap() && r.ratio().unwrap() <= hi,
            "{r:?}"
        );
        assert!(!r.paired || r.samples == base.samples, "{r:?} {base:?}");
    }
    for p in [
        "refit/36",
        "refit_rate/seed_conv",
        "abi/infer_seed_conv",
        "abi/refit_16777216",
        "latency/refit_16777216",
        "refit_tax/infer_conv_stack",
        "infer_under_refit/w1_every_1ms",
        "infer_under_refit/w1_full_speed",
        "visibility/seed_conv",
        "oracle/conv64_56x56_f16",
        "oracle_cached/conv64_56x56",
        "refit_vs_reload/refit",
        "resnet18/refit_all",
        "resnet18/oracle_32x32",
    ] {
        assert!(
            rows.iter()
                .any(|r| format!("{}/{}", r.benchmark, r.parameter) == p && r.paired),
            "{p} not paired"
        );
    }
    // ResNet-18: refit of every weight against memcpy, one tensor and a
    // reload; the oracle in reference-engine inferences; p99 under refit.
    let md = bench::summary(&rows);
    for headline in [
        "- ResNet-18 (11.7 M parameters in 102 tensors, 44.6 MiB): a refit of every weight takes",
        "reloading the engine instead costs",
        "- The check oracle's expectation for ResNet-18 (32x32) costs",
        "- ResNet-18 inference (32x32): p50",
        "- The refittability tax: inference (conv_stack) on the engine built with refit takes",
        "x a memcpy of as many bytes timed beside each).",
    ] {
        assert!(md.contains(headline), "{headline} not in\n{md}");
    }
    // The ABI's overhead is measured against its in-process and memcpy
    // baselines whatever the engine under test.
    for p in ["infer_seed_conv", "refit_16777216"] {
        let r = rows
            .iter()
            .find(|r| r.benchmark == "abi" && r.parameter == p)
            .unwrap();
        assert!(r.ratio().is_some() && r.engine == "reference", "{r:?}");
    }
    // Tails: per-call latencies with p50 <= p90 <= p99 <= max, kept
    // through bench.csv and headlined in summary.md.
    for r in rows.iter().filter(|r| r.benchmark == "latency") {
        let (p99, max) = (r.p99_ns.unwrap(), r.max_ns.unwrap());
        assert!(
            r.median_ns <= r.p90_ns && r.p90_ns <= p99 && p99 <= max && r.samples >= 20,
            "{r:?}"
        );
    }
    let out = tempfile::tempdir().unwrap();
    let files = bench::write_report(&rows, out.path()).unwrap();
    let names: Vec<String> = files
        .iter()
        .map(|f| f.file_name().unwrap().to_string_lossy().into_owned())
        .collect();
    for n in [
        "bench.csv",
        "refit_latency.svg",
        "infer_under_refit.svg",
        "refit_vs_reload.svg",
        "summary.md",
    ] {
        assert!(names.iter().any(|x| x == n), "{n} missing from {names:?}");
    }
    let svg = std::fs::read_to_string(out.path().join("refit_latency.svg")).unwrap();
    assert!(
        svg.starts_with("<svg") && svg.contains("refit latency vs memcpy"),
        "{}",
        &svg[..200.min(svg.len())]
    );
    let md = std::fs::read_to_string(out.path().join("summary.md")).unwrap();
    assert!(
        md.contains("inferences of the seed model")
            && md.contains("The plugin ABI's overhead")
            && md.contains("through the plugin ABI; subtract")
            && md.contains("![refit latency](refit_latency.svg)"),
        "{md}"
    );
    let back = bench::read_csv(&out.path().join("bench.csv")).unwrap();
    assert_eq!(back.len(), rows.len());
    for (a, b) in back.iter().zip(&rows) {
        assert_eq!(
            (&a.benchmark, &a.parameter, &a.baseline),
            (&b.benchmark, &b.parameter, &b.baseline)
        );
        assert!(
            (a.median_ns - b.median_ns).abs() <= 0.05 + b.median_ns * 1e-6,
            "{a:?} {b:?}"
        );
    }
}

/// The summary states the ABI's ratios against their targets and flags one
/// over its target.
#[test]
fn the_summary_flags_an_abi_ratio_over_its_target() {
    let rows = |infer: f64, refit: f64| {
        vec![
            row("abi", "infer_seed_conv_in_process", 100.0, 0.01, "", None),
            row(
                "abi",
                "infer_seed_conv",
                infer,
                0.01,
                "abi/infer_seed_conv_in_process",
                Some(100.0),
            ),
            row("abi", "memcpy_16777216", 1000.0, 0.01, "", None),
            row(
                "abi",
                "refit_16777216",
                refit,
                0.01,
                "abi/memcpy_16777216",
                Some(1000.0),
            ),
        ]
    };
    let within = bench::summary(&rows(140.0, 1040.0));
    assert!(
        within.contains("seed inference 1.40x the same engine in-process")
            && within.contains("refit of 16 MiB 1.04x a memcpy")
            && !within.contains("OVER TARGET"),
        "{within}"
    );
    let over = bench::summary(&rows(210.0, 1040.0));
    assert!(
        over.contains(
            "2.10x the same engine in-process (samples alternating; target <= 1.5, OVER TARGET)"
        ),
        "{over}"
    );
}

/// A row whose median, and ratio, have 95% intervals `spread` wide
/// (relative), as p10-p90.
fn row(
    benchmark: &str,
    parameter: &str,
    median: f64,
    spread: f64,
    baseline: &str,
    baseline_ns: Option<f64>,
) -> Row {
    let ci = |v: f64| Some((v * (1.0 - spread / 2.0), v * (1.0 + spread / 2.0)));
    Row {
        engine: "reference".into(),
        benchmark: benchmark.into(),
        parameter: parameter.into(),
        median_ns: median,
        p10_ns: median * (1.0 - spread / 2.0),
        p90_ns: median * (1.0 + spread / 2.0),
        samples: 10,
        baseline: baseline.into(),
        baseline_ns,
        median_ci: ci(median),
        ratio_ci: baseline_ns.and_then(|b| ci(median / b)),
        ..Row::default()
    }
}

#[test]
fn the_gate_flags_a_ratio_that_got_worse_beyond_noise_only() {
    let before = vec![
        row("refit", "1024", 150.0, 0.02, "memcpy/1024", Some(100.0)),
        row("memcpy", "1024", 100.0, 0.02, "", None),
    ];
    // Twice as slow on a twice as fast machine: the same ratio, no regression.
    let faster_machine = vec![
        row("refit", "1024", 75.0, 0.02, "memcpy/1024", Some(50.0)),
        row("memcpy", "1024", 50.0, 0.02, "", None),
    ];
    let c = bench::gate(&before, &faster_machine, 10.0);
    assert!(
        c.iter()
            .find(|c| c.name == "refit/1024")
            .is_some_and(|c| c.compared == "ratio" && !c.regressed),
        "{c:?}"
    );
    // The ratio went from 1.5 to 2.0 with 2% noise: a regression.
    let worse = vec![
        row("refit", "1024", 200.0, 0.02, "memcpy/1024", Some(100.0)),
        row("memcpy", "1024", 100.0, 0.02, "", None),
    ];
    let c = bench::gate(&before, &worse, 10.0);
    assert!(
        c.iter()
            .find(|c| c.name == "refit/1024")
            .is_some_and(|c| c.regressed && (c.change_pct - 33.3).abs() < 0.5),
        "{c:?}"
    );
    // A 13% change measured with 30% wide intervals is not judged: the
    // change's interval is wider than the 10% threshold (a 10% slowdown
    // could not be told from none), so the gate says so and how many
    // samples would do.
    let noisy = vec![
        row("refit", "1024", 170.0, 0.3, "memcpy/1024", Some(100.0)),
        row("memcpy", "1024", 100.0, 0.3, "", None),
    ];
    let c = bench::gate(&before, &noisy, 10.0);
    assert!(c.iter().all(|c| !c.regressed && c.too_noisy), "{c:?}");
    assert!(c.iter().all(|c| c.samples_needed > 10), "{c:?}");
    // As wide, a third faster: the whole interval lies below the
    // threshold, so whatever the change is, it is no regression beyond 10%.
    let faster = vec![
        row("refit", "1024", 100.0, 0.3, "memcpy/1024", Some(100.0)),
        row("memcpy", "1024", 100.0, 0.3, "", None),
    ];
    let c = bench::gate(&before, &faster, 10.0);
    let refit = c.iter().find(|c| c.name == "refit/1024").unwrap();
    assert!(
        !refit.regressed
            && !refit.too_noisy
            && refit.interval_pct.1 - refit.interval_pct.0 > 10.0
            && refit.interval_pct.1 < 10.0,
        "{refit:?}"
    );
    // Narrow intervals are judged.
    let quiet = vec![
        row("refit", "1024", 150.0, 0.01, "memcpy/1024", Some(100.0)),
        row("memcpy", "1024", 100.0, 0.01, "", None),
    ];
    assert!(bench::gate(&before, &quiet, 10.0)
        .iter()
        .all(|c| !c.too_noisy && !c.regressed));
}

#[test]
fn the_gate_command_exits_1_on_a_regression_and_2_on_a_bad_file() {
    let dir = tempfile::tempdir().unwrap();
    let (b, a, bad) = (
        dir.path().join("b.csv"),
        dir.path().join("a.csv"),
        dir.path().join("bad.csv"),
    );
    bench::write_csv(
        &[
            row("refit", "1024", 150.0, 0.02, "memcpy/1024", Some(100.0)),
            row("memcpy", "1024", 100.0, 0.02, "", None),
        ],
        &b,
    )
    .unwrap();
    bench::write_csv(
        &[
            row("refit", "1024", 200.0, 0.02, "memcpy/1024", Some(100.0)),
            row("memcpy", "1024", 100.0, 0.02, "", None),
        ],
        &a,
    )
    .unwrap();
    std::fs::write(&bad, "engine,benchmark\nreference,refit\n").unwrap();
    let run = |args: &[&std::path::Path]| {
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_refit-harness"))
            .arg("gate")
            .arg("--baseline")
            .arg(args[0])
            .arg("--current")
            .arg(args[1])
            .output()
            .unwrap();
        (
            out.status.code().unwrap_or(-1),
            String::from_utf8_lossy(&out.stdout).into_owned()
                + &String::from_utf8_lossy(&out.stderr),
        )
    };
    let (code, out) = run(&[&b, &a]);
    assert_eq!(code, 1, "{out}");
    assert!(
        out.contains("refit/1024") && out.contains("REGRESSED"),
        "{out}"
    );
    let (code, out) = run(&[&b, &b]);
    assert_eq!(code, 0, "{out}");
    // A run noisier than the threshold: exit 2, with the samples needed.
    let noisy = dir.path().join("noisy.csv");
    bench::write_csv(
        &[
            row("refit", "1024", 150.0, 0.4, "memcpy/1024", Some(100.0)),
            row("memcpy", "1024", 100.0, 0.4, "", None),
        ],
        &noisy,
    )
    .unwrap();
    let (code, out) = run(&[&b, &noisy]);
    assert_eq!(code, 2, "{out}");
    assert!(
        out.contains("TOO NOISY") && out.contains("samples each in") && out.contains("--rounds"),
        "{out}"
    );
    // A regression beside a row too noisy to judge: exit 1, naming the
    // regressed row; a change far beyond the noise is a regression even on
    // a noisy row.
    let mixed = dir.path().join("mixed.csv");
    bench::write_csv(
        &[
            row("refit", "1024", 200.0, 0.02, "memcpy/1024", Some(100.0)),
            row("memcpy", "1024", 100.0, 0.02, "", None),
            row("infer", "seed_conv", 100.0, 0.4, "", None),
        ],
        &mixed,
    )
    .unwrap();
    let with_infer = dir.path().join("b2.csv");
    bench::write_csv(
        &[
            row("refit", "1024", 150.0, 0.02, "memcpy/1024", Some(100.0)),
            row("memcpy", "1024", 100.0, 0.02, "", None),
            row("infer", "seed_conv", 100.0, 0.02, "", None),
        ],
        &with_infer,
    )
    .unwrap();
    let (code, out) = run(&[&with_infer, &mixed]);
    assert_eq!(code, 1, "{out}");
    assert!(
        out.contains("1 benchmark(s) regressed beyond 10%: refit/1024 (1 more too noisy to judge)"),
        "{out}"
    );
    let slow = [
        row("refit", "1024", 150.0, 0.02, "memcpy/1024", Some(100.0)),
        row("memcpy", "1024", 100.0, 0.02, "", None),
        row("infer", "seed_conv", 300.0, 0.4, "", None),
    ];
    let c = bench::gate(&bench::read_csv(&with_infer).unwrap(), &slow, 10.0);
    let infer = c.iter().find(|c| c.name == "infer/seed_conv").unwrap();
    assert!(infer.regressed && !infer.too_noisy, "{infer:?}");
    let (code, out) = run(&[&b, &bad]);
    assert_eq!(code, 2, "{out}");
    assert!(
        out.contains("bad.csv") && out.contains("expected the columns"),
        "{out}"
    );
}

/// A malformed bench.csv is refused naming the file, the row and the
/// column.
#[test]
fn a_malformed_bench_csv_names_the_row_and_column() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("bench.csv");
    std::fs::write(
        &path,
        "engine,benchmark,parameter,statistic,value,unit,samples,p10,p90,baseline,ratio\n\
         reference,refit,36,median_time,320.5,ns,7,300.0,350.0,memcpy/36,100.0\n\
         reference,refit,4096,median_time,fast,ns,7,300.0,350.0,memcpy/4096,\n",
    )
    .unwrap();
    let e = bench::read_csv(&path).unwrap_err().to_string();
    assert!(
        e.contains("bench.csv") && e.contains("row 3") && e.contains("value"),
        "{e}"
    );
    std::fs::write(
        &path,
        "engine,benchmark,parameter,statistic,value,unit,samples,p10,p90,baseline,ratio\n\
         reference,refit,36,median_time,320.5,ns,7,300.0,350.0,memcpy/36,100.0\n",
    )
    .unwrap();
    let rows = bench::read_csv(&path).unwrap();
    assert_eq!(rows[0].baseline_ns, Some(3.205));
}

/// An engine whose every inference takes 10 ms (as on a device): the
/// reference engine behind a sleep, counting calls.
struct Slow(std::sync::Arc<std::sync::atomic::AtomicUsize>);

struct SlowEngine(
    Box<dyn refit_harness::Engine>,
    std::sync::Arc<std::sync::atomic::AtomicUsize>,
);

struct SlowContext(
    Box<dyn refit_harness::Context>,
    std::sync::Arc<std::sync::atomic::AtomicUsize>,
);

impl refit_harness::check::EngineFactory for Slow {
    fn name(&self) -> String {
        "slow".into()
    }
    fn open(
        &self,
        model: &std::path::Path,
        options: &refit_harness::engine::BuildOptions,
    ) -> refit_harness::Result<Box<dyn refit_harness::Engine>> {
        Ok(Box::new(SlowEngine(
            EngineSpec::Reference.open(model, options)?,
            self.0.clone(),
        )))
    }
}

impl refit_harness::Engine for SlowEngine {
    fn description(&self) -> &refit_harness::Description {
        self.0.description()
    }
    fn context(&self) -> refit_harness::Result<Box<dyn refit_harness::Context>> {
        Ok(Box::new(SlowContext(self.0.context()?, self.1.clone())))
    }
    fn refitter(&self) -> refit_harness::Result<Box<dyn refit_harness::Refitter>> {
        self.0.refitter()
    }
}

impl refit_harness::Context for SlowContext {
    fn infer(
        &mut self,
        inputs: &[refit_harness::Tensor],
    ) -> refit_harness::Result<Vec<refit_harness::Tensor>> {
        self.1.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        std::thread::sleep(Duration::from_millis(10));
        self.0.infer(inputs)
    }
}

/// `bench --quick` on an engine whose inference takes 10 ms: every
/// measurement stays inside its budget (counted in inferences, not timed:
/// under 2,500 of them, 25 s of sleeping, with --quick's budgets), and
/// every row states the samples it really took.
#[test]
fn a_slow_engine_gets_a_bounded_sweep_with_honest_samples() {
    let scratch = tempfile::tempdir().unwrap();
    let mut cfg = BenchConfig::new(true, scratch.path());
    cfg.sizes = vec![36, 4096];
    cfg.resnet18 = Some(32);
    let calls = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let rows = bench::run(&Slow(calls.clone()), &cfg, &mut |_| {}).unwrap();
    let n = calls.load(std::sync::atomic::Ordering::Relaxed);
    assert!(n < 2500, "{n} inferences of 10 ms");
    for r in &rows {
        assert!(r.samples >= 3, "{r:?}");
    }
    let lat = rows
        .iter()
        .find(|r| r.benchmark == "latency" && r.parameter == "infer_conv_stack")
        .unwrap();
    assert!(lat.median_ns >= 10e6, "{lat:?}");
    assert!(lat.samples >= 30 && lat.samples < 1000, "{lat:?}");
}

/// The reference engine refusing conv_stack, as an engine lacking a
/// capability does.
struct Picky;

impl refit_harness::check::EngineFactory for Picky {
    fn name(&self) -> String {
        "picky".into()
    }
    fn open(
        &self,
        model: &std::path::Path,
        options: &refit_harness::engine::BuildOptions,
    ) -> refit_harness::Result<Box<dyn refit_harness::Engine>> {
        if model.ends_with("conv_stack.onnx") {
            return Err(refit_harness::Error::Unsupported {
                reason: "dilated SAME_UPPER convs".into(),
            });
        }
        EngineSpec::Reference.open(model, options)
    }
}

/// A model the engine refuses is skipped with its reason, not a failed
/// run: no row for it, and the measurements made on conv_stack move to
/// conv_depthwise, named so.
#[test]
fn a_model_the_engine_refuses_is_skipped_in_the_sweep() {
    let scratch = tempfile::tempdir().unwrap();
    let mut said = Vec::new();
    let rows = bench::run(&Picky, &tiny(scratch.path()), &mut |p| {
        said.push(p.to_string())
    })
    .unwrap();
    assert!(
        !rows.iter().any(|r| r.parameter.contains("conv_stack")),
        "{rows:#?}"
    );
    assert!(
        said.iter()
            .any(|p| p.starts_with("infer/conv_stack.onnx skipped: unsupported: dilated")),
        "{said:#?}"
    );
    for p in [
        "infer_conv_depthwise",
        "infer_conv_depthwise_w1_every_1ms",
        "infer_conv_depthwise_w1_full_speed",
    ] {
        assert!(
            rows.iter()
                .any(|r| r.benchmark == "latency" && r.parameter == p),
            "no latency/{p}"
        );
    }
    let md = bench::summary(&rows);
    assert!(
        md.contains("Inference latency (conv_depthwise, each call timed)")
            && md.contains("Inference p99 with a writer refitting every ms"),
        "{md}"
    );
}

/// `gate --criterion`: criterion's own change estimates, a benchmark
/// failing only when the whole confidence interval of its change lies
/// above the threshold; no estimates, or a file that is not criterion's,
/// exit 2 with the reason.
#[test]
fn the_gate_judges_criterion_change_estimates() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("criterion");
    let bench = |id: &str, mean: f64, lo: f64, hi: f64| {
        let d = root.join(id);
        std::fs::create_dir_all(d.join("change")).unwrap();
        std::fs::create_dir_all(d.join("new")).unwrap();
        let ci = |p: f64, l: f64, h: f64| {
            format!(
                r#"{{"confidence_interval":{{"confidence_level":0.95,"lower_bound":{l},"upper_bound":{h}}},"point_estimate":{p},"standard_error":0.01}}"#
            )
        };
        std::fs::write(
            d.join("change/estimates.json"),
            format!(
                r#"{{"mean":{},"median":{}}}"#,
                ci(mean, lo, hi),
                ci(mean, lo, hi)
            ),
        )
        .unwrap();
        std::fs::write(
            d.join("new/benchmark.json"),
            format!(r#"{{"full_id":"{id}","directory_name":"{id}"}}"#),
        )
        .unwrap();
    };
    bench("refit/reference/36", 0.16, 0.12, 0.20);
    bench("infer/reference/seed_conv", 0.12, -0.05, 0.30);
    bench("refit/reference/4096", -0.02, -0.04, 0.01);
    let gate = |dir: &std::path::Path| {
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_refit-harness"))
            .args(["gate", "--criterion"])
            .arg(dir)
            .output()
            .unwrap();
        (
            out.status.code().unwrap_or(-1),
            String::from_utf8_lossy(&out.stdout).into_owned()
                + &String::from_utf8_lossy(&out.stderr),
        )
    };
    let (code, out) = gate(&root);
    assert_eq!(code, 1, "{out}");
    assert!(
        out.contains("1 benchmark(s) regressed beyond 10%: refit/reference/36")
            && out.contains("[+12.00%, +20.00%] @95%"),
        "{out}"
    );
    // A wide interval reaching above the threshold is not a regression.
    let c = refit_harness::bench::criterion_changes(&root, 10.0).unwrap();
    let wide = c
        .iter()
        .find(|c| c.name == "infer/reference/seed_conv")
        .unwrap();
    assert!(!wide.regressed && wide.change_pct > 10.0, "{wide:?}");
    let (code, out) = gate(dir.path().join("none").as_path());
    assert_eq!(code, 2, "{out}");
    assert!(out.contains("no change estimates"), "{out}");
    std::fs::write(root.join("refit/reference/36/change/estimates.json"), "{}").unwrap();
    let (code, out) = gate(&root);
    assert_eq!(code, 2, "{out}");
    assert!(
        out.contains("estimates.json") && out.contains("/mean/point_estimate"),
        "{out}"
    );
}

/// The loops `ci/instructions.sh` counts: refits, copies and inferences of
/// the seed model; `--memcpy` and `--infer` exclude each other.
#[test]
fn the_counted_loops_run() {
    let run = |extra: &[&str]| {
        std::process::Command::new(env!("CARGO_BIN_EXE_refit-harness"))
            .args(["refit-loop", "--bytes", "36", "--count", "3"])
            .args(extra)
            .output()
            .unwrap()
            .status
            .code()
    };
    assert_eq!(run(&[]), Some(0));
    assert_eq!(run(&["--memcpy"]), Some(0));
    assert_eq!(run(&["--infer"]), Some(0));
    assert_eq!(run(&["--memcpy", "--infer"]), Some(2));
}

/// Page faults this thread has taken so far.
#[cfg(all(target_os = "linux", target_env = "gnu"))]
fn thread_faults() -> i64 {
    // SAFETY: getrusage writes the struct it is given.
    let mut u: libc::rusage = unsafe { std::mem::zeroed() };
    assert_eq!(unsafe { libc::getrusage(libc::RUSAGE_THREAD, &mut u) }, 0);
    u.ru_minflt + u.ru_majflt
}

/// With the allocator set steady, blocks freed stay with the process: the
/// weights of a model of 48 MiB allocated, written and freed again and
/// again fault in no fresh page after the first time (glibc by default
/// hands the freed heap back, and each reload faults 12288 pages in
/// again: shown by leaving `steady_allocator` out).
#[test]
#[cfg(all(target_os = "linux", target_env = "gnu"))]
fn the_steady_allocator_keeps_freed_memory() {
    assert!(bench::steady_allocator());
    let cycle = || {
        let blocks: Vec<Vec<u8>> = (0..6).map(|i| vec![i as u8 + 1; 8 << 20]).collect();
        std::hint::black_box(&blocks);
    };
    cycle();
    let before = thread_faults();
    for _ in 0..3 {
        cycle();
    }
    let faults = thread_faults() - before;
    assert!(faults < 1000, "{faults} page faults in 3 cycles of 48 MiB");
}

mod statistics {
    //! The bench's statistics on synthetic samples: intervals that cover
    //! what they claim, narrow with more samples, see through a machine
    //! that drifts when samples were paired, and a gate that judges the
    //! change's interval with its multiple-comparison correction.

    use rand::rngs::Xoshiro256PlusPlus;
    use rand::{RngExt, SeedableRng};
    use refit_harness::bench::sampler::Stats;
    use refit_harness::bench::stats::{self, Estimate, Rounds};
    use refit_harness::bench::{self, Row};

    /// A standard normal draw (Box-Muller).
    fn normal(rng: &mut Xoshiro256PlusPlus) -> f64 {
        let (u, v): (f64, f64) = (rng.random(), rng.random());
        (-2.0 * (1.0 - u).ln()).sqrt() * (std::f64::consts::TAU * v).cos()
    }

    /// `n` timings whose median is `median`, log-normal with `sigma`.
    fn timings(rng: &mut Xoshiro256PlusPlus, n: usize, median: f64, sigma: f64) -> Vec<f64> {
        (0..n)
            .map(|_| median * (sigma * normal(rng)).exp())
            .collect()
    }

    fn width(i: (f64, f64)) -> f64 {
        i.1 - i.0
    }

    #[test]
    fn the_normal_quantile_and_the_correction() {
        assert!((stats::normal_quantile(0.975) - 1.959_964).abs() < 1e-5);
        assert!((stats::normal_quantile(0.5)).abs() < 1e-12);
        assert!((stats::normal_quantile(0.0005) + 3.290_527).abs() < 1e-5);
        assert!((stats::bonferroni(0.95, 10) - 0.995).abs() < 1e-12);
        assert_eq!(stats::median(&[3.0, 1.0, 2.0]), 2.0);
        assert_eq!(stats::median(&[4.0, 1.0, 2.0, 3.0]), 2.5);
    }

    /// Over 400 synthetic runs of 15 samples, the 95% interval of the
    /// median holds the true median about 95% of the time; so does the
    /// order-statistic interval used above the bootstrap's sample count.
    #[test]
    fn median_intervals_cover_the_true_median() {
        let mut rng = Xoshiro256PlusPlus::seed_from_u64(1);
        for n in [15, 31, stats::BOOTSTRAP_MAX + 1] {
            let trials = if n > 1000 { 200 } else { 400 };
            let covered = (0..trials)
                .filter(|_| {
                    let t = timings(&mut rng, n, 1000.0, 0.1);
                    let (lo, hi) = stats::median_interval(&Rounds::one(&t), stats::LEVEL);
                    lo <= 1000.0 && 1000.0 <= hi
                })
                .count() as f64
                / trials as f64;
            assert!((0.89..=0.995).contains(&covered), "n = {n}: {covered}");
        }
    }

    /// The spread of the samples stays; the median's interval narrows as
    /// one over the square root of the samples.
    #[test]
    fn intervals_narrow_with_samples_where_the_spread_does_not() {
        let mut rng = Xoshiro256PlusPlus::seed_from_u64(2);
        let mean_width = |rng: &mut Xoshiro256PlusPlus, n: usize| {
            (0..60)
                .map(|_| {
                    let t = timings(rng, n, 1000.0, 0.1);
                    width(stats::median_interval(&Rounds::one(&t), 0.95))
                })
                .sum::<f64>()
                / 60.0
        };
        let (w15, w60) = (mean_width(&mut rng, 15), mean_width(&mut rng, 60));
        assert!((0.35..=0.7).contains(&(w60 / w15)), "{w15} -> {w60}");
        let spread = |s: Stats| s.p90 - s.p10;
        let s15 = spread(Stats::of(timings(&mut rng, 15, 1000.0, 0.1)));
        let s240 = spread(Stats::of(timings(&mut rng, 240, 1000.0, 0.1)));
        assert!(s240 > 0.6 * s15, "{s15} -> {s240}");
    }

    /// A machine that slows down twofold during the run, the measured
    /// operation always 1.2x its baseline: alternated (paired) samples give
    /// a narrow interval around 1.2, the same samples taken as independent
    /// a wide one.
    #[test]
    fn a_paired_ratio_sees_through_a_drifting_machine() {
        let mut rng = Xoshiro256PlusPlus::seed_from_u64(3);
        let n = 31;
        let drift: Vec<f64> = (0..n).map(|i| 1.0 + i as f64 / n as f64).collect();
        let a: Vec<f64> = drift
            .iter()
            .map(|d| 1.2 * d * (0.01 * normal(&mut rng)).exp())
            .collect();
        let b: Vec<f64> = drift
            .iter()
            .map(|d| d * (0.01 * normal(&mut rng)).exp())
            .collect();
        let paired = stats::ratio_interval(&Rounds::one(&a), &Rounds::one(&b), true, 0.95);
        let unpaired = stats::ratio_interval(&Rounds::one(&a), &Rounds::one(&b), false, 0.95);
        assert!(
            paired.0 <= 1.2 && 1.2 <= paired.1 && width(paired) < 0.05,
            "{paired:?}"
        );
        assert!(
            width(unpaired) > 5.0 * width(paired),
            "{unpaired:?} vs {paired:?}"
        );
        // A row's paired ratio: the median of the pairs' ratios, its
        // interval theirs.
        let r = Row::measured("e", "x", "a", &Stats::of(a.clone())).against(
            "x/b",
            &Stats::of(a),
            &Stats::of(b),
            true,
        );
        let (lo, hi) = r.ratio_ci.unwrap();
        assert!(
            r.paired && lo <= 1.2 && 1.2 <= hi && hi - lo < 0.05,
            "{r:?}"
        );
    }

    /// Three pairs in five taken in stretches where the machine slowed the
    /// operation 2.4x and its baseline 2x (work of different kinds slows
    /// by different factors), the operation 1.5x its baseline at full
    /// speed: over every pair the ratio reads 1.8, the slow stretches'.
    /// With the machine unit sampled beside them, the pairs taken at full
    /// speed give 1.5, with a narrow interval.
    #[test]
    fn a_paired_ratio_is_read_at_full_speed() {
        let mut rng = Xoshiro256PlusPlus::seed_from_u64(7);
        let n = 40;
        let slow: Vec<bool> = (0..n).map(|i| i % 5 < 3).collect();
        let noisy = |rng: &mut Xoshiro256PlusPlus, x: f64| x * (0.01 * normal(rng)).exp();
        let (mut a, mut b, mut units) = (Vec::new(), Vec::new(), Vec::new());
        for &s in &slow {
            b.push(noisy(&mut rng, if s { 200.0 } else { 100.0 }));
            a.push(noisy(&mut rng, if s { 360.0 } else { 150.0 }));
            units.push(noisy(&mut rng, if s { 22.0 } else { 10.0 }));
        }
        let (ta, tb) = (Stats::of(a), Stats::of(b));
        let all = Row::measured("e", "x", "a", &ta).against("x/b", &ta, &tb, true);
        assert!((all.ratio().unwrap() - 1.8).abs() < 0.03, "{all:?}");
        let with = |t: &Stats| Stats {
            units: units.clone(),
            ..t.clone()
        };
        let (ta, tb) = (with(&ta), with(&tb));
        let r = Row::measured("e", "x", "a", &ta).against("x/b", &ta, &tb, true);
        let (lo, hi) = r.ratio_ci.unwrap();
        assert!(
            r.paired
                && (r.ratio().unwrap() - 1.5).abs() < 0.02
                && lo <= 1.5
                && 1.5 <= hi
                && hi - lo < 0.04,
            "{r:?}"
        );
        // Not paired: the ratio of the two medians.
        let u = Row::measured("e", "x", "a", &ta).against("x/b", &ta, &tb, false);
        assert!(
            !u.paired && u.ratio() == Some(ta.median / tb.median),
            "{u:?}"
        );
    }

    /// A refit of 36 bytes and the memcpy it is divided by, 8 rounds of 60
    /// pairs, as two runs of one build measured them on a shared 2-core
    /// VM: the process ran in two states, the refit 57x the memcpy or 75x.
    /// Run A spent half its rounds in each, the slow state together with a
    /// slow machine unit, so the full-speed selection kept its fast rounds
    /// alone (57x, a narrow interval); run B spent every round in the slow
    /// state with the unit at full speed (75x). At full speed the change is
    /// +30% with a narrow interval, a regression by that figure alone; over
    /// every pair run A reads between the two states, with an interval
    /// spanning them, and the gate calls it too noisy. A refit made 1.5x
    /// slower in every pair is a regression by both.
    #[test]
    fn a_state_the_machine_unit_misses_is_not_a_regression() {
        let mut rng = Xoshiro256PlusPlus::seed_from_u64(11);
        let noisy = |rng: &mut Xoshiro256PlusPlus, x: f64| x * (0.02 * normal(rng)).exp();
        // Each round: (refit ns, memcpy ns, unit ns).
        let mut run = |rounds: &[(f64, f64, f64)]| {
            let (mut refit, mut memcpy, mut units) = (Vec::new(), Vec::new(), Vec::new());
            for &(r, m, u) in rounds {
                for _ in 0..60 {
                    refit.push(noisy(&mut rng, r));
                    memcpy.push(noisy(&mut rng, m));
                    units.push(noisy(&mut rng, u));
                }
            }
            let sizes = vec![60; rounds.len()];
            let with = |s: Vec<f64>| Stats {
                units: units.clone(),
                ..Stats::in_rounds(s, sizes.clone())
            };
            let (r, m) = (with(refit), with(memcpy));
            vec![Row::measured("e", "refit", "36", &r).against("memcpy/36", &r, &m, true)]
        };
        let (fast, slow, slow_unit) = ((265.0, 4.65, 10.0), (525.0, 7.0, 10.0), 14.0);
        let a = run(&[fast, (slow.0, slow.1, slow_unit)].repeat(4));
        let b = run(&[slow; 8]);
        let c = &bench::gate(&a, &b, 10.0)[0];
        assert!(c.compared == "ratio" && c.corrected_pct.0 > 20.0, "{c:#?}");
        let all = c.all_pct.unwrap();
        assert!(
            c.full_speed_only && c.too_noisy && !c.regressed && all.0 < 10.0,
            "{c:#?}"
        );
        let report = bench::gate::report(std::slice::from_ref(c), 10.0);
        assert!(
            report.exit == 2 && report.table.contains("at full speed, "),
            "{report:?}"
        );
        // The csv keeps the figures over every pair.
        let dir = tempfile::tempdir().unwrap();
        let csv = dir.path().join("bench.csv");
        bench::write_csv(&a, &csv).unwrap();
        let back = bench::read_csv(&csv).unwrap();
        let (x, y) = (back[0].ratio_all.unwrap(), a[0].ratio_all.unwrap());
        assert!((x.value / y.value - 1.0).abs() < 1e-5, "{back:?}");
        assert!(
            x.interval.unwrap().0 < 60.0 && x.interval.unwrap().1 > 70.0,
            "{x:?}"
        );
        // Slower in every pair, whatever the state.
        let slower = run(&[
            (fast.0 * 1.5, fast.1, fast.2),
            (slow.0 * 1.5, slow.1, slow_unit),
        ]
        .repeat(4));
        let c = &bench::gate(&a, &slower, 10.0)[0];
        assert!(c.regressed && !c.full_speed_only, "{c:#?}");
    }

    /// `n` samples of an operation of `work` machine units, with the unit
    /// batch beside each: one in `slow_every` taken in a stretch where the
    /// operation ran `op_slow` times slower and the unit `unit_slow` times.
    fn in_stretches(
        rng: &mut Xoshiro256PlusPlus,
        n: usize,
        work: f64,
        slow: &dyn Fn(usize) -> bool,
        op_slow: f64,
        unit_slow: f64,
    ) -> Stats {
        let (mut samples, mut units) = (Vec::new(), Vec::new());
        for i in 0..n {
            let (fo, fu) = if slow(i) {
                (op_slow, unit_slow)
            } else {
                (1.0, 1.0)
            };
            let unit = 10.0 * fu * (0.01 * normal(rng)).exp();
            units.push(unit);
            samples.push(work * 10.0 * fo * (0.01 * normal(rng)).exp());
        }
        Stats {
            units,
            ..Stats::of(samples)
        }
    }

    /// Half to four fifths of the samples taken in stretches where the
    /// operation ran 2x slower and the machine unit 2.4x: every sample
    /// over its unit would read 83 units, not 100. Kept to the samples
    /// taken at full speed (the unit within 25% of its fastest tenth), the
    /// figure is 100 units with a narrow interval, whatever the share of
    /// slow stretches (as long as a tenth ran at full speed).
    #[test]
    fn machine_units_are_read_at_full_speed() {
        let mut rng = Xoshiro256PlusPlus::seed_from_u64(8);
        for every in [2, 3, 5] {
            let slow = move |i: usize| i % every != 0;
            let t = in_stretches(&mut rng, 60, 100.0, &slow, 2.0, 2.4);
            let fast = t.at_full_speed();
            assert!(
                fast.iter().enumerate().all(|(i, f)| *f != slow(i)),
                "every {every}: {fast:?}"
            );
            let r = Row::measured("e", "infer", "x", &t);
            let (m, (lo, hi)) = (r.machine.unwrap(), r.machine_ci.unwrap());
            assert!(
                (m - 100.0).abs() < 1.5 && lo <= m && m <= hi && hi - lo < 3.0,
                "every {every}: {r:?}"
            );
        }
        // Without units, no machine figure; every sample is at full speed.
        let plain = Stats::of(vec![1.0, 2.0, 3.0]);
        assert_eq!(plain.at_full_speed(), vec![true; 3]);
        assert_eq!(Row::measured("e", "x", "y", &plain).machine, None);
    }

    /// Keeping some samples keeps their rounds (one left empty is dropped)
    /// and the units beside them; too few kept keeps everything.
    #[test]
    fn kept_samples_keep_their_rounds() {
        let t = Stats {
            units: vec![1.0, 1.0, 9.0, 9.0, 1.0, 1.0, 1.0],
            ..Stats::in_rounds(vec![1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 7.0], vec![2, 2, 3])
        };
        let keep = t.at_full_speed();
        assert_eq!(keep, [true, true, false, false, true, true, true]);
        let k = t.kept(&keep);
        assert_eq!(k.samples, [1.0, 2.0, 5.0, 6.0, 7.0]);
        assert_eq!(k.rounds, [2, 3]);
        assert_eq!(k.units, [1.0; 5]);
        assert_eq!(k.round_medians(), [1.5, 6.0]);
        let few = [true, false, false, false, false, false, true];
        assert_eq!(t.kept(&few), t);
    }

    /// The gate compares a row on its paired ratio, else on machine units,
    /// else on an unpaired ratio, else on time: a second run on a machine
    /// half as fast (every time doubled, the machine units as before)
    /// regresses nothing; an engine 1.5x slower in machine units does.
    #[test]
    fn the_gate_reads_machine_units_where_there_is_no_paired_ratio() {
        let mut rng = Xoshiro256PlusPlus::seed_from_u64(9);
        let row = |rng: &mut Xoshiro256PlusPlus, name: &str, speed: f64, work: f64| {
            let t = in_stretches(rng, 30, work, &|_| false, 1.0, 1.0);
            let t = Stats {
                units: t.units.iter().map(|u| u * speed).collect(),
                ..Stats::of(t.samples.iter().map(|s| s * speed).collect())
            };
            Row::measured("e", "infer", name, &t)
        };
        let before = vec![
            row(&mut rng, "a", 1.0, 100.0),
            row(&mut rng, "b", 1.0, 50.0),
        ];
        let halved = vec![
            row(&mut rng, "a", 2.0, 100.0),
            row(&mut rng, "b", 2.0, 50.0),
        ];
        let c = bench::gate(&before, &halved, 10.0);
        assert!(
            c.iter()
                .all(|c| c.compared == "machine" && !c.regressed && !c.too_noisy),
            "{c:#?}"
        );
        let slower = vec![
            row(&mut rng, "a", 1.0, 150.0),
            row(&mut rng, "b", 1.0, 50.0),
        ];
        let c = bench::gate(&before, &slower, 10.0);
        assert!(c[0].regressed && !c[1].regressed, "{c:#?}");
        assert!(
            bench::gate::report(&c, 10.0).table.contains(" u "),
            "machine units are shown as such"
        );
        // Paired ratios come first; an unpaired ratio yields to machine
        // units; time is the last resort.
        let b = &before[0];
        let mut paired = b.clone();
        paired.baseline_ns = Some(1.0);
        paired.paired = true;
        let mut unpaired = paired.clone();
        unpaired.paired = false;
        let mut bare = b.clone();
        bare.machine = None;
        assert_eq!(bench::gate::basis(&paired, &paired), "ratio");
        assert_eq!(bench::gate::basis(&unpaired, &unpaired), "machine");
        assert_eq!(bench::gate::basis(b, b), "machine");
        assert_eq!(bench::gate::basis(&bare, b), "time");
        let mut old_ratio = bare.clone();
        old_ratio.baseline_ns = Some(1.0);
        assert_eq!(bench::gate::basis(&old_ratio, &unpaired), "ratio");
    }

    /// Samples taken in 4 rounds, one of which ran 30% slower (a burst of
    /// load elsewhere): the two-stage bootstrap's interval spans the rounds,
    /// where resampling the samples alone gives a narrow interval around
    /// the figure the unlucky round pulled up. Rounds that agree keep it
    /// about as narrow as the samples alone.
    #[test]
    fn a_slow_round_widens_the_interval() {
        let mut rng = Xoshiro256PlusPlus::seed_from_u64(6);
        let mut t = Vec::new();
        for f in [1.0, 1.0, 1.3, 1.0] {
            t.extend(timings(&mut rng, 6, 1000.0 * f, 0.01));
        }
        let rounds = Rounds {
            samples: &t,
            sizes: vec![6; 4],
        };
        let clustered = stats::median_interval(&rounds, 0.95);
        let flat = stats::median_interval(&Rounds::one(&t), 0.95);
        assert!(
            clustered.1 > 1250.0 && width(clustered) > 3.0 * width(flat),
            "{clustered:?} {flat:?}"
        );
        let even: Vec<f64> = timings(&mut rng, 24, 1000.0, 0.01);
        let agree = stats::median_interval(
            &Rounds {
                samples: &even,
                sizes: vec![6; 4],
            },
            0.95,
        );
        let alone = stats::median_interval(&Rounds::one(&even), 0.95);
        assert!(
            width(agree) < 2.0 * width(alone) && width(agree) < 20.0,
            "{agree:?} {alone:?}"
        );
        // A ratio of two rows measured in the same rounds: the slow round
        // slowed both, and paired samples see through it.
        let b: Vec<f64> = t
            .iter()
            .map(|x| x / 1.1 * (0.005 * normal(&mut rng)).exp())
            .collect();
        let ratio = stats::ratio_interval(
            &Rounds {
                samples: &t,
                sizes: vec![6; 4],
            },
            &Rounds {
                samples: &b,
                sizes: vec![6; 4],
            },
            true,
            0.95,
        );
        assert!(
            ratio.0 <= 1.1 && 1.1 <= ratio.1 && width(ratio) < 0.02,
            "{ratio:?}"
        );
    }

    /// A run of 20 rows, each its samples: `slow` makes the named rows that
    /// much slower.
    fn run(rng: &mut Xoshiro256PlusPlus, n: usize, sigma: f64, slow: &[(&str, f64)]) -> Vec<Row> {
        (0..20)
            .map(|i| {
                let name = format!("op{i}");
                let f = slow
                    .iter()
                    .find(|(s, _)| *s == name)
                    .map_or(1.0, |(_, f)| *f);
                let t = Stats::of(timings(rng, n, 1000.0 * f * (1 + i) as f64, sigma));
                Row::measured("e", "bench", &name, &t)
            })
            .collect()
    }

    /// A/A: no regression and every row judged; A/B: the slowed rows, and
    /// only they, regressed; rows too noisy at 15 samples are judged with
    /// the samples the gate advises.
    #[test]
    fn the_gate_judges_the_changes_interval() {
        let mut rng = Xoshiro256PlusPlus::seed_from_u64(4);
        let before = run(&mut rng, 15, 0.02, &[]);
        let same = run(&mut rng, 15, 0.02, &[]);
        let c = bench::gate(&before, &same, 10.0);
        assert_eq!(c.len(), 20);
        assert!(c.iter().all(|c| !c.regressed && !c.too_noisy), "{c:#?}");
        assert!(
            (c[0].confidence - 0.9975).abs() < 1e-9,
            "{}",
            c[0].confidence
        );
        let slower = run(&mut rng, 15, 0.02, &[("op3", 1.3), ("op11", 1.5)]);
        let c = bench::gate(&before, &slower, 10.0);
        let regressed: Vec<&str> = c
            .iter()
            .filter(|c| c.regressed)
            .map(|c| c.name.as_str())
            .collect();
        assert_eq!(regressed, ["bench/op3", "bench/op11"], "{c:#?}");
        let report = bench::gate::report(&c, 10.0);
        assert_eq!(report.exit, 1);
        assert!(
            report.error.as_deref()
                == Some("2 benchmark(s) regressed beyond 10%: bench/op3, bench/op11")
                && report
                    .table
                    .contains("lower bound at 99.75% (one-sided) above 10% (shown in the verdict), so that all 20 rows hold together at 95%"),
            "{report:?}"
        );
        // Noisy samples: intervals wider than the threshold, not judged
        // where they reach above it (judged where they lie wholly below
        // it); the advised samples narrow them to about the threshold.
        let noisy = |rng: &mut Xoshiro256PlusPlus, n| run(rng, n, 0.15, &[]);
        let c = bench::gate(&noisy(&mut rng, 15), &noisy(&mut rng, 15), 10.0);
        assert!(
            c.iter().all(|c| !c.regressed
                && c.interval_pct.1 - c.interval_pct.0 > 10.0
                && c.too_noisy == (c.interval_pct.1 > 10.0)),
            "{c:#?}"
        );
        assert!(c.iter().filter(|c| c.too_noisy).count() >= 10, "{c:#?}");
        let advised = c.iter().map(|c| c.samples_needed).max().unwrap();
        assert!((60..5000).contains(&advised), "{advised}");
        let report = bench::gate::report(&c, 10.0);
        assert_eq!(report.exit, 2);
        assert!(
            report
                .error
                .as_deref()
                .is_some_and(|e| e.contains(&format!("about {advised} samples each in"))),
            "{report:?}"
        );
        let c = bench::gate(&noisy(&mut rng, advised), &noisy(&mut rng, advised), 10.0);
        let judged = c.iter().filter(|c| !c.too_noisy).count();
        assert!(judged >= 16 && c.iter().all(|c| !c.regressed), "{c:#?}");
    }

    /// What the gate promises, over many seeded runs of one noisy row (40
    /// samples of 15% spread: its change's interval is about 15% wide, most
    /// often wider than the threshold): a
    /// row that regressed by exactly the threshold is judged within at most
    /// about 5% of the time (a one-sided bound at 95% per row; the run
    /// passes only when every row does, so that holds for the run), and an
    /// unchanged row is judged within most of the time and never called
    /// regressed. Bounds at the family's corrected confidence (99.87% for
    /// 39 rows, as the gate used for both verdicts before) judge the
    /// unchanged row within far less often.
    #[test]
    fn the_gate_passes_a_regression_at_the_threshold_at_most_one_time_in_twenty() {
        let mut rng = Xoshiro256PlusPlus::seed_from_u64(9);
        let trials = 300;
        let mut one = |slower: f64| {
            let before = Stats::of(timings(&mut rng, 40, 1000.0, 0.15));
            let after = Stats::of(timings(&mut rng, 40, 1000.0 * slower, 0.15));
            let c = bench::gate(
                &[Row::measured("e", "b", "op", &before)],
                &[Row::measured("e", "b", "op", &after)],
                10.0,
            );
            c.into_iter().next().unwrap()
        };
        let at_threshold: Vec<_> = (0..trials).map(|_| one(1.1)).collect();
        let within = |c: &[bench::gate::Comparison]| {
            c.iter().filter(|c| !c.regressed && !c.too_noisy).count()
        };
        let passed = within(&at_threshold);
        assert!(passed * 100 <= trials * 8, "{passed} of {trials} passed");
        let unchanged: Vec<_> = (0..trials).map(|_| one(1.0)).collect();
        let judged = within(&unchanged);
        assert!(
            judged * 2 > trials && unchanged.iter().all(|c| !c.regressed),
            "{judged} of {trials} judged"
        );
        // The same rows judged on the upper end of the change's interval at
        // the family's corrected confidence.
        let z = stats::normal_quantile(0.5 + stats::bonferroni(0.95, 39) / 2.0);
        let z_one = stats::normal_quantile(0.95);
        let corrected = unchanged
            .iter()
            .filter(|c| {
                let up = (1.0 + c.change_pct / 100.0).ln();
                let hi = (1.0 + c.interval_pct.1 / 100.0).ln();
                (up + (hi - up) * z / z_one).exp() <= 1.1
            })
            .count();
        assert!(corrected * 2 < judged, "{corrected} and {judged}");
    }

    /// A run that spent four rounds of six in a stretch at half speed: its
    /// median (88 us) sits at the top of its interval (43-90 us), and the
    /// interval of the change from a quiet run's 43 us reaches down to no
    /// change at all on that side: too noisy, not regressed (an interval
    /// centred on the figure, as wide below as above, called it +103%
    /// [+11%, +272%], REGRESSED, on this machine). The same figure with an
    /// interval around it is a regression.
    #[test]
    fn a_median_at_the_end_of_its_interval_is_judged_by_that_side() {
        let z = stats::normal_quantile(0.5 + stats::bonferroni(0.95, 38) / 2.0);
        let quiet = Estimate {
            value: 43388.5,
            interval: Some((42118.4, 44556.9)),
        };
        let mostly_slow = Estimate {
            value: 88107.9,
            interval: Some((42973.9, 89827.6)),
        };
        let (lo, hi) = stats::change_interval(&quiet, &mostly_slow, z);
        assert!(lo < 1.0 && hi > 2.0, "{lo} {hi}");
        let slower = Estimate {
            value: 88107.9,
            interval: Some((86000.0, 89827.6)),
        };
        let (lo, _) = stats::change_interval(&quiet, &slower, z);
        assert!(lo > 1.9, "{lo}");
        // Symmetric intervals: as wide either side.
        let a = Estimate {
            value: 100.0,
            interval: Some((90.0, 100.0 * 100.0 / 90.0)),
        };
        let (lo, hi) = stats::change_interval(&a, &a, 1.96);
        assert!((lo * hi - 1.0).abs() < 1e-9, "{lo} {hi}");
    }

    /// A baseline without intervals (a bench.csv from before they were
    /// kept) is read and taken as exact, with a note; exact counts on both
    /// sides are judged on their change alone.
    #[test]
    fn an_older_baseline_is_judged_as_a_point_estimate() {
        let dir = tempfile::tempdir().unwrap();
        let old = dir.path().join("old.csv");
        std::fs::write(
            &old,
            "engine,benchmark,parameter,statistic,value,unit,samples,p10,p90,baseline,ratio\n\
             reference,infer,seed,median_time,1000.0,ns,7,990.0,1010.0,,\n\
             reference,refit_instructions,36,instructions,2808,instructions,1,2808,2808,,\n",
        )
        .unwrap();
        let before = bench::read_csv(&old).unwrap();
        assert!(before.iter().all(|r| r.median_ci.is_none()));
        let mut rng = Xoshiro256PlusPlus::seed_from_u64(5);
        let mut after = vec![Row::measured(
            "reference",
            "infer",
            "seed",
            &Stats::of(timings(&mut rng, 15, 1010.0, 0.02)),
        )];
        after.push(Row {
            benchmark: "refit_instructions".into(),
            parameter: "36".into(),
            median_ns: 3200.0,
            ..Row::default()
        });
        let c = bench::gate(&before, &after, 10.0);
        assert!(
            c[0].baseline_exact && !c[0].current_exact && !c[0].too_noisy,
            "{c:#?}"
        );
        assert!(
            c[0].interval_pct.0 < 1.0 && c[0].interval_pct.1 > 1.0,
            "{c:#?}"
        );
        assert!(
            c[1].regressed && c[1].interval_pct.0 == c[1].interval_pct.1,
            "{c:#?}"
        );
        let report = bench::gate::report(&c, 10.0);
        assert!(
            report
                .table
                .contains("note: 2 of the baseline's figures carry no confidence interval"),
            "{}",
            report.table
        );
        // Written and read back, the intervals and the pairing stay.
        let path = dir.path().join("bench.csv");
        let t = Stats::of(timings(&mut rng, 15, 1000.0, 0.02));
        let b = Stats::of(timings(&mut rng, 15, 500.0, 0.02));
        let u = in_stretches(&mut rng, 15, 30.0, &|i| i % 3 == 0, 2.0, 2.2);
        let rows = vec![
            Row::measured("e", "x", "a", &t).against("x/b", &t, &b, true),
            Row::measured("e", "x", "b", &b),
            Row::measured("e", "x", "c", &u),
        ];
        bench::write_csv(&rows, &path).unwrap();
        let back = bench::read_csv(&path).unwrap();
        let close = |x: Option<(f64, f64)>, y: Option<(f64, f64)>| {
            let (x, y) = (x.unwrap(), y.unwrap());
            (x.0 - y.0).abs() <= 1e-4 * y.0 && (x.1 - y.1).abs() <= 1e-4 * y.1
        };
        assert!(back[0].paired && !back[1].paired);
        assert!(close(back[0].ratio_ci, rows[0].ratio_ci), "{back:?}");
        assert!(
            (back[0].ratio().unwrap() - rows[0].ratio().unwrap()).abs() < 1e-4,
            "{back:?}"
        );
        assert!(close(back[1].median_ci, rows[1].median_ci), "{back:?}");
        assert_eq!(back[1].ratio_ci, None);
        assert!(close(back[2].machine_ci, rows[2].machine_ci), "{back:?}");
        assert!(
            (back[2].machine.unwrap() - rows[2].machine.unwrap()).abs() < 1e-4 * 30.0,
            "{back:?}"
        );
        assert_eq!(back[0].machine, None);
        // A file of the 20 columns before machine units still reads.
        let text = std::fs::read_to_string(&path).unwrap();
        let cut: String = text
            .lines()
            .map(|l| l.split(',').take(20).collect::<Vec<_>>().join(",") + "\n")
            .collect();
        let older = dir.path().join("older.csv");
        std::fs::write(&older, cut).unwrap();
        let back = bench::read_csv(&older).unwrap();
        assert!(
            back[2].machine.is_none() && back[0].ratio_ci.is_some(),
            "{back:?}"
        );
        let e = Estimate {
            value: 1.0,
            interval: None,
        };
        assert_eq!(stats::change_interval(&e, &e, 3.0), (1.0, 1.0));
    }
}

/// The reference engine's `slowdown` option (the slowed build
/// `ci/gate-check.sh` gates against): a factor from 1 is taken and changes
/// no result; anything else is refused naming the option.
#[test]
fn the_slowdown_option_is_checked_and_changes_no_result() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("seed.onnx");
    std::fs::write(&path, refit_harness::fixtures::seed_model().to_bytes()).unwrap();
    let with = |json: &str| refit_harness::engine::BuildOptions {
        engine_options: Some(json.into()),
        ..Default::default()
    };
    for bad in [r#"{"slowdown": 0.5}"#, r#"{"slowdown": "2"}"#] {
        let e = EngineSpec::Reference
            .open(&path, &with(bad))
            .err()
            .unwrap()
            .to_string();
        assert!(
            e.contains("slowdown: expected a factor from 1 to 1000"),
            "{e}"
        );
    }
    let slow = EngineSpec::Reference
        .open(&path, &with(r#"{"slowdown": 2.5}"#))
        .unwrap();
    let x = vec![refit_harness::Tensor::full([1, 1, 3, 3], 1.0)];
    assert_eq!(
        slow.context().unwrap().infer(&x).unwrap()[0].to_f32_vec(),
        [0.0]
    );
    let mut r = slow.refitter().unwrap();
    r.set_named_weights(
        &slow.weights()[0].name,
        &refit_harness::Tensor::full([1, 1, 3, 3], 1.0),
    )
    .unwrap();
    r.refit().unwrap();
    assert_eq!(
        slow.context().unwrap().infer(&x).unwrap()[0].to_f32_vec(),
        [9.0]
    );
}
