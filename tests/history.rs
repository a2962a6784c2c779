//! The history checker on generated valid histories: a valid history has
//! no violation (the hand-built histories, one of each kind, are unit tests
//! in `src/history.rs`).

use proptest::prelude::*;

use refit_harness::history::{check, History, Read, Write};

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
