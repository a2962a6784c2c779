//! `refit-harness bench`: refit and inference measured as a sweep, each
//! beside a baseline taken in the same run, written as `bench.csv`, SVG
//! plots and `summary.md`. Absolute times move from machine to machine;
//! the ratios to the same-run baselines are what `gate` compares.

use std::hint::black_box;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use crate::check::oracle::{Judge, Oracle};
use crate::engine::{BuildOptions, Engine, Precision};
use crate::fixtures;
use crate::model::build::{ConvChain, ConvLayer};
use crate::model::conv::ConvAttrs;
use crate::spec::EngineSpec;
use crate::tensor::Tensor;
use crate::{Error, Result};

/// One measurement: the median time of one operation, its spread, and the
/// same-run baseline it is compared with.
#[derive(Clone, Debug, PartialEq)]
pub struct Row {
    /// The engine.
    pub engine: String,
    /// `refit`, `infer`, ...
    pub benchmark: String,
    /// Bytes, model or mode.
    pub parameter: String,
    /// Median time per operation, in nanoseconds.
    pub median_ns: f64,
    /// 10th percentile over samples.
    pub p10_ns: f64,
    /// 90th percentile over samples.
    pub p90_ns: f64,
    /// Samples taken.
    pub samples: usize,
    /// The baseline's name, if any.
    pub baseline: String,
    /// The baseline's median, in nanoseconds.
    pub baseline_ns: Option<f64>,
}

impl Row {
    /// `median / baseline`, when there is a baseline.
    pub fn ratio(&self) -> Option<f64> {
        self.baseline_ns
            .filter(|b| *b > 0.0)
            .map(|b| self.median_ns / b)
    }

    /// The relative spread `(p90 - p10) / median`: the run's noise.
    pub fn noise(&self) -> f64 {
        if self.median_ns > 0.0 {
            (self.p90_ns - self.p10_ns) / self.median_ns
        } else {
            0.0
        }
    }
}

/// The CSV header of `bench.csv`.
pub const HEADER: [&str; 11] = [
    "engine",
    "benchmark",
    "parameter",
    "statistic",
    "value",
    "unit",
    "samples",
    "p10",
    "p90",
    "baseline",
    "ratio",
];

/// Times `op` in `samples` batches, each long enough to take about
/// `target`; returns (median, p10, p90) nanoseconds per operation.
fn time(samples: usize, target: Duration, mut op: impl FnMut()) -> (f64, f64, f64) {
    // Calibrate the batch size.
    let mut batch = 1usize;
    loop {
        let t = Instant::now();
        for _ in 0..batch {
            op();
        }
        let e = t.elapsed();
        if e >= target / 4 || batch >= 1 << 24 {
            let per = e.as_secs_f64() / batch as f64;
            batch = ((target.as_secs_f64() / per.max(1e-9)) as usize).clamp(1, 1 << 24);
            break;
        }
        batch *= 4;
    }
    let mut per_op: Vec<f64> = (0..samples)
        .map(|_| {
            let t = Instant::now();
            for _ in 0..batch {
                op();
            }
            t.elapsed().as_nanos() as f64 / batch as f64
        })
        .collect();
    per_op.sort_by(f64::total_cmp);
    let q = |p: f64| per_op[((per_op.len() - 1) as f64 * p).round() as usize];
    (q(0.5), q(0.1), q(0.9))
}

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
    spec: &EngineSpec,
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

/// Runs the sweep; `progress` hears each measurement's name as it starts.
///
/// # Errors
/// An engine error, or a model that cannot be written.
pub fn run(
    spec: &EngineSpec,
    cfg: &BenchConfig,
    progress: &mut dyn FnMut(&str),
) -> Result<Vec<Row>> {
    let name = spec.to_string();
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
            samples: cfg.samples,
            baseline: baseline.into(),
            baseline_ns,
        });
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
    // Visibility is sampled once per refit, not in timed batches.
    if let Some(v) = rows.iter_mut().find(|r| r.benchmark == "visibility") {
        v.samples = vis_samples;
    }
    match err {
        Some(e) => Err(e),
        None => Ok(rows),
    }
}

