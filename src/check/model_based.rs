//! The model-based property test: arbitrary models and arbitrary sequences
//! of operations on them, run on the engine and on a plain model of what it
//! must serve (the oracle plus the staged set), compared after every step.
//!
//! The models ([`Net`]) are conv chains of every conv attribute, residual
//! CNNs (Conv, BatchNormalization, Relu, Clip, residual Add, max and
//! average pooling, a global-pooling Gemm head) and attention blocks
//! (MatMul projections, the scores' Softmax, MatMul with the values, a
//! residual Add, a Gemm head). Weights and inputs are integers, so conv,
//! Gemm and MatMul outputs compare exactly where the engine's precision
//! allows, and the rest within the oracle's bound (see
//! [`oracle`](crate::oracle)). Biases are sometimes all zero, as freshly
//! initialized networks have them. The case count
//! is `PROPTEST_CASES` (see [`CheckConfig`](super::CheckConfig)); models the
//! engine refuses as unsupported are skipped and counted. Failing cases
//! shrink, and their seeds are saved under the report folder
//! ([`CheckConfig::regressions`](super::CheckConfig::regressions)) and
//! replayed first by a run given the same file.

use std::cell::Cell;
use std::path::Path;
use std::time::Instant;

use proptest::prelude::*;
use proptest::test_runner::{Config, FileFailurePersistence, TestCaseError, TestError, TestRunner};

use super::subject::{compare, ints, probe_inputs, typed};
use super::{fail, Cx, Verdict};
use crate::engine::{BuildOptions, FailedRefit, NonFinite, Subset};
use crate::model::build::{Conv2d, ConvChain, ConvLayer, Graph, Integers, Value, ZeroBias};
use crate::model::conv::{AutoPad, ConvAttrs};
use crate::model::Model;
use crate::oracle::{Judge, Oracle};
use crate::tensor::{Tensor, TensorData};

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

/// A generated model.
#[derive(Clone, Debug)]
pub enum Net {
    /// One or two convs of arbitrary attributes (groups, strides,
    /// dilations, padding modes, 1-D and 2-D).
    Conv(ConvChain),
    /// A residual CNN.
    Cnn(Cnn),
    /// An attention block.
    Attention(Attention),
}

/// An activation after a conv.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Act {
    /// None.
    None,
    /// `Relu`.
    Relu,
    /// `Clip` to [0, 6] (ReLU6).
    Clip,
}

/// One block of a [`Cnn`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Block {
    /// A conv, optionally followed by BatchNorm and an activation.
    Conv {
        /// Output channels.
        c_out: usize,
        /// Kernel size (padding `kernel / 2`).
        kernel: usize,
        /// Stride.
        stride: usize,
        /// Whether the conv has a bias.
        bias: bool,
        /// Whether BatchNormalization follows.
        bn: bool,
        /// The activation after.
        act: Act,
    },
    /// `relu(x + [bn](conv3x3(x)))`.
    Residual {
        /// Whether BatchNormalization follows the conv.
        bn: bool,
    },
    /// Max or average pooling, no padding (the kernel shrunk to the input
    /// where it is larger).
    Pool {
        /// MaxPool, else AveragePool.
        max: bool,
        /// Kernel size.
        kernel: usize,
        /// Stride.
        stride: usize,
    },
}

/// A Gemm classifier head.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Head {
    /// Outputs.
    pub classes: usize,
    /// Weight stored `[classes, k]` with `transB = 1` (PyTorch's Linear).
    pub trans_b: bool,
    /// Whether it has a bias.
    pub bias: bool,
}

/// A residual CNN: blocks, then (optionally) global average pooling,
/// Flatten and a Gemm head.
#[derive(Clone, Debug)]
pub struct Cnn {
    /// Input shape (N, C, H, W).
    pub input: [usize; 4],
    /// The blocks, in order.
    pub blocks: Vec<Block>,
    /// The head, if any.
    pub head: Option<Head>,
    /// Whether every bias is all zeros.
    pub zero_bias: bool,
    /// Seed of the weights.
    pub salt: u64,
}

