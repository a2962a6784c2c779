//! Timing. [`time`]: batched, each sample runs the operation long enough
//! to be measured, and a measurement is the median of its samples with
//! their p10 and p90, the samples kept for the median's confidence
//! interval; [`time_pair`]: two operations, their samples alternating.
//! [`latencies`]: every call timed on its own, for the tails (p99, max)
//! that batching averages away. [`machine_unit`]: a fixed piece of work
//! sampled beside a measurement ([`time_in_units`], [`latencies`]), so its
//! figure can be read in units of what the machine did at that moment
//! ([`Stats::in_units`]) and kept to the samples taken at full speed
//! ([`Stats::at_full_speed`]).

use std::hint::black_box;
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
    /// Nanoseconds per [`machine_unit`] in a batch sampled beside each
    /// sample, in the same order ([`time_in_units`]); empty when none was.
    pub units: Vec<f64>,
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
            units: Vec::new(),
        }
    }

    /// The samples in machine units, each over the [`machine_unit`] batch
    /// sampled beside it ([`Stats::per`]), of those taken at full speed
    /// ([`Stats::at_full_speed`]); `None` without units.
    pub fn in_units(&self) -> Option<Stats> {
        Some(self.in_units_all()?.kept(&self.at_full_speed()))
    }

    /// As [`Stats::in_units`], every sample kept, those taken while the
    /// machine ran slow as well.
    pub fn in_units_all(&self) -> Option<Stats> {
        if self.units.len() != self.samples.len() || self.units.is_empty() {
            return None;
        }
        let units = Stats::in_rounds(self.units.clone(), self.rounds.clone());
        self.per(&units)
    }

    /// Which samples were taken while the machine ran at full speed: the
    /// [`machine_unit`] batch beside them took at most [`FULL_SPEED`]
    /// times the fastest tenth of the batches. All of them without units.
    ///
    /// A shared machine runs in stretches at another speed (seconds at half
    /// speed, when the host gives the core to someone else), and the work
    /// under test and the unit beside it do not slow by exactly the same
    /// factor there (a convolution 2x, the unit 2-2.5x), so a figure over
    /// every sample moves with how much of the run fell in such stretches.
    /// At full speed both are steady from run to run.
    pub fn at_full_speed(&self) -> Vec<bool> {
        if self.units.len() != self.samples.len() || self.units.is_empty() {
            return vec![true; self.samples.len()];
        }
        let mut sorted = self.units.clone();
        sorted.sort_by(f64::total_cmp);
        let fast = stats::quantile(&sorted, 0.1) * FULL_SPEED;
        self.units.iter().map(|u| *u <= fast).collect()
    }

    /// The samples where `keep` holds, in their rounds (a round left
    /// without any dropped), units with them; all of them when fewer than
    /// [`MIN_KEPT`] would be left.
    pub fn kept(&self, keep: &[bool]) -> Stats {
        if keep.len() != self.samples.len() || keep.iter().filter(|k| **k).count() < MIN_KEPT {
            return self.clone();
        }
        let has_units = self.units.len() == self.samples.len();
        let (mut samples, mut units, mut sizes) = (Vec::new(), Vec::new(), Vec::new());
        let mut at = 0;
        for &n in &self.rounds {
            let end = (at + n).min(self.samples.len());
            let before = samples.len();
            for (i, _) in keep[at..end].iter().enumerate().filter(|(_, k)| **k) {
                samples.push(self.samples[at + i]);
                if has_units {
                    units.push(self.units[at + i]);
                }
            }
            if samples.len() > before {
                sizes.push(samples.len() - before);
            }
            at = end;
        }
        Stats {
            units,
            ..Stats::in_rounds(samples, sizes)
        }
    }

    /// The median with its [`stats::LEVEL`] interval
    /// ([`stats::median_interval`], the rounds drawn).
    pub fn estimate(&self) -> stats::Estimate {
        stats::Estimate {
            value: self.median,
            interval: Some(stats::median_interval(&self.by_round(), stats::LEVEL)),
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

    /// Each sample over the one `base` took beside it (`base` sampled
    /// alternately with this one, as [`time_pair`] and
    /// [`time_alternating`] do), in the same rounds; `None` when the two do
    /// not pair up. The median of these ratios cancels what moved both
    /// samples of a pair alike (a machine slowed for a while), where the
    /// ratio of the two medians does not once a slow stretch holds about
    /// half the samples.
    pub fn per(&self, base: &Stats) -> Option<Stats> {
        if self.samples.len() != base.samples.len()
            || self.rounds != base.rounds
            || self.samples.is_empty()
            || base.samples.iter().any(|b| *b <= 0.0 || !b.is_finite())
        {
            return None;
        }
        let ratios = self
            .samples
            .iter()
            .zip(&base.samples)
            .map(|(a, b)| a / b)
            .collect();
        Some(Stats::in_rounds(ratios, self.rounds.clone()))
    }

    /// The samples with their rounds, for [`stats`]' intervals.
    pub(crate) fn by_round(&self) -> stats::Rounds<'_> {
        stats::Rounds {
            samples: &self.samples,
            sizes: self.rounds.clone(),
        }
    }
}

