//! Stress runs: R inference threads and W refit threads start on a barrier
//! and race for a set time; every operation is recorded on one monotonic
//! clock and handed to the [history checker](super::history).
//!
//! The stress model makes every weight version readable from one output: a
//! 1x1 conv from one input channel to [`CHANNELS`] output channels on a
//! 1x1x1x1 input of 1, whose weight for channel `c` in version `v` is code
//! `v + c` of the engine's [`Code`]: a number its precision holds exactly,
//! so output channel `c` is that weight unchanged. An output decodes to
//! version `v` only if every channel came from `v`: a mix of two versions,
//! or a half-written value, decodes to none (torn).

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Barrier, Mutex, RwLock};
use std::time::{Duration, Instant};

use super::history::{self, Findings, History, Read, Version, Write};
use super::{fail, Cx, Verdict};
use crate::engine::{BuildOptions, Concurrency, Engine, Precision};
use crate::model::build::{ConvChain, ConvLayer};
use crate::model::conv::ConvAttrs;
use crate::tensor::Tensor;

/// Output channels of the stress model.
pub const CHANNELS: usize = 256;

/// Numbers an engine of one precision holds exactly, counted: code `k` is
/// the `k`-th positive number of the narrowest format the engine rounds
/// weights or outputs to, counted up from a power of two, so that an engine
/// rounding a code to its format and multiplying it by 1 (or adding 0)
/// returns it unchanged.
///
/// For f32 the codes are the integers from 2^23 up (consecutive up to
/// 2^24, then even); for f16 every normal f16; for bf16 and tf32 the
/// numbers of their mantissa width between 2^-100 and 2^101.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Code {
    /// Explicit mantissa bits kept.
    mantissa: u32,
    /// The exponent of code 0.
    low_exponent: i32,
    /// Binades spanned.
    binades: u32,
}

impl Code {
    /// Codes every precision holds exactly (1 to 2^15 with 8 significant
    /// bits), too few for a race: what a model is built on before the
    /// engine has said which precision it computes in.
    pub const PORTABLE: Code = Code {
        mantissa: 7,
        low_exponent: 0,
        binades: 15,
    };

    /// The codes for an engine computing in `precision`.
    pub fn of(precision: Precision) -> Code {
        let mantissa = precision.operand_bits().min(precision.storage_bits());
        let (low_exponent, binades) = match precision {
            Precision::F32 => (23, 2),
            Precision::F16 => (-14, 30),
            Precision::Tf32 | Precision::Bf16 => (-100, 201),
        };
        Code {
            mantissa,
            low_exponent,
            binades,
        }
    }

    /// How many codes there are.
    pub fn len(&self) -> u64 {
        u64::from(self.binades) << self.mantissa
    }

    /// Never: every precision has codes.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The largest version a tensor of `channels` channels can carry.
    pub fn max_version(&self, channels: usize) -> Version {
        self.len() - channels as u64
    }

    /// Code `k` (below [`Code::len`]).
    pub fn value(&self, k: u64) -> f32 {
        let binade = (k >> self.mantissa) as i32;
        let fraction = (k & ((1 << self.mantissa) - 1)) as u32;
        let exponent = (127 + self.low_exponent + binade) as u32;
        f32::from_bits((exponent << 23) | (fraction << (23 - self.mantissa)))
    }

    /// Which code `x` is, if any.
    pub fn index(&self, x: f32) -> Option<u64> {
        let bits = x.to_bits();
        let exponent = ((bits >> 23) & 0xff) as i32 - 127;
        let binade = exponent - self.low_exponent;
        let dropped = (1u32 << (23 - self.mantissa)) - 1;
        if bits >> 31 != 0 || binade < 0 || binade >= self.binades as i32 || bits & dropped != 0 {
            return None;
        }
        let fraction = u64::from((bits & 0x7f_ffff) >> (23 - self.mantissa));
        Some(((binade as u64) << self.mantissa) | fraction)
    }

    /// The `channels` values of version `v`: code `v + c` for channel `c`.
    pub fn weights(&self, v: Version, channels: usize) -> Vec<f32> {
        (0..channels).map(|c| self.value(v + c as u64)).collect()
    }

    /// The version channel `c` holding `x` comes from.
    fn channel_version(&self, c: usize, x: f32) -> Option<Version> {
        self.index(x)?.checked_sub(c as u64)
    }

    /// The version an output decodes to, or `None` when no single version
    /// produced it (or it is not `channels` long).
    pub fn decode(&self, out: &[f32], channels: usize) -> Option<Version> {
        if out.len() != channels {
            return None;
        }
        let v = self.channel_version(0, *out.first()?)?;
        out.iter()
            .enumerate()
            .all(|(c, &x)| self.channel_version(c, x) == Some(v))
            .then_some(v)
    }

