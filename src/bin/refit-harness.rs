//! The `refit-harness` command line.

use std::io::{IsTerminal, Write};
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context as _;
use clap::{Parser, Subcommand};

use refit_harness::check::EngineFactory as _;
use refit_harness::defects::Defect;
use refit_harness::engine::{BuildOptions, Engine};
use refit_harness::spec::EngineSpec;
use refit_harness::{bench, check, demo, fixtures, io, report, selftest};

/// Proves an inference engine's weight refit is correct.
#[derive(Parser)]
#[command(name = "refit-harness", version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// List a model's refittable weights: name, dtype, shape.
    Weights {
        /// The ONNX model.
        #[arg(long)]
        model: PathBuf,
        /// The engine: `reference`, `reference-strict`, `reference-quiesced`,
        /// `defect:NAME` or `plugin:PATH` (a library implementing
        /// include/refit_plugin.h).
        #[arg(long, default_value = "reference")]
        engine: String,
        #[command(flatten)]
        options: EngineOptions,
    },
    /// Load a model, apply each weight file as one refit in order, infer.
    Infer {
        /// The ONNX model.
        #[arg(long)]
        model: PathBuf,
        /// A `.safetensors` weight set keyed by initializer name; repeat to
        /// refit several times, in order.
        #[arg(long)]
        weights: Vec<PathBuf>,
        /// The input, `.npy`.
        #[arg(long)]
        input: PathBuf,
        /// Where to write the output, `.npy`.
        #[arg(long)]
        output: PathBuf,
        /// The engine: `reference`, `reference-strict`, `reference-quiesced`,
        /// `defect:NAME` or `plugin:PATH` (a library implementing
        /// include/refit_plugin.h).
        #[arg(long, default_value = "reference")]
        engine: String,
        #[command(flatten)]
        options: EngineOptions,
    },
    /// Write the seed model, the conv fixtures and the seed's tensor files.
    GenModel {
        /// The folder to write into (created if missing).
        #[arg(long)]
        out: PathBuf,
    },
    /// Run every conformance scenario against an engine; exits 1 if any
    /// fails, 2 on bad input (before anything runs).
    Check {
        /// The engine: `reference`, `reference-strict`, `reference-quiesced`,
        /// `defect:NAME` or `plugin:PATH` (a library implementing
        /// include/refit_plugin.h).
        #[arg(long, default_value = "reference")]
        engine: String,
        /// Models for the per-model scenarios (default: the seed model and
        /// the conv fixtures); repeatable.
        #[arg(long)]
        model: Vec<PathBuf>,
        /// Report folder (default: reports/<timestamp>).
        #[arg(long)]
        report: Option<PathBuf>,
        /// Run only these scenarios; repeatable.
        #[arg(long)]
        scenario: Vec<String>,
        /// Run every scenario (or every one of --scenario) but these;
        /// repeatable.
        #[arg(long)]
        skip_scenario: Vec<String>,
        #[command(flatten)]
        run: RunArgs,
    },
    /// Run the checks against every seeded-defect engine and the reference
    /// engine; exits 0 only if the reference passes and every defect is caught.
    Selftest {
        /// Time budget of the model-based property test per engine, in seconds.
        #[arg(long, default_value_t = 10.0, allow_negative_numbers = true)]
        seconds: f64,
        /// How long each stress scenario races at least, in milliseconds.
        #[arg(long, default_value_t = 500, allow_negative_numbers = true)]
        stress_ms: i64,
        /// Report folder (default: reports/<timestamp>-selftest).
        #[arg(long)]
        report: Option<PathBuf>,
        /// Seconds a scenario may run before it is killed and reported hung.
        #[arg(long, allow_negative_numbers = true)]
        timeout: Option<f64>,
    },
    /// Measure refit and inference as a sweep, each beside a same-run
    /// baseline; write bench.csv, SVG plots and summary.md.
    Bench {
        /// The engine: `reference`, `reference-strict`, `reference-quiesced`,
        /// `defect:NAME` or `plugin:PATH` (a library implementing
        /// include/refit_plugin.h).
        #[arg(long, default_value = "reference")]
        engine: String,
        /// Fewer samples, weights up to 16 MiB, ResNet-18 at 64x64: about two
        /// minutes on the reference engine (a full run five to six).
        #[arg(long)]
        quick: bool,
        /// The most samples per measurement (default 240, or 480 without
        /// --quick; an operation slower than a sample's 2-3 ms takes fewer,
        /// at least 6 a round): the confidence intervals narrow as one over
        /// its square root, as `gate`'s advice says when a change could not
        /// be judged.
        #[arg(long)]
        samples: Option<usize>,
        /// Rounds the sweep runs in, each taking its share of the samples
        /// (default 6, or 8 without --quick): a round that ran slow widens
        /// the intervals less, the more rounds there are.
        #[arg(long)]
        rounds: Option<usize>,
        #[command(flatten)]
        options: EngineOptions,
        /// Report folder (default: reports/<timestamp>-bench).
        #[arg(long)]
        out: Option<PathBuf>,
    },
    /// Compare two bench.csv runs; exit 1 if a benchmark got worse than the
    /// threshold beyond its noise. With --criterion, judge criterion's own
    /// change estimates instead.
    Gate {
        /// The stored baseline run.
        #[arg(
            long,
            required_unless_present = "criterion",
            conflicts_with = "criterion"
        )]
        baseline: Option<PathBuf>,
        /// The current run.
        #[arg(
            long,
            required_unless_present = "criterion",
            conflicts_with = "criterion"
        )]
        current: Option<PathBuf>,
        /// Criterion's output folder (`target/criterion`) after `cargo bench
        /// -- --baseline NAME`: exit 1 if a benchmark's change, whole
        /// confidence interval, lies above the threshold.
        #[arg(long)]
        criterion: Option<PathBuf>,
        /// Allowed slowdown in percent: a benchmark regressed when its
        /// change's lower bound (at the confidence corrected for the number
        /// of rows) lies above it, and is within when the upper bound (one-
        /// sided, 95%) lies at or below it.
        #[arg(long, default_value_t = 10.0, allow_negative_numbers = true)]
        max_regression: f64,
    },
    /// Run `count` refits of one weight of `bytes` bytes (or, with
    /// --memcpy, `count` copies of the same bytes; with --infer, `count`
    /// inferences of that model, the seed model for 36 bytes): the loops
    /// whose instructions ci/instructions.sh counts under callgrind.
    #[command(hide = true)]
    RefitLoop {
        /// The engine.
        #[arg(long, default_value = "reference")]
        engine: String,
        /// Bytes of the weight.
        #[arg(long)]
        bytes: usize,
        /// Iterations.
        #[arg(long)]
        count: usize,
        /// Copy the bytes instead of refitting them (the baseline).
        #[arg(long, conflicts_with = "infer")]
        memcpy: bool,
        /// Infer instead of refitting (an all-ones input, outputs reused).
        #[arg(long)]
        infer: bool,
    },
    /// Load the engine and build it on a model, exit 0, or print why not:
    /// `check`'s preflight, in a child process (with the sanitizer's
    /// runtime when there is one), so a crash there is reported too.
    #[command(hide = true)]
    LoadPlugin {
        /// The engine spec.
        #[arg(long)]
        engine: String,
        /// The model to build it on.
        #[arg(long)]
        model: Option<PathBuf>,
        #[command(flatten)]
        options: EngineOptions,
    },
    /// One scenario of a check, in a child process of `check` (prints
    /// its outcome on stdout).
    #[command(hide = true)]
    RunItem {
        /// The engine spec.
        #[arg(long)]
        engine: EngineSpec,
        #[command(flatten)]
        options: EngineOptions,
        /// The run's configuration, as `check` wrote it.
        #[arg(long)]
        config: PathBuf,
        /// The plan item to run.
        #[arg(long)]
        item: usize,
        /// Also report the contract declared on the first model.
        #[arg(long)]
        contract: bool,
    },
    /// The vendor's refit demos on the reference engine.
    Demo {
        /// The engine the demo runs on, serving the seed model: `reference`,
        /// or `plugin:PATH` to run the vendor's demo through a shim.
        #[arg(long, default_value = "reference", global = true)]
        engine: String,
        #[command(flatten)]
        options: EngineOptions,
        #[command(subcommand)]
        which: DemoCommand,
    },
}

