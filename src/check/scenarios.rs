//! The scenarios.

use std::path::Path;

use super::subject::{bit_difference, compare, localize, must, Step, Subject};
use super::{differential, fail, model_based, resources, stress, Cx, Scenario, Scope, Verdict};
use crate::engine::{BuildOptions, FailedRefit, NonFinite, Subset};
use crate::tensor::{DType, Tensor, TensorData};

pub(super) static ALL: &[Scenario] = &[
    Scenario {
        name: "seed",
        short: "seed",
        proves: "the vendor demo: ones input, zero kernel gives 0; refit to all-1 gives 9; the 0..9 sweep gives 0, 9, ... 81",
        scope: Scope::Once,
        run: |_, cx, _| verdict(seed(cx)),
    },
    Scenario {
        name: "refittable_parity",
        short: "par",
        proves: "before any refit, the engine built with refit gives what the engine built without refit gives, and what the oracle gives",
        scope: Scope::PerModel,
        run: |_, cx, m| verdict(parity(cx, m)),
    },
    Scenario {
        name: "round_trip",
        short: "rt",
        proves: "refitting A -> B -> A serves B exactly and then reproduces A's outputs bit for bit",
        scope: Scope::PerModel,
        run: |_, cx, m| verdict(round_trip(cx, m)),
    },
    Scenario {
        name: "partial_refit",
        short: "part",
        proves: "missing() is right at every step; a subset refit changes only the weights staged, or is refused where the engine requires every weight",
        scope: Scope::PerModel,
        run: |_, cx, m| verdict(partial(cx, m)),
    },
    Scenario {
        name: "bad_input",
        short: "bad",
        proves: "unknown name, wrong shape, dtype or byte count, empty and non-finite data, refit without enable_refit: a clear error each, and the previous weights keep serving",
        scope: Scope::PerModel,
        run: |_, cx, m| verdict(bad_input(cx, m)),
    },
    Scenario {
        name: "warm_equals_cold",
        short: "warm",
        proves: "an engine refitted A -> B serves what a fresh build with B serves (no oracle needed: any model the engine builds); staged buffers are poisoned before the refit",
        scope: Scope::PerModel,
        run: |_, cx, m| differential::warm_equals_cold(cx, m),
    },
    Scenario {
        name: "history_independence",
        short: "hist",
        proves: "after 5 cycles A -> B -> A through one reused staging buffer per weight, the engine serves what a fresh build with A serves (no drift, no stale or cached state)",
        scope: Scope::PerModel,
        run: |_, cx, m| differential::history_independence(cx, m),
    },
    Scenario {
        name: "model_based",
        short: "mb",
        proves: "arbitrary sequences of infer, stage, refit, invalid stage and empty refit on arbitrary conv chains, residual CNNs and attention blocks match the oracle after every step",
        scope: Scope::Once,
        run: |_, cx, m| model_based::run(cx, m),
    },
    Scenario {
        name: "stress_r1w1",
        short: "r1w1",
        proves: "1 inference thread racing 1 refit thread: no torn, stale, lost or non-monotone result",
        scope: Scope::Once,
        run: |s, cx, _| stress::scenario(cx, s.name, 1, 1),
    },
    Scenario {
        name: "stress_r4w1",
        short: "r4w1",
        proves: "4 inference threads racing 1 refit thread: no torn, stale, lost or non-monotone result",
        scope: Scope::Once,
        run: |s, cx, _| stress::scenario(cx, s.name, 4, 1),
    },
    Scenario {
        name: "stress_r4w2",
        short: "r4w2",
        proves: "4 inference threads racing 2 refit threads: the weights behave as one linearizable register",
        scope: Scope::Once,
        run: |s, cx, _| stress::scenario(cx, s.name, 4, 2),
    },
    Scenario {
        name: "stress_cores_w1",
        short: "core",
        proves: "one inference thread per core racing 1 refit thread",
        scope: Scope::Once,
        run: |s, cx, _| stress::scenario(cx, s.name, std::thread::available_parallelism().map_or(2, |n| n.get()), 1),
    },
    Scenario {
        name: "stress_disjoint",
        short: "disj",
        proves: "2 writers refitting different weights at once: no refit that returned is lost to the other writer's publish",
        scope: Scope::Once,
        run: |_, cx, _| stress::disjoint(cx),
    },
    Scenario {
        name: "stress_vendor",
        short: "vend",
        proves: "the vendor sample's pattern: on a constant input each reader's output changes exactly once per refit it straddles",
        scope: Scope::Once,
        run: |_, cx, _| stress::vendor(cx),
    },
    Scenario {
        name: "resources",
        short: "res",
        proves: "resident memory does not grow over thousands of refits, and the peak during a refit stays near the changed bytes",
        scope: Scope::Once,
        run: |_, cx, m| resources::run(cx, m),
    },
];