fn io_err(path: &Path, error: std::io::Error) -> Error {
    Error::Io {
        op: "write",
        path: path.to_path_buf(),
        error,
    }
}

/// Writes `bench.csv`: one row per measurement (`median_time` in ns, with
/// p10, p90, the baseline and the ratio).
///
/// # Errors
/// [`Error::Io`].
pub fn write_csv(rows: &[Row], path: &Path) -> Result<()> {
    let mut w = csv::Writer::from_path(path).map_err(|e| io_err(path, e.into()))?;
    w.write_record(HEADER).map_err(|e| io_err(path, e.into()))?;
    for r in rows {
        let ratio = r.ratio().map(|x| format!("{x:.4}")).unwrap_or_default();
        w.write_record([
            r.engine.as_str(),
            &r.benchmark,
            &r.parameter,
            "median_time",
            &format!("{:.1}", r.median_ns),
            "ns",
            &r.samples.to_string(),
            &format!("{:.1}", r.p10_ns),
            &format!("{:.1}", r.p90_ns),
            &r.baseline,
            &ratio,
        ])
        .map_err(|e| io_err(path, e.into()))?;
    }
    w.flush().map_err(|e| io_err(path, e))
}

/// Reads a `bench.csv`.
///
/// # Errors
/// [`Error::BenchFile`] naming the file, row and column.
pub fn read_csv(path: &Path) -> Result<Vec<Row>> {
    let bad = |reason: String| Error::BenchFile {
        path: path.to_path_buf(),
        reason,
    };
    let mut rdr = csv::Reader::from_path(path).map_err(|e| bad(format!("cannot read: {e}")))?;
    let headers = rdr.headers().map_err(|e| bad(e.to_string()))?.clone();
    if headers.iter().collect::<Vec<_>>() != HEADER {
        return Err(bad(format!(
            "expected the columns {}, found {}",
            HEADER.join(","),
            headers.iter().collect::<Vec<_>>().join(",")
        )));
    }
    let mut rows = Vec::new();
    for (i, rec) in rdr.deserialize::<CsvRow>().enumerate() {
        let r = rec.map_err(|e| {
            let row = i + 2;
            match e.kind() {
                csv::ErrorKind::Deserialize { err, .. } => {
                    let column = err
                        .field()
                        .and_then(|f| HEADER.get(f as usize))
                        .map_or_else(String::new, |c| format!(", column '{c}'"));
                    bad(format!("row {row}{column}: {}", err.kind()))
                }
                _ => bad(format!("row {row}: {e}")),
            }
        })?;
        rows.push(Row {
            engine: r.engine,
            benchmark: r.benchmark,
            parameter: r.parameter,
            median_ns: r.value,
            p10_ns: r.p10,
            p90_ns: r.p90,
            samples: r.samples,
            baseline: r.baseline,
            baseline_ns: r.ratio.filter(|x| *x > 0.0).map(|x| r.value / x),
        });
    }
    Ok(rows)
}

/// One line of `bench.csv`, by column name.
#[derive(serde::Deserialize)]
struct CsvRow {
    engine: String,
    benchmark: String,
    parameter: String,
    value: f64,
    samples: usize,
    p10: f64,
    p90: f64,
    baseline: String,
    ratio: Option<f64>,
}

fn find<'a>(rows: &'a [Row], benchmark: &str, parameter: &str) -> Option<&'a Row> {
    rows.iter()
        .find(|r| r.benchmark == benchmark && r.parameter == parameter)
}

#[cfg(feature = "plots")]
fn plot_err<E: std::fmt::Display>(path: &Path) -> impl Fn(E) -> Error + '_ {
    move |e| io_err(path, std::io::Error::other(e.to_string()))
}

