"""What the history site shows, as data: per cell and profile, one chart per figure over commits, one series per
(machine, precision), one mark per file. Pure (no HTML, no output folder): chimera/history/site.py renders it.

Figures: the train-step time over the same benchmark file's calibration GEMM (the number the speed gate compares),
the MFU that file recorded (extra_info.mfu), wall seconds to each target quality the run records timed (MLPerf's
count, evaluations included), and the final test accuracy. Every file is a mark, so each links to the file it
came from; the line joins the per-commit means. A figure the store holds no number for says so instead.
"""

from __future__ import annotations

import fnmatch
import json
import statistics
from collections import Counter
from dataclasses import dataclass

from chimera.gates.bench_gate import DEFAULT_GROUPS
from chimera.history.store import History
from chimera.history.trend import commit_order, short_commit
from chimera.records.bench_report import BenchReport
from chimera.records.record import RunRecord
from chimera.records.upgrade import upgrade

STEP_NORM, MFU, TIME_TO_TARGET, TEST_ACC = "step_norm", "mfu", "time_to_target", "test_acc"
TITLES = {STEP_NORM: "train step / calibration GEMM of the same benchmark file (lower is faster)",
          MFU: "MFU, % of the calibration GEMM's FLOP/s (the benchmark's extra_info.mfu)",
          TEST_ACC: "final test accuracy"}


@dataclass(frozen=True)
class Mark:
    """One file's number: a benchmark file's (step time, MFU) or a run record's (time to target, accuracy)."""

    commit: str
    value: float
    path: str  # the file, as the store names it
    note: str  # which number of the file: the benchmark's name, the run's seed


@dataclass(frozen=True)
class Series:
    machine: str  # the machine's label, "cpu: AMD EPYC"
    precision: str
    marks: tuple[Mark, ...]

    @property
    def label(self) -> str:
        return f"{self.machine} · {self.precision}"


@dataclass(frozen=True)
class Chart:
    key: str  # STEP_NORM, MFU, TEST_ACC, or "time_to_target:<metric>:<target>"
    title: str
    series: tuple[Series, ...]
    absent: str = ""  # why there is nothing to draw: the store holds no such number for this cell
    note: str = ""  # what the marks leave out (runs that never reached a target)


@dataclass(frozen=True)
class Commit:
    id: str
    label: str  # short, "+" when a file of it came from a checkout with uncommitted changes
    when: str | None


@dataclass(frozen=True)
class Section:
    """One (cell, profile): shapes differ between profiles, so their numbers are never drawn together."""

    cell: str
    profile: str
    commits: tuple[Commit, ...]  # in commit order (chimera.history.trend.commit_order)
    charts: tuple[Chart, ...]


class _Collector:
    """Marks by (cell, profile) -> chart key -> (machine, precision), and what each cell has at all."""

    def __init__(self, history: History) -> None:
        self.history = history
        self.marks: dict[tuple[str, str], dict[str, dict[tuple[str, str], list[Mark]]]] = {}
        self.commits: dict[tuple[str, str], dict[str, bool]] = {}  # commit -> dirty
        self.kinds: dict[tuple[str, str], set[str]] = {}  # "bench", "record", and each timed target's key
        self.unreached: Counter[tuple[str, str, str]] = Counter()  # (cell, profile, key): runs that missed it

    def seen(self, cell: str, profile: str, sha: str, kind: str) -> None:
        source = self.history.sources[sha]
        commits = self.commits.setdefault((cell, profile), {})
        commits[source.commit] = commits.get(source.commit, False) or bool(source.dirty)
        self.kinds.setdefault((cell, profile), set()).add(kind)

    def add(self, cell: str, profile: str, key: str, sha: str, precision: str, value: float, note: str) -> None:
        source = self.history.sources[sha]
        by_series = self.marks.setdefault((cell, profile), {}).setdefault(key, {})
        by_series.setdefault((source.machine_label, precision), []).append(Mark(source.commit, value, source.path,
                                                                                note))


