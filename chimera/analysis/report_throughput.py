"""The report's throughput evidence beyond the matrix table: how steady each run's machine was.

Blocks in chimera.analysis.report's format: a per-run table of interval step times (chimera.analysis.step_spread) and
the load average the benchmark files recorded, so a disturbed measurement is seen, not averaged in.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from chimera.analysis.step_spread import DISTURBED_RATIO, step_spread
from chimera.records.bench_report import find_bench_reports
from chimera.records.record import RunRecord

SPREAD_HEADER = ("run", "intervals", "median step (ms)", "p10-p90 (ms)", "slowest ÷ median", "verdict")


def spread_blocks(loaded: Sequence[tuple[Path, RunRecord]]) -> list[tuple]:
    """Each run's per-interval step-time spread: how steady its machine was while it trained."""
    rows = []
    for _, record in loaded:
        spread = step_spread(record)
        if spread is not None:
            rows.append([f"{record.cell} seed {record.seed}", str(spread.intervals),
                         f"{spread.median_s * 1e3:,.1f}", f"{spread.p10_s * 1e3:,.1f}-{spread.p90_s * 1e3:,.1f}",
                         f"{spread.slowest_ratio:.2f}", "**disturbed**" if spread.disturbed else "steady"])
    if not rows:
        return []
    return [("h3", "Step-time spread per run"), ("table", SPREAD_HEADER, rows),
            ("p", "Mean optimiser-step time of each evaluation interval, from the record's `timing`. A run whose "
                  f"slowest interval is more than {DISTURBED_RATIO:g}× its median was disturbed (paused, or sharing "
                  "its cores): its `(run)` throughput is left out of the matrix table's mean and named there.")]


def bench_load_note(bench_dir: Path) -> str | None:
    """The load average each benchmark file recorded at its start and end, beside its CPU count."""
    parts = []
    for report in find_bench_reports(bench_dir):
        start, end = report.session.load_average_at_start, report.session.load_average_at_end
        if not start or not end:
            continue
        cpus = report.machine.os_cpu_count or report.machine.cpu_count
        loaded = cpus and max(start[0], end[0]) > cpus
        parts.append(f"`{report.path.name}` {start[0]:g} at start, {end[0]:g} at end"
                     + (f" on {cpus} CPUs" if cpus else "") + (" (**loaded**: more runnable tasks than CPUs)"
                                                                if loaded else ""))
    return ("Load average (1 min) recorded with the benchmark results: " + "; ".join(parts) + ".") if parts else None
