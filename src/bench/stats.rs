//! The statistics behind `bench.csv` and the gate: the median of a
//! measurement's samples with its confidence interval, the interval of a
//! ratio of two medians (paired where the samples alternated), and the
//! interval of a change between two runs with a correction for judging
//! many rows at once.
//!
//! A median's interval is a percentile bootstrap, as criterion computes its
//! own ([`RESAMPLES`] resamples, seeded, so a file gives the same figures
//! every time); above [`BOOTSTRAP_MAX`] samples (per-call latencies) the
//! order-statistic interval, which is distribution-free and, at that many
//! samples, as narrow. The spread of the samples (p10-p90) stays what it
//! is however many samples are taken; these intervals narrow as one over
//! the square root of the samples, which is what the gate's "samples
//! needed" advice follows.

use rand::rngs::Xoshiro256PlusPlus;
use rand::{RngExt, SeedableRng};

/// The confidence level of every interval written to `bench.csv`.
pub const LEVEL: f64 = 0.95;

/// Bootstrap resamples per interval.
pub const RESAMPLES: usize = 4000;

/// Above this many samples, intervals come from order statistics (and a
/// ratio's from its two medians' intervals) instead of the bootstrap.
pub const BOOTSTRAP_MAX: usize = 5000;

/// The median of `samples` (the mean of the middle two for an even count);
/// 0 for none.
pub fn median(samples: &[f64]) -> f64 {
    let mut v = samples.to_vec();
    median_in_place(&mut v)
}

/// As [`median`], reordering `v`.
fn median_in_place(v: &mut [f64]) -> f64 {
    let n = v.len();
    if n == 0 {
        return 0.0;
    }
    let (low, mid, _) = v.select_nth_unstable_by(n / 2, f64::total_cmp);
    let mid = *mid;
    if n % 2 == 1 {
        mid
    } else {
        let below = low.iter().copied().fold(f64::NEG_INFINITY, f64::max);
        (below + mid) / 2.0
    }
}

/// The `p` quantile (0..=1) of ascending `sorted` (not empty), nearest
/// rank.
pub(crate) fn quantile(sorted: &[f64], p: f64) -> f64 {
    sorted[((sorted.len() - 1) as f64 * p).round() as usize]
}

/// The standard normal's quantile: `x` with `P(Z <= x) = p`, for
/// `0 < p < 1` (bisection on the error function, to double precision).
pub fn normal_quantile(p: f64) -> f64 {
    let p = p.clamp(1e-300, 1.0 - 1e-16);
    let cdf = |x: f64| 0.5 * libm::erfc(-x / std::f64::consts::SQRT_2);
    let (mut lo, mut hi) = (-40.0f64, 40.0f64);
    for _ in 0..200 {
        let mid = (lo + hi) / 2.0;
        if cdf(mid) < p {
            lo = mid;
        } else {
            hi = mid;
        }
    }
    (lo + hi) / 2.0
}

/// Samples taken in rounds ([`crate::bench::BenchConfig::rounds`]): the
/// samples, in order, and how many each round took. Samples of one round
/// share that round's conditions (a burst of load elsewhere on the
/// machine), so the rounds, not the samples, are the independent units.
#[derive(Clone, Debug)]
pub struct Rounds<'a> {
    /// Every sample, round after round.
    pub samples: &'a [f64],
    /// Samples per round, summing to `samples.len()`.
    pub sizes: Vec<usize>,
}

impl<'a> Rounds<'a> {
    /// Samples all taken in one round.
    pub fn one(samples: &'a [f64]) -> Self {
        Rounds {
            samples,
            sizes: vec![samples.len()],
        }
    }

    /// Each round's samples (sizes that do not add up count as one round).
    fn split(&self) -> Vec<&'a [f64]> {
        if self.sizes.iter().sum::<usize>() != self.samples.len() || self.sizes.is_empty() {
            return vec![self.samples];
        }
        let mut rest = self.samples;
        self.sizes
            .iter()
            .map(|&n| {
                let (a, b) = rest.split_at(n);
                rest = b;
                a
            })
            .filter(|r| !r.is_empty())
            .collect()
    }
}

