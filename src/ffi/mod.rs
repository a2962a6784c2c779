//! The plugin ABI (`include/refit_plugin.h`): the loader that puts any
//! vendor runtime's shim library under the harness, and the reference
//! plugin this crate exports from its cdylib. The only module with
//! `unsafe`; every block says why it is sound.

pub mod export;
pub mod plugin;
pub mod sys;

pub use plugin::{LoadError, Plugin, PluginEngine};
