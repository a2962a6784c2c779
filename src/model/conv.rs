//! ONNX `Conv` in f32: attribute resolution and the kernel.
//!
//! Up to three spatial dimensions are handled by one kernel: a 1-D or 2-D
//! convolution is run as a 3-D one whose leading spatial dimensions are 1.

/// `auto_pad` as ONNX defines it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum AutoPad {
    /// Explicit `pads` (the default).
    #[default]
    NotSet,
    /// No padding.
    Valid,
    /// Output size `ceil(in / stride)`, extra padding at the end.
    SameUpper,
    /// Output size `ceil(in / stride)`, extra padding at the beginning.
    SameLower,
}

impl AutoPad {
    /// Parses the attribute's string value.
    pub fn parse(s: &str) -> Option<Self> {
        Some(match s {
            "NOTSET" | "" => AutoPad::NotSet,
            "VALID" => AutoPad::Valid,
            "SAME_UPPER" => AutoPad::SameUpper,
            "SAME_LOWER" => AutoPad::SameLower,
            _ => return None,
        })
    }

    /// The attribute's string value.
    pub fn as_str(self) -> &'static str {
        match self {
            AutoPad::NotSet => "NOTSET",
            AutoPad::Valid => "VALID",
            AutoPad::SameUpper => "SAME_UPPER",
            AutoPad::SameLower => "SAME_LOWER",
        }
    }
}

/// A `Conv` node's attributes as written in the model. Empty vectors mean
/// "not given" (the ONNX defaults then apply).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ConvAttrs {
    /// `group` (default 1).
    pub group: usize,
    /// `strides`, one per spatial dimension.
    pub strides: Vec<usize>,
    /// `dilations`, one per spatial dimension.
    pub dilations: Vec<usize>,
    /// `pads`: all beginnings, then all ends.
    pub pads: Vec<usize>,
    /// `kernel_shape`, one per spatial dimension.
    pub kernel_shape: Vec<usize>,
    /// `auto_pad`.
    pub auto_pad: AutoPad,
}

impl Default for ConvAttrs {
    fn default() -> Self {
        ConvAttrs {
            group: 1,
            strides: Vec::new(),
            dilations: Vec::new(),
            pads: Vec::new(),
            kernel_shape: Vec::new(),
            auto_pad: AutoPad::NotSet,
        }
    }
}

/// The most values one conv's output may hold (2^34), so index arithmetic
/// never overflows and no forged shape allocates without bound.
pub(crate) const MAX_VALUES: u64 = 1 << 34;

/// A convolution fully resolved for one input shape, padded to three
/// spatial dimensions.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ConvGeometry {
    /// Batch size.
    pub batch: usize,
    /// Input channels.
    pub c_in: usize,
    /// Output channels.
    pub c_out: usize,
    /// Groups.
    pub group: usize,
    /// Input spatial size (D, H, W).
    pub input: [usize; 3],
    /// Kernel spatial size.
    pub kernel: [usize; 3],
    /// Strides.
    pub stride: [usize; 3],
    /// Dilations.
    pub dilation: [usize; 3],
    /// Padding at the beginning of each spatial dimension.
    pub pad_begin: [usize; 3],
    /// Output spatial size.
    pub output: [usize; 3],
    /// The output shape as ONNX sees it (N, M, spatial...).
    pub output_shape: Vec<usize>,
}

