//! The sweep: every measurement, each beside the baseline it is compared
//! with in the same run.

use std::hint::black_box;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use super::sampler::{latencies, time, Tail};
use super::Row;
use crate::check::oracle::{Judge, Oracle};
use crate::check::EngineFactory;
use crate::engine::{BuildOptions, Engine, Precision};
use crate::fixtures;
use crate::model::build::{ConvChain, ConvLayer};
use crate::model::conv::ConvAttrs;
use crate::tensor::Tensor;
use crate::{Error, Result};

/// How the sweep runs.
#[derive(Clone, Debug)]
pub struct BenchConfig {
    /// Samples per measurement.
    pub samples: usize,
    /// Time per sample.
    pub sample_time: Duration,
    /// Weight sizes for the refit sweep, in bytes.
    pub sizes: Vec<usize>,
    /// Where generated models go.
    pub scratch: PathBuf,
    /// How engines are built (the engine's own options among them).
    pub options: BuildOptions,
}

impl BenchConfig {
    /// `quick`: about a minute (sizes up to 16 MiB); otherwise up to 256 MiB
    /// with more samples.
    pub fn new(quick: bool, scratch: &Path) -> Self {
        BenchConfig {
            samples: if quick { 7 } else { 15 },
            sample_time: Duration::from_millis(if quick { 60 } else { 200 }),
            sizes: if quick {
                vec![36, 4 << 10, 256 << 10, 16 << 20]
            } else {
                vec![36, 4 << 10, 256 << 10, 16 << 20, 256 << 20]
            },
            scratch: scratch.to_path_buf(),
            options: BuildOptions::default(),
        }
    }
}

/// A 1x1 conv with one weight of `bytes` bytes (f32) on a 1x1 input; the
/// seed model for 36 bytes.
pub fn sized_model(bytes: usize) -> ConvChain {
    if bytes == 36 {
        return fixtures::seed_model();
    }
    let n = (bytes / 4).max(1);
    let c_in = (1..=((n as f64).sqrt() as usize).max(1))
        .rev()
        .find(|c| n % c == 0)
        .unwrap_or(1);
    ConvChain {
        input_name: "x".into(),
        input_shape: vec![1, c_in, 1, 1],
        output_name: "y".into(),
        layers: vec![ConvLayer {
            weight_name: "w".into(),
            bias_name: None,
            c_out: n / c_in,
            kernel: vec![1, 1],
            attrs: ConvAttrs::default(),
            weight: vec![0.0; n],
            bias: Vec::new(),
            relu: false,
        }],
    }
}

/// One 64-channel 3x3 conv with bias over a 56x56 input (115 M
/// multiply-adds), float weights: the size of a ResNet stage.
pub fn oracle_model() -> ConvChain {
    let mut chain = fixtures::conv_wide();
    chain.input_shape = vec![1, 64, 56, 56];
    for l in &mut chain.layers {
        l.weight.iter_mut().for_each(|w| *w /= 7.0);
        l.bias.iter_mut().for_each(|w| *w /= 7.0);
    }
    chain
}

fn open(
    spec: &dyn EngineFactory,
    cfg: &BenchConfig,
    name: &str,
    chain: &ConvChain,
) -> Result<(PathBuf, Box<dyn Engine>)> {
    let path = cfg.scratch.join(name);
    std::fs::write(&path, chain.to_bytes()).map_err(|error| Error::Io {
        op: "write",
        path: path.clone(),
        error,
    })?;
    let engine = spec.open(&path, &cfg.options)?;
    Ok((path, engine))
}

fn inputs(engine: &dyn Engine) -> Vec<Tensor> {
    engine
        .inputs()
        .iter()
        .map(|i| Tensor::full(i.static_shape().unwrap_or_default(), 1.0))
        .collect()
}

fn full(engine: &dyn Engine, i: usize, v: f32) -> Tensor {
    Tensor::full(engine.weights()[i].static_shape().unwrap_or_default(), v)
}

