//! The oracle's ops beyond `Conv` and `Relu`: each evaluated in f64 from
//! the ONNX definition with loops of its own (no code shared with the
//! reference engine's [`crate::model::ops`]), carrying for every element
//! the exact value and a bound on the error an engine computing at the
//! declared precision may make. The reasoning, op by op:
//!
//! Notation: an input element `x` is known exactly with an error bound `e`
//! on what the engine holds for it, `X = |x| + e` is the largest magnitude
//! the engine's operand can have; `u` is the unit roundoff of the format
//! results are stored in, `u_op` that of the operand format (0 for f32),
//! `u_acc` that of the accumulator; `gamma_n = n u_acc / (1 - n u_acc)`.
//!
//! - **Add, Sub**: `e_a + e_b` carried, plus one rounding of each operand
//!   and of the result: `((1 + u_op)(1 + u) - 1) (A + B)`. Bounded by the
//!   operands' magnitudes, not the result's: cancellation is the oracle's
//!   business, the engine's error is not.
//! - **Mul**: `|a| e_b + B e_a` carried, plus `((1 + u_op)^2 (1 + u) - 1) A B`.
//! - **Div**: where `|b| > e_b`, `(e_a |b| + |a| e_b) / (|b| (|b| - e_b))`
//!   carried plus `((1 + u_op)^2 (1 + u) - 1) A / (|b| - e_b)`; where the
//!   divisor's interval holds 0 the bound is infinite (any value passes:
//!   the oracle cannot judge it).
//! - **A function f** (Sigmoid, Tanh, Erf, Sqrt, Gelu): the input's error
//!   carried through `max |f'|` over `[x - e, x + e]` (Sqrt: also at most
//!   `sqrt(e)`, Gelu: `|f'| <= 1.25` everywhere), plus the engine's own
//!   implementation of `f`: `rel u |f(x)|` +
//!   `abs u max(1, |x|)`, the engine's declared [`Allowance`] (default
//!   [`Allowance::DEFAULT`], 8 and 8). The absolute part is needed:
//!   vendor libraries approximate these functions to an absolute accuracy
//!   (ONNX Runtime's CPU Sigmoid is off by 260,000 ulps near 0 while its
//!   absolute error stays near 2.5 u; its Gelu by 7.5 u of the input's
//!   scale, see the repository's numerics notes); 8 and 8 pass those
//!   figures with room.
//! - **Relu, Clip, MaxPool, Reshape, Flatten, Identity**: 1-Lipschitz or
//!   moves of values: the error passes through, nothing is rounded.
//! - **Gemm, MatMul**: dot products as Conv's (Higham 3.1): carried
//!   `sum |a| e_b + |b| e_a + e_a e_b`, plus
//!   `((1 + u_op)^2 (1 + gamma_{k+2}) (1 + u) - 1)` times the magnitude
//!   `|alpha| sum A B + |beta| C` (`k` products, then alpha and beta).
//! - **BatchNormalization**: with `k = scale / sqrt(var + eps)` the input's
//!   error carried as `|k| e`; an engine may compute the formula as written
//!   or fold it (`x k + (B - mean k)`, into a conv's weights even): at most
//!   eight roundings of terms no larger than `|k| (X + |mean|) + |B|`, so
//!   `((1 + u_op)^2 (1 + u)^8 - 1)` times that. A conv whose output feeds a
//!   BatchNormalization carries its float bound with one rounding more per
//!   term (`W k` rounded), and is never taken as exact: folded, integer
//!   weights are no longer integers.
//! - **Softmax** over a row: perturbing every input by at most `E` moves
//!   each output by a factor within `[exp(-2E), exp(2E)]`; the engine's
//!   `x - max` rounds (`u |x - max|` more per input), its exp is within
//!   `rel u` (the softmax allowance), the sum of `n` terms within `gamma_n`, the
//!   division one `u`: `y (exp(2E') - 1 + (rel + 2) u + gamma_n)`
//!   with `E' = max (e + u |x - max|)`.
//! - **AveragePool, GlobalAveragePool**: a mean of `c` terms: the mean of
//!   the errors carried, plus `((1 + gamma_c)(1 + u)^2 - 1)` times the
//!   mean of the magnitudes.
//!
//! The oracle's own f64 rounding is added on top of every bound
//! (`OWN` times the magnitude). Exact integers stay exact (bound 0) through
//! Add, Sub and Mul of integers the formats hold, Relu, Clip, MaxPool and
//! the moves.

