//! The crate's one integration-test binary.

mod bench;
mod check;
mod common;
mod conv_oracle;
mod differential;
mod errors;
mod fixtures;
mod fuzz;
mod graphs;
mod history;
mod magicmind;
mod new_user;
mod numerics;
mod plugin;
mod property;
mod pytorch;
mod real_networks;
mod rust_engine;
mod seed;
