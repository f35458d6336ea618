#!/usr/bin/env bash
# What can be checked of the CUDA image without NVIDIA's hardware or a multi-GB download: the exact
# package set `docker/Dockerfile` installs for TARGET=cuda (requirements-cuda.txt + requirements-bench.txt)
# resolves against PyPI for the image's platform (CPython 3.11, manylinux x86_64, wheels only), and
# torch resolves to PyPI's CUDA build, not a local +cpu wheel. Nothing is installed (pip --dry-run);
# pip's local configuration (find-links, constraint files) is switched off so only PyPI answers.
#
#   scripts/check_cuda_set.sh [REPORT.json]      # writes pip's installation report there
set -euo pipefail
cd "$(dirname "$0")/.."

PYTHON="${PYTHON:-python3}"
report="${1:-$(mktemp --suffix=.json)}"
platforms=()
for minor in $(seq 28 -1 5); do platforms+=(--platform "manylinux_2_${minor}_x86_64"); done
platforms+=(--platform manylinux2014_x86_64 --platform manylinux2010_x86_64 --platform manylinux1_x86_64)

env -u PIP_FIND_LINKS -u PIP_CONSTRAINT -u PIP_EXTRA_INDEX_URL PIP_CONFIG_FILE=/dev/null \
  "$PYTHON" -m pip install --quiet --dry-run --ignore-installed --only-binary=:all: \
  --python-version 3.11 --implementation cp "${platforms[@]}" --target "$(mktemp -d)" \
  --report "$report" -r requirements-cuda.txt -r requirements-bench.txt

"$PYTHON" - "$report" requirements-cuda.txt requirements-bench.txt <<'PY'
import json, re, sys

report, files = json.load(open(sys.argv[1])), sys.argv[2:]
resolved = {re.sub(r"[-_.]+", "-", item["metadata"]["name"].lower()): item for item in report["install"]}
pinned = {}
for name in files:
    for line in open(name):
        if re.match(r"^[a-z0-9]", line):
            package, version = line.strip().split("==")
            pinned[package] = version
problems = [f"{p}=={v} resolved as {resolved[p]['metadata']['version'] if p in resolved else 'nothing'}"
            for p, v in pinned.items() if p not in resolved or resolved[p]["metadata"]["version"] != v]
problems += [f"{p} resolved but not pinned" for p in resolved.keys() - pinned.keys()]
torch_wheel = resolved["torch"]["download_info"]["url"].rsplit("/", 1)[-1]
if "+cpu" in torch_wheel or "%2Bcpu" in torch_wheel:
    problems.append(f"torch resolved to the CPU build {torch_wheel}")
if problems:
    sys.exit("the CUDA image's set does not resolve as pinned: " + "; ".join(problems))
cuda = sorted(p for p in resolved if p.startswith("nvidia-") or p == "triton")
print(f"CUDA image set: {len(resolved)} packages resolve from PyPI exactly as pinned for CPython 3.11 "
      f"manylinux x86_64; torch wheel {torch_wheel}; {len(cuda)} CUDA runtime packages ({', '.join(cuda[:4])}, ...)")
PY