fn verdict(r: Step<Verdict>) -> Verdict {
    r.unwrap_or_else(|v| v)
}

fn seed(cx: &Cx<'_>) -> Step<Verdict> {
    let path = cx.config.scratch.join("seed_conv.onnx");
    std::fs::write(&path, crate::fixtures::seed_model().to_bytes())
        .map_err(|e| Verdict::Skip(format!("cannot write {}: {e}", path.display())))?;
    let mut s = Subject::open(cx, &path, &BuildOptions::default())?;
    s.inputs = vec![Tensor::full([1, 1, 3, 3], 1.0)];
    let mut seen = Vec::new();
    let observe = |s: &mut Subject, seen: &mut Vec<f32>, step: &str, want: f32| -> Step<()> {
        let out = must(step, s.ctx.infer(&s.inputs))?;
        let got = out.first().map(Tensor::to_f32_vec).unwrap_or_default();
        seen.push(got.first().copied().unwrap_or(f32::NAN));
        if got != [want] {
            // An exact expectation missed: the worst ratio is infinite, and
            // the oracle says which weight version the output matches.
            s.oracle.worst().record(f64::INFINITY);
            let why = s.oracle.explanation(&s.inputs, &out);
            return Err(fail(
                step,
                format!("{want}"),
                format!("{got:?} (results so far: {seen:?}){why}"),
            ));
        }
        s.oracle.worst().record(0.0);
        Ok(())
    };
    observe(
        &mut s,
        &mut seen,
        "infer the ones input before any refit",
        0.0,
    )?;
    s.refit("refit the kernel to all-1", &[(0, vec![1.0; 9])])?;
    observe(
        &mut s,
        &mut seen,
        "infer after refitting the kernel to all-1",
        9.0,
    )?;
    seen.clear();
    for k in 0..10 {
        s.refit(
            &format!("sweep: refit the kernel to all-{k}"),
            &[(0, vec![k as f32; 9])],
        )?;
        observe(
            &mut s,
            &mut seen,
            &format!("sweep: infer after all-{k}"),
            9.0 * k as f32,
        )?;
    }
    Ok(Verdict::Pass(format!("0 -> 9; sweep {seen:?}")))
}

fn parity(cx: &Cx<'_>, model: &Path) -> Step<Verdict> {
    let mut with = Subject::open(cx, model, &BuildOptions::default())?;
    let out = with.expect_oracle("infer on the engine built with refit, before any refit")?;
    let without = cx.factory.open(model, &BuildOptions::refit(false));
    let Ok(without) = without else {
        return Ok(Verdict::Skip(format!(
            "the engine cannot be built without refit: {}",
            without.err().map(|e| e.to_string()).unwrap_or_default()
        )));
    };
    let mut ctx = must(
        "create a context on the engine built without refit",
        without.context(),
    )?;
    let plain = must(
        "infer on the engine built without refit",
        ctx.infer(&with.inputs),
    )?;
    if let Some(d) = bit_difference(&plain, &out) {
        // Not bit-identical: both builds must then be within the oracle's
        // bound (an engine may pick other kernels for a refittable build).
        let expected = with.expected()?;
        compare(
            "infer on the engine built without refit",
            &expected,
            &plain,
            &with.oracle,
            &with.inputs,
        )
        .map_err(|v| {
            fail(
                "compare the refittable build with the build without refit",
                format!("{} = {} (without refit)", d.place, d.expected),
                format!("{} (with refit); {}", d.observed, v.detail()),
            )
        })?;
    }
    Ok(Verdict::Pass(format!(
        "{} output(s) equal to the build without refit and to the oracle",
        out.len()
    )))
}

fn round_trip(cx: &Cx<'_>, model: &Path) -> Step<Verdict> {
    let mut s = Subject::open(cx, model, &BuildOptions::default())?;
    let n = s.engine.weights().len();
    if n == 0 {
        return Ok(Verdict::Skip("the model has no refittable weights".into()));
    }
    let a_out = s.expect_oracle("infer with the model's weights (A)")?;
    let a: Vec<(usize, Vec<f32>)> = (0..n)
        .map(|i| (i, s.oracle.weights()[s.map[i]].clone()))
        .collect();
    let b: Vec<(usize, Vec<f32>)> = (0..n).map(|i| (i, s.values(i, 101))).collect();
    s.refit("refit every weight to B", &b)?;
    localize(cx, model, &b, s.expect_oracle("infer after refitting to B"))?;
    s.refit("refit every weight back to A", &a)?;
    s.expect_unchanged("infer after refitting back to A", &a_out)?;
    s.expect_oracle("infer after refitting back to A")?;
    Ok(Verdict::Pass(format!("A -> B -> A over {n} weight(s)")))
}

