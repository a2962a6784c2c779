//! The child's side: run one plan item of the parent's configuration and
//! print its outcome.

use std::io::Write;
use std::path::Path;
use std::process::ExitCode;

use super::wire::{config_from_json, Outcome};
use super::{CONTRACT_MARK, OUTCOME_MARK};
use crate::check::{plan, run_one, Cx, EngineFactory, SpecFactory};
use crate::engine::BuildOptions;

/// The `run-item` command: runs plan item `item` of the configuration in
/// `config` on `engine` (with its own options) and prints its outcome.
/// Exit code 0 whenever an outcome was printed.
pub fn child_main(engine: &SpecFactory, config: &Path, item: usize, contract: bool) -> ExitCode {
    child_run(engine, config, item, contract)
}

/// Runs plan item `item` of the configuration in `config` on the engine
/// `factory` makes and prints its outcome: the body of every child
/// process, whether the harness binary (`run-item`) or a test binary
/// ([`crate::suite`]).
pub(crate) fn child_run(
    factory: &dyn EngineFactory,
    config: &Path,
    item: usize,
    contract: bool,
) -> ExitCode {
    crate::flight::enable();
    let fail = |why: String| {
        eprintln!("refit-harness child: {why}");
        ExitCode::from(2)
    };
    let text = match std::fs::read_to_string(config) {
        Ok(t) => t,
        Err(e) => return fail(format!("{}: {e}", config.display())),
    };
    let config = match serde_json::from_str(&text)
        .map_err(|e| crate::Error::ChildConfig(e.to_string()))
        .and_then(|v| config_from_json(&v))
    {
        Ok(c) => c,
        Err(e) => return fail(format!("{}: {e}", config.display())),
    };
    let plan = plan(&config);
    let Some((scenario, model)) = plan.get(item) else {
        return fail(format!("item {item} of {}", plan.len()));
    };
    let declared = if contract {
        crate::flight::step("open the first model to read the contract");
        config.models.first().and_then(|m| {
            factory
                .open(m, &BuildOptions::default())
                .ok()
                .map(|e| e.info().contract)
        })
    } else {
        None
    };
    if let Some(c) = declared {
        let mut out = std::io::stdout().lock();
        let _ = writeln!(out, "{CONTRACT_MARK}{c}");
        let _ = out.flush();
    }
    let cx = Cx::new(factory, &config);
    let verdict = run_one(scenario, &cx, model.as_deref().unwrap_or(Path::new("")));
    let line = serde_json::to_string(&Outcome {
        verdict,
        error_ratio: cx.worst.take(),
    })
    .unwrap_or_default();
    let mut out = std::io::stdout().lock();
    let _ = writeln!(out, "\n{OUTCOME_MARK}{line}");
    let _ = out.flush();
    ExitCode::SUCCESS
}
