//! Loads a plugin library and wraps its C ABI as an [`Engine`].
//!
//! Loading goes step by step, each with its own typed error carrying the
//! path: open the library (bound eagerly, so a missing symbol fails now),
//! find the entry point, ask for ABI version 1, check the table's version
//! and size, and check every slot is non-NULL. Every engine, context and
//! refitter holds an `Arc` of the library, so it is unloaded only after
//! the last of them is destroyed.

use std::ffi::{c_char, CStr, CString};
use std::path::{Path, PathBuf};
use std::ptr;
use std::sync::Arc;

use super::sys::{self, refit_plugin_api, refit_status, refit_tensor, refit_tensor_desc};
use crate::engine::{
    BuildOptions, Concurrency, Context, Contract, Description, Engine, EngineInfo, FailedRefit,
    NonFinite, Numerics, Precision, Refitter, Subset,
};
use crate::error::LoadError;
use crate::tensor::{Tensor, TensorData, TensorInfo};
use crate::{Error, Result};

/// The table with every slot checked non-NULL.
struct Api {
    engine_create: sys::EngineCreateFn,
    engine_destroy: sys::EngineDestroyFn,
    engine_describe: sys::EngineDescribeFn,
    engine_input_count: sys::CountFn,
    engine_input: sys::DescribeFn,
    engine_output_count: sys::CountFn,
    engine_output: sys::DescribeFn,
    engine_weight_count: sys::CountFn,
    engine_weight: sys::DescribeFn,
    context_create: sys::ContextCreateFn,
    context_destroy: sys::ContextDestroyFn,
    infer: sys::InferFn,
    refitter_create: sys::RefitterCreateFn,
    refitter_destroy: sys::RefitterDestroyFn,
    refitter_set_named_weights: sys::SetNamedWeightsFn,
    refitter_missing: sys::MissingFn,
    refitter_refit: sys::RefitFn,
    last_error: sys::LastErrorFn,
    engine_numerics: Option<sys::NumericsFn>,
    engine_numerics_ext: Option<sys::NumericsExtFn>,
}

/// A loaded plugin library.
pub struct Plugin {
    path: PathBuf,
    api: Api,
    // Dropped last: the functions above point into it (none for the
    // table linked into this program, see `Plugin::linked`).
    _lib: Option<libloading::Library>,
}

impl Plugin {
    /// Loads the library at `path` and checks its ABI table.
    ///
    /// # Errors
    /// [`Error::PluginLoad`] with the step that failed.
    pub fn load(path: &Path) -> Result<Arc<Self>> {
        // A relative path names a file under the working directory (dlopen
        // would otherwise search the system's library paths for a bare name).
        let absolute;
        let path = if path.is_relative() {
            absolute = std::env::current_dir()
                .map(|d| d.join(path))
                .unwrap_or_else(|_| path.to_path_buf());
            absolute.as_path()
        } else {
            path
        };
        let load_err = |e: LoadError| Error::PluginLoad(Box::new(e));
        // SAFETY: loading a library runs its initialisers; the user names
        // the library to test, which is the point of the harness. RTLD_NOW
        // binds every symbol now, so a missing one fails here.
        let lib = unsafe {
            libloading::os::unix::Library::open(
                Some(path),
                libloading::os::unix::RTLD_NOW | libloading::os::unix::RTLD_LOCAL,
            )
        }
        .map_err(|e| {
            load_err(LoadError::Open {
                path: path.to_path_buf(),
                message: e.to_string(),
            })
        })?;
        let lib: libloading::Library = lib.into();
        type GetApi = unsafe extern "C" fn(u32) -> *const refit_plugin_api;
        // SAFETY: the header declares the entry point with this signature.
        let get: libloading::Symbol<GetApi> =
            unsafe { lib.get(sys::ENTRY_POINT) }.map_err(|e| {
                load_err(LoadError::MissingEntryPoint {
                    path: path.to_path_buf(),
                    message: e.to_string(),
                })
            })?;
        // SAFETY: calling the entry point as the header specifies.
        let table = unsafe { get(sys::REFIT_PLUGIN_ABI_VERSION) };
        // SAFETY: the header makes the table live as long as the library,
        // which the plugin keeps.
        unsafe { Self::from_table(path, table, Some(lib)) }
    }

