"""The calibration GEMM: an n × n matmul in each benchmarked precision (fp32, and the hardware's native bf16
or fp16; conftest.py's --bench-precision), n sized per kind of device (bench/harness.py GEMM_SIZES: 2048
on a CPU, 8192 on a GPU, where 2048 finishes in a tenth of a millisecond) and recorded as `size`.

    pytest bench/test_bench_gemm.py --benchmark-only

Its fp32 median is what `chimera bench compare` divides every step time by, so a slower or busier
machine does not read as a regression; its GFLOP/s in each precision is the practical peak that MFU in
that precision is measured against.
"""

from __future__ import annotations

import pytest
import torch

from bench.harness import TORCH_DTYPES, gemm_flops, gemm_operands, gemm_size, synchronize


@pytest.mark.benchmark(group="calibration")
def test_calibration_gemm(benchmark, accelerator, bench_rounds, precision):
    device = accelerator.device
    n = gemm_size(device)
    a, b, out = gemm_operands(device, TORCH_DTYPES[precision], n)

    def gemm():
        torch.mm(a, b, out=out)
        synchronize(device)

    rounds, warmup = bench_rounds.gemm
    benchmark.extra_info.update(calibration=True, dtype=precision, precision=precision, size=n,
                                flops=gemm_flops(n), device=device.type, threads=torch.get_num_threads())
    benchmark.pedantic(gemm, rounds=rounds, warmup_rounds=warmup, iterations=1)
    if benchmark.stats is not None:  # None under --benchmark-disable
        benchmark.extra_info["gflop_per_s"] = gemm_flops(n) / benchmark.stats.stats.median / 1e9
