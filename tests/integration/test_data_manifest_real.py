"""The packaged manifest rebuilds the offline train subset from a full split, as the hub would give it.

    CHIMERA_DATA_DIR=../shared/data/ag_news pytest -m integration tests/integration/test_data_manifest_real.py

No hub here, so a stand-in is built in a temporary folder (never committed): the real subset's rows
shuffled among distractors (the test split's rows under another label). The manifest's rows of it must
cut the very subsets, fingerprint for fingerprint, that every committed record was cut from.
"""

from __future__ import annotations

import csv
import json
import random
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from chimera.config import DEFAULT_TRAIN_POOL, DataConfig
from chimera.data.dataset import load_ag_news
from chimera.data.subsets import make_subsets

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]
RECORDS = sorted((ROOT / "docs" / "results").glob("*/*/record.json"))
SPLITS = ("train", "val", "clean_train", "test")


def _read_hub_csv(path: Path) -> list[list[str]]:
    with path.open(encoding="utf-8", newline="") as handle:
        return list(csv.reader(handle))[1:]


@pytest.fixture(scope="module")
def full_split(data_dir, tmp_path_factory) -> Path:
    """A hub-layout folder whose train.csv holds the subset's rows, shuffled, among 7,600 distractors."""
    train, test = _read_hub_csv(data_dir / "train.csv"), _read_hub_csv(data_dir / "test.csv")
    rows = train + [[text, str((int(label) + 1) % 4)] for text, label in test]
    random.Random(23).shuffle(rows)
    out = tmp_path_factory.mktemp("ag_news_full_standin")
    with (out / "train.csv").open("w", encoding="utf-8", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["text", "label"])
        writer.writerows(rows)
    shutil.copy(data_dir / "test.csv", out / "test.csv")
    return out


@pytest.fixture(scope="module")
def pools(data_dir, full_split) -> dict:
    return {"folder": load_ag_news(data_dir),
            "manifest of folder": load_ag_news(data_dir, train_pool=DEFAULT_TRAIN_POOL),
            "manifest of full": load_ag_news(full_split, train_pool=DEFAULT_TRAIN_POOL)}


def test_the_manifest_picks_the_subset_out_of_a_shuffled_full_split_row_for_row(pools):
    folder = pools["folder"]
    assert len(folder["train"]) == 22_587
    for name in ("manifest of folder", "manifest of full"):
        assert pools[name]["train"] == folder["train"], name
        assert pools[name]["test"] == folder["test"], name


def test_subsets_from_the_rebuilt_pool_carry_every_committed_records_fingerprints(pools):
    assert len(RECORDS) >= 10, "the committed records moved"
    groups: dict[tuple[str, int], list[dict]] = {}
    for path in RECORDS:
        record = json.loads(path.read_text(encoding="utf-8"))
        groups.setdefault((json.dumps(record["config"]["data"], sort_keys=True), record["seed"]), []).append(record)
    for (data, seed), records in groups.items():
        subsets = make_subsets(pools["manifest of full"], DataConfig(**json.loads(data)), seed)
        ours = {name: getattr(subsets, name).fingerprint() for name in SPLITS}
        for record in records:
            assert record["data"]["fingerprints"] == ours, record["run_id"]
            assert record["data"]["leakage"] == subsets.leakage, record["run_id"]


def test_regenerating_the_manifest_from_the_subset_gives_the_committed_file(data_dir):
    done = subprocess.run([sys.executable, str(ROOT / "scripts" / "make_data_manifest.py"), str(data_dir),
                           "--name", DEFAULT_TRAIN_POOL.removeprefix("manifest:"), "--check"],
                          capture_output=True, text=True, cwd=ROOT, check=False)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "matches" in done.stdout
