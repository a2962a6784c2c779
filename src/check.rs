//! The conformance checks: named scenarios run against any engine, each
//! giving pass, fail (with evidence) or skip (with the reason).
//!
//! A scenario opens the engines it needs through an [`EngineFactory`] (so a
//! scenario can build the same model with and without refit, or generate
//! models of its own), and compares what they serve against the plain
//! [`oracle`](crate::oracle). The same scenarios run from `cargo test` and from
//! `refit-harness check`; [`docs::contract`](crate::docs::contract) says
//! what each one proves.

pub mod differential;
pub mod isolate;
pub mod model_based;
mod resources;
pub mod sanitizer;
mod scenarios;
pub mod stress;
mod subject;
pub mod timeline;

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use crate::engine::{BuildOptions, Contract, Engine};
pub use crate::oracle::{Judge, Tolerance};
use crate::spec::EngineSpec;
use crate::Result;
pub use isolate::Isolation;
pub use subject::ints;

/// Builds engines of one kind over any model: the engine under test.
pub trait EngineFactory: Send + Sync {
    /// The engine's name in reports (`reference`, `plugin:/path/lib.so`).
    fn name(&self) -> String;

    /// Builds the engine for a model file.
    ///
    /// # Errors
    /// Whatever the engine gives for the model.
    fn open(&self, model: &Path, options: &BuildOptions) -> Result<Box<dyn Engine>>;
}

impl EngineFactory for EngineSpec {
    fn name(&self) -> String {
        self.to_string()
    }

    fn open(&self, model: &Path, options: &BuildOptions) -> Result<Box<dyn Engine>> {
        EngineSpec::open(self, model, options)
    }
}

/// The engine under test: an engine spec with the engine's own build
/// options (`--engine-options`, `REFIT_ENGINE_OPTIONS`,
/// [`Suite::engine_options`](crate::suite::Suite::engine_options)), added
/// to every build a scenario, a child process or a benchmark asks for. The
/// one place those options live; [`BuildOptions::engine_options`] carries
/// them to the engine, build by build.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SpecFactory {
    /// The engine.
    pub spec: EngineSpec,
    /// A JSON object passed through to the engine, if any.
    pub options: Option<String>,
}

impl From<EngineSpec> for SpecFactory {
    fn from(spec: EngineSpec) -> Self {
        SpecFactory {
            spec,
            options: None,
        }
    }
}

impl EngineFactory for SpecFactory {
    fn name(&self) -> String {
        self.spec.to_string()
    }

    fn open(&self, model: &Path, options: &BuildOptions) -> Result<Box<dyn Engine>> {
        let options = BuildOptions {
            engine_options: options.engine_options.clone().or(self.options.clone()),
            ..options.clone()
        };
        self.spec.open(model, &options)
    }
}

/// What a check found wrong: the step, and what was expected and observed.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Evidence {
    /// The step that went wrong.
    pub step: String,
    /// What the contract and the oracle call for.
    pub expected: String,
    /// What the engine did.
    pub observed: String,
}

/// A scenario's verdict (on the wire between a child and its parent:
/// `{"kind": "fail", "detail": {"step": ..}}`).
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(tag = "kind", content = "detail", rename_all = "lowercase")]
pub enum Verdict {
    /// The engine kept its contract; what was checked.
    Pass(String),
    /// The engine broke its contract.
    Fail(Evidence),
    /// Not applicable to this engine; why.
    Skip(String),
    /// The scenario ran but did too little to prove anything (a stress run
    /// below its minimum power); what it achieved. Counts as a failure
    /// unless [`CheckConfig::allow_inconclusive`] is set.
    Inconclusive(String),
    /// The engine's process died during the scenario (a signal, or an exit
    /// without an outcome): the step, the engine calls in flight and the
    /// tail of its stderr. A failure.
    Crashed(Evidence),
    /// The scenario ran past its timeout and was killed: the step, the
    /// engine calls in flight and for how long. A failure.
    Hung(Evidence),
}

