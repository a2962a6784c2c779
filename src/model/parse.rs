//! Parsing and validating an ONNX file into a [`Model`]: the protobuf,
//! the initializers, inputs and outputs, and each node's attributes.

use std::collections::HashMap;
use std::path::Path;

use half::f16;
use prost::Message;

use super::conv::{AutoPad, ConvAttrs};
use super::{onnx, Initializer, Model, Node, Op};
use crate::tensor::{DType, Tensor, TensorData, TensorInfo};
use crate::{Error, Result};

fn dtype_of(t: i32) -> Option<DType> {
    match t {
        onnx::FLOAT => Some(DType::F32),
        onnx::FLOAT16 => Some(DType::F16),
        onnx::INT32 => Some(DType::I32),
        _ => None,
    }
}

/// Decodes an initializer's values to f32, from `raw_data` or the typed
/// field its data type uses.
fn initializer_values(
    t: &onnx::TensorProto,
    dtype: DType,
    numel: usize,
) -> Result<Vec<f32>, String> {
    if let Some(raw) = &t.raw_data {
        let expected = numel * dtype.size();
        if raw.len() != expected {
            return Err(format!(
                "raw_data has {} bytes; shape {:?} of {} needs {expected}",
                raw.len(),
                t.dims,
                dtype
            ));
        }
        let data = TensorData::from_le_bytes(dtype, raw).ok_or("raw_data is not whole elements")?;
        return Ok(Tensor {
            shape: vec![numel],
            data,
        }
        .to_f32_vec());
    }
    let values: Vec<f32> = match dtype {
        DType::F32 => t.float_data.clone(),
        DType::F16 => t
            .int32_data
            .iter()
            .map(|&bits| f16::from_bits(bits as u16).to_f32())
            .collect(),
        DType::I32 => t.int32_data.iter().map(|&v| v as f32).collect(),
    };
    if values.len() != numel {
        let field = if dtype == DType::F32 {
            "float_data"
        } else {
            "int32_data"
        };
        return Err(format!(
            "{field} has {} values; shape {:?} needs {numel}",
            values.len(),
            t.dims
        ));
    }
    Ok(values)
}

fn value_info(v: &onnx::ValueInfoProto, what: &str) -> Result<TensorInfo, String> {
    let name = v.name.clone().unwrap_or_default();
    let tt = v
        .r#type
        .as_ref()
        .and_then(|t| t.tensor_type.as_ref())
        .ok_or_else(|| format!("{what} '{name}' is not a tensor"))?;
    let elem = tt.elem_type.unwrap_or(0);
    let dtype = match dtype_of(elem) {
        Some(d @ (DType::F32 | DType::F16)) => d,
        _ => {
            return Err(format!(
            "{what} '{name}' has element type {}; the reference engine supports FLOAT and FLOAT16",
            onnx::data_type_name(elem)
        ))
        }
    };
    let shape = match &tt.shape {
        Some(s) => s
            .dim
            .iter()
            .map(|d| {
                d.dim_value
                    .filter(|&v| v > 0 && v <= MAX_DIM)
                    .map(|v| v as usize)
            })
            .collect(),
        None => Vec::new(),
    };
    Ok(TensorInfo { name, dtype, shape })
}

/// The largest dimension, stride, pad or dilation accepted (2^31 - 1):
/// every product of a few of them fits in 64 bits.
pub const MAX_DIM: i64 = i32::MAX as i64;

fn ints(a: &onnx::AttributeProto, node: &str) -> Result<Vec<usize>, String> {
    a.ints
        .iter()
        .map(|&v| {
            if (0..=MAX_DIM).contains(&v) {
                Ok(v as usize)
            } else {
                Err(format!(
                    "attribute {} of '{node}' has value {v}; expected 0 to {MAX_DIM}",
                    a.name.as_deref().unwrap_or("")
                ))
            }
        })
        .collect()
}

