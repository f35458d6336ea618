"""Experiment trackers through accelerate: `--log-with tensorboard` (or any tracker accelerate knows).

    chimera train --cell fixed/dense --profile ci --log-with tensorboard    # events in RUN_DIR/trackers/
    tensorboard --logdir runs/                                              # every run folder at once

Off by default. The run record stays the source of truth; a tracker gets a copy of the same numbers:
the resolved config once (flattened to `section.key` scalars, which TensorBoard's hparams and MLflow's
params require), every evaluation point with its step (the record's curve keys verbatim, plus the
interval's throughput), and the final metrics under `final/`. Trackers that write files
(TensorBoard, Aim) write under `RUN_DIR/trackers/<PROJECT>/`; the others follow their own settings
(MLflow: $MLFLOW_TRACKING_URI; W&B: its login and $WANDB_MODE).
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from chimera.errors import ChimeraError

PROJECT = "chimera-bench"  # the project (MLflow experiment, W&B project, TensorBoard subfolder) of every run
TRACKERS_DIR = "trackers"  # inside the run folder: accelerate's project_dir, so file-writing trackers land here
INSTALL_HINT = {"tensorboard": "pip install 'chimera-bench[trackers]' (or pip install tensorboard)"}


def check_log_with(names: Sequence[str]) -> tuple[str, ...]:
    """The tracker names, validated against accelerate's own list and its installed-package check.

    accelerate only logs at debug level and drops a tracker whose package is missing, so a run would
    silently track nothing; here that is a ChimeraError (exit 2) before any work starts.
    """
    from accelerate.tracking import LOGGER_TYPE_TO_CLASS, get_available_trackers
    from accelerate.utils import LoggerType

    known = sorted(LOGGER_TYPE_TO_CLASS)
    available = {str(tracker) for tracker in get_available_trackers()}
    chosen: list[str] = []
    for name in names:
        if name not in LOGGER_TYPE_TO_CLASS:
            raise ChimeraError(f"--log-with {name}: not a tracker accelerate knows (known: {', '.join(known)})")
        if name in LoggerType and name not in available:  # a registered custom tracker is its own package
            hint = INSTALL_HINT.get(name, f"pip install {name.replace('_', '-')}")
            raise ChimeraError(f"--log-with {name}: its package is not installed ({hint})")
        if name not in chosen:
            chosen.append(name)
    return tuple(chosen)


def flat_config(values: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    """Nested config -> {"train.lr": 3e-4, ...}; lists become JSON text, so every value is a scalar or None."""
    flat: dict[str, Any] = {}
    for key, value in values.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict):
            flat.update(flat_config(value, prefix=f"{name}."))
        elif isinstance(value, (list, tuple)):
            flat[name] = json.dumps(value)
        else:
            flat[name] = value
    return flat


def evaluation_values(point: dict[str, Any], timing: dict[str, Any]) -> dict[str, float]:
    """One evaluation as tracker scalars: the curve point's numbers under the record's own keys (val_loss,
    val_acc, clean_train_loss where measured, lr, ...), MoE routing per layer, and the interval's speed."""
    values = {key: float(value) for key, value in point.items()
              if key != "step" and isinstance(value, (int, float)) and not isinstance(value, bool)}
    for layer in point.get("moe") or []:
        for key in ("router_entropy", "dropped_fraction"):
            if isinstance(layer.get(key), (int, float)):
                values[f"moe/layer{layer['layer']}/{key}"] = float(layer[key])
    for key in ("step_time_s", "samples_per_s"):
        if isinstance(timing.get(key), (int, float)):
            values[f"timing/{key}"] = float(timing[key])
    return values


def final_values(metrics: dict[str, Any]) -> dict[str, float]:
    """The record's final metrics that are numbers, under `final/`."""
    return {f"final/{key}": float(value) for key, value in metrics.items()
            if isinstance(value, (int, float)) and not isinstance(value, bool)}


def tracker_dir(run_dir: Path) -> Path:
    return Path(run_dir) / TRACKERS_DIR


@contextmanager
def tracking(accelerator, *, run_name: str, config: dict[str, Any]) -> Iterator[None]:
    """Start the accelerator's trackers with the flattened config; finish them however the run ends.

    Finishing calls each tracker's `finish()`, the first half of `accelerator.end_training()`. The
    second half destroys the torch.distributed process group, which `chimera matrix` under torchrun
    still needs for its next cell, so it is left to process exit.
    """
    if not accelerator.log_with:
        yield
        return
    names = {str(tracker) for tracker in accelerator.log_with}  # LoggerType members; str() is the name
    per_tracker = {"mlflow": {"run_name": run_name}, "wandb": {"name": run_name}}  # the project groups the runs
    accelerator.init_trackers(PROJECT, config=flat_config(config),
                              init_kwargs={k: v for k, v in per_tracker.items() if k in names})
    try:
        yield
    finally:
        for tracker in accelerator.trackers:
            tracker.finish()
