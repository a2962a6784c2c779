//! Stress runs: R inference threads and W refit threads start on a barrier
//! and race ([`crate::race`]); every operation is recorded on one monotonic
//! clock and handed to the [history checker](crate::history).
//!
//! The stress model makes every weight version readable from one output: a
//! 1x1 conv from one input channel to [`CHANNELS`] output channels on a
//! 1x1x1x1 input of 1, whose weight for channel `c` in version `v` is code
//! `v + c` of the engine's [`Code`]: a number its precision holds exactly,
//! so output channel `c` is that weight unchanged. An output decodes to
//! version `v` only if every channel came from `v`: a mix of two versions,
//! or a half-written value, decodes to none (torn).

mod code;
mod scenarios;

pub use code::{
    disjoint_decode, disjoint_model, disjoint_values, model, Code, CHANNELS, DISJOINT_CHANNELS,
};
pub(super) use scenarios::{disjoint, scenario, vendor};
