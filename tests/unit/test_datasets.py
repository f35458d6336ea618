"""Any text-classification dataset, no code edits: `data.dataset` names a local file or folder (or a hub id),
`data.text_column` / `data.label_column` its columns; the label set and its names come from the data and
reach the record. Bad data is one line, exit 2, no run folder left behind. On synthetic rows; a real second
dataset (two AG News classes with other column names) trains end to end in
tests/integration/test_other_dataset.py."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest

from chimera import cli
from chimera.config import DataConfig
from chimera.data.dataset import load_data
from chimera.data.subsets import make_subsets
from chimera.errors import ChimeraError
from chimera.records.store import load_record
from tests.helpers import SYNTHETIC_TINY, sets

WORDS = {"sport": ("striker", "league", "coach", "medal"), "tech": ("software", "chip", "browser", "genome"),
         "money": ("shares", "profit", "market", "merger")}


def _rows(n: int, *, offset: int = 0, labels=("tech", "sport")) -> list[tuple[str, str]]:
    out = []
    for i in range(offset, offset + n):
        label = labels[i % len(labels)]
        words = WORDS[label]
        out.append((f"{words[i % 4]} {words[(i // 4) % 4]} story {i}", label))
    return out


def _csv(path: Path, rows, header=("headline", "topic", "source")) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(header)
        writer.writerows((text, label, "wire") for text, label in rows)
    return path


def _folder(root: Path, train=None, test=None) -> Path:
    _csv(root / "train.csv", _rows(120) if train is None else train)
    _csv(root / "test.csv", _rows(40, offset=5000) if test is None else test)
    return root


def _config(dataset: Path | str, **keys) -> DataConfig:
    return DataConfig(**{"dataset": str(dataset), "text_column": "headline", "label_column": "topic",
                         "train_pool": "all", "train_samples": 32, "val_samples": 16, **keys})


def test_a_folder_with_other_columns_and_string_labels_reads_with_sorted_label_names(tmp_path):
    data = load_data(_config(_folder(tmp_path / "news")))
    assert data.label_names == ("sport", "tech") and data.source == str(tmp_path / "news")
    assert set(data.splits) == {"train", "test"} and len(data.splits["train"]) == 120
    first_text, first_label = _rows(1)[0]
    train = data.splits["train"]
    assert train.texts[0] == first_text and data.label_names[train.labels[0]] == first_label
    assert sorted(set(data.splits["test"].labels)) == [0, 1]


def test_integer_labels_sort_as_numbers_and_a_single_file_gets_its_test_rows_carved_out(tmp_path):
    path = tmp_path / "reviews.jsonl"
    rows = [{"body": text, "stars": 10 if label == "tech" else 9} for text, label in _rows(150)]
    path.write_text("".join(json.dumps(row) + "\n" for row in rows), encoding="utf-8")
    config = DataConfig(dataset=str(path), text_column="body", label_column="stars", train_pool="all",
                        train_samples=40, val_samples=20, test_samples=30)
    data = load_data(config)
    assert data.label_names == ("9", "10") and set(data.splits) == {"train"}  # 9 < 10 as numbers, not as text
    subsets = make_subsets(data.splits, config, seed=0)
    assert (len(subsets.train), len(subsets.val), len(subsets.test)) == (40, 20, 30)
    seen = [set(getattr(subsets, name).texts) for name in ("train", "val", "test")]
    assert not (seen[0] & seen[1] or seen[0] & seen[2] or seen[1] & seen[2])  # carved apart, like val
    assert np.bincount(subsets.test.labels).tolist() == [15, 15]  # stratified


def test_the_default_stays_ag_news_and_a_data_dir_beside_another_dataset_is_refused(tmp_path):
    folder = _folder(tmp_path / "news")
    with pytest.raises(ChimeraError, match="data.dataset=.* names the data to read"):
        load_data(_config(folder), data_dir=folder)
    assert DataConfig().dataset == "ag_news"


# id: (files to write under tmp_path/"d" -> the data.dataset path, a fragment of the one-line message)
def _bad_cases(root: Path) -> dict[str, tuple[Path, str]]:
    one_class = _folder(root / "one", train=_rows(60, labels=("tech",)), test=_rows(10, labels=("tech",)))
    outside = _folder(root / "outside", test=[*_rows(10, offset=5000), ("market shares fell", "money")])
    missing = _folder(root / "missing")
    _csv(missing / "train.csv", _rows(60), header=("title", "topic", "source"))
    empty = _folder(root / "empty", test=[])
    numbers = root / "numbers.jsonl"
    numbers.write_text("".join(json.dumps({"headline": i, "topic": "tech"}) + "\n" for i in range(30)))
    broken = root / "broken.jsonl"
    broken.write_text(json.dumps({"headline": "fine", "topic": "tech"}) + "\n{not json\n")
    return {
        "missing column": (missing, "no 'headline' column"),
        "one class only": (one_class, "only one class (tech)"),
        "non-text text column": (numbers, "text must be a string, got 0"),
        "empty split": (empty, "no data rows"),
        "label outside the set": (outside, "label 'money' is not one of the train split's labels (sport, tech)"),
        "file that does not parse": (broken, "line 2: invalid JSON"),
    }


CASES = ["missing column", "one class only", "non-text text column", "empty split", "label outside the set",
         "file that does not parse"]


@pytest.mark.parametrize("case", CASES)
def test_bad_data_is_one_line_exit_2_and_no_run_folder(tmp_path, capsys, restore_torch_state, case):
    dataset, fragment = _bad_cases(tmp_path / "d")[case]
    out = tmp_path / "runs"
    code = cli.main(["train", "--cell", "fixed/dense", "--profile", "ci", "--device", "cpu", "--quiet",
                     "--out", str(out), "--cache-dir", str(tmp_path / "cache"),
                     *sets(*SYNTHETIC_TINY, f"data.dataset={dataset}", "data.text_column=headline",
                           "data.label_column=topic")])
    err = capsys.readouterr().err
    lines = [line for line in err.splitlines() if line.strip()]
    assert code == 2 and len(lines) == 1 and "Traceback" not in err, err
    assert fragment in lines[0] and lines[0].startswith("chimera: error: "), lines[0]
    assert not (out / "fixed-dense-ci-s0").exists(), "a refused run leaves no run folder"


def test_a_cell_trains_on_another_dataset_through_the_cli_and_records_its_labels(tmp_path, monkeypatch,
                                                                                  restore_torch_state):
    monkeypatch.delenv("CHIMERA_DATA_DIR", raising=False)
    folder = _folder(tmp_path / "news", train=_rows(150, labels=("tech", "sport", "money")),
                     test=_rows(45, offset=5000, labels=("tech", "sport", "money")))
    assert cli.main(["train", "--cell", "fixed/dense", "--profile", "ci", "--device", "cpu", "--quiet",
                     "--out", str(tmp_path / "runs"), "--cache-dir", str(tmp_path / "cache"),
                     *sets(*SYNTHETIC_TINY, f"data.dataset={folder}", "data.text_column=headline",
                           "data.label_column=topic")]) == 0
    record = load_record(tmp_path / "runs" / "fixed-dense-ci-s0")
    assert record.data.label_names == ["money", "sport", "tech"] and record.data.source == str(folder)
    assert set(record.data.label_counts["test"]) == {"0", "1", "2"} and record.config.data.dataset == str(folder)
    assert record.status in ("completed", "stopped_early")


def test_a_manifest_of_another_datasets_rows_selects_them_from_a_larger_copy(tmp_path, monkeypatch, capsys):
    from chimera.data import subsets as manifest_module
    from scripts.make_data_manifest import main as make_manifest

    pool, others = _rows(60), _rows(60, offset=700)
    larger = [*others[:30], *reversed(pool), *others[30:]]  # the pool's rows in another order, among others
    _folder(tmp_path / "pool", train=pool)
    _folder(tmp_path / "larger", train=larger)
    manifests = tmp_path / "manifests"
    assert make_manifest([str(tmp_path / "pool"), "--name", "news-pool", "--as-dataset", "--text-column",
                          "headline", "--label-column", "topic", "--out", str(manifests / "news-pool.txt")]) == 0
    assert "split train" in (manifests / "news-pool.txt").read_text()
    assert "news-pool.txt: 60 rows" in capsys.readouterr().out
    monkeypatch.setattr(manifest_module, "MANIFEST_DIR", manifests)
    selected = load_data(_config(tmp_path / "larger", train_pool="manifest:news-pool")).splits["train"]
    assert selected == load_data(_config(tmp_path / "pool")).splits["train"]  # the pool's rows, in its order
