"""A second real dataset in another shape, built offline from the AG News copy: two of its classes (Sports,
Sci/Tech) as CSV files with other column names and string labels. A ci cell trains on it end to end through
the CLI and through the Python API; the record names the labels; `chimera doctor` and `chimera report` read it.

    CHIMERA_DATA_DIR=path/to/ag_news pytest -m integration tests/integration/test_other_dataset.py
"""

from __future__ import annotations

import csv
import json
import os
from pathlib import Path

import pytest

import chimera
from chimera.data.dataset import load_ag_news
from tests.helpers import TINY, load_cell, run_chimera, sets

pytestmark = pytest.mark.integration

KEPT = {1: "sports", 3: "science and technology"}  # AG News label -> this dataset's label
SETTINGS = (*TINY, "train.lr=0.002", "data.text_column=headline", "data.label_column=topic")


@pytest.fixture(scope="module")
def two_class_news(data_dir, tmp_path_factory) -> Path:
    """folder/train.csv and folder/test.csv: `id,headline,topic`, the text and labels of AG News' rows 1 and 3."""
    folder = tmp_path_factory.mktemp("two-class-news")
    for split, rows in load_ag_news(data_dir).items():
        with (folder / f"{split}.csv").open("w", newline="", encoding="utf-8") as handle:
            writer = csv.writer(handle)
            writer.writerow(["id", "headline", "topic"])
            pairs = zip(rows.texts, rows.labels, strict=True)
            writer.writerows((i, text, KEPT[label]) for i, (text, label) in enumerate(pairs) if label in KEPT)
    return folder


def test_a_ci_cell_trains_on_it_through_the_cli_and_the_doctor_and_report_read_the_record(two_class_news,
                                                                                          tmp_path):
    runs = tmp_path / "runs"
    without_ag_news = {k: v for k, v in os.environ.items() if k != "CHIMERA_DATA_DIR"}
    run_chimera("train", "--cell", "fixed/dense", "--profile", "ci", "--device", "cpu", "--quiet", "--out", str(runs),
                *sets(*SETTINGS, f"data.dataset={two_class_news}"), env=without_ag_news)
    record = load_cell(runs, "fixed/dense")
    assert record.data.label_names == ["science and technology", "sports"]
    assert record.data.source == str(two_class_news) and record.status in ("completed", "stopped_early")
    assert record.final_metrics.test_acc > 0.6  # two well-separated topics, a higher lr: better than a coin in 40 steps
    doctor = run_chimera("doctor", str(runs / "fixed-dense-ci-s0"), "--json", check=False)
    assert doctor.returncode in (0, 1) and json.loads(doctor.stdout)["records"][0]["findings"]
    run_chimera("report", str(runs), "--out", str(tmp_path / "report"))
    assert "fixed/dense" in (tmp_path / "report" / "report.md").read_text()


def test_the_python_api_trains_the_same_cell_to_the_same_record(two_class_news, tmp_path, monkeypatch,
                                                                restore_torch_state):
    monkeypatch.delenv("CHIMERA_DATA_DIR", raising=False)
    config = chimera.resolve_config("fixed/dense", "ci", device="cpu",
                                    overrides=[*SETTINGS, f"data.dataset={two_class_news}"])
    record = chimera.train_config(config, out_dir=tmp_path / "api")
    assert record.data.label_names == ["science and technology", "sports"]
    assert record.config.data.dataset == str(two_class_news) and record.data.sizes["test"] == 64
    assert set(record.data.label_counts["test"]) == {"0", "1"}
