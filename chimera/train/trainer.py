"""The training loop, in plain Python on `accelerate`: one cell, one seed, one run record.

    chimera train --cell fixed/dense --profile ci --data-dir path/to/ag_news --out runs/

Scale out without code changes: `torchrun --nproc_per_node 2 -m chimera train ...` or
`accelerate launch -m chimera train ...` (the global batch is batch_size × world_size).
"""

from __future__ import annotations

import errno
import logging
import math
import signal
import time
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from pathlib import Path

import torch
import torch.nn.functional as F
from accelerate import Accelerator
from accelerate.data_loader import prepare_data_loader, skip_first_batches
from accelerate.utils import set_seed
from tqdm.auto import tqdm

from chimera.config import RunConfig, config_to_dict
from chimera.errors import ChimeraError
from chimera.model.encoder import parameter_counts
from chimera.records.record import (
    CurvePoint,
    DataInfo,
    Event,
    ParamCounts,
    ResumeInfo,
    RunRecord,
    SplitScore,
    TimingPoint,
)
from chimera.records.store import write_record
from chimera.records.time_to_target import time_to_target
from chimera.train import checkpoint
from chimera.train.device import DevicePolicy, configure_process
from chimera.train.evaluate import EvalResult, evaluate
from chimera.train.optim import build_optimizer, build_schedule
from chimera.train.run_folder import own_run_dir, run_dir_for
from chimera.train.run_setup import (
    RunInputs,
    build_model,
    check_data_matches,
    decide_policy,
    pin_train_pool,
    prepare_inputs,
    start_record,
)
from chimera.train.stopping import EarlyStopping
from chimera.train.tracking import evaluation_values, final_values, tracker_dir, tracking


class RunFailed(ChimeraError):
    """The run started but could not finish; its record says `failed` and keeps the curves so far."""


class TrainingDiverged(RunFailed):
    """A non-finite loss or gradient: the run stops at the first bad step (noted as a `non_finite` event)."""

    def __init__(self, message: str, *, step: int) -> None:
        super().__init__(message)
        self.step = step


@dataclass
class LoopState:
    """Everything the loop carries between steps; checkpointed as plain data for exact resume."""

    step: int = 0
    curves: list[CurvePoint] = field(default_factory=list)
    timing: list[TimingPoint] = field(default_factory=list)
    events: list[Event] = field(default_factory=list)
    stopper: EarlyStopping | None = None
    loss_sum: float = 0.0
    loss_count: int = 0
    last_grad_norm: float | None = None
    train_seconds: float = 0.0  # optimiser steps only
    wall_seconds: float = 0.0  # from the first step, evaluations and checkpoints included; resumes add up
    evaluations: int = 0
    interval_seconds: float = 0.0
    interval_steps: int = 0


def build_accelerator(policy: DevicePolicy, *, log_with: tuple[str, ...] = (),
                      project_dir: Path | None = None) -> Accelerator:
    """The run's Accelerator (the benchmarks build theirs here too, so they time the same setup).

    The schedule counts optimiser steps; accelerate would otherwise step it world_size times per step.
    `log_with`: accelerate tracker names (chimera.train.tracking); file-writing ones write under `project_dir`.
    """
    return Accelerator(mixed_precision=policy.mixed_precision, cpu=policy.device == "cpu",
                       step_scheduler_with_optimizer=False, log_with=list(log_with) or None,
                       project_dir=str(project_dir) if project_dir else None)


def train(config: RunConfig, *, out_dir: Path, data_dir: Path | None, cache_dir: Path | None = None,
          quiet: bool = False, resume: bool = False, expected_data: DataInfo | None = None,
          log_with: tuple[str, ...] = ()) -> RunRecord:
    """Train one cell and write its record; returns the record (status may be `interrupted`).

    `expected_data` (a record's `data`) makes the run refuse, before its first step, data whose
    subset or tokenizer fingerprints differ. A run that fails writes a `failed` record and raises.
    `log_with` (names checked by `tracking.check_log_with`) copies every evaluation to those trackers.
    """
    run_dir = run_dir_for(config, out_dir)
    config, policy, choice = decide_policy(pin_train_pool(config))
    configure_process(policy)
    accelerator = build_accelerator(policy, log_with=log_with, project_dir=tracker_dir(run_dir) if log_with else None)
    if not accelerator.is_main_process:  # one voice per run: the other processes only warn
        logging.getLogger("chimera").setLevel(logging.WARNING)
    with own_run_dir(run_dir, accelerator, resume=resume):
        set_seed(config.seed)
        inputs = prepare_inputs(config, data_dir=data_dir, cache_dir=cache_dir, accelerator=accelerator)
        if expected_data is not None:
            check_data_matches(inputs.data_info, expected_data, where=str(run_dir))
        with tracking(accelerator, run_name=run_dir.name, config=config_to_dict(config)):
            return _train(config, inputs, accelerator, run_dir, policy=policy, choice=choice, quiet=quiet,
                          resume=resume)