fn conv_attrs(n: &onnx::NodeProto, node: &str) -> Result<ConvAttrs, String> {
    let mut attrs = ConvAttrs::default();
    for a in &n.attribute {
        let name = a.name.as_deref().unwrap_or("");
        if let Some(r) = &a.ref_attr_name {
            return Err(format!("attribute {name} refers to function attribute '{r}'; only plain graphs are supported"));
        }
        match name {
            "group" => {
                let g = a.i.ok_or("attribute group has no int value")?;
                attrs.group = usize::try_from(g).map_err(|_| format!("attribute group is {g}"))?;
            }
            "strides" => attrs.strides = ints(a, node)?,
            "dilations" => attrs.dilations = ints(a, node)?,
            "pads" => attrs.pads = ints(a, node)?,
            "kernel_shape" => attrs.kernel_shape = ints(a, node)?,
            "auto_pad" => {
                let s = String::from_utf8_lossy(a.s.as_deref().unwrap_or_default()).into_owned();
                attrs.auto_pad = AutoPad::parse(&s)
                    .ok_or_else(|| format!("attribute auto_pad is '{s}'; expected NOTSET, VALID, SAME_UPPER or SAME_LOWER"))?;
            }
            other => return Err(format!("unknown attribute '{other}'")),
        }
    }
    Ok(attrs)
}

impl Model {
    /// Reads and parses a model file.
    ///
    /// # Errors
    /// [`Error::Io`] when the file cannot be read; otherwise as
    /// [`Model::from_bytes`].
    pub fn load(path: &Path) -> Result<Self> {
        let bytes = std::fs::read(path).map_err(|error| Error::Io {
            op: "read",
            path: path.to_path_buf(),
            error,
        })?;
        Self::from_bytes(&bytes, path)
    }

