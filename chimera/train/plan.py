"""A run's plan: every decision taken before its first step, made once and read by everything after.

    plan = make_plan(config, out_dir=Path("runs/ci"))   # chimera train, matrix, --resume, reproduce, bench

The plan pins what a rerun needs to be the same run: the train pool's manifest hash, the precision that
will run (from the config, `accelerate launch`, or auto), the device that was found and the policy that
follows from it, and the run folder. Nothing later re-derives any of them: the recipe trains from the
plan, the record is written from it, and a matrix makes every cell's plan before the first cell trains,
so a precision this hardware cannot run fails before an hour of training.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, replace
from pathlib import Path

from chimera.config import RunConfig
from chimera.data.manifest import pin_pool
from chimera.errors import ChimeraError
from chimera.train.device import (
    ACCELERATE_ENV,
    DeviceInfo,
    DevicePolicy,
    PrecisionChoice,
    probe_device,
    resolve_precision,
)
from chimera.train.run_folder import run_dir_for

DYNAMO_ENV = "ACCELERATE_DYNAMO_BACKEND"  # what `accelerate launch --dynamo_backend` sets


@dataclass(frozen=True, kw_only=True)
class RunPlan:
    """What a run will be, decided before it starts; the record stores each part as it was decided."""

    config: RunConfig  # resolved and pinned: train pool with its manifest hash, the precision and step mode
    device: DeviceInfo  # what the machine offers (probed once)
    policy: DevicePolicy  # how the run uses it: precision, pinned memory, workers, determinism
    precision: PrecisionChoice  # which precision was asked for and who decided
    run_dir: Path  # OUT/<cell>-<profile>-s<seed>

    @property
    def name(self) -> str:
        return self.run_dir.name


def refuse_accelerate_dynamo(backend: str | None) -> None:
    """`accelerate launch --dynamo_backend B` would compile the model inside `accelerator.prepare`, under the
    step's own compilation: compiled twice, or graph-broken. Refused in one line that names the knob to use."""
    if backend is not None and backend.strip().lower() not in ("", "no"):
        raise ChimeraError(f"${DYNAMO_ENV}={backend} (accelerate launch --dynamo_backend or its config file): "
                           "chimera compiles the whole step itself; drop that setting and pass "
                           "--set train.step_mode=compile (or graph on CUDA)")


def make_plan(config: RunConfig, *, out_dir: Path, accelerate_launch: str | None = None) -> RunPlan:
    """The plan of `config` run into `out_dir`; ChimeraError (exit 2) for a precision the device cannot run
    or a run folder name that would leave `out_dir`.

    Precision: train.precision > `accelerate_launch` (default $ACCELERATE_MIXED_PRECISION, which
    `accelerate launch --mixed_precision` sets) > auto.
    """
    run_dir = run_dir_for(config, out_dir)
    launch = os.environ.get(ACCELERATE_ENV) if accelerate_launch is None else accelerate_launch
    choice = resolve_precision(config.train.precision, launch)
    refuse_accelerate_dynamo(os.environ.get(DYNAMO_ENV))
    device = probe_device(config.device)
    policy = choice.policy_for(device, step_mode=config.train.step_mode)
    pinned = replace(config, data=replace(config.data, train_pool=pin_pool(config.data.train_pool)),
                     train=replace(config.train, precision=policy.precision, step_mode=policy.step_mode))
    return RunPlan(config=pinned, device=device, policy=policy, precision=choice, run_dir=run_dir)
