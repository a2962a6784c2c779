//! The plain oracle: the model evaluated in f64 with loops written straight
//! from the ONNX operator definitions, sharing no arithmetic with the
//! reference engine, and, for every output element, a rigorous bound on the
//! rounding error an engine computing at its declared [`Precision`] may
//! make. Checks compare every engine (the reference engine included)
//! against it.
//!
//! Where no oracle can evaluate a model (an op outside its set), the
//! engine is judged against fresh builds of itself instead
//! ([`differential`](crate::check::differential)): bit for bit where it declares
//! `refit_bit_identical`, else within
//! [`self_tolerance`](crate::check::differential::self_tolerance), 256 units of
//! roundoff of `|fresh| + rms`: a bound on a different summation order at
//! the output's own scale rather than a rigorous one.
//!
//! ## The bound
//! For one conv output `y = b + sum_i w_i x_i` over `n` terms, where the
//! inputs `x_i` come from the previous layer with error at most `e_i`, an
//! engine that rounds operands to a format with unit roundoff `u_op`, sums
//! in any order in a format with unit roundoff `u_acc` and stores the result
//! with unit roundoff `u_st` computes `y'` with
//!
//! ```text
//! |y' - y| <= sum_i |w_i| e_i  +  rel * (|b| + sum_i |w_i| (|x_i| + e_i))
//! rel = (1 + u_op)^2 (1 + gamma_n(u_acc)) (1 + u_st) - 1,  gamma_n(u) = n u / (1 - n u)
//! ```
//!
//! (Higham, *Accuracy and Stability of Numerical Algorithms*, 3.1; the
//! first term carries the previous layers' error forward). `Relu` is
//! 1-Lipschitz, so it passes the bound through. The bound holds for every
//! summation order. Where every operand is an integer the operand format
//! holds exactly and every partial sum stays within the accumulator's exact
//! integers (`sum |w_i x_i| <= 2^24` in f32), any order gives the exact
//! result, and the bound is 0: integer-valued checks stay bit-exact. A
//! nonzero bound is widened by half the smallest subnormal of the declared
//! storage format ([`underflow`]): an output below the format's normal
//! range is stored on its subnormal grid or flushed to 0.
//!
//! Every other op (Gemm, MatMul, elementwise arithmetic, BatchNormalization,
//! the activation functions, Softmax, pooling, the moves) carries its
//! inputs' errors and adds its own roundings the same way, op by op: the
//! reasoning and the implementation allowance for functions are in
//! [`ops`].
//!
//! Evaluations are cached per weight version and input, so a check that
//! returns to the same weights does not pay for the oracle again.

use std::cell::{Cell, RefCell};
use std::collections::hash_map::DefaultHasher;
use std::hash::{Hash, Hasher};
use std::rc::Rc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use crate::engine::{Numerics, Precision};
use crate::model::conv::{AutoPad, ConvAttrs};
use crate::model::{Model, Op, Src};

pub mod ops;
use crate::tensor::Tensor;

/// Fixed output tolerances, overriding the derived bound
/// (`check --abs-tolerance / --rel-tolerance`).
#[derive(Clone, Copy, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Tolerance {
    /// Absolute tolerance.
    pub abs: f64,
    /// Relative tolerance (of the oracle's magnitude).
    pub rel: f64,
}

/// How an engine's outputs are judged against the oracle: the bound for the
/// engine's precision times its error factor, or a fixed tolerance.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Judge {
    /// The precision the bound is derived for.
    pub precision: Precision,
    /// The factor the engine declares on top of the bound.
    pub error_factor: f64,
    /// A fixed tolerance replacing the bound, when set.
    pub tolerance: Option<Tolerance>,
    /// The implementation allowance of the engine's functions.
    pub numerics: Numerics,
}

impl Judge {
    /// f32, factor 1, no override, the default allowances: what the
    /// reference engine declares.
    pub const F32: Judge = Judge {
        precision: Precision::F32,
        error_factor: 1.0,
        tolerance: None,
        numerics: Numerics::DEFAULT,
    };

    /// The judge for an engine's contract, with an optional override.
    pub(crate) fn for_contract(c: &crate::Contract, tolerance: Option<Tolerance>) -> Judge {
        Judge {
            precision: c.precision,
            error_factor: c.error_factor,
            tolerance,
            numerics: c.numerics,
        }
    }

    /// Whether integer-valued outputs must be exact (factor 1, no override).
    fn exact_allowed(&self) -> bool {
        self.error_factor == 1.0 && self.tolerance.is_none()
    }

