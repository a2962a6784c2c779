//! The exports that serve any [`Engine`] written in Rust through the C ABI
//! ([`Exported`], [`table`], [`entry`]), and with them the reference
//! plugin: the reference engine behind the C ABI of
//! `include/refit_plugin.h`, built as the `reference_plugin` example
//! (`target/<profile>/examples/libreference_plugin.so`, which `cargo test`
//! and `cargo build --examples` build). Loading it with
//! `--engine plugin:PATH` runs the whole load path, and every check,
//! through the ABI on any machine.
//!
//! Options (`options_json`): `enable_refit` (default true) and `engine`:
//! `"reference"` (the default) or `"null"`, the engine that does no work
//! ([`crate::engine::null`]), whose cost is the ABI's own.
//!
//! Every export catches panics: none crosses the boundary.

use std::cell::RefCell;
use std::ffi::{c_char, CStr, CString};
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::path::Path;

use super::status::status_of;
use super::sys::{self, refit_plugin_api, refit_status, refit_tensor, refit_tensor_desc};
use crate::engine::null::NullEngine;
use crate::engine::reference::ReferenceEngine;
use crate::engine::{
    BuildOptions, Concurrency, Context, Engine, FailedRefit, NonFinite, Refitter, Subset,
};
use crate::tensor::{DType, Tensor, TensorData, TensorInfo, TensorView, Values};
use crate::Error;

thread_local! {
    static LAST_ERROR: RefCell<CString> = RefCell::new(CString::default());
}

fn set_error(message: &str) {
    let c = CString::new(message.replace('\0', " ")).unwrap_or_default();
    LAST_ERROR.with(|e| *e.borrow_mut() = c);
}

/// Runs `f`, turning an error or a panic into a status and a message.
fn guard(f: impl FnOnce() -> Result<(), (refit_status, String)>) -> refit_status {
    match catch_unwind(AssertUnwindSafe(f)) {
        Ok(Ok(())) => sys::REFIT_OK,
        Ok(Err((status, message))) => {
            set_error(&message);
            status
        }
        Err(_) => {
            set_error("the plugin panicked");
            sys::REFIT_ERROR
        }
    }
}

fn err(e: Error) -> (refit_status, String) {
    (status_of(&e), e.to_string())
}

fn invalid(what: &str) -> (refit_status, String) {
    (sys::REFIT_INVALID_ARGUMENT, format!("{what} is NULL"))
}

struct Desc {
    name: CString,
    dtype: sys::refit_dtype,
    dims: Vec<i64>,
}

fn descs(infos: &[TensorInfo]) -> Vec<Desc> {
    infos
        .iter()
        .map(|i| Desc {
            name: CString::new(i.name.clone()).unwrap_or_default(),
            dtype: sys::dtype_code(i.dtype),
            dims: i.shape.iter().map(|d| d.map_or(-1, |d| d as i64)).collect(),
        })
        .collect()
}

struct ExportEngine {
    engine: Box<dyn Engine>,
    name: CString,
    version: CString,
    inputs: Vec<Desc>,
    outputs: Vec<Desc>,
    weights: Vec<Desc>,
}

/// A context and the buffers its calls reuse, so that an inference
/// allocates only what the engine itself does.
struct ExportContext {
    ctx: Box<dyn Context>,
    inputs: Vec<Tensor>,
    outputs: Vec<Tensor>,
    /// Every output's dims, one after another.
    dims: Vec<i64>,
    views: Vec<refit_tensor>,
}

struct ExportRefitter {
    refitter: Box<dyn Refitter>,
    missing: Vec<CString>,
    missing_ptrs: Vec<*const c_char>,
}

impl ExportContext {
    fn new(ctx: Box<dyn Context>) -> Self {
        ExportContext {
            ctx,
            inputs: Vec::new(),
            outputs: Vec::new(),
            dims: Vec::new(),
            views: Vec::new(),
        }
    }
}

impl ExportRefitter {
    fn new(refitter: Box<dyn Refitter>) -> Self {
        ExportRefitter {
            refitter,
            missing: Vec::new(),
            missing_ptrs: Vec::new(),
        }
    }
}

/// A C tensor's parts, checked for what the ABI itself requires (a known
/// dtype, non-NULL pointers, non-negative dims); the engine checks them
/// against the model.
struct CTensor<'a> {
    dtype: DType,
    dims: &'a [i64],
    bytes: &'a [u8],
}

