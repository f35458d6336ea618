"""Per-cell trends across commits and machines, judged by the gates' own functions.

For each (cell, profile, precision), one row per (commit, machine) in commit order:

- speed: the train-step benchmark's normalised time (median step / median calibration GEMM of the same
  file) and the speed gate's verdict (`bench_gate.judge`) against the previous commit's benchmark file
  of the same machine and profile: what `chimera bench compare NEW PREVIOUS` would have said. When a
  commit has several benchmark files on one machine, the latest counts.
- metrics: the final clean train loss, val loss, val and test accuracy, mean over the runs (seeds) of
  that commit and machine, and the loss gate's verdict (`bands.check_bands`) against the bands for the
  runs' profile and precision (the packaged ones, or --bands).
"""

from __future__ import annotations

import fnmatch
import json
import statistics
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path

from chimera.errors import ChimeraError
from chimera.gates.bands import bands_path, check_bands, load_bands
from chimera.gates.bench_gate import DEFAULT_GROUPS, DEFAULT_THRESHOLD, BenchFile, Row, judge
from chimera.history.ingest import BenchRow, bench_file
from chimera.history.store import History
from chimera.records.bench_report import BenchReport
from chimera.records.record import RunRecord
from chimera.records.upgrade import upgrade

METRICS = ("clean_train_loss", "val_loss", "val_acc", "test_acc")  # final_metrics keys
HEADER = ("commit", "date", "machine", "step/GEMM", "vs prev", "speed gate", "runs", "clean train", "val loss",
          "val acc", "test acc", "loss gate")
BandsFor = Callable[[str, str], dict | None]  # (profile, precision) -> bands, or None when there are none


@dataclass
class Point:
    """One (commit, machine) of one cell."""

    commit: str
    machine: str
    machine_label: str
    when: str | None = None
    dirty: bool = False
    speed: Row | None = None  # the speed gate's row (new_norm is this commit's normalised step time)
    runs: list[RunRecord] = field(default_factory=list)  # the records of this commit and machine
    loss_failures: list[str] = field(default_factory=list)  # the loss gate's violated metrics, one per run failing
    loss_judged: bool = False  # bands existed for these runs

    def metric(self, key: str) -> float | None:
        values = [getattr(r.final_metrics, key) for r in self.runs]
        return statistics.fmean(values) if values and None not in values else None

    @property
    def speed_failed(self) -> bool:
        return self.speed is not None and self.speed.failed

    @property
    def loss_failed(self) -> bool:
        return bool(self.loss_failures)

    @property
    def flagged(self) -> bool:
        return self.speed_failed or self.loss_failed


@dataclass(frozen=True)
class CellTrend:
    cell: str
    profile: str
    precision: str
    points: tuple[Point, ...]


def packaged_bands(profile: str, precision: str) -> dict | None:
    """The bands `chimera bands check` would use for these runs; None when none are packaged."""
    path = bands_path(profile, precision)
    return load_bands(path, precision=precision) if path.exists() else None


def build_trends(history: History, *, threshold: float = DEFAULT_THRESHOLD,
                 bands_for: BandsFor = packaged_bands) -> list[CellTrend]:
    """Every cell's trend, cells sorted by (cell, profile, precision), points by commit order."""
    points: dict[tuple[str, str, str], dict[tuple[str, str], Point]] = {}
    order = commit_order(history)

    def point(cell: str, profile: str, precision: str, sha: str) -> Point:
        source = history.sources[sha]
        cell_points = points.setdefault((cell, profile, precision), {})
        found = cell_points.setdefault((source.commit, source.machine),
                                       Point(source.commit, source.machine, source.machine_label))
        found.dirty = found.dirty or bool(source.dirty)
        return found

    for sha, row in history.runs.items():
        record = RunRecord.from_json(upgrade(json.loads(history.sources[sha].body)))  # stored as ingested
        point(row.cell, row.profile, row.precision, sha).runs.append(record)
    for sha, new, rows, previous in _bench_sequence(history, order):
        for row in rows.values():  # also those only the previous file has: the gate calls them `missing`
            if row.cell and row.profile:
                point(row.cell, row.profile, row.precision, sha).speed = judge(row.name, previous, new, threshold)
    trends = []
    for (cell, profile, precision), by_key in sorted(points.items()):
        for p in by_key.values():
            p.when = order.get(p.commit, (None,))[0]
            _judge_losses(p, bands_for(profile, precision) if p.runs else None)
        ranked = sorted(by_key.values(), key=lambda p: (order.get(p.commit, (None, ""))[1], p.commit, p.machine_label))
        trends.append(CellTrend(cell, profile, precision, tuple(ranked)))
    return trends


def _judge_losses(point: Point, bands: dict | None) -> None:
    if bands is None:
        return
    point.loss_judged = True
    for record in point.runs:
        violations = check_bands([record], bands)
        if violations:
            point.loss_failures.append(", ".join(sorted({v.metric for v in violations})))


def commit_order(history: History) -> dict[str, tuple[str | None, str]]:
    """commit -> (its time, a sort key): a benchmark file's commit time when one says it, else the
    earliest run of that commit; commits without any time sort last."""
    times: dict[str, list[str]] = {}
    bench_times: dict[str, list[str]] = {}
    for source in history.sources.values():
        if source.when:
            (bench_times if source.kind == "bench" else times).setdefault(source.commit, []).append(source.when)
    order = {}
    for commit in {s.commit for s in history.sources.values()}:
        when = min(bench_times.get(commit) or times.get(commit) or [""]) or None
        order[commit] = (when, when or "~")  # "~" sorts after every ISO time
    return order


