"""Text augmentation: determinism, identity when off, dropout and shuffle invariants, WordNet handling."""

from __future__ import annotations

import os
import random
import zipfile
from collections import Counter
from pathlib import Path

import nltk
import pytest

from chimera.config import AugmentConfig
from chimera.data.augment import Augmenter, require_wordnet
from chimera.errors import ChimeraError

TEXT = ("Officials said the market prices rise quickly after strong growth in exports while "
        "investors watch the central bank decision closely")
NO_SYNONYMS = dict(synonym_prob=0.0)


def wordnet_or_skip() -> None:
    try:
        require_wordnet()
    except ChimeraError as exc:
        if os.environ.get("CHIMERA_REQUIRE_DATA") == "1":
            pytest.fail(f"CHIMERA_REQUIRE_DATA=1 but WordNet is missing: {exc}")
        pytest.skip(f"WordNet not installed (run scripts/prepare_wordnet.sh): {exc}")


def test_disabled_augmenter_is_the_identity() -> None:
    augmenter = Augmenter(AugmentConfig(enabled=False, synonym_prob=0.5, word_dropout=0.5, word_shuffle=0.5))
    assert augmenter("  Any text,  untouched ", random.Random(0)) == "  Any text,  untouched "


def test_enabled_with_zero_probabilities_changes_nothing() -> None:
    augmenter = Augmenter(AugmentConfig(enabled=True, synonym_prob=0.0, word_dropout=0.0, word_shuffle=0.0))
    assert augmenter(TEXT, random.Random(0)) == TEXT


def test_output_is_a_function_of_the_rng_state() -> None:
    augmenter = Augmenter(AugmentConfig(enabled=True, word_dropout=0.2, word_shuffle=0.3, **NO_SYNONYMS))
    outputs = {augmenter(TEXT, random.Random(f"1:2:{i}")) for i in range(3) for _ in range(2)}
    assert len(outputs) == 3  # same seed -> same text; these three seeds differ
    assert augmenter(TEXT, random.Random("1:2:0")) == augmenter(TEXT, random.Random("1:2:0"))


def test_dropout_never_removes_every_word() -> None:
    augmenter = Augmenter(AugmentConfig(enabled=True, word_dropout=0.99, word_shuffle=0.0, **NO_SYNONYMS))
    for seed in range(200):
        words = augmenter("alpha beta gamma", random.Random(seed)).split()
        assert 1 <= len(words) <= 3 and set(words) <= {"alpha", "beta", "gamma"}


def test_shuffle_keeps_the_multiset_of_words() -> None:
    augmenter = Augmenter(AugmentConfig(enabled=True, word_dropout=0.0, word_shuffle=0.5, **NO_SYNONYMS))
    outputs = [augmenter(TEXT, random.Random(seed)) for seed in range(20)]
    assert all(Counter(out.split()) == Counter(TEXT.split()) for out in outputs)
    assert any(out != TEXT for out in outputs)


def test_synonym_replacement_changes_lowercase_words_only() -> None:
    wordnet_or_skip()
    augmenter = Augmenter(AugmentConfig(enabled=True, synonym_prob=0.9, word_dropout=0.0, word_shuffle=0.0))
    out = augmenter(TEXT, random.Random(0)).split()
    original = TEXT.split()
    assert len(out) == len(original)
    changed = [(a, b) for a, b in zip(original, out, strict=True) if a != b]
    assert changed, "no word was replaced"
    assert all(a[0].islower() and len(a) >= 4 for a, _ in changed)  # names and short words stay
    assert out[0] == "Officials"
    assert augmenter(TEXT, random.Random(0)).split() == out
    assert augmenter.synonyms("market") == tuple(sorted(augmenter.synonyms("market")))
    assert "market" not in augmenter.synonyms("market")


def test_missing_wordnet_is_a_chimera_error_naming_the_fix(tmp_path: Path,
                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(nltk.data, "path", [str(tmp_path)])
    with pytest.raises(ChimeraError, match="nltk.downloader wordnet") as caught:
        require_wordnet()
    assert "scripts/prepare_wordnet.sh" in str(caught.value) and "\n" not in str(caught.value)
    with pytest.raises(ChimeraError):
        Augmenter(AugmentConfig(enabled=True, synonym_prob=0.1))
    Augmenter(AugmentConfig(enabled=True, synonym_prob=0.0))  # no synonyms, no WordNet needed


def test_wordnet_as_the_zip_nltks_downloader_writes_gives_the_same_synonyms(tmp_path: Path,
                                                                             monkeypatch: pytest.MonkeyPatch) -> None:
    """An offline kit carries WordNet as corpora/wordnet.zip (11 MB against 36 MB unpacked); NLTK's own lookup of
    corpora/wordnet does not look inside it, ours does."""
    wordnet_or_skip()
    unpacked = Path(str(nltk.data.find("corpora/wordnet")))
    config = AugmentConfig(enabled=True, synonym_prob=0.5, word_dropout=0.0, word_shuffle=0.0)
    words = ("market", "prices", "growth", "decision")
    expected = {word: Augmenter(config).synonyms(word) for word in words}
    (tmp_path / "corpora").mkdir()
    with zipfile.ZipFile(tmp_path / "corpora" / "wordnet.zip", "w") as archive:  # stored: fast to write
        for path in sorted(unpacked.rglob("*")):
            archive.write(path, Path("wordnet") / path.relative_to(unpacked))
    monkeypatch.setattr(nltk.data, "path", [str(tmp_path)])
    zipped = Augmenter(config)
    assert ".zip" in str(zipped._wordnet.root)
    assert {word: zipped.synonyms(word) for word in words} == expected
