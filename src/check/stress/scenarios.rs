//! The stress scenarios: R readers and W writers racing on the stress
//! model, the vendor's paced pattern on the seed model, and two writers
//! refitting disjoint weights; each races through [`crate::race`] and hands
//! the history to the [history checker](crate::history).

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Mutex;
use std::time::Duration;

use super::code::{disjoint_decode, disjoint_model, disjoint_values, model, Code, CHANNELS};
use crate::check::{fail, Cx, Verdict};
use crate::engine::{BuildOptions, Concurrency, Engine};
use crate::history::{self, Findings, History, Power, Read, Version, Write};
use crate::model::build::ConvChain;
use crate::race::{Race, Raced, Refit, Span, Until};
use crate::tensor::Tensor;

/// What a stress run did.
#[derive(Clone, Debug)]
struct StressRun {
    /// Every operation.
    history: History,
    /// How long the race ran.
    elapsed: Duration,
    /// Errors the engine returned (the first few).
    errors: Vec<String>,
    /// The first few torn outputs, channel by channel ([`Code::anatomy`]).
    torn: Vec<String>,
}

impl StressRun {
    /// A race's reads and writes as one history, with the torn outputs
    /// its decoder kept.
    fn of(raced: Raced<Read, String>, torn: Vec<String>) -> StressRun {
        StressRun {
            history: History {
                initial: 0,
                reads: raced.reads,
                writes: raced.writes,
            },
            elapsed: raced.elapsed,
            errors: raced.errors,
            torn,
        }
    }
}

/// A race's `committed` that keeps every refit.
fn keep(_: &Write) -> Result<(), String> {
    Ok(())
}

