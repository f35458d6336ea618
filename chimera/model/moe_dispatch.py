"""Where a mixture-of-experts layer's routed slots go: a layout of fixed shape, planned on the device.

The N*k (token, choice) slots are laid out expert by expert in a buffer of R rows cut into blocks of
`block` rows, each expert's rows starting on a block boundary, so every block belongs to one expert.
Each slot's place is a cumulative count over the slots (no sort, no `bincount`, no `.tolist()`), and R
depends on N, k, E and the capacity alone (`buffer_rows`): no host sync and no data-dependent shape,
so a step with this layout compiles whole (`torch.compile(fullgraph=True, dynamic=False)`) and a CUDA
graph can capture it. R bounds every routing, so no slot is ever dropped for want of room; rows no slot
fills cost FLOPs but feed nothing.

Two ways to run the experts over the buffer, equal up to fp32 rounding (tests/unit/test_moe.py):
`blocked_experts`, one batched matmul over the blocks, each with its expert's weights gathered, and
`grouped_experts` (block = 1, no rounding: exactly the routed FLOPs), `F.grouped_mm` over the
per-expert offsets. `grouped_applies` says which runs where.
"""

from __future__ import annotations

from typing import NamedTuple

import torch
import torch.nn.functional as F

# Rows per block for `blocked_experts`: each expert's rows are rounded up to whole blocks, at most
# E * (block - 1) rows of FLOPs beyond the routed slots (x1.09 to x1.19 at the matrix's ci and full shapes).
EXPERT_BLOCK_ROWS = 128


def grouped_applies(device: torch.device, dtype: torch.dtype, compiling: bool, widths: tuple[int, ...]) -> bool:
    """Grouped GEMM in eager fp32 on a CPU, blocks elsewhere. On a 2-core AVX2 CPU the blocks cost 1.2x to 1.8x
    the grouped GEMM's time (bench/test_bench_moe.py's docstring); but `F.grouped_mm` cannot be traced in fp32
    (torch 2.13's fake kernel accepts bf16 only), reads its offsets on the host on CUDA except in bf16 on
    sm90/sm100, on a CPU runs one matmul per expert, whose new row counts cost a bf16 kernel build each, and
    takes only rows whose `widths` (d_model, d_ff) span a multiple of 16 bytes."""
    aligned = all(width * dtype.itemsize % 16 == 0 for width in widths)
    return device.type == "cpu" and dtype == torch.float32 and not compiling and aligned


def expert_counts(expert_index: torch.Tensor, num_experts: int) -> torch.Tensor:
    """(E,) int64 number of entries of `expert_index` equal to each expert; others (a pad's E) count nowhere.
    A comparison and a sum: no `bincount`, which syncs with the host on CUDA."""
    return (expert_index.reshape(-1, 1) == torch.arange(num_experts, device=expert_index.device)).sum(0)


class Dispatch(NamedTuple):
    """The buffer layout of one routing: all on the device, every shape fixed by N, k, E and the capacity."""

    slot_row: torch.Tensor  # (N*k,) buffer row of slot s (token s // k's (s % k)-th choice); 0 when not kept
    slot_kept: torch.Tensor  # (N*k,) bool: a real token's slot within its expert's capacity
    row_token: torch.Tensor  # (R,) token whose input each buffer row holds; token 0 for a row no slot fills
    block_expert: torch.Tensor | None  # (R // block,) expert of each block; None: block e is expert e's
    ends: torch.Tensor  # (E,) int64 end row of each expert's rows (its blocks), cumulative
    counts: torch.Tensor  # (E,) int64 routed slots per expert, before capacity drops (real tokens only)


