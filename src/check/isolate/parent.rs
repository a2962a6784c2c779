//! The parent's side: start a child for one plan item, listen to what it
//! announces, end it when it hangs, and turn how it ended into a verdict.

use std::collections::VecDeque;
use std::io::{BufRead, BufReader, Read, Write};
use std::os::unix::process::{CommandExt, ExitStatusExt};
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use super::wire::Outcome;
use super::{Child, Isolation, CHILD_ENV, CONTRACT_MARK, OUTCOME_MARK};
use crate::check::sanitizer::sanitizer_summary;
use crate::check::{Evidence, Verdict};
use crate::engine::Contract;
use crate::flight::{CALL_MARK, SIGNAL_MARK, STEP_MARK};

/// What a child reported, or what became of it.
pub(in crate::check) struct ChildResult {
    pub verdict: Verdict,
    pub error_ratio: Option<f64>,
    pub contract: Option<Contract>,
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
pub(in crate::check) fn run_child(
    iso: &Isolation,
    config_file: &Path,
    item: usize,
    contract: bool,
    live: bool,
    scenario: &str,
) -> ChildResult {
    let mut cmd = Command::new(&iso.program);
    match &iso.child {
        Child::Harness(engine) => {
            cmd.arg("run-item")
                .arg("--engine")
                .arg(engine.spec.to_string())
                .arg("--config")
                .arg(config_file)
                .arg("--item")
                .arg(item.to_string());
            if let Some(json) = &engine.options {
                cmd.arg("--engine-options").arg(json);
            }
            if contract {
                cmd.arg("--contract");
            }
        }
        Child::Test { test, .. } => {
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
