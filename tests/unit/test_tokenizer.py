"""WordPiece tokenizer: training, on-disk cache, deterministic fingerprint, batch encoding, stats."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from chimera.data import tokenizer as tok
from chimera.data.tokenizer import build_tokenizer, default_cache_dir, encode_batch, token_stats

SUBJECTS = ["the council", "a striker", "the company", "our laboratory", "the minister", "a startup"]
VERBS = ["announced", "reported", "celebrated", "questioned", "delayed", "launched"]
OBJECTS = ["new results", "a surprising merger", "the final match", "quarterly profits", "a satellite",
           "fresh elections"]
TEXTS = [f"{s} {v} {o} on day {i}." for i, (s, v, o) in
         enumerate((s, v, o) for s in SUBJECTS for v in VERBS for o in OBJECTS)]


@pytest.fixture
def bundle(tmp_path: Path) -> tok.TokenizerBundle:
    return build_tokenizer(TEXTS, vocab_size=300, lowercase=True, cache_dir=tmp_path)


def test_second_build_loads_the_cache_without_retraining(tmp_path: Path,
                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    first = build_tokenizer(TEXTS, vocab_size=300, lowercase=True, cache_dir=tmp_path)
    mtime = first.path.stat().st_mtime_ns

    def no_training(*args: object, **kwargs: object) -> None:
        raise AssertionError("retrained despite a cache hit")

    monkeypatch.setattr(tok, "_train", no_training)
    second = build_tokenizer(TEXTS, vocab_size=300, lowercase=True, cache_dir=tmp_path)
    assert (second.sha256, second.path) == (first.sha256, first.path)
    assert second.path.stat().st_mtime_ns == mtime
    assert [p.name for p in first.path.parent.iterdir()] == [first.path.name]  # no temp files left behind


def test_cache_key_covers_texts_and_settings(tmp_path: Path) -> None:
    base = build_tokenizer(TEXTS, vocab_size=300, lowercase=True, cache_dir=tmp_path).path
    assert build_tokenizer(TEXTS, vocab_size=310, lowercase=True, cache_dir=tmp_path).path != base
    assert build_tokenizer(TEXTS, vocab_size=300, lowercase=False, cache_dir=tmp_path).path != base
    assert build_tokenizer(TEXTS[:-1], vocab_size=300, lowercase=True, cache_dir=tmp_path).path != base


def test_training_is_deterministic(tmp_path: Path) -> None:
    a = build_tokenizer(TEXTS, vocab_size=300, lowercase=True, cache_dir=tmp_path / "a")
    b = build_tokenizer(TEXTS, vocab_size=300, lowercase=True, cache_dir=tmp_path / "b")
    assert a.sha256 == b.sha256 and len(a.sha256) == 64
    assert a.path.read_bytes() == b.path.read_bytes()


def test_corrupt_cache_file_is_retrained(tmp_path: Path) -> None:
    good = build_tokenizer(TEXTS, vocab_size=300, lowercase=True, cache_dir=tmp_path)
    good.path.write_text("{not json")
    again = build_tokenizer(TEXTS, vocab_size=300, lowercase=True, cache_dir=tmp_path)
    assert again.sha256 == good.sha256


def test_special_token_ids_are_fixed(bundle: tok.TokenizerBundle) -> None:
    assert (bundle.pad_id, bundle.unk_id, bundle.cls_id) == (0, 1, 2)
    assert bundle.vocab_size <= 300


def test_default_cache_dir_precedence(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("CHIMERA_CACHE_DIR", str(tmp_path / "explicit"))
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert default_cache_dir() == tmp_path / "explicit"
    monkeypatch.delenv("CHIMERA_CACHE_DIR")
    assert default_cache_dir() == tmp_path / "xdg" / "chimera"
    monkeypatch.delenv("XDG_CACHE_HOME")
    assert default_cache_dir() == Path.home() / ".cache" / "chimera"


def test_encode_pads_to_the_longest_row_and_masks_padding(bundle: tok.TokenizerBundle) -> None:
    texts = ["the council announced", "a striker celebrated the final match on day 3.", ""]
    ids, mask = encode_batch(bundle, texts, max_length=64)
    assert ids.dtype == torch.long and mask.dtype == torch.bool and ids.shape == mask.shape
    lengths = mask.sum(dim=1).tolist()
    assert ids.shape == (3, max(lengths)) and lengths[0] < lengths[1]
    assert ids[:, 0].tolist() == [bundle.cls_id] * 3
    assert ids[2, :2].tolist() == [bundle.cls_id, bundle.unk_id] and lengths[2] == 2  # empty text: one [UNK]
    assert (ids[~mask] == bundle.pad_id).all()
    assert (ids[mask] != bundle.pad_id).all()


def test_encode_truncates_to_max_length(bundle: tok.TokenizerBundle) -> None:
    long_text = " ".join(TEXTS[:5])
    ids, mask = encode_batch(bundle, [long_text, "the council"], max_length=8)
    assert ids.shape == (2, 8) and mask[0].all() and not mask[1].all()
    full, _ = encode_batch(bundle, [long_text], max_length=512)
    assert ids[0].tolist() == full[0, :8].tolist()


def test_token_stats_counts_unknowns_and_truncation(bundle: tok.TokenizerBundle) -> None:
    text = "the council announced \u2603"  # the snowman was never seen in training
    pieces = len(bundle.tokenizer.encode(text).ids) - 1  # without [CLS]
    assert token_stats(bundle, [text], max_length=64)["unk_rate"] == pytest.approx(1 / pieces)
    assert token_stats(bundle, TEXTS[:4], max_length=64)["unk_rate"] == 0.0
    stats = token_stats(bundle, ["the council", " ".join(TEXTS[:5])], max_length=8)
    assert stats["truncation_rate"] == pytest.approx(0.5)
