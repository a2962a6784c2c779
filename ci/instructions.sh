#!/usr/bin/env bash
# Instruction counts of the host-side refit path, for gating on shared
# runners where wall time is too noisy: callgrind counts the same for the
# same binary and inputs whatever else the machine is doing.
#
# Usage, from the repository root (needs valgrind):
#
#   [ENGINE=plugin:/path/lib.so] [OUT=reports/instructions] ci/instructions.sh
#   cargo run --release -- gate --baseline ci/baselines/instructions.csv \
#       --current reports/instructions/bench.csv
#
# For each weight size it counts the instructions of 20 refits and of 20
# copies of the same bytes, minus a run of 0 (start-up and model loading),
# and of 20 inferences of the seed model, and writes bench.csv rows
# (benchmark refit_instructions with baseline memcpy_instructions and
# ratio, infer_instructions; unit instructions) that `gate` compares.
# Counts are exact: each interval is the count itself, so `gate` judges
# the change alone; the memcpy rows are baselines, shown and not judged.
set -euo pipefail
cd "$(dirname "$0")/.."

ENGINE="${ENGINE:-reference}"
OUT="${OUT:-reports/instructions}"
COUNT=20
mkdir -p "$OUT"
cargo build --release --quiet
bin=target/release/refit-harness

count() { # args: bytes count [--memcpy] -> total instructions
  local f="$OUT/callgrind.out"
  valgrind --tool=callgrind --callgrind-out-file="$f" "$bin" refit-loop --engine "$ENGINE" \
    --bytes "$1" --count "$2" ${3:-} >/dev/null 2>&1
  awk '/^summary:/ {print $2}' "$f"
}

echo "engine,benchmark,parameter,statistic,value,unit,samples,p10,p90,baseline,ratio,p99,max,median_low,median_high,ratio_low,ratio_high,paired,baseline_only,round_medians" > "$OUT/bench.csv"
for bytes in 36 4096 262144; do
  base=$(count "$bytes" 0)
  refit=$(( ($(count "$bytes" $COUNT) - base) / COUNT ))
  copy=$(( ($(count "$bytes" $COUNT --memcpy) - base) / COUNT ))
  ratio=$(awk -v a="$refit" -v b="$copy" 'BEGIN { printf "%.4f", (b > 0 ? a / b : 0) }')
  echo "$ENGINE,refit_instructions,$bytes,instructions,$refit,instructions,1,$refit,$refit,memcpy_instructions/$bytes,$ratio,,,$refit,$refit,$ratio,$ratio,false,," >> "$OUT/bench.csv"
  echo "$ENGINE,memcpy_instructions,$bytes,instructions,$copy,instructions,1,$copy,$copy,,,,,$copy,$copy,,,,true," >> "$OUT/bench.csv"
  echo "$bytes bytes: $refit instructions per refit, $copy per copy (ratio $ratio)"
done
# Inference of the seed model (36 bytes of weights), the serving path.
base=$(count 36 0)
infer=$(( ($(count 36 $COUNT --infer) - base) / COUNT ))
echo "$ENGINE,infer_instructions,seed_conv,instructions,$infer,instructions,1,$infer,$infer,,,,,$infer,$infer,,,,," >> "$OUT/bench.csv"
echo "seed_conv: $infer instructions per inference"
echo "wrote $OUT/bench.csv"
