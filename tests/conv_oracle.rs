//! The reference engine's conv against the plain f64 oracle
//! (`refit_harness::oracle`, naive loops written from the ONNX
//! definition), on many shapes and attributes. PyTorch's own outputs
//! (`tests/pytorch.rs`) cross-check both.

use proptest::prelude::*;
use rstest::rstest;

use refit_harness::check::ints;
use refit_harness::engine::BuildOptions;
use refit_harness::model::build::{ConvChain, ConvLayer};
use refit_harness::model::conv::{AutoPad, ConvAttrs};
use refit_harness::oracle::conv_f64;
use refit_harness::Tensor;

use crate::common::{engine_of, infer1};

/// One conv case: shapes, attributes and integer-valued data.
#[derive(Clone, Debug)]
pub struct Case {
    pub batch: usize,
    pub c_in: usize,
    pub c_out: usize,
    pub group: usize,
    pub input: Vec<usize>,
    pub kernel: Vec<usize>,
    pub strides: Vec<usize>,
    pub dilations: Vec<usize>,
    pub pads: Vec<usize>,
    pub auto_pad: AutoPad,
    pub bias: bool,
}

impl Case {
    fn weight_shape(&self) -> Vec<usize> {
        let mut w = vec![self.c_out, self.c_in / self.group];
        w.extend(&self.kernel);
        w
    }

    fn input_shape(&self) -> Vec<usize> {
        let mut x = vec![self.batch, self.c_in];
        x.extend(&self.input);
        x
    }

    fn chain(&self, weight: &[f32], bias: &[f32]) -> ConvChain {
        ConvChain {
            input_name: "x".into(),
            input_shape: self.input_shape(),
            output_name: "y".into(),
            layers: vec![ConvLayer {
                weight_name: "w".into(),
                bias_name: self.bias.then(|| "b".to_string()),
                c_out: self.c_out,
                kernel: self.kernel.clone(),
                attrs: ConvAttrs {
                    group: self.group,
                    strides: self.strides.clone(),
                    dilations: self.dilations.clone(),
                    pads: self.pads.clone(),
                    kernel_shape: Vec::new(),
                    auto_pad: self.auto_pad,
                },
                weight: weight.to_vec(),
                bias: bias.to_vec(),
                relu: false,
            }],
        }
    }
}

/// The library's plain oracle on this case.
fn oracle(c: &Case, x: &[f32], w: &[f32], b: Option<&[f32]>) -> (Vec<usize>, Vec<f64>) {
    let attrs = c.chain(w, b.unwrap_or(&[])).layers[0].attrs.clone();
    let xs: Vec<f64> = x.iter().map(|&v| f64::from(v)).collect();
    conv_f64(&c.input_shape(), &xs, &c.weight_shape(), w, b, &attrs).expect("valid case")
}

/// Runs a case on the reference engine and the oracle, compares exactly
/// (integer data keeps f32 exact), then refits new weights and compares
/// again.
fn check(c: &Case, seed: u64) {
    let wshape = c.weight_shape();
    let wlen: usize = wshape.iter().product();
    let xshape = c.input_shape();
    let x = ints(xshape.iter().product(), seed);
    let w = ints(wlen, seed + 1);
    let b = if c.bias {
        ints(c.c_out, seed + 2)
    } else {
        Vec::new()
    };
    let engine = engine_of(&c.chain(&w, &b), &BuildOptions::default());
    let xt = Tensor::f32(xshape, x.clone());
    let (shape, expected) = oracle(c, &x, &w, c.bias.then_some(&b[..]));
    assert_eq!(engine.outputs()[0].static_shape().unwrap(), shape, "{c:?}");
    let got = infer1(&engine, &xt);
    let expected32: Vec<f32> = expected.iter().map(|&v| v as f32).collect();
    assert_eq!(got, expected32, "{c:?}");

    let w2 = ints(wlen, seed + 10);
    let mut staged: Vec<(&str, Tensor)> = vec![("w", Tensor::f32(wshape, w2.clone()))];
    let b2 = ints(c.c_out, seed + 11);
    if c.bias {
        staged.push(("b", Tensor::f32([c.c_out], b2.clone())));
    }
    refit_harness::engine::refit_all(&engine, staged.iter().map(|(n, t)| (*n, t))).unwrap();
    let (_, expected) = oracle(c, &x, &w2, c.bias.then_some(&b2[..]));
    let expected32: Vec<f32> = expected.iter().map(|&v| v as f32).collect();
    assert_eq!(infer1(&engine, &xt), expected32, "after refit: {c:?}");
}

use refit_harness::Engine as _;

#[allow(clippy::too_many_arguments)]
fn case2d(
    batch: usize,
    c_in: usize,
    c_out: usize,
    group: usize,
    input: [usize; 2],
    kernel: [usize; 2],
    strides: [usize; 2],
    dilations: [usize; 2],
    pads: [usize; 4],
    auto_pad: AutoPad,
    bias: bool,
) -> Case {
    Case {
        batch,
        c_in,
        c_out,
        group,
        input: input.to_vec(),
        kernel: kernel.to_vec(),
        strides: strides.to_vec(),
        dilations: dilations.to_vec(),
        pads: pads.to_vec(),
        auto_pad,
        bias,
    }
}