/// How a check runs: budgets, tolerances, what counts as a failure.
#[derive(clap::Args, Clone, Debug)]
struct RunArgs {
    /// Time budget of the model-based property test, in seconds (> 0).
    #[arg(long, default_value_t = 20.0, allow_negative_numbers = true)]
    seconds: f64,
    /// How long each stress scenario races at least, in milliseconds (> 0).
    #[arg(long, default_value_t = 500, allow_negative_numbers = true)]
    stress_ms: i64,
    /// Stress scenarios below their minimum power race on until this many
    /// milliseconds in all, then are inconclusive.
    #[arg(long, default_value_t = 10_000, allow_negative_numbers = true)]
    stress_cap_ms: i64,
    /// A fixed absolute tolerance replacing the oracle's error bound.
    #[arg(long, allow_negative_numbers = true)]
    abs_tolerance: Option<f64>,
    /// A fixed relative tolerance replacing the oracle's error bound.
    #[arg(long, allow_negative_numbers = true)]
    rel_tolerance: Option<f64>,
    /// Count inconclusive stress runs as skips instead of failures.
    #[arg(long)]
    allow_inconclusive: bool,
    /// Count every skip as a failure: a gate that needs full coverage.
    #[arg(long)]
    fail_on_skip: bool,
    /// Replay the failing model_based seeds saved in this file (one a
    /// failed run named) before new cases; it must exist. New failing seeds
    /// are saved in the report folder (proptest-regressions/model_based.txt).
    #[arg(long, value_name = "FILE")]
    regressions: Option<PathBuf>,
    /// Seconds a scenario may run before it is killed and reported hung.
    #[arg(long, default_value_t = 120.0, allow_negative_numbers = true)]
    timeout: f64,
    /// Run the scenarios in this process instead of one child process
    /// each (for a debugger; a crash then ends the run).
    #[arg(long)]
    in_process: bool,
    /// Preload this sanitizer's runtime (`thread` or `address`) into each
    /// scenario's child process, for a plugin built with
    /// `-fsanitize=thread` or `-fsanitize=address`; a sanitizer report
    /// fails the scenario with its kind and the engine's frames.
    #[arg(long, value_name = "thread|address")]
    sanitizer: Option<check::sanitizer::Sanitizer>,
    #[command(flatten)]
    options: EngineOptions,
}

