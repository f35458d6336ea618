"""Run a plan: own its folder, train its recipe, write its record once.

    chimera train --cell fixed/dense --profile ci --data-dir path/to/ag_news --out runs/

Scale out without code changes: `torchrun --nproc_per_node 2 -m chimera train ...` or
`accelerate launch -m chimera train ...` (the global batch is batch_size × world_size).
"""

from __future__ import annotations

import datetime as dt
import errno
import logging
import signal
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager, nullcontext
from pathlib import Path

import torch
from accelerate import Accelerator
from accelerate.utils import set_seed

from chimera.config import config_to_dict
from chimera.errors import ChimeraError
from chimera.records.env import RunEnv
from chimera.records.record import DataInfo, Event, FinalMetrics, ResumeInfo, RunRecord
from chimera.records.store import write_record
from chimera.records.time_to_target import time_to_target
from chimera.train import checkpoint
from chimera.train.device import DevicePolicy, configure_process, describe_environment
from chimera.train.energy import EnergyMeter, energy_record, meter_for
from chimera.train.plan import RunPlan, own_run_dir
from chimera.train.recipe import Outcome, Recipe, RunFailed, TrainingDiverged
from chimera.train.run_setup import check_data_matches, prepare_inputs


def build_accelerator(policy: DevicePolicy, *, log_with: tuple[str, ...] = (),
                      project_dir: Path | None = None) -> Accelerator:
    """The run's Accelerator (the benchmarks build theirs here too, so they time the same setup).

    The schedule counts optimiser steps; accelerate would otherwise step it world_size times per step.
    `log_with`: accelerate tracker names (chimera.train.tracking); file-writing ones write under `project_dir`.
    """
    return Accelerator(mixed_precision=policy.mixed_precision, cpu=policy.device == "cpu",
                       step_scheduler_with_optimizer=False, log_with=list(log_with) or None,
                       project_dir=str(project_dir) if project_dir else None)


def run_plan(plan: RunPlan, *, data_dir: Path | None, cache_dir: Path | None = None, quiet: bool = False,
             resume: bool = False, expected_data: DataInfo | None = None,
             log_with: tuple[str, ...] = ()) -> RunRecord:
    """Train the plan's run and write its record; returns the record (status may be `interrupted`).

    `expected_data` (a record's `data`) makes the run refuse, before its first step, data whose subset or
    tokenizer fingerprints differ. A run that fails writes a `failed` record and raises.
    `log_with` (names checked by `tracking.check_log_with`) copies every evaluation to those trackers.
    """
    config, run_dir = plan.config, plan.run_dir
    configure_process(plan.policy)
    accelerator = build_accelerator(plan.policy, log_with=log_with,
                                    project_dir=_tracking().tracker_dir(run_dir) if log_with else None)
    if not accelerator.is_main_process:  # one voice per run: the other processes only warn
        logging.getLogger("chimera").setLevel(logging.WARNING)
    with own_run_dir(run_dir, accelerator, resume=resume):
        set_seed(config.seed)
        inputs = prepare_inputs(plan, data_dir=data_dir, cache_dir=cache_dir, accelerator=accelerator)
        if expected_data is not None:
            check_data_matches(inputs.data_info, expected_data, where=str(run_dir))
        trackers = (_tracking().tracking(accelerator, run_name=run_dir.name, config=config_to_dict(config))
                    if log_with else nullcontext())
        with trackers:
            created, env = dt.datetime.now(dt.UTC), describe_environment(plan.device, plan.policy)
            recipe = Recipe.for_data(plan, accelerator, inputs)
            resumed_from = recipe.resume() if resume else None
            meter, started = meter_for(accelerator.device), time.perf_counter()
            try:
                with _stop_on_signals() as stop_requested:
                    outcome = recipe.fit(inputs, quiet=quiet, stop_requested=stop_requested, meter=meter)
            except (Exception, KeyboardInterrupt) as exc:  # the record of a failed run keeps the curves so far
                _write_failed(plan, recipe, exc, data=inputs.data_info, env=env, created=created,
                              started=started, resumed_from=resumed_from, meter=meter)
                raise
            record = run_record(plan, recipe, outcome, data=inputs.data_info, env=env, created=created,
                                wall_s=time.perf_counter() - started, resumed_from=resumed_from, meter=meter)
            _write(record, run_dir, accelerator)
            if record.status != "interrupted":  # only now: a crash while writing the record can still resume
                if log_with:
                    accelerator.log(_tracking().final_values(record.final_metrics.to_json()), step=recipe.state.step)
                checkpoint.remove_resumable(run_dir, accelerator)
            accelerator.wait_for_everyone()
            return record


def _tracking():
    """chimera.train.tracking, imported only by a run with --log-with."""
    from chimera.train import tracking

    return tracking


