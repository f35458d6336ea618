"""Time to target: first crossings on synthetic curves, the record schema, and a real run's clocks
(including a run resumed after an interruption, whose wall clock must not count the time it was down)."""

from __future__ import annotations

import subprocess
import sys
import time
from dataclasses import replace
from pathlib import Path

import pytest

from chimera.errors import ChimeraError
from chimera.records.record import CurvePoint, TimingPoint
from chimera.records.store import load_record, validate_record
from chimera.records.time_to_target import time_to_target
from tests.helpers import SYNTHETIC_TINY, quiet_env, sets, write_synthetic_ag_news
from tests.unit.record_factory import minimal_record, replaced_at

REPO = Path(__file__).resolve().parents[2]


def _point(step: int, val_acc: float, val_loss: float | None = None) -> CurvePoint:
    return CurvePoint(step=step, train_loss=1.0, val_loss=val_loss, val_acc=val_acc, lr=1e-4, grad_norm=0.5)


CURVES = [_point(20, 0.50, 1.2), _point(40, 0.72, 0.9), _point(60, 0.75, 0.7), _point(80, 0.74, 0.6),
          _point(100, 0.81, 0.6)]
TIMING = [TimingPoint(step=s, step_time_s=0.1, samples_per_s=320.0, train_s=s * 0.1, wall_s=s * 0.15)
          for s in (20, 40, 60, 80, 100)]


def _entries(targets, curves=CURVES, timing=TIMING, samples_per_step=32):
    return [entry.to_json() for entry in time_to_target(curves, timing, targets, samples_per_step=samples_per_step)]


def test_a_known_crossing_gives_the_first_evaluation_at_or_past_the_target():
    (entry,) = _entries([("val_acc", 0.70)])
    assert entry == {"metric": "val_acc", "target": 0.70, "reached": True, "step": 40, "samples": 40 * 32,
                     "train_s": pytest.approx(4.0), "wall_s": pytest.approx(6.0), "value": 0.72}


def test_a_target_never_reached_is_all_nulls():
    (entry,) = _entries([("val_acc", 0.9)])
    assert entry["reached"] is False
    assert [entry[k] for k in ("step", "samples", "train_s", "wall_s", "value")] == [None] * 5


def test_reaching_the_target_exactly_counts_and_a_later_dip_changes_nothing():
    exact, later = _entries([("val_acc", 0.75), ("val_acc", 0.80)])
    assert (exact["step"], exact["value"]) == (60, 0.75)  # 0.75 is 0.75 reached, not missed
    assert later["step"] == 100  # the dip to 0.74 at step 80 neither counts nor resets anything


def test_ties_two_targets_crossed_by_one_evaluation_share_its_step_and_clock():
    curves = [_point(20, 0.5), _point(40, 0.9)]
    low, high = _entries([("val_acc", 0.7), ("val_acc", 0.8)], curves=curves)
    assert low["step"] == high["step"] == 40 and low["wall_s"] == high["wall_s"] == pytest.approx(6.0)


def test_loss_targets_are_reached_from_above():
    (entry,) = _entries([("val_loss", 0.7)])
    assert (entry["step"], entry["value"]) == (60, 0.7)


def test_timing_without_clocks_gives_the_step_but_no_seconds():
    old_timing = [TimingPoint(step=s, step_time_s=0.1, samples_per_s=320.0) for s in (20, 40, 60, 80, 100)]
    (entry,) = _entries([("val_acc", 0.7)], timing=old_timing)
    assert entry["reached"] and entry["step"] == 40 and entry["wall_s"] is None and entry["train_s"] is None


def test_the_schema_accepts_time_to_target_and_refuses_a_reached_flag_without_a_step():
    record = minimal_record()
    timing = [TimingPoint(step=10, step_time_s=0.1, samples_per_s=320.0, train_s=1.0, wall_s=1.5)]
    record = replace(record, timing=timing, time_to_target=time_to_target(
        record.curves, timing, [("val_acc", 0.3), ("val_acc", 0.9)], samples_per_step=32))
    validate_record(record.to_json())
    assert record.target_time("val_acc", 0.3).step == 10 and record.target_time("val_acc", 0.5) is None
    # "not reached" but with a step: contradictory
    record = replace(record, time_to_target=replaced_at(record.time_to_target, 1, step=10))
    with pytest.raises(ChimeraError, match="time_to_target"):
        validate_record(record.to_json())


def _train(out: Path, data: Path, *extra: str, fault: tuple[str, ...] = ()) -> subprocess.CompletedProcess:
    args = ["train", "--cell", "baseline/dense", "--profile", "ci", "--device", "cpu", "--quiet", "--out", str(out),
            "--data-dir", str(data), "--cache-dir", str(out / "cache"),
            *sets(*SYNTHETIC_TINY, "train.max_steps=40", "evaluation.target_val_acc=[0.3, 0.99]"), *extra]
    command = [str(REPO / "tests/fault_injection.py"), *fault, "--"] if fault else ["-m", "chimera"]
    return subprocess.run([sys.executable, *command, *args], capture_output=True, text=True, env=quiet_env(),
                          timeout=300)


@pytest.mark.slow  # trains twice in subprocesses
def test_a_resumed_run_clock_skips_the_time_it_was_stopped(tmp_path):
    data = write_synthetic_ag_news(tmp_path / "data")
    run_dir = tmp_path / "baseline-dense-ci-s0"
    killed = _train(tmp_path, data, fault=("--signal", "TERM", "--at-step", "22"))
    assert killed.returncode == 130, killed.stderr[-2000:]
    before = [t.to_json() for t in load_record(run_dir).timing]  # the interrupted run's record
    pause = 10.0  # longer than the resumed process lives, so a clock that spanned it could not pass below
    time.sleep(pause)
    started = time.perf_counter()
    resumed = _train(tmp_path, data, "--resume", str(run_dir))
    second_process = time.perf_counter() - started
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    record = load_record(run_dir)
    timing = [t.to_json() for t in record.timing]
    assert timing[:len(before)] == before  # the evaluations before the interruption keep their clocks
    walls = [t["wall_s"] for t in timing]
    assert walls == sorted(walls) and all(t["wall_s"] >= t["train_s"] for t in timing)
    # After the resume the clock advanced by less than the second process lived: the pause is not in it.
    assert walls[-1] - before[-1]["wall_s"] < second_process
    low, high = record.time_to_target
    assert (low.target, high.target) == (0.3, 0.99)
    assert low.reached and low.wall_s == next(t["wall_s"] for t in timing if t["step"] == low.step)
    assert not high.reached
