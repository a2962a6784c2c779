//! The history checker: given every inference and refit of a concurrent
//! run (start and end on one monotonic clock, the thread, what each
//! observed or wrote), decides whether the engine kept its refit promise.
//! It knows nothing of engines: recorders decode each inference's output to
//! the weight version it came from (or to none: torn) and hand it the
//! history.
//!
//! A refit is a write of a unique version to one register (the weights);
//! its interval is the `refit()` call, since staged weights must not be
//! visible before it. An inference is a read. Version `initial` is written
//! at time 0. The verdicts:
//!
//! - **torn**: an output that matches no single committed version;
//! - **stale**: an inference that began after refit `v` returned, yet
//!   observed a version whose refit returned before `v`'s began;
//! - **lost**: an inference observed a version whose refit had not begun
//!   (some refit published weights it did not own), or a refit returned
//!   success but an inference that ran after it, with no other refit in
//!   progress or begun since, did not observe it;
//! - **non-monotone**: one thread observed a version, then one whose refit
//!   returned before that version's refit began;
//! - **not linearizable**: with several writers, the reads and writes admit
//!   no single order consistent with real time (checked by the zone method
//!   of Gibbons and Korach, as Golab, Li and Shah use it, in O(n log n));
//! - **overlap**: for engines whose contract is quiesced, an inference that
//!   overlapped a refit.

use std::collections::HashMap;
use std::fmt;

/// A weight version: unique per refit.
pub type Version = u64;

/// One inference.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Read {
    /// The thread that ran it.
    pub thread: u32,
    /// Start, in nanoseconds on the run's clock.
    pub start: u64,
    /// End.
    pub end: u64,
    /// The version its output decodes to; `None` when it decodes to none.
    pub value: Option<Version>,
}

/// One successful refit.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Write {
    /// The thread that ran it.
    pub thread: u32,
    /// When `refit()` was called.
    pub start: u64,
    /// When it returned.
    pub end: u64,
    /// The version it wrote.
    pub version: Version,
}

/// A concurrent run's operations.
#[derive(Clone, Debug, Default)]
pub struct History {
    /// The version served before any refit.
    pub initial: Version,
    /// Every inference.
    pub reads: Vec<Read>,
    /// Every successful refit.
    pub writes: Vec<Write>,
}

/// The kinds of violation.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Kind {
    /// An output from no single committed version.
    Torn,
    /// Older than a refit that had returned.
    Stale,
    /// A committed refit replaced or never seen.
    Lost,
    /// One thread going back in versions.
    NonMonotone,
    /// No order of the operations consistent with real time.
    NotLinearizable,
    /// An inference overlapping a refit under a quiesced contract.
    Overlap,
}

impl Kind {
    /// Every kind, in report order.
    pub const ALL: [Kind; 6] = [
        Kind::Torn,
        Kind::Stale,
        Kind::Lost,
        Kind::NonMonotone,
        Kind::NotLinearizable,
        Kind::Overlap,
    ];

    /// Its name in reports.
    pub fn name(self) -> &'static str {
        match self {
            Kind::Torn => "torn",
            Kind::Stale => "stale",
            Kind::Lost => "lost",
            Kind::NonMonotone => "non-monotone",
            Kind::NotLinearizable => "not-linearizable",
            Kind::Overlap => "overlap",
        }
    }
}

impl fmt::Display for Kind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// One violation with its evidence: the operations involved and their times.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Violation {
    /// The kind.
    pub kind: Kind,
    /// The evidence.
    pub evidence: String,
}

/// The checker's findings.
#[derive(Clone, Debug, Default)]
pub struct Findings {
    /// Violations by kind.
    pub counts: HashMap<Kind, usize>,
    /// The first few violations of each kind, in full.
    pub examples: Vec<Violation>,
    /// How many distinct versions the reads observed.
    pub versions_observed: usize,
}

impl Findings {
    /// Total violations.
    pub fn total(&self) -> usize {
        self.counts.values().sum()
    }

