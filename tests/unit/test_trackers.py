"""--log-with: trackers get the flattened config, every evaluation with its step, the final metrics, and are
finished however the run ends; a tracker accelerate does not know or cannot load is one line, exit 2.

The last test is the acceptance check: a real run's TensorBoard event files hold its record's val-loss curve.
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

from chimera import cli
from chimera.records.record import RunRecord
from chimera.records.store import load_record
from chimera.train.tracking import PROJECT, TRACKERS_DIR, check_log_with, evaluation_values, flat_config
from tests.helpers import SYNTHETIC_TINY, quiet_env, run_chimera, sets, write_synthetic_ag_news

CALLS: list[tuple] = []  # what the recording tracker was asked to do, in order


@pytest.fixture(scope="module")
def data(tmp_path_factory) -> Path:
    return write_synthetic_ag_news(tmp_path_factory.mktemp("data"))


@pytest.fixture
def recording_tracker(monkeypatch):
    """A tracker registered under accelerate's own extension point, keeping every call in CALLS."""
    from accelerate.tracking import LOGGER_TYPE_TO_CLASS, GeneralTracker

    class Recording(GeneralTracker):
        name = "recording"
        requires_logging_directory = True

        def __init__(self, run_name, logging_dir, **kwargs):
            super().__init__()
            CALLS.append(("init", run_name, str(logging_dir), kwargs))

        @property
        def tracker(self):
            return self

        def store_init_configuration(self, values):
            CALLS.append(("config", dict(values)))

        def log(self, values, step=None, **kwargs):
            CALLS.append(("log", step, dict(values)))

        def finish(self):
            CALLS.append(("finish",))

    CALLS.clear()
    monkeypatch.setitem(LOGGER_TYPE_TO_CLASS, "recording", Recording)
    return CALLS


def _train(tmp_path: Path, data: Path, capsys, *extra: str) -> tuple[int, str]:
    code = cli.main(["train", "--cell", "baseline/dense", "--profile", "ci", "--device", "cpu", "--quiet",
                     "--out", str(tmp_path / "runs"), "--data-dir", str(data), "--cache-dir", str(tmp_path / "cache"),
                     *sets(*SYNTHETIC_TINY), *extra])
    return code, capsys.readouterr().err


def _record(tmp_path: Path) -> RunRecord:
    return load_record(tmp_path / "runs" / "baseline-dense-ci-s0")


def test_every_evaluation_reaches_the_tracker_with_its_step_and_the_records_numbers(
        tmp_path, data, capsys, recording_tracker, restore_torch_state):
    code, err = _train(tmp_path, data, capsys, "--log-with", "recording")
    assert code == 0, err
    record = _record(tmp_path)
    run_dir = tmp_path / "runs" / "baseline-dense-ci-s0"
    assert recording_tracker[0] == ("init", PROJECT, str(run_dir / TRACKERS_DIR), {})
    config = recording_tracker[1][1]
    assert config["train.lr"] == record.config.train.lr and config["cell"] == "baseline/dense"
    assert all(v is None or isinstance(v, (bool, int, float, str)) for v in config.values())
    logs = [(step, values) for kind, *rest in recording_tracker if kind == "log" for step, values in [rest]]
    evaluations, final = logs[:-1], logs[-1]
    assert [step for step, _ in evaluations] == [p.step for p in record.curves]
    for (_, values), point in zip(evaluations, record.curves, strict=True):
        assert values["val_loss"] == point.val_loss and values["val_acc"] == point.val_acc
        assert values["lr"] == point.lr
        assert ("clean_train_loss" in values) == (point.clean_train is not None)
    assert final[0] == record.final_metrics.steps
    assert final[1]["final/test_acc"] == record.final_metrics.test_acc
    assert recording_tracker[-1] == ("finish",) and recording_tracker.count(("finish",)) == 1


def test_a_failed_run_still_finishes_its_trackers(tmp_path, data, capsys, recording_tracker, restore_torch_state):
    code, err = _train(tmp_path, data, capsys, "--log-with", "recording", "--set", "train.lr=1e6",
                       "--set", "train.eval_every=1")
    assert code == 1 and "non-finite loss" in err
    assert _record(tmp_path).status == "failed"
    logged = [rest[0] for kind, *rest in recording_tracker if kind == "log"]
    assert logged == [p.step for p in _record(tmp_path).curves]  # the evaluations before the failure
    assert recording_tracker[-1] == ("finish",)


def test_without_log_with_no_tracker_starts_and_tracking_never_changes_the_result(tmp_path, data, capsys,
                                                                                 recording_tracker,
                                                                                 restore_torch_state):
    code, err = _train(tmp_path / "plain", data, capsys)
    assert code == 0, err
    assert recording_tracker == []
    assert not (tmp_path / "plain" / "runs" / "baseline-dense-ci-s0" / TRACKERS_DIR).exists()
    code, err = _train(tmp_path / "tracked", data, capsys, "--log-with", "recording")
    assert code == 0, err
    plain, tracked = _record(tmp_path / "plain"), _record(tmp_path / "tracked")
    assert tracked.curves == plain.curves
    clocks = {"wall_s": 0.0, "train_samples_per_s": None}
    assert replace(tracked.final_metrics, **clocks) == replace(plain.final_metrics, **clocks)


