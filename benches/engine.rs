//! Refit and inference on the engine `REFIT_ENGINE` names (default
//! reference), each beside a baseline measured in the same run:
//!
//! - `refit/<engine>/<bytes>` against `refit/memcpy/<bytes>` (a copy of the
//!   same bytes into memory already touched), `Throughput::Bytes`;
//! - `refit_rate/<engine>/seed_conv` (stage plus refit of the seed kernel)
//!   against `refit_rate/<engine>/infer_seed_conv` (one inference);
//! - `infer/<engine>/<model>` on the seed model and the fixtures;
//! - `infer_under_refit/<engine>/<writers>` while background threads refit
//!   every millisecond or at full speed, against `none`;
//! - `visibility/<engine>`: from `refit()` returning to the first inference
//!   that observes it;
//! - `refit_vs_reload/<engine>`: refit of every weight against building the
//!   engine afresh from a model file holding the new weights;
//! - `resnet18/<engine>/refit_all` (every weight of ResNet-18, 102
//!   tensors, 44.6 MiB, random weights from the crate's model builder)
//!   against `resnet18/memcpy/<bytes>` (a copy of as many bytes) and
//!   `resnet18/<engine>/refit_one_tensor` (one tensor of the same bytes:
//!   the difference is the per-tensor overhead); left out when
//!   `REFIT_BENCH_MAX_BYTES` is below its size;
//! - `abi/...`: what the plugin ABI itself costs, whatever `REFIT_ENGINE`
//!   is: seed inference of the reference engine through the loader (the
//!   reference plugin linked into the binary) against the same engine
//!   in-process (target: at most 1.5x), and a 16 MiB refit through it
//!   against a memcpy of the same bytes (target: at most 1.25x).
//!
//! Inference is timed with `infer_into`, reusing outputs as a serving loop
//! does. A model the engine refuses as unsupported is left out (and said
//! on stderr).
//!
//! `REFIT_BENCH_MAX_BYTES` caps the refit sweep (256 MiB by default).

use std::hint::black_box;
use std::path::{Path, PathBuf};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use criterion::{criterion_group, BatchSize, BenchmarkId, Criterion, Throughput};
use refit_harness::engine::{BuildOptions, Engine};
use refit_harness::spec::EngineSpec;
use refit_harness::Tensor;
use refit_harness::{bench, fixtures};

fn spec() -> EngineSpec {
    EngineSpec::from_env().expect("REFIT_ENGINE names an engine")
}

fn scratch() -> &'static Path {
    static DIR: OnceLock<tempfile::TempDir> = OnceLock::new();
    DIR.get_or_init(|| tempfile::tempdir().expect("temp dir"))
        .path()
}

fn write(name: &str, bytes: &[u8]) -> PathBuf {
    let path = scratch().join(name);
    std::fs::write(&path, bytes).expect("write model");
    path
}

/// `REFIT_ENGINE_OPTIONS` (a JSON object) passed to every build.
fn open(path: &Path) -> Box<dyn Engine> {
    let options = BuildOptions {
        engine_options: refit_harness::check::isolate::engine_options_from_env()
            .unwrap_or_else(|e| panic!("{e}")),
        ..BuildOptions::default()
    };
    spec().open(path, &options).expect("open engine")
}

