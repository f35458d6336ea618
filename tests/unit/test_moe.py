"""The routed MoE FFN against references: the dense FFN, a per-token loop, and hand-computed losses."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from chimera.model import moe as moe_module
from chimera.model.ffn import DenseFFN
from chimera.model.moe import MoEFFN, expert_row_bucket, load_balancing_loss, router_z_loss

D, FF = 16, 32


def make_moe(*, num_experts=4, top_k=2, expert_kind="gelu", capacity=None, aux=0.01, z=0.001,
             seed=0) -> MoEFFN:
    torch.manual_seed(seed)
    return MoEFFN(d_model=D, d_ff=FF, num_experts=num_experts, top_k=top_k, expert_kind=expert_kind,
                  capacity_factor_train=capacity, capacity_factor_eval=capacity, aux_loss_coef=aux,
                  z_loss_coef=z, dropout=0.0)


def copy_dense_into_expert(dense: DenseFFN, moe: MoEFFN, expert: int) -> None:
    with torch.no_grad():
        if dense.kind == "gelu":
            moe.w_in[expert].copy_(dense.fc_in.weight.T)
            moe.b_in[expert].copy_(dense.fc_in.bias)
            moe.w_out[expert].copy_(dense.fc_out.weight.T)
            moe.b_out[expert].copy_(dense.fc_out.bias)
        else:
            moe.w_gate[expert].copy_(dense.w1.weight.T)
            moe.w_in[expert].copy_(dense.w3.weight.T)
            moe.w_out[expert].copy_(dense.w2.weight.T)


def force_router(moe: MoEFFN, preference: list[float]) -> None:
    """Make every token's router logits ~= `preference` (inputs carry a constant 1.0 in feature 0)."""
    with torch.no_grad():
        moe.router.weight.mul_(0.01)
        moe.router.weight[:, 0] = torch.tensor(preference)


def inputs_with_bias_feature(n: int, seed: int = 1) -> torch.Tensor:
    x = torch.randn(n, D, generator=torch.Generator().manual_seed(seed))
    x[:, 0] = 1.0
    return x


@pytest.mark.parametrize("kind", ["gelu", "swiglu"])
def test_one_expert_top1_dropless_equals_dense_ffn_outputs_and_gradients(kind):
    torch.manual_seed(0)
    dense = DenseFFN(d_model=D, d_ff=FF, dropout=0.0, kind=kind)
    moe = make_moe(num_experts=1, top_k=1, expert_kind=kind)
    copy_dense_into_expert(dense, moe, 0)
    x1 = torch.randn(24, D, requires_grad=True)
    x2 = x1.detach().clone().requires_grad_(True)
    y_dense, y_moe = dense(x1), moe(x2).output
    torch.testing.assert_close(y_moe, y_dense)
    grad = torch.randn_like(y_dense)
    y_dense.backward(grad)
    y_moe.backward(grad)
    torch.testing.assert_close(x2.grad, x1.grad)
    if kind == "gelu":
        pairs = [(moe.w_in, dense.fc_in.weight.grad.T), (moe.b_in, dense.fc_in.bias.grad),
                 (moe.w_out, dense.fc_out.weight.grad.T), (moe.b_out, dense.fc_out.bias.grad)]
    else:
        pairs = [(moe.w_gate, dense.w1.weight.grad.T), (moe.w_in, dense.w3.weight.grad.T),
                 (moe.w_out, dense.w2.weight.grad.T)]
    for stacked, expected in pairs:
        torch.testing.assert_close(stacked.grad[0], expected)


def naive_moe(moe: MoEFFN, x: torch.Tensor) -> torch.Tensor:
    """Per-token loop: y_n = sum over the k chosen experts of weight * expert(x_n)."""
    probs = F.softmax(moe.router(x).float(), dim=-1)
    out = torch.zeros_like(x)
    for n in range(x.shape[0]):
        weights, experts = probs[n].topk(moe.top_k)
        weights = weights / weights.sum()
        for w, e in zip(weights, experts.tolist(), strict=True):
            h = F.gelu(x[n] @ moe.w_in[e] + moe.b_in[e])
            out[n] += w * (h @ moe.w_out[e] + moe.b_out[e])
    return out


