"""A pytest-benchmark JSON of this suite as markdown tables: the numbers bench/README.md and docs/performance.md report.

    python bench/summarise.py bench/results/cpu/bench.json            # every benchmark (bench/README.md)
    python bench/summarise.py --cells bench/results/cpu/bench.json    # one row per cell (docs' speed tables)
    python bench/summarise.py --ttq bench/results/cpu/bench.json      # time to quality, ours vs the peer

Every benchmark: median and IQR (ms), samples/s, MFU, peak memory of that benchmark alone (CPU RSS, and
CUDA's or MPS's own figure where it ran there; bench/memory.py), and the figure its goal is about
(speed-up over the BERT peer, data-pipeline rate over the step's consumption, MoE ratios,
time-to-quality ratio at val acc 0.75), then the machine: CPU, threads, torch, load average at start
and end. `--cells`: the train steps only, one row per cell and precision, with the BERT peer's speed-up.
`--ttq`: the time-to-quality benchmark, one row per target. Both tables come from
chimera/analysis/bench_tables.py, which `chimera tables check` holds docs/performance.md's tables to.
The file is read by chimera.records.bench_report (standard library only: no torch needed).
"""

from __future__ import annotations

import sys
from pathlib import Path

from chimera.analysis.bench_tables import cells_table, format_or_blank, median_s, memory_text, ttq_table
from chimera.errors import ChimeraError
from chimera.records.bench_report import BenchReport, load_bench_report

GOAL_FIELDS = ("speedup_vs_peer", "data_to_step_ratio", "top2_vs_2x_dense", "top2_vs_dense_2ff",
               "mixtral_eager_speedup", "mixtral_grouped_mm_speedup", "ratio_at_0.75")
MEMORY_NOTE = ("Memory: peak RSS of the process while that benchmark ran (its own peak, reset at its start; "
               "in brackets how much it grew over the RSS at its start, i.e. the benchmark's own model, "
               "optimiser state, activations and batches over the interpreter, torch and what the session "
               "keeps); on CUDA and MPS the device's own peak follows (CUDA: max allocated / max reserved; "
               "MPS: driver memory).")


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
        median_ms, iqr_ms = median_s(report, bench) * 1e3, (bench.iqr_s or 0) * 1e3
        lines.append(f"| {bench.name} | {median_ms:.1f} | {format_or_blank(iqr_ms, '.1f')} | "
                     f"{format_or_blank(bench.samples_per_s, ',.0f')} | {format_or_blank(bench.mfu, '.0%')} | "
                     f"{memory_text(bench.memory)} | {goal} |")
    return "\n".join([*lines, "", MEMORY_NOTE])


def summarise_cells(path: Path) -> str:
    report = load_bench_report(path)
    return "\n".join([_header_line(report), "", *cells_table(report), "", MEMORY_NOTE])


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
