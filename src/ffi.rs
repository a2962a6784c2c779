//! The plugin ABI (`include/refit_plugin.h`): the loader that puts any
//! vendor runtime's shim library under the harness, the one mapping of
//! status codes to errors, and the reference plugin (the reference engine
//! behind the ABI, built as the `reference_plugin` example), and the C
//! library's allocator settings the benches fix ([`malloc`]). With
//! [`crate::flight`], the only modules with `unsafe`; every block says why
//! it is sound.

pub mod export;
pub mod malloc;
pub mod plugin;
pub mod status;
pub mod sys;

pub use crate::error::LoadError;
pub use plugin::{Plugin, PluginEngine};
