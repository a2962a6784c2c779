//! The sweep: every measurement, each beside the baseline it is compared
//! with in the same run.

use std::cell::RefCell;
use std::hint::black_box;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU8, Ordering};
use std::time::{Duration, Instant};

use super::sampler::{
    latencies, latencies_alternating, time, time_in_units, unit_batch, unit_sample, Stats, Tail,
    MIN_SAMPLES,
};
use super::Row;
use crate::check::EngineFactory;
use crate::engine::{BuildOptions, Context, Engine, Precision};
use crate::fixtures;
use crate::model::build::{self, ConvChain, ConvLayer};
use crate::model::conv::ConvAttrs;
use crate::oracle::{Judge, Oracle};
use crate::spec::EngineSpec;
use crate::tensor::{Aligned, Tensor};
use crate::{Error, Result};

/// The weight size of the plugin ABI's refit measurement: 16 MiB.
pub(crate) const ABI_REFIT_BYTES: usize = 16 << 20;

/// The rows that measure the machine or the harness rather than the engine
/// under test, as (benchmark, parameter prefix): memcpy baselines, the null
/// engine's floor, the reference engine the ABI and oracle rows divide by,
/// and the single inference timed after each visibility wait (the unit the
/// visibility ratio reads in; the seed inference itself is judged by
/// `infer/seed_conv`: one call timed alone right after a refit moved 13%
/// between two runs of one build, in machine units, with intervals of
/// 0.3%). They are [`Row::baseline_only`]: `gate` shows their change, the
/// ratios to them carry the verdict.
pub(crate) const BASELINES_ONLY: [(&str, &str); 8] = [
    ("memcpy", ""),
    ("floor", ""),
    ("abi", "infer_seed_conv_in_process"),
    ("abi", "memcpy_"),
    ("resnet18", "memcpy_all"),
    ("resnet18", "infer_reference_"),
    ("visibility", "infer_seed_conv"),
    ("latency", "memcpy_"),
];

/// The rows bound by memory bandwidth rather than the core, as
/// (benchmark, parameter prefix): copies, refits, reloads. They carry no
/// figure in machine units ([`Row::machine`]): the unit
/// ([`machine_unit`](super::sampler::machine_unit)) is arithmetic in the
/// first-level cache and does not slow when another tenant takes the
/// memory bus. Their samples are still kept to those taken at full speed
/// where their ratio is paired.
pub const NOT_IN_UNITS: [(&str, &str); 10] = [
    ("memcpy", ""),
    ("refit", ""),
    ("abi", "memcpy_"),
    ("abi", "refit_"),
    ("resnet18", "memcpy_all"),
    ("resnet18", "refit_"),
    ("resnet18", "reload"),
    ("refit_vs_reload", ""),
    ("latency", "refit_"),
    ("latency", "memcpy_"),
];

/// How the sweep runs.
#[derive(Clone, Debug)]
pub struct BenchConfig {
    /// The most samples per measurement, over all rounds: each round takes
    /// its share within the budget of its share x `sample_time`, and an
    /// operation slower than that takes fewer ([`time`]).
    pub samples: usize,
    /// Time per sample (a batch of as many calls).
    pub sample_time: Duration,
    /// Weight sizes for the refit sweep, in bytes.
    pub sizes: Vec<usize>,
    /// Where generated models go.
    pub scratch: PathBuf,
    /// The input size (`size` x `size`) of the ResNet-18 measurements
    /// ([`build::resnet18`]); `None` leaves them out.
    pub resnet18: Option<usize>,
    /// How many times the sweep runs, each round taking its share of the
    /// samples ([`run`]).
    pub rounds: usize,
}

