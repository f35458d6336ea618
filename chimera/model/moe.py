"""A routed mixture-of-experts FFN: a drop-in for `DenseFFN` on packed tokens `(N, d_model)`.

Router: linear (no bias) -> softmax (fp32) -> top-k, the k weights renormalised to sum to 1.
Dispatch: the N*k (token, choice) slots are sorted by expert (stable argsort, so each expert sees
its tokens in order), gathered once, run through one matmul pair per expert on a contiguous slice,
scaled by their router weights and summed back with `index_add_`. No (tokens x experts x capacity)
one-hot tensors are built; an expert that receives no tokens costs nothing (its gradient is zero).
One host sync per call: the per-expert slice sizes (`.tolist()`), needed to split the rows.
Capacity (optional, separately for train and eval): each expert keeps at most
ceil(factor * N * k / E) slots, earliest tokens first; a dropped slot contributes nothing (the
block's residual still carries the token) and is counted in `dropped_fraction`.
"""

from __future__ import annotations

import math
from typing import NamedTuple

import torch
import torch.nn.functional as F
from torch import nn

from chimera.model.dropout import Dropout
from chimera.model.ffn import FFN_ACTIVATIONS


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


def load_balancing_loss(router_probs: torch.Tensor, expert_index: torch.Tensor,
                        num_experts: int) -> torch.Tensor:
    """Switch Transformer load-balancing loss (Fedus et al. 2021, eq. 4): E * sum_i f_i * P_i.

    f_i: fraction of the top-k assignments `expert_index` (N, k) that go to expert i (no gradient);
    P_i: mean router probability of expert i over the N tokens of `router_probs` (N, E).
    Equals 1.0 when either is uniform and E when every token puts probability 1 on one expert.
    """
    counts = torch.bincount(expert_index.reshape(-1), minlength=num_experts)
    f = counts.to(router_probs.dtype) / expert_index.numel()  # (E,)
    p = router_probs.mean(dim=0)  # (E,)
    return num_experts * torch.dot(f, p)


def router_z_loss(logits: torch.Tensor) -> torch.Tensor:
    """ST-MoE router z-loss (Zoph et al. 2022, eq. 5): mean over tokens of logsumexp(logits)^2."""
    return torch.logsumexp(logits.float(), dim=-1).square().mean()


def sort_slots(expert_index: torch.Tensor, num_experts: int,
               capacity: int | None) -> tuple[torch.Tensor, torch.Tensor, list[int]]:
    """Group the routed slots by expert.

    `expert_index` (N, k); slot s is token s // k's (s % k)-th choice. Returns `order` (the kept slot
    ids, grouped by expert, token order within an expert), `counts` (E,) routed slots per expert
    before any drop, and `kept` (python ints) the slots each expert keeps: the sizes of its slice.
    """
    flat = expert_index.reshape(-1)  # (N*k,)
    order = torch.argsort(flat, stable=True)  # (N*k,)
    counts = torch.bincount(flat, minlength=num_experts)  # (E,)
    if capacity is None:
        return order, counts, counts.tolist()
    starts = counts.cumsum(0) - counts  # (E,) first sorted position of each expert
    rank = torch.arange(flat.numel(), device=flat.device) - starts[flat[order]]  # position within expert
    return order[rank < capacity], counts, counts.clamp(max=capacity).tolist()


# On a CPU with native bf16 a bf16 matmul costs far more the first time it meets a shape (consistent with
# oneDNN building and caching a kernel per shape): measured on a 16-core Xeon with AMX (8 threads, torch 2.11),
# (M, 128) @ (128, 512) took 1.54 ms over 200 new M and 0.14 ms over the same 200 again. An expert's row count
# changes every step, so every expert matmul paid it: fixed/moe's bf16 step took 135 ms against 61 ms in fp32.
# Padding each expert's rows to a multiple of this many makes the shapes repeat (48 ms). fp32 matmuls build
# nothing per shape and keep their exact rows, so the fp32 path (and every committed record) is unchanged.
HALF_PRECISION_CPU_ROW_BUCKET = 64


def expert_row_bucket(device: torch.device, dtype: torch.dtype) -> int:
    """Multiple to pad each expert's rows to: HALF_PRECISION_CPU_ROW_BUCKET for half-precision matmuls on a
    CPU, else 1 (no padding: CUDA's and fp32's matmuls cost nothing extra at a new shape)."""
    half = dtype in (torch.bfloat16, torch.float16)
    return HALF_PRECISION_CPU_ROW_BUCKET if half and device.type == "cpu" else 1


def _matmul_dtype(x: torch.Tensor) -> torch.dtype:
    """The dtype autocast runs matmuls in on x's device when it is on, else x's own."""
    device = x.device.type
    return torch.get_autocast_dtype(device) if torch.is_autocast_enabled(device) else x.dtype