    /// Judges one element: `Ok(observed error / allowed error)` (0 where the
    /// allowed error is 0 and the values agree), or the mismatch.
    pub fn element(&self, expected: f64, bound: f64, observed: f32) -> Result<f64, Mismatch> {
        let e32 = expected as f32;
        let obs = f64::from(observed);
        let diff = (expected - obs).abs();
        let allowed = match self.tolerance {
            Some(t) => t.abs + t.rel * expected.abs(),
            // A value below the storage format's normal range is stored on
            // its subnormal grid (or flushed): half its smallest step more.
            None if bound > 0.0 => bound * self.error_factor + underflow(self.precision),
            None => 0.0,
        };
        let mismatch = || Mismatch {
            expected,
            allowed,
            observed,
            error: diff,
            ulps: ulps(e32, observed),
        };
        if e32.is_nan() || observed.is_nan() {
            return if e32.is_nan() && observed.is_nan() {
                Ok(0.0)
            } else {
                Err(mismatch())
            };
        }
        if e32 == observed && (allowed > 0.0 || obs == expected) {
            return Ok(if allowed > 0.0 { diff / allowed } else { 0.0 });
        }
        if expected.is_infinite() || observed.is_infinite() {
            return Err(mismatch());
        }
        if diff <= allowed {
            return Ok(if allowed > 0.0 { diff / allowed } else { 0.0 });
        }
        Err(mismatch())
    }
}

/// Distance in f32 units in the last place between two finite values.
fn ulps(a: f32, b: f32) -> u64 {
    // Map the bits to a line where adjacent floats differ by one.
    let ord = |x: f32| {
        let b = x.to_bits();
        if b & 0x8000_0000 != 0 {
            -i64::from(b & 0x7fff_ffff)
        } else {
            i64::from(b)
        }
    };
    (ord(a) - ord(b)).unsigned_abs()
}

/// One element outside what the judge allows.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Mismatch {
    /// The exact value.
    pub expected: f64,
    /// The error allowed there (0: exact).
    pub allowed: f64,
    /// What the engine gave.
    pub observed: f32,
    /// |observed - expected|.
    pub error: f64,
    /// The same in f32 units in the last place.
    pub ulps: u64,
}

impl Mismatch {
    /// Observed error / allowed error: infinite where the value had to be
    /// exact (or is NaN on one side only).
    pub fn ratio(&self) -> f64 {
        if self.allowed > 0.0 && self.error.is_finite() {
            self.error / self.allowed
        } else {
            f64::INFINITY
        }
    }

    /// `E ± B` (or `E exactly`).
    pub fn expected_text(&self) -> String {
        if self.allowed > 0.0 {
            format!("{} ± {:.3e}", self.expected, self.allowed)
        } else {
            format!("{} exactly", self.expected)
        }
    }

    /// `O (error X = R x the bound, U ulps)`.
    pub fn observed_text(&self) -> String {
        if self.observed.is_nan() || self.expected.is_nan() {
            return format!("{}", self.observed);
        }
        let ratio = if self.allowed > 0.0 {
            format!(" = {:.3}x the bound", self.error / self.allowed)
        } else {
            ", where the bound is 0".to_string()
        };
        format!(
            "{} (error {:.3e}{ratio}, {} ulp(s))",
            self.observed, self.error, self.ulps
        )
    }
}

/// The worst error / allowed error over a scenario's comparisons with the
/// oracle, from every thread that compares: each [`Oracle`] reports into
/// one (its own, or the scenario's through [`Oracle::reporting_to`]). A
/// failed comparison counts too: its ratio, infinite where the expectation
/// was exact.
#[derive(Debug, Default)]
pub struct WorstRatio(AtomicU64);

impl WorstRatio {
    /// Records one ratio (>= 0; NaN counts as infinite).
    pub fn record(&self, ratio: f64) {
        let r = if ratio.is_nan() {
            f64::INFINITY
        } else {
            ratio.max(0.0)
        };
        // Non-negative floats order as their bits; 0 stands for "none".
        self.0.fetch_max(r.to_bits() + 1, Ordering::Relaxed);
    }

    /// The worst ratio recorded so far, and resets it.
    pub fn take(&self) -> Option<f64> {
        match self.0.swap(0, Ordering::Relaxed) {
            0 => None,
            b => Some(f64::from_bits(b - 1)),
        }
    }
}

/// Half the smallest subnormal of `p`'s storage format: what storing a
/// value that underflows may change it by, whatever its bound (f16:
/// 2^-25, about 3.0e-8; f32 and tf32: 2^-150; bf16: 2^-134).
pub fn underflow(p: Precision) -> f64 {
    match p {
        Precision::F16 => 2f64.powi(-25),
        Precision::Bf16 => 2f64.powi(-134),
        _ => 2f64.powi(-150),
    }
}