@pytest.mark.parametrize(("name", "fragment"), [
    ("tensorbored", "--log-with tensorbored: not a tracker accelerate knows (known: "),
    ("tensorboard", "--log-with tensorboard: its package is not installed (pip install 'chimera-bench[trackers]'"),
    ("comet_ml", "--log-with comet_ml: its package is not installed (pip install comet-ml)")])
def test_an_unknown_or_missing_tracker_is_one_line_exit_2_and_nothing_is_written(tmp_path, capsys, monkeypatch,
                                                                                name, fragment):
    import accelerate.tracking

    monkeypatch.setattr(accelerate.tracking, "get_available_trackers", lambda: [])  # as if nothing were installed
    code = cli.main(["matrix", "--profile", "ci", "--out", str(tmp_path / "runs"), "--log-with", name])
    lines = [line for line in capsys.readouterr().err.splitlines() if line.strip()]
    assert code == 2 and len(lines) == 1 and "Traceback" not in lines[0]
    assert lines[0].startswith("chimera: error: ") and fragment in lines[0]
    assert not (tmp_path / "runs").exists()


def test_check_log_with_keeps_order_drops_repeats_and_names_the_bad_one(monkeypatch):
    import accelerate.tracking
    from accelerate.utils import LoggerType

    monkeypatch.setattr(accelerate.tracking, "get_available_trackers",
                        lambda: [LoggerType.TENSORBOARD, LoggerType.MLFLOW])
    assert check_log_with(["mlflow", "tensorboard", "mlflow"]) == ("mlflow", "tensorboard")
    with pytest.raises(Exception, match=r"--log-with wandb: its package is not installed \(pip install wandb\)"):
        check_log_with(["tensorboard", "wandb"])


def test_flat_config_gives_scalars_under_dotted_keys():
    flat = flat_config({"cell": "fixed/dense", "train": {"lr": 1e-4, "early_stopping": True, "grad_clip": None},
                        "evaluation": {"target_val_acc": [0.7, 0.75]}})
    assert flat == {"cell": "fixed/dense", "train.lr": 1e-4, "train.early_stopping": True, "train.grad_clip": None,
                    "evaluation.target_val_acc": "[0.7, 0.75]"}


def test_evaluation_values_are_the_points_numbers_plus_routing_and_speed():
    point = {"step": 20, "train_loss": 1.0, "val_loss": 0.9, "val_acc": 0.5, "lr": 1e-4, "grad_norm": None,
             "moe": [{"layer": 0, "tokens_per_expert": [0.5, 0.5], "router_entropy": 0.69, "dropped_fraction": 0.0}]}
    values = evaluation_values(point, {"step": 20, "step_time_s": 0.1, "samples_per_s": 320.0, "wall_s": 3.0})
    assert values == {"train_loss": 1.0, "val_loss": 0.9, "val_acc": 0.5, "lr": 1e-4,
                      "moe/layer0/router_entropy": 0.69, "moe/layer0/dropped_fraction": 0.0,
                      "timing/step_time_s": 0.1, "timing/samples_per_s": 320.0}


def _scalars(folder: Path, tag: str) -> list[tuple[int, float]]:
    """(step, value) of one scalar tag from every event file under `folder`, read by TensorBoard's own loader."""
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    found = []
    for events in sorted(folder.rglob("events.out.tfevents.*")):
        accumulator = EventAccumulator(str(events.parent), size_guidance={"scalars": 0})
        accumulator.Reload()
        if tag in accumulator.Tags()["scalars"]:
            found += [(event.step, event.value) for event in accumulator.Scalars(tag)]
    return found


@pytest.mark.slow  # trains in a subprocess (~10 s)
def test_a_ci_run_with_tensorboard_writes_the_records_val_loss_curve(tmp_path, data):
    pytest.importorskip("tensorboard", reason="tensorboard is the `trackers` extra (pinned in requirements-dev.txt)")
    out = tmp_path / "runs"
    run_chimera("train", "--cell", "fixed/dense", "--profile", "ci", "--device", "cpu", "--quiet", "--out", str(out),
                "--data-dir", str(data), "--cache-dir", str(tmp_path / "cache"), "--log-with", "tensorboard",
                *sets(*SYNTHETIC_TINY), env={**quiet_env(), "PYTHONPATH": str(Path(cli.__file__).parents[1])})
    run_dir = out / "fixed-dense-ci-s0"
    record = load_record(run_dir)
    logged = _scalars(run_dir / TRACKERS_DIR / PROJECT, "val_loss")
    expected = record.curve("val_loss")
    assert len(expected) >= 4 and [step for step, _ in logged] == [step for step, _ in expected]
    # TensorBoard stores scalars as float32: equal to the record's float64 rounded to float32, bit for bit
    assert [np.float32(v) for _, v in logged] == [np.float32(v) for _, v in expected]
    final = _scalars(run_dir / TRACKERS_DIR / PROJECT, "final/val_acc")
    assert final == [(record.final_metrics.steps, pytest.approx(record.final_metrics.val_acc, abs=1e-6))]