impl ConvGeometry {
    /// Resolves the attributes against the input shape `x` and weight shape
    /// `w` (both NC + spatial), checking every constraint ONNX states.
    ///
    /// # Errors
    /// A message saying which attribute or shape is inconsistent.
    pub(crate) fn resolve(attrs: &ConvAttrs, x: &[usize], w: &[usize]) -> Result<Self, String> {
        if w.len() < 3 || w.len() > 5 {
            return Err(format!(
                "weight has rank {} (shape {w:?}); expected 3 to 5 (M, C/group, kernel...)",
                w.len()
            ));
        }
        let nd = w.len() - 2;
        if x.len() != w.len() {
            return Err(format!(
                "input has shape {x:?} (rank {}) but the weight {w:?} needs rank {}",
                x.len(),
                w.len()
            ));
        }
        let group = attrs.group;
        if group == 0 {
            return Err("group is 0".into());
        }
        let (batch, c_in, c_out) = (x[0], x[1], w[0]);
        if c_in != w[1] * group {
            return Err(format!(
                "input has {c_in} channels but weight {w:?} with group {group} expects {}",
                w[1] * group
            ));
        }
        if c_out % group != 0 {
            return Err(format!(
                "{c_out} output channels are not divisible by group {group}"
            ));
        }
        let per_dim = |v: &Vec<usize>, name: &str, default: usize| -> Result<Vec<usize>, String> {
            if v.is_empty() {
                Ok(vec![default; nd])
            } else if v.len() != nd {
                Err(format!(
                    "{name} has {} values {v:?}; expected {nd} for {nd} spatial dimension(s)",
                    v.len()
                ))
            } else {
                Ok(v.clone())
            }
        };
        let strides = per_dim(&attrs.strides, "strides", 1)?;
        let dilations = per_dim(&attrs.dilations, "dilations", 1)?;
        if strides.contains(&0) || dilations.contains(&0) {
            return Err(format!(
                "strides {strides:?} and dilations {dilations:?} must be positive"
            ));
        }
        let kernel: Vec<usize> = w[2..].to_vec();
        if !attrs.kernel_shape.is_empty() && attrs.kernel_shape != kernel {
            return Err(format!(
                "kernel_shape {:?} differs from the weight's spatial shape {kernel:?}",
                attrs.kernel_shape
            ));
        }
        if kernel.contains(&0) {
            return Err(format!("kernel shape {kernel:?} has a zero dimension"));
        }
        if !attrs.pads.is_empty() && attrs.pads.len() != 2 * nd {
            return Err(format!(
                "pads has {} values {:?}; expected {}",
                attrs.pads.len(),
                attrs.pads,
                2 * nd
            ));
        }
        let mut g = ConvGeometry {
            batch,
            c_in,
            c_out,
            group,
            input: [1; 3],
            kernel: [1; 3],
            stride: [1; 3],
            dilation: [1; 3],
            pad_begin: [0; 3],
            output: [1; 3],
            output_shape: vec![batch, c_out],
        };
        let off = 3 - nd;
        for i in 0..nd {
            let input = x[2 + i];
            let (k, s, d) = (kernel[i], strides[i], dilations[i]);
            let extent = (k - 1) * d + 1;
            let (pb, pe) = match attrs.auto_pad {
                AutoPad::NotSet => {
                    if attrs.pads.is_empty() {
                        (0, 0)
                    } else {
                        (attrs.pads[i], attrs.pads[nd + i])
                    }
                }
                AutoPad::Valid => (0, 0),
                AutoPad::SameUpper | AutoPad::SameLower => {
                    let out = input.div_ceil(s);
                    let total = ((out.max(1) - 1) * s + extent).saturating_sub(input);
                    let small = total / 2;
                    if attrs.auto_pad == AutoPad::SameUpper {
                        (small, total - small)
                    } else {
                        (total - small, small)
                    }
                }
            };
            let padded = input + pb + pe;
            if padded < extent {
                return Err(format!(
                    "spatial dimension {i}: input {input} padded by ({pb}, {pe}) is smaller than the dilated kernel extent {extent}"
                ));
            }
            let out = (padded - extent) / s + 1;
            g.input[off + i] = input;
            g.kernel[off + i] = k;
            g.stride[off + i] = s;
            g.dilation[off + i] = d;
            g.pad_begin[off + i] = pb;
            g.output[off + i] = out;
            g.output_shape.push(out);
        }
        let count = g
            .output_shape
            .iter()
            .try_fold(1u64, |a, &d| a.checked_mul(d as u64));
        if count.is_none_or(|c| c > MAX_VALUES) {
            return Err(format!(
                "the output shape {:?} exceeds the reference engine's limit of {MAX_VALUES} values",
                g.output_shape
            ));
        }
        Ok(g)
    }

