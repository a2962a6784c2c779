#!/usr/bin/env bash
# Hardware gate on refit performance: measure, compare with this runner's
# stored baseline, publish the report, fail on a regression.
#
# Usage, from the refit-harness repository root:
#
#   RUNNER=mlu370-a ENGINE=plugin:/path/librefit_shim.so ci/bench-gate.sh
#
#   RUNNER          names the machine; its baseline is ci/baselines/$RUNNER.csv
#   ENGINE          the engine spec (default: reference)
#   MAX_REGRESSION  allowed slowdown in percent beyond noise (default 10)
#   OUT             report folder (default reports/bench-$RUNNER-<time>)
#   QUICK=1         the one-minute sweep instead of the full one
#   SAMPLES=N       samples per measurement (as `gate` advises)
#   UPDATE_BASELINE=1  store this run as the runner's new baseline (after a
#                   reviewed, intended change) instead of gating
#   CRITERION=1     also run the criterion benches against (or, with
#                   UPDATE_BASELINE=1, save) criterion's baseline named
#                   $RUNNER, for its per-benchmark change and confidence
#                   interval (it reports; `gate` decides)
#
# `gate` exits 1 when a benchmark's change lies above MAX_REGRESSION (its
# lower bound, corrected for the number of rows), and 2 when a change's
# upper bound reaches above it and its interval is too wide to tell (a
# regression of that size could not be seen): it says how many samples
# would do (SAMPLES=N passes `bench --samples N`), or use instruction
# counts. ci/gate-check.sh measures how often this runner judges.
# Wall-clock gates belong on dedicated runners. On shared ones, gate on
# instruction counts instead: ci/instructions.sh writes a bench.csv of
# callgrind counts that the same `refit-harness gate` compares.
set -euo pipefail
cd "$(dirname "$0")/.."

: "${RUNNER:?set RUNNER to the name of this machine}"
ENGINE="${ENGINE:-reference}"
OUT="${OUT:-reports/bench-$RUNNER-$(date -u +%Y-%m-%dT%H-%M-%SZ)}"
BASELINE="ci/baselines/$RUNNER.csv"

quick=()
[ "${QUICK:-0}" = 1 ] && quick=(--quick)
[ -n "${SAMPLES:-}" ] && quick+=(--samples "$SAMPLES")
cargo run --release --quiet -- bench --engine "$ENGINE" "${quick[@]}" --out "$OUT"

if [ "${CRITERION:-0}" = 1 ]; then
  if [ "${UPDATE_BASELINE:-0}" = 1 ]; then
    REFIT_ENGINE="$ENGINE" cargo bench --bench bench_main -- --save-baseline "$RUNNER"
  else
    REFIT_ENGINE="$ENGINE" cargo bench --bench bench_main -- --baseline "$RUNNER" | tee "$OUT/criterion.txt"
  fi
fi

if [ "${UPDATE_BASELINE:-0}" = 1 ] || [ ! -f "$BASELINE" ]; then
  mkdir -p ci/baselines
  cp "$OUT/bench.csv" "$BASELINE"
  echo "stored $BASELINE (commit it); nothing gated this run"
  exit 0
fi
cargo run --release --quiet -- gate --baseline "$BASELINE" --current "$OUT/bench.csv" \
  --max-regression "${MAX_REGRESSION:-10}" | tee "$OUT/gate.txt"
