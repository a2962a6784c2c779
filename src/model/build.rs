//! Writes ONNX models of conv layers: the seed model, the fixtures, and the
//! arbitrary shapes the property tests generate.

use prost::Message;

use super::conv::{AutoPad, ConvAttrs};
use super::onnx;

/// One `Conv` layer, optionally followed by `Relu`.
#[derive(Clone, Debug, PartialEq)]
pub struct ConvLayer {
    /// Initializer name of the weight (`conv.weight`).
    pub weight_name: String,
    /// Initializer name of the bias, if the layer has one.
    pub bias_name: Option<String>,
    /// Output channels.
    pub c_out: usize,
    /// Kernel spatial shape (one entry per spatial dimension).
    pub kernel: Vec<usize>,
    /// The attributes; the ones left empty are not written.
    pub attrs: ConvAttrs,
    /// Weight values, shape `[c_out, c_in / group, kernel...]`.
    pub weight: Vec<f32>,
    /// Bias values, `c_out` of them, when `bias_name` is set.
    pub bias: Vec<f32>,
    /// Whether a `Relu` follows.
    pub relu: bool,
}

/// A chain of conv layers on one f32 input.
#[derive(Clone, Debug, PartialEq)]
pub struct ConvChain {
    /// Graph input name.
    pub input_name: String,
    /// Input shape (N, C, spatial...).
    pub input_shape: Vec<usize>,
    /// Graph output name.
    pub output_name: String,
    /// The layers, in order.
    pub layers: Vec<ConvLayer>,
}

fn int_attr(name: &str, v: i64) -> onnx::AttributeProto {
    onnx::AttributeProto {
        name: Some(name.into()),
        i: Some(v),
        r#type: Some(onnx::ATTR_INT),
        ..Default::default()
    }
}

fn ints_attr(name: &str, v: &[usize]) -> onnx::AttributeProto {
    onnx::AttributeProto {
        name: Some(name.into()),
        ints: v.iter().map(|&x| x as i64).collect(),
        r#type: Some(onnx::ATTR_INTS),
        ..Default::default()
    }
}

fn f32_initializer(name: &str, dims: &[usize], values: &[f32]) -> onnx::TensorProto {
    onnx::TensorProto {
        dims: dims.iter().map(|&d| d as i64).collect(),
        data_type: Some(onnx::FLOAT),
        name: Some(name.into()),
        raw_data: Some(values.iter().flat_map(|v| v.to_le_bytes()).collect()),
        ..Default::default()
    }
}

fn value_info(name: &str, shape: &[usize]) -> onnx::ValueInfoProto {
    onnx::ValueInfoProto {
        name: Some(name.into()),
        r#type: Some(onnx::TypeProto {
            tensor_type: Some(onnx::TypeProtoTensor {
                elem_type: Some(onnx::FLOAT),
                shape: Some(onnx::TensorShapeProto {
                    dim: shape
                        .iter()
                        .map(|&d| onnx::Dimension {
                            dim_value: Some(d as i64),
                            dim_param: None,
                        })
                        .collect(),
                }),
            }),
        }),
    }
}

/// A model of `graph`: opset 17, IR version 8, produced by refit-harness.
fn model_proto(graph: onnx::GraphProto) -> onnx::ModelProto {
    onnx::ModelProto {
        ir_version: Some(8),
        producer_name: Some("refit-harness".into()),
        producer_version: None,
        graph: Some(graph),
        opset_import: vec![onnx::OperatorSetIdProto {
            domain: Some(String::new()),
            version: Some(17),
        }],
    }
}

