"""Train-pool manifests: the rows a manifest lists, found by hash in a larger shuffled split, are the subset's pool."""

from __future__ import annotations

import csv
import random
from dataclasses import replace
from pathlib import Path

import pytest

from chimera.config import DATASET_DEFAULTS, DEFAULT_TRAIN_POOL, DataConfig, RunConfig, config_to_dict, same_rows
from chimera.data import subsets as manifest_module
from chimera.data.dataset import HUB_ID, load_ag_news, train_row_hashes
from chimera.data.subsets import format_manifest, load_manifest, make_subsets, pin_pool, row_hash
from chimera.errors import ChimeraError
from chimera.gates import bands

ROOT = Path(__file__).resolve().parents[2]
# sha256 of the offline subset's train.csv, the file the packaged manifest was made from
SUBSET_TRAIN_SHA256 = "f169aa794940cdd3a5411c7967f3f836c9f537ca80de7b9a4d3f37845b1a327c"
WORDS = ("parliament", "striker", "shares", "software", "treaty", "league", "merger", "satellite")
CFG = DataConfig(train_samples=48, val_samples=32, test_samples=16)


def rows(n: int, *, offset: int = 0) -> list[tuple[str, int]]:
    """Distinct rows with the corpus' raw quirks (bare entities, backslash breaks), which cleaning rewrites."""
    return [(f"Story {i}: the {WORDS[i % 8]} said it #39;s {WORDS[(i // 8) % 8]} news\\{i}", i % 4)
            for i in range(offset, offset + n)]


def write_folder(folder: Path, train: list[tuple[str, int]], test: list[tuple[str, int]]) -> Path:
    folder.mkdir(parents=True)
    for name, split in (("train", train), ("test", test)):
        with (folder / f"{name}.csv").open("w", newline="", encoding="utf-8") as handle:
            writer = csv.writer(handle)
            writer.writerow(["text", "label"])
            writer.writerows(split)
    return folder


@pytest.fixture
def subset_and_full(tmp_path, monkeypatch) -> tuple[Path, Path]:
    """A subset folder, its manifest (as `toy`, in a manifest folder of its own) and a 'full split' holding the
    subset's rows shuffled among distractors: other stories, a subset text under another label, a subset text
    with one more space (the same after cleaning, not the same row)."""
    subset, test = rows(160), rows(40, offset=1000)
    distractors = rows(200, offset=500) + [(subset[3][0], (subset[3][1] + 1) % 4), (subset[5][0] + " ", subset[5][1])]
    full = subset + distractors
    random.Random(0).shuffle(full)
    subset_dir = write_folder(tmp_path / "subset", subset, test)
    full_dir = write_folder(tmp_path / "full", full, test)
    manifests = tmp_path / "manifests"
    manifests.mkdir()
    _, hashes = train_row_hashes(subset_dir)
    (manifests / "toy.txt").write_text(format_manifest("toy", source=f"hub {HUB_ID}, split train",
                                                       made_from="train.csv sha256 0", hashes=hashes))
    monkeypatch.setattr(manifest_module, "MANIFEST_DIR", manifests)
    return subset_dir, full_dir


def test_the_manifest_rows_of_a_shuffled_full_split_are_the_subset_folders_pool(subset_and_full):
    subset_dir, full_dir = subset_and_full
    direct = load_ag_news(subset_dir)
    rebuilt = load_ag_news(full_dir, train_pool="manifest:toy")
    assert rebuilt["train"] == direct["train"]  # same rows, same order, byte for byte
    assert rebuilt["train"].fingerprint() == direct["train"].fingerprint()
    assert rebuilt["test"] == direct["test"]
    assert load_ag_news(subset_dir, train_pool="manifest:toy")["train"] == direct["train"]


def test_subsets_cut_from_the_rebuilt_pool_have_the_subset_folders_fingerprints(subset_and_full):
    subset_dir, full_dir = subset_and_full
    for seed in (0, 1):
        direct = make_subsets(load_ag_news(subset_dir), CFG, seed)
        rebuilt = make_subsets(load_ag_news(full_dir, train_pool="manifest:toy"), CFG, seed)
        for name in ("train", "val", "clean_train", "test"):
            assert getattr(rebuilt, name).fingerprint() == getattr(direct, name).fingerprint(), (seed, name)
        assert rebuilt.leakage == direct.leakage


def test_rows_the_source_lacks_are_one_error_naming_how_many_and_the_manifest(subset_and_full, tmp_path):
    subset_dir, _ = subset_and_full
    partial = write_folder(tmp_path / "partial", rows(150), rows(40, offset=1000))  # the subset's last 10 rows gone
    with pytest.raises(ChimeraError) as err:
        load_ag_news(partial, train_pool="manifest:toy")
    message = str(err.value)
    assert "\n" not in message
    assert str(partial / "train.csv") in message and "10 of the 160 rows" in message and "manifest toy" in message
    assert "data.train_pool=all" in message


