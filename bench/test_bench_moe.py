"""Forward + backward speed of the routed MoE FFN against a dense FFN and transformers' Mixtral block.

    pytest bench/test_bench_moe.py --benchmark-only

2,048 packed tokens, 4 experts, top-2, fp32, on the session's device (bench/conftest.py), at the `ci`
(d128 / ff512) and `full` (d256 / ff1024) shapes; `--bench-profile ci` runs the ci shapes only.
Each case's extra_info holds its matmul GFLOP/s and the derived ratios, which are also printed in a
"bench summary" section at the end of the run:

    top2_vs_2x_dense    MoE (GELU experts) / (2 x dense FFN): top-2 does exactly twice the dense
                        matmul work on the same tokens, so 1.0 is the ideal
    top2_vs_dense_2ff   MoE (GELU experts) / dense FFN with d_ff = 2 x ff (equal active parameters)
    blocked_vs_auto     MoE with the blocked expert matmul (fixed shapes: what a compiled step, CUDA and
                        bf16 run) / MoE as the device's default runs it (chimera/model/moe_dispatch.py)
    mixtral_speedup     Mixtral block / MoE (SwiGLU experts): the same FLOPs, so per time = per FLOP;
                        against the eager experts (a standalone block's default) and grouped_mm (the
                        default of a whole v5 model)

Cases run one after another, so a ratio carries the machine's noise of the moment: compare the
medians of repeated runs. `transformers` is a bench-only dependency, imported here only.

Why eager fp32 on a CPU keeps the grouped GEMM (`grouped_applies`): the layer before this change (sorted
slots, one matmul pair per expert slice, a host sync) and after it, timed side by side in one process on
2026-12-06, a 2-core AVX2 EPYC shared with other jobs, pinned to one core (1 thread); GELU experts, top-2
of 4, fp32, forward + backward of output and aux loss, medians of 21 interleaved rounds after 3 warm-up;
tokens = batch x max_length of the matrix profiles. Time relative to the layer before:

    cell, profile      d / ff      tokens  grouped  blocked (128 rows)  blocked (256 rows)
    fixed/moe ci       128 / 512   1,536    1.02         1.30               1.29
    baseline/moe ci    256 / 1024  1,024    1.07         1.85               1.77
    fixed/moe full     128 / 512   2,048    1.04         1.27               1.23
    baseline/moe full  256 / 1024  2,048    1.18         1.61               1.31

Repeated runs moved each figure by up to about 0.1 (grouped 0.99-1.09 elsewhere). The blocks spend x1.09
to x1.19 (128 rows) the routed FLOPs and copy each block's expert weights (blocks x d x ff per matrix,
forward and backward), which this CPU feels; not measured on a GPU. A whole train step (the trainer's
`train_step`, deterministic algorithms on, 8 batches with random padding in turn, 24 interleaved rounds):
fixed/moe ci 1.16x the step before, baseline/moe ci 1.03x; with glibc's mmap and trim thresholds raised
(MALLOC_MMAP_THRESHOLD_=1073741824 MALLOC_TRIM_THRESHOLD_=4294967296) 1.05x and 1.00x: most of the
difference is the (tokens x k, d_ff) buffers being returned to the OS and faulted back in every step.
"""

from __future__ import annotations

from collections.abc import Callable

import pytest
import torch
from torch import nn

from bench.harness import synchronize
from chimera.flops import matmul_flops
from chimera.model.layers import DenseFFN
from chimera.model.moe import MoEFFN

SHAPES = {"ci": (128, 512), "full": (256, 1024)}  # (d_model, d_ff)
ROUNDS = {"ci": 25, "full": 15}
WARMUP_ROUNDS = 3
TOKENS, EXPERTS, TOP_K = 2048, 4, 2
VARIANTS = ("dense", "dense_2ff", "moe_top2", "moe_top2_blocked", "mixtral_eager", "mixtral_grouped_mm",
            "moe_swiglu")

Forward = Callable[[torch.Tensor], tuple[list[torch.Tensor], list[torch.Tensor]]]


def dense(d: int, ff: int) -> tuple[nn.Module, Forward]:
    module = DenseFFN(d_model=d, d_ff=ff, dropout=0.0)
    return module, lambda x: ([module(x)], [_grad(x)])


def moe(d: int, ff: int, kind: str, expert_matmul: str = "auto") -> tuple[nn.Module, Forward]:
    module = MoEFFN(d_model=d, d_ff=ff, num_experts=EXPERTS, top_k=TOP_K, expert_kind=kind,
                    capacity_factor_train=None, capacity_factor_eval=None, aux_loss_coef=0.01,
                    z_loss_coef=0.001, dropout=0.0, expert_matmul=expert_matmul)

    def forward(x):  # the aux loss is part of a training step, so it is in the backward too
        result = module(x)
        return [result.output, result.aux_loss], [_grad(x), torch.ones((), device=x.device)]
    return module, forward


def mixtral(d: int, ff: int, experts_implementation: str) -> tuple[nn.Module, Forward]:
    transformers = pytest.importorskip("transformers")
    from transformers.models.mixtral.modeling_mixtral import MixtralSparseMoeBlock

    config = transformers.MixtralConfig(hidden_size=d, intermediate_size=ff, num_local_experts=EXPERTS,
                                        num_experts_per_tok=TOP_K, router_jitter_noise=0.0,
                                        experts_implementation=experts_implementation)
    module = MixtralSparseMoeBlock(config)
    for param in module.parameters():  # created with torch.empty; same init as ours
        nn.init.normal_(param, mean=0.0, std=0.02)
    return module, lambda x: ([module(x.unsqueeze(0)).squeeze(0)], [_grad(x)])  # takes (B, T, d)