impl ConvChain {
    /// The model as an ONNX protobuf message (opset 17, IR version 8).
    pub fn to_proto(&self) -> onnx::ModelProto {
        let mut nodes = Vec::new();
        let mut inits = Vec::new();
        let mut current = self.input_name.clone();
        let mut c_in = self.input_shape.get(1).copied().unwrap_or(1);
        let last = self.layers.len().saturating_sub(1);
        for (i, l) in self.layers.iter().enumerate() {
            let group = l.attrs.group.max(1);
            let mut wdims = vec![l.c_out, c_in / group];
            wdims.extend(&l.kernel);
            inits.push(f32_initializer(&l.weight_name, &wdims, &l.weight));
            let mut inputs = vec![current.clone(), l.weight_name.clone()];
            if let Some(b) = &l.bias_name {
                inits.push(f32_initializer(b, &[l.c_out], &l.bias));
                inputs.push(b.clone());
            }
            let conv_out = if i == last && !l.relu {
                self.output_name.clone()
            } else {
                format!("conv{i}_out")
            };
            let mut attribute = Vec::new();
            if l.attrs.auto_pad != AutoPad::NotSet {
                attribute.push(onnx::AttributeProto {
                    name: Some("auto_pad".into()),
                    s: Some(l.attrs.auto_pad.as_str().as_bytes().to_vec()),
                    r#type: Some(onnx::ATTR_STRING),
                    ..Default::default()
                });
            }
            for (name, v) in [
                ("dilations", &l.attrs.dilations),
                ("kernel_shape", &l.attrs.kernel_shape),
                ("pads", &l.attrs.pads),
                ("strides", &l.attrs.strides),
            ] {
                if !v.is_empty() {
                    attribute.push(ints_attr(name, v));
                }
            }
            if l.attrs.group > 1 {
                attribute.push(int_attr("group", l.attrs.group as i64));
            }
            nodes.push(onnx::NodeProto {
                input: inputs,
                output: vec![conv_out.clone()],
                name: Some(format!("conv{i}")),
                op_type: Some("Conv".into()),
                attribute,
                domain: None,
            });
            current = conv_out;
            if l.relu {
                let relu_out = if i == last {
                    self.output_name.clone()
                } else {
                    format!("relu{i}_out")
                };
                nodes.push(onnx::NodeProto {
                    input: vec![current.clone()],
                    output: vec![relu_out.clone()],
                    name: Some(format!("relu{i}")),
                    op_type: Some("Relu".into()),
                    attribute: Vec::new(),
                    domain: None,
                });
                current = relu_out;
            }
            c_in = l.c_out;
        }
        let output_shape = self.output_shape();
        model_proto(onnx::GraphProto {
            node: nodes,
            name: Some("conv_chain".into()),
            initializer: inits,
            input: vec![value_info(&self.input_name, &self.input_shape)],
            output: vec![value_info(&self.output_name, &output_shape)],
            sparse_initializer: Vec::new(),
        })
    }

    /// The model's protobuf bytes.
    pub fn to_bytes(&self) -> Vec<u8> {
        self.to_proto().encode_to_vec()
    }

    /// The output shape, computed layer by layer; an empty shape when a
    /// layer does not fit its input (the model then fails to load with the
    /// node named).
    pub fn output_shape(&self) -> Vec<usize> {
        let mut shape = self.input_shape.clone();
        for l in &self.layers {
            let mut w = vec![
                l.c_out,
                shape.get(1).copied().unwrap_or(0) / l.attrs.group.max(1),
            ];
            w.extend(&l.kernel);
            match super::conv::ConvGeometry::resolve(&l.attrs, &shape, &w) {
                Ok(g) => shape = g.output_shape,
                Err(_) => return Vec::new(),
            }
        }
        shape
    }
}

/// The seed's model: one conv, input `x` 1x1x3x3, a 3x3 kernel named
/// `weight`, stride 1, no bias, all-zero weights; output `y` 1x1x1x1.
pub fn seed_model() -> ConvChain {
    ConvChain {
        input_name: "x".into(),
        input_shape: vec![1, 1, 3, 3],
        output_name: "y".into(),
        layers: vec![ConvLayer {
            weight_name: "weight".into(),
            bias_name: None,
            c_out: 1,
            kernel: vec![3, 3],
            attrs: ConvAttrs {
                group: 1,
                kernel_shape: vec![3, 3],
                strides: vec![1, 1],
                pads: vec![0, 0, 0, 0],
                ..ConvAttrs::default()
            },
            weight: vec![0.0; 9],
            bias: Vec::new(),
            relu: false,
        }],
    }
}

