//! An engine under test beside its oracle, and the small steps scenarios
//! are made of.

use std::path::Path;

use super::{fail, Cx, Verdict};
use crate::engine::{BuildOptions, Context, Engine, Subset};
use crate::model::Model;
use crate::oracle::{Expected, Judge, Oracle};
use crate::tensor::{DType, Tensor, TensorData, TensorInfo};

/// A step's result: the value, or the verdict that ends the scenario.
pub(crate) type Step<T> = Result<T, Verdict>;

pub use crate::model::build::ints;

/// What new integer values for a weight built with `built` are scaled by:
/// 1 for an integer-valued weight, else half its RMS, so that new values
/// are as large as the network's own.
pub(crate) fn value_scale(built: &[f32]) -> f32 {
    if built.iter().all(|x| x.fract() == 0.0) {
        1.0
    } else {
        let sum: f64 = built.iter().map(|&x| f64::from(x).powi(2)).sum();
        ((sum / built.len().max(1) as f64).sqrt() / 2.0) as f32
    }
}

/// Integer-valued probe inputs for the model's inputs: symbolic
/// dimensions become 2 (batch) or 8.
pub(crate) fn probe_inputs(infos: &[TensorInfo], salt: u64) -> Vec<Tensor> {
    infos
        .iter()
        .enumerate()
        .map(|(i, info)| {
            let shape: Vec<usize> = info
                .shape
                .iter()
                .enumerate()
                .map(|(d, s)| s.unwrap_or(if d == 0 { 2 } else { 8 }))
                .collect();
            let values = ints(shape.iter().product(), salt + i as u64);
            typed(info.dtype, shape, &values)
        })
        .collect()
}

/// A tensor of `dtype` holding `values`.
pub(crate) fn typed(dtype: DType, shape: Vec<usize>, values: &[f32]) -> Tensor {
    let data = match dtype {
        DType::F16 => TensorData::F16(values.iter().map(|&v| half::f16::from_f32(v)).collect()),
        DType::I32 => TensorData::I32(values.iter().map(|&v| v as i32).collect()),
        _ => TensorData::F32(values.to_vec().into()),
    };
    Tensor { shape, data }
}

/// Turns an engine error in a step that must succeed into a failure.
pub(crate) fn must<T>(step: &str, r: crate::Result<T>) -> Step<T> {
    r.map_err(|e| fail(step, "success", format!("error: {e}")))
}

/// One engine over one model, with the oracle tracking what it must serve.
pub(crate) struct Subject {
    pub engine: Box<dyn Engine>,
    pub oracle: Oracle,
    pub ctx: Box<dyn Context>,
    pub inputs: Vec<Tensor>,
    /// For each engine weight, the oracle's initializer index.
    pub map: Vec<usize>,
    /// For each engine weight, what [`Subject::values`] scales its new
    /// values by, and whether they must be positive.
    value_scales: Vec<(f32, bool)>,
}

impl Subject {
    /// Opens the engine and the oracle on `model`.
    pub fn open(cx: &Cx<'_>, model: &Path, options: &BuildOptions) -> Step<Self> {
        let mut parsed = Model::load(model)
            .map_err(|e| Verdict::Skip(format!("the oracle cannot read the model: {e}")))?;
        let engine = open_engine(cx, model, options)?;
        // A scalar the engine refits as a weight (its `scalar_weights`
        // option) is one for the oracle too.
        for w in engine.weights() {
            if !parsed.initializers().iter().any(|i| i.info.name == w.name) {
                parsed.promote(&w.name);
            }
        }
        let map = engine
            .weights()
            .iter()
            .map(|w| {
                parsed
                    .initializers()
                    .iter()
                    .position(|i| i.info.name == w.name)
                    .ok_or_else(|| {
                        fail(
                            "list the refittable weights",
                            "names of the model's initializers",
                            format!("'{}'", w.name),
                        )
                    })
            })
            .collect::<Step<Vec<_>>>()?;
        for (w, &i) in engine.weights().iter().zip(&map) {
            let expected = &parsed.initializers()[i].info;
            if w.dtype != expected.dtype || w.shape != expected.shape {
                return Err(fail(
                    format!("describe weight '{}'", w.name),
                    format!("{} {}", expected.dtype, expected.shape_text()),
                    format!("{} {}", w.dtype, w.shape_text()),
                ));
            }
        }
        let ctx = must("create an inference context", engine.context())?;
        let inputs = probe_inputs(engine.inputs(), 7);
        let judge = Judge::for_contract(&engine.info().contract, cx.config.tolerance);
        let value_scales = map
            .iter()
            .map(|&k| {
                (
                    value_scale(&parsed.initializers()[k].values),
                    parsed.needs_positive(k),
                )
            })
            .collect();
        Ok(Subject {
            engine,
            oracle: Oracle::with_judge(parsed, judge).reporting_to(cx.worst.clone()),
            ctx,
            inputs,
            map,
            value_scales,
        })
    }

