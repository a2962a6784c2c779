//! The engine wrapper: the only surface checks, demos and benches talk to.
//!
//! Modelled on the runtimes' own split: an [`Engine`] is shared by every
//! thread, each inference thread makes its own [`Context`], and weights are
//! replaced through a [`Refitter`] (`set_named_weights` stages,
//! `refit` applies everything staged). Engines are chosen at run time by an
//! [`EngineSpec`](crate::spec::EngineSpec), so the traits are object-safe and used as `Box<dyn _>`.
//!
//! Each engine declares a [`Contract`]; the harness tests an engine against
//! what it declares, not against the strongest possible promise.

pub mod null;
mod publish;
pub mod quiesced;
pub mod reference;

use std::fmt;
use std::str::FromStr;

use crate::tensor::{Tensor, TensorInfo, TensorView};
use crate::{Error, Result};

/// What a refit racing with inference may do.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Concurrency {
    /// Each inference sees exactly one whole weight version, and once
    /// `refit()` returns every inference that starts later sees the new one.
    Atomic,
    /// The caller must stop inference while a refit runs.
    Quiesced,
}

/// What a refit that fails leaves behind.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FailedRefit {
    /// Nothing is applied: the engine serves the weights it had before.
    RollsBack,
    /// Some of the staged weights may have been applied.
    MayBePartial,
}

/// Whether a refit may replace only some of the weights.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Subset {
    /// Any subset may be staged; the rest keep their current values.
    Accepted,
    /// Every refittable weight must be staged before `refit()` succeeds.
    RequiresAll,
}

/// What staging NaN or infinite weights does.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum NonFinite {
    /// Staging fails with a clear error.
    Rejected,
    /// The values are applied and inference computes with them faithfully.
    Served,
}

/// The arithmetic an engine computes in: what the oracle's error bound
/// assumes (see [`oracle`](crate::oracle)).
///
/// Each precision names the format operands (weights and activations) are
/// rounded to before they are multiplied, the format products are summed
/// in, and the format outputs and intermediate activations are stored in.
/// Accumulation is in f32 for every precision, as tensor cores, MLUs and
/// CPUs do; an engine that sums in a narrower format declares a larger
/// [`Contract::error_factor`].
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub enum Precision {
    /// f32 operands, f32 sums, f32 storage.
    #[default]
    F32,
    /// Operands rounded to TF32 (10-bit mantissa), f32 sums and storage.
    Tf32,
    /// f16 operands and storage, f32 sums.
    F16,
    /// bf16 operands and storage, f32 sums.
    Bf16,
}

impl Precision {
    /// Every precision, in the ABI's numbering.
    pub const ALL: [Precision; 4] = [
        Precision::F32,
        Precision::Tf32,
        Precision::F16,
        Precision::Bf16,
    ];

    /// Its name (`f32`, `tf32`, `f16`, `bf16`).
    pub fn name(self) -> &'static str {
        match self {
            Precision::F32 => "f32",
            Precision::Tf32 => "tf32",
            Precision::F16 => "f16",
            Precision::Bf16 => "bf16",
        }
    }

    /// Explicit mantissa bits of the operand format (23 for f32).
    pub(crate) fn operand_bits(self) -> u32 {
        match self {
            Precision::F32 => 23,
            Precision::Tf32 | Precision::F16 => 10,
            Precision::Bf16 => 7,
        }
    }

    /// Explicit mantissa bits of the storage format of outputs and
    /// intermediate activations.
    pub(crate) fn storage_bits(self) -> u32 {
        match self {
            Precision::F32 | Precision::Tf32 => 23,
            Precision::F16 => 10,
            Precision::Bf16 => 7,
        }
    }

    /// Explicit mantissa bits of the accumulator (f32 for every precision).
    pub(crate) fn accumulator_bits(self) -> u32 {
        23
    }
}

impl fmt::Display for Precision {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for Precision {
    type Err = Error;

