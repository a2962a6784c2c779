//! The reference engine: the model run in plain f32 Rust, with weights held
//! as an immutable snapshot behind one atomic pointer.
//!
//! An inference loads the current snapshot once and computes with it to the
//! end, so it sees exactly one weight version. `refit()` builds the next
//! snapshot (sharing every tensor it did not change) and publishes it with
//! one atomic store; readers never wait on a writer, and a refit that fails
//! before that store changes nothing. Writers are serialised by a mutex, so
//! two concurrent refits cannot lose each other's weights.
//!
//! Contract: atomic, rolls back, accepts subsets, rejects non-finite weights.

use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Instant;

use super::publish::Published;
use super::{
    unstaged, BuildOptions, Concurrency, Context, Contract, Description, Engine, EngineInfo,
    FailedRefit, NonFinite, Precision, Refitter, Subset,
};
use crate::model::{Model, Plan};
use crate::tensor::{Aligned, Tensor, TensorInfo, TensorView, Values};
use crate::{Error, Result};

/// The contract the reference engine declares.
pub const CONTRACT: Contract = Contract {
    concurrency: Concurrency::Atomic,
    failed_refit: FailedRefit::RollsBack,
    subset: Subset::Accepted,
    non_finite: NonFinite::Rejected,
    precision: Precision::F32,
    error_factor: 1.0,
    numerics: crate::engine::Numerics::DEFAULT,
};

/// What the reference engine declares: its own contract ([`CONTRACT`]), or
/// one of two stricter ones it keeps just as correctly, so that the checks'
/// handling of those contracts is itself checked on a correct engine.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) enum Declares {
    /// [`CONTRACT`] (`reference`).
    #[default]
    Own,
    /// Requires every weight in each refit, and refuses a refit with one
    /// missing, keeping what was staged (`reference-strict`).
    RequiresAll,
    /// Asks that inference stop during refit (`reference-quiesced`);
    /// [`EngineSpec::open`](crate::spec::EngineSpec::open) then enforces it.
    Quiesced,
}

impl Declares {
    /// The engine's name when it declares this.
    pub fn name(self) -> &'static str {
        match self {
            Declares::Own => "reference",
            Declares::RequiresAll => "reference-strict",
            Declares::Quiesced => "reference-quiesced",
        }
    }

    /// The contract declared.
    pub fn contract(self) -> Contract {
        match self {
            Declares::Own => CONTRACT,
            Declares::RequiresAll => Contract {
                subset: Subset::RequiresAll,
                ..CONTRACT
            },
            Declares::Quiesced => Contract {
                concurrency: Concurrency::Quiesced,
                ..CONTRACT
            },
        }
    }
}

/// One published weight version: a value per initializer, shared between
/// snapshots where unchanged.
struct Snapshot {
    weights: Vec<Arc<Aligned<f32>>>,
}

struct Shared {
    model: Model,
    description: Description,
    current: Published<Snapshot>,
    /// Buffers replaced by refits, kept for reuse once no snapshot holds
    /// them: a refit then copies into memory already touched instead of
    /// faulting in fresh pages. Bounded by the model's weight bytes.
    retired: Mutex<Vec<Arc<Aligned<f32>>>>,
    weight_values: usize,
    declares: Declares,
    /// The `slowdown` engine option (1: none).
    slowdown: f64,
}

impl Shared {
    /// When an operation starts: read only with the `slowdown` option, so
    /// the serving path reads no clock without it.
    fn start(&self) -> Option<Instant> {
        (self.slowdown > 1.0).then(Instant::now)
    }

    /// With the `slowdown` option F: busy-waits until the operation begun
    /// at `started` ([`Shared::start`]) has taken F times as long as its
    /// work.
    fn slow_down(&self, started: Option<Instant>) {
        if let Some(started) = started {
            let until = Instant::now() + started.elapsed().mul_f64(self.slowdown - 1.0);
            while Instant::now() < until {
                std::hint::spin_loop();
            }
        }
    }

    /// An empty buffer with room for `len` values, reused from a retired
    /// snapshot where one of that size is no longer read.
    fn buffer(&self, len: usize) -> Aligned<f32> {
        let mut retired = self.retired.lock().unwrap_or_else(|p| p.into_inner());
        while let Some(i) = retired
            .iter()
            .position(|b| b.len() == len && Arc::strong_count(b) == 1)
        {
            // Only this list holds it, and the list is locked: nobody can
            // take a new reference meanwhile.
            if let Ok(mut v) = Arc::try_unwrap(retired.swap_remove(i)) {
                v.clear();
                return v;
            }
        }
        Aligned::with_capacity(len)
    }