    /// The first `n` violations kept, `[kind] evidence` each, joined by
    /// `; `.
    pub fn first(&self, n: usize) -> String {
        let first: Vec<String> = self
            .examples
            .iter()
            .take(n)
            .map(|v| format!("[{}] {}", v.kind, v.evidence))
            .collect();
        first.join("; ")
    }

    /// `torn 0, stale 3, ...` for the kinds that occurred, or `none`.
    pub fn summary(&self) -> String {
        let parts: Vec<String> = Kind::ALL
            .iter()
            .filter_map(|k| {
                self.counts
                    .get(k)
                    .filter(|&&n| n > 0)
                    .map(|n| format!("{k} {n}"))
            })
            .collect();
        if parts.is_empty() {
            "none".into()
        } else {
            parts.join(", ")
        }
    }
}

fn ms(t: u64) -> String {
    format!("{:.3} ms", t as f64 / 1e6)
}

fn read_text(r: &Read) -> String {
    let v = r
        .value
        .map_or_else(|| "no single version".to_string(), |v| format!("v{v}"));
    format!(
        "inference on thread {} [{} .. {}] observed {v}",
        r.thread,
        ms(r.start),
        ms(r.end)
    )
}

fn write_text(w: &Write) -> String {
    if w.thread == u32::MAX {
        return format!("the initial weights v{}", w.version);
    }
    format!(
        "refit v{} on thread {} [{} .. {}]",
        w.version,
        w.thread,
        ms(w.start),
        ms(w.end)
    )
}

struct Recorder {
    findings: Findings,
    keep: usize,
    kept: HashMap<Kind, usize>,
}

impl Recorder {
    fn add(&mut self, kind: Kind, evidence: impl FnOnce() -> String) {
        *self.findings.counts.entry(kind).or_default() += 1;
        let kept = self.kept.entry(kind).or_default();
        if *kept < self.keep {
            *kept += 1;
            self.findings.examples.push(Violation {
                kind,
                evidence: evidence(),
            });
        }
    }
}

