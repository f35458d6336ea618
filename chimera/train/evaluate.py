"""Evaluation passes (clean loss: no smoothing, eval mode; accuracy; MoE routing statistics) and the early
stopping rule they feed, a small state machine that checkpoints as plain data."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field

import torch
import torch.nn.functional as F
from accelerate import Accelerator

from chimera.data.tokenizer import IGNORED_LABEL
from chimera.records.record import MoeLayerStats


@dataclass(frozen=True)
class EvalResult:
    loss: float
    acc: float
    moe: list[MoeLayerStats] = field(default_factory=list)  # one per MoE layer, averaged over batches


@torch.no_grad()
def evaluate(model: torch.nn.Module, loader, accelerator: Accelerator, *, with_moe: bool = False) -> EvalResult:
    """Mean cross-entropy (no label smoothing) and accuracy over every row of `loader`.

    Rows are gathered across processes with `gather_for_metrics`, which drops the padding that
    distributed sampling adds, so the numbers are over the split exactly once.
    """
    was_training = model.training
    model.eval()
    loss_sum = torch.zeros((), dtype=torch.float64)
    correct = 0
    rows = 0
    moe_sums: list[tuple[int, dict[str, torch.Tensor]]] = []  # per MoE layer: (layer, key -> sum over batches)
    batches = 0
    for batch in loader:
        out = model(batch["input_ids"], batch["attention_mask"])
        logits, labels = accelerator.gather_for_metrics((out.logits.float(), batch["labels"]))
        counted = labels != IGNORED_LABEL  # a fixed-shape loader's filler rows count nowhere
        loss_sum += F.cross_entropy(logits, labels, reduction="sum", ignore_index=IGNORED_LABEL).double().cpu()
        correct += int(((logits.argmax(-1) == labels) & counted).sum())
        rows += int(counted.sum())
        if with_moe and out.moe:
            batches += 1
            _accumulate_moe(moe_sums, out.moe)
    if was_training:
        model.train()
    moe = [MoeLayerStats(layer=layer, **{key: (total / batches).tolist() for key, total in sums.items()})
           for layer, sums in moe_sums]
    return EvalResult(loss=float(loss_sum) / max(rows, 1), acc=correct / max(rows, 1), moe=moe)


_MOE_KEYS = ("tokens_per_expert", "router_entropy", "dropped_fraction", "balance_loss", "z_loss")


def _accumulate_moe(sums: list[tuple[int, dict[str, torch.Tensor]]], layers) -> None:
    """Add one batch's routing statistics (`chimera.model.moe.MoEStats`, one per layer) to the sums."""
    for i, stats in enumerate(layers):
        if len(sums) <= i:
            sums.append((int(stats.layer), {key: torch.zeros_like(getattr(stats, key).float().cpu())
                                            for key in _MOE_KEYS}))
        for key in _MOE_KEYS:
            sums[i][1][key] += getattr(stats, key).float().cpu()


@dataclass
class EarlyStopping:
    """Counts evaluations without an improvement of at least `min_delta` over the best val loss.

    `best_loss`/`best_step` track the lowest val loss seen (that is the checkpoint restored at the
    end); only improvements larger than `min_delta` reset the patience counter.
    """

    patience: int
    min_delta: float
    best_loss: float = float("inf")
    best_step: int | None = None
    evals_without_improvement: int = 0

    def update(self, val_loss: float, step: int) -> bool:
        """Record one evaluation; True when this is the new best (lowest) val loss."""
        improved_enough = val_loss < self.best_loss - self.min_delta
        is_best = val_loss < self.best_loss
        if is_best:
            self.best_loss, self.best_step = val_loss, step
        self.evals_without_improvement = 0 if improved_enough else self.evals_without_improvement + 1
        return is_best

    @property
    def should_stop(self) -> bool:
        return self.evals_without_improvement >= self.patience

    def state_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_state_dict(cls, state: dict) -> EarlyStopping:
        return cls(**state)