impl CTensor<'_> {
    fn shape(&self) -> Vec<usize> {
        self.dims.iter().map(|&d| d as usize).collect()
    }

    /// Makes `t` this tensor, reusing its buffers.
    fn refill(&self, t: &mut Tensor) -> crate::Result<()> {
        if t.data.assign_le_bytes(self.dtype, self.bytes).is_none() {
            *t = self.to_tensor()?;
        }
        t.shape.clear();
        t.shape.extend(self.dims.iter().map(|&d| d as usize));
        Ok(())
    }

    /// Stages the tensor on `refitter`, its values read in place where they
    /// are aligned for their type, else decoded into an owned copy.
    fn stage(&self, refitter: &mut dyn Refitter, name: &str) -> crate::Result<()> {
        match Values::from_le_bytes(self.dtype, self.bytes) {
            Some(values) => refitter.set_named_weights_view(
                name,
                TensorView {
                    shape: &self.shape(),
                    values,
                },
            ),
            None => refitter.set_named_weights(name, &self.to_tensor()?),
        }
    }

    /// An owned copy.
    fn to_tensor(&self) -> crate::Result<Tensor> {
        // `c_tensor` checked the byte count is whole values.
        let data = TensorData::from_le_bytes(self.dtype, self.bytes).ok_or_else(|| {
            crate::Error::ByteCount {
                what: "the tensor".into(),
                dtype: self.dtype,
                shape: self.shape(),
                expected: 0,
                found: self.bytes.len(),
            }
        })?;
        Ok(Tensor {
            shape: self.shape(),
            data,
        })
    }
}

/// Reads the parts of a C tensor, borrowing its bytes.
///
/// # Safety
/// `t` points to a valid `refit_tensor` whose `dims` and `data` are valid
/// for `rank` entries and `byte_len` bytes, for `'a`.
unsafe fn c_tensor<'a>(t: *const refit_tensor) -> Result<CTensor<'a>, (refit_status, String)> {
    if t.is_null() {
        return Err(invalid("the tensor"));
    }
    // SAFETY: non-NULL, valid per the contract.
    let t = unsafe { &*t };
    let Some(dtype) = sys::dtype_of(t.dtype) else {
        return Err((
            sys::REFIT_DTYPE_MISMATCH,
            format!("unknown dtype code {}", t.dtype),
        ));
    };
    if (t.rank > 0 && t.dims.is_null()) || (t.byte_len > 0 && t.data.is_null()) {
        return Err(invalid("dims or data"));
    }
    // SAFETY: rank entries at dims.
    let dims = if t.rank == 0 {
        &[][..]
    } else {
        unsafe { std::slice::from_raw_parts(t.dims, t.rank as usize) }
    };
    if dims.iter().any(|&d| d < 0) {
        return Err((
            sys::REFIT_SHAPE_MISMATCH,
            format!("negative dimension in {dims:?}"),
        ));
    }
    // SAFETY: byte_len bytes at data.
    let bytes = if t.byte_len == 0 {
        &[][..]
    } else {
        unsafe { std::slice::from_raw_parts(t.data.cast::<u8>(), t.byte_len as usize) }
    };
    if bytes.len() % dtype.size() != 0 {
        return Err((
            sys::REFIT_SHAPE_MISMATCH,
            format!(
                "{} bytes are not a whole number of {dtype} values",
                bytes.len()
            ),
        ));
    }
    Ok(CTensor { dtype, dims, bytes })
}

/// An engine that a plugin library serves through the ABI with this
/// module's exports: what `engine_create` builds. The reference plugin is
/// [`Reference`]; a plugin written in Rust implements this for its own
/// engine, puts [`table`] in a static and returns it from its entry point
/// with [`entry`].
pub trait Exported: 'static {
    /// Builds the engine for the model at `model`. `options` is the
    /// `options_json` the plugin received, parsed (`Null` when absent);
    /// `enable_refit` (default true) is among its members.
    ///
    /// # Errors
    /// The engine's own: [`Error::Unsupported`] for a model it cannot run,
    /// [`Error::BadEngineOptions`] for options it does not take, ...
    fn create(model: &Path, options: &serde_json::Value) -> crate::Result<Box<dyn Engine>>;
}

