//! # refit-harness
//!
//! Proves that an inference engine's *weight refit* (hot weight update:
//! replacing a loaded model's weights while it serves, without rebuilding
//! or reloading it) is correct, and keeps proving it in CI on the hardware
//! runners where the engine lives.
//!
//! Start with [`docs::contract`]: what an engine promises about refit and
//! which check proves each promise. To run the checks on your engine from
//! your own `cargo test`, see [`suite`] and [`conformance_suite!`].
//!
//! ## Contents
//! - [`engine`]: the wrapper every check talks to ([`Engine`], [`Context`],
//!   [`Refitter`]), the [`Contract`] an engine declares, [`EngineSpec`]
//!   (`reference`, `defect:NAME`, `plugin:PATH`), and the
//!   [`reference`](engine::reference) engine (pure Rust, the engine the
//!   harness tests itself against).
//! - [`check`]: the named scenarios, run against any engine, giving pass,
//!   fail (with evidence), skip, crashed or hung; the stress runs
//!   ([`check::stress`]); child-process isolation ([`check::isolate`]).
//! - [`oracle`]: the model evaluated in f64 with a rigorous error bound for
//!   the engine's declared precision, independently of every engine; the
//!   [`history`] checker, which judges a concurrent run's operations; the
//!   [`race`] driver, which records them. The checks, the benches and the
//!   demos share them.
//! - [`suite`]: the checks as one `#[test]` per scenario in a vendor's
//!   crate ([`conformance_suite!`]).
//! - [`docs`]: the contract and what each scenario proves.
//! - [`model`]: the ONNX subset the reference engine and the oracle run
//!   (Conv, Gemm, MatMul, BatchNormalization, the activations, Softmax,
//!   LayerNormalization, pooling and the shape ops: [`model::Op`]), as
//!   PyTorch's exporters write it.
//! - [`ffi`]: the plugin ABI (`include/refit_plugin.h`): the loader
//!   ([`ffi::plugin`]), its C types ([`ffi::sys`]), and the reference
//!   engine behind it ([`ffi::export`], built as the `reference_plugin`
//!   example).
//! - [`flight`]: the flight recorder, the step a scenario's child process
//!   is on and the engine calls in flight, for crash and hang reports (OS
//!   code: a signal handler that writes with `write(2)` alone).
//! - [`defects`]: the seeded-defect engines `selftest` must catch;
//!   [`selftest`] builds the catalogue matrix; [`faulty_plugins`] builds
//!   the faulty C plugins.
//! - [`bench`](mod@bench): the refit and inference sweep, its report and the
//!   regression gate; [`report`]: check reports (console, CSV, Markdown,
//!   JUnit XML).
//! - [`io`]: `.npy` inputs and outputs, `.safetensors` weight sets.
//! - [`fixtures`]: the seed model and the conv fixtures `gen-model` writes.
//! - [`demo`]: the vendor's single- and multi-thread refit demos.
//! - [`tensor`]: tensors and their descriptions.
//!
//! ## Features
//! - `cli` (default): the `refit-harness` command line (clap).
//! - `plots` (default): SVG plots in `bench` reports (plotters).
//!
//! A crate that runs the suite from its tests needs neither:
//! `refit-harness = { ..., default-features = false }`.
//!
//! ## Limitations
//! The reference engine and the oracle run the ONNX subset of [`model`]
//! only, in f32 (f16 models are widened), on the host; a model with any
//! other op is refused by both, and only the differential scenarios
//! (`warm_equals_cold`, `history_independence`) judge an engine on it.
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
pub mod history;
pub mod io;
pub mod model;
pub mod oracle;
pub mod race;
pub mod report;
pub mod selftest;
pub mod spec;
pub mod suite;
pub mod tensor;

pub use engine::{Context, Contract, Description, Engine, EngineInfo, Refitter};
pub use error::{Error, Result};
pub use spec::EngineSpec;
pub use tensor::{DType, Tensor, TensorData, TensorInfo, TensorView, Values};