/// A sample was taken at full speed when the [`machine_unit`] batch
/// beside it took at most this many times the fastest tenth of them
/// ([`Stats::at_full_speed`]).
pub const FULL_SPEED: f64 = 1.25;

/// The fewest samples [`time`] and [`time_pair`] take, whatever the budget:
/// what the slowest operations (an oracle or a ResNet-18 inference, of
/// seconds) take in each round. Their rounds' medians vary as their samples'
/// noise over the square root of this count (on a shared 2-core VM, samples
/// 15-30% apart, the rounds' medians 7-25% apart with 3 a round), and
/// their intervals with them.
pub const MIN_SAMPLES: usize = 6;

/// The fewest samples a figure kept to those taken at full speed
/// ([`Stats::kept`]) rests on; with fewer, it keeps every sample.
pub const MIN_KEPT: usize = 3;

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

/// A fixed piece of work the machine's speed at a moment is read from:
/// `y += a * x` over 1024 floats that stay in the first-level cache, the
/// loads, multiplies, adds and stores of a convolution's inner loop
/// (about a microsecond). Sampled beside a measurement ([`time_in_units`],
/// [`latencies`]), the measurement's figure over it ([`Stats::per`]) is
/// its time in units of this work: a stretch in which the host gives this
/// machine less of a core moves both alike, a slower engine moves only the
/// measurement. (Of the kernels tried on a shared 2-core VM whose slow
/// stretches made inference 2x slower, this one slowed as inference did;
/// a dot product that keeps its sums in registers slowed 1.4x, integer
/// arithmetic 1.1x.)
pub fn machine_unit() {
    thread_local! {
        static VECTORS: std::cell::RefCell<(Vec<f32>, Vec<f32>)> = std::cell::RefCell::new((
            (0..1024).map(|i| (i % 7) as f32 * 0.25).collect(),
            vec![0.0; 1024],
        ));
    }
    VECTORS.with_borrow_mut(|(x, y)| {
        let a = black_box(0.5f32);
        for (yv, xv) in y.iter_mut().zip(black_box(x.as_slice())) {
            *yv = *yv * 0.5 + a * xv;
        }
        black_box(&*y);
    });
}