/// `enable_refit` from a plugin's options (default true).
pub fn enable_refit(options: &serde_json::Value) -> bool {
    options
        .get("enable_refit")
        .and_then(serde_json::Value::as_bool)
        .unwrap_or(true)
}

/// The reference plugin's engines: the reference engine, or with
/// `{"engine": "null"}` the null engine.
pub struct Reference;

impl Exported for Reference {
    fn create(model: &Path, options: &serde_json::Value) -> crate::Result<Box<dyn Engine>> {
        crate::engine::refuse_unknown_options(
            options,
            &["enable_refit", "engine", "scalar_weights"],
            "the reference plugin",
        )?;
        let mut build = BuildOptions::refit(enable_refit(options));
        if let Some(list) = options.get("scalar_weights") {
            build.engine_options = Some(serde_json::json!({ "scalar_weights": list }).to_string());
        }
        Ok(
            match options.get("engine").and_then(serde_json::Value::as_str) {
                None | Some("reference") => Box::new(ReferenceEngine::load(model, &build)?),
                Some("null") => Box::new(NullEngine::load(model, &build)?),
                Some(other) => {
                    return Err(Error::BadEngineOptions(format!(
                        "engine '{other}' is not one of 'reference', 'null'"
                    )))
                }
            },
        )
    }
}

unsafe extern "C" fn engine_create<E: Exported>(
    model_path: *const c_char,
    options: *const c_char,
    out: *mut *mut sys::refit_engine,
) -> refit_status {
    guard(|| {
        if model_path.is_null() || out.is_null() {
            return Err(invalid("model_path or out"));
        }
        // SAFETY: NUL-terminated strings borrowed for the call.
        let path = unsafe { CStr::from_ptr(model_path) }
            .to_string_lossy()
            .into_owned();
        let opts = if options.is_null() {
            serde_json::Value::Null
        } else {
            // SAFETY: as above.
            let text = unsafe { CStr::from_ptr(options) }
                .to_string_lossy()
                .into_owned();
            serde_json::from_str(&text).map_err(|e| {
                (
                    sys::REFIT_INVALID_ARGUMENT,
                    format!("options_json '{text}': {e}"),
                )
            })?
        };
        let engine = E::create(Path::new(&path), &opts).map_err(err)?;
        let info = engine.info();
        let boxed = Box::new(ExportEngine {
            name: CString::new(info.name.clone()).unwrap_or_default(),
            version: CString::new(info.version.clone()).unwrap_or_default(),
            inputs: descs(engine.inputs()),
            outputs: descs(engine.outputs()),
            weights: descs(engine.weights()),
            engine,
        });
        // SAFETY: out is a valid out-pointer.
        unsafe { *out = Box::into_raw(boxed).cast() };
        Ok(())
    })
}

unsafe extern "C" fn engine_destroy(engine: *mut sys::refit_engine) {
    if !engine.is_null() {
        // SAFETY: created by engine_create and destroyed once.
        drop(unsafe { Box::from_raw(engine.cast::<ExportEngine>()) });
    }
}

/// # Safety
/// `engine` is NULL or came from engine_create and is live.
unsafe fn engine_ref<'a>(
    engine: *const sys::refit_engine,
) -> Result<&'a ExportEngine, (refit_status, String)> {
    // SAFETY: per the contract.
    unsafe { engine.cast::<ExportEngine>().as_ref() }.ok_or_else(|| invalid("the engine"))
}

/// The body of an entry that answers from the engine through one
/// out-pointer: the engine and `out` checked for NULL, then what `answer`
/// gives written to `out`; errors and panics become the status.
///
/// # Safety
/// `engine` is NULL or came from engine_create and is live; `out` is NULL
/// or valid for a write of `O`.
unsafe fn answer<O>(
    engine: *const sys::refit_engine,
    out: *mut O,
    answer: impl FnOnce(&ExportEngine) -> Result<O, (refit_status, String)>,
) -> refit_status {
    guard(|| {
        // SAFETY: a live engine from engine_create.
        let e = unsafe { engine_ref(engine) }?;
        if out.is_null() {
            return Err(invalid("out"));
        }
        let value = answer(e)?;
        // SAFETY: a valid out-pointer.
        unsafe { out.write(value) };
        Ok(())
    })
}

