"""Training-step throughput of every matrix cell, through the recipe's own `Recipe.step` on accelerate.

    pytest bench/test_bench_train_step.py --benchmark-only                         # full shapes
    pytest bench/test_bench_train_step.py --benchmark-only --bench-profile ci      # ci shapes
    pytest bench/test_bench_train_step.py --benchmark-only --bench-step-modes compile --bench-batch-sweep

Each cell in each benchmarked precision (conftest.py's --bench-precision; accelerate's autocast, as
`chimera train --precision P` runs it). One step = forward, loss, backward, gradient clipping, AdamW
and schedule step, in the device's own step mode (eager on CPU and MPS, graph on CUDA):
- `test_train_step` (group train-step, what the speed gate compares): a synthetic batch_size × max_length
  batch with no padding, so the matmul FLOPs of chimera.flops are exact;
- `test_train_step_real_batch` (train-step-real): the cell's first real training batch from AG News, as
  its loader pads it (to the longest row in eager, to max_length in compile and graph), so padding and
  masking cost what they cost in a run; FLOPs and MFU count the padded shape, tokens/s the real tokens;
- `test_train_step_in_mode` (train-step-modes): the synthetic batch in each extra --bench-step-modes mode
  (eager on CUDA by default, to set against graph); a compiled step's compilation is its warm-up;
- `test_train_step_sweep` (train-step-sweep): the synthetic batch at x1, x8, x64 the profile's batch size
  (--bench-batch-sweep; on by default on CUDA), so tokens/s and MFU per point show where a device saturates.
extra_info: step_mode, samples_per_s, tokens_per_s, flops_per_step, achieved_flops_per_s, mfu (against the
calibration GEMM of this session in the same precision); energy_j_per_step over the timed rounds with
energy_source and energy_scope (what it includes: the whole CPU package or GPU board, every process on it), or
energy_unavailable with the reason (chimera/train/energy.py), each also a line of the bench summary. Peak
memory of the cell comes from conftest.py's `cell_memory` (bench/memory.py), as for every benchmark.
$CHIMERA_BENCH_INJECT_SLOWDOWN=N adds N extra matmuls per step (test-only; bench/harness.py) to prove that the
speed gate trips.
"""

from __future__ import annotations

from dataclasses import replace

import pytest
import torch

from bench.harness import StepBench, energy_summary, pedantic_with_energy, throughput_info, transformer_cells
from chimera.matrix import load_matrix
from chimera.train.plan import make_plan
from chimera.train.run_setup import prepare_inputs

CELLS = transformer_cells()


def _time(benchmark, bench: StepBench, *, cell, precision, bench_profile, bench_rounds, calibration_gemm,
          energy_meter, bench_summary) -> float | None:
    """Time `bench.step` and put the step's shape and derived figures (energy too) in extra_info; the median, or
    None when nothing was measured (--benchmark-disable)."""
    config, model = bench.config, bench.config.model
    batch, length = bench.batch["input_ids"].shape
    benchmark.extra_info.update(
        cell=cell, bench_profile=bench_profile, device=bench.accelerator.device.type, precision=precision,
        mixed_precision=bench.accelerator.mixed_precision, step_mode=bench.step_mode, threads=torch.get_num_threads(),
        batch_size=batch, seq_len=length, vocab_size=config.data.vocab_size, d_model=model.d_model,
        n_layers=model.n_layers, n_heads=model.n_heads, d_ff=model.d_ff, ffn=model.ffn,
        injected_matmuls=bench.slowdown.count, calibration_gflop_per_s=calibration_gemm["flop_per_s"] / 1e9,
        calibration_dtype=calibration_gemm["dtype"], calibration_size=calibration_gemm["size"])
    rounds, warmup = bench_rounds.train_step
    energy = pedantic_with_energy(benchmark, bench.step, rounds=rounds, warmup=warmup, meter=energy_meter)
    benchmark.extra_info.update(energy)
    bench_summary.extend(energy_summary(bench_summary, benchmark.name, energy))
    if benchmark.stats is None:  # --benchmark-disable: ran once as a smoke test, nothing measured
        return None
    median = benchmark.stats.stats.median
    benchmark.extra_info.update(throughput_info(median_s=median, samples=bench.samples, tokens=bench.tokens,
                                                flops=bench.flops(),
                                                calibration_flop_per_s=calibration_gemm["flop_per_s"]))
    return median


