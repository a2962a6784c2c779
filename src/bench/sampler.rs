//! Timing. [`time`]: batched, each sample runs the operation long enough
//! to be measured, and a measurement is the median of its samples with
//! their p10 and p90. [`latencies`]: every call timed on its own, for the
//! tails (p99, max) that batching averages away.

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

/// Times each call of `op` on its own: at least `min_ops` calls, then on
/// until `budget` has passed or `max_ops` calls were made. Returns the
/// per-call nanoseconds, sorted. Each figure includes reading the clock
/// twice (tens of nanoseconds).
pub fn latencies(
    budget: Duration,
    min_ops: usize,
    max_ops: usize,
    mut op: impl FnMut(),
) -> Vec<f64> {
    let start = Instant::now();
    let mut out = Vec::with_capacity(max_ops.min(1 << 20));
    while out.len() < min_ops || (out.len() < max_ops && start.elapsed() < budget) {
        let t = Instant::now();
        op();
        out.push(t.elapsed().as_nanos() as f64);
    }
    out.sort_by(f64::total_cmp);
    out
}

/// Quantiles of sorted per-call latencies.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Tail {
    /// Median.
    pub p50: f64,
    /// 10th percentile.
    pub p10: f64,
    /// 90th percentile.
    pub p90: f64,
    /// 99th percentile.
    pub p99: f64,
    /// The slowest call.
    pub max: f64,
}

impl Tail {
    /// The quantiles of `sorted` (ascending, not empty).
    pub fn of(sorted: &[f64]) -> Tail {
        let q = |p: f64| sorted[((sorted.len() - 1) as f64 * p).round() as usize];
        Tail {
            p50: q(0.5),
            p10: q(0.1),
            p90: q(0.9),
            p99: q(0.99),
            max: sorted[sorted.len() - 1],
        }
    }
}
