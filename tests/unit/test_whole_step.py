"""The compiled whole step (step modes compile and graph): one graph, no host sync, the eager step's update.

The graph-break checks compile with the `aot_eager` backend: dynamo (which finds graph breaks, and raises
on one under fullgraph=True) and AOTAutograd trace exactly as for inductor, without the minutes of C++ code
generation inductor spends on two cores. A CLI run in tests/unit/test_step_modes.py uses inductor itself.
"""

from __future__ import annotations

import pytest
import torch

from bench.harness import synthetic_batch, transformer_cells
from chimera.matrix import load_matrix
from chimera.train.plan import make_plan
from chimera.train.recipe import Recipe, TrainingDiverged
from chimera.train.run import build_accelerator
from chimera.train.whole_step import WholeStep

pytestmark = pytest.mark.slow  # each test compiles (tens of seconds on two cores)

TINY = ["model.d_model=32", "model.n_heads=2", "model.d_ff=64", "model.n_layers=2", "data.max_length=12",
        "data.vocab_size=256", "train.batch_size=6"]


def _recipe(cell: str, mode: str, overrides=(), *, tmp_path, profile: str = "ci") -> Recipe:
    config = load_matrix().resolve(cell, profile, device="cpu", overrides=[f"train.step_mode={mode}", *overrides])
    plan = make_plan(config, out_dir=tmp_path)
    torch.manual_seed(0)
    recipe = Recipe.for_benchmark(plan, build_accelerator(plan.policy))
    if recipe.whole_step is not None:  # the same step, traced by the cheaper backend (module docstring)
        optimizer = recipe.optimizer.optimizer
        recipe.whole_step = WholeStep(recipe.model, optimizer, label_smoothing=config.train.label_smoothing,
                                      grad_clip=config.train.grad_clip, mode=mode, backend="aot_eager")
    return recipe


def _padded_batch(recipe: Recipe) -> dict[str, torch.Tensor]:
    """A real batch's shape: every row max_length wide, the tail of each row padding."""
    batch = synthetic_batch(recipe.config, torch.device("cpu"))
    lengths = torch.arange(batch["input_ids"].shape[0]) % (recipe.config.data.max_length - 2) + 2
    mask = torch.arange(batch["input_ids"].shape[1])[None, :] < lengths[:, None]
    return {**batch, "input_ids": batch["input_ids"].masked_fill(~mask, 0), "attention_mask": mask}


@pytest.mark.parametrize("cell", transformer_cells())
def test_the_whole_step_of_every_transformer_cell_compiles_as_one_graph(cell, tmp_path):
    recipe = _recipe(cell, "compile", tmp_path=tmp_path)  # ci shapes, fp32; fullgraph=True raises on a break
    batch = _padded_batch(recipe)
    losses = [float(recipe.step(batch)) for _ in range(2)]
    assert all(torch.isfinite(torch.tensor(losses)))
    recipe.sync_device_state()
    assert recipe.state.loss_count == 2 and recipe.state.loss_sum == pytest.approx(sum(losses), rel=1e-6)
    assert recipe.state.last_grad_norm > 0


def test_a_compiled_step_asks_the_device_nothing(tmp_path, monkeypatch):
    recipe = _recipe("fixed/moe", "compile", TINY, tmp_path=tmp_path)
    batch = _padded_batch(recipe)
    recipe.step(batch)  # compiles
    calls = []
    for name in ("item", "tolist", "__bool__", "__float__"):
        original = getattr(torch.Tensor, name)

        def counted(self, *args, _name=name, _original=original, **kwargs):
            calls.append(_name)
            return _original(self, *args, **kwargs)
        monkeypatch.setattr(torch.Tensor, name, counted)
    for _ in range(3):
        recipe.step(batch)
    monkeypatch.undo()
    assert calls == []
    assert torch.tensor(1.0).item() == 1.0  # the counters are really off again


@pytest.mark.parametrize("cell", ["fixed/dense", "baseline/moe"])
def test_the_compiled_step_makes_the_eager_steps_update(cell, tmp_path):
    """No dropout, so both steps compute the same function: loss, and every weight after three AdamW steps
    with clipping, agree to float32 rounding (the eager step runs fused AdamW, the compiled one foreach)."""
    no_dropout = [*TINY, "model.dropout=0.0", "train.grad_clip=0.05"]  # a clip that bites
    eager = _recipe(cell, "eager", no_dropout, tmp_path=tmp_path / "e")
    compiled = _recipe(cell, "compile", no_dropout, tmp_path=tmp_path / "c")
    compiled.model.load_state_dict(eager.model.state_dict())
    batch = _padded_batch(eager)
    for _ in range(3):
        eager_loss, compiled_loss = eager.step(batch), float(compiled.step(batch))
        assert compiled_loss == pytest.approx(eager_loss, rel=1e-5)
    compiled.sync_device_state()
    assert compiled.state.last_grad_norm == pytest.approx(eager.state.last_grad_norm, rel=1e-4)
    for (name, a), b in zip(eager.model.named_parameters(), compiled.model.parameters(), strict=True):
        torch.testing.assert_close(b, a, rtol=1e-4, atol=1e-6, msg=name)


def test_a_non_finite_step_is_caught_at_the_next_sync_and_named(tmp_path):
    recipe = _recipe("fixed/dense", "compile", TINY, tmp_path=tmp_path)
    batch = _padded_batch(recipe)
    recipe.step(batch)
    recipe.sync_device_state()  # step 1 was fine
    with torch.no_grad():
        next(recipe.model.parameters()).fill_(float("nan"))
    recipe.step(batch)  # step 2: non-finite, noted on the device; no exception here
    recipe.step(batch)
    with pytest.raises(TrainingDiverged, match=r"non-finite loss \(nan\) at step 2:") as caught:
        recipe.sync_device_state()
    assert caught.value.step == 2
