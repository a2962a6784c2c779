//! The vendor demo's scenarios on the reference engine.

use std::time::Duration;

use refit_harness::demo;
use refit_harness::engine::BuildOptions;
use refit_harness::fixtures::seed_model;

use crate::common::engine_of;

const SWEEP: [f32; 10] = [0.0, 9.0, 18.0, 27.0, 36.0, 45.0, 54.0, 63.0, 72.0, 81.0];

#[test]
fn single_thread_goes_from_0_to_9() {
    let engine = engine_of(&seed_model(), &BuildOptions::default());
    let mut out = Vec::new();
    assert_eq!(demo::single_thread(&engine, &mut out).unwrap(), [0.0, 9.0]);
    let text = String::from_utf8(out).unwrap();
    let expected = "\
input: 1 1 1   conv kernel: 0 0 0   result: 0
       1 1 1                0 0 0
       1 1 1                0 0 0
--- weight refit ---
input: 1 1 1   conv kernel: 1 1 1   result: 9
       1 1 1                1 1 1
       1 1 1                1 1 1
";
    assert_eq!(text, expected);
}

#[test]
fn sweep_gives_0_to_81() {
    let engine = engine_of(&seed_model(), &BuildOptions::default());
    assert_eq!(demo::sweep(&engine).unwrap(), SWEEP);
}

#[test]
fn multi_thread_results_climb_in_steps_of_9() {
    let engine = engine_of(&seed_model(), &BuildOptions::default());
    let mut out = Vec::new();
    let run = demo::multi_thread(&engine, Duration::from_millis(30), &mut out).unwrap();
    // Every result is one of the sweep's values, never decreasing, starting
    // at 0 (read before the first refit) and ending at 81 (read after the last).
    assert!(
        run.results.iter().all(|v| SWEEP.contains(v)),
        "{:?}",
        run.results
    );
    assert!(
        run.results.windows(2).all(|w| w[0] <= w[1]),
        "{:?}",
        run.results
    );
    assert_eq!(run.results.first(), Some(&0.0));
    assert_eq!(run.results.last(), Some(&81.0));
    let (ok, line) = demo::verify(&run);
    assert!(ok, "{line}");
    assert!(
        line.contains("10 refits (9 to a new version)") && line.ends_with("violations: none"),
        "{line}"
    );
    let text = String::from_utf8(out).unwrap();
    assert_eq!(text.matches("[refit] kernel -> all").count(), 10);
    assert!(
        text.lines().last().unwrap().starts_with("summary: "),
        "{text}"
    );
}

#[test]
fn verify_flags_a_demo_history_that_went_backwards() {
    let engine = engine_of(&seed_model(), &BuildOptions::default());
    let mut run = demo::multi_thread(&engine, Duration::from_millis(20), &mut Vec::new()).unwrap();
    // The last inference claims the kernel all-1 after all-9 had returned.
    let last = run.history.reads.last_mut().unwrap();
    last.value = Some(1);
    let (ok, line) = demo::verify(&run);
    assert!(!ok && line.contains("stale"), "{line}");
}
