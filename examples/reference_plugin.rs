//! The reference plugin: the reference engine behind the C ABI of
//! `include/refit_plugin.h`, as a shared library
//! (`target/<profile>/examples/libreference_plugin.so`).
//!
//! ```sh
//! cargo build --release --example reference_plugin
//! refit-harness check --engine plugin:target/release/examples/libreference_plugin.so
//! ```

use refit_harness::ffi::{export, sys};

/// The plugin's one exported entry point.
#[no_mangle]
pub extern "C" fn refit_plugin_get_api(abi_version: u32) -> *const sys::refit_plugin_api {
    export::api(abi_version)
}