/// Single-head self-attention on `[n, seq, d]`: query and key projections
/// to `e`, the scaled scores' Softmax, times the value projection; then a
/// residual Add (the value projection then keeps `d`), a ReLU6, and a Gemm
/// head over the flattened result, each optional.
#[derive(Clone, Debug)]
pub struct Attention {
    /// Batch.
    pub n: usize,
    /// Sequence length.
    pub seq: usize,
    /// Features in.
    pub d: usize,
    /// Query and key features.
    pub e: usize,
    /// Whether the input is added back.
    pub residual: bool,
    /// Whether a ReLU6 (Clip) follows.
    pub clip: bool,
    /// The head, if any.
    pub head: Option<Head>,
    /// Whether every bias is all zeros.
    pub zero_bias: bool,
    /// Seed of the weights.
    pub salt: u64,
}

impl Net {
    /// 0 for a conv chain, 1 for a residual CNN, 2 for attention.
    fn kind(&self) -> usize {
        match self {
            Net::Conv(_) => 0,
            Net::Cnn(_) => 1,
            Net::Attention(_) => 2,
        }
    }

    /// The model's protobuf bytes.
    pub fn to_bytes(&self) -> Vec<u8> {
        match self {
            Net::Conv(chain) => chain.to_bytes(),
            _ => self.graph().0.to_bytes(),
        }
    }

    /// The graph, and the model in words (for [`Net::Cnn`] and
    /// [`Net::Attention`]; a conv chain's is [`Case::model_text`]'s).
    fn graph(&self) -> (Graph, String) {
        let init = |zero: bool, salt: u64| -> Graph {
            if zero {
                Graph::new(ZeroBias(Integers(salt)))
            } else {
                Graph::new(Integers(salt))
            }
        };
        let mut parts = Vec::new();
        let (mut g, y) = match self {
            Net::Conv(_) => return (Graph::new(Integers(0)), String::new()),
            Net::Cnn(c) => {
                let mut g = init(c.zero_bias, c.salt);
                let mut x = g.input("x", &c.input);
                parts.push(format!("input {:?}", c.input));
                for (i, b) in c.blocks.iter().enumerate() {
                    match *b {
                        Block::Conv {
                            c_out,
                            kernel,
                            stride,
                            bias,
                            bn,
                            act,
                        } => {
                            let name = format!("c{i}");
                            let spec = Conv2d {
                                stride,
                                bias,
                                ..Conv2d::new(c_out, kernel)
                            };
                            let c_in = x.shape[1];
                            x = g.conv(&x, &name, spec);
                            let mut t = format!(
                                "{name}: conv {c_in} -> {c_out}, kernel {kernel}, stride {stride}, pad {}{}",
                                kernel / 2,
                                bias_text(&g, &name, bias)
                            );
                            if bn {
                                x = g.batch_norm(&x, &format!("bn{i}"));
                                t += &format!(", bn{i}: batchnorm");
                            }
                            match act {
                                Act::None => {}
                                Act::Relu => {
                                    x = g.relu(&x);
                                    t += ", relu";
                                }
                                Act::Clip => {
                                    x = g.clip(&x, 0.0, 6.0);
                                    t += ", clip 0..6";
                                }
                            }
                            parts.push(t);
                        }
                        Block::Residual { bn } => {
                            let name = format!("r{i}");
                            let mut y = g.conv(&x, &name, Conv2d::new(x.shape[1], 3));
                            if bn {
                                y = g.batch_norm(&y, &format!("{name}.bn"));
                            }
                            let sum = g.add(&x, &y);
                            x = g.relu(&sum);
                            parts.push(format!(
                                "{name}: residual relu(x + {}conv 3x3 of x)",
                                if bn { "batchnorm of " } else { "" }
                            ));
                        }
                        Block::Pool {
                            max,
                            kernel,
                            stride,
                        } => {
                            let k = kernel.min(x.shape[2]).min(x.shape[3]);
                            x = g.pool(&x, max, k, stride, 0);
                            parts.push(format!(
                                "{} {k}x{k}, stride {stride}",
                                if max { "maxpool" } else { "averagepool" }
                            ));
                        }
                    }
                }
                if let Some(h) = &c.head {
                    x = g.global_average_pool(&x);
                    x = g.flatten(&x);
                    parts.push("global average pool, flatten".into());
                    x = head(&mut g, &x, h, &mut parts);
                }
                (g, x)
            }
            Net::Attention(a) => {
                let mut g = init(a.zero_bias, a.salt);
                let x = g.input("x", &[a.n, a.seq, a.d]);
                parts.push(format!("input {:?}", [a.n, a.seq, a.d]));
                let q = g.project(&x, "q", a.e);
                let k = g.project(&x, "k", a.e);
                let dv = if a.residual { a.d } else { a.e };
                let v = g.project(&x, "v", dv);
                let kt = g.transpose_last(&k);
                let s = g.matmul(&q, &kt);
                let s = g.scale(&s, 0.5);
                let p = g.softmax(&s);
                let mut y = g.matmul(&p, &v);
                parts.push(format!(
                    "attention: q, k: matmul {d} -> {e}, v: matmul {d} -> {dv}, softmax(q kT / 2) v",
                    d = a.d,
                    e = a.e
                ));
                if a.residual {
                    y = g.add(&x, &y);
                    parts.push("add the input".into());
                }
                if a.clip {
                    y = g.clip(&y, 0.0, 6.0);
                    parts.push("clip 0..6".into());
                }
                if let Some(h) = &a.head {
                    y = g.flatten(&y);
                    parts.push("flatten".into());
                    y = head(&mut g, &y, h, &mut parts);
                }
                (g, y)
            }
        };
        g.set_outputs(&[("y", &y)]);
        (g, parts.join("; "))
    }
}