    fn from_str(s: &str) -> Result<Self> {
        Precision::ALL
            .into_iter()
            .find(|p| p.name() == s)
            .ok_or_else(|| Error::UnknownPrecision(s.to_string()))
    }
}

/// The refit promises an engine makes.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Contract {
    /// Refit while inferring.
    pub concurrency: Concurrency,
    /// Failed refit.
    pub failed_refit: FailedRefit,
    /// Partial refit.
    pub subset: Subset,
    /// NaN and infinite weights.
    pub non_finite: NonFinite,
    /// The arithmetic the engine computes in.
    pub precision: Precision,
    /// How far beyond the rigorous bound for [`Contract::precision`] the
    /// engine's error may go (1 for plain summation in any order; fast
    /// convolution algorithms such as Winograd or FFT need more). Above 1,
    /// integer-valued outputs are no longer required to be exact.
    pub error_factor: f64,
    /// The implementation allowance of its functions and whether a
    /// refitted engine computes exactly as a fresh build.
    pub numerics: Numerics,
}

/// How far an engine's own implementation of a function may be from the
/// exact function: `rel` units of roundoff of `|f(x)|` plus `abs` units of
/// `max(1, |x|)` (the unit roundoff of the declared precision). The
/// absolute part is what vendor libraries need: they approximate sigmoid,
/// GELU, tanh to an absolute accuracy, so near 0 their error is millions of
/// ulps of the result and still a few `u` absolutely.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Allowance {
    /// Units of roundoff of the result's magnitude.
    pub rel: f64,
    /// Units of roundoff of `max(1, |x|)`.
    pub abs: f64,
}

impl Allowance {
    /// 8 and 8: passes ONNX Runtime's CPU functions with room (its Sigmoid
    /// is within 2.5 u absolutely, its Gelu within 7.5 u of the input's
    /// scale, its Tanh within 4.5 ulps).
    pub const DEFAULT: Allowance = Allowance { rel: 8.0, abs: 8.0 };
}

/// The families of functions an engine declares an [`Allowance`] for.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Family {
    /// Sigmoid, Tanh, Erf, Gelu, Sqrt, Pow, HardSigmoid, HardSwish.
    Activation = 0,
    /// Softmax's exponential.
    Softmax = 1,
    /// LayerNormalization's square root and division.
    Normalization = 2,
}

impl Family {
    /// Every family, in the order of the ABI's arrays.
    pub const ALL: [Family; 3] = [Family::Activation, Family::Softmax, Family::Normalization];
}

/// What an engine declares about its arithmetic beyond its precision.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Numerics {
    /// Per [`Family`], in [`Family::ALL`]'s order.
    pub allowance: [Allowance; 3],
    /// Whether a refitted engine's outputs are bit for bit a fresh build's
    /// with the same weights (an engine that re-derives nothing at refit
    /// that a build would derive differently); default false.
    pub refit_bit_identical: bool,
}

impl Numerics {
    /// The default allowances; refits not declared bit-identical.
    pub const DEFAULT: Numerics = Numerics {
        allowance: [Allowance::DEFAULT; 3],
        refit_bit_identical: false,
    };

    /// The allowance for `family`.
    pub fn allowance(&self, family: Family) -> Allowance {
        self.allowance[family as usize]
    }
}

impl Default for Numerics {
    fn default() -> Self {
        Numerics::DEFAULT
    }
}

impl fmt::Display for Contract {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let c = match self.concurrency {
            Concurrency::Atomic => "atomic",
            Concurrency::Quiesced => "quiesced",
        };
        let r = match self.failed_refit {
            FailedRefit::RollsBack => "rolls-back",
            FailedRefit::MayBePartial => "may-be-partial",
        };
        let s = match self.subset {
            Subset::Accepted => "subset-accepted",
            Subset::RequiresAll => "requires-all",
        };
        let n = match self.non_finite {
            NonFinite::Rejected => "non-finite-rejected",
            NonFinite::Served => "non-finite-served",
        };
        write!(f, "{c}, {r}, {s}, {n}, {}", self.precision)?;
        if self.error_factor != 1.0 {
            write!(f, " (error factor {})", self.error_factor)?;
        }
        Ok(())
    }
}