def test_sorted_dispatch_equals_naive_per_token_loop_top2_of_4():
    moe = make_moe(num_experts=4, top_k=2)
    x = torch.randn(40, D, generator=torch.Generator().manual_seed(3))
    result = moe(x)
    assert result.tokens_per_expert.gt(0).all(), "every expert should see tokens for the test to bite"
    torch.testing.assert_close(result.output, naive_moe(moe, x))


def test_balance_loss_is_exactly_one_for_uniform_router_probabilities():
    moe = make_moe(num_experts=4, top_k=2, aux=0.5, z=0.0)
    torch.nn.init.zeros_(moe.router.weight)  # logits 0 -> every prob 1/E, whatever the top-k ties pick
    result = moe(torch.randn(10, D))
    assert result.balance_loss.item() == 1.0
    assert result.aux_loss.item() == 0.5 * 1.0
    assert result.z_loss.item() == pytest.approx(math.log(4) ** 2)  # logsumexp of E zeros = log E
    assert result.router_entropy.item() == pytest.approx(math.log(4))


def test_balance_loss_hand_values_uniform_and_collapsed():
    e = 4
    uniform = torch.full((8, e), 1 / e)
    round_robin = torch.arange(8).remainder(e).unsqueeze(1)  # (N, 1): f_i = 1/4 each
    assert load_balancing_loss(uniform, round_robin, e).item() == 1.0
    collapsed = F.one_hot(torch.zeros(8, dtype=torch.long), e).float()  # all probability on expert 0
    assert load_balancing_loss(collapsed, torch.zeros(8, 1, dtype=torch.long), e).item() == e  # 4*(1*1)
    # top-2 with all probability on expert 0: f = (1/2, 1/2, 0, 0), P = (1, 0, 0, 0) -> 4 * 1/2 = 2
    top2 = torch.tensor([[0, 1]] * 8)
    assert load_balancing_loss(collapsed, top2, e).item() == 2.0
    # a half-collapsed router: P = (5/8, 1/8, 1/8, 1/8), f = (1/2, 1/2, 0, 0) -> 4 * (5/16 + 1/16) = 1.5
    mixed = torch.tensor([[0.625, 0.125, 0.125, 0.125]] * 8)
    assert load_balancing_loss(mixed, top2, e).item() == 1.5


def test_router_z_loss_is_mean_squared_logsumexp():
    logits = torch.tensor([[0.0, 0.0], [math.log(3.0), 0.0]])  # logsumexp: log 2, log 4
    expected = (math.log(2) ** 2 + math.log(4) ** 2) / 2
    assert router_z_loss(logits).item() == pytest.approx(expected)


def test_capacity_drops_hand_computed_slots_top1():
    moe = make_moe(num_experts=4, top_k=1, capacity=1.0)  # capacity = ceil(1.0 * 10 * 1 / 4) = 3
    force_router(moe, [10.0, 0.0, 0.0, 0.0])
    x = inputs_with_bias_feature(10)
    result = moe(x)
    assert moe.capacity(10) == 3
    assert result.dropped_fraction.item() == pytest.approx(7 / 10)
    assert result.tokens_per_expert.tolist() == [1.0, 0.0, 0.0, 0.0]
    assert result.output[3:].abs().max().item() == 0.0  # tokens 3..9 dropped: no FFN contribution
    expected = torch.addmm(moe.b_out[0], F.gelu(torch.addmm(moe.b_in[0], x[:3], moe.w_in[0])), moe.w_out[0])
    torch.testing.assert_close(result.output[:3], expected)


def test_capacity_drops_hand_computed_slots_top2():
    moe = make_moe(num_experts=4, top_k=2, capacity=1.0)  # capacity = ceil(1.0 * 8 * 2 / 4) = 4
    force_router(moe, [10.0, 5.0, 0.0, 0.0])  # every token picks experts 0 and 1
    result = moe(inputs_with_bias_feature(8))
    assert result.dropped_fraction.item() == pytest.approx(8 / 16)  # 8 slots over, 4 per busy expert
    assert result.tokens_per_expert.tolist() == [0.5, 0.5, 0.0, 0.0]
    assert result.output[4:].abs().max().item() == 0.0
    assert result.output[:4].abs().min().item() > 0.0


