"""Seeded, stratified train / val / clean-train / test subsets of AG News, with a leakage guard."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from chimera.config import DataConfig
from chimera.data.text import TextSplit, dedupe_key
from chimera.errors import ChimeraError


@dataclass(frozen=True)
class Subsets:
    """The row sets of one run; `leakage` counts candidate rows dropped as duplicates before sampling."""

    train: TextSplit
    val: TextSplit
    clean_train: TextSplit  # a fixed part of `train`, evaluated without augmentation or dropout
    test: TextSplit
    leakage: dict[str, int]


def make_subsets(splits: dict[str, TextSplit], cfg: DataConfig, seed: int) -> Subsets:
    """Seeded stratified subsets; val and test never share a `normalise_text` key with an earlier set.

    Duplicates are removed from the candidate pools before sampling, so the sizes asked for are exact.
    """
    rng = np.random.default_rng(seed)
    source, official_test = splits["train"], splits["test"]
    labels = np.asarray(source.labels, dtype=np.int64)
    keys = [dedupe_key(t) for t in source.texts]  # TextSplit texts are already cleaned
    _require(cfg.train_samples, len(source), "data.train_samples", "the train split")
    train_idx = _stratified(rng, np.arange(len(source)), labels, cfg.train_samples)
    train_keys = {keys[i] for i in train_idx}

    rest = np.setdiff1d(np.arange(len(source)), train_idx)
    val_pool, val_hits, val_internal = _dedupe(rest, keys, {"train": train_keys})
    _require(cfg.val_samples, len(val_pool), "data.val_samples",
             "the train-split rows left after data.train_samples and the leakage guard")
    val_idx = _stratified(rng, val_pool, labels, cfg.val_samples)

    test_labels = np.asarray(official_test.labels, dtype=np.int64)
    test_keys = [dedupe_key(t) for t in official_test.texts]
    test_pool, test_hits, test_internal = _dedupe(np.arange(len(official_test)), test_keys,
                                                  {"train": train_keys, "val": {keys[i] for i in val_idx}})
    if cfg.test_samples > 0:
        _require(cfg.test_samples, len(test_pool), "data.test_samples",
                 "the test-split rows left after the leakage guard")
        test_idx = _stratified(rng, test_pool, test_labels, cfg.test_samples)
    else:
        test_idx = test_pool
    clean_idx = _stratified(rng, train_idx, labels, min(cfg.val_samples, cfg.train_samples))
    leakage = {"val_dupes_of_train": val_hits["train"], "val_internal_dupes": val_internal,
               "test_dupes_of_train": test_hits["train"], "test_dupes_of_val": test_hits["val"],
               "test_internal_dupes": test_internal}
    return Subsets(train=source.take(train_idx), val=source.take(val_idx), clean_train=source.take(clean_idx),
                   test=official_test.take(test_idx), leakage=leakage)


def _require(wanted: int, available: int, key: str, what: str) -> None:
    if wanted > available:
        raise ChimeraError(f"config: {key} ({wanted}) is larger than {what} ({available} rows); lower {key}")


def _stratified(rng: np.random.Generator, candidates: np.ndarray, labels: np.ndarray, n: int) -> np.ndarray:
    """n of `candidates` (sorted), each class in proportion to its share; largest remainder rounding."""
    candidate_labels = labels[candidates]
    classes, counts = np.unique(candidate_labels, return_counts=True)
    quota, remainder = np.divmod(n * counts, counts.sum())  # exact integer arithmetic, no float ties
    extra = n - int(quota.sum())
    order = np.lexsort((classes, -remainder))  # largest remainder first, then lowest class
    quota[order[:extra]] += 1
    picked = [rng.permutation(candidates[candidate_labels == c])[:k]
              for c, k in zip(classes, quota, strict=True)]
    return np.sort(np.concatenate(picked)) if picked else np.empty(0, dtype=np.int64)


def _dedupe(candidates: np.ndarray, keys: list[str],
            earlier: dict[str, set[str]]) -> tuple[np.ndarray, dict[str, int], int]:
    """Candidates whose key is in no earlier set and not repeated; counts of what was dropped, by reason."""
    hits = dict.fromkeys(earlier, 0)
    internal, seen, kept = 0, set(), []
    for index in candidates:
        key = keys[index]
        source = next((name for name, taken in earlier.items() if key in taken), None)
        if source is not None:
            hits[source] += 1
        elif key in seen:
            internal += 1
        else:
            seen.add(key)
            kept.append(index)
    return np.asarray(kept, dtype=np.int64), hits, internal
