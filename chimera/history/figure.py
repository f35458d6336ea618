"""The history figure for `chimera report --history STORE`: per cell, normalised step time and val accuracy
by commit, one line per machine, the commits where a gate would have failed marked with a red cross.

matplotlib is imported here only, and this module only when a report draws a history.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from matplotlib.figure import Figure

from chimera.history.trend import CellTrend, short_commit

DPI = 100
PANEL_HEIGHT = 2.6  # inches per cell
WIDTH = 11.0
PALETTE = ("tab:blue", "tab:orange", "tab:green", "tab:purple", "tab:brown", "tab:grey")
FAIL_COLOUR = "tab:red"


def figure_size(trends: Sequence[CellTrend]) -> tuple[float, float]:
    return WIDTH, PANEL_HEIGHT * len(trends) + 0.8


def history_figure(trends: Sequence[CellTrend], path: Path) -> Path:
    """Two panels per (cell, profile, precision): step/GEMM and val accuracy against commits in order."""
    fig = Figure(figsize=figure_size(trends), dpi=DPI, layout="constrained")
    axes = fig.subplots(len(trends), 2, squeeze=False)
    machines = sorted({p.machine_label for t in trends for p in t.points})
    colour = {m: PALETTE[i % len(PALETTE)] for i, m in enumerate(machines)}
    for (speed_ax, acc_ax), trend in zip(axes, trends, strict=True):
        commits = list(dict.fromkeys(short_commit(p.commit, p.dirty) for p in trend.points))
        x_of = {c: i for i, c in enumerate(commits)}
        for machine in machines:
            points = [p for p in trend.points if p.machine_label == machine]
            xs = [x_of[short_commit(p.commit, p.dirty)] for p in points]
            norms = [p.speed.new_norm if p.speed and p.speed.new_norm is not None else float("nan") for p in points]
            accs = [p.metric("val_acc") if p.metric("val_acc") is not None else float("nan") for p in points]
            speed_ax.plot(xs, norms, "o-", color=colour[machine], label=machine)
            acc_ax.plot(xs, accs, "o-", color=colour[machine], label=machine)
            for x, p, norm, acc in zip(xs, points, norms, accs, strict=True):
                if p.speed_failed:
                    speed_ax.plot([x], [norm], "x", color=FAIL_COLOUR, ms=12, mew=2.5)
                if p.loss_failed:
                    acc_ax.plot([x], [acc], "x", color=FAIL_COLOUR, ms=12, mew=2.5)
        title = f"{trend.cell} · {trend.profile} · {trend.precision}"
        speed_ax.set_title(f"{title}: train step / calibration GEMM (lower is faster)", fontsize=10)
        acc_ax.set_title(f"{title}: final val accuracy (mean over seeds)", fontsize=10)
        has_speed = any(p.speed and p.speed.new_norm is not None for p in trend.points)
        has_runs = any(p.metric("val_acc") is not None for p in trend.points)
        for ax, has, what in ((speed_ax, has_speed, "no benchmark"), (acc_ax, has_runs, "no finished run")):
            ax.set_xticks(range(len(commits)), commits, rotation=20, fontsize=8)
            ax.grid(True, alpha=0.3)
            ax.margins(x=0.1, y=0.15)
            if not has:
                ax.set_yticks([])
                ax.text(0.5, 0.5, f"{what} of this cell in the store", transform=ax.transAxes, ha="center",
                        va="center", color="dimgrey")
    handles, labels = axes[0][0].get_legend_handles_labels()
    fig.legend(handles, labels, loc="outside lower center", ncols=min(len(labels), 4), fontsize=9,
               title="machine (red cross: a gate would have failed)")
    fig.savefig(path, dpi=DPI, format="png")
    return path


def history_blocks(store: Path, out_dir: Path) -> tuple[list[tuple], Path | None]:
    """The report's History section (blocks in chimera.analysis.report's format) and its figure (None when empty)."""
    from chimera.history.store import load
    from chimera.history.trend import HEADER, build_trends, flag_lines, point_cells

    trends = build_trends(load(store))
    if not trends:
        return [("h2", "History"), ("p", f"The history store `{store}` holds no results yet.")], None
    image = history_figure(trends, out_dir / "history.png")
    rows = [[f"{t.cell} · {t.profile} · {t.precision}", *point_cells(p)] for t in trends for p in t.points]
    flagged = flag_lines(trends)
    return [
        ("h2", "History"),
        ("p", f"From `{store}` (`chimera history`): per cell, the train-step time divided by the same benchmark "
              "file's calibration GEMM (machine-normalised) and the final metrics, by commit and machine. `vs prev` "
              "and `speed gate`: the speed gate against the previous commit on the same machine; `loss gate`: the "
              "convergence bands."),
        ("img", image.name, "Normalised step time and val accuracy by commit, per cell"),
        ("table", ("cell", *HEADER), rows),
        ("p", "Gates would have failed at: " + ("none." if not flagged else "; ".join(flagged) + ".")),
    ], image