    /// Keeps `buffers` for reuse, dropping the oldest beyond the model's
    /// weight bytes.
    fn retire(&self, buffers: impl IntoIterator<Item = Arc<Aligned<f32>>>) {
        let mut retired = self.retired.lock().unwrap_or_else(|p| p.into_inner());
        retired.extend(buffers);
        let mut total: usize = retired.iter().map(|b| b.len()).sum();
        while total > self.weight_values && !retired.is_empty() {
            total -= retired.remove(0).len();
        }
    }
}

/// The reference engine. Cloning it is cheap and shares the engine.
#[derive(Clone)]
pub struct ReferenceEngine {
    shared: Arc<Shared>,
}

/// The built-in reference engine's engine options: any other key is an
/// error naming it.
///
/// - `"scalar_weights": ["name", ...]`: scalar float initializers to refit
///   as weights (by default scalars are constants);
/// - `"slowdown": F` (a number >= 1): every refit and every inference
///   busy-waits until it has taken F times as long as its work: a slower
///   build of the same engine, for trying a regression gate on
///   (`ci/gate-check.sh`).
fn refuse_options(options: &BuildOptions) -> Result<Vec<String>> {
    let Some(text) = &options.engine_options else {
        return Ok(Vec::new());
    };
    let map = crate::engine::parse_engine_options(text)?;
    let v = serde_json::Value::Object(map);
    crate::engine::refuse_unknown_options(
        &v,
        &["scalar_weights", "slowdown"],
        "the built-in reference engine",
    )?;
    if let Some(f) = v.get("slowdown") {
        if !f.as_f64().is_some_and(|f| (1.0..=1000.0).contains(&f)) {
            return Err(Error::BadEngineOptions(format!(
                "slowdown: expected a factor from 1 to 1000, found {f}"
            )));
        }
    }
    scalar_weights(&v)
}

/// The `slowdown` option's factor (1 without it; validated by
/// [`refuse_options`]).
fn slowdown(options: &BuildOptions) -> f64 {
    options
        .engine_options
        .as_deref()
        .and_then(|t| crate::engine::parse_engine_options(t).ok())
        .and_then(|m| m.get("slowdown").and_then(serde_json::Value::as_f64))
        .filter(|f| *f >= 1.0)
        .unwrap_or(1.0)
}

/// The `scalar_weights` option: a list of initializer names.
///
/// # Errors
/// [`Error::BadEngineOptions`] for anything but a list of strings.
pub fn scalar_weights(options: &serde_json::Value) -> Result<Vec<String>> {
    match options.get("scalar_weights") {
        None => Ok(Vec::new()),
        Some(serde_json::Value::Array(a)) => a
            .iter()
            .map(|n| {
                n.as_str().map(str::to_string).ok_or_else(|| {
                    Error::BadEngineOptions(format!(
                        "scalar_weights: expected a list of initializer names, found {n}"
                    ))
                })
            })
            .collect(),
        Some(other) => Err(Error::BadEngineOptions(format!(
            "scalar_weights: expected a list of initializer names, found {other}"
        ))),
    }
}

impl ReferenceEngine {
    /// Loads a model file.
    ///
    /// # Errors
    /// As [`Model::load`]; [`Error::BadEngineOptions`](crate::Error) for
    /// any engine option (it takes none).
    pub fn load(path: &Path, options: &BuildOptions) -> Result<Self> {
        let scalars = refuse_options(options)?;
        Ok(Self::new(Model::load_with(path, &scalars)?, options))
    }

    /// Builds the engine from model bytes; `name` stands for the file in
    /// errors.
    ///
    /// # Errors
    /// As [`Model::from_bytes`].
    pub fn from_bytes(bytes: &[u8], name: &Path, options: &BuildOptions) -> Result<Self> {
        let scalars = refuse_options(options)?;
        Ok(Self::new(
            Model::from_bytes_with(bytes, name, &scalars)?,
            options,
        ))
    }

