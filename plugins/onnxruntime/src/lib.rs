//! ONNX Runtime behind the refit-harness plugin ABI (`include/refit_plugin.h`):
//! `librefit_onnxruntime.so`, loaded with `--engine plugin:PATH`, runs any
//! ONNX model ONNX Runtime runs, on its CPU execution provider, and lists the
//! model's initializers as refittable weights.
//!
//! ONNX Runtime itself is loaded at run time (`ort` with `load-dynamic`)
//! from the `ort_dylib` option or `ORT_DYLIB_PATH`: the shared library of the
//! `onnxruntime` Python wheel (`.../onnxruntime/capi/libonnxruntime.so.*`).
//!
//! Options (`--engine-options`, JSON; any other key is an error):
//! - `refit_mode`: `"rebuild"` (default): a refit builds a new session on
//!   the model with the new weights written into it (every other byte of the
//!   model as it was) and publishes it with one atomic swap; an inference
//!   runs on the session it started with. `rebuild_with: "add_initializer"`
//!   builds it from the file with every weight given by `AddInitializer`
//!   instead, which ONNX Runtime 1.30 silently ignores for conv weights at
//!   its default optimization level (the layout optimizations, level 3 and
//!   up, keep the file's values): the harness sees the new weights never
//!   served.
//!   `"in_place"`: one session whose initializers live in buffers the plugin
//!   owns and hands to ONNX Runtime without a copy
//!   (`CreateTensorWithDataAsOrtValue` + `AddInitializer`); a refit writes
//!   the new values into those buffers while inferences run. Both declare
//!   the same contract (atomic, rolls back, subsets accepted, non-finite
//!   rejected, f32): whether `in_place` keeps it is for the harness to say.
//! - `rebuild_with`: `"model"` (default) or `"add_initializer"`, above.
//! - `graph_optimization_level`: `"disable"`, `"basic"`, `"extended"`,
//!   `"layout"` or `"all"` (ONNX Runtime's default when absent).
//! - `prepacking`: `false` sets `session.disable_prepacking` (ONNX Runtime
//!   pre-packs constant weights by default).
//! - `intra_op_threads`: threads per inference (ONNX Runtime's default when
//!   absent).
//! - `ort_dylib`: the path of `libonnxruntime.so` (else `ORT_DYLIB_PATH`).
//! - `enable_refit` (from the harness): false refuses refitters.
//!
//! `ort`'s `Session::run` takes the session mutably, so inferences on one
//! session take turns (a mutex per session); refits never wait for them.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, OnceLock};

use arc_swap::ArcSwap;
use ort::environment::Environment;
use ort::session::builder::GraphOptimizationLevel;
use ort::session::{Session, SessionInputValue};
use ort::value::{DynValue, Tensor as OrtTensor, TensorElementType, TensorRef, ValueType};
use refit_harness::engine::reference::validate_weight_view;
use refit_harness::engine::{
    check_inputs, unstaged, Concurrency, Context, Contract, Description, Engine, EngineInfo,
    FailedRefit, NonFinite, Precision, Refitter, Subset,
};
use refit_harness::ffi::{export, sys};
use refit_harness::model::onnx::replace_initializers;
use refit_harness::model::read_initializers_with;
use refit_harness::{DType, Error, Result, Tensor, TensorData, TensorInfo, TensorView, Values};

static API: sys::refit_plugin_api = export::table::<OnnxRuntime>();

/// The plugin's one exported entry point.
#[no_mangle]
pub extern "C" fn refit_plugin_get_api(abi_version: u32) -> *const sys::refit_plugin_api {
    export::entry(&API, abi_version)
}

/// What the plugin serves: [`OrtEngine`]s.
pub struct OnnxRuntime;

impl export::Exported for OnnxRuntime {
    fn create(model: &Path, options: &serde_json::Value) -> Result<Box<dyn Engine>> {
        Ok(Box::new(OrtEngine::load(model, &Options::parse(options)?)?))
    }
}

/// How a refit reaches the session.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RefitMode {
    /// A new session per published weight version.
    Rebuild,
    /// One session; refit writes into the initializer buffers it reads.
    InPlace,
}

