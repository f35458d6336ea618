"""The measured tables of README.md and docs/, each rendered from committed files by the code its numbers came from.

Each renderer takes the committed file or folder it reads (run records, or a pytest-benchmark JSON) and
returns the table's markdown lines; none trains or measures. chimera/analysis/doc_tables.py names which
renderer draws which marked table and holds the pages to them (`chimera tables check`).
"""

from __future__ import annotations

import functools
from collections import Counter
from collections.abc import Sequence
from pathlib import Path

from chimera.ablation import CHANGES, LEAVE_OUT, variant_name
from chimera.analysis.ablation_effects import (
    AblationTable,
    ablation_tables,
    format_effect,
    format_start_value,
    metrics_for,
)
from chimera.analysis.bench_tables import cells_table, ttq_table
from chimera.analysis.doctor import diagnose
from chimera.analysis.doctor_checks import is_reference
from chimera.analysis.report import fmt_stat, group_by_cell, seeds_label, time_to_target_cell
from chimera.errors import ChimeraError
from chimera.records.bench_report import load_bench_report
from chimera.records.record import RunRecord
from chimera.records.store import find_records, load_record

FULL_RESULTS_HEADER = ("cell", "seeds", "steps", "min clean train loss", "final clean train loss", "val loss",
                       "val acc", "test acc", "best step", "time to val acc {target}", "doctor")
HEADLINE_METRICS = ("gap", "test_acc", "clean_train_loss", "best_val_loss")  # the ablation table's first columns
MINUS = "−"  # the docs' typographic minus, in numbers and formulas


def _records(folder: Path) -> list[tuple[Path, RunRecord]]:
    paths = find_records([folder])
    if not paths:
        raise ChimeraError(f"{folder}: no run records (record.json) under it")
    return [(path, load_record(path)) for path in paths]


def _row(cells: Sequence[str]) -> str:
    return "| " + " | ".join(cells) + " |"


def full_results(folder: Path, target: float = 0.75) -> list[str]:
    """One row per cell: seeds (with the status of a run that did not finish), steps trained, clean train loss
    (minimum over the run and final), val loss, val and test accuracy, best step, time to the target val accuracy
    (wall seconds, evaluations included) and the doctor's verdict. Mean ± sample std over seeds where they differ."""
    loaded = _records(folder)
    references = [r for _, r in loaded if is_reference(r)]
    header = [h.format(target=f"{target:g}") for h in FULL_RESULTS_HEADER]
    lines = [_row(header), "|" + "---|" * len(header)]
    for cell, records in group_by_cell(loaded).items():
        metrics = [r.final_metrics for r in records]
        min_train = [min(v for _, v in r.curve("clean_train_loss")) for r in records]
        lines.append(_row([cell, seeds_label(records), ", ".join(str(m.steps) for m in metrics),
                           fmt_stat(min_train, ".3g"), fmt_stat([m.clean_train_loss for m in metrics], ".3g"),
                           fmt_stat([m.val_loss for m in metrics], ".3g"),
                           fmt_stat([m.val_acc for m in metrics], ".3f"),
                           fmt_stat([m.test_acc for m in metrics], ".3f"),
                           ", ".join(str(m.best_step) for m in metrics),
                           time_to_target_cell(records, "val_acc", target), verdict(records, references)]))
    return lines


def verdict(records: Sequence[RunRecord], references: Sequence[RunRecord]) -> str:
    """`N error(s): code` / warnings by code over the cell's records; `clean` when neither."""
    counts: Counter = Counter()
    for record in records:
        for finding in diagnose(record, references=list(references)):
            if finding.severity in ("error", "warning"):
                counts[(finding.severity, finding.code)] += 1
    if not counts:
        return "clean"
    n = len(records)
    return ", ".join(f"{severity} `{code}` ({k} of {n})" for (severity, code), k in sorted(counts.items()))