/// Stage and refit every weight to `v` (or just weight 0).
fn refit_to(engine: &dyn Engine, sets: &[Vec<(String, Tensor)>], k: usize) -> Result<()> {
    let mut r = engine.refitter()?;
    for (n, t) in &sets[k % sets.len()] {
        r.set_named_weights(n, t)?;
    }
    r.refit()
}

fn sets(engine: &dyn Engine, all: bool) -> Vec<Vec<(String, Tensor)>> {
    let count = if all { engine.weights().len() } else { 1 };
    (1..=2)
        .map(|v| {
            (0..count)
                .map(|i| (engine.weights()[i].name.clone(), full(engine, i, v as f32)))
                .collect()
        })
        .collect()
}

/// Runs `f` while a background thread refits `engine`'s first weight,
/// alternating two values, every `period` (back to back when `None`).
/// Refit errors in the background are ignored: the measurement is of `f`.
pub fn with_writer<R>(engine: &dyn Engine, period: Option<Duration>, f: impl FnOnce() -> R) -> R {
    let stop = AtomicBool::new(false);
    let s = sets(engine, false);
    std::thread::scope(|sc| {
        sc.spawn(|| {
            let mut k = 0;
            let mut next = Instant::now();
            while !stop.load(Ordering::Relaxed) {
                k += 1;
                let _ = refit_to(engine, &s, k);
                if let Some(p) = period {
                    next += p;
                    if let Some(w) = next.checked_duration_since(Instant::now()) {
                        std::thread::sleep(w);
                    }
                }
            }
        });
        let out = f();
        stop.store(true, Ordering::Relaxed);
        out
    })
}

