//! Deliberately broken engines: the reference engine wrapped or altered to
//! carry one defect a real runtime could have. `selftest` runs every check
//! against each and requires each defect to be caught; the reference
//! engine's own code stays plain.
//!
//! Also here: `reference-strict`, the reference engine declaring and
//! enforcing [`Subset::RequiresAll`] (as TensorRT does), and
//! `reference-quiesced`, declaring the quiesced contract: correct engines
//! that exercise the checks' requires-all and quiesced branches.

pub mod derived;
pub mod racy;

use std::collections::HashMap;
use std::fmt;
use std::path::Path;
use std::str::FromStr;
use std::sync::Arc;

use prost::Message;

use crate::engine::reference::{validate_weight, ReferenceEngine};
use crate::engine::{BuildOptions, Context, Description, Engine, Refitter, Subset};
use crate::model::onnx;
use crate::tensor::{Tensor, TensorData, TensorInfo};
use crate::{Error, Result};

/// One seeded defect.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Defect {
    /// The last weight's name is accepted and silently ignored.
    IgnoresName,
    /// Kernels are applied transposed (height and width swapped): layout
    /// confusion at staging.
    TransposedKernel,
    /// Explicit conv padding is applied one position too far along each
    /// axis (begin + 1, end - 1).
    OffByOnePadding,
    /// Non-finite values are found only at refit, which applies the staged
    /// weights one by one and stops at the bad one: a failed refit that
    /// half-applies, while declaring rolls-back.
    HalfAppliesOnFailure,
    /// A rejected staging returns its error but stays staged, and the next
    /// refit applies it.
    ErrorStillApplies,
    /// `refit()` validates and returns success but never publishes.
    NeverPublished,
    /// Every refit leaks the bytes it staged.
    LeaksPerRefit,
    /// i32 data for an f32 weight is accepted, its bits read as f32.
    AcceptsWrongDType,
    /// `missing()` always answers that nothing is missing.
    MissingLies,
    /// Declares requires-all, yet applies an incomplete set.
    RequiresAllNotEnforced,
    /// A concurrency defect (see [`racy::Race`]).
    Race(racy::Race),
    /// Tensors derived from the weights at build, forgotten at refit (see
    /// [`derived::Derivation`]).
    Derived(derived::Derivation),
    /// A context serves its last result again for an input of the same
    /// bytes, through refits (a result or prefix cache not invalidated).
    CachedResult,
    /// Every refit passes the weights through a lossy transform whose error
    /// grows with the refits so far (`w (1 + 2^-12 k)` at the k-th): repeated
    /// A -> B -> A cycles drift.
    Drifts,
}

impl Defect {
    /// Every defect, in catalogue order.
    pub const ALL: [Defect; 22] = [
        Defect::IgnoresName,
        Defect::TransposedKernel,
        Defect::OffByOnePadding,
        Defect::HalfAppliesOnFailure,
        Defect::ErrorStillApplies,
        Defect::NeverPublished,
        Defect::LeaksPerRefit,
        Defect::AcceptsWrongDType,
        Defect::MissingLies,
        Defect::RequiresAllNotEnforced,
        Defect::Race(racy::Race::InPlaceCopy),
        Defect::Race(racy::Race::DelayedPublish),
        Defect::Race(racy::Race::SharedStaging),
        Defect::Race(racy::Race::CachedSnapshot),
        Defect::Race(racy::Race::HalfBuiltSnapshot),
        Defect::Race(racy::Race::NoWriterLock),
        Defect::Derived(derived::Derivation::FoldsBatchNorm),
        Defect::Derived(derived::Derivation::PacksGemm),
        Defect::Derived(derived::Derivation::DropsZeroBias),
        Defect::Derived(derived::Derivation::FusesProjections),
        Defect::CachedResult,
        Defect::Drifts,
    ];

