#!/usr/bin/env bash
# The regression gate measured on this machine, before trusting it with a
# release: A/A (runs of the same build, compared) must pass and judge most
# rows; A/B (a build slowed for real, compared with A) must fail naming the
# slowed rows. It prints what the gate decided and asserts nothing (a timed
# assertion on a shared machine is a flaky test): read the summary.
#
# Usage, from the repository root:
#
#   [PAIRS=5] [FULL=1] [SLOWDOWN=1.5] [OUT=reports/gate-check] ci/gate-check.sh
#
#   PAIRS     A/A pairs of `bench --quick` (default 5)
#   FULL      also one A/A pair of the full `bench` (default 1; 0 skips it)
#   SLOWDOWN  B: the reference engine with {"slowdown": F}, every refit and
#             inference busy-waiting until it took F times its work
#             (default 1.5)
#   MAX_REGRESSION  the gate's threshold in percent (default 10)
#
# B is measured right after the first A run, and compared with it.
# Everything lands in $OUT (bench reports, gate tables), the figures in
# $OUT/summary.txt.
set -euo pipefail
cd "$(dirname "$0")/.."

PAIRS="${PAIRS:-5}"
FULL="${FULL:-1}"
SLOWDOWN="${SLOWDOWN:-1.5}"
MAX="${MAX_REGRESSION:-10}"
OUT="${OUT:-reports/gate-check}"
mkdir -p "$OUT"
cargo build --release --quiet
bin=target/release/refit-harness
summary="$OUT/summary.txt"
: > "$summary"
say() { echo "$*" | tee -a "$summary"; }

bench() { # out-dir [bench args...]
  local dir="$1"; shift
  "$bin" bench --out "$dir" "$@" > "$dir.log" 2>&1
}

# gate name baseline current: prints one summary line, keeps the table.
gate() {
  local name="$1" code=0
  "$bin" gate --baseline "$2/bench.csv" --current "$3/bench.csv" --max-regression "$MAX" \
    > "$OUT/$name.gate.txt" 2>&1 || code=$?
  local line regressed within noisy judged total
  line=$(grep -E '^[0-9]+ regressed beyond' "$OUT/$name.gate.txt")
  regressed=$(awk '{print $1}' <<<"$line")
  within=$(sed -E 's/.*\), ([0-9]+) within.*/\1/' <<<"$line")
  noisy=$(sed -E 's/.* ([0-9]+) too noisy.*/\1/' <<<"$line")
  judged=$((regressed + within))
  total=$((judged + noisy))
  # Rows regressed at full speed only (not over every sample): too noisy.
  vetoed=$(grep -c 'at full speed, ' "$OUT/$name.gate.txt" || true)
  say "$(printf '%-10s exit %s  regressed %2s  judged %2s of %2s (%3s%%)  full-speed only %s  %s' \
    "$name" "$code" "$regressed" "$judged" "$total" "$((100 * judged / total))" "$vetoed" \
    "$(grep -E '^error:' "$OUT/$name.gate.txt" | cut -c1-160 || true)")"
}

say "gate check on $(nproc) cores, threshold ${MAX}%, $(date -u +%FT%TZ)"
for i in $(seq 1 "$PAIRS"); do
  bench "$OUT/quick-a$i" --quick
  if [ "$i" = 1 ]; then
    bench "$OUT/quick-b-slow" --quick --engine-options "{\"slowdown\": $SLOWDOWN}"
  fi
  bench "$OUT/quick-a$i-again" --quick
  gate "aa-quick-$i" "$OUT/quick-a$i" "$OUT/quick-a$i-again"
done
gate "ab-quick" "$OUT/quick-a1" "$OUT/quick-b-slow"
say "slowed rows named by A/B:"
grep -E 'REGRESSED' "$OUT/ab-quick.gate.txt" | awk '{print "  " $1}' | tee -a "$summary"
if [ "$FULL" = 1 ]; then
  bench "$OUT/full-a"
  bench "$OUT/full-a-again"
  gate "aa-full" "$OUT/full-a" "$OUT/full-a-again"
fi
echo "wrote $summary and the gate tables beside it"
