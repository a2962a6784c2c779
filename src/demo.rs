//! The vendor's refit demos, run on any engine serving the seed model (one
//! conv, input 1x1x3x3, a 3x3 kernel): a single-thread refit 0 -> 9, and a
//! reader racing a writer that sweeps the kernel through all-0 .. all-9.

use std::io::Write;
use std::sync::Mutex;
use std::time::Duration;

use crate::engine::{refit_all, Engine};
use crate::history::{self, History, Read};
use crate::race::{Race, RaceError, Refit, Role, Span, Until};
use crate::tensor::Tensor;

/// Why a demo stopped.
#[derive(Debug, thiserror::Error)]
pub enum DemoError {
    /// The engine does not serve the seed model.
    #[error("the demos need the seed model (one 3x3 conv kernel); this engine has weights {0:?}")]
    NotTheSeedModel(Vec<String>),
    /// An inference gave other than one value.
    #[error("the seed model's output has one value; found {0}")]
    OutputCount(usize),
    /// An engine call failed; `step` says which.
    #[error("{step}: {error}")]
    Engine {
        /// The demo's step (`refit to all-3`).
        step: String,
        /// The engine's error (in the message, so not also a source a
        /// reporter would print twice).
        error: crate::Error,
    },
    /// The output could not be written.
    #[error("writing the demo's output: {0}")]
    Output(std::io::Error),
    /// A thread of the multi-thread demo panicked (the engine's call
    /// panicked in it).
    #[error("the {0} thread panicked")]
    Panicked(&'static str),
}

impl From<RaceError> for DemoError {
    fn from(e: RaceError) -> Self {
        match e {
            RaceError::Engine { step, error } => DemoError::Engine { step, error },
            RaceError::Panicked { role, .. } => DemoError::Panicked(match role {
                Role::Inference => "inference",
                Role::Refit => "refit",
            }),
        }
    }
}

impl From<std::io::Error> for DemoError {
    fn from(e: std::io::Error) -> Self {
        DemoError::Output(e)
    }
}

/// An engine call's error, with the step it was made in.
fn at(step: impl Into<String>) -> impl FnOnce(crate::Error) -> DemoError {
    move |error| DemoError::Engine {
        step: step.into(),
        error,
    }
}

/// The seed model's single weight: its name and shape, checked.
fn seed_weight(engine: &dyn Engine) -> Result<(String, Vec<usize>), DemoError> {
    let w = engine.weights();
    let seed = w.len() == 1
        && w[0]
            .static_shape()
            .is_some_and(|s| s.iter().product::<usize>() == 9);
    if !seed {
        return Err(DemoError::NotTheSeedModel(
            w.iter()
                .map(|w| format!("{} {}", w.name, w.shape_text()))
                .collect(),
        ));
    }
    Ok((w[0].name.clone(), w[0].static_shape().unwrap_or_default()))
}

/// The all-ones seed input.
pub fn seed_input() -> Tensor {
    Tensor::full([1, 1, 3, 3], 1.0)
}

/// Infers once on the all-ones input and returns the single result.
fn infer_one(ctx: &mut dyn crate::Context, x: &Tensor) -> Result<f32, DemoError> {
    let out = ctx.infer(std::slice::from_ref(x)).map_err(at("infer"))?;
    let v = out.first().map(Tensor::to_f32_vec).unwrap_or_default();
    match v[..] {
        [one] => Ok(one),
        _ => Err(DemoError::OutputCount(v.len())),
    }
}

fn grid_line(row: usize, label: &str, values: &[f32]) -> String {
    let cells: Vec<String> = values[row * 3..row * 3 + 3]
        .iter()
        .map(|v| format!("{v}"))
        .collect();
    let pad = " ".repeat(label.len());
    format!("{}{}", if row == 0 { label } else { &pad }, cells.join(" "))
}

fn print_step(
    out: &mut dyn Write,
    input: &[f32],
    kernel: &[f32],
    result: f32,
) -> std::io::Result<()> {
    for row in 0..3 {
        let mut line = format!(
            "{}   {}",
            grid_line(row, "input: ", input),
            grid_line(row, "conv kernel: ", kernel)
        );
        if row == 0 {
            line.push_str(&format!("   result: {result}"));
        }
        writeln!(out, "{}", line.trim_end())?;
    }
    Ok(())
}

/// The single-thread demo: infer with the model's kernel (all zeros in the
/// seed), refit the kernel to all ones, infer again. Prints both steps laid
/// out as in the vendor's demo and returns the two results (0 and 9).
///
/// # Errors
/// The engine does not serve the seed model, or an engine call fails.
pub fn single_thread(engine: &dyn Engine, out: &mut dyn Write) -> Result<[f32; 2], DemoError> {
    let (name, shape) = seed_weight(engine)?;
    let x = seed_input();
    let mut ctx = engine.context().map_err(at("create a context"))?;
    let before = infer_one(ctx.as_mut(), &x)?;
    let zeros = vec![0.0; 9];
    print_step(out, &x.to_f32_vec(), &zeros, before)?;
    writeln!(out, "--- weight refit ---")?;
    let ones = Tensor::full(shape, 1.0);
    refit_all(engine, [(name.as_str(), &ones)]).map_err(at("refit to all ones"))?;
    let after = infer_one(ctx.as_mut(), &x)?;
    print_step(out, &x.to_f32_vec(), &ones.to_f32_vec(), after)?;
    Ok([before, after])
}

/// Refits the kernel to all-k for k = 0..=9 in one thread, inferring after
/// each: the results of the vendor's sweep (0, 9, ... 81 on a correct
/// engine).
///
/// # Errors
/// The engine does not serve the seed model, or an engine call fails.
pub fn sweep(engine: &dyn Engine) -> Result<Vec<f32>, DemoError> {
    let (name, shape) = seed_weight(engine)?;
    let x = seed_input();
    let mut ctx = engine.context().map_err(at("create a context"))?;
    (0..10)
        .map(|k| {
            refit_all(
                engine,
                [(name.as_str(), &Tensor::full(shape.clone(), k as f32))],
            )
            .map_err(at(format!("refit to all-{k}")))?;
            infer_one(ctx.as_mut(), &x)
        })
        .collect()
}

/// What the multi-thread demo saw.
#[derive(Clone, Debug)]
pub struct MultiThreadRun {
    /// Every result the inference thread printed, in order.
    pub results: Vec<f32>,
    /// The distinct results, in the order first seen.
    pub distinct: Vec<f32>,
    /// Every inference and refit on one clock, for the history checker:
    /// version `k` is the kernel all-k (result 9k); the model's own all-zero
    /// kernel is version 0, so the refit to all-0 is left out.
    pub history: History,
}

/// The history checker's verdict on a multi-thread demo run, one line.
pub fn verify(run: &MultiThreadRun) -> (bool, String) {
    let f = history::check(&run.history, false, 3);
    // The first refit, to all-0, serves the model's own kernel again: it
    // is printed and counted, but is no new version for the checker.
    let mut line = format!(
        "verify: {} inferences, {} refits ({} to a new version), {} versions observed; violations: {}",
        run.history.reads.len(),
        run.history.writes.len() + 1,
        run.history.writes.len(),
        f.versions_observed,
        f.summary()
    );
    for v in &f.examples {
        line.push_str(&format!("\n  [{}] {}", v.kind, v.evidence));
    }
    (f.total() == 0, line)
}

/// The multi-thread demo: one thread infers the all-ones input in a loop
/// (every `interval / 5`) and prints each result; another refits the kernel
/// to all-0, all-1, ... all-9, one step per `interval`. The reader starts
/// before the first refit and infers once more after the last, then the
/// demo prints the distinct results in the order seen.
///
/// # Errors
/// The engine does not serve the seed model, or an engine call fails in
/// either thread.
pub fn multi_thread(
    engine: &dyn Engine,
    interval: Duration,
    out: &mut (dyn Write + Send),
) -> Result<MultiThreadRun, DemoError> {
    let (name, shape) = seed_weight(engine)?;
    let out = Mutex::new(out);
    let say = |line: String| -> Result<(), DemoError> {
        // A thread that panicked while writing left whole lines behind.
        let mut o = out
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        writeln!(o, "{line}")?;
        Ok(())
    };
    let period = interval / 5;
    let race = Race {
        engine,
        input: seed_input(),
        readers: 1,
        writers: 1,
        quiesced: false,
        read_pause: period,
        max_reads: usize::MAX,
        writers_after_first_read: true,
        until: Until {
            duration: None,
            power: None,
            linger: period,
        },
    };
    let results = Mutex::new(Vec::new());
    let decode = |at: Span, y: &[Tensor]| -> Result<Read, DemoError> {
        let v = match y.first().map(Tensor::to_f32_vec).unwrap_or_default()[..] {
            [one] => one,
            ref other => return Err(DemoError::OutputCount(other.len())),
        };
        say(format!("[infer] result: {v}"))?;
        results
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .push(v);
        Ok(Read {
            thread: at.thread,
            start: at.start,
            end: at.end,
            value: ((0.0..=81.0).contains(&v) && v % 9.0 == 0.0).then_some((v / 9.0) as u64),
        })
    };
    let plan = |_: usize, k: usize| {
        (k < 10).then(|| Refit {
            version: k as u64,
            label: format!("all-{k}"),
            weights: vec![(name.clone(), Tensor::full(shape.clone(), k as f32))],
            before: if k == 0 { period } else { interval },
            staged: Duration::ZERO,
            after: Duration::ZERO,
        })
    };
    let committed = |w: &history::Write| say(format!("[refit] kernel -> all {}", w.version));
    let raced = race.run(decode, plan, committed, &|_| {});
    if let Some(e) = raced.errors.into_iter().next() {
        return Err(e);
    }
    let results = results
        .into_inner()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    let reads = raced.reads;
    // The model's own kernel is version 0: the refit to all-0 writes it
    // again and is no new version.
    let writes: Vec<history::Write> = raced.writes.into_iter().filter(|w| w.version > 0).collect();
    let mut distinct: Vec<f32> = Vec::new();
    for &v in &results {
        if distinct.last() != Some(&v) && !distinct.contains(&v) {
            distinct.push(v);
        }
    }
    let list: Vec<String> = distinct.iter().map(|v| v.to_string()).collect();
    say(format!(
        "summary: {} inferences, {} distinct results in order: {}",
        results.len(),
        distinct.len(),
        list.join(", ")
    ))?;
    Ok(MultiThreadRun {
        results,
        distinct,
        history: History {
            initial: 0,
            reads,
            writes,
        },
    })
}
