//! The C types of `include/refit_plugin.h`, mirrored field for field.

#![allow(non_camel_case_types, missing_docs)]

use std::ffi::{c_char, c_void};

pub type refit_status = i32;
pub const REFIT_OK: refit_status = 0;
pub const REFIT_ERROR: refit_status = 1;
pub const REFIT_INVALID_ARGUMENT: refit_status = 2;
pub const REFIT_UNKNOWN_WEIGHT: refit_status = 3;
pub const REFIT_SHAPE_MISMATCH: refit_status = 4;
pub const REFIT_DTYPE_MISMATCH: refit_status = 5;
pub const REFIT_NON_FINITE: refit_status = 6;
pub const REFIT_DISABLED: refit_status = 7;
pub const REFIT_MISSING_WEIGHTS: refit_status = 8;
pub const REFIT_UNSUPPORTED: refit_status = 9;

pub type refit_dtype = i32;
pub const REFIT_F32: refit_dtype = 1;
pub const REFIT_F16: refit_dtype = 2;
pub const REFIT_I32: refit_dtype = 3;

/// The ABI's code of `d`.
pub fn dtype_code(d: crate::tensor::DType) -> refit_dtype {
    use crate::tensor::DType;
    match d {
        DType::F32 => REFIT_F32,
        DType::F16 => REFIT_F16,
        DType::I32 => REFIT_I32,
    }
}

/// The element type of the ABI's code `d`, if it is one.
pub fn dtype_of(d: refit_dtype) -> Option<crate::tensor::DType> {
    use crate::tensor::DType;
    match d {
        REFIT_F32 => Some(DType::F32),
        REFIT_F16 => Some(DType::F16),
        REFIT_I32 => Some(DType::I32),
        _ => None,
    }
}

pub const REFIT_PLUGIN_ABI_VERSION: u32 = 1;
pub const ENTRY_POINT: &[u8] = b"refit_plugin_get_api\0";

pub type refit_engine = c_void;
pub type refit_context = c_void;
pub type refit_refitter = c_void;

#[repr(C)]
pub struct refit_engine_info {
    pub name: *const c_char,
    pub version: *const c_char,
    pub concurrency: i32,
    pub failed_refit: i32,
    pub subset: i32,
    pub non_finite: i32,
    pub refit_enabled: i32,
}

#[repr(C)]
pub struct refit_tensor_desc {
    pub name: *const c_char,
    pub dtype: refit_dtype,
    pub rank: u32,
    pub dims: *const i64,
}

#[repr(C)]
#[derive(Clone, Copy)]
pub struct refit_tensor {
    pub dtype: refit_dtype,
    pub rank: u32,
    pub dims: *const i64,
    pub data: *const c_void,
    pub byte_len: u64,
}

// One type per function slot of `include/refit_plugin.h`, used by both
// tables below and by the loader's checked table.
pub type EngineCreateFn =
    unsafe extern "C" fn(*const c_char, *const c_char, *mut *mut refit_engine) -> refit_status;
pub type EngineDestroyFn = unsafe extern "C" fn(*mut refit_engine);
pub type EngineDescribeFn =
    unsafe extern "C" fn(*const refit_engine, *mut refit_engine_info) -> refit_status;
pub type DescribeFn =
    unsafe extern "C" fn(*const refit_engine, u32, *mut refit_tensor_desc) -> refit_status;
pub type CountFn = unsafe extern "C" fn(*const refit_engine, *mut u32) -> refit_status;
pub type ContextCreateFn =
    unsafe extern "C" fn(*mut refit_engine, *mut *mut refit_context) -> refit_status;
pub type ContextDestroyFn = unsafe extern "C" fn(*mut refit_context);
pub type InferFn = unsafe extern "C" fn(
    *mut refit_context,
    *const refit_tensor,
    u32,
    *mut *const refit_tensor,
    *mut u32,
) -> refit_status;
pub type RefitterCreateFn =
    unsafe extern "C" fn(*mut refit_engine, *mut *mut refit_refitter) -> refit_status;
pub type RefitterDestroyFn = unsafe extern "C" fn(*mut refit_refitter);
pub type SetNamedWeightsFn =
    unsafe extern "C" fn(*mut refit_refitter, *const c_char, *const refit_tensor) -> refit_status;
pub type MissingFn =
    unsafe extern "C" fn(*mut refit_refitter, *mut *const *const c_char, *mut u32) -> refit_status;