/// The report line of a run and its findings.
fn describe(run: &StressRun, f: &Findings) -> String {
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

/// The failure of a run in which the engine returned an error.
fn engine_failed(step: impl Into<String>, e: &str) -> Verdict {
    fail(
        step,
        "every inference and refit to succeed",
        format!("engine error: {e}"),
    )
}

/// The verdict on a run's findings: a failure on any engine error or
/// violation, else inconclusive below `min` power, else a pass.
fn verdict(run: &StressRun, f: &Findings, step: &str, min: &Power) -> Verdict {
    if let Some(e) = run.errors.first() {
        return engine_failed(step, e);
    }
    if f.total() > 0 {
        let anatomy = if run.torn.is_empty() {
            String::new()
        } else {
            format!("; torn outputs: {}", run.torn.join("; "))
        };
        return fail(
            step,
            "no torn, stale, lost, non-monotone or non-linearizable result",
            format!("{}; first: {}{anatomy}", describe(run, f), f.first(3)),
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

/// Draws `h` as `timeline_<file>.svg` in the report folder where the
/// config asks for plots, titled `<scenario> on <engine>: R readers, W
/// writers[, note]`; a drawing that fails is reported on stderr, never as
/// the scenario's verdict.
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
        let title = crate::check::timeline::title(scenario, &engine, h, note);
        let drawn = std::fs::create_dir_all(dir)
            .map_err(|error| crate::Error::Io {
                op: "create",
                path: dir.clone(),
                error,
            })
            .and_then(|()| crate::check::timeline::write(&path, h, &title));
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

/// A stress scenario with `readers` x `writers` threads: each writer
/// refits versions of its own (writer `w` the versions `w + 1`, `w + 1 + W`,
/// ...) as fast as it can, staging each 50 us before its refit; the race
/// runs for the configured time, and on until it reaches the minimum power
/// or the cap.
pub(in crate::check) fn scenario(
    cx: &Cx<'_>,
    name: &str,
    readers: usize,
    writers: usize,
) -> Verdict {
    let (engine, code) = match open_coded(cx, "stress.onnx", model) {
        Ok(e) => e,
        Err(v) => return v,
    };
    let quiesced = engine.info().contract.concurrency == Concurrency::Quiesced;
    let weight = engine
        .weights()
        .first()
        .map(|w| w.name.clone())
        .unwrap_or_default();
    let min_power = required(cx, quiesced);
    let race = Race {
        engine: engine.as_ref(),
        input: Tensor::full([1, 1, 1, 1], 1.0),
        readers,
        writers,
        quiesced,
        read_pause: Duration::ZERO,
        max_reads: 1 << 20,
        writers_after_first_read: false,
        until: Until {
            duration: Some(Duration::from_millis(cx.config.stress_ms)),
            power: Some((
                min_power,
                Duration::from_millis(cx.config.stress_cap_ms.max(cx.config.stress_ms)),
            )),
            linger: Duration::ZERO,
        },
    };
    let per_writer = (code.max_version(CHANNELS) as usize / writers.max(1)).max(1);
    let plan = |w: usize, i: usize| {
        let version = (w + writers * i + 1) as Version;
        (i < per_writer).then(|| Refit {
            version,
            label: format!("v{version}"),
            weights: vec![(
                weight.clone(),
                Tensor::f32([CHANNELS, 1, 1, 1], code.weights(version, CHANNELS)),
            )],
            before: Duration::ZERO,
            staged: Duration::from_micros(50),
            after: Duration::from_micros(200),
        })
    };
    let torn = AtomicUsize::new(0);
    let torn_examples = Mutex::new(Vec::<String>::new());
    let decode = |at: Span, y: &[Tensor]| -> Result<Read, String> {
        let values = y.first().and_then(|t| t.as_f32()).unwrap_or_default();
        let value = code.decode(values, CHANNELS);
        if value.is_none() && torn.fetch_add(1, Ordering::Relaxed) < 3 {
            if let Ok(mut list) = torn_examples.lock() {
                list.push(format!(
                    "thread {} at {:.3} ms: {}",
                    at.thread,
                    at.start as f64 / 1e6,
                    code.anatomy(values)
                ));
            }
        }
        Ok(Read {
            thread: at.thread,
            start: at.start,
            end: at.end,
            value,
        })
    };
    crate::flight::step(&format!(
        "race {readers} inference and {writers} refit thread(s) on stress.onnx"
    ));
    let printer = live_printer(cx, &format!("r{readers}w{writers}"));
    let raced = race.run(decode, plan, keep, &|ops| {
        printer(ops, torn.load(Ordering::Relaxed));
    });
    if cx.config.live {
        eprint!("\r{:60}\r", "");
    }
    let run = StressRun::of(raced, torn_examples.into_inner().unwrap_or_default());
    let f = history::check(&run.history, quiesced, 3);
    draw(cx, name, name, &run.history, "");
    verdict(
        &run,
        &f,
        &format!(
            "race {readers} inference and {writers} refit thread(s) for {} ms",
            run.elapsed.as_millis()
        ),
        &min_power,
    )
}

/// The vendor sample's pattern: constant input on the seed model, one
/// writer refitting all-1 .. all-K at a fixed interval, readers counting
/// output changes: each refit a reader straddles must change its output
/// exactly once, and the history must be clean.
pub(in crate::check) fn vendor(cx: &Cx<'_>) -> Verdict {
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
    let race = Race {
        engine: engine.as_ref(),
        input: Tensor::full([1, 1, 3, 3], 1.0),
        readers: 2,
        writers: 1,
        quiesced,
        read_pause: Duration::from_micros(20),
        max_reads: 1 << 20,
        writers_after_first_read: false,
        until: Until {
            duration: None,
            power: None,
            linger: interval,
        },
    };
    let plan = |_: usize, i: usize| {
        let k = i as u64 + 1;
        (k <= refits).then(|| Refit {
            version: k,
            label: format!("all-{k}"),
            weights: vec![(name.clone(), Tensor::full([1, 1, 3, 3], k as f32))],
            before: interval,
            staged: Duration::ZERO,
            after: Duration::ZERO,
        })
    };
    let decode = |at: Span, y: &[Tensor]| -> Result<Read, String> {
        let v = y
            .first()
            .and_then(|t| t.as_f32())
            .filter(|v| v.len() == 1)
            .map(|v| v[0]);
        let value = v
            .filter(|v| *v >= 0.0 && v % 9.0 == 0.0 && *v <= 9.0 * refits as f32)
            .map(|v| (v / 9.0) as Version);
        Ok(Read {
            thread: at.thread,
            start: at.start,
            end: at.end,
            value,
        })
    };
    let raced = race.run(decode, plan, keep, &|_| {});
    let run = StressRun::of(raced, Vec::new());
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

/// Two writers refit different weights of one model at once (one the
/// weight, one the bias) while two readers infer: each weight's history on
/// its own must be clean, so a refit that returned stays visible until a
/// later refit of the same weight (no update lost to the other writer).
pub(in crate::check) fn disjoint(cx: &Cx<'_>) -> Verdict {
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
    let versions = code.max_version(super::code::DISJOINT_CHANNELS);
    let pause = (duration / 1024).max(Duration::from_micros(50));
    crate::flight::step("2 writers refitting the weight and the bias at once, 2 readers");
    let race = Race {
        engine: engine.as_ref(),
        input: Tensor::full([1, 1, 1, 1], 1.0),
        readers: 2,
        writers: 2,
        quiesced,
        read_pause: Duration::ZERO,
        max_reads: 1 << 20,
        writers_after_first_read: false,
        until: Until {
            duration: Some(duration),
            power: None,
            linger: Duration::ZERO,
        },
    };
    let shapes: Vec<Vec<usize>> = engine
        .weights()
        .iter()
        .map(|w| w.shape.iter().map(|d| d.unwrap_or(0)).collect())
        .collect();
    let plan = |which: usize, i: usize| {
        let version = i as Version + 1;
        let w = order[which];
        (version <= versions).then(|| Refit {
            version,
            label: format!("'{}' to v{version}", names[w]),
            weights: vec![(
                names[w].clone(),
                Tensor::f32(shapes[w].clone(), disjoint_values(code, which, version)),
            )],
            before: Duration::ZERO,
            staged: Duration::ZERO,
            after: pause,
        })
    };
    type Decoded = (Span, (Option<Version>, Option<Version>));
    let decode = |at: Span, y: &[Tensor]| -> Result<Decoded, String> {
        let v = y.first().and_then(|t| t.as_f32()).unwrap_or_default();
        Ok((at, disjoint_decode(code, v)))
    };
    let raced = race.run(decode, plan, keep, &|_| {});
    let elapsed = raced.elapsed;
    // Writer `which` is thread 2 + which: the two readers come first.
    let which = |w: &Write| w.thread as usize - 2;
    let mut all = History {
        initial: 0,
        reads: Vec::new(),
        writes: raced.writes.clone(),
    };
    let mut parts = Vec::new();
    for (half, label) in [(0usize, "weight"), (1, "bias")] {
        let h = History {
            initial: 0,
            reads: raced
                .reads
                .iter()
                .map(|&(at, v)| Read {
                    thread: at.thread,
                    start: at.start,
                    end: at.end,
                    value: if half == 0 { v.0 } else { v.1 },
                })
                .collect(),
            writes: raced
                .writes
                .iter()
                .filter(|w| which(w) == half)
                .copied()
                .collect(),
        };
        let f = history::check(&h, quiesced, 3);
        if half == 0 {
            all.reads = h.reads.clone();
        }
        parts.push((label, h, f));
    }
    let run = StressRun {
        history: all,
        elapsed,
        errors: raced.errors,
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
        return engine_failed(step, e);
    }
    for (label, h, f) in &parts {
        if f.total() > 0 {
            return fail(
                format!("{step}: the history of the {label} alone"),
                "each refit of it visible from its return until the next refit of it",
                format!(
                    "{} refits of the {label}; violations: {}; first: {}",
                    h.writes.len(),
                    f.summary(),
                    f.first(3)
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