impl FromStr for Contract {
    type Err = String;

    /// Parses what [`Contract`]'s `Display` writes.
    fn from_str(s: &str) -> std::result::Result<Self, String> {
        let bad = || format!("not a contract: '{s}'");
        let (main, factor) = match s.split_once(" (error factor ") {
            Some((m, f)) => (
                m,
                f.trim_end_matches(')').parse::<f64>().map_err(|_| bad())?,
            ),
            None => (s, 1.0),
        };
        let parts: Vec<&str> = main.split(", ").collect();
        let [c, r, sub, n, p] = parts[..] else {
            return Err(bad());
        };
        Ok(Contract {
            concurrency: match c {
                "atomic" => Concurrency::Atomic,
                "quiesced" => Concurrency::Quiesced,
                _ => return Err(bad()),
            },
            failed_refit: match r {
                "rolls-back" => FailedRefit::RollsBack,
                "may-be-partial" => FailedRefit::MayBePartial,
                _ => return Err(bad()),
            },
            subset: match sub {
                "subset-accepted" => Subset::Accepted,
                "requires-all" => Subset::RequiresAll,
                _ => return Err(bad()),
            },
            non_finite: match n {
                "non-finite-rejected" => NonFinite::Rejected,
                "non-finite-served" => NonFinite::Served,
                _ => return Err(bad()),
            },
            precision: p.parse().map_err(|_| bad())?,
            error_factor: factor,
            numerics: Numerics::DEFAULT,
        })
    }
}

/// What an engine says about itself.
#[derive(Clone, Debug, PartialEq)]
pub struct EngineInfo {
    /// The engine's name (`reference`).
    pub name: String,
    /// Its version.
    pub version: String,
    /// The refit contract it declares.
    pub contract: Contract,
    /// Whether it was built with refit enabled.
    pub refit_enabled: bool,
}

/// How to build an engine from a model.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BuildOptions {
    /// Build with refit support (the runtimes' `enable_refit`). Without it,
    /// [`Engine::refitter`] fails.
    pub enable_refit: bool,
    /// The engine's own build options, a JSON object (`--engine-options`),
    /// for this build: a plugin receives its members in `options_json`
    /// beside `enable_refit`, unchanged; the built-in engines take only
    /// `scalar_weights` and refuse any other key. The engine under test's
    /// options live in its [`SpecFactory`](crate::check::SpecFactory),
    /// which puts them here in every build it makes.
    pub engine_options: Option<String>,
}

impl Default for BuildOptions {
    fn default() -> Self {
        BuildOptions {
            enable_refit: true,
            engine_options: None,
        }
    }
}

impl BuildOptions {
    /// With refit support on or off, and no engine options.
    pub fn refit(enable_refit: bool) -> Self {
        BuildOptions {
            enable_refit,
            ..BuildOptions::default()
        }
    }

    /// The `options_json` a plugin receives: the engine options with
    /// `enable_refit` set.
    ///
    /// # Errors
    /// [`Error::BadEngineOptions`] when the engine options are not a JSON
    /// object.
    pub fn options_json(&self) -> Result<String> {
        let mut map = match &self.engine_options {
            None => serde_json::Map::new(),
            Some(text) => parse_engine_options(text)?,
        };
        map.insert("enable_refit".into(), self.enable_refit.into());
        Ok(serde_json::Value::Object(map).to_string())
    }
}