/// Checks a history. `quiesced`: the engine's contract forbids inference
/// during a refit. `keep`: how many violations of each kind to keep in full.
pub fn check(h: &History, quiesced: bool, keep: usize) -> Findings {
    let mut rec = Recorder {
        findings: Findings::default(),
        keep,
        kept: HashMap::new(),
    };
    let initial = Write {
        thread: u32::MAX,
        start: 0,
        end: 0,
        version: h.initial,
    };
    let mut writes: Vec<Write> = Vec::with_capacity(h.writes.len() + 1);
    writes.push(initial);
    writes.extend(h.writes.iter().copied());
    let by_version: HashMap<Version, usize> = writes
        .iter()
        .enumerate()
        .map(|(i, w)| (w.version, i))
        .collect();

    // Writes by end time, with the running maximum of their start: the
    // latest-begun refit among those returned before a given time.
    let mut by_end: Vec<usize> = (0..writes.len()).collect();
    by_end.sort_by_key(|&i| writes[i].end);
    let mut max_start: Vec<usize> = Vec::with_capacity(by_end.len());
    for (k, &i) in by_end.iter().enumerate() {
        let best = if k == 0 || writes[i].start >= writes[max_start[k - 1]].start {
            i
        } else {
            max_start[k - 1]
        };
        max_start.push(best);
    }

    let mut observed = vec![false; writes.len()];
    for r in &h.reads {
        let Some(w) = r.value.and_then(|v| by_version.get(&v).copied()) else {
            rec.add(Kind::Torn, || read_text(r));
            continue;
        };
        observed[w] = true;
        let wu = &writes[w];
        if wu.start > r.end {
            rec.add(Kind::Lost, || {
                format!(
                    "{} before its refit began: {}; the weights were published by another refit",
                    read_text(r),
                    write_text(wu)
                )
            });
            continue;
        }
        // Stale: some refit returned before r began, and began after u's returned.
        let returned = by_end.partition_point(|&i| writes[i].end < r.start);
        if returned > 0 {
            let v = &writes[max_start[returned - 1]];
            if v.start > wu.end {
                rec.add(Kind::Stale, || {
                    format!(
                        "{}, but {} had returned before it began (and began after {} returned)",
                        read_text(r),
                        write_text(v),
                        write_text(wu)
                    )
                });
            }
        }
    }
    rec.findings.versions_observed = observed.iter().filter(|&&o| o).count();

    // Non-monotone: per thread, in program order.
    let mut per_thread: HashMap<u32, Vec<&Read>> = HashMap::new();
    for r in &h.reads {
        per_thread.entry(r.thread).or_default().push(r);
    }
    for reads in per_thread.values_mut() {
        reads.sort_by_key(|r| r.start);
        for pair in reads.windows(2) {
            let (a, b) = (pair[0], pair[1]);
            let (Some(wa), Some(wb)) = (
                a.value.and_then(|v| by_version.get(&v)),
                b.value.and_then(|v| by_version.get(&v)),
            ) else {
                continue;
            };
            if writes[*wb].end < writes[*wa].start {
                rec.add(Kind::NonMonotone, || {
                    format!(
                        "{}, then {}: {} returned before {} began",
                        read_text(a),
                        read_text(b),
                        write_text(&writes[*wb]),
                        write_text(&writes[*wa])
                    )
                });
            }
        }
    }

    // Lost: a returned refit that a read in the quiet gap after it missed.
    let mut reads_by_start: Vec<&Read> = h.reads.iter().collect();
    reads_by_start.sort_by_key(|r| r.start);
    let mut by_start: Vec<usize> = (1..writes.len()).collect();
    by_start.sort_by_key(|&i| writes[i].start);
    let mut ends_so_far = 0u64;
    for (k, &i) in by_start.iter().enumerate() {
        let w = writes[i];
        let overlapped = ends_so_far >= w.start;
        ends_so_far = ends_so_far.max(w.end);
        let next = by_start.get(k + 1).map_or(u64::MAX, |&j| writes[j].start);
        if observed[i] || overlapped || next <= w.end {
            continue;
        }
        let from = reads_by_start.partition_point(|r| r.start <= w.end);
        if let Some(r) = reads_by_start[from..]
            .iter()
            .take_while(|r| r.start < next)
            .find(|r| r.end < next && r.value.is_some_and(|v| by_version.contains_key(&v)))
        {
            rec.add(Kind::Lost, || {
                format!(
                    "{} returned and no other refit ran until {}, yet {}; v{} was never observed",
                    write_text(&w),
                    ms(next),
                    read_text(r),
                    w.version
                )
            });
        }
    }

    // Linearizability by zones: each version's write and reads form a
    // cluster; forward zones may not overlap, and a backward zone may not
    // lie inside a forward one.
    let mut lo = vec![u64::MAX; writes.len()];
    let mut hi = vec![0u64; writes.len()];
    for (i, w) in writes.iter().enumerate() {
        lo[i] = w.end;
        hi[i] = w.start;
    }
    for r in &h.reads {
        if let Some(&w) = r.value.and_then(|v| by_version.get(&v)) {
            lo[w] = lo[w].min(r.end);
            hi[w] = hi[w].max(r.start);
        }
    }
    let mut forward: Vec<(u64, u64, usize)> = Vec::new();
    let mut backward: Vec<(u64, u64, usize)> = Vec::new();
    for i in 0..writes.len() {
        if lo[i] < hi[i] {
            forward.push((lo[i], hi[i], i));
        } else {
            backward.push((hi[i], lo[i], i));
        }
    }
    forward.sort_unstable();
    let mut reach: Option<(u64, usize)> = None;
    for &(l, r, i) in &forward {
        if let Some((far, j)) = reach {
            if l < far {
                rec.add(Kind::NotLinearizable, || {
                    format!("versions v{} and v{} must each be the latest over overlapping spans ({}..{} and {}..{})", writes[j].version, writes[i].version, ms(lo[j]), ms(hi[j]), ms(l), ms(r))
                });
            }
        }
        if reach.is_none_or(|(far, _)| r > far) {
            reach = Some((r, i));
        }
    }
    for &(l, r, i) in &backward {
        let k = forward.partition_point(|f| f.0 < l);
        if k > 0 {
            let (fl, fr, j) = forward[k - 1];
            if fr > r && j != i {
                rec.add(Kind::NotLinearizable, || {
                    format!("v{} was current only within {}..{}, inside the span {}..{} where v{} must have been current", writes[i].version, ms(l), ms(r), ms(fl), ms(fr), writes[j].version)
                });
            }
        }
    }

    // Quiesced: no inference may overlap a refit.
    if quiesced {
        let mut prefix_end: Vec<u64> = Vec::with_capacity(by_start.len());
        for &i in &by_start {
            let prev = prefix_end.last().copied().unwrap_or(0);
            prefix_end.push(prev.max(writes[i].end));
        }
        for r in &h.reads {
            let k = by_start.partition_point(|&i| writes[i].start < r.end);
            if k > 0 && prefix_end[k - 1] > r.start {
                let w = by_start[..k]
                    .iter()
                    .rev()
                    .find(|&&i| writes[i].end > r.start)
                    .map(|&i| writes[i]);
                rec.add(Kind::Overlap, || {
                    format!(
                        "{} overlapped {}",
                        read_text(r),
                        w.map_or_else(String::new, |w| write_text(&w))
                    )
                });
            }
        }
    }
    rec.findings
}

