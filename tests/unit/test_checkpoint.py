"""Checkpoints: complete or absent after a crash mid-write, exact RNG restore, no unpickling of code."""

from __future__ import annotations

import json
import os
from dataclasses import replace
from pathlib import Path

import pytest
import torch
from accelerate import Accelerator

from chimera.errors import ChimeraError
from chimera.records.record import CurvePoint, Event, SplitScore, TimingPoint
from chimera.train import checkpoint
from chimera.train.evaluate import EarlyStopping
from chimera.train.recipe import LoopState

CONFIG = {"cell": "fixed/dense", "train": {"lr": 0.001, "betas": [0.9, 0.999]}}


def _objects():
    accelerator = Accelerator(cpu=True)
    model = torch.nn.Linear(4, 2)
    optimizer = torch.optim.AdamW(model.parameters(), lr=0.01)
    schedule = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: 1.0)
    model, optimizer, schedule = accelerator.prepare(model, optimizer, schedule)
    return accelerator, model, optimizer


def _state(step: int) -> LoopState:
    stopper = EarlyStopping(patience=3, min_delta=0.0)
    stopper.update(1.0, step)
    point = CurvePoint(step=step, train_loss=float("nan"), val_loss=1.0, val_acc=0.5, lr=1e-3, grad_norm=None,
                       clean_train=SplitScore(loss=0.9, acc=0.6))
    return LoopState(step=step, curves=[point], timing=[TimingPoint(step=step, step_time_s=0.1, samples_per_s=80.0)],
                     events=[Event(step=step, kind="resumed")], stopper=stopper, loss_sum=0.1 + 0.2, loss_count=3)


def _train_one_step(model, optimizer) -> None:
    model(torch.randn(8, 4)).sum().backward()
    optimizer.step()
    optimizer.zero_grad()


def test_a_checkpoint_round_trips_weights_loop_state_and_rng(tmp_path):
    accelerator, model, optimizer = _objects()
    _train_one_step(model, optimizer)
    checkpoint.save(tmp_path, accelerator, _state(7).state_dict(), config=CONFIG)
    expected_weights = {k: v.clone() for k, v in model.state_dict().items()}
    expected_draw = torch.rand(5)  # what the RNG gives right after the checkpoint

    _train_one_step(model, optimizer)  # move everything on, then come back
    torch.rand(100)
    state = LoopState.from_state_dict(checkpoint.restore(tmp_path, accelerator, config=CONFIG))
    assert state.step == 7
    assert all(torch.equal(v, expected_weights[k]) for k, v in model.state_dict().items())
    assert torch.equal(torch.rand(5), expected_draw)
    assert state.loss_sum == 0.1 + 0.2 and state.loss_count == 3 and state.stopper.best_step == 7
    saved = _state(7)  # the record's lists come back typed, a non-finite loss as None (JSON has no NaN)
    assert state.timing == saved.timing and state.events == saved.events
    assert state.curves == [replace(saved.curves[0], train_loss=None)]
    assert (tmp_path / "checkpoint" / "model.safetensors").is_file()  # weights never go through pickle


def test_a_crash_before_the_swap_leaves_the_previous_checkpoint_loadable(tmp_path, monkeypatch):
    accelerator, model, optimizer = _objects()
    checkpoint.save(tmp_path, accelerator, _state(6).state_dict(), config=CONFIG)

    def crash(staging: Path) -> None:
        assert (staging / checkpoint.STATE_FILE).is_file()  # the new one was complete, just not in place
        raise OSError("simulated power loss")

    monkeypatch.setattr(checkpoint, "_before_swap", crash)
    with pytest.raises(OSError):
        checkpoint.save(tmp_path, accelerator, _state(12).state_dict(), config=CONFIG)
    monkeypatch.setattr(checkpoint, "_before_swap", None)
    assert checkpoint.restore(tmp_path, accelerator, config=CONFIG)["step"] == 6
    checkpoint.save(tmp_path, accelerator, _state(12).state_dict(), config=CONFIG)  # the next save cleans up
    assert sorted(p.name for p in tmp_path.iterdir()) == ["checkpoint"]


def test_only_the_previous_checkpoint_left_still_resumes(tmp_path):
    """A kill between the two renames of the swap leaves checkpoint.old only."""
    accelerator, _, _ = _objects()
    checkpoint.save(tmp_path, accelerator, _state(6).state_dict(), config=CONFIG)
    (tmp_path / "checkpoint").rename(tmp_path / "checkpoint.old")
    assert checkpoint.restore(tmp_path, accelerator, config=CONFIG)["step"] == 6
    checkpoint.save(tmp_path, accelerator, _state(12).state_dict(), config=CONFIG)
    assert checkpoint.restore(tmp_path, accelerator, config=CONFIG)["step"] == 12


def test_resuming_with_other_options_is_refused_naming_the_key(tmp_path):
    accelerator, _, _ = _objects()
    checkpoint.save(tmp_path, accelerator, _state(6).state_dict(), config=CONFIG)
    other = {**CONFIG, "train": {**CONFIG["train"], "lr": 0.002}}
    with pytest.raises(ChimeraError, match=r"train\.lr=0\.001, this run has 0\.002"):
        checkpoint.restore(tmp_path, accelerator, config=other)


def test_no_checkpoint_is_a_clear_error(tmp_path):
    accelerator, _, _ = _objects()
    with pytest.raises(ChimeraError, match="no complete checkpoint"):
        checkpoint.restore(tmp_path, accelerator, config=CONFIG)


class _Payload:
    """Unpickling this runs code: it would create the marker file."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (Path.touch, (self.marker,))


def test_a_checkpoint_carrying_code_is_refused_not_run(tmp_path):
    accelerator, _, optimizer = _objects()
    checkpoint.save(tmp_path, accelerator, _state(6).state_dict(), config=CONFIG)
    marker = tmp_path / "code-ran"
    torch.save({**optimizer.state_dict(), "extra": _Payload(marker)}, tmp_path / "checkpoint" / "optimizer.bin")
    with pytest.raises(ChimeraError, match="cannot load the checkpoint safely"):
        checkpoint.restore(tmp_path, accelerator, config=CONFIG)
    assert not marker.exists()


def test_best_weights_carrying_code_are_refused(tmp_path):
    accelerator, model, _ = _objects()
    marker = tmp_path / "code-ran"
    torch.save({"weight": _Payload(marker)}, tmp_path / checkpoint.BEST)
    with pytest.raises(ChimeraError, match="cannot load the best weights"):
        checkpoint.load_best(tmp_path, accelerator, model)
    assert not marker.exists()


def test_our_own_checkpoint_files_are_plain_json(tmp_path):
    accelerator, _, _ = _objects()
    checkpoint.save(tmp_path, accelerator, _state(6).state_dict(), config=CONFIG)
    for name in (checkpoint.STATE_FILE, f"rng_{accelerator.process_index}.json"):
        json.loads((tmp_path / "checkpoint" / name).read_text())
    assert os.listdir(tmp_path) == ["checkpoint"]
