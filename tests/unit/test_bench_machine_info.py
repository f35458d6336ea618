"""The benchmark JSON's machine description (bench/machine.py, bench/conftest.py's hooks): machine_info holds only
what stays the same on one machine, so pytest-benchmark's own comparison of two sessions runs without warnings;
what each session measured sits in a top-level `chimera` block that the speed gate and the summaries still read."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from pytest_benchmark import plugin as pb_plugin

from bench import conftest as bench_conftest
from bench.machine import VOLATILE_CPU_FIELDS
from bench.summarise import summarise
from chimera.gates.bench_gate import load_bench_file
from chimera.records.bench_report import load_bench_report
from tests.unit.test_bench_gate import STEPS, entry


class FakeConfig:
    """What the hooks read from pytest's config: options (none given: defaults) and session attributes."""

    def __init__(self, load: list[float], calibration_s: float) -> None:
        self.stash = pytest.Stash()
        self._chimera_load_at_start = load
        self._chimera_calibrations = {"fp32": {"size": 2048, "dtype": "fp32", "median_s": calibration_s,
                                               "flop_per_s": 2 * 2048**3 / calibration_s}}

    def getoption(self, name: str):
        return None


def session_json(path: Path, *, load: list[float], calibration_s: float, clock_hz: int, scale: float = 1.0) -> Path:
    """A benchmark JSON as a real session writes it: pytest-benchmark's machine_info through our hooks."""
    config = FakeConfig(load, calibration_s)
    machine_info = pb_plugin.pytest_benchmark_generate_machine_info()
    machine_info["cpu"] = {**machine_info["cpu"], "hz_actual": [clock_hz, 0], "hz_actual_friendly": f"{clock_hz} Hz"}
    bench_conftest.pytest_benchmark_update_machine_info(config, machine_info)
    benchmarks = [entry("test_calibration_gemm[fp32]", "calibration", calibration_s, dtype="fp32", precision="fp32")]
    benchmarks += [entry(f"test_train_step[fp32-{cell}]", "train-step", t * scale, cell=cell, precision="fp32")
                   for cell, t in STEPS.items()]
    for bench in benchmarks:  # what pytest-benchmark's tables need besides the median
        bench["stats"] |= {"mean": bench["stats"]["median"], "stddev": 0.001, "iqr": 0.001, "ops": 1.0,
                           "q1": 0.0, "q3": 0.0, "iqr_outliers": 0, "stddev_outliers": 0, "outliers": "0;0",
                           "ld15iqr": 0.0, "hd15iqr": 0.0, "total": 1.0, "iterations": 1}
        bench |= {"fullname": f"bench/x.py::{bench['name']}", "param": None, "params": None,
                  "options": {"disable_gc": False, "timer": "perf_counter", "min_rounds": 5, "max_time": 1.0,
                              "min_time": 5e-06, "warmup": False}}
    output = {"machine_info": machine_info, "commit_info": {}, "benchmarks": benchmarks,
              "datetime": "2026-11-30T00:00:00+00:00", "version": "5.3.1"}
    bench_conftest.pytest_benchmark_update_json(config, benchmarks, output)
    path.write_text(json.dumps(output), encoding="utf-8")
    return path


@pytest.fixture(scope="module")
def two_sessions(tmp_path_factory) -> tuple[Path, Path]:
    """Two sessions on this machine: different load, calibration GEMM and measured clock (files: read only)."""
    tmp_path = tmp_path_factory.mktemp("sessions")
    return (session_json(tmp_path / "0001_a.json", load=[0.2, 0.3, 0.4], calibration_s=0.110, clock_hz=2_400_000_000),
            session_json(tmp_path / "0002_b.json", load=[2.5, 1.9, 1.2], calibration_s=0.131, clock_hz=3_100_000_000,
                         scale=1.1))


class Recorder:
    def __init__(self) -> None:
        self.warnings: list[str] = []

    def warning(self, text: str, **kwargs) -> None:
        self.warnings.append(text)


def compare_warnings(saved: dict, current: dict) -> list[str]:
    """pytest-benchmark's own machine_info check, as `pytest --benchmark-compare` runs it."""
    logger = Recorder()
    session = type("Session", (), {"logger": logger, "storage": type("S", (), {"location": "x"})()})()
    pb_plugin.pytest_benchmark_compare_machine_info(config=None, benchmarksession=session,
                                                    machine_info=current["machine_info"], compared_benchmark=saved)
    return logger.warnings


def test_two_sessions_on_one_machine_have_identical_machine_info_so_compare_does_not_warn(two_sessions):
    a, b = (json.loads(p.read_text()) for p in two_sessions)
    assert a["machine_info"] == b["machine_info"]
    assert compare_warnings(a, b) == []
    assert a["chimera"]["load_average_at_start"] != b["chimera"]["load_average_at_start"]  # kept, outside


def test_the_old_layout_would_have_warned_so_the_check_can_fail(two_sessions):
    a, b = (json.loads(p.read_text()) for p in two_sessions)
    for data in (a, b):  # before: session values inside machine_info.chimera
        data["machine_info"]["chimera"] |= {k: v for k, v in data["chimera"].items() if k != "cpu_clock"}
    assert compare_warnings(a, b) and "machine_info is different" in compare_warnings(a, b)[0]


def test_pytest_benchmark_compare_reads_both_files_without_a_warning_line(two_sessions):
    done = subprocess.run([sys.executable, "-m", "pytest_benchmark", "compare", *map(str, two_sessions)],
                          capture_output=True, text=True, timeout=120, cwd=two_sessions[0].parent)
    output = done.stdout + done.stderr
    assert done.returncode == 0, output
    assert not [line for line in output.splitlines() if "warn" in line.lower() or "fail" in line.lower()], output
    assert output.count("test_train_step[fp32-fixed/dense]") == 2  # one row per file: it really compared them


def test_session_values_moved_out_of_machine_info_and_the_fingerprint_moved_in(two_sessions):
    report = load_bench_report(two_sessions[0])
    chimera = report.machine_info["chimera"]
    assert not set(VOLATILE_CPU_FIELDS) & set(report.machine_info["cpu"])
    assert {"load_average_at_start", "calibration_gemm", "calibration_gemms"}.isdisjoint(chimera)
    fingerprint = {"cpu_flags", "ram_gib", "gpu_count", "gpu_names", "cuda_driver", "cudnn_version", "torch_cuda"}
    assert fingerprint <= set(chimera)
    assert report.session.calibration_gemm["median_s"] == 0.110
    assert report.session.load_average_at_start == (0.2, 0.3, 0.4)
    assert report.to_json()["chimera"]["cpu_clock"]["hz_actual"] == [2_400_000_000, 0]  # kept, though not typed


def test_the_speed_gate_and_the_summary_still_read_what_they_need(two_sessions):
    new = load_bench_file(two_sessions[1])
    assert (new.profile, new.device, new.calibration_s) == ("full", "cpu", 0.131)
    assert "load average [0.2, 0.3, 0.4] →" in summarise(two_sessions[0]).splitlines()[0]
