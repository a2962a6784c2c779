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

use serde_json::{json, Value};

use super::{oracle, plan, run_one, stress, CheckConfig, Cx, Evidence, Tolerance, Verdict};
use crate::engine::{BuildOptions, Contract, EngineSpec};
use crate::flight::{CALL_MARK, SIGNAL_MARK, STEP_MARK};

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
    /// Extra environment for the child (a sanitizer runtime in
    /// `LD_PRELOAD`, say).
    pub env: Vec<(OsString, OsString)>,
}

impl Isolation {
    /// Children of `program` opening `engine`, with the default timeout.
    pub fn new(program: impl Into<PathBuf>, engine: impl Into<String>) -> Self {
        Isolation {
            program: program.into(),
            engine: engine.into(),
            timeout: DEFAULT_TIMEOUT,
            env: Vec::new(),
        }
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

fn path_text(p: &Path) -> Value {
    Value::String(p.to_string_lossy().into_owned())
}

/// The configuration a child needs, as JSON.
pub fn config_json(c: &CheckConfig) -> Value {
    json!({
        "models": c.models.iter().map(|m| path_text(m)).collect::<Vec<_>>(),
        "cases": c.cases,
        "seconds": c.seconds,
        "tolerance": c.tolerance.map(|t| json!({"abs": t.abs, "rel": t.rel})),
        "scratch": path_text(&c.scratch),
        "only": c.only,
        "stress_ms": c.stress_ms,
        "live": c.live,
        "stress_cap_ms": c.stress_cap_ms,
        "min_power": [c.min_power.inferences, c.min_power.refits, c.min_power.overlapped],
        "allow_inconclusive": c.allow_inconclusive,
        "fail_on_skip": c.fail_on_skip,
        "regressions": c.regressions.as_deref().map(path_text),
        "engine_options": c.engine_options,
    })
}

/// Reads what [`config_json`] wrote.
///
/// # Errors
/// A message naming the field that is missing or of the wrong type.
pub fn config_from_json(v: &Value) -> Result<CheckConfig, String> {
    let field = |k: &str| v.get(k).ok_or_else(|| format!("no '{k}'"));
    let u64_of = |k: &str| {
        field(k)?
            .as_u64()
            .ok_or_else(|| format!("'{k}' not a count"))
    };
    let bool_of = |k: &str| {
        field(k)?
            .as_bool()
            .ok_or_else(|| format!("'{k}' not a bool"))
    };
    let str_of = |x: &Value, k: &str| {
        x.as_str()
            .map(str::to_string)
            .ok_or_else(|| format!("'{k}' not a string"))
    };
    let list = |k: &str| -> Result<Vec<String>, String> {
        field(k)?
            .as_array()
            .ok_or_else(|| format!("'{k}' not a list"))?
            .iter()
            .map(|x| str_of(x, k))
            .collect()
    };
    let power: Vec<usize> = field("min_power")?
        .as_array()
        .ok_or("'min_power' not a list")?
        .iter()
        .map(|x| x.as_u64().map(|n| n as usize))
        .collect::<Option<_>>()
        .filter(|p: &Vec<usize>| p.len() == 3)
        .ok_or("'min_power' not three counts")?;
    let tolerance = match field("tolerance")? {
        Value::Null => None,
        t => Some(Tolerance {
            abs: t["abs"].as_f64().ok_or("'tolerance.abs' not a number")?,
            rel: t["rel"].as_f64().ok_or("'tolerance.rel' not a number")?,
        }),
    };
    Ok(CheckConfig {
        models: list("models")?.into_iter().map(PathBuf::from).collect(),
        cases: u64_of("cases")? as u32,
        seconds: field("seconds")?.as_f64().ok_or("'seconds' not a number")?,
        tolerance,
        scratch: PathBuf::from(str_of(field("scratch")?, "scratch")?),
        only: list("only")?,
        stress_ms: u64_of("stress_ms")?,
        live: bool_of("live")?,
        stress_cap_ms: u64_of("stress_cap_ms")?,
        min_power: stress::Power {
            inferences: power[0],
            refits: power[1],
            overlapped: power[2],
        },
        allow_inconclusive: bool_of("allow_inconclusive")?,
        fail_on_skip: bool_of("fail_on_skip")?,
        regressions: match field("regressions")? {
            Value::Null => None,
            r => Some(PathBuf::from(str_of(r, "regressions")?)),
        },
        engine_options: match field("engine_options")? {
            Value::Null => None,
            o => Some(str_of(o, "engine_options")?),
        },
        isolation: None,
    })
}

fn verdict_json(v: &Verdict) -> Value {
    let evidence = |kind: &str, e: &Evidence| json!({"kind": kind, "step": e.step, "expected": e.expected, "observed": e.observed});
    match v {
        Verdict::Pass(d) => json!({"kind": "pass", "detail": d}),
        Verdict::Skip(d) => json!({"kind": "skip", "detail": d}),
        Verdict::Inconclusive(d) => json!({"kind": "inconclusive", "detail": d}),
        Verdict::Fail(e) => evidence("fail", e),
        Verdict::Crashed(e) => evidence("crashed", e),
        Verdict::Hung(e) => evidence("hung", e),
    }
}

fn verdict_from_json(v: &Value) -> Option<Verdict> {
    let text = |k: &str| v.get(k).and_then(Value::as_str).map(str::to_string);
    let evidence = || {
        Some(Evidence {
            step: text("step")?,
            expected: text("expected")?,
            observed: text("observed")?,
        })
    };
    Some(match v.get("kind")?.as_str()? {
        "pass" => Verdict::Pass(text("detail")?),
        "skip" => Verdict::Skip(text("detail")?),
        "inconclusive" => Verdict::Inconclusive(text("detail")?),
        "fail" => Verdict::Fail(evidence()?),
        "crashed" => Verdict::Crashed(evidence()?),
        "hung" => Verdict::Hung(evidence()?),
        _ => return None,
    })
}

/// What a child reported, or what became of it.
pub(super) struct ChildResult {
    pub verdict: Verdict,
    pub error_ratio: Option<f64>,
    pub contract: Option<Contract>,
}

/// The `run-item` command: runs plan item `item` of the configuration in
/// `config` on `engine` and prints its outcome. Exit code 0 whenever an
/// outcome was printed.
pub fn child_main(engine: &str, config: &Path, item: usize, contract: bool) -> ExitCode {
    crate::flight::enable();
    let fail = |why: String| {
        eprintln!("refit-harness run-item: {why}");
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
    let spec: EngineSpec = match engine.parse() {
        Ok(s) => s,
        Err(e) => return fail(e.to_string()),
    };
    let factory = super::SpecFactory {
        spec,
        options: config.engine_options.clone(),
    };
    let plan = plan(&config);
    let Some((scenario, model)) = plan.get(item) else {
        return fail(format!("item {item} of {}", plan.len()));
    };
    let declared = if contract {
        crate::flight::step("open the first model to read the contract");
        config.models.first().and_then(|m| {
            super::EngineFactory::open(&factory, m, &BuildOptions::default())
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
    let cx = Cx {
        factory: &factory,
        config: &config,
    };
    let _ = oracle::take_worst_ratio();
    let verdict = run_one(scenario, &cx, model.as_deref().unwrap_or(Path::new("")));
    let line = json!({
        "verdict": verdict_json(&verdict),
        "error_ratio": oracle::take_worst_ratio(),
    });
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
    outcome: Option<Value>,
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
            let mut buf = [0u8; 4096];
            while let Ok(n) = err.read(&mut buf) {
                if n == 0 {
                    break;
                }
                if live {
                    let _ = std::io::stderr().write_all(&buf[..n]);
                }
                kept.extend(&buf[..n]);
                let excess = kept.len().saturating_sub(16 << 10);
                kept.drain(..excess);
            }
            Vec::from(kept)
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
    let err_bytes = stderr.and_then(|h| h.join().ok()).unwrap_or_default();
    let heard = std::mem::take(&mut *heard.lock().unwrap_or_else(|p| p.into_inner()));
    if !hung {
        if let Some(o) = &heard.outcome {
            if let Some(verdict) = o.get("verdict").and_then(verdict_from_json) {
                return ChildResult {
                    verdict,
                    error_ratio: o.get("error_ratio").and_then(Value::as_f64),
                    contract: heard.contract,
                };
            }
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
