//! The engine as its own oracle: scenarios that need no model of the
//! network's ops, so they run on any model the engine can build.
//!
//! - `warm_equals_cold`: an engine built with weights A and refitted to B
//!   must serve what a fresh build with B serves (B written into a copy of
//!   the model file).
//! - `history_independence`: after cycles A -> B -> A, the engine must
//!   serve what a fresh build with A serves, every cycle (no drift, no
//!   stale or cached state).
//!
//! Bit for bit where the engine declares `refit_bit_identical`
//! ([`Numerics`](crate::engine::Numerics)); otherwise within
//! [`self_tolerance`], and the observed difference is reported either way.
//!
//! Staging buffers are used as callers use them, on purpose: in
//! `warm_equals_cold` every tensor's buffer is overwritten (poisoned) right
//! after `set_named_weights` returns and before `refit`, so an engine that
//! reads the caller's buffer later serves the poison; in
//! `history_independence` each weight has one staging buffer, at one
//! address, whose contents change from refit to refit, so an engine that
//! skips a buffer it has seen serves stale weights. The inputs are the same
//! bytes before and after every refit, so a result cache that outlives a
//! refit is caught too.

use std::path::{Path, PathBuf};

use super::subject::{ints, must, open_engine, probe_inputs, typed, value_scale, Step};
use super::{fail, Cx, Verdict};
use crate::engine::{BuildOptions, Context, Contract, Engine, Precision};
use crate::tensor::Tensor;

/// The value every staged buffer is overwritten with once
/// `set_named_weights` has returned.
pub(crate) const POISON: f32 = -7777.0;

/// Cycles of `history_independence`.
pub(crate) const CYCLES: usize = 5;

/// The largest difference allowed between a refitted engine's output `w`
/// and a fresh build's `c`, for an engine that does not declare refits
/// bit-identical: `256 u (|c| + rms)` times the declared error factor,
/// where `u` is the unit roundoff of the declared precision's storage and
/// `rms` the root mean square of that output tensor. Two builds of the
/// same weights may pick kernels that sum in other orders; this allows
/// such a difference at the output's own scale, and nothing the size of a
/// stale or misplaced weight. Where the oracle evaluates the model, the
/// oracle-based scenarios judge the same refits against its sharper
/// per-element bound.
pub fn self_tolerance(contract: &Contract, cold: f64, rms: f64) -> f64 {
    let u = match contract.precision {
        Precision::F16 => 2f64.powi(-11),
        Precision::Bf16 => 2f64.powi(-8),
        _ => 2f64.powi(-24),
    };
    256.0 * u * contract.error_factor.max(1.0) * (cold.abs() + rms)
}

/// The model's weights as the engine lists them, with their values as
/// built (A), read from the file without evaluating any op.
struct Weights {
    names: Vec<String>,
    a: Vec<Tensor>,
}

impl Weights {
    fn read(engine: &dyn Engine, model: &Path) -> Step<Self> {
        let mut inits = must(
            "read the model's weights",
            crate::model::read_initializers(model),
        )?;
        // Scalars the engine refits as weights (its `scalar_weights`).
        let scalars: Vec<String> = engine
            .weights()
            .iter()
            .filter(|w| w.shape.is_empty() && !inits.iter().any(|i| i.info.name == w.name))
            .map(|w| w.name.clone())
            .collect();
        if !scalars.is_empty() {
            inits = must(
                "read the model's weights",
                crate::model::read_initializers_with(model, &scalars),
            )?;
        }
        let mut names = Vec::new();
        let mut a = Vec::new();
        for w in engine.weights() {
            let init = inits
                .iter()
                .find(|i| i.info.name == w.name)
                .ok_or_else(|| {
                    fail(
                        "list the refittable weights",
                        "names of the model's initializers",
                        format!("'{}'", w.name),
                    )
                })?;
            names.push(w.name.clone());
            a.push(typed(w.dtype, init.shape.clone(), &init.values));
        }
        Ok(Weights { names, a })
    }