/// Writes the plots and `summary.md` into `dir`; returns the files.
///
/// # Errors
/// [`Error::Io`] when a file cannot be written.
pub fn write_report(rows: &[Row], dir: &Path) -> Result<Vec<PathBuf>> {
    std::fs::create_dir_all(dir).map_err(|e| io_err(dir, e))?;
    let mut files = Vec::new();
    let csv = dir.join("bench.csv");
    write_csv(rows, &csv)?;
    files.push(csv);

    write_plots(rows, dir, &mut files)?;
    let md = dir.join("summary.md");
    std::fs::write(&md, summary(rows)).map_err(|e| io_err(&md, e))?;
    files.push(md);
    Ok(files)
}

/// The SVG plots (`refit_latency.svg`, `infer_under_refit.svg`,
/// `refit_vs_reload.svg`), pushed onto `files`.
#[cfg(feature = "plots")]
fn write_plots(rows: &[Row], dir: &Path, files: &mut Vec<PathBuf>) -> Result<()> {
    use plotters::prelude::*;
    // Refit latency and memcpy by bytes, log axes, p10..p90 error bars.
    let latency = dir.join("refit_latency.svg");
    {
        let e = plot_err(&latency);
        let series = |b: &str| -> Vec<(f64, f64, f64, f64)> {
            rows.iter()
                .filter(|r| r.benchmark == b)
                .filter_map(|r| {
                    r.parameter
                        .parse::<f64>()
                        .ok()
                        .map(|x| (x, r.median_ns / 1e3, r.p10_ns / 1e3, r.p90_ns / 1e3))
                })
                .collect()
        };
        let (refit, memcpy) = (series("refit"), series("memcpy"));
        let xs = refit.iter().chain(&memcpy).map(|p| p.0);
        let (x0, x1) = xs
            .clone()
            .fold((f64::MAX, f64::MIN), |(a, b), x| (a.min(x), b.max(x)));
        let ys = refit.iter().chain(&memcpy).flat_map(|p| [p.2, p.3]);
        let (y0, y1) = ys.fold((f64::MAX, f64::MIN), |(a, b), y| (a.min(y), b.max(y)));
        if !refit.is_empty() {
            let root = SVGBackend::new(&latency, (800, 500)).into_drawing_area();
            root.fill(&WHITE).map_err(&e)?;
            let mut chart = ChartBuilder::on(&root)
                .caption(
                    "refit latency vs memcpy of the same bytes",
                    ("sans-serif", 20),
                )
                .margin(15)
                .x_label_area_size(40)
                .y_label_area_size(60)
                .build_cartesian_2d(
                    (x0 / 2.0..x1 * 2.0).log_scale(),
                    (y0.max(1e-4) / 2.0..y1 * 2.0).log_scale(),
                )
                .map_err(&e)?;
            chart
                .configure_mesh()
                .x_desc("bytes changed")
                .y_desc("time (us, median, p10-p90)")
                .draw()
                .map_err(&e)?;
            for (data, color, label) in [(&refit, RED, "refit"), (&memcpy, BLUE, "memcpy")] {
                chart
                    .draw_series(LineSeries::new(
                        data.iter().map(|p| (p.0, p.1)),
                        color.stroke_width(2),
                    ))
                    .map_err(&e)?
                    .label(label)
                    .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], color));
                chart
                    .draw_series(
                        data.iter()
                            .map(|p| ErrorBar::new_vertical(p.0, p.2, p.1, p.3, color.filled(), 8)),
                    )
                    .map_err(&e)?;
            }
            chart
                .configure_series_labels()
                .border_style(BLACK)
                .background_style(WHITE)
                .draw()
                .map_err(&e)?;
            root.present().map_err(&e)?;
            files.push(latency.clone());
        }
    }

    // Inference throughput with and without refit, and refit against reload.
    let bars = |path: &Path, title: &str, y_desc: &str, items: Vec<(String, f64)>| -> Result<()> {
        let e = plot_err(path);
        let top = items.iter().map(|i| i.1).fold(0.0, f64::max) * 1.2;
        let root = SVGBackend::new(path, (700, 450)).into_drawing_area();
        root.fill(&WHITE).map_err(&e)?;
        let labels: Vec<String> = items.iter().map(|i| i.0.clone()).collect();
        let mut chart = ChartBuilder::on(&root)
            .caption(title, ("sans-serif", 20))
            .margin(15)
            .x_label_area_size(40)
            .y_label_area_size(70)
            .build_cartesian_2d(0.0..items.len() as f64, 0.0..top.max(1e-9))
            .map_err(&e)?;
        chart
            .configure_mesh()
            .x_labels(items.len())
            .x_label_formatter(&|x| labels.get(x.floor() as usize).cloned().unwrap_or_default())
            .y_desc(y_desc)
            .draw()
            .map_err(&e)?;
        chart
            .draw_series(items.iter().enumerate().map(|(i, (_, v))| {
                Rectangle::new(
                    [(i as f64 + 0.2, 0.0), (i as f64 + 0.8, *v)],
                    BLUE.mix(0.6).filled(),
                )
            }))
            .map_err(&e)?;
        root.present().map_err(&e)
    };
    let iur: Vec<(String, f64)> = rows
        .iter()
        .filter(|r| r.benchmark == "infer_under_refit")
        .map(|r| (r.parameter.clone(), 1e9 / r.median_ns))
        .collect();
    if !iur.is_empty() {
        let p = dir.join("infer_under_refit.svg");
        bars(
            &p,
            "inference throughput with and without refit (conv_stack)",
            "inferences per second",
            iur,
        )?;
        files.push(p);
    }
    let rvr: Vec<(String, f64)> = rows
        .iter()
        .filter(|r| r.benchmark == "refit_vs_reload")
        .map(|r| (r.parameter.clone(), r.median_ns / 1e6))
        .collect();
    if !rvr.is_empty() {
        let p = dir.join("refit_vs_reload.svg");
        bars(
            &p,
            "refit against reload (conv_wide, every weight)",
            "ms (median)",
            rvr,
        )?;
        files.push(p);
    }

    Ok(())
}