/// Where a [`Graph`]'s weights get their values: called once per weight,
/// in the order the graph declares them.
pub trait Init {
    /// Values for weight `name` of `shape`, playing `role`.
    fn values(&mut self, name: &str, role: Role, shape: &[usize]) -> Vec<f32>;
}

/// What a weight is for, so an [`Init`] can give it sensible values.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Role {
    /// A conv or Gemm/MatMul weight; `fan_in` inputs feed each output.
    Weight {
        /// Inputs per output.
        fan_in: usize,
    },
    /// A conv or Gemm bias.
    Bias,
    /// BatchNormalization `scale` (gamma).
    Scale,
    /// BatchNormalization `B` (beta).
    Shift,
    /// BatchNormalization running mean.
    Mean,
    /// BatchNormalization running variance: must stay positive.
    Var,
}

/// Small integers (-3..=3; a variance 1..=4, a BatchNorm scale 1..=3), so a
/// conv's and a Gemm's results are exact in f32. Seeded with `.0`.
#[derive(Clone, Debug)]
pub(crate) struct Integers(pub u64);

impl Init for Integers {
    fn values(&mut self, _: &str, role: Role, shape: &[usize]) -> Vec<f32> {
        self.0 = self.0.wrapping_add(1);
        let v = ints(shape.iter().product(), self.0);
        match role {
            Role::Var => v.into_iter().map(|x| x.abs() + 1.0).collect(),
            Role::Scale => v.into_iter().map(|x| x.abs().min(2.0) + 1.0).collect(),
            _ => v,
        }
    }
}

/// Another [`Init`] with every bias all zero, as many initializations
/// leave them (and an engine may then drop them).
#[derive(Clone, Debug)]
pub(crate) struct ZeroBias<I>(pub I);

impl<I: Init> Init for ZeroBias<I> {
    fn values(&mut self, name: &str, role: Role, shape: &[usize]) -> Vec<f32> {
        let v = self.0.values(name, role, shape);
        if role == Role::Bias {
            vec![0.0; v.len()]
        } else {
            v
        }
    }
}

/// Random float weights as a freshly initialized network has them:
/// weights uniform in +-sqrt(3 / fan_in) (unit output variance), biases
/// and BatchNorm shifts and means small, scales and variances near 1.
/// Deterministic per `seed`.
#[derive(Clone, Debug)]
pub struct Random {
    state: u64,
}

impl Random {
    /// A generator seeded with `seed`.
    pub fn new(seed: u64) -> Self {
        Random {
            state: seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) ^ 0xD1B5_4A32_D192_ED03,
        }
    }

    /// Uniform in [-1, 1).
    fn next(&mut self) -> f32 {
        self.state = self
            .state
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        ((self.state >> 40) as f32 / (1u64 << 24) as f32) * 2.0 - 1.0
    }
}

impl Init for Random {
    fn values(&mut self, _: &str, role: Role, shape: &[usize]) -> Vec<f32> {
        let n: usize = shape.iter().product();
        let (centre, spread) = match role {
            Role::Weight { fan_in } => (0.0, (3.0 / fan_in.max(1) as f32).sqrt()),
            Role::Bias | Role::Shift | Role::Mean => (0.0, 0.1),
            Role::Scale | Role::Var => (1.0, 0.25),
        };
        (0..n).map(|_| centre + spread * self.next()).collect()
    }
}

/// A value of a [`Graph`] under construction: its name and shape.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Value {
    /// The value's name in the graph.
    pub name: String,
    /// Its shape, every dimension known.
    pub shape: Vec<usize>,
}

/// A `Conv` as [`Graph::conv`] writes it: square kernel, the same stride
/// and padding on both spatial axes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Conv2d {
    /// Output channels.
    pub c_out: usize,
    /// Kernel size.
    pub kernel: usize,
    /// Stride.
    pub stride: usize,
    /// Padding on every side.
    pub pad: usize,
    /// Groups.
    pub group: usize,
    /// Whether it has a bias.
    pub bias: bool,
}