/// The engine's own build options.
#[derive(clap::Args, Clone, Debug, Default)]
struct EngineOptions {
    /// A JSON object passed to the engine's build unchanged (a plugin gets
    /// its members in `options_json` beside `enable_refit`), e.g.
    /// '{"device": 1, "precision": "f16"}'.
    #[arg(long = "engine-options", value_name = "JSON")]
    json: Option<String>,
}

impl EngineOptions {
    /// Checked: a JSON object, or nothing.
    fn get(&self) -> anyhow::Result<Option<String>> {
        if let Some(j) = &self.json {
            refit_harness::engine::parse_engine_options(j)
                .with_context(|| "--engine-options".to_string())?;
        }
        Ok(self.json.clone())
    }

    /// The engine under test: `spec` with these options.
    fn engine(&self, spec: EngineSpec) -> anyhow::Result<check::SpecFactory> {
        Ok(check::SpecFactory {
            spec,
            options: self.get()?,
        })
    }
}

impl RunArgs {
    /// Rejects budgets that would run nothing, and tolerances that are not
    /// numbers.
    fn validate(&self) -> anyhow::Result<()> {
        anyhow::ensure!(
            self.seconds.is_finite() && self.seconds > 0.0,
            "--seconds: expected a time budget above 0, found {}",
            self.seconds
        );
        anyhow::ensure!(
            self.stress_ms > 0,
            "--stress-ms: expected a duration above 0 ms, found {}",
            self.stress_ms
        );
        anyhow::ensure!(
            self.stress_cap_ms > 0,
            "--stress-cap-ms: expected a duration above 0 ms, found {}",
            self.stress_cap_ms
        );
        anyhow::ensure!(
            self.timeout.is_finite() && self.timeout > 0.0,
            "--timeout: expected seconds above 0, found {}",
            self.timeout
        );
        self.options.get()?;
        if let Some(s) = self.sanitizer {
            anyhow::ensure!(
                !self.in_process,
                "--sanitizer {}: needs the child processes that --in-process turns off",
                s.name()
            );
            s.runtime()?;
        }
        for (flag, v) in [
            ("--abs-tolerance", self.abs_tolerance),
            ("--rel-tolerance", self.rel_tolerance),
        ] {
            if let Some(v) = v {
                anyhow::ensure!(
                    v.is_finite() && v >= 0.0,
                    "{flag}: expected a finite number >= 0, found {v}"
                );
            }
        }
        Ok(())
    }

