//! The crate's error type.

use std::path::PathBuf;

use crate::tensor::DType;

/// What went wrong, with the context needed to act on it: the file, node or
/// tensor involved, and what was expected against what was found.
///
/// Each message is self-contained (it already includes any underlying I/O
/// error), so printing it with `{}` says everything.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// A file could not be read or written.
    #[error("cannot {op} {path}: {error}")]
    Io {
        /// What was being done (`read`, `write`, `create`).
        op: &'static str,
        /// The file.
        path: PathBuf,
        /// The underlying error, part of this error's message.
        error: std::io::Error,
    },

    /// A model file is not a valid protobuf-encoded ONNX model.
    #[error("{path}: not a valid ONNX model: {reason}")]
    MalformedModel {
        /// The model file (`<memory>` for models built in memory).
        path: PathBuf,
        /// What is wrong.
        reason: String,
    },

    /// A model uses something the reference engine does not implement, or
    /// uses a supported op in an invalid way.
    #[error("{path}: node '{node}' ({op}): {reason}")]
    InvalidNode {
        /// The model file.
        path: PathBuf,
        /// The node's name (or its index when it has none).
        node: String,
        /// The node's op type.
        op: String,
        /// What is wrong.
        reason: String,
    },

    /// A model's graph is malformed outside any single node (an initializer,
    /// an input, a value that nothing produces).
    #[error("{path}: {reason}")]
    InvalidGraph {
        /// The model file.
        path: PathBuf,
        /// What is wrong.
        reason: String,
    },

    /// A weight name that the engine does not have.
    #[error("unknown weight '{name}': the model's refittable weights are {known}")]
    UnknownWeight {
        /// The name given.
        name: String,
        /// The names the engine knows, listed for the message.
        known: String,
    },

    /// A tensor's shape differs from the one expected.
    #[error("{what}: expected shape {expected:?} ({} values), found {found:?} ({} values)", .expected.iter().product::<usize>(), .found.iter().product::<usize>())]
    ShapeMismatch {
        /// The tensor (`weight 'conv.weight'`, `input 'x'`).
        what: String,
        /// The shape expected.
        expected: Vec<usize>,
        /// The shape found.
        found: Vec<usize>,
    },

    /// A tensor's dtype differs from the one expected.
    #[error("{what}: expected dtype {expected}, found {found}")]
    DTypeMismatch {
        /// The tensor.
        what: String,
        /// The dtype expected.
        expected: DType,
        /// The dtype found.
        found: String,
    },

    /// A tensor carries a number of values that does not match its own shape.
    #[error("{what}: shape {shape:?} needs {expected} values ({expected_bytes} bytes), found {found} values ({found_bytes} bytes)", expected_bytes = .expected * .dtype.size(), found_bytes = .found * .dtype.size())]
    ByteCount {
        /// The tensor.
        what: String,
        /// Its dtype.
        dtype: DType,
        /// Its declared shape.
        shape: Vec<usize>,
        /// Values the shape needs.
        expected: usize,
        /// Values present.
        found: usize,
    },

    /// A tensor holds NaN or infinite values and the engine rejects them.
    #[error("{what}: value {index} is {value}, and this engine rejects non-finite weights")]
    NonFinite {
        /// The tensor.
        what: String,
        /// Index of the first offending value.
        index: usize,
        /// The value, as text.
        value: String,
    },

    /// The engine was built without refit support.
    #[error("refit is not enabled for this engine: it was built without enable_refit")]
    RefitDisabled,

    /// The engine requires every weight staged and some are missing.
    #[error("refit needs every weight staged; missing: {}", .missing.join(", "))]
    MissingWeights {
        /// The weights not yet staged.
        missing: Vec<String>,
    },

    /// The wrong number of inputs was given to `infer`.
    #[error("expected {expected} input(s), found {found}")]
    InputCount {
        /// Inputs the model takes.
        expected: usize,
        /// Inputs given.
        found: usize,
    },

    /// A weights file could not be parsed, or holds an unsupported dtype.
    #[error("{path}: {reason}")]
    WeightsFile {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        reason: String,
    },

    /// An `.npy` file could not be parsed, or holds an unsupported dtype.
    #[error("{path}: {reason}")]
    NpyFile {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        reason: String,
    },

    /// A `bench.csv` could not be read.
    #[error("{path}: {reason}")]
    BenchFile {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        reason: String,
    },

    /// An engine spec string names no known engine.
    #[error("unknown engine '{0}': expected 'reference', 'reference-strict', 'reference-quiesced', 'defect:NAME' or 'plugin:PATH'")]
    UnknownEngine(String),

    /// `--engine-options` (or `REFIT_ENGINE_OPTIONS`) is not a JSON object.
    #[error("engine options: {0}")]
    BadEngineOptions(String),

    /// A precision name that is not one of `f32`, `tf32`, `f16`, `bf16`.
    #[error("unknown precision '{0}': expected 'f32', 'tf32', 'f16' or 'bf16'")]
    UnknownPrecision(String),

    /// The engine does not support something the model uses (an op, a
    /// number of spatial dimensions, a dtype). Checks count it as a skip
    /// with this reason, not as a failure.
    #[error("unsupported: {reason}")]
    Unsupported {
        /// What the engine cannot run, in its own words.
        reason: String,
    },

    /// A plugin library could not be loaded.
    #[error("{0}")]
    PluginLoad(Box<LoadError>),

    /// A plugin call failed; `message` is the plugin's own.
    #[error("plugin {path}: {call} failed (status {status}): {message}")]
    Plugin {
        /// The library.
        path: PathBuf,
        /// The function called.
        call: &'static str,
        /// The status it returned.
        status: i32,
        /// The plugin's last-error message.
        message: String,
    },

    /// An engine's own error (a device fault, a driver error, an
    /// out-of-memory): what a Rust engine outside this crate returns for
    /// anything the other variants do not describe, its error kept as the
    /// source. Checks report it as a failure with this message.
    #[error("{engine}: {source}")]
    Engine {
        /// The engine's name.
        engine: String,
        /// The engine's own error.
        #[source]
        source: Box<dyn std::error::Error + Send + Sync + 'static>,
    },

    /// An environment variable the test suite reads holds no valid value.
    #[error("{variable}: {reason}")]
    Env {
        /// The variable (`REFIT_TIMEOUT`).
        variable: &'static str,
        /// What is wrong with its value.
        reason: String,
    },

    /// A sanitizer's runtime cannot be found.
    #[error("--sanitizer {sanitizer}: {reason}")]
    Sanitizer {
        /// `thread` or `address`.
        sanitizer: &'static str,
        /// Why (the compiler's answer).
        reason: String,
    },

    /// A C plugin could not be compiled.
    #[error("building {file}: {reason}")]
    Build {
        /// The C source.
        file: PathBuf,
        /// The compiler's error.
        reason: String,
    },

    /// The configuration a child process read is not one its parent wrote.
    #[error("the check's configuration: {0}")]
    ChildConfig(String),

    /// An error with the file it came from (a weights file applied as a refit).
    #[error("{path}: {error}")]
    InFile {
        /// The file.
        path: PathBuf,
        /// The error, part of this error's message.
        error: Box<Error>,
    },
}