impl Conv2d {
    /// A `kernel` x `kernel` conv to `c_out` channels, stride 1, padding
    /// `kernel / 2` (same size out), one group, no bias.
    pub fn new(c_out: usize, kernel: usize) -> Self {
        Conv2d {
            c_out,
            kernel,
            stride: 1,
            pad: kernel / 2,
            group: 1,
            bias: false,
        }
    }
}

/// Writes an ONNX graph of the real-network ops node by node, tracking
/// every value's shape: residual CNNs (Conv, BatchNormalization, Relu,
/// Clip, Add, pooling, a Gemm head) and attention (MatMul, Transpose,
/// Softmax). Weights are f32 initializers whose values come from an
/// [`Init`]; Clip bounds and scales are scalar constants.
pub struct Graph {
    nodes: Vec<onnx::NodeProto>,
    inits: Vec<onnx::TensorProto>,
    inputs: Vec<onnx::ValueInfoProto>,
    outputs: Vec<onnx::ValueInfoProto>,
    init: Box<dyn Init>,
    weights: Vec<String>,
    count: usize,
}

impl std::fmt::Debug for Graph {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Graph")
            .field("nodes", &self.nodes.len())
            .field("weights", &self.weights)
            .finish()
    }
}

impl Graph {
    /// An empty graph whose weights take their values from `init`.
    pub fn new(init: impl Init + 'static) -> Self {
        Graph {
            nodes: Vec::new(),
            inits: Vec::new(),
            inputs: Vec::new(),
            outputs: Vec::new(),
            init: Box::new(init),
            weights: Vec::new(),
            count: 0,
        }
    }

    /// Declares an f32 graph input.
    pub fn input(&mut self, name: &str, shape: &[usize]) -> Value {
        self.inputs.push(value_info(name, shape));
        Value {
            name: name.into(),
            shape: shape.to_vec(),
        }
    }

    /// The refittable weights' names, in the order declared.
    pub fn weight_names(&self) -> &[String] {
        &self.weights
    }

    /// The values of weight `name`, if the graph has it.
    pub fn values(&self, name: &str) -> Option<Vec<f32>> {
        self.inits
            .iter()
            .find(|t| t.name.as_deref() == Some(name))?
            .f32_values()
    }

    /// The number of weight values.
    pub fn parameters(&self) -> usize {
        self.inits
            .iter()
            .filter(|t| t.data_type == Some(onnx::FLOAT) && !t.dims.is_empty())
            .map(|t| t.dims.iter().product::<i64>() as usize)
            .sum()
    }

    /// Declares weight `name` of `shape`, valued by the graph's [`Init`].
    pub fn weight(&mut self, name: &str, role: Role, shape: &[usize]) -> Value {
        let values = self.init.values(name, role, shape);
        self.inits.push(f32_initializer(name, shape, &values));
        self.weights.push(name.into());
        Value {
            name: name.into(),
            shape: shape.to_vec(),
        }
    }

    /// A scalar f32 constant (not a refittable weight).
    fn scalar(&mut self, v: f32) -> String {
        self.count += 1;
        let name = format!("const{}", self.count);
        self.inits.push(f32_initializer(&name, &[], &[v]));
        name
    }

    /// Appends a node; its output is named after the node.
    fn node(
        &mut self,
        op: &str,
        name: &str,
        inputs: &[&str],
        attribute: Vec<onnx::AttributeProto>,
        shape: Vec<usize>,
    ) -> Value {
        self.count += 1;
        let node_name = if name.is_empty() {
            format!("{}_{}", op.to_lowercase(), self.count)
        } else {
            name.to_string()
        };
        let out = format!("{node_name}.out");
        self.nodes.push(onnx::NodeProto {
            input: inputs.iter().map(|s| s.to_string()).collect(),
            output: vec![out.clone()],
            name: Some(node_name),
            op_type: Some(op.into()),
            attribute,
            domain: None,
        });
        Value { name: out, shape }
    }