@pytest.mark.benchmark(group="train-step")
@pytest.mark.parametrize("cell", CELLS)
def test_train_step(benchmark, device_policy, accelerator, calibration_gemm, bench_profile, bench_rounds,
                    step_medians, energy_meter, bench_summary, cell, precision):
    config = load_matrix().resolve(cell, bench_profile, device=accelerator.device.type)
    bench = StepBench.for_config(config, device_policy, accelerator)
    median = _time(benchmark, bench, cell=cell, precision=precision, bench_profile=bench_profile,
                   bench_rounds=bench_rounds, calibration_gemm=calibration_gemm, energy_meter=energy_meter,
                   bench_summary=bench_summary)
    if median is not None:
        step_medians[precision, cell] = median


@pytest.mark.benchmark(group="train-step-real")
@pytest.mark.parametrize("cell", CELLS)
def test_train_step_real_batch(benchmark, device_policy, accelerator, calibration_gemm, bench_profile, bench_rounds,
                               energy_meter, bench_summary, data_dir, tmp_path_factory, cell, precision):
    config = load_matrix().resolve(cell, bench_profile, device=accelerator.device.type,
                                   overrides=[f"train.precision={precision}"])
    plan = make_plan(config, out_dir=tmp_path_factory.mktemp("runs"))
    inputs = prepare_inputs(plan, data_dir=data_dir, cache_dir=tmp_path_factory.getbasetemp() / "tokenizers",
                            accelerator=accelerator)
    batch = next(iter(inputs.train_loader(0)))  # epoch 0's first batch, augmented and padded as a run has it
    bench = StepBench.for_config(config, device_policy, accelerator, batch=batch)
    _time(benchmark, bench, cell=cell, precision=precision, bench_profile=bench_profile, bench_rounds=bench_rounds,
          calibration_gemm=calibration_gemm, energy_meter=energy_meter, bench_summary=bench_summary)
    benchmark.extra_info["padding_fraction"] = 1 - bench.tokens / batch["attention_mask"].numel()


@pytest.mark.benchmark(group="train-step-modes")
@pytest.mark.parametrize("cell", CELLS)
def test_train_step_in_mode(benchmark, device_policy, accelerator, calibration_gemm, bench_profile, bench_rounds,
                            energy_meter, bench_summary, cell, precision, step_mode):
    config = load_matrix().resolve(cell, bench_profile, device=accelerator.device.type)
    bench = StepBench.for_config(config, device_policy, accelerator, step_mode=step_mode)
    _time(benchmark, bench, cell=cell, precision=precision, bench_profile=bench_profile, bench_rounds=bench_rounds,
          calibration_gemm=calibration_gemm, energy_meter=energy_meter, bench_summary=bench_summary)


@pytest.mark.benchmark(group="train-step-sweep")
@pytest.mark.parametrize("cell", CELLS)
def test_train_step_sweep(benchmark, device_policy, accelerator, calibration_gemm, bench_profile, bench_rounds,
                          energy_meter, bench_summary, cell, precision, batch_factor):
    config = load_matrix().resolve(cell, bench_profile, device=accelerator.device.type)
    config = replace(config, train=replace(config.train, batch_size=config.train.batch_size * batch_factor))
    bench = StepBench.for_config(config, device_policy, accelerator)
    _time(benchmark, bench, cell=cell, precision=precision, bench_profile=bench_profile, bench_rounds=bench_rounds,
          calibration_gemm=calibration_gemm, energy_meter=energy_meter, bench_summary=bench_summary)
    benchmark.extra_info["batch_factor"] = batch_factor
