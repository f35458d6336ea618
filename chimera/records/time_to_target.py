"""Time to target quality, as MLPerf Training counts it: from the first step to the end of the first
evaluation that reaches the target, evaluation time included.

A pure function of a record's `curves` and `timing`, so the trainer computes `record.time_to_target`
with it and any tool can recompute it from a record made elsewhere (or from another trainer's
evaluations: the time-to-quality benchmark's peer passes its own, read by attribute as ours are).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from chimera.records.record import TargetEnergy, TargetTime, TimingPoint

DIRECTIONS = {"val_acc": "max", "val_loss": "min"}  # reached when the value is >= (max) or <= (min) the target


def reaches(metric: str, value: float | None, target: float) -> bool:
    """True when `value` meets `target`; exact equality counts (768 of 1,024 right is 0.75 reached)."""
    if value is None:
        return False
    return value >= target if DIRECTIONS[metric] == "max" else value <= target


def time_to_target(curves: Sequence[Any], timing: Sequence[TimingPoint], targets: Sequence[tuple[str, float]],
                   *, samples_per_step: int) -> list[TargetTime]:
    """One entry per (metric, target): the first evaluation that reaches it, or nulls if none did.

    `curves`: CurvePoints, or any evaluations with `step` and the targets' metrics as attributes.

    `samples_per_step` is the global batch (batch_size x world size). `train_s` counts optimiser steps
    only; `wall_s` counts from the first step to the end of that evaluation, evaluations included,
    and only while the run was running (a resumed run's clock skips the time it was stopped). Timing
    entries without cumulative clocks (records made before they existed) give null seconds.
    """
    clocks = {entry.step: entry for entry in timing}
    results = []
    for metric, target in targets:
        hit = next((point for point in curves if reaches(metric, getattr(point, metric), target)), None)
        clock = clocks.get(hit.step) if hit else None
        results.append(TargetTime(
            metric=metric, target=target, reached=hit is not None,  # type: ignore[arg-type]
            step=hit.step if hit else None, samples=hit.step * samples_per_step if hit else None,
            train_s=clock.train_s if clock else None, wall_s=clock.wall_s if clock else None,
            value=getattr(hit, metric) if hit else None))
    return results


def joules_to_target(entries: Sequence[TargetTime], timing: Sequence[TimingPoint]) -> list[TargetEnergy]:
    """Joules to each time_to_target entry: the timing's count at the evaluation that reached it, or None."""
    counted = {entry.step: entry.joules for entry in timing}
    return [TargetEnergy(metric=entry.metric, target=entry.target,
                         joules=counted.get(entry.step) if entry.step is not None else None) for entry in entries]