impl Verdict {
    /// `pass`, `FAIL` or `skip`.
    pub fn label(&self) -> &'static str {
        match self {
            Verdict::Pass(_) => "pass",
            Verdict::Fail(_) => "FAIL",
            Verdict::Skip(_) => "skip",
            Verdict::Inconclusive(_) => "INCONCLUSIVE",
            Verdict::Crashed(_) => "CRASHED",
            Verdict::Hung(_) => "HUNG",
        }
    }

    /// The detail: what passed, the evidence, or the reason for skipping.
    pub fn detail(&self) -> String {
        match self {
            Verdict::Pass(d) | Verdict::Skip(d) | Verdict::Inconclusive(d) => d.clone(),
            Verdict::Fail(e) | Verdict::Crashed(e) | Verdict::Hung(e) => format!(
                "{}: expected {}, observed {}",
                e.step, e.expected, e.observed
            ),
        }
    }

    /// Whether this is a failure (an inconclusive run counts as one).
    pub fn is_fail(&self) -> bool {
        !matches!(self, Verdict::Pass(_) | Verdict::Skip(_))
    }
}

/// A failure verdict.
pub fn fail(
    step: impl Into<String>,
    expected: impl Into<String>,
    observed: impl Into<String>,
) -> Verdict {
    Verdict::Fail(Evidence {
        step: step.into(),
        expected: expected.into(),
        observed: observed.into(),
    })
}

/// How a check runs (sent to each child process as JSON, its serde form,
/// all but [`CheckConfig::isolation`]).
#[derive(Clone, Debug, serde::Serialize, serde::Deserialize)]
pub struct CheckConfig {
    /// Models for the per-model scenarios.
    pub models: Vec<PathBuf>,
    /// Cases for the model-based property test (`PROPTEST_CASES`).
    pub cases: u32,
    /// Time budget for the model-based property test.
    pub seconds: f64,
    /// A fixed output tolerance replacing the oracle's derived error bound
    /// (`None`: the bound for the engine's declared precision).
    pub tolerance: Option<Tolerance>,
    /// Where scenarios write the models they generate.
    pub scratch: PathBuf,
    /// Scenario names to run; empty for all.
    pub only: Vec<String>,
    /// How long each stress scenario races, in milliseconds.
    pub stress_ms: u64,
    /// Whether scenarios print live progress on stderr.
    pub live: bool,
    /// Stress scenarios race at least this long, then on until they reach
    /// [`CheckConfig::min_power`] or [`CheckConfig::stress_cap_ms`].
    pub stress_cap_ms: u64,
    /// The least a stress run must achieve to prove anything.
    pub min_power: crate::history::Power,
    /// Turn an inconclusive stress run into a skip instead of a failure.
    pub allow_inconclusive: bool,
    /// Turn every skip into a failure: a gate that needs full coverage.
    pub fail_on_skip: bool,
    /// The file failing property-test seeds are saved to and replayed from
    /// (`None`: not saved). `check` puts it under its report folder.
    pub regressions: Option<PathBuf>,
    /// How a person replays the seeds saved in
    /// [`CheckConfig::regressions`], said after the file's name when a case
    /// fails (`None`: the `refit-harness check --regressions` command).
    #[serde(default)]
    pub replay: Option<String>,
    /// Where stress scenarios draw their timelines
    /// (`timeline_<scenario>.svg`); `None`: not drawn. `check` puts them in
    /// its report folder.
    #[serde(default)]
    pub plots: Option<PathBuf>,
    /// Run each scenario in a child process, so that a crash or a hang is a
    /// verdict ([`Verdict::Crashed`], [`Verdict::Hung`]); `None`: in this
    /// process, with the factory given to [`run`].
    #[serde(skip)]
    pub isolation: Option<Isolation>,
}

impl CheckConfig {
    /// The default run: the seed model and the fixture models (written to
    /// `scratch`), `PROPTEST_CASES` cases (64 when unset), 20 seconds for
    /// the property test, exact outputs.
    ///
    /// # Errors
    /// When the fixture models cannot be written to `scratch`.
    pub fn with_fixtures(scratch: &Path) -> Result<Self> {
        let dir = scratch.join("models");
        let mut models = Vec::new();
        crate::fixtures::write_all(&dir)?;
        for (name, _) in crate::fixtures::models() {
            models.push(dir.join(name));
        }
        Ok(CheckConfig {
            models,
            cases: cases_from_env(64),
            seconds: 20.0,
            tolerance: None,
            scratch: scratch.to_path_buf(),
            only: Vec::new(),
            regressions: None,
            replay: None,
            stress_ms: 500,
            stress_cap_ms: 10_000,
            min_power: crate::history::Power::MINIMUM,
            allow_inconclusive: false,
            fail_on_skip: false,
            live: false,
            plots: None,
            isolation: None,
        })
    }
}

/// `PROPTEST_CASES` if set and valid, else `default`.
pub fn cases_from_env(default: u32) -> u32 {
    std::env::var("PROPTEST_CASES")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(default)
}