class MoEFFN(nn.Module):
    """`(N, d_model) -> MoEOutput`; experts are GELU FFNs with biases (like `DenseFFN(kind="gelu")`)
    or bias-free SwiGLU FFNs (like `DenseFFN(kind="swiglu")`, Mixtral-style).

    Expert weights are stacked per parameter: `w_in` (E, d, ff), `w_out` (E, ff, d), `b_in` (E, ff)
    and `b_out` (E, d) for GELU; `w_gate` (E, d, ff) in place of the biases for SwiGLU.
    """

    bias_names = ("b_in", "b_out")  # stacked biases: 2-D like a matrix, but biases for weight decay

    def __init__(self, *, d_model: int, d_ff: int, num_experts: int, top_k: int, expert_kind: str,
                 capacity_factor_train: float | None, capacity_factor_eval: float | None,
                 aux_loss_coef: float, z_loss_coef: float, dropout: float) -> None:
        super().__init__()
        if expert_kind not in FFN_ACTIVATIONS:
            raise ValueError(f"expert_kind must be one of {FFN_ACTIVATIONS}, got {expert_kind!r}")
        if not 1 <= top_k <= num_experts:
            raise ValueError(f"top_k must be in [1, num_experts={num_experts}], got {top_k}")
        self.num_experts, self.top_k, self.expert_kind = num_experts, top_k, expert_kind
        self.capacity_factor_train, self.capacity_factor_eval = capacity_factor_train, capacity_factor_eval
        self.aux_loss_coef, self.z_loss_coef = aux_loss_coef, z_loss_coef
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

    def capacity(self, num_tokens: int) -> int | None:
        """Slots each expert may keep for `num_tokens` tokens in the current mode; None = dropless."""
        factor = self.capacity_factor_train if self.training else self.capacity_factor_eval
        if factor is None:
            return None
        return math.ceil(factor * num_tokens * self.top_k / self.num_experts)

    def forward(self, x: torch.Tensor) -> MoEOutput:  # x: (N, d)
        n, k = x.shape[0], self.top_k
        logits = self.router(x)  # (N, E)
        probs = logits.float().softmax(dim=-1)  # (N, E), fp32 so routing is stable under autocast
        top_weight, top_index = probs.topk(k, dim=-1)  # (N, k)
        top_weight = top_weight / top_weight.sum(dim=-1, keepdim=True)

        order, counts, kept = sort_slots(top_index, self.num_experts, self.capacity(n))
        token = order // k  # (S,) token of each kept slot, grouped by expert
        y = self._run_experts(x.index_select(0, token), kept, _matmul_dtype(x))  # (S, d)
        y = y * top_weight.reshape(-1)[order].unsqueeze(1).to(y.dtype)
        out = y.new_zeros(n, y.shape[1]).index_add_(0, token, y)  # (N, d); dropped slots add nothing

        balance = load_balancing_loss(probs, top_index, self.num_experts)
        z = router_z_loss(logits)
        with torch.no_grad():
            routed = max(n * k, 1)
            entropy = -(probs * torch.log_softmax(logits.float(), dim=-1)).sum(-1).mean()
            dropped = torch.tensor((n * k - sum(kept)) / routed, device=x.device)
        aux = self.aux_loss_coef * balance + self.z_loss_coef * z
        return MoEOutput(output=self.dropout(out), aux_loss=aux, balance_loss=balance, z_loss=z,
                         tokens_per_expert=counts.float() / routed, router_entropy=entropy,
                         dropped_fraction=dropped)

    def _run_experts(self, x_sorted: torch.Tensor, sizes: list[int], dtype: torch.dtype) -> torch.Tensor:
        """(S, d) rows grouped by expert, `sizes[e]` rows for expert e -> (S, d) expert outputs; the expert
        weights in `dtype`, the matmul dtype (x_sorted stays as it is: autocast casts it per use, so a SwiGLU
        expert's two input gradients still add up in x's dtype)."""
        if self.expert_kind == "gelu":
            stacks = (self.w_in, self.b_in, self.w_out, self.b_out)
        else:
            stacks = (self.w_gate, self.w_in, self.w_out)
        # Under autocast each stack is cast once (backward: one cast back), not once per expert slice: autocast
        # caches casts of leaf weights only, and a slice is no leaf. A no-op in fp32.
        stacks = tuple(stack.to(dtype) for stack in stacks)
        # unbind (not w[e]): backward then stacks the E slices once instead of adding E full-size zeros
        per_expert = zip(*(stack.unbind(0) for stack in stacks), strict=True)
        chunks = zip(x_sorted.split(sizes), sizes, per_expert, strict=True)
        bucket = expert_row_bucket(x_sorted.device, dtype)
        outputs = [self._expert_rows(x_e, size, bucket, params) for x_e, size, params in chunks if size]
        return torch.cat(outputs) if outputs else x_sorted

    def _expert_rows(self, x: torch.Tensor, size: int, bucket: int, params: tuple[torch.Tensor, ...]) -> torch.Tensor:
        """One expert on its `size` rows, computed on zero rows appended up to a multiple of `bucket` (see
        HALF_PRECISION_CPU_ROW_BUCKET); their outputs are dropped, so they add nothing to any gradient."""
        pad = -size % bucket
        if not pad:
            return self._expert(x, *params)
        return self._expert(F.pad(x, (0, 0, 0, pad)), *params)[:size]

    def _expert(self, x: torch.Tensor, *params: torch.Tensor) -> torch.Tensor:  # (n_e, d) -> (n_e, d)
        if self.expert_kind == "gelu":
            w_in, b_in, w_out, b_out = params
            return torch.addmm(b_out, F.gelu(torch.addmm(b_in, x, w_in)), w_out)  # bias fused into the matmul
        w_gate, w_in, w_out = params
        return (F.silu(x @ w_gate) * (x @ w_in)) @ w_out