unsafe extern "C" fn engine_describe(
    engine: *const sys::refit_engine,
    out: *mut sys::refit_engine_info,
) -> refit_status {
    // SAFETY: the entry's contract; the strings live as long as the engine.
    unsafe {
        answer(engine, out, |e| {
            let c = e.engine.info().contract;
            Ok(sys::refit_engine_info {
                name: e.name.as_ptr(),
                version: e.version.as_ptr(),
                concurrency: i32::from(c.concurrency == Concurrency::Quiesced),
                failed_refit: i32::from(c.failed_refit == FailedRefit::MayBePartial),
                subset: i32::from(c.subset == Subset::RequiresAll),
                non_finite: i32::from(c.non_finite == NonFinite::Served),
                refit_enabled: i32::from(e.engine.info().refit_enabled),
            })
        })
    }
}

unsafe extern "C" fn engine_numerics(
    engine: *const sys::refit_engine,
    out: *mut sys::refit_numerics,
) -> refit_status {
    // SAFETY: the entry's contract.
    unsafe {
        answer(engine, out, |e| {
            let c = e.engine.info().contract;
            let precision = crate::engine::Precision::ALL
                .iter()
                .position(|p| *p == c.precision)
                .unwrap_or(0) as i32;
            Ok(sys::refit_numerics {
                precision,
                error_factor: c.error_factor,
            })
        })
    }
}

unsafe extern "C" fn engine_numerics_ext(
    engine: *const sys::refit_engine,
    out: *mut sys::refit_numerics_ext,
) -> refit_status {
    guard(|| {
        // SAFETY: a live engine from engine_create.
        let e = unsafe { engine_ref(engine) }?;
        if out.is_null() {
            return Err(invalid("out"));
        }
        let n = e.engine.info().contract.numerics;
        // SAFETY: a valid out-pointer; the caller's struct_size says how
        // many bytes it holds, and only fields within it are written.
        let size = unsafe { std::ptr::addr_of!((*out).struct_size).read() } as usize;
        if size < std::mem::size_of::<sys::refit_numerics_ext>() {
            return Err(invalid(
                "out (struct_size smaller than this plugin's refit_numerics_ext)",
            ));
        }
        // SAFETY: as above.
        unsafe {
            std::ptr::addr_of_mut!((*out).refit_bit_identical)
                .write(i32::from(n.refit_bit_identical));
            std::ptr::addr_of_mut!((*out).allowance_rel).write(n.allowance.map(|a| a.rel));
            std::ptr::addr_of_mut!((*out).allowance_abs).write(n.allowance.map(|a| a.abs));
        }
        Ok(())
    })
}

/// # Safety
/// As [`answer`].
unsafe fn count(
    engine: *const sys::refit_engine,
    out: *mut u32,
    pick: fn(&ExportEngine) -> &Vec<Desc>,
) -> refit_status {
    // SAFETY: per the contract.
    unsafe { answer(engine, out, |e| Ok(pick(e).len() as u32)) }
}

/// # Safety
/// As [`answer`]; the name and dims written live as long as the engine.
unsafe fn item(
    engine: *const sys::refit_engine,
    index: u32,
    out: *mut refit_tensor_desc,
    pick: fn(&ExportEngine) -> &Vec<Desc>,
) -> refit_status {
    // SAFETY: per the contract.
    unsafe {
        answer(engine, out, |e| {
            let d = pick(e).get(index as usize).ok_or_else(|| {
                (
                    sys::REFIT_INVALID_ARGUMENT,
                    format!("index {index} is out of range"),
                )
            })?;
            Ok(refit_tensor_desc {
                name: d.name.as_ptr(),
                dtype: d.dtype,
                rank: d.dims.len() as u32,
                dims: d.dims.as_ptr(),
            })
        })
    }
}

/// The `*_count` and indexed entries of one list of the engine's tensors
/// (inputs, outputs, weights), through [`count`] and [`item`].
macro_rules! tensor_list {
    ($count:ident, $item:ident, $field:ident) => {
        unsafe extern "C" fn $count(e: *const sys::refit_engine, out: *mut u32) -> refit_status {
            // SAFETY: the entry's contract.
            unsafe { count(e, out, |e| &e.$field) }
        }
        unsafe extern "C" fn $item(
            e: *const sys::refit_engine,
            i: u32,
            out: *mut refit_tensor_desc,
        ) -> refit_status {
            // SAFETY: the entry's contract.
            unsafe { item(e, i, out, |e| &e.$field) }
        }
    };
}
tensor_list!(input_count, input, inputs);
tensor_list!(output_count, output, outputs);
tensor_list!(weight_count, weight, weights);

