"""Ours against the peer, target by target: the time-to-quality benchmark's extra_info, as a pure function.

Kept apart from the benchmark (and from transformers and torch) so its arithmetic is unit-tested on
hand-made entries (tests/unit/test_bench_ttq.py) instead of on a run that takes minutes.
"""

from __future__ import annotations

from typing import Any

from chimera.records.record import TargetTime

HEADLINE_TARGET = ("val_acc", 0.75)  # extra_info["ratio_at_0.75"]: the target docs/performance.md quotes


def target_key(metric: str, target: float) -> str:
    """`val_acc@0.75`: one extra_info key per target, readable in the JSON."""
    return f"{metric}@{target:g}"


def _ratio(peer: float | None, ours: float | None) -> float | None:
    """peer / ours; null when either side has no time (never reached, or no clock) or ours is 0."""
    if peer is None or ours is None or ours <= 0:
        return None
    return peer / ours


def _faster(ratio: float | None) -> str | None:
    if ratio is None:
        return None
    return "tie" if ratio == 1 else ("ours" if ratio > 1 else "peer")


def _by_target(entries: list[TargetTime]) -> dict[tuple[str, float], TargetTime]:
    # targets come from TOML floats on both sides; round so 0.75 and 0.7500000001 meet
    return {(entry.metric, round(entry.target, 9)): entry for entry in entries}


def compare_time_to_target(ours: list[TargetTime], peer: list[TargetTime]) -> dict[str, Any]:
    """extra_info for the benchmark from two `chimera.records.time_to_target.time_to_target` lists.

    Per target (ours' order, then any target only the peer timed): both sides' step, samples,
    train_s and wall_s, `wall_ratio` = peer wall_s / ours wall_s (> 1: ours reached it sooner; null
    when either never reached it), `train_ratio` the same over optimiser-step seconds, and `faster`
    (`ours`, `peer`, `tie`, or null). Plus the headline `ratio_at_0.75`.
    """
    ours_by, peer_by = _by_target(ours), _by_target(peer)
    keys = list(ours_by) + [key for key in peer_by if key not in ours_by]
    targets: dict[str, dict[str, Any]] = {}
    for key in keys:
        row: dict[str, Any] = {"metric": key[0], "target": key[1]}
        for side, entries in (("ours", ours_by), ("peer", peer_by)):
            entry = entries.get(key)
            for field in ("step", "samples", "train_s", "wall_s"):
                row[f"{side}_{field}"] = getattr(entry, field) if entry else None
        row["wall_ratio"] = _ratio(row["peer_wall_s"], row["ours_wall_s"])
        row["train_ratio"] = _ratio(row["peer_train_s"], row["ours_train_s"])
        row["faster"] = _faster(row["wall_ratio"])
        targets[target_key(*key)] = row
    headline = targets.get(target_key(*HEADLINE_TARGET), {})
    return {"targets": targets, f"ratio_at_{HEADLINE_TARGET[1]:g}": headline.get("wall_ratio")}


def summary_lines(comparison: dict[str, Any]) -> list[str]:
    """One line per target for the session's "bench summary" section."""

    def side(row: dict[str, Any], name: str) -> str:
        step, wall_s = row[f"{name}_step"], row[f"{name}_wall_s"]
        if step is None:
            return f"{name} never"
        return f"{name} step {step} in " + ("? s" if wall_s is None else f"{wall_s:.1f} s")

    def ratio(row: dict[str, Any]) -> str:
        return "n/a" if row["wall_ratio"] is None else f"{row['wall_ratio']:.2f}"

    return [f"time to {key}: {side(row, 'ours')}, {side(row, 'peer')}; peer/ours wall {ratio(row)}"
            for key, row in comparison["targets"].items()]
