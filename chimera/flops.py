"""FLOP estimates for a training step of the encoder classifier, shared by trainer, bench and report.

Counts matmul FLOPs only (2 per multiply-accumulate); layer norms, softmax, activations, the router
(2·d·E per token) and embedding lookups are left out, as in the Kaplan et al. (2020) / PaLM MFU
convention. Per token and layer, the forward pass costs

    2 · (4·d²                       q, k, v and output projections
         + m · d · ff · mult)       FFN: m = 2 matrices (GELU) or 3 (SwiGLU); mult = experts per token
    + 2 · 2 · T · d                 attention scores q·kᵀ and the weighted sum of v (T = seq_len)

plus 2 · d · C per sequence for the classification head on the pooled vector. A training step is
3x the forward pass (the backward pass costs about twice the forward: gradients for the inputs and
for the weights). Padding is counted as real tokens, and capacity drops are ignored: an upper bound.
MoE blocks count the routed ideal, top_k expert FFNs per token: the useful work, not what a dispatch
spends. chimera/model/moe_dispatch.py's grouped GEMM spends exactly that; its blocked layout (compiled
steps, CUDA, bf16) rounds each expert's rows up to whole blocks, x1.09 to x1.19 the expert FLOPs at the
matrix's ci and full shapes (`buffer_rows`; tests/unit/test_moe.py bounds it).
This module imports nothing from chimera; it takes plain numbers.
"""

from __future__ import annotations

import math


def matmul_flops(m: int, n: int, k: int) -> int:
    """FLOPs of an (m, k) @ (k, n) matrix product."""
    return 2 * m * n * k


def forward_flops(*, d_model: int, n_layers: int, d_ff: int, batch: int, seq_len: int, num_classes: int = 4,
                  active_ffn_multiplier: float = 1.0, swiglu: bool = False) -> int:
    """Forward-pass matmul FLOPs for `batch` sequences of `seq_len` tokens (see the module docstring)."""
    ffn_matrices = 3 if swiglu else 2
    per_token_layer = (2 * 4 * d_model**2
                       + 2 * ffn_matrices * d_model * d_ff * active_ffn_multiplier
                       + 2 * 2 * seq_len * d_model)
    head = matmul_flops(batch, num_classes, d_model)
    return round(batch * seq_len * n_layers * per_token_layer) + head


def train_step_flops(*, d_model: int, n_layers: int, d_ff: int, n_heads: int, batch: int, seq_len: int,
                     num_classes: int = 4, active_ffn_multiplier: float = 1.0, swiglu: bool = False) -> int:
    """Matmul FLOPs of one forward + backward pass: 3x `forward_flops`.

    `n_heads` does not change the count (heads split d_model, they do not add work); it is accepted
    so a model config's fields can be passed as they are. `active_ffn_multiplier` scales the FFN
    term: top_k for a model whose every block is MoE, 1.0 for a dense model.
    """
    del n_heads
    return 3 * forward_flops(d_model=d_model, n_layers=n_layers, d_ff=d_ff, batch=batch, seq_len=seq_len,
                             num_classes=num_classes, active_ffn_multiplier=active_ffn_multiplier,
                             swiglu=swiglu)


def model_train_step_flops(*, batch: int, seq_len: int, d_model: int, n_layers: int, n_heads: int, d_ff: int,
                           ffn: str = "dense", top_k: int = 1, moe_every: int = 1, expert_kind: str = "gelu",
                           num_classes: int = 4, **_other_model_fields: object) -> int:
    """`train_step_flops` from model-config fields: `model_train_step_flops(**asdict(cfg.model), ...)`.

    MoE blocks (ceil(n_layers / moe_every) of them, the count `is_moe_block` selects) cost top_k
    expert FFNs, 1.5x more for SwiGLU experts; the remaining blocks cost one dense GELU FFN.
    Fields that do not change the count (dropout, capacity factors, loss weights) are ignored.
    """
    n_moe = math.ceil(n_layers / moe_every) if ffn == "moe" else 0
    moe_cost = top_k * (1.5 if expert_kind == "swiglu" else 1.0)
    multiplier = (n_moe * moe_cost + (n_layers - n_moe)) / n_layers
    return train_step_flops(d_model=d_model, n_layers=n_layers, d_ff=d_ff, n_heads=n_heads, batch=batch,
                            seq_len=seq_len, num_classes=num_classes, active_ffn_multiplier=multiplier)
