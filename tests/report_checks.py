"""Checks shared by the report tests: its matrix table read back into numbers, and its images."""

from __future__ import annotations

import statistics

import numpy as np
import pytest
from matplotlib.colors import to_rgb
from matplotlib.image import imread

from chimera.analysis.report import seeds_label
from chimera.records.record import RunRecord


def matrix_table(markdown: str) -> dict[str, dict[str, str]]:
    """Rows of the first markdown table under `## Matrix`, keyed by cell, each a header -> text mapping."""
    section = markdown.split("## Matrix", 1)[1].lstrip("\n").splitlines()
    lines = []
    for line in section:  # the first table only: it ends at the first line that is not a table row
        if not line.startswith("|"):
            break
        lines.append(line)
    header = [c.strip() for c in lines[0].strip("|").split("|")]
    rows = [[c.strip() for c in line.strip("|").split("|")] for line in lines[2:]]
    return {row[0]: dict(zip(header, row, strict=True)) for row in rows}


def stat(text: str) -> tuple[float, float | None]:
    """Parse `1,234` or `0.5 ± 0.01` (an optional `(source)` suffix dropped)."""
    text = text.split(" (")[0].replace(",", "")
    mean, _, std = text.partition(" ± ")
    return float(mean), float(std) if std else None


def assert_stat(text: str, values: list[float], *, rel: float = 1e-3, abs_: float = 1e-4) -> None:
    """The cell shows the mean (and, for differing values, the sample std) of `values`."""
    mean, std = stat(text)
    assert mean == pytest.approx(statistics.mean(values), rel=rel, abs=abs_)
    if len(set(values)) > 1:
        assert std == pytest.approx(statistics.stdev(values), rel=0.05, abs=abs_)
    else:
        assert std is None


def assert_row_matches(row: dict[str, str], records: list[RunRecord]) -> None:
    """Every number of one matrix row (except throughput, which has two sources) equals the records'."""
    metrics = [r.final_metrics for r in records]
    assert row["seeds"] == seeds_label(records) and row["seeds"].startswith(f"{len(records)} (")  # count first
    assert_stat(row["params total"], [r.params.total for r in records])
    assert_stat(row["params active"], [r.params.active for r in records])
    best = [m.best_step for m in metrics]
    assert [int(b) for b in row["best step"].split(", ")] == (best if len(set(best)) > 1 else best[:1])
    stopped = sum(m.stopped_early for m in metrics)
    assert row["stopped early"] == {0: "no", len(metrics): "yes"}.get(stopped, f"{stopped} of {len(metrics)}")
    assert_stat(row["clean train loss"], [m.clean_train_loss for m in metrics])
    assert_stat(row["val loss"], [m.val_loss for m in metrics])
    assert_stat(row["val acc"], [m.val_acc for m in metrics])
    assert_stat(row["test acc"], [m.test_acc for m in metrics])


def assert_figure(path, *, size_inches: tuple[float, float], dpi: int, colours: tuple[str, ...]) -> None:
    """The PNG is figsize x dpi pixels, not blank, and shows data drawn in each of `colours`."""
    pixels = imread(path)[..., :3]
    width, height = size_inches
    assert pixels.shape[:2] == (round(height * dpi), round(width * dpi)), path.name
    assert pixels.var() > 0.005, f"{path.name} looks blank"
    for colour in colours:
        near = np.abs(pixels - np.array(to_rgb(colour))).max(axis=-1) < 0.06
        assert near.sum() > 300, f"{path.name}: nothing drawn in {colour}"
