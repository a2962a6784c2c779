//! The generated models: conv chains of every conv attribute, residual
//! CNNs and attention blocks ([`Net`]), their ONNX graphs, and the
//! strategies that draw them.

use proptest::prelude::*;

use super::super::subject::ints;
use crate::model::build::{Conv2d, ConvChain, ConvLayer, Graph, Integers, Value, ZeroBias};
use crate::model::conv::{AutoPad, ConvAttrs};

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
    pub(super) fn kind(&self) -> usize {
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
    pub(super) fn graph(&self) -> (Graph, String) {
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

pub(super) fn arb_net() -> impl Strategy<Value = Net> {
    prop_oneof![
        2 => arb_chain().prop_map(Net::Conv),
        2 => arb_cnn().prop_map(Net::Cnn),
        1 => arb_attention().prop_map(Net::Attention),
    ]
}
