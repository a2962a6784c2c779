//! `summary.md`: every measurement and the headline ratios.

use super::{find, Row};

/// Seed inference through the plugin ABI, as a multiple of the same
/// engine in-process, that the harness aims to stay within.
pub(crate) const ABI_INFER_TARGET: f64 = 1.5;

/// A 16 MiB refit through the plugin ABI, as a multiple of a memcpy of the
/// same bytes (the plugin's own one copy), that the harness aims to stay
/// within.
pub(crate) const ABI_REFIT_TARGET: f64 = 1.25;

/// ResNet-18's refit of every weight, as a multiple of a memcpy of the
/// same bytes, that the harness aims to stay within on the reference engine.
pub(crate) const RESNET_REFIT_TARGET: f64 = 1.2;

/// The check oracle's expectation on ResNet-18, in reference-engine
/// inferences, that the harness aims to stay within.
pub(crate) const RESNET_ORACLE_TARGET: f64 = 5.0;

/// The Markdown summary: each headline ratio, and the plots.
pub fn summary(rows: &[Row]) -> String {
    let engine = rows.first().map_or("", |r| r.engine.as_str());
    let mut s = format!("# refit-harness bench: {engine}\n\nMedians; each ratio is against a baseline measured in the same run.\n\n");
    s.push_str("| benchmark | parameter | median | p99 | max | baseline | ratio |\n|---|---|---:|---:|---:|---|---:|\n");
    for r in rows {
        let opt = |x: Option<f64>| x.map(human).unwrap_or_default();
        s.push_str(&format!(
            "| {} | {} | {} | {} | {} | {} | {} |\n",
            r.benchmark,
            r.parameter,
            human(r.median_ns),
            opt(r.p99_ns),
            opt(r.max_ns),
            r.baseline,
            ratio_text(rows, r)
        ));
    }
    s.push_str("\n## Headlines\n\n");
    if let (Some(i), Some(r)) = (
        find(rows, "floor", "infer_seed_conv"),
        find(rows, "floor", "refit_seed_conv"),
    ) {
        s.push_str(&format!(
            "- The harness's own floor per call (an engine that does no work, seed model): inference {}, stage + refit {} in-process",
            human(i.median_ns),
            human(r.median_ns)
        ));
        if let (Some(i), Some(r)) = (
            find(rows, "floor", "abi_infer_seed_conv"),
            find(rows, "floor", "abi_refit_seed_conv"),
        ) {
            s.push_str(&format!(
                "; {} and {} through the plugin ABI",
                human(i.median_ns),
                human(r.median_ns)
            ));
        }
        s.push_str("; subtract the one that matches the engine from its figures.\n");
    }
    if let (Some(i), Some(r)) = (
        find(rows, "abi", "infer_seed_conv").and_then(Row::ratio),
        find(
            rows,
            "abi",
            &format!("refit_{}", super::sweep::ABI_REFIT_BYTES),
        )
        .and_then(Row::ratio),
    ) {
        let over = |x: f64, target: f64| if x > target { ", OVER TARGET" } else { "" };
        s.push_str(&format!(
            "- The plugin ABI's overhead (the reference engine through the loader): seed inference {i:.2}x the same engine in-process (samples alternating; target <= {ABI_INFER_TARGET}{}), refit of 16 MiB {r:.2}x a memcpy of the same bytes (target <= {ABI_REFIT_TARGET}{}).\n",
            over(i, ABI_INFER_TARGET),
            over(r, ABI_REFIT_TARGET)
        ));
    }
    if let Some(r) = find(rows, "refit_rate", "seed_conv").and_then(Row::ratio) {
        s.push_str(&format!(
            "- A refit of the seed kernel costs {r:.2} inferences of the seed model.\n"
        ));
    }
    if let Some(big) = rows
        .iter()
        .filter(|r| r.benchmark == "refit")
        .max_by_key(|r| r.parameter.parse::<usize>().unwrap_or(0))
    {
        if let Some(r) = big.ratio() {
            s.push_str(&format!(
                "- A refit of {} bytes takes {r:.2}x a memcpy of the same bytes.\n",
                big.parameter
            ));
        }
    }
    if let Some(r) = find(rows, "infer_under_refit", "w1_every_1ms").and_then(Row::ratio) {
        s.push_str(&format!("- Inference with a writer refitting every millisecond takes {r:.3}x the time without refit.\n"));
    }
    if let Some(r) = find(rows, "infer_under_refit", "w1_full_speed").and_then(Row::ratio) {
        s.push_str(&format!(
            "- With a writer refitting at full speed: {r:.3}x.\n"
        ));
    }
    if let Some(r) = find(rows, "oracle", "conv64_56x56_f32").and_then(Row::ratio) {
        s.push_str(&format!("- The check oracle's expectation for a 64-channel 3x3 conv over 56x56 (exact values and f32 bounds) costs {r:.2} engine inferences; each distinct expectation is computed once and then served from its cache.\n"));
    }
    if let Some(t) = rows
        .iter()
        .find(|r| r.benchmark == "refit_tax" && r.ratio().is_some())
    {
        s.push_str(&format!(
            "- The refittability tax: inference ({}) on the engine built with refit takes {:.3}x the same engine built without it (samples alternating).\n",
            t.parameter.trim_start_matches("infer_"),
            t.ratio().unwrap_or(0.0)
        ));
    }
    s.push_str(&resnet18_headlines(rows));
    let p99 = |p: &str| find(rows, "latency", p).and_then(|r| r.p99_ns);
    // The inference latency measured alone: conv_stack, or the model an
    // engine that cannot run it was measured on instead.
    let alone = rows.iter().find(|r| {
        r.benchmark == "latency" && r.parameter.starts_with("infer_") && r.baseline.is_empty()
    });
    if let Some((r, p99_alone)) = alone.and_then(|r| Some((r, r.p99_ns?))) {
        let model = r.parameter.trim_start_matches("infer_");
        s.push_str(&format!(
            "- Inference latency ({model}, each call timed): p50 {}, p99 {}, max {}.\n",
            human(r.median_ns),
            human(p99_alone),
            human(r.max_ns.unwrap_or(p99_alone))
        ));
        for (mode, words) in [
            ("w1_every_1ms", "a writer refitting every ms"),
            ("w1_full_speed", "a writer refitting flat out"),
        ] {
            if let Some(w) = p99(&format!("{}_{mode}", r.parameter)) {
                s.push_str(&format!(
                    "- Inference p99 with {words}: {:.2}x without ({}).\n",
                    w / p99_alone,
                    human(w)
                ));
            }
        }
    }
    if let Some(r) = find(rows, "latency", "refit_16777216") {
        // The memcpy timed call by call beside it, when there is one.
        let copies = r
            .ratio()
            .map(|x| format!(" (median {x:.2}x a memcpy of as many bytes timed beside each)"))
            .unwrap_or_default();
        s.push_str(&format!(
            "- Refit of 16 MiB, each timed: p50 {}, p99 {}, max {}{copies}.\n",
            human(r.median_ns),
            human(r.p99_ns.unwrap_or(r.median_ns)),
            human(r.max_ns.unwrap_or(r.median_ns))
        ));
    }
    if let Some(r) = find(rows, "refit_vs_reload", "refit").and_then(Row::ratio) {
        s.push_str(&format!("- Refitting every weight of conv_wide takes {r:.4}x the time of reloading the engine with them.\n"));
    }
    if cfg!(feature = "plots") {
        s.push_str("\n![refit latency](refit_latency.svg)\n\n![inference under refit](infer_under_refit.svg)\n\n![refit vs reload](refit_vs_reload.svg)\n");
    }
    s
}

