#!/usr/bin/env bash
# The CPU image end to end, as CI runs it: build, inspect, then benchmarks, a training cell and the
# doctor inside it as uid 1000, with AG News read-only and results on a bind mount.
#
#   DOCKER=podman DATA_DIR=path/to/ag_news scripts/container_check.sh [OUT]    # OUT default runs/container
#
# Fails (non-zero) on any failure inside the container. Checks on the host: the benchmark JSON loads
# with the speed gate's reader and holds every benchmark of the committed baseline (speed itself is
# judged by `make bench-ci` on the host, not here); the record validates against the record schema
# and belongs to the caller; and the CUDA image's package set resolves for the image's platform
# (scripts/check_cuda_set.sh; CHECK_CUDA_SET=0 skips it offline). PYTHON (default .venv/bin/python)
# runs the host-side checks. The training cell is the ci profile's fixed/dense, capped by TRAIN_ARGS
# (default --set train.max_steps=100: augmentation, evaluation, early-stopping bookkeeping, record
# and doctor all run, in a fraction of the full cell's time; TRAIN_ARGS= trains the whole cell).
set -euo pipefail
cd "$(dirname "$0")/.."

export DOCKER="${DOCKER:-docker}"
OUT="${1:-runs/container}"
IMAGE="${CPU_IMAGE:-chimera-bench:cpu}"
PYTHON="${PYTHON:-.venv/bin/python}"
BASELINE="${BASELINE:-bench/baselines/cpu.json}"
step() { echo; echo "== container check: $* ($(( $(date +%s) - started )) s)"; }
started=$(date +%s)

rm -rf "$OUT"
mkdir -p "$OUT"

step "build $IMAGE with $DOCKER"
make --no-print-directory docker-cpu DOCKER="$DOCKER" CPU_IMAGE="$IMAGE" ${TORCH_INDEX+TORCH_INDEX="$TORCH_INDEX"}

step "the built image: user, tools, entry point, volumes"
CHIMERA_IMAGE="$IMAGE" CHIMERA_REQUIRE_IMAGE=1 "$PYTHON" -m pytest -q -p no:cacheprovider tests/container

step "the ci benchmark pass inside the image"
bash scripts/container_run.sh "$OUT/bench" "$IMAGE" \
  pytest /app/bench/test_bench_gemm.py /app/bench/test_bench_train_step.py -c /app/pyproject.toml \
  --benchmark-only --bench-profile ci \
  --benchmark-json=/results/bench.json --benchmark-storage=/tmp/benchmarks -p no:cacheprovider -q
"$PYTHON" - "$OUT/bench/bench.json" "$BASELINE" <<'PY'
import sys
from chimera.gates.bench_gate import load_bench_file

new, baseline = load_bench_file(sys.argv[1]), load_bench_file(sys.argv[2])  # the gate's own reader
missing = sorted(set(baseline.medians) - set(new.medians))
if missing:
    sys.exit(f"{sys.argv[1]}: no benchmark for {missing}")
print(f"{sys.argv[1]}: {len(new.medians)} benchmarks, every one of {sys.argv[2]} present; "
      f"profile {new.profile}, device {new.device}")
PY

step "one ci training cell and the doctor inside the image"
# shellcheck disable=SC2086  # TRAIN_ARGS is a flag list on purpose
bash scripts/container_run.sh "$OUT/runs" "$IMAGE" chimera train --cell fixed/dense --profile ci --out /results \
  --quiet ${TRAIN_ARGS---set train.max_steps=100}
bash scripts/container_run.sh "$OUT/runs" "$IMAGE" chimera doctor /results/fixed-dense-ci-s0
record="$OUT/runs/fixed-dense-ci-s0/record.json"
"$PYTHON" -c 'import sys; from chimera.records.store import load_record; r = load_record(sys.argv[1]); print(sys.argv[1], "valid:", r.status)' "$record"
owner=$(stat -c %u "$record")
[ "$owner" = "$(id -u)" ] || { echo "$record belongs to uid $owner, not the caller $(id -u)" >&2; exit 1; }

if [ "${CHECK_CUDA_SET:-1}" = 1 ]; then
  step "the CUDA image's package set resolves for its platform (no install)"
  PYTHON="$PYTHON" bash scripts/check_cuda_set.sh "$OUT/cuda-resolution.json"
fi

step "done"
