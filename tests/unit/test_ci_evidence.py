"""CI keeps its evidence: .ci/run leaves the ci records, benchmark JSON, the speed gate's table and the rendered
report in one folder (scripts/ci_evidence.sh), and the GitHub workflow uploads exactly those paths and puts the
gate's table in the job summary, pass or fail."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from chimera import cli
from chimera.records.bench_report import load_bench_report
from chimera.records.store import write_record
from tests.helpers import copy_records
from tests.unit.record_factory import run_record
from tests.unit.test_bench_gate import bench_file
from tests.unit.test_bench_memory import memory_entry
from tests.unit.test_report import write_matrix

REPO = Path(__file__).resolve().parents[2]
CI_RUN = (REPO / ".ci" / "run").read_text()
MAKEFILE = (REPO / "Makefile").read_text()
STEPS = yaml.safe_load((REPO / ".github" / "workflows" / "ci.yml").read_text())["jobs"]["test"]["steps"]


def evidence_default() -> str:
    match = re.search(r'^EVIDENCE="\$\{CHIMERA_CI_EVIDENCE:-([^}]+)\}"$', CI_RUN, re.M)
    assert match, ".ci/run names its evidence folder"
    return match.group(1)


def step_index(predicate) -> int:
    return next(i for i, step in enumerate(STEPS) if predicate(step))


UPLOADS = [step for step in STEPS if str(step.get("uses", "")).startswith("actions/upload-artifact@")]
UPLOADED = {line.strip() for step in UPLOADS for line in step["with"]["path"].splitlines() if line.strip()}
CI_STEP = step_index(lambda step: step.get("run") == "bash .ci/run")


def test_the_workflow_uploads_records_benchmarks_gate_table_and_report_even_when_ci_fails():
    root = evidence_default()
    assert UPLOADED == {f"{root}/records/", f"{root}/bench/", f"{root}/speed-gate.md", f"{root}/report/"}
    assert all(step.get("if") == "always()" for step in UPLOADS)
    assert len({step["with"]["name"] for step in UPLOADS}) == len(UPLOADS) == 3
    assert all(STEPS.index(step) > CI_STEP for step in UPLOADS)


def test_the_job_summary_gets_the_gate_table_that_ci_run_writes():
    summary = STEPS[step_index(lambda step: "GITHUB_STEP_SUMMARY" in str(step.get("run", "")))]
    assert summary.get("if") == "always()" and STEPS.index(summary) > CI_STEP
    assert f"evidence={evidence_default()}" in summary["run"] and '"$evidence/speed-gate.md"' in summary["run"]
    # .ci/run: both gate commands (the image's pass, the host's confirming make bench-ci) append to that file
    assert 'gate_table="$EVIDENCE/speed-gate.md"' in CI_RUN
    assert '--markdown "$gate_table"' in CI_RUN and 'make bench-ci GATE_ARGS="--markdown $gate_table"' in CI_RUN
    gate_lines = [line for line in MAKEFILE.splitlines() if "chimera bench compare" in line]
    assert len(gate_lines) == 2 and all("$(GATE_ARGS)" in line for line in gate_lines)


def test_ci_run_collects_on_exit_and_has_the_matrix_records_copied_into_the_evidence():
    assert "trap 'bash scripts/ci_evidence.sh \"$EVIDENCE\"' EXIT" in CI_RUN
    assert 'export CHIMERA_KEEP_RUNS="$EVIDENCE/records/ci"' in CI_RUN
    assert CI_RUN.index("trap 'bash scripts/ci_evidence.sh") < CI_RUN.index("\nmake test\n")


def test_the_matrix_records_are_copied_run_by_run(tmp_path):
    write_matrix(tmp_path / "runs", cells=["fixed/dense", "fixed/moe"], seeds=(0,))
    copies = copy_records(tmp_path / "runs", tmp_path / "keep")
    assert [c.relative_to(tmp_path / "keep").as_posix() for c in copies] == [
        "fixed-dense-ci-s0/record.json", "fixed-moe-ci-s0/record.json"]


@pytest.mark.slow  # renders a report in a subprocess (matplotlib), ~10 s
def test_the_evidence_script_fills_every_uploaded_path(tmp_path):
    container, host, evidence = tmp_path / "container", tmp_path / "host", tmp_path / "evidence"
    memory = (memory_entry("fixed/dense", 612.0, 41.0), memory_entry("baseline/moe", 905.0, 330.0))
    (container / "bench").mkdir(parents=True)
    bench_file(container / "bench" / "bench.json", other=memory)
    write_record(run_record("fixed/dense", 0), container / "runs" / "fixed-dense-ci-s0")
    host.mkdir()
    bench_file(host / "bench.json")
    write_matrix(evidence / "records" / "ci", cells=["fixed/dense", "baseline/moe"], seeds=(0,))
    gate = evidence / "speed-gate.md"
    assert cli.main(["bench", "compare", str(container / "bench" / "bench.json"), str(host / "bench.json"),
                     "--markdown", str(gate)]) == 0
    env = {"PATH": "/usr/bin:/bin", "PYTHON": sys.executable, "CONTAINER_OUT": str(container),
           "HOST_BENCH": str(host), "MPLBACKEND": "Agg"}
    done = subprocess.run(["bash", str(REPO / "scripts" / "ci_evidence.sh"), str(evidence)], capture_output=True,
                          text=True, env=env, timeout=300)
    assert done.returncode == 0, done.stdout + done.stderr
    for path in UPLOADED:
        local = evidence / path.removeprefix(evidence_default() + "/")
        assert local.is_file() or any(local.rglob("*")), f"{path}: nothing there\n{done.stdout}"
    assert (evidence / "bench" / "container.json").is_file() and (evidence / "bench" / "host-bench.json").is_file()
    assert (evidence / "records" / "container" / "fixed-dense-ci-s0" / "record.json").is_file()
    assert "612 (+41)" in (evidence / "bench" / "container.md").read_text()
    report = (evidence / "report" / "report.md").read_text()
    assert "| fixed/dense | fp32 | 612 | 41 |" in report and (evidence / "report" / "report.html").is_file()
    assert load_bench_report(evidence / "bench" / "container.json").benchmarks


def test_the_evidence_script_refuses_a_missing_folder(tmp_path):
    done = subprocess.run(["bash", str(REPO / "scripts" / "ci_evidence.sh"), str(tmp_path / "absent")],
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 2 and "no such folder" in done.stderr