/// One expected output: the exact values and, per element, the error bound
/// for the precision (0: must be exact).
#[derive(Clone, Debug, PartialEq)]
pub struct Expected {
    /// The shape.
    pub shape: Vec<usize>,
    /// The exact values (f64).
    pub values: Vec<f64>,
    /// The error bound per element, at error factor 1.
    pub bounds: Vec<f64>,
}

/// Compares observed values with the expected ones: the worst error /
/// allowed error over every element, or the first mismatch and its index.
/// A length difference is a mismatch at the shorter length.
pub fn first_mismatch(
    expected: &Expected,
    observed: &[f32],
    judge: &Judge,
) -> Result<f64, (usize, Mismatch)> {
    let mut worst = 0f64;
    for (i, (&o, (&e, &b))) in observed
        .iter()
        .zip(expected.values.iter().zip(&expected.bounds))
        .enumerate()
    {
        match judge.element(e, b, o) {
            Ok(r) => worst = worst.max(r),
            Err(m) => return Err((i, m)),
        }
    }
    if expected.values.len() != observed.len() {
        let i = expected.values.len().min(observed.len());
        let e = expected.values.get(i).copied().unwrap_or(f64::NAN);
        let o = observed.get(i).copied().unwrap_or(f32::NAN);
        return Err((
            i,
            Mismatch {
                expected: e,
                allowed: 0.0,
                observed: o,
                error: f64::NAN,
                ulps: 0,
            },
        ));
    }
    Ok(worst)
}

/// An activation: values, their error bounds, and whether every value is
/// an exact integer the operand format holds.
struct Act {
    shape: Vec<usize>,
    values: Vec<f64>,
    errors: Vec<f64>,
    exact_ints: bool,
}

/// Unit roundoff of a format with `bits` explicit mantissa bits.
fn unit(bits: u32) -> f64 {
    (-(f64::from(bits) + 1.0)).exp2()
}

/// The largest integer magnitude from which every integer is exact in a
/// format with `bits` explicit mantissa bits.
fn int_limit(bits: u32) -> f64 {
    (f64::from(bits) + 1.0).exp2()
}

fn is_small_int(v: f64, limit: f64) -> bool {
    v.fract() == 0.0 && v.abs() <= limit
}

/// The conv geometry: per spatial dimension the padding before, the output
/// size.
struct Geometry {
    pad_begin: Vec<i64>,
    out: Vec<usize>,
}

fn geometry(input: &[usize], kernel: &[usize], attrs: &ConvAttrs) -> Result<Geometry, String> {
    let nd = kernel.len();
    let get = |v: &[usize], i: usize, default: usize| if v.is_empty() { default } else { v[i] };
    let mut pad_begin = vec![0i64; nd];
    let mut out = vec![0usize; nd];
    for i in 0..nd {
        let inp = input[i] as i64;
        let k = kernel[i] as i64;
        let s = get(&attrs.strides, i, 1) as i64;
        let d = get(&attrs.dilations, i, 1) as i64;
        let ext = (k - 1) * d + 1;
        let (pb, pe) = match attrs.auto_pad {
            AutoPad::NotSet => (
                get(&attrs.pads, i, 0) as i64,
                get(&attrs.pads, nd + i, 0) as i64,
            ),
            AutoPad::Valid => (0, 0),
            AutoPad::SameUpper | AutoPad::SameLower => {
                let o = (inp + s - 1) / s;
                let total = ((o - 1) * s + ext - inp).max(0);
                if attrs.auto_pad == AutoPad::SameUpper {
                    (total / 2, total - total / 2)
                } else {
                    (total - total / 2, total / 2)
                }
            }
        };
        if inp + pb + pe < ext {
            return Err(format!(
                "dimension {i}: padded input smaller than the kernel"
            ));
        }
        pad_begin[i] = pb;
        out[i] = ((inp + pb + pe - ext) / s + 1) as usize;
    }
    Ok(Geometry { pad_begin, out })
}

/// For one kernel tap along one dimension: the range of output positions
/// whose input position lies inside the input, and the input position of
/// the first.
fn tap_range(o_len: usize, in_len: usize, s: usize, off: i64) -> (usize, usize, i64) {
    // input = o * s + off, 0 <= input < in_len
    let s = s as i64;
    let lo = if off >= 0 { 0 } else { (-off + s - 1) / s };
    let hi = if in_len as i64 - off <= 0 {
        0
    } else {
        ((in_len as i64 - 1 - off) / s + 1).min(o_len as i64)
    };
    let lo = lo.min(hi);
    (lo as usize, hi as usize, lo * s + off)
}

