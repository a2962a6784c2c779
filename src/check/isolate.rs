//! Each scenario's engine work in a child process, so that an engine that
//! crashes or hangs becomes a verdict instead of ending the run.
//!
//! The parent writes the run's [`CheckConfig`](super::CheckConfig) once as JSON, then for each
//! scenario starts the harness binary again (`refit-harness run-item`),
//! which runs that one scenario and prints its outcome as one line. The
//! child announces its steps and, on a fatal signal or the parent's
//! SIGTERM, the engine calls in flight ([`crate::flight`]). A child killed
//! by a signal, or gone without an outcome, is [`Verdict::Crashed`](super::Verdict::Crashed); one
//! past [`Isolation::timeout`] is sent SIGTERM (SIGKILL 2 s later) and is
//! [`Verdict::Hung`](super::Verdict::Hung). Either names the step and the calls in flight, with
//! the tail of the child's stderr.

mod child;
mod parent;
mod wire;

use std::ffi::OsString;
use std::path::PathBuf;
use std::time::Duration;

#[cfg(doc)]
use crate::spec::EngineSpec;

use super::sanitizer::Sanitizer;
use super::SpecFactory;
pub use child::child_main;
pub(crate) use child::child_run;
pub(super) use parent::run_child;

pub(crate) use wire::config_json;

/// Starts the line a child prints its outcome on.
pub(crate) const OUTCOME_MARK: &str = "REFIT-OUTCOME ";

/// Starts the line a child prints the declared contract on, as soon as it
/// has it (so a crash later in the scenario does not lose it).
pub(crate) const CONTRACT_MARK: &str = "REFIT-CONTRACT ";

/// The default time a scenario may take before it is killed as hung.
pub(crate) const DEFAULT_TIMEOUT: Duration = Duration::from_secs(120);

/// How scenarios run in child processes.
#[derive(Clone, Debug)]
pub struct Isolation {
    /// The `refit-harness` binary.
    pub program: PathBuf,
    /// What each child runs, and on which engine.
    pub child: Child,
    /// A scenario running longer is killed and reported hung.
    pub timeout: Duration,
    /// Extra environment for the child.
    pub env: Vec<(OsString, OsString)>,
    /// A sanitizer runtime preloaded into each child (for a plugin built
    /// with `-fsanitize=thread` or `-fsanitize=address`); its first report
    /// becomes the scenario's failure.
    pub sanitizer: Option<Sanitizer>,
}

/// What a child process runs.
#[derive(Clone, Debug)]
pub enum Child {
    /// The harness binary's `run-item`, opening this engine with its own
    /// options.
    Harness(SpecFactory),
    /// A test binary running test `test` alone, which finds its job in
    /// [`CHILD_ENV`] ([`crate::suite`]) and opens the vendor's engine,
    /// `engine` by name, as the test itself does (the same builder, the
    /// same environment, so the same engine options).
    Test {
        /// The test's full name.
        test: String,
        /// The engine's name, for reports.
        engine: String,
    },
}

impl Child {
    /// The engine's name, for reports.
    pub fn engine(&self) -> String {
        match self {
            Child::Harness(engine) => engine.spec.to_string(),
            Child::Test { engine, .. } => engine.clone(),
        }
    }
}

/// The variable that tells a test binary started as a child which
/// item to run: `<config path>\n<item>\n<contract 0|1>`.
pub const CHILD_ENV: &str = "REFIT_HARNESS_CHILD";

impl Isolation {
    /// Children of `program`, the harness binary, opening `engine` (an
    /// [`EngineSpec`], or a [`SpecFactory`] with the engine's options), with
    /// the default timeout.
    pub fn new(program: impl Into<PathBuf>, engine: impl Into<SpecFactory>) -> Self {
        Isolation::of(program, Child::Harness(engine.into()))
    }

    /// Children of `program` running `child`, with the default timeout.
    pub fn of(program: impl Into<PathBuf>, child: Child) -> Self {
        Isolation {
            program: program.into(),
            child,
            timeout: DEFAULT_TIMEOUT,
            env: Vec::new(),
            sanitizer: None,
        }
    }

    /// With `sanitizer`'s runtime preloaded into each child.
    ///
    /// # Errors
    /// When the runtime cannot be found.
    pub fn with_sanitizer(mut self, sanitizer: Sanitizer) -> crate::Result<Self> {
        self.env.extend(sanitizer.env()?);
        self.sanitizer = Some(sanitizer);
        Ok(self)
    }

    /// Children of the running binary (for the `refit-harness` command).
    ///
    /// # Errors
    /// When the running binary cannot be found.
    pub fn current_exe(engine: impl Into<SpecFactory>) -> std::io::Result<Self> {
        Ok(Isolation::new(std::env::current_exe()?, engine))
    }
}

/// `REFIT_TIMEOUT` (seconds a scenario may run in the test suite), or
/// [`DEFAULT_TIMEOUT`] when unset.
///
/// # Errors
/// [`crate::Error::Env`] when it is not a number of seconds above 0.
pub(crate) fn timeout_from_env() -> crate::Result<Duration> {
    match std::env::var("REFIT_TIMEOUT") {
        Err(_) => Ok(DEFAULT_TIMEOUT),
        Ok(v) => v
            .trim()
            .parse::<f64>()
            .ok()
            .filter(|s| s.is_finite() && *s > 0.0)
            .map(Duration::from_secs_f64)
            .ok_or_else(|| crate::Error::Env {
                variable: "REFIT_TIMEOUT",
                reason: format!("expected seconds above 0, found '{v}'"),
            }),
    }
}

/// `REFIT_ENGINE_OPTIONS` (the engine's own build options for the test
/// suite, a JSON object), if set.
///
/// # Errors
/// [`crate::Error::Env`] when it is not a JSON object.
pub fn engine_options_from_env() -> crate::Result<Option<String>> {
    match std::env::var("REFIT_ENGINE_OPTIONS") {
        Err(_) => Ok(None),
        Ok(v) => crate::engine::parse_engine_options(&v)
            .map(|_| Some(v))
            .map_err(|e| crate::Error::Env {
                variable: "REFIT_ENGINE_OPTIONS",
                reason: e.to_string(),
            }),
    }
}