    /// The reference plugin's table linked into this program
    /// ([`super::export::api`]), called through the same loader as a
    /// library: what `bench` measures the ABI's own cost with (serving the
    /// null engine), with no library to build or open. `name` stands for
    /// the path in errors.
    pub fn linked(name: &str) -> Result<Arc<Self>> {
        let table = super::export::api(sys::REFIT_PLUGIN_ABI_VERSION);
        // SAFETY: a static table with the version-1 layout and more.
        unsafe { Self::from_table(Path::new(name), table, None) }
    }

    /// Checks a table and takes its slots.
    ///
    /// # Safety
    /// `table` is NULL or points to a table (at least its two leading u32
    /// fields, and as many bytes as its `struct_size` says) that lives as
    /// long as `lib`, or forever where `lib` is `None`.
    unsafe fn from_table(
        path: &Path,
        table: *const refit_plugin_api,
        lib: Option<libloading::Library>,
    ) -> Result<Arc<Self>> {
        let load_err = |e: LoadError| Error::PluginLoad(Box::new(e));
        if table.is_null() {
            return Err(load_err(LoadError::UnsupportedVersion {
                path: path.to_path_buf(),
                requested: sys::REFIT_PLUGIN_ABI_VERSION,
            }));
        }
        // SAFETY: non-NULL, and the header makes the table live as long as
        // the library. The two leading u32 fields are read first, so a
        // smaller table is refused before its slots are read.
        let (version, size) = unsafe {
            (
                ptr::addr_of!((*table).v1.abi_version).read(),
                ptr::addr_of!((*table).v1.struct_size).read(),
            )
        };
        let min = sys::V1_TABLE_SIZE;
        if version != sys::REFIT_PLUGIN_ABI_VERSION || (size as usize) < min {
            return Err(load_err(LoadError::BadTable {
                path: path.to_path_buf(),
                expected: sys::REFIT_PLUGIN_ABI_VERSION,
                found: version,
                size,
                min,
            }));
        }
        // SAFETY: the table is at least as large as the version-1 layout;
        // each slot is read through a raw pointer, and an optional slot only
        // where the table's declared size covers it.
        let t = unsafe { ptr::addr_of!((*table).v1).read() };
        let covers = |offset: usize| size as usize >= offset + std::mem::size_of::<usize>();
        let engine_numerics = if covers(std::mem::offset_of!(refit_plugin_api, engine_numerics)) {
            // SAFETY: as above; the declared size covers this slot.
            unsafe { ptr::addr_of!((*table).engine_numerics).read() }
        } else {
            None
        };
        let engine_numerics_ext =
            if covers(std::mem::offset_of!(refit_plugin_api, engine_numerics_ext)) {
                // SAFETY: as above; the declared size covers this slot.
                unsafe { ptr::addr_of!((*table).engine_numerics_ext).read() }
            } else {
                None
            };
        let null = |i: usize| {
            load_err(LoadError::NullSlot {
                path: path.to_path_buf(),
                slot: sys::SLOTS[i],
            })
        };
        let api = Api {
            engine_create: t.engine_create.ok_or_else(|| null(0))?,
            engine_destroy: t.engine_destroy.ok_or_else(|| null(1))?,
            engine_describe: t.engine_describe.ok_or_else(|| null(2))?,
            engine_input_count: t.engine_input_count.ok_or_else(|| null(3))?,
            engine_input: t.engine_input.ok_or_else(|| null(4))?,
            engine_output_count: t.engine_output_count.ok_or_else(|| null(5))?,
            engine_output: t.engine_output.ok_or_else(|| null(6))?,
            engine_weight_count: t.engine_weight_count.ok_or_else(|| null(7))?,
            engine_weight: t.engine_weight.ok_or_else(|| null(8))?,
            context_create: t.context_create.ok_or_else(|| null(9))?,
            context_destroy: t.context_destroy.ok_or_else(|| null(10))?,
            infer: t.infer.ok_or_else(|| null(11))?,
            refitter_create: t.refitter_create.ok_or_else(|| null(12))?,
            refitter_destroy: t.refitter_destroy.ok_or_else(|| null(13))?,
            refitter_set_named_weights: t.refitter_set_named_weights.ok_or_else(|| null(14))?,
            refitter_missing: t.refitter_missing.ok_or_else(|| null(15))?,
            refitter_refit: t.refitter_refit.ok_or_else(|| null(16))?,
            last_error: t.last_error.ok_or_else(|| null(17))?,
            engine_numerics,
            engine_numerics_ext,
        };
        Ok(Arc::new(Plugin {
            path: path.to_path_buf(),
            api,
            _lib: lib,
        }))
    }