use super::{int_limit, is_small_int, unit, Act};
use crate::engine::{Allowance, Family, Numerics, Precision};
use crate::model::ops::{move_ops, Op, PoolAttrs};

/// The oracle's own f64 rounding per op, in f64 epsilons of the magnitude.
const OWN: f64 = 64.0 * f64::EPSILON;

/// The unit roundoffs of a precision.
#[derive(Clone, Copy)]
pub(crate) struct Units {
    /// Operand rounding (0 for f32).
    op: f64,
    /// Accumulation.
    acc: f64,
    /// Stored results.
    st: f64,
    /// Integers from which every integer is exact in the operand and
    /// storage formats.
    int_limit: f64,
    /// The engine's allowances, per [`Family`].
    allow: [Allowance; 3],
}

impl Units {
    /// The unit roundoffs of `p`, and the allowances `n` declares.
    pub fn of(p: Precision, n: &Numerics) -> Units {
        Units {
            op: if p.operand_bits() >= 23 {
                0.0
            } else {
                unit(p.operand_bits())
            },
            acc: unit(p.accumulator_bits()),
            st: unit(p.storage_bits()),
            int_limit: int_limit(p.operand_bits()).min(int_limit(p.storage_bits())),
            allow: n.allowance,
        }
    }

    fn allowance(&self, f: Family) -> Allowance {
        self.allow[f as usize]
    }

    fn gamma(&self, n: usize) -> f64 {
        let nu = n as f64 * self.acc;
        if nu < 1.0 {
            nu / (1.0 - nu)
        } else {
            f64::INFINITY
        }
    }
}

/// Row-major strides of a shape.
fn strides(shape: &[usize]) -> Vec<usize> {
    let mut s = vec![1; shape.len()];
    for i in (0..shape.len().saturating_sub(1)).rev() {
        s[i] = s[i + 1] * shape[i + 1];
    }
    s
}

/// The element of `from` (broadcast to `to`) that output position `i` of
/// `to` reads.
fn source_index(i: usize, to: &[usize], from: &[usize]) -> usize {
    let ts = strides(to);
    let fs = strides(from);
    let pad = to.len() - from.len();
    let mut src = 0;
    for d in 0..to.len() {
        let coord = (i / ts[d]) % to[d];
        if d >= pad && from[d - pad] != 1 {
            src += coord * fs[d - pad];
        }
    }
    src
}

/// NumPy broadcasting of two shapes.
fn broadcast_shape(a: &[usize], b: &[usize]) -> Result<Vec<usize>, String> {
    let n = a.len().max(b.len());
    (0..n)
        .map(|i| {
            let da = if i + a.len() < n {
                1
            } else {
                a[i + a.len() - n]
            };
            let db = if i + b.len() < n {
                1
            } else {
                b[i + b.len() - n]
            };
            if da == db || db == 1 {
                Ok(da)
            } else if da == 1 {
                Ok(db)
            } else {
                Err(format!("shapes {a:?} and {b:?} do not broadcast"))
            }
        })
        .collect()
}

fn act(shape: Vec<usize>, values: Vec<f64>, errors: Vec<f64>, exact_ints: bool) -> Act {
    Act {
        shape,
        values,
        errors,
        exact_ints,
    }
}

/// The largest `|f'|` over `[x - e, x + e]` of a function whose `|f'|`
/// falls away from 0 on both sides: its value at the point nearest 0.
fn peak_at_zero(x: f64, e: f64, df: impl Fn(f64) -> f64) -> f64 {
    let t = if x - e <= 0.0 && x + e >= 0.0 {
        0.0
    } else if x > 0.0 {
        x - e
    } else {
        x + e
    };
    df(t).abs()
}

fn gelu(x: f64, tanh: bool) -> f64 {
    if tanh {
        let c = (2.0 / std::f64::consts::PI).sqrt();
        0.5 * x * (1.0 + (c * (x + 0.044715 * x * x * x)).tanh())
    } else {
        0.5 * x * (1.0 + libm::erf(x / std::f64::consts::SQRT_2))
    }
}

