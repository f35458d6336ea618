"""Benchmark session setup: device, shape profile, machine info, the calibration GEMM, test order.

    pytest bench --benchmark-only                              # full shapes (make bench-cpu)
    pytest bench --benchmark-only --bench-profile ci           # the short CI pass
    pytest bench --benchmark-only --bench-precision fp32       # one precision only

Device: $CHIMERA_DEVICE (auto, cpu, cuda, mps; default auto) through chimera.train.device, with the
trainer's process settings applied before any benchmark runs. Shape profile: --bench-profile or
$CHIMERA_BENCH_PROFILE (full, ci; default full). Precision: --bench-precision or $CHIMERA_BENCH_PRECISION
(native: fp32 plus the half precision the hardware runs natively, the default; or a comma-separated list):
benchmarks that take a `precision` argument (calibration GEMM, train step, BERT peer) run once per
precision, all of one precision before the next; the others run in the trainer's auto precision.
A precision the hardware lacks is listed as skipped with the reason. The calibration GEMM is measured
once per session and precision, and every MFU figure divides by the GEMM of its own precision, so MFU
compares against the speed this machine had at the time. Every benchmark records the peak memory of its
own run (`cell_memory`, bench/memory.py). machine_info.chimera describes the machine (stable across sessions),
the JSON's top-level `chimera` block what this session measured (bench/machine.py).
Real AG News (only the time-to-quality benchmark trains on it): --data-dir, else $CHIMERA_DATA_DIR, else
../shared/data/ag_news when present (the Makefile's default); without it that benchmark skips.
"""

from __future__ import annotations

import argparse
import inspect
import os
from dataclasses import dataclass
from pathlib import Path

import pytest
import torch
from accelerate import Accelerator

from bench.harness import TORCH_DTYPES, bench_precisions, fresh_accelerator, gemm_flops, gemm_size, measure_gemm
from bench.machine import machine_block, move_session_fields, session_block
from bench.memory import CellMemory, MemoryProbes
from chimera.errors import ChimeraError
from chimera.train.device import DeviceInfo, DevicePolicy, choose_policy, configure_process, probe_device
from chimera.train.energy import EnergyMeter, meter_for

PROFILES = ("full", "ci")
STEP_MODES_ENV, SWEEP_ENV = "CHIMERA_BENCH_STEP_MODES", "CHIMERA_BENCH_BATCH_SWEEP"
SWEEP_FACTORS = (1, 8, 64)
PROFILE_ENV, DEVICE_ENV, PRECISION_ENV = "CHIMERA_BENCH_PROFILE", "CHIMERA_DEVICE", "CHIMERA_BENCH_PRECISION"
DATA_ENV, REQUIRE_DATA_ENV = "CHIMERA_DATA_DIR", "CHIMERA_REQUIRE_DATA"
SHARED_DATA = Path(__file__).resolve().parents[2] / "shared" / "data" / "ag_news"  # as the Makefile's DATA_DIR


@dataclass(frozen=True)
class Rounds:
    """pedantic rounds per benchmark kind: (timed rounds, warm-up rounds)."""

    train_step: tuple[int, int]
    peer: tuple[int, int]
    gemm: tuple[int, int]
    data: tuple[int, int]


ROUNDS_ENV = "CHIMERA_BENCH_ROUNDS"  # "tiny": a few rounds each, to prove the benchmarks run (scripts/gpu_check.sh)
TINY_ROUNDS = Rounds(train_step=(2, 1), peer=(1, 0), gemm=(2, 1), data=(1, 0))
ROUNDS = {"full": Rounds(train_step=(15, 3), peer=(10, 3), gemm=(20, 3), data=(5, 1)),
          # ci: the speed gate's pass. Its steps are short (50-300 ms here), so 30 rounds cost ~30 s and
          # give medians steady enough for a 15% threshold (bench/README.md, gate proof)
          "ci": Rounds(train_step=(30, 3), peer=(4, 1), gemm=(30, 3), data=(3, 1))}
