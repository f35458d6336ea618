"""Synthetic run records for doctor and report tests, built through the record's classes (so they are
schema-valid by construction, as the trainer's are), with curves shaped on purpose."""

from __future__ import annotations

from dataclasses import replace
from typing import Any, TypeVar

import numpy as np

from chimera.config import (
    AG_NEWS_LABELS,
    AugmentConfig,
    DataConfig,
    EvaluationConfig,
    ModelConfig,
    RunConfig,
    TrainConfig,
)
from chimera.records.env import RunEnv
from chimera.records.record import (
    SPLITS,
    CurvePoint,
    DataInfo,
    FinalMetrics,
    MoeLayerStats,
    ParamCounts,
    Precision,
    RunRecord,
    SplitScore,
    TimingPoint,
    TokenStats,
)
from chimera.records.time_to_target import time_to_target

FINGERPRINT = "0" * 64
ENV = RunEnv(python="3.11", torch="2.13.0", accelerate="1.15.0", datasets="5", tokenizers="0.23", nltk="3.10",
             platform="Linux-6.8-x86_64", device_type="cpu", device_name="cpu", cuda_bf16_supported=False,
             cpu_bf16_supported=False, cpu_count=2, torch_num_threads=2, mixed_precision="no", precision="fp32",
             deterministic_algorithms=True, float32_matmul_precision="highest", fused_adamw=False,
             cpu_name="AMD EPYC", cpu_flags=("avx2", "fma"), ram_gib=16.0, gpu_count=0, gpu_names=(),
             gpu_capabilities=(), gpu_memory_gib=(), torch_cuda=None, cudnn_version=None, cuda_driver=None,
             git_commit="0" * 40, git_dirty=False)
T = TypeVar("T")
CONFIG = RunConfig(cell="fixed/dense", profile="ci", seed=0, device="cpu", train=TrainConfig(precision="fp32"))


def minimal_record() -> RunRecord:
    """The smallest schema-valid record (one evaluation)."""
    return RunRecord(
        run_id="fixed-dense-ci-s0", cell="fixed/dense", profile="ci", seed=0, status="completed", world_size=1,
        config=CONFIG,
        env=ENV,
        precision=Precision(value="fp32", source="auto", requested="auto", accelerate_launch=None),
        data=DataInfo(source="x", label_names=list(AG_NEWS_LABELS), sizes={k: 8 for k in SPLITS}, label_counts={},
                      leakage={}, fingerprints={k: FINGERPRINT for k in SPLITS}, tokenizer_sha256=FINGERPRINT,
                      token_stats={}),
        params=ParamCounts(total=10, embedding=4, non_embedding=6, active=10),
        curves=[CurvePoint(step=10, train_loss=1.0, val_loss=1.1, val_acc=0.4, lr=1e-4, grad_norm=0.5,
                           clean_train=SplitScore(loss=0.9, acc=0.5))],
        timing=[TimingPoint(step=10, step_time_s=0.1, samples_per_s=320.0)],
        final_metrics=FinalMetrics(clean_train_loss=0.9, val_loss=1.1, val_acc=0.4, test_loss=1.2, test_acc=0.4,
                                   best_step=10, steps=10, wall_s=1.0, train_samples_per_s=320.0),
    )


TARGETS = (0.75, 0.8, 0.85)  # val acc: the factory's healthy curves reach 0.75 and 0.8, memorising ones 0.8 at most
CELL_SHAPES = {  # (memorises, moe): the 2x2 matrix of the suite
    "baseline/dense": (True, False), "baseline/moe": (True, True),
    "fixed/dense": (False, False), "fixed/moe": (False, True),
}