    /// What a torn output is made of: runs of channels and the version each
    /// decodes to (`no version` for a value no version holds), e.g.
    /// `channels 0..127 from v12, 128..255 from v11`.
    pub fn anatomy(&self, out: &[f32]) -> String {
        let per: Vec<Option<Version>> = out
            .iter()
            .enumerate()
            .map(|(c, &x)| self.channel_version(c, x))
            .collect();
        let mut runs: Vec<String> = Vec::new();
        let mut start = 0;
        for c in 1..=per.len() {
            if c == per.len() || per[c] != per[start] {
                let v = per[start].map_or_else(|| "no version".to_string(), |v| format!("v{v}"));
                runs.push(format!("{start}..{} from {v}", c - 1));
                start = c;
            }
        }
        if runs.len() > 6 {
            let more = runs.len() - 6;
            runs.truncate(6);
            runs.push(format!("and {more} more runs"));
        }
        format!("channels {}", runs.join(", "))
    }
}

/// The stress model, serving version 0 of `code`.
pub fn model(code: Code) -> ConvChain {
    ConvChain {
        input_name: "x".into(),
        input_shape: vec![1, 1, 1, 1],
        output_name: "y".into(),
        layers: vec![ConvLayer {
            weight_name: "stress.weight".into(),
            bias_name: None,
            c_out: CHANNELS,
            kernel: vec![1, 1],
            attrs: ConvAttrs::default(),
            weight: code.weights(0, CHANNELS),
            bias: Vec::new(),
            relu: false,
        }],
    }
}

/// What a stress run achieved: the power it had to find a race.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Power {
    /// Inferences completed.
    pub inferences: usize,
    /// Refits completed.
    pub refits: usize,
    /// Refits during which at least one inference was running.
    pub overlapped: usize,
}

impl Power {
    /// The least a stress run must achieve by default.
    pub const MINIMUM: Power = Power {
        inferences: 200,
        refits: 20,
        overlapped: 10,
    };

    /// Whether this reaches `min` in every figure.
    pub fn reaches(&self, min: &Power) -> bool {
        self.inferences >= min.inferences
            && self.refits >= min.refits
            && self.overlapped >= min.overlapped
    }

    /// The power of a recorded history: refits overlapped by an inference
    /// are counted exactly from the recorded intervals.
    pub fn of(h: &History) -> Power {
        let mut threads: std::collections::BTreeMap<u32, Vec<(u64, u64)>> = Default::default();
        for r in &h.reads {
            threads.entry(r.thread).or_default().push((r.start, r.end));
        }
        for v in threads.values_mut() {
            v.sort_unstable();
        }
        let overlapped = h
            .writes
            .iter()
            .filter(|w| {
                threads.values().any(|reads| {
                    // A thread's inferences run one after another: the last
                    // one starting before the refit ends is the only
                    // candidate to overlap it.
                    let i = reads.partition_point(|&(start, _)| start < w.end);
                    i > 0 && reads[i - 1].1 > w.start
                })
            })
            .count();
        Power {
            inferences: h.reads.len(),
            refits: h.writes.len(),
            overlapped,
        }
    }
}

impl std::fmt::Display for Power {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{} inferences, {} refits, {} refits overlapped by an inference",
            self.inferences, self.refits, self.overlapped
        )
    }
}

/// How a stress run races.
#[derive(Clone, Debug)]
pub struct StressConfig {
    /// Inference threads.
    pub readers: usize,
    /// Refit threads.
    pub writers: usize,
    /// How long to race at least.
    pub duration: Duration,
    /// After `duration`, race on until `min_power` is reached or this much
    /// time has passed in all.
    pub cap: Duration,
    /// The power to reach.
    pub min_power: Power,
    /// Pause between a writer's staging and its `refit()` (staged weights
    /// must stay invisible meanwhile).
    pub stage_pause: Duration,
    /// Pause after each refit, so that readers see every version.
    pub refit_pause: Duration,
    /// At most this many inferences recorded per reader.
    pub max_reads: usize,
}

/// What a stress run did.
#[derive(Clone, Debug)]
pub struct StressRun {
    /// Every operation.
    pub history: History,
    /// How long the race ran.
    pub elapsed: Duration,
    /// Errors the engine returned (the first few).
    pub errors: Vec<String>,
    /// The first few torn outputs, channel by channel ([`Code::anatomy`]).
    pub torn: Vec<String>,
}

fn now(base: Instant) -> u64 {
    base.elapsed().as_nanos() as u64
}