# Calibration first (MFU and the gate divide by it), then the train steps the peer and data
# benchmarks compare against; anything else keeps its place after these.
FILE_ORDER = ("test_bench_gemm.py", "test_bench_train_step.py", "test_bench_peer.py", "test_bench_data.py")
_CPU_CLOCK = pytest.StashKey[dict]()


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption("--bench-profile", choices=PROFILES, default=None,
                     help=f"matrix profile whose shapes the benchmarks use (default ${PROFILE_ENV}, else full)")
    parser.addoption("--bench-precision", default=None, metavar="native|P[,P...]",
                     help=f"precisions for the GEMM, train-step and peer benchmarks: native (fp32 and the "
                          f"hardware's native half precision) or a list of fp32, bf16, fp16 (default "
                          f"${PRECISION_ENV}, else native)")
    parser.addoption("--bench-step-modes", default=None, metavar="auto|M[,M...]",
                     help=f"step modes timed besides the device's own (auto: eager on CPU and MPS, graph on CUDA): "
                          f"a list of eager, compile, graph (default ${STEP_MODES_ENV}, else eager on CUDA to "
                          "compare, none elsewhere)")
    parser.addoption("--bench-batch-sweep", action=argparse.BooleanOptionalAction, default=None,
                     help=f"time each cell's step at the profile's batch x1, x8, x64 to show where the device "
                          f"saturates (default ${SWEEP_ENV}, else on for CUDA, off elsewhere and in CI)")
    parser.addoption("--data-dir", default=None,
                     help=f"real AG News folder for the time-to-quality benchmark (default ${DATA_ENV}, "
                          f"else {SHARED_DATA} when present)")


def _profile(config: pytest.Config) -> str:
    profile = config.getoption("--bench-profile") or os.environ.get(PROFILE_ENV) or "full"
    if profile not in PROFILES:
        raise pytest.UsageError(f"${PROFILE_ENV}={profile!r}: use one of {', '.join(PROFILES)}")
    return profile


def _device_info() -> DeviceInfo:
    return probe_device(os.environ.get(DEVICE_ENV, "auto") or "auto")


def _precisions(config: pytest.Config) -> tuple[tuple[str, ...], dict[str, str]]:
    """(precisions benchmarked, {precision left out: why}); a precision the hardware lacks asked for by
    name is a usage error (one line), not a silent skip."""
    requested = config.getoption("--bench-precision") or os.environ.get(PRECISION_ENV) or "native"
    try:
        return bench_precisions(requested, _device_info())
    except ChimeraError as exc:
        raise pytest.UsageError(str(exc)) from None


def extra_step_modes(config: pytest.Config) -> tuple[str, ...]:
    """Step modes timed besides the device's own (test_bench_train_step's test_train_step_in_mode)."""
    info = _device_info()
    own = choose_policy(info, step_mode="auto").step_mode
    raw = config.getoption("--bench-step-modes") or os.environ.get(STEP_MODES_ENV)
    wanted = ("eager",) if raw is None and info.type == "cuda" else tuple(
        m.strip() for m in (raw or "").split(",") if m.strip() and m.strip() != "auto")
    for mode in wanted:
        try:
            choose_policy(info, step_mode=mode)
        except ChimeraError as exc:
            raise pytest.UsageError(f"--bench-step-modes {raw}: {exc}") from None
    return tuple(m for m in dict.fromkeys(wanted) if m != own)


def batch_sweep(config: pytest.Config) -> tuple[int, ...]:
    """The batch-size factors of the sweep benchmark; () when it is off."""
    flag = config.getoption("--bench-batch-sweep")
    if flag is None:
        raw = os.environ.get(SWEEP_ENV)
        flag = _device_info().type == "cuda" if raw is None else raw.strip().lower() in ("1", "true", "on", "yes")
    return SWEEP_FACTORS if flag else ()


