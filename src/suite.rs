//! The conformance suite in your own `cargo test`: one `#[test]` per
//! scenario, for your engine.
//!
//! ```no_run
//! // tests/refit.rs of a runtime's crate, with refit-harness as a
//! // dev-dependency. The engine is REFIT_ENGINE (e.g. plugin:/path/lib.so),
//! // which must be set.
//! refit_harness::conformance_suite!(refit_harness::suite::Suite::from_env());
//! ```
//!
//! [`conformance_suite!`](crate::conformance_suite) expands to one test per
//! scenario of [`check::scenarios`], stress
//! included, each named after its scenario, so a scenario added to the
//! harness reaches every suite without an edit. Each test runs its
//! scenario in a child process (the test binary itself, running that one
//! test), so an engine that crashes or hangs fails that test with the call
//! in flight instead of killing the test binary; a failure's message is the
//! scenario's evidence, a skip (a model the engine refuses as unsupported)
//! passes with its reason printed.
//!
//! A [`Suite`] says which engine (a spec such as `plugin:PATH`, or a Rust
//! [`EngineFactory`]) and how: models, tolerance, budgets, timeout,
//! scenarios left out.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use crate::check::isolate::{self, Isolation, CHILD_ENV};
use crate::check::{self, CheckConfig, EngineFactory, SpecFactory, Tolerance, Verdict};
use crate::spec::EngineSpec;

/// The engine under test.
#[derive(Clone)]
enum Under {
    Spec(SpecFactory),
    Factory(Arc<dyn EngineFactory>),
}

/// How a suite runs: the engine and the options of its checks.
#[derive(Clone)]
pub struct Suite {
    under: Under,
    models: Option<Vec<PathBuf>>,
    tolerance: Option<Tolerance>,
    seconds: Option<f64>,
    stress_ms: Option<u64>,
    timeout: Duration,
    skip: Vec<String>,
    fail_on_skip: bool,
    regressions: Option<PathBuf>,
}

impl Suite {
    fn new(under: Under) -> Self {
        Suite {
            under,
            models: None,
            tolerance: None,
            seconds: None,
            stress_ms: None,
            timeout: isolate::DEFAULT_TIMEOUT,
            skip: Vec::new(),
            fail_on_skip: false,
            regressions: None,
        }
    }

    /// The engine `REFIT_ENGINE` names, with `REFIT_ENGINE_OPTIONS`,
    /// `REFIT_TIMEOUT` and `REFIT_REGRESSIONS`.
    ///
    /// # Panics
    /// When `REFIT_ENGINE` is unset (a suite that ran on the built-in
    /// reference engine instead would pass without testing anything of
    /// yours), when one of those variables is malformed, or when the plugin
    /// it names does not load: a suite that cannot reach its engine fails,
    /// it never skips.
    pub fn from_env() -> Self {
        match std::env::var("REFIT_ENGINE") {
            Ok(s) if !s.trim().is_empty() => Suite::from_env_or(""),
            _ => panic!(
                "REFIT_ENGINE is not set: name the engine under test, e.g. \
                 REFIT_ENGINE=plugin:/path/to/libmy_shim.so cargo test \
                 (REFIT_ENGINE=reference tests the harness's own reference engine)"
            ),
        }
    }

    /// [`Suite::from_env`], with `default` (an engine spec such as
    /// `reference`) where `REFIT_ENGINE` is unset: for the harness's own
    /// tests, which test the reference engine unless told otherwise.
    ///
    /// # Panics
    /// As [`Suite::from_env`], but for an unset `REFIT_ENGINE`.
    pub fn from_env_or(default: &str) -> Self {
        let spec = match std::env::var("REFIT_ENGINE") {
            Ok(s) if !s.trim().is_empty() => s.parse(),
            _ => default.parse(),
        }
        .unwrap_or_else(|e| panic!("REFIT_ENGINE: {e}"));
        if let EngineSpec::Plugin(path) = &spec {
            if let Err(e) = crate::ffi::Plugin::load(path) {
                panic!("REFIT_ENGINE: {e}");
            }
        }
        let mut s = Suite::new(Under::Spec(SpecFactory {
            spec,
            options: isolate::engine_options_from_env().unwrap_or_else(|e| panic!("{e}")),
        }));
        s.timeout = isolate::timeout_from_env().unwrap_or_else(|e| panic!("{e}"));
        s.regressions = std::env::var_os("REFIT_REGRESSIONS")
            .filter(|v| !v.is_empty())
            .map(PathBuf::from);
        s
    }

    /// The engine a spec names: `reference`, `defect:NAME`,
    /// `plugin:PATH`, ...
    ///
    /// # Panics
    /// When the spec names no engine.
    pub fn spec(spec: &str) -> Self {
        Suite::new(Under::Spec(
            spec.parse::<EngineSpec>()
                .unwrap_or_else(|e| panic!("engine spec: {e}"))
                .into(),
        ))
    }

