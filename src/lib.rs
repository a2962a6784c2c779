//! # refit-harness
//!
//! Proves that an inference engine's *weight refit* (hot weight update:
//! replacing a loaded model's weights while it serves, without rebuilding
//! or reloading it) is correct, and keeps proving it in CI on the hardware
//! runners where the engine lives.
//!
//! ## Contents
//! - [`engine`]: the wrapper every check talks to ([`Engine`], [`Context`],
//!   [`Refitter`]), the [`Contract`] an engine declares, and the
//!   [`reference`](engine::reference) engine, the oracle.
//! - [`model`]: the ONNX subset (`Conv`, `Relu`) the reference engine runs,
//!   as PyTorch's exporters write it.
//! - [`io`]: `.npy` inputs and outputs, `.safetensors` weight sets.
//! - [`fixtures`]: the seed model and the conv fixtures `gen-model` writes.
//! - [`demo`]: the vendor's single- and multi-thread refit demos.
//!
//! ## Limitations
//! The reference engine runs `Conv` (1 to 3 spatial dimensions) and `Relu`
//! only, in f32 (f16 models are widened), on the host.
//!
//! ## Example
//! ```
//! use refit_harness::engine::{reference::ReferenceEngine, refit_all, BuildOptions, Engine};
//! use refit_harness::{fixtures, Tensor};
//!
//! let model = fixtures::seed_model().to_bytes();
//! let engine = ReferenceEngine::from_bytes(&model, "seed_conv.onnx".as_ref(), &BuildOptions::default())?;
//! let x = Tensor::full([1, 1, 3, 3], 1.0);
//! let mut ctx = engine.context()?;
//! assert_eq!(ctx.infer(&[x.clone()])?[0].as_f32(), Some(&[0.0][..]));
//! refit_all(&engine, [("weight", &Tensor::full([1, 1, 3, 3], 1.0))])?;
//! assert_eq!(ctx.infer(&[x])?[0].as_f32(), Some(&[9.0][..]));
//! # Ok::<(), refit_harness::Error>(())
//! ```

#![deny(unsafe_code)]
#![warn(missing_docs)]

pub mod bench;
pub mod check;
pub mod defects;
pub mod demo;
pub mod docs;
pub mod engine;
mod error;
pub mod faulty_plugins;
#[allow(unsafe_code)]
pub mod ffi;
pub mod fixtures;
#[allow(unsafe_code)]
pub mod flight;
pub mod io;
pub mod model;
pub mod report;
pub mod selftest;
pub mod suite;
pub mod tensor;

pub use engine::{Context, Contract, Engine, EngineInfo, Refitter};
pub use error::{Error, Result};
pub use tensor::{DType, Tensor, TensorData, TensorInfo};
