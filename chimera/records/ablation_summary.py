"""The ablation summary as typed data: the one owner of the shape of ablation.json.

`chimera report` writes it for an ablation family (chimera/analysis/ablation_effects.py `summary` builds an
`AblationSummary` and writes `to_json()`), `make ablation` publishes it as chimera/analysis/ablation-ci.json,
and the doctor's regularisation audit cites it. Everyone reads it through `load_ablation_summary`, so a
corrupt file is one ChimeraError naming it and the key, never a KeyError inside a finding. The shape:

    {"runs": 80, "profiles": ["ci"], "devices": [...], "torch": [...], "noise_rule": "...",
     "tables": [{"start": "fixed/dense", "direction": "without", "seeds": [0, 1, 2],
                 "effects": {change: {metric: {"mean", "std", "ci", "n", "unpaired", "within_noise"}}}}]}

Standard library and chimera.errors/fileio only, like the other typed readers of records/.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from types import MappingProxyType
from typing import Any

from chimera.errors import ChimeraError
from chimera.fileio import read_json

FIX = "publish it again with make ablation (chimera report RUNS --out REPORT writes REPORT/ablation.json)"


class SummaryFieldError(ValueError):
    """A key holds a value of the wrong kind; `from_json` turns it into a ChimeraError naming the file and key."""

    def __init__(self, key: str, value: Any, expected: str) -> None:
        super().__init__(f"{key} is {value!r:.60}, expected {expected}")
        self.key, self.value, self.expected = key, value, expected

    def under(self, prefix: str) -> SummaryFieldError:
        return SummaryFieldError(f"{prefix}.{self.key}", self.value, self.expected)


def _get(source: Any, key: str, check: Any, expected: str, *, nullable: bool = False) -> Any:
    """source[key] when `check(value)` holds (or it is null and `nullable`); absent keys are malformed."""
    if not isinstance(source, Mapping):
        raise SummaryFieldError("", source, "an object")
    value = source.get(key)
    if (value is None and not nullable) or (value is not None and not check(value)):
        raise SummaryFieldError(key, value, expected)
    return value


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _is_count(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value >= 0


def _strings(source: Any, key: str) -> tuple[str, ...]:
    return tuple(_get(source, key, lambda v: isinstance(v, list) and all(isinstance(s, str) for s in v),
                      "a list of strings"))


def _nested(prefix: str, read: Any) -> Any:
    """`read()`, with any field error's key put under `prefix`."""
    try:
        return read()
    except SummaryFieldError as exc:
        raise exc.under(prefix) if exc.key else SummaryFieldError(prefix, exc.value, exc.expected) from None


@dataclass(frozen=True, kw_only=True)
class EffectSummary:
    """One change's effect on one metric, with the change minus without it, paired by seed."""

    mean: float | None  # mean per-seed difference; None when no seed paired up
    std: float | None  # sample standard deviation of the differences; None below 2 pairs
    ci: float | None  # half width of the 95% interval of the mean (Student's t, n - 1 df); None below 2 pairs
    n: int  # seeds that paired up
    unpaired: int  # seeds where either run is missing, failed or lacks the number
    within_noise: bool  # the paired t-test does not reject "no effect" (or the effect is negligible)

    @classmethod
    def from_json(cls, data: Any) -> EffectSummary:
        number = {key: _get(data, key, _is_number, "a number or null", nullable=True) for key in ("mean", "std", "ci")}
        return cls(**{k: None if v is None else float(v) for k, v in number.items()},
                   n=_get(data, "n", _is_count, "a whole number >= 0"),
                   unpaired=_get(data, "unpaired", _is_count, "a whole number >= 0"),
                   within_noise=_get(data, "within_noise", lambda v: isinstance(v, bool), "true or false"))

    def to_json(self) -> dict[str, Any]:
        return {"mean": self.mean, "std": self.std, "ci": self.ci, "n": self.n, "unpaired": self.unpaired,
                "within_noise": self.within_noise}


