"""Which part of the fix matters: ablation variants generated from the differences between two cells.

The fix changes several settings at once. A *change* is a group of config keys that move together (warmup,
decay and early stopping are one change, not five). For a base cell (the fixed setup) held against another
(the baseline), every change in which their resolved configs differ yields two ordinary cells:

    leave one out   <base>-without-<change>   the base with that change's keys set back to the other's values
    add one in      <other>-with-<change>     the other with that change's keys taken from the base

Keys that set a run's *scale* (data sizes, steps, batch, what is evaluated) are not part of the fix, and a
profile may scale the two cells differently; each variant keeps its own end's scale. A difference in any
other key is an error, so a new setting of the fix cannot be left out of the ablation unnoticed.

Only this module knows the naming scheme, both ways: `variant_name` and `parse_variant_name`.
"""

from __future__ import annotations

import dataclasses
import fnmatch
from dataclasses import dataclass
from typing import Any

from chimera.config import SECTIONS, RunConfig, build_section
from chimera.errors import ChimeraError

LEAVE_OUT, ADD_IN = "without", "with"  # the word in a variant's name, and its direction


@dataclass(frozen=True)
class Change:
    """One setting group of the fix: its name in variant names and the config keys it moves (patterns)."""

    name: str
    keys: tuple[str, ...]
    description: str

    def covers(self, key: str) -> bool:
        return any(fnmatch.fnmatchcase(key, pattern) for pattern in self.keys)


# The nine changes of the fix (docs/findings.md, "The story"), in the order the story tells them.
CHANGES: tuple[Change, ...] = (
    Change("width", ("model.d_model",), "model width (d_model)"),
    Change("depth", ("model.n_layers",), "number of encoder layers"),
    Change("ff-width", ("model.d_ff",), "feed-forward hidden width"),
    Change("dropout", ("model.dropout",), "dropout rate"),
    Change("weight-decay", ("train.weight_decay",), "AdamW weight decay"),
    Change("lr", ("train.lr",), "peak learning rate"),
    Change("label-smoothing", ("train.label_smoothing",), "label smoothing"),
    Change("schedule", ("train.schedule", "train.warmup_steps", "train.early_stopping", "train.patience",
                        "train.min_delta", "train.eval_every"),
           "warmup + decay, validation cadence and early stopping"),
    Change("augmentation", ("augment.*",), "training-only text augmentation"),
)
# How big and how measured a run is: set per profile, never part of the fix.
SCALE_KEYS = ("data.*", "train.max_steps", "train.batch_size", "train.checkpoint_every", "train.precision",
              "evaluation.*")
CHANGE_NAMES = tuple(change.name for change in CHANGES)


@dataclass(frozen=True)
class VariantName:
    """What a variant's name says: which end it starts from, in which direction, with which change."""

    cell: str  # the variant's own name
    start: str  # the cell it is built from: the base (leave one out) or the other (add one in)
    direction: str  # LEAVE_OUT or ADD_IN
    change: str  # a name from CHANGE_NAMES


def variant_name(start: str, direction: str, change: str) -> str:
    return f"{start}-{direction}-{change}"


def parse_variant_name(cell: str) -> VariantName | None:
    """The parts of a variant's name, or None for a name this scheme did not make."""
    for direction in (LEAVE_OUT, ADD_IN):  # "-without-" first: "-with-" would not match it anyway
        start, sep, change = cell.rpartition(f"-{direction}-")
        if sep and start and change in CHANGE_NAMES:
            return VariantName(cell=cell, start=start, direction=direction, change=change)
    return None


def _flat(config: RunConfig) -> dict[str, Any]:
    return {f"{section}.{key}": value for section in SECTIONS
            for key, value in dataclasses.asdict(getattr(config, section)).items()}


def differing_changes(base: RunConfig, other: RunConfig) -> list[Change]:
    """The changes in which the two resolved configs differ, in CHANGES order.

    Raises when they differ in a key that is neither a change nor the scale: an ablation that silently kept
    one difference in every variant would misattribute its effect.
    """
    ours, theirs = _flat(base), _flat(other)
    differing = [key for key in ours if ours[key] != theirs[key]]
    scale = [key for key in differing if any(fnmatch.fnmatchcase(key, pattern) for pattern in SCALE_KEYS)]
    uncovered = [key for key in differing if key not in scale and not any(c.covers(key) for c in CHANGES)]
    if uncovered:
        raise ChimeraError(f"ablation {base.cell} against {other.cell}: they differ in {', '.join(uncovered)}, which "
                           "no change of chimera/ablation.py covers; add it to a change (or to SCALE_KEYS)")
    return [change for change in CHANGES if any(change.covers(key) for key in differing)]


def _with_keys_from(config: RunConfig, source: RunConfig, change: Change, name: str) -> RunConfig:
    """`config` with `change`'s keys copied from `source`, validated like any cell, named `name`."""
    theirs = _flat(source)
    sections: dict[str, Any] = {}
    for section, cls in SECTIONS.items():
        values = dataclasses.asdict(getattr(config, section))
        moved = {key: theirs[f"{section}.{key}"] for key in values if change.covers(f"{section}.{key}")}
        if moved:
            sections[section] = build_section(cls, {**values, **moved}, where=f"ablation variant {name} [{section}]")
    return dataclasses.replace(config, cell=name, **sections)


def ablation_variants(base: RunConfig, other: RunConfig) -> list[RunConfig]:
    """Leave-one-out variants of `base`, then add-one-in variants of `other`, one pair per differing change."""
    changes = differing_changes(base, other)
    leave_out = [_with_keys_from(base, other, c, variant_name(base.cell, LEAVE_OUT, c.name)) for c in changes]
    add_in = [_with_keys_from(other, base, c, variant_name(other.cell, ADD_IN, c.name)) for c in changes]
    return leave_out + add_in
