"""`chimera diff A B`: two records, run folders or matrix folders side by side, and whether they agree.

    chimera diff docs/results/ci-seeds/fixed-dense-ci-s0 docs/results/ci-seeds/fixed-dense-ci-s1 --out diff/

Records pair as chimera/analysis/record_pairs.py says. For each pair: the input and environment differences
that could explain the rest (chimera/analysis/record_diff.py), final metrics and time to target with B - A,
the curves in one line, and whether each side lies inside the packaged convergence bands of its profile and
precision (judged as `chimera bands check` judges). The curves of both sides go to OUT/diff.png.

Agreement: every result record_diff compares (status, curves, final metrics, time-to-target steps) equal
within a relative `--tolerance` (default 0: any difference counts; wall-clock figures never do), and no
record left without a partner. Exit 0 agree, 1 differ, 2 bad input. The bands are shown, not part of the verdict.
"""

from __future__ import annotations

import argparse
import re
import sys
from collections.abc import Callable
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any, TextIO

from chimera.analysis.diff_figure import FIGURE_NAME, draw_pairs
from chimera.analysis.record_diff import WALL_CLOCK_METRICS, Difference, RecordDiff, beyond_tolerance, diff_records
from chimera.analysis.record_pairs import Located, Pair, load_side, pair_records
from chimera.gates.bands import METRICS, bands_path, check_bands, load_bands
from chimera.records.record import FinalMetrics, RunRecord, TargetTime

CURVE_KEYS = ("val_loss", "clean_train_loss", "val_acc")  # the curves drawn and summarised, as in the figure
_CURVE = re.compile(r"curves\[step=(\d+)\](?:\.(\w+))?")


@dataclass(frozen=True)
class Verdict:
    """One pair compared: every difference, and those that count at the tolerance."""

    pair: Pair
    diff: RecordDiff
    counted: list[Difference]

    @property
    def agree(self) -> bool:
        return not self.counted


def compare(pair: Pair, tolerance: float) -> Verdict:
    diff = diff_records(pair.a.record, pair.b.record)
    return Verdict(pair, diff, beyond_tolerance(diff.metrics, tolerance))


def pair_lines(verdict: Verdict, bands: Callable[[RunRecord], str], tolerance: float) -> list[str]:
    """The side-by-side report of one pair."""
    a, b = verdict.pair.a, verdict.pair.b
    lines = [f"== {verdict.pair.name}", f"A  {a.path}  {_about(a.record)}", f"B  {b.path}  {_about(b.record)}"]
    explain = verdict.diff.inputs + verdict.diff.environment
    if explain:
        lines += _table(("inputs and environment", "A", "B"),
                        [(f"  {d.where}", _short(d.old), _short(d.new)) for d in explain])
    counted = {d.where for d in verdict.counted}
    compared, clocks = [], []
    for name in (f.name for f in fields(FinalMetrics)):
        old, new = getattr(a.record.final_metrics, name), getattr(b.record.final_metrics, name)
        if old is None and new is None:
            continue
        if name in WALL_CLOCK_METRICS:
            clocks.append((f"  {name} (not compared)", _value(old), _value(new), *_delta(old, new)))
        else:
            mark = "*" if f"final_metrics.{name}" in counted else " "
            compared.append((f"{mark} {name}", _value(old), _value(new), *_delta(old, new)))
    lines += _table(("final metrics", "A", "B", "B - A", "rel"), compared + clocks)
    lines += _target_lines(a.record, b.record)
    lines += ["", "convergence bands (as `chimera bands check` judges)", f"  A  {bands(a.record)}",
              f"  B  {bands(b.record)}", "", _curve_line(verdict), _pair_verdict(verdict, tolerance)]
    return lines


def _about(record: RunRecord) -> str:
    env = record.env
    commit = f", commit {env.git_commit[:12]}{' (dirty)' if env.git_dirty else ''}" if env.git_commit else ""
    return f"({record.status}, {record.precision.value}, {env.device_type}: {env.device_name}{commit})"