fn head(g: &mut Graph, x: &Value, h: &Head, parts: &mut Vec<String>) -> Value {
    let y = g.gemm(x, "fc", h.classes, h.trans_b, h.bias);
    parts.push(format!(
        "fc: gemm {} -> {}{}{}",
        x.shape[1],
        h.classes,
        if h.trans_b { " (transB)" } else { "" },
        bias_text(g, "fc", h.bias)
    ));
    y
}

/// `, bias` or `, bias (all zero)` for layer `name`'s bias; empty without.
fn bias_text(g: &Graph, name: &str, bias: bool) -> &'static str {
    match g.values(&format!("{name}.bias")) {
        Some(v) if bias && v.iter().all(|&x| x == 0.0) => ", bias (all zero)",
        _ if bias => ", bias",
        _ => "",
    }
}

fn arb_layer0() -> impl Strategy<Value = (Vec<usize>, ConvLayer)> {
    (
        1usize..=2,
        1usize..=3,
        1usize..=2,
        1usize..=3,
        any::<bool>(),
        any::<bool>(),
        0usize..4,
    )
        .prop_flat_map(|(nd, group, cin_g, cout_g, bias, relu, pad_mode)| {
            let dims = prop::collection::vec(
                (
                    1usize..=3,
                    1usize..=2,
                    1usize..=2,
                    0usize..=1,
                    0usize..=1,
                    0usize..=3,
                ),
                nd,
            );
            (
                Just((nd, group, cin_g, cout_g, bias, relu, pad_mode)),
                dims,
                any::<u64>(),
            )
        })
        .prop_map(
            |((nd, group, cin_g, cout_g, bias, relu, pad_mode), dims, salt)| {
                let auto_pad = [
                    AutoPad::NotSet,
                    AutoPad::Valid,
                    AutoPad::SameUpper,
                    AutoPad::SameLower,
                ][pad_mode];
                let mut attrs = ConvAttrs {
                    group,
                    auto_pad,
                    ..ConvAttrs::default()
                };
                let mut input = vec![1 + (salt % 2) as usize, cin_g * group];
                let mut kernel = Vec::new();
                let mut pads = vec![0; 2 * nd];
                for (i, &(k, s, d, pb, pe, extra)) in dims.iter().enumerate() {
                    kernel.push(k);
                    attrs.strides.push(s);
                    attrs.dilations.push(d);
                    input.push((k - 1) * d + 1 + extra);
                    pads[i] = pb;
                    pads[nd + i] = pe;
                }
                if auto_pad == AutoPad::NotSet {
                    attrs.pads = pads;
                }
                let c_out = cout_g * group;
                let wlen = c_out * cin_g * kernel.iter().product::<usize>();
                let layer = ConvLayer {
                    weight_name: "l0.weight".into(),
                    bias_name: bias.then(|| "l0.bias".to_string()),
                    c_out,
                    kernel,
                    attrs,
                    weight: ints(wlen, salt),
                    bias: if bias {
                        ints(c_out, salt + 1)
                    } else {
                        Vec::new()
                    },
                    relu,
                };
                (input, layer)
            },
        )
}

