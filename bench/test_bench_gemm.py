"""The calibration GEMM: a 2048 × 2048 matmul, fp32 and (where the hardware has it) bf16.

    pytest bench/test_bench_gemm.py --benchmark-only

Its fp32 median is what `chimera bench compare` divides every step time by, so a slower or busier
machine does not read as a regression; its GFLOP/s is the practical peak that MFU is measured against.
"""

from __future__ import annotations

import pytest
import torch

from bench.harness import GEMM_SIZE, bf16_native, gemm_flops, gemm_operands, synchronize

DTYPES = {"fp32": torch.float32, "bf16": torch.bfloat16}


@pytest.mark.benchmark(group="calibration")
@pytest.mark.parametrize("dtype", list(DTYPES))
def test_calibration_gemm(benchmark, accelerator, bench_rounds, dtype):
    device = accelerator.device
    if dtype == "bf16" and not bf16_native(device):
        pytest.skip(f"no native bf16 matmul on this {device.type} (emulated bf16 is ~100x slower than fp32)")
    a, b, out = gemm_operands(device, DTYPES[dtype])

    def gemm():
        torch.mm(a, b, out=out)
        synchronize(device)

    rounds, warmup = bench_rounds.gemm
    benchmark.extra_info.update(calibration=True, dtype=dtype, size=GEMM_SIZE, flops=gemm_flops(),
                                device=device.type, threads=torch.get_num_threads())
    benchmark.pedantic(gemm, rounds=rounds, warmup_rounds=warmup, iterations=1)
    if benchmark.stats is not None:  # None under --benchmark-disable
        benchmark.extra_info["gflop_per_s"] = gemm_flops() / benchmark.stats.stats.median / 1e9
