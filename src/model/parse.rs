//! Parsing and validating an ONNX file into a [`Model`]: the protobuf,
//! the initializers, inputs and outputs, and each node's attributes.

use std::collections::HashMap;
use std::path::Path;

use half::f16;
use prost::Message;

use super::conv::{AutoPad, ConvAttrs};
use super::ops::{Op, PoolAttrs};
use super::{onnx, Constant, Initializer, Model, Node, Src};
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
pub(crate) const MAX_DIM: i64 = i32::MAX as i64;

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
        Self::load_with(path, &[])
    }

    /// [`Model::load`], with the scalar float initializers named in
    /// `scalar_weights` refittable weights too (a model with a scalar
    /// parameter; by default scalars are constants). A name the model does
    /// not have is passed over: one list serves every model of a run.
    ///
    /// # Errors
    /// As [`Model::load`]; [`Error::InvalidGraph`] for a name that is not a
    /// scalar float initializer.
    pub fn load_with(path: &Path, scalar_weights: &[String]) -> Result<Self> {
        let bytes = std::fs::read(path).map_err(|error| Error::Io {
            op: "read",
            path: path.to_path_buf(),
            error,
        })?;
        Self::from_bytes_with(&bytes, path, scalar_weights)
    }

    /// Parses a model from its protobuf bytes; `path` names it in errors.
    ///
    /// # Errors
    /// [`Error::MalformedModel`] for bytes that are not an ONNX model,
    /// [`Error::InvalidNode`] for an unsupported op or invalid attributes
    /// (naming the node), [`Error::InvalidGraph`] for a bad initializer,
    /// input or output.
    pub fn from_bytes(bytes: &[u8], path: &Path) -> Result<Self> {
        Self::from_bytes_with(bytes, path, &[])
    }

    /// [`Model::from_bytes`] with scalar weights, as [`Model::load_with`].
    ///
    /// # Errors
    /// As [`Model::from_bytes`] and [`Model::load_with`].
    pub(crate) fn from_bytes_with(
        bytes: &[u8],
        path: &Path,
        scalar_weights: &[String],
    ) -> Result<Self> {
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

        let opset = proto
            .opset_import
            .iter()
            .find(|o| {
                o.domain.as_deref().unwrap_or("").is_empty()
                    || o.domain.as_deref() == Some("ai.onnx")
            })
            .and_then(|o| o.version)
            .unwrap_or(13);
        let (initializers, mut constants) = initializers_of(&graph, path, scalar_weights)?;
        let init_index: HashMap<String, usize> = initializers
            .iter()
            .enumerate()
            .map(|(i, t)| (t.info.name.clone(), i))
            .collect();
        let mut const_index: HashMap<String, usize> = constants
            .iter()
            .enumerate()
            .map(|(i, c)| (c.name.clone(), i))
            .collect();

        // Values: graph inputs (other than initializers listed as inputs),
        // then each node's output.
        let mut slot_of: HashMap<String, usize> = HashMap::new();
        let mut slot_dtype: Vec<DType> = Vec::new();
        let mut inputs = Vec::new();
        for v in &graph.input {
            let name = v.name.clone().unwrap_or_default();
            if init_index.contains_key(&name) || const_index.contains_key(&name) {
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

        // Every op the reference engine lacks is named at once.
        let mut unsupported: Vec<(String, Vec<String>)> = Vec::new();
        for (i, n) in graph.node.iter().enumerate() {
            let op = n.op_type.clone().unwrap_or_default();
            let domain = n.domain.as_deref().unwrap_or("");
            let known = (domain.is_empty() || domain == "ai.onnx")
                && (SUPPORTED_OPS.contains(&op.as_str()) || op == "Constant");
            if !known {
                let name = n
                    .name
                    .clone()
                    .filter(|s| !s.is_empty())
                    .unwrap_or_else(|| format!("#{i}"));
                let key = if domain.is_empty() || domain == "ai.onnx" {
                    op
                } else {
                    format!("{domain}.{op}")
                };
                match unsupported.iter_mut().find(|(o, _)| *o == key) {
                    Some((_, names)) => names.push(name),
                    None => unsupported.push((key, vec![name])),
                }
            }
        }
        if !unsupported.is_empty() {
            let list: Vec<String> = unsupported
                .iter()
                .map(|(op, names)| {
                    let shown: Vec<&str> = names.iter().take(3).map(String::as_str).collect();
                    let more = if names.len() > 3 { ", ..." } else { "" };
                    format!(
                        "{op} ({} node{}: {}{more})",
                        names.len(),
                        if names.len() == 1 { "" } else { "s" },
                        shown.join(", ")
                    )
                })
                .collect();
            return Err(Error::Unsupported {
                reason: format!(
                    "{}: ops the reference engine and the oracle do not run: {}",
                    path.display(),
                    list.join("; ")
                ),
            });
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
            for a in &n.attribute {
                if let Some(r) = &a.ref_attr_name {
                    return Err(node_err(format!(
                        "attribute {} refers to function attribute '{r}'; only plain graphs are supported",
                        a.name.as_deref().unwrap_or("")
                    )));
                }
            }
            if op == "Constant" {
                let out = n.output.first().cloned().unwrap_or_default();
                let c = constant_node(n, &out).map_err(&node_err)?;
                if slot_of.contains_key(&out)
                    || init_index.contains_key(&out)
                    || const_index.contains_key(&out)
                {
                    return Err(node_err(format!("output '{out}' is defined twice")));
                }
                const_index.insert(out, constants.len());
                constants.push(c);
                continue;
            }
            // Inputs located; an empty name is an absent optional input.
            let mut srcs: Vec<Option<Src>> = Vec::new();
            for x in &n.input {
                if x.is_empty() {
                    srcs.push(None);
                    continue;
                }
                let s = if let Some(&v) = slot_of.get(x) {
                    Src::Value(v)
                } else if let Some(&w) = init_index.get(x) {
                    Src::Weight(w)
                } else if let Some(&c) = const_index.get(x) {
                    Src::Const(c)
                } else {
                    return Err(node_err(format!(
                        "input '{x}' is produced by no earlier node and is not a graph input or an initializer"
                    )));
                };
                srcs.push(Some(s));
            }
            while srcs.last() == Some(&None) {
                srcs.pop();
            }
            let constant = |k: usize, role: &str| -> Result<Option<&Constant>> {
                match srcs.get(k).copied().flatten() {
                    None => Ok(None),
                    Some(Src::Const(c)) => Ok(Some(&constants[c])),
                    Some(_) => Err(node_err(format!(
                        "input {role} '{}' must be a constant (an initializer the engine does not refit, or a Constant node)",
                        n.input[k]
                    ))),
                }
            };
            let attrs = Attrs(n);
            // `axes`: a constant input from opset `since` on, an attribute
            // before.
            let axes_of = |since: i64| -> Result<Vec<i64>> {
                Ok(if opset >= since {
                    constant(1, "axes")?
                        .map(|c| c.values.iter().map(|&v| v as i64).collect())
                        .unwrap_or_default()
                } else {
                    attrs.ints("axes").unwrap_or(&[]).to_vec()
                })
            };
            let op_resolved = match op.as_str() {
                "Conv" => Op::Conv(conv_attrs(n, &name).map_err(&node_err)?),
                "Gemm" => Op::Gemm {
                    alpha: attrs.float("alpha", 1.0),
                    beta: attrs.float("beta", 1.0),
                    trans_a: attrs.int("transA", 0) != 0,
                    trans_b: attrs.int("transB", 0) != 0,
                },
                "MatMul" => Op::MatMul,
                "Add" => Op::Add,
                "Sub" => Op::Sub,
                "Mul" => Op::Mul,
                "Div" => Op::Div,
                "BatchNormalization" => {
                    if attrs.int("training_mode", 0) != 0 {
                        return Err(node_err(
                            "training_mode 1: the reference engine runs inference only".into(),
                        ));
                    }
                    Op::BatchNorm {
                        epsilon: attrs.float("epsilon", 1e-5),
                    }
                }
                "Relu" => Op::Relu,
                "Sigmoid" => Op::Sigmoid,
                "Tanh" => Op::Tanh,
                "Erf" => Op::Erf,
                "Sqrt" => Op::Sqrt,
                "Gelu" => Op::Gelu {
                    tanh: match attrs.string("approximate").as_deref() {
                        None | Some("none") => false,
                        Some("tanh") => true,
                        Some(o) => {
                            return Err(node_err(format!(
                                "approximate '{o}': expected 'none' or 'tanh'"
                            )))
                        }
                    },
                },
                "Clip" => {
                    let scalar = |c: Option<&Constant>, role: &str| -> Result<Option<f64>> {
                        match c {
                            None => Ok(None),
                            Some(c) if c.values.len() == 1 => Ok(Some(c.values[0])),
                            Some(c) => {
                                Err(node_err(format!("{role} '{}' is not a scalar", c.name)))
                            }
                        }
                    };
                    let (min, max) = if opset < 11 {
                        (attrs.opt_float("min"), attrs.opt_float("max"))
                    } else {
                        (
                            scalar(constant(1, "min")?, "min")?,
                            scalar(constant(2, "max")?, "max")?,
                        )
                    };
                    srcs.truncate(1);
                    Op::Clip { min, max }
                }
                "Softmax" => Op::Softmax {
                    axis: attrs.int("axis", if opset < 13 { 1 } else { -1 }),
                    legacy: opset < 13,
                },
                "MaxPool" | "AveragePool" => {
                    let p = pool_attrs(&attrs, op == "MaxPool").map_err(&node_err)?;
                    if n.output.len() > 1 {
                        return Err(node_err(
                            "the Indices output of MaxPool is not supported".into(),
                        ));
                    }
                    if op == "MaxPool" {
                        Op::MaxPool(p)
                    } else {
                        Op::AveragePool(p)
                    }
                }
                "GlobalAveragePool" => Op::GlobalAveragePool,
                "Flatten" => Op::Flatten {
                    axis: attrs.int("axis", 1),
                },
                "Reshape" => {
                    let shape = constant(1, "shape")?
                        .ok_or_else(|| node_err("has no shape input".into()))?
                        .values
                        .iter()
                        .map(|&v| v as i64)
                        .collect();
                    srcs.truncate(1);
                    Op::Reshape {
                        shape,
                        allowzero: attrs.int("allowzero", 0) != 0,
                    }
                }
                "Identity" => Op::Identity,
                "Dropout" => {
                    // Inference: the ratio and training_mode inputs are
                    // ignored; training_mode must not be set.
                    if let Some(t) = constant(2, "training_mode")? {
                        if t.values.iter().any(|&v| v != 0.0) {
                            return Err(node_err(
                                "training_mode true: the reference engine runs inference only"
                                    .into(),
                            ));
                        }
                    }
                    srcs.truncate(1);
                    Op::Identity
                }
                "Cast" => match attrs.int("to", 0) as i32 {
                    onnx::FLOAT | onnx::FLOAT16 | onnx::DOUBLE => Op::Identity,
                    t => {
                        return Err(node_err(format!(
                            "Cast to {}: the reference engine casts between float types only",
                            onnx::data_type_name(t)
                        )))
                    }
                },
                "Transpose" => Op::Transpose {
                    perm: attrs
                        .ints("perm")
                        .unwrap_or(&[])
                        .iter()
                        .map(|&p| usize::try_from(p).unwrap_or(usize::MAX))
                        .collect(),
                },
                "Unsqueeze" | "Squeeze" => {
                    let axes = axes_of(13)?;
                    srcs.truncate(1);
                    if op == "Unsqueeze" {
                        Op::Unsqueeze { axes }
                    } else {
                        Op::Squeeze { axes }
                    }
                }
                "Concat" => Op::Concat {
                    axis: attrs.int("axis", 0),
                },
                "Slice" => {
                    let list = |k: usize, role: &str| -> Result<Vec<i64>> {
                        Ok(constant(k, role)?
                            .map(|c| {
                                c.values
                                    .iter()
                                    .map(|&v| v.clamp(i64::MIN as f64, i64::MAX as f64) as i64)
                                    .collect()
                            })
                            .unwrap_or_default())
                    };
                    let op = if opset >= 10 {
                        Op::Slice {
                            starts: list(1, "starts")?,
                            ends: list(2, "ends")?,
                            axes: list(3, "axes")?,
                            steps: list(4, "steps")?,
                        }
                    } else {
                        Op::Slice {
                            starts: attrs.ints("starts").unwrap_or(&[]).to_vec(),
                            ends: attrs.ints("ends").unwrap_or(&[]).to_vec(),
                            axes: attrs.ints("axes").unwrap_or(&[]).to_vec(),
                            steps: Vec::new(),
                        }
                    };
                    srcs.truncate(1);
                    op
                }
                "Gather" => {
                    let c =
                        constant(1, "indices")?.ok_or_else(|| node_err("has no indices".into()))?;
                    let g = Op::Gather {
                        axis: attrs.int("axis", 0),
                        indices: c.values.iter().map(|&v| v as i64).collect(),
                        indices_shape: c.shape.clone(),
                    };
                    srcs.truncate(1);
                    g
                }
                "Expand" => {
                    let c = constant(1, "shape")?.ok_or_else(|| node_err("has no shape".into()))?;
                    let e = Op::Expand {
                        shape: c.values.iter().map(|&v| v.max(0.0) as usize).collect(),
                    };
                    srcs.truncate(1);
                    e
                }
                "ReduceMean" => {
                    let axes = axes_of(18)?;
                    srcs.truncate(1);
                    if axes.is_empty() && attrs.int("noop_with_empty_axes", 0) != 0 {
                        Op::Identity
                    } else {
                        Op::ReduceMean {
                            axes,
                            keepdims: attrs.int("keepdims", 1) != 0,
                        }
                    }
                }
                "LayerNormalization" => {
                    if n.output.iter().skip(1).any(|o| !o.is_empty()) {
                        return Err(node_err(
                            "its Mean and InvStdDev outputs are not supported".into(),
                        ));
                    }
                    Op::LayerNorm {
                        axis: attrs.int("axis", -1),
                        epsilon: attrs.float("epsilon", 1e-5),
                    }
                }
                "Pow" => {
                    let p = match constant(1, "Y")? {
                        Some(c) if c.values.len() == 1 => c.values[0],
                        _ => return Err(node_err("the exponent must be a constant scalar".into())),
                    };
                    srcs.truncate(1);
                    Op::Pow { p }
                }
                "HardSigmoid" => Op::HardSigmoid {
                    alpha: attrs.float("alpha", 0.2),
                    beta: attrs.float("beta", 0.5),
                },
                "HardSwish" => Op::HardSwish,
                other => return Err(node_err(format!("unsupported op '{other}'"))),
            };
            let (least, most) = op_resolved.arity();
            if srcs.len() < least || srcs.len() > most || srcs.iter().any(Option::is_none) {
                return Err(node_err(format!(
                    "has inputs {:?}; expected {}",
                    n.input,
                    if least == most {
                        format!("{least}")
                    } else {
                        format!("{least} to {most}")
                    }
                )));
            }
            let srcs: Vec<Src> = srcs.into_iter().flatten().collect();
            // Constants in, a constant out: folded now.
            if srcs.iter().all(|s| matches!(s, Src::Const(_)))
                && !matches!(op_resolved, Op::Conv(_))
            {
                let out = n.output[0].clone();
                let c = fold(&op_resolved, &srcs, &constants, &out).map_err(&node_err)?;
                const_index.insert(out, constants.len());
                constants.push(c);
                continue;
            }
            // A node may read weights only (a weight transposed or scaled
            // at run time, recomputed at every inference after a refit),
            // but a conv's X is an activation.
            if matches!(op_resolved, Op::Conv(_)) && !matches!(srcs[0], Src::Value(_)) {
                return Err(node_err(format!(
                    "input X '{}' is an initializer; X must be a graph input or a node output",
                    n.input[0]
                )));
            }
            if let Op::Conv(_) = op_resolved {
                check_conv_inputs(&srcs, &initializers, &n.input).map_err(&node_err)?;
            }
            // The node's dtype: its first value input's.
            let x_dtype = srcs
                .iter()
                .find_map(|s| match s {
                    Src::Value(v) => Some(slot_dtype[*v]),
                    _ => None,
                })
                .unwrap_or(DType::F32);
            for (k, s) in srcs.iter().enumerate() {
                if let Src::Weight(w) = s {
                    let found = initializers[*w].info.dtype;
                    if found != x_dtype && found != DType::I32 {
                        return Err(node_err(format!(
                            "input '{}' is {found} but X is {x_dtype}",
                            n.input[k]
                        )));
                    }
                }
            }
            if n.output.is_empty()
                || n.output
                    .iter()
                    .skip(1)
                    .any(|o| !o.is_empty() && op != "Dropout")
            {
                return Err(node_err(format!("has outputs {:?}; expected 1", n.output)));
            }
            let out_name = n.output[0].clone();
            if slot_of.contains_key(&out_name)
                || init_index.contains_key(&out_name)
                || const_index.contains_key(&out_name)
            {
                return Err(node_err(format!("output '{out_name}' is defined twice")));
            }
            let output = slot_dtype.len();
            slot_of.insert(out_name, output);
            slot_dtype.push(x_dtype);
            nodes.push(Node {
                name,
                op_type: op,
                op: op_resolved,
                inputs: srcs,
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
            constants,
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

/// The ops the reference engine runs and the oracle judges (with
/// `Constant`, read at load).
pub const SUPPORTED_OPS: &[&str] = &[
    "Conv",
    "Gemm",
    "MatMul",
    "Add",
    "Sub",
    "Mul",
    "Div",
    "BatchNormalization",
    "Relu",
    "Sigmoid",
    "Tanh",
    "Erf",
    "Sqrt",
    "Gelu",
    "Clip",
    "Softmax",
    "MaxPool",
    "AveragePool",
    "GlobalAveragePool",
    "Flatten",
    "Reshape",
    "Identity",
    "Dropout",
    "Cast",
    "Transpose",
    "Unsqueeze",
    "Squeeze",
    "Concat",
    "Slice",
    "Gather",
    "Expand",
    "ReduceMean",
    "LayerNormalization",
    "Pow",
    "HardSigmoid",
    "HardSwish",
];

/// A node's attributes by name.
struct Attrs<'a>(&'a onnx::NodeProto);

impl Attrs<'_> {
    fn get(&self, name: &str) -> Option<&onnx::AttributeProto> {
        self.0
            .attribute
            .iter()
            .find(|a| a.name.as_deref() == Some(name))
    }

    fn int(&self, name: &str, default: i64) -> i64 {
        self.get(name).and_then(|a| a.i).unwrap_or(default)
    }

    fn opt_float(&self, name: &str) -> Option<f64> {
        self.get(name).and_then(|a| a.f).map(f64::from)
    }

    fn float(&self, name: &str, default: f64) -> f64 {
        self.opt_float(name).unwrap_or(default)
    }

    fn string(&self, name: &str) -> Option<String> {
        self.get(name)
            .and_then(|a| a.s.as_deref())
            .map(|s| String::from_utf8_lossy(s).into_owned())
    }

    fn ints(&self, name: &str) -> Option<&[i64]> {
        self.get(name).map(|a| &a.ints[..])
    }
}

/// `MaxPool` / `AveragePool` attributes (2-D, explicit padding).
fn pool_attrs(a: &Attrs<'_>, max: bool) -> Result<PoolAttrs, String> {
    let pair = |name: &str, default: usize| -> Result<[usize; 2], String> {
        match a.ints(name) {
            None => Ok([default; 2]),
            Some(&[x, y]) if x >= 1 && y >= 1 && x <= MAX_DIM && y <= MAX_DIM => {
                Ok([x as usize, y as usize])
            }
            Some(v) => Err(format!(
                "{name} {v:?}: the reference engine pools 2-D inputs, values >= 1"
            )),
        }
    };
    let kernel = match a.ints("kernel_shape") {
        None => return Err("no kernel_shape".into()),
        Some(_) => pair("kernel_shape", 1)?,
    };
    let pads = match a.ints("pads") {
        None => [0; 4],
        Some(v) if v.len() == 4 && v.iter().all(|&p| (0..=MAX_DIM).contains(&p)) => {
            [v[0] as usize, v[1] as usize, v[2] as usize, v[3] as usize]
        }
        Some(v) => return Err(format!("pads {v:?}: expected four values >= 0")),
    };
    match a.string("auto_pad").as_deref() {
        None | Some("NOTSET") | Some("") => {}
        Some("VALID") if pads == [0; 4] => {}
        Some(o) => {
            return Err(format!(
                "auto_pad {o}: the reference engine pools with explicit pads"
            ))
        }
    }
    if a.int("storage_order", 0) != 0 {
        return Err("storage_order 1 is not supported".into());
    }
    let dilations = pair("dilations", 1)?;
    if !max && dilations != [1, 1] {
        return Err("AveragePool with dilations is not supported".into());
    }
    Ok(PoolAttrs {
        kernel,
        strides: pair("strides", 1)?,
        pads,
        dilations,
        ceil_mode: a.int("ceil_mode", 0) != 0,
        count_include_pad: a.int("count_include_pad", 0) != 0,
    })
}

/// A node over constants only, evaluated at load (as an engine folds it).
fn fold(op: &Op, srcs: &[Src], constants: &[Constant], out: &str) -> Result<Constant, String> {
    let ins: Vec<&Constant> = srcs
        .iter()
        .map(|s| match s {
            Src::Const(c) => &constants[*c],
            _ => unreachable!("constants only"),
        })
        .collect();
    let shapes: Vec<&[usize]> = ins.iter().map(|c| &c.shape[..]).collect();
    let shape = super::ops::output_shape(op, &shapes)?;
    let inputs: Vec<super::ops::Input<'_>> = ins
        .iter()
        .map(|c| (&c.values_f32[..], &c.shape[..]))
        .collect();
    let mut values_f32 = Vec::new();
    super::ops::eval(op, &inputs, &shape, None, &mut values_f32);
    Ok(Constant {
        name: out.to_string(),
        shape,
        values: values_f32.iter().map(|&v| f64::from(v)).collect(),
        values_f32,
    })
}

/// A `Constant` node's value.
fn constant_node(n: &onnx::NodeProto, out: &str) -> Result<Constant, String> {
    let a = n
        .attribute
        .first()
        .ok_or("a Constant node without a value")?;
    let name = a.name.as_deref().unwrap_or("");
    let (shape, values): (Vec<usize>, Vec<f64>) = match name {
        "value" => {
            let t = a.t.as_ref().ok_or("attribute value holds no tensor")?;
            let shape = dims_of(&t.dims)?;
            let numel = shape.iter().product();
            (shape, tensor_f64(t, numel, None)?)
        }
        "value_float" => (
            Vec::new(),
            vec![f64::from(a.f.ok_or("value_float has no value")?)],
        ),
        "value_floats" => (
            vec![a.floats.len()],
            a.floats.iter().map(|&v| f64::from(v)).collect(),
        ),
        "value_int" => (
            Vec::new(),
            vec![a.i.ok_or("value_int has no value")? as f64],
        ),
        "value_ints" => (
            vec![a.ints.len()],
            a.ints.iter().map(|&v| v as f64).collect(),
        ),
        other => return Err(format!("Constant attribute '{other}' is not supported")),
    };
    Ok(Constant {
        name: out.to_string(),
        values_f32: values.iter().map(|&v| v as f32).collect(),
        shape,
        values,
    })
}

fn dims_of(dims: &[i64]) -> Result<Vec<usize>, String> {
    dims.iter()
        .map(|&d| {
            usize::try_from(d)
                .ok()
                .filter(|&d| d as i64 <= MAX_DIM)
                .ok_or_else(|| format!("dimension {d} in {dims:?}"))
        })
        .collect()
}

/// Conv's weight and bias: weights of rank 3 to 5, the bias one value per
/// output channel.
fn check_conv_inputs(srcs: &[Src], inits: &[Initializer], names: &[String]) -> Result<(), String> {
    let shape_of = |k: usize| {
        match srcs.get(k) {
        Some(Src::Weight(w)) => Ok(Some(&inits[*w].shape)),
        Some(_) => Err(format!(
            "input '{}' is not a weight; the reference engine needs the conv's weight and bias to be initializers",
            names[k]
        )),
        None => Ok(None),
    }
    };
    let w = shape_of(1)?.ok_or("no weight")?;
    if !(3..=5).contains(&w.len()) {
        return Err(format!(
            "weight '{}' has shape {w:?}; expected rank 3 to 5",
            names[1]
        ));
    }
    if let Some(b) = shape_of(2)? {
        if b != &[w[0]] {
            return Err(format!(
                "bias '{}' has shape {b:?}; expected [{}] (the weight's output channels)",
                names[2], w[0]
            ));
        }
    }
    Ok(())
}

/// A tensor's values as f64, from `raw_data`, its typed field, or (with
/// `external`, the bytes read from its side file) external data.
fn tensor_f64(
    t: &onnx::TensorProto,
    numel: usize,
    external: Option<&[u8]>,
) -> Result<Vec<f64>, String> {
    let elem = t.data_type.unwrap_or(0);
    let raw = external.or(t.raw_data.as_deref());
    let values: Vec<f64> = match elem {
        onnx::INT64 => match raw {
            Some(r) => r
                .chunks_exact(8)
                .map(|c| i64::from_le_bytes(c.try_into().expect("8 bytes")) as f64)
                .collect(),
            None => t.int64_data.iter().map(|&v| v as f64).collect(),
        },
        onnx::DOUBLE => match raw {
            Some(r) => r
                .chunks_exact(8)
                .map(|c| f64::from_le_bytes(c.try_into().expect("8 bytes")))
                .collect(),
            None => t.double_data.clone(),
        },
        _ => {
            let dtype = dtype_of(elem).ok_or_else(|| {
                format!(
                    "element type {} is not supported (FLOAT, FLOAT16, INT32, INT64, DOUBLE)",
                    onnx::data_type_name(elem)
                )
            })?;
            let mut tt = t.clone();
            if let Some(r) = external {
                tt.raw_data = Some(r.to_vec());
            }
            return initializer_values(&tt, dtype, numel)
                .map(|v| v.into_iter().map(f64::from).collect());
        }
    };
    if values.len() != numel {
        return Err(format!("{} values for shape {:?}", values.len(), t.dims));
    }
    Ok(values)
}

/// The bytes of an initializer stored outside the model file: `location`
/// relative to the model's folder (which it may not leave), `offset` and
/// `length` in bytes.
fn external_bytes(t: &onnx::TensorProto, model: &Path) -> Result<Vec<u8>, String> {
    let get = |k: &str| {
        t.external_data
            .iter()
            .find(|e| e.key.as_deref() == Some(k))
            .and_then(|e| e.value.clone())
    };
    let location = get("location").ok_or("external data without a location")?;
    let rel = Path::new(&location);
    if rel.is_absolute()
        || rel.components().any(|c| {
            !matches!(
                c,
                std::path::Component::Normal(_) | std::path::Component::CurDir
            )
        })
    {
        return Err(format!(
            "external data location '{location}' leaves the model's folder"
        ));
    }
    let dir = model.parent().unwrap_or(Path::new("."));
    let file = dir.join(rel);
    let parse = |k: &str| -> Result<Option<u64>, String> {
        get(k)
            .map(|v| {
                v.parse::<u64>()
                    .map_err(|_| format!("external data {k} '{v}' is not a number"))
            })
            .transpose()
    };
    let offset = parse("offset")?.unwrap_or(0);
    // Only the tensor's own bytes are read: a side file holds every
    // weight, and a model has hundreds of them.
    use std::io::{Read, Seek, SeekFrom};
    let io = |e: std::io::Error| format!("external data {}: {e}", file.display());
    let mut f = std::fs::File::open(&file).map_err(io)?;
    let size = f.metadata().map_err(io)?.len();
    if offset > size {
        return Err(format!(
            "external data {}: offset {offset} is past its {size} bytes",
            file.display()
        ));
    }
    let length = match parse("length")? {
        Some(l) if offset.checked_add(l).is_some_and(|end| end <= size) => l,
        Some(l) => {
            return Err(format!(
                "external data {}: {l} bytes from offset {offset} run past its {size} bytes",
                file.display()
            ))
        }
        None => size - offset,
    };
    let mut bytes = vec![0u8; usize::try_from(length).map_err(|_| "external data too large")?];
    f.seek(SeekFrom::Start(offset)).map_err(io)?;
    f.read_exact(&mut bytes).map_err(io)?;
    Ok(bytes)
}

/// The refittable weights of a model file (name, dtype, shape, values as
/// f32), whatever ops its graph uses, by the rule of [`Model`]'s
/// initializers (INT64 shape operands and scalar constants are not
/// weights; external data is read from beside the model): what an engine
/// that runs the model elsewhere (a plugin over another runtime) lists as
/// its weights.
///
/// # Errors
/// [`Error::Io`], [`Error::MalformedModel`], or [`Error::InvalidGraph`] for
/// an initializer the harness cannot read (external data it cannot find or
/// that leaves the model's folder, an element type other than FLOAT,
/// FLOAT16, INT32, INT64, DOUBLE).
pub fn read_initializers(path: &Path) -> Result<Vec<Initializer>> {
    read_initializers_with(path, &[])
}

/// [`read_initializers`], with the scalar float initializers named in
/// `scalar_weights` weights too (as [`Model::load_with`]).
///
/// # Errors
/// As [`read_initializers`]; a name that is not a scalar float initializer.
pub fn read_initializers_with(path: &Path, scalar_weights: &[String]) -> Result<Vec<Initializer>> {
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
    initializers_of(&graph, path, scalar_weights).map(|(w, _)| w)
}

/// The model at `path` with the initializers named in `weights` replaced
/// by those values, every initializer stored in the file (external data
/// read in): the bytes of a model a fresh build takes the new weights
/// from, written anywhere. Names the model does not hold are an error.
///
/// # Errors
/// [`Error::Io`], [`Error::MalformedModel`]; [`Error::InvalidGraph`] for
/// external data that cannot be read or a name the model does not hold.
pub fn with_weights(path: &Path, weights: &[(String, crate::tensor::Tensor)]) -> Result<Vec<u8>> {
    let bytes = std::fs::read(path).map_err(|error| Error::Io {
        op: "read",
        path: path.to_path_buf(),
        error,
    })?;
    let mut proto = onnx::ModelProto::decode(&bytes[..]).map_err(|e| Error::MalformedModel {
        path: path.to_path_buf(),
        reason: e.to_string(),
    })?;
    let graph = proto.graph.as_mut().ok_or_else(|| Error::MalformedModel {
        path: path.to_path_buf(),
        reason: "the model has no graph".into(),
    })?;
    let bad = |reason: String| Error::InvalidGraph {
        path: path.to_path_buf(),
        reason,
    };
    for (name, _) in weights {
        if !graph
            .initializer
            .iter()
            .any(|t| t.name.as_ref() == Some(name))
        {
            return Err(bad(format!("no initializer '{name}'")));
        }
    }
    for t in &mut graph.initializer {
        let name = t.name.clone().unwrap_or_default();
        let raw = match weights.iter().find(|(n, _)| *n == name) {
            Some((_, w)) => Some(w.data.as_bytes().to_vec()),
            None if t.data_location == Some(1) || !t.external_data.is_empty() => Some(
                external_bytes(t, path).map_err(|e| bad(format!("initializer '{name}': {e}")))?,
            ),
            None => None,
        };
        if let Some(raw) = raw {
            t.raw_data = Some(raw);
            t.float_data.clear();
            t.int32_data.clear();
            t.int64_data.clear();
            t.double_data.clear();
            t.external_data.clear();
            t.data_location = None;
        }
    }
    Ok(proto.encode_to_vec())
}

/// Which initializers are weights: f32 and f16 tensors of rank 1 or more,
/// and i32 tensors; everything else (INT64 shape operands, scalar float
/// constants an exporter writes, doubles) is a constant no refit changes.
/// The one rule the reference engine, the oracle and the ONNX Runtime
/// plugin share.
fn initializers_of(
    graph: &onnx::GraphProto,
    path: &Path,
    scalar_weights: &[String],
) -> Result<(Vec<Initializer>, Vec<Constant>)> {
    let graph_err = |reason: String| Error::InvalidGraph {
        path: path.to_path_buf(),
        reason,
    };
    let mut initializers = Vec::new();
    let mut constants = Vec::new();
    let mut names: HashMap<String, ()> = HashMap::new();
    for t in &graph.initializer {
        let name = t.name.clone().unwrap_or_default();
        if name.is_empty() {
            return Err(graph_err("an initializer has no name".into()));
        }
        let bad = |reason: String| graph_err(format!("initializer '{name}': {reason}"));
        if names.insert(name.clone(), ()).is_some() {
            return Err(bad("the name is used twice".into()));
        }
        let external = if t.data_location == Some(1) || !t.external_data.is_empty() {
            Some(external_bytes(t, path).map_err(bad)?)
        } else {
            None
        };
        let elem = t.data_type.unwrap_or(0);
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
        let dtype = dtype_of(elem);
        let listed = scalar_weights.contains(&name);
        let weight = match dtype {
            Some(DType::I32) => true,
            Some(_) => !shape.is_empty() || listed,
            None => false,
        };
        if listed && !(shape.is_empty() && matches!(dtype, Some(DType::F32 | DType::F16))) {
            return Err(bad(format!(
                "listed as a scalar weight, but it is {} of shape {shape:?}",
                onnx::data_type_name(elem)
            )));
        }
        if weight {
            let dtype = dtype.expect("weights have a dtype");
            let mut tt;
            let t = match &external {
                Some(bytes) => {
                    tt = t.clone();
                    tt.raw_data = Some(bytes.clone());
                    &tt
                }
                None => t,
            };
            let values = initializer_values(t, dtype, numel).map_err(bad)?;
            initializers.push(Initializer {
                info: TensorInfo {
                    name,
                    dtype,
                    shape: shape.iter().map(|&d| Some(d)).collect(),
                },
                shape,
                values,
            });
        } else {
            let values = tensor_f64(t, numel, external.as_deref()).map_err(bad)?;
            constants.push(Constant {
                name,
                values_f32: values.iter().map(|&v| v as f32).collect(),
                shape,
                values,
            });
        }
    }
    Ok((initializers, constants))
}