fn sorted(mut v: Vec<String>) -> Vec<String> {
    v.sort();
    v
}

fn partial(cx: &Cx<'_>, model: &Path) -> Step<Verdict> {
    let mut s = Subject::open(cx, model, &BuildOptions::default())?;
    let names: Vec<String> = s.engine.weights().iter().map(|w| w.name.clone()).collect();
    let n = names.len();
    if n == 0 {
        return Ok(Verdict::Skip("the model has no refittable weights".into()));
    }
    let contract = s.engine.info().contract;
    let mut r = must("create a refitter", s.engine.refitter())?;
    let check_missing = |r: &dyn crate::Refitter, staged: &[usize], step: &str| -> Step<()> {
        let want: Vec<String> = sorted(
            (0..n)
                .filter(|i| !staged.contains(i))
                .map(|i| names[i].clone())
                .collect(),
        );
        let got = sorted(must(&format!("{step}: missing()"), r.missing())?);
        if got != want {
            return Err(fail(
                step,
                format!("missing() = {want:?}"),
                format!("{got:?}"),
            ));
        }
        Ok(())
    };
    check_missing(r.as_ref(), &[], "missing() on a new refitter")?;
    // Stage every other weight, checking missing() after each.
    let subset: Vec<usize> = (0..n).step_by(2).collect();
    let mut staged = Vec::new();
    for &i in &subset {
        let v = s.values(i, 202);
        must(
            &format!("stage '{}'", names[i]),
            r.set_named_weights(&names[i], &s.tensor(i, &v)),
        )?;
        staged.push(i);
        check_missing(
            r.as_ref(),
            &staged,
            &format!("missing() after staging '{}'", names[i]),
        )?;
    }
    let before = s.expect_oracle("infer before the subset refit")?;
    let complete = subset.len() == n;
    let result = r.refit();
    match (contract.subset, complete, result) {
        (Subset::RequiresAll, false, Ok(())) => {
            return Err(fail(
                format!("refit with {} of {n} weights staged", subset.len()),
                "an error: the engine declares requires-all",
                "success",
            ))
        }
        (Subset::RequiresAll, false, Err(e)) => {
            if contract.failed_refit == FailedRefit::RollsBack {
                s.expect_unchanged(
                    &format!("infer after the refused subset refit ({e})"),
                    &before,
                )?;
            }
            // Completing the set must then succeed.
            for i in (0..n).filter(|i| !subset.contains(i)) {
                let v = s.values(i, 202);
                must(
                    &format!("stage '{}'", names[i]),
                    r.set_named_weights(&names[i], &s.tensor(i, &v)),
                )?;
            }
            check_missing(
                r.as_ref(),
                &(0..n).collect::<Vec<_>>(),
                "missing() with every weight staged",
            )?;
            must("refit with every weight staged", r.refit())?;
            for i in 0..n {
                s.oracle.set(s.map[i], s.values(i, 202));
            }
        }
        (_, _, Err(e)) => {
            return Err(fail(
                format!("refit {} of {n} weights", subset.len()),
                "success",
                format!("error: {e}"),
            ))
        }
        (_, _, Ok(())) => {
            for &i in &subset {
                s.oracle.set(s.map[i], s.values(i, 202));
            }
        }
    }
    let set: Vec<(usize, Vec<f32>)> = subset.iter().map(|&i| (i, s.values(i, 202))).collect();
    localize(
        cx,
        model,
        &set,
        s.expect_oracle("infer after the refit: only the staged weights changed"),
    )?;
    check_missing(r.as_ref(), &[], "missing() after a successful refit")?;
    Ok(Verdict::Pass(match contract.subset {
        Subset::Accepted => format!("{} of {n} weight(s) refitted alone", subset.len()),
        Subset::RequiresAll => format!(
            "a set of {} of {n} refused, then the whole set applied",
            subset.len()
        ),
    }))
}