def _train(config: RunConfig, inputs: RunInputs, accelerator: Accelerator, run_dir: Path, *, policy, choice,
           quiet: bool, resume: bool) -> RunRecord:
    record = start_record(config, inputs, policy=policy, choice=choice, world_size=accelerator.num_processes)
    model = build_model(config, inputs)
    record.params = ParamCounts(**parameter_counts(model))
    optimizer = build_optimizer(model, config.train, policy)
    schedule = build_schedule(optimizer, config.train)
    model, optimizer, schedule = accelerator.prepare(model, optimizer, schedule)
    eval_loaders = {name: accelerator.prepare(loader) for name, loader in inputs.eval_loaders.items()}
    state = LoopState(stopper=EarlyStopping(patience=config.train.patience, min_delta=config.train.min_delta))
    if resume:
        step = checkpoint.restore(run_dir, accelerator, state, config=config_to_dict(config))
        record.resume = ResumeInfo(resumed_from_step=step)
        state.events.append(Event(step=step, kind="resumed"))
    started = time.perf_counter()
    try:
        with _stop_on_signals() as stop_requested:
            status = _loop(config, inputs, model, optimizer, schedule, eval_loaders, accelerator, state,
                           run_dir, quiet=quiet, stop_requested=stop_requested)
        if status == "interrupted":
            checkpoint.save(run_dir, accelerator, state, config=config_to_dict(config))
            record.status = "interrupted"
            state.events.append(Event(step=state.step, kind="interrupted"))
            record.resume = ResumeInfo(resumable_from_step=state.step, command=f"--resume {run_dir}")
        else:
            _finish(config, model, eval_loaders, accelerator, state, record, run_dir, status)
    except (Exception, KeyboardInterrupt) as exc:  # the record of a failed run keeps the curves so far
        message = _failure_message(exc, state, run_dir)
        record.fail(message)
        if isinstance(exc, TrainingDiverged):  # the doctor's non_finite check reads this event
            state.events.append(Event(step=exc.step, kind="non_finite", detail=str(exc).split(":")[0]))
        _fill(config, record, state, started, accelerator)
        if accelerator.is_main_process:
            try:
                write_record(record, run_dir, overwrite=True)
            except OSError as again:  # the disk is still full: the previous record stays as it was
                message += f"; the failed record could not be written either ({again.strerror or again})"
        if isinstance(exc, (torch.OutOfMemoryError, MemoryError)) or _is_write_failure(exc):
            raise RunFailed(message) from exc
        raise
    _fill(config, record, state, started, accelerator)
    if accelerator.is_main_process:
        try:
            write_record(record, run_dir, overwrite=True)
        except OSError as exc:  # atomic: the previous record (if any) and the checkpoints stay
            raise RunFailed(f"cannot write {run_dir / 'record.json'} ({exc.strerror or exc}); the checkpoints "
                            f"are kept: free space or fix permissions, then --resume {run_dir}") from exc
    if record.status != "interrupted":  # only now: a crash while writing the record can still resume
        accelerator.log(final_values(record.final_metrics.to_json()), step=state.step)
        checkpoint.remove_resumable(run_dir, accelerator)
    accelerator.wait_for_everyone()
    return record