    /// Turns a status into a result, with the plugin's own message.
    fn check(&self, call: &'static str, status: refit_status) -> Result<()> {
        if status == sys::REFIT_OK {
            return Ok(());
        }
        // SAFETY: last_error never returns NULL by contract, but a NULL is
        // handled; the string is valid until the next call on this thread.
        let message = unsafe {
            let p = (self.api.last_error)();
            if p.is_null() {
                String::new()
            } else {
                CStr::from_ptr(p).to_string_lossy().into_owned()
            }
        };
        let message = if message.is_empty() {
            "failed without a message (a plugin must set last_error on failure)".into()
        } else {
            message
        };
        Err(super::status::error_of(status, &self.path, call, message))
    }

    /// Builds an engine for `model`.
    ///
    /// # Errors
    /// The plugin's error, or a malformed description.
    pub fn open(self: &Arc<Self>, model: &Path, options: &BuildOptions) -> Result<PluginEngine> {
        let bad_arg = |what: &str| Error::Plugin {
            path: self.path.clone(),
            call: "engine_create",
            status: sys::REFIT_INVALID_ARGUMENT,
            message: format!("{what} contains a NUL byte"),
        };
        let model_c = CString::new(model.as_os_str().as_encoded_bytes())
            .map_err(|_| bad_arg("the model path"))?;
        let options_c =
            CString::new(options.options_json()?).map_err(|_| bad_arg("the options"))?;
        let mut handle = ptr::null_mut();
        let _in_flight = crate::flight::call("engine_create");
        // SAFETY: valid NUL-terminated strings borrowed for the call, and an
        // out-pointer to a local.
        self.check("engine_create", unsafe {
            (self.api.engine_create)(model_c.as_ptr(), options_c.as_ptr(), &mut handle)
        })?;
        if handle.is_null() {
            return Err(Error::Plugin {
                path: self.path.clone(),
                call: "engine_create",
                status: sys::REFIT_OK,
                message: "returned success and a NULL engine".into(),
            });
        }
        let engine = Owned {
            plugin: Arc::clone(self),
            handle,
        };
        let info = engine.describe()?;
        let inputs = engine.list(
            "engine_input",
            self.api.engine_input_count,
            self.api.engine_input,
        )?;
        let outputs = engine.list(
            "engine_output",
            self.api.engine_output_count,
            self.api.engine_output,
        )?;
        let weights = engine.list(
            "engine_weight",
            self.api.engine_weight_count,
            self.api.engine_weight,
        )?;
        Ok(PluginEngine {
            inner: Arc::new(Inner {
                engine,
                description: Description {
                    info,
                    inputs,
                    outputs,
                    weights,
                },
            }),
        })
    }
}

/// An engine handle; destroyed on drop, after every context and refitter
/// (they hold an `Arc` of it).
struct Owned {
    plugin: Arc<Plugin>,
    handle: *mut sys::refit_engine,
}