    /// Its name in engine specs (`defect:ignores_name`).
    pub fn name(self) -> &'static str {
        match self {
            Defect::IgnoresName => "ignores_name",
            Defect::TransposedKernel => "transposed_kernel",
            Defect::OffByOnePadding => "off_by_one_padding",
            Defect::HalfAppliesOnFailure => "half_applies_on_failure",
            Defect::ErrorStillApplies => "error_still_applies",
            Defect::NeverPublished => "never_published",
            Defect::LeaksPerRefit => "leaks_per_refit",
            Defect::AcceptsWrongDType => "accepts_wrong_dtype",
            Defect::MissingLies => "missing_lies",
            Defect::RequiresAllNotEnforced => "requires_all_not_enforced",
            Defect::Race(racy::Race::InPlaceCopy) => "in_place_copy",
            Defect::Race(racy::Race::DelayedPublish) => "delayed_publish",
            Defect::Race(racy::Race::SharedStaging) => "shared_staging",
            Defect::Race(racy::Race::CachedSnapshot) => "cached_snapshot",
            Defect::Race(racy::Race::HalfBuiltSnapshot) => "half_built_snapshot",
            Defect::Race(racy::Race::NoWriterLock) => "no_writer_lock",
            Defect::Derived(derived::Derivation::FoldsBatchNorm) => "batchnorm_not_refolded",
            Defect::Derived(derived::Derivation::PacksGemm) => "packed_gemm_stale",
            Defect::Derived(derived::Derivation::DropsZeroBias) => "zero_bias_dropped",
            Defect::Derived(derived::Derivation::FusesProjections) => "fused_halves_swapped",
            Defect::CachedResult => "cached_result",
            Defect::Drifts => "drifts",
        }
    }
}

impl fmt::Display for Defect {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for Defect {
    type Err = Error;

    fn from_str(s: &str) -> Result<Self> {
        Defect::ALL
            .into_iter()
            .find(|d| d.name() == s)
            .ok_or_else(|| Error::UnknownEngine(format!("defect:{s}")))
    }
}

/// The reference engine with one seeded [`Defect`].
pub(crate) struct WrappedEngine {
    inner: ReferenceEngine,
    description: Description,
    defect: Defect,
    /// For a [`Defect::Derived`]: the model's own weights, which the engine
    /// lists and accepts, and where each rewritten one's refits go.
    derived: Option<Arc<Derived>>,
    /// Refits made so far (for [`Defect::Drifts`]).
    refits: Arc<std::sync::atomic::AtomicU64>,
}

struct Derived {
    weights: Vec<TensorInfo>,
    routes: HashMap<String, derived::Route>,
}

/// Shifts every explicit conv padding by one (begin + 1, end - 1).
fn shift_pads(bytes: &[u8], path: &Path) -> Result<Vec<u8>> {
    let mut proto = onnx::ModelProto::decode(bytes).map_err(|e| Error::MalformedModel {
        path: path.to_path_buf(),
        reason: e.to_string(),
    })?;
    if let Some(g) = proto.graph.as_mut() {
        for n in g
            .node
            .iter_mut()
            .filter(|n| n.op_type.as_deref() == Some("Conv"))
        {
            for a in n
                .attribute
                .iter_mut()
                .filter(|a| a.name.as_deref() == Some("pads"))
            {
                let nd = a.ints.len() / 2;
                if a.ints.iter().any(|&p| p > 0) {
                    for i in 0..nd {
                        if a.ints[nd + i] > 0 {
                            a.ints[i] += 1;
                            a.ints[nd + i] -= 1;
                        }
                    }
                }
            }
        }
    }
    Ok(proto.encode_to_vec())
}

impl WrappedEngine {
    /// Builds the wrapped engine over a model file.
    ///
    /// # Errors
    /// As [`ReferenceEngine::load`].
    pub fn load(defect: Defect, path: &Path, options: &BuildOptions) -> Result<Self> {
        let read = || {
            std::fs::read(path).map_err(|error| Error::Io {
                op: "read",
                path: path.to_path_buf(),
                error,
            })
        };
        let mut derived = None;
        let inner = match defect {
            Defect::OffByOnePadding => {
                ReferenceEngine::from_bytes(&shift_pads(&read()?, path)?, path, options)?
            }
            Defect::Derived(d) => {
                let bytes = read()?;
                let weights = ReferenceEngine::from_bytes(&bytes, path, options)?
                    .weights()
                    .to_vec();
                let (rewritten, routes) = derived::rewrite(d, &bytes, path)?;
                derived = Some(Arc::new(Derived { weights, routes }));
                ReferenceEngine::from_bytes(&rewritten, path, options)?
            }
            _ => ReferenceEngine::load(path, options)?,
        };
        let mut description = inner.description().clone();
        description.info.name = format!("defect:{defect}");
        if defect == Defect::RequiresAllNotEnforced {
            description.info.contract.subset = Subset::RequiresAll;
        }
        if let Some(d) = &derived {
            description.weights = d.weights.clone();
        }
        Ok(WrappedEngine {
            inner,
            description,
            defect,
            derived,
            refits: Default::default(),
        })
    }
}

impl Engine for WrappedEngine {
    fn description(&self) -> &Description {
        &self.description
    }