def sections(history: History) -> dict[str, tuple[Section, ...]]:
    """Per cell (sorted), one section per profile that has a train-step benchmark or a run record of it."""
    found = _Collector(history)
    for sha, rows in history.benchmarks.items():
        entries = {e.name: e for e in BenchReport.from_json(json.loads(history.sources[sha].body),
                                                            history.sources[sha].path).benchmarks}
        for row in rows:
            if not (row.cell and row.profile and any(fnmatch.fnmatchcase(row.group, g) for g in DEFAULT_GROUPS)):
                continue
            found.seen(row.cell, row.profile, sha, "bench")
            # normalised as the speed gate's judge() does: median step / median calibration GEMM of the same file
            found.add(row.cell, row.profile, STEP_NORM, sha, row.precision, row.median_s / history.calibration_s[sha],
                      row.name)
            mfu = entries[row.name].mfu if row.name in entries else None
            if mfu is not None:
                found.add(row.cell, row.profile, MFU, sha, row.precision, 100 * mfu, row.name)
    for sha, run in history.runs.items():
        found.seen(run.cell, run.profile, sha, "record")
        record = RunRecord.from_json(upgrade(json.loads(history.sources[sha].body)))  # stored as ingested
        note = f"seed {run.seed}"
        if run.test_acc is not None:
            found.add(run.cell, run.profile, TEST_ACC, sha, run.precision, run.test_acc, note)
        for target in record.time_to_target or []:
            key = f"{TIME_TO_TARGET}:{target.metric}:{target.target:g}"
            found.kinds[(run.cell, run.profile)].add(key)
            if target.reached and target.wall_s is not None:
                found.add(run.cell, run.profile, key, sha, run.precision, target.wall_s, note)
            else:
                found.unreached[(run.cell, run.profile, key)] += 1
    order = commit_order(history)
    pages: dict[str, list[Section]] = {}
    for cell, profile in sorted(found.commits):
        commits = sorted(found.commits[(cell, profile)].items(), key=lambda c: (order[c[0]][1], c[0]))
        pages.setdefault(cell, []).append(Section(
            cell, profile, tuple(Commit(c, short_commit(c, dirty), order[c][0]) for c, dirty in commits),
            _charts(found, cell, profile, {c: i for i, (c, _) in enumerate(commits)})))
    return {cell: tuple(parts) for cell, parts in pages.items()}


def _charts(found: _Collector, cell: str, profile: str, rank: dict[str, int]) -> tuple[Chart, ...]:
    kinds = found.kinds[(cell, profile)]
    targets = sorted(k for k in kinds if k.startswith(TIME_TO_TARGET))
    no_bench = "no train-step benchmark of this cell and profile in the store"
    no_record = "no run record of this cell and profile in the store"
    absent = {STEP_NORM: no_bench,
              MFU: "MFU: not in the store (this cell's benchmark JSON records no extra_info.mfu)" if "bench" in kinds
              else no_bench,
              TIME_TO_TARGET: "time to target: not in the store (these run records time no target)"
              if "record" in kinds else no_record,
              TEST_ACC: "test accuracy: not in the store (no run of this cell measured it)" if "record" in kinds
              else no_record}
    charts = []
    for key in (STEP_NORM, MFU, *(targets or [TIME_TO_TARGET]), TEST_ACC):
        by_series = found.marks.get((cell, profile), {}).get(key, {})
        series = tuple(Series(machine, precision, tuple(sorted(marks, key=lambda m: (rank[m.commit], m.note, m.path))))
                       for (machine, precision), marks in sorted(by_series.items()))
        missed = found.unreached[(cell, profile, key)]
        if key.startswith(TIME_TO_TARGET + ":"):
            _, metric, target = key.split(":")
            title = f"wall seconds to {metric} {'≥' if metric.endswith('acc') else '≤'} {target} (time to target)"
            why = f"no run of this cell reached it ({missed} timed it)"
        else:
            title, why = TITLES.get(key, "time to target"), absent[key]
        charts.append(Chart(key, title, series, absent="" if series else why,
                            note=f"{missed} run(s) that never reached it are not drawn" if missed and series else ""))
    return tuple(charts)


def line(series: Series, rank: dict[str, int]) -> list[tuple[int, float]]:
    """(commit index, mean over the series' marks of that commit): the line a chart draws through the marks."""
    by_commit: dict[str, list[float]] = {}
    for mark in series.marks:
        by_commit.setdefault(mark.commit, []).append(mark.value)
    return sorted((rank[commit], statistics.fmean(values)) for commit, values in by_commit.items())