    /// Parses a model from its protobuf bytes; `path` names it in errors.
    ///
    /// # Errors
    /// [`Error::MalformedModel`] for bytes that are not an ONNX model,
    /// [`Error::InvalidNode`] for an unsupported op or invalid attributes
    /// (naming the node), [`Error::InvalidGraph`] for a bad initializer,
    /// input or output.
    pub fn from_bytes(bytes: &[u8], path: &Path) -> Result<Self> {
        let malformed = |reason: String| Error::MalformedModel {
            path: path.to_path_buf(),
            reason,
        };
        let graph_err = |reason: String| Error::InvalidGraph {
            path: path.to_path_buf(),
            reason,
        };
        let proto = onnx::ModelProto::decode(bytes).map_err(|e| malformed(e.to_string()))?;
        let graph = proto
            .graph
            .ok_or_else(|| malformed("the model has no graph".into()))?;
        if !graph.sparse_initializer.is_empty() {
            return Err(graph_err("sparse initializers are not supported".into()));
        }

        let initializers = initializers_of(&graph, path)?;
        let init_index: HashMap<String, usize> = initializers
            .iter()
            .enumerate()
            .map(|(i, t)| (t.info.name.clone(), i))
            .collect();

        // Values: graph inputs (other than initializers listed as inputs),
        // then each node's output.
        let mut slot_of: HashMap<String, usize> = HashMap::new();
        let mut slot_dtype: Vec<DType> = Vec::new();
        let mut inputs = Vec::new();
        for v in &graph.input {
            let name = v.name.clone().unwrap_or_default();
            if init_index.contains_key(&name) {
                continue;
            }
            let info = value_info(v, "input").map_err(graph_err)?;
            if info.shape.is_empty() {
                return Err(graph_err(format!("input '{name}' has no shape")));
            }
            slot_of.insert(name, slot_dtype.len());
            slot_dtype.push(info.dtype);
            inputs.push(info);
        }
        if inputs.is_empty() {
            return Err(graph_err("the graph has no inputs".into()));
        }

        let mut nodes = Vec::new();
        for (i, n) in graph.node.iter().enumerate() {
            let op = n.op_type.clone().unwrap_or_default();
            let name = n
                .name
                .clone()
                .filter(|s| !s.is_empty())
                .unwrap_or_else(|| format!("#{i}"));
            let node_err = |reason: String| Error::InvalidNode {
                path: path.to_path_buf(),
                node: name.clone(),
                op: op.clone(),
                reason,
            };
            let domain = n.domain.as_deref().unwrap_or("");
            if !(domain.is_empty() || domain == "ai.onnx") {
                return Err(node_err(format!(
                    "domain '{domain}' is not supported; the reference engine runs Conv and Relu from the default domain"
                )));
            }
            let (op_type, arity): (&'static str, &[usize]) = match op.as_str() {
                "Conv" => ("Conv", &[2, 3]),
                "Relu" => ("Relu", &[1]),
                _ => {
                    return Err(node_err(
                        "unsupported op; the reference engine runs Conv and Relu".into(),
                    ))
                }
            };
            let given: Vec<&str> = n.input.iter().map(String::as_str).collect();
            let given_len = if given.len() == 3 && given[2].is_empty() {
                2
            } else {
                given.len()
            };
            if !arity.contains(&given_len) {
                return Err(node_err(format!(
                    "has {given_len} inputs {given:?}; expected {}",
                    arity
                        .iter()
                        .map(|a| a.to_string())
                        .collect::<Vec<_>>()
                        .join(" or ")
                )));
            }
            if n.output.len() != 1 {
                return Err(node_err(format!(
                    "has {} outputs; expected 1",
                    n.output.len()
                )));
            }
            let x = given[0];
            let input = *slot_of.get(x).ok_or_else(|| {
                if init_index.contains_key(x) {
                    node_err(format!(
                        "input X '{x}' is an initializer; X must be a graph input or a node output"
                    ))
                } else {
                    node_err(format!(
                        "input X '{x}' is produced by no earlier node and is not a graph input"
                    ))
                }
            })?;
            let x_dtype = slot_dtype[input];
            let weight_ref = |role: &str, wname: &str| -> Result<usize> {
                let idx = *init_index.get(wname).ok_or_else(|| {
                    node_err(format!(
                        "input {role} '{wname}' is not an initializer; the reference engine needs constant weights"
                    ))
                })?;
                let found = initializers[idx].info.dtype;
                if found != x_dtype {
                    return Err(node_err(format!(
                        "input {role} '{wname}' is {found} but X is {x_dtype}"
                    )));
                }
                Ok(idx)
            };
            let op = match op_type {
                "Conv" => {
                    let attrs = conv_attrs(n, &name).map_err(&node_err)?;
                    let weight = weight_ref("W", given[1])?;
                    let bias = if given_len == 3 {
                        Some(weight_ref("B", given[2])?)
                    } else {
                        None
                    };
                    let wshape = &initializers[weight].shape;
                    if !(3..=5).contains(&wshape.len()) {
                        return Err(node_err(format!(
                            "weight '{}' has shape {wshape:?}; expected rank 3 to 5",
                            given[1]
                        )));
                    }
                    if let Some(b) = bias {
                        let bshape = &initializers[b].shape;
                        if bshape != &[wshape[0]] {
                            return Err(node_err(format!(
                                "bias '{}' has shape {bshape:?}; expected [{}] (the weight's output channels)",
                                given[2], wshape[0]
                            )));
                        }
                    }
                    Op::Conv {
                        attrs,
                        weight,
                        bias,
                    }
                }
                _ => {
                    if !n.attribute.is_empty() {
                        return Err(node_err("Relu takes no attributes".into()));
                    }
                    Op::Relu
                }
            };
            let out_name = n.output[0].clone();
            if slot_of.contains_key(&out_name) || init_index.contains_key(&out_name) {
                return Err(node_err(format!("output '{out_name}' is defined twice")));
            }
            let output = slot_dtype.len();
            slot_of.insert(out_name, output);
            slot_dtype.push(x_dtype);
            nodes.push(Node {
                name,
                op_type,
                op,
                input,
                output,
            });
        }

        let mut outputs = Vec::new();
        let mut output_slots = Vec::new();
        for v in &graph.output {
            let name = v.name.clone().unwrap_or_default();
            let slot = *slot_of
                .get(&name)
                .ok_or_else(|| graph_err(format!("output '{name}' is produced by no node")))?;
            let mut info = value_info(v, "output").map_err(graph_err)?;
            info.dtype = slot_dtype[slot];
            outputs.push(info);
            output_slots.push(slot);
        }
        if outputs.is_empty() {
            return Err(graph_err("the graph has no outputs".into()));
        }
        let model = Model {
            path: path.to_path_buf(),
            inputs,
            outputs,
            initializers,
            nodes,
            output_slots,
            slots: slot_dtype.len(),
        };
        // With fully static inputs, every node is checked now rather than at
        // the first inference.
        let statics: Option<Vec<Vec<usize>>> =
            model.inputs.iter().map(TensorInfo::static_shape).collect();
        if let Some(shapes) = statics {
            let plan = model.plan(&shapes)?;
            let mut outputs = model.outputs.clone();
            for (info, &slot) in outputs.iter_mut().zip(&model.output_slots) {
                info.shape = plan.slot_shapes[slot].iter().map(|&d| Some(d)).collect();
            }
            return Ok(Model { outputs, ..model });
        }
        Ok(model)
    }
}

