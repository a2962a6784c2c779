//! Timing. [`time`]: batched, each sample runs the operation long enough
//! to be measured, and a measurement is the median of its samples with
//! their p10 and p90, the samples kept for the median's confidence
//! interval; [`time_pair`]: two operations, their samples alternating.
//! [`latencies`]: every call timed on its own, for the tails (p99, max)
//! that batching averages away.

use std::time::{Duration, Instant};

use super::stats;

/// A measurement: nanoseconds per operation, one figure per sample, in
/// the order taken, with their median, p10 and p90.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Stats {
    /// The median sample.
    pub median: f64,
    /// 10th percentile.
    pub p10: f64,
    /// 90th percentile.
    pub p90: f64,
    /// Every sample, in the order taken (for a pair, `a.samples[i]` was
    /// taken beside `b.samples[i]`).
    pub samples: Vec<f64>,
    /// How many samples each round took, in order ([`stats::Rounds`]).
    pub rounds: Vec<usize>,
}

impl Stats {
    /// The statistics of `samples` (not empty), taken in one round.
    pub fn of(samples: Vec<f64>) -> Stats {
        let n = samples.len();
        Stats::in_rounds(samples, vec![n])
    }

    /// The statistics of `samples` taken in rounds of `sizes` samples.
    pub fn in_rounds(samples: Vec<f64>, sizes: Vec<usize>) -> Stats {
        let mut sorted = samples.clone();
        sorted.sort_by(f64::total_cmp);
        Stats {
            median: stats::median(&sorted),
            p10: stats::quantile(&sorted, 0.1),
            p90: stats::quantile(&sorted, 0.9),
            samples,
            rounds: sizes,
        }
    }

    /// Each round's median.
    pub fn round_medians(&self) -> Vec<f64> {
        let mut rest = self.samples.as_slice();
        let mut out = Vec::new();
        for &n in &self.rounds {
            let (a, b) = rest.split_at(n.min(rest.len()));
            out.push(stats::median(a));
            rest = b;
        }
        out
    }

    /// The samples with their rounds, for [`stats`]' intervals.
    pub fn by_round(&self) -> stats::Rounds<'_> {
        stats::Rounds {
            samples: &self.samples,
            sizes: self.rounds.clone(),
        }
    }
}

/// The fewest samples [`time`] and [`time_pair`] take, whatever the budget.
pub const MIN_SAMPLES: usize = 3;

/// Whether a measurement begun at `start` with `taken` samples goes on:
/// up to `samples`, within the budget of `samples` x `target` (an
/// operation slower than `target` is one call per sample, and takes fewer),
/// and at least [`MIN_SAMPLES`].
fn more(taken: usize, samples: usize, target: Duration, start: Instant) -> bool {
    taken < MIN_SAMPLES
        || (taken < samples && start.elapsed() < target.saturating_mul(samples as u32))
}

/// Times `op` in up to `samples` batches, each long enough to take about
/// `target` (many short samples: their median ignores a disturbance that
/// lasts less than half of them, where one long sample averages it in);
/// nanoseconds per operation.
pub fn time(samples: usize, target: Duration, mut op: impl FnMut()) -> Stats {
    let batch = calibrate(target, &mut op);
    let start = Instant::now();
    let mut out = Vec::with_capacity(samples);
    while more(out.len(), samples, target, start) {
        out.push(sample(batch, &mut op));
    }
    Stats::of(out)
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
    let mut s = time_alternating(samples, target, &mut [&mut a, &mut b]).into_iter();
    let (sa, sb) = (s.next(), s.next());
    (sa.unwrap_or_default(), sb.unwrap_or_default())
}

/// As [`time_pair`] for any number of operations: one sample of each in
/// turn, so `result[i].samples[k]` were all taken together.
pub fn time_alternating(
    samples: usize,
    target: Duration,
    ops: &mut [&mut dyn FnMut()],
) -> Vec<Stats> {
    let batches: Vec<usize> = ops.iter_mut().map(|op| calibrate(target, op)).collect();
    let mut out: Vec<Vec<f64>> = vec![Vec::with_capacity(samples); ops.len()];
    let start = Instant::now();
    let per_turn = target.saturating_mul(ops.len().max(1) as u32);
    while more(
        out.first().map_or(samples, Vec::len),
        samples,
        per_turn,
        start,
    ) {
        for ((op, batch), o) in ops.iter_mut().zip(&batches).zip(&mut out) {
            o.push(sample(*batch, op));
        }
    }
    out.into_iter().map(Stats::of).collect()
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
        let q = |p: f64| stats::quantile(sorted, p);
        Tail {
            p50: stats::median(sorted),
            p10: q(0.1),
            p90: q(0.9),
            p99: q(0.99),
            max: sorted[sorted.len() - 1],
        }
    }
}
