"""Everything a run needs before its first step: data subsets, tokenizer, loaders, model, optimiser and
lr schedule (built in one place for the recipe and the benchmarks).

`prepare_inputs` is the one seam tests replace to train on synthetic data (as accelerate's
`mocked_dataloaders` does for its examples).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import torch
from accelerate import Accelerator
from torch import nn
from torch.utils.data import DataLoader

from chimera.config import AG_NEWS_LABELS, RunConfig, TrainConfig
from chimera.data.augment import Augmenter
from chimera.data.dataset import load_data
from chimera.data.subsets import Subsets, make_subsets
from chimera.data.tokenizer import (
    EPOCH_STRIDE,
    TokenizerBundle,
    build_tokenizer,
    eval_loader,
    token_stats,
    train_loader,
)
from chimera.errors import ChimeraError
from chimera.model.encoder import EncoderClassifier, weight_decay_groups
from chimera.records.record import SPLITS, DataInfo, TokenStats
from chimera.train.device import DevicePolicy
from chimera.train.plan import RunPlan

NUM_CLASSES = len(AG_NEWS_LABELS)  # the benchmarks' synthetic batches; a run takes its classes from its data
EVAL_BATCH_SIZE = 256  # evaluation has no gradients, so larger batches are cheaper per row


@dataclass(frozen=True)
class RunInputs:
    subsets: Subsets
    tokenizer: TokenizerBundle
    train_loader: Callable[[int], DataLoader]  # epoch -> loader (order and augmentation fixed by seed, epoch)
    eval_loaders: dict[str, DataLoader]  # val, clean_train, test
    batches_per_epoch: int  # optimiser steps per epoch in each process (the global batch is batch_size x world)
    data_info: DataInfo


def prepare_inputs(plan: RunPlan, *, data_dir: Path | None, cache_dir: Path | None,
                   accelerator: Accelerator) -> RunInputs:
    """Load the dataset, cut the seeded subsets, train (or reuse) the tokenizer and build the loaders."""
    config, dc = plan.config, plan.config.data
    with accelerator.main_process_first():  # one process trains the tokenizer, the others hit the cache
        data = load_data(dc, data_dir)
        subsets = make_subsets(data.splits, dc, config.seed)
        bundle = build_tokenizer(subsets.train.texts, vocab_size=dc.vocab_size, lowercase=dc.lowercase,
                                 cache_dir=cache_dir)
    augmenter = Augmenter(config.augment) if config.augment.enabled else None
    pin = plan.policy.pin_memory
    static = plan.policy.step_mode != "eager"  # compiled steps: one batch shape in training and in evaluation
    world = accelerator.num_processes
    # accelerate deals whole batches round-robin to the processes and drops an incomplete last round
    batches_per_epoch = len(subsets.train) // config.train.batch_size // world
    if batches_per_epoch < 1:
        raise ChimeraError(f"data.train_samples ({len(subsets.train)}) is smaller than train.batch_size "
                           f"({config.train.batch_size}) x {world} process(es)")

    def make_train_loader(epoch: int) -> DataLoader:
        loader = train_loader(subsets.train, bundle, augmenter=augmenter, seed=config.seed, epoch=epoch,
                              batch_size=config.train.batch_size, max_length=dc.max_length, pin_memory=pin,
                              num_workers=plan.policy.num_workers, fixed_width=static)
        return _own_generator(loader, config.seed * EPOCH_STRIDE + epoch)

    evals = {name: _own_generator(eval_loader(getattr(subsets, name), bundle, batch_size=EVAL_BATCH_SIZE,
                                              max_length=dc.max_length, pin_memory=pin, fixed_shape=static), 0)
             for name in ("val", "clean_train", "test")}
    data_info = DataInfo(
        source=data.source,
        label_names=list(data.label_names),
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


def build_model(config: RunConfig, *, vocab_size: int, pad_id: int,
                num_classes: int) -> nn.Module:
    """The cell's classifier: the transformer encoder (static shapes where the step compiles), or the
    linear bag-of-n-grams reference."""
    if config.model.arch == "bag_of_ngrams":
        from chimera.model.bow import BagOfNgramsClassifier  # the reference cell's alone

        return BagOfNgramsClassifier(config.model, vocab_size=vocab_size, max_length=config.data.max_length,
                                     num_classes=num_classes, pad_id=pad_id)
    return EncoderClassifier(config.model, vocab_size=vocab_size, max_length=config.data.max_length,
                             num_classes=num_classes, pad_id=pad_id,
                             static_shapes=config.train.step_mode in ("compile", "graph"))


def build_optimizer(model: nn.Module, train: TrainConfig, policy: DevicePolicy) -> torch.optim.AdamW:
    """AdamW on `weight_decay_groups`; the single-kernel variant where the device policy says so
    (same update rule, to rounding; `DevicePolicy.fused_adamw`). Compiled steps update through torch's
    functional AdamW with device-side step counts (chimera.train.whole_step), so their optimiser is the
    capturable foreach one, whose state is laid out the same way."""
    groups = weight_decay_groups(model, train.weight_decay)
    if policy.step_mode != "eager":
        return torch.optim.AdamW(groups, lr=train.lr, betas=train.betas, foreach=True, capturable=True)
    return torch.optim.AdamW(groups, lr=train.lr, betas=train.betas, fused=policy.fused_adamw)


def build_schedule(optimizer: torch.optim.Optimizer, train: TrainConfig) -> torch.optim.lr_scheduler.LambdaLR:
    """Warmup then `train.schedule` decay, stepped once per optimiser step (`lr_multiplier`)."""
    return torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: lr_multiplier(
        step, schedule=train.schedule, warmup_steps=train.warmup_steps, max_steps=train.max_steps))


def lr_multiplier(step: int, *, schedule: str, warmup_steps: int, max_steps: int) -> float:
    """Factor applied to the peak lr before optimiser step `step` (0-based).

    Warmup ramps linearly from 1/(warmup+1) to 1 so the first update is never exactly zero; decays
    reach 0 at `max_steps`.
    """
    if step < warmup_steps:
        return (step + 1) / (warmup_steps + 1)
    if schedule == "constant":
        return 1.0
    progress = min(1.0, (step - warmup_steps) / max(1, max_steps - warmup_steps))
    if schedule == "linear":
        return 1.0 - progress
    if schedule == "cosine":
        return 0.5 * (1.0 + math.cos(math.pi * progress))
    raise ValueError(f"unknown schedule {schedule!r}")
