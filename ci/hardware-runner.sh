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
# On an MLU runner with the Neuware SDK, the MagicMind shim this repository
# ships (plugins/magicmind) in one line:
#
#   NEUWARE_HOME=/usr/local/neuware SHIM=magicmind ci/hardware-runner.sh
#
#   SHIM_BUILD  command that builds the shim library implementing
#               include/refit_plugin.h against the vendor SDK (optional if
#               SHIM_LIB is already built)
#   SHIM_LIB    the built shim (.so); a missing library fails the run
#   SHIM        magicmind: SHIM_BUILD and SHIM_LIB default to
#               plugins/magicmind/build.sh against $NEUWARE_HOME, and the
#               seed's two demos run through the shim as well
#   OUT         where reports are collected (default reports/hardware-<time>)
#   STRESS_MS   how long each stress scenario races (default 2000)
#   MODELS      extra ONNX models for the per-model checks (default: the
#               seed model and the fixtures)
#
# Steps: build the shim; (SHIM=magicmind) the vendor's demos through it; run the whole conformance suite through it
# (REFIT_ENGINE=plugin:$SHIM_LIB cargo test); run refit-harness check
# against it and write CSV, Markdown and JUnit XML under $OUT/check. Exits
# non-zero if any step fails, so the runner blocks the release.
set -euo pipefail
cd "$(dirname "$0")/.."

if [ "${SHIM:-}" = magicmind ]; then
  : "${NEUWARE_HOME:?set NEUWARE_HOME to the Neuware SDK the MagicMind shim builds against}"
  SHIM_BUILD="${SHIM_BUILD:-plugins/magicmind/build.sh target/magicmind}"
  SHIM_LIB="${SHIM_LIB:-target/magicmind/libmagicmind_shim.so}"
fi
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

if [ "${SHIM:-}" = magicmind ]; then
  echo "== the seed's demos through plugin:$LIB"
  cargo run --release --quiet -- demo --engine "plugin:$LIB" single-thread | tee "$OUT/demo-single.log"
  cargo run --release --quiet -- demo --engine "plugin:$LIB" multi-thread --interval-ms 200 --verify \
    | tee "$OUT/demo-multi.log"
fi

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
