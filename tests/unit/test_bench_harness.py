"""The benchmark harness times the recipe's own step on exact-FLOP batches (no timing asserted here)."""

from __future__ import annotations

import math

import pytest
import torch

from bench.harness import INJECT_ENV, InjectedSlowdown, StepBench, synthetic_batch, throughput_info
from chimera.flops import model_train_step_flops
from chimera.matrix import load_matrix
from chimera.train.device import DeviceInfo, choose_policy
from chimera.train.run import build_accelerator

CPU_POLICY = choose_policy(DeviceInfo("cpu", "test cpu", cpu_count=2))
TINY = ["model.d_model=32", "model.n_heads=2", "model.d_ff=64", "model.n_layers=1", "data.max_length=8",
        "data.vocab_size=256", "train.batch_size=4"]


@pytest.fixture(scope="module")
def accelerator():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # tiny ops: threads only add barrier waits (seconds per step on a busy machine)
    yield build_accelerator(CPU_POLICY)
    torch.set_num_threads(threads)


def test_synthetic_batch_is_all_real_tokens_with_cls_first():
    config = load_matrix().resolve("fixed/dense", "ci", overrides=TINY)
    batch = synthetic_batch(config, torch.device("cpu"))
    assert batch["input_ids"].shape == (4, 8) and batch["attention_mask"].all()
    assert (batch["input_ids"][:, 0] == 2).all()  # [CLS]
    assert batch["input_ids"][:, 1:].min() >= 3 and batch["input_ids"].max() < 256  # no [PAD] or [UNK]
    assert torch.equal(batch["input_ids"], synthetic_batch(config, torch.device("cpu"))["input_ids"])  # fixed


@pytest.mark.parametrize("cell", ["fixed/dense", "baseline/moe"])
def test_step_runs_the_recipes_step(accelerator, cell):
    bench = StepBench.for_config(load_matrix().resolve(cell, "ci", overrides=TINY), CPU_POLICY, accelerator)
    losses = [bench.step() for _ in range(3)]
    assert all(math.isfinite(loss) for loss in losses)
    state = bench.recipe.state
    assert state.loss_count == 3 and state.last_grad_norm is not None  # Recipe.step's bookkeeping
    assert bench.flops() == model_train_step_flops(**vars(bench.config.model), batch=4, seq_len=8)
    assert (bench.samples, bench.tokens) == (4, 32)


def test_injected_slowdown_reads_its_count_from_the_environment(monkeypatch):
    kwargs = dict(rows=8, d_model=4, device=torch.device("cpu"))
    monkeypatch.delenv(INJECT_ENV, raising=False)
    assert InjectedSlowdown.from_env(**kwargs).count == 0
    monkeypatch.setenv(INJECT_ENV, "7")
    slowdown = InjectedSlowdown.from_env(**kwargs)
    assert slowdown.count == 7
    slowdown()
    monkeypatch.setenv(INJECT_ENV, "lots")
    with pytest.raises(ValueError, match=INJECT_ENV):
        InjectedSlowdown.from_env(**kwargs)


def test_throughput_info_derives_rates_and_mfu_from_the_median():
    info = throughput_info(median_s=0.5, samples=32, tokens=2048, flops=10**11, calibration_flop_per_s=4 * 10**11)
    assert info == {"samples_per_s": 64.0, "tokens_per_s": 4096.0, "flops_per_step": 10**11,
                    "achieved_flops_per_s": 2 * 10**11, "mfu": 0.5}


BF16_CPU = DeviceInfo("cpu", "Intel Xeon (AMX)", cpu_count=8, cpu_bf16_supported=True)
AVX2_CPU = DeviceInfo("cpu", "AMD EPYC", cpu_count=2)


@pytest.mark.parametrize(("requested", "info", "run", "skipped"), [
    ("native", AVX2_CPU, ("fp32",), {"bf16"}),
    ("native", BF16_CPU, ("fp32", "bf16"), set()),
    ("native", DeviceInfo("cuda", "NVIDIA H100", cuda_bf16_supported=True), ("fp32", "bf16"), set()),
    ("native", DeviceInfo("cuda", "Tesla T4"), ("fp32", "fp16"), {"bf16"}),
    ("fp32", BF16_CPU, ("fp32",), set()),
    ("bf16, fp32,bf16", BF16_CPU, ("bf16", "fp32"), set()),
])
def test_benchmarks_run_the_native_precisions_or_the_ones_named(requested, info, run, skipped):
    from bench.harness import bench_precisions
    got_run, got_skipped = bench_precisions(requested, info)
    assert got_run == run and set(got_skipped) == skipped


@pytest.mark.parametrize(("requested", "message"), [
    ("bf16", "no native bf16"), ("fp16", "fp16 needs CUDA"), ("fp8", "not one of native"), (",", "at least one"),
])
def test_a_named_precision_the_hardware_lacks_is_refused_not_emulated(requested, message):
    from bench.harness import bench_precisions
    from chimera.errors import ChimeraError
    with pytest.raises(ChimeraError, match=message):
        bench_precisions(requested, AVX2_CPU)


def test_the_cpu_baseline_names_the_fp32_train_steps_the_benchmarks_now_produce():
    """The speed gate matches benchmarks by name; train steps are named per precision (fp32-<cell>)."""
    from pathlib import Path

    from bench.harness import transformer_cells
    from chimera.records.bench_report import load_bench_report
    baseline = load_bench_report(Path(__file__).resolve().parents[2] / "bench/baselines/cpu.json")
    steps = {b.name: b.precision for b in baseline.benchmarks if b.group == "train-step"}
    assert steps == {f"test_train_step[fp32-{cell}]": "fp32" for cell in transformer_cells()}


def test_fresh_accelerator_switches_precision_within_one_process():
    from bench.harness import fresh_accelerator
    bf16 = fresh_accelerator(choose_policy(BF16_CPU, precision="bf16"))
    assert bf16.mixed_precision == "bf16"
    assert fresh_accelerator(CPU_POLICY).mixed_precision == "no"  # and back, for the tests after this one
