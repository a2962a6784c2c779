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
//! | precision | `f32`, `tf32`, `f16`, `bf16` | the arithmetic the oracle's error bound assumes ([`Precision`](crate::engine::Precision)); plugins declare it through the optional `engine_numerics` slot, and a plugin without it means f32 |
//! | error factor | a number >= 1 (default 1) | how far past the rigorous bound the engine's error may go (Winograd or FFT convolutions); above 1, integer outputs need not be exact |
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
//! Every comparison is against the plain [oracle](crate::oracle): the
//! model evaluated in f64 with loops written from the ONNX operator
//! definitions, with, per output element, a rigorous bound on the rounding
//! error of any summation order at the engine's declared precision
//! (`gamma_n * sum |w x|` per dot product, each op's own roundings and the
//! engine's declared allowance for its functions, carried through every
//! later op: [`oracle::ops`](crate::oracle::ops)), times the
//! engine's error factor. Where every operand is a small integer and every
//! partial sum stays below 2^24, the bound is 0 and outputs must match bit
//! for bit. A failure shows the exact value, the bound, the observed error
//! against the bound and in ulps; every row records the worst observed
//! error / bound (`error_ratio` in `check.csv`), to set an error factor from
//! data; a failed comparison counts too, infinite where the expectation was
//! exact. `check --abs-tolerance / --rel-tolerance` replace the bound by a
//! fixed tolerance. Oracle evaluations are cached per weight version and
//! input.
//!
//! A mismatch ends with a diagnosis ([`Oracle::explain`](crate::oracle::Oracle::explain)):
//! the observed output is compared with the oracle's for every weight at its
//! previous version, each weight alone at its previous version, and each
//! weight alone at its build version, and the first that matches is named
//! ("observed = the expected output with 'a.bias' still at version 0: that
//! weight's refit to version 1 was not applied"), or the evidence says none
//! did.
//!
//! An engine may refuse a model it cannot run (`Error::Unsupported`, a
//! plugin's `REFIT_UNSUPPORTED`): the scenario is a skip with the engine's
//! reason, counted in the summary; `check --fail-on-skip` turns skips into
//! failures for a gate that needs full coverage. A run in which the engine
//! refused every model it was given judged nothing: `check` exits 1 and the
//! suite's test fails, with the engine's reason. `REFIT_UNSUPPORTED` is for
//! a feature the engine lacks; an engine that cannot build at all (an SDK
//! missing its install or device) must return an error, and an engine that
//! cannot build the seed model stops the run before any scenario. What each scenario needs:
//! `seed`, `stress_vendor` the seed model (one 3x3 2-D conv); the stress
//! scenarios and `resources` 1x1 2-D convs with and without bias; the
//! per-model scenarios whatever the given model uses (by default the conv
//! fixtures, a toy ResNet and a toy transformer block); `model_based` 1-D
//! and 2-D convs with groups, strides, dilations, pads or `auto_pad`, bias
//! and Relu, BatchNormalization, Clip, Add, MaxPool, AveragePool,
//! GlobalAveragePool, Flatten, Gemm, MatMul, Transpose, Mul and Softmax
//! (refused draws are skipped and counted; all draws refused fails).
//!
//! `check` and the test suite run each scenario in a child process: an
//! engine that dies of a signal gets `CRASHED (SIGSEGV)` (or the signal it
//! got), one still running after `--timeout` (`REFIT_TIMEOUT`) gets `HUNG`;
//! both name the scenario's step and every ABI call in flight, and both are
//! failures. With `--sanitizer thread|address`, the first report of the
//! sanitizer preloaded into the child fails the scenario.
//!
//! - `seed`: the vendor demo on the seed model (one 3x3 conv, all-zero
//!   kernel): the ones input gives 0; a refit to all-1 gives 9; refitting
//!   all-0 .. all-9 gives 0, 9, ... 81. Catches a refit that is never
//!   published or a weight silently ignored.
//! - `refittable_parity` (per model): before any refit, the engine built
//!   with refit gives what the engine built without refit gives (bit for
//!   bit, or both within the oracle's bound), and what the oracle gives. Catches a refittable build that
//!   computes differently (off-by-one padding, layout changes).
//! - `round_trip` (per model): weights A (the model's) -> B (all weights
//!   new) -> A: B matches the oracle and A's outputs come back (bit for
//!   bit, or within the bound for an engine whose rounding varies by run).
//!   Catches layout confusion (transposed kernels), lost or stale weights,
//!   stale derived tensors (a BatchNorm folded at build and not refolded, a
//!   pre-transposed Gemm weight, a dropped zero bias, fused projections
//!   refitted into the wrong halves). A mismatch no stale weight explains
//!   is localized: on a fresh engine the weights are refitted one at a
//!   time and the first that goes wrong is named (also in `partial_refit`
//!   and `bad_input`).
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
//! - `warm_equals_cold` (per model): the engine built with the model's
//!   weights (A) and refitted to new ones (B) serves what a fresh build
//!   with B serves (B written into a copy of the model file, external data
//!   inlined). No oracle is involved, so it runs on any model the engine
//!   builds, ops the oracle lacks included (the oracle-based scenarios skip
//!   such a model, naming the ops). Every staged buffer is overwritten
//!   with a poison value right after `set_named_weights` returns and before
//!   `refit`: an engine that reads the caller's buffer after the call
//!   serves the poison, and the evidence says so. Catches stale or lost
//!   weights, a result cache that outlives a refit (the inputs are the
//!   same bytes before and after), buffer reads after the call.
//! - `history_independence` (per model): five cycles A -> B -> A, each
//!   weight staged from one buffer that keeps its address while its
//!   contents change; back at A the engine serves what a fresh build with A
//!   serves, and every B what the first B served. Catches drift over
//!   repeated refits, a staging skipped because its address was seen
//!   before, state kept from an earlier refit. Both differential scenarios
//!   compare bit for bit when the engine declares `refit_bit_identical`,
//!   otherwise within `256 u (|fresh| + rms)` times its error factor (`u`
//!   the unit roundoff of its precision, `rms` that output's root mean
//!   square; [`self_tolerance`](crate::check::differential::self_tolerance)),
//!   and report the largest difference; a failure is explained by fresh
//!   builds of the hypotheses (every weight, then each alone, holding the
//!   poison, or still at B).
//! - `model_based`: a property test (proptest). Arbitrary models: conv
//!   chains (1 or 2 spatial dimensions, channels, groups, strides, pads or
//!   `auto_pad`, dilations, bias, Relu, a second pointwise layer), residual
//!   CNNs (convs with BatchNorm and Relu or Clip, residual blocks, max and
//!   average pooling, a global-pooling Gemm head with or without `transB`)
//!   and attention blocks (query, key and value MatMul projections, the
//!   scaled scores' Softmax, a residual Add, Clip, a Gemm head), biases
//!   sometimes all zero as built; and arbitrary
//!   sequences of infer, stage, invalid stage, refit and empty refit run on
//!   the engine and on a plain model of what it must serve; after every step
//!   the outputs must be equal. `PROPTEST_CASES` sets the case count (64 by
//!   default) and `check --seconds` a time budget (at least one case runs;
//!   none running is a failure). A `may-be-partial` engine's failed refit is
//!   followed by a full refit of known values, and the case goes on.
//!   Failures shrink to a minimal case, printed as the operations a person
//!   would write, with the oracle's explanation of its mismatch; their
//!   seeds are saved under the report folder
//!   (`proptest-regressions/model_based.txt`; in `cargo test`, under the
//!   crate's `target/tmp`, replayed by every later run of the test) and the
//!   report prints the `check --regressions FILE` command that replays them.
//! - `stress_r1w1`, `stress_r4w1`, `stress_r4w2`, `stress_cores_w1`: R
//!   inference threads and W refit threads start on a barrier and race
//!   (`check --stress-ms`, 500 ms by default) on the stress model, whose
//!   every weight version gives a distinct output that a mix of versions
//!   cannot imitate ([`stress`](crate::check::stress)). Every operation is
//!   recorded on one monotonic clock and the
//!   [history checker](crate::history) finds torn, stale, lost and
//!   non-monotone results, checks linearizability with two writers, and,
//!   for `quiesced` engines, that no inference overlapped a refit. Catches
//!   weights copied in place, late publication, lost updates between two
//!   writers, readers caching a snapshot, half-built snapshots. Each row
//!   states its power (inferences, refits, refits overlapped by an
//!   inference); a run races at least `--stress-ms`, then on until it
//!   reaches the minimum (200 inferences, 20 refits, 10 overlapped; no
//!   overlap for a quiesced engine, which the harness keeps apart) or
//!   `--stress-cap-ms` (10 s), and is `INCONCLUSIVE` (a failure unless
//!   `--allow-inconclusive`) below it. A reader or writer thread that panics
//!   or errors fails the scenario. The versions are written in numbers the
//!   declared precision holds exactly ([`Code`](crate::check::stress::Code)),
//!   so f16, bf16 and tf32 engines race on the same terms as f32 ones.
//! - `stress_disjoint`: two writers refit different weights of one model at
//!   once (one the conv weight, one its bias) while two readers infer; the
//!   output encodes each weight's version on its own, and each weight's
//!   history must be clean: a refit that returned stays visible until a
//!   later refit of the same weight. Catches refitters that take no writer
//!   lock (a lost update), which single-weight stress cannot see.
//! - `stress_vendor`: the vendor sample's own check. Two readers infer a
//!   constant input on the seed model while one writer refits all-1 ..
//!   all-20 at a fixed interval; each refit a reader straddles must change
//!   its output exactly once, and the history must be clean.
//! - `resources`: resident memory (Linux `/proc/self/status`) does not grow
//!   over thousands of refits (at most 8 MiB or 5% of the bytes refitted),
//!   and the peak during one refit stays within 1.5x the changed bytes plus
//!   4 MiB, in a model of 18 MiB: a refit of 64 KiB must not copy the
//!   model. The growth is measured over up to 3000 refits within 30 s (at
//!   least 50, whatever the time), so a slow but correct engine gets a
//!   verdict over the refits it managed, with the growth per refit, never
//!   a timeout. Run it in a process of its own (the CLI does; `cargo test`
//!   runs it in a child process).
//!
//! ## The seeded defects
//!
//! [`defects`](crate::defects) holds engines with one defect each;
//! `refit-harness selftest` runs every scenario on each and on the correct
//! engines, prints the defect x scenario matrix and fails unless the
//! correct engines pass and every defect is caught.
//!
//! A panic inside a scenario (in the harness or in an engine written in
//! Rust) is a failure with its message, and the run goes on.