def _loop(config, inputs: RunInputs, model, optimizer, schedule, eval_loaders, accelerator, state: LoopState,
          run_dir: Path, *, quiet: bool, stop_requested) -> str:
    tc = config.train
    bar = tqdm(total=tc.max_steps, initial=state.step, disable=quiet or not accelerator.is_main_process,
               desc=config.cell, unit="step", dynamic_ncols=True)
    model.train()
    clock = _WallClock(state)
    while state.step < tc.max_steps:
        epoch, offset = divmod(state.step, inputs.batches_per_epoch)
        first_step = state.step
        for batch in _epoch_loader(accelerator, inputs.train_loader(epoch), skip=offset):
            tick = time.perf_counter()
            loss = train_step(config, model, optimizer, schedule, batch, accelerator, state)
            elapsed = time.perf_counter() - tick
            state.step += 1
            state.train_seconds += elapsed
            state.interval_seconds += elapsed
            state.interval_steps += 1
            bar.update(1)
            if state.step % tc.eval_every == 0 or state.step == tc.max_steps:
                last = _evaluate_and_log(config, model, eval_loaders, accelerator, state, schedule, run_dir, clock)
                bar.set_postfix(loss=f"{loss:.3f}", val_loss=f"{last.val_loss:.3f}",
                                samples_s=f"{state.timing[-1].samples_per_s or 0:.0f}")
                if tc.early_stopping and state.stopper.should_stop:
                    state.events.append(Event(step=state.step, kind="early_stop",
                                              detail=f"no val-loss gain > {tc.min_delta} in {tc.patience} evaluations"))
                    bar.close()
                    return "stopped_early"
            if tc.checkpoint_every and state.step % tc.checkpoint_every == 0:
                clock.tick()
                checkpoint.save(run_dir, accelerator, state, config=config_to_dict(config))
            if _stop_everywhere(stop_requested, accelerator):
                bar.close()
                clock.tick()
                return "interrupted"
            if state.step >= tc.max_steps:
                break
        if state.step == first_step:  # never spin: an epoch that yields nothing is a bug, not a wait
            raise RuntimeError(f"epoch {epoch} yielded no batch after skipping {offset} "
                               f"(batches_per_epoch={inputs.batches_per_epoch})")
    bar.close()
    return "completed"


def _epoch_loader(accelerator: Accelerator, loader, *, skip: int):
    """One epoch's loader, sharded like `accelerator.prepare` does but not registered with it.

    Its order is a pure function of (seed, epoch), so resuming needs only the step: checkpoints carry
    no sampler state, and a long run does not pile up one prepared loader per epoch in the accelerator.
    """
    prepared = prepare_data_loader(loader, accelerator.device, num_processes=accelerator.num_processes,
                                   process_index=accelerator.process_index, put_on_device=True)
    return skip_first_batches(prepared, skip) if skip else prepared


def train_step(config, model, optimizer, schedule, batch, accelerator, state: LoopState) -> float:
    """One optimiser step exactly as training runs it (the benchmarks time this same function).

    A non-finite loss or gradient norm stops the run before the weights change. With several processes
    the loss is averaged over them first, so all see the same value and stop at the same step.
    """
    out = model(batch["input_ids"], batch["attention_mask"])
    loss = F.cross_entropy(out.logits.float(), batch["labels"], label_smoothing=config.train.label_smoothing)
    loss = loss + out.aux_loss
    accelerator.backward(loss)
    max_norm = config.train.grad_clip or math.inf
    grad_norm = float(accelerator.clip_grad_norm_(model.parameters(), max_norm))
    value = loss.detach()
    value = float(accelerator.reduce(value, "mean") if accelerator.num_processes > 1 else value)
    if not math.isfinite(value):
        _diverged(state.step + 1, "loss", value)
    if not math.isfinite(grad_norm):
        _diverged(state.step + 1, "gradient norm", grad_norm)
    optimizer.step()
    schedule.step()
    optimizer.zero_grad(set_to_none=True)
    state.loss_sum += value
    state.loss_count += 1
    state.last_grad_norm = grad_norm
    return value


def _diverged(step: int, what: str, value: float) -> None:
    raise TrainingDiverged(
        f"non-finite {what} ({value}) at step {step}: likely causes are a learning rate too high for this "
        "setup (lower train.lr), fp16 overflow (train in bf16 or fp32), or corrupt input", step=step)


_WRITE_ERRNOS = {errno.ENOSPC, errno.EDQUOT, errno.EROFS, errno.EACCES, errno.EPERM, errno.EIO}


def _is_write_failure(exc: BaseException) -> bool:
    """A file the run writes could not be written (disk full, permission lost): the user's to fix, not a bug."""
    return isinstance(exc, OSError) and exc.errno in _WRITE_ERRNOS


def _failure_message(exc: BaseException, state: LoopState, run_dir: Path) -> str:
    if _is_write_failure(exc):
        return (f"cannot write {exc.filename or 'a file'} at step {state.step} ({exc.strerror or exc}); the "
                f"previous checkpoint and record are intact: free space or fix permissions, then --resume {run_dir}")
    if isinstance(exc, ChimeraError):
        return f"{type(exc).__name__}: {exc}"
    if isinstance(exc, (torch.OutOfMemoryError, MemoryError)):
        return (f"out of memory at step {state.step + 1} ({str(exc).splitlines()[0] if str(exc) else 'no detail'}); "
                "lower train.batch_size or data.max_length, or use a smaller model")
    if isinstance(exc, KeyboardInterrupt):
        return f"stopped at once by a second interrupt at step {state.step}; resume from the last checkpoint"
    return f"{type(exc).__name__} at step {state.step + 1}: {exc}"


