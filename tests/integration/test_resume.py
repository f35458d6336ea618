"""Kill a real training process, resume it, and get exactly the uninterrupted run's curves and metrics.

    CHIMERA_DATA_DIR=../shared/data/ag_news pytest tests/integration/test_resume.py

The cell is fixed/dense (dropout, augmentation, warmup + cosine, label smoothing, early stopping with
best-weight restore): every piece of state a resume must carry. On the `data_slice` rows these settings
stop early at step 45 and restore the weights of step 35; the kills below come at steps 13 and 36 and
in the final record write. Checkpoints every 6 steps fall between evaluations (every 5), so the
optimisation-loss running sums are resumed mid-interval. Faults come from tests/fault_injection.py,
which signals the process at an exact point.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from chimera.analysis.record_diff import diff_records
from chimera.records.record import ResumeInfo, RunRecord
from chimera.records.store import load_record
from tests.helpers import TINY, quiet_env, run_chimera, sets

pytestmark = pytest.mark.integration

REPO = Path(__file__).resolve().parents[2]
RUN = "fixed-dense-ci-s0"
SETTINGS = sets(*TINY, "train.max_steps=60", "train.eval_every=5", "train.lr=0.0035", "train.patience=2",
                "augment.synonym_prob=0", "train.checkpoint_every=6")  # synonyms off: saves loading WordNet


def _train_args(out: Path, data_dir: Path, cache: Path, *extra: str) -> list[str]:
    return ["train", "--cell", "fixed/dense", "--profile", "ci", "--device", "cpu", "--quiet", "--out", str(out),
            "--data-dir", str(data_dir), "--cache-dir", str(cache), *SETTINGS, *extra]


def _with_fault(fault: list[str], args: list[str]) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(REPO / "tests/fault_injection.py"), *fault, "--", *args],
                          capture_output=True, text=True, env=quiet_env(), timeout=600)


def _record(run_dir: Path) -> RunRecord:
    return load_record(run_dir)


def _checkpoint_step(run_dir: Path) -> int:
    return json.loads((run_dir / "checkpoint" / "loop_state.json").read_text())["step"]


@pytest.fixture(scope="module")
def cache(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("tokenizers")


@pytest.fixture(scope="module")
def uninterrupted(data_slice, cache, tmp_path_factory) -> RunRecord:
    out = tmp_path_factory.mktemp("uninterrupted")
    run_chimera(*_train_args(out, data_slice, cache), env=quiet_env())
    record = _record(out / RUN)
    # the shape the kill points below were chosen for (see the module docstring)
    assert record.status == "stopped_early" and record.final_metrics.steps == 45, record.events
    assert record.final_metrics.best_step == 35
    return record


def _assert_same_result(resumed: RunRecord, uninterrupted: RunRecord) -> None:
    diff = diff_records(uninterrupted, resumed)
    assert diff.metrics == [], "\n".join(d.describe() for d in diff.metrics)
    assert resumed.curves == uninterrupted.curves  # belt and braces: the whole list, exactly


def test_sigterm_checkpoints_and_the_resumed_run_equals_the_uninterrupted_one(data_slice, cache, tmp_path,
                                                                               uninterrupted):
    args = _train_args(tmp_path, data_slice, cache)
    killed = _with_fault(["--signal", "TERM", "--at-step", "13"], args)
    assert killed.returncode == 130, killed.stderr[-2000:]
    run_dir = tmp_path / RUN
    interrupted = _record(run_dir)
    assert interrupted.status == "interrupted" and interrupted.resume.resumable_from_step == 13
    assert _checkpoint_step(run_dir) == 13

    other = run_chimera(*args, "--set", "train.lr=0.003", "--resume", str(run_dir), check=False, env=quiet_env())
    assert other.returncode == 2 and "train.lr=0.0035" in other.stderr, other.stderr[-2000:]

    run_chimera(*args, "--resume", str(run_dir), env=quiet_env())
    resumed = _record(run_dir)
    assert resumed.resume == ResumeInfo(resumed_from_step=13)
    assert [e.kind for e in resumed.events] == ["resumed", "early_stop"]
    _assert_same_result(resumed, uninterrupted)
    assert not (run_dir / "checkpoint").exists() and not (run_dir / "run.lock").exists()


def test_sigkill_during_a_checkpoint_write_resumes_from_the_previous_one(data_slice, cache, tmp_path,
                                                                         uninterrupted):
    args = _train_args(tmp_path, data_slice, cache)
    killed = _with_fault(["--signal", "KILL", "--in-checkpoint-write", "6"], args)  # the step-36 checkpoint
    assert killed.returncode == -9, killed.stderr[-2000:]
    run_dir = tmp_path / RUN
    assert not (run_dir / "record.json").exists()
    assert (run_dir / "checkpoint.partial").is_dir() and _checkpoint_step(run_dir) == 30
    # best_model.pt on disk is step 35's; the checkpoint's copy (step 30's) must win on resume
    assert (run_dir / "run.lock").exists()  # left by the dead process; the resume takes it over

    run_chimera(*args, "--resume", str(run_dir), env=quiet_env())
    resumed = _record(run_dir)
    assert resumed.resume == ResumeInfo(resumed_from_step=30)
    _assert_same_result(resumed, uninterrupted)


def test_sigkill_while_writing_the_final_record_loses_nothing(data_slice, cache, tmp_path, uninterrupted):
    args = _train_args(tmp_path, data_slice, cache)
    killed = _with_fault(["--signal", "KILL", "--in-record-write", "1"], args)
    assert killed.returncode == -9, killed.stderr[-2000:]
    run_dir = tmp_path / RUN
    assert not (run_dir / "record.json").exists()  # never a truncated record: the old state or none
    assert _checkpoint_step(run_dir) == 42  # checkpoints are removed only once the record is safe

    run_chimera(*args, "--resume", str(run_dir), env=quiet_env())
    _assert_same_result(_record(run_dir), uninterrupted)