def test_eval_capacity_factor_applies_in_eval_mode_only():
    moe = MoEFFN(d_model=D, d_ff=FF, num_experts=4, top_k=1, expert_kind="gelu", capacity_factor_train=None,
                 capacity_factor_eval=0.5, aux_loss_coef=0.0, z_loss_coef=0.0, dropout=0.0)
    assert moe.capacity(16) is None
    moe.eval()
    assert moe.capacity(16) == 2  # ceil(0.5 * 16 / 4)


def test_gradients_reach_router_and_selected_experts_only():
    moe = make_moe(num_experts=4, top_k=2, expert_kind="gelu")
    force_router(moe, [1.0, 0.8, -10.0, -10.0])  # experts 2 and 3 are never chosen
    result = moe(inputs_with_bias_feature(12))
    result.output.sum().backward()
    assert result.tokens_per_expert[2:].sum().item() == 0.0
    assert moe.router.weight.grad.abs().sum() > 0  # through the renormalised top-2 weights
    for param in (moe.w_in, moe.b_in, moe.w_out, moe.b_out):
        assert (param.grad[:2].abs().sum(dim=tuple(range(1, param.dim()))) > 0).all()
        assert param.grad[2:].abs().max().item() == 0.0


def test_unselected_expert_gets_no_gradient_for_swiglu_either():
    moe = make_moe(num_experts=3, top_k=1, expert_kind="swiglu")
    force_router(moe, [5.0, -5.0, -5.0])
    result = moe(inputs_with_bias_feature(6))
    (result.output.sum() + result.aux_loss).backward()
    assert moe.router.weight.grad.abs().sum() > 0  # top-1 weight is 1: gradient from the aux loss
    for param in (moe.w_gate, moe.w_in, moe.w_out):
        assert param.grad[0].abs().sum() > 0
        assert param.grad[1:].abs().max().item() == 0.0


def test_same_seed_gives_identical_outputs():
    x = torch.randn(32, D, generator=torch.Generator().manual_seed(5))
    a, b = make_moe(seed=7)(x), make_moe(seed=7)(x)
    assert torch.equal(a.output, b.output)
    assert torch.equal(a.aux_loss, b.aux_loss)
    assert not torch.equal(make_moe(seed=8)(x).output, a.output)


def test_stats_are_detached_and_shaped():
    moe = make_moe(num_experts=4, top_k=2)
    result = moe(torch.randn(9, D))
    stats = result.stats(layer=3)
    assert stats.layer == 3
    assert stats.tokens_per_expert.shape == (4,)
    assert stats.tokens_per_expert.sum().item() == pytest.approx(1.0)
    assert all(not t.requires_grad for t in stats[1:])
    assert result.aux_loss.requires_grad


MOE_KWARGS = dict(d_model=D, d_ff=FF, num_experts=4, top_k=2, capacity_factor_train=None, capacity_factor_eval=None,
                  aux_loss_coef=0.01, z_loss_coef=0.001, dropout=0.0)  # make_moe's defaults


class _PerSliceCasts(MoEFFN):
    """The dispatch before the stacks were cast whole: autocast casts each expert's weight slices itself."""

    def _run_experts(self, x_sorted, sizes, dtype):
        return super()._run_experts(x_sorted, sizes, x_sorted.dtype)  # fp32 stacks in; slices cast per matmul


def _casts(moe: MoEFFN, x: torch.Tensor) -> list[tuple[int, ...]]:
    """Input shapes of every dtype cast one bf16-autocast forward + backward of `moe` makes."""
    with torch.profiler.profile(record_shapes=True) as prof:
        with torch.autocast("cpu", dtype=torch.bfloat16):
            out = moe(x)
        out.output.float().sum().backward()
    return [tuple(e.input_shapes[0]) for e in prof.events() if e.name == "aten::_to_copy" and e.input_shapes]


@pytest.mark.parametrize("kind", ["gelu", "swiglu"])
def test_under_bf16_autocast_each_expert_stack_is_cast_once_not_once_per_expert(kind):
    """Autocast caches casts of leaf weights only; an expert's slice is no leaf, so casting slices cost E casts
    of each stack forward and E back. Whole stacks: one each way (the router, same shape as b_out, adds two)."""
    x = inputs_with_bias_feature(256)
    moe = make_moe(expert_kind=kind)
    stacks = [tuple(p.shape) for name, p in moe.named_parameters() if not name.startswith("router")]
    slices, router = {shape[1:] for shape in stacks}, tuple(moe.router.weight.shape)
    casts = _casts(moe, x)
    assert not [shape for shape in casts if shape in slices]
    for shape in set(stacks):
        assert casts.count(shape) == 2 * stacks.count(shape) + 2 * (shape == router)
    per_slice = _casts(_PerSliceCasts(**MOE_KWARGS | {"expert_kind": kind}), x)
    assert sum(shape in slices for shape in per_slice) == 2 * moe.num_experts * len(stacks)


