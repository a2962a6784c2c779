//! The crate's benchmarks: `cargo bench`. Each group measures beside a
//! baseline taken in the same run, so results read as ratios.

use criterion::criterion_main;

mod engine;
mod history;

criterion_main!(engine::benches, history::benches);
