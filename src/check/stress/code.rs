//! The stress models' version codes: numbers an engine's precision holds
//! exactly, so each output channel of a stress model reads back the weight
//! version it came from, and a mix of versions reads back as none (torn).

use crate::engine::Precision;
use crate::history::Version;
use crate::model::build::{ConvChain, ConvLayer};
use crate::model::conv::ConvAttrs;

/// Output channels of the stress model.
pub const CHANNELS: usize = 256;

/// Numbers an engine of one precision holds exactly, counted: code `k` is
/// the `k`-th positive number of the narrowest format the engine rounds
/// weights or outputs to, counted up from a power of two, so that an engine
/// rounding a code to its format and multiplying it by 1 (or adding 0)
/// returns it unchanged.
///
/// For f32 the codes are the integers from 2^23 up (consecutive up to
/// 2^24, then even); for f16 every normal f16; for bf16 and tf32 the
/// numbers of their mantissa width between 2^-100 and 2^101.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Code {
    /// Explicit mantissa bits kept.
    mantissa: u32,
    /// The exponent of code 0.
    low_exponent: i32,
    /// Binades spanned.
    binades: u32,
}

impl Code {
    /// Codes every precision holds exactly (1 to 2^15 with 8 significant
    /// bits), too few for a race: what a model is built on before the
    /// engine has said which precision it computes in.
    pub(crate) const PORTABLE: Code = Code {
        mantissa: 7,
        low_exponent: 0,
        binades: 15,
    };

    /// The codes for an engine computing in `precision`.
    pub fn of(precision: Precision) -> Code {
        let mantissa = precision.operand_bits().min(precision.storage_bits());
        let (low_exponent, binades) = match precision {
            Precision::F32 => (23, 2),
            Precision::F16 => (-14, 30),
            Precision::Tf32 | Precision::Bf16 => (-100, 201),
        };
        Code {
            mantissa,
            low_exponent,
            binades,
        }
    }

    /// How many codes there are.
    pub fn len(&self) -> u64 {
        u64::from(self.binades) << self.mantissa
    }

    /// Never: every precision has codes.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The largest version a tensor of `channels` channels can carry.
    pub(crate) fn max_version(&self, channels: usize) -> Version {
        self.len() - channels as u64
    }

    /// Code `k` (below [`Code::len`]).
    pub fn value(&self, k: u64) -> f32 {
        let binade = (k >> self.mantissa) as i32;
        let fraction = (k & ((1 << self.mantissa) - 1)) as u32;
        let exponent = (127 + self.low_exponent + binade) as u32;
        f32::from_bits((exponent << 23) | (fraction << (23 - self.mantissa)))
    }

    /// Which code `x` is, if any.
    pub fn index(&self, x: f32) -> Option<u64> {
        let bits = x.to_bits();
        let exponent = ((bits >> 23) & 0xff) as i32 - 127;
        let binade = exponent - self.low_exponent;
        let dropped = (1u32 << (23 - self.mantissa)) - 1;
        if bits >> 31 != 0 || binade < 0 || binade >= self.binades as i32 || bits & dropped != 0 {
            return None;
        }
        let fraction = u64::from((bits & 0x7f_ffff) >> (23 - self.mantissa));
        Some(((binade as u64) << self.mantissa) | fraction)
    }

    /// The `channels` values of version `v`: code `v + c` for channel `c`.
    pub fn weights(&self, v: Version, channels: usize) -> Vec<f32> {
        (0..channels).map(|c| self.value(v + c as u64)).collect()
    }

    /// The version channel `c` holding `x` comes from.
    fn channel_version(&self, c: usize, x: f32) -> Option<Version> {
        self.index(x)?.checked_sub(c as u64)
    }

    /// The version an output decodes to, or `None` when no single version
    /// produced it (or it is not `channels` long).
    pub fn decode(&self, out: &[f32], channels: usize) -> Option<Version> {
        if out.len() != channels {
            return None;
        }
        let v = self.channel_version(0, *out.first()?)?;
        out.iter()
            .enumerate()
            .all(|(c, &x)| self.channel_version(c, x) == Some(v))
            .then_some(v)
    }

    /// What a torn output is made of: runs of channels and the version each
    /// decodes to (`no version` for a value no version holds), e.g.
    /// `channels 0..127 from v12, 128..255 from v11`.
    pub(crate) fn anatomy(&self, out: &[f32]) -> String {
        let per: Vec<Option<Version>> = out
            .iter()
            .enumerate()
            .map(|(c, &x)| self.channel_version(c, x))
            .collect();
        let mut runs: Vec<String> = Vec::new();
        let mut start = 0;
        for c in 1..=per.len() {
            if c == per.len() || per[c] != per[start] {
                let v = per[start].map_or_else(|| "no version".to_string(), |v| format!("v{v}"));
                runs.push(format!("{start}..{} from {v}", c - 1));
                start = c;
            }
        }
        if runs.len() > 6 {
            let more = runs.len() - 6;
            runs.truncate(6);
            runs.push(format!("and {more} more runs"));
        }
        format!("channels {}", runs.join(", "))
    }
}

/// The stress model, serving version 0 of `code`.
pub fn model(code: Code) -> ConvChain {
    ConvChain {
        input_name: "x".into(),
        input_shape: vec![1, 1, 1, 1],
        output_name: "y".into(),
        layers: vec![ConvLayer {
            weight_name: "stress.weight".into(),
            bias_name: None,
            c_out: CHANNELS,
            kernel: vec![1, 1],
            attrs: ConvAttrs::default(),
            weight: code.weights(0, CHANNELS),
            bias: Vec::new(),
            relu: false,
        }],
    }
}