def buffer_rows(num_tokens: int, top_k: int, num_experts: int, per_expert: int, block: int) -> int:
    """Rows that hold any routing of `num_tokens` x `top_k` slots when each expert keeps at most `per_expert`
    of them and its rows are rounded up to whole blocks: at most `block - 1` rows of rounding per expert."""
    if block >= per_expert:
        return num_experts * per_expert  # the (E, per_expert) layout: one block per expert, its own
    return block * min((num_tokens * top_k + num_experts * (block - 1)) // block,
                       num_experts * -(-per_expert // block))


def dispatch(expert_index: torch.Tensor, num_experts: int, *, capacity: int | torch.Tensor | None,
             per_expert: int, block: int, mask: torch.Tensor | None) -> Dispatch:
    """Lay out the slots of `expert_index` (N, k) expert by expert in blocks of `block` rows.

    An expert keeps its first `capacity` slots (all when None) in slot order, i.e. earliest tokens first;
    `per_expert` is a static bound on that (the buffer is sized for it), `mask` (N,) marks real tokens.
    """
    n, k = expert_index.shape
    device = expert_index.device
    flat = expert_index.reshape(-1)  # (S,)
    if mask is not None:
        flat = flat.masked_fill(~mask.repeat_interleave(k), num_experts)  # a pad's slots go to no expert
    one_hot = flat.unsqueeze(1) == torch.arange(num_experts, device=device)  # (S, E)
    counts = one_hot.sum(0)  # (E,)
    rank = (one_hot.cumsum(0) * one_hot).sum(1) - 1  # (S,) place of slot s among its expert's slots
    kept = flat < num_experts
    if capacity is not None:
        kept = kept & (rank < capacity)
    rows = buffer_rows(n, k, num_experts, per_expert, block)
    if block >= per_expert:
        ends, block_expert = (torch.arange(num_experts, device=device) + 1) * block, None
    else:
        kept_counts = counts if capacity is None else counts.clamp(max=capacity)
        ends = ((kept_counts + block - 1) // block * block).cumsum(0)  # (E,) each expert's rows in whole blocks
        block_starts = torch.arange(0, rows, block, device=device)  # (R // block,)
        block_expert = (ends <= block_starts.unsqueeze(1)).sum(1).clamp(max=num_experts - 1)
    starts = torch.cat([ends.new_zeros(1), ends[:-1]])
    slot_row = torch.where(kept, starts[flat.clamp(max=num_experts - 1)] + rank, 0)
    # each kept slot writes its id into its row; the others write into one extra row, cut off after
    row_slot = torch.zeros(rows + 1, dtype=torch.long, device=device).scatter_(
        0, torch.where(kept, slot_row, rows), torch.arange(n * k, device=device))[:rows]
    return Dispatch(slot_row, kept, row_slot // k, block_expert, ends, counts)


def blocked_experts(rows: torch.Tensor, stacks: tuple[torch.Tensor, ...], block_expert: torch.Tensor | None,
                    gelu: bool) -> torch.Tensor:
    """(R, d) buffer rows -> (R, d): block b through the experts' `stacks` at `block_expert[b]`, one batched
    matmul per weight. GELU stacks (w_in, b_in, w_out, b_out), SwiGLU stacks (w_gate, w_in, w_out)."""
    if block_expert is not None:
        stacks = tuple(stack.index_select(0, block_expert) for stack in stacks)  # (blocks, ...)
    blocks = stacks[0].shape[0]
    x = rows.view(blocks, rows.shape[0] // blocks, rows.shape[1])  # (blocks, block, d)
    if gelu:
        w_in, b_in, w_out, b_out = stacks
        h = F.gelu(torch.baddbmm(b_in.unsqueeze(1), x, w_in))  # (blocks, block, ff); bias fused in the matmul
        y = torch.baddbmm(b_out.unsqueeze(1), h, w_out)
    else:
        w_gate, w_in, w_out = stacks
        y = torch.bmm(F.silu(torch.bmm(x, w_gate)) * torch.bmm(x, w_in), w_out)
    return y.reshape(rows.shape)


def grouped_experts(rows: torch.Tensor, stacks: tuple[torch.Tensor, ...], plan: Dispatch,
                    gelu: bool) -> torch.Tensor:
    """`blocked_experts` for a layout of one-row blocks, by `F.grouped_mm` over the experts' row ranges (the
    last range runs on to R, so no row is left unwritten)."""
    offsets = plan.ends.to(torch.int32)
    offsets[-1] = rows.shape[0]
    rows = rows.to(stacks[0].dtype)  # grouped_mm has no autocast rule: both operands in the stacks' dtype
    if gelu:
        w_in, b_in, w_out, b_out = stacks
        # each row's bias as (R, E) one-hot @ (E, width), added in place by addmm_: exactly the bias, with neither
        # an (R, width) gather (whose backward is a row-by-row index_add) nor a second (R, width) tensor
        experts = torch.arange(w_in.shape[0], device=rows.device)
        one_hot = (experts if plan.block_expert is None else plan.block_expert).unsqueeze(1) == experts
        one_hot = one_hot.to(rows.dtype)
        h = F.gelu(F.grouped_mm(rows, w_in, offs=offsets).addmm_(one_hot, b_in))  # (R, ff)
        return F.grouped_mm(h, w_out, offs=offsets).addmm_(one_hot, b_out)
    w_gate, w_in, w_out = stacks
    h = F.silu(F.grouped_mm(rows, w_gate, offs=offsets)) * F.grouped_mm(rows, w_in, offs=offsets)
    return F.grouped_mm(h, w_out, offs=offsets)
