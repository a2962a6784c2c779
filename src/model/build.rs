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
        onnx::ModelProto {
            ir_version: Some(8),
            producer_name: Some("refit-harness".into()),
            producer_version: None,
            graph: Some(onnx::GraphProto {
                node: nodes,
                name: Some("conv_chain".into()),
                initializer: inits,
                input: vec![value_info(&self.input_name, &self.input_shape)],
                output: vec![value_info(&self.output_name, &output_shape)],
                sparse_initializer: Vec::new(),
            }),
            opset_import: vec![onnx::OperatorSetIdProto {
                domain: Some(String::new()),
                version: Some(17),
            }],
        }
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