/// Evaluates `op` on `xs` (the node's inputs, in order) at the precision
/// `u` describes.
///
/// # Errors
/// A message when the shapes do not fit the op.
pub(super) fn eval(op: &Op, xs: &[&Act], u: Units) -> Result<Act, String> {
    let x = xs[0];
    let n = x.values.len();
    match op {
        Op::Relu | Op::Identity | Op::Flatten { .. } | Op::Reshape { .. } | Op::Clip { .. } => {
            let values: Vec<f64> = match op {
                // NaN stays NaN (f64::max would drop it).
                Op::Relu => x
                    .values
                    .iter()
                    .map(|&v| if v < 0.0 { 0.0 } else { v })
                    .collect(),
                Op::Clip { min, max } => x
                    .values
                    .iter()
                    .map(|&v| {
                        let v = min.map_or(v, |m| v.max(m));
                        max.map_or(v, |m| v.min(m))
                    })
                    .collect(),
                _ => x.values.clone(),
            };
            let shape = match op {
                Op::Flatten { axis } => {
                    let r = x.shape.len() as i64;
                    let a = if *axis < 0 { axis + r } else { *axis };
                    if a < 0 || a > r {
                        return Err(format!("axis {axis} for rank {r}"));
                    }
                    let a = a as usize;
                    vec![x.shape[..a].iter().product(), x.shape[a..].iter().product()]
                }
                Op::Reshape { shape, allowzero } => {
                    let mut out: Vec<usize> = Vec::new();
                    let mut free = None;
                    for (i, &d) in shape.iter().enumerate() {
                        if d == -1 {
                            free = Some(i);
                            out.push(1);
                        } else if d == 0 && !allowzero {
                            out.push(*x.shape.get(i).ok_or("0 past the input's rank")?);
                        } else if d >= 0 {
                            out.push(d as usize);
                        } else {
                            return Err(format!("target shape {shape:?}"));
                        }
                    }
                    let known: usize = out.iter().product();
                    if let Some(f) = free {
                        if known == 0 || n % known != 0 {
                            return Err(format!("{:?} to {shape:?}", x.shape));
                        }
                        out[f] = n / known;
                    }
                    if out.iter().product::<usize>() != n {
                        return Err(format!("{:?} to {shape:?}", x.shape));
                    }
                    out
                }
                _ => x.shape.clone(),
            };
            let exact_ints = x.exact_ints
                && match op {
                    Op::Clip { min, max } => [min, max]
                        .iter()
                        .all(|b| b.is_none_or(|v| is_small_int(v, u.int_limit))),
                    _ => true,
                };
            Ok(act(shape, values, x.errors.clone(), exact_ints))
        }
        Op::Add | Op::Sub | Op::Mul | Op::Div => {
            let y = xs[1];
            let shape = broadcast_shape(&x.shape, &y.shape)?;
            let total: usize = shape.iter().product();
            let mut values = Vec::with_capacity(total);
            let mut errors = Vec::with_capacity(total);
            let one = (1.0 + u.op) * (1.0 + u.st) - 1.0;
            let two = (1.0 + u.op).powi(2) * (1.0 + u.st) - 1.0;
            let ints = x.exact_ints && y.exact_ints && !matches!(op, Op::Div);
            let mut all_exact = ints;
            for i in 0..total {
                let (ia, ib) = (
                    source_index(i, &shape, &x.shape),
                    source_index(i, &shape, &y.shape),
                );
                let (a, ea, b, eb) = (x.values[ia], x.errors[ia], y.values[ib], y.errors[ib]);
                let (am, bm) = (a.abs() + ea, b.abs() + eb);
                let (v, carried, rounding, mag) = match op {
                    Op::Add => (a + b, ea + eb, one * (am + bm), am + bm),
                    Op::Sub => (a - b, ea + eb, one * (am + bm), am + bm),
                    Op::Mul => (a * b, a.abs() * eb + bm * ea, two * am * bm, am * bm),
                    _ => {
                        if b.abs() <= eb || b == 0.0 {
                            (a / b, f64::INFINITY, 0.0, 0.0)
                        } else {
                            let lo = b.abs() - eb;
                            (
                                a / b,
                                (ea * b.abs() + a.abs() * eb) / (b.abs() * lo),
                                two * am / lo,
                                am / lo,
                            )
                        }
                    }
                };
                let exact = ints && is_small_int(v, u.int_limit);
                all_exact &= exact;
                values.push(v);
                errors.push(if exact {
                    0.0
                } else {
                    carried + rounding + OWN * mag
                });
            }
            Ok(act(shape, values, errors, all_exact))
        }
        Op::Sigmoid | Op::Tanh | Op::Erf | Op::Sqrt | Op::Gelu { .. } => {
            let mut values = Vec::with_capacity(n);
            let mut errors = Vec::with_capacity(n);
            for (&v, &e) in x.values.iter().zip(&x.errors) {
                let (f, carried) = match op {
                    Op::Sigmoid => {
                        let s = |t: f64| 1.0 / (1.0 + (-t).exp());
                        let d = peak_at_zero(v, e, |t| s(t) * (1.0 - s(t)));
                        (s(v), d * e)
                    }
                    Op::Tanh => {
                        let d = peak_at_zero(v, e, |t| 1.0 - t.tanh().powi(2));
                        (v.tanh(), d * e)
                    }
                    Op::Erf => {
                        let d = peak_at_zero(v, e, |t| {
                            2.0 / std::f64::consts::PI.sqrt() * (-t * t).exp()
                        });
                        (libm::erf(v), d * e)
                    }
                    Op::Sqrt => {
                        let lo = v - e;
                        let d = if lo > 0.0 {
                            0.5 / lo.sqrt()
                        } else {
                            f64::INFINITY
                        };
                        (v.sqrt(), (d * e).min(e.sqrt()))
                    }
                    Op::Gelu { tanh } => (gelu(v, *tanh), 1.25 * e),
                    _ => unreachable!("functions only"),
                };
                let a = u.allowance(Family::Activation);
                let allowance = a.rel * u.st * f.abs()
                    + a.abs * u.st * v.abs().max(1.0)
                    + u.op * v.abs() * 1.25;
                values.push(f);
                errors.push(carried + allowance + OWN * v.abs().max(1.0));
            }
            Ok(act(x.shape.clone(), values, errors, false))
        }
        Op::Gemm {
            alpha,
            beta,
            trans_a,
            trans_b,
        } => {
            let b = xs[1];
            if x.shape.len() != 2 || b.shape.len() != 2 {
                return Err("Gemm of operands that are not 2-D".into());
            }
            let (m, k) = if *trans_a {
                (x.shape[1], x.shape[0])
            } else {
                (x.shape[0], x.shape[1])
            };
            let (k2, nn) = if *trans_b {
                (b.shape[1], b.shape[0])
            } else {
                (b.shape[0], b.shape[1])
            };
            if k != k2 {
                return Err(format!("Gemm inner dimensions {k} and {k2}"));
            }
            let a_idx = |i: usize, p: usize| if *trans_a { p * m + i } else { i * k + p };
            let b_idx = |p: usize, j: usize| if *trans_b { j * k + p } else { p * nn + j };
            let c = xs.get(2);
            let out = [m, nn];
            let rel = (1.0 + u.op).powi(2) * (1.0 + u.gamma(k + 2)) * (1.0 + u.st) - 1.0;
            let mut values = vec![0.0; m * nn];
            let mut errors = vec![0.0; m * nn];
            for i in 0..m {
                for j in 0..nn {
                    let (mut s, mut mag, mut carried) = (0.0, 0.0, 0.0);
                    for p in 0..k {
                        let (ai, bi) = (a_idx(i, p), b_idx(p, j));
                        let (av, ae, bv, be) =
                            (x.values[ai], x.errors[ai], b.values[bi], b.errors[bi]);
                        s += av * bv;
                        mag += (av.abs() + ae) * (bv.abs() + be);
                        carried += av.abs() * be + bv.abs() * ae + ae * be;
                    }
                    let mut v = alpha * s;
                    mag *= alpha.abs();
                    carried *= alpha.abs();
                    if let Some(c) = c {
                        let ci = source_index(i * nn + j, &out, &c.shape);
                        v += beta * c.values[ci];
                        mag += beta.abs() * (c.values[ci].abs() + c.errors[ci]);
                        carried += beta.abs() * c.errors[ci];
                    }
                    values[i * nn + j] = v;
                    errors[i * nn + j] = carried + (rel + OWN) * mag;
                }
            }
            Ok(act(out.to_vec(), values, errors, false))
        }
        Op::MatMul => {
            let b = xs[1];
            let (sa, sb) = (&x.shape, &b.shape);
            if sa.is_empty() || sb.is_empty() {
                return Err("MatMul of a scalar".into());
            }
            // 1-D operands as a row (A) or a column (B).
            let a2: Vec<usize> = if sa.len() == 1 {
                vec![1, sa[0]]
            } else {
                sa.clone()
            };
            let b2: Vec<usize> = if sb.len() == 1 {
                vec![sb[0], 1]
            } else {
                sb.clone()
            };
            let (m, k) = (a2[a2.len() - 2], a2[a2.len() - 1]);
            let (k2, nn) = (b2[b2.len() - 2], b2[b2.len() - 1]);
            if k != k2 {
                return Err(format!("MatMul inner dimensions {k} and {k2}"));
            }
            let batch = broadcast_shape(&a2[..a2.len() - 2], &b2[..b2.len() - 2])?;
            let batches: usize = batch.iter().product();
            let rel = (1.0 + u.op).powi(2) * (1.0 + u.gamma(k)) * (1.0 + u.st) - 1.0;
            let mut values = Vec::with_capacity(batches * m * nn);
            let mut errors = Vec::with_capacity(batches * m * nn);
            for t in 0..batches {
                let ta = source_index(t, &batch, &a2[..a2.len() - 2]);
                let tb = source_index(t, &batch, &b2[..b2.len() - 2]);
                for i in 0..m {
                    for j in 0..nn {
                        let (mut s, mut mag, mut carried) = (0.0, 0.0, 0.0);
                        for p in 0..k {
                            let ai = ta * m * k + i * k + p;
                            let bi = tb * k * nn + p * nn + j;
                            let (av, ae, bv, be) =
                                (x.values[ai], x.errors[ai], b.values[bi], b.errors[bi]);
                            s += av * bv;
                            mag += (av.abs() + ae) * (bv.abs() + be);
                            carried += av.abs() * be + bv.abs() * ae + ae * be;
                        }
                        values.push(s);
                        errors.push(carried + (rel + OWN) * mag);
                    }
                }
            }
            let mut shape = batch;
            if sa.len() > 1 {
                shape.push(m);
            }
            if sb.len() > 1 {
                shape.push(nn);
            }
            Ok(act(shape, values, errors, false))
        }
        Op::BatchNorm { epsilon } => {
            let (scale, bias, mean, var) = (xs[1], xs[2], xs[3], xs[4]);
            if x.shape.len() < 2 {
                return Err("BatchNormalization of an input without channels".into());
            }
            let c = x.shape[1];
            let plane: usize = x.shape[2..].iter().product();
            let rel = (1.0 + u.op).powi(2) * (1.0 + u.st).powi(8) - 1.0;
            let mut values = Vec::with_capacity(n);
            let mut errors = Vec::with_capacity(n);
            for i in 0..n {
                let ch = (i / plane.max(1)) % c;
                let k = scale.values[ch] / (var.values[ch] + epsilon).sqrt();
                let (v, e) = (x.values[i], x.errors[i]);
                values.push((v - mean.values[ch]) * k + bias.values[ch]);
                let mag = k.abs() * (v.abs() + e + mean.values[ch].abs()) + bias.values[ch].abs();
                errors.push(k.abs() * e + (rel + OWN) * mag);
            }
            Ok(act(x.shape.clone(), values, errors, false))
        }
        Op::Softmax { axis, legacy } => {
            let r = x.shape.len() as i64;
            let a = if *axis < 0 { axis + r } else { *axis };
            if a < 0 || a >= r {
                return Err(format!("axis {axis} for rank {r}"));
            }
            let a = a as usize;
            let (outer, len, inner): (usize, usize, usize) = if *legacy {
                (
                    x.shape[..a].iter().product(),
                    x.shape[a..].iter().product(),
                    1,
                )
            } else {
                (
                    x.shape[..a].iter().product(),
                    x.shape[a],
                    x.shape[a + 1..].iter().product(),
                )
            };
            let mut values = vec![0.0; n];
            let mut errors = vec![0.0; n];
            for o in 0..outer {
                for i in 0..inner {
                    let idx: Vec<usize> = (0..len).map(|r| (o * len + r) * inner + i).collect();
                    let m = idx
                        .iter()
                        .map(|&j| x.values[j])
                        .fold(f64::NEG_INFINITY, f64::max);
                    let exps: Vec<f64> = idx.iter().map(|&j| (x.values[j] - m).exp()).collect();
                    let sum: f64 = exps.iter().sum();
                    let big_e = idx
                        .iter()
                        .map(|&j| x.errors[j] + (u.st + u.op) * (x.values[j] - m).abs())
                        .fold(0.0, f64::max);
                    let factor = (2.0 * big_e).exp_m1()
                        + (u.allowance(Family::Softmax).rel + 2.0) * u.st
                        + u.gamma(len)
                        + OWN;
                    for (&j, &ex) in idx.iter().zip(&exps) {
                        let y = ex / sum;
                        values[j] = y;
                        errors[j] = y * factor;
                    }
                }
            }
            Ok(act(x.shape.clone(), values, errors, false))
        }
        Op::MaxPool(p) | Op::AveragePool(p) => pool(x, p, matches!(op, Op::MaxPool(_)), u),
        Op::GlobalAveragePool => {
            if x.shape.len() < 3 {
                return Err("GlobalAveragePool of an input without spatial dimensions".into());
            }
            let plane: usize = x.shape[2..].iter().product();
            let planes = x.shape[0] * x.shape[1];
            let rel = (1.0 + u.gamma(plane)) * (1.0 + u.st).powi(2) - 1.0;
            let mut values = Vec::with_capacity(planes);
            let mut errors = Vec::with_capacity(planes);
            for q in 0..planes {
                let r = q * plane..(q + 1) * plane;
                let c = plane as f64;
                values.push(x.values[r.clone()].iter().sum::<f64>() / c);
                let carried = x.errors[r.clone()].iter().sum::<f64>() / c;
                let mag = x.values[r.clone()]
                    .iter()
                    .zip(&x.errors[r])
                    .map(|(v, e)| v.abs() + e)
                    .sum::<f64>()
                    / c;
                errors.push(carried + (rel + OWN) * mag);
            }
            let mut shape = x.shape[..2].to_vec();
            shape.extend(std::iter::repeat_n(1, x.shape.len() - 2));
            Ok(act(shape, values, errors, false))
        }
        move_ops!() => {
            let shapes: Vec<&[usize]> = xs.iter().map(|a| &a.shape[..]).collect();
            let (shape, map) = crate::model::ops::moves(op, &shapes)?;
            Ok(act(
                shape,
                map.iter().map(|&(k, i)| xs[k].values[i]).collect(),
                map.iter().map(|&(k, i)| xs[k].errors[i]).collect(),
                xs.iter().all(|a| a.exact_ints),
            ))
        }
        Op::ReduceMean { axes, keepdims } => {
            let rank = x.shape.len();
            let reduced = crate::model::ops::reduce_axes(axes, rank)?;
            let out_shape: Vec<usize> = (0..rank)
                .filter_map(|i| match (reduced.contains(&i), keepdims) {
                    (true, true) => Some(1),
                    (true, false) => None,
                    (false, _) => Some(x.shape[i]),
                })
                .collect();
            let total: usize = out_shape.iter().product();
            let c: usize = reduced.iter().map(|&i| x.shape[i]).product();
            let st = strides(&x.shape);
            let (mut sum, mut esum, mut mag) =
                (vec![0.0; total], vec![0.0; total], vec![0.0; total]);
            for i in 0..n {
                // The output element: the input's coordinates on kept axes.
                let (mut o, mut stride) = (0usize, 1usize);
                for d in (0..rank).rev() {
                    if !reduced.contains(&d) {
                        o += (i / st[d]) % x.shape[d] * stride;
                        stride *= x.shape[d];
                    }
                }
                sum[o] += x.values[i];
                esum[o] += x.errors[i];
                mag[o] += x.values[i].abs() + x.errors[i];
            }
            let cf = c.max(1) as f64;
            let rel = (1.0 + u.gamma(c)) * (1.0 + u.st).powi(2) - 1.0;
            Ok(act(
                out_shape,
                sum.iter().map(|v| v / cf).collect(),
                esum.iter()
                    .zip(&mag)
                    .map(|(e, m)| e / cf + (rel + OWN) * m / cf)
                    .collect(),
                false,
            ))
        }
        Op::LayerNorm { axis, epsilon } => layer_norm(xs, *axis, *epsilon, u),
        Op::Pow { p } => {
            let mut values = Vec::with_capacity(n);
            let mut errors = Vec::with_capacity(n);
            for (&v, &e) in x.values.iter().zip(&x.errors) {
                let f = v.powf(*p);
                let carried = if *p >= 1.0 {
                    p.abs() * (v.abs() + e).powf(p - 1.0) * e
                } else if *p > 0.0 {
                    // Hölder: |a^p - b^p| <= |a - b|^p.
                    e.powf(*p)
                } else if v.abs() > e {
                    p.abs() * (v.abs() - e).powf(p - 1.0) * e
                } else {
                    f64::INFINITY
                };
                let a = u.allowance(Family::Activation);
                let allowance = a.rel * u.st * f.abs()
                    + a.abs * u.st * v.abs().max(1.0)
                    + u.op * p.abs() * f.abs();
                values.push(f);
                errors.push(carried + allowance + OWN * f.abs().max(1.0));
            }
            Ok(act(x.shape.clone(), values, errors, false))
        }
        Op::HardSigmoid { alpha, beta } => {
            let rel = (1.0 + u.op) * (1.0 + u.st).powi(2) - 1.0;
            Ok(act(
                x.shape.clone(),
                x.values
                    .iter()
                    .map(|&v| (alpha * v + beta).clamp(0.0, 1.0))
                    .collect(),
                x.values
                    .iter()
                    .zip(&x.errors)
                    .map(|(&v, &e)| {
                        alpha.abs() * e + (rel + OWN) * (alpha.abs() * (v.abs() + e) + beta.abs())
                    })
                    .collect(),
                false,
            ))
        }
        Op::HardSwish => {
            let rel = (1.0 + u.op) * (1.0 + u.st).powi(4) - 1.0;
            Ok(act(
                x.shape.clone(),
                x.values
                    .iter()
                    .map(|&v| v * (v / 6.0 + 0.5).clamp(0.0, 1.0))
                    .collect(),
                x.values
                    .iter()
                    .zip(&x.errors)
                    .map(|(&v, &e)| {
                        let m = v.abs() + e;
                        // |f'| <= 1.5 everywhere.
                        1.5 * e + (rel + OWN) * (m * (m / 6.0 + 0.5) + m)
                    })
                    .collect(),
                false,
            ))
        }
        Op::Conv(_) => Err("Conv is the oracle's own".into()),
    }
}