/// Runs the sweep on the engine `spec` builds (an [`EngineSpec`](crate::spec::EngineSpec)
/// or any [`EngineFactory`]); `progress` hears each measurement's name as it
/// starts.
///
/// # Errors
/// An engine error, or a model that cannot be written.
pub fn run(
    spec: &dyn EngineFactory,
    cfg: &BenchConfig,
    progress: &mut dyn FnMut(&str),
) -> Result<Vec<Row>> {
    let name = spec.name();
    let mut rows = Vec::new();
    let mut row = |benchmark: &str,
                   parameter: String,
                   t: (f64, f64, f64),
                   baseline: &str,
                   baseline_ns: Option<f64>| {
        rows.push(Row {
            engine: name.clone(),
            benchmark: benchmark.into(),
            parameter,
            median_ns: t.0,
            p10_ns: t.1,
            p90_ns: t.2,
            p99_ns: None,
            max_ns: None,
            samples: cfg.samples,
            baseline: baseline.into(),
            baseline_ns,
        });
    };
    // Per-call latencies: p50 as the median, with p99 and max.
    let mut tails: Vec<Row> = Vec::new();
    let budget = cfg.sample_time * cfg.samples as u32;
    let mut tail = |parameter: &str, lat: &[f64], baseline: &str, baseline_ns: Option<f64>| {
        let t = Tail::of(lat);
        tails.push(Row {
            engine: name.clone(),
            benchmark: "latency".into(),
            parameter: parameter.into(),
            median_ns: t.p50,
            p10_ns: t.p10,
            p90_ns: t.p90,
            p99_ns: Some(t.p99),
            max_ns: Some(t.max),
            samples: lat.len(),
            baseline: baseline.into(),
            baseline_ns,
        });
        t
    };
    let mut err = None;
    let mut fallible = |r: Result<()>| {
        if let Err(e) = r {
            err.get_or_insert(e);
        }
    };

    for &bytes in &cfg.sizes {
        progress(&format!("refit/{bytes}"));
        let (_, engine) = open(spec, cfg, "sized.onnx", &sized_model(bytes))?;
        let s = sets(engine.as_ref(), false);
        let mut k = 0;
        let t = time(cfg.samples, cfg.sample_time, || {
            k += 1;
            fallible(refit_to(engine.as_ref(), &s, k));
        });
        let src = vec![1.0f32; bytes / 4];
        let mut dst = vec![0.0f32; bytes / 4];
        let m = time(cfg.samples, cfg.sample_time, || {
            dst.copy_from_slice(black_box(&src));
            black_box(&dst);
        });
        row(
            "refit",
            bytes.to_string(),
            t,
            &format!("memcpy/{bytes}"),
            Some(m.0),
        );
        row("memcpy", bytes.to_string(), m, "", None);
    }

    progress("refit_rate/seed_conv");
    let (_, seed) = open(spec, cfg, "seed_conv.onnx", &fixtures::seed_model())?;
    let x = inputs(seed.as_ref());
    let mut ctx = seed.context()?;
    let s = sets(seed.as_ref(), false);
    let mut k = 0;
    let r = time(cfg.samples, cfg.sample_time, || {
        k += 1;
        fallible(refit_to(seed.as_ref(), &s, k));
    });
    let i = time(cfg.samples, cfg.sample_time, || {
        fallible(ctx.infer(&x).map(|y| drop(black_box(y))))
    });
    row(
        "refit_rate",
        "seed_conv".into(),
        r,
        "infer/seed_conv",
        Some(i.0),
    );

    // The harness's own floor: the same calls on an engine that does no
    // work, to subtract from the figures above.
    progress("floor/seed_conv");
    let (_, null) = open(&NullFactory, cfg, "seed_conv.onnx", &fixtures::seed_model())?;
    let mut nctx = null.context()?;
    let ns = sets(null.as_ref(), false);
    let mut k = 0;
    let fr = time(cfg.samples, cfg.sample_time, || {
        k += 1;
        fallible(refit_to(null.as_ref(), &ns, k));
    });
    let fi = time(cfg.samples, cfg.sample_time, || {
        fallible(nctx.infer(&x).map(|y| drop(black_box(y))))
    });
    row("floor", "refit_seed_conv".into(), fr, "", None);
    row("floor", "infer_seed_conv".into(), fi, "", None);

    for (file, chain) in fixtures::models() {
        progress(&format!("infer/{file}"));
        let (_, engine) = open(spec, cfg, file, &chain)?;
        let x = inputs(engine.as_ref());
        let mut ctx = engine.context()?;
        let t = time(cfg.samples, cfg.sample_time, || {
            fallible(ctx.infer(&x).map(|y| drop(black_box(y))))
        });
        row("infer", file.trim_end_matches(".onnx").into(), t, "", None);
    }

    progress("infer_under_refit/conv_stack");
    let (_, engine) = open(spec, cfg, "conv_stack.onnx", &fixtures::conv_stack())?;
    let x = inputs(engine.as_ref());
    let mut ctx = engine.context()?;
    let none = time(cfg.samples, cfg.sample_time, || {
        fallible(ctx.infer(&x).map(|y| drop(black_box(y))))
    });
    row("infer_under_refit", "none".into(), none, "", None);
    for (mode, period) in [
        ("w1_every_1ms", Some(Duration::from_millis(1))),
        ("w1_full_speed", None),
    ] {
        let t = with_writer(engine.as_ref(), period, || {
            time(cfg.samples, cfg.sample_time, || {
                fallible(ctx.infer(&x).map(|y| drop(black_box(y))))
            })
        });
        row(
            "infer_under_refit",
            mode.into(),
            t,
            "infer_under_refit/none",
            Some(none.0),
        );
    }

    progress("latency/conv_stack");
    let lat = |ctx: &mut Box<dyn crate::engine::Context>,
               fallible: &mut dyn FnMut(Result<()>)|
     -> Vec<f64> {
        latencies(budget, 30, 200_000, || {
            fallible(ctx.infer(&x).map(|y| drop(black_box(y))))
        })
    };
    let alone = lat(&mut ctx, &mut fallible);
    let alone = tail("infer_conv_stack", &alone, "", None);
    for (mode, period) in [
        ("w1_every_1ms", Some(Duration::from_millis(1))),
        ("w1_full_speed", None),
    ] {
        let l = with_writer(engine.as_ref(), period, || lat(&mut ctx, &mut fallible));
        tail(
            &format!("infer_conv_stack_{mode}"),
            &l,
            "latency/infer_conv_stack",
            Some(alone.p50),
        );
    }
    let (_, big) = open(spec, cfg, "sized.onnx", &sized_model(16 << 20))?;
    let s = sets(big.as_ref(), false);
    let mut k = 0;
    let l = latencies(budget, 20, 100_000, || {
        k += 1;
        fallible(refit_to(big.as_ref(), &s, k));
    });
    tail("refit_16777216", &l, "", None);
    drop(big);

    progress("visibility/seed_conv");
    let mut v = 0.0f32;
    let mut ctx = seed.context()?;
    let x = inputs(seed.as_ref());
    // Timed from refit() returning to the first inference that shows it.
    let mut waits: Vec<f64> = Vec::new();
    let deadline = Instant::now() + cfg.sample_time * cfg.samples as u32;
    while waits.len() < 20 || (Instant::now() < deadline && waits.len() < 100_000) {
        v = if v >= 9.0 { 1.0 } else { v + 1.0 };
        let mut r = seed.refitter()?;
        r.set_named_weights(&seed.weights()[0].name, &Tensor::full([1, 1, 3, 3], v))?;
        r.refit()?;
        let returned = Instant::now();
        let mut seen = false;
        for _ in 0..10_000 {
            if ctx.infer(&x)?[0].to_f32_vec() == [9.0 * v] {
                seen = true;
                break;
            }
        }
        if !seen {
            return Err(Error::BenchFile {
                path: cfg.scratch.join("seed_conv.onnx"),
                reason: format!("a refit to all-{v} never became visible in 10000 inferences"),
            });
        }
        waits.push(returned.elapsed().as_nanos() as f64);
    }
    waits.sort_by(f64::total_cmp);
    let q = |p: f64| waits[((waits.len() - 1) as f64 * p).round() as usize];
    let vis = (q(0.5), q(0.1), q(0.9));
    let vis_samples = waits.len();
    row(
        "visibility",
        "seed_conv".into(),
        vis,
        "refit_rate/seed_conv",
        Some(r.0),
    );

    progress("oracle/conv64_56x56");
    let chain = oracle_model();
    let (path, engine) = open(spec, cfg, "conv64_56x56.onnx", &chain)?;
    let x = vec![Tensor::f32(
        chain.input_shape.clone(),
        fixtures::pattern(chain.input_shape.iter().product(), 7)
            .iter()
            .map(|v| v / 3.0)
            .collect(),
    )];
    let mut ctx = engine.context()?;
    let inf = time(cfg.samples, cfg.sample_time, || {
        fallible(ctx.infer(&x).map(|y| drop(black_box(y))))
    });
    row("infer", "conv64_56x56".into(), inf, "", None);
    let model = crate::model::Model::load(&path)?;
    for precision in [Precision::F32, Precision::F16] {
        let judge = Judge {
            precision,
            error_factor: 1.0,
            tolerance: None,
        };
        let oracle = Oracle::with_judge(model.clone(), judge);
        let miss = time(cfg.samples, cfg.sample_time, || {
            if let Err(reason) = oracle.evaluate(&x).map(|y| drop(black_box(y))) {
                fallible(Err(Error::BenchFile {
                    path: path.clone(),
                    reason,
                }));
            }
        });
        row(
            "oracle",
            format!("conv64_56x56_{precision}"),
            miss,
            "infer/conv64_56x56",
            Some(inf.0),
        );
        if precision == Precision::F32 {
            let hit = time(cfg.samples, cfg.sample_time, || {
                drop(black_box(oracle.infer(&x)));
            });
            row(
                "oracle_cached",
                "conv64_56x56".into(),
                hit,
                "infer/conv64_56x56",
                Some(inf.0),
            );
        }
    }

    progress("refit_vs_reload/conv_wide");
    let chain = fixtures::conv_wide();
    let (_, wide) = open(spec, cfg, "conv_wide.onnx", &chain)?;
    let s = sets(wide.as_ref(), true);
    let mut k = 0;
    let rf = time(cfg.samples, cfg.sample_time, || {
        k += 1;
        fallible(refit_to(wide.as_ref(), &s, k));
    });
    let mut reloaded = chain.clone();
    for l in &mut reloaded.layers {
        l.weight.iter_mut().for_each(|w| *w = 2.0);
        l.bias.iter_mut().for_each(|w| *w = 2.0);
    }
    let bytes = reloaded.to_bytes();
    let reload_path = cfg.scratch.join("conv_wide_reload.onnx");
    let rl = time(cfg.samples, cfg.sample_time, || {
        let r = std::fs::write(&reload_path, &bytes)
            .map_err(|error| Error::Io {
                op: "write",
                path: reload_path.clone(),
                error,
            })
            .and_then(|()| {
                spec.open(&reload_path, &cfg.options)
                    .map(|e| drop(black_box(e)))
            });
        fallible(r);
    });
    row(
        "refit_vs_reload",
        "refit".into(),
        rf,
        "refit_vs_reload/reload",
        Some(rl.0),
    );
    row("refit_vs_reload", "reload".into(), rl, "", None);
    rows.extend(tails);
    // Visibility is sampled once per refit, not in timed batches.
    if let Some(v) = rows.iter_mut().find(|r| r.benchmark == "visibility") {
        v.samples = vis_samples;
    }
    match err {
        Some(e) => Err(e),
        None => Ok(rows),
    }
}

