"""The optimiser and lr schedule of a run, built in one place for the trainer and the benchmarks."""

from __future__ import annotations

import torch
from torch import nn

from chimera.config import TrainConfig
from chimera.model.encoder import weight_decay_groups
from chimera.train.schedule import lr_multiplier

FUSED_ADAMW_DEVICES = ("cpu", "cuda")  # torch's single-kernel AdamW; elsewhere the foreach default


def build_optimizer(model: nn.Module, train: TrainConfig, device_type: str) -> torch.optim.AdamW:
    """AdamW on `weight_decay_groups`, fused where torch has the kernel.

    The fused kernel updates every parameter in one pass instead of a dozen foreach ops over the
    parameter list: measured on 2 CPU cores, the optimiser step fell from 4.8 to 1.0 ms (fixed/dense,
    full shapes) and from 19 to 3.3 ms (baseline/dense). Same update rule, to rounding.
    """
    return torch.optim.AdamW(weight_decay_groups(model, train.weight_decay), lr=train.lr, betas=train.betas,
                             fused=device_type in FUSED_ADAMW_DEVICES)


def build_schedule(optimizer: torch.optim.Optimizer, train: TrainConfig) -> torch.optim.lr_scheduler.LambdaLR:
    """Warmup then `train.schedule` decay, stepped once per optimiser step (`lr_multiplier`)."""
    return torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: lr_multiplier(
        step, schedule=train.schedule, warmup_steps=train.warmup_steps, max_steps=train.max_steps))
