//! The model-based property test: arbitrary models and arbitrary sequences
//! of operations on them, run on the engine and on a plain model of what it
//! must serve (the oracle plus the staged set), compared after every step.
//!
//! The models ([`Net`]) are conv chains of every conv attribute, residual
//! CNNs (Conv, BatchNormalization, Relu, Clip, residual Add, max and
//! average pooling, a global-pooling Gemm head) and attention blocks
//! (MatMul projections, the scores' Softmax, MatMul with the values, a
//! residual Add, a Gemm head). Weights and inputs are integers, so conv,
//! Gemm and MatMul outputs compare exactly where the engine's precision
//! allows, and the rest within the oracle's bound (see
//! [`oracle`](crate::oracle)). Biases are sometimes all zero, as freshly
//! initialized networks have them. The case count
//! is `PROPTEST_CASES` (see [`CheckConfig`](super::CheckConfig)); models the
//! engine refuses as unsupported are skipped and counted. Failing cases
//! shrink, and their seeds are saved under the report folder
//! ([`CheckConfig::regressions`](super::CheckConfig::regressions)) and
//! replayed first by a run given the same file.

mod case;
mod net;

use std::cell::Cell;
use std::path::Path;
use std::time::Instant;

use proptest::test_runner::{Config, FileFailurePersistence, TestCaseError, TestError, TestRunner};

use super::subject::{compare, ints, probe_inputs, typed};
use super::{fail, Cx, Verdict};
use crate::engine::{BuildOptions, FailedRefit, NonFinite, Subset};
use crate::model::Model;
use crate::oracle::{Judge, Oracle};
use crate::tensor::{Tensor, TensorData};

pub use case::{arb_case, Case, Invalid, Op};
pub use net::{Act, Attention, Block, Cnn, Head, Net};

/// How one case ended.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum CaseEnd {
    /// Every step matched the oracle; how many re-syncs a `may-be-partial`
    /// engine needed after failed refits.
    Ran {
        /// Full refits made to re-sync after a failed refit.
        resyncs: usize,
    },
    /// The engine refused the generated model as unsupported: the reason.
    Unsupported(String),
}

