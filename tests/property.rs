//! After any sequence of refits with uniform kernels, some of them invalid,
//! every output position equals the sum of its input window times the last
//! valid kernel value; an invalid refit changes nothing.

use proptest::prelude::*;

use refit_harness::engine::{refit_all, BuildOptions};
use refit_harness::model::build::{ConvChain, ConvLayer};
use refit_harness::model::conv::ConvAttrs;
use refit_harness::{Tensor, TensorData};

use crate::common::{engine_of, infer1};

#[derive(Clone, Debug)]
enum Step {
    Uniform(i8),
    WrongShape(i8),
    WrongDType(i8),
    UnknownName(i8),
    TenForNine(i8),
    NonFinite(bool),
}

fn arb_step() -> impl Strategy<Value = Step> {
    prop_oneof![
        4 => (-9i8..=9).prop_map(Step::Uniform),
        1 => (-9i8..=9).prop_map(Step::WrongShape),
        1 => (-9i8..=9).prop_map(Step::WrongDType),
        1 => (-9i8..=9).prop_map(Step::UnknownName),
        1 => (-9i8..=9).prop_map(Step::TenForNine),
        1 => any::<bool>().prop_map(Step::NonFinite),
    ]
}

fn model(h: usize, w: usize, kh: usize, kw: usize) -> ConvChain {
    ConvChain {
        input_name: "x".into(),
        input_shape: vec![1, 1, h, w],
        output_name: "y".into(),
        layers: vec![ConvLayer {
            weight_name: "weight".into(),
            bias_name: None,
            c_out: 1,
            kernel: vec![kh, kw],
            attrs: ConvAttrs::default(),
            weight: vec![0.0; kh * kw],
            bias: Vec::new(),
            relu: false,
        }],
    }
}

/// `sum(window) * k` at every output position.
fn expected(x: &[f32], h: usize, w: usize, kh: usize, kw: usize, k: f32) -> Vec<f32> {
    let mut out = Vec::new();
    for i in 0..=h - kh {
        for j in 0..=w - kw {
            let s: f32 = (0..kh)
                .flat_map(|a| (0..kw).map(move |b| (a, b)))
                .map(|(a, b)| x[(i + a) * w + j + b])
                .sum();
            out.push(s * k);
        }
    }
    out
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(48))]
    #[test]
    fn uniform_refits_give_window_sum_times_k(
        (h, w, kh, kw, x) in (1usize..=3, 1usize..=3).prop_flat_map(|(kh, kw)| {
            (kh..kh + 5, kw..kw + 5).prop_flat_map(move |(h, w)| {
                (Just(h), Just(w), Just(kh), Just(kw), prop::collection::vec(-5i32..=5, h * w))
            })
        }),
        steps in prop::collection::vec(arb_step(), 1..12),
    ) {
        let engine = engine_of(&model(h, w, kh, kw), &BuildOptions::default());
        let xv: Vec<f32> = x.iter().map(|&v| v as f32).collect();
        let xt = Tensor::f32([1, 1, h, w], xv.clone());
        let shape = vec![1, 1, kh, kw];
        let mut k = 0.0f32;
        for step in &steps {
            let result = match *step {
                Step::Uniform(v) => refit_all(&engine, [("weight", &Tensor::full(shape.clone(), v as f32))]),
                Step::WrongShape(v) => refit_all(&engine, [("weight", &Tensor::full([1, 1, kh, kw + 1], v as f32))]),
                Step::WrongDType(v) => refit_all(&engine, [("weight", &Tensor {
                    shape: shape.clone(),
                    data: TensorData::I32(vec![v as i32; kh * kw].into()),
                })]),
                Step::UnknownName(v) => refit_all(&engine, [
                    ("weight", &Tensor::full(shape.clone(), v as f32)),
                    ("weigth", &Tensor::full(shape.clone(), v as f32)),
                ]),
                Step::TenForNine(v) => refit_all(&engine, [("weight", &Tensor::f32(shape.clone(), vec![v as f32; kh * kw + 1]))]),
                Step::NonFinite(nan) => {
                    let mut vals = vec![1.0; kh * kw];
                    vals[kh * kw - 1] = if nan { f32::NAN } else { f32::INFINITY };
                    refit_all(&engine, [("weight", &Tensor::f32(shape.clone(), vals))])
                }
            };
            match step {
                Step::Uniform(v) => {
                    prop_assert!(result.is_ok(), "{result:?}");
                    k = *v as f32;
                }
                _ => prop_assert!(result.is_err(), "{step:?} was accepted"),
            }
            prop_assert_eq!(infer1(&engine, &xt), expected(&xv, h, w, kh, kw, k), "after {:?}", step);
        }
    }
}

#[test]
fn the_oracle_of_this_test_detects_a_wrong_k() {
    // Guards the property against a vacuous oracle: a kernel of 2 must not
    // pass for a kernel of 3.
    let engine = engine_of(&model(4, 4, 2, 2), &BuildOptions::default());
    let x: Vec<f32> = (0..16).map(|v| v as f32).collect();
    refit_all(&engine, [("weight", &Tensor::full([1, 1, 2, 2], 2.0))]).unwrap();
    let got = infer1(&engine, &Tensor::f32([1, 1, 4, 4], x.clone()));
    assert_eq!(got, expected(&x, 4, 4, 2, 2, 2.0));
    assert_ne!(got, expected(&x, 4, 4, 2, 2, 3.0));
}
