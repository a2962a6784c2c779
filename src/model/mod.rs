//! The ONNX subset the reference engine runs: `Conv` and `Relu` chained in
//! a graph, with f32 (or f16) initializers as the refittable weights.
//!
//! [`Model::load`] parses and validates a file; [`Model::plan`] resolves
//! every node for a set of input shapes; [`Model::run`] evaluates the graph
//! with weights supplied by the caller, so the same model serves any weight
//! snapshot.

pub mod build;
pub mod conv;
pub mod onnx;
mod parse;

pub use parse::read_initializers;

use std::path::{Path, PathBuf};

use half::f16;

use crate::tensor::{Aligned, DType, Tensor, TensorData, TensorInfo, Values};
use crate::{Error, Result};
use conv::{ConvAttrs, ConvGeometry};

/// A weight stored in the model file: its description and initial values
/// (widened to f32 when stored as f16).
#[derive(Clone, Debug)]
pub struct Initializer {
    /// Name, dtype and shape.
    pub info: TensorInfo,
    /// The shape, every dimension known.
    pub shape: Vec<usize>,
    /// The values as f32.
    pub values: Vec<f32>,
}

#[derive(Clone, Debug)]
enum Op {
    Conv {
        attrs: ConvAttrs,
        weight: usize,
        bias: Option<usize>,
    },
    Relu,
}

#[derive(Clone, Debug)]
struct Node {
    name: String,
    op_type: &'static str,
    op: Op,
    input: usize,
    output: usize,
}

/// A node of the graph, for code that evaluates the model its own way (the
/// plain oracle). Values are numbered: the graph inputs first, then each
/// node's output.
#[derive(Clone, Copy, Debug)]
pub enum Layer<'a> {
    /// `Conv(X, W, B?)`.
    Conv {
        /// The node's name.
        name: &'a str,
        /// Its attributes.
        attrs: &'a ConvAttrs,
        /// The initializer index of W.
        weight: usize,
        /// The initializer index of B.
        bias: Option<usize>,
        /// The value X.
        input: usize,
        /// The value Y.
        output: usize,
    },
    /// `Relu(X)`.
    Relu {
        /// The value X.
        input: usize,
        /// The value Y.
        output: usize,
    },
}

/// A parsed, validated model.
#[derive(Clone, Debug)]
pub struct Model {
    path: PathBuf,
    inputs: Vec<TensorInfo>,
    outputs: Vec<TensorInfo>,
    initializers: Vec<Initializer>,
    nodes: Vec<Node>,
    output_slots: Vec<usize>,
    slots: usize,
}

/// A model resolved for one set of input shapes: the geometry of every
/// convolution and the size of every intermediate value.
#[derive(Clone, Debug)]
pub struct Plan {
    input_shapes: Vec<Vec<usize>>,
    geometries: Vec<Option<ConvGeometry>>,
    slot_shapes: Vec<Vec<usize>>,
}

impl Plan {
    /// The input shapes this plan was made for.
    pub fn input_shapes(&self) -> &[Vec<usize>] {
        &self.input_shapes
    }
}

impl Model {
    /// The file the model came from.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The graph's inputs.
    pub fn inputs(&self) -> &[TensorInfo] {
        &self.inputs
    }

    /// The graph's outputs.
    pub fn outputs(&self) -> &[TensorInfo] {
        &self.outputs
    }

    /// The initializers: the refittable weights, in file order.
    pub fn initializers(&self) -> &[Initializer] {
        &self.initializers
    }