    /// An engine written in Rust: anything implementing [`EngineFactory`]
    /// (which builds [`Engine`](crate::Engine)s).
    pub fn factory(factory: impl EngineFactory + 'static) -> Self {
        Suite::new(Under::Factory(Arc::new(factory)))
    }

    /// The models of the per-model scenarios (default: the seed model and
    /// the conv fixtures).
    pub fn models(mut self, models: impl IntoIterator<Item = impl Into<PathBuf>>) -> Self {
        self.models = Some(models.into_iter().map(Into::into).collect());
        self
    }

    /// A fixed output tolerance instead of the bound the oracle derives for
    /// the engine's declared precision and error factor.
    pub fn tolerance(mut self, abs: f64, rel: f64) -> Self {
        self.tolerance = Some(Tolerance { abs, rel });
        self
    }

    /// The model-based property test's time budget (default 20 s).
    pub fn seconds(mut self, seconds: f64) -> Self {
        self.seconds = Some(seconds);
        self
    }

    /// How long each stress scenario races at least (default 500 ms).
    pub fn stress_ms(mut self, ms: u64) -> Self {
        self.stress_ms = Some(ms);
        self
    }

    /// How long a scenario may run before it is killed as hung (default
    /// 120 s, or `REFIT_TIMEOUT` with [`Suite::from_env`]).
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    /// The engine's own build options, a JSON object (a plugin receives
    /// them in `options_json`).
    ///
    /// # Panics
    /// On a suite of [`Suite::factory`]: a Rust engine's factory builds
    /// with its own options, and options it would never see must not pass
    /// as tested.
    pub fn engine_options(mut self, json: impl Into<String>) -> Self {
        match &mut self.under {
            Under::Spec(s) => s.options = Some(json.into()),
            Under::Factory(f) => panic!(
                "engine_options: the suite of {} builds its engines with its own factory, \
                 which takes its options itself",
                f.name()
            ),
        }
        self
    }

    /// Leaves these scenarios out (their tests pass without running, and
    /// say so): long ones on a slow device, say.
    pub fn skip<S: Into<String>>(mut self, scenarios: impl IntoIterator<Item = S>) -> Self {
        self.skip.extend(scenarios.into_iter().map(Into::into));
        self
    }

    /// Makes a scenario the engine skips (a model it refuses) fail: for a
    /// gate that needs full coverage.
    pub fn fail_on_skip(mut self) -> Self {
        self.fail_on_skip = true;
        self
    }

    /// Where `model_based` saves a failing case, replayed first by every
    /// later run of the test (default: `REFIT_REGRESSIONS`, else
    /// `refit-harness/<module>/model_based.txt` under the crate's
    /// `target/tmp`, which outlives the test).
    pub fn regressions(mut self, file: impl Into<PathBuf>) -> Self {
        self.regressions = Some(file.into());
        self
    }

    fn engine(&self) -> Box<dyn EngineFactory> {
        match &self.under {
            Under::Spec(spec) => Box::new(spec.clone()),
            Under::Factory(f) => Box::new(Shared(Arc::clone(f))),
        }
    }

    /// Runs one scenario as the test `module::scenario`, where `module` is
    /// the test's `module_path!()`: what each test of
    /// [`conformance_suite!`](crate::conformance_suite) calls.
    ///
    /// # Panics
    /// When the scenario fails (with its evidence), or is unknown.
    pub fn run(&self, scenario: &str, module: &str) {
        self.run_in_target(scenario, module, None);
    }