def _table(header: tuple[str, ...], rows: list[tuple[str, ...]]) -> list[str]:
    """A blank line, then the header and rows in columns as wide as their widest cell."""
    widths = [max(len(row[i]) for row in (header, *rows) if i < len(row)) for i in range(len(header))]
    return [""] + ["  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=False)).rstrip()
                   for row in (header, *rows)]


def _short(value: Any) -> str:
    text = _value(value)
    return text if len(text) <= 14 else text[:13] + "…"


def _value(value: Any) -> str:
    if isinstance(value, float):
        return format(value, ".6g")
    return "n/a" if value is None else str(value)


def _delta(old: Any, new: Any) -> tuple[str, ...]:
    if not (_number(old) and _number(new)):
        return ()
    delta = new - old
    if delta == 0:
        return ("0",)
    text = format(delta, "+.4g") if isinstance(delta, float) else f"{delta:+d}"
    return (text, format(delta / abs(old), "+.2%")) if old else (text,)


def _number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _target_lines(a: RunRecord, b: RunRecord) -> list[str]:
    keys = sorted({(t.metric, t.target) for t in (*(a.time_to_target or []), *(b.time_to_target or []))})
    rows = []
    for metric, target in keys:
        old, new = a.target_time(metric, target), b.target_time(metric, target)
        sign = ">=" if metric == "val_acc" else "<="
        rows.append((f"  {metric} {sign} {target:g}", _reached(old), _reached(new), _target_delta(old, new)))
    return _table(("time to target", "A", "B", "B - A"), rows) if rows else []


def _reached(entry: TargetTime | None) -> str:
    if entry is None:
        return "not timed"
    if not entry.reached:
        return "not reached"
    return f"step {entry.step}" + (f", {entry.wall_s:.1f} s" if entry.wall_s is not None else "")


def _target_delta(old: TargetTime | None, new: TargetTime | None) -> str:
    if not (old and new and old.reached and new.reached):
        return ""
    text = f"{new.step - old.step:+d} steps"
    return text + (f", {new.wall_s - old.wall_s:+.1f} s" if old.wall_s is not None and new.wall_s is not None else "")


def _curve_line(verdict: Verdict) -> str:
    """How many evaluations differ, the largest difference of each drawn curve, and the steps only one side has."""
    steps = {int(m[1]) for d in verdict.counted if (m := _CURVE.fullmatch(d.where))}
    evaluated = {p.step for p in verdict.pair.a.record.curves} | {p.step for p in verdict.pair.b.record.curves}
    if not steps:
        return f"curves: all {len(evaluated)} evaluations agree"
    largest: dict[str, tuple[float, int]] = {}
    only: dict[str, list[int]] = {"A": [], "B": []}
    for d in verdict.diff.metrics:
        match = _CURVE.fullmatch(d.where)
        if match and match[2] in CURVE_KEYS and _number(d.old) and _number(d.new):
            if abs(d.new - d.old) > largest.get(match[2], (-1.0, 0))[0]:
                largest[match[2]] = (abs(d.new - d.old), int(match[1]))
        elif match and match[2] is None:
            only["A" if d.old == "evaluated" else "B"].append(int(match[1]))
    parts = [f"curves: {len(steps)} of {len(evaluated)} evaluations differ"]
    if largest:
        parts.append("largest |B - A|: " + ", ".join(f"{key} {size:.4g} at step {step}"
                                                     for key, (size, step) in sorted(largest.items())))
    parts += [f"evaluated by {side} only: steps {_steps(found)}" for side, found in only.items() if found]
    return "; ".join(parts)


def _steps(steps: list[int]) -> str:
    return f"{steps[0]}-{steps[-1]} ({len(steps)})" if len(steps) > 3 else ", ".join(map(str, steps))


