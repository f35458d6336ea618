"""AG News reading, cleaning and subsetting, on synthetic rows written to tmp_path."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from chimera.config import DataConfig
from chimera.data.dataset import load_ag_news
from chimera.data.subsets import TextSplit, clean_text, make_subsets, normalise_text
from chimera.errors import ChimeraError

TOPICS = {
    0: ["parliament", "minister", "election", "embassy", "treaty"],
    1: ["striker", "league", "coach", "tournament", "medal"],
    2: ["shares", "profit", "merger", "investors", "quarterly"],
    3: ["software", "satellite", "chip", "browser", "genome"],
}


def synthetic_rows(n: int, *, offset: int = 0) -> list[tuple[str, int]]:
    """Unique made-up sentences, labels cycling 0-3."""
    rows = []
    for i in range(offset, offset + n):
        label = i % 4
        words = TOPICS[label]
        text = f"Story {i}: the {words[i % 5]} and the {words[(i // 5) % 5]} made news number {i}"
        rows.append((text, label))
    return rows


def write_hub_csv(path: Path, rows: list[tuple[str, int]]) -> None:
    with path.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(["text", "label"])
        writer.writerows(rows)


def write_original_csv(path: Path, rows: list[tuple[str, int]]) -> None:
    with path.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle, quoting=csv.QUOTE_ALL)
        for text, label in rows:
            title, _, description = text.partition(": ")
            writer.writerow([label + 1, title, description])


def write_jsonl(path: Path, rows: list[tuple[str, int]]) -> None:
    path.write_text("".join(json.dumps({"text": t, "label": y}) + "\n" for t, y in rows), encoding="utf-8")


def write_parquet(path: Path, rows: list[tuple[str, int]]) -> None:
    pq.write_table(pa.table({"text": [t for t, _ in rows], "label": [y for _, y in rows]}), path)


WRITERS = {"csv": write_hub_csv, "jsonl": write_jsonl, "parquet": write_parquet,
           "original": write_original_csv}


def make_folder(root: Path, layout: str, train: list[tuple[str, int]], test: list[tuple[str, int]]) -> Path:
    suffix = "csv" if layout == "original" else layout
    root.mkdir(parents=True, exist_ok=True)
    WRITERS[layout](root / f"train.{suffix}", train)
    WRITERS[layout](root / f"test.{suffix}", test)
    return root


# --- cleaning ----------------------------------------------------------------------------------------


@pytest.mark.parametrize(("raw", "clean"), [
    ("Oil hits  #36;50 a barrel", "Oil hits $50 a barrel"),
    ("shares of US #36;0.49 each", "shares of US$0.49 each"),
    ("the region #39;s capital", "the region's capital"),
    ("he said  quot;no deal quot; today", 'he said "no deal" today'),
    ("the AT amp;T deal", "the AT&T deal"),
    ("Smith  amp; Sons", "Smith & Sons"),
    ("Smith  amp;amp;amp; Sons", "Smith & Sons"),
    ("rates  lt;5% and  gt;2%", "rates <5% and >2%"),
    ("fish &amp; chips", "fish & chips"),
    ("a dash  #151; here", "a dash \u2014 here"),
    ("first line\\second line", "first line second line"),
    ("double\\\\slash", "double slash"),
    ("its\\nuclear plans", "its nuclear plans"),
    ("an escaped\\nNewline", "an escaped Newline"),
    ("trailing escape\\n", "trailing escape"),
    ("cost \\$15 today", "cost $15 today"),
    ("word \\ artefact", "word artefact"),
    ("see &lt;b&gt;bold&lt;/b&gt; text", "see bold text"),
    ("Widgets Inc. &lt;WID.N&gt; rose", "Widgets Inc. <WID.N> rose"),
    ("  many   spaces\tand\nbreaks  ", "many spaces and breaks"),
    ("camp; is a word ending", "camp; is a word ending"),
])
def test_clean_text_undoes_the_corpus_escapes(raw: str, clean: str) -> None:
    assert clean_text(raw) == clean


def test_clean_text_is_idempotent() -> None:
    for raw in ("Smith  amp;amp;amp; Sons", "its\\nuclear  #36;5 plan", "a &amp;lt; b"):
        once = clean_text(raw)
        assert clean_text(once) == once


def test_normalise_text_ignores_case_spacing_and_punctuation() -> None:
    assert normalise_text("The Market, rose!  (Again)") == normalise_text("the market rose again")
    assert normalise_text("the market rose") != normalise_text("the market fell")


# --- TextSplit ---------------------------------------------------------------------------------------


def test_fingerprint_is_unambiguous_and_order_sensitive() -> None:
    a = TextSplit(("ab", "c"), (0, 1))
    assert a.fingerprint() == TextSplit(("ab", "c"), (0, 1)).fingerprint()
    assert a.fingerprint() != TextSplit(("a", "bc"), (0, 1)).fingerprint()
    assert a.fingerprint() != TextSplit(("c", "ab"), (1, 0)).fingerprint()
    assert a.fingerprint() != TextSplit(("ab", "c"), (0, 2)).fingerprint()
    assert len(a.fingerprint()) == 64 and len(a) == 2
    assert TextSplit(("x", "y", "z"), (3, 1, 3)).label_counts() == {1: 1, 3: 2}


# --- format detection --------------------------------------------------------------------------------


@pytest.mark.parametrize("layout", ["csv", "jsonl", "parquet", "original"])
def test_every_layout_reads_to_the_same_splits(tmp_path: Path, layout: str) -> None:
    train, test = synthetic_rows(40), synthetic_rows(12, offset=100)
    splits = load_ag_news(make_folder(tmp_path / layout, layout, train, test))
    # The original layout keeps title and description apart; the reader joins them with a space.
    assert splits["train"].texts == tuple(t.replace(": ", ": " if layout != "original" else " ", 1)
                                          for t, _ in train)
    assert splits["train"].labels == tuple(y for _, y in train)
    assert splits["test"].labels == tuple(y for _, y in test)
    assert len(splits["test"]) == 12


def test_csv_keeps_texts_verbatim_and_cleans_them(tmp_path: Path) -> None:
    rows = [("NA", 0), ("null", 1), ('a "quoted", comma', 2), ("the firm #39;s view", 3)]
    splits = load_ag_news(make_folder(tmp_path, "csv", rows, rows))
    assert splits["train"].texts == ("NA", "null", 'a "quoted", comma', "the firm's view")


def test_json_array_file_is_read(tmp_path: Path) -> None:
    rows = synthetic_rows(8)
    for split in ("train", "test"):
        (tmp_path / f"{split}.json").write_text(json.dumps([{"text": t, "label": y} for t, y in rows]))
    assert load_ag_news(tmp_path)["test"].labels == tuple(y for _, y in rows)


# --- bad input ---------------------------------------------------------------------------------------

GOOD_HUB = 'text,label\n"fine text one",1\n'
GOOD_ORIGINAL = '"2","Title one","Description one"\n'


@pytest.mark.parametrize(("name", "content", "where"), [
    ("train.csv", b"text,label\n", "no data rows"),
    ("train.csv", b"", "line 1"),
    ("train.csv", b"text,label\nfirst row,1\nsecond row,2,extra\n", "line 3"),
    ("train.csv", b"text,label\nfirst row,1\nno label here\n", "line 3"),
    ("train.csv", b"text,label\nfirst row,1\nsecond row,4\n", "line 3"),
    ("train.csv", b"text,label\nfirst row,-1\n", "line 2"),
    ("train.csv", b"text,label\nfirst row,1\nsecond row,one\n", "line 3"),
    ("train.csv", b"text,label\nfirst row,1\nsecond row,1.5\n", "line 3"),
    ("train.csv", b"text,label\nfirst row,1\n,2\n", "line 3"),
    ("train.csv", b'text,label\nfirst row,1\n"   ",2\n', "line 3"),
    ("train.csv", b'text,label\n"multi\nline row",1\n"   ",2\n', "line 4"),
    ("train.csv", b"text,label\nfirst row,1\nbad \xff byte,2\n", "line 3"),
    ("train.csv", b"only,two,three,four\n", "line 1"),
    ("train.csv", b'"1","t","d"\n"5","title","description"\n', "line 2"),
    ("train.csv", b'"1","t","d"\n"0","title","description"\n', "line 2"),
    ("train.csv", b'"1","t","d"\n"2","title only"\n', "line 2"),
    ("train.csv", b'"1","t","d"\n"2","title","description","extra"\n', "line 2"),
    ("train.csv", b'"1","t","d"\n"2","",""\n', "line 2"),
    ("train.jsonl", b'{"text": "ok", "label": 1}\n{"text": "bad", label: 1}\n', "line 2"),
    ("train.jsonl", b'{"text": "ok", "label": 1}\n\n{"text": "bad", "label": 9}\n', "line 3"),
    ("train.jsonl", b'{"text": "ok", "label": 1}\n{"text": "", "label": 2}\n', "line 2"),
    ("train.jsonl", b'{"text": "ok", "label": 1}\n{"text": "bad \xff", "label": 2}\n', "line 2"),
])
def test_bad_input_names_file_and_line_in_one_line(tmp_path: Path, name: str, content: bytes,
                                                   where: str) -> None:
    (tmp_path / name).write_bytes(content)
    (tmp_path / "test.csv").write_text(GOOD_HUB)
    with pytest.raises(ChimeraError) as caught:
        load_ag_news(tmp_path)
    message = str(caught.value)
    assert name in message and where in message
    assert "\n" not in message


def test_bad_parquet_row_is_named(tmp_path: Path) -> None:
    write_parquet(tmp_path / "train.parquet", [("fine", 0), ("  ", 1)])
    (tmp_path / "test.csv").write_text(GOOD_HUB)
    with pytest.raises(ChimeraError, match=r"train\.parquet: row 2: empty text"):
        load_ag_news(tmp_path)


@pytest.mark.parametrize(("setup", "expected"), [
    ("missing", "data folder not found"),
    ("file", "data folder not found"),
    ("empty", "no train file"),
    ("no_test", "no test file"),
    ("two_trains", "several train files"),
])
def test_folder_problems_name_the_folder(tmp_path: Path, setup: str, expected: str) -> None:
    folder = tmp_path / "data"
    if setup == "file":
        folder.write_text("not a folder")
    elif setup != "missing":
        folder.mkdir()
    if setup in ("no_test", "two_trains"):
        (folder / "train.csv").write_text(GOOD_HUB)
    if setup == "two_trains":
        (folder / "train.jsonl").write_text('{"text": "x", "label": 1}\n')
        (folder / "test.csv").write_text(GOOD_HUB)
    with pytest.raises(ChimeraError, match=expected) as caught:
        load_ag_news(folder)
    assert str(folder) in str(caught.value)


def test_original_layout_labels_are_shifted_to_zero_based(tmp_path: Path) -> None:
    (tmp_path / "train.csv").write_text(GOOD_ORIGINAL)
    (tmp_path / "test.csv").write_text(GOOD_ORIGINAL)
    split = load_ag_news(tmp_path)["train"]
    assert split.labels == (1,) and split.texts == ("Title one Description one",)


# --- subsets -----------------------------------------------------------------------------------------


def uneven_split(counts: dict[int, int], *, offset: int = 0) -> TextSplit:
    rows = [(f"item {offset + i} about {TOPICS[label][i % 5]} number {offset + i}", label)
            for label, n in counts.items() for i in range(n)]
    return TextSplit(tuple(t for t, _ in rows), tuple(y for _, y in rows))


SPLITS = {"train": uneven_split({0: 130, 1: 110, 2: 90, 3: 70}),
          "test": uneven_split({0: 50, 1: 50, 2: 50, 3: 50}, offset=1000)}
CFG = DataConfig(train_samples=100, val_samples=60, test_samples=0)


def test_subset_sizes_and_largest_remainder_stratification() -> None:
    subsets = make_subsets(SPLITS, CFG, seed=0)
    assert subsets.train.label_counts() == {0: 33, 1: 28, 2: 22, 3: 17}  # 32.5, 27.5, 22.5, 17.5: ties go low
    assert len(subsets.val) == 60 and len(subsets.test) == 200
    assert len(subsets.clean_train) == 60 and set(subsets.clean_train.texts) <= set(subsets.train.texts)
    assert set(subsets.train.texts).isdisjoint(subsets.val.texts)
    assert all(v == 0 for v in subsets.leakage.values())


def test_largest_remainders_get_the_leftover_rows() -> None:
    cfg = DataConfig(train_samples=30, val_samples=8)  # quotas 9.75, 8.25, 6.75, 5.25
    assert make_subsets(SPLITS, cfg, seed=0).train.label_counts() == {0: 10, 1: 8, 2: 7, 3: 5}


def test_test_subset_is_stratified_when_asked() -> None:
    cfg = DataConfig(train_samples=100, val_samples=60, test_samples=40)
    assert make_subsets(SPLITS, cfg, seed=0).test.label_counts() == {0: 10, 1: 10, 2: 10, 3: 10}


def test_subsets_are_a_function_of_the_seed() -> None:
    a, b, c = (make_subsets(SPLITS, CFG, seed=s) for s in (7, 7, 8))
    for name in ("train", "val", "clean_train", "test"):
        assert getattr(a, name).fingerprint() == getattr(b, name).fingerprint()
    assert a.train.fingerprint() != c.train.fingerprint()
    assert a.val.fingerprint() != c.val.fingerprint()


def test_leakage_guard_drops_test_rows_seen_in_train_or_val() -> None:
    train = uneven_split({0: 40, 1: 40, 2: 40, 3: 40})
    # Every train-split row again (up to case and punctuation), plus one new row four times.
    test = TextSplit(tuple(f"  {t.upper()}." for t in train.texts) + ("fresh story",) * 4,
                     train.labels + (0, 0, 0, 0))
    cfg = DataConfig(train_samples=40, val_samples=40, test_samples=0)
    subsets = make_subsets({"train": train, "test": test}, cfg, seed=3)
    assert subsets.leakage == {"val_dupes_of_train": 0, "val_internal_dupes": 0, "test_dupes_of_train": 40,
                               "test_dupes_of_val": 40, "test_internal_dupes": 3}
    assert len(subsets.test) == 160 - 40 - 40 + 1
    seen = {normalise_text(t) for t in subsets.train.texts + subsets.val.texts}
    assert not seen & {normalise_text(t) for t in subsets.test.texts}


def test_leakage_guard_drops_val_rows_seen_in_train_or_repeated() -> None:
    base = uneven_split({0: 40, 1: 40, 2: 40, 3: 40})
    copies = tuple(f"{t.upper()}!" for t in base.texts[:20])  # 20 texts present twice
    train = TextSplit(base.texts + copies, base.labels + base.labels[:20])
    cfg = DataConfig(train_samples=40, val_samples=40)
    subsets = make_subsets({"train": train, "test": uneven_split({0: 8}, offset=900)}, cfg, seed=5)
    in_train = [(a in subsets.train.texts) + (b in subsets.train.texts)
                for a, b in zip(base.texts[:20], copies, strict=True)]
    assert subsets.leakage["val_dupes_of_train"] == in_train.count(1)  # the other copy was a candidate
    assert subsets.leakage["val_internal_dupes"] == in_train.count(0)  # both copies were candidates
    assert in_train.count(1) > 0 and in_train.count(0) > 0  # seed 5 exercises both cases
    val_keys = [normalise_text(t) for t in subsets.val.texts]
    assert len(set(val_keys)) == 40 and not set(val_keys) & {normalise_text(t) for t in subsets.train.texts}


@pytest.mark.parametrize(("cfg", "key"), [
    (DataConfig(train_samples=401, val_samples=8), "data.train_samples"),
    (DataConfig(train_samples=390, val_samples=20), "data.val_samples"),
    (DataConfig(train_samples=100, val_samples=60, test_samples=201), "data.test_samples"),
])
def test_asking_for_more_rows_than_exist_names_the_key(cfg: DataConfig, key: str) -> None:
    with pytest.raises(ChimeraError, match=key):
        make_subsets(SPLITS, cfg, seed=0)
