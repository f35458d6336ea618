"""A routed mixture-of-experts FFN: a drop-in for `DenseFFN` on packed tokens `(N, d_model)`.

Router: linear (no bias) -> softmax (fp32) -> top-k, the k weights renormalised to sum to 1.
Dispatch (chimera/model/moe_dispatch.py): the N*k (token, choice) slots are laid out expert by expert
in a buffer whose shape depends on N, k, E and the capacity alone, planned on the device (no host sync),
run through the experts, and each slot's output is scaled by its router weight and summed over the
token's k slots. Eager fp32 on a CPU runs the experts as one grouped GEMM over exactly the routed rows;
everywhere else (compiled, CUDA, MPS, bf16) as one batched matmul over fixed-size blocks.
Capacity (optional, separately for train and eval): each expert keeps at most
ceil(factor * N * k / E) slots, earliest tokens first; a dropped slot contributes nothing (the
block's residual still carries the token) and is counted in `dropped_fraction`.
`mask` (N,) marks real tokens when the rows include padding: a pad row takes no slot, adds to no
statistic and gets a zero output.
"""

from __future__ import annotations

import math
from typing import NamedTuple

import torch
from torch import nn

from chimera.model.layers import FFN_ACTIVATIONS, Dropout
from chimera.model.moe_dispatch import (
    EXPERT_BLOCK_ROWS,
    Dispatch,
    blocked_experts,
    dispatch,
    expert_counts,
    grouped_applies,
    grouped_experts,
)


class MoEOutput(NamedTuple):
    """What one MoE layer returns: the output, the loss to optimise, and the raw parts to log."""

    output: torch.Tensor  # (N, d_model)
    aux_loss: torch.Tensor  # scalar: aux_loss_coef * balance_loss + z_loss_coef * z_loss
    balance_loss: torch.Tensor  # scalar, unweighted; 1.0 for uniform routing, E when collapsed
    z_loss: torch.Tensor  # scalar, unweighted
    tokens_per_expert: torch.Tensor  # (E,) fraction of routed slots per expert (before capacity drops)
    router_entropy: torch.Tensor  # scalar, mean over tokens of the router softmax entropy (nats)
    dropped_fraction: torch.Tensor  # scalar, fraction of routed slots dropped by the capacity limit

    def stats(self, layer: int) -> MoEStats:
        """Detached statistics for logging; drops the output so no activation is kept alive."""
        return MoEStats(layer, *(t.detach() for t in self[1:]))


class MoEStats(NamedTuple):
    """`MoEOutput` without the output, all tensors detached; `layer` is the block index."""

    layer: int
    aux_loss: torch.Tensor
    balance_loss: torch.Tensor
    z_loss: torch.Tensor
    tokens_per_expert: torch.Tensor
    router_entropy: torch.Tensor
    dropped_fraction: torch.Tensor


def token_mean(values: torch.Tensor, mask: torch.Tensor | None) -> torch.Tensor:
    """Mean of `values` (N, ...) over its real tokens (`mask` (N,) True), or over all N when mask is None."""
    if mask is None:
        return values.mean(dim=0)
    weights = mask.to(values.dtype).reshape(-1, *(1,) * (values.dim() - 1))
    return (values * weights).sum(dim=0) / weights.sum().clamp(min=1)


def load_balancing_loss(router_probs: torch.Tensor, expert_index: torch.Tensor, num_experts: int,
                        mask: torch.Tensor | None = None) -> torch.Tensor:
    """Switch Transformer load-balancing loss (Fedus et al. 2021, eq. 4): E * sum_i f_i * P_i.

    f_i: fraction of the top-k assignments `expert_index` (N, k) that go to expert i (no gradient);
    P_i: mean router probability of expert i over the N tokens of `router_probs` (N, E); both over the
    real tokens only when `mask` (N,) is given. Equals 1.0 when either is uniform and E when every
    token puts probability 1 on one expert.
    """
    if mask is not None:
        expert_index = expert_index.masked_fill(~mask.unsqueeze(1), num_experts)  # a pad chooses no expert
    slots = expert_index.numel() if mask is None else mask.sum().clamp(min=1) * expert_index.shape[1]
    f = expert_counts(expert_index, num_experts).to(router_probs.dtype) / slots  # (E,)
    return num_experts * torch.dot(f, token_mean(router_probs, mask))


