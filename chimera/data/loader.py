"""DataLoaders whose order and augmentation are pure functions of (seed, epoch, index).

A resumed run rebuilds the loader for its epoch and skips the batches already seen; it then gets
exactly the rows, in exactly the order and with exactly the augmentation, of the interrupted run.
"""

from __future__ import annotations

import random

import torch
from torch.utils.data import DataLoader, Dataset

from chimera.data.augment import Augmenter
from chimera.data.text import TextSplit
from chimera.data.tokenizer import TokenizerBundle, encode_batch

EPOCH_STRIDE = 1_000_003  # prime: seed * stride + epoch never collides for epochs below it


class TextDataset(Dataset):
    """(text, label) rows; with an augmenter, row i of an epoch is augmented with its own seeded rng."""

    def __init__(self, split: TextSplit, *, augmenter: Augmenter | None = None, seed: int = 0,
                 epoch: int = 0) -> None:
        self.split, self.augmenter, self.seed, self.epoch = split, augmenter, seed, epoch

    def __len__(self) -> int:
        return len(self.split)

    def __getitem__(self, index: int) -> tuple[str, int]:
        text = self.split.texts[index]
        if self.augmenter is not None:
            text = self.augmenter(text, random.Random(f"{self.seed}:{self.epoch}:{index}"))
        return text, self.split.labels[index]


class EncodeCollate:
    """Tokenizes a batch, padded to its longest row or (`fixed_width`) to max_length; a module-level class
    so worker processes can pickle it."""

    def __init__(self, bundle: TokenizerBundle, max_length: int, *, fixed_width: bool = False) -> None:
        self.bundle, self.max_length, self.fixed_width = bundle, max_length, fixed_width

    def __call__(self, rows: list[tuple[str, int]]) -> dict[str, torch.Tensor]:
        texts, labels = zip(*rows, strict=True)
        input_ids, attention_mask = encode_batch(self.bundle, texts, self.max_length, fixed_width=self.fixed_width)
        return {"input_ids": input_ids, "attention_mask": attention_mask,
                "labels": torch.tensor(labels, dtype=torch.long)}


def epoch_order(n: int, *, seed: int, epoch: int) -> list[int]:
    """The row order of one epoch, from its own generator so global RNG state never matters."""
    generator = torch.Generator().manual_seed(seed * EPOCH_STRIDE + epoch)
    return torch.randperm(n, generator=generator).tolist()


def train_loader(split: TextSplit, bundle: TokenizerBundle, *, augmenter: Augmenter | None, seed: int,
                 epoch: int, batch_size: int, max_length: int, pin_memory: bool = False, num_workers: int = 0,
                 drop_last: bool = True, fixed_width: bool = False) -> DataLoader:
    """One epoch of shuffled, optionally augmented training batches (`fixed_width`: all batch_size x max_length)."""
    dataset = TextDataset(split, augmenter=augmenter, seed=seed, epoch=epoch)
    return DataLoader(dataset, batch_size=batch_size, sampler=epoch_order(len(split), seed=seed, epoch=epoch),
                      collate_fn=EncodeCollate(bundle, max_length, fixed_width=fixed_width), drop_last=drop_last,
                      pin_memory=pin_memory, num_workers=num_workers)


class EncodedDataset(Dataset):
    """Rows tokenized once, up front: an evaluation set never changes, and re-tokenizing it at every
    evaluation cost a fifth of the evaluation's time (fixed/dense, full profile)."""

    def __init__(self, split: TextSplit, bundle: TokenizerBundle, max_length: int) -> None:
        ids, mask = encode_batch(bundle, split.texts, max_length)
        self.rows = [row[:length] for row, length in zip(ids, mask.sum(1).tolist(), strict=True)]
        self.labels = split.labels

    def __len__(self) -> int:
        return len(self.rows)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, int]:
        return self.rows[index], self.labels[index]


class PadCollate:
    """Pads pre-tokenized rows to the longest in the batch: the same tensors `EncodeCollate` makes."""

    def __init__(self, pad_id: int) -> None:
        self.pad_id = pad_id

    def __call__(self, rows: list[tuple[torch.Tensor, int]]) -> dict[str, torch.Tensor]:
        ids, labels = zip(*rows, strict=True)
        lengths = torch.tensor([len(r) for r in ids], dtype=torch.long)
        input_ids = torch.nn.utils.rnn.pad_sequence(list(ids), batch_first=True, padding_value=self.pad_id)
        return {"input_ids": input_ids, "attention_mask": torch.arange(input_ids.shape[1]) < lengths[:, None],
                "labels": torch.tensor(labels, dtype=torch.long)}


def eval_loader(split: TextSplit, bundle: TokenizerBundle, *, batch_size: int, max_length: int,
                pin_memory: bool = False, num_workers: int = 0) -> DataLoader:
    """Every row once, in order, never augmented; tokenized once when the loader is built."""
    return DataLoader(EncodedDataset(split, bundle, max_length), batch_size=batch_size, shuffle=False,
                      drop_last=False, collate_fn=PadCollate(bundle.pad_id), pin_memory=pin_memory,
                      num_workers=num_workers)
