//! The reference engine's ops beyond `Conv`: each node's operation with its
//! attributes resolved at load ([`Op`]), its output shape for given input
//! shapes ([`output_shape`]), and its evaluation in f32 ([`eval`]).
//!
//! Evaluation is plain f32 arithmetic in a fixed order: what a simple CPU
//! engine does. The plain oracle ([`crate::oracle`]) evaluates the
//! same definitions in f64 with its own loops, sharing none of this code.

use super::conv::{self, ConvAttrs, ConvGeometry};

/// Pooling attributes (`MaxPool`, `AveragePool`), two spatial dimensions.
#[derive(Clone, Debug, PartialEq)]
pub struct PoolAttrs {
    /// `kernel_shape` (kh, kw).
    pub kernel: [usize; 2],
    /// `strides` (default 1).
    pub strides: [usize; 2],
    /// `pads`: begin h, begin w, end h, end w.
    pub pads: [usize; 4],
    /// `dilations` (MaxPool; default 1).
    pub dilations: [usize; 2],
    /// `ceil_mode`: output sizes rounded up (a window starting in the end
    /// padding is dropped).
    pub ceil_mode: bool,
    /// `count_include_pad` (AveragePool): padding counts in the divisor.
    pub count_include_pad: bool,
}

/// The pattern of the ops that only move values: one list for
/// [`Op::is_move`], the evaluator's match and the oracle's.
macro_rules! move_ops {
    () => {
        Op::Transpose { .. }
            | Op::Unsqueeze { .. }
            | Op::Squeeze { .. }
            | Op::Concat { .. }
            | Op::Slice { .. }
            | Op::Gather { .. }
            | Op::Expand { .. }
    };
}
pub(crate) use move_ops;

/// A node's operation, attributes resolved. Inputs are listed per op.
#[derive(Clone, Debug, PartialEq)]
pub enum Op {
    /// `Conv(X, W, B?)`.
    Conv(ConvAttrs),
    /// `Gemm(A, B, C?)`: `alpha * A' B' + beta * C`, A' and B' transposed
    /// as asked, C broadcast to the result.
    Gemm {
        /// `alpha` (default 1).
        alpha: f64,
        /// `beta` (default 1).
        beta: f64,
        /// `transA`.
        trans_a: bool,
        /// `transB`.
        trans_b: bool,
    },
    /// `MatMul(A, B)`, NumPy semantics (batched, broadcast, 1-D promoted).
    MatMul,
    /// `Add(A, B)`, broadcast.
    Add,
    /// `Sub(A, B)`, broadcast.
    Sub,
    /// `Mul(A, B)`, broadcast.
    Mul,
    /// `Div(A, B)`, broadcast.
    Div,
    /// `BatchNormalization(X, scale, B, mean, var)`, inference form:
    /// `(x - mean) / sqrt(var + epsilon) * scale + B` per channel.
    BatchNorm {
        /// `epsilon` (default 1e-5).
        epsilon: f64,
    },
    /// `Relu(X)`.
    Relu,
    /// `Sigmoid(X)`.
    Sigmoid,
    /// `Tanh(X)`.
    Tanh,
    /// `Erf(X)`.
    Erf,
    /// `Sqrt(X)`.
    Sqrt,
    /// `Gelu(X)` (opset 20): `x * (1 + erf(x / sqrt 2)) / 2`, or the tanh
    /// approximation.
    Gelu {
        /// `approximate = "tanh"`.
        tanh: bool,
    },
    /// `Clip(X, min?, max?)`, bounds resolved from constant inputs or
    /// (opset 6) attributes.
    Clip {
        /// Lower bound, if any.
        min: Option<f64>,
        /// Upper bound, if any.
        max: Option<f64>,
    },
    /// `Softmax(X)` along `axis` (opset 13 and later); `legacy`: opset
    /// 1-12, the input coerced to 2-D at `axis`.
    Softmax {
        /// The axis (negative counts from the end).
        axis: i64,
        /// Opset 1-12 semantics.
        legacy: bool,
    },
    /// `MaxPool(X)`, 2-D.
    MaxPool(PoolAttrs),
    /// `AveragePool(X)`, 2-D.
    AveragePool(PoolAttrs),
    /// `GlobalAveragePool(X)`: the mean over every spatial position.
    GlobalAveragePool,
    /// `Flatten(X)` at `axis` (default 1).
    Flatten {
        /// The axis (negative counts from the end).
        axis: i64,
    },
    /// `Reshape(X, shape)`, the shape a constant: 0 copies the input's
    /// dimension (unless `allowzero`), -1 is inferred.
    Reshape {
        /// The target shape.
        shape: Vec<i64>,
        /// `allowzero`.
        allowzero: bool,
    },
    /// `Identity(X)`, and `Dropout(X)` at inference, and `Cast` to a
    /// float type.
    Identity,
    /// `Transpose(X)` by `perm` (empty: reversed).
    Transpose {
        /// The permutation.
        perm: Vec<usize>,
    },
    /// `Unsqueeze(X)` at `axes` (of the output).
    Unsqueeze {
        /// The new axes.
        axes: Vec<i64>,
    },
    /// `Squeeze(X)` at `axes` (empty: every dimension of size 1).
    Squeeze {
        /// The axes removed.
        axes: Vec<i64>,
    },
    /// `Concat(X...)` along `axis`.
    Concat {
        /// The axis.
        axis: i64,
    },
    /// `Slice(X)` with constant starts, ends, axes and steps.
    Slice {
        /// Starts, per axis in `axes`.
        starts: Vec<i64>,
        /// Ends, per axis in `axes`.
        ends: Vec<i64>,
        /// The axes (empty: the first `starts.len()`).
        axes: Vec<i64>,
        /// Steps (empty: 1).
        steps: Vec<i64>,
    },
    /// `Gather(X)` along `axis` at constant `indices` of shape
    /// `indices_shape`.
    Gather {
        /// The axis.
        axis: i64,
        /// The indices (negative count from the end).
        indices: Vec<i64>,
        /// Their shape.
        indices_shape: Vec<usize>,
    },
    /// `Expand(X)` to a constant shape (broadcast).
    Expand {
        /// The shape broadcast with the input's.
        shape: Vec<usize>,
    },
    /// `ReduceMean(X)` over `axes` (empty: every axis, unless
    /// `noop_with_empty_axes`).
    ReduceMean {
        /// The axes.
        axes: Vec<i64>,
        /// `keepdims`.
        keepdims: bool,
    },
    /// `LayerNormalization(X, Scale, B?)` over the dimensions from `axis`
    /// on: `(x - mean) / sqrt(var + epsilon) * scale + B`.
    LayerNorm {
        /// The first normalized axis.
        axis: i64,
        /// `epsilon`.
        epsilon: f64,
    },
    /// `Pow(X, p)` with a constant scalar exponent.
    Pow {
        /// The exponent.
        p: f64,
    },
    /// `HardSigmoid(X)`: `max(0, min(1, alpha x + beta))`.
    HardSigmoid {
        /// `alpha` (default 0.2).
        alpha: f64,
        /// `beta` (default 0.5).
        beta: f64,
    },
    /// `HardSwish(X)`: `x * max(0, min(1, x / 6 + 1 / 2))`.
    HardSwish,
}