    fn tolerance(&self) -> Option<check::Tolerance> {
        (self.abs_tolerance.is_some() || self.rel_tolerance.is_some()).then(|| check::Tolerance {
            abs: self.abs_tolerance.unwrap_or(0.0),
            rel: self.rel_tolerance.unwrap_or(0.0),
        })
    }
}

#[derive(Subcommand)]
enum DemoCommand {
    /// Infer (0), refit the kernel to all ones, infer again (9).
    SingleThread,
    /// One thread infers in a loop while another refits all-0 .. all-9.
    MultiThread {
        /// Milliseconds between refits.
        #[arg(long, default_value_t = 1000, allow_negative_numbers = true)]
        interval_ms: i64,
        /// Run the history checker over what the demo did and print its
        /// verdict; exit 1 on a violation.
        #[arg(long)]
        verify: bool,
    },
}

fn open(
    engine: &str,
    model: &std::path::Path,
    options: &EngineOptions,
) -> anyhow::Result<Box<dyn Engine>> {
    let engine = options.engine(engine.parse()?)?;
    Ok(engine.open(model, &BuildOptions::default())?)
}

/// Progress on stderr. Live updates from a stress run overwrite the line
/// with `\r`, so the verdict line repeats the scenario's prefix.
fn progress(p: check::Progress<'_>, prefix: &mut String) {
    match p {
        check::Progress::Start {
            index,
            total,
            scenario,
            model,
        } => {
            *prefix = format!("[{index:>3}/{total}] {scenario} {model} ... ");
            eprint!("{prefix}");
        }
        check::Progress::Done(o) => {
            let line = format!(
                "{prefix}{} ({:.0} ms)",
                o.verdict.label(),
                o.elapsed.as_secs_f64() * 1000.0
            );
            if std::io::stderr().is_terminal() {
                // Over whatever a stress run's live counter left.
                eprintln!("\r{line:<80}");
            } else {
                eprintln!("{}", &line[prefix.len()..]);
            }
        }
    }
}

/// An error naming `name` (`where_` says which option gave it) unless it
/// is a scenario.
fn known_scenario(name: &str, where_: &str) -> anyhow::Result<()> {
    anyhow::ensure!(
        check::scenario(name).is_some(),
        "unknown scenario '{name}'{where_}: expected one of {}",
        check::scenarios()
            .iter()
            .map(|s| s.name)
            .collect::<Vec<_>>()
            .join(", ")
    );
    Ok(())
}

/// The scenarios to run: `only` (every one when empty) but `skip`, each
/// name checked.
fn without(only: Vec<String>, skip: &[String]) -> anyhow::Result<Vec<String>> {
    if skip.is_empty() {
        return Ok(only);
    }
    for s in skip {
        known_scenario(s, " in --skip-scenario")?;
    }
    let all: Vec<String> = if only.is_empty() {
        check::scenarios()
            .iter()
            .map(|s| s.name.to_string())
            .collect()
    } else {
        only
    };
    let left: Vec<String> = all.into_iter().filter(|s| !skip.contains(s)).collect();
    anyhow::ensure!(
        !left.is_empty(),
        "--skip-scenario leaves no scenario to run"
    );
    Ok(left)
}