/// What a stress run achieved: the power it had to find a race.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Power {
    /// Inferences completed.
    pub inferences: usize,
    /// Refits completed.
    pub refits: usize,
    /// Refits during which at least one inference was running.
    pub overlapped: usize,
}

impl Power {
    /// The least a stress run must achieve by default.
    pub(crate) const MINIMUM: Power = Power {
        inferences: 200,
        refits: 20,
        overlapped: 10,
    };

    /// Whether this reaches `min` in every figure.
    pub fn reaches(&self, min: &Power) -> bool {
        self.inferences >= min.inferences
            && self.refits >= min.refits
            && self.overlapped >= min.overlapped
    }

    /// The power of a recorded history: refits overlapped by an inference
    /// are counted exactly from the recorded intervals.
    pub fn of(h: &History) -> Power {
        let mut threads: std::collections::BTreeMap<u32, Vec<(u64, u64)>> = Default::default();
        for r in &h.reads {
            threads.entry(r.thread).or_default().push((r.start, r.end));
        }
        for v in threads.values_mut() {
            v.sort_unstable();
        }
        let overlapped = h
            .writes
            .iter()
            .filter(|w| {
                threads.values().any(|reads| {
                    // A thread's inferences run one after another: the last
                    // one starting before the refit ends is the only
                    // candidate to overlap it.
                    let i = reads.partition_point(|&(start, _)| start < w.end);
                    i > 0 && reads[i - 1].1 > w.start
                })
            })
            .count();
        Power {
            inferences: h.reads.len(),
            refits: h.writes.len(),
            overlapped,
        }
    }
}

impl std::fmt::Display for Power {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{} inferences, {} refits, {} refits overlapped by an inference",
            self.inferences, self.refits, self.overlapped
        )
    }
}

#[cfg(test)]
mod tests {
    //! Histories built by hand: every kind of violation is found, a clean
    //! one has none, and the power counts refits overlapped.

    use super::*;

    fn r(thread: u32, start: u64, end: u64, value: Option<u64>) -> Read {
        Read {
            thread,
            start,
            end,
            value,
        }
    }

    fn w(thread: u32, start: u64, end: u64, version: u64) -> Write {
        Write {
            thread,
            start,
            end,
            version,
        }
    }

    fn kinds(h: &History, quiesced: bool) -> Vec<Kind> {
        let f = check(h, quiesced, 5);
        let mut k: Vec<Kind> = f
            .counts
            .iter()
            .filter(|(_, &n)| n > 0)
            .map(|(k, _)| *k)
            .collect();
        k.sort();
        k
    }

    #[test]
    fn a_clean_single_writer_history_passes() {
        let h = History {
            initial: 0,
            writes: vec![w(9, 100, 110, 1), w(9, 200, 210, 2)],
            reads: vec![
                r(0, 10, 20, Some(0)),
                r(0, 105, 108, Some(1)),
                r(0, 120, 130, Some(1)),
                r(1, 205, 215, Some(2)),
                r(1, 220, 230, Some(2)),
            ],
        };
        assert_eq!(kinds(&h, false), []);
        assert_eq!(check(&h, false, 5).versions_observed, 3);
    }