impl Op {
    /// Whether the op only moves values: each output value is an input
    /// value, copied from where the op says.
    pub(crate) fn is_move(&self) -> bool {
        matches!(self, move_ops!())
    }

    /// How many inputs the op takes: (least, most).
    pub(crate) fn arity(&self) -> (usize, usize) {
        match self {
            Op::Conv(_) | Op::Gemm { .. } => (2, 3),
            Op::MatMul | Op::Add | Op::Sub | Op::Mul | Op::Div => (2, 2),
            Op::BatchNorm { .. } => (5, 5),
            Op::LayerNorm { .. } => (2, 3),
            Op::Concat { .. } => (1, usize::MAX),
            _ => (1, 1),
        }
    }
}

/// The shape two shapes broadcast to (NumPy rules), or why they do not.
pub fn broadcast(a: &[usize], b: &[usize]) -> Result<Vec<usize>, String> {
    let n = a.len().max(b.len());
    let mut out = vec![0; n];
    for i in 0..n {
        let x = if i + a.len() >= n {
            a[i + a.len() - n]
        } else {
            1
        };
        let y = if i + b.len() >= n {
            b[i + b.len() - n]
        } else {
            1
        };
        out[i] = match (x, y) {
            (x, y) if x == y => x,
            (1, y) => y,
            (x, 1) => x,
            _ => return Err(format!("shapes {a:?} and {b:?} do not broadcast")),
        };
    }
    Ok(out)
}

/// `axis` (negative counts from the end) for a rank, checked.
pub(crate) fn axis_of(axis: i64, rank: usize, inclusive_end: bool) -> Result<usize, String> {
    let r = rank as i64;
    let a = if axis < 0 { axis + r } else { axis };
    let hi = if inclusive_end { r } else { r - 1 };
    if a < 0 || a > hi {
        return Err(format!("axis {axis} is out of range for rank {rank}"));
    }
    Ok(a as usize)
}

