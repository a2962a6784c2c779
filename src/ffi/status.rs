//! The one mapping between the ABI's status codes and [`Error`], both
//! ways: the loader turns a plugin's status into the error a Rust engine
//! would return ([`error_of`]), the reference plugin turns an error into a
//! status ([`status_of`]).

use std::path::Path;

use super::sys::{self, refit_status};
use crate::Error;

/// The error for a plugin call `call` that returned `status` with
/// `message`: [`Error::RefitDisabled`] for `REFIT_DISABLED`,
/// [`Error::Unsupported`] for `REFIT_UNSUPPORTED` (with the message as the
/// reason), else [`Error::Plugin`] with the status and the message.
pub fn error_of(status: refit_status, path: &Path, call: &'static str, message: String) -> Error {
    match status {
        sys::REFIT_DISABLED => Error::RefitDisabled,
        sys::REFIT_UNSUPPORTED => Error::Unsupported {
            reason: format!("plugin {}: {call}: {message}", path.display()),
        },
        _ => Error::Plugin {
            path: path.to_path_buf(),
            call,
            status,
            message,
        },
    }
}

/// The status the reference plugin returns for `e`.
pub fn status_of(e: &Error) -> refit_status {
    match e {
        Error::UnknownWeight { .. } => sys::REFIT_UNKNOWN_WEIGHT,
        Error::ShapeMismatch { .. } | Error::ByteCount { .. } | Error::InputCount { .. } => {
            sys::REFIT_SHAPE_MISMATCH
        }
        Error::DTypeMismatch { .. } => sys::REFIT_DTYPE_MISMATCH,
        Error::NonFinite { .. } => sys::REFIT_NON_FINITE,
        Error::RefitDisabled => sys::REFIT_DISABLED,
        Error::MissingWeights { .. } => sys::REFIT_MISSING_WEIGHTS,
        Error::Unsupported { .. }
        | Error::InvalidNode { .. }
        | Error::InvalidGraph { .. }
        | Error::MalformedModel { .. } => sys::REFIT_UNSUPPORTED,
        Error::BadEngineOptions(_) => sys::REFIT_INVALID_ARGUMENT,
        Error::Plugin { status, .. } => *status,
        Error::InFile { error, .. } => status_of(error),
        _ => sys::REFIT_ERROR,
    }
}
