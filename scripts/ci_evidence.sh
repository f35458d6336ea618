#!/usr/bin/env bash
# What a CI run leaves behind, gathered into one folder; .ci/run calls it on exit (pass or fail) and the
# GitHub workflow uploads the parts as artifacts (.github/workflows/ci.yml). Locally the folder stays.
#
#   bash scripts/ci_evidence.sh EVIDENCE      # EVIDENCE: .ci/run uses runs/ci-evidence
#
#   EVIDENCE/records/ci/<run>/record.json        the ci matrix the tests trained (copied there by tests/conftest.py's
#                                                ci_runs under CHIMERA_KEEP_RUNS=EVIDENCE/records/ci; .ci/run sets it)
#   EVIDENCE/records/container/<run>/record.json the training cell run inside the CPU image
#   EVIDENCE/bench/container.json, host-*.json   the image's ci benchmark pass; the host's (make bench-ci) when it ran
#   EVIDENCE/bench/*.md                          each as markdown tables (bench/summarise.py: speed and memory)
#   EVIDENCE/speed-gate.md                       the speed gate's table (chimera bench compare --markdown), by .ci/run
#   EVIDENCE/report/                             chimera report of records/ci with bench/ (report.md, report.html, PNGs)
#
# Copies what exists and says what does not; exits 0 unless EVIDENCE is missing (a failed CI run's evidence is
# the point). Inputs (relative to the checkout): CONTAINER_OUT (default runs/container, scripts/container_check.sh's
# folder) and HOST_BENCH (default bench/results/ci, make bench-ci's); PYTHON (default .venv/bin/python) renders.
set -uo pipefail
cd "$(dirname "$0")/.."
[ $# -eq 1 ] || { echo "usage: scripts/ci_evidence.sh EVIDENCE" >&2; exit 2; }
EVIDENCE="$1"
PYTHON="${PYTHON:-.venv/bin/python}"
CONTAINER_OUT="${CONTAINER_OUT:-runs/container}"
HOST_BENCH="${HOST_BENCH:-bench/results/ci}"
[ -d "$EVIDENCE" ] || { echo "ci evidence: $EVIDENCE: no such folder" >&2; exit 2; }
mkdir -p "$EVIDENCE/bench" "$EVIDENCE/records"

copy() {  # copy SOURCE TARGET: one line either way
  if [ -f "$1" ]; then mkdir -p "$(dirname "$2")" && cp "$1" "$2" && echo "ci evidence: $2"
  else echo "ci evidence: no $1 (that step did not run)"; fi
}

copy "$CONTAINER_OUT/bench/bench.json" "$EVIDENCE/bench/container.json"
for json in "$HOST_BENCH"/*.json; do
  [ -f "$json" ] && copy "$json" "$EVIDENCE/bench/host-$(basename "$json")"
done
for record in "$CONTAINER_OUT"/runs/*/record.json; do
  [ -f "$record" ] && copy "$record" "$EVIDENCE/records/container/$(basename "$(dirname "$record")")/record.json"
done

if ! [ -x "$PYTHON" ]; then
  echo "ci evidence: no $PYTHON: tables and report not rendered"
  exit 0
fi
for json in "$EVIDENCE"/bench/*.json; do
  [ -f "$json" ] || continue
  "$PYTHON" bench/summarise.py "$json" > "${json%.json}.md" 2>&1 || echo "ci evidence: $json: not summarised"
done
if compgen -G "$EVIDENCE/records/ci/*/record.json" > /dev/null; then
  "$PYTHON" -m chimera report "$EVIDENCE/records/ci" --out "$EVIDENCE/report" --bench-dir "$EVIDENCE/bench" \
    && echo "ci evidence: $EVIDENCE/report/report.html" || echo "ci evidence: the report failed (above)"
else
  echo "ci evidence: no ci records under $EVIDENCE/records/ci (the tests stopped before the matrix): no report"
fi
exit 0