/// Checks everything the user gave before anything runs: the scenario
/// names, every model readable by the oracle, the engine built on the seed
/// model (in a child process unless `in_process`).
#[allow(clippy::too_many_arguments)]
fn preflight(
    engine: &check::SpecFactory,
    models: &[PathBuf],
    only: &[String],
    sanitizer: Option<check::sanitizer::Sanitizer>,
    seed: &std::path::Path,
    in_process: bool,
) -> anyhow::Result<()> {
    let spec = &engine.spec;
    for s in only {
        known_scenario(s, "")?;
    }
    for m in models {
        anyhow::ensure!(
            m.is_file(),
            "--model {}: expected an ONNX model file, found {}",
            m.display(),
            if m.is_dir() {
                "a folder"
            } else {
                "no such file"
            }
        );
        // A model with ops the oracle lacks is the scenarios' to skip,
        // naming them; a file that is not a model stops the run.
        match refit_harness::model::Model::load(m) {
            Err(e) if !e.is_unsupported() => {
                return Err(anyhow::Error::new(e).context(format!(
                    "--model {}: the harness's oracle cannot read it",
                    m.display()
                )))
            }
            _ => {}
        }
    }
    if let (EngineSpec::Plugin(path), None) = (spec, sanitizer) {
        drop(refit_harness::ffi::Plugin::load(path)?);
    }
    // Every engine must build the seed model: one that cannot (a plugin
    // that does not load, a runtime library not found, an option it does
    // not take) stops the run before any scenario, with its own message.
    let what = format!(
        "{spec}: the engine cannot be built on the seed model ({}), which every engine must run",
        seed.file_name().map_or_else(
            || seed.display().to_string(),
            |n| n.to_string_lossy().into_owned()
        )
    );
    if in_process {
        engine
            .open(seed, &BuildOptions::default())
            .map(drop)
            .with_context(|| what.clone())?;
        return Ok(());
    }
    let mut child = std::process::Command::new(std::env::current_exe()?);
    child
        .args(["load-plugin", "--engine", &spec.to_string(), "--model"])
        .arg(seed);
    if let Some(j) = &engine.options {
        child.args(["--engine-options", j]);
    }
    if let Some(s) = sanitizer {
        child.envs(s.env()?);
    }
    let out = child.output()?;
    if !out.status.success() {
        use std::os::unix::process::ExitStatusExt;
        let err = String::from_utf8_lossy(&out.stderr);
        let line = err
            .lines()
            .find(|l| l.starts_with("error: "))
            .or_else(|| err.lines().rfind(|l| !l.trim().is_empty()))
            .unwrap_or("no message")
            .trim_start_matches("error: ")
            .to_string();
        let line = match out.status.signal() {
            Some(sig) => format!("the engine crashed (signal {sig}) while being built: {line}"),
            None => line,
        };
        match sanitizer {
            Some(s) => anyhow::bail!("{what}: {line} (with the {} sanitizer runtime)", s.name()),
            None => anyhow::bail!("{what}: {line}"),
        }
    }
    Ok(())
}

/// Runs the check after its preflight; report files go under `report`.
/// `gate --criterion DIR`: criterion's change estimates, each judged on
/// its whole confidence interval.
fn criterion_gate(dir: &std::path::Path, max_regression: f64) -> anyhow::Result<ExitCode> {
    let changes = bench::criterion_changes(dir, max_regression)?;
    anyhow::ensure!(
        !changes.is_empty(),
        "--criterion {}: no change estimates (run `cargo bench -- --baseline NAME` against a saved baseline first)",
        dir.display()
    );
    let report = bench::gate::criterion_report(&changes, max_regression);
    print!("{}", report.table);
    if let Some(e) = &report.error {
        eprintln!("error: {e}");
    }
    Ok(ExitCode::from(report.exit))
}

