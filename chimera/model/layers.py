"""The encoder's building blocks shared with the MoE and the reference: dropout with cheap masks on CPU, and
the dense position-wise feed-forward network (applied to packed, non-padding tokens).

Dropout: on CPU, `torch.nn.Dropout` fills its mask with `bernoulli_`, which draws one 32-bit number from the
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


# --- the dense FFN --------------------------------------------------------------------------------------

FFN_ACTIVATIONS = ("gelu", "swiglu")


class DenseFFN(nn.Module):
    """`(N, d_model) -> (N, d_model)`.

    kind="gelu": Linear(d, ff) -> GELU -> Linear(ff, d) -> dropout (BERT / GPT-2), with biases.
    kind="swiglu": w2(silu(w1 x) * w3 x) -> dropout, bias-free (Mixtral / LLaMA naming: w1 gate, w3 up,
    w2 down); it has 1.5x the parameters and FLOPs of the GELU form at the same d_ff.
    """

    def __init__(self, *, d_model: int, d_ff: int, dropout: float, kind: str = "gelu") -> None:
        super().__init__()
        if kind not in FFN_ACTIVATIONS:
            raise ValueError(f"kind must be one of {FFN_ACTIVATIONS}, got {kind!r}")
        self.kind = kind
        if kind == "gelu":
            self.fc_in = nn.Linear(d_model, d_ff)
            self.fc_out = nn.Linear(d_ff, d_model)
        else:
            self.w1 = nn.Linear(d_model, d_ff, bias=False)
            self.w3 = nn.Linear(d_model, d_ff, bias=False)
            self.w2 = nn.Linear(d_ff, d_model, bias=False)
        self.dropout = Dropout(dropout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # (N, d) -> (N, d)
        if self.kind == "gelu":
            y = self.fc_out(F.gelu(self.fc_in(x)))  # (N, ff) inside
        else:
            y = self.w2(F.silu(self.w1(x)) * self.w3(x))
        return self.dropout(y)