    /// Number of input values.
    pub fn input_len(&self) -> usize {
        self.batch * self.c_in * self.input.iter().product::<usize>()
    }

    /// Number of output values.
    pub(crate) fn output_len(&self) -> usize {
        self.batch * self.c_out * self.output.iter().product::<usize>()
    }

    /// Number of weight values.
    pub fn weight_len(&self) -> usize {
        self.c_out * (self.c_in / self.group) * self.kernel.iter().product::<usize>()
    }
}

/// The range of output indices `o` in `0..out` for which
/// `o * stride + tap - pad` lands inside `0..input`.
fn valid_range(out: usize, input: usize, stride: usize, tap: usize, pad: usize) -> (usize, usize) {
    let (tap, pad, stride, input) = (tap as i64, pad as i64, stride as i64, input as i64);
    let lo = (pad - tap).max(0);
    let lo = (lo + stride - 1) / stride;
    let hi_excl = input + pad - tap;
    let hi = if hi_excl <= 0 {
        0
    } else {
        (hi_excl + stride - 1) / stride
    };
    let hi = hi.min(out as i64).max(0) as usize;
    (lo.min(hi as i64) as usize, hi)
}

/// Runs the convolution: `out = conv(x, w) + b`, all row-major (NC + DHW).
///
/// The caller guarantees the slice lengths match `g` (`input_len`,
/// `weight_len`, `c_out` for the bias, `output_len`).
pub fn conv(g: &ConvGeometry, x: &[f32], w: &[f32], b: Option<&[f32]>, out: &mut [f32]) {
    let [id, ih, iw] = g.input;
    let [kd, kh, kw] = g.kernel;
    let [sd, sh, sw] = g.stride;
    let [dd, dh, dw] = g.dilation;
    let [pd, ph, pw] = g.pad_begin;
    let [od, oh, ow] = g.output;
    let in_plane = id * ih * iw;
    let out_plane = od * oh * ow;
    let cin_g = g.c_in / g.group;
    let cout_g = g.c_out / g.group;
    let k_len = kd * kh * kw;
    for n in 0..g.batch {
        for m in 0..g.c_out {
            let grp = m / cout_g;
            let o_base = (n * g.c_out + m) * out_plane;
            let o = &mut out[o_base..o_base + out_plane];
            o.fill(b.map_or(0.0, |b| b[m]));
            for ci in 0..cin_g {
                let c = grp * cin_g + ci;
                let x_base = (n * g.c_in + c) * in_plane;
                let xs = &x[x_base..x_base + in_plane];
                let w_base = (m * cin_g + ci) * k_len;
                for a in 0..kd {
                    let (od_lo, od_hi) = valid_range(od, id, sd, a * dd, pd);
                    for bb in 0..kh {
                        let (oh_lo, oh_hi) = valid_range(oh, ih, sh, bb * dh, ph);
                        for cc in 0..kw {
                            let wv = w[w_base + (a * kh + bb) * kw + cc];
                            let (ow_lo, ow_hi) = valid_range(ow, iw, sw, cc * dw, pw);
                            if ow_lo >= ow_hi {
                                continue;
                            }
                            for zo in od_lo..od_hi {
                                let zi = zo * sd + a * dd - pd;
                                for yo in oh_lo..oh_hi {
                                    let yi = yo * sh + bb * dh - ph;
                                    let orow = &mut o[(zo * oh + yo) * ow..][..ow];
                                    let irow = &xs[(zi * ih + yi) * iw..][..iw];
                                    let first = ow_lo * sw + cc * dw - pw;
                                    if sw == 1 {
                                        let len = ow_hi - ow_lo;
                                        for (ov, xv) in orow[ow_lo..ow_hi]
                                            .iter_mut()
                                            .zip(&irow[first..first + len])
                                        {
                                            *ov += wv * xv;
                                        }
                                    } else {
                                        for (j, ov) in orow[ow_lo..ow_hi].iter_mut().enumerate() {
                                            *ov += wv * irow[first + j * sw];
                                        }
                                    }
                                }
                            }
                        }
                    }
                }
            }
        }
    }
}