/// Runs one case against the engine; `Err` carries the failing step.
///
/// With `explain`, a mismatch's evidence ends with the oracle's explanation
/// ([`Oracle::explain`]): for the minimal failing case, not while searching.
pub(crate) fn run_case(
    cx: &Cx<'_>,
    case: &Case,
    path: &Path,
    explain: bool,
) -> Result<CaseEnd, String> {
    std::fs::write(path, case.net.to_bytes())
        .map_err(|e| format!("write {}: {e}", path.display()))?;
    let model = Model::load(path)
        .map_err(|e| format!("the generated model does not load in the oracle: {e}"))?;
    let engine = match cx.factory.open(path, &BuildOptions::default()) {
        Ok(e) => e,
        Err(e) if e.is_unsupported() => return Ok(CaseEnd::Unsupported(e.to_string())),
        Err(e) => return Err(format!("build the engine: {e}")),
    };
    let contract = engine.info().contract;
    let mut oracle = Oracle::with_judge(model, Judge::for_contract(&contract, cx.config.tolerance))
        .reporting_to(cx.worst.clone())
        .explaining(explain);
    let mut resyncs = 0;
    let names: Vec<String> = engine.weights().iter().map(|w| w.name.clone()).collect();
    let map = names
        .iter()
        .map(|name| oracle_index(&oracle, name))
        .collect::<Result<Vec<_>, _>>()?;
    let n = names.len();
    let inputs = probe_inputs(engine.inputs(), 11);
    let mut ctx = engine
        .context()
        .map_err(|e| format!("create a context: {e}"))?;
    let mut refitter = engine
        .refitter()
        .map_err(|e| format!("create a refitter: {e}"))?;
    let mut staged: Vec<Option<Vec<f32>>> = vec![None; n];
    let mut poisoned: Option<String> = None;
    let tensor = |i: usize, v: &[f32]| {
        let info = &engine.weights()[i];
        typed(
            info.dtype,
            info.shape.iter().map(|d| d.unwrap_or(0)).collect(),
            v,
        )
    };
    let numel = |i: usize| {
        engine.weights()[i]
            .shape
            .iter()
            .map(|d| d.unwrap_or(0))
            .product::<usize>()
    };
    // Integers; a BatchNorm variance's kept positive.
    let values = |oracle: &Oracle, i: usize, salt: u64| {
        let v = ints(numel(i), salt);
        if oracle.model().needs_positive(map[i]) {
            v.into_iter().map(|x| x.abs() + 1.0).collect()
        } else {
            v
        }
    };
    for (step, op) in case.ops.iter().enumerate() {
        let at = |what: String| format!("step {} ({}): {what}", step + 1, op.text(&names));
        if crate::flight::enabled() {
            crate::flight::step(&format!(
                "model_based case on {}, step {} ({})",
                path.display(),
                step + 1,
                op.text(&names)
            ));
        }
        match *op {
            Op::Infer => {}
            Op::Stage { index, salt } => {
                let i = index % n;
                let v = values(&oracle, i, salt);
                refitter
                    .set_named_weights(&names[i], &tensor(i, &v))
                    .map_err(|e| at(format!("expected success, observed error: {e}")))?;
                staged[i] = Some(v);
            }
            Op::Invalid { index, kind } => {
                let i = index % n;
                let info = &engine.weights()[i];
                let shape: Vec<usize> = info.shape.iter().map(|d| d.unwrap_or(0)).collect();
                let mut v = ints(numel(i), 77);
                let (name, t) = match kind {
                    Invalid::UnknownName => (format!("{}.missing", names[i]), tensor(i, &v)),
                    Invalid::WrongShape => {
                        v.push(1.0);
                        (
                            names[i].clone(),
                            Tensor {
                                shape: vec![v.len()],
                                ..tensor(i, &v)
                            },
                        )
                    }
                    Invalid::WrongDType => (
                        names[i].clone(),
                        Tensor {
                            shape,
                            data: TensorData::I32(vec![1; v.len()].into()),
                        },
                    ),
                    Invalid::WrongByteCount => {
                        v.push(1.0);
                        (
                            names[i].clone(),
                            Tensor {
                                shape,
                                ..tensor(i, &v)
                            },
                        )
                    }
                    Invalid::NaN => {
                        if contract.non_finite == NonFinite::Served {
                            continue;
                        }
                        v[0] = f32::NAN;
                        (names[i].clone(), tensor(i, &v))
                    }
                };
                // The error may come now or at the next refit; a staging
                // accepted now poisons the staged set.
                if refitter.set_named_weights(&name, &t).is_ok() {
                    poisoned = Some(format!("{kind:?} on '{name}'"));
                }
            }
            Op::Refit | Op::EmptyRefit => {
                let empty = *op == Op::EmptyRefit;
                let result = if empty {
                    engine.refitter().and_then(|mut r| r.refit())
                } else {
                    refitter.refit()
                };
                let pending: Vec<usize> = if empty {
                    Vec::new()
                } else {
                    (0..n).filter(|&i| staged[i].is_some()).collect()
                };
                let complete = pending.len() == n;
                let must_fail =
                    (contract.subset == Subset::RequiresAll && !complete && !pending.is_empty())
                        || (!empty && poisoned.is_some());
                if let (Ok(()), false, Some(bad)) = (&result, empty, &poisoned) {
                    return Err(at(format!("expected an error: the staging of {bad} was accepted and the refit succeeded")));
                }
                if !empty && poisoned.take().is_some() {
                    // The engine reported the bad staging at refit: nothing
                    // may change, and the staged set starts afresh.
                    refitter = engine
                        .refitter()
                        .map_err(|e| at(format!("create a refitter: {e}")))?;
                    staged.iter_mut().for_each(|s| *s = None);
                    if contract.failed_refit == FailedRefit::MayBePartial {
                        resync(engine.as_ref(), &mut oracle, &map, &names, &at)?;
                        resyncs += 1;
                    }
                } else {
                    let tolerated =
                        must_fail || (pending.is_empty() && contract.subset == Subset::RequiresAll);
                    match result {
                        Ok(()) if must_fail => {
                            let k = pending.len();
                            return Err(at(format!(
                                "expected an error refitting {k} of {n} weights (requires-all), observed success"
                            )));
                        }
                        Ok(()) => {
                            for i in pending {
                                if let Some(v) = staged[i].take() {
                                    oracle.set(map[i], v);
                                }
                            }
                        }
                        Err(e) if !tolerated => {
                            return Err(at(format!("expected success, observed error: {e}")))
                        }
                        Err(_) if contract.failed_refit == FailedRefit::MayBePartial => {
                            // Anything staged may have been applied: re-sync
                            // with a full refit of known values and go on.
                            refitter = engine
                                .refitter()
                                .map_err(|e| at(format!("create a refitter: {e}")))?;
                            staged.iter_mut().for_each(|s| *s = None);
                            resync(engine.as_ref(), &mut oracle, &map, &names, &at)?;
                            resyncs += 1;
                        }
                        Err(_) => {}
                    }
                }
            }
        }
        let observed = ctx.infer(&inputs).map_err(|e| at(format!("infer: {e}")))?;
        let expected = oracle
            .infer(&inputs)
            .map_err(|e| at(format!("oracle: {e}")))?;
        compare("infer", &expected, &observed, &oracle, &inputs).map_err(|v| at(v.detail()))?;
    }
    Ok(CaseEnd::Ran { resyncs })
}