/// Races readers and writers on `engine` serving the stress model in
/// `code`.
/// `quiesced`: the harness keeps inference out of every refit (the engine's
/// contract asks for it) and records the operations inside that exclusion.
/// `live` is called about every 250 ms with the operations done and the
/// torn outputs seen so far.
pub fn race(
    engine: &dyn Engine,
    code: Code,
    cfg: &StressConfig,
    quiesced: bool,
    live: &dyn Fn(usize, usize),
) -> StressRun {
    let name = engine
        .weights()
        .first()
        .map(|w| w.name.clone())
        .unwrap_or_default();
    let x = Tensor::full([1, 1, 1, 1], 1.0);
    let base = Instant::now();
    let barrier = Barrier::new(cfg.readers + cfg.writers + 1);
    let stop = AtomicBool::new(false);
    let ops = AtomicUsize::new(0);
    let torn = AtomicUsize::new(0);
    let gate = RwLock::new(());
    let errors = Mutex::new(Vec::<String>::new());
    let torn_examples = Mutex::new(Vec::<String>::new());
    // Live power, to know when to stop: inferences done, refits done, and
    // refits that saw an inference in flight as they started or ended.
    let in_flight = AtomicUsize::new(0);
    let live_reads = AtomicUsize::new(0);
    let live_refits = AtomicUsize::new(0);
    let live_overlapped = AtomicUsize::new(0);
    let error = |e: String| {
        if let Ok(mut v) = errors.lock() {
            if v.len() < 5 {
                v.push(e);
            }
        }
    };
    let per_writer = (code.max_version(CHANNELS) as usize / cfg.writers.max(1)).max(1);
    let (reads, writes, elapsed) = std::thread::scope(|s| {
        let readers: Vec<_> = (0..cfg.readers)
            .map(|t| {
                let (barrier, stop, ops, torn, gate, x, error, torn_examples) = (
                    &barrier,
                    &stop,
                    &ops,
                    &torn,
                    &gate,
                    &x,
                    &error,
                    &torn_examples,
                );
                let (in_flight, live_reads) = (&in_flight, &live_reads);
                s.spawn(move || {
                    let mut out = Vec::with_capacity(cfg.max_reads.min(1 << 16));
                    let ctx = engine.context();
                    barrier.wait();
                    let Ok(mut ctx) = ctx.map_err(|e| error(format!("create a context: {e}")))
                    else {
                        return out;
                    };
                    while !stop.load(Ordering::Relaxed) && out.len() < cfg.max_reads {
                        let guard =
                            quiesced.then(|| gate.read().unwrap_or_else(|p| p.into_inner()));
                        in_flight.fetch_add(1, Ordering::SeqCst);
                        let start = now(base);
                        let y = ctx.infer(std::slice::from_ref(x));
                        let end = now(base);
                        in_flight.fetch_sub(1, Ordering::SeqCst);
                        live_reads.fetch_add(1, Ordering::Relaxed);
                        drop(guard);
                        let y = match y {
                            Ok(y) => y,
                            Err(e) => {
                                error(format!("infer: {e}"));
                                break;
                            }
                        };
                        let values = y.first().and_then(|t| t.as_f32()).unwrap_or_default();
                        let value = code.decode(values, CHANNELS);
                        if value.is_none() && torn.fetch_add(1, Ordering::Relaxed) < 3 {
                            if let Ok(mut list) = torn_examples.lock() {
                                list.push(format!(
                                    "thread {t} at {:.3} ms: {}",
                                    start as f64 / 1e6,
                                    code.anatomy(values)
                                ));
                            }
                        }
                        out.push(Read {
                            thread: t as u32,
                            start,
                            end,
                            value,
                        });
                        if out.len() % 64 == 0 {
                            ops.fetch_add(64, Ordering::Relaxed);
                        }
                    }
                    out
                })
            })
            .collect();
        let writers: Vec<_> = (0..cfg.writers)
            .map(|w| {
                let (barrier, stop, ops, gate, error, name) =
                    (&barrier, &stop, &ops, &gate, &error, &name);
                let (in_flight, live_refits, live_overlapped) =
                    (&in_flight, &live_refits, &live_overlapped);
                s.spawn(move || {
                    let mut out = Vec::new();
                    barrier.wait();
                    for i in 0..per_writer {
                        if stop.load(Ordering::Relaxed) {
                            break;
                        }
                        let version = (w + cfg.writers * i + 1) as Version;
                        let t = Tensor::f32([CHANNELS, 1, 1, 1], code.weights(version, CHANNELS));
                        let staged = engine
                            .refitter()
                            .and_then(|mut r| r.set_named_weights(name, &t).map(|()| r));
                        let mut r = match staged {
                            Ok(r) => r,
                            Err(e) => {
                                error(format!("stage v{version}: {e}"));
                                break;
                            }
                        };
                        std::thread::sleep(cfg.stage_pause);
                        let guard =
                            quiesced.then(|| gate.write().unwrap_or_else(|p| p.into_inner()));
                        let busy = in_flight.load(Ordering::SeqCst) > 0;
                        let start = now(base);
                        let result = r.refit();
                        let end = now(base);
                        if busy || in_flight.load(Ordering::SeqCst) > 0 {
                            live_overlapped.fetch_add(1, Ordering::Relaxed);
                        }
                        live_refits.fetch_add(1, Ordering::Relaxed);
                        drop(guard);
                        match result {
                            Ok(()) => out.push(Write {
                                thread: (cfg.readers + w) as u32,
                                start,
                                end,
                                version,
                            }),
                            Err(e) => {
                                error(format!("refit v{version}: {e}"));
                                break;
                            }
                        }
                        ops.fetch_add(1, Ordering::Relaxed);
                        std::thread::sleep(cfg.refit_pause);
                    }
                    out
                })
            })
            .collect();
        barrier.wait();
        let start = Instant::now();
        let reached = || {
            Power {
                inferences: live_reads.load(Ordering::Relaxed),
                refits: live_refits.load(Ordering::Relaxed),
                overlapped: live_overlapped.load(Ordering::Relaxed),
            }
            .reaches(&cfg.min_power)
        };
        let all_done =
            || readers.iter().all(|h| h.is_finished()) && writers.iter().all(|h| h.is_finished());
        while (start.elapsed() < cfg.duration || (!reached() && start.elapsed() < cfg.cap))
            && !all_done()
        {
            std::thread::sleep(
                Duration::from_millis(25).min(cfg.duration.max(Duration::from_millis(1))),
            );
            if start.elapsed().as_millis() % 250 < 25 {
                live(ops.load(Ordering::Relaxed), torn.load(Ordering::Relaxed));
            }
        }
        stop.store(true, Ordering::Relaxed);
        let reads: Vec<Read> = readers
            .into_iter()
            .flat_map(|h| joined(h, "an inference", &error))
            .collect();
        let writes: Vec<Write> = writers
            .into_iter()
            .flat_map(|h| joined(h, "a refit", &error))
            .collect();
        (reads, writes, start.elapsed())
    });
    StressRun {
        history: History {
            initial: 0,
            reads,
            writes,
        },
        elapsed,
        errors: errors.into_inner().unwrap_or_default(),
        torn: torn_examples.into_inner().unwrap_or_default(),
    }
}