/// An engine that does no work: outputs of the declared shapes, all zero;
/// staging and refit accept and drop. What the harness itself costs per
/// call.
struct NullFactory;

struct NullEngine {
    info: crate::engine::EngineInfo,
    inputs: Vec<crate::tensor::TensorInfo>,
    outputs: Vec<crate::tensor::TensorInfo>,
    weights: Vec<crate::tensor::TensorInfo>,
}

struct NullContext(Vec<Vec<usize>>);

struct NullRefitter;

impl EngineFactory for NullFactory {
    fn name(&self) -> String {
        "null".into()
    }

    fn open(&self, model: &Path, options: &BuildOptions) -> Result<Box<dyn Engine>> {
        let m = crate::model::Model::load(model)?;
        Ok(Box::new(NullEngine {
            info: crate::engine::EngineInfo {
                name: "null".into(),
                version: String::new(),
                contract: crate::engine::reference::CONTRACT,
                refit_enabled: options.enable_refit,
            },
            inputs: m.inputs().to_vec(),
            outputs: m.outputs().to_vec(),
            weights: m.initializers().iter().map(|i| i.info.clone()).collect(),
        }))
    }
}

impl Engine for NullEngine {
    fn info(&self) -> &crate::engine::EngineInfo {
        &self.info
    }
    fn inputs(&self) -> &[crate::tensor::TensorInfo] {
        &self.inputs
    }
    fn outputs(&self) -> &[crate::tensor::TensorInfo] {
        &self.outputs
    }
    fn weights(&self) -> &[crate::tensor::TensorInfo] {
        &self.weights
    }
    fn context(&self) -> Result<Box<dyn crate::engine::Context>> {
        Ok(Box::new(NullContext(
            self.outputs
                .iter()
                .map(|o| o.static_shape().unwrap_or_default())
                .collect(),
        )))
    }
    fn refitter(&self) -> Result<Box<dyn crate::engine::Refitter>> {
        Ok(Box::new(NullRefitter))
    }
}

impl crate::engine::Context for NullContext {
    fn infer(&mut self, _inputs: &[Tensor]) -> Result<Vec<Tensor>> {
        Ok(self
            .0
            .iter()
            .map(|s| Tensor::full(s.clone(), 0.0))
            .collect())
    }
}

impl crate::engine::Refitter for NullRefitter {
    fn set_named_weights(&mut self, _name: &str, _weights: &Tensor) -> Result<()> {
        Ok(())
    }
    fn missing(&self) -> Result<Vec<String>> {
        Ok(Vec::new())
    }
    fn refit(&mut self) -> Result<()> {
        Ok(())
    }
}