def ablation(folder: Path, direction: str = LEAVE_OUT) -> list[str]:
    """One direction of the ablation: the headline metrics first, the start cell's own values, then the changes
    from the one that narrows the generalisation gap most; effects formatted by
    chimera/analysis/ablation_effects.py exactly as the report prints them."""
    loaded = _records(folder)
    by_cell = group_by_cell(loaded)
    tables = [t for t in ablation_tables(by_cell, metrics_for([r for _, r in loaded])) if t.direction == direction]
    if len(tables) != 1:
        raise ChimeraError(f"{folder}: {len(tables)} ablation tables in direction {direction!r}, expected 1")
    table = tables[0]
    metrics = sorted(table.metrics, key=lambda m: (m.key not in HEADLINE_METRICS,
                                                   HEADLINE_METRICS.index(m.key) if m.key in HEADLINE_METRICS
                                                   else 0))
    lines = [_row(["change", *(f"Δ {m.label}".replace(" - ", f" {MINUS} ") for m in metrics)]),
             "|" + "---|" * (len(metrics) + 1),
             _row([f"({table.start} itself)",
                   *(format_start_value(table.start_values[m.key], m.spec) for m in metrics)])]
    start_config = by_cell[table.start][0].config  # the fix's values (leave one out) or the baseline's (add one in)
    source_config = start_config if direction == LEAVE_OUT else None
    for change in _by_gap(table):
        config = source_config or by_cell[variant_name(table.start, direction, change)][0].config
        lines.append(_row([change_label(change, config),
                           *(format_effect(table.effects[change][m.key], m.spec).replace("-", MINUS)
                             for m in metrics)]))
    return lines


def _by_gap(table: AblationTable) -> list[str]:
    """Changes by their effect on the generalisation gap, most narrowing first; unmeasured ones last."""
    def key(change: str) -> tuple[bool, float]:
        mean = table.effects[change]["gap"].mean
        return mean is None, 0.0 if mean is None else mean
    return sorted(table.effects, key=key)


def change_label(name: str, config) -> str:
    """`width (d_model 128)`, `lr 1e-4`: the change and the value the fix gives it; a change of several keys
    (the schedule, augmentation) by its description."""
    change = next(c for c in CHANGES if c.name == name)
    words = name.replace("-", " ")
    if len(change.keys) != 1 or "*" in change.keys[0]:
        return change.description
    leaf = change.keys[0].rsplit(".", 1)[-1]
    value = _short(functools.reduce(getattr, change.keys[0].split("."), config))
    return f"{words} {value}" if leaf.replace("_", " ") == words else f"{words} ({leaf} {value})"


def _short(value) -> str:
    """`1e-4`, `1.5e-4` (as a config file writes them), `0.4`, `128`."""
    if isinstance(value, float) and 0 < abs(value) < 1e-3:
        mantissa, exponent = f"{value:e}".split("e")
        return f"{mantissa.rstrip('0').rstrip('.')}e{int(exponent)}"
    return f"{value:g}" if isinstance(value, float) else str(value)


def ci_seeds(folder: Path) -> list[str]:
    """The fast proxy over seeds: per cell its parameters, mean ± sample std of the final metrics (the restored
    best checkpoint where early stopping restores one) and the best steps, with how the runs ended."""
    lines = [_row(["cell", "params total / active", "clean train loss", "val loss", "val acc", "test acc",
                   "best step"]), "|---|---|---|---|---|---|---|"]
    for cell, records in group_by_cell(_records(folder)).items():
        metrics = [r.final_metrics for r in records]
        lines.append(_row([cell, _params(records), fmt_stat([m.clean_train_loss for m in metrics], ".3g"),
                           fmt_stat([m.val_loss for m in metrics], ".3g"),
                           fmt_stat([m.val_acc for m in metrics], ".3f"),
                           fmt_stat([m.test_acc for m in metrics], ".3f"), _best_steps(records)]))
    return lines


def _params(records: Sequence[RunRecord]) -> str:
    counts = {(r.params.total, r.params.active) for r in records}
    if len(counts) != 1:
        return "differ by seed"
    total, active = counts.pop()
    return f"{total:,} / same" if active == total else f"{total:,} / {active:,}"


def _span(values: Sequence[int]) -> str:
    low, high = min(values), max(values)
    return str(low) if low == high else f"{low}-{high}"


def _best_steps(records: Sequence[RunRecord]) -> str:
    """`560-640 (early stop in 5 of 5)`, or for runs without early stopping `20-40 (val minimum; trains on to
    200)`."""
    best = _span([r.final_metrics.best_step for r in records])
    if any(r.config.train.early_stopping for r in records):
        stopped = sum(bool(r.final_metrics.stopped_early) for r in records)
        return f"{best} (early stop in {stopped} of {len(records)})"
    return f"{best} (val minimum; trains on to {_span([r.final_metrics.steps for r in records])})"


def speed(bench_json: Path) -> list[str]:
    """How fast it trains: chimera/analysis/bench_tables.py's cells table (`bench/summarise.py --cells`)."""
    return cells_table(load_bench_report(bench_json))


def time_to_quality(bench_json: Path) -> list[str]:
    """Ours against the peer's trainer: the time-to-quality table (`bench/summarise.py --ttq`) of the same JSON."""
    return ttq_table(load_bench_report(bench_json))