/// The median of one resample of rounds: each drawn round (`picks`, with
/// replacement), its samples drawn again within it when `within`. Without
/// (rounds of many samples, whose own medians are already precise) the
/// rounds are taken whole and the median of each combination of rounds is
/// computed once (`memo`).
fn resampled_median(
    rounds: &[&[f64]],
    picks: &mut [usize],
    within: bool,
    rng: &mut Xoshiro256PlusPlus,
    buf: &mut Vec<f64>,
    memo: &mut std::collections::HashMap<Vec<usize>, f64>,
) -> f64 {
    buf.clear();
    if within {
        for &k in picks.iter() {
            let r = rounds[k];
            buf.extend((0..r.len()).map(|_| r[rng.random_range(0..r.len())]));
        }
        return median_in_place(buf);
    }
    picks.sort_unstable();
    if let Some(m) = memo.get(&*picks) {
        return *m;
    }
    for &k in picks.iter() {
        buf.extend_from_slice(rounds[k]);
    }
    let m = median_in_place(buf);
    memo.insert(picks.to_vec(), m);
    m
}

/// The `level` interval of the median of samples taken in rounds (not
/// empty): a two-stage bootstrap, as for clustered data: each resample
/// draws as many rounds as were taken, with replacement, then samples
/// within each drawn round. A round that ran slower than the others
/// widens the interval, where drawing samples alone would give a narrow
/// interval around a figure that depends on which round was unlucky. With
/// one round it is the plain percentile bootstrap; above
/// [`BOOTSTRAP_MAX`] samples, rounds are drawn whole, and with one round
/// the interval is the order-statistic one.
pub fn median_interval(rounds: &Rounds<'_>, level: f64) -> (f64, f64) {
    let parts = rounds.split();
    let n = rounds.samples.len();
    if n <= 1 {
        let v = rounds.samples.first().copied().unwrap_or(0.0);
        return (v, v);
    }
    let within = n <= BOOTSTRAP_MAX;
    if !within && parts.len() == 1 {
        return order_interval(rounds.samples, level);
    }
    let mut rng = Xoshiro256PlusPlus::seed_from_u64(0x5eed_0000 + n as u64);
    let mut buf = Vec::with_capacity(n);
    let mut picks = vec![0; parts.len()];
    let mut memo = std::collections::HashMap::new();
    let mut stats: Vec<f64> = (0..RESAMPLES)
        .map(|_| {
            draw(&mut picks, parts.len(), &mut rng);
            resampled_median(&parts, &mut picks, within, &mut rng, &mut buf, &mut memo)
        })
        .collect();
    percentile_interval(&mut stats, level)
}

/// Draws `picks.len()` round indices below `rounds`, with replacement (the
/// identity for one round).
fn draw(picks: &mut [usize], rounds: usize, rng: &mut Xoshiro256PlusPlus) {
    for p in picks.iter_mut() {
        *p = if rounds == 1 {
            0
        } else {
            rng.random_range(0..rounds)
        };
    }
}

/// The distribution-free interval of the median from order statistics:
/// the ranks a binomial(n, 1/2) puts either side of the middle, by its
/// normal approximation (for many samples).
fn order_interval(samples: &[f64], level: f64) -> (f64, f64) {
    let mut v = samples.to_vec();
    v.sort_by(f64::total_cmp);
    let n = v.len() as f64;
    let z = normal_quantile(0.5 + level / 2.0);
    let half = z * n.sqrt() / 2.0;
    let lo = ((n / 2.0 - half).floor().max(1.0) as usize) - 1;
    let hi = ((n / 2.0 + half).ceil().min(n) as usize) - 1;
    (v[lo], v[hi])
}

