//! Memory over many refits and during one, read from the process's resident
//! set (Linux `/proc/self/status`; the peak is reset through
//! `/proc/self/clear_refs`). Run it in a process of its own: other threads
//! allocating at the same time would blur the figures.

use std::path::Path;
use std::time::{Duration, Instant};

use super::subject::{ints, must, Step, Subject};
use super::{fail, Cx, Verdict};
use crate::engine::BuildOptions;
use crate::model::build::{ConvChain, ConvLayer};
use crate::model::conv::ConvAttrs;
use crate::tensor::Tensor;

const MIB: f64 = 1024.0 * 1024.0;

/// How long the refits measured for growth may take; a slow engine gets a
/// verdict over the refits it managed.
pub(crate) const BUDGET: Duration = Duration::from_secs(30);

/// The fewest refits measured for growth, whatever the time.
pub(crate) const MIN_REFITS: usize = 50;

/// `VmRSS` and `VmHWM` in bytes.
fn rss() -> Option<(u64, u64)> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let field = |key: &str| {
        status
            .lines()
            .find(|l| l.starts_with(key))
            .and_then(|l| l.split_whitespace().nth(1))
            .and_then(|v| v.parse::<u64>().ok())
            .map(|kb| kb * 1024)
    };
    Some((field("VmRSS:")?, field("VmHWM:")?))
}

/// Resets the peak resident set to the current one.
fn reset_peak() -> bool {
    std::fs::write("/proc/self/clear_refs", "5").is_ok()
}

/// Two convs: a big weight (18 MiB) and a mid one (64 KiB).
fn model() -> ConvChain {
    let big = ConvLayer {
        weight_name: "big.weight".into(),
        bias_name: None,
        c_out: 512,
        kernel: vec![3, 3],
        attrs: ConvAttrs::default(),
        weight: vec![0.0; 512 * 1024 * 9],
        bias: Vec::new(),
        relu: true,
    };
    let mid = ConvLayer {
        weight_name: "mid.weight".into(),
        bias_name: None,
        c_out: 32,
        kernel: vec![1, 1],
        attrs: ConvAttrs::default(),
        weight: vec![0.0; 32 * 512],
        bias: Vec::new(),
        relu: false,
    };
    ConvChain {
        input_name: "x".into(),
        input_shape: vec![1, 1024, 3, 3],
        output_name: "y".into(),
        layers: vec![big, mid],
    }
}

/// The scenario.
pub(super) fn run(cx: &Cx<'_>, _: &Path) -> Verdict {
    measure(cx).unwrap_or_else(|v| v)
}

