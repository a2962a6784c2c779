//! The faulty plugins of `plugins/faulty.c`, built with the system C
//! compiler, and what `selftest` expects of each: load faults refused with
//! their own error, a failure without a message reported as such, garbage
//! caught by the checks.

use std::path::{Path, PathBuf};
use std::process::Command;

use crate::check::sanitizer::Sanitizer;
use crate::check::{self, CheckConfig};
use crate::engine::{refit_all, BuildOptions};
use crate::ffi::{LoadError, Plugin};
use crate::spec::EngineSpec;
use crate::{Error, Tensor};

/// The faults `plugins/faulty.c` can be built with (`-DFAULT_<NAME>`).
pub(crate) const FAULTS: [&str; 9] = [
    "WRONG_VERSION",
    "NO_ENTRY_POINT",
    "NULL_SLOT",
    "NO_MESSAGE",
    "GARBAGE_AFTER_REFIT",
    "SEGV_IN_INFER",
    "ABORT_IN_REFIT",
    "HANG_IN_REFIT",
    "HANG_INFER_WHILE_REFIT",
];

/// The timeout [`verdict`] gives the hanging faults.
pub(crate) const HANG_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(3);

/// The repository's source of the faulty plugins.
pub fn source() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("plugins/faulty.c")
}

/// Builds `plugins/faulty.c` with `-DFAULT_<fault>` into `dir` with `cc`
/// (or `$CC`); returns the library.
///
/// # Errors
/// [`crate::Error::Build`] when the compiler cannot be run or fails.
pub fn build(fault: &str, dir: &Path) -> crate::Result<PathBuf> {
    compile(&source(), "fault", fault, dir, &[])
}

/// The builds of `plugins/example.c`: `NONE` (the example shim, correct:
/// 2-D convolutions, every other model refused as unsupported) and `TORN`
/// (weights copied in place while inferences run, declaring atomic); the
/// buffer faults are [`BUFFER_FAULTS`].
pub const EXAMPLE_FAULTS: [&str; 2] = ["NONE", "TORN"];

/// The repository's example plugin, `plugins/example.c`.
pub fn example_source() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("plugins/example.c")
}

/// Builds `plugins/example.c` with `-DFAULT_<fault>` into `dir`; returns
/// the library.
///
/// # Errors
/// [`crate::Error::Build`] when the compiler cannot be run or fails.
pub fn build_example(fault: &str, dir: &Path) -> crate::Result<PathBuf> {
    compile(&example_source(), "example", fault, dir, &[])
}

/// The defect each sanitizer is shown catching: the plugin source, its
/// fault, and the scenario that meets it. ThreadSanitizer sees the example
/// copying weights in place while inferences read them; AddressSanitizer
/// sees `faulty.c` freeing weights an inference still reads (outputs
/// usually stay plausible, so the checks alone mostly pass it).
pub fn sanitizer_defect(sanitizer: Sanitizer) -> (PathBuf, &'static str, &'static str) {
    match sanitizer {
        Sanitizer::Thread => (example_source(), "TORN", "stress_r1w1"),
        Sanitizer::Address => (source(), "USE_AFTER_FREE", "stress_vendor"),
    }
}

/// Builds `src` with `-DFAULT_<fault>` and `-fsanitize=<sanitizer>` into
/// `dir`; returns the library.
///
/// # Errors
/// [`crate::Error::Build`] when the compiler cannot be run or fails.
pub fn build_sanitized(
    src: &Path,
    fault: &str,
    sanitizer: Sanitizer,
    dir: &Path,
) -> crate::Result<PathBuf> {
    let stem = format!(
        "{}_{}san",
        src.file_stem()
            .map_or_else(String::new, |s| s.to_string_lossy().into_owned()),
        &sanitizer.name()[..1]
    );
    compile(
        src,
        &stem,
        fault,
        dir,
        &[&format!("-fsanitize={}", sanitizer.name()), "-g", "-O1"],
    )
}

