"""The two sides of `chimera diff`, each a record, a run folder or a folder of run folders, paired run by run.

One record on each side: those two, whatever their cells. Otherwise records pair by cell and profile; where
either side holds several seeds of a cell, by seed as well. What pairs with nothing is named, never dropped.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from chimera.errors import ChimeraError
from chimera.records.record import RunRecord
from chimera.records.store import find_records, load_record


@dataclass(frozen=True)
class Located:
    """A record and the file it was read from."""

    path: Path
    record: RunRecord

    @property
    def name(self) -> str:
        r = self.record
        return f"{r.cell} {r.profile} s{r.seed}"


@dataclass(frozen=True)
class Pair:
    a: Located
    b: Located

    @property
    def name(self) -> str:
        a, b = self.a.record, self.b.record
        if (a.cell, a.profile) != (b.cell, b.profile):
            return f"{self.a.name} vs {self.b.name}"
        return f"{a.cell} {a.profile} s{a.seed}" + (f" vs s{b.seed}" if a.seed != b.seed else "")


@dataclass(frozen=True)
class Pairing:
    pairs: list[Pair]
    only_a: list[Located] = field(default_factory=list)  # records of A that pair with none of B
    only_b: list[Located] = field(default_factory=list)


def load_side(path: Path) -> list[Located]:
    """Every record under `path` (a record.json, a run folder, or a folder searched recursively), sorted by path."""
    return [Located(found, load_record(found)) for found in find_records([path])]


def pair_records(a: Sequence[Located], b: Sequence[Located], *, names: tuple[str, str] = ("A", "B")) -> Pairing:
    """Pair the records of two sides (see the module docstring); ChimeraError when nothing pairs or a side holds
    one cell, profile and seed twice."""
    if len(a) == 1 and len(b) == 1:
        return Pairing([Pair(a[0], b[0])])
    groups_a, groups_b = _by_cell(a, names[0]), _by_cell(b, names[1])
    pairs, only_a, only_b = [], [], []
    for key in sorted(groups_a.keys() | groups_b.keys()):
        side_a, side_b = groups_a.get(key, {}), groups_b.get(key, {})
        if len(side_a) == 1 and len(side_b) == 1:
            pairs.append(Pair(*side_a.values(), *side_b.values()))
            continue
        pairs += [Pair(side_a[seed], side_b[seed]) for seed in sorted(side_a.keys() & side_b.keys())]
        only_a += [side_a[seed] for seed in sorted(side_a.keys() - side_b.keys())]
        only_b += [side_b[seed] for seed in sorted(side_b.keys() - side_a.keys())]
    if not pairs:
        raise ChimeraError(f"no record of {names[0]} has the cell and profile of one of {names[1]} "
                           f"({names[0]}: {_cells(groups_a)}; {names[1]}: {_cells(groups_b)})")
    return Pairing(pairs, only_a, only_b)


def _by_cell(side: Sequence[Located], name: str) -> dict[tuple[str, str], dict[int, Located]]:
    groups: dict[tuple[str, str], dict[int, Located]] = {}
    for located in side:
        r = located.record
        seeds = groups.setdefault((r.cell, r.profile), {})
        if r.seed in seeds:
            raise ChimeraError(f"{name}: two records of {located.name} ({seeds[r.seed].path} and {located.path}); "
                               "give the folder of one run of each")
        seeds[r.seed] = located
    return groups


def _cells(groups: dict[tuple[str, str], dict[int, Located]]) -> str:
    return ", ".join(f"{cell} {profile}" for cell, profile in sorted(groups))