/// `1.24 ms`, `10.19 us`, `54.7 ns`: a median as the summary states it.
pub fn human(ns: f64) -> String {
    if ns >= 1e6 {
        format!("{:.2} ms", ns / 1e6)
    } else if ns >= 1e3 {
        format!("{:.2} us", ns / 1e3)
    } else {
        format!("{ns:.1} ns")
    }
}

/// `1.03`, or `1.03 (within noise)` when the ratio's confidence interval
/// includes 1.0 (for a row without one: when its p10-p90 against its
/// baseline's p90-p10 does).
fn ratio_text(rows: &[Row], r: &Row) -> String {
    let Some(x) = r.ratio() else {
        return String::new();
    };
    let base = r
        .baseline
        .split_once('/')
        .and_then(|(b, p)| find(rows, b, p));
    let noise = match r.ratio_ci {
        Some((lo, hi)) => lo <= 1.0 && hi >= 1.0,
        None => base.is_some_and(|b| {
            b.p90_ns > 0.0
                && b.p10_ns > 0.0
                && r.p10_ns / b.p90_ns <= 1.0
                && r.p90_ns / b.p10_ns >= 1.0
        }),
    };
    if noise {
        format!("{x:.2} (within noise)")
    } else {
        format!("{x:.2}")
    }
}

