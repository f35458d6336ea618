#!/usr/bin/env bash
# One command to verify Chimera Bench on a lent machine that cannot download anything.
#
#   scripts/gpu_check.sh --prepare [--kit DIR] [--data-dir D] [--no-download] [--python-version X.Y] [--only P,...]
#   scripts/gpu_check.sh --device cuda|cpu [--budget tiny|full] [--kit DIR] [--data-dir D] [--out DIR]
#
# --prepare fills the kit folder (default bench/results/gpu-check-kit; copy it along with the checkout):
#   wheelhouse/   pip download of the project's needs beyond torch, accelerate, transformers and tokenizers
#                 (datasets, nltk, jsonschema, pytest-benchmark, ...; pins from requirements-cuda.txt and
#                 requirements-bench.txt), for the Python that runs this script or, with --python-version, for
#                 that CPython on manylinux x86-64. --only: just these packages, without their dependencies: a
#                 lent H200 (Python 3.12) lacked only --only datasets,dill,multiprocess,fsspec,nltk,defusedxml,
#                 jsonschema,referencing,jsonschema-specifications,rpds-py (3.3 MB of wheels)
#   nltk_data/    WordNet, by scripts/prepare_wordnet.sh, kept as the corpora/wordnet.zip NLTK's downloader
#                 writes (11 MB instead of 36)
#   ag_news/      AG News train/test CSV (copied from --data-dir, else downloaded with datasets)
# --no-download skips the pip download and the AG News download (what is already installed is used).
#
# The run mode installs the kit's wheels of whatever the Python lacks (no dependencies, into KIT/site on
# PYTHONPATH; what is installed stays as it is), then writes one results folder (default
# bench/results/gpu-check/<device>-<budget>-<time>):
#   environment.json (+ nvidia-smi.txt)   `chimera env`: versions, device, native precisions
#   bench.json, bench.md                  calibration GEMM, fixed/dense train step and BERT peer in every
#                                         native precision (fp32 and bf16, or fp16 without native bf16);
#                                         a precision the hardware lacks is listed with the reason
#   runs/<precision>/                     one ci-profile fixed/dense run per native precision
#   determinism/                          the last of those runs again from its record (`chimera reproduce`):
#                                         identical curves or the check fails
#   summary.md                            one line per step: ok, FAILED or skipped (with why)
# Budgets: full = full shapes and the ci profile as it is (target: under 8 minutes on a GPU); tiny = ci
# shapes, a few benchmark rounds and a 20-step run at toy sizes (about a minute on 2 CPU cores; the unit
# test tests/unit/test_gpu_check.py runs it so the script cannot rot). Exit 1 when any step failed.
set -euo pipefail

REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
PYTHON="${PYTHON:-$( [ -x "$REPO/.venv/bin/python" ] && echo "$REPO/.venv/bin/python" || echo python3)}"
KIT="$REPO/bench/results/gpu-check-kit"
MODE="" DEVICE="" BUDGET="tiny" OUT="" DATA_DIR="${CHIMERA_DATA_DIR:-}" DOWNLOAD=1 TARGET_PYTHON="" ONLY=""
# Installed on the lent machine already (and large, or CUDA-specific): never put in the wheelhouse.
PREINSTALLED='^(torch|triton|accelerate|transformers|tokenizers|nvidia-.*|cuda-.*)=='

die() { echo "gpu_check: $*" >&2; exit 2; }
while [ $# -gt 0 ]; do
  case "$1" in
    --prepare) MODE=prepare ;;
    --device) MODE=run; DEVICE="${2:?--device needs cuda or cpu}"; shift ;;
    --budget) BUDGET="${2:?--budget needs tiny or full}"; shift ;;
    --kit) KIT="${2:?}"; shift ;;
    --out) OUT="${2:?}"; shift ;;
    --data-dir) DATA_DIR="${2:?}"; shift ;;
    --no-download) DOWNLOAD=0 ;;
    --python-version) TARGET_PYTHON="${2:?--python-version needs X.Y, e.g. 3.12}"; shift ;;
    --only) ONLY="${2:?--only needs comma-separated package names}"; shift ;;
    -h|--help) sed -n '2,32p' "$0"; exit 0 ;;
    *) die "unknown argument $1 (see --help)" ;;
  esac
  shift
done
[ -n "$MODE" ] || die "give --prepare or --device cuda|cpu (see --help)"
KIT="$(mkdir -p "$KIT" && cd "$KIT" && pwd)"