/// Whether `sanitizer` caught its defect ([`sanitizer_defect`]) in a
/// check with the runtime preloaded, and how.
pub fn sanitizer_verdict(sanitizer: Sanitizer, scratch: &Path, harness: &Path) -> (bool, String) {
    let (src, fault, scenario) = sanitizer_defect(sanitizer);
    let lib = match build_sanitized(&src, fault, sanitizer, &scratch.join("c-plugins")) {
        Ok(l) => l,
        Err(e) => return (false, e.to_string()),
    };
    let spec = EngineSpec::Plugin(lib);
    let isolation = match check::Isolation::new(harness, spec.clone()).with_sanitizer(sanitizer) {
        Ok(i) => i,
        Err(e) => return (false, e.to_string()),
    };
    let config = CheckConfig {
        only: vec![scenario.into()],
        regressions: None,
        stress_ms: 300,
        isolation: Some(isolation),
        ..match CheckConfig::with_fixtures(scratch) {
            Ok(c) => c,
            Err(e) => return (false, e.to_string()),
        }
    };
    let r = check::run(&spec, &config, &mut |_| {});
    let tool = match sanitizer {
        Sanitizer::Thread => "ThreadSanitizer: data race",
        Sanitizer::Address => "AddressSanitizer: heap-use-after-free",
    };
    match r.outcomes.first() {
        Some(o)
            if matches!(o.verdict, check::Verdict::Fail(_))
                && o.verdict.detail().contains(tool) =>
        {
            (
                true,
                format!(
                    "{} by {}: {}",
                    o.verdict.label(),
                    o.scenario,
                    o.verdict.detail()
                ),
            )
        }
        Some(o) => (
            false,
            format!(
                "{} by {}: {}",
                o.verdict.label(),
                o.scenario,
                o.verdict.detail()
            ),
        ),
        None => (false, format!("{scenario} did not run")),
    }
}

fn compile(
    src: &Path,
    stem: &str,
    fault: &str,
    dir: &Path,
    extra: &[&str],
) -> crate::Result<PathBuf> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let error = |reason: String| crate::Error::Build {
        file: src.to_path_buf(),
        reason,
    };
    std::fs::create_dir_all(dir).map_err(|e| error(format!("create {}: {e}", dir.display())))?;
    let lib = dir.join(format!(
        "lib{stem}_{}{}",
        fault.to_lowercase(),
        std::env::consts::DLL_SUFFIX
    ));
    let cc = std::env::var("CC").unwrap_or_else(|_| "cc".into());
    let out = Command::new(&cc)
        .args(["-shared", "-fPIC", "-O2", "-Wall", "-Werror", "-pthread"])
        .arg("-I")
        .arg(root.join("include"))
        .arg(format!("-DFAULT_{fault}"))
        .args(extra)
        .arg(src)
        .arg("-o")
        .arg(&lib)
        .arg("-lm")
        .output()
        .map_err(|e| error(format!("cannot run the C compiler '{cc}': {e}")))?;
    if !out.status.success() {
        return Err(error(format!(
            "{cc} failed for FAULT_{fault}: {}",
            String::from_utf8_lossy(&out.stderr)
        )));
    }
    Ok(lib)
}

/// Whether the harness caught `fault`, and how. `harness` is the
/// `refit-harness` binary, which runs the checks' child processes.
pub fn verdict(fault: &str, lib: &Path, scratch: &Path, harness: &Path) -> (bool, String) {
    let seed = scratch.join("seed_conv.onnx");
    if let Err(e) = std::fs::write(&seed, crate::fixtures::seed_model().to_bytes()) {
        return (false, format!("cannot write {}: {e}", seed.display()));
    }
    let load = Plugin::load(lib);
    let load_error = |want: fn(&LoadError) -> bool| match &load {
        Err(Error::PluginLoad(e)) if want(e) => (true, format!("refused at load: {e}")),
        Err(e) => (false, format!("refused with the wrong error: {e}")),
        Ok(_) => (false, "loaded".into()),
    };
    match fault {
        "WRONG_VERSION" => load_error(|e| matches!(e, LoadError::UnsupportedVersion { .. })),
        "NO_ENTRY_POINT" => load_error(|e| matches!(e, LoadError::MissingEntryPoint { .. })),
        "NULL_SLOT" => load_error(|e| matches!(e, LoadError::NullSlot { .. })),
        "NO_MESSAGE" => {
            let spec = EngineSpec::Plugin(lib.to_path_buf());
            match spec.open(&seed, &BuildOptions::default()) {
                Err(e) => (false, format!("did not load: {e}")),
                Ok(engine) => {
                    match refit_all(engine.as_ref(), [("weight", &Tensor::full([10], 1.0))]) {
                        Err(e) if e.to_string().contains("failed without a message") => {
                            (true, format!("reported: {e}"))
                        }
                        Err(e) => (
                            false,
                            format!("the error does not say the message is missing: {e}"),
                        ),
                        Ok(()) => (false, "a wrong shape was accepted".into()),
                    }
                }
            }
        }
        _ => {
            // The scenario that meets the fault, and what its row must say.
            let (scenario, label, words): (&str, &str, &[&str]) = match fault {
                "SEGV_IN_INFER" => ("seed", "CRASHED", &["SIGSEGV", "in flight: infer"]),
                "ABORT_IN_REFIT" => ("seed", "CRASHED", &["SIGABRT", "refitter_refit"]),
                "HANG_IN_REFIT" => ("seed", "HUNG", &["refitter_refit"]),
                "HANG_INFER_WHILE_REFIT" => ("stress_vendor", "HUNG", &["infer", "refitter_refit"]),
                _ => ("seed", "FAIL", &[]),
            };
            caught_by(lib, &seed, scenario, label, words, scratch, harness)
        }
    }
}

