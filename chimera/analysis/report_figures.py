"""The report's figures, drawn from run records with matplotlib's object API (Agg canvas, no pyplot state).

Curve panels follow the cells in grid order of their names `ROW/COLUMN` (baseline|fixed x dense|moe,
then reference/bow), two per row (three from five cells on), so the code never branches on a cell.
Several seeds of a cell are drawn as their mean with a min-max band; a step contributes where at least
one seed evaluated it (early stopping ends seeds at different steps).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np
from matplotlib.axes import Axes
from matplotlib.figure import Figure

from chimera.records.record import RunRecord

DPI = 100
FIGSIZES = {  # inches; the saved PNG is exactly figsize x DPI pixels
    "loss_curves": (11.0, 8.0), "accuracy_curves": (11.0, 8.0),
    "throughput": (8.0, 4.5), "expert_utilisation": (11.0, 4.5), "time_to_quality": (9.0, 5.5),
}
TRAIN_COLOUR, VAL_COLOUR = "tab:blue", "tab:orange"
PALETTE = ("tab:blue", "tab:orange", "tab:green", "tab:red", "tab:purple", "tab:brown", "tab:pink",
           "tab:grey", "tab:olive", "tab:cyan")  # bars: FFN kinds, experts (cycled beyond ten)


def grid_of(cells: Sequence[str]) -> tuple[list[str], list[str]]:
    """Sorted row and column names of cells named `row/column`."""
    return sorted({c.split("/")[0] for c in cells}), sorted({c.split("/")[1] for c in cells})


def seed_band(records: Sequence[RunRecord], key: str) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Steps, mean, min and max of one curve metric across the seeds of a cell."""
    by_step: dict[int, list[float]] = {}
    for record in records:
        for step, value in record.curve(key):
            by_step.setdefault(step, []).append(value)
    steps = np.array(sorted(by_step), dtype=float)
    values = [np.array(by_step[int(s)]) for s in steps]
    return (steps, np.array([v.mean() for v in values]), np.array([v.min() for v in values]),
            np.array([v.max() for v in values]))


def _new_figure(name: str) -> Figure:
    return Figure(figsize=FIGSIZES[name], dpi=DPI, layout="constrained")


def _save(fig: Figure, path: Path) -> Path:
    fig.savefig(path, dpi=DPI, format="png")
    return path


def _draw_band(ax: Axes, records: Sequence[RunRecord], key: str, label: str, colour: str) -> None:
    steps, mean, low, high = seed_band(records, key)
    if not steps.size:
        return
    several = len(records) > 1
    ax.plot(steps, mean, color=colour, lw=1.8, label=f"{label} (mean over seeds)" if several else label)
    if several:
        ax.fill_between(steps, low, high, color=colour, alpha=0.2, lw=0, label=f"{label}, min-max over seeds")