/// The output size of a pooled dimension: `(in + pads - window) / stride`
/// plus one, rounded down or (ceil_mode) up, without a window that would
/// start in the end padding.
pub(crate) fn pool_len(
    input: usize,
    kernel: usize,
    stride: usize,
    dilation: usize,
    pad_begin: usize,
    pad_end: usize,
    ceil_mode: bool,
) -> Result<usize, String> {
    let window = (kernel - 1) * dilation + 1;
    let padded = input + pad_begin + pad_end;
    if padded < window {
        return Err(format!(
            "the padded input ({padded}) is smaller than the window ({window})"
        ));
    }
    let span = padded - window;
    let mut out = if ceil_mode {
        span.div_ceil(stride) + 1
    } else {
        span / stride + 1
    };
    if ceil_mode && (out - 1) * stride >= input + pad_begin {
        out -= 1;
    }
    Ok(out)
}

/// The output shape of `op` for its inputs' shapes.
///
/// # Errors
/// A message when the shapes do not fit the op.
pub fn output_shape(op: &Op, shapes: &[&[usize]]) -> Result<Vec<usize>, String> {
    let x = shapes[0];
    match op {
        Op::Conv(attrs) => Ok(ConvGeometry::resolve(attrs, x, shapes[1])?.output_shape),
        Op::Gemm {
            trans_a, trans_b, ..
        } => {
            let (a, b) = (x, shapes[1]);
            if a.len() != 2 || b.len() != 2 {
                return Err(format!("A {a:?} and B {b:?} must both be 2-D"));
            }
            let (m, k) = if *trans_a { (a[1], a[0]) } else { (a[0], a[1]) };
            let (k2, n) = if *trans_b { (b[1], b[0]) } else { (b[0], b[1]) };
            if k != k2 {
                return Err(format!(
                    "inner dimensions differ: A {a:?} and B {b:?} (transA {trans_a}, transB {trans_b})"
                ));
            }
            if let Some(c) = shapes.get(2) {
                let s = broadcast(c, &[m, n])?;
                if s != [m, n] {
                    return Err(format!("C {c:?} does not broadcast to [{m}, {n}]"));
                }
            }
            Ok(vec![m, n])
        }
        Op::MatMul => matmul_shape(x, shapes[1]).map(|(s, ..)| s),
        Op::Add | Op::Sub | Op::Mul | Op::Div => broadcast(x, shapes[1]),
        Op::BatchNorm { .. } => {
            if x.len() < 2 {
                return Err(format!("X {x:?} has no channel dimension"));
            }
            for (i, s) in shapes[1..].iter().enumerate() {
                if *s != [x[1]] {
                    return Err(format!(
                        "input {} has shape {s:?}; expected [{}] (X's channels)",
                        i + 1,
                        x[1]
                    ));
                }
            }
            Ok(x.to_vec())
        }
        Op::Softmax { axis, .. } => {
            axis_of(*axis, x.len(), false)?;
            Ok(x.to_vec())
        }
        Op::MaxPool(p) | Op::AveragePool(p) => {
            if x.len() != 4 {
                return Err(format!(
                    "input {x:?}: the reference engine pools 2-D inputs (N, C, H, W)"
                ));
            }
            let h = pool_len(
                x[2],
                p.kernel[0],
                p.strides[0],
                p.dilations[0],
                p.pads[0],
                p.pads[2],
                p.ceil_mode,
            )?;
            let w = pool_len(
                x[3],
                p.kernel[1],
                p.strides[1],
                p.dilations[1],
                p.pads[1],
                p.pads[3],
                p.ceil_mode,
            )?;
            Ok(vec![x[0], x[1], h, w])
        }
        Op::GlobalAveragePool => {
            if x.len() < 3 {
                return Err(format!("input {x:?} has no spatial dimension"));
            }
            let mut s = x[..2].to_vec();
            s.extend(std::iter::repeat_n(1, x.len() - 2));
            Ok(s)
        }
        Op::Flatten { axis } => {
            let a = axis_of(*axis, x.len(), true)?;
            Ok(vec![x[..a].iter().product(), x[a..].iter().product()])
        }
        Op::Reshape { shape, allowzero } => reshape_shape(x, shape, *allowzero),
        Op::ReduceMean { axes, keepdims } => {
            let reduced = reduce_axes(axes, x.len())?;
            Ok(x.iter()
                .enumerate()
                .filter_map(|(i, &d)| match (reduced.contains(&i), keepdims) {
                    (true, true) => Some(1),
                    (true, false) => None,
                    (false, _) => Some(d),
                })
                .collect())
        }
        Op::LayerNorm { axis, .. } => {
            let a = axis_of(*axis, x.len(), false)?;
            for (k, s) in shapes[1..].iter().enumerate() {
                let fits = broadcast(&x[a..], s).is_ok_and(|b| b == x[a..]);
                if !fits {
                    return Err(format!(
                        "input {} has shape {s:?}; expected to broadcast to {:?}",
                        k + 1,
                        &x[a..]
                    ));
                }
            }
            Ok(x.to_vec())
        }
        op if op.is_move() => moves(op, shapes).map(|(s, _)| s),
        _ => Ok(x.to_vec()),
    }
}

