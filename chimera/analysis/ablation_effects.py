"""Which change of the fix carries its result: effects measured from an ablation family's records.

Every effect is paired by seed, the same seed's run with and without the change, so the data subsets,
the initialisation and the batch order cancel out of the difference:

    leave one out (the fixed setup minus one change):  effect = fixed - fixed-without-change
    add one in (the baseline plus one change):          effect = baseline-with-change - baseline

so in both tables an effect is "with the change minus without it". It is reported as the mean of the
per-seed differences ± the half width of its 95% confidence interval (t_{0.975, n-1} · s / sqrt(n)), and
marked as within seed noise when that interval contains zero: a two-sided paired t-test at the 5% level
(or fewer than two seeds pair up). At 3 seeds the interval is 4.3 standard errors wide on each side, so
an effect must be steady across seeds to count. Records in, tables out: nothing here trains.
"""

from __future__ import annotations

import statistics
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from chimera.ablation import ADD_IN, CHANGES, LEAVE_OUT, parse_variant_name
from chimera.analysis.student_t import ci_half_width
from chimera.records.ablation_summary import AblationSummary, EffectSummary, TableSummary
from chimera.records.record import RunRecord

NOISE_MARK = "≈"  # after an effect within seed noise
CONFIDENCE = 0.95  # within noise: the two-sided CONFIDENCE interval of the mean paired difference contains 0


def _best_val_loss(record: RunRecord) -> float | None:
    values = [v for _, v in record.curve("val_loss")]
    return min(values) if values else None


def _final(key: str) -> Callable[[RunRecord], float | None]:
    return lambda record: getattr(record.final_metrics, key)


def _gap(record: RunRecord) -> float | None:
    val, train = record.final_metrics.val_loss, record.final_metrics.clean_train_loss
    return None if val is None or train is None else val - train


@dataclass(frozen=True)
class Metric:
    """One column of the ablation table: how to read it off a record and which way is better."""

    key: str
    label: str
    read: Callable[[RunRecord], float | None]
    better: str  # "higher", "lower" or "" (neither: clean train loss should stay up, not go to an extreme)
    spec: str  # format of values and effects
    negligible: float = 5e-4  # an effect smaller than this is none, however steady (half the last shown digit)


METRICS: tuple[Metric, ...] = (
    Metric("best_val_loss", "best val loss", _best_val_loss, "lower", "+.3f"),
    Metric("test_acc", "test acc", _final("test_acc"), "higher", "+.3f"),
    Metric("clean_train_loss", "clean train loss", _final("clean_train_loss"), "", "+.3f"),
    Metric("gap", "generalisation gap (val - clean train loss)", _gap, "lower", "+.3f"),
)


def steps_to(target: float) -> Metric:
    """Steps to the first evaluation with val acc >= target (None when a run never got there)."""
    def read(record: RunRecord) -> float | None:
        entry = record.target_time("val_acc", target)
        return float(entry.step) if entry and entry.reached else None
    return Metric(f"steps_to_{target:g}", f"steps to val acc ≥ {target:g}", read, "lower", "+.0f", negligible=0.5)


@dataclass(frozen=True)
class Effect:
    """One change's effect on one metric: per-seed differences (with - without) and their summary."""

    change: str
    metric: str
    differences: tuple[float, ...]
    unpaired: int  # seeds where either run is missing, failed or lacks the number (e.g. target never reached)
    negligible: float = 0.0  # the metric's smallest effect worth a mention

    @property
    def mean(self) -> float | None:
        return statistics.mean(self.differences) if self.differences else None

    @property
    def std(self) -> float | None:
        return statistics.stdev(self.differences) if len(self.differences) > 1 else None

    @property
    def ci(self) -> float | None:
        """Half width of the CONFIDENCE interval of the mean (Student's t, n - 1 degrees of freedom)."""
        return ci_half_width(self.std, len(self.differences), CONFIDENCE) if len(self.differences) > 1 else None

    @property
    def within_noise(self) -> bool:
        """The paired t-test does not reject "no effect" (|mean| <= the interval's half width), or the effect
        is below the metric's negligible size, or fewer than two seeds pair up."""
        if len(self.differences) < 2 or abs(self.mean) < self.negligible:
            return True
        return abs(self.mean) <= self.ci


@dataclass(frozen=True)
class AblationTable:
    """One direction of one family: the start cell's values and every change's effects."""

    start: str  # fixed/dense for leave-one-out, baseline/dense for add-one-in
    direction: str  # LEAVE_OUT or ADD_IN
    seeds: tuple[int, ...]  # the start cell's finished seeds
    start_values: dict[str, list[float | None]]  # metric key -> per-seed value of the start cell
    effects: dict[str, dict[str, Effect]]  # change -> metric key -> effect
    metrics: tuple[Metric, ...]


def _finished(record: RunRecord) -> bool:
    return record.status in ("completed", "stopped_early")