def router_z_loss(logits: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
    """ST-MoE router z-loss (Zoph et al. 2022, eq. 5): mean over (real) tokens of logsumexp(logits)^2."""
    return token_mean(torch.logsumexp(logits.float(), dim=-1).square(), mask)


EXPERT_MATMULS = ("auto", "grouped", "blocked")


def _matmul_dtype(x: torch.Tensor) -> torch.dtype:
    """The dtype autocast runs matmuls in on x's device when it is on, else x's own."""
    device = x.device.type
    return torch.get_autocast_dtype(device) if torch.is_autocast_enabled(device) else x.dtype


class MoEFFN(nn.Module):
    """`(N, d_model) -> MoEOutput`; experts are GELU FFNs with biases (like `DenseFFN(kind="gelu")`)
    or bias-free SwiGLU FFNs (like `DenseFFN(kind="swiglu")`, Mixtral-style).

    Expert weights are stacked per parameter: `w_in` (E, d, ff), `w_out` (E, ff, d), `b_in` (E, ff)
    and `b_out` (E, d) for GELU; `w_gate` (E, d, ff) in place of the biases for SwiGLU.
    `expert_matmul` picks how the experts run (chimera/model/moe_dispatch.py): "grouped", "blocked" (in blocks
    of `block_rows` rows) or "auto", `grouped_applies`' choice for the device, dtype and compilation.
    """

    bias_names = ("b_in", "b_out")  # stacked biases: 2-D like a matrix, but biases for weight decay

    def __init__(self, *, d_model: int, d_ff: int, num_experts: int, top_k: int, expert_kind: str,
                 capacity_factor_train: float | None, capacity_factor_eval: float | None,
                 aux_loss_coef: float, z_loss_coef: float, dropout: float,
                 block_rows: int = EXPERT_BLOCK_ROWS, expert_matmul: str = "auto") -> None:
        super().__init__()
        if expert_kind not in FFN_ACTIVATIONS:
            raise ValueError(f"expert_kind must be one of {FFN_ACTIVATIONS}, got {expert_kind!r}")
        if not 1 <= top_k <= num_experts:
            raise ValueError(f"top_k must be in [1, num_experts={num_experts}], got {top_k}")
        if block_rows < 1:
            raise ValueError(f"block_rows must be >= 1, got {block_rows}")
        if expert_matmul not in EXPERT_MATMULS:
            raise ValueError(f"expert_matmul must be one of {EXPERT_MATMULS}, got {expert_matmul!r}")
        self.num_experts, self.top_k, self.expert_kind = num_experts, top_k, expert_kind
        self.capacity_factor_train, self.capacity_factor_eval = capacity_factor_train, capacity_factor_eval
        self.aux_loss_coef, self.z_loss_coef = aux_loss_coef, z_loss_coef
        self.block_rows, self.expert_matmul = block_rows, expert_matmul
        self.router = nn.Linear(d_model, num_experts, bias=False)
        self.w_in = nn.Parameter(torch.empty(num_experts, d_model, d_ff))
        self.w_out = nn.Parameter(torch.empty(num_experts, d_ff, d_model))
        if expert_kind == "gelu":
            self.b_in = nn.Parameter(torch.empty(num_experts, d_ff))
            self.b_out = nn.Parameter(torch.empty(num_experts, d_model))
        else:
            self.w_gate = nn.Parameter(torch.empty(num_experts, d_model, d_ff))
        self.dropout = Dropout(dropout)
        self.reset_parameters()

    def reset_parameters(self) -> None:
        """normal(0, 0.02) for the router and expert matrices, zeros for the biases (as the encoder)."""
        for name, param in self.named_parameters():
            if name in self.bias_names:
                nn.init.zeros_(param)
            else:
                nn.init.normal_(param, mean=0.0, std=0.02)

    def expert_parameter_count(self) -> int:
        """Parameters of all experts together (the router excluded); each expert holds 1/E of them."""
        return sum(p.numel() for name, p in self.named_parameters() if not name.startswith("router"))

    def capacity(self, num_tokens: int | torch.Tensor) -> int | torch.Tensor | None:
        """Slots each expert may keep for `num_tokens` tokens in the current mode; None = dropless.
        A tensor count gives a tensor: the same float64 arithmetic on the device (float32 on MPS, which has no
        float64)."""
        factor = self.capacity_factor_train if self.training else self.capacity_factor_eval
        if factor is None:
            return None
        if isinstance(num_tokens, torch.Tensor):
            wide = torch.float32 if num_tokens.device.type == "mps" else torch.float64
            return torch.ceil(factor * num_tokens.to(wide) * self.top_k / self.num_experts).long()
        return math.ceil(factor * num_tokens * self.top_k / self.num_experts)

    def forward(self, x: torch.Tensor, mask: torch.Tensor | None = None) -> MoEOutput:
        """x (N, d); mask (N,) True for real tokens, None when every row is one."""
        n, k = x.shape[0], self.top_k
        logits = self.router(x)  # (N, E)
        probs = logits.float().softmax(dim=-1)  # (N, E), fp32 so routing is stable under autocast
        top_weight, top_index = probs.topk(k, dim=-1)  # (N, k)
        top_weight = top_weight / top_weight.sum(dim=-1, keepdim=True)

        dtype = _matmul_dtype(x)
        if self.expert_matmul == "auto":
            grouped = grouped_applies(x.device, dtype, torch.compiler.is_compiling(), self.w_in.shape[1:])
        else:
            grouped = self.expert_matmul == "grouped"
        most = self.capacity(n)  # static bound: top-k picks k distinct experts, so an expert gets <= n slots
        per_expert = n if most is None else min(n, most)
        capacity = most if mask is None else self.capacity(mask.sum())
        plan = dispatch(top_index, self.num_experts, capacity=capacity, per_expert=per_expert,
                        block=1 if grouped else min(self.block_rows, per_expert), mask=mask)
        y = self._run_experts(x.index_select(0, plan.row_token), plan, dtype, grouped)  # (R, d) buffer rows
        weight = top_weight.reshape(-1) * plan.slot_kept  # (N*k,) 0 for a dropped or pad slot
        y = y.index_select(0, plan.slot_row) * weight.unsqueeze(1).to(y.dtype)  # (N*k, d)
        out = y.view(n, k, -1).sum(dim=1)  # (N, d)

        balance = load_balancing_loss(probs, top_index, self.num_experts, mask)
        z = router_z_loss(logits, mask)
        with torch.no_grad():
            routed = max(n * k, 1) if mask is None else mask.sum().clamp(min=1) * k
            entropy = token_mean(-(probs * torch.log_softmax(logits.float(), dim=-1)).sum(-1), mask)
            if capacity is None:
                dropped = torch.zeros((), device=x.device)
            else:
                dropped = (plan.counts.sum() - plan.slot_kept.sum()) / routed
        aux = self.aux_loss_coef * balance + self.z_loss_coef * z
        return MoEOutput(output=self.dropout(out), aux_loss=aux, balance_loss=balance, z_loss=z,
                         tokens_per_expert=plan.counts.float() / routed, router_entropy=entropy,
                         dropped_fraction=dropped)

    def _run_experts(self, rows: torch.Tensor, plan: Dispatch, dtype: torch.dtype, grouped: bool) -> torch.Tensor:
        """(R, d) buffer rows -> (R, d) expert outputs; the expert weights in `dtype`, the matmul dtype (rows stay
        as they are: autocast casts them per use, so a SwiGLU expert's two input gradients add up in x's dtype)."""
        if self.expert_kind == "gelu":
            stacks = (self.w_in, self.b_in, self.w_out, self.b_out)
        else:
            stacks = (self.w_gate, self.w_in, self.w_out)
        # Under autocast each stack is cast once (backward: one cast back), before the blocks gather it.
        stacks = tuple(stack.to(dtype) for stack in stacks)
        gelu = self.expert_kind == "gelu"
        if grouped:
            return grouped_experts(rows, stacks, plan, gelu)
        return blocked_experts(rows, stacks, plan.block_expert, gelu)
