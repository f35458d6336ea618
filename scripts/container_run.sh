#!/usr/bin/env bash
# Run an image with AG News mounted read-only at /data and a host folder at /results; files written
# there end up owned by the caller, and the container never runs as root.
#
#   scripts/container_run.sh RESULTS_DIR IMAGE [COMMAND...]     # COMMAND default: the image's (benchmarks)
#   DOCKER=podman DATA_DIR=../shared/data/ag_news scripts/container_run.sh bench/results/cpu-docker chimera-bench:cpu
#   EXTRA_RUN_ARGS="--gpus all" ...                             # more `run` flags (the CUDA target)
#
# A non-root caller runs as itself (rootless podman with --userns=keep-id, so the ids mean the same
# inside and out). A root caller (CI) runs as the image's user 1000, then gets the files back (chown),
# because `--user 0` would make the container root. Without DATA_DIR, CHIMERA_DATA_DIR is emptied so
# the container loads AG News from the Hugging Face hub (network needed).
set -euo pipefail

[ $# -ge 2 ] || { sed -n '2,8p' "$0" >&2; exit 2; }
results=$1 image=$2
shift 2
DOCKER="${DOCKER:-docker}"
uid=$(id -u) gid=$(id -g)

mkdir -p "$results"
results=$(cd "$results" && pwd)
run=("$DOCKER" run --rm -v "$results:/results")
if [ -n "${DATA_DIR:-}" ]; then
  [ -d "$DATA_DIR" ] || { echo "container_run: DATA_DIR=$DATA_DIR is not a folder" >&2; exit 2; }
  run+=(-v "$(cd "$DATA_DIR" && pwd):/data:ro")
else
  run+=(-e CHIMERA_DATA_DIR=)
fi

if [ "$uid" -eq 0 ]; then
  chown 1000:1000 "$results"
  trap 'chown -R "$uid:$gid" "$results"' EXIT
  run+=(--user 1000:1000)
else
  run+=(--user "$uid:$gid")
  if "$DOCKER" --version 2>/dev/null | grep -qi podman; then run+=(--userns=keep-id); fi
fi

# shellcheck disable=SC2206  # EXTRA_RUN_ARGS is a flag list on purpose
run+=(${EXTRA_RUN_ARGS:-} "$image" "$@")
echo "+ ${run[*]}" >&2
"${run[@]}"
