//! Which engine to run, by name: `reference`, `reference-strict`,
//! `reference-quiesced`, `defect:NAME`, `plugin:PATH`. It sits above
//! [`engine`](crate::engine), [`defects`](crate::defects) and
//! [`ffi`](crate::ffi), which know nothing of it.

use std::fmt;
use std::path::Path;
use std::str::FromStr;

use crate::engine::{quiesced, reference, BuildOptions, Concurrency, Engine};
use crate::{Error, Result};

/// Which engine to run: parsed from `--engine` or `REFIT_ENGINE`.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum EngineSpec {
    /// The built-in reference engine.
    Reference,
    /// The reference engine declaring and enforcing requires-all, or
    /// carrying a seeded defect (`reference-strict`, `defect:NAME`).
    Wrapped(crate::defects::Variant),
    /// A plugin library implementing `include/refit_plugin.h`
    /// (`plugin:PATH`).
    Plugin(std::path::PathBuf),
}

impl FromStr for EngineSpec {
    type Err = Error;

    fn from_str(s: &str) -> Result<Self> {
        use crate::defects::Variant;
        match s {
            "reference" => Ok(EngineSpec::Reference),
            "reference-strict" => Ok(EngineSpec::Wrapped(Variant::Strict)),
            "reference-quiesced" => Ok(EngineSpec::Wrapped(Variant::Quiesced)),
            other => {
                if let Some(d) = other.strip_prefix("defect:") {
                    Ok(EngineSpec::Wrapped(Variant::Defect(d.parse()?)))
                } else if let Some(p) = other.strip_prefix("plugin:").filter(|p| !p.is_empty()) {
                    Ok(EngineSpec::Plugin(p.into()))
                } else {
                    Err(Error::UnknownEngine(other.to_string()))
                }
            }
        }
    }
}

impl fmt::Display for EngineSpec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            EngineSpec::Reference => f.write_str("reference"),
            EngineSpec::Wrapped(crate::defects::Variant::Strict) => f.write_str("reference-strict"),
            EngineSpec::Wrapped(crate::defects::Variant::Quiesced) => {
                f.write_str("reference-quiesced")
            }
            EngineSpec::Wrapped(crate::defects::Variant::Defect(d)) => write!(f, "defect:{d}"),
            EngineSpec::Plugin(p) => write!(f, "plugin:{}", p.display()),
        }
    }
}

impl EngineSpec {
    /// The spec named by the `REFIT_ENGINE` environment variable, or the
    /// reference engine when it is unset.
    ///
    /// # Errors
    /// [`Error::UnknownEngine`] for a value that names no engine.
    pub fn from_env() -> Result<Self> {
        match std::env::var("REFIT_ENGINE") {
            Ok(s) if !s.is_empty() => s.parse(),
            _ => Ok(EngineSpec::Reference),
        }
    }

    /// Builds the engine for `model`. An engine whose contract is
    /// [`Concurrency::Quiesced`](crate::engine::Concurrency::Quiesced) comes wrapped in [`quiesced::Quiesced`](crate::engine::quiesced::Quiesced),
    /// which keeps inference out of every refit.
    ///
    /// # Errors
    /// Whatever loading the model gives: an unreadable file, an unsupported
    /// op, a malformed graph.
    pub fn open(&self, model: &Path, options: &BuildOptions) -> Result<Box<dyn Engine>> {
        let engine = self.open_unwrapped(model, options)?;
        Ok(
            if engine.info().contract.concurrency == Concurrency::Quiesced {
                Box::new(quiesced::Quiesced::new(engine))
            } else {
                engine
            },
        )
    }

    fn open_unwrapped(&self, model: &Path, options: &BuildOptions) -> Result<Box<dyn Engine>> {
        match self {
            EngineSpec::Reference => {
                Ok(Box::new(reference::ReferenceEngine::load(model, options)?))
            }
            EngineSpec::Wrapped(crate::defects::Variant::Defect(crate::defects::Defect::Race(
                r,
            ))) => Ok(Box::new(crate::defects::racy::RacyEngine::load(
                *r,
                self.to_string(),
                model,
                options,
            )?)),
            EngineSpec::Wrapped(v) => Ok(Box::new(crate::defects::WrappedEngine::load(
                *v, model, options,
            )?)),
            EngineSpec::Plugin(path) => Ok(Box::new(
                crate::ffi::Plugin::load(path)?.open(model, options)?,
            )),
        }
    }
}
