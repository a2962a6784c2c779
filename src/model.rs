//! The ONNX subset the reference engine runs: the ops of [`ops::Op`]
//! (Conv, Gemm, MatMul, elementwise arithmetic, BatchNormalization,
//! activations, Softmax, pooling, Flatten, Reshape, ...) in a graph, with
//! f32 (or f16, or i32) initializers as the refittable weights and every
//! other initializer (INT64 shape operands, scalar constants) a constant.
//!
//! [`Model::load`] parses and validates a file; [`Model::plan`] resolves
//! every node for a set of input shapes; [`Model::run`] evaluates the graph
//! with weights supplied by the caller, so the same model serves any weight
//! snapshot.

pub mod build;
pub mod conv;
pub mod onnx;
pub mod ops;
mod parse;

pub use ops::Op;
pub use parse::{read_initializers, read_initializers_with, with_weights, SUPPORTED_OPS};

use std::path::{Path, PathBuf};

use half::f16;

use crate::tensor::{Aligned, DType, Tensor, TensorData, TensorInfo, Values};
use crate::{Error, Result};
use conv::ConvGeometry;

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

/// Where a node's input comes from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Src {
    /// A value computed when the model runs: a graph input or a node's
    /// output, by value number (the graph inputs first, then each node's
    /// output).
    Value(usize),
    /// A refittable weight, by initializer index.
    Weight(usize),
    /// A constant of the model, by index into [`Model::constants`].
    Const(usize),
}

/// A constant the model holds and no refit changes: INT64 shape operands,
/// scalar float constants an exporter writes (`val_0`, GELU's 0.5), the
/// values of `Constant` nodes. Values as f64 (INT64 operands are small).
#[derive(Clone, Debug, PartialEq)]
pub struct Constant {
    /// The initializer's or `Constant` node output's name.
    pub name: String,
    /// Its shape.
    pub shape: Vec<usize>,
    /// Its values.
    pub values: Vec<f64>,
    /// The same as f32, as the engine computes with them.
    pub values_f32: Vec<f32>,
}

/// One node of the graph, its op resolved ([`Op`]), its inputs located
/// ([`Src`]) and its output numbered.
#[derive(Clone, Debug)]
pub struct Node {
    /// The node's name (`#i` when it has none).
    pub name: String,
    /// Its `op_type` as written (`Dropout` runs as [`Op::Identity`]).
    pub op_type: String,
    /// The operation and its attributes.
    pub op: Op,
    /// Its inputs, in the op's order; optional inputs that are absent are
    /// left out at the end.
    pub inputs: Vec<Src>,
    /// Its output's value number.
    pub output: usize,
}

/// A parsed, validated model.
#[derive(Clone, Debug)]
pub struct Model {
    path: PathBuf,
    inputs: Vec<TensorInfo>,
    outputs: Vec<TensorInfo>,
    initializers: Vec<Initializer>,
    constants: Vec<Constant>,
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

    /// Whether initializer `i` must stay positive for the model's outputs
    /// to be defined: a BatchNormalization variance.
    pub fn needs_positive(&self, i: usize) -> bool {
        self.nodes.iter().any(|n| {
            matches!(n.op, Op::BatchNorm { .. }) && n.inputs.get(4) == Some(&Src::Weight(i))
        })
    }

    /// Makes the scalar constant `name` a refittable weight (appended to
    /// [`Model::initializers`]), for an oracle following an engine that
    /// refits a scalar parameter. `false` when there is no such constant.
    pub(crate) fn promote(&mut self, name: &str) -> bool {
        let Some(c) = self
            .constants
            .iter()
            .position(|c| c.name == name && c.shape.is_empty())
        else {
            return false;
        };
        let w = self.initializers.len();
        let k = &self.constants[c];
        self.initializers.push(Initializer {
            info: TensorInfo {
                name: k.name.clone(),
                dtype: DType::F32,
                shape: Vec::new(),
            },
            shape: Vec::new(),
            values: k.values_f32.clone(),
        });
        for n in &mut self.nodes {
            for s in &mut n.inputs {
                if *s == Src::Const(c) {
                    *s = Src::Weight(w);
                }
            }
        }
        true
    }

    /// The constants: what no refit changes.
    pub fn constants(&self) -> &[Constant] {
        &self.constants
    }

    /// The nodes in evaluation order.
    pub fn nodes(&self) -> &[Node] {
        &self.nodes
    }

    /// The shape of an input source under `plan`.
    fn src_shape<'p>(&'p self, plan_shapes: &'p [Vec<usize>], s: Src) -> &'p [usize] {
        match s {
            Src::Value(v) => &plan_shapes[v],
            Src::Weight(w) => &self.initializers[w].shape,
            Src::Const(c) => &self.constants[c].shape,
        }
    }

    /// The value numbers of the graph outputs.
    pub(crate) fn output_values(&self) -> &[usize] {
        &self.output_slots
    }

    /// How many values the graph has (inputs plus node outputs).
    pub(crate) fn value_count(&self) -> usize {
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
            let shapes: Vec<&[usize]> = n
                .inputs
                .iter()
                .map(|&s| self.src_shape(&slot_shapes, s))
                .collect();
            let err = |reason: String| Error::InvalidNode {
                path: self.path.clone(),
                node: n.name.clone(),
                op: n.op_type.clone(),
                reason,
            };
            let geometry = match &n.op {
                Op::Conv(attrs) => {
                    Some(ConvGeometry::resolve(attrs, shapes[0], shapes[1]).map_err(err)?)
                }
                _ => None,
            };
            let shape = match &geometry {
                Some(g) => g.output_shape.clone(),
                None => ops::output_shape(&n.op, &shapes).map_err(err)?,
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
    pub(crate) fn plan_cached<'c>(
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
        crate::tensor::check_inputs(&self.inputs, inputs)
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
    pub(crate) fn run_into<'w>(
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
            {
                // Up to five inputs (BatchNormalization) on the stack: an
                // inference allocates nothing of its own; a Concat of more
                // on the heap.
                let locate = |src: Src| -> ops::Input<'_> {
                    match src {
                        Src::Value(v) => (&scratch[v][..], &plan.slot_shapes[v][..]),
                        Src::Weight(w) => (weight(w), &self.initializers[w].shape[..]),
                        Src::Const(c) => (
                            &self.constants[c].values_f32[..],
                            &self.constants[c].shape[..],
                        ),
                    }
                };
                let mut stack: [ops::Input<'_>; 5] = [(&[], &[]); 5];
                let heap: Vec<ops::Input<'_>>;
                let inputs: &[ops::Input<'_>] = if n.inputs.len() <= stack.len() {
                    for (slot, &src) in stack.iter_mut().zip(&n.inputs) {
                        *slot = locate(src);
                    }
                    &stack[..n.inputs.len()]
                } else {
                    heap = n.inputs.iter().map(|&s| locate(s)).collect();
                    &heap
                };
                ops::eval(
                    &n.op,
                    inputs,
                    &plan.slot_shapes[n.output],
                    geometry.as_ref(),
                    &mut out,
                );
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
