"""The encoder classifier: shapes, padding invariance, parameter counts, weight-decay groups."""

from __future__ import annotations

from dataclasses import replace

import pytest
import torch
from torch import nn

from chimera.config import ModelConfig
from chimera.model.encoder import EncoderClassifier, is_moe_block, parameter_counts, weight_decay_groups
from chimera.model.layers import DenseFFN
from chimera.model.moe import MoEFFN

VOCAB, MAX_LEN = 50, 10
TINY = ModelConfig(d_model=8, n_layers=2, n_heads=2, d_ff=16, dropout=0.1)
TINY_MOE = replace(TINY, ffn="moe", num_experts=4, top_k=2)


def build(cfg: ModelConfig = TINY, seed: int = 0) -> EncoderClassifier:
    torch.manual_seed(seed)
    return EncoderClassifier(cfg, vocab_size=VOCAB, max_length=MAX_LEN, num_classes=4, pad_id=0)


def batch(lengths: list[int], width: int, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    ids = torch.randint(1, VOCAB, (len(lengths), width), generator=torch.Generator().manual_seed(seed))
    mask = torch.arange(width)[None, :] < torch.tensor(lengths)[:, None]
    return ids.masked_fill(~mask, 0), mask


@pytest.mark.parametrize("cfg", [TINY, TINY_MOE], ids=["dense", "moe"])
def test_output_shapes(cfg):
    ids, mask = batch([5, 3, 7], width=7)
    out = build(cfg)(ids, mask)
    assert out.logits.shape == (3, 4)
    assert out.aux_loss.shape == ()
    assert len(out.moe) == (cfg.n_layers if cfg.ffn == "moe" else 0)


@pytest.mark.parametrize("cfg", [TINY, TINY_MOE, replace(TINY_MOE, capacity_factor_eval=1.0)],
                         ids=["dense", "moe", "moe-capacity"])
def test_extra_padding_does_not_change_logits_in_eval(cfg):
    model = build(cfg).eval()
    ids, mask = batch([6, 2, 4], width=6)
    padded_ids = torch.cat([ids, torch.zeros(3, 4, dtype=ids.dtype)], dim=1)
    padded_mask = torch.cat([mask, torch.zeros(3, 4, dtype=torch.bool)], dim=1)
    with torch.no_grad():
        torch.testing.assert_close(model(padded_ids, padded_mask).logits, model(ids, mask).logits)


@pytest.mark.parametrize("cfg", [TINY, TINY_MOE], ids=["dense", "moe"])
def test_unpadded_fast_path_equals_the_packed_path(cfg):
    """A batch without padding skips masking and packing; one padding column more takes the packed path."""
    model = build(cfg).eval()
    ids, mask = batch([5, 5, 5], width=5)
    assert mask.all()
    padded_ids = torch.cat([ids, torch.zeros(3, 1, dtype=ids.dtype)], dim=1)
    padded_mask = torch.cat([mask, torch.zeros(3, 1, dtype=torch.bool)], dim=1)
    with torch.no_grad():
        torch.testing.assert_close(model(ids, mask).logits, model(padded_ids, padded_mask).logits)


def test_pad_token_ids_are_ignored():
    model = build(TINY_MOE).eval()
    ids, mask = batch([6, 2], width=6)
    with torch.no_grad():
        other = model(ids.masked_fill(~mask, 7), mask).logits
        torch.testing.assert_close(other, model(ids, mask).logits)


def test_dense_model_has_zero_aux_loss_and_moe_model_positive():
    ids, mask = batch([4, 4], width=4)
    assert build(TINY)(ids, mask).aux_loss.item() == 0.0
    out = build(TINY_MOE)(ids, mask)
    assert out.aux_loss.item() > 0.0 and out.aux_loss.requires_grad
    assert all(not s.aux_loss.requires_grad for s in out.moe)


def test_parameter_counts_match_hand_computation():
    d, ff, v, t, c = 8, 16, VOCAB, MAX_LEN, 4
    embedding = v * d + t * d  # 480
    attention = 2 * d + (d * 3 * d + 3 * d) + (d * d + d)  # ln_1 + qkv + proj = 304
    expert = d * ff + ff + ff * d + d  # one GELU FFN = 280
    tail = 2 * d + d * c + c  # ln_f + head = 52
    dense_total = embedding + 2 * (attention + 2 * d + expert) + tail
    counts = parameter_counts(build(TINY))
    assert counts == {"total": dense_total, "embedding": embedding,
                      "non_embedding": dense_total - embedding, "active": dense_total}
    assert dense_total == 1732
    moe_total = embedding + 2 * (attention + 2 * d + d * 4 + 4 * expert) + tail  # router d*E, 4 experts
    counts = parameter_counts(build(TINY_MOE))
    assert counts["total"] == moe_total == 3476
    assert counts["active"] == moe_total - 2 * (4 - 2) * expert == 2356  # top-2 of 4 experts per layer
    assert counts["active"] < counts["total"]


def test_weight_decay_groups_cover_every_parameter_once_and_skip_biases_norms_embeddings():
    model = build(replace(TINY_MOE, moe_every=2))
    decay, no_decay = weight_decay_groups(model, 0.1)
    assert decay["weight_decay"] == 0.1 and no_decay["weight_decay"] == 0.0
    ids = [id(p) for p in decay["params"] + no_decay["params"]]
    assert sorted(ids) == sorted(id(p) for p in model.parameters()) and len(set(ids)) == len(ids)
    no_decay_ids = {id(p) for p in no_decay["params"]}
    for name, param in model.named_parameters():
        is_bias = name.endswith("bias") or name.split(".")[-1].startswith("b_")
        is_norm = ".ln_" in f".{name}"
        is_embedding = name.startswith(("tok_emb", "pos_emb"))
        assert (id(param) in no_decay_ids) == (is_bias or is_norm or is_embedding), name
    moe = next(m for m in model.modules() if isinstance(m, MoEFFN))
    decay_ids = {id(p) for p in decay["params"]}
    assert {id(moe.w_in), id(moe.w_out), id(moe.router.weight)} <= decay_ids


@pytest.mark.parametrize(("n_layers", "every", "expected"), [(4, 1, [0, 1, 2, 3]), (4, 2, [1, 3]),
                                                               (3, 2, [0, 2]), (4, 3, [0, 3]), (2, 5, [1])])
def test_moe_every_selects_blocks_counting_back_from_the_last(n_layers, every, expected):
    cfg = replace(TINY_MOE, n_layers=n_layers, moe_every=every)
    assert [i for i in range(n_layers) if is_moe_block(cfg, i)] == expected
    model = build(cfg)
    assert [i for i, b in enumerate(model.blocks) if isinstance(b.ffn, MoEFFN)] == expected
    assert all(isinstance(b.ffn, DenseFFN) for i, b in enumerate(model.blocks) if i not in expected)
    ids, mask = batch([3, 5], width=5)
    assert [s.layer for s in model(ids, mask).moe] == expected


def test_init_is_normal_002_with_zero_biases_and_seeded():
    model = build(TINY)
    for module in model.modules():
        if isinstance(module, nn.Linear) and module.bias is not None:
            assert module.bias.abs().max().item() == 0.0
    assert 0.015 < model.tok_emb.weight.std().item() < 0.025
    assert all(torch.equal(a, b) for a, b in zip(build(TINY).parameters(), model.parameters(), strict=True))


def test_backward_reaches_every_parameter_of_a_dense_model():
    model = build(TINY)
    ids, mask = batch([4, 2], width=4)
    model(ids, mask).logits.sum().backward()
    missing = [n for n, p in model.named_parameters() if p.grad is None]
    assert missing == []


@pytest.mark.parametrize("cfg", [TINY, TINY_MOE], ids=["dense", "moe"])
def test_bf16_autocast_forward_and_backward_run(cfg):
    model = build(cfg)
    ids, mask = batch([5, 2], width=5)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out = model(ids, mask)
    (out.logits.float().sum() + out.aux_loss).backward()
    assert out.aux_loss.dtype == torch.float32
    assert all(p.grad is not None for p in model.tok_emb.parameters())