/// Runs `scenario` on `model` against the plugin `lib` in a child process
/// (with [`HANG_TIMEOUT`]); whether its first failure is `label` with every
/// one of `words` in its evidence, and that row.
fn caught_by(
    lib: &Path,
    model: &Path,
    scenario: &str,
    label: &str,
    words: &[&str],
    scratch: &Path,
    harness: &Path,
) -> (bool, String) {
    let mut isolation = check::Isolation::new(harness, EngineSpec::Plugin(lib.to_path_buf()));
    isolation.timeout = HANG_TIMEOUT;
    let config = CheckConfig {
        models: vec![model.to_path_buf()],
        only: vec![scenario.into()],
        regressions: None,
        isolation: Some(isolation),
        ..match CheckConfig::with_fixtures(scratch) {
            Ok(c) => c,
            Err(e) => return (false, e.to_string()),
        }
    };
    let r = check::run(&EngineSpec::Plugin(lib.to_path_buf()), &config, &mut |_| {});
    match r.outcomes.iter().find(|o| o.verdict.is_fail()) {
        Some(o) => {
            let detail = o.verdict.detail();
            let right = o.verdict.label() == label && words.iter().all(|w| detail.contains(w));
            (
                right,
                format!("{} by {}: {detail}", o.verdict.label(), o.scenario),
            )
        }
        None => (false, format!("missed by {scenario}")),
    }
}

/// Builds of `plugins/example.c` that misuse the caller's staging buffers,
/// each with the scenario that must catch it and words its evidence must
/// hold: `READS_AFTER_RETURN` copies from the caller's pointer at refit,
/// after `set_named_weights` returned; `SKIPS_SEEN_ADDRESS` skips a weight
/// staged from the address it saw last time.
pub const BUFFER_FAULTS: [(&str, &str, &str); 2] = [
    (
        "READS_AFTER_RETURN",
        "warm_equals_cold",
        "the engine read the caller's buffer after the call",
    ),
    ("SKIPS_SEEN_ADDRESS", "history_independence", "still at B"),
];

/// Whether the harness caught the example plugin built with the buffer
/// fault `fault` ([`BUFFER_FAULTS`]), on conv_depthwise, and how.
pub fn buffer_verdict(fault: &str, scratch: &Path, harness: &Path) -> (bool, String) {
    let Some(&(_, scenario, words)) = BUFFER_FAULTS.iter().find(|(f, _, _)| *f == fault) else {
        return (false, format!("no buffer fault {fault}"));
    };
    let lib = match build_example(fault, &scratch.join("c-plugins")) {
        Ok(l) => l,
        Err(e) => return (false, e.to_string()),
    };
    let model = scratch.join("conv_depthwise.onnx");
    if let Err(e) = std::fs::write(&model, crate::fixtures::conv_depthwise().to_bytes()) {
        return (false, format!("cannot write {}: {e}", model.display()));
    }
    caught_by(&lib, &model, scenario, "FAIL", &[words], scratch, harness)
}
