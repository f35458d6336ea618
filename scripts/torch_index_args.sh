#!/usr/bin/env bash
# The pip flags `make setup` adds for torch: `--extra-index-url INDEX` on Linux without an NVIDIA GPU, when
# INDEX answers; nothing otherwise (pip's own configuration then decides where torch comes from).
#
#   pip install $(bash scripts/torch_index_args.sh https://download.pytorch.org/whl/cpu) -r requirements-cpu.txt
#
# Why: PyPI's Linux torch is the multi-GB CUDA build; PyTorch's CPU index serves the same version as
# 2.13.0+cpu, which `torch==2.13.0` matches and pip prefers. The index is probed once (PROBE_TIMEOUT seconds,
# default 5) because pip asks every index about every package and retries each: on a closed network an
# unreachable index would cost that for all ~90 packages instead of once. Messages go to stderr.
set -euo pipefail

INDEX="${1:-}"
PYTHON_BOOT="${PYTHON_BOOT:-python3}"
PROBE_TIMEOUT="${PROBE_TIMEOUT:-5}"

say() { echo "setup: $*" >&2; }

if [ -z "$INDEX" ]; then
  exit 0  # TORCH_INDEX= : pip's configuration only
fi
if [ "$(uname -s)" != Linux ]; then
  exit 0  # macOS and Windows wheels on PyPI carry no CUDA
fi
if [ -e /dev/nvidia0 ] || command -v nvidia-smi >/dev/null 2>&1; then
  say "an NVIDIA GPU is present: torch as pip is configured (on PyPI, the CUDA build)"
  exit 0
fi
if "$PYTHON_BOOT" - "$INDEX" "$PROBE_TIMEOUT" <<'PY' 2>/dev/null; then
import sys
import urllib.request

urllib.request.urlopen(sys.argv[1].rstrip("/") + "/torch/", timeout=float(sys.argv[2])).close()
PY
  say "no NVIDIA GPU: torch's CPU build from $INDEX (TORCH_INDEX= to leave it to pip's configuration)"
  echo "--extra-index-url $INDEX"
else
  say "no NVIDIA GPU, but $INDEX could not be reached (probe of ${PROBE_TIMEOUT} s at most): torch as pip is configured" \
      "(plain PyPI: the multi-GB CUDA build; a local CPU wheel in pip's find-links is used if there is one)"
fi