// SAFETY: the header makes the describe/list/create functions of an engine
// callable from any thread concurrently; destroy runs once, from Drop.
unsafe impl Send for Owned {}
// SAFETY: as above.
unsafe impl Sync for Owned {}

impl Drop for Owned {
    fn drop(&mut self) {
        let _in_flight = crate::flight::call("engine_destroy");
        // SAFETY: the handle came from engine_create and is destroyed once.
        unsafe { (self.plugin.api.engine_destroy)(self.handle) }
    }
}

/// Copies a string the plugin owns.
///
/// # Safety
/// `p` is NULL or a NUL-terminated string valid for the call.
unsafe fn owned_str(p: *const c_char) -> String {
    if p.is_null() {
        return String::new();
    }
    // SAFETY: per this function's contract.
    unsafe { CStr::from_ptr(p) }.to_string_lossy().into_owned()
}

impl Owned {
    fn malformed(&self, call: &'static str, what: String) -> Error {
        Error::Plugin {
            path: self.plugin.path.clone(),
            call,
            status: sys::REFIT_OK,
            message: what,
        }
    }

    fn describe(&self) -> Result<EngineInfo> {
        let mut info = sys::refit_engine_info {
            name: ptr::null(),
            version: ptr::null(),
            concurrency: 0,
            failed_refit: 0,
            subset: 0,
            non_finite: 0,
            refit_enabled: 0,
        };
        let _in_flight = crate::flight::call("engine_describe");
        // SAFETY: a live engine handle and an out-pointer to a local.
        self.plugin.check("engine_describe", unsafe {
            (self.plugin.api.engine_describe)(self.handle, &mut info)
        })?;
        let pick = |v: i32, field: &str| -> Result<bool> {
            match v {
                0 => Ok(false),
                1 => Ok(true),
                other => Err(self.malformed(
                    "engine_describe",
                    format!("{field} is {other}; expected 0 or 1"),
                )),
            }
        };
        let (precision, error_factor) = self.numerics()?;
        let contract = Contract {
            concurrency: if pick(info.concurrency, "concurrency")? {
                Concurrency::Quiesced
            } else {
                Concurrency::Atomic
            },
            failed_refit: if pick(info.failed_refit, "failed_refit")? {
                FailedRefit::MayBePartial
            } else {
                FailedRefit::RollsBack
            },
            subset: if pick(info.subset, "subset")? {
                Subset::RequiresAll
            } else {
                Subset::Accepted
            },
            non_finite: if pick(info.non_finite, "non_finite")? {
                NonFinite::Served
            } else {
                NonFinite::Rejected
            },
            precision,
            error_factor,
            numerics: self.numerics_ext()?,
        };
        Ok(EngineInfo {
            // SAFETY: the strings live as long as the engine.
            name: format!("plugin:{}", unsafe { owned_str(info.name) }),
            // SAFETY: as above.
            version: unsafe { owned_str(info.version) },
            contract,
            refit_enabled: pick(info.refit_enabled, "refit_enabled")?,
        })
    }

