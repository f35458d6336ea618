#!/usr/bin/env bash
# Prove the speed gate: RUNS unchanged short passes must pass it, one pass with an injected slowdown
# (CHIMERA_BENCH_INJECT_SLOWDOWN matmuls per step, bench/harness.py) must fail it.
#
#   bench/prove_gate.sh [BASELINE]          # default bench/baselines/cpu.json; run on a quiet machine
#   RUNS=5 INJECT=100 PYTHON=.venv/bin/python bench/prove_gate.sh
#
# Results and logs go to bench/results/gate-proof/. Exit 0 when every unchanged pass passed and the
# injected one tripped the gate, else 1.
set -uo pipefail
cd "$(dirname "$0")/.."

PYTHON="${PYTHON:-.venv/bin/python}"
BASELINE="${1:-bench/baselines/cpu.json}"
RUNS="${RUNS:-5}"
INJECT="${INJECT:-100}"
OUT=bench/results/gate-proof
mkdir -p "$OUT"

short_pass() {  # the CI pass of bench/README.md, into $1
  CHIMERA_DEVICE=cpu "$PYTHON" -m pytest bench/test_bench_gemm.py bench/test_bench_train_step.py \
    --benchmark-only --bench-profile ci -q -p no:cacheprovider --benchmark-json "$1" >"$1.log" 2>&1
}

gate() {  # prints the table; returns the gate's exit code
  "$PYTHON" -m chimera bench compare "$1" "$BASELINE"
}

echo "gate proof against $BASELINE; load average $(cut -d' ' -f1-3 /proc/loadavg 2>/dev/null || uptime)"
passed=0
for i in $(seq 1 "$RUNS"); do
  if ! short_pass "$OUT/unchanged-$i.json"; then
    echo "unchanged run $i: the benchmark pass failed, see $OUT/unchanged-$i.json.log"
    continue
  fi
  echo "--- unchanged run $i"
  if gate "$OUT/unchanged-$i.json"; then passed=$((passed + 1)); fi
done

echo "--- injected slowdown: $INJECT extra matmuls per step"
CHIMERA_BENCH_INJECT_SLOWDOWN="$INJECT" short_pass "$OUT/injected.json" \
  || echo "injected run: the benchmark pass failed, see $OUT/injected.json.log"
gate "$OUT/injected.json"
injected_rc=$?

echo "load average $(cut -d' ' -f1-3 /proc/loadavg 2>/dev/null || uptime)"
echo "RESULT: $passed of $RUNS unchanged runs passed the gate; injected slowdown: gate exit $injected_rc" \
     "($([ "$injected_rc" -eq 1 ] && echo tripped || echo NOT tripped))"
[ "$passed" -eq "$RUNS" ] && [ "$injected_rc" -eq 1 ]