def _by_seed(records: Sequence[RunRecord]) -> dict[int, RunRecord]:
    return {r.seed: r for r in records if _finished(r)}


def effect_of(change: str, metric: Metric, with_change: Mapping[int, RunRecord],
              without: Mapping[int, RunRecord]) -> Effect:
    diffs, unpaired = [], 0
    for seed in sorted(set(with_change) | set(without)):  # a seed only one side finished counts as unpaired
        a = metric.read(with_change[seed]) if seed in with_change else None
        b = metric.read(without[seed]) if seed in without else None
        if a is None or b is None:
            unpaired += 1
        else:
            diffs.append(a - b)
    return Effect(change=change, metric=metric.key, differences=tuple(diffs), unpaired=unpaired,
                  negligible=metric.negligible)


def ablation_tables(by_cell: Mapping[str, Sequence[RunRecord]],
                    metrics: Sequence[Metric] = METRICS) -> list[AblationTable]:
    """Every (start cell, direction) with both the start's records and at least one variant's, in CHANGES order."""
    groups: dict[tuple[str, str], dict[str, list[RunRecord]]] = {}
    for cell, records in by_cell.items():
        parsed = parse_variant_name(cell)
        if parsed and parsed.start in by_cell:
            groups.setdefault((parsed.start, parsed.direction), {})[parsed.change] = list(records)
    tables = []
    for (start, direction), variants in sorted(groups.items(), key=lambda item: (item[0][1] != LEAVE_OUT, item[0])):
        start_runs = _by_seed(by_cell[start])
        effects = {}
        for change in (c.name for c in CHANGES if c.name in variants):
            runs = _by_seed(variants[change])
            with_change, without = (start_runs, runs) if direction == LEAVE_OUT else (runs, start_runs)
            effects[change] = {m.key: effect_of(change, m, with_change, without) for m in metrics}
        tables.append(AblationTable(start=start, direction=direction, seeds=tuple(sorted(start_runs)),
                                    start_values={m.key: [m.read(r) for _, r in sorted(start_runs.items())]
                                                  for m in metrics},
                                    effects=effects, metrics=tuple(metrics)))
    return tables


def format_effect(effect: Effect, spec: str) -> str:
    """`+0.031 ± 0.010` (mean ± 95% interval), then `≈` when within seed noise, and `(k of n seeds)` when some
    did not pair."""
    if effect.mean is None:
        return "not reached" if effect.unpaired else "—"
    text = format(effect.mean, spec)
    if effect.ci is not None:
        text += f" ± {format(effect.ci, spec.lstrip('+'))}"
    if effect.within_noise:
        text += f" {NOISE_MARK}"
    if effect.unpaired:
        text += f" ({len(effect.differences)} of {len(effect.differences) + effect.unpaired} seeds)"
    return text


def format_start_value(values: Sequence[float | None], spec: str) -> str:
    """The start cell's own value: mean ± the same 95% interval, `(k of n seeds)` when some lack it."""
    present = [v for v in values if v is not None]
    if not present:
        return "not reached" if values else "—"
    text = format(statistics.mean(present), spec.lstrip("+"))
    if len(present) > 1:
        text += f" ± {format(ci_half_width(statistics.stdev(present), len(present), CONFIDENCE), spec.lstrip('+'))}"
    return text if len(present) == len(values) else f"{text} ({len(present)} of {len(values)} seeds)"


def table_title(table: AblationTable) -> str:
    what = "leave one out: the fix minus one change" if table.direction == LEAVE_OUT else \
        "add one in: the baseline plus one change"
    seeds = f"{len(table.seeds)} seed{'s' if len(table.seeds) != 1 else ''}"
    return f"{table.start}, {what} ({seeds})"


def table_rows(table: AblationTable) -> tuple[tuple[str, ...], list[list[str]]]:
    """Header and rows: the start cell's values first, then each change's effect (with - without)."""
    helps = {"lower": " (− helps)", "higher": " (+ helps)", "": ""}
    header = ("change", *(f"Δ {m.label}{helps[m.better]}" for m in table.metrics))
    rows = [[f"{table.start} itself",
             *(format_start_value(table.start_values[m.key], m.spec) for m in table.metrics)]]
    for change, by_metric in table.effects.items():
        rows.append([change, *(format_effect(by_metric[m.key], m.spec) for m in table.metrics)])
    return header, rows


def carrying_changes(table: AblationTable, metric: str) -> list[tuple[str, float]]:
    """Changes whose effect on `metric` is outside seed noise, largest first (docs/findings.md's "which matter")."""
    found = [(change, e[metric].mean) for change, e in table.effects.items()
             if e[metric].mean is not None and not e[metric].within_noise]
    return sorted(found, key=lambda item: -abs(item[1]))