/// ONNX `Conv` on an activation at `precision`: values and bounds. With
/// `folded`, the bound of an engine that folds the BatchNormalization after
/// it into its weights: one more rounding per term, and never exact.
#[allow(clippy::too_many_arguments)]
fn conv(
    x: &Act,
    w_shape: &[usize],
    w: &[f32],
    b: Option<&[f32]>,
    attrs: &ConvAttrs,
    precision: Precision,
    exact_allowed: bool,
    folded: bool,
) -> Result<Act, String> {
    let nd = w_shape
        .len()
        .checked_sub(2)
        .filter(|&n| n >= 1)
        .ok_or("weight rank below 3")?;
    let x_shape = &x.shape;
    if x_shape.len() != nd + 2 {
        return Err(format!(
            "input rank {} for a weight of rank {}",
            x_shape.len(),
            nd + 2
        ));
    }
    let get = |v: &[usize], i: usize| if v.is_empty() { 1 } else { v[i] };
    let (batch, c_in, c_out) = (x_shape[0], x_shape[1], w_shape[0]);
    let group = attrs.group;
    if group == 0 || c_in != w_shape[1] * group || c_out % group != 0 {
        return Err(format!(
            "channels: input {c_in}, weight {w_shape:?}, group {group}"
        ));
    }
    let input = &x_shape[2..];
    let kernel = &w_shape[2..];
    let Geometry { pad_begin, out } = geometry(input, kernel, attrs)?;
    let cin_g = c_in / group;
    let cout_g = c_out / group;
    let in_strides: Vec<usize> = (0..nd).map(|i| input[i + 1..].iter().product()).collect();
    let out_strides: Vec<usize> = (0..nd).map(|i| out[i + 1..].iter().product()).collect();
    let in_plane: usize = input.iter().product();
    let k_plane: usize = kernel.iter().product();
    let out_plane: usize = out.iter().product();
    let total = batch * c_out * out_plane;
    let mut y = vec![0f64; total];
    let mut mag = vec![0f64; total];
    let mut prop = vec![0f64; total];
    // |x| + e: the largest magnitude the engine's input can have.
    let x_hi: Vec<f64> = x
        .values
        .iter()
        .zip(&x.errors)
        .map(|(v, e)| v.abs() + e)
        .collect();
    let x_exact = x.errors.iter().all(|&e| e == 0.0);
    let mut tap = vec![0usize; nd];
    let mut ranges = vec![(0usize, 0usize, 0i64); nd];
    let mut idx = vec![0usize; nd];
    for n in 0..batch {
        for m in 0..c_out {
            let g = m / cout_g;
            let ybase = (n * c_out + m) * out_plane;
            if let Some(b) = b {
                let bv = f64::from(b[m]);
                y[ybase..ybase + out_plane].fill(bv);
                mag[ybase..ybase + out_plane].fill(bv.abs());
            }
            for ci in 0..cin_g {
                let xbase = (n * c_in + g * cin_g + ci) * in_plane;
                for kp in 0..k_plane {
                    let wv = f64::from(w[(m * cin_g + ci) * k_plane + kp]);
                    if wv == 0.0 {
                        continue;
                    }
                    let wa = wv.abs();
                    let mut r = kp;
                    for i in (0..nd).rev() {
                        tap[i] = r % kernel[i];
                        r /= kernel[i];
                    }
                    let mut empty = false;
                    for i in 0..nd {
                        let off = (tap[i] * get(&attrs.dilations, i)) as i64 - pad_begin[i];
                        ranges[i] = tap_range(out[i], input[i], get(&attrs.strides, i), off);
                        empty |= ranges[i].0 >= ranges[i].1;
                    }
                    if empty {
                        continue;
                    }
                    // Odometer over every dimension but the last; the last
                    // is the contiguous inner loop.
                    for i in 0..nd {
                        idx[i] = ranges[i].0;
                    }
                    let last = nd - 1;
                    let s_last = get(&attrs.strides, last);
                    let (lo, hi, in0) = ranges[last];
                    loop {
                        let mut xo = xbase;
                        let mut yo = ybase;
                        for i in 0..last {
                            let (lo_i, _, in0_i) = ranges[i];
                            let pos = in0_i as usize + (idx[i] - lo_i) * get(&attrs.strides, i);
                            xo += pos * in_strides[i];
                            yo += idx[i] * out_strides[i];
                        }
                        let xs = xo + in0 as usize;
                        let count = hi - lo;
                        let yrow = &mut y[yo + lo..yo + hi];
                        let mrow = &mut mag[yo + lo..yo + hi];
                        if s_last == 1 {
                            // Contiguous: one fused pass the compiler
                            // vectorizes.
                            let xv = &x.values[xs..xs + count];
                            let xh = &x_hi[xs..xs + count];
                            for ((yv, mv), (a, h)) in
                                yrow.iter_mut().zip(mrow.iter_mut()).zip(xv.iter().zip(xh))
                            {
                                *yv += wv * a;
                                *mv += wa * h;
                            }
                        } else {
                            let xv = &x.values[xs..];
                            let xh = &x_hi[xs..];
                            for (j, (yv, mv)) in yrow.iter_mut().zip(mrow.iter_mut()).enumerate() {
                                *yv += wv * xv[j * s_last];
                                *mv += wa * xh[j * s_last];
                            }
                        }
                        if !x_exact {
                            let prow = &mut prop[yo + lo..yo + lo + count];
                            let xe = &x.errors[xs..];
                            for (j, pv) in prow.iter_mut().enumerate() {
                                *pv += wa * xe[j * s_last];
                            }
                        }
                        // Next position of the outer dimensions.
                        let mut done = true;
                        let mut d = last;
                        while d > 0 {
                            d -= 1;
                            idx[d] += 1;
                            if idx[d] < ranges[d].1 {
                                done = false;
                                break;
                            }
                            idx[d] = ranges[d].0;
                        }
                        if done {
                            break;
                        }
                    }
                }
            }
        }
    }
    let terms = cin_g * k_plane + usize::from(b.is_some());
    let u_op = if precision.operand_bits() >= 23 {
        0.0
    } else {
        unit(precision.operand_bits())
    };
    let u_acc = unit(precision.accumulator_bits());
    let u_st = unit(precision.storage_bits());
    let nu = terms as f64 * u_acc;
    let gamma = if nu < 1.0 {
        nu / (1.0 - nu)
    } else {
        f64::INFINITY
    };
    let fold = if folded { 1.0 + u_acc } else { 1.0 };
    let rel = (1.0 + u_op).powi(2) * (1.0 + gamma) * (1.0 + u_st) * fold - 1.0;
    // The oracle's own f64 rounding, on top.
    let own = (terms as f64 + 2.0) * f64::EPSILON;
    let op_limit = int_limit(precision.operand_bits());
    let ints = exact_allowed
        && !folded
        && x.exact_ints
        && w.iter().all(|&v| is_small_int(f64::from(v), op_limit))
        && b.is_none_or(|b| b.iter().all(|&v| is_small_int(f64::from(v), op_limit)));
    let acc_limit = int_limit(precision.accumulator_bits());
    let st_limit = int_limit(precision.storage_bits());
    let errors: Vec<f64> = (0..total)
        .map(|i| {
            if ints && mag[i] <= acc_limit && y[i].abs() <= st_limit {
                0.0
            } else {
                prop[i] + (rel + own) * mag[i]
            }
        })
        .collect();
    let exact_ints = errors.iter().all(|&e| e == 0.0)
        && y.iter().all(|&v| is_small_int(v, op_limit.min(st_limit)));
    let mut shape = vec![batch, c_out];
    shape.extend(out);
    Ok(Act {
        shape,
        values: y,
        errors,
        exact_ints,
    })
}

