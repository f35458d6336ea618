"""Benchmark session setup: device, shape profile, machine info, the calibration GEMM, test order.

    pytest bench --benchmark-only                              # full shapes (make bench-cpu)
    pytest bench --benchmark-only --bench-profile ci           # the short CI pass

Device: $CHIMERA_DEVICE (auto, cpu, cuda, mps; default auto) through chimera.train.device, with the
trainer's process settings applied before any benchmark runs. Shape profile: --bench-profile or
$CHIMERA_BENCH_PROFILE (full, ci; default full). The calibration GEMM is measured once per session
and every MFU figure divides by it, so MFU compares against the speed this machine had at the time.
Real AG News (only the time-to-quality benchmark trains on it): --data-dir, else $CHIMERA_DATA_DIR, else
../shared/data/ag_news when present (the Makefile's default); without it that benchmark skips.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import pytest
import torch
from accelerate import Accelerator

from bench.harness import GEMM_SIZE, gemm_flops, measure_gemm
from chimera.train.device import DeviceInfo, DevicePolicy, choose_policy, configure_process, cpu_name, probe_device
from chimera.train.trainer import build_accelerator

PROFILES = ("full", "ci")
PROFILE_ENV, DEVICE_ENV = "CHIMERA_BENCH_PROFILE", "CHIMERA_DEVICE"
DATA_ENV, REQUIRE_DATA_ENV = "CHIMERA_DATA_DIR", "CHIMERA_REQUIRE_DATA"
SHARED_DATA = Path(__file__).resolve().parents[2] / "shared" / "data" / "ag_news"  # as the Makefile's DATA_DIR


@dataclass(frozen=True)
class Rounds:
    """pedantic rounds per benchmark kind: (timed rounds, warm-up rounds)."""

    train_step: tuple[int, int]
    peer: tuple[int, int]
    gemm: tuple[int, int]
    data: tuple[int, int]


ROUNDS = {"full": Rounds(train_step=(15, 3), peer=(10, 3), gemm=(20, 3), data=(5, 1)),
          # ci: the speed gate's pass. Its steps are short (50-300 ms here), so 30 rounds cost ~30 s and
          # give medians steady enough for a 15% threshold (bench/README.md, gate proof)
          "ci": Rounds(train_step=(30, 3), peer=(4, 1), gemm=(30, 3), data=(3, 1))}
# Calibration first (MFU and the gate divide by it), then the train steps the peer and data
# benchmarks compare against; anything else keeps its place after these.
FILE_ORDER = ("test_bench_gemm.py", "test_bench_train_step.py", "test_bench_peer.py", "test_bench_data.py")


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption("--bench-profile", choices=PROFILES, default=None,
                     help=f"matrix profile whose shapes the benchmarks use (default ${PROFILE_ENV}, else full)")
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


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    rank = {name: i for i, name in enumerate(FILE_ORDER)}
    items.sort(key=lambda item: rank.get(item.path.name, len(FILE_ORDER)))  # stable: order within a file kept


def pytest_benchmark_update_machine_info(config: pytest.Config, machine_info: dict) -> None:
    """Adds what the numbers depend on to the JSON's machine_info (pytest-benchmark hook)."""
    info = _device_info()
    policy = choose_policy(info)
    calibration = getattr(config, "_chimera_calibration", None)
    machine_info["chimera"] = {
        "bench_profile": _profile(config),
        "device": info.type, "device_name": info.name, "mixed_precision": policy.mixed_precision,
        "cpu_name": cpu_name(), "cpu_count": info.cpu_count, "os_cpu_count": os.cpu_count(),
        "torch": torch.__version__, "torch_num_threads": torch.get_num_threads(),
        "torch_cpu_capability": torch.backends.cpu.get_cpu_capability(),
        "load_average_at_start": getattr(config, "_chimera_load_at_start", None),
        "load_average_at_end": _load_average(),
        "calibration_gemm": calibration,
    }


def pytest_sessionstart(session: pytest.Session) -> None:
    session.config._chimera_load_at_start = _load_average()


@pytest.fixture(scope="session")
def bench_profile(pytestconfig: pytest.Config) -> str:
    return _profile(pytestconfig)


@pytest.fixture(scope="session")
def bench_rounds(bench_profile: str) -> Rounds:
    return ROUNDS[bench_profile]


@pytest.fixture(scope="session", autouse=True)
def device_policy() -> DevicePolicy:
    """The trainer's device policy, applied to this process before the first benchmark (as `train` does)."""
    policy = choose_policy(_device_info())
    configure_process(policy)
    return policy


@pytest.fixture(scope="session")
def accelerator(device_policy: DevicePolicy) -> Accelerator:
    """One Accelerator for the session, created as `chimera.train.trainer.train` creates it."""
    return build_accelerator(device_policy)


@pytest.fixture(scope="session")
def calibration_gemm(pytestconfig: pytest.Config, accelerator: Accelerator) -> dict:
    """The fp32 calibration GEMM measured once in this session: the denominator of every MFU."""
    seconds = measure_gemm(accelerator.device, torch.float32)
    result = {"size": GEMM_SIZE, "dtype": "fp32", "median_s": seconds, "flop_per_s": gemm_flops() / seconds}
    pytestconfig._chimera_calibration = result
    return result


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
