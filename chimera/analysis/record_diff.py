"""Diff two run records: every result, input and environment difference, compared exactly.

Curves and final metrics compare as JSON numbers (bitwise on the same hardware and software); the
inputs (config, parameter counts, data fingerprints) and the environment are listed apart because
they can explain a mismatch. Wall-clock figures (`timing`, `wall_s`, `train_samples_per_s`, `compile_s`), `energy`,
`run_id`, `created_at`, `events` and `resume` are not results and are ignored. Pure functions of two
records, so they work on records from anywhere (`chimera reproduce` uses them after its rerun).
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

from chimera.records.record import RunRecord

WALL_CLOCK_METRICS = ("wall_s", "train_samples_per_s", "compile_s")  # measured time: never reproduces bitwise
INPUT_KEYS = ("config", "params")  # what the run was given; a difference here explains the rest


@dataclass(frozen=True)
class Difference:
    where: str  # e.g. "curves[step=20].val_loss", "env.torch"
    old: Any
    new: Any

    def describe(self) -> str:
        text = f"{self.where}: {_show(self.old)} -> {_show(self.new)}"
        if _is_number(self.old) and _is_number(self.new):
            text += f" (diff {self.new - self.old:+.3g})"
        return text


@dataclass(frozen=True)
class RecordDiff:
    metrics: list[Difference] = field(default_factory=list)  # status, curves, final metrics
    inputs: list[Difference] = field(default_factory=list)  # config, parameter counts, data fingerprints
    environment: list[Difference] = field(default_factory=list)  # versions, device, threads, world size

    @property
    def identical(self) -> bool:
        return not self.metrics


def diff_records(old_record: RunRecord, new_record: RunRecord) -> RecordDiff:
    """Every result, input and environment difference between two records (exact comparison).

    Compared leaf by leaf in their JSON form: what is on disk is what must reproduce. Every key read here
    is one the record always writes, except `time_to_target` (absent when the run timed no target)."""
    old, new = old_record.to_json(), new_record.to_json()
    metrics = list(_walk("status", old["status"], new["status"]))
    metrics += _curve_differences(old["curves"], new["curves"])
    old_final, new_final = (_without(r["final_metrics"], WALL_CLOCK_METRICS) for r in (old, new))
    metrics += _walk("final_metrics", old_final, new_final)
    for i, (a, b) in enumerate(zip(old.get("time_to_target") or [], new.get("time_to_target") or [], strict=False)):
        metrics += _walk(f"time_to_target[{i}]", _without(a, ("train_s", "wall_s")), _without(b, ("train_s", "wall_s")))
    inputs = [d for key in INPUT_KEYS for d in _walk(key, old[key], new[key])]
    for key in ("fingerprints", "tokenizer_sha256", "sizes"):
        inputs += _walk(f"data.{key}", old["data"][key], new["data"][key])
    environment = list(_walk("world_size", old["world_size"], new["world_size"]))
    environment += _walk("env", old["env"], new["env"])
    return RecordDiff(metrics=metrics, inputs=inputs, environment=environment)


def beyond_tolerance(differences: list[Difference], tolerance: float) -> list[Difference]:
    """The differences that count at a relative `tolerance`: two numbers count when |new - old| > tolerance *
    max(|old|, |new|); anything else that differs (a status, a missing evaluation, a flag) always counts. At
    tolerance 0 every difference counts, the exact comparison `chimera reproduce` makes."""
    return [d for d in differences if not (_is_number(d.old) and _is_number(d.new)
                                           and abs(d.new - d.old) <= tolerance * max(abs(d.old), abs(d.new)))]


def _curve_differences(old: list[dict], new: list[dict]) -> list[Difference]:
    by_step_old = {point["step"]: point for point in old}
    by_step_new = {point["step"]: point for point in new}
    diffs: list[Difference] = []
    for step in sorted(set(by_step_old) | set(by_step_new)):
        a, b = by_step_old.get(step), by_step_new.get(step)
        if a is None or b is None:
            diffs.append(Difference(f"curves[step={step}]", "evaluated" if a else "missing",
                                    "evaluated" if b else "missing"))
        else:
            diffs += _walk(f"curves[step={step}]", a, b)
    return diffs


def _walk(where: str, old: Any, new: Any) -> Iterator[Difference]:
    """Leaf-by-leaf differences; numbers compare exactly, and True never equals 1."""
    if isinstance(old, dict) and isinstance(new, dict):
        for key in sorted(set(old) | set(new), key=str):
            yield from _walk(f"{where}.{key}", old.get(key), new.get(key))
    elif isinstance(old, list) and isinstance(new, list) and len(old) == len(new):
        for i, (a, b) in enumerate(zip(old, new, strict=True)):
            yield from _walk(f"{where}[{i}]", a, b)
    elif (type(old) is not type(new) and not (_is_number(old) and _is_number(new))) or old != new:
        yield Difference(where, old, new)


def _without(mapping: dict, keys: tuple[str, ...]) -> dict:
    return {k: v for k, v in mapping.items() if k not in keys}


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _show(value: Any) -> str:
    if isinstance(value, float) and math.isfinite(value):
        return repr(value)  # shortest exact round-trip: two different floats never print the same
    text = repr(value)
    return text if len(text) <= 80 else text[:77] + "..."


def format_diff(diff: RecordDiff, *, old_name: str, new_name: str, max_metrics: int | None = None) -> str:
    """Human report: what differs (the first `max_metrics` of it, if given), then what could explain it."""
    lines = []
    if diff.identical:
        lines.append(f"identical: every curve point and final metric of {new_name} equals {old_name}")
    else:
        shown = diff.metrics[:max_metrics]
        lines.append(f"{len(diff.metrics)} metric(s) differ ({old_name} -> {new_name}):")
        lines += [f"  {d.describe()}" for d in shown]
        if len(shown) < len(diff.metrics):
            lines.append(f"  ... and {len(diff.metrics) - len(shown)} more")
    explain = diff.inputs + diff.environment
    if explain:
        lines.append("differences in inputs and environment that could explain it:" if not diff.identical
                     else "differences in inputs and environment (results agree anyway):")
        lines += [f"  {d.describe()}" for d in explain]
    elif not diff.identical:
        lines.append("no input or environment difference recorded: the run is not deterministic here")
    return "\n".join(lines)
