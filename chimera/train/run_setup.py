"""Everything a run needs before its first step: data subsets, tokenizer, loaders, model, record skeleton.

`prepare_inputs` is the one seam tests replace to train on synthetic data (as accelerate's
`mocked_dataloaders` does for its examples).
"""

from __future__ import annotations

import datetime as dt
import os
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path

import torch
from accelerate import Accelerator
from torch.utils.data import DataLoader

from chimera.config import RunConfig
from chimera.data.agnews import load_ag_news
from chimera.data.augment import Augmenter
from chimera.data.loader import EPOCH_STRIDE, eval_loader, train_loader
from chimera.data.manifest import pin_pool
from chimera.data.subsets import Subsets, make_subsets
from chimera.data.tokenizer import TokenizerBundle, build_tokenizer, token_stats
from chimera.errors import ChimeraError
from chimera.model.bow import BagOfNgramsClassifier
from chimera.model.encoder import EncoderClassifier
from chimera.records.record import SPLITS, DataInfo, RunRecord, TokenStats
from chimera.train.device import (
    ACCELERATE_ENV,
    DevicePolicy,
    PrecisionChoice,
    describe_environment,
    probe_device,
    resolve_precision,
)

NUM_CLASSES = 4
EVAL_BATCH_SIZE = 256  # evaluation has no gradients, so larger batches are cheaper per row


@dataclass(frozen=True)
class RunInputs:
    subsets: Subsets
    tokenizer: TokenizerBundle
    train_loader: Callable[[int], DataLoader]  # epoch -> loader (order and augmentation fixed by seed, epoch)
    eval_loaders: dict[str, DataLoader]  # val, clean_train, test
    batches_per_epoch: int  # optimiser steps per epoch in each process (the global batch is batch_size x world)
    data_info: DataInfo


def prepare_inputs(config: RunConfig, *, data_dir: Path | None, cache_dir: Path | None,
                   accelerator: Accelerator) -> RunInputs:
    """Load AG News, cut the seeded subsets, train (or reuse) the tokenizer and build the loaders."""
    dc = config.data
    with accelerator.main_process_first():  # one process trains the tokenizer, the others hit the cache
        splits = load_ag_news(data_dir, train_pool=dc.train_pool)
        subsets = make_subsets(splits, dc, config.seed)
        bundle = build_tokenizer(subsets.train.texts, vocab_size=dc.vocab_size, lowercase=dc.lowercase,
                                 cache_dir=cache_dir)
    augmenter = Augmenter(config.augment) if config.augment.enabled else None
    pin = accelerator.device.type == "cuda"
    world = accelerator.num_processes
    # accelerate deals whole batches round-robin to the processes and drops an incomplete last round
    batches_per_epoch = len(subsets.train) // config.train.batch_size // world
    if batches_per_epoch < 1:
        raise ChimeraError(f"data.train_samples ({len(subsets.train)}) is smaller than train.batch_size "
                           f"({config.train.batch_size}) x {world} process(es)")

    def make_train_loader(epoch: int) -> DataLoader:
        loader = train_loader(subsets.train, bundle, augmenter=augmenter, seed=config.seed, epoch=epoch,
                              batch_size=config.train.batch_size, max_length=dc.max_length, pin_memory=pin)
        return _own_generator(loader, config.seed * EPOCH_STRIDE + epoch)

    evals = {name: _own_generator(eval_loader(getattr(subsets, name), bundle, batch_size=EVAL_BATCH_SIZE,
                                              max_length=dc.max_length, pin_memory=pin), 0)
             for name in ("val", "clean_train", "test")}
    data_info = DataInfo(
        source=str(data_dir) if data_dir else "hub:fancyzhx/ag_news",
        sizes={name: len(getattr(subsets, name)) for name in SPLITS},
        label_counts={name: {str(k): v for k, v in getattr(subsets, name).label_counts().items()} for name in SPLITS},
        leakage=dict(subsets.leakage),
        fingerprints={name: getattr(subsets, name).fingerprint() for name in SPLITS},
        tokenizer_sha256=bundle.sha256,
        token_stats={name: TokenStats(**token_stats(bundle, getattr(subsets, name).texts, dc.max_length))
                     for name in ("train", "val", "test")},
    )
    return RunInputs(subsets=subsets, tokenizer=bundle, train_loader=make_train_loader, eval_loaders=evals,
                     batches_per_epoch=batches_per_epoch, data_info=data_info)


