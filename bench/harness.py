"""What the benchmarks share: the recipe's step on synthetic batches, the calibration GEMM.

`StepBench.for_config` makes the run's plan (chimera.train.plan.make_plan) and its recipe
(`Recipe.for_benchmark`: model, AdamW, schedule built and prepared as a run builds them), and its `step`
calls `Recipe.step`, so a benchmark times the step training runs and builds nothing of its own.
Bench-only code: nothing under chimera/ imports it.
"""

from __future__ import annotations

import os
import statistics
import tempfile
import time
from dataclasses import asdict, dataclass, replace
from pathlib import Path

import torch
from accelerate import Accelerator
from accelerate.state import AcceleratorState, GradientState

from chimera.config import RunConfig
from chimera.errors import ChimeraError
from chimera.flops import matmul_flops, model_train_step_flops
from chimera.matrix import load_matrix
from chimera.train.device import DeviceInfo, DevicePolicy, native_precisions, precision_problem
from chimera.train.energy import EnergyMeter
from chimera.train.plan import make_plan
from chimera.train.recipe import Recipe
from chimera.train.run import build_accelerator
from chimera.train.run_setup import NUM_CLASSES

# The calibration GEMM, (n, n) @ (n, n), 2·n³ FLOPs, sized so that it measures the device's practical peak:
# 2048² runs 40-70 ms on a 2-core CPU, but took 0.1 ms on an H200 (launch-bound, a meaningless peak).
GEMM_SIZES = {"cpu": 2048, "mps": 4096, "cuda": 8192}
GEMM_SIZE = GEMM_SIZES["cpu"]
INJECT_ENV = "CHIMERA_BENCH_INJECT_SLOWDOWN"
TORCH_DTYPES = {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}  # GEMM dtype per precision
FIRST_TOKEN_ID = 3  # ids 0-2 are [PAD], [UNK], [CLS] (chimera.data.tokenizer)


def synchronize(device: torch.device) -> None:
    """Wait for queued kernels, so a timer around a step measures the step (no-op on CPU)."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    elif device.type == "mps":
        torch.mps.synchronize()


def bench_precisions(requested: str, info: DeviceInfo) -> tuple[tuple[str, ...], dict[str, str]]:
    """(precisions to benchmark, {precision left out: why}) for --bench-precision `requested`.

    "native": fp32 and the half precision `info` runs natively (chimera.train.device.native_precisions);
    else a comma-separated list, each of which must be legal on `info` (ChimeraError naming what it lacks):
    emulated bf16 would measure the emulation, not the hardware.
    """
    if requested.strip() == "native":
        return native_precisions(info)
    wanted = tuple(dict.fromkeys(p.strip() for p in requested.split(",") if p.strip()))
    for precision in wanted:
        if precision not in TORCH_DTYPES:
            raise ChimeraError(f"--bench-precision {requested}: {precision!r} is not one of native, "
                               f"{', '.join(TORCH_DTYPES)} (comma-separated)")
        problem = precision_problem(info, precision)
        if problem is not None:
            raise ChimeraError(f"--bench-precision {requested}: {problem}")
    if not wanted:
        raise ChimeraError(f"--bench-precision {requested!r}: name native or at least one of {', '.join(TORCH_DTYPES)}")
    return wanted, {}


def fresh_accelerator(policy: DevicePolicy) -> Accelerator:
    """`build_accelerator(policy)` after clearing accelerate's process-wide state: accelerate keeps one
    mixed precision per process and refuses a second, so the benchmarks (one precision after another,
    in one process) start each precision's Accelerator afresh (as accelerate's own tests reset it)."""
    AcceleratorState._reset_state(reset_partial_state=True)
    GradientState._reset_state()
    return build_accelerator(policy)


def gemm_size(device: torch.device) -> int:
    """The calibration GEMM's n on this kind of device (GEMM_SIZES)."""
    return GEMM_SIZES[device.type]