    /// The engine's weight `i`: its description.
    pub fn info(&self, i: usize) -> &TensorInfo {
        &self.engine.weights()[i]
    }

    /// The number of values weight `i` holds.
    pub fn numel(&self, i: usize) -> usize {
        self.info(i).shape.iter().map(|d| d.unwrap_or(0)).product()
    }

    /// A valid tensor for weight `i` with `values`.
    pub fn tensor(&self, i: usize, values: &[f32]) -> Tensor {
        let info = self.info(i);
        typed(
            info.dtype,
            info.shape.iter().map(|d| d.unwrap_or(0)).collect(),
            values,
        )
    }

    /// Fresh integer values for weight `i`.
    ///
    /// A weight the model needs positive (a BatchNormalization variance)
    /// gets `|v| + 1`, so that every output stays defined.
    /// A float checkpoint's weight (not all integers) gets them scaled to
    /// its own magnitude (half its RMS), so that new values are as large as
    /// the network's and the oracle's bound stays as tight as for the
    /// network's own weights.
    pub fn values(&self, i: usize, salt: u64) -> Vec<f32> {
        let (scale, positive) = self.value_scales[i];
        ints(self.numel(i), salt * 31 + i as u64)
            .into_iter()
            .map(|x| {
                if positive {
                    (x.abs() + 1.0) * scale
                } else {
                    x * scale
                }
            })
            .collect()
    }

    /// What the oracle says now.
    pub fn expected(&self) -> Step<std::rc::Rc<Vec<Expected>>> {
        self.oracle
            .infer(&self.inputs)
            .map_err(|e| Verdict::Skip(format!("the oracle cannot evaluate the model: {e}")))
    }

    /// Infers, then (only then: the inference follows whatever came before
    /// with no oracle work in between) compares every output with the
    /// oracle.
    pub(crate) fn expect_oracle(&mut self, step: &str) -> Step<Vec<Tensor>> {
        crate::flight::step(step);
        let observed = must(step, self.ctx.infer(&self.inputs))?;
        let expected = self.expected()?;
        compare(step, &expected, &observed, &self.oracle, &self.inputs)?;
        Ok(observed)
    }

    /// Infers and requires the outputs to be what they were (`before`): bit
    /// for bit, or, for an engine whose rounding varies from run to run,
    /// within the oracle's bound for the weights that must still be served.
    pub(crate) fn expect_unchanged(&mut self, step: &str, before: &[Tensor]) -> Step<()> {
        crate::flight::step(step);
        let observed = must(step, self.ctx.infer(&self.inputs))?;
        match bit_difference(before, &observed) {
            Some(d) => {
                let expected = self.expected()?;
                self.oracle
                    .compare(&expected, &observed)
                    .map_err(|(want, got)| {
                        let why = self.oracle.explanation(&self.inputs, &observed);
                        fail(
                            step,
                            format!("{} unchanged at {}", d.place, d.expected),
                            format!("{} (the oracle: {want}, observed {got}){why}", d.observed),
                        )
                    })
            }
            None => Ok(()),
        }
    }

    /// `set` (engine weight index, values), completed with the current
    /// values of every other weight where the engine requires every weight.
    pub fn complete(&self, set: &[(usize, Vec<f32>)]) -> Vec<(usize, Vec<f32>)> {
        let mut full = set.to_vec();
        if self.engine.info().contract.subset == Subset::RequiresAll {
            for i in 0..self.engine.weights().len() {
                if !set.iter().any(|(j, _)| *j == i) {
                    full.push((i, self.oracle.weights()[self.map[i]].clone()));
                }
            }
        }
        full
    }

    /// Stages `set` (engine weight index, values) on one refitter, with the
    /// rest of the weights where the engine requires every one
    /// ([`Subject::complete`]), and refits; every call must succeed. The
    /// oracle follows.
    pub fn refit(&mut self, step: &str, set: &[(usize, Vec<f32>)]) -> Step<()> {
        crate::flight::step(step);
        let set = self.complete(set);
        let mut r = must(
            &format!("{step}: create a refitter"),
            self.engine.refitter(),
        )?;
        for (i, v) in &set {
            let name = self.info(*i).name.clone();
            must(
                &format!("{step}: stage '{name}'"),
                r.set_named_weights(&name, &self.tensor(*i, v)),
            )?;
        }
        must(&format!("{step}: refit"), r.refit())?;
        for (i, v) in set {
            self.oracle.set(self.map[i], v);
        }
        Ok(())
    }
}