/// ONNX `Conv` in f64 for any number of spatial dimensions: returns the
/// output shape and values.
///
/// # Errors
/// A message when the shapes and attributes do not fit together.
pub fn conv_f64(
    x_shape: &[usize],
    x: &[f64],
    w_shape: &[usize],
    w: &[f32],
    b: Option<&[f32]>,
    attrs: &ConvAttrs,
) -> Result<(Vec<usize>, Vec<f64>), String> {
    let act = Act {
        shape: x_shape.to_vec(),
        values: x.to_vec(),
        errors: vec![0.0; x.len()],
        exact_ints: false,
    };
    if act.values.len() != x_shape.iter().product::<usize>() {
        return Err(format!(
            "{} input values for shape {x_shape:?}",
            act.values.len()
        ));
    }
    let r = conv(&act, w_shape, w, b, attrs, Precision::F32, false, false)?;
    Ok((r.shape, r.values))
}

fn hash_values(values: &[f32]) -> u64 {
    let mut h = DefaultHasher::new();
    values.len().hash(&mut h);
    h.write(bytemuck::cast_slice(values));
    h.finish()
}

/// Evaluations kept per oracle (weight versions x inputs, and the
/// explanations of a failure).
const CACHE: usize = 32;

/// Weights replaced for one evaluation: (initializer index, values).
type Overrides<'a> = Vec<(usize, &'a [f32])>;

/// At most this many explanations are tried for one failure.
const EXPLANATIONS: usize = 64;