    /// The engine's allowances and refit identity: the defaults where the
    /// plugin has no `engine_numerics_ext`.
    fn numerics_ext(&self) -> Result<Numerics> {
        let Some(f) = self.plugin.api.engine_numerics_ext else {
            return Ok(Numerics::DEFAULT);
        };
        let d = Numerics::DEFAULT;
        let mut out = sys::refit_numerics_ext {
            struct_size: std::mem::size_of::<sys::refit_numerics_ext>() as u32,
            refit_bit_identical: i32::from(d.refit_bit_identical),
            allowance_rel: d.allowance.map(|a| a.rel),
            allowance_abs: d.allowance.map(|a| a.abs),
        };
        let _in_flight = crate::flight::call("engine_numerics_ext");
        // SAFETY: a live engine handle and an out-pointer to a local whose
        // struct_size says how much the plugin may write.
        self.plugin
            .check("engine_numerics_ext", unsafe { f(self.handle, &mut out) })?;
        let mut n = d;
        n.refit_bit_identical = match out.refit_bit_identical {
            0 => false,
            1 => true,
            other => {
                return Err(self.malformed(
                    "engine_numerics_ext",
                    format!("refit_bit_identical is {other}; expected 0 or 1"),
                ))
            }
        };
        for (k, family) in crate::engine::Family::ALL.iter().enumerate() {
            let (rel, abs) = (out.allowance_rel[k], out.allowance_abs[k]);
            if !(rel.is_finite() && rel >= 0.0 && abs.is_finite() && abs >= 0.0) {
                return Err(self.malformed(
                    "engine_numerics_ext",
                    format!(
                        "the {family:?} allowance is {rel} relative, {abs} absolute; expected finite numbers >= 0"
                    ),
                ));
            }
            n.allowance[k] = crate::engine::Allowance { rel, abs };
        }
        Ok(n)
    }

    /// The engine's precision and error factor: f32 and 1 where the plugin
    /// has no `engine_numerics`.
    fn numerics(&self) -> Result<(Precision, f64)> {
        let Some(f) = self.plugin.api.engine_numerics else {
            return Ok((Precision::F32, 1.0));
        };
        let mut out = sys::refit_numerics {
            precision: sys::REFIT_PRECISION_F32,
            error_factor: 1.0,
        };
        let _in_flight = crate::flight::call("engine_numerics");
        // SAFETY: a live engine handle and an out-pointer to a local.
        self.plugin
            .check("engine_numerics", unsafe { f(self.handle, &mut out) })?;
        let precision = usize::try_from(out.precision)
            .ok()
            .and_then(|i| Precision::ALL.get(i).copied())
            .ok_or_else(|| {
                self.malformed(
                    "engine_numerics",
                    format!(
                        "precision is {}; expected 0 (f32), 1 (tf32), 2 (f16) or 3 (bf16)",
                        out.precision
                    ),
                )
            })?;
        if !(out.error_factor.is_finite() && out.error_factor >= 1.0) {
            return Err(self.malformed(
                "engine_numerics",
                format!(
                    "error_factor is {}; expected a finite number >= 1",
                    out.error_factor
                ),
            ));
        }
        Ok((precision, out.error_factor))
    }

    fn list(
        &self,
        call: &'static str,
        count: sys::CountFn,
        item: sys::DescribeFn,
    ) -> Result<Vec<TensorInfo>> {
        let mut n = 0u32;
        let _in_flight = crate::flight::call(call);
        // SAFETY: a live engine handle and an out-pointer to a local.
        self.plugin
            .check(call, unsafe { count(self.handle, &mut n) })?;
        (0..n)
            .map(|i| {
                let mut d = refit_tensor_desc {
                    name: ptr::null(),
                    dtype: 0,
                    rank: 0,
                    dims: ptr::null(),
                };
                // SAFETY: as above; the index is below the count.
                self.plugin
                    .check(call, unsafe { item(self.handle, i, &mut d) })?;
                let dtype = sys::dtype_of(d.dtype).ok_or_else(|| {
                    self.malformed(call, format!("item {i} has dtype code {}", d.dtype))
                })?;
                if d.rank > 0 && d.dims.is_null() {
                    return Err(
                        self.malformed(call, format!("item {i} has rank {} and NULL dims", d.rank))
                    );
                }
                // SAFETY: rank entries at dims, valid for the engine's life.
                let dims = if d.rank == 0 {
                    &[][..]
                } else {
                    unsafe { std::slice::from_raw_parts(d.dims, d.rank as usize) }
                };
                Ok(TensorInfo {
                    // SAFETY: the name lives as long as the engine.
                    name: unsafe { owned_str(d.name) },
                    dtype,
                    shape: dims
                        .iter()
                        .map(|&x| (x > 0).then_some(x as usize))
                        .collect(),
                })
            })
            .collect()
    }
}