fn measure(cx: &Cx<'_>) -> Step<Verdict> {
    if rss().is_none() {
        return Ok(Verdict::Skip(
            "no /proc/self/status: resident memory cannot be read on this platform".into(),
        ));
    }
    let path = cx.config.scratch.join("resources.onnx");
    std::fs::write(&path, model().to_bytes())
        .map_err(|e| Verdict::Skip(format!("cannot write {}: {e}", path.display())))?;
    let mut s = Subject::open(cx, &path, &BuildOptions::default())?;
    let (big, mid) = (0, 1);
    let model_bytes = (s.numel(big) + s.numel(mid)) * 4;

    // Growth over many refits: of the mid weight alone, or of every weight
    // where the engine requires them all.
    let changed: Vec<usize> = s
        .complete(&[(mid, Vec::new())])
        .into_iter()
        .map(|(i, _)| i)
        .collect();
    let per_refit: usize = changed.iter().map(|&i| s.numel(i) * 4).sum();
    let count = ((256 << 20) / per_refit).clamp(50, 3000);
    let warm = (count / 10).max(10);
    let sets: Vec<Vec<(String, Tensor)>> = (0..4u64)
        .map(|k| {
            changed
                .iter()
                .map(|&i| (s.info(i).name.clone(), s.tensor(i, &ints(s.numel(i), k))))
                .collect()
        })
        .collect();
    let refit_set = |s: &Subject, k: usize| -> Step<()> {
        let mut r = must("create a refitter", s.engine.refitter())?;
        for (name, t) in &sets[k % 4] {
            must(&format!("stage '{name}'"), r.set_named_weights(name, t))?;
        }
        must("refit", r.refit())
    };
    // Budgeted by time, as the stress scenarios are: a slow engine gets a
    // verdict over the refits it managed (at least MIN_REFITS), never a
    // timeout.
    let start = Instant::now();
    let mut warm_done = 0;
    while warm_done < warm && (warm_done < 10 || start.elapsed() < BUDGET / 4) {
        refit_set(&s, warm_done)?;
        warm_done += 1;
    }
    let (rss0, _) = rss().unwrap_or_default();
    let mut done = 0;
    while done < count && (done < MIN_REFITS || start.elapsed() < BUDGET) {
        refit_set(&s, warm_done + done)?;
        done += 1;
    }
    let (rss1, _) = rss().unwrap_or_default();
    let took = start.elapsed().as_secs_f64();
    let budgeted = if done < count {
        format!(
            " (of {count}: stopped at the {} s budget after {took:.1} s)",
            BUDGET.as_secs()
        )
    } else {
        String::new()
    };
    let count = done;
    let growth = rss1.saturating_sub(rss0) as f64;
    let limit = (8.0 * MIB).max(0.05 * (count * per_refit) as f64);
    let names: Vec<String> = changed.iter().map(|&i| s.info(i).name.clone()).collect();
    if growth > limit {
        return Err(fail(
            format!(
                "{count} refits of {names:?} ({} KiB each)",
                per_refit / 1024
            ),
            format!("resident memory to grow by at most {:.1} MiB", limit / MIB),
            format!(
                "it grew by {:.1} MiB ({:.0} bytes per refit){budgeted}",
                growth / MIB,
                growth / count as f64
            ),
        ));
    }
    for &i in &changed {
        s.oracle.set(
            s.map[i],
            ints(s.numel(i), ((warm_done + count - 1) % 4) as u64),
        );
    }
    s.expect_oracle("infer after the refits")?;

    // Peak during one refit: of the mid weight, then of the big one (or of
    // the whole set where the engine requires every weight).
    let measured: Vec<Vec<usize>> = if changed.len() == 1 {
        vec![vec![mid], vec![big]]
    } else {
        vec![changed.clone()]
    };
    let mut peaks = Vec::new();
    for (round, which) in measured.into_iter().enumerate() {
        let set: Vec<(usize, Vec<f32>)> = which
            .iter()
            .map(|&i| (i, ints(s.numel(i), 9 + round as u64)))
            .collect();
        let tensors: Vec<(String, Tensor)> = set
            .iter()
            .map(|(i, v)| (s.info(*i).name.clone(), s.tensor(*i, v)))
            .collect();
        let bytes: usize = which.iter().map(|&i| s.numel(i) * 4).sum();
        let mut r = must("create a refitter", s.engine.refitter())?;
        if !reset_peak() {
            return Ok(Verdict::Pass(format!(
                "{count} refits{budgeted} grew resident memory by {:.2} MiB ({:.0} bytes per refit); peak not measured (/proc/self/clear_refs is not writable)",
                growth / MIB,
                growth / count as f64
            )));
        }
        let (before, _) = rss().unwrap_or_default();
        for (name, t) in &tensors {
            must(&format!("stage '{name}'"), r.set_named_weights(name, t))?;
        }
        must("refit", r.refit())?;
        let (_, peak) = rss().unwrap_or_default();
        let extra = peak.saturating_sub(before) as f64;
        let limit = 1.5 * bytes as f64 + 4.0 * MIB;
        if extra > limit {
            let names: Vec<&str> = tensors.iter().map(|(n, _)| n.as_str()).collect();
            return Err(fail(
                format!("refit {names:?} ({:.2} MiB) in a model of {:.1} MiB", bytes as f64 / MIB, model_bytes as f64 / MIB),
                format!("peak resident memory at most {:.1} MiB above the start (1.5x the changed bytes + 4 MiB)", limit / MIB),
                format!("{:.1} MiB above", extra / MIB),
            ));
        }
        for (i, v) in set {
            s.oracle.set(s.map[i], v);
        }
        peaks.push(format!(
            "{:.2} MiB for {:.2} MiB changed",
            extra / MIB,
            bytes as f64 / MIB
        ));
    }
    s.expect_oracle("infer after the measured refits")?;
    Ok(Verdict::Pass(format!(
        "{count} refits{budgeted} grew resident memory by {:.2} MiB ({:.0} bytes per refit); peak during a refit: {}",
        growth / MIB,
        growth / count as f64,
        peaks.join(", ")
    )))
}