def _bench_sequence(history: History, order: dict) -> Iterable[tuple[str, BenchFile, dict[str, BenchRow],
                                                                    BenchFile]]:
    """(sha, file, gated rows of it and of the previous file by name, the previous file) per benchmark file
    that counts, in commit order per (machine, profile); the first file's previous is empty (verdict `new`)."""
    latest: dict[tuple[str, str | None, str], str] = {}  # (machine, profile, commit) -> sha of the latest file
    for sha, rows in history.benchmarks.items():
        source = history.sources[sha]
        for profile in {r.profile for r in rows}:
            key = (source.machine, profile, source.commit)
            if key not in latest or _ran_at(history, sha) >= _ran_at(history, latest[key]):
                latest[key] = sha
    sequences: dict[tuple[str, str | None], list[tuple[str, str]]] = {}
    for (machine, profile, commit), sha in latest.items():
        sequences.setdefault((machine, profile), []).append((order[commit][1], sha))
    for (_, profile), files in sequences.items():
        previous, previous_rows = bench_file("(none)", 1.0, ()), {}
        for _, sha in sorted(files):
            rows = {r.name: r for r in history.benchmarks[sha] if r.profile == profile
                    and any(fnmatch.fnmatchcase(r.group, g) for g in DEFAULT_GROUPS)}
            new = bench_file(history.sources[sha].path, history.calibration_s[sha], rows.values())
            yield sha, new, {**previous_rows, **rows}, previous
            previous, previous_rows = new, rows


def _ran_at(history: History, sha: str) -> str:
    """When a benchmark file's session ran (pytest-benchmark's `datetime`; its `when` is the commit's time)."""
    return BenchReport.from_json(json.loads(history.sources[sha].body), history.sources[sha].path).datetime or ""


def format_trends(trends: list[CellTrend], *, threshold: float = DEFAULT_THRESHOLD) -> str:
    """Plain-text tables, one per cell, then the commits where a gate would have failed."""
    if not trends:
        raise ChimeraError("the history store holds no results yet; add some with chimera history add")
    out: list[str] = []
    for trend in trends:
        rows = [HEADER, *(point_cells(p) for p in trend.points)]
        widths = [max(len(r[i]) for r in rows) for i in range(len(HEADER))]
        out.append(f"{trend.cell} · profile {trend.profile} · {trend.precision}")
        out += ["  " + "  ".join(c.ljust(w) if i < 3 else c.rjust(w) for i, (c, w) in enumerate(zip(r, widths,
                                                                                                     strict=True)))
                for r in rows]
        out.append("")
    out.append(f"step/GEMM: median train-step time / median fp32 calibration GEMM of the same benchmark file; "
               f"vs prev: against the previous commit on the same machine (speed gate threshold +{threshold:.0%}); "
               "metrics: mean over the runs of that commit and machine; loss gate: the convergence bands")
    flagged = flag_lines(trends, threshold=threshold)
    out.append("gates would have failed at: " + ("none" if not flagged else ""))
    out += [f"  {line}" for line in flagged]
    return "\n".join(out) + "\n"


def flag_lines(trends: list[CellTrend], *, threshold: float = DEFAULT_THRESHOLD) -> list[str]:
    """One line per (cell, commit, machine) where the speed gate or the loss bands would have failed."""
    return [_flag_line(t, p, threshold) for t in trends for p in t.points if p.flagged]


def short_commit(commit: str, dirty: bool = False) -> str:
    return (commit[:10] if len(commit) == 40 else commit) + ("+" if dirty else "")


def _num(value: float | None, spec: str) -> str:
    return "-" if value is None else format(value, spec)


def point_cells(p: Point) -> list[str]:
    """One table row (HEADER's columns) of a point."""
    speed = p.speed
    seeds = sorted(r.seed for r in p.runs)
    loss = "-" if not p.runs else "no bands" if not p.loss_judged else \
        "ok" if not p.loss_failures else f"FAIL {len(p.loss_failures)} of {len(p.runs)}"
    return [short_commit(p.commit, p.dirty), (p.when or "-")[:16].replace("T", " "), p.machine_label,
            _num(speed.new_norm if speed else None, ".3f"), _num(speed.ratio if speed else None, ".3f"),
            speed.verdict if speed else "-", f"{len(seeds)} ({', '.join(map(str, seeds))})" if seeds else "-",
            *(_num(p.metric(key), ".4g" if key.endswith("loss") else ".4f") for key in METRICS), loss]


def _flag_line(trend: CellTrend, p: Point, threshold: float) -> str:
    parts = []
    if p.speed_failed:
        what = f"{p.speed.ratio:.2f}× the previous commit" if p.speed.ratio else "benchmark missing"
        parts.append(f"speed {p.speed.verdict} ({what}, threshold +{threshold:.0%})")
    if p.loss_failed:
        metrics = sorted({m for failure in p.loss_failures for m in failure.split(", ")})
        parts.append(f"loss bands ({len(p.loss_failures)} of {len(p.runs)} runs outside: {', '.join(metrics)})")
    return (f"{short_commit(p.commit, p.dirty)} on {p.machine_label}: {trend.cell} {trend.profile} {trend.precision}: "
            + ", ".join(parts))


def bands_from_file(path: Path | None) -> BandsFor:
    """--bands FILE for every profile and precision (check_bands reports a mismatch), else the packaged ones."""
    if path is None:
        return packaged_bands
    return lambda profile, precision: load_bands(path, precision=precision)