/// LayerNormalization over the dimensions from `axis` on. First-order
/// perturbation, doubled: with `d = x - mean`, `s = sqrt(var + eps)`,
/// `z = d / s` and `E` the row's largest input error (the engine's own
/// rounding of the mean and of `x - mean` counted into it), `d` moves by
/// at most `e_j + E`, the variance by `2 mean(|d| (e + E)) + (2E)^2`, `s`
/// by that over `2 s`, so `z_j` by `(e_j + E) / s + |z_j| ds / s`; twice
/// that is carried. Then the variance's sum (`gamma_{n+1}` relative), the
/// square root, the division, the scale and the shift round: `(gamma_n +
/// 4u) |z| |scale|` and `((1 + u)^2 - 1) (|z scale| + |B|)`, plus the
/// engine's declared normalization allowance (`rel u |z scale| + abs u
/// |scale|`).
fn layer_norm(xs: &[&Act], axis: i64, epsilon: f64, u: Units) -> Result<Act, String> {
    let x = xs[0];
    let rank = x.shape.len() as i64;
    let a = if axis < 0 { axis + rank } else { axis };
    if a < 0 || a >= rank {
        return Err(format!("axis {axis} for rank {rank}"));
    }
    let tail = &x.shape[a as usize..];
    let row: usize = tail.iter().product();
    let (scale, bias) = (xs[1], xs.get(2));
    let at = |p: &Act, j: usize| source_index(j, tail, &p.shape);
    let n = x.values.len();
    let mut values = vec![0.0; n];
    let mut errors = vec![0.0; n];
    let g = u.gamma(row + 1);
    for r in 0..n / row.max(1) {
        let idx = r * row..(r + 1) * row;
        let xv = &x.values[idx.clone()];
        let xe = &x.errors[idx.clone()];
        let rf = row as f64;
        let mean = xv.iter().sum::<f64>() / rf;
        let abs_mean = xv.iter().map(|v| v.abs()).sum::<f64>() / rf;
        let var = xv.iter().map(|v| (v - mean).powi(2)).sum::<f64>() / rf;
        let sd = (var + epsilon).sqrt();
        // Input errors with the engine's rounding of mean and x - mean.
        let e: Vec<f64> = xv
            .iter()
            .zip(xe)
            .map(|(v, e)| e + g * abs_mean + u.st * (v.abs() + mean.abs()))
            .collect();
        let big_e = e.iter().copied().fold(0.0, f64::max);
        let dvar = 2.0
            * xv.iter()
                .zip(&e)
                .map(|(v, e)| (v - mean).abs() * (e + big_e))
                .sum::<f64>()
            / rf
            + (2.0 * big_e).powi(2)
            + g * (var + epsilon);
        let ds = dvar / (2.0 * sd);
        for j in 0..row {
            let z = (xv[j] - mean) / sd;
            let sc = scale.values[at(scale, j)];
            let b = bias.map_or(0.0, |b| b.values[at(b, j)]);
            let dz = 2.0 * ((e[j] + big_e) / sd + z.abs() * ds / sd);
            values[r * row + j] = z * sc + b;
            errors[r * row + j] = sc.abs() * dz
                + (g + (4.0 + u.allowance(Family::Normalization).rel) * u.st) * z.abs() * sc.abs()
                + u.allowance(Family::Normalization).abs * u.st * sc.abs()
                + ((1.0 + u.st).powi(2) - 1.0 + OWN) * ((z * sc).abs() + b.abs());
        }
    }
    Ok(act(x.shape.clone(), values, errors, false))
}

