"""The routed MoE FFN against references: the dense FFN, a per-token loop, the sorted per-expert dispatch it
replaced, and hand-computed losses; its layout's bounds; no host sync and no graph break."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from chimera.matrix import load_matrix
from chimera.model.layers import DenseFFN
from chimera.model.moe import MoEFFN, load_balancing_loss, router_z_loss
from chimera.model.moe_dispatch import EXPERT_BLOCK_ROWS, buffer_rows, dispatch, grouped_applies

D, FF = 16, 32


# the two ways to run the experts; blocked with 8-row blocks (several per expert) and with blocks of the whole
# capacity (the (E, capacity) layout, no weight gather)
MATMULS = {"grouped": {"expert_matmul": "grouped"}, "blocked": {"expert_matmul": "blocked", "block_rows": 8},
           "blocked-whole": {"expert_matmul": "blocked", "block_rows": 10_000}}


def make_moe(*, num_experts=4, top_k=2, expert_kind="gelu", capacity=None, aux=0.01, z=0.001,
             seed=0, matmul="grouped") -> MoEFFN:
    torch.manual_seed(seed)
    return MoEFFN(d_model=D, d_ff=FF, num_experts=num_experts, top_k=top_k, expert_kind=expert_kind,
                  capacity_factor_train=capacity, capacity_factor_eval=capacity, aux_loss_coef=aux,
                  z_loss_coef=z, dropout=0.0, **MATMULS[matmul])


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


@pytest.mark.parametrize("matmul", MATMULS)
@pytest.mark.parametrize("kind", ["gelu", "swiglu"])
def test_one_expert_top1_dropless_equals_dense_ffn_outputs_and_gradients(kind, matmul):
    torch.manual_seed(0)
    dense = DenseFFN(d_model=D, d_ff=FF, dropout=0.0, kind=kind)
    moe = make_moe(num_experts=1, top_k=1, expert_kind=kind, matmul=matmul)
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


@pytest.mark.parametrize("matmul", MATMULS)
def test_dispatch_equals_naive_per_token_loop_top2_of_4(matmul):
    moe = make_moe(num_experts=4, top_k=2, matmul=matmul)
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


@pytest.mark.parametrize("matmul", MATMULS)
def test_capacity_drops_hand_computed_slots_top1(matmul):
    moe = make_moe(num_experts=4, top_k=1, capacity=1.0, matmul=matmul)  # capacity = ceil(1.0 * 10 * 1 / 4) = 3
    force_router(moe, [10.0, 0.0, 0.0, 0.0])
    x = inputs_with_bias_feature(10)
    result = moe(x)
    assert moe.capacity(10) == 3
    assert result.dropped_fraction.item() == pytest.approx(7 / 10)
    assert result.tokens_per_expert.tolist() == [1.0, 0.0, 0.0, 0.0]
    assert result.output[3:].abs().max().item() == 0.0  # tokens 3..9 dropped: no FFN contribution
    expected = torch.addmm(moe.b_out[0], F.gelu(torch.addmm(moe.b_in[0], x[:3], moe.w_in[0])), moe.w_out[0])
    torch.testing.assert_close(result.output[:3], expected)


@pytest.mark.parametrize("matmul", MATMULS)
def test_capacity_drops_hand_computed_slots_top2(matmul):
    moe = make_moe(num_experts=4, top_k=2, capacity=1.0, matmul=matmul)  # capacity = ceil(1.0 * 8 * 2 / 4) = 4
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


@pytest.mark.parametrize("matmul", MATMULS)
def test_gradients_reach_router_and_selected_experts_only(matmul):
    moe = make_moe(num_experts=4, top_k=2, expert_kind="gelu", matmul=matmul)
    force_router(moe, [1.0, 0.8, -10.0, -10.0])  # experts 2 and 3 are never chosen
    result = moe(inputs_with_bias_feature(12))
    result.output.sum().backward()
    assert result.tokens_per_expert[2:].sum().item() == 0.0
    assert moe.router.weight.grad.abs().sum() > 0  # through the renormalised top-2 weights
    for param in (moe.w_in, moe.b_in, moe.w_out, moe.b_out):
        assert (param.grad[:2].abs().sum(dim=tuple(range(1, param.dim()))) > 0).all()
        assert param.grad[2:].abs().max().item() == 0.0


@pytest.mark.parametrize("matmul", MATMULS)
def test_unselected_expert_gets_no_gradient_for_swiglu_either(matmul):
    moe = make_moe(num_experts=3, top_k=1, expert_kind="swiglu", matmul=matmul)
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




def _expert(moe: MoEFFN, e: int, rows: torch.Tensor) -> torch.Tensor:
    if moe.expert_kind == "gelu":
        return torch.addmm(moe.b_out[e], F.gelu(torch.addmm(moe.b_in[e], rows, moe.w_in[e])), moe.w_out[e])
    return (F.silu(rows @ moe.w_gate[e]) * (rows @ moe.w_in[e])) @ moe.w_out[e]


def sorted_reference(moe: MoEFFN, x: torch.Tensor) -> dict[str, torch.Tensor]:
    """The dispatch this layer had before it ran without host syncs, on packed tokens: slots sorted by expert
    (stable), counted by `bincount`, an expert keeping its earliest `capacity` slots, one matmul pair per
    expert on a slice whose size is read on the host, scaled and summed back with `index_add_`."""
    n, k, e = x.shape[0], moe.top_k, moe.num_experts
    logits = moe.router(x)
    probs = logits.float().softmax(dim=-1)
    top_weight, top_index = probs.topk(k, dim=-1)
    top_weight = top_weight / top_weight.sum(dim=-1, keepdim=True)
    flat = top_index.reshape(-1)
    order = torch.argsort(flat, stable=True)
    counts = kept = torch.bincount(flat, minlength=e)
    capacity = moe.capacity(n)
    if capacity is not None:
        rank = torch.arange(flat.numel()) - (counts.cumsum(0) - counts)[flat[order]]
        order, kept = order[rank < capacity], counts.clamp(max=capacity)
    token = order // k
    chunks = x.index_select(0, token).split(kept.tolist())
    y = torch.cat([_expert(moe, i, rows) for i, rows in enumerate(chunks)])
    y = y * top_weight.reshape(-1)[order].unsqueeze(1)
    routed = n * k
    balance = e * torch.dot(counts.float() / routed, probs.mean(dim=0))
    z = torch.logsumexp(logits, dim=-1).square().mean()
    return {"output": y.new_zeros(n, y.shape[1]).index_add_(0, token, y),
            "aux_loss": moe.aux_loss_coef * balance + moe.z_loss_coef * z, "balance_loss": balance,
            "z_loss": z, "tokens_per_expert": counts.float() / routed,
            "router_entropy": -(probs * torch.log_softmax(logits, dim=-1)).sum(-1).mean().detach(),
            "dropped_fraction": torch.tensor(float(routed - kept.sum()) / routed)}


def padded_inputs(n: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """n rows of which about a third are padding (mask False); the first row is always real."""
    generator = torch.Generator().manual_seed(seed)
    mask = torch.rand(n, generator=generator) > 0.35
    mask[0] = True
    return torch.randn(n, D, generator=generator), mask


@pytest.mark.parametrize("padded", [True, False], ids=["mask", "packed"])
@pytest.mark.parametrize("matmul", MATMULS)
@pytest.mark.parametrize(("kind", "top_k", "capacity"), [("gelu", 2, None), ("gelu", 1, None), ("swiglu", 2, None),
                                                          ("gelu", 2, 0.75), ("swiglu", 1, 0.5)])
def test_dispatch_equals_sorted_reference_on_the_real_tokens(kind, top_k, capacity, matmul, padded):
    """Outputs, every statistic, and gradients of the input and of every parameter, at fp32 tolerance
    (torch.testing's float32 default: rtol 1.3e-6, atol 1e-5). With a mask the layer sees pad rows too (they
    get zero output and zero gradient); without one, only the real tokens, as the encoder passes them."""
    moe = make_moe(expert_kind=kind, top_k=top_k, capacity=capacity, matmul=matmul)
    x, mask = padded_inputs(300, seed=top_k)
    if not padded:
        x, mask = x[mask], mask[mask]
    upstream = torch.randn(x.shape[0], D, generator=torch.Generator().manual_seed(9))
    results = []
    for packed in (False, True):
        moe.zero_grad()
        inputs = (x[mask] if packed else x).clone().requires_grad_()
        out = sorted_reference(moe, inputs) if packed else moe(inputs, mask if padded else None)._asdict()
        ((out["output"] * (upstream[mask] if packed else upstream)).sum() + out["aux_loss"]).backward()
        results.append((out, inputs.grad, [p.grad.clone() for p in moe.parameters()]))
    (new, new_x_grad, new_grads), (ref, ref_x_grad, ref_grads) = results
    if capacity is not None:
        assert ref["dropped_fraction"] > 0.05, "the capacity should drop slots for the test to bite"
    for key, value in ref.items():
        torch.testing.assert_close(new[key][mask] if key == "output" else new[key], value, msg=key)
    assert new["output"][~mask].abs().sum().item() == 0.0
    torch.testing.assert_close(new_x_grad[mask], ref_x_grad)
    assert new_x_grad[~mask].abs().sum().item() == 0.0
    for (name, _), got, expected in zip(moe.named_parameters(), new_grads, ref_grads, strict=True):
        torch.testing.assert_close(got, expected, msg=name)


@pytest.mark.parametrize("capacity", [None, 3])
@pytest.mark.parametrize("block", [1, 4, 16])
def test_layout_gives_each_kept_slot_its_own_row_inside_its_experts_blocks(block, capacity):
    """Worst cases for the buffer: everything on two experts, then random routings; no slot is dropped for want
    of room (only by the capacity), and no two slots share a row."""
    n, k, e = 20, 2, 4
    routings = [torch.tensor([[0, 1]] * n), torch.tensor([[3, 2]] * n)]
    routings += [torch.rand(n, e, generator=torch.Generator().manual_seed(s)).topk(k).indices for s in range(20)]
    per_expert = n if capacity is None else capacity
    for expert_index in routings:
        plan = dispatch(expert_index, e, capacity=capacity, per_expert=per_expert, block=min(block, per_expert),
                        mask=None)
        rows = buffer_rows(n, k, e, per_expert, min(block, per_expert))
        counts = torch.bincount(expert_index.reshape(-1), minlength=e)
        assert plan.counts.tolist() == counts.tolist() and plan.row_token.shape == (rows,)
        assert int(plan.slot_kept.sum()) == int(counts.clamp(max=per_expert).sum())
        used = plan.slot_row[plan.slot_kept]
        assert used.unique().numel() == used.numel() and int(used.max()) < rows
        assert torch.equal(plan.row_token[used], plan.slot_kept.nonzero().squeeze(1) // k)
        starts = torch.cat([plan.ends.new_zeros(1), plan.ends[:-1]])
        experts = expert_index.reshape(-1)[plan.slot_kept]
        assert bool(((used >= starts[experts]) & (used < plan.ends[experts])).all())
        if plan.block_expert is not None:
            assert torch.equal(plan.block_expert[used // min(block, per_expert)], experts)


@pytest.mark.parametrize("cell", ["fixed/moe", "baseline/moe"])
@pytest.mark.parametrize("profile", ["ci", "full"])
def test_blocked_layout_spends_at_most_1_2x_the_routed_matmul_flops_at_the_matrix_shapes(cell, profile):
    """batch x max_length tokens per step (no padding: the most rows a step can route); the grouped layout
    spends exactly the routed FLOPs. Today: fixed/moe 1.125x (ci) and 1.094x (full), baseline/moe 1.188x and 1.094x."""
    config = load_matrix().resolve(cell, profile)
    model = config.model
    tokens = config.train.batch_size * config.data.max_length
    routed = tokens * model.top_k
    blocked = buffer_rows(tokens, model.top_k, model.num_experts, tokens, EXPERT_BLOCK_ROWS)
    assert buffer_rows(tokens, model.top_k, model.num_experts, tokens, 1) == routed
    assert blocked / routed <= 1.2


def test_grouped_matmul_runs_in_eager_fp32_on_a_cpu_only():
    cpu, cuda, widths = torch.device("cpu"), torch.device("cuda"), (D, FF)
    assert grouped_applies(cpu, torch.float32, False, widths)
    assert not grouped_applies(cpu, torch.float32, True, widths)  # grouped_mm traces in bf16 only
    assert not grouped_applies(cpu, torch.bfloat16, False, widths)  # a bf16 kernel per new row count
    assert not grouped_applies(cuda, torch.float32, False, widths)  # host-side offsets outside bf16 on sm90+
    assert not grouped_applies(cuda, torch.bfloat16, False, widths)
    assert not grouped_applies(cpu, torch.float32, False, (6, 12))  # rows of 24 bytes: no grouped_mm


@pytest.mark.parametrize(("d_model", "d_ff"), [(6, 12), (8, 10)])
def test_widths_grouped_mm_refuses_run_blocked_and_equal_the_reference(d_model, d_ff):
    torch.manual_seed(0)
    moe = MoEFFN(d_model=d_model, d_ff=d_ff, num_experts=4, top_k=2, expert_kind="gelu", capacity_factor_train=None,
                 capacity_factor_eval=None, aux_loss_coef=0.01, z_loss_coef=0.001, dropout=0.0)
    x = torch.randn(30, d_model, generator=torch.Generator().manual_seed(1))
    expected = sorted_reference(moe, x)["output"]
    torch.testing.assert_close(moe(x).output, expected)


def _matmul_shapes(moe: MoEFFN, x: torch.Tensor) -> list[tuple]:
    with torch.profiler.profile(record_shapes=True) as prof:
        with torch.autocast("cpu", dtype=torch.bfloat16):
            out = moe(x)
        out.output.float().sum().backward()
    return sorted(tuple(map(tuple, e.input_shapes)) for e in prof.events() if e.name in ("aten::bmm", "aten::baddbmm"))


@pytest.mark.parametrize("kind", ["gelu", "swiglu"])
def test_under_bf16_autocast_the_expert_matmul_shapes_depend_on_the_token_count_only(kind):
    """What HALF_PRECISION_CPU_ROW_BUCKET did for oneDNN's per-shape bf16 kernels, the fixed layout does always:
    two routings as different as can be (spread out, all on experts 0 and 1) run the same matmul shapes."""
    spread, collapsed = make_moe(expert_kind=kind, matmul="blocked"), make_moe(expert_kind=kind, matmul="blocked")
    force_router(collapsed, [10.0, 5.0, 0.0, 0.0])
    x = inputs_with_bias_feature(300)
    assert spread(x).tokens_per_expert.min() > 0.1 and collapsed(x).tokens_per_expert[2:].sum() == 0
    shapes = _matmul_shapes(spread, x)
    assert shapes and shapes == _matmul_shapes(collapsed, x)


def _casts(moe: MoEFFN, x: torch.Tensor) -> list[tuple[int, ...]]:
    """Input shapes of every dtype cast one bf16-autocast forward + backward of `moe` makes."""
    with torch.profiler.profile(record_shapes=True) as prof:
        with torch.autocast("cpu", dtype=torch.bfloat16):
            out = moe(x)
        out.output.float().sum().backward()
    return [tuple(e.input_shapes[0]) for e in prof.events() if e.name == "aten::_to_copy" and e.input_shapes]


@pytest.mark.parametrize("kind", ["gelu", "swiglu"])
def test_under_bf16_autocast_each_expert_stack_is_cast_once_each_way(kind):
    """Autocast caches casts of leaf weights only: each stack is cast whole once forward and once back, before its
    blocks gather it (the router, same shape as b_out, adds two)."""
    moe = make_moe(expert_kind=kind, matmul="blocked")
    stacks = [tuple(p.shape) for name, p in moe.named_parameters() if not name.startswith("router")]
    casts = _casts(moe, inputs_with_bias_feature(256))
    for shape in set(stacks):
        assert casts.count(shape) == 2 * stacks.count(shape) + 2 * (shape == tuple(moe.router.weight.shape))


@pytest.mark.parametrize("kind", ["gelu", "swiglu"])
def test_bf16_autocast_outputs_and_gradients_match_the_fp32_reference_to_bf16_rounding(kind):
    x, mask = padded_inputs(300, seed=4)
    results = []
    for autocast in (True, False):
        moe = make_moe(expert_kind=kind, matmul="blocked")
        inputs = (x if autocast else x[mask]).clone().requires_grad_()
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=autocast):
            out = moe(inputs, mask).output[mask] if autocast else sorted_reference(moe, inputs)["output"]
        out.float().square().sum().backward()
        results.append((out.float(), inputs.grad[mask] if autocast else inputs.grad,
                        *(p.grad for p in moe.parameters())))
    for bf16, fp32 in zip(*results, strict=True):
        torch.testing.assert_close(bf16, fp32, rtol=2e-2, atol=2e-2)


@pytest.mark.parametrize("capacity", [None, 0.75])
def test_forward_and_backward_compile_whole_with_no_graph_break(capacity):
    """fullgraph=True raises at the first graph break; aot_eager traces the backward too (with fake tensors,
    so a data-dependent shape fails here) without inductor's minutes of C++ compilation."""
    moe = make_moe(capacity=capacity)
    moe.expert_matmul = "auto"  # blocked when compiling, grouped in eager here: the two compared
    x, mask = padded_inputs(40, seed=5)

    def loss(inputs: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        out = moe(inputs, mask)
        return out.output.square().sum() + out.aux_loss

    results = []
    for fn in (torch.compile(loss, fullgraph=True, dynamic=False, backend="aot_eager"), loss):
        moe.zero_grad()
        inputs = x.clone().requires_grad_()
        value = fn(inputs, mask)
        value.backward()
        results.append((value.detach(), inputs.grad, *(p.grad.clone() for p in moe.parameters())))
    for compiled, eager in zip(*results, strict=True):
        torch.testing.assert_close(compiled, eager)


@pytest.mark.parametrize("matmul", MATMULS)
@pytest.mark.parametrize("capacity", [None, 0.75])
def test_training_forward_and_backward_read_nothing_back_to_the_host(matmul, capacity, monkeypatch):
    """No `.item()`, `.tolist()`, `bool()`, `float()` or `int()` of a tensor: each would sync with a GPU."""
    calls = []
    for name in ("item", "tolist", "__bool__", "__float__", "__int__"):
        original = getattr(torch.Tensor, name)

        def counting(self, *args, _name=name, _original=original, **kwargs):
            calls.append(_name)
            return _original(self, *args, **kwargs)

        monkeypatch.setattr(torch.Tensor, name, counting)
    moe = make_moe(capacity=capacity, matmul=matmul).train()
    x, mask = padded_inputs(64, seed=6)
    out = moe(x.requires_grad_(), mask)
    (out.output.sum() + out.aux_loss).backward()
    monkeypatch.undo()
    assert calls == []
