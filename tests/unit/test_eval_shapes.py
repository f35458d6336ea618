"""Evaluation under compiled steps: every eval batch has one shape (rows x max_length), the short last batch
filled with rows that count nowhere, and the metrics (loss, accuracy, MoE routing statistics) equal the ragged
loader's on the same static-shape model."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from accelerate import Accelerator

from chimera.config import ModelConfig
from chimera.data.subsets import TextSplit
from chimera.data.tokenizer import IGNORED_LABEL, TokenizerBundle, build_tokenizer, eval_loader
from chimera.model.encoder import EncoderClassifier
from chimera.train.evaluate import evaluate

WORDS = ["council", "striker", "shares", "software", "minister", "league", "profit", "satellite", "treaty"]
SPLIT = TextSplit(tuple(" ".join(WORDS[(i * 7 + k) % 9] for k in range(1 + i % 11)) for i in range(45)),
                  tuple(i % 4 for i in range(45)))
MAX_LENGTH, BATCH = 14, 16  # 45 rows: two full batches and one of 13


@pytest.fixture(scope="module")
def bundle(tmp_path_factory: pytest.TempPathFactory) -> TokenizerBundle:
    cache: Path = tmp_path_factory.mktemp("cache")
    return build_tokenizer(SPLIT.texts, vocab_size=200, lowercase=True, cache_dir=cache)


def test_fixed_shape_batches_are_one_shape_and_their_filler_rows_are_empty_and_ignored(bundle):
    ragged = list(eval_loader(SPLIT, bundle, batch_size=BATCH, max_length=MAX_LENGTH))
    fixed = list(eval_loader(SPLIT, bundle, batch_size=BATCH, max_length=MAX_LENGTH, fixed_shape=True))
    assert {tuple(b["input_ids"].shape) for b in fixed} == {(BATCH, MAX_LENGTH)}
    assert len({tuple(b["input_ids"].shape) for b in ragged}) > 1  # the ragged loader really differs
    for r, f in zip(ragged, fixed, strict=True):
        n, width = r["input_ids"].shape
        assert torch.equal(f["input_ids"][:n, :width], r["input_ids"])  # the real rows, unchanged
        assert torch.equal(f["attention_mask"][:n, :width], r["attention_mask"])
        assert not f["attention_mask"][:n, width:].any() and not f["attention_mask"][n:].any()
        assert torch.equal(f["labels"][:n], r["labels"])
        assert (f["labels"][n:] == IGNORED_LABEL).all()
    assert (fixed[-1]["labels"] == IGNORED_LABEL).sum() == BATCH * 3 - len(SPLIT)


@pytest.mark.parametrize("ffn", ["dense", "moe"])
def test_metrics_over_fixed_shape_batches_equal_the_ragged_ones(bundle, ffn):
    torch.manual_seed(0)
    cfg = ModelConfig(d_model=32, n_heads=2, d_ff=64, n_layers=2, dropout=0.0, ffn=ffn)
    model = EncoderClassifier(cfg, vocab_size=bundle.vocab_size, max_length=MAX_LENGTH, num_classes=4,
                              pad_id=bundle.pad_id, static_shapes=True)
    accelerator = Accelerator(cpu=True)
    ragged = evaluate(model, eval_loader(SPLIT, bundle, batch_size=BATCH, max_length=MAX_LENGTH), accelerator,
                      with_moe=ffn == "moe")
    fixed = evaluate(model, eval_loader(SPLIT, bundle, batch_size=BATCH, max_length=MAX_LENGTH, fixed_shape=True),
                     accelerator, with_moe=ffn == "moe")
    last = list(eval_loader(SPLIT, bundle, batch_size=BATCH, max_length=MAX_LENGTH, fixed_shape=True))[-1]
    model.eval()
    with torch.no_grad():  # filler rows have no key to attend to: SDPA gives them zeros, never NaN
        assert torch.isfinite(model(last["input_ids"], last["attention_mask"]).logits).all()
    assert fixed.loss == pytest.approx(ragged.loss, rel=1e-5) and fixed.acc == ragged.acc
    assert len(fixed.moe) == len(ragged.moe) == (cfg.n_layers if ffn == "moe" else 0)
    for a, b in zip(fixed.moe, ragged.moe, strict=True):
        assert a.tokens_per_expert == pytest.approx(b.tokens_per_expert, rel=1e-5)
        assert a.dropped_fraction == pytest.approx(b.dropped_fraction, abs=1e-7)
        assert a.router_entropy == pytest.approx(b.router_entropy, rel=1e-5)
