"""Learning-rate schedules as pure functions of the step (linear warmup, then constant/linear/cosine decay)."""

from __future__ import annotations

import math


def lr_multiplier(step: int, *, schedule: str, warmup_steps: int, max_steps: int) -> float:
    """Factor applied to the peak lr before optimiser step `step` (0-based).

    Warmup ramps linearly from 1/(warmup+1) to 1 so the first update is never exactly zero; decays
    reach 0 at `max_steps`.
    """
    if step < warmup_steps:
        return (step + 1) / (warmup_steps + 1)
    if schedule == "constant":
        return 1.0
    progress = min(1.0, (step - warmup_steps) / max(1, max_steps - warmup_steps))
    if schedule == "linear":
        return 1.0 - progress
    if schedule == "cosine":
        return 0.5 * (1.0 + math.cos(math.pi * progress))
    raise ValueError(f"unknown schedule {schedule!r}")
