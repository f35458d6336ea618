"""The CPU dropout: a Bernoulli keep mask at p rounded to 1/32768, expectation kept, gradients masked."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from chimera.model.encoder import attention_with_dropout
from chimera.model.layers import MASK_LEVELS, Dropout, dropout, keep_mask

N = 1 << 20  # a million elements: the keep rate's standard error is ~0.0005


@pytest.mark.parametrize("p", [0.1, 0.4, 0.9])
def test_keep_rate_and_scale_match_p_rounded_to_the_mask_resolution(p):
    torch.manual_seed(0)
    mask, scale = keep_mask(torch.Size([N]), p, torch.device("cpu"))
    p_rounded = round(p * MASK_LEVELS) / MASK_LEVELS
    assert abs(p_rounded - p) <= 0.5 / MASK_LEVELS
    assert scale == pytest.approx(1 / (1 - p_rounded))
    assert mask.float().mean().item() == pytest.approx(1 - p, abs=0.003)


def test_mask_lanes_are_independent_of_each_other():
    """Four mask elements come from one 64-bit draw: neighbours must not be correlated."""
    torch.manual_seed(1)
    mask, _ = keep_mask(torch.Size([N]), 0.5, torch.device("cpu"))
    lanes = mask.view(-1, 4).float()
    for a in range(4):
        assert lanes[:, a].mean().item() == pytest.approx(0.5, abs=0.005)
        for b in range(a + 1, 4):
            both = (lanes[:, a] * lanes[:, b]).mean().item()
            assert both == pytest.approx(0.25, abs=0.005)


def test_expectation_is_kept_and_gradient_is_the_scaled_mask():
    torch.manual_seed(2)
    x = torch.ones(N, requires_grad=True)
    y = dropout(x, 0.4, training=True)
    assert y.mean().item() == pytest.approx(1.0, abs=0.005)
    values = torch.unique(y).tolist()
    assert values == pytest.approx([0.0, MASK_LEVELS / (MASK_LEVELS - 13107)])  # round(0.4 * 2^15) = 13107
    y.sum().backward()
    torch.testing.assert_close(x.grad, y.detach())  # d y_i / d x_i = mask_i * scale = y_i for x = 1


def test_same_seed_same_mask_and_eval_or_zero_p_is_identity():
    x = torch.randn(3, 50)
    torch.manual_seed(3)
    first = dropout(x, 0.3, training=True)
    torch.manual_seed(3)
    assert torch.equal(first, dropout(x, 0.3, training=True))
    assert dropout(x, 0.3, training=False) is x
    assert dropout(x, 0.0, training=True) is x
    assert torch.equal(dropout(x, 1.0, training=True), torch.zeros_like(x))
    module = Dropout(0.3).eval()
    assert module(x) is x
    with pytest.raises(ValueError, match="dropout probability"):
        Dropout(1.5)


def test_attention_with_dropout_at_p_zero_equals_sdpa_with_the_same_mask():
    g = torch.Generator().manual_seed(4)
    q, k, v = (torch.randn(2, 3, 5, 4, generator=g) for _ in range(3))
    key_mask = torch.tensor([[1, 1, 1, 0, 0], [1, 1, 1, 1, 1]], dtype=torch.bool)[:, None, None, :]
    expected = F.scaled_dot_product_attention(q, k, v, attn_mask=key_mask)
    torch.testing.assert_close(attention_with_dropout(q, k, v, key_mask, 0.0), expected)
    torch.testing.assert_close(attention_with_dropout(q, k, v, None, 0.0), F.scaled_dot_product_attention(q, k, v))
