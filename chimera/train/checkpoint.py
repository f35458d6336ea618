"""Resumable checkpoints and the best-weights file used by early stopping.

Layout inside a run folder (run.lock: see plan.py):
    checkpoint/            accelerate's state (model.safetensors, optimizer.bin, scheduler.bin) + ours:
                           loop_state.json (step, curves, early stopping, loss sums, config), rng_<rank>.json,
                           best_model.pt (a copy of the best weights at checkpoint time)
    checkpoint.old/        the previous checkpoint, kept while a new one is swapped in
    best_model.pt          weights at the lowest val loss (early stopping), loaded with weights_only=True

A checkpoint is complete once `loop_state.json` is in it (written last); the swap keeps at least one
complete checkpoint on disk at every moment, so a kill at any point can resume from the newest one.
Loading never unpickles arbitrary objects: accelerate 1.15 reads the model from safetensors and the
optimizer, scheduler and its RNG pickle through `torch.load(weights_only=True)`; our own state is JSON.
"""

from __future__ import annotations

import base64
import io
import json
import pickle
import random
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch
from accelerate import Accelerator
from safetensors import SafetensorError

from chimera.errors import ChimeraError
from chimera.fileio import atomic_write_bytes, atomic_write_text, read_json

CHECKPOINT = "checkpoint"
PREVIOUS = "checkpoint.old"
STAGING = "checkpoint.partial"
BEST = "best_model.pt"
STATE_FILE = "loop_state.json"
_OURS = ("config", "world_size")  # what loop_state.json holds beside the loop's own state

# Test-only fault injection: called with the complete staging folder just before it is swapped in.
_before_swap: Callable[[Path], None] | None = None


# --- resumable checkpoints ---------------------------------------------------------------------------


def save(run_dir: Path, accelerator: Accelerator, loop_state: dict[str, Any], *, config: dict) -> Path:
    """Write a complete checkpoint into a staging folder, then swap it in (see the module docstring).

    `loop_state`: the recipe's `state_dict()`; `config`: the run's config as `config_to_dict` writes it (a
    resume with other options is refused). Both plain JSON-ready data."""
    run_dir = Path(run_dir)
    staging = run_dir / STAGING
    if accelerator.is_main_process and staging.exists():
        shutil.rmtree(staging)
    accelerator.wait_for_everyone()
    accelerator.save_state(str(staging), safe_serialization=True)
    atomic_write_text(staging / f"rng_{accelerator.process_index}.json", json.dumps(_rng_state()))
    accelerator.wait_for_everyone()  # every rank's files are in before the folder moves
    if accelerator.is_main_process:
        if (run_dir / BEST).is_file():
            shutil.copyfile(run_dir / BEST, staging / BEST)
        plain = {**loop_state, "config": config, "world_size": accelerator.num_processes}
        atomic_write_text(staging / STATE_FILE, json.dumps(plain))  # last: marks the folder complete
        if _before_swap is not None:
            _before_swap(staging)
        current, previous = run_dir / CHECKPOINT, run_dir / PREVIOUS
        if _complete(current):  # never delete the only complete checkpoint before its successor is in place
            _remove(previous)
            current.rename(previous)
        _remove(current)
        staging.rename(current)
        _remove(previous)
    accelerator.wait_for_everyone()
    return run_dir / CHECKPOINT


def restore(run_dir: Path, accelerator: Accelerator, *, config: dict) -> dict[str, Any]:
    """Load the newest complete checkpoint into the prepared objects; returns the loop state it holds
    (for the recipe's `load_state_dict`)."""
    run_dir = Path(run_dir)
    candidate = next((c for c in (run_dir / CHECKPOINT, run_dir / PREVIOUS) if _complete(c)), None)
    if candidate is None:
        raise ChimeraError(f"{run_dir}: no complete checkpoint to resume from (set train.checkpoint_every, "
                           "or interrupt with SIGINT/SIGTERM so one is written)")
    damaged = "the checkpoint is damaged: start the run again without --resume (or into another --out)"
    plain = read_json(candidate / STATE_FILE, "checkpoint state", fix=damaged)
    _check_same_run(plain, config, accelerator.num_processes, candidate)
    try:
        accelerator.load_state(str(candidate))
    except (pickle.UnpicklingError, RuntimeError, OSError, KeyError, EOFError, SafetensorError) as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise ChimeraError(f"{candidate}: cannot load the checkpoint safely ({first}); it holds data other "
                           "than tensors and plain containers, or is damaged") from None
    # accelerate restores RNG states inside a bare `except Exception` that only logs; ours fail loudly.
    _set_rng_state(read_json(candidate / f"rng_{accelerator.process_index}.json", "checkpoint RNG state",
                             fix=damaged))
    accelerator.wait_for_everyone()
    if accelerator.is_main_process:
        if (candidate / BEST).is_file():  # the best weights as of the checkpoint, not of a later step
            _copy_atomic(candidate / BEST, run_dir / BEST)
        else:
            (run_dir / BEST).unlink(missing_ok=True)
    accelerator.wait_for_everyone()
    return {key: value for key, value in plain.items() if key not in _OURS}


