//! The history checker on histories built by hand and on generated valid
//! ones: every kind of violation is found, and a valid history has none.

use proptest::prelude::*;

use refit_harness::check::history::{check, History, Kind, Read, Write};

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

/// A valid history: writes and reads placed around linearization points
/// drawn in order; each read returns the last write before its point.
fn arb_valid() -> impl Strategy<Value = History> {
    prop::collection::vec(
        (any::<bool>(), 0u32..4, 1u64..50, 1u64..50, 1u64..30),
        1..200,
    )
    .prop_map(|ops| {
        let mut h = History::default();
        let mut t = 1000u64;
        let mut current = 0u64;
        let mut next_version = 1u64;
        let mut thread_free = [0u64; 4];
        let mut writer_free = [0u64; 2];
        for (is_write, thread, before, after, gap) in ops {
            t += gap;
            if is_write {
                let wt = (thread % 2) as usize;
                let start = t.saturating_sub(before).max(writer_free[wt] + 1);
                if start > t {
                    continue;
                }
                let end = t + after;
                writer_free[wt] = end;
                h.writes.push(Write {
                    thread: 10 + wt as u32,
                    start,
                    end,
                    version: next_version,
                });
                current = next_version;
                next_version += 1;
            } else {
                let th = thread as usize;
                let start = t.saturating_sub(before).max(thread_free[th] + 1);
                if start > t {
                    continue;
                }
                let end = t + after;
                thread_free[th] = end;
                h.reads.push(Read {
                    thread,
                    start,
                    end,
                    value: Some(current),
                });
            }
        }
        h
    })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(refit_harness::check::cases_from_env(256)))]
    #[test]
    fn valid_histories_have_no_violations(h in arb_valid()) {
        let f = check(&h, false, 3);
        prop_assert_eq!(f.total(), 0, "{:?}", f.examples);
    }
}

#[test]
fn the_stress_encoding_decodes_whole_versions_only() {
    use refit_harness::check::stress::{Code, CHANNELS};
    use refit_harness::engine::Precision;
    for p in Precision::ALL {
        let code = Code::of(p);
        let max = code.max_version(CHANNELS);
        assert!(max >= 15_000, "{p}: only {max} versions");
        for v in [0, 1, 77, max / 2, max] {
            assert_eq!(
                code.decode(&code.weights(v, CHANNELS), CHANNELS),
                Some(v),
                "{p} v{v}"
            );
        }
        // Half of v5 and half of v4: no version, and the anatomy says which.
        let mut mixed = code.weights(5, CHANNELS);
        mixed[CHANNELS / 2..].copy_from_slice(&code.weights(4, CHANNELS)[CHANNELS / 2..]);
        assert_eq!(code.decode(&mixed, CHANNELS), None, "{p}");
        assert_eq!(
            code.anatomy(&mixed),
            format!(
                "channels 0..{} from v5, {}..{} from v4",
                CHANNELS / 2 - 1,
                CHANNELS / 2,
                CHANNELS - 1
            )
        );
        // A value from no version at all.
        let mut garbage = code.weights(3, CHANNELS);
        garbage[7] = -0.5;
        assert_eq!(code.decode(&garbage, CHANNELS), None);
        assert!(
            code.anatomy(&garbage).contains("7..7 from no version"),
            "{}",
            code.anatomy(&garbage)
        );
    }
}

/// Every code survives the rounding of the precision it is for, and codes
/// are distinct and increasing: an engine in that precision outputs them
/// unchanged and each decodes to one index.
#[test]
fn stress_codes_are_exact_in_their_precision() {
    use refit_harness::check::stress::Code;
    use refit_harness::engine::Precision;
    let tf32 = |x: f32| {
        // Round to nearest even on a 10-bit mantissa.
        let b = x.to_bits();
        let r = b + 0xfff + ((b >> 13) & 1);
        f32::from_bits(r & !0x1fff)
    };
    for p in Precision::ALL {
        let code = Code::of(p);
        let round = |x: f32| match p {
            Precision::F32 => x,
            Precision::Tf32 => tf32(x),
            Precision::F16 => half::f16::from_f32(x).to_f32(),
            Precision::Bf16 => half::bf16::from_f32(x).to_f32(),
        };
        let n = code.len();
        let step = (n / 100_000).max(1);
        let mut last = 0.0f32;
        let mut k = 0;
        while k < n {
            let x = code.value(k);
            assert!(
                x.is_normal() && x > last,
                "{p}: code {k} = {x} after {last}"
            );
            assert_eq!(round(x), x, "{p}: code {k} = {x} is not exact");
            assert_eq!(round(x * 1.0 + 0.0), x, "{p}: code {k}");
            assert_eq!(code.index(x), Some(k), "{p}: code {k} = {x}");
            last = x;
            k += step;
        }
        assert_eq!(
            code.index(code.value(n - 1) * 2.0),
            None,
            "{p}: past the last code"
        );
        // The model built before the precision is known holds in it too.
        for k in 0..Code::PORTABLE.len() {
            let x = Code::PORTABLE.value(k);
            assert_eq!(round(x), x, "{p}: portable code {k} = {x}");
        }
    }
}
