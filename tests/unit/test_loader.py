"""Loaders: augmentation and order are pure functions of (seed, epoch, index); batches are model-ready."""

from __future__ import annotations

import pickle
import random
from pathlib import Path

import pytest
import torch

from chimera.config import AugmentConfig
from chimera.data.augment import Augmenter
from chimera.data.subsets import TextSplit
from chimera.data.tokenizer import (
    EncodeCollate,
    TextDataset,
    TokenizerBundle,
    build_tokenizer,
    epoch_order,
    eval_loader,
    train_loader,
)

WORDS = ["council", "striker", "shares", "software", "minister", "league", "profit", "satellite", "treaty"]
SPLIT = TextSplit(tuple(" ".join(WORDS[(i + k) % 9] for k in range(3 + i % 7)) + f" item {i}"
                        for i in range(40)), tuple(i % 4 for i in range(40)))
AUGMENTER = Augmenter(AugmentConfig(enabled=True, synonym_prob=0.0, word_dropout=0.2, word_shuffle=0.3))


@pytest.fixture(scope="module")
def bundle(tmp_path_factory: pytest.TempPathFactory) -> TokenizerBundle:
    cache: Path = tmp_path_factory.mktemp("cache")
    return build_tokenizer(SPLIT.texts, vocab_size=200, lowercase=True, cache_dir=cache)


def test_augmented_text_depends_only_on_seed_epoch_and_index() -> None:
    first = TextDataset(SPLIT, augmenter=AUGMENTER, seed=3, epoch=1)
    forward = [first[i] for i in range(40)]
    random.seed(123)
    torch.manual_seed(123)  # global RNG state must not matter
    second = TextDataset(SPLIT, augmenter=AUGMENTER, seed=3, epoch=1)
    assert [second[i] for i in reversed(range(40))] == forward[::-1]
    assert [TextDataset(SPLIT, augmenter=AUGMENTER, seed=3, epoch=2)[i] for i in range(40)] != forward
    assert [TextDataset(SPLIT, augmenter=AUGMENTER, seed=4, epoch=1)[i] for i in range(40)] != forward
    assert [label for _, label in forward] == list(SPLIT.labels)


def test_order_is_deterministic_and_changes_with_the_epoch() -> None:
    order = epoch_order(40, seed=5, epoch=0)
    torch.manual_seed(999)
    assert epoch_order(40, seed=5, epoch=0) == order
    assert sorted(order) == list(range(40))
    assert epoch_order(40, seed=5, epoch=1) != order
    assert epoch_order(40, seed=6, epoch=0) != order


def test_train_batches_follow_the_epoch_order(bundle: TokenizerBundle) -> None:
    def batches(epoch: int) -> list[dict[str, torch.Tensor]]:
        loader = train_loader(SPLIT, bundle, augmenter=None, seed=5, epoch=epoch, batch_size=16, max_length=8)
        return list(loader)

    order = epoch_order(40, seed=5, epoch=0)
    collate = EncodeCollate(bundle, 8)
    expected = [collate([TextDataset(SPLIT)[i] for i in order[k:k + 16]]) for k in (0, 16)]
    for got in (batches(0), batches(0)):
        assert len(got) == 2  # drop_last: 40 rows make two full batches of 16
        assert all(torch.equal(g[key], e[key]) for g, e in zip(got, expected, strict=True) for key in e)
    assert not torch.equal(batches(1)[0]["input_ids"], batches(0)[0]["input_ids"])


def test_train_batch_keys_and_shapes(bundle: TokenizerBundle) -> None:
    loader = train_loader(SPLIT, bundle, augmenter=None, seed=0, epoch=0, batch_size=16, max_length=8)
    batch = next(iter(loader))
    assert set(batch) == {"input_ids", "attention_mask", "labels"}
    ids, mask = batch["input_ids"], batch["attention_mask"]
    assert ids.dtype == torch.long and mask.dtype == torch.bool and batch["labels"].dtype == torch.long
    assert ids.shape == mask.shape and ids.shape[0] == 16 and ids.shape[1] <= 8
    assert batch["labels"].shape == (16,) and mask[:, 0].all()


def test_eval_loader_keeps_every_row_in_order(bundle: TokenizerBundle) -> None:
    batches = list(eval_loader(SPLIT, bundle, batch_size=16, max_length=8))
    assert [len(b["labels"]) for b in batches] == [16, 16, 8]
    assert [y for b in batches for y in b["labels"].tolist()] == list(SPLIT.labels)


def test_collate_survives_pickling_for_worker_processes(bundle: TokenizerBundle) -> None:
    collate = pickle.loads(pickle.dumps(EncodeCollate(bundle, 8)))
    rows = [(SPLIT.texts[0], 1), (SPLIT.texts[1], 2)]
    expected = EncodeCollate(bundle, 8)(rows)
    assert all(torch.equal(collate(rows)[k], expected[k]) for k in expected)


def test_pre_tokenized_eval_batches_equal_tokenizing_each_batch(bundle: TokenizerBundle) -> None:
    collate = EncodeCollate(bundle, 8)
    expected = [collate([(SPLIT.texts[i], SPLIT.labels[i]) for i in range(start, min(start + 16, len(SPLIT)))])
                for start in range(0, len(SPLIT), 16)]
    batches = list(eval_loader(SPLIT, bundle, batch_size=16, max_length=8))
    assert len(batches) == len(expected)
    for got, want in zip(batches, expected, strict=True):
        assert all(torch.equal(got[k], want[k]) and got[k].dtype == want[k].dtype for k in want)


def test_augmented_batches_are_the_same_for_any_worker_count(bundle: TokenizerBundle) -> None:
    """The GPU policy hands the loader worker processes; a run's batches must not depend on how many."""
    def batches(workers: int) -> list[dict[str, torch.Tensor]]:
        return list(train_loader(SPLIT, bundle, augmenter=AUGMENTER, seed=2, epoch=1, batch_size=8, max_length=10,
                                 num_workers=workers))

    alone = batches(0)
    for got in (batches(1), batches(2)):
        assert all(torch.equal(g[key], e[key]) for g, e in zip(got, alone, strict=True) for key in e)


def test_fixed_width_batches_all_have_max_length_columns(bundle: TokenizerBundle) -> None:
    """Compiled steps need one shape: every batch padded to max_length, the mask marking the real tokens."""
    loose = next(iter(train_loader(SPLIT, bundle, augmenter=None, seed=0, epoch=0, batch_size=16, max_length=20)))
    fixed = next(iter(train_loader(SPLIT, bundle, augmenter=None, seed=0, epoch=0, batch_size=16, max_length=20,
                                   fixed_width=True)))
    assert fixed["input_ids"].shape == (16, 20) and loose["input_ids"].shape[1] < 20
    width = loose["input_ids"].shape[1]
    assert torch.equal(fixed["input_ids"][:, :width], loose["input_ids"])
    assert torch.equal(fixed["attention_mask"][:, :width], loose["attention_mask"])
    assert not fixed["attention_mask"][:, width:].any() and (fixed["input_ids"][:, width:] == bundle.pad_id).all()