def run_record(plan: RunPlan, recipe: Recipe, outcome: Outcome | None, *, data: DataInfo, env: RunEnv,
               created: dt.datetime, wall_s: float, resumed_from: int | None, error: str | None = None,
               meter: EnergyMeter | None = None) -> RunRecord:
    """The frozen record of a run that ended (`outcome` None: it failed with `error`); `meter`, opened when
    `wall_s` started, gives its `energy`."""
    config, state, world = plan.config, recipe.state, recipe.accelerator.num_processes
    samples_per_step = config.train.batch_size * world
    metrics = FinalMetrics(
        steps=state.step, wall_s=wall_s, best_step=state.stopper.best_step,
        train_samples_per_s=(_timed_steps(state) * samples_per_step / state.train_seconds
                             if state.train_seconds else None),
        compile_s=state.compile_seconds)
    status, resume_info = "failed", ResumeInfo(resumed_from_step=resumed_from) if resumed_from is not None else None
    if outcome is not None:
        status = outcome.status
        if outcome.status == "interrupted":
            resume_info = ResumeInfo(resumable_from_step=state.step, command=f"--resume {plan.run_dir}")
        else:
            clean, val, test = outcome.clean_train, outcome.val, outcome.test
            metrics = FinalMetrics(
                clean_train_loss=clean.loss, val_loss=val.loss, val_acc=val.acc, train_acc=clean.acc,
                test_loss=test.loss, test_acc=test.acc, best_step=state.stopper.best_step,
                stopped_early=outcome.status == "stopped_early", restored_best=bool(config.train.early_stopping),
                steps=metrics.steps, wall_s=wall_s, train_samples_per_s=metrics.train_samples_per_s,
                compile_s=state.compile_seconds)
    slug = config.cell.replace("/", "-")
    targets = time_to_target(state.curves, state.timing, config.evaluation.targets(), samples_per_step=samples_per_step)
    return RunRecord(
        run_id=f"{slug}-{config.profile}-s{config.seed}-{created:%Y%m%dT%H%M%SZ}",
        cell=config.cell, profile=config.profile, seed=config.seed, status=status,
        created_at=created.isoformat(timespec="seconds"), world_size=world, config=config,
        env=env, precision=plan.precision.record(plan.policy),
        data=data, params=recipe.params, curves=list(state.curves), timing=list(state.timing),
        events=list(state.events), final_metrics=metrics,
        time_to_target=targets, error=error, resume=resume_info,
        energy=None if meter is None else energy_record(meter, targets, state.timing))


def _timed_steps(state) -> int:
    """Steps whose time train_seconds holds: all but the first in compile and graph modes (it compiles)."""
    return state.step - (1 if state.compile_seconds is not None else 0)


def _write(record: RunRecord, run_dir: Path, accelerator: Accelerator) -> None:
    if not accelerator.is_main_process:
        return
    try:
        write_record(record, run_dir, overwrite=True)
    except OSError as exc:  # atomic: the previous record (if any) and the checkpoints stay
        raise RunFailed(f"cannot write {run_dir / 'record.json'} ({exc.strerror or exc}); the checkpoints "
                        f"are kept: free space or fix permissions, then --resume {run_dir}") from exc


def _write_failed(plan: RunPlan, recipe: Recipe, exc: BaseException, *, data: DataInfo, env: RunEnv,
                  created: dt.datetime, started: float, resumed_from: int | None, meter: EnergyMeter) -> None:
    """Write the failed run's record; raise RunFailed instead of `exc` for what the user must fix."""
    message = _failure_message(exc, recipe.state.step, plan.run_dir)
    if isinstance(exc, TrainingDiverged):  # the doctor's non_finite check reads this event
        recipe.state.events.append(Event(step=exc.step, kind="non_finite", detail=str(exc).split(":")[0]))
    record = run_record(plan, recipe, None, data=data, env=env, created=created, wall_s=time.perf_counter() - started,
                        resumed_from=resumed_from, error=message, meter=meter)
    if recipe.accelerator.is_main_process:
        try:
            write_record(record, plan.run_dir, overwrite=True)
        except OSError as again:  # the disk is still full: the previous record stays as it was
            message += f"; the failed record could not be written either ({again.strerror or again})"
    if isinstance(exc, (torch.OutOfMemoryError, MemoryError)) or _is_write_failure(exc):
        raise RunFailed(message) from exc


_WRITE_ERRNOS = {errno.ENOSPC, errno.EDQUOT, errno.EROFS, errno.EACCES, errno.EPERM, errno.EIO}


def _is_write_failure(exc: BaseException) -> bool:
    """A file the run writes could not be written (disk full, permission lost): the user's to fix, not a bug."""
    return isinstance(exc, OSError) and exc.errno in _WRITE_ERRNOS


def _failure_message(exc: BaseException, step: int, run_dir: Path) -> str:
    if _is_write_failure(exc):
        return (f"cannot write {exc.filename or 'a file'} at step {step} ({exc.strerror or exc}); the "
                f"previous checkpoint and record are intact: free space or fix permissions, then --resume {run_dir}")
    if isinstance(exc, ChimeraError):
        return f"{type(exc).__name__}: {exc}"
    if isinstance(exc, (torch.OutOfMemoryError, MemoryError)):
        return (f"out of memory at step {step + 1} ({str(exc).splitlines()[0] if str(exc) else 'no detail'}); "
                "lower train.batch_size or data.max_length, or use a smaller model")
    if isinstance(exc, KeyboardInterrupt):
        return f"stopped at once by a second interrupt at step {step}; resume from the last checkpoint"
    return f"{type(exc).__name__} at step {step + 1}: {exc}"


@contextmanager
def _stop_on_signals() -> Iterator[Callable[[], bool]]:
    """SIGINT/SIGTERM ask the loop to stop at the next step boundary (checkpoint, `interrupted` record)."""
    requested = {"flag": False}

    def handler(signum, frame):
        if requested["flag"]:  # a second signal means now
            raise KeyboardInterrupt
        requested["flag"] = True

    previous = {sig: signal.signal(sig, handler) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield lambda: requested["flag"]
    finally:
        for sig, old in previous.items():
            signal.signal(sig, old)