/// Whether a scenario runs once or once per model.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Scope {
    /// Once, on models the scenario makes itself.
    Once,
    /// Once per model in the configuration.
    PerModel,
}

/// What a scenario gets: the engine under test and the configuration.
pub struct Cx<'a> {
    /// The engine under test.
    pub factory: &'a dyn EngineFactory,
    /// The configuration.
    pub config: &'a CheckConfig,
    /// The worst error / allowed error of the scenario's comparisons with
    /// the oracle, whichever thread made them (the oracles it opens report
    /// here).
    pub worst: std::sync::Arc<crate::oracle::WorstRatio>,
}

impl<'a> Cx<'a> {
    /// A context with nothing compared yet.
    pub fn new(factory: &'a dyn EngineFactory, config: &'a CheckConfig) -> Self {
        Cx {
            factory,
            config,
            worst: Default::default(),
        }
    }
}

/// How a skip for a model the engine refused as unsupported begins.
pub(crate) const ENGINE_REFUSED: &str = "the engine does not support";

/// A named check.
pub struct Scenario {
    /// Its name (`round_trip`).
    pub name: &'static str,
    /// Its column in the self-test's console matrix (at most 4 characters).
    pub short: &'static str,
    /// What it proves, one line.
    pub proves: &'static str,
    /// Once or per model.
    pub scope: Scope,
    /// Runs it: the scenario itself (its name), the context, the model.
    run: fn(&Scenario, &Cx<'_>, &Path) -> Verdict,
}

impl Scenario {
    /// Runs the scenario; `model` is ignored by [`Scope::Once`] scenarios.
    pub fn run(&self, cx: &Cx<'_>, model: &Path) -> Verdict {
        (self.run)(self, cx, model)
    }
}

/// Every scenario, in the order `check` runs them.
pub fn scenarios() -> &'static [Scenario] {
    scenarios::ALL
}

/// Looks a scenario up by name.
pub fn scenario(name: &str) -> Option<&'static Scenario> {
    scenarios().iter().find(|s| s.name == name)
}

/// One scenario's result.
#[derive(Clone, Debug)]
pub struct Outcome {
    /// The scenario.
    pub scenario: &'static str,
    /// The model's file name, or `-` for scenarios that make their own.
    pub model: String,
    /// The verdict.
    pub verdict: Verdict,
    /// How long it took.
    pub elapsed: Duration,
    /// The worst observed error / allowed error over the scenario's
    /// comparisons with the oracle (`None`: none made). Near 1 means the
    /// engine's rounding uses up its bound; a vendor sets its error factor
    /// from this.
    pub error_ratio: Option<f64>,
}

/// A whole check run.
#[derive(Clone, Debug)]
pub struct CheckReport {
    /// The engine's name.
    pub engine: String,
    /// The contract the engine declared (on the first model it opened).
    pub contract: Option<Contract>,
    /// Every scenario's result, in run order.
    pub outcomes: Vec<Outcome>,
}

impl CheckReport {
    /// Whether any scenario failed.
    pub fn failed(&self) -> bool {
        self.outcomes.iter().any(|o| o.verdict.is_fail())
    }

    /// (passed, failed, skipped); inconclusive runs count as failed.
    pub fn counts(&self) -> (usize, usize, usize) {
        let mut c = (0, 0, 0);
        for o in &self.outcomes {
            match o.verdict {
                Verdict::Pass(_) => c.0 += 1,
                Verdict::Fail(_)
                | Verdict::Inconclusive(_)
                | Verdict::Crashed(_)
                | Verdict::Hung(_) => c.1 += 1,
                Verdict::Skip(_) => c.2 += 1,
            }
        }
        c
    }

    /// When no per-model case was judged because the engine refused the
    /// models as unsupported (every per-model outcome a skip, at least one
    /// of them the engine's refusal): that refusal, with its reason. Such a
    /// run proves nothing about the engine; `check` exits 1 on it and the
    /// suite's test fails.
    pub fn refused_every_model(&self) -> Option<String> {
        let per_model: Vec<&Outcome> = self.outcomes.iter().filter(|o| o.model != "-").collect();
        if !per_model
            .iter()
            .all(|o| matches!(o.verdict, Verdict::Skip(_)))
        {
            return None;
        }
        per_model
            .iter()
            .map(|o| o.verdict.detail())
            .find(|d| d.starts_with(ENGINE_REFUSED))
    }

    /// The worst error / bound ratio over the whole run.
    pub fn worst_error_ratio(&self) -> Option<f64> {
        self.outcomes
            .iter()
            .filter_map(|o| o.error_ratio)
            .reduce(f64::max)
    }
}