/// One pooled dimension's output size (ONNX, with PyTorch's rule that a
/// window may not start in the end padding under ceil_mode).
fn pooled(
    input: usize,
    k: usize,
    s: usize,
    d: usize,
    pb: usize,
    pe: usize,
    ceil: bool,
) -> Result<usize, String> {
    let ext = d * (k - 1) + 1;
    let total = input + pb + pe;
    if total < ext {
        return Err("the window is larger than the padded input".into());
    }
    let num = (total - ext) as f64 / s as f64;
    let mut out = if ceil { num.ceil() } else { num.floor() } as usize + 1;
    if ceil && (out - 1) * s >= input + pb {
        out -= 1;
    }
    Ok(out)
}

fn pool(x: &Act, p: &PoolAttrs, max: bool, u: Units) -> Result<Act, String> {
    if x.shape.len() != 4 {
        return Err(format!("pooling of {:?}: 2-D only", x.shape));
    }
    let (h, w) = (x.shape[2], x.shape[3]);
    let oh = pooled(
        h,
        p.kernel[0],
        p.strides[0],
        p.dilations[0],
        p.pads[0],
        p.pads[2],
        p.ceil_mode,
    )?;
    let ow = pooled(
        w,
        p.kernel[1],
        p.strides[1],
        p.dilations[1],
        p.pads[1],
        p.pads[3],
        p.ceil_mode,
    )?;
    let planes = x.shape[0] * x.shape[1];
    let mut values = Vec::with_capacity(planes * oh * ow);
    let mut errors = Vec::with_capacity(planes * oh * ow);
    for q in 0..planes {
        for oy in 0..oh {
            for ox in 0..ow {
                let (mut best, mut best_e) = (f64::NEG_INFINITY, 0.0f64);
                let (mut sum, mut esum, mut mag) = (0.0, 0.0, 0.0);
                let (mut inside, mut counted) = (0usize, 0usize);
                for ky in 0..p.kernel[0] {
                    for kx in 0..p.kernel[1] {
                        // Position in the padded input.
                        let py = oy * p.strides[0] + ky * p.dilations[0];
                        let px = ox * p.strides[1] + kx * p.dilations[1];
                        if py < h + p.pads[0] + p.pads[2] && px < w + p.pads[1] + p.pads[3] {
                            counted += 1;
                        }
                        if py < p.pads[0] || px < p.pads[1] {
                            continue;
                        }
                        let (iy, ix) = (py - p.pads[0], px - p.pads[1]);
                        if iy >= h || ix >= w {
                            continue;
                        }
                        let j = (q * h + iy) * w + ix;
                        let (v, e) = (x.values[j], x.errors[j]);
                        inside += 1;
                        best = best.max(v);
                        best_e = best_e.max(e);
                        sum += v;
                        esum += e;
                        mag += v.abs() + e;
                    }
                }
                if max {
                    values.push(best);
                    errors.push(best_e);
                } else {
                    let c = if p.count_include_pad { counted } else { inside }.max(1);
                    let cf = c as f64;
                    let rel = (1.0 + u.gamma(c)) * (1.0 + u.st).powi(2) - 1.0;
                    values.push(sum / cf);
                    errors.push(esum / cf + (rel + OWN) * mag / cf);
                }
            }
        }
    }
    Ok(act(
        vec![x.shape[0], x.shape[1], oh, ow],
        values,
        errors,
        max && x.exact_ints,
    ))
}