struct Inner {
    engine: Owned,
    description: Description,
}

/// An engine served by a plugin library.
pub struct PluginEngine {
    inner: Arc<Inner>,
}

impl Engine for PluginEngine {
    fn description(&self) -> &Description {
        &self.inner.description
    }
    fn context(&self) -> Result<Box<dyn Context>> {
        let e = &self.inner.engine;
        let mut handle = ptr::null_mut();
        let _in_flight = crate::flight::call("context_create");
        // SAFETY: a live engine handle and an out-pointer to a local.
        e.plugin.check("context_create", unsafe {
            (e.plugin.api.context_create)(e.handle, &mut handle)
        })?;
        if handle.is_null() {
            return Err(e.malformed(
                "context_create",
                "returned success and a NULL context".into(),
            ));
        }
        Ok(Box::new(PluginContext {
            inner: Arc::clone(&self.inner),
            handle,
            dims: Vec::new(),
            c_inputs: Vec::new(),
        }))
    }
    fn refitter(&self) -> Result<Box<dyn Refitter>> {
        let e = &self.inner.engine;
        let mut handle = ptr::null_mut();
        let _in_flight = crate::flight::call("refitter_create");
        // SAFETY: a live engine handle and an out-pointer to a local.
        e.plugin.check("refitter_create", unsafe {
            (e.plugin.api.refitter_create)(e.handle, &mut handle)
        })?;
        if handle.is_null() {
            return Err(e.malformed(
                "refitter_create",
                "returned success and a NULL refitter".into(),
            ));
        }
        Ok(Box::new(PluginRefitter {
            inner: Arc::clone(&self.inner),
            handle,
        }))
    }
}

/// The alignment the header guarantees for tensor data the harness passes
/// (what device DMA engines need).
pub(crate) const DATA_ALIGN: usize = 64;

/// One aligned block of [`DATA_ALIGN`] bytes.
#[derive(Clone, Copy)]
#[repr(C, align(64))]
struct Block([u8; DATA_ALIGN]);

/// Tensor bytes at a [`DATA_ALIGN`]-aligned address: borrowed when they
/// already are, else copied into aligned blocks.
enum AlignedBytes<'a> {
    Borrowed(&'a [u8]),
    Copied(Vec<Block>, usize),
}

impl<'a> AlignedBytes<'a> {
    fn new(bytes: &'a [u8]) -> Self {
        if (bytes.as_ptr() as usize) % DATA_ALIGN == 0 {
            return AlignedBytes::Borrowed(bytes);
        }
        let mut blocks = vec![Block([0; DATA_ALIGN]); bytes.len().div_ceil(DATA_ALIGN)];
        for (block, chunk) in blocks.iter_mut().zip(bytes.chunks(DATA_ALIGN)) {
            block.0[..chunk.len()].copy_from_slice(chunk);
        }
        AlignedBytes::Copied(blocks, bytes.len())
    }

    fn bytes(&self) -> (*const u8, usize) {
        match self {
            AlignedBytes::Borrowed(b) => (b.as_ptr(), b.len()),
            AlignedBytes::Copied(blocks, len) => (blocks.as_ptr().cast(), *len),
        }
    }
}

/// A borrowed C view of a tensor whose data is `data` (its bytes,
/// aligned); `dims` and `data` must outlive the view.
fn c_tensor(t: &Tensor, dims: &[i64], data: &AlignedBytes<'_>) -> refit_tensor {
    let (ptr, len) = data.bytes();
    refit_tensor {
        dtype: sys::dtype_code(t.dtype()),
        rank: dims.len() as u32,
        dims: dims.as_ptr(),
        data: ptr.cast(),
        byte_len: len as u64,
    }
}

fn c_dims(t: &Tensor) -> Vec<i64> {
    t.shape.iter().map(|&d| d as i64).collect()
}