prepare() {
  mkdir -p "$KIT/wheelhouse"
  grep -hE '^[A-Za-z0-9_.-]+==' "$REPO/requirements-cuda.txt" "$REPO/requirements-bench.txt" \
    | grep -viE "$PREINSTALLED" | sort -u > "$KIT/requirements.txt"
  local download=(--only-binary=:all: --dest "$KIT/wheelhouse")
  if [ -n "$ONLY" ]; then
    local wanted
    wanted="$(grep -iE "^($(tr ',' '|' <<<"$ONLY"))==" "$KIT/requirements.txt" || true)"
    [ "$(wc -w <<<"$wanted")" = "$(tr ',' ' ' <<<"$ONLY" | wc -w)" ] \
      || die "--only $ONLY: not all of them are pinned in requirements-cuda.txt or requirements-bench.txt"
    echo "$wanted" > "$KIT/requirements.txt"
    download+=(--no-deps)
  fi
  [ -z "$TARGET_PYTHON" ] || download+=(--python-version "$TARGET_PYTHON" --implementation cp
    --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64)
  if [ "$DOWNLOAD" = 1 ]; then
    "$PYTHON" -m pip download "${download[@]}" -r "$KIT/requirements.txt"
  else
    echo "gpu_check: --no-download: wheelhouse left as it is ($(ls "$KIT/wheelhouse" | wc -l) files)"
  fi
  if [ ! -f "$KIT/nltk_data/corpora/wordnet.zip" ]; then
    NLTK_DATA="$KIT/nltk_data" PYTHON="$PYTHON" bash "$REPO/scripts/prepare_wordnet.sh"
    (cd "$KIT/nltk_data/corpora" && "$PYTHON" -m zipfile -c wordnet.zip wordnet/ && rm -rf wordnet)
  fi
  if [ -n "$DATA_DIR" ] && [ -d "$DATA_DIR" ]; then
    mkdir -p "$KIT/ag_news" && cp "$DATA_DIR"/train* "$DATA_DIR"/test* "$KIT/ag_news/"
  elif [ "$DOWNLOAD" = 1 ] && [ ! -f "$KIT/ag_news/train.csv" ]; then
    "$PYTHON" - "$KIT/ag_news" <<'PY'
import sys
from datasets import load_dataset
for split in ("train", "test"):
    load_dataset("fancyzhx/ag_news", split=split).to_csv(f"{sys.argv[1]}/{split}.csv", index=False)
PY
  fi
  echo "gpu_check: kit ready in $KIT (copy it with the checkout; run with --kit $KIT)"
}

# Installs the kit's wheels of the distributions this Python lacks, without dependencies, into KIT/site (on
# PYTHONPATH): what the machine has (torch and the rest) stays as it is, and nothing needs a resolver or network.
# A venv is no use there: a lent machine's python3 is often a venv itself, whose packages a new venv cannot see.
ensure_packages() {
  local missing
  missing="$("$PYTHON" - <<'PY'
import importlib.util
need = {"datasets": "datasets", "nltk": "nltk", "jsonschema": "jsonschema", "matplotlib": "matplotlib",
        "tqdm": "tqdm", "pytest": "pytest", "pytest_benchmark": "pytest-benchmark", "torch": "torch",
        "accelerate": "accelerate", "transformers": "transformers", "tokenizers": "tokenizers"}
print(" ".join(pkg for mod, pkg in need.items() if importlib.util.find_spec(mod) is None))
PY
)"
  [ -z "$missing" ] && return 0
  local wheels
  wheels="$("$PYTHON" - "$KIT/wheelhouse" <<'PY'
import importlib.metadata as metadata, pathlib, sys
for wheel in sorted(pathlib.Path(sys.argv[1]).glob("*.whl")):
    try:
        metadata.version(wheel.name.split("-")[0])
    except metadata.PackageNotFoundError:
        print(wheel)
PY
)" || true
  [ -n "$wheels" ] || die "missing: $missing, and the kit's wheelhouse ($KIT/wheelhouse) has no wheel this Python lacks"
  # shellcheck disable=SC2086
  "$PYTHON" -m pip install -q --no-index --no-deps --no-compile --target "$KIT/site" $wheels \
    || die "installing the kit's wheels into $KIT/site failed (output above)"
  export PYTHONPATH="$KIT/site${PYTHONPATH:+:$PYTHONPATH}"
  missing="$("$PYTHON" -c 'import importlib.util, sys; print(" ".join(m for m in sys.argv[1:] if importlib.util.find_spec(m.replace("-", "_")) is None))' $missing)"
  [ -z "$missing" ] || die "still missing after installing the kit's wheels: $missing"
}

STEPS=()
step() {  # step NAME COMMAND...: run, log to OUT/logs/NAME.log, note ok or FAILED
  local name="$1"; shift
  echo "gpu_check: $name"
  if "$@" > "$OUT/logs/$name.log" 2>&1; then STEPS+=("ok      $name"); else
    STEPS+=("FAILED  $name (exit $?; logs/$name.log)"); tail -5 "$OUT/logs/$name.log" >&2; fi
}