/// `Reshape`'s output shape.
fn reshape_shape(x: &[usize], spec: &[i64], allowzero: bool) -> Result<Vec<usize>, String> {
    let total: usize = x.iter().product();
    let mut out = Vec::with_capacity(spec.len());
    let mut infer = None;
    for (i, &d) in spec.iter().enumerate() {
        match d {
            -1 if infer.is_none() => {
                infer = Some(i);
                out.push(1);
            }
            0 if !allowzero => out
                .push(*x.get(i).ok_or_else(|| {
                    format!("shape {spec:?}: 0 at {i} copies no input dimension")
                })?),
            d if d >= 0 => out.push(d as usize),
            _ => return Err(format!("shape {spec:?} is not a valid target")),
        }
    }
    let known: usize = out.iter().product();
    if let Some(i) = infer {
        if known == 0 || total % known != 0 {
            return Err(format!("{x:?} cannot be reshaped to {spec:?}"));
        }
        out[i] = total / known;
    } else if known != total {
        return Err(format!("{x:?} cannot be reshaped to {spec:?}"));
    }
    Ok(out)
}

/// MatMul's output shape, its batch shape, and (M, K, N).
type MatMulShape = (Vec<usize>, Vec<usize>, [usize; 3]);

/// MatMul's output shape, the batch shape, and (M, K, N); 1-D operands
/// promoted as NumPy does (and the added dimension removed).
fn matmul_shape(a: &[usize], b: &[usize]) -> Result<MatMulShape, String> {
    if a.is_empty() || b.is_empty() {
        return Err("MatMul of a scalar".into());
    }
    let a2: Vec<usize> = if a.len() == 1 {
        vec![1, a[0]]
    } else {
        a.to_vec()
    };
    let b2: Vec<usize> = if b.len() == 1 {
        vec![b[0], 1]
    } else {
        b.to_vec()
    };
    let (m, k) = (a2[a2.len() - 2], a2[a2.len() - 1]);
    let (k2, n) = (b2[b2.len() - 2], b2[b2.len() - 1]);
    if k != k2 {
        return Err(format!("inner dimensions differ: A {a:?} and B {b:?}"));
    }
    let batch = broadcast(&a2[..a2.len() - 2], &b2[..b2.len() - 2])?;
    let mut out = batch.clone();
    if a.len() > 1 {
        out.push(m);
    }
    if b.len() > 1 {
        out.push(n);
    }
    Ok((out, batch, [m, k, n]))
}

/// The offsets into a tensor of shape `from` (broadcast to `to`) of every
/// element of `to`, in order.
fn broadcast_offsets(from: &[usize], to: &[usize]) -> Vec<usize> {
    let n = to.len();
    let pad = n - from.len();
    // The source's stride per output dimension; 0 where broadcast.
    let mut strides = vec![0usize; n];
    let mut s = 1;
    for i in (0..from.len()).rev() {
        if from[i] != 1 {
            strides[i + pad] = s;
        }
        s *= from[i];
    }
    let total: usize = to.iter().product();
    let mut out = Vec::with_capacity(total);
    let mut idx = vec![0usize; n];
    let mut off = 0usize;
    for _ in 0..total {
        out.push(off);
        for d in (0..n).rev() {
            idx[d] += 1;
            off += strides[d];
            if idx[d] < to[d] {
                break;
            }
            off -= strides[d] * to[d];
            idx[d] = 0;
        }
    }
    out
}

/// The axes a reduction runs over (empty: all), checked and sorted.
pub(crate) fn reduce_axes(axes: &[i64], rank: usize) -> Result<Vec<usize>, String> {
    if axes.is_empty() {
        return Ok((0..rank).collect());
    }
    let mut out = axes
        .iter()
        .map(|&a| axis_of(a, rank, false))
        .collect::<Result<Vec<_>, _>>()?;
    out.sort_unstable();
    out.dedup();
    Ok(out)
}

/// Row-major strides of a shape.
fn strides_of(shape: &[usize]) -> Vec<usize> {
    let mut s = vec![1usize; shape.len()];
    for i in (0..shape.len().saturating_sub(1)).rev() {
        s[i] = s[i + 1] * shape[i + 1];
    }
    s
}

/// What `moves` gives: the output shape, and per output element (input,
/// index).
pub(crate) type Moves = (Vec<usize>, Vec<(usize, usize)>);