/// Without the `plots` feature: no plots.
#[cfg(not(feature = "plots"))]
fn write_plots(_rows: &[Row], _dir: &Path, _files: &mut Vec<PathBuf>) -> Result<()> {
    Ok(())
}

/// The Markdown summary: each headline ratio, and the plots.
pub fn summary(rows: &[Row]) -> String {
    let engine = rows.first().map_or("", |r| r.engine.as_str());
    let mut s = format!("# refit-harness bench: {engine}\n\nMedians; each ratio is against a baseline measured in the same run.\n\n");
    s.push_str("| benchmark | parameter | median | baseline | ratio |\n|---|---|---:|---|---:|\n");
    for r in rows {
        s.push_str(&format!(
            "| {} | {} | {} | {} | {} |\n",
            r.benchmark,
            r.parameter,
            human(r.median_ns),
            r.baseline,
            r.ratio().map(|x| format!("{x:.2}")).unwrap_or_default()
        ));
    }
    s.push_str("\n## Headlines\n\n");
    if let Some(r) = find(rows, "refit_rate", "seed_conv").and_then(Row::ratio) {
        s.push_str(&format!(
            "- A refit of the seed kernel costs {r:.2} inferences of the seed model.\n"
        ));
    }
    if let Some(big) = rows
        .iter()
        .filter(|r| r.benchmark == "refit")
        .max_by_key(|r| r.parameter.parse::<usize>().unwrap_or(0))
    {
        if let Some(r) = big.ratio() {
            s.push_str(&format!(
                "- A refit of {} bytes takes {r:.2}x a memcpy of the same bytes.\n",
                big.parameter
            ));
        }
    }
    if let Some(r) = find(rows, "infer_under_refit", "w1_every_1ms").and_then(Row::ratio) {
        s.push_str(&format!("- Inference with a writer refitting every millisecond takes {r:.3}x the time without refit.\n"));
    }
    if let Some(r) = find(rows, "infer_under_refit", "w1_full_speed").and_then(Row::ratio) {
        s.push_str(&format!(
            "- With a writer refitting at full speed: {r:.3}x.\n"
        ));
    }
    if let Some(r) = find(rows, "oracle", "conv64_56x56_f32").and_then(Row::ratio) {
        s.push_str(&format!("- The check oracle's expectation for a 64-channel 3x3 conv over 56x56 (exact values and f32 bounds) costs {r:.2} engine inferences; each distinct expectation is computed once and then served from its cache.\n"));
    }
    if let Some(r) = find(rows, "refit_vs_reload", "refit").and_then(Row::ratio) {
        s.push_str(&format!("- Refitting every weight of conv_wide takes {r:.4}x the time of reloading the engine with them.\n"));
    }
    if cfg!(feature = "plots") {
        s.push_str("\n![refit latency](refit_latency.svg)\n\n![inference under refit](infer_under_refit.svg)\n\n![refit vs reload](refit_vs_reload.svg)\n");
    }
    s
}