/// The initializers of a model file (name, dtype, shape, values as f32),
/// whatever ops its graph uses: what an engine that runs the model
/// elsewhere (a plugin over another runtime) lists as its weights.
///
/// # Errors
/// [`Error::Io`], [`Error::MalformedModel`], or [`Error::InvalidGraph`] for
/// an initializer the harness cannot read (external data, an element type
/// other than FLOAT, FLOAT16, INT32).
pub fn read_initializers(path: &Path) -> Result<Vec<Initializer>> {
    let bytes = std::fs::read(path).map_err(|error| Error::Io {
        op: "read",
        path: path.to_path_buf(),
        error,
    })?;
    let proto = onnx::ModelProto::decode(&bytes[..]).map_err(|e| Error::MalformedModel {
        path: path.to_path_buf(),
        reason: e.to_string(),
    })?;
    let graph = proto.graph.ok_or_else(|| Error::MalformedModel {
        path: path.to_path_buf(),
        reason: "the model has no graph".into(),
    })?;
    initializers_of(&graph, path)
}

fn initializers_of(graph: &onnx::GraphProto, path: &Path) -> Result<Vec<Initializer>> {
    let graph_err = |reason: String| Error::InvalidGraph {
        path: path.to_path_buf(),
        reason,
    };
    let mut initializers = Vec::new();
    let mut init_index: HashMap<String, usize> = HashMap::new();
    for t in &graph.initializer {
        let name = t.name.clone().unwrap_or_default();
        if name.is_empty() {
            return Err(graph_err("an initializer has no name".into()));
        }
        let bad = |reason: String| graph_err(format!("initializer '{name}': {reason}"));
        if t.data_location == Some(1) || !t.external_data.is_empty() {
            return Err(bad(
                "its data is stored externally; re-export with the weights inside the model file"
                    .into(),
            ));
        }
        let elem = t.data_type.unwrap_or(0);
        let dtype = dtype_of(elem).ok_or_else(|| {
            bad(format!(
                "element type {} is not supported (FLOAT, FLOAT16, INT32)",
                onnx::data_type_name(elem)
            ))
        })?;
        let shape: Vec<usize> = t
            .dims
            .iter()
            .map(|&d| {
                usize::try_from(d).map_err(|_| bad(format!("negative dimension in {:?}", t.dims)))
            })
            .collect::<Result<_>>()?;
        let numel = shape
            .iter()
            .try_fold(1usize, |a, &d| a.checked_mul(d))
            .ok_or_else(|| bad(format!("shape {shape:?} overflows")))?;
        let values = initializer_values(t, dtype, numel).map_err(bad)?;
        if init_index
            .insert(name.clone(), initializers.len())
            .is_some()
        {
            return Err(bad("the name is used twice".into()));
        }
        initializers.push(Initializer {
            info: TensorInfo {
                name,
                dtype,
                shape: shape.iter().map(|&d| Some(d)).collect(),
            },
            shape,
            values,
        });
    }
    Ok(initializers)
}