/// For an op that only moves values (Transpose, Unsqueeze, Squeeze,
/// Concat, Slice, Gather, Expand): the output shape and, for every output
/// element in order, the input it comes from and its index there. The
/// engine copies along it and the oracle carries values and bounds along
/// it: a move has no arithmetic to get wrong but the index (which ONNX
/// Runtime's outputs check, `tests/graphs.rs`).
///
/// # Errors
/// A message when the shapes do not fit the op.
pub(crate) fn moves(op: &Op, shapes: &[&[usize]]) -> Result<Moves, String> {
    let x = shapes[0];
    let xs = strides_of(x);
    // Output shape, and for an output coordinate the source (input, index).
    let walk = |out: &[usize], src: &dyn Fn(&[usize]) -> (usize, usize)| {
        let total: usize = out.iter().product();
        let mut map = Vec::with_capacity(total);
        let mut idx = vec![0usize; out.len()];
        for _ in 0..total {
            map.push(src(&idx));
            for d in (0..out.len()).rev() {
                idx[d] += 1;
                if idx[d] < out[d] {
                    break;
                }
                idx[d] = 0;
            }
        }
        map
    };
    let dot = |c: &[usize], st: &[usize]| c.iter().zip(st).map(|(a, b)| a * b).sum::<usize>();
    match op {
        Op::Transpose { perm } => {
            let perm: Vec<usize> = if perm.is_empty() {
                (0..x.len()).rev().collect()
            } else {
                perm.clone()
            };
            let mut sorted = perm.clone();
            sorted.sort_unstable();
            if sorted != (0..x.len()).collect::<Vec<_>>() {
                return Err(format!("perm {perm:?} for rank {}", x.len()));
            }
            let out: Vec<usize> = perm.iter().map(|&p| x[p]).collect();
            let st: Vec<usize> = perm.iter().map(|&p| xs[p]).collect();
            Ok((out.clone(), walk(&out, &|c| (0, dot(c, &st)))))
        }
        Op::Unsqueeze { axes } | Op::Squeeze { axes } => {
            let out: Vec<usize> = if let Op::Unsqueeze { .. } = op {
                let rank = x.len() + axes.len();
                let at = reduce_axes(axes, rank)?;
                if at.len() != axes.len() {
                    return Err(format!("axes {axes:?} repeat"));
                }
                let mut it = x.iter();
                (0..rank)
                    .map(|i| {
                        if at.contains(&i) {
                            1
                        } else {
                            *it.next().expect("rank counted")
                        }
                    })
                    .collect()
            } else {
                let at: Vec<usize> = if axes.is_empty() {
                    (0..x.len()).filter(|&i| x[i] == 1).collect()
                } else {
                    reduce_axes(axes, x.len())?
                };
                if let Some(&i) = at.iter().find(|&&i| x[i] != 1) {
                    return Err(format!("axis {i} has size {}, not 1", x[i]));
                }
                (0..x.len())
                    .filter(|i| !at.contains(i))
                    .map(|i| x[i])
                    .collect()
            };
            let n: usize = out.iter().product();
            Ok((out, (0..n).map(|i| (0, i)).collect()))
        }
        Op::Concat { axis } => {
            let a = axis_of(*axis, x.len(), false)?;
            let mut out = x.to_vec();
            out[a] = 0;
            let mut offsets = Vec::with_capacity(shapes.len());
            for s in shapes {
                if s.len() != x.len()
                    || s.iter()
                        .zip(x)
                        .enumerate()
                        .any(|(i, (p, q))| i != a && p != q)
                {
                    return Err(format!("{s:?} does not concatenate with {x:?} on axis {a}"));
                }
                offsets.push(out[a]);
                out[a] += s[a];
            }
            let sts: Vec<Vec<usize>> = shapes.iter().map(|s| strides_of(s)).collect();
            Ok((
                out.clone(),
                walk(&out, &|c| {
                    let k = offsets.partition_point(|&o| o <= c[a]) - 1;
                    let mut cc = c.to_vec();
                    cc[a] -= offsets[k];
                    (k, dot(&cc, &sts[k]))
                }),
            ))
        }
        Op::Slice {
            starts,
            ends,
            axes,
            steps,
        } => {
            let mut begin = vec![0i64; x.len()];
            let mut step = vec![1i64; x.len()];
            let mut out: Vec<usize> = x.to_vec();
            for (k, (&st, &en)) in starts.iter().zip(ends).enumerate() {
                let a = match axes.get(k) {
                    Some(&a) => axis_of(a, x.len(), false)?,
                    None => k,
                };
                let d = x[a] as i64;
                let sp = steps.get(k).copied().unwrap_or(1);
                if sp == 0 {
                    return Err("a step of 0".into());
                }
                let clamp = |v: i64, lo: i64, hi: i64| v.max(lo).min(hi);
                let norm = |v: i64| if v < 0 { v + d } else { v };
                let (b, e) = if sp > 0 {
                    (clamp(norm(st), 0, d), clamp(norm(en), 0, d))
                } else {
                    (clamp(norm(st), -1, d - 1), clamp(norm(en), -1, d - 1))
                };
                let len = if sp > 0 {
                    ((e - b).max(0) + sp - 1) / sp
                } else {
                    ((b - e).max(0) + (-sp) - 1) / (-sp)
                };
                begin[a] = b;
                step[a] = sp;
                out[a] = len as usize;
            }
            Ok((
                out.clone(),
                walk(&out, &|c| {
                    let i = c
                        .iter()
                        .enumerate()
                        .map(|(d, &ci)| (begin[d] + ci as i64 * step[d]) as usize * xs[d])
                        .sum();
                    (0, i)
                }),
            ))
        }
        Op::Gather {
            axis,
            indices,
            indices_shape,
        } => {
            let a = axis_of(*axis, x.len(), false)?;
            let d = x[a] as i64;
            let idx: Vec<usize> = indices
                .iter()
                .map(|&i| {
                    let j = if i < 0 { i + d } else { i };
                    if (0..d).contains(&j) {
                        Ok(j as usize)
                    } else {
                        Err(format!("index {i} out of range for {d}"))
                    }
                })
                .collect::<Result<_, _>>()?;
            let mut out: Vec<usize> = x[..a].to_vec();
            out.extend_from_slice(indices_shape);
            out.extend_from_slice(&x[a + 1..]);
            let q = indices_shape.len();
            let ist = strides_of(indices_shape);
            Ok((
                out.clone(),
                walk(&out, &|c| {
                    let j = idx[dot(&c[a..a + q], &ist)];
                    let mut src = dot(&c[..a], &xs[..a]) + j * xs[a];
                    src += dot(&c[a + q..], &xs[a + 1..]);
                    (0, src)
                }),
            ))
        }
        Op::Expand { shape } => {
            let out = broadcast(x, shape)?;
            Ok((
                out.clone(),
                broadcast_offsets(x, &out)
                    .into_iter()
                    .map(|i| (0, i))
                    .collect(),
            ))
        }
        _ => Err("not a move".into()),
    }
}