    fn context(&self) -> Result<Box<dyn Context>> {
        let inner = self.inner.context()?;
        if self.defect == Defect::CachedResult {
            return Ok(Box::new(CachingContext { inner, last: None }));
        }
        Ok(inner)
    }

    fn refitter(&self) -> Result<Box<dyn Refitter>> {
        if let Some(d) = &self.derived {
            return Ok(Box::new(DerivedRefitter {
                inner: self.inner.refitter()?,
                staged: vec![None; d.weights.len()],
                derived: Arc::clone(d),
            }));
        }
        Ok(Box::new(WrappedRefitter {
            refits: Arc::clone(&self.refits),
            inner: self.inner.refitter()?,
            engine: self.inner.clone(),
            defect: self.defect,
            deferred: Vec::new(),
            staged: Vec::new(),
        }))
    }
}

/// The refit path of a [`Defect::Derived`] engine: validates against the
/// model's own weights, then routes each tensor as the rewrite left it.
struct DerivedRefitter {
    inner: Box<dyn Refitter>,
    derived: Arc<Derived>,
    staged: Vec<Option<()>>,
}

impl Refitter for DerivedRefitter {
    fn set_named_weights(&mut self, name: &str, weights: &Tensor) -> Result<()> {
        let i = validate_weight(&self.derived.weights, name, weights)?;
        match self.derived.routes.get(name) {
            Some(derived::Route::Dropped) => {}
            Some(derived::Route::Into(other)) => self.inner.set_named_weights(other, weights)?,
            None => self.inner.set_named_weights(name, weights)?,
        }
        self.staged[i] = Some(());
        Ok(())
    }

    fn missing(&self) -> Result<Vec<String>> {
        Ok(crate::engine::unstaged(&self.derived.weights, &self.staged))
    }