/// The plugin's options (see the crate documentation).
#[derive(Clone, Debug)]
pub struct Options {
    /// How a refit reaches the session.
    pub refit_mode: RefitMode,
    /// `rebuild`: give the weights with `AddInitializer` instead of
    /// writing them into the model.
    pub add_initializer: bool,
    /// The graph optimization level; `None`: ONNX Runtime's default.
    pub optimization: Option<GraphOptimizationLevel>,
    /// Weight pre-packing; `None`: ONNX Runtime's default (on).
    pub prepacking: Option<bool>,
    /// Threads per inference; `None`: ONNX Runtime's default.
    pub intra_op_threads: Option<usize>,
    /// The ONNX Runtime library; `None`: `ORT_DYLIB_PATH`.
    pub ort_dylib: Option<PathBuf>,
    /// Whether refitters are given.
    pub enable_refit: bool,
    /// Scalar float initializers refitted as weights (by default scalars
    /// are constants).
    pub scalar_weights: Vec<String>,
}

const KEYS: &str = "refit_mode, rebuild_with, graph_optimization_level, prepacking, intra_op_threads, ort_dylib, scalar_weights, enable_refit";

impl Options {
    /// Reads the options JSON (`Null`: every default).
    ///
    /// # Errors
    /// [`Error::BadEngineOptions`] naming the key and what it takes.
    pub fn parse(json: &serde_json::Value) -> Result<Self> {
        let bad = |m: String| Error::BadEngineOptions(format!("onnxruntime plugin: {m}"));
        let mut o = Options {
            refit_mode: RefitMode::Rebuild,
            add_initializer: false,
            optimization: None,
            prepacking: None,
            intra_op_threads: None,
            ort_dylib: None,
            enable_refit: export::enable_refit(json),
            scalar_weights: Vec::new(),
        };
        let Some(map) = json.as_object() else {
            return if json.is_null() {
                Ok(o)
            } else {
                Err(bad(format!("expected a JSON object, found {json}")))
            };
        };
        for (key, v) in map {
            let text = || {
                v.as_str()
                    .ok_or_else(|| bad(format!("{key}: expected a string, found {v}")))
            };
            match key.as_str() {
                "enable_refit" => {}
                "refit_mode" => {
                    o.refit_mode = match text()? {
                        "rebuild" => RefitMode::Rebuild,
                        "in_place" => RefitMode::InPlace,
                        other => return Err(bad(format!("refit_mode '{other}': expected 'rebuild' or 'in_place'"))),
                    }
                }
                "rebuild_with" => {
                    o.add_initializer = match text()? {
                        "model" => false,
                        "add_initializer" => true,
                        other => return Err(bad(format!("rebuild_with '{other}': expected 'model' or 'add_initializer'"))),
                    }
                }
                "graph_optimization_level" => {
                    o.optimization = Some(match text()? {
                        "disable" => GraphOptimizationLevel::Disable,
                        "basic" => GraphOptimizationLevel::Level1,
                        "extended" => GraphOptimizationLevel::Level2,
                        "layout" => GraphOptimizationLevel::Level3,
                        "all" => GraphOptimizationLevel::All,
                        other => return Err(bad(format!("graph_optimization_level '{other}': expected 'disable', 'basic', 'extended', 'layout' or 'all'"))),
                    })
                }
                "prepacking" => {
                    o.prepacking = Some(v.as_bool().ok_or_else(|| bad(format!("prepacking: expected true or false, found {v}")))?)
                }
                "intra_op_threads" => {
                    o.intra_op_threads = Some(
                        v.as_u64()
                            .filter(|&n| n > 0)
                            .ok_or_else(|| bad(format!("intra_op_threads: expected a positive integer, found {v}")))?
                            as usize,
                    )
                }
                "ort_dylib" => o.ort_dylib = Some(PathBuf::from(text()?)),
                "scalar_weights" => {
                    o.scalar_weights = refit_harness::engine::reference::scalar_weights(
                        &serde_json::json!({ "scalar_weights": v }),
                    )?
                }
                other => return Err(bad(format!("unknown option '{other}' (options: {KEYS})"))),
            }
        }
        Ok(o)
    }
}