def _pair_verdict(verdict: Verdict, tolerance: float) -> str:
    if verdict.agree:
        return f"agree (tolerance {tolerance:g})"
    kinds = (("final_metrics", "final metrics"), ("curves", "curve values"),
             ("time_to_target", "time-to-target fields"))
    counts: dict[str, int] = {}
    for d in verdict.counted:
        kind = next((name for prefix, name in kinds if d.where.startswith(prefix)), "other")
        counts[kind] = counts.get(kind, 0) + 1
    text = f"differ (tolerance {tolerance:g}): " + ", ".join(f"{n} {kind}" for kind, n in counts.items())
    return text + ("; * marks a final metric that counts" if "final metrics" in counts else "")


class BandJudge:
    """What `chimera bands check` would say of a record, against the packaged bands of its profile and precision."""

    def __init__(self) -> None:
        self._loaded: dict[Path, dict] = {}

    def __call__(self, record: RunRecord) -> str:
        path = bands_path(record.profile, record.precision.value)
        if not path.is_file():
            return f"no packaged bands for {record.profile} {record.precision.value} runs"
        if path not in self._loaded:
            self._loaded[path] = load_bands(path, precision=record.precision.value)
        bands = self._loaded[path]
        violations = check_bands([record], bands)
        where = f"bands/{path.name}"
        if not violations:
            return f"inside ({', '.join(bands['cells'][record.cell]['metrics'])}; {where})"
        outside = [v for v in violations if v.metric in METRICS]
        if len(outside) < len(violations):
            return f"not judged: {next(v for v in violations if v.metric not in METRICS).message} ({where})"
        return "OUTSIDE: " + "; ".join(f"{v.metric} {_value(v.value)} not in [{v.low:.4g}, {v.high:.4g}]"
                                       for v in outside) + f" ({where})"


def run_diff(args: argparse.Namespace, out: TextIO | None = None) -> int:
    """`chimera diff A B`: the report, OUT/diff.png, a one-line summary; 0 when A and B agree, else 1."""
    out = out or sys.stdout
    side_a, side_b = load_side(args.a), load_side(args.b)
    pairing = pair_records(side_a, side_b)
    verdicts = [compare(pair, args.tolerance) for pair in pairing.pairs]
    judge = BandJudge()
    for verdict in verdicts:
        if len(verdicts) == 1 or not verdict.agree:
            out.write("\n".join(pair_lines(verdict, judge, args.tolerance)) + "\n\n")
        else:
            a, b = (_headline(judge(located.record)) for located in (verdict.pair.a, verdict.pair.b))
            out.write(f"== {verdict.pair.name}: agree; bands: A {a}, B {b}\n")
    for side, unmatched in (("A", pairing.only_a), ("B", pairing.only_b)):
        out.writelines(f"only in {side}: {located.name} ({located.path})\n" for located in unmatched)
    args.out.mkdir(parents=True, exist_ok=True)
    figure = draw_pairs(pairing.pairs, args.out / FIGURE_NAME, sides=(str(args.a), str(args.b)))
    out.write(summary(verdicts, pairing.only_a, pairing.only_b, args.tolerance, figure) + "\n")
    return 0 if all(v.agree for v in verdicts) and not pairing.only_a and not pairing.only_b else 1


def _headline(judged: str) -> str:
    """`inside`, `OUTSIDE`, `not judged` or `no packaged bands ...`: a band verdict without its detail."""
    return re.split(r":| \(", judged, maxsplit=1)[0]


def summary(verdicts: list[Verdict], only_a: list[Located], only_b: list[Located], tolerance: float,
            figure: Path) -> str:
    differ = sum(not v.agree for v in verdicts)
    agree = "AGREE" if not differ and not only_a and not only_b else "DIFFER"
    unmatched = f"; unmatched: {len(only_a)} in A only, {len(only_b)} in B only" if only_a or only_b else ""
    return (f"diff: {agree}: {len(verdicts)} pair(s), {len(verdicts) - differ} agree, {differ} differ "
            f"(relative tolerance {tolerance:g}){unmatched}; curves in {figure}")