def _default_precision() -> str:
    return choose_policy(_device_info()).precision  # what `chimera train` runs without --precision


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    """One instance per precision for benchmarks whose function takes `precision`; left-out ones skip with why.
    Likewise per extra step mode (`step_mode`) and batch factor (`batch_factor`), skipped when none is asked."""
    parameters = inspect.signature(metafunc.function).parameters
    for name, values, why in (("step_mode", extra_step_modes(metafunc.config), "no extra step mode asked for "
                               "(--bench-step-modes)"),
                              ("batch_factor", batch_sweep(metafunc.config), "batch sweep off (--bench-batch-sweep)")):
        if name in parameters:
            metafunc.parametrize(name, list(values) or [pytest.param(None, marks=pytest.mark.skip(reason=why))],
                                 ids=(lambda v, n=name: f"x{v}" if n == "batch_factor" and v else str(v)))
    if "precision" not in parameters:
        return
    run, skipped = _precisions(metafunc.config)
    params = [*run, *(pytest.param(p, marks=pytest.mark.skip(reason=why)) for p, why in skipped.items())]
    metafunc.parametrize("precision", params, scope="session")


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    rank = {name: i for i, name in enumerate(FILE_ORDER)}
    default = _default_precision()
    order = {p: i for i, p in enumerate(dict.fromkeys([default, *TORCH_DTYPES]))}

    def precision_of(item: pytest.Item) -> str:
        callspec = getattr(item, "callspec", None)
        return callspec.params.get("precision", default) if callspec else default

    # All of one precision before the next (accelerate holds one precision per process), the default first;
    # within a precision, files in FILE_ORDER. Stable: order within a file kept.
    items.sort(key=lambda item: (order[precision_of(item)], rank.get(item.path.name, len(FILE_ORDER))))


def pytest_report_header(config: pytest.Config) -> str:
    run, skipped = _precisions(config)
    left_out = "".join(f"; {p} not benchmarked: {why}" for p, why in skipped.items())
    return f"chimera bench precisions: {', '.join(run)}{left_out}"


def pytest_benchmark_update_machine_info(config: pytest.Config, machine_info: dict) -> None:
    """Adds the machine and setup the numbers depend on to machine_info (pytest-benchmark hook); what
    changes from session to session goes to the JSON's top-level `chimera` block instead (bench/machine.py)."""
    info = _device_info()
    run, skipped = _precisions(config)
    config.stash[_CPU_CLOCK] = move_session_fields(machine_info) or config.stash.get(_CPU_CLOCK, {})
    machine_info["chimera"] = machine_block(
        profile=_profile(config), info=info, mixed_precision=choose_policy(info).mixed_precision, precisions=run,
        skipped=skipped, torch_version=torch.__version__, threads=torch.get_num_threads(),
        capability=torch.backends.cpu.get_cpu_capability())


def pytest_benchmark_update_json(config: pytest.Config, benchmarks: list, output_json: dict) -> None:
    """The session's own measurements, outside machine_info so that pytest-benchmark never compares them."""
    output_json["chimera"] = session_block(
        load_at_start=getattr(config, "_chimera_load_at_start", None), load_at_end=_load_average(),
        calibrations=getattr(config, "_chimera_calibrations", {}), cpu_clock=config.stash.get(_CPU_CLOCK, {}))


def pytest_sessionstart(session: pytest.Session) -> None:
    session.config._chimera_load_at_start = _load_average()


@pytest.fixture(autouse=True)
def cell_memory(request: pytest.FixtureRequest):
    """Peak memory of this benchmark alone (bench/memory.py) into its extra_info. Before: garbage and freed
    heap of earlier benchmarks released, peaks reset. After: the shared Accelerator lets go of the models,
    optimisers and loaders this benchmark prepared (accelerate's `free_memory`), so the next starts clean."""
    if "benchmark" not in request.fixturenames:
        yield
        return
    meter = CellMemory(MemoryProbes.for_device(_device_info().type)).start()
    yield
    fields = meter.stop()
    request.node.funcargs["benchmark"].extra_info.update(fields)
    if "accelerator" in request.node.funcargs:
        request.node.funcargs["accelerator"].free_memory()


@pytest.fixture(scope="session")
def bench_profile(pytestconfig: pytest.Config) -> str:
    return _profile(pytestconfig)