/// The contract both modes declare.
pub const CONTRACT: Contract = Contract {
    concurrency: Concurrency::Atomic,
    failed_refit: FailedRefit::RollsBack,
    subset: Subset::Accepted,
    non_finite: NonFinite::Rejected,
    precision: Precision::F32,
    error_factor: 1.0,
    numerics: refit_harness::engine::Numerics::DEFAULT,
};

fn ort_err(what: &str, e: impl std::fmt::Display) -> Error {
    Error::engine("onnxruntime", format!("{what}: {e}"))
}

/// The process's one ONNX Runtime environment, loaded from `dylib` or
/// `ORT_DYLIB_PATH` on first use.
fn environment(dylib: Option<&Path>) -> Result<Environment> {
    static ENV: OnceLock<std::result::Result<Environment, String>> = OnceLock::new();
    ENV.get_or_init(|| {
        let path = dylib
            .map(Path::to_path_buf)
            .or_else(|| std::env::var_os("ORT_DYLIB_PATH").filter(|p| !p.is_empty()).map(PathBuf::from))
            .ok_or_else(|| {
                "ONNX Runtime not found: set ORT_DYLIB_PATH (or the ort_dylib option) to libonnxruntime.so, e.g. from `pip install onnxruntime`: <venv>/lib/python3.*/site-packages/onnxruntime/capi/libonnxruntime.so.*".to_string()
            })?;
        ort::init_from(&path)
            .map_err(|e| format!("loading ONNX Runtime from {}: {e}", path.display()))?
            .with_name("refit-onnxruntime")
            .build()
            // Failures reach the harness as errors with ONNX Runtime's
            // message; its own log would repeat them on stderr.
            .inspect(|env| env.set_log_level(ort::logging::LogLevel::Fatal))
            .map_err(|e| format!("ONNX Runtime environment: {e}"))
    })
    .clone()
    .map_err(|m| Error::engine("onnxruntime", m))
}

/// One published weight version: its values, the session built on them and
/// the ORT tensors that session was given (`AddInitializer`: they must
/// outlive it).
struct Version {
    session: Mutex<Session>,
    values: Vec<Arc<Vec<f32>>>,
    _given: Vec<Arc<DynValue>>,
}

/// A buffer ONNX Runtime was given as an initializer, written in place by
/// `in_place` refits: its address and length in f32 values.
#[derive(Clone, Copy)]
struct RawBuf {
    at: usize,
    len: usize,
}

struct Shared {
    env: Environment,
    model: PathBuf,
    /// The model file's bytes, for `rebuild`.
    bytes: Vec<u8>,
    options: Options,
    description: Description,
    current: ArcSwap<Version>,
    /// Refits one at a time: each builds on the version before it.
    refit_lock: Mutex<()>,
    /// `in_place`: the buffers of `current`'s values, in weight order.
    raw: Vec<RawBuf>,
}

/// ONNX Runtime's CPU execution provider as a refit engine.
pub struct OrtEngine {
    shared: Arc<Shared>,
}

fn tensor_value(info: &TensorInfo, values: Vec<f32>) -> Result<(DynValue, RawBuf)> {
    let shape: Vec<usize> = info.shape.iter().map(|d| d.unwrap_or(0)).collect();
    let len = values.len();
    let mut t = OrtTensor::from_array((shape, values))
        .map_err(|e| ort_err(&format!("weight '{}'", info.name), e))?;
    let at = t.data_ptr_mut() as usize;
    Ok((t.into_dyn(), RawBuf { at, len }))
}

fn io_info(kind: &str, name: &str, t: &ValueType) -> Result<TensorInfo> {
    match t {
        ValueType::Tensor {
            ty: TensorElementType::Float32,
            shape,
            ..
        } => Ok(TensorInfo {
            name: name.to_string(),
            dtype: DType::F32,
            shape: shape.iter().map(|&d| usize::try_from(d).ok()).collect(),
        }),
        other => Err(Error::Unsupported {
            reason: format!(
                "onnxruntime plugin: {kind} '{name}' is {other:?}; only f32 tensors are served"
            ),
        }),
    }
}