/// As [`time_alternating`], with a batch of [`machine_unit`] (a quarter
/// of `target`) sampled before the first turn and after each: every
/// result carries, for each turn, the mean of the two unit batches either
/// side of it ([`Stats::units`]), so each sample can be read in machine
/// units and at full speed ([`Stats::at_full_speed`]). A turn counts as
/// at full speed only when the machine ran at full speed both as it began
/// and as it ended: with slow operations (a turn of tens of milliseconds
/// or more) the batch after it alone misses a slow stretch that ended
/// within it.
pub fn time_in_units(samples: usize, target: Duration, ops: &mut [&mut dyn FnMut()]) -> Vec<Stats> {
    let batches: Vec<usize> = ops.iter_mut().map(|op| calibrate(target, op)).collect();
    let unit = calibrate(target / 4, &mut machine_unit);
    let mut out: Vec<Vec<f64>> = vec![Vec::with_capacity(samples); ops.len()];
    let mut units = Vec::with_capacity(samples);
    let start = Instant::now();
    let per_turn = target.saturating_mul(ops.len().max(1) as u32) + target / 4;
    let mut before = sample(unit, &mut machine_unit);
    while more(units.len(), samples, per_turn, start) {
        for ((op, batch), o) in ops.iter_mut().zip(&batches).zip(&mut out) {
            o.push(sample(*batch, op));
        }
        let after = sample(unit, &mut machine_unit);
        units.push((before + after) / 2.0);
        before = after;
    }
    out.into_iter()
        .map(|s| Stats {
            units: units.clone(),
            ..Stats::of(s)
        })
        .collect()
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
/// until `budget` has passed or `max_ops` calls were made; a batch of
/// [`machine_unit`] about as long as one call is timed on its own before
/// the first call and after each, and each call's unit
/// ([`Stats::units`]) is the mean of the two either side of it, so each
/// latency can also be read in units of what the machine did around it. The samples are per-call
/// nanoseconds in the order taken (the tails' quantiles: [`Tail`]); each
/// includes reading the clock twice (tens of nanoseconds).
pub fn latencies(budget: Duration, min_ops: usize, max_ops: usize, mut op: impl FnMut()) -> Stats {
    let mut v = latencies_alternating(budget, min_ops, max_ops, &mut [&mut op]);
    v.swap_remove(0)
}

/// [`latencies`] of several operations in turn, a call of each per turn
/// (each with its unit batch after it): the `i`th call of one and of
/// another ran side by side, so their ratios pair ([`Stats::per`]) and a
/// machine that slows for a while slows both. `budget` is per operation.
pub fn latencies_alternating(
    budget: Duration,
    min_ops: usize,
    max_ops: usize,
    ops: &mut [&mut dyn FnMut()],
) -> Vec<Stats> {
    // Each operation's batch: units in one call's time, from a few calls.
    let batches: Vec<usize> = ops
        .iter_mut()
        .map(|op| {
            let t = Instant::now();
            for _ in 0..3 {
                op();
            }
            unit_batch(t.elapsed() / 3)
        })
        .collect();
    // Twice the calls' budget: each call has its batch beside it.
    let budget = budget.saturating_mul(2 * ops.len().max(1) as u32);
    let start = Instant::now();
    let cap = max_ops.min(1 << 20);
    let mut calls: Vec<Vec<f64>> = vec![Vec::with_capacity(cap); ops.len()];
    let mut units: Vec<Vec<f64>> = vec![Vec::with_capacity(cap); ops.len()];
    let mut before = batches.first().map_or(0.0, |b| unit_sample(*b));
    let done = |calls: &[Vec<f64>]| {
        let n = calls.first().map_or(usize::MAX, Vec::len);
        n >= min_ops && (n >= max_ops || start.elapsed() >= budget)
    };
    while !done(&calls) {
        for (i, op) in ops.iter_mut().enumerate() {
            let t = Instant::now();
            op();
            calls[i].push(t.elapsed().as_nanos() as f64);
            let after = unit_sample(batches[i]);
            units[i].push((before + after) / 2.0);
            before = after;
        }
    }
    calls
        .into_iter()
        .zip(units)
        .map(|(c, u)| Stats {
            units: u,
            ..Stats::of(c)
        })
        .collect()
}

/// How many [`machine_unit`]s take about `like` (at least one).
pub fn unit_batch(like: Duration) -> usize {
    let per_ms = calibrate(Duration::from_millis(1), &mut machine_unit);
    let per_unit = Duration::from_millis(1).as_secs_f64() / per_ms as f64;
    ((like.as_secs_f64() / per_unit) as usize).clamp(1, 1 << 20)
}

/// Nanoseconds per [`machine_unit`] over one batch of `batch`.
pub fn unit_sample(batch: usize) -> f64 {
    sample(batch, &mut machine_unit)
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

#[cfg(test)]
mod tests {
    use super::*;

    fn spin(d: Duration) {
        let t = Instant::now();
        while t.elapsed() < d {
            std::hint::spin_loop();
        }
    }

    #[test]
    fn alternating_latencies_pair_call_by_call() {
        let (mut a, mut b) = (0usize, 0usize);
        let v = latencies_alternating(
            Duration::ZERO,
            12,
            1000,
            &mut [
                &mut || {
                    a += 1;
                    spin(Duration::from_micros(50));
                },
                &mut || {
                    b += 1;
                    spin(Duration::from_micros(150));
                },
            ],
        );
        // Three calls each to size the unit batches, then the asked ones
        // (the budget spent at once): as many of each, a unit beside each.
        assert_eq!((a, b), (15, 15));
        for s in &v {
            assert_eq!((s.samples.len(), s.units.len()), (12, 12), "{s:?}");
            assert!(s.units.iter().all(|u| *u > 0.0), "{s:?}");
        }
        // The second op's calls over the first's beside them: about 3.
        let r = v[1].per(&v[0]).expect("paired");
        assert!((2.0..4.5).contains(&r.median), "{r:?}");
        // One op: the same as `latencies`.
        let one = latencies(Duration::ZERO, 5, 1000, || spin(Duration::from_micros(10)));
        assert_eq!((one.samples.len(), one.units.len()), (5, 5));
    }
}