/// Progress while a check runs.
#[derive(Debug)]
pub enum Progress<'a> {
    /// A scenario is starting: its position, the total, name and model.
    Start {
        /// 1-based position.
        index: usize,
        /// Total scenarios in the run.
        total: usize,
        /// The scenario.
        scenario: &'static str,
        /// The model.
        model: &'a str,
    },
    /// A scenario finished.
    Done(&'a Outcome),
}

/// Runs one scenario: a panic (in the harness or in an engine written in
/// Rust) is a failure with its message, and the run goes on; the config's
/// overrides apply to skips and inconclusive runs.
fn run_one(s: &Scenario, cx: &Cx<'_>, model: &Path) -> Verdict {
    let verdict = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| s.run(cx, model)))
        .unwrap_or_else(|p| {
            fail(
                format!("run {}", s.name),
                "the scenario to finish",
                format!("panic: {}", crate::race::panic_message(p.as_ref())),
            )
        });
    match verdict {
        Verdict::Inconclusive(d) if cx.config.allow_inconclusive => Verdict::Skip(format!(
            "inconclusive, allowed by --allow-inconclusive: {d}"
        )),
        Verdict::Skip(d) if cx.config.fail_on_skip => fail(
            format!("run {}", s.name),
            "every scenario to run (--fail-on-skip)",
            format!("skipped: {d}"),
        ),
        v => v,
    }
}

/// The run's items in order: each selected scenario, once or per model.
pub fn plan(config: &CheckConfig) -> Vec<(&'static Scenario, Option<PathBuf>)> {
    let mut plan = Vec::new();
    for s in scenarios() {
        if !config.only.is_empty() && !config.only.iter().any(|o| o == s.name) {
            continue;
        }
        match s.scope {
            Scope::Once => plan.push((s, None)),
            Scope::PerModel => plan.extend(config.models.iter().map(|m| (s, Some(m.clone())))),
        }
    }
    plan
}

/// Runs every selected scenario against the engine: in this process with
/// `factory`, or, with [`CheckConfig::isolation`], each in a child process
/// that opens the isolation's engine spec.
pub fn run(
    factory: &dyn EngineFactory,
    config: &CheckConfig,
    progress: &mut dyn FnMut(Progress<'_>),
) -> CheckReport {
    let cx = Cx::new(factory, config);
    let plan = plan(config);
    let mut contract = None;
    let mut engine = factory.name();
    let config_file = config.isolation.as_ref().and_then(|iso| {
        engine = iso.child.engine();
        let path = config.scratch.join("check-config.json");
        std::fs::create_dir_all(&config.scratch).ok()?;
        std::fs::write(&path, isolate::config_json(config).to_string()).ok()?;
        Some(path)
    });
    if config.isolation.is_none() {
        contract = config
            .models
            .first()
            .and_then(|m| factory.open(m, &BuildOptions::default()).ok())
            .map(|e| e.info().contract);
    }
    let total = plan.len();
    let mut outcomes = Vec::with_capacity(total);
    for (i, (s, model)) in plan.into_iter().enumerate() {
        let label = model
            .as_deref()
            .and_then(Path::file_name)
            .map_or_else(|| "-".to_string(), |n| n.to_string_lossy().into_owned());
        progress(Progress::Start {
            index: i + 1,
            total,
            scenario: s.name,
            model: &label,
        });
        let start = Instant::now();
        let (verdict, error_ratio) = match (&config.isolation, &config_file) {
            (Some(iso), Some(file)) => {
                let r = isolate::run_child(iso, file, i, contract.is_none(), config.live, s.name);
                contract = contract.or(r.contract);
                (r.verdict, r.error_ratio)
            }
            (Some(_), None) => (
                fail(
                    format!("write the configuration for {}'s child process", s.name),
                    format!("a writable scratch folder {}", config.scratch.display()),
                    "it could not be written",
                ),
                None,
            ),
            (None, _) => {
                let _ = cx.worst.take();
                let v = run_one(s, &cx, model.as_deref().unwrap_or(Path::new("")));
                (v, cx.worst.take())
            }
        };
        let outcome = Outcome {
            scenario: s.name,
            model: label,
            verdict,
            elapsed: start.elapsed(),
            error_ratio,
        };
        progress(Progress::Done(&outcome));
        outcomes.push(outcome);
    }
    CheckReport {
        engine,
        contract,
        outcomes,
    }
}