fn arb_chain() -> impl Strategy<Value = ConvChain> {
    (arb_layer0(), any::<bool>(), 1usize..=3, any::<bool>()).prop_map(
        |((input, l0), second, c_out, bias)| {
            let mut layers = vec![l0];
            if second {
                // A pointwise conv over the first layer's output.
                let c_in = layers[0].c_out;
                let nd = input.len() - 2;
                layers.push(ConvLayer {
                    weight_name: "l1.weight".into(),
                    bias_name: bias.then(|| "l1.bias".to_string()),
                    c_out,
                    kernel: vec![1; nd],
                    attrs: ConvAttrs::default(),
                    weight: ints(c_out * c_in, 9),
                    bias: if bias { ints(c_out, 10) } else { Vec::new() },
                    relu: false,
                });
            }
            ConvChain {
                input_name: "x".into(),
                input_shape: input,
                output_name: "y".into(),
                layers,
            }
        },
    )
}

fn arb_head() -> impl Strategy<Value = Option<Head>> {
    prop::option::of((1usize..=3, any::<bool>(), any::<bool>()).prop_map(
        |(classes, trans_b, bias)| Head {
            classes,
            trans_b,
            bias,
        },
    ))
}

fn arb_block() -> impl Strategy<Value = Block> {
    let act = prop_oneof![Just(Act::None), Just(Act::Relu), Just(Act::Clip)];
    prop_oneof![
        3 => (1usize..=3, prop_oneof![Just(1usize), Just(3)], 1usize..=2, any::<bool>(), any::<bool>(), act)
            .prop_map(|(c_out, kernel, stride, bias, bn, act)| Block::Conv { c_out, kernel, stride, bias, bn, act }),
        2 => any::<bool>().prop_map(|bn| Block::Residual { bn }),
        1 => (any::<bool>(), 2usize..=3, 1usize..=2).prop_map(|(max, kernel, stride)| Block::Pool { max, kernel, stride }),
    ]
}

fn arb_cnn() -> impl Strategy<Value = Cnn> {
    (
        (1usize..=2, 1usize..=3, 1usize..=6, 1usize..=6),
        prop::collection::vec(arb_block(), 1..=3),
        arb_head(),
        any::<bool>(),
        0u64..1000,
    )
        .prop_map(|((n, c, h, w), blocks, head, zero_bias, salt)| {
            // At least one weight: pools alone get a head.
            let pools_only = blocks.iter().all(|b| matches!(b, Block::Pool { .. }));
            Cnn {
                input: [n, c, h, w],
                blocks,
                head: head.or(pools_only.then_some(Head {
                    classes: 1,
                    trans_b: false,
                    bias: false,
                })),
                zero_bias,
                salt,
            }
        })
}

fn arb_attention() -> impl Strategy<Value = Attention> {
    (
        (1usize..=2, 1usize..=4, 1usize..=4, 1usize..=4),
        any::<bool>(),
        any::<bool>(),
        arb_head(),
        any::<bool>(),
        0u64..1000,
    )
        .prop_map(
            |((n, seq, d, e), residual, clip, head, zero_bias, salt)| Attention {
                n,
                seq,
                d,
                e,
                residual,
                clip,
                head,
                zero_bias,
                salt,
            },
        )
}

fn arb_net() -> impl Strategy<Value = Net> {
    prop_oneof![
        2 => arb_chain().prop_map(Net::Conv),
        2 => arb_cnn().prop_map(Net::Cnn),
        1 => arb_attention().prop_map(Net::Attention),
    ]
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

/// How one case ended.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum CaseEnd {
    /// Every step matched the oracle; how many re-syncs a `may-be-partial`
    /// engine needed after failed refits.
    Ran {
        /// Full refits made to re-sync after a failed refit.
        resyncs: usize,
    },
    /// The engine refused the generated model as unsupported: the reason.
    Unsupported(String),
}