    /// New values for weight `i`: small integers, scaled to half the RMS
    /// of a float weight's values as built, and kept positive for a weight
    /// built all positive (a BatchNorm variance).
    fn new_values(&self, i: usize, salt: u64) -> Tensor {
        let built = self.a[i].to_f32_vec();
        let scale = value_scale(&built);
        let positive = !built.is_empty() && built.iter().all(|&x| x > 0.0);
        let v: Vec<f32> = ints(built.len(), salt * 31 + i as u64)
            .into_iter()
            .map(|x| if positive { x.abs() + 1.0 } else { x } * scale)
            .collect();
        typed(self.a[i].dtype(), self.a[i].shape.clone(), &v)
    }

    fn set(&self, salt: u64) -> Vec<Tensor> {
        (0..self.a.len())
            .map(|i| self.new_values(i, salt))
            .collect()
    }
}

/// Stages `values` through the engine's refitter from `buffers` (one per
/// weight, reused: each gets the new contents in place, at the same
/// address), overwrites every buffer with [`POISON`] once staged when
/// `poison` is set, and refits.
fn refit(
    engine: &dyn Engine,
    step: &str,
    names: &[String],
    buffers: &mut [Tensor],
    values: &[Tensor],
    poison: bool,
) -> Step<()> {
    crate::flight::step(step);
    let mut r = must(&format!("{step}: create a refitter"), engine.refitter())?;
    for ((name, buf), v) in names.iter().zip(buffers.iter_mut()).zip(values) {
        buf.data.assign(v.data.values());
        must(
            &format!("{step}: stage '{name}'"),
            r.set_named_weights(name, buf),
        )?;
        if poison {
            let n = buf.data.len();
            let bad = typed(buf.dtype(), buf.shape.clone(), &vec![POISON; n]);
            buf.data.assign(bad.data.values());
        }
    }
    must(&format!("{step}: refit"), r.refit())
}

/// Writes the model with `values` as its weights beside the scratch files.
fn write_model(
    cx: &Cx<'_>,
    model: &Path,
    tag: &str,
    w: &Weights,
    values: &[Tensor],
) -> Step<PathBuf> {
    let stem = model
        .file_stem()
        .map_or_else(|| "model".into(), |s| s.to_string_lossy().into_owned());
    let path = cx.config.scratch.join(format!("{stem}.{tag}.onnx"));
    let pairs: Vec<(String, Tensor)> = w
        .names
        .iter()
        .cloned()
        .zip(values.iter().cloned())
        .collect();
    let bytes = must(
        &format!("write {} with new weights", model.display()),
        crate::model::with_weights(model, &pairs),
    )?;
    std::fs::write(&path, bytes)
        .map_err(|e| Verdict::Skip(format!("cannot write {}: {e}", path.display())))?;
    Ok(path)
}

fn infer(ctx: &mut Box<dyn Context>, step: &str, inputs: &[Tensor]) -> Step<Vec<Tensor>> {
    crate::flight::step(step);
    must(step, ctx.infer(inputs))
}

fn context(engine: &dyn Engine) -> Step<Box<dyn Context>> {
    must("create an inference context", engine.context())
}

/// Compares a refitted engine's outputs with a fresh build's: `Ok` with the
/// largest difference in units of [`self_tolerance`] (0 when bit-identical).
fn same(step: &str, contract: &Contract, warm: &[Tensor], cold: &[Tensor]) -> Step<f64> {
    if warm.len() != cold.len() {
        return Err(fail(
            step,
            format!("{} output(s), as the fresh build", cold.len()),
            format!("{}", warm.len()),
        ));
    }
    let mut worst = 0.0f64;
    for (o, (w, c)) in warm.iter().zip(cold).enumerate() {
        if w.shape != c.shape {
            return Err(fail(
                step,
                format!("output {o} of shape {:?}, as the fresh build", c.shape),
                format!("{:?}", w.shape),
            ));
        }
        let (wv, cv) = (w.to_f32_vec(), c.to_f32_vec());
        let rms =
            (cv.iter().map(|&x| f64::from(x).powi(2)).sum::<f64>() / cv.len().max(1) as f64).sqrt();
        for (i, (&x, &y)) in wv.iter().zip(&cv).enumerate() {
            if x.to_bits() == y.to_bits() || (x.is_nan() && y.is_nan()) {
                continue;
            }
            let diff = (f64::from(x) - f64::from(y)).abs();
            let allowed = if contract.numerics.refit_bit_identical {
                0.0
            } else {
                self_tolerance(contract, f64::from(y), rms)
            };
            // A NaN on one side only is a difference beyond any tolerance.
            if diff.is_nan() || diff > allowed {
                let how = if allowed == 0.0 {
                    "bit for bit (the engine declares refit_bit_identical)".to_string()
                } else {
                    format!("within {allowed:.3e} (256 u of |fresh| + the output's RMS)")
                };
                return Err(fail(
                    step,
                    format!("output {o}[{i}] = {y}, the fresh build's, {how}"),
                    format!("{x} (difference {diff:.3e})"),
                ));
            }
            worst = worst.max(diff / allowed);
        }
    }
    Ok(worst)
}

