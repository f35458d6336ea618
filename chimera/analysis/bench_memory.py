"""Peak memory per cell from pytest-benchmark JSON, for the report: results in, a table out.

Each train-step benchmark's `extra_info` carries the peak memory of that benchmark alone
(bench/memory.py): `cpu_rss_peak_mib` (peak RSS while it ran, the kernel's high-water mark reset at
its start), `cpu_rss_growth_mib` (over the RSS at its start), and on a GPU `cuda_max_allocated_mib` /
`cuda_max_reserved_mib` or `mps_driver_peak_mib`. Files written before that carry only a process-wide
`peak_memory_mib` and are left out. Files are read by chimera.records.bench_report (standard library only).
"""

from __future__ import annotations

import statistics
from collections.abc import Iterator
from pathlib import Path

from chimera.records.bench_report import BenchEntry, find_bench_reports

FIELDS = ("cpu_rss_peak_mib", "cpu_rss_growth_mib", "cuda_max_allocated_mib", "cuda_max_reserved_mib",
          "mps_driver_peak_mib")
HEADER = ("cell", "precision", "peak RSS MiB", "RSS growth MiB", "CUDA max allocated / reserved MiB",
          "MPS driver peak MiB", "benchmark runs")
EXPLANATION = ("Peak memory of one training-step benchmark, measured over that benchmark alone (bench/memory.py): "
               "peak RSS is the process's resident memory at its highest while the cell was built and stepped "
               "(the kernel's high-water mark reset at its start), so it includes the interpreter and torch; "
               "RSS growth is what the cell added over the RSS at its start (its model, optimiser state, "
               "activations and batch). CUDA and MPS columns are the device's own peak. Median over the "
               "benchmark runs found; a dash where the figure was not measured.")


def train_step_entries(bench_dir: Path, profiles: set[str] | None = None,
                       unreadable: list[Path] | None = None) -> Iterator[BenchEntry]:
    """Every suite train-step benchmark under `bench_dir` (group "train-step": not the BERT peer, the data
    pipeline or an MoE layer, which also name a cell), at one of `profiles`' shapes (None: any), never with
    the gate proof's injected slowdown. Files that cannot be read go to `unreadable`."""
    for report in find_bench_reports(bench_dir, unreadable):
        for entry in report.benchmarks:
            if entry.group != "train-step" or entry.injected_matmuls:
                continue
            if profiles is None or entry.profile in profiles:
                yield entry


def bench_memory(bench_dir: Path, profiles: set[str] | None = None) -> dict[tuple[str, str], dict[str, float]]:
    """{(cell, precision): {field: median MiB, "runs": count}} over every train-step benchmark that measured
    its own peak (see `train_step_entries` for which)."""
    found: dict[tuple[str, str], dict[str, list[float]]] = {}
    runs: dict[tuple[str, str], int] = {}
    for entry in train_step_entries(bench_dir, profiles):
        if not entry.memory.measured_alone:
            continue
        key = (str(entry.cell), entry.precision or "fp32")
        runs[key] = runs.get(key, 0) + 1
        values = found.setdefault(key, {})
        for name in FIELDS:
            value = getattr(entry.memory, name)
            if value is not None:
                values.setdefault(name, []).append(value)
    return {key: {**{name: statistics.median(v) for name, v in values.items()}, "runs": runs[key]}
            for key, values in found.items()}


def memory_rows(memory: dict[tuple[str, str], dict[str, float]], dash: str = "—") -> list[list[str]]:
    def mib(values: dict, name: str) -> str:
        return f"{values[name]:,.0f}" if name in values else dash

    rows = []
    for (cell, precision), v in memory.items():
        cuda = (f"{mib(v, 'cuda_max_allocated_mib')} / {mib(v, 'cuda_max_reserved_mib')}"
                if "cuda_max_allocated_mib" in v else dash)
        rows.append([cell, precision, mib(v, "cpu_rss_peak_mib"), mib(v, "cpu_rss_growth_mib"), cuda,
                     mib(v, "mps_driver_peak_mib"), str(int(v["runs"]))])
    return rows