    fn refit(&mut self) -> Result<()> {
        self.staged.iter_mut().for_each(|s| *s = None);
        self.inner.refit()
    }
}

/// A context that keeps its last inputs and outputs and serves the outputs
/// again for inputs of the same bytes.
struct CachingContext {
    inner: Box<dyn Context>,
    last: Option<(Vec<Tensor>, Vec<Tensor>)>,
}

impl Context for CachingContext {
    fn infer(&mut self, inputs: &[Tensor]) -> Result<Vec<Tensor>> {
        if let Some((x, y)) = &self.last {
            if x.as_slice() == inputs {
                return Ok(y.clone());
            }
        }
        let y = self.inner.infer(inputs)?;
        self.last = Some((inputs.to_vec(), y.clone()));
        Ok(y)
    }
}

struct WrappedRefitter {
    refits: Arc<std::sync::atomic::AtomicU64>,
    inner: Box<dyn Refitter>,
    engine: ReferenceEngine,
    defect: Defect,
    /// Weights whose validation is deferred to refit (half-applies).
    deferred: Vec<(String, Tensor)>,
    /// Names staged since the last refit, and their values (for the leak).
    staged: Vec<(String, Vec<f32>)>,
}

fn transpose_last_two(t: &Tensor) -> Tensor {
    let r = t.shape.len();
    if r < 4 {
        return t.clone();
    }
    let (h, w) = (t.shape[r - 2], t.shape[r - 1]);
    let v = t.to_f32_vec();
    let mut out = v.clone();
    for (p, plane) in v.chunks(h * w).enumerate() {
        for i in 0..h {
            for j in 0..w {
                // Read as if the kernel were stored width-major.
                out[p * h * w + i * w + j] = plane[j * h + i];
            }
        }
    }
    Tensor::f32(t.shape.clone(), out)
}

impl Refitter for WrappedRefitter {
    fn set_named_weights(&mut self, name: &str, weights: &Tensor) -> Result<()> {
        let d = Some(self.defect);
        let last = self.engine.weights().last().map(|w| w.name.clone());
        match d {
            Some(Defect::IgnoresName) if last.as_deref() == Some(name) => return Ok(()),
            Some(Defect::TransposedKernel) if weights.dtype() == crate::DType::F32 => {
                return self
                    .inner
                    .set_named_weights(name, &transpose_last_two(weights));
            }
            Some(Defect::HalfAppliesOnFailure) => {
                // Validate everything but finiteness now, the rest at refit.
                let info = self.engine.weights().iter().find(|w| w.name == name);
                let fits = info.is_some_and(|i| {
                    i.dtype == weights.dtype()
                        && i.shape
                            .iter()
                            .map(|d| d.unwrap_or(0))
                            .eq(weights.shape.iter().copied())
                        && weights.numel() == weights.data.len()
                });
                if !fits {
                    return self.inner.set_named_weights(name, weights);
                }
                self.deferred.push((name.to_string(), weights.clone()));
                return Ok(());
            }
            Some(Defect::Drifts) if weights.dtype() == crate::DType::F32 => {
                let k = self.refits.load(std::sync::atomic::Ordering::Relaxed);
                let f = 1.0 + k as f32 / 4096.0;
                let lossy = Tensor::f32(
                    weights.shape.clone(),
                    weights.to_f32_vec().iter().map(|x| x * f).collect(),
                );
                return self.inner.set_named_weights(name, &lossy);
            }
            Some(Defect::AcceptsWrongDType) => {
                if let TensorData::I32(v) = &weights.data {
                    let bits = Tensor::f32(
                        weights.shape.clone(),
                        v.iter().map(|&x| f32::from_bits(x as u32)).collect(),
                    );
                    return self.inner.set_named_weights(name, &bits);
                }
            }
            _ => {}
        }
        let result = self.inner.set_named_weights(name, weights);
        if let (Err(e), Some(Defect::ErrorStillApplies)) = (&result, d) {
            if !matches!(e, Error::UnknownWeight { .. }) {
                // Force the values in at the declared shape.
                if let Some(info) = self.engine.weights().iter().find(|w| w.name == name) {
                    let n: usize = info.shape.iter().map(|d| d.unwrap_or(0)).product();
                    let mut v = weights.to_f32_vec();
                    v.resize(n, 0.0);
                    let forced = Tensor::f32(
                        info.shape
                            .iter()
                            .map(|d| d.unwrap_or(0))
                            .collect::<Vec<usize>>(),
                        v.iter()
                            .map(|x| if x.is_finite() { *x } else { 1e6 })
                            .collect(),
                    );
                    let _ = self.inner.set_named_weights(name, &forced);
                }
            }
        }
        if result.is_ok() && d == Some(Defect::LeaksPerRefit) {
            self.staged.push((name.to_string(), weights.to_f32_vec()));
        }
        result
    }

    fn missing(&self) -> Result<Vec<String>> {
        if self.defect == Defect::MissingLies {
            return Ok(Vec::new());
        }
        let mut missing = self.inner.missing()?;
        missing.retain(|m| !self.deferred.iter().any(|(n, _)| n == m));
        Ok(missing)
    }

    fn refit(&mut self) -> Result<()> {
        match self.defect {
            Defect::NeverPublished => {
                self.staged.clear();
                self.inner = self.engine.refitter()?;
                return Ok(());
            }
            Defect::LeaksPerRefit => {
                for (_, v) in self.staged.drain(..) {
                    std::mem::forget(v);
                }
            }
            Defect::HalfAppliesOnFailure => {
                for (name, t) in std::mem::take(&mut self.deferred) {
                    let mut one = self.engine.refitter()?;
                    one.set_named_weights(&name, &t)?;
                    one.refit()?;
                }
            }
            _ => {}
        }
        self.staged.clear();
        self.refits
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        self.inner.refit()
    }
}