class _WallClock:
    """Adds the wall time since its last tick to `state.wall_seconds`; ticks wherever the state is read
    or saved, so a checkpoint carries the clock up to that point and a resume continues it."""

    def __init__(self, state: LoopState) -> None:
        self.state, self.mark = state, time.perf_counter()

    def tick(self) -> float:
        now = time.perf_counter()
        self.state.wall_seconds += now - self.mark
        self.mark = now
        return self.state.wall_seconds


def _measures_clean_train(config, state: LoopState) -> bool:
    """Every `clean_train_every`-th evaluation and the one at max_steps; `_finish` always measures it."""
    return state.evaluations % config.evaluation.clean_train_every == 0 or state.step == config.train.max_steps


def _evaluate_and_log(config, model, eval_loaders, accelerator, state: LoopState, schedule, run_dir,
                      clock: _WallClock) -> CurvePoint:
    is_moe = config.model.ffn == "moe"
    state.evaluations += 1
    val: EvalResult = evaluate(model, eval_loaders["val"], accelerator, with_moe=is_moe)
    clean: EvalResult | None = None
    if _measures_clean_train(config, state):
        clean = evaluate(model, eval_loaders["clean_train"], accelerator)
    point = CurvePoint(
        step=state.step, train_loss=state.loss_sum / max(state.loss_count, 1),
        val_loss=val.loss, val_acc=val.acc, lr=schedule.get_last_lr()[0], grad_norm=state.last_grad_norm,
        clean_train=SplitScore(loss=clean.loss, acc=clean.acc) if clean else None,
        moe=val.moe if is_moe else None,
    )
    state.curves.append(point)
    samples = state.interval_steps * config.train.batch_size * accelerator.num_processes
    state.timing.append(TimingPoint(
        step=state.step, step_time_s=state.interval_seconds / max(state.interval_steps, 1),
        samples_per_s=samples / state.interval_seconds if state.interval_seconds else None,
        train_s=state.train_seconds, wall_s=clock.tick(),
    ))
    state.loss_sum, state.loss_count, state.interval_seconds, state.interval_steps = 0.0, 0, 0.0, 0
    accelerator.log(evaluation_values(point.to_json(), state.timing[-1].to_json()), step=state.step)  # no-op untracked
    if state.stopper.update(val.loss, state.step) and config.train.early_stopping:
        checkpoint.save_best(run_dir, accelerator, model)
    return point


def _finish(config, model, eval_loaders, accelerator, state: LoopState, record: RunRecord, run_dir,
            status: str) -> None:
    """Restore the best weights (early stopping on), then measure clean train, val and test once more."""
    if config.train.early_stopping and state.stopper.best_step is not None:
        checkpoint.load_best(run_dir, accelerator, model)
    clean = evaluate(model, eval_loaders["clean_train"], accelerator)
    val = evaluate(model, eval_loaders["val"], accelerator)
    test = evaluate(model, eval_loaders["test"], accelerator)
    record.status = status
    record.final_metrics = replace(
        record.final_metrics, clean_train_loss=clean.loss, val_loss=val.loss, val_acc=val.acc, train_acc=clean.acc,
        test_loss=test.loss, test_acc=test.acc, best_step=state.stopper.best_step,
        stopped_early=status == "stopped_early", restored_best=bool(config.train.early_stopping))


def _fill(config: RunConfig, record: RunRecord, state: LoopState, started: float, accelerator) -> None:
    """Copy what the loop measured into the record: curves, timing, events, time to target, step counts."""
    record.curves, record.timing, record.events = list(state.curves), list(state.timing), list(state.events)
    samples_per_step = config.train.batch_size * accelerator.num_processes
    targets = config.evaluation.targets()
    record.time_to_target = time_to_target(state.curves, state.timing, targets, samples_per_step=samples_per_step)
    samples = state.step * samples_per_step
    metrics = record.final_metrics
    record.final_metrics = replace(
        metrics, steps=state.step, wall_s=time.perf_counter() - started,
        train_samples_per_s=samples / state.train_seconds if state.train_seconds else None,
        best_step=state.stopper.best_step if metrics.best_step is None else metrics.best_step)


def _stop_everywhere(stop_requested, accelerator: Accelerator) -> bool:
    """A signal can reach the processes a step apart; all stop at the same step or their collectives mismatch."""
    if accelerator.num_processes == 1:
        return stop_requested()
    flag = torch.tensor([1.0 if stop_requested() else 0.0], device=accelerator.device)
    return bool(accelerator.reduce(flag, "sum").item() > 0)


@contextmanager
def _stop_on_signals():
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