    #[test]
    fn each_kind_is_found() {
        let base = |reads: Vec<Read>| History {
            initial: 0,
            writes: vec![w(9, 100, 110, 1), w(9, 200, 210, 2)],
            reads,
        };
        // Torn: a value that decodes to no version, or to one never written.
        assert_eq!(
            kinds(&base(vec![r(0, 120, 130, None)]), false),
            [Kind::Torn]
        );
        assert_eq!(
            kinds(&base(vec![r(0, 120, 130, Some(7))]), false),
            [Kind::Torn]
        );
        // Stale: began after v2 returned, observed v1.
        let k = kinds(&base(vec![r(0, 220, 230, Some(1))]), false);
        assert!(k.contains(&Kind::Stale), "{k:?}");
        // Non-monotone: one thread sees v2 then v1 (both reads during v2's refit, so not stale).
        let k = kinds(
            &base(vec![r(0, 201, 202, Some(2)), r(0, 203, 204, Some(1))]),
            false,
        );
        assert!(k.contains(&Kind::NonMonotone), "{k:?}");
        // Lost: observed v2 before its refit began.
        let k = kinds(&base(vec![r(0, 150, 160, Some(2))]), false);
        assert!(k.contains(&Kind::Lost), "{k:?}");
        // Lost: v1 returned, a read in the quiet gap after it saw v0, v1 never observed.
        let k = kinds(
            &base(vec![r(0, 150, 160, Some(0)), r(0, 220, 230, Some(2))]),
            false,
        );
        assert!(k.contains(&Kind::Lost) && k.contains(&Kind::Stale), "{k:?}");
        // Overlap under a quiesced contract.
        assert_eq!(
            kinds(&base(vec![r(0, 105, 115, Some(1))]), true),
            [Kind::Overlap]
        );
        assert_eq!(kinds(&base(vec![r(0, 105, 115, Some(1))]), false), []);
    }

    #[test]
    fn two_writers_not_linearizable() {
        // v1 and v2 refits overlap; reader A sees v2 then v1 later, reader B sees
        // v1 then v2 later: no single order of v1 and v2 explains both.
        let h = History {
            initial: 0,
            writes: vec![w(8, 100, 200, 1), w(9, 100, 200, 2)],
            reads: vec![
                r(0, 110, 120, Some(1)),
                r(0, 300, 310, Some(2)),
                r(1, 130, 140, Some(2)),
                r(1, 320, 330, Some(1)),
            ],
        };
        let k = kinds(&h, false);
        assert!(k.contains(&Kind::NotLinearizable), "{k:?}");
        // The same reads in an order one linearization explains pass.
        let ok = History {
            initial: 0,
            writes: h.writes.clone(),
            reads: vec![
                r(0, 110, 120, Some(1)),
                r(0, 300, 310, Some(2)),
                r(1, 130, 140, Some(2)),
                r(1, 320, 330, Some(2)),
            ],
        };
        assert_eq!(kinds(&ok, false), []);
    }

    #[test]
    fn power_counts_the_refits_an_inference_overlapped() {
        // v1's refit [100, 110] overlaps thread 0's inference [105, 108];
        // v2's [200, 210] overlaps nothing (thread 1 ran before and after).
        let h = History {
            initial: 0,
            writes: vec![w(9, 100, 110, 1), w(9, 200, 210, 2)],
            reads: vec![
                r(0, 105, 108, Some(1)),
                r(1, 150, 199, Some(1)),
                r(1, 211, 220, Some(2)),
            ],
        };
        let p = Power::of(&h);
        assert_eq!(
            p,
            Power {
                inferences: 3,
                refits: 2,
                overlapped: 1
            }
        );
        assert!(p.reaches(&Power {
            inferences: 3,
            refits: 2,
            overlapped: 1
        }));
        assert!(!p.reaches(&Power::MINIMUM));
    }
}
