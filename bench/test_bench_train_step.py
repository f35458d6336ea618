"""Training-step throughput of every matrix cell, through the recipe's own `Recipe.step` on accelerate.

    pytest bench/test_bench_train_step.py --benchmark-only                       # full shapes
    pytest bench/test_bench_train_step.py --benchmark-only --bench-profile ci    # ci shapes

Each cell in each benchmarked precision (conftest.py's --bench-precision; accelerate's autocast, as
`chimera train --precision P` runs it). One step = forward, loss, backward, gradient clipping, AdamW
and schedule step, on a synthetic batch_size × max_length batch with no padding (so the matmul FLOPs
of chimera.flops are exact).
extra_info: samples_per_s, tokens_per_s, flops_per_step, achieved_flops_per_s, mfu (against the
calibration GEMM of this session in the same precision); peak memory of the cell comes from conftest.py's
`cell_memory` (bench/memory.py), as for every benchmark. $CHIMERA_BENCH_INJECT_SLOWDOWN=N adds N extra
matmuls per step (test-only; bench/harness.py) to prove that the speed gate trips.
"""

from __future__ import annotations

import pytest
import torch

from bench.harness import StepBench, throughput_info, transformer_cells
from chimera.matrix import load_matrix

CELLS = transformer_cells()


@pytest.mark.benchmark(group="train-step")
@pytest.mark.parametrize("cell", CELLS)
def test_train_step(benchmark, device_policy, accelerator, calibration_gemm, bench_profile, bench_rounds,
                    step_medians, cell, precision):
    config = load_matrix().resolve(cell, bench_profile, device=accelerator.device.type)
    bench = StepBench.for_config(config, device_policy, accelerator)
    model = config.model
    benchmark.extra_info.update(
        cell=cell, bench_profile=bench_profile, device=accelerator.device.type, precision=precision,
        mixed_precision=accelerator.mixed_precision, threads=torch.get_num_threads(),
        batch_size=config.train.batch_size, seq_len=config.data.max_length, vocab_size=config.data.vocab_size,
        d_model=model.d_model, n_layers=model.n_layers, n_heads=model.n_heads, d_ff=model.d_ff, ffn=model.ffn,
        injected_matmuls=bench.slowdown.count, calibration_gflop_per_s=calibration_gemm["flop_per_s"] / 1e9,
        calibration_dtype=calibration_gemm["dtype"])
    rounds, warmup = bench_rounds.train_step
    benchmark.pedantic(bench.step, rounds=rounds, warmup_rounds=warmup, iterations=1)
    if benchmark.stats is None:  # --benchmark-disable: ran once as a smoke test, nothing measured
        return
    median = benchmark.stats.stats.median
    step_medians[precision, cell] = median
    benchmark.extra_info.update(throughput_info(median_s=median, samples=bench.samples, tokens=bench.tokens,
                                                flops=bench.flops(),
                                                calibration_flop_per_s=calibration_gemm["flop_per_s"]))