/// A model and the weights it should be serving, evaluated plainly, with
/// error bounds for one precision. Evaluations are cached per weight
/// version and input.
///
/// It also keeps each weight's history (its version, counted from 0 at the
/// build, and its values one version back), so that a failed comparison can
/// be explained ([`Oracle::explain`]): an observed output that equals the
/// expected one with a weight at an older version says which weight a
/// refit did not reach.
#[derive(Clone, Debug)]
pub struct Oracle {
    model: Model,
    weights: Vec<Vec<f32>>,
    hashes: Vec<u64>,
    versions: Vec<u32>,
    previous: Vec<Option<Vec<f32>>>,
    judge: Judge,
    cache: RefCell<Vec<(u64, Rc<Vec<Expected>>)>>,
    evaluations: Cell<usize>,
    worst: Arc<WorstRatio>,
    explains: bool,
}

impl Oracle {
    /// The oracle for `model`, serving the model's own initializers, with
    /// bounds for f32.
    pub fn new(model: Model) -> Self {
        Oracle::with_judge(model, Judge::F32)
    }

    /// The oracle for `model`, with bounds for `judge`'s precision (exact
    /// integers only where the judge allows them).
    pub fn with_judge(model: Model, judge: Judge) -> Self {
        let weights: Vec<Vec<f32>> = model
            .initializers()
            .iter()
            .map(|i| i.values.clone())
            .collect();
        let hashes = weights.iter().map(|w| hash_values(w)).collect();
        let n = weights.len();
        Oracle {
            model,
            weights,
            hashes,
            versions: vec![0; n],
            previous: vec![None; n],
            judge,
            cache: RefCell::new(Vec::new()),
            evaluations: Cell::new(0),
            worst: Arc::default(),
            explains: true,
        }
    }

    /// Whether [`Oracle::explain`] tries explanations (default: yes). A
    /// property test turns it off while it searches and shrinks, and on for
    /// the minimal failing case.
    pub(crate) fn explaining(mut self, on: bool) -> Self {
        self.explains = on;
        self
    }

    /// Reports the ratios of its comparisons ([`Oracle::compare`]) into
    /// `worst`, a scenario's.
    pub fn reporting_to(mut self, worst: Arc<WorstRatio>) -> Self {
        self.worst = worst;
        self
    }

    /// The model.
    pub fn model(&self) -> &Model {
        &self.model
    }

    /// How outputs are judged.
    pub fn judge(&self) -> &Judge {
        &self.judge
    }

    /// The worst error / allowed error of its comparisons.
    pub fn worst(&self) -> &WorstRatio {
        &self.worst
    }

    /// The weights it serves, by initializer index.
    pub fn weights(&self) -> &[Vec<f32>] {
        &self.weights
    }

    /// How many times the model was evaluated (cache misses).
    pub fn evaluations(&self) -> usize {
        self.evaluations.get()
    }

    /// Replaces one weight's values (a new version when they differ).
    pub fn set(&mut self, index: usize, values: Vec<f32>) {
        let hash = hash_values(&values);
        if hash == self.hashes[index] && values == self.weights[index] {
            return;
        }
        self.hashes[index] = hash;
        self.previous[index] = Some(std::mem::replace(&mut self.weights[index], values));
        self.versions[index] += 1;
    }

    fn key(hashes: &[u64], inputs: &[Tensor]) -> u64 {
        let mut h = DefaultHasher::new();
        hashes.hash(&mut h);
        for t in inputs {
            t.shape.hash(&mut h);
            t.dtype().hash(&mut h);
            h.write(t.data.as_bytes());
        }
        h.finish()
    }

    /// Evaluates the model: each output's shape, exact values and bounds.
    ///
    /// # Errors
    /// A message when the inputs do not fit the model.
    pub fn infer(&self, inputs: &[Tensor]) -> Result<Rc<Vec<Expected>>, String> {
        self.infer_with(&[], inputs)
    }

    /// [`Oracle::infer`] with some weights replaced (initializer index,
    /// values), cached as any other evaluation.
    fn infer_with(
        &self,
        overrides: &[(usize, &[f32])],
        inputs: &[Tensor],
    ) -> Result<Rc<Vec<Expected>>, String> {
        let mut hashes = self.hashes.clone();
        let mut weights: Vec<&[f32]> = self.weights.iter().map(Vec::as_slice).collect();
        for &(i, v) in overrides {
            hashes[i] = hash_values(v);
            weights[i] = v;
        }
        let key = Oracle::key(&hashes, inputs);
        if let Some(hit) = self.cache.borrow().iter().find(|(k, _)| *k == key) {
            return Ok(Rc::clone(&hit.1));
        }
        let out = Rc::new(self.evaluate_weights(&weights, inputs)?);
        self.evaluations.set(self.evaluations.get() + 1);
        let mut cache = self.cache.borrow_mut();
        if cache.len() == CACHE {
            cache.remove(0);
        }
        cache.push((key, Rc::clone(&out)));
        Ok(out)
    }

