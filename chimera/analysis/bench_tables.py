"""A pytest-benchmark JSON of this suite as the markdown tables the docs show: results in, table lines out.

`cells_table`: one row per train-step cell and precision (step, samples/s, MFU, peak memory, the BERT
peer's speed-up); `ttq_table`: the time-to-quality benchmark, one row per target. bench/summarise.py
prints them, and chimera/analysis/doc_tables.py holds the tables in README.md and docs/ to them. The file is
read by chimera.records.bench_report (standard library only: no torch needed).
"""

from __future__ import annotations

from collections.abc import Mapping

from chimera.errors import ChimeraError
from chimera.records.bench_report import BenchEntry, BenchMemory, BenchReport


def format_or_blank(value, spec: str) -> str:
    """`value` formatted by `spec`; blank where it was not measured."""
    return "" if value is None else format(value, spec)


def memory_text(memory: BenchMemory) -> str:
    """`RSS peak (+growth) MiB`, then the device's own peak; blank when nothing was measured."""
    if not memory.measured_alone:  # files from before per-benchmark memory: the old process-wide figure
        old = memory.peak_memory_mib
        return "" if old is None else f"{old:,.0f} (process high-water mark)"
    text = f"{memory.cpu_rss_peak_mib:,.0f} (+{memory.cpu_rss_growth_mib or 0:,.0f})"
    if memory.cuda_max_allocated_mib is not None:
        text += f"; CUDA {memory.cuda_max_allocated_mib:,.0f} / {memory.cuda_max_reserved_mib or 0:,.0f}"
    if memory.mps_driver_peak_mib is not None:
        text += f"; MPS {memory.mps_driver_peak_mib:,.0f}"
    return text


def median_s(report: BenchReport, bench: BenchEntry) -> float:
    """The benchmark's median in seconds; ChimeraError when the file has none."""
    if bench.median_s is None:
        raise ChimeraError(f"{report.path}: {bench.name} has no stats.median (was it run with --benchmark-disable?)")
    return bench.median_s


def cells_table(report: BenchReport) -> list[str]:
    """The speed table: one row per train-step cell and precision; the peer's speed-up where it ran."""
    peer = {(b.precision, b.cell): b.speedup_vs_peer for b in report.benchmarks if b.speedup_vs_peer is not None}
    lines = [f"| cell | precision | step | samples/s | {_mfu_header(report)} | peak memory MiB | "
             "vs HF `BertForSequenceClassification` |", "|---|---|---|---|---|---|---|"]
    for bench in report.benchmarks:
        if bench.group != "train-step" or bench.cell is None:
            continue
        speedup = peer.get((bench.precision, bench.cell))
        lines.append(f"| {bench.cell} | {bench.precision or ''} | {median_s(report, bench) * 1e3:.0f} ms | "
                     f"{format_or_blank(bench.samples_per_s, ',.0f')} | {format_or_blank(bench.mfu, '.0%')} | "
                     f"{memory_text(bench.memory)} | {'' if speedup is None else f'{speedup:.2f}×'} |")
    return lines


def _mfu_header(report: BenchReport) -> str:
    """MFU is against the session's own calibration GEMM in the row's precision (bench/conftest.py): name each
    one the table's rows divide by, and its rate."""
    precisions = list(dict.fromkeys(b.precision for b in report.benchmarks if b.group == "train-step" and b.precision))
    gemms = [report.session.calibration_gemms.get(p) for p in precisions]
    if len(gemms) < 2 or not all(isinstance(g, Mapping) for g in gemms):
        gemms = [report.session.calibration_gemm]
    rates = []
    for gemm in gemms:
        size, rate = gemm.get("size"), gemm.get("flop_per_s")
        if not isinstance(size, int) or not isinstance(rate, (int, float)):
            return "MFU"
        rates.append((gemm.get("dtype", "fp32"), rate / 1e9))
    if len(rates) == 1:
        return f"MFU (vs this session's {size}² {rates[0][0]} GEMM, {rates[0][1]:.0f} GFLOP/s)"
    named = ", ".join(f"{dtype} {rate:.0f}" for dtype, rate in rates)
    return f"MFU (vs this session's {size}² GEMM in the row's precision: {named} GFLOP/s)"


def ttq_table(report: BenchReport) -> list[str]:
    """The time-to-quality table: per target, each side's step, wall and optimiser seconds (both clocks count
    evaluations; bench/ttq_compare.py), and the peer's wall time over ours."""
    entries = [b for b in report.benchmarks if b.group == "time-to-quality"]
    if len(entries) != 1:
        raise ChimeraError(f"{report.path}: {len(entries)} time-to-quality benchmarks, expected 1 "
                           "(pytest bench/test_bench_ttq.py --benchmark-only)")
    targets = entries[0].extra_info.get("targets")
    if not isinstance(targets, Mapping) or not targets:
        raise ChimeraError(f"{report.path}: {entries[0].name} has no extra_info.targets (bench/ttq_compare.py)")
    lines = ["| target val acc | ours: step, wall s (optimiser s) | peer: step, wall s (optimiser s) | "
             "peer ÷ ours, wall |", "|---|---|---|---|"]
    for row in targets.values():
        ratio = row.get("wall_ratio")
        lines.append(f"| {row['target']:.2f} | {_ttq_side(row, 'ours')} | {_ttq_side(row, 'peer')} | "
                     f"{'n/a' if ratio is None else f'**{ratio:.2f}×**'} |")
    return lines


def _ttq_side(row: Mapping, side: str) -> str:
    step, wall_s, train_s = row.get(f"{side}_step"), row.get(f"{side}_wall_s"), row.get(f"{side}_train_s")
    if step is None:
        return "not reached"
    return f"{step}, {format_or_blank(wall_s, '.1f') or '?'} ({format_or_blank(train_s, '.1f') or '?'})"
