//! Whether the bench's machine unit tracks this machine's slow stretches:
//! conv_stack inference on the reference engine, each call followed by a
//! batch of `bench::sampler::machine_unit` about as long, and every half
//! second the median of each and of their ratio. Where the host slows the
//! machine for a while both columns move and the ratio holds (within a few
//! percent); `bench` reads its rows in machine units at full speed
//! (README, "Benchmarks and the regression gate").
//!
//! ```sh
//! cargo run --release --example machine_unit -- 30   # seconds
//! ```

use std::time::{Duration, Instant};

use refit_harness::bench::sampler::{unit_batch, unit_sample};
use refit_harness::bench::sweep::ones_inputs;
use refit_harness::engine::BuildOptions;
use refit_harness::spec::EngineSpec;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let secs: u64 = match std::env::args().nth(1) {
        Some(s) => s.parse().map_err(|e| format!("seconds: {e} in '{s}'"))?,
        None => 30,
    };
    let dir = tempfile::tempdir()?;
    let path = dir.path().join("conv_stack.onnx");
    std::fs::write(&path, refit_harness::fixtures::conv_stack().to_bytes())?;
    let engine = EngineSpec::Reference.open(&path, &BuildOptions::default())?;
    let x = ones_inputs(engine.as_ref());
    let mut ctx = engine.context()?;
    let mut out = Vec::new();
    let t = Instant::now();
    ctx.infer_into(&x, &mut out)?;
    let batch = unit_batch(t.elapsed());
    let median = |v: &mut Vec<f64>| {
        v.sort_by(f64::total_cmp);
        v[v.len() / 2]
    };
    println!(
        "{:>6} {:>12} {:>12} {:>8}",
        "s", "infer us", "units us", "ratio"
    );
    let start = Instant::now();
    while start.elapsed() < Duration::from_secs(secs) {
        let window = Instant::now();
        let (mut calls, mut units, mut ratios) = (Vec::new(), Vec::new(), Vec::new());
        while window.elapsed() < Duration::from_millis(500) {
            let t = Instant::now();
            ctx.infer_into(&x, &mut out)?;
            let call = t.elapsed().as_nanos() as f64;
            let unit = unit_sample(batch) * batch as f64;
            calls.push(call);
            units.push(unit);
            ratios.push(call / unit);
        }
        println!(
            "{:6.1} {:12.1} {:12.1} {:8.3}",
            start.elapsed().as_secs_f64(),
            median(&mut calls) / 1e3,
            median(&mut units) / 1e3,
            median(&mut ratios)
        );
    }
    Ok(())
}