/// Refuses options an engine does not take: `Err` naming the first key of
/// `options` (a JSON object, or `Null`) that is not in `known`, and the
/// keys `engine` takes. A typo (`devcie`) must not pass silently.
///
/// # Errors
/// [`Error::BadEngineOptions`] naming the key.
pub(crate) fn refuse_unknown_options(
    options: &serde_json::Value,
    known: &[&str],
    engine: &str,
) -> Result<()> {
    let Some(map) = options.as_object() else {
        return Ok(());
    };
    match map.keys().find(|k| !known.contains(&k.as_str())) {
        None => Ok(()),
        Some(k) if known.is_empty() => Err(Error::BadEngineOptions(format!(
            "unknown option '{k}': {engine} takes no engine options"
        ))),
        Some(k) => Err(Error::BadEngineOptions(format!(
            "unknown option '{k}': {engine} takes {}",
            known.join(", ")
        ))),
    }
}

/// Parses `--engine-options`: a JSON object.
///
/// # Errors
/// [`Error::BadEngineOptions`] naming what is wrong.
pub fn parse_engine_options(text: &str) -> Result<serde_json::Map<String, serde_json::Value>> {
    match serde_json::from_str::<serde_json::Value>(text) {
        Ok(serde_json::Value::Object(m)) => Ok(m),
        Ok(other) => Err(Error::BadEngineOptions(format!(
            "expected a JSON object, found {}",
            match other {
                serde_json::Value::Array(_) => "an array",
                serde_json::Value::String(_) => "a string",
                serde_json::Value::Number(_) => "a number",
                serde_json::Value::Bool(_) => "a boolean",
                _ => "null",
            }
        ))),
        Err(e) => Err(Error::BadEngineOptions(format!(
            "not JSON at line {} column {}: {e}",
            e.line(),
            e.column()
        ))),
    }
}

/// What an engine serves ([`Engine::description`]): its info, the model's
/// inputs and outputs, and the refittable weights (name, dtype, shape).
#[derive(Clone, Debug, PartialEq)]
pub struct Description {
    /// Name, version, contract.
    pub info: EngineInfo,
    /// The model's inputs.
    pub inputs: Vec<TensorInfo>,
    /// The model's outputs.
    pub outputs: Vec<TensorInfo>,
    /// The refittable weights.
    pub weights: Vec<TensorInfo>,
}

impl Description {
    /// An engine serving `model` as it was parsed, every initializer a
    /// refittable weight.
    pub fn of(model: &crate::model::Model, info: EngineInfo) -> Description {
        Description {
            info,
            inputs: model.inputs().to_vec(),
            outputs: model.outputs().to_vec(),
            weights: model
                .initializers()
                .iter()
                .map(|i| i.info.clone())
                .collect(),
        }
    }
}

/// A loaded model that serves inference and accepts refits.
///
/// # Thread-safety
/// Shared by every thread (`Send + Sync`); each thread makes its own
/// [`Context`]. Whether a refit may run while contexts infer is the
/// engine's [`Contract::concurrency`].
pub trait Engine: Send + Sync {
    /// What the engine serves: its info, the model's inputs and outputs,
    /// and the refittable weights, kept in one place and read by the
    /// accessors below.
    fn description(&self) -> &Description;

    /// Name, version, contract.
    fn info(&self) -> &EngineInfo {
        &self.description().info
    }

    /// The model's inputs.
    fn inputs(&self) -> &[TensorInfo] {
        &self.description().inputs
    }

    /// The model's outputs.
    fn outputs(&self) -> &[TensorInfo] {
        &self.description().outputs
    }

    /// The refittable weights: name, dtype, shape.
    fn weights(&self) -> &[TensorInfo] {
        &self.description().weights
    }

    /// A new inference context, for one thread. Contexts of one engine
    /// infer concurrently, each from one thread at a time.
    ///
    /// # Errors
    /// [`Error::Engine`] with the engine's own error (out of device
    /// memory, say).
    fn context(&self) -> Result<Box<dyn Context>>;

    /// A new refitter.
    ///
    /// # Errors
    /// [`Error::RefitDisabled`] when the engine was built without refit.
    fn refitter(&self) -> Result<Box<dyn Refitter>>;
}