/// The body of `context_create` and `refitter_create`: the object `make`
/// builds from the engine, boxed and handed out through `out` as the C
/// handle type `H`, which the matching `*_destroy` casts back to `T`.
///
/// # Safety
/// As [`answer`].
unsafe fn create<T, H>(
    engine: *mut sys::refit_engine,
    out: *mut *mut H,
    make: impl FnOnce(&ExportEngine) -> crate::Result<T>,
) -> refit_status {
    // SAFETY: per the contract.
    unsafe {
        answer(engine, out, |e| {
            Ok(Box::into_raw(Box::new(make(e).map_err(err)?)).cast())
        })
    }
}

unsafe extern "C" fn context_create(
    engine: *mut sys::refit_engine,
    out: *mut *mut sys::refit_context,
) -> refit_status {
    // SAFETY: the entry's contract.
    unsafe { create(engine, out, |e| e.engine.context().map(ExportContext::new)) }
}

unsafe extern "C" fn context_destroy(ctx: *mut sys::refit_context) {
    if !ctx.is_null() {
        // SAFETY: created by context_create and destroyed once.
        drop(unsafe { Box::from_raw(ctx.cast::<ExportContext>()) });
    }
}

unsafe extern "C" fn infer(
    ctx: *mut sys::refit_context,
    inputs: *const refit_tensor,
    n: u32,
    outputs: *mut *const refit_tensor,
    n_out: *mut u32,
) -> refit_status {
    guard(|| {
        // SAFETY: a live context from context_create, used by one thread.
        let c = unsafe { ctx.cast::<ExportContext>().as_mut() }
            .ok_or_else(|| invalid("the context"))?;
        if outputs.is_null() || n_out.is_null() || (n > 0 && inputs.is_null()) {
            return Err(invalid("inputs, outputs or n_outputs"));
        }
        let n = n as usize;
        c.inputs.truncate(n);
        c.inputs.resize_with(n, || Tensor::f32([0], Vec::new()));
        for (i, t) in c.inputs.iter_mut().enumerate() {
            // SAFETY: n tensors at inputs, each valid for the call.
            unsafe { c_tensor(inputs.add(i)) }?.refill(t).map_err(err)?;
        }
        c.ctx.infer_into(&c.inputs, &mut c.outputs).map_err(err)?;
        c.dims.clear();
        for t in &c.outputs {
            c.dims.extend(t.shape.iter().map(|&d| d as i64));
        }
        // The dims are complete: pointers into them stay valid.
        c.views.clear();
        let mut at = 0;
        for t in &c.outputs {
            let bytes = t.data.as_bytes();
            c.views.push(refit_tensor {
                dtype: sys::dtype_code(t.dtype()),
                rank: t.shape.len() as u32,
                dims: c.dims[at..].as_ptr(),
                data: bytes.as_ptr().cast(),
                byte_len: bytes.len() as u64,
            });
            at += t.shape.len();
        }
        // SAFETY: valid out-pointers; the views live in the context until
        // the next call.
        unsafe {
            *outputs = c.views.as_ptr();
            *n_out = c.views.len() as u32;
        }
        Ok(())
    })
}

unsafe extern "C" fn refitter_create(
    engine: *mut sys::refit_engine,
    out: *mut *mut sys::refit_refitter,
) -> refit_status {
    // SAFETY: the entry's contract.
    unsafe {
        create(engine, out, |e| {
            e.engine.refitter().map(ExportRefitter::new)
        })
    }
}

unsafe extern "C" fn refitter_destroy(r: *mut sys::refit_refitter) {
    if !r.is_null() {
        // SAFETY: created by refitter_create and destroyed once.
        drop(unsafe { Box::from_raw(r.cast::<ExportRefitter>()) });
    }
}