/// Runs one case against the engine; `Err` carries the failing step.
///
/// With `explain`, a mismatch's evidence ends with the oracle's explanation
/// ([`Oracle::explain`]): for the minimal failing case, not while searching.
pub(crate) fn run_case(
    cx: &Cx<'_>,
    case: &Case,
    path: &Path,
    explain: bool,
) -> Result<CaseEnd, String> {
    std::fs::write(path, case.net.to_bytes())
        .map_err(|e| format!("write {}: {e}", path.display()))?;
    let model = Model::load(path)
        .map_err(|e| format!("the generated model does not load in the oracle: {e}"))?;
    let engine = match cx.factory.open(path, &BuildOptions::default()) {
        Ok(e) => e,
        Err(e) if e.is_unsupported() => return Ok(CaseEnd::Unsupported(e.to_string())),
        Err(e) => return Err(format!("build the engine: {e}")),
    };
    let contract = engine.info().contract;
    let mut oracle = Oracle::with_judge(model, Judge::for_contract(&contract, cx.config.tolerance))
        .reporting_to(cx.worst.clone())
        .explaining(explain);
    let mut resyncs = 0;
    let names: Vec<String> = engine.weights().iter().map(|w| w.name.clone()).collect();
    let map = names
        .iter()
        .map(|name| oracle_index(&oracle, name))
        .collect::<Result<Vec<_>, _>>()?;
    let n = names.len();
    let inputs = probe_inputs(engine.inputs(), 11);
    let mut ctx = engine
        .context()
        .map_err(|e| format!("create a context: {e}"))?;
    let mut refitter = engine
        .refitter()
        .map_err(|e| format!("create a refitter: {e}"))?;
    let mut staged: Vec<Option<Vec<f32>>> = vec![None; n];
    let mut poisoned: Option<String> = None;
    let tensor = |i: usize, v: &[f32]| {
        let info = &engine.weights()[i];
        typed(
            info.dtype,
            info.shape.iter().map(|d| d.unwrap_or(0)).collect(),
            v,
        )
    };
    let numel = |i: usize| {
        engine.weights()[i]
            .shape
            .iter()
            .map(|d| d.unwrap_or(0))
            .product::<usize>()
    };
    // Integers; a BatchNorm variance's kept positive.
    let values = |oracle: &Oracle, i: usize, salt: u64| {
        let v = ints(numel(i), salt);
        if oracle.model().needs_positive(map[i]) {
            v.into_iter().map(|x| x.abs() + 1.0).collect()
        } else {
            v
        }
    };
    for (step, op) in case.ops.iter().enumerate() {
        let at = |what: String| format!("step {} ({}): {what}", step + 1, op.text(&names));
        if crate::flight::enabled() {
            crate::flight::step(&format!(
                "model_based case on {}, step {} ({})",
                path.display(),
                step + 1,
                op.text(&names)
            ));
        }
        match *op {
            Op::Infer => {}
            Op::Stage { index, salt } => {
                let i = index % n;
                let v = values(&oracle, i, salt);
                refitter
                    .set_named_weights(&names[i], &tensor(i, &v))
                    .map_err(|e| at(format!("expected success, observed error: {e}")))?;
                staged[i] = Some(v);
            }
            Op::Invalid { index, kind } => {
                let i = index % n;
                let info = &engine.weights()[i];
                let shape: Vec<usize> = info.shape.iter().map(|d| d.unwrap_or(0)).collect();
                let mut v = ints(numel(i), 77);
                let (name, t) = match kind {
                    Invalid::UnknownName => (format!("{}.missing", names[i]), tensor(i, &v)),
                    Invalid::WrongShape => {
                        v.push(1.0);
                        (
                            names[i].clone(),
                            Tensor {
                                shape: vec![v.len()],
                                ..tensor(i, &v)
                            },
                        )
                    }
                    Invalid::WrongDType => (
                        names[i].clone(),
                        Tensor {
                            shape,
                            data: TensorData::I32(vec![1; v.len()].into()),
                        },
                    ),
                    Invalid::WrongByteCount => {
                        v.push(1.0);
                        (
                            names[i].clone(),
                            Tensor {
                                shape,
                                ..tensor(i, &v)
                            },
                        )
                    }
                    Invalid::NaN => {
                        if contract.non_finite == NonFinite::Served {
                            continue;
                        }
                        v[0] = f32::NAN;
                        (names[i].clone(), tensor(i, &v))
                    }
                };
                // The error may come now or at the next refit; a staging
                // accepted now poisons the staged set.
                if refitter.set_named_weights(&name, &t).is_ok() {
                    poisoned = Some(format!("{kind:?} on '{name}'"));
                }
            }
            Op::Refit | Op::EmptyRefit => {
                let empty = *op == Op::EmptyRefit;
                let result = if empty {
                    engine.refitter().and_then(|mut r| r.refit())
                } else {
                    refitter.refit()
                };
                let pending: Vec<usize> = if empty {
                    Vec::new()
                } else {
                    (0..n).filter(|&i| staged[i].is_some()).collect()
                };
                let complete = pending.len() == n;
                let must_fail =
                    (contract.subset == Subset::RequiresAll && !complete && !pending.is_empty())
                        || (!empty && poisoned.is_some());
                if let (Ok(()), false, Some(bad)) = (&result, empty, &poisoned) {
                    return Err(at(format!("expected an error: the staging of {bad} was accepted and the refit succeeded")));
                }
                if !empty && poisoned.take().is_some() {
                    // The engine reported the bad staging at refit: nothing
                    // may change, and the staged set starts afresh.
                    refitter = engine
                        .refitter()
                        .map_err(|e| at(format!("create a refitter: {e}")))?;
                    staged.iter_mut().for_each(|s| *s = None);
                    if contract.failed_refit == FailedRefit::MayBePartial {
                        resync(engine.as_ref(), &mut oracle, &map, &names, &at)?;
                        resyncs += 1;
                    }
                } else {
                    let tolerated =
                        must_fail || (pending.is_empty() && contract.subset == Subset::RequiresAll);
                    match result {
                        Ok(()) if must_fail => {
                            let k = pending.len();
                            return Err(at(format!(
                                "expected an error refitting {k} of {n} weights (requires-all), observed success"
                            )));
                        }
                        Ok(()) => {
                            for i in pending {
                                if let Some(v) = staged[i].take() {
                                    oracle.set(map[i], v);
                                }
                            }
                        }
                        Err(e) if !tolerated => {
                            return Err(at(format!("expected success, observed error: {e}")))
                        }
                        Err(_) if contract.failed_refit == FailedRefit::MayBePartial => {
                            // Anything staged may have been applied: re-sync
                            // with a full refit of known values and go on.
                            refitter = engine
                                .refitter()
                                .map_err(|e| at(format!("create a refitter: {e}")))?;
                            staged.iter_mut().for_each(|s| *s = None);
                            resync(engine.as_ref(), &mut oracle, &map, &names, &at)?;
                            resyncs += 1;
                        }
                        Err(_) => {}
                    }
                }
            }
        }
        let observed = ctx.infer(&inputs).map_err(|e| at(format!("infer: {e}")))?;
        let expected = oracle
            .infer(&inputs)
            .map_err(|e| at(format!("oracle: {e}")))?;
        compare("infer", &expected, &observed, &oracle, &inputs).map_err(|v| at(v.detail()))?;
    }
    Ok(CaseEnd::Ran { resyncs })
}