/// One malformed staging and what the tensor looks like.
fn bad_tensors(s: &Subject, i: usize) -> Vec<(&'static str, String, Tensor)> {
    let info = s.info(i);
    let name = info.name.clone();
    let shape: Vec<usize> = info.shape.iter().map(|d| d.unwrap_or(0)).collect();
    let numel = s.numel(i);
    let good = s.values(i, 303);
    let mut longer = good.clone();
    longer.push(1.0);
    let mut reshaped = vec![1];
    reshaped.extend(&shape);
    let wrong_dtype = match info.dtype {
        DType::F32 => Tensor {
            shape: shape.clone(),
            data: TensorData::I32(vec![1; numel].into()),
        },
        _ => Tensor::f32(shape.clone(), good.clone()),
    };
    vec![
        (
            "unknown name",
            format!("{name}__no_such_weight"),
            s.tensor(i, &good),
        ),
        (
            "wrong shape (same count, extra dimension)",
            name.clone(),
            Tensor {
                shape: reshaped,
                ..s.tensor(i, &good)
            },
        ),
        (
            "wrong shape (one value more)",
            name.clone(),
            Tensor {
                shape: vec![numel + 1],
                ..s.tensor(i, &longer)
            },
        ),
        ("wrong dtype", name.clone(), wrong_dtype),
        (
            "wrong byte count (one value more than the shape)",
            name.clone(),
            Tensor {
                shape: shape.clone(),
                ..s.tensor(i, &longer)
            },
        ),
        (
            "empty data",
            name.clone(),
            Tensor {
                shape: shape.clone(),
                ..s.tensor(i, &[])
            },
        ),
    ]
}