/// On a mismatch after a refit of several weights (`set`), names the one
/// that goes wrong: on a fresh engine and oracle for `model`, refits the
/// weights of `set` one at a time (cumulatively), comparing after each; the
/// first mismatch is added to the failure's evidence, with the oracle's
/// explanation of it. Other results pass through unchanged.
pub(crate) fn localize<T>(
    cx: &Cx<'_>,
    model: &Path,
    set: &[(usize, Vec<f32>)],
    result: Step<T>,
) -> Step<T> {
    let Err(Verdict::Fail(mut e)) = result else {
        return result;
    };
    if set.len() < 2 {
        return Err(Verdict::Fail(e));
    }
    let found = (|| -> Option<String> {
        let mut fresh = Subject::open(cx, model, &BuildOptions::default()).ok()?;
        for (i, v) in set {
            let name = fresh.info(*i).name.clone();
            let step = format!("refit '{name}' alone");
            if let Err(v) = fresh
                .refit(&step, &[(*i, v.clone())])
                .and_then(|()| fresh.expect_oracle(&step).map(drop))
            {
                return Some(format!(
                    "; localized on a fresh engine, refitting the {} weights one at a time: \
                     the first to go wrong is '{name}': {}",
                    set.len(),
                    v.detail()
                ));
            }
        }
        None
    })();
    e.observed += &found.unwrap_or_else(|| {
        format!(
            "; refitting the {} weights one at a time on a fresh engine, none went wrong alone",
            set.len()
        )
    });
    Err(Verdict::Fail(e))
}

/// Builds the engine under test on `model`: a refusal as unsupported is a
/// skip with the engine's reason, any other error a failure.
pub(crate) fn open_engine(
    cx: &Cx<'_>,
    model: &Path,
    options: &BuildOptions,
) -> Step<Box<dyn Engine>> {
    if crate::flight::enabled() {
        crate::flight::step(&format!(
            "build the engine on {} (enable_refit {})",
            model.display(),
            options.enable_refit
        ));
    }
    cx.factory.open(model, options).map_err(|e| {
        if e.is_unsupported() {
            Verdict::Skip(format!(
                "{} {}: {e}",
                super::ENGINE_REFUSED,
                model.file_name().map_or_else(
                    || model.display().to_string(),
                    |n| n.to_string_lossy().into_owned()
                )
            ))
        } else {
            fail(
                format!("build the engine on {}", model.display()),
                "success",
                format!("error: {e}"),
            )
        }
    })
}

/// Compares outputs with the oracle's (`expected`, what it gave for
/// `inputs`): shapes, then values. A mismatch's evidence ends with the
/// oracle's explanation of it ([`Oracle::explain`]).
pub(crate) fn compare(
    step: &str,
    expected: &[Expected],
    observed: &[Tensor],
    oracle: &Oracle,
    inputs: &[Tensor],
) -> Step<()> {
    oracle.compare(expected, observed).map_err(|(e, o)| {
        fail(
            step,
            e,
            format!("{o}{}", oracle.explanation(inputs, observed)),
        )
    })
}

/// Where two sets of outputs first differ.
pub(crate) struct Difference {
    /// `output O[I]`, or `output O's shape`.
    pub place: String,
    /// The value in the first set.
    pub expected: String,
    /// The value in the second.
    pub observed: String,
}

/// The first place where `a` and `b` differ in shape or bits.
pub(crate) fn bit_difference(a: &[Tensor], b: &[Tensor]) -> Option<Difference> {
    if a.len() != b.len() {
        return Some(Difference {
            place: "the output count".into(),
            expected: a.len().to_string(),
            observed: b.len().to_string(),
        });
    }
    for (o, (x, y)) in a.iter().zip(b).enumerate() {
        if x.shape != y.shape {
            return Some(Difference {
                place: format!("output {o}'s shape"),
                expected: format!("{:?}", x.shape),
                observed: format!("{:?}", y.shape),
            });
        }
        let (xv, yv) = (x.to_f32_vec(), y.to_f32_vec());
        if let Some(i) = xv
            .iter()
            .zip(&yv)
            .position(|(p, q)| p.to_bits() != q.to_bits())
        {
            return Some(Difference {
                place: format!("output {o}[{i}]"),
                expected: xv[i].to_string(),
                observed: yv[i].to_string(),
            });
        }
    }
    None
}