_GRADS: dict[tuple[int, ...], torch.Tensor] = {}


def _grad(x: torch.Tensor) -> torch.Tensor:
    """A fixed, contiguous upstream gradient (an expanded one breaks grouped_mm's backward)."""
    if x.shape not in _GRADS:
        _GRADS[x.shape] = torch.randn(x.shape, generator=torch.Generator().manual_seed(1)).to(x.device)
    return _GRADS[x.shape]


def build(variant: str, d: int, ff: int) -> tuple[nn.Module, Forward, int]:
    """Module, forward, and matmul FLOPs of forward + backward (3x the forward's)."""
    expert_pass = matmul_flops(TOKENS * TOP_K, ff, d)  # one d x ff matrix over the routed slots
    if variant == "dense":
        return *dense(d, ff), 3 * 2 * matmul_flops(TOKENS, ff, d)
    if variant == "dense_2ff":
        return *dense(d, 2 * ff), 3 * 2 * matmul_flops(TOKENS, 2 * ff, d)
    if variant == "moe_top2":
        return *moe(d, ff, "gelu"), 3 * 2 * expert_pass
    if variant == "moe_top2_blocked":  # FLOPs counted at the routed ideal, as for every variant
        return *moe(d, ff, "gelu", "blocked"), 3 * 2 * expert_pass
    if variant == "moe_swiglu":
        return *moe(d, ff, "swiglu"), 3 * 3 * expert_pass
    return *mixtral(d, ff, variant.removeprefix("mixtral_")), 3 * 3 * expert_pass


def derived_ratios(medians: dict[tuple[str, str], float], shape: str) -> dict[str, float]:
    m = {variant: medians[(s, variant)] for s, variant in medians if s == shape}
    ratios = {}
    if {"moe_top2", "dense"} <= m.keys():
        ratios["top2_vs_2x_dense"] = m["moe_top2"] / (2 * m["dense"])
    if {"moe_top2", "dense_2ff"} <= m.keys():
        ratios["top2_vs_dense_2ff"] = m["moe_top2"] / m["dense_2ff"]
    if {"moe_top2", "moe_top2_blocked"} <= m.keys():
        ratios["blocked_vs_auto"] = m["moe_top2_blocked"] / m["moe_top2"]
    for impl in ("eager", "grouped_mm"):
        if {"moe_swiglu", f"mixtral_{impl}"} <= m.keys():
            ratios[f"mixtral_{impl}_speedup"] = m[f"mixtral_{impl}"] / m["moe_swiglu"]
    return {key: round(value, 3) for key, value in ratios.items()}


@pytest.fixture(scope="module")
def medians(bench_summary):
    """Median seconds per (shape, variant); a summary goes to the terminal when the module is done."""
    table: dict[tuple[str, str], float] = {}
    yield table
    if not table:
        return
    bench_summary.append(f"MoE FFN fwd + bwd, {TOKENS} tokens, {EXPERTS} experts, top-{TOP_K}: medians")
    for shape in dict.fromkeys(s for s, _ in table):
        d, ff = SHAPES[shape]
        times = ", ".join(f"{v} {table[(shape, v)] * 1e3:.1f} ms" for v in VARIANTS if (shape, v) in table)
        bench_summary.append(f"  {shape} (d{d}/ff{ff}): {times}")
        bench_summary.append(f"  {shape} ratios: {derived_ratios(table, shape)}")


CASES = [pytest.param(shape, variant, id=f"{shape}-{variant}",
                      marks=pytest.mark.benchmark(group=f"moe-{shape}"))
         for shape in SHAPES for variant in VARIANTS]


@pytest.mark.parametrize(("shape", "variant"), CASES)
def test_moe_ffn_forward_backward(benchmark, medians, accelerator, bench_profile, shape, variant):
    if bench_profile == "ci" and shape != "ci":
        pytest.skip("full shapes run under --bench-profile full")
    device = accelerator.device
    d, ff = SHAPES[shape]
    torch.manual_seed(0)
    module, forward, flops = build(variant, d, ff)
    module.to(device).train()
    params = list(module.parameters())
    x = torch.randn(TOKENS, d, generator=torch.Generator().manual_seed(0)).to(device).requires_grad_()

    def step():
        x.grad = None
        for param in params:
            param.grad = None
        outputs, grads = forward(x)
        torch.autograd.backward(outputs, grads)
        synchronize(device)

    benchmark.extra_info.update(shape=shape, d_model=d, d_ff=ff, tokens=TOKENS, experts=EXPERTS, top_k=TOP_K,
                                train_step_matmul_flops=flops, threads=torch.get_num_threads(), device=device.type)
    benchmark.pedantic(step, rounds=ROUNDS[shape], warmup_rounds=WARMUP_ROUNDS, iterations=1)
    if benchmark.stats is None:  # --benchmark-disable: ran once, nothing measured
        return
    median = benchmark.stats.stats.median
    medians[(shape, variant)] = median
    benchmark.extra_info["gflop_per_s"] = round(flops / median / 1e9, 1)
    benchmark.extra_info.update(derived_ratios(medians, shape))
