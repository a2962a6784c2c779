//! Each scenario's engine work in a child process, so that an engine that
//! crashes or hangs becomes a verdict instead of ending the run.
//!
//! The parent writes the run's [`CheckConfig`] once as JSON, then for each
//! scenario starts the harness binary again (`refit-harness run-item`),
//! which runs that one scenario and prints its outcome as one line. The
//! child announces its steps and, on a fatal signal or the parent's
//! SIGTERM, the engine calls in flight ([`crate::flight`]). A child killed
//! by a signal, or gone without an outcome, is [`Verdict::Crashed`]; one
//! past [`Isolation::timeout`] is sent SIGTERM (SIGKILL 2 s later) and is
//! [`Verdict::Hung`]. Either names the step and the calls in flight, with
//! the tail of the child's stderr.

use std::collections::VecDeque;
use std::ffi::OsString;
use std::io::{BufRead, BufReader, Read, Write};
use std::os::unix::process::{CommandExt, ExitStatusExt};
use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde::Deserialize as _;
use serde_json::Value;

use super::{plan, run_one, CheckConfig, Cx, Evidence, Verdict};
use crate::engine::{BuildOptions, Contract};
use crate::flight::{CALL_MARK, SIGNAL_MARK, STEP_MARK};
use crate::spec::EngineSpec;

/// Starts the line a child prints its outcome on.
pub const OUTCOME_MARK: &str = "REFIT-OUTCOME ";
/// Starts the line a child prints the declared contract on, as soon as it
/// has it (so a crash later in the scenario does not lose it).
pub const CONTRACT_MARK: &str = "REFIT-CONTRACT ";

/// The default time a scenario may take before it is killed as hung.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(120);

/// How scenarios run in child processes.
#[derive(Clone, Debug)]
pub struct Isolation {
    /// The `refit-harness` binary.
    pub program: PathBuf,
    /// The engine spec the child opens (`plugin:/path/lib.so`).
    pub engine: String,
    /// A scenario running longer is killed and reported hung.
    pub timeout: Duration,
    /// Extra environment for the child.
    pub env: Vec<(OsString, OsString)>,
    /// A sanitizer runtime preloaded into each child (for a plugin built
    /// with `-fsanitize=thread` or `-fsanitize=address`); its first report
    /// becomes the scenario's failure.
    pub sanitizer: Option<Sanitizer>,
    /// `None`: the child is the harness binary (`run-item`, opening
    /// [`Isolation::engine`] as a spec). `Some(test)`: the child is
    /// `program`, a test binary, running test `test` alone, which finds
    /// its job in [`CHILD_ENV`] ([`crate::suite`]).
    pub test: Option<String>,
}

/// The variable that tells a test binary started as a child which
/// item to run: `<config path>\n<item>\n<contract 0|1>`.
pub const CHILD_ENV: &str = "REFIT_HARNESS_CHILD";

/// A sanitizer whose runtime the children preload.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Sanitizer {
    /// ThreadSanitizer (`-fsanitize=thread`): data races.
    Thread,
    /// AddressSanitizer (`-fsanitize=address`): use after free, overflows.
    Address,
}

impl std::str::FromStr for Sanitizer {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "thread" => Ok(Sanitizer::Thread),
            "address" => Ok(Sanitizer::Address),
            _ => Err(format!(
                "unknown sanitizer '{s}': expected 'thread' or 'address'"
            )),
        }
    }
}