struct PluginContext {
    inner: Arc<Inner>,
    handle: *mut sys::refit_context,
    /// Every input's dims, one after another, reused from call to call.
    dims: Vec<i64>,
    /// The input views, reused from call to call.
    c_inputs: Vec<refit_tensor>,
}

// SAFETY: a context is used by one thread at a time (it is `&mut` in
// `infer`), which is all the header asks.
unsafe impl Send for PluginContext {}

impl Drop for PluginContext {
    fn drop(&mut self) {
        let _in_flight = crate::flight::call("context_destroy");
        // SAFETY: the handle came from context_create and is destroyed once,
        // before the engine (this holds an Arc of it).
        unsafe { (self.inner.engine.plugin.api.context_destroy)(self.handle) }
    }
}

impl Context for PluginContext {
    fn infer(&mut self, inputs: &[Tensor]) -> Result<Vec<Tensor>> {
        let mut outputs = Vec::new();
        self.infer_into(inputs, &mut outputs)?;
        Ok(outputs)
    }

    fn infer_into(&mut self, inputs: &[Tensor], outputs: &mut Vec<Tensor>) -> Result<()> {
        let e = &self.inner.engine;
        self.dims.clear();
        for t in inputs {
            self.dims.extend(t.shape.iter().map(|&d| d as i64));
        }
        // Tensor values are aligned already (`tensor::Aligned`): copies are
        // made only for ones that are not (empty ones), and so cost nothing.
        let mut copies = Vec::new();
        self.c_inputs.clear();
        let mut at = 0;
        for t in inputs {
            let data = match AlignedBytes::new(t.data.as_bytes()) {
                AlignedBytes::Borrowed(b) => (b.as_ptr(), b.len()),
                copy => {
                    // The copy's heap buffer does not move when `copies` grows.
                    let bytes = copy.bytes();
                    copies.push(copy);
                    bytes
                }
            };
            let rank = t.shape.len();
            self.c_inputs.push(refit_tensor {
                dtype: sys::dtype_code(t.dtype()),
                rank: rank as u32,
                dims: self.dims[at..].as_ptr(),
                data: data.0.cast(),
                byte_len: data.1 as u64,
            });
            at += rank;
        }
        let c_inputs = &self.c_inputs;
        let mut out: *const refit_tensor = ptr::null();
        let mut n = 0u32;
        let _in_flight = crate::flight::call("infer");
        // SAFETY: the input views borrow live tensors and dims for the call;
        // out-pointers to locals.
        e.plugin.check("infer", unsafe {
            (e.plugin.api.infer)(
                self.handle,
                c_inputs.as_ptr(),
                c_inputs.len() as u32,
                &mut out,
                &mut n,
            )
        })?;
        if n > 0 && out.is_null() {
            return Err(e.malformed("infer", format!("returned {n} outputs at NULL")));
        }
        // SAFETY: n tensors at out, owned by the context until the next call.
        let outs = if n == 0 {
            &[][..]
        } else {
            unsafe { std::slice::from_raw_parts(out, n as usize) }
        };
        outputs.truncate(outs.len());
        for (i, t) in outs.iter().enumerate() {
            let dtype = sys::dtype_of(t.dtype).ok_or_else(|| {
                e.malformed("infer", format!("output {i} has dtype code {}", t.dtype))
            })?;
            if t.rank > 0 && t.dims.is_null() {
                return Err(e.malformed("infer", format!("output {i} has NULL dims")));
            }
            // SAFETY: rank entries at dims.
            let dims = if t.rank == 0 {
                &[][..]
            } else {
                unsafe { std::slice::from_raw_parts(t.dims, t.rank as usize) }
            };
            let numel = dims
                .iter()
                .try_fold(1usize, |a, &d| a.checked_mul(d.max(0) as usize))
                .unwrap_or(usize::MAX);
            let expected = numel.saturating_mul(dtype.size());
            if t.byte_len != expected as u64 || (expected > 0 && t.data.is_null()) {
                let shape: Vec<i64> = dims.to_vec();
                return Err(e.malformed("infer", format!("output {i} of shape {shape:?} ({dtype}) has {} bytes at {:p}; expected {expected}", t.byte_len, t.data)));
            }
            // SAFETY: byte_len bytes at data, checked against the shape.
            let bytes = if expected == 0 {
                &[][..]
            } else {
                unsafe { std::slice::from_raw_parts(t.data.cast::<u8>(), expected) }
            };
            let shape = dims.iter().map(|&d| d.max(0) as usize);
            match outputs.get_mut(i) {
                Some(out) => {
                    out.data.assign_le_bytes(dtype, bytes).ok_or_else(|| {
                        e.malformed("infer", format!("output {i} is not whole values"))
                    })?;
                    out.shape.clear();
                    out.shape.extend(shape);
                }
                None => {
                    let data = TensorData::from_le_bytes(dtype, bytes).ok_or_else(|| {
                        e.malformed("infer", format!("output {i} is not whole values"))
                    })?;
                    outputs.push(Tensor {
                        shape: shape.collect(),
                        data,
                    });
                }
            }
        }
        Ok(())
    }
}