impl BenchConfig {
    /// `quick`: about two minutes on a 2-core VM (sizes up to 16 MiB, up to
    /// 240 samples of 2 ms in 6 rounds); otherwise five to six, up to 256 MiB,
    /// up to 480 samples of 3 ms in 8 rounds. An operation slower than a
    /// sample takes fewer, at least [`MIN_SAMPLES`] a round.
    pub fn new(quick: bool, scratch: &Path) -> Self {
        BenchConfig {
            samples: if quick { 240 } else { 480 },
            sample_time: Duration::from_millis(if quick { 2 } else { 3 }),
            sizes: if quick {
                vec![36, 4 << 10, 256 << 10, 16 << 20]
            } else {
                vec![36, 4 << 10, 256 << 10, 16 << 20, 256 << 20]
            },
            scratch: scratch.to_path_buf(),
            resnet18: Some(if quick { 64 } else { 112 }),
            rounds: if quick { 6 } else { 8 },
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

/// Writes the model `bytes` as `name` and builds `spec`'s engine on it,
/// refittable: the engine under test, whose factory adds its own options
/// ([`crate::check::SpecFactory`]), or a baseline of the harness's own (the
/// null and reference engines), built without them.
fn open(
    spec: &dyn EngineFactory,
    cfg: &BenchConfig,
    name: &str,
    bytes: &[u8],
) -> Result<(PathBuf, Box<dyn Engine>)> {
    let path = cfg.scratch.join(name);
    write_synced(&path, bytes)?;
    let engine = spec.open(&path, &BuildOptions::default())?;
    Ok((path, engine))
}

/// The seed model on `spec`: the engine under test, or a baseline the
/// rows of the engine under test divide by.
fn open_seed(spec: &dyn EngineFactory, cfg: &BenchConfig) -> Result<Box<dyn Engine>> {
    open(
        spec,
        cfg,
        "seed_conv.onnx",
        &fixtures::seed_model().to_bytes(),
    )
    .map(|(_, e)| e)
}

/// Writes `bytes` to `path` and waits until they are on disk: the kernel
/// writing tens of MiB back later, in the middle of another measurement,
/// slows it by whole multiples on a small machine.
fn write_synced(path: &Path, bytes: &[u8]) -> Result<()> {
    let io = |op: &'static str| {
        move |error| Error::Io {
            op,
            path: path.to_path_buf(),
            error,
        }
    };
    std::fs::write(path, bytes).map_err(io("write"))?;
    std::fs::File::open(path)
        .and_then(|f| f.sync_all())
        .map_err(io("sync"))
}

/// A refit of `engine`'s first weight (`bytes` bytes) and a memcpy of as
/// many bytes, a sample of each in turn, and of the machine unit
/// ([`time_in_units`]): a machine that slows for a while slows both, and
/// their ratio is taken at full speed.
fn refit_and_memcpy(
    engine: &dyn Engine,
    bytes: usize,
    cfg: &BenchConfig,
) -> Result<(Stats, Stats)> {
    let s = sets(engine, false);
    let mut k = 0;
    let mut err = None;
    let (src, mut dst) = copy_buffers(bytes);
    let mut t = time_in_units(
        cfg.samples,
        cfg.sample_time,
        &mut [
            &mut || {
                k += 1;
                if let Err(e) = refit_to(engine, &s, k) {
                    err.get_or_insert(e);
                }
            },
            &mut || {
                dst.copy_from_slice(black_box(&src));
                black_box(&dst);
            },
        ],
    );
    match err {
        Some(e) => Err(e),
        None => {
            let m = t.pop().unwrap_or_default();
            Ok((t.pop().unwrap_or_default(), m))
        }
    }
}

/// Operations that can fail, a sample of each in turn and of the machine
/// unit ([`time_in_units`]): the first error goes to `fallible` once the
/// measurement ends. Each call goes through two indirections (the
/// operation, and the wrapper that keeps its error): for operations of
/// milliseconds; [`time_pair_fallible`] times short ones.
fn time_fallible(
    cfg: &BenchConfig,
    ops: &mut [&mut dyn FnMut() -> Result<()>],
    fallible: &mut dyn FnMut(Result<()>),
) -> Vec<Stats> {
    let errs = FirstError::default();
    let mut noted: Vec<Box<dyn FnMut() + '_>> = ops
        .iter_mut()
        .map(|op| Box::new(|| errs.note(op())) as Box<dyn FnMut()>)
        .collect();
    let mut refs: Vec<&mut dyn FnMut()> = noted.iter_mut().map(|b| b.as_mut() as _).collect();
    let t = time_in_units(cfg.samples, cfg.sample_time, &mut refs);
    drop(refs);
    drop(noted);
    fallible(errs.into_result());
    t
}

/// [`time_fallible`] for two operations, each called through one
/// indirection as the sampler's own operations are (these pairs time calls
/// of a few hundred nanoseconds, where a second one would show).
fn time_pair_fallible(
    cfg: &BenchConfig,
    mut a: impl FnMut() -> Result<()>,
    mut b: impl FnMut() -> Result<()>,
    fallible: &mut dyn FnMut(Result<()>),
) -> (Stats, Stats) {
    let errs = FirstError::default();
    let t = {
        let mut a = || errs.note(a());
        let mut b = || errs.note(b());
        let mut s = time_in_units(cfg.samples, cfg.sample_time, &mut [&mut a, &mut b]).into_iter();
        (s.next().unwrap_or_default(), s.next().unwrap_or_default())
    };
    fallible(errs.into_result());
    t
}

/// The source and destination of a memcpy baseline of `bytes` bytes, both
/// [`ALIGN`](crate::tensor::ALIGN)-aligned and written, as the engine's
/// staged and published buffers are: where two buffers fall relative to
/// each other can make a copy of a few KiB many times slower (a string
/// copy meeting an unlucky offset), and fresh `Vec`s fall anywhere.
fn copy_buffers(bytes: usize) -> (Aligned<f32>, Aligned<f32>) {
    let n = bytes / 4;
    (
        Aligned::from_iter_len(n, std::iter::repeat(1.0)),
        Aligned::from_iter_len(n, std::iter::repeat(0.0)),
    )
}

/// One inference into `out`, whose buffers the engine may reuse: what a
/// serving loop does, so the figure is the engine's, not the allocation of
/// a fresh result.
fn infer_once(ctx: &mut dyn Context, x: &[Tensor], out: &mut Vec<Tensor>) -> Result<()> {
    ctx.infer_into(x, out)?;
    black_box(&*out);
    Ok(())
}

/// One all-ones tensor per input of `engine`, of its static shape: what
/// every timed inference is given.
pub fn ones_inputs(engine: &dyn Engine) -> Vec<Tensor> {
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

/// The first error of operations timed together, each of which can fail
/// (shared by their closures, which the sampler holds at once).
#[derive(Default)]
struct FirstError(RefCell<Option<Error>>);

impl FirstError {
    /// Keeps `r`'s error if it is the first.
    fn note(&self, r: Result<()>) {
        if let Err(e) = r {
            self.0.borrow_mut().get_or_insert(e);
        }
    }

    /// The first error, if any.
    fn into_result(self) -> Result<()> {
        self.0.into_inner().map_or(Ok(()), Err)
    }
}

/// [`with_switched_writer`]'s modes: no refits.
const WRITER_IDLE: u8 = 0;
/// A refit every period.
const WRITER_PACED: u8 = 1;
/// Refits back to back.
const WRITER_FLAT_OUT: u8 = 2;
/// The thread ends.
const WRITER_STOP: u8 = 3;

/// Runs `f` beside a thread that refits `engine`'s first weight,
/// alternating two values, as the mode `f` sets says at each moment:
/// [`WRITER_IDLE`], [`WRITER_PACED`] (a refit every `period`) or
/// [`WRITER_FLAT_OUT`]; so a
/// measurement can take its samples with and without a writer in turn.
/// Refit errors in the background are ignored: the measurement is of `f`.
fn with_switched_writer<R>(
    engine: &dyn Engine,
    period: Duration,
    f: impl FnOnce(&AtomicU8) -> R,
) -> R {
    let mode = AtomicU8::new(WRITER_IDLE);
    let s = sets(engine, false);
    std::thread::scope(|sc| {
        sc.spawn(|| {
            let mut k = 0;
            let mut next = Instant::now();
            loop {
                match mode.load(Ordering::Relaxed) {
                    WRITER_STOP => break,
                    WRITER_FLAT_OUT => {
                        k += 1;
                        let _ = refit_to(engine, &s, k);
                    }
                    WRITER_PACED => {
                        let now = Instant::now();
                        if now >= next {
                            k += 1;
                            let _ = refit_to(engine, &s, k);
                            next = now + period;
                        } else {
                            std::thread::sleep(next - now);
                        }
                    }
                    _ => std::thread::sleep(Duration::from_micros(100)),
                }
            }
        });
        let out = f(&mode);
        mode.store(WRITER_STOP, Ordering::Relaxed);
        out
    })
}

/// Runs `f` while a background thread refits `engine`'s first weight,
/// alternating two values, every `period` (back to back when `None`).
/// Refit errors in the background are ignored: the measurement is of `f`.
pub fn with_writer<R>(engine: &dyn Engine, period: Option<Duration>, f: impl FnOnce() -> R) -> R {
    with_switched_writer(engine, period.unwrap_or_default(), |mode| {
        mode.store(
            if period.is_some() {
                WRITER_PACED
            } else {
                WRITER_FLAT_OUT
            },
            Ordering::Relaxed,
        );
        f()
    })
}

/// One measurement of one round, before the rounds are merged: its
/// samples (per-call latencies for a tail), and the baseline it is a ratio
/// to, by name, with whether their samples alternated.
struct Raw {
    benchmark: String,
    parameter: String,
    samples: Vec<f64>,
    /// [`Stats::units`] of `samples` (empty when none were taken).
    units: Vec<f64>,
    baseline: Option<(String, bool)>,
    tail: bool,
}

impl Raw {
    /// A row of `t`, against a same-run baseline or none.
    fn of(benchmark: &str, parameter: impl Into<String>, t: &Stats, base: Against<'_>) -> Raw {
        Raw {
            benchmark: benchmark.into(),
            parameter: parameter.into(),
            samples: t.samples.clone(),
            units: t.units.clone(),
            baseline: base.map(|(b, paired)| (b.to_string(), paired)),
            tail: false,
        }
    }
}

/// A round's rows, as they are measured.
struct Rows(Vec<Raw>);

impl Rows {
    /// A row of `t`, against a same-run baseline or none.
    fn add(&mut self, benchmark: &str, parameter: impl Into<String>, t: &Stats, base: Against<'_>) {
        self.0.push(Raw::of(benchmark, parameter, t, base));
    }

    /// A same-run baseline, `benchmark/base`, and a row sampled
    /// alternately with it, a ratio to it.
    fn ratio(
        &mut self,
        benchmark: &str,
        (base, b): (&str, &Stats),
        parameter: impl Into<String>,
        t: &Stats,
    ) {
        self.add(benchmark, base, b, None);
        self.add(
            benchmark,
            parameter,
            t,
            Some((&format!("{benchmark}/{base}"), true)),
        );
    }
}

/// The mmap threshold [`steady_allocator`] fixes: glibc's largest
/// (`DEFAULT_MMAP_THRESHOLD_MAX` on 64-bit), the size its dynamic threshold
/// climbs to once a block that large has been freed.
pub const MMAP_THRESHOLD: usize = 32 << 20;

/// Sets the process's allocator (glibc's malloc) to behave the same
/// however much it has allocated before: blocks below [`MMAP_THRESHOLD`]
/// always come from the heap, larger ones always from fresh pages, and
/// freed memory is kept for the next allocation rather than returned to
/// the system. Returns whether it could (false off glibc).
///
/// By default glibc moves its mmap threshold up as large blocks are freed
/// and returns a heap's free top once it exceeds twice that, so whether an
/// allocation faults in fresh pages depends on what the process freed
/// before it. On a 2-core VM a reload of ResNet-18 (64x64) faulted 35,725
/// pages each time in a fresh process (136-181 ms) and none once steady
/// (28-38 ms), and a sweep's rounds swung between the two (34-147 ms); a
/// reload of `conv_wide` took 240-330 us in a fresh process and 45-130 us
/// after a few large blocks had come and gone. The memory stays with the
/// process until it exits: a bench's peak, not more.
pub fn steady_allocator() -> bool {
    crate::ffi::malloc::keep_freed_memory(MMAP_THRESHOLD)
}

/// Runs the sweep on the engine `spec` builds (an [`EngineSpec`]
/// or any [`EngineFactory`]); `progress` hears each measurement's name as it
/// starts.
///
/// The sweep runs [`BenchConfig::rounds`] times, each taking its share of
/// every measurement's samples, and a row's samples are those of every
/// round: a burst of load from elsewhere on a shared machine, lasting
/// seconds, then slows some samples of many rows rather than every sample
/// of a few, and shows in their intervals rather than as a narrow interval
/// around a wrong figure.
///
/// It first sets the process's allocator to one behaviour throughout
/// ([`steady_allocator`]), so that what a measurement costs does not
/// depend on what the process allocated before it.
///
/// # Errors
/// An engine error, or a model that cannot be written.
pub fn run(
    spec: &dyn EngineFactory,
    cfg: &BenchConfig,
    progress: &mut dyn FnMut(&str),
) -> Result<Vec<Row>> {
    steady_allocator();
    let rounds = cfg.rounds.max(1);
    let per_round = BenchConfig {
        samples: cfg.samples.div_ceil(rounds).max(1),
        ..cfg.clone()
    };
    // Each measurement's samples of every round, and how many each round
    // took.
    let mut merged: Vec<Raw> = Vec::new();
    let mut sizes: Vec<Vec<usize>> = Vec::new();
    for k in 1..=rounds {
        let mut say = |m: &str| {
            if rounds > 1 {
                progress(&format!("{m} (round {k}/{rounds})"));
            } else {
                progress(m);
            }
        };
        for r in round(spec, &per_round, &mut say)? {
            match merged
                .iter()
                .position(|m| m.benchmark == r.benchmark && m.parameter == r.parameter)
            {
                Some(i) => {
                    sizes[i].push(r.samples.len());
                    merged[i].samples.extend(r.samples);
                    merged[i].units.extend(r.units);
                }
                None => {
                    sizes.push(vec![r.samples.len()]);
                    merged.push(r);
                }
            }
        }
    }
    let name = spec.name();
    let stats: Vec<Stats> = merged
        .iter()
        .zip(sizes)
        .map(|(r, n)| Stats {
            units: r.units.clone(),
            ..Stats::in_rounds(r.samples.clone(), n)
        })
        .collect();
    let rows = merged
        .iter()
        .zip(&stats)
        .map(|(r, t)| {
            let mut row = Row::measured(&name, &r.benchmark, &r.parameter, t);
            if r.tail {
                let mut sorted = r.samples.clone();
                sorted.sort_by(f64::total_cmp);
                let tail = Tail::of(&sorted);
                row.p99_ns = Some(tail.p99);
                row.max_ns = Some(tail.max);
            }
            let base = r.baseline.as_ref().and_then(|(b, paired)| {
                let (bb, bp) = b.split_once('/')?;
                let i = merged
                    .iter()
                    .position(|m| m.benchmark == bb && m.parameter == bp)?;
                Some((b, &stats[i], *paired))
            });
            if let Some((b, bt, paired)) = base {
                row = row.against(b, t, bt, paired);
            }
            let listed = |list: &[(&str, &str)]| {
                list.iter()
                    .any(|(b, p)| row.benchmark == *b && row.parameter.starts_with(p))
            };
            row.baseline_only = listed(&BASELINES_ONLY);
            if listed(&NOT_IN_UNITS) {
                row.machine = None;
                row.machine_ci = None;
                row.machine_all = None;
            }
            row
        })
        .collect();
    Ok(rows)
}

/// One round of the sweep: every measurement with `cfg.samples` samples.
fn round(
    spec: &dyn EngineFactory,
    cfg: &BenchConfig,
    progress: &mut dyn FnMut(&str),
) -> Result<Vec<Raw>> {
    let mut rows = Rows(Vec::new());
    // Per-call latencies: p50 as the median, with p99 and max.
    let mut tails: Vec<Raw> = Vec::new();
    let budget = cfg.sample_time * cfg.samples as u32;
    let mut tail = |parameter: &str, lat: &Stats, base: Option<(&str, bool)>| {
        tails.push(Raw {
            tail: true,
            ..Raw::of("latency", parameter, lat, base)
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
        let (_, engine) = open(spec, cfg, "sized.onnx", &sized_model(bytes).to_bytes())?;
        let (t, m) = refit_and_memcpy(engine.as_ref(), bytes, cfg)?;
        rows.add(
            "refit",
            bytes.to_string(),
            &t,
            Some((&format!("memcpy/{bytes}"), true)),
        );
        rows.add("memcpy", bytes.to_string(), &m, None);
    }

    progress("refit_rate/seed_conv");
    let seed = open_seed(spec, cfg)?;
    let x = ones_inputs(seed.as_ref());
    let mut ctx = seed.context()?;
    let mut out = Vec::new();
    let s = sets(seed.as_ref(), false);
    let mut k = 0;
    // Its baseline, one inference, sampled in the same loop (alternating):
    // a ratio of two measurements taken at different times moves with the
    // machine.
    let (r, i) = time_pair_fallible(
        cfg,
        || {
            k += 1;
            refit_to(seed.as_ref(), &s, k)
        },
        || infer_once(ctx.as_mut(), &x, &mut out),
        &mut fallible,
    );
    rows.ratio("refit_rate", ("infer_seed_conv", &i), "seed_conv", &r);

    // The harness's own floor: the same calls on an engine that does no
    // work, in-process and through the plugin ABI, to subtract from the
    // figures above.
    for (factory, kind) in [
        (&NullFactory as &dyn EngineFactory, ""),
        (&LinkedPlugin("null"), "abi_"),
    ] {
        progress(&format!("floor/{kind}seed_conv"));
        let null = open_seed(factory, cfg)?;
        let mut nctx = null.context()?;
        let mut out = Vec::new();
        let ns = sets(null.as_ref(), false);
        let mut k = 0;
        let fr = time(cfg.samples, cfg.sample_time, || {
            k += 1;
            fallible(refit_to(null.as_ref(), &ns, k));
        });
        let fi = time(cfg.samples, cfg.sample_time, || {
            fallible(infer_once(nctx.as_mut(), &x, &mut out))
        });
        rows.add("floor", format!("{kind}refit_seed_conv"), &fr, None);
        rows.add("floor", format!("{kind}infer_seed_conv"), &fi, None);
    }

    // The plugin ABI's own overhead, whatever the engine under test: the
    // reference engine in-process against the same engine through the
    // loader (the reference plugin linked into this program), samples
    // alternating.
    progress("abi/seed_conv");
    let direct = open_seed(&EngineSpec::Reference, cfg)?;
    let via = open_seed(&LinkedPlugin("reference"), cfg)?;
    let (mut dctx, mut vctx) = (direct.context()?, via.context()?);
    let (mut dout, mut vout) = (Vec::new(), Vec::new());
    let (d, v) = time_pair_fallible(
        cfg,
        || infer_once(dctx.as_mut(), &x, &mut dout),
        || infer_once(vctx.as_mut(), &x, &mut vout),
        &mut fallible,
    );
    rows.ratio(
        "abi",
        ("infer_seed_conv_in_process", &d),
        "infer_seed_conv",
        &v,
    );
    drop((dctx, vctx, direct, via));
    progress(&format!("abi/refit_{ABI_REFIT_BYTES}"));
    let (_, via) = open(
        &LinkedPlugin("reference"),
        cfg,
        "sized.onnx",
        &sized_model(ABI_REFIT_BYTES).to_bytes(),
    )?;
    let (r, m) = refit_and_memcpy(via.as_ref(), ABI_REFIT_BYTES, cfg)?;
    rows.ratio(
        "abi",
        (&format!("memcpy_{ABI_REFIT_BYTES}"), &m),
        format!("refit_{ABI_REFIT_BYTES}"),
        &r,
    );
    drop(via);

    for (file, chain) in fixtures::models() {
        progress(&format!("infer/{file}"));
        let engine = match open(spec, cfg, file, &chain) {
            Ok((_, e)) => e,
            // A capability the engine lacks: no row, and the reason said.
            Err(e) if e.is_unsupported() => {
                progress(&format!("infer/{file} skipped: {e}"));
                continue;
            }
            Err(e) => return Err(e),
        };
        let x = ones_inputs(engine.as_ref());
        let mut ctx = engine.context()?;
        let mut out = Vec::new();
        // In machine units too: a batch of the fixed work in each turn.
        let t = time_in_units(
            cfg.samples,
            cfg.sample_time,
            &mut [&mut || fallible(infer_once(ctx.as_mut(), &x, &mut out))],
        );
        rows.add("infer", file.trim_end_matches(".onnx"), &t[0], None);
    }

    // Inference under refit, and its tails, on conv_stack, or on
    // conv_depthwise for an engine that cannot run conv_stack.
    let (label, engine) = match open(
        spec,
        cfg,
        "conv_stack.onnx",
        &fixtures::conv_stack().to_bytes(),
    ) {
        Ok((_, e)) => ("conv_stack", e),
        Err(e) if e.is_unsupported() => {
            progress(&format!("conv_stack skipped: {e}; conv_depthwise instead"));
            let (_, e) = open(
                spec,
                cfg,
                "conv_depthwise.onnx",
                &fixtures::conv_depthwise().to_bytes(),
            )?;
            ("conv_depthwise", e)
        }
        Err(e) => return Err(e),
    };
    progress(&format!("infer_under_refit/{label}"));
    let x = ones_inputs(engine.as_ref());
    let mut ctx = engine.context()?;
    let mut out = Vec::new();
    // The refittability tax: the same model built without refit, samples
    // alternating with the refittable build's.
    progress(&format!("refit_tax/{label}"));
    let plain = BuildOptions::refit(false);
    match spec.open(&cfg.scratch.join(format!("{label}.onnx")), &plain) {
        Ok(frozen) => {
            let mut fctx = frozen.context()?;
            let mut fout = Vec::new();
            let (with, without) = time_pair_fallible(
                cfg,
                || infer_once(ctx.as_mut(), &x, &mut out),
                || infer_once(fctx.as_mut(), &x, &mut fout),
                &mut fallible,
            );
            let base = format!("infer_{label}_refit_disabled");
            rows.ratio(
                "refit_tax",
                (&base, &without),
                format!("infer_{label}"),
                &with,
            );
        }
        Err(e) => progress(&format!(
            "refit_tax/{label} skipped: no build without refit: {e}"
        )),
    }
    // Inference alone, with a writer every millisecond and with one flat
    // out, a sample of each in turn: a machine that slows for a while
    // slows all three alike.
    let modes = {
        let errs = FirstError::default();
        let state = RefCell::new((&mut ctx, &mut out));
        let modes = with_switched_writer(engine.as_ref(), Duration::from_millis(1), |mode| {
            let run = |m: u8| {
                mode.store(m, Ordering::Relaxed);
                let mut s = state.borrow_mut();
                let (c, o) = &mut *s;
                errs.note(infer_once(c.as_mut(), &x, o));
            };
            time_in_units(
                cfg.samples,
                cfg.sample_time,
                &mut [
                    &mut || run(WRITER_IDLE),
                    &mut || run(WRITER_PACED),
                    &mut || run(WRITER_FLAT_OUT),
                ],
            )
        });
        fallible(errs.into_result());
        modes
    };
    rows.add("infer_under_refit", "none", &modes[0], None);
    for (mode, t) in [("w1_every_1ms", &modes[1]), ("w1_full_speed", &modes[2])] {
        rows.add(
            "infer_under_refit",
            mode,
            t,
            Some(("infer_under_refit/none", true)),
        );
    }

    progress(&format!("latency/{label}"));
    let lat = |ctx: &mut Box<dyn crate::engine::Context>,
               out: &mut Vec<Tensor>,
               fallible: &mut dyn FnMut(Result<()>)|
     -> Stats {
        latencies(budget, min_calls(cfg, 30), 200_000, || {
            fallible(infer_once(ctx.as_mut(), &x, out))
        })
    };
    let alone = lat(&mut ctx, &mut out, &mut fallible);
    tail(&format!("infer_{label}"), &alone, None);
    for (mode, period) in [
        ("w1_every_1ms", Some(Duration::from_millis(1))),
        ("w1_full_speed", None),
    ] {
        let l = with_writer(engine.as_ref(), period, || {
            lat(&mut ctx, &mut out, &mut fallible)
        });
        tail(
            &format!("infer_{label}_{mode}"),
            &l,
            Some((&format!("latency/infer_{label}"), false)),
        );
    }
    let (_, big) = open(spec, cfg, "sized.onnx", &sized_model(16 << 20).to_bytes())?;
    let s = sets(big.as_ref(), false);
    // Each refit beside a memcpy of as many bytes, calls alternating: the
    // refit's latency in copies holds when a neighbour takes the memory bus.
    let (src, mut dst) = copy_buffers(16 << 20);
    let mut k = 0;
    let mut refit = || {
        k += 1;
        fallible(refit_to(big.as_ref(), &s, k));
    };
    let mut copy = || {
        dst.copy_from_slice(black_box(&src));
        black_box(&dst);
    };
    let l = latencies_alternating(
        budget,
        min_calls(cfg, 20),
        100_000,
        &mut [&mut refit, &mut copy],
    );
    tail(
        "refit_16777216",
        &l[0],
        Some(("latency/memcpy_16777216", true)),
    );
    tail("memcpy_16777216", &l[1], None);
    drop((big, src, dst));

    progress("visibility/seed_conv");
    let mut v = 0.0f32;
    let mut ctx = seed.context()?;
    let x = ones_inputs(seed.as_ref());
    // Timed from refit() returning to the first inference that shows it;
    // its baseline, one inference once the refit shows, is timed in the
    // same loop, so the ratio reads in inferences.
    let mut waits: Vec<f64> = Vec::new();
    let mut plain: Vec<f64> = Vec::new();
    // Beside each inference, a batch of the machine unit as long.
    let mut units: Vec<f64> = Vec::new();
    let batch = {
        let t = Instant::now();
        black_box(ctx.infer(&x)?);
        unit_batch(t.elapsed())
    };
    let deadline = Instant::now() + cfg.sample_time * cfg.samples as u32;
    let cap = 100_000 / cfg.rounds.max(1);
    while waits.len() < min_calls(cfg, 20) || (Instant::now() < deadline && waits.len() < cap) {
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
        let t = Instant::now();
        black_box(ctx.infer(&x)?);
        plain.push(t.elapsed().as_nanos() as f64);
        units.push(unit_sample(batch));
    }
    // A wait and its inference were timed in the same iteration: paired.
    let vis = Stats {
        units: units.clone(),
        ..Stats::of(waits)
    };
    let vis_infer = Stats {
        units,
        ..Stats::of(plain)
    };
    rows.ratio(
        "visibility",
        ("infer_seed_conv", &vis_infer),
        "seed_conv",
        &vis,
    );

    progress("oracle/conv64_56x56");
    let chain = oracle_model();
    let (path, engine) = open(spec, cfg, "conv64_56x56.onnx", &chain.to_bytes())?;
    let x = vec![Tensor::f32(
        chain.input_shape.clone(),
        fixtures::pattern(chain.input_shape.iter().product(), 7)
            .iter()
            .map(|v| v / 3.0)
            .collect(),
    )];
    let mut ctx = engine.context()?;
    let mut out = Vec::new();
    let model = crate::model::Model::load(&path)?;
    let judged = |precision| {
        Oracle::with_judge(
            model.clone(),
            Judge {
                precision,
                ..Judge::F32
            },
        )
    };
    let (o32, o16) = (judged(Precision::F32), judged(Precision::F16));
    // One inference, each oracle's evaluation and a cached answer, a sample
    // of each in turn.
    let t = time_fallible(
        cfg,
        &mut [
            &mut || infer_once(ctx.as_mut(), &x, &mut out),
            &mut || evaluate(&o32, &x, &path),
            &mut || evaluate(&o16, &x, &path),
            &mut || {
                drop(black_box(o32.infer(&x)));
                Ok(())
            },
        ],
        &mut fallible,
    );
    let inf = &t[0];
    rows.add("infer", "conv64_56x56", inf, None);
    for (precision, miss) in [(Precision::F32, &t[1]), (Precision::F16, &t[2])] {
        rows.add(
            "oracle",
            format!("conv64_56x56_{precision}"),
            miss,
            Some(("infer/conv64_56x56", true)),
        );
    }
    rows.add(
        "oracle_cached",
        "conv64_56x56",
        &t[3],
        Some(("infer/conv64_56x56", true)),
    );

    progress("refit_vs_reload/conv_wide");
    let chain = fixtures::conv_wide();
    let (_, wide) = open(spec, cfg, "conv_wide.onnx", &chain.to_bytes())?;
    let s = sets(wide.as_ref(), true);
    let mut k = 0;
    let mut reloaded = chain.clone();
    for l in &mut reloaded.layers {
        l.weight.iter_mut().for_each(|w| *w = 2.0);
        l.bias.iter_mut().for_each(|w| *w = 2.0);
    }
    let reload_path = cfg.scratch.join("conv_wide_reload.onnx");
    write_synced(&reload_path, &reloaded.to_bytes())?;
    // A refit and a reload, a sample of each in turn.
    let (rf, rl) = time_pair_fallible(
        cfg,
        || {
            k += 1;
            refit_to(wide.as_ref(), &s, k)
        },
        || reload_once(spec, &reload_path),
        &mut fallible,
    );
    rows.add(
        "refit_vs_reload",
        "refit",
        &rf,
        Some(("refit_vs_reload/reload", true)),
    );
    rows.add("refit_vs_reload", "reload", &rl, None);
    if let Some(size) = cfg.resnet18 {
        resnet18(
            spec,
            cfg,
            size,
            &mut rows,
            &mut tail,
            &mut fallible,
            progress,
        )?;
    }
    rows.0.extend(tails);
    match err {
        Some(e) => Err(e),
        None => Ok(rows.0),
    }
}

/// The fewest per-call latencies a round takes: its share of `total`, at
/// least [`MIN_SAMPLES`].
fn min_calls(cfg: &BenchConfig, total: usize) -> usize {
    total.div_ceil(cfg.rounds.max(1)).max(MIN_SAMPLES)
}

/// The oracle's evaluation of `x` (uncached) on the model at `path`.
fn evaluate(oracle: &Oracle, x: &[Tensor], path: &Path) -> Result<()> {
    oracle
        .evaluate(x)
        .map(|y| drop(black_box(y)))
        .map_err(|reason| Error::BenchFile {
            path: path.to_path_buf(),
            reason,
        })
}

/// One reload: the engine under test built again on the model at `path`
/// (new weights, written beforehand: how fast the disk takes a file is the
/// machine's, not the engine's, and varies from run to run with what the
/// kernel has left to write back).
fn reload_once(spec: &dyn EngineFactory, path: &Path) -> Result<()> {
    spec.open(path, &BuildOptions::default())
        .map(|e| drop(black_box(e)))
}

/// Reloading instead of refitting: the model `bytes` (new weights) written
/// as `name` once, then the engine under test built on it, timed.
///
/// # Errors
/// The model cannot be written.
fn reload(
    spec: &dyn EngineFactory,
    cfg: &BenchConfig,
    name: &str,
    bytes: &[u8],
    fallible: &mut dyn FnMut(Result<()>),
) -> Result<Stats> {
    let path = cfg.scratch.join(name);
    write_synced(&path, bytes)?;
    Ok(time_in_units(
        cfg.samples,
        cfg.sample_time,
        &mut [&mut || fallible(reload_once(spec, &path))],
    )
    .swap_remove(0))
}

/// A same-run baseline for a row: its name (`benchmark/parameter`) and
/// whether the two were sampled alternately.
type Against<'a> = Option<(&'a str, bool)>;

/// Records a per-call latency row: parameter, latencies, and the
/// baseline's name with whether their calls alternated (paired).
type TailRow<'a> = dyn FnMut(&str, &Stats, Option<(&str, bool)>) + 'a;

/// The ResNet-18 measurements ([`build::resnet18`], random weights,
/// 1x3x`size`x`size`), rows `resnet18/...` and `latency/...resnet18...`:
///
/// - `refit_all`: stage and refit every weight (102 tensors, 44.6 MiB),
///   against `memcpy_all`, one copy of as many bytes;
/// - `refit_one_tensor`: one tensor of the same bytes, against the same
///   memcpy: `refit_all` over it is the per-tensor overhead;
/// - `reload`: building the engine again on the model with new weights
///   (written beforehand), against `refit_all`;
/// - `oracle_SxS`: the check oracle's expectation (exact values and f32
///   bounds), against `infer_reference_SxS`, one inference of the
///   reference engine;
/// - `latency/infer_resnet18_SxS`: inference alone, and (`_w1_refit_all`)
///   while a writer refits every weight back to back, with p99.
#[allow(clippy::too_many_arguments)]
fn resnet18(
    spec: &dyn EngineFactory,
    cfg: &BenchConfig,
    size: usize,
    rows: &mut Rows,
    tail: &mut TailRow<'_>,
    fallible: &mut dyn FnMut(Result<()>),
    progress: &mut dyn FnMut(&str),
) -> Result<()> {
    progress("resnet18/refit_all");
    let bytes = build::resnet18(size, 18).to_bytes();
    let (path, engine) = open(spec, cfg, "resnet18.onnx", &bytes)?;
    let all = sets(engine.as_ref(), true);
    let total: usize = all[0].iter().map(|(_, t)| t.numel() * 4).sum();
    let (mut k, mut j) = (0, 0);
    let (src, mut dst) = copy_buffers(total);
    // One tensor of as many bytes as all of them.
    let (_, one) = open(spec, cfg, "sized.onnx", &sized_model(total).to_bytes())?;
    let s = sets(one.as_ref(), false);
    progress("resnet18/refit_one_tensor");
    // All three copy 44.6 MiB, far beyond any cache: a sample of each in
    // turn.
    let t = time_fallible(
        cfg,
        &mut [
            &mut || {
                k += 1;
                refit_to(engine.as_ref(), &all, k)
            },
            &mut || {
                dst.copy_from_slice(black_box(&src));
                black_box(&dst);
                Ok(())
            },
            &mut || {
                j += 1;
                refit_to(one.as_ref(), &s, j)
            },
        ],
        fallible,
    );
    drop((src, dst, s, one));
    let (refit_all, memcpy, refit_one) = (&t[0], &t[1], &t[2]);
    rows.ratio("resnet18", ("memcpy_all", memcpy), "refit_all", refit_all);
    rows.add(
        "resnet18",
        "refit_one_tensor",
        refit_one,
        Some(("resnet18/memcpy_all", true)),
    );

    progress("resnet18/reload");
    let reloaded = build::resnet18(size, 19).to_bytes();
    let rl = reload(spec, cfg, "resnet18_reload.onnx", &reloaded, fallible)?;
    drop(reloaded);
    rows.add(
        "resnet18",
        "reload",
        &rl,
        Some(("resnet18/refit_all", false)),
    );

    progress("resnet18/oracle");
    let x = ones_inputs(engine.as_ref());
    {
        let (_, reference) = open(&EngineSpec::Reference, cfg, "resnet18.onnx", &bytes)?;
        let mut ctx = reference.context()?;
        let mut out = Vec::new();
        let oracle = Oracle::with_judge(crate::model::Model::load(&path)?, Judge::F32);
        // An inference and the oracle's evaluation, a sample of each in
        // turn.
        let (inf, t) = time_pair_fallible(
            cfg,
            || infer_once(ctx.as_mut(), &x, &mut out),
            || evaluate(&oracle, &x, &path),
            fallible,
        );
        rows.ratio(
            "resnet18",
            (&format!("infer_reference_{size}x{size}"), &inf),
            format!("oracle_{size}x{size}"),
            &t,
        );
    }

    progress("latency/resnet18");
    let budget = cfg.sample_time * cfg.samples as u32;
    let mut ctx = engine.context()?;
    let mut out = Vec::new();
    let alone = latencies(budget, min_calls(cfg, 20), 100_000, || {
        fallible(infer_once(ctx.as_mut(), &x, &mut out))
    });
    let label = format!("infer_resnet18_{size}x{size}");
    tail(&label, &alone, None);
    let stop = AtomicBool::new(false);
    let under = std::thread::scope(|sc| {
        sc.spawn(|| {
            let mut k = 0;
            while !stop.load(Ordering::Relaxed) {
                k += 1;
                let _ = refit_to(engine.as_ref(), &all, k);
            }
        });
        let l = latencies(budget, min_calls(cfg, 20), 100_000, || {
            fallible(infer_once(ctx.as_mut(), &x, &mut out))
        });
        stop.store(true, Ordering::Relaxed);
        l
    });
    tail(
        &format!("{label}_w1_refit_all"),
        &under,
        Some((&format!("latency/{label}"), false)),
    );
    Ok(())
}

/// The null engine ([`crate::engine::null`]) in-process.
struct NullFactory;

/// An engine of the reference plugin (`"reference"` or `"null"`) through
/// the plugin ABI: the loader over the plugin's table linked into this
/// program.
struct LinkedPlugin(&'static str);

impl EngineFactory for LinkedPlugin {
    fn name(&self) -> String {
        format!("{} through the plugin ABI", self.0)
    }

    fn open(&self, model: &Path, options: &BuildOptions) -> Result<Box<dyn Engine>> {
        let plugin = crate::ffi::Plugin::linked("(linked reference plugin)")?;
        let options = BuildOptions {
            engine_options: Some(serde_json::json!({ "engine": self.0 }).to_string()),
            ..options.clone()
        };
        Ok(Box::new(plugin.open(model, &options)?))
    }
}

impl EngineFactory for NullFactory {
    fn name(&self) -> String {
        "null".into()
    }

    fn open(&self, model: &Path, options: &BuildOptions) -> Result<Box<dyn Engine>> {
        Ok(Box::new(crate::engine::null::NullEngine::load(
            model, options,
        )?))
    }
}
