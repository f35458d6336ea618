"""Why the MoE train step lost under bf16 on a CPU with native bf16, and what the row bucket buys back.

    python -m bench.moe_bf16_probe shapes          # bf16 vs fp32 matmul: one repeated shape vs 200 new ones
    python -m bench.moe_bf16_probe steps bf16      # MoE cells' train step with the expert row bucket off and on

oneDNN builds a kernel for each new matmul shape; an expert's row count changes every step, so every expert
matmul paid that build until chimera/model/moe.py padded the rows to a multiple of
HALF_PRECISION_CPU_ROW_BUCKET. Meaningful only on a CPU with avx512_bf16 or AMX (docs/performance.md, "fp32 and
bf16 on a CPU with native bf16", has the figures it gave on one); elsewhere bf16 is emulated and both numbers are slow.
Medians of wall time.
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
    """The MoE cells' full-shape train step (bench/harness.py's StepBench) with the row bucket 1 (off) and on."""
    from bench.harness import StepBench, fresh_accelerator
    from chimera.matrix import load_matrix
    from chimera.model import moe
    from chimera.train.device import choose_policy, configure_process, probe_device

    policy = choose_policy(probe_device("cpu"), precision=precision)
    configure_process(policy)
    accelerator = fresh_accelerator(policy)
    bucket = moe.HALF_PRECISION_CPU_ROW_BUCKET
    for cell in ("fixed/moe", "baseline/moe"):
        config = load_matrix().resolve(cell, "full", device="cpu")
        for rows in (1, bucket) if precision != "fp32" else (1,):  # fp32 is never padded
            moe.HALF_PRECISION_CPU_ROW_BUCKET = rows
            step = StepBench.for_config(config, policy, accelerator).step
            print(f"{precision} {cell}, expert rows padded to a multiple of {rows}: {median_ms(step):.1f} ms/step",
                  flush=True)
            accelerator.free_memory()
    moe.HALF_PRECISION_CPU_ROW_BUCKET = bucket


if __name__ == "__main__":
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, CPU capability "
          f"{torch.backends.cpu.get_cpu_capability()}", flush=True)
    if sys.argv[1:2] == ["shapes"]:
        shapes()
    elif sys.argv[1:2] == ["steps"] and len(sys.argv) == 3:
        steps(sys.argv[2])
    else:
        sys.exit(__doc__)
