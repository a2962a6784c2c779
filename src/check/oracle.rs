//! The plain oracle: the model evaluated in f64 with naive loops written
//! straight from the ONNX operator definitions, sharing no arithmetic with
//! the reference engine. Checks compare every engine (the reference engine
//! included) against it.

use std::cell::RefCell;

use crate::model::conv::{AutoPad, ConvAttrs};
use crate::model::{Layer, Model};
use crate::tensor::Tensor;

/// How close an engine's output must be to the oracle's.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Tolerance {
    /// Absolute tolerance.
    pub abs: f64,
    /// Relative tolerance (of the oracle's magnitude).
    pub rel: f64,
}

impl Tolerance {
    /// Bit-exact agreement after rounding the oracle to f32: what the checks
    /// use with their integer-valued weights and inputs.
    pub const EXACT: Tolerance = Tolerance { abs: 0.0, rel: 0.0 };

    /// Whether `observed` is within tolerance of `expected`. NaN matches
    /// NaN, and infinities match only themselves.
    pub fn accepts(&self, expected: f64, observed: f32) -> bool {
        let e32 = expected as f32;
        if e32.is_nan() || observed.is_nan() {
            return e32.is_nan() && observed.is_nan();
        }
        if e32 == observed {
            return true;
        }
        if e32.is_infinite() || observed.is_infinite() {
            return false;
        }
        let diff = (expected - observed as f64).abs();
        diff <= self.abs + self.rel * expected.abs()
    }
}

/// The first position where `observed` differs from `expected`:
/// `(index, expected, observed)`; a length difference is reported at the
/// shorter length.
pub fn first_mismatch(
    expected: &[f64],
    observed: &[f32],
    tol: Tolerance,
) -> Option<(usize, f64, f32)> {
    if let Some(i) = expected
        .iter()
        .zip(observed)
        .position(|(&e, &o)| !tol.accepts(e, o))
    {
        return Some((i, expected[i], observed[i]));
    }
    if expected.len() != observed.len() {
        let i = expected.len().min(observed.len());
        return Some((
            i,
            expected.get(i).copied().unwrap_or(f64::NAN),
            observed.get(i).copied().unwrap_or(f32::NAN),
        ));
    }
    None
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
    let nd = w_shape
        .len()
        .checked_sub(2)
        .filter(|&n| n >= 1)
        .ok_or("weight rank below 3")?;
    if x_shape.len() != nd + 2 {
        return Err(format!(
            "input rank {} for a weight of rank {}",
            x_shape.len(),
            nd + 2
        ));
    }
    let get = |v: &[usize], i: usize, default: usize| if v.is_empty() { default } else { v[i] };
    let (batch, c_in, c_out) = (x_shape[0], x_shape[1], w_shape[0]);
    let group = attrs.group;
    if group == 0 || c_in != w_shape[1] * group || c_out % group != 0 {
        return Err(format!(
            "channels: input {c_in}, weight {w_shape:?}, group {group}"
        ));
    }
    let input = &x_shape[2..];
    let kernel = &w_shape[2..];
    let mut pad_begin = vec![0i64; nd];
    let mut out_sp = vec![0usize; nd];
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
                let out = (inp + s - 1) / s;
                let total = ((out - 1) * s + ext - inp).max(0);
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
        out_sp[i] = ((inp + pb + pe - ext) / s + 1) as usize;
    }
    let cin_g = c_in / group;
    let cout_g = c_out / group;
    let in_strides: Vec<usize> = (0..nd).map(|i| input[i + 1..].iter().product()).collect();
    let k_strides: Vec<usize> = (0..nd).map(|i| kernel[i + 1..].iter().product()).collect();
    let in_plane: usize = input.iter().product();
    let k_plane: usize = kernel.iter().product();
    let out_plane: usize = out_sp.iter().product();
    let mut y = vec![0f64; batch * c_out * out_plane];
    let mut o = vec![0usize; nd];
    for n in 0..batch {
        for m in 0..c_out {
            let g = m / cout_g;
            for op in 0..out_plane {
                let mut r = op;
                for i in (0..nd).rev() {
                    o[i] = r % out_sp[i];
                    r /= out_sp[i];
                }
                let mut acc = b.map_or(0.0, |b| b[m] as f64);
                for ci in 0..cin_g {
                    let ch = g * cin_g + ci;
                    'taps: for kp in 0..k_plane {
                        let mut off = 0usize;
                        for i in 0..nd {
                            let k = (kp / k_strides[i]) % kernel[i];
                            let pos = (o[i] * get(&attrs.strides, i, 1)) as i64
                                + (k * get(&attrs.dilations, i, 1)) as i64
                                - pad_begin[i];
                            if pos < 0 || pos >= input[i] as i64 {
                                continue 'taps;
                            }
                            off += pos as usize * in_strides[i];
                        }
                        acc += x[(n * c_in + ch) * in_plane + off]
                            * w[(m * cin_g + ci) * k_plane + kp] as f64;
                    }
                }
                y[(n * c_out + m) * out_plane + op] = acc;
            }
        }
    }
    let mut shape = vec![batch, c_out];
    shape.extend(out_sp);
    Ok((shape, y))
}