/// The weights at most this many are tried one by one in [`explain`].
const ONE_BY_ONE: usize = 16;

/// After a mismatch: tries fresh builds with every weight, then each one
/// alone (up to [`ONE_BY_ONE`] weights), taken from `alt` instead of
/// `base`; names the first whose outputs are the `observed` ones, bit for
/// bit or within [`self_tolerance`].
#[allow(clippy::too_many_arguments)]
fn explain(
    cx: &Cx<'_>,
    model: &Path,
    w: &Weights,
    inputs: &[Tensor],
    observed: &[Tensor],
    contract: &Contract,
    base: &[Tensor],
    alt: &[Tensor],
    what: &str,
) -> String {
    let n = w.names.len();
    let all = if n == 1 {
        format!("'{}' {what}", w.names[0])
    } else {
        format!("every weight {what}")
    };
    let mut tries: Vec<(String, Vec<Tensor>)> = vec![(all, alt.to_vec())];
    if n > 1 && n <= ONE_BY_ONE {
        for i in 0..n {
            let mut set = base.to_vec();
            set[i] = alt[i].clone();
            tries.push((format!("'{}' {what}", w.names[i]), set));
        }
    }
    let tried = tries.len();
    for (k, (words, set)) in tries.into_iter().enumerate() {
        let Ok(path) = write_model(cx, model, &format!("explain{k}"), w, &set) else {
            break;
        };
        let Ok(e) = open_engine(cx, &path, &BuildOptions::default()) else {
            break;
        };
        let Ok(mut ctx) = context(e.as_ref()) else {
            break;
        };
        let Ok(out) = infer(&mut ctx, "explain the mismatch", inputs) else {
            break;
        };
        if same("", contract, observed, &out).is_ok() {
            return format!("; observed = a fresh build with {words}");
        }
    }
    format!(
        "; no fresh build explains it ({tried} tried: every weight, and each one alone, {what})"
    )
}

/// Appends [`explain`]'s sentence to a failure's evidence.
fn explained(v: Verdict, why: impl FnOnce() -> String) -> Verdict {
    match v {
        Verdict::Fail(mut e) => {
            e.observed += &why();
            Verdict::Fail(e)
        }
        v => v,
    }
}

fn summary(worst: f64, contract: &Contract) -> String {
    if worst == 0.0 {
        "bit-identical".into()
    } else {
        format!(
            "largest difference {worst:.3} of the tolerance (not declared refit_bit_identical: {})",
            contract.precision
        )
    }
}

/// `warm_equals_cold`.
pub(super) fn warm_equals_cold(cx: &Cx<'_>, model: &Path) -> Verdict {
    warm_cold(cx, model).unwrap_or_else(|v| v)
}

