//! Which engine to run, by name: `reference`, `reference-strict`,
//! `reference-quiesced`, `defect:NAME`, `plugin:PATH`. It sits above
//! [`engine`](crate::engine), [`defects`](crate::defects) and
//! [`ffi`](crate::ffi), which know nothing of it.

use std::fmt;
use std::path::Path;
use std::str::FromStr;

use crate::defects::racy::RacyEngine;
use crate::defects::{Defect, WrappedEngine};
use crate::engine::reference::{Declares, ReferenceEngine};
use crate::engine::{quiesced, BuildOptions, Concurrency, Engine};
use crate::ffi::Plugin;
use crate::{Error, Result};

/// Which engine to run: parsed from `--engine` or `REFIT_ENGINE`.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum EngineSpec {
    /// The built-in reference engine (`reference`).
    Reference,
    /// The reference engine declaring and enforcing requires-all
    /// (`reference-strict`): correct.
    ReferenceStrict,
    /// The reference engine declaring the quiesced contract
    /// (`reference-quiesced`), which [`EngineSpec::open`] enforces: correct.
    ReferenceQuiesced,
    /// The reference engine with a seeded defect (`defect:NAME`).
    Defect(Defect),
    /// A plugin library implementing `include/refit_plugin.h`
    /// (`plugin:PATH`).
    Plugin(std::path::PathBuf),
}

impl FromStr for EngineSpec {
    type Err = Error;

    fn from_str(s: &str) -> Result<Self> {
        match s {
            "reference" => Ok(EngineSpec::Reference),
            "reference-strict" => Ok(EngineSpec::ReferenceStrict),
            "reference-quiesced" => Ok(EngineSpec::ReferenceQuiesced),
            other => {
                if let Some(d) = other.strip_prefix("defect:") {
                    Ok(EngineSpec::Defect(d.parse()?))
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
            EngineSpec::Reference => f.write_str(Declares::Own.name()),
            EngineSpec::ReferenceStrict => f.write_str(Declares::RequiresAll.name()),
            EngineSpec::ReferenceQuiesced => f.write_str(Declares::Quiesced.name()),
            EngineSpec::Defect(d) => write!(f, "defect:{d}"),
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
    /// [`Concurrency::Quiesced`] comes wrapped in [`quiesced::Quiesced`],
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
        let reference = |d: Declares| -> Result<Box<dyn Engine>> {
            Ok(Box::new(ReferenceEngine::load_declaring(
                model, options, d,
            )?))
        };
        match self {
            EngineSpec::Reference => reference(Declares::Own),
            EngineSpec::ReferenceStrict => reference(Declares::RequiresAll),
            EngineSpec::ReferenceQuiesced => reference(Declares::Quiesced),
            EngineSpec::Defect(Defect::Race(r)) => Ok(Box::new(RacyEngine::load(
                *r,
                self.to_string(),
                model,
                options,
            )?)),
            EngineSpec::Defect(d) => Ok(Box::new(WrappedEngine::load(*d, model, options)?)),
            EngineSpec::Plugin(path) => Ok(Box::new(Plugin::load(path)?.open(model, options)?)),
        }
    }
}