def gemm_operands(device: torch.device, dtype: torch.dtype, n: int = GEMM_SIZE) -> tuple[torch.Tensor, ...]:
    generator = torch.Generator().manual_seed(0)
    a, b = (torch.randn(n, n, generator=generator).to(device=device, dtype=dtype) for _ in range(2))
    return a, b, torch.empty(n, n, device=device, dtype=dtype)


def gemm_flops(n: int = GEMM_SIZE) -> int:
    return matmul_flops(n, n, n)


def measure_gemm(device: torch.device, dtype: torch.dtype = torch.float32, *, repeats: int = 10,
                 warmup: int = 3) -> float:
    """Median seconds of one calibration GEMM of this device's size, timed with perf_counter (the session
    fixture's figure)."""
    a, b, out = gemm_operands(device, dtype, gemm_size(device))
    times = []
    for i in range(warmup + repeats):
        start = time.perf_counter()
        torch.mm(a, b, out=out)
        synchronize(device)
        if i >= warmup:
            times.append(time.perf_counter() - start)
    return statistics.median(times)


def synthetic_batch(config: RunConfig, device: torch.device, *, seed: int = 0) -> dict[str, torch.Tensor]:
    """batch_size × max_length ids from a fixed generator; every position is a real token ([CLS] first),
    so the FLOP count of chimera.flops is exact for it."""
    batch, length = config.train.batch_size, config.data.max_length
    generator = torch.Generator().manual_seed(seed)
    ids = torch.randint(FIRST_TOKEN_ID, config.data.vocab_size, (batch, length), generator=generator)
    ids[:, 0] = FIRST_TOKEN_ID - 1  # [CLS]
    return {"input_ids": ids.to(device), "attention_mask": torch.ones(batch, length, dtype=torch.bool, device=device),
            "labels": torch.randint(0, NUM_CLASSES, (batch,), generator=generator).to(device)}


class InjectedSlowdown:
    """Test-only extra work for proving the speed gate: N matmuls (B·T, d) @ (d, d) after every step.

    Sized like the model's own matmuls, one costs a similar share of a step at every matrix shape
    (its FLOPs are 2d / (3L·(24d + 4T)) of a dense step's): N = 100 added 32-73% per cell on this
    2-core CPU (bench/README.md), well past the gate's 15%. Set by $CHIMERA_BENCH_INJECT_SLOWDOWN;
    0 or unset adds nothing.
    """

    def __init__(self, count: int, *, rows: int, d_model: int, device: torch.device) -> None:
        self.count = count
        generator = torch.Generator().manual_seed(1)
        self.x = torch.randn(rows, d_model, generator=generator).to(device)
        self.w = torch.randn(d_model, d_model, generator=generator).to(device) / d_model**0.5
        self.out = torch.empty(rows, d_model, device=device)

    @classmethod
    def from_env(cls, **kwargs) -> InjectedSlowdown:
        raw = os.environ.get(INJECT_ENV, "0") or "0"
        if not raw.isdigit():
            raise ValueError(f"${INJECT_ENV}={raw!r}: expected a number of matmuls (e.g. 100)")
        return cls(int(raw), **kwargs)

    def __call__(self) -> None:
        for _ in range(self.count):
            torch.mm(self.x, self.w, out=self.out)