    /// `Conv` named `name` with weight `<name>.weight` (and `<name>.bias`).
    pub fn conv(&mut self, x: &Value, name: &str, c: Conv2d) -> Value {
        let c_in = x.shape[1];
        let group = c.group.max(1);
        let wshape = [c.c_out, c_in / group, c.kernel, c.kernel];
        let fan_in = wshape[1..].iter().product();
        let w = self.weight(&format!("{name}.weight"), Role::Weight { fan_in }, &wshape);
        let mut inputs = vec![x.name.clone(), w.name];
        if c.bias {
            inputs.push(
                self.weight(&format!("{name}.bias"), Role::Bias, &[c.c_out])
                    .name,
            );
        }
        let attrs = ConvAttrs {
            group,
            kernel_shape: vec![c.kernel; 2],
            strides: vec![c.stride; 2],
            pads: vec![c.pad; 4],
            ..ConvAttrs::default()
        };
        let out = super::conv::ConvGeometry::resolve(&attrs, &x.shape, &wshape)
            .map(|g| g.output_shape)
            .unwrap_or_default();
        let mut attribute = vec![
            ints_attr("kernel_shape", &attrs.kernel_shape),
            ints_attr("strides", &attrs.strides),
            ints_attr("pads", &attrs.pads),
        ];
        if group > 1 {
            attribute.push(int_attr("group", group as i64));
        }
        let refs: Vec<&str> = inputs.iter().map(String::as_str).collect();
        self.node("Conv", name, &refs, attribute, out)
    }

    /// `BatchNormalization` named `name`, with `<name>.weight`, `.bias`,
    /// `.running_mean` and `.running_var` (PyTorch's names).
    pub(crate) fn batch_norm(&mut self, x: &Value, name: &str) -> Value {
        let c = [x.shape[1]];
        let mut inputs = vec![x.name.clone()];
        for (suffix, role) in [
            ("weight", Role::Scale),
            ("bias", Role::Shift),
            ("running_mean", Role::Mean),
            ("running_var", Role::Var),
        ] {
            inputs.push(self.weight(&format!("{name}.{suffix}"), role, &c).name);
        }
        let refs: Vec<&str> = inputs.iter().map(String::as_str).collect();
        self.node(
            "BatchNormalization",
            name,
            &refs,
            Vec::new(),
            x.shape.clone(),
        )
    }

    /// `Relu`.
    pub fn relu(&mut self, x: &Value) -> Value {
        self.node("Relu", "", &[&x.name], Vec::new(), x.shape.clone())
    }

    /// `Clip(x, lo, hi)`, the bounds scalar constants (ReLU6: 0, 6).
    pub(crate) fn clip(&mut self, x: &Value, lo: f32, hi: f32) -> Value {
        let (lo, hi) = (self.scalar(lo), self.scalar(hi));
        self.node(
            "Clip",
            "",
            &[&x.name, &lo, &hi],
            Vec::new(),
            x.shape.clone(),
        )
    }

    /// `Add(a, b)`, same shapes.
    pub(crate) fn add(&mut self, a: &Value, b: &Value) -> Value {
        self.node("Add", "", &[&a.name, &b.name], Vec::new(), a.shape.clone())
    }

    /// `Mul(x, s)` by a scalar constant.
    pub fn scale(&mut self, x: &Value, s: f32) -> Value {
        let s = self.scalar(s);
        self.node("Mul", "", &[&x.name, &s], Vec::new(), x.shape.clone())
    }

    /// `MaxPool` (or `AveragePool`), square `kernel`, `stride`, `pad` on
    /// every side.
    pub(crate) fn pool(
        &mut self,
        x: &Value,
        max: bool,
        kernel: usize,
        stride: usize,
        pad: usize,
    ) -> Value {
        let mut shape = x.shape.clone();
        for d in &mut shape[2..] {
            *d = (*d + 2 * pad).saturating_sub(kernel) / stride.max(1) + 1;
        }
        let attribute = vec![
            ints_attr("kernel_shape", &[kernel; 2]),
            ints_attr("strides", &[stride; 2]),
            ints_attr("pads", &[pad; 4]),
        ];
        let op = if max { "MaxPool" } else { "AveragePool" };
        self.node(op, "", &[&x.name], attribute, shape)
    }

    /// `GlobalAveragePool`.
    pub(crate) fn global_average_pool(&mut self, x: &Value) -> Value {
        let mut shape = x.shape.clone();
        shape[2..].iter_mut().for_each(|d| *d = 1);
        self.node("GlobalAveragePool", "", &[&x.name], Vec::new(), shape)
    }