def curve_grid(by_cell: Mapping[str, Sequence[RunRecord]], path: Path, *, name: str, keys: tuple[str, str],
               labels: tuple[str, str], ylabel: str, title: str, mark_best: bool) -> Path:
    """One panel per cell (in the order of `by_cell`), all panels on the same axes, one legend below."""
    cells = list(by_cell)
    ncols = 2 if len(cells) <= 4 else 3
    nrows = -(-len(cells) // ncols)
    fig = _new_figure(name)
    axes = fig.subplots(nrows, ncols, sharex=True, sharey=True, squeeze=False)
    for ax in axes.flat[len(cells):]:
        ax.set_visible(False)
    legend: dict[str, object] = {}
    for k, cell in enumerate(cells):
        i, j = divmod(k, ncols)
        ax, records = axes[i][j], by_cell[cell]
        ax.set_title(f"{cell} ({len(records)} seed{'s' if len(records) != 1 else ''})")
        ax.grid(True, alpha=0.3)
        ax.set_xlabel("training step" if k + ncols >= len(cells) else "")
        ax.tick_params(labelbottom=True)
        ax.set_ylabel(ylabel if j == 0 else "")
        _draw_band(ax, records, keys[0], labels[0], TRAIN_COLOUR)
        _draw_band(ax, records, keys[1], labels[1], VAL_COLOUR)
        steps, mean, _, _ = seed_band(records, keys[1])
        if mark_best and steps.size:
            best = steps[int(np.argmin(mean))]
            ax.axvline(best, color="grey", ls=":", lw=1.2, label="lowest mean val loss")
            ax.set_title(f"{ax.get_title()}\nval minimum at step {best:.0f}", fontsize=10)
        legend.update(zip(*reversed(ax.get_legend_handles_labels()), strict=True))
    fig.legend(list(legend.values()), list(legend), loc="outside lower center", ncols=min(len(legend), 3),
               fontsize=9)
    fig.suptitle(title, fontsize=13)
    return _save(fig, path)


def loss_curves(by_cell: Mapping[str, Sequence[RunRecord]], path: Path) -> Path:
    return curve_grid(by_cell, path, name="loss_curves", keys=("clean_train_loss", "val_loss"),
                      labels=("clean train loss", "val loss"), ylabel="cross-entropy loss (nats)",
                      title="Clean train vs validation loss per cell (same axes)", mark_best=True)


def accuracy_curves(by_cell: Mapping[str, Sequence[RunRecord]], path: Path) -> Path:
    return curve_grid(by_cell, path, name="accuracy_curves", keys=("train_acc", "val_acc"),
                      labels=("clean train accuracy", "val accuracy"), ylabel="accuracy (fraction correct)",
                      title="Clean train vs validation accuracy per cell (same axes)", mark_best=False)


def throughput_bars(samples_per_s: Mapping[str, float], path: Path) -> Path:
    """Bars grouped by row (baseline, fixed), one per column kind (dense, moe), labelled with values."""
    rows, cols = grid_of(list(samples_per_s))
    fig = _new_figure("throughput")
    ax = fig.subplots()
    width = 0.8 / len(cols)
    for j, col in enumerate(cols):
        present = [(i, samples_per_s[f"{row}/{col}"]) for i, row in enumerate(rows)
                   if f"{row}/{col}" in samples_per_s]
        xs = [i + (j - (len(cols) - 1) / 2) * width for i, _ in present]
        ys = [y for _, y in present]
        bars = ax.bar(xs, ys, width=width * 0.95, label=col, color=PALETTE[j % len(PALETTE)])
        ax.bar_label(bars, labels=[f"{y:,.0f}" for y in ys], fontsize=9, padding=2)
    ax.set_xticks(range(len(rows)), rows)
    ax.set_xlabel("setup")
    ax.set_ylabel("training throughput (samples/s, median)")
    ax.set_title("Dense vs MoE training-step throughput (pytest-benchmark results)")
    ax.margins(y=0.15)
    ax.grid(True, axis="y", alpha=0.3)
    ax.legend(title="FFN")
    return _save(fig, path)


def last_expert_shares(records: Sequence[RunRecord]) -> dict[int, np.ndarray]:
    """Per MoE layer: share of routed slots per expert at each seed's last evaluation, averaged over seeds."""
    per_layer: dict[int, list[np.ndarray]] = {}
    for record in records:
        last = next((p.moe for p in reversed(record.curves) if p.moe), [])
        for layer in last:
            shares = np.asarray(layer.tokens_per_expert, dtype=float)
            per_layer.setdefault(layer.layer, []).append(shares)
    return {layer: np.mean(shares, axis=0) for layer, shares in sorted(per_layer.items())}


def expert_utilisation(by_cell: Mapping[str, Sequence[RunRecord]], path: Path) -> Path:
    """One panel per MoE cell: stacked bars per layer of each expert's share of routed slots."""
    fig = _new_figure("expert_utilisation")
    axes = fig.subplots(1, len(by_cell), sharey=True, squeeze=False)[0]
    for ax, (cell, records) in zip(axes, by_cell.items(), strict=True):
        shares = last_expert_shares(records)
        layers = list(shares)
        experts = max(len(s) for s in shares.values())
        bottom = np.zeros(len(layers))
        for e in range(experts):
            heights = np.array([shares[layer][e] if e < len(shares[layer]) else 0.0 for layer in layers])
            ax.bar(layers, heights, bottom=bottom, label=f"expert {e}", color=PALETTE[e % len(PALETTE)],
                   edgecolor="white", lw=0.5)
            bottom += heights
        for k in range(1, experts):
            ax.axhline(k / experts, color="black", ls=":", lw=0.8)
        seeds = len(records)
        ax.set_title(f"{cell} (last evaluation{f', mean of {seeds} seeds' if seeds > 1 else ''})")
        ax.set_xticks(layers, [str(layer) for layer in layers])
        ax.set_xlabel("MoE layer")
        ax.set_ylim(0, 1)
    axes[0].set_ylabel("share of routed token slots")
    axes[-1].legend(loc="center left", bbox_to_anchor=(1.0, 0.5), title="dotted lines:\nequal shares")
    fig.suptitle("Expert utilisation per layer (validation set)", fontsize=13)
    return _save(fig, path)


def mean_quality_curve(records: Sequence[RunRecord], key: str = "val_acc") -> tuple[np.ndarray, np.ndarray]:
    """Mean wall seconds and mean `key` per evaluation step over the seeds that reached the step."""
    by_step: dict[int, list[tuple[float, float]]] = {}
    for record in records:
        clocks = {t.step: t.wall_s for t in record.timing}
        for step, value in record.curve(key):
            if clocks.get(step) is not None:
                by_step.setdefault(step, []).append((clocks[step], value))
    pairs = [np.mean(by_step[step], axis=0) for step in sorted(by_step)]
    return (np.array([p[0] for p in pairs]), np.array([p[1] for p in pairs])) if pairs else (np.array([]),) * 2


def time_to_quality(by_cell: Mapping[str, Sequence[RunRecord]], targets: Sequence[float], path: Path) -> Path:
    """Val accuracy against wall seconds from the first step (evaluations included), every cell on one axes."""
    fig = _new_figure("time_to_quality")
    ax = fig.subplots()
    for k, (cell, records) in enumerate(by_cell.items()):
        seconds, accuracy = mean_quality_curve(records)
        if seconds.size:
            seeds = f"mean of {len(records)} seeds" if len(records) > 1 else "1 seed"
            ax.plot(seconds, accuracy, color=PALETTE[k % len(PALETTE)], lw=1.8, label=f"{cell} ({seeds})")
    for target in targets:
        ax.axhline(target, color="grey", ls=":", lw=1.0)
        ax.annotate(f"target {target:g}", (1.0, target), xycoords=("axes fraction", "data"), fontsize=8,
                    ha="right", va="bottom", color="dimgrey")
    ax.set_xscale("log")
    ax.set_xlabel("wall seconds from the first step, evaluations included (log scale)")
    ax.set_ylabel("validation accuracy")
    ax.set_title("Time to quality: validation accuracy against wall time (same axes for every cell)")
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(loc="lower right", fontsize=9)
    return _save(fig, path)