    /// Loads a model file, declaring `declares`.
    ///
    /// # Errors
    /// As [`Model::load`].
    pub(crate) fn load_declaring(
        path: &Path,
        options: &BuildOptions,
        declares: Declares,
    ) -> Result<Self> {
        let scalars = refuse_options(options)?;
        Ok(Self::new_declaring(
            Model::load_with(path, &scalars)?,
            options,
            declares,
        ))
    }

    /// Builds the engine from a parsed model, its initial weights taken from
    /// the model's initializers.
    pub fn new(model: Model, options: &BuildOptions) -> Self {
        Self::new_declaring(model, options, Declares::Own)
    }

    /// As [`ReferenceEngine::new`], declaring `declares`.
    pub(crate) fn new_declaring(model: Model, options: &BuildOptions, declares: Declares) -> Self {
        let snapshot = Snapshot {
            weights: model
                .initializers()
                .iter()
                .map(|i| Arc::new(Aligned::from_vec(i.values.clone())))
                .collect(),
        };
        ReferenceEngine {
            shared: Arc::new(Shared {
                description: Description::of(
                    &model,
                    EngineInfo {
                        name: declares.name().into(),
                        version: env!("CARGO_PKG_VERSION").into(),
                        contract: declares.contract(),
                        refit_enabled: options.enable_refit,
                    },
                ),
                current: Published::new(snapshot),
                retired: Mutex::new(Vec::new()),
                weight_values: model.initializers().iter().map(|i| i.values.len()).sum(),
                declares,
                slowdown: slowdown(options),
                model,
            }),
        }
    }

    /// The model the engine runs.
    pub fn model(&self) -> &Model {
        &self.shared.model
    }
}

impl Engine for ReferenceEngine {
    fn description(&self) -> &Description {
        &self.shared.description
    }

    fn context(&self) -> Result<Box<dyn Context>> {
        Ok(Box::new(ReferenceContext {
            shared: Arc::clone(&self.shared),
            plan: None,
            scratch: Vec::new(),
        }))
    }

    fn refitter(&self) -> Result<Box<dyn Refitter>> {
        if !self.shared.description.info.refit_enabled {
            return Err(Error::RefitDisabled);
        }
        Ok(Box::new(ReferenceRefitter {
            started: self.shared.start(),
            staged: vec![None; self.shared.description.weights.len()],
            shared: Arc::clone(&self.shared),
        }))
    }
}

struct ReferenceContext {
    shared: Arc<Shared>,
    plan: Option<Plan>,
    scratch: Vec<Vec<f32>>,
}

impl Context for ReferenceContext {
    fn infer(&mut self, inputs: &[Tensor]) -> Result<Vec<Tensor>> {
        let mut outputs = Vec::new();
        self.infer_into(inputs, &mut outputs)?;
        Ok(outputs)
    }

    fn infer_into(&mut self, inputs: &[Tensor], outputs: &mut Vec<Tensor>) -> Result<()> {
        let started = self.shared.start();
        let model = &self.shared.model;
        let plan = model.plan_cached(&mut self.plan, inputs)?;
        let snapshot = self.shared.current.load();
        model.run_into(
            plan,
            |i| &snapshot.weights[i],
            inputs,
            &mut self.scratch,
            outputs,
        );
        self.shared.slow_down(started);
        Ok(())
    }
}

struct ReferenceRefitter {
    shared: Arc<Shared>,
    /// When the refitter was made: a refit's work is its staging and its
    /// publication (for the `slowdown` option).
    started: Option<Instant>,
    staged: Vec<Option<Aligned<f32>>>,
}

/// Rejects NaN and infinity.
fn check_finite(t: TensorView<'_>, what: &str) -> Result<()> {
    let bad = match t.values {
        // A branch-free scan first (it vectorises), the position only on
        // failure.
        Values::F32(v) if v.iter().fold(true, |all, x| all & x.is_finite()) => None,
        Values::F32(v) => v
            .iter()
            .position(|x| !x.is_finite())
            .map(|i| (i, v[i].to_string())),
        Values::F16(v) => v
            .iter()
            .position(|x| !x.is_finite())
            .map(|i| (i, v[i].to_string())),
        Values::I32(_) => None,
    };
    match bad {
        Some((index, value)) => Err(Error::NonFinite {
            what: what.to_string(),
            index,
            value,
        }),
        None => Ok(()),
    }
}