    /// Judges observed outputs against `expected` (what [`Oracle::infer`]
    /// gave for the inputs): `Ok` with every element within its bound,
    /// else the first output that is not, as `(output, what was expected,
    /// what was observed)`. Either way the ratio goes into
    /// [`Oracle::worst`] (infinite for a failed exact expectation).
    pub fn compare(
        &self,
        expected: &[Expected],
        observed: &[Tensor],
    ) -> Result<(), (String, String)> {
        let r = judge_outputs(expected, observed, &self.judge);
        match &r {
            Ok(ratio) => self.worst.record(*ratio),
            Err((ratio, _, _)) => self.worst.record(*ratio),
        }
        r.map(|_| ()).map_err(|(_, e, o)| (e, o))
    }

    /// [`Oracle::explain`] as the end of a piece of evidence: `"; <why>"`,
    /// or nothing.
    pub(crate) fn explanation(&self, inputs: &[Tensor], observed: &[Tensor]) -> String {
        self.explain(inputs, observed)
            .map_or_else(String::new, |why| format!("; {why}"))
    }

    /// Explains outputs that disagree with the oracle by the mistakes a
    /// refit makes: they are tried against the observed outputs in turn,
    /// each evaluated once (cached), and the first that matches within the
    /// bound is named: every weight at its previous version (the last
    /// refits were not applied), one weight at its previous version (its
    /// last refit was not applied), one weight at its build version (a copy
    /// from the build is still served). `None` when no weight has changed
    /// since the build (nothing to try); otherwise one sentence, saying
    /// what matched or that nothing did.
    pub fn explain(&self, inputs: &[Tensor], observed: &[Tensor]) -> Option<String> {
        if !self.explains {
            return None;
        }
        let name = |i: usize| format!("'{}'", self.model.initializers()[i].info.name);
        let changed: Vec<usize> = (0..self.weights.len())
            .filter(|&i| self.versions[i] > 0)
            .collect();
        if changed.is_empty() {
            return None;
        }
        let mut tries: Vec<(String, Overrides<'_>)> = Vec::new();
        if changed.len() > 1 {
            let names: Vec<String> = changed.iter().map(|&i| name(i)).collect();
            tries.push((
                format!(
                    "every weight at its previous version ({}): the refit was not applied",
                    names.join(", ")
                ),
                changed
                    .iter()
                    .filter_map(|&i| Some((i, self.previous[i].as_deref()?)))
                    .collect(),
            ));
        }
        for &i in &changed {
            if let Some(p) = self.previous[i].as_deref() {
                let v = self.versions[i];
                tries.push((
                    format!(
                        "{} still at version {}: that weight's refit to version {v} was not applied",
                        name(i),
                        v - 1
                    ),
                    vec![(i, p)],
                ));
            }
        }
        for &i in &changed {
            if self.versions[i] > 1 {
                tries.push((
                    format!(
                        "{} at its build version (0): a copy of that weight from the build is still served",
                        name(i)
                    ),
                    vec![(i, &self.model.initializers()[i].values[..])],
                ));
            }
        }
        tries.truncate(EXPLANATIONS);
        let tried = tries.len();
        for (what, overrides) in tries {
            let Ok(expected) = self.infer_with(&overrides, inputs) else {
                continue;
            };
            if judge_outputs(&expected, observed, &self.judge).is_ok() {
                return Some(format!("observed = the expected output with {what}"));
            }
        }
        Some(format!(
            "no stale weight explains it ({tried} tried: every weight, and each one, at its previous version or as built)"
        ))
    }

    /// Evaluates the model without the cache (and without counting it in
    /// [`Oracle::evaluations`]): what one cache miss costs.
    ///
    /// # Errors
    /// A message when the inputs do not fit the model.
    pub(crate) fn evaluate(&self, inputs: &[Tensor]) -> Result<Vec<Expected>, String> {
        let weights: Vec<&[f32]> = self.weights.iter().map(Vec::as_slice).collect();
        self.evaluate_weights(&weights, inputs)
    }

    fn evaluate_weights(
        &self,
        weights: &[&[f32]],
        inputs: &[Tensor],
    ) -> Result<Vec<Expected>, String> {
        let precision = self.judge.precision;
        let exact_allowed = self.judge.exact_allowed();
        let op_limit = int_limit(precision.operand_bits());
        let mut values: Vec<Option<Act>> = (0..self.model.value_count()).map(|_| None).collect();
        for (i, t) in inputs.iter().enumerate() {
            let v: Vec<f64> = t.to_f32_vec().into_iter().map(f64::from).collect();
            let exact_ints = v.iter().all(|&x| is_small_int(x, op_limit));
            // Inputs the operand format cannot hold are rounded by the
            // engine: the bound's operand term covers that.
            values[i] = Some(Act {
                shape: t.shape.clone(),
                errors: vec![0.0; v.len()],
                values: v,
                exact_ints,
            });
        }
        let inits = self.model.initializers();
        let consts = self.model.constants();
        let missing = |v: usize| format!("value {v} is computed by no node before its use");
        let units = ops::Units::of(precision, &self.judge.numerics);
        // A weight or constant as an activation: exact, no error.
        let held = |values: Vec<f64>, shape: &[usize]| Act {
            exact_ints: values.iter().all(|&x| is_small_int(x, op_limit)),
            shape: shape.to_vec(),
            errors: vec![0.0; values.len()],
            values,
        };
        // A conv whose output feeds a BatchNormalization may be folded with
        // it (its weights scaled by the BatchNorm's factor): its result is
        // then not exact even for integers, and rounds once more per term.
        let mut feeds_bn = vec![false; self.model.value_count()];
        for n in self.model.nodes() {
            if let (Op::BatchNorm { .. }, Some(Src::Value(v))) = (&n.op, n.inputs.first()) {
                feeds_bn[*v] = true;
            }
        }
        for node in self.model.nodes() {
            let name = &node.name;
            let r = match &node.op {
                Op::Conv(attrs) => {
                    let Src::Value(input) = node.inputs[0] else {
                        return Err(format!("node '{name}': X is not a value"));
                    };
                    let weight_of = |k: usize| match node.inputs.get(k) {
                        Some(Src::Weight(w)) => Ok(Some(*w)),
                        None => Ok(None),
                        Some(_) => Err(format!("node '{name}': input {k} is not a weight")),
                    };
                    let w = weight_of(1)?.ok_or_else(|| format!("node '{name}': no weight"))?;
                    let bias = weight_of(2)?;
                    let x = values[input].as_ref().ok_or_else(|| missing(input))?;
                    conv(
                        x,
                        &inits[w].shape,
                        weights[w],
                        bias.map(|b| weights[b]),
                        attrs,
                        precision,
                        exact_allowed,
                        feeds_bn[node.output],
                    )
                    .map_err(|e| format!("node '{name}': {e}"))?
                }
                op => {
                    let mut owned: Vec<Act> = Vec::new();
                    let mut order: Vec<Result<usize, usize>> = Vec::new();
                    for &src in &node.inputs {
                        match src {
                            Src::Value(v) => {
                                values[v].as_ref().ok_or_else(|| missing(v))?;
                                order.push(Ok(v));
                            }
                            Src::Weight(w) => {
                                owned.push(held(
                                    weights[w].iter().map(|&x| f64::from(x)).collect(),
                                    &inits[w].shape,
                                ));
                                order.push(Err(owned.len() - 1));
                            }
                            Src::Const(c) => {
                                owned.push(held(consts[c].values.clone(), &consts[c].shape));
                                order.push(Err(owned.len() - 1));
                            }
                        }
                    }
                    let xs: Vec<&Act> = order
                        .iter()
                        .map(|o| match o {
                            Ok(v) => values[*v].as_ref().expect("checked above"),
                            Err(k) => &owned[*k],
                        })
                        .collect();
                    ops::eval(op, &xs, units)
                        .map_err(|e| format!("node '{name}' ({}): {e}", node.op_type))?
                }
            };
            values[node.output] = Some(r);
        }
        self.model
            .output_values()
            .iter()
            .map(|&v| {
                let a = values[v].as_ref().ok_or_else(|| missing(v))?;
                Ok(Expected {
                    shape: a.shape.clone(),
                    values: a.values.clone(),
                    bounds: a.errors.clone(),
                })
            })
            .collect()
    }
}

/// Judges every output: the worst ratio, or the first output outside its
/// bound as `(ratio, expected, observed)`.
fn judge_outputs(
    expected: &[Expected],
    observed: &[Tensor],
    judge: &Judge,
) -> Result<f64, (f64, String, String)> {
    if expected.len() != observed.len() {
        return Err((
            f64::INFINITY,
            format!("{} outputs", expected.len()),
            format!("{}", observed.len()),
        ));
    }
    let mut worst = 0f64;
    for (o, (e, t)) in expected.iter().zip(observed).enumerate() {
        if e.shape != t.shape {
            return Err((
                f64::INFINITY,
                format!("output {o} of shape {:?}", e.shape),
                format!("{:?}", t.shape),
            ));
        }
        match first_mismatch(e, &t.to_f32_vec(), judge) {
            Ok(r) => worst = worst.max(r),
            Err((i, m)) => {
                return Err((
                    m.ratio(),
                    format!("output {o}[{i}] = {}", m.expected_text()),
                    m.observed_text(),
                ))
            }
        }
    }
    Ok(worst)
}