def _own_generator(loader: DataLoader, seed: int) -> DataLoader:
    """Give a loader its own generator: without one, every `iter(loader)` draws its worker base seed
    from the global torch RNG, which also drives dropout, so a resumed run (a fresh iterator mid-epoch)
    and evaluations would shift the dropout masks of every later step."""
    loader.generator = torch.Generator().manual_seed(seed)
    return loader


def check_data_matches(data_info: DataInfo, expected: DataInfo, *, where: str) -> None:
    """Refuse to go on when the subsets or tokenizer differ from a record's (`chimera reproduce`)."""
    recorded = expected.fingerprints
    for name in SPLITS:
        if data_info.fingerprints[name] != recorded.get(name):
            raise ChimeraError(
                f"{where}: the {name} subset on disk differs from the recorded one (sha256 "
                f"{data_info.fingerprints[name][:12]}... vs {str(recorded.get(name))[:12]}... in the record; "
                f"data from {data_info.source}, the record used {expected.source}); "
                "point --data-dir at the data the record was made with")
    if data_info.tokenizer_sha256 != expected.tokenizer_sha256:
        raise ChimeraError(f"{where}: the tokenizer trained now differs from the recorded one (sha256 "
                           f"{data_info.tokenizer_sha256[:12]}... vs {expected.tokenizer_sha256[:12]}...); "
                           "the tokenizers version or the tokenizer pipeline changed")


def build_model(config: RunConfig, inputs: RunInputs) -> EncoderClassifier | BagOfNgramsClassifier:
    """The cell's classifier: the transformer encoder, or the linear bag-of-n-grams reference."""
    model_class = BagOfNgramsClassifier if config.model.arch == "bag_of_ngrams" else EncoderClassifier
    return model_class(config.model, vocab_size=inputs.tokenizer.tokenizer.get_vocab_size(),
                       max_length=config.data.max_length, num_classes=NUM_CLASSES, pad_id=inputs.tokenizer.pad_id)


def pin_train_pool(config: RunConfig) -> RunConfig:
    """`config` with data.train_pool pinned to its manifest's sha256, so the record names the exact pool list."""
    return replace(config, data=replace(config.data, train_pool=pin_pool(config.data.train_pool)))


def decide_policy(config: RunConfig) -> tuple[RunConfig, DevicePolicy, PrecisionChoice]:
    """The device policy for `config` and the config with the precision that will run (so the record alone
    reruns it). Precision: train.precision > $ACCELERATE_MIXED_PRECISION (accelerate launch) > auto;
    ChimeraError (exit 2) when the device cannot run it natively."""
    choice = resolve_precision(config.train.precision, os.environ.get(ACCELERATE_ENV))
    policy = choice.policy_for(probe_device(config.device))
    return replace(config, train=replace(config.train, precision=policy.precision)), policy, choice


def start_record(config: RunConfig, inputs: RunInputs, *, policy: DevicePolicy, choice: PrecisionChoice,
                 world_size: int) -> RunRecord:
    """The record of a run about to start (status `failed` until it ends otherwise); the trainer fills
    parameters, curves, timing, events and final metrics through it."""
    now = dt.datetime.now(dt.UTC)
    slug = config.cell.replace("/", "-")
    return RunRecord(
        run_id=f"{slug}-{config.profile}-s{config.seed}-{now:%Y%m%dT%H%M%SZ}",
        cell=config.cell, profile=config.profile, seed=config.seed,
        created_at=now.isoformat(timespec="seconds"), world_size=world_size,
        config=config,
        env=describe_environment(probe_device(policy.device), policy),
        precision=choice.record(policy),
        data=inputs.data_info,
    )