/// Channels each weight of the disjoint-weights stress model writes.
pub const DISJOINT_CHANNELS: usize = 16;

/// The disjoint-weights stress model: a 1x1 conv from one input channel to
/// 2 x [`DISJOINT_CHANNELS`] channels with a weight and a bias, on an input
/// of 1, so output channel `c` is `weight[c] + bias[c]`. The weight writes
/// its version into the first half of the channels and holds 0 in the
/// second; the bias holds 0 in the first half and writes its version into
/// the second: each half of the output decodes one weight's version on its
/// own, exactly in any precision (`x * 1 + 0` and `0 * 1 + x` round to `x`).
pub fn disjoint_model(code: Code) -> ConvChain {
    ConvChain {
        input_name: "x".into(),
        input_shape: vec![1, 1, 1, 1],
        output_name: "y".into(),
        layers: vec![ConvLayer {
            weight_name: "disjoint.weight".into(),
            bias_name: Some("disjoint.bias".into()),
            c_out: 2 * DISJOINT_CHANNELS,
            kernel: vec![1, 1],
            attrs: ConvAttrs::default(),
            weight: disjoint_values(code, 0, 0),
            bias: disjoint_values(code, 1, 0),
            relu: false,
        }],
    }
}

/// The values of weight `which` (0: the weight, 1: the bias) at `version`.
pub fn disjoint_values(code: Code, which: usize, version: Version) -> Vec<f32> {
    let zeros = vec![0.0; DISJOINT_CHANNELS];
    let own = code.weights(version, DISJOINT_CHANNELS);
    if which == 0 {
        [own, zeros].concat()
    } else {
        [zeros, own].concat()
    }
}

/// The (weight, bias) versions an output of the disjoint model decodes to;
/// `None` for a half no single version produced.
pub fn disjoint_decode(code: Code, out: &[f32]) -> (Option<Version>, Option<Version>) {
    if out.len() != 2 * DISJOINT_CHANNELS {
        return (None, None);
    }
    let (w, b) = out.split_at(DISJOINT_CHANNELS);
    (
        code.decode(w, DISJOINT_CHANNELS),
        code.decode(b, DISJOINT_CHANNELS),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_stress_encoding_decodes_whole_versions_only() {
        for p in Precision::ALL {
            let code = Code::of(p);
            let max = code.max_version(CHANNELS);
            assert!(max >= 15_000, "{p}: only {max} versions");
            for v in [0, 1, 77, max / 2, max] {
                assert_eq!(
                    code.decode(&code.weights(v, CHANNELS), CHANNELS),
                    Some(v),
                    "{p} v{v}"
                );
            }
            // Half of v5 and half of v4: no version, and the anatomy says which.
            let mut mixed = code.weights(5, CHANNELS);
            mixed[CHANNELS / 2..].copy_from_slice(&code.weights(4, CHANNELS)[CHANNELS / 2..]);
            assert_eq!(code.decode(&mixed, CHANNELS), None, "{p}");
            assert_eq!(
                code.anatomy(&mixed),
                format!(
                    "channels 0..{} from v5, {}..{} from v4",
                    CHANNELS / 2 - 1,
                    CHANNELS / 2,
                    CHANNELS - 1
                )
            );
            // A value from no version at all.
            let mut garbage = code.weights(3, CHANNELS);
            garbage[7] = -0.5;
            assert_eq!(code.decode(&garbage, CHANNELS), None);
            assert!(
                code.anatomy(&garbage).contains("7..7 from no version"),
                "{}",
                code.anatomy(&garbage)
            );
        }
    }

    /// Every code survives the rounding of the precision it is for, and codes
    /// are distinct and increasing: an engine in that precision outputs them
    /// unchanged and each decodes to one index.
    #[test]
    fn stress_codes_are_exact_in_their_precision() {
        let tf32 = |x: f32| {
            // Round to nearest even on a 10-bit mantissa.
            let b = x.to_bits();
            let r = b + 0xfff + ((b >> 13) & 1);
            f32::from_bits(r & !0x1fff)
        };
        for p in Precision::ALL {
            let code = Code::of(p);
            let round = |x: f32| match p {
                Precision::F32 => x,
                Precision::Tf32 => tf32(x),
                Precision::F16 => half::f16::from_f32(x).to_f32(),
                Precision::Bf16 => half::bf16::from_f32(x).to_f32(),
            };
            let n = code.len();
            let step = (n / 100_000).max(1);
            let mut last = 0.0f32;
            let mut k = 0;
            while k < n {
                let x = code.value(k);
                assert!(
                    x.is_normal() && x > last,
                    "{p}: code {k} = {x} after {last}"
                );
                assert_eq!(round(x), x, "{p}: code {k} = {x} is not exact");
                assert_eq!(round(x * 1.0 + 0.0), x, "{p}: code {k}");
                assert_eq!(code.index(x), Some(k), "{p}: code {k} = {x}");
                last = x;
                k += step;
            }
            assert_eq!(
                code.index(code.value(n - 1) * 2.0),
                None,
                "{p}: past the last code"
            );
            // The model built before the precision is known holds in it too.
            for k in 0..Code::PORTABLE.len() {
                let x = Code::PORTABLE.value(k);
                assert_eq!(round(x), x, "{p}: portable code {k} = {x}");
            }
        }
    }
}