/// # Safety
/// `r` is NULL or a live refitter from refitter_create, used by one thread.
unsafe fn refitter_mut<'a>(
    r: *mut sys::refit_refitter,
) -> Result<&'a mut ExportRefitter, (refit_status, String)> {
    // SAFETY: per the contract.
    unsafe { r.cast::<ExportRefitter>().as_mut() }.ok_or_else(|| invalid("the refitter"))
}

unsafe extern "C" fn set_named_weights(
    r: *mut sys::refit_refitter,
    name: *const c_char,
    t: *const refit_tensor,
) -> refit_status {
    guard(|| {
        // SAFETY: a live refitter.
        let r = unsafe { refitter_mut(r) }?;
        if name.is_null() {
            return Err(invalid("the name"));
        }
        // SAFETY: a NUL-terminated string borrowed for the call.
        let name = unsafe { CStr::from_ptr(name) }
            .to_string_lossy()
            .into_owned();
        // SAFETY: a tensor valid for the call.
        let tensor = unsafe { c_tensor(t) }?;
        tensor.stage(r.refitter.as_mut(), &name).map_err(err)
    })
}

unsafe extern "C" fn missing(
    r: *mut sys::refit_refitter,
    names: *mut *const *const c_char,
    count: *mut u32,
) -> refit_status {
    guard(|| {
        // SAFETY: a live refitter.
        let r = unsafe { refitter_mut(r) }?;
        if names.is_null() || count.is_null() {
            return Err(invalid("names or count"));
        }
        r.missing = r
            .refitter
            .missing()
            .map_err(err)?
            .into_iter()
            .map(|n| CString::new(n).unwrap_or_default())
            .collect();
        r.missing_ptrs = r.missing.iter().map(|c| c.as_ptr()).collect();
        // SAFETY: valid out-pointers; the array lives until the next call.
        unsafe {
            *names = r.missing_ptrs.as_ptr();
            *count = r.missing_ptrs.len() as u32;
        }
        Ok(())
    })
}

unsafe extern "C" fn refit(r: *mut sys::refit_refitter) -> refit_status {
    guard(|| {
        // SAFETY: a live refitter.
        let r = unsafe { refitter_mut(r) }?;
        r.refitter.refit().map_err(err)
    })
}

unsafe extern "C" fn last_error() -> *const c_char {
    LAST_ERROR.with(|e| e.borrow().as_ptr())
}

/// The ABI table serving `E`'s engines through this module's exports.
pub const fn table<E: Exported>() -> refit_plugin_api {
    refit_plugin_api {
        v1: sys::refit_plugin_api_v1 {
            abi_version: sys::REFIT_PLUGIN_ABI_VERSION,
            struct_size: std::mem::size_of::<refit_plugin_api>() as u32,
            engine_create: Some(engine_create::<E>),
            engine_destroy: Some(engine_destroy),
            engine_describe: Some(engine_describe),
            engine_input_count: Some(input_count),
            engine_input: Some(input),
            engine_output_count: Some(output_count),
            engine_output: Some(output),
            engine_weight_count: Some(weight_count),
            engine_weight: Some(weight),
            context_create: Some(context_create),
            context_destroy: Some(context_destroy),
            infer: Some(infer),
            refitter_create: Some(refitter_create),
            refitter_destroy: Some(refitter_destroy),
            refitter_set_named_weights: Some(set_named_weights),
            refitter_missing: Some(missing),
            refitter_refit: Some(refit),
            last_error: Some(last_error),
        },
        engine_numerics: Some(engine_numerics),
        engine_numerics_ext: Some(engine_numerics_ext),
    }
}

/// The body of a plugin's entry point `refit_plugin_get_api`: `table` for
/// ABI version 1, else NULL.
pub fn entry(table: &'static refit_plugin_api, abi_version: u32) -> *const refit_plugin_api {
    if abi_version == sys::REFIT_PLUGIN_ABI_VERSION {
        table
    } else {
        std::ptr::null()
    }
}

static API: refit_plugin_api = table::<Reference>();

/// What the reference plugin's entry point returns: the table for ABI
/// version 1, else NULL. The library exports no symbol itself: the
/// `reference_plugin` example (a cdylib) defines `refit_plugin_get_api`
/// with this as its body, so a crate linking this library gets no C
/// symbol from it.
pub fn api(abi_version: u32) -> *const refit_plugin_api {
    entry(&API, abi_version)
}