/// After a failed refit on a `may-be-partial` engine: refits every weight
/// to fresh known values on a new refitter, so the oracle knows again what
/// is served.
fn resync(
    engine: &dyn crate::Engine,
    oracle: &mut Oracle,
    map: &[usize],
    names: &[String],
    at: &dyn Fn(String) -> String,
) -> Result<(), String> {
    let mut r = engine.refitter().map_err(|e| {
        at(format!(
            "re-sync after the failed refit: create a refitter: {e}"
        ))
    })?;
    let mut set = Vec::new();
    for (i, name) in names.iter().enumerate() {
        let info = &engine.weights()[i];
        let shape: Vec<usize> = info.shape.iter().map(|d| d.unwrap_or(0)).collect();
        let mut v = ints(shape.iter().product(), 9000 + i as u64);
        if oracle.model().needs_positive(map[i]) {
            v.iter_mut().for_each(|x| *x = x.abs() + 1.0);
        }
        r.set_named_weights(name, &typed(info.dtype, shape, &v))
            .map_err(|e| {
                at(format!(
                    "re-sync after the failed refit: stage '{name}': {e}"
                ))
            })?;
        set.push((map[i], v));
    }
    r.refit().map_err(|e| {
        at(format!(
            "re-sync after the failed refit: refit every weight: {e}"
        ))
    })?;
    for (i, v) in set {
        oracle.set(i, v);
    }
    Ok(())
}