impl Error {
    /// Whether the engine refused the model as unsupported (a plugin's
    /// `REFIT_UNSUPPORTED` arrives as [`Error::Unsupported`] too).
    pub fn is_unsupported(&self) -> bool {
        match self {
            Error::Unsupported { .. } => true,
            Error::InFile { error, .. } => error.is_unsupported(),
            _ => false,
        }
    }

    /// An engine's own error, for [`Error::Engine`].
    pub fn engine(
        engine: impl Into<String>,
        source: impl Into<Box<dyn std::error::Error + Send + Sync + 'static>>,
    ) -> Self {
        Error::Engine {
            engine: engine.into(),
            source: source.into(),
        }
    }

    /// Wraps this error with the file it concerns.
    pub fn in_file(self, path: impl Into<PathBuf>) -> Self {
        Error::InFile {
            path: path.into(),
            error: Box::new(self),
        }
    }
}

/// The crate's result type.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Why a plugin library could not be loaded.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum LoadError {
    /// The library could not be opened (missing file, unresolved symbol).
    #[error("cannot open plugin {path}: {message}")]
    Open {
        /// The library.
        path: PathBuf,
        /// The loader's message.
        message: String,
    },
    /// The library does not export `refit_plugin_get_api`.
    #[error("plugin {path} does not export refit_plugin_get_api: {message}")]
    MissingEntryPoint {
        /// The library.
        path: PathBuf,
        /// The loader's message.
        message: String,
    },
    /// The library returned no table for the ABI version asked for.
    #[error("plugin {path} does not support ABI version {requested} (refit_plugin_get_api returned NULL)")]
    UnsupportedVersion {
        /// The library.
        path: PathBuf,
        /// The version asked for.
        requested: u32,
    },
    /// The table's version or size is not what was asked for.
    #[error("plugin {path} returned a table for ABI version {found} of {size} bytes; expected version {expected} and at least {min} bytes")]
    BadTable {
        /// The library.
        path: PathBuf,
        /// The version asked for.
        expected: u32,
        /// The version in the table.
        found: u32,
        /// The table's declared size.
        size: u32,
        /// The smallest size accepted.
        min: usize,
    },
    /// A function slot of the table is NULL.
    #[error("plugin {path}: function {slot} is NULL in its ABI table")]
    NullSlot {
        /// The library.
        path: PathBuf,
        /// The slot's name.
        slot: &'static str,
    },
}