@dataclass
class StepBench:
    """One cell's training step, ready to time: `step()` is one call of the recipe's `step`."""

    config: RunConfig
    accelerator: Accelerator
    recipe: Recipe
    batch: dict[str, torch.Tensor]
    slowdown: InjectedSlowdown

    @classmethod
    def for_config(cls, config: RunConfig, policy: DevicePolicy, accelerator: Accelerator, *,
                   step_mode: str = "auto", batch: dict[str, torch.Tensor] | None = None) -> StepBench:
        """The cell's plan in `policy`'s precision and `step_mode` (auto: the device's), and its recipe
        (`accelerator` from `chimera.train.run.build_accelerator(policy)`); `batch` (default: synthetic,
        every position a real token) is what each step trains on."""
        pinned = replace(config, device=policy.device,
                         train=replace(config.train, precision=policy.precision, step_mode=step_mode))
        plan = make_plan(pinned, out_dir=Path(tempfile.gettempdir()))  # nothing is written: no run folder
        if replace(plan.policy, step_mode=policy.step_mode) != policy:
            raise ChimeraError(f"{config.cell}: the run's policy {plan.policy} differs from the benchmark's {policy}")
        torch.manual_seed(config.seed)
        recipe = Recipe.for_benchmark(plan, accelerator)
        recipe.model.train()
        device = accelerator.device
        rows = config.train.batch_size * config.data.max_length
        batch = synthetic_batch(config, device) if batch is None else {k: v.to(device) for k, v in batch.items()}
        return cls(config=plan.config, accelerator=accelerator, recipe=recipe, batch=batch,
                   slowdown=InjectedSlowdown.from_env(rows=rows, d_model=config.model.d_model, device=device))

    @property
    def step_mode(self) -> str:
        return self.recipe.plan.policy.step_mode

    def step(self) -> float | torch.Tensor:
        loss = self.recipe.step(self.batch)
        self.slowdown()
        synchronize(self.accelerator.device)
        return loss

    @property
    def samples(self) -> int:
        return self.batch["input_ids"].shape[0] * self.accelerator.num_processes

    @property
    def tokens(self) -> int:
        """Real (non-padding) tokens per step, over every process."""
        return int(self.batch["attention_mask"].sum()) * self.accelerator.num_processes

    def flops(self) -> int:
        """Matmul FLOPs of the step as its batch's shape computes them (padding included: it is computed)."""
        batch, length = self.batch["input_ids"].shape
        return self.accelerator.num_processes * model_train_step_flops(
            **asdict(self.config.model), batch=batch, seq_len=length)


def pedantic_with_energy(benchmark, step, *, rounds: int, warmup: int, meter: EnergyMeter) -> dict:
    """`benchmark.pedantic(step, ...)` with `meter` read just before and after the timed rounds (the warm-up runs
    first, outside that span); extra_info's energy fields: joules per step and what they include, or why none."""
    if benchmark.enabled:
        for _ in range(warmup):
            step()
    start = meter.joules()
    benchmark.pedantic(step, rounds=rounds, warmup_rounds=0, iterations=1)
    end = meter.joules()
    if start is None or end is None:
        return {"energy_unavailable": meter.unavailable}
    if not benchmark.enabled:  # --benchmark-disable: one untimed call, nothing measured
        return {}
    return {"energy_j_per_step": (end - start) / rounds, "energy_source": meter.source, "energy_scope": meter.scope}


def energy_summary(summary: list[str], name: str, energy: dict) -> list[str]:
    """Bench-summary lines to add for one benchmark's energy fields: "energy: N J/step" (after a line saying what
    the joules include, once), or "energy: unavailable: <reason>" once for the session."""
    if "energy_j_per_step" in energy:
        scope = f"energy counted by {energy['energy_source']}: {energy['energy_scope']}"
        return [*([scope] if scope not in summary else []), f"energy: {energy['energy_j_per_step']:.4g} J/step  {name}"]
    line = f"energy: unavailable: {energy['energy_unavailable']}" if "energy_unavailable" in energy else None
    return [line] if line and line not in summary else []


def throughput_info(*, median_s: float, samples: int, tokens: int, flops: int, calibration_flop_per_s: float) -> dict:
    """Derived figures for extra_info from a median step time."""
    achieved = flops / median_s
    return {"samples_per_s": samples / median_s, "tokens_per_s": tokens / median_s, "flops_per_step": flops,
            "achieved_flops_per_s": achieved, "mfu": achieved / calibration_flop_per_s}


def transformer_cells(profile: str = "full") -> list[str]:
    """The matrix cells the step benchmarks time: the transformers, not the linear reference."""
    matrix = load_matrix()
    return [cell for cell in matrix.cells if matrix.resolve(cell, profile).model.arch == "transformer"]
