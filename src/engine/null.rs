//! An engine that does no work: outputs of the declared shapes, all zero;
//! staging and refit accept and drop. What a caller costs per call on its
//! own: `bench` measures it in-process and through the plugin ABI (the
//! reference plugin serves it for `{"engine": "null"}`) as the harness's
//! floor.

use std::path::Path;

use super::{BuildOptions, Context, Description, Engine, EngineInfo, Refitter};
use crate::model::Model;
use crate::tensor::{Tensor, TensorView};
use crate::Result;

/// The null engine over a model's inputs, outputs and weights.
pub(crate) struct NullEngine {
    description: Description,
}

impl NullEngine {
    /// Reads the model's interface (its graph is not built).
    ///
    /// # Errors
    /// Those of [`Model::load`].
    pub fn load(model: &Path, options: &BuildOptions) -> Result<Self> {
        let m = Model::load(model)?;
        Ok(NullEngine {
            description: Description::of(
                &m,
                EngineInfo {
                    name: "null".into(),
                    version: String::new(),
                    contract: super::reference::CONTRACT,
                    refit_enabled: options.enable_refit,
                },
            ),
        })
    }
}

struct NullContext(Vec<Vec<usize>>);

struct NullRefitter;

impl Engine for NullEngine {
    fn description(&self) -> &Description {
        &self.description
    }
    fn context(&self) -> Result<Box<dyn Context>> {
        Ok(Box::new(NullContext(
            self.description
                .outputs
                .iter()
                .map(|o| o.static_shape().unwrap_or_default())
                .collect(),
        )))
    }
    fn refitter(&self) -> Result<Box<dyn Refitter>> {
        Ok(Box::new(NullRefitter))
    }
}

impl Context for NullContext {
    fn infer(&mut self, _inputs: &[Tensor]) -> Result<Vec<Tensor>> {
        Ok(self
            .0
            .iter()
            .map(|s| Tensor::full(s.clone(), 0.0))
            .collect())
    }

    /// Leaves outputs of the right shapes as they are: no work.
    fn infer_into(&mut self, inputs: &[Tensor], outputs: &mut Vec<Tensor>) -> Result<()> {
        let same = outputs.len() == self.0.len()
            && outputs
                .iter()
                .zip(&self.0)
                .all(|(t, s)| t.shape == *s && t.data.len() == t.numel());
        if !same {
            *outputs = self.infer(inputs)?;
        }
        Ok(())
    }
}

impl Refitter for NullRefitter {
    fn set_named_weights(&mut self, _name: &str, _weights: &Tensor) -> Result<()> {
        Ok(())
    }
    fn set_named_weights_view(&mut self, _name: &str, _weights: TensorView<'_>) -> Result<()> {
        Ok(())
    }
    fn missing(&self) -> Result<Vec<String>> {
        Ok(Vec::new())
    }
    fn refit(&mut self) -> Result<()> {
        Ok(())
    }
}
