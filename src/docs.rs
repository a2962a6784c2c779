//! Long-form documentation, as modules with no code.

pub mod contract;
