"""The figure of `chimera diff`: each pair's curves of A and B overlaid, one row per pair (matplotlib's object
API on an Agg canvas, as chimera/analysis/report_figures.py draws the report's)."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from matplotlib.figure import Figure

from chimera.analysis.record_pairs import Pair
from chimera.analysis.report_figures import DPI

FIGURE_NAME = "diff.png"
PANELS = (("val_loss", "val loss"), ("clean_train_loss", "clean train loss"), ("val_acc", "val accuracy"))
SIDES = (("A", "tab:blue", "-"), ("B", "tab:orange", "--"))
ROW_INCHES, WIDTH_INCHES = 2.6, 13.0


def draw_pairs(pairs: Sequence[Pair], path: Path, *, sides: tuple[str, str]) -> Path:
    """Write `path`: for each pair a row of PANELS, A solid and B dashed; `sides` names A and B in the title."""
    fig = Figure(figsize=(WIDTH_INCHES, 1.2 + ROW_INCHES * len(pairs)), dpi=DPI, layout="constrained")
    axes = fig.subplots(len(pairs), len(PANELS), squeeze=False)
    for row, pair in enumerate(pairs):
        for col, (key, label) in enumerate(PANELS):
            ax = axes[row][col]
            for (side, colour, style), located in zip(SIDES, (pair.a, pair.b), strict=True):
                points = located.record.curve(key)
                if points:
                    steps, values = zip(*points, strict=True)
                    ax.plot(steps, values, color=colour, ls=style, lw=1.6, label=side)
            ax.set_title(f"{pair.name}: {label}" if col == 0 else label, fontsize=9)
            ax.grid(True, alpha=0.3)
            ax.tick_params(labelsize=8)
            if row == len(pairs) - 1:
                ax.set_xlabel("training step", fontsize=9)
    handles, labels = axes[0][0].get_legend_handles_labels()
    if handles:
        names = dict(zip(("A", "B"), sides, strict=True))
        fig.legend(handles, [f"{label}: {names[label]}" for label in labels],
                   loc="outside lower center", ncols=2, fontsize=9)
    fig.suptitle("chimera diff: A solid, B dashed", fontsize=12)
    fig.savefig(path, dpi=DPI, format="png")
    return path