impl Sanitizer {
    /// `thread` or `address`.
    pub fn name(self) -> &'static str {
        match self {
            Sanitizer::Thread => "thread",
            Sanitizer::Address => "address",
        }
    }

    /// The runtime library's file name.
    pub fn library(self) -> &'static str {
        match self {
            Sanitizer::Thread => "libtsan.so",
            Sanitizer::Address => "libasan.so",
        }
    }

    /// The runtime the C compiler (`$CC`, else `cc`) links with.
    ///
    /// # Errors
    /// A message naming the library when the compiler does not have it.
    pub fn runtime(self) -> Result<PathBuf, String> {
        let cc = std::env::var("CC").unwrap_or_else(|_| "cc".into());
        let out = Command::new(&cc)
            .arg(format!("-print-file-name={}", self.library()))
            .output()
            .map_err(|e| format!("--sanitizer {}: cannot run '{cc}': {e}", self.name()))?;
        let path = PathBuf::from(String::from_utf8_lossy(&out.stdout).trim());
        if path.is_absolute() && path.exists() {
            Ok(path)
        } else {
            Err(format!(
                "--sanitizer {}: '{cc} -print-file-name={}' finds no runtime (install it, e.g. libtsan2 or libasan8)",
                self.name(),
                self.library()
            ))
        }
    }

    /// The environment that preloads the runtime and sets its options.
    ///
    /// # Errors
    /// As [`Sanitizer::runtime`].
    pub fn env(self) -> Result<Vec<(OsString, OsString)>, String> {
        let runtime = self.runtime()?;
        let mut preload = runtime.into_os_string();
        if let Some(old) = std::env::var_os("LD_PRELOAD").filter(|o| !o.is_empty()) {
            preload.push(" ");
            preload.push(old);
        }
        let options = match self {
            Sanitizer::Thread => ("TSAN_OPTIONS", "halt_on_error=0 report_signal_unsafe=0"),
            // The harness itself is not instrumented: its leaks are not
            // the engine's.
            Sanitizer::Address => ("ASAN_OPTIONS", "detect_leaks=0 abort_on_error=0"),
        };
        Ok(vec![
            ("LD_PRELOAD".into(), preload),
            (options.0.into(), options.1.into()),
        ])
    }
}

impl Isolation {
    /// Children of `program` opening `engine`, with the default timeout.
    pub fn new(program: impl Into<PathBuf>, engine: impl Into<String>) -> Self {
        Isolation {
            program: program.into(),
            engine: engine.into(),
            timeout: DEFAULT_TIMEOUT,
            env: Vec::new(),
            sanitizer: None,
            test: None,
        }
    }

    /// With `sanitizer`'s runtime preloaded into each child.
    ///
    /// # Errors
    /// When the runtime cannot be found.
    pub fn with_sanitizer(mut self, sanitizer: Sanitizer) -> Result<Self, String> {
        self.env.extend(sanitizer.env()?);
        self.sanitizer = Some(sanitizer);
        Ok(self)
    }

    /// Children of the running binary (for the `refit-harness` command).
    ///
    /// # Errors
    /// When the running binary cannot be found.
    pub fn current_exe(engine: impl Into<String>) -> std::io::Result<Self> {
        Ok(Isolation::new(std::env::current_exe()?, engine))
    }
}

/// `REFIT_TIMEOUT` (seconds a scenario may run in the test suite), or
/// [`DEFAULT_TIMEOUT`] when unset.
///
/// # Errors
/// A message naming the variable when it is not a number of seconds above 0.
pub fn timeout_from_env() -> Result<Duration, String> {
    match std::env::var("REFIT_TIMEOUT") {
        Err(_) => Ok(DEFAULT_TIMEOUT),
        Ok(v) => v
            .trim()
            .parse::<f64>()
            .ok()
            .filter(|s| s.is_finite() && *s > 0.0)
            .map(Duration::from_secs_f64)
            .ok_or_else(|| format!("REFIT_TIMEOUT: expected seconds above 0, found '{v}'")),
    }
}

/// `REFIT_ENGINE_OPTIONS` (the engine's own build options for the test
/// suite, a JSON object), if set.
///
/// # Errors
/// A message naming the variable when it is not a JSON object.
pub fn engine_options_from_env() -> Result<Option<String>, String> {
    match std::env::var("REFIT_ENGINE_OPTIONS") {
        Err(_) => Ok(None),
        Ok(v) => crate::engine::parse_engine_options(&v)
            .map(|_| Some(v))
            .map_err(|e| format!("REFIT_ENGINE_OPTIONS: {e}")),
    }
}

/// The configuration a child needs, as JSON ([`CheckConfig`]'s serde
/// form; the isolation settings stay with the parent).
pub fn config_json(c: &CheckConfig) -> Value {
    serde_json::to_value(c).unwrap_or(Value::Null)
}

/// Reads what [`config_json`] wrote.
///
/// # Errors
/// A message naming the field that is missing or of the wrong type.
pub fn config_from_json(v: &Value) -> Result<CheckConfig, String> {
    CheckConfig::deserialize(v).map_err(|e| e.to_string())
}