fn run_check(
    spec: &EngineSpec,
    models: Vec<PathBuf>,
    only: Vec<String>,
    args: &RunArgs,
    scratch: &std::path::Path,
    report: &std::path::Path,
) -> anyhow::Result<check::CheckReport> {
    args.validate()?;
    let engine = args.options.engine(spec.clone())?;
    let mut config = check::CheckConfig::with_fixtures(scratch)?;
    preflight(
        &engine,
        &models,
        &only,
        args.sanitizer,
        &scratch.join("models").join(fixtures::SEED_MODEL),
        args.in_process,
    )?;
    if !models.is_empty() {
        config.models = models;
    }
    config.seconds = args.seconds;
    config.stress_ms = args.stress_ms as u64;
    config.stress_cap_ms = args.stress_cap_ms as u64;
    config.only = only;
    config.tolerance = args.tolerance();
    config.allow_inconclusive = args.allow_inconclusive;
    config.fail_on_skip = args.fail_on_skip;
    config.live = std::io::stderr().is_terminal();
    let saved = report.join("proptest-regressions").join("model_based.txt");
    if let Some(replay) = &args.regressions {
        // The seeds to replay go first into the file this run saves to,
        // which proptest replays from.
        let seeds = std::fs::read(replay).with_context(|| {
            format!(
                "--regressions {}: expected a file of saved seeds to replay",
                replay.display()
            )
        })?;
        if let Some(dir) = saved.parent() {
            std::fs::create_dir_all(dir).with_context(|| format!("create {}", dir.display()))?;
        }
        std::fs::write(&saved, seeds).with_context(|| format!("write {}", saved.display()))?;
    }
    config.regressions = Some(saved);
    config.plots = Some(report.to_path_buf());
    if !args.in_process {
        let mut iso = check::Isolation::current_exe(engine.clone())?;
        iso.timeout = Duration::from_secs_f64(args.timeout);
        if let Some(s) = args.sanitizer {
            iso = iso.with_sanitizer(s)?;
        }
        config.isolation = Some(iso);
    }
    let mut prefix = String::new();
    Ok(check::run(&engine, &config, &mut |p| {
        progress(p, &mut prefix)
    }))
}