def _check_same_run(plain: dict, config: dict, world_size: int, where: Path) -> None:
    saved, config = plain.get("config", {}), json.loads(json.dumps(config))  # tuples read back as lists
    for section in sorted(set(saved) | set(config)):
        old, new = saved.get(section), config.get(section)
        if old == new:
            continue
        if isinstance(old, dict) and isinstance(new, dict):
            key = next(k for k in sorted(set(old) | set(new)) if old.get(k) != new.get(k))
            section, old, new = f"{section}.{key}", old.get(key), new.get(key)
        raise ChimeraError(f"{where}: checkpoint was written with {section}={old!r}, this run has {new!r}; "
                           "resume with the original options")
    if plain.get("world_size", world_size) != world_size:
        raise ChimeraError(f"{where}: checkpoint was written by {plain['world_size']} processes, this run has "
                           f"{world_size}; resume with the same number of processes")


def _complete(folder: Path) -> bool:
    return (folder / STATE_FILE).is_file()


def _remove(folder: Path) -> None:
    """Unmark first, then delete: a half-deleted folder never looks complete."""
    (folder / STATE_FILE).unlink(missing_ok=True)
    shutil.rmtree(folder, ignore_errors=True)


def _rng_state() -> dict:
    version, internal, gauss = random.getstate()
    kind, keys, pos, has_gauss, cached = np.random.get_state()
    state = {"python": [version, list(internal), gauss],
             "numpy": [kind, keys.tolist(), int(pos), int(has_gauss), float(cached)],
             "torch": _b64(torch.get_rng_state())}
    if torch.cuda.is_available():
        state["cuda"] = [_b64(s) for s in torch.cuda.get_rng_state_all()]
    return state


def _set_rng_state(state: dict) -> None:
    version, internal, gauss = state["python"]
    random.setstate((version, tuple(internal), gauss))
    kind, keys, pos, has_gauss, cached = state["numpy"]
    np.random.set_state((kind, np.asarray(keys, dtype=np.uint32), pos, has_gauss, cached))
    torch.set_rng_state(_unb64(state["torch"]))
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all([_unb64(s) for s in state["cuda"]])


def _b64(tensor: torch.Tensor) -> str:
    return base64.b64encode(tensor.numpy().tobytes()).decode("ascii")


def _unb64(text: str) -> torch.Tensor:
    return torch.frombuffer(bytearray(base64.b64decode(text)), dtype=torch.uint8)


# --- best weights (early stopping) -------------------------------------------------------------------


def save_best(run_dir: Path, accelerator: Accelerator, model) -> None:
    """Atomically store the current weights as the best so far."""
    if not accelerator.is_main_process:
        return
    buffer = io.BytesIO()
    torch.save(accelerator.unwrap_model(model).state_dict(), buffer)
    atomic_write_bytes(Path(run_dir) / BEST, buffer.getvalue())


def load_best(run_dir: Path, accelerator: Accelerator, model) -> None:
    accelerator.wait_for_everyone()
    try:
        weights = torch.load(Path(run_dir) / BEST, map_location="cpu", weights_only=True)
    except (pickle.UnpicklingError, RuntimeError, OSError, EOFError) as exc:
        raise ChimeraError(f"{Path(run_dir) / BEST}: cannot load the best weights ({exc})") from None
    accelerator.unwrap_model(model).load_state_dict(weights)


def remove_resumable(run_dir: Path, accelerator: Accelerator) -> None:
    """A finished run needs no resumable state; its record and best weights stay."""
    if accelerator.is_main_process:
        for name in (CHECKPOINT, PREVIOUS, STAGING):
            _remove(Path(run_dir) / name)


def _copy_atomic(source: Path, target: Path) -> None:
    atomic_write_bytes(target, source.read_bytes())