fn human(ns: f64) -> String {
    if ns >= 1e6 {
        format!("{:.2} ms", ns / 1e6)
    } else if ns >= 1e3 {
        format!("{:.2} us", ns / 1e3)
    } else {
        format!("{ns:.1} ns")
    }
}

/// One compared measurement of `gate`.
#[derive(Clone, Debug)]
pub struct Comparison {
    /// `benchmark/parameter`.
    pub name: String,
    /// What is compared: `ratio` where both runs have a baseline, else `time`.
    pub compared: &'static str,
    /// Baseline run's figure.
    pub before: f64,
    /// Current run's figure.
    pub after: f64,
    /// Change in percent (positive: slower).
    pub change_pct: f64,
    /// The noise allowance in percent (both runs' p10-p90 spread).
    pub noise_pct: f64,
    /// Whether it got worse than the threshold beyond the noise.
    pub regressed: bool,
}

/// Compares two runs row by row on ratios where both have a baseline (absolute
/// times move from machine to machine), else on median time. A benchmark
/// regresses when it got slower by more than `max_regression_pct` plus the
/// noise of every measurement involved (each row's and, for a ratio, its
/// baseline's p10-p90 spread, in both runs).
pub fn gate(before: &[Row], after: &[Row], max_regression_pct: f64) -> Vec<Comparison> {
    let noise_of = |rows: &[Row], r: &Row, with_baseline: bool| {
        let base = r
            .baseline
            .split_once('/')
            .and_then(|(b, p)| find(rows, b, p))
            .filter(|_| with_baseline)
            .map_or(0.0, Row::noise);
        r.noise() + base
    };
    after
        .iter()
        .filter_map(|a| {
            let b = find(before, &a.benchmark, &a.parameter)?;
            let (compared, x, y) = match (b.ratio(), a.ratio()) {
                (Some(x), Some(y)) => ("ratio", x, y),
                _ => ("time", b.median_ns, a.median_ns),
            };
            let ratio = compared == "ratio";
            let change_pct = if x > 0.0 { (y - x) / x * 100.0 } else { 0.0 };
            let noise_pct = (noise_of(after, a, ratio) + noise_of(before, b, ratio)) * 100.0;
            Some(Comparison {
                name: format!("{}/{}", a.benchmark, a.parameter),
                compared,
                before: x,
                after: y,
                change_pct,
                noise_pct,
                regressed: change_pct > max_regression_pct + noise_pct,
            })
        })
        .collect()
}
