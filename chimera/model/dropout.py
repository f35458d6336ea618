"""Dropout with cheap masks on CPU.

On CPU, `torch.nn.Dropout` fills its mask with `bernoulli_`, which draws one 32-bit number from the
(serial) Mersenne Twister per element: 30% of a fixed/dense training step on 2 cores, more than all
the attention matmuls together (profile in bench/README.md). Here one 64-bit draw yields four 15-bit
uniform integers, and an element is kept when its integer is at least round(p · 2^15): the same
Bernoulli mask up to a keep probability rounded to 1/32768 (p = 0.4 becomes 0.399994), at a quarter
of the draws. The scale is 1 / (1 - p_rounded), so the expected activation is unchanged exactly.
CUDA and MPS have fused dropout kernels and keep `F.dropout`, as does a compiled step (the compiler
generates the mask inside its fused kernels).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

MASK_BITS = 15  # per int16 lane: the sign bit is dropped, since int64 random_() never sets bit 63
MASK_LEVELS = 1 << MASK_BITS


def keep_mask(shape: torch.Size, p: float, device: torch.device) -> tuple[torch.Tensor, float]:
    """(bool mask of `shape`, True = keep, with P(keep) = 1 - round(p·2^15)/2^15; the matching scale)."""
    threshold = round(p * MASK_LEVELS)
    count = shape.numel()
    words = torch.empty((count + 3) // 4, dtype=torch.int64, device=device).random_()  # 4 lanes each
    lanes = words.view(torch.int16)[:count].view(shape)
    return (lanes & (MASK_LEVELS - 1)) >= threshold, MASK_LEVELS / (MASK_LEVELS - threshold)


def dropout(x: torch.Tensor, p: float, training: bool) -> torch.Tensor:
    """`F.dropout(x, p, training)`, with `keep_mask` on CPU."""
    if not training or p == 0.0:
        return x
    if x.device.type != "cpu" or p >= 1.0 or torch.compiler.is_compiling():  # compiled: inductor fuses the mask
        return F.dropout(x, p, training=True)
    mask, scale = keep_mask(x.shape, p, x.device)
    return x * (mask.to(x.dtype) * scale)  # autograd: d/dx = the same scaled mask


class Dropout(nn.Module):
    """Drop-in for `nn.Dropout` that uses `dropout` (cheap masks on CPU)."""

    def __init__(self, p: float) -> None:
        super().__init__()
        if not 0.0 <= p <= 1.0:
            raise ValueError(f"dropout probability must be in [0, 1], got {p}")
        self.p = p

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return dropout(x, self.p, self.training)

    def extra_repr(self) -> str:
        return f"p={self.p}"