    /// `Flatten` (axis 1).
    pub fn flatten(&mut self, x: &Value) -> Value {
        let shape = vec![x.shape[0], x.shape[1..].iter().product()];
        self.node("Flatten", "", &[&x.name], Vec::new(), shape)
    }

    /// `Gemm` named `name` from `[n, k]` to `[n, out]`: weight
    /// `<name>.weight` stored `[out, k]` with `transB = 1` (PyTorch's
    /// Linear) or `[k, out]` without; bias `<name>.bias` if asked.
    pub(crate) fn gemm(
        &mut self,
        x: &Value,
        name: &str,
        out: usize,
        trans_b: bool,
        bias: bool,
    ) -> Value {
        let k = x.shape[1];
        let wshape = if trans_b { [out, k] } else { [k, out] };
        let w = self.weight(
            &format!("{name}.weight"),
            Role::Weight { fan_in: k },
            &wshape,
        );
        let mut inputs = vec![x.name.clone(), w.name];
        if bias {
            inputs.push(
                self.weight(&format!("{name}.bias"), Role::Bias, &[out])
                    .name,
            );
        }
        let attribute = if trans_b {
            vec![int_attr("transB", 1)]
        } else {
            Vec::new()
        };
        let refs: Vec<&str> = inputs.iter().map(String::as_str).collect();
        self.node("Gemm", name, &refs, attribute, vec![x.shape[0], out])
    }

    /// `MatMul(x, W)` with weight `<name>.weight` of `[k, out]`: a
    /// projection of the last axis.
    pub fn project(&mut self, x: &Value, name: &str, out: usize) -> Value {
        let k = *x.shape.last().unwrap_or(&1);
        let w = self.weight(
            &format!("{name}.weight"),
            Role::Weight { fan_in: k },
            &[k, out],
        );
        let mut shape = x.shape.clone();
        if let Some(l) = shape.last_mut() {
            *l = out;
        }
        self.node("MatMul", name, &[&x.name, &w.name], Vec::new(), shape)
    }

    /// `MatMul(a, b)` of two values (batched over leading axes).
    pub(crate) fn matmul(&mut self, a: &Value, b: &Value) -> Value {
        let mut shape = a.shape.clone();
        let r = shape.len();
        shape[r - 1] = b.shape[b.shape.len() - 1];
        self.node("MatMul", "", &[&a.name, &b.name], Vec::new(), shape)
    }

    /// `Transpose` swapping the last two axes.
    pub(crate) fn transpose_last(&mut self, x: &Value) -> Value {
        let r = x.shape.len();
        let mut perm: Vec<usize> = (0..r).collect();
        perm.swap(r - 2, r - 1);
        let shape = perm.iter().map(|&p| x.shape[p]).collect();
        self.node(
            "Transpose",
            "",
            &[&x.name],
            vec![ints_attr("perm", &perm)],
            shape,
        )
    }

    /// `Softmax` over the last axis.
    pub(crate) fn softmax(&mut self, x: &Value) -> Value {
        self.node(
            "Softmax",
            "",
            &[&x.name],
            vec![int_attr("axis", -1)],
            x.shape.clone(),
        )
    }

    /// Makes `outputs` the graph's outputs, each renamed to its given
    /// name.
    pub(crate) fn set_outputs(&mut self, outputs: &[(&str, &Value)]) {
        self.outputs.clear();
        for (name, v) in outputs {
            for n in &mut self.nodes {
                for o in n.output.iter_mut().chain(n.input.iter_mut()) {
                    if *o == v.name {
                        *o = name.to_string();
                    }
                }
            }
            self.outputs.push(value_info(name, &v.shape));
        }
    }

    /// The model as an ONNX protobuf message (opset 17, IR version 8).
    pub fn to_proto(&self) -> onnx::ModelProto {
        model_proto(onnx::GraphProto {
            node: self.nodes.clone(),
            name: Some("graph".into()),
            initializer: self.inits.clone(),
            input: self.inputs.clone(),
            output: self.outputs.clone(),
            sparse_initializer: Vec::new(),
        })
    }