pub type RefitFn = unsafe extern "C" fn(*mut refit_refitter) -> refit_status;
pub type LastErrorFn = unsafe extern "C" fn() -> *const c_char;
pub type NumericsFn =
    unsafe extern "C" fn(*const refit_engine, *mut refit_numerics) -> refit_status;
pub type NumericsExtFn =
    unsafe extern "C" fn(*const refit_engine, *mut refit_numerics_ext) -> refit_status;

#[repr(C)]
/// The version-1 layout: the mandatory slots only.
pub struct refit_plugin_api_v1 {
    pub abi_version: u32,
    pub struct_size: u32,
    pub engine_create: Option<EngineCreateFn>,
    pub engine_destroy: Option<EngineDestroyFn>,
    pub engine_describe: Option<EngineDescribeFn>,
    pub engine_input_count: Option<CountFn>,
    pub engine_input: Option<DescribeFn>,
    pub engine_output_count: Option<CountFn>,
    pub engine_output: Option<DescribeFn>,
    pub engine_weight_count: Option<CountFn>,
    pub engine_weight: Option<DescribeFn>,
    pub context_create: Option<ContextCreateFn>,
    pub context_destroy: Option<ContextDestroyFn>,
    pub infer: Option<InferFn>,
    pub refitter_create: Option<RefitterCreateFn>,
    pub refitter_destroy: Option<RefitterDestroyFn>,
    pub refitter_set_named_weights: Option<SetNamedWeightsFn>,
    pub refitter_missing: Option<MissingFn>,
    pub refitter_refit: Option<RefitFn>,
    pub last_error: Option<LastErrorFn>,
}

/// The whole table: the version-1 slots, then the optional ones appended
/// to it. `repr(C)` lays the nested table out exactly as the header's flat
/// struct (its size is a multiple of the pointer alignment).
#[repr(C)]
pub struct refit_plugin_api {
    pub v1: refit_plugin_api_v1,
    /// Optional, appended to version 1: absent (a table ending before it)
    /// or NULL means f32 with error factor 1.
    pub engine_numerics: Option<NumericsFn>,
    /// Optional, appended after `engine_numerics`: absent or NULL means
    /// every default of [`refit_numerics_ext`].
    pub engine_numerics_ext: Option<NumericsExtFn>,
}

/// The size of the version-1 table before any optional slot was appended:
/// the smallest table the loader accepts.
pub const V1_TABLE_SIZE: usize = std::mem::offset_of!(refit_plugin_api, engine_numerics);

pub const REFIT_PRECISION_F32: i32 = 0;
pub const REFIT_PRECISION_TF32: i32 = 1;
pub const REFIT_PRECISION_F16: i32 = 2;
pub const REFIT_PRECISION_BF16: i32 = 3;

#[repr(C)]
pub struct refit_numerics {
    pub precision: i32,
    pub error_factor: f64,
}

pub const REFIT_FAMILIES: usize = 3;

/// Sized by the caller (`struct_size`): fields are only ever appended.
#[repr(C)]
pub struct refit_numerics_ext {
    pub struct_size: u32,
    pub refit_bit_identical: i32,
    pub allowance_rel: [f64; REFIT_FAMILIES],
    pub allowance_abs: [f64; REFIT_FAMILIES],
}

// The header's layout: two 32-bit fields, then the two arrays of doubles.
const _: () = assert!(
    std::mem::size_of::<refit_numerics_ext>() == 8 + 2 * REFIT_FAMILIES * 8
        && std::mem::offset_of!(refit_numerics_ext, allowance_rel) == 8
);

/// The name of every function slot, in table order, for load errors.
pub const SLOTS: [&str; 18] = [
    "engine_create",
    "engine_destroy",
    "engine_describe",
    "engine_input_count",
    "engine_input",
    "engine_output_count",
    "engine_output",
    "engine_weight_count",
    "engine_weight",
    "context_create",
    "context_destroy",
    "infer",
    "refitter_create",
    "refitter_destroy",
    "refitter_set_named_weights",
    "refitter_missing",
    "refitter_refit",
    "last_error",
];

// The nested layout is the header's flat one: two u32, then one pointer
// per slot, the optional slot right after the last mandatory one.
const _: () = assert!(
    std::mem::size_of::<refit_plugin_api_v1>() == 8 + SLOTS.len() * std::mem::size_of::<usize>()
        && V1_TABLE_SIZE == std::mem::size_of::<refit_plugin_api_v1>()
);