/// `REFIT_BENCH_MAX_BYTES`: the largest weight refitted (the CI smoke run
/// keeps it small).
fn max_bytes() -> usize {
    std::env::var("REFIT_BENCH_MAX_BYTES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(usize::MAX)
}

/// As [`open`], or `None` (said on stderr) for a model the engine refuses.
fn open_supported(path: &Path) -> Option<Box<dyn Engine>> {
    let options = BuildOptions {
        engine_options: refit_harness::check::isolate::engine_options_from_env()
            .unwrap_or_else(|e| panic!("{e}")),
        ..BuildOptions::default()
    };
    match spec().open(path, &options) {
        Ok(e) => Some(e),
        Err(e) if e.is_unsupported() => {
            eprintln!("{}: left out: {e}", path.display());
            None
        }
        Err(e) => panic!("open engine: {e}"),
    }
}

fn input_for(engine: &dyn Engine) -> Vec<Tensor> {
    engine
        .inputs()
        .iter()
        .map(|i| Tensor::full(i.static_shape().expect("static input"), 1.0))
        .collect()
}

fn weight_tensor(engine: &dyn Engine, i: usize, value: f32) -> Tensor {
    Tensor::full(
        engine.weights()[i].static_shape().expect("static weight"),
        value,
    )
}

fn refit(c: &mut Criterion) {
    let mut g = c.benchmark_group("refit");
    g.sample_size(10);
    let name = spec().to_string();
    let max = max_bytes();
    for bytes in [36usize, 4 << 10, 256 << 10, 16 << 20, 256 << 20]
        .into_iter()
        .filter(|&b| b <= max)
    {
        g.throughput(Throughput::Bytes(bytes as u64));
        let chain = bench::sized_model(bytes);
        let engine = open(&write("sized.onnx", &chain.to_bytes()));
        refit_beside_memcpy(
            &mut g,
            engine.as_ref(),
            BenchmarkId::new(&name, bytes),
            bytes,
        );
    }
    g.finish();
}

/// A refit of `engine`'s first weight (`bytes` bytes), alternating two
/// values, as `id`, then `memcpy/<bytes>`: a copy of as many bytes into
/// memory already touched.
fn refit_beside_memcpy(
    g: &mut criterion::BenchmarkGroup<'_, criterion::measurement::WallTime>,
    engine: &dyn Engine,
    id: BenchmarkId,
    bytes: usize,
) {
    let w = engine.weights()[0].name.clone();
    let tensors = [weight_tensor(engine, 0, 1.0), weight_tensor(engine, 0, 2.0)];
    let mut k = 0;
    g.bench_function(id, |b| {
        b.iter(|| {
            k += 1;
            let mut r = engine.refitter().expect("refitter");
            r.set_named_weights(&w, &tensors[k % 2]).expect("stage");
            r.refit().expect("refit");
        })
    });
    let src = vec![1.0f32; bytes / 4];
    let mut dst = vec![0.0f32; bytes / 4];
    g.bench_function(BenchmarkId::new("memcpy", bytes), |b| {
        b.iter(|| {
            dst.copy_from_slice(black_box(&src));
            black_box(&dst);
        })
    });
}

/// Two sets of values (all 1, all 2) for every weight of `engine`.
fn all_weights(engine: &dyn Engine) -> Vec<Vec<(String, Tensor)>> {
    [1.0, 2.0]
        .iter()
        .map(|&v| {
            (0..engine.weights().len())
                .map(|i| {
                    (
                        engine.weights()[i].name.clone(),
                        weight_tensor(engine, i, v),
                    )
                })
                .collect()
        })
        .collect()
}

/// Refits of every weight, alternating the two `sets`, as `id`.
fn bench_refit_all(
    g: &mut criterion::BenchmarkGroup<'_, criterion::measurement::WallTime>,
    engine: &dyn Engine,
    sets: &[Vec<(String, Tensor)>],
    id: BenchmarkId,
) {
    let mut k = 0;
    g.bench_function(id, |b| {
        b.iter(|| {
            k += 1;
            let mut r = engine.refitter().expect("refitter");
            for (n, t) in &sets[k % 2] {
                r.set_named_weights(n, t).expect("stage");
            }
            r.refit().expect("refit");
        })
    });
}

fn resnet18(c: &mut Criterion) {
    let bytes = refit_harness::model::build::resnet18(32, 18).to_bytes();
    let path = write("resnet18.onnx", &bytes);
    drop(bytes);
    let engine = open(&path);
    let sets = all_weights(engine.as_ref());
    let total: usize = sets[0].iter().map(|(_, t)| t.numel() * 4).sum();
    if total > max_bytes() {
        eprintln!("resnet18 left out: {total} bytes is over REFIT_BENCH_MAX_BYTES");
        return;
    }
    let mut g = c.benchmark_group("resnet18");
    g.sample_size(10);
    g.throughput(Throughput::Bytes(total as u64));
    let name = spec().to_string();
    bench_refit_all(
        &mut g,
        engine.as_ref(),
        &sets,
        BenchmarkId::new(&name, "refit_all"),
    );
    drop((sets, engine));
    let one = open(&write(
        "resnet18_one.onnx",
        &bench::sized_model(total).to_bytes(),
    ));
    refit_beside_memcpy(
        &mut g,
        one.as_ref(),
        BenchmarkId::new(&name, "refit_one_tensor"),
        total,
    );
    g.finish();
}

fn refit_rate(c: &mut Criterion) {
    let mut g = c.benchmark_group("refit_rate");
    let name = spec().to_string();
    let engine = open(&write("seed_conv.onnx", &fixtures::seed_model().to_bytes()));
    let tensors = [
        weight_tensor(engine.as_ref(), 0, 1.0),
        weight_tensor(engine.as_ref(), 0, 2.0),
    ];
    let mut k = 0;
    g.throughput(Throughput::Elements(1));
    g.bench_function(BenchmarkId::new(&name, "seed_conv"), |b| {
        b.iter(|| {
            k += 1;
            let mut r = engine.refitter().expect("refitter");
            r.set_named_weights("weight", &tensors[k % 2])
                .expect("stage");
            r.refit().expect("refit");
        })
    });
    let x = input_for(engine.as_ref());
    let mut ctx = engine.context().expect("context");
    let mut out = Vec::new();
    g.bench_function(BenchmarkId::new(&name, "infer_seed_conv"), |b| {
        b.iter(|| {
            ctx.infer_into(&x, &mut out).expect("infer");
            black_box(&out);
        })
    });
    g.finish();
}

fn infer(c: &mut Criterion) {
    let mut g = c.benchmark_group("infer");
    let name = spec().to_string();
    for (file, chain) in fixtures::models() {
        let Some(engine) = open_supported(&write(file, &chain)) else {
            continue;
        };
        let x = input_for(engine.as_ref());
        let mut ctx = engine.context().expect("context");
        let mut out = Vec::new();
        g.bench_function(
            BenchmarkId::new(&name, file.trim_end_matches(".onnx")),
            |b| {
                b.iter(|| {
                    ctx.infer_into(&x, &mut out).expect("infer");
                    black_box(&out);
                })
            },
        );
    }
    g.finish();
}

fn infer_under_refit(c: &mut Criterion) {
    let mut g = c.benchmark_group("infer_under_refit");
    let name = spec().to_string();
    // conv_stack, or conv_depthwise for an engine that refuses it.
    let engine = open_supported(&write(
        "conv_stack.onnx",
        &fixtures::conv_stack().to_bytes(),
    ))
    .unwrap_or_else(|| {
        open(&write(
            "conv_depthwise.onnx",
            &fixtures::conv_depthwise().to_bytes(),
        ))
    });
    let x = input_for(engine.as_ref());
    let mut ctx = engine.context().expect("context");
    let mut out = Vec::new();
    g.bench_function(BenchmarkId::new(&name, "none"), |b| {
        b.iter(|| {
            ctx.infer_into(&x, &mut out).expect("infer");
            black_box(&out);
        })
    });
    bench::with_writer(engine.as_ref(), Some(Duration::from_millis(1)), || {
        g.bench_function(BenchmarkId::new(&name, "w1_every_1ms"), |b| {
            b.iter(|| {
                ctx.infer_into(&x, &mut out).expect("infer");
                black_box(&out);
            })
        });
    });
    bench::with_writer(engine.as_ref(), None, || {
        g.bench_function(BenchmarkId::new(&name, "w1_full_speed"), |b| {
            b.iter(|| {
                ctx.infer_into(&x, &mut out).expect("infer");
                black_box(&out);
            })
        });
    });
    g.finish();
}

fn visibility(c: &mut Criterion) {
    let mut g = c.benchmark_group("visibility");
    let name = spec().to_string();
    let engine = open(&write("seed_conv.onnx", &fixtures::seed_model().to_bytes()));
    let x = input_for(engine.as_ref());
    let mut ctx = engine.context().expect("context");
    let mut k = 0.0f32;
    g.bench_function(BenchmarkId::new(&name, "seed_conv"), |b| {
        b.iter_custom(|iters| {
            let mut total = Duration::ZERO;
            for _ in 0..iters {
                k = if k >= 9.0 { 1.0 } else { k + 1.0 };
                let mut r = engine.refitter().expect("refitter");
                r.set_named_weights("weight", &Tensor::full([1, 1, 3, 3], k))
                    .expect("stage");
                r.refit().expect("refit");
                let returned = Instant::now();
                while ctx.infer(&x).expect("infer")[0].to_f32_vec() != [9.0 * k] {}
                total += returned.elapsed();
            }
            total
        })
    });
    g.finish();
}

fn refit_vs_reload(c: &mut Criterion) {
    let mut g = c.benchmark_group("refit_vs_reload");
    let name = spec().to_string();
    let chain = fixtures::conv_wide();
    let path = write("conv_wide.onnx", &chain.to_bytes());
    let engine = open(&path);
    let sets = all_weights(engine.as_ref());
    bench_refit_all(
        &mut g,
        engine.as_ref(),
        &sets,
        BenchmarkId::new(&name, "refit"),
    );
    // Reload: the new weights written into the model file, the engine built afresh.
    let mut reloaded = chain.clone();
    for l in &mut reloaded.layers {
        l.weight.iter_mut().for_each(|w| *w = 2.0);
        l.bias.iter_mut().for_each(|w| *w = 2.0);
    }
    let bytes = reloaded.to_bytes();
    let reload_path = scratch().join("conv_wide_reload.onnx");
    g.bench_function(BenchmarkId::new(&name, "reload"), |b| {
        b.iter_batched(
            || std::fs::write(&reload_path, &bytes).expect("write"),
            |()| black_box(open(&reload_path)),
            BatchSize::PerIteration,
        )
    });
    g.finish();
}

/// The plugin ABI's own cost (see the module documentation).
fn abi(c: &mut Criterion) {
    let mut g = c.benchmark_group("abi");
    let seed = write("abi_seed.onnx", &fixtures::seed_model().to_bytes());
    let linked = |model: &Path| -> Box<dyn Engine> {
        let plugin = refit_harness::ffi::Plugin::linked("linked reference plugin").expect("table");
        Box::new(plugin.open(model, &BuildOptions::default()).expect("open"))
    };
    let direct = EngineSpec::Reference
        .open(&seed, &BuildOptions::default())
        .expect("open");
    for (who, engine) in [("in_process", direct), ("linked_plugin", linked(&seed))] {
        let x = input_for(engine.as_ref());
        let mut ctx = engine.context().expect("context");
        let mut out = Vec::new();
        g.bench_function(BenchmarkId::new(who, "infer_seed_conv"), |b| {
            b.iter(|| {
                ctx.infer_into(&x, &mut out).expect("infer");
                black_box(&out);
            })
        });
    }
    let bytes = (16usize << 20).min(max_bytes());
    let engine = linked(&write(
        "abi_sized.onnx",
        &bench::sized_model(bytes).to_bytes(),
    ));
    g.sample_size(10);
    g.throughput(Throughput::Bytes(bytes as u64));
    let id = BenchmarkId::new("linked_plugin/refit", bytes);
    refit_beside_memcpy(&mut g, engine.as_ref(), id, bytes);
    g.finish();
}

/// Criterion's defaults, the allocator set to one behaviour throughout
/// first, as `refit-harness bench` sets it ([`bench::steady_allocator`]).
fn steady() -> Criterion {
    bench::steady_allocator();
    Criterion::default()
}

criterion_group! {
    name = benches;
    config = steady();
    targets = abi,
        refit,
        resnet18,
        refit_rate,
        infer,
        infer_under_refit,
        visibility,
        refit_vs_reload
}