@pytest.fixture(scope="session")
def bench_tiny() -> bool:
    """$CHIMERA_BENCH_ROUNDS=tiny: prove the benchmarks run (smoke runs), not measure; long ones cut their budget."""
    return os.environ.get(ROUNDS_ENV) == "tiny"


@pytest.fixture(scope="session")
def bench_rounds(bench_profile: str, bench_tiny: bool) -> Rounds:
    return TINY_ROUNDS if bench_tiny else ROUNDS[bench_profile]


@pytest.fixture(scope="session")
def precision() -> str:
    """The precision of benchmarks not run per precision (data, MoE layer, time to quality): the trainer's
    auto. Benchmarks that take `precision` themselves are parametrized instead (pytest_generate_tests)."""
    return _default_precision()


@pytest.fixture(scope="session", autouse=True)
def device_policy(precision: str) -> DevicePolicy:
    """The trainer's device policy in `precision`, applied to this process (as `run_plan` does)."""
    policy = choose_policy(_device_info(), precision=precision)
    configure_process(policy)
    return policy


@pytest.fixture(scope="session")
def accelerator(device_policy: DevicePolicy) -> Accelerator:
    """The Accelerator of the current precision, created as `chimera.train.run.run_plan` creates it."""
    return fresh_accelerator(device_policy)


@pytest.fixture(scope="session")
def calibration_gemm(pytestconfig: pytest.Config, accelerator: Accelerator, precision: str) -> dict:
    """The calibration GEMM in `precision`, measured once per session: the denominator of MFU in that precision."""
    calibrations = pytestconfig.__dict__.setdefault("_chimera_calibrations", {})
    if precision not in calibrations:
        n = gemm_size(accelerator.device)
        seconds = measure_gemm(accelerator.device, TORCH_DTYPES[precision])
        calibrations[precision] = {"size": n, "dtype": precision, "median_s": seconds,
                                   "flop_per_s": gemm_flops(n) / seconds}
    return calibrations[precision]


@pytest.fixture(scope="session")
def data_dir(pytestconfig: pytest.Config) -> Path:
    """Real AG News, for benchmarks that train to a quality; skips without it, as tests/conftest.py does
    (a failure instead under $CHIMERA_REQUIRE_DATA=1, so a skipped benchmark never reads as a pass)."""
    raw = pytestconfig.getoption("--data-dir") or os.environ.get(DATA_ENV)
    folder = Path(raw) if raw else SHARED_DATA
    if folder.is_dir() and any(folder.glob("train*")):
        return folder
    reason = (f"real AG News not found ({folder}: no train file; pass --data-dir or set ${DATA_ENV} to a folder "
              "with train and test files)")
    if os.environ.get(REQUIRE_DATA_ENV) == "1":
        pytest.fail(f"{reason} but ${REQUIRE_DATA_ENV}=1")
    pytest.skip(reason)


@pytest.fixture(scope="session")
def energy_meter() -> EnergyMeter:
    """The benchmarked device's energy counter (chimera/train/energy.py: RAPL on CPU, NVML on CUDA), or why none."""
    return meter_for(_device_info().type)


@pytest.fixture(scope="session")
def step_medians() -> dict[str, float]:
    """Median train-step seconds per cell, filled by test_bench_train_step for later benchmarks."""
    return {}


_SUMMARY = pytest.StashKey[list[str]]()


@pytest.fixture(scope="session")
def bench_summary(pytestconfig: pytest.Config) -> list[str]:
    """Lines (e.g. derived ratios) to print in a "bench summary" section after the benchmark tables."""
    return pytestconfig.stash.setdefault(_SUMMARY, [])


@pytest.hookimpl(trylast=True)  # after pytest-benchmark's tables
def pytest_terminal_summary(terminalreporter, exitstatus: int, config: pytest.Config) -> None:
    lines = config.stash.get(_SUMMARY, [])
    if lines:
        terminalreporter.section("bench summary")
        for line in lines:
            terminalreporter.write_line(line)


def _load_average() -> list[float] | None:
    try:
        return [round(x, 2) for x in os.getloadavg()]
    except OSError:
        return None
