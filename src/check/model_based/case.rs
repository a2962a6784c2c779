//! A generated case: a model and a sequence of operations on it
//! ([`Case`], [`Op`]), the strategy that draws them, and their text as a
//! person would write it.

use proptest::prelude::*;

use super::net::{arb_net, Net};
use crate::model::conv::AutoPad;

/// The ways a staging can be invalid.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Invalid {
    /// A name the model does not have.
    UnknownName,
    /// A shape with one value more.
    WrongShape,
    /// i32 data for an f32 weight.
    WrongDType,
    /// One value more than the shape holds.
    WrongByteCount,
    /// A NaN among the values (only where the engine rejects them).
    NaN,
}

/// One operation of a sequence.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Op {
    /// Infer and compare with the oracle.
    Infer,
    /// Stage weight `index` (modulo the weight count) with values from `salt`.
    Stage {
        /// Which weight.
        index: usize,
        /// Seed of its values.
        salt: u64,
    },
    /// Stage an invalid tensor on weight `index`: must fail and change nothing.
    Invalid {
        /// Which weight.
        index: usize,
        /// How it is invalid.
        kind: Invalid,
    },
    /// Apply everything staged.
    Refit,
    /// A new refitter, refitted at once.
    EmptyRefit,
}

/// A generated case: a model and a sequence of operations.
#[derive(Clone, Debug)]
pub struct Case {
    /// The model.
    pub net: Net,
    /// The operations.
    pub ops: Vec<Op>,
}

fn arb_op() -> impl Strategy<Value = Op> {
    let kind = prop_oneof![
        Just(Invalid::UnknownName),
        Just(Invalid::WrongShape),
        Just(Invalid::WrongDType),
        Just(Invalid::WrongByteCount),
        Just(Invalid::NaN),
    ];
    prop_oneof![
        3 => Just(Op::Infer),
        4 => (0usize..8, 0u64..1000).prop_map(|(index, salt)| Op::Stage { index, salt }),
        2 => (0usize..8, kind).prop_map(|(index, kind)| Op::Invalid { index, kind }),
        3 => Just(Op::Refit),
        1 => Just(Op::EmptyRefit),
    ]
}

impl Case {
    /// The refittable weights' names in the model's order (what `index`
    /// picks from, modulo their count).
    pub fn weight_names(&self) -> Vec<String> {
        match &self.net {
            Net::Conv(chain) => chain
                .layers
                .iter()
                .flat_map(|l| std::iter::once(l.weight_name.clone()).chain(l.bias_name.clone()))
                .collect(),
            net => net.graph().0.weight_names().to_vec(),
        }
    }

    /// The model as a person would write it: `input [1, 2, 5, 5]; l0.weight
    /// conv 2 -> 3, kernel 3x3, stride 2, pads [1, 0, 1, 0], bias, relu`, or
    /// `input [1, 1, 2, 2]; c0: conv 1 -> 2, kernel 3, stride 1, pad 1, bn0:
    /// batchnorm, relu; global average pool, flatten; fc: gemm 2 -> 1
    /// (transB), bias`.
    pub(crate) fn model_text(&self) -> String {
        let chain = match &self.net {
            Net::Conv(chain) => chain,
            net => return net.graph().1,
        };
        let dims = |v: &[usize]| {
            v.iter()
                .map(|d| d.to_string())
                .collect::<Vec<_>>()
                .join("x")
        };
        let mut c_in = chain.input_shape.get(1).copied().unwrap_or(0);
        let mut parts = vec![format!("input {:?}", chain.input_shape)];
        for l in &chain.layers {
            let a = &l.attrs;
            let mut t = format!("{}: conv {c_in} -> {}", l.weight_name, l.c_out);
            t += &format!(", kernel {}", dims(&l.kernel));
            if a.group != 1 {
                t += &format!(", group {}", a.group);
            }
            if a.strides.iter().any(|&s| s != 1) {
                t += &format!(", stride {}", dims(&a.strides));
            }
            if a.dilations.iter().any(|&d| d != 1) {
                t += &format!(", dilation {}", dims(&a.dilations));
            }
            if a.auto_pad != AutoPad::NotSet {
                t += &format!(", auto_pad {:?}", a.auto_pad);
            } else if a.pads.iter().any(|&p| p != 0) {
                t += &format!(", pads {:?}", a.pads);
            }
            if let Some(b) = &l.bias_name {
                t += &format!(", bias {b}");
                if l.bias.iter().all(|&x| x == 0.0) {
                    t += " (all zero)";
                }
            }
            if l.relu {
                t += ", relu";
            }
            parts.push(t);
            c_in = l.c_out;
        }
        parts.join("; ")
    }

    /// The operations as a person would write them, `; `-separated:
    /// `stage l0.weight = values #640; refit; stage l0.bias with a wrong
    /// shape (must fail); new refitter, refit at once; infer`.
    pub(crate) fn ops_text(&self) -> String {
        let names = self.weight_names();
        self.ops
            .iter()
            .map(|op| op.text(&names))
            .collect::<Vec<_>>()
            .join("; ")
    }
}

impl Op {
    /// The operation in words, naming the weight it picks from `names`.
    pub fn text(&self, names: &[String]) -> String {
        let name = |i: usize| {
            if names.is_empty() {
                format!("weight {i}")
            } else {
                names[i % names.len()].clone()
            }
        };
        match *self {
            Op::Infer => "infer".into(),
            Op::Stage { index, salt } => format!("stage {} = values #{salt}", name(index)),
            Op::Invalid { index, kind } => {
                let how = match kind {
                    Invalid::UnknownName => "under an unknown name",
                    Invalid::WrongShape => "with one value too many in its shape",
                    Invalid::WrongDType => "as i32 data",
                    Invalid::WrongByteCount => "with one value too many for its shape",
                    Invalid::NaN => "with a NaN",
                };
                format!("stage {} {how} (must fail)", name(index))
            }
            Op::Refit => "refit".into(),
            Op::EmptyRefit => "new refitter, refit at once".into(),
        }
    }
}

/// The strategy for whole cases.
pub fn arb_case() -> impl Strategy<Value = Case> {
    (arb_net(), prop::collection::vec(arb_op(), 1..24)).prop_map(|(net, ops)| Case { net, ops })
}