/// After a failed refit on a `may-be-partial` engine: refits every weight
/// to fresh known values on a new refitter, so the oracle knows again what
/// is served.
fn resync(
    engine: &dyn crate::Engine,
    oracle: &mut Oracle,
    map: &[usize],
    names: &[String],
    at: &dyn Fn(String) -> String,
) -> Result<(), String> {
    let mut r = engine.refitter().map_err(|e| {
        at(format!(
            "re-sync after the failed refit: create a refitter: {e}"
        ))
    })?;
    let mut set = Vec::new();
    for (i, name) in names.iter().enumerate() {
        let info = &engine.weights()[i];
        let shape: Vec<usize> = info.shape.iter().map(|d| d.unwrap_or(0)).collect();
        let mut v = ints(shape.iter().product(), 9000 + i as u64);
        if oracle.model().needs_positive(map[i]) {
            v.iter_mut().for_each(|x| *x = x.abs() + 1.0);
        }
        r.set_named_weights(name, &typed(info.dtype, shape, &v))
            .map_err(|e| {
                at(format!(
                    "re-sync after the failed refit: stage '{name}': {e}"
                ))
            })?;
        set.push((map[i], v));
    }
    r.refit().map_err(|e| {
        at(format!(
            "re-sync after the failed refit: refit every weight: {e}"
        ))
    })?;
    for (i, v) in set {
        oracle.set(i, v);
    }
    Ok(())
}

fn oracle_index(oracle: &Oracle, name: &str) -> Result<usize, String> {
    oracle
        .model()
        .initializers()
        .iter()
        .position(|i| i.info.name == name)
        .ok_or_else(|| format!("the engine lists a weight '{name}' the model does not have"))
}

/// The scenario: runs `cases` cases (or until the time budget is spent,
/// after at least one). Failing cases shrink, and their seeds are saved to
/// [`CheckConfig::regressions`](super::CheckConfig::regressions), from
/// where the next run with the same file replays them first.
pub fn run(cx: &Cx<'_>, _: &Path) -> Verdict {
    let path = cx.config.scratch.join("model_based.onnx");
    // proptest keeps the path for the runner's lifetime as a &'static str;
    // one small string per run.
    let persistence = cx.config.regressions.as_ref().and_then(|p| {
        let s: &'static str = Box::leak(p.to_string_lossy().into_owned().into_boxed_str());
        p.parent()
            .map(|d| std::fs::create_dir_all(d).is_ok())
            .unwrap_or(false)
            .then(|| Box::new(FileFailurePersistence::Direct(s)) as _)
    });
    let config = Config {
        cases: cx.config.cases,
        max_shrink_iters: 4096,
        max_shrink_time: 10_000,
        failure_persistence: persistence,
        ..Config::default()
    };
    let mut runner = TestRunner::new(config);
    let start = Instant::now();
    let ran = Cell::new(0u32);
    let kinds = [Cell::new(0u32), Cell::new(0u32), Cell::new(0u32)];
    let refused = Cell::new(0u32);
    let resyncs = Cell::new(0usize);
    let reason = std::cell::RefCell::new(String::new());
    let budget = cx.config.seconds;
    let result = runner.run(&arb_case(), |case| {
        if ran.get() + refused.get() > 0 && start.elapsed().as_secs_f64() > budget {
            return Ok(());
        }
        match run_case(cx, &case, &path, false).map_err(TestCaseError::fail)? {
            CaseEnd::Ran { resyncs: r } => {
                ran.set(ran.get() + 1);
                let k = &kinds[case.net.kind()];
                k.set(k.get() + 1);
                resyncs.set(resyncs.get() + r);
            }
            CaseEnd::Unsupported(why) => {
                refused.set(refused.get() + 1);
                reason.replace(why);
            }
        }
        Ok(())
    });
    let replay = cx.config.regressions.as_ref().map_or_else(String::new, |p| {
        let how = cx.config.replay.clone().unwrap_or_else(|| {
            format!(
                "replay it with `refit-harness check --engine {} --scenario model_based --regressions {}`",
                cx.factory.name(),
                p.display()
            )
        });
        format!("; the failing case is saved in {}: {how}", p.display())
    });
    let refused_note = if refused.get() > 0 {
        format!(
            "; {} generated model(s) refused as unsupported (e.g. {})",
            refused.get(),
            reason.borrow()
        )
    } else {
        String::new()
    };
    if result.is_ok() && ran.get() == 0 {
        return fail(
            "run the property test",
            "at least one generated model the engine can build",
            format!("no case ran{refused_note}"),
        );
    }
    match result {
        Ok(()) => Verdict::Pass(format!(
            "{} case(s) of up to 23 operations ({} conv chain(s), {} residual CNN(s), {} attention block(s)){}{}{refused_note}",
            ran.get(),
            kinds[0].get(),
            kinds[1].get(),
            kinds[2].get(),
            if ran.get() + refused.get() < cx.config.cases {
                format!(" (stopped at the {budget} s budget)")
            } else {
                String::new()
            },
            if resyncs.get() > 0 {
                format!(
                    "; {} re-sync(s) after failed refits (may-be-partial)",
                    resyncs.get()
                )
            } else {
                String::new()
            }
        )),
        Err(TestError::Fail(reason, case)) => {
            // The minimal case once more, now explaining its mismatch.
            let reason = match run_case(cx, &case, &path, true) {
                Err(explained) => explained,
                Ok(_) => reason.to_string(),
            };
            fail(
                format!(
                    "minimal failing case: {}; then {} (inferring after every step)",
                    case.model_text(),
                    case.ops_text()
                ),
                "the oracle's output after every step",
                format!("{reason}{replay}"),
            )
        }
        Err(TestError::Abort(reason)) => {
            fail("run the property test", "cases to run", reason.to_string())
        }
    }
}