struct PluginRefitter {
    inner: Arc<Inner>,
    handle: *mut sys::refit_refitter,
}

// SAFETY: a refitter is used by one thread at a time (`&mut` methods).
unsafe impl Send for PluginRefitter {}

impl Drop for PluginRefitter {
    fn drop(&mut self) {
        let _in_flight = crate::flight::call("refitter_destroy");
        // SAFETY: the handle came from refitter_create and is destroyed once,
        // before the engine.
        unsafe { (self.inner.engine.plugin.api.refitter_destroy)(self.handle) }
    }
}

impl Refitter for PluginRefitter {
    fn set_named_weights(&mut self, name: &str, weights: &Tensor) -> Result<()> {
        let e = &self.inner.engine;
        let name_c = CString::new(name).map_err(|_| Error::UnknownWeight {
            name: name.to_string(),
            known: "(a weight name cannot contain a NUL byte)".into(),
        })?;
        let dims = c_dims(weights);
        let data = AlignedBytes::new(weights.data.as_bytes());
        let t = c_tensor(weights, &dims, &data);
        let _in_flight = crate::flight::call("refitter_set_named_weights");
        // SAFETY: the name and tensor view borrow live data for the call.
        e.plugin.check("refitter_set_named_weights", unsafe {
            (e.plugin.api.refitter_set_named_weights)(self.handle, name_c.as_ptr(), &t)
        })
    }

    fn missing(&self) -> Result<Vec<String>> {
        let e = &self.inner.engine;
        let mut names: *const *const c_char = ptr::null();
        let mut n = 0u32;
        let _in_flight = crate::flight::call("refitter_missing");
        // SAFETY: out-pointers to locals; a live refitter handle.
        let status = unsafe { (e.plugin.api.refitter_missing)(self.handle, &mut names, &mut n) };
        e.plugin.check("refitter_missing", status)?;
        if n > 0 && names.is_null() {
            return Err(e.malformed("refitter_missing", format!("returned {n} names at NULL")));
        }
        // SAFETY: n strings at names, valid until the next call.
        let list = if n == 0 {
            &[][..]
        } else {
            unsafe { std::slice::from_raw_parts(names, n as usize) }
        };
        // SAFETY: each is a NUL-terminated string owned by the refitter.
        Ok(list.iter().map(|&p| unsafe { owned_str(p) }).collect())
    }

    fn refit(&mut self) -> Result<()> {
        let e = &self.inner.engine;
        let _in_flight = crate::flight::call("refitter_refit");
        // SAFETY: a live refitter handle.
        e.plugin.check("refitter_refit", unsafe {
            (e.plugin.api.refitter_refit)(self.handle)
        })
    }
}
