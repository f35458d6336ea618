"""A pytest-benchmark JSON of this suite as markdown tables: the numbers bench/README.md and README.md report.

    python bench/summarise.py bench/results/cpu/bench.json            # every benchmark (bench/README.md)
    python bench/summarise.py --cells bench/results/cpu/bench.json    # one row per cell (README's speed table)
    python bench/summarise.py --ttq bench/results/cpu/bench.json      # time to quality, ours vs the peer (README)

Every benchmark: median and IQR (ms), samples/s, MFU, peak memory of that benchmark alone (CPU RSS, and
CUDA's or MPS's own figure where it ran there; bench/memory.py), and the figure its goal is about
(speed-up over the BERT peer, data-pipeline rate over the step's consumption, MoE ratios,
time-to-quality ratio at val acc 0.75), then the machine: CPU, threads, torch, load average at start
and end. `--cells`: the train steps only, one row per cell and precision, with the BERT peer's speed-up.
`--ttq`: the time-to-quality benchmark, one row per target. scripts/readme_tables.py holds the README's
tables to `cells_table` and `ttq_table`.
The file is read by chimera.records.bench_report (standard library only: no torch needed).
"""

from __future__ import annotations

import sys
from collections.abc import Mapping
from pathlib import Path

from chimera.errors import ChimeraError
from chimera.records.bench_report import BenchEntry, BenchMemory, BenchReport, load_bench_report

GOAL_FIELDS = ("speedup_vs_peer", "data_to_step_ratio", "top2_vs_2x_dense", "top2_vs_dense_2ff",
               "mixtral_eager_speedup", "mixtral_grouped_mm_speedup", "ratio_at_0.75")
MEMORY_NOTE = ("Memory: peak RSS of the process while that benchmark ran (its own peak, reset at its start; "
               "in brackets how much it grew over the RSS at its start, i.e. the benchmark's own model, "
               "optimiser state, activations and batches over the interpreter, torch and what the session "
               "keeps); on CUDA and MPS the device's own peak follows (CUDA: max allocated / max reserved; "
               "MPS: driver memory).")


def _fmt(value, spec: str) -> str:
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


def _load(value: tuple[float, ...] | None) -> str:
    """A load average as the JSON wrote it: `[1.2, 1.0, 0.9]`, or `None`."""
    return "None" if value is None else str(list(value))


def _header_line(report: BenchReport) -> str:
    machine, session = report.machine, report.session
    return (f"`{report.path}`: {machine.cpu_name or '?'}, {_or_q(machine.torch_num_threads)} threads, torch "
            f"{machine.torch or '?'}, profile {machine.profile or '?'}, load average "
            f"{_load(session.load_average_at_start)} → {_load(session.load_average_at_end)}")


def _or_q(value) -> str:
    return "?" if value is None else str(value)


def summarise(path: Path) -> str:
    report = load_bench_report(path)
    lines = [_header_line(report), "",
             "| benchmark | median ms | IQR ms | samples/s | MFU | peak memory MiB | goal figure |",
             "|---|---|---|---|---|---|---|"]
    shown: dict[str, float] = {}  # the MoE cases carry the ratios known so far: print each once
    for bench in report.benchmarks:
        fresh = {k: v for k in GOAL_FIELDS if (v := bench.number(k)) is not None
                 and not (k.startswith(("top2", "mixtral")) and shown.get(k) == v)}
        shown.update(fresh)
        goal = ", ".join(f"{k} {v:.2f}" for k, v in fresh.items())
        if bench.gflop_per_s is not None:
            goal = f"{bench.gflop_per_s:.0f} GFLOP/s" + (f", {goal}" if goal else "")
        median_ms, iqr_ms = _median_s(report, bench) * 1e3, (bench.iqr_s or 0) * 1e3
        lines.append(f"| {bench.name} | {median_ms:.1f} | {_fmt(iqr_ms, '.1f')} | "
                     f"{_fmt(bench.samples_per_s, ',.0f')} | {_fmt(bench.mfu, '.0%')} | "
                     f"{memory_text(bench.memory)} | {goal} |")
    return "\n".join([*lines, "", MEMORY_NOTE])


def _median_s(report: BenchReport, bench: BenchEntry) -> float:
    if bench.median_s is None:
        raise ChimeraError(f"{report.path}: {bench.name} has no stats.median (was it run with --benchmark-disable?)")
    return bench.median_s


def cells_table(report: BenchReport) -> list[str]:
    """README's speed table: one row per train-step cell and precision; the peer's speed-up where it ran."""
    peer = {(b.precision, b.cell): b.speedup_vs_peer for b in report.benchmarks if b.speedup_vs_peer is not None}
    lines = [f"| cell | precision | step | samples/s | {_mfu_header(report)} | peak memory MiB | "
             "vs HF `BertForSequenceClassification` |", "|---|---|---|---|---|---|---|"]
    for bench in report.benchmarks:
        if bench.group != "train-step" or bench.cell is None:
            continue
        speedup = peer.get((bench.precision, bench.cell))
        lines.append(f"| {bench.cell} | {bench.precision or ''} | {_median_s(report, bench) * 1e3:.0f} ms | "
                     f"{_fmt(bench.samples_per_s, ',.0f')} | {_fmt(bench.mfu, '.0%')} | "
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


def summarise_cells(path: Path) -> str:
    report = load_bench_report(path)
    return "\n".join([_header_line(report), "", *cells_table(report), "", MEMORY_NOTE])


def ttq_table(report: BenchReport) -> list[str]:
    """README's time-to-quality table: per target, each side's step, wall and optimiser seconds (both clocks
    count evaluations; bench/ttq_compare.py), and the peer's wall time over ours."""
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
    return f"{step}, {_fmt(wall_s, '.1f') or '?'} ({_fmt(train_s, '.1f') or '?'})"


def summarise_ttq(path: Path) -> str:
    return "\n".join(ttq_table(load_bench_report(path)))


if __name__ == "__main__":
    args = sys.argv[1:]
    flag = args[0] if args[:1] in (["--cells"], ["--ttq"]) else None
    if len(args) != 1 + bool(flag):
        sys.exit("usage: python bench/summarise.py [--cells | --ttq] BENCH.json")
    render = {"--cells": summarise_cells, "--ttq": summarise_ttq, None: summarise}[flag]
    try:
        print(render(Path(args[-1])))
    except ChimeraError as exc:
        sys.exit(f"summarise: error: {exc}")
