"""A run's plan: every decision taken before its first step, made once and read by everything after.

    plan = make_plan(config, out_dir=Path("runs/ci"))   # chimera train, matrix, --resume, reproduce, bench

The plan pins what a rerun needs to be the same run: the train pool's manifest hash, the precision that
will run (from the config, `accelerate launch`, or auto), the device that was found and the policy that
follows from it, and the run folder. Nothing later re-derives any of them: the recipe trains from the
plan, the record is written from it, and a matrix makes every cell's plan before the first cell trains,
so a precision this hardware cannot run fails before an hour of training.

The run folder has a name that cannot leave --out and one writer: the process that owns it holds an
exclusive lock for the whole run (two workers once shared a /tmp folder and both wrote).

    OUT/<cell>-<profile>-s<seed>/run.lock    flocked by the process that owns the folder
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, replace
from pathlib import Path

from accelerate import Accelerator
from accelerate.utils import broadcast_object_list
from filelock import FileLock, Timeout

from chimera.config import RunConfig
from chimera.data.subsets import pin_pool
from chimera.errors import ChimeraError
from chimera.records.store import RECORD_NAME, load_record
from chimera.train.device import (
    ACCELERATE_ENV,
    DeviceInfo,
    DevicePolicy,
    PrecisionChoice,
    probe_device,
    resolve_precision,
)

DYNAMO_ENV = "ACCELERATE_DYNAMO_BACKEND"  # what `accelerate launch --dynamo_backend` sets
LOCK = "run.lock"
_SAFE_RUN_NAME = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.-]*")


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


def run_dir_for(config: RunConfig, out_dir: Path) -> Path:
    """OUT/<cell>-<profile>-s<seed>; names that could leave OUT (separators, "..") are refused."""
    name = f"{config.cell.replace('/', '-', 1)}-{config.profile}-s{config.seed}"
    if not _SAFE_RUN_NAME.fullmatch(name) or ".." in name:
        raise ChimeraError(f"cell {config.cell!r} / profile {config.profile!r}: not usable as a run folder name "
                           "(letters, digits, _ . - and one / in the cell)")
    return Path(out_dir) / name


@contextmanager
def own_run_dir(run_dir: Path, accelerator: Accelerator, *, resume: bool) -> Iterator[None]:
    """The main process locks the run folder for the whole run; every process learns if it cannot."""
    with ExitStack() as stack:
        problem = None
        if accelerator.is_main_process:
            try:
                stack.enter_context(run_lock(run_dir))
                _check_run_dir(run_dir, resume=resume)
            except ChimeraError as exc:
                problem = str(exc)
        if accelerator.num_processes > 1:
            problem = broadcast_object_list([problem])[0]
        if problem:
            raise ChimeraError(problem)
        yield


def _check_run_dir(run_dir: Path, *, resume: bool) -> None:
    if not (run_dir / RECORD_NAME).exists():
        return
    if not resume:
        raise ChimeraError(f"{run_dir}: already holds a record; use another --out or --resume {run_dir}")
    status = load_record(run_dir).status
    if status in ("completed", "stopped_early"):
        raise ChimeraError(f"{run_dir}: that run finished ({status}); nothing to resume")


@contextmanager
def run_lock(run_dir: Path) -> Iterator[None]:
    """Own `run_dir` for the duration: a second run into the same folder fails instead of both writing.

    An flock (filelock) on run.lock: the kernel drops it when its process dies, however it dies, so a
    crashed run never leaves a lock to take over and no pid has to be checked for liveness.
    """
    path = Path(run_dir) / LOCK
    path.parent.mkdir(parents=True, exist_ok=True)
    lock = FileLock(path, timeout=0)
    try:
        lock.acquire()
    except Timeout:
        raise ChimeraError(f"{path.parent}: run folder is in use by another process (it holds {path}); wait for "
                           "it or choose another --out") from None
    try:
        yield
    finally:
        path.unlink(missing_ok=True)  # while still held: nobody can take a lock on the old file after us
        lock.release()
        try:
            path.parent.rmdir()  # a run that wrote nothing (bad input) leaves no empty folder behind
        except OSError:
            pass