/// Validates a tensor staged for `name` against the weights `infos`: the
/// name, dtype, shape, byte count and finiteness, in that order. Returns the
/// weight's index.
///
/// # Errors
/// [`Error::UnknownWeight`], [`Error::DTypeMismatch`],
/// [`Error::ShapeMismatch`], [`Error::ByteCount`] or [`Error::NonFinite`].
pub fn validate_weight(infos: &[TensorInfo], name: &str, weights: &Tensor) -> Result<usize> {
    validate_weight_view(infos, name, weights.view())
}

/// As [`validate_weight`], for borrowed values.
///
/// # Errors
/// As [`validate_weight`].
pub fn validate_weight_view(
    infos: &[TensorInfo],
    name: &str,
    weights: TensorView<'_>,
) -> Result<usize> {
    let index = validate_layout(infos, name, weights)?;
    check_finite(weights, &format!("weight '{name}'"))?;
    Ok(index)
}

/// As [`validate_weight`], without the finiteness check.
fn validate_layout(infos: &[TensorInfo], name: &str, weights: TensorView<'_>) -> Result<usize> {
    let index = infos
        .iter()
        .position(|w| w.name == name)
        .ok_or_else(|| Error::UnknownWeight {
            name: name.to_string(),
            known: infos
                .iter()
                .map(|w| format!("'{}'", w.name))
                .collect::<Vec<_>>()
                .join(", "),
        })?;
    let info = &infos[index];
    let what = || format!("weight '{name}'");
    if weights.dtype() != info.dtype {
        return Err(Error::DTypeMismatch {
            what: what(),
            expected: info.dtype,
            found: weights.dtype().to_string(),
        });
    }
    let same_shape = weights.shape.len() == info.shape.len()
        && weights
            .shape
            .iter()
            .zip(&info.shape)
            .all(|(&found, expected)| Some(found) == *expected);
    if !same_shape {
        return Err(Error::ShapeMismatch {
            what: what(),
            expected: info.shape.iter().map(|d| d.unwrap_or(0)).collect(),
            found: weights.shape.to_vec(),
        });
    }
    weights.validate(&what())?;
    Ok(index)
}

impl Refitter for ReferenceRefitter {
    fn set_named_weights(&mut self, name: &str, weights: &Tensor) -> Result<()> {
        self.set_named_weights_view(name, weights.view())
    }

    fn set_named_weights_view(&mut self, name: &str, weights: TensorView<'_>) -> Result<()> {
        let index = validate_layout(&self.shared.description.weights, name, weights)?;
        // One pass: copy into a (reused) buffer, checking finiteness on the way.
        let mut buf = self.shared.buffer(weights.values.len());
        let finite = match weights.values {
            Values::F32(v) => {
                let mut all = true;
                buf.extend(v.iter().map(|&x| {
                    all &= x.is_finite();
                    x
                }));
                all
            }
            Values::F16(v) => {
                buf.extend(v.iter().map(|x| x.to_f32()));
                buf.iter().fold(true, |all, x| all & x.is_finite())
            }
            Values::I32(v) => {
                buf.extend(v.iter().map(|&x| x as f32));
                true
            }
        };
        if !finite {
            self.shared.retire([Arc::new(buf)]);
            return check_finite(weights, &format!("weight '{name}'"));
        }
        self.staged[index] = Some(buf);
        Ok(())
    }

    fn missing(&self) -> Result<Vec<String>> {
        Ok(unstaged(&self.shared.description.weights, &self.staged))
    }

    fn refit(&mut self) -> Result<()> {
        if self.shared.declares == Declares::RequiresAll {
            let missing = self.missing()?;
            if !missing.is_empty() {
                return Err(Error::MissingWeights { missing });
            }
        }
        if self.staged.iter().all(Option::is_none) {
            return Ok(());
        }
        let staged = &mut self.staged;
        let mut replaced = Vec::new();
        self.shared.current.update(|current| Snapshot {
            weights: current
                .weights
                .iter()
                .zip(staged.iter_mut())
                .map(|(old, new)| match new.take() {
                    Some(v) => {
                        replaced.push(Arc::clone(old));
                        Arc::new(v)
                    }
                    None => Arc::clone(old),
                })
                .collect(),
        });
        self.shared.retire(replaced);
        self.shared.slow_down(self.started);
        self.started = self.shared.start();
        Ok(())
    }
}
