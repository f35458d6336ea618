"""The recipe: one run of one plan, read top to bottom.

    recipe = Recipe.for_data(plan, accelerator, inputs)   # model, AdamW, schedule, prepared once
    outcome = recipe.fit(inputs, stop_requested=...)      # the loop: step, evaluate, checkpoint, stop early
    record = run_record(plan, recipe, ...)                # chimera.train.run: the frozen record, made once

`step(batch)` is the one training step; the benchmarks build their recipe with `for_benchmark` and time
that same method. `state_dict()` / `load_state_dict()` are the loop's state as plain data, which is all a
checkpoint (chimera.train.checkpoint) stores beside accelerate's own state.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import torch
import torch.nn.functional as F
from accelerate import Accelerator
from accelerate.data_loader import prepare_data_loader, skip_first_batches
from torch import nn
from tqdm.auto import tqdm

from chimera.config import config_to_dict
from chimera.errors import ChimeraError
from chimera.model.encoder import parameter_counts
from chimera.records.record import CurvePoint, Event, ParamCounts, SplitScore, TimingPoint
from chimera.train import checkpoint
from chimera.train.energy import EnergyMeter, JouleClock
from chimera.train.evaluate import EarlyStopping, EvalResult, evaluate
from chimera.train.plan import RunPlan
from chimera.train.run_setup import NUM_CLASSES, RunInputs, build_model, build_optimizer, build_schedule


class RunFailed(ChimeraError):
    """The run started but could not finish; its record says `failed` and keeps the curves so far."""


class TrainingDiverged(RunFailed):
    """A non-finite loss or gradient: the run stops at the first bad step (noted as a `non_finite` event)."""

    def __init__(self, message: str, *, step: int) -> None:
        super().__init__(message)
        self.step = step


@dataclass
class LoopState:
    """Everything the loop carries between steps; a checkpoint holds it as plain data for exact resume."""

    stopper: EarlyStopping
    step: int = 0
    curves: list[CurvePoint] = field(default_factory=list)
    timing: list[TimingPoint] = field(default_factory=list)
    events: list[Event] = field(default_factory=list)
    loss_sum: float = 0.0
    loss_count: int = 0
    last_grad_norm: float | None = None
    train_seconds: float = 0.0  # optimiser steps only
    wall_seconds: float = 0.0  # from the first step, evaluations and checkpoints included; resumes add up
    evaluations: int = 0
    interval_seconds: float = 0.0
    interval_steps: int = 0
    compile_seconds: float | None = None  # compile and graph modes: the first step, which compiles
    joules: float | None = None  # energy over wall_seconds (chimera.train.energy); None when not counted

    def state_dict(self) -> dict[str, Any]:
        """JSON-ready data: the record's lists in their JSON form, early stopping as its own state."""
        plain: dict[str, Any] = {name: getattr(self, name) for name in _SCALARS}
        plain.update({name: [item.to_json() for item in getattr(self, name)] for name in _LISTS})
        plain["stopper"] = self.stopper.state_dict()
        return plain

    @classmethod
    def from_state_dict(cls, plain: dict[str, Any]) -> LoopState:
        values = {name: plain[name] for name in _SCALARS if name in plain}
        values.update({name: [kind.from_json(item) for item in plain[name]] for name, kind in _LISTS.items()})
        return cls(stopper=EarlyStopping.from_state_dict(plain["stopper"]), **values)


_SCALARS = ("step", "loss_sum", "loss_count", "last_grad_norm", "train_seconds", "wall_seconds", "evaluations",
            "interval_seconds", "interval_steps", "compile_seconds", "joules")
_LISTS = {"curves": CurvePoint, "timing": TimingPoint, "events": Event}  # kept in the record's JSON form


@dataclass(frozen=True)
class Outcome:
    """How the loop ended and, for a finished run, the closing measurement (best weights restored)."""

    status: str  # completed | stopped_early | interrupted
    clean_train: EvalResult | None = None
    val: EvalResult | None = None
    test: EvalResult | None = None


