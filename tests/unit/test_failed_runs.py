"""A run that fails keeps a `failed` record with the error and the curves so far, and says why in one line."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from chimera.analysis.doctor import diagnose
from chimera.records.record import RunRecord
from chimera.records.store import load_record
from tests.helpers import SYNTHETIC_TINY, quiet_env, sets, write_synthetic_ag_news

pytestmark = pytest.mark.slow  # trains in subprocesses

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def data(tmp_path_factory) -> Path:
    return write_synthetic_ag_news(tmp_path_factory.mktemp("data"))


def _train(tmp_path: Path, data: Path, *extra: str, fault: tuple[str, ...] = ()) -> tuple[subprocess.CompletedProcess,
                                                                                           RunRecord]:
    args = ["train", "--cell", "baseline/dense", "--profile", "ci", "--device", "cpu", "--quiet", "--out",
            str(tmp_path), "--data-dir", str(data), "--cache-dir", str(tmp_path / "cache"),
            *sets(*SYNTHETIC_TINY, "train.eval_every=1"), *extra]
    command = [str(REPO / "tests/fault_injection.py"), *fault, "--"] if fault else ["-m", "chimera"]
    done = subprocess.run([sys.executable, *command, *args], capture_output=True, text=True, env=quiet_env(),
                          timeout=300)
    return done, load_record(tmp_path / "baseline-dense-ci-s0")


def _one_line(stderr: str) -> str:
    lines = [line for line in stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and "Traceback" not in stderr, stderr
    return lines[0]


def test_a_huge_learning_rate_stops_at_the_first_non_finite_step_and_says_why(tmp_path, data):
    done, record = _train(tmp_path, data, "--set", "train.lr=1e6")
    assert done.returncode == 1
    line = _one_line(done.stderr)
    assert "non-finite loss" in line and "at step 3" in line and "learning rate" in line
    assert record.status == "failed" and "at step 3" in record.error
    assert [p.step for p in record.curves] == [1, 2]  # the curves up to the bad step
    assert record.final_metrics.steps == 2  # no silent continuation: the bad step never updated weights
    assert [(e.step, e.kind) for e in record.events] == [(3, "non_finite")]  # what the doctor reads
    found = [f for f in diagnose(record) if f.code == "non_finite"]
    assert [(f.severity, f.evidence["non_finite_events"]) for f in found] == [("error", 1)]


def test_out_of_memory_writes_a_failed_record_with_the_fix(tmp_path, data):
    done, record = _train(tmp_path, data, fault=("--oom-at-step", "4"))
    assert done.returncode == 1
    line = _one_line(done.stderr)
    assert "out of memory at step 4" in line and "train.batch_size" in line
    assert record.status == "failed" and record.error.startswith("out of memory at step 4")
    assert len(record.curves) == 3


@pytest.mark.parametrize("stays_full", [False, True], ids=["disk-frees-up", "disk-stays-full"])
def test_a_full_disk_mid_run_ends_with_one_line_and_keeps_the_previous_checkpoint(tmp_path, data, stays_full):
    args = ["train", "--cell", "baseline/dense", "--profile", "ci", "--device", "cpu", "--quiet", "--out",
            str(tmp_path), "--data-dir", str(data), "--cache-dir", str(tmp_path / "cache"),
            *sets(*SYNTHETIC_TINY, "train.checkpoint_every=5")]
    fault = ["--disk-full-at-checkpoint", "2", *(["--disk-stays-full"] if stays_full else [])]
    done = subprocess.run([sys.executable, str(REPO / "tests/fault_injection.py"), *fault, "--", *args],
                          capture_output=True, text=True, env=quiet_env(), timeout=300)
    assert done.returncode == 1
    line = _one_line(done.stderr)
    assert "No space left on device" in line and "at step 10" in line and "--resume" in line
    run_dir = tmp_path / "baseline-dense-ci-s0"
    state = json.loads((run_dir / "checkpoint" / "loop_state.json").read_text())
    assert state["step"] == 5  # the checkpoint before the failed one, intact
    if stays_full:
        assert "could not be written either" in line and not (run_dir / "record.json").exists()
    else:
        record = load_record(run_dir)
        assert record.status == "failed" and "No space left on device" in record.error


def test_a_compiled_step_that_diverges_stops_at_the_next_evaluation_naming_the_first_bad_step(tmp_path, data):
    """Step mode compile keeps the loss on the device: the check moves to the evaluation, the message and exit
    code stay; the record names the mode and keeps the compile time apart."""
    done, record = _train(tmp_path, data, "--set", "train.lr=1e6", "--set", "train.step_mode=compile")
    assert done.returncode == 1
    line = _one_line(done.stderr)
    ((bad, kind),) = [(e.step, e.kind) for e in record.events]  # compiled kernels diverge at their own step
    assert kind == "non_finite" and bad >= 2
    assert "non-finite" in line and f"at step {bad}:" in line and "learning rate" in line
    assert record.status == "failed" and f"at step {bad}:" in record.error
    assert [p.step for p in record.curves] == list(range(1, bad))  # evaluated every step: found at once
    assert record.config.train.step_mode == "compile" and record.final_metrics.compile_s > 0
