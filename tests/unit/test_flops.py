"""The FLOP formula, checked on a tiny case worked out by hand."""

from __future__ import annotations

import dataclasses

from chimera.config import ModelConfig
from chimera.flops import forward_flops, matmul_flops, model_train_step_flops, train_step_flops


def test_matmul_flops_is_two_per_multiply_accumulate():
    assert matmul_flops(2, 3, 4) == 48


def test_train_step_flops_tiny_case_by_hand():
    # d=2, ff=4, T=3, 1 layer, batch 1, 2 classes. Per token: projections 2*4*d^2 = 32,
    # FFN 2*2*d*ff = 32, attention scores 2*2*T*d = 24 -> 88; 3 tokens -> 264; head 2*d*C = 8.
    kw = dict(d_model=2, n_layers=1, d_ff=4, batch=1, seq_len=3, num_classes=2)
    assert forward_flops(**kw) == 272
    assert train_step_flops(n_heads=1, **kw) == 3 * 272 == 816


def test_train_step_flops_scales_ffn_term_for_moe_and_swiglu():
    kw = dict(d_model=2, n_layers=1, d_ff=4, n_heads=2, batch=1, seq_len=3, num_classes=2)
    ffn_term = 3 * 3 * (2 * 2 * 2 * 4)  # train multiplier * tokens * one GELU FFN per token = 288
    base = train_step_flops(**kw)
    assert train_step_flops(active_ffn_multiplier=2.0, **kw) - base == ffn_term
    assert train_step_flops(swiglu=True, **kw) - base == ffn_term // 2
    assert train_step_flops(**{**kw, "n_heads": 1}) == base  # heads split d, they add no work


def test_model_train_step_flops_from_config_fields():
    dense = ModelConfig(d_model=8, n_layers=4, n_heads=2, d_ff=16)
    fields = dataclasses.asdict(dense)
    expected = train_step_flops(d_model=8, n_layers=4, d_ff=16, n_heads=2, batch=2, seq_len=5)
    assert model_train_step_flops(batch=2, seq_len=5, **fields) == expected
    moe = dataclasses.replace(dense, ffn="moe", top_k=2, moe_every=2)  # blocks 1 and 3 are MoE
    multiplier = (2 * 2 + 2 * 1) / 4
    assert model_train_step_flops(batch=2, seq_len=5, **dataclasses.asdict(moe)) == train_step_flops(
        d_model=8, n_layers=4, d_ff=16, n_heads=2, batch=2, seq_len=5, active_ffn_multiplier=multiplier)
    swiglu = dataclasses.replace(moe, moe_every=1, expert_kind="swiglu")
    assert model_train_step_flops(batch=2, seq_len=5, **dataclasses.asdict(swiglu)) == train_step_flops(
        d_model=8, n_layers=4, d_ff=16, n_heads=2, batch=2, seq_len=5, active_ffn_multiplier=3.0)
