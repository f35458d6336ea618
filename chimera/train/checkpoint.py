"""Resumable checkpoints (via `Accelerator.save_state`) and the best-weights file used by early stopping.

Layout inside a run folder:
    checkpoint/            model, optimizer, scheduler and RNG states (accelerate) + loop_state.json
    checkpoint.old/        the previous checkpoint, kept while a new one is being written
    best_model.pt          weights at the lowest val loss (early stopping), loaded with weights_only=True

A checkpoint directory is complete once renamed into place, so a kill at any moment leaves at least
one complete checkpoint (or none yet).
"""

from __future__ import annotations

import io
import json
import shutil
from pathlib import Path
from typing import TYPE_CHECKING

import torch
from accelerate import Accelerator

from chimera.errors import ChimeraError
from chimera.records import atomic_write_text
from chimera.train.stopping import EarlyStopping

if TYPE_CHECKING:
    from chimera.train.trainer import LoopState

CHECKPOINT = "checkpoint"
PREVIOUS = "checkpoint.old"
BEST = "best_model.pt"
STATE_FILE = "loop_state.json"
_PLAIN_FIELDS = ("step", "curves", "timing", "events", "loss_sum", "loss_count", "last_grad_norm",
                 "train_seconds", "interval_seconds", "interval_steps")


def save(run_dir: Path, accelerator: Accelerator, state: LoopState, model) -> Path:
    """Write a complete checkpoint next to the current one, then swap it in."""
    run_dir = Path(run_dir)
    staging = run_dir / f"{CHECKPOINT}.partial"
    if accelerator.is_main_process and staging.exists():
        shutil.rmtree(staging)
    accelerator.wait_for_everyone()
    accelerator.save_state(str(staging))
    if accelerator.is_main_process:
        plain = {name: getattr(state, name) for name in _PLAIN_FIELDS}
        plain["stopper"] = state.stopper.state_dict()
        atomic_write_text(staging / STATE_FILE, json.dumps(plain))
        current, previous = run_dir / CHECKPOINT, run_dir / PREVIOUS
        if previous.exists():
            shutil.rmtree(previous)
        if current.exists():
            current.rename(previous)
        staging.rename(current)
        if previous.exists():
            shutil.rmtree(previous)
    accelerator.wait_for_everyone()
    return run_dir / CHECKPOINT


def restore(run_dir: Path, accelerator: Accelerator, state: LoopState) -> None:
    """Load the newest complete checkpoint into the prepared objects and `state`."""
    run_dir = Path(run_dir)
    for candidate in (run_dir / CHECKPOINT, run_dir / PREVIOUS):
        if (candidate / STATE_FILE).is_file():
            break
    else:
        raise ChimeraError(f"{run_dir}: no complete checkpoint to resume from (set train.checkpoint_every, "
                           "or interrupt with SIGINT/SIGTERM so one is written)")
    accelerator.load_state(str(candidate))
    plain = json.loads((candidate / STATE_FILE).read_text(encoding="utf-8"))
    for name in _PLAIN_FIELDS:
        setattr(state, name, plain[name])
    state.stopper = EarlyStopping.from_state_dict(plain["stopper"])


def save_best(run_dir: Path, accelerator: Accelerator, model) -> None:
    """Atomically store the current weights as the best so far."""
    if not accelerator.is_main_process:
        return
    buffer = io.BytesIO()
    torch.save(accelerator.unwrap_model(model).state_dict(), buffer)
    path = Path(run_dir) / BEST
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    tmp.write_bytes(buffer.getvalue())
    tmp.replace(path)


def load_best(run_dir: Path, accelerator: Accelerator, model) -> None:
    accelerator.wait_for_everyone()
    weights = torch.load(Path(run_dir) / BEST, map_location="cpu", weights_only=True)
    accelerator.unwrap_model(model).load_state_dict(weights)


def remove_resumable(run_dir: Path, accelerator: Accelerator) -> None:
    """A finished run needs no resumable state; its record and best weights stay."""
    if accelerator.is_main_process:
        for name in (CHECKPOINT, PREVIOUS, f"{CHECKPOINT}.partial"):
            shutil.rmtree(Path(run_dir) / name, ignore_errors=True)