impl OrtEngine {
    /// Builds the first session on the model's own initializer values.
    ///
    /// # Errors
    /// ONNX Runtime's failures as [`Error::Engine`]; an initializer, input
    /// or output that is not f32 as [`Error::Unsupported`].
    pub fn load(model: &Path, options: &Options) -> Result<Self> {
        let env = environment(options.ort_dylib.as_deref())?;
        let bytes = std::fs::read(model).map_err(|error| Error::Io {
            op: "read",
            path: model.to_path_buf(),
            error,
        })?;
        let inits = read_initializers_with(model, &options.scalar_weights)?;
        let mut weights = Vec::with_capacity(inits.len());
        let mut values = Vec::with_capacity(inits.len());
        for init in inits {
            if init.info.dtype != DType::F32 {
                return Err(Error::Unsupported {
                    reason: format!("onnxruntime plugin: initializer '{}' is {}; only f32 weights are refittable here", init.info.name, init.info.dtype),
                });
            }
            values.push(Arc::new(init.values));
            weights.push(init.info);
        }
        // Sessions are built from bytes, where ONNX Runtime cannot find a
        // side file of weights (it looks beside the working directory, not
        // the model): every weight is written into the bytes, read by the
        // harness's own reader from beside the model.
        let bytes = replace_initializers(&bytes, &|name| {
            weights
                .iter()
                .position(|w| w.name == name)
                .map(|i| &values[i][..])
        })
        .map_err(|e| ort_err(&format!("writing the weights into {}", model.display()), e))?;
        // The first session runs on the file as it is, except in place,
        // where it reads the plugin's buffers from the start.
        let mut given = Vec::new();
        let mut raw = Vec::new();
        let mut session = if options.refit_mode == RefitMode::InPlace {
            for (w, v) in weights.iter().zip(&values) {
                let (value, buf) = tensor_value(w, v.to_vec())?;
                given.push(Arc::new(value));
                raw.push(buf);
            }
            build_session(&env, model, None, options, &weights, &given)?
        } else {
            build_session(&env, model, Some(&bytes), options, &[], &[])?
        };
        let inputs = session
            .inputs()
            .iter()
            .filter(|i| !weights.iter().any(|w| w.name == i.name()))
            .map(|i| io_info("input", i.name(), i.dtype()))
            .collect::<Result<Vec<_>>>()?;
        let outputs = session
            .outputs()
            .iter()
            .map(|o| io_info("output", o.name(), o.dtype()))
            .collect::<Result<Vec<_>>>()?;
        probe(&mut session, &inputs)?;
        let mode = match options.refit_mode {
            RefitMode::Rebuild => "rebuild",
            RefitMode::InPlace => "in_place",
        };
        Ok(OrtEngine {
            shared: Arc::new(Shared {
                env,
                model: model.to_path_buf(),
                bytes,
                options: options.clone(),
                description: Description {
                    info: EngineInfo {
                        name: format!("onnxruntime ({mode})"),
                        version: format!("ort {}", env!("CARGO_PKG_VERSION")),
                        contract: CONTRACT,
                        refit_enabled: options.enable_refit,
                    },
                    inputs,
                    outputs,
                    weights,
                },
                current: ArcSwap::from_pointee(Version {
                    session: Mutex::new(session),
                    values,
                    _given: given,
                }),
                refit_lock: Mutex::new(()),
                raw,
            }),
        })
    }
}

/// A session on `model`: from `bytes` when given (the model with its
/// weights written in), else from the file with `values` given by
/// `AddInitializer`.
fn build_session(
    env: &Environment,
    model: &Path,
    bytes: Option<&[u8]>,
    options: &Options,
    weights: &[TensorInfo],
    values: &[Arc<DynValue>],
) -> Result<Session> {
    let fail = |e: ort::Error<ort::session::builder::SessionBuilder>| ort_err("session options", e);
    let mut b = Session::builder(env).map_err(|e| ort_err("session builder", e))?;
    if let Some(level) = options.optimization {
        b = b.with_optimization_level(level).map_err(fail)?;
    }
    if let Some(prepacking) = options.prepacking {
        b = b
            .with_config_entry(
                "session.disable_prepacking",
                if prepacking { "0" } else { "1" },
            )
            .map_err(fail)?;
    }
    if let Some(n) = options.intra_op_threads {
        b = b.with_intra_threads(n).map_err(fail)?;
    }
    for (w, v) in weights.iter().zip(values) {
        b = b.with_initializer(&w.name, Arc::clone(v)).map_err(fail)?;
    }
    let built = match bytes {
        Some(bytes) => b.commit_from_memory(bytes),
        None => b.commit_from_file(model),
    };
    built.map_err(|e| ort_err(&format!("building a session for {}", model.display()), e))
}