fn erf(x: f32) -> f32 {
    libm::erff(x)
}

/// One input: its values and shape.
pub(crate) type Input<'a> = (&'a [f32], &'a [usize]);

/// Evaluates `op` on `inputs` into `out` (resized), whose shape is
/// `shape`; `geometry` is the conv geometry for [`Op::Conv`].
pub fn eval(
    op: &Op,
    inputs: &[Input<'_>],
    shape: &[usize],
    geometry: Option<&ConvGeometry>,
    out: &mut Vec<f32>,
) {
    let len: usize = shape.iter().product();
    let (x, xs) = inputs[0];
    out.clear();
    match op {
        Op::Conv(_) => {
            let g = geometry.expect("a conv has its geometry");
            out.resize(g.output_len(), 0.0);
            conv::conv(g, x, inputs[1].0, inputs.get(2).map(|i| i.0), out);
        }
        Op::Relu => out.extend(x.iter().map(|&v| if v < 0.0 { 0.0 } else { v })),
        Op::Sigmoid => out.extend(x.iter().map(|&v| 1.0 / (1.0 + (-v).exp()))),
        Op::Tanh => out.extend(x.iter().map(|&v| v.tanh())),
        Op::Erf => out.extend(x.iter().map(|&v| erf(v))),
        Op::Sqrt => out.extend(x.iter().map(|&v| v.sqrt())),
        Op::Gelu { tanh } => {
            if *tanh {
                let c = (2.0f32 / std::f32::consts::PI).sqrt();
                out.extend(
                    x.iter()
                        .map(|&v| 0.5 * v * (1.0 + (c * (v + 0.044715 * v * v * v)).tanh())),
                );
            } else {
                out.extend(
                    x.iter()
                        .map(|&v| 0.5 * v * (1.0 + erf(v * std::f32::consts::FRAC_1_SQRT_2))),
                );
            }
        }
        Op::Clip { min, max } => {
            let lo = min.map_or(f32::NEG_INFINITY, |m| m as f32);
            let hi = max.map_or(f32::INFINITY, |m| m as f32);
            out.extend(x.iter().map(|&v| v.max(lo).min(hi)));
        }
        Op::Identity | Op::Flatten { .. } | Op::Reshape { .. } => out.extend_from_slice(x),
        Op::Add | Op::Sub | Op::Mul | Op::Div => {
            let (y, ys) = inputs[1];
            let f = |a: f32, b: f32| match op {
                Op::Add => a + b,
                Op::Sub => a - b,
                Op::Mul => a * b,
                _ => a / b,
            };
            if xs == ys {
                out.extend(x.iter().zip(y).map(|(&a, &b)| f(a, b)));
            } else {
                let ox = broadcast_offsets(xs, shape);
                let oy = broadcast_offsets(ys, shape);
                out.extend(ox.iter().zip(&oy).map(|(&i, &j)| f(x[i], y[j])));
            }
        }
        Op::Gemm {
            alpha,
            beta,
            trans_a,
            trans_b,
        } => {
            let (b, bs) = inputs[1];
            let (m, n) = (shape[0], shape[1]);
            let k = if *trans_a { xs[0] } else { xs[1] };
            let a_at = |i: usize, p: usize| if *trans_a { x[p * m + i] } else { x[i * k + p] };
            let b_at = |p: usize, j: usize| {
                if *trans_b {
                    b[j * k + p]
                } else {
                    b[p * bs[1] + j]
                }
            };
            let c = inputs
                .get(2)
                .map(|(c, cs)| (*c, broadcast_offsets(cs, shape)));
            let (alpha, beta) = (*alpha as f32, *beta as f32);
            out.resize(len, 0.0);
            for i in 0..m {
                for j in 0..n {
                    let mut s = 0.0f32;
                    for p in 0..k {
                        s += a_at(i, p) * b_at(p, j);
                    }
                    let mut y = alpha * s;
                    if let Some((c, off)) = &c {
                        y += beta * c[off[i * n + j]];
                    }
                    out[i * n + j] = y;
                }
            }
        }
        Op::MatMul => {
            let (b, bs) = inputs[1];
            let (_, batch, [m, k, n]) = matmul_shape(xs, bs).expect("shapes checked at plan");
            let a_batch: &[usize] = if xs.len() > 2 {
                &xs[..xs.len() - 2]
            } else {
                &[]
            };
            let b_batch: &[usize] = if bs.len() > 2 {
                &bs[..bs.len() - 2]
            } else {
                &[]
            };
            let oa = broadcast_offsets(a_batch, &batch);
            let ob = broadcast_offsets(b_batch, &batch);
            out.resize(len, 0.0);
            for (t, (&ia, &ib)) in oa.iter().zip(&ob).enumerate() {
                let a = &x[ia * m * k..(ia + 1) * m * k];
                let bm = &b[ib * k * n..(ib + 1) * k * n];
                let o = &mut out[t * m * n..(t + 1) * m * n];
                for i in 0..m {
                    for j in 0..n {
                        let mut s = 0.0f32;
                        for p in 0..k {
                            s += a[i * k + p] * bm[p * n + j];
                        }
                        o[i * n + j] = s;
                    }
                }
            }
        }
        Op::BatchNorm { epsilon } => {
            let (scale, bias, mean, var) = (inputs[1].0, inputs[2].0, inputs[3].0, inputs[4].0);
            let c = xs[1];
            let plane: usize = xs[2..].iter().product();
            let eps = *epsilon as f32;
            out.resize(len, 0.0);
            for (i, (o, &v)) in out.iter_mut().zip(x).enumerate() {
                let ch = (i / plane) % c;
                *o = (v - mean[ch]) / (var[ch] + eps).sqrt() * scale[ch] + bias[ch];
            }
        }
        Op::Softmax { axis, legacy } => {
            let a = axis_of(*axis, xs.len(), false).expect("checked at plan");
            // Rows of `row` values, `inner` apart (legacy: contiguous rows
            // of everything from the axis on).
            let (outer, row, inner) = if *legacy {
                (xs[..a].iter().product(), xs[a..].iter().product(), 1)
            } else {
                (
                    xs[..a].iter().product::<usize>(),
                    xs[a],
                    xs[a + 1..].iter().product::<usize>(),
                )
            };
            out.resize(len, 0.0);
            for o in 0..outer {
                for i in 0..inner {
                    let at = |r: usize| o * row * inner + r * inner + i;
                    let m = (0..row).map(|r| x[at(r)]).fold(f32::NEG_INFINITY, f32::max);
                    let mut sum = 0.0f32;
                    for r in 0..row {
                        let e = (x[at(r)] - m).exp();
                        out[at(r)] = e;
                        sum += e;
                    }
                    for r in 0..row {
                        out[at(r)] /= sum;
                    }
                }
            }
        }
        Op::MaxPool(p) | Op::AveragePool(p) => {
            let max = matches!(op, Op::MaxPool(_));
            let (planes, h, w) = (xs[0] * xs[1], xs[2], xs[3]);
            let (oh, ow) = (shape[2], shape[3]);
            out.resize(len, 0.0);
            for pl in 0..planes {
                let src = &x[pl * h * w..(pl + 1) * h * w];
                for oy in 0..oh {
                    for ox in 0..ow {
                        let mut acc = if max { f32::NEG_INFINITY } else { 0.0 };
                        let mut count = 0usize;
                        let mut padded = 0usize;
                        for ky in 0..p.kernel[0] {
                            let iy =
                                (oy * p.strides[0] + ky * p.dilations[0]) as i64 - p.pads[0] as i64;
                            for kx in 0..p.kernel[1] {
                                let ix = (ox * p.strides[1] + kx * p.dilations[1]) as i64
                                    - p.pads[1] as i64;
                                let inside =
                                    iy >= 0 && ix >= 0 && (iy as usize) < h && (ix as usize) < w;
                                // Positions in the declared padding count
                                // for count_include_pad; past it they do not.
                                if iy < (h + p.pads[2]) as i64 && ix < (w + p.pads[3]) as i64 {
                                    padded += 1;
                                }
                                if !inside {
                                    continue;
                                }
                                let v = src[iy as usize * w + ix as usize];
                                if max {
                                    acc = acc.max(v);
                                } else {
                                    acc += v;
                                }
                                count += 1;
                            }
                        }
                        out[pl * oh * ow + oy * ow + ox] = if max {
                            acc
                        } else if p.count_include_pad {
                            acc / padded as f32
                        } else {
                            acc / count.max(1) as f32
                        };
                    }
                }
            }
        }
        Op::GlobalAveragePool => {
            let plane: usize = xs[2..].iter().product();
            out.extend(
                x.chunks(plane.max(1))
                    .map(|c| c.iter().sum::<f32>() / plane as f32),
            );
        }
        move_ops!() => {
            let shapes: Vec<&[usize]> = inputs.iter().map(|i| i.1).collect();
            let (_, map) = moves(op, &shapes).expect("checked at plan");
            out.extend(map.iter().map(|&(k, i)| inputs[k].0[i]));
        }
        Op::ReduceMean { axes, .. } => {
            let reduced = reduce_axes(axes, xs.len()).expect("checked at plan");
            let st = strides_of(xs);
            // The kept dimensions, in order, index the output.
            let kept: Vec<usize> = (0..xs.len()).filter(|i| !reduced.contains(i)).collect();
            let kept_shape: Vec<usize> = kept.iter().map(|&i| xs[i]).collect();
            let kst = strides_of(&kept_shape);
            let count: usize = reduced.iter().map(|&i| xs[i]).product();
            out.resize(len.max(1), 0.0);
            for (i, &v) in x.iter().enumerate() {
                let o: usize = kept
                    .iter()
                    .zip(&kst)
                    .map(|(&d, &k)| (i / st[d]) % xs[d] * k)
                    .sum();
                out[o] += v;
            }
            for o in out.iter_mut() {
                *o /= count.max(1) as f32;
            }
        }
        Op::LayerNorm { axis, epsilon } => {
            let a = axis_of(*axis, xs.len(), false).expect("checked at plan");
            let row: usize = xs[a..].iter().product();
            let scale = broadcast_offsets(inputs[1].1, &xs[a..]);
            let bias = inputs
                .get(2)
                .map(|(b, bs)| (*b, broadcast_offsets(bs, &xs[a..])));
            out.resize(len, 0.0);
            for (r, o) in x.chunks(row).zip(out.chunks_mut(row)) {
                let mean = r.iter().sum::<f32>() / row as f32;
                let var = r.iter().map(|&v| (v - mean) * (v - mean)).sum::<f32>() / row as f32;
                let inv = 1.0 / (var + *epsilon as f32).sqrt();
                for (j, (y, &v)) in o.iter_mut().zip(r).enumerate() {
                    *y = (v - mean) * inv * inputs[1].0[scale[j]];
                    if let Some((b, off)) = &bias {
                        *y += b[off[j]];
                    }
                }
            }
        }
        Op::Pow { p } => {
            let p = *p as f32;
            out.extend(x.iter().map(|&v| v.powf(p)));
        }
        Op::HardSigmoid { alpha, beta } => {
            let (a, b) = (*alpha as f32, *beta as f32);
            out.extend(x.iter().map(|&v| (a * v + b).clamp(0.0, 1.0)));
        }
        Op::HardSwish => out.extend(x.iter().map(|&v| v * (v / 6.0 + 0.5).clamp(0.0, 1.0))),
    }
}