#[rstest]
#[case::seed(case2d(1, 1, 1, 1, [3, 3], [3, 3], [1, 1], [1, 1], [0; 4], AutoPad::NotSet, false))]
#[case::padded_bias(case2d(1, 3, 4, 1, [7, 6], [3, 3], [1, 1], [1, 1], [1; 4], AutoPad::NotSet, true))]
#[case::asymmetric_pads(case2d(1, 2, 2, 1, [5, 5], [2, 3], [1, 1], [1, 1], [0, 2, 1, 0], AutoPad::NotSet, true))]
#[case::strided(case2d(2, 2, 3, 1, [9, 8], [3, 3], [2, 3], [1, 1], [1; 4], AutoPad::NotSet, false))]
#[case::dilated(case2d(1, 2, 2, 1, [9, 9], [3, 2], [1, 1], [2, 3], [0; 4], AutoPad::NotSet, true))]
#[case::grouped(case2d(1, 6, 4, 2, [6, 6], [3, 3], [1, 1], [1, 1], [1; 4], AutoPad::NotSet, true))]
#[case::depthwise(case2d(2, 4, 8, 4, [6, 5], [3, 1], [1, 2], [1, 1], [1, 0, 1, 0], AutoPad::NotSet, true))]
#[case::same_upper(case2d(1, 2, 3, 1, [7, 6], [4, 3], [2, 2], [1, 1], [0; 4], AutoPad::SameUpper, false))]
#[case::same_lower(case2d(1, 2, 3, 1, [7, 6], [4, 3], [2, 2], [1, 1], [0; 4], AutoPad::SameLower, true))]
#[case::valid(case2d(1, 1, 2, 1, [5, 7], [2, 4], [2, 1], [1, 2], [0; 4], AutoPad::Valid, false))]
#[case::pointwise(case2d(3, 5, 7, 1, [4, 4], [1, 1], [1, 1], [1, 1], [0; 4], AutoPad::NotSet, true))]
#[case::kernel_wider_than_input_with_pads(case2d(1, 1, 1, 1, [2, 2], [3, 3], [1, 1], [1, 1], [1; 4], AutoPad::NotSet, false))]
fn conv_matches_oracle_2d(#[case] c: Case) {
    check(&c, 42);
}

#[test]
fn conv_matches_oracle_1d_and_3d() {
    let c1 = Case {
        batch: 2,
        c_in: 4,
        c_out: 6,
        group: 2,
        input: vec![11],
        kernel: vec![3],
        strides: vec![2],
        dilations: vec![2],
        pads: vec![2, 1],
        auto_pad: AutoPad::NotSet,
        bias: true,
    };
    check(&c1, 1);
    let c3 = Case {
        batch: 1,
        c_in: 2,
        c_out: 2,
        group: 1,
        input: vec![4, 5, 6],
        kernel: vec![2, 3, 2],
        strides: vec![1, 2, 1],
        dilations: vec![1, 1, 2],
        pads: vec![1, 0, 1, 0, 1, 1],
        auto_pad: AutoPad::NotSet,
        bias: true,
    };
    check(&c3, 2);
}

fn arb_case() -> impl Strategy<Value = Case> {
    (
        1usize..=3,
        1usize..=3,
        1usize..=3,
        1usize..=3,
        1usize..=2,
        any::<bool>(),
        0usize..4,
    )
        .prop_flat_map(|(nd, group, cin_g, cout_g, batch, bias, pad_mode)| {
            let dims = prop::collection::vec(
                (
                    1usize..=3,
                    1usize..=3,
                    1usize..=2,
                    0usize..=2,
                    0usize..=2,
                    0usize..=4,
                ),
                nd,
            );
            (
                Just((nd, group, cin_g, cout_g, batch, bias, pad_mode)),
                dims,
            )
        })
        .prop_map(
            |((nd, group, cin_g, cout_g, batch, bias, pad_mode), dims)| {
                let auto_pad = [
                    AutoPad::NotSet,
                    AutoPad::Valid,
                    AutoPad::SameUpper,
                    AutoPad::SameLower,
                ][pad_mode];
                let mut c = Case {
                    batch,
                    c_in: cin_g * group,
                    c_out: cout_g * group,
                    group,
                    input: Vec::new(),
                    kernel: Vec::new(),
                    strides: Vec::new(),
                    dilations: Vec::new(),
                    pads: vec![0; 2 * nd],
                    auto_pad,
                    bias,
                };
                for (i, &(k, s, d, pb, pe, extra)) in dims.iter().enumerate() {
                    // Make the input at least as large as the dilated kernel.
                    let ext = (k - 1) * d + 1;
                    c.kernel.push(k);
                    c.strides.push(s);
                    c.dilations.push(d);
                    c.input.push(ext + extra);
                    if auto_pad == AutoPad::NotSet {
                        c.pads[i] = pb;
                        c.pads[nd + i] = pe;
                    }
                }
                c
            },
        )
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]
    #[test]
    fn conv_matches_oracle_on_arbitrary_shapes(c in arb_case(), seed in 0u64..1000) {
        check(&c, seed);
    }
}