/// One inference on zeros where every input shape is known: a model this
/// build of ONNX Runtime cannot run (its CPU kernels refuse some attribute
/// combinations, only at run time) is refused here as unsupported, the
/// skip the harness gives a capability an engine lacks, with ONNX Runtime's
/// own message.
fn probe(session: &mut Session, inputs: &[TensorInfo]) -> Result<()> {
    let Some(shapes) = inputs
        .iter()
        .map(|i| i.static_shape())
        .collect::<Option<Vec<_>>>()
    else {
        return Ok(());
    };
    let zeros: Vec<Vec<f32>> = shapes
        .iter()
        .map(|s| vec![0.0; s.iter().product()])
        .collect();
    let mut feeds: Vec<(&str, SessionInputValue<'_>)> = Vec::new();
    for ((info, shape), z) in inputs.iter().zip(&shapes).zip(&zeros) {
        let view =
            TensorRef::from_array_view((shape.clone(), &z[..])).map_err(|e| ort_err("probe", e))?;
        feeds.push((info.name.as_str(), view.into()));
    }
    match session.run(feeds).map(drop) {
        Ok(()) => Ok(()),
        Err(e)
            if e.code() == ort::error::ErrorCode::NotImplemented
                || e.message().contains("not supported") =>
        {
            Err(Error::Unsupported {
                reason: format!("onnxruntime: {}", e.message()),
            })
        }
        Err(e) => Err(ort_err("a first inference on zeros", e)),
    }
}

impl Engine for OrtEngine {
    fn description(&self) -> &Description {
        &self.shared.description
    }
    fn context(&self) -> Result<Box<dyn Context>> {
        Ok(Box::new(OrtContext {
            shared: Arc::clone(&self.shared),
        }))
    }
    fn refitter(&self) -> Result<Box<dyn Refitter>> {
        if !self.info().refit_enabled {
            return Err(Error::RefitDisabled);
        }
        Ok(Box::new(OrtRefitter {
            shared: Arc::clone(&self.shared),
            staged: vec![None; self.shared.description.weights.len()],
        }))
    }
}

struct OrtContext {
    shared: Arc<Shared>,
}

impl Context for OrtContext {
    fn infer(&mut self, inputs: &[Tensor]) -> Result<Vec<Tensor>> {
        let mut outputs = Vec::new();
        self.infer_into(inputs, &mut outputs)?;
        Ok(outputs)
    }

    fn infer_into(&mut self, inputs: &[Tensor], outputs: &mut Vec<Tensor>) -> Result<()> {
        let s = &self.shared;
        check_inputs(&s.description.inputs, inputs)?;
        let mut feeds: Vec<(&str, SessionInputValue<'_>)> = Vec::with_capacity(inputs.len());
        for (info, t) in s.description.inputs.iter().zip(inputs) {
            let TensorData::F32(v) = &t.data else {
                unreachable!("checked f32 above")
            };
            let view = TensorRef::from_array_view((t.shape.clone(), &v[..]))
                .map_err(|e| ort_err(&format!("input '{}'", info.name), e))?;
            feeds.push((info.name.as_str(), view.into()));
        }
        // The version this inference started on, kept until it ends.
        let version = s.current.load_full();
        let mut session = version.session.lock().unwrap_or_else(|p| p.into_inner());
        let results = session.run(feeds).map_err(|e| ort_err("run", e))?;
        outputs.truncate(s.description.outputs.len());
        for (i, info) in s.description.outputs.iter().enumerate() {
            let value = results
                .get(&info.name)
                .ok_or_else(|| ort_err("run", format!("no output '{}'", info.name)))?;
            let (shape, data) = value
                .try_extract_tensor::<f32>()
                .map_err(|e| ort_err(&format!("output '{}'", info.name), e))?;
            let shape = shape.iter().map(|&d| d.max(0) as usize);
            match outputs.get_mut(i) {
                Some(out) => {
                    out.data.assign(Values::F32(data));
                    out.shape.clear();
                    out.shape.extend(shape);
                }
                None => outputs.push(Tensor::f32(shape.collect::<Vec<_>>(), data.to_vec())),
            }
        }
        Ok(())
    }
}

struct OrtRefitter {
    shared: Arc<Shared>,
    staged: Vec<Option<Vec<f32>>>,
}

impl OrtRefitter {
    /// `rebuild`: a session on `values`, and the ORT tensors it was given.
    fn build(&self, values: &[Arc<Vec<f32>>]) -> Result<(Session, Vec<Arc<DynValue>>)> {
        let s = &self.shared;
        if s.options.add_initializer {
            let mut given = Vec::with_capacity(values.len());
            for (w, v) in s.description.weights.iter().zip(values) {
                given.push(Arc::new(tensor_value(w, v.to_vec())?.0));
            }
            let session = build_session(
                &s.env,
                &s.model,
                None,
                &s.options,
                &s.description.weights,
                &given,
            )?;
            return Ok((session, given));
        }
        let of = |name: &str| {
            let i = s.description.weights.iter().position(|w| w.name == name)?;
            Some(values[i].as_slice())
        };
        let bytes = replace_initializers(&s.bytes, &of)
            .map_err(|e| ort_err(&format!("writing weights into {}", s.model.display()), e))?;
        let session = build_session(&s.env, &s.model, Some(&bytes), &s.options, &[], &[])?;
        Ok((session, Vec::new()))
    }
}

impl Refitter for OrtRefitter {
    fn set_named_weights(&mut self, name: &str, weights: &Tensor) -> Result<()> {
        self.set_named_weights_view(name, weights.view())
    }

    fn set_named_weights_view(&mut self, name: &str, weights: TensorView<'_>) -> Result<()> {
        // Name, dtype (every weight here is f32), shape, count, finiteness.
        let index = validate_weight_view(&self.shared.description.weights, name, weights)?;
        let Values::F32(v) = weights.values else {
            unreachable!("validated as f32 above")
        };
        self.staged[index] = Some(v.to_vec());
        Ok(())
    }

    fn missing(&self) -> Result<Vec<String>> {
        Ok(unstaged(&self.shared.description.weights, &self.staged))
    }

    fn refit(&mut self) -> Result<()> {
        if self.staged.iter().all(Option::is_none) {
            return Ok(());
        }
        let s = &self.shared;
        let _one_at_a_time = s.refit_lock.lock().unwrap_or_else(|p| p.into_inner());
        match s.options.refit_mode {
            RefitMode::InPlace => {
                for (buf, staged) in s.raw.iter().zip(self.staged.iter_mut()) {
                    if let Some(v) = staged.take() {
                        // SAFETY: `buf` is the live buffer of a value the
                        // current session holds (the engine keeps it), and
                        // `v` has its length (checked when staged). ONNX
                        // Runtime may be reading it meanwhile: that write
                        // under a running inference is what this mode is
                        // for the harness to judge.
                        unsafe {
                            std::ptr::copy_nonoverlapping(
                                v.as_ptr(),
                                buf.at as *mut f32,
                                buf.len.min(v.len()),
                            )
                        };
                    }
                }
                Ok(())
            }
            RefitMode::Rebuild => {
                let current = s.current.load_full();
                // The staged values move into the new version; a failed
                // build puts them back.
                let staged: Vec<bool> = self.staged.iter().map(Option::is_some).collect();
                let values: Vec<Arc<Vec<f32>>> = current
                    .values
                    .iter()
                    .zip(self.staged.iter_mut())
                    .map(|(old, new)| match new.take() {
                        Some(v) => Arc::new(v),
                        None => Arc::clone(old),
                    })
                    .collect();
                let built = self.build(&values);
                let (session, given) = match built {
                    Ok(b) => b,
                    Err(e) => {
                        for ((slot, v), was) in self.staged.iter_mut().zip(&values).zip(&staged) {
                            if *was {
                                *slot = Some(v.to_vec());
                            }
                        }
                        return Err(e);
                    }
                };
                s.current.store(Arc::new(Version {
                    session: Mutex::new(session),
                    values,
                    _given: given,
                }));
                Ok(())
            }
        }
    }
}