fn bad_input(cx: &Cx<'_>, model: &Path) -> Step<Verdict> {
    let mut s = Subject::open(cx, model, &BuildOptions::default())?;
    let n = s.engine.weights().len();
    if n == 0 {
        return Ok(Verdict::Skip("the model has no refittable weights".into()));
    }
    let contract = s.engine.info().contract;
    // Serve B first, so that "unchanged" cannot be confused with "the
    // model's initial weights".
    let b: Vec<(usize, Vec<f32>)> = (0..n).map(|i| (i, s.values(i, 404))).collect();
    s.refit("refit every weight to B", &b)?;
    let target = 0;
    let requires_all = contract.subset == Subset::RequiresAll;
    let mut checked = 0;
    for (kind, name, tensor) in bad_tensors(&s, target) {
        let before = localize(
            cx,
            model,
            &b,
            s.expect_oracle(&format!(
                "infer after refitting every weight to B, before staging the {kind} case"
            )),
        )?;
        let mut r = must(&format!("{kind}: create a refitter"), s.engine.refitter())?;
        // Valid weights staged beside the bad one (every other weight where
        // the engine requires all, else the last one): a failed refit must
        // not apply them either.
        let companions: Vec<(usize, Vec<f32>)> = if requires_all {
            (1..n).map(|c| (c, s.values(c, 505 + checked))).collect()
        } else {
            (n > 1)
                .then(|| (n - 1, s.values(n - 1, 505 + checked)))
                .into_iter()
                .collect()
        };
        for (c, v) in &companions {
            let cname = s.info(*c).name.clone();
            must(
                &format!("{kind}: stage a valid '{cname}' first"),
                r.set_named_weights(&cname, &s.tensor(*c, v)),
            )?;
        }
        match r.set_named_weights(&name, &tensor) {
            Err(e) => {
                let msg = e.to_string();
                let named = if kind == "unknown name" {
                    &name
                } else {
                    &s.info(target).name
                };
                if !msg.contains(named.as_str()) {
                    return Err(fail(
                        format!("{kind}: the staging error"),
                        format!("a message naming '{named}'"),
                        format!("'{msg}'"),
                    ));
                }
                if requires_all {
                    // The target is still missing: the refit must be refused
                    // and change nothing; completing the set applies it.
                    if r.refit().is_ok() {
                        return Err(fail(
                            format!(
                                "{kind}: refit with '{}' missing after its staging was refused",
                                s.info(target).name
                            ),
                            "an error: the engine declares requires-all",
                            "success",
                        ));
                    }
                    if contract.failed_refit == FailedRefit::RollsBack {
                        s.expect_unchanged(
                            &format!("{kind}: infer after the refused refit"),
                            &before,
                        )?;
                    }
                    let v = s.values(target, 404);
                    must(
                        &format!("{kind}: stage a valid '{}'", s.info(target).name),
                        r.set_named_weights(&s.info(target).name.clone(), &s.tensor(target, &v)),
                    )?;
                    must(&format!("{kind}: refit the completed set"), r.refit())?;
                    s.oracle.set(s.map[target], v);
                } else {
                    must(
                        &format!("{kind}: refit after the refused staging"),
                        r.refit(),
                    )?;
                }
                for (c, v) in companions {
                    s.oracle.set(s.map[c], v);
                }
                s.expect_oracle(&format!(
                    "{kind}: infer after refit; the refused tensor must not be served"
                ))?;
            }
            Ok(()) => match r.refit() {
                Ok(()) => {
                    return Err(fail(
                        format!(
                            "{kind}: stage and refit '{name}' with shape {:?} and {} {} value(s)",
                            tensor.shape,
                            tensor.data.len(),
                            tensor.dtype()
                        ),
                        "an error at staging or at refit",
                        "both succeeded",
                    ))
                }
                Err(e) => {
                    if contract.failed_refit == FailedRefit::RollsBack {
                        s.expect_unchanged(&format!("{kind}: infer after the failed refit ({e}); the engine declares rolls-back"), &before)?;
                    }
                }
            },
        }
        checked += 1;
    }
    // Non-finite values, by the declared policy.
    for (label, v) in [
        ("NaN", f32::NAN),
        ("+inf", f32::INFINITY),
        ("-inf", f32::NEG_INFINITY),
    ] {
        let mut vals = s.values(target, 606);
        let at = vals.len() / 2;
        vals[at] = v;
        let name = s.info(target).name.clone();
        let before = s.expect_oracle(&format!("infer before staging the {label} case"))?;
        let mut r = must(&format!("{label}: create a refitter"), s.engine.refitter())?;
        // A valid companion first (where there is another weight): a
        // refused refit must not apply it either.
        let mut others = s.complete(&[]);
        if others.is_empty() && n > 1 {
            others.push((n - 1, s.values(n - 1, 707)));
        }
        let mut staged = Ok(());
        for (c, v) in others.iter().filter(|(c, _)| *c != target) {
            let cname = s.info(*c).name.clone();
            staged = staged.and_then(|()| r.set_named_weights(&cname, &s.tensor(*c, v)));
        }
        let staged = staged.and_then(|()| r.set_named_weights(&name, &s.tensor(target, &vals)));
        let result = staged.and_then(|()| r.refit());
        match (contract.non_finite, result) {
            (NonFinite::Rejected, Ok(())) => {
                return Err(fail(
                    format!("stage and refit '{name}' holding {label} at {at}"),
                    "an error: the engine declares it rejects non-finite weights",
                    "accepted",
                ))
            }
            (NonFinite::Rejected, Err(_)) => {
                s.expect_unchanged(
                    &format!("{label}: infer after the rejected weight"),
                    &before,
                )?;
                // Whatever the refitter still holds, the rejected values must
                // never be served.
                let after = r.refit();
                if after.is_ok() {
                    for (c, v) in others.into_iter().filter(|(c, _)| *c != target) {
                        s.oracle.set(s.map[c], v);
                    }
                }
                s.expect_oracle(&format!("{label}: infer after refitting again; the rejected weight must not be applied later"))?;
            }
            (NonFinite::Served, Err(e)) => {
                return Err(fail(
                    format!("stage and refit '{name}' holding {label}"),
                    "success: the engine declares it serves non-finite weights",
                    format!("error: {e}"),
                ))
            }
            (NonFinite::Served, Ok(())) => {
                for (c, v) in others.into_iter().filter(|(c, _)| *c != target) {
                    s.oracle.set(s.map[c], v);
                }
                s.oracle.set(s.map[target], vals);
                s.expect_oracle(&format!(
                    "{label}: infer with the non-finite weight served faithfully"
                ))?;
                let restore = s.values(target, 404);
                s.refit(&format!("{label}: restore B"), &[(target, restore)])?;
            }
        }
        checked += 1;
    }
    // A model built without refit refuses a refitter and keeps serving.
    let plain = cx.factory.open(model, &BuildOptions::refit(false));
    match plain {
        Err(e) => {
            return Ok(Verdict::Pass(format!(
                "{checked} bad inputs refused; (the engine cannot be built without refit: {e})"
            )));
        }
        Ok(plain) => {
            if plain.refitter().is_ok() {
                return Err(fail(
                    "ask an engine built without enable_refit for a refitter",
                    "an error",
                    "a refitter",
                ));
            }
            let mut fresh = Subject::open(cx, model, &BuildOptions::refit(false))?;
            fresh.expect_oracle(
                "infer on the engine built without refit after its refitter was refused",
            )?;
        }
    }
    Ok(Verdict::Pass(format!(
        "{} bad inputs refused with the previous weights still served",
        checked + 1
    )))
}