@pytest.mark.parametrize("kind", ["gelu", "swiglu"])
@pytest.mark.parametrize("autocast", [False, True], ids=["fp32", "bf16-autocast"])
def test_casting_whole_stacks_changes_no_output_or_gradient_bit(kind, autocast, monkeypatch):
    monkeypatch.setattr(moe_module, "HALF_PRECISION_CPU_ROW_BUCKET", 1)  # the casts alone (padding: tests below)
    torch.manual_seed(0)
    moe = make_moe(expert_kind=kind)
    torch.manual_seed(0)
    reference = _PerSliceCasts(**MOE_KWARGS | {"expert_kind": kind})
    reference.load_state_dict(moe.state_dict())
    x = inputs_with_bias_feature(256)
    grads = []
    for layer in (moe, reference):
        inputs = x.clone().requires_grad_()
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=autocast):
            out = layer(inputs)
        out.output.float().square().sum().backward()
        grads.append((out.output, inputs.grad, *(p.grad for p in layer.parameters())))
    assert all(torch.equal(a, b) for a, b in zip(*grads, strict=True))


def test_expert_rows_are_padded_only_for_half_precision_matmuls_on_cpu():
    bucket = moe_module.HALF_PRECISION_CPU_ROW_BUCKET
    assert bucket > 1
    assert expert_row_bucket(torch.device("cpu"), torch.bfloat16) == bucket
    assert expert_row_bucket(torch.device("cpu"), torch.float16) == bucket
    assert expert_row_bucket(torch.device("cpu"), torch.float32) == 1
    assert expert_row_bucket(torch.device("cuda"), torch.bfloat16) == 1


def _expert_row_counts(layer: MoEFFN, x: torch.Tensor, *, autocast: bool) -> list[int]:
    """Rows each expert saw in one forward (backward runs on the same shapes)."""
    seen = []
    original = layer._expert

    def recording(rows, *params):
        seen.append(rows.shape[0])
        return original(rows, *params)

    layer._expert = recording
    with torch.autocast("cpu", dtype=torch.bfloat16, enabled=autocast):
        out = layer(x)
    out.output.float().sum().backward()
    return seen


@pytest.mark.parametrize("kind", ["gelu", "swiglu"])
def test_bf16_experts_see_whole_buckets_of_rows_and_fp32_experts_their_exact_rows(kind):
    x = inputs_with_bias_feature(300)  # 600 slots over 4 experts: sizes that are no multiple of 64
    exact = _expert_row_counts(make_moe(expert_kind=kind), x, autocast=False)
    assert sum(exact) == 300 * 2 and any(n % 64 for n in exact)
    padded = _expert_row_counts(make_moe(expert_kind=kind), x, autocast=True)
    assert all(n % moe_module.HALF_PRECISION_CPU_ROW_BUCKET == 0 for n in padded)
    assert padded == [-(-n // 64) * 64 for n in exact]


@pytest.mark.parametrize("kind", ["gelu", "swiglu"])
def test_padded_rows_change_no_output_or_gradient_beyond_bf16_rounding(kind, monkeypatch):
    """The appended zero rows' outputs are dropped: the bf16 result with padding is the one without it, up to
    bf16 rounding (kernels may sum in another order at another row count), and no parameter gains a gradient."""
    x = inputs_with_bias_feature(300)
    results = []
    for bucket in (1, 64):
        monkeypatch.setattr(moe_module, "HALF_PRECISION_CPU_ROW_BUCKET", bucket)
        layer = make_moe(expert_kind=kind)
        inputs = x.clone().requires_grad_()
        with torch.autocast("cpu", dtype=torch.bfloat16):
            out = layer(inputs)
        out.output.float().square().sum().backward()
        results.append((out.output.float(), inputs.grad, *(p.grad for p in layer.parameters())))
    for unpadded, padded in zip(*results, strict=True):
        torch.testing.assert_close(padded, unpadded, rtol=2e-2, atol=2e-2)