fn run(cli: Cli) -> anyhow::Result<ExitCode> {
    let stdout = &mut std::io::stdout();
    match cli.command {
        Command::Weights {
            model,
            engine,
            options,
        } => {
            let engine = open(&engine, &model, &options)?;
            for w in engine.weights() {
                println!("{}\t{}\t{}", w.name, w.dtype, w.shape_text());
            }
        }
        Command::Infer {
            model,
            weights,
            input,
            output,
            engine,
            options,
        } => {
            let engine = open(&engine, &model, &options)?;
            let x = io::read_npy(&input)?;
            for path in &weights {
                let set = io::read_weights(path)?;
                refit_harness::engine::refit_all(
                    engine.as_ref(),
                    set.iter().map(|(n, t)| (n.as_str(), t)),
                )
                .map_err(|e| e.in_file(path))?;
            }
            let mut ctx = engine.context()?;
            let y = ctx.infer(&[x]).map_err(|e| e.in_file(&input))?;
            let y = y
                .into_iter()
                .next()
                .context("the model produced no output")?;
            io::write_npy(&output, &y)?;
            println!("wrote {} ({} {:?})", output.display(), y.dtype(), y.shape);
        }
        Command::LoadPlugin {
            engine,
            model,
            options,
        } => {
            let engine = options.engine(engine.parse()?)?;
            if let EngineSpec::Plugin(path) = &engine.spec {
                refit_harness::ffi::Plugin::load(path)?;
            }
            if let Some(m) = model {
                drop(engine.open(&m, &BuildOptions::default())?);
            }
        }
        Command::RunItem {
            engine,
            options,
            config,
            item,
            contract,
        } => {
            let engine = options.engine(engine)?;
            return Ok(check::isolate::child_main(&engine, &config, item, contract));
        }
        Command::GenModel { out } => {
            for path in fixtures::write_all(&out)? {
                println!("wrote {}", path.display());
            }
        }
        Command::Check {
            engine,
            model,
            report,
            scenario,
            skip_scenario,
            run,
        } => {
            let spec: EngineSpec = engine.parse()?;
            let scenario = without(scenario, &skip_scenario)?;
            let scratch = tempfile::tempdir()?;
            let dir = report.unwrap_or_else(|| report::run_dir("reports".as_ref()));
            let r = run_check(&spec, model, scenario, &run, scratch.path(), &dir)?;
            let files = report::write(&r, &dir)?;
            // The report is written first; a reader that closes the pipe
            // early (`check | head -1`) ends only the printing.
            let mut out = stdout.lock();
            let _ = write!(out, "{}", report::table(&r, width()));
            for p in files {
                let _ = writeln!(out, "wrote {}", p.display());
            }
            if let Some(why) = r.refused_every_model() {
                eprintln!(
                    "check: no model was judged: the engine refused every one as unsupported ({why}); \
                     a feature the engine lacks is a skip, an engine that builds nothing is broken"
                );
                return Ok(ExitCode::from(1));
            }
            if r.failed() {
                return Ok(ExitCode::from(1));
            }
        }
        Command::Selftest {
            seconds,
            stress_ms,
            report,
            timeout,
        } => {
            anyhow::ensure!(
                seconds.is_finite() && seconds > 0.0,
                "--seconds: expected a time budget above 0, found {seconds}"
            );
            anyhow::ensure!(
                stress_ms > 0,
                "--stress-ms: expected a duration above 0 ms, found {stress_ms}"
            );
            if let Some(t) = timeout {
                anyhow::ensure!(
                    t.is_finite() && t > 0.0,
                    "--timeout: expected seconds above 0, found {t}"
                );
            }
            let scratch = tempfile::tempdir()?;
            let dir = report.unwrap_or_else(|| {
                let mut d = report::run_dir("reports".as_ref()).into_os_string();
                d.push("-selftest");
                d.into()
            });
            let mut engines = vec![
                EngineSpec::Reference,
                EngineSpec::ReferenceStrict,
                EngineSpec::ReferenceQuiesced,
            ];
            engines.extend(Defect::ALL.map(EngineSpec::Defect));
            let mut reports = Vec::new();
            for spec in &engines {
                eprintln!("== {spec}");
                // Every fixture but the wide one, which adds time and no
                // case the others lack.
                let models: Vec<PathBuf> = fixtures::models()
                    .into_iter()
                    .filter(|(name, _)| *name != "conv_wide.onnx")
                    .map(|(name, _)| scratch.path().join("models").join(name))
                    .collect();
                let engine_dir = dir.join(spec.to_string().replace(':', "-"));
                let args = RunArgs {
                    seconds,
                    stress_ms,
                    stress_cap_ms: 10_000,
                    abs_tolerance: None,
                    rel_tolerance: None,
                    allow_inconclusive: false,
                    fail_on_skip: false,
                    regressions: None,
                    timeout: timeout.unwrap_or(120.0),
                    in_process: false,
                    sanitizer: None,
                    options: EngineOptions::default(),
                };
                let r = run_check(spec, models, Vec::new(), &args, scratch.path(), &engine_dir)?;
                report::write(&r, &engine_dir)?;
                reports.push(r);
            }
            let mut m = selftest::matrix(&reports);
            // The plugin faults, where a C compiler is at hand, and the
            // sanitizers' catches, where their runtime is.
            m.add_faults(&selftest::faults(scratch.path(), &std::env::current_exe()?));
            print!("{}", m.text);
            println!("{}", m.verdict_line());
            std::fs::create_dir_all(&dir)?;
            std::fs::write(dir.join("selftest.md"), &m.markdown)?;
            println!("wrote {}", dir.join("selftest.md").display());
            if !m.ok {
                return Ok(ExitCode::from(1));
            }
        }
        Command::Bench {
            engine,
            quick,
            samples,
            rounds,
            out,
            options,
        } => {
            let engine = options.engine(engine.parse()?)?;
            let scratch = tempfile::tempdir()?;
            let mut cfg = bench::BenchConfig::new(quick, scratch.path());
            if let Some(n) = samples {
                anyhow::ensure!(
                    (5..=100_000).contains(&n),
                    "--samples: expected 5 to 100000 samples per measurement, found {n}"
                );
                cfg.samples = n;
            }
            if let Some(r) = rounds {
                anyhow::ensure!(
                    (1..=1000).contains(&r),
                    "--rounds: expected 1 to 1000 rounds, found {r}"
                );
                cfg.rounds = r;
            }
            let rows = bench::run(&engine, &cfg, &mut |m| eprintln!("  measuring {m}"))?;
            let dir = out.unwrap_or_else(|| {
                let mut d = report::run_dir("reports".as_ref()).into_os_string();
                d.push("-bench");
                d.into()
            });
            for p in bench::write_report(&rows, &dir)? {
                println!("wrote {}", p.display());
            }
            print!(
                "{}",
                bench::summary(&rows)
                    .split("\n![")
                    .next()
                    .unwrap_or_default()
            );
        }
        Command::Gate {
            baseline,
            current,
            criterion,
            max_regression,
        } => {
            anyhow::ensure!(
                max_regression.is_finite() && max_regression >= 0.0,
                "--max-regression: expected a percentage >= 0, found {max_regression}"
            );
            if let Some(dir) = criterion {
                return criterion_gate(&dir, max_regression);
            }
            let (Some(baseline), Some(current)) = (baseline, current) else {
                anyhow::bail!("gate: --baseline and --current, or --criterion");
            };
            let before = bench::read_csv(&baseline)?;
            let after = bench::read_csv(&current)?;
            let rows = bench::gate(&before, &after, max_regression);
            anyhow::ensure!(
                !rows.is_empty(),
                "{} and {} share no benchmark to compare",
                baseline.display(),
                current.display()
            );
            let report = bench::gate::report(&rows, max_regression);
            print!("{}", report.table);
            if let Some(e) = &report.error {
                eprintln!("error: {e}");
            }
            if report.exit != 0 {
                return Ok(ExitCode::from(report.exit));
            }
        }
        Command::RefitLoop {
            engine,
            bytes,
            count,
            memcpy,
            infer,
        } => {
            let spec: EngineSpec = engine.parse()?;
            let scratch = tempfile::tempdir()?;
            let what = if infer {
                bench::loops::Loop::Infer
            } else if memcpy {
                bench::loops::Loop::Memcpy
            } else {
                bench::loops::Loop::Refit
            };
            bench::loops::run(&spec, scratch.path(), bytes, count, what)?;
        }
        Command::Demo {
            engine,
            options,
            which,
        } => {
            let scratch = tempfile::tempdir()?;
            let seed = scratch.path().join("seed_conv.onnx");
            std::fs::write(&seed, fixtures::seed_model().to_bytes())?;
            let engine = open(&engine, &seed, &options)?;
            let engine = engine.as_ref();
            match which {
                DemoCommand::SingleThread => {
                    demo::single_thread(engine, stdout)?;
                }
                DemoCommand::MultiThread {
                    interval_ms,
                    verify,
                } => {
                    anyhow::ensure!(
                        interval_ms > 0,
                        "--interval-ms: expected a duration above 0 ms, found {interval_ms}"
                    );
                    let run = demo::multi_thread(
                        engine,
                        Duration::from_millis(interval_ms as u64),
                        stdout,
                    )?;
                    if verify {
                        let (ok, line) = demo::verify(&run);
                        println!("{line}");
                        if !ok {
                            return Ok(ExitCode::from(1));
                        }
                    }
                }
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// The console's width in columns: `COLUMNS` when set, else the terminal's,
/// else 120 (not a terminal).
fn width() -> usize {
    std::env::var("COLUMNS")
        .ok()
        .and_then(|c| c.trim().parse::<usize>().ok())
        .filter(|&w| w > 0)
        .or_else(|| {
            terminal_size::terminal_size_of(std::io::stdout())
                .or_else(|| terminal_size::terminal_size_of(std::io::stderr()))
                .map(|(w, _)| usize::from(w.0))
        })
        .unwrap_or(120)
}

fn main() -> ExitCode {
    use clap::{CommandFactory, FromArgMatches};
    let matches = Cli::command().term_width(width()).get_matches();
    let cli = match Cli::from_arg_matches(&matches) {
        Ok(c) => c,
        Err(e) => e.exit(),
    };
    match run(cli) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::from(2)
        }
    }
}