    /// The nodes in evaluation order.
    pub fn layers(&self) -> Vec<Layer<'_>> {
        self.nodes
            .iter()
            .map(|n| match &n.op {
                Op::Conv {
                    attrs,
                    weight,
                    bias,
                } => Layer::Conv {
                    name: &n.name,
                    attrs,
                    weight: *weight,
                    bias: *bias,
                    input: n.input,
                    output: n.output,
                },
                Op::Relu => Layer::Relu {
                    input: n.input,
                    output: n.output,
                },
            })
            .collect()
    }

    /// The value numbers of the graph outputs.
    pub fn output_values(&self) -> &[usize] {
        &self.output_slots
    }

    /// How many values the graph has (inputs plus node outputs).
    pub fn value_count(&self) -> usize {
        self.slots
    }

    /// Resolves every node for the given input shapes.
    ///
    /// # Errors
    /// [`Error::InvalidNode`] naming the first node whose attributes do not
    /// fit the shapes reaching it.
    pub fn plan(&self, input_shapes: &[Vec<usize>]) -> Result<Plan> {
        let mut slot_shapes: Vec<Vec<usize>> = vec![Vec::new(); self.slots];
        slot_shapes[..input_shapes.len()].clone_from_slice(input_shapes);
        let mut geometries = Vec::with_capacity(self.nodes.len());
        for n in &self.nodes {
            let x = &slot_shapes[n.input];
            let (geometry, shape) = match &n.op {
                Op::Conv { attrs, weight, .. } => {
                    let w = &self.initializers[*weight].shape;
                    let g = ConvGeometry::resolve(attrs, x, w).map_err(|reason| {
                        Error::InvalidNode {
                            path: self.path.clone(),
                            node: n.name.clone(),
                            op: n.op_type.into(),
                            reason,
                        }
                    })?;
                    let shape = g.output_shape.clone();
                    (Some(g), shape)
                }
                Op::Relu => (None, x.clone()),
            };
            geometries.push(geometry);
            slot_shapes[n.output] = shape;
        }
        Ok(Plan {
            input_shapes: input_shapes.to_vec(),
            geometries,
            slot_shapes,
        })
    }

    /// Checks `inputs` and returns a plan for their shapes: the one in
    /// `cache` when it was made for the same shapes, else a new one, kept
    /// in `cache` for the next call.
    ///
    /// # Errors
    /// As [`Model::check_inputs`] and [`Model::plan`].
    pub fn plan_cached<'c>(
        &self,
        cache: &'c mut Option<Plan>,
        inputs: &[Tensor],
    ) -> Result<&'c Plan> {
        self.check_inputs(inputs)?;
        let same = cache.as_ref().is_some_and(|p| {
            p.input_shapes.len() == inputs.len()
                && p.input_shapes
                    .iter()
                    .zip(inputs)
                    .all(|(s, t)| *s == t.shape)
        });
        if !same {
            let shapes: Vec<Vec<usize>> = inputs.iter().map(|t| t.shape.clone()).collect();
            *cache = Some(self.plan(&shapes)?);
        }
        Ok(cache.as_ref().expect("plan set above"))
    }

    /// Checks inputs against the model's declared inputs.
    ///
    /// # Errors
    /// [`Error::InputCount`], [`Error::DTypeMismatch`],
    /// [`Error::ShapeMismatch`] or [`Error::ByteCount`] naming the input.
    pub fn check_inputs(&self, inputs: &[Tensor]) -> Result<()> {
        crate::engine::check_inputs(&self.inputs, inputs)
    }

    /// Evaluates the graph. `weight(i)` gives the current values of
    /// initializer `i`; `scratch` holds intermediate values between calls.
    ///
    /// The caller has checked the inputs ([`Model::check_inputs`]) and made
    /// `plan` for their shapes.
    pub fn run<'w>(
        &self,
        plan: &Plan,
        weight: impl Fn(usize) -> &'w [f32],
        inputs: &[Tensor],
        scratch: &mut Vec<Vec<f32>>,
    ) -> Vec<Tensor> {
        let mut outputs = Vec::new();
        self.run_into(plan, weight, inputs, scratch, &mut outputs);
        outputs
    }

    /// As [`Model::run`], writing the outputs into `outputs` and reusing
    /// the buffers of the tensors already there.
    pub fn run_into<'w>(
        &self,
        plan: &Plan,
        weight: impl Fn(usize) -> &'w [f32],
        inputs: &[Tensor],
        scratch: &mut Vec<Vec<f32>>,
        outputs: &mut Vec<Tensor>,
    ) {
        scratch.resize_with(self.slots, Vec::new);
        for (i, t) in inputs.iter().enumerate() {
            let buf = &mut scratch[i];
            buf.clear();
            match &t.data {
                TensorData::F32(v) => buf.extend_from_slice(v),
                TensorData::F16(v) => buf.extend(v.iter().map(|x| x.to_f32())),
                TensorData::I32(v) => buf.extend(v.iter().map(|&x| x as f32)),
            }
        }
        for (n, geometry) in self.nodes.iter().zip(&plan.geometries) {
            let mut out = std::mem::take(&mut scratch[n.output]);
            let x = &scratch[n.input];
            match (&n.op, geometry) {
                (
                    Op::Conv {
                        weight: w, bias, ..
                    },
                    Some(g),
                ) => {
                    out.resize(g.output_len(), 0.0);
                    let b = bias.map(&weight);
                    conv::conv(g, x, weight(*w), b, &mut out);
                }
                _ => {
                    out.clear();
                    out.extend(x.iter().map(|&v| if v < 0.0 { 0.0 } else { v }));
                }
            }
            scratch[n.output] = out;
        }
        outputs.truncate(self.outputs.len());
        for (i, (&slot, info)) in self.output_slots.iter().zip(&self.outputs).enumerate() {
            let shape = &plan.slot_shapes[slot];
            let v = &scratch[slot];
            let Some(t) = outputs.get_mut(i) else {
                let data = match info.dtype {
                    DType::F16 => TensorData::F16(v.iter().map(|&x| f16::from_f32(x)).collect()),
                    _ => TensorData::F32(Aligned::copied(v)),
                };
                outputs.push(Tensor {
                    shape: shape.clone(),
                    data,
                });
                continue;
            };
            t.shape.clear();
            t.shape.extend_from_slice(shape);
            match (info.dtype, &mut t.data) {
                (DType::F16, TensorData::F16(a)) => {
                    a.clear();
                    a.extend(v.iter().map(|&x| f16::from_f32(x)));
                }
                (DType::F16, data) => {
                    *data = TensorData::F16(v.iter().map(|&x| f16::from_f32(x)).collect());
                }
                (_, data) => data.assign(Values::F32(v)),
            }
        }
    }
}
