"""Early stopping on validation loss, as a small state machine that checkpoints as plain data."""

from __future__ import annotations

from dataclasses import asdict, dataclass


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