/// A thread's result; a panic is reported as an engine error (which fails
/// the scenario) instead of vanishing from the history.
fn joined<T>(
    h: std::thread::ScopedJoinHandle<'_, Vec<T>>,
    what: &str,
    error: &dyn Fn(String),
) -> Vec<T> {
    h.join().unwrap_or_else(|p| {
        error(format!(
            "{what} thread panicked: {}",
            super::panic_message(p.as_ref())
        ));
        Vec::new()
    })
}

/// The report line of a run and its findings.
pub fn describe(run: &StressRun, f: &Findings) -> String {
    let ops = run.history.reads.len() + run.history.writes.len();
    format!(
        "{ops} ops ({}) in {:.2} s, {:.0} ops/s; {} of {} versions observed; violations: {}",
        Power::of(&run.history),
        run.elapsed.as_secs_f64(),
        ops as f64 / run.elapsed.as_secs_f64().max(1e-9),
        f.versions_observed,
        run.history.writes.len() + 1,
        f.summary()
    )
}

/// Writes `chain` to the scratch folder as `name` and builds the engine
/// under test on it.
fn open_on(cx: &Cx<'_>, name: &str, chain: &ConvChain) -> Result<Box<dyn Engine>, Verdict> {
    let path = cx.config.scratch.join(name);
    std::fs::write(&path, chain.to_bytes())
        .map_err(|e| Verdict::Skip(format!("cannot write {}: {e}", path.display())))?;
    cx.factory
        .open(&path, &BuildOptions::default())
        .map_err(|e| {
            fail(
                format!("build the engine on {name}"),
                "success",
                format!("error: {e}"),
            )
        })
}

/// Builds the engine under test on the model `chain` makes for the codes
/// of the engine's precision: first on [`Code::PORTABLE`] to learn the
/// precision it declares, then again on that precision's codes.
fn open_coded(
    cx: &Cx<'_>,
    name: &str,
    chain: impl Fn(Code) -> ConvChain,
) -> Result<(Box<dyn Engine>, Code), Verdict> {
    let probe = open_on(cx, name, &chain(Code::PORTABLE))?;
    let code = Code::of(probe.info().contract.precision);
    drop(probe);
    Ok((open_on(cx, name, &chain(code))?, code))
}

fn live_printer(cx: &Cx<'_>, label: &str) -> impl Fn(usize, usize) {
    let show = cx.config.live;
    let label = label.to_string();
    move |ops, torn| {
        if show {
            eprint!("\r    {label}: {ops} ops, {torn} torn so far   ");
        }
    }
}