/// A child's outcome line, after [`OUTCOME_MARK`].
#[derive(serde::Serialize, serde::Deserialize)]
struct Outcome {
    verdict: Verdict,
    /// The worst error / allowed error: a number, or `"inf"` (JSON has no
    /// infinity) for a failed exact expectation.
    #[serde(with = "ratio_wire")]
    error_ratio: Option<f64>,
}

/// An error ratio on the wire: a number, or `"inf"`.
mod ratio_wire {
    use serde::{Deserialize, Deserializer, Serialize, Serializer};

    #[derive(Serialize, Deserialize)]
    #[serde(untagged)]
    enum Wire {
        Number(f64),
        Text(String),
    }

    pub fn serialize<S: Serializer>(r: &Option<f64>, s: S) -> Result<S::Ok, S::Error> {
        match r {
            Some(r) if r.is_infinite() => Wire::Text("inf".into()).serialize(s),
            Some(r) => Wire::Number(*r).serialize(s),
            None => s.serialize_none(),
        }
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Option<f64>, D::Error> {
        Ok(match Option::<Wire>::deserialize(d)? {
            Some(Wire::Number(r)) => Some(r),
            Some(Wire::Text(t)) if t == "inf" => Some(f64::INFINITY),
            _ => None,
        })
    }
}

/// What a child reported, or what became of it.
pub(super) struct ChildResult {
    pub verdict: Verdict,
    pub error_ratio: Option<f64>,
    pub contract: Option<Contract>,
}

/// The `run-item` command: runs plan item `item` of the configuration in
/// `config` on `engine` (a spec) and prints its outcome. Exit code 0
/// whenever an outcome was printed.
pub fn child_main(engine: &str, config: &Path, item: usize, contract: bool) -> ExitCode {
    let spec: EngineSpec = match engine.parse() {
        Ok(s) => s,
        Err(e) => {
            eprintln!("refit-harness run-item: {e}");
            return ExitCode::from(2);
        }
    };
    child_run(
        &|options| {
            Box::new(super::SpecFactory {
                spec: spec.clone(),
                options,
            })
        },
        config,
        item,
        contract,
    )
}

/// Runs plan item `item` of the configuration in `config` on the engine
/// `factory` makes (given the configuration's engine options) and prints
/// its outcome: the body of every child process, whether the harness
/// binary (`run-item`) or a test binary ([`crate::suite`]).
pub fn child_run(
    factory: &dyn Fn(Option<String>) -> Box<dyn super::EngineFactory>,
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
        .map_err(|e| e.to_string())
        .and_then(|v| config_from_json(&v))
    {
        Ok(c) => c,
        Err(e) => return fail(format!("{}: {e}", config_path_hint(config))),
    };
    let factory = factory(config.engine_options.clone());
    let factory = factory.as_ref();
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

fn config_path_hint(p: &Path) -> String {
    p.display().to_string()
}

/// What the child's stdout said.
#[derive(Default)]
struct Heard {
    step: Option<String>,
    in_flight: Vec<(String, u64)>,
    signal: Option<i32>,
    contract: Option<Contract>,
    outcome: Option<Outcome>,
}

fn signal_name(sig: i32) -> String {
    let name = match sig {
        libc::SIGSEGV => "SIGSEGV",
        libc::SIGABRT => "SIGABRT",
        libc::SIGBUS => "SIGBUS",
        libc::SIGFPE => "SIGFPE",
        libc::SIGILL => "SIGILL",
        libc::SIGKILL => "SIGKILL",
        libc::SIGTERM => "SIGTERM",
        libc::SIGTRAP => "SIGTRAP",
        libc::SIGSYS => "SIGSYS",
        _ => return format!("signal {sig}"),
    };
    name.to_string()
}

/// The last lines of a child's stderr, at most 4 KiB.
fn tail(bytes: &[u8], lines: usize) -> String {
    let text = String::from_utf8_lossy(bytes);
    let kept: Vec<&str> = text
        .lines()
        .map(str::trim_end)
        .filter(|l| !l.is_empty())
        .collect();
    let start = kept.len().saturating_sub(lines);
    kept[start..].join(" | ")
}

/// Runs plan item `item` in a child; `contract`: the child also reports
/// the contract the engine declares on the first model.
pub(super) fn run_child(
    iso: &Isolation,
    config_file: &Path,
    item: usize,
    contract: bool,
    live: bool,
    scenario: &str,
) -> ChildResult {
    let mut cmd = Command::new(&iso.program);
    match &iso.test {
        None => {
            cmd.arg("run-item")
                .arg("--engine")
                .arg(&iso.engine)
                .arg("--config")
                .arg(config_file)
                .arg("--item")
                .arg(item.to_string());
            if contract {
                cmd.arg("--contract");
            }
        }
        Some(test) => {
            let mut job = config_file.as_os_str().to_owned();
            job.push(format!("\n{item}\n{}", u8::from(contract)));
            cmd.args([
                test.as_str(),
                "--exact",
                "--nocapture",
                "--test-threads",
                "1",
            ])
            .env(CHILD_ENV, job);
        }
    }
    cmd.envs(iso.env.iter().map(|(k, v)| (k, v)))
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .process_group(0);
    let start = Instant::now();
    let mut child = match cmd.spawn() {
        Ok(c) => c,
        Err(e) => {
            return ChildResult {
                verdict: Verdict::Crashed(Evidence {
                    step: format!("start {scenario} in a child process"),
                    expected: "the child to start".into(),
                    observed: format!("{}: {e}", iso.program.display()),
                }),
                error_ratio: None,
                contract: None,
            }
        }
    };
    let heard = Arc::new(Mutex::new(Heard::default()));
    let stdout = child.stdout.take().map(|out| {
        let heard = Arc::clone(&heard);
        std::thread::spawn(move || {
            for line in BufReader::new(out).split(b'\n').map_while(|l| l.ok()) {
                let line = String::from_utf8_lossy(&line);
                let Ok(mut h) = heard.lock() else { break };
                if let Some(s) = line.strip_prefix(STEP_MARK) {
                    h.step = Some(s.to_string());
                } else if let Some(c) = line.strip_prefix(CALL_MARK) {
                    let (name, ms) = c.rsplit_once(' ').unwrap_or((c, "0"));
                    h.in_flight
                        .push((name.to_string(), ms.parse().unwrap_or(0)));
                } else if let Some(s) = line.strip_prefix(SIGNAL_MARK) {
                    h.signal = s.trim().parse().ok();
                } else if let Some(c) = line.strip_prefix(CONTRACT_MARK) {
                    h.contract = c.parse().ok();
                } else if let Some(o) = line.strip_prefix(OUTCOME_MARK) {
                    h.outcome = serde_json::from_str(o).ok();
                }
            }
        })
    });
    let stderr = child.stderr.take().map(|mut err| {
        std::thread::spawn(move || {
            let mut kept: VecDeque<u8> = VecDeque::new();
            // The first sanitizer report, whole (up to 256 KiB).
            let mut report: Vec<u8> = Vec::new();
            let mut buf = [0u8; 4096];
            while let Ok(n) = err.read(&mut buf) {
                if n == 0 {
                    break;
                }
                if live {
                    let _ = std::io::stderr().write_all(&buf[..n]);
                }
                if report.len() < 256 << 10 {
                    report.extend_from_slice(&buf[..n]);
                }
                kept.extend(&buf[..n]);
                let excess = kept.len().saturating_sub(16 << 10);
                kept.drain(..excess);
            }
            (Vec::from(kept), report)
        })
    });
    let mut hung = false;
    let status = loop {
        match child.try_wait() {
            Ok(Some(status)) => break Some(status),
            Ok(None) => {}
            Err(_) => break None,
        }
        if start.elapsed() >= iso.timeout {
            hung = true;
            let pid = child.id();
            crate::flight::kill_group(pid, libc::SIGTERM);
            let grace = Instant::now();
            while grace.elapsed() < Duration::from_secs(2) {
                if let Ok(Some(_)) = child.try_wait() {
                    break;
                }
                std::thread::sleep(Duration::from_millis(10));
            }
            // The group may outlive its leader.
            crate::flight::kill_group(pid, libc::SIGKILL);
            break child.wait().ok();
        }
        std::thread::sleep(Duration::from_millis(5));
    };
    let elapsed = start.elapsed();
    if !hung {
        // Anything the child left behind in its group (threads are gone
        // with it; processes it started are not).
        crate::flight::kill_group(child.id(), libc::SIGKILL);
    }
    if let Some(h) = stdout {
        let _ = h.join();
    }
    let (err_bytes, head) = stderr.and_then(|h| h.join().ok()).unwrap_or_default();
    let mut heard = std::mem::take(&mut *heard.lock().unwrap_or_else(|p| p.into_inner()));
    let sanitizer_report = iso
        .sanitizer
        .and_then(|_| sanitizer_summary(&String::from_utf8_lossy(&head)));
    if let Some(summary) = sanitizer_report {
        return ChildResult {
            verdict: Verdict::Fail(Evidence {
                step: heard
                    .step
                    .clone()
                    .unwrap_or_else(|| format!("run {scenario}")),
                expected: "no sanitizer report".into(),
                observed: summary,
            }),
            error_ratio: None,
            contract: heard.contract,
        };
    }
    if !hung {
        if let Some(o) = heard.outcome.take() {
            return ChildResult {
                verdict: o.verdict,
                error_ratio: o.error_ratio,
                contract: heard.contract,
            };
        }
    }
    let step = heard
        .step
        .clone()
        .unwrap_or_else(|| format!("start {scenario}"));
    let calls = if heard.in_flight.is_empty() {
        "no engine call in flight".to_string()
    } else {
        let list: Vec<String> = heard
            .in_flight
            .iter()
            .map(|(name, ms)| match ms {
                0..=999 => format!("{name} for {ms} ms"),
                _ => format!("{name} for {:.1} s", *ms as f64 / 1000.0),
            })
            .collect();
        format!("in flight: {}", list.join(", "))
    };
    let stderr_tail = tail(&err_bytes, 6);
    let stderr_text = if stderr_tail.is_empty() {
        "stderr empty".to_string()
    } else {
        format!("stderr: {stderr_tail}")
    };
    let verdict = if hung {
        Verdict::Hung(Evidence {
            step,
            expected: format!(
                "the scenario to finish within the timeout ({} s)",
                iso.timeout.as_secs_f64()
            ),
            observed: format!(
                "hung: killed after {:.1} s; {calls}; {stderr_text}",
                elapsed.as_secs_f64()
            ),
        })
    } else {
        let how = match status {
            Some(s) => match s.signal().or(heard.signal) {
                Some(sig) => format!("crashed ({})", signal_name(sig)),
                None => format!(
                    "exited with status {} before reporting an outcome",
                    s.code().unwrap_or(-1)
                ),
            },
            None => "vanished (its status could not be read)".to_string(),
        };
        Verdict::Crashed(Evidence {
            step,
            expected: "every engine call to return".into(),
            observed: format!("{how}; {calls}; {stderr_text}"),
        })
    };
    ChildResult {
        verdict,
        error_ratio: None,
        contract: heard.contract,
    }
}

/// One line from the first ThreadSanitizer or AddressSanitizer report in
/// `stderr`: its kind, then each access or event with the first frame in
/// the engine (not in the sanitizer's runtime), e.g. `ThreadSanitizer:
/// data race: Write of size 4 by thread T2 in refit example.c:559;
/// Previous read of size 4 by thread T1 in conv example.c:400`.
pub fn sanitizer_summary(stderr: &str) -> Option<String> {
    let lines: Vec<&str> = stderr.lines().map(str::trim).collect();
    let (start, tool, rest) = lines.iter().enumerate().find_map(|(i, l)| {
        [
            ("WARNING: ThreadSanitizer: ", "ThreadSanitizer"),
            ("ERROR: AddressSanitizer: ", "AddressSanitizer"),
        ]
        .iter()
        .find_map(|(mark, tool)| l.find(mark).map(|at| (i, *tool, &l[at + mark.len()..])))
    })?;
    let what = rest
        .split(" (pid=")
        .next()
        .unwrap_or("")
        .split(" on address ")
        .next()
        .unwrap_or("")
        .trim();
    let mut parts = vec![format!("{tool}: {what}")];
    let mut header: Option<String> = None;
    let mut taken = false;
    for l in &lines[start + 1..] {
        if l.starts_with("SUMMARY:") || parts.len() > 3 {
            break;
        }
        if l.is_empty() {
            continue;
        }
        if let Some(frame) = frame_text(l) {
            if let (Some(h), false) = (&header, taken) {
                if !in_runtime(&frame) {
                    parts.push(format!("{h} in {frame}"));
                    taken = true;
                }
            }
            continue;
        }
        header = Some(clean_header(l));
        taken = false;
    }
    Some(parts.join("; "))
}

/// `#3 0x55af in infer plugins/faulty.c:194` or `#0 conv example.c:400
/// (lib.so+0x5336)` as `infer plugins/faulty.c:194`.
fn frame_text(line: &str) -> Option<String> {
    let rest = line.strip_prefix('#')?;
    let (n, rest) = rest.split_once(' ')?;
    n.parse::<u32>().ok()?;
    let rest = match rest.strip_prefix("0x") {
        Some(r) => r.split_once(" in ").map_or(r, |(_, f)| f),
        None => rest,
    };
    let rest = match rest.rfind(" (") {
        Some(i) if rest.ends_with(')') => &rest[..i],
        _ => rest,
    };
    Some(rest.trim().to_string())
}

fn in_runtime(frame: &str) -> bool {
    frame.contains("libsanitizer")
        || frame.contains("_interceptors")
        || ["free ", "malloc ", "calloc ", "realloc ", "operator "]
            .iter()
            .any(|f| frame.starts_with(f))
}

/// `Write of size 4 at 0x7b6000000400 by thread T2:` as `Write of size 4
/// by thread T2`.
fn clean_header(line: &str) -> String {
    let mut h = line.trim_end_matches(':').to_string();
    if let Some(i) = h.find(" at 0x") {
        let rest = &h[i + 6..];
        let after = rest.find(' ').map_or("", |j| &rest[j..]).to_string();
        h = format!("{}{after}", &h[..i]);
    }
    h
}

#[cfg(test)]
mod tests {
    //! The wire between a child and its parent.

    use super::*;
    use crate::check::Tolerance;

    #[test]
    fn a_config_crosses_whole_but_for_isolation() {
        let c = CheckConfig {
            models: vec![PathBuf::from("/m/a.onnx")],
            cases: 7,
            seconds: 2.5,
            tolerance: Some(Tolerance {
                abs: 1e-3,
                rel: 1e-2,
            }),
            scratch: "/tmp/s".into(),
            only: vec!["seed".into()],
            regressions: Some("/r.txt".into()),
            replay: None,
            stress_ms: 50,
            stress_cap_ms: 1000,
            min_power: crate::history::Power::MINIMUM,
            allow_inconclusive: true,
            fail_on_skip: false,
            live: false,
            engine_options: Some(r#"{"slowdown": 2}"#.into()),
            plots: Some("/p".into()),
            isolation: Some(Isolation::new("/bin/true", "reference")),
        };
        let back = config_from_json(&config_json(&c)).unwrap();
        assert!(back.isolation.is_none());
        assert_eq!(
            format!(
                "{:?}",
                CheckConfig {
                    isolation: None,
                    ..c
                }
            ),
            format!("{back:?}")
        );
        let mut v = config_json(&back);
        v.as_object_mut().unwrap().remove("cases");
        let e = config_from_json(&v).unwrap_err();
        assert!(e.contains("cases"), "{e}");
    }

    #[test]
    fn an_outcome_crosses_with_its_verdict_and_an_infinite_ratio() {
        for (verdict, ratio) in [
            (Verdict::Pass("ok".into()), Some(0.25)),
            (
                Verdict::Fail(Evidence {
                    step: "refit".into(),
                    expected: "9".into(),
                    observed: "0".into(),
                }),
                Some(f64::INFINITY),
            ),
            (Verdict::Skip("no model".into()), None),
        ] {
            let line = serde_json::to_string(&Outcome {
                verdict: verdict.clone(),
                error_ratio: ratio,
            })
            .unwrap();
            let back: Outcome = serde_json::from_str(&line).unwrap();
            assert_eq!((back.verdict, back.error_ratio), (verdict, ratio), "{line}");
        }
    }
}