/// The outputs of one evaluation.
type Outputs = Vec<(Vec<usize>, Vec<f64>)>;

/// A model and the weights it should be serving, evaluated plainly. The
/// last evaluation is remembered until the weights or inputs change.
#[derive(Clone, Debug)]
pub struct Oracle {
    model: Model,
    weights: Vec<Vec<f32>>,
    last: RefCell<Option<(Vec<Tensor>, Outputs)>>,
}

impl Oracle {
    /// The oracle for `model`, serving the model's own initializers.
    pub fn new(model: Model) -> Self {
        let weights = model
            .initializers()
            .iter()
            .map(|i| i.values.clone())
            .collect();
        Oracle {
            model,
            weights,
            last: RefCell::new(None),
        }
    }

    /// The model.
    pub fn model(&self) -> &Model {
        &self.model
    }

    /// The weights it serves, by initializer index.
    pub fn weights(&self) -> &[Vec<f32>] {
        &self.weights
    }

    /// Replaces one weight's values.
    pub fn set(&mut self, index: usize, values: Vec<f32>) {
        if self.weights[index]
            .iter()
            .map(|v| v.to_bits())
            .ne(values.iter().map(|v| v.to_bits()))
        {
            self.last.replace(None);
        }
        self.weights[index] = values;
    }

    /// Evaluates the model: the outputs' shapes and values.
    ///
    /// # Errors
    /// A message when the inputs do not fit the model.
    pub fn infer(&self, inputs: &[Tensor]) -> Result<Outputs, String> {
        if let Some((seen, out)) = self.last.borrow().as_ref() {
            if seen == inputs {
                return Ok(out.clone());
            }
        }
        let out = self.evaluate(inputs)?;
        self.last.replace(Some((inputs.to_vec(), out.clone())));
        Ok(out)
    }

    fn evaluate(&self, inputs: &[Tensor]) -> Result<Outputs, String> {
        let mut values: Vec<(Vec<usize>, Vec<f64>)> =
            vec![(Vec::new(), Vec::new()); self.model.value_count()];
        for (i, t) in inputs.iter().enumerate() {
            values[i] = (
                t.shape.clone(),
                t.to_f32_vec().into_iter().map(f64::from).collect(),
            );
        }
        let inits = self.model.initializers();
        for layer in self.model.layers() {
            match layer {
                Layer::Conv {
                    name,
                    attrs,
                    weight,
                    bias,
                    input,
                    output,
                } => {
                    let (xs, xv) = &values[input];
                    let r = conv_f64(
                        xs,
                        xv,
                        &inits[weight].shape,
                        &self.weights[weight],
                        bias.map(|b| &self.weights[b][..]),
                        attrs,
                    )
                    .map_err(|e| format!("node '{name}': {e}"))?;
                    values[output] = r;
                }
                Layer::Relu { input, output } => {
                    let (s, v) = &values[input];
                    values[output] = (
                        s.clone(),
                        v.iter().map(|&x| if x < 0.0 { 0.0 } else { x }).collect(),
                    );
                }
            }
        }
        Ok(self
            .model
            .output_values()
            .iter()
            .map(|&v| values[v].clone())
            .collect())
    }
}
