#!/usr/bin/env bash
# The script a hardware CI runner (an MLU or GPU machine) calls to gate a
# release of its inference runtime on refit correctness.
#
# Usage, from the refit-harness repository root:
#
#   SHIM_BUILD='make -C /path/to/shim' \
#   SHIM_LIB=/path/to/shim/librefit_shim.so \
#   [OUT=reports/hardware] [STRESS_MS=2000] [MODELS='a.onnx b.onnx'] \
#   ci/hardware-runner.sh
#
#   SHIM_BUILD  command that builds the shim library implementing
#               include/refit_plugin.h against the vendor SDK (optional if
#               SHIM_LIB is already built)
#   SHIM_LIB    the built shim (.so); a missing library fails the run
#   OUT         where reports are collected (default reports/hardware-<time>)
#   STRESS_MS   how long each stress scenario races (default 2000)
#   MODELS      extra ONNX models for the per-model checks (default: the
#               seed model and the fixtures)
#
# Steps: build the shim; run the whole conformance suite through it
# (REFIT_ENGINE=plugin:$SHIM_LIB cargo test); run refit-harness check
# against it and write CSV, Markdown and JUnit XML under $OUT/check. Exits
# non-zero if any step fails, so the runner blocks the release.
set -euo pipefail
cd "$(dirname "$0")/.."

: "${SHIM_LIB:?set SHIM_LIB to the shim library to test}"
OUT="${OUT:-reports/hardware-$(date -u +%Y-%m-%dT%H-%M-%SZ)}"
STRESS_MS="${STRESS_MS:-2000}"
mkdir -p "$OUT"

if [ -n "${SHIM_BUILD:-}" ]; then
  echo "== building the shim: $SHIM_BUILD"
  bash -c "$SHIM_BUILD"
fi
if [ ! -f "$SHIM_LIB" ]; then
  echo "error: SHIM_LIB=$SHIM_LIB does not exist" >&2
  exit 2
fi
LIB="$(cd "$(dirname "$SHIM_LIB")" && pwd)/$(basename "$SHIM_LIB")"

echo "== the conformance suite through plugin:$LIB"
REFIT_ENGINE="plugin:$LIB" cargo test --release 2>&1 | tee "$OUT/cargo-test.log"

echo "== refit-harness check"
model_args=()
for m in ${MODELS:-}; do model_args+=(--model "$m"); done
status=0
cargo run --release --quiet -- check --engine "plugin:$LIB" --stress-ms "$STRESS_MS" \
  "${model_args[@]}" --report "$OUT/check" || status=$?
echo "== reports in $OUT"
exit "$status"
