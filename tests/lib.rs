//! The crate's one integration-test binary.

mod common;
mod conv_oracle;
mod errors;
mod fixtures;
mod property;
mod pytorch;
mod seed;