/// The ResNet-18 headlines: refit of every weight against memcpy, one
/// tensor and reload; the oracle's cost; inference under refit.
fn resnet18_headlines(rows: &[Row]) -> String {
    let over = |x: f64, target: f64| if x > target { ", OVER TARGET" } else { "" };
    let mut s = String::new();
    let r = |p: &str| find(rows, "resnet18", p);
    if let (Some(all), Some(one), Some(reload)) =
        (r("refit_all"), r("refit_one_tensor"), r("reload"))
    {
        if let (Some(m), Some(o), Some(rl)) = (all.ratio(), one.ratio(), reload.ratio()) {
            let tensors = 102.0;
            s.push_str(&format!(
                "- ResNet-18 (11.7 M parameters in 102 tensors, 44.6 MiB): a refit of every weight takes {} = {m:.2}x a memcpy of the same bytes (target <= {RESNET_REFIT_TARGET}{}); one tensor of the same bytes {o:.2}x, so each tensor adds {} ({:.2}x in all); reloading the engine instead costs {rl:.1} refits of every weight.\n",
                human(all.median_ns),
                over(m, RESNET_REFIT_TARGET),
                human(((all.median_ns - one.median_ns) / tensors).max(0.0)),
                all.median_ns / one.median_ns,
            ));
        }
    }
    if let Some(o) = rows
        .iter()
        .find(|x| x.benchmark == "resnet18" && x.parameter.starts_with("oracle_"))
    {
        if let Some(ratio) = o.ratio() {
            s.push_str(&format!(
                "- The check oracle's expectation for ResNet-18 ({}) costs {ratio:.2} reference-engine inferences (target <= {RESNET_ORACLE_TARGET}{}).\n",
                o.parameter.trim_start_matches("oracle_"),
                over(ratio, RESNET_ORACLE_TARGET)
            ));
        }
    }
    let alone = rows.iter().find(|x| {
        x.benchmark == "latency"
            && x.parameter.starts_with("infer_resnet18_")
            && x.baseline.is_empty()
    });
    if let Some(a) = alone {
        let under = find(rows, "latency", &format!("{}_w1_refit_all", a.parameter));
        if let (Some(p99), Some(u)) = (a.p99_ns, under.and_then(|u| u.p99_ns)) {
            s.push_str(&format!(
                "- ResNet-18 inference ({}): p50 {}, p99 {}; with a writer refitting every weight back to back, p99 {} ({:.2}x).\n",
                a.parameter.trim_start_matches("infer_resnet18_"),
                human(a.median_ns),
                human(p99),
                human(u),
                u / p99
            ));
        }
    }
    s
}