def run_record(cell: str = "fixed/dense", seed: int = 0, *, memorises: bool | None = None,
               moe: bool | None = None, evaluations: int = 16, eval_every: int = 25) -> RunRecord:
    """A realistic record of one cell: a memorising curve (clean train -> ~0.003, val rising from its
    minimum) or a healthy one (train ~0.5, val flattening near 0.9); MoE stats for MoE cells."""
    default_mem, default_moe = CELL_SHAPES.get(cell, (False, False))
    memorises = default_mem if memorises is None else memorises
    moe = default_moe if moe is None else moe
    rng = np.random.default_rng(seed + 17 * len(cell))
    steps = [eval_every * (i + 1) for i in range(evaluations)]
    x = np.linspace(0, 1, evaluations)
    if memorises:
        train = 1.2 * np.exp(-8 * x) + 0.003
        val = 1.45 - 0.5 * np.sin(np.pi * np.minimum(x, 0.3) / 0.6) + 2.5 * np.maximum(x - 0.2, 0) ** 1.2
    else:
        train = 0.5 + 0.9 * np.exp(-4 * x)
        val = 0.9 + 0.6 * np.exp(-4 * x)
    train = train * (1 + 0.02 * rng.standard_normal(evaluations))
    val = val * (1 + 0.01 * rng.standard_normal(evaluations))
    top_k, experts, layers = 2, 4, 2
    base = minimal_record()
    config = replace(
        base.config, cell=cell, seed=seed,
        data=DataConfig(train_samples=512, val_samples=512, test_samples=1024, max_length=32, vocab_size=4096),
        augment=AugmentConfig(enabled=not memorises),
        model=ModelConfig(d_model=128, n_layers=layers, dropout=0.1 if memorises else 0.4,
                          ffn="moe" if moe else "dense", num_experts=experts, top_k=top_k),
        train=TrainConfig(lr=3e-4, weight_decay=0.01 if memorises else 0.1,
                          label_smoothing=0.0 if memorises else 0.1, schedule="constant", warmup_steps=0,
                          max_steps=steps[-1], eval_every=eval_every, early_stopping=not memorises,
                          batch_size=32, precision="fp32"),
        evaluation=EvaluationConfig(target_val_acc=TARGETS, target_val_loss=(), clean_train_every=1))
    data = replace(base.data, sizes={**base.data.sizes, "train": 512, "val": 512, "clean_train": 512, "test": 1024},
                   token_stats={split: TokenStats(unk_rate=0.01, truncation_rate=0.2, mean_tokens=24.0)
                                for split in ("train", "val", "test")})
    total = 200_000 + (300_000 if moe else 0)
    params = ParamCounts(total=total, embedding=100_000, non_embedding=total - 100_000,
                         active=total - (150_000 if moe else 0))
    curves = [
        CurvePoint(step=step, train_loss=float(train[i]) * 1.1, val_loss=float(val[i]),
                   val_acc=float(0.95 - 0.12 * val[i]), lr=3e-4, grad_norm=float(0.5 + 0.1 * rng.random()),
                   clean_train=SplitScore(loss=float(train[i]), acc=float(min(1.0, 1.0 - 0.4 * train[i]))),
                   moe=[moe_layer(layer, [0.3, 0.3, 0.2, 0.2]) for layer in range(layers)] if moe else None)
        for i, step in enumerate(steps)]
    best = int(np.argmin(val))
    seconds_per_step = 0.1 + 0.01 * seed
    timing = [TimingPoint(step=s, step_time_s=seconds_per_step, samples_per_s=300.0 + 10 * seed,
                          train_s=s * seconds_per_step, wall_s=s * seconds_per_step * 1.5) for s in steps]
    final_metrics = FinalMetrics(
        clean_train_loss=float(train[-1]), val_loss=float(val[-1]), val_acc=float(0.95 - 0.12 * val[-1]),
        test_loss=float(val[-1] + 0.05), test_acc=float(0.94 - 0.12 * val[-1]), best_step=steps[best],
        steps=steps[-1], stopped_early=not memorises and seed % 2 == 1, wall_s=10.0,
        train_samples_per_s=320.0 + 5 * seed + (0 if moe else 100))
    return replace(
        base, run_id=f"{cell.replace('/', '-')}-ci-s{seed}", cell=cell, seed=seed, config=config, data=data,
        params=params, curves=curves, timing=timing, final_metrics=final_metrics,
        time_to_target=time_to_target(curves, timing, [("val_acc", t) for t in TARGETS], samples_per_step=32))


def moe_layer(layer: int, shares: list[float], dropped: float = 0.0) -> MoeLayerStats:
    return MoeLayerStats(layer=layer, tokens_per_expert=shares, router_entropy=1.2, dropped_fraction=dropped,
                         balance_loss=1.0, z_loss=0.5)


def change_config(record: RunRecord, **changes: Any) -> RunRecord:
    """A copy of `record` with its config changed as a test needs: a section's fields as a dict
    (`train={"lr": 1.0}`), a top-level field as its value; each change is validated as the config's own."""
    updates = {key: replace(getattr(record.config, key), **value) if isinstance(value, dict) else value
               for key, value in changes.items()}
    return replace(record, config=replace(record.config, **updates))


def replaced_at(items: list[T], index: int, **changes: Any) -> list[T]:
    """A copy of a record's list (curves, timing, ...) with the entry at `index` changed by `dataclasses.replace`."""
    copy = list(items)
    copy[index] = replace(copy[index], **changes)
    return copy