class Recipe:
    """Model, optimiser, schedule and loop state of one run, built once from its plan."""

    def __init__(self, plan: RunPlan, accelerator: Accelerator, model: nn.Module) -> None:
        tc = plan.config.train
        self.plan, self.config, self.accelerator = plan, plan.config, accelerator
        self.params = ParamCounts(**parameter_counts(model))
        optimizer = build_optimizer(model, tc, plan.policy)
        schedule = build_schedule(optimizer, tc)
        self.model, self.optimizer, self.schedule = accelerator.prepare(model, optimizer, schedule)
        self.state = LoopState(stopper=EarlyStopping(patience=tc.patience, min_delta=tc.min_delta))
        self.eval_loaders: dict[str, Any] = {}  # val, clean_train, test: prepared by `for_data`
        self.whole_step = None if plan.policy.step_mode == "eager" else _whole_step(
            self.model, self.optimizer.optimizer, label_smoothing=tc.label_smoothing, grad_clip=tc.grad_clip,
            mode=plan.policy.step_mode)

    @classmethod
    def for_data(cls, plan: RunPlan, accelerator: Accelerator, inputs: RunInputs) -> Recipe:
        """The run's recipe: the model sized by the trained tokenizer and the data's classes, the evaluation
        loaders prepared."""
        recipe = cls(plan, accelerator, build_model(plan.config, vocab_size=inputs.tokenizer.vocab_size,
                                                    pad_id=inputs.tokenizer.pad_id,
                                                    num_classes=len(inputs.data_info.label_names)))
        recipe.eval_loaders = {name: accelerator.prepare(loader) for name, loader in inputs.eval_loaders.items()}
        return recipe

    @classmethod
    def for_benchmark(cls, plan: RunPlan, accelerator: Accelerator) -> Recipe:
        """The same recipe without data: the vocabulary as configured, id 0 as padding (the tokenizer's)."""
        config = plan.config
        return cls(plan, accelerator, build_model(config, vocab_size=config.data.vocab_size, pad_id=0,
                                                  num_classes=NUM_CLASSES))

    # --- one optimiser step ------------------------------------------------------------------------

    def step(self, batch: dict[str, torch.Tensor]) -> float | torch.Tensor:
        """One optimiser step exactly as training runs it (the benchmarks time this method); the loss.

        Eager: a non-finite loss or gradient norm stops the run before the weights change; with several
        processes the loss is averaged over them first, so all see the same value and stop at the same step.
        Compile and graph: the whole step is one graph (chimera.train.whole_step) and the loss stays a device
        tensor; a non-finite step is caught at the next evaluation or checkpoint (`sync_device_state`).
        """
        accelerator, state = self.accelerator, self.state
        if self.whole_step is not None:
            loss = self.whole_step(batch["input_ids"], batch["attention_mask"], batch["labels"])
            self.schedule.step()  # host arithmetic; the next step reads the new rate from its tensor
            state.loss_count += 1
            return loss
        out = self.model(batch["input_ids"], batch["attention_mask"])
        loss = F.cross_entropy(out.logits.float(), batch["labels"], label_smoothing=self.config.train.label_smoothing)
        loss = loss + out.aux_loss
        accelerator.backward(loss)
        max_norm = self.config.train.grad_clip or math.inf
        grad_norm = float(accelerator.clip_grad_norm_(self.model.parameters(), max_norm))
        value = loss.detach()
        value = float(accelerator.reduce(value, "mean") if accelerator.num_processes > 1 else value)
        if not math.isfinite(value):
            _diverged(state.step + 1, "loss", value)
        if not math.isfinite(grad_norm):
            _diverged(state.step + 1, "gradient norm", grad_norm)
        self.optimizer.step()
        self.schedule.step()
        self.optimizer.zero_grad(set_to_none=True)
        state.loss_sum += value
        state.loss_count += 1
        state.last_grad_norm = grad_norm
        return value

    # --- the loop ----------------------------------------------------------------------------------

    def fit(self, inputs: RunInputs, *, quiet: bool, stop_requested: Callable[[], bool],
            meter: EnergyMeter | None = None) -> Outcome:
        """Train until max_steps, early stopping or a stop request; then measure the best weights once more.
        `meter` (chimera.train.energy) is read with the wall clock, into each timing point's joules."""
        tc, state, accelerator = self.config.train, self.state, self.accelerator
        run_dir, eval_loaders = self.plan.run_dir, self.eval_loaders
        bar = tqdm(total=tc.max_steps, initial=state.step, disable=quiet or not accelerator.is_main_process,
                   desc=self.config.cell, unit="step", dynamic_ncols=True)
        self.model.train()
        clock = _WallClock(state, meter)
        status = "completed"
        while state.step < tc.max_steps and status == "completed":
            epoch, offset = divmod(state.step, inputs.batches_per_epoch)
            first_step = state.step
            for batch in _epoch_loader(accelerator, inputs.train_loader(epoch), skip=offset):
                tick = time.perf_counter()
                loss = self.step(batch)
                elapsed = time.perf_counter() - tick
                state.step += 1
                if self.whole_step is not None and state.compile_seconds is None:  # the first call compiles
                    state.compile_seconds = elapsed
                else:
                    state.train_seconds += elapsed
                    state.interval_seconds += elapsed
                    state.interval_steps += 1
                bar.update(1)
                if state.step % tc.eval_every == 0 or state.step == tc.max_steps:
                    last = self._evaluate_and_log(eval_loaders, clock)
                    bar.set_postfix(loss=f"{float(loss):.3f}", val_loss=f"{last.val_loss:.3f}",
                                    samples_s=f"{state.timing[-1].samples_per_s or 0:.0f}")
                    if tc.early_stopping and state.stopper.should_stop:
                        state.events.append(Event(step=state.step, kind="early_stop", detail=f"no val-loss gain > "
                                                  f"{tc.min_delta} in {tc.patience} evaluations"))
                        status = "stopped_early"
                        break
                if tc.checkpoint_every and state.step % tc.checkpoint_every == 0:
                    clock.tick()
                    self.save_checkpoint()
                if _stop_everywhere(stop_requested, accelerator):
                    clock.tick()
                    status = "interrupted"
                    break
                if state.step >= tc.max_steps:
                    break
            if state.step == first_step:  # never spin: an epoch that yields nothing is a bug, not a wait
                raise RuntimeError(f"epoch {epoch} yielded no batch after skipping {offset} "
                                   f"(batches_per_epoch={inputs.batches_per_epoch})")
        bar.close()
        if status == "interrupted":
            self.save_checkpoint()
            state.events.append(Event(step=state.step, kind="interrupted"))
            return Outcome(status)
        if tc.early_stopping and state.stopper.best_step is not None:  # measure the best weights, not the last
            checkpoint.load_best(run_dir, accelerator, self.model)
        return Outcome(status, clean_train=evaluate(self.model, eval_loaders["clean_train"], accelerator),
                       val=evaluate(self.model, eval_loaders["val"], accelerator),
                       test=evaluate(self.model, eval_loaders["test"], accelerator))

    def sync_device_state(self) -> None:
        """Compile and graph modes: stop on the first non-finite step, and move the running loss and the last
        gradient norm from the device into the loop state (one sync). Eager keeps them on the host already."""
        if self.whole_step is None:
            return
        bad = self.whole_step.first_bad_step()
        if bad is not None:
            what, value = ("loss", bad.loss) if not math.isfinite(bad.loss) else ("gradient norm", bad.grad_norm)
            _diverged(bad.step, what, value)
        loss_sum, self.state.last_grad_norm = self.whole_step.drain()
        self.state.loss_sum += loss_sum

    def _evaluate_and_log(self, eval_loaders: dict, clock: _WallClock) -> CurvePoint:
        config, state, accelerator = self.config, self.state, self.accelerator
        self.sync_device_state()
        state.evaluations += 1
        val = evaluate(self.model, eval_loaders["val"], accelerator, with_moe=config.model.ffn == "moe")
        clean = None
        if state.evaluations % config.evaluation.clean_train_every == 0 or state.step == config.train.max_steps:
            clean = evaluate(self.model, eval_loaders["clean_train"], accelerator)
        point = CurvePoint(
            step=state.step, train_loss=state.loss_sum / max(state.loss_count, 1),
            val_loss=val.loss, val_acc=val.acc, lr=self.schedule.get_last_lr()[0], grad_norm=state.last_grad_norm,
            clean_train=SplitScore(loss=clean.loss, acc=clean.acc) if clean else None,
            moe=val.moe if config.model.ffn == "moe" else None,
        )
        state.curves.append(point)
        samples = state.interval_steps * config.train.batch_size * accelerator.num_processes
        wall_s = clock.tick()
        state.timing.append(TimingPoint(
            step=state.step, step_time_s=state.interval_seconds / max(state.interval_steps, 1),
            samples_per_s=samples / state.interval_seconds if state.interval_seconds else None,
            train_s=state.train_seconds, wall_s=wall_s, joules=state.joules,
        ))
        state.loss_sum, state.loss_count, state.interval_seconds, state.interval_steps = 0.0, 0, 0.0, 0
        if accelerator.trackers:  # --log-with
            from chimera.train.tracking import evaluation_values

            accelerator.log(evaluation_values(point.to_json(), state.timing[-1].to_json()), step=state.step)
        if state.stopper.update(val.loss, state.step) and config.train.early_stopping:
            checkpoint.save_best(self.plan.run_dir, accelerator, self.model)
        return point

    # --- state -------------------------------------------------------------------------------------

    def state_dict(self) -> dict[str, Any]:
        """The loop's state as plain data (accelerate saves the model, optimiser, schedule and RNG)."""
        return self.state.state_dict()

    def load_state_dict(self, plain: dict[str, Any]) -> None:
        self.state = LoopState.from_state_dict(plain)

    def save_checkpoint(self) -> None:
        self.sync_device_state()  # nothing is written past the last good step
        checkpoint.save(self.plan.run_dir, self.accelerator, self.state_dict(), config=config_to_dict(self.config))

    def resume(self) -> int:
        """Continue from the run folder's newest complete checkpoint; returns its step."""
        self.load_state_dict(checkpoint.restore(self.plan.run_dir, self.accelerator,
                                                config=config_to_dict(self.config)))
        self.state.events.append(Event(step=self.state.step, kind="resumed"))
        return self.state.step


