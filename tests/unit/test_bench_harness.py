"""The benchmark harness times the recipe's own step on exact-FLOP batches (no timing asserted here)."""

from __future__ import annotations

import math

import pytest
import torch

from bench.harness import (
    INJECT_ENV,
    InjectedSlowdown,
    StepBench,
    energy_summary,
    pedantic_with_energy,
    synthetic_batch,
    throughput_info,
)
from chimera.flops import model_train_step_flops
from chimera.matrix import load_matrix
from chimera.train.device import DeviceInfo, choose_policy
from chimera.train.energy import EnergyMeter
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


class _Benchmark:
    """pytest-benchmark's fixture as pedantic_with_energy uses it: enabled, and pedantic calling the step per round."""

    def __init__(self, *, enabled: bool = True) -> None:
        self.enabled = enabled

    def pedantic(self, step, *, rounds, warmup_rounds, iterations):
        for _ in range(warmup_rounds + (rounds if self.enabled else 1)):
            step()


class _PerStep(EnergyMeter):
    """A counter at 3 J per step taken, so joules per step says which steps fell inside the span."""

    def __init__(self) -> None:
        super().__init__("rapl", [], scope="RAPL package-0: test")
        self.steps = 0

    def joules(self) -> float:
        return 3.0 * self.steps


def test_joules_per_step_span_the_timed_rounds_only_not_the_warm_up():
    meter = _PerStep()
    steps_before = []

    def step():
        meter.steps += 1 + 9 * (len(steps_before) < 2)  # the two warm-up steps cost 10x: they must not count
        steps_before.append(1)

    energy = pedantic_with_energy(_Benchmark(), step, rounds=5, warmup=2, meter=meter)
    assert energy == {"energy_j_per_step": 3.0, "energy_source": "rapl", "energy_scope": "RAPL package-0: test"}
    assert len(steps_before) == 7


def test_no_counter_gives_the_reason_and_a_disabled_benchmark_measures_nothing():
    none = EnergyMeter.none("no RAPL domain under /sys/class/powercap: it does not exist")
    assert pedantic_with_energy(_Benchmark(), lambda: None, rounds=3, warmup=1, meter=none) == {
        "energy_unavailable": "no RAPL domain under /sys/class/powercap: it does not exist"}
    assert pedantic_with_energy(_Benchmark(enabled=False), lambda: None, rounds=3, warmup=1, meter=_PerStep()) == {}


def test_the_bench_summary_says_joules_per_step_or_once_why_not():
    summary: list[str] = []
    measured = {"energy_j_per_step": 12.345, "energy_source": "rapl", "energy_scope": "RAPL package-0: whole"}
    for name in ("test_train_step[fp32-fixed/dense]", "test_train_step[fp32-fixed/moe]"):
        summary += energy_summary(summary, name, measured)
    assert summary == ["energy counted by rapl: RAPL package-0: whole",
                       "energy: 12.35 J/step  test_train_step[fp32-fixed/dense]",
                       "energy: 12.35 J/step  test_train_step[fp32-fixed/moe]"]
    unmeasured: list[str] = []
    for _ in range(2):
        unmeasured += energy_summary(unmeasured, "x", {"energy_unavailable": "no RAPL package domain under /p"})
    assert unmeasured == ["energy: unavailable: no RAPL package domain under /p"]
    assert energy_summary([], "x", {}) == []
