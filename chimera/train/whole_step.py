"""The whole training step as one compiled graph: forward, loss, gradients, clipping and AdamW, no host sync.

Step modes compile and graph (chimera.config.TrainConfig.step_mode) run this instead of the eager step.
`torch.compile(fullgraph=True, dynamic=False)` traces it whole: gradients come from `torch.autograd.grad`
(traced with dynamo's `trace_autograd_ops`) rather than `loss.backward()`, which dynamo cannot put in a
graph, and the update is torch's functional AdamW (`capturable`: its step counts and learning rate are
tensors) rather than `optimizer.step()`, which breaks the graph on purpose (torch/optim/optimizer.py's
`_use_grad`). Mode graph compiles with `mode="reduce-overhead"`, which replays the step as CUDA graphs.

Nothing leaves the device inside the step: the running loss sum and the last gradient norm accumulate in
tensors, and the first step with a non-finite loss or gradient norm is noted in a tensor. The recipe
reads them at evaluation and checkpoint boundaries (`drain`, `first_bad_step`), one sync each.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn
from torch.optim.adamw import adamw

NO_BAD_STEP = -1


@dataclass(frozen=True)
class BadStep:
    """The first step whose loss or gradient norm was not finite, with both values."""

    step: int
    loss: float
    grad_norm: float


class WholeStep:
    """`model` and the parameter groups of `optimizer` (a torch AdamW), stepped by one compiled function."""

    def __init__(self, model: nn.Module, optimizer: torch.optim.Optimizer, *, label_smoothing: float,
                 grad_clip: float, mode: str, backend: str = "inductor") -> None:
        self.model, self.optimizer = model, optimizer
        self.label_smoothing, self.max_norm = label_smoothing, grad_clip or float("inf")
        device = next(model.parameters()).device
        self.groups = [group for group in optimizer.param_groups if group["params"]]
        # the update runs here, not in optimizer.step(); say so to the lr scheduler, which warns otherwise
        optimizer._opt_called = True  # type: ignore[attr-defined]
        # learning rates as device tensors, filled from the schedule's floats before each step (no sync)
        self.lrs = [torch.tensor(float(group["lr"]), device=device) for group in self.groups]
        self.loss_sum = torch.zeros((), device=device)
        self.grad_norm = torch.zeros((), device=device)
        self.step_count = torch.zeros((), dtype=torch.int64, device=device)
        # the first bad step, its loss and norm (float32, as MPS has no float64)
        self.bad = torch.tensor([NO_BAD_STEP, 0.0, 0.0], device=device)
        self._compiled = torch.compile(self._step, fullgraph=True, dynamic=False, backend=backend,
                                       mode="reduce-overhead" if mode == "graph" else None)

    def __call__(self, input_ids: torch.Tensor, attention_mask: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        """One optimiser step; returns the loss as a device tensor (reading it is the caller's sync)."""
        self._init_state()
        for lr, group in zip(self.lrs, self.groups, strict=True):
            lr.fill_(float(group["lr"]))  # a Python float from the schedule: a fill, not a sync
        with torch._dynamo.config.patch(trace_autograd_ops=True):
            return self._compiled(input_ids, attention_mask, labels)

    def _step(self, input_ids: torch.Tensor, attention_mask: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        out = self.model(input_ids, attention_mask)
        loss = F.cross_entropy(out.logits.float(), labels, label_smoothing=self.label_smoothing) + out.aux_loss
        params = [p for group in self.groups for p in group["params"]]
        grads = torch.autograd.grad(loss, params)
        with torch.no_grad():
            loss = loss.detach()
            # global L2 norm and clipping exactly as torch.nn.utils.clip_grad_norm_ computes them
            norm = torch.linalg.vector_norm(torch.stack(torch._foreach_norm(grads, 2.0)), 2.0)
            coef = torch.clamp(self.max_norm / (norm + 1e-6), max=1.0)
            grads = torch._foreach_mul(grads, coef)
            start = 0
            for lr, group in zip(self.lrs, self.groups, strict=True):
                count = len(group["params"])
                self._adamw(group, grads[start:start + count], lr)
                start += count
            self.step_count += 1
            first_bad = (self.bad[0] == NO_BAD_STEP) & ~(torch.isfinite(loss) & torch.isfinite(norm))
            self.bad.copy_(torch.where(first_bad, torch.stack([self.step_count.float(), loss, norm]), self.bad))
            self.loss_sum += loss
            self.grad_norm.copy_(norm)
        return loss

    def _adamw(self, group: dict, grads: list[torch.Tensor], lr: torch.Tensor) -> None:
        params = group["params"]
        states = [self.optimizer.state[p] for p in params]
        beta1, beta2 = group["betas"]
        adamw(params, list(grads), [s["exp_avg"] for s in states], [s["exp_avg_sq"] for s in states], [],
              [s["step"] for s in states], foreach=True, capturable=True, amsgrad=False, beta1=beta1, beta2=beta2,
              lr=lr, weight_decay=group["weight_decay"], eps=group["eps"], maximize=False)

    def _init_state(self) -> None:
        """AdamW's state as `optimizer.step()` would create it (zeros, step counts as device tensors), unless
        a checkpoint restored it."""
        for group in self.groups:
            for p in group["params"]:
                state = self.optimizer.state[p]
                if not state:
                    state["step"] = torch.zeros((), dtype=torch.float32, device=p.device)
                    state["exp_avg"] = torch.zeros_like(p, memory_format=torch.preserve_format)
                    state["exp_avg_sq"] = torch.zeros_like(p, memory_format=torch.preserve_format)
                elif state["step"].device != p.device:  # restored from a checkpoint on the host
                    state["step"] = state["step"].to(p.device)

    def drain(self) -> tuple[float, float]:
        """(loss sum since the last drain, last gradient norm); resets the sum. One sync."""
        total, norm = torch.stack([self.loss_sum, self.grad_norm]).tolist()
        self.loss_sum.zero_()
        return total, norm

    def first_bad_step(self) -> BadStep | None:
        """The first step with a non-finite loss or gradient norm since the run started, if any. One sync."""
        step, loss, norm = self.bad.tolist()
        return None if step == NO_BAD_STEP else BadStep(step=int(step), loss=loss, grad_norm=norm)