def _whole_step(model: nn.Module, optimizer: torch.optim.Optimizer, **kwargs: Any):
    """chimera.train.whole_step.WholeStep, imported only by a run that compiles its step."""
    from chimera.train.whole_step import WholeStep

    return WholeStep(model, optimizer, **kwargs)


def _diverged(step: int, what: str, value: float) -> None:
    raise TrainingDiverged(
        f"non-finite {what} ({value}) at step {step}: likely causes are a learning rate too high for this "
        "setup (lower train.lr), fp16 overflow (train in bf16 or fp32), or corrupt input", step=step)


def _epoch_loader(accelerator: Accelerator, loader, *, skip: int):
    """One epoch's loader, sharded like `accelerator.prepare` does but not registered with it.

    Its order is a pure function of (seed, epoch), so resuming needs only the step: checkpoints carry
    no sampler state, and a long run does not pile up one prepared loader per epoch in the accelerator.
    """
    prepared = prepare_data_loader(loader, accelerator.device, num_processes=accelerator.num_processes,
                                   process_index=accelerator.process_index, put_on_device=True)
    return skip_first_batches(prepared, skip) if skip else prepared


def _stop_everywhere(stop_requested: Callable[[], bool], accelerator: Accelerator) -> bool:
    """A signal can reach the processes a step apart; all stop at the same step or their collectives mismatch."""
    if accelerator.num_processes == 1:
        return stop_requested()
    flag = torch.tensor([1.0 if stop_requested() else 0.0], device=accelerator.device)
    return bool(accelerator.reduce(flag, "sum").item() > 0)


class _WallClock:
    """Adds the wall time since its last tick to `state.wall_seconds` (and the meter's joules to `state.joules`);
    ticks wherever the state is read or saved, so a checkpoint carries the clock up to that point and a
    resume continues it."""

    def __init__(self, state: LoopState, meter: EnergyMeter | None = None) -> None:
        self.state, self.mark = state, time.perf_counter()
        self.joules = JouleClock(meter, state.joules, first_step=state.step == 0)

    def tick(self) -> float:
        now = time.perf_counter()
        self.state.wall_seconds += now - self.mark
        self.state.joules = self.joules.tick()
        self.mark = now
        return self.state.wall_seconds
