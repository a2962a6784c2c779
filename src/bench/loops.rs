//! The loops `ci/instructions.sh` counts under callgrind
//! (`refit-harness refit-loop`): refits of one weight, copies of as many
//! bytes, or inferences, nothing else but building the engine once.

use std::hint::black_box;
use std::path::Path;

use super::sweep::{ones_inputs, sized_model};
use crate::check::EngineFactory;
use crate::engine::BuildOptions;
use crate::tensor::Tensor;
use crate::{Error, Result};

/// What [`run`] repeats.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Loop {
    /// Stage and refit the model's one weight, alternating two values.
    Refit,
    /// Copy as many bytes as the weight holds.
    Memcpy,
    /// One inference into reused outputs.
    Infer,
}

/// Builds the engine `spec` makes on [`sized_model`]`(bytes)` (written
/// under `scratch`), then runs `what` `count` times.
///
/// # Errors
/// The model cannot be written, or an engine error.
pub fn run(
    spec: &dyn EngineFactory,
    scratch: &Path,
    bytes: usize,
    count: usize,
    what: Loop,
) -> Result<()> {
    let path = scratch.join("sized.onnx");
    std::fs::write(&path, sized_model(bytes).to_bytes()).map_err(|error| Error::Io {
        op: "write",
        path: path.clone(),
        error,
    })?;
    let engine = spec.open(&path, &BuildOptions::default())?;
    let w = &engine.weights()[0];
    let shape = w.static_shape().unwrap_or_default();
    let tensors = [Tensor::full(shape.clone(), 1.0), Tensor::full(shape, 2.0)];
    let mut dst = vec![0.0f32; bytes / 4];
    let x = ones_inputs(engine.as_ref());
    let mut ctx = engine.context()?;
    let mut out = Vec::new();
    for k in 0..count {
        match what {
            Loop::Infer => {
                ctx.infer_into(&x, &mut out)?;
                black_box(&out);
            }
            Loop::Memcpy => {
                dst.copy_from_slice(tensors[k % 2].as_f32().unwrap_or_default());
                black_box(&dst);
            }
            Loop::Refit => {
                let mut r = engine.refitter()?;
                r.set_named_weights(&w.name, &tensors[k % 2])?;
                r.refit()?;
            }
        }
    }
    Ok(())
}