def summary(tables: Sequence[AblationTable], records: Sequence[RunRecord] = ()) -> AblationSummary:
    """What ablation.json holds (its `to_json()`): where the runs come from, then per table, change and metric:
    mean, std, ci (the interval's half width), n, within_noise. The doctor cites the published copy
    (chimera/analysis/ablation-ci.json) through chimera/records/ablation_summary.py."""
    return AblationSummary(
        runs=len(records), profiles=tuple(sorted({r.profile for r in records})),
        devices=tuple(sorted({str(r.env.device_name) for r in records})),
        torch=tuple(sorted({str(r.env.torch) for r in records})),
        noise_rule=f"paired t-test: the two-sided {CONFIDENCE:.0%} interval of the mean per-seed difference, "
                   "mean ± t_{(1+c)/2, n-1} · std / sqrt(n), contains 0; or < 2 seeds; or |mean| below "
                   "half the last digit shown",
        tables=tuple(TableSummary(start=t.start, direction=t.direction, seeds=t.seeds,
                                  effects={change: {key: EffectSummary(mean=e.mean, std=e.std, ci=e.ci,
                                                                       n=len(e.differences), unpaired=e.unpaired,
                                                                       within_noise=e.within_noise)
                                                    for key, e in by_metric.items()}
                                           for change, by_metric in t.effects.items()})
                     for t in tables))


def effects_figure(tables: Sequence[AblationTable], path: Path, metrics: Sequence[str] = ("test_acc", "best_val_loss"),
                   ) -> Path:
    """One row per table, one column per metric: each change's mean effect with its 95% interval as an error
    bar; hollow markers are within seed noise (the bar crosses zero, or the effect is negligible)."""
    from matplotlib.figure import Figure  # only when a report is drawn

    fig = Figure(figsize=(5.0 * len(metrics), 0.45 * len(CHANGES) * len(tables) + 1.5), dpi=100, layout="constrained")
    axes = fig.subplots(len(tables), len(metrics), squeeze=False)
    for row, table in enumerate(tables):
        changes = list(table.effects)
        for col, key in enumerate(metrics):
            ax = axes[row][col]
            label = next(m.label for m in table.metrics if m.key == key)
            for y, change in enumerate(changes):
                effect = table.effects[change][key]
                if effect.mean is None:
                    continue
                colour = "tab:blue" if table.direction == LEAVE_OUT else "tab:orange"
                ax.errorbar(effect.mean, y, xerr=effect.ci or 0.0, fmt="o", color=colour,
                            markerfacecolor="white" if effect.within_noise else colour, capsize=3)
            ax.axvline(0.0, color="grey", linewidth=0.8)
            ax.set_yticks(range(len(changes)), changes)
            ax.invert_yaxis()
            ax.set_xlabel(f"Δ {label} (with − without the change)")
            ax.set_title(f"{table.start}: {'leave one out' if table.direction == LEAVE_OUT else 'add one in'}",
                         fontsize=9)
    fig.savefig(path, dpi=100, format="png")
    return path


def is_variant(cell: str) -> bool:
    return parse_variant_name(cell) is not None


def metrics_for(records: Sequence[RunRecord]) -> tuple[Metric, ...]:
    """METRICS plus steps to the records' middle val-acc target (0.75 in both profiles): steps, not seconds,
    because an ablation's runs may share a machine and only their steps are comparable across load."""
    targets = sorted({e.target for r in records for e in (r.time_to_target or []) if e.metric == "val_acc"})
    return (*METRICS, steps_to(targets[len(targets) // 2])) if targets else METRICS


def report_blocks(tables: Sequence[AblationTable], image: str | None) -> list[tuple]:
    """The report's ablation section: one table per (start cell, direction), the rule, the figure."""
    if not tables:
        return []
    blocks: list[tuple] = [
        ("h2", "Ablation: which change of the fix matters"),
        ("p", "Each effect is *with the change minus without it*, paired by seed (same data subsets, "
              f"initialisation and batch order), as mean ± the half width of its {CONFIDENCE:.0%} confidence "
              "interval over the seeds (Student's t with n − 1 degrees of freedom: ± 4.30 standard errors at 3 "
              "seeds). Leave one out: the fixed setup against itself with one change set back to the baseline's "
              "value. Add one in: the baseline with one change of the fix against the baseline. The first row of "
              "each table is the start cell's own values (mean ± the same interval). "
              f"`{NOISE_MARK}` marks an effect within seed noise (the interval contains zero: a paired t-test "
              "does not reject it at the 5% level, or fewer than two seeds) or too small to show. Scale (rows, "
              "length, steps) is the start cell's own in every variant."),
    ]
    for table in tables:
        header, rows = table_rows(table)
        blocks += [("h3", table_title(table)), ("table", header, rows)]
    if image:
        blocks.append(("img", image, "Effect of each change, leave one out and add one in"))
    return blocks


__all__ = ["ADD_IN", "LEAVE_OUT", "METRICS", "AblationTable", "Effect", "Metric", "ablation_tables",
           "carrying_changes", "effects_figure", "format_effect", "format_start_value", "is_variant", "metrics_for",
           "report_blocks", "steps_to", "summary", "table_rows", "table_title"]