/// The `level` interval of `median(a) / median(b)` (neither empty), both
/// taken in the same rounds: a two-stage bootstrap as in
/// [`median_interval`], drawing the same rounds for both (a round that
/// slowed both moves the ratio less). `paired`: within a round the samples
/// were taken alternately (`a[i]` beside `b[i]`), so pairs are drawn
/// together and a machine that slowed down during the round, slowing both
/// alike, widens nothing.
pub fn ratio_interval(a: &Rounds<'_>, b: &Rounds<'_>, paired: bool, level: f64) -> (f64, f64) {
    if a.samples.is_empty() || b.samples.is_empty() {
        return (0.0, 0.0);
    }
    let (pa, pb) = (a.split(), b.split());
    let within = a.samples.len().max(b.samples.len()) <= BOOTSTRAP_MAX;
    if !within && pa.len() == 1 && pb.len() == 1 {
        // One round of many samples each: the two medians' order-statistic
        // intervals, combined.
        let z = normal_quantile(0.5 + level / 2.0);
        let est = |r: &Rounds<'_>| Estimate {
            value: median(r.samples),
            interval: Some(order_interval(r.samples, level)),
        };
        return change_interval(&est(b), &est(a), z);
    }
    let shared = pa.len() == pb.len();
    let paired = paired && shared && pa.iter().zip(&pb).all(|(x, y)| x.len() == y.len());
    let seed = (a.samples.len() * 7919 + b.samples.len()) as u64;
    let mut rng = Xoshiro256PlusPlus::seed_from_u64(0x5eed_1000 + seed);
    let (mut ba, mut bb) = (Vec::new(), Vec::new());
    let (mut picks_a, mut picks_b) = (vec![0; pa.len()], vec![0; pb.len()]);
    let (mut memo_a, mut memo_b) = Default::default();
    let mut stats: Vec<f64> = (0..RESAMPLES)
        .map(|_| {
            draw(&mut picks_a, pa.len(), &mut rng);
            if shared {
                picks_b.copy_from_slice(&picks_a);
            } else {
                draw(&mut picks_b, pb.len(), &mut rng);
            }
            let (x, y) = if paired && within {
                ba.clear();
                bb.clear();
                for &k in &picks_a {
                    let (x, y) = (pa[k], pb[k]);
                    for _ in 0..x.len() {
                        let i = rng.random_range(0..x.len());
                        ba.push(x[i]);
                        bb.push(y[i]);
                    }
                }
                (median_in_place(&mut ba), median_in_place(&mut bb))
            } else {
                (
                    resampled_median(&pa, &mut picks_a, within, &mut rng, &mut ba, &mut memo_a),
                    resampled_median(&pb, &mut picks_b, within, &mut rng, &mut bb, &mut memo_b),
                )
            };
            if y > 0.0 {
                x / y
            } else {
                f64::INFINITY
            }
        })
        .collect();
    percentile_interval(&mut stats, level)
}

/// The central `level` interval of bootstrap statistics.
fn percentile_interval(stats: &mut [f64], level: f64) -> (f64, f64) {
    stats.sort_by(f64::total_cmp);
    let tail = (1.0 - level) / 2.0;
    (quantile(stats, tail), quantile(stats, 1.0 - tail))
}

/// A figure with the [`LEVEL`] interval it was measured with, or none (a
/// file written before intervals were kept, or an exact count).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Estimate {
    /// The point estimate.
    pub value: f64,
    /// Its [`LEVEL`] confidence interval.
    pub interval: Option<(f64, f64)>,
}

impl Estimate {
    /// The standard errors of the figure's logarithm below and above it
    /// implied by its interval (0 without one): a percentile bootstrap's
    /// interval is not symmetric about its figure (a median that sits at
    /// one end of its interval when most of a run fell in a slow stretch),
    /// and each side keeps its own width.
    fn log_se(&self) -> (f64, f64) {
        match self.interval {
            Some((lo, hi)) if lo > 0.0 && hi >= lo && self.value > 0.0 => {
                let z = normal_quantile(0.5 + LEVEL / 2.0);
                let v = self.value.ln();
                ((v - lo.ln()).max(0.0) / z, (hi.ln() - v).max(0.0) / z)
            }
            _ => (0.0, 0.0),
        }
    }
}

/// The interval of `after / before` at the confidence whose two-sided
/// normal quantile is `z` (`normal_quantile(0.5 + level / 2)`): on
/// the log scale, the two estimates' standard errors (from their
/// [`LEVEL`] intervals) combined as independent, each side of the change
/// from the sides that move it that way (its lower end from how far
/// `after` may lie below its figure and `before` above). A figure without
/// an interval counts as exact.
pub fn change_interval(before: &Estimate, after: &Estimate, z: f64) -> (f64, f64) {
    if before.value <= 0.0 || after.value <= 0.0 {
        return (f64::NAN, f64::NAN);
    }
    let d = after.value.ln() - before.value.ln();
    let ((b_below, b_above), (a_below, a_above)) = (before.log_se(), after.log_se());
    (
        (d - z * a_below.hypot(b_above)).exp(),
        (d + z * a_above.hypot(b_below)).exp(),
    )
}

/// The confidence each of `m` intervals needs so that all `m` hold
/// together with confidence `family` (Bonferroni).
pub fn bonferroni(family: f64, m: usize) -> f64 {
    1.0 - (1.0 - family) / m.max(1) as f64
}