/// The verdict on a run's findings: a failure on any engine error or
/// violation, else inconclusive below `min` power, else a pass.
fn verdict(run: &StressRun, f: &Findings, step: &str, min: &Power) -> Verdict {
    if let Some(e) = run.errors.first() {
        return fail(
            step,
            "every inference and refit to succeed",
            format!("engine error: {e}"),
        );
    }
    if f.total() > 0 {
        let first: Vec<String> = f
            .examples
            .iter()
            .take(3)
            .map(|v| format!("[{}] {}", v.kind, v.evidence))
            .collect();
        let anatomy = if run.torn.is_empty() {
            String::new()
        } else {
            format!("; torn outputs: {}", run.torn.join("; "))
        };
        return fail(
            step,
            "no torn, stale, lost, non-monotone or non-linearizable result",
            format!("{}; first: {}{anatomy}", describe(run, f), first.join("; ")),
        );
    }
    let power = Power::of(&run.history);
    if !power.reaches(min) {
        return Verdict::Inconclusive(format!(
            "{}; below the minimum power ({min})",
            describe(run, f)
        ));
    }
    Verdict::Pass(describe(run, f))
}

/// Draws the timeline of `h` as `timeline_<name>.svg` where the config
/// asks for plots; a drawing that fails is reported on stderr, never as
/// the scenario's verdict.
/// Draws `h` as `timeline_<file>.svg` in the report folder, titled
/// `<scenario> on <engine>: R readers, W writers[, note]`.
fn draw(cx: &Cx<'_>, file: &str, scenario: &str, h: &History, note: &str) {
    if let Some(dir) = &cx.config.plots {
        let path = dir.join(format!("timeline_{file}.svg"));
        let name = cx.factory.name();
        // A plugin by its file name: the title has no room for its folder.
        let engine = match name.strip_prefix("plugin:") {
            Some(p) => format!(
                "plugin:{}",
                std::path::Path::new(p)
                    .file_name()
                    .map_or_else(|| p.to_string(), |f| f.to_string_lossy().into_owned())
            ),
            None => name,
        };
        let title = super::timeline::title(scenario, &engine, h, note);
        let drawn = std::fs::create_dir_all(dir)
            .map_err(|e| format!("{}: {e}", dir.display()))
            .and_then(|()| super::timeline::write(&path, h, &title));
        if let Err(e) = drawn {
            eprintln!("timeline not drawn: {e}");
        }
    }
}

/// The power a run must reach: the configured minimum, without refits
/// overlapped by an inference for a quiesced engine, where the harness
/// keeps every inference out of every refit.
fn required(cx: &Cx<'_>, quiesced: bool) -> Power {
    Power {
        overlapped: if quiesced {
            0
        } else {
            cx.config.min_power.overlapped
        },
        ..cx.config.min_power
    }
}

/// A stress scenario with `readers` x `writers` threads.
pub(super) fn scenario(cx: &Cx<'_>, name: &str, readers: usize, writers: usize) -> Verdict {
    let (engine, code) = match open_coded(cx, "stress.onnx", model) {
        Ok(e) => e,
        Err(v) => return v,
    };
    let quiesced = engine.info().contract.concurrency == Concurrency::Quiesced;
    let cfg = StressConfig {
        readers,
        writers,
        duration: Duration::from_millis(cx.config.stress_ms),
        cap: Duration::from_millis(cx.config.stress_cap_ms.max(cx.config.stress_ms)),
        min_power: required(cx, quiesced),
        stage_pause: Duration::from_micros(50),
        refit_pause: Duration::from_micros(200),
        max_reads: 1 << 20,
    };
    let label = format!("r{readers}w{writers}");
    crate::flight::step(&format!(
        "race {readers} inference and {writers} refit thread(s) on stress.onnx"
    ));
    let run = race(
        engine.as_ref(),
        code,
        &cfg,
        quiesced,
        &live_printer(cx, &label),
    );
    if cx.config.live {
        eprint!("\r{:60}\r", "");
    }
    let f = history::check(&run.history, quiesced, 3);
    draw(cx, name, name, &run.history, "");
    verdict(
        &run,
        &f,
        &format!(
            "race {readers} inference and {writers} refit thread(s) for {} ms",
            run.elapsed.as_millis()
        ),
        &required(cx, quiesced),
    )
}