    /// [`Suite::run`], keeping failing cases under `target_tmp` (the
    /// calling crate's `CARGO_TARGET_TMPDIR`, which
    /// [`conformance_suite!`](crate::conformance_suite) passes).
    #[doc(hidden)]
    pub fn run_in_target(&self, scenario: &str, module: &str, target_tmp: Option<&str>) {
        assert!(
            check::scenario(scenario).is_some(),
            "unknown scenario '{scenario}'"
        );
        if self.skip.iter().any(|s| s == scenario) {
            let engine = self.engine().name();
            println!("{scenario} on {engine}: left out by the suite (not run)");
            return;
        }
        // In the child this test started: run the item and leave.
        if let Ok(job) = std::env::var(CHILD_ENV) {
            let mut parts = job.split('\n');
            let config = PathBuf::from(parts.next().unwrap_or_default());
            let item = parts.next().and_then(|i| i.parse().ok()).unwrap_or(0);
            let contract = parts.next() == Some("1");
            let code = isolate::child_run(self.engine().as_ref(), &config, item, contract);
            std::process::exit(if code == std::process::ExitCode::SUCCESS {
                0
            } else {
                2
            });
        }
        let scratch = tempfile::tempdir().expect("a scratch folder");
        let mut config =
            CheckConfig::with_fixtures(scratch.path()).expect("write the fixture models");
        if let Some(m) = &self.models {
            config.models = m.clone();
        }
        config.tolerance = self.tolerance;
        if let Some(s) = self.seconds {
            config.seconds = s;
        }
        if let Some(ms) = self.stress_ms {
            config.stress_ms = ms;
        }
        config.only = vec![scenario.to_string()];
        config.fail_on_skip = self.fail_on_skip;
        let saved = self.regressions.clone().unwrap_or_else(|| {
            let base = target_tmp.map(PathBuf::from).unwrap_or_else(|| {
                // target/<profile>/deps/<test binary> -> target/tmp
                std::env::current_exe()
                    .ok()
                    .and_then(|p| Some(p.parent()?.parent()?.parent()?.join("tmp")))
                    .unwrap_or_else(std::env::temp_dir)
            });
            base.join("refit-harness")
                .join(module.replace("::", "-"))
                .join("model_based.txt")
        });
        config.replay = Some(format!(
            "every later run of this test replays it first (`cargo test {scenario}`, \
             REFIT_REGRESSIONS=FILE for another file; delete the file to forget it)"
        ));
        config.regressions = Some(saved);
        // The test's name within its binary: the module path without the
        // crate's name.
        let test = match module.split_once("::") {
            Some((_, rest)) => format!("{rest}::{scenario}"),
            None => scenario.to_string(),
        };
        let factory = self.engine();
        let engine = factory.name();
        // The engine must build the seed model before anything is judged:
        // a plugin whose runtime is missing fails here with its own message.
        if let Err(e) = factory.open(
            &scratch
                .path()
                .join("models")
                .join(crate::fixtures::SEED_MODEL),
            &crate::engine::BuildOptions::default(),
        ) {
            panic!("{scenario} on {engine}: the engine cannot be built on the seed model: {e}");
        }
        let mut iso = Isolation::of(
            std::env::current_exe().expect("the test binary"),
            isolate::Child::Test {
                test,
                engine: factory.name(),
            },
        );
        iso.timeout = self.timeout;
        config.isolation = Some(iso);
        let report = check::run(factory.as_ref(), &config, &mut |_| {});
        let mut failures = Vec::new();
        for o in &report.outcomes {
            match &o.verdict {
                Verdict::Pass(d) => println!("{} {} on {engine}: pass: {d}", o.scenario, o.model),
                Verdict::Skip(d) => println!("{} {} on {engine}: skip: {d}", o.scenario, o.model),
                v => failures.push(format!(
                    "{} {}: {}: {}",
                    o.scenario,
                    o.model,
                    v.label(),
                    v.detail()
                )),
            }
        }
        if let Some(why) = report.refused_every_model() {
            failures.push(format!(
                "no model was judged: the engine refused every one as unsupported ({why})"
            ));
        }
        assert!(
            failures.is_empty(),
            "{} on {}:\n{}",
            scenario,
            report.engine,
            failures.join("\n")
        );
    }
}

/// A shared factory, as the box [`Suite`] hands to the checks.
struct Shared(Arc<dyn EngineFactory>);

impl EngineFactory for Shared {
    fn name(&self) -> String {
        self.0.name()
    }

    fn open(
        &self,
        model: &std::path::Path,
        options: &crate::engine::BuildOptions,
    ) -> crate::Result<Box<dyn crate::Engine>> {
        self.0.open(model, options)
    }
}

/// One `#[test]` per conformance scenario for the [`Suite`] the expression
/// gives (evaluated in each test), named after the scenarios, plus
/// `SCENARIOS`, the list of their names. See [`crate::suite`].
///
/// ```no_run
/// mod refit {
///     use refit_harness::suite::Suite;
///     refit_harness::conformance_suite!(Suite::from_env().skip(["resources"]));
/// }
/// ```
#[macro_export]
macro_rules! conformance_suite {
    ($suite:expr) => {
        $crate::__conformance_tests!(
            $suite;
            seed,
            refittable_parity,
            round_trip,
            partial_refit,
            bad_input,
            warm_equals_cold,
            history_independence,
            model_based,
            stress_r1w1,
            stress_r4w1,
            stress_r4w2,
            stress_cores_w1,
            stress_disjoint,
            stress_vendor,
            resources
        );
    };
}

/// The tests of [`conformance_suite!`], one per name.
#[doc(hidden)]
#[macro_export]
macro_rules! __conformance_tests {
    ($suite:expr; $($name:ident),* $(,)?) => {
        /// The scenarios this suite has a test for, in order.
        #[allow(dead_code)]
        pub const SCENARIOS: &[&str] = &[$(stringify!($name)),*];
        $(
            #[test]
            fn $name() {
                let suite: $crate::suite::Suite = $suite;
                suite.run_in_target(
                    stringify!($name),
                    module_path!(),
                    option_env!("CARGO_TARGET_TMPDIR"),
                );
            }
        )*
    };
}