    /// The model's protobuf bytes.
    pub fn to_bytes(&self) -> Vec<u8> {
        self.to_proto().encode_to_vec()
    }
}

/// A ResNet basic block: conv 3x3 - BN - Relu - conv 3x3 - BN, plus the
/// input (through a 1x1 conv and BN when the shape changes), then Relu.
pub(crate) fn basic_block(
    g: &mut Graph,
    x: &Value,
    name: &str,
    c_out: usize,
    stride: usize,
) -> Value {
    let c1 = Conv2d {
        stride,
        ..Conv2d::new(c_out, 3)
    };
    let y = g.conv(x, &format!("{name}.conv1"), c1);
    let y = g.batch_norm(&y, &format!("{name}.bn1"));
    let y = g.relu(&y);
    let y = g.conv(&y, &format!("{name}.conv2"), Conv2d::new(c_out, 3));
    let y = g.batch_norm(&y, &format!("{name}.bn2"));
    let skip = if stride != 1 || x.shape[1] != c_out {
        let d = Conv2d {
            stride,
            ..Conv2d::new(c_out, 1)
        };
        let s = g.conv(x, &format!("{name}.downsample.0"), d);
        g.batch_norm(&s, &format!("{name}.downsample.1"))
    } else {
        x.clone()
    };
    let y = g.add(&y, &skip);
    g.relu(&y)
}

/// A residual network shaped like torchvision's: a 7x7 stride-2 stem with
/// BN, Relu and a 3x3 stride-2 max pool, then `blocks[i]` basic blocks of
/// `widths[i]` channels per stage (stride 2 from the second stage on),
/// global average pooling and a `classes`-way Linear head (Gemm,
/// `transB = 1`, with bias). Input `input`, 1x3x`size`x`size`; output
/// `logits`. PyTorch's weight names (`layer1.0.conv1.weight`,
/// `fc.bias`).
pub fn resnet(
    init: impl Init + 'static,
    size: usize,
    widths: &[usize],
    blocks: &[usize],
    classes: usize,
) -> (Graph, Value) {
    let mut g = Graph::new(init);
    let x = g.input("input", &[1, 3, size, size]);
    let stem = Conv2d {
        stride: 2,
        ..Conv2d::new(widths[0], 7)
    };
    let y = g.conv(&x, "conv1", stem);
    let y = g.batch_norm(&y, "bn1");
    let y = g.relu(&y);
    let mut y = g.pool(&y, true, 3, 2, 1);
    for (stage, (&w, &n)) in widths.iter().zip(blocks).enumerate() {
        for b in 0..n {
            let stride = if stage > 0 && b == 0 { 2 } else { 1 };
            y = basic_block(&mut g, &y, &format!("layer{}.{b}", stage + 1), w, stride);
        }
    }
    let y = g.global_average_pool(&y);
    let y = g.flatten(&y);
    let y = g.gemm(&y, "fc", classes, true, true);
    (g, y)
}

/// ResNet-18 with random weights ([`Random`]) on a 1x3x`size`x`size`
/// input (224 in torchvision; any size from 32 up runs): 11.7 M
/// parameters in 102 weight tensors (62 of them trained parameters, 40
/// BatchNorm running statistics), 44.6 MiB of f32.
pub fn resnet18(size: usize, seed: u64) -> Graph {
    let (mut g, y) = resnet(
        Random::new(seed),
        size,
        &[64, 128, 256, 512],
        &[2, 2, 2, 2],
        1000,
    );
    g.set_outputs(&[("logits", &y)]);
    g
}

/// Deterministic small integers in -3..=3, different per `salt`: exact in
/// f32 through any conv the fixtures hold.
pub fn ints(len: usize, salt: u64) -> Vec<f32> {
    let mut s = salt
        .wrapping_mul(0x9E37_79B9_7F4A_7C15)
        .wrapping_add(0x6A09_E667_F3BC_C909);
    (0..len)
        .map(|_| {
            s = s
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            ((s >> 33) % 7) as f32 - 3.0
        })
        .collect()
}
