"""The optimiser and lr schedule of a run, built in one place for the trainer and the benchmarks."""

from __future__ import annotations

import torch
from torch import nn

from chimera.config import TrainConfig
from chimera.model.encoder import weight_decay_groups
from chimera.train.device import DevicePolicy
from chimera.train.schedule import lr_multiplier


def build_optimizer(model: nn.Module, train: TrainConfig, policy: DevicePolicy) -> torch.optim.AdamW:
    """AdamW on `weight_decay_groups`; the single-kernel variant where the device policy says so
    (same update rule, to rounding; `DevicePolicy.fused_adamw`). Compiled steps update through torch's
    functional AdamW with device-side step counts (chimera.train.whole_step), so their optimiser is the
    capturable foreach one, whose state is laid out the same way."""
    groups = weight_decay_groups(model, train.weight_decay)
    if policy.step_mode != "eager":
        return torch.optim.AdamW(groups, lr=train.lr, betas=train.betas, foreach=True, capturable=True)
    return torch.optim.AdamW(groups, lr=train.lr, betas=train.betas, fused=policy.fused_adamw)


def build_schedule(optimizer: torch.optim.Optimizer, train: TrainConfig) -> torch.optim.lr_scheduler.LambdaLR:
    """Warmup then `train.schedule` decay, stepped once per optimiser step (`lr_multiplier`)."""
    return torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: lr_multiplier(
        step, schedule=train.schedule, warmup_steps=train.warmup_steps, max_steps=train.max_steps))