fn warm_cold(cx: &Cx<'_>, model: &Path) -> Step<Verdict> {
    let warm = open_engine(cx, model, &BuildOptions::default())?;
    let w = Weights::read(warm.as_ref(), model)?;
    if w.names.is_empty() {
        return Ok(Verdict::Skip("the model has no refittable weights".into()));
    }
    let contract = warm.info().contract;
    let inputs = probe_inputs(warm.inputs(), 7);
    let b = w.set(505);
    let cold_path = write_model(cx, model, "cold_b", &w, &b)?;
    let cold = open_engine(cx, &cold_path, &BuildOptions::default())?;
    let cold_out = infer(
        &mut context(cold.as_ref())?,
        "infer on a fresh build with B",
        &inputs,
    )?;
    drop(cold);
    // Serve A first, with the inputs that follow, on the context that
    // serves them after the refit.
    let mut ctx = context(warm.as_ref())?;
    infer(&mut ctx, "infer with the model's weights (A)", &inputs)?;
    let mut buffers = w.a.clone();
    refit(
        warm.as_ref(),
        "refit every weight to B, each staged buffer poisoned before the refit",
        &w.names,
        &mut buffers,
        &b,
        true,
    )?;
    let step = "infer after refitting A -> B, against the fresh build with B";
    let warm_out = infer(&mut ctx, step, &inputs)?;
    let worst = same(step, &contract, &warm_out, &cold_out).map_err(|v| {
        explained(v, || {
            let poison: Vec<Tensor> = b
                .iter()
                .map(|t| typed(t.dtype(), t.shape.clone(), &vec![POISON; t.numel()]))
                .collect();
            explain(
                cx,
                model,
                &w,
                &inputs,
                &warm_out,
                &contract,
                &b,
                &poison,
                "holding what its staging buffer held after set_named_weights returned \
                 (the harness's poison): the engine read the caller's buffer after the call",
            )
        })
    })?;
    Ok(Verdict::Pass(format!(
        "A -> B over {} weight(s) equals a fresh build with B: {}",
        w.names.len(),
        summary(worst, &contract)
    )))
}

/// `history_independence`.
pub(super) fn history_independence(cx: &Cx<'_>, model: &Path) -> Verdict {
    history(cx, model).unwrap_or_else(|v| v)
}

fn history(cx: &Cx<'_>, model: &Path) -> Step<Verdict> {
    let fresh = open_engine(cx, model, &BuildOptions::default())?;
    let inputs = probe_inputs(fresh.inputs(), 7);
    let fresh_a = infer(
        &mut context(fresh.as_ref())?,
        "infer on a fresh build (A)",
        &inputs,
    )?;
    drop(fresh);
    let engine = open_engine(cx, model, &BuildOptions::default())?;
    let mut ctx = context(engine.as_ref())?;
    infer(&mut ctx, "infer with the model's weights (A)", &inputs)?;
    let w = Weights::read(engine.as_ref(), model)?;
    if w.names.is_empty() {
        return Ok(Verdict::Skip("the model has no refittable weights".into()));
    }
    let contract = engine.info().contract;
    let b = w.set(606);
    let mut buffers = w.a.clone();
    let mut first_b: Option<Vec<Tensor>> = None;
    let mut worst = 0.0f64;
    for c in 1..=CYCLES {
        refit(
            engine.as_ref(),
            &format!("cycle {c}: refit every weight to B (the same staging buffers)"),
            &w.names,
            &mut buffers,
            &b,
            false,
        )?;
        let step = format!("cycle {c}: infer with B");
        let out = infer(&mut ctx, &step, &inputs)?;
        match &first_b {
            None => first_b = Some(out),
            Some(b1) => {
                let step = format!("{step}, against cycle 1's B");
                worst = worst.max(same(&step, &contract, &out, b1)?);
            }
        }
        refit(
            engine.as_ref(),
            &format!("cycle {c}: refit every weight back to A (the same staging buffers)"),
            &w.names,
            &mut buffers,
            &w.a,
            false,
        )?;
        let step = format!("cycle {c}: infer back at A, against a fresh build");
        let out = infer(&mut ctx, &step, &inputs)?;
        let d = same(&step, &contract, &out, &fresh_a).map_err(|v| {
            explained(v, || {
                explain(
                    cx,
                    model,
                    &w,
                    &inputs,
                    &out,
                    &contract,
                    &w.a,
                    &b,
                    "still at B: its refit back to A, staged from the buffer that held B, was not applied",
                )
            })
        })?;
        worst = worst.max(d);
    }
    Ok(Verdict::Pass(format!(
        "{CYCLES} cycles A -> B -> A over {} weight(s), one staging buffer per weight: A equals a fresh build and B the first cycle's B, {}",
        w.names.len(),
        summary(worst, &contract)
    )))
}
