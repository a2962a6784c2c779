//! Timing. [`time`]: batched, each sample runs the operation long enough
//! to be measured, and a measurement is the median of its samples with
//! their p10 and p90; [`time_pair`]: two operations, their samples
//! alternating. [`latencies`]: every call timed on its own, for the tails
//! (p99, max) that batching averages away.

use std::time::{Duration, Instant};

/// A measurement: (median, p10, p90) nanoseconds per operation.
pub type Stats = (f64, f64, f64);

/// Times `op` in `samples` batches, each long enough to take about
/// `target`; returns (median, p10, p90) nanoseconds per operation.
pub fn time(samples: usize, target: Duration, mut op: impl FnMut()) -> Stats {
    let batch = calibrate(target, &mut op);
    let mut per_op: Vec<f64> = (0..samples).map(|_| sample(batch, &mut op)).collect();
    quantiles(&mut per_op)
}

/// As [`time`] for two operations whose ratio is wanted: their samples
/// alternate (a, b, a, b, ...), so a machine that gets slower or faster
/// during the run moves both alike and the ratio of the medians stays
/// honest on a shared machine. For two runs of the same kind of code: one
/// that leaves the core in another state (a wide-vector memcpy before a
/// scalar loop) slows the other one down.
pub fn time_pair(
    samples: usize,
    target: Duration,
    mut a: impl FnMut(),
    mut b: impl FnMut(),
) -> (Stats, Stats) {
    let batch_a = calibrate(target, &mut a);
    let batch_b = calibrate(target, &mut b);
    let (mut sa, mut sb) = (Vec::with_capacity(samples), Vec::with_capacity(samples));
    for _ in 0..samples {
        sa.push(sample(batch_a, &mut a));
        sb.push(sample(batch_b, &mut b));
    }
    (quantiles(&mut sa), quantiles(&mut sb))
}

/// The batch size that makes one sample of `op` take about `target`.
fn calibrate(target: Duration, op: &mut impl FnMut()) -> usize {
    let mut batch = 1usize;
    loop {
        let t = Instant::now();
        for _ in 0..batch {
            op();
        }
        let e = t.elapsed();
        if e >= target / 4 || batch >= 1 << 24 {
            let per = e.as_secs_f64() / batch as f64;
            return ((target.as_secs_f64() / per.max(1e-9)) as usize).clamp(1, 1 << 24);
        }
        batch *= 4;
    }
}

/// Nanoseconds per operation over one batch.
fn sample(batch: usize, op: &mut impl FnMut()) -> f64 {
    let t = Instant::now();
    for _ in 0..batch {
        op();
    }
    t.elapsed().as_nanos() as f64 / batch as f64
}

/// (median, p10, p90) of samples (not empty).
fn quantiles(samples: &mut [f64]) -> Stats {
    samples.sort_by(f64::total_cmp);
    let q = |p: f64| samples[((samples.len() - 1) as f64 * p).round() as usize];
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