/// The vendor sample's pattern: constant input on the seed model, one
/// writer refitting all-1 .. all-K at a fixed interval, readers counting
/// output changes: each refit a reader straddles must change its output
/// exactly once, and the history must be clean.
pub(super) fn vendor(cx: &Cx<'_>) -> Verdict {
    let engine = match open_on(cx, "seed_conv.onnx", &crate::fixtures::seed_model()) {
        Ok(e) => e,
        Err(v) => return v,
    };
    let quiesced = engine.info().contract.concurrency == Concurrency::Quiesced;
    let refits = 20u64;
    let interval = Duration::from_millis((cx.config.stress_ms / refits).max(1));
    let name = engine
        .weights()
        .first()
        .map(|w| w.name.clone())
        .unwrap_or_default();
    crate::flight::step(&format!(
        "the vendor's pattern: 2 readers, {refits} refits {} ms apart",
        interval.as_millis()
    ));
    let x = Tensor::full([1, 1, 3, 3], 1.0);
    let base = Instant::now();
    let stop = AtomicBool::new(false);
    let gate = RwLock::new(());
    let barrier = Barrier::new(3);
    let (reads, writes, error) = std::thread::scope(|s| {
        let readers: Vec<_> = (0..2u32)
            .map(|t| {
                let (stop, gate, x, barrier, engine) = (&stop, &gate, &x, &barrier, &engine);
                s.spawn(move || -> Result<Vec<Read>, String> {
                    let mut ctx = engine.context().map_err(|e| e.to_string())?;
                    let mut out = Vec::new();
                    barrier.wait();
                    while !stop.load(Ordering::Relaxed) && out.len() < 1 << 20 {
                        let guard =
                            quiesced.then(|| gate.read().unwrap_or_else(|p| p.into_inner()));
                        let start = now(base);
                        let y = ctx
                            .infer(std::slice::from_ref(x))
                            .map_err(|e| e.to_string())?;
                        let end = now(base);
                        drop(guard);
                        let v = y
                            .first()
                            .and_then(|t| t.as_f32())
                            .filter(|v| v.len() == 1)
                            .map(|v| v[0]);
                        let value = v
                            .filter(|v| *v >= 0.0 && v % 9.0 == 0.0 && *v <= 9.0 * refits as f32)
                            .map(|v| (v / 9.0) as Version);
                        out.push(Read {
                            thread: t,
                            start,
                            end,
                            value,
                        });
                        std::thread::sleep(Duration::from_micros(20));
                    }
                    Ok(out)
                })
            })
            .collect();
        barrier.wait();
        let mut writes = Vec::new();
        let mut error = None;
        for k in 1..=refits {
            std::thread::sleep(interval);
            let t = Tensor::full([1, 1, 3, 3], k as f32);
            let result = engine.refitter().and_then(|mut r| {
                r.set_named_weights(&name, &t)?;
                let guard = quiesced.then(|| gate.write().unwrap_or_else(|p| p.into_inner()));
                let start = now(base);
                let res = r.refit();
                let end = now(base);
                drop(guard);
                res.map(|()| Write {
                    thread: 2,
                    start,
                    end,
                    version: k,
                })
            });
            match result {
                Ok(w) => writes.push(w),
                Err(e) => {
                    error = Some(format!("refit all-{k}: {e}"));
                    break;
                }
            }
        }
        std::thread::sleep(interval);
        stop.store(true, Ordering::Relaxed);
        let mut reads = Vec::new();
        for r in readers {
            match r.join() {
                Ok(Ok(v)) => reads.extend(v),
                Ok(Err(e)) => error = error.or(Some(format!("infer: {e}"))),
                Err(p) => {
                    error = error.or(Some(format!(
                        "an inference thread panicked: {}",
                        super::panic_message(p.as_ref())
                    )))
                }
            }
        }
        (reads, writes, error)
    });
    let run = StressRun {
        history: History {
            initial: 0,
            reads,
            writes,
        },
        elapsed: base.elapsed(),
        errors: error.into_iter().collect(),
        torn: Vec::new(),
    };
    draw(
        cx,
        "stress_vendor",
        "stress_vendor",
        &run.history,
        &format!("{refits} paced refits"),
    );
    // Each straddled refit must be crossed exactly once by each reader.
    for t in 0..2u32 {
        let seq: Vec<&Read> = run.history.reads.iter().filter(|r| r.thread == t).collect();
        for w in &run.history.writes {
            let straddled =
                seq.iter().any(|r| r.end < w.start) && seq.iter().any(|r| r.start > w.end);
            if !straddled {
                continue;
            }
            let k = w.version;
            let crossings = seq
                .windows(2)
                .filter(|p| {
                    let a = p[0].value.is_some_and(|v| v >= k);
                    let b = p[1].value.is_some_and(|v| v >= k);
                    a != b
                })
                .count();
            if crossings != 1 {
                return fail(
                    format!("constant input, reader {t}, refit to all-{k} straddled"),
                    "the output to change exactly once across it",
                    format!("it changed {crossings} time(s)"),
                );
            }
        }
    }
    let f = history::check(&run.history, quiesced, 3);
    verdict(
        &run,
        &f,
        &format!(
            "the vendor's pattern: 2 readers on a constant input, {refits} refits {} ms apart",
            interval.as_millis()
        ),
        // Refits here are paced, not raced: the power is every refit made
        // and enough inferences around them.
        &Power {
            refits: refits as usize,
            overlapped: 0,
            ..cx.config.min_power
        },
    )
}

/// Channels each weight of the disjoint-weights stress model writes.
pub const DISJOINT_CHANNELS: usize = 16;

