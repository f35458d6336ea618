"""Why the MoE train step lost under bf16 on a CPU with native bf16, and what fixed matmul shapes buy back.

    python -m bench.moe_bf16_probe shapes          # bf16 vs fp32 matmul: one repeated shape vs 200 new ones
    python -m bench.moe_bf16_probe steps bf16      # MoE cells' train step, per-expert matmuls vs fixed blocks

oneDNN builds a kernel for each new matmul shape; an expert's row count changes every step, so every
per-expert matmul pays that build (expert_matmul="grouped", what a bf16 step ran before the row bucket of
commit 03079f5). The blocked layout (chimera/model/moe_dispatch.py, bf16's default) runs the same shapes
every step for a given token count. Meaningful only on a CPU with avx512_bf16 or AMX (docs/performance.md,
"fp32 and bf16 on a CPU with native bf16", has the figures the bucket's form gave on one); elsewhere bf16 is emulated
and both numbers are slow. Medians of wall time.
"""

from __future__ import annotations

import statistics
import sys
import time

import torch


def median_ms(fn, *, rounds: int = 12, warmup: int = 3) -> float:
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(rounds):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times) * 1e3


def shapes() -> None:
    """(M, 128) @ (128, 512) + bias, the fixed cells' expert shape: M fixed, then 200 new M, then the same 200."""
    d, ff = 128, 512
    for dtype in (torch.float32, torch.bfloat16):
        w, b, rows = torch.randn(d, ff, dtype=dtype), torch.randn(ff, dtype=dtype), torch.randn(1000, d, dtype=dtype)
        fixed = median_ms(lambda: torch.addmm(b, rows, w), rounds=200, warmup=10)  # noqa: B023
        passes = []
        for _ in range(2):
            start = time.perf_counter()
            for m in range(800, 1000):
                torch.addmm(b, rows[:m], w)
            passes.append((time.perf_counter() - start) / 200 * 1e3)
        print(f"{dtype}: same shape {fixed:.3f} ms/matmul; 200 new shapes {passes[0]:.3f}; "
              f"the same 200 again {passes[1]:.3f}", flush=True)


def steps(precision: str) -> None:
    """The MoE cells' full-shape train step (bench/harness.py's StepBench), each way of running the experts."""
    from bench.harness import StepBench, fresh_accelerator
    from chimera.matrix import load_matrix
    from chimera.model.moe import MoEFFN
    from chimera.train.device import choose_policy, configure_process, probe_device

    policy = choose_policy(probe_device("cpu"), precision=precision)
    configure_process(policy)
    accelerator = fresh_accelerator(policy)
    for cell in ("fixed/moe", "baseline/moe"):
        config = load_matrix().resolve(cell, "full", device="cpu")
        for matmul in ("grouped", "blocked"):
            bench = StepBench.for_config(config, policy, accelerator)
            for module in bench.model.modules():
                if isinstance(module, MoEFFN):
                    module.expert_matmul = matmul
            print(f"{precision} {cell}, expert_matmul={matmul}: {median_ms(bench.step):.1f} ms/step", flush=True)
            accelerator.free_memory()


if __name__ == "__main__":
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, CPU capability "
          f"{torch.backends.cpu.get_cpu_capability()}", flush=True)
    if sys.argv[1:2] == ["shapes"]:
        shapes()
    elif sys.argv[1:2] == ["steps"] and len(sys.argv) == 3:
        steps(sys.argv[2])
    else:
        sys.exit(__doc__)
