//! Enforces the `quiesced` contract: an engine that declares it may not
//! infer while a refit runs, so the wrapper makes every inference wait for
//! a running `refit()` and every `refit()` wait for running inferences.

use std::sync::{Arc, RwLock};

use super::{Context, Description, Engine, Refitter};
use crate::tensor::{Tensor, TensorView};
use crate::Result;

/// An engine whose inferences and refits exclude each other.
pub struct Quiesced {
    inner: Box<dyn Engine>,
    gate: Arc<RwLock<()>>,
}

impl Quiesced {
    /// Wraps `inner`.
    pub fn new(inner: Box<dyn Engine>) -> Self {
        Quiesced {
            inner,
            gate: Arc::new(RwLock::new(())),
        }
    }
}

impl Engine for Quiesced {
    fn description(&self) -> &Description {
        self.inner.description()
    }
    fn context(&self) -> Result<Box<dyn Context>> {
        Ok(Box::new(GatedContext {
            inner: self.inner.context()?,
            gate: Arc::clone(&self.gate),
        }))
    }
    fn refitter(&self) -> Result<Box<dyn Refitter>> {
        Ok(Box::new(GatedRefitter {
            inner: self.inner.refitter()?,
            gate: Arc::clone(&self.gate),
        }))
    }
}

struct GatedContext {
    inner: Box<dyn Context>,
    gate: Arc<RwLock<()>>,
}

impl Context for GatedContext {
    fn infer(&mut self, inputs: &[Tensor]) -> Result<Vec<Tensor>> {
        let _shared = self.gate.read().unwrap_or_else(|p| p.into_inner());
        self.inner.infer(inputs)
    }
}

struct GatedRefitter {
    inner: Box<dyn Refitter>,
    gate: Arc<RwLock<()>>,
}

impl Refitter for GatedRefitter {
    fn set_named_weights(&mut self, name: &str, weights: &Tensor) -> Result<()> {
        self.inner.set_named_weights(name, weights)
    }
    fn set_named_weights_view(&mut self, name: &str, weights: TensorView<'_>) -> Result<()> {
        self.inner.set_named_weights_view(name, weights)
    }
    fn missing(&self) -> Result<Vec<String>> {
        self.inner.missing()
    }
    fn refit(&mut self) -> Result<()> {
        let _exclusive = self.gate.write().unwrap_or_else(|p| p.into_inner());
        self.inner.refit()
    }
}