run_checks() {
  case "$DEVICE" in cuda|cpu) ;; *) die "--device $DEVICE: use cuda or cpu" ;; esac
  case "$BUDGET" in tiny|full) ;; *) die "--budget $BUDGET: use tiny or full" ;; esac
  OUT="${OUT:-$REPO/bench/results/gpu-check/$DEVICE-$BUDGET-$(date -u +%Y%m%dT%H%M%SZ)}"
  mkdir -p "$OUT/logs"
  OUT="$(cd "$OUT" && pwd)"
  [ -n "$DATA_DIR" ] || { [ -f "$KIT/ag_news/train.csv" ] && DATA_DIR="$KIT/ag_news"; } || true
  [ -n "$DATA_DIR" ] || { [ -d "$REPO/../shared/data/ag_news" ] && DATA_DIR="$REPO/../shared/data/ag_news"; } || true
  [ -n "$DATA_DIR" ] && [ -d "$DATA_DIR" ] || die "no AG News folder: pass --data-dir, set CHIMERA_DATA_DIR or --prepare a kit"
  ensure_packages
  cd "$REPO"
  export PYTHONPATH="$REPO${PYTHONPATH:+:$PYTHONPATH}" CHIMERA_DEVICE="$DEVICE" HF_HUB_OFFLINE=1 \
    HF_DATASETS_OFFLINE=1 TRANSFORMERS_OFFLINE=1
  unset ACCELERATE_MIXED_PRECISION  # each run names its precision
  [ -d "$KIT/nltk_data" ] && export NLTK_DATA="$KIT/nltk_data"
  [ "$DEVICE" = cpu ] || "$PYTHON" -c 'import sys, torch; torch.cuda.is_available() or sys.exit(
    f"torch {torch.__version__} sees no CUDA device")' || die "CUDA is not available (see nvidia-smi)"

  "$PYTHON" -m chimera env > "$OUT/environment.json"
  command -v nvidia-smi > /dev/null && nvidia-smi > "$OUT/nvidia-smi.txt" 2>&1 || true
  local precisions skipped
  precisions="$("$PYTHON" -c 'import json, sys; e = json.load(open(sys.argv[1])); print(" ".join(e["native_precisions"]))' "$OUT/environment.json")"
  skipped="$("$PYTHON" -c 'import json, sys; e = json.load(open(sys.argv[1]))
for p, why in e["not_native"].items(): print(f"skipped {p}: {why}")' "$OUT/environment.json")"

  local bench=(-m pytest bench/test_bench_gemm.py bench/test_bench_train_step.py bench/test_bench_peer.py
               --benchmark-only --bench-precision native -p no:cacheprovider -rs --benchmark-json "$OUT/bench.json")
  local run_sets=()
  if [ "$BUDGET" = tiny ]; then
    bench+=(--bench-profile ci -k "calibration or (fixed and dense)")
    # data.train_pool=all: a tiny run reads whatever --data-dir holds (the offline subset, the hub's split, or
    # made-up rows in tests/unit/test_gpu_check.py), not necessarily the packaged manifest's rows
    for kv in data.train_pool=all data.train_samples=64 data.val_samples=32 data.test_samples=32 data.max_length=16 \
              data.vocab_size=256 model.d_model=32 model.d_ff=64 model.n_layers=1 train.batch_size=16 \
              train.warmup_steps=2 train.max_steps=20 train.eval_every=5; do run_sets+=(--set "$kv"); done
    export CHIMERA_BENCH_ROUNDS=tiny
  fi
  step benchmarks "$PYTHON" "${bench[@]}"
  [ -f "$OUT/bench.json" ] && "$PYTHON" bench/summarise.py "$OUT/bench.json" > "$OUT/bench.md" || true

  local last=""
  for precision in $precisions; do
    step "run-$precision" "$PYTHON" -m chimera train --cell fixed/dense --profile ci --device "$DEVICE" \
      --precision "$precision" --data-dir "$DATA_DIR" --out "$OUT/runs/$precision" \
      --cache-dir "$OUT/cache" --quiet "${run_sets[@]}"
    last="$precision"
  done
  step "determinism-$last" "$PYTHON" -m chimera reproduce "$OUT/runs/$last/fixed-dense-ci-s0/record.json" \
    --out "$OUT/determinism" --data-dir "$DATA_DIR" --cache-dir "$OUT/cache" --quiet
  if [ "$DEVICE" = cuda ]; then
    # graph mode asks the GPU nothing: 100 steps per cell under torch.cuda.set_sync_debug_mode("error")
    step sync-debug "$PYTHON" bench/sync_check.py --steps 100 --mode graph
    # the original experiment on the GPU: time to 0.75 val accuracy and wall time, beside the CPU's records
    if [ "$BUDGET" = full ]; then
      step run-full "$PYTHON" -m chimera train --cell fixed/dense --profile full --device "$DEVICE" \
        --data-dir "$DATA_DIR" --out "$OUT/runs/full" --cache-dir "$OUT/cache" --quiet
    fi
  fi

  {
    echo "# gpu_check: --device $DEVICE --budget $BUDGET"
    echo
    echo "precisions run: $precisions"
    [ -n "$skipped" ] && echo "$skipped"
    echo
    printf '%s\n' "${STEPS[@]}"
  } > "$OUT/summary.md"
  cat "$OUT/summary.md"
  echo "gpu_check: results in $OUT"
  ! printf '%s\n' "${STEPS[@]}" | grep -q '^FAILED'
}

if [ "$MODE" = prepare ]; then prepare; else run_checks; fi