@dataclass(frozen=True, kw_only=True)
class TableSummary:
    """One direction of one family: the start cell, its seeds, and each change's effect per metric."""

    start: str  # fixed/dense for leave one out, baseline/dense for add one in
    direction: str  # "without" (leave one out) or "with" (add one in): chimera/ablation.py's words
    seeds: tuple[int, ...]  # the start cell's finished seeds
    effects: Mapping[str, Mapping[str, EffectSummary]]  # change -> metric key -> effect, in the file's order

    @classmethod
    def from_json(cls, data: Any) -> TableSummary:
        raw = _get(data, "effects", lambda v: isinstance(v, Mapping), "an object")
        effects = {}
        for change, by_metric in raw.items():
            if not isinstance(by_metric, Mapping):
                raise SummaryFieldError(f"effects.{change}", by_metric, "an object")
            effects[change] = MappingProxyType({
                metric: _nested(f"effects.{change}.{metric}", lambda e=effect: EffectSummary.from_json(e))
                for metric, effect in by_metric.items()})
        return cls(start=_get(data, "start", lambda v: isinstance(v, str), "a string"),
                   direction=_get(data, "direction", lambda v: isinstance(v, str), "a string"),
                   seeds=tuple(_get(data, "seeds", lambda v: isinstance(v, list) and all(map(_is_count, v)),
                                    "a list of seeds")),
                   effects=MappingProxyType(effects))

    def to_json(self) -> dict[str, Any]:
        return {"start": self.start, "direction": self.direction, "seeds": list(self.seeds),
                "effects": {change: {metric: effect.to_json() for metric, effect in by_metric.items()}
                            for change, by_metric in self.effects.items()}}


@dataclass(frozen=True, kw_only=True)
class AblationSummary:
    """A whole ablation.json: where its runs come from, the noise rule, and one table per (start, direction)."""

    runs: int  # records the report read
    profiles: tuple[str, ...]
    devices: tuple[str, ...]
    torch: tuple[str, ...]  # torch versions the runs used
    noise_rule: str  # what `within_noise` means, in words
    tables: tuple[TableSummary, ...]

    def table(self, direction: str) -> TableSummary | None:
        """The first table in `direction` ("without": leave one out; "with": add one in), None if there is none."""
        return next((t for t in self.tables if t.direction == direction), None)

    @classmethod
    def from_json(cls, data: Any, path: Path | str = "<ablation summary>") -> AblationSummary:
        """The typed summary of parsed JSON; one ChimeraError line naming `path` and the key when malformed."""
        try:
            tables = _get(data, "tables", lambda v: isinstance(v, list), "a list")
            return cls(runs=_get(data, "runs", _is_count, "a whole number >= 0"),
                       profiles=_strings(data, "profiles"), devices=_strings(data, "devices"),
                       torch=_strings(data, "torch"),
                       noise_rule=_get(data, "noise_rule", lambda v: isinstance(v, str), "a string"),
                       tables=tuple(_nested(f"tables[{i}]", lambda t=table: TableSummary.from_json(t))
                                    for i, table in enumerate(tables)))
        except SummaryFieldError as exc:
            where = f"{exc}" if exc.key else f"the file is {exc.value!r:.60}, expected an object"
            raise ChimeraError(f"{path}: not an ablation summary as chimera report writes it ({where}); {FIX}") \
                from None

    def to_json(self) -> dict[str, Any]:
        """Plain data in the file's key order: json.dumps(..., indent=2) plus a newline is the file."""
        return {"runs": self.runs, "profiles": list(self.profiles), "devices": list(self.devices),
                "torch": list(self.torch), "noise_rule": self.noise_rule,
                "tables": [table.to_json() for table in self.tables]}


def load_ablation_summary(path: Path | str) -> AblationSummary:
    """Read an ablation summary (a report's ablation.json, chimera/analysis/ablation-ci.json); one ChimeraError
    line naming the file (and key) when it is absent, unreadable or malformed."""
    path = Path(path)
    return AblationSummary.from_json(read_json(path, "ablation summary", fix=FIX), path)
