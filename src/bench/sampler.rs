//! Batched timing: each sample runs the operation long enough to be
//! measured, and a measurement is the median of its samples with their
//! p10 and p90.

use std::time::{Duration, Instant};

/// Times `op` in `samples` batches, each long enough to take about
/// `target`; returns (median, p10, p90) nanoseconds per operation.
pub fn time(samples: usize, target: Duration, mut op: impl FnMut()) -> (f64, f64, f64) {
    // Calibrate the batch size.
    let mut batch = 1usize;
    loop {
        let t = Instant::now();
        for _ in 0..batch {
            op();
        }
        let e = t.elapsed();
        if e >= target / 4 || batch >= 1 << 24 {
            let per = e.as_secs_f64() / batch as f64;
            batch = ((target.as_secs_f64() / per.max(1e-9)) as usize).clamp(1, 1 << 24);
            break;
        }
        batch *= 4;
    }
    let mut per_op: Vec<f64> = (0..samples)
        .map(|_| {
            let t = Instant::now();
            for _ in 0..batch {
                op();
            }
            t.elapsed().as_nanos() as f64 / batch as f64
        })
        .collect();
    per_op.sort_by(f64::total_cmp);
    let q = |p: f64| per_op[((per_op.len() - 1) as f64 * p).round() as usize];
    (q(0.5), q(0.1), q(0.9))
}