/// The disjoint-weights stress model: a 1x1 conv from one input channel to
/// 2 x [`DISJOINT_CHANNELS`] channels with a weight and a bias, on an input
/// of 1, so output channel `c` is `weight[c] + bias[c]`. The weight writes
/// its version into the first half of the channels and holds 0 in the
/// second; the bias holds 0 in the first half and writes its version into
/// the second: each half of the output decodes one weight's version on its
/// own, exactly in any precision (`x * 1 + 0` and `0 * 1 + x` round to `x`).
pub fn disjoint_model(code: Code) -> ConvChain {
    ConvChain {
        input_name: "x".into(),
        input_shape: vec![1, 1, 1, 1],
        output_name: "y".into(),
        layers: vec![ConvLayer {
            weight_name: "disjoint.weight".into(),
            bias_name: Some("disjoint.bias".into()),
            c_out: 2 * DISJOINT_CHANNELS,
            kernel: vec![1, 1],
            attrs: ConvAttrs::default(),
            weight: disjoint_values(code, 0, 0),
            bias: disjoint_values(code, 1, 0),
            relu: false,
        }],
    }
}

/// The values of weight `which` (0: the weight, 1: the bias) at `version`.
pub fn disjoint_values(code: Code, which: usize, version: Version) -> Vec<f32> {
    let zeros = vec![0.0; DISJOINT_CHANNELS];
    let own = code.weights(version, DISJOINT_CHANNELS);
    if which == 0 {
        [own, zeros].concat()
    } else {
        [zeros, own].concat()
    }
}

/// The (weight, bias) versions an output of the disjoint model decodes to;
/// `None` for a half no single version produced.
pub fn disjoint_decode(code: Code, out: &[f32]) -> (Option<Version>, Option<Version>) {
    if out.len() != 2 * DISJOINT_CHANNELS {
        return (None, None);
    }
    let (w, b) = out.split_at(DISJOINT_CHANNELS);
    (
        code.decode(w, DISJOINT_CHANNELS),
        code.decode(b, DISJOINT_CHANNELS),
    )
}

