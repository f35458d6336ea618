"""An evaluation pass measures clean loss and accuracy over every row once and, for MoE models, returns the
routing statistics as the record's own `MoeLayerStats`, averaged over batches, ready to store in a curve point."""

from __future__ import annotations

import math
from dataclasses import replace

import pytest
import torch
import torch.nn.functional as F
from accelerate import Accelerator

from chimera.config import ModelConfig
from chimera.model.encoder import EncoderClassifier
from chimera.records.record import CurvePoint, MoeLayerStats
from chimera.train.evaluate import evaluate

TINY = ModelConfig(d_model=8, n_layers=2, n_heads=2, d_ff=16, dropout=0.1)
TINY_MOE = replace(TINY, ffn="moe", num_experts=4, top_k=2)


def _batches(n: int = 3, rows: int = 5, width: int = 6) -> list[dict[str, torch.Tensor]]:
    g = torch.Generator().manual_seed(0)
    return [{"input_ids": torch.randint(1, 50, (rows, width), generator=g),
             "attention_mask": torch.ones(rows, width, dtype=torch.bool),
             "labels": torch.randint(0, 4, (rows,), generator=g)} for _ in range(n)]


def _model(cfg: ModelConfig) -> EncoderClassifier:
    torch.manual_seed(0)
    return EncoderClassifier(cfg, vocab_size=50, max_length=6, num_classes=4, pad_id=0)


def test_moe_statistics_are_typed_per_layer_and_averaged_over_batches():
    model, batches = _model(TINY_MOE), _batches()
    result = evaluate(model, batches, Accelerator(cpu=True), with_moe=True)
    assert [type(layer) for layer in result.moe] == [MoeLayerStats] * TINY_MOE.n_layers
    assert [layer.layer for layer in result.moe] == [0, 1]
    with torch.no_grad():
        per_batch = [model.eval()(b["input_ids"], b["attention_mask"]).moe for b in batches]
    for i, layer in enumerate(result.moe):
        assert layer.tokens_per_expert == pytest.approx(
            torch.stack([stats[i].tokens_per_expert for stats in per_batch]).mean(0).tolist())
        assert layer.router_entropy == pytest.approx(
            sum(float(stats[i].router_entropy) for stats in per_batch) / len(batches))
        assert all(isinstance(getattr(layer, key), float)
                   for key in ("router_entropy", "dropped_fraction", "balance_loss", "z_loss"))
    point = CurvePoint(step=1, train_loss=1.0, val_loss=result.loss, val_acc=result.acc, lr=1e-3, grad_norm=None,
                       moe=result.moe)
    assert CurvePoint.from_json(point.to_json()) == point  # stored as it is, and round-trips


def test_loss_and_accuracy_are_over_every_row_and_a_dense_model_has_no_moe_statistics():
    model, batches = _model(TINY), _batches()
    result = evaluate(model, batches, Accelerator(cpu=True), with_moe=True)
    assert model.training  # left in the mode it was in
    with torch.no_grad():
        logits = torch.cat([model.eval()(b["input_ids"], b["attention_mask"]).logits for b in batches])
    labels = torch.cat([b["labels"] for b in batches])
    assert math.isclose(result.loss, float(F.cross_entropy(logits, labels)), rel_tol=1e-5)
    assert result.acc == int((logits.argmax(-1) == labels).sum()) / len(labels)
    assert result.moe == []
