"""The dense position-wise feed-forward network, applied to packed (non-padding) tokens."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from chimera.model.dropout import Dropout

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