/// Two writers refit different weights of one model at once (one the
/// weight, one the bias) while two readers infer: each weight's history on
/// its own must be clean, so a refit that returned stays visible until a
/// later refit of the same weight (no update lost to the other writer).
pub(super) fn disjoint(cx: &Cx<'_>) -> Verdict {
    let (engine, code) = match open_coded(cx, "stress_disjoint.onnx", disjoint_model) {
        Ok(e) => e,
        Err(v) => return v,
    };
    let names: Vec<String> = engine.weights().iter().map(|w| w.name.clone()).collect();
    let Some(order) = ["disjoint.weight", "disjoint.bias"]
        .iter()
        .map(|n| names.iter().position(|m| m == n))
        .collect::<Option<Vec<usize>>>()
    else {
        return fail(
            "list the refittable weights of the disjoint-weights model",
            "'disjoint.weight' and 'disjoint.bias'",
            format!("{names:?}"),
        );
    };
    if engine.info().contract.subset == crate::engine::Subset::RequiresAll {
        return Verdict::Skip(
            "the engine requires every weight in each refit (requires-all): writers cannot refit different weights"
                .into(),
        );
    }
    let quiesced = engine.info().contract.concurrency == Concurrency::Quiesced;
    let duration = Duration::from_millis(cx.config.stress_ms);
    let versions = code.max_version(DISJOINT_CHANNELS);
    let pause = (duration / 1024).max(Duration::from_micros(50));
    crate::flight::step("2 writers refitting the weight and the bias at once, 2 readers");
    let x = Tensor::full([1, 1, 1, 1], 1.0);
    let base = Instant::now();
    let stop = AtomicBool::new(false);
    let gate = RwLock::new(());
    let barrier = Barrier::new(5);
    let errors = Mutex::new(Vec::<String>::new());
    let error = |e: String| {
        if let Ok(mut v) = errors.lock() {
            if v.len() < 5 {
                v.push(e);
            }
        }
    };
    type Decoded = (u32, u64, u64, (Option<Version>, Option<Version>));
    let (reads, writes) = std::thread::scope(|s| {
        let readers: Vec<_> = (0..2u32)
            .map(|t| {
                let (stop, gate, x, barrier, engine, error) =
                    (&stop, &gate, &x, &barrier, &engine, &error);
                s.spawn(move || {
                    let mut out: Vec<Decoded> = Vec::new();
                    let ctx = engine.context();
                    barrier.wait();
                    let Ok(mut ctx) = ctx.map_err(|e| error(format!("create a context: {e}")))
                    else {
                        return out;
                    };
                    while !stop.load(Ordering::Relaxed) && out.len() < 1 << 20 {
                        let guard =
                            quiesced.then(|| gate.read().unwrap_or_else(|p| p.into_inner()));
                        let start = now(base);
                        let y = ctx.infer(std::slice::from_ref(x));
                        let end = now(base);
                        drop(guard);
                        match y {
                            Ok(y) => {
                                let v = y.first().and_then(|t| t.as_f32()).unwrap_or_default();
                                out.push((t, start, end, disjoint_decode(code, v)));
                            }
                            Err(e) => {
                                error(format!("infer: {e}"));
                                break;
                            }
                        }
                    }
                    out
                })
            })
            .collect();
        let writers: Vec<_> = (0..2usize)
            .map(|which| {
                let (stop, gate, barrier, engine, error, names, order) =
                    (&stop, &gate, &barrier, &engine, &error, &names, &order);
                s.spawn(move || {
                    let mut out: Vec<(usize, Write)> = Vec::new();
                    let i = order[which];
                    barrier.wait();
                    for version in 1..=versions {
                        if stop.load(Ordering::Relaxed) {
                            break;
                        }
                        let t = Tensor::f32(
                            engine.weights()[i]
                                .shape
                                .iter()
                                .map(|d| d.unwrap_or(0))
                                .collect::<Vec<_>>(),
                            disjoint_values(code, which, version),
                        );
                        let result = engine.refitter().and_then(|mut r| {
                            r.set_named_weights(&names[i], &t)?;
                            let guard =
                                quiesced.then(|| gate.write().unwrap_or_else(|p| p.into_inner()));
                            let start = now(base);
                            let res = r.refit();
                            let end = now(base);
                            drop(guard);
                            res.map(|()| Write {
                                thread: 2 + which as u32,
                                start,
                                end,
                                version,
                            })
                        });
                        match result {
                            Ok(w) => out.push((which, w)),
                            Err(e) => {
                                error(format!("refit '{}' to v{version}: {e}", names[i]));
                                break;
                            }
                        }
                        std::thread::sleep(pause);
                    }
                    out
                })
            })
            .collect();
        barrier.wait();
        let start = Instant::now();
        while start.elapsed() < duration && !writers.iter().all(|h| h.is_finished()) {
            std::thread::sleep(Duration::from_millis(5));
        }
        stop.store(true, Ordering::Relaxed);
        let writes: Vec<(usize, Write)> = writers
            .into_iter()
            .flat_map(|h| joined(h, "a refit", &error))
            .collect();
        let reads: Vec<Decoded> = readers
            .into_iter()
            .flat_map(|h| joined(h, "an inference", &error))
            .collect();
        (reads, writes)
    });
    let elapsed = base.elapsed();
    let errors = errors.into_inner().unwrap_or_default();
    let mut all = History {
        initial: 0,
        reads: Vec::new(),
        writes: writes.iter().map(|(_, w)| *w).collect(),
    };
    let mut parts = Vec::new();
    for (which, label) in [(0usize, "weight"), (1, "bias")] {
        let h = History {
            initial: 0,
            reads: reads
                .iter()
                .map(|&(thread, start, end, v)| Read {
                    thread,
                    start,
                    end,
                    value: if which == 0 { v.0 } else { v.1 },
                })
                .collect(),
            writes: writes
                .iter()
                .filter(|(w, _)| *w == which)
                .map(|(_, w)| *w)
                .collect(),
        };
        let f = history::check(&h, quiesced, 3);
        if which == 0 {
            all.reads = h.reads.clone();
        }
        parts.push((label, h, f));
    }
    let run = StressRun {
        history: all,
        elapsed,
        errors,
        torn: Vec::new(),
    };
    for (label, h, _) in &parts {
        draw(
            cx,
            &format!("stress_disjoint_{label}"),
            "stress_disjoint",
            h,
            &format!("the {label}'s versions"),
        );
    }
    let step = format!(
        "2 writers refitting the weight and the bias at once, 2 readers, {} ms",
        elapsed.as_millis()
    );
    if let Some(e) = run.errors.first() {
        return fail(
            step,
            "every inference and refit to succeed",
            format!("engine error: {e}"),
        );
    }
    for (label, h, f) in &parts {
        if f.total() > 0 {
            let first: Vec<String> = f
                .examples
                .iter()
                .take(3)
                .map(|v| format!("[{}] {}", v.kind, v.evidence))
                .collect();
            return fail(
                format!("{step}: the history of the {label} alone"),
                "each refit of it visible from its return until the next refit of it",
                format!(
                    "{} refits of the {label}; violations: {}; first: {}",
                    h.writes.len(),
                    f.summary(),
                    first.join("; ")
                ),
            );
        }
    }
    let power = Power::of(&run.history);
    let detail = format!(
        "{power} in {:.2} s; weight and bias histories clean ({} and {} versions observed)",
        elapsed.as_secs_f64(),
        parts[0].2.versions_observed,
        parts[1].2.versions_observed
    );
    let min = required(cx, quiesced);
    if !power.reaches(&min) {
        return Verdict::Inconclusive(format!("{detail}; below the minimum power ({min})"));
    }
    Verdict::Pass(detail)
}