/// Per-thread inference state.
pub trait Context: Send {
    /// Runs the model on `inputs` (one per model input, in order).
    ///
    /// # Errors
    /// Inputs that do not match the model: [`Error::InputCount`],
    /// [`Error::DTypeMismatch`], [`Error::ShapeMismatch`],
    /// [`Error::ByteCount`]; [`Error::Engine`] for a failure of the engine
    /// itself.
    fn infer(&mut self, inputs: &[Tensor]) -> Result<Vec<Tensor>>;

    /// As [`Context::infer`], writing the outputs into `outputs`, whose
    /// tensors an engine may reuse (their buffers, not their values), so
    /// that a loop of inferences need not allocate. On error, what
    /// `outputs` holds is unspecified. The default calls
    /// [`Context::infer`].
    ///
    /// # Errors
    /// As [`Context::infer`].
    fn infer_into(&mut self, inputs: &[Tensor], outputs: &mut Vec<Tensor>) -> Result<()> {
        *outputs = self.infer(inputs)?;
        Ok(())
    }
}

pub use crate::tensor::check_inputs;

/// The names of the weights `infos` whose slot in `staged` (one per
/// weight, in the same order) is empty: what [`Refitter::missing`] reports
/// for an engine that keeps its staged values that way.
pub fn unstaged<T>(infos: &[TensorInfo], staged: &[Option<T>]) -> Vec<String> {
    infos
        .iter()
        .zip(staged)
        .filter(|(_, s)| s.is_none())
        .map(|(w, _)| w.name.clone())
        .collect()
}

/// Stages named weights and applies them as one refit.
pub trait Refitter: Send {
    /// Stages one weight, validating it against the model. A weight staged
    /// twice keeps the later value. A weight that fails validation is not
    /// staged and leaves what was staged before unchanged.
    ///
    /// # Errors
    /// [`Error::UnknownWeight`], [`Error::DTypeMismatch`],
    /// [`Error::ShapeMismatch`], [`Error::ByteCount`], or
    /// [`Error::NonFinite`] where the engine rejects non-finite values.
    fn set_named_weights(&mut self, name: &str, weights: &Tensor) -> Result<()>;

    /// As [`Refitter::set_named_weights`], from a borrowed view: the
    /// reference plugin stages what arrives over the C ABI this way, read in
    /// place from the caller's buffer, so an engine that copies the values
    /// into its own memory anyway copies them once. The default makes an
    /// owned tensor and calls [`Refitter::set_named_weights`].
    ///
    /// # Errors
    /// As [`Refitter::set_named_weights`].
    fn set_named_weights_view(&mut self, name: &str, weights: TensorView<'_>) -> Result<()> {
        self.set_named_weights(name, &weights.to_tensor())
    }

    /// The refittable weights not staged on this refitter since its last
    /// successful refit, in the engine's weight order. Where the contract
    /// is [`Subset::RequiresAll`], `refit` fails until this is empty.
    ///
    /// # Errors
    /// [`Error::Engine`] (or a plugin's failing status) when the engine
    /// cannot say.
    fn missing(&self) -> Result<Vec<String>>;

    /// Applies everything staged, then clears the staged set. Refitting
    /// with nothing staged is a no-op.
    ///
    /// # Errors
    /// [`Error::MissingWeights`] for an incomplete set where the engine
    /// requires every weight; [`Error::Engine`] for a failure of the engine
    /// itself. On error, what the engine serves is given by
    /// [`Contract::failed_refit`], and what was staged stays staged.
    fn refit(&mut self) -> Result<()>;
}

/// Stages every `(name, tensor)` of `weights` on a new refitter and applies
/// them as one refit.
///
/// # Errors
/// The first staging or refit error; nothing is applied then (for engines
/// that roll back).
pub fn refit_all<'a>(
    engine: &dyn Engine,
    weights: impl IntoIterator<Item = (&'a str, &'a Tensor)>,
) -> Result<()> {
    let mut r = engine.refitter()?;
    for (name, t) in weights {
        r.set_named_weights(name, t)?;
    }
    r.refit()
}
