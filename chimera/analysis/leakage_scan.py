"""The doctor's leakage rescan: exact and near-duplicate texts across a run's train/val/test subsets.

Exact duplicates compare `normalise_text` (the data module's own normalisation, so the rescan and the
split-time leakage guard agree on what "the same text" is). Near duplicates compare sets of word
3-grams (lower-cased `\\w+` words): a pair with Jaccard similarity >= the threshold counts, which
catches the same story with a changed word, punctuation or a shortened tail. Candidate pairs come
from an inverted index over 3-grams, so no all-pairs loop is needed.

The data module is imported lazily, only by `rescan` (for `normalise_text`) and `subsets_for_record`,
so the doctor loads without torch or data code and works on records from another machine;
everything else works on plain lists of strings.
"""

from __future__ import annotations

import os
import re
import unicodedata
from collections import defaultdict
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

from chimera.errors import ChimeraError
from chimera.records.record import RunRecord

DATA_ENV = "CHIMERA_DATA_DIR"
PAIRS = (("train", "val"), ("train", "test"), ("val", "test"))
MAX_EXAMPLES, EXAMPLE_CHARS = 3, 80
_WORD = re.compile(r"\w+")


def fallback_normalise(text: str) -> str:
    """NFKC, case-folded, whitespace collapsed: used when the data module is not importable."""
    return " ".join(unicodedata.normalize("NFKC", text).casefold().split())


def shingles(text: str, n: int = 3) -> frozenset[tuple[str, ...]]:
    words = _WORD.findall(text.casefold())
    if len(words) < n:
        return frozenset([tuple(words)]) if words else frozenset()
    return frozenset(tuple(words[i:i + n]) for i in range(len(words) - n + 1))


def duplicate_rows(first: Sequence[str], second: Sequence[str], *, normalise: Callable[[str], str],
                   jaccard: float) -> tuple[list[int], list[int]]:
    """Indices of rows of `second` with an exact, and (otherwise) a near duplicate in `first`."""
    exact_keys = {normalise(t) for t in first}
    first_sets = [shingles(t) for t in first]
    index: dict[tuple[str, ...], list[int]] = defaultdict(list)
    for i, grams in enumerate(first_sets):
        for gram in grams:
            index[gram].append(i)
    exact, near = [], []
    for j, text in enumerate(second):
        if normalise(text) in exact_keys:
            exact.append(j)
            continue
        grams = shingles(text)
        shared: dict[int, int] = defaultdict(int)
        for gram in grams:
            for i in index.get(gram, ()):
                shared[i] += 1
        if any(k / (len(grams) + len(first_sets[i]) - k) >= jaccard for i, k in shared.items()):
            near.append(j)
    return exact, near


def scan_texts(texts: Mapping[str, Sequence[str]], *, normalise: Callable[[str], str],
               jaccard: float) -> dict[str, Any]:
    """Counts per split pair (`exact_train_val`, `near_train_test`, ...) and up to 3 example texts."""
    evidence: dict[str, Any] = {}
    examples: list[str] = []
    for a, b in PAIRS:
        if a not in texts or b not in texts:
            continue
        exact, near = duplicate_rows(texts[a], texts[b], normalise=normalise, jaccard=jaccard)
        evidence[f"exact_{a}_{b}"], evidence[f"near_{a}_{b}"] = len(exact), len(near)
        for kind, rows in (("exact", exact), ("near", near)):
            for j in rows[:MAX_EXAMPLES - len(examples)]:
                examples.append(f"{kind} {a}/{b}: {_clip(texts[b][j])}")
    evidence["examples"] = examples
    return evidence


def _clip(text: str) -> str:
    text = " ".join(text.split())
    return text if len(text) <= EXAMPLE_CHARS else text[:EXAMPLE_CHARS - 3] + "..."


def _texts_of(subsets: Any) -> dict[str, Sequence[str]]:
    if isinstance(subsets, Mapping):
        return {name: list(texts) for name, texts in subsets.items()}
    return {name: getattr(subsets, name).texts for name in ("train", "val", "test") if hasattr(subsets, name)}


def resolve_data_dir(record: RunRecord, data_dir: Path | str | None) -> Path | None:
    """--data-dir, else the record's data.source when that folder exists here, else $CHIMERA_DATA_DIR,
    else None (the hub) when the run read the hub; anything else is an error naming the fix."""
    if data_dir is not None:
        if not Path(data_dir).is_dir():
            raise ChimeraError(f"--data-dir {data_dir}: no such folder")
        return Path(data_dir)
    source = record.data.source
    from_hub = source.startswith("hub:")
    for raw in (None if from_hub else source, os.environ.get(DATA_ENV)):
        if raw and Path(raw).is_dir():
            return Path(raw)
    if from_hub:
        return None
    raise ChimeraError(f"no local copy of the run's data ({source!r}) for the leakage rescan; "
                       f"pass --data-dir or set ${DATA_ENV}")


def subsets_for_record(record: RunRecord, data_dir: Path | str | None) -> tuple[Any, Callable[[str], str]]:
    """Re-derive the run's subsets exactly as the trainer did (same data config and seed); the data module
    only loads for a rescan."""
    from chimera.config import AG_NEWS
    from chimera.data.dataset import load_data
    from chimera.data.subsets import make_subsets, normalise_text

    data = record.config.data  # another dataset is read from where data.dataset names, as the run read it
    folder = resolve_data_dir(record, data_dir) if data.dataset == AG_NEWS else None
    subsets = make_subsets(load_data(data, folder).splits, data, record.seed)
    return subsets, normalise_text


def _fingerprints_match(record: RunRecord, subsets: Any) -> bool | None:
    recorded = record.data.fingerprints
    ours = {n: getattr(subsets, n).fingerprint() for n in recorded
            if hasattr(getattr(subsets, n, None), "fingerprint")}
    return all(recorded[n] == v for n, v in ours.items()) if ours else None


def rescan(record: RunRecord, *, data_dir: Path | str | None = None, subsets: Any = None,
           jaccard: float = 0.8) -> dict[str, Any]:
    """Evidence for the suspect-leakage finding; a rescan that cannot run says why instead of failing."""
    normalise: Callable[[str], str] = fallback_normalise
    evidence: dict[str, Any] = {"near_duplicate_jaccard": jaccard}
    if subsets is None:
        try:
            subsets, normalise = subsets_for_record(record, data_dir)
        except (ImportError, OSError, ValueError, TypeError, ChimeraError) as exc:
            return {**evidence, "rescan": f"not run: {exc}"}
        evidence["subsets_match_record_fingerprints"] = _fingerprints_match(record, subsets)
    else:
        try:
            from chimera.data.subsets import normalise_text as normalise
        except ImportError:
            pass
    return {**evidence, **scan_texts(_texts_of(subsets), normalise=normalise, jaccard=jaccard)}
