//! # The refit contract, and what each check proves
//!
//! Runtimes promise different things about refit: the vendor demo the
//! harness grew from promises that a refit is atomic; TensorRT makes a refit
//! during inference undefined and says a failed refit may leave a subset
//! applied; LLM servers drain requests around a weight update. So each
//! engine declares its own [`Contract`](crate::engine::Contract), and the
//! harness checks the engine against what it declares and says so in every
//! report.
//!
//! | property | values | meaning |
//! |---|---|---|
//! | refit while inferring | `atomic` | each inference sees exactly one whole weight version; once `refit()` returns, every inference that starts later sees the new one |
//! | | `quiesced` | the caller must stop inference while a refit runs; the wrapper enforces it |
//! | failed refit | `rolls-back` | nothing of a failed refit is applied |
//! | | `may-be-partial` | some staged weights may have been applied |
//! | partial refit | `subset-accepted` | any subset may be staged; the rest keep their values |
//! | | `requires-all` | `refit()` fails until every refittable weight is staged |
//! | non-finite weights | `non-finite-rejected` | staging NaN or infinity fails |
//! | | `non-finite-served` | they are applied and inference computes with them faithfully |
//!
//! The reference engine is `atomic, rolls-back, subset-accepted,
//! non-finite-rejected`; `reference-strict` is the same engine declaring
//! and enforcing `requires-all`.
//!
//! Errors from a bad staging may come from `set_named_weights` or, for
//! engines that validate late, from the `refit()` that follows: either is
//! accepted, as long as the error names the tensor and the weights served
//! afterwards are exactly the previous ones (under `rolls-back`).
//!
//! ## The scenarios
//!
//! Every comparison is against the plain [oracle](crate::check::oracle): the
//! model evaluated in f64 with naive loops written from the ONNX operator
//! definitions. Weights and inputs are small integers, so results are exact
//! in f32 and outputs must match bit for bit
//! ([`Tolerance::EXACT`](crate::check::Tolerance::EXACT)).
//!
//! - `seed`: the vendor demo on the seed model (one 3x3 conv, all-zero
//!   kernel): the ones input gives 0; a refit to all-1 gives 9; refitting
//!   all-0 .. all-9 gives 0, 9, ... 81. Catches a refit that is never
//!   published or a weight silently ignored.
//! - `refittable_parity` (per model): before any refit, the engine built
//!   with refit gives bit for bit what the engine built without refit
//!   gives, and what the oracle gives. Catches a refittable build that
//!   computes differently (off-by-one padding, layout changes).
//! - `round_trip` (per model): weights A (the model's) -> B (all weights
//!   new) -> A: B matches the oracle and A's outputs come back bit for bit.
//!   Catches layout confusion (transposed kernels), lost or stale weights.
//! - `partial_refit` (per model): `missing()` is right on a new refitter
//!   and after each staging; a refit of every other weight changes exactly
//!   those (`subset-accepted`) or is refused and changes nothing until the
//!   set is complete (`requires-all`); after a refit `missing()` lists every
//!   weight again.
//! - `bad_input` (per model): unknown name, wrong shape (same count and one
//!   value more), wrong dtype, wrong byte count, empty data, NaN, +inf and
//!   -inf (by the declared policy), and a refitter asked of an engine built
//!   without refit. Each gets an error naming the tensor; a valid weight
//!   staged beside a refused one is applied only when the refit succeeds;
//!   and the engine serves exactly its previous weights afterwards. Catches
//!   errors that still apply the weights, failed refits that half-apply,
//!   wrong dtypes reinterpreted.
//! - `model_based`: a property test (proptest). Arbitrary conv models (1 or
//!   2 spatial dimensions, channels, groups, strides, pads or `auto_pad`,
//!   dilations, bias, Relu, a second pointwise layer) and arbitrary
//!   sequences of infer, stage, invalid stage, refit and empty refit run on
//!   the engine and on a plain model of what it must serve; after every step
//!   the outputs must be equal. `PROPTEST_CASES` sets the case count (64 by
//!   default) and `check --seconds` a time budget; failures shrink to a
//!   minimal case, and their seeds are kept in
//!   `proptest-regressions/model_based.txt` and replayed first.
//! - `stress_r1w1`, `stress_r4w1`, `stress_r4w2`, `stress_cores_w1`: R
//!   inference threads and W refit threads start on a barrier and race
//!   (`check --stress-ms`, 500 ms by default) on the stress model, whose
//!   every weight version gives a distinct output that a mix of versions
//!   cannot imitate ([`stress`](crate::check::stress)). Every operation is
//!   recorded on one monotonic clock and the
//!   [history checker](crate::check::history) finds torn, stale, lost and
//!   non-monotone results, checks linearizability with two writers, and,
//!   for `quiesced` engines, that no inference overlapped a refit. Catches
//!   weights copied in place, late publication, lost updates between two
//!   writers, readers caching a snapshot, half-built snapshots.
//! - `stress_vendor`: the vendor sample's own check. Two readers infer a
//!   constant input on the seed model while one writer refits all-1 ..
//!   all-20 at a fixed interval; each refit a reader straddles must change
//!   its output exactly once, and the history must be clean.
//! - `resources`: resident memory (Linux `/proc/self/status`) does not grow
//!   over thousands of refits (at most 8 MiB or 5% of the bytes refitted),
//!   and the peak during one refit stays within 1.5x the changed bytes plus
//!   4 MiB, in a model of 18 MiB: a refit of 64 KiB must not copy the
//!   model. Run it in a process of its own (the CLI does; `cargo test` runs
//!   it in a child process).
//!
//! ## The seeded defects
//!
//! [`defects`](crate::defects) holds engines with one defect each;
//! `refit-harness selftest` runs every scenario on each and on the correct
//! engines, prints the defect x scenario matrix and fails unless the
//! correct engines pass and every defect is caught.