def test_a_row_listed_twice_takes_two_rows_of_the_source(tmp_path, monkeypatch):
    train = rows(8) + [rows(1)[0]]  # row 0 repeated at the end
    folder = write_folder(tmp_path / "data", train, rows(4, offset=100))
    hashes = [row_hash(text, label) for text, label in train]
    (tmp_path / "twice.txt").write_text(format_manifest("twice", source="s", made_from="m", hashes=hashes[::-1]))
    monkeypatch.setattr(manifest_module, "MANIFEST_DIR", tmp_path)
    pool = load_ag_news(folder, train_pool="manifest:twice")["train"]
    assert pool.texts == load_ag_news(folder)["train"].texts[::-1]
    (tmp_path / "thrice.txt").write_text(format_manifest("thrice", source="s", made_from="m", hashes=[hashes[0]] * 3))
    with pytest.raises(ChimeraError, match="1 of the 3 rows"):
        load_ag_news(folder, train_pool="manifest:thrice")


def test_the_row_hash_is_over_the_hub_text_as_given_not_the_cleaned_text():
    assert row_hash("AT amp;T said", 2) == row_hash("AT amp;T said", 2)
    assert row_hash("AT amp;T said", 2) != row_hash("AT&T said", 2) != row_hash("AT&T said", 3)
    assert len(row_hash("x", 0)) == 16


def test_a_pinned_pool_names_the_manifest_sha256_and_refuses_a_changed_manifest(subset_and_full):
    subset_dir, _ = subset_and_full
    pinned = pin_pool("manifest:toy")
    assert pinned == f"manifest:toy@sha256:{load_manifest('toy').sha256}" and pin_pool("all") == "all"
    assert DataConfig(train_pool=pinned).train_pool == pinned
    assert len(load_ag_news(subset_dir, train_pool=pinned)["train"]) == 160
    with pytest.raises(ChimeraError, match="toy.txt has sha256 .* but the config pins 000000000000"):
        load_ag_news(subset_dir, train_pool="manifest:toy@sha256:" + "0" * 64)


def test_an_unknown_manifest_is_an_error_naming_the_known_ones(subset_and_full):
    subset_dir, _ = subset_and_full
    with pytest.raises(ChimeraError, match=r"no manifest 'nope' \(.*nope.txt not found; known: toy\)"):
        load_ag_news(subset_dir, train_pool="manifest:nope")


@pytest.mark.parametrize("value", ["", "everything", "manifest:", "manifest:Bad Name", "manifest:x@sha256:abc"])
def test_train_pool_values_other_than_all_or_a_manifest_are_refused(value):
    with pytest.raises(ChimeraError, match="data.train_pool"):
        DataConfig(train_pool=value)


def test_a_manifest_whose_header_disagrees_with_its_rows_is_refused(tmp_path):
    text = format_manifest("bad", source="s", made_from="m", hashes=["0123456789abcdef"] * 2)
    (tmp_path / "bad.txt").write_text(text.replace("# rows: 2", "# rows: 3"))
    with pytest.raises(ChimeraError, match="header says 3 rows but the file lists 2"):
        load_manifest("bad", folder=tmp_path)
    (tmp_path / "bad.txt").write_text(text + "not-a-hash\n")
    with pytest.raises(ChimeraError, match="line 9: expected 16 lowercase hex digits"):
        load_manifest("bad", folder=tmp_path)


def test_the_packaged_manifest_lists_the_offline_subset_and_stays_small():
    packaged = load_manifest(DEFAULT_TRAIN_POOL.removeprefix("manifest:"))
    assert len(packaged) == 22_587 and len(set(packaged.hashes)) == 22_587
    assert packaged.source == f"hub {HUB_ID}, split train"
    assert packaged.made_from == f"train.csv sha256 {SUBSET_TRAIN_SHA256}"
    assert packaged.path.stat().st_size < 1_000_000
    assert (ROOT / "chimera" / "data" / "manifests" / packaged.path.name).is_file()


def test_bands_hash_a_config_on_the_default_pool_as_one_from_before_the_key():
    assert bands.IMPLIED_TRAIN_POOL == DEFAULT_TRAIN_POOL
    config = config_to_dict(RunConfig(cell="c", profile="p"))
    before = {**config, "data": {k: v for k, v in config["data"].items() if k != "train_pool"}}
    pinned = {**config, "data": {**config["data"], "train_pool": pin_pool(DEFAULT_TRAIN_POOL)}}
    everything = {**config, "data": {**config["data"], "train_pool": "all"}}
    assert bands.config_fingerprint(config) == bands.config_fingerprint(before) == bands.config_fingerprint(pinned)
    assert bands.config_fingerprint(everything) != bands.config_fingerprint(config)


def test_a_pinned_pool_cuts_the_same_rows_as_its_manifest_and_all_or_other_sizes_do_not():
    # records from before the key reach same_rows upgraded to the default pool (records/upgrade.py, tested there)
    data = RunConfig(cell="c", profile="p").data
    assert same_rows(data, replace(data, train_pool=pin_pool(DEFAULT_TRAIN_POOL))) and same_rows(data, data)
    assert not same_rows(data, replace(data, train_pool="all"))
    assert not same_rows(data, replace(data, train_samples=data.train_samples + 1))


def test_bands_hash_ag_news_by_its_default_columns_as_a_config_from_before_the_dataset_keys():
    assert bands.IMPLIED_DATASET == DATASET_DEFAULTS
    config = config_to_dict(RunConfig(cell="c", profile="p"))
    before = {**config, "data": {k: v for k, v in config["data"].items() if k not in DATASET_DEFAULTS}}
    other = {**config, "data": {**config["data"], "dataset": "mine.csv"}}
    assert bands.config_fingerprint(config) == bands.config_fingerprint(before)
    assert bands.config_fingerprint(other) != bands.config_fingerprint(config)