fn oracle_index(oracle: &Oracle, name: &str) -> Result<usize, String> {
    oracle
        .model()
        .initializers()
        .iter()
        .position(|i| i.info.name == name)
        .ok_or_else(|| format!("the engine lists a weight '{name}' the model does not have"))
}

/// The scenario: runs `cases` cases (or until the time budget is spent,
/// after at least one). Failing cases shrink, and their seeds are saved to
/// [`CheckConfig::regressions`](super::CheckConfig::regressions), from
/// where the next run with the same file replays them first.
pub fn run(cx: &Cx<'_>, _: &Path) -> Verdict {
    let path = cx.config.scratch.join("model_based.onnx");
    // proptest keeps the path for the runner's lifetime as a &'static str;
    // one small string per run.
    let persistence = cx.config.regressions.as_ref().and_then(|p| {
        let s: &'static str = Box::leak(p.to_string_lossy().into_owned().into_boxed_str());
        p.parent()
            .map(|d| std::fs::create_dir_all(d).is_ok())
            .unwrap_or(false)
            .then(|| Box::new(FileFailurePersistence::Direct(s)) as _)
    });
    let config = Config {
        cases: cx.config.cases,
        max_shrink_iters: 4096,
        max_shrink_time: 10_000,
        failure_persistence: persistence,
        ..Config::default()
    };
    let mut runner = TestRunner::new(config);
    let start = Instant::now();
    let ran = Cell::new(0u32);
    let kinds = [Cell::new(0u32), Cell::new(0u32), Cell::new(0u32)];
    let refused = Cell::new(0u32);
    let resyncs = Cell::new(0usize);
    let reason = std::cell::RefCell::new(String::new());
    let budget = cx.config.seconds;
    let result = runner.run(&arb_case(), |case| {
        if ran.get() + refused.get() > 0 && start.elapsed().as_secs_f64() > budget {
            return Ok(());
        }
        match run_case(cx, &case, &path, false).map_err(TestCaseError::fail)? {
            CaseEnd::Ran { resyncs: r } => {
                ran.set(ran.get() + 1);
                let k = &kinds[case.net.kind()];
                k.set(k.get() + 1);
                resyncs.set(resyncs.get() + r);
            }
            CaseEnd::Unsupported(why) => {
                refused.set(refused.get() + 1);
                reason.replace(why);
            }
        }
        Ok(())
    });
    let replay = cx.config.regressions.as_ref().map_or_else(String::new, |p| {
        let how = cx.config.replay.clone().unwrap_or_else(|| {
            format!(
                "replay it with `refit-harness check --engine {} --scenario model_based --regressions {}`",
                cx.factory.name(),
                p.display()
            )
        });
        format!("; the failing case is saved in {}: {how}", p.display())
    });
    let refused_note = if refused.get() > 0 {
        format!(
            "; {} generated model(s) refused as unsupported (e.g. {})",
            refused.get(),
            reason.borrow()
        )
    } else {
        String::new()
    };
    if result.is_ok() && ran.get() == 0 {
        return fail(
            "run the property test",
            "at least one generated model the engine can build",
            format!("no case ran{refused_note}"),
        );
    }
    match result {
        Ok(()) => Verdict::Pass(format!(
            "{} case(s) of up to 23 operations ({} conv chain(s), {} residual CNN(s), {} attention block(s)){}{}{refused_note}",
            ran.get(),
            kinds[0].get(),
            kinds[1].get(),
            kinds[2].get(),
            if ran.get() + refused.get() < cx.config.cases {
                format!(" (stopped at the {budget} s budget)")
            } else {
                String::new()
            },
            if resyncs.get() > 0 {
                format!(
                    "; {} re-sync(s) after failed refits (may-be-partial)",
                    resyncs.get()
                )
            } else {
                String::new()
            }
        )),
        Err(TestError::Fail(reason, case)) => {
            // The minimal case once more, now explaining its mismatch.
            let reason = match run_case(cx, &case, &path, true) {
                Err(explained) => explained,
                Ok(_) => reason.to_string(),
            };
            fail(
                format!(
                    "minimal failing case: {}; then {} (inferring after every step)",
                    case.model_text(),
                    case.ops_text()
                ),
                "the oracle's output after every step",
                format!("{reason}{replay}"),
            )
        }
        Err(TestError::Abort(reason)) => {
            fail("run the property test", "cases to run", reason.to_string())
        }
    }
}
